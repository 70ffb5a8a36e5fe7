/* The group commit of a worker's writes (service.h explains why). */
#include <errno.h>
#include <stdbool.h>

#include "common/errors.h"
#include "common/fifo.h"
#include "service/app.h"
#include "service/service-internal.h"
#include "store/store.h"

void kh_service_submit(struct kh_service *svc, struct kh_service_op *op) {
        /* A full batch is committed before this op joins the next one, so that an op is
         * never completed from inside the call that submits it. */
        if (svc->batch_len == KH_SERVICE_BATCH_MAX)
                kh_service_batch_flush(svc);
        op->result = 0;
        KH_FIFO_PUSH(svc->batch_head, svc->batch_tail, op);
        svc->batch_len++;
        kh_loop_defer(svc->loop, &svc->flush);
}

/* A full disk is the operator's problem, not the client's and not a bug: its own status
 * (507), and /health not ready until a write succeeds again. */
static void note_storage(struct kh_service *svc, struct kh_service_op *ops) {
        bool full = false, wrote = false;

        for (struct kh_service_op *op = ops; op; op = op->next) {
                if (op->result == -ENOSPC) {
                        op->result = -KH_E_INSUFFICIENT_STORAGE;
                        full = true;
                } else if (op->result >= 0) {
                        wrote = true;
                }
        }
        if (full || wrote)
                kh_app_note_storage_full(svc->app, full);
}

void kh_service_batch_flush(struct kh_service *svc) {
        struct kh_service_op *ops = svc->batch_head, *op, *next;
        int r;

        svc->batch_head = svc->batch_tail = NULL;
        svc->batch_len = 0;
        if (!ops)
                return;

        r = kh_store_tx_begin(svc->store);
        for (op = ops; op; op = op->next)
                op->result = r < 0 ? r : op->apply(svc, op);
        if (r >= 0) {
                /* the writes' audit records (and whatever else waits) in the same commit:
                 * no write is acknowledged without its record */
                kh_service_audit_handoff(svc);
                r = kh_auditor_tx_append(kh_app_auditor(svc->app), svc->store, svc->audit.tx,
                                         svc->audit.n_tx);
                if (r >= 0)
                        r = kh_store_tx_commit(svc->store);
                kh_auditor_tx_end(kh_app_auditor(svc->app), r >= 0);
                if (r < 0) {
                        kh_store_tx_rollback(svc->store);
                        for (op = ops; op; op = op->next)
                                if (op->result >= 0)
                                        op->result = r;   /* none of them happened */
                }
        }
        svc->audit.n_tx = 0;
        note_storage(svc, ops);
        /* done may free the op (and reuse its memory): read next first */
        for (op = ops; op; op = next) {
                next = op->next;
                op->done(op, op->result);
        }
}
