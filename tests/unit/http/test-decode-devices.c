/* http/decode-devices.c: the bodies of the device and recovery routes, with trust values from
 * spec/encstring.md (V1 is a type 2, V5 a type 4 and a type 3) and spec/trusted-devices.md 2.3. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "http/decode.h"

#define T2 "2.2NokAMS6llUxk26oueMqrA==|6k0QD71SJLy2WEBDkV4esiTrgkP/z7eoSedSesGLGYE=|PE4sb0jpAwZW+tnyPuW43eeWvSxjvdw3xMJlPGbDlYI="
#define T4 "4.DMD1D5r6BsDDd7C/FE1eZbMCKrmryvAsCKj6+bO54gJNUxisOI7SDcpPLRXf+JdhqY15pT+wimQ5cD9C+6OQ6s71LFQHewXPU29l9Pa1JxGeiKqp37KLYf+1IS6UB2K3ANN35C52ZUHh2TlzIS5RuntxnpCw7APbcfpcnmIdLPJBtuj/xbFd6eBwnI3GSe5qdS6/Ixdd0dgsZcpz3gHJBKmIlSo0YN60SweDq3kTJwox9xSqdCueIDg5U4khc7RhjYx8b33HXaNJj3DwgIH8iLj+lqpDekogr630OhHG3XRpvl4QzYO45bmHb8wAh67Dj70nsZcVg6bAEFHdSFohww=="
#define T0 "0.AAECAwQFBgcICQoLDA0ODw==|bxAhj8/9alk6NJHwjNWVU6i8ejmCHCO2cuPX+q+2qWY="

static int keys(const char *body, struct kh_req_trust *t, struct kh_req_doc *doc) {
        return kh_req_device_keys_parse(body, strlen(body), doc, t);
}

static void test_keys_take_rsa_then_symmetric_values(void **state) {
        struct kh_req_doc doc;
        struct kh_req_trust t;
        (void) state;

        assert_int_equal(keys("{\"EncryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T2
                              "\",\"encryptedprivatekey\":\"" T2 "\",\"other\":1}", &t, &doc), 0);
        assert_string_equal(t.user_key, T4);
        assert_string_equal(t.public_key, T2);
        assert_string_equal(t.private_key, T2);
        kh_req_doc_free(&doc);
        assert_null(doc.json);
}

static void test_keys_refuse_each_wrong_value(void **state) {
        static const struct { const char *body; int r; } cases[] = {
                /* a symmetric value where the RSA one goes, and the reverse */
                { "{\"encryptedUserKey\":\"" T2 "\",\"encryptedPublicKey\":\"" T2 "\",\"encryptedPrivateKey\":\"" T2 "\"}", -KH_E_INVALID_ENCSTRING },
                { "{\"encryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T4 "\",\"encryptedPrivateKey\":\"" T2 "\"}", -KH_E_INVALID_ENCSTRING },
                /* type 0 has no MAC: a downgrade */
                { "{\"encryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T0 "\",\"encryptedPrivateKey\":\"" T2 "\"}", -KH_E_INVALID_ENCSTRING },
                { "{\"encryptedUserKey\":\"4.@@@@\",\"encryptedPublicKey\":\"" T2 "\",\"encryptedPrivateKey\":\"" T2 "\"}", -KH_E_INVALID_ENCSTRING },
                { "{\"encryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T2 "\"}", -KH_E_INVALID_REQUEST_BODY },
                { "{\"encryptedUserKey\":\"" T4 "\",\"ENCRYPTEDUSERKEY\":\"" T4 "\",\"encryptedPublicKey\":\"" T2 "\",\"encryptedPrivateKey\":\"" T2 "\"}", -KH_E_INVALID_REQUEST_BODY },
                { "{\"encryptedUserKey\":4,\"encryptedPublicKey\":\"" T2 "\",\"encryptedPrivateKey\":\"" T2 "\"}", -KH_E_INVALID_REQUEST_BODY },
                { "[]", -KH_E_INVALID_REQUEST_BODY },
                { "{", -KH_E_INVALID_REQUEST_BODY },
        };
        (void) state;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kh_req_doc doc = { (void *) 1 };
                struct kh_req_trust t;

                assert_int_equal(keys(cases[i].body, &t, &doc), cases[i].r);
                assert_null(doc.json);
        }
}

static void test_device_register(void **state) {
        struct kh_req_doc doc;
        struct kh_req_device d;
        static const char *const bad[] = {
                "{\"type\":8,\"name\":\"x\"}",
                "{\"type\":8,\"name\":\"x\",\"identifier\":\"has space\"}",
                "{\"type\":8,\"name\":\"x\",\"identifier\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
                "{\"type\":1001,\"name\":\"x\",\"identifier\":\"a\"}",
                "{\"type\":8,\"name\":\"\",\"identifier\":\"a\"}",
                "{\"type\":true,\"name\":\"x\",\"identifier\":\"a\"}",
        };
        const char *ok = "{\"type\":8,\"Name\":\"laptop\",\"identifier\":\"a.B_c-9\",\"pushToken\":\"p\"}";
        (void) state;

        assert_int_equal(kh_req_device_parse(ok, strlen(ok), &doc, &d), 0);
        assert_int_equal(d.type, 8);
        assert_string_equal(d.name, "laptop");
        assert_string_equal(d.identifier, "a.B_c-9");
        kh_req_doc_free(&doc);
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_int_equal(kh_req_device_parse(bad[i], strlen(bad[i]), &doc, &d),
                                 -KH_E_INVALID_REQUEST_BODY);
}

