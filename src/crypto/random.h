#pragma once
#include <stddef.h>

#include "common/cleanup.h"

/* n bytes from OpenSSL's CSPRNG. Returns 0 or -EIO. Thread-safe. */
KH_MUST_CHECK int kh_random_bytes(void *buf, size_t n);
