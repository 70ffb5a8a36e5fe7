#include "lifecycle.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "common/errors.h"
#include "crypto/random.h"
#include "keystore/keystore.h"
#include "service/app-internal.h"
#include "service/keyring.h"
#include "service/reencrypt.h"

/* ---- the versions as the database has them now ---- */

struct row {
        uint32_t version;
        enum kh_key_state state, prior;
};

struct rows {
        size_t n;
        struct row v[KH_KEY_VERSIONS_MAX];
};

static int add_row(const struct kh_tenant_key *key, void *userdata) {
        struct rows *rows = userdata;

        if (rows->n == KH_KEY_VERSIONS_MAX)
                return -E2BIG;
        rows->v[rows->n++] = (struct row) { key->version, key->state, key->prior_state };
        return 0;
}

/* Reads t's versions. Caller holds reload_lock (the app's connection). */
static int read_rows(struct kh_app *app, const struct kh_tenant *t, struct rows *rows) {
        rows->n = 0;
        return kh_store_tenant_keys(app->store, t->id, add_row, rows);
}

static const struct row *find_row(const struct rows *rows, uint32_t version) {
        for (size_t i = 0; i < rows->n; i++)
                if (rows->v[i].version == version)
                        return &rows->v[i];
        return NULL;
}

/* Publishes what the database holds now. Caller holds reload_lock. */
static int publish_locked(struct kh_app *app) {
        struct kh_keys_failure failed;
        struct kh_keys *keys = NULL;
        int r = kh_app_snapshot_locked(app, 0, &keys, &failed);

        if (r < 0)
                return r;
        kh_keyring_publish(app->keyring, keys);
        return 0;
}

/* The common frame of an operation on one tenant: one at a time, not while sealed, the
 * database read under reload_lock; after a change, the snapshot published and every worker
 * past it. */
struct op {
        struct kh_app *app;
        const struct kh_tenant *t;
        struct rows rows;
        bool changed;
};

static int op_begin(struct op *op, struct kh_app *app, const struct kh_tenant *t) {
        int r;

        *op = (struct op) { .app = app, .t = t };
        pthread_mutex_lock(&app->lifecycle_lock);
        pthread_rwlock_wrlock(&app->reload_lock);
        if (atomic_load(&app->sealed))
                return -KH_E_SEALED;
        /* every change publishes a snapshot, which the token must unwrap */
        if (atomic_load(&app->ks_unavailable))
                return -KH_E_KEYSTORE_UNAVAILABLE;
        r = read_rows(app, t, &op->rows);
        return r == -E2BIG ? -KH_E_TOO_MANY_VERSIONS : r;
}

/* Ends op: publishes when it changed something (r is then the operation's answer unless
 * publishing failed, which leaves the previous snapshot: the change is still in the
 * database and is published by the next change or start). */
static int op_end(struct op *op, int r) {
        struct kh_app *app = op->app;

        if (op->changed) {
                int p = publish_locked(app);
                if (r >= 0 && p < 0)
                        r = p;
        }
        pthread_rwlock_unlock(&app->reload_lock);
        if (op->changed)
                kh_keyring_synchronize(app->keyring);
        pthread_mutex_unlock(&app->lifecycle_lock);
        return r;
}

/* op_begin() for an operation on one version: *ret is its row. */
static int op_begin_version(struct op *op, struct kh_app *app, const struct kh_tenant *t,
                            uint32_t version, const struct row **ret) {
        int r = op_begin(op, app, t);

        if (r < 0)
                return r;
        *ret = find_row(&op->rows, version);
        return *ret ? 0 : -KH_E_VERSION_NOT_FOUND;
}

static int update(struct op *op, uint32_t version, enum kh_key_state from, enum kh_key_state to,
                  enum kh_key_state prior) {
        int r = kh_store_tenant_key_update(op->app->store, op->t->id, version, from, to, prior);

        if (r == 0)
                op->changed = true;
        /* another replica changed it between our read and this write */
        return r == -ENOENT ? -KH_E_INVALID_STATE : r;
}

/* ---- rekey ---- */

