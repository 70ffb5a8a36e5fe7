/* A worker's side of the audit log: events gathered during a pass of its loop and handed
 * to the auditor (audit.h) at the end of it, one lock per pass instead of one per request;
 * refusals aggregated per second (and reads of the log itself per minute); the writes' events put into their own group commit; and
 * the key use counters handed over for the auditor to keep durable. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "crypto/random.h"
#include "service/app.h"
#include "service/service-internal.h"

static void on_handoff(struct kh_loop_task *task) {
        struct kh_service *svc = kh_container_of(task, struct kh_service, audit.flush);

        svc->audit.flush_deferred = false;
        kh_service_audit_handoff(svc);
}

int kh_service_audit_init(struct kh_service *svc, size_t n_counters) {
        struct kh_service_audit *au = &svc->audit;
        uint8_t seed[sizeof(au->request_seq)];
        int r;

        au->flush.run = on_handoff;
        au->sent_encrypts = calloc(n_counters, sizeof(*au->sent_encrypts));
        au->sent_decrypts = calloc(n_counters, sizeof(*au->sent_decrypts));
        au->dirty = calloc(n_counters, sizeof(*au->dirty));
        au->is_dirty = calloc(n_counters, 1);
        if (!au->sent_encrypts || !au->sent_decrypts || !au->dirty || !au->is_dirty)
                return -ENOMEM;
        /* request ids need only be unique: a random start per worker and run, then counted */
        r = kh_random_bytes(seed, sizeof(seed));
        if (r < 0)
                return r;
        memcpy(&au->request_seq, seed, sizeof(seed));
        return 0;
}

void kh_service_audit_fini(struct kh_service *svc) {
        struct kh_service_audit *au = &svc->audit;

        free(au->pending);
        free(au->tx);
        free(au->sent_encrypts);
        free(au->sent_decrypts);
        free(au->dirty);
        free(au->is_dirty);
}

static void defer_handoff(struct kh_service *svc) {
        if (!svc->audit.flush_deferred && svc->loop) {
                svc->audit.flush_deferred = true;
                kh_loop_defer(svc->loop, &svc->audit.flush);
        }
}

