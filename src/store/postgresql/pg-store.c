/* The PostgreSQL backend's operations: the same semantics as the SQLite backend (store.h),
 * each one prepared statement (pg-conn.c runs them). Several keyholdd replicas share one
 * database, so every "exactly one wins" of store.h is a single statement here
 * (INSERT ... ON CONFLICT DO NOTHING, UPDATE ... WHERE old value), never a read then a write.
 * A statement that fails inside a transaction aborts it on PostgreSQL: no operation relies on
 * an error it expects (a duplicate is ON CONFLICT DO NOTHING and a count of 0 rows). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "store/postgresql/pg-conn.h"
#include "store/postgresql/pg-snapshot.h"

/* audit blocks read per round trip (a block holds up to 16 MiB): the number and its text */
#define AUDIT_PAGE     4
#define AUDIT_PAGE_SQL "4"

const char *const kh_pg_statements[PG_ST_N_] = {
        [PG_ST_TENANT_KEY_INSERT] =
                "INSERT INTO tenant_keys "
                "(tenant, version, state, wrapped_dek, signature, created_at) "
                "VALUES ($1::text, $2::bigint, $3::bigint, $4::bytea, $5::bytea, $6::bigint) "
                "ON CONFLICT (tenant, version) DO NOTHING",
        [PG_ST_TENANT_KEYS] =
                "SELECT version, state, wrapped_dek, signature, created_at, encrypts, decrypts, "
                "prior_state FROM tenant_keys WHERE tenant = $1::text ORDER BY version",
        [PG_ST_TENANT_KEY_SET_STATE] =
                "UPDATE tenant_keys SET state = $3::bigint, prior_state = NULL "
                "WHERE tenant = $1::text AND version = $2::bigint",
        /* never replaces a signature: of two replicas signing one row, the first wins */
        [PG_ST_TENANT_KEY_SET_SIGNATURE] =
                "UPDATE tenant_keys SET signature = $3::bytea "
                "WHERE tenant = $1::text AND version = $2::bigint AND signature IS NULL",
        [PG_ST_TENANT_KEY_EXISTS] =
                "SELECT 1::bigint FROM tenant_keys WHERE tenant = $1::text AND version = $2::bigint",
        /* a compare-and-set on the wrapped DEK: a migration run again never overwrites a
         * row it moved already */
        [PG_ST_TENANT_KEY_REWRAP] =
                "UPDATE tenant_keys SET wrapped_dek = $4::bytea, signature = $5::bytea "
                "WHERE tenant = $1::text AND version = $2::bigint AND wrapped_dek = $3::bytea "
                "AND state IN (1, 2, 4)",
        [PG_ST_TENANT_KEY_ADD_USES] =
                "UPDATE tenant_keys SET encrypts = encrypts + $3::bigint, "
                "decrypts = decrypts + $4::bigint WHERE tenant = $1::text AND version = $2::bigint",
        [PG_ST_TENANT_KEY_UPDATE] =
                "UPDATE tenant_keys SET state = $4::bigint, prior_state = $5::bigint "
                "WHERE tenant = $1::text AND version = $2::bigint AND state = $3::bigint",
        [PG_ST_TENANT_KEY_DESTROY] =
                "UPDATE tenant_keys SET state = 5, wrapped_dek = ''::bytea, signature = NULL, "
                "prior_state = NULL WHERE tenant = $1::text AND version = $2::bigint AND state = 3",
        [PG_ST_RECORDS_UNDER] =
                "SELECT kind, owner, blob, key_version FROM records "
                "WHERE tenant = $1::text AND key_version = $2::bigint "
                "AND (kind, owner) > ($3::bigint, $4::text COLLATE \"C\") "
                "ORDER BY kind, owner LIMIT $5::bigint",
        [PG_ST_RECORD_MOVE] =
                "UPDATE records SET key_version = $6::bigint, blob = $7::bytea "
                "WHERE tenant = $1::text AND kind = $2::bigint AND owner = $3::text "
                "AND key_version = $4::bigint AND blob = $5::bytea",
        [PG_ST_AUDIT_APPEND] =
                "INSERT INTO audit_blocks (chain, first_seq, last_seq, head_hash, data) "
                "VALUES ($1::text, $2::bigint, $3::bigint, $4::bytea, $5::bytea) "
                "ON CONFLICT (chain, first_seq) DO NOTHING",
        [PG_ST_AUDIT_LAST] =
                "SELECT first_seq, last_seq, head_hash FROM audit_blocks WHERE chain = $1::text "
                "ORDER BY first_seq DESC LIMIT 1",
        /* the block holding seq is the last starting at or before it; then pages of blocks
         * after $3 (0 for the first page) */
        [PG_ST_AUDIT_SCAN_ASC] =
                "SELECT first_seq, last_seq, head_hash, data FROM audit_blocks "
                "WHERE chain = $1::text AND first_seq > $3::bigint AND first_seq >= "
                "COALESCE((SELECT MAX(first_seq) FROM audit_blocks WHERE chain = $1::text "
                "AND first_seq <= $2::bigint), 0) ORDER BY first_seq LIMIT " AUDIT_PAGE_SQL,
        [PG_ST_AUDIT_SCAN_DESC] =
                "SELECT first_seq, last_seq, head_hash, data FROM audit_blocks "
                "WHERE chain = $1::text AND first_seq <= $2::bigint ORDER BY first_seq DESC "
                "LIMIT " AUDIT_PAGE_SQL,
        [PG_ST_AUDIT_PRUNE] =
                "DELETE FROM audit_blocks WHERE chain = $1::text AND last_seq < $2::bigint",
        [PG_ST_META_GET] = "SELECT value FROM meta WHERE key = $1::text",
        [PG_ST_META_PUT] =
                "INSERT INTO meta (key, value) VALUES ($1::text, $2::bytea) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [PG_ST_RECORD_GET] =
                "SELECT key_version, blob FROM records "
                "WHERE tenant = $1::text AND kind = $2::bigint AND owner = $3::text",
        [PG_ST_RECORD_INSERT] =
                "INSERT INTO records (tenant, kind, owner, key_version, blob, created_at) "
                "VALUES ($1::text, $2::bigint, $3::text, $4::bigint, $5::bytea, $6::bigint) "
                "ON CONFLICT (tenant, kind, owner) DO NOTHING",
        [PG_ST_RECORD_PUT] =
                "INSERT INTO records "
                "(tenant, kind, owner, key_version, blob, created_at, updated_at) "
                "VALUES ($1::text, $2::bigint, $3::text, $4::bigint, $5::bytea, $6::bigint, "
                "$6::bigint) ON CONFLICT (tenant, kind, owner) DO UPDATE SET "
                "key_version = excluded.key_version, blob = excluded.blob, "
                "updated_at = excluded.updated_at",
        [PG_ST_RECORD_COUNT] =
                "SELECT COUNT(*) FROM records WHERE tenant = $1::text AND key_version = $2::bigint",
        /* owners of a prefix: [prefix, upper) in byte order (owner is COLLATE "C") */
        [PG_ST_RECORDS_LIST] =
                "SELECT kind, owner, blob, key_version FROM records "
                "WHERE tenant = $1::text AND kind = $2::bigint AND owner >= $3::text "
                "AND owner < $4::text ORDER BY owner",
        [PG_ST_RECORD_DELETE] =
                "DELETE FROM records WHERE tenant = $1::text AND kind = $2::bigint "
                "AND owner = $3::text",
        [PG_ST_RECORDS_DELETE_PREFIX] =
                "DELETE FROM records WHERE tenant = $1::text AND kind = $2::bigint "
                "AND owner >= $3::text AND owner < $4::text",
        /* reads a table, so it proves the database (not only the server) answers */
        [PG_ST_PING] = "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [PG_ST_KEY_EPOCH] = "SELECT epoch FROM key_epoch WHERE id = 1",
        /* one statement: of two replicas taking a free lease at once, the row lock makes the
         * second see the first's row, held and unexpired */
        [PG_ST_LEASE_TAKE] =
                "INSERT INTO job_leases AS l (name, holder, expires_at, data) "
                "VALUES ($1::text, $2::text, $4::bigint, $5::bytea) "
                "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                "expires_at = excluded.expires_at, data = excluded.data "
                "WHERE l.holder = excluded.holder OR l.expires_at <= $3::bigint",
        [PG_ST_LEASE_GET] =
                "SELECT holder, expires_at, data FROM job_leases WHERE name = $1::text",
        [PG_ST_TX_BEGIN] = "BEGIN",
        [PG_ST_TX_LOCK] = "SELECT pg_advisory_xact_lock(" PG_WRITE_LOCK ")",
        [PG_ST_TX_COMMIT] = "COMMIT",
        [PG_ST_TX_ROLLBACK] = "ROLLBACK",
        [PG_ST_SAVEPOINT] = "SAVEPOINT kh_op",
        [PG_ST_SAVEPOINT_RELEASE] = "RELEASE kh_op",
        [PG_ST_SAVEPOINT_ROLLBACK] = "ROLLBACK TO kh_op",
};

