/* A kh_loop (common/loop.h) for unit tests, on the test's own thread: deferred tasks run
 * when the test ends a pass (tl_end_of_pass), posted ones when the test runs them
 * (tl_run_until). Posts may come from any thread. Include after <cmocka.h>. */
#pragma once

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "common/fifo.h"
#include "common/loop.h"

#define TL_WAIT_S 10   /* a bound on a hang, never a measurement */

struct test_loop {
        struct kh_loop base;
        pthread_mutex_t lock;
        pthread_cond_t posted;
        struct kh_loop_task *deferred_head, *deferred_tail;   /* test thread only */
        struct kh_loop_task *posted_head, *posted_tail;       /* under lock */
        int deferred;      /* defer calls that queued a task */
        int n_posted;      /* posts accepted (under lock) */
        int n_run;         /* posted tasks run */
        pthread_t thread;  /* the loop's thread: the one that called tl_init() */
};

static inline void tl_defer(struct kh_loop *loop, struct kh_loop_task *task) {
        struct test_loop *l = (struct test_loop *) loop;

        if (task->queued)
                return;
        task->queued = true;
        KH_FIFO_PUSH(l->deferred_head, l->deferred_tail, task);
        l->deferred++;
}

static inline void tl_post(struct kh_loop *loop, struct kh_loop_task *task) {
        struct test_loop *l = (struct test_loop *) loop;

        pthread_mutex_lock(&l->lock);
        KH_FIFO_PUSH(l->posted_head, l->posted_tail, task);
        l->n_posted++;
        pthread_cond_signal(&l->posted);
        pthread_mutex_unlock(&l->lock);
}

static const struct kh_loop_ops tl_ops = { .defer = tl_defer, .post = tl_post };

static inline void tl_init(struct test_loop *l) {
        *l = (struct test_loop) { .base = { &tl_ops }, .thread = pthread_self() };
        pthread_mutex_init(&l->lock, NULL);
        pthread_cond_init(&l->posted, NULL);
}

static inline void tl_destroy(struct test_loop *l) {
        pthread_mutex_destroy(&l->lock);
        pthread_cond_destroy(&l->posted);
}

/* The end of a pass: runs what was deferred, in order; what those defer waits for the
 * next pass. */
static inline void tl_end_of_pass(struct test_loop *l) {
        struct kh_loop_task *list = l->deferred_head;

        l->deferred_head = l->deferred_tail = NULL;
        kh_loop_run_deferred(list);
}

/* Runs posted tasks, oldest first, until @total have run since tl_init(). Fails the test
 * when none is posted within TL_WAIT_S. */
static inline void tl_run_until(struct test_loop *l, int total) {
        while (l->n_run < total) {
                struct kh_loop_task *t;
                struct timespec until;

                clock_gettime(CLOCK_REALTIME, &until);
                until.tv_sec += TL_WAIT_S;
                pthread_mutex_lock(&l->lock);
                while (!l->posted_head &&
                       pthread_cond_timedwait(&l->posted, &l->lock, &until) == 0)
                        ;
                KH_FIFO_POP(l->posted_head, l->posted_tail, t);
                pthread_mutex_unlock(&l->lock);
                if (!t)
                        fail_msg("no task posted within %d s (%d of %d ran)", TL_WAIT_S, l->n_run,
                                 total);
                l->n_run++;
                t->run(t);
        }
}
