/* A worker's service: its own database connection, verified-token cache and counters.
 * Loop-local: only the worker that created it calls it, so the request path takes no
 * locks. Counters are _Atomic so that /metrics, on any worker, can sum them (stats.h). */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/loop.h"
#include "service/app.h"
#include "service/audit.h"
#include "token/issuer.h"
#include "token/principal.h"

struct kh_service;

/* Opens the worker's store connection and token cache; loop is the worker's (borrowed), on
 * which group commits run. Returns 0, -EIO or -ENOMEM. */
KH_MUST_CHECK int kh_service_new(struct kh_app *app, struct kh_loop *loop,
                                 struct kh_service **ret);
struct kh_service *kh_service_free(struct kh_service *svc); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_service_free, struct kh_service *)

struct kh_app *kh_service_app(const struct kh_service *svc);

/* kh_service_authenticate()'s answer when the token names a signing key the tenant's
 * issuer is being asked for right now: park the request with kh_service_wait_keys() and
 * authenticate it again once woken. */
#define KH_SERVICE_WAIT 1

/* Who a route lets in (http/routes.def): a member of the tenant (Bitwarden's claim policy)
 * or one of its administrators (its admins matchers; no scope or amr needed). */
enum kh_service_caller {
        KH_CALLER_MEMBER,
        KH_CALLER_ADMIN,
};

/**
 * kh_service_authenticate() - the principal a bearer token proves for tenant t, if it is a
 * caller of kind @as.
 * @token: the bearer token (NULL if none was sent), @len its length.
 * Verifies strictly (issuer of t only, algorithm allow-list, signature, expiry, claims) or
 * answers from the worker's cache of verified tokens. Returns 0, KH_SERVICE_WAIT,
 * -KH_E_MISSING_TOKEN, -KH_E_INVALID_TOKEN or -KH_E_NOT_READY; for a valid token that is no
 * caller of that kind, -KH_E_INSUFFICIENT_SCOPE or -KH_E_INVALID_SUBJECT (member) or
 * -KH_E_NOT_ADMIN (admin). @ret holds the principal whenever the token was valid, refused
 * for its kind or not, so that a refusal can name who was refused.
 */
KH_MUST_CHECK int kh_service_authenticate(struct kh_service *svc, const struct kh_tenant *t,
                                          const char *token, size_t len, int64_t now,
                                          enum kh_service_caller as, struct kh_principal *ret);

/* After KH_SERVICE_WAIT: runs w->task on the worker's loop once the issuer's key load has
 * ended (at once if it already has). Loop thread only, right after that answer. */
void kh_service_wait_keys(struct kh_service *svc, struct kh_issuer_waiter *w);

/* ---- audit ----
 * Events of the worker's requests for the audit log (audit.h). */

/* Records an event that is no write of a group commit (a read, a refusal, an admin read):
 * handed to the auditor at the end of the pass; refusals of one second that differ only in
 * their request id are one record with a count. Loop thread only. */
void kh_service_audit(struct kh_service *svc, const struct kh_audit_event *ev);

/* Records a write's event in the group commit of the write: call from the op's apply. */
void kh_service_audit_write(struct kh_service *svc, const struct kh_audit_event *ev);

/* A new request id: KH_REQUEST_ID_LEN hex digits and a NUL. */
void kh_service_request_id(struct kh_service *svc, char out[static KH_REQUEST_ID_LEN + 1]);

/* Whether key reads are audited ([audit] log_reads). */
bool kh_service_audits_reads(const struct kh_service *svc);

/* Before the worker's loop goes away: what the store does on it ends (reads still in flight
 * are answered -KH_E_STORAGE_UNAVAILABLE). Loop thread only. */
void kh_service_detach_loop(struct kh_service *svc);

/* After every pass of the worker's loop: hands over refusals whose second has passed. */
void kh_service_pass(struct kh_service *svc);

/* Counts a bearer token refused before verification (malformed at the HTTP layer), so
 * that keyhold_token_rejections_total covers every refused token. */
void kh_service_count_token_rejection(struct kh_service *svc);

/* ---- group commit ----
 * A synchronous commit costs a disk flush (0.2-0.4 ms here), which would cap writes at a few
 * thousand per second and stall the loop for each. Instead a worker's service queues the
 * writes submitted during one pass of its loop and commits them together once the pass has
 * read every ready request; each operation learns its outcome only after that commit. The
 * longer a flush takes, the more writes the next pass finds waiting, so the batch grows with
 * load. Until the commit nothing is acknowledged, so a crash loses only unacknowledged
 * writes. Any kind of write joins the same batch (member keys now; devices, approvals,
 * admin writes and audit appends later). */

#define KH_SERVICE_BATCH_MAX 128

/* One pending write. Embedded in the caller's own struct; the caller owns it, and must keep
 * it alive until done has run. */
struct kh_service_op {
        /* Applies the write inside the batch's transaction, on the worker's loop. It must
         * leave the store as it was when it fails (one statement, or its own savepoint):
         * the other writes of the batch still commit. Returns 0 or this write's error. */
        int (*apply)(struct kh_service *svc, struct kh_service_op *op);
        /* After the batch: result 0 once the write is durable, else its own error, or the
         * commit's (then no write of the batch happened). Runs on the worker's loop. */
        void (*done)(struct kh_service_op *op, int result);
        struct kh_service_op *next;  /* the service's, while queued */
        int result;                  /* the service's */
};

/* Queues op for the worker's next group commit, at the end of the current pass (a batch
 * already holding KH_SERVICE_BATCH_MAX writes is committed first). op->done never runs
 * from inside this call. Loop thread only. */
void kh_service_submit(struct kh_service *svc, struct kh_service_op *op);

