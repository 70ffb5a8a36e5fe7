/* A file the CLI writes in a stream (an audit export; later backups) that appears under its
 * name only once complete: written to a temporary file in the same folder, mode 0600, then
 * renamed. An interrupted or failed command leaves nothing behind. (common/file.h writes
 * whole buffers; an export does not fit in memory.) */
#pragma once

#include <stdbool.h>
#include <stdio.h>

#include "common/cleanup.h"

struct kh_outfile;

/**
 * kh_outfile_open() - a new, empty temporary file beside path (".NAME.tmp-XXXXXX", mode 0600).
 * Returns 0, -ENAMETOOLONG, or the -errno of creating it (-ENOENT: no such folder, -EACCES).
 */
KH_MUST_CHECK int kh_outfile_open(const char *path, struct kh_outfile **ret);

/* The stream to write to; lives as long as o. */
FILE *kh_outfile_stream(struct kh_outfile *o);

/**
 * kh_outfile_commit() - flushes and syncs the file and gives it its name: replacing an
 * existing file only with replace (without, of several writers exactly one wins), then syncs
 * the folder. Returns 0, -EEXIST (path exists and !replace), or the -errno of a write, sync or
 * rename; on failure the temporary file is still there for kh_outfile_free() to remove.
 */
KH_MUST_CHECK int kh_outfile_commit(struct kh_outfile *o, bool replace);

/* Closes o and removes the temporary file unless it was committed. NULL-safe; returns NULL. */
struct kh_outfile *kh_outfile_free(struct kh_outfile *o);
KH_DEFINE_CLEANUP(kh_outfile_free, struct kh_outfile *)
