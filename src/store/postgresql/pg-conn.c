/* The PostgreSQL backend's connection: connecting (password, timeouts, TLS through the URL's
 * own sslmode/sslrootcert), the schema migrations under an advisory lock, running prepared
 * statements, mapping errors, and making a lost connection again.
 *
 * Every statement is prepared on each new connection and run with binary parameters and
 * results. The server cancels a statement after KH_STORE_WAIT_MS and a lock wait after as
 * long (statement_timeout, lock_timeout); TCP keepalives and tcp_user_timeout bound the
 * wait for a server that vanished without closing the connection. */
#include "store/postgresql/pg-conn.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/file.h"
#include "store/migrations/migrations.h"

#define PG_MIGRATION_WAIT "60s" /* a replica waits this long for another one's migrations */
#define PG_PASSWORD_MAX   1024

#define STR_(x) #x
#define STR(x)  STR_(x)

static int64_t monotonic_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libpq's messages span lines ("...failed: Connection refused\n\tIs the server
 * running..."): one line for a log. */
void kh_pg_copy_message(char *dst, size_t n, const char *msg) {
        size_t j = 0;
        bool space = false;

        for (size_t i = 0; msg && msg[i] && j + 1 < n; i++) {
                char c = msg[i];

                if (c == '\n' || c == '\t' || c == '\r' || c == ' ') {
                        space = j > 0;
                        continue;
                }
                if (space && j + 2 < n)
                        dst[j++] = ' ';
                space = false;
                dst[j++] = c;
        }
        dst[j] = '\0';
}

void kh_pg_param_text(struct kh_pg_params *p, const char *s) {
        kh_pg_param_bytes(p, (const uint8_t *) s, strlen(s));
}

void kh_pg_param_int(struct kh_pg_params *p, int64_t v) {
        p->ints[p->n] = htobe64((uint64_t) v);
        p->is_int[p->n] = true;
        p->values[p->n] = NULL; /* &p->ints[n], set where the struct stays: run_once() */
        p->lengths[p->n] = 8;
        p->formats[p->n] = 1;
        p->n++;
}

/* An empty blob gets a non-NULL pointer: libpq sends NULL for a NULL value. */
void kh_pg_param_bytes(struct kh_pg_params *p, const uint8_t *b, size_t len) {
        p->values[p->n] = b ? (const char *) b : "";
        p->lengths[p->n] = (int) len;
        p->formats[p->n] = 1;
        p->n++;
}

void kh_pg_param_null(struct kh_pg_params *p) {
        p->values[p->n] = NULL;
        p->lengths[p->n] = 0;
        p->formats[p->n] = 1;
        p->n++;
}

int kh_pg_changes(PGresult *res) {
        const char *t = PQcmdTuples(res);
        long n = 0;

        for (; *t >= '0' && *t <= '9' && n < INT32_MAX / 10; t++)
                n = n * 10 + (*t - '0');
        return (int) n;
}

bool kh_pg_get_int(const PGresult *res, int row, int col, int64_t *ret) {
        uint64_t v;

        if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
                return false;
        memcpy(&v, PQgetvalue(res, row, col), 8);
        *ret = (int64_t) be64toh(v);
        return true;
}

/* Library code prints nothing: libpq's default writes the server's notices to stderr. */
static void ignore_notice(void *userdata, const char *message) {
        (void) userdata;
        (void) message;
}

/* connect_timeout in seconds: at start-up (PG_OPEN_CONNECT_S) keyholdd may wait for a server
 * that is busy starting, or for many replicas logging in at once; on the request path a
 * reconnect waits no longer than a statement may (KH_STORE_WAIT_MS) */
#define PG_OPEN_CONNECT_S    "30"
#define PG_RECONNECT_S       "5"

/* The read connection's statements end on the server a second before the store's own
 * KH_STORE_WAIT_MS bound (pg-async.c), so that a slow statement is answered as such on a
 * connection that stays, rather than by dropping it. */
