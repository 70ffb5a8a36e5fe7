/* Backups of a PostgreSQL database in the SQLite backend's snapshot form, and loading one
 * into an empty PostgreSQL database (keyhold backup restore --into-storage).
 *
 * Why an SQLite file and not pg_dump: a backup is then one format whatever the backend, so
 * backup verify checks it the same way, and a backup moves between SQLite and PostgreSQL.
 * Both schemas have the same tables, columns and migration numbers (migrations/), every
 * column a text, an integer or a blob, so a row copies column by column.
 *
 * The snapshot reads every table inside one REPEATABLE READ READ ONLY transaction: one
 * snapshot of the database as of one commit, while the replicas go on writing (a reader
 * never blocks a writer). The load writes every table inside one transaction (COPY), so a
 * failure or a kill -9 of the process leaves the database as empty as it was. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "common/parse.h"
#include "store/migrations/migrations.h"
#include "store/postgresql/pg-conn.h"
#include "store/postgresql/pg-snapshot.h"
#include "store/sqlite/sqlite-snapshot.h"

#define FETCH_ROWS   "500"
#define COPY_FLUSH   (256u * 1024)
#define COLUMNS_MAX  9

/* A table both copy, its columns in order and their kinds: t text, i integer, b blob (any
 * may be NULL where the schema allows it). Records come before tenant_keys so that a load
 * spends its time before the first write of key_epoch (the trigger on tenant_keys).
 * job_leases is not copied: a lease names a process of the server that was backed up (a
 * job it ran), none of which runs on the restored database; a restored re-encryption starts
 * again from the records' versions, as after any restart. */
struct table {
        const char *name, *columns, *kinds;
        const char *where; /* the rows copied; "" all */
        const char *key;   /* the primary key: the snapshot reads in its order, so that each
                            * row is appended to SQLite's B-tree rather than put in the middle
                            * (five times faster on 400 000 records) */
};

/* The replicas' claims on their audit chains (docs/audit.md "Replicas": host, process id,
 * heartbeat) name processes too: a restored server on this host would take the backed-up
 * server's claim for a live one while that server runs. */
#define NOT_A_CLAIM " WHERE key <> 'audit.replica' AND key NOT LIKE 'audit.replica.%'"

static const struct table tables[] = {
        { "records", "tenant, kind, owner, key_version, blob, created_at, updated_at",
          "titibii", "", "tenant, kind, owner" },
        { "audit_blocks", "chain, first_seq, last_seq, head_hash, data", "tiibb", "", "chain, first_seq" },
        { "meta", "key, value", "tb", NOT_A_CLAIM, "key" },
        { "tenant_keys",
          "tenant, version, state, wrapped_dek, created_at, signature, encrypts, decrypts, "
          "prior_state",
          "tiibibiii", "", "tenant, version" },
};

/* the snapshot's own copy: the same versions, their own times (a load keeps the target's) */
static const struct table migrations = { "schema_migrations", "version, applied_at", "ii", "",
                                         "version" };

static inline void sqlite_closep(sqlite3 **db) {
        if (*db)
                (void) sqlite3_close_v2(*db);
}

static inline void stmt_finalizep(sqlite3_stmt **st) {
        (void) sqlite3_finalize(*st);
}

static int sqlite_fail(struct kh_pg_store *s, sqlite3 *db, int rc) {
        (void) snprintf(s->error, sizeof(s->error), "snapshot file: %s",
                        db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        switch (rc & 0xff) {
        case SQLITE_FULL:
                return -ENOSPC;
        case SQLITE_NOMEM:
                return -ENOMEM;
        case SQLITE_NOTADB:
        case SQLITE_CORRUPT:
                return -EBADMSG;
        default:
                return (rc & 0xff) == SQLITE_IOERR && db && sqlite3_system_errno(db) == ENOSPC
                               ? -ENOSPC
                               : -EIO;
        }
}

/* A statement of this module's own on s's connection, text results. */
static int pg_exec(struct kh_pg_store *s, const char *sql, PGresult **ret) {
        KH_CLEANUP(PQclearp) PGresult *res = PQexec(s->conn, sql);
        ExecStatusType st = PQresultStatus(res);

        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                kh_pg_copy_message(s->error, sizeof(s->error),
                                   res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
                return kh_pg_error_of(res);
        }
        if (ret)
                *ret = KH_TAKE_PTR(res);
        return 0;
}

/* The first column of the first row of a text-result query, a non-negative integer. */
static int pg_int(struct kh_pg_store *s, const char *sql, long long *ret) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        uint64_t v;
        int r = pg_exec(s, sql, &res);

        if (r < 0)
                return r;
        if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) ||
            kh_parse_u64(PQgetvalue(res, 0, 0), (size_t) PQgetlength(res, 0, 0), INT64_MAX,
                         &v) < 0)
                return -KH_E_INTEGRITY;
        *ret = (long long) v;
        return 0;
}

