#include "app.h"
#include "app-internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/jobs.h"
#include "crypto/random.h"
#include "store/lock.h"
#include "keystore/keystore.h"
#include "service/audit.h"
#include "service/backup.h"
#include "service/keystore-monitor.h"
#include "service/keywatch.h"
#include "service/ksmigrate.h"
#include "service/reencrypt.h"
#include "token/issuer.h"

#define APP_JOB_QUEUE   64

static void emit(const struct kh_app *app, const char *tenant, const char *what, int r) {
        if (app->event)
                app->event(tenant, what, r, app->userdata);
}

static int stop_at_first(const struct kh_tenant_key *k, void *userdata) {
        (void) k;
        *(bool *) userdata = true;
        return 1;
}

/* How long one replica may take to make a tenant's first version before another replica,
 * waiting for it, takes over (an HSM makes an RSA-8192 pair in seconds to a minute), and how
 * long a replica waits in all. */
#define KEYGEN_LEASE_MS 60000
#define KEYGEN_WAIT_MS  (3 * KEYGEN_LEASE_MS)

static int64_t wall_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Replicas starting together on an empty database: one makes the tenant's first key pair, in
 * the database's lease "keygen.<tenant>", the others wait for its row. The database would
 * keep one DEK anyway (insert-if-absent), but a PKCS#11 token has no compare-and-swap: two
 * generations of one label at once may both be undone (pkcs11-keystore.c). Returns 1 (this
 * replica makes it: give the lease up after), 0 (another made it meanwhile), or an error
 * (-ETIMEDOUT: it never came). */
static int keygen_lease(struct kh_app *app, struct kh_store *store, const char *tenant) {
        char name[KH_STORE_LEASE_NAME_MAX + 1];
        int64_t until = wall_ms() + KEYGEN_WAIT_MS;

        (void) snprintf(name, sizeof(name), "keygen.%s", tenant);
        for (;;) {
                int64_t now = wall_ms();
                bool any = false;
                int r = kh_store_tenant_keys(store, tenant, stop_at_first, &any);

                if (r < 0)
                        return r;
                if (any)
                        return 0;
                r = kh_store_lease_take(store, name, app->node_id, kh_app_lease_now(app, now),
                                        now + KEYGEN_LEASE_MS,
                                        (const uint8_t *) "keygen", 6);
                if (r < 0)
                        return r;
                if (r == 1)
                        return 1;
                if (now > until)
                        return -ETIMEDOUT;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 100 * 1000 * 1000 }, NULL);
        }
}

static void keygen_release(struct kh_app *app, struct kh_store *store, const char *tenant) {
        char name[KH_STORE_LEASE_NAME_MAX + 1];

        (void) snprintf(name, sizeof(name), "keygen.%s", tenant);
        /* a lease not given up expires: the others wait KEYGEN_LEASE_MS at most */
        if (kh_store_lease_take(store, name, app->node_id, wall_ms(), 0,
                                (const uint8_t *) "keygen", 6) < 0)
                return;
}

/* Creates version 1 of a tenant key with its DEK, signed by that version (kh_dek_sign()),
 * when the database has none. Every replica may run this at once: one makes the key pair
 * (keygen_lease()), and the database keeps the first DEK inserted, with its signature;
 * everyone then reads back what won. */
static int make_first_version(struct kh_app *app, struct kh_store *store, const char *tenant) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped, sig;
        struct kh_key_spec spec = { .tenant = tenant, .version = 1,
                                    .rsa_bits = app->cfg->keystore.rsa_bits };
        struct kh_key_ref ref = { .version = 1, .purpose = KH_KEY_DATA };
        int r;

        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);

        r = kh_keystore_generate(app->keystore, &spec, &ref);
        if (r == -EEXIST) {
                /* made by a start that died before its row (or by another replica) */
                snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
        } else if (r < 0) {
                return r;
        }

        r = kh_random_secret(KH_DEK_LEN, &dek);
        if (r < 0)
                return r;
        r = kh_keystore_wrap(app->keystore, &ref, dek, &wrapped);
        if (r < 0)
                return r;
        r = kh_dek_sign(app->keystore, tenant, 1, wrapped.data, wrapped.len, &sig);
        if (r < 0)
                return r;
        return kh_store_tenant_key_insert_if_absent(store, tenant, 1, KH_KEY_ACTIVE, wrapped.data,
                                                    wrapped.len, sig.data, sig.len);
}

