/* How a replica takes in the key state changes other replicas make (docs/storage.md, "Several
 * replicas"): a thread with a database connection of its own waits for PostgreSQL's notification of
 * a key epoch change (store.h: kh_store_key_epoch_wait()) and, as the fallback when a notification
 * is lost (a dropped connection, a proxy that does not pass them), reads the key epoch every
 * KH_KEYWATCH_POLL_MS. On a change it follows the sealed flag (kh_app_follow_seal()), reloads
 * the key snapshot (kh_app_reload_keys()) and wakes the re-encryption job. A change is thus
 * in force here within KH_KEYWATCH_POLL_MS plus a reload; DESIGN.md promises 2 s.
 * On SQLite (one process per database) there is no thread and no cost. */
#pragma once

#include <stdint.h>

#include "common/cleanup.h"

struct kh_app;
struct kh_keywatch;

#define KH_KEYWATCH_POLL_MS 1000

/**
 * kh_keywatch_start() - starts watching, unless the database has no other process to watch
 * (SQLite: *ret is then NULL). @seen: the key epoch the app's snapshot was loaded at (a later
 * one is taken in at once). Returns 0, or an error of opening the connection or
 * pthread_create.
 */
KH_MUST_CHECK int kh_keywatch_start(struct kh_app *app, uint64_t seen, struct kh_keywatch **ret);

/* Stops the thread (within a quarter of KH_KEYWATCH_POLL_MS) and frees it. NULL-safe. */
void kh_keywatch_stop(struct kh_keywatch *w);
