/* The key-store backend interface: one const table of operations per backend. Only backends
 * and keystore.c include this file. The wrappers in keystore.c have already checked what is
 * common to every backend (valid tenant id, version >= 1, sizes) before an operation runs,
 * so a backend checks only what is its own. No operation hands out a private key. */
#pragma once

#include <stdatomic.h>

#include "keystore/keystore.h"

struct kh_keystore_ops {
        const char *name; /* "file", "pkcs11": the value of [keystore] driver */
        unsigned caps;    /* KH_KS_* */
        /* detail: on failure a short text for the operator, or left alone; may be NULL */
        int (*open)(const struct kh_config_keystore *cfg, struct kh_keystore **ret,
                    char *detail, size_t detail_len);
        void (*close)(struct kh_keystore *ks); /* wipes every secret the backend holds */
        /* the ref of the key made is the wrapper's to fill in (keystore.c) */
        int (*generate)(struct kh_keystore *ks, const struct kh_key_spec *spec);
        int (*wrap)(struct kh_keystore *ks, const struct kh_key_ref *kek,
                    const struct kh_secret *dek, struct kh_buf *out);
        int (*unwrap)(struct kh_keystore *ks, const struct kh_key_ref *kek,
                      const uint8_t *wrapped, size_t len, struct kh_secret **ret_dek);
        int (*decrypt)(struct kh_keystore *ks, const struct kh_key_ref *key, enum kh_oaep_md md,
                       const uint8_t *in, size_t len, struct kh_secret **ret);
        int (*sign)(struct kh_keystore *ks, const struct kh_key_ref *key,
                    const uint8_t *digest, size_t len, struct kh_buf *sig);
        int (*public_key)(struct kh_keystore *ks, const struct kh_key_ref *key, EVP_PKEY **ret);
        int (*list)(struct kh_keystore *ks, const char *tenant, kh_key_ref_fn fn, void *userdata);
        int (*destroy)(struct kh_keystore *ks, const struct kh_key_ref *key);
        /* NULL: every tenant key wraps with KH_OAEP_SHA256 */
        int (*oaep)(struct kh_keystore *ks, const struct kh_key_ref *kek, enum kh_oaep_md *ret);
        int (*backup_key)(struct kh_keystore *ks, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                          struct kh_secret **ret);
        /* A store that can go away (caps has KH_KS_REMOVABLE) has both; NULL for one that
         * cannot (file). probe: one cheap round trip, 0 or -KH_E_KEYSTORE_UNAVAILABLE.
         * reconnect: sessions and login anew (see kh_keystore_reconnect()). detail as open's. */
        int (*probe)(struct kh_keystore *ks, char *detail, size_t detail_len);
        int (*reconnect)(struct kh_keystore *ks, char *detail, size_t detail_len);
};

/* The first member of each backend's state; reach the rest with kh_container_of(). */
struct kh_keystore {
        const struct kh_keystore_ops *ops;
        /* set by the wrappers when an operation answered -KH_E_KEYSTORE_UNAVAILABLE, cleared
         * by a reconnect that succeeded; while set, every operation answers that at once */
        atomic_bool lost;
};

extern const struct kh_keystore_ops kh_keystore_file_ops;
extern const struct kh_keystore_ops kh_keystore_pkcs11_ops;
