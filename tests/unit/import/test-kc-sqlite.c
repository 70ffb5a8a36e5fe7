/* import/kc-source.h: the SQLite reader on files made here with Key Connector's EF Core
 * schema (InitialCreate for SQLite, with __EFMigrationsHistory), and the promise that the
 * source is never written: same bytes, same mtime, and no -wal, -shm or journal beside it,
 * even for a database in WAL mode. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "common/errors.h"
#include "import/kc-source.h"

#define KEY1 "plk+bgGORPgqLM2YSzeOkSD9C0PG4hQ7xFd83SP2K14zwby0+3QQrdPoXhVroI5UoKGio6Slpqeoqaqr"
#define KEY2 "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=" /* bytes 40 .. 5f */
#define WRAPPED_A "AAECAwQFBgcICQoLDA0ODw=="                /* bytes 00 .. 0f */
#define WRAPPED_B "EBESExQVFhcYGRobHB0eHw=="                /* bytes 10 .. 1f */

/* Key Connector's migration 20210820..._InitialCreate for SQLite, as EF Core emits it. */
static const char EF_SCHEMA[] =
        "CREATE TABLE \"__EFMigrationsHistory\" (\"MigrationId\" TEXT NOT NULL CONSTRAINT "
        "\"PK___EFMigrationsHistory\" PRIMARY KEY, \"ProductVersion\" TEXT NOT NULL);"
        "CREATE TABLE \"ApplicationDatas\" (\"Id\" INTEGER NOT NULL CONSTRAINT "
        "\"PK_ApplicationDatas\" PRIMARY KEY AUTOINCREMENT, \"SymmetricKey\" TEXT NULL);"
        "CREATE TABLE \"UserKeys\" (\"Id\" TEXT NOT NULL CONSTRAINT \"PK_UserKeys\" PRIMARY KEY, "
        "\"Key\" TEXT NULL, \"CreationDate\" TEXT NOT NULL, \"RevisionDate\" TEXT NULL, "
        "\"LastAccessDate\" TEXT NULL);"
        "INSERT INTO \"__EFMigrationsHistory\" VALUES ('20210820180513_InitialCreate', '5.0.9');";

/* Rows out of Id order, so that ORDER BY shows; the ids upper-case as EF writes them. */
static const char ROWS[] =
        "INSERT INTO \"ApplicationDatas\" (\"Id\", \"SymmetricKey\") VALUES "
        "(3, NULL), (2, '" WRAPPED_B "'), (1, '" WRAPPED_A "'), (4, '');"
        "INSERT INTO \"UserKeys\" VALUES "
        "('C0000000-0000-4000-8000-000000000003', NULL, '2021-08-20 10:00:00', NULL, NULL),"
        "('A0000000-0000-4000-8000-000000000001', '" KEY1 "', '2021-08-20 10:00:00', NULL, "
        "'2022-01-01 00:00:00'),"
        "('b0000000-0000-4000-8000-000000000002', '" KEY2 "', '2021-08-20 10:00:00', NULL, NULL),"
        "('D0000000-0000-4000-8000-000000000004', '', '2021-08-20 10:00:00', NULL, NULL),"
        "('E0000000-0000-4000-8000-000000000005', 'QUJ', '2021-08-20 10:00:00', NULL, NULL),"
        "('not a guid', '" KEY1 "', '2021-08-20 10:00:00', NULL, NULL);";

static char dir[64];
static char path[128];
static char spec[160];
static char detail[512];

static int setup(void **state) {
        (void) state;
        (void) snprintf(dir, sizeof(dir), "/tmp/kh-kc-sqlite-XXXXXX");
        if (!mkdtemp(dir))
                return -1;
        (void) snprintf(path, sizeof(path), "%s/kc.db", dir);
        (void) snprintf(spec, sizeof(spec), "sqlite:%s", path);
        return 0;
}

