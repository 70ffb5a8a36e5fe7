/* Trusted devices: the SDK's desktop-app chain (V6, trusted-devices.md 2.3), trust then
 * unlock, rotate then unlock, and what must not unlock. */
#include "keyhold/device.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vectors.h"

static uint8_t device_key[64], expected_user_key[64];

static int setup(void **state) {
        size_t len = 0;
        uint8_t *k;
        (void) state;

        k = ossl_b64(V6_DEVICE_KEY, &len);
        if (!k || len != 64)
                return -1;
        memcpy(device_key, k, 64);
        free(k);
        k = ossl_b64(V6_USER_KEY, &len);
        if (!k || len != 64)
                return -1;
        memcpy(expected_user_key, k, 64);
        free(k);
        return 0;
}

static void test_v6_unlock(void **state) {
        uint8_t user_key[64];
        uint8_t *pkcs8 = NULL;
        size_t len = 0;
        (void) state;

        assert_int_equal(strlen(V6_ENC_PRIVATE_KEY), 1716);
        assert_int_equal(keyhold_device_unlock(device_key, V6_ENC_PRIVATE_KEY, V6_ENC_USER_KEY,
                                               user_key),
                         KEYHOLD_OK);
        assert_memory_equal(user_key, expected_user_key, 64);

        /* the intermediate step as the spec states it: a 1218-byte PKCS#8 key */
        assert_int_equal(keyhold_aes_decrypt(device_key, 64, V6_ENC_PRIVATE_KEY,
                                             strlen(V6_ENC_PRIVATE_KEY), &pkcs8, &len),
                         KEYHOLD_OK);
        assert_int_equal(len, 1218);
        keyhold_wipe_free(pkcs8, len);
}

static void test_v6_wrong_device_key(void **state) {
        uint8_t user_key[64], other[64];
        (void) state;

        memset(user_key, 0xaa, sizeof(user_key));
        memcpy(other, device_key, 64);
        other[40] ^= 0x80;
        assert_int_equal(keyhold_device_unlock(other, V6_ENC_PRIVATE_KEY, V6_ENC_USER_KEY,
                                               user_key),
                         KEYHOLD_E_MAC);
        for (size_t i = 0; i < 64; i++)
                assert_int_equal(user_key[i], 0xaa); /* not written on failure */
}

static void test_v6_swapped_or_broken_strings(void **state) {
        uint8_t user_key[64];
        char broken[2000];
        (void) state;

        assert_int_equal(keyhold_device_unlock(device_key, V6_ENC_USER_KEY, V6_ENC_PRIVATE_KEY,
                                               user_key),
                         KEYHOLD_E_TYPE);
        snprintf(broken, sizeof(broken), "%s", V6_ENC_PRIVATE_KEY);
        broken[strlen(broken) - 46] = '|'; /* cut the ct short by a part separator */
        assert_int_equal(keyhold_device_unlock(device_key, broken, V6_ENC_USER_KEY, user_key),
                         KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_device_unlock(device_key, V6_ENC_PRIVATE_KEY, "4.AAAA", user_key),
                         KEYHOLD_E_DECRYPT);
        assert_int_equal(keyhold_device_unlock(device_key, V6_ENC_PRIVATE_KEY, NULL, user_key),
                         KEYHOLD_E_INVALID);
}

/* What trust_new made is what the spec says the three strings are. */
static void assert_trust_shape(const struct keyhold_device_trust *t, const uint8_t user_key[64]) {
        uint8_t *spki = NULL, *pkcs8 = NULL;
        size_t spki_len = 0, pkcs8_len = 0;

        assert_int_equal(keyhold_encstring_check(t->encrypted_user_key,
                                                 strlen(t->encrypted_user_key),
                                                 KEYHOLD_ENC_TYPE_BIT(4)),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_aes_decrypt(user_key, 64, t->encrypted_public_key,
                                             strlen(t->encrypted_public_key), &spki, &spki_len),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_spki_check(spki, spki_len), KEYHOLD_OK);
        assert_int_equal(keyhold_aes_decrypt(t->device_key, 64, t->encrypted_private_key,
                                             strlen(t->encrypted_private_key), &pkcs8, &pkcs8_len),
                         KEYHOLD_OK);
        /* the private key opens what is sealed to the public key */
        char *s = NULL;
        uint8_t *pt = NULL;
        size_t pt_len = 0;
        assert_int_equal(keyhold_rsa_encapsulate(spki, spki_len, (const uint8_t *) "x", 1, &s),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_rsa_decapsulate(pkcs8, pkcs8_len, s, strlen(s), &pt, &pt_len),
                         KEYHOLD_OK);
        assert_int_equal(pt_len, 1);
        keyhold_wipe_free(pt, pt_len);
        free(s);
        free(spki);
        keyhold_wipe_free(pkcs8, pkcs8_len);
}

