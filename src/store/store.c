/* The store's public functions: find the backend, check arguments once for every backend,
 * and call through the backend's table. */
#include "store/store.h"

#include <assert.h>
#include <errno.h>
#include <string.h>

#include "common/errors.h"
#include "common/parse.h"
#include "store/store-backend.h"

static const struct kh_store_ops *const backends[] = {
        &kh_store_sqlite_ops,
#if KH_WITH_POSTGRES
        &kh_store_postgresql_ops,
#endif
};

static bool tenant_ok(const char *tenant) {
        return tenant && kh_tenant_id_is_valid(tenant, strnlen(tenant, KH_TENANT_ID_MAX + 1));
}

static bool owner_ok(const char *owner) {
        size_t n;

        if (!owner)
                return false;
        n = strnlen(owner, KH_STORE_OWNER_MAX + 1);
        return n >= 1 && n <= KH_STORE_OWNER_MAX;
}

/* Meta keys (and lease names) are names chosen in code, kept plain so that they read well
 * in any client. */
static bool plain_name_ok(const char *key, size_t max) {
        size_t n;

        if (!key)
                return false;
        n = strnlen(key, max + 1);
        if (n == 0 || n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((key[i] >= 'a' && key[i] <= 'z') || (key[i] >= '0' && key[i] <= '9') ||
                      key[i] == '.' || key[i] == '_' || key[i] == '-'))
                        return false;
        return true;
}

static bool meta_key_ok(const char *key) {
        return plain_name_ok(key, KH_STORE_META_KEY_MAX);
}

static bool signature_ok(const uint8_t *signature, size_t len) {
        return signature && kh_store_signature_len_ok(len);
}

/* Kinds are added to the enum over time; the store accepts any positive one. */
static bool kind_ok(enum kh_record_kind kind) {
        return (long long) kind >= KH_RECORD_USER_KEY;
}

int kh_store_open_explained(const struct kh_config_storage *cfg, struct kh_store **ret,
                            char *why, size_t n) {
        assert(cfg && ret && why && n > 0);

        why[0] = '\0';
        if (!cfg->driver)
                return -EINVAL;
        for (size_t i = 0; i < KH_ELEMENTSOF(backends); i++)
                if (strcmp(backends[i]->name, cfg->driver) == 0)
                        return backends[i]->open(cfg, ret, why, n);
        return -EINVAL;
}

int kh_store_open(const struct kh_config_storage *cfg, struct kh_store **ret) {
        char why[8];

        return kh_store_open_explained(cfg, ret, why, sizeof(why));
}

struct kh_store *kh_store_close(struct kh_store *s) {
        if (s)
                s->ops->close(s);
        return NULL;
}

int kh_store_schema_version(struct kh_store *s) {
        assert(s);
        return s->ops->schema_version(s);
}

int kh_store_tenant_key_insert_if_absent(struct kh_store *s, const char *tenant, uint32_t version,
                                         enum kh_key_state state, const uint8_t *wrapped_dek,
                                         size_t len, const uint8_t *signature,
                                         size_t signature_len) {
        assert(s);

        if (!tenant_ok(tenant) || !kh_store_key_state_ok(state) || !wrapped_dek ||
            !kh_store_wrapped_dek_len_ok(len) || !signature_ok(signature, signature_len))
                return -EINVAL;
        return s->ops->tenant_key_insert_if_absent(s, tenant, version, state, wrapped_dek, len,
                                                   signature, signature_len);
}

int kh_store_tenant_key_set_signature(struct kh_store *s, const char *tenant, uint32_t version,
                                      const uint8_t *signature, size_t signature_len) {
        assert(s);

        if (!tenant_ok(tenant) || !signature_ok(signature, signature_len))
                return -EINVAL;
        return s->ops->tenant_key_set_signature(s, tenant, version, signature, signature_len);
}