static struct kh_pg_params tenant_version(const char *tenant, uint32_t version) {
        struct kh_pg_params p = { 0 };

        kh_pg_param_text(&p, tenant);
        kh_pg_param_int(&p, version);
        return p;
}

static struct kh_pg_params record_key(const char *tenant, enum kh_record_kind kind,
                                      const char *owner) {
        struct kh_pg_params p = { 0 };

        kh_pg_param_text(&p, tenant);
        kh_pg_param_int(&p, kind);
        kh_pg_param_text(&p, owner);
        return p;
}

/* Runs a write; its result is the number of rows it changed. */
static int run_changes(struct kh_pg_store *s, int id, const struct kh_pg_params *p) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        int r = kh_pg_run(s, id, p, &res);

        return r < 0 ? r : kh_pg_changes(res);
}

/* Runs a read of at most one row: 0 with *ret on its row, -ENOENT without one. */
static int run_one_row(struct kh_pg_store *s, int id, const struct kh_pg_params *p,
                       PGresult **ret) {
        PGresult *res = NULL;
        int r = kh_pg_run(s, id, p, &res);

        if (r < 0)
                return r;
        if (PQntuples(res) == 0) {
                PQclear(res);
                return -ENOENT;
        }
        *ret = res;
        return 0;
}

static int pg_schema_version(struct kh_store *store) {
        return kh_pg_of(store)->schema_version;
}

