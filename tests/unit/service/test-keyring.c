/* The tenant key snapshot ring: publish, quiescent-state reclamation, references. Under
 * the ASan build a snapshot freed while a reader may still use it is a test failure. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "service/keyring.h"

/* A snapshot of one tenant without versions (so without DEKs), the stamp in an unused
 * version slot. */
static struct kh_keys *snapshot(size_t stamp) {
        struct kh_keys *k = calloc(1, sizeof(*k) + sizeof(k->tenants[0]));

        assert_non_null(k);
        atomic_init(&k->refs_, 1);
        k->n_tenants = 1;
        k->tenants[0].versions[0].version = (uint32_t) stamp;
        return k;
}

static size_t stamp_of(const struct kh_keys *k) {
        return k->tenants[0].versions[0].version;
}

static void test_old_snapshot_lives_until_every_reader_passed(void **state) {
        struct kh_keyring *ring = NULL;
        const struct kh_keys *held;
        (void) state;

        assert_int_equal(kh_keyring_new(2, snapshot(1), &ring), 0);
        kh_keyring_online(ring, 0);
        kh_keyring_online(ring, 1);
        held = kh_keyring_get(ring);             /* reader 0, mid-pass */
        assert_int_equal(stamp_of(held), 1);

        kh_keyring_publish(ring, snapshot(2));
        assert_int_equal(stamp_of(kh_keyring_get(ring)), 2);
        assert_int_equal(kh_keyring_retired(ring), 1);
        assert_int_equal(stamp_of(held), 1);     /* still valid */

        kh_keyring_quiescent(ring, 1);
        assert_int_equal(kh_keyring_retired(ring), 1);  /* reader 0 has not passed yet */
        kh_keyring_quiescent(ring, 0);
        assert_int_equal(kh_keyring_retired(ring), 0);  /* released */
        kh_keyring_offline(ring, 0);
        kh_keyring_offline(ring, 1);
        kh_keyring_free(ring);
}

static void test_offline_readers_hold_nothing(void **state) {
        struct kh_keyring *ring = NULL;
        (void) state;

        assert_int_equal(kh_keyring_new(3, snapshot(1), &ring), 0);
        kh_keyring_online(ring, 1);
        kh_keyring_publish(ring, snapshot(2));
        kh_keyring_publish(ring, snapshot(3));
        assert_int_equal(kh_keyring_retired(ring), 2);
        kh_keyring_quiescent(ring, 1);                  /* 0 and 2 are offline */
        assert_int_equal(kh_keyring_retired(ring), 0);

        kh_keyring_offline(ring, 1);
        kh_keyring_publish(ring, snapshot(4));          /* no reader online: released at once */
        assert_int_equal(kh_keyring_retired(ring), 0);
        assert_int_equal(stamp_of(kh_keyring_get(ring)), 4);
        kh_keyring_free(ring);
}

static void test_a_reference_outlives_the_ring_release(void **state) {
        struct kh_keyring *ring = NULL;
        struct kh_keys *mine;
        (void) state;

        assert_int_equal(kh_keyring_new(1, snapshot(7), &ring), 0);
        kh_keyring_online(ring, 0);
        mine = kh_keys_ref(kh_keyring_get(ring));       /* e.g. a job on the pool */
        kh_keyring_publish(ring, snapshot(8));
        kh_keyring_quiescent(ring, 0);
        assert_int_equal(kh_keyring_retired(ring), 0);  /* the ring let go ... */
        assert_int_equal(stamp_of(mine), 7);            /* ... the job's reference did not */
        assert_null(kh_keys_unref(mine));
        kh_keyring_offline(ring, 0);
        kh_keyring_free(ring);
}

static void test_ring_arguments(void **state) {
        struct kh_keyring *ring = NULL;
        struct kh_keys *k = snapshot(1);
        (void) state;

        assert_int_equal(kh_keyring_new(0, k, &ring), -EINVAL);
        assert_int_equal(kh_keyring_new(1, NULL, &ring), -EINVAL);
        assert_null(ring);
        kh_keys_unref(k);
        assert_null(kh_keyring_free(NULL));
        assert_null(kh_keys_unref(NULL));
}

/* Readers load, check and pass quiescent points while a writer publishes: every snapshot a
 * reader holds must be one that was published and not yet freed (ASan checks the latter). */
#define STRESS_PUBLISHES 20000

struct stress {
        struct kh_keyring *ring;
        atomic_bool stop;
        atomic_size_t published;
        atomic_size_t bad;
};

static void *reader(void *userdata) {
        static atomic_uint next_id;
        struct stress *s = userdata;
        unsigned id = atomic_fetch_add(&next_id, 1) % 2;

        kh_keyring_online(s->ring, id);
        while (!atomic_load(&s->stop)) {
                for (int i = 0; i < 16; i++) {
                        const struct kh_keys *k = kh_keyring_get(s->ring);
                        size_t stamp = stamp_of(k);
                        if (stamp == 0 || stamp > atomic_load(&s->published) + 1 || k->n_tenants != 1)
                                atomic_fetch_add(&s->bad, 1);
                }
                kh_keyring_quiescent(s->ring, id);
        }
        kh_keyring_offline(s->ring, id);
        return NULL;
}

static void test_readers_never_see_a_released_snapshot(void **state) {
        struct stress s = { 0 };
        pthread_t t[2];
        (void) state;

        assert_int_equal(kh_keyring_new(2, snapshot(1), &s.ring), 0);
        atomic_store(&s.published, 1);
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_create(&t[i], NULL, reader, &s), 0);
        for (size_t n = 2; n <= STRESS_PUBLISHES; n++) {
                kh_keyring_publish(s.ring, snapshot(n));
                atomic_store(&s.published, n);
        }
        atomic_store(&s.stop, true);
        for (int i = 0; i < 2; i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        assert_int_equal(atomic_load(&s.bad), 0);
        assert_int_equal(stamp_of(kh_keyring_get(s.ring)), STRESS_PUBLISHES);
        kh_keyring_free(s.ring);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_old_snapshot_lives_until_every_reader_passed),
                cmocka_unit_test(test_offline_readers_hold_nothing),
                cmocka_unit_test(test_a_reference_outlives_the_ring_release),
                cmocka_unit_test(test_ring_arguments),
                cmocka_unit_test(test_readers_never_see_a_released_snapshot),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
