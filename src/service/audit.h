/* The audit chains as the server writes them (docs/audit.md): one per tenant and one for the
 * server, each a hash chain of records with signed checkpoints.
 *
 * Sequence numbers and hashes are assigned inside the database transaction that stores
 * the records, after its write lock is taken (kh_store_tx_begin), so records are numbered in
 * the order they become durable and no two writers can fork a chain. Records reach that
 * transaction two ways:
 *   - a write's record joins the write's own group commit (kh_auditor_tx_append from the
 *     worker's batch), so an acknowledged write has its record durable with it;
 *   - every other record (reads, refusals, admin reads) is queued (kh_auditor_enqueue) and
 *     committed by the auditor's thread within one flush interval, or by the next write
 *     batch of any worker, whichever comes first. A read's answer never waits for its
 *     record, and reads stay free of disk flushes.
 * The auditor's thread also appends the checkpoints: it signs them through the key store,
 * which may be slow (an HSM), so never on an event loop. */
#pragma once

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/record.h"
#include "common/buf.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "config/config.h"
#include "keystore/keystore.h"
#include "store/store.h"

#define KH_AUDIT_ACTOR_MAX   79        /* bytes: "local:uid=N", "keyhold", a token's sub */
#define KH_AUDIT_NAME_MAX    39        /* bytes of an action or an outcome */
#define KH_AUDIT_CLIENT_MAX  45        /* bytes: an IP address (INET6_ADDRSTRLEN), "local" */
#define KH_REQUEST_ID_LEN    16        /* hex digits of a request id */

/* The key store version of every chain's audit signing key (purpose KH_KEY_AUDIT; the
 * server's chain is tenant ""). */
#define KH_AUDIT_KEY_VERSION 1

/* Bytes of a chain's id in the store: a tenant id, '@' and a replica's name. */
#define KH_AUDIT_CHAIN_ID_MAX (KH_TENANT_ID_MAX + 1 + KH_AUDIT_REPLICA_MAX)

/* The chain of the server itself, in struct kh_audit_event.chain. */
#define KH_AUDIT_SERVER_CHAIN UINT32_MAX

/* One event to record: a record without its seq and hashes. Plain value, copied through
 * queues that hold up to a second of reads: action, outcome and target point to strings
 * that live as long as the program (route and error tables, literals), not copies. */
struct kh_audit_event {
        int64_t time_ms;                 /* unix milliseconds */
        uint32_t chain;                  /* tenant index (app.h), or KH_AUDIT_SERVER_CHAIN */
        uint32_t key_version;            /* 0: none */
        uint32_t count;                  /* 1, more for aggregated refusals */
        const char *action;              /* static */
        const char *outcome;             /* static: "ok" or an error code */
        const char *target;              /* static, or NULL: the actor (a member's own event) */
        char actor[KH_AUDIT_ACTOR_MAX + 1];
        char request_id[KH_REQUEST_ID_LEN + 1];
        char client[KH_AUDIT_CLIENT_MAX + 1];
};

/* The event's target as its record names it. */
static inline const char *kh_audit_event_target(const struct kh_audit_event *ev) {
        return ev->target ? ev->target : ev->actor;
}

/* Now, in unix milliseconds: the time of an event. */
int64_t kh_audit_now_ms(void);

/* Copies s into a field of n bytes (truncated, NUL-terminated). */
void kh_audit_field_set(char *field, size_t n, const char *s);
#define KH_AUDIT_SET(field, s) kh_audit_field_set((field), sizeof(field), (s))

struct kh_auditor;

/**
 * kh_auditor_new() - the chains of tenants[0..n) and the server, continued from the
 * database, and the thread that commits queued records and checkpoints.
 * @cfg:      the [audit] settings, the storage the thread opens its own connection to, and
 *            the key size of new audit keys; borrowed for the auditor's life.
 * @tenants:  the tenant ids, by tenant index; borrowed.
 * @ks:       where the key store holding the audit signing keys is: read and used under
 *            @ks_lock only (shared to sign, exclusive to load or create a chain's key); NULL
 *            while the server is sealed (checkpoints then wait).
 * Claims [server] replica's chains in the database first: another live keyholdd that holds
 * them (docs/audit.md "Replicas") gives -EADDRINUSE.
 * Appends the server's "start" record. A chain's signing key is created on first use.
 * Returns 0, -EADDRINUSE, or an error of the store (opening, reading the chain heads) or
 * -ENOMEM.
 */
