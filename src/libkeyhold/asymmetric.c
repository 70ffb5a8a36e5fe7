/* RSA EncStrings (spec/encstring.md section 6): RSA-2048 only, as Bitwarden uses it.
 * Keys come as DER (SPKI public, PKCS#8 private) and are accepted only in their exact,
 * canonical encoding; OAEP parameters are set by name for each operation, so nothing
 * falls back to a library default. Encapsulation always makes type 4 (OAEP SHA-1, what
 * clients read); decapsulation accepts 3 to 6. */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "keyhold/encstring.h"
#include "internal.h"

/* OAEP with an empty label over 2048 bits: 256 - 2 * 20 - 2 bytes for SHA-1. */
#define OAEP_SHA1_MAX (KHL_RSA_LEN - 2 * 20 - 2)

KHL_DEFINE_CLEANUP(PKCS8_PRIV_KEY_INFO_free, PKCS8_PRIV_KEY_INFO *)

static bool is_rsa_2048(EVP_PKEY *pkey) {
        /* "RSA" only: an RSA-PSS key (id-RSASSA-PSS) cannot do OAEP. */
        return EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_id(pkey) == EVP_PKEY_RSA &&
               EVP_PKEY_get_bits(pkey) == KEYHOLD_RSA_BITS;
}

int khl_rsa_spki(EVP_PKEY *pkey, uint8_t **ret, size_t *ret_len) {
        uint8_t *buf, *p;
        int n;

        n = i2d_PUBKEY(pkey, NULL);
        if (n <= 0) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        buf = malloc((size_t) n);
        if (!buf)
                return KEYHOLD_E_NOMEM;
        p = buf;
        if (i2d_PUBKEY(pkey, &p) != n) {
                ERR_clear_error();
                free(buf);
                return KEYHOLD_E_CRYPTO;
        }
        *ret = buf;
        *ret_len = (size_t) n;
        return KEYHOLD_OK;
}

int khl_rsa_load_public(const uint8_t *spki, size_t len, EVP_PKEY **ret) {
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        KHL_CLEANUP_FREE uint8_t *again = NULL;
        const unsigned char *p = spki;
        size_t again_len = 0;
        int r;

        if (len == 0 || len > 16384)
                return KEYHOLD_E_FORMAT;
        pkey = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pkey) {
                ERR_clear_error();
                return KEYHOLD_E_FORMAT;
        }
        if (p != spki + len)
                return KEYHOLD_E_FORMAT; /* trailing bytes */
        if (!is_rsa_2048(pkey))
                return KEYHOLD_E_KEY;
        /* d2i is a BER reader: accept only the one DER spelling, so that the bytes a
         * fingerprint is computed over are the bytes of the key. */
        r = khl_rsa_spki(pkey, &again, &again_len);
        if (r < 0)
                return r;
        if (again_len != len || memcmp(again, spki, len) != 0)
                return KEYHOLD_E_FORMAT;
        *ret = KHL_TAKE_PTR(pkey);
        return KEYHOLD_OK;
}

int khl_rsa_load_private(const uint8_t *pkcs8, size_t len, EVP_PKEY **ret) {
        KHL_CLEANUP(PKCS8_PRIV_KEY_INFO_freep) PKCS8_PRIV_KEY_INFO *p8 = NULL;
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        const unsigned char *p = pkcs8;

        if (len == 0 || len > 16384)
                return KEYHOLD_E_FORMAT;
        p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long) len);
        if (!p8 || p != pkcs8 + len) {
                ERR_clear_error();
                return KEYHOLD_E_FORMAT;
        }
        pkey = EVP_PKCS82PKEY(p8);
        if (!pkey) {
                ERR_clear_error();
                return KEYHOLD_E_FORMAT;
        }
        if (!is_rsa_2048(pkey))
                return KEYHOLD_E_KEY;
        *ret = KHL_TAKE_PTR(pkey);
        return KEYHOLD_OK;
}

int keyhold_spki_check(const uint8_t *spki, size_t len) {
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;

        if (!spki)
                return KEYHOLD_E_INVALID;
        return khl_rsa_load_public(spki, len, &pkey);
}

/* A context on pkey for OAEP with md ("SHA1" or "SHA256") for the label hash and MGF1. */
static int oaep_ctx(EVP_PKEY *pkey, bool encrypt, const char *md, EVP_PKEY_CTX **ret) {
        KHL_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        char pad[] = OSSL_PKEY_RSA_PAD_MODE_OAEP;
        const OSSL_PARAM params[] = {
                OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, pad, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_OAEP_DIGEST,
                                                 (char *) (uintptr_t) md, 0),
                OSSL_PARAM_construct_utf8_string(OSSL_ASYM_CIPHER_PARAM_MGF1_DIGEST,
                                                 (char *) (uintptr_t) md, 0),
                OSSL_PARAM_construct_end(),
        };

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!ctx)
                return KEYHOLD_E_NOMEM;
        if ((encrypt ? EVP_PKEY_encrypt_init_ex(ctx, params)
                     : EVP_PKEY_decrypt_init_ex(ctx, params)) != 1) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        *ret = KHL_TAKE_PTR(ctx);
        return KEYHOLD_OK;
}

