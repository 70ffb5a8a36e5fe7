#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "crypto/random.h"
#include "crypto/rsa.h"

struct fixture {
        EVP_PKEY *key, *other;
        struct kh_secret *dek;
        struct kh_buf ct;
};

static int setup(void **state) {
        static struct fixture f;

        /* 2048 bits keeps the suite quick; the code path is the same for larger keys. */
        if (kh_rsa_generate(2048, &f.key) < 0 || kh_rsa_generate(2048, &f.other) < 0 ||
            kh_random_secret(32, &f.dek) < 0)
                return -1;
        kh_buf_init(&f.ct, 4096, false);
        if (kh_rsa_oaep_encrypt(f.key, f.dek, &f.ct) < 0)
                return -1;
        *state = &f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        EVP_PKEY_free(f->key);
        EVP_PKEY_free(f->other);
        f->dek = kh_secret_free(f->dek);
        kh_buf_free(&f->ct);
        return 0;
}

static void test_rsa_generate_shape(void **state) {
        struct fixture *f = *state;
        BIGNUM *e = NULL;

        assert_true(EVP_PKEY_is_a(f->key, "RSA"));
        assert_int_equal(EVP_PKEY_get_bits(f->key), 2048);
        assert_int_equal(EVP_PKEY_get_bn_param(f->key, OSSL_PKEY_PARAM_RSA_E, &e), 1);
        assert_int_equal(BN_get_word(e), 65537);
        BN_free(e);
}

static void test_rsa_generate_rejects_bad_sizes(void **state) {
        const unsigned bad[] = { 0, 1024, 2047, 2560, 3000, 9216 };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(bad); i++) {
                EVP_PKEY *k = NULL;
                assert_int_equal(kh_rsa_generate(bad[i], &k), -EINVAL);
                assert_null(k);
        }
}

static void test_rsa_wrap_unwrap_round_trip(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;

        assert_int_equal(f->ct.len, 256);
        assert_int_equal(kh_rsa_oaep_decrypt(f->key, f->ct.data, f->ct.len, &pt), 0);
        assert_int_equal(kh_secret_len(pt), 32);
        assert_true(kh_secret_equal(pt, f->dek));
}

/* Decrypts ct with OpenSSL configured through the ctrl API, independently of rsa.c. */
static int independent_decrypt(EVP_PKEY *key, const EVP_MD *oaep_md, const EVP_MD *mgf1_md,
                               const uint8_t *ct, size_t ct_len, uint8_t *out, size_t *out_len) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
        int ok;

        assert_non_null(ctx);
        ok = EVP_PKEY_decrypt_init(ctx) == 1 &&
             EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) == 1 &&
             EVP_PKEY_CTX_set_rsa_oaep_md(ctx, oaep_md) == 1 &&
             EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1_md) == 1 &&
             EVP_PKEY_decrypt(ctx, out, out_len, ct, ct_len) == 1;
        EVP_PKEY_CTX_free(ctx);
        return ok;
}

static void test_rsa_ciphertext_is_oaep_sha256(void **state) {
        struct fixture *f = *state;
        uint8_t out[256];
        size_t out_len = sizeof(out);

        assert_true(independent_decrypt(f->key, EVP_sha256(), EVP_sha256(), f->ct.data, f->ct.len,
                                        out, &out_len));
        assert_int_equal(out_len, 32);
        assert_memory_equal(out, kh_secret_bytes(f->dek), 32);

        /* and not OAEP with SHA-1 anywhere (OpenSSL's default) */
        out_len = sizeof(out);
        assert_false(independent_decrypt(f->key, EVP_sha1(), EVP_sha1(), f->ct.data, f->ct.len,
                                         out, &out_len));
        out_len = sizeof(out);
        assert_false(independent_decrypt(f->key, EVP_sha256(), EVP_sha1(), f->ct.data, f->ct.len,
                                         out, &out_len));
        out_len = sizeof(out);
        assert_false(independent_decrypt(f->key, EVP_sha1(), EVP_sha256(), f->ct.data, f->ct.len,
                                         out, &out_len));
}

