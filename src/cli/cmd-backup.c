/* keyhold backup create | verify | restore: a whole server's backup through the admin socket
 * (POST /server/backup), and opening one offline with the key store's secret (backup/open.h).
 * docs/backup.md says what a backup holds and how to restore one. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "backup/open.h"
#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/outfile.h"
#include "common/buf.h"
#include "common/errors.h"
#include "common/file.h"
#include "common/parse.h"
#include "crypto/encoding.h"
#include "crypto/stream.h"
#include "store/store.h"

#define PASSPHRASE_MAX 1024

extern char **environ;

/* ---- create ---- */

struct create_state {
        FILE *out;
        struct kh_sha256_ctx *sha;
        uint64_t bytes, total;     /* total: Content-Length, 0 if unknown */
        bool progress;
        int write_errno;
        time_t shown;
};

static void show_progress(struct create_state *s, bool done) {
        time_t now;

        if (!s->progress)
                return;
        now = time(NULL);
        if (!done && now == s->shown)
                return;
        s->shown = now;
        if (s->total)
                fprintf(stderr, "\rbackup: %.1f of %.1f MiB (%u%%)", s->bytes / 1048576.0,
                        s->total / 1048576.0,
                        (unsigned) (s->bytes >= s->total ? 100 : s->bytes * 100 / s->total));
        else
                fprintf(stderr, "\rbackup: %.1f MiB", s->bytes / 1048576.0);
        if (done)
                fputc('\n', stderr);
}

static int create_sink(const uint8_t *p, size_t n, void *userdata) {
        struct create_state *s = userdata;

        if (fwrite(p, 1, n, s->out) != n) {
                s->write_errno = errno ? errno : EIO;
                return -1;
        }
        kh_sha256_update(s->sha, p, n);
        s->bytes += n;
        show_progress(s, false);
        return 0;
}

static bool parse_count(const char *s, uint64_t *ret) {
        return kh_parse_u64(s, strlen(s), UINT64_MAX, ret) == 0;
}

int kh_cmd_backup_create(struct kh_cli *cli) {
        const char *file = kh_cli_operand(cli, 0);
        bool force = kh_cli_flag(cli, "force");
        KH_CLEANUP(kh_outfile_freep) struct kh_outfile *o = NULL;
        KH_CLEANUP(kh_sha256_freep) struct kh_sha256_ctx *sha = NULL;
        json_auto_t *error = NULL, *out = NULL;
        struct kh_client_header headers[] = {
                { .name = "x-keyhold-backup-tenants" },
                { .name = "x-keyhold-backup-records" },
                { .name = "content-length" },
        };
        struct create_state s = { 0 };
        uint8_t digest[KH_SHA256_LEN];
        char hex[2 * KH_SHA256_LEN + 1];
        uint64_t tenants, records;
        struct kh_client *c;
        struct stat st;
        int r;

        r = kh_cli_connect(cli, &c);
        if (r != 0)
                return r;
        if (!kh_client_is_socket(c))
                return kh_cli_usage_error(cli, "a backup of the whole server is made only through "
                                               "the admin socket (the operator), not over --url");
        if (!force && lstat(file, &st) == 0)
                return kh_cli_fail(cli, "file_exists", "%s exists; --force replaces it", file);
        if (kh_sha256_new(&sha) < 0)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = kh_outfile_open(file, &o);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot create a file beside %s: %s", file,
                                   strerror(-r));

        /* An interrupted download leaves no FILE: the transfer stops, the temporary file goes. */
        kh_cli_catch_signals();
        s = (struct create_state) { .out = kh_outfile_stream(o), .sha = sha,
                                    .progress = isatty(STDERR_FILENO) };
        r = kh_client_download(c, KH_CLIENT_SERVER, "/server/backup", create_sink, &s, headers,
                               KH_ELEMENTSOF(headers), &error);
        if (s.progress && s.bytes)
                show_progress(&s, true);
        if (r == -ECANCELED || kh_cli_interrupted())
                return kh_cli_fail(cli, "interrupted", "interrupted; nothing written");
        if (r == -EIO)
                return kh_cli_fail(cli, "file_error", "cannot write beside %s: %s", file,
                                   strerror(s.write_errno));
        if (r < 0)
                return kh_cli_fail_with(cli, error);
        if (!parse_count(headers[0].value, &tenants) || !parse_count(headers[1].value, &records) ||
            (headers[2].value[0] && (!parse_count(headers[2].value, &s.total) || s.total != s.bytes)))
                return kh_cli_fail(cli, "bad_response", "the server's answer is not a whole "
                                                        "backup; nothing written");
        r = kh_outfile_commit(o, force);
        if (r == -EEXIST)
                return kh_cli_fail(cli, "file_exists", "%s appeared meanwhile; --force replaces it",
                                   file);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot write %s: %s", file, strerror(-r));

        kh_sha256_final(sha, digest);
        kh_hex_encode(digest, sizeof(digest), hex);
        if (!kh_cli_json(cli)) {
                printf("Backup written to %s\n", file);
                printf("  tenants  %" PRIu64 "\n  records  %" PRIu64 "\n  bytes    %" PRIu64
                       "\n  sha256   %s\n",
                       tenants, records, s.bytes, hex);
                printf("Check it with: keyhold backup verify %s --master-key-file FILE\n", file);
                return 0;
        }
        out = json_pack("{ss sI sI ss sI}", "file", file, "tenants", (json_int_t) tenants,
                        "records", (json_int_t) records, "sha256", hex, "bytes",
                        (json_int_t) s.bytes);
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return kh_cli_print_json(cli, out);
}

