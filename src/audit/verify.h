/* The offline verifier of an exported audit chain (docs/audit.md "Verifying"), behind
 * `keyhold audit verify FILE --public-key PEM`. It is fed one record at a time, so a chain
 * of any length is checked in constant memory, and stops at the first record that fails,
 * naming it. Library code: it returns verdicts and errors, never logs or prints.
 *
 * Each record is checked in the documented order:
 *   1. well-formed (json.h: exactly the members, each of its type and range; "signature"
 *      exactly on checkpoints);
 *   2. tenant equal to the first record's;
 *   3. seq one more than the previous record's (the first may have any seq);
 *   4. prev_hash equal to the previous record's hash (for the first record: 32 zero bytes
 *      when its seq is 1, otherwise taken as given: the next checkpoint vouches for it);
 *   5. hash equal to SHA-256 of the canonical encoding;
 *   6. a checkpoint's signature verifies with the public key over its checkpoint digest.
 *
 * Reasons (static, stable strings), by step: 1 "malformed: WHAT" (json.h lists WHAT);
 * 2 "other tenant"; 3 "seq gap" (the seq is higher than the next one: records are missing
 * or reordered) or "seq out of order" (lower), and "truncated" (see below); 4 "prev_hash
 * mismatch"; 5 "hash mismatch"; 6 "bad signature". A file or stream without a record gives
 * "no records" (step 0).
 *
 * What a file alone cannot show: the format lets the first record carry any seq (an export
 * --since, a pruned chain), so a chain whose first records were removed verifies, starting
 * later (first_seq says where); and a chain cut short is still a chain, so removing its
 * last records leaves one that verifies, with fewer records, and those after the last
 * checkpoint left counted as unsigned, never as verified. A caller who knows more says so
 * with struct kh_audit_verify_expect: then such a file fails step 3 too.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <openssl/evp.h>

#include "audit/record.h"
#include "common/cleanup.h"

/* Bytes of a public key PEM file; an RSA-8192 one is about 1.5 KB. */
#define KH_AUDIT_PUBKEY_PEM_MAX (16 * 1024)

struct kh_audit_verify_result {
        bool ok;                   /* every record fed passed (and there was one) */
        /* The records that passed: all of them when ok, those before the bad one if not. */
        uint64_t records;
        uint64_t checkpoints;      /* of them, checkpoints (their signatures verified) */
        uint64_t first_seq;        /* the first record's seq; 0 when none passed */
        uint64_t signed_through;   /* seq of the last checkpoint that verified; 0 if none */
        uint64_t unsigned_records; /* records after that checkpoint (all, when none): intact
                                    * as far as the chain shows, but not vouched for by a
                                    * signature. JSON name: "unsigned". */
        /* When !ok: */
        uint64_t first_bad_seq; /* the seq the bad line carries; the one it should have
                                 * carried (previous seq + 1) when the seq itself is what
                                 * is wrong or cannot be read, 0 when that is the first
                                 * line; 0 for "no records" */
        unsigned step;          /* the step of docs/audit.md "Verifying" that failed (1..6),
                                 * 0 for "no records" */
        uint64_t line;          /* 1-based position of the bad record in the input (its
                                 * line in a file); 0 for "no records" */
        const char *reason;     /* static string (see above); NULL when ok */
};

/* Expectations from outside the file; 0 in a member: none. */
struct kh_audit_verify_expect {
        /* The seq the first record must carry: 1 for a whole chain, N for an export
         * --since N. Another one fails step 3 on line 1 ("seq gap" when it is higher,
         * "seq out of order" when lower), first_bad_seq being this. */
        uint64_t first_seq;
        /* The seq the chain must reach at least, e.g. that of a checkpoint (or a head)
         * obtained separately. A chain that ends before it fails step 3 as "truncated",
         * first_bad_seq being the missing seq after the last record and line the one
         * after the last; records and checkpoints then count all the records. */
        uint64_t through_seq;
};

