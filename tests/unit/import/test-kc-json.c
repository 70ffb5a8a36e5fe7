/* import/kc-source.h: the source spec and the JSON reader (kh_kc_parse_json, and
 * kh_kc_read("json:PATH") on files). Expected bytes come from the spec's example vector
 * (section 3: the stored Key ends in the nonce a0 .. ab) and from Python's base64. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/errors.h"
#include "import/kc-source.h"

/* spec section 3: data key 00..1f, nonce a0..ab, plaintext 40..5f */
#define KEY1 "plk+bgGORPgqLM2YSzeOkSD9C0PG4hQ7xFd83SP2K14zwby0+3QQrdPoXhVroI5UoKGio6Slpqeoqaqr"
#define KEY2 "QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8=" /* bytes 40 .. 5f */
#define WRAPPED "AAECAwQFBgcICQoLDA0ODw=="                  /* bytes 00 .. 0f */
#define GUID1 "6F9619FF-8B86-D011-B42D-00CF4FC964FF"
#define GUID2 "0b7e6a56-2f1b-4d43-9c3e-4a1f0a2b3c4d"

static char detail[256];

static int parse(const char *json, struct kh_kc_data **ret) {
        return kh_kc_parse_json((const uint8_t *) json, strlen(json), ret, detail,
                                sizeof(detail));
}

static void assert_key1(const struct kh_kc_record *r) {
        static const uint8_t nonce[12] = { 0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5,
                                           0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab };
        static const uint8_t head[4] = { 0xa6, 0x59, 0x3e, 0x6e };

        assert_int_equal(r->error, 0);
        assert_non_null(r->blob);
        assert_int_equal(r->blob_len, 60);
        assert_memory_equal(r->blob, head, sizeof(head));
        assert_memory_equal(r->blob + 48, nonce, sizeof(nonce));
}

static void assert_key2(const struct kh_kc_record *r) {
        assert_int_equal(r->error, 0);
        assert_int_equal(r->blob_len, 32);
        for (size_t i = 0; i < 32; i++)
                assert_int_equal(r->blob[i], 0x40 + i);
}

static void assert_wrapped(const struct kh_kc_data *d) {
        assert_int_equal(d->n_wrapped, 1);
        assert_int_equal(d->wrapped[0].len, 16);
        for (size_t i = 0; i < 16; i++)
                assert_int_equal(d->wrapped[0].p[i], i);
}

