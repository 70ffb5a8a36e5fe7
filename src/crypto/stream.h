/* Primitives for files that are too large for one seal (backups): AES-256-GCM with a nonce
 * the caller derives (a chunk index; never random, never repeated under one key),
 * HKDF-SHA256 to derive a per-file key, and SHA-256 over a stream. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/secret.h"
#include "crypto/aead.h"
#include "crypto/hash.h"

/**
 * kh_aead_chunk_seal() - AES-256-GCM of pt[0..len) under key (32 bytes) with the given
 * nonce and aad; the ciphertext (len bytes) goes to ct (which may be pt) and the tag to tag.
 * The caller guarantees the nonce is never used twice under one key. Returns 0, -EINVAL
 * (key not 32 bytes, len > INT_MAX), -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_aead_chunk_seal(const struct kh_secret *key,
                                     const uint8_t nonce[static KH_AEAD_NONCE_LEN],
                                     const uint8_t *aad, size_t aad_len, const uint8_t *pt,
                                     size_t len, uint8_t *ct, uint8_t tag[static KH_AEAD_TAG_LEN]);

/* The inverse: pt (which may be ct) gets len bytes only if the tag verifies. Returns 0,
 * -KH_E_INTEGRITY (wrong key, nonce, aad or tag, or a changed byte), -EINVAL, -ENOMEM, -EIO.
 * On -KH_E_INTEGRITY pt has been wiped. */
KH_MUST_CHECK int kh_aead_chunk_open(const struct kh_secret *key,
                                     const uint8_t nonce[static KH_AEAD_NONCE_LEN],
                                     const uint8_t *aad, size_t aad_len, const uint8_t *ct,
                                     size_t len, const uint8_t tag[static KH_AEAD_TAG_LEN],
                                     uint8_t *pt);

/**
 * kh_hkdf_sha256() - HKDF-SHA256 (RFC 5869) of ikm with salt and info, out_len bytes
 * (1..255*32) straight into a new secret. Returns 0, -EINVAL, -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_hkdf_sha256(const struct kh_secret *ikm, const uint8_t *salt,
                                 size_t salt_len, const char *info, size_t out_len,
                                 struct kh_secret **ret);

/* SHA-256 over a stream. */
struct kh_sha256_ctx;
KH_MUST_CHECK int kh_sha256_new(struct kh_sha256_ctx **ret);  /* 0 or -ENOMEM */
void kh_sha256_update(struct kh_sha256_ctx *c, const void *p, size_t n);
void kh_sha256_final(struct kh_sha256_ctx *c, uint8_t out[static KH_SHA256_LEN]);
struct kh_sha256_ctx *kh_sha256_free(struct kh_sha256_ctx *c); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_sha256_free, struct kh_sha256_ctx *)