/* Whether records still wait under an archived version (the last job is not done). */
static int records_to_move(struct op *op, bool *ret) {
        *ret = false;
        for (size_t i = 0; i < op->rows.n; i++) {
                uint64_t n;
                int r;

                if (op->rows.v[i].state != KH_KEY_ARCHIVED)
                        continue;
                r = kh_store_record_count(op->app->store, op->t->id, op->rows.v[i].version, &n);
                if (r < 0)
                        return r;
                if (n > 0) {
                        *ret = true;
                        return 0;
                }
        }
        return 0;
}

/* The new version's key in the key store and its DEK, wrapped and signed. */
static int new_version_material(struct kh_app *app, const char *tenant, uint32_t version,
                                unsigned rsa_bits, struct kh_buf *wrapped, struct kh_buf *sig) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_key_spec spec = { .tenant = tenant, .version = version, .rsa_bits = rsa_bits,
                                    .purpose = KH_KEY_DATA, .alg = KH_KEY_ALG_RSA };
        struct kh_key_ref ref = { .version = version, .purpose = KH_KEY_DATA };
        int r;

        r = kh_keystore_generate(app->keystore, &spec, &ref);
        if (r == -EEXIST)
                /* a rekey that died before its row made it: this one uses it */
                (void) snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
        else if (r < 0)
                return r;
        r = kh_random_secret(KH_DEK_LEN, &dek);
        if (r < 0)
                return r;
        r = kh_keystore_wrap(app->keystore, &ref, dek, wrapped);
        if (r < 0)
                return r;
        return kh_dek_sign(app->keystore, tenant, version, wrapped->data, wrapped->len, sig);
}

/* In one transaction: the active version archived (and a revoked one that was active will
 * come back archived), the new version active. */
static int switch_active(struct op *op, uint32_t version, const struct kh_buf *wrapped,
                         const struct kh_buf *sig) {
        struct kh_store *s = op->app->store;
        int r;

        r = kh_store_tx_begin(s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < op->rows.n && r >= 0; i++) {
                const struct row *v = &op->rows.v[i];
                if (v->state == KH_KEY_ACTIVE)
                        r = kh_store_tenant_key_update(s, op->t->id, v->version, KH_KEY_ACTIVE,
                                                       KH_KEY_ARCHIVED, 0);
                else if (v->state == KH_KEY_REVOKED && v->prior == KH_KEY_ACTIVE)
                        r = kh_store_tenant_key_update(s, op->t->id, v->version, KH_KEY_REVOKED,
                                                       KH_KEY_REVOKED, KH_KEY_ARCHIVED);
        }
        if (r >= 0) {
                r = kh_store_tenant_key_insert_if_absent(s, op->t->id, version, KH_KEY_ACTIVE,
                                                         wrapped->data, wrapped->len, sig->data,
                                                         sig->len);
                if (r == 0)
                        r = -KH_E_INVALID_STATE;  /* another replica made this version */
        }
        if (r >= 0)
                r = kh_store_tx_commit(s);
        if (r < 0) {
                kh_store_tx_rollback(s);
                return r == -ENOENT ? -KH_E_INVALID_STATE : r;
        }
        op->changed = true;
        return 0;
}

