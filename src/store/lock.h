/* Who uses a database: every keyholdd serving it holds a shared lock, an offline tool that
 * must have it to itself (keyhold keystore migrate) an exclusive one, so that neither starts
 * while the other runs. For SQLite the lock is flock(2) on a file beside the database,
 * "PATH-lock" (created mode 0600, never removed): never on the database file itself, whose
 * POSIX locks SQLite drops when any descriptor of the file is closed. The lock goes with the
 * process, so a kill -9 leaves nothing to clean up. PostgreSQL has no file to lock: there
 * every connection holds an advisory lock shared, and the tool takes it exclusively on its
 * own connection (kh_store_exclusive(), store.h); a session's locks also go with it. */
#pragma once

#include <stdbool.h>

#include "common/cleanup.h"
#include "config/config.h"

/* Bytes a lock file's path adds to the database's. */
#define KH_STORE_LOCK_SUFFIX "-lock"

/**
 * kh_store_lock() - takes the lock of the database cfg names without waiting.
 * @exclusive: false for a server (several share it), true for a tool that must be alone.
 * @ret_fd:    on success the descriptor that holds it (close it to release), or -1 for a
 *             backend without a lock file (PostgreSQL: replicas coordinate in the database).
 * Returns 0, -EWOULDBLOCK (someone holds a lock that conflicts), -EINVAL (no sqlite path),
 * -ENAMETOOLONG or the -errno of opening the lock file.
 */
KH_MUST_CHECK int kh_store_lock(const struct kh_config_storage *cfg, bool exclusive, int *ret_fd);
