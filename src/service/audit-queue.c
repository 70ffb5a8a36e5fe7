/* A worker's side of the audit log: events gathered during a pass of its loop and handed
 * to the auditor (audit.h) at the end of it, one lock per pass instead of one per request;
 * refusals aggregated per second; the writes' events put into their own group commit; and
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

/* The same refusal: everything but the time within its second and the request id. */
static bool same_refusal(const struct kh_audit_event *a, const struct kh_audit_event *b) {
        return a->chain == b->chain && a->time_ms / 1000 == b->time_ms / 1000 &&
               a->key_version == b->key_version && strcmp(a->outcome, b->outcome) == 0 &&
               strcmp(a->action, b->action) == 0 && strcmp(a->client, b->client) == 0 &&
               strcmp(a->target, b->target) == 0 && strcmp(a->actor, b->actor) == 0;
}

/* Moves the aggregated refusals of seconds before now_s (all, when now_s is INT64_MAX) to
 * the pending events, in order. */
static void release_refusals(struct kh_service *svc, int64_t now_s) {
        struct kh_service_audit *au = &svc->audit;
        size_t kept = 0;

        for (size_t i = 0; i < au->n_refusals; i++) {
                if (au->refusals[i].time_ms / 1000 < now_s)
                        pend(svc, &au->refusals[i]);
                else
                        au->refusals[kept++] = au->refusals[i];
        }
        au->n_refusals = kept;
}

void kh_service_audit(struct kh_service *svc, const struct kh_audit_event *ev) {
        struct kh_service_audit *au = &svc->audit;

        if (strcmp(ev->outcome, "ok") == 0) {
                pend(svc, ev);
                return;
        }
        for (size_t i = 0; i < au->n_refusals; i++)
                if (same_refusal(&au->refusals[i], ev)) {
                        if (au->refusals[i].count < UINT32_MAX)
                                au->refusals[i].count++;
                        return;
                }
        if (au->n_refusals == KH_SERVICE_REFUSALS_MAX) {
                pend(svc, &au->refusals[0]);
                memmove(&au->refusals[0], &au->refusals[1],
                        (KH_SERVICE_REFUSALS_MAX - 1) * sizeof(au->refusals[0]));
                au->n_refusals--;
        }
        au->refusals[au->n_refusals] = *ev;
        au->refusals[au->n_refusals].count = 1;
        au->n_refusals++;
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

static void handoff(struct kh_service *svc, int64_t refusals_before_s) {
        struct kh_service_audit *au = &svc->audit;

        release_refusals(svc, refusals_before_s);
        if (au->n_pending)
                kh_auditor_enqueue(kh_app_auditor(svc->app), au->pending, au->n_pending);
        au->n_pending = 0;
        if (au->n_dirty)
                hand_uses(svc);
}

void kh_service_audit_handoff(struct kh_service *svc) {
        handoff(svc, kh_audit_now_ms() / 1000);
}

void kh_service_pass(struct kh_service *svc) {
        struct kh_service_audit *au = &svc->audit;

        /* refusals still gathering their second wait for a pass after it: the loop passes
         * at least every 200 ms, idle or not */
        if (au->n_refusals && au->refusals[0].time_ms / 1000 < kh_audit_now_ms() / 1000)
                handoff(svc, kh_audit_now_ms() / 1000);
}

void kh_service_audit_drain(struct kh_service *svc) {
        handoff(svc, INT64_MAX);
}
