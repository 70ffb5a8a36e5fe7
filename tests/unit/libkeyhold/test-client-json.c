/* unit tests for src/libkeyhold/client-json.c: the server's JSON (spec/trusted-devices.md
 * sections 3, 4 and 8, as keyholdd answers) into the structs of keyhold/client.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "libkeyhold/client-internal.h"

static json_t *parse(const char *text) {
        json_t *v = json_loads(text, JSON_REJECT_DUPLICATES, NULL);
        assert_non_null(v);
        return v;
}

static void test_device_model_decodes_every_field(void **state) {
        (void) state;
        json_t *v = parse("{\"object\":\"device\",\"id\":\"0d6bd8f6-4bd3-4a7d-9c0d-5d0f9f0c3a11\","
                          "\"name\":\"laptop\",\"type\":25,\"identifier\":\"abc-1\","
                          "\"creationDate\":\"2026-12-07T00:46:12.000Z\",\"lastActivityDate\":null,"
                          "\"isTrusted\":true,\"encryptedUserKey\":\"4.AAAA\","
                          "\"encryptedPublicKey\":\"2.x|y|z\"}");
        struct keyhold_device d;

        assert_int_equal(khl_device_decode(v, &d), KEYHOLD_OK);
        assert_string_equal(d.id, "0d6bd8f6-4bd3-4a7d-9c0d-5d0f9f0c3a11");
        assert_string_equal(d.name, "laptop");
        assert_string_equal(d.identifier, "abc-1");
        assert_int_equal(d.type, 25);
        assert_true(d.is_trusted);
        assert_string_equal(d.creation_date, "2026-12-07T00:46:12.000Z");
        assert_null(d.last_activity_date);
        assert_string_equal(d.encrypted_user_key, "4.AAAA");
        assert_string_equal(d.encrypted_public_key, "2.x|y|z");
        assert_null(d.encrypted_private_key);
        khl_device_clear(&d);
        json_decref(v);
}

static void test_device_trust_from_values_when_no_flag(void **state) {
        (void) state;
        /* keyhold's stored shape: dates in seconds, the three values, no isTrusted */
        json_t *v = parse("{\"Id\":\"i\",\"Identifier\":\"x\",\"creationDate\":1700000000,"
                          "\"encryptedUserKey\":\"4.a\",\"encryptedPublicKey\":\"2.b\","
                          "\"encryptedPrivateKey\":\"2.c\"}");
        struct keyhold_device d;

        assert_int_equal(khl_device_decode(v, &d), KEYHOLD_OK);
        assert_string_equal(d.id, "i"); /* PascalCase accepted */
        assert_true(d.is_trusted);
        assert_string_equal(d.creation_date, "1700000000");
        assert_int_equal(d.type, 0);
        khl_device_clear(&d);
        json_decref(v);

        v = parse("{\"id\":\"i\",\"identifier\":\"x\",\"encryptedUserKey\":\"4.a\"}");
        assert_int_equal(khl_device_decode(v, &d), KEYHOLD_OK);
        assert_false(d.is_trusted);
        khl_device_clear(&d);
        json_decref(v);
}

static void test_device_refuses_malformed(void **state) {
        (void) state;
        static const char *const bad[] = {
                "[]",
                "{\"identifier\":\"x\"}",                           /* no id */
                "{\"id\":\"i\"}",                                   /* no identifier */
                "{\"id\":1,\"identifier\":\"x\"}",                  /* id not a string */
                "{\"id\":\"i\",\"identifier\":\"x\",\"type\":\"25\"}", /* type not a number */
                "{\"id\":\"i\",\"identifier\":\"x\",\"type\":-1}",
                "{\"id\":\"i\",\"identifier\":\"x\",\"isTrusted\":1}",
                "{\"id\":\"i\",\"identifier\":\"x\",\"encryptedUserKey\":4}",
        };
        struct keyhold_device d = { 0 };

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                json_t *v = parse(bad[i]);
                assert_int_equal(khl_device_decode(v, &d), KEYHOLD_E_RESPONSE);
                assert_null(d.id); /* untouched on failure */
                json_decref(v);
        }
}

