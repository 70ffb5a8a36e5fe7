#include "crypto/stream.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>

#include "common/errors.h"

KH_DEFINE_CLEANUP(EVP_CIPHER_CTX_free, EVP_CIPHER_CTX *)
KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)

/* A context per call: a chunk is 64 KiB, so its set-up cost does not matter, and nothing of
 * the key schedule outlives the call (freeing a context cleanses it). */
static int chunk_ctx(const struct kh_secret *key, const uint8_t *nonce, int enc,
                     EVP_CIPHER_CTX **ret) {
        EVP_CIPHER_CTX *ctx;

        if (kh_secret_len(key) != KH_AEAD_KEY_LEN)
                return -EINVAL;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx)
                return -ENOMEM;
        if (EVP_CipherInit_ex2(ctx, EVP_aes_256_gcm(), kh_secret_bytes(key), nonce, enc,
                               NULL) != 1) {
                EVP_CIPHER_CTX_free(ctx);
                ERR_clear_error();
                return -EIO;
        }
        *ret = ctx;
        return 0;
}

int kh_aead_chunk_seal(const struct kh_secret *key, const uint8_t nonce[static KH_AEAD_NONCE_LEN],
                       const uint8_t *aad, size_t aad_len, const uint8_t *pt, size_t len,
                       uint8_t *ct, uint8_t tag[static KH_AEAD_TAG_LEN]) {
        KH_CLEANUP(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        int n, r;

        if (len > INT_MAX || aad_len > INT_MAX)
                return -EINVAL;
        r = chunk_ctx(key, nonce, 1, &ctx);
        if (r < 0)
                return r;
        if ((aad_len && EVP_EncryptUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1) ||
            (len && EVP_EncryptUpdate(ctx, ct, &n, pt, (int) len) != 1) ||
            EVP_EncryptFinal_ex(ctx, ct + len, &n) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KH_AEAD_TAG_LEN, tag) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        return 0;
}

int kh_aead_chunk_open(const struct kh_secret *key, const uint8_t nonce[static KH_AEAD_NONCE_LEN],
                       const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t len,
                       const uint8_t tag[static KH_AEAD_TAG_LEN], uint8_t *pt) {
        KH_CLEANUP(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        uint8_t t[KH_AEAD_TAG_LEN];
        int n, r;

        if (len > INT_MAX || aad_len > INT_MAX)
                return -EINVAL;
        r = chunk_ctx(key, nonce, 0, &ctx);
        if (r < 0)
                return r;
        memcpy(t, tag, sizeof(t));
        if ((aad_len && EVP_DecryptUpdate(ctx, NULL, &n, aad, (int) aad_len) != 1) ||
            (len && EVP_DecryptUpdate(ctx, pt, &n, ct, (int) len) != 1) ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KH_AEAD_TAG_LEN, t) != 1) {
                ERR_clear_error();
                return -EIO;
        }
        if (EVP_DecryptFinal_ex(ctx, pt + len, &n) != 1) {
                ERR_clear_error();
                if (len)
                        OPENSSL_cleanse(pt, len);
                return -KH_E_INTEGRITY;
        }
        return 0;
}

int kh_hkdf_sha256(const struct kh_secret *ikm, const uint8_t *salt, size_t salt_len,
                   const char *info, size_t out_len, struct kh_secret **ret) {
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *out = NULL;
        size_t len = out_len;
        int r;

        if (out_len == 0 || out_len > 255 * KH_SHA256_LEN || kh_secret_len(ikm) == 0 ||
            salt_len > INT_MAX || strlen(info) > INT_MAX)
                return -EINVAL;
        ctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
        if (!ctx)
                return -ENOMEM;
        r = kh_secret_new(out_len, &out);
        if (r < 0)
                return r;
        if (EVP_PKEY_derive_init(ctx) <= 0 || EVP_PKEY_CTX_set_hkdf_md(ctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set1_hkdf_salt(ctx, salt, (int) salt_len) <= 0 ||
            EVP_PKEY_CTX_set1_hkdf_key(ctx, kh_secret_bytes(ikm), (int) kh_secret_len(ikm)) <= 0 ||
            EVP_PKEY_CTX_add1_hkdf_info(ctx, (const unsigned char *) info, (int) strlen(info)) <= 0 ||
            EVP_PKEY_derive(ctx, kh_secret_bytes_mut(out), &len) <= 0 || len != out_len) {
                ERR_clear_error();
                return -EIO;
        }
        *ret = KH_TAKE_PTR(out);
        return 0;
}

struct kh_sha256_ctx {
        EVP_MD_CTX *md;
};

int kh_sha256_new(struct kh_sha256_ctx **ret) {
        struct kh_sha256_ctx *c = calloc(1, sizeof(*c));

        if (!c)
                return -ENOMEM;
        c->md = EVP_MD_CTX_new();
        if (!c->md || EVP_DigestInit_ex(c->md, EVP_sha256(), NULL) != 1) {
                EVP_MD_CTX_free(c->md);
                free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void kh_sha256_update(struct kh_sha256_ctx *c, const void *p, size_t n) {
        /* as kh_sha256(): hashing cannot fail on a working OpenSSL */
        if (n && EVP_DigestUpdate(c->md, p, n) != 1)
                abort();
}

void kh_sha256_final(struct kh_sha256_ctx *c, uint8_t out[static KH_SHA256_LEN]) {
        unsigned int len = 0;

        if (EVP_DigestFinal_ex(c->md, out, &len) != 1 || len != KH_SHA256_LEN)
                abort();
}

struct kh_sha256_ctx *kh_sha256_free(struct kh_sha256_ctx *c) {
        if (c) {
                EVP_MD_CTX_free(c->md);
                free(c);
        }
        return NULL;
}
