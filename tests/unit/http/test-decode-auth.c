/* http/decode-auth.c: the bodies and the access-code query of the login-request routes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "http/decode-auth.h"

static int create(const char *body, struct kh_req_auth_create *c) {
        return kh_req_auth_create_parse(body, strlen(body), c);
}

static void test_create_fields_case_insensitive(void **state) {
        struct kh_req_auth_create c = { 0 };
        (void) state;

        assert_int_equal(create("{\"Email\":\"a@b.c\",\"publicKey\":\"AAAA\",\"DEVICEIDENTIFIER\":\"d1\","
                                "\"accessCode\":\"code\",\"type\":1,\"other\":[]}", &c), 0);
        assert_string_equal(c.email, "a@b.c");
        assert_string_equal(c.public_key, "AAAA");
        assert_string_equal(c.device_identifier, "d1");
        assert_string_equal(c.access_code, "code");
        assert_int_equal(c.type, 1);
        kh_req_auth_clear(&c.root);
        assert_null(c.root);
}

static void test_create_refuses_each_bad_field(void **state) {
        static const char *const bad[] = {
                "", "{", "[]", "null",
                "{\"email\":\"a@b.c\",\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\"}",
                "{\"email\":1,\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":0}",
                "{\"email\":\"a@b.c\",\"publicKey\":\"\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":0}",
                "{\"email\":\"a@b.c\",\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":\"0\"}",
                "{\"email\":\"a@b.c\",\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":-1}",
                "{\"email\":\"a@b.c\",\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":0.5}",
                "{\"email\":\"a@b.c\",\"EMAIL\":\"a@b.c\",\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":0}",
                "{\"email\":\"a\\u0000b\",\"publicKey\":\"AAAA\",\"deviceIdentifier\":\"d\",\"accessCode\":\"c\",\"type\":0}",
        };
        struct kh_req_auth_create c = { 0 };
        (void) state;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                assert_int_equal(create(bad[i], &c), -KH_E_INVALID_REQUEST_BODY);
                assert_null(c.root);
        }
}

static void test_body_limits(void **state) {
        static char big[5000];
        struct kh_req_auth_create c = { 0 };
        struct kh_req_auth_answers a = { 0 };
        (void) state;

        memset(big, ' ', sizeof(big));
        assert_int_equal(kh_req_auth_create_parse(big, sizeof(big), &c), -KH_E_BODY_TOO_LARGE);
        assert_int_equal(kh_req_auth_answer_parse(big, sizeof(big), &a), -KH_E_BODY_TOO_LARGE);
        /* the list routes take more than 4 KiB: whitespace then an empty list is decoded */
        memcpy(big + sizeof(big) - 2, "[]", 2);
        assert_int_equal(kh_req_auth_bulk_parse(big, sizeof(big), &a), -KH_E_INVALID_REQUEST_BODY);
        assert_int_equal(a.n, 0);
}

static void test_update_key_optional(void **state) {
        struct kh_req_auth_update u = { 0 };
        const char *deny = "{\"deviceIdentifier\":\"d\",\"requestApproved\":false,\"key\":null}";
        const char *approve = "{\"deviceIdentifier\":\"d\",\"requestApproved\":true,\"key\":\"4.AAAA\"}";
        const char *no_device = "{\"requestApproved\":true,\"key\":\"4.AAAA\"}";
        (void) state;

        assert_int_equal(kh_req_auth_update_parse(deny, strlen(deny), &u), 0);
        assert_null(u.key);
        assert_false(u.approved);
        kh_req_auth_clear(&u.root);
        assert_int_equal(kh_req_auth_update_parse(approve, strlen(approve), &u), 0);
        assert_string_equal(u.key, "4.AAAA");
        assert_true(u.approved);
        kh_req_auth_clear(&u.root);
        assert_int_equal(kh_req_auth_update_parse(no_device, strlen(no_device), &u),
                         -KH_E_INVALID_REQUEST_BODY);
}

static void test_answers(void **state) {
        struct kh_req_auth_answers a = { 0 };
        const char *one = "{\"requestApproved\":true}";
        const char *deny = "{\"ids\":[\"x\",\"y\"]}";
        const char *bulk = "[{\"id\":\"x\",\"approved\":true,\"key\":\"4.k\"},{\"ID\":\"y\",\"Approved\":false}]";
        const char *bad_bulk = "[{\"id\":\"x\",\"approved\":1}]";
        (void) state;

        assert_int_equal(kh_req_auth_answer_parse(one, strlen(one), &a), 0);
        assert_int_equal(a.n, 1);
        assert_true(a.items[0].approved);
        assert_null(a.items[0].key);
        kh_req_auth_clear(&a.root);
        assert_int_equal(kh_req_auth_deny_parse(deny, strlen(deny), &a), 0);
        assert_int_equal(a.n, 2);
        assert_string_equal(a.items[1].id, "y");
        assert_false(a.items[1].approved);
        kh_req_auth_clear(&a.root);
        assert_int_equal(kh_req_auth_bulk_parse(bulk, strlen(bulk), &a), 0);
        assert_int_equal(a.n, 2);
        assert_string_equal(a.items[0].key, "4.k");
        assert_false(a.items[1].approved);
        kh_req_auth_clear(&a.root);
        a.n = 7;
        assert_int_equal(kh_req_auth_bulk_parse(bad_bulk, strlen(bad_bulk), &a),
                         -KH_E_INVALID_REQUEST_BODY);
        assert_int_equal(a.n, 7);      /* untouched on failure */
}

static int code(const char *q, char out[26], size_t *n) {
        return kh_req_access_code_parse(q, q ? strlen(q) : 0, out, 25, n);
}

static void test_access_code_query(void **state) {
        char out[26];
        size_t n = 0;
        (void) state;

        assert_int_equal(code("code=abc", out, &n), 0);
        assert_int_equal(n, 3);
        assert_string_equal(out, "abc");
        assert_int_equal(code("code=a%2Bb%2fc+", out, &n), 0);
        assert_string_equal(out, "a+b/c+");
        assert_int_equal(code("code=aaaaaaaaaaaaaaaaaaaaaaaaa", out, &n), 0);
        assert_int_equal(n, 25);
        assert_int_equal(code("code=aaaaaaaaaaaaaaaaaaaaaaaaaa", out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code(NULL, out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code("code=", out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code("x=1", out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code("code=a&x=1", out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code("code=a%0", out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code("code=a%00", out, &n), -KH_E_INVALID_PARAMETER);
        assert_int_equal(code("code=a%zz", out, &n), -KH_E_INVALID_PARAMETER);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_create_fields_case_insensitive),
                cmocka_unit_test(test_create_refuses_each_bad_field),
                cmocka_unit_test(test_body_limits),
                cmocka_unit_test(test_update_key_optional),
                cmocka_unit_test(test_answers),
                cmocka_unit_test(test_access_code_query),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
