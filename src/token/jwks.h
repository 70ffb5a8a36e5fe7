/* JSON Web Key Sets (RFC 7517) as an OIDC provider publishes them at its jwks_uri: the
 * public keys its tokens are signed with. Only signature keys of the types kh_jwt accepts
 * are kept; everything else in the set is skipped, so a provider that also publishes an
 * encryption key or a newer key type still works. A struct kh_jwks is immutable after
 * parsing; any number of threads may read one at once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

#include "common/cleanup.h"
#include "token/jwt.h"

struct kh_jwks;

/**
 * kh_jwks_parse() - parse a JWKS document.
 * @json: the document (need not be NUL-terminated), at most KH_JWKS_MAX bytes.
 * @ret:  on success a new set; free with kh_jwks_free().
 *
 * Keeps, in document order and at most KH_JWKS_KEYS_MAX of them, the keys that are RSA
 * ("n", "e"; 2048 to 16384 bits), EC P-256 ("crv", "x", "y"; a point on the curve) or OKP
 * Ed25519 ("crv", "x"), whose "use" is absent or "sig", and whose "alg", if present, is one
 * of RS256, PS256, ES256, EdDSA. Keys that do not qualify or are malformed are skipped; a
 * set may thus come out empty. Duplicate JSON keys are refused.
 *
 * Returns 0, -EINVAL (too large, not JSON, not an object with a "keys" array) or -ENOMEM.
 */
KH_MUST_CHECK int kh_jwks_parse(const char *json, size_t len, struct kh_jwks **ret);

/* NULL-safe; returns NULL. */
struct kh_jwks *kh_jwks_free(struct kh_jwks *j);
KH_DEFINE_CLEANUP(kh_jwks_free, struct kh_jwks *)

/* Number of keys kept. */
size_t kh_jwks_count(const struct kh_jwks *j);

/* Whether every key of older (kid, alg and public key alike) is also in newer: false when
 * the issuer removed or replaced a key, so that what it verified must be verified again.
 * NULL counts as the empty set. */
bool kh_jwks_covers(const struct kh_jwks *newer, const struct kh_jwks *older);

/**
 * kh_jwks_find() - the key to verify a token with.
 * @kid: the token's key id, or NULL if it has none.
 * @alg: the token's algorithm.
 *
 * With a kid: the first key with that "kid" that fits alg (key type and size, and the key's
 * own "alg" if it has one). Without: the only key that fits alg, or NULL if several do.
 * Returns a pointer borrowed from j (valid while j lives), or NULL.
 */
EVP_PKEY *kh_jwks_find(const struct kh_jwks *j, const char *kid, enum kh_jwt_alg alg);