int kh_store_tenant_key_rewrap(struct kh_store *s, const char *tenant, uint32_t version,
                               const uint8_t *old, size_t old_len, const uint8_t *wrapped,
                               size_t len, const uint8_t *signature, size_t signature_len) {
        assert(s);

        if (!tenant_ok(tenant) || version == 0 || !old || !kh_store_wrapped_dek_len_ok(old_len) ||
            !wrapped || !kh_store_wrapped_dek_len_ok(len) || !signature_ok(signature, signature_len))
                return -EINVAL;
        if (!s->ops->tenant_key_rewrap)
                return -EOPNOTSUPP;  /* a backend that cannot move DEKs between key stores */
        return s->ops->tenant_key_rewrap(s, tenant, version, old, old_len, wrapped, len,
                                         signature, signature_len);
}

struct tenant_keys_ctx {
        kh_tenant_key_fn fn;
        void *userdata;
};

/* Every backend's rows pass this check before the caller sees them. */
static int tenant_key_checked(const struct kh_tenant_key *key, void *userdata) {
        const struct tenant_keys_ctx *ctx = userdata;

        /* a destroyed version's row keeps no DEK */
        if (!kh_store_key_state_ok(key->state) ||
            (key->state == KH_KEY_DESTROYED
                     ? key->wrapped_dek_len != 0
                     : !key->wrapped_dek || !kh_store_wrapped_dek_len_ok(key->wrapped_dek_len)))
                return -KH_E_INTEGRITY;
        /* a version revoked by kh_store_tenant_key_set_state() has none (reinstate: archived) */
        if (key->state == KH_KEY_REVOKED
                    ? key->prior_state != 0 && key->prior_state != KH_KEY_ACTIVE &&
                              key->prior_state != KH_KEY_ARCHIVED
                    : key->prior_state != 0)
                return -KH_E_INTEGRITY;
        if (key->signature ? !kh_store_signature_len_ok(key->signature_len)
                           : key->signature_len != 0)
                return -KH_E_INTEGRITY;
        return ctx->fn(key, ctx->userdata);
}

int kh_store_tenant_keys(struct kh_store *s, const char *tenant, kh_tenant_key_fn fn,
                         void *userdata) {
        struct tenant_keys_ctx ctx = { .fn = fn, .userdata = userdata };

        assert(s && fn);

        if (!tenant_ok(tenant))
                return -EINVAL;
        return s->ops->tenant_keys(s, tenant, tenant_key_checked, &ctx);
}

int kh_store_tenant_key_set_state(struct kh_store *s, const char *tenant, uint32_t version,
                                  enum kh_key_state state) {
        assert(s);

        if (!tenant_ok(tenant) || !kh_store_key_state_ok(state))
                return -EINVAL;
        return s->ops->tenant_key_set_state(s, tenant, version, state);
}

static bool prior_ok(enum kh_key_state to, enum kh_key_state prior) {
        return to == KH_KEY_REVOKED ? prior == KH_KEY_ACTIVE || prior == KH_KEY_ARCHIVED
                                    : prior == 0;
}

int kh_store_tenant_key_update(struct kh_store *s, const char *tenant, uint32_t version,
                               enum kh_key_state from, enum kh_key_state to,
                               enum kh_key_state prior) {
        assert(s);

        if (!tenant_ok(tenant) || !kh_store_key_state_ok(from) || !kh_store_key_state_ok(to) ||
            to == KH_KEY_DESTROYED || from == KH_KEY_DESTROYED || !prior_ok(to, prior))
                return -EINVAL;
        return s->ops->tenant_key_update(s, tenant, version, from, to, prior);
}

int kh_store_tenant_key_destroy(struct kh_store *s, const char *tenant, uint32_t version) {
        assert(s);

        if (!tenant_ok(tenant))
                return -EINVAL;
        return s->ops->tenant_key_destroy(s, tenant, version);
}

int kh_store_tenant_key_add_uses(struct kh_store *s, const char *tenant, uint32_t version,
                                 uint64_t encrypts, uint64_t decrypts) {
        assert(s);
        if (!tenant_ok(tenant) || encrypts > INT64_MAX || decrypts > INT64_MAX)
                return -EINVAL;
        return s->ops->tenant_key_add_uses(s, tenant, version, encrypts, decrypts);
}

/* "" is the server's own chain; "TENANT@REPLICA" and "@REPLICA" those of a named replica
 * (docs/audit.md "Replicas"; the replica's name is checked by the auditor that makes it). */
