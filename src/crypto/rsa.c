/* RSA keys, RSA-OAEP wrapping and RSA-PSS verification. The padding is set by name through
 * parameters (OAEP, SHA-256 for the label hash and for MGF1, empty label; PSS, SHA-256,
 * MGF1-SHA-256, a fixed salt length) so it cannot silently fall back to OpenSSL's SHA-1
 * defaults or accept a salt length other than the one signers use. */
#include "crypto/rsa.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/errors.h"

KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)
KH_DEFINE_CLEANUP(BN_free, BIGNUM *)

int kh_rsa_generate(unsigned bits, EVP_PKEY **ret) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        KH_CLEANUP(BN_freep) BIGNUM *e = NULL;
        EVP_PKEY *pkey = NULL;

        if (bits < 2048 || bits > 8192 || bits % 1024 != 0 || !ret)
                return -EINVAL;

        ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
        e = BN_new();
        if (!ctx || !e)
                return -ENOMEM;
        if (BN_set_word(e, RSA_F4) != 1 || EVP_PKEY_keygen_init(ctx) != 1 ||
            EVP_PKEY_CTX_set_rsa_keygen_bits(ctx, (int) bits) != 1 ||
            EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx, e) != 1 ||
            EVP_PKEY_generate(ctx, &pkey) != 1) {
                ERR_clear_error();
                return -EIO;
        }

        *ret = pkey;
        return 0;
}

/* A context for pkey set up for OAEP with digest md (and MGF1 with it) in one direction,
 * or NULL. */
static EVP_PKEY_CTX *oaep_ctx(EVP_PKEY *pkey, bool encrypt, enum kh_oaep_md oaep, int *r) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        char pad[] = OSSL_PKEY_RSA_PAD_MODE_OAEP, sha256[] = "SHA256", sha1[] = "SHA1";
        char *md = oaep == KH_OAEP_SHA1 ? sha1 : sha256;
        const OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, pad, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST, md, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST, md, 0),
                OSSL_PARAM_construct_end(),
        };

        if (!pkey || !EVP_PKEY_is_a(pkey, "RSA")) {
                *r = -EINVAL;
                return NULL;
        }
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!ctx) {
                *r = -ENOMEM;
                return NULL;
        }
        if ((encrypt ? EVP_PKEY_encrypt_init_ex(ctx, params)
                     : EVP_PKEY_decrypt_init_ex(ctx, params)) != 1) {
                ERR_clear_error();
                *r = -EIO;
                return NULL;
        }
        return KH_TAKE_PTR(ctx);
}

int kh_rsa_oaep_encrypt(EVP_PKEY *pub, const struct kh_secret *pt, struct kh_buf *out) {
        return kh_rsa_oaep_encrypt_md(pub, KH_OAEP_SHA256, pt, out);
}

int kh_rsa_oaep_encrypt_md(EVP_PKEY *pub, enum kh_oaep_md md, const struct kh_secret *pt,
                           struct kh_buf *out) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        KH_CLEANUP_FREE uint8_t *ct = NULL;
        size_t ct_len = 0;
        int r = -EIO;

        if (!pt || (md != KH_OAEP_SHA256 && md != KH_OAEP_SHA1))
                return -EINVAL;
        ctx = oaep_ctx(pub, true, md, &r);
        if (!ctx)
                return r;

        if (EVP_PKEY_encrypt(ctx, NULL, &ct_len, kh_secret_bytes(pt), kh_secret_len(pt)) != 1)
                goto fail;
        ct = malloc(ct_len);
        if (!ct)
                return -ENOMEM;
        /* Fails for a plaintext longer than the modulus allows (k - 66 bytes). */
        if (EVP_PKEY_encrypt(ctx, ct, &ct_len, kh_secret_bytes(pt), kh_secret_len(pt)) != 1)
                goto fail;

        return kh_buf_append(out, ct, ct_len);
fail:
        ERR_clear_error();
        return -EIO;
}

int kh_rsa_spki_parse(const uint8_t *der, size_t len, unsigned bits, EVP_PKEY **ret) {
        const unsigned char *p = der;
        EVP_PKEY *pkey;

        if (!der || len == 0 || len > LONG_MAX)
                return -EINVAL;
        pkey = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pkey) {
                ERR_clear_error();
                return -EINVAL;
        }
        if (p != der + len || !EVP_PKEY_is_a(pkey, "RSA") ||
            EVP_PKEY_get_bits(pkey) != (int) bits) {
                EVP_PKEY_free(pkey);
                return -EINVAL;
        }
        *ret = pkey;
        return 0;
}