static void test_trust_new_then_unlock(void **state) {
        struct keyhold_device_trust *t = NULL;
        uint8_t user_key[64];
        static const uint8_t zero[64];
        (void) state;

        assert_int_equal(keyhold_device_trust_new(expected_user_key, &t), KEYHOLD_OK);
        assert_memory_not_equal(t->device_key, zero, 64);
        assert_trust_shape(t, expected_user_key);
        assert_int_equal(keyhold_device_unlock(t->device_key, t->encrypted_private_key,
                                               t->encrypted_user_key, user_key),
                         KEYHOLD_OK);
        assert_memory_equal(user_key, expected_user_key, 64);
        /* the public key is under the user key, not the device key */
        uint8_t *pt = NULL;
        size_t len = 0;
        assert_int_equal(keyhold_aes_decrypt(t->device_key, 64, t->encrypted_public_key,
                                             strlen(t->encrypted_public_key), &pt, &len),
                         KEYHOLD_E_MAC);
        keyhold_device_trust_free(t);
        keyhold_device_trust_free(NULL);
}

/* A v2 account's user key is not 64 bytes: unlock, whose output is 64 bytes, refuses it. */
static void test_unlock_refuses_other_key_lengths(void **state) {
        struct keyhold_device_trust *t = NULL;
        uint8_t *spki = NULL, user_key[64], key[65] = { 7 };
        size_t spki_len = 0;
        char *enc = NULL;
        (void) state;

        assert_int_equal(keyhold_device_trust_new(expected_user_key, &t), KEYHOLD_OK);
        assert_int_equal(keyhold_aes_decrypt(expected_user_key, 64, t->encrypted_public_key,
                                             strlen(t->encrypted_public_key), &spki, &spki_len),
                         KEYHOLD_OK);
        for (size_t n = 32; n <= 65; n += 33) {
                assert_int_equal(keyhold_rsa_encapsulate(spki, spki_len, key, n, &enc), KEYHOLD_OK);
                assert_int_equal(keyhold_device_unlock(t->device_key, t->encrypted_private_key, enc,
                                                       user_key),
                                 KEYHOLD_E_KEY);
                free(enc);
        }
        free(spki);
        keyhold_device_trust_free(t);
}

static void test_rotate_then_unlock(void **state) {
        struct keyhold_device_trust *t = NULL;
        uint8_t new_key[64], user_key[64];
        char *enc_user = NULL, *enc_pub = NULL;
        uint8_t *spki_old = NULL, *spki_new = NULL;
        size_t old_len = 0, new_len = 0;
        (void) state;

        for (size_t i = 0; i < 64; i++)
                new_key[i] = (uint8_t) (0xc3 ^ i);
        assert_int_equal(keyhold_device_trust_new(expected_user_key, &t), KEYHOLD_OK);
        assert_int_equal(keyhold_device_rotate(t->device_key, t->encrypted_private_key, new_key,
                                               &enc_user, &enc_pub),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_device_unlock(t->device_key, t->encrypted_private_key, enc_user,
                                               user_key),
                         KEYHOLD_OK);
        assert_memory_equal(user_key, new_key, 64);

        /* the same device public key, now under the new user key */
        assert_int_equal(keyhold_aes_decrypt(expected_user_key, 64, t->encrypted_public_key,
                                             strlen(t->encrypted_public_key), &spki_old, &old_len),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_aes_decrypt(new_key, 64, enc_pub, strlen(enc_pub), &spki_new,
                                             &new_len),
                         KEYHOLD_OK);
        assert_int_equal(old_len, new_len);
        assert_memory_equal(spki_old, spki_new, old_len);

        /* the old user key no longer comes out of the new strings */
        assert_int_equal(keyhold_device_unlock(t->device_key, t->encrypted_private_key,
                                               t->encrypted_user_key, user_key),
                         KEYHOLD_OK);
        assert_memory_equal(user_key, expected_user_key, 64);
        free(spki_old);
        free(spki_new);
        free(enc_user);
        free(enc_pub);
        keyhold_device_trust_free(t);
}

static void test_v6_rotate(void **state) {
        uint8_t new_key[64] = { 1, 2, 3 }, user_key[64];
        char *enc_user = NULL, *enc_pub = NULL;
        (void) state;

        assert_int_equal(keyhold_device_rotate(device_key, V6_ENC_PRIVATE_KEY, new_key, &enc_user,
                                               &enc_pub),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_device_unlock(device_key, V6_ENC_PRIVATE_KEY, enc_user, user_key),
                         KEYHOLD_OK);
        assert_memory_equal(user_key, new_key, 64);
        free(enc_user);
        free(enc_pub);
        enc_user = enc_pub = NULL;

        /* a wrong device key: nothing is made */
        device_key[63] ^= 1; /* the MAC half */
        assert_int_equal(keyhold_device_rotate(device_key, V6_ENC_PRIVATE_KEY, new_key, &enc_user,
                                               &enc_pub),
                         KEYHOLD_E_MAC);
        device_key[63] ^= 1; /* the MAC half */
        assert_null(enc_user);
        assert_null(enc_pub);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_v6_unlock),
                cmocka_unit_test(test_v6_wrong_device_key),
                cmocka_unit_test(test_v6_swapped_or_broken_strings),
                cmocka_unit_test(test_trust_new_then_unlock),
                cmocka_unit_test(test_unlock_refuses_other_key_lengths),
                cmocka_unit_test(test_rotate_then_unlock),
                cmocka_unit_test(test_v6_rotate),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
