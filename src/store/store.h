/* Storage: tenant key versions with their wrapped DEKs and the DEKs' signatures, sealed
 * records, and a few key/value settings of the database itself (meta). The store only
 * ever sees sealed, wrapped or signed bytes. One struct kh_store is one database
 * connection and is loop-local: each worker opens its own. Reads never write. SQL is per
 * backend; the interface is narrow so that PostgreSQL can implement it too. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "common/loop.h"
#include "config/config.h"

struct kh_store;

/* Every function below returns -EINVAL when an argument is outside its documented range:
 * a tenant id that kh_tenant_id_is_valid() refuses, an owner that is empty or longer than
 * KH_STORE_OWNER_MAX, a state outside its enum, a kind below 1, a wrapped DEK of 0 or more than
 * KH_WRAPPED_DEK_MAX bytes, a signature of 0 or more than KH_STORE_SIGNATURE_MAX bytes, a
 * blob of 0 or more than KH_SEALED_MAX bytes, a meta key that is not 1 to
 * KH_STORE_META_KEY_MAX of [a-z0-9._-], a meta value of 0 or more than KH_STORE_META_VALUE_MAX
 * bytes. These are programming errors (clients never reach the store unvalidated), not
 * client input. A row read back outside those ranges is -KH_E_INTEGRITY. A database that
 * stays locked longer than KH_STORE_BUSY_TIMEOUT_MS gives -EBUSY; a write that finds no
 * space left (disk or quota full) gives -ENOSPC, and nothing of it was written.
 * On PostgreSQL any function may also give -KH_E_STORAGE_UNAVAILABLE: the statement waited
 * KH_STORE_WAIT_MS (for the server or a lock) and was cancelled, or the connection is lost
 * (a write then may or may not have been committed; a read is retried once on a new
 * connection first). The next call makes the connection again (after an attempt that
 * failed, at most once per KH_STORE_RECONNECT_MS); a transaction that lost its connection fails every call until
 * kh_store_tx_rollback(). */
#define KH_STORE_OWNER_MAX        255   /* bytes of an owner id (a GUID is 36) */
#define KH_STORE_SIGNATURE_MAX    1024  /* bytes of a DEK signature (RSA-8192 is 1024) */
#define KH_STORE_META_KEY_MAX     64
#define KH_STORE_META_VALUE_MAX   1024
#define KH_STORE_BUSY_TIMEOUT_MS  10000 /* wait this long for another writer's lock */
#define KH_STORE_WAIT_MS          5000  /* PostgreSQL: the longest a statement waits (for
                                        * the server, a lock), then
                                        * -KH_E_STORAGE_UNAVAILABLE (DESIGN.md) */
#define KH_STORE_RECONNECT_MS     2000  /* PostgreSQL: a database that is down is tried
                                        * again on a call at most this often */

enum kh_key_state {
        KH_KEY_ACTIVE = 1,
        KH_KEY_ARCHIVED = 2,
        KH_KEY_RETIRED = 3,
        KH_KEY_REVOKED = 4,
        KH_KEY_DESTROYED = 5,
};

enum kh_record_kind {
        KH_RECORD_USER_KEY = 1,  /* Key Connector key of a member; owner = user GUID */
        KH_RECORD_DEVICE = 2,    /* a member's device and its trust values;
                                  * owner = "<user GUID>/<device identifier>" */
        KH_RECORD_RECOVERY = 3,  /* a member's account-recovery enrolment; owner = user GUID */
        KH_RECORD_AUTH_REQUEST = 4, /* a login or admin-approval request; owner = request GUID */
        KH_RECORD_DEVICE_INDEX = 5, /* which member registered a device identifier with an
                                     * e-mail; owner = "x" + hex SHA-256 of both */
};

struct kh_tenant_key {
        uint32_t version;
        enum kh_key_state state;
        const uint8_t *wrapped_dek;  /* valid during the callback only */
        size_t wrapped_dek_len;
        const uint8_t *signature;    /* of the wrapped DEK (service/keyring.h); NULL for a row
                                      * written before DEKs were signed; valid during the
                                      * callback only */
        size_t signature_len;        /* 0 exactly when signature is NULL */
        int64_t created_at;          /* unix seconds */
        uint64_t encrypts, decrypts; /* durable use counters (kh_store_tenant_key_add_uses) */
        enum kh_key_state prior_state; /* of a revoked version: the state reinstate returns
                                        * it to (active or archived); else 0 */
};

