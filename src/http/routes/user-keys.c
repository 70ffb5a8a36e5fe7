/* GET/POST/PUT /user-keys: each handler decodes, calls one service function, encodes. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/limits.h"
#include "crypto/encoding.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/user-keys.h"

/* A GET waiting for its row (kh_user_keys_get_async), in the request's pool: h2o reads
 * nothing more from an HTTP/1 connection until its request is answered, so the request,
 * and this, stay alive while the database answers, even when the client has gone. */
struct user_key_read {
        struct kh_user_keys_read read;
        struct kh_http_req req;
        struct kh_request_target target;  /* req's was the router's, on its stack */
        uint64_t start_ns;
};

static void on_key(struct kh_user_keys_read *ur, int r, const struct kh_secret *key,
                   uint32_t version) {
        struct user_key_read *g = kh_container_of(ur, struct user_key_read, read);
        /* {"key":"<44 chars>"}: on the stack, wiped on every path by the cleanup */
        KH_CLEANUP(kh_buf_freep) struct kh_buf body = { 0 };

        g->req.key_version = version;
        kh_buf_init(&body, 128, true);
        if (r >= 0)
                r = kh_buf_append_str(&body, "{\"key\":\"");
        if (r >= 0)
                r = kh_base64_encode_secret(key, &body);
        if (r >= 0)
                r = kh_buf_append_str(&body, "\"}");
        if (r >= 0)
                kh_http_reply(&g->req, 200, "application/json; charset=utf-8", body.data,
                              body.len, true);
        kh_http_finish(&g->req, r, g->start_ns);
}

int kh_route_user_keys_get(struct kh_http_req *req, const struct kh_principal *who) {
        struct user_key_read *g = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*g));

        *g = (struct user_key_read) {
                .read = { .done = on_key }, .req = *req, .target = *req->target,
                .start_ns = kh_http_now_ns(),
        };
        g->req.target = &g->target;
        kh_user_keys_get_async(req->worker->svc, req->tenant, who, &g->read);
        return KH_HTTP_DEFERRED;
}

/* Decodes the body of POST/PUT after the token was verified; the body is wiped once read. */
static int decode_key(struct kh_http_req *req, struct kh_secret **ret_key) {
        const h2o_iovec_t *ct = kh_http_header(req, H2O_TOKEN_CONTENT_TYPE);
        h2o_iovec_t *entity = &req->h2o->entity;
        int r;

        if (entity->len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        if (!ct || !kh_req_content_type_is_json(ct->base, ct->len))
                return -KH_E_UNSUPPORTED_MEDIA;
        r = kh_req_user_key_parse(entity->base, entity->len, ret_key);
        if (entity->base)
                OPENSSL_cleanse(entity->base, entity->len);
        return r;
}

static int user_keys_write(struct kh_http_req *req, const struct kh_principal *who, bool replace) {
        struct kh_secret *key = NULL;
        int r;

        req->action = replace ? "replace" : "create";
        r = decode_key(req, &key);
        if (r < 0)
                return r;
        /* Acknowledged only once durable: the reply (200, empty body, as Bitwarden clients
         * require) is sent after the group commit this write joins. */
        return kh_http_write_enqueue(req, who, key, replace);
}

int kh_route_user_keys_post(struct kh_http_req *req, const struct kh_principal *who) {
        return user_keys_write(req, who, false);
}

int kh_route_user_keys_put(struct kh_http_req *req, const struct kh_principal *who) {
        return user_keys_write(req, who, true);
}
