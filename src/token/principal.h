/* The authenticated caller of a request: what a verified bearer token says, reduced to the
 * few fields keyhold acts on. A plain value (no pointers), so it can be copied into and out
 * of the per-worker token cache. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "common/limits.h"
#include "common/parse.h"
#include "crypto/hash.h"

struct kh_principal {
        char tenant[KH_TENANT_ID_MAX + 1];
        char sub[KH_GUID_BUF];             /* canonical lower-case GUID */
        int64_t exp;                       /* unix seconds */
        uint8_t token_hash[KH_SHA256_LEN]; /* SHA-256 of the bearer token; logs show a prefix */
        bool admin;                        /* the token carries the tenant's admin role */
        uint64_t key_generation;           /* of the issuer's key set that verified it */
};