/* ---- the key store's secret, for verify and restore ---- */

struct secret {
        struct kh_config_keystore ks;      /* master_key_file or passphrase */
        struct kh_buf pass;                /* the passphrase's bytes, wiped */
        struct kh_config *cfg;             /* --config's, when read */
};

static void secret_clear(struct secret *s) {
        kh_buf_free(&s->pass);
        kh_config_free(s->cfg);
}

/* The passphrase from the terminal, without echo. */
static int prompt_passphrase(struct secret *s, bool token) {
        struct termios old, quiet;
        char line[PASSPHRASE_MAX + 2];
        FILE *tty = fopen("/dev/tty", "r+e");
        size_t len;
        int r = 0;

        if (!tty)
                return -ENOTTY;
        fputs(token ? "HSM user PIN: " : "Key store passphrase: ", tty);
        fflush(tty);
        if (tcgetattr(fileno(tty), &old) == 0) {
                quiet = old;
                quiet.c_lflag &= ~(tcflag_t) ECHO;
                (void) tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
        }
        if (!fgets(line, sizeof(line), tty))
                r = -EIO;
        (void) tcsetattr(fileno(tty), TCSAFLUSH, &old);
        fputc('\n', tty);
        fclose(tty);
        if (r == 0) {
                len = strcspn(line, "\n");
                line[len] = 0;
                r = kh_buf_append(&s->pass, line, len + 1);
        }
        OPENSSL_cleanse(line, sizeof(line));
        return r;
}

/* The file's content minus one trailing newline into s->pass (NUL-terminated). Returns 0
 * or the exit status. */
static int secret_file(struct kh_cli *cli, struct secret *s, const char *path) {
        int r = kh_file_read(AT_FDCWD, path, 0, PASSPHRASE_MAX + 1, &s->pass);

        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot read %s: %s", path,
                                   r == -EFBIG ? "larger than a passphrase" : strerror(-r));
        if (s->pass.len && s->pass.data[s->pass.len - 1] == '\n')
                s->pass.data[--s->pass.len] = 0;
        if (s->pass.len == 0 || memchr(s->pass.data, 0, s->pass.len))
                return kh_cli_fail(cli, "bad_secret", "%s is empty or holds a NUL byte", path);
        return kh_buf_append(&s->pass, "", 1) < 0
                       ? kh_cli_fail(cli, "internal_error", "out of memory") : 0;
}