#define PG_ASYNC_STATEMENT_OPTIONS "-c statement_timeout=" STR(KH_PG_ASYNC_STATEMENT_MS)

static PGconn *connect_db(const char *url, const char *password, const char *timeout_s,
                          bool start) {
        /* Order matters: the keys before dbname are defaults the URL may override, the
         * password after it overrides one in the URL. */
        const char *keys[] = { "connect_timeout", "keepalives", "keepalives_idle",
                               "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                               "fallback_application_name", "options", "dbname", "password",
                               NULL };
        const char *values[] = { timeout_s, "1", "5", "2", "2", STR(KH_STORE_WAIT_MS),
                                 "keyholdd", start ? PG_ASYNC_STATEMENT_OPTIONS : "",
                                 url, password, NULL };
        PGconn *c = start ? PQconnectStartParams(keys, values, 1)
                          : PQconnectdbParams(keys, values, 1);

        if (c)
                (void) PQsetNoticeProcessor(c, ignore_notice, NULL);
        return c;
}

PGconn *kh_pg_connect_start(const struct kh_pg_store *s) {
        return connect_db(s->url, s->password, PG_RECONNECT_S, true);
}

/* A connection that failed to open: why names the key at fault. libpq reports only text
 * for a failed start-up (no SQLSTATE), so the server's English messages are matched; any
 * other failure is an unreachable server. */
static int connect_failure(PGconn *c, char *why, size_t n) {
        const char *msg = c ? PQerrorMessage(c) : "out of memory";
        char line[200];

        kh_pg_copy_message(line, sizeof(line), msg);
        if (!c)
                return -ENOMEM;
        if (PQconnectionNeedsPassword(c) || strstr(msg, "password authentication failed") ||
            strstr(msg, "no password supplied") || strstr(msg, "authentication failed")) {
                (void) snprintf(why, n,
                                "[storage] password_file (or KEYHOLD_STORAGE_PASSWORD): the "
                                "PostgreSQL server refused the login: %s",
                                line);
                return -EACCES;
        }
        if (strstr(msg, "database \"") && strstr(msg, "does not exist")) {
                (void) snprintf(why, n, "[storage] url: no such database: %s", line);
                return -ENOENT;
        }
        if (strstr(msg, "role \"") && strstr(msg, "does not exist")) {
                (void) snprintf(why, n, "[storage] url: the PostgreSQL server refused the login: %s",
                                line);
                return -EACCES;
        }
        (void) snprintf(why, n, "[storage] url: cannot reach the PostgreSQL server: %s", line);
        return -ECONNREFUSED;
}

