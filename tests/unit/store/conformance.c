/* Store conformance cases, run on every backend (see conformance.h). */
#include "conformance.h"

#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/limits.h"
#include "store/store.h"

static const struct kh_store_test_backend *backend;

/* A stand-in for a DEK signature: the store keeps signatures as opaque bytes. Filled by
 * kh_store_conformance_run(). */
static uint8_t sig[256];

struct fixture {
        struct kh_config_storage cfg;
        struct kh_store *s;
};

static int fixture_setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        if (backend->create(&f->cfg) < 0 || kh_store_open(&f->cfg, &f->s) < 0) {
                free(f);
                return -1;
        }
        *state = f;
        return 0;
}

static int fixture_teardown(void **state) {
        struct fixture *f = *state;

        f->s = kh_store_close(f->s);
        backend->destroy(&f->cfg);
        free(f);
        return 0;
}

/* A blob whose bytes depend on seed and position, so swapped or truncated data shows. */
static void fill(uint8_t *p, size_t n, uint8_t seed) {
        for (size_t i = 0; i < n; i++)
                p[i] = (uint8_t) (seed * 31u + i * 7u + (i >> 8));
}

#define MAX_KEYS 64

struct collected {
        size_t n;
        struct {
                uint32_t version;
                enum kh_key_state state;
                size_t len;
                uint8_t dek[KH_WRAPPED_DEK_MAX];
                size_t sig_len;  /* 0: no signature */
                uint8_t sig[KH_STORE_SIGNATURE_MAX];
        } k[MAX_KEYS];
        size_t stop_after; /* return 42 after this many calls; 0 = never */
};

static int collect(const struct kh_tenant_key *key, void *userdata) {
        struct collected *c = userdata;

        if (c->n == MAX_KEYS || key->wrapped_dek_len > KH_WRAPPED_DEK_MAX ||
            key->signature_len > KH_STORE_SIGNATURE_MAX || !key->signature != !key->signature_len)
                return -ENOSPC;
        c->k[c->n].version = key->version;
        c->k[c->n].state = key->state;
        c->k[c->n].len = key->wrapped_dek_len;
        if (key->wrapped_dek_len)   /* a destroyed version has none (and no pointer) */
                memcpy(c->k[c->n].dek, key->wrapped_dek, key->wrapped_dek_len);
        c->k[c->n].sig_len = key->signature_len;
        if (key->signature)
                memcpy(c->k[c->n].sig, key->signature, key->signature_len);
        c->n++;
        return c->stop_after && c->n == c->stop_after ? 42 : 0;
}

/* Expects exactly this blob and version at (tenant, USER_KEY, owner). */
static void expect_record(struct kh_store *s, const char *tenant, const char *owner,
                          uint32_t version, const uint8_t *blob, size_t len) {
        struct kh_buf b;
        uint32_t v = 0xdeadbeef;

        kh_buf_init(&b, KH_SEALED_MAX, false);
        assert_int_equal(kh_store_record_get(s, tenant, KH_RECORD_USER_KEY, owner, &v, &b), 0);
        assert_int_equal(v, version);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.data, blob, len);
        kh_buf_free(&b);
}

static void test_open_reports_schema_version_and_pings(void **state) {
        struct fixture *f = *state;

        assert_int_equal(kh_store_schema_version(f->s), KH_STORE_TEST_SCHEMA_VERSION);
        assert_int_equal(kh_store_ping(f->s), 0);
        assert_string_equal(kh_store_last_error(f->s), "");
}

static void test_open_rejects_unknown_or_missing_driver(void **state) {
        struct fixture *f = *state;
        struct kh_config_storage cfg = f->cfg;
        struct kh_store *s = NULL;
        char mysql[] = "mysql";

        cfg.driver = mysql;
        assert_int_equal(kh_store_open(&cfg, &s), -EINVAL);
        cfg.driver = NULL;
        assert_int_equal(kh_store_open(&cfg, &s), -EINVAL);
        assert_null(s);
        assert_null(kh_store_close(NULL));
}

static void test_tenant_key_insert_if_absent_first_wins(void **state) {
        struct fixture *f = *state;
        uint8_t a[256], b[384];
        struct collected c = { 0 };

        fill(a, sizeof(a), 1);
        fill(b, sizeof(b), 2);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, a,
                                                              sizeof(a), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                              b, sizeof(b), sig, sizeof(sig)),
                         0);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 1);
        assert_int_equal(c.k[0].version, 1);
        assert_int_equal(c.k[0].state, KH_KEY_ACTIVE);
        assert_int_equal(c.k[0].len, sizeof(a));
        assert_memory_equal(c.k[0].dek, a, sizeof(a));
}

static void test_tenant_keys_ascending_with_states_per_tenant(void **state) {
        struct fixture *f = *state;
        uint8_t d1[1], d2[KH_WRAPPED_DEK_MAX], d3[512], other[512];
        struct collected c = { 0 };

        fill(d1, sizeof(d1), 11);
        fill(d2, sizeof(d2), 12);
        fill(d3, sizeof(d3), 13);
        fill(other, sizeof(other), 14);
        /* inserted out of order, listed ascending */
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "t1", 3, KH_KEY_ACTIVE, d3,
                                                              sizeof(d3), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "t1", 1, KH_KEY_RETIRED, d1,
                                                              sizeof(d1), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "t1", UINT32_MAX,
                                                              KH_KEY_REVOKED, other,
                                                              sizeof(other), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "t1", 2, KH_KEY_ARCHIVED, d2,
                                                              sizeof(d2), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "t2", 2, KH_KEY_ACTIVE,
                                                              other, sizeof(other),
                                                              sig, sizeof(sig)),
                         1);

        assert_int_equal(kh_store_tenant_keys(f->s, "t1", collect, &c), 0);
        assert_int_equal(c.n, 4);
        assert_int_equal(c.k[0].version, 1);
        assert_int_equal(c.k[0].state, KH_KEY_RETIRED);
        assert_int_equal(c.k[0].len, sizeof(d1));
        assert_memory_equal(c.k[0].dek, d1, sizeof(d1));
        assert_int_equal(c.k[1].version, 2);
        assert_int_equal(c.k[1].state, KH_KEY_ARCHIVED);
        assert_int_equal(c.k[1].len, sizeof(d2));
        assert_memory_equal(c.k[1].dek, d2, sizeof(d2));
        assert_int_equal(c.k[2].version, 3);
        assert_int_equal(c.k[2].state, KH_KEY_ACTIVE);
        assert_int_equal(c.k[2].len, sizeof(d3));
        assert_memory_equal(c.k[2].dek, d3, sizeof(d3));
        assert_int_equal(c.k[3].version, UINT32_MAX);
        assert_int_equal(c.k[3].state, KH_KEY_REVOKED);

        memset(&c, 0, sizeof(c));
        assert_int_equal(kh_store_tenant_keys(f->s, "t2", collect, &c), 0);
        assert_int_equal(c.n, 1);
        assert_int_equal(c.k[0].version, 2);
        assert_memory_equal(c.k[0].dek, other, sizeof(other));

        memset(&c, 0, sizeof(c));
        assert_int_equal(kh_store_tenant_keys(f->s, "nobody", collect, &c), 0);
        assert_int_equal(c.n, 0);
}

static void test_tenant_keys_stops_at_callback_value(void **state) {
        struct fixture *f = *state;
        uint8_t d[32];
        struct collected c = { .stop_after = 2 };

        fill(d, sizeof(d), 3);
        for (uint32_t v = 1; v <= 4; v++)
                assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", v,
                                                                      KH_KEY_ARCHIVED, d,
                                                                      sizeof(d), sig, sizeof(sig)),
                                 1);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 42);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.k[1].version, 2);

        /* the statement was reset: a second walk starts from the beginning */
        memset(&c, 0, sizeof(c));
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 4);
        assert_int_equal(c.k[0].version, 1);
}

static void test_tenant_key_set_state(void **state) {
        struct fixture *f = *state;
        uint8_t d[32];
        struct collected c = { 0 };

        fill(d, sizeof(d), 4);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 2, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_set_state(f->s, "acme", 1, KH_KEY_ARCHIVED), 0);
        assert_int_equal(kh_store_tenant_key_set_state(f->s, "acme", 1, KH_KEY_ARCHIVED), 0);
        assert_int_equal(kh_store_tenant_key_set_state(f->s, "acme", 3, KH_KEY_ARCHIVED), -ENOENT);
        assert_int_equal(kh_store_tenant_key_set_state(f->s, "other", 1, KH_KEY_REVOKED), -ENOENT);

        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.k[0].state, KH_KEY_ARCHIVED);
        assert_int_equal(c.k[1].state, KH_KEY_ACTIVE);
        assert_memory_equal(c.k[0].dek, d, sizeof(d)); /* the DEK is untouched */
}

static void test_tenant_key_signature_round_trips(void **state) {
        struct fixture *f = *state;
        uint8_t d[256], s1[1], s2[KH_STORE_SIGNATURE_MAX], other[256];
        struct collected c = { 0 };

        fill(d, sizeof(d), 5);
        fill(s1, sizeof(s1), 6);
        fill(s2, sizeof(s2), 7);
        fill(other, sizeof(other), 8);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                              d, sizeof(d), s1, sizeof(s1)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 2, KH_KEY_ACTIVE, d,
                                                              sizeof(d), s2, sizeof(s2)),
                         1);
        /* the losing insert's signature is not stored either */
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 2, KH_KEY_ACTIVE, d,
                                                              sizeof(d), other, sizeof(other)),
                         0);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.k[0].sig_len, sizeof(s1));
        assert_memory_equal(c.k[0].sig, s1, sizeof(s1));
        assert_int_equal(c.k[1].sig_len, sizeof(s2));
        assert_memory_equal(c.k[1].sig, s2, sizeof(s2));
}

