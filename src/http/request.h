/* The request front end that keyhold itself parses (h2o has already parsed the HTTP/1.1
 * framing): the request target (route.h: tenant prefix, route, path parameters) and the
 * bearer token. Total functions over untrusted bytes, free of h2o types and of the
 * handlers, so that fuzz/fuzz-http-request.c links them alone (kh_http_front). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "http/route.h"

/**
 * kh_http_framing_check() - how the raw request head (request line and header fields, up to
 * the empty line; LF or CRLF line ends) frames its body. keyhold's clients always send
 * Content-Length, so anything else is refused: a Transfer-Encoding field (any value, any
 * spelling) alone is -KH_E_LENGTH_REQUIRED; with Content-Length too, or with Content-Length
 * given twice (even with one value), it is -KH_E_AMBIGUOUS_FRAMING, since a proxy in front
 * may have framed the request otherwise (RFC 9112 6.3). Field names case-insensitive.
 * Returns 0 or one of those. A total function over untrusted bytes.
 */
KH_MUST_CHECK int kh_http_framing_check(const char *head, size_t len);

/**
 * kh_http_bearer_parse() - the token of an Authorization header value "Bearer <token>"
 * (scheme case-insensitive, RFC 7235). @authz may be NULL (no header).
 * Returns 0 and the token as a slice of @authz, -KH_E_MISSING_TOKEN (absent, other scheme,
 * empty) or -KH_E_INVALID_TOKEN (longer than KH_TOKEN_MAX, or not token68 characters).
 */
KH_MUST_CHECK int kh_http_bearer_parse(const char *authz, size_t len, const char **ret_token,
                                       size_t *ret_len);

/* One query parameter a route takes: a decimal integer of 0..max, or, when name_max is not
 * 0, a name: 1 to name_max bytes of [a-z0-9-] not starting with '-' (a replica's). */
struct kh_query_param {
        const char *name;
        uint64_t max;
        uint64_t value;                  /* set when present */
        bool present;
        size_t name_max;                 /* 0: an integer; else at most KH_QUERY_NAME_MAX */
        char text[33];                   /* a name's value, NUL-terminated, when present */
        /* not 0: a token of 1 to token_max bytes of [a-z0-9._-] (a cursor), which the
         * caller checks further; token points into the query string */
        size_t token_max;
        const char *token;
        size_t token_len;
};
#define KH_QUERY_NAME_MAX 32

/**
 * kh_http_query_parse() - the query string q[0..len) (after the '?'; may be empty) as
 * name=value pairs separated by '&', each name one of params[0..n) and given at most once,
 * each value 1 to 20 decimal digits within the parameter's max (or a name or a token, see
 * above). No
 * percent-decoding: no
 * name or value that keyhold takes needs it. Returns 0 or -KH_E_INVALID_PARAMETER. A total
 * function over untrusted bytes.
 */
KH_MUST_CHECK int kh_http_query_parse(const char *q, size_t len, struct kh_query_param *params,
                                      size_t n);
