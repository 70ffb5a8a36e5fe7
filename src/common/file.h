/* Whole files that keyhold reads or writes itself: the configuration, key-store files,
 * JWKS files, the port file, dev-mode keys and certificates (and later backups and audit
 * exports). One reader and one atomic writer, so that every caller gets the same checks
 * (regular files only, a size cap, no partial writes, durable once it returns). */
#pragma once

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "common/buf.h"
#include "common/cleanup.h"

enum {
        KH_FILE_NOFOLLOW = 1u << 0, /* the last path component may not be a symbolic link */
        KH_FILE_EXCL = 1u << 1,     /* writing: create only; an existing file is -EEXIST */
};

/**
 * kh_file_open_regular() - opens path (relative to dirfd, or AT_FDCWD) for reading and
 * checks that it is a regular file.
 * @flags:  KH_FILE_NOFOLLOW or 0.
 * @ret_st: the file's status, if not NULL.
 * Returns the new descriptor (close-on-exec; the caller closes it), -ELOOP (a symbolic link
 * with KH_FILE_NOFOLLOW), -EINVAL (not a regular file) or another -errno of open/fstat.
 */
KH_MUST_CHECK int kh_file_open_regular(int dirfd, const char *path, unsigned flags,
                                       struct stat *ret_st);

/**
 * kh_file_read() - appends the whole content of a regular file to out.
 * @max: the largest file accepted (checked before reading and while reading, since the
 *       file may grow); out's own maximum applies too.
 * Returns 0, -EFBIG (larger than max), -ENOMEM, or an error of kh_file_open_regular() or
 * read. On failure out may hold part of the file (wiped with it if out is sensitive).
 */
KH_MUST_CHECK int kh_file_read(int dirfd, const char *path, unsigned flags, size_t max,
                               struct kh_buf *out);

/**
 * kh_file_write_atomic() - makes path (relative to dirfd, or AT_FDCWD) hold exactly
 * p[0..n) with permission bits mode: written to a temporary file with a random name in the
 * same directory, fsync'ed, then renamed over path (or, with KH_FILE_EXCL, linked to it,
 * so that of several writers exactly one wins), and the directory fsync'ed. Readers see
 * the old content or the new, never a part; once it returns, a crash keeps the new one.
 * Returns 0, -EEXIST (KH_FILE_EXCL and path exists), -ENAMETOOLONG, or another -errno.
 */
KH_MUST_CHECK int kh_file_write_atomic(int dirfd, const char *path, const void *p, size_t n,
                                       mode_t mode, unsigned flags);