/* A row written before signatures (made here by the backend's own client) gets one; a
 * signed row keeps its own. */
static void test_tenant_key_set_signature_only_where_absent(void **state) {
        struct fixture *f = *state;
        uint8_t d[64], s1[300], s2[300];
        struct collected c = { 0 };

        fill(d, sizeof(d), 9);
        fill(s1, sizeof(s1), 10);
        fill(s2, sizeof(s2), 11);
        for (uint32_t v = 1; v <= 2; v++)
                assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", v,
                                                                      KH_KEY_ARCHIVED, d,
                                                                      sizeof(d), sig,
                                                                      sizeof(sig)),
                                 1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "other", 1, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        assert_int_equal(backend->clear_signatures(&f->cfg, "acme"), 0);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.k[0].sig_len, 0);
        assert_int_equal(c.k[1].sig_len, 0);

        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 2, s1, sizeof(s1)), 1);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 2, s2, sizeof(s2)), 0);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "other", 1, s2, sizeof(s2)), 0);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 3, s2, sizeof(s2)),
                         -ENOENT);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "nobody", 1, s2, sizeof(s2)),
                         -ENOENT);

        memset(&c, 0, sizeof(c));
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.k[0].sig_len, 0); /* version 1 untouched */
        assert_int_equal(c.k[1].sig_len, sizeof(s1));
        assert_memory_equal(c.k[1].sig, s1, sizeof(s1));
        assert_memory_equal(c.k[1].dek, d, sizeof(d));
        assert_int_equal(c.k[1].state, KH_KEY_ARCHIVED);
        memset(&c, 0, sizeof(c));
        assert_int_equal(kh_store_tenant_keys(f->s, "other", collect, &c), 0);
        assert_int_equal(c.k[0].sig_len, sizeof(sig));
        assert_memory_equal(c.k[0].sig, sig, sizeof(sig));
}

/* keystore migrate's compare-and-set: a row is rewrapped only while it holds the bytes read,
 * and never in a state without a DEK. */
static void test_tenant_key_rewrap_compare_and_set(void **state) {
        struct fixture *f = *state;
        uint8_t d[64], d2[96], d3[80], s2[300];
        struct collected c = { 0 };

        fill(d, sizeof(d), 12);
        fill(d2, sizeof(d2), 13);
        fill(d3, sizeof(d3), 14);
        fill(s2, sizeof(s2), 15);
        for (uint32_t v = 1; v <= 2; v++)
                assert_int_equal(kh_store_tenant_key_insert_if_absent(
                                         f->s, "acme", v, v == 1 ? KH_KEY_RETIRED : KH_KEY_REVOKED,
                                         d, sizeof(d), sig, sizeof(sig)),
                                 1);
        assert_int_equal(kh_store_tenant_key_rewrap(f->s, "acme", 2, d, sizeof(d), d2, sizeof(d2),
                                                    s2, sizeof(s2)),
                         1);
        /* the old bytes are gone: a second run changes nothing */
        assert_int_equal(kh_store_tenant_key_rewrap(f->s, "acme", 2, d, sizeof(d), d3, sizeof(d3),
                                                    sig, sizeof(sig)),
                         0);
        assert_int_equal(kh_store_tenant_key_rewrap(f->s, "acme", 1, d, sizeof(d), d2, sizeof(d2),
                                                    s2, sizeof(s2)),
                         0);  /* retired: no DEK to move */
        assert_int_equal(kh_store_tenant_key_rewrap(f->s, "acme", 3, d, sizeof(d), d2, sizeof(d2),
                                                    s2, sizeof(s2)),
                         0);
        assert_int_equal(kh_store_tenant_key_rewrap(f->s, "acme", 2, d, 0, d2, sizeof(d2), s2,
                                                    sizeof(s2)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.k[0].len, sizeof(d));
        assert_memory_equal(c.k[0].dek, d, sizeof(d));
        assert_int_equal(c.k[1].len, sizeof(d2));
        assert_memory_equal(c.k[1].dek, d2, sizeof(d2));
        assert_int_equal(c.k[1].sig_len, sizeof(s2));
        assert_memory_equal(c.k[1].sig, s2, sizeof(s2));
        assert_int_equal(c.k[1].state, KH_KEY_REVOKED);
}

static void expect_meta(struct kh_store *s, const char *key, const uint8_t *value, size_t len) {
        struct kh_buf b;

        kh_buf_init(&b, KH_STORE_META_VALUE_MAX, false);
        assert_int_equal(kh_store_meta_get(s, key, &b), 0);
        assert_int_equal(b.len, len);
        assert_memory_equal(b.data, value, len);
        kh_buf_free(&b);
}

static void test_meta_get_put(void **state) {
        struct fixture *f = *state;
        uint8_t big[KH_STORE_META_VALUE_MAX];
        struct kh_buf b;

        fill(big, sizeof(big), 12);
        kh_buf_init(&b, KH_STORE_META_VALUE_MAX, false);
        assert_int_equal(kh_buf_append(&b, "xy", 2), 0);
        assert_int_equal(kh_store_meta_get(f->s, "dek-signatures", &b), -ENOENT);
        assert_int_equal(b.len, 2);

        assert_int_equal(kh_store_meta_put(f->s, "dek-signatures", (const uint8_t *) "required",
                                           8),
                         0);
        assert_int_equal(kh_store_meta_put(f->s, "a.b_c-9", big, sizeof(big)), 0);
        /* appended after what the buffer held */
        assert_int_equal(kh_store_meta_get(f->s, "dek-signatures", &b), 0);
        assert_int_equal(b.len, 2 + 8);
        assert_memory_equal(b.data, "xyrequired", 10);
        expect_meta(f->s, "a.b_c-9", big, sizeof(big));

        /* put replaces */
        assert_int_equal(kh_store_meta_put(f->s, "dek-signatures", (const uint8_t *) "v", 1), 0);
        expect_meta(f->s, "dek-signatures", (const uint8_t *) "v", 1);
        expect_meta(f->s, "a.b_c-9", big, sizeof(big));

        /* a buffer too small: -E2BIG, nothing written */
        kh_buf_free(&b);
        kh_buf_init(&b, sizeof(big) - 1, false);
        assert_int_equal(kh_store_meta_get(f->s, "a.b_c-9", &b), -E2BIG);
        assert_int_equal(b.len, 0);
        kh_buf_free(&b);
}

static void test_record_insert_get_put(void **state) {
        struct fixture *f = *state;
        const char *owner = "8d3c0f4e-62a1-4c1b-9f0e-2b7a1d5e9c44";
        uint8_t a[100], b[120], c[KH_SEALED_MAX];

        fill(a, sizeof(a), 21);
        fill(b, sizeof(b), 22);
        fill(c, sizeof(c), 23);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, owner, 1, a,
                                                sizeof(a)),
                         0);
        expect_record(f->s, "acme", owner, 1, a, sizeof(a));

        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, owner, 2, b,
                                                sizeof(b)),
                         -EEXIST);
        expect_record(f->s, "acme", owner, 1, a, sizeof(a));

        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, owner, 2, b,
                                             sizeof(b)),
                         0);
        expect_record(f->s, "acme", owner, 2, b, sizeof(b));

        /* put creates a record too; the largest sealed size round-trips */
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u2", 7, c,
                                             sizeof(c)),
                         0);
        expect_record(f->s, "acme", "u2", 7, c, sizeof(c));
        expect_record(f->s, "acme", owner, 2, b, sizeof(b));
}

static void test_transaction_commits_together_or_not_at_all(void **state) {
        struct fixture *f = *state;
        uint8_t a[60], b[61];
        uint32_t v = 0;
        struct kh_buf buf;

        fill(a, sizeof(a), 31);
        fill(b, sizeof(b), 32);
        kh_buf_init(&buf, KH_SEALED_MAX, false);

        /* rolled back: neither write exists afterwards */
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "t1", 1, a, sizeof(a)), 0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "t2", 1, b, sizeof(b)), 0);
        expect_record(f->s, "acme", "t1", 1, a, sizeof(a)); /* visible inside the transaction */
        kh_store_tx_rollback(f->s);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "t1", &v, &buf), -ENOENT);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "t2", &v, &buf), -ENOENT);

        /* committed: both exist; a duplicate insert inside the batch is refused on its own */
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "t1", 1, a, sizeof(a)), 0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "t2", 2, b, sizeof(b)), 0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "t2", 3, a, sizeof(a)), -EEXIST);
        assert_int_equal(kh_store_tx_commit(f->s), 0);
        expect_record(f->s, "acme", "t1", 1, a, sizeof(a));
        expect_record(f->s, "acme", "t2", 2, b, sizeof(b));

        /* rollback without a transaction is a no-op; commit without one is an error */
        kh_store_tx_rollback(f->s);
        assert_true(kh_store_tx_commit(f->s) < 0);
        expect_record(f->s, "acme", "t2", 2, b, sizeof(b));
        kh_buf_free(&buf);
}

/* One operation of a group commit that fails half-way leaves nothing; the batch's other
 * writes still commit. */
static void test_savepoint_undoes_one_operation_only(void **state) {
        struct fixture *f = *state;
        uint8_t a[60], b[61], c[62];
        uint32_t v = 0;
        struct kh_buf buf;

        fill(a, sizeof(a), 41);
        fill(b, sizeof(b), 42);
        fill(c, sizeof(c), 43);
        kh_buf_init(&buf, KH_SEALED_MAX, false);

        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "s1", 1, a, sizeof(a)), 0);
        /* undone: two writes, one of them replacing s1 */
        assert_int_equal(kh_store_savepoint(f->s), 0);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "s1", 1, c, sizeof(c)), 0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "s2", 1, b, sizeof(b)), 0);
        kh_store_savepoint_rollback(f->s);
        expect_record(f->s, "acme", "s1", 1, a, sizeof(a));
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "s2", &v, &buf), -ENOENT);
        /* kept: released into the transaction, durable with it */
        assert_int_equal(kh_store_savepoint(f->s), 0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "s3", 2, c, sizeof(c)), 0);
        assert_int_equal(kh_store_savepoint_release(f->s), 0);
        assert_int_equal(kh_store_tx_commit(f->s), 0);
        expect_record(f->s, "acme", "s1", 1, a, sizeof(a));
        expect_record(f->s, "acme", "s3", 2, c, sizeof(c));
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "s2", &v, &buf), -ENOENT);
        kh_buf_free(&buf);
}

