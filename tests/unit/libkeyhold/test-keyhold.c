/* keyhold.h: status strings, wipe-and-free, and the strict base64 codec, checked against
 * RFC 4648's vectors and OpenSSL's encoder. */
#include "keyhold/keyhold.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

static void test_strerror(void **state) {
        (void) state;
        assert_string_equal(keyhold_strerror(KEYHOLD_OK), "success");
        assert_string_equal(keyhold_strerror(KEYHOLD_E_MAC), "integrity check failed");
        for (int s = KEYHOLD_E_CRYPTO; s < 0; s++) {
                assert_non_null(keyhold_strerror(s));
                assert_string_not_equal(keyhold_strerror(s), "unknown error");
                for (int t = KEYHOLD_E_CRYPTO; t < s; t++) /* each one its own */
                        assert_string_not_equal(keyhold_strerror(s), keyhold_strerror(t));
        }
        assert_string_equal(keyhold_strerror(-9), "unknown error");
        assert_string_equal(keyhold_strerror(-19), "unknown error");
        assert_string_equal(keyhold_strerror(-31), "unknown error"); /* past keyhold/client.h's */
        assert_string_equal(keyhold_strerror(1), "unknown error");
}

static void test_wipe_free(void **state) {
        uint8_t *p = malloc(32);
        (void) state;

        memset(p, 0x41, 32);
        keyhold_wipe_free(p, 32);
        keyhold_wipe_free(NULL, 32);
}

static void test_rfc4648_vectors(void **state) {
        static const char *const pairs[][2] = {
                { "", "" },         { "f", "Zg==" },         { "fo", "Zm8=" },
                { "foo", "Zm9v" },  { "foob", "Zm9vYg==" },  { "fooba", "Zm9vYmE=" },
                { "foobar", "Zm9vYmFy" },
        };
        (void) state;

        for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
                char *enc = NULL;
                uint8_t *dec = NULL;
                size_t len = 99;

                assert_int_equal(keyhold_base64_encode((const uint8_t *) pairs[i][0],
                                                       strlen(pairs[i][0]), &enc),
                                 KEYHOLD_OK);
                assert_string_equal(enc, pairs[i][1]);
                assert_int_equal(keyhold_base64_decode(pairs[i][1], strlen(pairs[i][1]), &dec, &len),
                                 KEYHOLD_OK);
                assert_non_null(dec);
                assert_int_equal(len, strlen(pairs[i][0]));
                assert_memory_equal(dec, pairs[i][0], len);
                free(enc);
                keyhold_wipe_free(dec, len);
        }
}

/* Every byte value in every position of a quantum, against OpenSSL's encoder. */
static void test_all_bytes_against_openssl(void **state) {
        uint8_t in[258];
        char want[400];
        (void) state;

        for (size_t i = 0; i < sizeof(in); i++)
                in[i] = (uint8_t) (i * 7 + 3);
        for (size_t n = 0; n <= sizeof(in); n += 1) {
                char *enc = NULL;
                uint8_t *dec = NULL;
                size_t len = 0;

                EVP_EncodeBlock((unsigned char *) want, in, (int) n);
                assert_int_equal(keyhold_base64_encode(in, n, &enc), KEYHOLD_OK);
                assert_string_equal(enc, want);
                assert_int_equal(keyhold_base64_decode(want, strlen(want), &dec, &len), KEYHOLD_OK);
                assert_int_equal(len, n);
                assert_memory_equal(dec, in, n);
                free(enc);
                keyhold_wipe_free(dec, len);
        }
}

static void test_decode_rejects(void **state) {
        static const char *const bad[] = {
                "Zg",        /* missing padding */
                "Zg=",       /* short padding */
                "Zm9",       /* not a multiple of 4 */
                "Zh==",      /* non-zero unused bits */
                "Zm9=",      /* non-zero unused bits (one '=') */
                "Zm8=Zm8=",  /* padding in the middle */
                "Z===",      /* too much padding */
                "====",
                "Zm9v\n",    /* whitespace */
                " Zm9v",
                "Zm 9",
                "Zm9-",      /* base64url alphabet */
                "Zm9_",
                "Zm9\x80",   /* bytes above 127 */
                "Zm9\xff",
        };
        (void) state;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                uint8_t *dec = NULL;
                size_t len = 0;

                if (keyhold_base64_decode(bad[i], strlen(bad[i]), &dec, &len) != KEYHOLD_E_FORMAT)
                        fail_msg("\"%s\" not rejected", bad[i]);
                assert_null(dec);
        }
        /* an embedded NUL counts as a character */
        uint8_t *dec = NULL;
        size_t len = 0;
        assert_int_equal(keyhold_base64_decode("Zm\0v", 4, &dec, &len), KEYHOLD_E_FORMAT);
}

static void test_null_arguments(void **state) {
        char *enc = NULL;
        uint8_t *dec = NULL;
        size_t len = 0;
        (void) state;

        assert_int_equal(keyhold_base64_encode(NULL, 1, &enc), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_base64_encode((const uint8_t *) "x", 1, NULL), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_base64_decode(NULL, 4, &dec, &len), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_base64_decode("Zm9v", 4, NULL, &len), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_base64_decode("Zm9v", 4, &dec, NULL), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_base64_encode(NULL, 0, &enc), KEYHOLD_OK);
        assert_string_equal(enc, "");
        free(enc);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_strerror),
                cmocka_unit_test(test_wipe_free),
                cmocka_unit_test(test_rfc4648_vectors),
                cmocka_unit_test(test_all_bytes_against_openssl),
                cmocka_unit_test(test_decode_rejects),
                cmocka_unit_test(test_null_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
