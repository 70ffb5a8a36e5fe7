/* RSA key generation, RSA-OAEP (SHA-256, MGF1-SHA-256, no label) wrapping of secrets, and
 * verification of the RSA-PSS signatures key stores make (kh_keystore_sign()). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"
#include "crypto/hash.h"

KH_DEFINE_CLEANUP(EVP_PKEY_free, EVP_PKEY *)

/* A new RSA key of bits (2048..8192, multiple of 1024) with e = 65537.
 * Returns 0, -EINVAL, -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_rsa_generate(unsigned bits, EVP_PKEY **ret);

/* Encrypts the secret pt to pub, appending the ciphertext (modulus size) to out. */
KH_MUST_CHECK int kh_rsa_oaep_encrypt(EVP_PKEY *pub, const struct kh_secret *pt, struct kh_buf *out);

/* Decrypts in[0..len) with priv into a new secret. -KH_E_INTEGRITY if it does not decrypt. */
KH_MUST_CHECK int kh_rsa_oaep_decrypt(EVP_PKEY *priv, const uint8_t *in, size_t len,
                                      struct kh_secret **ret_pt);

/* The OAEP digest (also MGF1's) of a ciphertext made by someone else: Bitwarden's EncString
 * types 3 (SHA-256) and 4 (SHA-1) (spec/encstring.md section 6). keyhold's own wrapping is
 * SHA-256 only. */
enum kh_oaep_md {
        KH_OAEP_SHA256 = 0,
        KH_OAEP_SHA1 = 1,
};

/* As kh_rsa_oaep_encrypt() with the digest md (a key store's key that its token decrypts
 * with SHA-1 only); -EINVAL for another md. */
KH_MUST_CHECK int kh_rsa_oaep_encrypt_md(EVP_PKEY *pub, enum kh_oaep_md md,
                                         const struct kh_secret *pt, struct kh_buf *out);

/* As kh_rsa_oaep_decrypt() with the digest md; -EINVAL for another md. */
KH_MUST_CHECK int kh_rsa_oaep_decrypt_md(EVP_PKEY *priv, enum kh_oaep_md md, const uint8_t *in,
                                         size_t len, struct kh_secret **ret_pt);

/* Checks sig[0..sig_len) as the RSA-PSS signature by pub's private half over the SHA-256
 * digest: MGF1-SHA-256 and a salt of exactly the digest's length, as
 * kh_keystore_sign() makes them; no other salt length is accepted. Returns 0 if it
 * verifies, -KH_E_INTEGRITY if not (a signature of another length than the modulus
 * included), -EINVAL if pub is not an RSA key, -ENOMEM, or -EIO (OpenSSL refused the
 * parameters). */
KH_MUST_CHECK int kh_rsa_pss_verify(EVP_PKEY *pub, const uint8_t digest[static KH_SHA256_LEN],
                                    const uint8_t *sig, size_t sig_len);

/* Parses der[0..len) as an RSA SubjectPublicKeyInfo of exactly @bits (trailing bytes, other
 * key types and sizes refused). Returns 0 with a new key, -EINVAL or -ENOMEM. */
KH_MUST_CHECK int kh_rsa_spki_parse(const uint8_t *der, size_t len, unsigned bits, EVP_PKEY **ret);

/* Encrypts the secret pt to the RSA public key spki[0..len) (SubjectPublicKeyInfo DER) with
 * OAEP digest md (MGF1 the same, empty label), appending the ciphertext to out: how the
 * server answers a login request with a user key (EncString type 4 is KH_OAEP_SHA1).
 * Returns 0, -EINVAL (not an RSA SPKI; plaintext too long), -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_rsa_oaep_encrypt_spki(const uint8_t *spki, size_t len, enum kh_oaep_md md,
                                           const struct kh_secret *pt, struct kh_buf *out);