int keyhold_rsa_encapsulate(const uint8_t *spki, size_t spki_len, const uint8_t *pt, size_t len,
                            char **ret) {
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KHL_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t ct[KHL_RSA_LEN];
        size_t ct_len = sizeof(ct);
        int r;

        if (!spki || !pt || len == 0 || len > OAEP_SHA1_MAX || !ret)
                return KEYHOLD_E_INVALID;
        r = khl_rsa_load_public(spki, spki_len, &pub);
        if (r < 0)
                return r;
        r = oaep_ctx(pub, true, "SHA1", &ctx);
        if (r < 0)
                return r;
        if (EVP_PKEY_encrypt(ctx, ct, &ct_len, pt, len) != 1 || ct_len != KHL_RSA_LEN) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        return khl_encstring_format_parts(KEYHOLD_ENC_RSA_OAEP_SHA1, 1,
                                          (const uint8_t *const[]) { ct },
                                          (const size_t[]) { ct_len }, ret);
}

int keyhold_rsa_decapsulate(const uint8_t *pkcs8, size_t pkcs8_len, const char *s, size_t slen,
                            uint8_t **pt, size_t *pt_len) {
        KHL_CLEANUP(keyhold_encstring_freep) struct keyhold_encstring *es = NULL;
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *priv = NULL;
        KHL_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t tmp[KHL_RSA_LEN], *out;
        const uint8_t *ct;
        size_t ct_len, n = sizeof(tmp);
        const char *md;
        int r;

        if (!pkcs8 || !s || !pt || !pt_len)
                return KEYHOLD_E_INVALID;
        r = khl_encstring_parse_typed(s, slen,
                                      KEYHOLD_ENC_TYPE_BIT(KEYHOLD_ENC_RSA_OAEP_SHA256) |
                                              KEYHOLD_ENC_TYPE_BIT(KEYHOLD_ENC_RSA_OAEP_SHA1) |
                                              KEYHOLD_ENC_TYPE_BIT(KEYHOLD_ENC_RSA_OAEP_SHA256_HMAC) |
                                              KEYHOLD_ENC_TYPE_BIT(KEYHOLD_ENC_RSA_OAEP_SHA1_HMAC),
                                      &es);
        if (r < 0)
                return r;
        switch (keyhold_encstring_type(es)) {
        case KEYHOLD_ENC_RSA_OAEP_SHA256:
        case KEYHOLD_ENC_RSA_OAEP_SHA256_HMAC:
                md = "SHA256";
                break;
        default:
                md = "SHA1";
                break;
        }
        if (keyhold_encstring_part(es, 0, &ct, &ct_len) < 0)
                return KEYHOLD_E_CRYPTO; /* unreachable: every RSA type has a ct part */

        r = khl_rsa_load_private(pkcs8, pkcs8_len, &priv);
        if (r < 0)
                return r;
        if (ct_len != KHL_RSA_LEN)
                return KEYHOLD_E_DECRYPT; /* a ciphertext is exactly one modulus long */
        r = oaep_ctx(priv, false, md, &ctx);
        if (r < 0)
                return r;

        /* OpenSSL may write the padded block before it strips the padding: decrypt into
         * a modulus-sized stack buffer, copy out the exact plaintext, wipe the buffer. */
        if (EVP_PKEY_decrypt(ctx, tmp, &n, ct, ct_len) != 1 || n > sizeof(tmp)) {
                ERR_clear_error();
                OPENSSL_cleanse(tmp, sizeof(tmp));
                return KEYHOLD_E_DECRYPT;
        }
        out = malloc(n ? n : 1);
        if (out)
                memcpy(out, tmp, n);
        OPENSSL_cleanse(tmp, sizeof(tmp));
        if (!out)
                return KEYHOLD_E_NOMEM;
        *pt = out;
        *pt_len = n;
        return KEYHOLD_OK;
}

int keyhold_rsa_keypair(uint8_t **spki, size_t *spki_len, uint8_t **pkcs8, size_t *pkcs8_len) {
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        KHL_CLEANUP(PKCS8_PRIV_KEY_INFO_freep) PKCS8_PRIV_KEY_INFO *p8 = NULL;
        KHL_CLEANUP_FREE uint8_t *pub = NULL;
        KHL_CLEANUP_SECRET struct khl_secret_buf priv = { NULL, 0 };
        size_t pub_len = 0;
        uint8_t *p;
        int n, r;

        if (!spki || !spki_len || !pkcs8 || !pkcs8_len)
                return KEYHOLD_E_INVALID;
        /* e = 65537 is OpenSSL's default public exponent. */
        pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) KEYHOLD_RSA_BITS);
        if (!pkey) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        r = khl_rsa_spki(pkey, &pub, &pub_len);
        if (r < 0)
                return r;

        /* i2d into our own buffer (sized by a first call), so the secret never sits in an
         * OpenSSL allocation we would have to copy from. */
        p8 = EVP_PKEY2PKCS8(pkey);
        n = p8 ? i2d_PKCS8_PRIV_KEY_INFO(p8, NULL) : 0;
        if (n <= 0) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        r = khl_secret_buf_alloc(&priv, (size_t) n);
        if (r < 0)
                return r;
        p = priv.data;
        if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }

        *spki = KHL_TAKE_PTR(pub);
        *spki_len = pub_len;
        *pkcs8 = priv.data;
        *pkcs8_len = priv.cap;
        priv.data = NULL;
        return KEYHOLD_OK;
}
