#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "common/errors.h"
#include "crypto/aead.h"
#include "crypto/random.h"

#define AAD "tenant=acme;user=0f8fad5b-d9cb-469f-a165-70867728950e"
#define PT "thirty-two bytes of a member key"

static size_t unhex(const char *hex, uint8_t *out) {
        size_t n = strlen(hex) / 2;

        for (size_t i = 0; i < n; i++) {
                unsigned v;
                assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
                out[i] = (uint8_t) v;
        }
        return n;
}

struct fixture {
        struct kh_secret *key, *other_key, *pt;
        struct kh_buf blob;
};

static int setup(void **state) {
        static struct fixture f;

        if (kh_random_secret(KH_AEAD_KEY_LEN, &f.key) < 0 ||
            kh_random_secret(KH_AEAD_KEY_LEN, &f.other_key) < 0 ||
            kh_secret_new_from(PT, strlen(PT), &f.pt) < 0)
                return -1;
        kh_buf_init(&f.blob, 4096, false);
        if (kh_aead_seal(f.key, (const uint8_t *) AAD, strlen(AAD), f.pt, &f.blob) < 0)
                return -1;
        *state = &f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        f->key = kh_secret_free(f->key);
        f->other_key = kh_secret_free(f->other_key);
        f->pt = kh_secret_free(f->pt);
        kh_buf_free(&f->blob);
        return 0;
}

static int unseal(const struct kh_secret *key, const char *aad, const uint8_t *blob, size_t len,
                  struct kh_secret **ret) {
        return kh_aead_unseal(key, (const uint8_t *) aad, aad ? strlen(aad) : 0, blob, len, ret);
}

static void test_aead_round_trip(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;

        assert_int_equal(f->blob.len, strlen(PT) + KH_AEAD_OVERHEAD);
        assert_int_equal(unseal(f->key, AAD, f->blob.data, f->blob.len, &pt), 0);
        assert_int_equal(kh_secret_len(pt), strlen(PT));
        assert_memory_equal(kh_secret_bytes(pt), PT, strlen(PT));
}

static void test_aead_seal_uses_fresh_nonces(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_buf_freep) struct kh_buf again;

        kh_buf_init(&again, 4096, false);
        assert_int_equal(kh_aead_seal(f->key, (const uint8_t *) AAD, strlen(AAD), f->pt, &again), 0);
        assert_int_equal(again.len, f->blob.len);
        assert_memory_not_equal(again.data, f->blob.data, KH_AEAD_NONCE_LEN);
        assert_memory_not_equal(again.data + KH_AEAD_NONCE_LEN, f->blob.data + KH_AEAD_NONCE_LEN,
                                again.len - KH_AEAD_NONCE_LEN);
}

/* The blob layout, checked with OpenSSL directly: nonce || ciphertext || tag. */
static void test_aead_blob_layout_opens_with_plain_evp(void **state) {
        struct fixture *f = *state;
        const uint8_t *b = f->blob.data;
        size_t n = f->blob.len - KH_AEAD_OVERHEAD;
        uint8_t out[64], tag[KH_AEAD_TAG_LEN];
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int len;

        memcpy(tag, b + KH_AEAD_NONCE_LEN + n, sizeof(tag));
        assert_non_null(ctx);
        assert_int_equal(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, kh_secret_bytes(f->key),
                                            b), 1);
        assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &len, (const uint8_t *) AAD,
                                           (int) strlen(AAD)), 1);
        assert_int_equal(EVP_DecryptUpdate(ctx, out, &len, b + KH_AEAD_NONCE_LEN, (int) n), 1);
        assert_int_equal(len, (int) n);
        assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, sizeof(tag), tag), 1);
        assert_int_equal(EVP_DecryptFinal_ex(ctx, out + n, &len), 1);
        EVP_CIPHER_CTX_free(ctx);
        assert_memory_equal(out, PT, n);
}

static void test_aead_every_bit_flip_fails(void **state) {
        struct fixture *f = *state;
        uint8_t blob[256];

        assert_true(f->blob.len <= sizeof(blob));
        for (size_t i = 0; i < f->blob.len * 8; i++) {
                struct kh_secret *pt = NULL;

                memcpy(blob, f->blob.data, f->blob.len);
                blob[i / 8] ^= (uint8_t) (1u << (i % 8));
                assert_int_equal(unseal(f->key, AAD, blob, f->blob.len, &pt), -KH_E_INTEGRITY);
                assert_null(pt);
        }
        /* the copy itself still opens, so the failures above are the flips */
        {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
                memcpy(blob, f->blob.data, f->blob.len);
                assert_int_equal(unseal(f->key, AAD, blob, f->blob.len, &pt), 0);
        }
}

static void test_aead_wrong_aad_fails(void **state) {
        struct fixture *f = *state;
        struct kh_secret *pt = NULL;

        assert_int_equal(unseal(f->key, AAD "x", f->blob.data, f->blob.len, &pt),
                         -KH_E_INTEGRITY);
        assert_int_equal(unseal(f->key, "tenant=acme;user=0f8fad5b-d9cb-469f-a165-70867728950f",
                                f->blob.data, f->blob.len, &pt), -KH_E_INTEGRITY);
        assert_int_equal(unseal(f->key, NULL, f->blob.data, f->blob.len, &pt), -KH_E_INTEGRITY);
        assert_null(pt);
}