static void test_record_get_missing_leaves_outputs_alone(void **state) {
        struct fixture *f = *state;
        uint8_t a[40];
        struct kh_buf b;
        uint32_t v = 0xdeadbeef;

        fill(a, sizeof(a), 31);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1, a,
                                                sizeof(a)),
                         0);
        kh_buf_init(&b, KH_SEALED_MAX, false);
        assert_int_equal(kh_buf_append(&b, "xy", 2), 0);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u2", &v, &b),
                         -ENOENT);
        /* the kind is part of the key */
        assert_int_equal(kh_store_record_get(f->s, "acme", (enum kh_record_kind) 2, "u1", &v, &b),
                         -ENOENT);
        assert_int_equal(v, 0xdeadbeef);
        assert_int_equal(b.len, 2);

        /* found: appended after what the buffer held */
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b), 0);
        assert_int_equal(v, 1);
        assert_int_equal(b.len, 2 + sizeof(a));
        assert_memory_equal(b.data, "xy", 2);
        assert_memory_equal(b.data + 2, a, sizeof(a));
        kh_buf_free(&b);

        /* a buffer too small: -E2BIG, nothing written */
        v = 0xdeadbeef;
        kh_buf_init(&b, sizeof(a) - 1, false);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u1", &v, &b),
                         -E2BIG);
        assert_int_equal(v, 0xdeadbeef);
        assert_int_equal(b.len, 0);
        kh_buf_free(&b);
}

static void test_record_count_by_version(void **state) {
        struct fixture *f = *state;
        char owner[16];
        uint8_t a[48];
        uint64_t n = 12345;

        fill(a, sizeof(a), 41);
        for (int i = 0; i < 5; i++) {
                (void) snprintf(owner, sizeof(owner), "u%d", i);
                assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, owner,
                                                        i < 3 ? 1 : 2, a, sizeof(a)),
                                 0);
        }
        for (int i = 0; i < 4; i++) {
                (void) snprintf(owner, sizeof(owner), "u%d", i);
                assert_int_equal(kh_store_record_insert(f->s, "other", KH_RECORD_USER_KEY, owner,
                                                        1, a, sizeof(a)),
                                 0);
        }
        assert_int_equal(kh_store_record_count(f->s, "acme", 1, &n), 0);
        assert_int_equal(n, 3);
        assert_int_equal(kh_store_record_count(f->s, "acme", 2, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(kh_store_record_count(f->s, "acme", 3, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(kh_store_record_count(f->s, "other", 1, &n), 0);
        assert_int_equal(n, 4);

        /* re-sealing under version 2 moves the record between counts */
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u0", 2, a,
                                             sizeof(a)),
                         0);
        assert_int_equal(kh_store_record_count(f->s, "acme", 1, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(kh_store_record_count(f->s, "acme", 2, &n), 0);
        assert_int_equal(n, 3);
}

static void test_tenants_are_isolated(void **state) {
        struct fixture *f = *state;
        uint8_t a[64], b[64];

        fill(a, sizeof(a), 51);
        fill(b, sizeof(b), 52);
        assert_int_equal(kh_store_record_insert(f->s, "t1", KH_RECORD_USER_KEY, "same", 1, a,
                                                sizeof(a)),
                         0);
        assert_int_equal(kh_store_record_insert(f->s, "t2", KH_RECORD_USER_KEY, "same", 5, b,
                                                sizeof(b)),
                         0);
        expect_record(f->s, "t1", "same", 1, a, sizeof(a));
        expect_record(f->s, "t2", "same", 5, b, sizeof(b));

        assert_int_equal(kh_store_record_put(f->s, "t2", KH_RECORD_USER_KEY, "same", 6, a,
                                             sizeof(a)),
                         0);
        expect_record(f->s, "t1", "same", 1, a, sizeof(a));
        expect_record(f->s, "t2", "same", 6, a, sizeof(a));
}

static void test_reopen_keeps_data(void **state) {
        struct fixture *f = *state;
        uint8_t d[300], a[90];
        struct collected c = { 0 };

        fill(d, sizeof(d), 61);
        fill(a, sizeof(a), 62);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1, a,
                                                sizeof(a)),
                         0);
        assert_int_equal(kh_store_meta_put(f->s, "k", a, sizeof(a)), 0);
        f->s = kh_store_close(f->s);
        assert_null(f->s);

        assert_int_equal(kh_store_open(&f->cfg, &f->s), 0);
        assert_int_equal(kh_store_schema_version(f->s), KH_STORE_TEST_SCHEMA_VERSION);
        expect_record(f->s, "acme", "u1", 1, a, sizeof(a));
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 1);
        assert_memory_equal(c.k[0].dek, d, sizeof(d));
        assert_int_equal(c.k[0].sig_len, sizeof(sig));
        assert_memory_equal(c.k[0].sig, sig, sizeof(sig));
        expect_meta(f->s, "k", a, sizeof(a));
        if (backend->migration_count) {
                for (int version = 1; version <= KH_STORE_TEST_SCHEMA_VERSION; version++) {
                        uint64_t n = 0;
                        assert_int_equal(backend->migration_count(&f->cfg, version, &n), 0);
                        assert_int_equal(n, 1);
                }
        }
}

static void test_arguments_out_of_range_are_einval(void **state) {
        struct fixture *f = *state;
        uint8_t big[KH_SEALED_MAX + 1], d[KH_WRAPPED_DEK_MAX + 1];
        char tenant63[64], tenant64[65], owner255[256], owner256[257];
        struct collected c = { 0 };
        struct kh_buf b;
        uint32_t v = 7;
        uint64_t n = 0;

        fill(big, sizeof(big), 71);
        fill(d, sizeof(d), 72);
        memset(tenant63, 'a', 63);
        tenant63[63] = 0;
        memset(tenant64, 'a', 64);
        tenant64[64] = 0;
        memset(owner255, 'o', 255);
        owner255[255] = 0;
        memset(owner256, 'o', 256);
        owner256[256] = 0;
        kh_buf_init(&b, KH_SEALED_MAX, false);

        static const char *const bad_tenants[] = { "", "Acme", "-acme", "ac me", "ac/me" };
        for (size_t i = 0; i < sizeof(bad_tenants) / sizeof(bad_tenants[0]); i++) {
                const char *t = bad_tenants[i];
                assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, t, 1, KH_KEY_ACTIVE,
                                                                      d, 32, sig, sizeof(sig)),
                                 -EINVAL);
                assert_int_equal(kh_store_tenant_keys(f->s, t, collect, &c), -EINVAL);
                assert_int_equal(kh_store_tenant_key_set_state(f->s, t, 1, KH_KEY_ACTIVE),
                                 -EINVAL);
                assert_int_equal(kh_store_record_get(f->s, t, KH_RECORD_USER_KEY, "u", &v, &b),
                                 -EINVAL);
                assert_int_equal(kh_store_record_insert(f->s, t, KH_RECORD_USER_KEY, "u", 1, big,
                                                        16),
                                 -EINVAL);
                assert_int_equal(kh_store_record_put(f->s, t, KH_RECORD_USER_KEY, "u", 1, big, 16),
                                 -EINVAL);
                assert_int_equal(kh_store_record_count(f->s, t, 1, &n), -EINVAL);
        }
        assert_int_equal(kh_store_record_put(f->s, NULL, KH_RECORD_USER_KEY, "u", 1, big, 16),
                         -EINVAL);
        assert_int_equal(kh_store_record_put(f->s, tenant64, KH_RECORD_USER_KEY, "u", 1, big, 16),
                         -EINVAL);

        /* owners */
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "", 1, big, 16),
                         -EINVAL);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, NULL, 1, big, 16),
                         -EINVAL);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, owner256, 1,
                                                big, 16),
                         -EINVAL);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, owner256, &v, &b),
                         -EINVAL);

        /* blobs and kinds */
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u", 1, big, 0),
                         -EINVAL);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u", 1, big,
                                             KH_SEALED_MAX + 1),
                         -EINVAL);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u", 1, big,
                                                KH_SEALED_MAX + 1),
                         -EINVAL);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u", 1, NULL,
                                                16),
                         -EINVAL);
        assert_int_equal(kh_store_record_put(f->s, "acme", (enum kh_record_kind) 0, "u", 1, big,
                                             16),
                         -EINVAL);

        /* wrapped DEKs and states */
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              0, sig, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              KH_WRAPPED_DEK_MAX + 1,
                                                              sig, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE,
                                                              NULL, 32, sig, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1,
                                                              (enum kh_key_state) 0, d, 32,
                                                              sig, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1,
                                                              (enum kh_key_state) 6, d, 32,
                                                              sig, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_set_state(f->s, "acme", 1, (enum kh_key_state) 6),
                         -EINVAL);

        /* signatures */
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              32, NULL, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              32, sig, 0),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              32, d, KH_STORE_SIGNATURE_MAX + 1),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 1, NULL, sizeof(sig)),
                         -EINVAL);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 1, sig, 0), -EINVAL);
        assert_int_equal(kh_store_tenant_key_set_signature(f->s, "acme", 1, d,
                                                           KH_STORE_SIGNATURE_MAX + 1),
                         -EINVAL);
        for (size_t i = 0; i < sizeof(bad_tenants) / sizeof(bad_tenants[0]); i++)
                assert_int_equal(kh_store_tenant_key_set_signature(f->s, bad_tenants[i], 1, sig,
                                                                   sizeof(sig)),
                                 -EINVAL);

        /* meta keys and values */
        char key64[KH_STORE_META_KEY_MAX + 1], key65[KH_STORE_META_KEY_MAX + 2];
        memset(key64, 'k', sizeof(key64) - 1);
        key64[sizeof(key64) - 1] = 0;
        memset(key65, 'k', sizeof(key65) - 1);
        key65[sizeof(key65) - 1] = 0;
        const char *const bad_keys[] = { "", "Key", "a b", "a/b", "k\xc3\xa9", key65 };
        for (size_t i = 0; i < sizeof(bad_keys) / sizeof(bad_keys[0]); i++) {
                assert_int_equal(kh_store_meta_put(f->s, bad_keys[i], d, 1), -EINVAL);
                assert_int_equal(kh_store_meta_get(f->s, bad_keys[i], &b), -EINVAL);
        }
        assert_int_equal(kh_store_meta_put(f->s, NULL, d, 1), -EINVAL);
        assert_int_equal(kh_store_meta_get(f->s, NULL, &b), -EINVAL);
        assert_int_equal(kh_store_meta_put(f->s, "k", NULL, 1), -EINVAL);
        assert_int_equal(kh_store_meta_put(f->s, "k", d, 0), -EINVAL);
        assert_int_equal(kh_store_meta_put(f->s, "k", d, KH_STORE_META_VALUE_MAX + 1), -EINVAL);
        assert_int_equal(kh_store_meta_get(f->s, "k", &b), -ENOENT);

        /* nothing above was stored; the limits themselves are accepted */
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 0);
        assert_int_equal(kh_store_record_get(f->s, "acme", KH_RECORD_USER_KEY, "u", &v, &b),
                         -ENOENT);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, tenant63, 1, KH_KEY_ACTIVE,
                                                              d, KH_WRAPPED_DEK_MAX, d,
                                                              KH_STORE_SIGNATURE_MAX),
                         1);
        assert_int_equal(kh_store_meta_put(f->s, key64, d, KH_STORE_META_VALUE_MAX),
                         0);
        expect_meta(f->s, key64, d, KH_STORE_META_VALUE_MAX);
        assert_int_equal(kh_store_record_insert(f->s, tenant63, KH_RECORD_USER_KEY, owner255, 1,
                                                big, KH_SEALED_MAX),
                         0);
        expect_record(f->s, tenant63, owner255, 1, big, KH_SEALED_MAX);
        kh_buf_free(&b);
}

