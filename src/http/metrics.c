#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>

static const int statuses[KH_METRICS_STATUSES] = {
        200, 204, 400, 401, 403, 404, 405, 413, 414, 415, 431, 500, 503, 0, 0, 0 /* other */
};

/* Upper bounds in seconds of the latency histogram buckets, last is +Inf. */
static const double bucket_s[KH_METRICS_BUCKETS] = {
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.25, 1.0, 0 /* +Inf */
};

static size_t status_slot(int status) {
        for (size_t i = 0; i < KH_METRICS_STATUSES - 3; i++)
                if (statuses[i] == status)
                        return i;
        return KH_METRICS_STATUSES - 1;
}

void kh_http_metrics_observe(struct kh_http_metrics *m, enum kh_route_id route, int status,
                             uint64_t elapsed_ns) {
        size_t b = 0;

        atomic_fetch_add_explicit(&m->requests[route][status_slot(status)], 1, memory_order_relaxed);
        while (b < KH_METRICS_BUCKETS - 1 && (double) elapsed_ns > bucket_s[b] * 1e9)
                b++;
        atomic_fetch_add_explicit(&m->latency_buckets[b], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->latency_sum_ns, elapsed_ns, memory_order_relaxed);
        atomic_fetch_add_explicit(&m->latency_count, 1, memory_order_relaxed);
}

static uint64_t sum(const struct kh_http_metrics *const *all, size_t n, size_t offset) {
        uint64_t total = 0;

        for (size_t i = 0; i < n; i++) {
                const _Atomic uint64_t *v = (const _Atomic uint64_t *) (const void *) ((const char *) all[i] + offset);
                total += atomic_load_explicit(v, memory_order_relaxed);
        }
        return total;
}

int kh_http_metrics_format(const struct kh_http_metrics *const *all, size_t n, struct kh_buf *out) {
        char line[256];
        uint64_t cumulative = 0;
        int r = 0;

        r |= kh_buf_append_str(out, "# HELP keyhold_requests_total HTTP requests by route and status.\n"
                                    "# TYPE keyhold_requests_total counter\n");
        for (size_t route = 0; route < KH_ROUTE_COUNT_; route++)
                for (size_t s = 0; s < KH_METRICS_STATUSES; s++) {
                        uint64_t v = sum(all, n, offsetof(struct kh_http_metrics, requests[route][s]));
                        if (v == 0 || (statuses[s] == 0 && s != KH_METRICS_STATUSES - 1))
                                continue;
                        char status[8];
                        if (statuses[s])
                                (void) snprintf(status, sizeof(status), "%d", statuses[s]);
                        else
                                (void) snprintf(status, sizeof(status), "other");
                        (void) snprintf(line, sizeof(line),
                                        "keyhold_requests_total{route=\"%s\",status=\"%s\"} %llu\n",
                                        kh_route_name((enum kh_route_id) route), status,
                                        (unsigned long long) v);
                        r |= kh_buf_append_str(out, line);
                }

        r |= kh_buf_append_str(out, "# HELP keyhold_request_duration_seconds Time spent handling a request.\n"
                                    "# TYPE keyhold_request_duration_seconds histogram\n");
        for (size_t b = 0; b < KH_METRICS_BUCKETS; b++) {
                cumulative += sum(all, n, offsetof(struct kh_http_metrics, latency_buckets[b]));
                if (b < KH_METRICS_BUCKETS - 1)
                        (void) snprintf(line, sizeof(line),
                                        "keyhold_request_duration_seconds_bucket{le=\"%g\"} %llu\n",
                                        bucket_s[b], (unsigned long long) cumulative);
                else
                        (void) snprintf(line, sizeof(line),
                                        "keyhold_request_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                                        (unsigned long long) cumulative);
                r |= kh_buf_append_str(out, line);
        }
        (void) snprintf(line, sizeof(line),
                        "keyhold_request_duration_seconds_sum %.9f\nkeyhold_request_duration_seconds_count %llu\n",
                        (double) sum(all, n, offsetof(struct kh_http_metrics, latency_sum_ns)) / 1e9,
                        (unsigned long long) sum(all, n, offsetof(struct kh_http_metrics, latency_count)));
        r |= kh_buf_append_str(out, line);
        return r < 0 ? -E2BIG : 0;
}
