/* The request front end that keyhold itself parses (h2o has already parsed the HTTP/1.1
 * framing): the request target (tenant prefix, route) and the bearer token. Total functions
 * over untrusted bytes, free of h2o types so that fuzz/fuzz-http-request.c can drive them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/cleanup.h"

struct kh_route;

struct kh_request_target {
        const char *tenant;          /* points into the path; NULL for the bare routes */
        size_t tenant_len;
        const struct kh_route *route;
};

/**
 * kh_http_target_parse() - resolves "/t/{tenant}/route" or "/route" (a query string, if
 * any, already cut off by the caller).
 * Returns 0 with ret->route set; -KH_E_URI_TOO_LONG; -KH_E_UNKNOWN_TENANT (the prefix is
 * there but the tenant id is not valid); -KH_E_NOT_FOUND (no such route: ret->tenant is
 * still set so that the tenant can be checked first).
 */
KH_MUST_CHECK int kh_http_target_parse(const char *path, size_t len, struct kh_request_target *ret);

/**
 * kh_http_bearer_parse() - the token of an Authorization header value "Bearer <token>"
 * (scheme case-insensitive, RFC 7235). @authz may be NULL (no header).
 * Returns 0 and the token as a slice of @authz, -KH_E_MISSING_TOKEN (absent, other scheme,
 * empty) or -KH_E_INVALID_TOKEN (longer than KH_TOKEN_MAX, or not token68 characters).
 */
KH_MUST_CHECK int kh_http_bearer_parse(const char *authz, size_t len, const char **ret_token,
                                       size_t *ret_len);
