/* The PKCS#11 module loader against a real SoftHSM2 token that with-softhsm.sh makes for
 * this run: the RSA key of tests/unit/crypto/data/kc-rsa.key.pem under the label "kc-rsa"
 * on the token "kh-test", user PIN 5678. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "keystore/pkcs11/module-internal.h"
#include "keystore/pkcs11/module.h"

#include "../kc-test-data.h"

struct env {
        const char *module, *token, *key;
        struct kh_secret *pin;
};

static const char *env_get(const char *name) {
        const char *v = getenv(name);

        if (!v || !*v)
                fail_msg("%s is not set: run this test through with-softhsm.sh", name);
        return v;
}

static int setup(void **state) {
        static struct env e;
        const char *pin;

        e.module = env_get("KH_P11_MODULE");
        e.token = env_get("KH_P11_TOKEN");
        e.key = env_get("KH_P11_KEY");
        pin = env_get("KH_P11_PIN");
        if (kh_secret_new_from(pin, strlen(pin), &e.pin) < 0)
                return -1;
        *state = &e;
        return 0;
}

static int teardown(void **state) {
        struct env *e = *state;

        e->pin = kh_secret_free(e->pin);
        return 0;
}

static struct kh_p11 *open_ok(const struct env *e) {
        struct kh_p11 *p = NULL;
        char detail[256];

        assert_int_equal(kh_p11_open(e->module, e->token, e->pin, &p, detail, sizeof(detail)), 0);
        assert_string_equal(detail, "");
        assert_non_null(p);
        return p;
}

static void test_p11_unwraps_data_key_oaep_sha1(void **state) {
        struct env *e = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = open_ok(e);
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;
        uint8_t want[32];

        kc_test_data_key(want);
        kc_test_data_read("data-key.wrapped", &wrapped);
        assert_int_equal(kh_p11_key_find(p, e->key), 0);
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                0);
        assert_int_equal(kh_secret_len(dk), 32);
        assert_memory_equal(kh_secret_bytes(dk), want, 32);
}

/* What says "the token is gone" (p11-kit's client module: CKR_DEVICE_ERROR once its server
 * is gone), and what says "the call was wrong", which must stay what it was. */
static void test_p11_lost_answers_are_keystore_unavailable(void **state) {
        static const CK_RV lost[] = { CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_DEVICE_ERROR,
                                      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED,
                                      CKR_CRYPTOKI_NOT_INITIALIZED, CKR_USER_NOT_LOGGED_IN };
        static const CK_RV other[] = { CKR_OK, CKR_GENERAL_ERROR, CKR_FUNCTION_FAILED,
                                       CKR_ARGUMENTS_BAD, CKR_PIN_INCORRECT, CKR_KEY_HANDLE_INVALID,
                                       CKR_MECHANISM_INVALID, CKR_ENCRYPTED_DATA_INVALID,
                                       CKR_OPERATION_ACTIVE, CKR_SLOT_ID_INVALID };
        (void) state;

        for (size_t i = 0; i < sizeof(lost) / sizeof(lost[0]); i++) {
                assert_true(kh_p11_rv_is_lost(lost[i]));
                assert_int_equal(kh_p11_rv_error(lost[i], -KH_E_PKCS11_MODULE),
                                 -KH_E_KEYSTORE_UNAVAILABLE);
        }
        for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
                assert_false(kh_p11_rv_is_lost(other[i]));
                assert_int_equal(kh_p11_rv_error(other[i], -KH_E_PKCS11_MODULE),
                                 -KH_E_PKCS11_MODULE);
        }
        assert_int_equal(kh_p11_rv_error(CKR_HOST_MEMORY, -KH_E_PKCS11_MODULE), -ENOMEM);
}

/* The session goes (closed behind the object's back, as a token that restarted forgets it):
 * every call answers -KH_E_KEYSTORE_UNAVAILABLE, the probe says so naming the answer, and a
 * reconnect (module initialised again, token found by label, login) makes the same key
 * decrypt again, found anew by its label. */