/* Threads report results; cmocka's assertions run on the main thread only. */
#define OPENERS 4
#define OPEN_ROUNDS 32

struct opener {
        pthread_barrier_t *barrier;
        const struct kh_config_storage *cfg;
        struct kh_store *s;
        int r;
};

static void *open_thread(void *p) {
        struct opener *o = p;

        (void) pthread_barrier_wait(o->barrier);
        o->r = kh_store_open(o->cfg, &o->s);
        return NULL;
}

static void test_concurrent_openers_of_empty_database_migrate_once(void **state) {
        (void) state;

        for (int round = 0; round < OPEN_ROUNDS; round++) {
                struct kh_config_storage cfg = { 0 };
                struct opener o[OPENERS];
                pthread_t t[OPENERS];
                pthread_barrier_t barrier;

                assert_int_equal(backend->create(&cfg), 0);
                assert_int_equal(pthread_barrier_init(&barrier, NULL, OPENERS), 0);
                for (int i = 0; i < OPENERS; i++) {
                        o[i] = (struct opener) { .barrier = &barrier, .cfg = &cfg, .r = 1 };
                        assert_int_equal(pthread_create(&t[i], NULL, open_thread, &o[i]), 0);
                }
                for (int i = 0; i < OPENERS; i++)
                        assert_int_equal(pthread_join(t[i], NULL), 0);
                (void) pthread_barrier_destroy(&barrier);

                for (int i = 0; i < OPENERS; i++) {
                        assert_int_equal(o[i].r, 0);
                        assert_int_equal(kh_store_schema_version(o[i].s),
                                         KH_STORE_TEST_SCHEMA_VERSION);
                        assert_int_equal(kh_store_ping(o[i].s), 0);
                }
                /* each connection sees what another wrote */
                assert_int_equal(kh_store_record_insert(o[0].s, "acme", KH_RECORD_USER_KEY, "u",
                                                        3, (const uint8_t *) "sealed", 6),
                                 0);
                expect_record(o[OPENERS - 1].s, "acme", "u", 3, (const uint8_t *) "sealed", 6);
                for (int i = 0; i < OPENERS; i++)
                        o[i].s = kh_store_close(o[i].s);

                if (backend->migration_count) {
                        uint64_t n = 0;
                        assert_int_equal(backend->migration_count(&cfg, 1, &n), 0);
                        assert_int_equal(n, 1);
                }
                backend->destroy(&cfg);
        }
}

#define RACE_ROUNDS 40

struct racer {
        pthread_barrier_t *barrier;
        struct kh_store *s;
        uint8_t id;
        int dek_r[RACE_ROUNDS + 1];
        int rec_r[RACE_ROUNDS + 1];
        int sig_r[RACE_ROUNDS + 1];
};

/* Runs fn on r[0] and r[1] (ids 1 and 2) in two threads at once, each on a connection of
 * its own; fn waits at the barrier before each racing call. */
static void race(struct fixture *f, void *(*fn)(void *), struct racer r[2]) {
        pthread_barrier_t barrier;
        pthread_t t[2];

        assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
        for (int i = 0; i < 2; i++) {
                r[i] = (struct racer) { .barrier = &barrier, .id = (uint8_t) (i + 1) };
                assert_int_equal(kh_store_open(&f->cfg, &r[i].s), 0);
        }
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, fn, &r[i]), 0);
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        (void) pthread_barrier_destroy(&barrier);
        for (int i = 0; i < 2; i++)
                r[i].s = kh_store_close(r[i].s);
}

static void *race_thread(void *p) {
        struct racer *rc = p;
        uint8_t dek[256], blob[64];
        char owner[16];

        fill(dek, sizeof(dek), rc->id);
        fill(blob, sizeof(blob), (uint8_t) (rc->id + 100));
        for (uint32_t v = 1; v <= RACE_ROUNDS; v++) {
                (void) pthread_barrier_wait(rc->barrier);
                rc->dek_r[v] = kh_store_tenant_key_insert_if_absent(rc->s, "acme", v,
                                                                    KH_KEY_ACTIVE, dek,
                                                                    sizeof(dek), sig, sizeof(sig));
                (void) snprintf(owner, sizeof(owner), "u%u", v);
                rc->rec_r[v] = kh_store_record_insert(rc->s, "acme", KH_RECORD_USER_KEY, owner,
                                                      rc->id, blob, sizeof(blob));
        }
        return NULL;
}

static void test_racing_inserts_have_exactly_one_winner(void **state) {
        struct fixture *f = *state;
        struct racer r[2];
        struct collected *c;

        race(f, race_thread, r);

        c = calloc(1, sizeof(*c));
        assert_non_null(c);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, c), 0);
        assert_int_equal(c->n, RACE_ROUNDS);
        for (uint32_t v = 1; v <= RACE_ROUNDS; v++) {
                int winner;
                uint8_t dek[256], blob[64];
                char owner[16];

                /* exactly one insert per version reports 1, and its DEK is the one stored */
                assert_true((r[0].dek_r[v] == 1 && r[1].dek_r[v] == 0) ||
                            (r[0].dek_r[v] == 0 && r[1].dek_r[v] == 1));
                winner = r[0].dek_r[v] == 1 ? 0 : 1;
                fill(dek, sizeof(dek), r[winner].id);
                assert_int_equal(c->k[v - 1].version, v);
                assert_memory_equal(c->k[v - 1].dek, dek, sizeof(dek));

                assert_true((r[0].rec_r[v] == 0 && r[1].rec_r[v] == -EEXIST) ||
                            (r[0].rec_r[v] == -EEXIST && r[1].rec_r[v] == 0));
                winner = r[0].rec_r[v] == 0 ? 0 : 1;
                fill(blob, sizeof(blob), (uint8_t) (r[winner].id + 100));
                (void) snprintf(owner, sizeof(owner), "u%u", v);
                expect_record(f->s, "acme", owner, r[winner].id, blob, sizeof(blob));
        }
        free(c);
}

/* Two processes signing the same unsigned rows at once (replicas back-filling after an
 * upgrade): for each row exactly one set_signature reports 1, and its signature is kept. */
static void *sign_thread(void *p) {
        struct racer *rc = p;
        uint8_t mine[128];

        fill(mine, sizeof(mine), rc->id);
        for (uint32_t v = 1; v <= RACE_ROUNDS; v++) {
                (void) pthread_barrier_wait(rc->barrier);
                rc->sig_r[v] = kh_store_tenant_key_set_signature(rc->s, "acme", v, mine,
                                                                 sizeof(mine));
        }
        return NULL;
}

static void test_racing_signers_keep_exactly_one_signature(void **state) {
        struct fixture *f = *state;
        struct racer r[2];
        struct collected *c;
        uint8_t d[32];

        fill(d, sizeof(d), 13);
        for (uint32_t v = 1; v <= RACE_ROUNDS; v++)
                assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", v,
                                                                      KH_KEY_ARCHIVED, d,
                                                                      sizeof(d), sig,
                                                                      sizeof(sig)),
                                 1);
        assert_int_equal(backend->clear_signatures(&f->cfg, "acme"), 0);
        race(f, sign_thread, r);

        c = calloc(1, sizeof(*c));
        assert_non_null(c);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, c), 0);
        assert_int_equal(c->n, RACE_ROUNDS);
        for (uint32_t v = 1; v <= RACE_ROUNDS; v++) {
                uint8_t expected[128];
                int winner;

                assert_true((r[0].sig_r[v] == 1 && r[1].sig_r[v] == 0) ||
                            (r[0].sig_r[v] == 0 && r[1].sig_r[v] == 1));
                winner = r[0].sig_r[v] == 1 ? 0 : 1;
                fill(expected, sizeof(expected), r[winner].id);
                assert_int_equal(c->k[v - 1].sig_len, sizeof(expected));
                assert_memory_equal(c->k[v - 1].sig, expected, sizeof(expected));
        }
        free(c);
}


