/* PFX files as Key Connector's operators have them (tests/unit/crypto/data/README.md):
 * made by openssl(1) with OpenSSL 3's defaults and with -legacy (OpenSSL 1.1's RC2/3DES);
 * the key found must be the very key the files were made from. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/errors.h"
#include "crypto/pkcs12.h"
#include "crypto/rsa.h"

#include "../kc-test-data.h"

static struct kh_secret *pass(const char *s) {
        struct kh_secret *p = NULL;

        assert_int_equal(kh_secret_new_from(s, strlen(s), &p), 0);
        return p;
}

/* The fixture's key, read by OpenSSL's PEM reader: the reference. */
static EVP_PKEY *reference_key(void) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf pem;
        EVP_PKEY *k;
        BIO *bio;

        kc_test_data_read("kc-rsa.key.pem", &pem);
        bio = BIO_new_mem_buf(pem.data, (int) pem.len);
        assert_non_null(bio);
        k = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
        BIO_free(bio);
        assert_non_null(k);
        return k;
}

static int open_file(const char *name, const struct kh_secret *password, EVP_PKEY **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf der;

        kc_test_data_read(name, &der);
        return kh_pkcs12_rsa_key(der.data, der.len, password, ret);
}

static void assert_opens_to_reference(const char *name, const struct kh_secret *password) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *ref = reference_key(), *k = NULL;

        assert_int_equal(open_file(name, password, &k), 0);
        assert_non_null(k);
        assert_true(EVP_PKEY_is_a(k, "RSA"));
        assert_int_equal(EVP_PKEY_eq(k, ref), 1);
}

static void test_pkcs12_opens_openssl3_default(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *p = pass("kc-test-pass");

        assert_opens_to_reference("kc-modern.p12", p);
}

static void test_pkcs12_opens_legacy_rc2_3des(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *p = pass("kc-test-pass");

        assert_opens_to_reference("kc-legacy.p12", p);
}

static void test_pkcs12_opens_without_password(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *p = pass("kc-test-pass");
        EVP_PKEY *k = NULL;

        assert_opens_to_reference("kc-nopass.p12", NULL);
        assert_int_equal(open_file("kc-nopass.p12", p, &k), -KH_E_PFX_PASSWORD);
        assert_null(k);
}

static void test_pkcs12_rejects_wrong_password(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep)
        struct kh_secret *wrong = pass("kc-test-pasS"),
                         *prefix = pass("kc-test-pas");
        static const char nul[] = "kc-test-pass\0x";
        KH_CLEANUP(kh_secret_freep) struct kh_secret *with_nul = NULL;
        EVP_PKEY *k = NULL;

        assert_int_equal(kh_secret_new_from(nul, sizeof(nul) - 1, &with_nul), 0);
        assert_int_equal(open_file("kc-modern.p12", wrong, &k), -KH_E_PFX_PASSWORD);
        assert_int_equal(open_file("kc-legacy.p12", wrong, &k), -KH_E_PFX_PASSWORD);
        assert_int_equal(open_file("kc-modern.p12", prefix, &k), -KH_E_PFX_PASSWORD);
        assert_int_equal(open_file("kc-modern.p12", NULL, &k), -KH_E_PFX_PASSWORD);
        assert_int_equal(open_file("kc-legacy.p12", NULL, &k), -KH_E_PFX_PASSWORD);
        assert_int_equal(open_file("kc-modern.p12", with_nul, &k), -KH_E_PFX_PASSWORD);
        assert_null(k);
}

static void test_pkcs12_rejects_not_a_pfx(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *p = pass("kc-test-pass");
        KH_CLEANUP(kh_buf_freep) struct kh_buf der;
        static const uint8_t junk[] = {0x30, 0x03, 0x02, 0x01, 0x03};
        EVP_PKEY *k = NULL;

        /* a PEM private key is no PFX */
        assert_int_equal(open_file("kc-rsa.key.pem", p, &k), -KH_E_PFX_INVALID);
        assert_int_equal(kh_pkcs12_rsa_key(junk, sizeof(junk), p, &k), -KH_E_PFX_INVALID);
        assert_int_equal(kh_pkcs12_rsa_key(junk, 0, p, &k), -KH_E_PFX_INVALID);

        kc_test_data_read("kc-modern.p12", &der);
        assert_int_equal(kh_pkcs12_rsa_key(der.data, der.len - 1, p, &k), -KH_E_PFX_INVALID);
        assert_int_equal(kh_buf_append(&der, "", 1), 0); /* a trailing byte */
        assert_int_equal(kh_pkcs12_rsa_key(der.data, der.len, p, &k), -KH_E_PFX_INVALID);
        assert_int_equal(kh_pkcs12_rsa_key(NULL, 10, p, &k), -EINVAL);
        assert_null(k);
}

static void test_pkcs12_rejects_pfx_without_key(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *p = pass("kc-test-pass");
        EVP_PKEY *k = NULL;

        assert_int_equal(open_file("kc-nokey.p12", p, &k), -KH_E_PFX_INVALID);
        assert_null(k);
}

/* The key found unwraps what openssl pkeyutl wrapped (OAEP-SHA-1) to the data key. */
static void test_pkcs12_legacy_key_unwraps_data_key(void **state) {
        (void) state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *p = pass("kc-test-pass"), *dk = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *k = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;
        uint8_t want[32];

        kc_test_data_key(want);
        kc_test_data_read("data-key.wrapped", &wrapped);
        assert_int_equal(open_file("kc-legacy.p12", p, &k), 0);
        assert_int_equal(kh_rsa_oaep_decrypt_md(k, KH_OAEP_SHA1, wrapped.data, wrapped.len, &dk),
                         0);
        assert_int_equal(kh_secret_len(dk), 32);
        assert_memory_equal(kh_secret_bytes(dk), want, 32);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_pkcs12_opens_openssl3_default),
                cmocka_unit_test(test_pkcs12_opens_legacy_rc2_3des),
                cmocka_unit_test(test_pkcs12_opens_without_password),
                cmocka_unit_test(test_pkcs12_rejects_wrong_password),
                cmocka_unit_test(test_pkcs12_rejects_not_a_pfx),
                cmocka_unit_test(test_pkcs12_rejects_pfx_without_key),
                cmocka_unit_test(test_pkcs12_legacy_key_unwraps_data_key),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