static void test_device_list(void **state) {
        (void) state;
        json_t *v = parse("{\"object\":\"list\",\"data\":[{\"id\":\"a\",\"identifier\":\"1\"},"
                          "{\"id\":\"b\",\"identifier\":\"2\",\"name\":\"n\"}],"
                          "\"continuationToken\":null}");
        struct keyhold_device_list *l = NULL;

        assert_int_equal(khl_device_list_decode(v, &l), KEYHOLD_OK);
        assert_int_equal(l->n, 2);
        assert_string_equal(l->items[0].id, "a");
        assert_string_equal(l->items[1].name, "n");
        keyhold_device_list_free(l);
        json_decref(v);

        v = parse("{\"data\":[{\"id\":\"a\",\"identifier\":\"1\"},{\"id\":\"b\"}]}");
        l = NULL;
        assert_int_equal(khl_device_list_decode(v, &l), KEYHOLD_E_RESPONSE);
        assert_null(l);
        json_decref(v);
        v = parse("{\"data\":{}}");
        assert_int_equal(khl_device_list_decode(v, &l), KEYHOLD_E_RESPONSE);
        json_decref(v);
        v = parse("{\"data\":[]}");
        assert_int_equal(khl_device_list_decode(v, &l), KEYHOLD_OK);
        assert_int_equal(l->n, 0);
        keyhold_device_list_free(l);
        json_decref(v);
}

static enum keyhold_auth_request_status status_of(const char *text) {
        struct keyhold_auth_request r;
        enum keyhold_auth_request_status s;
        json_t *v = parse(text);

        assert_int_equal(khl_auth_request_decode(v, &r), KEYHOLD_OK);
        s = r.status;
        khl_auth_request_clear(&r);
        json_decref(v);
        return s;
}

static void test_auth_request_status(void **state) {
        (void) state;
        /* keyhold's "status" wins */
        assert_int_equal(status_of("{\"id\":\"r\",\"status\":\"expired\",\"requestApproved\":false}"),
                         KEYHOLD_AUTH_REQUEST_EXPIRED);
        assert_int_equal(status_of("{\"id\":\"r\",\"status\":\"pending\"}"),
                         KEYHOLD_AUTH_REQUEST_PENDING);
        /* else Bitwarden's reading: requestApproved, then responseDate */
        assert_int_equal(status_of("{\"id\":\"r\",\"requestApproved\":true,"
                                   "\"responseDate\":\"2026-01-01T00:00:00Z\"}"),
                         KEYHOLD_AUTH_REQUEST_APPROVED);
        assert_int_equal(status_of("{\"id\":\"r\",\"requestApproved\":false,"
                                   "\"responseDate\":\"2026-01-01T00:00:00Z\"}"),
                         KEYHOLD_AUTH_REQUEST_DENIED);
        assert_int_equal(status_of("{\"id\":\"r\",\"requestApproved\":false,\"responseDate\":null}"),
                         KEYHOLD_AUTH_REQUEST_PENDING);
}

static void test_auth_request_fields_and_refusals(void **state) {
        (void) state;
        json_t *v = parse("{\"object\":\"auth-request\",\"id\":\"r\",\"publicKey\":\"MIIB\","
                          "\"requestDeviceIdentifier\":\"dev\",\"requestDeviceTypeValue\":25,"
                          "\"requestDeviceType\":\"Linux CLI\",\"requestIpAddress\":\"127.0.0.1\","
                          "\"key\":\"4.k\",\"creationDate\":\"c\",\"responseDate\":\"d\","
                          "\"requestApproved\":true,\"origin\":\"o\",\"status\":\"approved\","
                          "\"fingerprint\":\"a-b-c-d-e\",\"email\":\"m@x\"}");
        struct keyhold_auth_request r = { 0 };

        assert_int_equal(khl_auth_request_decode(v, &r), KEYHOLD_OK);
        assert_string_equal(r.public_key, "MIIB");
        assert_string_equal(r.request_device_identifier, "dev");
        assert_int_equal(r.request_device_type, 25);
        assert_string_equal(r.key, "4.k");
        assert_true(r.request_approved);
        assert_string_equal(r.fingerprint, "a-b-c-d-e");
        assert_string_equal(r.email, "m@x");
        khl_auth_request_clear(&r);
        json_decref(v);

        v = parse("{\"id\":\"r\",\"status\":\"maybe\"}");
        assert_int_equal(khl_auth_request_decode(v, &r), KEYHOLD_E_RESPONSE);
        json_decref(v);
        v = parse("{\"status\":\"pending\"}");
        assert_int_equal(khl_auth_request_decode(v, &r), KEYHOLD_E_RESPONSE);
        json_decref(v);
        v = parse("{\"id\":\"r\",\"requestApproved\":\"yes\"}");
        assert_int_equal(khl_auth_request_decode(v, &r), KEYHOLD_E_RESPONSE);
        json_decref(v);
        assert_null(r.id);
}