/* A statement of the session's own (SET, advisory locks, migrations): text results. */
static int exec_simple(PGconn *c, const char *sql, char *error, size_t n) {
        KH_CLEANUP(PQclearp) PGresult *res = PQexec(c, sql);
        ExecStatusType st = PQresultStatus(res);

        if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
                return 0;
        kh_pg_copy_message(error, n, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
        return -EIO;
}

static int session_setup(PGconn *c, char *error, size_t n) {
        char name[16];
        int r;

        r = exec_simple(c,
                        "SET statement_timeout = " STR(KH_STORE_WAIT_MS) "; "
                        "SET lock_timeout = " STR(KH_STORE_WAIT_MS),
                        error, n);
        if (r < 0)
                return r;
        for (int i = 0; i < PG_ST_N_; i++) {
                KH_CLEANUP(PQclearp) PGresult *res = NULL;

                (void) snprintf(name, sizeof(name), "kh%d", i);
                res = PQprepare(c, name, kh_pg_statements[i], 0, NULL);
                if (PQresultStatus(res) != PGRES_COMMAND_OK) {
                        kh_pg_copy_message(error, n,
                                     res ? PQresultErrorMessage(res) : PQerrorMessage(c));
                        return -EIO;
                }
        }
        return 0;
}

/* The single non-negative integer a text-format query returns. */
static int query_count(PGconn *c, const char *sql, long long *ret, char *error, size_t n) {
        KH_CLEANUP(PQclearp) PGresult *res = PQexec(c, sql);
        const char *v;
        long long x = 0;

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                kh_pg_copy_message(error, n, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
                return -EIO;
        }
        if (PQntuples(res) != 1 || PQnfields(res) != 1 || PQgetisnull(res, 0, 0))
                return -KH_E_INTEGRITY;
        v = PQgetvalue(res, 0, 0);
        if (!*v)
                return -KH_E_INTEGRITY;
        for (; *v; v++) {
                if (*v < '0' || *v > '9' || x > INT32_MAX)
                        return -KH_E_INTEGRITY;
                x = x * 10 + (*v - '0');
        }
        *ret = x;
        return 0;
}

/* Takes PG_USERS_LOCK for the session on c, without waiting: shared (what every connection
 * holds) or exclusive (a tool that must have the database to itself, which first gives up
 * its own shared hold). -EWOULDBLOCK: another session holds it in a conflicting mode. */
static int try_users_lock(PGconn *c, bool exclusive, char *error, size_t n) {
        const char *sql = exclusive ? "SELECT pg_advisory_unlock_shared(" PG_USERS_LOCK "), "
                                      "pg_try_advisory_lock(" PG_USERS_LOCK ")"
                                    : "SELECT true, pg_try_advisory_lock_shared(" PG_USERS_LOCK
                                      ")";
        KH_CLEANUP(PQclearp) PGresult *res = PQexec(c, sql);

        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
                kh_pg_copy_message(error, n, res ? PQresultErrorMessage(res) : PQerrorMessage(c));
                return -EIO;
        }
        if (PQntuples(res) != 1 || PQnfields(res) != 2)
                return -KH_E_INTEGRITY;
        if (strcmp(PQgetvalue(res, 0, 1), "t") == 0)
                return 0;
        kh_pg_copy_message(error, n,
                     exclusive ? "another keyholdd or tool is connected to the database"
                               : "`keyhold keystore migrate` holds the database");
        return -EWOULDBLOCK;
}

/* The same, trying for up to PG_USERS_LOCK_WAIT_MS: a session ends on the server a moment
 * after its client closed it, so a keyholdd started just as keystore migrate finished (or
 * the migrate just after keyholdd stopped) would otherwise find the lock still held. Only
 * where waiting is allowed (opening a store, an offline tool), never on a worker's loop. */
static int take_users_lock(PGconn *c, bool exclusive, char *error, size_t n) {
        int r;

        for (int64_t end = monotonic_ms() + PG_USERS_LOCK_WAIT_MS;;) {
                r = try_users_lock(c, exclusive, error, n);
                if (r != -EWOULDBLOCK || monotonic_ms() >= end)
                        return r;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 20 * 1000000L }, NULL);
        }
}

static int apply_migration(PGconn *c, const struct kh_store_migration *m, char *error,
                           size_t n) {
        char record[160];
        int r;

        (void) snprintf(record, sizeof(record),
                        "INSERT INTO schema_migrations (version, applied_at) VALUES (%d, "
                        "EXTRACT(EPOCH FROM now())::bigint)",
                        m->version);
        r = exec_simple(c, "BEGIN", error, n);
        if (r < 0)
                return r;
        r = exec_simple(c, m->sql, error, n);
        if (r >= 0)
                r = exec_simple(c, record, error, n);
        if (r >= 0)
                r = exec_simple(c, "COMMIT", error, n);
        if (r < 0)
                (void) exec_simple(c, "ROLLBACK", record, sizeof(record));
        return r;
}

/* Under a session advisory lock, so that of several replicas starting on an empty database
 * one applies each migration and the others, waiting for the lock, find them done. */
