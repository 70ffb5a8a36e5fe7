/* Moving a tenant's key versions to another key store (keyhold keystore migrate,
 * docs/keystore-migrate.md), offline: keyholdd is stopped.
 *
 * For each version whose state keeps a DEK (active, archived, revoked) the new store gets a
 * key of the same version and size, the DEK is unwrapped by the old store, wrapped under the
 * new key (with that key's OAEP digest) and signed by it (kh_dek_sign()), and the version's
 * row is rewritten in one transaction with the tenant's migration marker. Nothing about the
 * records changes: they stay sealed under the same DEKs. Retired and destroyed versions have
 * no DEK and need no key.
 *
 * Idempotent per version, so a run killed at any point is finished by running it again: a
 * version whose stored DEK already verifies and unwraps in the new store is recognised and
 * skipped, a key the new store made before the crash is used again (generate: -EEXIST), and
 * the row is rewritten only if it still holds the bytes that were read (compare-and-set).
 *
 * The marker (meta key kh_ksmigrate_marker_key()) is how the server learns of it: keyholdd
 * turns a finished, not yet audited marker into one audit record per version (action
 * keystore.migrate) at its next start, and shows it in GET /admin/keys ("keystore"), which
 * the hsm-vulnerability playbook reads. Library code: blocks on both key stores and the
 * database; never logs. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"
#include "keystore/keystore.h"
#include "service/keyring.h"
#include "store/store.h"

/* The audit action of a migrated version. */
#define KH_KSMIGRATE_ACTION "keystore.migrate"

/* Bytes of a key store driver name in a marker ("file", "pkcs11"). */
#define KH_KSMIGRATE_DRIVER_MAX 15

/* A tenant's last key store migration, as the marker keeps it. */
struct kh_ksmigrate_marker {
        char tenant[KH_TENANT_ID_MAX + 1];
        char from[KH_KSMIGRATE_DRIVER_MAX + 1]; /* the driver of the store it left */
        char to[KH_KSMIGRATE_DRIVER_MAX + 1];   /* the driver of the store it moved to */
        int64_t started, finished;              /* unix seconds; finished 0: not yet */
        uint32_t uid;                           /* who ran it */
        bool audited;                           /* keyholdd has recorded it in the chain */
        size_t n;
        uint32_t versions[KH_KEY_VERSIONS_MAX]; /* moved by it, ascending */
};

/* The meta key of tenant's marker ("keyhold.ksmigrate." and 16 hex digits of a hash of the
 * tenant id, which may be longer than a meta key allows). */
#define KH_KSMIGRATE_META_KEY_LEN (sizeof("keyhold.ksmigrate.") - 1 + 16)
void kh_ksmigrate_marker_key(const char *tenant, char key[static KH_KSMIGRATE_META_KEY_LEN + 1]);

/**
 * kh_ksmigrate_marker_parse() - a marker from its stored form (JSON, at most
 * KH_STORE_META_VALUE_MAX bytes): every member present, of its type and range, versions
 * ascending without repeats. Returns 0 or -EINVAL; @ret is written only on success.
 */
KH_MUST_CHECK int kh_ksmigrate_marker_parse(const uint8_t *p, size_t len,
                                            struct kh_ksmigrate_marker *ret);

/* m as it is stored (compact JSON, what kh_ksmigrate_marker_parse() reads back): a new
 * string the caller frees. Returns 0 or -ENOMEM. */
KH_MUST_CHECK int kh_ksmigrate_marker_format(const struct kh_ksmigrate_marker *m, char **ret);

/* Tenant's marker from the database. Returns 0, -ENOENT (never migrated), -KH_E_INTEGRITY
 * (a stored marker that does not parse) or an error of kh_store_meta_get(). */
KH_MUST_CHECK int kh_ksmigrate_marker_get(struct kh_store *s, const char *tenant,
                                          struct kh_ksmigrate_marker *ret);

/* Stores m as its tenant's marker. Returns 0, -ENOMEM or an error of kh_store_meta_put(). */
KH_MUST_CHECK int kh_ksmigrate_marker_put(struct kh_store *s, const struct kh_ksmigrate_marker *m);

/* What happened to one version. */
enum kh_ksmigrate_outcome {
        KH_KSMIGRATE_MOVED,   /* wrapped under the new store now */
        KH_KSMIGRATE_PRESENT, /* it was already (an earlier run): skipped */
        KH_KSMIGRATE_NO_KEY,  /* retired or destroyed: no DEK, nothing to move */
};

/* Called after each version, for progress. */
typedef void (*kh_ksmigrate_fn)(const char *tenant, uint32_t version, enum kh_key_state state,
                                enum kh_ksmigrate_outcome outcome, void *userdata);

struct kh_ksmigrate_result {
        size_t versions;           /* versions of the tenant that keep a DEK */
        size_t moved, skipped;     /* of them: moved by this run, found moved already */
        size_t no_key;             /* retired and destroyed versions */
        uint64_t recovery_enrolments; /* members enrolled under the old store's recovery key:
                                       * they must enrol again (0 if it has none) */
        uint32_t failed_version;   /* on failure, the version that failed; 0: none */
        bool failed_in_new;        /* ... and the failing call was on the new store */
};

/**
 * kh_ksmigrate_tenant() - moves every key version of @tenant that keeps a DEK from key store
 * @from to key store @to, through @store, as the header says.
 * @uid:  who runs it, for the marker and so the audit record.
 * @fn:   may be NULL.
 * @ret:  filled in as far as it got, also on failure.
 * Returns 0; -KH_E_INTEGRITY (a DEK whose signature verifies in neither store, or that does
 * not unwrap); -ESTALE (a row changed under the run: someone else writes the database);
 * -E2BIG (more than KH_KEY_VERSIONS_MAX versions); -EALREADY (an earlier migration of the
 * tenant finished but keyholdd has not recorded it in the audit chain yet: start it once on
 * the configuration that migration moved to); or an error of a key store (-ENOENT: the
 * old store lacks a version's key) or of the database. What was moved before a failure
 * stays moved; running it again goes on.
 */
KH_MUST_CHECK int kh_ksmigrate_tenant(struct kh_store *store, struct kh_keystore *from,
                                      struct kh_keystore *to, const char *tenant, uint32_t uid,
                                      kh_ksmigrate_fn fn, void *userdata,
                                      struct kh_ksmigrate_result *ret);
