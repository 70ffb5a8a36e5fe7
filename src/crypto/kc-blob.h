/* Bitwarden Key Connector's stored values (spec/key-connector-storage.md sections 3, 4):
 * a user's Key is AES-256-GCM under the installation's data key, laid out
 * ciphertext || tag(16) || nonce(12), without associated data. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/secret.h"

#define KH_KC_DATA_KEY_LEN 32
#define KH_KC_BLOB_TAG_LEN 16
#define KH_KC_BLOB_NONCE_LEN 12
#define KH_KC_BLOB_OVERHEAD (KH_KC_BLOB_TAG_LEN + KH_KC_BLOB_NONCE_LEN)

/**
 * kh_kc_blob_open() - decrypts one stored Key Connector Key (base64-decoded).
 * @data_key: the unwrapped data key, exactly 32 bytes; borrowed.
 * @blob:     ciphertext || tag || nonce.
 * @len:      its length; the plaintext is len - 28 bytes.
 * @ret:      on success a new secret holding the plaintext (any length >= 1; the importer
 *            checks it is a 32-byte user key); the caller frees it.
 *
 * Returns 0, -KH_E_KC_BLOB_SHORT (len <= 28: no room for a key; Key Connector never
 * stores an empty one), -KH_E_KC_DECRYPT (the tag does not verify under this data key),
 * -EINVAL (data_key not 32 bytes, blob or ret NULL), -E2BIG (a blob over 2 GiB), -ENOMEM
 * or -EIO. Any thread may call it.
 */
KH_MUST_CHECK int kh_kc_blob_open(const struct kh_secret *data_key, const uint8_t *blob, size_t len,
                                  struct kh_secret **ret);

/**
 * kh_kc_data_key_decode() - a data key an operator unwrapped themselves, from a file.
 * @file_content: the file's bytes; borrowed. Either exactly 32 raw bytes, or the strict
 *                base64 of 32 bytes (44 characters), optionally followed by one "\n".
 * @ret:          on success a new 32-byte secret; the caller frees it.
 *
 * Returns 0, -KH_E_KC_DATA_KEY_FILE (anything else: other lengths, "\r\n", two newlines,
 * spaces, base64 of another length), -EINVAL (NULL arguments) or -ENOMEM.
 */
KH_MUST_CHECK int kh_kc_data_key_decode(const struct kh_secret *file_content,
                                        struct kh_secret **ret);
