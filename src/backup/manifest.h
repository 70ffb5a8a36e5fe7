/* A backup's manifest: the first entry of its payload, JSON (docs/backup.md):
 *   {"format": 1, "keyhold_version", "created" (RFC 3339), "schema_version",
 *    "keystore_driver", "records", "tenants": [{"id", "records",
 *    "key_versions": [{"version", "state", "records"}]}], "files": [{"name", "size"}]}
 * "tenants" and "records" are counted from the database snapshot itself, so that a verify
 * can count again and compare. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/cleanup.h"

#define KH_BACKUP_MANIFEST_MAX (8u * 1024 * 1024) /* bytes of a manifest */

/**
 * kh_backup_manifest_count() - the "tenants" array of the SQLite snapshot at db_path
 * (kh_store_snapshot_inspect()), with its record total, schema version and tenant count.
 * On failure error (n bytes) says why. Returns 0, -ENOMEM or an error of the inspection.
 */
KH_MUST_CHECK int kh_backup_manifest_count(const char *db_path, json_t **ret_tenants,
                                           uint64_t *ret_records, int *ret_schema,
                                           char *error, size_t n);

/**
 * kh_backup_manifest_check() - whether m is a manifest this build reads: the members above
 * with their types, tenants ids valid, counts that add up, file names valid and unique.
 * Returns 0 or -EBADMSG with error (n bytes) saying which member is wrong.
 */
KH_MUST_CHECK int kh_backup_manifest_check(const json_t *m, char *error, size_t n);