int kh_rsa_oaep_encrypt_spki(const uint8_t *spki, size_t len, enum kh_oaep_md md,
                             const struct kh_secret *pt, struct kh_buf *out) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        const unsigned char *p = spki;
        KH_CLEANUP_FREE uint8_t *ct = NULL;
        size_t ct_len = 0;
        int r = -EIO;

        if (!pt || !spki || len == 0 || len > LONG_MAX || (md != KH_OAEP_SHA1 && md != KH_OAEP_SHA256))
                return -EINVAL;
        pub = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pub || p != spki + len || !EVP_PKEY_is_a(pub, "RSA")) {
                ERR_clear_error();
                return -EINVAL;
        }
        ctx = oaep_ctx(pub, true, md, &r);
        if (!ctx)
                return r;
        if (EVP_PKEY_encrypt(ctx, NULL, &ct_len, kh_secret_bytes(pt), kh_secret_len(pt)) != 1)
                goto fail;
        ct = malloc(ct_len);
        if (!ct)
                return -ENOMEM;
        /* fails for a plaintext longer than the modulus allows (k - 2 * hLen - 2 bytes) */
        if (EVP_PKEY_encrypt(ctx, ct, &ct_len, kh_secret_bytes(pt), kh_secret_len(pt)) != 1) {
                ERR_clear_error();
                return -EINVAL;
        }
        return kh_buf_append(out, ct, ct_len);
fail:
        ERR_clear_error();
        return -EIO;
}

int kh_rsa_oaep_decrypt(EVP_PKEY *priv, const uint8_t *in, size_t len,
                        struct kh_secret **ret_pt) {
        return kh_rsa_oaep_decrypt_md(priv, KH_OAEP_SHA256, in, len, ret_pt);
}

int kh_rsa_oaep_decrypt_md(EVP_PKEY *priv, enum kh_oaep_md md, const uint8_t *in, size_t len,
                           struct kh_secret **ret_pt) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t *tmp;
        size_t tmp_len, pt_len;
        int r = -EIO;

        if (md != KH_OAEP_SHA1 && md != KH_OAEP_SHA256)
                return -EINVAL;
        ctx = oaep_ctx(priv, false, md, &r);
        if (!ctx)
                return r;
        if (!in || len != (size_t) EVP_PKEY_get_size(priv))
                return -KH_E_INTEGRITY; /* a ciphertext is exactly one modulus long */

        /* OpenSSL writes the padded block before it strips the padding, so the buffer is
         * modulus-sized and wiped; only the exact plaintext goes into the secret. */
        tmp_len = len;
        tmp = malloc(tmp_len);
        if (!tmp)
                return -ENOMEM;
        pt_len = tmp_len;
        if (EVP_PKEY_decrypt(ctx, tmp, &pt_len, in, len) != 1 || pt_len == 0 || pt_len > tmp_len) {
                ERR_clear_error();
                r = -KH_E_INTEGRITY; /* a secret has one byte at least, so empty is corrupt */
        } else
                r = kh_secret_new_from(tmp, pt_len, ret_pt);

        OPENSSL_cleanse(tmp, tmp_len);
        free(tmp);
        return r;
}

int kh_rsa_pss_verify(EVP_PKEY *pub, const uint8_t digest[static KH_SHA256_LEN],
                      const uint8_t *sig, size_t sig_len) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        char pad[] = OSSL_PKEY_RSA_PAD_MODE_PSS, md[] = "SHA256";
        int salt_len = KH_SHA256_LEN; /* the digest's length, as kh_keystore_sign() signs */
        const OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_PAD_MODE, pad, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_DIGEST, md, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_SIGNATURE_PARAM_MGF1_DIGEST, md, 0),
                OSSL_PARAM_construct_int(OSSL_SIGNATURE_PARAM_PSS_SALTLEN, &salt_len),
                OSSL_PARAM_construct_end(),
        };
        int ok;

        if (!pub || !EVP_PKEY_is_a(pub, "RSA"))
                return -EINVAL;
        if (!sig || sig_len != (size_t) EVP_PKEY_get_size(pub))
                return -KH_E_INTEGRITY; /* a signature is exactly one modulus long */
        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pub, NULL);
        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_verify_init_ex(ctx, params) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        ok = EVP_PKEY_verify(ctx, sig, sig_len, digest, KH_SHA256_LEN);
        ERR_clear_error();
        return ok == 1 ? 0 : -KH_E_INTEGRITY;
}
