/* The fingerprint phrase: both vectors of trusted-devices.md section 5, and the list. */
#include "keyhold/fingerprint.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "libkeyhold/internal.h"
#include "vectors.h"

static void assert_phrase(const char *material, const char *spki_b64, const char *want) {
        char out[KEYHOLD_FINGERPRINT_MAX];
        size_t len = 0;
        uint8_t *spki = ossl_b64(spki_b64, &len);

        assert_non_null(spki);
        assert_int_equal(keyhold_fingerprint(material, spki, len, out), KEYHOLD_OK);
        assert_string_equal(out, want);
        free(spki);
}

static void test_sdk_vector(void **state) {
        (void) state;
        assert_phrase(FP_SDK_MATERIAL, FP_SDK_SPKI, FP_SDK_PHRASE);
}

static void test_keyhold_vector(void **state) {
        (void) state;
        assert_phrase(FP_KH_MATERIAL, V5_SPKI, FP_KH_PHRASE);
}

/* The material is hashed as given: the caller lowercases an e-mail. */
static void test_material_is_case_sensitive(void **state) {
        char out[KEYHOLD_FINGERPRINT_MAX];
        size_t len = 0;
        uint8_t *spki = ossl_b64(V5_SPKI, &len);
        (void) state;

        assert_int_equal(keyhold_fingerprint("User@example.com", spki, len, out), KEYHOLD_OK);
        assert_string_not_equal(out, FP_KH_PHRASE);
        free(spki);
}

static void test_word_list(void **state) {
        size_t longest = 0;
        (void) state;

        assert_string_equal(khl_eff_wordlist[0], "abacus");
        assert_string_equal(khl_eff_wordlist[1], "abdomen");
        assert_string_equal(khl_eff_wordlist[KHL_EFF_WORDS - 1], "zoom");
        for (size_t i = 1; i < KHL_EFF_WORDS; i++) /* published order is alphabetical */
                assert_true(strcmp(khl_eff_wordlist[i - 1], khl_eff_wordlist[i]) < 0);
        for (size_t i = 0; i < KHL_EFF_WORDS; i++)
                if (strlen(khl_eff_wordlist[i]) > longest)
                        longest = strlen(khl_eff_wordlist[i]);
        assert_true(5 * (longest + 1) <= KEYHOLD_FINGERPRINT_MAX);
}

static void test_arguments(void **state) {
        char out[KEYHOLD_FINGERPRINT_MAX], *material;
        const uint8_t key[1] = { 0x30 };
        (void) state;

        assert_int_equal(keyhold_fingerprint(NULL, key, 1, out), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_fingerprint("x", NULL, 1, out), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_fingerprint("x", key, 0, out), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_fingerprint("x", key, 1, NULL), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_fingerprint("", key, 1, out), KEYHOLD_OK);

        material = malloc(KEYHOLD_FINGERPRINT_MATERIAL_MAX + 2);
        memset(material, 'm', KEYHOLD_FINGERPRINT_MATERIAL_MAX + 1);
        material[KEYHOLD_FINGERPRINT_MATERIAL_MAX] = '\0';
        assert_int_equal(keyhold_fingerprint(material, key, 1, out), KEYHOLD_OK);
        material[KEYHOLD_FINGERPRINT_MATERIAL_MAX] = 'm';
        material[KEYHOLD_FINGERPRINT_MATERIAL_MAX + 1] = '\0';
        assert_int_equal(keyhold_fingerprint(material, key, 1, out), KEYHOLD_E_INVALID);
        free(material);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_sdk_vector),
                cmocka_unit_test(test_keyhold_vector),
                cmocka_unit_test(test_material_is_case_sensitive),
                cmocka_unit_test(test_word_list),
                cmocka_unit_test(test_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
