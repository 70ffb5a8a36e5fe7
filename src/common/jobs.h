/* The job pool: work that must not run on an event loop (re-encryption batches, slow
 * key-store signatures, audit checkpoints, HSM calls) runs on a few threads of its own, and
 * its completion runs back on the loop that submitted it. The queue has a fixed maximum, so
 * a burst of work is refused (-EAGAIN) rather than queued without bound. */
#pragma once

#include <stddef.h>

#include "common/cleanup.h"
#include "common/loop.h"

struct kh_jobs;
struct kh_job;

typedef void (*kh_job_fn)(struct kh_job *job);

/* Embedded in the submitter's own struct; the submitter owns it and may free it in done. */
struct kh_job {
        kh_job_fn run;         /* on a pool thread; records its outcome in result */
        kh_job_fn done;        /* on the submitting loop, after run (or when cancelled) */
        int result;            /* -ECANCELED if the pool stopped before run */
        struct kh_loop *loop;  /* the pool's, from submit */
        struct kh_loop_task task; /* the pool's: how done reaches the loop */
        struct kh_job *next;   /* the pool's, while queued */
};

#define KH_JOBS_THREADS_MAX 16

/**
 * kh_jobs_new() - starts a pool of threads (1..KH_JOBS_THREADS_MAX) whose queue holds at
 * most queue_max jobs. Returns 0, -EINVAL, -ENOMEM or an error of pthread_create.
 */
KH_MUST_CHECK int kh_jobs_new(unsigned threads, size_t queue_max, struct kh_jobs **ret);

/**
 * kh_jobs_submit() - queues job; once a pool thread has run it, job->done runs on loop.
 * Any thread (a loop, normally). Returns 0, -EAGAIN (the queue is full: try later) or
 * -ESHUTDOWN (the pool is stopping); on failure job is untouched and done never runs.
 */
KH_MUST_CHECK int kh_jobs_submit(struct kh_jobs *jobs, struct kh_loop *loop, struct kh_job *job);

/**
 * kh_jobs_stop() - refuses new jobs, lets the running ones finish and cancels the queued
 * ones (their done runs with result -ECANCELED); returns once every done has been posted to
 * its loop. Call it while the loops still run, so that they run those completions.
 */
void kh_jobs_stop(struct kh_jobs *jobs);

/* Stops the pool (as kh_jobs_stop) and frees it. NULL-safe. */
struct kh_jobs *kh_jobs_free(struct kh_jobs *jobs);
KH_DEFINE_CLEANUP(kh_jobs_free, struct kh_jobs *)