KH_MUST_CHECK int kh_auditor_new(const struct kh_config *cfg, const char *const *tenants,
                                 size_t n, struct kh_keystore *const *ks,
                                 pthread_rwlock_t *ks_lock,
                                 struct kh_auditor **ret);

/* Commits what is queued, appends the server's "stop" record and a checkpoint to every
 * chain with records since its last one, and stops the thread. NULL-safe. */
struct kh_auditor *kh_auditor_free(struct kh_auditor *a);
KH_DEFINE_CLEANUP(kh_auditor_free, struct kh_auditor *)

/* Queues events for the auditor's thread (any thread). Never fails: when the queue is
 * beyond its bound because the database cannot be written, the oldest events are dropped
 * and counted (kh_auditor_dropped). */
void kh_auditor_enqueue(struct kh_auditor *a, const struct kh_audit_event *ev, size_t n);

/**
 * kh_auditor_tx_append() - appends events (and whatever is queued) to their chains inside
 * the caller's open transaction on store, which holds the database's write lock.
 * Must be followed by kh_auditor_tx_end() whatever it returns, once the transaction has
 * committed or rolled back. Returns 0 or the store's error (then roll back).
 */
KH_MUST_CHECK int kh_auditor_tx_append(struct kh_auditor *a, struct kh_store *store,
                                       const struct kh_audit_event *ev, size_t n);
void kh_auditor_tx_end(struct kh_auditor *a, bool committed);

/* The PEM of a chain's audit public key (a tenant index, or KH_AUDIT_SERVER_CHAIN),
 * appended to out, and the algorithm its checkpoints are signed with (KH_AUDIT_ALG_* of
 * audit/verify.h). Returns 0, -KH_E_NOT_READY (the key is being created), -EIO (the key
 * store failed to create it) or -ENOMEM. */
KH_MUST_CHECK int kh_auditor_public_key(struct kh_auditor *a, uint32_t chain, struct kh_buf *out,
                                        const char **ret_algorithm);

/* The id under which the store keeps this replica's chain: the tenant id ("" for the
 * server's), followed by "@NAME" when [server] replica names this one. */
const char *kh_auditor_chain_id(const struct kh_auditor *a, uint32_t chain);

/* The store id of replica's chain of tenant ("" the server): out of
 * KH_AUDIT_CHAIN_ID_MAX + 1 bytes; replica NULL or "" for the unnamed one. */
void kh_audit_chain_store_id(const char *tenant, const char *replica,
                             char out[static KH_AUDIT_CHAIN_ID_MAX + 1]);

/* The named replicas that have written to store's audit chains, space-separated, appended
 * to out (nothing when none: a single server's chains are the unnamed replica's). Returns
 * 0 or the store's error. */
KH_MUST_CHECK int kh_audit_replicas(struct kh_store *store, struct kh_buf *out);

/* The tenant id of a chain (a tenant index or KH_AUDIT_SERVER_CHAIN): "" for the server's;
 * NULL for no such chain. */
const char *kh_auditor_tenant_id(const struct kh_auditor *a, uint32_t chain);

/* This server's replica name: "" for the unnamed one. */
const char *kh_auditor_replica(const struct kh_auditor *a);

/**
 * kh_audit_block_each() - calls fn for each record of a block the store returned, in order,
 * with the record's time as unix milliseconds.
 * @chain_id: the block's chain as the store names it (kh_auditor_chain_id()): the records'
 *            tenant, and replica after an '@'.
 * Stops at fn's first non-zero answer and returns it; returns -KH_E_INTEGRITY for a block
 * that does not read as one (an edited database), 0 at its end, or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_block_each(const struct kh_store_audit_block *b, const char *chain_id,
                                      int (*fn)(const struct kh_audit_record *rec, int64_t time_ms,
                                                void *userdata),
                                      void *userdata);

/* Events dropped so far because the database could not take them. */
uint64_t kh_auditor_dropped(const struct kh_auditor *a);

/* Adds to the durable use counters of a tenant key version (kept in the database by the
 * auditor's next commit). Any thread. */
void kh_auditor_add_uses(struct kh_auditor *a, size_t tenant, uint32_t version,
                         uint64_t encrypts, uint64_t decrypts);

/* The uses of a version not yet in the database (to add to what it holds). */
void kh_auditor_pending_uses(struct kh_auditor *a, size_t tenant, uint32_t version,
                             uint64_t *ret_encrypts, uint64_t *ret_decrypts);
