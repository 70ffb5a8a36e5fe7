/* The SQLite backend's snapshot (backups), shared by sqlite-store.c, sqlite-snapshot.c and
 * the PostgreSQL backend's load (pg-snapshot.c), which reads the same file. */
#pragma once

#include <sqlite3.h>

#include "common/cleanup.h"

/* Copies the database open on src into the existing, empty file path. Errors as
 * kh_store_snapshot(); on failure *ret_error (at most n bytes) says why. */
KH_MUST_CHECK int kh_sqlite_snapshot(sqlite3 *src, const char *path, char *error, size_t n);

/* Opens the snapshot file path read-only and immutable, as untrusted input (defensive, no
 * trusted schema). Returns SQLITE_OK, or SQLite's code with *ret to close (may be NULL). */
KH_MUST_CHECK int kh_sqlite_snapshot_open(const char *path, sqlite3 **ret);
