/* Re-wrapping another trusted device for a new user key (src/cli/rotate.c, used by
 * `keyhold device rotate`). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/rotate.h"
#include "keyhold/device.h"

static void fill(uint8_t key[KEYHOLD_USER_KEY_LEN], uint8_t seed) {
        for (size_t i = 0; i < KEYHOLD_USER_KEY_LEN; i++)
                key[i] = (uint8_t) (seed + 7 * i);
}

/* A device trusted under old opens new after the re-wrap, with its own device key. */
static void test_rewrap_opens_the_new_key(void **state) {
        uint8_t old_key[KEYHOLD_USER_KEY_LEN], new_key[KEYHOLD_USER_KEY_LEN];
        uint8_t got[KEYHOLD_USER_KEY_LEN];
        struct keyhold_device_trust *t = NULL;
        char *uk = NULL, *pk = NULL;
        uint8_t *spki = NULL, *spki2 = NULL;
        size_t spki_len = 0, spki2_len = 0;

        (void) state;
        fill(old_key, 1);
        fill(new_key, 2);
        assert_int_equal(keyhold_device_trust_new(old_key, &t), KEYHOLD_OK);
        assert_int_equal(kh_rotate_rewrap(old_key, new_key, t->encrypted_public_key, &uk, &pk),
                         KEYHOLD_OK);
        assert_non_null(uk);
        assert_non_null(pk);
        assert_memory_equal(uk, "4.", 2);
        assert_memory_equal(pk, "2.", 2);
        /* the device's own key pair decapsulates the new key */
        assert_int_equal(keyhold_device_unlock(t->device_key, t->encrypted_private_key, uk, got),
                         KEYHOLD_OK);
        assert_memory_equal(got, new_key, sizeof(got));
        /* the new public key value is the same SPKI, under the new key only */
        assert_int_equal(keyhold_aes_decrypt(old_key, sizeof(old_key), t->encrypted_public_key,
                                             strlen(t->encrypted_public_key), &spki, &spki_len),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_aes_decrypt(new_key, sizeof(new_key), pk, strlen(pk), &spki2,
                                             &spki2_len),
                         KEYHOLD_OK);
        assert_int_equal(spki_len, spki2_len);
        assert_memory_equal(spki, spki2, spki_len);
        keyhold_wipe_free(spki2, spki2_len);
        spki2 = NULL;
        assert_int_equal(keyhold_aes_decrypt(old_key, sizeof(old_key), pk, strlen(pk), &spki2,
                                             &spki2_len),
                         KEYHOLD_E_MAC);
        keyhold_wipe_free(spki, spki_len);
        free(uk);
        free(pk);
        keyhold_device_trust_free(t);
}

/* Each refusal leaves the outputs untouched and has words for the member. */
static void expect_refused(const uint8_t *old_key, const uint8_t *new_key, const char *value,
                           int want) {
        char sentinel_uk[] = "untouched", sentinel_pk[] = "untouched";
        char *uk = sentinel_uk, *pk = sentinel_pk;

        assert_int_equal(kh_rotate_rewrap(old_key, new_key, value, &uk, &pk), want);
        assert_ptr_equal(uk, sentinel_uk);
        assert_ptr_equal(pk, sentinel_pk);
        assert_non_null(kh_rotate_reason(want));
        assert_true(strlen(kh_rotate_reason(want)) > 0);
}

static void test_refusals(void **state) {
        uint8_t old_key[KEYHOLD_USER_KEY_LEN], new_key[KEYHOLD_USER_KEY_LEN];
        uint8_t other[KEYHOLD_USER_KEY_LEN];
        struct keyhold_device_trust *t = NULL;
        char *not_spki = NULL;

        (void) state;
        fill(old_key, 1);
        fill(new_key, 2);
        fill(other, 3);
        /* trusted under another user key: the MAC does not verify */
        assert_int_equal(keyhold_device_trust_new(other, &t), KEYHOLD_OK);
        expect_refused(old_key, new_key, t->encrypted_public_key, KEYHOLD_E_MAC);
        assert_string_equal(kh_rotate_reason(KEYHOLD_E_MAC),
                            "its public key was wrapped under another user key");
        /* not a symmetric value: the type-4 user key in place of the public key */
        expect_refused(other, new_key, t->encrypted_user_key, KEYHOLD_E_TYPE);
        /* opens, but is no SPKI */
        assert_int_equal(keyhold_aes_encrypt(old_key, (const uint8_t *) "hello", 5, &not_spki),
                         KEYHOLD_OK);
        expect_refused(old_key, new_key, not_spki, KEYHOLD_E_FORMAT);
        /* malformed text */
        expect_refused(old_key, new_key, "2.not|an|encstring", KEYHOLD_E_FORMAT);
        expect_refused(old_key, new_key, "", KEYHOLD_E_FORMAT);
        /* NULL anywhere */
        expect_refused(NULL, new_key, t->encrypted_public_key, KEYHOLD_E_INVALID);
        expect_refused(old_key, NULL, t->encrypted_public_key, KEYHOLD_E_INVALID);
        expect_refused(old_key, new_key, NULL, KEYHOLD_E_INVALID);
        assert_int_equal(kh_rotate_rewrap(old_key, new_key, t->encrypted_public_key, NULL, NULL),
                         KEYHOLD_E_INVALID);
        free(not_spki);
        keyhold_device_trust_free(t);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_rewrap_opens_the_new_key),
                cmocka_unit_test(test_refusals),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
