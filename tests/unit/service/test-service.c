/* The service's group commit (batch.c) and the member key use cases, on a real app: SQLite
 * file, file key store, a tenant whose issuer keys come from a local JWKS file. The loop is
 * a test double whose deferred tasks the test runs by hand, so "the end of a pass" is an
 * explicit step. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/errors.h"
#include "common/limits.h"
#include "common/secret.h"
#include "config/config.h"
#include "crypto/random.h"
#include "service/app.h"
#include "service/service.h"
#include "service/user-keys.h"

#include "app-test.h"
#include "../test-loop.h"

struct fixture {
        char dir[64];
        struct kh_config *cfg;
        struct kh_app *app;
        struct kh_service *svc;
        struct test_loop loop;
};

static void open_app(struct fixture *f) {
        tl_init(&f->loop);
        assert_int_equal(kh_app_open(f->cfg, NULL, NULL, &f->app), 0);
        assert_int_equal(kh_service_new(f->app, &f->loop.base, &f->svc), 0);
}

static void close_app(struct fixture *f) {
        f->svc = kh_service_free(f->svc);
        f->app = kh_app_close(f->app);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));
        static const char *const tenants[] = { "default" };

        assert_non_null(f);
        snprintf(f->dir, sizeof(f->dir), "/tmp/kh-test-service-XXXXXX");
        f->cfg = app_test_config(f->dir, tenants, 1);
        open_app(f);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;
        char cmd[128];

        close_app(f);
        kh_config_free(f->cfg);
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
        assert_int_equal(system(cmd), 0);
        free(f);
        return 0;
}

static struct kh_principal member(unsigned n) {
        struct kh_principal p = { .tenant = "default" };

        snprintf(p.sub, sizeof(p.sub), "00000000-0000-4000-8000-%012x", n);
        return p;
}

static struct kh_secret *key_of(uint8_t byte) {
        struct kh_secret *k = NULL;

        assert_int_equal(kh_secret_new(KH_USER_KEY_LEN, &k), 0);
        memset(kh_secret_bytes_mut(k), byte, KH_USER_KEY_LEN);
        return k;
}

/* One member key write as an operation of the batch, recording how it ended. */
struct write_op {
        struct kh_service_op op;
        struct kh_principal who;
        struct kh_secret *key;
        bool replace;
        int done_calls;
        int result;
};

static int write_apply(struct kh_service *svc, struct kh_service_op *op) {
        struct write_op *w = (struct write_op *) op;

        const struct kh_tenant *t = kh_app_tenant(kh_service_app(svc), NULL, 0);

        return w->replace ? kh_user_keys_put(svc, t, &w->who, w->key, NULL)
                          : kh_user_keys_post(svc, t, &w->who, w->key, NULL);
}

static void write_done(struct kh_service_op *op, int result) {
        struct write_op *w = (struct write_op *) op;

        w->done_calls++;
        w->result = result;
        w->key = kh_secret_free(w->key);
}

static void write_init(struct write_op *w, unsigned who, uint8_t byte, bool replace) {
        *w = (struct write_op) { .op = { .apply = write_apply, .done = write_done },
                                 .who = member(who), .key = key_of(byte), .replace = replace };
}

/* The stored key of member n: its first byte, or -1 if none (other errors fail the test). */
static int stored_byte(struct kh_service *svc, unsigned n) {
        struct kh_principal p = member(n);
        struct kh_secret *k = NULL;
        int r = kh_user_keys_get(svc, kh_app_tenant(kh_service_app(svc), NULL, 0), &p, &k, NULL), b;

        if (r == -KH_E_KEY_NOT_FOUND)
                return -1;
        assert_int_equal(r, 0);
        assert_int_equal(kh_secret_len(k), KH_USER_KEY_LEN);
        b = kh_secret_bytes(k)[0];
        kh_secret_free(k);
        return b;
}

static void test_writes_wait_for_the_end_of_the_pass(void **state) {
        struct fixture *f = *state;
        struct write_op a, b;

        write_init(&a, 1, 0xa1, false);
        write_init(&b, 2, 0xb2, true);
        kh_service_submit(f->svc, &a.op);
        kh_service_submit(f->svc, &b.op);
        assert_int_equal(a.done_calls + b.done_calls, 0);
        assert_int_equal(f->loop.deferred, 1);          /* one flush for the whole pass */

        tl_end_of_pass(&f->loop);
        assert_int_equal(a.done_calls, 1);
        assert_int_equal(b.done_calls, 1);
        assert_int_equal(a.result, 0);
        assert_int_equal(b.result, 0);
        assert_int_equal(stored_byte(f->svc, 1), 0xa1);
        assert_int_equal(stored_byte(f->svc, 2), 0xb2);
        tl_end_of_pass(&f->loop);                          /* nothing left: nothing happens */
        assert_int_equal(a.done_calls, 1);
}

