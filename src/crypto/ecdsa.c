/* ECDSA P-256 keys, signatures and their verification (ecdsa.h). */
#include "crypto/ecdsa.h"

#include <errno.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include "common/cleanup.h"
#include "common/errors.h"

KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)

#define ECDSA_P256_SIG_MAX 72   /* DER of two 33-byte integers */

int kh_ec_p256_generate(EVP_PKEY **ret) {
        EVP_PKEY *pkey = EVP_EC_gen("P-256");

        if (!pkey) {
                ERR_clear_error();
                return -EIO;
        }
        *ret = pkey;
        return 0;
}

bool kh_ec_is_p256(EVP_PKEY *pkey) {
        char curve[32];
        size_t len = 0;

        if (!pkey || !EVP_PKEY_is_a(pkey, "EC"))
                return false;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, curve, sizeof(curve),
                                           &len) != 1) {
                ERR_clear_error();
                return false;
        }
        return strcmp(curve, "prime256v1") == 0 || strcmp(curve, "P-256") == 0;
}

int kh_ecdsa_sign(EVP_PKEY *priv, const uint8_t digest[static KH_SHA256_LEN], struct kh_buf *sig) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t out[ECDSA_P256_SIG_MAX];
        size_t out_len = sizeof(out);

        if (!kh_ec_is_p256(priv))
                return -EINVAL;
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_sign_init(ctx) != 1 || EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1 ||
            EVP_PKEY_sign(ctx, out, &out_len, digest, KH_SHA256_LEN) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        return kh_buf_append(sig, out, out_len);
}

int kh_ecdsa_verify(EVP_PKEY *pub, const uint8_t digest[static KH_SHA256_LEN],
                    const uint8_t *sig, size_t sig_len) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        int ok;

        if (!kh_ec_is_p256(pub))
                return -EINVAL;
        if (!sig || sig_len == 0 || sig_len > ECDSA_P256_SIG_MAX)
                return -KH_E_INTEGRITY;
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_verify_init(ctx) != 1 || EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1) {
                ERR_clear_error();
                return -ENOMEM;
        }
        ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, KH_SHA256_LEN);
        ERR_clear_error();
        return ok == 1 ? 0 : -KH_E_INTEGRITY;
}