static int teardown(void **state) {
        DIR *d = opendir(dir);
        struct dirent *e;
        char p[512];

        (void) state;
        while (d && (e = readdir(d))) {
                if (e->d_name[0] == '.' && (!e->d_name[1] || e->d_name[1] == '.'))
                        continue;
                (void) snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
                (void) unlink(p);
        }
        if (d)
                closedir(d);
        return rmdir(dir);
}

static void exec(sqlite3 *db, const char *sql) {
        char *err = NULL;

        if (sqlite3_exec(db, sql, NULL, NULL, &err) != SQLITE_OK)
                fail_msg("%s: %s", sql, err);
}

/* Makes path with the schema (or schema_sql instead) and the rows (or rows_sql). */
static void make_db(const char *file, const char *schema_sql, const char *rows_sql, bool wal) {
        sqlite3 *db = NULL;

        assert_int_equal(sqlite3_open(file, &db), SQLITE_OK);
        if (wal)
                exec(db, "PRAGMA journal_mode=WAL");
        exec(db, schema_sql ? schema_sql : EF_SCHEMA);
        exec(db, rows_sql ? rows_sql : ROWS);
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
}

static int not_dots(const struct dirent *e) {
        return strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
}

/* The sorted names in dir, joined with '/'. */
static void listing(char *out, size_t len) {
        struct dirent **names;
        int n = scandir(dir, &names, not_dots, alphasort);

        assert_true(n >= 0);
        out[0] = 0;
        for (int i = 0; i < n; i++) {
                strncat(out, names[i]->d_name, len - strlen(out) - 2);
                strcat(out, "/");
                free(names[i]);
        }
        free(names);
}

static uint8_t *slurp(const char *file, size_t *ret_len) {
        FILE *f = fopen(file, "rb");
        uint8_t *p = malloc(1 << 20);
        size_t n;

        assert_non_null(f);
        assert_non_null(p);
        n = fread(p, 1, 1 << 20, f);
        assert_true(n < (1 << 20));
        fclose(f);
        *ret_len = n;
        return p;
}

static void assert_rows(const struct kh_kc_data *d) {
        assert_string_equal(d->kind, "sqlite");
        /* ORDER BY Id; the NULL (3) and empty (4) data keys skipped */
        assert_int_equal(d->n_wrapped, 2);
        assert_int_equal(d->wrapped[0].len, 16);
        assert_int_equal(d->wrapped[0].p[0], 0x00);
        assert_int_equal(d->wrapped[0].p[15], 0x0f);
        assert_int_equal(d->wrapped[1].p[0], 0x10);
        assert_int_equal(d->wrapped[1].p[15], 0x1f);

        /* ORDER BY Id in binary order: upper case before lower case */
        assert_int_equal(d->n_records, 6);
        assert_string_equal(d->records[0].id, "A0000000-0000-4000-8000-000000000001");
        assert_string_equal(d->records[0].guid, "a0000000-0000-4000-8000-000000000001");
        assert_int_equal(d->records[0].error, 0);
        assert_int_equal(d->records[0].blob_len, 60);
        assert_int_equal(d->records[0].blob[0], 0xa6);
        assert_int_equal(d->records[0].blob[59], 0xab);

        assert_string_equal(d->records[1].id, "C0000000-0000-4000-8000-000000000003");
        assert_int_equal(d->records[1].error, -KH_E_KC_NO_KEY);
        assert_null(d->records[1].blob);

        assert_string_equal(d->records[2].id, "D0000000-0000-4000-8000-000000000004");
        assert_int_equal(d->records[2].error, -KH_E_KC_NO_KEY);

        assert_string_equal(d->records[3].id, "E0000000-0000-4000-8000-000000000005");
        assert_int_equal(d->records[3].error, -KH_E_KC_BAD_BASE64);
        assert_null(d->records[3].blob);

        assert_string_equal(d->records[4].id, "b0000000-0000-4000-8000-000000000002");
        assert_string_equal(d->records[4].guid, "b0000000-0000-4000-8000-000000000002");
        assert_int_equal(d->records[4].error, 0);
        assert_int_equal(d->records[4].blob_len, 32);
        assert_int_equal(d->records[4].blob[0], 0x40);
        assert_int_equal(d->records[4].blob[31], 0x5f);

        assert_string_equal(d->records[5].id, "not a guid");
        assert_string_equal(d->records[5].guid, "");
        assert_int_equal(d->records[5].error, -KH_E_KC_BAD_ID);
        assert_null(d->records[5].blob);
}

