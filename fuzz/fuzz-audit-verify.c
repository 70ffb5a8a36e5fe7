/* The offline verifier on a whole export: kh_audit_verify_stream() of arbitrary bytes under
 * a fixed public key (tests/unit/audit/data/acme.pem, a test-only key). Invariants:
 *  - content never makes it fail: it returns 0 with a verdict (-ENOMEM aside);
 *  - the verdict is consistent: ok only with records, at most as many checkpoints, the
 *    unsigned ones after signed_through; a failure names a step 1..6 on the line right
 *    after the records that passed, or is "no records";
 *  - the streaming reader and the same bytes split here and fed line by line
 *    (kh_audit_verifier_add_line()) give the same verdict when the input holds one chain;
 *    with several replicas' chains ("replica" members), each chain's verdict is consistent
 *    on its own and the file is ok exactly when every chain is;
 *  - no forged checkpoint verifies: the only ones ever signed with this key are the three
 *    below (in the seed corpus, from tests/unit/audit/data), so every checkpoint that
 *    passes must be one of them. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/pem.h>

#include "fuzz.h"
#include "audit/json.h"
#include "audit/verify.h"
#include "crypto/rsa.h"

#define FUZZ_MAX (256u * 1024)

static const char acme_pem[] =
        "-----BEGIN PUBLIC KEY-----\n"
        "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmwxvLXepbcqhUE1sgVsB\n"
        "ECwj5L9GS0hGkXyGBEgY/S+x2zYSxnqaVSwNZUzxk0qfNvv3qzm74kOz2Uc6LwWT\n"
        "MOchq3J48NwOHSqZkzbU4f9Bvpb7qja1aqJLaEifsid6bMVs79AkxiZn+DEn4m5p\n"
        "IU1tTWpEWbp6N9IPNsRUgeD42SG8ttL/lffi9LO1GOuTXrKdN18rx6aiePsvjzij\n"
        "6bcIwtvaCJ8rb0Pm5LZ1STQAyVoQ9hi2GyVcOcGnfa5L1Vv9BXc5Ru5DkjMo0aU+\n"
        "Mtjhi7F6ApXUw1PTCw6ddQVEjJB2cTjSDb2MOGjdpyUiHaJ4Ua9Ocy4pi3lGqB6X\n"
        "/wIDAQAB\n"
        "-----END PUBLIC KEY-----\n";

/* Every checkpoint auditref.py --generate signs with the acme test key: tenant, seq, hash. */
static const struct {
        const char *tenant;
        uint64_t seq;
        const char *hash;
} signed_checkpoints[] = {
        { "acme", 5, "aab44b024dd9120458d7cbabb726aa27a4008b96047342a3edea2fe0c5362e3d" },
        { "acme", 10, "923cf24f7da6e31d0256692057bac6b99bfb16154c9a75acb30a77a9b212cfc9" },
        { "beta", 10, "760246bdcfceaba632c02d50a2405cb46cd23b3eed443a8fc898453c1b48c200" },
};

static EVP_PKEY *pub;
static struct kh_audit_parsed parsed;

static void init(void) {
        BIO *b;

        if (pub)
                return;
        b = BIO_new_mem_buf(acme_pem, (int) sizeof(acme_pem) - 1);
        CHECK(b);
        pub = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
        CHECK(pub);
        BIO_free(b);
}

static bool known_checkpoint(const struct kh_audit_record *r) {
        char hex[2 * KH_AUDIT_HASH_LEN + 1];

        for (size_t i = 0; i < KH_AUDIT_HASH_LEN; i++) {
                static const char digits[] = "0123456789abcdef";
                hex[2 * i] = digits[r->hash[i] >> 4];
                hex[2 * i + 1] = digits[r->hash[i] & 15];
        }
        hex[sizeof(hex) - 1] = 0;
        for (size_t i = 0; i < sizeof(signed_checkpoints) / sizeof(signed_checkpoints[0]); i++)
                if (strcmp(r->tenant, signed_checkpoints[i].tenant) == 0 &&
                    r->seq == signed_checkpoints[i].seq && strcmp(hex, signed_checkpoints[i].hash) == 0)
                        return true;
        return false;
}

