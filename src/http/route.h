/* The route table as data (routes.def) and the request-target parser over it: which route
 * a path names, under which tenant, with which path parameters. Free of h2o types and of
 * the handlers, so that fuzz/fuzz-http-request.c links it alone. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/cleanup.h"

enum kh_route_id {
#define KH_ROUTE(id, ...) KH_ROUTE_##id,
#include "http/routes.def"
#undef KH_ROUTE
        KH_ROUTE_NONE,      /* no route matched (metrics label "none") */
        KH_ROUTE_COUNT_
};

enum kh_auth {
        KH_AUTH_NONE,
        KH_AUTH_MEMBER,
        KH_AUTH_OPTIONAL,   /* anyone; a member token if one is sent (then verified as MEMBER) */
        KH_AUTH_ADMIN,
        KH_AUTH_OPERATOR,
};

enum kh_route_scope {
        KH_SCOPE_TENANT,    /* bare and under /t/{tenant} */
        KH_SCOPE_SERVER,    /* bare only */
};

enum kh_method {
        KH_GET = 1u << 0,
        KH_POST = 1u << 1,
        KH_PUT = 1u << 2,
        KH_DELETE = 1u << 3,
        KH_PATCH = 1u << 4,
};

#define KH_ROUTE_PARAMS_MAX 4
#define KH_ROUTE_PARAM_MAX 128   /* bytes of one path parameter */

struct kh_route {
        const char *pattern;
        enum kh_route_id id;
        enum kh_auth auth;
        enum kh_route_scope scope;
};

struct kh_slice {
        const char *p;
        size_t len;
};

struct kh_request_target {
        const char *tenant;          /* points into the path; NULL for the bare routes */
        size_t tenant_len;
        const struct kh_route *route;
        struct kh_slice params[KH_ROUTE_PARAMS_MAX]; /* point into the path */
        size_t n_params;
};

/**
 * kh_http_target_parse() - resolves "/t/{tenant}/<pattern>" or "/<pattern>" (a query
 * string, if any, already cut off by the caller). Paths are matched exactly, byte for
 * byte: no decoding, no dot-segment removal.
 * Returns 0 with ret->route and ret->params set; -KH_E_URI_TOO_LONG; -KH_E_UNKNOWN_TENANT
 * (the prefix is there but the tenant id is not valid); -KH_E_NOT_FOUND (no such route:
 * ret->tenant is still set so that the tenant can be checked first).
 */
KH_MUST_CHECK int kh_http_target_parse(const char *path, size_t len, struct kh_request_target *ret);

/**
 * kh_route_match() - whether path[0..len) matches a routes.def pattern. On a match,
 * t->params[0..t->n_params) are the {name} segments (slices of path); otherwise t->params
 * may have been written and t->n_params is unchanged.
 */
bool kh_route_match(const char *pattern, const char *path, size_t len,
                    struct kh_request_target *t);

/* The method bit of an HTTP method (exact, case-sensitive: RFC 9110 9.1), 0 for any
 * method keyhold does not route (OPTIONS is CORS's, HEAD and the rest are not served). */
unsigned kh_http_method_parse(const char *name, size_t len);

/* The Allow header value of a method mask, "GET, POST, PUT" (GET, POST, PUT, DELETE, PATCH
 * order), written to buf with a NUL. Returns its length. */
#define KH_ALLOW_BUF 32
size_t kh_http_allow_format(unsigned mask, char buf[static KH_ALLOW_BUF]);

/* The route with this id (NULL for KH_ROUTE_NONE or out of range). */
const struct kh_route *kh_route_by_id(enum kh_route_id id);

/* The metrics label of a route: its pattern without the leading '/'; "none" otherwise. */
const char *kh_route_name(enum kh_route_id id);