/* Returns 1 (made here), 0 (another replica made it) or an error. */
static int tenant_first_version(struct kh_app *app, struct kh_store *store, const char *tenant) {
        int r = keygen_lease(app, store, tenant);

        if (r <= 0)
                return r;
        r = make_first_version(app, store, tenant);
        keygen_release(app, store, tenant);
        return r;
}

/* Every tenant's key versions, read from the database through the app's connection. */
int kh_app_snapshot_locked(struct kh_app *app, unsigned flags, struct kh_keys **ret,
                           struct kh_keys_failure *failed) {
        const char *ids[KH_TENANTS_MAX];

        for (size_t i = 0; i < app->n_tenants; i++)
                ids[i] = app->tenants[i].id;
        return kh_keys_load(app->store, app->keystore, ids, app->n_tenants, flags, ret, failed);
}

/* The log line for a snapshot that could not be read: which version, and for a DEK without
 * any signature, what the operator may do about it. */
static void emit_load_failure(struct kh_app *app, const struct kh_keys_failure *f, int r) {
        char what[320];

        if (f->unsigned_dek)
                (void) snprintf(what, sizeof(what),
                                "tenant key version %" PRIu32 " has a DEK without a signature "
                                "(a database from before keyhold signed DEKs, or a planted "
                                "row); only if this database is trusted, start once with "
                                "--sign-unsigned-deks", f->version);
        else if (f->version)
                (void) snprintf(what, sizeof(what), "cannot load tenant key version %" PRIu32,
                                f->version);
        else
                (void) snprintf(what, sizeof(what), "cannot load tenant keys");
        emit(app, app->tenants[f->tenant].id, what, r);
}

/* Creates the first key version of every tenant the database has none of, so that a first
 * start with many tenants loads the snapshot once (each load unwraps every tenant's keys),
 * not once per new tenant. */
int kh_app_first_versions_locked(struct kh_app *app) {
        for (size_t i = 0; i < app->n_tenants; i++) {
                const char *id = app->tenants[i].id;
                bool any = false;
                int r = kh_store_tenant_keys(app->store, id, stop_at_first, &any);

                /* a tenant whose rows do not read is the snapshot's to report, precisely */
                if (any || r < 0)
                        continue;
                r = tenant_first_version(app, app->store, id);
                if (r < 0) {
                        emit(app, id, "cannot create tenant key version 1", r);
                        return r;
                }
                if (r > 0)
                        emit(app, id, "created tenant key version 1", 0);
        }
        return 0;
}

/* The first key snapshot, creating version 1 for every tenant that has none yet. */
static int load_keys(struct kh_app *app, struct kh_keys **ret) {
        unsigned flags = app->cfg->sign_unsigned_deks ? KH_KEYS_SIGN_UNSIGNED : 0;
        struct kh_keys_failure failed = { 0 };
        struct kh_keys *keys = NULL;
        int r;

        if (!app->keystore) {
                /* sealed: the versions and states only, for key status and /health */
                r = kh_app_snapshot_locked(app, 0, &keys, &failed);
                if (r < 0) {
                        emit_load_failure(app, &failed, r);
                        return r;
                }
                *ret = keys;
                return 0;
        }
        r = kh_app_first_versions_locked(app);
        if (r < 0)
                return r;
        /* each round creates the first version of one more tenant, at most: only when
         * another replica's start raced this one's */
        for (size_t round = 0; round <= app->n_tenants; round++) {
                r = kh_app_snapshot_locked(app, flags, &keys, &failed);
                if (r != -ENOENT)
                        break;
                r = tenant_first_version(app, app->store, app->tenants[failed.tenant].id);
                if (r < 0)
                        break;
                if (r > 0)
                        emit(app, app->tenants[failed.tenant].id, "created tenant key version 1",
                             0);
                r = -ENOENT;
        }
        if (r < 0) {
                emit_load_failure(app, &failed, r);
                return r;
        }
        for (size_t i = 0; i < app->n_tenants; i++)
                if (!keys->tenants[i].active && !kh_tenant_keys_killed(&keys->tenants[i])) {
                        emit(app, app->tenants[i].id, "cannot load tenant keys: no active version",
                             -KH_E_NOT_READY);
                        kh_keys_unref(keys);
                        return -KH_E_NOT_READY;
                }
        *ret = keys;
        return 0;
}

