/* The SQLite backend. One connection per struct kh_store (loop-local, so SQLITE_OPEN_NOMUTEX);
 * the worker threads of one process each hold one on the same file. WAL lets readers run
 * beside a writer; synchronous=FULL makes an acknowledged write survive kill -9 and power
 * loss. Every statement is prepared once at open and reset after each use: the record read
 * is the hot path (GET /user-keys).
 *
 * One process owns the file: connections go through SQLite's "unix-excl" VFS, which takes
 * an exclusive lock on the database for as long as this process has it open and keeps the
 * WAL index in this process's memory instead of a shared -shm file. The default VFS takes
 * and drops a POSIX lock on the -shm file around every read transaction, two fcntl() calls
 * per GET, which cost more than the B-tree lookup itself. Owning the file is also what the
 * rest of keyholdd assumes: tenant key states are loaded once and kept in memory, so a
 * second process serving the same file would not see a revoke or rekey made by the first.
 * Another process (a second keyholdd, the sqlite3 shell, a backup tool) waits up to
 * KH_STORE_BUSY_TIMEOUT_MS and then fails with "database is locked"; the kernel drops the
 * lock when the owner exits, however it exits, and the next owner recovers the WAL. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "store/migrations/migrations.h"
#include "store/sqlite/sqlite-snapshot.h"
#include "store/store-backend.h"

enum {
        ST_TENANT_KEY_INSERT,
        ST_TENANT_KEYS,
        ST_TENANT_KEY_SET_STATE,
        ST_TENANT_KEY_SET_SIGNATURE,
        ST_TENANT_KEY_EXISTS,
        ST_TENANT_KEY_REWRAP,
        ST_TENANT_KEY_ADD_USES,
        ST_TENANT_KEY_UPDATE,
        ST_TENANT_KEY_DESTROY,
        ST_RECORDS_UNDER,
        ST_RECORD_MOVE,
        ST_AUDIT_APPEND,
        ST_AUDIT_LAST,
        ST_AUDIT_SCAN_ASC,
        ST_AUDIT_SCAN_DESC,
        ST_AUDIT_PRUNE,
        ST_META_GET,
        ST_META_PUT,
        ST_RECORD_GET,
        ST_RECORD_INSERT,
        ST_RECORD_PUT,
        ST_RECORD_COUNT,
        ST_RECORDS_LIST,
        ST_RECORD_DELETE,
        ST_RECORDS_DELETE_PREFIX,
        ST_PING,
        ST_KEY_EPOCH,
        ST_LEASE_TAKE,
        ST_LEASE_GET,
        ST_TX_BEGIN,
        ST_TX_COMMIT,
        ST_TX_ROLLBACK,
        ST_SAVEPOINT,
        ST_SAVEPOINT_RELEASE,
        ST_SAVEPOINT_ROLLBACK,
        ST_N_
};

static const char *const statements[ST_N_] = {
        [ST_TENANT_KEY_INSERT] =
                "INSERT INTO tenant_keys "
                "(tenant, version, state, wrapped_dek, signature, created_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant, version) DO NOTHING",
        [ST_TENANT_KEYS] =
                "SELECT version, state, wrapped_dek, signature, created_at, encrypts, decrypts, "
                "prior_state FROM tenant_keys "
                "WHERE tenant = ?1 ORDER BY version",
        [ST_TENANT_KEY_SET_STATE] =
                "UPDATE tenant_keys SET state = ?3, prior_state = NULL "
                "WHERE tenant = ?1 AND version = ?2",
        /* never replaces a signature: of two processes signing one row, the first wins */
        [ST_TENANT_KEY_SET_SIGNATURE] =
                "UPDATE tenant_keys SET signature = ?3 "
                "WHERE tenant = ?1 AND version = ?2 AND signature IS NULL",
        [ST_TENANT_KEY_EXISTS] =
                "SELECT 1 FROM tenant_keys WHERE tenant = ?1 AND version = ?2",
        [ST_TENANT_KEY_REWRAP] =
                "UPDATE tenant_keys SET wrapped_dek = ?4, signature = ?5 "
                "WHERE tenant = ?1 AND version = ?2 AND wrapped_dek = ?3 AND state IN (1, 2, 4)",
        [ST_TENANT_KEY_ADD_USES] =
                "UPDATE tenant_keys SET encrypts = encrypts + ?3, decrypts = decrypts + ?4 "
                "WHERE tenant = ?1 AND version = ?2",
        [ST_TENANT_KEY_UPDATE] =
                "UPDATE tenant_keys SET state = ?4, prior_state = ?5 "
                "WHERE tenant = ?1 AND version = ?2 AND state = ?3",
        [ST_TENANT_KEY_DESTROY] =
                "UPDATE tenant_keys SET state = 5, wrapped_dek = x'', signature = NULL, "
                "prior_state = NULL WHERE tenant = ?1 AND version = ?2 AND state = 3",
        /* records_by_key_version holds (tenant, key_version) and, the table being WITHOUT
         * ROWID, the primary key's kind and owner after them: a range scan in that order */
        [ST_RECORDS_UNDER] =
                "SELECT kind, owner, blob, key_version FROM records "
                "WHERE tenant = ?1 AND key_version = ?2 AND (kind, owner) > (?3, ?4) "
                "ORDER BY kind, owner LIMIT ?5",
        [ST_RECORD_MOVE] =
                "UPDATE records SET key_version = ?6, blob = ?7 "
                "WHERE tenant = ?1 AND kind = ?2 AND owner = ?3 AND key_version = ?4 "
                "AND blob = ?5",
        [ST_AUDIT_APPEND] =
                "INSERT INTO audit_blocks (chain, first_seq, last_seq, head_hash, data) "
                "VALUES (?1, ?2, ?3, ?4, ?5)",
        [ST_AUDIT_LAST] =
                "SELECT first_seq, last_seq, head_hash FROM audit_blocks WHERE chain = ?1 "
                "ORDER BY first_seq DESC LIMIT 1",
        /* blocks are consecutive runs, so the one holding seq is the last starting at or
         * before it; (chain, first_seq) is the primary key */
        [ST_AUDIT_SCAN_ASC] =
                "SELECT first_seq, last_seq, head_hash, data FROM audit_blocks "
                "WHERE chain = ?1 AND first_seq >= COALESCE((SELECT MAX(first_seq) FROM "
                "audit_blocks WHERE chain = ?1 AND first_seq <= ?2), 0) ORDER BY first_seq",
        [ST_AUDIT_SCAN_DESC] =
                "SELECT first_seq, last_seq, head_hash, data FROM audit_blocks "
                "WHERE chain = ?1 AND first_seq <= ?2 ORDER BY first_seq DESC",
        [ST_AUDIT_PRUNE] = "DELETE FROM audit_blocks WHERE chain = ?1 AND last_seq < ?2",
        [ST_META_GET] = "SELECT value FROM meta WHERE key = ?1",
        [ST_META_PUT] =
                "INSERT INTO meta (key, value) VALUES (?1, ?2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [ST_RECORD_GET] =
                "SELECT key_version, blob FROM records "
                "WHERE tenant = ?1 AND kind = ?2 AND owner = ?3",
        [ST_RECORD_INSERT] =
                "INSERT INTO records (tenant, kind, owner, key_version, blob, created_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (tenant, kind, owner) DO NOTHING",
        [ST_RECORD_PUT] =
                "INSERT INTO records "
                "(tenant, kind, owner, key_version, blob, created_at, updated_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) ON CONFLICT (tenant, kind, owner) "
                "DO UPDATE SET key_version = excluded.key_version, blob = excluded.blob, "
                "updated_at = excluded.updated_at",
        [ST_RECORD_COUNT] =
                "SELECT COUNT(*) FROM records WHERE tenant = ?1 AND key_version = ?2",
        /* owners of a prefix: the range [prefix, upper) of the primary key (tenant, kind,
         * owner), upper being the prefix with its last byte raised (records.c) */
        [ST_RECORDS_LIST] =
                "SELECT kind, owner, blob, key_version FROM records "
                "WHERE tenant = ?1 AND kind = ?2 AND owner >= ?3 AND owner < ?4 ORDER BY owner",
        [ST_RECORD_DELETE] = "DELETE FROM records WHERE tenant = ?1 AND kind = ?2 AND owner = ?3",
        [ST_RECORDS_DELETE_PREFIX] =
                "DELETE FROM records WHERE tenant = ?1 AND kind = ?2 AND owner >= ?3 AND owner < ?4",
        /* reads a table, so it proves the file is still a readable database */
        [ST_PING] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [ST_KEY_EPOCH] = "SELECT epoch FROM key_epoch WHERE id = 1",
        /* one statement: of two takers only one finds the row free (the write lock) */
        [ST_LEASE_TAKE] =
                "INSERT INTO job_leases (name, holder, expires_at, data) VALUES (?1, ?2, ?4, ?5) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, data = excluded.data "
                "WHERE job_leases.holder = excluded.holder OR job_leases.expires_at <= ?3",
        [ST_LEASE_GET] = "SELECT holder, expires_at, data FROM job_leases WHERE name = ?1",
        [ST_TX_BEGIN] = "BEGIN IMMEDIATE",
        [ST_TX_COMMIT] = "COMMIT",
        [ST_TX_ROLLBACK] = "ROLLBACK",
        [ST_SAVEPOINT] = "SAVEPOINT kh_op",
        [ST_SAVEPOINT_RELEASE] = "RELEASE kh_op",
        /* ROLLBACK TO keeps the savepoint open: release it too */
        [ST_SAVEPOINT_ROLLBACK] = "ROLLBACK TO kh_op",
};

