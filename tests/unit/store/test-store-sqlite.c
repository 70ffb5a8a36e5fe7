/* The store on SQLite: the conformance suite plus what only SQLite shows (file mode, WAL,
 * "reads never write" seen through PRAGMA data_version, damaged rows, newer schemas). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/buf.h"
#include "common/errors.h"
#include "conformance.h"
#include "store/store.h"

/* A stand-in for a DEK signature: the store keeps signatures as opaque bytes. */
static const uint8_t SIG[] = "signature";

static int sqlite_create(struct kh_config_storage *cfg) {
        const char *tmp = getenv("TMPDIR");
        char dir[512];

        (void) snprintf(dir, sizeof(dir), "%s/kh-store-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(dir))
                return -errno;
        cfg->driver = strdup("sqlite");
        if (asprintf(&cfg->path, "%s/store.db", dir) < 0)
                cfg->path = NULL;
        cfg->url = NULL;
        if (!cfg->driver || !cfg->path) {
                free(cfg->driver);
                free(cfg->path);
                (void) rmdir(dir);
                return -ENOMEM;
        }
        return 0;
}

static void sqlite_destroy(struct kh_config_storage *cfg) {
        static const char *const suffixes[] = { "", "-wal", "-shm", "-journal" };
        char p[600];
        char *slash;

        for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
                (void) snprintf(p, sizeof(p), "%s%s", cfg->path, suffixes[i]);
                (void) unlink(p);
        }
        slash = strrchr(cfg->path, '/');
        if (slash) {
                *slash = 0;
                (void) rmdir(cfg->path);
        }
        free(cfg->path);
        free(cfg->driver);
        *cfg = (struct kh_config_storage) { 0 };
}

/* A connection of our own, beside the store's, to look at the file directly. */
static sqlite3 *raw_open(const char *path) {
        sqlite3 *db = NULL;

        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
                (void) sqlite3_close(db);
                return NULL;
        }
        (void) sqlite3_busy_timeout(db, 10000);
        return db;
}

static int raw_exec(sqlite3 *db, const char *sql) {
        return sqlite3_exec(db, sql, NULL, NULL, NULL);
}

static int raw_int(sqlite3 *db, const char *sql, sqlite3_int64 *ret) {
        sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc == SQLITE_OK) {
                rc = sqlite3_step(st);
                if (rc == SQLITE_ROW) {
                        *ret = sqlite3_column_int64(st, 0);
                        rc = SQLITE_OK;
                }
        }
        (void) sqlite3_finalize(st);
        return rc;
}

static int sqlite_migration_count(const struct kh_config_storage *cfg, int version,
                                  uint64_t *ret_count) {
        sqlite3 *db = raw_open(cfg->path);
        char sql[128];
        sqlite3_int64 n = -1;
        int rc;

        if (!db)
                return -EIO;
        (void) snprintf(sql, sizeof(sql),
                        "SELECT COUNT(*) FROM schema_migrations WHERE version = %d", version);
        rc = raw_int(db, sql, &n);
        (void) sqlite3_close(db);
        if (rc != SQLITE_OK || n < 0)
                return -EIO;
        *ret_count = (uint64_t) n;
        return 0;
}

static int sqlite_clear_signatures(const struct kh_config_storage *cfg, const char *tenant) {
        sqlite3 *db = raw_open(cfg->path);
        sqlite3_stmt *st = NULL;
        int rc;

        if (!db)
                return -EIO;
        rc = sqlite3_prepare_v2(db, "UPDATE tenant_keys SET signature = NULL WHERE tenant = ?1",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        (void) sqlite3_finalize(st);
        (void) sqlite3_close(db);
        return rc == SQLITE_DONE ? 0 : -EIO;
}

static const struct kh_store_test_backend sqlite_backend = {
        .driver = "sqlite",
        .create = sqlite_create,
        .destroy = sqlite_destroy,
        .migration_count = sqlite_migration_count,
        .clear_signatures = sqlite_clear_signatures,
};

struct fixture {
        struct kh_config_storage cfg;
        struct kh_store *s;
        sqlite3 *raw;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f || sqlite_create(&f->cfg) < 0)
                goto fail;
        if (kh_store_open(&f->cfg, &f->s) < 0) {
                sqlite_destroy(&f->cfg);
                goto fail;
        }
        f->raw = raw_open(f->cfg.path);
        if (!f->raw) {
                f->s = kh_store_close(f->s);
                sqlite_destroy(&f->cfg);
                goto fail;
        }
        *state = f;
        return 0;
fail:
        free(f);
        return -1;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        (void) sqlite3_close(f->raw);
        f->s = kh_store_close(f->s);
        sqlite_destroy(&f->cfg);
        free(f);
        return 0;
}