static int migrate_locked(struct kh_pg_store *s, char *why, size_t why_len) {
        const struct kh_store_migration *m = kh_store_postgresql_migrations;
        const size_t n = kh_store_postgresql_n_migrations;
        long long current;
        int r;

        r = exec_simple(s->conn,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        "version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
                        s->error, sizeof(s->error));
        if (r < 0)
                return r;
        r = query_count(s->conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                        &current, s->error, sizeof(s->error));
        if (r < 0)
                return r;
        if (current > m[n - 1].version) {
                (void) snprintf(s->error, sizeof(s->error),
                                "database schema version %lld is newer than this build's %d",
                                current, m[n - 1].version);
                (void) snprintf(why, why_len,
                                "[storage] url: the database's schema (version %lld) is newer "
                                "than this build of keyholdd knows (%d): run a newer keyholdd",
                                current, m[n - 1].version);
                return -EPROTO;
        }
        for (size_t i = 0; i < n; i++) {
                if (m[i].version <= current)
                        continue;
                r = apply_migration(s->conn, &m[i], s->error, sizeof(s->error));
                if (r < 0)
                        return r;
        }
        s->schema_version = m[n - 1].version;
        return 0;
}

static int migrate(struct kh_pg_store *s, char *why, size_t why_len) {
        char ignored[64];
        int r;

        r = exec_simple(s->conn,
                        "SET lock_timeout = '" PG_MIGRATION_WAIT "'; "
                        "SELECT pg_advisory_lock(" PG_MIGRATION_LOCK ")",
                        s->error, sizeof(s->error));
        if (r < 0)
                return r;
        r = migrate_locked(s, why, why_len);
        (void) exec_simple(s->conn, "SELECT pg_advisory_unlock(" PG_MIGRATION_LOCK ")", ignored,
                           sizeof(ignored));
        return r;
}

/* The whole file less one trailing newline, in a string of its own (wiped when freed). */
static int read_password(const char *path, char **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b;
        char *p;
        int r;

        kh_buf_init(&b, PG_PASSWORD_MAX + 2, true);
        r = kh_file_read(AT_FDCWD, path, 0, PG_PASSWORD_MAX + 1, &b);
        if (r < 0)
                return r;
        if (b.len > 0 && b.data[b.len - 1] == '\n')
                b.len--;
        if (b.len == 0 || memchr(b.data, '\0', b.len))
                return -EINVAL;
        p = malloc(b.len + 1);
        if (!p)
                return -ENOMEM;
        memcpy(p, b.data, b.len);
        p[b.len] = '\0';
        *ret = p;
        return 0;
}

static void free_password(char *p) {
        if (p) {
                explicit_bzero(p, strlen(p));
                free(p);
        }
}

static struct kh_pg_store *pg_store_free(struct kh_pg_store *s) {
        if (!s)
                return NULL;
        kh_pg_async_free(s);
        PQfinish(s->conn); /* NULL is a no-op; an open transaction is rolled back */
        free(s->url);
        free_password(s->password);
        free(s);
        return NULL;
}
KH_DEFINE_CLEANUP(pg_store_free, struct kh_pg_store *)

static int password_of(const struct kh_config_storage *cfg, char **ret, char *why, size_t n) {
        int r;

        if (cfg->password_file) {
                r = read_password(cfg->password_file, ret);
                if (r < 0)
                        (void) snprintf(why, n, "[storage] password_file: cannot read %s: %s",
                                        cfg->password_file,
                                        r == -EINVAL ? "empty, or holds a NUL byte"
                                        : r == -EFBIG ? "longer than 1024 bytes"
                                                      : strerror(-r));
                return r;
        }
        if (cfg->password) {
                *ret = strdup(cfg->password);
                return *ret ? 0 : -ENOMEM;
        }
        *ret = NULL;
        return 0;
}

