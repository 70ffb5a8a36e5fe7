#include "jobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "common/fifo.h"

struct kh_jobs {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        struct kh_job *head, *tail;   /* queued, oldest first */
        size_t queued, queue_max;
        bool stopping;
        pthread_t threads[KH_JOBS_THREADS_MAX];
        unsigned n_threads;
};

static void run_done(struct kh_loop_task *task) {
        struct kh_job *job = kh_container_of(task, struct kh_job, task);

        job->done(job);
}

/* Hands job back to its loop. */
static void complete(struct kh_job *job) {
        job->task = (struct kh_loop_task) { .run = run_done };
        kh_loop_post(job->loop, &job->task);
}

static void *worker(void *userdata) {
        struct kh_jobs *jobs = userdata;

        for (;;) {
                struct kh_job *job;

                pthread_mutex_lock(&jobs->lock);
                while (!jobs->head && !jobs->stopping)
                        pthread_cond_wait(&jobs->wake, &jobs->lock);
                KH_FIFO_POP(jobs->head, jobs->tail, job);
                if (job)
                        jobs->queued--;
                bool stopping = jobs->stopping;
                pthread_mutex_unlock(&jobs->lock);

                if (!job)
                        return NULL;     /* stopping and nothing left */
                if (stopping) {
                        job->result = -ECANCELED;
                } else {
                        job->result = 0;
                        job->run(job);
                }
                complete(job);
        }
}

int kh_jobs_new(unsigned threads, size_t queue_max, struct kh_jobs **ret) {
        KH_CLEANUP(kh_jobs_freep) struct kh_jobs *jobs = NULL;
        int r;

        if (threads == 0 || threads > KH_JOBS_THREADS_MAX || queue_max == 0)
                return -EINVAL;
        jobs = calloc(1, sizeof(*jobs));
        if (!jobs)
                return -ENOMEM;
        pthread_mutex_init(&jobs->lock, NULL);
        pthread_cond_init(&jobs->wake, NULL);
        jobs->queue_max = queue_max;
        for (unsigned i = 0; i < threads; i++) {
                r = -pthread_create(&jobs->threads[i], NULL, worker, jobs);
                if (r < 0)
                        return r;
                jobs->n_threads++;
        }
        *ret = KH_TAKE_PTR(jobs);
        return 0;
}

int kh_jobs_submit(struct kh_jobs *jobs, struct kh_loop *loop, struct kh_job *job) {
        int r = 0;

        pthread_mutex_lock(&jobs->lock);
        if (jobs->stopping)
                r = -ESHUTDOWN;
        else if (jobs->queued == jobs->queue_max)
                r = -EAGAIN;
        if (r == 0) {
                job->loop = loop;
                KH_FIFO_PUSH(jobs->head, jobs->tail, job);
                jobs->queued++;
                pthread_cond_signal(&jobs->wake);
        }
        pthread_mutex_unlock(&jobs->lock);
        return r;
}

void kh_jobs_stop(struct kh_jobs *jobs) {
        pthread_mutex_lock(&jobs->lock);
        jobs->stopping = true;
        pthread_cond_broadcast(&jobs->wake);
        pthread_mutex_unlock(&jobs->lock);
        /* the threads cancel what is still queued, then exit */
        for (unsigned i = 0; i < jobs->n_threads; i++)
                (void) pthread_join(jobs->threads[i], NULL);
        jobs->n_threads = 0;
}

struct kh_jobs *kh_jobs_free(struct kh_jobs *jobs) {
        if (!jobs)
                return NULL;
        kh_jobs_stop(jobs);
        pthread_cond_destroy(&jobs->wake);
        pthread_mutex_destroy(&jobs->lock);
        free(jobs);
        return NULL;
}
