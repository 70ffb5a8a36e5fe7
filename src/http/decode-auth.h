/* Bodies and queries of the login-request routes (docs/trusted-devices.md "Login requests and
 * admin approval"), decoded into typed values. Field names match case-insensitively, as
 * Bitwarden's server binds them; a name given twice (in any case) is ambiguous and refused.
 * Unknown fields are ignored, as Bitwarden does. Every decoder is a total function over
 * untrusted bytes (fuzz/fuzz-auth-request-body.c): 0, or -KH_E_BODY_TOO_LARGE,
 * -KH_E_INVALID_REQUEST_BODY or -ENOMEM, and *ret untouched on failure. Strings point into
 * ret->root, which kh_req_auth_clear() releases. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "common/cleanup.h"

#define KH_REQ_AUTH_ITEMS_MAX 100          /* ids or answers in one bulk body */
#define KH_REQ_AUTH_LIST_BODY_MAX (64 * 1024) /* bodies of the bulk routes */

/* POST /auth-requests and /auth-requests/admin-request. */
struct kh_req_auth_create {
        json_t *root;
        const char *email, *public_key, *device_identifier, *access_code;
        int type;
};

/* PUT /auth-requests/{id}: "key" may be absent or null (a deny). */
struct kh_req_auth_update {
        json_t *root;
        const char *key;                   /* NULL when absent or null */
        const char *device_identifier;
        bool approved;
};

/* One admin answer: POST /organizations/{orgId}/auth-requests/{id} ("requestApproved",
 * "encryptedUserKey"), an item of the bulk route ("id", "approved", "key"), or an id of
 * .../deny. */
struct kh_req_auth_answer {
        const char *id;                    /* NULL for the single route (the path names it) */
        const char *key;                   /* NULL: none (server-side approval) */
        bool approved;
};

struct kh_req_auth_answers {
        json_t *root;
        struct kh_req_auth_answer items[KH_REQ_AUTH_ITEMS_MAX];
        size_t n;
};

void kh_req_auth_clear(json_t **root);

KH_MUST_CHECK int kh_req_auth_create_parse(const char *body, size_t len,
                                           struct kh_req_auth_create *ret);
KH_MUST_CHECK int kh_req_auth_update_parse(const char *body, size_t len,
                                           struct kh_req_auth_update *ret);
/* {"requestApproved": bool, "encryptedUserKey": string|null (optional)}: one item. */
KH_MUST_CHECK int kh_req_auth_answer_parse(const char *body, size_t len,
                                           struct kh_req_auth_answers *ret);
/* {"ids": [string, ...]} (1..KH_REQ_AUTH_ITEMS_MAX): items denied. */
KH_MUST_CHECK int kh_req_auth_deny_parse(const char *body, size_t len,
                                         struct kh_req_auth_answers *ret);
/* [{"id": string, "approved": bool, "key": string|null (optional)}, ...] (1..max). */
KH_MUST_CHECK int kh_req_auth_bulk_parse(const char *body, size_t len,
                                         struct kh_req_auth_answers *ret);

/**
 * kh_req_access_code_parse() - the query of GET /auth-requests/{id}/response: exactly one
 * parameter "code", its value percent-decoded (%XX, either case; '+' is a '+') into
 * out (max + 1 bytes): out[0..*ret_len) and a NUL; 1..max bytes, no NUL inside. Returns 0 or
 * -KH_E_INVALID_PARAMETER. @q may be NULL (no query).
 */
KH_MUST_CHECK int kh_req_access_code_parse(const char *q, size_t len, char *out, size_t max,
                                           size_t *ret_len);