static int pg_tenant_key_insert_if_absent(struct kh_store *store, const char *tenant,
                                          uint32_t version, enum kh_key_state state,
                                          const uint8_t *wrapped_dek, size_t len,
                                          const uint8_t *signature, size_t signature_len) {
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_int(&p, state);
        kh_pg_param_bytes(&p, wrapped_dek, len);
        kh_pg_param_bytes(&p, signature, signature_len);
        kh_pg_param_int(&p, time(NULL));
        r = run_changes(kh_pg_of(store), PG_ST_TENANT_KEY_INSERT, &p);
        return r < 0 ? r : r > 0;
}

static int pg_tenant_keys(struct kh_store *store, const char *tenant, kh_tenant_key_fn fn,
                          void *userdata) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = { 0 };
        int r;

        kh_pg_param_text(&p, tenant);
        /* the whole result is read first: fn may call s */
        r = kh_pg_run(kh_pg_of(store), PG_ST_TENANT_KEYS, &p, &res);
        if (r < 0)
                return r;
        for (int i = 0; i < PQntuples(res); i++) {
                int64_t version, state, prior = 0, created, encrypts, decrypts;
                bool has_sig = !kh_pg_is_null(res, i, 3);

                if (!kh_pg_get_int(res, i, 0, &version) || !kh_pg_get_int(res, i, 1, &state) ||
                    kh_pg_is_null(res, i, 2) || !kh_pg_get_int(res, i, 4, &created) ||
                    !kh_pg_get_int(res, i, 5, &encrypts) || !kh_pg_get_int(res, i, 6, &decrypts) ||
                    (!kh_pg_is_null(res, i, 7) && !kh_pg_get_int(res, i, 7, &prior)))
                        return -KH_E_INTEGRITY;
                if (!kh_store_version_ok(version) || !kh_store_key_state_ok(state) ||
                    (prior != 0 && !kh_store_key_state_ok(prior)) || encrypts < 0 ||
                    decrypts < 0 || (has_sig && PQgetlength(res, i, 3) <= 0))
                        return -KH_E_INTEGRITY;
                r = fn(&(const struct kh_tenant_key) {
                               .version = (uint32_t) version,
                               .created_at = created,
                               .encrypts = (uint64_t) encrypts,
                               .decrypts = (uint64_t) decrypts,
                               .state = (enum kh_key_state) state,
                               .prior_state = (enum kh_key_state) prior,
                               .wrapped_dek = (const uint8_t *) PQgetvalue(res, i, 2),
                               .wrapped_dek_len = (size_t) PQgetlength(res, i, 2),
                               .signature = has_sig ? (const uint8_t *) PQgetvalue(res, i, 3)
                                                    : NULL,
                               .signature_len = has_sig ? (size_t) PQgetlength(res, i, 3) : 0,
                       },
                       userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int pg_tenant_key_set_state(struct kh_store *store, const char *tenant, uint32_t version,
                                   enum kh_key_state state) {
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_int(&p, state);
        r = run_changes(kh_pg_of(store), PG_ST_TENANT_KEY_SET_STATE, &p);
        return r < 0 ? r : r > 0 ? 0 : -ENOENT;
}

static int pg_tenant_key_update(struct kh_store *store, const char *tenant, uint32_t version,
                                enum kh_key_state from, enum kh_key_state to,
                                enum kh_key_state prior) {
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_int(&p, from);
        kh_pg_param_int(&p, to);
        if (prior)
                kh_pg_param_int(&p, prior);
        else
                kh_pg_param_null(&p);
        r = run_changes(kh_pg_of(store), PG_ST_TENANT_KEY_UPDATE, &p);
        return r < 0 ? r : r > 0 ? 0 : -ENOENT;
}

static int pg_tenant_key_destroy(struct kh_store *store, const char *tenant, uint32_t version) {
        struct kh_pg_params p = tenant_version(tenant, version);
        int r = run_changes(kh_pg_of(store), PG_ST_TENANT_KEY_DESTROY, &p);

        return r < 0 ? r : r > 0 ? 0 : -ENOENT;
}

/* The update that never replaces a signature, then (when it changed nothing) whether the
 * row exists. No operation deletes a version, so the answer cannot change in between. */
static int pg_tenant_key_set_signature(struct kh_store *store, const char *tenant,
                                       uint32_t version, const uint8_t *signature,
                                       size_t signature_len) {
        struct kh_pg_store *s = kh_pg_of(store);
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_bytes(&p, signature, signature_len);
        r = run_changes(s, PG_ST_TENANT_KEY_SET_SIGNATURE, &p);
        if (r != 0)
                return r < 0 ? r : 1;
        p = tenant_version(tenant, version);
        return run_one_row(s, PG_ST_TENANT_KEY_EXISTS, &p, &res);
}

static int pg_tenant_key_rewrap(struct kh_store *store, const char *tenant, uint32_t version,
                                const uint8_t *old, size_t old_len, const uint8_t *wrapped,
                                size_t len, const uint8_t *signature, size_t signature_len) {
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_bytes(&p, old, old_len);
        kh_pg_param_bytes(&p, wrapped, len);
        kh_pg_param_bytes(&p, signature, signature_len);
        r = run_changes(kh_pg_of(store), PG_ST_TENANT_KEY_REWRAP, &p);
        return r < 0 ? r : r > 0;
}

static int pg_tenant_key_add_uses(struct kh_store *store, const char *tenant, uint32_t version,
                                  uint64_t encrypts, uint64_t decrypts) {
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_int(&p, (int64_t) encrypts);
        kh_pg_param_int(&p, (int64_t) decrypts);
        r = run_changes(kh_pg_of(store), PG_ST_TENANT_KEY_ADD_USES, &p);
        return r < 0 ? r : r > 0 ? 0 : -ENOENT;
}

/* Reads never write: no access time or counter is updated here. */
static int pg_record_get(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                         const char *owner, uint32_t *ret_version, struct kh_buf *blob) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = record_key(tenant, kind, owner);
        int64_t version;
        int len, r;

        r = run_one_row(kh_pg_of(store), PG_ST_RECORD_GET, &p, &res);
        if (r < 0)
                return r;
        len = PQgetlength(res, 0, 1);
        if (!kh_pg_get_int(res, 0, 0, &version) || !kh_store_version_ok(version) ||
            kh_pg_is_null(res, 0, 1) || len < 0 || !kh_store_sealed_len_ok((size_t) len))
                return -KH_E_INTEGRITY;
        r = kh_buf_append(blob, PQgetvalue(res, 0, 1), (size_t) len);
        if (r < 0)
                return r;
        *ret_version = (uint32_t) version;
        return 0;
}

static struct kh_pg_params record(const char *tenant, enum kh_record_kind kind,
                                  const char *owner, uint32_t version, const uint8_t *blob,
                                  size_t len) {
        struct kh_pg_params p = record_key(tenant, kind, owner);

        kh_pg_param_int(&p, version);
        kh_pg_param_bytes(&p, blob, len);
        kh_pg_param_int(&p, time(NULL));
        return p;
}

static int pg_record_insert(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                            const char *owner, uint32_t version, const uint8_t *blob,
                            size_t len) {
        struct kh_pg_params p = record(tenant, kind, owner, version, blob, len);
        int r = run_changes(kh_pg_of(store), PG_ST_RECORD_INSERT, &p);

        return r < 0 ? r : r > 0 ? 0 : -EEXIST;
}

static int pg_record_put(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                         const char *owner, uint32_t version, const uint8_t *blob, size_t len) {
        struct kh_pg_params p = record(tenant, kind, owner, version, blob, len);
        int r = run_changes(kh_pg_of(store), PG_ST_RECORD_PUT, &p);

        return r < 0 ? r : 0;
}

/* Calls fn for each row (kind, owner, blob, key_version) of res. */
static int each_record(const PGresult *res, kh_store_record_fn fn, void *userdata) {
        for (int i = 0; i < PQntuples(res); i++) {
                const char *owner = PQgetvalue(res, i, 1);
                int owner_len = PQgetlength(res, i, 1), len = PQgetlength(res, i, 2), r;
                int64_t kind, version;

                if (!kh_pg_get_int(res, i, 0, &kind) || !kh_pg_get_int(res, i, 3, &version) ||
                    kh_pg_is_null(res, i, 1) || kh_pg_is_null(res, i, 2))
                        return -KH_E_INTEGRITY;
                if (kind < 1 || kind > INT32_MAX || owner_len < 1 ||
                    owner_len > KH_STORE_OWNER_MAX || strlen(owner) != (size_t) owner_len ||
                    len < 0 || !kh_store_sealed_len_ok((size_t) len) || version < 1 ||
                    version > UINT32_MAX)
                        return -KH_E_INTEGRITY;
                r = fn(&(const struct kh_store_record) {
                               .kind = (enum kh_record_kind) kind,
                               .owner = owner,
                               .blob = (const uint8_t *) PQgetvalue(res, i, 2),
                               .len = (size_t) len,
                               .version = (uint32_t) version,
                       },
                       userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

static int pg_records_under(struct kh_store *store, const char *tenant, uint32_t version,
                            enum kh_record_kind after_kind, const char *after_owner,
                            size_t limit, kh_store_record_fn fn, void *userdata) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = tenant_version(tenant, version);
        int r;

        kh_pg_param_int(&p, after_kind);
        kh_pg_param_text(&p, after_owner);
        kh_pg_param_int(&p, (int64_t) limit);
        r = kh_pg_run(kh_pg_of(store), PG_ST_RECORDS_UNDER, &p, &res);
        return r < 0 ? r : each_record(res, fn, userdata);
}

static struct kh_pg_params prefix_range(const char *tenant, enum kh_record_kind kind,
                                        const char *prefix, const char *upper) {
        struct kh_pg_params p = record_key(tenant, kind, prefix);

        kh_pg_param_text(&p, upper);
        return p;
}

static int pg_records_list(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                           const char *prefix, const char *upper, kh_store_record_fn fn,
                           void *userdata) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = prefix_range(tenant, kind, prefix, upper);
        int r = kh_pg_run(kh_pg_of(store), PG_ST_RECORDS_LIST, &p, &res);

        return r < 0 ? r : each_record(res, fn, userdata);
}

static int pg_record_delete(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                            const char *owner) {
        struct kh_pg_params p = record_key(tenant, kind, owner);
        int r = run_changes(kh_pg_of(store), PG_ST_RECORD_DELETE, &p);

        return r < 0 ? r : r > 0;
}

static int pg_records_delete_prefix(struct kh_store *store, const char *tenant,
                                    enum kh_record_kind kind, const char *prefix,
                                    const char *upper) {
        struct kh_pg_params p = prefix_range(tenant, kind, prefix, upper);

        return run_changes(kh_pg_of(store), PG_ST_RECORDS_DELETE_PREFIX, &p);
}

static int pg_record_move(struct kh_store *store, const char *tenant, enum kh_record_kind kind,
                          const char *owner, uint32_t from, const uint8_t *old, size_t old_len,
                          uint32_t to, const uint8_t *blob, size_t len) {
        struct kh_pg_params p = record_key(tenant, kind, owner);
        int r;

        kh_pg_param_int(&p, from);
        kh_pg_param_bytes(&p, old, old_len);
        kh_pg_param_int(&p, to);
        kh_pg_param_bytes(&p, blob, len);
        r = run_changes(kh_pg_of(store), PG_ST_RECORD_MOVE, &p);
        return r < 0 ? r : r > 0;
}

static int pg_record_moves(struct kh_store *store, const char *tenant, uint32_t from,
                           uint32_t to, const struct kh_store_move *moves, size_t n) {
        KH_CLEANUP_FREE struct kh_pg_params *p = calloc(n, sizeof(*p));
        int r, moved = 0;

        if (!p)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                const struct kh_store_move *m = &moves[i];

                p[i] = record_key(tenant, m->kind, m->owner);
                kh_pg_param_int(&p[i], from);
                kh_pg_param_bytes(&p[i], m->old, m->old_len);
                kh_pg_param_int(&p[i], to);
                kh_pg_param_bytes(&p[i], m->blob, m->len);
        }
        r = kh_pg_run_batch(kh_pg_of(store), PG_ST_RECORD_MOVE, p, n, &moved);
        return r < 0 ? r : moved;
}

static int pg_record_count(struct kh_store *store, const char *tenant, uint32_t version,
                           uint64_t *ret_count) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = tenant_version(tenant, version);
        int64_t n;
        int r;

        r = run_one_row(kh_pg_of(store), PG_ST_RECORD_COUNT, &p, &res);
        if (r < 0)
                return r == -ENOENT ? -EIO : r;
        if (!kh_pg_get_int(res, 0, 0, &n) || n < 0)
                return -KH_E_INTEGRITY;
        *ret_count = (uint64_t) n;
        return 0;
}

