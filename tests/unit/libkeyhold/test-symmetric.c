/* Type 2 and type 0 encryption (V1, V2), key stretching and HKDF-Expand (V4), and the
 * refusals: a flipped bit anywhere, a downgrade to type 0, a wrong key length. */
#include "keyhold/encstring.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "libkeyhold/internal.h"
#include "vectors.h"

static uint8_t v1_key[64], v2_key[32];

static int setup(void **state) {
        size_t len = 0;
        uint8_t *k;
        (void) state;

        k = ossl_b64(V1_KEY, &len);
        if (!k || len != 64)
                return -1;
        memcpy(v1_key, k, 64);
        free(k);
        k = ossl_b64(V2_KEY, &len);
        if (!k || len != 32)
                return -1;
        memcpy(v2_key, k, 32);
        free(k);
        for (int i = 0; i < 64; i++) /* the spec says bytes 0x00..0x3f */
                if (v1_key[i] != i)
                        return -1;
        return 0;
}

static void assert_decrypts(const uint8_t *key, size_t key_len, const char *s, const void *want,
                            size_t want_len) {
        uint8_t *pt = NULL;
        size_t len = 0;

        assert_int_equal(keyhold_aes_decrypt(key, key_len, s, strlen(s), &pt, &len), KEYHOLD_OK);
        assert_non_null(pt);
        assert_int_equal(len, want_len);
        assert_memory_equal(pt, want, len);
        keyhold_wipe_free(pt, len);
}

static void assert_decrypt_fails(const uint8_t *key, size_t key_len, const char *s, int want) {
        uint8_t *pt = NULL;
        size_t len = 0;

        assert_int_equal(keyhold_aes_decrypt(key, key_len, s, strlen(s), &pt, &len), want);
        assert_null(pt);
        assert_int_equal(len, 0);
}

static void test_v1_encrypt_iv_exact(void **state) {
        uint8_t *iv;
        size_t iv_len = 0;
        char *s = NULL;
        (void) state;

        iv = ossl_b64(V1_IV, &iv_len);
        assert_int_equal(iv_len, 16);
        assert_int_equal(keyhold_aes_encrypt_iv(v1_key, iv, (const uint8_t *) V1_PT,
                                                strlen(V1_PT), &s),
                         KEYHOLD_OK);
        assert_string_equal(s, V1_ENC);
        free(s);
        free(iv);
}

static void test_v1_decrypt(void **state) {
        (void) state;
        assert_decrypts(v1_key, 64, V1_ENC, V1_PT, strlen(V1_PT));
}