static void test_p11_session_gone_then_reconnect(void **state) {
        struct env *e = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = open_ok(e);
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;
        const struct kh_p11_open_args a = { .token_label = e->token, .pin = e->pin };
        char detail[256];
        uint8_t want[32];

        kc_test_data_key(want);
        kc_test_data_read("data-key.wrapped", &wrapped);
        assert_int_equal(kh_p11_probe(p, detail, sizeof(detail)), 0);

        assert_int_equal(p->f->C_CloseSession(p->session), CKR_OK);
        assert_int_equal(kh_p11_probe(p, detail, sizeof(detail)), -KH_E_KEYSTORE_UNAVAILABLE);
        assert_string_equal(detail, "C_GetSessionInfo: CKR_SESSION_HANDLE_INVALID");
        assert_int_equal(kh_p11_key_find(p, e->key), -KH_E_KEYSTORE_UNAVAILABLE);
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                -KH_E_KEYSTORE_UNAVAILABLE);
        assert_null(dk);

        assert_int_equal(kh_p11_reconnect(p, &a, detail, sizeof(detail)), 0);
        assert_string_equal(detail, "");
        assert_int_equal(kh_p11_probe(p, detail, sizeof(detail)), 0);
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                0);
        assert_memory_equal(kh_secret_bytes(dk), want, 32);
        /* a second reconnect of a live object is harmless */
        assert_int_equal(kh_p11_reconnect(p, &a, detail, sizeof(detail)), 0);
        assert_int_equal(kh_p11_key_find(p, e->key), 0);
}

/* A token that is back but refuses the PIN (it was changed meanwhile) is no success: the
 * object stays without a session and says so, and the right PIN brings it back. */
static void test_p11_reconnect_with_wrong_pin_stays_down(void **state) {
        struct env *e = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = open_ok(e);
        KH_CLEANUP(kh_secret_freep) struct kh_secret *wrong = NULL;
        struct kh_p11_open_args a = { .token_label = e->token, .pin = NULL };
        char detail[256];

        assert_int_equal(kh_secret_new_from("0000", 4, &wrong), 0);
        a.pin = wrong;
        assert_int_equal(kh_p11_reconnect(p, &a, detail, sizeof(detail)), -KH_E_PKCS11_PIN);
        assert_string_equal(detail, "C_Login: CKR_PIN_INCORRECT");
        assert_int_equal(kh_p11_probe(p, detail, sizeof(detail)), -KH_E_KEYSTORE_UNAVAILABLE);
        a.pin = e->pin;
        assert_int_equal(kh_p11_reconnect(p, &a, detail, sizeof(detail)), 0);
        assert_int_equal(kh_p11_key_find(p, e->key), 0);
}

static void test_p11_decrypt_rejects_what_the_key_does_not_open(void **state) {
        struct env *e = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = open_ok(e);
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;

        kc_test_data_read("data-key.wrapped", &wrapped);
        /* SoftHSM2 (2.6) does OAEP with SHA-1 only: SHA-256 is refused as a parameter. On
         * a token that has it, the right ciphertext under the wrong hash does not decrypt. */
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA256, wrapped.data, wrapped.len, &dk),
                -KH_E_PKCS11_MECHANISM);
        /* one flipped bit */
        wrapped.data[100] ^= 0x04;
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                -KH_E_PKCS11_DECRYPT);
        wrapped.data[100] ^= 0x04;
        /* not one modulus long (SoftHSM2 would keep the operation open: see module.c) */
        assert_int_equal(kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, 100, &dk),
                         -KH_E_PKCS11_DECRYPT);
        assert_int_equal(kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data,
                                                 wrapped.len + 1, &dk),
                         -KH_E_PKCS11_DECRYPT);
        /* all zeros: the integer 0, which no OAEP block is */
        memset(wrapped.data, 0, wrapped.len);
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                -KH_E_PKCS11_DECRYPT);
        kh_buf_free(&wrapped);
        kc_test_data_read("data-key.wrapped", &wrapped);
        assert_null(dk);
        /* the session is still usable after failures */
        assert_int_equal(
                kh_p11_rsa_oaep_decrypt(p, e->key, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                0);
}

