#include "service.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/limits.h"
#include "crypto/hash.h"
#include "service/service-internal.h"
#include "token/issuer.h"

static void on_flush(struct kh_loop_task *task) {
        kh_service_batch_flush(kh_container_of(task, struct kh_service, flush));
}

int kh_service_new(struct kh_app *app, struct kh_loop *loop, struct kh_service **ret) {
        KH_CLEANUP(kh_service_freep) struct kh_service *svc = NULL;
        size_t n;
        int r;

        svc = calloc(1, sizeof(*svc));
        if (!svc)
                return -ENOMEM;
        svc->app = app;
        svc->keyring = kh_app_keyring(app);
        svc->loop = loop;
        svc->flush.run = on_flush;
        kh_buf_init(&svc->blob, KH_SEALED_MAX, false);

        if (__builtin_mul_overflow(kh_app_n_tenants(app), (size_t) KH_KEY_VERSIONS_MAX, &n))
                return -ENOMEM;
        n = n ? n : 1;
        svc->counters.key_version_encrypts = calloc(n, sizeof(*svc->counters.key_version_encrypts));
        svc->counters.key_version_decrypts = calloc(n, sizeof(*svc->counters.key_version_decrypts));
        if (!svc->counters.key_version_encrypts || !svc->counters.key_version_decrypts)
                return -ENOMEM;
        r = kh_service_audit_init(svc, n);
        if (r < 0)
                return r;

        r = kh_store_open(&kh_app_config(app)->storage, &svc->store);
        if (r < 0)
                return r;
        r = kh_store_attach_loop(svc->store, loop);
        if (r < 0)
                return r;
        r = kh_token_cache_new(KH_TOKEN_CACHE_MAX, &svc->tokens);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(svc);
        return 0;
}

struct kh_service *kh_service_free(struct kh_service *svc) {
        if (!svc)
                return NULL;
        /* what the worker gathered for the audit log still reaches it (its loop is gone:
         * nothing may be deferred to it any more) */
        svc->loop = NULL;
        if (svc->audit.sent_encrypts)
                kh_service_audit_drain(svc);
        kh_service_audit_fini(svc);
        kh_store_close(svc->store);
        kh_token_cache_free(svc->tokens);
        kh_buf_free(&svc->blob);
        free(svc->counters.key_version_encrypts);
        free(svc->counters.key_version_decrypts);
        free(svc);
        return NULL;
}

void kh_service_detach_loop(struct kh_service *svc) {
        kh_store_detach_loop(svc->store);
}

struct kh_app *kh_service_app(const struct kh_service *svc) {
        return svc->app;
}

void kh_service_count_token_rejection(struct kh_service *svc) {
        atomic_fetch_add_explicit(&svc->counters.token_rejections, 1, memory_order_relaxed);
}

/* What a valid token's principal may do here: a route's kind of caller, or why not. */
static int admit(struct kh_service *svc, const struct kh_principal *p,
                 enum kh_service_caller as) {
        int r = as == KH_CALLER_MEMBER ? p->member_refusal : p->admin ? 0 : -KH_E_NOT_ADMIN;

        if (r < 0)
                atomic_fetch_add_explicit(&svc->counters.token_rejections, 1, memory_order_relaxed);
        return r;
}

/* The issuer that verifies a token: the tenant's, or for an admin route its admin_issuer
 * when the token says it comes from there (checked again, strictly, by that issuer). */
static struct kh_issuer *issuer_for(const struct kh_tenant *t, const char *token, size_t len,
                                    enum kh_service_caller as, bool *ret_admin_issuer) {
        struct kh_issuer *admin = atomic_load_explicit(&t->admin_issuer, memory_order_acquire);

        *ret_admin_issuer = as == KH_CALLER_ADMIN && admin && kh_issuer_names_itself(admin, token, len);
        return *ret_admin_issuer ? admin : atomic_load_explicit(&t->issuer, memory_order_acquire);
}

int kh_service_authenticate(struct kh_service *svc, const struct kh_tenant *t, const char *token,
                            size_t len, int64_t now, enum kh_service_caller as,
                            struct kh_principal *ret) {
        uint8_t hash[KH_SHA256_LEN];
        struct kh_issuer *issuer;
        bool via_admin_issuer;
        uint64_t seen;
        int r;

        if (!token || len == 0)
                return -KH_E_MISSING_TOKEN;
        if (len > KH_TOKEN_MAX)
                return -KH_E_INVALID_TOKEN;

        /* Bearer tokens are secrets too: the cache is keyed by their SHA-256 and a hit must
         * be for the same tenant, so a token is never accepted by another tenant. A hit
         * verified under a key set the issuer has since dropped a key from is a miss. */
        kh_sha256(token, len, hash);
        if (kh_token_cache_get(svc->tokens, hash, t->id, now, ret)) {
                issuer = ret->via_admin_issuer ? atomic_load(&t->admin_issuer) : atomic_load(&t->issuer);
                if (issuer && ret->key_generation == kh_issuer_key_generation(issuer)) {
                        atomic_fetch_add_explicit(&svc->counters.token_cache_hits, 1,
                                                  memory_order_relaxed);
                        return admit(svc, ret, as);
                }
        }
        atomic_fetch_add_explicit(&svc->counters.token_cache_misses, 1, memory_order_relaxed);

        issuer = issuer_for(t, token, len, as, &via_admin_issuer);
        if (!issuer)
                return -KH_E_NOT_READY;

        seen = kh_issuer_refresh_count(issuer);
        r = kh_issuer_verify(issuer, token, len, now, ret);
        if (r == KH_ISSUER_WAIT) {
                svc->wait_issuer = issuer;
                svc->wait_seen = seen;
                return KH_SERVICE_WAIT;
        }
        if (r < 0) {
                atomic_fetch_add_explicit(&svc->counters.token_rejections, 1, memory_order_relaxed);
                return r;
        }
        /* the company's admin IdP vouches for administrators, never for members */
        ret->via_admin_issuer = via_admin_issuer;
        if (via_admin_issuer)
                ret->member_refusal = -KH_E_INSUFFICIENT_SCOPE;
        kh_token_cache_put(svc->tokens, ret);
        return admit(svc, ret, as);
}

void kh_service_wait_keys(struct kh_service *svc, struct kh_issuer_waiter *w) {
        w->loop = svc->loop;
        kh_issuer_wait(svc->wait_issuer, w, svc->wait_seen);
}
