/* An event loop as the layers below the daemon see it: something that runs a task later on
 * its own thread. keyholdd runs one loop per worker thread (daemon/workers.c implements this
 * over h2o's evloop); a service defers its group commit to the end of the loop's pass, and a
 * job on the pool (common/jobs.h) posts its completion back to the loop that asked. Tests
 * implement it with a plain queue. A const table of operations, like the other backends. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/cleanup.h"

struct kh_loop_task;
typedef void (*kh_loop_task_fn)(struct kh_loop_task *task);

/* Embedded in the caller's own struct (container_of gets back to it). The caller owns it;
 * the loop only links it while it waits to run. */
struct kh_loop_task {
        kh_loop_task_fn run;
        struct kh_loop_task *next;       /* the loop's, while queued */
        bool queued;                     /* the loop's: set while deferred and not yet run */
};

struct kh_loop;

/* A file descriptor the loop watches for a caller (the PostgreSQL store's connection):
 * embedded in the caller's struct, fn runs on the loop's thread when the fd is readable
 * (or in error), and once more after each kh_loop_watch_write() when it is writable. The
 * fd stays the caller's: the loop watches a duplicate, so the caller stops the watch
 * before it closes the fd. */
struct kh_loop_watch {
        void (*fn)(struct kh_loop_watch *w);
        void *impl_;                     /* the loop's, while watching; NULL otherwise */
};

/* A one-shot timer, embedded in the caller's struct: fn runs on the loop's thread once ms
 * have passed, unless stopped first. impl_ is the loop's (its timer entry lives there). */
struct kh_loop_timer {
        void (*fn)(struct kh_loop_timer *t);
        _Alignas(8) unsigned char impl_[48];
};

struct kh_loop_ops {
        /* Loop thread only. Runs task once the current pass has handled every event that was
         * ready (for a worker: every request read in this pass), in the order deferred. A
         * task already waiting is not queued twice. */
        void (*defer)(struct kh_loop *loop, struct kh_loop_task *task);
        /* Any thread. Runs task on the loop's thread soon. Cannot fail: the task is linked
         * through its own next (so posting allocates nothing), which is why a task may be
         * posted again only once it has run. */
        void (*post)(struct kh_loop *loop, struct kh_loop_task *task);
        /* Optional (NULL in loops that watch no fd: the tests' plain queues). Loop thread
         * only. watch_start returns 0 or a negative errno; watch_stop and timer_stop accept
         * a watch or timer that is not running. A loop offers timers of at most
         * KH_LOOP_TIMER_DURATIONS different lengths (timer_start returns -ENOSPC past them). */
        int (*watch_start)(struct kh_loop *loop, int fd, struct kh_loop_watch *w);
        void (*watch_write)(struct kh_loop_watch *w);
        void (*watch_stop)(struct kh_loop_watch *w);
        int (*timer_start)(struct kh_loop *loop, struct kh_loop_timer *t, unsigned ms);
        void (*timer_stop)(struct kh_loop_timer *t);
};

#define KH_LOOP_TIMER_DURATIONS 4

struct kh_loop {
        const struct kh_loop_ops *ops;   /* first member of each implementation */
};

static inline void kh_loop_defer(struct kh_loop *loop, struct kh_loop_task *task) {
        loop->ops->defer(loop, task);
}

static inline void kh_loop_post(struct kh_loop *loop, struct kh_loop_task *task) {
        loop->ops->post(loop, task);
}

static inline bool kh_loop_watches_fds(const struct kh_loop *loop) {
        return loop && loop->ops->watch_start && loop->ops->timer_start;
}

/* For implementations of defer: runs the deferred tasks of list (taken off the loop first,
 * so that what they defer waits for the next pass) in order, each no longer queued. */
static inline void kh_loop_run_deferred(struct kh_loop_task *list) {
        while (list) {
                struct kh_loop_task *next = list->next;
                list->queued = false;
                list->next = NULL;
                list->run(list);
                list = next;
        }
}