static bool chain_ok(const char *chain) {
        const char *at;
        size_t n;

        if (!chain)
                return false;
        at = strchr(chain, '@');
        if (!at)
                return !chain[0] || tenant_ok(chain);
        n = (size_t) (at - chain);
        if (n > 0 && !kh_tenant_id_is_valid(chain, n))
                return false;
        n = strnlen(at + 1, KH_STORE_AUDIT_REPLICA_MAX + 1);
        return n >= 1 && n <= KH_STORE_AUDIT_REPLICA_MAX && !strchr(at + 1, '@');
}

static bool audit_seq_ok(uint64_t seq) {
        return seq >= 1 && seq <= INT64_MAX;
}

int kh_store_audit_append(struct kh_store *s, const char *chain,
                          const struct kh_store_audit_block *b) {
        assert(s && b);
        if (!chain_ok(chain) || !audit_seq_ok(b->first_seq) || !audit_seq_ok(b->last_seq) ||
            b->last_seq < b->first_seq || !b->head_hash || !b->data || b->len == 0 ||
            b->len > KH_STORE_AUDIT_BLOCK_MAX)
                return -EINVAL;
        return s->ops->audit_append(s, chain, b);
}

int kh_store_audit_last(struct kh_store *s, const char *chain, struct kh_store_audit_block *ret) {
        assert(s && ret);
        if (!chain_ok(chain))
                return -EINVAL;
        return s->ops->audit_last(s, chain, ret);
}

int kh_store_audit_scan(struct kh_store *s, const char *chain, uint64_t seq, bool descending,
                        kh_store_audit_block_fn fn, void *userdata) {
        assert(s && fn);
        if (!chain_ok(chain) || seq > INT64_MAX)
                return -EINVAL;
        return s->ops->audit_scan(s, chain, seq, descending, fn, userdata);
}

int kh_store_audit_prune(struct kh_store *s, const char *chain, uint64_t before_seq) {
        assert(s);
        if (!chain_ok(chain) || before_seq > INT64_MAX)
                return -EINVAL;
        return s->ops->audit_prune(s, chain, before_seq);
}

int kh_store_record_get(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                        const char *owner, uint32_t *ret_version, struct kh_buf *blob) {
        assert(s && ret_version && blob);

        if (!tenant_ok(tenant) || !kind_ok(kind) || !owner_ok(owner))
                return -EINVAL;
        return s->ops->record_get(s, tenant, kind, owner, ret_version, blob);
}

int kh_store_attach_loop(struct kh_store *s, struct kh_loop *loop) {
        assert(s);

        if (!loop || !s->ops->attach_loop || !kh_loop_watches_fds(loop))
                return 0;
        return s->ops->attach_loop(s, loop);
}

void kh_store_detach_loop(struct kh_store *s) {
        if (s && s->ops->detach_loop)
                s->ops->detach_loop(s);
}

bool kh_store_reads_async(const struct kh_store *s) {
        return s->ops->reads_async && s->ops->reads_async(s);
}

int kh_store_record_get_async(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                              const char *owner, struct kh_store_read *rd) {
        assert(s && rd && rd->done && kh_store_reads_async(s));

        if (!tenant_ok(tenant) || !kind_ok(kind) || !owner_ok(owner))
                return -EINVAL;
        memcpy(rd->tenant, tenant, strlen(tenant) + 1);
        memcpy(rd->owner, owner, strlen(owner) + 1);
        rd->kind = kind;
        rd->next = NULL;
        s->ops->record_get_async(s, rd);
        return 0;
}

int kh_store_record_insert(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                           const char *owner, uint32_t version, const uint8_t *blob, size_t len) {
        assert(s);

        if (!tenant_ok(tenant) || !kind_ok(kind) || !owner_ok(owner) || !blob ||
            !kh_store_sealed_len_ok(len))
                return -EINVAL;
        return s->ops->record_insert(s, tenant, kind, owner, version, blob, len);
}

int kh_store_record_put(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                        const char *owner, uint32_t version, const uint8_t *blob, size_t len) {
        assert(s);

        if (!tenant_ok(tenant) || !kind_ok(kind) || !owner_ok(owner) || !blob ||
            !kh_store_sealed_len_ok(len))
                return -EINVAL;
        return s->ops->record_put(s, tenant, kind, owner, version, blob, len);
}