/* Returns 0, or the exit status after reporting why there is no secret. --config gives the
 * key store (an HSM's module, token and PIN); --master-key-file or --passphrase-file, given
 * with it or alone, give the secret (for an HSM store: the PIN, DESIGN.md). */
static int secret_get(struct kh_cli *cli, struct secret *s) {
        const char *key_file = kh_cli_value(cli, "master-key-file");
        const char *pass_file = kh_cli_value(cli, "passphrase-file");
        const char *config = kh_cli_value(cli, "config");
        struct kh_config_error cerr = { 0 };
        bool token;
        int r;

        kh_buf_init(&s->pass, PASSPHRASE_MAX + 2, true);
        if (key_file && pass_file)
                return kh_cli_usage_error(cli, "give --master-key-file or --passphrase-file, "
                                               "not both");
        if (config) {
                r = kh_config_load(config, environ, &s->cfg, &cerr);
                if (r == -EINVAL)
                        return kh_cli_fail(cli, "bad_config", "%s: %s: %s", config, cerr.key,
                                           cerr.reason);
                if (r < 0)
                        return kh_cli_fail(cli, "file_error", "cannot read %s: %s", config,
                                           strerror(-r));
                s->ks = s->cfg->keystore;
        }
        token = s->ks.driver && strcmp(s->ks.driver, "pkcs11") == 0;
        if (key_file && !token) {
                s->ks.master_key_file = (char *) (uintptr_t) key_file;
                s->ks.passphrase = NULL;
                return 0;
        }
        if (key_file || pass_file) {
                r = secret_file(cli, s, key_file ? key_file : pass_file);
                if (r != 0)
                        return r;
        } else if (config && (token ? (s->ks.pin && s->ks.pin[0]) || s->ks.pin_file
                                    : s->ks.master_key_file || s->ks.passphrase)) {
                return 0;        /* the configuration's own secret */
        } else if (!config && !isatty(STDIN_FILENO)) {
                return kh_cli_usage_error(cli, "only the key store's secret opens a backup: give "
                                               "--master-key-file, --passphrase-file or --config");
        } else if (!isatty(STDIN_FILENO)) {
                return kh_cli_usage_error(cli, "%s names no key store secret: give "
                                               "--master-key-file or --passphrase-file", config);
        } else if (prompt_passphrase(s, token) < 0) {
                return kh_cli_fail(cli, "bad_secret", "no passphrase read from the terminal");
        }
        if (token) {
                s->ks.pin = (char *) s->pass.data;
                s->ks.pin_file = NULL;
        } else {
                s->ks.passphrase = (char *) s->pass.data;
                s->ks.master_key_file = NULL;
        }
        return 0;
}

static int report(struct kh_cli *cli, const struct kh_backup_error *err) {
        return kh_cli_fail(cli, err->code ? err->code : "internal_error", "%s", err->message);
}

int kh_cmd_backup_verify(struct kh_cli *cli) {
        const char *file = kh_cli_operand(cli, 0);
        struct secret s __attribute__((cleanup(secret_clear))) = { 0 };
        struct kh_backup_error err = { 0 };
        struct kh_backup_summary sum;
        json_auto_t *out = NULL;
        int r;

        r = secret_get(cli, &s);
        if (r != 0)
                return r;
        r = kh_backup_verify(file, &s.ks, &sum, &err);
        if (r < 0)
                return report(cli, &err);
        if (!kh_cli_json(cli)) {
                printf("%s is a whole backup that this secret opens: %zu tenants, %" PRIu64
                       " records\n", file, sum.tenants, sum.records);
                return 0;
        }
        out = json_pack("{sb sI sI sI}", "ok", 1, "tenants", (json_int_t) sum.tenants, "records",
                        (json_int_t) sum.records, "created", (json_int_t) sum.created);
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return kh_cli_print_json(cli, out);
}

