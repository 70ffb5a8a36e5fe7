/* Login requests, member side (docs/trusted-devices.md "Login requests and admin approval"):
 * POST /auth-requests (anonymous or member), POST /auth-requests/admin-request,
 * GET /auth-requests, GET /auth-requests/pending, GET|PUT /auth-requests/{id} and the
 * anonymous GET /auth-requests/{id}/response?code=. Handlers decode, call
 * service/auth-requests.h and encode Bitwarden's AuthRequestResponseModel. */
#include <errno.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/limits.h"
#include "common/parse.h"
#include "http/bitwarden-models.h"
#include "http/decode-auth.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/auth-requests.h"
#include "service/devices.h"
#include "service/member-data.h"

/* The path parameter i as a NUL-terminated string in out (it holds KH_ROUTE_PARAM_MAX). */
static void param(const struct kh_http_req *req, size_t i, char out[static KH_ROUTE_PARAM_MAX + 1]) {
        const struct kh_slice *p = &req->target->params[i];

        memcpy(out, p->p, p->len);
        out[p->len] = '\0';
}

/* The Device-Type header: a DeviceType number. */
static int device_type_of(const struct kh_http_req *req, int *ret) {
        ssize_t i = h2o_find_header_by_str(&req->h2o->headers, H2O_STRLIT("device-type"), -1);
        const h2o_iovec_t *v;
        uint64_t n;

        if (i < 0)
                return -KH_E_DEVICE_HEADERS;
        v = &req->h2o->headers.entries[i].value;
        if (kh_parse_u64(v->base, v->len, KH_AUTH_REQUEST_DEVICE_TYPE_MAX, &n) < 0)
                return -KH_E_DEVICE_HEADERS;
        *ret = (int) n;
        return 0;
}

static int create(struct kh_http_req *req, const struct kh_principal *who, bool admin) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        struct kh_req_auth_create c = { 0 };
        struct kh_auth_request_new in;
        char ip[64];
        int device_type = 0, r;

        r = kh_http_json_body(req, KH_AUTH_REQUEST_BODY_MAX);
        if (r < 0)
                return r;
        r = kh_req_auth_create_parse(req->h2o->entity.base, req->h2o->entity.len, &c);
        if (r < 0)
                return r;
        r = device_type_of(req, &device_type);
        if (r < 0)
                goto out;
        kh_http_client_address(req, ip, sizeof(ip));
        in = (struct kh_auth_request_new) {
                .type = c.type, .email = c.email, .public_key = c.public_key,
                .device_identifier = c.device_identifier, .access_code = c.access_code,
                .device_type = device_type, .ip = ip,
        };
        r = kh_auth_requests_create(req->worker->svc, req->tenant, who->sub[0] ? who->sub : NULL,
                                    admin, &in, &doc);
        if (r < 0)
                goto out;
        r = kh_http_reply_auth_request(req, 200, doc);
out:
        kh_req_auth_clear(&c.root);
        return r;
}

int kh_route_auth_requests_create(struct kh_http_req *req, const struct kh_principal *who) {
        return create(req, who, false);
}

int kh_route_auth_requests_admin_request(struct kh_http_req *req, const struct kh_principal *who) {
        return create(req, who, true);
}

static int list(struct kh_http_req *req, const struct kh_principal *who, bool pending) {
        KH_CLEANUP(json_decrefp) json_t *docs = NULL;
        int r;

        r = kh_auth_requests_list(req->worker->svc, req->tenant, who->sub, pending, &docs);
        if (r < 0)
                return r;
        return kh_http_reply_auth_request_list(req, docs, pending);
}

int kh_route_auth_requests_list(struct kh_http_req *req, const struct kh_principal *who) {
        /* the row is OPTIONAL for POST's sake; a list is the member's own */
        req->action = "auth-request.list";
        if (!who->sub[0])
                return -KH_E_MISSING_TOKEN;
        return list(req, who, false);
}

int kh_route_auth_requests_pending(struct kh_http_req *req, const struct kh_principal *who) {
        return list(req, who, true);
}

int kh_route_auth_request_get(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        char id[KH_ROUTE_PARAM_MAX + 1];
        int r;

        param(req, 0, id);
        r = kh_auth_requests_get(req->worker->svc, req->tenant, who->sub, id, &doc);
        if (r < 0)
                return r;
        return kh_http_reply_auth_request(req, 200, doc);
}

int kh_route_auth_request_put(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        struct kh_req_auth_update u = { 0 };
        char id[KH_ROUTE_PARAM_MAX + 1];
        int r;

        req->action = "auth-request.answer";
        r = kh_http_json_body(req, KH_AUTH_REQUEST_BODY_MAX);
        if (r < 0)
                return r;
        r = kh_req_auth_update_parse(req->h2o->entity.base, req->h2o->entity.len, &u);
        if (r < 0)
                return r;
        req->action = u.approved ? "auth-request.approve" : "auth-request.deny";
        param(req, 0, id);
        r = kh_auth_requests_answer(req->worker->svc, req->tenant, who->sub, id, u.approved,
                                    u.key, u.device_identifier, &doc);
        if (r >= 0)
                r = kh_http_reply_auth_request(req, 200, doc);
        kh_req_auth_clear(&u.root);
        return r;
}

int kh_route_auth_request_response(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        const h2o_req_t *h = req->h2o;
        char id[KH_ROUTE_PARAM_MAX + 1], code[KH_AUTH_REQUEST_ACCESS_CODE_MAX + 1];
        size_t code_len = 0;
        int r;

        (void) who;
        r = kh_http_no_body(req);
        if (r < 0)
                return r;
        r = kh_req_access_code_parse(h->query_at != SIZE_MAX ? h->path.base + h->query_at + 1 : NULL,
                                     h->query_at != SIZE_MAX ? h->path.len - h->query_at - 1 : 0,
                                     code, KH_AUTH_REQUEST_ACCESS_CODE_MAX, &code_len);
        /* a code longer than any access code matches none */
        if (r < 0 && h->query_at != SIZE_MAX)
                r = -KH_E_AUTH_REQUEST_NOT_FOUND;
        if (r < 0)
                return r;
        param(req, 0, id);
        r = kh_auth_requests_response(req->worker->svc, req->tenant, id, code, code_len, &doc);
        OPENSSL_cleanse(code, sizeof(code));
        if (r < 0)
                return r;
        return kh_http_reply_auth_request(req, 200, doc);
}
