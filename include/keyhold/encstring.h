/* Bitwarden EncStrings: parsing, formatting and the byte-buffer form (all types), AES-256-
 * CBC-HMAC-SHA256 (type 2) and legacy AES-256-CBC (type 0) encryption, key stretching,
 * and RSA-2048-OAEP key encapsulation (types 3 to 6). Formats as in keyhold's
 * spec/encstring.md; what Bitwarden clients read is emitted: type 2 and type 4 only. */
#ifndef KEYHOLD_ENCSTRING_H
#define KEYHOLD_ENCSTRING_H

#include <stddef.h>
#include <stdint.h>

#include "keyhold/keyhold.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEYHOLD_USER_KEY_LEN 64     /* a Bitwarden user key / device key: enc_key || mac_key */
#define KEYHOLD_LEGACY_KEY_LEN 32   /* a type-0 key (master key, key connector key) */
#define KEYHOLD_ENCSTRING_MAX 65536 /* longest EncString text accepted, in bytes */
/* Longest buffer form accepted: its canonical text stays below KEYHOLD_ENCSTRING_MAX. */
#define KEYHOLD_ENCSTRING_BUFFER_MAX 48000
#define KEYHOLD_RSA_BITS 2048 /* the only RSA size the library accepts or makes */

enum keyhold_enc_type {
        KEYHOLD_ENC_AES_CBC256 = 0,            /* iv|ct, no MAC: legacy, decrypt-only */
        KEYHOLD_ENC_AES_CBC128_HMAC = 1,       /* iv|ct|mac: parsed, never decrypted */
        KEYHOLD_ENC_AES_CBC256_HMAC = 2,       /* iv|ct|mac: the current symmetric type */
        KEYHOLD_ENC_RSA_OAEP_SHA256 = 3,       /* ct */
        KEYHOLD_ENC_RSA_OAEP_SHA1 = 4,         /* ct: what clients emit */
        KEYHOLD_ENC_RSA_OAEP_SHA256_HMAC = 5,  /* ct|mac, the MAC is ignored */
        KEYHOLD_ENC_RSA_OAEP_SHA1_HMAC = 6,    /* ct|mac, the MAC is ignored */
        KEYHOLD_ENC_COSE = 7,                  /* one COSE_Encrypt0 part, opaque here */
};

/* A parsed EncString: its type and its decoded parts. Immutable once made. */
struct keyhold_encstring;

/**
 * keyhold_encstring_parse() - parses an EncString strictly (spec/encstring.md section 2).
 * @s:   len characters, not necessarily NUL-terminated.
 * @ret: on success a new object; free it with keyhold_encstring_free().
 *
 * The type is one canonical decimal digit 0..7 or the server's enum name (e.g.
 * "AesCbc256_HmacSha256_B64"; "Cose_Encrypt0_B64" also for 7), then ".", then the parts
 * separated by "|". A string without "." is headerless legacy: 3 parts are type 1, any
 * other count type 0. The part count must match the type exactly, every part must be
 * non-empty strict base64 (keyhold_base64_decode()); the iv of types 0 and 2 must be
 * 16 bytes and the mac of type 2 32 bytes.
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL pointer), KEYHOLD_E_FORMAT (anything not
 * so, or longer than KEYHOLD_ENCSTRING_MAX) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_encstring_parse(const char *s, size_t len,
                                                              struct keyhold_encstring **ret);

/* Frees es and its parts. NULL does nothing. */
KEYHOLD_PUBLIC void keyhold_encstring_free(struct keyhold_encstring *es);

/* The type of es (not NULL). */
KEYHOLD_PUBLIC enum keyhold_enc_type keyhold_encstring_type(const struct keyhold_encstring *es);

/* The number of parts of es (not NULL): 1, 2 or 3, as the type requires. */
KEYHOLD_PUBLIC size_t keyhold_encstring_n_parts(const struct keyhold_encstring *es);

