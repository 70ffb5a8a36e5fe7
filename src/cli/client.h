/* The CLI's connection to keyholdd: HTTP/1.1 with libcurl, over the operator's admin socket
 * (no TLS, no token: whoever can open the socket is the operator) or over HTTPS with a bearer
 * token. One object keeps its connection open across requests (audit paging, tail -f). */
#pragma once

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/cleanup.h"

#define KH_CLIENT_ANSWER_MAX (64u * 1024 * 1024) /* one answer: an audit page of 10000 records */
#define KH_CLIENT_CONNECT_TIMEOUT_MS 10000L
#define KH_CLIENT_TIMEOUT_MS 120000L             /* one request, answer included */

enum kh_client_scope {
        KH_CLIENT_TENANT, /* the tenant's routes: /t/TENANT/... (bare for "default") */
        KH_CLIENT_SERVER, /* the server's: /server/... on the admin socket */
};

struct kh_client_config {
        const char *socket_path; /* the admin socket, used when url is NULL */
        const char *url;         /* https://host[:port][/base], or http:// to a loopback host */
        const char *token;       /* with url: the bearer token, or NULL (sent as is; never logged) */
        const char *cacert;      /* with url: a PEM file of the only CAs trusted, or NULL */
        const char *tenant;      /* a tenant id, or NULL for "default" */
        const volatile sig_atomic_t *cancel; /* a transfer stops once *cancel is set; or NULL */
};

struct kh_client;

/**
 * kh_client_new() - a client for cfg; nothing is connected yet. Every string of cfg is copied.
 * Returns 0, -EINVAL (a url that is neither https nor http to loopback, or carries a query or
 * fragment; a tenant id that is not one) or -ENOMEM.
 */
KH_MUST_CHECK int kh_client_new(const struct kh_client_config *cfg, struct kh_client **ret);

/* Closes the connection and wipes the token. NULL-safe; returns NULL. */
struct kh_client *kh_client_free(struct kh_client *c);
KH_DEFINE_CLEANUP(kh_client_free, struct kh_client *)

/* Where requests go, for messages: the socket path or the URL. Lives as long as c. */
const char *kh_client_target(const struct kh_client *c);

/* Whether c talks to the admin socket (the operator), not to a URL. */
bool kh_client_is_socket(const struct kh_client *c);

/* POST path with body (a JSON value, or NULL: an empty body), answered as kh_client_get()
 * answers. The body's text is wiped after sending (it may carry an unseal secret). */
KH_MUST_CHECK int kh_client_post(struct kh_client *c, enum kh_client_scope scope,
                                 const char *path, const json_t *body, json_t **ret_body,
                                 json_t **ret_error);

/**
 * kh_client_get() - GET path (with its query) and its JSON answer.
 * @scope:     where path lives: KH_CLIENT_TENANT prefixes the tenant's /t/TENANT.
 * @path:      absolute, e.g. "/admin/audit?since=1&limit=1000"; not escaped here.
 * @ret_body:  on success, the 200 (or 202) answer: a JSON object.
 * @ret_error: on failure, a new {"code", "message"} object for the user: the server's own error
 *             object as it sent it, or one made here with code "unreachable", "tls_error",
 *             "timeout", "interrupted" or "bad_response". NULL only when memory ran out.
 *
 * Returns 0; -EPROTO (the server refused: a 4xx/5xx with its error); -ECONNREFUSED (no
 * connection); -EKEYREJECTED (TLS not trusted); -ETIMEDOUT; -ECANCELED (cfg's cancel flag);
 * -EBADMSG (an answer that is not keyhold's: not JSON, too large, an unknown status);
 * -ENOMEM.
 */
KH_MUST_CHECK int kh_client_get(struct kh_client *c, enum kh_client_scope scope,
                                const char *path, json_t **ret_body, json_t **ret_error);

/* Receives a 200 answer's body in pieces, as it arrives; a non-zero return stops the transfer
 * (kh_client_download() then returns -ECANCELED... see there). */
typedef int (*kh_client_sink_fn)(const uint8_t *p, size_t n, void *userdata);

/* An answer header to capture: name (lower case) in, value out. */
struct kh_client_header {
        const char *name;
        char value[64];        /* "" when absent or longer */
};

#define KH_CLIENT_ERROR_ANSWER_MAX (64u * 1024) /* a refusal's body: a small JSON object */

/**
 * kh_client_download() - POST path with an empty body and stream a 200 answer of any size
 * into sink, without the request timeout (a large answer takes as long as it takes; the
 * cancel flag still stops it) and without holding it in memory.
 * @headers: n_headers answer headers to capture (values of the 200 answer).
 * Returns 0, -EIO (sink returned non-zero: its own reason is the caller's to report), or as
 * kh_client_get(): -EPROTO with the server's error, -ECONNREFUSED, -EKEYREJECTED,
 * -ECANCELED, -EBADMSG (a refusal that is no keyhold error), -ENOMEM; *ret_error then set.
 */
KH_MUST_CHECK int kh_client_download(struct kh_client *c, enum kh_client_scope scope,
                                     const char *path, kh_client_sink_fn sink, void *userdata,
                                     struct kh_client_header *headers, size_t n_headers,
                                     json_t **ret_error);