struct kh_sqlite_store {
        struct kh_store base;
        sqlite3 *db;
        sqlite3_stmt *st[ST_N_];
        int schema_version;
        uint8_t head_hash[KH_STORE_AUDIT_HASH_LEN]; /* audit_last's answer */
        char error[256];
};

static struct kh_sqlite_store *sqlite_store_free(struct kh_sqlite_store *s) {
        if (!s)
                return NULL;
        for (size_t i = 0; i < ST_N_; i++)
                (void) sqlite3_finalize(s->st[i]); /* NULL is a no-op */
        (void) sqlite3_close_v2(s->db);          /* rolls back an open transaction */
        free(s);
        return NULL;
}
KH_DEFINE_CLEANUP(sqlite_store_free, struct kh_sqlite_store *)

static struct kh_sqlite_store *to_sqlite(struct kh_store *s) {
        return kh_container_of(s, struct kh_sqlite_store, base);
}

/* Keeps SQLite's message for kh_store_last_error() and turns rc into an errno. */
static int fail(struct kh_sqlite_store *s, int rc) {
        (void) snprintf(s->error, sizeof(s->error), "%s", sqlite3_errmsg(s->db));
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_IOERR: {
                /* a failed write(2) of the WAL or the database is an I/O error to SQLite */
                int e = sqlite3_system_errno(s->db);
                return e == ENOSPC || e == EDQUOT ? -ENOSPC : -EIO;
        }
        default:
                return -EIO;
        }
}

