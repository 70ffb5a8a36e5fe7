/* Issuing tokens: for dev mode's built-in issuer and for tests only. Production tokens
 * always come from the tenant's OIDC provider. */
#pragma once

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "token/jwt.h"

/**
 * kh_jwt_sign() - a compact JWS with header {"alg","kid","typ":"at+jwt"} over claims_json.
 * @key:         private key fitting alg (kh_jwt_key_fits_alg()).
 * @kid:         key id for the header, or NULL for none.
 * @claims_json: the payload, used byte for byte (not parsed: tests sign odd payloads).
 * @out:         the token is appended (mark it sensitive); untouched on failure.
 *
 * Returns 0, -EINVAL (alg none or key does not fit), -E2BIG (out's maximum), -ENOMEM or
 * -EIO.
 */
KH_MUST_CHECK int kh_jwt_sign(EVP_PKEY *key, enum kh_jwt_alg alg, const char *kid,
                              const char *claims_json, struct kh_buf *out);

/**
 * kh_jwk_public_json() - a JWKS document {"keys":[{...}]} holding key's public half.
 * @key: RSA, EC P-256 or Ed25519 key (private or public) fitting alg.
 * @kid: its "kid", or NULL for none.
 * @ret_json: on success a NUL-terminated string; the caller frees it with free().
 *
 * The JWK carries "use":"sig" and "alg". Returns 0, -EINVAL or -ENOMEM.
 */
KH_MUST_CHECK int kh_jwk_public_json(EVP_PKEY *key, const char *kid, enum kh_jwt_alg alg,
                                     char **ret_json);
