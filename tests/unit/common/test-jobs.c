/* The job pool against a test loop: a queue of posted tasks that the test thread runs. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/jobs.h"

#include "../test-loop.h"

struct test_job {
        struct kh_job job;
        struct test_loop *loop;
        pthread_t ran_on, done_on;
        int value, ran, result_seen;
        atomic_int started, done;
        pthread_mutex_t *gate;     /* run blocks on it when set */
};

static void job_run(struct kh_job *job) {
        struct test_job *t = kh_container_of(job, struct test_job, job);

        atomic_store(&t->started, 1);
        if (t->gate) {
                pthread_mutex_lock(t->gate);
                pthread_mutex_unlock(t->gate);
        }
        t->ran_on = pthread_self();
        t->value *= 2;
        t->ran++;
}

static void job_done(struct kh_job *job) {
        struct test_job *t = kh_container_of(job, struct test_job, job);

        t->done_on = pthread_self();
        t->result_seen = job->result;
        atomic_fetch_add(&t->done, 1);
}

static void tj_init(struct test_job *t, struct test_loop *l, int value) {
        *t = (struct test_job) { .job = { .run = job_run, .done = job_done }, .loop = l,
                                 .value = value };
}

static void test_jobs_run_off_the_loop_and_complete_on_it(void **state) {
        struct kh_jobs *jobs = NULL;
        struct test_loop l;
        struct test_job t[8];
        (void) state;

        tl_init(&l);
        assert_int_equal(kh_jobs_new(2, 16, &jobs), 0);
        for (int i = 0; i < 8; i++) {
                tj_init(&t[i], &l, i + 1);
                assert_int_equal(kh_jobs_submit(jobs, &l.base, &t[i].job), 0);
        }
        tl_run_until(&l, 8);
        for (int i = 0; i < 8; i++) {
                assert_int_equal(t[i].ran, 1);
                assert_int_equal(t[i].done, 1);
                assert_int_equal(t[i].value, 2 * (i + 1));
                assert_int_equal(t[i].result_seen, 0);
                assert_false(pthread_equal(t[i].ran_on, l.thread));
                assert_true(pthread_equal(t[i].done_on, l.thread));
        }
        kh_jobs_free(jobs);
}

static void *stop_thread(void *jobs) {
        kh_jobs_stop(jobs);
        return NULL;
}

static void test_jobs_queue_is_bounded_and_stop_cancels(void **state) {
        pthread_mutex_t gate = PTHREAD_MUTEX_INITIALIZER;
        struct kh_jobs *jobs = NULL;
        struct test_loop l;
        struct test_job blocker, q[3], extra;
        pthread_t stopper;
        int r;
        (void) state;

        tl_init(&l);
        assert_int_equal(kh_jobs_new(1, 2, &jobs), 0);
        pthread_mutex_lock(&gate);
        tj_init(&blocker, &l, 1);
        blocker.gate = &gate;
        assert_int_equal(kh_jobs_submit(jobs, &l.base, &blocker.job), 0);
        while (!atomic_load(&blocker.started))
                usleep(1000);            /* the only thread is inside the blocker now */

        for (int i = 0; i < 3; i++)
                tj_init(&q[i], &l, 10 * (i + 1));
        tj_init(&extra, &l, 99);
        assert_int_equal(kh_jobs_submit(jobs, &l.base, &q[0].job), 0);
        assert_int_equal(kh_jobs_submit(jobs, &l.base, &q[1].job), 0);
        assert_int_equal(kh_jobs_submit(jobs, &l.base, &q[2].job), -EAGAIN);

        assert_int_equal(pthread_create(&stopper, NULL, stop_thread, jobs), 0);
        while ((r = kh_jobs_submit(jobs, &l.base, &extra.job)) == -EAGAIN)
                usleep(1000);
        assert_int_equal(r, -ESHUTDOWN);
        pthread_mutex_unlock(&gate);

        tl_run_until(&l, 3);
        assert_int_equal(blocker.ran, 1);
        assert_int_equal(blocker.result_seen, 0);
        for (int i = 0; i < 2; i++) {
                assert_int_equal(q[i].ran, 0);
                assert_int_equal(q[i].done, 1);
                assert_int_equal(q[i].result_seen, -ECANCELED);
        }
        assert_int_equal(atomic_load(&q[2].done) + atomic_load(&extra.done), 0); /* refused */
        assert_int_equal(pthread_join(stopper, NULL), 0);
        kh_jobs_free(jobs);
}

static void test_jobs_new_checks_its_arguments(void **state) {
        struct kh_jobs *jobs = NULL;
        (void) state;

        assert_int_equal(kh_jobs_new(0, 4, &jobs), -EINVAL);
        assert_int_equal(kh_jobs_new(KH_JOBS_THREADS_MAX + 1, 4, &jobs), -EINVAL);
        assert_int_equal(kh_jobs_new(1, 0, &jobs), -EINVAL);
        assert_null(jobs);
        assert_null(kh_jobs_free(NULL));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_jobs_run_off_the_loop_and_complete_on_it),
                cmocka_unit_test(test_jobs_queue_is_bounded_and_stop_cancels),
                cmocka_unit_test(test_jobs_new_checks_its_arguments),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
