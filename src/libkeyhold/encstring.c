/* EncString syntax (spec/encstring.md sections 2 and 3): a parsed EncString is its type
 * and its decoded parts, kept in one buffer. Parsing is total and strict: one spelling of
 * each part (canonical base64), the exact part count of the type, and the lengths the
 * SDK checks; anything else is KEYHOLD_E_FORMAT, never a guess. Nothing here is secret:
 * EncStrings are ciphertext. */
#include <string.h>

#include "keyhold/encstring.h"
#include "internal.h"

#define PARTS_MAX 3

struct keyhold_encstring {
        enum keyhold_enc_type type;
        size_t n_parts;
        const uint8_t *parts[PARTS_MAX]; /* into data, in string order */
        size_t lens[PARTS_MAX];
        uint8_t data[]; /* the decoded parts, back to back */
};

/* Parts per type, in string order: 0 iv|ct; 1, 2 iv|ct|mac; 3, 4 ct; 5, 6 ct|mac; 7 cose. */
static const size_t type_parts[] = { 2, 3, 3, 1, 1, 2, 2, 1 };

/* The server's EncryptionType names (bitwarden/server EncryptionType.cs), and the SDK's
 * name for 7. Case-sensitive, as Enum.TryParse is by default. */
static const struct {
        const char *name;
        enum keyhold_enc_type type;
} type_names[] = {
        { "AesCbc256_B64", KEYHOLD_ENC_AES_CBC256 },
        { "AesCbc128_HmacSha256_B64", KEYHOLD_ENC_AES_CBC128_HMAC },
        { "AesCbc256_HmacSha256_B64", KEYHOLD_ENC_AES_CBC256_HMAC },
        { "Rsa2048_OaepSha256_B64", KEYHOLD_ENC_RSA_OAEP_SHA256 },
        { "Rsa2048_OaepSha1_B64", KEYHOLD_ENC_RSA_OAEP_SHA1 },
        { "Rsa2048_OaepSha256_HmacSha256_B64", KEYHOLD_ENC_RSA_OAEP_SHA256_HMAC },
        { "Rsa2048_OaepSha1_HmacSha256_B64", KEYHOLD_ENC_RSA_OAEP_SHA1_HMAC },
        { "XChaCha20Poly1305_B64", KEYHOLD_ENC_COSE },
        { "Cose_Encrypt0_B64", KEYHOLD_ENC_COSE },
};

/* One decimal digit 0..7 (no sign, no leading zero, no space) or one of the names. */
static int parse_type(const char *s, size_t len, enum keyhold_enc_type *ret) {
        if (len == 1 && s[0] >= '0' && s[0] <= '7') {
                *ret = (enum keyhold_enc_type) (s[0] - '0');
                return KEYHOLD_OK;
        }
        for (size_t i = 0; i < KHL_ELEMENTSOF(type_names); i++)
                if (strlen(type_names[i].name) == len && memcmp(type_names[i].name, s, len) == 0) {
                        *ret = type_names[i].type;
                        return KEYHOLD_OK;
                }
        return KEYHOLD_E_FORMAT;
}

/* The SDK's length checks (section 2): the iv of types 0 and 2, the mac of type 2. */
static bool part_lengths_ok(const struct keyhold_encstring *es) {
        switch (es->type) {
        case KEYHOLD_ENC_AES_CBC256:
                return es->lens[0] == KHL_AES_IV_LEN;
        case KEYHOLD_ENC_AES_CBC256_HMAC:
                return es->lens[0] == KHL_AES_IV_LEN && es->lens[2] == KHL_MAC_LEN;
        default:
                return true;
        }
}

static struct keyhold_encstring *encstring_alloc(size_t data_len) {
        if (data_len > KEYHOLD_ENCSTRING_MAX)
                return NULL; /* callers bound it; this keeps the sum below from overflowing */
        return calloc(1, sizeof(struct keyhold_encstring) + data_len);
}