int kh_key_rekey(struct kh_app *app, const struct kh_tenant *t, unsigned rsa_bits,
                 struct kh_key_change *ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 }, sig = { 0 };
        struct kh_job_progress job;
        uint32_t version = 0;
        bool pending = false;
        struct op op;
        int r;

        /* rsa-3072 or rsa-4096 by name; [keystore] rsa_bits (2048..8192) by default */
        if (rsa_bits < KH_RSA_BITS_MIN || rsa_bits > KH_RSA_BITS_MAX || rsa_bits % 1024 != 0)
                return -KH_E_INVALID_ALGORITHM;
        r = op_begin(&op, app, t);
        if (r < 0)
                return op_end(&op, r);
        if (op.rows.n >= KH_KEY_VERSIONS_MAX)
                return op_end(&op, -KH_E_TOO_MANY_VERSIONS);
        kh_reencrypt_progress(app->reencrypt, t->index, &job);
        r = records_to_move(&op, &pending);
        if (r < 0)
                return op_end(&op, r);
        if (pending || job.state == KH_JOB_RUNNING)
                return op_end(&op, -KH_E_JOB_RUNNING);
        for (size_t i = 0; i < op.rows.n; i++)
                if (op.rows.v[i].version > version)
                        version = op.rows.v[i].version;
        if (version == UINT32_MAX)
                return op_end(&op, -KH_E_TOO_MANY_VERSIONS);
        version++;

        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
        r = new_version_material(app, t->id, version, rsa_bits, &wrapped, &sig);
        if (r >= 0)
                r = switch_active(&op, version, &wrapped, &sig);
        r = op_end(&op, r);
        if (r < 0)
                return r;
        kh_reencrypt_begin(app->reencrypt, t->index, version);
        *ret = (struct kh_key_change) { version, KH_KEY_ACTIVE };
        return 0;
}

/* ---- retire, destroy, revoke, reinstate ---- */

int kh_key_retire(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                  struct kh_key_change *ret, uint64_t *ret_records) {
        const struct row *v;
        struct op op;
        uint64_t n = 0;
        int r;

        *ret_records = 0;
        r = op_begin_version(&op, app, t, version, &v);
        if (r < 0)
                return op_end(&op, r);
        switch (v->state) {
        case KH_KEY_RETIRED:
                break;
        case KH_KEY_ACTIVE:
                return op_end(&op, -KH_E_LAST_ACTIVE);
        case KH_KEY_ARCHIVED:
        case KH_KEY_REVOKED:
                /* the gate: the count and the state change are one transaction, so no move
                 * can land between them (a writer never seals under an archived version:
                 * every worker is past the rekey's snapshot, kh_key_rekey() waited). A
                 * revoked version retires too once nothing is under it: the leaked-key
                 * playbook revokes before it retires and destroys. */
                r = kh_store_tx_begin(app->store);
                if (r >= 0)
                        r = kh_store_record_count(app->store, t->id, version, &n);
                if (r >= 0 && n > 0)
                        r = -KH_E_RECORDS_REMAIN;
                if (r >= 0)
                        r = update(&op, version, v->state, KH_KEY_RETIRED, 0);
                if (r >= 0)
                        r = kh_store_tx_commit(app->store);
                if (r < 0) {
                        kh_store_tx_rollback(app->store);
                        op.changed = false;
                        *ret_records = n;
                        return op_end(&op, r);
                }
                break;
        default:
                return op_end(&op, -KH_E_INVALID_STATE);
        }
        *ret = (struct kh_key_change) { version, KH_KEY_RETIRED };
        return op_end(&op, 0);
}

int kh_key_destroy(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                   struct kh_key_change *ret) {
        struct kh_key_ref ref = { .version = version, .purpose = KH_KEY_DATA };
        const struct row *v;
        struct op op;
        int r;

        r = op_begin_version(&op, app, t, version, &v);
        if (r < 0)
                return op_end(&op, r);
        if (v->state != KH_KEY_DESTROYED) {
                if (v->state != KH_KEY_RETIRED)
                        return op_end(&op, -KH_E_NOT_RETIRED);
                /* the key first: a crash between leaves a retired row whose key is gone,
                 * which a second destroy finishes (the key store answers -ENOENT) */
                (void) snprintf(ref.tenant, sizeof(ref.tenant), "%s", t->id);
                r = kh_keystore_destroy(app->keystore, &ref);
                if (r < 0 && r != -ENOENT)
                        return op_end(&op, r);
                r = kh_store_tenant_key_destroy(app->store, t->id, version);
                if (r < 0)
                        return op_end(&op, r == -ENOENT ? -KH_E_INVALID_STATE : r);
                op.changed = true;
        }
        *ret = (struct kh_key_change) { version, KH_KEY_DESTROYED };
        return op_end(&op, 0);
}

