/* JSON Web Tokens in compact JWS form (RFC 7515/7519), as OIDC providers issue them for
 * access tokens: strict parsing, signature verification against a key the caller picked
 * (from the issuer's JWKS) and the claim policy of the Key Connector API (spec section 3
 * and 5.2). Only asymmetric algorithms are accepted: a token can never choose its own key
 * (no jwk/jku/x5u/x5c headers) nor turn a public key into an HMAC secret (no HS*).
 *
 * A struct kh_jwt is immutable after parsing; several threads may read one at once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/cleanup.h"
#include "token/principal.h"

enum kh_jwt_alg { KH_JWT_ALG_NONE, KH_JWT_ALG_RS256, KH_JWT_ALG_PS256, KH_JWT_ALG_ES256,
                  KH_JWT_ALG_EDDSA };

struct kh_jwt;

/**
 * kh_jwt_parse() - split and decode a compact JWS.
 * @token: the bearer token, not NUL-terminated necessarily; copied (and wiped on free).
 * @len:   its length, at most KH_TOKEN_MAX.
 * @ret:   on success a new token; free with kh_jwt_free().
 *
 * Accepts exactly three base64url segments (no padding, no whitespace), a header that is
 * a JSON object whose "alg" is one of RS256, PS256, ES256, EdDSA (exact spelling), without
 * "jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256" or "crit", an optional string "kid", and a
 * payload that is a JSON object; duplicate JSON keys are rejected. Nothing is verified yet.
 *
 * Returns 0, -KH_E_INVALID_TOKEN for any malformed or refused token, or -ENOMEM.
 */
KH_MUST_CHECK int kh_jwt_parse(const char *token, size_t len, struct kh_jwt **ret);

/* Wipes and frees. NULL-safe; returns NULL. */
struct kh_jwt *kh_jwt_free(struct kh_jwt *jwt);
KH_DEFINE_CLEANUP(kh_jwt_free, struct kh_jwt *)

/* The header's algorithm; never KH_JWT_ALG_NONE for a parsed token. */
enum kh_jwt_alg kh_jwt_alg(const struct kh_jwt *jwt);

/* The header's "kid", or NULL if it has none. Lives as long as jwt. */
const char *kh_jwt_kid(const struct kh_jwt *jwt);

/* The payload's "iss" if it is a string, else NULL: what the token claims before anything
 * is verified, only to pick the issuer that will verify it. Lives as long as jwt. */
const char *kh_jwt_unverified_iss(const struct kh_jwt *jwt);

/* SHA-256 of the token text as given to kh_jwt_parse (the token cache key). */
const uint8_t *kh_jwt_token_hash(const struct kh_jwt *jwt);

/* "RS256", "PS256", "ES256", "EdDSA"; NULL for KH_JWT_ALG_NONE or an unknown value. */
const char *kh_jwt_alg_name(enum kh_jwt_alg alg);

/* Whether key's type suits alg: RSA (>= 2048 bits) for RS256/PS256, EC P-256 for ES256,
 * Ed25519 for EdDSA. Never fails. */
bool kh_jwt_key_fits_alg(EVP_PKEY *key, enum kh_jwt_alg alg);

/**
 * kh_jwt_verify_signature() - check the signature over header.payload with key.
 *
 * RS256 is RSASSA-PKCS1-v1_5 with SHA-256, PS256 RSASSA-PSS with SHA-256, MGF1-SHA-256 and
 * a 32-byte salt, ES256 ECDSA on P-256 with SHA-256 and the 64-byte r||s signature of JWA
 * (r and s must lie in [1, n-1]), EdDSA is Ed25519. The key must fit the token's algorithm
 * (kh_jwt_key_fits_alg()). Thread-safe for distinct or shared (read-only) arguments.
 *
 * Returns 0, -KH_E_INVALID_TOKEN (bad signature, wrong key type or size), -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_jwt_verify_signature(const struct kh_jwt *jwt, EVP_PKEY *key);

/* A claim that makes a principal an administrator (DESIGN.md "Administration"): the token's
 * claim equals value, or is an array holding it. */
struct kh_claim_matcher {
        const char *claim;
        const char *value;
};

struct kh_claims_policy {
        const char *issuer;     /* required: "iss" must equal it exactly */
        const char *audience;   /* NULL = "aud" not checked (Bitwarden does not check it) */
        int64_t now;            /* unix seconds */
        int64_t skew_s;         /* leeway for exp and nbf, >= 0 */
        const struct kh_claim_matcher *admins; /* admins[0..n_admins): any one makes the */
        size_t n_admins;                       /* principal admin; none = nobody by token */
        const struct kh_claim_matcher *approvers; /* approvers[0..n_approvers): who may answer */
        size_t n_approvers;                    /* admin-approval requests; none = the admins */
        int64_t max_lifetime_s; /* > 0: exp may lie at most this far (plus skew) after now;
                                 * 0 = no cap */
        bool scope_array_only;  /* true: only a JSON array "scope" counts (Bitwarden's exact
                                 * behaviour, spec 3.3); false: a space-delimited string such
                                 * as "api offline_access" (RFC 8693, other providers) too */
};

/**
 * kh_jwt_check_claims() - apply the claim policy to a token whose signature was verified.
 * @ret: on success the principal, without tenant (set to ""): the caller knows it.
 *
 * Every claim used must have its JSON type: "iss" string; "exp" (required), "nbf" and "iat"
 * numbers (integers, or finite reals: exp rounds down, nbf and iat up); "aud", "scope", "amr",
 * "roles" and every claim an admin matcher names a string or an array of strings; "sub" a
 * string. Any wrong type, "iss" != p->issuer, now > exp + skew, now + skew < nbf or iat, a cap
 * set and exp > now + p->max_lifetime_s + skew, or p->audience not among "aud" is
 * -KH_E_INVALID_TOKEN (401). Otherwise the token is valid (0), and the principal says what
 * it proves:
 *   - member_refusal: -KH_E_INSUFFICIENT_SCOPE (403) for "scope" without "api" or "amr"
 *     without "Application" or "external" (exact, case-sensitive); else
 *     -KH_E_INVALID_SUBJECT (403) for "sub" missing or not a GUID; else 0, a member;
 *   - admin: one of p->admins matches and the token has a sub (kh_principal);
 *   - approver: one of p->approvers (without any: of p->admins) matches and the token has
 *     a sub.
 * Returns 0 or -KH_E_INVALID_TOKEN. Never allocates.
 */
KH_MUST_CHECK int kh_jwt_check_claims(const struct kh_jwt *jwt, const struct kh_claims_policy *p,
                                      struct kh_principal *ret);
