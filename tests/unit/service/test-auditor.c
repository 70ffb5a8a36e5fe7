/* The auditor (service/audit.h) on a real SQLite file and file key store: what it stores
 * reads back through kh_audit_block_each() as chains that verify with their public keys,
 * whatever the chain's key is: ECDSA P-256 for a chain whose key the auditor makes, RSA-PSS
 * for a chain whose key an earlier keyhold made as RSA (kept, never replaced). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/pem.h>

#include "app-test.h"
#include "audit/verify.h"
#include "common/errors.h"
#include "keystore/keystore.h"
#include "service/audit.h"
#include "store/store.h"

#define EVENTS 700       /* per tenant chain: more than one block's worth of repeats */

static const char *const tenants[] = { "acme", "beta" };

struct chain_check {
        const char *id;
        struct kh_audit_verifier *v;
        uint64_t records, reads;
        int error;
};

static int check_record(const struct kh_audit_record *rec, int64_t time_ms, void *userdata) {
        struct chain_check *c = userdata;

        assert_true(time_ms > 0);
        c->records++;
        if (strcmp(rec->action, "read") == 0) {
                assert_string_equal(rec->target, rec->actor);   /* a member's own event */
                assert_string_equal(rec->client, "192.0.2.7");
                assert_int_equal(strlen(rec->request_id), KH_REQUEST_ID_LEN);
                c->reads++;
        }
        /* -KH_E_INTEGRITY: this or an earlier record failed; the verdict says which */
        c->error = kh_audit_verifier_add(c->v, rec);
        return c->error < 0 && c->error != -KH_E_INTEGRITY ? c->error : 0;
}

static int check_block(const struct kh_store_audit_block *b, void *userdata) {
        struct chain_check *c = userdata;

        return kh_audit_block_each(b, c->id, check_record, c) < 0 ? -EIO : 0;
}

/* The chain's public key as the auditor hands it out, once its thread made or loaded it. */
static EVP_PKEY *public_key(struct kh_auditor *a, uint32_t chain, const char **ret_alg) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf pem = { 0 };
        BIO *bio;
        EVP_PKEY *pub;
        int r = -KH_E_NOT_READY;

        kh_buf_init(&pem, 16 * 1024, false);
        /* made in the background at start; a bound for a stuck thread, not a timing */
        for (int i = 0; i < 3000 && r == -KH_E_NOT_READY; i++) {
                r = kh_auditor_public_key(a, chain, &pem, ret_alg);
                if (r == -KH_E_NOT_READY)
                        nanosleep(&(struct timespec) { 0, 10 * 1000 * 1000 }, NULL);
        }
        assert_int_equal(r, 0);
        bio = BIO_new_mem_buf(pem.data, (int) pem.len);
        assert_non_null(bio);
        pub = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        BIO_free(bio);
        assert_non_null(pub);
        return pub;
}

static void verify_chain(struct kh_store *store, const char *id, EVP_PKEY *pub,
                         uint64_t want_reads) {
        struct kh_audit_verify_result res;
        struct chain_check c = { .id = id };

        assert_int_equal(kh_audit_verifier_new(pub, &c.v), 0);
        assert_int_equal(kh_store_audit_scan(store, id, 1, false, check_block, &c), 0);
        kh_audit_verifier_result(c.v, &res);
        assert_true(res.ok);
        assert_int_equal(res.first_seq, 1);
        assert_true(res.checkpoints >= 1);
        assert_int_equal(res.unsigned_records, 0);        /* the stop signed everything */
        assert_int_equal(res.records, c.records);
        assert_int_equal(c.reads, want_reads);
        kh_audit_verifier_free(c.v);
}

static void read_event(struct kh_audit_event *ev, uint32_t chain, unsigned i) {
        char sub[40];

        *ev = (struct kh_audit_event) { .time_ms = kh_audit_now_ms(), .chain = chain,
                                        .key_version = 1, .count = 1, .action = "read",
                                        .outcome = "ok" };
        snprintf(sub, sizeof(sub), "member-%u", i % 7);          /* repeats and changes */
        KH_AUDIT_SET(ev->actor, sub);
        snprintf(ev->request_id, sizeof(ev->request_id), "%016x", i);
        KH_AUDIT_SET(ev->client, "192.0.2.7");
}

static void test_chains_verify_under_ecdsa_and_an_older_rsa_key(void **state) {
        char dir[] = "/tmp/kh-auditor-XXXXXX";
        struct kh_config *cfg = app_test_config(dir, tenants, 2);
        pthread_rwlock_t ks_lock = PTHREAD_RWLOCK_INITIALIZER;
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        KH_CLEANUP(kh_store_closep) struct kh_store *store = NULL;
        struct kh_auditor *a = NULL;
        struct kh_key_ref ref;
        EVP_PKEY *pub[3];
        const char *alg[3] = { NULL, NULL, NULL };
        (void) state;

        assert_int_equal(kh_keystore_open(&cfg->keystore, &ks), 0);
        /* acme's audit key as a keyhold before ECDSA made it */
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) {
                                 "acme", 1, 2048, KH_KEY_AUDIT, KH_KEY_ALG_RSA }, &ref),
                         0);
        assert_int_equal(kh_auditor_new(cfg, tenants, 2, &ks, &ks_lock, &a), 0);
        for (unsigned i = 0; i < 2 * EVENTS; i++) {
                struct kh_audit_event ev;

                read_event(&ev, i % 2, i);
                kh_auditor_enqueue(a, &ev, 1);
        }
        pub[0] = public_key(a, 0, &alg[0]);
        pub[1] = public_key(a, 1, &alg[1]);
        pub[2] = public_key(a, KH_AUDIT_SERVER_CHAIN, &alg[2]);
        assert_string_equal(alg[0], KH_AUDIT_ALG_RSA_PSS);
        assert_string_equal(alg[1], KH_AUDIT_ALG_ECDSA);
        assert_string_equal(alg[2], KH_AUDIT_ALG_ECDSA);
        a = kh_auditor_free(a);          /* commits the rest, signs every chain's head */

        assert_int_equal(kh_store_open(&cfg->storage, &store), 0);
        verify_chain(store, "acme", pub[0], EVENTS);
        verify_chain(store, "beta", pub[1], EVENTS);
        verify_chain(store, "", pub[2], 0);
        /* a chain's checkpoints do not verify under another chain's key */
        {
                struct kh_audit_verify_result res;
                struct chain_check c = { .id = "acme" };

                assert_int_equal(kh_audit_verifier_new(pub[1], &c.v), 0);
                assert_int_equal(kh_store_audit_scan(store, "acme", 1, false, check_block, &c),
                                 0);
                kh_audit_verifier_result(c.v, &res);
                assert_false(res.ok);
                assert_true(res.first_bad_seq > 1);             /* at acme's first checkpoint */
                assert_int_equal(res.checkpoints, 0);
                kh_audit_verifier_free(c.v);
        }
        for (size_t i = 0; i < 3; i++)
                EVP_PKEY_free(pub[i]);
        kh_config_free(cfg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_chains_verify_under_ecdsa_and_an_older_rsa_key),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
