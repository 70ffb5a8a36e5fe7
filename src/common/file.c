#include "file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#define TMP_RANDOM_BYTES 8

int kh_file_open_regular(int dirfd, const char *path, unsigned flags, struct stat *ret_st) {
        int oflags = O_RDONLY | O_CLOEXEC | O_NOCTTY;
        struct stat st;
        int fd;

        if (flags & KH_FILE_NOFOLLOW)
                oflags |= O_NOFOLLOW;
        fd = openat(dirfd, path, oflags);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                return -EINVAL;
        }
        if (ret_st)
                *ret_st = st;
        return fd;
}

int kh_file_read(int dirfd, const char *path, unsigned flags, size_t max, struct kh_buf *out) {
        KH_CLEANUP(kh_closep) int fd = -1;
        uint8_t chunk[4096];
        struct stat st;
        size_t total = 0;
        int r;

        fd = kh_file_open_regular(dirfd, path, flags, &st);
        if (fd < 0)
                return fd;
        if ((uint64_t) st.st_size > max)
                return -EFBIG;

        for (;;) {
                ssize_t n = read(fd, chunk, sizeof(chunk));
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                if ((size_t) n > max - total)
                        r = -EFBIG;      /* grew since fstat */
                else
                        r = kh_buf_append(out, chunk, (size_t) n);
                if (r < 0) {
                        explicit_bzero(chunk, sizeof(chunk));
                        return r == -E2BIG ? -EFBIG : r;
                }
                total += (size_t) n;
        }
        explicit_bzero(chunk, sizeof(chunk));
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t w = write(fd, p, n);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w < 0)
                        return -errno;
                p += w;
                n -= (size_t) w;
        }
        return 0;
}

static int write_tmp(int dirfd, const char *tmp, const void *p, size_t n, mode_t mode) {
        int fd, r;

        fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
        if (fd < 0)
                return -errno;
        /* the umask may have narrowed mode; what the caller asked for is what it gets */
        r = fchmod(fd, mode) < 0 ? -errno : 0;
        if (r == 0)
                r = write_all(fd, p, n);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

/* The directory part of path opened (relative to dirfd), and the last component. */
static int open_parent(int dirfd, const char *path, int *ret_fd, const char **ret_name) {
        const char *slash = strrchr(path, '/');
        char dir[4096];
        int fd;

        if (!slash) {
                fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                *ret_name = path;
        } else {
                size_t len = slash == path ? 1 : (size_t) (slash - path);
                if (len >= sizeof(dir))
                        return -ENAMETOOLONG;
                memcpy(dir, path, len);
                dir[len] = 0;
                fd = openat(dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                *ret_name = slash + 1;
        }
        if (fd < 0)
                return -errno;
        if (!**ret_name) {
                close(fd);
                return -EINVAL;
        }
        *ret_fd = fd;
        return 0;
}

int kh_file_write_atomic(int dirfd, const char *path, const void *p, size_t n, mode_t mode,
                         unsigned flags) {
        KH_CLEANUP(kh_closep) int dir = -1;
        uint8_t rnd[TMP_RANDOM_BYTES];
        const char *name;
        char tmp[320];
        int r;

        r = open_parent(dirfd, path, &dir, &name);
        if (r < 0)
                return r;
        if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
                return -EIO;
        r = snprintf(tmp, sizeof(tmp), ".%s.tmp-%02x%02x%02x%02x%02x%02x%02x%02x", name, rnd[0],
                     rnd[1], rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
        if (r < 0 || (size_t) r >= sizeof(tmp))
                return -ENAMETOOLONG;

        r = write_tmp(dir, tmp, p, n, mode);
        if (r < 0) {
                (void) unlinkat(dir, tmp, 0);
                return r;
        }
        /* link() refuses an existing name, which makes creation first-writer-wins across
         * processes; rename() replaces atomically. */
        if (flags & KH_FILE_EXCL)
                r = linkat(dir, tmp, dir, name, 0) < 0 ? -errno : 0;
        else
                r = renameat(dir, tmp, dir, name) < 0 ? -errno : 0;
        if ((flags & KH_FILE_EXCL) || r < 0)
                (void) unlinkat(dir, tmp, 0);
        if (r < 0)
                return r;
        return fsync(dir) < 0 ? -errno : 0;
}
