/* HTTP(S) GET of small documents (discovery, JWKS) with libcurl. Internal to token/. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"

/* Whether url is https://, or http:// to a loopback host (localhost, 127.0.0.0/8, ::1),
 * where plain HTTP cannot leave the machine. */
bool kh_fetch_url_is_acceptable(const char *url);

/**
 * kh_fetch() - GET url into out (whose maximum bounds the response).
 * @ca_file:     NULL (the system's CAs), or a PEM file of the only CAs trusted: the system
 *               CA bundle and directory are then not used at all (a pinned issuer).
 * @cancel:      NULL, or a flag that aborts the transfer when it becomes true.
 * @ret_max_age: if not NULL, the response's Cache-Control max-age in seconds, or -1 when it
 *               sends none (no-store and no-cache count as 0).
 *
 * Returns 0 on HTTP 200; -EINVAL (unacceptable url); -E2BIG (response too large);
 * -ECANCELED; -ENOMEM; -EKEYREJECTED (TLS: the certificate is not trusted or the handshake
 * failed); -ECONNREFUSED; -ETIMEDOUT; -EPROTO (an HTTP status other than 200);
 * -EHOSTUNREACH (anything else: DNS, a reset, ...).
 */
KH_MUST_CHECK int kh_fetch(const char *url, const char *ca_file, atomic_bool *cancel,
                           struct kh_buf *out, int64_t *ret_max_age);

/* The max-age of a Cache-Control field value (case-insensitive directives, RFC 9111 5.2):
 * its seconds (capped at INT32_MAX), 0 for no-store or no-cache, -1 if none of those.
 * A total function. */
int64_t kh_cache_control_max_age(const char *value, size_t len);
