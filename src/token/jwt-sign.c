#include "token/jwt-sign.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "common/limits.h"
#include "crypto/encoding.h"

KH_DEFINE_CLEANUP(EVP_MD_CTX_free, EVP_MD_CTX *)
KH_DEFINE_CLEANUP(ECDSA_SIG_free, ECDSA_SIG *)
KH_DEFINE_CLEANUP(BN_free, BIGNUM *)

static int b64url_str(const char *s, struct kh_buf *out) {
        return kh_base64url_encode((const uint8_t *) s, strlen(s), out);
}

/* ECDSA gives DER; JWA 3.4 wants r||s, each left-padded to 32 bytes. */
static int der_to_es256(const uint8_t *der, size_t len, uint8_t raw[static 64]) {
        KH_CLEANUP(ECDSA_SIG_freep) ECDSA_SIG *es = NULL;
        const BIGNUM *r, *s;

        es = d2i_ECDSA_SIG(NULL, &der, (long) len);
        if (!es)
                return -EIO;
        ECDSA_SIG_get0(es, &r, &s);
        if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
                return -EIO;
        return 0;
}

static int sign_bytes(EVP_PKEY *key, enum kh_jwt_alg alg, const uint8_t *in, size_t len,
                      struct kh_buf *sig) {
        KH_CLEANUP(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        EVP_PKEY_CTX *pctx = NULL;
        uint8_t tmp[1024], raw[64];
        size_t n = sizeof(tmp);

        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_DigestSignInit_ex(ctx, &pctx, alg == KH_JWT_ALG_EDDSA ? NULL : "SHA256", NULL,
                                  NULL, key, NULL) != 1)
                return -EIO;
        if (alg == KH_JWT_ALG_PS256 &&
            (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
             EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1 ||
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1))
                return -EIO;
        if (EVP_DigestSign(ctx, tmp, &n, in, len) != 1)
                return -EIO;
        if (alg != KH_JWT_ALG_ES256)
                return kh_base64url_encode(tmp, n, sig);
        if (der_to_es256(tmp, n, raw) < 0)
                return -EIO;
        return kh_base64url_encode(raw, sizeof(raw), sig);
}

int kh_jwt_sign(EVP_PKEY *key, enum kh_jwt_alg alg, const char *kid, const char *claims_json,
                struct kh_buf *out) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf t = { 0 };
        KH_CLEANUP_FREE char *header = NULL;
        json_auto_t *h = NULL;
        int r;

        if (!kh_jwt_alg_name(alg) || !kh_jwt_key_fits_alg(key, alg) || !claims_json)
                return -EINVAL;
        if (EVP_PKEY_get_bits(key) > 8192)
                return -EINVAL; /* the signature buffer in sign_bytes() */

        h = json_pack("{s:s, s:s}", "alg", kh_jwt_alg_name(alg), "typ", "at+jwt");
        if (!h || (kid && json_object_set_new(h, "kid", json_string(kid)) < 0))
                return -ENOMEM;
        header = json_dumps(h, JSON_COMPACT);
        if (!header)
                return -ENOMEM;

        kh_buf_init(&t, KH_TOKEN_MAX, true);
        r = b64url_str(header, &t);
        if (r >= 0)
                r = kh_buf_append(&t, ".", 1);
        if (r >= 0)
                r = b64url_str(claims_json, &t);
        if (r >= 0)
                r = kh_buf_append(&t, ".", 1);
        if (r >= 0)
                r = sign_bytes(key, alg, t.data, t.len - 1, &t);
        if (r < 0) {
                ERR_clear_error();
                return r;
        }
        return kh_buf_append(out, t.data, t.len);
}

/* base64url of a big-endian BIGNUM parameter of key, as a new JSON string. */
static json_t *bn_param(EVP_PKEY *key, const char *name, int pad) {
        KH_CLEANUP(BN_freep) BIGNUM *bn = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        uint8_t bytes[2048];
        int n;

        if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
                return NULL;
        n = pad ? BN_bn2binpad(bn, bytes, pad) : BN_bn2bin(bn, bytes);
        if (n <= 0 || n > (int) sizeof(bytes))
                return NULL;
        kh_buf_init(&b, 4096, false);
        if (kh_base64url_encode(bytes, (size_t) n, &b) < 0)
                return NULL;
        return json_stringn((const char *) b.data, b.len);
}

static json_t *raw_pub(EVP_PKEY *key) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        uint8_t x[32];
        size_t n = sizeof(x);

        if (EVP_PKEY_get_raw_public_key(key, x, &n) != 1 || n != sizeof(x))
                return NULL;
        kh_buf_init(&b, 64, false);
        if (kh_base64url_encode(x, n, &b) < 0)
                return NULL;
        return json_stringn((const char *) b.data, b.len);
}

int kh_jwk_public_json(EVP_PKEY *key, const char *kid, enum kh_jwt_alg alg, char **ret_json) {
        json_auto_t *jwk = NULL, *doc = NULL;
        char *s;
        int r;

        if (!kh_jwt_alg_name(alg) || !kh_jwt_key_fits_alg(key, alg) ||
            EVP_PKEY_get_bits(key) > 16384)
                return -EINVAL;

        jwk = json_pack("{s:s, s:s}", "use", "sig", "alg", kh_jwt_alg_name(alg));
        if (!jwk)
                return -ENOMEM;
        if (kid && json_object_set_new(jwk, "kid", json_string(kid)) < 0)
                return -ENOMEM;

        switch (alg) {
        case KH_JWT_ALG_RS256:
        case KH_JWT_ALG_PS256:
                r = json_object_set_new(jwk, "kty", json_string("RSA")) |
                    json_object_set_new(jwk, "n", bn_param(key, OSSL_PKEY_PARAM_RSA_N, 0)) |
                    json_object_set_new(jwk, "e", bn_param(key, OSSL_PKEY_PARAM_RSA_E, 0));
                break;
        case KH_JWT_ALG_ES256:
                r = json_object_set_new(jwk, "kty", json_string("EC")) |
                    json_object_set_new(jwk, "crv", json_string("P-256")) |
                    json_object_set_new(jwk, "x", bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, 32)) |
                    json_object_set_new(jwk, "y", bn_param(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32));
                break;
        case KH_JWT_ALG_EDDSA:
                r = json_object_set_new(jwk, "kty", json_string("OKP")) |
                    json_object_set_new(jwk, "crv", json_string("Ed25519")) |
                    json_object_set_new(jwk, "x", raw_pub(key));
                break;
        case KH_JWT_ALG_NONE:
        default:
                return -EINVAL;
        }
        ERR_clear_error();
        if (r != 0)
                return -ENOMEM;

        doc = json_pack("{s:[O]}", "keys", jwk);
        if (!doc)
                return -ENOMEM;
        s = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
        if (!s)
                return -ENOMEM;
        *ret_json = s;
        return 0;
}
