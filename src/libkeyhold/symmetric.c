/* Symmetric EncStrings (spec/encstring.md sections 4 and 5): type 2, AES-256-CBC then
 * HMAC-SHA256 over iv || ct (Encrypt-then-MAC); type 0, AES-256-CBC alone, decrypted only
 * for a 32-byte key (the legacy key-connector import path); and the HKDF-Expand stretching
 * of a 32-byte key. The MAC of a type 2 string is checked in constant time before a single
 * block is decrypted, so a tampered string never reaches the padding check. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include "keyhold/encstring.h"
#include "internal.h"

#define AES_KEY_LEN 32

KHL_DEFINE_CLEANUP(EVP_CIPHER_CTX_free, EVP_CIPHER_CTX *)
KHL_DEFINE_CLEANUP(EVP_MAC_free, EVP_MAC *)
KHL_DEFINE_CLEANUP(EVP_MAC_CTX_free, EVP_MAC_CTX *)
KHL_DEFINE_CLEANUP(EVP_KDF_free, EVP_KDF *)
KHL_DEFINE_CLEANUP(EVP_KDF_CTX_free, EVP_KDF_CTX *)

int khl_hkdf_expand(const uint8_t *prk, size_t prk_len, const uint8_t *info, size_t info_len,
                    uint8_t *out, size_t out_len) {
        KHL_CLEANUP(EVP_KDF_freep) EVP_KDF *kdf = NULL;
        KHL_CLEANUP(EVP_KDF_CTX_freep) EVP_KDF_CTX *ctx = NULL;
        int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
        char md[] = "SHA256";
        OSSL_PARAM params[] = {
                OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode),
                OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, md, 0),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *) (uintptr_t) prk,
                                                  prk_len),
                OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *) (uintptr_t) info,
                                                  info_len),
                OSSL_PARAM_construct_end(),
        };

        if (!prk || prk_len == 0 || (!info && info_len > 0) || !out || out_len == 0 ||
            out_len > 255 * 32)
                return KEYHOLD_E_INVALID;
        kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
        ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
        if (!ctx || EVP_KDF_derive(ctx, out, out_len, params) != 1) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        return KEYHOLD_OK;
}

int keyhold_stretch_key(const uint8_t key[KEYHOLD_LEGACY_KEY_LEN],
                        uint8_t out[KEYHOLD_USER_KEY_LEN]) {
        uint8_t tmp[KEYHOLD_USER_KEY_LEN];
        int r;

        if (!key || !out)
                return KEYHOLD_E_INVALID;
        r = khl_hkdf_expand(key, KEYHOLD_LEGACY_KEY_LEN, (const uint8_t *) "enc", 3, tmp, 32);
        if (r >= 0)
                r = khl_hkdf_expand(key, KEYHOLD_LEGACY_KEY_LEN, (const uint8_t *) "mac", 3,
                                    tmp + 32, 32);
        if (r >= 0)
                memcpy(out, tmp, sizeof(tmp));
        OPENSSL_cleanse(tmp, sizeof(tmp));
        return r;
}

/* HMAC-SHA256(mac_key, iv || ct). */
static int mac_iv_ct(const uint8_t mac_key[32], const uint8_t *iv, const uint8_t *ct,
                     size_t ct_len, uint8_t mac[KHL_MAC_LEN]) {
        KHL_CLEANUP(EVP_MAC_freep) EVP_MAC *hmac = NULL;
        KHL_CLEANUP(EVP_MAC_CTX_freep) EVP_MAC_CTX *ctx = NULL;
        char md[] = "SHA256";
        const OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, md, 0),
                OSSL_PARAM_construct_end(),
        };
        size_t len = 0;

        hmac = EVP_MAC_fetch(NULL, "HMAC", NULL);
        ctx = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
        if (!ctx || EVP_MAC_init(ctx, mac_key, 32, params) != 1 ||
            EVP_MAC_update(ctx, iv, KHL_AES_IV_LEN) != 1 || EVP_MAC_update(ctx, ct, ct_len) != 1 ||
            EVP_MAC_final(ctx, mac, &len, KHL_MAC_LEN) != 1 || len != KHL_MAC_LEN) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        return KEYHOLD_OK;
}

/* AES-256-CBC with PKCS#7 padding, one shot: in[0..len) -> out, *out_len. out has room for
 * len + 16 bytes when encrypting, len when decrypting. A decryption that fails (length not
 * a whole number of blocks, bad padding) is KEYHOLD_E_DECRYPT. */
static int aes_cbc(bool encrypt, const uint8_t key[AES_KEY_LEN], const uint8_t *iv,
                   const uint8_t *in, size_t len, uint8_t *out, size_t *out_len) {
        KHL_CLEANUP(EVP_CIPHER_CTX_freep) EVP_CIPHER_CTX *ctx = NULL;
        int n1 = 0, n2 = 0;

        if (len > INT32_MAX - KHL_AES_BLOCK)
                return KEYHOLD_E_INVALID;
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx)
                return KEYHOLD_E_NOMEM;
        if (EVP_CipherInit_ex2(ctx, EVP_aes_256_cbc(), key, iv, encrypt ? 1 : 0, NULL) != 1) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        if (EVP_CipherUpdate(ctx, out, &n1, in, (int) len) != 1 ||
            EVP_CipherFinal_ex(ctx, out + n1, &n2) != 1) {
                ERR_clear_error();
                return encrypt ? KEYHOLD_E_CRYPTO : KEYHOLD_E_DECRYPT;
        }
        *out_len = (size_t) n1 + (size_t) n2;
        return KEYHOLD_OK;
}

