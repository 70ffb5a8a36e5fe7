/* The PostgreSQL database of Key Connector's `postgresql` provider (spec section 2.1). EF
 * quotes every name, so they are case-sensitive here: "UserKeys" ("Id" uuid, "Key" text)
 * and "ApplicationDatas" ("Id" integer, "SymmetricKey" text). Read only, twice over: the
 * session starts with default_transaction_read_only=on and both SELECTs run in one
 * REPEATABLE READ READ ONLY transaction, so they see one snapshot. Rows arrive one at a
 * time (single-row mode), so a huge table fails at the record limit, not out of memory. */
#include <assert.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/buf.h"
#include "common/errors.h"
#include "import/kc-source-internal.h"
#include "import/kc-source.h"

static void PQfinishp(PGconn **c) {
        if (*c)
                PQfinish(*c);
}
static void PQclearp(PGresult **r) {
        PQclear(*r); /* NULL-safe */
}
static void PQconninfoFreep(PQconninfoOption **o) {
        PQconninfoFree(*o); /* NULL-safe */
}

/* Appended to the session's options (after any of the conninfo's own, so it wins). */
#define READ_ONLY_OPTION "-c default_transaction_read_only=on"

/* libpq's message (several lines, a newline at the end) as one line of detail. libpq's
 * messages name the host, port, user and database, never the password. */
static int pg_detail(const char *msg, int error, char *detail, size_t detail_len) {
        size_t n;

        kh_kc_detail(detail, detail_len, "PostgreSQL: %s", msg && msg[0] ? msg : "unknown error");
        if (!detail || detail_len == 0)
                return error;
        for (char *c = detail; *c; c++)
                if (*c == '\n' || *c == '\r' || *c == '\t')
                        *c = ' ';
        n = strlen(detail);
        while (n > 0 && detail[n - 1] == ' ')
                detail[--n] = 0;
        return error;
}

/* The result of a statement: 0 if its status is want, else an error with libpq's message.
 * No result at all is a lost connection or -ENOMEM. */
static int pg_check(PGconn *conn, const PGresult *res, ExecStatusType want, char *detail,
                    size_t detail_len) {
        if (!res && PQstatus(conn) != CONNECTION_BAD)
                return -ENOMEM;
        if (!res)
                return pg_detail(PQerrorMessage(conn), -KH_E_KC_SOURCE_OPEN, detail, detail_len);
        if (PQresultStatus(res) == want)
                return 0;
        return pg_detail(PQresultErrorMessage(res), -KH_E_KC_SOURCE_OPEN, detail, detail_len);
}

static int pg_command(PGconn *conn, const char *sql, char *detail, size_t detail_len) {
        KH_CLEANUP(PQclearp) PGresult *res = PQexec(conn, sql);

        return pg_check(conn, res, PGRES_COMMAND_OK, detail, detail_len);
}

/* Runs sql (its parameter $1 = param, if not NULL) in single-row mode and calls row() for
 * each row; stops at the first error, leaving the connection to be closed. */
static int pg_rows(PGconn *conn, const char *sql, const char *param,
                   int (*row)(const PGresult *res, void *u, char *detail, size_t detail_len),
                   void *u, char *detail, size_t detail_len) {
        int r;

        if (!PQsendQueryParams(conn, sql, param ? 1 : 0, NULL, param ? &param : NULL, NULL,
                               NULL, 0))
                return pg_detail(PQerrorMessage(conn), -KH_E_KC_SOURCE_OPEN, detail,
                                 detail_len);
        if (!PQsetSingleRowMode(conn))
                return -ENOMEM; /* only fails right after a failed send */
        for (;;) {
                KH_CLEANUP(PQclearp) PGresult *res = PQgetResult(conn);

                if (!res)
                        return 0;
                if (PQresultStatus(res) == PGRES_TUPLES_OK)
                        continue; /* the end; PQgetResult gives NULL next */
                r = pg_check(conn, res, PGRES_SINGLE_TUPLE, detail, detail_len);
                if (r < 0)
                        return r;
                r = row(res, u, detail, detail_len);
                if (r < 0)
                        return r;
        }
}

