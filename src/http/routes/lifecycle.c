/* The key lifecycle routes (docs/admin-api.md "Key lifecycle"): rekey, retire, destroy,
 * revoke, reinstate, the kill switch, seal and unseal. Each blocks on the key store and the
 * database, so the handler checks and decodes the request on the loop, runs the operation
 * on the job pool (service/lifecycle.h) and answers once it is done, back on the loop. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/jobs.h"
#include "common/parse.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/lifecycle.h"
#include "service/stats.h"

#define JSON_TYPE "application/json; charset=utf-8"

enum op_kind {
        OP_REKEY,
        OP_RETIRE,
        OP_DESTROY,
        OP_REVOKE,
        OP_REINSTATE,
        OP_REVOKE_ALL,
        OP_REINSTATE_ALL,
        OP_SEAL,
        OP_UNSEAL,
};

/* One operation in flight, in the request's pool: h2o reads nothing more from the
 * connection until the request is answered, so the request and its pool stay alive. */
struct admin_op {
        struct kh_job job;               /* the pool's */
        struct kh_http_req req;          /* a copy: the handler's frame is gone by then */
        struct kh_request_target target;
        uint64_t start_ns;
        enum op_kind kind;
        uint32_t version;
        unsigned rsa_bits;
        struct kh_secret *master_key, *passphrase; /* unseal; wiped in done */
        int result;
        struct kh_key_change changes[KH_KEY_VERSIONS_MAX];
        size_t n_changes;
        uint64_t records;                /* retire refused: records still under it */
};

static void run(struct kh_job *job) {
        struct admin_op *op = kh_container_of(job, struct admin_op, job);
        struct kh_app *app = kh_service_app(op->req.worker->svc);
        const struct kh_tenant *t = op->req.tenant;
        struct kh_unseal_secret secret;
        int r;

        op->n_changes = 1;
        switch (op->kind) {
        case OP_REKEY:
                r = kh_key_rekey(app, t, op->rsa_bits, &op->changes[0]);
                break;
        case OP_RETIRE:
                r = kh_key_retire(app, t, op->version, &op->changes[0], &op->records);
                break;
        case OP_DESTROY:
                r = kh_key_destroy(app, t, op->version, &op->changes[0]);
                break;
        case OP_REVOKE:
                r = kh_key_revoke(app, t, op->version, &op->changes[0]);
                break;
        case OP_REINSTATE:
                r = kh_key_reinstate(app, t, op->version, &op->changes[0]);
                break;
        case OP_REVOKE_ALL:
        case OP_REINSTATE_ALL:
                r = kh_key_switch_all(app, t, op->kind == OP_REVOKE_ALL, op->changes,
                                      &op->n_changes);
                break;
        case OP_SEAL:
                r = kh_app_seal(app);
                break;
        case OP_UNSEAL:
                secret = (struct kh_unseal_secret) { .master_key = op->master_key,
                                                     .passphrase = op->passphrase };
                r = kh_app_unseal(app, &secret);
                break;
        default:
                r = -EINVAL;
        }
        job->result = r;
}

static json_t *change_json(const struct kh_key_change *c) {
        return json_pack("{sI ss}", "version", (json_int_t) c->version, "state",
                         kh_key_state_name(c->state));
}

/* The answer of a successful operation. */
static json_t *answer(const struct admin_op *op) {
        struct kh_app *app = kh_service_app(op->req.worker->svc);
        json_t *list;

        switch (op->kind) {
        case OP_SEAL:
        case OP_UNSEAL:
                return json_pack("{sb}", "sealed", kh_app_sealed(app));
        case OP_REVOKE_ALL:
        case OP_REINSTATE_ALL:
                list = json_array();
                for (size_t i = 0; list && i < op->n_changes; i++)
                        if (json_array_append_new(list, change_json(&op->changes[i])) < 0) {
                                json_decref(list);
                                return NULL;
                        }
                return list ? json_pack("{so}", "versions", list) : NULL;
        default:
                return change_json(&op->changes[0]);
        }
}

static void reply_json(struct kh_http_req *req, int status, json_t *doc) {
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

        json_decref(doc);
        if (!text) {
                kh_http_reply_error(req, -ENOMEM);
                return;
        }
        kh_http_reply(req, status, JSON_TYPE, text, strlen(text), false);
        free(text);
}

/* retire's refusal names how many records hold the version back. */
static void reply_records_remain(struct kh_http_req *req, const struct admin_op *op) {
        const struct kh_err_info *e = kh_err_info(-KH_E_RECORDS_REMAIN);
        char msg[256];

        (void) snprintf(msg, sizeof(msg),
                        "%" PRIu64 " records are still sealed under version %" PRIu32
                        "; wait for the re-encryption job (keyhold key status), then retire it.",
                        op->records, op->version);
        reply_json(req, e->status, json_pack("{ss ss sI sI}", "message", msg, "code", e->code,
                                             "records", (json_int_t) op->records, "version",
                                             (json_int_t) op->version));
}

