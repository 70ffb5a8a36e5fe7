#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "http/decode.h"

/* sdk-internal key_connector_key.rs vector */
#define VEC_B64 "H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks="
static const uint8_t vec[32] = {
        0x1f, 0x4f, 0x68, 0xe2, 0x96, 0x47, 0xb1, 0x5a, 0xc2, 0x50, 0xac, 0xd1, 0x11, 0x81, 0x84, 0x51,
        0x8a, 0xa7, 0x45, 0xa7, 0xfe, 0x95, 0x02, 0x1b, 0x27, 0xc5, 0x40, 0x2a, 0x16, 0xc3, 0x56, 0x4b,
};

static int parse(const char *body, struct kh_secret **key) {
        return kh_req_user_key_parse(body, strlen(body), key);
}

static void test_user_key_parse_accepts_both_casings(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *a = NULL, *b = NULL;
        (void) state;

        assert_int_equal(parse("{\"key\":\"" VEC_B64 "\"}", &a), 0);
        assert_memory_equal(kh_secret_bytes(a), vec, 32);
        assert_int_equal(parse("{\"Key\":\"" VEC_B64 "\",\"other\":1}", &b), 0);
        assert_memory_equal(kh_secret_bytes(b), vec, 32);
}

static void test_user_key_parse_rejects_bad_bodies(void **state) {
        struct kh_secret *k = NULL;
        (void) state;

        assert_int_equal(parse("", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("not json", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("[\"" VEC_B64 "\"]", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("{\"key\":null}", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("{\"key\":42}", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("{}", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("{\"key\":\"" VEC_B64 "\",\"Key\":\"" VEC_B64 "\"}", &k), -KH_E_INVALID_BODY);
        assert_int_equal(parse("{\"key\":\"" VEC_B64 "\",\"key\":\"" VEC_B64 "\"}", &k), -KH_E_INVALID_BODY);
        assert_null(k);
}

static void test_user_key_parse_rejects_bad_keys(void **state) {
        struct kh_secret *k = NULL;
        (void) state;

        /* 23 bytes: what Bitwarden's own tests store; keyhold wants exactly 32 */
        assert_int_equal(parse("{\"key\":\"dGVzdC1rZXktY29ubmVjdG9yLWtleQo=\"}", &k), -KH_E_INVALID_KEY);
        assert_int_equal(parse("{\"key\":\"H09o4pZHsVrCUKzREYGEUYqnRaf-lQIbJ8VAKhbDVks=\"}", &k), -KH_E_INVALID_KEY);
        assert_int_equal(parse("{\"key\":\"H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks\"}", &k), -KH_E_INVALID_KEY);
        assert_int_equal(parse("{\"key\":\" H09o4pZHsVrCUKzREYGEUYqnRaf+lQIbJ8VAKhbDVks=\"}", &k), -KH_E_INVALID_KEY);
        assert_null(k);
}

static void test_user_key_parse_rejects_oversize(void **state) {
        static char big[5000];
        struct kh_secret *k = NULL;
        (void) state;

        memset(big, ' ', sizeof(big) - 1);
        assert_int_equal(kh_req_user_key_parse(big, sizeof(big) - 1, &k), -KH_E_BODY_TOO_LARGE);
}

static void test_content_type(void **state) {
        (void) state;

        assert_true(kh_req_content_type_is_json("application/json", 16));
        assert_true(kh_req_content_type_is_json("application/json; charset=utf-8", 31));
        assert_true(kh_req_content_type_is_json("Application/JSON", 16));
        assert_false(kh_req_content_type_is_json("application/jsonx", 17));
        assert_false(kh_req_content_type_is_json("text/plain", 10));
        assert_false(kh_req_content_type_is_json("application/json-patch+json", 27));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_user_key_parse_accepts_both_casings),
                cmocka_unit_test(test_user_key_parse_rejects_bad_bodies),
                cmocka_unit_test(test_user_key_parse_rejects_bad_keys),
                cmocka_unit_test(test_user_key_parse_rejects_oversize),
                cmocka_unit_test(test_content_type),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
