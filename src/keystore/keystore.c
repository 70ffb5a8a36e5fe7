#include "keystore/keystore.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/errors.h"
#include "common/parse.h"
#include "keystore/keystore-backend.h"

/* Every key store keyhold can open, found by the name in [keystore] driver. */
static const struct kh_keystore_ops *const backends[] = {
        &kh_keystore_file_ops,
        &kh_keystore_pkcs11_ops,
};


/* Every operation of a lost store answers at once: a device that is gone may take its time
 * to say so again, and whoever asked is better served by a quick 503. */
#define LOST_CHECK(ks)                                                                  \
        do {                                                                            \
                if (atomic_load_explicit(&(ks)->lost, memory_order_relaxed))            \
                        return -KH_E_KEYSTORE_UNAVAILABLE;                              \
        } while (0)

/* An operation's answer; one that says the device is gone marks the store lost. */
static int seen(struct kh_keystore *ks, int r) {
        if (r == -KH_E_KEYSTORE_UNAVAILABLE)
                atomic_store_explicit(&ks->lost, true, memory_order_relaxed);
        return r;
}

static bool tenant_is_valid(const char *tenant, size_t max) {
        size_t len = strnlen(tenant, max + 1);

        return len <= max && kh_tenant_id_is_valid(tenant, len);
}

/* The server's audit chain has a key but no tenant. */
static bool owner_is_valid(const char *tenant, enum kh_key_purpose purpose) {
        switch (purpose) {
        case KH_KEY_DATA:
        case KH_KEY_RECOVERY:
                return tenant_is_valid(tenant, KH_TENANT_ID_MAX);
        case KH_KEY_AUDIT:
                return !tenant[0] || tenant_is_valid(tenant, KH_TENANT_ID_MAX);
        }
        return false;
}

static bool ref_is_valid(const struct kh_key_ref *ref) {
        return owner_is_valid(ref->tenant, ref->purpose) && ref->version >= 1;
}

int kh_keystore_open_detail(const struct kh_config_keystore *cfg, struct kh_keystore **ret,
                            char *detail, size_t detail_len) {
        assert(cfg && ret);

        if (detail && detail_len > 0)
                detail[0] = '\0';
        if (!cfg->driver)
                return -EINVAL;
        for (size_t i = 0; i < KH_ELEMENTSOF(backends); i++)
                if (strcmp(backends[i]->name, cfg->driver) == 0)
                        return backends[i]->open(cfg, ret, detail, detail_len);
        return -EINVAL;
}

int kh_keystore_open(const struct kh_config_keystore *cfg, struct kh_keystore **ret) {
        return kh_keystore_open_detail(cfg, ret, NULL, 0);
}

struct kh_keystore *kh_keystore_close(struct kh_keystore *ks) {
        if (ks)
                ks->ops->close(ks);
        return NULL;
}

const char *kh_keystore_name(const struct kh_keystore *ks) {
        return ks->ops->name;
}

unsigned kh_keystore_caps(const struct kh_keystore *ks) {
        return ks->ops->caps;
}

int kh_keystore_generate(struct kh_keystore *ks, const struct kh_key_spec *spec,
                         struct kh_key_ref *ret_ref) {
        int r;

        assert(ks && spec && ret_ref);

        if (!spec->tenant || !owner_is_valid(spec->tenant, spec->purpose) || spec->version < 1)
                return -EINVAL;
        if (spec->alg == KH_KEY_ALG_EC_P256) {
                if (spec->purpose != KH_KEY_AUDIT)
                        return -EINVAL;  /* a tenant key wraps DEKs: RSA only */
        } else if (spec->alg != KH_KEY_ALG_RSA || spec->rsa_bits < KH_RSA_BITS_MIN ||
                   spec->rsa_bits > KH_RSA_BITS_MAX || spec->rsa_bits % 1024 != 0) {
                return -EINVAL;
        }

        LOST_CHECK(ks);
        r = seen(ks, ks->ops->generate(ks, spec));
        if (r < 0)
                return r;
        *ret_ref = (struct kh_key_ref) { .version = spec->version, .purpose = spec->purpose };
        memcpy(ret_ref->tenant, spec->tenant, strlen(spec->tenant));  /* checked above */
        return 0;
}

int kh_keystore_wrap(struct kh_keystore *ks, const struct kh_key_ref *ref,
                     const struct kh_secret *dek, struct kh_buf *out) {
        assert(ks && ref && dek && out);

        if (!ref_is_valid(ref))
                return -EINVAL;

        LOST_CHECK(ks);
        return seen(ks, ks->ops->wrap(ks, ref, dek, out));
}

int kh_keystore_oaep(struct kh_keystore *ks, const struct kh_key_ref *ref, enum kh_oaep_md *ret) {
        assert(ks && ref && ret);

        if (!ref_is_valid(ref) || ref->purpose != KH_KEY_DATA)
                return -EINVAL;
        LOST_CHECK(ks);
        if (!ks->ops->oaep) {
                /* the key must exist all the same */
                KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
                int r = ks->ops->public_key(ks, ref, &pub);

                if (r < 0)
                        return r;
                *ret = KH_OAEP_SHA256;
                return 0;
        }
        return seen(ks, ks->ops->oaep(ks, ref, ret));
}

