/* PUT/POST /user-keys as operations of the worker's group commit (service.h): the reply is
 * sent once the batch the write joined has committed, so an acknowledged write is durable. */
#include "common/errors.h"
#include "http/http-internal.h"
#include "service/user-keys.h"

struct user_key_write {
        struct kh_service_op op;         /* first */
        h2o_req_t *h2o;
        struct kh_http_worker *worker;
        const struct kh_tenant *tenant;
        struct kh_principal who;
        struct kh_secret *key;           /* owned */
        bool replace;                    /* PUT: create or replace; POST: create only */
        uint64_t start_ns;
        struct kh_audit_event event;     /* its record, but for outcome and key version */
};

/* The write and its audit record, in the same group commit. */
static int apply(struct kh_service *svc, struct kh_service_op *op) {
        struct user_key_write *w = kh_container_of(op, struct user_key_write, op);
        int r = w->replace ? kh_user_keys_put(svc, w->tenant, &w->who, w->key, &w->event.key_version)
                           : kh_user_keys_post(svc, w->tenant, &w->who, w->key, &w->event.key_version);

        if (r < 0) {
                w->event.action = "refused";
                w->event.outcome = kh_err_info(r)->code;
        }
        w->event.time_ms = kh_audit_now_ms();
        kh_service_audit_write(svc, &w->event);
        return r;
}

static void done(struct kh_service_op *op, int result) {
        struct user_key_write *w = kh_container_of(op, struct user_key_write, op);
        struct kh_http_req req = { .h2o = w->h2o, .worker = w->worker };

        w->key = kh_secret_free(w->key);
        if (result < 0)
                kh_http_reply_error(&req, result);
        else
                kh_http_reply(&req, 200, NULL, NULL, 0, false);
        kh_http_metrics_observe(&w->worker->metrics, KH_ROUTE_USER_KEYS, req.status,
                                kh_http_now_ns() - w->start_ns);
}

int kh_http_write_enqueue(struct kh_http_req *req, const struct kh_principal *who,
                          struct kh_secret *key, bool replace) {
        /* In the request's pool: it lives until the reply, which done sends. */
        struct user_key_write *w = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*w));

        *w = (struct user_key_write) {
                .op = { .apply = apply, .done = done }, .h2o = req->h2o, .worker = req->worker,
                .tenant = req->tenant, .who = *who, .key = key, .replace = replace, .start_ns = kh_http_now_ns(),
        };
        kh_http_audit_event(req, 0, &w->event);
        kh_service_submit(req->worker->svc, &w->op);
        return KH_HTTP_DEFERRED;
}