static void test_new_file_is_private_and_in_wal_mode(void **state) {
        struct fixture *f = *state;
        sqlite3_stmt *st = NULL;
        struct stat sb;

        assert_int_equal(stat(f->cfg.path, &sb), 0);
        assert_int_equal(sb.st_mode & 07777, 0600);

        assert_int_equal(sqlite3_prepare_v2(f->raw, "PRAGMA journal_mode", -1, &st, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *) sqlite3_column_text(st, 0), "wal");
        (void) sqlite3_finalize(st);
}

static sqlite3_int64 data_version(sqlite3 *db) {
        sqlite3_int64 v = -1;

        assert_int_equal(raw_int(db, "PRAGMA data_version", &v), SQLITE_OK);
        return v;
}

static int count_keys(const struct kh_tenant_key *key, void *userdata) {
        (void) key;
        (*(int *) userdata)++;
        return 0;
}

/* Version 1 of acme, its DEK "wrapped" with a stand-in signature. */
static int insert_wrapped(struct kh_store *s) {
        return kh_store_tenant_key_insert_if_absent(s, "acme", 1, KH_KEY_ACTIVE,
                                                    (const uint8_t *) "wrapped", 7, SIG,
                                                    sizeof(SIG));
}

static int count_unsigned(const struct kh_tenant_key *key, void *userdata) {
        if (!key->signature && key->signature_len == 0)
                (*(int *) userdata)++;
        return 0;
}

static int copy_key(const struct kh_tenant_key *key, void *userdata) {
        struct {
                size_t len;
                uint8_t dek[64];
        } *out = userdata;

        if (key->wrapped_dek_len > sizeof(out->dek))
                return -ENOSPC;
        out->len = key->wrapped_dek_len;
        memcpy(out->dek, key->wrapped_dek, key->wrapped_dek_len);
        return 0;
}

/* PRAGMA data_version on another connection changes whenever any other connection
 * commits a change to the file. */
static void test_reads_never_write(void **state) {
        struct fixture *f = *state;
        struct kh_buf b;
        sqlite3_int64 before;
        uint32_t v = 0;
        uint64_t n = 0;
        int keys = 0;

        assert_int_equal(insert_wrapped(f->s), 1);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1,
                                                (const uint8_t *) "sealed", 6),
                         0);
        before = data_version(f->raw);

        kh_buf_init(&b, KH_SEALED_MAX, false);
        for (int i = 0; i < 20; i++) {
                kh_buf_reset(&b);
                assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v,
                                                     &b),
                                 0);
                assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u2", &v,
                                                     &b),
                                 -ENOENT);
        }
        kh_buf_free(&b);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_keys, &keys), 0);
        assert_int_equal(keys, 1);
        assert_int_equal(kh_store_record_count(f->s, "acme", 1, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(kh_store_ping(f->s), 0);
        assert_int_equal(data_version(f->raw), before);

        /* the probe does see a write, and a failed insert writes nothing either */
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1,
                                                (const uint8_t *) "sealed", 6),
                         -EEXIST);
        assert_int_equal(data_version(f->raw), before);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u1", 2,
                                             (const uint8_t *) "resealed", 8),
                         0);
        assert_int_not_equal(data_version(f->raw), before);
}

static void test_newer_schema_is_refused(void **state) {
        struct fixture *f = *state;
        struct kh_store *s = NULL;

        assert_int_equal(raw_exec(f->raw, "INSERT INTO schema_migrations VALUES (99, 0)"),
                         SQLITE_OK);
        assert_int_equal(kh_store_open(&f->cfg, &s), -EPROTO);
        assert_null(s);
}

