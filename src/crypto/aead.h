/* AES-256-GCM sealing of records. A sealed blob is nonce(12) || ciphertext || tag(16);
 * the nonce is random (96 bits). The associated data binds the blob to where it belongs. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"

#define KH_AEAD_KEY_LEN 32
#define KH_AEAD_NONCE_LEN 12
#define KH_AEAD_TAG_LEN 16
#define KH_AEAD_OVERHEAD (KH_AEAD_NONCE_LEN + KH_AEAD_TAG_LEN)

/* Seals the secret pt under key (exactly 32 bytes) with aad, appending the blob to out.
 * Returns 0, -EINVAL (key not 32 bytes), -E2BIG (out's maximum), -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_aead_seal(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                               const struct kh_secret *pt, struct kh_buf *out);

/* Opens a blob sealed by kh_aead_seal. On success *ret_pt is a new secret (caller frees).
 * Returns 0, -KH_E_INTEGRITY (too short, wrong key, wrong aad, tampered), -EINVAL (key not
 * 32 bytes), -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_aead_unseal(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                                 const uint8_t *in, size_t in_len, struct kh_secret **ret_pt);

/* As kh_aead_seal(), of plain bytes (pt_len > 0): a record that holds no key. */
KH_MUST_CHECK int kh_aead_seal_bytes(const struct kh_secret *key, const uint8_t *aad,
                                     size_t aad_len, const uint8_t *pt, size_t pt_len,
                                     struct kh_buf *out);

/* As kh_aead_unseal(), the plaintext appended to out instead (a record holding data that is
 * no key, e.g. a device's metadata and its client-encrypted trust values; give out the
 * sensitive flag if it should be wiped). -E2BIG: out's maximum is too small (out unchanged). */
KH_MUST_CHECK int kh_aead_unseal_buf(const struct kh_secret *key, const uint8_t *aad,
                                     size_t aad_len, const uint8_t *in, size_t in_len,
                                     struct kh_buf *out);