/* The other direction: a ciphertext made independently, from the public key alone. */
static void test_rsa_decrypts_independent_ciphertext(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
        static const uint8_t msg[32] = "an independently wrapped 32B key";
        uint8_t der[1024], ct[256], *p = der;
        const uint8_t *q = der;
        size_t ct_len = sizeof(ct);
        int der_len = i2d_PUBKEY(f->key, NULL);
        EVP_PKEY *pub;
        EVP_PKEY_CTX *ctx;

        assert_true(der_len > 0 && der_len <= (int) sizeof(der));
        assert_int_equal(i2d_PUBKEY(f->key, &p), der_len);
        pub = d2i_PUBKEY(NULL, &q, der_len);
        assert_non_null(pub);
        ctx = EVP_PKEY_CTX_new(pub, NULL);
        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_encrypt_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_oaep_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()), 1);
        assert_int_equal(EVP_PKEY_encrypt(ctx, ct, &ct_len, msg, sizeof(msg)), 1);
        EVP_PKEY_CTX_free(ctx);

        assert_int_equal(kh_rsa_oaep_decrypt(f->key, ct, ct_len, &pt), 0);
        assert_int_equal(kh_secret_len(pt), 32);
        assert_memory_equal(kh_secret_bytes(pt), msg, 32);
        pt = kh_secret_free(pt);

        /* and encrypting to the public-only key works too */
        {
                KH_CLEANUP(kh_buf_freep) struct kh_buf out;

                kh_buf_init(&out, 4096, false);
                assert_int_equal(kh_rsa_oaep_encrypt(pub, f->dek, &out), 0);
                assert_int_equal(kh_rsa_oaep_decrypt(f->key, out.data, out.len, &pt), 0);
                assert_true(kh_secret_equal(pt, f->dek));
        }
        EVP_PKEY_free(pub);
}

static void test_rsa_tampered_ciphertext_fails(void **state) {
        struct fixture *f = *state;
        uint8_t ct[256];

        for (size_t i = 0; i < sizeof(ct); i += 17) {
                struct kh_secret *pt = NULL;

                memcpy(ct, f->ct.data, sizeof(ct));
                ct[i] ^= 0x01;
                assert_int_equal(kh_rsa_oaep_decrypt(f->key, ct, sizeof(ct), &pt), -KH_E_INTEGRITY);
                assert_null(pt);
        }
}

static void test_rsa_wrong_key_fails(void **state) {
        struct fixture *f = *state;
        struct kh_secret *pt = NULL;

        assert_int_equal(kh_rsa_oaep_decrypt(f->other, f->ct.data, f->ct.len, &pt),
                         -KH_E_INTEGRITY);
        assert_null(pt);
}

static void test_rsa_wrong_length_fails(void **state) {
        struct fixture *f = *state;
        struct kh_secret *pt = NULL;

        assert_int_equal(kh_rsa_oaep_decrypt(f->key, f->ct.data, f->ct.len - 1, &pt),
                         -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_oaep_decrypt(f->key, f->ct.data, 0, &pt), -KH_E_INTEGRITY);
        assert_null(pt);
}

static void test_rsa_encrypt_fresh_each_time(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_buf_freep) struct kh_buf again;

        kh_buf_init(&again, 4096, false);
        assert_int_equal(kh_rsa_oaep_encrypt(f->key, f->dek, &again), 0);
        assert_int_equal(again.len, f->ct.len);
        assert_memory_not_equal(again.data, f->ct.data, again.len); /* OAEP is randomised */
}

static void test_rsa_rejects_too_long_plaintext(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *big = NULL, *max = NULL, *pt = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf out;

        /* OAEP-SHA-256 with a 256-byte modulus carries at most 256 - 2*32 - 2 = 190 bytes */
        kh_buf_init(&out, 4096, false);
        assert_int_equal(kh_random_secret(191, &big), 0);
        assert_int_equal(kh_rsa_oaep_encrypt(f->key, big, &out), -EIO);
        assert_int_equal(out.len, 0);
        assert_int_equal(kh_random_secret(190, &max), 0);
        assert_int_equal(kh_rsa_oaep_encrypt(f->key, max, &out), 0);
        assert_int_equal(kh_rsa_oaep_decrypt(f->key, out.data, out.len, &pt), 0);
        assert_true(kh_secret_equal(pt, max));
}

/* An RSA signature over digest made with OpenSSL directly: padding, MGF1 hash and salt
 * length as given, so the verifier is checked against signatures it did not make. */
