/* The records of the trusted-device flows (devices, recovery enrolments, login and
 * admin-approval requests): a JSON document per record, sealed under the tenant's active DEK
 * with the usual binding (tenant, kind, owner, version: service/record.h), so that a row
 * copied to another member, device or tenant does not open, and the re-encryption job moves
 * them with every other record. Reads and writes go through the worker's own connection, on
 * its loop; a write is durable when it returns (these are rare next to key reads, so they
 * do not join the group commit).
 *
 * Every function returns -KH_E_SEALED while the server is sealed, -KH_E_KEY_REVOKED for a
 * record under a revoked version (or a write while the kill switch is on), and -EIO,
 * -ENOMEM or -KH_E_INTEGRITY (a record that does not open under its binding) besides what it
 * names. */
#pragma once

#include <stdint.h>

#include <jansson.h>

#include "common/buf.h"
#include "service/service.h"
#include "store/store.h"

/* A record as read: its document, and what a compare-and-set needs. */
struct kh_mdata {
        json_t *doc;               /* a JSON object; owned */
        uint32_t version;          /* the key version it was sealed under */
        struct kh_buf blob;        /* the sealed bytes read */
};

void kh_mdata_clear(struct kh_mdata *m);  /* frees what m holds; m may be zeroed */

/* The record (kind, owner) of t into *ret (clear it after). -ENOENT if there is none. */
KH_MUST_CHECK int kh_mdata_get(struct kh_service *svc, const struct kh_tenant *t,
                               enum kh_record_kind kind, const char *owner, struct kh_mdata *ret);

/* Creates or replaces the record with doc. */
KH_MUST_CHECK int kh_mdata_put(struct kh_service *svc, const struct kh_tenant *t,
                               enum kh_record_kind kind, const char *owner, const json_t *doc);

/* Creates the record unless one exists: -EEXIST. */
KH_MUST_CHECK int kh_mdata_insert(struct kh_service *svc, const struct kh_tenant *t,
                                  enum kh_record_kind kind, const char *owner, const json_t *doc);

/* Replaces the record with doc only if it still holds what @old read (a compare-and-set:
 * of two workers answering one request at once, one wins). -ESTALE if it changed or went. */
KH_MUST_CHECK int kh_mdata_replace(struct kh_service *svc, const struct kh_tenant *t,
                                   enum kh_record_kind kind, const char *owner,
                                   const struct kh_mdata *old, const json_t *doc);

/* Calls fn for each record of kind whose owner starts with prefix ("" for all), in owner
 * order, until fn returns non-zero (that value is returned). A record that does not open
 * (under a revoked version, or damaged) is skipped and counted in *ret_skipped (may be
 * NULL): one bad row must not hide a member's other devices. */
typedef int (*kh_mdata_fn)(const char *owner, const struct kh_mdata *m, void *userdata);
KH_MUST_CHECK int kh_mdata_list(struct kh_service *svc, const struct kh_tenant *t,
                                enum kh_record_kind kind, const char *prefix, kh_mdata_fn fn,
                                void *userdata, size_t *ret_skipped);

/* Deletes the record: 1, or 0 if there was none. */
KH_MUST_CHECK int kh_mdata_delete(struct kh_service *svc, const struct kh_tenant *t,
                                  enum kh_record_kind kind, const char *owner);

/* Deletes every record of kind whose owner starts with prefix (not empty): how many. */
KH_MUST_CHECK int kh_mdata_delete_prefix(struct kh_service *svc, const struct kh_tenant *t,
                                         enum kh_record_kind kind, const char *prefix);

/* Seconds since the epoch for the lifetimes of requests: the wall clock, moved by the number
 * of seconds written in the file KEYHOLD_TEST_CLOCK_OFFSET_FILE names, when the environment
 * of keyholdd sets it (tests: expiry without sleeping). Read at each call. */
int64_t kh_mdata_now(void);

/* The same clock in microseconds, from one reading: kh_mdata_now_us() / 1000000 is the
 * second it falls in (a second read apart from its microseconds can straddle a boundary). */
int64_t kh_mdata_now_us(void);

/* "2026-12-07T10:11:12.000Z" (Bitwarden's dates, UTC) of t into out[32]. */
void kh_mdata_date(int64_t t, char out[static 32]);
