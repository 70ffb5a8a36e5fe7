/* RSA key generation and RSA-OAEP (SHA-256, MGF1-SHA-256, no label) wrapping of secrets. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"

KH_DEFINE_CLEANUP(EVP_PKEY_free, EVP_PKEY *)

/* A new RSA key of bits (2048..8192, multiple of 1024) with e = 65537.
 * Returns 0, -EINVAL, -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_rsa_generate(unsigned bits, EVP_PKEY **ret);

/* Encrypts the secret pt to pub, appending the ciphertext (modulus size) to out. */
KH_MUST_CHECK int kh_rsa_oaep_encrypt(EVP_PKEY *pub, const struct kh_secret *pt, struct kh_buf *out);

/* Decrypts in[0..len) with priv into a new secret. -KH_E_INTEGRITY if it does not decrypt. */
KH_MUST_CHECK int kh_rsa_oaep_decrypt(EVP_PKEY *priv, const uint8_t *in, size_t len,
                                      struct kh_secret **ret_pt);
