#include "backup/open.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "backup/format.h"
#include "backup/manifest.h"
#include "common/buf.h"
#include "common/errors.h"
#include "keystore/file/file-keystore.h"
#include "keystore/keystore.h"

#define DB_NAME "keyhold.db"
#define KEYSTORE_PREFIX "keystore/"
#define KEYSTORE_FILE_MAX (64u * 1024)
#define READ_BLOCK (256u * 1024)

static int __attribute__((format(printf, 4, 5))) refuse(struct kh_backup_error *err, int r,
                                                        const char *code, const char *fmt, ...) {
        va_list ap;

        err->code = code;
        va_start(ap, fmt);
        (void) vsnprintf(err->message, sizeof(err->message), fmt, ap);
        va_end(ap);
        return r;
}

/* ---- removing what a failed restore or a verify wrote ---- */

static int rm_one(const char *path, const struct stat *st, int type, struct FTW *f) {
        (void) st, (void) f;
        (void) (type == FTW_DP ? rmdir(path) : unlink(path));
        return 0;
}

static void rm_tree(const char *path) {
        (void) nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

/* ---- extraction ---- */

struct extract {
        struct kh_backup_error *err;
        const struct kh_backup_header *h;
        int dirfd;                      /* where files go (verify: only keyhold.db) */
        bool restore;
        json_t *manifest;
        json_t *files;                  /* manifest's, borrowed */
        bool *seen;                     /* per manifest file */
        /* the current entry */
        enum kh_backup_entry_type type;
        char name[KH_BACKUP_NAME_MAX + 1];
        struct kh_buf buf;              /* the manifest, or a key-store file */
        int fd;                         /* keyhold.db being written */
        bool db_seen;
        int r;                          /* the error the callbacks reported */
};

static int ex_fail(struct extract *x, int r, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static int ex_fail(struct extract *x, int r, const char *code, const char *fmt, ...) {
        va_list ap;

        x->err->code = code;
        va_start(ap, fmt);
        (void) vsnprintf(x->err->message, sizeof(x->err->message), fmt, ap);
        va_end(ap);
        x->r = r;
        return r;
}

/* Creates the folders of name below dirfd (mode 0700). */
static int make_parents(int dirfd, const char *name) {
        char path[KH_BACKUP_NAME_MAX + 1];

        snprintf(path, sizeof(path), "%s", name);
        for (char *p = strchr(path, '/'); p; p = strchr(p + 1, '/')) {
                *p = 0;
                if (mkdirat(dirfd, path, 0700) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k <= 0)
                        return k < 0 ? -errno : -EIO;
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

static int create_file(struct extract *x, const char *name) {
        int r = make_parents(x->dirfd, name), fd;

        if (r < 0)
                return r;
        fd = openat(x->dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        return fd < 0 ? -errno : fd;
}

static int close_synced(int fd) {
        int r = fsync(fd) < 0 ? -errno : 0;

        if (close(fd) < 0 && r == 0)
                r = -errno;
        return r;
}

static json_t *manifest_file(struct extract *x, const char *name, size_t *ret_i) {
        size_t i;
        json_t *f;

        json_array_foreach(x->files, i, f)
                if (strcmp(json_string_value(json_object_get(f, "name")), name) == 0) {
                        *ret_i = i;
                        return f;
                }
        return NULL;
}

static int on_entry(void *userdata, enum kh_backup_entry_type type, const char *name,
                    uint64_t size) {
        struct extract *x = userdata;
        size_t i;
        json_t *f;

        x->type = type;
        snprintf(x->name, sizeof(x->name), "%s", name);
        if (type == KH_BACKUP_MANIFEST) {
                if (size > KH_BACKUP_MANIFEST_MAX)
                        return ex_fail(x, -EBADMSG, "damaged", "the manifest is too large");
                kh_buf_free(&x->buf);
                kh_buf_init(&x->buf, KH_BACKUP_MANIFEST_MAX, false);
                return 0;
        }
        f = manifest_file(x, name, &i);
        if (!f || x->seen[i] || (uint64_t) json_integer_value(json_object_get(f, "size")) != size)
                return ex_fail(x, -EBADMSG, "damaged",
                               "entry %s is not in the manifest as it is in the file", name);
        x->seen[i] = true;
        if (strcmp(name, DB_NAME) == 0) {
                x->fd = create_file(x, DB_NAME);
                if (x->fd < 0)
                        return ex_fail(x, x->fd, "file_error", "cannot create %s: %s", DB_NAME,
                                       strerror(-x->fd));
                x->db_seen = true;
                return 0;
        }
        if (strncmp(name, KEYSTORE_PREFIX, strlen(KEYSTORE_PREFIX)) != 0 ||
            size > KEYSTORE_FILE_MAX)
                return ex_fail(x, -EBADMSG, "damaged", "entry %s is not part of a backup", name);
        kh_buf_free(&x->buf);
        kh_buf_init(&x->buf, KEYSTORE_FILE_MAX, false);
        return 0;
}

static int on_data(void *userdata, const uint8_t *p, size_t n) {
        struct extract *x = userdata;
        int r;

        if (x->type == KH_BACKUP_FILE && x->fd >= 0) {
                r = write_all(x->fd, p, n);
                if (r < 0)
                        return ex_fail(x, r, "file_error", "cannot write %s: %s", x->name,
                                       strerror(-r));
                return 0;
        }
        r = kh_buf_append(&x->buf, p, n);
        return r < 0 ? ex_fail(x, r, "internal_error", "out of memory") : 0;
}

static int manifest_end(struct extract *x) {
        json_error_t je;
        char why[256];
        size_t n;

        x->manifest = json_loadb((const char *) x->buf.data, x->buf.len, JSON_REJECT_DUPLICATES, &je);
        kh_buf_free(&x->buf);
        if (!x->manifest)
                return ex_fail(x, -EBADMSG, "damaged", "the manifest is not JSON: %s", je.text);
        if (kh_backup_manifest_check(x->manifest, why, sizeof(why)) < 0)
                return ex_fail(x, -EBADMSG, "damaged", "%s", why);
        if (strcmp(json_string_value(json_object_get(x->manifest, "keystore_driver")),
                   x->h->driver) != 0)
                return ex_fail(x, -EBADMSG, "damaged", "the manifest names another key store");
        x->files = json_object_get(x->manifest, "files");
        n = json_array_size(x->files);
        x->seen = calloc(n ? n : 1, sizeof(*x->seen));
        return x->seen ? 0 : ex_fail(x, -ENOMEM, "internal_error", "out of memory");
}

static int on_entry_end(void *userdata) {
        struct extract *x = userdata;
        const char *ks_name = x->name + strlen(KEYSTORE_PREFIX);
        int r, fd;

        if (x->type == KH_BACKUP_MANIFEST)
                return manifest_end(x);
        if (x->fd >= 0) {
                r = close_synced(x->fd);
                x->fd = -1;
                return r < 0 ? ex_fail(x, r, "file_error", "cannot write %s: %s", x->name,
                                       strerror(-r))
                             : 0;
        }
        if (strcmp(x->h->driver, "file") == 0 &&
            kh_keystore_file_check_file(ks_name, x->buf.data, x->buf.len) < 0)
                return ex_fail(x, -EBADMSG, "damaged", "%s is not a file of a file key store",
                               x->name);
        if (!x->restore)
                return 0;
        fd = create_file(x, x->name);
        if (fd < 0)
                return ex_fail(x, fd, "file_error", "cannot create %s: %s", x->name, strerror(-fd));
        r = write_all(fd, x->buf.data, x->buf.len);
        if (r < 0) {
                (void) close(fd);
        } else {
                r = close_synced(fd);
        }
        return r < 0 ? ex_fail(x, r, "file_error", "cannot write %s: %s", x->name, strerror(-r))
                     : 0;
}

static const struct kh_backup_reader_ops extract_ops = {
        .entry = on_entry, .data = on_data, .entry_end = on_entry_end,
};

/* A backup of a pkcs11 store: the configured token must hold every key the header names;
 * it derives the key. */
static int open_token(const struct kh_backup_header *h, const struct kh_config_keystore *cfg,
                      struct kh_secret **ret_key, struct kh_backup_error *err) {
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        char detail[256];
        int r;

        if (!cfg->driver || strcmp(cfg->driver, "pkcs11") != 0)
                return refuse(err, -EOPNOTSUPP, "wrong_keystore",
                              "this backup was made with a pkcs11 key store (an HSM): give "
                              "--config, keyholdd's configuration naming its module, token and "
                              "key_label_prefix");
        r = kh_keystore_open_detail(cfg, &ks, detail, sizeof(detail));
        switch (r) {
        case 0:
                break;
        case -KH_E_PKCS11_PIN:
                return refuse(err, -EKEYREJECTED, "wrong_secret",
                              "the token refused the PIN (%s)", detail);
        case -KH_E_PKCS11_PIN_LOCKED:
                return refuse(err, -EKEYREJECTED, "pkcs11_pin_locked",
                              "the token's user PIN is locked: its security officer must unlock "
                              "it (%s)", detail);
        case -EINVAL:
                return refuse(err, r, "bad_secret", "the token cannot be opened: %s",
                              detail[0] ? detail : "no PIN");
        default:
                return refuse(err, r, "keystore_error", "the token cannot be opened: %s",
                              detail[0] ? detail : kh_strerror(r));
        }
        r = kh_keystore_backup_open(ks, h->meta, h->meta_len, h->salt, ret_key, detail,
                                    sizeof(detail));
        switch (r) {
        case 0:
                return 0;
        case -EBADMSG:
                return refuse(err, r, "damaged", "the backup's key-store header is damaged");
        case -EMEDIUMTYPE:
                return refuse(err, r, "wrong_keystore",
                              "the configuration's key_label_prefix is not the backup's");
        case -ENOKEY:
        case -ENOENT:
                return refuse(err, -ENOKEY, "missing_key",
                              "%s, which this backup needs (is this the token it was made on?)",
                              detail[0] ? detail : "the token lacks the backup key");
        default:
                return refuse(err, r, "keystore_error", "the token does not derive the backup "
                              "key: %s", detail[0] ? detail : kh_strerror(r));
        }
}

/* Header and key: what the secret opens. */
static int open_header(int fd, const struct kh_config_keystore *secret,
                       struct kh_backup_header *h, struct kh_secret **ret_key,
                       struct kh_backup_error *err) {
        uint8_t buf[KH_BACKUP_HEADER_MAX];
        size_t have = 0, want = 16;
        int r;

        for (;;) {
                while (have < want) {
                        ssize_t k = read(fd, buf + have, want - have);
                        if (k < 0 && errno == EINTR)
                                continue;
                        if (k < 0)
                                return refuse(err, -errno, "file_error", "cannot read: %s",
                                              strerror(errno));
                        if (k == 0)
                                return refuse(err, -EBADMSG, have ? "truncated" : "not_a_backup",
                                              "the file ends inside its header");
                        have += (size_t) k;
                }
                r = kh_backup_header_parse(buf, have, h);
                if (r == 0)
                        break;
                if (r != -ENODATA || want > 16)
                        return refuse(err, -EBADMSG, "not_a_backup",
                                      "not a keyhold backup (or its header is damaged)");
                want = (size_t) buf[12] << 24 | (size_t) buf[13] << 16 | (size_t) buf[14] << 8 | buf[15];
        }
        if (strcmp(h->driver, "pkcs11") == 0)
                return open_token(h, secret, ret_key, err);
        if (strcmp(h->driver, "file") != 0)
                return refuse(err, -EOPNOTSUPP, "unsupported",
                              "this backup was made with the \"%s\" key store, which this "
                              "command cannot open offline", h->driver);
        r = kh_keystore_file_backup_key(h->meta, h->meta_len, secret, h->salt, ret_key);
        switch (r) {
        case 0:
                return 0;
        case -EKEYREJECTED:
                return refuse(err, r, "wrong_secret",
                              "this secret does not open this backup's key store");
        case -EBADMSG:
                return refuse(err, r, "damaged", "the backup's key-store header is damaged");
        case -EINVAL:
                return refuse(err, r, "bad_secret",
                              "the master key file must hold exactly 32 bytes (or give a "
                              "passphrase)");
        case -EACCES:
                return refuse(err, r, "bad_secret",
                              "the master key file must be yours and not readable by others "
                              "(chmod 600)");
        default:
                return refuse(err, r, "file_error", "cannot read the key store's secret: %s",
                              strerror(-r));
        }
}

/* Reads the backup at path and checks everything; its files go below outfd (out_path):
 * keyhold.db always (SQLite checks it there), the key store's files only when restoring. */
static int run(const char *path, const struct kh_config_keystore *secret, int outfd,
               const char *out_path, bool restore, struct kh_backup_summary *ret,
               struct kh_backup_error *err) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        KH_CLEANUP(kh_backup_reader_freep) struct kh_backup_reader *rd = NULL;
        KH_CLEANUP(kh_closep) int fd = -1;
        KH_CLEANUP_FREE uint8_t *block = NULL;
        KH_CLEANUP_FREE char *db_path = NULL;
        struct kh_backup_header h;
        struct extract x = { .err = err, .h = &h, .dirfd = outfd, .restore = restore, .fd = -1 };
        json_t *tenants = NULL;
        uint64_t records = 0;
        char why[256];
        struct stat st;
        int schema = 0, r;

        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return refuse(err, -errno, "file_error", "cannot open %s: %s", path,
                              strerror(errno));
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
                return refuse(err, -EINVAL, "file_error", "%s is not a regular file", path);
        r = open_header(fd, secret, &h, &key, err);
        if (r < 0)
                return r;
        block = malloc(READ_BLOCK);
        if (!block || asprintf(&db_path, "%s/" DB_NAME, out_path) < 0) {
                db_path = NULL;
                return refuse(err, -ENOMEM, "internal_error", "out of memory");
        }
        kh_buf_init(&x.buf, KH_BACKUP_MANIFEST_MAX, false);
        r = kh_backup_reader_new(&h, key, &extract_ops, &x, &rd);
        if (r < 0)
                return refuse(err, r, "internal_error", "out of memory");

        for (;;) {
                ssize_t k = read(fd, block, READ_BLOCK);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0) {
                        r = refuse(err, -errno, "file_error", "cannot read %s: %s", path,
                                   strerror(errno));
                        break;
                }
                r = k == 0 ? kh_backup_reader_end(rd) : kh_backup_reader_feed(rd, block, (size_t) k);
                if (r != 0) {
                        if (x.r == 0)     /* the reader's own finding */
                                r = refuse(err, -EBADMSG,
                                           strncmp(kh_backup_reader_error(rd), "truncated", 9) == 0
                                                   ? "truncated" : "damaged",
                                           "%s", kh_backup_reader_error(rd));
                        break;
                }
                if (k == 0)
                        break;
        }
        if (x.fd >= 0)
                (void) close(x.fd);
        kh_buf_free(&x.buf);
        for (size_t i = 0; r == 0 && i < json_array_size(x.files); i++)
                if (!x.seen[i])
                        r = refuse(err, -EBADMSG, "damaged", "the manifest lists %s, which the "
                                   "file does not hold",
                                   json_string_value(json_object_get(json_array_get(x.files, i),
                                                                     "name")));
        if (r == 0 && !x.db_seen)
                r = refuse(err, -EBADMSG, "damaged", "the backup holds no database");
        if (r == 0) {
                r = kh_backup_manifest_count(db_path, &tenants, &records, &schema, why,
                                             sizeof(why));
                if (r == -ENOMEM)
                        r = refuse(err, r, "internal_error", "out of memory");
                else if (r != 0)
                        r = refuse(err, -EBADMSG, "damaged", "the database snapshot: %s", why);
        }
        if (r == 0 &&
            (!json_equal(tenants, json_object_get(x.manifest, "tenants")) ||
             (json_int_t) records != json_integer_value(json_object_get(x.manifest, "records")) ||
             schema != json_integer_value(json_object_get(x.manifest, "schema_version"))))
                r = refuse(err, -EBADMSG, "damaged",
                           "the database snapshot does not hold what the manifest says");
        if (r == 0)
                *ret = (struct kh_backup_summary) {
                        .created = h.created, .tenants = json_array_size(tenants),
                        .records = records, .bytes = (uint64_t) st.st_size,
                };
        json_decref(tenants);
        json_decref(x.manifest);
        free(x.seen);
        return r;
}

int kh_backup_verify(const char *path, const struct kh_config_keystore *secret,
                     struct kh_backup_summary *ret, struct kh_backup_error *err) {
        const char *tmp = getenv("TMPDIR");
        KH_CLEANUP(kh_closep) int dirfd = -1;
        char scratch[4096];
        int r;

        if (snprintf(scratch, sizeof(scratch), "%s/keyhold-verify-XXXXXX",
                     tmp && *tmp ? tmp : "/tmp") >= (int) sizeof(scratch))
                return refuse(err, -ENAMETOOLONG, "file_error", "TMPDIR is too long");
        if (!mkdtemp(scratch))
                return refuse(err, -errno, "file_error", "cannot create a scratch folder in %s: %s",
                              tmp && *tmp ? tmp : "/tmp", strerror(errno));
        dirfd = open(scratch, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                r = refuse(err, -errno, "file_error", "cannot open %s: %s", scratch, strerror(errno));
        else
                r = run(path, secret, dirfd, scratch, false, ret, err);
        rm_tree(scratch);
        return r;
}

/* Whether dir is absent or an empty folder. */
static int dir_is_free(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;
        int r = 0;

        if (!d)
                return errno == ENOENT ? 0 : errno == ENOTDIR ? -ENOTEMPTY : -errno;
        while ((de = readdir(d)))
                if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0) {
                        r = -ENOTEMPTY;
                        break;
                }
        (void) closedir(d);
        return r;
}

/* dir_is_free(), err filled when not: "DIR is not empty" and why (not_empty). */
static int dir_free_or_refuse(const char *dir, const char *why, struct kh_backup_error *err) {
        int r = dir_is_free(dir);

        if (r == -ENOTEMPTY)
                return refuse(err, r, "not_empty", "%s is not empty%s%s", dir,
                              why[0] == ':' ? "" : " ", why);
        if (r < 0)
                return refuse(err, r, "file_error", "cannot read %s: %s", dir, strerror(-r));
        return 0;
}

static int fsync_path(const char *path) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC), r = 0;

        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                r = -errno;
        (void) close(fd);
        return r;
}

static int sync_dir(const char *path, const struct stat *st, int type, struct FTW *f) {
        (void) st, (void) f;
        return type == FTW_DP ? fsync_path(path) : 0;
}

/* Makes the restore in tmp appear as dir, durably: every folder synced before the one
 * rename, the parent after it. */
static int finish(const char *tmp, const char *dir, struct kh_backup_error *err) {
        KH_CLEANUP_FREE char *parent = strdup(dir);
        int r;

        if (!parent)
                return refuse(err, -ENOMEM, "internal_error", "out of memory");
        if (nftw(tmp, sync_dir, 16, FTW_DEPTH | FTW_PHYS) != 0)
                return refuse(err, -EIO, "file_error", "cannot sync %s", tmp);
        if (rename(tmp, dir) < 0) {
                r = -errno;
                if (r == -ENOTEMPTY || r == -EEXIST || r == -ENOTDIR)
                        return refuse(err, -ENOTEMPTY, "not_empty", "%s is no longer empty; "
                                      "nothing was written", dir);
                return refuse(err, r, "file_error", "cannot rename %s to %s: %s", tmp, dir,
                              strerror(-r));
        }
        (void) fsync_path(dirname(parent));
        return 0;
}

int kh_backup_restore(const char *path, const struct kh_config_keystore *secret, const char *dir,
                      struct kh_backup_summary *ret, struct kh_backup_error *err) {
        return kh_backup_restore_load(path, secret, dir, NULL, NULL, ret, err);
}

/* The checked database of the folder tmp to load(), then gone from the folder. */
static int load_db(const char *tmp, kh_backup_load_fn load, void *userdata,
                   struct kh_backup_error *err) {
        char db[4096];
        int r;

        if (snprintf(db, sizeof(db), "%s/" DB_NAME, tmp) >= (int) sizeof(db))
                return refuse(err, -ENAMETOOLONG, "file_error", "%s: name too long", tmp);
        r = load(db, userdata, err);
        if (r == 0 && unlink(db) < 0)
                r = refuse(err, -errno, "file_error", "cannot remove %s: %s", db, strerror(errno));
        return r;
}

int kh_backup_restore_load(const char *path, const struct kh_config_keystore *secret,
                           const char *dir, kh_backup_load_fn load, void *userdata,
                           struct kh_backup_summary *ret, struct kh_backup_error *err) {
        KH_CLEANUP(kh_closep) int dirfd = -1;
        KH_CLEANUP_FREE char *target = NULL, *parent_copy = NULL, *base_copy = NULL;
        char tmp[4096];
        bool loaded = false;
        size_t len;
        int r;

        target = strdup(dir);
        if (!target)
                return refuse(err, -ENOMEM, "internal_error", "out of memory");
        for (len = strlen(target); len > 1 && target[len - 1] == '/'; len--)
                target[len - 1] = 0;
        r = dir_free_or_refuse(target, "(restore needs an empty or absent folder); nothing "
                                       "was written", err);
        if (r < 0)
                return r;
        parent_copy = strdup(target);
        base_copy = strdup(target);
        if (!parent_copy || !base_copy)
                return refuse(err, -ENOMEM, "internal_error", "out of memory");
        if (snprintf(tmp, sizeof(tmp), "%s/.%s.restore-XXXXXX", dirname(parent_copy),
                     basename(base_copy)) >= (int) sizeof(tmp))
                return refuse(err, -ENAMETOOLONG, "file_error", "%s: name too long", target);
        if (!mkdtemp(tmp))
                return refuse(err, -errno, "file_error", "cannot create a folder beside %s: %s",
                              target, strerror(errno));
        dirfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0)
                r = refuse(err, -errno, "file_error", "cannot open %s: %s", tmp, strerror(errno));
        else
                r = run(path, secret, dirfd, tmp, true, ret, err);
        if (r == 0 && load) {
                r = load_db(tmp, load, userdata, err);
                loaded = r == 0;
        }
        if (r == 0)
                r = finish(tmp, target, err);
        if (r < 0 && loaded) {
                /* the database holds the backup now: tmp is the only copy of its key store */
                len = strlen(err->message);
                (void) snprintf(err->message + len, sizeof(err->message) - len,
                                "; the database is loaded and %s keeps the key store: make %s "
                                "empty or absent and run the command again to finish",
                                tmp, target);
                return r;
        }
        if (r < 0)
                rm_tree(tmp);
        return r;
}

int kh_backup_restore_finish(const char *tmp, const char *dir, struct kh_backup_error *err) {
        char db[4096];
        struct stat st;
        int r;

        if (stat(tmp, &st) < 0 || !S_ISDIR(st.st_mode))
                return refuse(err, -ENOENT, "file_error", "%s is gone", tmp);
        r = dir_free_or_refuse(dir, ": make it empty or absent and run the command again", err);
        if (r < 0)
                return r;
        /* a load that committed may have been stopped before it removed the file */
        if (snprintf(db, sizeof(db), "%s/" DB_NAME, tmp) >= (int) sizeof(db))
                return refuse(err, -ENAMETOOLONG, "file_error", "%s: name too long", tmp);
        if (unlink(db) < 0 && errno != ENOENT)
                return refuse(err, -errno, "file_error", "cannot remove %s: %s", db,
                              strerror(errno));
        return finish(tmp, dir, err);
}