/* A connection (made again if it was lost) outside any transaction. */
static int connection(struct kh_pg_store *s) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;

        if (s->in_tx)
                return -EBUSY;
        return kh_pg_run(s, PG_ST_PING, NULL, &res);
}

/* ---- snapshot: PostgreSQL to an SQLite file ---- */

static int sqlite_exec(struct kh_pg_store *s, sqlite3 *db, const char *sql) {
        int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

        return rc == SQLITE_OK ? 0 : sqlite_fail(s, db, rc);
}

/* The SQLite schema at version, as sqlite-store.c's migrations leave it, less the rows of
 * schema_migrations (copied from PostgreSQL: the same versions, their own times). */
static int sqlite_schema(struct kh_pg_store *s, sqlite3 *db, long long version) {
        int r = sqlite_exec(s, db, "CREATE TABLE schema_migrations ("
                                   "version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");

        for (size_t i = 0; r == 0 && i < kh_store_sqlite_n_migrations; i++)
                if (kh_store_sqlite_migrations[i].version <= version)
                        r = sqlite_exec(s, db, kh_store_sqlite_migrations[i].sql);
        return r;
}

static int bind_column(sqlite3_stmt *st, const PGresult *res, int row, int col, char kind) {
        int64_t v;

        if (PQgetisnull(res, row, col))
                return sqlite3_bind_null(st, col + 1);
        switch (kind) {
        case 'i':
                if (!kh_pg_get_int(res, row, col, &v))
                        return SQLITE_MISMATCH;
                return sqlite3_bind_int64(st, col + 1, v);
        case 't':
                return sqlite3_bind_text(st, col + 1, PQgetvalue(res, row, col),
                                         PQgetlength(res, row, col), SQLITE_STATIC);
        default:
                return sqlite3_bind_blob(st, col + 1, PQgetvalue(res, row, col),
                                         PQgetlength(res, row, col), SQLITE_STATIC);
        }
}

/* Every row of one table, through a cursor (a page of rows in memory at a time). */
static int copy_out(struct kh_pg_store *s, sqlite3 *db, const struct table *t) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        char sql[512], marks[3 * COLUMNS_MAX + 1] = "";
        int n = (int) strlen(t->kinds), rc, r;

        for (int i = 0; i < n; i++)
                (void) snprintf(marks + strlen(marks), sizeof(marks) - strlen(marks), "%s?",
                                i ? ", " : "");
        (void) snprintf(sql, sizeof(sql), "INSERT INTO %s (%s) VALUES (%s)", t->name, t->columns,
                        marks);
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(s, db, rc);
        (void) snprintf(sql, sizeof(sql),
                        "DECLARE kh_snap NO SCROLL CURSOR FOR SELECT %s FROM %s%s ORDER BY %s",
                        t->columns, t->name, t->where, t->key);
        r = pg_exec(s, sql, NULL);
        if (r < 0)
                return r;
        for (;;) {
                KH_CLEANUP(PQclearp) PGresult *res =
                        PQexecParams(s->conn, "FETCH " FETCH_ROWS " FROM kh_snap", 0, NULL, NULL,
                                     NULL, NULL, 1);

                if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                        kh_pg_copy_message(s->error, sizeof(s->error),
                                           res ? PQresultErrorMessage(res)
                                               : PQerrorMessage(s->conn));
                        return kh_pg_error_of(res);
                }
                if (PQntuples(res) == 0)
                        break;
                if (PQnfields(res) != n)
                        return -KH_E_INTEGRITY;
                for (int row = 0; row < PQntuples(res); row++) {
                        rc = SQLITE_OK;
                        for (int col = 0; rc == SQLITE_OK && col < n; col++)
                                rc = bind_column(st, res, row, col, t->kinds[col]);
                        if (rc == SQLITE_MISMATCH) {
                                (void) snprintf(s->error, sizeof(s->error),
                                                "%s: a row of an unexpected form", t->name);
                                return -KH_E_INTEGRITY;
                        }
                        if (rc == SQLITE_OK)
                                rc = sqlite3_step(st);
                        if (rc != SQLITE_DONE)
                                return sqlite_fail(s, db, rc);
                        (void) sqlite3_reset(st);
                }
        }
        return pg_exec(s, "CLOSE kh_snap", NULL);
}

