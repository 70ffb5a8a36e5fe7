/* EncStrings (libkeyhold): parsing is strict, so an accepted string has one canonical text,
 * and the text of a parsed value parses back to the same type and parts; a string whose
 * type is a digit is already that text, byte for byte. keyhold_encstring_check() agrees
 * with the parser, the buffer form round-trips both ways, and decryption of arbitrary
 * input never succeeds except on the committed vector. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "keyhold/encstring.h"

/* V1's key (bytes 0..63) and V2's (bytes 0..31): spec/encstring.md section 8. */
static const uint8_t key64[64] = {
        0,  1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,
        22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43,
        44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63,
};
static const char v1_pt[] = "Bitwarden SDK test vector";

static bool same_parts(const struct keyhold_encstring *a, const struct keyhold_encstring *b) {
        if (keyhold_encstring_type(a) != keyhold_encstring_type(b) ||
            keyhold_encstring_n_parts(a) != keyhold_encstring_n_parts(b))
                return false;
        for (size_t i = 0; i < keyhold_encstring_n_parts(a); i++) {
                const uint8_t *pa, *pb;
                size_t la, lb;

                CHECK(keyhold_encstring_part(a, i, &pa, &la) == KEYHOLD_OK);
                CHECK(keyhold_encstring_part(b, i, &pb, &lb) == KEYHOLD_OK);
                CHECK(la > 0 && lb > 0);
                if (la != lb || memcmp(pa, pb, la) != 0)
                        return false;
        }
        return true;
}

/* Buffer form of es, when it has one, parses back to the same value. */
static void check_buffer(const struct keyhold_encstring *es) {
        enum keyhold_enc_type t = keyhold_encstring_type(es);
        struct keyhold_encstring *back = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        int r = keyhold_encstring_to_buffer(es, &buf, &len);

        if (t != KEYHOLD_ENC_AES_CBC256 && t != KEYHOLD_ENC_AES_CBC256_HMAC &&
            t != KEYHOLD_ENC_COSE) {
                CHECK(r == KEYHOLD_E_TYPE && !buf);
                return;
        }
        CHECK(r == KEYHOLD_OK);
        CHECK(len >= 2 && buf[0] == (uint8_t) t);
        CHECK(keyhold_encstring_from_buffer(buf, len, &back) == KEYHOLD_OK);
        CHECK(same_parts(es, back));
        keyhold_encstring_free(back);
        free(buf);
}

static void check_text(const char *s, size_t size) {
        struct keyhold_encstring *es = NULL, *again = NULL;
        char *text = NULL;
        int r = keyhold_encstring_parse(s, size, &es);
        unsigned t;

        CHECK(r == KEYHOLD_OK || r == KEYHOLD_E_FORMAT);
        CHECK(keyhold_encstring_check(s, size, ~0u) == r);
        if (r != KEYHOLD_OK) {
                CHECK(es == NULL);
                return;
        }
        t = keyhold_encstring_type(es);
        CHECK(t <= KEYHOLD_ENC_COSE);
        CHECK(keyhold_encstring_check(s, size, ~KEYHOLD_ENC_TYPE_BIT(t)) == KEYHOLD_E_TYPE);
        CHECK(keyhold_encstring_check(s, size, KEYHOLD_ENC_TYPE_BIT(t)) == KEYHOLD_OK);
        CHECK(keyhold_encstring_n_parts(es) >= 1 && keyhold_encstring_n_parts(es) <= 3);

        CHECK(keyhold_encstring_format(es, &text) == KEYHOLD_OK);
        CHECK(keyhold_encstring_parse(text, strlen(text), &again) == KEYHOLD_OK);
        CHECK(same_parts(es, again));
        /* the canonical spelling: a digit type means the input was the text itself */
        if (size >= 2 && s[0] >= '0' && s[0] <= '7' && s[1] == '.')
                CHECK(strlen(text) == size && memcmp(text, s, size) == 0);
        check_buffer(es);

        keyhold_encstring_free(again);
        keyhold_encstring_free(es);
        free(text);
}

/* The input as a buffer form: accepted buffers are their own canonical bytes. */
static void check_raw_buffer(const uint8_t *data, size_t size) {
        struct keyhold_encstring *es = NULL, *again = NULL;
        uint8_t *buf = NULL;
        char *text = NULL;
        size_t len = 0;
        int r = keyhold_encstring_from_buffer(data, size, &es);

        CHECK(r == KEYHOLD_OK || r == KEYHOLD_E_FORMAT || r == KEYHOLD_E_TYPE);
        if (r != KEYHOLD_OK)
                return;
        CHECK(keyhold_encstring_to_buffer(es, &buf, &len) == KEYHOLD_OK);
        CHECK(len == size && memcmp(buf, data, size) == 0);
        CHECK(keyhold_encstring_format(es, &text) == KEYHOLD_OK);
        CHECK(keyhold_encstring_parse(text, strlen(text), &again) == KEYHOLD_OK);
        CHECK(same_parts(es, again));
        keyhold_encstring_free(again);
        keyhold_encstring_free(es);
        free(text);
        free(buf);
}

static void check_decrypt(const char *s, size_t size) {
        uint8_t *pt = NULL;
        size_t len = 0;
        int r = keyhold_aes_decrypt(key64, 64, s, size, &pt, &len);

        CHECK(r == KEYHOLD_OK || r == KEYHOLD_E_FORMAT || r == KEYHOLD_E_TYPE ||
              r == KEYHOLD_E_MAC || r == KEYHOLD_E_DECRYPT);
        if (r == KEYHOLD_OK) /* a forgery would need the MAC key: only V1 itself opens */
                CHECK(len == sizeof(v1_pt) - 1 && memcmp(pt, v1_pt, len) == 0);
        keyhold_wipe_free(pt, len);

        /* Type 0 has no MAC: garbage may decrypt to garbage, but must not crash. */
        pt = NULL;
        len = 0;
        r = keyhold_aes_decrypt(key64, 32, s, size, &pt, &len);
        CHECK(r == KEYHOLD_OK || r == KEYHOLD_E_FORMAT || r == KEYHOLD_E_TYPE ||
              r == KEYHOLD_E_DECRYPT);
        keyhold_wipe_free(pt, len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size > KEYHOLD_ENCSTRING_MAX + 16)
                return 0;
        check_text((const char *) data, size);
        check_raw_buffer(data, size);
        check_decrypt((const char *) data, size);
        return 0;
}