/* start_sealed()'s reasons */
#define SEALED_ON_PURPOSE 1
#define SEALED_NO_SECRET  2

/* Whether the server starts sealed: an operator sealed it (the seal persists across
 * restarts, DESIGN.md "Administration"), or the key store has no secret configured (the
 * file store no master key or passphrase, the pkcs11 store no PIN). */
bool kh_app_keystore_has_secret(const struct kh_app *app) {
        const struct kh_config_keystore *ks = &app->cfg->keystore;

        if (strcmp(ks->driver, "file") == 0 && !(ks->master_key_file && ks->master_key_file[0]) &&
            !(ks->passphrase && ks->passphrase[0]))
                return false;
        if (strcmp(ks->driver, "pkcs11") == 0 && !(ks->pin_file && ks->pin_file[0]) &&
            !(ks->pin && ks->pin[0]))
                return false;         /* the PIN comes with `keyhold unseal` */
        return true;
}

/* A `keyhold backup restore --into-storage` loaded the database but did not put the key
 * store in place (killed meanwhile): serving would answer without the keys the records
 * need, so the operator finishes that restore first (docs/backup.md "PostgreSQL"). */
static int restore_pending(struct kh_app *app) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        int r;

        kh_buf_init(&v, KH_STORE_META_VALUE_MAX, false);
        r = kh_store_meta_get(app->store, KH_STORE_META_RESTORE_PENDING, &v);
        if (r == -ENOENT)
                return 0;
        if (r == 0) {
                r = -EBUSY;
                emit(app, NULL,
                     "the database holds a `keyhold backup restore --into-storage` that did not "
                     "finish: run that command again (the same backup, --data and --config) "
                     "to finish it, then start keyholdd",
                     r);
                return r;
        }
        emit(app, NULL, "cannot read whether a restore of the database finished", r);
        return r;
}

static int start_sealed(struct kh_app *app) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        int r;

        kh_buf_init(&v, 16, false);
        r = kh_store_meta_get(app->store, KH_META_SEALED, &v);
        if (r == 0 && v.len == 1 && v.data[0] == '1')
                return SEALED_ON_PURPOSE;
        if (r < 0 && r != -ENOENT)
                return r;
        if (!kh_app_keystore_has_secret(app))
                return SEALED_NO_SECRET;
        return 0;
}

/* The key store drivers a migration record may name; the audit event's target must live
 * as long as the program. */
static const char *driver_literal(const char *name) {
        static const char *const known[] = { "file", "pkcs11" };

        for (size_t i = 0; i < KH_ELEMENTSOF(known); i++)
                if (strcmp(known[i], name) == 0)
                        return known[i];
        return "keystore";
}

/* A `keyhold keystore migrate` ran offline: it could not append to the chains (each is
 * continued only by the server that holds its head), so it left a marker per tenant, which
 * becomes one record per moved version here, with the marker rewritten as audited in the
 * same transaction: each migration is recorded exactly once. */
static int audit_migration(struct kh_app *app, const struct kh_tenant *t) {
        struct kh_audit_event ev[KH_KEY_VERSIONS_MAX];
        struct kh_ksmigrate_marker m;
        char actor[32];
        int r;

        r = kh_ksmigrate_marker_get(app->store, t->id, &m);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (m.finished == 0 || m.audited)
                return 0;
        (void) snprintf(actor, sizeof(actor), "local:uid=%" PRIu32, m.uid);
        for (size_t i = 0; i < m.n; i++) {
                ev[i] = (struct kh_audit_event) { .time_ms = kh_audit_now_ms(),
                                                  .chain = (uint32_t) t->index,
                                                  .key_version = m.versions[i], .count = 1,
                                                  .action = KH_KSMIGRATE_ACTION, .outcome = "ok",
                                                  .target = driver_literal(m.to) };
                KH_AUDIT_SET(ev[i].actor, actor);
                KH_AUDIT_SET(ev[i].client, "local");
        }
        m.audited = true;
        r = kh_store_tx_begin(app->store);
        if (r < 0)
                return r;
        r = kh_auditor_tx_append(app->auditor, app->store, ev, m.n);
        if (r >= 0)
                r = kh_ksmigrate_marker_put(app->store, &m);
        if (r >= 0)
                r = kh_store_tx_commit(app->store);
        if (r < 0)
                kh_store_tx_rollback(app->store);
        kh_auditor_tx_end(app->auditor, r >= 0);
        return r;
}

