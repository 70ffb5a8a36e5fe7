/* The three unwrappers of Key Connector's data key, end to end with the spec's example:
 * data-key.wrapped (made by openssl pkeyutl, OAEP-SHA-1) unwraps to the data key 00 .. 1f,
 * which opens the spec's stored Key to 40 .. 5f. Runs through with-softhsm.sh, which puts
 * the same RSA key on a SoftHSM2 token. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "crypto/encoding.h"
#include "crypto/kc-blob.h"
#include "crypto/pkcs12.h"
#include "crypto/rsa.h"
#include "import/kc-unwrap.h"

#include "../kc-test-data.h"

static const char spec_key_b64[] =
        "plk+bgGORPgqLM2YSzeOkSD9C0PG4hQ7xFd83SP2K14zwby0+3QQrdPoXhVroI5UoKGio6Slpqeoqaqr";

static struct kh_secret *secret_of(const char *s) {
        struct kh_secret *p = NULL;

        assert_int_equal(kh_secret_new_from(s, strlen(s), &p), 0);
        return p;
}

/* dk is the data key 00 .. 1f: checked byte by byte and by opening the spec's Key. */
static void assert_spec_data_key(const struct kh_secret *dk) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf blob;
        uint8_t want[32];

        kc_test_data_key(want);
        assert_int_equal(kh_secret_len(dk), 32);
        assert_memory_equal(kh_secret_bytes(dk), want, 32);

        kh_buf_init(&blob, 1024, false);
        assert_int_equal(kh_base64_decode(spec_key_b64, strlen(spec_key_b64), &blob), 0);
        assert_int_equal(kh_kc_blob_open(dk, blob.data, blob.len, &pt), 0);
        for (unsigned i = 0; i < 32; i++)
                want[i] = (uint8_t) (0x40 + i);
        assert_int_equal(kh_secret_len(pt), 32);
        assert_memory_equal(kh_secret_bytes(pt), want, 32);
}

static void unwrap_fixture_ok(struct kh_kc_unwrapper *u) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;

        kc_test_data_read("data-key.wrapped", &wrapped);
        assert_int_equal(kh_kc_unwrap(u, wrapped.data, wrapped.len, &dk), 0);
        assert_spec_data_key(dk);
}

static struct kh_kc_unwrapper *pfx_unwrapper(const char *file) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pass = secret_of("kc-test-pass");
        KH_CLEANUP(kh_buf_freep) struct kh_buf pfx;
        struct kh_kc_unwrapper *u = NULL;

        kc_test_data_read(file, &pfx);
        assert_int_equal(kh_kc_unwrapper_pfx(pfx.data, pfx.len, pass, &u), 0);
        return u;
}

static void test_unwrap_pfx_modern_and_legacy(void **state) {
        (void) state;
        KH_CLEANUP(kh_kc_unwrapper_freep)
        struct kh_kc_unwrapper *modern = pfx_unwrapper("kc-modern.p12");
        KH_CLEANUP(kh_kc_unwrapper_freep)
        struct kh_kc_unwrapper *legacy = pfx_unwrapper("kc-legacy.p12");

        unwrap_fixture_ok(modern);
        unwrap_fixture_ok(legacy);
}

static void test_unwrap_pfx_wrong_password_and_not_a_pfx(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pass = secret_of("kc-test-pas");
        KH_CLEANUP(kh_buf_freep) struct kh_buf pfx, pem;
        struct kh_kc_unwrapper *u = NULL;

        kc_test_data_read("kc-legacy.p12", &pfx);
        kc_test_data_read("kc-rsa.key.pem", &pem);
        assert_int_equal(kh_kc_unwrapper_pfx(pfx.data, pfx.len, pass, &u), -KH_E_PFX_PASSWORD);
        assert_int_equal(kh_kc_unwrapper_pfx(pem.data, pem.len, pass, &u), -KH_E_PFX_INVALID);
        assert_null(u);
}

/* What does not come out as a 32-byte data key under this RSA key. */
static void assert_unwrap_rejects_others(struct kh_kc_unwrapper *u) {
        KH_CLEANUP(kh_secret_freep)
        struct kh_secret *dk = NULL,
                         *pass = secret_of("kc-test-pass"), *k16 = secret_of("sixteen bytes!!!");
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped, pfx, ct16;
        unsigned char *spki = NULL;
        int spki_len;

        kc_test_data_read("data-key.wrapped", &wrapped);
        wrapped.data[7] ^= 0x80;
        assert_int_equal(kh_kc_unwrap(u, wrapped.data, wrapped.len, &dk), -KH_E_KC_UNWRAP);
        wrapped.data[7] ^= 0x80;
        assert_int_equal(kh_kc_unwrap(u, wrapped.data, wrapped.len - 1, &dk), -KH_E_KC_UNWRAP);
        assert_int_equal(kh_kc_unwrap(u, wrapped.data, 0, &dk), -KH_E_KC_UNWRAP);

        /* a well-wrapped 16-byte value is no data key */
        kc_test_data_read("kc-modern.p12", &pfx);
        assert_int_equal(kh_pkcs12_rsa_key(pfx.data, pfx.len, pass, &pkey), 0);
        spki_len = i2d_PUBKEY(pkey, &spki);
        assert_true(spki_len > 0);
        kh_buf_init(&ct16, 4096, false);
        assert_int_equal(
                kh_rsa_oaep_encrypt_spki(spki, (size_t) spki_len, KH_OAEP_SHA1, k16, &ct16), 0);
        OPENSSL_free(spki);
        assert_int_equal(kh_kc_unwrap(u, ct16.data, ct16.len, &dk), -KH_E_KC_UNWRAP);
        assert_null(dk);
}