static int pg_audit_append(struct kh_store *store, const char *chain,
                           const struct kh_store_audit_block *b) {
        struct kh_pg_params p = { 0 };
        int r;

        kh_pg_param_text(&p, chain);
        kh_pg_param_int(&p, (int64_t) b->first_seq);
        kh_pg_param_int(&p, (int64_t) b->last_seq);
        kh_pg_param_bytes(&p, b->head_hash, KH_STORE_AUDIT_HASH_LEN);
        kh_pg_param_bytes(&p, b->data, b->len);
        r = run_changes(kh_pg_of(store), PG_ST_AUDIT_APPEND, &p);
        return r < 0 ? r : r > 0 ? 0 : -EEXIST;
}

/* Row i's first_seq, last_seq, head_hash (and data, column 3, when with_data). */
static int audit_block_read(const PGresult *res, int i, bool with_data,
                            struct kh_store_audit_block *b) {
        int64_t first, last;

        if (!kh_pg_get_int(res, i, 0, &first) || !kh_pg_get_int(res, i, 1, &last) ||
            kh_pg_is_null(res, i, 2) || PQgetlength(res, i, 2) != KH_STORE_AUDIT_HASH_LEN ||
            first < 1 || last < first)
                return -KH_E_INTEGRITY;
        *b = (struct kh_store_audit_block) {
                .first_seq = (uint64_t) first, .last_seq = (uint64_t) last,
                .head_hash = (const uint8_t *) PQgetvalue(res, i, 2),
        };
        if (with_data) {
                int len = PQgetlength(res, i, 3);

                if (kh_pg_is_null(res, i, 3) || len <= 0 ||
                    (size_t) len > KH_STORE_AUDIT_BLOCK_MAX)
                        return -KH_E_INTEGRITY;
                b->data = (const uint8_t *) PQgetvalue(res, i, 3);
                b->len = (size_t) len;
        }
        return 0;
}

