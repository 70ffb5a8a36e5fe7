/* The application state every worker shares: the tenants with their issuers, the tenant
 * key snapshot (keyring.h: versions, states, unwrapped DEKs) and the storage configuration
 * each worker opens its own connection with. The tenant table is built once at start-up
 * (kh_app_open) and never changes; key state changes (rekey, revoke, seal, a replica's
 * refresh) publish a new key snapshot through the keyring. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/limits.h"
#include "common/secret.h"
#include "config/config.h"
#include "keystore/keystore.h"
#include "service/keyring.h"
#include "store/store.h"

struct kh_app;
struct kh_issuer;

struct kh_tenant {
        char id[KH_TENANT_ID_MAX + 1];
        size_t index;                          /* position in the app's tenant table, and
                                                * in every key snapshot */
        const struct kh_config_tenant *config; /* borrowed from the app's config */
        struct kh_issuer *_Atomic issuer;      /* NULL until discovery succeeded */
        struct kh_issuer *_Atomic admin_issuer;/* [tenant.*] admin_issuer: NULL when there is
                                                * none, or until its discovery succeeded */
};

/* Progress and failures of start-up, for the daemon to log. */
typedef void (*kh_app_event_fn)(const char *tenant, const char *what, int r, void *userdata);

/**
 * kh_app_open() - opens the key store and the database, makes sure every tenant has an
 * active key version with exactly one DEK (creating version 1 with an atomic
 * insert-if-absent on an empty database, so replicas starting at once agree), publishes
 * the first key snapshot (DEKs unwrapped into locked memory) and opens each tenant's
 * issuer (retried in the background while the issuer is unreachable).
 * @cfg: borrowed for the app's lifetime.
 * Returns 0, or a negative error with the reason given through @event.
 */
KH_MUST_CHECK int kh_app_open(const struct kh_config *cfg, kh_app_event_fn event, void *userdata,
                              struct kh_app **ret);
struct kh_app *kh_app_close(struct kh_app *app); /* wipes DEKs; NULL-safe */
KH_DEFINE_CLEANUP(kh_app_close, struct kh_app *)

const struct kh_config *kh_app_config(const struct kh_app *app);
size_t kh_app_n_tenants(const struct kh_app *app);
const struct kh_tenant *kh_app_tenant_at(const struct kh_app *app, size_t i);

/* The tenant named id[0..len), or the "default" tenant when id is NULL. NULL if none. */
const struct kh_tenant *kh_app_tenant(const struct kh_app *app, const char *id, size_t len);

/* Whether the server is sealed (lifecycle.h): no key store secret and no DEK in memory. */
bool kh_app_sealed(const struct kh_app *app);

/* Whether the key store is gone while serving (keystore-monitor.h): what needs the token
 * answers -KH_E_KEYSTORE_UNAVAILABLE until the monitor has reconnected. Any thread. */
bool kh_app_keystore_unavailable(const struct kh_app *app);

/* The meta key (store.h) whose value "1" means the server was sealed on purpose and must
 * start sealed. */
#define KH_META_SEALED "keyhold.sealed"

/**
 * kh_app_record_counts() - how many records of tenant t are sealed under each of
 * versions[0..n) (n <= KH_KEY_VERSIONS_MAX), into ret[0..n): counted with @store, or, when
 * the last count walked KH_RECORD_COUNTS_LARGE records or more, the count of the same versions
 * any worker made less than a second ago. A count walks every record of a version (80 ms for a million, on a
 * worker's loop), and `key rekey --wait` polls key status twice a second; a small tenant's
 * counts are always exact. Returns 0 or an error of kh_store_record_count().
 */
KH_MUST_CHECK int kh_app_record_counts(struct kh_app *app, struct kh_store *store,
                                       const struct kh_tenant *t, const uint32_t *versions,
                                       size_t n, uint64_t *ret);

/* The audit chains (audit.h). */
struct kh_auditor *kh_app_auditor(const struct kh_app *app);

/* The tenant key snapshots; readers are the worker loops, by worker index. */
struct kh_keyring *kh_app_keyring(const struct kh_app *app);

/**
 * kh_app_reload_keys() - reads every tenant's key versions and states from the database
 * again and publishes them as the new snapshot: how a replica takes in a key state change
 * (rekey, revoke, seal) that another replica made. Blocks on the database and the key
 * store: call it from a job or a timer thread, never from a loop. Calls are serialised.
 * Returns 0, or an error of kh_keys_load() (the current snapshot then stays).
 */
KH_MUST_CHECK int kh_app_reload_keys(struct kh_app *app);

/* The key state of tenant t in snapshot k. */
static inline const struct kh_tenant_keys *kh_tenant_keys(const struct kh_keys *k,
                                                          const struct kh_tenant *t) {
        return &k->tenants[t->index];
}

/* True once every tenant's issuer has signing keys loaded. Any thread. */
bool kh_app_issuers_ready(const struct kh_app *app);

/* The first tenant whose issuer (or admin_issuer) has no signing keys loaded yet, or NULL
 * when every one has. Any thread. */
const struct kh_tenant *kh_app_issuer_waiting(const struct kh_app *app);

/* Whether the last write to the database failed for lack of space (set by any worker whose
 * write got -ENOSPC, cleared by the next write that succeeds): /health is then not ready,
 * so that a balancer sends writes elsewhere while reads would still work. */
void kh_app_note_storage_full(struct kh_app *app, bool full);
bool kh_app_storage_full(const struct kh_app *app);

/* The app's job pool (common/jobs.h): 2 threads, a queue of 64, for work that must not run
 * on a loop (backups, ...). Created by kh_app_open(), stopped and freed by kh_app_close(). */
struct kh_jobs *kh_app_jobs(const struct kh_app *app);

/**
 * kh_app_backup_key() - the key that seals a backup made with salt (kh_keystore_backup_key()
 * of the app's key store, which it holds for the call). Blocks on the key store: call it
 * from a job, never from a loop. On success *ret is a new secret the caller frees. Returns
 * 0, -KH_E_SEALED or an error of kh_keystore_backup_key().
 */
KH_MUST_CHECK int kh_app_backup_key(struct kh_app *app,
                                    const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                    struct kh_secret **ret);

/* kh_keystore_backup_meta() of the app's key store, which it holds for the call (same
 * rules). Returns 0, -KH_E_SEALED or an error of kh_keystore_backup_meta(). */
KH_MUST_CHECK int kh_app_backup_meta(struct kh_app *app, const struct kh_key_ref *refs, size_t n,
                                     struct kh_buf *out);
