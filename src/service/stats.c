#include "stats.h"

#include <errno.h>
#include <stdlib.h>

#include "common/secret.h"
#include "service/app.h"
#include "service/service-internal.h"
#include "token/token-cache.h"

static uint64_t load(const _Atomic uint64_t *v) {
        return atomic_load_explicit(v, memory_order_relaxed);
}

int kh_stats_collect(struct kh_service *const *svcs, size_t n, struct kh_stats **ret) {
        const struct kh_app *app = svcs[0]->app;
        const struct kh_keys *keys = kh_keyring_get(kh_app_keyring(app));
        struct kh_stats *st;
        size_t total = 0, k = 0;

        for (size_t t = 0; t < keys->n_tenants; t++)
                total += keys->tenants[t].n_versions;
        st = calloc(1, sizeof(*st) + total * sizeof(st->versions[0]));
        if (!st)
                return -ENOMEM;

        for (size_t i = 0; i < n; i++) {
                const struct kh_service_counters *c = &svcs[i]->counters;
                st->token_cache_hits += load(&c->token_cache_hits);
                st->token_cache_misses += load(&c->token_cache_misses);
                st->token_rejections += load(&c->token_rejections);
                st->integrity_failures += load(&c->integrity_failures);
                st->token_cache_entries += kh_token_cache_size(svcs[i]->tokens);
        }
        st->secret_locked_bytes = kh_secret_locked_bytes();
        st->audit_dropped = kh_auditor_dropped(kh_app_auditor(app));

        for (size_t t = 0; t < keys->n_tenants; t++) {
                const struct kh_tenant_keys *tk = &keys->tenants[t];
                for (size_t v = 0; v < tk->n_versions; v++, k++) {
                        struct kh_stats_version *sv = &st->versions[k];
                        sv->tenant = kh_app_tenant_at(app, t)->id;
                        sv->version = tk->versions[v].version;
                        sv->state = tk->versions[v].state;
                        for (size_t i = 0; i < n; i++)
                                sv->uses += load(&svcs[i]->counters.key_version_encrypts[t * KH_KEY_VERSIONS_MAX + v]) +
                                            load(&svcs[i]->counters.key_version_decrypts[t * KH_KEY_VERSIONS_MAX + v]);
                }
        }
        st->n_versions = k;
        *ret = st;
        return 0;
}

const char *kh_key_state_name(enum kh_key_state s) {
        switch (s) {
        case KH_KEY_ACTIVE: return "active";
        case KH_KEY_ARCHIVED: return "archived";
        case KH_KEY_RETIRED: return "retired";
        case KH_KEY_REVOKED: return "revoked";
        case KH_KEY_DESTROYED: return "destroyed";
        }
        return "unknown";
}

struct kh_health kh_app_health(const struct kh_app *app) {
        if (kh_app_sealed(app))
                return (struct kh_health) { false, "sealed: an operator must unseal the key store (keyhold unseal)" };
        if (kh_app_keystore_unavailable(app))
                return (struct kh_health) { false, "keystore unavailable: the HSM does not answer; "
                                                   "reconnecting (the log says why)" };
        if (!kh_app_issuers_ready(app))
                return (struct kh_health) { false, "issuer signing keys not loaded yet" };
        if (kh_app_storage_full(app))
                return (struct kh_health) { false, "the last write failed: no space left for the database" };
        return (struct kh_health) { true, NULL };
}

struct kh_health kh_service_health(struct kh_service *svc) {
        if (kh_app_sealed(svc->app))
                return kh_app_health(svc->app);
        if (kh_store_ping(svc->store) < 0)
                return (struct kh_health) { false, "database unreachable" };
        return kh_app_health(svc->app);
}
