#include "keywatch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "common/buf.h"
#include "service/app-internal.h"
#include "service/reencrypt.h"
#include "store/store.h"

/* The wait is cut in slices, so that stopping never waits a whole poll period. */
#define SLICE_MS (KH_KEYWATCH_POLL_MS / 4)

struct kh_keywatch {
        struct kh_app *app;
        struct kh_store *store; /* the thread's own connection (it LISTENs) */
        pthread_t thread;
        atomic_bool stop;
        uint64_t seen; /* the key epoch last taken in */
        bool failing;  /* the last round failed (said once, not per round) */
};

static void report(struct kh_keywatch *w, const char *what, int r) {
        if (w->app->event)
                w->app->event(NULL, what, r, w->app->userdata);
}

static void pause_slice(void) {
        (void) nanosleep(&(struct timespec) { .tv_nsec = SLICE_MS * 1000000L }, NULL);
}

/* The database's sealed flag: what an operator's last seal or unseal on any replica said. */
static int db_sealed(struct kh_keywatch *w, bool *ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        int r;

        kh_buf_init(&v, 16, false);
        r = kh_store_meta_get(w->store, KH_META_SEALED, &v);
        if (r == -ENOENT) {
                *ret = false;
                return 0;
        }
        if (r < 0)
                return r;
        *ret = v.len == 1 && v.data[0] == '1';
        return 0;
}

/* Takes in what changed: the sealed flag first (a seal drops the DEKs before anything
 * else), then the key states. */
static int follow(struct kh_keywatch *w) {
        bool sealed;
        int r;

        r = db_sealed(w, &sealed);
        if (r < 0)
                return r;
        r = kh_app_follow_seal(w->app, sealed);
        if (r > 0)
                report(w,
                       sealed ? "sealed: another replica sealed the server"
                              : "unsealed with the configured secret: another replica was "
                                "unsealed",
                       0);
        else if (r < 0)
                report(w,
                       sealed ? "cannot seal as another replica did"
                              : "cannot unseal with the configured secret as another replica "
                                "did; unseal this one with `keyhold unseal`",
                       r);
        r = kh_app_reload_keys(w->app);
        if (r < 0)
                return r;
        kh_reencrypt_wake(w->app->reencrypt);
        return 0;
}

static void *watch_thread(void *userdata) {
        struct kh_keywatch *w = userdata;
        int quiet = 0; /* slices waited without news since the last read */

        while (!atomic_load(&w->stop)) {
                uint64_t epoch;
                int r = kh_store_key_epoch_wait(w->store, SLICE_MS);

                if (r < 0) {
                        /* the database is gone: the epoch is read once it is back */
                        pause_slice();
                        quiet = 4;
                        continue;
                }
                /* the fallback: read the epoch every KH_KEYWATCH_POLL_MS without news */
                if (r == 0 && ++quiet < KH_KEYWATCH_POLL_MS / SLICE_MS)
                        continue;
                quiet = 0;
                r = kh_store_key_epoch(w->store, &epoch);
                if (r >= 0 && epoch == w->seen)
                        continue;
                if (r >= 0)
                        r = follow(w);
                if (r < 0) {
                        if (!w->failing)
                                report(w,
                                       "cannot take in another replica's key state change; "
                                       "trying again",
                                       r);
                        w->failing = true;
                        continue;
                }
                if (w->failing)
                        report(w, "took in the key state changes of other replicas again", 0);
                w->failing = false;
                w->seen = epoch;
        }
        return NULL;
}

int kh_keywatch_start(struct kh_app *app, uint64_t seen, struct kh_keywatch **ret) {
        struct kh_keywatch *w;
        int r;

        *ret = NULL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->app = app;
        w->seen = seen;
        r = kh_store_open(&app->cfg->storage, &w->store);
        /* listening from now on: a change made after this is announced */
        if (r >= 0)
                r = kh_store_key_epoch_wait(w->store, 0);
        if (r == -EOPNOTSUPP) {
                kh_store_close(w->store);
                free(w);
                return 0;
        }
        if (r >= 0)
                r = -pthread_create(&w->thread, NULL, watch_thread, w);
        if (r < 0) {
                kh_store_close(w->store);
                free(w);
                return r;
        }
        *ret = w;
        return 0;
}

void kh_keywatch_stop(struct kh_keywatch *w) {
        if (!w)
                return;
        atomic_store(&w->stop, true);
        (void) pthread_join(w->thread, NULL);
        kh_store_close(w->store);
        free(w);
}
