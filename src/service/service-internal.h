/* Fields of struct kh_service, for the service/ files only. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/loop.h"
#include "service/audit.h"
#include "service/service.h"
#include "store/store.h"
#include "token/token-cache.h"

/* Distinct events gathered (audit-queue.c: refusals, reads of the log) before the oldest is
 * written as it is. */
#define KH_SERVICE_GATHERED_MAX 16

/* Written by the owning worker only (relaxed); stats.c sums every worker's. */
struct kh_service_counters {
        _Atomic uint64_t token_cache_hits;
        _Atomic uint64_t token_cache_misses;
        _Atomic uint64_t token_rejections;
        _Atomic uint64_t integrity_failures;
        /* [tenant index * KH_KEY_VERSIONS_MAX + slot]: records sealed, records opened */
        _Atomic uint64_t *key_version_encrypts;
        _Atomic uint64_t *key_version_decrypts;
};

/* The worker's side of the audit log (audit-queue.c). */
struct kh_service_audit {
        struct kh_audit_event *pending;  /* for the auditor, at the end of the pass */
        size_t n_pending, cap_pending;
        struct kh_audit_event *tx;       /* of the writes in the open group commit */
        size_t n_tx, cap_tx;
        /* events being gathered into one record with a count (docs/audit.md) */
        struct kh_audit_event gathered[KH_SERVICE_GATHERED_MAX];
        size_t n_gathered;
        struct kh_loop_task flush;       /* hands pending events to the auditor */
        bool flush_deferred;
        /* use counters handed to the auditor, to be kept durable */
        uint64_t *sent_encrypts, *sent_decrypts; /* as the counters */
        uint32_t *dirty;                 /* counter indexes changed since the last handoff */
        uint8_t *is_dirty;
        size_t n_dirty;
        uint64_t request_seq;            /* request ids */
};

struct kh_service {
        struct kh_app *app;
        struct kh_keyring *keyring;        /* the app's, cached */
        struct kh_store *store;
        struct kh_token_cache *tokens;
        struct kh_buf blob;        /* reused for sealed records: no allocation per request */
        struct kh_service_counters counters;
        struct kh_service_audit audit;
        struct kh_loop *loop;      /* the worker's */
        /* the group commit (batch.c): operations waiting for the end of the loop's pass */
        struct kh_service_op *batch_head, *batch_tail;
        size_t batch_len;
        struct kh_loop_task flush;
        /* the issuer and its load count of the last KH_SERVICE_WAIT (kh_service_wait_keys) */
        struct kh_issuer *wait_issuer;
        uint64_t wait_seen;
};

/* batch.c: commits what is queued now (the end of a pass, or a full batch). */
void kh_service_batch_flush(struct kh_service *svc);

/* audit-queue.c */
KH_MUST_CHECK int kh_service_audit_init(struct kh_service *svc, size_t n_counters);
void kh_service_audit_fini(struct kh_service *svc);
/* A key version was used: counts it (uses are kept durable through the auditor). */
void kh_service_count_use(struct kh_service *svc, size_t tenant, size_t slot, bool encrypt);
/* Gives the auditor the pending events, the gathered ones whose window is over and the counter
 * changes (the end of a pass). */
void kh_service_audit_handoff(struct kh_service *svc);
/* The same with every refusal (the service is closing). */
void kh_service_audit_drain(struct kh_service *svc);
