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

struct kh_loop_ops {
        /* Loop thread only. Runs task once the current pass has handled every event that was
         * ready (for a worker: every request read in this pass), in the order deferred. A
         * task already waiting is not queued twice. */
        void (*defer)(struct kh_loop *loop, struct kh_loop_task *task);
        /* Any thread. Runs task on the loop's thread soon. Cannot fail: the task is linked
         * through its own next (so posting allocates nothing), which is why a task may be
         * posted again only once it has run. */
        void (*post)(struct kh_loop *loop, struct kh_loop_task *task);
};

struct kh_loop {
        const struct kh_loop_ops *ops;   /* first member of each implementation */
};

static inline void kh_loop_defer(struct kh_loop *loop, struct kh_loop_task *task) {
        loop->ops->defer(loop, task);
}

static inline void kh_loop_post(struct kh_loop *loop, struct kh_loop_task *task) {
        loop->ops->post(loop, task);
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
