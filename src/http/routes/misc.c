/* /alive, /now, /health and /metrics. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/errors.h"
#include "common/secret.h"
#include "http/http-internal.h"
#include "service/service.h"

/* Bitwarden's shape: a JSON string of the UTC time with 7 fractional digits. */
int kh_route_alive(struct kh_http_req *req, const struct kh_principal *who) {
        char body[48], stamp[32];
        struct timespec ts;
        struct tm tm;
        int n;

        (void) who;
        (void) clock_gettime(CLOCK_REALTIME, &ts);
        (void) gmtime_r(&ts.tv_sec, &tm);
        (void) strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
        n = snprintf(body, sizeof(body), "\"%s.%07ldZ\"", stamp, ts.tv_nsec / 100);
        kh_http_reply(req, 200, "application/json; charset=utf-8", body, (size_t) n, false);
        return 0;
}

int kh_route_health(struct kh_http_req *req, const struct kh_principal *who) {
        const char *reason = NULL;
        char body[160];
        int n;

        (void) who;
        if (kh_service_ping(req->worker->svc) < 0)
                reason = "database unreachable";
        else if (!kh_app_issuers_ready(req->worker->server->app))
                reason = "issuer signing keys not loaded yet";

        if (reason) {
                n = snprintf(body, sizeof(body),
                             "{\"status\":\"not_ready\",\"reason\":\"%s\",\"code\":\"not_ready\",\"message\":\"%s\"}",
                             reason, reason);
                kh_http_reply(req, 503, "application/json", body, (size_t) n, false);
                return 0;
        }
        n = snprintf(body, sizeof(body), "{\"status\":\"ready\"}");
        kh_http_reply(req, 200, "application/json", body, (size_t) n, false);
        return 0;
}

static int append_counter(struct kh_buf *out, const char *name, const char *help, uint64_t v) {
        char line[256];

        (void) snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help,
                        name, name, (unsigned long long) v);
        return kh_buf_append_str(out, line);
}

/* A counter of struct kh_service_counters, summed over every worker. */
static uint64_t sum_counter(const struct kh_http_server *s, size_t offset) {
        uint64_t total = 0;

        for (unsigned i = 0; i < s->n_workers; i++) {
                const char *base = (const char *) kh_service_counters(s->workers[i].svc);
                total += atomic_load_explicit((const _Atomic uint64_t *) (const void *) (base + offset),
                                              memory_order_relaxed);
        }
        return total;
}

#define SUM_COUNTER(server, field) sum_counter((server), offsetof(struct kh_service_counters, field))

int kh_route_metrics(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_http_server *s = req->worker->server;
        const struct kh_http_metrics *all[KH_THREADS_MAX];
        KH_CLEANUP(kh_buf_freep) struct kh_buf out;
        uint64_t cache_size = 0;
        char line[256];
        int r = 0;

        (void) who;
        kh_buf_init(&out, 1024 * 1024, false);
        for (unsigned i = 0; i < s->n_workers; i++) {
                all[i] = &s->workers[i].metrics;
                cache_size += kh_service_token_cache_size(s->workers[i].svc);
        }
        r |= kh_http_metrics_format(all, s->n_workers, &out);
        r |= append_counter(&out, "keyhold_token_cache_hits_total", "Bearer tokens answered from the verified-token cache.",
                            SUM_COUNTER(s, token_cache_hits));
        r |= append_counter(&out, "keyhold_token_cache_misses_total", "Bearer tokens that needed full verification.",
                            SUM_COUNTER(s, token_cache_misses));
        r |= append_counter(&out, "keyhold_token_rejections_total", "Bearer tokens refused (forged, expired, wrong issuer, claims).",
                            SUM_COUNTER(s, token_rejections));
        r |= append_counter(&out, "keyhold_integrity_failures_total", "Stored records that failed to open under their binding.",
                            SUM_COUNTER(s, integrity_failures));
        (void) snprintf(line, sizeof(line), "# HELP keyhold_token_cache_entries Verified tokens cached, all workers.\n"
                                            "# TYPE keyhold_token_cache_entries gauge\nkeyhold_token_cache_entries %llu\n",
                        (unsigned long long) cache_size);
        r |= kh_buf_append_str(&out, line);
        (void) snprintf(line, sizeof(line), "# HELP keyhold_secret_locked_bytes Locked memory holding secrets.\n"
                                            "# TYPE keyhold_secret_locked_bytes gauge\nkeyhold_secret_locked_bytes %zu\n",
                        kh_secret_locked_bytes());
        r |= kh_buf_append_str(&out, line);

        r |= kh_buf_append_str(&out, "# HELP keyhold_key_version_uses_total Records sealed or opened per tenant key version.\n"
                                     "# TYPE keyhold_key_version_uses_total counter\n");
        for (size_t t = 0; t < kh_app_n_tenants(s->app); t++) {
                const struct kh_tenant *tenant = kh_app_tenant_at(s->app, t);
                for (size_t v = 0; v < tenant->n_versions; v++) {
                        uint64_t uses = 0;
                        for (unsigned i = 0; i < s->n_workers; i++)
                                uses += atomic_load_explicit(
                                        &kh_service_counters(s->workers[i].svc)->key_version_uses[t * KH_KEY_VERSIONS_MAX + v],
                                        memory_order_relaxed);
                        (void) snprintf(line, sizeof(line),
                                        "keyhold_key_version_uses_total{tenant=\"%s\",version=\"%u\"} %llu\n",
                                        tenant->id, tenant->versions[v].version, (unsigned long long) uses);
                        r |= kh_buf_append_str(&out, line);
                }
        }
        if (r < 0)
                return -ENOMEM;
        kh_http_reply(req, 200, "text/plain; version=0.0.4", out.data, out.len, false);
        return 0;
}