/* ---- audit chains ---- */

struct blocks_seen {
        size_t n;
        uint64_t first[16], last[16];
        uint8_t data0[16];                /* each block's first data byte */
        size_t stop_after;
};

static int collect_block(const struct kh_store_audit_block *b, void *userdata) {
        struct blocks_seen *c = userdata;

        if (c->n == 16 || !b->data || b->len == 0 || !b->head_hash)
                return -ENOSPC;
        c->first[c->n] = b->first_seq;
        c->last[c->n] = b->last_seq;
        c->data0[c->n] = b->data[0];
        c->n++;
        return c->stop_after && c->n == c->stop_after ? 42 : 0;
}

static void append_block(struct kh_store *s, const char *chain, uint64_t first, uint64_t last,
                         uint8_t tag) {
        uint8_t hash[KH_STORE_AUDIT_HASH_LEN], data[3] = { tag, '\n', tag };

        fill(hash, sizeof(hash), tag);
        assert_int_equal(kh_store_audit_append(s, chain, &(struct kh_store_audit_block) {
                                 .first_seq = first, .last_seq = last, .head_hash = hash,
                                 .data = data, .len = sizeof(data) }), 0);
}

static void test_audit_blocks_append_last_and_scan(void **state) {
        struct fixture *f = *state;
        struct kh_store_audit_block last;
        uint8_t hash[KH_STORE_AUDIT_HASH_LEN];
        struct blocks_seen seen = { 0 };

        assert_int_equal(kh_store_audit_last(f->s, "acme", &last), -ENOENT);
        assert_int_equal(kh_store_audit_last(f->s, "", &last), -ENOENT);
        append_block(f->s, "acme", 1, 3, 'a');
        append_block(f->s, "acme", 4, 4, 'b');
        append_block(f->s, "acme", 5, 9, 'c');
        append_block(f->s, "", 1, 2, 's');      /* the server's chain is its own */

        assert_int_equal(kh_store_audit_last(f->s, "acme", &last), 0);
        fill(hash, sizeof(hash), 'c');
        assert_int_equal(last.first_seq, 5);
        assert_int_equal(last.last_seq, 9);
        assert_memory_equal(last.head_hash, hash, sizeof(hash));
        assert_int_equal(kh_store_audit_last(f->s, "", &last), 0);
        assert_int_equal(last.last_seq, 2);

        /* ascending from a seq inside a block: that block first */
        assert_int_equal(kh_store_audit_scan(f->s, "acme", 2, false, collect_block, &seen), 0);
        assert_int_equal(seen.n, 3);
        assert_int_equal(seen.first[0], 1);
        assert_int_equal(seen.data0[2], 'c');
        seen = (struct blocks_seen) { 0 };
        assert_int_equal(kh_store_audit_scan(f->s, "acme", 4, false, collect_block, &seen), 0);
        assert_int_equal(seen.n, 2);
        assert_int_equal(seen.first[0], 4);
        seen = (struct blocks_seen) { 0 };
        assert_int_equal(kh_store_audit_scan(f->s, "acme", 10, false, collect_block, &seen), 0);
        assert_int_equal(seen.n, 1);            /* the last block may still hold it */
        /* descending: the blocks starting at or before seq, newest first */
        seen = (struct blocks_seen) { 0 };
        assert_int_equal(kh_store_audit_scan(f->s, "acme", 4, true, collect_block, &seen), 0);
        assert_int_equal(seen.n, 2);
        assert_int_equal(seen.first[0], 4);
        assert_int_equal(seen.first[1], 1);
        /* stops at the callback's value */
        seen = (struct blocks_seen) { .stop_after = 1 };
        assert_int_equal(kh_store_audit_scan(f->s, "acme", 1, false, collect_block, &seen), 42);
        assert_int_equal(seen.n, 1);
        /* another chain sees none of it */
        seen = (struct blocks_seen) { 0 };
        assert_int_equal(kh_store_audit_scan(f->s, "other", 1, false, collect_block, &seen), 0);
        assert_int_equal(seen.n, 0);

        /* retention removes whole blocks below a seq, of one chain only */
        assert_int_equal(kh_store_audit_prune(f->s, "acme", 5), 2);
        assert_int_equal(kh_store_audit_prune(f->s, "acme", 5), 0);
        seen = (struct blocks_seen) { 0 };
        assert_int_equal(kh_store_audit_scan(f->s, "acme", 1, false, collect_block, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_int_equal(seen.first[0], 5);
        assert_int_equal(kh_store_audit_last(f->s, "", &last), 0);
        assert_int_equal(last.first_seq, 1);
}

/* The reads of a member's history across replicas (service/history.c): each of a tenant's
 * chains, "acme" and "acme@NAME", read newest first from the top (INT64_MAX) or from below a
 * cursor's seq, sees its own blocks only, whatever ids share its prefix. */
static void test_audit_chains_of_replicas_read_apart_newest_first(void **state) {
        static const char *const chains[] = { "acme", "acme@node-a", "acme@node-b",
                                              "acme@node-a-2", "acmex", "acme@node" };
        struct fixture *f = *state;
        struct blocks_seen seen;

        /* interleaved as replicas commit: each chain numbered from 1 */
        for (uint64_t b = 0; b < 4; b++)
                for (size_t i = 0; i < KH_ELEMENTSOF(chains); i++)
                        append_block(f->s, chains[i], 1 + 3 * b, 3 + 3 * b,
                                     (uint8_t) ('a' + i * 4 + b));
        for (size_t i = 0; i < KH_ELEMENTSOF(chains); i++) {
                seen = (struct blocks_seen) { 0 };
                assert_int_equal(kh_store_audit_scan(f->s, chains[i], INT64_MAX, true,
                                                     collect_block, &seen), 0);
                assert_int_equal(seen.n, 4);
                for (size_t b = 0; b < 4; b++) {
                        assert_int_equal(seen.first[b], 1 + 3 * (3 - b));
                        assert_int_equal(seen.data0[b], 'a' + i * 4 + (3 - b));
                }
                /* a cursor's "below 8": the block holding 7, and the older ones */
                seen = (struct blocks_seen) { 0 };
                assert_int_equal(kh_store_audit_scan(f->s, chains[i], 7, true, collect_block,
                                                     &seen), 0);
                assert_int_equal(seen.n, 3);
                assert_int_equal(seen.last[0], 9);
                assert_int_equal(seen.data0[0], 'a' + i * 4 + 2);
                /* the page is full after one block: the scan stops there */
                seen = (struct blocks_seen) { .stop_after = 1 };
                assert_int_equal(kh_store_audit_scan(f->s, chains[i], INT64_MAX, true,
                                                     collect_block, &seen), 42);
                assert_int_equal(seen.n, 1);
        }
        /* a replica that never wrote has an empty chain */
        seen = (struct blocks_seen) { 0 };
        assert_int_equal(kh_store_audit_scan(f->s, "acme@node-c", INT64_MAX, true,
                                             collect_block, &seen), 0);
        assert_int_equal(seen.n, 0);
}

static void test_audit_block_twice_is_eexist_and_rolls_back(void **state) {
        struct fixture *f = *state;
        uint8_t hash[KH_STORE_AUDIT_HASH_LEN] = { 0 }, data[1] = { 'x' };
        struct kh_store_audit_block b = { .first_seq = 1, .last_seq = 1, .head_hash = hash,
                                          .data = data, .len = 1 }, last;

        assert_int_equal(kh_store_audit_append(f->s, "acme", &b), 0);
        assert_int_equal(kh_store_audit_append(f->s, "acme", &b), -EEXIST);
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        b.first_seq = b.last_seq = 2;
        assert_int_equal(kh_store_audit_append(f->s, "acme", &b), 0);
        kh_store_tx_rollback(f->s);
        assert_int_equal(kh_store_audit_last(f->s, "acme", &last), 0);
        assert_int_equal(last.last_seq, 1);

        /* out of range: programming errors */
        b.first_seq = 0;
        assert_int_equal(kh_store_audit_append(f->s, "acme", &b), -EINVAL);
        b.first_seq = 3;
        b.last_seq = 2;
        assert_int_equal(kh_store_audit_append(f->s, "acme", &b), -EINVAL);
        b.last_seq = 3;
        b.len = 0;
        assert_int_equal(kh_store_audit_append(f->s, "acme", &b), -EINVAL);
        b.len = 1;
        assert_int_equal(kh_store_audit_append(f->s, "Bad Chain", &b), -EINVAL);
}

static int collect_uses(const struct kh_tenant_key *key, void *userdata) {
        uint64_t *out = userdata;

        out[2 * (key->version - 1)] = key->encrypts;
        out[2 * (key->version - 1) + 1] = key->decrypts;
        return key->created_at > 0 ? 0 : -EINVAL;
}

static void test_tenant_key_uses_add_up(void **state) {
        struct fixture *f = *state;
        uint64_t uses[4] = { 9, 9, 9, 9 };
        uint8_t dek[256];

        fill(dek, sizeof(dek), 5);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, dek,
                                                              sizeof(dek), sig, sizeof(sig)), 1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 2, KH_KEY_ARCHIVED, dek,
                                                              sizeof(dek), sig, sizeof(sig)), 1);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect_uses, uses), 0);
        assert_int_equal(uses[0] + uses[1] + uses[2] + uses[3], 0);
        assert_int_equal(kh_store_tenant_key_add_uses(f->s, "acme", 1, 3, 5), 0);
        assert_int_equal(kh_store_tenant_key_add_uses(f->s, "acme", 1, 1, 0), 0);
        assert_int_equal(kh_store_tenant_key_add_uses(f->s, "acme", 2, 0, 7), 0);
        assert_int_equal(kh_store_tenant_key_add_uses(f->s, "acme", 3, 1, 1), -ENOENT);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect_uses, uses), 0);
        assert_int_equal(uses[0], 4);
        assert_int_equal(uses[1], 5);
        assert_int_equal(uses[2], 0);
        assert_int_equal(uses[3], 7);
}

