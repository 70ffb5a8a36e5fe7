/* The SQLite database of Key Connector's `sqlite` provider (spec section 2.1): tables
 * UserKeys (Id TEXT, Key TEXT) and ApplicationDatas (Id INTEGER, SymmetricKey TEXT), made by
 * EF Core. The file is opened as an immutable read-only URI: SQLite then takes no lock and
 * creates no -wal, -shm or journal beside it, so the source stays byte for byte as it was. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/file.h"
#include "import/kc-source-internal.h"
#include "import/kc-source.h"

static void sqlite3_closep(sqlite3 **db) {
        (void) sqlite3_close(*db); /* NULL-safe */
}
static void sqlite3_finalizep(sqlite3_stmt **st) {
        (void) sqlite3_finalize(*st); /* NULL-safe */
}

/* "file:PATH?mode=ro&immutable=1" with every byte of PATH outside [A-Za-z0-9/._~-] as %XX,
 * so that '?', '#' and '%' in a file name stay part of it. An absolute path gets an empty
 * authority ("file:///...") so that one starting with "//" is no host name. */
static int make_uri(const char *path, struct kh_buf *out) {
        static const char hex[] = "0123456789ABCDEF";
        int r;

        r = kh_buf_append_str(out, path[0] == '/' ? "file://" : "file:");
        for (const unsigned char *c = (const unsigned char *) path; r >= 0 && *c; c++) {
                bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                             (*c >= '0' && *c <= '9') || strchr("/._~-", *c);
                char esc[3] = { '%', hex[*c >> 4], hex[*c & 15] };

                r = plain ? kh_buf_append(out, c, 1) : kh_buf_append(out, esc, sizeof(esc));
        }
        if (r >= 0)
                r = kh_buf_append_str(out, "?mode=ro&immutable=1");
        return r;
}

/* immutable=1 makes SQLite ignore a -wal or hot journal beside the file: writes a running (or
 * crashed) Key Connector committed there but not yet into the file would be silently
 * missed. A cleanly closed database leaves neither, so a non-empty one is refused. */
static int check_no_pending_writes(const char *path, char *detail, size_t detail_len) {
        static const char *const suffixes[] = { "-wal", "-journal" };

        for (size_t i = 0; i < KH_ELEMENTSOF(suffixes); i++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf side;
                struct stat st;
                int r;

                kh_buf_init(&side, PATH_MAX, false);
                r = kh_buf_append_str(&side, path);
                if (r >= 0)
                        r = kh_buf_append_str(&side, suffixes[i]);
                if (r == -E2BIG)
                        continue; /* no such file can exist */
                if (r < 0)
                        return r;
                if (stat((const char *) side.data, &st) == 0 && st.st_size > 0) {
                        kh_kc_detail(detail, detail_len,
                                     "%s is not empty: the database may have writes not yet "
                                     "in the file; stop Key Connector (or checkpoint the "
                                     "database with sqlite3) and try again",
                                     (const char *) side.data);
                        return -KH_E_KC_SOURCE_OPEN;
                }
        }
        return 0;
}

/* A failed sqlite3 call: -ENOMEM, or the source cannot be read (not a database, damaged,
 * I/O error) with SQLite's message. */
