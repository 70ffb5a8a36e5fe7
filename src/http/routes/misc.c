/* /alive, /now, /health and /metrics. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/secret.h"
#include "http/http-internal.h"
#include "service/lifecycle.h"
#include "service/reencrypt.h"
#include "service/service.h"
#include "service/stats.h"

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

/* The body is JSON through jansson; a reply that cannot be built is the server's fault. */
static int reply_json(struct kh_http_req *req, int status, json_t *body) {
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;

        json_decref(body);
        if (!text)
                return -ENOMEM;
        kh_http_reply(req, status, "application/json", text, strlen(text), false);
        free(text);
        return 0;
}

/* Ready or not; why not only for the operator (the reason tells an outsider what is down). */
int kh_route_health(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_health h = kh_service_health(req->worker->svc);
        const struct kh_err_info *e = kh_err_info(-KH_E_NOT_READY);

        (void) who;
        if (h.ready)
                return reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
        if (req->listener == KH_LISTENER_OPERATOR)
                return reply_json(req, 503,
                                  json_pack("{s:s, s:s, s:s, s:s}", "status", "not_ready",
                                            "reason", h.reason, "code", e->code, "message",
                                            h.reason));
        return reply_json(req, 503, json_pack("{s:s, s:s, s:s}", "status", "not_ready", "code",
                                              e->code, "message", e->message));
}

static int append_metric(struct kh_buf *out, const char *type, const char *name,
                         const char *help, uint64_t v) {
        char line[384];

        (void) snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help,
                        name, type, name, (unsigned long long) v);
        return kh_buf_append_str(out, line);
}

/* Each tenant's re-encryption job (service/reencrypt.h): what `key status` shows. */
static int append_job_metrics(struct kh_buf *out, struct kh_app *app) {
        static const struct {
                const char *name, *type, *help;
        } m[] = {
                { "keyhold_reencrypt_running", "gauge",
                  "1 while the tenant's re-encryption job runs." },
                { "keyhold_reencrypt_moved", "gauge",
                  "Records the job moved to the active version since it (re)started." },
                { "keyhold_reencrypt_skipped", "gauge",
                  "Records under revoked versions the job leaves where they are." },
                { "keyhold_reencrypt_total", "gauge",
                  "Records under older versions when the job (re)started." },
                { "keyhold_reencrypt_rate", "gauge", "Records per second the job moves." },
                { "keyhold_reencrypt_eta_seconds", "gauge",
                  "Seconds the job still needs at its rate (-1: not known)." },
        };
        char line[256];
        int r = 0;

        for (size_t i = 0; i < KH_ELEMENTSOF(m); i++) {
                (void) snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n", m[i].name,
                                m[i].help, m[i].name, m[i].type);
                r |= kh_buf_append_str(out, line);
                for (size_t t = 0; t < kh_app_n_tenants(app); t++) {
                        const struct kh_tenant *tenant = kh_app_tenant_at(app, t);
                        struct kh_job_progress p;
                        double v;

                        kh_key_job_progress(app, tenant, &p);
                        switch (i) {
                        case 0: v = p.state == KH_JOB_RUNNING; break;
                        case 1: v = (double) p.moved; break;
                        case 2: v = (double) p.skipped; break;
                        case 3: v = (double) p.total; break;
                        case 4: v = p.rate; break;
                        default: v = (double) p.eta_s; break;
                        }
                        (void) snprintf(line, sizeof(line), "%s{tenant=\"%s\"} %.17g\n", m[i].name,
                                        tenant->id, v);
                        r |= kh_buf_append_str(out, line);
                }
        }
        return r;
}

int kh_route_metrics(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_http_server *s = req->worker->server;
        const struct kh_http_metrics *all[KH_THREADS_MAX];
        struct kh_service *svcs[KH_THREADS_MAX];
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        KH_CLEANUP_FREE struct kh_stats *st = NULL;
        char line[256];
        int r;

        (void) who;
        for (unsigned i = 0; i < s->n_workers; i++) {
                all[i] = &s->workers[i].metrics;
                svcs[i] = s->workers[i].svc;
        }
        r = kh_stats_collect(svcs, s->n_workers, &st);
        if (r < 0)
                return r;

        kh_buf_init(&out, 1024 * 1024, false);
        r = kh_http_metrics_format(all, s->n_workers, &out);
        r |= append_metric(&out, "counter", "keyhold_token_cache_hits_total",
                           "Bearer tokens answered from the verified-token cache.", st->token_cache_hits);
        r |= append_metric(&out, "counter", "keyhold_token_cache_misses_total",
                           "Bearer tokens that needed full verification.", st->token_cache_misses);
        r |= append_metric(&out, "counter", "keyhold_token_rejections_total",
                           "Bearer tokens refused (forged, expired, wrong issuer, claims).",
                           st->token_rejections);
        r |= append_metric(&out, "counter", "keyhold_integrity_failures_total",
                           "Stored records that failed to open under their binding.",
                           st->integrity_failures);
        r |= append_metric(&out, "counter", "keyhold_audit_dropped_total",
                           "Audit events lost because the database could not store them "
                           "(full disk) before the queue's bound; should stay 0.",
                           st->audit_dropped);
        r |= append_metric(&out, "gauge", "keyhold_token_cache_entries",
                           "Verified tokens cached, all workers.", st->token_cache_entries);
        r |= append_metric(&out, "gauge", "keyhold_secret_locked_bytes",
                           "Locked memory holding secrets.", st->secret_locked_bytes);

        r |= kh_buf_append_str(&out, "# HELP keyhold_key_version_uses_total Records sealed or opened per tenant key version.\n"
                                     "# TYPE keyhold_key_version_uses_total counter\n");
        for (size_t i = 0; i < st->n_versions; i++) {
                const struct kh_stats_version *v = &st->versions[i];
                (void) snprintf(line, sizeof(line),
                                "keyhold_key_version_uses_total{tenant=\"%s\",version=\"%u\"} %llu\n",
                                v->tenant, v->version, (unsigned long long) v->uses);
                r |= kh_buf_append_str(&out, line);
        }
        r |= append_job_metrics(&out, s->app);
        r |= append_metric(&out, "gauge", "keyhold_sealed",
                           "1 while the server is sealed (every key route answers 503).",
                           kh_app_sealed(s->app));
        r |= append_metric(&out, "gauge", "keyhold_keystore_unavailable",
                           "1 while the key store (HSM) is gone and keyholdd reconnects.",
                           kh_app_keystore_unavailable(s->app));
        if (r < 0)
                return -ENOMEM;
        kh_http_reply(req, 200, "text/plain; version=0.0.4", out.data, out.len, false);
        return 0;
}
