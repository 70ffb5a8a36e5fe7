#include "store/lock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

int kh_store_lock(const struct kh_config_storage *cfg, bool exclusive, int *ret_fd) {
        char path[PATH_MAX];
        int fd;

        if (!cfg->driver || strcmp(cfg->driver, "sqlite") != 0) {
                *ret_fd = -1;
                return 0;
        }
        if (!cfg->path || !cfg->path[0])
                return -EINVAL;
        if ((size_t) snprintf(path, sizeof(path), "%s" KH_STORE_LOCK_SUFFIX, cfg->path) >=
            sizeof(path))
                return -ENAMETOOLONG;
        fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
        if (fd < 0)
                return -errno;
        if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0) {
                int r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;

                (void) close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}
