/* Key Connector's AES-256-GCM blobs. Not through aead.c: that module's blobs put the nonce
 * first and are bound to associated data; these come from another program, read once per
 * record during an import, so a context per call costs nothing that matters. */
#include "crypto/kc-blob.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/errors.h"
#include "crypto/encoding.h"

KH_DEFINE_CLEANUP(EVP_CIPHER_CTX_free, EVP_CIPHER_CTX *)

#define B64_DATA_KEY_LEN 44 /* base64 of 32 bytes, padded */

int kh_kc_blob_open(const struct kh_secret *data_key, const uint8_t *blob, size_t len,
                    struct kh_secret **ret) {
        KH_CLEANUP(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
        uint8_t tag[KH_KC_BLOB_TAG_LEN];
        const uint8_t *nonce;
        size_t n;
        int outl, r;

        if (!data_key || kh_secret_len(data_key) != KH_KC_DATA_KEY_LEN || !blob || !ret)
                return -EINVAL;
        if (len <= KH_KC_BLOB_OVERHEAD)
                return -KH_E_KC_BLOB_SHORT;
        n = len - KH_KC_BLOB_OVERHEAD;
        if (n > INT_MAX)
                return -E2BIG; /* EVP counts in int */
        memcpy(tag, blob + n, sizeof(tag));
        nonce = blob + n + KH_KC_BLOB_TAG_LEN;

        r = kh_secret_new(n, &pt);
        if (r < 0)
                return r;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx)
                return -ENOMEM;

        r = -EIO;
        if (EVP_DecryptInit_ex2(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) != 1 ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, KH_KC_BLOB_NONCE_LEN, NULL) != 1 ||
            EVP_DecryptInit_ex2(ctx, NULL, kh_secret_bytes(data_key), nonce, NULL) != 1 ||
            EVP_DecryptUpdate(ctx, kh_secret_bytes_mut(pt), &outl, blob, (int) n) != 1 ||
            (size_t) outl != n ||
            EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KH_KC_BLOB_TAG_LEN, tag) != 1)
                goto done;
        if (EVP_DecryptFinal_ex(ctx, kh_secret_bytes_mut(pt) + n, &outl) != 1) {
                r = -KH_E_KC_DECRYPT; /* pt holds unauthenticated bytes: freed and wiped */
                goto done;
        }
        *ret = KH_TAKE_PTR(pt);
        r = 0;
done:
        ERR_clear_error();
        return r;
}

int kh_kc_data_key_decode(const struct kh_secret *file_content, struct kh_secret **ret) {
        const uint8_t *p;
        size_t len;
        int r;

        if (!file_content || !ret)
                return -EINVAL;
        p = kh_secret_bytes(file_content);
        len = kh_secret_len(file_content);

        if (len == KH_KC_DATA_KEY_LEN)
                return kh_secret_new_from(p, len, ret);
        if (len == B64_DATA_KEY_LEN + 1 && p[B64_DATA_KEY_LEN] == '\n')
                len--;
        if (len != B64_DATA_KEY_LEN)
                return -KH_E_KC_DATA_KEY_FILE;
        r = kh_base64_decode_secret((const char *) p, len, KH_KC_DATA_KEY_LEN, ret);
        return r == -EINVAL ? -KH_E_KC_DATA_KEY_FILE : r;
}