typedef int (*kh_tenant_key_fn)(const struct kh_tenant_key *key, void *userdata);

/* Opens (creating if needed) the database cfg names and brings its schema up to date.
 * Safe when several processes open the same empty database at once. Errors: -EINVAL
 * (unknown or missing driver, missing path/url), -EIO (database error), -EBUSY, -ENOMEM,
 * -EPROTO (the database has a newer schema than this build knows), or the -errno of
 * creating the SQLite file (-ENOENT: no such directory, -EACCES, ...). A new SQLite file
 * is created with mode 0600. */
KH_MUST_CHECK int kh_store_open(const struct kh_config_storage *cfg, struct kh_store **ret);

/* kh_store_open(), and on failure a message for the operator in why (n bytes; "" when
 * there is nothing to add to the error) that names the [storage] key at fault and the
 * cause: on PostgreSQL -EINVAL (url is no libpq connection string), -ECONNREFUSED (the
 * server is unreachable), -EACCES (the server refused the login: password_file or
 * KEYHOLD_STORAGE_PASSWORD), -ENOENT (no such database), -EPROTO (newer schema), or the
 * -errno of reading password_file. Never holds the password. */
KH_MUST_CHECK int kh_store_open_explained(const struct kh_config_storage *cfg,
                                          struct kh_store **ret, char *why, size_t n);
struct kh_store *kh_store_close(struct kh_store *s); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_store_close, struct kh_store *)

/* Schema version after migrations (for tests and /health). */
int kh_store_schema_version(struct kh_store *s);

/* Inserts tenant key version with its wrapped DEK, the DEK's signature and state unless
 * that version exists. Returns 1 if this call inserted it, 0 if it existed already (then
 * read it back: the row that exists wins, signature included), or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_insert_if_absent(struct kh_store *s, const char *tenant,
                                                       uint32_t version, enum kh_key_state state,
                                                       const uint8_t *wrapped_dek, size_t len,
                                                       const uint8_t *signature,
                                                       size_t signature_len);

/* Gives a version that has no signature (a row written before DEKs were signed) this one.
 * Returns 1 if this call set it, 0 if the version has a signature already (which stays:
 * when several processes sign the same row at once, the first one's is kept), -ENOENT if
 * there is no such version, or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_set_signature(struct kh_store *s, const char *tenant,
                                                    uint32_t version, const uint8_t *signature,
                                                    size_t signature_len);

/* Gives version (active, archived or revoked) another wrapped DEK and its signature, only if
 * the row still holds exactly the wrapped DEK old[0..old_len): a compare-and-set, so that a
 * key store migration that runs again never overwrites a row it moved already (the same DEK,
 * wrapped under another key store's key: keystore migrate). Returns 1 changed, 0 not (the
 * row holds other bytes, is in another state or is gone), -EOPNOTSUPP (a backend without
 * it), or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_rewrap(struct kh_store *s, const char *tenant,
                                             uint32_t version, const uint8_t *old,
                                             size_t old_len, const uint8_t *wrapped, size_t len,
                                             const uint8_t *signature, size_t signature_len);

/* Calls fn for each key version of tenant, ascending. Returns 0, fn's non-zero value, -EIO,
 * or -KH_E_INTEGRITY for a stored row out of range (fn has then seen the rows before it).
 * fn may call other functions on s, but not kh_store_tenant_keys() itself. */
KH_MUST_CHECK int kh_store_tenant_keys(struct kh_store *s, const char *tenant,
                                       kh_tenant_key_fn fn, void *userdata);