/* A keystore migrate that was interrupted leaves DEKs of both key stores, which neither
 * configuration loads: say why before the load fails. */
static void migration_hints(struct kh_app *app) {
        for (size_t i = 0; i < app->n_tenants; i++) {
                struct kh_ksmigrate_marker m;

                if (kh_ksmigrate_marker_get(app->store, app->tenants[i].id, &m) == 0 &&
                    m.finished == 0)
                        emit(app, app->tenants[i].id,
                             "a `keyhold keystore migrate` of this tenant did not finish: stop "
                             "keyholdd and run it again",
                             0);
        }
}

/* Opens one of the tenant's issuers into slot unless it is open already. */
static int open_issuer(struct kh_tenant *t, struct kh_issuer *_Atomic *slot, const char *url,
                       const char *ca, const char *jwks_file) {
        struct kh_claim_matcher admins[KH_ADMIN_MATCHERS_MAX], approvers[KH_ADMIN_MATCHERS_MAX];
        struct kh_issuer *issuer = NULL;
        const struct kh_config_tenant *tc = t->config;
        struct kh_issuer_config ic = {
                .tenant = t->id,
                .issuer_url = url,
                .issuer_ca = ca,
                .audience = tc->audience && *tc->audience ? tc->audience : NULL,
                .jwks_file = jwks_file,
                .max_lifetime_s = tc->max_token_lifetime_s,
                .refresh_interval_s = tc->jwks_refresh_s,
                /* Bitwarden sends scope as an array and answers 403 to a string (spec 3.3) */
                .scope_array_only = !tc->accept_scope_string,
                .admins = admins,
                .n_admins = tc->n_admins,
                .approvers = approvers,
                .n_approvers = tc->n_approvers,
        };
        int r;

        if (atomic_load_explicit(slot, memory_order_acquire))
                return 0;
        for (size_t i = 0; i < tc->n_admins; i++)
                admins[i] = (struct kh_claim_matcher) { tc->admins[i].claim, tc->admins[i].value };
        for (size_t i = 0; i < tc->n_approvers; i++)
                approvers[i] = (struct kh_claim_matcher) { tc->approvers[i].claim,
                                                           tc->approvers[i].value };
        r = kh_issuer_open(&ic, &issuer);
        if (r < 0)
                return r;
        atomic_store_explicit(slot, issuer, memory_order_release);
        return 0;
}

/* The tenant's issuer, and its admin_issuer if it has one (a company IdP for admin tokens
 * only, always through discovery). */
static int tenant_open_issuer(struct kh_tenant *t) {
        const struct kh_config_tenant *tc = t->config;
        int r;

        r = open_issuer(t, &t->issuer, tc->issuer, tc->issuer_ca, tc->jwks_file);
        if (r >= 0 && tc->admin_issuer)
                r = open_issuer(t, &t->admin_issuer, tc->admin_issuer, tc->admin_issuer_ca, NULL);
        return r;
}

static bool tenant_issuers_open(const struct kh_tenant *t) {
        return atomic_load(&t->issuer) && (!t->config->admin_issuer || atomic_load(&t->admin_issuer));
}

/* The start-up log line for an issuer that could not be loaded: what to check. */
static const char *issuer_failure(int r) {
        switch (r) {
        case -EKEYREJECTED:
                return "issuer's TLS certificate not trusted (it must chain to issuer_ca if set, "
                       "else to a system CA) or TLS handshake failed; retrying in the background";
        case -EPROTO:
                return "issuer answered with an HTTP error; retrying in the background";
        case -EBADMSG:
                return "issuer's discovery document or JWKS is malformed; retrying in the "
                       "background";
        default:
                return "issuer not reachable yet; retrying in the background";
        }
}

/* Issuers that were unreachable at start-up are retried here, so keyholdd comes up (and
 * reports 503 on /health) instead of failing while the identity server restarts. */