static void test_json_camel_case_as_key_connector_writes_it(void **state) {
        (void) state;
        const char *json =
                "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": ["
                "{\"id\": \"" GUID1 "\", \"key\": \"" KEY1 "\", \"creationDate\": "
                "\"2021-08-20T10:00:00.000Z\", \"revisionDate\": null, \"lastAccessDate\": "
                "\"2022-01-01T00:00:00Z\"},"
                "{\"id\": \"" GUID2 "\", \"key\": \"" KEY2 "\"}]}";
        struct kh_kc_data *d = NULL;

        assert_int_equal(parse(json, &d), 0);
        assert_string_equal(detail, "");
        assert_string_equal(d->kind, "json");
        assert_wrapped(d);
        assert_int_equal(d->n_records, 2);
        assert_string_equal(d->records[0].id, GUID1); /* as stored */
        assert_string_equal(d->records[0].guid, "6f9619ff-8b86-d011-b42d-00cf4fc964ff");
        assert_key1(&d->records[0]);
        assert_string_equal(d->records[1].id, GUID2); /* file order, not sorted */
        assert_string_equal(d->records[1].guid, GUID2);
        assert_key2(&d->records[1]);
        assert_null(kh_kc_data_free(d));
}

static void test_json_pascal_case_and_mixed_case_names(void **state) {
        (void) state;
        const char *json = "{\"SymmetricKey\": \"" WRAPPED "\", \"UserKey\": ["
                           "{\"Id\": \"" GUID1 "\", \"Key\": \"" KEY1 "\"},"
                           "{\"ID\": \"" GUID2 "\", \"KEY\": \"" KEY2 "\"}]}";
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;

        assert_int_equal(parse(json, &d), 0);
        assert_wrapped(d);
        assert_int_equal(d->n_records, 2);
        assert_string_equal(d->records[0].guid, "6f9619ff-8b86-d011-b42d-00cf4fc964ff");
        assert_key1(&d->records[0]);
        assert_key2(&d->records[1]);
}

static void test_json_empty_user_key_array_is_zero_records(void **state) {
        (void) state;
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;

        assert_int_equal(parse("{\"userKey\": [], \"symmetricKey\": \"" WRAPPED "\"}", &d), 0);
        assert_int_equal(d->n_records, 0);
        assert_wrapped(d);
}

static void test_json_truncated_and_garbage_are_json_errors(void **state) {
        (void) state;
        const char *json = "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": [{\"id\": \"";
        struct kh_kc_data *d = NULL;

        assert_int_equal(parse(json, &d), -KH_E_KC_JSON);
        assert_null(d);
        assert_non_null(strstr(detail, "JSON error at line 1 column "));
        assert_int_equal(parse("garbage", &d), -KH_E_KC_JSON);
        assert_int_equal(kh_kc_parse_json(NULL, 0, &d, detail, sizeof(detail)), -KH_E_KC_JSON);
        /* exact duplicate names: which one Key Connector meant is unknowable */
        assert_int_equal(parse("{\"userKey\": [], \"userKey\": [], \"symmetricKey\": \"" WRAPPED
                               "\"}",
                               &d),
                         -KH_E_KC_JSON);
        assert_null(d);
}

static void test_json_layout_errors(void **state) {
        (void) state;
        static const struct {
                const char *json;
                const char *detail;
        } cases[] = {
                { "[]", "the top level is not a JSON object" },
                { "{\"symmetricKey\": \"" WRAPPED "\"}", "no \"userKey\" array" },
                { "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": {}}",
                  "\"userKey\" is not an array" },
                { "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": [{}, 5]}",
                  "userKey entry 1 is not an object" },
                { "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": [], \"UserKey\": []}",
                  "the top-level object has both \"userKey\" and \"UserKey\"" },
                { "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": [{\"id\": \"" GUID1
                  "\", \"key\": \"" KEY1 "\", \"Key\": \"" KEY2 "\"}]}",
                  "userKey entry 0 has both \"key\" and \"Key\"" },
                { "{\"symmetricKey\": 5, \"userKey\": []}", "\"symmetricKey\" is not a string" },
                { "{\"symmetricKey\": \"AAEC*\", \"userKey\": []}",
                  "the wrapped data key is not standard base64 of at most 65536 characters" },
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kh_kc_data *d = NULL;

                assert_int_equal(parse(cases[i].json, &d), -KH_E_KC_LAYOUT);
                assert_null(d);
                assert_string_equal(detail, cases[i].detail);
        }
}

static void test_json_no_data_key(void **state) {
        (void) state;
        static const char *const cases[] = {
                "{\"userKey\": []}",
                "{\"userKey\": [], \"symmetricKey\": null}",
                "{\"userKey\": [], \"symmetricKey\": \"\"}",
        };

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kh_kc_data *d = NULL;

                assert_int_equal(parse(cases[i], &d), -KH_E_KC_NO_DATA_KEY);
                assert_null(d);
                assert_string_equal(detail, i == 0 ? "no \"symmetricKey\""
                                                   : "\"symmetricKey\" is null or empty");
        }
}

static void test_json_null_absent_and_empty_key_are_no_key_records(void **state) {
        (void) state;
        const char *json = "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": ["
                           "{\"id\": \"" GUID1 "\", \"key\": null},"
                           "{\"id\": \"" GUID2 "\"},"
                           "{\"id\": \"" GUID1 "\", \"key\": \"\"}]}";
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;

        assert_int_equal(parse(json, &d), 0);
        assert_int_equal(d->n_records, 3);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(d->records[i].error, -KH_E_KC_NO_KEY);
                assert_null(d->records[i].blob);
                assert_int_equal(d->records[i].blob_len, 0);
                assert_int_equal(strlen(d->records[i].guid), 36); /* the id is fine */
        }
}

static void test_json_bad_ids_are_record_errors(void **state) {
        (void) state;
        char *json, *long_id = malloc(1001);
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;

        assert_non_null(long_id);
        memset(long_id, 'a', 1000);
        long_id[1000] = 0;
        assert_true(asprintf(&json,
                             "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": ["
                             "{\"id\": \"not-a-guid\", \"key\": \"" KEY1 "\"},"
                             "{\"id\": \"{" GUID1 "}\", \"key\": \"" KEY1 "\"},"
                             "{\"id\": \"6F9619FF8B86D011B42D00CF4FC964FF\", \"key\": \"" KEY1
                             "\"},"
                             "{\"id\": 5, \"key\": \"" KEY1 "\"},"
                             "{\"key\": \"" KEY1 "\"},"
                             "{\"id\": \"%s\", \"key\": null},"
                             "{\"id\": \" " GUID1 "\", \"key\": \"" KEY1 "\"}]}",
                             long_id) > 0);
        assert_int_equal(parse(json, &d), 0);
        free(json);
        assert_int_equal(d->n_records, 7);
        for (size_t i = 0; i < d->n_records; i++) {
                assert_int_equal(d->records[i].error, -KH_E_KC_BAD_ID); /* before NO_KEY */
                assert_string_equal(d->records[i].guid, "");
                assert_null(d->records[i].blob);
        }
        assert_string_equal(d->records[0].id, "not-a-guid");
        assert_string_equal(d->records[1].id, "{" GUID1 "}");
        assert_string_equal(d->records[3].id, ""); /* not a string */
        assert_string_equal(d->records[4].id, ""); /* absent */
        assert_int_equal(strlen(d->records[5].id), 255);
        assert_memory_equal(d->records[5].id, long_id, 255);
        free(long_id);
}

static void test_json_bad_base64_keys_are_record_errors(void **state) {
        (void) state;
        size_t big = 64 * 1024 + 4; /* valid base64, over the 64 KiB cap */
        char *json, *key = malloc(big + 1);
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;

        assert_non_null(key);
        memset(key, 'A', big);
        key[big] = 0;
        assert_true(asprintf(&json,
                             "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": ["
                             "{\"id\": \"" GUID1 "\", \"key\": \"QUJ\"},"      /* no padding */
                             "{\"id\": \"" GUID1 "\", \"key\": \"QUJD\\n\"},"  /* whitespace */
                             "{\"id\": \"" GUID1 "\", \"key\": \"QUJ-\"},"     /* base64url */
                             "{\"id\": \"" GUID1 "\", \"key\": \"QR==\"},"     /* trailing bits */
                             "{\"id\": \"" GUID1 "\", \"key\": 12},"           /* not text */
                             "{\"id\": \"" GUID1 "\", \"key\": \"%s\"},"
                             "{\"id\": \"" GUID1 "\", \"key\": \"QUJD\"}]}",
                             key) > 0);
        free(key);
        assert_int_equal(parse(json, &d), 0);
        free(json);
        assert_int_equal(d->n_records, 7);
        for (size_t i = 0; i < 6; i++) {
                assert_int_equal(d->records[i].error, -KH_E_KC_BAD_BASE64);
                assert_null(d->records[i].blob);
        }
        /* a short blob is kept: the decrypt step reports it */
        assert_int_equal(d->records[6].error, 0);
        assert_int_equal(d->records[6].blob_len, 3);
        assert_memory_equal(d->records[6].blob, "ABC", 3);
}

static void test_json_duplicate_ids_are_both_kept(void **state) {
        (void) state;
        const char *json = "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": ["
                           "{\"id\": \"" GUID1 "\", \"key\": \"" KEY1 "\"},"
                           "{\"id\": \"6f9619ff-8b86-d011-b42d-00cf4fc964ff\", \"key\": \"" KEY2
                           "\"}]}";
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;

        assert_int_equal(parse(json, &d), 0);
        assert_int_equal(d->n_records, 2);
        assert_string_equal(d->records[0].guid, d->records[1].guid);
        assert_key1(&d->records[0]);
        assert_key2(&d->records[1]);
}

static void test_read_json_file_and_open_errors(void **state) {
        (void) state;
        const char *json = "{\"symmetricKey\": \"" WRAPPED "\", \"userKey\": [{\"id\": \"" GUID1
                           "\", \"key\": \"" KEY1 "\"}]}";
        char dir[] = "/tmp/kh-kc-json-XXXXXX", *path, *spec;
        struct kh_kc_data *d = NULL;
        FILE *f;

        assert_non_null(mkdtemp(dir));
        assert_true(asprintf(&path, "%s/data.json", dir) > 0);
        assert_true(asprintf(&spec, "json:%s", path) > 0);

        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_SOURCE_OPEN);
        assert_null(d);
        assert_non_null(strstr(detail, "No such file or directory"));

        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fputs(json, f) >= 0, 1);
        assert_int_equal(fclose(f), 0);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), 0);
        assert_string_equal(d->kind, "json");
        assert_int_equal(d->n_records, 1);
        assert_key1(&d->records[0]);
        d = kh_kc_data_free(d);

        /* a directory is not a source */
        free(spec);
        assert_true(asprintf(&spec, "json:%s", dir) > 0);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_SOURCE_OPEN);
        assert_string_equal(strstr(detail, ": not a regular file"), ": not a regular file");

        /* an empty file is no JSON */
        f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fclose(f), 0);
        free(spec);
        assert_true(asprintf(&spec, "json:%s", path) > 0);
        assert_int_equal(kh_kc_read(spec, &d, detail, sizeof(detail)), -KH_E_KC_JSON);
        assert_null(d);

        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
        free(path);
        free(spec);
}

