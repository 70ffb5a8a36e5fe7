/* EncString syntax: the spec's strings, the buffer form (V1, V3), and every way a string
 * can be malformed, each with its exact error. */
#include "keyhold/encstring.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "vectors.h"

#define PARSE(s, es) keyhold_encstring_parse((s), strlen(s), (es))

static void assert_parse_fails(const char *s, int want) {
        struct keyhold_encstring *es = NULL;

        if (keyhold_encstring_parse(s, strlen(s), &es) != want)
                fail_msg("parse(\"%s\") did not give %d", s, want);
        assert_null(es);
}

/* The parts of es equal the OpenSSL decoding of each of b64[]. */
static void assert_parts(const struct keyhold_encstring *es, size_t n, const char *const b64[]) {
        assert_int_equal(keyhold_encstring_n_parts(es), n);
        for (size_t i = 0; i < n; i++) {
                const uint8_t *p = NULL;
                size_t len = 0, want_len = 0;
                uint8_t *want = ossl_b64(b64[i], &want_len);

                assert_non_null(want);
                assert_int_equal(keyhold_encstring_part(es, i, &p, &len), KEYHOLD_OK);
                assert_int_equal(len, want_len);
                assert_memory_equal(p, want, len);
                free(want);
        }
}

static void test_parse_v1_parts_and_format(void **state) {
        struct keyhold_encstring *es = NULL;
        char *text = NULL;
        (void) state;

        assert_int_equal(PARSE(V1_ENC, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_type(es), KEYHOLD_ENC_AES_CBC256_HMAC);
        assert_parts(es, 3, (const char *const[]) { V1_IV, V1_CT, V1_MAC });
        assert_int_equal(keyhold_encstring_format(es, &text), KEYHOLD_OK);
        assert_string_equal(text, V1_ENC);
        free(text);
        keyhold_encstring_free(es);
}

static void test_part_index_out_of_range(void **state) {
        struct keyhold_encstring *es = NULL;
        const uint8_t *p = NULL;
        size_t len = 0;
        (void) state;

        assert_int_equal(PARSE(V5_ENC4, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_n_parts(es), 1);
        assert_int_equal(keyhold_encstring_part(es, 1, &p, &len), KEYHOLD_E_INVALID);
        assert_null(p);
        keyhold_encstring_free(es);
}

static void test_v1_buffer_form(void **state) {
        struct keyhold_encstring *es = NULL, *back = NULL;
        uint8_t *buf = NULL, *want;
        size_t len = 0, want_len = 0;
        char *text = NULL;
        (void) state;

        want = ossl_b64(V1_BUFFER, &want_len);
        assert_int_equal(want_len, 81);
        assert_int_equal(PARSE(V1_ENC, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_to_buffer(es, &buf, &len), KEYHOLD_OK);
        assert_int_equal(len, 81);
        assert_memory_equal(buf, want, len);

        assert_int_equal(keyhold_encstring_from_buffer(want, want_len, &back), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_format(back, &text), KEYHOLD_OK);
        assert_string_equal(text, V1_ENC);
        free(text);
        free(buf);
        free(want);
        keyhold_encstring_free(es);
        keyhold_encstring_free(back);
}

static void test_v3_string_to_buffer(void **state) {
        struct keyhold_encstring *es = NULL;
        uint8_t *buf = NULL, *want;
        size_t len = 0, want_len = 0;
        (void) state;

        want = hex(V3_HEX, &want_len);
        assert_int_equal(PARSE(V3_ENC, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_to_buffer(es, &buf, &len), KEYHOLD_OK);
        assert_int_equal(len, want_len);
        assert_memory_equal(buf, want, len);
        free(buf);
        free(want);
        keyhold_encstring_free(es);
}

static void test_v3_buffer_to_string(void **state) {
        struct keyhold_encstring *es = NULL;
        uint8_t *want;
        size_t want_len = 0;
        char *text = NULL;
        (void) state;

        want = hex(V3_HEX, &want_len);
        assert_int_equal(keyhold_encstring_from_buffer(want, want_len, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_type(es), KEYHOLD_ENC_AES_CBC256_HMAC);
        assert_int_equal(keyhold_encstring_format(es, &text), KEYHOLD_OK);
        assert_string_equal(text, V3_ENC);
        free(text);
        free(want);
        keyhold_encstring_free(es);
}

static void test_v3_rejects_type_8(void **state) {
        (void) state;
        assert_parse_fails("8.ABC", KEYHOLD_E_FORMAT);
        assert_parse_fails("8.AAAA", KEYHOLD_E_FORMAT); /* valid base64: the type alone fails */
        assert_int_equal(keyhold_encstring_check("8.AAAA", 6, ~0u), KEYHOLD_E_FORMAT);
}

static void test_type_0_buffer_round_trip(void **state) {
        struct keyhold_encstring *es = NULL, *back = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        char *text = NULL;
        (void) state;

        assert_int_equal(PARSE(V2_ENC, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_to_buffer(es, &buf, &len), KEYHOLD_OK);
        assert_int_equal(len, 1 + 16 + 32);
        assert_int_equal(buf[0], 0);
        assert_int_equal(keyhold_encstring_from_buffer(buf, len, &back), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_format(back, &text), KEYHOLD_OK);
        assert_string_equal(text, V2_ENC);
        free(text);
        free(buf);
        keyhold_encstring_free(es);
        keyhold_encstring_free(back);
}

static void test_type_7_buffer_round_trip(void **state) {
        const uint8_t raw[] = { 7, 0xd2, 0x84, 0x43 };
        struct keyhold_encstring *es = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        char *text = NULL;
        (void) state;

        assert_int_equal(keyhold_encstring_from_buffer(raw, sizeof(raw), &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_format(es, &text), KEYHOLD_OK);
        assert_string_equal(text, "7.0oRD");
        assert_int_equal(keyhold_encstring_to_buffer(es, &buf, &len), KEYHOLD_OK);
        assert_int_equal(len, sizeof(raw));
        assert_memory_equal(buf, raw, len);
        free(text);
        free(buf);
        keyhold_encstring_free(es);
}

static void test_buffer_rejects(void **state) {
        uint8_t raw[64] = { 0 };
        struct keyhold_encstring *es = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        (void) state;

        /* Minimum lengths: type 0 18, type 2 50, type 7 2. */
        raw[0] = 0;
        assert_int_equal(keyhold_encstring_from_buffer(raw, 17, &es), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_encstring_from_buffer(raw, 18, &es), KEYHOLD_OK);
        keyhold_encstring_free(es);
        es = NULL;
        raw[0] = 2;
        assert_int_equal(keyhold_encstring_from_buffer(raw, 49, &es), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_encstring_from_buffer(raw, 50, &es), KEYHOLD_OK);
        keyhold_encstring_free(es);
        es = NULL;
        raw[0] = 7;
        assert_int_equal(keyhold_encstring_from_buffer(raw, 1, &es), KEYHOLD_E_FORMAT);
        /* Types without a buffer form, and non-types. */
        for (unsigned t = 1; t <= 6; t++) {
                if (t == 2)
                        continue;
                raw[0] = (uint8_t) t;
                assert_int_equal(keyhold_encstring_from_buffer(raw, 60, &es), KEYHOLD_E_TYPE);
        }
        raw[0] = 8;
        assert_int_equal(keyhold_encstring_from_buffer(raw, 60, &es), KEYHOLD_E_FORMAT);
        raw[0] = 0xff;
        assert_int_equal(keyhold_encstring_from_buffer(raw, 60, &es), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_encstring_from_buffer(raw, 0, &es), KEYHOLD_E_FORMAT);
        assert_null(es);

        /* Type 4 has no buffer form. */
        assert_int_equal(PARSE(V5_ENC4, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_to_buffer(es, &buf, &len), KEYHOLD_E_TYPE);
        assert_null(buf);
        keyhold_encstring_free(es);
}

static void test_buffer_too_long(void **state) {
        uint8_t *raw = calloc(1, KEYHOLD_ENCSTRING_BUFFER_MAX + 1);
        struct keyhold_encstring *es = NULL;
        char *text = NULL;
        (void) state;

        raw[0] = 2;
        assert_int_equal(keyhold_encstring_from_buffer(raw, KEYHOLD_ENCSTRING_BUFFER_MAX + 1, &es),
                         KEYHOLD_E_FORMAT);
        /* The longest accepted buffer formats to a string that parses again. */
        assert_int_equal(keyhold_encstring_from_buffer(raw, KEYHOLD_ENCSTRING_BUFFER_MAX, &es),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_format(es, &text), KEYHOLD_OK);
        assert_true(strlen(text) <= KEYHOLD_ENCSTRING_MAX);
        assert_int_equal(keyhold_encstring_check(text, strlen(text), ~0u), KEYHOLD_OK);
        free(text);
        free(raw);
        keyhold_encstring_free(es);
}

/* Part counts of every type: one fewer and one more than the table are rejected. */
static void test_part_counts(void **state) {
        static const struct {
                const char *ok, *fewer, *more;
        } cases[] = {
                { "0." V2_IV "|AAAA", "0." V2_IV, "0." V2_IV "|AAAA|AAAA" },
                { "1.AAAA|AAAA|AAAA", "1.AAAA|AAAA", "1.AAAA|AAAA|AAAA|AAAA" },
                { V1_ENC, "2." V1_IV "|" V1_CT, V1_ENC "|AAAA" },
                { "3.AAAA", NULL, "3.AAAA|AAAA" },
                { "4.AAAA", NULL, "4.AAAA|AAAA" },
                { "5.AAAA|AAAA", "5.AAAA", "5.AAAA|AAAA|AAAA" },
                { "6.AAAA|AAAA", "6.AAAA", "6.AAAA|AAAA|AAAA" },
                { "7.AAAA", NULL, "7.AAAA|AAAA" },
        };
        (void) state;

        for (size_t t = 0; t < sizeof(cases) / sizeof(cases[0]); t++) {
                struct keyhold_encstring *es = NULL;

                assert_int_equal(PARSE(cases[t].ok, &es), KEYHOLD_OK);
                assert_int_equal(keyhold_encstring_type(es), t);
                keyhold_encstring_free(es);
                if (cases[t].fewer)
                        assert_parse_fails(cases[t].fewer, KEYHOLD_E_FORMAT);
                assert_parse_fails(cases[t].more, KEYHOLD_E_FORMAT);
        }
}

static void test_empty_parts(void **state) {
        (void) state;
        assert_parse_fails("", KEYHOLD_E_FORMAT);
        assert_parse_fails("2.", KEYHOLD_E_FORMAT);
        assert_parse_fails("2.|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("2." V1_IV "||" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("2." V1_IV "|" V1_CT "|", KEYHOLD_E_FORMAT);
        assert_parse_fails("4.", KEYHOLD_E_FORMAT);
        assert_parse_fails(".AAAA", KEYHOLD_E_FORMAT);
        assert_parse_fails("|", KEYHOLD_E_FORMAT);
}

static void test_bad_base64(void **state) {
        (void) state;
        /* a character outside the alphabet, in each part */
        assert_parse_fails("2.2NokAMS6llUxk26oueMqr!==|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("2." V1_IV "|6k0QD71SJLy2WEBDkV4esiTrgkP_z7eoSedSesGLGYE=|" V1_MAC,
                           KEYHOLD_E_FORMAT);
        assert_parse_fails("2." V1_IV "|" V1_CT "|PE4sb0jpAwZW-tnyPuW43eeWvSxjvdw3xMJlPGbDlYI=",
                           KEYHOLD_E_FORMAT);
        /* missing padding */
        assert_parse_fails("2.2NokAMS6llUxk26oueMqrA|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("2." V1_IV "|6k0QD71SJLy2WEBDkV4esiTrgkP/z7eoSedSesGLGYE|" V1_MAC,
                           KEYHOLD_E_FORMAT);
        /* whitespace, line breaks, non-canonical trailing bits, padding in the middle */
        assert_parse_fails("2. " V1_IV "|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails(V1_ENC " ", KEYHOLD_E_FORMAT);
        assert_parse_fails(V1_ENC "\n", KEYHOLD_E_FORMAT);
        assert_parse_fails("2.2NokAMS6llUxk26oueMqrB==|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("4.AA==AAAA", KEYHOLD_E_FORMAT);
        assert_parse_fails("4.====", KEYHOLD_E_FORMAT);
}

static void test_iv_and_mac_lengths(void **state) {
        struct keyhold_encstring *es = NULL;
        (void) state;

        /* iv of 15 bytes (type 2 and type 0), 17 bytes */
        assert_parse_fails("2.AAECAwQFBgcICQoLDA0O|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("0.AAECAwQFBgcICQoLDA0O|" V1_CT, KEYHOLD_E_FORMAT);
        assert_parse_fails("2.AAECAwQFBgcICQoLDA0ODxA=|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        /* mac of 31 bytes, 33 bytes */
        assert_parse_fails("2." V1_IV "|" V1_CT "|PE4sb0jpAwZW+tnyPuW43eeWvSxjvdw3xMJlPGbDlQ==",
                           KEYHOLD_E_FORMAT);
        assert_parse_fails("2." V1_IV "|" V1_CT "|PE4sb0jpAwZW+tnyPuW43eeWvSxjvdw3xMJlPGbDlYIA",
                           KEYHOLD_E_FORMAT);
        /* type 1 and the RSA types have no such length rule (only the SDK's for 0 and 2) */
        assert_int_equal(PARSE("1.AAAA|AAAA|AAAA", &es), KEYHOLD_OK);
        keyhold_encstring_free(es);
}

static void test_truncations_of_v1_all_fail(void **state) {
        const char *s = V1_ENC;
        (void) state;

        for (size_t n = 0; n < strlen(s); n++) {
                struct keyhold_encstring *es = NULL;

                if (keyhold_encstring_parse(s, n, &es) != KEYHOLD_E_FORMAT)
                        fail_msg("prefix of %zu characters not rejected", n);
                assert_null(es);
        }
}

static void test_type_spellings(void **state) {
        struct keyhold_encstring *es = NULL;
        char *text = NULL;
        (void) state;

        assert_int_equal(PARSE("AesCbc256_HmacSha256_B64." V1_IV "|" V1_CT "|" V1_MAC, &es),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_type(es), KEYHOLD_ENC_AES_CBC256_HMAC);
        assert_int_equal(keyhold_encstring_format(es, &text), KEYHOLD_OK);
        assert_string_equal(text, V1_ENC); /* formatted with the digit */
        free(text);
        keyhold_encstring_free(es);

        static const struct {
                const char *s;
                enum keyhold_enc_type type;
        } names[] = {
                { "AesCbc256_B64." V2_IV "|AAAA", KEYHOLD_ENC_AES_CBC256 },
                { "AesCbc128_HmacSha256_B64.AAAA|AAAA|AAAA", KEYHOLD_ENC_AES_CBC128_HMAC },
                { "Rsa2048_OaepSha256_B64.AAAA", KEYHOLD_ENC_RSA_OAEP_SHA256 },
                { "Rsa2048_OaepSha1_B64.AAAA", KEYHOLD_ENC_RSA_OAEP_SHA1 },
                { "Rsa2048_OaepSha256_HmacSha256_B64.AAAA|AAAA", KEYHOLD_ENC_RSA_OAEP_SHA256_HMAC },
                { "Rsa2048_OaepSha1_HmacSha256_B64.AAAA|AAAA", KEYHOLD_ENC_RSA_OAEP_SHA1_HMAC },
                { "XChaCha20Poly1305_B64.AAAA", KEYHOLD_ENC_COSE },
                { "Cose_Encrypt0_B64.AAAA", KEYHOLD_ENC_COSE },
        };
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
                es = NULL;
                assert_int_equal(PARSE(names[i].s, &es), KEYHOLD_OK);
                assert_int_equal(keyhold_encstring_type(es), names[i].type);
                keyhold_encstring_free(es);
        }

        /* one spelling only: no leading zero, sign, space, other case, unknown name */
        assert_parse_fails("02." V1_IV "|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("+2." V1_IV "|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails(" 2." V1_IV "|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
        assert_parse_fails("aescbc256_hmacsha256_b64." V1_IV "|" V1_CT "|" V1_MAC,
                           KEYHOLD_E_FORMAT);
        assert_parse_fails("9.AAAA", KEYHOLD_E_FORMAT);
        assert_parse_fails("-1.AAAA", KEYHOLD_E_FORMAT);
        assert_parse_fails("2.2." V1_IV "|" V1_CT "|" V1_MAC, KEYHOLD_E_FORMAT);
}

static void test_headerless_legacy(void **state) {
        struct keyhold_encstring *es = NULL;
        (void) state;

        /* 2 parts -> type 0; 3 parts -> type 1; 1 part -> type 0 with a wrong count */
        assert_int_equal(PARSE(V2_IV "|bxAhj8/9alk6NJHwjNWVU6i8ejmCHCO2cuPX+q+2qWY=", &es),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_type(es), KEYHOLD_ENC_AES_CBC256);
        keyhold_encstring_free(es);
        es = NULL;
        assert_int_equal(PARSE(V1_IV "|" V1_CT "|" V1_MAC, &es), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_type(es), KEYHOLD_ENC_AES_CBC128_HMAC);
        keyhold_encstring_free(es);
        assert_parse_fails("AAAA", KEYHOLD_E_FORMAT);
        assert_parse_fails("AAAA|AAAA", KEYHOLD_E_FORMAT); /* type 0: iv must be 16 bytes */
}

static void test_length_limit(void **state) {
        char *s = malloc(KEYHOLD_ENCSTRING_MAX + 8);
        (void) state;

        s[0] = '7';
        s[1] = '.';
        memset(s + 2, 'A', KEYHOLD_ENCSTRING_MAX + 4);
        /* "7." and 65532 characters: the longest type 7 string accepted */
        assert_int_equal(keyhold_encstring_check(s, 2 + KEYHOLD_ENCSTRING_MAX - 4,
                                                 KEYHOLD_ENC_TYPE_BIT(7)),
                         KEYHOLD_OK);
        /* "7." and 65536 characters: valid base64, too long */
        assert_int_equal(keyhold_encstring_check(s, 2 + KEYHOLD_ENCSTRING_MAX,
                                                 KEYHOLD_ENC_TYPE_BIT(7)),
                         KEYHOLD_E_FORMAT);
        free(s);
}

static void test_check_type_mask(void **state) {
        const unsigned sym = KEYHOLD_ENC_TYPE_BIT(2) | KEYHOLD_ENC_TYPE_BIT(7);
        (void) state;

        assert_int_equal(keyhold_encstring_check(V1_ENC, strlen(V1_ENC), sym), KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_check(V5_ENC4, strlen(V5_ENC4), sym), KEYHOLD_E_TYPE);
        assert_int_equal(keyhold_encstring_check(V2_ENC, strlen(V2_ENC), sym), KEYHOLD_E_TYPE);
        assert_int_equal(keyhold_encstring_check(V5_ENC4, strlen(V5_ENC4), KEYHOLD_ENC_TYPE_BIT(4)),
                         KEYHOLD_OK);
        assert_int_equal(keyhold_encstring_check(V1_ENC, strlen(V1_ENC), 0), KEYHOLD_E_TYPE);
        assert_int_equal(keyhold_encstring_check("2.AAAA", 6, sym), KEYHOLD_E_FORMAT);
        assert_int_equal(keyhold_encstring_check(NULL, 0, sym), KEYHOLD_E_FORMAT);
        /* The length argument counts, not a NUL: V1 with a tail outside len is fine. */
        assert_int_equal(keyhold_encstring_check(V1_ENC "garbage", strlen(V1_ENC), sym),
                         KEYHOLD_OK);
}

static void test_null_arguments(void **state) {
        struct keyhold_encstring *es = NULL;
        char *text = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        (void) state;

        assert_int_equal(keyhold_encstring_parse(NULL, 0, &es), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_encstring_parse(V1_ENC, strlen(V1_ENC), NULL), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_encstring_format(NULL, &text), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_encstring_to_buffer(NULL, &buf, &len), KEYHOLD_E_INVALID);
        assert_int_equal(keyhold_encstring_from_buffer(NULL, 10, &es), KEYHOLD_E_INVALID);
        keyhold_encstring_free(NULL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_v1_parts_and_format),
                cmocka_unit_test(test_part_index_out_of_range),
                cmocka_unit_test(test_v1_buffer_form),
                cmocka_unit_test(test_v3_string_to_buffer),
                cmocka_unit_test(test_v3_buffer_to_string),
                cmocka_unit_test(test_v3_rejects_type_8),
                cmocka_unit_test(test_type_0_buffer_round_trip),
                cmocka_unit_test(test_type_7_buffer_round_trip),
                cmocka_unit_test(test_buffer_rejects),
                cmocka_unit_test(test_buffer_too_long),
                cmocka_unit_test(test_part_counts),
                cmocka_unit_test(test_empty_parts),
                cmocka_unit_test(test_bad_base64),
                cmocka_unit_test(test_iv_and_mac_lengths),
                cmocka_unit_test(test_truncations_of_v1_all_fail),
                cmocka_unit_test(test_type_spellings),
                cmocka_unit_test(test_headerless_legacy),
                cmocka_unit_test(test_length_limit),
                cmocka_unit_test(test_check_type_mask),
                cmocka_unit_test(test_null_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