static void test_unwrap_pfx_rejects_others(void **state) {
        (void) state;
        KH_CLEANUP(kh_kc_unwrapper_freep)
        struct kh_kc_unwrapper *u = pfx_unwrapper("kc-modern.p12");

        assert_unwrap_rejects_others(u);
}

static void test_unwrap_data_key_file(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep)
        struct kh_secret *b64 = secret_of("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"),
                         *raw = NULL,
                         *bad = secret_of("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n\n");
        KH_CLEANUP(kh_kc_unwrapper_freep) struct kh_kc_unwrapper *u1 = NULL, *u2 = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk1 = NULL, *dk2 = NULL;
        struct kh_kc_unwrapper *u = NULL;
        static const uint8_t anything[3] = {1, 2, 3};
        uint8_t dk[32];

        kc_test_data_key(dk);
        assert_int_equal(kh_secret_new_from(dk, 32, &raw), 0);
        assert_int_equal(kh_kc_unwrapper_data_key(b64, &u1), 0);
        assert_int_equal(kh_kc_unwrapper_data_key(raw, &u2), 0);
        assert_int_equal(kh_kc_unwrapper_data_key(bad, &u), -KH_E_KC_DATA_KEY_FILE);
        assert_null(u);

        unwrap_fixture_ok(u1);
        assert_int_equal(kh_kc_unwrap(u2, anything, sizeof(anything), &dk1), 0);
        assert_spec_data_key(dk1);
        assert_int_equal(kh_kc_unwrap(u2, anything, sizeof(anything), &dk2), 0);
        assert_true(dk1 != dk2); /* a new copy each time */
        assert_spec_data_key(dk2);
}

struct p11_env {
        const char *module, *token, *key;
        struct kh_secret *pin;
};

static void p11_env(struct p11_env *e) {
        e->module = getenv("KH_P11_MODULE");
        e->token = getenv("KH_P11_TOKEN");
        e->key = getenv("KH_P11_KEY");
        if (!e->module || !e->token || !e->key || !getenv("KH_P11_PIN"))
                fail_msg("KH_P11_* are not set: run this test through with-softhsm.sh");
        e->pin = secret_of(getenv("KH_P11_PIN"));
}

static void test_unwrap_pkcs11(void **state) {
        (void) state;
        KH_CLEANUP(kh_kc_unwrapper_freep) struct kh_kc_unwrapper *u = NULL;
        struct p11_env e;
        char detail[256];

        p11_env(&e);
        assert_int_equal(
                kh_kc_unwrapper_pkcs11(e.module, e.token, e.pin, e.key, &u, detail, sizeof(detail)),
                0);
        unwrap_fixture_ok(u);
        assert_unwrap_rejects_others(u);
        unwrap_fixture_ok(u); /* still usable */
        kh_secret_free(e.pin);
}

static void test_unwrap_pkcs11_failures(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *wrong = secret_of("0000");
        struct kh_kc_unwrapper *u = NULL;
        struct p11_env e;
        char detail[256];

        p11_env(&e);
        assert_int_equal(
                kh_kc_unwrapper_pkcs11(e.module, e.token, wrong, e.key, &u, detail, sizeof(detail)),
                -KH_E_PKCS11_PIN);
        assert_string_equal(detail, "C_Login: CKR_PIN_INCORRECT");
        assert_int_equal(kh_kc_unwrapper_pkcs11(e.module, "other-token", e.pin, e.key, &u, detail,
                                                sizeof(detail)),
                         -KH_E_PKCS11_TOKEN);
        assert_int_equal(kh_kc_unwrapper_pkcs11(e.module, e.token, e.pin, "no-such-key", &u, detail,
                                                sizeof(detail)),
                         -KH_E_PKCS11_KEY);
        assert_non_null(strstr(detail, "no RSA private key"));
        assert_null(u);
        kh_secret_free(e.pin);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_unwrap_pfx_modern_and_legacy),
                cmocka_unit_test(test_unwrap_pfx_wrong_password_and_not_a_pfx),
                cmocka_unit_test(test_unwrap_pfx_rejects_others),
                cmocka_unit_test(test_unwrap_data_key_file),
                cmocka_unit_test(test_unwrap_pkcs11),
                cmocka_unit_test(test_unwrap_pkcs11_failures),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