/* ---- the key lifecycle's operations ---- */

struct owners {
        size_t n;
        char owner[8][16];
        enum kh_record_kind kind[8];
        size_t len[8];
        int stop_after;   /* return 7 after this many calls; 0 = never */
};

static int collect_owner(const struct kh_store_record *rec, void *userdata) {
        struct owners *o = userdata;

        if (o->n == 8 || strlen(rec->owner) >= sizeof(o->owner[0]))
                return -ENOSPC;
        (void) snprintf(o->owner[o->n], sizeof(o->owner[0]), "%s", rec->owner);
        o->kind[o->n] = rec->kind;
        o->len[o->n] = rec->len;
        o->n++;
        return o->stop_after && (int) o->n == o->stop_after ? 7 : 0;
}

static void test_records_under_pages_in_owner_order(void **state) {
        struct fixture *f = *state;
        static const char *const names[] = { "u3", "u1", "u5", "u2", "u4" };
        struct owners o = { 0 };
        uint8_t a[40];

        fill(a, sizeof(a), 12);
        for (size_t i = 0; i < 5; i++)
                assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, names[i],
                                                        i == 4 ? 2 : 1, a, sizeof(a) - i),
                                 0);
        assert_int_equal(kh_store_record_insert(f->s, "other", KH_RECORD_USER_KEY, "u0", 1, a,
                                                sizeof(a)),
                         0);
        /* version 1 of acme: u1, u2, u3, u5 (u4 is under 2, u0 another tenant's) */
        assert_int_equal(kh_store_records_under(f->s, "acme", 1, 0, "", 2, collect_owner, &o), 0);
        assert_int_equal(o.n, 2);
        assert_string_equal(o.owner[0], "u1");
        assert_string_equal(o.owner[1], "u2");
        assert_int_equal(o.kind[0], KH_RECORD_USER_KEY);
        assert_int_equal(o.len[0], sizeof(a) - 1);
        assert_int_equal(kh_store_records_under(f->s, "acme", 1, KH_RECORD_USER_KEY, "u2", 10,
                                                collect_owner, &o),
                         0);
        assert_int_equal(o.n, 4);
        assert_string_equal(o.owner[2], "u3");
        assert_string_equal(o.owner[3], "u5");
        /* past the last: nothing; another version; the callback's value stops it */
        o.n = 0;
        assert_int_equal(kh_store_records_under(f->s, "acme", 1, KH_RECORD_USER_KEY, "u5", 10,
                                                collect_owner, &o),
                         0);
        assert_int_equal(o.n, 0);
        assert_int_equal(kh_store_records_under(f->s, "acme", 2, 0, "", 10, collect_owner, &o), 0);
        assert_int_equal(o.n, 1);
        assert_string_equal(o.owner[0], "u4");
        o = (struct owners) { .stop_after = 1 };
        assert_int_equal(kh_store_records_under(f->s, "acme", 1, 0, "", 10, collect_owner, &o), 7);
        assert_int_equal(o.n, 1);
        o.n = 0;
        assert_int_equal(kh_store_records_under(f->s, "acme", 9, 0, "", 10, collect_owner, &o), 0);
        assert_int_equal(o.n, 0);
}

static void test_record_moves_in_a_batch(void **state) {
        struct fixture *f = *state;
        uint8_t a[48], b[52], c[48], d[60];
        struct kh_store_move m[4];
        struct kh_store *other = NULL;
        uint64_t n = 99;

        fill(a, sizeof(a), 31);
        fill(b, sizeof(b), 32);
        fill(c, sizeof(c), 33);
        fill(d, sizeof(d), 34);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1, a,
                                                sizeof(a)),
                         0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u2", 1, c,
                                                sizeof(c)),
                         0);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u3", 1, a,
                                                sizeof(a)),
                         0);
        /* u1 as read, u2 changed since (other bytes), nobody absent, u3 as read */
        m[0] = (struct kh_store_move) { KH_RECORD_USER_KEY, "u1", a, sizeof(a), b, sizeof(b) };
        m[1] = (struct kh_store_move) { KH_RECORD_USER_KEY, "u2", a, sizeof(a), b, sizeof(b) };
        m[2] = (struct kh_store_move) { KH_RECORD_USER_KEY, "nobody", a, sizeof(a), b, sizeof(b) };
        m[3] = (struct kh_store_move) { KH_RECORD_USER_KEY, "u3", a, sizeof(a), d, sizeof(d) };
        assert_int_equal(kh_store_record_moves(f->s, "acme", 1, 2, m, 0), -EINVAL);
        assert_int_equal(kh_store_record_moves(f->s, "acme", 1, 2, m, KH_STORE_MOVES_MAX + 1),
                         -EINVAL);
        /* inside a transaction rolled back: nothing moved */
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_record_moves(f->s, "acme", 1, 2, m, 4), 2);
        kh_store_tx_rollback(f->s);
        expect_record(f->s, "acme", "u1", 1, a, sizeof(a));
        expect_record(f->s, "acme", "u3", 1, a, sizeof(a));
        /* with none open: a transaction of its own, committed, and the write lock free again */
        assert_int_equal(kh_store_record_moves(f->s, "acme", 1, 2, m, 4), 2);
        expect_record(f->s, "acme", "u1", 2, b, sizeof(b));
        expect_record(f->s, "acme", "u2", 1, c, sizeof(c));
        expect_record(f->s, "acme", "u3", 2, d, sizeof(d));
        assert_int_equal(kh_store_record_moves(f->s, "acme", 1, 2, m, 4), 0);
        assert_int_equal(kh_store_open(&f->cfg, &other), 0);
        assert_int_equal(kh_store_tx_begin(other), 0);
        kh_store_tx_rollback(other);
        kh_store_close(other);
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        m[0] = (struct kh_store_move) { KH_RECORD_USER_KEY, "u2", c, sizeof(c), a, sizeof(a) };
        assert_int_equal(kh_store_record_moves(f->s, "acme", 1, 2, m, 1), 1);
        assert_int_equal(kh_store_tx_commit(f->s), 0);
        expect_record(f->s, "acme", "u2", 2, a, sizeof(a));
        assert_int_equal(kh_store_record_count(f->s, "acme", 1, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(kh_store_record_count(f->s, "acme", 2, &n), 0);
        assert_int_equal(n, 3);
}

static void test_record_move_is_a_compare_and_set(void **state) {
        struct fixture *f = *state;
        uint8_t a[48], b[52], c[48];
        uint64_t n = 99;

        fill(a, sizeof(a), 21);
        fill(b, sizeof(b), 22);
        fill(c, sizeof(c), 23);
        assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1, a,
                                                sizeof(a)),
                         0);
        /* the bytes read: moved, once */
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1, a,
                                              sizeof(a), 2, b, sizeof(b)),
                         1);
        expect_record(f->s, "acme", "u1", 2, b, sizeof(b));
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u1", 1, a,
                                              sizeof(a), 2, c, sizeof(c)),
                         0);
        expect_record(f->s, "acme", "u1", 2, b, sizeof(b));
        /* a member wrote in between (other bytes, same version): the write stays */
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u2", 1, c,
                                             sizeof(c)),
                         0);
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u2", 1, a,
                                              sizeof(a), 2, b, sizeof(b)),
                         0);
        expect_record(f->s, "acme", "u2", 1, c, sizeof(c));
        /* a prefix of the stored bytes is not the stored bytes */
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u2", 1, c,
                                              sizeof(c) - 1, 2, b, sizeof(b)),
                         0);
        /* wrong from-version, another tenant, no such owner: nothing */
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u2", 3, c,
                                              sizeof(c), 2, b, sizeof(b)),
                         0);
        assert_int_equal(kh_store_record_move(f->s, "other", KH_RECORD_USER_KEY, "u2", 1, c,
                                              sizeof(c), 2, b, sizeof(b)),
                         0);
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "nobody", 1, c,
                                              sizeof(c), 2, b, sizeof(b)),
                         0);
        expect_record(f->s, "acme", "u2", 1, c, sizeof(c));
        /* inside a rolled back transaction a move does not happen */
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u2", 1, c,
                                              sizeof(c), 2, a, sizeof(a)),
                         1);
        kh_store_tx_rollback(f->s);
        expect_record(f->s, "acme", "u2", 1, c, sizeof(c));
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_record_move(f->s, "acme", KH_RECORD_USER_KEY, "u2", 1, c,
                                              sizeof(c), 2, a, sizeof(a)),
                         1);
        assert_int_equal(kh_store_tx_commit(f->s), 0);
        expect_record(f->s, "acme", "u2", 2, a, sizeof(a));
        assert_int_equal(kh_store_record_count(f->s, "acme", 1, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(kh_store_record_count(f->s, "acme", 2, &n), 0);
        assert_int_equal(n, 2);
}

static int collect_prior(const struct kh_tenant_key *key, void *userdata) {
        enum kh_key_state *p = userdata;

        if (key->version >= 1 && key->version <= 3) {
                p[2 * (key->version - 1)] = key->state;
                p[2 * (key->version - 1) + 1] = key->prior_state;
        }
        return 0;
}

static void test_tenant_key_update_compare_and_set_with_prior(void **state) {
        struct fixture *f = *state;
        enum kh_key_state p[6] = { 0 };
        uint8_t d[32];

        fill(d, sizeof(d), 31);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ARCHIVED, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 2, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        /* revoke: from the state it is in, remembering it */
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                    KH_KEY_REVOKED, KH_KEY_ARCHIVED),
                         0);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 2, KH_KEY_ACTIVE,
                                                    KH_KEY_REVOKED, KH_KEY_ACTIVE),
                         0);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect_prior, p), 0);
        assert_int_equal(p[0], KH_KEY_REVOKED);
        assert_int_equal(p[1], KH_KEY_ARCHIVED);
        assert_int_equal(p[2], KH_KEY_REVOKED);
        assert_int_equal(p[3], KH_KEY_ACTIVE);
        /* a second administrator acting on the old state loses */
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                    KH_KEY_RETIRED, 0),
                         -ENOENT);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 3, KH_KEY_ACTIVE,
                                                    KH_KEY_ARCHIVED, 0),
                         -ENOENT);
        assert_int_equal(kh_store_tenant_key_update(f->s, "other", 1, KH_KEY_REVOKED,
                                                    KH_KEY_ARCHIVED, 0),
                         -ENOENT);
        /* reinstate: back, prior cleared */
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_REVOKED,
                                                    KH_KEY_ARCHIVED, 0),
                         0);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 2, KH_KEY_REVOKED,
                                                    KH_KEY_ACTIVE, 0),
                         0);
        memset(p, 0, sizeof(p));
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect_prior, p), 0);
        assert_int_equal(p[0], KH_KEY_ARCHIVED);
        assert_int_equal(p[1], 0);
        assert_int_equal(p[2], KH_KEY_ACTIVE);
        assert_int_equal(p[3], 0);
        /* a rolled back update leaves the state */
        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                    KH_KEY_RETIRED, 0),
                         0);
        kh_store_tx_rollback(f->s);
        memset(p, 0, sizeof(p));
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect_prior, p), 0);
        assert_int_equal(p[0], KH_KEY_ARCHIVED);
}

