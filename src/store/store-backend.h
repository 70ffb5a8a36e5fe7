/* The interface a storage backend implements. Callers include store.h; only backends and
 * store.c include this. The wrappers in store.c have already checked every argument
 * against the ranges store.h documents before an operation runs, so a backend checks only
 * what it reads back (kh_store_sealed_len_ok() and friends below). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"
#include "store/store.h"

struct kh_store_ops {
        const char *name; /* the [storage] driver value: "sqlite", "postgresql" */
        /* why: n > 0 bytes for kh_store_open_explained()'s message, "" on entry */
        int (*open)(const struct kh_config_storage *cfg, struct kh_store **ret, char *why,
                    size_t n);
        void (*close)(struct kh_store *s);
        int (*schema_version)(struct kh_store *s);
        int (*tenant_key_insert_if_absent)(struct kh_store *s, const char *tenant,
                                           uint32_t version, enum kh_key_state state,
                                           const uint8_t *wrapped_dek, size_t len,
                                           const uint8_t *signature, size_t signature_len);
        int (*tenant_key_set_signature)(struct kh_store *s, const char *tenant,
                                        uint32_t version, const uint8_t *signature,
                                        size_t signature_len);
        int (*tenant_key_rewrap)(struct kh_store *s, const char *tenant, uint32_t version,
                                 const uint8_t *old, size_t old_len, const uint8_t *wrapped,
                                 size_t len, const uint8_t *signature, size_t signature_len);
        int (*tenant_keys)(struct kh_store *s, const char *tenant, kh_tenant_key_fn fn,
                           void *userdata);
        int (*tenant_key_set_state)(struct kh_store *s, const char *tenant, uint32_t version,
                                    enum kh_key_state state);
        int (*tenant_key_update)(struct kh_store *s, const char *tenant, uint32_t version,
                                 enum kh_key_state from, enum kh_key_state to,
                                 enum kh_key_state prior);
        int (*tenant_key_destroy)(struct kh_store *s, const char *tenant, uint32_t version);
        int (*records_under)(struct kh_store *s, const char *tenant, uint32_t version,
                             enum kh_record_kind after_kind, const char *after_owner,
                             size_t limit, kh_store_record_fn fn, void *userdata);
        int (*record_move)(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                           const char *owner, uint32_t from, const uint8_t *old,
                           size_t old_len, uint32_t to, const uint8_t *blob, size_t len);
        int (*record_moves)(struct kh_store *s, const char *tenant, uint32_t from, uint32_t to,
                            const struct kh_store_move *moves, size_t n);
        bool groups_commits; /* kh_store_groups_commits() */
        int (*tenant_key_add_uses)(struct kh_store *s, const char *tenant, uint32_t version,
                                   uint64_t encrypts, uint64_t decrypts);
        int (*audit_append)(struct kh_store *s, const char *chain,
                            const struct kh_store_audit_block *b);
        int (*audit_last)(struct kh_store *s, const char *chain,
                          struct kh_store_audit_block *ret);
        int (*audit_scan)(struct kh_store *s, const char *chain, uint64_t seq, bool descending,
                          kh_store_audit_block_fn fn, void *userdata);
        int (*audit_prune)(struct kh_store *s, const char *chain, uint64_t before_seq);
        int (*record_get)(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                          const char *owner, uint32_t *ret_version, struct kh_buf *blob);
        int (*record_insert)(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                             const char *owner, uint32_t version, const uint8_t *blob,
                             size_t len);
        int (*record_put)(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                          const char *owner, uint32_t version, const uint8_t *blob, size_t len);
        int (*record_count)(struct kh_store *s, const char *tenant, uint32_t version,
                            uint64_t *ret_count);
        /* owners in [prefix, upper): store.c computes upper */
        int (*records_list)(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                            const char *prefix, const char *upper, kh_store_record_fn fn,
                            void *userdata);
        int (*record_delete)(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                             const char *owner);
        int (*records_delete_prefix)(struct kh_store *s, const char *tenant,
                                     enum kh_record_kind kind, const char *prefix,
                                     const char *upper);
        int (*meta_get)(struct kh_store *s, const char *key, struct kh_buf *value);
        int (*meta_put)(struct kh_store *s, const char *key, const uint8_t *value, size_t len);
        int (*key_epoch)(struct kh_store *s, uint64_t *ret);
        int (*key_epoch_wait)(struct kh_store *s, int timeout_ms); /* NULL: -EOPNOTSUPP */
        int (*lease_take)(struct kh_store *s, const char *name, const char *holder,
                          int64_t now_ms, int64_t expires_at_ms, const uint8_t *data,
                          size_t len);
        int (*lease_get)(struct kh_store *s, const char *name, struct kh_buf *holder,
                         int64_t *ret_expires_at_ms, struct kh_buf *data);
        int (*ping)(struct kh_store *s);
        const char *(*last_error)(struct kh_store *s);
        int (*tx_begin)(struct kh_store *s);
        int (*tx_commit)(struct kh_store *s);
        void (*tx_rollback)(struct kh_store *s);
        int (*savepoint)(struct kh_store *s);
        int (*savepoint_release)(struct kh_store *s);
        void (*savepoint_rollback)(struct kh_store *s);
        int (*snapshot)(struct kh_store *s, const char *path); /* NULL: not supported */
        int (*load)(struct kh_store *s, const char *path, const char *pending,
                    struct kh_store_load_info *ret); /* NULL: not supported */
        int (*load_done)(struct kh_store *s);        /* NULL with load */
        /* asynchronous reads (store.h); NULL: not supported. record_get_async finds its
         * arguments, already checked, in rd. */
        int (*attach_loop)(struct kh_store *s, struct kh_loop *loop);
        void (*detach_loop)(struct kh_store *s);
        bool (*reads_async)(const struct kh_store *s);
        void (*record_get_async)(struct kh_store *s, struct kh_store_read *rd);
        int (*exclusive)(struct kh_store *s); /* NULL: the lock file does it (store/lock.h) */
};

/* The first member of every backend's struct; the backend reaches its own with
 * kh_container_of(s, struct kh_<backend>_store, base). */
struct kh_store {
        const struct kh_store_ops *ops;
};

extern const struct kh_store_ops kh_store_sqlite_ops;
#if KH_WITH_POSTGRES
extern const struct kh_store_ops kh_store_postgresql_ops;
#endif

/* Range checks shared by the wrappers (arguments) and the backends (rows read back). */
static inline bool kh_store_sealed_len_ok(size_t len) {
        return len >= 1 && len <= KH_SEALED_MAX;
}

static inline bool kh_store_wrapped_dek_len_ok(size_t len) {
        return len >= 1 && len <= KH_WRAPPED_DEK_MAX;
}

static inline bool kh_store_signature_len_ok(size_t len) {
        return len >= 1 && len <= KH_STORE_SIGNATURE_MAX;
}

static inline bool kh_store_meta_value_len_ok(size_t len) {
        return len >= 1 && len <= KH_STORE_META_VALUE_MAX;
}

static inline bool kh_store_key_state_ok(long long state) {
        return state >= KH_KEY_ACTIVE && state <= KH_KEY_DESTROYED;
}

static inline bool kh_store_version_ok(long long version) {
        return version >= 0 && version <= (long long) UINT32_MAX;
}