static void test_damaged_rows_are_integrity_errors(void **state) {
        struct fixture *f = *state;
        struct kh_buf b;
        uint32_t v = 0xdeadbeef;
        int keys = 0;

        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1,
                                                (const uint8_t *) "sealed", 6),
                         0);
        assert_int_equal(insert_wrapped(f->s), 1);
        kh_buf_init(&b, KH_SEALED_MAX, false);

        assert_int_equal(raw_exec(f->raw, "UPDATE records SET blob = x''"), SQLITE_OK);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b),
                         -KH_E_INTEGRITY);
        assert_int_equal(raw_exec(f->raw, "UPDATE records SET blob = 'text'"), SQLITE_OK);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b),
                         -KH_E_INTEGRITY);
        assert_int_equal(raw_exec(f->raw, "UPDATE records SET blob = zeroblob(4097)"), SQLITE_OK);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b),
                         -KH_E_INTEGRITY);
        assert_int_equal(v, 0xdeadbeef);
        assert_int_equal(b.len, 0);
        assert_int_equal(raw_exec(f->raw, "UPDATE records SET blob = zeroblob(4096)"), SQLITE_OK);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b), 0);
        assert_int_equal(b.len, 4096);
        kh_buf_free(&b);

        assert_int_equal(raw_exec(f->raw, "UPDATE tenant_keys SET wrapped_dek = x''"), SQLITE_OK);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_keys, &keys), -KH_E_INTEGRITY);
        assert_int_equal(raw_exec(f->raw, "UPDATE tenant_keys SET wrapped_dek = zeroblob(1025)"),
                         SQLITE_OK);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_keys, &keys), -KH_E_INTEGRITY);
        assert_int_equal(keys, 0);
        assert_int_equal(raw_exec(f->raw, "UPDATE tenant_keys SET wrapped_dek = zeroblob(1024)"),
                         SQLITE_OK);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_keys, &keys), 0);
        assert_int_equal(keys, 1);

        /* a signature is a blob of 1..KH_STORE_SIGNATURE_MAX bytes, or NULL (unsigned); a
         * meta value a blob of 1..KH_STORE_META_VALUE_MAX bytes */
        static const struct {
                const char *sql;
                bool meta; /* damages meta, not tenant_keys */
        } damage[] = {
                { "UPDATE tenant_keys SET signature = x''", false },
                { "UPDATE tenant_keys SET signature = 'text'", false },
                { "UPDATE tenant_keys SET signature = 7", false },
                { "UPDATE tenant_keys SET signature = zeroblob(1025)", false },
                { "INSERT OR REPLACE INTO meta VALUES ('k', x'')", true },
                { "INSERT OR REPLACE INTO meta VALUES ('k', 'text')", true },
                { "INSERT OR REPLACE INTO meta VALUES ('k', zeroblob(1025))", true },
        };
        for (size_t i = 0; i < sizeof(damage) / sizeof(damage[0]); i++) {
                assert_int_equal(raw_exec(f->raw, damage[i].sql), SQLITE_OK);
                keys = 0;
                kh_buf_init(&b, KH_STORE_META_VALUE_MAX, false);
                if (damage[i].meta)
                        assert_int_equal(kh_store_meta_get(f->s, "k", &b), -KH_E_INTEGRITY);
                else
                        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_keys, &keys),
                                         -KH_E_INTEGRITY);
                assert_int_equal(keys, 0);
                assert_int_equal(b.len, 0);
                kh_buf_free(&b);
        }
        assert_int_equal(raw_exec(f->raw, "UPDATE tenant_keys SET signature = zeroblob(1024);"
                                          "INSERT OR REPLACE INTO meta VALUES ('k', x'01')"),
                         SQLITE_OK);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_keys, &keys), 0);
        assert_int_equal(keys, 1);
        kh_buf_init(&b, KH_STORE_META_VALUE_MAX, false);
        assert_int_equal(kh_store_meta_get(f->s, "k", &b), 0);
        assert_int_equal(b.len, 1);
        kh_buf_free(&b);
        assert_int_equal(raw_exec(f->raw, "UPDATE tenant_keys SET signature = NULL"), SQLITE_OK);
        keys = 0;
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_unsigned, &keys), 0);
        assert_int_equal(keys, 1);
}