static void test_tenant_key_destroy_wipes_the_dek_and_keeps_the_row(void **state) {
        struct fixture *f = *state;
        struct collected c = { 0 };
        uint8_t d[64];

        fill(d, sizeof(d), 33);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ARCHIVED, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 2, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         1);
        /* only a retired version */
        assert_int_equal(kh_store_tenant_key_destroy(f->s, "acme", 1), -ENOENT);
        assert_int_equal(kh_store_tenant_key_destroy(f->s, "acme", 2), -ENOENT);
        assert_int_equal(kh_store_tenant_key_destroy(f->s, "acme", 3), -ENOENT);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                    KH_KEY_RETIRED, 0),
                         0);
        assert_int_equal(kh_store_tenant_key_destroy(f->s, "other", 1), -ENOENT);
        assert_int_equal(kh_store_tenant_key_destroy(f->s, "acme", 1), 0);
        assert_int_equal(kh_store_tenant_key_destroy(f->s, "acme", 1), -ENOENT);
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c), 0);
        assert_int_equal(c.n, 2);
        assert_int_equal(c.k[0].version, 1);
        assert_int_equal(c.k[0].state, KH_KEY_DESTROYED);
        assert_int_equal(c.k[0].len, 0);
        assert_int_equal(c.k[0].sig_len, 0);
        assert_int_equal(c.k[1].state, KH_KEY_ACTIVE);
        assert_int_equal(c.k[1].len, sizeof(d));
        assert_memory_equal(c.k[1].dek, d, sizeof(d));
        /* the number is never used again; a destroyed version goes nowhere */
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, d,
                                                              sizeof(d), sig, sizeof(sig)),
                         0);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_RETIRED,
                                                    KH_KEY_ARCHIVED, 0),
                         -ENOENT);
}

static uint64_t epoch_of(struct kh_store *s) {
        uint64_t e = UINT64_MAX;

        assert_int_equal(kh_store_key_epoch(s, &e), 0);
        return e;
}

/* The key epoch moves with every key state change, DEK change and seal flag change, in the
 * writer's transaction (a rolled-back change leaves it), and with nothing else: not a use
 * counter, a record, an insert or compare-and-set that changed nothing, another meta key. */
static void test_key_epoch_moves_with_key_state_changes_only(void **state) {
        struct fixture *f = *state;
        uint8_t a[64], b[64];
        uint64_t e;

        fill(a, sizeof(a), 1);
        fill(b, sizeof(b), 2);
        e = epoch_of(f->s);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, a,
                                                              sizeof(a), sig, sizeof(sig)),
                         1);
        assert_true(epoch_of(f->s) > e);
        e = epoch_of(f->s);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", 1, KH_KEY_ACTIVE, b,
                                                              sizeof(b), sig, sizeof(sig)),
                         0);
        assert_int_equal(kh_store_tenant_key_add_uses(f->s, "acme", 1, 3, 4), 0);
        assert_int_equal(kh_store_record_put(f->s, "acme", KH_RECORD_USER_KEY, "u", 1, a,
                                             sizeof(a)),
                         0);
        assert_int_equal(kh_store_meta_put(f->s, "other", a, 1), 0);
        assert_int_equal(kh_store_tenant_key_update(f->s, "acme", 1, KH_KEY_ARCHIVED,
                                                    KH_KEY_REVOKED, KH_KEY_ARCHIVED),
                         -ENOENT);
        assert_true(epoch_of(f->s) == e);

        assert_int_equal(kh_store_tx_begin(f->s), 0);
        assert_int_equal(kh_store_tenant_key_set_state(f->s, "acme", 1, KH_KEY_ARCHIVED), 0);
        kh_store_tx_rollback(f->s);
        assert_true(epoch_of(f->s) == e);

        assert_int_equal(kh_store_tenant_key_set_state(f->s, "acme", 1, KH_KEY_ARCHIVED), 0);
        assert_true(epoch_of(f->s) > e);
        e = epoch_of(f->s);
        assert_int_equal(kh_store_meta_put(f->s, "keyhold.sealed", (const uint8_t *) "1", 1), 0);
        assert_true(epoch_of(f->s) > e);
        e = epoch_of(f->s);
        assert_int_equal(kh_store_meta_put(f->s, "keyhold.sealed", (const uint8_t *) "0", 1), 0);
        assert_true(epoch_of(f->s) > e);
}

/* SQLite has no other process to hear from; PostgreSQL announces a change made on another
 * connection to the one that listens, and says nothing when nothing changed. */
static void test_key_epoch_wait_hears_another_connection(void **state) {
        struct fixture *f = *state;
        struct kh_store *other = NULL;
        uint8_t a[64];
        int r;

        fill(a, sizeof(a), 1);
        r = kh_store_key_epoch_wait(f->s, 0);
        if (strcmp(backend->driver, "sqlite") == 0) {
                assert_int_equal(r, -EOPNOTSUPP);
                return;
        }
        assert_int_equal(r, 1);                      /* listening starts: look once */
        assert_int_equal(kh_store_key_epoch_wait(f->s, 50), 0);
        assert_int_equal(kh_store_open(&f->cfg, &other), 0);
        assert_int_equal(kh_store_tenant_key_insert_if_absent(other, "acme", 1, KH_KEY_ACTIVE, a,
                                                              sizeof(a), sig, sizeof(sig)),
                         1);
        /* delivered at the other's commit; waits long enough for a loaded machine */
        assert_int_equal(kh_store_key_epoch_wait(f->s, 30000), 1);
        assert_int_equal(kh_store_key_epoch_wait(f->s, 50), 0);
        kh_store_close(other);
        assert_int_equal(kh_store_key_epoch_wait(f->s, -1), -EINVAL);
}

static void expect_lease(struct kh_store *s, const char *name, const char *holder,
                         int64_t expires, const char *note) {
        struct kh_buf h, d;
        int64_t e = -1;

        kh_buf_init(&h, KH_STORE_LEASE_HOLDER_MAX, false);
        kh_buf_init(&d, KH_STORE_LEASE_DATA_MAX, false);
        assert_int_equal(kh_store_lease_get(s, name, &h, &e, &d), 0);
        assert_int_equal(h.len, strlen(holder));
        assert_memory_equal(h.data, holder, h.len);
        assert_true(e == expires);
        assert_int_equal(d.len, strlen(note));
        assert_memory_equal(d.data, note, d.len);
        kh_buf_free(&h);
        kh_buf_free(&d);
}

#define NOTE(s) (const uint8_t *) (s), strlen(s)