/* A prepared statement goes back to its initial state whichever way its user returns, so
 * that no read transaction stays open and no bound pointer outlives the call. */
static void stmt_releasep(sqlite3_stmt **st) {
        if (*st) {
                (void) sqlite3_reset(*st);
                (void) sqlite3_clear_bindings(*st);
        }
}
#define STMT_USE(name, s, id) KH_CLEANUP(stmt_releasep) sqlite3_stmt *name = (s)->st[id]

static void stmt_finalizep(sqlite3_stmt **st) {
        (void) sqlite3_finalize(*st);
}

static int exec(struct kh_sqlite_store *s, const char *sql) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : fail(s, rc);
}

/* The single integer a one-shot query returns. */
static int query_int(struct kh_sqlite_store *s, const char *sql, sqlite3_int64 *ret) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return fail(s, rc);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER)
                return -KH_E_INTEGRITY;
        *ret = sqlite3_column_int64(st, 0);
        return 0;
}

/* The database file holds wrapped DEKs and sealed records; only its owner should read it.
 * SQLite gives the -wal file the mode of the database file (with the unix-excl VFS there is
 * no -shm file: the WAL index lives in this process's memory).
 * Creates the database file with mode 0600 if it does not exist yet. An existing file is
 * never opened here: closing any descriptor of a file drops every POSIX lock this process
 * holds on it, which would silently release the locks of the other workers' SQLite
 * connections, and a later closing connection (another process, the sqlite3 shell) would
 * then delete the live WAL. */
static int create_private_file(const char *path) {
        KH_CLEANUP(kh_closep) int fd = -1;

        fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOCTTY, 0600);
        if (fd < 0)
                return errno == EEXIST ? 0 : -errno;
        return 0;
}

static int64_t monotonic_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int enable_wal(struct kh_sqlite_store *s) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        const int64_t deadline = monotonic_ms() + KH_STORE_BUSY_TIMEOUT_MS;
        const unsigned char *mode;
        int rc, sleep_ms = 1;

        rc = sqlite3_prepare_v2(s->db, "PRAGMA journal_mode = WAL", -1, &st, NULL);
        if (rc != SQLITE_OK)
                return fail(s, rc);
        /* Switching a new file to WAL needs its exclusive lock, and SQLite reports a
         * competing opener as SQLITE_BUSY at once instead of calling the busy handler (it
         * would deadlock on the shared lock it holds). So retry here, as long as the busy
         * timeout would have waited in all (a step may itself wait in the busy handler,
         * so the clock decides, not a sum of sleeps). */
        for (;;) {
                rc = sqlite3_step(st);
                if ((rc & 0xff) != SQLITE_BUSY || monotonic_ms() >= deadline)
                        break;
                (void) sqlite3_reset(st);
                (void) sqlite3_sleep(sleep_ms);
                sleep_ms = sleep_ms < 64 ? sleep_ms * 2 : 64;
        }
        /* still busy: fail() makes it -EBUSY, which the caller reports as another process
         * holding the file */
        if (rc != SQLITE_ROW)
                return fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
        /* SQLite answers with the mode in force; a file system without shared memory
         * support keeps the old one, and readers would then block writers. */
        mode = sqlite3_column_text(st, 0);
        if (!mode || strcmp((const char *) mode, "wal") != 0) {
                (void) snprintf(s->error, sizeof(s->error), "journal_mode is %s, not wal",
                                mode ? (const char *) mode : "unknown");
                return -EIO;
        }
        return 0;
}

static int migrate_locked(struct kh_sqlite_store *s) {
        const struct kh_store_migration *m = kh_store_sqlite_migrations;
        const size_t n = kh_store_sqlite_n_migrations;
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *record = NULL;
        sqlite3_int64 current;
        int rc, r;

        r = exec(s, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                    "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
        if (r < 0)
                return r;
        r = query_int(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &current);
        if (r < 0)
                return r;
        if (current > m[n - 1].version) {
                (void) snprintf(s->error, sizeof(s->error),
                                "database schema version %lld is newer than this build's %d",
                                (long long) current, m[n - 1].version);
                return -EPROTO;
        }

        rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO schema_migrations (version, applied_at) "
                                "VALUES (?1, ?2)",
                                -1, &record, NULL);
        if (rc != SQLITE_OK)
                return fail(s, rc);

        for (size_t i = 0; i < n; i++) {
                if (m[i].version <= current)
                        continue;
                r = exec(s, m[i].sql);
                if (r < 0)
                        return r;
                rc = sqlite3_bind_int(record, 1, m[i].version);
                if (rc == SQLITE_OK)
                        rc = sqlite3_bind_int64(record, 2, (sqlite3_int64) time(NULL));
                if (rc == SQLITE_OK)
                        rc = sqlite3_step(record);
                if (rc != SQLITE_DONE)
                        return fail(s, rc);
                (void) sqlite3_reset(record);
        }
        s->schema_version = m[n - 1].version;
        return 0;
}

/* Every open commits a change, so the WAL is never empty while this process has the file.
 * With an empty WAL (right after a clean restart, until the first write) SQLite asks the
 * file system for the database size at the start of every read transaction: an fstat()
 * per GET. Once the WAL holds a commit it takes the size from the WAL index instead. The
 * row it changes is useful on its own: when the database was last opened, and how often. */