static void check_verdict(const struct kh_audit_verify_result *v, bool whole) {
        CHECK(v->checkpoints <= v->records && v->unsigned_records <= v->records);
        CHECK((v->signed_through == 0) == (v->checkpoints == 0));
        if (v->records) {
                CHECK(v->first_seq >= 1 && v->first_seq <= KH_AUDIT_SEQ_MAX);
                CHECK(v->records - 1 <= KH_AUDIT_SEQ_MAX - v->first_seq);
        }
        if (v->checkpoints)
                CHECK(v->signed_through >= v->first_seq &&
                      v->signed_through - v->first_seq < v->records &&
                      v->unsigned_records == v->first_seq + v->records - 1 - v->signed_through);
        else
                CHECK(v->unsigned_records == v->records);
        if (v->ok) {
                CHECK(v->records >= 1 && v->reason == NULL && v->step == 0);
                return;
        }
        CHECK(v->reason != NULL);
        if (v->step == 0) {
                CHECK(strcmp(v->reason, "no records") == 0 && v->records == 0 && v->line == 0 &&
                      v->first_bad_seq == 0);
                return;
        }
        CHECK(v->step <= 6);
        if (whole) /* one chain: the bad line follows the records that passed */
                CHECK(v->line == v->records + 1);
        /* after a record with the largest seq, the next one "should have carried" one more */
        CHECK(v->first_bad_seq <= (uint64_t) KH_AUDIT_SEQ_MAX + 1);
        CHECK(v->step == 1 ? strncmp(v->reason, "malformed: ", 11) == 0 :
              v->step == 2 ? strcmp(v->reason, "other tenant") == 0 ||
                                     strcmp(v->reason, "other replica") == 0 :
              v->step == 3 ? strcmp(v->reason, "seq gap") == 0 ||
                                     strcmp(v->reason, "seq out of order") == 0 :
              v->step == 4 ? strcmp(v->reason, "prev_hash mismatch") == 0 :
              v->step == 5 ? strcmp(v->reason, "hash mismatch") == 0 :
                             strcmp(v->reason, "bad signature") == 0);
        if (v->step >= 3)
                CHECK(v->first_bad_seq >= 1);
}

static struct kh_audit_verify_chain chains[KH_AUDIT_VERIFY_CHAINS_MAX];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_audit_verifier_freep) struct kh_audit_verifier *v = NULL;
        struct kh_audit_verify_result streamed, split;
        size_t n_chains = 0;
        bool all_ok = true;
        const char *text = (const char *) data, *end = text + size;
        FILE *f;
        int r;

        if (size > FUZZ_MAX)
                return 0;
        init();

        f = fmemopen((void *) (uintptr_t) data, size, "r");
        if (!f)
                return 0; /* fmemopen of 0 bytes fails on older glibc */
        r = kh_audit_verify_stream_chains(f, pub, NULL, &streamed, chains, &n_chains);
        fclose(f);
        if (r == -ENOMEM)
                return 0;
        CHECK(r == 0);
        if (n_chains > 1) {
                CHECK(n_chains <= KH_AUDIT_VERIFY_CHAINS_MAX);
                for (size_t i = 0; i < n_chains; i++) {
                        check_verdict(&chains[i].res, false);
                        all_ok = all_ok && chains[i].res.ok;
                }
                CHECK(streamed.ok == all_ok ||
                      (!streamed.ok && streamed.reason &&
                       strcmp(streamed.reason, "malformed: too many chains") == 0));
                return 0;
        }
        check_verdict(&streamed, true);

        CHECK(kh_audit_verifier_new(pub, &v) == 0);
        while (text < end) {
                const char *nl = memchr(text, '\n', (size_t) (end - text));
                size_t len = nl ? (size_t) (nl - text) : (size_t) (end - text);
                const char *reason;

                r = kh_audit_verifier_add_line(v, text, len);
                if (r == -ENOMEM)
                        return 0;
                if (r < 0)
                        break;
                /* it passed: a checkpoint among them must be one really signed */
                CHECK(kh_audit_json_parse(text, len, &parsed, &reason) == 0);
                if (strcmp(parsed.rec.action, KH_AUDIT_ACTION_CHECKPOINT) == 0)
                        CHECK(known_checkpoint(&parsed.rec));
                text += len + (nl != NULL);
        }
        kh_audit_verifier_result(v, &split);
        CHECK(split.ok == streamed.ok && split.records == streamed.records &&
              split.checkpoints == streamed.checkpoints && split.first_seq == streamed.first_seq &&
              split.signed_through == streamed.signed_through &&
              split.unsigned_records == streamed.unsigned_records &&
              split.first_bad_seq == streamed.first_bad_seq && split.step == streamed.step &&
              split.line == streamed.line &&
              (split.reason == streamed.reason ||
               (split.reason && streamed.reason && strcmp(split.reason, streamed.reason) == 0)));
        return 0;
}