/* A lease is one holder's until it expires or is given up; renewing is taking it again. */
static void test_lease_one_holder_until_expiry(void **state) {
        struct fixture *f = *state;
        struct kh_buf h, d;
        int64_t e;

        kh_buf_init(&h, KH_STORE_LEASE_HOLDER_MAX, false);
        kh_buf_init(&d, KH_STORE_LEASE_DATA_MAX, false);
        assert_int_equal(kh_store_lease_get(f->s, "reencrypt.acme", &h, &e, &d), -ENOENT);
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "a", 1000, 2000, NOTE("a1")),
                         1);
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "b", 1999, 3000, NOTE("b1")),
                         0);
        expect_lease(f->s, "reencrypt.acme", "a", 2000, "a1");
        /* other names are other leases */
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.beta", "b", 1999, 3000, NOTE("b")),
                         1);
        /* renewed by its holder, even late */
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "a", 2500, 5000, NOTE("a2")),
                         1);
        expect_lease(f->s, "reencrypt.acme", "a", 5000, "a2");
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "b", 4999, 9000, NOTE("b2")),
                         0);
        /* expired: taken over, and the old holder cannot renew it */
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "b", 5000, 9000, NOTE("b3")),
                         1);
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "a", 5001, 9000, NOTE("a3")),
                         0);
        expect_lease(f->s, "reencrypt.acme", "b", 9000, "b3");
        /* given up: the note stays, anyone takes it */
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "b", 6000, 0, NOTE("done")),
                         1);
        expect_lease(f->s, "reencrypt.acme", "b", 0, "done");
        assert_int_equal(kh_store_lease_take(f->s, "reencrypt.acme", "a", 6001, 9000, NOTE("a4")),
                         1);
        /* a buffer too small */
        kh_buf_free(&h);
        kh_buf_init(&h, 0, false);
        assert_int_equal(kh_store_lease_get(f->s, "reencrypt.acme", &h, &e, &d), -E2BIG);
        /* arguments */
        assert_int_equal(kh_store_lease_take(f->s, "Bad", "a", 0, 0, NOTE("x")), -EINVAL);
        assert_int_equal(kh_store_lease_take(f->s, "ok", "", 0, 0, NOTE("x")), -EINVAL);
        assert_int_equal(kh_store_lease_take(f->s, "ok", "a", 0, 0, NOTE("")), -EINVAL);
        assert_int_equal(kh_store_lease_take(f->s, "ok", "a", -1, 0, NOTE("x")), -EINVAL);
        kh_buf_free(&h);
        kh_buf_free(&d);
}

struct lease_racer {
        const struct kh_config_storage *cfg;
        char holder[16];
        pthread_barrier_t *go;
        int won;
};

static void *lease_thread(void *p) {
        struct lease_racer *r = p;
        struct kh_store *s = NULL;

        r->won = -1;
        if (kh_store_open(r->cfg, &s) < 0)
                return NULL;
        (void) pthread_barrier_wait(r->go);
        r->won = kh_store_lease_take(s, "reencrypt.race", r->holder, 100, 10000, NOTE("n"));
        kh_store_close(s);
        return NULL;
}

/* Racing takers of a free lease, each on its own connection: exactly one wins. */
static void test_racing_lease_takers_have_exactly_one_winner(void **state) {
        struct fixture *f = *state;
        struct lease_racer r[4];
        pthread_t th[4];
        pthread_barrier_t go;
        int won = 0;

        pthread_barrier_init(&go, NULL, 4);
        for (int i = 0; i < 4; i++) {
                r[i] = (struct lease_racer) { .cfg = &f->cfg, .go = &go };
                (void) snprintf(r[i].holder, sizeof(r[i].holder), "h%d", i);
                assert_int_equal(pthread_create(&th[i], NULL, lease_thread, &r[i]), 0);
        }
        for (int i = 0; i < 4; i++) {
                assert_int_equal(pthread_join(th[i], NULL), 0);
                assert_true(r[i].won == 0 || r[i].won == 1);
                won += r[i].won;
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(won, 1);
}

/* A snapshot is the SQLite file backups carry, whatever the backend: inspect counts it; a
 * backend that loads one (PostgreSQL) refuses a database with data and copies it into an
 * empty one byte for byte, owners and values with COPY's special characters included. */
static void test_snapshot_round_trips_through_load(void **state) {
        struct fixture *f = *state;
        struct kh_config_storage cfg2 = { 0 };
        struct kh_store_snapshot_info info;
        struct kh_store_load_info loaded;
        struct kh_store *s2 = NULL;
        static const char *const owners[] = { "plain", "tab\there", "new\nline", "back\\slash",
                                              "cr\rx" };
        static const uint8_t value[] = { 0, '\\', '\t', '\n', 0xff, 'N' };
        struct collected c1 = { 0 }, c2 = { 0 };
        char path[] = "/tmp/kh-snapshot-test-XXXXXX";
        char error[256] = "";
        struct kh_buf b;
        uint8_t dek[64], blob[100];
        int fd;

        fill(dek, sizeof(dek), 3);
        for (uint32_t v = 1; v <= 2; v++)
                assert_int_equal(kh_store_tenant_key_insert_if_absent(f->s, "acme", v,
                                                                      KH_KEY_ACTIVE, dek,
                                                                      sizeof(dek), sig,
                                                                      sizeof(sig)),
                                 1);
        for (size_t i = 0; i < KH_ELEMENTSOF(owners); i++) {
                fill(blob, sizeof(blob), (uint8_t) i);
                assert_int_equal(kh_store_record_insert(f->s, "acme", KH_RECORD_USER_KEY,
                                                        owners[i], 1 + (uint32_t) (i % 2), blob,
                                                        sizeof(blob)),
                                 0);
        }
        assert_int_equal(kh_store_meta_put(f->s, "test.value", value, sizeof(value)), 0);
        fd = mkstemp(path);
        assert_true(fd >= 0);
        (void) close(fd);
        assert_int_equal(kh_store_snapshot(f->s, path), 0);
        assert_int_equal(kh_store_snapshot_inspect(path, NULL, NULL, &info, error, sizeof(error)), 0);
        assert_int_equal(info.versions, 2);
        assert_int_equal(info.records, KH_ELEMENTSOF(owners));
        assert_int_equal(info.schema_version, KH_STORE_TEST_SCHEMA_VERSION);
        if (strcmp(backend->driver, "sqlite") == 0) {
                assert_int_equal(kh_store_load(f->s, path, NULL, &loaded), -EOPNOTSUPP);
                (void) unlink(path);
                return;
        }
        assert_int_equal(kh_store_load(f->s, path, NULL, &loaded), -ENOTEMPTY);

        assert_int_equal(backend->create(&cfg2), 0);
        assert_int_equal(kh_store_open(&cfg2, &s2), 0);
        assert_int_equal(kh_store_load(s2, path, "pending.mark", &loaded), 0);
        assert_int_equal(loaded.records, KH_ELEMENTSOF(owners));
        assert_int_equal(loaded.versions, 2);
        for (size_t i = 0; i < KH_ELEMENTSOF(owners); i++) {
                fill(blob, sizeof(blob), (uint8_t) i);
                expect_record(s2, "acme", owners[i], 1 + (uint32_t) (i % 2), blob, sizeof(blob));
        }
        assert_int_equal(kh_store_tenant_keys(f->s, "acme", collect, &c1), 0);
        assert_int_equal(kh_store_tenant_keys(s2, "acme", collect, &c2), 0);
        assert_int_equal(c1.n, 2);
        assert_memory_equal(&c1, &c2, sizeof(c1));
        kh_buf_init(&b, KH_STORE_META_VALUE_MAX, false);
        assert_int_equal(kh_store_meta_get(s2, "test.value", &b), 0);
        assert_int_equal(b.len, sizeof(value));
        assert_memory_equal(b.data, value, sizeof(value));
        /* the pending mark came in with the load and goes once done */
        b.len = 0;
        assert_int_equal(kh_store_meta_get(s2, KH_STORE_META_RESTORE_PENDING, &b), 0);
        assert_int_equal(b.len, strlen("pending.mark"));
        assert_memory_equal(b.data, "pending.mark", b.len);
        assert_int_equal(kh_store_load_done(s2), 0);
        assert_int_equal(kh_store_meta_get(s2, KH_STORE_META_RESTORE_PENDING, &b), -ENOENT);
        assert_int_equal(kh_store_load_done(s2), 0);
        kh_buf_free(&b);
        /* now it holds data: a second load is refused and changes nothing */
        assert_int_equal(kh_store_load(s2, path, NULL, &loaded), -ENOTEMPTY);
        s2 = kh_store_close(s2);
        backend->destroy(&cfg2);
        (void) unlink(path);
}

int kh_store_conformance_run(const struct kh_store_test_backend *b) {
        const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, fixture_setup, fixture_teardown)
                T(test_open_reports_schema_version_and_pings),
                T(test_open_rejects_unknown_or_missing_driver),
                T(test_tenant_key_insert_if_absent_first_wins),
                T(test_tenant_keys_ascending_with_states_per_tenant),
                T(test_tenant_keys_stops_at_callback_value),
                T(test_tenant_key_set_state),
                T(test_tenant_key_signature_round_trips),
                T(test_tenant_key_set_signature_only_where_absent),
                T(test_tenant_key_rewrap_compare_and_set),
                T(test_meta_get_put),
                T(test_record_insert_get_put),
                T(test_savepoint_undoes_one_operation_only),
                T(test_record_get_missing_leaves_outputs_alone),
                T(test_transaction_commits_together_or_not_at_all),
                T(test_record_count_by_version),
                T(test_tenants_are_isolated),
                T(test_reopen_keeps_data),
                T(test_arguments_out_of_range_are_einval),
                T(test_racing_inserts_have_exactly_one_winner),
                T(test_racing_signers_keep_exactly_one_signature),
                T(test_audit_blocks_append_last_and_scan),
                T(test_audit_chains_of_replicas_read_apart_newest_first),
                T(test_audit_block_twice_is_eexist_and_rolls_back),
                T(test_tenant_key_uses_add_up),
                T(test_records_under_pages_in_owner_order),
                T(test_record_move_is_a_compare_and_set),
                T(test_record_moves_in_a_batch),
                T(test_tenant_key_update_compare_and_set_with_prior),
                T(test_tenant_key_destroy_wipes_the_dek_and_keeps_the_row),
                T(test_key_epoch_moves_with_key_state_changes_only),
                T(test_key_epoch_wait_hears_another_connection),
                T(test_snapshot_round_trips_through_load),
                T(test_lease_one_holder_until_expiry),
                T(test_racing_lease_takers_have_exactly_one_winner),
                cmocka_unit_test(test_concurrent_openers_of_empty_database_migrate_once),
#undef T
        };

        backend = b;
        fill(sig, sizeof(sig), 99);
        return cmocka_run_group_tests_name(b->driver, tests, NULL, NULL);
}