int kh_store_records_under(struct kh_store *s, const char *tenant, uint32_t version,
                           enum kh_record_kind after_kind, const char *after_owner, size_t limit,
                           kh_store_record_fn fn, void *userdata) {
        assert(s && fn);

        if (!tenant_ok(tenant) || (int) after_kind < 0 || !after_owner ||
            strlen(after_owner) > KH_STORE_OWNER_MAX || limit == 0 || limit > INT32_MAX)
                return -EINVAL;
        return s->ops->records_under(s, tenant, version, after_kind, after_owner, limit, fn,
                                     userdata);
}

/* The owner range of a prefix: [prefix, prefix with its last byte raised); "" gives
 * ["", "\x7f"). Owners are ASCII below 0x7f. */
static int prefix_range(const char *prefix, char upper[static KH_STORE_OWNER_MAX + 2]) {
        size_t n = strlen(prefix);

        if (n > KH_STORE_OWNER_MAX)
                return -EINVAL;
        if (n == 0) {
                upper[0] = 0x7f;
                upper[1] = '\0';
                return 0;
        }
        if ((unsigned char) prefix[n - 1] >= 0x7f)
                return -EINVAL;
        memcpy(upper, prefix, n + 1);
        upper[n - 1]++;
        return 0;
}

int kh_store_records_list(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                          const char *prefix, kh_store_record_fn fn, void *userdata) {
        char upper[KH_STORE_OWNER_MAX + 2];

        assert(s && fn);
        if (!tenant_ok(tenant) || !kind_ok(kind) || !prefix || prefix_range(prefix, upper) < 0)
                return -EINVAL;
        return s->ops->records_list(s, tenant, kind, prefix, upper, fn, userdata);
}

int kh_store_record_delete(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                           const char *owner) {
        assert(s);
        if (!tenant_ok(tenant) || !kind_ok(kind) || !owner_ok(owner))
                return -EINVAL;
        return s->ops->record_delete(s, tenant, kind, owner);
}

int kh_store_records_delete_prefix(struct kh_store *s, const char *tenant,
                                   enum kh_record_kind kind, const char *prefix) {
        char upper[KH_STORE_OWNER_MAX + 2];

        assert(s);
        if (!tenant_ok(tenant) || !kind_ok(kind) || !prefix || !prefix[0] ||
            prefix_range(prefix, upper) < 0)
                return -EINVAL;
        return s->ops->records_delete_prefix(s, tenant, kind, prefix, upper);
}

int kh_store_record_move(struct kh_store *s, const char *tenant, enum kh_record_kind kind,
                         const char *owner, uint32_t from, const uint8_t *old, size_t old_len,
                         uint32_t to, const uint8_t *blob, size_t len) {
        assert(s);

        if (!tenant_ok(tenant) || !kind_ok(kind) || !owner_ok(owner) || !old ||
            !kh_store_sealed_len_ok(old_len) || !blob || !kh_store_sealed_len_ok(len))
                return -EINVAL;
        return s->ops->record_move(s, tenant, kind, owner, from, old, old_len, to, blob, len);
}

int kh_store_record_moves(struct kh_store *s, const char *tenant, uint32_t from, uint32_t to,
                          const struct kh_store_move *moves, size_t n) {
        assert(s);

        if (!tenant_ok(tenant) || !moves || n == 0 || n > KH_STORE_MOVES_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                const struct kh_store_move *m = &moves[i];

                if (!kind_ok(m->kind) || !owner_ok(m->owner) || !m->old ||
                    !kh_store_sealed_len_ok(m->old_len) || !m->blob ||
                    !kh_store_sealed_len_ok(m->len))
                        return -EINVAL;
        }
        return s->ops->record_moves(s, tenant, from, to, moves, n);
}

bool kh_store_groups_commits(const struct kh_store *s) {
        assert(s);
        return s->ops->groups_commits;
}

int kh_store_record_count(struct kh_store *s, const char *tenant, uint32_t version,
                          uint64_t *ret_count) {
        assert(s && ret_count);

        if (!tenant_ok(tenant))
                return -EINVAL;
        return s->ops->record_count(s, tenant, version, ret_count);
}