int keyhold_aes_encrypt_iv(const uint8_t key[KEYHOLD_USER_KEY_LEN], const uint8_t iv[16],
                           const uint8_t *pt, size_t len, char **ret) {
        KHL_CLEANUP_FREE uint8_t *ct = NULL;
        uint8_t mac[KHL_MAC_LEN];
        size_t ct_len = 0;
        int r;

        if (!key || !iv || (!pt && len > 0) || !ret)
                return KEYHOLD_E_INVALID;
        if (len > KEYHOLD_ENCSTRING_BUFFER_MAX)
                return KEYHOLD_E_INVALID;
        ct = malloc(len + KHL_AES_BLOCK);
        if (!ct)
                return KEYHOLD_E_NOMEM;
        r = aes_cbc(true, key, iv, pt ? pt : (const uint8_t *) "", len, ct, &ct_len);
        if (r < 0)
                return r;
        r = mac_iv_ct(key + AES_KEY_LEN, iv, ct, ct_len, mac);
        if (r < 0)
                return r;

        return khl_encstring_format_parts(KEYHOLD_ENC_AES_CBC256_HMAC, 3,
                                          (const uint8_t *const[]) { iv, ct, mac },
                                          (const size_t[]) { KHL_AES_IV_LEN, ct_len, KHL_MAC_LEN },
                                          ret);
}

int keyhold_aes_encrypt(const uint8_t key[KEYHOLD_USER_KEY_LEN], const uint8_t *pt, size_t len,
                        char **ret) {
        uint8_t iv[KHL_AES_IV_LEN];

        if (!key || (!pt && len > 0) || !ret)
                return KEYHOLD_E_INVALID;
        if (RAND_bytes(iv, sizeof(iv)) != 1) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        return keyhold_aes_encrypt_iv(key, iv, pt, len, ret);
}

int keyhold_aes_decrypt(const uint8_t *key, size_t key_len, const char *s, size_t slen,
                        uint8_t **pt, size_t *pt_len) {
        KHL_CLEANUP(keyhold_encstring_freep) struct keyhold_encstring *es = NULL;
        KHL_CLEANUP_SECRET struct khl_secret_buf out = { NULL, 0 };
        const uint8_t *iv, *ct, *mac;
        size_t iv_len, ct_len, mac_len, n = 0;
        bool legacy;
        int r;

        if (!key || !s || !pt || !pt_len)
                return KEYHOLD_E_INVALID;
        if (key_len != KEYHOLD_USER_KEY_LEN && key_len != KEYHOLD_LEGACY_KEY_LEN)
                return KEYHOLD_E_KEY;
        legacy = key_len == KEYHOLD_LEGACY_KEY_LEN;

        /* A 64-byte key opens type 2 only: type 0 for it is a downgrade (no MAC). */
        r = khl_encstring_parse_typed(s, slen,
                                      KEYHOLD_ENC_TYPE_BIT(legacy ? KEYHOLD_ENC_AES_CBC256
                                                                  : KEYHOLD_ENC_AES_CBC256_HMAC),
                                      &es);
        if (r < 0)
                return r;
        r = keyhold_encstring_part(es, 0, &iv, &iv_len);
        if (r >= 0)
                r = keyhold_encstring_part(es, 1, &ct, &ct_len);
        if (r < 0)
                return KEYHOLD_E_CRYPTO; /* unreachable: parse made both parts */

        if (!legacy) {
                uint8_t want[KHL_MAC_LEN];

                if (keyhold_encstring_part(es, 2, &mac, &mac_len) < 0 || mac_len != KHL_MAC_LEN)
                        return KEYHOLD_E_CRYPTO; /* unreachable: parse checked it */
                r = mac_iv_ct(key + AES_KEY_LEN, iv, ct, ct_len, want);
                if (r < 0)
                        return r;
                r = CRYPTO_memcmp(want, mac, KHL_MAC_LEN) == 0 ? KEYHOLD_OK : KEYHOLD_E_MAC;
                OPENSSL_cleanse(want, sizeof(want));
                if (r < 0)
                        return r;
        }

        r = khl_secret_buf_alloc(&out, ct_len + KHL_AES_BLOCK); /* EVP_DecryptUpdate's rule */
        if (r < 0)
                return r;
        r = aes_cbc(false, key, iv, ct, ct_len, out.data, &n);
        if (r < 0)
                return r;

        /* out is longer than the plaintext and the caller wipes n bytes: wipe the rest now (the
         * padding, and whatever a short plaintext left behind). */
        OPENSSL_cleanse(out.data + n, out.cap - n);
        *pt = out.data;
        *pt_len = n;
        out.data = NULL;
        return KEYHOLD_OK;
}