/* A database of schema 2 (before signatures): its rows read back unsigned after the
 * upgrade, meta starts empty, and the store signs them on request. The schema-2 file is
 * made from a current one by undoing migration 3 by hand. */
static void test_schema_2_database_upgrades_with_unsigned_rows(void **state) {
        struct fixture *f = *state;
        struct {
                size_t len;
                uint8_t dek[64];
        } stored = { 0 };
        struct kh_buf b;
        uint64_t n = 0;
        int keys = 0;

        assert_int_equal(insert_wrapped(f->s), 1);
        f->s = kh_store_close(f->s);
        assert_int_equal(raw_exec(f->raw, "DROP TRIGGER key_epoch_insert; DROP TRIGGER key_epoch_update;"
                    "DROP TRIGGER key_epoch_seal_insert; DROP TRIGGER key_epoch_seal_update;"
                    "DROP TABLE key_epoch; DROP TABLE job_leases;"
                    "DELETE FROM schema_migrations WHERE version = 6;"
                    "ALTER TABLE tenant_keys DROP COLUMN prior_state;"
                    "DELETE FROM schema_migrations WHERE version = 5;"
                    "DROP TABLE audit_blocks;"
                                          "ALTER TABLE tenant_keys DROP COLUMN encrypts;"
                                          "ALTER TABLE tenant_keys DROP COLUMN decrypts;"
                                          "DELETE FROM schema_migrations WHERE version = 4;"
                                          "ALTER TABLE tenant_keys DROP COLUMN signature;"
                                          "DROP TABLE meta;"
                                          "DELETE FROM schema_migrations WHERE version = 3"),
                         SQLITE_OK);

        assert_int_equal(kh_store_open(&f->cfg, &f->s), 0);
        assert_int_equal(kh_store_schema_version(f->s), 6);
        assert_int_equal(sqlite_migration_count(&f->cfg, 3, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", copy_key, &stored), 0);
        assert_int_equal(stored.len, 7);
        assert_memory_equal(stored.dek, "wrapped", 7);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_unsigned, &keys), 0);
        assert_int_equal(keys, 1);
        kh_buf_init(&b, KH_STORE_META_VALUE_MAX, false);
        assert_int_equal(kh_store_meta_get(f->s, "dek-signatures", &b), -ENOENT);
        kh_buf_free(&b);

        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 1, SIG, sizeof(SIG)),
                         1);
        keys = 0;
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", count_unsigned, &keys), 0);
        assert_int_equal(keys, 0);
}

static void test_database_errors_are_eio_with_message(void **state) {
        struct fixture *f = *state;
        struct kh_buf b;
        uint32_t v = 0;

        assert_int_equal(raw_exec(f->raw, "DROP TABLE records"), SQLITE_OK);
        kh_buf_init(&b, KH_SEALED_MAX, false);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b),
                         -EIO);
        assert_string_equal(kh_store_last_error(f->s), "no such table: records");
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1,
                                             (const uint8_t *) "x", 1),
                         -EIO);
        kh_buf_free(&b);
        /* the connection itself still works */
        assert_int_equal(kh_store_ping(f->s), 0);
}

static void test_open_failures(void **state) {
        struct fixture *f = *state;
        char driver[] = "sqlite", missing[] = "/nonexistent-kh-dir/store.db", empty[] = "";
        struct kh_config_storage cfg = { .driver = driver };
        struct kh_store *s = NULL;
        char path[600];
        int fd;

        cfg.path = missing;
        assert_int_equal(kh_store_open(&cfg, &s), -ENOENT);
        cfg.path = empty;
        assert_int_equal(kh_store_open(&cfg, &s), -EINVAL);
        cfg.path = NULL;
        assert_int_equal(kh_store_open(&cfg, &s), -EINVAL);

        /* a file that is not a database */
        (void) snprintf(path, sizeof(path), "%s.junk", f->cfg.path);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        for (int i = 0; i < 64; i++)
                assert_int_equal(write(fd, "this is not sqlite, just some text.\n", 36), 36);
        (void) close(fd);
        cfg.path = path;
        assert_int_equal(kh_store_open(&cfg, &s), -EIO);
        assert_null(s);
        (void) unlink(path);
}

