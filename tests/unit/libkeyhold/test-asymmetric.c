/* RSA-2048 OAEP EncStrings: the SDK's type 3, 4 and 6 strings (V5), key pairs, the SPKI
 * check, and the refusals (wrong key, wrong type, keys of another size or kind). OpenSSL
 * is used directly as the independent side: it reads the PEM, derives the SPKI and
 * decrypts what the library encrypts. */
#include "keyhold/encstring.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "vectors.h"

static uint8_t *pkcs8, *spki, *user_key;
static size_t pkcs8_len, spki_len, user_key_len;

static int setup(void **state) {
        (void) state;
        pkcs8 = v5_pkcs8(&pkcs8_len);
        spki = ossl_b64(V5_SPKI, &spki_len);
        user_key = ossl_b64(V5_KEY, &user_key_len);
        return pkcs8 && spki && user_key && user_key_len == 64 ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        free(pkcs8);
        free(spki);
        free(user_key);
        return 0;
}

/* The DER SPKI of key, by OpenSSL. */
static uint8_t *der_spki(EVP_PKEY *key, size_t *len) {
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(key, &der);
        uint8_t *out;

        assert_true(n > 0);
        out = malloc((size_t) n);
        memcpy(out, der, (size_t) n);
        OPENSSL_free(der);
        *len = (size_t) n;
        return out;
}

/* The DER PKCS#8 of key, by OpenSSL. */
static uint8_t *der_pkcs8(EVP_PKEY *key, size_t *len) {
        PKCS8_PRIV_KEY_INFO *p8 = EVP_PKEY2PKCS8(key);
        unsigned char *der = NULL;
        int n = i2d_PKCS8_PRIV_KEY_INFO(p8, &der);
        uint8_t *out;

        assert_true(n > 0);
        out = malloc((size_t) n);
        memcpy(out, der, (size_t) n);
        OPENSSL_free(der);
        PKCS8_PRIV_KEY_INFO_free(p8);
        *len = (size_t) n;
        return out;
}

static void assert_decapsulates(const char *s, const uint8_t *want, size_t want_len) {
        uint8_t *pt = NULL;
        size_t len = 0;

        assert_int_equal(keyhold_rsa_decapsulate(pkcs8, pkcs8_len, s, strlen(s), &pt, &len),
                         KEYHOLD_OK);
        assert_int_equal(len, want_len);
        assert_memory_equal(pt, want, len);
        keyhold_wipe_free(pt, len);
}

static void assert_decapsulate_fails(const uint8_t *key, size_t key_len, const char *s, int want) {
        uint8_t *pt = NULL;
        size_t len = 0;

        assert_int_equal(keyhold_rsa_decapsulate(key, key_len, s, strlen(s), &pt, &len), want);
        assert_null(pt);
}

static void test_v5_spki_from_pem(void **state) {
        const unsigned char *p = pkcs8;
        EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, (long) pkcs8_len);
        uint8_t *derived;
        size_t len = 0;
        (void) state;

        assert_non_null(key);
        assert_int_equal(EVP_PKEY_get_bits(key), 2048);
        derived = der_spki(key, &len);
        assert_int_equal(len, spki_len);
        assert_memory_equal(derived, spki, len);
        assert_int_equal(keyhold_spki_check(spki, spki_len), KEYHOLD_OK);
        free(derived);
        EVP_PKEY_free(key);
}

static void test_v5_type3(void **state) {
        (void) state;
        assert_decapsulates(V5_ENC3, user_key, 64);
}

static void test_v5_type4(void **state) {
        (void) state;
        assert_decapsulates(V5_ENC4, user_key, 64);
}

static void test_v5_type5_and_6_ignore_mac(void **state) {
        (void) state;
        assert_decapsulates(V5_ENC6, user_key, 64);
        assert_decapsulates(V5_ENC5, user_key, 64);
        /* any MAC part, as long as it is well-formed */
        assert_decapsulates("6." V5_CT4 "|" V1_MAC, user_key, 64);
}

static void test_v5_wrong_oaep_hash(void **state) {
        (void) state;
        /* a SHA-256 ciphertext labelled SHA-1 and the other way round */
        assert_decapsulate_fails(pkcs8, pkcs8_len, "4." V5_CT3, KEYHOLD_E_DECRYPT);
        assert_decapsulate_fails(pkcs8, pkcs8_len, "3." V5_CT4, KEYHOLD_E_DECRYPT);
}

static void test_symmetric_type_refused(void **state) {
        (void) state;
        assert_decapsulate_fails(pkcs8, pkcs8_len, V1_ENC, KEYHOLD_E_TYPE);
        assert_decapsulate_fails(pkcs8, pkcs8_len, V2_ENC, KEYHOLD_E_TYPE);
        assert_decapsulate_fails(pkcs8, pkcs8_len, "7.AAAA", KEYHOLD_E_TYPE);
}