struct kh_audit_verifier;

/* The checkpoint signature algorithms (docs/audit.md "Checkpoints"), as the admin API
 * names them: by the chain's key. */
#define KH_AUDIT_ALG_ECDSA   "ecdsa-p256-sha256"
#define KH_AUDIT_ALG_RSA_PSS "rsa-pss-sha256"

/* The algorithm an audit key signs with: KH_AUDIT_ALG_ECDSA for a P-256 key,
 * KH_AUDIT_ALG_RSA_PSS for an RSA key of 2048..8192 bits, NULL for any other key. */
const char *kh_audit_key_algorithm(EVP_PKEY *pub);

/* Checks a checkpoint signature by pub over digest (kh_audit_checkpoint_digest()), in
 * pub's algorithm. Returns 0 if it verifies, -KH_E_INTEGRITY if not, -EINVAL (not an
 * audit key), -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_audit_signature_verify(EVP_PKEY *pub,
                                            const uint8_t digest[static KH_AUDIT_HASH_LEN],
                                            const uint8_t *sig, size_t sig_len);

/**
 * kh_audit_public_key_load() - an audit public key, as `keyhold audit public-key` prints it.
 * @pem_path: a file holding exactly one PEM block "PUBLIC KEY" (SubjectPublicKeyInfo) of an
 *            EC P-256 key or an RSA key of 2048..8192 bits (kh_audit_key_algorithm()), and
 *            at most KH_AUDIT_PUBKEY_PEM_MAX bytes.
 * @ret:      on success a new key; the caller frees it (EVP_PKEY_free).
 *
 * Anything else is refused: a private key, a certificate, an "RSA PUBLIC KEY" block, a
 * second block, an EC key on another curve or an RSA-PSS-only key. Returns 0, -EINVAL (not such a file), -EFBIG,
 * -ENOMEM, or -errno of opening or reading the file.
 */
KH_MUST_CHECK int kh_audit_public_key_load(const char *pem_path, EVP_PKEY **ret);

/**
 * kh_audit_verifier_new() - a verifier of one chain, before its first record.
 * @pub: the chain's public key; the verifier keeps its own reference.
 *
 * Returns 0, -EINVAL (pub is not an audit key: kh_audit_key_algorithm()) or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_verifier_new(EVP_PKEY *pub, struct kh_audit_verifier **ret);

/* Sets v's expectations (copied); call it before the first record. */
void kh_audit_verifier_expect(struct kh_audit_verifier *v, const struct kh_audit_verify_expect *e);

/* Frees v (NULL is fine); returns NULL. */
struct kh_audit_verifier *kh_audit_verifier_free(struct kh_audit_verifier *v);
KH_DEFINE_CLEANUP(kh_audit_verifier_free, struct kh_audit_verifier *)

/**
 * kh_audit_verifier_add_line() - checks the next line of an export (steps 1-6).
 * @line, @len: the line, with or without its newline (json.h's kh_audit_json_parse()).
 *
 * Returns 0 if the record passed; -KH_E_INTEGRITY if it failed, or an earlier one did (the
 * verifier stops at the first failure and ignores what follows; kh_audit_verifier_result()
 * says why); -ENOMEM or -EIO when it could not be checked (OpenSSL failed): the record is
 * then not counted and the verdict is not changed.
 */
KH_MUST_CHECK int kh_audit_verifier_add_line(struct kh_audit_verifier *v, const char *line,
                                             size_t len);

/* The same for a record already parsed (steps 2-6; a record that is not
 * kh_audit_record_is_valid() fails step 1 as "malformed: record"). */
KH_MUST_CHECK int kh_audit_verifier_add(struct kh_audit_verifier *v,
                                        const struct kh_audit_record *rec);

/* The verdict on the records fed so far: ok, or the first failure; "no records" (not ok)
 * when nothing was fed; "truncated" when they end before the expected through_seq. */
