/* Snapshots of an SQLite database for backups, and the read-only look into one that a backup
 * verify or restore takes before trusting it.
 *
 * Why the online backup API, in one step (sqlite3_backup_step(-1)), rather than VACUUM INTO:
 * one step copies every page inside one read transaction of the source connection, so the
 * copy is the database as of one commit, while the workers keep writing (WAL: readers and the
 * writer do not block each other; the step never holds the write lock). It copies pages as
 * they are, which costs a sequential read and write; VACUUM INTO rebuilds every table and
 * index through the B-tree layer, several times the CPU for the same consistency. The copy
 * is then switched from WAL to a rollback journal, so that it is one self-contained file:
 * the WAL mode flag in its header would otherwise make a reader look for a -wal file. */
#include "store/sqlite/sqlite-snapshot.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/errors.h"
#include "common/parse.h"
#include "store/migrations/migrations.h"
#include "store/store.h"

static inline void sqlite_closep(sqlite3 **db) {
        if (*db)
                (void) sqlite3_close_v2(*db);
}

static inline void stmt_finalizep(sqlite3_stmt **st) {
        (void) sqlite3_finalize(*st);
}

static int errno_of(int rc) {
        switch (rc & 0xff) {
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return -EBUSY;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_CANTOPEN:
                return -ENOENT;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
                return -EBADMSG;
        default:
                return -EIO;
        }
}

static int fail(sqlite3 *db, int rc, char *error, size_t n) {
        int e = db ? sqlite3_system_errno(db) : 0;

        (void) snprintf(error, n, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        if ((rc & 0xff) == SQLITE_IOERR && (e == ENOSPC || e == EDQUOT))
                return -ENOSPC;
        return errno_of(rc);
}

int kh_sqlite_snapshot(sqlite3 *src, const char *path, char *error, size_t n) {
        KH_CLEANUP(sqlite_closep) sqlite3 *dst = NULL;
        sqlite3_backup *b;
        int rc;

        rc = sqlite3_open_v2(path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                                                 SQLITE_OPEN_PRIVATECACHE | SQLITE_OPEN_EXRESCODE,
                             NULL);
        if (rc != SQLITE_OK)
                return fail(dst, rc, error, n);
        /* a scratch file: no journal while it is written, and not synced (it is read back
         * into the backup at once and deleted) */
        rc = sqlite3_exec(dst, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF", NULL, NULL,
                          NULL);
        if (rc != SQLITE_OK)
                return fail(dst, rc, error, n);
        b = sqlite3_backup_init(dst, "main", src, "main");
        if (!b)
                return fail(dst, sqlite3_errcode(dst), error, n);
        rc = sqlite3_backup_step(b, -1);
        (void) sqlite3_backup_finish(b);
        if (rc != SQLITE_DONE)
                return fail(dst, rc == SQLITE_OK ? SQLITE_ERROR : rc, error, n);
        rc = sqlite3_exec(dst, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
                return fail(dst, rc, error, n);
        rc = sqlite3_close(dst);
        dst = NULL;
        return rc == SQLITE_OK ? 0 : errno_of(rc);
}

/* The integer of a one-row, one-column query. */
static int query_int(sqlite3 *db, const char *sql, sqlite3_int64 *ret) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return rc == SQLITE_DONE ? SQLITE_CORRUPT : rc;
        *ret = sqlite3_column_int64(st, 0);
        return SQLITE_OK;
}

/* SQLite's own check of every page and index ("ok", or what is damaged). */
static int quick_check(sqlite3 *db, char *error, size_t n) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        const unsigned char *text;
        int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check(1)", -1, &st, NULL);

        if (rc == SQLITE_OK)
                rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
                return fail(db, rc == SQLITE_DONE ? SQLITE_CORRUPT : rc, error, n);
        text = sqlite3_column_text(st, 0);
        if (!text || strcmp((const char *) text, "ok") != 0) {
                (void) snprintf(error, n, "integrity check: %s", text ? (const char *) text : "?");
                return -EBADMSG;
        }
        return 0;
}

int kh_sqlite_snapshot_open(const char *path, sqlite3 **ret) {
        char *uri;
        int rc;

        /* read-only and immutable: no lock, no journal, nothing written beside the file */
        uri = sqlite3_mprintf("file:%s?mode=ro&immutable=1", path);
        if (!uri)
                return SQLITE_NOMEM;
        rc = sqlite3_open_v2(uri, ret, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI |
                                               SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE,
                             NULL);
        sqlite3_free(uri);
        if (rc != SQLITE_OK)
                return rc;
        /* a file from a backup is untrusted input: no schema-defined SQL functions run */
        (void) sqlite3_db_config(*ret, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
        (void) sqlite3_db_config(*ret, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
        return SQLITE_OK;
}

int kh_store_snapshot_inspect(const char *path, kh_store_snapshot_fn fn, void *userdata,
                              struct kh_store_snapshot_info *ret, char *error, size_t n) {
        KH_CLEANUP(sqlite_closep) sqlite3 *db = NULL;
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        struct kh_store_snapshot_info info = { 0 };
        sqlite3_int64 v, total;
        uint64_t sum = 0;
        int rc, r;

        rc = kh_sqlite_snapshot_open(path, &db);
        if (rc != SQLITE_OK)
                return fail(db, rc, error, n);

        r = quick_check(db, error, n);
        if (r < 0)
                return r;
        rc = query_int(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &v);
        if (rc != SQLITE_OK)
                return fail(db, rc, error, n);
        if (v < 1 || v > (sqlite3_int64) kh_store_sqlite_n_migrations) {
                (void) snprintf(error, n, "schema version %lld, this build knows 1..%zu",
                                (long long) v, kh_store_sqlite_n_migrations);
                return -EPROTO;
        }
        info.schema_version = (int) v;
        rc = query_int(db, "SELECT COUNT(*) FROM records", &total);
        if (rc != SQLITE_OK)
                return fail(db, rc, error, n);

        rc = sqlite3_prepare_v2(db,
                                "SELECT k.tenant, k.version, k.state, (SELECT COUNT(*) FROM "
                                "records r WHERE r.tenant = k.tenant AND r.key_version = "
                                "k.version) FROM tenant_keys k ORDER BY k.tenant, k.version",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return fail(db, rc, error, n);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *tenant = (const char *) sqlite3_column_text(st, 0);
                sqlite3_int64 version = sqlite3_column_int64(st, 1);
                sqlite3_int64 state = sqlite3_column_int64(st, 2);
                sqlite3_int64 count = sqlite3_column_int64(st, 3);

                if (!tenant || !kh_tenant_id_is_valid(tenant, strlen(tenant)) || version < 1 ||
                    version > UINT32_MAX || state < KH_KEY_ACTIVE || state > KH_KEY_DESTROYED ||
                    count < 0) {
                        (void) snprintf(error, n, "a tenant key row is out of range");
                        return -EBADMSG;
                }
                sum += (uint64_t) count;
                info.versions++;
                r = fn ? fn(tenant, (uint32_t) version, (enum kh_key_state) state,
                            (uint64_t) count, userdata)
                       : 0;
                if (r != 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return fail(db, rc, error, n);
        if (total < 0 || sum != (uint64_t) total) {
                (void) snprintf(error, n, "%lld records, of which %llu are under a known tenant "
                                "key version", (long long) total, (unsigned long long) sum);
                return -EBADMSG;
        }
        info.records = (uint64_t) total;
        *ret = info;
        return 0;
}
