#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "common/limits.h"
#include "token/token-cache.h"

#define NOW INT64_C(1700000000)

/* A principal for token number i: its hash is SHA-256 of the decimal i. */
static struct kh_principal principal(unsigned i, const char *tenant, int64_t exp) {
        struct kh_principal p = { .exp = exp };
        char s[16];

        snprintf(s, sizeof(s), "%u", i);
        SHA256((const unsigned char *) s, strlen(s), p.token_hash);
        snprintf(p.tenant, sizeof(p.tenant), "%s", tenant);
        snprintf(p.sub, sizeof(p.sub), "00000000-0000-0000-0000-%012u", i);
        return p;
}

static void test_new_bounds(void **state) {
        struct kh_token_cache *c = (struct kh_token_cache *) 0x1;
        (void) state;

        assert_int_equal(kh_token_cache_new(0, &c), -EINVAL);
        assert_int_equal(kh_token_cache_new(KH_TOKEN_CACHE_MAX + 1, &c), -EINVAL);
        assert_ptr_equal(c, (struct kh_token_cache *) 0x1);
        assert_int_equal(kh_token_cache_new(KH_TOKEN_CACHE_MAX, &c), 0);
        assert_int_equal(kh_token_cache_size(c), 0);
        assert_null(kh_token_cache_free(c));
        assert_null(kh_token_cache_free(NULL));
}

static void test_hit_miss_and_counters(void **state) {
        struct kh_token_cache *c = NULL;
        struct kh_principal a = principal(1, "acme", NOW + 60), b = principal(2, "acme", NOW + 60);
        struct kh_principal got;
        (void) state;

        a.admin = true;
        assert_int_equal(kh_token_cache_new(64, &c), 0);
        assert_false(kh_token_cache_get(c, a.token_hash, "acme", NOW, &got));
        kh_token_cache_put(c, &a);
        memset(&got, 0, sizeof(got));
        assert_true(kh_token_cache_get(c, a.token_hash, "acme", NOW, &got));
        assert_memory_equal(&got, &a, sizeof(a));
        assert_false(kh_token_cache_get(c, b.token_hash, "acme", NOW, &got));
        assert_memory_equal(&got, &a, sizeof(a)); /* untouched on a miss */
        assert_int_equal(kh_token_cache_size(c), 1);
        assert_int_equal(kh_token_cache_hits(c), 1);
        assert_int_equal(kh_token_cache_misses(c), 2);

        /* same hash again replaces, does not grow */
        a.exp = NOW + 120;
        kh_token_cache_put(c, &a);
        assert_int_equal(kh_token_cache_size(c), 1);
        assert_true(kh_token_cache_get(c, a.token_hash, "acme", NOW, &got));
        assert_int_equal(got.exp, NOW + 120);

        /* the full hash is compared, not just the 8-byte tag */
        b = a;
        b.token_hash[31] ^= 1;
        assert_false(kh_token_cache_get(c, b.token_hash, "acme", NOW, &got));
        kh_token_cache_free(c);
}

static void test_tenant_mismatch_is_miss(void **state) {
        struct kh_token_cache *c = NULL;
        struct kh_principal a = principal(1, "acme", NOW + 60), got;
        (void) state;

        assert_int_equal(kh_token_cache_new(16, &c), 0);
        kh_token_cache_put(c, &a);
        assert_false(kh_token_cache_get(c, a.token_hash, "other", NOW, &got));
        assert_false(kh_token_cache_get(c, a.token_hash, "acm", NOW, &got));
        assert_false(kh_token_cache_get(c, a.token_hash, "", NOW, &got));
        assert_true(kh_token_cache_get(c, a.token_hash, "acme", NOW, &got));
        assert_int_equal(kh_token_cache_misses(c), 3);
        kh_token_cache_free(c);
}

static void test_expiry_boundary_evicts(void **state) {
        struct kh_token_cache *c = NULL;
        struct kh_principal a = principal(1, "t", NOW), got;
        (void) state;

        assert_int_equal(kh_token_cache_new(16, &c), 0);
        kh_token_cache_put(c, &a);
        /* valid while now <= exp + skew, as the verifier */
        assert_true(kh_token_cache_get(c, a.token_hash, "t", NOW + KH_CLOCK_SKEW_S, &got));
        assert_int_equal(kh_token_cache_size(c), 1);
        assert_false(kh_token_cache_get(c, a.token_hash, "t", NOW + KH_CLOCK_SKEW_S + 1, &got));
        assert_int_equal(kh_token_cache_size(c), 0);
        /* evicted: even an earlier clock does not bring it back */
        assert_false(kh_token_cache_get(c, a.token_hash, "t", NOW, &got));
        kh_token_cache_free(c);
}

static void test_bound_never_exceeded(void **state) {
        const size_t maxes[] = { 1, 5, 8, 64, 100 };
        (void) state;

        for (size_t m = 0; m < sizeof(maxes) / sizeof(maxes[0]); m++) {
                struct kh_token_cache *c = NULL;
                struct kh_principal p, got;
                size_t max = maxes[m], hits = 0;

                assert_int_equal(kh_token_cache_new(max, &c), 0);
                for (unsigned i = 0; i < 10 * max; i++) {
                        p = principal(i, "t", NOW + i);
                        kh_token_cache_put(c, &p);
                        assert_true(kh_token_cache_size(c) <= max);
                        /* the newest entry is always there */
                        assert_true(kh_token_cache_get(c, p.token_hash, "t", NOW, &got));
                }
                /* the table is full (max rounded down to whole 8-way sets) and every entry
                 * it reports is really retrievable */
                assert_int_equal(kh_token_cache_size(c), max < 8 ? max : max / 8 * 8);
                for (unsigned i = 0; i < 10 * max; i++) {
                        p = principal(i, "t", NOW + i);
                        hits += kh_token_cache_get(c, p.token_hash, "t", NOW, &got);
                }
                assert_int_equal(hits, kh_token_cache_size(c));
                kh_token_cache_free(c);
        }
}

