#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/encoding.h"
#include "crypto/random.h"
#include "keystore/file/file-internal.h"

int kh_fks_read_at(int dirfd, const char *name, size_t max, struct kh_buf *out) {
        KH_CLEANUP(kh_closep) int fd = -1;
        uint8_t chunk[4096];
        struct stat st;
        int r;

        fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
        if (fd < 0)
                return errno == ELOOP ? -EIO : -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EIO;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        for (;;) {
                ssize_t n = read(fd, chunk, sizeof(chunk));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (n == 0)
                        return 0;
                r = kh_buf_append(out, chunk, (size_t) n);
                if (r < 0)
                        return r == -E2BIG ? -EFBIG : r; /* grew since fstat */
        }
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static int write_tmp(int dirfd, const char *tmp, const void *p, size_t n) {
        int fd, r;

        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        r = write_all(fd, p, n);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

int kh_fks_write_at(int dirfd, const char *name, const void *p, size_t n, bool replace) {
        uint8_t rnd[8];
        char hex[2 * sizeof(rnd) + 1];
        char tmp[256];
        int r;

        r = kh_random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                return r;
        kh_hex_encode(rnd, sizeof(rnd), hex);
        r = snprintf(tmp, sizeof(tmp), ".%s.tmp-%s", name, hex);
        if (r < 0 || (size_t) r >= sizeof(tmp))
                return -ENAMETOOLONG;

        r = write_tmp(dirfd, tmp, p, n);
        if (r < 0) {
                (void) unlinkat(dirfd, tmp, 0);
                return r;
        }

        /* link() refuses an existing name, which makes creation first-writer-wins across
         * processes; rename() is for files only the winner writes. */
        if (replace)
                r = renameat(dirfd, tmp, dirfd, name) < 0 ? -errno : 0;
        else
                r = linkat(dirfd, tmp, dirfd, name, 0) < 0 ? -errno : 0;
        if (!replace || r < 0)
                (void) unlinkat(dirfd, tmp, 0);
        if (r < 0)
                return r;

        return fsync(dirfd) < 0 ? -errno : 0;
}
