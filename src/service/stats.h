/* What the service tells an operator, as typed values: counters summed over every worker,
 * per tenant key version its state and uses, and readiness. http/ only formats these
 * (Prometheus text for /metrics, JSON for /health). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "service/service.h"
#include "store/store.h"

struct kh_stats_version {
        const char *tenant;          /* the tenant's id (lives as long as the app) */
        uint32_t version;
        enum kh_key_state state;
        uint64_t uses;               /* records sealed or opened under it */
};

struct kh_stats {
        uint64_t token_cache_hits;
        uint64_t token_cache_misses;
        uint64_t token_rejections;
        uint64_t integrity_failures;
        uint64_t token_cache_entries;
        size_t secret_locked_bytes;
        uint64_t audit_dropped;      /* audit events the database could not take in time */
        size_t n_versions;
        struct kh_stats_version versions[]; /* tenants in table order, versions ascending */
};

/**
 * kh_stats_collect() - sums the counters of the services of every worker (svcs[0..n), read
 * with relaxed loads: each is written by its own worker only) and lists every tenant's key
 * versions from the current key snapshot. Call on a worker's loop (a reader of the key
 * snapshot). Returns 0 or -ENOMEM; free the result with free().
 */
KH_MUST_CHECK int kh_stats_collect(struct kh_service *const *svcs, size_t n,
                                   struct kh_stats **ret);

/* The state's name as key commands and /metrics show it: "active", "archived", ... */
const char *kh_key_state_name(enum kh_key_state s);

struct kh_health {
        bool ready;
        const char *reason;          /* why not ready (static text); NULL when ready */
};

/* Whether the worker can serve keys now (what /health answers): not sealed, its database
 * answers, every tenant's issuer has signing keys, the last write found space. Worker's
 * loop only. */
struct kh_health kh_service_health(struct kh_service *svc);

/* kh_service_health() without the database check, from any thread: what keyholdd tells
 * systemd (READY=1, STATUS=). */
struct kh_health kh_app_health(const struct kh_app *app);
