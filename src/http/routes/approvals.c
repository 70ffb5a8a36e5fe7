/* Admin approval (docs/trusted-devices.md "Login requests and admin approval"; DESIGN.md
 * "Administration"): GET /organizations/{orgId}/auth-requests, POST .../{id} (one answer),
 * POST .../deny {"ids"} and POST /organizations/{orgId}/auth-requests (bulk). Only approvers
 * answer. An approval that releases the key without an encryptedUserKey is made server-side:
 * the decision and the writes stay on the loop (service/auth-requests.h), the key-store
 * decryption runs on the job pool, and the answer is sent once every item is done. */
#include <errno.h>
#include <string.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/jobs.h"
#include "common/limits.h"
#include "http/bitwarden-models.h"
#include "http/decode-auth.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/auth-requests.h"

#define ACTOR_MAX 80

/* One answer of one or more requests in flight, in the request's pool (h2o reads nothing
 * more from the connection until it is answered). */
struct approval_op {
        struct kh_job job;
        struct kh_http_req req;              /* a copy, for the answer sent from done() */
        struct kh_request_target target;
        uint64_t start_ns;
        bool single;                         /* POST .../{id}: one answer, its own status */
        char approver[ACTOR_MAX];
        struct kh_req_auth_answers in;       /* owns in.root */
        char single_id[KH_ROUTE_PARAM_MAX + 1];
        size_t i;                            /* the item being answered */
        struct kh_approval_result need;      /* NEEDS_KEY of item i, for the job */
        struct kh_buf made;                  /* the job's "4...." for item i */
        bool have_made;
        int job_r;
        json_t *results;                     /* one object per item answered */
        int single_r;                        /* the single route's error */
        struct kh_approval_result single_res;
};

int kh_route_approvals_list(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP(json_decrefp) json_t *docs = NULL;
        int r;

        (void) who;
        r = kh_http_org_check(req);
        if (r < 0)
                return r;
        if (req->h2o->entity.len > 0)
                return -KH_E_INVALID_REQUEST_BODY;
        r = kh_approvals_list(req->worker->svc, req->tenant, &docs);
        if (r < 0)
                return r;
        return kh_http_reply_approvals(req, docs);
}

static void op_free(struct approval_op *op) {
        kh_req_auth_clear(&op->in.root);
        kh_approval_result_clear(&op->need);
        kh_buf_free(&op->made);
        json_decref(op->results);
        op->results = NULL;
}

static void job_run(struct kh_job *job) {
        struct approval_op *op = kh_container_of(job, struct approval_op, job);
        struct kh_app *app = kh_service_app(op->req.worker->svc);

        kh_buf_reset(&op->made);
        job->result = kh_approval_make_key(app, op->req.tenant, &op->need, &op->made);
}

static int step(struct approval_op *op, struct kh_http_req *req);

static void job_done(struct kh_job *job) {
        struct approval_op *op = kh_container_of(job, struct approval_op, job);
        int r;

        op->job_r = job->result;
        op->have_made = job->result == 0;
        kh_approval_result_clear(&op->need);
        r = step(op, &op->req);
        if (r != KH_HTTP_DEFERRED)
                kh_http_finish(&op->req, r, op->start_ns);
}

static json_t *item_result(const char *id, int r, const struct kh_approval_result *res) {
        if (r < 0) {
                const struct kh_err_info *e = kh_err_info(r);
                return json_pack("{ss ss ss}", "id", id, "code", e->code, "message", e->message);
        }
        if (res->outcome == KH_APPROVAL_RECORDED)
                return json_pack("{ss ss sI sI}", "id", id, "status", "pending", "approvals",
                                 (json_int_t) res->approvals, "needed", (json_int_t) res->needed);
        return json_pack("{ss ss}", "id", id, "status", res->status);
}

/* The answer once every item is done: the single route's own, or the list. */
static int reply(struct approval_op *op, struct kh_http_req *req) {
        json_t *first;

        if (op->single) {
                if (op->single_r < 0)
                        return op->single_r;
                first = json_incref(json_array_get(op->results, 0));
                return kh_http_reply_json_new(req, op->single_res.outcome == KH_APPROVAL_RECORDED
                                                           ? 202 : 200, first);
        }
        return kh_http_reply_json_new(req, 200,
                                      json_pack("{ss sO sn}", "object", "list", "data",
                                                op->results, "continuationToken"));
}

