#include "workers.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/fifo.h"
#include "common/limits.h"

#define LOOP_WAIT_MS 200

struct worker {
        struct kh_loop base;              /* first: the struct kh_loop the layers below see */
        struct kh_workers *all;
        unsigned index;
        h2o_evloop_t *evloop;
        h2o_timeout_t zero;               /* deferred tasks run on it, after the pass's I/O */
        h2o_timeout_entry_t deferred_entry;
        struct kh_loop_task *deferred_head, *deferred_tail;
        h2o_multithread_queue_t *queue;   /* wakes the loop for tasks posted from other threads */
        h2o_multithread_receiver_t receiver;
        h2o_multithread_message_t wake;   /* in the queue while posted_head is not empty */
        /* timers of the layers below (kh_loop_timer): h2o 2.2 keeps one list per length */
        h2o_timeout_t timeouts[KH_LOOP_TIMER_DURATIONS];
        unsigned timeout_ms[KH_LOOP_TIMER_DURATIONS];
        size_t n_timeouts;
        pthread_mutex_t post_lock;
        struct kh_loop_task *posted_head, *posted_tail;    /* under post_lock */
        pthread_t thread;
        bool started;
        bool disposable;                  /* the stop hook left nothing on the loop */
        int result;
};

struct kh_workers {
        struct worker *w;
        unsigned n;
        const struct kh_worker_hooks *hooks;
        void *userdata;
        atomic_bool stopping;
};

static void run_deferred(h2o_timeout_entry_t *entry) {
        struct worker *w = kh_container_of(entry, struct worker, deferred_entry);

        struct kh_loop_task *list = w->deferred_head;

        w->deferred_head = w->deferred_tail = NULL;
        kh_loop_run_deferred(list);
}

static void loop_defer(struct kh_loop *loop, struct kh_loop_task *task) {
        struct worker *w = (struct worker *) loop;

        if (task->queued)
                return;
        task->queued = true;
        KH_FIFO_PUSH(w->deferred_head, w->deferred_tail, task);
        if (!h2o_timeout_is_linked(&w->deferred_entry))
                h2o_timeout_link(w->evloop, &w->zero, &w->deferred_entry);
}

/* Posting allocates nothing: tasks wait in the worker's own list, and one preallocated
 * message wakes the loop when that list stops being empty (so it is never in h2o's queue
 * twice: the loop unlinks it before taking the list). */
static void loop_post(struct kh_loop *loop, struct kh_loop_task *task) {
        struct worker *w = (struct worker *) loop;

        pthread_mutex_lock(&w->post_lock);
        if (!w->posted_head)
                h2o_multithread_send_message(&w->receiver, &w->wake);
        KH_FIFO_PUSH(w->posted_head, w->posted_tail, task);
        pthread_mutex_unlock(&w->post_lock);
}

static void on_posted(h2o_multithread_receiver_t *receiver, h2o_linklist_t *messages) {
        struct worker *w = kh_container_of(receiver, struct worker, receiver);
        struct kh_loop_task *t;

        while (!h2o_linklist_is_empty(messages))
                h2o_linklist_unlink(messages->next);        /* only ever w->wake */
        pthread_mutex_lock(&w->post_lock);
        t = w->posted_head;
        w->posted_head = w->posted_tail = NULL;
        pthread_mutex_unlock(&w->post_lock);
        while (t) {
                struct kh_loop_task *next = t->next;
                t->next = NULL;
                t->run(t);
                t = next;
        }
}

/* A watched fd is a duplicate that h2o owns (and closes with its socket), told not to read:
 * the caller's library (libpq) reads the original itself. */
static void on_watch_ready(h2o_socket_t *sock, const char *err) {
        struct kh_loop_watch *w = sock->data;

        (void) err; /* the caller finds the error on its own fd */
        w->fn(w);
}

static int loop_watch_start(struct kh_loop *loop, int fd, struct kh_loop_watch *w) {
        struct worker *wk = (struct worker *) loop;
        h2o_socket_t *sock;
        int dup_fd;

        if (w->impl_)
                return -EBUSY;
        dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        if (dup_fd < 0)
                return -errno;
        sock = h2o_evloop_socket_create(wk->evloop, dup_fd, H2O_SOCKET_FLAG_DONT_READ);
        sock->data = w;
        w->impl_ = sock;
        h2o_socket_read_start(sock, on_watch_ready);
        return 0;
}

static void on_watch_writable(h2o_socket_t *sock, const char *err) {
        on_watch_ready(sock, err);
}

static void loop_watch_write(struct kh_loop_watch *w) {
        h2o_socket_t *sock = w->impl_;

        if (sock && !sock->_cb.write)
                h2o_socket_notify_write(sock, on_watch_writable);
}

static void loop_watch_stop(struct kh_loop_watch *w) {
        h2o_socket_t *sock = w->impl_;

        if (!sock)
                return;
        w->impl_ = NULL;
        h2o_socket_read_stop(sock);
        h2o_socket_close(sock); /* closes the duplicate; h2o frees the socket later */
}

_Static_assert(sizeof(((struct kh_loop_timer *) 0)->impl_) >=
                       sizeof(h2o_timeout_entry_t) + sizeof(void *),
               "kh_loop_timer's impl_ holds an h2o timeout entry");

struct timer_impl {
        h2o_timeout_entry_t entry;
        struct kh_loop_timer *owner;
};

static struct timer_impl *timer_impl_of(struct kh_loop_timer *t) {
        return (struct timer_impl *) (void *) t->impl_;
}

