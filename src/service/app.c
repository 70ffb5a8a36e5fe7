#include "app.h"

#include <errno.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/errors.h"
#include "crypto/random.h"
#include "keystore/keystore.h"
#include "token/issuer.h"

struct kh_app {
        const struct kh_config *cfg;
        struct kh_keystore *keystore;
        /* The connection that loaded the tenant keys, kept open for the life of the app:
         * an SQLite file is owned by the process that has it open (see the SQLite store),
         * and the workers open theirs only later. Closing this one in between would let
         * another process take the file after this one has loaded key states from it. */
        struct kh_store *store;
        struct kh_tenant *tenants;
        size_t n_tenants;
        kh_app_event_fn event;
        void *userdata;
        pthread_t retry_thread;
        bool retry_running;
        atomic_bool stopping;
};

static void emit(const struct kh_app *app, const char *tenant, const char *what, int r) {
        if (app->event)
                app->event(tenant, what, r, app->userdata);
}

/* Creates version 1 of a tenant key with its DEK when the database has none. Every replica
 * may run this at once: the key store lets one generate win (-EEXIST for the others), and
 * the database keeps the first DEK inserted; everyone then reads back what won. */
static int tenant_first_version(struct kh_app *app, struct kh_store *store, const char *tenant) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped;
        struct kh_key_spec spec = { .tenant = tenant, .version = 1,
                                    .rsa_bits = app->cfg->keystore.rsa_bits };
        struct kh_key_ref ref;
        int r;

        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);

        r = kh_keystore_generate(app->keystore, &spec, &ref);
        if (r == -EEXIST) {
                snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
                ref.version = 1;
        } else if (r < 0) {
                return r;
        }

        r = kh_random_secret(KH_DEK_LEN, &dek);
        if (r < 0)
                return r;
        r = kh_keystore_wrap(app->keystore, &ref, dek, &wrapped);
        if (r < 0)
                return r;
        r = kh_store_tenant_key_insert_if_absent(store, tenant, 1, KH_KEY_ACTIVE, wrapped.data,
                                                 wrapped.len);
        return r < 0 ? r : 0;
}

struct load_ctx {
        struct kh_app *app;
        struct kh_tenant *tenant;
        int error;
};

static bool state_decrypts(enum kh_key_state s) {
        return s == KH_KEY_ACTIVE || s == KH_KEY_ARCHIVED || s == KH_KEY_REVOKED;
}

static int load_version(const struct kh_tenant_key *key, void *userdata) {
        struct load_ctx *c = userdata;
        struct kh_tenant *t = c->tenant;
        struct kh_tenant_version *v;
        struct kh_key_ref ref = { .version = key->version };
        int r;

        if (t->n_versions >= KH_KEY_VERSIONS_MAX)
                return -E2BIG;
        v = &t->versions[t->n_versions];
        *v = (struct kh_tenant_version) { .version = key->version, .state = key->state };
        snprintf(ref.tenant, sizeof(ref.tenant), "%s", t->id);

        /* A revoked version keeps its DEK loaded so that reinstate needs no key store
         * round trip; reads of it are refused by state, not by absence. */
        if (state_decrypts(key->state)) {
                r = kh_keystore_unwrap(c->app->keystore, &ref, key->wrapped_dek,
                                       key->wrapped_dek_len, &v->dek);
                if (r < 0) {
                        c->error = r;
                        return r;
                }
        }
        if (key->state == KH_KEY_ACTIVE)
                t->active = v;
        t->n_versions++;
        return 0;
}

static int tenant_load_keys(struct kh_app *app, struct kh_store *store, struct kh_tenant *t) {
        struct load_ctx c = { .app = app, .tenant = t };
        int r;

        for (int attempt = 0; attempt < 2; attempt++) {
                for (size_t i = 0; i < t->n_versions; i++)
                        t->versions[i].dek = kh_secret_free(t->versions[i].dek);
                t->n_versions = 0;
                t->active = NULL;

                r = kh_store_tenant_keys(store, t->id, load_version, &c);
                if (r < 0)
                        return c.error ? c.error : r;
                if (t->n_versions > 0)
                        break;
                r = tenant_first_version(app, store, t->id);
                if (r < 0)
                        return r;
                emit(app, t->id, "created tenant key version 1", 0);
        }
        if (!t->active)
                return -KH_E_NOT_READY;
        return 0;
}

static int tenant_open_issuer(struct kh_tenant *t) {
        struct kh_issuer *issuer = NULL;
        const struct kh_config_tenant *tc = t->config;
        struct kh_issuer_config ic = {
                .tenant = t->id,
                .issuer_url = tc->issuer,
                .issuer_ca = tc->issuer_ca,
                .audience = tc->audience && *tc->audience ? tc->audience : NULL,
                .jwks_file = tc->jwks_file,
                .max_lifetime_s = tc->max_token_lifetime_s,
        };
        int r;

        r = kh_issuer_open(&ic, &issuer);
        if (r < 0)
                return r;
        atomic_store_explicit(&t->issuer, issuer, memory_order_release);
        return 0;
}

