/* A run of consecutive records of one chain as the server stores it (one row of
 * audit_blocks): a compact binary form, since every read of a key is a record and the
 * export's JSON (json.h) is five times larger. Only the server reads it; what leaves the
 * server is always the export format. docs/audit.md ("How blocks are stored") defines it:
 *
 *   block  = 0x01 prev_hash(32) record*
 *   record = flags(1) time(svarint) [actor] [target] [action] [outcome] key_version(uvarint)
 *            request_id [client] count(uvarint) hash(32) [signature]
 *
 * Fields that repeat the record before (in the block) are left out, per a flag; seq is the
 * block's first seq plus the record's position; tenant is the block's chain; prev_hash is
 * the record before's hash (the block's prev_hash for its first). Hashes are stored as the
 * server computed them, not recomputed when read, so an edit of the database shows in
 * `audit verify` at the record edited. Older servers stored blocks as JSON Lines (a first
 * byte '{'); the reader takes both. Pure functions; no logging. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/json.h"
#include "audit/record.h"
#include "common/buf.h"
#include "common/cleanup.h"

#define KH_AUDIT_BLOCK_V1 0x01

/* Builds one block. The previous record's strings are kept (copied) for the next record's
 * flags, so the caller's strings need not outlive an append. */
struct kh_audit_block_writer {
        struct kh_buf *out;
        int64_t time_ms;
        char actor[KH_AUDIT_STR_MAX + 1], target[KH_AUDIT_STR_MAX + 1];
        char action[KH_AUDIT_STR_MAX + 1], outcome[KH_AUDIT_STR_MAX + 1];
        char client[KH_AUDIT_STR_MAX + 1];
};

/* Starts a block in out (reset first) whose first record follows prev_hash. Returns 0,
 * -E2BIG or -ENOMEM. */
KH_MUST_CHECK int kh_audit_block_begin(struct kh_audit_block_writer *w, struct kh_buf *out,
                                       const uint8_t prev_hash[static KH_AUDIT_HASH_LEN]);

/**
 * kh_audit_block_add() - appends rec, whose time is time_ms (rec->time must be its text).
 * rec must be kh_audit_record_is_valid(), chained to the record before (its seq, tenant and
 * prev_hash are not stored: the reader derives them). Returns 0, -EINVAL (not valid),
 * -E2BIG (out's maximum: out is then unchanged) or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_block_add(struct kh_audit_block_writer *w,
                                     const struct kh_audit_record *rec, int64_t time_ms);

/* Reads one stored block, record by record. */
struct kh_audit_block_reader {
        const uint8_t *p, *end;
        bool json;                       /* a block written as JSON Lines */
        uint64_t seq;                    /* of the next record */
        const char *tenant;
        int64_t time_ms;
        uint8_t prev_hash[KH_AUDIT_HASH_LEN];
        /* the previous record's strings, for the flags that repeat them */
        char actor[KH_AUDIT_STR_MAX + 1], target[KH_AUDIT_STR_MAX + 1];
        char action[KH_AUDIT_STR_MAX + 1], outcome[KH_AUDIT_STR_MAX + 1];
        char client[KH_AUDIT_STR_MAX + 1];
};

/* Starts reading data[0..len) of chain tenant (borrowed, like data), whose first record
 * has seq first_seq. Returns 0 or -EINVAL (neither form). */
KH_MUST_CHECK int kh_audit_block_read_begin(struct kh_audit_block_reader *r, const uint8_t *data,
                                            size_t len, uint64_t first_seq, const char *tenant);

/**
 * kh_audit_block_next() - the next record into out (a valid record whose strings live in
 * out, or for the tenant in the reader's borrowed string).
 * @time_ms: set to the record's time as unix milliseconds.
 * Returns 1 (a record), 0 (the end), -EINVAL (the block is damaged: the rest is not read) or
 * -ENOMEM. A JSON Lines block's records carry their own seq, read as written.
 */
KH_MUST_CHECK int kh_audit_block_next(struct kh_audit_block_reader *r, struct kh_audit_parsed *out,
                                      int64_t *time_ms);
