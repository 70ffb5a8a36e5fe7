/* Building a backup while serving: a consistent database snapshot (kh_store_snapshot(), on a
 * connection of the job's own), the file key store's files (each key already sealed under
 * the master key; keystore.meta holds only the KDF salt, cost and a check value) or, for a
 * pkcs11 store, only the names of the token keys the database needs (in the header), a manifest
 * counted from the snapshot itself, all sealed into one file (backup/format.h) under a key
 * derived from the key store's secret with a fresh random salt. */
#include "service/backup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/format.h"
#include "backup/manifest.h"
#include "common/errors.h"
#include "common/file.h"
#include "common/parse.h"
#include "crypto/random.h"
#include "keystore/file/file-keystore.h"
#include "service/service-internal.h"
#include "store/store.h"

#define DB_NAME "keyhold.db"
#define LEFTOVER_PREFIX ".keyhold-backup-"
#define KS_PREFIX "keystore/"
#define KS_FILE_MAX (64u * 1024)
#define KS_FILES_MAX 100000
#define COPY_BLOCK (256u * 1024)

/* One file of the key store, read whole before the manifest is written (it lists sizes). */
struct ks_file {
        char name[KH_BACKUP_NAME_MAX + 1];    /* "keystore/default/v1.key" */
        struct kh_buf data;
};

struct build {
        struct kh_backup_job *b;
        struct ks_file *files;
        size_t n_files, cap;
        char snap[4096];                      /* the snapshot's path, "" once removed */
};

static int __attribute__((format(printf, 3, 4))) why(struct build *x, int r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(x->b->error, sizeof(x->b->error), fmt, ap);
        va_end(ap);
        return r;
}

static void build_free(struct build *x) {
        for (size_t i = 0; i < x->n_files; i++)
                kh_buf_free(&x->files[i].data);
        free(x->files);
        if (x->snap[0])
                (void) unlink(x->snap);
}

