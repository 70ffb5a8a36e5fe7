/* Base64 (RFC 4648 section 4, standard alphabet, padded) and base64url (section 5, no
 * padding, as in JWS). Decoders are strict: one accepted spelling per value (no
 * whitespace, no missing or extra padding, non-zero trailing bits rejected). The secret
 * variants run in time independent of the data (lengths are not secret). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"

/* Appends base64 of p[0..n) to out. Returns 0, -E2BIG or -ENOMEM. */
KH_MUST_CHECK int kh_base64_encode(const uint8_t *p, size_t n, struct kh_buf *out);

/* Constant-time base64 of a secret, appended to out (mark out sensitive). */
KH_MUST_CHECK int kh_base64_encode_secret(const struct kh_secret *s, struct kh_buf *out);

/* Decodes strict base64 text that must decode to exactly want_len bytes, directly into a
 * new secret, in constant time. Returns 0, -EINVAL (any other text or length) or -ENOMEM. */
KH_MUST_CHECK int kh_base64_decode_secret(const char *text, size_t len, size_t want_len,
                                          struct kh_secret **ret);

/* Decodes strict base64 (not secret data) appending to out. Returns 0, -EINVAL, -E2BIG. */
KH_MUST_CHECK int kh_base64_decode(const char *text, size_t len, struct kh_buf *out);

/* base64url without padding, as JWS segments use. Returns 0, -EINVAL, -E2BIG, -ENOMEM. */
KH_MUST_CHECK int kh_base64url_encode(const uint8_t *p, size_t n, struct kh_buf *out);
KH_MUST_CHECK int kh_base64url_decode(const char *text, size_t len, struct kh_buf *out);

/* Lower-case hex of p[0..n) into out (2n+1 bytes, NUL-terminated). */
void kh_hex_encode(const uint8_t *p, size_t n, char *out);