/* Inside the PostgreSQL transaction: the schema, then every table, then the key epoch. */
static int snapshot_tx(struct kh_pg_store *s, sqlite3 *db) {
        char sql[128];
        long long version, epoch;
        int r;

        r = pg_int(s, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", &version);
        if (r < 0)
                return r;
        if (version < 1 || version > (long long) kh_store_sqlite_n_migrations) {
                (void) snprintf(s->error, sizeof(s->error),
                                "schema version %lld, this build's SQLite schema knows 1..%zu",
                                version, kh_store_sqlite_n_migrations);
                return -EPROTO;
        }
        r = sqlite_schema(s, db, version);
        if (r == 0)
                r = copy_out(s, db, &migrations);
        for (size_t i = 0; r == 0 && i < KH_ELEMENTSOF(tables); i++)
                r = copy_out(s, db, &tables[i]);
        if (r < 0)
                return r;
        /* the triggers counted the copied rows; the snapshot keeps the database's own epoch */
        r = pg_int(s, "SELECT epoch FROM key_epoch WHERE id = 1", &epoch);
        if (r < 0)
                return r;
        (void) snprintf(sql, sizeof(sql), "UPDATE key_epoch SET epoch = %lld WHERE id = 1", epoch);
        return sqlite_exec(s, db, sql);
}

int kh_pg_snapshot(struct kh_store *store, const char *path) {
        struct kh_pg_store *s = kh_pg_of(store);
        KH_CLEANUP(sqlite_closep) sqlite3 *db = NULL;
        int rc, r;

        r = connection(s);
        if (r < 0)
                return r;
        rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                                                SQLITE_OPEN_PRIVATECACHE | SQLITE_OPEN_EXRESCODE,
                             NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(s, db, rc);
        /* a scratch file, read back into the backup at once: no journal, no sync */
        r = sqlite_exec(s, db, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; BEGIN");
        if (r < 0)
                return r;
        /* one snapshot for every table; no time limit: a large database takes a while, and
         * a reader holds no lock a writer waits for */
        r = pg_exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; "
                       "SET LOCAL statement_timeout = 0",
                    NULL);
        if (r < 0)
                return r;
        r = snapshot_tx(s, db);
        if (r < 0) {
                (void) pg_exec(s, "ROLLBACK", NULL);
                return r;
        }
        r = pg_exec(s, "COMMIT", NULL);
        if (r == 0)
                r = sqlite_exec(s, db, "COMMIT; PRAGMA journal_mode = DELETE");
        if (r < 0)
                return r;
        rc = sqlite3_close(db);
        db = NULL;
        return rc == SQLITE_OK ? 0 : sqlite_fail(s, NULL, rc);
}

/* ---- load: an SQLite snapshot file into an empty PostgreSQL database ---- */

struct copy_buf {
        char *p;
        size_t len, cap;
};

static int put(struct copy_buf *b, const void *p, size_t n) {
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 4096;
                char *q;

                while (cap < b->len + n)
                        cap *= 2;
                q = realloc(b->p, cap);
                if (!q)
                        return -ENOMEM;
                b->p = q;
                b->cap = cap;
        }
        memcpy(b->p + b->len, p, n);
        b->len += n;
        return 0;
}

/* A text in COPY's text form: the delimiter, line ends and backslash escaped. */
static int put_text(struct copy_buf *b, const unsigned char *t, size_t n) {
        int r = 0;

        for (size_t i = 0; r == 0 && i < n; i++) {
                const char *esc = t[i] == '\\' ? "\\\\" : t[i] == '\t' ? "\\t"
                                : t[i] == '\n' ? "\\n" : t[i] == '\r' ? "\\r" : NULL;

                r = esc ? put(b, esc, 2) : put(b, &t[i], 1);
        }
        return r;
}

/* A blob as bytea's hex form, whose backslash COPY needs escaped: \\x0a1b... */
static int put_blob(struct copy_buf *b, const unsigned char *p, size_t n) {
        static const char hex[] = "0123456789abcdef";
        int r = put(b, "\\\\x", 3);

        for (size_t i = 0; r == 0 && i < n; i++) {
                char two[2] = { hex[p[i] >> 4], hex[p[i] & 15] };

                r = put(b, two, 2);
        }
        return r;
}

