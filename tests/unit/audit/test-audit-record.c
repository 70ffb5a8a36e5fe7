/* The audit record format against docs/audit.md: its worked example (bytes and hash,
 * computed there independently), every field in the hash, the checkpoint digest's binding,
 * field validation and the time format. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "audit/record.h"

/* docs/audit.md, "The hash": the example record and its hash. */
static const char example_hash[] =
        "2e5c2522d0e8f2998d81387be4431b55b236e17710b47540e89e4e545bd89f49";

static struct kh_audit_record example(void) {
        struct kh_audit_record r = {
                .seq = 1, .tenant = "acme", .actor = "keyhold", .action = "start", .target = "",
                .outcome = "ok", .key_version = 0, .request_id = "", .client = "", .count = 1,
        };
        memcpy(r.time, "2026-12-06T14:00:00.000Z", KH_AUDIT_TIME_LEN + 1);
        return r;
}

static void hex(const uint8_t *p, size_t n, char *out) {
        for (size_t i = 0; i < n; i++)
                snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static void test_the_documented_example(void **state) {
        struct kh_audit_record r = example();
        uint8_t h[KH_AUDIT_HASH_LEN];
        char text[2 * KH_AUDIT_HASH_LEN + 1];
        (void) state;

        assert_true(kh_audit_record_is_valid(&r));
        kh_audit_record_hash(&r, h);
        hex(h, sizeof(h), text);
        assert_string_equal(text, example_hash);
}

/* Each field, changed alone, changes the hash; the hash and signature fields do not. */
static void test_every_field_is_in_the_hash(void **state) {
        struct kh_audit_record base = example(), r;
        uint8_t h0[KH_AUDIT_HASH_LEN], h[KH_AUDIT_HASH_LEN];
        static const uint8_t sig[] = { 1, 2, 3 };
        (void) state;

        kh_audit_record_hash(&base, h0);
#define CHANGED(stmt)                                                                            \
        do {                                                                                     \
                r = base;                                                                        \
                stmt;                                                                            \
                kh_audit_record_hash(&r, h);                                                     \
                if (memcmp(h, h0, sizeof(h)) == 0)                                               \
                        fail_msg("hash unchanged by: %s", #stmt);                                \
        } while (0)
        CHANGED(r.seq = 2);
        CHANGED(r.time[22] = '1');
        CHANGED(r.tenant = "acmf");
        CHANGED(r.actor = "keyholE");
        CHANGED(r.action = "stop");
        CHANGED(r.target = "x");
        CHANGED(r.outcome = "oK");
        CHANGED(r.key_version = 1);
        CHANGED(r.request_id = "r");
        CHANGED(r.client = "c");
        CHANGED(r.count = 2);
        CHANGED(r.prev_hash[31] = 1);
        /* strings are length-prefixed: moving a byte from one field to the next differs */
        CHANGED((r.actor = "keyhol", r.action = "dstart"));
#undef CHANGED
        r = base;
        memset(r.hash, 0xff, sizeof(r.hash));
        r.signature = sig;
        r.signature_len = sizeof(sig);
        kh_audit_record_hash(&r, h);
        assert_memory_equal(h, h0, sizeof(h));
}

/* The digest binds tenant, seq and hash, and differs from the record hash's domain. */
static void test_checkpoint_digest_binding(void **state) {
        uint8_t hash[KH_AUDIT_HASH_LEN] = { 7 }, d0[KH_AUDIT_HASH_LEN], d[KH_AUDIT_HASH_LEN];
        (void) state;

        kh_audit_checkpoint_digest("acme", NULL, 10, hash, d0);
        kh_audit_checkpoint_digest("acme", NULL, 10, hash, d);
        assert_memory_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("acmf", NULL, 10, hash, d);
        assert_memory_not_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("", NULL, 10, hash, d);
        assert_memory_not_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("acme", NULL, 11, hash, d);
        assert_memory_not_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("acme", "", 10, hash, d); /* "" is the unnamed replica */
        assert_memory_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("acme", "b", 10, hash, d); /* a named one's: the second form */
        assert_memory_not_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("acme", "c", 10, hash, d0);
        assert_memory_not_equal(d, d0, sizeof(d));
        /* the name is length-prefixed: tenant "acme" replica "b" is not tenant "acmeb" */
        kh_audit_checkpoint_digest("acm", "eb", 10, hash, d0);
        assert_memory_not_equal(d, d0, sizeof(d));
        kh_audit_checkpoint_digest("acme", NULL, 10, hash, d0);
        hash[31] = 1;
        kh_audit_checkpoint_digest("acme", NULL, 10, hash, d);
        assert_memory_not_equal(d, d0, sizeof(d));
}

static void test_validation(void **state) {
        static const uint8_t sig[] = { 1 };
        struct kh_audit_record r;
        char big[KH_AUDIT_STR_MAX + 2];
        (void) state;

        memset(big, 'a', sizeof(big) - 1);
        big[sizeof(big) - 1] = 0;
#define INVALID(stmt)                                                                            \
        do {                                                                                     \
                r = example();                                                                   \
                stmt;                                                                            \
                if (kh_audit_record_is_valid(&r))                                                \
                        fail_msg("accepted: %s", #stmt);                                         \
        } while (0)
        INVALID(r.seq = 0);
        INVALID(r.seq = (uint64_t) INT64_MAX + 1);
        INVALID(r.count = 0);
        INVALID(r.time[4] = '/');
        INVALID(r.actor = NULL);
        INVALID(r.target = big);
        INVALID(r.client = "\xc3");
        INVALID((r.signature = sig, r.signature_len = 1));       /* not a checkpoint */
        INVALID(r.action = KH_AUDIT_ACTION_CHECKPOINT);           /* without a signature */
#undef INVALID
        r = example();
        big[KH_AUDIT_STR_MAX] = 0;
        r.target = big;                                          /* exactly the maximum */
        assert_true(kh_audit_record_is_valid(&r));
        r = example();
        r.action = KH_AUDIT_ACTION_CHECKPOINT;
        r.signature = sig;
        r.signature_len = 1;
        assert_true(kh_audit_record_is_valid(&r));
        r.seq = (uint64_t) INT64_MAX;
        assert_true(kh_audit_record_is_valid(&r));
}

static void test_time(void **state) {
        char t[KH_AUDIT_TIME_LEN + 1];
        static const char *const bad[] = {
                "2026-12-06T14:00:00.000", "2026-12-06T14:00:00.000z", "2026-12-06 14:00:00.000Z",
                "2026-13-06T14:00:00.000Z", "2026-02-29T00:00:00.000Z", "2026-04-31T00:00:00.000Z",
                "2026-12-06T24:00:00.000Z", "2026-12-06T14:60:00.000Z", "2026-12-06T14:00:60.000Z",
                "2026-12-00T14:00:00.000Z", "2026-12-06T14:00:00.00Z0", "+026-12-06T14:00:00.000Z",
                "2026-12-06T14:00:00.000Z ", "",
        };
        (void) state;

        assert_int_equal(kh_audit_time_format(0, t), 0);
        assert_string_equal(t, "1970-01-01T00:00:00.000Z");
        assert_int_equal(kh_audit_time_format(1796565600007LL, t), 0);
        assert_string_equal(t, "2026-12-06T14:00:00.007Z");
        assert_int_equal(kh_audit_time_format(253402300799999LL, t), 0);
        assert_string_equal(t, "9999-12-31T23:59:59.999Z");
        assert_true(kh_audit_time_is_valid(t));
        assert_int_equal(kh_audit_time_format(253402300800000LL, t), -EINVAL);
        assert_int_equal(kh_audit_time_format(-1, t), -EINVAL);
        assert_true(kh_audit_time_is_valid("2024-02-29T23:59:59.999Z"));
        assert_true(kh_audit_time_is_valid("2000-02-29T00:00:00.000Z"));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                if (kh_audit_time_is_valid(bad[i]))
                        fail_msg("accepted time %s", bad[i]);
        assert_false(kh_audit_time_is_valid("1900-02-29T00:00:00.000Z"));

        /* parsing is formatting's inverse */
        for (int64_t ms = 0; ms <= 253402300799999LL; ms += 7919LL * 86400000 + 37) {
                int64_t back = -1;

                assert_int_equal(kh_audit_time_format(ms, t), 0);
                assert_true(kh_audit_time_parse(t, &back));
                assert_int_equal(back, ms);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_the_documented_example),
                cmocka_unit_test(test_every_field_is_in_the_hash),
                cmocka_unit_test(test_checkpoint_digest_binding),
                cmocka_unit_test(test_validation),
                cmocka_unit_test(test_time),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
