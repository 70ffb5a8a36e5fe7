/* Several replicas' chains in one export (docs/audit.md "Replicas"): the verifier checks
 * each replica's records as a chain of its own, whatever their interleaving, names the
 * chain and seq that fails, and a checkpoint of one replica's chain does not verify in
 * another's. The chains are made here with a P-256 key of the test's own. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/json.h"
#include "audit/verify.h"
#include "common/buf.h"
#include "common/errors.h"
#include "crypto/ecdsa.h"

#define RECORDS 12       /* per chain */
#define CHECKPOINT_AT 10 /* its signed checkpoint */

static EVP_PKEY *key;

/* Line seq (1..RECORDS) of replica's chain of tenant "acme", its actor as given. */
struct chain {
        const char *replica;
        uint8_t prev[KH_AUDIT_HASH_LEN];
        struct kh_buf lines[RECORDS + 1];
};

static void chain_make(struct chain *c, const char *replica) {
        memset(c, 0, sizeof(*c));
        c->replica = replica;
        for (uint64_t seq = 1; seq <= RECORDS; seq++) {
                bool checkpoint = seq == CHECKPOINT_AT;
                struct kh_audit_record rec = {
                        .seq = seq, .tenant = "acme", .actor = checkpoint ? "keyhold" : "alice",
                        .action = checkpoint ? KH_AUDIT_ACTION_CHECKPOINT : "read",
                        .target = checkpoint ? "" : "alice", .outcome = "ok",
                        .key_version = checkpoint ? 0 : 1, .request_id = "", .client = "",
                        .count = 1, .replica = replica,
                };
                KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 };

                assert_int_equal(kh_audit_time_format(1796565600000LL + 1000 * (int64_t) seq,
                                                      rec.time), 0);
                memcpy(rec.prev_hash, c->prev, sizeof(c->prev));
                kh_audit_record_hash(&rec, rec.hash);
                if (checkpoint) {
                        uint8_t digest[KH_AUDIT_HASH_LEN];

                        kh_audit_checkpoint_digest(rec.tenant, rec.replica, rec.seq, rec.hash,
                                                   digest);
                        kh_buf_init(&sig, KH_AUDIT_SIG_MAX, false);
                        assert_int_equal(kh_ecdsa_sign(key, digest, &sig), 0);
                        rec.signature = sig.data;
                        rec.signature_len = sig.len;
                }
                kh_buf_init(&c->lines[seq], KH_AUDIT_LINE_MAX + 1, false);
                assert_int_equal(kh_audit_json_format(&rec, &c->lines[seq]), 0);
                memcpy(c->prev, rec.hash, sizeof(c->prev));
        }
}

static void chain_clear(struct chain *c) {
        for (size_t i = 0; i <= RECORDS; i++)
                kh_buf_free(&c->lines[i]);
}

/* Replaces the first occurrence of from in line seq by to (same length). */
static void chain_edit(struct chain *c, uint64_t seq, const char *from, const char *to) {
        struct kh_buf *b = &c->lines[seq];
        char *p = memmem(b->data, b->len, from, strlen(from));

        assert_non_null(p);
        assert_int_equal(strlen(from), strlen(to));
        memcpy(p, to, strlen(to));
}

struct verdict {
        struct kh_audit_verify_result all;
        struct kh_audit_verify_chain chains[KH_AUDIT_VERIFY_CHAINS_MAX];
        size_t n;
};

/* Verifies text and returns the verdict in v. */
static void verify_text(const char *text, size_t len, struct verdict *v) {
        FILE *f = fmemopen((void *) (uintptr_t) text, len, "r");

        assert_non_null(f);
        assert_int_equal(kh_audit_verify_stream_chains(f, key, NULL, &v->all, v->chains, &v->n), 0);
        fclose(f);
}