static void read_and_check_untouched(bool wal) {
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;
        char before[512], after[512];
        struct stat st1, st2;
        uint8_t *bytes1, *bytes2;
        size_t n1, n2;

        make_db(path, NULL, NULL, wal);
        listing(before, sizeof(before));
        assert_string_equal(before, "kc.db/"); /* SQLite removed its -wal on close */
        assert_int_equal(stat(path, &st1), 0);
        bytes1 = slurp(path, &n1);
        sleep(0); /* mtimes have nanoseconds; a write would show */

        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), 0);
        assert_string_equal(detail, "");
        assert_rows(d);

        listing(after, sizeof(after));
        assert_string_equal(after, before);
        assert_int_equal(stat(path, &st2), 0);
        assert_int_equal(st2.st_mtim.tv_sec, st1.st_mtim.tv_sec);
        assert_int_equal(st2.st_mtim.tv_nsec, st1.st_mtim.tv_nsec);
        assert_int_equal(st2.st_size, st1.st_size);
        bytes2 = slurp(path, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(bytes1, bytes2, n1);
        free(bytes1);
        free(bytes2);
}

static void test_sqlite_ef_database_reads_in_id_order_and_stays_untouched(void **state) {
        (void) state;
        read_and_check_untouched(false);
}

static void test_sqlite_wal_database_gets_no_wal_or_shm(void **state) {
        (void) state;
        read_and_check_untouched(true);
}

/* A writer still holds commits in the -wal that the immutable reader would not see. */
static void test_sqlite_refuses_a_non_empty_wal(void **state) {
        (void) state;
        struct kh_kc_data *d = NULL;
        sqlite3 *writer = NULL;

        make_db(path, NULL, NULL, true);
        assert_int_equal(sqlite3_open(path, &writer), SQLITE_OK);
        exec(writer, "PRAGMA wal_autocheckpoint=0");
        exec(writer, "INSERT INTO \"UserKeys\" VALUES ('F0000000-0000-4000-8000-000000000006', '"
                     KEY2 "', '2021-08-20 10:00:00', NULL, NULL)");
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_SOURCE_OPEN);
        assert_null(d);
        assert_non_null(strstr(detail, "kc.db-wal is not empty"));
        assert_int_equal(sqlite3_close(writer), SQLITE_OK); /* checkpoints, removes -wal */

        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), 0);
        assert_int_equal(d->n_records, 7);
        d = kh_kc_data_free(d);
}

static void test_sqlite_missing_column_and_table_are_layout_errors(void **state) {
        (void) state;
        static const struct {
                const char *schema;
                const char *detail;
        } cases[] = {
                { "CREATE TABLE \"UserKeys\" (\"Id\" TEXT, \"CreationDate\" TEXT);"
                  "CREATE TABLE \"ApplicationDatas\" (\"Id\" INTEGER, \"SymmetricKey\" TEXT);",
                  "table UserKeys has no column Key" },
                { "CREATE TABLE \"UserKeys\" (\"Id\" TEXT, \"Key\" TEXT);",
                  "no table ApplicationDatas" },
                { "CREATE TABLE \"ApplicationDatas\" (\"Id\" INTEGER, \"SymmetricKey\" TEXT);",
                  "no table UserKeys" },
                { "CREATE TABLE \"UserKeys\" (\"Id\" TEXT, \"Key\" TEXT);"
                  "CREATE TABLE \"ApplicationDatas\" (\"Id\" INTEGER, \"Key\" TEXT);",
                  "table ApplicationDatas has no column SymmetricKey" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kh_kc_data *d = NULL;

                (void) unlink(path);
                make_db(path, cases[i].schema, "SELECT 1", false);
                assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_LAYOUT);
                assert_null(d);
                assert_string_equal(detail, cases[i].detail);
        }
}