int kh_keystore_unwrap(struct kh_keystore *ks, const struct kh_key_ref *ref,
                       const uint8_t *wrapped, size_t len, struct kh_secret **ret_dek) {
        assert(ks && ref && ret_dek);

        if (!ref_is_valid(ref))
                return -EINVAL;
        if (!wrapped || len == 0 || len > KH_WRAPPED_DEK_MAX)
                return -KH_E_INTEGRITY; /* stored data, not client input */

        LOST_CHECK(ks);
        return seen(ks, ks->ops->unwrap(ks, ref, wrapped, len, ret_dek));
}

int kh_keystore_decrypt(struct kh_keystore *ks, const struct kh_key_ref *ref, enum kh_oaep_md md,
                        const uint8_t *in, size_t len, struct kh_secret **ret) {
        assert(ks && ref && ret);

        if (!ref_is_valid(ref) || ref->purpose != KH_KEY_RECOVERY ||
            (md != KH_OAEP_SHA1 && md != KH_OAEP_SHA256))
                return -EINVAL;
        if (!in || len == 0 || len > KH_WRAPPED_DEK_MAX)
                return -KH_E_INTEGRITY;
        if (!ks->ops->decrypt)
                return -EOPNOTSUPP;
        LOST_CHECK(ks);
        return seen(ks, ks->ops->decrypt(ks, ref, md, in, len, ret));
}

int kh_keystore_sign(struct kh_keystore *ks, const struct kh_key_ref *ref, const uint8_t *digest,
                     size_t len, struct kh_buf *sig) {
        assert(ks && ref && digest && sig);

        if (!ref_is_valid(ref))
                return -EINVAL;
        if (len != 32) /* a SHA-256 digest; PSS salt length equals it */
                return -EINVAL;

        LOST_CHECK(ks);
        return seen(ks, ks->ops->sign(ks, ref, digest, len, sig));
}

int kh_keystore_public_key(struct kh_keystore *ks, const struct kh_key_ref *ref, EVP_PKEY **ret) {
        assert(ks && ref && ret);

        if (!ref_is_valid(ref))
                return -EINVAL;

        LOST_CHECK(ks);
        return seen(ks, ks->ops->public_key(ks, ref, ret));
}

int kh_keystore_list(struct kh_keystore *ks, const char *tenant, kh_key_ref_fn fn,
                     void *userdata) {
        assert(ks && fn);

        if (!tenant || !tenant_is_valid(tenant, KH_TENANT_ID_MAX))
                return -EINVAL;

        LOST_CHECK(ks);
        return seen(ks, ks->ops->list(ks, tenant, fn, userdata));
}

int kh_keystore_destroy(struct kh_keystore *ks, const struct kh_key_ref *ref) {
        assert(ks && ref);

        if (!ref_is_valid(ref) || ref->purpose != KH_KEY_DATA)
                return -EINVAL;

        LOST_CHECK(ks);
        return seen(ks, ks->ops->destroy(ks, ref));
}

int kh_keystore_backup_key(struct kh_keystore *ks, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                           struct kh_secret **ret) {
        assert(ks && salt && ret);

        if (!ks->ops->backup_key)
                return -EOPNOTSUPP;
        LOST_CHECK(ks);
        return seen(ks, ks->ops->backup_key(ks, salt, ret));
}

int kh_keystore_probe(struct kh_keystore *ks, char *detail, size_t detail_len) {
        int r;

        assert(ks);

        if (detail && detail_len > 0)
                detail[0] = '\0';
        if (!ks->ops->probe)
                return 0;
        /* asked even when lost: the device's own answer names the call and its code */
        r = ks->ops->probe(ks, detail, detail_len);
        if (r == 0 && atomic_load_explicit(&ks->lost, memory_order_relaxed)) {
                /* the session answers, but an operation was told the device is gone: only a
                 * reconnect says it is back */
                if (detail && detail_len > 0)
                        (void) snprintf(detail, detail_len, "an operation found it gone");
                r = -KH_E_KEYSTORE_UNAVAILABLE;
        }
        return seen(ks, r);
}

int kh_keystore_reconnect(struct kh_keystore *ks, char *detail, size_t detail_len) {
        int r;

        assert(ks);

        if (detail && detail_len > 0)
                detail[0] = '\0';
        if (!ks->ops->reconnect)
                return 0;
        r = ks->ops->reconnect(ks, detail, detail_len);
        atomic_store_explicit(&ks->lost, r < 0, memory_order_relaxed);
        return r;
}

bool kh_keystore_is_lost(const struct kh_keystore *ks) {
        return atomic_load_explicit(&((struct kh_keystore *) (uintptr_t) ks)->lost,
                                    memory_order_relaxed);
}