static size_t independent_sign(EVP_PKEY *key, int padding, const EVP_MD *mgf1, int salt_len,
                               const uint8_t digest[static 32], uint8_t sig[static 256]) {
        EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
        size_t len = 256;

        assert_non_null(ctx);
        assert_int_equal(EVP_PKEY_sign_init(ctx), 1);
        assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(ctx, padding), 1);
        assert_int_equal(EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()), 1);
        if (padding == RSA_PKCS1_PSS_PADDING) {
                assert_int_equal(EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, mgf1), 1);
                assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, salt_len), 1);
        }
        assert_int_equal(EVP_PKEY_sign(ctx, sig, &len, digest, 32), 1);
        EVP_PKEY_CTX_free(ctx);
        return len;
}

static void test_rsa_pss_verify_accepts_pss_sha256_salt_32(void **state) {
        struct fixture *f = *state;
        uint8_t digest[32], sig[256];
        size_t len;

        assert_int_equal(kh_random_bytes(digest, sizeof(digest)), 0);
        len = independent_sign(f->key, RSA_PKCS1_PSS_PADDING, EVP_sha256(), 32, digest, sig);
        assert_int_equal(len, 256);
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len), 0);
}

/* Only the parameters kh_keystore_sign() uses verify: no salt-length auto-detection, no
 * SHA-1 MGF1, no PKCS#1 v1.5. */
static void test_rsa_pss_verify_refuses_other_parameters(void **state) {
        struct fixture *f = *state;
        const struct {
                int padding;
                const EVP_MD *mgf1;
                int salt_len;
        } other[] = {
                { RSA_PKCS1_PSS_PADDING, EVP_sha256(), 0 },
                { RSA_PKCS1_PSS_PADDING, EVP_sha256(), 64 },
                { RSA_PKCS1_PSS_PADDING, EVP_sha1(), 32 },
                { RSA_PKCS1_PADDING, NULL, 0 },
        };
        uint8_t digest[32], sig[256];

        assert_int_equal(kh_random_bytes(digest, sizeof(digest)), 0);
        for (size_t i = 0; i < KH_ELEMENTSOF(other); i++) {
                size_t len = independent_sign(f->key, other[i].padding, other[i].mgf1,
                                              other[i].salt_len, digest, sig);
                assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len), -KH_E_INTEGRITY);
        }
}

static void test_rsa_pss_verify_refuses_changes(void **state) {
        struct fixture *f = *state;
        uint8_t digest[32], sig[257] = { 0 };
        EVP_PKEY *ec = EVP_EC_gen("P-256");
        size_t len;

        assert_non_null(ec);
        assert_int_equal(kh_random_bytes(digest, sizeof(digest)), 0);
        len = independent_sign(f->key, RSA_PKCS1_PSS_PADDING, EVP_sha256(), 32, digest, sig);

        digest[7] ^= 0x01; /* another digest */
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len), -KH_E_INTEGRITY);
        digest[7] ^= 0x01;
        sig[100] ^= 0x80; /* a flipped signature bit */
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len), -KH_E_INTEGRITY);
        sig[100] ^= 0x80;
        assert_int_equal(kh_rsa_pss_verify(f->other, digest, sig, len), -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len - 1), -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len + 1), -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, 0), -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, NULL, len), -KH_E_INTEGRITY);
        assert_int_equal(kh_rsa_pss_verify(ec, digest, sig, len), -EINVAL);
        /* unchanged, it still verifies: the refusals above came from the changes */
        assert_int_equal(kh_rsa_pss_verify(f->key, digest, sig, len), 0);
        EVP_PKEY_free(ec);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rsa_generate_shape),
                cmocka_unit_test(test_rsa_generate_rejects_bad_sizes),
                cmocka_unit_test(test_rsa_wrap_unwrap_round_trip),
                cmocka_unit_test(test_rsa_ciphertext_is_oaep_sha256),
                cmocka_unit_test(test_rsa_decrypts_independent_ciphertext),
                cmocka_unit_test(test_rsa_tampered_ciphertext_fails),
                cmocka_unit_test(test_rsa_wrong_key_fails),
                cmocka_unit_test(test_rsa_wrong_length_fails),
                cmocka_unit_test(test_rsa_encrypt_fresh_each_time),
                cmocka_unit_test(test_rsa_rejects_too_long_plaintext),
                cmocka_unit_test(test_rsa_pss_verify_accepts_pss_sha256_salt_32),
                cmocka_unit_test(test_rsa_pss_verify_refuses_other_parameters),
                cmocka_unit_test(test_rsa_pss_verify_refuses_changes),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
