/* Base64, base64url and hex without lookup tables.
 *
 * A table indexed by a secret byte leaks that byte through the cache, so every mapping
 * here is arithmetic on masks (the technique of libsodium's codecs.c and WireGuard's
 * encoding.c). The decoder never leaves early on bad data: it folds every problem into one
 * accumulator and looks at it once at the end. Only lengths, which are public, decide
 * control flow. The same core serves the secret and the non-secret variants, so the
 * strictness the fuzz target checks on one holds for the other. */
#include "crypto/encoding.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* Masks are 0xFF (true) or 0 (false); inputs are byte values (0..255). */
static inline unsigned ct_lt(unsigned a, unsigned b) {
        return ((a - b) >> 8) & 0xFF; /* a - b wraps to a huge value exactly when a < b */
}

static inline unsigned ct_ge(unsigned a, unsigned b) {
        return ct_lt(a, b) ^ 0xFF;
}

static inline unsigned ct_eq(unsigned a, unsigned b) {
        return ct_lt(a ^ b, 1);
}

static inline unsigned ct_in(unsigned c, unsigned lo, unsigned hi) {
        return ct_ge(c, lo) & ct_ge(hi, c); /* lo <= c <= hi */
}

enum alphabet { STD, URL };

/* 0..63 → its character. c62/c63 are '+' '/' or '-' '_'. */
static inline char b64_char(unsigned x, unsigned c62, unsigned c63) {
        unsigned c = (ct_lt(x, 26) & (x + 'A')) |
                     (ct_in(x, 26, 51) & (x + 'a' - 26)) |
                     (ct_in(x, 52, 61) & (x + '0' - 52)) |
                     (ct_eq(x, 62) & c62) |
                     (ct_eq(x, 63) & c63);
        return (char) c;
}

/* Character → 0..63; *bad gets 0xFF ORed in for anything outside the alphabet, NUL and
 * '=' included. */
static inline unsigned b64_value(unsigned c, unsigned c62, unsigned c63, unsigned *bad) {
        unsigned upper = ct_in(c, 'A', 'Z'), lower = ct_in(c, 'a', 'z'), digit = ct_in(c, '0', '9');
        unsigned is62 = ct_eq(c, c62), is63 = ct_eq(c, c63);

        *bad |= (upper | lower | digit | is62 | is63) ^ 0xFF;
        return ((upper & (c - 'A')) | (lower & (c - 'a' + 26)) | (digit & (c - '0' + 52)) |
                (is62 & 62) | (is63 & 63)) & 0x3F;
}

static inline void alphabet_chars(enum alphabet a, unsigned *c62, unsigned *c63) {
        *c62 = a == URL ? '-' : '+';
        *c63 = a == URL ? '_' : '/';
}

/* Characters of data (not padding) that encode n bytes. */
static inline size_t b64_data_chars(size_t n) {
        return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0);
}

/* Length of the text for n bytes, or 0 on overflow (n > 0). */
static size_t b64_text_len(size_t n, bool padded) {
        size_t groups = n / 3 + (n % 3 != 0), len;

        if (__builtin_mul_overflow(groups, 4, &len))
                return 0;
        return padded ? len : b64_data_chars(n);
}

/* Writes the text for p[0..n) to dst (b64_text_len(n, padded) chars, no NUL). */
static void b64_encode_raw(const uint8_t *p, size_t n, enum alphabet a, bool padded, char *dst) {
        unsigned c62, c63, acc = 0, bits = 0;
        size_t o = 0;

        alphabet_chars(a, &c62, &c63);
        for (size_t i = 0; i < n; i++) {
                acc = (acc << 8) | p[i];
                bits += 8;
                while (bits >= 6) {
                        bits -= 6;
                        dst[o++] = b64_char((acc >> bits) & 0x3F, c62, c63);
                }
                acc &= (1u << bits) - 1; /* keep only the bits not yet written */
        }
        if (bits > 0)
                dst[o++] = b64_char((acc << (6 - bits)) & 0x3F, c62, c63);
        while (padded && o % 4 != 0)
                dst[o++] = '=';
}

/* Decodes text[0..len) that must be exactly the encoding of out_len bytes into out.
 * Returns 0 or -EINVAL; on -EINVAL out is wiped. Time depends only on len and out_len. */