int kh_key_revoke(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                  struct kh_key_change *ret) {
        const struct row *v;
        struct op op;
        int r;

        r = op_begin_version(&op, app, t, version, &v);
        if (r < 0)
                return op_end(&op, r);
        switch (v->state) {
        case KH_KEY_REVOKED:
                break;
        case KH_KEY_ACTIVE:
                return op_end(&op, -KH_E_LAST_ACTIVE);
        case KH_KEY_ARCHIVED:
                r = update(&op, version, KH_KEY_ARCHIVED, KH_KEY_REVOKED, KH_KEY_ARCHIVED);
                if (r < 0)
                        return op_end(&op, r);
                break;
        default:
                return op_end(&op, -KH_E_INVALID_STATE);
        }
        *ret = (struct kh_key_change) { version, KH_KEY_REVOKED };
        return op_end(&op, 0);
}

int kh_key_reinstate(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                     struct kh_key_change *ret) {
        enum kh_key_state to;
        const struct row *v;
        struct op op;
        int r;

        r = op_begin_version(&op, app, t, version, &v);
        if (r < 0)
                return op_end(&op, r);
        if (v->state != KH_KEY_REVOKED)
                return op_end(&op, -KH_E_NOT_REVOKED);
        to = v->prior == KH_KEY_ACTIVE ? KH_KEY_ACTIVE : KH_KEY_ARCHIVED;
        r = update(&op, version, KH_KEY_REVOKED, to, 0);
        if (r < 0)
                return op_end(&op, r);
        *ret = (struct kh_key_change) { version, to };
        r = op_end(&op, 0);
        if (r == 0)
                kh_reencrypt_wake(app->reencrypt); /* its records may move now */
        return r;
}

int kh_key_switch_all(struct kh_app *app, const struct kh_tenant *t, bool revoke,
                      struct kh_key_change *ret, size_t *ret_n) {
        struct op op;
        size_t n = 0;
        int r;

        *ret_n = 0;
        r = op_begin(&op, app, t);
        if (r < 0)
                return op_end(&op, r);
        r = kh_store_tx_begin(app->store);
        for (size_t i = 0; i < op.rows.n && r >= 0; i++) {
                const struct row *v = &op.rows.v[i];
                enum kh_key_state to;

                if (revoke && (v->state == KH_KEY_ACTIVE || v->state == KH_KEY_ARCHIVED)) {
                        r = update(&op, v->version, v->state, KH_KEY_REVOKED, v->state);
                        to = KH_KEY_REVOKED;
                } else if (!revoke && v->state == KH_KEY_REVOKED) {
                        to = v->prior == KH_KEY_ACTIVE ? KH_KEY_ACTIVE : KH_KEY_ARCHIVED;
                        r = update(&op, v->version, KH_KEY_REVOKED, to, 0);
                } else {
                        continue;
                }
                if (r >= 0)
                        ret[n++] = (struct kh_key_change) { v->version, to };
        }
        if (r >= 0)
                r = kh_store_tx_commit(app->store);
        if (r < 0) {
                kh_store_tx_rollback(app->store);
                op.changed = false;
                return op_end(&op, r);
        }
        *ret_n = n;
        r = op_end(&op, 0);
        if (r == 0 && !revoke)
                kh_reencrypt_wake(app->reencrypt);
        return r;
}

/* ---- seal, unseal ---- */

static int meta_sealed(struct kh_app *app, bool sealed) {
        return kh_store_meta_put(app->store, KH_META_SEALED, (const uint8_t *) (sealed ? "1" : "0"),
                                 1);
}

/* Seals this process; @record: writes the seal to the database first (an operator's seal),
 * else follows one another replica recorded (kh_app_follow_seal()). */