static void on_timer(h2o_timeout_entry_t *entry) {
        struct timer_impl *ti = kh_container_of(entry, struct timer_impl, entry);

        ti->owner->fn(ti->owner);
}

static int loop_timer_start(struct kh_loop *loop, struct kh_loop_timer *t, unsigned ms) {
        struct worker *w = (struct worker *) loop;
        struct timer_impl *ti = timer_impl_of(t);
        size_t i;

        for (i = 0; i < w->n_timeouts && w->timeout_ms[i] != ms; i++)
                ;
        if (i == w->n_timeouts) {
                if (i == KH_LOOP_TIMER_DURATIONS)
                        return -ENOSPC;
                h2o_timeout_init(w->evloop, &w->timeouts[i], ms);
                w->timeout_ms[i] = ms;
                w->n_timeouts++;
        }
        if (ti->owner && h2o_timeout_is_linked(&ti->entry))
                h2o_timeout_unlink(&ti->entry);
        *ti = (struct timer_impl) { .entry = { .cb = on_timer }, .owner = t };
        h2o_timeout_link(w->evloop, &w->timeouts[i], &ti->entry);
        return 0;
}

static void loop_timer_stop(struct kh_loop_timer *t) {
        struct timer_impl *ti = timer_impl_of(t);

        if (ti->owner && h2o_timeout_is_linked(&ti->entry))
                h2o_timeout_unlink(&ti->entry);
}

static const struct kh_loop_ops loop_ops = {
        .defer = loop_defer, .post = loop_post,
        .watch_start = loop_watch_start, .watch_write = loop_watch_write,
        .watch_stop = loop_watch_stop, .timer_start = loop_timer_start,
        .timer_stop = loop_timer_stop,
};

int kh_workers_new(unsigned n, struct kh_workers **ret) {
        KH_CLEANUP(kh_workers_freep) struct kh_workers *all = NULL;

        if (n == 0 || n > KH_THREADS_MAX)
                return -EINVAL;
        all = calloc(1, sizeof(*all));
        if (!all)
                return -ENOMEM;
        all->w = calloc(n, sizeof(*all->w));
        if (!all->w)
                return -ENOMEM;
        for (unsigned i = 0; i < n; i++) {
                struct worker *w = &all->w[i];

                w->base.ops = &loop_ops;
                w->all = all;
                w->index = i;
                w->evloop = h2o_evloop_create();
                all->n++;
                h2o_timeout_init(w->evloop, &w->zero, 0);
                w->deferred_entry.cb = run_deferred;
                w->queue = h2o_multithread_create_queue(w->evloop);
                h2o_multithread_register_receiver(w->queue, &w->receiver, on_posted);
                pthread_mutex_init(&w->post_lock, NULL);
                w->disposable = true;
        }
        *ret = KH_TAKE_PTR(all);
        return 0;
}

struct kh_workers *kh_workers_free(struct kh_workers *all) {
        if (!all)
                return NULL;
        for (unsigned i = 0; i < all->n; i++) {
                struct worker *w = &all->w[i];

                /* A loop the stop hook could not empty (a client still holds a connection)
                 * is left to the exiting process: h2o asserts on disposing of live timers. */
                if (!w->disposable)
                        continue;
                h2o_multithread_unregister_receiver(w->queue, &w->receiver);
                h2o_multithread_destroy_queue(w->queue);
                if (h2o_timeout_is_linked(&w->deferred_entry))
                        h2o_timeout_unlink(&w->deferred_entry);
                h2o_timeout_dispose(w->evloop, &w->zero);
                for (size_t j = 0; j < w->n_timeouts; j++)
                        h2o_timeout_dispose(w->evloop, &w->timeouts[j]);
                h2o_evloop_destroy(w->evloop);
                pthread_mutex_destroy(&w->post_lock);
        }
        free(all->w);
        free(all);
        return NULL;
}

unsigned kh_workers_count(const struct kh_workers *all) {
        return all->n;
}

h2o_evloop_t *kh_workers_evloop(struct kh_workers *all, unsigned i) {
        return i < all->n ? all->w[i].evloop : NULL;
}

struct kh_loop *kh_workers_loop(struct kh_workers *all, unsigned i) {
        return i < all->n ? &all->w[i].base : NULL;
}

static void *worker_main(void *userdata) {
        struct worker *w = userdata;
        struct kh_workers *all = w->all;

        w->result = all->hooks->start(w->index, all->userdata);
        if (w->result < 0) {
                kh_workers_stop(all);
                return NULL;
        }
        while (!atomic_load_explicit(&all->stopping, memory_order_relaxed)) {
                (void) h2o_evloop_run(w->evloop, LOOP_WAIT_MS);
                all->hooks->pass(w->index, all->userdata);
        }
        w->disposable = all->hooks->stop(w->index, all->userdata);
        return NULL;
}

int kh_workers_run(struct kh_workers *all, const struct kh_worker_hooks *hooks, void *userdata) {
        int r = 0;

        all->hooks = hooks;
        all->userdata = userdata;
        for (unsigned i = 0; i < all->n; i++) {
                r = -pthread_create(&all->w[i].thread, NULL, worker_main, &all->w[i]);
                if (r < 0) {
                        kh_workers_stop(all);
                        break;
                }
                all->w[i].started = true;
        }
        for (unsigned i = 0; i < all->n; i++) {
                if (!all->w[i].started)
                        continue;
                (void) pthread_join(all->w[i].thread, NULL);
                all->w[i].started = false;
                if (r == 0 && all->w[i].result < 0)
                        r = all->w[i].result;
        }
        return r;
}

void kh_workers_stop(struct kh_workers *all) {
        atomic_store(&all->stopping, true);
}