static void test_aead_wrong_key_fails(void **state) {
        struct fixture *f = *state;
        struct kh_secret *pt = NULL;

        assert_int_equal(unseal(f->other_key, AAD, f->blob.data, f->blob.len, &pt),
                         -KH_E_INTEGRITY);
        assert_null(pt);
}

static void test_aead_truncated_fails(void **state) {
        struct fixture *f = *state;

        for (size_t len = 0; len < f->blob.len; len++) {
                struct kh_secret *pt = NULL;

                assert_int_equal(unseal(f->key, AAD, f->blob.data, len, &pt), -KH_E_INTEGRITY);
                assert_null(pt);
        }
}

static void test_aead_key_must_be_32_bytes(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *short_key = NULL, *long_key = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf out;
        struct kh_secret *pt = NULL;

        kh_buf_init(&out, 4096, false);
        assert_int_equal(kh_random_secret(16, &short_key), 0);
        assert_int_equal(kh_random_secret(33, &long_key), 0);
        assert_int_equal(kh_aead_seal(short_key, NULL, 0, f->pt, &out), -EINVAL);
        assert_int_equal(kh_aead_seal(long_key, NULL, 0, f->pt, &out), -EINVAL);
        assert_int_equal(out.len, 0);
        assert_int_equal(unseal(short_key, AAD, f->blob.data, f->blob.len, &pt), -EINVAL);
        assert_null(pt);
}

static void test_aead_seal_respects_buffer_maximum(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_buf_freep) struct kh_buf out;

        kh_buf_init(&out, strlen(PT) + KH_AEAD_OVERHEAD - 1, false);
        assert_int_equal(kh_aead_seal(f->key, NULL, 0, f->pt, &out), -E2BIG);
        assert_int_equal(out.len, 0);
}

/* McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16 (AES-256, 60-byte
 * plaintext, 20-byte AAD, 96-bit IV). */
static void test_aead_known_answer_gcm_test_case_16(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL, *pt = NULL;
        uint8_t k[32], aad[20], blob[12 + 60 + 16], want[60];
        struct kh_secret *none = NULL;
        (void) state;

        assert_int_equal(unhex("feffe9928665731c6d6a8f9467308308"
                               "feffe9928665731c6d6a8f9467308308", k), 32);
        assert_int_equal(unhex("feedfacedeadbeeffeedfacedeadbeefabaddad2", aad), 20);
        assert_int_equal(unhex("cafebabefacedbaddecaf888", blob), 12);
        assert_int_equal(unhex("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
                               "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
                               blob + 12), 60);
        assert_int_equal(unhex("76fc6ece0f4e1768cddf8853bb2d551b", blob + 72), 16);
        assert_int_equal(unhex("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
                               "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39", want),
                         60);
        assert_int_equal(kh_secret_new_from(k, sizeof(k), &key), 0);

        assert_int_equal(kh_aead_unseal(key, aad, sizeof(aad), blob, sizeof(blob), &pt), 0);
        assert_int_equal(kh_secret_len(pt), 60);
        assert_memory_equal(kh_secret_bytes(pt), want, 60);

        /* test case 15 is the same without AAD (and a longer plaintext): the tag differs */
        assert_int_equal(kh_aead_unseal(key, NULL, 0, blob, sizeof(blob), &none), -KH_E_INTEGRITY);
        assert_null(none);
}

static void *seal_unseal_many(void *arg) {
        const struct fixture *f = arg;

        for (int i = 0; i < 200; i++) {
                KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
                KH_CLEANUP(kh_buf_freep) struct kh_buf b;

                kh_buf_init(&b, 4096, false);
                if (kh_aead_seal(f->key, (const uint8_t *) AAD, strlen(AAD), f->pt, &b) < 0 ||
                    kh_aead_unseal(f->key, (const uint8_t *) AAD, strlen(AAD), b.data, b.len,
                                   &pt) < 0 ||
                    !kh_secret_equal(pt, f->pt) ||
                    kh_aead_unseal(f->other_key, (const uint8_t *) AAD, strlen(AAD), f->blob.data,
                                   f->blob.len, &pt) != -KH_E_INTEGRITY)
                        return (void *) 1;
        }
        return NULL;
}

/* Each thread has its own context; interleaved use must not mix keys or states. */
static void test_aead_threads(void **state) {
        pthread_t t[4];
        void *res;

        for (size_t i = 0; i < KH_ELEMENTSOF(t); i++)
                assert_int_equal(pthread_create(&t[i], NULL, seal_unseal_many, *state), 0);
        for (size_t i = 0; i < KH_ELEMENTSOF(t); i++) {
                assert_int_equal(pthread_join(t[i], &res), 0);
                assert_null(res);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_aead_round_trip),
                cmocka_unit_test(test_aead_seal_uses_fresh_nonces),
                cmocka_unit_test(test_aead_blob_layout_opens_with_plain_evp),
                cmocka_unit_test(test_aead_every_bit_flip_fails),
                cmocka_unit_test(test_aead_wrong_aad_fails),
                cmocka_unit_test(test_aead_wrong_key_fails),
                cmocka_unit_test(test_aead_truncated_fails),
                cmocka_unit_test(test_aead_key_must_be_32_bytes),
                cmocka_unit_test(test_aead_seal_respects_buffer_maximum),
                cmocka_unit_test(test_aead_known_answer_gcm_test_case_16),
                cmocka_unit_test(test_aead_threads),
        };
        return cmocka_run_group_tests(tests, setup, teardown);
}