static void *issuer_retry(void *userdata) {
        struct kh_app *app = userdata;

        while (!atomic_load(&app->stopping)) {
                bool missing = false;
                for (size_t i = 0; i < app->n_tenants; i++) {
                        struct kh_tenant *t = &app->tenants[i];
                        if (tenant_issuers_open(t))
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

/* app->node_id: "<host>/<pid>/<random>" */
static int make_node_id(struct kh_app *app) {
        char host[64] = "";
        uint32_t rnd;
        int r;

        r = kh_random_bytes(&rnd, sizeof(rnd));
        if (r < 0)
                return r;
        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
                (void) snprintf(host, sizeof(host), "host");
        (void) snprintf(app->node_id, sizeof(app->node_id), "%s/%ld/%08" PRIx32, host,
                        (long) getpid(), rnd);
        return 0;
}

int kh_app_open(const struct kh_config *cfg, kh_app_event_fn event, void *userdata,
                struct kh_app **ret) {
        KH_CLEANUP(kh_app_closep) struct kh_app *app = NULL;
        struct kh_keys *keys = NULL;
        uint64_t epoch = 0;
        bool missing = false;
        char why[400];
        int r;

        if (cfg->n_tenants == 0 || cfg->n_tenants > KH_TENANTS_MAX)
                return -EINVAL;
        app = calloc(1, sizeof(*app));
        if (!app)
                return -ENOMEM;
        app->cfg = cfg;
        app->lock_fd = -1;
        {
                pthread_rwlockattr_t attr;

                pthread_rwlockattr_init(&attr);
                (void) pthread_rwlockattr_setkind_np(&attr,
                                                     PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
                pthread_rwlock_init(&app->reload_lock, &attr);
                pthread_rwlockattr_destroy(&attr);
        }
        pthread_mutex_init(&app->lifecycle_lock, NULL);
        pthread_mutex_init(&app->counts_lock, NULL);
        app->event = event;
        app->userdata = userdata;
        app->tenants = calloc(cfg->n_tenants, sizeof(*app->tenants));
        app->counts = calloc(cfg->n_tenants, sizeof(*app->counts));
        app->recovery = calloc(cfg->n_tenants, sizeof(*app->recovery));
        if (!app->tenants || !app->counts || !app->recovery)
                return -ENOMEM;
        app->n_tenants = cfg->n_tenants;
        r = make_node_id(app);
        if (r < 0)
                return r;
        app->db_exclusive = cfg->storage.driver && strcmp(cfg->storage.driver, "sqlite") == 0;
        r = kh_store_lock(&cfg->storage, false, &app->lock_fd);
        if (r == -EWOULDBLOCK) {
                emit(app, NULL,
                     "cannot open the database: `keyhold keystore migrate` is moving its keys; "
                     "start keyholdd once it has finished",
                     -EBUSY);
                return -EBUSY;
        }
        if (r < 0) {
                emit(app, NULL, "cannot take the lock file beside the database", r);
                return r;
        }
        r = kh_store_open_explained(&cfg->storage, &app->store, why, sizeof(why));
        if (r < 0 && why[0]) {
                emit(app, NULL, why, r);
                return r;
        }
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
        }
        r = restore_pending(app);
        if (r < 0)
                return r;
        /* nothing builds a backup yet: whatever one left is from a process that died */
        r = kh_service_backup_leftovers_remove(&cfg->storage);
        if (r > 0)
                emit(app, NULL, "removed what an interrupted backup left beside the database", 0);
        r = start_sealed(app);
        if (r < 0) {
                emit(app, NULL, "cannot read whether the server was sealed", r);
                return r;
        }
        if (r > 0) {
                atomic_store(&app->sealed, true);
                emit(app, NULL, r == SEALED_NO_SECRET
                                        ? "starting sealed: the key store has no secret "
                                          "configured; unseal with `keyhold unseal`"
                                        : "starting sealed: an operator sealed this server; "
                                          "unseal with `keyhold unseal`",
                     0);
        } else {
                struct kh_config_keystore kcfg = cfg->keystore;
                char detail[256], what[320];

                kcfg.threads = KH_APP_KEYSTORE_THREADS;
                r = kh_keystore_open_detail(&kcfg, &app->keystore, detail, sizeof(detail));
                if (r < 0) {
                        /* the detail names a call or setting (an HSM's "C_Login:
                         * CKR_PIN_INCORRECT"), never a secret */
                        (void) snprintf(what, sizeof(what), "cannot open the key store%s%s",
                                        detail[0] ? ": " : "", detail);
                        emit(app, NULL, what, r);
                        return r;
                }
        }
        migration_hints(app);
        /* read before the keys: a change between the two is taken in by the key watch */
        r = kh_store_key_epoch(app->store, &epoch);
        if (r < 0) {
                emit(app, NULL, "cannot read the key epoch", r);
                return r;
        }
        r = load_keys(app, &keys);
        if (r < 0)
                return r;
        r = kh_keyring_new(KH_THREADS_MAX, keys, &app->keyring);
        if (r < 0) {
                kh_keys_unref(keys);
                return r;
        }
        for (size_t i = 0; i < cfg->n_tenants; i++) {
                struct kh_tenant *t = &app->tenants[i];
                r = tenant_open_issuer(t);
                if (r < 0) {
                        emit(app, t->id, issuer_failure(r), r);
                        missing = true;
                }
        }

        {
                const char *ids[KH_TENANTS_MAX];

                for (size_t i = 0; i < cfg->n_tenants; i++)
                        ids[i] = app->tenants[i].id;
                r = kh_auditor_new(cfg, ids, cfg->n_tenants, &app->keystore, &app->reload_lock,
                                   &app->auditor);
                if (r == -EADDRINUSE) {
                        emit(app, NULL, "[server] replica: another keyholdd with this replica "
                                        "name is running on this database (each replica "
                                        "needs a name of its own: docs/audit.md \"Replicas\")",
                             r);
                        return r;
                }
                if (r < 0) {
                        emit(app, NULL, "cannot open the audit log", r);
                        return r;
                }
        }
        for (size_t i = 0; i < cfg->n_tenants; i++) {
                r = audit_migration(app, &app->tenants[i]);
                if (r < 0) {
                        emit(app, app->tenants[i].id, "cannot record the key store migration "
                                                      "in the audit chain", r);
                        return r;
                }
        }

        r = kh_jobs_new(KH_APP_JOB_THREADS, APP_JOB_QUEUE, &app->jobs);
        if (r < 0)
                return r;
        r = kh_reencrypt_start(app, &app->reencrypt);
        if (r < 0) {
                emit(app, NULL, "cannot start the re-encryption job", r);
                return r;
        }

        r = kh_keywatch_start(app, epoch, &app->keywatch);
        if (r < 0) {
                emit(app, NULL, "cannot start watching for other replicas' key state changes", r);
                return r;
        }
        r = kh_ks_monitor_start(app);
        if (r < 0)
                return r;
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
        kh_keywatch_stop(app->keywatch);  /* before what it changes (seal, keys, the job) */
        kh_ks_monitor_stop(app);
        /* the running jobs end before what they use (the key store, the config) goes */
        kh_jobs_free(app->jobs);
        for (size_t i = 0; i < app->n_tenants; i++) {
                struct kh_tenant *t = &app->tenants[i];
                kh_issuer_close(atomic_load(&t->issuer));
                kh_issuer_close(atomic_load(&t->admin_issuer));
        }
        kh_reencrypt_stop(app->reencrypt);
        kh_auditor_free(app->auditor);
        kh_keyring_free(app->keyring);
        pthread_rwlock_destroy(&app->reload_lock);
        pthread_mutex_destroy(&app->lifecycle_lock);
        pthread_mutex_destroy(&app->counts_lock);
        free(app->counts);
        for (size_t i = 0; app->recovery && i < app->n_tenants; i++)
                free(app->recovery[i].der);
        free(app->recovery);
        free(app->tenants);
        kh_store_close(app->store);
        kh_keystore_close(app->keystore);
        if (app->lock_fd >= 0)
                (void) close(app->lock_fd);  /* after the database: its users are gone */
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

struct kh_auditor *kh_app_auditor(const struct kh_app *app) {
        return app->auditor;
}

struct kh_keyring *kh_app_keyring(const struct kh_app *app) {
        return app->keyring;
}

struct kh_jobs *kh_app_jobs(const struct kh_app *app) {
        return app->jobs;
}

bool kh_app_sealed(const struct kh_app *app) {
        return atomic_load(&((struct kh_app *) (uintptr_t) app)->sealed);
}

bool kh_app_keystore_unavailable(const struct kh_app *app) {
        return atomic_load(&((struct kh_app *) (uintptr_t) app)->ks_unavailable);
}

int kh_app_reload_keys(struct kh_app *app) {
        struct kh_keys_failure failed;
        struct kh_keys *keys = NULL;
        int r;

        /* never signs: --sign-unsigned-deks vouches for the database as it was at start */
        pthread_rwlock_wrlock(&app->reload_lock);
        r = kh_app_snapshot_locked(app, 0, &keys, &failed);
        /* under the lock: two reloads publish in the order they read */
        if (r >= 0)
                kh_keyring_publish(app->keyring, keys);
        pthread_rwlock_unlock(&app->reload_lock);
        return r < 0 ? r : 0;
}

void kh_app_note_storage_full(struct kh_app *app, bool full) {
        /* read first: the common case (no change) then writes no shared cache line */
        if (atomic_load_explicit(&app->storage_full, memory_order_relaxed) != full)
                atomic_store_explicit(&app->storage_full, full, memory_order_relaxed);
}

bool kh_app_storage_full(const struct kh_app *app) {
        return atomic_load_explicit(&app->storage_full, memory_order_relaxed);
}

const struct kh_tenant *kh_app_issuer_waiting(const struct kh_app *app) {
        for (size_t i = 0; i < app->n_tenants; i++) {
                const struct kh_tenant *t = &app->tenants[i];
                struct kh_issuer *issuer = atomic_load(&t->issuer);
                struct kh_issuer *admin = atomic_load(&t->admin_issuer);
                if (!issuer || !kh_issuer_has_keys(issuer) ||
                    (t->config->admin_issuer && (!admin || !kh_issuer_has_keys(admin))))
                        return t;
        }
        return NULL;
}

bool kh_app_issuers_ready(const struct kh_app *app) {
        return !kh_app_issuer_waiting(app);
}

int kh_app_backup_key(struct kh_app *app, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                      struct kh_secret **ret) {
        int r;

        pthread_rwlock_rdlock(&app->reload_lock); /* backup_key may run beside others */
        r = !app->keystore                          ? -KH_E_SEALED
            : atomic_load(&app->ks_unavailable) ? -KH_E_KEYSTORE_UNAVAILABLE
                                                : kh_keystore_backup_key(app->keystore, salt, ret);
        pthread_rwlock_unlock(&app->reload_lock);
        return r;
}

int kh_app_backup_meta(struct kh_app *app, const struct kh_key_ref *refs, size_t n,
                       struct kh_buf *out) {
        int r;

        pthread_rwlock_rdlock(&app->reload_lock);
        r = app->keystore ? kh_keystore_backup_meta(app->keystore, refs, n, out) : -KH_E_SEALED;
        pthread_rwlock_unlock(&app->reload_lock);
        return r;
}

static int64_t monotonic_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int kh_app_record_counts(struct kh_app *app, struct kh_store *store, const struct kh_tenant *t,
                         const uint32_t *versions, size_t n, uint64_t *ret) {
        struct kh_record_counts *c = &app->counts[t->index];
        int64_t now = monotonic_ms();
        bool hit;
        int r;

        if (n > KH_KEY_VERSIONS_MAX)
                return -EINVAL;
        pthread_mutex_lock(&app->counts_lock);
        hit = c->at_ms && c->rows >= KH_RECORD_COUNTS_LARGE &&
              now - c->at_ms < KH_RECORD_COUNTS_TTL_MS && c->n == n &&
              memcmp(c->version, versions, n * sizeof(*versions)) == 0;
        if (hit)
                memcpy(ret, c->records, n * sizeof(*ret));
        pthread_mutex_unlock(&app->counts_lock);
        if (hit)
                return 0;

        /* counted outside the lock: another worker asking meanwhile counts too, rather than
         * stall its loop behind this one */
        for (size_t i = 0; i < n; i++) {
                r = kh_store_record_count(store, t->id, versions[i], &ret[i]);
                if (r < 0)
                        return r;
        }
        pthread_mutex_lock(&app->counts_lock);
        c->at_ms = monotonic_ms();
        c->rows = 0;
        for (size_t i = 0; i < n; i++)
                c->rows += ret[i];
        c->n = n;
        memcpy(c->version, versions, n * sizeof(*versions));
        memcpy(c->records, ret, n * sizeof(*ret));
        pthread_mutex_unlock(&app->counts_lock);
        return 0;
}
