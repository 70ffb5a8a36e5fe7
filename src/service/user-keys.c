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

int kh_user_keys_get(struct kh_service *svc, const struct kh_tenant *t,
                     const struct kh_principal *who, struct kh_secret **ret_key,
                     uint32_t *ret_version) {
        const struct kh_keys *keys = kh_keyring_get(svc->keyring);
        const struct kh_tenant_keys *tk = kh_tenant_keys(keys, t);
        const struct kh_key_version *v;
        uint32_t version;
        int r;

        /* Reads never write. Counting this access in the row would put a write on the
         * hottest path and make replicas contend on one row; usage goes to the worker's
         * counters instead. */
        if (ret_version)
                *ret_version = 0;
        r = kh_keys_refusal(keys);
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

        v = kh_tenant_keys_version(tk, version);
        if (!v) {
                count_integrity_failure(svc);
                return -KH_E_INTEGRITY;              /* a version this tenant never had */
        }
        if (v->state == KH_KEY_REVOKED)
                return -KH_E_KEY_REVOKED;
        if (!v->dek)
                return -KH_E_INTEGRITY;              /* retired or destroyed: cannot open */

        r = kh_record_unseal(v->dek, t->id, KH_RECORD_USER_KEY, who->sub, version, svc->blob.data,
                             svc->blob.len, ret_key);
        if (r == -KH_E_INTEGRITY)
                count_integrity_failure(svc);
        if (r < 0)
                return r;
        count_use(svc, t, tk, v, false);
        return 0;
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
