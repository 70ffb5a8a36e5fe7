/* POST /admin/import/user-keys (docs/import.md): a batch of member keys from `keyhold
 * import`. Storing joins the worker's group commit, so the batch is answered once durable,
 * with its audit record in the same commit; verifying only reads, and is answered at once. */
#include <errno.h>

#include <jansson.h>

#include "common/errors.h"
#include "http/bitwarden-models.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/import.h"

struct import_op {
        struct kh_service_op op;         /* first */
        struct kh_http_req req;          /* a copy; its target lives in the pool */
        struct kh_request_target target;
        struct kh_req_import imp;        /* owned */
        uint64_t start_ns;
        struct kh_audit_event event;
};

/* {"results": [{"user", "status"[, "code"]}], and a count per status that occurred} */
static json_t *answer(const struct kh_req_import *imp) {
        json_auto_t *root = json_object(), *results = json_array();
        size_t counts[KH_IMPORT_FAILED + 1] = { 0 };

        if (!root || !results)
                return NULL;
        for (size_t i = 0; i < imp->n; i++) {
                const struct kh_import_entry *e = &imp->entries[i];
                json_t *o = json_pack("{ss ss}", "user", e->user, "status",
                                      kh_import_status_name(e->status));

                if (o && e->status == KH_IMPORT_FAILED &&
                    json_object_set_new(o, "code", json_string(kh_err_info(e->error)->code)) < 0)
                        o = (json_decref(o), NULL);
                if (!o || json_array_append_new(results, o) < 0)
                        return NULL;
                counts[e->status]++;
        }
        for (size_t s = 0; s <= KH_IMPORT_FAILED; s++)
                if (counts[s] && json_object_set_new(root, kh_import_status_name(s),
                                                      json_integer((json_int_t) counts[s])) < 0)
                        return NULL;
        if (json_object_set(root, "results", results) < 0)
                return NULL;
        return json_incref(root);
}

static int reply(struct kh_http_req *req, const struct kh_req_import *imp) {
        json_t *body = answer(imp);

        return body ? kh_http_reply_json_new(req, 200, body) : -ENOMEM;
}

static int apply(struct kh_service *svc, struct kh_service_op *op) {
        struct import_op *o = kh_container_of(op, struct import_op, op);
        int r = kh_import_apply(svc, o->req.tenant, o->imp.entries, o->imp.n, o->imp.overwrite);

        if (r < 0) {
                o->event.action = "refused";
                o->event.outcome = kh_err_info(r)->code;
        }
        o->event.time_ms = kh_audit_now_ms();
        kh_service_audit_write(svc, &o->event);
        return r;
}

static void done(struct kh_service_op *op, int result) {
        struct import_op *o = kh_container_of(op, struct import_op, op);
        struct kh_http_req *req = &o->req;

        if (result >= 0)
                result = reply(req, &o->imp);
        if (result < 0 && req->status == 0)
                kh_http_reply_error(req, result);
        kh_req_import_free(&o->imp);
        kh_http_metrics_observe(&req->worker->metrics, KH_ROUTE_ADMIN_IMPORT_USER_KEYS,
                                req->status, kh_http_now_ns() - o->start_ns);
}

int kh_route_admin_import(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_req_import imp;
        struct import_op *o;
        int r;

        (void) who;
        r = kh_http_json_body(req, KH_REQ_IMPORT_BODY_MAX);
        if (r >= 0)
                r = kh_req_import_parse(req->h2o->entity.base, req->h2o->entity.len, &imp);
        if (r < 0)
                return r;
        if (imp.verify) {
                req->action = "member.import-verify";
                r = kh_import_verify(req->worker->svc, req->tenant, imp.entries, imp.n);
                if (r >= 0)
                        r = reply(req, &imp);
                kh_req_import_free(&imp);
                return r;
        }

        /* in the request's pool: it lives until done replies */
        o = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*o));
        *o = (struct import_op) {
                .op = { .apply = apply, .done = done }, .req = *req, .target = *req->target,
                .imp = imp, .start_ns = kh_http_now_ns(),
        };
        o->req.target = &o->target;
        kh_http_audit_event(req, 0, &o->event);
        kh_service_submit(req->worker->svc, &o->op);
        return KH_HTTP_DEFERRED;
}