static void test_ciphertext_length_and_corruption(void **state) {
        char s[400];
        (void) state;

        /* 255 bytes (drop the last 4 characters: 3 bytes; re-pad) */
        assert_decapsulate_fails(pkcs8, pkcs8_len, "4.AAAA", KEYHOLD_E_DECRYPT);
        snprintf(s, sizeof(s), "%s", V5_ENC4);
        s[10] = s[10] == 'A' ? 'B' : 'A'; /* one character of the ciphertext */
        assert_decapsulate_fails(pkcs8, pkcs8_len, s, KEYHOLD_E_DECRYPT);
        assert_decapsulate_fails(pkcs8, pkcs8_len, "4.AAAA|", KEYHOLD_E_FORMAT);
}

static void test_keypair_shape(void **state) {
        uint8_t *pub = NULL, *priv = NULL;
        size_t pub_len = 0, priv_len = 0;
        const unsigned char *p;
        EVP_PKEY *a, *b;
        BIGNUM *e = NULL;
        (void) state;

        assert_int_equal(keyhold_rsa_keypair(&pub, &pub_len, &priv, &priv_len), KEYHOLD_OK);
        assert_int_equal(keyhold_spki_check(pub, pub_len), KEYHOLD_OK);
        p = pub;
        a = d2i_PUBKEY(NULL, &p, (long) pub_len);
        p = priv;
        b = d2i_AutoPrivateKey(NULL, &p, (long) priv_len);
        assert_non_null(a);
        assert_non_null(b);
        assert_int_equal(EVP_PKEY_get_bits(a), 2048);
        assert_int_equal(EVP_PKEY_get_bn_param(a, OSSL_PKEY_PARAM_RSA_E, &e), 1);
        assert_int_equal(BN_get_word(e), 65537);
        assert_int_equal(EVP_PKEY_eq(a, b), 1); /* the two halves belong together */
        BN_free(e);
        EVP_PKEY_free(a);
        EVP_PKEY_free(b);
        free(pub);
        keyhold_wipe_free(priv, priv_len);
}

/* What the library encapsulates, OpenSSL opens with OAEP SHA-1 / MGF1 SHA-1 / no label. */
static void test_encapsulate_is_type4_oaep_sha1(void **state) {
        char *s = NULL;
        struct keyhold_encstring *es = NULL;
        const uint8_t *ct = NULL;
        size_t ct_len = 0, out_len = 256;
        uint8_t out[256];
        const unsigned char *p = pkcs8;
        EVP_PKEY *key = d2i_AutoPrivateKey(NULL, &p, (long) pkcs8_len);
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
        (void) state;

        assert_int_equal(keyhold_rsa_encapsulate(spki, spki_len, user_key, 64, &s), KEYHOLD_OK);
        assert_int_equal(strlen(s), 2 + 344);
        assert_int_equal(strncmp(s, "4.", 2), 0);
        assert_int_equal(keyhold_encstring_parse(s, strlen(s), &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_part(es, 0, &ct, &ct_len), KEYHOLD_OK);
        assert_int_equal(ct_len, 256);

        assert_int_equal(EVP_PKEY_decrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha1()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha1()), 1);
        assert_int_equal(EVP_PKEY_decrypt(ctx, out, &out_len, ct, ct_len), 1);
        assert_int_equal(out_len, 64);
        assert_memory_equal(out, user_key, 64);

        assert_decapsulates(s, user_key, 64);
        EVP_PKEY_CTX_free(ctx);
        EVP_PKEY_free(key);
        keyhold_encstring_free(es);
        free(s);
}

static void test_wrong_private_key(void **state) {
        uint8_t *pub = NULL, *priv = NULL;
        size_t pub_len = 0, priv_len = 0;
        (void) state;

        assert_int_equal(keyhold_rsa_keypair(&pub, &pub_len, &priv, &priv_len), KEYHOLD_OK);
        assert_decapsulate_fails(priv, priv_len, V5_ENC4, KEYHOLD_E_DECRYPT);
        assert_decapsulate_fails(priv, priv_len, V5_ENC3, KEYHOLD_E_DECRYPT);
        free(pub);
        keyhold_wipe_free(priv, priv_len);
}

static void test_plaintext_limits(void **state) {
        uint8_t big[215] = { 0 };
        char *s = NULL;
        (void) state;

        assert_int_equal(keyhold_rsa_encapsulate(spki, spki_len, big, 215, &s), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_rsa_encapsulate(spki, spki_len, big, 0, &s), KEYHOLD_E_INVALID);
        assert_null(s);
        assert_int_equal(keyhold_rsa_encapsulate(spki, spki_len, big, 214, &s), KEYHOLD_OK);
        assert_decapsulates(s, big, 214);
        free(s);
}

