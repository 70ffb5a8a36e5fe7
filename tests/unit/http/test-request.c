#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdbool.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "common/limits.h"
#include "http/request.h"

static int target(const char *path, struct kh_request_target *t) {
        return kh_http_target_parse(path, strlen(path), t);
}

static void test_target_bare_and_tenant_routes(void **state) {
        struct kh_request_target t;
        (void) state;

        assert_int_equal(target("/user-keys", &t), 0);
        assert_null(t.tenant);
        assert_int_equal(t.route->id, KH_ROUTE_USER_KEYS);

        assert_int_equal(target("/t/acme-2/user-keys", &t), 0);
        assert_int_equal(t.tenant_len, 6);
        assert_memory_equal(t.tenant, "acme-2", 6);
        assert_int_equal(t.route->id, KH_ROUTE_USER_KEYS);

        assert_int_equal(target("/t/acme/now", &t), 0);
        assert_int_equal(t.route->id, KH_ROUTE_NOW);
        assert_int_equal(target("/metrics", &t), 0);
        assert_int_equal(t.route->id, KH_ROUTE_METRICS);
}

static void test_target_rejects_what_is_not_exactly_a_route(void **state) {
        struct kh_request_target t;
        (void) state;

        assert_int_equal(target("/t/acme/metrics", &t), -KH_E_NOT_FOUND); /* operator routes are bare */
        assert_non_null(t.tenant);
        assert_int_equal(target("/user-keys/", &t), -KH_E_NOT_FOUND);
        assert_int_equal(target("//user-keys", &t), -KH_E_NOT_FOUND);
        assert_int_equal(target("/USER-KEYS", &t), -KH_E_NOT_FOUND);
        assert_int_equal(target("/t/acme", &t), -KH_E_NOT_FOUND);
        assert_int_equal(target("/t/../user-keys", &t), -KH_E_UNKNOWN_TENANT);
        assert_int_equal(target("/t/Acme/user-keys", &t), -KH_E_UNKNOWN_TENANT);
        assert_null(t.tenant);
        assert_int_equal(target("/t//user-keys", &t), -KH_E_UNKNOWN_TENANT);
}

static void test_target_caps_the_path(void **state) {
        static char path[KH_PATH_MAX + 2];
        struct kh_request_target t;
        (void) state;

        memset(path, 'a', sizeof(path) - 1);
        path[0] = '/';
        assert_int_equal(kh_http_target_parse(path, KH_PATH_MAX + 1, &t), -KH_E_URI_TOO_LONG);
        assert_int_equal(kh_http_target_parse(path, KH_PATH_MAX, &t), -KH_E_NOT_FOUND);
}

static int bearer(const char *authz, const char **tok, size_t *len) {
        return kh_http_bearer_parse(authz, authz ? strlen(authz) : 0, tok, len);
}

static bool matches(const char *pattern, const char *path, struct kh_request_target *t) {
        t->n_params = 99;
        return kh_route_match(pattern, path, strlen(path), t);
}

static void assert_param(const struct kh_request_target *t, size_t i, const char *want) {
        assert_true(i < t->n_params);
        assert_int_equal(t->params[i].len, strlen(want));
        assert_memory_equal(t->params[i].p, want, strlen(want));
}

static void test_route_match_literal_and_parameters(void **state) {
        struct kh_request_target t;
        (void) state;

        assert_true(matches("/user-keys", "/user-keys", &t));
        assert_int_equal(t.n_params, 0);
        assert_true(matches("/devices/{id}", "/devices/3fa85f64-5717", &t));
        assert_int_equal(t.n_params, 1);
        assert_param(&t, 0, "3fa85f64-5717");
        assert_true(matches("/admin/keys/{version}/revoke", "/admin/keys/12/revoke", &t));
        assert_param(&t, 0, "12");
        assert_true(matches("/a/{x}/b/{y}", "/a/A.b_c~d/b/Z", &t));
        assert_int_equal(t.n_params, 2);
        assert_param(&t, 0, "A.b_c~d");
        assert_param(&t, 1, "Z");
        assert_true(matches("/a/{x}", "/a/..", &t));   /* no dot-segment meaning: a plain value */
        assert_param(&t, 0, "..");
}