/* One set (max 8): when full, the entry that expires first goes. */
static void test_eviction_takes_earliest_exp(void **state) {
        struct kh_token_cache *c = NULL;
        struct kh_principal p, got;
        const int64_t exps[8] = { 500, 300, 100, 700, 200, 800, 600, 400 };
        (void) state;

        assert_int_equal(kh_token_cache_new(8, &c), 0);
        for (unsigned i = 0; i < 8; i++) {
                p = principal(i, "t", NOW + exps[i]);
                kh_token_cache_put(c, &p);
        }
        p = principal(100, "t", NOW + 50);
        kh_token_cache_put(c, &p);
        assert_int_equal(kh_token_cache_size(c), 8);
        p = principal(2, "t", NOW + 100); /* exp 100: the earliest */
        assert_false(kh_token_cache_get(c, p.token_hash, "t", NOW, &got));
        for (unsigned i = 0; i < 8; i++) {
                if (i == 2)
                        continue;
                p = principal(i, "t", 0);
                assert_true(kh_token_cache_get(c, p.token_hash, "t", NOW, &got));
                assert_int_equal(got.exp, NOW + exps[i]);
        }
        kh_token_cache_free(c);
}

/* Tokens spread over the sets unevenly: with one set per hash, 12,000 tokens in 16,384
 * slots of 8-way sets leave about 570 of them without a place (each then costs a signature
 * verification on every request). With two sets per hash every one of them stays. */
static void test_three_quarters_full_keeps_every_entry(void **state) {
        struct kh_token_cache *c = NULL;
        struct kh_principal p, got;
        const unsigned n = KH_TOKEN_CACHE_MAX / 4 * 3;
        unsigned hits = 0;
        (void) state;

        assert_int_equal(kh_token_cache_new(KH_TOKEN_CACHE_MAX, &c), 0);
        for (unsigned i = 0; i < n; i++) {
                p = principal(i, "t", NOW + 1000);
                kh_token_cache_put(c, &p);
        }
        assert_int_equal(kh_token_cache_size(c), n);
        for (unsigned i = 0; i < n; i++) {
                p = principal(i, "t", 0);
                if (kh_token_cache_get(c, p.token_hash, "t", NOW, &got)) {
                        hits++;
                        assert_string_equal(got.sub, p.sub);
                }
        }
        assert_int_equal(hits, n);
        kh_token_cache_free(c);
}

/* The two sets token i may live in, as token-cache.c picks them (first and second 8 bytes
 * of the hash, modulo the number of sets). */
static void candidate_sets(unsigned i, size_t nsets, size_t ret[2]) {
        struct kh_principal p = principal(i, "t", 0);
        uint64_t a, b;

        memcpy(&a, p.token_hash, sizeof(a));
        memcpy(&b, p.token_hash + sizeof(a), sizeof(b));
        ret[0] = (size_t) (a % nsets);
        ret[1] = (size_t) (b % nsets);
}

/* The first token number from *next on whose candidate sets are (first, second). */
static unsigned token_with_sets(unsigned *next, size_t first, size_t second) {
        size_t sets[2];

        for (;; (*next)++) {
                candidate_sets(*next, 2, sets);
                if (sets[0] == first && sets[1] == second)
                        return (*next)++;
        }
}

/* Two full sets (max 16): a new token whose candidates are both of them evicts the entry
 * that expires first in either set, whichever of its two candidates holds it. */
static void test_eviction_looks_at_both_sets(void **state) {
        (void) state;

        for (size_t order = 0; order < 2; order++) {
                struct kh_token_cache *c = NULL;
                struct kh_principal p, got;
                unsigned next = 0, fill[15], early, x;

                assert_int_equal(kh_token_cache_new(16, &c), 0);
                /* tokens with two different candidate sets always go to the less full one,
                 * so 16 of them fill both sets exactly, whatever their order */
                for (size_t k = 0; k < 15; k++) {
                        fill[k] = token_with_sets(&next, k % 2, 1 - k % 2);
                        p = principal(fill[k], "t", NOW + 1000);
                        kh_token_cache_put(c, &p);
                }
                early = token_with_sets(&next, 0, 1);
                p = principal(early, "t", NOW + 10);
                kh_token_cache_put(c, &p);
                assert_int_equal(kh_token_cache_size(c), 16);

                x = token_with_sets(&next, order, 1 - order);
                p = principal(x, "t", NOW + 1000);
                kh_token_cache_put(c, &p);
                assert_int_equal(kh_token_cache_size(c), 16);
                assert_true(kh_token_cache_get(c, p.token_hash, "t", NOW, &got));
                p = principal(early, "t", 0);
                assert_false(kh_token_cache_get(c, p.token_hash, "t", NOW, &got));
                for (size_t k = 0; k < 15; k++) {
                        p = principal(fill[k], "t", 0);
                        assert_true(kh_token_cache_get(c, p.token_hash, "t", NOW, &got));
                }
                kh_token_cache_free(c);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_new_bounds),
                cmocka_unit_test(test_hit_miss_and_counters),
                cmocka_unit_test(test_tenant_mismatch_is_miss),
                cmocka_unit_test(test_expiry_boundary_evicts),
                cmocka_unit_test(test_bound_never_exceeded),
                cmocka_unit_test(test_eviction_takes_earliest_exp),
                cmocka_unit_test(test_three_quarters_full_keeps_every_entry),
                cmocka_unit_test(test_eviction_looks_at_both_sets),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