static int mark_opened(struct kh_sqlite_store *s) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc;

        rc = sqlite3_prepare_v2(s->db,
                                "UPDATE store_opens SET opens = opens + 1, last_opened_at = ?1 "
                                "WHERE id = 1",
                                -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 1, (sqlite3_int64) time(NULL));
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) == 1 ? 0 : -KH_E_INTEGRITY;
}

/* The write lock (BEGIN IMMEDIATE) is taken before the version is read, so when several
 * connections open an empty database at once exactly one applies each migration and the
 * others find it done. */
static int migrate(struct kh_sqlite_store *s) {
        int r;

        r = exec(s, "BEGIN IMMEDIATE");
        if (r < 0)
                return r;
        r = migrate_locked(s);
        if (r >= 0)
                r = mark_opened(s);
        if (r >= 0)
                r = exec(s, "COMMIT");
        if (r < 0)
                (void) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

static int sqlite_open(const struct kh_config_storage *cfg, struct kh_store **ret, char *why,
                       size_t why_len) {
        KH_CLEANUP(sqlite_store_freep) struct kh_sqlite_store *s = NULL;
        int rc, r;

        if (!cfg->path || !*cfg->path)
                return -EINVAL;

        r = create_private_file(cfg->path);
        if (r < 0)
                return r;

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->base.ops = &kh_store_sqlite_ops;

        rc = sqlite3_open_v2(cfg->path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                     SQLITE_OPEN_PRIVATECACHE | SQLITE_OPEN_EXRESCODE,
                             "unix-excl");
        if (rc != SQLITE_OK)
                return s->db ? fail(s, rc) : -ENOMEM;

        /* The workers of this process write the same file: they wait for each other's
         * short transactions rather than fail (and another process waits as long for the
         * owner to exit before it gives up). */
        rc = sqlite3_busy_timeout(s->db, KH_STORE_BUSY_TIMEOUT_MS);
        if (rc == SQLITE_OK)
                rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_db_config(s->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
        if (rc != SQLITE_OK)
                return fail(s, rc);

        r = enable_wal(s);
        if (r < 0)
                return r;
        r = exec(s, "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON");
        if (r < 0)
                return r;

        r = migrate(s);
        if (r == -EPROTO)
                (void) snprintf(why, why_len, "[storage] path: %s", s->error);
        if (r < 0)
                return r;

        for (size_t i = 0; i < ST_N_; i++) {
                rc = sqlite3_prepare_v3(s->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT,
                                        &s->st[i], NULL);
                if (rc != SQLITE_OK)
                        return fail(s, rc);
        }

        *ret = &KH_TAKE_PTR(s)->base;
        return 0;
}

/* Steps a statement that reads at most one row, rc being the result of binding its
 * parameters: 0 on its row, -ENOENT without one, or the failure. */
static int step_one_row(struct kh_sqlite_store *s, sqlite3_stmt *st, int rc) {
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        return rc == SQLITE_ROW ? 0 : fail(s, rc);
}

static void sqlite_close(struct kh_store *store) {
        (void) sqlite_store_free(to_sqlite(store));
}

static int sqlite_schema_version(struct kh_store *store) {
        return to_sqlite(store)->schema_version;
}

/* ?1 tenant, ?2 version: the key of a tenant key row (and the filter of record_count). */
static int bind_tenant_version(sqlite3_stmt *st, const char *tenant, uint32_t version) {
        int rc;

        rc = sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, version);
        return rc;
}

static int sqlite_tenant_key_insert_if_absent(struct kh_store *store, const char *tenant,
                                              uint32_t version, enum kh_key_state state,
                                              const uint8_t *wrapped_dek, size_t len,
                                              const uint8_t *signature, size_t signature_len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_INSERT);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 3, (int) state);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 4, wrapped_dek, (int) len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 5, signature, (int) signature_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 6, (sqlite3_int64) time(NULL));
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);

        return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static int sqlite_tenant_keys(struct kh_store *store, const char *tenant, kh_tenant_key_fn fn,
                              void *userdata) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEYS);
        int rc, r;

        rc = sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return fail(s, rc);

        for (;;) {
                sqlite3_int64 version, state, prior;
                const void *dek, *sig = NULL;
                int dek_len, sig_len = 0;

                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return fail(s, rc);

                if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
                    sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
                    sqlite3_column_type(st, 2) != SQLITE_BLOB)
                        return -KH_E_INTEGRITY;
                version = sqlite3_column_int64(st, 0);
                state = sqlite3_column_int64(st, 1);
                dek = sqlite3_column_blob(st, 2);
                dek_len = sqlite3_column_bytes(st, 2);
                if (!kh_store_version_ok(version) || !kh_store_key_state_ok(state))
                        return -KH_E_INTEGRITY;
                if (sqlite3_column_type(st, 7) == SQLITE_NULL) {
                        prior = 0;
                } else if (sqlite3_column_type(st, 7) == SQLITE_INTEGER) {
                        prior = sqlite3_column_int64(st, 7);
                        if (!kh_store_key_state_ok(prior))
                                return -KH_E_INTEGRITY;
                } else {
                        return -KH_E_INTEGRITY;
                }
                /* NULL: a row from before signatures; any other type, or an empty blob
                 * (which would read back as NULL), is damage */
                if (sqlite3_column_type(st, 3) != SQLITE_NULL) {
                        if (sqlite3_column_type(st, 3) != SQLITE_BLOB)
                                return -KH_E_INTEGRITY;
                        sig = sqlite3_column_blob(st, 3);
                        sig_len = sqlite3_column_bytes(st, 3);
                        if (!sig || sig_len <= 0)
                                return -KH_E_INTEGRITY;
                }

                if (sqlite3_column_type(st, 4) != SQLITE_INTEGER ||
                    sqlite3_column_type(st, 5) != SQLITE_INTEGER ||
                    sqlite3_column_type(st, 6) != SQLITE_INTEGER ||
                    sqlite3_column_int64(st, 5) < 0 || sqlite3_column_int64(st, 6) < 0)
                        return -KH_E_INTEGRITY;

                r = fn(&(const struct kh_tenant_key) {
                               .version = (uint32_t) version,
                               .created_at = sqlite3_column_int64(st, 4),
                               .encrypts = (uint64_t) sqlite3_column_int64(st, 5),
                               .decrypts = (uint64_t) sqlite3_column_int64(st, 6),
                               .state = (enum kh_key_state) state,
                               .prior_state = (enum kh_key_state) prior,
                               .wrapped_dek = dek,
                               .wrapped_dek_len = (size_t) dek_len,
                               .signature = sig,
                               .signature_len = (size_t) sig_len,
                       },
                       userdata);
                if (r != 0)
                        return r;
        }
}