#define PROCS 4

/* Several processes open the same new file at once (two keyholdd started together on one
 * data folder), each to insert version 1. The store opens through the "unix-excl" VFS, so
 * the first child to lock the file holds it until it closes; the others queue on that
 * exclusive lock (retrying within KH_STORE_BUSY_TIMEOUT_MS, far longer than a child keeps
 * it), and each opens after the previous one has closed. So the migrations run once and
 * exactly one insert wins; the later children find version 1 and insert nothing. Each
 * child's exit status says what it got: 10 + the insert's result (1 if it failed to open). */
static void processes_race_once(void) {
        struct kh_config_storage cfg = { 0 };
        uint8_t dek[PROCS][64];
        int gate[2], winners = 0, winner = -1;
        pid_t pid[PROCS];
        struct kh_store *s = NULL;
        uint64_t n = 0;
        struct {
                size_t len;
                uint8_t dek[64];
        } stored = { 0 };

        assert_int_equal(sqlite_create(&cfg), 0);
        for (int i = 0; i < PROCS; i++)
                for (size_t j = 0; j < sizeof(dek[i]); j++)
                        dek[i][j] = (uint8_t) (i * 37 + j);
        assert_int_equal(pipe(gate), 0);

        for (int i = 0; i < PROCS; i++) {
                pid[i] = fork();
                assert_true(pid[i] >= 0);
                if (pid[i] == 0) {
                        char c;
                        int r;

                        (void) close(gate[1]);
                        if (read(gate[0], &c, 1) < 0) /* returns 0 once the parent closes */
                                _exit(3);
                        if (kh_store_open(&cfg, &s) < 0)
                                _exit(1);
                        r = kh_store_tenant_key_insert_if_absent(s, "acme", 1, KH_KEY_ACTIVE,
                                                                 dek[i], sizeof(dek[i]),
                                                                 SIG, sizeof(SIG));
                        s = kh_store_close(s);
                        _exit(r == 0 || r == 1 ? 10 + r : 2);
                }
        }
        (void) close(gate[0]);
        (void) close(gate[1]);

        for (int i = 0; i < PROCS; i++) {
                int status;

                assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
                assert_true(WIFEXITED(status));
                assert_true(WEXITSTATUS(status) == 10 || WEXITSTATUS(status) == 11);
                if (WEXITSTATUS(status) == 11) {
                        winners++;
                        winner = i;
                }
        }
        assert_int_equal(winners, 1);

        assert_int_equal(sqlite_migration_count(&cfg, 1, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(kh_store_open(&cfg, &s), 0);
        assert_int_equal(kh_store_tenant_keys(s, "acme", copy_key, &stored), 0);
        assert_int_equal(stored.len, sizeof(dek[winner]));
        assert_memory_equal(stored.dek, dek[winner], sizeof(dek[winner]));
        s = kh_store_close(s);
        sqlite_destroy(&cfg);
}

/* Each round is a new file; which child gets the lock first is timing-dependent, so run
 * several. */
static void test_processes_opening_a_new_file_migrate_once_one_dek_wins(void **state) {
        (void) state;
        for (int round = 0; round < 8; round++)
                processes_race_once();
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_new_file_is_private_and_in_wal_mode, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_reads_never_write, setup, teardown),
                cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
                cmocka_unit_test_setup_teardown(test_damaged_rows_are_integrity_errors, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_schema_2_database_upgrades_with_unsigned_rows,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_database_errors_are_eio_with_message, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_open_failures, setup, teardown),
                cmocka_unit_test(test_processes_opening_a_new_file_migrate_once_one_dek_wins),
        };
        int failed;

        failed = kh_store_conformance_run(&sqlite_backend);
        failed += cmocka_run_group_tests_name("sqlite", tests, NULL, NULL);
        return failed == 0 ? 0 : 1;
}
