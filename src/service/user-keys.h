/* The Key Connector use cases: a member's 32-byte key, sealed under the tenant's active DEK
 * with associated data binding tenant, record kind, owner and key version. The tenant is
 * the one the request was authenticated for (who->tenant names it too); the key state comes
 * from the current key snapshot, loaded once per call. */
#pragma once

#include "common/cleanup.h"
#include "common/secret.h"
#include "service/service.h"
#include "store/store.h"
#include "token/principal.h"

/**
 * kh_user_keys_get() - the member's stored key, decrypted.
 * @ret_key: on success a new secret; the caller frees it.
 * @ret_version: if not NULL, the tenant key version the record is sealed under (also when
 * that version is revoked or the record does not open), else 0.
 * Returns 0, -KH_E_KEY_NOT_FOUND, -KH_E_INTEGRITY (the record does not open under its
 * binding), -KH_E_KEY_REVOKED, -EIO or -ENOMEM. Never writes to the store.
 */
KH_MUST_CHECK int kh_user_keys_get(struct kh_service *svc, const struct kh_tenant *t,
                                   const struct kh_principal *who, struct kh_secret **ret_key,
                                   uint32_t *ret_version);

/* kh_user_keys_get() without waiting for the database where the store reads
 * asynchronously (store.h): embedded in the caller's struct, which stays alive until done
 * ran. done gets what kh_user_keys_get() would return, the key (borrowed for the call, NULL
 * on failure) and the version; it may run before kh_user_keys_get_async() returns (a store
 * that reads synchronously), else later on the service's loop. */
struct kh_user_keys_read;
typedef void (*kh_user_keys_read_fn)(struct kh_user_keys_read *ur, int r,
                                     const struct kh_secret *key, uint32_t version);

struct kh_user_keys_read {
        kh_user_keys_read_fn done;
        /* the service's: */
        struct kh_store_read rd;
        struct kh_service *svc;
        const struct kh_tenant *tenant;
};

void kh_user_keys_get_async(struct kh_service *svc, const struct kh_tenant *t,
                            const struct kh_principal *who, struct kh_user_keys_read *ur);

/* Stores the member's key unless one exists (atomic). Returns 0, -KH_E_KEY_EXISTS,
 * -KH_E_NOT_READY (no active version), -EIO. Durable when it returns, or, applied in a group
 * commit (service.h), once the batch commits. @ret_version (if not NULL): the version it was
 * sealed under, else 0. */
KH_MUST_CHECK int kh_user_keys_post(struct kh_service *svc, const struct kh_tenant *t,
                                    const struct kh_principal *who, const struct kh_secret *key,
                                    uint32_t *ret_version);

/* Stores or replaces the member's key. Returns 0, -KH_E_NOT_READY or -EIO. Durable as for
 * post. */
KH_MUST_CHECK int kh_user_keys_put(struct kh_service *svc, const struct kh_tenant *t,
                                   const struct kh_principal *who, const struct kh_secret *key,
                                   uint32_t *ret_version);