static int pg_audit_last(struct kh_store *store, const char *chain,
                         struct kh_store_audit_block *ret) {
        struct kh_pg_store *s = kh_pg_of(store);
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = { 0 };
        int r;

        kh_pg_param_text(&p, chain);
        r = run_one_row(s, PG_ST_AUDIT_LAST, &p, &res);
        if (r < 0)
                return r;
        r = audit_block_read(res, 0, false, ret);
        if (r < 0)
                return r;
        /* the hash points into the result, freed on return: keep a copy */
        memcpy(s->head_hash, ret->head_hash, KH_STORE_AUDIT_HASH_LEN);
        ret->head_hash = s->head_hash;
        return 0;
}

/* In pages of AUDIT_PAGE blocks, so that a long chain is never held in memory whole. */
static int pg_audit_scan(struct kh_store *store, const char *chain, uint64_t seq,
                         bool descending, kh_store_audit_block_fn fn, void *userdata) {
        struct kh_pg_store *s = kh_pg_of(store);
        uint64_t after = 0, at = seq;

        for (;;) {
                KH_CLEANUP(PQclearp) PGresult *res = NULL;
                struct kh_pg_params p = { 0 };
                int n, r;

                kh_pg_param_text(&p, chain);
                kh_pg_param_int(&p, (int64_t) at);
                if (!descending)
                        kh_pg_param_int(&p, (int64_t) after);
                r = kh_pg_run(s, descending ? PG_ST_AUDIT_SCAN_DESC : PG_ST_AUDIT_SCAN_ASC, &p,
                              &res);
                if (r < 0)
                        return r;
                n = PQntuples(res);
                for (int i = 0; i < n; i++) {
                        struct kh_store_audit_block b;

                        r = audit_block_read(res, i, true, &b);
                        if (r == 0)
                                r = fn(&b, userdata);
                        if (r != 0)
                                return r;
                        after = b.first_seq;
                        at = b.first_seq - 1;
                }
                if (n < AUDIT_PAGE || (descending && at == 0))
                        return 0;
        }
}

