/* What the modules of libkeyhold share and callers never see: cleanup helpers (the
 * library stands alone, so it has its own rather than src/common's), the base64 core,
 * HKDF-Expand, EncString assembly and the loading of RSA keys. Nothing here is exported
 * from libkeyhold.so; the unit tests reach it through the static library. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <openssl/evp.h>

#include "keyhold/encstring.h"
#include "keyhold/keyhold.h"

#define KHL_MUST_CHECK __attribute__((warn_unused_result))
#define KHL_CLEANUP(fn) __attribute__((cleanup(fn)))
#define KHL_DEFINE_CLEANUP(fn, type)                                                             \
        static inline void fn##p(type *p) {                                                      \
                if (*p)                                                                          \
                        (void) fn(*p);                                                           \
        }

static inline void khl_freep(void *p) {
        free(*(void **) p);
}
#define KHL_CLEANUP_FREE KHL_CLEANUP(khl_freep)

static inline void *khl_take_ptr_(void *pp) {
        void **p = pp, *v = *p;
        *p = NULL;
        return v;
}
#define KHL_TAKE_PTR(p) ((__typeof__(p)) khl_take_ptr_(&(p)))
#define KHL_ELEMENTSOF(a) (sizeof(a) / sizeof((a)[0]))

/* A heap buffer that holds a secret: the cleanup wipes all cap bytes, then frees. */
struct khl_secret_buf {
        uint8_t *data;
        size_t cap;
};
void khl_secret_buf_wipe(struct khl_secret_buf *b);
#define KHL_CLEANUP_SECRET KHL_CLEANUP(khl_secret_buf_wipe)
/* Allocates cap bytes (at least 1) into b. Returns KEYHOLD_OK or KEYHOLD_E_NOMEM. */
KHL_MUST_CHECK int khl_secret_buf_alloc(struct khl_secret_buf *b, size_t cap);

KHL_DEFINE_CLEANUP(EVP_PKEY_free, EVP_PKEY *)
KHL_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)
KHL_DEFINE_CLEANUP(keyhold_encstring_free, struct keyhold_encstring *)

#define KHL_AES_IV_LEN 16
#define KHL_AES_BLOCK 16
#define KHL_MAC_LEN 32
#define KHL_RSA_LEN (KEYHOLD_RSA_BITS / 8)

/* base64: the length of the text of len bytes, or 0 if it would overflow (len > 0). */
size_t khl_base64_len(size_t len);
/* Writes khl_base64_len(len) characters (no NUL) to out, in constant time. */
void khl_base64_encode_to(const uint8_t *in, size_t len, char *out);
/* Strict decode of in[0..len) into out (room for len / 4 * 3 bytes); *out_len the decoded
 * length. Returns KEYHOLD_OK or KEYHOLD_E_FORMAT; out may be partly written on failure. */
KHL_MUST_CHECK int khl_base64_decode_to(const char *in, size_t len, uint8_t *out,
                                        size_t *out_len);

/* HKDF-Expand (RFC 5869 section 2.3) with SHA-256: prk used as is, no Extract step.
 * out_len 1..8160. Returns KEYHOLD_OK, KEYHOLD_E_INVALID or KEYHOLD_E_CRYPTO. */
KHL_MUST_CHECK int khl_hkdf_expand(const uint8_t *prk, size_t prk_len, const uint8_t *info,
                                   size_t info_len, uint8_t *out, size_t out_len);

/* The canonical text "N.b64|b64..." of n parts. Returns KEYHOLD_OK, KEYHOLD_E_INVALID or
 * KEYHOLD_E_NOMEM. */
KHL_MUST_CHECK int khl_encstring_format_parts(enum keyhold_enc_type type, size_t n,
                                              const uint8_t *const parts[],
                                              const size_t lens[], char **ret);

/* Parses s and accepts only the types in type_mask (KEYHOLD_ENC_TYPE_BIT): the shared
 * first step of every decrypting function. */
KHL_MUST_CHECK int khl_encstring_parse_typed(const char *s, size_t len, unsigned type_mask,
                                             struct keyhold_encstring **ret);

/* An RSA-2048 public key from exact, canonical DER SPKI bytes: KEYHOLD_E_FORMAT,
 * KEYHOLD_E_KEY, KEYHOLD_E_NOMEM. */
KHL_MUST_CHECK int khl_rsa_load_public(const uint8_t *spki, size_t len, EVP_PKEY **ret);
/* An RSA-2048 private key from exact DER PKCS#8 bytes: KEYHOLD_E_FORMAT, KEYHOLD_E_KEY. */
KHL_MUST_CHECK int khl_rsa_load_private(const uint8_t *pkcs8, size_t len, EVP_PKEY **ret);
/* The DER SPKI of pkey into a new malloc'd buffer. */
KHL_MUST_CHECK int khl_rsa_spki(EVP_PKEY *pkey, uint8_t **ret, size_t *ret_len);

/* The EFF long word list, in its published order ("abacus" .. "zoom"). */
#define KHL_EFF_WORDS 7776
extern const char *const khl_eff_wordlist[KHL_EFF_WORDS];
