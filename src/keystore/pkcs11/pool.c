/* The session pool (pool.h): a stack of idle sessions under one mutex, one condition
 * variable for everyone who waits (a borrower for a session, a drain for every session). */
#include "keystore/pkcs11/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/errors.h"

struct kh_p11_pool {
        pthread_mutex_t lock;
        pthread_cond_t changed;         /* a session came back, or a drain ended */
        struct kh_p11 *primary;         /* borrowed: the caller's */
        unsigned size;
        unsigned n_open;                /* sessions open or being opened, primary included */
        unsigned n_idle;
        bool draining;
        struct kh_p11 *idle[KH_P11_POOL_SIZE_MAX];
};

int kh_p11_pool_new(struct kh_p11 *primary, unsigned size, struct kh_p11_pool **ret) {
        struct kh_p11_pool *pool;
        pthread_condattr_t attr;

        if (!primary || size == 0 || size > KH_P11_POOL_SIZE_MAX)
                return -EINVAL;
        pool = calloc(1, sizeof(*pool));
        if (!pool)
                return -ENOMEM;
        pthread_mutex_init(&pool->lock, NULL);
        pthread_condattr_init(&attr);
        (void) pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&pool->changed, &attr);
        pthread_condattr_destroy(&attr);
        pool->primary = primary;
        pool->size = size;
        pool->idle[0] = primary;
        pool->n_idle = pool->n_open = 1;
        *ret = pool;
        return 0;
}

/* Closes every idle session but the primary's. Under lock, draining. */
static void close_extras_locked(struct kh_p11_pool *pool) {
        for (unsigned i = 0; i < pool->n_idle; i++)
                if (pool->idle[i] != pool->primary)
                        (void) kh_p11_free(pool->idle[i]);
        pool->idle[0] = pool->primary;
        pool->n_idle = pool->n_open = 1;
}

struct kh_p11_pool *kh_p11_pool_free(struct kh_p11_pool *pool) {
        if (!pool)
                return NULL;
        kh_p11_pool_drain(pool);
        pthread_cond_destroy(&pool->changed);
        pthread_mutex_destroy(&pool->lock);
        free(pool);
        return NULL;
}

static struct timespec deadline_after(unsigned ms) {
        struct timespec t;

        (void) clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += ms / 1000;
        t.tv_nsec += (long) (ms % 1000) * 1000000L;
        if (t.tv_nsec >= 1000000000L) {
                t.tv_sec++;
                t.tv_nsec -= 1000000000L;
        }
        return t;
}

int kh_p11_pool_get(struct kh_p11_pool *pool, struct kh_p11 **ret) {
        const struct timespec deadline = deadline_after(KH_P11_POOL_WAIT_MS);
        struct kh_p11 *s = NULL;
        int r = 0;

        pthread_mutex_lock(&pool->lock);
        for (;;) {
                if (!pool->draining && pool->n_idle > 0) {
                        *ret = pool->idle[--pool->n_idle];
                        pthread_mutex_unlock(&pool->lock);
                        return 0;
                }
                if (!pool->draining && pool->n_open < pool->size)
                        break;
                if (pthread_cond_timedwait(&pool->changed, &pool->lock, &deadline) == ETIMEDOUT) {
                        pthread_mutex_unlock(&pool->lock);
                        return -KH_E_BUSY;
                }
        }
        /* a new session, opened outside the lock: the slot is counted meanwhile, and a drain
         * waits for it like for any session lent out */
        pool->n_open++;
        pthread_mutex_unlock(&pool->lock);
        r = kh_p11_session_open(pool->primary, &s);
        if (r < 0) {
                pthread_mutex_lock(&pool->lock);
                pool->n_open--;
                pthread_cond_broadcast(&pool->changed);
                pthread_mutex_unlock(&pool->lock);
                return r;
        }
        *ret = s;
        return 0;
}

void kh_p11_pool_put(struct kh_p11_pool *pool, struct kh_p11 *s) {
        pthread_mutex_lock(&pool->lock);
        pool->idle[pool->n_idle++] = s;
        pthread_cond_broadcast(&pool->changed);
        pthread_mutex_unlock(&pool->lock);
}

void kh_p11_pool_drain(struct kh_p11_pool *pool) {
        pthread_mutex_lock(&pool->lock);
        while (pool->draining)
                pthread_cond_wait(&pool->changed, &pool->lock);
        pool->draining = true;
        while (pool->n_idle < pool->n_open)
                pthread_cond_wait(&pool->changed, &pool->lock);
        close_extras_locked(pool);
        pthread_mutex_unlock(&pool->lock);
}

void kh_p11_pool_resume(struct kh_p11_pool *pool) {
        pthread_mutex_lock(&pool->lock);
        pool->draining = false;
        pthread_cond_broadcast(&pool->changed);
        pthread_mutex_unlock(&pool->lock);
}

unsigned kh_p11_pool_open_count(struct kh_p11_pool *pool) {
        unsigned n;

        pthread_mutex_lock(&pool->lock);
        n = pool->n_open;
        pthread_mutex_unlock(&pool->lock);
        return n;
}