static void test_route_match_refuses_near_misses(void **state) {
        static const char *const no[] = {
                "/devices/", "/devices", "/devices/a/", "/devices/a/b", "/devices//", "/devices/a%20b",
                "/devices/a b", "/devices/a+b", "/devices/a:b", "/devices/\xc3\xa9", "/Devices/a",
                "/devices/a?", "devices/a",
        };
        struct kh_request_target t;
        char long_id[KH_ROUTE_PARAM_MAX + 16];
        (void) state;

        for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
                assert_false(matches("/devices/{id}", no[i], &t));
                assert_int_equal(t.n_params, 99);       /* untouched on a miss */
        }
        memcpy(long_id, "/devices/", 9);
        memset(long_id + 9, 'a', KH_ROUTE_PARAM_MAX);
        long_id[9 + KH_ROUTE_PARAM_MAX] = 0;
        assert_true(matches("/devices/{id}", long_id, &t));
        long_id[9 + KH_ROUTE_PARAM_MAX] = 'a';
        long_id[10 + KH_ROUTE_PARAM_MAX] = 0;
        assert_false(matches("/devices/{id}", long_id, &t));
        assert_false(matches("/a/{unterminated", "/a/b", &t));
}

static void test_route_names_are_the_patterns(void **state) {
        (void) state;

        assert_string_equal(kh_route_name(KH_ROUTE_USER_KEYS), "user-keys");
        assert_string_equal(kh_route_name(KH_ROUTE_METRICS), "metrics");
        assert_string_equal(kh_route_name(KH_ROUTE_NONE), "none");
        assert_ptr_equal(kh_route_by_id(KH_ROUTE_ALIVE)->pattern, kh_route_by_id(KH_ROUTE_ALIVE)->pattern);
        assert_int_equal(kh_route_by_id(KH_ROUTE_HEALTH)->scope, KH_SCOPE_SERVER);
        assert_int_equal(kh_route_by_id(KH_ROUTE_USER_KEYS)->auth, KH_AUTH_MEMBER);
        assert_null(kh_route_by_id(KH_ROUTE_NONE));
}

static void test_methods_and_allow(void **state) {
        char buf[KH_ALLOW_BUF];
        (void) state;

        assert_int_equal(kh_http_method_parse("GET", 3), KH_GET);
        assert_int_equal(kh_http_method_parse("PATCH", 5), KH_PATCH);
        assert_int_equal(kh_http_method_parse("DELETE", 6), KH_DELETE);
        assert_int_equal(kh_http_method_parse("get", 3), 0);       /* methods are case-sensitive */
        assert_int_equal(kh_http_method_parse("GETX", 3), KH_GET); /* len, not NUL, ends it */
        assert_int_equal(kh_http_method_parse("GETX", 4), 0);
        assert_int_equal(kh_http_method_parse("OPTIONS", 7), 0);
        assert_int_equal(kh_http_method_parse("HEAD", 4), 0);
        assert_int_equal(kh_http_method_parse("", 0), 0);

        assert_int_equal(kh_http_allow_format(KH_GET | KH_POST | KH_PUT, buf), 14);
        assert_string_equal(buf, "GET, POST, PUT");
        kh_http_allow_format(KH_PATCH | KH_GET, buf);
        assert_string_equal(buf, "GET, PATCH");
        assert_int_equal(kh_http_allow_format(KH_GET | KH_POST | KH_PUT | KH_DELETE | KH_PATCH, buf),
                         strlen("GET, POST, PUT, DELETE, PATCH"));
        assert_string_equal(buf, "GET, POST, PUT, DELETE, PATCH");
        assert_int_equal(kh_http_allow_format(0, buf), 0);
        assert_string_equal(buf, "");
}

static int framing(const char *head) {
        return kh_http_framing_check(head, strlen(head));
}

