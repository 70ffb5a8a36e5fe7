#include "user-keys.h"

#include <errno.h>
#include <string.h>

#include "common/errors.h"
#include "common/limits.h"
#include "service/record.h"
#include "service/service-internal.h"

static void count_use(struct kh_service *svc, const struct kh_tenant *t,
                      const struct kh_tenant_keys *tk, const struct kh_key_version *v,
                      bool encrypt) {
        kh_service_count_use(svc, t->index, kh_key_version_slot(tk, v), encrypt);
}

static void count_integrity_failure(struct kh_service *svc) {
        atomic_fetch_add_explicit(&svc->counters.integrity_failures, 1, memory_order_relaxed);
}

/* The member's record as read (version, blob) opened into their key: after the row
 * arrives, so that the key state checked is the one current when it did. */
static int open_record(struct kh_service *svc, const struct kh_tenant *t, const char *owner,
                       uint32_t version, const uint8_t *blob, size_t len,
                       struct kh_secret **ret_key) {
        const struct kh_keys *keys = kh_keyring_get(svc->keyring);
        const struct kh_tenant_keys *tk = kh_tenant_keys(keys, t);
        const struct kh_key_version *v;
        int r;

        r = kh_keys_refusal(keys);
        if (r < 0)
                return r;
        v = kh_tenant_keys_version(tk, version);
        if (!v) {
                count_integrity_failure(svc);
                return -KH_E_INTEGRITY;              /* a version this tenant never had */
        }
        if (v->state == KH_KEY_REVOKED)
                return -KH_E_KEY_REVOKED;
        if (!v->dek)
                return -KH_E_INTEGRITY;              /* retired or destroyed: cannot open */

        r = kh_record_unseal(v->dek, t->id, KH_RECORD_USER_KEY, owner, version, blob, len,
                             ret_key);
        if (r == -KH_E_INTEGRITY)
                count_integrity_failure(svc);
        if (r < 0)
                return r;
        count_use(svc, t, tk, v, false);
        return 0;
}

int kh_user_keys_get(struct kh_service *svc, const struct kh_tenant *t,
                     const struct kh_principal *who, struct kh_secret **ret_key,
                     uint32_t *ret_version) {
        uint32_t version;
        int r;

        /* Reads never write. Counting this access in the row would put a write on the
         * hottest path and make replicas contend on one row; usage goes to the worker's
         * counters instead. */
        if (ret_version)
                *ret_version = 0;
        r = kh_keys_refusal(kh_keyring_get(svc->keyring));
        if (r < 0)
                return r;
        kh_buf_reset(&svc->blob);
        r = kh_store_record_get(svc->store, t->id, KH_RECORD_USER_KEY, who->sub, &version,
                                &svc->blob);
        if (r == -ENOENT)
                return -KH_E_KEY_NOT_FOUND;
        if (r < 0)
                return r;
        if (ret_version)
                *ret_version = version;
        return open_record(svc, t, who->sub, version, svc->blob.data, svc->blob.len, ret_key);
}

static void on_row(struct kh_store_read *rd, int r, uint32_t version, const uint8_t *blob,
                   size_t len) {
        struct kh_user_keys_read *ur = kh_container_of(rd, struct kh_user_keys_read, rd);
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;

        if (r == -ENOENT)
                r = -KH_E_KEY_NOT_FOUND;
        else if (r >= 0)
                r = open_record(ur->svc, ur->tenant, rd->owner, version, blob, len, &key);
        ur->done(ur, r, key, r == -KH_E_KEY_NOT_FOUND ? 0 : version);
}

void kh_user_keys_get_async(struct kh_service *svc, const struct kh_tenant *t,
                            const struct kh_principal *who, struct kh_user_keys_read *ur) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        uint32_t version = 0;
        int r;

        ur->svc = svc;
        ur->tenant = t;
        ur->rd.done = on_row;
        r = kh_keys_refusal(kh_keyring_get(svc->keyring));
        if (r >= 0 && kh_store_reads_async(svc->store)) {
                r = kh_store_record_get_async(svc->store, t->id, KH_RECORD_USER_KEY, who->sub,
                                              &ur->rd);
                if (r >= 0)
                        return;                      /* on_row answers */
        } else if (r >= 0) {
                r = kh_user_keys_get(svc, t, who, &key, &version);
        }
        ur->done(ur, r, key, version);
}

static int user_keys_write(struct kh_service *svc, const struct kh_tenant *t,
                           const struct kh_principal *who, const struct kh_secret *key,
                           bool replace, uint32_t *ret_version) {
        const struct kh_keys *keys = kh_keyring_get(svc->keyring);
        const struct kh_tenant_keys *tk = kh_tenant_keys(keys, t);
        const struct kh_key_version *v = tk->active;
        int r;

        if (ret_version)
                *ret_version = 0;
        r = kh_keys_refusal(keys);
        if (r < 0)
                return r;
        if (!v && kh_tenant_keys_killed(tk))
                return -KH_E_KEY_REVOKED;        /* the kill switch */
        if (!v || !v->dek)
                return -KH_E_NOT_READY;
        if (ret_version)
                *ret_version = v->version;

        kh_buf_reset(&svc->blob);
        r = kh_record_seal(v->dek, t->id, KH_RECORD_USER_KEY, who->sub, v->version, key, &svc->blob);
        if (r < 0)
                return r;

        if (replace)
                r = kh_store_record_put(svc->store, t->id, KH_RECORD_USER_KEY, who->sub, v->version,
                                        svc->blob.data, svc->blob.len);
        else
                r = kh_store_record_insert(svc->store, t->id, KH_RECORD_USER_KEY, who->sub,
                                           v->version, svc->blob.data, svc->blob.len);
        if (r == -EEXIST)
                return -KH_E_KEY_EXISTS;
        if (r < 0)
                return r;
        count_use(svc, t, tk, v, true);
        return 0;
}

int kh_user_keys_post(struct kh_service *svc, const struct kh_tenant *t,
                      const struct kh_principal *who, const struct kh_secret *key,
                      uint32_t *ret_version) {
        return user_keys_write(svc, t, who, key, false, ret_version);
}

int kh_user_keys_put(struct kh_service *svc, const struct kh_tenant *t,
                     const struct kh_principal *who, const struct kh_secret *key,
                     uint32_t *ret_version) {
        return user_keys_write(svc, t, who, key, true, ret_version);
}