static int put_column(struct copy_buf *b, sqlite3_stmt *st, int col, char kind) {
        char num[24];

        if (sqlite3_column_type(st, col) == SQLITE_NULL)
                return put(b, "\\N", 2);
        switch (kind) {
        case 'i':
                if (sqlite3_column_type(st, col) != SQLITE_INTEGER)
                        return -EBADMSG;
                (void) snprintf(num, sizeof(num), "%" PRId64,
                                (int64_t) sqlite3_column_int64(st, col));
                return put(b, num, strlen(num));
        case 't':
                return put_text(b, sqlite3_column_text(st, col),
                                (size_t) sqlite3_column_bytes(st, col));
        default:
                return put_blob(b, sqlite3_column_blob(st, col),
                                (size_t) sqlite3_column_bytes(st, col));
        }
}

static int copy_flush(struct kh_pg_store *s, struct copy_buf *b) {
        if (b->len && PQputCopyData(s->conn, b->p, (int) b->len) != 1) {
                kh_pg_copy_message(s->error, sizeof(s->error), PQerrorMessage(s->conn));
                return -EIO;
        }
        b->len = 0;
        return 0;
}

/* Every row of one table of the file, through COPY ... FROM STDIN. */
static int copy_in(struct kh_pg_store *s, sqlite3 *db, const struct table *t, uint64_t *rows) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct copy_buf b = { 0 };
        int n = (int) strlen(t->kinds), rc, r = 0;
        char sql[512];

        (void) snprintf(sql, sizeof(sql), "SELECT %s FROM %s%s", t->columns, t->name, t->where);
        rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_fail(s, db, rc);
        (void) snprintf(sql, sizeof(sql), "COPY %s (%s) FROM STDIN", t->name, t->columns);
        res = PQexec(s->conn, sql);
        if (PQresultStatus(res) != PGRES_COPY_IN) {
                kh_pg_copy_message(s->error, sizeof(s->error),
                                   res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
                return kh_pg_error_of(res);
        }
        while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                for (int col = 0; r == 0 && col < n; col++) {
                        r = col ? put(&b, "\t", 1) : 0;
                        if (r == 0)
                                r = put_column(&b, st, col, t->kinds[col]);
                }
                if (r == 0)
                        r = put(&b, "\n", 1);
                if (r == 0 && b.len >= COPY_FLUSH)
                        r = copy_flush(s, &b);
                (*rows)++;
        }
        if (r == 0 && rc != SQLITE_DONE)
                r = sqlite_fail(s, db, rc);
        if (r == -EBADMSG)
                (void) snprintf(s->error, sizeof(s->error), "%s: a row of an unexpected form",
                                t->name);
        if (r == 0)
                r = copy_flush(s, &b);
        free(b.p);
        /* ending the COPY with an error message aborts it, and with it the transaction */
        if (PQputCopyEnd(s->conn, r == 0 ? NULL : "keyhold: snapshot unreadable") != 1 && r == 0) {
                kh_pg_copy_message(s->error, sizeof(s->error), PQerrorMessage(s->conn));
                r = -EIO;
        }
        PQclear(res);
        res = PQgetResult(s->conn);
        if (r == 0 && PQresultStatus(res) != PGRES_COMMAND_OK) {
                kh_pg_copy_message(s->error, sizeof(s->error),
                                   res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
                r = kh_pg_error_of(res);
        }
        /* PQgetResult() until NULL, so the connection is ready for the next command */
        for (PGresult *more; (more = PQgetResult(s->conn));)
                PQclear(more);
        return r;
}

/* Whether a table holds a row; -ENOTEMPTY if it does. */
static int table_empty(struct kh_pg_store *s, const char *name) {
        char sql[128];
        long long any;
        int r;

        (void) snprintf(sql, sizeof(sql), "SELECT COUNT(*) FROM (SELECT 1 FROM %s LIMIT 1) x",
                        name);
        r = pg_int(s, sql, &any);
        if (r == 0 && any) {
                (void) snprintf(s->error, sizeof(s->error),
                                "the database holds keyhold data (table %s is not empty)", name);
                r = -ENOTEMPTY;
        }
        return r;
}

