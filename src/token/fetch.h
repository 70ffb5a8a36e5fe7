/* HTTP(S) GET of small documents (discovery, JWKS) with libcurl. Internal to token/. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>

#include "common/buf.h"
#include "common/cleanup.h"

/* Whether url is https://, or http:// to a loopback host (localhost, 127.0.0.0/8, ::1),
 * where plain HTTP cannot leave the machine. */
bool kh_fetch_url_is_acceptable(const char *url);

/**
 * kh_fetch() - GET url into out (whose maximum bounds the response).
 * @ca_file: NULL, or a PEM file used as CA bundle (the system CA directory still applies).
 * @cancel:  NULL, or a flag that aborts the transfer when it becomes true.
 *
 * Returns 0 on HTTP 200; -EINVAL (unacceptable url); -E2BIG (response too large);
 * -ECANCELED; -ENOMEM; -EHOSTUNREACH (anything else: DNS, connect, TLS, timeout, status).
 */
KH_MUST_CHECK int kh_fetch(const char *url, const char *ca_file, atomic_bool *cancel,
                           struct kh_buf *out);
