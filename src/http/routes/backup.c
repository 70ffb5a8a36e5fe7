/* POST /server/backup (operator): the whole server's backup as the answer's body. A job on
 * the app's pool builds it into an unlinked temporary file (service/backup.h); once built,
 * this loop sends that file in chunks and closes it, which frees its space. The request is
 * answered, audited and counted here, as writes.c does for a deferred write. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/errors.h"
#include "http/http-internal.h"
#include "http/request.h"
#include "service/backup.h"

#define SEND_BLOCK (64u * 1024)

struct backup_req {
        struct kh_backup_job job;          /* first */
        h2o_generator_t gen;
        struct kh_http_req req;            /* a copy: the router's lives on its stack */
        struct kh_request_target target;
        uint64_t start_ns;
        uint64_t left;                     /* bytes still to send */
        char *block;                       /* in the request's pool */
        char count[2][24];                 /* header values */
};

static void audit_and_count(struct backup_req *b, int r) {
        struct kh_audit_event ev;

        kh_http_audit_event(&b->req, r, &ev);
        kh_service_audit(b->req.worker->svc, &ev);
        kh_http_metrics_observe(&b->req.worker->metrics, KH_ROUTE_SERVER_BACKUP, b->req.status,
                                kh_http_now_ns() - b->start_ns);
}

static void close_file(struct backup_req *b) {
        if (b->job.fd >= 0) {
                (void) close(b->job.fd);
                b->job.fd = -1;
        }
}

/* h2o asks for the next block once the previous one is written out. */
static void proceed(h2o_generator_t *gen, h2o_req_t *h) {
        struct backup_req *b = kh_container_of(gen, struct backup_req, gen);
        size_t want = b->left < SEND_BLOCK ? (size_t) b->left : SEND_BLOCK;
        h2o_iovec_t buf;
        ssize_t n;

        do
                n = read(b->job.fd, b->block, want);
        while (n < 0 && errno == EINTR);
        if (n <= 0) {
                /* the status is sent already: a short body is how the client learns it */
                close_file(b);
                h2o_send(h, NULL, 0, H2O_SEND_STATE_ERROR);
                return;
        }
        b->left -= (uint64_t) n;
        buf = h2o_iovec_init(b->block, (size_t) n);
        if (b->left == 0)
                close_file(b);
        h2o_send(h, &buf, 1, b->left == 0 ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

/* The client went away: the file is closed, its space freed. */
static void stop(h2o_generator_t *gen, h2o_req_t *h) {
        (void) h;
        close_file(kh_container_of(gen, struct backup_req, gen));
}

static void on_built(struct kh_backup_job *job, int result) {
        struct backup_req *b = kh_container_of(job, struct backup_req, job);
        h2o_req_t *h = b->req.h2o;

        if (result < 0) {
                /* job->error holds the cause; kh_http_reply_error() logs the 5xx itself */
                kh_http_reply_error(&b->req, result);
                audit_and_count(b, result);
                return;
        }
        b->left = job->size;
        b->block = h2o_mem_alloc_pool(&h->pool, SEND_BLOCK);
        (void) snprintf(b->count[0], sizeof(b->count[0]), "%zu", job->tenants);
        (void) snprintf(b->count[1], sizeof(b->count[1]), "%" PRIu64, job->records);
        kh_http_add_header_str(&b->req, "x-keyhold-backup-tenants", b->count[0],
                               strlen(b->count[0]));
        kh_http_add_header_str(&b->req, "x-keyhold-backup-records", b->count[1],
                               strlen(b->count[1]));
        kh_http_add_header(&b->req, H2O_TOKEN_CONTENT_TYPE, H2O_STRLIT("application/octet-stream"));
        h->res.status = 200;
        h->res.reason = "OK";
        h->res.content_length = (size_t) job->size;
        b->req.status = 200;
        b->gen = (h2o_generator_t) { .proceed = proceed, .stop = stop };
        audit_and_count(b, 0);
        h2o_start_response(h, &b->gen);
        proceed(&b->gen, h);
}

int kh_route_server_backup(struct kh_http_req *req, const struct kh_principal *who) {
        struct backup_req *b;
        int r;

        (void) who;
        r = kh_http_query_parse(req->h2o->query_at == SIZE_MAX ? "" : req->h2o->path.base + req->h2o->query_at + 1,
                                req->h2o->query_at == SIZE_MAX ? 0 : req->h2o->path.len - req->h2o->query_at - 1,
                                NULL, 0);
        if (r < 0)
                return r;
        /* a sealed server has no key store secret to seal the backup with */
        if (kh_app_sealed(kh_service_app(req->worker->svc)))
                return -KH_E_SEALED;
        /* in the request's pool: h2o keeps the request until it is answered */
        b = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*b));
        memset(b, 0, sizeof(*b));
        b->req = *req;
        b->target = *req->target;
        b->req.target = &b->target;
        b->start_ns = kh_http_now_ns();
        b->job.done = on_built;
        r = kh_service_backup_start(req->worker->svc, &b->job);
        if (r < 0)
                return r;
        return KH_HTTP_DEFERRED;
}
