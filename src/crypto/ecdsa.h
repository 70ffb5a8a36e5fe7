/* ECDSA over P-256 with SHA-256: the audit signing keys' algorithm. A checkpoint is signed
 * every [audit] checkpoint_records records, dozens of times a second under load, and an
 * ECDSA P-256 signature costs about 25 µs where an RSA-3072 one costs 2 ms. Signatures are
 * DER (X9.62 ECDSA-Sig-Value), over a SHA-256 digest the caller computed. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "crypto/hash.h"

/* A new P-256 key. Returns 0, -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_ec_p256_generate(EVP_PKEY **ret);

/* Whether pkey is an EC key on P-256. */
bool kh_ec_is_p256(EVP_PKEY *pkey);

/* The signature by priv over digest, appended to sig. Returns 0, -EINVAL (not a P-256
 * key), -E2BIG / -ENOMEM (sig's) or -EIO. */
KH_MUST_CHECK int kh_ecdsa_sign(EVP_PKEY *priv, const uint8_t digest[static KH_SHA256_LEN],
                                struct kh_buf *sig);

/* Checks sig[0..sig_len) as the DER signature by pub's private half over digest. Returns 0
 * if it verifies, -KH_E_INTEGRITY if not, -EINVAL if pub is not a P-256 key, -ENOMEM. */
KH_MUST_CHECK int kh_ecdsa_verify(EVP_PKEY *pub, const uint8_t digest[static KH_SHA256_LEN],
                                  const uint8_t *sig, size_t sig_len);