static int sqlite_tenant_key_set_state(struct kh_store *store, const char *tenant,
                                       uint32_t version, enum kh_key_state state) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_SET_STATE);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 3, (int) state);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);

        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

static int sqlite_tenant_key_update(struct kh_store *store, const char *tenant, uint32_t version,
                                    enum kh_key_state from, enum kh_key_state to,
                                    enum kh_key_state prior) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_UPDATE);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 3, (int) from);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 4, (int) to);
        if (rc == SQLITE_OK)
                rc = prior ? sqlite3_bind_int(st, 5, (int) prior) : sqlite3_bind_null(st, 5);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

static int sqlite_tenant_key_destroy(struct kh_store *store, const char *tenant,
                                     uint32_t version) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_DESTROY);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

/* Two statements: the update that never replaces a signature, and (when it changed
 * nothing) whether the row exists. No operation deletes a version, so the answer cannot
 * change in between. */
static int sqlite_tenant_key_set_signature(struct kh_store *store, const char *tenant,
                                           uint32_t version, const uint8_t *signature,
                                           size_t signature_len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_SET_SIGNATURE);
        STMT_USE(exists, s, ST_TENANT_KEY_EXISTS);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 3, signature, (int) signature_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        if (sqlite3_changes(s->db) > 0)
                return 1;

        return step_one_row(s, exists, bind_tenant_version(exists, tenant, version));
}

static int sqlite_tenant_key_rewrap(struct kh_store *store, const char *tenant, uint32_t version,
                                   const uint8_t *old, size_t old_len, const uint8_t *wrapped,
                                   size_t len, const uint8_t *signature, size_t signature_len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_REWRAP);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 3, old, (int) old_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 4, wrapped, (int) len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 5, signature, (int) signature_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static int bind_record_key(sqlite3_stmt *st, const char *tenant, enum kh_record_kind kind,
                           const char *owner) {
        int rc;

        rc = sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 2, (int) kind);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, owner, -1, SQLITE_STATIC);
        return rc;
}

/* Reads never write: no access time or counter is updated here. Counting reads in the
 * row would put a write, and its fsync, on the hottest path. */
static int sqlite_record_get(struct kh_store *store, const char *tenant,
                             enum kh_record_kind kind, const char *owner, uint32_t *ret_version,
                             struct kh_buf *blob) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORD_GET);
        sqlite3_int64 version;
        const void *data;
        int len, r;

        r = step_one_row(s, st, bind_record_key(st, tenant, kind, owner));
        if (r < 0)
                return r;

        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 1) != SQLITE_BLOB)
                return -KH_E_INTEGRITY;
        version = sqlite3_column_int64(st, 0);
        data = sqlite3_column_blob(st, 1);
        len = sqlite3_column_bytes(st, 1);
        if (!kh_store_version_ok(version) || !data || len < 0 ||
            !kh_store_sealed_len_ok((size_t) len))
                return -KH_E_INTEGRITY;

        r = kh_buf_append(blob, data, (size_t) len);
        if (r < 0)
                return r;
        *ret_version = (uint32_t) version;
        return 0;
}

static int bind_record(sqlite3_stmt *st, const char *tenant, enum kh_record_kind kind,
                       const char *owner, uint32_t version, const uint8_t *blob, size_t len) {
        int rc;

        rc = bind_record_key(st, tenant, kind, owner);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 5, blob, (int) len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 6, (sqlite3_int64) time(NULL));
        return rc;
}

/* One statement in autocommit mode: atomic, and with synchronous=FULL durable on return. */
static int sqlite_record_insert(struct kh_store *store, const char *tenant,
                                enum kh_record_kind kind, const char *owner, uint32_t version,
                                const uint8_t *blob, size_t len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORD_INSERT);
        int rc;

        rc = bind_record(st, tenant, kind, owner, version, blob, len);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);

        return sqlite3_changes(s->db) > 0 ? 0 : -EEXIST;
}

static int sqlite_record_put(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                             const char *owner, uint32_t version, const uint8_t *blob,
                             size_t len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORD_PUT);
        int rc;

        rc = bind_record(st, tenant, kind, owner, version, blob, len);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return 0;
}

