/* keyholdd's worker threads: one event loop each (h2o's evloop), which the HTTP server and
 * the services run on. Each loop is also a struct kh_loop (common/loop.h) for the layers
 * below: a task deferred to the end of the current pass (the services' group commit), and
 * tasks posted from other threads (job completions). */
#pragma once

#include <stdbool.h>

#include <h2o.h>

#include "common/cleanup.h"
#include "common/loop.h"

struct kh_workers;

/* What runs on each worker thread, around its loop. */
struct kh_worker_hooks {
        /* before the first pass; a failure stops every worker. Returns 0 or -errno. */
        int (*start)(unsigned i, void *userdata);
        /* after every pass of the loop (a quiescent point: no request is in a handler) */
        void (*pass)(unsigned i, void *userdata);
        /* once the workers are asked to stop; may run the loop further (to drain it).
         * Returns true if the loop holds nothing any more and may be destroyed. */
        bool (*stop)(unsigned i, void *userdata);
};

/**
 * kh_workers_new() - creates n event loops (1..KH_THREADS_MAX), threads not started yet.
 * Returns 0, -EINVAL or -ENOMEM.
 */
KH_MUST_CHECK int kh_workers_new(unsigned n, struct kh_workers **ret);
struct kh_workers *kh_workers_free(struct kh_workers *w); /* after run returned; NULL-safe */
KH_DEFINE_CLEANUP(kh_workers_free, struct kh_workers *)

unsigned kh_workers_count(const struct kh_workers *w);
h2o_evloop_t *kh_workers_evloop(struct kh_workers *w, unsigned i);
struct kh_loop *kh_workers_loop(struct kh_workers *w, unsigned i);

/**
 * kh_workers_run() - runs every worker on its own thread (start, then passes until
 * kh_workers_stop(), then stop) and returns once all have ended. Returns 0, the first
 * error of a start hook, or an error of pthread_create.
 */
KH_MUST_CHECK int kh_workers_run(struct kh_workers *w, const struct kh_worker_hooks *hooks,
                                 void *userdata);

/* Asks every loop to stop after its current pass. Async-signal-safe (an atomic flag). */
void kh_workers_stop(struct kh_workers *w);
