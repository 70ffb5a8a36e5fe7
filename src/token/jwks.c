#include "token/jwks.h"

#include <errno.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/param_build.h>

#include "common/buf.h"
#include "common/limits.h"
#include "crypto/encoding.h"
#include "crypto/rsa.h"
#include "token/jwt-internal.h"

KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)
KH_DEFINE_CLEANUP(OSSL_PARAM_BLD_free, OSSL_PARAM_BLD *)
KH_DEFINE_CLEANUP(OSSL_PARAM_free, OSSL_PARAM *)
KH_DEFINE_CLEANUP(BN_free, BIGNUM *)

#define RSA_N_MAX_BYTES (16384 / 8)
#define RSA_E_MAX_BYTES 8
#define JWK_FIELD_MAX 4096 /* base64url text of one field; fits RSA_N_MAX_BYTES */

struct jwk {
        char *kid;           /* NULL if none */
        enum kh_jwt_alg alg; /* the key's own "alg", or NONE if it names none */
        EVP_PKEY *key;
};

struct kh_jwks {
        size_t n;
        struct jwk keys[KH_JWKS_KEYS_MAX];
};

struct kh_jwks *kh_jwks_free(struct kh_jwks *j) {
        if (!j)
                return NULL;
        for (size_t i = 0; i < j->n; i++) {
                free(j->keys[i].kid);
                EVP_PKEY_free(j->keys[i].key);
        }
        free(j);
        return NULL;
}

size_t kh_jwks_count(const struct kh_jwks *j) {
        return j ? j->n : 0;
}

/* A base64url member of the key, decoded; -EINVAL if absent, malformed or longer than max
 * bytes. */
static int field(const json_t *k, const char *name, size_t max, struct kh_buf *out) {
        json_t *v = json_object_get(k, name);
        int r;

        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > JWK_FIELD_MAX)
                return -EINVAL;
        kh_buf_init(out, max, false);
        r = kh_base64url_decode(json_string_value(v), json_string_length(v), out);
        if (r < 0) {
                kh_buf_free(out);
                return r == -E2BIG ? -EINVAL : r;
        }
        return 0;
}

static int from_params(const char *type, OSSL_PARAM_BLD *bld, bool check_point,
                       EVP_PKEY **ret) {
        KH_CLEANUP(OSSL_PARAM_freep) OSSL_PARAM *params = NULL;
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *check = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;

        params = OSSL_PARAM_BLD_to_param(bld);
        ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
        if (!params || !ctx)
                return -ENOMEM;
        if (EVP_PKEY_fromdata_init(ctx) != 1 ||
            EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
                return -EINVAL;
        /* EC: the point lies on the curve and is not the identity. (Not for RSA: OpenSSL's
         * SP 800-56B check runs a primality test on n and refuses small exponents.) */
        if (check_point) {
                check = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
                if (!check)
                        return -ENOMEM;
                if (EVP_PKEY_public_check(check) != 1)
                        return -EINVAL;
        }
        *ret = KH_TAKE_PTR(key);
        return 0;
}

static int rsa_key(const json_t *k, EVP_PKEY **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf n = { 0 };
        KH_CLEANUP(kh_buf_freep) struct kh_buf e = { 0 };
        KH_CLEANUP(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *bn_n = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *bn_e = NULL;
        int r;

        r = field(k, "n", RSA_N_MAX_BYTES, &n);
        if (r < 0)
                return r;
        r = field(k, "e", RSA_E_MAX_BYTES, &e);
        if (r < 0)
                return r;
        /* RFC 7518 6.3.1: minimal big-endian, so no leading zero byte */
        if (n.data[0] == 0 || e.data[0] == 0)
                return -EINVAL;

        bn_n = BN_bin2bn(n.data, (int) n.len, NULL);
        bn_e = BN_bin2bn(e.data, (int) e.len, NULL);
        bld = OSSL_PARAM_BLD_new();
        if (!bn_n || !bn_e || !bld)
                return -ENOMEM;
        if (BN_num_bits(bn_n) < 2048 || !BN_is_odd(bn_e) || BN_is_one(bn_e))
                return -EINVAL;
        if (!OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) ||
            !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
                return -ENOMEM;
        return from_params("RSA", bld, false, ret);
}

static int ec_key(const json_t *k, EVP_PKEY **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf x = { 0 };
        KH_CLEANUP(kh_buf_freep) struct kh_buf y = { 0 };
        KH_CLEANUP(OSSL_PARAM_BLD_freep) OSSL_PARAM_BLD *bld = NULL;
        uint8_t point[65];
        int r;

        if (!json_is_string(json_object_get(k, "crv")) ||
            strcmp(json_string_value(json_object_get(k, "crv")), "P-256") != 0)
                return -EINVAL;
        r = field(k, "x", 32, &x);
        if (r < 0)
                return r;
        r = field(k, "y", 32, &y);
        if (r < 0)
                return r;
        if (x.len != 32 || y.len != 32) /* RFC 7518 6.2.1.2: full length, always */
                return -EINVAL;

        point[0] = POINT_CONVERSION_UNCOMPRESSED;
        memcpy(point + 1, x.data, 32);
        memcpy(point + 33, y.data, 32);
        bld = OSSL_PARAM_BLD_new();
        if (!bld)
                return -ENOMEM;
        if (!OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                             SN_X9_62_prime256v1, 0) ||
            !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point)))
                return -ENOMEM;
        return from_params("EC", bld, true, ret);
}