struct columns {
        const char *const *names;
        size_t n;
        bool found[4];
        size_t rows;
};

static int column_row(const PGresult *res, void *u, char *detail, size_t detail_len) {
        struct columns *c = u;

        (void) detail;
        (void) detail_len;
        c->rows++;
        for (size_t i = 0; i < c->n; i++)
                c->found[i] |= strcmp(PQgetvalue(res, 0, 0), c->names[i]) == 0;
        return 0;
}

/* Checks that the table a query naming "table" would use (search_path) has the columns,
 * spelled exactly, so that a wrong layout is a clear answer instead of an SQL error. */
static int check_table(PGconn *conn, const char *table, const char *const *names, size_t n,
                       char *detail, size_t detail_len) {
        struct columns c = { .names = names, .n = n };
        char quoted[64];
        int r;

        assert(n <= KH_ELEMENTSOF(c.found) && strlen(table) + 3 <= sizeof(quoted));
        (void) snprintf(quoted, sizeof(quoted), "\"%s\"", table);
        r = pg_rows(conn,
                    "SELECT attname FROM pg_catalog.pg_attribute WHERE attrelid = "
                    "to_regclass($1::text) AND attnum > 0 AND NOT attisdropped",
                    quoted, column_row, &c, detail, detail_len);
        if (r < 0)
                return r;
        if (c.rows == 0) {
                kh_kc_detail(detail, detail_len, "no table \"%s\"", table);
                return -KH_E_KC_LAYOUT;
        }
        for (size_t i = 0; i < n; i++)
                if (!c.found[i]) {
                        kh_kc_detail(detail, detail_len, "table \"%s\" has no column \"%s\"",
                                     table, names[i]);
                        return -KH_E_KC_LAYOUT;
                }
        return 0;
}

static int data_key_row(const PGresult *res, void *u, char *detail, size_t detail_len) {
        if (PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) == 0)
                return 0;
        return kh_kc_add_wrapped(u, PQgetvalue(res, 0, 0), (size_t) PQgetlength(res, 0, 0),
                                 detail, detail_len);
}

static int record_row(const PGresult *res, void *u, char *detail, size_t detail_len) {
        bool id_null = PQgetisnull(res, 0, 0), key_null = PQgetisnull(res, 0, 1);

        return kh_kc_add_record(u, id_null ? NULL : PQgetvalue(res, 0, 0),
                                id_null ? 0 : (size_t) PQgetlength(res, 0, 0),
                                key_null ? KH_KC_KEY_NONE : KH_KC_KEY_TEXT,
                                key_null ? NULL : PQgetvalue(res, 0, 1),
                                key_null ? 0 : (size_t) PQgetlength(res, 0, 1), detail,
                                detail_len);
}

/* Connects with conninfo's own parameters plus the read-only session option (appended to
 * any "options" it has), a 10 s connect timeout unless it sets one, and an application
 * name DBAs can recognise. */
