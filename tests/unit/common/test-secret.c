#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "common/secret.h"

static void test_secret_new_is_zeroed_and_sized(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
        static const uint8_t zero[32];
        (void) state;

        assert_int_equal(kh_secret_new(32, &s), 0);
        assert_int_equal(kh_secret_len(s), 32);
        assert_memory_equal(kh_secret_bytes(s), zero, 32);
        assert_int_equal(kh_secret_new(0, &s), -EINVAL);
}

static void test_secret_equal_is_exact(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *a = NULL, *b = NULL, *c = NULL, *d = NULL;
        (void) state;

        assert_int_equal(kh_secret_new_from("0123456789abcdef", 16, &a), 0);
        assert_int_equal(kh_secret_new_from("0123456789abcdef", 16, &b), 0);
        assert_int_equal(kh_secret_new_from("0123456789abcdeg", 16, &c), 0);
        assert_int_equal(kh_secret_new_from("0123456789abcde", 15, &d), 0);
        assert_true(kh_secret_equal(a, b));
        assert_false(kh_secret_equal(a, c));
        assert_false(kh_secret_equal(a, d));
}

static void test_secret_large_gets_own_mapping(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
        (void) state;

        assert_int_equal(kh_secret_new(5000, &s), 0);
        assert_int_equal(kh_secret_len(s), 5000);
        kh_secret_bytes_mut(s)[4999] = 7;
        assert_int_equal(kh_secret_bytes(s)[4999], 7);
        assert_true(kh_secret_locked_bytes() >= 5000);
}

static void test_secret_slots_are_reused_and_wiped(void **state) {
        struct kh_secret *s = NULL, *t = NULL;
        static const uint8_t zero[8];
        (void) state;

        assert_int_equal(kh_secret_new_from("abcdefgh", 8, &s), 0);
        const uint8_t *where = kh_secret_bytes(s);
        s = kh_secret_free(s);
        assert_null(s);
        assert_int_equal(kh_secret_new(8, &t), 0);
        assert_ptr_equal(kh_secret_bytes(t), where); /* LIFO free list */
        assert_memory_equal(kh_secret_bytes(t), zero, 8);
        t = kh_secret_free(t);
}

static void *alloc_many(void *arg) {
        struct kh_secret *v[3000];
        (void) arg;
        for (int i = 0; i < 3000; i++)
                if (kh_secret_new(32, &v[i]) < 0)
                        return (void *) 1;
        for (int i = 0; i < 3000; i++)
                v[i] = kh_secret_free(v[i]);
        return NULL;
}

static void test_secret_slabs_per_thread(void **state) {
        pthread_t a, b;
        void *ra, *rb;
        (void) state;

        assert_int_equal(pthread_create(&a, NULL, alloc_many, NULL), 0);
        assert_int_equal(pthread_create(&b, NULL, alloc_many, NULL), 0);
        assert_int_equal(pthread_join(a, &ra), 0);
        assert_int_equal(pthread_join(b, &rb), 0);
        assert_null(ra);
        assert_null(rb);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_secret_new_is_zeroed_and_sized),
                cmocka_unit_test(test_secret_equal_is_exact),
                cmocka_unit_test(test_secret_large_gets_own_mapping),
                cmocka_unit_test(test_secret_slots_are_reused_and_wiped),
                cmocka_unit_test(test_secret_slabs_per_thread),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
