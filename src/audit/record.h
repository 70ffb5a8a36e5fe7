/* Audit records and how they chain: the canonical encoding each record's hash covers, the
 * digest a checkpoint signs, and the record's time format. docs/audit.md defines all three
 * for outside verifiers; change them only together with it (and a new domain label).
 * Pure functions: no I/O, no allocation. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KH_AUDIT_HASH_LEN 32
#define KH_AUDIT_TIME_LEN 24          /* "YYYY-MM-DDTHH:MM:SS.mmmZ" */
#define KH_AUDIT_STR_MAX  1024        /* bytes of any string field */
#define KH_AUDIT_SIG_MAX  1024        /* bytes of a checkpoint signature (RSA-8192) */
#define KH_AUDIT_SEQ_MAX  INT64_MAX   /* sequence numbers fit a signed 64-bit integer */
#define KH_AUDIT_REPLICA_MAX 32       /* bytes of a replica name: [a-z0-9][a-z0-9-]* */

#define KH_AUDIT_ACTION_CHECKPOINT "checkpoint"
#define KH_AUDIT_ACTOR_SERVER      "keyhold"

/* One record. The strings are borrowed (NUL-terminated, owned by the caller); tenant is ""
 * for the server's chain. */
struct kh_audit_record {
        uint64_t seq;
        char time[KH_AUDIT_TIME_LEN + 1];
        const char *tenant;
        const char *actor;
        const char *action;
        const char *target;
        const char *outcome;
        uint32_t key_version;                     /* 0: none */
        const char *request_id;
        const char *client;
        uint32_t count;                           /* >= 1 */
        uint8_t prev_hash[KH_AUDIT_HASH_LEN];
        uint8_t hash[KH_AUDIT_HASH_LEN];
        const uint8_t *signature;                 /* checkpoints only; else NULL, 0 */
        size_t signature_len;
        /* The replica whose chain holds it ([server] replica); NULL or "" for the unnamed
         * one, whose chains are those of a single server. Not in the hash: the chain's
         * checkpoints sign it (kh_audit_checkpoint_digest()). */
        const char *replica;
};

/* Whether s is a replica name: 1 to KH_AUDIT_REPLICA_MAX bytes of [a-z0-9-], not starting
 * with '-'. */
bool kh_audit_replica_is_valid(const char *s);

/* Whether every field is within its documented range: seq 1..KH_AUDIT_SEQ_MAX, a valid
 * time, strings of at most KH_AUDIT_STR_MAX bytes of valid UTF-8, count >= 1, a signature
 * of 1..KH_AUDIT_SIG_MAX bytes exactly when the action is a checkpoint. Not the hashes. */
bool kh_audit_record_is_valid(const struct kh_audit_record *r);

/* out = SHA-256 of r's canonical encoding (docs/audit.md "The hash"): every field but hash
 * and signature. r must be valid. */
void kh_audit_record_hash(const struct kh_audit_record *r, uint8_t out[static KH_AUDIT_HASH_LEN]);

/* out = the digest a checkpoint's signature covers: SHA-256("keyhold-audit-checkpoint:1" NUL
 * | str(tenant) | u64(seq) | hash), with the checkpoint's own seq and hash, for a chain of
 * the unnamed replica (replica NULL or ""); for a named replica's chain
 * SHA-256("keyhold-audit-checkpoint:2" NUL | str(tenant) | str(replica) | u64(seq) | hash),
 * so that a checkpoint of one replica's chain does not verify in another's. */
void kh_audit_checkpoint_digest(const char *tenant, const char *replica, uint64_t seq,
                                const uint8_t hash[static KH_AUDIT_HASH_LEN],
                                uint8_t out[static KH_AUDIT_HASH_LEN]);

/* Formats unix_ms (milliseconds since the epoch, UTC, 0 .. year 9999) as a record time.
 * Returns 0 or -EINVAL. */
int kh_audit_time_format(int64_t unix_ms, char out[static KH_AUDIT_TIME_LEN + 1]);

/* Whether s is exactly a record time: "YYYY-MM-DDTHH:MM:SS.mmmZ" with a real date. */
bool kh_audit_time_is_valid(const char *s);

/* The same, and the time as unix milliseconds in *ret_ms (the inverse of
 * kh_audit_time_format()). */
bool kh_audit_time_parse(const char *s, int64_t *ret_ms);
