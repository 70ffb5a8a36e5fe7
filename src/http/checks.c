/* Checks of a request's parts that several routes share (http-internal.h). */
#include <string.h>

#include "common/errors.h"
#include "http/decode.h"
#include "http/http-internal.h"

int kh_http_json_body(const struct kh_http_req *req, size_t max) {
        const h2o_iovec_t *ct = kh_http_header(req, H2O_TOKEN_CONTENT_TYPE);

        if (req->h2o->entity.len > max)
                return -KH_E_BODY_TOO_LARGE;
        if (!ct || !kh_req_content_type_is_json(ct->base, ct->len))
                return -KH_E_UNSUPPORTED_MEDIA;
        return 0;
}

int kh_http_no_body(const struct kh_http_req *req) {
        if (req->h2o->entity.len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        return req->h2o->entity.len > 0 ? -KH_E_INVALID_REQUEST_BODY : 0;
}

int kh_http_org_check(const struct kh_http_req *req) {
        const struct kh_slice *p = &req->target->params[0];

        if (req->target->n_params < 1 || strlen(req->tenant->id) != p->len ||
            memcmp(req->tenant->id, p->p, p->len) != 0)
                return -KH_E_NOT_FOUND;
        return 0;
}
