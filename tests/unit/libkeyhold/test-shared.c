/* libkeyhold.so as a client links it: only the public headers, no OpenSSL, no internal
 * header. Every function the headers declare is taken by address (so the link fails if
 * the version script drops one), and V1 runs through the shared object. */
#include <keyhold/device.h>
#include <keyhold/encstring.h>
#include <keyhold/fingerprint.h>
#include <keyhold/keyhold.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static void test_every_function_is_exported(void **state) {
        typedef void (*any_fn)(void);
        const any_fn fns[] = {
                (any_fn) keyhold_strerror,
                (any_fn) keyhold_wipe_free,
                (any_fn) keyhold_base64_encode,
                (any_fn) keyhold_base64_decode,
                (any_fn) keyhold_encstring_parse,
                (any_fn) keyhold_encstring_free,
                (any_fn) keyhold_encstring_type,
                (any_fn) keyhold_encstring_n_parts,
                (any_fn) keyhold_encstring_part,
                (any_fn) keyhold_encstring_format,
                (any_fn) keyhold_encstring_to_buffer,
                (any_fn) keyhold_encstring_from_buffer,
                (any_fn) keyhold_encstring_check,
                (any_fn) keyhold_aes_encrypt,
                (any_fn) keyhold_aes_encrypt_iv,
                (any_fn) keyhold_aes_decrypt,
                (any_fn) keyhold_stretch_key,
                (any_fn) keyhold_rsa_encapsulate,
                (any_fn) keyhold_rsa_decapsulate,
                (any_fn) keyhold_rsa_keypair,
                (any_fn) keyhold_spki_check,
                (any_fn) keyhold_device_trust_new,
                (any_fn) keyhold_device_trust_free,
                (any_fn) keyhold_device_unlock,
                (any_fn) keyhold_device_rotate,
                (any_fn) keyhold_fingerprint,
        };
        (void) state;

        for (size_t i = 0; i < sizeof(fns) / sizeof(fns[0]); i++)
                assert_non_null(fns[i]);
}

static void test_v1_through_the_shared_object(void **state) {
        uint8_t key[64], iv[16] = { 0xd8, 0xda, 0x24, 0x00, 0xc4, 0xba, 0x96, 0x55,
                                    0x31, 0x93, 0x6e, 0xa8, 0xb9, 0xe3, 0x2a, 0xac };
        const char *want = "2.2NokAMS6llUxk26oueMqrA==|6k0QD71SJLy2WEBDkV4esiTrgkP/z7eoSedSesGLGYE="
                           "|PE4sb0jpAwZW+tnyPuW43eeWvSxjvdw3xMJlPGbDlYI=";
        char *s = NULL;
        uint8_t *pt = NULL;
        size_t len = 0;
        (void) state;

        for (int i = 0; i < 64; i++)
                key[i] = (uint8_t) i;
        assert_int_equal(keyhold_aes_encrypt_iv(key, iv, (const uint8_t *) "Bitwarden SDK test vector",
                                                25, &s),
                         KEYHOLD_OK);
        assert_string_equal(s, want);
        assert_int_equal(keyhold_aes_decrypt(key, 64, s, strlen(s), &pt, &len), KEYHOLD_OK);
        assert_int_equal(len, 25);
        keyhold_wipe_free(pt, len);
        free(s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_function_is_exported),
                cmocka_unit_test(test_v1_through_the_shared_object),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