static int b64_decode_raw(const char *text, size_t len, enum alphabet a, bool padded,
                          uint8_t *out, size_t out_len) {
        size_t data_chars = b64_data_chars(out_len), o = 0;
        unsigned c62, c63, acc = 0, bits = 0, bad = 0;

        if (out_len > 0 && len != b64_text_len(out_len, padded))
                return -EINVAL;
        if (out_len == 0 && len != 0)
                return -EINVAL;

        alphabet_chars(a, &c62, &c63);
        for (size_t i = 0; i < data_chars; i++) {
                acc = (acc << 6) | b64_value((unsigned char) text[i], c62, c63, &bad);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (uint8_t) (acc >> bits);
                        acc &= (1u << bits) - 1;
                }
        }
        /* The bits left over (2 or 4) must be zero: otherwise two texts would decode to the
         * same bytes, and the spelling would not be canonical. */
        bad |= ct_lt(0, acc);
        for (size_t i = data_chars; i < len; i++)
                bad |= ct_eq((unsigned char) text[i], '=') ^ 0xFF;

        if (bad) {
                OPENSSL_cleanse(out, out_len);
                return -EINVAL;
        }
        return 0;
}

/* The decoded length a well-formed text of len would have, or -EINVAL when no text of
 * that length (and, when padded, with those final '=') can be well formed. The padding
 * characters are not secret: they follow from the length of the value. */
static int b64_decoded_len(const char *text, size_t len, bool padded, size_t *ret) {
        if (padded) {
                size_t pad = 0;

                if (len % 4 != 0)
                        return -EINVAL;
                if (len >= 1 && text[len - 1] == '=')
                        pad++;
                if (pad == 1 && text[len - 2] == '=')
                        pad++;
                *ret = len / 4 * 3 - pad;
                return 0;
        }
        if (len % 4 == 1)
                return -EINVAL;
        *ret = len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0);
        return 0;
}

/* Encodes into a temporary, then appends once, so out is unchanged on failure. The
 * temporary is wiped: it may hold a secret's encoding. */
static int b64_append(const uint8_t *p, size_t n, enum alphabet a, bool padded,
                      struct kh_buf *out) {
        char stack[256], *heap = NULL, *dst;
        size_t len;
        int r;

        if (n == 0)
                return kh_buf_append(out, "", 0);
        len = b64_text_len(n, padded);
        if (len == 0)
                return -E2BIG;
        if (len <= sizeof(stack))
                dst = stack;
        else {
                dst = heap = malloc(len);
                if (!heap)
                        return -ENOMEM;
        }
        b64_encode_raw(p, n, a, padded, dst);
        r = kh_buf_append(out, dst, len);
        OPENSSL_cleanse(dst, len);
        free(heap);
        return r;
}

static int b64_decode_append(const char *text, size_t len, enum alphabet a, bool padded,
                             struct kh_buf *out) {
        uint8_t stack[256], *heap = NULL, *dst;
        size_t n;
        int r;

        if (!text && len > 0)
                return -EINVAL;
        r = b64_decoded_len(text, len, padded, &n);
        if (r < 0)
                return r;
        if (n == 0)
                return kh_buf_append(out, "", 0);
        if (n <= sizeof(stack))
                dst = stack;
        else {
                dst = heap = malloc(n);
                if (!heap)
                        return -ENOMEM;
        }
        r = b64_decode_raw(text, len, a, padded, dst, n);
        if (r >= 0)
                r = kh_buf_append(out, dst, n);
        OPENSSL_cleanse(dst, n);
        free(heap);
        return r;
}

int kh_base64_encode(const uint8_t *p, size_t n, struct kh_buf *out) {
        return b64_append(p, n, STD, true, out);
}

int kh_base64_encode_secret(const struct kh_secret *s, struct kh_buf *out) {
        return b64_append(kh_secret_bytes(s), kh_secret_len(s), STD, true, out);
}

int kh_base64_decode_secret(const char *text, size_t len, size_t want_len,
                            struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
        size_t text_len = want_len > 0 ? b64_text_len(want_len, true) : 0;
        int r;

        /* A secret has at least one byte; the length check comes first and is public. */
        if (text_len == 0 || len != text_len || !text)
                return -EINVAL;

        r = kh_secret_new(want_len, &s);
        if (r < 0)
                return r;

        r = b64_decode_raw(text, len, STD, true, kh_secret_bytes_mut(s), want_len);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(s);
        return 0;
}

int kh_base64_decode(const char *text, size_t len, struct kh_buf *out) {
        return b64_decode_append(text, len, STD, true, out);
}

int kh_base64url_encode(const uint8_t *p, size_t n, struct kh_buf *out) {
        return b64_append(p, n, URL, false, out);
}

int kh_base64url_decode(const char *text, size_t len, struct kh_buf *out) {
        return b64_decode_append(text, len, URL, false, out);
}

void kh_hex_encode(const uint8_t *p, size_t n, char *out) {
        for (size_t i = 0; i < n; i++) {
                unsigned hi = p[i] >> 4, lo = p[i] & 0xF;

                /* nibble + '0', plus the gap to 'a' when the nibble is above 9 */
                out[2 * i] = (char) (hi + '0' + (ct_lt(9, hi) & ('a' - '0' - 10)));
                out[2 * i + 1] = (char) (lo + '0' + (ct_lt(9, lo) & ('a' - '0' - 10)));
        }
        out[2 * n] = '\0';
}
