/* The authenticated caller of a request: what a verified bearer token says, reduced to the
 * few fields keyhold acts on. A plain value (no pointers), so it can be copied into and out
 * of the per-worker token cache. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/limits.h"
#include "common/parse.h"
#include "crypto/hash.h"

#define KH_SUB_MAX 63                      /* bytes of a "sub" an admin token may carry */

/* A verified token may be a member's, an admin's, both or neither: which one a route needs
 * is the caller's decision (service.h), so that one verification serves every route. */
struct kh_principal {
        char tenant[KH_TENANT_ID_MAX + 1];
        char sub[KH_SUB_MAX + 1];          /* a member's: the canonical lower-case GUID; else
                                            * the token's "sub" as sent (1..KH_SUB_MAX bytes
                                            * of printable UTF-8), or "" */
        int64_t exp;                       /* unix seconds */
        uint8_t token_hash[KH_SHA256_LEN]; /* SHA-256 of the bearer token; logs show a prefix */
        int member_refusal;                /* 0: a member token (Bitwarden's policy: api scope,
                                            * amr, GUID subject); else why it is none:
                                            * -KH_E_INSUFFICIENT_SCOPE or -KH_E_INVALID_SUBJECT */
        bool admin;                        /* matches one of the tenant's admins matchers and
                                            * has a sub */
        bool approver;                     /* matches the tenant's approvers (default: its
                                            * admins) and has a sub: may answer admin-approval
                                            * requests */
        bool via_admin_issuer;             /* verified by the tenant's admin_issuer */
        uint64_t key_generation;           /* of the issuer's key set that verified it */
};
