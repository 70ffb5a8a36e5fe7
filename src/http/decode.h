/* Request decoding: bodies become typed values here, so no raw JSON gets past http/.
 * Decoders return errors meant for the client. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/cleanup.h"
#include "common/secret.h"
#include "service/import.h"

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

/* POST /admin/import/user-keys: {"keys": [{"user": GUID, "key": base64 of 32 bytes}, ...],
 * "overwrite"?: bool, "verify"?: bool}, 1..KH_IMPORT_BATCH_MAX distinct users, no other
 * members. The keys' text is wiped from the parsed document. Returns 0 (free *ret with
 * kh_req_import_free()), -KH_E_BODY_TOO_LARGE, -KH_E_INVALID_IMPORT, -KH_E_INVALID_KEY or
 * -ENOMEM; on failure *ret holds nothing. */
#define KH_REQ_IMPORT_BODY_MAX (60 * 1024)
struct kh_req_import {
        struct kh_import_entry *entries;   /* each key owned */
        size_t n;
        bool overwrite, verify;
};
KH_MUST_CHECK int kh_req_import_parse(const char *body, size_t len, struct kh_req_import *ret);
void kh_req_import_free(struct kh_req_import *imp);

/* True if a Content-Type value is application/json, parameters (charset=utf-8) allowed. */
bool kh_req_content_type_is_json(const char *value, size_t len);

/* ---- trusted devices (decode-devices.c) ----
 * Bodies of Bitwarden's device and recovery routes, bound as Bitwarden binds them: member
 * names case-insensitively (two spellings of one name: -KH_E_INVALID_BODY), unknown members
 * ignored. The strings a decoder returns point into its document: they live until
 * kh_req_doc_free(). Each returns 0, -KH_E_BODY_TOO_LARGE (more than its maximum),
 * -KH_E_INVALID_REQUEST_BODY (not JSON, not the shape), -KH_E_INVALID_ENCSTRING (a trust value that
 * is no well-formed EncString of the types its place takes) or -ENOMEM. */

#define KH_REQ_LIST_BODY_MAX (64 * 1024)   /* update-trust and untrust carry lists */
#define KH_REQ_DEVICES_MAX 100             /* devices named in one body */

struct kh_req_doc {
        void *json;                        /* the parsed document (a json_t) */
};
void kh_req_doc_free(struct kh_req_doc *doc);

/* POST /devices: {"type": 0..1000, "name": 1..50 bytes, "identifier": 1..50 of
 * [A-Za-z0-9._-], "pushToken"?}. */
struct kh_req_device {
        int type;
        const char *name, *identifier;
};
KH_MUST_CHECK int kh_req_device_parse(const char *body, size_t len, struct kh_req_doc *doc,
                                      struct kh_req_device *ret);

/* The trust values: encryptedUserKey (type 3 or 4), encryptedPublicKey and
 * encryptedPrivateKey (type 2 or 7). */
struct kh_req_trust {
        const char *user_key, *public_key, *private_key;
        const char *device_id;             /* update-trust's otherDevices: canonical GUID */
        char device_id_buf[37];
};

/* PUT /devices/{identifier}/keys: all three values. */
KH_MUST_CHECK int kh_req_device_keys_parse(const char *body, size_t len, struct kh_req_doc *doc,
                                           struct kh_req_trust *ret);

/* POST /devices/update-trust: {"currentDevice": {encryptedUserKey, encryptedPublicKey},
 * "otherDevices": [{deviceId, encryptedUserKey, encryptedPublicKey}]?, "untrustUnlisted":
 * bool?} (secret, masterPasswordHash, otp ignored). others[] is allocated (kh_req_doc_free
 * frees it). */
struct kh_req_update_trust {
        struct kh_req_trust current;
        struct kh_req_trust *others;
        size_t n_others;
        bool untrust_unlisted;
};
KH_MUST_CHECK int kh_req_update_trust_parse(const char *body, size_t len, struct kh_req_doc *doc,
                                            struct kh_req_update_trust *ret);
void kh_req_update_trust_free(struct kh_req_update_trust *u);

/* POST /devices/untrust: {"devices": [GUID, ...]} (at most KH_REQ_DEVICES_MAX), into
 * ids[KH_REQ_DEVICES_MAX][37], canonical. */
KH_MUST_CHECK int kh_req_untrust_parse(const char *body, size_t len,
                                       char ids[static KH_REQ_DEVICES_MAX][37], size_t *ret_n);

/* PUT .../reset-password-enrollment: {"resetPasswordKey": "4...." | "3...." | "" | null}
 * (an RSA-2048 ciphertext; "" and null: withdraw, *ret_key NULL), masterPasswordHash
 * ignored. */
KH_MUST_CHECK int kh_req_enrol_parse(const char *body, size_t len, struct kh_req_doc *doc,
                                     const char **ret_key);