/* Calls fn for each row (kind, owner, blob, key_version) st gives. */
static int step_records(struct kh_sqlite_store *s, sqlite3_stmt *st, kh_store_record_fn fn,
                        void *userdata) {
        for (;;) {
                const unsigned char *owner;
                const void *blob;
                sqlite3_int64 kind, version;
                int owner_len, len, rc, r;

                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return fail(s, rc);
                if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
                    sqlite3_column_type(st, 1) != SQLITE_TEXT ||
                    sqlite3_column_type(st, 2) != SQLITE_BLOB ||
                    sqlite3_column_type(st, 3) != SQLITE_INTEGER)
                        return -KH_E_INTEGRITY;
                kind = sqlite3_column_int64(st, 0);
                owner = sqlite3_column_text(st, 1);
                owner_len = sqlite3_column_bytes(st, 1);
                blob = sqlite3_column_blob(st, 2);
                len = sqlite3_column_bytes(st, 2);
                version = sqlite3_column_int64(st, 3);
                if (kind < 1 || kind > INT32_MAX || !owner || owner_len < 1 ||
                    owner_len > KH_STORE_OWNER_MAX || strlen((const char *) owner) != (size_t) owner_len ||
                    !blob || len < 0 || !kh_store_sealed_len_ok((size_t) len) || version < 1 ||
                    version > UINT32_MAX)
                        return -KH_E_INTEGRITY;
                r = fn(&(const struct kh_store_record) {
                               .kind = (enum kh_record_kind) kind,
                               .owner = (const char *) owner,
                               .blob = blob,
                               .len = (size_t) len,
                               .version = (uint32_t) version,
                       },
                       userdata);
                if (r != 0)
                        return r;
        }
}

static int sqlite_records_under(struct kh_store *store, const char *tenant, uint32_t version,
                                enum kh_record_kind after_kind, const char *after_owner,
                                size_t limit, kh_store_record_fn fn, void *userdata) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORDS_UNDER);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 3, (int) after_kind);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 4, after_owner, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 5, (sqlite3_int64) limit);
        if (rc != SQLITE_OK)
                return fail(s, rc);

        return step_records(s, st, fn, userdata);
}

/* Binds tenant, kind and the owner range [prefix, upper). */
static int bind_prefix(sqlite3_stmt *st, const char *tenant, enum kh_record_kind kind,
                       const char *prefix, const char *upper) {
        int rc = sqlite3_bind_text(st, 1, tenant, -1, SQLITE_STATIC);

        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int(st, 2, (int) kind);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 3, prefix, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 4, upper, -1, SQLITE_STATIC);
        return rc;
}

static int sqlite_records_list(struct kh_store *store, const char *tenant,
                               enum kh_record_kind kind, const char *prefix, const char *upper,
                               kh_store_record_fn fn, void *userdata) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORDS_LIST);
        int rc = bind_prefix(st, tenant, kind, prefix, upper);

        if (rc != SQLITE_OK)
                return fail(s, rc);
        return step_records(s, st, fn, userdata);
}

static int sqlite_record_delete(struct kh_store *store, const char *tenant,
                                enum kh_record_kind kind, const char *owner) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORD_DELETE);
        int rc = bind_record_key(st, tenant, kind, owner);

        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static int sqlite_records_delete_prefix(struct kh_store *store, const char *tenant,
                                        enum kh_record_kind kind, const char *prefix,
                                        const char *upper) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORDS_DELETE_PREFIX);
        int rc = bind_prefix(st, tenant, kind, prefix, upper);

        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db);
}

static int sqlite_record_move(struct kh_store *store, const char *tenant,
                              enum kh_record_kind kind, const char *owner, uint32_t from,
                              const uint8_t *old, size_t old_len, uint32_t to,
                              const uint8_t *blob, size_t len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORD_MOVE);
        int rc;

        rc = bind_record_key(st, tenant, kind, owner);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, from);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 5, old, (int) old_len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 6, to);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 7, blob, (int) len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

static int sqlite_record_count(struct kh_store *store, const char *tenant, uint32_t version,
                               uint64_t *ret_count) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_RECORD_COUNT);
        sqlite3_int64 n;
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc);

        n = sqlite3_column_int64(st, 0);
        if (n < 0)
                return -KH_E_INTEGRITY;
        *ret_count = (uint64_t) n;
        return 0;
}

static int sqlite_tenant_key_add_uses(struct kh_store *store, const char *tenant,
                                      uint32_t version, uint64_t encrypts, uint64_t decrypts) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_TENANT_KEY_ADD_USES);
        int rc;

        rc = bind_tenant_version(st, tenant, version);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, (sqlite3_int64) encrypts);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, (sqlite3_int64) decrypts);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

static int sqlite_audit_append(struct kh_store *store, const char *chain,
                               const struct kh_store_audit_block *b) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_AUDIT_APPEND);
        int rc;

        rc = sqlite3_bind_text(st, 1, chain, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, (sqlite3_int64) b->first_seq);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, (sqlite3_int64) b->last_seq);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 4, b->head_hash, KH_STORE_AUDIT_HASH_LEN, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 5, b->data, (int) b->len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
                return -EEXIST;
        return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