static int okp_key(const json_t *k, EVP_PKEY **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf x = { 0 };
        EVP_PKEY *key;
        int r;

        if (!json_is_string(json_object_get(k, "crv")) ||
            strcmp(json_string_value(json_object_get(k, "crv")), "Ed25519") != 0)
                return -EINVAL;
        r = field(k, "x", 32, &x);
        if (r < 0)
                return r;
        if (x.len != 32)
                return -EINVAL;
        key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x.data, x.len);
        if (!key)
                return -EINVAL;
        *ret = key;
        return 0;
}

/* One member of "keys": 0 and *ret filled, -EINVAL to skip it, or -ENOMEM. */
static int parse_key(const json_t *k, struct jwk *ret) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        json_t *kty = json_object_get(k, "kty"), *use = json_object_get(k, "use"),
               *alg = json_object_get(k, "alg"), *kid = json_object_get(k, "kid");
        enum kh_jwt_alg a = KH_JWT_ALG_NONE;
        char *kid_copy = NULL;
        int r;

        if (!json_is_string(kty))
                return -EINVAL;
        if (use && (!json_is_string(use) || strcmp(json_string_value(use), "sig") != 0))
                return -EINVAL;
        if (kid && !json_is_string(kid))
                return -EINVAL;
        if (alg) {
                if (!json_is_string(alg))
                        return -EINVAL;
                a = kh_jwt_alg_from_name(json_string_value(alg));
                if (a == KH_JWT_ALG_NONE)
                        return -EINVAL; /* RSA-OAEP, HS256, ...: not for us */
        }

        if (strcmp(json_string_value(kty), "RSA") == 0)
                r = rsa_key(k, &key);
        else if (strcmp(json_string_value(kty), "EC") == 0)
                r = ec_key(k, &key);
        else if (strcmp(json_string_value(kty), "OKP") == 0)
                r = okp_key(k, &key);
        else
                r = -EINVAL;
        if (r < 0) {
                ERR_clear_error();
                return r;
        }
        /* the key's own alg must suit its type ("alg":"ES256" on an RSA key is nonsense) */
        if (a != KH_JWT_ALG_NONE && !kh_jwt_key_fits_alg(key, a))
                return -EINVAL;

        if (kid) {
                kid_copy = strdup(json_string_value(kid));
                if (!kid_copy)
                        return -ENOMEM;
        }
        *ret = (struct jwk) { .kid = kid_copy, .alg = a, .key = KH_TAKE_PTR(key) };
        return 0;
}

int kh_jwks_parse(const char *json, size_t len, struct kh_jwks **ret) {
        KH_CLEANUP(kh_jwks_freep) struct kh_jwks *j = NULL;
        json_auto_t *root = NULL;
        json_t *keys, *k;
        size_t i;
        int r;

        if (!json || len > KH_JWKS_MAX)
                return -EINVAL;
        root = json_loadb(json, len, JSON_REJECT_DUPLICATES, NULL);
        keys = json_object_get(root, "keys"); /* NULL unless root is an object */
        if (!json_is_array(keys))
                return -EINVAL;

        j = calloc(1, sizeof(*j));
        if (!j)
                return -ENOMEM;
        json_array_foreach(keys, i, k) {
                if (j->n == KH_JWKS_KEYS_MAX)
                        break;
                if (!json_is_object(k))
                        continue;
                r = parse_key(k, &j->keys[j->n]);
                if (r == -ENOMEM)
                        return r;
                if (r == 0)
                        j->n++;
        }
        *ret = KH_TAKE_PTR(j);
        return 0;
}

static bool fits(const struct jwk *k, enum kh_jwt_alg alg) {
        return (k->alg == KH_JWT_ALG_NONE || k->alg == alg) && kh_jwt_key_fits_alg(k->key, alg);
}

EVP_PKEY *kh_jwks_find(const struct kh_jwks *j, const char *kid, enum kh_jwt_alg alg) {
        EVP_PKEY *found = NULL;

        if (!j)
                return NULL;
        for (size_t i = 0; i < j->n; i++) {
                const struct jwk *k = &j->keys[i];

                if (kid) {
                        if (k->kid && strcmp(k->kid, kid) == 0 && fits(k, alg))
                                return k->key;
                        continue;
                }
                if (!fits(k, alg))
                        continue;
                if (found)
                        return NULL; /* ambiguous: which key signed it is the token's to say */
                found = k->key;
        }
        return found;
}

/* Same kid (or both none) and the same public key. */
static bool same_key(const struct jwk *a, const struct jwk *b) {
        bool kids = a->kid && b->kid ? strcmp(a->kid, b->kid) == 0 : a->kid == b->kid;

        return kids && a->alg == b->alg && EVP_PKEY_eq(a->key, b->key) == 1;
}

bool kh_jwks_covers(const struct kh_jwks *newer, const struct kh_jwks *older) {
        for (size_t i = 0; older && i < older->n; i++) {
                bool kept = false;
                for (size_t k = 0; newer && k < newer->n && !kept; k++)
                        kept = same_key(&newer->keys[k], &older->keys[i]);
                if (!kept)
                        return false;
        }
        return true;
}