int keyhold_encstring_parse(const char *s, size_t len, struct keyhold_encstring **ret) {
        KHL_CLEANUP(keyhold_encstring_freep) struct keyhold_encstring *es = NULL;
        const char *dot, *body, *part[PARTS_MAX], *end;
        size_t body_len, part_len[PARTS_MAX], n = 0, o = 0;
        enum keyhold_enc_type type;
        int r;

        if (!s || !ret)
                return KEYHOLD_E_INVALID;
        if (len == 0 || len > KEYHOLD_ENCSTRING_MAX)
                return KEYHOLD_E_FORMAT;

        /* Split the parts first (base64 has neither '.' nor '|'). */
        dot = memchr(s, '.', len);
        body = dot ? dot + 1 : s;
        body_len = len - (size_t) (body - s);
        end = body + body_len;
        for (const char *p = body;; n++) {
                const char *bar = memchr(p, '|', (size_t) (end - p));

                if (n == PARTS_MAX)
                        return KEYHOLD_E_FORMAT;
                part[n] = p;
                part_len[n] = (size_t) ((bar ? bar : end) - p);
                if (part_len[n] == 0)
                        return KEYHOLD_E_FORMAT;
                if (!bar) {
                        n++;
                        break;
                }
                p = bar + 1;
        }

        if (dot) {
                r = parse_type(s, (size_t) (dot - s), &type);
                if (r < 0)
                        return r;
        } else /* headerless legacy (SDK split_enc_string, server EncryptedStringAttribute) */
                type = n == 3 ? KEYHOLD_ENC_AES_CBC128_HMAC : KEYHOLD_ENC_AES_CBC256;
        if (n != type_parts[type])
                return KEYHOLD_E_FORMAT;

        es = encstring_alloc(body_len / 4 * 3);
        if (!es)
                return KEYHOLD_E_NOMEM;
        es->type = type;
        es->n_parts = n;
        for (size_t i = 0; i < n; i++) {
                size_t dec_len = 0;

                r = khl_base64_decode_to(part[i], part_len[i], es->data + o, &dec_len);
                if (r < 0)
                        return r;
                if (dec_len == 0)
                        return KEYHOLD_E_FORMAT; /* unreachable: a non-empty text decodes to bytes */
                es->parts[i] = es->data + o;
                es->lens[i] = dec_len;
                o += dec_len;
        }
        if (!part_lengths_ok(es))
                return KEYHOLD_E_FORMAT;

        *ret = KHL_TAKE_PTR(es);
        return KEYHOLD_OK;
}

void keyhold_encstring_free(struct keyhold_encstring *es) {
        free(es);
}

enum keyhold_enc_type keyhold_encstring_type(const struct keyhold_encstring *es) {
        return es->type;
}

size_t keyhold_encstring_n_parts(const struct keyhold_encstring *es) {
        return es->n_parts;
}

int keyhold_encstring_part(const struct keyhold_encstring *es, size_t i, const uint8_t **data,
                           size_t *len) {
        if (!es || !data || !len || i >= es->n_parts)
                return KEYHOLD_E_INVALID;
        *data = es->parts[i];
        *len = es->lens[i];
        return KEYHOLD_OK;
}

int khl_encstring_format_parts(enum keyhold_enc_type type, size_t n,
                               const uint8_t *const parts[], const size_t lens[], char **ret) {
        size_t total = 2 + n, o = 0; /* "N." and a '|' between parts, or the NUL */
        char *out;

        if ((unsigned) type > KEYHOLD_ENC_COSE || n == 0 || n > PARTS_MAX || !ret)
                return KEYHOLD_E_INVALID;
        for (size_t i = 0; i < n; i++) {
                size_t b = khl_base64_len(lens[i]);

                if (!parts[i] || lens[i] == 0 || b == 0 || __builtin_add_overflow(total, b, &total))
                        return KEYHOLD_E_INVALID;
        }
        out = malloc(total);
        if (!out)
                return KEYHOLD_E_NOMEM;
        out[o++] = (char) ('0' + type);
        out[o++] = '.';
        for (size_t i = 0; i < n; i++) {
                if (i > 0)
                        out[o++] = '|';
                khl_base64_encode_to(parts[i], lens[i], out + o);
                o += khl_base64_len(lens[i]);
        }
        out[o] = '\0';
        *ret = out;
        return KEYHOLD_OK;
}

int keyhold_encstring_format(const struct keyhold_encstring *es, char **ret) {
        if (!es)
                return KEYHOLD_E_INVALID;
        return khl_encstring_format_parts(es->type, es->n_parts, es->parts, es->lens, ret);
}