static int pg_audit_prune(struct kh_store *store, const char *chain, uint64_t before_seq) {
        struct kh_pg_params p = { 0 };

        kh_pg_param_text(&p, chain);
        kh_pg_param_int(&p, (int64_t) before_seq);
        return run_changes(kh_pg_of(store), PG_ST_AUDIT_PRUNE, &p);
}

static int pg_meta_get(struct kh_store *store, const char *key, struct kh_buf *value) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = { 0 };
        int len, r;

        kh_pg_param_text(&p, key);
        r = run_one_row(kh_pg_of(store), PG_ST_META_GET, &p, &res);
        if (r < 0)
                return r;
        len = PQgetlength(res, 0, 0);
        if (kh_pg_is_null(res, 0, 0) || len < 0 || !kh_store_meta_value_len_ok((size_t) len))
                return -KH_E_INTEGRITY;
        return kh_buf_append(value, PQgetvalue(res, 0, 0), (size_t) len);
}

static int pg_meta_put(struct kh_store *store, const char *key, const uint8_t *value,
                       size_t len) {
        struct kh_pg_params p = { 0 };
        int r;

        kh_pg_param_text(&p, key);
        kh_pg_param_bytes(&p, value, len);
        r = run_changes(kh_pg_of(store), PG_ST_META_PUT, &p);
        return r < 0 ? r : 0;
}

