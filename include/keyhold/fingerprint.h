/* The fingerprint phrase Bitwarden shows on both devices (and to admins) so that a person
 * can match a login request to its public key (keyhold's spec/trusted-devices.md
 * section 5). */
#ifndef KEYHOLD_FINGERPRINT_H
#define KEYHOLD_FINGERPRINT_H

#include <stddef.h>
#include <stdint.h>

#include "keyhold/keyhold.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KEYHOLD_FINGERPRINT_MAX 128   /* room for any phrase and its NUL */
#define KEYHOLD_FINGERPRINT_MATERIAL_MAX 1024 /* longest material accepted, in bytes */

/**
 * keyhold_fingerprint() - the five-word phrase for a public key, e.g.
 * "turban-deftly-anime-chatroom-unselfish".
 * @material: NUL-terminated: for a login request the account e-mail, already
 *            lowercased; for the account fingerprint the user id. At most
 *            KEYHOLD_FINGERPRINT_MATERIAL_MAX bytes.
 * @spki:     the public key bytes as the API carries them (base64-decoded "publicKey",
 *            DER SPKI), spki_len >= 1. Any bytes are hashed, as Bitwarden does; check the
 *            key itself with keyhold_spki_check().
 * @out:      on success the NUL-terminated phrase: five words of the EFF long list
 *            joined by "-".
 *
 * okm = HKDF-Expand-SHA256(PRK = spki, info = material, 32 bytes); the words are the
 * base-7776 digits of okm read as a big-endian number, least significant first.
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID (NULL pointer, empty key, material too long) or
 * KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_fingerprint(const char *material,
                                                          const uint8_t *spki, size_t spki_len,
                                                          char out[KEYHOLD_FINGERPRINT_MAX]);

#ifdef __cplusplus
}
#endif

#endif