/* The columns first_seq, last_seq, head_hash (and data when with_data) of st's row. */
static int audit_block_read(sqlite3_stmt *st, bool with_data, struct kh_store_audit_block *b) {
        sqlite3_int64 first, last;

        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 2) != SQLITE_BLOB ||
            (with_data && sqlite3_column_type(st, 3) != SQLITE_BLOB))
                return -KH_E_INTEGRITY;
        first = sqlite3_column_int64(st, 0);
        last = sqlite3_column_int64(st, 1);
        if (first < 1 || last < first || sqlite3_column_bytes(st, 2) != KH_STORE_AUDIT_HASH_LEN)
                return -KH_E_INTEGRITY;
        *b = (struct kh_store_audit_block) {
                .first_seq = (uint64_t) first, .last_seq = (uint64_t) last,
                .head_hash = sqlite3_column_blob(st, 2),
        };
        if (with_data) {
                int len = sqlite3_column_bytes(st, 3);

                b->data = sqlite3_column_blob(st, 3);
                if (!b->data || len <= 0 || (size_t) len > KH_STORE_AUDIT_BLOCK_MAX)
                        return -KH_E_INTEGRITY;
                b->len = (size_t) len;
        }
        return 0;
}

static int sqlite_audit_last(struct kh_store *store, const char *chain,
                             struct kh_store_audit_block *ret) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_AUDIT_LAST);
        int r;

        r = step_one_row(s, st, sqlite3_bind_text(st, 1, chain, -1, SQLITE_STATIC));
        if (r < 0)
                return r;
        /* head_hash points into the row, valid until the statement is reset: copy it */
        r = audit_block_read(st, false, ret);
        if (r < 0)
                return r;
        memcpy(s->head_hash, ret->head_hash, KH_STORE_AUDIT_HASH_LEN);
        ret->head_hash = s->head_hash;
        return 0;
}

static int sqlite_audit_scan(struct kh_store *store, const char *chain, uint64_t seq,
                             bool descending, kh_store_audit_block_fn fn, void *userdata) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, descending ? ST_AUDIT_SCAN_DESC : ST_AUDIT_SCAN_ASC);
        int rc, r;

        rc = sqlite3_bind_text(st, 1, chain, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, (sqlite3_int64) seq);
        if (rc != SQLITE_OK)
                return fail(s, rc);
        for (;;) {
                struct kh_store_audit_block b;

                rc = sqlite3_step(st);
                if (rc == SQLITE_DONE)
                        return 0;
                if (rc != SQLITE_ROW)
                        return fail(s, rc);
                r = audit_block_read(st, true, &b);
                if (r == 0)
                        r = fn(&b, userdata);
                if (r != 0)
                        return r;
        }
}

static int sqlite_audit_prune(struct kh_store *store, const char *chain, uint64_t before_seq) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_AUDIT_PRUNE);
        int rc;

        rc = sqlite3_bind_text(st, 1, chain, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 2, (sqlite3_int64) before_seq);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db);
}

static int sqlite_meta_get(struct kh_store *store, const char *key, struct kh_buf *value) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_META_GET);
        const void *data;
        int len, r;

        r = step_one_row(s, st, sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC));
        if (r < 0)
                return r;

        if (sqlite3_column_type(st, 0) != SQLITE_BLOB)
                return -KH_E_INTEGRITY;
        data = sqlite3_column_blob(st, 0);
        len = sqlite3_column_bytes(st, 0);
        if (!data || len < 0 || !kh_store_meta_value_len_ok((size_t) len))
                return -KH_E_INTEGRITY;
        return kh_buf_append(value, data, (size_t) len);
}

static int sqlite_meta_put(struct kh_store *store, const char *key, const uint8_t *value,
                           size_t len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_META_PUT);
        int rc;

        rc = sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 2, value, (int) len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

static int sqlite_key_epoch(struct kh_store *store, uint64_t *ret) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_KEY_EPOCH);
        int64_t v;
        int r;

        r = step_one_row(s, st, SQLITE_OK);
        if (r == -ENOENT)
                return -KH_E_INTEGRITY;
        if (r < 0)
                return r;
        if (sqlite3_column_type(st, 0) != SQLITE_INTEGER || (v = sqlite3_column_int64(st, 0)) < 0)
                return -KH_E_INTEGRITY;
        *ret = (uint64_t) v;
        return 0;
}

static int sqlite_lease_take(struct kh_store *store, const char *name, const char *holder,
                             int64_t now_ms, int64_t expires_at_ms, const uint8_t *data,
                             size_t len) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_LEASE_TAKE);
        int rc;

        rc = sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 3, now_ms);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_int64(st, 4, expires_at_ms);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_blob(st, 5, data, (int) len, SQLITE_STATIC);
        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return fail(s, rc);
        return sqlite3_changes(s->db) > 0;
}

static int sqlite_lease_get(struct kh_store *store, const char *name, struct kh_buf *holder,
                            int64_t *ret_expires_at_ms, struct kh_buf *data) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_LEASE_GET);
        const unsigned char *h;
        const void *d;
        int hlen, dlen, r;

        r = step_one_row(s, st, sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC));
        if (r < 0)
                return r;
        h = sqlite3_column_text(st, 0);
        hlen = sqlite3_column_bytes(st, 0);
        d = sqlite3_column_blob(st, 2);
        dlen = sqlite3_column_bytes(st, 2);
        if (!h || hlen < 1 || hlen > KH_STORE_LEASE_HOLDER_MAX ||
            sqlite3_column_type(st, 1) != SQLITE_INTEGER ||
            sqlite3_column_type(st, 2) != SQLITE_BLOB ||
            !d || dlen < 1 || dlen > KH_STORE_LEASE_DATA_MAX)
                return -KH_E_INTEGRITY;
        if (holder->max - holder->len < (size_t) hlen || data->max - data->len < (size_t) dlen)
                return -E2BIG;
        *ret_expires_at_ms = sqlite3_column_int64(st, 1);
        r = kh_buf_append(holder, h, (size_t) hlen);
        return r < 0 ? r : kh_buf_append(data, d, (size_t) dlen);
}