static int pg_connect(const char *conninfo, PGconn **ret, char *detail, size_t detail_len) {
        KH_CLEANUP(PQconninfoFreep) PQconninfoOption *opts = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf options;
        KH_CLEANUP(kh_freep) const char **keys = NULL;
        KH_CLEANUP(kh_freep) const char **vals = NULL;
        bool has_timeout = false, has_name = false;
        PGconn *conn;
        char *err = NULL;
        size_t n = 0, i = 0;
        int r;

        kh_buf_init(&options, 64 * 1024, true);
        opts = PQconninfoParse(conninfo, &err);
        if (!opts && !err)
                return -ENOMEM;
        if (!opts) {
                /* libpq's parse errors quote the text around the fault, which may be the
                 * password: say only that it is malformed */
                PQfreemem(err);
                kh_kc_detail(detail, detail_len, "%s",
                             "not a valid libpq connection string or postgresql:// URI");
                return -KH_E_KC_SOURCE_SPEC;
        }
        r = kh_buf_append_str(&options, READ_ONLY_OPTION);
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val)
                        continue;
                n++;
                has_timeout |= strcmp(o->keyword, "connect_timeout") == 0;
                has_name |= strcmp(o->keyword, "application_name") == 0;
                if (strcmp(o->keyword, "options") == 0) {
                        kh_buf_reset(&options);
                        r = kh_buf_append_str(&options, o->val);
                        if (r >= 0)
                                r = kh_buf_append_str(&options, " " READ_ONLY_OPTION);
                }
        }
        if (r == -E2BIG) {
                kh_kc_detail(detail, detail_len, "%s", "the connection's options are too long");
                return -KH_E_KC_SOURCE_SPEC;
        }
        if (r < 0)
                return r;

        keys = calloc(n + 4, sizeof(*keys));
        vals = calloc(n + 4, sizeof(*vals));
        if (!keys || !vals)
                return -ENOMEM;
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val || strcmp(o->keyword, "options") == 0)
                        continue;
                keys[i] = o->keyword;
                vals[i++] = o->val;
        }
        keys[i] = "options";
        vals[i++] = (const char *) options.data;
        if (!has_timeout) {
                keys[i] = "connect_timeout";
                vals[i++] = "10";
        }
        if (!has_name) {
                keys[i] = "application_name";
                vals[i++] = "keyhold import";
        }
        keys[i] = NULL;

        conn = PQconnectdbParams(keys, vals, 0);
        if (!conn)
                return -ENOMEM;
        if (PQstatus(conn) != CONNECTION_OK) {
                r = pg_detail(PQerrorMessage(conn), -KH_E_KC_SOURCE_OPEN, detail, detail_len);
                PQfinish(conn);
                return r;
        }
        *ret = conn;
        return 0;
}

int kh_kc_read_postgresql(const char *conninfo, struct kh_kc_data **ret, char *detail,
                          size_t detail_len) {
        static const char *const user_keys[] = { "Id", "Key" };
        static const char *const app_datas[] = { "Id", "SymmetricKey" };
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;
        KH_CLEANUP(PQfinishp) PGconn *conn = NULL;
        int r;

        r = pg_connect(conninfo, &conn, detail, detail_len);
        if (r < 0)
                return r;
        r = pg_command(conn, "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
                       detail, detail_len);
        if (r < 0)
                return r;
        r = check_table(conn, "UserKeys", user_keys, KH_ELEMENTSOF(user_keys), detail,
                        detail_len);
        if (r < 0)
                return r;
        r = check_table(conn, "ApplicationDatas", app_datas, KH_ELEMENTSOF(app_datas), detail,
                        detail_len);
        if (r < 0)
                return r;

        r = kh_kc_data_new("postgresql", &d);
        if (r < 0)
                return r;
        r = pg_rows(conn, "SELECT \"SymmetricKey\" FROM \"ApplicationDatas\" ORDER BY \"Id\"",
                    NULL, data_key_row, d, detail, detail_len);
        if (r < 0)
                return r;
        if (d->n_wrapped == 0) {
                kh_kc_detail(detail, detail_len, "%s",
                             "\"ApplicationDatas\" has no row with a \"SymmetricKey\"");
                return -KH_E_KC_NO_DATA_KEY;
        }
        r = pg_rows(conn, "SELECT \"Id\"::text, \"Key\" FROM \"UserKeys\" ORDER BY \"Id\"", NULL,
                    record_row, d, detail, detail_len);
        if (r < 0)
                return r;
        r = pg_command(conn, "COMMIT", detail, detail_len);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(d);
        return 0;
}
