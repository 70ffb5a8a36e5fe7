/* Status strings, wiping, and the strict base64 codec every other module uses. The codec
 * has no tables indexed by data: key material passes through it, so it runs in time that
 * depends on the length only (as libsodium's sodium_bin2base64 / base642bin). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "keyhold/keyhold.h"
#include "internal.h"
#include "keyhold/client.h"

const char *keyhold_strerror(int status) {
        switch (status) {
        case KEYHOLD_OK:
                return "success";
        case KEYHOLD_E_INVALID:
                return "invalid argument";
        case KEYHOLD_E_FORMAT:
                return "malformed EncString, base64 or key encoding";
        case KEYHOLD_E_TYPE:
                return "EncString type not accepted here";
        case KEYHOLD_E_MAC:
                return "integrity check failed";
        case KEYHOLD_E_DECRYPT:
                return "decryption failed";
        case KEYHOLD_E_KEY:
                return "wrong key size or kind";
        case KEYHOLD_E_NOMEM:
                return "out of memory";
        case KEYHOLD_E_CRYPTO:
                return "the crypto library failed";
        /* keyhold/client.h */
        case KEYHOLD_E_HTTP:
                return "the server could not be reached";
        case KEYHOLD_E_BAD_REQUEST:
                return "the server refused the request as invalid";
        case KEYHOLD_E_UNAUTHORIZED:
                return "the server did not accept the token";
        case KEYHOLD_E_FORBIDDEN:
                return "not allowed";
        case KEYHOLD_E_NOT_FOUND:
                return "not found";
        case KEYHOLD_E_CONFLICT:
                return "conflict";
        case KEYHOLD_E_SERVER:
                return "the server refused the request";
        case KEYHOLD_E_RESPONSE:
                return "the server's answer is not as documented";
        case KEYHOLD_E_DENIED:
                return "the request was denied";
        case KEYHOLD_E_EXPIRED:
                return "the request expired";
        case KEYHOLD_E_UNTRUSTED:
                return "the device is not trusted";
        default:
                return "unknown error";
        }
}

void keyhold_wipe_free(void *p, size_t len) {
        if (!p)
                return;
        OPENSSL_cleanse(p, len);
        free(p);
}

void khl_secret_buf_wipe(struct khl_secret_buf *b) {
        keyhold_wipe_free(b->data, b->cap);
        b->data = NULL;
        b->cap = 0;
}

int khl_secret_buf_alloc(struct khl_secret_buf *b, size_t cap) {
        b->data = malloc(cap ? cap : 1);
        if (!b->data)
                return KEYHOLD_E_NOMEM;
        b->cap = cap ? cap : 1;
        return KEYHOLD_OK;
}

/* 0xff if a == b, else 0; for a, b < 256 and without a branch. */
static unsigned ct_eq(unsigned a, unsigned b) {
        return (((0u - (a ^ b)) >> 8) & 0xff) ^ 0xff;
}

/* 0xff if a > b, else 0; for a, b < 256. */
static unsigned ct_gt(unsigned a, unsigned b) {
        return ((b - a) >> 8) & 0xff;
}

/* The character of the 6-bit value x. */
static char b64_char(unsigned x) {
        unsigned c = x + 'A';

        c += ((25u - x) >> 8) & 6;   /* 26..51: 'a'.. */
        c -= ((51u - x) >> 8) & 75;  /* 52..61: '0'.. */
        c -= ((61u - x) >> 8) & 15;  /* 62: '+' */
        c += ((62u - x) >> 8) & 3;   /* 63: '/' */
        return (char) c;
}

/* The 6-bit value of character c, or 0xff if c is not in the alphabet. */
static unsigned b64_value(unsigned char ch) {
        unsigned c = ch, x;

        x = (ct_gt(c, 'A' - 1) & ct_gt('Z' + 1, c) & (c - 'A')) |
            (ct_gt(c, 'a' - 1) & ct_gt('z' + 1, c) & (c - ('a' - 26))) |
            (ct_gt(c, '0' - 1) & ct_gt('9' + 1, c) & (c - ('0' - 52))) | (ct_eq(c, '+') & 62) |
            (ct_eq(c, '/') & 63);
        return x | (ct_eq(x, 0) & (ct_eq(c, 'A') ^ 0xff));
}