int kh_pg_open(const struct kh_config_storage *cfg, struct kh_store **ret, char *why, size_t n) {
        KH_CLEANUP(pg_store_freep) struct kh_pg_store *s = NULL;
        PQconninfoOption *opts;
        char *parse_error = NULL;
        int r;

        if (!cfg->url || !*cfg->url)
                return -EINVAL;
        opts = PQconninfoParse(cfg->url, &parse_error);
        if (!opts) {
                char line[160];

                kh_pg_copy_message(line, sizeof(line), parse_error ? parse_error : "out of memory");
                (void) snprintf(why, n, "[storage] url: not a libpq connection string or URI: %s",
                                line);
                PQfreemem(parse_error);
                return parse_error ? -EINVAL : -ENOMEM;
        }
        PQconninfoFree(opts);

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->base.ops = &kh_store_postgresql_ops;
        s->url = strdup(cfg->url);
        if (!s->url)
                return -ENOMEM;
        r = password_of(cfg, &s->password, why, n);
        if (r < 0)
                return r;

        s->conn = connect_db(s->url, s->password, PG_OPEN_CONNECT_S, false);
        if (PQstatus(s->conn) != CONNECTION_OK)
                return connect_failure(s->conn, why, n);

        /* before the migrations: a database that keystore migrate holds is not touched */
        r = take_users_lock(s->conn, false, s->error, sizeof(s->error));
        if (r == -EWOULDBLOCK) {
                (void) snprintf(why, n,
                                "[storage] url: `keyhold keystore migrate` is moving the keys of "
                                "this database (it holds the database's advisory lock); start "
                                "once it has finished");
                return -EBUSY;
        }
        if (r >= 0)
                r = migrate(s, why, n);
        if (r >= 0)
                r = session_setup(s->conn, s->error, sizeof(s->error));
        if (r < 0) {
                if (!why[0])
                        (void) snprintf(why, n, "[storage] url: cannot set up the database: %s",
                                        s->error);
                return r;
        }
        s->error[0] = '\0';
        *ret = &KH_TAKE_PTR(s)->base;
        return 0;
}

void kh_pg_close(struct kh_store *store) {
        (void) pg_store_free(kh_pg_of(store));
}

static int unavailable(struct kh_pg_store *s, const char *msg) {
        if (msg)
                kh_pg_copy_message(s->error, sizeof(s->error), msg);
        return -KH_E_STORAGE_UNAVAILABLE;
}

/* The connection is gone: drop it (a transaction on it is gone too). */
static void lost(struct kh_pg_store *s) {
        PQfinish(s->conn);
        s->conn = NULL;
        s->listening = false;            /* a new connection listens again */
        if (s->in_tx) {
                s->in_tx = false;
                s->tx_lost = true;
        }
}

static int ensure_connected(struct kh_pg_store *s) {
        PGconn *c;
        int64_t now;

        if (s->tx_lost)
                return unavailable(s, "the connection was lost inside a transaction");
        if (s->conn && PQstatus(s->conn) == CONNECTION_OK)
                return 0;
        if (s->conn)
                lost(s);
        /* a connection found lost is made again at once; after a failed attempt the next
         * one waits KH_STORE_RECONNECT_MS, so that a server that is down is not hammered by
         * every request */
        now = monotonic_ms();
        if (s->connect_failed && now - s->last_connect_ms < KH_STORE_RECONNECT_MS)
                return -KH_E_STORAGE_UNAVAILABLE; /* s->error still says why */
        s->last_connect_ms = now;
        s->connect_failed = true;
        c = connect_db(s->url, s->password, PG_RECONNECT_S, false);
        if (PQstatus(c) != CONNECTION_OK) {
                (void) unavailable(s, c ? PQerrorMessage(c) : "out of memory");
                PQfinish(c);
                return -KH_E_STORAGE_UNAVAILABLE;
        }
        /* a connection made again holds the users' lock as the lost one did: a keyholdd whose
         * connections all broke (a server restart) does not serve beside a keystore migrate
         * that started meanwhile */
        if (session_setup(c, s->error, sizeof(s->error)) < 0 ||
            try_users_lock(c, s->exclusive, s->error, sizeof(s->error)) < 0) {
                PQfinish(c);
                return -KH_E_STORAGE_UNAVAILABLE;
        }
        s->conn = c;
        s->connect_failed = false;
        return 0;
}