/* The chains' lines into out: interleaved one by one (a, b, a, b, ...) or a's then b's. */
static void join(const struct chain *a, const struct chain *b, bool interleave, struct kh_buf *out) {
        kh_buf_init(out, (size_t) 1 << 20, false);
        if (interleave) {
                for (size_t i = 1; i <= RECORDS; i++) {
                        assert_int_equal(kh_buf_append(out, a->lines[i].data, a->lines[i].len), 0);
                        assert_int_equal(kh_buf_append(out, b->lines[i].data, b->lines[i].len), 0);
                }
                return;
        }
        for (size_t i = 1; i <= RECORDS; i++)
                assert_int_equal(kh_buf_append(out, a->lines[i].data, a->lines[i].len), 0);
        for (size_t i = 1; i <= RECORDS; i++)
                assert_int_equal(kh_buf_append(out, b->lines[i].data, b->lines[i].len), 0);
}

/* a and b (named as given) made, edited by edit (may be NULL), joined and verified. */
static struct verdict *verify_pair(const char *name_a, const char *name_b, bool interleave,
                                   void (*edit)(struct chain *b)) {
        struct chain a, b;
        KH_CLEANUP(kh_buf_freep) struct kh_buf text = { 0 };
        struct verdict *v = calloc(1, sizeof(*v));

        assert_non_null(v);
        chain_make(&a, name_a);
        chain_make(&b, name_b);
        if (edit)
                edit(&b);
        join(&a, &b, interleave, &text);
        verify_text((const char *) text.data, text.len, v);
        chain_clear(&a);
        chain_clear(&b);
        return v;
}

static void test_two_chains_verify(void **state) {
        struct chain a, b;
        KH_CLEANUP(kh_buf_freep) struct kh_buf text = { 0 };
        struct verdict *v = calloc(1, sizeof(*v));

        (void) state;
        chain_make(&a, NULL);
        chain_make(&b, "node-b");
        for (int interleave = 0; interleave < 2; interleave++) {
                kh_buf_free(&text);
                join(&a, &b, interleave, &text);
                verify_text((const char *) text.data, text.len, v);
                assert_true(v->all.ok);
                assert_int_equal(v->n, 2);
                assert_int_equal(v->all.records, 2 * RECORDS);
                assert_int_equal(v->all.checkpoints, 2);
                assert_string_equal(v->chains[0].replica, "");
                assert_string_equal(v->chains[1].replica, "node-b");
                assert_true(v->chains[1].res.ok);
                assert_int_equal(v->chains[1].res.records, RECORDS);
                assert_int_equal(v->chains[1].res.signed_through, CHECKPOINT_AT);
        }
        /* the named replica's lines carry it; the unnamed one's do not */
        assert_non_null(memmem(b.lines[1].data, b.lines[1].len, "\"replica\":\"node-b\"", 18));
        assert_null(memmem(a.lines[1].data, a.lines[1].len, "\"replica\"", 9));
        chain_clear(&a);
        chain_clear(&b);
        free(v);
}

static void edit_actor_7(struct chain *b) {
        chain_edit(b, 7, "\"actor\":\"alice\"", "\"actor\":\"mallo\"");
}

static void test_tampered_record_of_one_chain_is_named(void **state) {
        struct verdict *v = verify_pair(NULL, "node-b", true, edit_actor_7);

        (void) state;
        assert_false(v->all.ok);
        assert_int_equal(v->all.first_bad_seq, 7);
        assert_string_equal(v->all.reason, "hash mismatch");
        assert_int_equal(v->all.line, 14); /* b's seq 7 is the 14th line, after a's seq 7 */
        assert_int_equal(v->n, 2);
        assert_true(v->chains[0].res.ok); /* the other chain is still checked, whole */
        assert_int_equal(v->chains[0].res.records, RECORDS);
        assert_false(v->chains[1].res.ok);
        assert_int_equal(v->chains[1].res.first_bad_seq, 7);
        assert_int_equal(v->chains[1].res.line, 14);
        assert_int_equal(v->chains[1].res.records, 6);
        free(v);
}

static void remove_4(struct chain *b) {
        b->lines[4].len = 0;
}