static void test_sqlite_data_key_errors(void **state) {
        (void) state;
        struct kh_kc_data *d = NULL;
        sqlite3 *db = NULL;

        make_db(path, NULL, "INSERT INTO \"ApplicationDatas\" VALUES (1, NULL), (2, '')", false);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_NO_DATA_KEY);
        assert_null(d);
        assert_string_equal(detail, "ApplicationDatas has no row with a SymmetricKey");

        (void) unlink(path);
        make_db(path, NULL, "INSERT INTO \"ApplicationDatas\" VALUES (1, 'AAE=AAE=')", false);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_LAYOUT);

        /* one row more than KH_KC_DATA_KEYS_MAX */
        (void) unlink(path);
        make_db(path, NULL, "SELECT 1", false);
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        exec(db, "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1001) "
                 "INSERT INTO \"ApplicationDatas\" (\"SymmetricKey\") SELECT '" WRAPPED_A
                 "' FROM n");
        assert_int_equal(sqlite3_close(db), SQLITE_OK);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_TOO_LARGE);
        assert_null(d);
        assert_string_equal(detail, "more than 1000 data-key rows");
}

static void test_sqlite_open_errors(void **state) {
        (void) state;
        struct kh_kc_data *d = NULL;
        char other[200];
        FILE *f;

        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_SOURCE_OPEN);
        assert_non_null(strstr(detail, "No such file or directory"));

        (void) snprintf(other, sizeof(other), "sqlite:%s", dir);
        assert_int_equal(kh_kc_read(other, &d, detail, sizeof(detail)), -KH_E_KC_SOURCE_OPEN);
        assert_non_null(strstr(detail, "not a regular file"));

        f = fopen(path, "w");
        assert_non_null(f);
        for (int i = 0; i < 100; i++)
                fputs("{\"symmetricKey\": \"this is JSON, not SQLite\"}\n", f);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_SOURCE_OPEN);
        assert_null(d);
        assert_string_equal(detail, "SQLite: file is not a database");
}

/* '?', '#' and '%' in a file name are part of it, not of the URI; a relative path works. */
static void test_sqlite_odd_file_names_and_relative_paths(void **state) {
        (void) state;
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;
        char odd[200], odd_spec[220], cwd[512];

        (void) snprintf(odd, sizeof(odd), "%s/k c?mode=rw#x%%41.db", dir);
        (void) snprintf(odd_spec, sizeof(odd_spec), "sqlite:%s", odd);
        make_db(odd, NULL, NULL, false);
        assert_int_equal(kh_kc_read(odd_spec, &d, detail, sizeof(detail)), 0);
        assert_rows(d);
        d = kh_kc_data_free(d);

        assert_non_null(getcwd(cwd, sizeof(cwd)));
        assert_int_equal(chdir(dir), 0);
        assert_int_equal(kh_kc_read("sqlite:k c?mode=rw#x%41.db", &d, detail, sizeof(detail)),
                         0);
        assert_int_equal(chdir(cwd), 0);
        assert_rows(d);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(
                        test_sqlite_ef_database_reads_in_id_order_and_stays_untouched, setup,
                        teardown),
                cmocka_unit_test_setup_teardown(test_sqlite_wal_database_gets_no_wal_or_shm,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_sqlite_refuses_a_non_empty_wal, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(
                        test_sqlite_missing_column_and_table_are_layout_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sqlite_data_key_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sqlite_open_errors, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sqlite_odd_file_names_and_relative_paths,
                                                setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