int kh_pg_exclusive(struct kh_store *store) {
        struct kh_pg_store *s = kh_pg_of(store);
        char ignored[64];
        int r;

        if (s->exclusive)
                return 0;
        if (s->in_tx)
                return -EBUSY;
        r = ensure_connected(s);
        if (r < 0)
                return r;
        r = take_users_lock(s->conn, true, s->error, sizeof(s->error));
        if (r == -EWOULDBLOCK)
                /* back to what every connection holds, for as long as this one is used */
                (void) try_users_lock(s->conn, false, ignored, sizeof(ignored));
        if (r < 0)
                return r;
        s->exclusive = true;
        return 0;
}

static bool sqlstate_is(const char *state, const char *prefix) {
        return state && strncmp(state, prefix, strlen(prefix)) == 0;
}

bool kh_pg_connection_lost(PGconn *c, const PGresult *res) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        /* class 08: connection exception; 57P01-57P03: the server shuts down or restarts */
        return PQstatus(c) != CONNECTION_OK || sqlstate_is(state, "08") ||
               sqlstate_is(state, "57P");
}

int kh_pg_error_of(const PGresult *res) {
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

        if (!state)
                return res ? -EIO : -ENOMEM;
        /* statement_timeout, lock_timeout, a deadlock or serialisation failure, no
         * connection slot left: the request may succeed shortly */
        if (sqlstate_is(state, "57014") || sqlstate_is(state, "55P03") ||
            sqlstate_is(state, "40") || sqlstate_is(state, "53300"))
                return -KH_E_STORAGE_UNAVAILABLE;
        if (sqlstate_is(state, "53100"))
                return -ENOSPC;
        if (sqlstate_is(state, "53200"))
                return -ENOMEM;
        return -EIO;
}

/* Keeps the server's message for kh_store_last_error() and turns the failure into an
 * errno: waits and lost connections are the client's 503, the rest a server fault. */
static int fail(struct kh_pg_store *s, const PGresult *res) {
        kh_pg_copy_message(s->error, sizeof(s->error),
                           res ? PQresultErrorMessage(res) : PQerrorMessage(s->conn));
        if (kh_pg_connection_lost(s->conn, res)) {
                lost(s);
                return -KH_E_STORAGE_UNAVAILABLE;
        }
        return kh_pg_error_of(res);
}

/* Statements that never write: safe to run again on a new connection. */
static bool is_read(int id) {
        switch (id) {
        case PG_ST_TENANT_KEYS:
        case PG_ST_TENANT_KEY_EXISTS:
        case PG_ST_RECORDS_UNDER:
        case PG_ST_AUDIT_LAST:
        case PG_ST_AUDIT_SCAN_ASC:
        case PG_ST_AUDIT_SCAN_DESC:
        case PG_ST_META_GET:
        case PG_ST_RECORD_GET:
        case PG_ST_RECORD_COUNT:
        case PG_ST_RECORDS_LIST:
        case PG_ST_PING:
        case PG_ST_KEY_EPOCH:
        case PG_ST_LEASE_GET:
                return true;
        default:
                return false;
        }
}

/* The values of p as libpq takes them (an integer's bytes are in p itself) and the name
 * statement id was prepared under (16 bytes). */
static void param_values(const struct kh_pg_params *p, int id, const char **values, char *name) {
        for (int i = 0; p && i < p->n; i++)
                values[i] = p->is_int[i] ? (const char *) &p->ints[i] : p->values[i];
        (void) snprintf(name, 16, "kh%d", id);
}

