/* Request decoding: bodies become typed values here, so no raw JSON gets past http/.
 * Decoders return errors meant for the client. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/cleanup.h"
#include "common/secret.h"

/* POST/PUT /user-keys: {"key": "<base64 of 32 bytes>"}. Older clients send "Key"; both at
 * once is ambiguous and rejected. Other fields are ignored, as Bitwarden does.
 * Returns 0, -KH_E_BODY_TOO_LARGE, -KH_E_INVALID_BODY, -KH_E_INVALID_KEY or -ENOMEM. */
KH_MUST_CHECK int kh_req_user_key_parse(const char *body, size_t len, struct kh_secret **ret_key);

/* POST /admin/keys/rekey: no body, or {"algorithm": "rsa-3072" | "rsa-4096"}; *ret_bits is
 * the RSA size (default_bits without a body or member). Returns 0, -KH_E_BODY_TOO_LARGE,
 * -KH_E_INVALID_BODY (not an object, unknown member) or -KH_E_INVALID_ALGORITHM. */
KH_MUST_CHECK int kh_req_rekey_parse(const char *body, size_t len, unsigned default_bits,
                                     unsigned *ret_bits);

/* POST /server/unseal: {"master_key": "<base64 of 32 bytes>"} or {"passphrase": "..."},
 * exactly one. The secret is copied into locked memory (a passphrase with its NUL) and wiped
 * from the parsed document. Returns 0, -KH_E_BODY_TOO_LARGE, -KH_E_INVALID_BODY,
 * -KH_E_INVALID_KEY or -ENOMEM. */
KH_MUST_CHECK int kh_req_unseal_parse(const char *body, size_t len,
                                      struct kh_secret **ret_master_key,
                                      struct kh_secret **ret_passphrase);

/* True if a Content-Type value is application/json, parameters (charset=utf-8) allowed. */
bool kh_req_content_type_is_json(const char *value, size_t len);
