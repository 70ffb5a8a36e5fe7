/* Files keyholdd writes itself (dev-mode keys and certificates, the port file). */
#pragma once

#include <stddef.h>
#include <sys/types.h>

#include "common/cleanup.h"

/* Replaces path atomically with p[0..len): a temporary file of the given mode, fsync,
 * rename. Readers see the old content or the new, never a part. Returns 0 or -errno. */
KH_MUST_CHECK int kh_file_write_atomic(const char *path, const void *p, size_t len, mode_t mode);