static int run_once(struct kh_pg_store *s, int id, const struct kh_pg_params *p,
                    PGresult **ret) {
        const char *values[PG_PARAMS_MAX];
        PGresult *res;
        ExecStatusType st;
        char name[16];
        int r;

        r = ensure_connected(s);
        if (r < 0)
                return r;
        param_values(p, id, values, name);
        res = PQexecPrepared(s->conn, name, p ? p->n : 0, p ? values : NULL,
                             p ? p->lengths : NULL, p ? p->formats : NULL, 1);
        st = PQresultStatus(res);
        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
                *ret = res;
                return 0;
        }
        r = fail(s, res);
        PQclear(res);
        return r;
}

int kh_pg_run(struct kh_pg_store *s, int id, const struct kh_pg_params *p, PGresult **ret) {
        bool had_conn = s->conn != NULL;
        int r = run_once(s, id, p, ret);

        /* A connection found lost (the server restarted since the last call): a read
         * outside a transaction is run once more, on a new connection if one can be made
         * now; a write is not, as it may have been committed. */
        if (r == -KH_E_STORAGE_UNAVAILABLE && had_conn && !s->conn && !s->tx_lost &&
            is_read(id))
                r = run_once(s, id, p, ret);
        return r;
}

static int run_command(struct kh_pg_store *s, int id) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;

        return kh_pg_run(s, id, NULL, &res);
}

static bool send_prepared(PGconn *c, int id, const struct kh_pg_params *p) {
        const char *values[PG_PARAMS_MAX];
        char name[16];

        param_values(p, id, values, name);
        return PQsendQueryPrepared(c, name, p ? p->n : 0, p ? values : NULL,
                                   p ? p->lengths : NULL, p ? p->formats : NULL, 1) == 1;
}

/* Sends the batch of kh_pg_run_batch() in pipeline mode, then a sync. */
static bool send_batch(PGconn *c, bool own_tx, int id, const struct kh_pg_params *params,
                       size_t n) {
        bool ok = PQenterPipelineMode(c) == 1;

        if (ok && own_tx)
                ok = send_prepared(c, PG_ST_TX_BEGIN, NULL) &&
                     send_prepared(c, PG_ST_TX_LOCK, NULL);
        for (size_t i = 0; ok && i < n; i++)
                ok = send_prepared(c, id, &params[i]);
        if (ok && own_tx)
                ok = send_prepared(c, PG_ST_TX_COMMIT, NULL);
        return ok && PQpipelineSync(c) == 1;
}

int kh_pg_run_batch(struct kh_pg_store *s, int id, const struct kh_pg_params *params, size_t n,
                    int *ret_changes) {
        /* with a transaction of its own: BEGIN and the lock are results 0 and 1 */
        bool own_tx = !s->in_tx;
        size_t first = own_tx ? 2 : 0, got = 0, nulls = 0;
        int r, err = 0, changes = 0;

        r = ensure_connected(s);
        if (r < 0)
                return r;
        if (!send_batch(s->conn, own_tx, id, params, n)) {
                (void) unavailable(s, PQerrorMessage(s->conn));
                lost(s);                 /* what was sent is not known: start afresh */
                return -KH_E_STORAGE_UNAVAILABLE;
        }
        /* one result per statement, each followed by NULL, then the sync's */
        for (;;) {
                PGresult *res = PQgetResult(s->conn);
                ExecStatusType st;

                if (!res) {
                        if (++nulls > 1 || PQstatus(s->conn) != CONNECTION_OK) {
                                (void) unavailable(s, PQerrorMessage(s->conn));
                                lost(s);
                                return -KH_E_STORAGE_UNAVAILABLE;
                        }
                        continue;
                }
                nulls = 0;
                st = PQresultStatus(res);
                if (st == PGRES_PIPELINE_SYNC) {
                        PQclear(res);
                        break;
                }
                if ((st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) && got >= first &&
                    got < first + n)
                        changes += kh_pg_changes(res);
                else if (st == PGRES_COMMAND_OK && own_tx && got == first + n &&
                         strcmp(PQcmdStatus(res), "COMMIT") != 0)
                        err = err ? err : -EIO;
                else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
                         st != PGRES_PIPELINE_ABORTED && !err) {
                        err = fail(s, res);
                        if (!s->conn) {  /* lost: nothing more to read */
                                PQclear(res);
                                return err;
                        }
                }
                PQclear(res);
                got++;
        }
        if (PQexitPipelineMode(s->conn) != 1) {
                (void) unavailable(s, PQerrorMessage(s->conn));
                lost(s);
                return -KH_E_STORAGE_UNAVAILABLE;
        }
        /* a statement that failed left the transaction aborted: its own is ended here, the
         * caller's by the caller */
        if (err && own_tx)
                (void) run_command(s, PG_ST_TX_ROLLBACK);
        if (err)
                return err;
        *ret_changes = changes;
        return 0;
}