/* ---- restore into a PostgreSQL database (--into-storage) ---- */

struct load {
        struct kh_store *store;
        const char *config, *file;
        const struct kh_backup_summary *sum;   /* filled before the load */
        struct kh_store_load_info info;
};

/* What the database keeps of a restore until DIR holds its key store (docs/backup.md
 * "PostgreSQL"): the backup file's sha256, its counts and the folder that holds the key
 * store, "v1 HEX TENANTS RECORDS PATH". */
struct pending {
        char sha256[2 * KH_SHA256_LEN + 1];
        size_t tenants;
        uint64_t records;
        char folder[KH_STORE_META_VALUE_MAX];
};

static int file_sha256(const char *path, char hex[static 2 * KH_SHA256_LEN + 1]) {
        KH_CLEANUP(kh_sha256_freep) struct kh_sha256_ctx *sha = NULL;
        KH_CLEANUP(kh_closep) int fd = open(path, O_RDONLY | O_CLOEXEC);
        uint8_t buf[65536], digest[KH_SHA256_LEN];
        ssize_t n;

        if (fd < 0)
                return -errno;
        if (kh_sha256_new(&sha) < 0)
                return -ENOMEM;
        while ((n = read(fd, buf, sizeof(buf))) != 0) {
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0)
                        kh_sha256_update(sha, buf, (size_t) n);
        }
        kh_sha256_final(sha, digest);
        kh_hex_encode(digest, sizeof(digest), hex);
        return 0;
}

/* The pending mark of the restore whose database snapshot is db_path (in its folder). */
static int pending_of(const struct load *l, const char *db_path, char *out, size_t size,
                      struct kh_backup_error *err) {
        KH_CLEANUP_FREE char *folder = NULL;
        char hex[2 * KH_SHA256_LEN + 1];
        const char *slash = strrchr(db_path, '/');
        KH_CLEANUP_FREE char *dir = strndup(db_path, slash ? (size_t) (slash - db_path) : 0);
        int r;

        if (!dir)
                return -ENOMEM;
        folder = realpath(*dir ? dir : ".", NULL);
        r = folder ? file_sha256(l->file, hex) : -errno;
        if (r == 0 && snprintf(out, size, "v1 %s %zu %" PRIu64 " %s", hex, l->sum->tenants,
                               l->sum->records, folder) >= (int) size)
                r = -ENAMETOOLONG;
        if (r < 0) {
                err->code = "file_error";
                (void) snprintf(err->message, sizeof(err->message),
                                "cannot note the restore's folder beside %s: %s", db_path,
                                strerror(-r));
        }
        return r;
}

static bool pending_parse(const struct kh_buf *v, struct pending *p) {
        char text[KH_STORE_META_VALUE_MAX + 1];
        int at = 0;

        if (v->len >= sizeof(text) || memchr(v->data, 0, v->len))
                return false;
        memcpy(text, v->data, v->len);
        text[v->len] = 0;
        if (sscanf(text, "v1 %64[0-9a-f] %zu %" SCNu64 " %n", p->sha256, &p->tenants,
                   &p->records, &at) != 3 || at == 0 || text[at] != '/')
                return false;
        (void) snprintf(p->folder, sizeof(p->folder), "%s", text + at);
        return strlen(p->sha256) == 2 * KH_SHA256_LEN;
}

static int load_refusal(struct load *l, int r, struct kh_backup_error *err) {
        const char *why = kh_store_last_error(l->store);

        err->code = r == -ENOTEMPTY      ? "not_empty"
                    : r == -EPROTO       ? "schema_mismatch"
                    : r == -EBADMSG      ? "damaged"
                                         : "storage_error";
        if (r == -ENOTEMPTY)
                (void) snprintf(err->message, sizeof(err->message),
                                "the database of %s is not empty (%s): restore needs a database "
                                "without keyhold data; nothing was written", l->config, why);
        else
                (void) snprintf(err->message, sizeof(err->message),
                                "loading the database of %s failed, nothing of it kept: %s (%s)",
                                l->config, kh_strerror(r), why);
        return r;
}