static int seal(struct kh_app *app, bool record) {
        int r = 0;

        pthread_mutex_lock(&app->lifecycle_lock);
        pthread_rwlock_wrlock(&app->reload_lock);
        if (atomic_load(&app->sealed))
                goto out;
        /* the record first: a seal must survive a crash right after it was answered */
        if (record)
                r = meta_sealed(app, true);
        if (r < 0)
                goto out;
        atomic_store(&app->sealed, true);
        app->keystore = kh_keystore_close(app->keystore);  /* wipes the master key */
        atomic_store(&app->ks_unavailable, false);         /* no store to be gone */
        r = publish_locked(app);                          /* the snapshot without DEKs */
out:
        pthread_rwlock_unlock(&app->reload_lock);
        /* every worker past the sealed snapshot: the last reference to the one with the
         * DEKs is gone, and they are wiped (the job drops its own between two batches) */
        if (r == 0)
                kh_keyring_synchronize(app->keyring);
        pthread_mutex_unlock(&app->lifecycle_lock);
        return r;
}

int kh_app_seal(struct kh_app *app) {
        return seal(app, true);
}

/* Opens the key store with cfg and publishes the snapshot with DEKs. @record: an operator's
 * unseal (first versions of new tenants made, the flag written to the database), else
 * following one another replica recorded (kh_app_follow_seal()). Returns 1 unsealed now, 0
 * it was not sealed, or an error. */
static int unseal(struct kh_app *app, struct kh_config_keystore *cfg, bool record) {
        struct kh_keystore *ks = NULL;
        int r;

        cfg->threads = KH_APP_KEYSTORE_THREADS;
        pthread_mutex_lock(&app->lifecycle_lock);
        if (!atomic_load(&app->sealed)) {
                pthread_mutex_unlock(&app->lifecycle_lock);
                return 0;
        }
        r = kh_keystore_open(cfg, &ks);
        if (r == -EACCES || r == -KH_E_PKCS11_PIN)
                r = -KH_E_WRONG_SECRET;  /* -KH_E_PKCS11_PIN_LOCKED stays: no PIN helps */
        /* the configured token is not there (an HSM that is gone): try again later */
        if (r == -KH_E_PKCS11_TOKEN)
                r = -KH_E_KEYSTORE_UNAVAILABLE;
        if (r < 0) {
                pthread_mutex_unlock(&app->lifecycle_lock);
                return r;
        }

        pthread_rwlock_wrlock(&app->reload_lock);
        app->keystore = ks;
        r = record ? kh_app_first_versions_locked(app) : 0;
        if (r >= 0)
                r = publish_locked(app);
        if (r >= 0 && record)
                r = meta_sealed(app, false);
        if (r < 0) {
                app->keystore = kh_keystore_close(app->keystore);
                (void) publish_locked(app);  /* the sealed snapshot again */
        } else {
                atomic_store(&app->sealed, false);
        }
        pthread_rwlock_unlock(&app->reload_lock);
        pthread_mutex_unlock(&app->lifecycle_lock);
        if (r >= 0)
                kh_reencrypt_wake(app->reencrypt);
        return r < 0 ? r : 1;
}

int kh_app_follow_seal(struct kh_app *app, bool sealed) {
        struct kh_config_keystore cfg = app->cfg->keystore;
        int r;

        if (sealed == atomic_load(&app->sealed))
                return 0;
        if (sealed) {
                r = seal(app, false);
                return r < 0 ? r : 1;
        }
        /* a replica without a configured secret waits for its own `keyhold unseal` */
        if (!kh_app_keystore_has_secret(app))
                return 0;
        return unseal(app, &cfg, false);  /* with the secret it was configured with */
}

int kh_app_unseal(struct kh_app *app, const struct kh_unseal_secret *secret) {
        struct kh_config_keystore cfg = app->cfg->keystore;
        int r;

        if ((secret->master_key != NULL) == (secret->passphrase != NULL))
                return -EINVAL;
        cfg.master_key = secret->master_key;
        cfg.master_key_file = NULL;
        cfg.passphrase = NULL;
        cfg.passphrase_secret = secret->passphrase;
        cfg.pin = NULL;          /* a pkcs11 store: the PIN is the secret given (pin_load()) */
        cfg.pin_file = NULL;
        r = unseal(app, &cfg, true);
        return r < 0 ? r : 0;
}

void kh_key_job_progress(struct kh_app *app, const struct kh_tenant *t,
                         struct kh_job_progress *ret) {
        kh_reencrypt_progress(app->reencrypt, t->index, ret);
}