static int sqlite_ping(struct kh_store *store) {
        struct kh_sqlite_store *s = to_sqlite(store);
        STMT_USE(st, s, ST_PING);
        int rc;

        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return fail(s, rc == SQLITE_DONE ? SQLITE_ERROR : rc);
        return 0;
}

static const char *sqlite_last_error(struct kh_store *store) {
        return to_sqlite(store)->error;
}

static int step_done(struct kh_sqlite_store *s, int which) {
        STMT_USE(st, s, which);
        int rc = sqlite3_step(st);

        return rc == SQLITE_DONE ? 0 : fail(s, rc);
}

static int sqlite_tx_begin(struct kh_store *store) {
        return step_done(to_sqlite(store), ST_TX_BEGIN);
}

static int sqlite_tx_commit(struct kh_store *store) {
        return step_done(to_sqlite(store), ST_TX_COMMIT);
}

static void sqlite_tx_rollback(struct kh_store *store) {
        struct kh_sqlite_store *s = to_sqlite(store);

        if (!sqlite3_get_autocommit(s->db))
                (void) step_done(s, ST_TX_ROLLBACK);
}

/* The moves one by one: no round trips to save, the file is local. */
static int sqlite_record_moves(struct kh_store *store, const char *tenant, uint32_t from,
                               uint32_t to, const struct kh_store_move *moves, size_t n) {
        struct kh_sqlite_store *s = to_sqlite(store);
        bool own_tx = sqlite3_get_autocommit(s->db) != 0;
        int r = 0, moved = 0;

        if (own_tx && (r = sqlite_tx_begin(store)) < 0)
                return r;
        for (size_t i = 0; i < n && r >= 0; i++) {
                const struct kh_store_move *m = &moves[i];

                r = sqlite_record_move(store, tenant, m->kind, m->owner, from, m->old,
                                       m->old_len, to, m->blob, m->len);
                moved += r > 0;
        }
        if (own_tx && r >= 0)
                r = sqlite_tx_commit(store);
        if (own_tx && r < 0)
                sqlite_tx_rollback(store);
        return r < 0 ? r : moved;
}

static int sqlite_savepoint(struct kh_store *store) {
        return step_done(to_sqlite(store), ST_SAVEPOINT);
}

static int sqlite_savepoint_release(struct kh_store *store) {
        return step_done(to_sqlite(store), ST_SAVEPOINT_RELEASE);
}

static void sqlite_savepoint_rollback(struct kh_store *store) {
        struct kh_sqlite_store *s = to_sqlite(store);

        if (step_done(s, ST_SAVEPOINT_ROLLBACK) >= 0)
                (void) step_done(s, ST_SAVEPOINT_RELEASE);
}

static int sqlite_snapshot(struct kh_store *store, const char *path) {
        struct kh_sqlite_store *s = to_sqlite(store);

        return kh_sqlite_snapshot(s->db, path, s->error, sizeof(s->error));
}

const struct kh_store_ops kh_store_sqlite_ops = {
        .name = "sqlite",
        .open = sqlite_open,
        .close = sqlite_close,
        .schema_version = sqlite_schema_version,
        .tenant_key_insert_if_absent = sqlite_tenant_key_insert_if_absent,
        .tenant_keys = sqlite_tenant_keys,
        .tenant_key_set_state = sqlite_tenant_key_set_state,
        .tenant_key_set_signature = sqlite_tenant_key_set_signature,
        .tenant_key_rewrap = sqlite_tenant_key_rewrap,
        .tenant_key_add_uses = sqlite_tenant_key_add_uses,
        .tenant_key_update = sqlite_tenant_key_update,
        .tenant_key_destroy = sqlite_tenant_key_destroy,
        .records_under = sqlite_records_under,
        .record_move = sqlite_record_move,
        .record_moves = sqlite_record_moves,
        .groups_commits = true,
        .audit_append = sqlite_audit_append,
        .audit_last = sqlite_audit_last,
        .audit_scan = sqlite_audit_scan,
        .audit_prune = sqlite_audit_prune,
        .record_get = sqlite_record_get,
        .record_insert = sqlite_record_insert,
        .record_put = sqlite_record_put,
        .record_count = sqlite_record_count,
        .records_list = sqlite_records_list,
        .record_delete = sqlite_record_delete,
        .records_delete_prefix = sqlite_records_delete_prefix,
        .meta_get = sqlite_meta_get,
        .meta_put = sqlite_meta_put,
        .key_epoch = sqlite_key_epoch,
        .key_epoch_wait = NULL, /* one process per database: nobody else changes it */
        .lease_take = sqlite_lease_take,
        .lease_get = sqlite_lease_get,
        .ping = sqlite_ping,
        .last_error = sqlite_last_error,
        .tx_begin = sqlite_tx_begin,
        .tx_commit = sqlite_tx_commit,
        .tx_rollback = sqlite_tx_rollback,
        .savepoint = sqlite_savepoint,
        .savepoint_release = sqlite_savepoint_release,
        .savepoint_rollback = sqlite_savepoint_rollback,
        .snapshot = sqlite_snapshot,
};