static void test_v1_deterministic_cbc(void **state) {
        struct keyhold_encstring *es = NULL;
        const uint8_t *ct = NULL;
        uint8_t *iv, *want;
        size_t iv_len = 0, want_len = 0, ct_len = 0;
        char *s = NULL;
        (void) state;

        iv = ossl_b64(V1_CBC_IV, &iv_len);
        want = ossl_b64(V1_CBC_CT, &want_len);
        assert_int_equal(keyhold_aes_encrypt_iv(v1_key, iv, (const uint8_t *) V1_CBC_PT,
                                                strlen(V1_CBC_PT), &s),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_parse(s, strlen(s), &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_part(es, 1, &ct, &ct_len), KEYHOLD_OK);
        assert_int_equal(ct_len, want_len);
        assert_memory_equal(ct, want, ct_len);
        assert_decrypts(v1_key, 64, s, V1_CBC_PT, strlen(V1_CBC_PT));
        keyhold_encstring_free(es);
        free(s);
        free(iv);
        free(want);
}

static void test_v2_type0_legacy_key(void **state) {
        (void) state;
        assert_decrypts(v2_key, 32, V2_ENC, V1_PT, strlen(V1_PT));
        assert_decrypts(v2_key, 32, "0." V2_IV "|" V2_CASE2_CT, "EncryptMe!", 10);
}

static void test_type0_with_64_byte_key_is_downgrade(void **state) {
        (void) state;
        assert_decrypt_fails(v1_key, 64, V2_ENC, KEYHOLD_E_TYPE);
        /* the headerless spelling of type 0 too */
        assert_decrypt_fails(v1_key, 64, &V2_ENC[2], KEYHOLD_E_TYPE);
}

static void test_type2_with_32_byte_key_refused(void **state) {
        (void) state;
        assert_decrypt_fails(v2_key, 32, V1_ENC, KEYHOLD_E_TYPE);
}

static void test_other_types_refused(void **state) {
        (void) state;
        assert_decrypt_fails(v1_key, 64, V5_ENC4, KEYHOLD_E_TYPE);
        assert_decrypt_fails(v1_key, 64, "1." V1_IV "|" V1_CT "|" V1_MAC, KEYHOLD_E_TYPE);
        assert_decrypt_fails(v1_key, 64, "7.AAAA", KEYHOLD_E_TYPE);
}

static void test_wrong_key_lengths(void **state) {
        (void) state;
        assert_decrypt_fails(v1_key, 48, V1_ENC, KEYHOLD_E_KEY);
        assert_decrypt_fails(v1_key, 0, V1_ENC, KEYHOLD_E_KEY);
        assert_decrypt_fails(v1_key, 63, V1_ENC, KEYHOLD_E_KEY);
}

/* Flips one bit of the decoded part `part` of V1 and re-encodes the string with OpenSSL. */
static char *v1_flipped(size_t part, size_t byte, uint8_t bit) {
        const char *b64[3] = { V1_IV, V1_CT, V1_MAC };
        char enc[3][64], *out = malloc(256);

        for (size_t i = 0; i < 3; i++) {
                size_t len = 0;
                uint8_t *raw = ossl_b64(b64[i], &len);

                if (i == part)
                        raw[byte] ^= bit;
                EVP_EncodeBlock((unsigned char *) enc[i], raw, (int) len);
                free(raw);
        }
        snprintf(out, 256, "2.%s|%s|%s", enc[0], enc[1], enc[2]);
        return out;
}

static void test_flipped_bits_fail_mac(void **state) {
        (void) state;
        /* every bit of the iv, of the ct and of the mac */
        const size_t lens[3] = { 16, 32, 32 };
        for (size_t part = 0; part < 3; part++)
                for (size_t byte = 0; byte < lens[part]; byte++)
                        for (unsigned bit = 0; bit < 8; bit++) {
                                char *s = v1_flipped(part, byte, (uint8_t) (1u << bit));
                                assert_decrypt_fails(v1_key, 64, s, KEYHOLD_E_MAC);
                                free(s);
                        }
        /* the unflipped string still opens (the helper itself is right) */
        char *same = v1_flipped(0, 0, 0);
        assert_string_equal(same, V1_ENC);
        free(same);
}

static void test_wrong_key_fails_mac(void **state) {
        uint8_t other[64];
        (void) state;

        memcpy(other, v1_key, 64);
        other[63] ^= 1; /* the MAC key */
        assert_decrypt_fails(other, 64, V1_ENC, KEYHOLD_E_MAC);
        memcpy(other, v1_key, 64);
        other[0] ^= 1; /* the encryption key: the MAC still holds, the padding does not */
        uint8_t *pt = NULL;
        size_t len = 0;
        int r = keyhold_aes_decrypt(other, 64, V1_ENC, strlen(V1_ENC), &pt, &len);
        if (r == KEYHOLD_OK) /* 1 in 256 keys gives valid-looking padding: not this one */
                fail_msg("decrypted under a wrong encryption key");
        assert_int_equal(r, KEYHOLD_E_DECRYPT);
}

/* A type 2 string with a correct MAC (computed here with OpenSSL's HMAC) over a
 * ciphertext that is not a valid CBC/PKCS#7 one: the MAC passes, decryption fails. */
static void test_valid_mac_bad_ciphertext(void **state) {
        uint8_t iv[16] = { 0 }, ct[17], buf[16 + 17], mac[32];
        unsigned mac_len = 0;
        char e_iv[32], e_ct[32], e_mac[64], s[160];
        (void) state;

        memset(ct, 0x5a, sizeof(ct));
        for (size_t ct_len = 16; ct_len <= 17; ct_len++) { /* bad padding; not whole blocks */
                memcpy(buf, iv, 16);
                memcpy(buf + 16, ct, ct_len);
                HMAC(EVP_sha256(), v1_key + 32, 32, buf, 16 + ct_len, mac, &mac_len);
                EVP_EncodeBlock((unsigned char *) e_iv, iv, 16);
                EVP_EncodeBlock((unsigned char *) e_ct, ct, (int) ct_len);
                EVP_EncodeBlock((unsigned char *) e_mac, mac, 32);
                snprintf(s, sizeof(s), "2.%s|%s|%s", e_iv, e_ct, e_mac);
                assert_decrypt_fails(v1_key, 64, s, KEYHOLD_E_DECRYPT);
        }
}

static void test_truncated_strings(void **state) {
        const char *s = V1_ENC;
        (void) state;

        for (size_t n = 0; n < strlen(s); n++) {
                uint8_t *pt = NULL;
                size_t len = 0;
                assert_int_equal(keyhold_aes_decrypt(v1_key, 64, s, n, &pt, &len),
                                 KEYHOLD_E_FORMAT);
        }
}

static void test_random_iv_round_trip(void **state) {
        char *a = NULL, *b = NULL;
        (void) state;

        assert_int_equal(keyhold_aes_encrypt(v1_key, (const uint8_t *) V1_PT, strlen(V1_PT), &a),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_aes_encrypt(v1_key, (const uint8_t *) V1_PT, strlen(V1_PT), &b),
                         KEYHOLD_OK);
        assert_string_not_equal(a, b); /* fresh ivs */
        assert_int_equal(strncmp(a, "2.", 2), 0);
        assert_decrypts(v1_key, 64, a, V1_PT, strlen(V1_PT));
        assert_decrypts(v1_key, 64, b, V1_PT, strlen(V1_PT));
        free(a);
        free(b);

        /* empty plaintext: one block of padding */
        assert_int_equal(keyhold_aes_encrypt(v1_key, NULL, 0, &a), KEYHOLD_OK);
        assert_decrypts(v1_key, 64, a, "", 0);
        free(a);
        /* exactly one block: two blocks of ciphertext */
        assert_int_equal(keyhold_aes_encrypt(v1_key, v1_key, 16, &a), KEYHOLD_OK);
        assert_int_equal(strlen(a), 2 + 24 + 1 + 44 + 1 + 44);
        assert_decrypts(v1_key, 64, a, v1_key, 16);
        free(a);
}

static void test_v4_stretch(void **state) {
        uint8_t *key, *want_enc, *want_mac, *k2, out[64];
        size_t len = 0, len2 = 0;
        (void) state;

        key = hex(V4_KEY_HEX, &len);
        k2 = ossl_b64(V4_KEY_B64, &len2); /* the spec's two spellings agree */
        assert_int_equal(len, 32);
        assert_memory_equal(key, k2, 32);
        want_enc = hex(V4_ENC_HEX, &len);
        want_mac = hex(V4_MAC_HEX, &len);
        assert_int_equal(keyhold_stretch_key(key, out), KEYHOLD_OK);
        assert_memory_equal(out, want_enc, 32);
        assert_memory_equal(out + 32, want_mac, 32);
        free(key);
        free(k2);
        free(want_enc);
        free(want_mac);
}

static void test_v4_raw_hkdf_expand(void **state) {
        uint8_t *prk, *want, out[64];
        size_t prk_len = 0, want_len = 0;
        (void) state;

        prk = hex(V4_PRK_HEX, &prk_len);
        want = hex(V4_OKM_HEX, &want_len);
        assert_int_equal(want_len, 64);
        assert_int_equal(khl_hkdf_expand(prk, prk_len, (const uint8_t *) "info", 4, out, 64),
                         KEYHOLD_OK);
        assert_memory_equal(out, want, 64);
        assert_int_equal(khl_hkdf_expand(prk, prk_len, NULL, 0, out, 0), KEYHOLD_E_INVALID);
        assert_int_equal(khl_hkdf_expand(prk, prk_len, NULL, 0, out, 255 * 32 + 1),
                         KEYHOLD_E_INVALID);
        free(prk);
        free(want);
}

/* The key connector path: a user key wrapped as type 2 under the stretched 32-byte key. */
static void test_stretched_key_wraps_user_key(void **state) {
        uint8_t stretched[64];
        char *s = NULL;
        (void) state;

        assert_int_equal(keyhold_stretch_key(v2_key, stretched), KEYHOLD_OK);
        assert_int_equal(keyhold_aes_encrypt(stretched, v1_key, 64, &s), KEYHOLD_OK);
        assert_decrypts(stretched, 64, s, v1_key, 64);
        assert_decrypt_fails(v2_key, 32, s, KEYHOLD_E_TYPE);
        free(s);
}

static void test_null_arguments(void **state) {
        uint8_t *pt = NULL, out[64];
        size_t len = 0;
        char *s = NULL;
        (void) state;

        assert_int_equal(keyhold_aes_encrypt(NULL, NULL, 0, &s), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_aes_encrypt(v1_key, NULL, 1, &s), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_aes_encrypt(v1_key, v1_key, 1, NULL), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_aes_encrypt_iv(v1_key, NULL, v1_key, 1, &s), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_aes_decrypt(NULL, 64, V1_ENC, 10, &pt, &len), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_aes_decrypt(v1_key, 64, NULL, 10, &pt, &len), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_stretch_key(NULL, out), KEYHOLD_E_INVALID);
        assert_null(s);
        assert_null(pt);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_v1_encrypt_iv_exact),
                cmocka_unit_test(test_v1_decrypt),
                cmocka_unit_test(test_v1_deterministic_cbc),
                cmocka_unit_test(test_v2_type0_legacy_key),
                cmocka_unit_test(test_type0_with_64_byte_key_is_downgrade),
                cmocka_unit_test(test_type2_with_32_byte_key_refused),
                cmocka_unit_test(test_other_types_refused),
                cmocka_unit_test(test_wrong_key_lengths),
                cmocka_unit_test(test_flipped_bits_fail_mac),
                cmocka_unit_test(test_wrong_key_fails_mac),
                cmocka_unit_test(test_valid_mac_bad_ciphertext),
                cmocka_unit_test(test_truncated_strings),
                cmocka_unit_test(test_random_iv_round_trip),
                cmocka_unit_test(test_v4_stretch),
                cmocka_unit_test(test_v4_raw_hkdf_expand),
                cmocka_unit_test(test_stretched_key_wraps_user_key),
                cmocka_unit_test(test_null_arguments),
        };
        return cmocka_run_group_tests(tests, setup, NULL);
}
