#include "service/keystore-monitor.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>

#include "common/errors.h"
#include "keystore/keystore.h"
#include "service/app-internal.h"
#include "service/reencrypt.h"

#define SLICE_MS 100 /* how soon the thread notices the app stopping */

static void emit(const struct kh_app *app, const char *what, int r) {
        if (app->event)
                app->event(NULL, what, r, app->userdata);
}

static void sleep_ms(struct kh_app *app, unsigned ms) {
        for (unsigned slept = 0; slept < ms && !atomic_load(&app->stopping); slept += SLICE_MS)
                (void) nanosleep(&(struct timespec) { .tv_nsec = SLICE_MS * 1000L * 1000L }, NULL);
}

/* Publishes the snapshot without DEKs that answers keystore_unavailable on every key route
 * (cache_deks_while_unavailable = false). Caller holds reload_lock. */
static int publish_without_deks_locked(struct kh_app *app) {
        const char *ids[KH_TENANTS_MAX];
        struct kh_keys_failure failed;
        struct kh_keys *keys = NULL;
        int r;

        for (size_t i = 0; i < app->n_tenants; i++)
                ids[i] = app->tenants[i].id;
        r = kh_keys_load(app->store, NULL, ids, app->n_tenants, 0, &keys, &failed);
        if (r < 0)
                return r;
        keys->sealed = false; /* not published yet: still the loader's to change */
        keys->unavailable = true;
        kh_keyring_publish(app->keyring, keys);
        return 0;
}

/* The store was found gone: the server says so, and drops the DEKs if it should. Returns
 * whether it dropped them (the caller waits for every worker to let go). Under
 * reload_lock. */
static bool lost_locked(struct kh_app *app, const char *detail) {
        bool cache = app->cfg->keystore.cache_deks_while_unavailable;
        char what[320];
        int r = 0;

        atomic_store(&app->ks_unavailable, true);
        if (!cache)
                r = publish_without_deks_locked(app);
        /* the detail names a call and its CKR_ answer, never the PIN */
        (void) snprintf(what, sizeof(what),
                        "keystore unavailable: %s; %s; reconnecting at least every %u ms",
                        detail[0] ? detail : "the device does not answer",
                        cache ? "serving with the DEKs in memory"
                              : r < 0 ? "cannot drop the DEKs (database), they stay"
                                      : "DEKs dropped, key routes answer 503",
                        KH_KS_RETRY_MAX_MS);
        emit(app, what, -KH_E_KEYSTORE_UNAVAILABLE);
        return !cache && r == 0;
}

/* One reconnect; 0 once the store (and, when they were dropped, the DEKs) are back. Under
 * reload_lock. */
static int reconnect_locked(struct kh_app *app, char *detail, size_t detail_len) {
        struct kh_keys_failure failed;
        struct kh_keys *keys = NULL;
        int r;

        r = kh_keystore_reconnect(app->keystore, detail, detail_len);
        if (r < 0)
                return r;
        if (app->cfg->keystore.cache_deks_while_unavailable)
                return 0;
        r = kh_app_snapshot_locked(app, 0, &keys, &failed);
        if (r < 0) {
                (void) snprintf(detail, detail_len, "reloading the DEKs failed");
                return r;
        }
        kh_keyring_publish(app->keyring, keys);
        return 0;
}

/* One look at the store; returns how long to wait before the next. */
static unsigned step(struct kh_app *app, unsigned wait_ms, int *last_r) {
        char detail[192], what[320];
        bool dropped = false;
        int r;

        pthread_rwlock_wrlock(&app->reload_lock);
        if (!app->keystore || !(kh_keystore_caps(app->keystore) & KH_KS_REMOVABLE)) {
                pthread_rwlock_unlock(&app->reload_lock); /* sealed, or a store that stays */
                return KH_KS_PROBE_MS;
        }
        if (!atomic_load(&app->ks_unavailable)) {
                r = kh_keystore_probe(app->keystore, detail, sizeof(detail));
                if (r == -KH_E_KEYSTORE_UNAVAILABLE) {
                        dropped = lost_locked(app, detail);
                        *last_r = r;
                        wait_ms = KH_KS_RETRY_MIN_MS;
                } else {
                        wait_ms = KH_KS_PROBE_MS;
                }
        } else {
                r = reconnect_locked(app, detail, sizeof(detail));
                if (r == 0) {
                        atomic_store(&app->ks_unavailable, false);
                        emit(app, "keystore available again: reconnected and logged in", 0);
                        kh_reencrypt_wake(app->reencrypt); /* a job stopped by the loss */
                        wait_ms = KH_KS_PROBE_MS;
                } else {
                        /* not back yet is what the loss said already; anything else (the
                         * token is back but refuses the PIN) once per change */
                        if (r != *last_r) {
                                (void) snprintf(what, sizeof(what),
                                                "keystore still unavailable: reconnecting "
                                                "failed: %s",
                                                detail[0] ? detail : "no detail");
                                emit(app, what, r);
                        }
                        wait_ms = wait_ms * 2 > KH_KS_RETRY_MAX_MS ? KH_KS_RETRY_MAX_MS
                                                                   : wait_ms * 2;
                }
                *last_r = r;
        }
        pthread_rwlock_unlock(&app->reload_lock);
        /* every worker past the snapshot without DEKs: the one with them is wiped */
        if (dropped)
                kh_keyring_synchronize(app->keyring);
        return wait_ms;
}

static void *monitor(void *userdata) {
        struct kh_app *app = userdata;
        unsigned wait_ms = KH_KS_PROBE_MS;
        int last_r = 0;

        for (;;) {
                sleep_ms(app, wait_ms);
                if (atomic_load(&app->stopping))
                        break;
                wait_ms = step(app, wait_ms, &last_r);
        }
        return NULL;
}

int kh_ks_monitor_start(struct kh_app *app) {
        int r = -pthread_create(&app->monitor_thread, NULL, monitor, app);

        if (r == 0)
                app->monitor_running = true;
        return r;
}

void kh_ks_monitor_stop(struct kh_app *app) {
        if (!app->monitor_running)
                return;
        (void) pthread_join(app->monitor_thread, NULL);
        app->monitor_running = false;
}
