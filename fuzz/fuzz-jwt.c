/* JWT parsing, signature checking and the claim policy on arbitrary bytes: no clock (a fixed
 * "now"), no network. Invariants: parse never yields alg none; every function returns one
 * of its documented results; an accepted principal has a canonical GUID subject and the
 * token's hash. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/limits.h"
#include "token/jwt.h"

static EVP_PKEY *keys[3]; /* RSA-2048, P-256, Ed25519: generated once, kept for the run */

static void init_keys(void) {
        if (keys[0])
                return;
        keys[0] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) 2048);
        keys[1] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        keys[2] = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
        CHECK(keys[0] && keys[1] && keys[2]);
}

static const struct kh_claim_matcher admins[] = { { "roles", "keyhold-admin" } };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_jwt_freep) struct kh_jwt *jwt = NULL;
        const struct kh_claims_policy policy = {
                .issuer = "https://issuer.test", .now = 1700000000, .skew_s = KH_CLOCK_SKEW_S,
                .admins = admins, .n_admins = 1,
        };
        struct kh_principal p;
        int r;

        init_keys();
        r = kh_jwt_parse((const char *) data, size, &jwt);
        CHECK(r == 0 || r == -KH_E_INVALID_TOKEN || r == -ENOMEM);
        if (r < 0) {
                CHECK(!jwt);
                return 0; /* rejecting is fine; crashing is not */
        }
        CHECK(size <= KH_TOKEN_MAX);
        CHECK(kh_jwt_alg(jwt) != KH_JWT_ALG_NONE); /* parse never yields alg "none" */
        CHECK(kh_jwt_alg_name(kh_jwt_alg(jwt)) != NULL);

        for (size_t i = 0; i < 3; i++) {
                r = kh_jwt_verify_signature(jwt, keys[i]);
                CHECK(r == 0 || r == -KH_E_INVALID_TOKEN || r == -ENOMEM || r == -EIO);
                CHECK(r != 0 || kh_jwt_key_fits_alg(keys[i], kh_jwt_alg(jwt)));
        }

        r = kh_jwt_check_claims(jwt, &policy, &p);
        CHECK(r == 0 || r == -KH_E_INVALID_TOKEN);
        if (r == 0) {
                CHECK(p.member_refusal == 0 || p.member_refusal == -KH_E_INSUFFICIENT_SCOPE ||
                      p.member_refusal == -KH_E_INVALID_SUBJECT);
                CHECK(p.member_refusal != 0 || is_canonical_guid(p.sub));
                CHECK(!p.admin || p.sub[0]);
                CHECK(p.tenant[0] == 0);
                CHECK(memcmp(p.token_hash, kh_jwt_token_hash(jwt), sizeof(p.token_hash)) == 0);
                int64_t limit;
                CHECK(__builtin_add_overflow(p.exp, KH_CLOCK_SKEW_S, &limit) ||
                      limit >= policy.now);
        }
        return 0;
}