/* Sets the state of a version (no prior state: kh_store_tenant_key_update() is the lifecycle's
 * way). Returns 0, -ENOENT or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_set_state(struct kh_store *s, const char *tenant,
                                                uint32_t version, enum kh_key_state state);

/* Moves a version from state @from to state @to, with @prior (0: none; else active or
 * archived) as its prior state, only if it is in state @from now: a compare-and-set, so
 * that two administrators (or replicas) acting at once cannot both win. A destroyed version
 * is reached through kh_store_tenant_key_destroy() only. Returns 0, -ENOENT (no such version
 * in state @from) or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_update(struct kh_store *s, const char *tenant,
                                             uint32_t version, enum kh_key_state from,
                                             enum kh_key_state to, enum kh_key_state prior);

/* A retired version becomes destroyed, and its wrapped DEK and signature are deleted from
 * the row (which stays, so that the version's number is never used again and its history
 * still names it). Returns 0, -ENOENT (no such retired version) or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_destroy(struct kh_store *s, const char *tenant,
                                              uint32_t version);

/* Adds to the durable use counters of a version. Returns 0, -ENOENT or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_add_uses(struct kh_store *s, const char *tenant,
                                               uint32_t version, uint64_t encrypts,
                                               uint64_t decrypts);

/* ---- asynchronous reads ----
 * A store attached to a loop that watches fds (common/loop.h) may read without stalling it
 * for a database round trip: PostgreSQL sends the statements of many requests on its own
 * read connection (libpq's pipeline mode) and answers each when its row arrives. Reads on
 * it see committed rows only, as any other connection; they never wait for the store's
 * writes. SQLite reads in a few microseconds from its page cache and offers no such mode
 * (kh_store_reads_async() is false): callers read synchronously there. */

struct kh_store_read;
/* The outcome of an asynchronous kh_store_record_get(): r as that function returns it; on
 * success version and the blob (len bytes, borrowed for the call). Runs on the loop's
 * thread, never from inside kh_store_record_get_async(). */
typedef void (*kh_store_read_fn)(struct kh_store_read *rd, int r, uint32_t version,
                                 const uint8_t *blob, size_t len);

/* One read in flight, embedded in the caller's struct, which stays alive until done ran
 * (or kh_store_read_cancel() returned). The other fields are the store's. */
struct kh_store_read {
        kh_store_read_fn done;
        struct kh_store_read *next;
        struct kh_loop_timer timer;      /* KH_STORE_WAIT_MS from submission */
        void *store_;
        char tenant[KH_TENANT_ID_MAX + 1];
        char owner[KH_STORE_OWNER_MAX + 1];
        enum kh_record_kind kind;
};

/* Lets s read asynchronously on loop (borrowed until kh_store_detach_loop()); a no-op
 * returning 0 for a backend, or a loop, without the means. Returns 0 or -ENOMEM. */
KH_MUST_CHECK int kh_store_attach_loop(struct kh_store *s, struct kh_loop *loop);
/* Ends what kh_store_attach_loop() began, before the loop goes away: every read in flight
 * is answered -KH_E_STORAGE_UNAVAILABLE, the read connection closed. */
void kh_store_detach_loop(struct kh_store *s);
bool kh_store_reads_async(const struct kh_store *s);

/* kh_store_record_get() answered through rd->done: 0, -ENOENT, -KH_E_INTEGRITY,
 * -KH_E_STORAGE_UNAVAILABLE (no answer within KH_STORE_WAIT_MS, the connection lost or not
 * made again yet), -ENOMEM or -EIO. Only when kh_store_reads_async(s). Returns 0 (done will
 * run) or, done never running, -EINVAL for arguments kh_store_record_get() refuses. */
KH_MUST_CHECK int kh_store_record_get_async(struct kh_store *s, const char *tenant,
                                            enum kh_record_kind kind, const char *owner,
                                            struct kh_store_read *rd);

/* The sealed record (tenant, kind, owner): its key version and blob, appended to blob.
 * Returns 0, -ENOENT, -E2BIG (blob's maximum is too small; blob unchanged), -KH_E_INTEGRITY
 * or -EIO. Never writes. */
KH_MUST_CHECK int kh_store_record_get(struct kh_store *s, const char *tenant,
                                      enum kh_record_kind kind, const char *owner,
                                      uint32_t *ret_version, struct kh_buf *blob);

/* Creates the record unless it exists, atomically. Returns 0, -EEXIST or -EIO. Durable
 * (synchronous commit) when it returns 0. */