static void test_other_keys_refused(void **state) {
        static const struct {
                const char *alg;
                size_t bits; /* 0: EC P-256 */
        } keys[] = { { "RSA", 3072 }, { "RSA", 1024 }, { "EC", 0 }, { "ED25519", 0 } };
        (void) state;

        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
                EVP_PKEY *k;
                uint8_t *pub, *priv;
                size_t pub_len = 0, priv_len = 0;
                char *s = NULL;

                if (strcmp(keys[i].alg, "RSA") == 0)
                        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", keys[i].bits);
                else if (strcmp(keys[i].alg, "EC") == 0)
                        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
                else
                        k = EVP_PKEY_Q_keygen(NULL, NULL, keys[i].alg);
                assert_non_null(k);
                pub = der_spki(k, &pub_len);
                priv = der_pkcs8(k, &priv_len);
                assert_int_equal(keyhold_spki_check(pub, pub_len), KEYHOLD_E_KEY);
                assert_int_equal(keyhold_rsa_encapsulate(pub, pub_len, user_key, 64, &s),
                                 KEYHOLD_E_KEY);
                assert_null(s);
                assert_decapsulate_fails(priv, priv_len, V5_ENC4, KEYHOLD_E_KEY);
                free(pub);
                free(priv);
                EVP_PKEY_free(k);
        }
}

static void test_spki_encoding_refused(void **state) {
        uint8_t *buf = malloc(spki_len + 1);
        (void) state;

        memcpy(buf, spki, spki_len);
        buf[spki_len] = 0;
        assert_int_equal(keyhold_spki_check(buf, spki_len + 1), KEYHOLD_E_FORMAT); /* trailing */
        assert_int_equal(keyhold_spki_check(buf, spki_len - 1), KEYHOLD_E_FORMAT); /* truncated */
        assert_int_equal(keyhold_spki_check(buf, 0), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_spki_check((const uint8_t *) "hello", 5), KEYHOLD_E_FORMAT);
        /* the private key is not a public key */
        assert_int_equal(keyhold_spki_check(pkcs8, pkcs8_len), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_spki_check(NULL, 10), KEYHOLD_E_INVALID);
        /* a PKCS#8 that is really an SPKI, a truncated PKCS#8 */
        assert_decapsulate_fails(spki, spki_len, V5_ENC4, KEYHOLD_E_FORMAT);
        assert_decapsulate_fails(pkcs8, pkcs8_len - 1, V5_ENC4, KEYHOLD_E_FORMAT);
        free(buf);
}

/* A BER spelling of the same key (a non-minimal length of the outer SEQUENCE) is refused:
 * a fingerprint is computed over the bytes, so only the DER bytes may stand for the key. */
static void test_spki_ber_refused(void **state) {
        uint8_t *ber = malloc(spki_len + 1);
        const unsigned char *p;
        EVP_PKEY *k;
        char *s = NULL;
        (void) state;

        assert_int_equal(spki[0], 0x30);
        assert_int_equal(spki[1], 0x82); /* two length bytes: write them as three */
        ber[0] = 0x30;
        ber[1] = 0x83;
        ber[2] = 0;
        memcpy(ber + 3, spki + 2, spki_len - 2);
        p = ber;
        k = d2i_PUBKEY(NULL, &p, (long) spki_len + 1); /* OpenSSL itself reads it */
        if (!k)
                skip();
        EVP_PKEY_free(k);
        assert_int_equal(keyhold_spki_check(ber, spki_len + 1), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_rsa_encapsulate(ber, spki_len + 1, user_key, 64, &s),
                         KEYHOLD_E_FORMAT);
        free(ber);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_v5_spki_from_pem),
                cmocka_unit_test(test_v5_type3),
                cmocka_unit_test(test_v5_type4),
                cmocka_unit_test(test_v5_type5_and_6_ignore_mac),
                cmocka_unit_test(test_v5_wrong_oaep_hash),
                cmocka_unit_test(test_symmetric_type_refused),
                cmocka_unit_test(test_ciphertext_length_and_corruption),
                cmocka_unit_test(test_keypair_shape),
                cmocka_unit_test(test_encapsulate_is_type4_oaep_sha1),
                cmocka_unit_test(test_wrong_private_key),
                cmocka_unit_test(test_plaintext_limits),
                cmocka_unit_test(test_other_keys_refused),
                cmocka_unit_test(test_spki_encoding_refused),
                cmocka_unit_test(test_spki_ber_refused),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
