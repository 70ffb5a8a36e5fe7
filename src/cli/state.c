#include "cli/state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "common/buf.h"
#include "common/file.h"

#define STATE_FILE_MAX (64 * 1024)
#define PATH_MAX_ 4096
#define DEVICE_FILE "device.json"
#define REQUEST_PREFIX "request-"
#define REQUEST_SUFFIX ".json"

struct kh_state {
        char *path;
        int fd;
};

struct kh_state *kh_state_free(struct kh_state *s) {
        if (!s)
                return NULL;
        if (s->fd >= 0)
                (void) close(s->fd);
        free(s->path);
        free(s);
        return NULL;
}

/* mkdir -p path, each new folder mode 0700. */
static int make_dirs(char *path) {
        for (char *p = path + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(path, 0700) < 0 && errno != EEXIST) {
                        int e = errno;
                        *p = '/';
                        return -e;
                }
                *p = '/';
        }
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

int kh_state_open(const char *dir, struct kh_state **ret) {
        KH_CLEANUP(kh_state_freep) struct kh_state *s = NULL;
        const char *xdg = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
        int r = 0;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->fd = -1;
        if (dir && *dir)
                s->path = strdup(dir);
        else if (xdg && xdg[0] == '/')
                r = asprintf(&s->path, "%s/keyhold", xdg);
        else if (home && *home)
                r = asprintf(&s->path, "%s/.local/state/keyhold", home);
        else
                return -ENOENT;
        if (r < 0)
                s->path = NULL; /* asprintf() leaves it undefined */
        if (!s->path)
                return -ENOMEM;
        if (strlen(s->path) >= PATH_MAX_)
                return -ENAMETOOLONG;
        r = make_dirs(s->path);
        if (r < 0)
                return r;
        s->fd = open(s->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (s->fd < 0)
                return -errno;
        *ret = KH_TAKE_PTR(s);
        return 0;
}

const char *kh_state_path(const struct kh_state *s) {
        return s->path;
}

int kh_state_read(struct kh_state *s, const char *name, json_t **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        KH_CLEANUP(kh_closep) int fd = -1;
        struct stat st;
        json_t *v;
        int r;

        kh_buf_init(&b, STATE_FILE_MAX, true);
        fd = kh_file_open_regular(s->fd, name, KH_FILE_NOFOLLOW, &st);
        if (fd < 0)
                return fd;
        if (st.st_mode & (S_IRWXG | S_IRWXO))
                return -EPERM;
        r = kh_file_read(s->fd, name, KH_FILE_NOFOLLOW, STATE_FILE_MAX, &b);
        if (r < 0)
                return r;
        v = json_loadb((const char *) b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(v)) {
                json_decref(v);
                return -EBADMSG;
        }
        *ret = v;
        return 0;
}

int kh_state_write(struct kh_state *s, const char *name, const json_t *v) {
        char *text = json_dumps(v, JSON_COMPACT);
        int r;

        if (!text)
                return -ENOMEM;
        r = kh_file_write_atomic(s->fd, name, text, strlen(text), 0600, 0);
        OPENSSL_cleanse(text, strlen(text));
        free(text);
        return r;
}

int kh_state_remove(struct kh_state *s, const char *name) {
        if (unlinkat(s->fd, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return 0;
}

/* A version 4 GUID, lower case. */
static int new_guid(char out[static 37]) {
        uint8_t b[16];

        if (RAND_bytes(b, sizeof(b)) != 1)
                return -EIO;
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);
        (void) snprintf(out, 37,
                        "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                        b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11],
                        b[12], b[13], b[14], b[15]);
        return 0;
}

int kh_state_device(struct kh_state *s, bool create, json_t **ret) {
        json_t *dev = NULL;
        char guid[37];
        int r;

        r = kh_state_read(s, DEVICE_FILE, &dev);
        if (r == 0 && json_is_string(json_object_get(dev, "identifier"))) {
                *ret = dev;
                return 0;
        }
        if (r == 0) {
                json_decref(dev);
                return -EBADMSG;
        }
        if (r != -ENOENT || !create)
                return r;
        r = new_guid(guid);
        if (r < 0)
                return r;
        dev = json_pack("{s:s}", "identifier", guid);
        if (!dev)
                return -ENOMEM;
        r = kh_state_write(s, DEVICE_FILE, dev);
        if (r < 0) {
                json_decref(dev);
                return r;
        }
        *ret = dev;
        return 0;
}

int kh_state_request_name(const char *id, char *buf, size_t len) {
        size_t n = strlen(id);

        if (n == 0 || n > 64)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char c = id[i];
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '-'))
                        return -EINVAL;
        }
        if ((size_t) snprintf(buf, len, REQUEST_PREFIX "%s" REQUEST_SUFFIX, id) >= len)
                return -EINVAL;
        return 0;
}

int kh_state_latest_request(struct kh_state *s, char **ret) {
        struct timespec best = { 0 };
        char *found = NULL;
        struct dirent *e;
        DIR *d;
        int fd;

        fd = openat(s->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                (void) close(fd);
                return -errno;
        }
        while ((e = readdir(d))) {
                size_t n = strlen(e->d_name), p = strlen(REQUEST_PREFIX), x = strlen(REQUEST_SUFFIX);
                struct stat st;

                if (n <= p + x || strncmp(e->d_name, REQUEST_PREFIX, p) != 0 ||
                    strcmp(e->d_name + n - x, REQUEST_SUFFIX) != 0)
                        continue;
                if (fstatat(s->fd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (found && (st.st_mtim.tv_sec < best.tv_sec ||
                              (st.st_mtim.tv_sec == best.tv_sec &&
                               st.st_mtim.tv_nsec <= best.tv_nsec)))
                        continue;
                free(found);
                found = strndup(e->d_name + p, n - p - x);
                if (!found) {
                        (void) closedir(d);
                        return -ENOMEM;
                }
                best = st.st_mtim;
        }
        (void) closedir(d);
        if (!found)
                return -ENOENT;
        *ret = found;
        return 0;
}
