/* The SQLite backend's snapshot (backups), shared by sqlite-store.c and sqlite-snapshot.c. */
#pragma once

#include <sqlite3.h>

#include "common/cleanup.h"

/* Copies the database open on src into the existing, empty file path. Errors as
 * kh_store_snapshot(); on failure *ret_error (at most n bytes) says why. */
KH_MUST_CHECK int kh_sqlite_snapshot(sqlite3 *src, const char *path, char *error, size_t n);
