/* A tenant's token issuer: its expected "iss", its signing keys (JWKS) and the background
 * thread that refreshes them. One per tenant, shared by all worker threads.
 *
 * Keys come from OIDC discovery (<issuer_url>/.well-known/openid-configuration, then its
 * jwks_uri) over HTTPS, or from a local JWKS file (dev mode, air-gapped setups). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/loop.h"
#include "token/jwt.h"
#include "token/principal.h"

struct kh_issuer;

struct kh_issuer_config {
        const char *tenant;     /* tenant id, copied into every principal */
        const char *issuer_url; /* authority: https://..., or http:// on a loopback host */
        const char *issuer_ca;  /* NULL: the system's CAs; else a PEM file of the only CAs
                                 * trusted for discovery and JWKS (pinned) */
        const char *audience;   /* NULL: "aud" not checked (as Bitwarden) */
        const char *jwks_file;  /* NULL: discovery; else the keys, and "iss" = issuer_url */
        const struct kh_claim_matcher *admins; /* see struct kh_claims_policy; copied */
        size_t n_admins;
        const struct kh_claim_matcher *approvers; /* likewise */
        size_t n_approvers;
        bool scope_array_only;  /* see struct kh_claims_policy */
        int64_t max_lifetime_s; /* see struct kh_claims_policy */
        int64_t refresh_interval_s; /* reload the keys this often (sooner if the JWKS
                                     * response's Cache-Control max-age says so, not more
                                     * often than KH_JWKS_REFRESH_MIN_INTERVAL_S); 0: only
                                     * when a token names an unknown kid */
};

/* kh_issuer_verify()'s answer for a token whose kid the key set does not know while a load
 * of the keys is under way: wait for it (kh_issuer_wait()) and verify again. */
#define KH_ISSUER_WAIT 1

/* A request waiting for a key load. Embedded in the caller's struct; task runs on loop
 * once the load has ended (whatever its outcome). */
struct kh_issuer_waiter {
        struct kh_loop_task task;
        struct kh_loop *loop;
        struct kh_issuer_waiter *next;   /* the issuer's */
};

/**
 * kh_issuer_open() - fetch the issuer's metadata and keys, and start its refresh thread.
 *
 * With discovery, the expected issuer is the document's "issuer" (Bitwarden's differs from
 * its URL: spec section 3) and the keys come from its "jwks_uri". Fetches are HTTPS with
 * certificate checks (http only to loopback hosts), at most KH_JWKS_MAX bytes, 5 s
 * timeouts, redirects only to https. Must not be called on a worker loop (it blocks).
 *
 * Returns 0; -EINVAL (bad config: tenant id, URL scheme); kh_fetch()'s -EHOSTUNREACH,
 * -ECONNREFUSED, -ETIMEDOUT, -EKEYREJECTED (TLS) or -EPROTO (HTTP status other than 200),
 * after which the caller may retry later; -EBADMSG (discovery
 * document or JWKS malformed, or jwks_uri unacceptable); -E2BIG (response too large);
 * -errno reading jwks_file; -ENOMEM.
 */
KH_MUST_CHECK int kh_issuer_open(const struct kh_issuer_config *cfg, struct kh_issuer **ret);

/* Stops the refresh thread (aborting a fetch in flight) and frees. NULL-safe; returns
 * NULL. No other thread may use iss any more. */
struct kh_issuer *kh_issuer_close(struct kh_issuer *iss);
KH_DEFINE_CLEANUP(kh_issuer_close, struct kh_issuer *)

/* The "iss" tokens must carry. Lives as long as iss. */
const char *kh_issuer_expected_issuer(const struct kh_issuer *iss);

/* Whether the current key set holds at least one usable key. Thread-safe. */
bool kh_issuer_has_keys(const struct kh_issuer *iss);

/**
 * kh_issuer_verify() - verify a bearer token for this tenant.
 * @now: unix seconds, for exp/nbf (skew KH_CLOCK_SKEW_S) and the refresh rate limit.
 * @ret: on success the principal, tenant and token hash included.
 *
 * Parses, picks the key by kid and alg, verifies the signature, then applies the claim
 * policy (kh_jwt_check_claims()). A kid the key set does not know asks the refresh thread
 * for a new JWKS (at most once per KH_JWKS_REFRESH_MIN_INTERVAL_S of @now) and answers
 * KH_ISSUER_WAIT while that load is under way, so that a key rotation at the issuer does
 * not log members out; the caller parks the request (kh_issuer_wait()) instead of blocking.
 * Thread-safe; call it on a token-cache miss. ret->key_generation is the key set's.
 *
 * Returns 0 (a valid token: whether it is a member's or an admin's is in @ret),
 * KH_ISSUER_WAIT, -KH_E_INVALID_TOKEN, -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_issuer_verify(struct kh_issuer *iss, const char *token, size_t len,
                                   int64_t now, struct kh_principal *ret);

/**
 * kh_issuer_wait() - runs w->task on w->loop once the key load under way has ended. @seen is
 * kh_issuer_refresh_count() as read before the kh_issuer_verify() that answered
 * KH_ISSUER_WAIT: if a load has ended since, the task is posted at once. Any thread.
 */
void kh_issuer_wait(struct kh_issuer *iss, struct kh_issuer_waiter *w, uint64_t seen);

/* Bumped whenever a key load drops or replaces a key: a principal verified under an older
 * generation must be verified again (the key that signed it may be the one removed). */
uint64_t kh_issuer_key_generation(const struct kh_issuer *iss);

/* Whether token, parsed but not verified, names this issuer in "iss": to pick which of a
 * tenant's issuers verifies it (kh_issuer_verify() then checks everything). Thread-safe. */
bool kh_issuer_names_itself(const struct kh_issuer *iss, const char *token, size_t len);

/* JWKS loads finished so far, successful or not, the one in kh_issuer_open() included (for
 * /metrics and tests). Bumped after a new key set is in place. Thread-safe. */
uint64_t kh_issuer_refresh_count(const struct kh_issuer *iss);

/* JWKS loads that failed (kept serving the previous keys). Thread-safe. */
uint64_t kh_issuer_refresh_failures(const struct kh_issuer *iss);
