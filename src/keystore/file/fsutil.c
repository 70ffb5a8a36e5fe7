/* The file key store's files, through common/file.h: a symbolic link or anything but a
 * regular file where a key file should be is corrupt storage (-EIO), not a client error. */
#include <errno.h>

#include "common/file.h"
#include "keystore/file/file-internal.h"

int kh_fks_read_at(int dirfd, const char *name, size_t max, struct kh_buf *out) {
        int r = kh_file_read(dirfd, name, KH_FILE_NOFOLLOW, max, out);

        return r == -ELOOP || r == -EINVAL ? -EIO : r;
}

int kh_fks_write_at(int dirfd, const char *name, const void *p, size_t n, bool replace) {
        return kh_file_write_atomic(dirfd, name, p, n, 0600, replace ? 0 : KH_FILE_EXCL);
}
