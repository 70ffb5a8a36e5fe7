/* Replies, and the one place where an error becomes an HTTP status. */
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/log.h"
#include "http/http-internal.h"

static h2o_generator_t generator = { NULL, NULL };

struct sensitive_body {
        size_t len;
        char bytes[];
};

/* Called when the request's pool is released, after the response was written out. */
static void wipe_body(void *p) {
        struct sensitive_body *b = p;
        OPENSSL_cleanse(b->bytes, b->len);
}

void kh_http_add_header(struct kh_http_req *req, const h2o_token_t *token, const char *value,
                        size_t len) {
        h2o_add_header(&req->h2o->pool, &req->h2o->res.headers, token, NULL, value, len);
}

void kh_http_add_header_str(struct kh_http_req *req, const char *name, const char *value,
                            size_t len) {
        h2o_add_header_by_str(&req->h2o->pool, &req->h2o->res.headers, name, strlen(name), 1,
                              NULL, value, len);
}

const h2o_iovec_t *kh_http_header(const struct kh_http_req *req, const h2o_token_t *token) {
        ssize_t i = h2o_find_header(&req->h2o->headers, token, -1);

        return i < 0 ? NULL : &req->h2o->headers.entries[i].value;
}

void kh_http_reply(struct kh_http_req *req, int status, const char *content_type,
                   const void *body, size_t len, bool sensitive) {
        h2o_req_t *h = req->h2o;
        h2o_iovec_t buf = { NULL, 0 };

        h->res.status = status;
        h->res.reason = "";   /* HTTP/1.1 allows an empty reason phrase */
        h->res.content_length = len;
        if (content_type)
                kh_http_add_header(req, H2O_TOKEN_CONTENT_TYPE, content_type, strlen(content_type));
        if (len > 0) {
                if (sensitive) {
                        struct sensitive_body *b = h2o_mem_alloc_shared(&h->pool, sizeof(*b) + len,
                                                                        wipe_body);
                        b->len = len;
                        memcpy(b->bytes, body, len);
                        buf = h2o_iovec_init(b->bytes, len);
                } else {
                        buf = h2o_strdup(&h->pool, body, len);
                }
        }
        req->status = status;
        h2o_start_response(h, &generator);
        h2o_send(h, &buf, len > 0 ? 1 : 0, H2O_SEND_STATE_FINAL);
}

void kh_http_reply_error(struct kh_http_req *req, int r) {
        const struct kh_err_info *e = kh_err_info(r);
        json_auto_t *body = NULL;
        char *text;

        /* a sealed server answers 503 by design: the operator sealed it (and the log says
         * so once); so does one whose key store went away (the key store monitor logs the
         * loss and the return once each); a line per refused request would flood the log */
        if (e->status >= 500 && r != -KH_E_SEALED && r != -KH_E_KEYSTORE_UNAVAILABLE) {
                /* the path only, capped: a query string may carry anything a client sent */
                h2o_iovec_t path = req->h2o->path;
                if (req->h2o->query_at != SIZE_MAX)
                        path.len = req->h2o->query_at;
                kh_log_ctx(KH_LOG_ERROR, req->tenant ? req->tenant->id : NULL,
                           req->request_id[0] ? req->request_id : NULL, "%.*s %.*s failed: %s",
                           (int) (req->h2o->method.len > 16 ? 16 : req->h2o->method.len),
                           req->h2o->method.base, (int) (path.len > 128 ? 128 : path.len),
                           path.base, kh_strerror(r));
        }

        if (r == -KH_E_MISSING_TOKEN)
                kh_http_add_header(req, H2O_TOKEN_WWW_AUTHENTICATE, H2O_STRLIT("Bearer"));
        else if (r == -KH_E_INVALID_TOKEN)
                kh_http_add_header(req, H2O_TOKEN_WWW_AUTHENTICATE,
                                   H2O_STRLIT("Bearer error=\"invalid_token\""));
        else if (r == -KH_E_INSUFFICIENT_SCOPE)
                kh_http_add_header(req, H2O_TOKEN_WWW_AUTHENTICATE,
                                   H2O_STRLIT("Bearer error=\"insufficient_scope\""));

        body = json_pack("{s:s, s:s}", "message", e->message, "code", e->code);
        /* Bitwarden clients read the errors of the trusted-device routes in their server's
         * shape (spec/trusted-devices.md sections 1 and 8) */
        if (body && req->target && req->target->route &&
            kh_http_route_bitwarden(req->target->route->id))
                (void) json_object_set_new(body, "object", json_string("error"));
        text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        if (!text) {
                static const char fallback[] = "{\"message\":\"An internal error occurred.\",\"code\":\"internal_error\"}";
                kh_http_reply(req, 500, "application/json", fallback, sizeof(fallback) - 1, false);
                return;
        }
        kh_http_reply(req, e->status, "application/json", text, strlen(text), false);
        free(text);
}