int kh_store_meta_get(struct kh_store *s, const char *key, struct kh_buf *value) {
        assert(s && value);

        if (!meta_key_ok(key))
                return -EINVAL;
        return s->ops->meta_get(s, key, value);
}

int kh_store_meta_put(struct kh_store *s, const char *key, const uint8_t *value, size_t len) {
        assert(s);

        if (!meta_key_ok(key) || !value || !kh_store_meta_value_len_ok(len))
                return -EINVAL;
        return s->ops->meta_put(s, key, value, len);
}

int kh_store_key_epoch(struct kh_store *s, uint64_t *ret) {
        assert(s && ret);
        return s->ops->key_epoch(s, ret);
}

int kh_store_key_epoch_wait(struct kh_store *s, int timeout_ms) {
        assert(s);

        if (timeout_ms < 0 || timeout_ms > 60000)
                return -EINVAL;
        return s->ops->key_epoch_wait ? s->ops->key_epoch_wait(s, timeout_ms) : -EOPNOTSUPP;
}

static bool lease_holder_ok(const char *holder) {
        size_t n = holder ? strnlen(holder, KH_STORE_LEASE_HOLDER_MAX + 1) : 0;

        return n >= 1 && n <= KH_STORE_LEASE_HOLDER_MAX;
}

int kh_store_lease_take(struct kh_store *s, const char *name, const char *holder, int64_t now_ms,
                        int64_t expires_at_ms, const uint8_t *data, size_t len) {
        assert(s);

        if (!plain_name_ok(name, KH_STORE_LEASE_NAME_MAX) || !lease_holder_ok(holder) ||
            now_ms < 0 || expires_at_ms < 0 ||
            !data || len < 1 || len > KH_STORE_LEASE_DATA_MAX)
                return -EINVAL;
        return s->ops->lease_take(s, name, holder, now_ms, expires_at_ms, data, len);
}

int kh_store_lease_get(struct kh_store *s, const char *name, struct kh_buf *holder,
                       int64_t *ret_expires_at_ms, struct kh_buf *data) {
        assert(s && holder && ret_expires_at_ms && data);

        if (!plain_name_ok(name, KH_STORE_LEASE_NAME_MAX))
                return -EINVAL;
        return s->ops->lease_get(s, name, holder, ret_expires_at_ms, data);
}

int kh_store_ping(struct kh_store *s) {
        assert(s);
        return s->ops->ping(s);
}

int kh_store_exclusive(struct kh_store *s) {
        assert(s);
        return s->ops->exclusive ? s->ops->exclusive(s) : 0;
}

const char *kh_store_last_error(struct kh_store *s) {
        assert(s);
        return s->ops->last_error(s);
}

int kh_store_tx_begin(struct kh_store *s) {
        return s->ops->tx_begin(s);
}

int kh_store_tx_commit(struct kh_store *s) {
        return s->ops->tx_commit(s);
}

void kh_store_tx_rollback(struct kh_store *s) {
        s->ops->tx_rollback(s);
}

int kh_store_savepoint(struct kh_store *s) {
        return s->ops->savepoint(s);
}

int kh_store_savepoint_release(struct kh_store *s) {
        return s->ops->savepoint_release(s);
}

void kh_store_savepoint_rollback(struct kh_store *s) {
        s->ops->savepoint_rollback(s);
}

int kh_store_snapshot(struct kh_store *s, const char *path) {
        assert(s && path);
        if (!s->ops->snapshot)
                return -EOPNOTSUPP;
        return s->ops->snapshot(s, path);
}

int kh_store_load(struct kh_store *s, const char *path, const char *pending,
                  struct kh_store_load_info *ret) {
        assert(s && path && ret);
        assert(!pending || (*pending && strlen(pending) <= KH_STORE_META_VALUE_MAX));
        if (!s->ops->load)
                return -EOPNOTSUPP;
        return s->ops->load(s, path, pending, ret);
}

int kh_store_load_done(struct kh_store *s) {
        assert(s);
        if (!s->ops->load_done)
                return -EOPNOTSUPP;
        return s->ops->load_done(s);
}