static void test_spec_errors(void **state) {
        (void) state;
        static const char *const bad[] = {
                "", "json:", "sqlite:", "postgresql:", "JSON:/tmp/x", "/tmp/x.json",
                "mysql:/tmp/x", "postgres:host=x", "json",
        };
        struct kh_kc_data *d = NULL;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(kh_kc_read(bad[i], &d, detail, sizeof(detail)),
                                 -KH_E_KC_SOURCE_SPEC);
                assert_null(d);
                assert_true(detail[0] != 0);
        }
        assert_int_equal(kh_kc_read(NULL, &d, NULL, 0), -KH_E_KC_SOURCE_SPEC);
}

/* libpq's own parse errors quote the conninfo around the fault: never echoed. */
static void test_postgresql_errors_never_show_the_password(void **state) {
        (void) state;
        struct kh_kc_data *d = NULL;

        assert_int_equal(kh_kc_read("postgresql:host=x password='s3cr3tpw", &d, detail,
                                    sizeof(detail)),
                         -KH_E_KC_SOURCE_SPEC);
        assert_null(strstr(detail, "s3cr3tpw"));
        assert_int_equal(kh_kc_read("postgresql:host=x s3cr3tpw", &d, detail, sizeof(detail)),
                         -KH_E_KC_SOURCE_SPEC);
        assert_null(strstr(detail, "s3cr3tpw"));
        /* nothing listens on a socket in a directory that does not exist */
        assert_int_equal(kh_kc_read("postgresql:host=/nonexistent-kh port=1 user=u dbname=kc "
                                    "password=s3cr3tpw",
                                    &d, detail, sizeof(detail)),
                         -KH_E_KC_SOURCE_OPEN);
        assert_null(d);
        assert_int_equal(strncmp(detail, "PostgreSQL: ", 12), 0);
        assert_non_null(strstr(detail, "/nonexistent-kh"));
        assert_null(strstr(detail, "s3cr3tpw"));
        assert_null(strchr(detail, '\n'));
        assert_int_equal(kh_kc_read("postgresql:postgresql://u:s3cr3tpw@/kc?host=/nonexistent-kh",
                                    &d, detail, sizeof(detail)),
                         -KH_E_KC_SOURCE_OPEN);
        assert_null(strstr(detail, "s3cr3tpw"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_camel_case_as_key_connector_writes_it),
                cmocka_unit_test(test_json_pascal_case_and_mixed_case_names),
                cmocka_unit_test(test_json_empty_user_key_array_is_zero_records),
                cmocka_unit_test(test_json_truncated_and_garbage_are_json_errors),
                cmocka_unit_test(test_json_layout_errors),
                cmocka_unit_test(test_json_no_data_key),
                cmocka_unit_test(test_json_null_absent_and_empty_key_are_no_key_records),
                cmocka_unit_test(test_json_bad_ids_are_record_errors),
                cmocka_unit_test(test_json_bad_base64_keys_are_record_errors),
                cmocka_unit_test(test_json_duplicate_ids_are_both_kept),
                cmocka_unit_test(test_read_json_file_and_open_errors),
                cmocka_unit_test(test_spec_errors),
                cmocka_unit_test(test_postgresql_errors_never_show_the_password),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