KH_MUST_CHECK int kh_store_record_insert(struct kh_store *s, const char *tenant,
                                         enum kh_record_kind kind, const char *owner,
                                         uint32_t version, const uint8_t *blob, size_t len);

/* Creates or replaces the record. Returns 0 or -EIO. Durable when it returns 0. */
KH_MUST_CHECK int kh_store_record_put(struct kh_store *s, const char *tenant,
                                      enum kh_record_kind kind, const char *owner,
                                      uint32_t version, const uint8_t *blob, size_t len);

/* A sealed record as the re-encryption job reads it; valid during the callback only. */
struct kh_store_record {
        enum kh_record_kind kind;
        const char *owner;
        const uint8_t *blob;
        size_t len;
        uint32_t version;        /* the tenant key version it is sealed under */
};

typedef int (*kh_store_record_fn)(const struct kh_store_record *rec, void *userdata);

/* Calls fn for at most @limit records of tenant sealed under @version, in (kind, owner)
 * order, starting after (@after_kind, @after_owner) (kind 0 and owner "": from the first).
 * Returns 0, fn's non-zero value, -EIO or -KH_E_INTEGRITY. fn must not call s. */
KH_MUST_CHECK int kh_store_records_under(struct kh_store *s, const char *tenant,
                                         uint32_t version, enum kh_record_kind after_kind,
                                         const char *after_owner, size_t limit,
                                         kh_store_record_fn fn, void *userdata);

/* Re-seals one record: from version @from with exactly the bytes old[0..old_len) to version
 * @to with blob[0..len), only if the row still holds those bytes under @from (a member who
 * wrote in between keeps their write; the job finds the record again). Returns 1 moved, 0 not
 * (changed or gone since it was read), or -EIO. Call inside a transaction to move many. */
KH_MUST_CHECK int kh_store_record_move(struct kh_store *s, const char *tenant,
                                       enum kh_record_kind kind, const char *owner,
                                       uint32_t from, const uint8_t *old, size_t old_len,
                                       uint32_t to, const uint8_t *blob, size_t len);

/* One record of kh_store_record_moves(): kh_store_record_move()'s arguments but the tenant
 * and the versions, which a batch shares. */
struct kh_store_move {
        enum kh_record_kind kind;
        const char *owner;
        const uint8_t *old;
        size_t old_len;
        const uint8_t *blob;
        size_t len;
};

/* Most moves of one kh_store_record_moves() call. */
#define KH_STORE_MOVES_MAX 1000

/**
 * kh_store_record_moves() - kh_store_record_move() of each of moves[0..n), all or none: in
 * the open write transaction, or with none open in one of its own, committed.
 * On PostgreSQL the statements go to the server at once, in one round trip (with no
 * transaction open, its BEGIN, write lock and COMMIT too): the write lock is held for the
 * server's work only, never while the caller waits to be scheduled (the re-encryption job
 * runs at idle priority, and a member's write waits at most KH_STORE_WAIT_MS for the lock).
 * Returns the number moved, -EINVAL (n is 0 or above KH_STORE_MOVES_MAX, a bad move), or an
 * error of the store; after an error the caller's transaction must be rolled back.
 */
KH_MUST_CHECK int kh_store_record_moves(struct kh_store *s, const char *tenant, uint32_t from,
                                        uint32_t to, const struct kh_store_move *moves,
                                        size_t n);

/* Whether a run of small write transactions is better grouped into one held open for a
 * while (SQLite: every commit makes the process's other connections drop their page cache)
 * than committed each on its own (PostgreSQL: a transaction left open holds the write lock
 * between the caller's statements, however slowly the caller gets to them). */
bool kh_store_groups_commits(const struct kh_store *s);

/* Calls fn for each record of tenant of @kind whose owner starts with @prefix ("" for
 * all), in owner order. Owners are ASCII below 0x7f (GUIDs, device identifiers, '/').
 * Returns 0, fn's non-zero value, -EIO or -KH_E_INTEGRITY. fn must not call s. Never
 * writes. */
KH_MUST_CHECK int kh_store_records_list(struct kh_store *s, const char *tenant,
                                        enum kh_record_kind kind, const char *prefix,
                                        kh_store_record_fn fn, void *userdata);

