/* One audit record as one line of JSON Lines and back: the export format of docs/audit.md
 * ("Export"), which `keyhold audit export` writes and `keyhold audit verify` reads.
 *
 * Writing is canonical: compact JSON (no whitespace), the fields in the documented order,
 * integers as JSON numbers, prev_hash and hash as 64 lower-case hex digits, signature (only
 * on checkpoints) as padded standard base64, strings as jansson escapes them (", \ and
 * control characters escaped, other UTF-8 as is). Reading is strict about content and
 * lenient only about JSON syntax the format does not fix: any member order and JSON
 * whitespace are accepted, but exactly the documented members, each of its type and range.
 * So format(parse(line)) is a fixed point, and equals line for every line format() wrote.
 * The record's hash covers the fields, not the JSON text, so no accepted spelling can make
 * two different records verify as one. Pure functions; no logging. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "audit/record.h"
#include "common/buf.h"
#include "common/cleanup.h"

/* Bytes of one line without its newline. The longest canonical line of a valid record is
 * about 42 KiB (seven 1024-byte strings of control characters, each written as a six-byte
 * \u escape; a checkpoint has six such strings and at most 1368 bytes of signature), so
 * every valid record can be written. */
#define KH_AUDIT_LINE_MAX (64 * 1024)

/* The string members of a record, in order, each with its NUL, and the replica's name. */
#define KH_AUDIT_STRINGS_MAX (7 * (KH_AUDIT_STR_MAX + 1) + KH_AUDIT_REPLICA_MAX + 1)

/* A parsed record and the storage its borrowed strings and signature point into, so the
 * result depends on nothing else staying alive. The record points into this very struct:
 * never copy it by value (copy rec's fields out instead). */
struct kh_audit_parsed {
        struct kh_audit_record rec;
        char strings[KH_AUDIT_STRINGS_MAX];
        uint8_t sig[KH_AUDIT_SIG_MAX];
};

/**
 * kh_audit_json_format() - appends r as one JSON Lines line, with its trailing newline.
 * @rec: a record; it must be kh_audit_record_is_valid() (its hashes are written as given).
 * @out: appended to; on failure it is unchanged.
 *
 * Returns 0, -EINVAL (r is not valid), -E2BIG (out's maximum) or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_json_format(const struct kh_audit_record *rec, struct kh_buf *out);

/**
 * kh_audit_json_parse() - one line of an export into p.
 * @line:   the line's bytes, with or without its newline; need not be NUL-terminated.
 * @len:    its length; more than KH_AUDIT_LINE_MAX (not counting a final newline) is refused.
 * @p:      caller-owned storage; on success p->rec is a kh_audit_record_is_valid() record
 *          whose strings and signature live in p. On -EINVAL, p->rec.seq is the line's seq
 *          when its "seq" member was read as a valid one, else 0 (a verifier reports the
 *          seq the bad line carries); the rest of p is unspecified.
 * @reason: on -EINVAL, set to a static string "malformed: WHAT", WHAT being one of
 *          "empty line", "line too long", "not JSON", "duplicate field", "not an object",
 *          "unknown field", or the name of the member missing or out of its type or range
 *          ("seq", "time", ... "signature"; "signature" also when it is present on a record
 *          that is not a checkpoint or absent from one that is). Untouched otherwise.
 *          "not JSON" includes what JSON allows but this reader does not: a number beyond
 *          a 64-bit integer or a double, a lone surrogate escape ("\ud800"), invalid UTF-8,
 *          a NUL in a member name, nesting deeper than 2048. A "\u0000" inside a string is
 *          that member's error; "duplicate field" is for JSON only. Members are checked in
 *          the documented order, so WHAT names the first bad one.
 *
 * Returns 0, -EINVAL or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_json_parse(const char *line, size_t len, struct kh_audit_parsed *p,
                                      const char **reason);

/**
 * kh_audit_json_next_line() - the next line of JSON Lines text, as servers before the binary
 * block form (block.h) stored a run of records (each line with its newline; the last may
 * lack it).
 * @p:   the position, moved past the line and its newline; @end: the end of the text.
 * Returns false at the end; else true with @ret_line, @ret_len the line without newline.
 */
bool kh_audit_json_next_line(const uint8_t **p, const uint8_t *end, const uint8_t **ret_line,
                             size_t *ret_len);