static void test_framing_refuses_everything_but_one_length(void **state) {
        (void) state;

        assert_int_equal(framing("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
        assert_int_equal(framing("PUT / HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nabcde"), 0);
        assert_int_equal(framing("PUT / HTTP/1.1\nContent-Length: 5\n\n"), 0);         /* bare LF */
        assert_int_equal(framing("PUT / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"),
                         -KH_E_LENGTH_REQUIRED);
        assert_int_equal(framing("PUT / HTTP/1.1\r\nTRANSFER-ENCODING:\tCHUNKED\r\n\r\n"),
                         -KH_E_LENGTH_REQUIRED);
        assert_int_equal(framing("PUT / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"),
                         -KH_E_LENGTH_REQUIRED);                                 /* any value */
        assert_int_equal(framing("PUT / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
                         -KH_E_AMBIGUOUS_FRAMING);
        assert_int_equal(framing("PUT / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n"),
                         -KH_E_AMBIGUOUS_FRAMING);
        assert_int_equal(framing("PUT / HTTP/1.1\r\ncontent-length: 5\r\nContent-Length: 6\r\n\r\n"),
                         -KH_E_AMBIGUOUS_FRAMING);
        /* what follows the empty line is the body, not the head */
        assert_int_equal(framing("PUT / HTTP/1.1\r\nContent-Length: 40\r\n\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
        /* near misses are other fields */
        assert_int_equal(framing("GET / HTTP/1.1\r\nContent-Lengthx: 5\r\nx-transfer-encoding: chunked\r\n"
                                 "Transfer-Encoding : chunked\r\ncontent-length\r\n\r\n"), 0);
        /* the request line is not a field, whatever it holds */
        assert_int_equal(framing("transfer-encoding: chunked\r\n\r\n"), 0);
        assert_int_equal(framing(""), 0);
        assert_int_equal(kh_http_framing_check("GET / HTTP/1.1\r\ncontent-length: 1", 34), 0);
}

static void test_bearer_extraction(void **state) {
        const char *tok = NULL;
        size_t len = 0;
        (void) state;

        assert_int_equal(bearer("Bearer abc.def-_~+/==", &tok, &len), 0);
        assert_int_equal(len, 14);
        assert_memory_equal(tok, "abc.def-_~+/==", 14);
        assert_int_equal(bearer("bearer   x", &tok, &len), 0);
        assert_int_equal(len, 1);
        assert_int_equal(bearer(NULL, &tok, &len), -KH_E_MISSING_TOKEN);
        assert_int_equal(bearer("Basic dXNlcg==", &tok, &len), -KH_E_MISSING_TOKEN);
        assert_int_equal(bearer("Bearer", &tok, &len), -KH_E_MISSING_TOKEN);
        assert_int_equal(bearer("Bearer    ", &tok, &len), -KH_E_MISSING_TOKEN);
        assert_int_equal(bearer("Bearer a b", &tok, &len), -KH_E_INVALID_TOKEN);
        assert_int_equal(bearer("Bearer a=b", &tok, &len), -KH_E_INVALID_TOKEN);
        assert_int_equal(bearer("Bearerx abc", &tok, &len), -KH_E_MISSING_TOKEN);
}

/* Every position of tokens of every length up to 40 (the check runs 8 bytes at a time, then
 * byte by byte): one bad byte anywhere, or "=" followed by anything but "=", is refused. */
static void test_bearer_bad_byte_at_every_position(void **state) {
        static const char bad[] = { ' ', '"', ',', ';', '\\', '=', '\x7f', '\x80', '\xff', '\t' };
        char authz[7 + 41];
        const char *tok;
        size_t len;
        (void) state;

        memcpy(authz, "Bearer ", 7);
        for (size_t n = 1; n <= 40; n++) {
                for (size_t i = 0; i < n; i++)
                        authz[7 + i] = "aZ09-._~+/"[i % 10];
                assert_int_equal(kh_http_bearer_parse(authz, 7 + n, &tok, &len), 0);
                assert_int_equal(len, n);
                for (size_t pos = 0; pos < n; pos++) {
                        char keep = authz[7 + pos];

                        for (size_t b = 0; b < sizeof(bad); b++) {
                                authz[7 + pos] = bad[b];
                                /* "=" is padding: fine as the last bytes only */
                                if (bad[b] == '=' && pos == n - 1)
                                        assert_int_equal(kh_http_bearer_parse(authz, 7 + n, &tok, &len), 0);
                                else if (bad[b] == ' ' && pos == 0)
                                        assert_int_equal(kh_http_bearer_parse(authz, 7 + n, &tok, &len),
                                                         n == 1 ? -KH_E_MISSING_TOKEN : 0);
                                else
                                        assert_int_equal(kh_http_bearer_parse(authz, 7 + n, &tok, &len),
                                                         -KH_E_INVALID_TOKEN);
                        }
                        authz[7 + pos] = keep;
                }
        }
}

static void test_bearer_caps_the_token(void **state) {
        static char authz[7 + KH_TOKEN_MAX + 2];
        const char *tok;
        size_t len;
        (void) state;

        memcpy(authz, "Bearer ", 7);
        memset(authz + 7, 'a', KH_TOKEN_MAX + 1);
        assert_int_equal(kh_http_bearer_parse(authz, 7 + KH_TOKEN_MAX + 1, &tok, &len), -KH_E_INVALID_TOKEN);
        assert_int_equal(kh_http_bearer_parse(authz, 7 + KH_TOKEN_MAX, &tok, &len), 0);
        assert_int_equal(len, KH_TOKEN_MAX);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_target_bare_and_tenant_routes),
                cmocka_unit_test(test_target_rejects_what_is_not_exactly_a_route),
                cmocka_unit_test(test_target_caps_the_path),
                cmocka_unit_test(test_route_match_literal_and_parameters),
                cmocka_unit_test(test_route_match_refuses_near_misses),
                cmocka_unit_test(test_route_names_are_the_patterns),
                cmocka_unit_test(test_methods_and_allow),
                cmocka_unit_test(test_framing_refuses_everything_but_one_length),
                cmocka_unit_test(test_bearer_extraction),
                cmocka_unit_test(test_bearer_caps_the_token),
                cmocka_unit_test(test_bearer_bad_byte_at_every_position),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