/**
 * keyhold_encstring_part() - the decoded bytes of part i, in string order (type 2: iv,
 * ct, mac).
 * @data: on success points into es; valid as long as es is. Never NULL, never empty.
 *
 * Returns KEYHOLD_OK or KEYHOLD_E_INVALID (NULL pointer, i >= the number of parts).
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_encstring_part(const struct keyhold_encstring *es,
                                                             size_t i, const uint8_t **data,
                                                             size_t *len);

/**
 * keyhold_encstring_format() - the canonical text of es: "N.b64|b64...", N a digit.
 * @ret: on success a new NUL-terminated string; free() it.
 *
 * Parsing the result gives the same type and parts. Returns KEYHOLD_OK,
 * KEYHOLD_E_INVALID or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_encstring_format(const struct keyhold_encstring *es,
                                                               char **ret);

/**
 * keyhold_encstring_to_buffer() - the byte-buffer form (EncArrayBuffer, spec section 3):
 * type 0: 0x00 iv ct; type 2: 0x02 iv mac ct; type 7: 0x07 cose.
 * @ret: on success a new buffer of *len bytes; free() it.
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID, KEYHOLD_E_TYPE (types 1 and 3 to 6 have no
 * buffer form) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_encstring_to_buffer(
        const struct keyhold_encstring *es, uint8_t **ret, size_t *len);

/**
 * keyhold_encstring_from_buffer() - parses the byte-buffer form.
 * @ret: on success a new object; free it with keyhold_encstring_free().
 *
 * Type 0 needs at least 18 bytes, type 2 at least 50, type 7 at least 2; at most
 * KEYHOLD_ENCSTRING_BUFFER_MAX. Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL pointer),
 * KEYHOLD_E_TYPE (a first byte of 1 or 3 to 6), KEYHOLD_E_FORMAT (any other first byte,
 * too short or too long) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_encstring_from_buffer(
        const uint8_t *buf, size_t len, struct keyhold_encstring **ret);

/* The bit of type in a mask for keyhold_encstring_check(). */
#define KEYHOLD_ENC_TYPE_BIT(type) (1u << (unsigned) (type))

