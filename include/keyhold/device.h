/* Trusted devices ("SSO with trusted devices", keyhold's spec/trusted-devices.md 2.1-2.3):
 * making the three values a device stores on the server, unlocking the user key with
 * them, and re-wrapping them for a new user key. */
#ifndef KEYHOLD_DEVICE_H
#define KEYHOLD_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "keyhold/keyhold.h"
#include "keyhold/encstring.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What trusting a device makes. The three strings are what PUT devices/{id}/keys sends
 * (encryptedUserKey, encryptedPublicKey, encryptedPrivateKey); device_key stays on the
 * device. */
struct keyhold_device_trust {
        uint8_t device_key[KEYHOLD_USER_KEY_LEN]; /* secret: keep it on the device only */
        char *encrypted_user_key;                 /* type 4: user key to the device public key */
        char *encrypted_public_key;               /* type 2: device SPKI under the user key */
        char *encrypted_private_key;              /* type 2: device PKCS#8 under the device key */
};

/**
 * keyhold_device_trust_new() - trusts a new device (section 2.1): a random 64-byte
 * device key and a new RSA-2048 key pair, and the three encrypted values.
 * @user_key: the account's 64-byte user key (borrowed; not kept).
 * @ret:      on success a new object; free it with keyhold_device_trust_free().
 *
 * Returns KEYHOLD_OK, KEYHOLD_E_INVALID, KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_trust_new(
        const uint8_t user_key[KEYHOLD_USER_KEY_LEN], struct keyhold_device_trust **ret);

/* Wipes the device key and frees t and its strings. NULL does nothing. */
KEYHOLD_PUBLIC void keyhold_device_trust_free(struct keyhold_device_trust *t);

/**
 * keyhold_device_unlock() - the user key from a trusted device's values (section 2.2):
 * decrypts encrypted_private_key (type 2 only) with the device key, then decapsulates
 * encrypted_user_key (types 3 to 6) with that private key.
 * @device_key:            the 64-byte device key.
 * @encrypted_private_key: NUL-terminated EncString.
 * @encrypted_user_key:    NUL-terminated EncString.
 * @user_key:              on success the 64-byte user key (secret; the caller wipes it).
 *
 * Returns KEYHOLD_OK or any error of keyhold_aes_decrypt() and keyhold_rsa_decapsulate();
 * KEYHOLD_E_KEY also when the decapsulated key is not 64 bytes (e.g. a v2 COSE user key).
 * A client that gets an error deletes its device key and falls back to other options.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_unlock(
        const uint8_t device_key[KEYHOLD_USER_KEY_LEN], const char *encrypted_private_key,
        const char *encrypted_user_key, uint8_t user_key[KEYHOLD_USER_KEY_LEN]);

/**
 * keyhold_device_rotate() - re-wraps a trusted device for a new user key (POST
 * devices/update-trust): decrypts the device private key with the device key, derives
 * its public key, and makes a new encrypted_user_key (type 4 of new_user_key) and
 * encrypted_public_key (type 2 of the SPKI under new_user_key). The device key and
 * encrypted_private_key do not change.
 * @enc_user_key, @enc_public_key: on success new NUL-terminated strings; free() them.
 *
 * Returns KEYHOLD_OK or any error of keyhold_aes_decrypt() (for encrypted_private_key),
 * KEYHOLD_E_FORMAT / KEYHOLD_E_KEY (the private key is not an RSA-2048 PKCS#8),
 * KEYHOLD_E_NOMEM or KEYHOLD_E_CRYPTO.
 */
KEYHOLD_PUBLIC KEYHOLD_MUST_CHECK int keyhold_device_rotate(
        const uint8_t device_key[KEYHOLD_USER_KEY_LEN], const char *encrypted_private_key,
        const uint8_t new_user_key[KEYHOLD_USER_KEY_LEN], char **enc_user_key,
        char **enc_public_key);

#ifdef __cplusplus
}
#endif

#endif