int kh_pg_tx_begin(struct kh_store *store) {
        struct kh_pg_store *s = kh_pg_of(store);
        int r;

        r = run_command(s, PG_ST_TX_BEGIN);
        if (r < 0)
                return r;
        s->in_tx = true;
        r = run_command(s, PG_ST_TX_LOCK);
        if (r < 0)
                kh_pg_tx_rollback(store);
        return r;
}

/* COMMIT of a transaction a failed statement aborted answers "ROLLBACK": not a commit. */
int kh_pg_tx_commit(struct kh_store *store) {
        struct kh_pg_store *s = kh_pg_of(store);
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        int r;

        if (!s->in_tx && !s->tx_lost) {
                (void) snprintf(s->error, sizeof(s->error), "no transaction to commit");
                return -EINVAL;
        }
        r = kh_pg_run(s, PG_ST_TX_COMMIT, NULL, &res);
        s->in_tx = false;
        s->tx_lost = false;
        if (r < 0)
                return r;
        if (strcmp(PQcmdStatus(res), "COMMIT") != 0) {
                (void) snprintf(s->error, sizeof(s->error),
                                "the transaction was aborted by an earlier error");
                return -EIO;
        }
        return 0;
}

void kh_pg_tx_rollback(struct kh_store *store) {
        struct kh_pg_store *s = kh_pg_of(store);

        if (s->tx_lost) {
                s->tx_lost = false;
                return;
        }
        if (s->in_tx)
                (void) run_command(s, PG_ST_TX_ROLLBACK);
        s->in_tx = false;
}

/* Takes what notifications the connection has received; true if any. */
static bool drain_notifies(struct kh_pg_store *s) {
        PGnotify *n;
        bool any = false;

        while ((n = PQnotifies(s->conn))) {
                any = true;
                PQfreemem(n);
        }
        return any;
}

int kh_pg_key_epoch_wait(struct kh_store *store, int timeout_ms) {
        struct kh_pg_store *s = kh_pg_of(store);
        struct pollfd pfd;
        int r;

        if (s->in_tx || s->tx_lost)
                return -EINVAL;
        r = ensure_connected(s);
        if (r < 0)
                return r;
        if (!s->listening) {
                /* a utility statement, not one of the prepared ones */
                KH_CLEANUP(PQclearp) PGresult *res = PQexec(s->conn, "LISTEN keyhold_keys");

                if (PQresultStatus(res) != PGRES_COMMAND_OK)
                        return fail(s, res);
                s->listening = true;
                return 1;                /* what changed before is not known: look */
        }
        if (drain_notifies(s))
                return 1;
        pfd = (struct pollfd) { .fd = PQsocket(s->conn), .events = POLLIN };
        r = poll(&pfd, 1, timeout_ms);
        if (r < 0)
                return errno == EINTR ? 0 : -errno;
        if (r == 0)
                return 0;
        if (!PQconsumeInput(s->conn) || PQstatus(s->conn) != CONNECTION_OK) {
                (void) unavailable(s, PQerrorMessage(s->conn));
                lost(s);
                return -KH_E_STORAGE_UNAVAILABLE;
        }
        return drain_notifies(s);
}
