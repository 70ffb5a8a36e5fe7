/* Fields of struct kh_service, for the service/ files only. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/loop.h"
#include "service/service.h"
#include "store/store.h"
#include "token/token-cache.h"

/* Written by the owning worker only (relaxed); stats.c sums every worker's. */
struct kh_service_counters {
        _Atomic uint64_t token_cache_hits;
        _Atomic uint64_t token_cache_misses;
        _Atomic uint64_t token_rejections;
        _Atomic uint64_t integrity_failures;
        _Atomic uint64_t *key_version_uses; /* [tenant index * KH_KEY_VERSIONS_MAX + slot] */
};

struct kh_service {
        struct kh_app *app;
        struct kh_keyring *keyring;        /* the app's, cached */
        struct kh_store *store;
        struct kh_token_cache *tokens;
        struct kh_buf blob;        /* reused for sealed records: no allocation per request */
        struct kh_service_counters counters;
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