static int load_into_storage(const char *db_path, void *userdata, struct kh_backup_error *err) {
        struct load *l = userdata;
        char pending[KH_STORE_META_VALUE_MAX + 1];
        int r = pending_of(l, db_path, pending, sizeof(pending), err);

        if (r < 0)
                return r;
        r = kh_store_load(l->store, db_path, pending, &l->info);
        return r < 0 ? load_refusal(l, r, err) : 0;
}

/* The database of --config, held alone (no keyholdd may serve it meanwhile). Returns 0 or
 * the exit status. */
static int open_target(struct kh_cli *cli, const struct secret *s, struct load *l) {
        int r;

        if (!s->cfg || !s->cfg->storage.driver ||
            strcmp(s->cfg->storage.driver, "postgresql") != 0)
                return kh_cli_usage_error(cli, "--into-storage loads the database into the "
                                               "PostgreSQL [storage] of --config; for SQLite, "
                                               "restore with --data alone");
        r = kh_store_open(&s->cfg->storage, &l->store);
        if (r < 0)
                return kh_cli_fail(cli, "storage_error", "cannot open the database of %s: %s",
                                   l->config, strerror(-r));
        r = kh_store_exclusive(l->store);
        if (r == -EWOULDBLOCK)
                return kh_cli_fail(cli, "server_running",
                                   "a keyholdd (or another keyhold tool) is connected to the "
                                   "database of %s: stop every keyholdd on it first; nothing "
                                   "was written",
                                   l->config);
        if (r < 0)
                return kh_cli_fail(cli, "storage_error", "cannot lock the database of %s: %s (%s)",
                                   l->config, kh_strerror(r), kh_store_last_error(l->store));
        return 0;
}

/* A restore of this file whose load committed but whose DIR did not receive the key store
 * (a crash, DIR made non-empty meanwhile): finishes it. Returns 0, *resumed saying whether
 * there was one (sum then filled), or the exit status. */
static int resume(struct kh_cli *cli, struct load *l, const char *dir,
                  struct kh_backup_summary *sum, bool *resumed) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        struct kh_backup_error err = { 0 };
        char hex[2 * KH_SHA256_LEN + 1];
        struct pending p;
        int r;

        kh_buf_init(&v, KH_STORE_META_VALUE_MAX, false);
        r = kh_store_meta_get(l->store, KH_STORE_META_RESTORE_PENDING, &v);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return kh_cli_fail(cli, "storage_error", "cannot read the database of %s: %s (%s)",
                                   l->config, kh_strerror(r), kh_store_last_error(l->store));
        if (!pending_parse(&v, &p))
                return kh_cli_fail(cli, "restore_pending", "the database of %s holds an "
                                   "unfinished restore of an unreadable form", l->config);
        r = file_sha256(l->file, hex);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot read %s: %s", l->file,
                                   strerror(-r));
        if (strcmp(hex, p.sha256) != 0)
                return kh_cli_fail(cli, "restore_pending",
                                   "the database of %s holds an unfinished restore of another "
                                   "backup (sha256 %s), whose key store is in %s: run `keyhold "
                                   "backup restore` with that backup again to finish it; "
                                   "nothing was written",
                                   l->config, p.sha256, p.folder);
        r = kh_backup_restore_finish(p.folder, dir, &err);
        if (r == -ENOENT)
                return kh_cli_fail(cli, "restore_pending",
                                   "the database of %s holds an unfinished restore of %s, but "
                                   "%s, which held its key store, is gone: the database cannot "
                                   "serve without it; empty the database and restore again",
                                   l->config, l->file, p.folder);
        if (r < 0)
                return report(cli, &err);
        r = kh_store_load_done(l->store);
        if (r < 0)
                return kh_cli_fail(cli, "storage_error", "%s holds the key store, but the "
                                   "database of %s could not be told so: %s (%s); run the "
                                   "command again",
                                   dir, l->config, kh_strerror(r), kh_store_last_error(l->store));
        *sum = (struct kh_backup_summary) { .tenants = p.tenants, .records = p.records };
        *resumed = true;
        return 0;
}