void kh_audit_verifier_result(const struct kh_audit_verifier *v,
                              struct kh_audit_verify_result *ret);

/**
 * kh_audit_verify_stream() - verifies a whole export read from f, line by line.
 * @f:   read to its end (or to the first bad line); lines are separated by "\n", the last
 *       one may lack it; an empty line is malformed; a line longer than KH_AUDIT_LINE_MAX
 *       is malformed ("malformed: line too long") without being read whole.
 * @pub: the chain's public key.
 * @ret: the verdict, written when 0 is returned.
 *
 * Returns 0 when the input was checked (the verdict, good or bad, is in ret), or -EINVAL
 * (pub is not an audit key), -EIO (a read error) or -ENOMEM. Memory use is bounded by
 * KH_AUDIT_LINE_MAX whatever the input's size.
 */
KH_MUST_CHECK int kh_audit_verify_stream(FILE *f, EVP_PKEY *pub,
                                         struct kh_audit_verify_result *ret);

/**
 * kh_audit_verify_file() - kh_audit_verify_stream() of the file at path, with the key
 * loaded by kh_audit_public_key_load() from pubkey_pem_path.
 *
 * Returns 0 (the verdict is in ret), or an error of loading the key (-EINVAL: the PEM file
 * is not an audit public key), -errno of opening the file, -EIO or -ENOMEM. Nothing in the
 * export file's content gives an error: bad content is a verdict.
 */
KH_MUST_CHECK int kh_audit_verify_file(const char *path, const char *pubkey_pem_path,
                                       struct kh_audit_verify_result *ret);

/* kh_audit_verify_stream() and kh_audit_verify_file() with expectations (e may be NULL:
 * none, which is what those two do). Same results. */
/* The most chains one file may hold: those of one tenant's replicas. */
#define KH_AUDIT_VERIFY_CHAINS_MAX 256

/* One replica's chain in an export and its verdict. */
struct kh_audit_verify_chain {
        char replica[KH_AUDIT_REPLICA_MAX + 1]; /* "" for the unnamed replica's */
        struct kh_audit_verify_result res;      /* line: the line in the file */
};

/**
 * kh_audit_verify_stream_chains() - verifies an export holding the chains of several
 * replicas (records with a "replica" member, docs/audit.md "Replicas"), in any interleaving:
 * each replica's records are checked as a chain of their own, steps 1-6, and one chain's
 * failure does not stop the others'. A line that does not parse belongs to the chain of the
 * line before it. A file of one chain (every export before replicas had names) verifies
 * exactly as kh_audit_verify_stream_expect() always did.
 * @e:      expectations, for the unnamed replica's chain only (NULL: none).
 * @ret:    ok when every chain is (and there is one); records, checkpoints and unsigned
 *          summed; first_seq and signed_through of the first chain in the file; when not ok,
 *          first_bad_seq, step, line and reason of the failure that comes first in the file.
 * @chains: NULL, or room for KH_AUDIT_VERIFY_CHAINS_MAX: each chain's verdict, in order of
 *          their first record; @ret_n their number. A file with more chains fails at the
 *          first record of the one too many ("malformed: too many chains").
 * Returns as kh_audit_verify_stream().
 */
KH_MUST_CHECK int kh_audit_verify_stream_chains(FILE *f, EVP_PKEY *pub,
                                                const struct kh_audit_verify_expect *e,
                                                struct kh_audit_verify_result *ret,
                                                struct kh_audit_verify_chain *chains,
                                                size_t *ret_n);

KH_MUST_CHECK int kh_audit_verify_stream_expect(FILE *f, EVP_PKEY *pub,
                                                const struct kh_audit_verify_expect *e,
                                                struct kh_audit_verify_result *ret);
KH_MUST_CHECK int kh_audit_verify_file_expect(const char *path, const char *pubkey_pem_path,
                                              const struct kh_audit_verify_expect *e,
                                              struct kh_audit_verify_result *ret);