/* Deletes the record (tenant, kind, owner). Returns 1 deleted, 0 there was none, or -EIO.
 * Durable when it returns (outside a transaction). */
KH_MUST_CHECK int kh_store_record_delete(struct kh_store *s, const char *tenant,
                                         enum kh_record_kind kind, const char *owner);

/* Deletes every record of tenant of @kind whose owner starts with @prefix (not empty).
 * Returns how many, or -EIO. */
KH_MUST_CHECK int kh_store_records_delete_prefix(struct kh_store *s, const char *tenant,
                                                 enum kh_record_kind kind, const char *prefix);

/* Number of records of tenant (all kinds) sealed under version. */
KH_MUST_CHECK int kh_store_record_count(struct kh_store *s, const char *tenant, uint32_t version,
                                        uint64_t *ret_count);

/* The value stored under key (a setting of the database itself, e.g. a format decision
 * made once), appended to value. Returns 0, -ENOENT, -E2BIG (value's maximum is too small;
 * value unchanged), -KH_E_INTEGRITY or -EIO. Never writes. */
KH_MUST_CHECK int kh_store_meta_get(struct kh_store *s, const char *key, struct kh_buf *value);

/* Creates or replaces the value under key. Returns 0 or -EIO. Durable when it returns 0
 * (outside a transaction). */
KH_MUST_CHECK int kh_store_meta_put(struct kh_store *s, const char *key, const uint8_t *value,
                                    size_t len);

/* ---- audit chains ----
 * A chain (a tenant id, or "" for the server's own; with "@REPLICA" after it, a named
 * replica's: docs/audit.md "Replicas") is stored as blocks: each a run of
 * consecutive records first_seq..last_seq in the form audit/block.h writes (the store
 * does not read it),
 * with the hash of its last record. The service assigns sequence numbers and hashes; the
 * store keeps blocks in order and never looks inside them. Appending inside a transaction
 * (kh_store_tx_begin) makes the block part of that group commit. */
#define KH_STORE_AUDIT_BLOCK_MAX (16u << 20) /* bytes of one block's data */
#define KH_STORE_AUDIT_HASH_LEN  32
#define KH_STORE_AUDIT_REPLICA_MAX 32        /* bytes of the name after a chain's '@' */

struct kh_store_audit_block {
        uint64_t first_seq, last_seq;
        const uint8_t *head_hash;        /* KH_STORE_AUDIT_HASH_LEN bytes */
        const uint8_t *data;             /* valid during the callback only */
        size_t len;
};

typedef int (*kh_store_audit_block_fn)(const struct kh_store_audit_block *b, void *userdata);

/* Appends block b to chain. Returns 0, -EEXIST (a block starting at b->first_seq exists),
 * -EIO or -ENOSPC. */
KH_MUST_CHECK int kh_store_audit_append(struct kh_store *s, const char *chain,
                                        const struct kh_store_audit_block *b);

/* The last block of chain (its data is not read: b->data is NULL, b->len 0); -ENOENT for
 * an empty chain. */
KH_MUST_CHECK int kh_store_audit_last(struct kh_store *s, const char *chain,
                                      struct kh_store_audit_block *ret);

/* Calls fn for the blocks of chain holding a record at or after seq, ascending (or, when
 * descending, at or before seq, newest first) until fn returns non-zero. Returns 0, fn's
 * value, -KH_E_INTEGRITY (a row out of range) or -EIO. fn must not call the store. */
KH_MUST_CHECK int kh_store_audit_scan(struct kh_store *s, const char *chain, uint64_t seq,
                                      bool descending, kh_store_audit_block_fn fn,
                                      void *userdata);

/* Removes the blocks of chain whose records all have a seq below before_seq (retention).
 * Returns how many were removed, or -EIO. */
KH_MUST_CHECK int kh_store_audit_prune(struct kh_store *s, const char *chain, uint64_t before_seq);

/* Group commit: the writes between kh_store_tx_begin() (which takes the write lock) and
 * kh_store_tx_commit() become durable together, with one synchronous commit; inside a
 * transaction the record writes above are not durable on their own. Returns 0, -EBUSY or
 * -EIO. kh_store_tx_rollback() undoes an open transaction and is a no-op without one. */