int kh_cmd_backup_restore(struct kh_cli *cli) {
        const char *file = kh_cli_operand(cli, 0), *dir = kh_cli_value(cli, "data");
        bool into = kh_cli_flag(cli, "into-storage");
        struct secret s __attribute__((cleanup(secret_clear))) = { 0 };
        struct kh_backup_summary sum;
        struct load l = { .config = kh_cli_value(cli, "config"), .file = file, .sum = &sum };
        struct kh_backup_error err = { 0 };
        json_auto_t *out = NULL;
        bool resumed = false;
        int r;

        if (!dir || !*dir)
                return kh_cli_usage_error(cli, "--data DIR names the (empty) folder to restore into");
        if (into && !l.config)
                return kh_cli_usage_error(cli, "--into-storage needs --config (keyholdd's "
                                               "configuration, whose [storage] receives the "
                                               "database)");
        r = secret_get(cli, &s);
        if (r != 0)
                return r;
        if (into) {
                r = open_target(cli, &s, &l);
                if (r != 0) {
                        l.store = kh_store_close(l.store);
                        return r;
                }
                r = resume(cli, &l, dir, &sum, &resumed);
                if (r != 0) {
                        l.store = kh_store_close(l.store);
                        return r;
                }
                if (!resumed)
                        r = kh_backup_restore_load(file, &s.ks, dir, load_into_storage, &l, &sum,
                                                   &err);
                /* dir holds the key store now: the database may serve */
                if (r == 0 && !resumed && kh_store_load_done(l.store) < 0) {
                        l.store = kh_store_close(l.store);
                        return kh_cli_fail(cli, "storage_error", "%s holds the key store, but "
                                           "the database of %s could not be told so; run the "
                                           "command again", dir, l.config);
                }
                l.store = kh_store_close(l.store);
        } else {
                r = kh_backup_restore(file, &s.ks, dir, &sum, &err);
        }
        if (r < 0)
                return report(cli, &err);
        if (into && !kh_cli_json(cli)) {
                if (resumed)
                        printf("Finished an interrupted restore of %s.\n", file);
                printf("Restored %zu tenants, %" PRIu64 " records into the database of %s and "
                       "the key store into %s/keystore\n", sum.tenants, sum.records, l.config,
                       dir);
                printf("Point [keystore] path at %s/keystore (for the file key store) and start "
                       "keyholdd with %s.\n", dir, l.config);
                return 0;
        }
        if (into) {
                out = json_pack("{sb ss ss sI sI sb}", "ok", 1, "data", dir, "storage",
                                "postgresql", "tenants", (json_int_t) sum.tenants, "records",
                                (json_int_t) sum.records, "resumed", resumed);
                if (!out)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
                return kh_cli_print_json(cli, out);
        }
        if (!kh_cli_json(cli)) {
                printf("Restored %zu tenants, %" PRIu64 " records into %s\n", sum.tenants,
                       sum.records, dir);
                if (s.ks.driver && strcmp(s.ks.driver, "pkcs11") == 0)
                        printf("Point [storage] path at %s/keyhold.db and start keyholdd with the\n"
                               "same [keystore] (the same token and key_label_prefix).\n", dir);
                else
                        printf("Point [storage] path at %s/keyhold.db and [keystore] path at "
                               "%s/keystore,\nwith the same master key file or passphrase.\n",
                               dir, dir);
                return 0;
        }
        out = json_pack("{sb ss sI sI}", "ok", 1, "data", dir, "tenants", (json_int_t) sum.tenants,
                        "records", (json_int_t) sum.records);
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return kh_cli_print_json(cli, out);
}
