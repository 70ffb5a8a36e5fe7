/* The pure half of `keyhold device rotate`: re-wrapping another trusted device of the
 * member for a new user key, from the values the server lists for it (spec/trusted-devices.md
 * 2.1 and the update-trust route of section 3). No I/O; every user key is borrowed. */
#pragma once

#include <stdint.h>

#include "keyhold/encstring.h"

/**
 * kh_rotate_rewrap() - a trusted device's new values for a new user key: opens its
 * encryptedPublicKey (type 2) with old_key, checks that it is an RSA-2048 SPKI
 * (keyhold_spki_check()), encapsulates new_key to it (type 4) and wraps the SPKI under
 * new_key (type 2).
 * @enc_public_key:     the device's encryptedPublicKey as the server lists it.
 * @ret_enc_user_key:   on success a new string (type 4 of new_key); free() it.
 * @ret_enc_public_key: on success a new string (type 2 of the SPKI under new_key); free() it.
 *
 * Nothing is written on failure. Returns KEYHOLD_OK; KEYHOLD_E_INVALID (NULL); any error of
 * keyhold_aes_decrypt() (KEYHOLD_E_MAC: made under another key, KEYHOLD_E_TYPE: not type 2,
 * e.g. a v2 account's COSE value, KEYHOLD_E_FORMAT: malformed); KEYHOLD_E_FORMAT /
 * KEYHOLD_E_KEY when the plaintext is not an RSA-2048 SPKI; KEYHOLD_E_NOMEM or
 * KEYHOLD_E_CRYPTO.
 */
KEYHOLD_MUST_CHECK int kh_rotate_rewrap(const uint8_t old_key[KEYHOLD_USER_KEY_LEN],
                                        const uint8_t new_key[KEYHOLD_USER_KEY_LEN],
                                        const char *enc_public_key, char **ret_enc_user_key,
                                        char **ret_enc_public_key);

/* Why kh_rotate_rewrap() failed with r, in words for the member ("its public key was made
 * under another user key"). Never NULL. */
const char *kh_rotate_reason(int r);
