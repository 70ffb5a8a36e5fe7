/* Compact JWS parsing and signature verification. The claim policy is in jwt-claims.c. */
#include "token/jwt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/limits.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "token/jwt-internal.h"

KH_DEFINE_CLEANUP(EVP_MD_CTX_free, EVP_MD_CTX *)
KH_DEFINE_CLEANUP(ECDSA_SIG_free, ECDSA_SIG *)
KH_DEFINE_CLEANUP(BN_free, BIGNUM *)

#define ES256_SIG_LEN 64
#define RSA_MIN_BITS 2048

/* The order n of P-256 (SEC 2), big-endian: r and s must lie in [1, n-1]. */
static const uint8_t p256_order[32] = {
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84,
        0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
};

static const struct {
        const char *name;
        enum kh_jwt_alg alg;
} algs[] = {
        { "RS256", KH_JWT_ALG_RS256 },
        { "PS256", KH_JWT_ALG_PS256 },
        { "ES256", KH_JWT_ALG_ES256 },
        { "EdDSA", KH_JWT_ALG_EDDSA },
};

/* Header parameters that would let the token name or carry its own key (RFC 7515 4.1):
 * keys come only from the issuer's JWKS. "crit" asks us to understand extensions we do
 * not implement, so it is refused too (RFC 7515 4.1.11). */
static const char *const refused_headers[] = { "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256",
                                               "crit" };

const char *kh_jwt_alg_name(enum kh_jwt_alg alg) {
        for (size_t i = 0; i < KH_ELEMENTSOF(algs); i++)
                if (algs[i].alg == alg)
                        return algs[i].name;
        return NULL;
}

enum kh_jwt_alg kh_jwt_alg_from_name(const char *name) {
        /* exact comparison: "none", "None", "HS256", "rs256" all end up here as NONE */
        for (size_t i = 0; i < KH_ELEMENTSOF(algs); i++)
                if (strcmp(algs[i].name, name) == 0)
                        return algs[i].alg;
        return KH_JWT_ALG_NONE;
}

struct kh_jwt *kh_jwt_free(struct kh_jwt *jwt) {
        if (!jwt)
                return NULL;
        json_decref(jwt->header);
        json_decref(jwt->payload);
        if (jwt->text) {
                OPENSSL_cleanse(jwt->text, jwt->text_len);
                free(jwt->text);
        }
        kh_buf_free(&jwt->sig);
        OPENSSL_cleanse(jwt, sizeof(*jwt));
        free(jwt);
        return NULL;
}

/* Decodes one base64url segment into a JSON object. */
static int decode_object(const char *seg, size_t len, json_t **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf raw = { 0 };
        json_t *j;
        int r;

        kh_buf_init(&raw, KH_TOKEN_MAX, true);
        if (len == 0)
                return -KH_E_INVALID_TOKEN;
        r = kh_base64url_decode(seg, len, &raw);
        if (r == -ENOMEM)
                return r;
        if (r < 0 || raw.len == 0)
                return -KH_E_INVALID_TOKEN;

        j = json_loadb((const char *) raw.data, raw.len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(j)) {
                json_decref(j);
                return -KH_E_INVALID_TOKEN;
        }
        *ret = j;
        return 0;
}

int kh_jwt_parse(const char *token, size_t len, struct kh_jwt **ret) {
        KH_CLEANUP(kh_jwt_freep) struct kh_jwt *jwt = NULL;
        const char *dot1, *dot2;
        json_t *alg, *kid;
        int r;

        if (!token || len == 0 || len > KH_TOKEN_MAX)
                return -KH_E_INVALID_TOKEN;

        dot1 = memchr(token, '.', len);
        if (!dot1)
                return -KH_E_INVALID_TOKEN;
        dot2 = memchr(dot1 + 1, '.', len - (size_t) (dot1 + 1 - token));
        if (!dot2)
                return -KH_E_INVALID_TOKEN;
        /* a fourth segment (JWE has five) or trailing data; base64url has no '.' so the
         * decoders below would also refuse it, but say it here */
        if (memchr(dot2 + 1, '.', len - (size_t) (dot2 + 1 - token)))
                return -KH_E_INVALID_TOKEN;

        jwt = calloc(1, sizeof(*jwt));
        if (!jwt)
                return -ENOMEM;
        kh_buf_init(&jwt->sig, KH_TOKEN_MAX, false);

        r = decode_object(token, (size_t) (dot1 - token), &jwt->header);
        if (r < 0)
                return r;
        r = decode_object(dot1 + 1, (size_t) (dot2 - dot1 - 1), &jwt->payload);
        if (r < 0)
                return r;

        if (dot2 + 1 == token + len)
                return -KH_E_INVALID_TOKEN; /* unsigned */
        r = kh_base64url_decode(dot2 + 1, len - (size_t) (dot2 + 1 - token), &jwt->sig);
        if (r == -ENOMEM)
                return r;
        if (r < 0)
                return -KH_E_INVALID_TOKEN;

        alg = json_object_get(jwt->header, "alg");
        if (!json_is_string(alg))
                return -KH_E_INVALID_TOKEN;
        jwt->alg = kh_jwt_alg_from_name(json_string_value(alg));
        if (jwt->alg == KH_JWT_ALG_NONE)
                return -KH_E_INVALID_TOKEN;

        for (size_t i = 0; i < KH_ELEMENTSOF(refused_headers); i++)
                if (json_object_get(jwt->header, refused_headers[i]))
                        return -KH_E_INVALID_TOKEN;

        kid = json_object_get(jwt->header, "kid");
        if (kid && !json_is_string(kid))
                return -KH_E_INVALID_TOKEN;
        jwt->kid = kid ? json_string_value(kid) : NULL;

        /* keep the signing input (header.payload) for verification */
        jwt->text_len = (size_t) (dot2 - token);
        jwt->text = malloc(jwt->text_len + 1);
        if (!jwt->text)
                return -ENOMEM;
        memcpy(jwt->text, token, jwt->text_len);
        jwt->text[jwt->text_len] = 0;

        kh_sha256(token, len, jwt->token_hash);

        *ret = KH_TAKE_PTR(jwt);
        return 0;
}

