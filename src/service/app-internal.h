/* The application state's insides, for the files of service/ that change it (app.c, the
 * key lifecycle in lifecycle.c, the re-encryption job in reencrypt.c). Nothing outside
 * service/ includes this. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/jobs.h"
#include "service/app.h"

struct kh_reencrypt;
struct kh_keywatch;

/* A replica's name in the database (job leases): host, process and a random part, so that a
 * restarted process is never taken for the one that died. */
#define KH_APP_NODE_ID_MAX 96

/* The job pool's threads: admin operations (rekey, seal, backup) and recovery decryption. */
#define KH_APP_JOB_THREADS 2
/* Threads that may use the key store at once (its [keystore] threads: the pkcs11 store's
 * sessions): the job threads, the auditor signing a checkpoint, the key store monitor. */
#define KH_APP_KEYSTORE_THREADS (KH_APP_JOB_THREADS + 2)

/* How long a count of records per version stands for the next ones asked for, when it
 * walked at least KH_RECORD_COUNTS_LARGE records in all (a small tenant's is always counted
 * afresh: exact). Judged by rows walked, not by the time taken: on PostgreSQL even a count of
 * ten records takes a round trip of a few milliseconds, and a small tenant's counts must stay
 * exact on either database. 50000 records: about 4 ms of a worker's loop on SQLite (a million
 * took 80 ms). */
#define KH_RECORD_COUNTS_TTL_MS 1000
#define KH_RECORD_COUNTS_LARGE 50000

struct kh_record_counts {
        int64_t at_ms;                       /* monotonic; 0: never counted */
        uint64_t rows;                       /* records walked: the sum of records[] */
        size_t n;
        uint32_t version[KH_KEY_VERSIONS_MAX];
        uint64_t records[KH_KEY_VERSIONS_MAX];
};

struct kh_app {
        const struct kh_config *cfg;
        struct kh_keystore *keystore;        /* NULL while sealed; under reload_lock */
        /* The connection that loaded the tenant keys, kept open for the life of the app:
         * an SQLite file is owned by the process that has it open (see the SQLite store),
         * and the workers open theirs only later. Closing this one in between would let
         * another process take the file after this one has loaded key states from it. */
        struct kh_store *store;
        int lock_fd;                         /* kh_store_lock() shared: keyholdd serves it;
                                              * -1 for none */
        struct kh_tenant *tenants;
        size_t n_tenants;
        struct kh_keyring *keyring;
        /* The key store pointer, and the app's own store connection. Shared (read lock):
         * the key store operations that may run at once (keystore.h) and use nothing else
         * of the app: recovery decryption, the auditor's checkpoint signatures, backup
         * keys. Exclusive (write lock): everything else: loading keys, generate and
         * destroy, seal and unseal (which change keystore), the key store monitor (probe
         * and reconnect), and every use of the app's store connection. Writers go first
         * (a steady stream of readers does not hold off a seal); no thread takes it shared
         * twice. */
        pthread_rwlock_t reload_lock;
        struct kh_auditor *auditor;
        kh_app_event_fn event;
        void *userdata;
        pthread_t retry_thread;
        bool retry_running;
        atomic_bool stopping;
        atomic_bool storage_full;            /* kh_app_note_storage_full() */
        /* the key lifecycle (lifecycle.c): its operations run one at a time, on the job
         * pool, under lifecycle_lock (then reload_lock for the key store and store) */
        pthread_mutex_t lifecycle_lock;
        atomic_bool sealed;                  /* keystore is NULL, the snapshot has no DEK */
        /* the key store monitor (keystore-monitor.h): the store is gone until it says
         * otherwise; set and cleared by the monitor (cleared by a seal too), under
         * reload_lock */
        atomic_bool ks_unavailable;
        pthread_t monitor_thread;
        bool monitor_running;
        struct kh_jobs *jobs;
        struct kh_reencrypt *reencrypt;
        struct kh_keywatch *keywatch;        /* NULL on SQLite (keywatch.h) */
        char node_id[KH_APP_NODE_ID_MAX];
        /* SQLite: this process owns the database (nobody else opens it while keyholdd runs),
         * so a lease another holder left is from a process that died: taken at once */
        bool db_exclusive;
        /* recovery.c: per tenant, its recovery public key (SPKI DER) once known; under
         * reload_lock */
        struct kh_recovery_spki {
                uint8_t *der;
                size_t len;
        } *recovery;
        /* kh_app_record_counts(): per tenant, the last count of records per version */
        pthread_mutex_t counts_lock;
        struct kh_record_counts *counts;     /* by tenant index */
};

/* A new snapshot of every tenant's key versions from the database, through the app's
 * connection (DEKs unwrapped by the key store; none while sealed). Caller holds
 * reload_lock. */
KH_MUST_CHECK int kh_app_snapshot_locked(struct kh_app *app, unsigned flags, struct kh_keys **ret,
                                         struct kh_keys_failure *failed);

/* Creates version 1 of every tenant that has none yet (a first start, or the first unseal of
 * a server that started sealed on an empty database). Caller holds reload_lock. */
KH_MUST_CHECK int kh_app_first_versions_locked(struct kh_app *app);

/* The "now" to take a database lease with (store.h: kh_store_lease_take()): the clock, or,
 * when this process owns the database, a time after every expiry. */
static inline int64_t kh_app_lease_now(const struct kh_app *app, int64_t wall_ms) {
        return app->db_exclusive ? INT64_MAX : wall_ms;
}

/* Whether the key store's configuration holds its secret (the file store a master key or
 * passphrase, the pkcs11 store a PIN, from a file or the environment): the server then
 * starts unsealed, and follows another replica's unseal. */
bool kh_app_keystore_has_secret(const struct kh_app *app);

/**
 * kh_app_follow_seal() - brings this replica to the sealed flag the database holds, which
 * another replica changed: sealed, it seals (without writing the flag again); unsealed, it
 * unseals with its configured secret if it has one (kh_app_keystore_has_secret()), else
 * stays sealed until `keyhold unseal` on its own admin socket. Blocks on the key store.
 * Returns 1 changed, 0 nothing to do, or an error of sealing or of opening the key store.
 */
KH_MUST_CHECK int kh_app_follow_seal(struct kh_app *app, bool sealed);