int keyhold_encstring_to_buffer(const struct keyhold_encstring *es, uint8_t **ret, size_t *len) {
        size_t order[PARTS_MAX], n = 0, total = 1, o = 0;
        uint8_t *out;

        if (!es || !ret || !len)
                return KEYHOLD_E_INVALID;
        switch (es->type) {
        case KEYHOLD_ENC_AES_CBC256: /* 0x00 iv ct */
        case KEYHOLD_ENC_COSE:       /* 0x07 cose */
                for (n = 0; n < es->n_parts; n++)
                        order[n] = n;
                break;
        case KEYHOLD_ENC_AES_CBC256_HMAC: /* 0x02 iv mac ct: not the string's order */
                order[0] = 0;
                order[1] = 2;
                order[2] = 1;
                n = 3;
                break;
        default:
                return KEYHOLD_E_TYPE;
        }
        for (size_t i = 0; i < n; i++)
                total += es->lens[i]; /* parts of a parsed string: far below SIZE_MAX */
        out = malloc(total);
        if (!out)
                return KEYHOLD_E_NOMEM;
        out[o++] = (uint8_t) es->type;
        for (size_t i = 0; i < n; i++) {
                memcpy(out + o, es->parts[order[i]], es->lens[order[i]]);
                o += es->lens[order[i]];
        }
        *ret = out;
        *len = total;
        return KEYHOLD_OK;
}

int keyhold_encstring_from_buffer(const uint8_t *buf, size_t len,
                                  struct keyhold_encstring **ret) {
        struct keyhold_encstring *es;
        size_t min;

        if (!buf || !ret)
                return KEYHOLD_E_INVALID;
        if (len == 0 || len > KEYHOLD_ENCSTRING_BUFFER_MAX)
                return KEYHOLD_E_FORMAT;
        switch (buf[0]) {
        case KEYHOLD_ENC_AES_CBC256:
                min = 1 + KHL_AES_IV_LEN + 1;
                break;
        case KEYHOLD_ENC_AES_CBC256_HMAC:
                min = 1 + KHL_AES_IV_LEN + KHL_MAC_LEN + 1;
                break;
        case KEYHOLD_ENC_COSE:
                min = 2;
                break;
        case KEYHOLD_ENC_AES_CBC128_HMAC:
        case KEYHOLD_ENC_RSA_OAEP_SHA256:
        case KEYHOLD_ENC_RSA_OAEP_SHA1:
        case KEYHOLD_ENC_RSA_OAEP_SHA256_HMAC:
        case KEYHOLD_ENC_RSA_OAEP_SHA1_HMAC:
                return KEYHOLD_E_TYPE; /* real types without a buffer form */
        default:
                return KEYHOLD_E_FORMAT;
        }
        if (len < min)
                return KEYHOLD_E_FORMAT;

        es = encstring_alloc(len - 1);
        if (!es)
                return KEYHOLD_E_NOMEM;
        memcpy(es->data, buf + 1, len - 1);
        es->type = (enum keyhold_enc_type) buf[0];
        switch (es->type) {
        case KEYHOLD_ENC_AES_CBC256:
                es->n_parts = 2;
                es->parts[0] = es->data;
                es->lens[0] = KHL_AES_IV_LEN;
                es->parts[1] = es->data + KHL_AES_IV_LEN;
                es->lens[1] = len - 1 - KHL_AES_IV_LEN;
                break;
        case KEYHOLD_ENC_AES_CBC256_HMAC:
                es->n_parts = 3;
                es->parts[0] = es->data;
                es->lens[0] = KHL_AES_IV_LEN;
                es->parts[2] = es->data + KHL_AES_IV_LEN;
                es->lens[2] = KHL_MAC_LEN;
                es->parts[1] = es->data + KHL_AES_IV_LEN + KHL_MAC_LEN;
                es->lens[1] = len - 1 - KHL_AES_IV_LEN - KHL_MAC_LEN;
                break;
        default: /* KEYHOLD_ENC_COSE */
                es->n_parts = 1;
                es->parts[0] = es->data;
                es->lens[0] = len - 1;
                break;
        }
        *ret = es;
        return KEYHOLD_OK;
}

int khl_encstring_parse_typed(const char *s, size_t len, unsigned type_mask,
                              struct keyhold_encstring **ret) {
        KHL_CLEANUP(keyhold_encstring_freep) struct keyhold_encstring *es = NULL;
        int r;

        r = keyhold_encstring_parse(s, len, &es);
        if (r < 0)
                return r;
        if (!(type_mask & KEYHOLD_ENC_TYPE_BIT(es->type)))
                return KEYHOLD_E_TYPE;
        *ret = KHL_TAKE_PTR(es);
        return KEYHOLD_OK;
}

int keyhold_encstring_check(const char *s, size_t len, unsigned type_mask) {
        KHL_CLEANUP(keyhold_encstring_freep) struct keyhold_encstring *es = NULL;

        if (!s)
                return KEYHOLD_E_FORMAT;
        return khl_encstring_parse_typed(s, len, type_mask, &es);
}