/**
 * keyhold_encstring_check() - is s a well-formed EncString of one of the types in
 * type_mask (KEYHOLD_ENC_TYPE_BIT(t) for each accepted t)? For servers that store
 * EncStrings opaquely and must refuse malformed ones.
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_FORMAT (as keyhold_encstring_parse(); also a NULL s),
 * KEYHOLD_E_TYPE (well-formed, type not in the mask) or KEYHOLD_E_NOMEM.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_encstring_check(const char *s, size_t len,
                                                              unsigned type_mask);

/**
 * keyhold_aes_encrypt() - a type 2 EncString of pt under key, with a random iv.
 * @key: 64 bytes, enc_key || mac_key (a user key, device key or stretched key).
 * @pt:  len bytes of plaintext (may be NULL when len is 0).
 * @ret: on success a new NUL-terminated string; free() it.
 *
 * AES-256-CBC with PKCS#7 padding, then HMAC-SHA256 over iv || ct. Returns KEYHOLD_OK,
 * KEYHOLD_E_INVALID (NULL pointer, len above KEYHOLD_ENCSTRING_BUFFER_MAX),
 * KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO (no randomness or a cipher failure).
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_aes_encrypt(const uint8_t key[KEYHOLD_USER_KEY_LEN],
                                                          const uint8_t *pt, size_t len,
                                                          char **ret);

/**
 * keyhold_aes_encrypt_iv() - as keyhold_aes_encrypt() with the given iv: deterministic,
 * for test vectors only. Reusing an iv under one key leaks plaintext relations.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_aes_encrypt_iv(
        const uint8_t key[KEYHOLD_USER_KEY_LEN], const uint8_t iv[16], const uint8_t *pt,
        size_t len, char **ret);

/**
 * keyhold_aes_decrypt() - decrypts a symmetric EncString.
 * @key:     key_len bytes.
 * @key_len: 64 (KEYHOLD_USER_KEY_LEN): s must be type 2; its MAC is checked in constant
 *           time before anything is decrypted. 32 (KEYHOLD_LEGACY_KEY_LEN): s must be
 *           type 0, which has no MAC (the legacy key-connector import path only).
 * @s:       slen characters.
 * @pt:      on success the plaintext (not NULL, even when empty); free it with
 *           keyhold_wipe_free(*pt, *pt_len).
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL pointer), KEYHOLD_E_KEY (key_len neither 32
 * nor 64), KEYHOLD_E_FORMAT (s malformed), KEYHOLD_E_TYPE (any other type for this key
 * length: a type 0 string for a 64-byte key is a downgrade), KEYHOLD_E_MAC (type 2 MAC
 * mismatch), KEYHOLD_E_DECRYPT (bad length or padding after the MAC, or type 0),
 * KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_aes_decrypt(const uint8_t *key, size_t key_len,
                                                          const char *s, size_t slen,
                                                          uint8_t **pt, size_t *pt_len);

/**
 * keyhold_stretch_key() - stretches a 32-byte key (master key, key connector key) to a
 * 64-byte one: HKDF-Expand-SHA256 with the key as PRK, info "enc" then "mac", 32 bytes
 * each (no Extract step; spec/encstring.md section 5).
 * @out: 64 bytes, secret; written only on success.
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_stretch_key(const uint8_t key[KEYHOLD_LEGACY_KEY_LEN],
                                                          uint8_t out[KEYHOLD_USER_KEY_LEN]);

/**
 * keyhold_rsa_encapsulate() - a type 4 EncString of pt to an RSA-2048 public key:
 * RSA-OAEP with SHA-1 and MGF1-SHA-1, empty label, as Bitwarden clients make them.
 * @spki: DER SubjectPublicKeyInfo (the base64-decoded "publicKey" of the API), checked
 *        as keyhold_spki_check() does.
 * @pt:   1 to 214 bytes (usually a 64-byte user key).
 * @ret:  on success a new NUL-terminated string ("4." and 344 base64 characters); free() it.
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL pointer, pt empty or too long),
 * KEYHOLD_E_FORMAT / KEYHOLD_E_KEY (as keyhold_spki_check()), KEYHOLD_E_NOMEM or
 * KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_rsa_encapsulate(const uint8_t *spki, size_t spki_len,
                                                              const uint8_t *pt, size_t len,
                                                              char **ret);

/**
 * keyhold_rsa_decapsulate() - decrypts an RSA EncString of type 3 or 5 (OAEP SHA-256)
 * or 4 or 6 (OAEP SHA-1). The MAC part of types 5 and 6 is ignored, as Bitwarden does:
 * it authenticates nothing an attacker could not recompute.
 * @pkcs8: the private key, DER PKCS#8 PrivateKeyInfo of an RSA-2048 key (secret; borrowed).
 * @pt:    on success the plaintext; free it with keyhold_wipe_free(*pt, *pt_len).
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID, KEYHOLD_E_FORMAT (s or the key encoding
 * malformed), KEYHOLD_E_TYPE (a symmetric or COSE type), KEYHOLD_E_KEY (not an RSA-2048
 * key), KEYHOLD_E_DECRYPT (wrong key, corrupted ciphertext, ciphertext not 256 bytes),
 * KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_rsa_decapsulate(const uint8_t *pkcs8,
                                                              size_t pkcs8_len, const char *s,
                                                              size_t slen, uint8_t **pt,
                                                              size_t *pt_len);

/**
 * keyhold_rsa_keypair() - a new RSA-2048 key pair with e = 65537.
 * @spki:  on success its public key, DER SubjectPublicKeyInfo; free() it.
 * @pkcs8: on success its private key, DER PKCS#8 (secret); free it with
 *         keyhold_wipe_free(*pkcs8, *pkcs8_len).
 *
 * Takes a noticeable fraction of a second. Returns KEYHOLD_OK, KEYHOLD_E_INVALID,
 * KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_rsa_keypair(uint8_t **spki, size_t *spki_len,
                                                          uint8_t **pkcs8, size_t *pkcs8_len);

/**
 * keyhold_spki_check() - is spki[0..len) exactly the DER SubjectPublicKeyInfo of an
 * RSA-2048 key (rsaEncryption, canonical DER, no trailing bytes)?
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL), KEYHOLD_E_FORMAT (not a DER SPKI),
 * KEYHOLD_E_KEY (a key of another kind or size), KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_spki_check(const uint8_t *spki, size_t len);

#ifdef __cplusplus
}
#endif

#endif