/* Answers the items from op->i on; returns KH_HTTP_DEFERRED while a job makes a key, else the
 * route's result (0 once answered). Loop thread. */
static int step(struct approval_op *op, struct kh_http_req *req) {
        struct kh_app *app = kh_service_app(req->worker->svc);
        int r;

        while (op->i < op->in.n) {
                const struct kh_req_auth_answer *a = &op->in.items[op->i];
                const char *id = a->id ? a->id : op->single_id;
                const char *key = a->key ? a->key : op->have_made ? (const char *) op->made.data : NULL;
                struct kh_approval_result res;
                json_t *item;

                if (op->job_r < 0) {
                        r = op->job_r;   /* the key could not be made */
                        res = (struct kh_approval_result) { 0 };
                } else {
                        r = kh_approvals_answer(req->worker->svc, req->tenant, op->approver, id,
                                                a->approved, key, &res);
                }
                if (r == 0 && res.outcome == KH_APPROVAL_NEEDS_KEY) {
                        op->need = res;
                        op->job = (struct kh_job) { .run = job_run, .done = job_done };
                        r = kh_jobs_submit(kh_app_jobs(app), req->worker->loop, &op->job);
                        if (r == 0)
                                return KH_HTTP_DEFERRED;
                        kh_approval_result_clear(&op->need);
                        r = r == -EAGAIN ? -KH_E_BUSY : r;
                }
                item = item_result(id, r, &res);
                if (!item || json_array_append_new(op->results, item) < 0) {
                        kh_approval_result_clear(&res);
                        return -ENOMEM;
                }
                if (op->single) {
                        op->single_r = r;
                        op->single_res = res;
                }
                kh_approval_result_clear(&res);
                op->have_made = false;
                op->job_r = 0;
                op->i++;
        }
        r = reply(op, req);
        op_free(op);
        return r;
}

/* Starts answering op's items for req's caller. */
static int start(struct kh_http_req *req, const struct kh_principal *who, struct approval_op *op) {
        int r;

        if (!who->approver) {
                kh_req_auth_clear(&op->in.root);
                return -KH_E_NOT_APPROVER;
        }
        kh_http_actor(req, op->approver, sizeof(op->approver));
        op->results = json_array();
        if (!op->results) {
                kh_req_auth_clear(&op->in.root);
                return -ENOMEM;
        }
        kh_buf_init(&op->made, 2048, true);
        op->req = *req;
        op->target = *req->target;
        op->req.target = &op->target;
        op->start_ns = kh_http_now_ns();
        r = step(op, req);
        if (r != KH_HTTP_DEFERRED)
                op_free(op);     /* step() freed it already when it answered; again is harmless */
        return r;
}

static struct approval_op *op_new(struct kh_http_req *req) {
        struct approval_op *op = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*op));

        memset(op, 0, sizeof(*op));
        return op;
}

/* Decodes the body with parse after the common checks; op->in holds it. */
static int decode(struct kh_http_req *req, struct approval_op *op,
                  int (*parse)(const char *, size_t, struct kh_req_auth_answers *)) {
        int r = kh_http_org_check(req);

        if (r < 0)
                return r;
        r = kh_http_json_body(req, KH_AUTH_REQUEST_BODY_MAX);
        if (r < 0)
                return r;
        return parse(req->h2o->entity.base, req->h2o->entity.len, &op->in);
}

int kh_route_approvals_answer(struct kh_http_req *req, const struct kh_principal *who) {
        struct approval_op *op = op_new(req);
        const struct kh_slice *p = &req->target->params[1];
        int r;

        r = decode(req, op, kh_req_auth_answer_parse);
        if (r < 0)
                return r;
        req->action = op->in.items[0].approved ? "approval.approve" : "approval.deny";
        op->single = true;
        memcpy(op->single_id, p->p, p->len);
        op->single_id[p->len] = '\0';
        return start(req, who, op);
}

int kh_route_approvals_deny(struct kh_http_req *req, const struct kh_principal *who) {
        struct approval_op *op = op_new(req);
        int r;

        r = decode(req, op, kh_req_auth_deny_parse);
        if (r < 0)
                return r;
        return start(req, who, op);
}

int kh_route_approvals_bulk(struct kh_http_req *req, const struct kh_principal *who) {
        struct approval_op *op = op_new(req);
        int r;

        req->action = "approval.bulk";
        r = decode(req, op, kh_req_auth_bulk_parse);
        if (r < 0)
                return r;
        return start(req, who, op);
}