static int pg_key_epoch(struct kh_store *store, uint64_t *ret) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        int64_t v;
        int r;

        r = run_one_row(kh_pg_of(store), PG_ST_KEY_EPOCH, NULL, &res);
        if (r == -ENOENT)
                return -KH_E_INTEGRITY;
        if (r < 0)
                return r;
        if (!kh_pg_get_int(res, 0, 0, &v) || v < 0)
                return -KH_E_INTEGRITY;
        *ret = (uint64_t) v;
        return 0;
}

static int pg_lease_take(struct kh_store *store, const char *name, const char *holder,
                         int64_t now_ms, int64_t expires_at_ms, const uint8_t *data, size_t len) {
        struct kh_pg_params p = { 0 };
        int r;

        kh_pg_param_text(&p, name);
        kh_pg_param_text(&p, holder);
        kh_pg_param_int(&p, now_ms);
        kh_pg_param_int(&p, expires_at_ms);
        kh_pg_param_bytes(&p, data, len);
        r = run_changes(kh_pg_of(store), PG_ST_LEASE_TAKE, &p);
        return r < 0 ? r : r > 0;
}

static int pg_lease_get(struct kh_store *store, const char *name, struct kh_buf *holder,
                        int64_t *ret_expires_at_ms, struct kh_buf *data) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;
        struct kh_pg_params p = { 0 };
        int hlen, dlen, r;

        kh_pg_param_text(&p, name);
        r = run_one_row(kh_pg_of(store), PG_ST_LEASE_GET, &p, &res);
        if (r < 0)
                return r;
        hlen = PQgetlength(res, 0, 0);
        dlen = PQgetlength(res, 0, 2);
        if (kh_pg_is_null(res, 0, 0) || kh_pg_is_null(res, 0, 2) || hlen < 1 ||
            hlen > KH_STORE_LEASE_HOLDER_MAX || dlen < 1 || dlen > KH_STORE_LEASE_DATA_MAX ||
            memchr(PQgetvalue(res, 0, 0), 0, (size_t) hlen) ||
            !kh_pg_get_int(res, 0, 1, ret_expires_at_ms))
                return -KH_E_INTEGRITY;
        if (holder->max - holder->len < (size_t) hlen || data->max - data->len < (size_t) dlen)
                return -E2BIG;
        r = kh_buf_append(holder, PQgetvalue(res, 0, 0), (size_t) hlen);
        return r < 0 ? r : kh_buf_append(data, PQgetvalue(res, 0, 2), (size_t) dlen);
}

