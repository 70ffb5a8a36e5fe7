/* GET/POST/PUT /user-keys: each handler decodes, calls one service function, encodes. */
#include <string.h>

#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/limits.h"
#include "crypto/encoding.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/user-keys.h"

int kh_route_user_keys_get(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        /* {"key":"<44 chars>"}: on the stack, wiped on every path by the cleanup */
        KH_CLEANUP(kh_buf_freep) struct kh_buf body = { 0 };
        int r;

        kh_buf_init(&body, 128, true);
        r = kh_user_keys_get(req->worker->svc, req->tenant, who, &key, &req->key_version);
        if (r < 0)
                return r;

        r = kh_buf_append_str(&body, "{\"key\":\"");
        if (r >= 0)
                r = kh_base64_encode_secret(key, &body);
        if (r >= 0)
                r = kh_buf_append_str(&body, "\"}");
        if (r < 0)
                return r;
        kh_http_reply(req, 200, "application/json; charset=utf-8", body.data, body.len, true);
        return 0;
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