static int sqlite_error(sqlite3 *db, int rc, char *detail, size_t detail_len) {
        if (rc == SQLITE_NOMEM)
                return -ENOMEM;
        kh_kc_detail(detail, detail_len, "SQLite: %s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        return -KH_E_KC_SOURCE_OPEN;
}

/* Checks that table has the columns (any case, as SQLite compares them). */
static int check_table(sqlite3 *db, const char *table, const char *const *columns, size_t n,
                       char *detail, size_t detail_len) {
        KH_CLEANUP(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        bool found[4] = { false };
        size_t rows = 0;
        int rc;

        assert(n <= KH_ELEMENTSOF(found));
        rc = sqlite3_prepare_v2(db, "SELECT name FROM pragma_table_info(?1)", -1, &st, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
        if (rc != SQLITE_OK)
                return sqlite_error(db, rc, detail, detail_len);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *name = (const char *) sqlite3_column_text(st, 0);

                rows++;
                for (size_t i = 0; name && i < n; i++)
                        found[i] |= sqlite3_stricmp(name, columns[i]) == 0;
        }
        if (rc != SQLITE_DONE)
                return sqlite_error(db, rc, detail, detail_len);
        if (rows == 0) {
                kh_kc_detail(detail, detail_len, "no table %s", table);
                return -KH_E_KC_LAYOUT;
        }
        for (size_t i = 0; i < n; i++)
                if (!found[i]) {
                        kh_kc_detail(detail, detail_len, "table %s has no column %s", table,
                                     columns[i]);
                        return -KH_E_KC_LAYOUT;
                }
        return 0;
}

static int read_data_keys(sqlite3 *db, struct kh_kc_data *d, char *detail, size_t detail_len) {
        KH_CLEANUP(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int rc, r;

        rc = sqlite3_prepare_v2(db,
                                "SELECT \"SymmetricKey\" FROM \"ApplicationDatas\" ORDER BY \"Id\"",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_error(db, rc, detail, detail_len);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                const char *text;

                if (sqlite3_column_type(st, 0) == SQLITE_NULL)
                        continue;
                text = (const char *) sqlite3_column_text(st, 0);
                if (!text)
                        return -ENOMEM;
                if (sqlite3_column_bytes(st, 0) == 0)
                        continue;
                r = kh_kc_add_wrapped(d, text, (size_t) sqlite3_column_bytes(st, 0), detail,
                                      detail_len);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return sqlite_error(db, rc, detail, detail_len);
        return 0;
}

static int read_records(sqlite3 *db, struct kh_kc_data *d, char *detail, size_t detail_len) {
        KH_CLEANUP(sqlite3_finalizep) sqlite3_stmt *st = NULL;
        int rc, r;

        rc = sqlite3_prepare_v2(db, "SELECT \"Id\", \"Key\" FROM \"UserKeys\" ORDER BY \"Id\"",
                                -1, &st, NULL);
        if (rc != SQLITE_OK)
                return sqlite_error(db, rc, detail, detail_len);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                int id_type = sqlite3_column_type(st, 0), key_type = sqlite3_column_type(st, 1);
                const char *id = NULL, *key = NULL;

                /* EF stores a Guid as TEXT; NULL or a BLOB is no id (a BLOB may hold NULs) */
                if (id_type != SQLITE_NULL && id_type != SQLITE_BLOB) {
                        id = (const char *) sqlite3_column_text(st, 0);
                        if (!id)
                                return -ENOMEM;
                }
                if (key_type != SQLITE_NULL) {
                        key = (const char *) sqlite3_column_text(st, 1);
                        if (!key)
                                return -ENOMEM;
                }
                /* the text pointers stay valid until the next step: fetch lengths after them */
                r = kh_kc_add_record(d, id, id ? (size_t) sqlite3_column_bytes(st, 0) : 0,
                                     key ? KH_KC_KEY_TEXT : KH_KC_KEY_NONE, key,
                                     key ? (size_t) sqlite3_column_bytes(st, 1) : 0, detail,
                                     detail_len);
                if (r < 0)
                        return r;
        }
        if (rc != SQLITE_DONE)
                return sqlite_error(db, rc, detail, detail_len);
        return 0;
}

int kh_kc_read_sqlite(const char *path, struct kh_kc_data **ret, char *detail,
                      size_t detail_len) {
        static const char *const user_keys[] = { "Id", "Key" };
        static const char *const app_datas[] = { "Id", "SymmetricKey" };
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;
        KH_CLEANUP(sqlite3_closep) sqlite3 *db = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf uri;
        KH_CLEANUP(kh_closep) int fd = -1;
        int r, rc;

        kh_buf_init(&uri, 3 * (size_t) PATH_MAX + 64, false);

        /* SQLite would report a missing file or a directory only as "unable to open" */
        fd = kh_file_open_regular(AT_FDCWD, path, 0, NULL);
        if (fd == -ENOMEM)
                return fd;
        if (fd < 0) {
                kh_kc_detail(detail, detail_len, "%s: %s", path,
                             fd == -EINVAL ? "not a regular file" : kh_strerror(fd));
                return -KH_E_KC_SOURCE_OPEN;
        }
        r = check_no_pending_writes(path, detail, detail_len);
        if (r < 0)
                return r;
        r = make_uri(path, &uri);
        if (r == -E2BIG) {
                kh_kc_detail(detail, detail_len, "%s", "the path is too long");
                return -KH_E_KC_SOURCE_OPEN;
        }
        if (r < 0)
                return r;

        rc = sqlite3_open_v2((const char *) uri.data, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI,
                             NULL);
        if (rc != SQLITE_OK)
                return sqlite_error(db, rc, detail, detail_len);

        r = check_table(db, "UserKeys", user_keys, KH_ELEMENTSOF(user_keys), detail, detail_len);
        if (r < 0)
                return r;
        r = check_table(db, "ApplicationDatas", app_datas, KH_ELEMENTSOF(app_datas), detail,
                        detail_len);
        if (r < 0)
                return r;

        r = kh_kc_data_new("sqlite", &d);
        if (r < 0)
                return r;
        r = read_data_keys(db, d, detail, detail_len);
        if (r < 0)
                return r;
        if (d->n_wrapped == 0) {
                kh_kc_detail(detail, detail_len, "%s",
                             "ApplicationDatas has no row with a SymmetricKey");
                return -KH_E_KC_NO_DATA_KEY;
        }
        r = read_records(db, d, detail, detail_len);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(d);
        return 0;
}