enum kh_jwt_alg kh_jwt_alg(const struct kh_jwt *jwt) {
        return jwt->alg;
}

const char *kh_jwt_unverified_iss(const struct kh_jwt *jwt) {
        return json_string_value(json_object_get(jwt->payload, "iss"));
}

const char *kh_jwt_kid(const struct kh_jwt *jwt) {
        return jwt->kid;
}

const uint8_t *kh_jwt_token_hash(const struct kh_jwt *jwt) {
        return jwt->token_hash;
}

static bool key_is_p256(EVP_PKEY *key) {
        char group[64];

        if (!EVP_PKEY_is_a(key, "EC"))
                return false;
        if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                            NULL)) {
                ERR_clear_error();
                return false;
        }
        return strcmp(group, SN_X9_62_prime256v1) == 0;
}

bool kh_jwt_key_fits_alg(EVP_PKEY *key, enum kh_jwt_alg alg) {
        if (!key)
                return false;
        switch (alg) {
        case KH_JWT_ALG_RS256:
        case KH_JWT_ALG_PS256:
                /* plain "RSA" only: an RSA-PSS-restricted key carries its own parameters */
                return EVP_PKEY_is_a(key, "RSA") && EVP_PKEY_get_bits(key) >= RSA_MIN_BITS;
        case KH_JWT_ALG_ES256:
                return key_is_p256(key);
        case KH_JWT_ALG_EDDSA:
                return EVP_PKEY_is_a(key, "ED25519");
        case KH_JWT_ALG_NONE:
        default:
                return false;
        }
}

/* Big-endian 32-byte integer in [1, n-1]? Public data, so memcmp is fine. */
static bool p256_scalar_ok(const uint8_t v[static 32]) {
        static const uint8_t zero[32];

        return memcmp(v, zero, 32) != 0 && memcmp(v, p256_order, 32) < 0;
}

/* JWA 3.4: ES256 signatures are r||s, 32 bytes each; OpenSSL verifies DER. */
static int es256_to_der(const uint8_t *sig, size_t len, uint8_t **ret_der, size_t *ret_len) {
        KH_CLEANUP(ECDSA_SIG_freep) ECDSA_SIG *es = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *r = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *s = NULL;
        uint8_t *der = NULL;
        int n;

        if (len != ES256_SIG_LEN || !p256_scalar_ok(sig) || !p256_scalar_ok(sig + 32))
                return -KH_E_INVALID_TOKEN;

        es = ECDSA_SIG_new();
        r = BN_bin2bn(sig, 32, NULL);
        s = BN_bin2bn(sig + 32, 32, NULL);
        if (!es || !r || !s)
                return -ENOMEM;
        if (ECDSA_SIG_set0(es, r, s) != 1)
                return -ENOMEM;
        r = s = NULL; /* owned by es now */

        n = i2d_ECDSA_SIG(es, &der);
        if (n <= 0)
                return -ENOMEM;
        *ret_der = der;
        *ret_len = (size_t) n;
        return 0;
}

int kh_jwt_verify_signature(const struct kh_jwt *jwt, EVP_PKEY *key) {
        KH_CLEANUP(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = NULL;
        EVP_PKEY_CTX *pctx = NULL; /* owned by ctx */
        const char *md = "SHA256";
        const uint8_t *sig = jwt->sig.data;
        size_t sig_len = jwt->sig.len;
        uint8_t *der = NULL;
        int r, ok;

        if (!kh_jwt_key_fits_alg(key, jwt->alg))
                return -KH_E_INVALID_TOKEN;

        switch (jwt->alg) {
        case KH_JWT_ALG_RS256:
        case KH_JWT_ALG_PS256:
                /* RSA signatures are exactly the modulus size (RFC 8017 8.2.2 step 1) */
                if (sig_len != (size_t) EVP_PKEY_get_size(key))
                        return -KH_E_INVALID_TOKEN;
                break;
        case KH_JWT_ALG_ES256:
                r = es256_to_der(sig, sig_len, &der, &sig_len);
                if (r < 0)
                        return r;
                sig = der;
                break;
        case KH_JWT_ALG_EDDSA:
                md = NULL; /* Ed25519 hashes internally */
                break;
        case KH_JWT_ALG_NONE:
        default:
                return -KH_E_INVALID_TOKEN;
        }

        r = 0;
        ctx = EVP_MD_CTX_new();
        if (!ctx) {
                r = -ENOMEM;
                goto out;
        }
        if (EVP_DigestVerifyInit_ex(ctx, &pctx, md, NULL, NULL, key, NULL) != 1) {
                r = -EIO;
                goto out;
        }
        if (jwt->alg == KH_JWT_ALG_PS256 &&
            (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
             EVP_PKEY_CTX_set_rsa_mgf1_md_name(pctx, "SHA256", NULL) != 1 ||
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1)) {
                r = -EIO;
                goto out;
        }

        ok = EVP_DigestVerify(ctx, sig, sig_len, (const uint8_t *) jwt->text, jwt->text_len);
        if (ok != 1)
                r = -KH_E_INVALID_TOKEN; /* 0: mismatch; < 0: malformed signature */
out:
        OPENSSL_free(der);
        if (r < 0)
                ERR_clear_error(); /* do not leave this thread's error queue growing */
        return r;
}
