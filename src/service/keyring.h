/* The tenant key snapshot: for every tenant, its key versions, their states and the
 * unwrapped DEKs, as one immutable value that every worker reads without a lock.
 *
 * A writer (start-up, rekey, revoke, reinstate, seal; a replica refreshing from the
 * database) builds a new snapshot and publishes it with one atomic pointer store. A reader
 * loads the pointer once per request and may use it until its next quiescent point (for a
 * worker: the end of its loop's pass). Reclamation is quiescent-state based (QSBR): the old
 * snapshot is released once every online reader has passed a quiescent point after the
 * publish. Chosen over a reference count per request because readers then write nothing
 * shared (a count would put an atomic read-modify-write on one cache line, bounced between
 * the cores, on every request); the cost moves to the rare writer, whose snapshot lives up
 * to one loop pass (at most 200 ms of an idle loop) longer. Work that outlives a pass (a job
 * on the pool) takes a reference instead (kh_keys_ref), which is counted.
 *
 * The DEKs of a released snapshot are wiped when its last reference goes.
 *
 * Every wrapped DEK in the database carries a signature by the tenant key version that
 * wraps it (kh_dek_sign()), checked before the DEK is unwrapped: the public key that
 * wraps a DEK is not a secret, so without it anyone who can write the database could
 * plant a DEK of their choosing and have new records sealed under a key they know. */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "common/secret.h"
#include "keystore/keystore.h"
#include "store/store.h"

#define KH_KEY_VERSIONS_MAX 64   /* versions kept per tenant (use counters are per version) */

struct kh_key_version {
        uint32_t version;
        enum kh_key_state state;
        enum kh_key_state prior_state; /* of a revoked version: its state before; else 0 */
        struct kh_secret *dek;   /* NULL unless the state allows decryption (and the server
                                  * is not sealed) */
        unsigned rsa_bits;       /* of the tenant key; 0 when not loaded (no DEK) */
        int64_t created;         /* unix seconds */
};

struct kh_tenant_keys {
        struct kh_key_version versions[KH_KEY_VERSIONS_MAX]; /* ascending version */
        size_t n_versions;
        const struct kh_key_version *active; /* the version new records are sealed under */
};

/* Immutable once published (but for the reference count, which is the ring's). */
struct kh_keys {
        _Atomic unsigned long refs_;         /* kh_keys_ref / kh_keys_unref only */
        bool sealed;                         /* no DEK is loaded: every key route answers
                                              * 503 sealed (kh_keys_load() without a key
                                              * store) */
        bool unavailable;                    /* no DEK is loaded because the key store is
                                              * gone and [keystore]
                                              * cache_deks_while_unavailable is false: every
                                              * key route answers 503 keystore_unavailable */
        size_t n_tenants;
        struct kh_tenant_keys tenants[];     /* by tenant index (app.h) */
};

/* What every key route answers under snapshot k: -KH_E_SEALED, -KH_E_KEYSTORE_UNAVAILABLE, or
 * 0 when k has the DEKs. */
int kh_keys_refusal(const struct kh_keys *k);

/* The version entry, or NULL. */
const struct kh_key_version *kh_tenant_keys_version(const struct kh_tenant_keys *tk,
                                                    uint32_t version);

/* Whether the tenant's kill switch is on: no version is active, and one that was is revoked
 * (writes are then refused with key_revoked). */
bool kh_tenant_keys_killed(const struct kh_tenant_keys *tk);

/* Position of v in its tenant's table (for per-version counters). */
static inline size_t kh_key_version_slot(const struct kh_tenant_keys *tk,
                                         const struct kh_key_version *v) {
        return (size_t) (v - tk->versions);
}

/* What a DEK signature covers: part of the database format, change it only with a
 * migration. */
#define KH_DEK_SIGNATURE_LABEL "keyhold-dek:1"

/**
 * kh_dek_sign() - the signature that authenticates @wrapped as the DEK of version @version
 * of @tenant: RSA-PSS (kh_keystore_sign()) by that same tenant key version over
 *   SHA-256(KH_DEK_SIGNATURE_LABEL NUL | u8 tenant length | tenant | u32 version |
 *           u16 wrapped length | wrapped)
 * with integers big-endian. Only the key store can make it, and it does not verify for
 * another tenant, another version or other bytes. The new DEK of a version is signed with
 * this before it is stored (kh_store_tenant_key_insert_if_absent()).
 * @sig: the signature (the modulus size) is appended to it.
 * Returns 0, -EINVAL (a tenant id kh_tenant_id_is_valid() refuses, version 0, len outside
 * 1..KH_WRAPPED_DEK_MAX), or an error of kh_keystore_sign() (-ENOENT: no such key version;
 * -E2BIG: sig's maximum is too small). Blocks on the key store, like kh_keys_load().
 */
KH_MUST_CHECK int kh_dek_sign(struct kh_keystore *ks, const char *tenant, uint32_t version,
                              const uint8_t *wrapped, size_t len, struct kh_buf *sig);