static int add_ks_file(struct build *x, int dirfd, const char *rel) {
        struct ks_file *f;
        char name[KH_BACKUP_NAME_MAX + 1];
        int r;

        if (snprintf(name, sizeof(name), KS_PREFIX "%s", rel) >= (int) sizeof(name))
                return 0;
        if (x->n_files == x->cap) {
                size_t ncap = x->cap ? 2 * x->cap : 32;
                struct ks_file *nf;
                if (ncap > KS_FILES_MAX)
                        return why(x, -E2BIG, "the key store holds too many files");
                nf = reallocarray(x->files, ncap, sizeof(*nf));
                if (!nf)
                        return -ENOMEM;
                x->files = nf;
                x->cap = ncap;
        }
        f = &x->files[x->n_files];
        memcpy(f->name, name, sizeof(name));
        kh_buf_init(&f->data, KS_FILE_MAX, false);
        r = kh_file_read(dirfd, rel, KH_FILE_NOFOLLOW, KS_FILE_MAX, &f->data);
        if (r < 0) {
                kh_buf_free(&f->data);
                /* not a key-store file (a link, something large): not the store's */
                return r == -ELOOP || r == -EINVAL || r == -EFBIG || r == -ENOENT ? 0 : r;
        }
        /* only what a file key store is made of: stray or temporary files stay out */
        if (kh_keystore_file_check_file(rel, f->data.data, f->data.len) < 0) {
                kh_buf_free(&f->data);
                return 0;
        }
        x->n_files++;
        return 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The names in folder dirfd/sub ("" for the top), sorted, without "." entries. */
static int list_dir(int dirfd, const char *sub, char ***ret, size_t *ret_n) {
        int fd = sub[0] ? openat(dirfd, sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                        : dup(dirfd);
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        DIR *d;

        if (fd < 0)
                return -errno;
        d = fdopendir(fd);
        if (!d) {
                (void) close(fd);
                return -errno;
        }
        rewinddir(d);
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                if (n == cap) {
                        char **nn;
                        cap = cap ? 2 * cap : 16;
                        nn = cap > KS_FILES_MAX ? NULL : reallocarray(names, cap, sizeof(*names));
                        if (!nn)
                                goto oom;
                        names = nn;
                }
                names[n] = strdup(de->d_name);
                if (!names[n])
                        goto oom;
                n++;
        }
        (void) closedir(d);
        if (n)
                qsort(names, n, sizeof(*names), name_cmp);
        *ret = names;
        *ret_n = n;
        return 0;
oom:
        (void) closedir(d);
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return -ENOMEM;
}

static void names_free(char **names, size_t n) {
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
}

/* keystore.meta first (the header carries it too), then each owner's folder. */
static int read_keystore(struct build *x, const char *path) {
        KH_CLEANUP(kh_closep) int dirfd = -1;
        char **top = NULL;
        size_t n_top = 0;
        int r;

        dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                return why(x, -errno, "cannot open the key store %s: %s", path, strerror(errno));
        r = add_ks_file(x, dirfd, "keystore.meta");
        if (r < 0)
                return r;
        if (x->n_files != 1)
                return why(x, -EIO, "the key store %s has no valid keystore.meta", path);
        r = list_dir(dirfd, "", &top, &n_top);
        if (r < 0)
                return why(x, r, "cannot list the key store: %s", strerror(-r));
        for (size_t i = 0; r >= 0 && i < n_top; i++) {
                char **sub = NULL;
                size_t n_sub = 0;
                struct stat st;

                if (fstatat(dirfd, top[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
                        continue;
                if (list_dir(dirfd, top[i], &sub, &n_sub) < 0)
                        continue;
                for (size_t j = 0; r >= 0 && j < n_sub; j++) {
                        char rel[KH_BACKUP_NAME_MAX + 1];
                        if (snprintf(rel, sizeof(rel), "%s/%s", top[i], sub[j]) < (int) sizeof(rel))
                                r = add_ks_file(x, dirfd, rel);
                }
                names_free(sub, n_sub);
        }
        names_free(top, n_top);
        return r;
}

/* The token keys the snapshot's tenants need, for the header of a backup of a pkcs11
 * store: every key version not destroyed, each tenant's recovery and audit key, the
 * server's audit key (the key store leaves out those it does not hold). */
static int token_meta(struct build *x, const json_t *tenants, struct kh_backup_header *h) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf meta = { 0 };
        KH_CLEANUP_FREE struct kh_key_ref *refs = NULL;
        size_t n = 0, cap = 1, i, j;
        const json_t *t, *v;
        int r;

        json_array_foreach(tenants, i, t)
                cap += 2 + json_array_size(json_object_get(t, "key_versions"));
        refs = calloc(cap, sizeof(*refs));
        if (!refs)
                return -ENOMEM;
        refs[n++] = (struct kh_key_ref) { .version = 1, .purpose = KH_KEY_AUDIT };
        json_array_foreach(tenants, i, t) {
                const char *id = json_string_value(json_object_get(t, "id"));
                struct kh_key_ref ref = { .version = 1 };

                if (!id || strlen(id) > KH_TENANT_ID_MAX)
                        return -EIO;
                memcpy(ref.tenant, id, strlen(id));
                ref.purpose = KH_KEY_AUDIT;
                refs[n++] = ref;
                ref.purpose = KH_KEY_RECOVERY;
                refs[n++] = ref;
                ref.purpose = KH_KEY_DATA;
                json_array_foreach(json_object_get(t, "key_versions"), j, v) {
                        const char *state = json_string_value(json_object_get(v, "state"));

                        if (state && strcmp(state, "destroyed") == 0)
                                continue;
                        ref.version = (uint32_t) json_integer_value(json_object_get(v, "version"));
                        refs[n++] = ref;
                }
        }
        kh_buf_init(&meta, KH_BACKUP_META_MAX, false);
        r = kh_app_backup_meta(x->b->app, refs, n, &meta);
        if (r == -E2BIG)
                return why(x, -EOPNOTSUPP, "the token holds more keys than a backup header "
                                           "names (%d bytes)", KH_BACKUP_META_MAX);
        if (r < 0)
                return why(x, r, "the key store does not name its keys: %s", kh_strerror(r));
        memcpy(h->meta, meta.data, meta.len);
        h->meta_len = meta.len;
        return 0;
}

static json_t *manifest_new(const struct kh_config *cfg, const struct build *x, json_t *tenants,
                            uint64_t records, int schema, uint64_t db_size, time_t now) {
        char created[32];
        struct tm tm;
        json_t *files = json_array(), *m;

        if (!gmtime_r(&now, &tm) || strftime(created, sizeof(created), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                created[0] = 0;
        if (!files || json_array_append_new(files, json_pack("{ss sI}", "name", DB_NAME, "size",
                                                             (json_int_t) db_size)) < 0)
                goto fail;
        for (size_t i = 0; i < x->n_files; i++)
                if (json_array_append_new(files, json_pack("{ss sI}", "name", x->files[i].name,
                                                           "size",
                                                           (json_int_t) x->files[i].data.len)) < 0)
                        goto fail;
        m = json_pack("{si ss ss si ss sI sO so}", "format", KH_BACKUP_FORMAT, "keyhold_version",
                      KH_VERSION, "created", created, "schema_version", schema,
                      "keystore_driver", cfg->keystore.driver, "records", (json_int_t) records,
                      "tenants", tenants, "files", files);
        return m;
fail:
        json_decref(files);
        return NULL;
}

static int copy_db(struct build *x, struct kh_backup_writer *w, uint64_t size) {
        KH_CLEANUP(kh_closep) int fd = open(x->snap, O_RDONLY | O_CLOEXEC);
        KH_CLEANUP_FREE uint8_t *block = malloc(COPY_BLOCK);
        uint64_t left = size;
        int r;

        if (fd < 0 || !block)
                return fd < 0 ? -errno : -ENOMEM;
        while (left > 0) {
                ssize_t k = read(fd, block, left < COPY_BLOCK ? (size_t) left : COPY_BLOCK);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;    /* the snapshot is ours: it cannot shrink */
                r = kh_backup_writer_data(w, block, (size_t) k);
                if (r < 0)
                        return r;
                left -= (uint64_t) k;
        }
        return 0;
}

/* Whether the scratch folder is shared with other keyholdd processes (not SQLite's own). */
static bool scratch_is_shared(const struct kh_config_storage *cfg) {
        return !cfg->driver || strcmp(cfg->driver, "sqlite") != 0 || !cfg->path;
}

/* Where the scratch files go: beside an SQLite database (the same file system, as much room
 * as the database has), else $TMPDIR (or /tmp), under names that carry the process id, since
 * replicas on one machine share that folder and each removes only a dead process's files. */
static const char *scratch_dir(const struct kh_config_storage *cfg, char **copy) {
        const char *tmp = getenv("TMPDIR");

        if (!scratch_is_shared(cfg)) {
                *copy = strdup(cfg->path);
                return *copy ? dirname(*copy) : NULL;
        }
        return tmp && tmp[0] == '/' ? tmp : "/tmp";
}

/* A new temporary file in dir, with a name starting with '.'; the caller unlinks it. */
static int temp_in(const char *dir, bool shared, const char *suffix, char *path, size_t n) {
        int fd;

        if ((shared ? snprintf(path, n, "%s/" LEFTOVER_PREFIX "%ld-XXXXXX%s", dir,
                               (long) getpid(), suffix)
                    : snprintf(path, n, "%s/" LEFTOVER_PREFIX "XXXXXX%s", dir, suffix)) >= (int) n)
                return -ENAMETOOLONG;
        fd = mkostemps(path, (int) strlen(suffix), O_CLOEXEC);
        if (fd < 0) {
                path[0] = 0;
                return -errno;
        }
        return fd;
}

static int build(struct build *x) {
        struct kh_backup_job *b = x->b;
        const struct kh_config *cfg = kh_app_config(b->app);
        KH_CLEANUP(kh_store_closep) struct kh_store *store = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        KH_CLEANUP(kh_backup_writer_freep) struct kh_backup_writer *w = NULL;
        KH_CLEANUP(kh_closep) int out = -1;
        KH_CLEANUP_FREE char *dir_copy = NULL, *text = NULL;
        struct kh_backup_header h = { .chunk_size = KH_BACKUP_CHUNK };
        json_t *tenants = NULL, *manifest;
        char out_path[4096], err[256];
        const char *dir;
        uint64_t records;
        struct stat st;
        time_t now = time(NULL);
        int schema, fd, r;
        bool is_file, shared;

        if (!cfg->keystore.driver ||
            (strcmp(cfg->keystore.driver, "file") != 0 && strcmp(cfg->keystore.driver, "pkcs11") != 0))
                return why(x, -EOPNOTSUPP, "backups need the file or pkcs11 key store");
        is_file = strcmp(cfg->keystore.driver, "file") == 0;
        shared = scratch_is_shared(&cfg->storage);
        dir = scratch_dir(&cfg->storage, &dir_copy);
        if (!dir)
                return -ENOMEM;

        /* the key first: a key store that cannot make one fails before any copying */
        r = kh_random_bytes(h.salt, sizeof(h.salt));
        if (r < 0)
                return r;
        r = kh_app_backup_key(b->app, h.salt, &key);
        if (r == -KH_E_PKCS11_MECHANISM)
                return why(x, -EOPNOTSUPP, "the token does not offer CKM_SHA256_HMAC signing or "
                                           "CKM_GENERIC_SECRET_KEY_GEN, which a backup key needs");
        if (r < 0)
                return why(x, r, "the key store made no backup key: %s", kh_strerror(r));

        fd = temp_in(dir, shared, ".db", x->snap, sizeof(x->snap));
        if (fd < 0)
                return why(x, fd, "cannot create a temporary file in %s: %s", dir, strerror(-fd));
        (void) close(fd);
        r = kh_store_open(&cfg->storage, &store);
        if (r < 0)
                return why(x, r, "cannot open the database: %s", strerror(-r));
        r = kh_store_snapshot(store, x->snap);
        if (r < 0)
                return why(x, r, "database snapshot failed: %s", kh_store_last_error(store));
        store = kh_store_close(store);
        if (stat(x->snap, &st) < 0)
                return -errno;
        r = kh_backup_manifest_count(x->snap, &tenants, &records, &schema, err, sizeof(err));
        if (r < 0)
                return why(x, r, "the snapshot does not check: %s", err);

        /* the file store's files go into the backup, keystore.meta also into the header; a
         * token's keys stay in it, and the header names those the database needs */
        r = is_file ? read_keystore(x, cfg->keystore.path) : token_meta(x, tenants, &h);
        if (r < 0) {
                json_decref(tenants);
                return r;
        }
        if (is_file) {
                memcpy(h.meta, x->files[0].data.data, x->files[0].data.len);
                h.meta_len = x->files[0].data.len;
        }
        h.created = (uint64_t) now;
        (void) snprintf(h.driver, sizeof(h.driver), "%s", cfg->keystore.driver);
        r = kh_backup_header_encode(&h);
        if (r < 0) {
                json_decref(tenants);
                return r;
        }
        b->tenants = json_array_size(tenants);
        b->records = records;
        manifest = manifest_new(cfg, x, tenants, records, schema, (uint64_t) st.st_size, now);
        json_decref(tenants);
        if (!manifest)
                return -ENOMEM;
        text = json_dumps(manifest, JSON_COMPACT);
        json_decref(manifest);
        if (!text)
                return -ENOMEM;

        /* the backup itself: unlinked at once, so that nothing of it outlives the process */
        out = temp_in(dir, shared, "", out_path, sizeof(out_path));
        if (out < 0)
                return why(x, out, "cannot create a temporary file in %s: %s", dir, strerror(-out));
        (void) unlink(out_path);
        r = kh_backup_writer_new(out, &h, key, &w);
        if (r >= 0)
                r = kh_backup_writer_entry(w, KH_BACKUP_MANIFEST, "", strlen(text));
        if (r >= 0)
                r = kh_backup_writer_data(w, text, strlen(text));
        if (r >= 0)
                r = kh_backup_writer_entry(w, KH_BACKUP_FILE, DB_NAME, (uint64_t) st.st_size);
        if (r >= 0)
                r = copy_db(x, w, (uint64_t) st.st_size);
        for (size_t i = 0; r >= 0 && i < x->n_files; i++) {
                r = kh_backup_writer_entry(w, KH_BACKUP_FILE, x->files[i].name,
                                           x->files[i].data.len);
                if (r >= 0)
                        r = kh_backup_writer_data(w, x->files[i].data.data, x->files[i].data.len);
        }
        if (r >= 0)
                r = kh_backup_writer_finish(w);
        if (r < 0)
                return why(x, r, "writing the backup failed: %s", strerror(-r));
        b->size = kh_backup_writer_bytes(w);
        if (lseek(out, 0, SEEK_SET) < 0)
                return -errno;
        b->fd = kh_take_fd(&out);
        return 0;
}

static void run(struct kh_job *job) {
        struct kh_backup_job *b = kh_container_of(job, struct kh_backup_job, job);
        struct build x = { .b = b };
        int r;

        b->fd = -1;
        b->error[0] = 0;
        r = build(&x);
        build_free(&x);          /* the snapshot goes in every case */
        if (r == -ENOSPC || r == -EDQUOT)
                r = -KH_E_INSUFFICIENT_STORAGE;
        else if (r == -EOPNOTSUPP)
                r = -KH_E_BACKUP_UNSUPPORTED;
        else if (r == -KH_E_SEALED || r == -KH_E_KEYSTORE_UNAVAILABLE)
                ;                        /* sealed, or the HSM gone, since the request */
        else if (r < 0)
                r = -KH_E_BACKUP_FAILED;
        if (r < 0 && !b->error[0])
                (void) snprintf(b->error, sizeof(b->error), "backup failed");
        job->result = r;
}

static void done(struct kh_job *job) {
        struct kh_backup_job *b = kh_container_of(job, struct kh_backup_job, job);

        if (job->result < 0 && b->fd >= 0) {
                (void) close(b->fd);
                b->fd = -1;
        }
        if (job->result == -ECANCELED)
                job->result = -KH_E_BACKUP_FAILED;
        b->done(b, job->result);
}

int kh_service_backup_start(struct kh_service *svc, struct kh_backup_job *b) {
        int r;

        b->app = svc->app;
        b->fd = -1;
        b->job = (struct kh_job) { .run = run, .done = done };
        r = kh_jobs_submit(kh_app_jobs(svc->app), svc->loop, &b->job);
        return r == -EAGAIN ? -KH_E_BUSY : r;
}

/* Whether name is a scratch file of a process that is gone ("<pid>-..." when shared). */
static bool is_leftover(const char *name, bool shared) {
        const char *dash;
        uint64_t pid;

        if (strncmp(name, LEFTOVER_PREFIX, sizeof(LEFTOVER_PREFIX) - 1) != 0)
                return false;
        if (!shared)
                return true;
        name += sizeof(LEFTOVER_PREFIX) - 1;
        dash = strchr(name, '-');
        if (!dash || kh_parse_u64(name, (size_t) (dash - name), INT32_MAX, &pid) < 0 || pid == 0)
                return false;
        return pid == (uint64_t) getpid() || (kill((pid_t) pid, 0) < 0 && errno == ESRCH);
}

int kh_service_backup_leftovers_remove(const struct kh_config_storage *cfg) {
        KH_CLEANUP_FREE char *dir_copy = NULL;
        bool shared = scratch_is_shared(cfg);
        const char *dir = scratch_dir(cfg, &dir_copy);
        struct dirent *e;
        DIR *d;
        int n = 0;

        if (!dir)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return -errno;
        while ((e = readdir(d)))
                if (is_leftover(e->d_name, shared) && unlinkat(dirfd(d), e->d_name, 0) == 0)
                        n++;
        (void) closedir(d);
        return n;
}