static void test_update_trust_and_untrust(void **state) {
        static char ids[KH_REQ_DEVICES_MAX][37];
        struct kh_req_update_trust u;
        struct kh_req_doc doc;
        size_t n;
        const char *body = "{\"currentDevice\":{\"encryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T2
                           "\"},\"otherDevices\":[{\"deviceId\":\"3FA85F64-5717-4562-B3FC-2C963F66AFA6\","
                           "\"encryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T2 "\"}],"
                           "\"untrustUnlisted\":true,\"masterPasswordHash\":\"ignored\"}";
        const char *list = "{\"devices\":[\"3fa85f64-5717-4562-b3fc-2c963f66afa6\"]}";
        (void) state;

        assert_int_equal(kh_req_update_trust_parse(body, strlen(body), &doc, &u), 0);
        assert_int_equal(u.n_others, 1);
        assert_string_equal(u.others[0].device_id, "3fa85f64-5717-4562-b3fc-2c963f66afa6");
        assert_true(u.untrust_unlisted);
        kh_req_update_trust_free(&u);
        kh_req_doc_free(&doc);
        body = "{\"currentDevice\":{\"encryptedUserKey\":\"" T4 "\",\"encryptedPublicKey\":\"" T2
               "\"},\"otherDevices\":[{\"deviceId\":\"nope\",\"encryptedUserKey\":\"" T4
               "\",\"encryptedPublicKey\":\"" T2 "\"}]}";
        assert_int_equal(kh_req_update_trust_parse(body, strlen(body), &doc, &u),
                         -KH_E_INVALID_REQUEST_BODY);
        assert_null(u.others);
        assert_int_equal(kh_req_untrust_parse(list, strlen(list), ids, &n), 0);
        assert_int_equal(n, 1);
        assert_string_equal(ids[0], "3fa85f64-5717-4562-b3fc-2c963f66afa6");
        list = "{\"devices\":[\"3fa85f64-5717-4562-b3fc-2c963f66afa6\", 7]}";
        assert_int_equal(kh_req_untrust_parse(list, strlen(list), ids, &n), -KH_E_INVALID_REQUEST_BODY);
        assert_int_equal(n, 0);
}

static void test_enrol(void **state) {
        struct kh_req_doc doc;
        const char *key;
        const char *ok = "{\"resetPasswordKey\":\"" T4 "\",\"masterPasswordHash\":\"x\"}";
        const char *type3 = "{\"resetPasswordKey\":\"3." "SUx5gWrgmAKs/S1BoQrqOmx2Hl5fPVBVHokW17Flvm4TpBnJJRkfoitp7Jc4dfazPYjWGlckJz6X+qe+/AWilS1mxtzS0PmDy7tS5xP0GRlB39dstCd5jDw1wPmTbXiLcQ5VTvzpRAfRMEYVveTsEvVTByvEYAGSn4TnCsUDykyhRbD0YcJ4r1KHLs1b3BCBy2M1Gl5nmwckH08CAXaf8VfuBFStAGRKueovqp4euneQla+4G4fXdVvb8qKPnu0iVuALIE6nUNmeOiA3xN3d+akMxbbGxrQ1Ca4TYWjHVdj9C6abngQHkjKNYQwGUXrYo160hP4LIHn/huK6bZe5dQ==\"}";
        (void) state;

        assert_int_equal(kh_req_enrol_parse(ok, strlen(ok), &doc, &key), 0);
        assert_string_equal(key, T4);
        kh_req_doc_free(&doc);
        assert_int_equal(kh_req_enrol_parse(type3, strlen(type3), &doc, &key), 0);
        assert_non_null(key);
        kh_req_doc_free(&doc);
        for (const char *const *b = (const char *const[]) { "{\"resetPasswordKey\":null}",
                                                           "{\"resetPasswordKey\":\"\"}", "{}", NULL };
             *b; b++) {
                assert_int_equal(kh_req_enrol_parse(*b, strlen(*b), &doc, &key), 0);
                assert_null(key);
                kh_req_doc_free(&doc);
        }
        /* a type 2, and an RSA value that is not one 2048-bit block */
        for (const char *const *b = (const char *const[]) { "{\"resetPasswordKey\":\"" T2 "\"}",
                                                           "{\"resetPasswordKey\":\"4.AAAA\"}", NULL };
             *b; b++) {
                assert_int_equal(kh_req_enrol_parse(*b, strlen(*b), &doc, &key), -KH_E_INVALID_ENCSTRING);
                assert_null(key);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_keys_take_rsa_then_symmetric_values),
                cmocka_unit_test(test_keys_refuse_each_wrong_value),
                cmocka_unit_test(test_device_register),
                cmocka_unit_test(test_update_trust_and_untrust),
                cmocka_unit_test(test_enrol),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