static void test_a_failing_write_fails_alone(void **state) {
        struct fixture *f = *state;
        struct write_op first, dup, other, replace;

        write_init(&first, 1, 0x11, false);
        kh_service_submit(f->svc, &first.op);
        tl_end_of_pass(&f->loop);
        assert_int_equal(first.result, 0);

        write_init(&dup, 1, 0x22, false);       /* POST over an existing key */
        write_init(&other, 3, 0x33, false);
        write_init(&replace, 1, 0x44, true);    /* PUT after it, same batch */
        kh_service_submit(f->svc, &dup.op);
        kh_service_submit(f->svc, &other.op);
        kh_service_submit(f->svc, &replace.op);
        tl_end_of_pass(&f->loop);
        assert_int_equal(dup.result, -KH_E_KEY_EXISTS);
        assert_int_equal(other.result, 0);
        assert_int_equal(replace.result, 0);
        assert_int_equal(stored_byte(f->svc, 1), 0x44);
        assert_int_equal(stored_byte(f->svc, 3), 0x33);
}

static void test_a_full_batch_commits_before_the_next_write_joins(void **state) {
        struct fixture *f = *state;
        struct write_op *ops = calloc(KH_SERVICE_BATCH_MAX + 1, sizeof(*ops));

        assert_non_null(ops);
        for (unsigned i = 0; i < KH_SERVICE_BATCH_MAX; i++) {
                write_init(&ops[i], 100 + i, (uint8_t) i, true);
                kh_service_submit(f->svc, &ops[i].op);
        }
        for (unsigned i = 0; i < KH_SERVICE_BATCH_MAX; i++)
                assert_int_equal(ops[i].done_calls, 0);
        write_init(&ops[KH_SERVICE_BATCH_MAX], 999, 0x99, true);
        kh_service_submit(f->svc, &ops[KH_SERVICE_BATCH_MAX].op);
        for (unsigned i = 0; i < KH_SERVICE_BATCH_MAX; i++) {
                assert_int_equal(ops[i].done_calls, 1);
                assert_int_equal(ops[i].result, 0);
        }
        assert_int_equal(ops[KH_SERVICE_BATCH_MAX].done_calls, 0);  /* never from submit */
        tl_end_of_pass(&f->loop);
        assert_int_equal(ops[KH_SERVICE_BATCH_MAX].done_calls, 1);
        assert_int_equal(stored_byte(f->svc, 100 + 7), 7);
        assert_int_equal(stored_byte(f->svc, 999), 0x99);
        free(ops);
}

static void test_committed_writes_survive_a_reopen(void **state) {
        struct fixture *f = *state;
        struct write_op a, pending;

        write_init(&a, 5, 0x55, false);
        kh_service_submit(f->svc, &a.op);
        tl_end_of_pass(&f->loop);
        assert_int_equal(a.result, 0);

        /* submitted but never committed (the process "dies" before its pass ends) */
        write_init(&pending, 6, 0x66, false);
        kh_service_submit(f->svc, &pending.op);
        pending.key = kh_secret_free(pending.key);
        close_app(f);

        open_app(f);
        assert_int_equal(stored_byte(f->svc, 5), 0x55);
        assert_int_equal(stored_byte(f->svc, 6), -1);
        assert_int_equal(pending.done_calls, 0);
}

/* Another replica revokes version 1 in the shared database; this one takes it in with a
 * reload: reads of records under it are refused from then on, by state. */
static void test_reload_takes_in_a_state_change(void **state) {
        struct fixture *f = *state;
        struct kh_store *other = NULL;
        struct write_op a;
        const struct kh_keys *before;

        write_init(&a, 8, 0x88, false);
        kh_service_submit(f->svc, &a.op);
        tl_end_of_pass(&f->loop);
        assert_int_equal(a.result, 0);
        before = kh_keyring_get(kh_app_keyring(f->app));
        assert_int_equal(before->tenants[0].versions[0].state, KH_KEY_ACTIVE);

        assert_int_equal(kh_store_open(&f->cfg->storage, &other), 0);
        assert_int_equal(kh_store_tenant_key_set_state(other, "default", 1, KH_KEY_REVOKED), 0);
        kh_store_close(other);
        assert_int_equal(stored_byte(f->svc, 8), 0x88);   /* not taken in yet */

        assert_int_equal(kh_app_reload_keys(f->app), 0);
        assert_int_equal(kh_keyring_get(kh_app_keyring(f->app))->tenants[0].versions[0].state,
                         KH_KEY_REVOKED);
        struct kh_principal p = member(8);
        struct kh_secret *k = NULL;
        assert_int_equal(kh_user_keys_get(f->svc, kh_app_tenant(f->app, NULL, 0), &p, &k, NULL),
                         -KH_E_KEY_REVOKED);
        assert_null(k);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_writes_wait_for_the_end_of_the_pass, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_failing_write_fails_alone, setup, teardown),
                cmocka_unit_test_setup_teardown(test_a_full_batch_commits_before_the_next_write_joins, setup, teardown),
                cmocka_unit_test_setup_teardown(test_committed_writes_survive_a_reopen, setup, teardown),
                cmocka_unit_test_setup_teardown(test_reload_takes_in_a_state_change, setup, teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