static void test_public_key(void **state) {
        (void) state;
        json_t *v = parse("{\"object\":\"organizationPublicKey\",\"publicKey\":\"AQID\"}");
        uint8_t *der = NULL;
        size_t len = 0;

        assert_int_equal(khl_public_key_decode(v, &der, &len), KEYHOLD_OK);
        assert_int_equal(len, 3);
        assert_memory_equal(der, "\x01\x02\x03", 3);
        free(der);
        json_decref(v);
        v = parse("{\"publicKey\":\"AQI\"}"); /* not canonical base64 */
        assert_int_equal(khl_public_key_decode(v, &der, &len), KEYHOLD_E_RESPONSE);
        json_decref(v);
        v = parse("{\"publicKey\":\"\"}");
        assert_int_equal(khl_public_key_decode(v, &der, &len), KEYHOLD_E_RESPONSE);
        json_decref(v);
}

static void test_errors_and_statuses(void **state) {
        (void) state;
        char message[16], code[8];
        json_t *v = parse("{\"object\":\"error\",\"message\":\"No such device, really.\","
                          "\"code\":\"device_not_found\"}");

        khl_error_decode(v, message, sizeof(message), code, sizeof(code));
        assert_string_equal(message, "No such device,"); /* truncated to the buffer */
        assert_string_equal(code, "device_");
        json_decref(v);
        khl_error_decode(NULL, message, sizeof(message), code, sizeof(code));
        assert_string_equal(message, "");
        assert_string_equal(code, "");

        assert_int_equal(khl_status_for_http(400), KEYHOLD_E_BAD_REQUEST);
        assert_int_equal(khl_status_for_http(401), KEYHOLD_E_UNAUTHORIZED);
        assert_int_equal(khl_status_for_http(403), KEYHOLD_E_FORBIDDEN);
        assert_int_equal(khl_status_for_http(404), KEYHOLD_E_NOT_FOUND);
        assert_int_equal(khl_status_for_http(409), KEYHOLD_E_CONFLICT);
        assert_int_equal(khl_status_for_http(503), KEYHOLD_E_SERVER);
        assert_string_equal(keyhold_strerror(KEYHOLD_E_DENIED), "the request was denied");
}

static void test_token_claim(void **state) {
        (void) state;
        /* {"sub":"3fa8","email":"A@B.c","n":1} in base64url, no padding */
        const char *token = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIzZmE4IiwiZW1haWwiOiJBQEIuYyIsIm4iOjF9.sig";
        char *v = NULL;

        assert_int_equal(keyhold_token_claim(token, "email", &v), KEYHOLD_OK);
        assert_string_equal(v, "A@B.c");
        free(v);
        assert_int_equal(keyhold_token_claim(token, "sub", &v), KEYHOLD_OK);
        assert_string_equal(v, "3fa8");
        free(v);
        v = NULL;
        assert_int_equal(keyhold_token_claim(token, "n", &v), KEYHOLD_E_NOT_FOUND);
        assert_int_equal(keyhold_token_claim(token, "x", &v), KEYHOLD_E_NOT_FOUND);
        assert_int_equal(keyhold_token_claim("abc", "sub", &v), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_token_claim("a.!!!.c", "sub", &v), KEYHOLD_E_FORMAT);
        assert_null(v);
}

static void test_client_options_are_checked(void **state) {
        (void) state;
        struct keyhold_client *c = NULL;
        struct keyhold_client_options o = { .url = "http://example.com" };

        assert_int_equal(keyhold_client_new(&o, &c), KEYHOLD_E_INVALID); /* plain http off-host */
        o.url = "https://h/?q=1";
        assert_int_equal(keyhold_client_new(&o, &c), KEYHOLD_E_INVALID);
        o.url = "https://h";
        o.token = "two words";
        assert_int_equal(keyhold_client_new(&o, &c), KEYHOLD_E_INVALID);
        assert_null(c);
        o.token = "t";
        o.url = "http://127.0.0.1:1/t/acme/";
        assert_int_equal(keyhold_client_new(&o, &c), KEYHOLD_OK);
        assert_int_equal(keyhold_client_http_status(c), 0);
        assert_string_equal(keyhold_client_error_message(c), "");
        keyhold_client_free(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_device_model_decodes_every_field),
                cmocka_unit_test(test_device_trust_from_values_when_no_flag),
                cmocka_unit_test(test_device_refuses_malformed),
                cmocka_unit_test(test_device_list),
                cmocka_unit_test(test_auth_request_status),
                cmocka_unit_test(test_auth_request_fields_and_refusals),
                cmocka_unit_test(test_public_key),
                cmocka_unit_test(test_errors_and_statuses),
                cmocka_unit_test(test_token_claim),
                cmocka_unit_test(test_client_options_are_checked),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
