/* The PostgreSQL backend's snapshot and load (pg-snapshot.c), for pg-store.c's table. */
#pragma once

#include "store/store-backend.h"

/* kh_store_snapshot() and kh_store_load() (store.h) on PostgreSQL. */
KH_MUST_CHECK int kh_pg_snapshot(struct kh_store *store, const char *path);
KH_MUST_CHECK int kh_pg_load(struct kh_store *store, const char *path, const char *pending,
                             struct kh_store_load_info *ret);
KH_MUST_CHECK int kh_pg_load_done(struct kh_store *store);