static int pg_ping(struct kh_store *store) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;

        return kh_pg_run(kh_pg_of(store), PG_ST_PING, NULL, &res);
}

static const char *pg_last_error(struct kh_store *store) {
        return kh_pg_of(store)->error;
}

static int run_command(struct kh_store *store, int id) {
        KH_CLEANUP(PQclearp) PGresult *res = NULL;

        return kh_pg_run(kh_pg_of(store), id, NULL, &res);
}

static int pg_savepoint(struct kh_store *store) {
        return run_command(store, PG_ST_SAVEPOINT);
}

static int pg_savepoint_release(struct kh_store *store) {
        return run_command(store, PG_ST_SAVEPOINT_RELEASE);
}

/* ROLLBACK TO keeps the savepoint open: release it too */
static void pg_savepoint_rollback(struct kh_store *store) {
        if (run_command(store, PG_ST_SAVEPOINT_ROLLBACK) >= 0)
                (void) run_command(store, PG_ST_SAVEPOINT_RELEASE);
}

const struct kh_store_ops kh_store_postgresql_ops = {
        .name = "postgresql",
        .open = kh_pg_open,
        .close = kh_pg_close,
        .schema_version = pg_schema_version,
        .tenant_key_insert_if_absent = pg_tenant_key_insert_if_absent,
        .tenant_keys = pg_tenant_keys,
        .tenant_key_set_state = pg_tenant_key_set_state,
        .tenant_key_set_signature = pg_tenant_key_set_signature,
        .tenant_key_rewrap = pg_tenant_key_rewrap,
        .tenant_key_add_uses = pg_tenant_key_add_uses,
        .tenant_key_update = pg_tenant_key_update,
        .tenant_key_destroy = pg_tenant_key_destroy,
        .records_under = pg_records_under,
        .record_move = pg_record_move,
        .record_moves = pg_record_moves,
        .groups_commits = false,
        .audit_append = pg_audit_append,
        .audit_last = pg_audit_last,
        .audit_scan = pg_audit_scan,
        .audit_prune = pg_audit_prune,
        .record_get = pg_record_get,
        .record_insert = pg_record_insert,
        .record_put = pg_record_put,
        .record_count = pg_record_count,
        .records_list = pg_records_list,
        .record_delete = pg_record_delete,
        .records_delete_prefix = pg_records_delete_prefix,
        .meta_get = pg_meta_get,
        .meta_put = pg_meta_put,
        .key_epoch = pg_key_epoch,
        .key_epoch_wait = kh_pg_key_epoch_wait,
        .lease_take = pg_lease_take,
        .lease_get = pg_lease_get,
        .ping = pg_ping,
        .exclusive = kh_pg_exclusive,
        .last_error = pg_last_error,
        .tx_begin = kh_pg_tx_begin,
        .tx_commit = kh_pg_tx_commit,
        .tx_rollback = kh_pg_tx_rollback,
        .savepoint = pg_savepoint,
        .savepoint_release = pg_savepoint_release,
        .savepoint_rollback = pg_savepoint_rollback,
        .snapshot = kh_pg_snapshot, /* the SQLite form: a backup moves between backends */
        .load = kh_pg_load,
        .load_done = kh_pg_load_done,
        .attach_loop = kh_pg_async_attach,
        .detach_loop = kh_pg_async_detach,
        .reads_async = kh_pg_async_ready,
        .record_get_async = kh_pg_async_record_get,
};
