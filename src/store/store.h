/* Storage: tenant key versions with their wrapped DEKs, and sealed records. The store only
 * ever sees sealed bytes. One struct kh_store is one database connection and is loop-local:
 * each worker opens its own. Reads never write. SQL is per backend; the interface is narrow
 * so that PostgreSQL can implement it too. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "config/config.h"

struct kh_store;

enum kh_key_state {
        KH_KEY_ACTIVE = 1,
        KH_KEY_ARCHIVED = 2,
        KH_KEY_RETIRED = 3,
        KH_KEY_REVOKED = 4,
        KH_KEY_DESTROYED = 5,
};

enum kh_record_kind {
        KH_RECORD_USER_KEY = 1,  /* Key Connector key of a member; owner = user GUID */
};

struct kh_tenant_key {
        uint32_t version;
        enum kh_key_state state;
        const uint8_t *wrapped_dek;  /* valid during the callback only */
        size_t wrapped_dek_len;
};

typedef int (*kh_tenant_key_fn)(const struct kh_tenant_key *key, void *userdata);

/* Opens (creating if needed) the database cfg names and brings its schema up to date.
 * Safe when several processes open the same empty database at once. Errors: -EINVAL
 * (unknown driver), -EIO (database error), -ENOMEM. */
KH_MUST_CHECK int kh_store_open(const struct kh_config_storage *cfg, struct kh_store **ret);
struct kh_store *kh_store_close(struct kh_store *s); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_store_close, struct kh_store *)

/* Schema version after migrations (for tests and /health). */
int kh_store_schema_version(struct kh_store *s);

/* Inserts tenant key version with its wrapped DEK and state unless that version exists.
 * Returns 1 if this call inserted it, 0 if it existed already (then read it back: the row
 * that exists wins), or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_insert_if_absent(struct kh_store *s, const char *tenant,
                                                       uint32_t version, enum kh_key_state state,
                                                       const uint8_t *wrapped_dek, size_t len);

/* Calls fn for each key version of tenant, ascending. Returns 0, fn's non-zero value, -EIO. */
KH_MUST_CHECK int kh_store_tenant_keys(struct kh_store *s, const char *tenant,
                                       kh_tenant_key_fn fn, void *userdata);

/* Sets the state of a version. Returns 0, -ENOENT or -EIO. */
KH_MUST_CHECK int kh_store_tenant_key_set_state(struct kh_store *s, const char *tenant,
                                                uint32_t version, enum kh_key_state state);

/* The sealed record (tenant, kind, owner): its key version and blob, appended to blob.
 * Returns 0, -ENOENT or -EIO. Never writes. */
KH_MUST_CHECK int kh_store_record_get(struct kh_store *s, const char *tenant,
                                      enum kh_record_kind kind, const char *owner,
                                      uint32_t *ret_version, struct kh_buf *blob);

/* Creates the record unless it exists, atomically. Returns 0, -EEXIST or -EIO. Durable
 * (synchronous commit) when it returns 0. */
KH_MUST_CHECK int kh_store_record_insert(struct kh_store *s, const char *tenant,
                                         enum kh_record_kind kind, const char *owner,
                                         uint32_t version, const uint8_t *blob, size_t len);

/* Creates or replaces the record. Returns 0 or -EIO. Durable when it returns 0. */
KH_MUST_CHECK int kh_store_record_put(struct kh_store *s, const char *tenant,
                                      enum kh_record_kind kind, const char *owner,
                                      uint32_t version, const uint8_t *blob, size_t len);

/* Number of records of tenant (all kinds) sealed under version. */
KH_MUST_CHECK int kh_store_record_count(struct kh_store *s, const char *tenant, uint32_t version,
                                        uint64_t *ret_count);

/* A cheap round trip to the database, for /health. Returns 0 or -EIO. */
KH_MUST_CHECK int kh_store_ping(struct kh_store *s);
