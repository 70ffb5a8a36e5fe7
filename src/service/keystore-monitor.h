/* The key store monitor: a small thread of the app that watches a key store which can go away
 * while serving (an HSM: KH_KS_REMOVABLE), and brings the server back when it returns.
 *
 * While the store answers, it is probed every KH_KS_PROBE_MS (one cheap round trip, under the
 * app's reload_lock held exclusively, as a reconnect is). Once a probe or any operation finds
 * it gone, the server is "keystore unavailable": /health answers 503 (the admin socket says
 * why), everything that needs the token answers 503 keystore_unavailable (recovery
 * decryption, rekey and the other key changes, unseal, backup; audit checkpoints wait and no
 * record is lost), and [keystore] cache_deks_while_unavailable decides the rest: true keeps
 * the unwrapped DEKs in memory, so reads and writes go on; false drops them, and every key
 * route answers 503 keystore_unavailable. The monitor then reconnects with a backoff from
 * KH_KS_RETRY_MIN_MS doubling up to KH_KS_RETRY_MAX_MS; once back (DEKs unwrapped again if
 * they were dropped) the server serves as before. Loss and return are logged once each. */
#pragma once

#include "common/cleanup.h"

struct kh_app;

#define KH_KS_PROBE_MS 1000     /* a probe of a store that answers, this often */
#define KH_KS_RETRY_MIN_MS 250  /* the first reconnect after a loss, after this long */
#define KH_KS_RETRY_MAX_MS 2000 /* reconnects at least this often while the store is gone */

/* Starts the monitor of app (kh_app_open() calls it). Returns 0 or -errno of
 * pthread_create. */
KH_MUST_CHECK int kh_ks_monitor_start(struct kh_app *app);

/* Stops it (app->stopping must be set); waits for the thread. Safe if never started. */
void kh_ks_monitor_stop(struct kh_app *app);