/* The pending mark (kh_store_load()) as one more meta row of the load's transaction. */
static int put_pending(struct kh_pg_store *s, const char *pending) {
        const char *values[2] = { KH_STORE_META_RESTORE_PENDING, pending };
        int lengths[2] = { 0, (int) strlen(pending) }, formats[2] = { 0, 1 };
        KH_CLEANUP(PQclearp) PGresult *res =
                PQexecParams(s->conn, "INSERT INTO meta (key, value) VALUES ($1::text, $2::bytea)",
                             2, NULL, values, lengths, formats, 0);

        if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                kh_pg_copy_message(s->error, sizeof(s->error),
                                   res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
                return kh_pg_error_of(res);
        }
        return 0;
}

static int load_tx(struct kh_pg_store *s, sqlite3 *db, const char *pending,
                   struct kh_store_load_info *info) {
        KH_CLEANUP(stmt_finalizep) sqlite3_stmt *st = NULL;
        char sql[160];
        sqlite3_int64 version = 0, epoch = 0;
        uint64_t rows;
        int rc, r;

        /* the write lock first: no keyholdd writes meanwhile (the caller holds the
         * database alone, kh_store_exclusive(); this also covers one that ignores it) */
        r = pg_exec(s, "SELECT pg_advisory_xact_lock(" PG_WRITE_LOCK ")", NULL);
        for (size_t i = 0; r == 0 && i < KH_ELEMENTSOF(tables); i++)
                r = table_empty(s, tables[i].name);
        if (r < 0)
                return r;
        rc = sqlite3_prepare_v2(db, "SELECT (SELECT COALESCE(MAX(version), 0) FROM "
                                    "schema_migrations), (SELECT epoch FROM key_epoch)",
                                -1, &st, NULL);
        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                version = sqlite3_column_int64(st, 0);
                epoch = sqlite3_column_int64(st, 1);
        }
        if (rc != SQLITE_ROW)
                return sqlite_fail(s, db, rc);
        if (version != s->schema_version) {
                (void) snprintf(s->error, sizeof(s->error),
                                "the snapshot's schema version is %lld, the database's %d: "
                                "restore it with --data alone and start keyholdd on it once, "
                                "or use a keyhold of the snapshot's version",
                                (long long) version, s->schema_version);
                return -EPROTO;
        }
        for (size_t i = 0; i < KH_ELEMENTSOF(tables); i++) {
                rows = 0;
                r = copy_in(s, db, &tables[i], &rows);
                if (r < 0)
                        return r;
                if (strcmp(tables[i].name, "records") == 0)
                        info->records = rows;
                else if (strcmp(tables[i].name, "tenant_keys") == 0)
                        info->versions = rows;
        }
        /* past both the snapshot's epoch and every bump the copy made: a replica that saw
         * any epoch before reloads its keys */
        (void) snprintf(sql, sizeof(sql),
                        "UPDATE key_epoch SET epoch = GREATEST(epoch, %lld) + 1 WHERE id = 1",
                        (long long) epoch);
        r = pg_exec(s, sql, NULL);
        return r == 0 && pending ? put_pending(s, pending) : r;
}

int kh_pg_load(struct kh_store *store, const char *path, const char *pending,
               struct kh_store_load_info *ret) {
        struct kh_pg_store *s = kh_pg_of(store);
        KH_CLEANUP(sqlite_closep) sqlite3 *db = NULL;
        struct kh_store_load_info info = { 0 };
        int rc, r;

        r = connection(s);
        if (r < 0)
                return r;
        rc = kh_sqlite_snapshot_open(path, &db);
        if (rc != SQLITE_OK)
                return sqlite_fail(s, db, rc);
        /* no time limit on a statement or a lock: a large load takes a while, and it waits
         * for the write lock rather than fail */
        r = pg_exec(s, "BEGIN; SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0",
                    NULL);
        if (r < 0)
                return r;
        r = load_tx(s, db, pending, &info);
        if (r == 0)
                r = pg_exec(s, "COMMIT", NULL);
        if (r < 0) {
                (void) pg_exec(s, "ROLLBACK", NULL);
                return r;
        }
        *ret = info;
        return 0;
}

int kh_pg_load_done(struct kh_store *store) {
        struct kh_pg_store *s = kh_pg_of(store);
        int r = connection(s);

        return r < 0 ? r
                     : pg_exec(s, "DELETE FROM meta WHERE key = '" KH_STORE_META_RESTORE_PENDING "'",
                               NULL);
}