static void test_removed_record_of_one_chain_is_named(void **state) {
        struct verdict *v = verify_pair("node-a", "node-b", false, remove_4);

        (void) state;
        assert_false(v->all.ok);
        assert_string_equal(v->chains[1].replica, "node-b");
        assert_int_equal(v->chains[1].res.first_bad_seq, 4);
        assert_string_equal(v->chains[1].res.reason, "seq gap");
        assert_true(v->chains[0].res.ok);
        free(v);
}

static void relabel(struct chain *b) {
        for (uint64_t seq = 1; seq <= RECORDS; seq++)
                chain_edit(b, seq, "\"replica\":\"node-b\"", "\"replica\":\"node-c\"");
}

/* A replica's chain relabelled as another's (every line's "replica" changed): the records'
 * hashes do not cover the name, but the checkpoint's signature does. */
static void test_relabelled_chain_fails_its_checkpoint(void **state) {
        struct verdict *v = verify_pair(NULL, "node-b", true, relabel);

        (void) state;
        assert_false(v->all.ok);
        assert_string_equal(v->chains[1].replica, "node-c");
        assert_int_equal(v->chains[1].res.first_bad_seq, CHECKPOINT_AT);
        assert_string_equal(v->chains[1].res.reason, "bad signature");
        free(v);
}

/* A record moved from one chain into another's lines is that chain's failure. */
static void test_record_of_another_replica_is_refused_in_one_verifier(void **state) {
        struct chain a, b;
        KH_CLEANUP(kh_audit_verifier_freep) struct kh_audit_verifier *ver = NULL;
        struct kh_audit_verify_result res;

        (void) state;
        chain_make(&a, NULL);
        chain_make(&b, "node-b");
        assert_int_equal(kh_audit_verifier_new(key, &ver), 0);
        assert_int_equal(kh_audit_verifier_add_line(ver, (const char *) a.lines[1].data,
                                                    a.lines[1].len), 0);
        assert_int_equal(kh_audit_verifier_add_line(ver, (const char *) b.lines[2].data,
                                                    b.lines[2].len), -KH_E_INTEGRITY);
        kh_audit_verifier_result(ver, &res);
        assert_string_equal(res.reason, "other replica");
        assert_int_equal(res.step, 2);
        chain_clear(&a);
        chain_clear(&b);
}

static void test_bad_replica_member_is_malformed(void **state) {
        static const char *bad[] = { "\"\"", "\"-x\"", "\"Node\"", "\"a b\"", "1", "null",
                                     "\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"" /* 33 */ };
        struct chain a;
        struct kh_audit_parsed *p = malloc(sizeof(*p));

        (void) state;
        chain_make(&a, "node-b");
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf line = { 0 };
                const char *at = memmem(a.lines[1].data, a.lines[1].len, "\"node-b\"", 8);
                const char *reason = NULL;
                size_t head = (size_t) (at - (const char *) a.lines[1].data);

                kh_buf_init(&line, KH_AUDIT_LINE_MAX, false);
                assert_int_equal(kh_buf_append(&line, a.lines[1].data, head), 0);
                assert_int_equal(kh_buf_append_str(&line, bad[i]), 0);
                assert_int_equal(kh_buf_append(&line, at + 8, a.lines[1].len - head - 8), 0);
                assert_int_equal(kh_audit_json_parse((const char *) line.data, line.len, p,
                                                     &reason), -EINVAL);
                assert_string_equal(reason, "malformed: replica");
        }
        free(p);
        chain_clear(&a);
}

static int setup(void **state) {
        (void) state;
        return kh_ec_p256_generate(&key) == 0 ? 0 : -1;
}

static int teardown(void **state) {
        (void) state;
        EVP_PKEY_free(key);
        return 0;
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_two_chains_verify),
                cmocka_unit_test(test_tampered_record_of_one_chain_is_named),
                cmocka_unit_test(test_removed_record_of_one_chain_is_named),
                cmocka_unit_test(test_relabelled_chain_fails_its_checkpoint),
                cmocka_unit_test(test_record_of_another_replica_is_refused_in_one_verifier),
                cmocka_unit_test(test_bad_replica_member_is_malformed),
        };

        return cmocka_run_group_tests(tests, setup, teardown);
}