static void done(struct kh_job *job) {
        struct admin_op *op = kh_container_of(job, struct admin_op, job);
        struct kh_http_req *req = &op->req;
        int r = job->result;

        op->master_key = kh_secret_free(op->master_key);
        op->passphrase = kh_secret_free(op->passphrase);
        if (r == 0 && op->kind != OP_SEAL && op->kind != OP_UNSEAL &&
            op->kind != OP_REVOKE_ALL && op->kind != OP_REINSTATE_ALL)
                req->key_version = op->changes[0].version;
        if (r == -KH_E_RECORDS_REMAIN) {
                reply_records_remain(req, op);
        } else if (r == 0) {
                reply_json(req, 200, answer(op));
        } else if (r == -EINVAL) {
                r = -KH_E_BAD_REQUEST;
        }
        kh_http_finish(req, r, op->start_ns);
}

/* Queues the operation; the answer comes from done(). Owns the secrets of op from here. */
static int submit(struct kh_http_req *req, struct admin_op *op) {
        struct kh_app *app = kh_service_app(req->worker->svc);
        int r;

        op->req = *req;
        op->target = *req->target;
        op->req.target = &op->target;
        op->start_ns = kh_http_now_ns();
        op->job = (struct kh_job) { .run = run, .done = done };
        r = kh_jobs_submit(kh_app_jobs(app), req->worker->loop, &op->job);
        if (r < 0) {
                op->master_key = kh_secret_free(op->master_key);
                op->passphrase = kh_secret_free(op->passphrase);
                /* a full queue: the server is busy with admin work, not broken */
                return r == -EAGAIN ? -KH_E_NOT_READY : r;
        }
        return KH_HTTP_DEFERRED;
}

static struct admin_op *op_new(struct kh_http_req *req, enum op_kind kind) {
        struct admin_op *op = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*op));

        memset(op, 0, sizeof(*op));
        op->kind = kind;
        return op;
}

/* A route without a body takes none: anything sent is refused rather than ignored. */
static int no_body(const struct kh_http_req *req) {
        if (req->h2o->entity.len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        return req->h2o->entity.len > 0 ? -KH_E_INVALID_BODY : 0;
}

/* {version} of /admin/keys/{version}/...: 1 to 2^32-1 in decimal. */
static int version_of(const struct kh_http_req *req, uint32_t *ret) {
        const struct kh_slice *p = &req->target->params[0];
        uint64_t v;

        if (req->target->n_params < 1 || kh_parse_u64(p->p, p->len, UINT32_MAX, &v) < 0 || v == 0)
                return -KH_E_VERSION_NOT_FOUND;
        *ret = (uint32_t) v;
        return 0;
}

static int version_op(struct kh_http_req *req, enum op_kind kind) {
        struct admin_op *op;
        uint32_t version;
        int r;

        r = no_body(req);
        if (r < 0)
                return r;
        r = version_of(req, &version);
        if (r < 0)
                return r;
        req->key_version = version;
        op = op_new(req, kind);
        op->version = version;
        return submit(req, op);
}

int kh_route_admin_rekey(struct kh_http_req *req, const struct kh_principal *who) {
        const struct kh_config *cfg = kh_app_config(kh_service_app(req->worker->svc));
        const h2o_iovec_t *ct = kh_http_header(req, H2O_TOKEN_CONTENT_TYPE);
        const h2o_iovec_t *body = &req->h2o->entity;
        struct admin_op *op;
        unsigned bits;
        int r;

        (void) who;
        if (body->len > 0 && (!ct || !kh_req_content_type_is_json(ct->base, ct->len)))
                return -KH_E_UNSUPPORTED_MEDIA;
        r = kh_req_rekey_parse(body->base, body->len, cfg->keystore.rsa_bits, &bits);
        if (r < 0)
                return r;
        op = op_new(req, OP_REKEY);
        op->rsa_bits = bits;
        return submit(req, op);
}

int kh_route_admin_key_retire(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return version_op(req, OP_RETIRE);
}

int kh_route_admin_key_destroy(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return version_op(req, OP_DESTROY);
}

int kh_route_admin_key_revoke(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return version_op(req, OP_REVOKE);
}

int kh_route_admin_key_reinstate(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return version_op(req, OP_REINSTATE);
}

static int plain_op(struct kh_http_req *req, enum op_kind kind) {
        int r = no_body(req);

        return r < 0 ? r : submit(req, op_new(req, kind));
}

int kh_route_admin_keys_revoke_all(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return plain_op(req, OP_REVOKE_ALL);
}

int kh_route_admin_keys_reinstate_all(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return plain_op(req, OP_REINSTATE_ALL);
}

int kh_route_server_seal(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        return plain_op(req, OP_SEAL);
}

int kh_route_server_unseal(struct kh_http_req *req, const struct kh_principal *who) {
        const h2o_iovec_t *ct = kh_http_header(req, H2O_TOKEN_CONTENT_TYPE);
        const h2o_iovec_t *body = &req->h2o->entity;
        struct admin_op *op;
        int r;

        (void) who;
        if (!ct || !kh_req_content_type_is_json(ct->base, ct->len))
                return -KH_E_UNSUPPORTED_MEDIA;
        op = op_new(req, OP_UNSEAL);
        r = kh_req_unseal_parse(body->base, body->len, &op->master_key, &op->passphrase);
        if (body->base)
                OPENSSL_cleanse(body->base, body->len);
        if (r < 0)
                return r;
        return submit(req, op);
}
