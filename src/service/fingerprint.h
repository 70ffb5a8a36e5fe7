/* The fingerprint phrase (spec/trusted-devices.md section 5) shown to approvers so that they
 * can match an admin-approval request with the phrase on the member's new device. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"

#define KH_FINGERPRINT_MAX 64          /* five words of at most 9 letters, 4 dashes, NUL */
#define KH_FINGERPRINT_MATERIAL_MAX 1024

/**
 * kh_fingerprint_phrase() - five words of the EFF long list joined by "-", e.g.
 * "turban-deftly-anime-chatroom-unselfish": okm = HKDF-Expand-SHA256(PRK = spki,
 * info = material, 32 bytes), read as a big-endian number, written in base 7776 least
 * significant digit first, one word per digit.
 * @material: for a login request the account e-mail already lowercased (NUL-terminated, at
 *            most KH_FINGERPRINT_MATERIAL_MAX bytes).
 * @spki:     the public key bytes (the decoded "publicKey"), len >= 1.
 * Returns 0, -EINVAL or -EIO. Thread-safe.
 */
KH_MUST_CHECK int kh_fingerprint_phrase(const char *material, const uint8_t *spki, size_t len,
                                        char out[static KH_FINGERPRINT_MAX]);
