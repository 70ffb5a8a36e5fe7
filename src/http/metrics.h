/* Request metrics of one worker: requests by route and status, and a latency histogram.
 * Written only by the owning worker (relaxed atomics); /metrics sums every worker. */
#pragma once

#include <stdatomic.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "http/route.h"

#define KH_METRICS_STATUSES 16
#define KH_METRICS_BUCKETS 12

struct kh_http_metrics {
        _Atomic uint64_t requests[KH_ROUTE_COUNT_][KH_METRICS_STATUSES];
        _Atomic uint64_t latency_buckets[KH_METRICS_BUCKETS]; /* cumulative on output only */
        _Atomic uint64_t latency_sum_ns;
        _Atomic uint64_t latency_count;
};

void kh_http_metrics_observe(struct kh_http_metrics *m, enum kh_route_id route, int status,
                             uint64_t elapsed_ns);

/* Appends the Prometheus text of the request metrics, summed over n workers' metrics. */
KH_MUST_CHECK int kh_http_metrics_format(const struct kh_http_metrics *const *all, size_t n,
                                         struct kh_buf *out);

