/* The tenant key lifecycle (DESIGN.md "Tenant key states"): rekey, retire, destroy, revoke,
 * reinstate, the kill switch, and seal/unseal of the whole server.
 *
 * Every function here blocks on the key store and the database: call it from the job pool
 * (kh_app_jobs()), never from a loop. They run one at a time. A state change is written to
 * the database first, then published as a new key snapshot, and the call returns only once
 * every worker has passed a quiescent point (kh_keyring_synchronize()): a request that
 * starts after the call returned sees the new state. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/secret.h"
#include "service/app.h"
#include "store/store.h"

/* A version and the state it is in now. */
struct kh_key_change {
        uint32_t version;
        enum kh_key_state state;
};

/**
 * kh_key_rekey() - a new active version of tenant t's key: a new RSA key of @rsa_bits
 * (2048..8192, a multiple of 1024: what [keystore] rsa_bits allows; the API names 3072 and
 * 4096) in the key store, a new DEK wrapped by it and signed, the old active version
 * archived; then wakes the re-encryption job.
 * Returns 0, -KH_E_JOB_RUNNING (records of an earlier rekey are not all moved yet),
 * -KH_E_TOO_MANY_VERSIONS, -KH_E_SEALED, -KH_E_INVALID_ALGORITHM, or an error of the key
 * store or database (the old version stays active then).
 */
KH_MUST_CHECK int kh_key_rekey(struct kh_app *app, const struct kh_tenant *t, unsigned rsa_bits,
                               struct kh_key_change *ret);

/**
 * kh_key_retire() - archived (or revoked) → retired, once no record is sealed under the
 * version.
 * @ret_records: the count that refused it (-KH_E_RECORDS_REMAIN).
 * Returns 0 (retired already: 0 too), -KH_E_VERSION_NOT_FOUND, -KH_E_RECORDS_REMAIN,
 * -KH_E_LAST_ACTIVE (the active version), -KH_E_INVALID_STATE (destroyed),
 * -KH_E_SEALED or a database error.
 */
KH_MUST_CHECK int kh_key_retire(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                                struct kh_key_change *ret, uint64_t *ret_records);

/* retired → destroyed: the key store deletes the tenant key (a file store overwrites it), the
 * database the wrapped DEK. Irreversible. Returns 0 (destroyed already: 0 too),
 * -KH_E_VERSION_NOT_FOUND, -KH_E_NOT_RETIRED, -KH_E_SEALED or an error. */
KH_MUST_CHECK int kh_key_destroy(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                                 struct kh_key_change *ret);

/* active/archived → revoked (an archived version only: -KH_E_LAST_ACTIVE for the active
 * one). Returns 0 (revoked already: 0 too), -KH_E_VERSION_NOT_FOUND, -KH_E_LAST_ACTIVE,
 * -KH_E_INVALID_STATE (retired, destroyed), -KH_E_SEALED or an error. */
KH_MUST_CHECK int kh_key_revoke(struct kh_app *app, const struct kh_tenant *t, uint32_t version,
                                struct kh_key_change *ret);

/* revoked → the state it had. Returns 0, -KH_E_VERSION_NOT_FOUND, -KH_E_NOT_REVOKED,
 * -KH_E_SEALED or an error. */
KH_MUST_CHECK int kh_key_reinstate(struct kh_app *app, const struct kh_tenant *t,
                                   uint32_t version, struct kh_key_change *ret);

/* The kill switch: every active and archived version of t revoked at once, in one
 * transaction (@all false), or every revoked version back to its former state (@revoke
 * false). @ret gets every version that changed (at most KH_KEY_VERSIONS_MAX), *ret_n how
 * many. Returns 0, -KH_E_SEALED or an error. */
KH_MUST_CHECK int kh_key_switch_all(struct kh_app *app, const struct kh_tenant *t, bool revoke,
                                    struct kh_key_change *ret, size_t *ret_n);

/* What unseals a server: the file key store's master key (32 bytes) or its passphrase; for
 * a pkcs11 store either is the token's user PIN (the passphrase's text, or the 32 bytes
 * minus one trailing newline). */
struct kh_unseal_secret {
        const struct kh_secret *master_key;  /* or NULL */
        const struct kh_secret *passphrase;  /* NUL-terminated text, or NULL */
};

/**
 * kh_app_seal() - drops the key store's secret and every unwrapped DEK from memory (wiped
 * once no request holds them: the call returns after that), and records the seal in the
 * database first, so that the server starts sealed until an operator unseals it. Every key
 * route then answers 503 sealed. Returns 0 (sealed already: 0 too) or a database error
 * (nothing changed then).
 */
KH_MUST_CHECK int kh_app_seal(struct kh_app *app);

/**
 * kh_app_unseal() - opens the key store with @secret (only when it opens it), loads every
 * DEK and serves again; creates the first key versions a server that started sealed on an
 * empty database has not made yet; clears the recorded seal.
 * Returns 0 (not sealed: 0 too), -KH_E_WRONG_SECRET (a pkcs11 store: the token refused the
 * PIN), -KH_E_PKCS11_PIN_LOCKED, or an error of the key store or database (still sealed
 * then).
 */
KH_MUST_CHECK int kh_app_unseal(struct kh_app *app, const struct kh_unseal_secret *secret);

/* The re-encryption job's progress for tenant t (reencrypt.h). */
struct kh_job_progress;
void kh_key_job_progress(struct kh_app *app, const struct kh_tenant *t,
                         struct kh_job_progress *ret);
