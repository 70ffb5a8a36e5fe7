#include "cli/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define OUTFILE_MODE 0600

struct kh_outfile {
        FILE *f;
        char *path;
        char *tmp; /* NULL once committed */
};

/* The folder of path ("." for a bare name, "/" for one in the root). */
static char *folder_of(const char *path) {
        const char *slash = strrchr(path, '/');

        if (!slash)
                return strdup(".");
        return strndup(path, slash == path ? 1 : (size_t) (slash - path));
}

int kh_outfile_open(const char *path, struct kh_outfile **ret) {
        KH_CLEANUP(kh_outfile_freep) struct kh_outfile *o = NULL;
        const char *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
        int fd;

        if (!*name)
                return -EISDIR;
        if (strlen(path) + 16 >= PATH_MAX)
                return -ENAMETOOLONG;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        o->path = strdup(path);
        if (asprintf(&o->tmp, "%.*s.%s.tmp-XXXXXX", (int) (name - path), path, name) < 0)
                o->tmp = NULL;
        if (!o->path || !o->tmp)
                return -ENOMEM;
        fd = mkostemp(o->tmp, O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                free(o->tmp);
                o->tmp = NULL; /* nothing to remove */
                return r;
        }
        /* the umask may have narrowed it; the export is the tenant's history: owner only */
        if (fchmod(fd, OUTFILE_MODE) < 0 || !(o->f = fdopen(fd, "w"))) {
                int r = -errno;
                close(fd);
                return r;
        }
        *ret = KH_TAKE_PTR(o);
        return 0;
}

FILE *kh_outfile_stream(struct kh_outfile *o) {
        return o->f;
}

static int sync_folder(const char *path) {
        KH_CLEANUP(kh_freep) char *dir = folder_of(path);
        KH_CLEANUP(kh_closep) int fd = -1;

        if (!dir)
                return -ENOMEM;
        fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return -errno;
        return 0;
}

int kh_outfile_commit(struct kh_outfile *o, bool replace) {
        int r;

        errno = 0;
        if (fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) < 0)
                return errno ? -errno : -EIO;
        if (replace)
                r = rename(o->tmp, o->path) < 0 ? -errno : 0;
        else /* link fails if the name exists, whoever made it meanwhile */
                r = link(o->tmp, o->path) < 0 ? -errno : 0;
        if (r < 0)
                return r;
        if (!replace)
                (void) unlink(o->tmp); /* the file has its name; this is only the second one */
        free(o->tmp);
        o->tmp = NULL;
        return sync_folder(o->path);
}

struct kh_outfile *kh_outfile_free(struct kh_outfile *o) {
        if (!o)
                return NULL;
        if (o->f)
                (void) fclose(o->f);
        if (o->tmp)
                (void) unlink(o->tmp);
        free(o->tmp);
        free(o->path);
        free(o);
        return NULL;
}
