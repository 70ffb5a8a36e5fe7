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
#include "token/jwt.h"
#include "token/principal.h"

struct kh_issuer;

struct kh_issuer_config {
        const char *tenant;     /* tenant id, copied into every principal */
        const char *issuer_url; /* authority: https://..., or http:// on a loopback host */
        const char *issuer_ca;  /* NULL, or a PEM file of extra CAs: it replaces libcurl's CA
                                 * bundle file, the system CA directory (Debian:
                                 * /etc/ssl/certs) still applies */
        const char *audience;   /* NULL: "aud" not checked (as Bitwarden) */
        const char *jwks_file;  /* NULL: discovery; else the keys, and "iss" = issuer_url */
        const struct kh_claim_matcher *admins; /* see struct kh_claims_policy; copied */
        size_t n_admins;
        bool scope_array_only;  /* see struct kh_claims_policy */
        int64_t max_lifetime_s; /* see struct kh_claims_policy */
};

/**
 * kh_issuer_open() - fetch the issuer's metadata and keys, and start its refresh thread.
 *
 * With discovery, the expected issuer is the document's "issuer" (Bitwarden's differs from
 * its URL: spec section 3) and the keys come from its "jwks_uri". Fetches are HTTPS with
 * certificate checks (http only to loopback hosts), at most KH_JWKS_MAX bytes, 5 s
 * timeouts, redirects only to https. Must not be called on a worker loop (it blocks).
 *
 * Returns 0; -EINVAL (bad config: tenant id, URL scheme); -EHOSTUNREACH (no answer, TLS
 * failure, HTTP status other than 200: the caller may retry later); -EBADMSG (discovery
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
 * for a new JWKS (at most once per KH_JWKS_REFRESH_MIN_INTERVAL_S of @now) and fails now;
 * the caller never waits for the network. Thread-safe; call it on a token-cache miss.
 *
 * Returns 0, -KH_E_INVALID_TOKEN, -KH_E_INSUFFICIENT_SCOPE, -KH_E_INVALID_SUBJECT,
 * -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_issuer_verify(struct kh_issuer *iss, const char *token, size_t len,
                                   int64_t now, struct kh_principal *ret);

/* JWKS loads finished so far, successful or not, the one in kh_issuer_open() included (for
 * /metrics and tests). Bumped after a new key set is in place. Thread-safe. */
uint64_t kh_issuer_refresh_count(const struct kh_issuer *iss);

/* JWKS loads that failed (kept serving the previous keys). Thread-safe. */
uint64_t kh_issuer_refresh_failures(const struct kh_issuer *iss);