static void test_p11_open_rejects_wrong_pin(void **state) {
        struct env *e = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pin = NULL;
        struct kh_p11 *p = NULL;
        char detail[256];

        assert_int_equal(kh_secret_new_from("5679", 4, &pin), 0);
        assert_int_equal(kh_p11_open(e->module, e->token, pin, &p, detail, sizeof(detail)),
                         -KH_E_PKCS11_PIN);
        assert_string_equal(detail, "C_Login: CKR_PIN_INCORRECT");
        assert_null(p);
        /* a wrong PIN does not lock the right one out (SoftHSM2 counts no tries) */
        kh_p11_free(open_ok(e));
}

static void test_p11_open_rejects_unknown_token(void **state) {
        struct env *e = *state;
        struct kh_p11 *p = NULL;
        char detail[256];
        char prefix[64];

        assert_int_equal(
                kh_p11_open(e->module, "no-such-token", e->pin, &p, detail, sizeof(detail)),
                -KH_E_PKCS11_TOKEN);
        assert_non_null(strstr(detail, "no token"));
        /* a prefix of the label is another label */
        assert_true(strlen(e->token) > 1 && strlen(e->token) < sizeof(prefix));
        memcpy(prefix, e->token, strlen(e->token) - 1);
        prefix[strlen(e->token) - 1] = '\0';
        assert_int_equal(kh_p11_open(e->module, prefix, e->pin, &p, NULL, 0), -KH_E_PKCS11_TOKEN);
        assert_int_equal(
                kh_p11_open(e->module, "0123456789012345678901234567890123", e->pin, &p, NULL, 0),
                -EINVAL);
        assert_null(p);
}

static void test_p11_open_rejects_bad_module(void **state) {
        struct env *e = *state;
        struct kh_p11 *p = NULL;
        char detail[256];

        assert_int_equal(kh_p11_open("/nonexistent/libpkcs11.so", e->token, e->pin, &p, detail,
                                     sizeof(detail)),
                         -KH_E_PKCS11_MODULE);
        assert_non_null(strstr(detail, "dlopen: "));
        /* a shared library that is no PKCS#11 module */
        assert_int_equal(kh_p11_open("libc.so.6", e->token, e->pin, &p, detail, sizeof(detail)),
                         -KH_E_PKCS11_MODULE);
        assert_non_null(strstr(detail, "C_GetFunctionList"));
        assert_null(p);
}

static void test_p11_rejects_missing_key_label(void **state) {
        struct env *e = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = open_ok(e);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;
        struct kh_secret *dk = NULL;

        kc_test_data_read("data-key.wrapped", &wrapped);
        assert_int_equal(kh_p11_key_find(p, "no-such-key"), -KH_E_PKCS11_KEY);
        assert_int_equal(kh_p11_key_find(p, "kc-rs"), -KH_E_PKCS11_KEY);
        assert_int_equal(kh_p11_rsa_oaep_decrypt(p, "no-such-key", KH_OAEP_SHA1, wrapped.data,
                                                 wrapped.len, &dk),
                         -KH_E_PKCS11_KEY);
        assert_null(dk);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_p11_lost_answers_are_keystore_unavailable),
                cmocka_unit_test(test_p11_session_gone_then_reconnect),
                cmocka_unit_test(test_p11_reconnect_with_wrong_pin_stays_down),
                cmocka_unit_test(test_p11_unwraps_data_key_oaep_sha1),
                cmocka_unit_test(test_p11_decrypt_rejects_what_the_key_does_not_open),
                cmocka_unit_test(test_p11_open_rejects_wrong_pin),
                cmocka_unit_test(test_p11_open_rejects_unknown_token),
                cmocka_unit_test(test_p11_open_rejects_bad_module),
                cmocka_unit_test(test_p11_rejects_missing_key_label),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