size_t khl_base64_len(size_t len) {
        if (len > (SIZE_MAX - 1) / 4 * 3 - 3)
                return 0;
        return (len + 2) / 3 * 4;
}

void khl_base64_encode_to(const uint8_t *in, size_t len, char *out) {
        size_t i = 0, o = 0;

        for (; i + 3 <= len; i += 3) {
                uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8 | in[i + 2];
                out[o++] = b64_char(v >> 18);
                out[o++] = b64_char((v >> 12) & 63);
                out[o++] = b64_char((v >> 6) & 63);
                out[o++] = b64_char(v & 63);
        }
        if (len - i == 1) {
                uint32_t v = (uint32_t) in[i] << 16;
                out[o++] = b64_char(v >> 18);
                out[o++] = b64_char((v >> 12) & 63);
                out[o++] = '=';
                out[o++] = '=';
        } else if (len - i == 2) {
                uint32_t v = (uint32_t) in[i] << 16 | (uint32_t) in[i + 1] << 8;
                out[o++] = b64_char(v >> 18);
                out[o++] = b64_char((v >> 12) & 63);
                out[o++] = b64_char((v >> 6) & 63);
                out[o++] = '=';
        }
}

int khl_base64_decode_to(const char *in, size_t len, uint8_t *out, size_t *out_len) {
        const unsigned char *s = (const unsigned char *) in;
        size_t pad = 0, o = 0, body;
        unsigned bad = 0;

        if (len % 4 != 0)
                return KEYHOLD_E_FORMAT;
        if (len > 0 && s[len - 1] == '=')
                pad = s[len - 2] == '=' ? 2 : 1;
        body = len - pad; /* characters that must be in the alphabet */

        for (size_t i = 0; i < len; i += 4) {
                unsigned v[4] = { 0, 0, 0, 0 };
                size_t n = body - i < 4 ? body - i : 4; /* 4, or 2..3 in the last quantum */

                for (size_t j = 0; j < n; j++) {
                        v[j] = b64_value(s[i + j]);
                        bad |= v[j];
                }
                uint32_t w = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
                out[o++] = (uint8_t) (w >> 16);
                if (n >= 3)
                        out[o++] = (uint8_t) (w >> 8);
                if (n == 4)
                        out[o++] = (uint8_t) w;
                /* The bits below the last byte must be zero: one spelling per byte string.
                 * (x + 0xff) & 0x100 is set iff 0 < x <= 0xff, with no branch on x. */
                if (n == 3)
                        bad |= ((w & 0xffu) + 0xffu) & 0x100u;
                else if (n == 2)
                        bad |= (((w & 0xffffu) + 0xffffu) >> 8) & 0x100u;
        }
        if (bad & ~63u) /* a value above 63: a character outside the alphabet */
                return KEYHOLD_E_FORMAT;
        *out_len = o;
        return KEYHOLD_OK;
}

int keyhold_base64_encode(const uint8_t *in, size_t len, char **ret) {
        char *out;
        size_t n;

        if ((!in && len > 0) || !ret)
                return KEYHOLD_E_INVALID;
        n = khl_base64_len(len);
        if (len > 0 && n == 0)
                return KEYHOLD_E_INVALID;
        out = malloc(n + 1);
        if (!out)
                return KEYHOLD_E_NOMEM;
        khl_base64_encode_to(in, len, out);
        out[n] = '\0';
        *ret = out;
        return KEYHOLD_OK;
}

int keyhold_base64_decode(const char *in, size_t len, uint8_t **ret, size_t *ret_len) {
        struct khl_secret_buf buf = { NULL, 0 };
        size_t n = 0;
        int r;

        if ((!in && len > 0) || !ret || !ret_len)
                return KEYHOLD_E_INVALID;
        if (len % 4 != 0)
                return KEYHOLD_E_FORMAT;
        r = khl_secret_buf_alloc(&buf, len / 4 * 3);
        if (r < 0)
                return r;
        r = khl_base64_decode_to(in, len, buf.data, &n);
        if (r < 0) {
                khl_secret_buf_wipe(&buf);
                return r;
        }
        /* The buffer may be up to two bytes longer than n: wipe those now, since the
         * caller will wipe only n. */
        OPENSSL_cleanse(buf.data + n, buf.cap - n);
        *ret = buf.data;
        *ret_len = n;
        return KEYHOLD_OK;
}