KH_MUST_CHECK int kh_store_tx_begin(struct kh_store *s);
KH_MUST_CHECK int kh_store_tx_commit(struct kh_store *s);
void kh_store_tx_rollback(struct kh_store *s);

/* Inside a transaction, one operation of several statements that must happen whole or not at
 * all while the rest of the group commit goes on: kh_store_savepoint() marks where it
 * starts, kh_store_savepoint_release() keeps its writes (durable with the transaction),
 * kh_store_savepoint_rollback() undoes them. Not nested. Returns 0, -EBUSY or -EIO. */
KH_MUST_CHECK int kh_store_savepoint(struct kh_store *s);
KH_MUST_CHECK int kh_store_savepoint_release(struct kh_store *s);
void kh_store_savepoint_rollback(struct kh_store *s);

/* ---- replicas (docs/storage.md, "Several replicas") ----
 * Several keyholdd may share one PostgreSQL database; the database is all they share. */

/* The key epoch: a counter the database itself (a trigger) raises in the same transaction as
 * every change of a tenant key version's state, DEK or signature and of the meta key
 * "keyhold.sealed": a replica that finds it changed reads the key states again. Returns 0,
 * -KH_E_INTEGRITY or -EIO. Never writes. */
KH_MUST_CHECK int kh_store_key_epoch(struct kh_store *s, uint64_t *ret);

/* Waits at most timeout_ms (0..60000) for the database to say that the key epoch changed
 * (PostgreSQL: LISTEN on this connection, which the first call starts and a new connection
 * starts again). Returns 1 (a change was announced, or listening has just begun and what
 * happened before is not known), 0 (none within timeout_ms), -EOPNOTSUPP (SQLite: one
 * process per database, nobody else changes it), -KH_E_STORAGE_UNAVAILABLE or -EIO. Use the
 * connection for nothing else while waiting (it is loop-local as always). */
KH_MUST_CHECK int kh_store_key_epoch_wait(struct kh_store *s, int timeout_ms);

#define KH_STORE_LEASE_NAME_MAX   80   /* [a-z0-9._-], as meta keys: "reencrypt." and a
                                       * tenant id fit */
#define KH_STORE_LEASE_HOLDER_MAX 128  /* any bytes but NUL */
#define KH_STORE_LEASE_DATA_MAX   1024

/**
 * kh_store_lease_take() - takes, renews or gives up the lease @name for @holder, in one
 * statement: it is @holder's (until @expires_at_ms, unix milliseconds, with @data as the
 * holder's note: a job's progress) if nobody holds it, if @holder holds it already, or if
 * the other holder's lease expired at or before @now_ms. Giving it up is taking it with
 * @expires_at_ms 0 (the row and its note stay, for others to read). Clocks: every holder
 * must agree on time to well within the lease's length (NTP).
 * Returns 1 (@holder holds it now), 0 (another holder does, unexpired), -EIO.
 */
KH_MUST_CHECK int kh_store_lease_take(struct kh_store *s, const char *name, const char *holder,
                                      int64_t now_ms, int64_t expires_at_ms, const uint8_t *data,
                                      size_t len);

/* The lease @name as it is: its holder (appended to holder), expiry and note (appended to
 * data). Returns 0, -ENOENT (never taken), -E2BIG (a buffer's maximum is too small),
 * -KH_E_INTEGRITY or -EIO. Never writes. */
KH_MUST_CHECK int kh_store_lease_get(struct kh_store *s, const char *name, struct kh_buf *holder,
                                     int64_t *ret_expires_at_ms, struct kh_buf *data);

/* A cheap round trip to the database, for /health. Returns 0 or -EIO. */
KH_MUST_CHECK int kh_store_ping(struct kh_store *s);

/* The database's message for the last failure on s (for the caller's log; never holds key
 * material, as the store only sees sealed bytes), or "" if none. Lives until the next call
 * on s. */
const char *kh_store_last_error(struct kh_store *s);