/**
 * kh_dek_verify() - checks that @key's signature is kh_dek_sign() of its own wrapped DEK by
 * its own version of @tenant in @ks.
 * @ret_bits: if not NULL, gets the size of that tenant key (written before the signature is
 *            checked).
 * Returns 0, -KH_E_INTEGRITY (no signature, or it does not verify), -ENOENT (@ks has no
 * such key version) or another error of kh_keystore_public_key(). Blocks on the key store.
 */
KH_MUST_CHECK int kh_dek_verify(struct kh_keystore *ks, const char *tenant,
                                const struct kh_tenant_key *key, unsigned *ret_bits);

/* Where kh_keys_load() failed, for the caller's log. */
struct kh_keys_failure {
        size_t tenant;    /* index into tenants[] */
        uint32_t version; /* the version that failed; 0 when the failure was not one
                           * version's (a tenant without versions, a database error) */
        bool unsigned_dek; /* that version's DEK has no signature at all (-KH_E_INTEGRITY) */
};

/* kh_keys_load() flags */
enum {
        /* Sign DEKs that have no signature instead of refusing them: the operator vouches
         * for a database from before DEKs were signed (keyholdd --sign-unsigned-deks). */
        KH_KEYS_SIGN_UNSIGNED = 1 << 0,
};

/**
 * kh_keys_load() - a new snapshot of the key versions of tenants[0..n) read from
 * store, the DEK of every version whose state decrypts (active, archived, revoked)
 * checked against its signature (kh_dek_sign()) and then unwrapped by ks into locked
 * memory. A tenant without any version is -ENOENT (app.c creates version 1 first).
 *
 * Rows written before DEKs were signed have no signature, and neither has a row someone
 * planted. Nothing stored in the database can tell them apart (whoever can write a planted
 * row can write any marker too), so a row without a signature is refused, naming it, unless
 * @flags has KH_KEYS_SIGN_UNSIGNED: then every such row whose state decrypts is signed
 * first. Several processes may do that at once: the store keeps the first signature of a
 * row, and each process checks what is stored.
 *
 * With @ks NULL (a sealed server) the snapshot holds the versions and their states only: no
 * DEK, nothing checked, ->sealed set, and a tenant without versions is no error.
 *
 * Returns 0, -ENOENT, -E2BIG (more than KH_KEY_VERSIONS_MAX versions), -KH_E_INTEGRITY (a
 * DEK whose signature is missing or does not verify, or that does not unwrap), an error of
 * the store or key store, or -ENOMEM. On failure, @failed says which tenant and version
 * failed; @ret is written only on success.
 */
KH_MUST_CHECK int kh_keys_load(struct kh_store *store, struct kh_keystore *ks,
                               const char *const *tenants, size_t n, unsigned flags,
                               struct kh_keys **ret, struct kh_keys_failure *failed);

/* Another holder of k, beyond the current pass (any thread). */
struct kh_keys *kh_keys_ref(const struct kh_keys *k);
/* Drops a reference; the last one wipes the DEKs and frees k. Any thread; NULL-safe. */
struct kh_keys *kh_keys_unref(struct kh_keys *k);
KH_DEFINE_CLEANUP(kh_keys_unref, struct kh_keys *)

struct kh_keyring;

/* A ring for readers 0..n_readers-1 (offline until kh_keyring_online), publishing first
 * (takes its reference). Returns 0, -EINVAL or -ENOMEM. */
KH_MUST_CHECK int kh_keyring_new(unsigned n_readers, struct kh_keys *first,
                                 struct kh_keyring **ret);
/* Releases every snapshot it still holds; no reader may be online. NULL-safe. */
struct kh_keyring *kh_keyring_free(struct kh_keyring *ring);
KH_DEFINE_CLEANUP(kh_keyring_free, struct kh_keyring *)

/* The current snapshot: valid for the calling reader until its next quiescent point (or
 * until it goes offline). Any online reader, or a thread while no writer runs. */
const struct kh_keys *kh_keyring_get(const struct kh_keyring *ring);

/* Makes k current (takes the caller's reference) and retires the previous one. Any
 * thread; writers are serialised by the ring. */
void kh_keyring_publish(struct kh_keyring *ring, struct kh_keys *k);

/* The current snapshot with a reference of the caller's own (kh_keys_unref when done): for
 * a thread that is no reader of the ring (a job). Any thread. */
struct kh_keys *kh_keyring_acquire(struct kh_keyring *ring);

/* Waits until every online reader has passed a quiescent point after the last publish, then
 * releases the snapshots none can hold any more: once it returns, no request uses an older
 * snapshot (but a job's own reference). Blocks up to a loop pass (200 ms idle); never call
 * it from a reader's thread. */
void kh_keyring_synchronize(struct kh_keyring *ring);

/* Reader r has passed a quiescent point: it holds no snapshot it got before. Also releases
 * the retired snapshots no online reader can hold any more. Reader r's thread only. */
void kh_keyring_quiescent(struct kh_keyring *ring, unsigned r);

/* Reader r starts or stops reading (a worker's loop starts or ends). */
void kh_keyring_online(struct kh_keyring *ring, unsigned r);
void kh_keyring_offline(struct kh_keyring *ring, unsigned r);

/* Snapshots published but not yet released (for tests and /metrics). */
size_t kh_keyring_retired(struct kh_keyring *ring);