/* Issuers that were unreachable at start-up are retried here, so keyholdd comes up (and
 * reports 503 on /health) instead of failing while the identity server restarts. */
static void *issuer_retry(void *userdata) {
        struct kh_app *app = userdata;

        while (!atomic_load(&app->stopping)) {
                bool missing = false;
                for (size_t i = 0; i < app->n_tenants; i++) {
                        struct kh_tenant *t = &app->tenants[i];
                        if (atomic_load(&t->issuer))
                                continue;
                        int r = tenant_open_issuer(t);
                        if (r < 0)
                                missing = true;
                        else
                                emit(app, t->id, "issuer keys loaded", 0);
                }
                if (!missing)
                        break;
                for (int i = 0; i < 20 && !atomic_load(&app->stopping); i++)
                        (void) nanosleep(&(struct timespec) { .tv_nsec = 100 * 1000 * 1000 }, NULL);
        }
        return NULL;
}

int kh_app_open(const struct kh_config *cfg, kh_app_event_fn event, void *userdata,
                struct kh_app **ret) {
        KH_CLEANUP(kh_app_closep) struct kh_app *app = NULL;
        bool missing = false;
        int r;

        if (cfg->n_tenants == 0 || cfg->n_tenants > KH_TENANTS_MAX)
                return -EINVAL;
        app = calloc(1, sizeof(*app));
        if (!app)
                return -ENOMEM;
        app->cfg = cfg;
        app->event = event;
        app->userdata = userdata;
        app->tenants = calloc(cfg->n_tenants, sizeof(*app->tenants));
        if (!app->tenants)
                return -ENOMEM;
        app->n_tenants = cfg->n_tenants;

        r = kh_keystore_open(&cfg->keystore, &app->keystore);
        if (r < 0) {
                emit(app, NULL, "cannot open the key store", r);
                return r;
        }
        r = kh_store_open(&cfg->storage, &app->store);
        if (r == -EBUSY) {
                emit(app, NULL,
                     "cannot open the database: database is locked by another process "
                     "(another keyholdd on the same file, or a tool that has it open)",
                     r);
                return r;
        }
        if (r < 0) {
                emit(app, NULL, "cannot open the database", r);
                return r;
        }

        for (size_t i = 0; i < cfg->n_tenants; i++) {
                struct kh_tenant *t = &app->tenants[i];
                snprintf(t->id, sizeof(t->id), "%s", cfg->tenants[i].id);
                t->index = i;
                t->config = &cfg->tenants[i];
                r = tenant_load_keys(app, app->store, t);
                if (r < 0) {
                        emit(app, t->id, "cannot load tenant keys", r);
                        return r;
                }
                r = tenant_open_issuer(t);
                if (r < 0) {
                        emit(app, t->id, "issuer not reachable yet; retrying in the background", r);
                        missing = true;
                }
        }

        if (missing) {
                r = -pthread_create(&app->retry_thread, NULL, issuer_retry, app);
                if (r < 0)
                        return r;
                app->retry_running = true;
        }

        *ret = KH_TAKE_PTR(app);
        return 0;
}

struct kh_app *kh_app_close(struct kh_app *app) {
        if (!app)
                return NULL;
        atomic_store(&app->stopping, true);
        if (app->retry_running)
                (void) pthread_join(app->retry_thread, NULL);
        for (size_t i = 0; i < app->n_tenants; i++) {
                struct kh_tenant *t = &app->tenants[i];
                kh_issuer_close(atomic_load(&t->issuer));
                for (size_t j = 0; j < t->n_versions; j++)
                        t->versions[j].dek = kh_secret_free(t->versions[j].dek);
        }
        free(app->tenants);
        kh_store_close(app->store);
        kh_keystore_close(app->keystore);
        free(app);
        return NULL;
}

const struct kh_config *kh_app_config(const struct kh_app *app) {
        return app->cfg;
}

size_t kh_app_n_tenants(const struct kh_app *app) {
        return app->n_tenants;
}

const struct kh_tenant *kh_app_tenant_at(const struct kh_app *app, size_t i) {
        return i < app->n_tenants ? &app->tenants[i] : NULL;
}

const struct kh_tenant *kh_app_tenant(const struct kh_app *app, const char *id, size_t len) {
        if (!id) {
                id = "default";
                len = 7;
        }
        for (size_t i = 0; i < app->n_tenants; i++) {
                const struct kh_tenant *t = &app->tenants[i];
                if (strlen(t->id) == len && memcmp(t->id, id, len) == 0)
                        return t;
        }
        return NULL;
}

const struct kh_tenant_version *kh_tenant_version(const struct kh_tenant *t, uint32_t version) {
        for (size_t i = 0; i < t->n_versions; i++)
                if (t->versions[i].version == version)
                        return &t->versions[i];
        return NULL;
}

bool kh_app_issuers_ready(const struct kh_app *app) {
        for (size_t i = 0; i < app->n_tenants; i++) {
                struct kh_issuer *issuer = atomic_load(&app->tenants[i].issuer);
                if (!issuer || !kh_issuer_has_keys(issuer))
                        return false;
        }
        return true;
}