static int push(struct kh_audit_event **v, size_t *n, size_t *cap, const struct kh_audit_event *ev) {
        if (*n == *cap) {
                size_t c = *cap ? 2 * *cap : 64;
                struct kh_audit_event *p = reallocarray(*v, c, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                *v = p;
                *cap = c;
        }
        (*v)[(*n)++] = *ev;
        return 0;
}

/* Queues ev for the auditor; when memory runs out, hands it over at once. */
static void pend(struct kh_service *svc, const struct kh_audit_event *ev) {
        struct kh_service_audit *au = &svc->audit;

        if (push(&au->pending, &au->n_pending, &au->cap_pending, ev) < 0)
                kh_auditor_enqueue(kh_app_auditor(svc->app), ev, 1);
        defer_handoff(svc);
}

/* How long events that differ only in their time and request id are gathered into one
 * record with a count (docs/audit.md): refusals per second, so that a flood cannot fill the
 * disk; and an administrator's reads of the audit log itself per minute, since `audit tail
 * -f` reads it every second and each read would otherwise be a record it then reads. Every
 * other event is a record of its own. */
static int64_t aggregation_ms(const struct kh_audit_event *ev) {
        if (strcmp(ev->outcome, "ok") != 0)
                return 1000;
        if (strcmp(ev->action, "audit.export") == 0)
                return 60000;
        return 0;
}

static bool same_event(const struct kh_audit_event *a, const struct kh_audit_event *b,
                       int64_t window_ms) {
        return a->chain == b->chain && a->time_ms / window_ms == b->time_ms / window_ms &&
               a->key_version == b->key_version && strcmp(a->outcome, b->outcome) == 0 &&
               strcmp(a->action, b->action) == 0 && strcmp(a->client, b->client) == 0 &&
               strcmp(kh_audit_event_target(a), kh_audit_event_target(b)) == 0 &&
               strcmp(a->actor, b->actor) == 0;
}

/* The end of the window an aggregated event gathers in. */
static int64_t window_end(const struct kh_audit_event *ev) {
        int64_t w = aggregation_ms(ev);
        return (ev->time_ms / w + 1) * w;
}

/* Moves the aggregated events whose window ended by now_ms (all, when now_ms is INT64_MAX)
 * to the pending events, in order. */
static void release_aggregated(struct kh_service *svc, int64_t now_ms) {
        struct kh_service_audit *au = &svc->audit;
        size_t kept = 0;

        for (size_t i = 0; i < au->n_gathered; i++) {
                if (window_end(&au->gathered[i]) <= now_ms)
                        pend(svc, &au->gathered[i]);
                else
                        au->gathered[kept++] = au->gathered[i];
        }
        au->n_gathered = kept;
}

void kh_service_audit(struct kh_service *svc, const struct kh_audit_event *ev) {
        struct kh_service_audit *au = &svc->audit;
        int64_t window = aggregation_ms(ev);

        if (window == 0) {
                pend(svc, ev);
                return;
        }
        for (size_t i = 0; i < au->n_gathered; i++)
                if (same_event(&au->gathered[i], ev, window)) {
                        if (au->gathered[i].count < UINT32_MAX)
                                au->gathered[i].count++;
                        return;
                }
        if (au->n_gathered == KH_SERVICE_GATHERED_MAX) {
                pend(svc, &au->gathered[0]);
                memmove(&au->gathered[0], &au->gathered[1],
                        (KH_SERVICE_GATHERED_MAX - 1) * sizeof(au->gathered[0]));
                au->n_gathered--;
        }
        au->gathered[au->n_gathered] = *ev;
        au->gathered[au->n_gathered].count = 1;
        au->n_gathered++;
        defer_handoff(svc);
}

void kh_service_audit_write(struct kh_service *svc, const struct kh_audit_event *ev) {
        struct kh_service_audit *au = &svc->audit;

        /* Out of memory, the record cannot join the commit; the auditor's queue still takes
         * it, so it is written by the same or the next commit. */
        if (push(&au->tx, &au->n_tx, &au->cap_tx, ev) < 0)
                kh_auditor_enqueue(kh_app_auditor(svc->app), ev, 1);
}

void kh_service_request_id(struct kh_service *svc, char out[static KH_REQUEST_ID_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";
        uint64_t v = svc->audit.request_seq++;

        /* splitmix64: consecutive ids look unrelated, and stay distinct (a bijection) */
        v += 0x9e3779b97f4a7c15u;
        v = (v ^ (v >> 30)) * 0xbf58476d1ce4e5b9u;
        v = (v ^ (v >> 27)) * 0x94d049bb133111ebu;
        v ^= v >> 31;
        for (int i = KH_REQUEST_ID_LEN - 1; i >= 0; i--, v >>= 4)
                out[i] = hex[v & 15];
        out[KH_REQUEST_ID_LEN] = '\0';
}

bool kh_service_audits_reads(const struct kh_service *svc) {
        return kh_app_config(svc->app)->audit.log_reads;
}

void kh_service_count_use(struct kh_service *svc, size_t tenant, size_t slot, bool encrypt) {
        struct kh_service_audit *au = &svc->audit;
        size_t i = tenant * KH_KEY_VERSIONS_MAX + slot;

        atomic_fetch_add_explicit(encrypt ? &svc->counters.key_version_encrypts[i]
                                          : &svc->counters.key_version_decrypts[i],
                                  1, memory_order_relaxed);
        if (!au->is_dirty[i]) {
                au->is_dirty[i] = 1;
                au->dirty[au->n_dirty++] = (uint32_t) i;
                defer_handoff(svc);
        }
}

/* The counters changed in this pass, as deltas by version (the snapshot of this pass names
 * the versions of the slots). */
static void hand_uses(struct kh_service *svc) {
        struct kh_service_audit *au = &svc->audit;
        const struct kh_keys *keys = kh_keyring_get(svc->keyring);
        struct kh_auditor *a = kh_app_auditor(svc->app);

        for (size_t d = 0; d < au->n_dirty; d++) {
                size_t i = au->dirty[d], t = i / KH_KEY_VERSIONS_MAX, slot = i % KH_KEY_VERSIONS_MAX;
                uint64_t e = atomic_load_explicit(&svc->counters.key_version_encrypts[i],
                                                  memory_order_relaxed);
                uint64_t x = atomic_load_explicit(&svc->counters.key_version_decrypts[i],
                                                  memory_order_relaxed);

                au->is_dirty[i] = 0;
                if (t < keys->n_tenants && slot < keys->tenants[t].n_versions)
                        kh_auditor_add_uses(a, t, keys->tenants[t].versions[slot].version,
                                            e - au->sent_encrypts[i], x - au->sent_decrypts[i]);
                au->sent_encrypts[i] = e;
                au->sent_decrypts[i] = x;
        }
        au->n_dirty = 0;
}

static void handoff(struct kh_service *svc, int64_t now_ms) {
        struct kh_service_audit *au = &svc->audit;

        release_aggregated(svc, now_ms);
        if (au->n_pending)
                kh_auditor_enqueue(kh_app_auditor(svc->app), au->pending, au->n_pending);
        au->n_pending = 0;
        if (au->n_dirty)
                hand_uses(svc);
}

void kh_service_audit_handoff(struct kh_service *svc) {
        handoff(svc, kh_audit_now_ms());
}

void kh_service_pass(struct kh_service *svc) {
        /* events still gathering their window wait for a pass after it: the loop passes at
         * least every 200 ms, idle or not */
        if (svc->audit.n_gathered)
                handoff(svc, kh_audit_now_ms());
}

void kh_service_audit_drain(struct kh_service *svc) {
        handoff(svc, INT64_MAX);
}