/**
 * kh_store_exclusive() - makes s the only user of the database for as long as s is open
 * (keyhold keystore migrate): no keyholdd or tool may be connected meanwhile, and none can
 * open it until s is closed. On PostgreSQL, every connection holds an advisory lock shared
 * (taken again when it reconnects); this one trades its share for the exclusive lock. On
 * SQLite a no-op: kh_store_lock() on the lock file beside the database does it, before the
 * database is opened. Call outside a transaction. Returns 0, -EWOULDBLOCK (another session
 * is connected), -EBUSY (inside a transaction) or an error of reaching the database.
 */
KH_MUST_CHECK int kh_store_exclusive(struct kh_store *s);

/* ---- snapshots (backups) ---- */

/**
 * kh_store_snapshot() - writes a consistent copy of the whole database, as of one commit,
 * into path, an existing empty file, as a self-contained SQLite database (rollback journal,
 * no -wal file needed), while other connections keep reading and writing. Blocks for as long
 * as the copy takes: call it from a job thread, on a connection of its own. Returns 0,
 * -EOPNOTSUPP (a backend that has no such snapshot), -ENOSPC, -EBUSY, -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_store_snapshot(struct kh_store *s, const char *path);

/* The meta key of a load whose restore did not finish (kh_store_load()). */
#define KH_STORE_META_RESTORE_PENDING "restore.pending"

/* What kh_store_load() copied. */
struct kh_store_load_info {
        uint64_t records;
        size_t versions;       /* tenant key versions */
};

/**
 * kh_store_load() - copies the snapshot at path (an SQLite file as kh_store_snapshot()
 * writes, already checked with kh_store_snapshot_inspect()) into s's database, in one
 * transaction: every tenant key version, record, audit block and meta value (no job lease
 * and no replica's claim on its audit chain: those name processes of the server backed up),
 * and a key epoch past both the snapshot's and the database's. The database must hold no keyhold
 * data (its schema may exist: a keyholdd that never served). A failure or a crash leaves it
 * as it was. Call outside a transaction, holding the database alone (kh_store_exclusive()).
 * pending (NULL: none; else 1 to KH_STORE_META_VALUE_MAX bytes) goes in the same transaction
 * as the meta value KH_STORE_META_RESTORE_PENDING: the restore that loads has more to do
 * after the commit (keyhold backup restore: DIR/keystore), and a keyholdd does not start
 * on the database until kh_store_load_done() removed it (docs/backup.md "PostgreSQL").
 * Returns 0 with ret filled, -EOPNOTSUPP (a backend that takes no load: SQLite's restore is
 * the file itself), -ENOTEMPTY (keyhold data present; last_error names the table), -EPROTO
 * (the snapshot's schema version is not the database's), -EBADMSG (a row of another form),
 * -EBUSY (inside a transaction), -ENOSPC, -ENOMEM, -EIO or -KH_E_STORAGE_UNAVAILABLE.
 */
KH_MUST_CHECK int kh_store_load(struct kh_store *s, const char *path, const char *pending,
                                struct kh_store_load_info *ret);

/* Removes the meta value KH_STORE_META_RESTORE_PENDING, durably. Returns 0 (also when there
 * was none), -EOPNOTSUPP (a backend that takes no load), -EBUSY, -EIO or
 * -KH_E_STORAGE_UNAVAILABLE. */
KH_MUST_CHECK int kh_store_load_done(struct kh_store *s);

struct kh_store_snapshot_info {
        int schema_version;
        uint64_t records;      /* every record */
        size_t versions;       /* tenant key versions */
};

/* One tenant key version of a snapshot and the records under it; non-zero stops. */
typedef int (*kh_store_snapshot_fn)(const char *tenant, uint32_t version,
                                    enum kh_key_state state, uint64_t records, void *userdata);

/**
 * kh_store_snapshot_inspect() - opens the SQLite file path read-only (nothing is written
 * beside it), checks it (SQLite's quick_check, a schema this build knows, every record under
 * a tenant key version) and calls fn (may be NULL) for each tenant key version in order of
 * tenant and version. On failure error (n bytes) says why.
 * Returns 0, fn's non-zero value, -EBADMSG (not a database, damaged, rows out of range),
 * -EPROTO (unknown schema), -ENOENT, -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_store_snapshot_inspect(const char *path, kh_store_snapshot_fn fn,
                                            void *userdata, struct kh_store_snapshot_info *ret,
                                            char *error, size_t n);
