#include "service/ksmigrate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/parse.h"
#include "crypto/hash.h"

/* ---- the marker ---- */

void kh_ksmigrate_marker_key(const char *tenant, char key[static KH_KSMIGRATE_META_KEY_LEN + 1]) {
        uint8_t digest[KH_SHA256_LEN];
        int n;

        kh_sha256(tenant, strlen(tenant), digest);
        n = snprintf(key, KH_KSMIGRATE_META_KEY_LEN + 1, "keyhold.ksmigrate.");
        for (size_t i = 0; i < 8; i++)
                n += snprintf(key + n, KH_KSMIGRATE_META_KEY_LEN + 1 - (size_t) n, "%02x",
                              digest[i]);
}

static bool copy_name(const json_t *v, char *out, size_t max) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);

        if (!s || len == 0 || len > max || strlen(s) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        memcpy(out, s, len + 1);
        return true;
}

static bool int_in(const json_t *v, json_int_t min, json_int_t max, json_int_t *ret) {
        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
                return false;
        *ret = json_integer_value(v);
        return true;
}

int kh_ksmigrate_marker_parse(const uint8_t *p, size_t len, struct kh_ksmigrate_marker *ret) {
        struct kh_ksmigrate_marker m = { 0 };
        json_auto_t *root = NULL;
        const json_t *versions, *v;
        json_int_t n;
        size_t i;

        if (!p || len == 0 || len > KH_STORE_META_VALUE_MAX)
                return -EINVAL;
        root = json_loadb((const char *) p, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root) || json_object_size(root) != 8)
                return -EINVAL;
        if (!copy_name(json_object_get(root, "tenant"), m.tenant, KH_TENANT_ID_MAX) ||
            !kh_tenant_id_is_valid(m.tenant, strlen(m.tenant)) ||
            !copy_name(json_object_get(root, "from"), m.from, KH_KSMIGRATE_DRIVER_MAX) ||
            !copy_name(json_object_get(root, "to"), m.to, KH_KSMIGRATE_DRIVER_MAX) ||
            !json_is_boolean(json_object_get(root, "audited")))
                return -EINVAL;
        m.audited = json_is_true(json_object_get(root, "audited"));
        if (!int_in(json_object_get(root, "started"), 1, INT64_MAX, &n))
                return -EINVAL;
        m.started = n;
        if (!int_in(json_object_get(root, "finished"), 0, INT64_MAX, &n))
                return -EINVAL;
        m.finished = n;
        if (!int_in(json_object_get(root, "uid"), 0, UINT32_MAX, &n))
                return -EINVAL;
        m.uid = (uint32_t) n;
        versions = json_object_get(root, "versions");
        if (!json_is_array(versions) || json_array_size(versions) > KH_KEY_VERSIONS_MAX)
                return -EINVAL;
        json_array_foreach(versions, i, v) {
                if (!int_in(v, 1, UINT32_MAX, &n) || (i > 0 && (uint32_t) n <= m.versions[i - 1]))
                        return -EINVAL;
                m.versions[m.n++] = (uint32_t) n;
        }
        *ret = m;
        return 0;
}

int kh_ksmigrate_marker_get(struct kh_store *s, const char *tenant,
                            struct kh_ksmigrate_marker *ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        char key[KH_KSMIGRATE_META_KEY_LEN + 1];
        int r;

        kh_ksmigrate_marker_key(tenant, key);
        kh_buf_init(&v, KH_STORE_META_VALUE_MAX, false);
        r = kh_store_meta_get(s, key, &v);
        if (r < 0)
                return r == -E2BIG ? -KH_E_INTEGRITY : r;
        if (kh_ksmigrate_marker_parse(v.data, v.len, ret) < 0 || strcmp(ret->tenant, tenant) != 0)
                return -KH_E_INTEGRITY;
        return 0;
}

int kh_ksmigrate_marker_format(const struct kh_ksmigrate_marker *m, char **ret) {
        json_auto_t *doc = NULL, *versions = json_array();
        char *text;

        for (size_t i = 0; versions && i < m->n; i++)
                if (json_array_append_new(versions, json_integer(m->versions[i])) < 0)
                        return -ENOMEM;
        if (!versions)
                return -ENOMEM;
        doc = json_pack("{ss ss ss sI sI sI sb sO}", "tenant", m->tenant, "from", m->from, "to",
                        m->to, "started", (json_int_t) m->started, "finished",
                        (json_int_t) m->finished, "uid", (json_int_t) m->uid, "audited",
                        m->audited, "versions", versions);
        if (!doc)
                return -ENOMEM;
        text = json_dumps(doc, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

int kh_ksmigrate_marker_put(struct kh_store *s, const struct kh_ksmigrate_marker *m) {
        char key[KH_KSMIGRATE_META_KEY_LEN + 1];
        KH_CLEANUP_FREE char *text = NULL;
        int r;

        r = kh_ksmigrate_marker_format(m, &text);
        if (r < 0)
                return r;
        kh_ksmigrate_marker_key(m->tenant, key);
        return kh_store_meta_put(s, key, (const uint8_t *) text, strlen(text));
}

/* ---- moving ---- */

/* The rows of one tenant as they were read: moved after the read is over, so that no update
 * runs under the open read of the same table. */
struct rows {
        size_t n;
        struct row {
                uint32_t version;
                enum kh_key_state state;
                size_t len, sig_len;
                uint8_t wrapped[KH_WRAPPED_DEK_MAX];
                uint8_t sig[KH_STORE_SIGNATURE_MAX];
        } row[KH_KEY_VERSIONS_MAX];
};

static int collect(const struct kh_tenant_key *key, void *userdata) {
        struct rows *rows = userdata;
        struct row *w;

        if (rows->n == KH_KEY_VERSIONS_MAX)
                return -E2BIG;
        w = &rows->row[rows->n++];
        *w = (struct row) { .version = key->version, .state = key->state,
                            .len = key->wrapped_dek_len, .sig_len = key->signature_len };
        memcpy(w->wrapped, key->wrapped_dek, key->wrapped_dek_len);
        if (key->signature)
                memcpy(w->sig, key->signature, key->signature_len);
        return 0;
}

static struct kh_tenant_key as_key(const struct row *w) {
        return (struct kh_tenant_key) { .version = w->version, .state = w->state,
                                        .wrapped_dek = w->wrapped, .wrapped_dek_len = w->len,
                                        .signature = w->sig_len ? w->sig : NULL,
                                        .signature_len = w->sig_len };
}

static struct kh_key_ref data_ref(const char *tenant, uint32_t version,
                                  enum kh_key_purpose purpose) {
        struct kh_key_ref ref = { .version = version, .purpose = purpose };

        (void) snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
        return ref;
}

static bool state_keeps_dek(enum kh_key_state s) {
        return s == KH_KEY_ACTIVE || s == KH_KEY_ARCHIVED || s == KH_KEY_REVOKED;
}

/* Whether the row's DEK is the new store's already: signed by its key and unwrapping. */
static bool in_store(struct kh_keystore *ks, const char *tenant, const struct row *w) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_tenant_key key = as_key(w);
        struct kh_key_ref ref = data_ref(tenant, w->version, KH_KEY_DATA);

        return kh_dek_verify(ks, tenant, &key, NULL) == 0 &&
               kh_keystore_unwrap(ks, &ref, w->wrapped, w->len, &dek) == 0;
}

static void marker_add(struct kh_ksmigrate_marker *m, uint32_t version) {
        size_t i = m->n;

        for (size_t j = 0; j < m->n; j++)
                if (m->versions[j] == version)
                        return;
        while (i > 0 && m->versions[i - 1] > version) {
                m->versions[i] = m->versions[i - 1];
                i--;
        }
        m->versions[i] = version;
        m->n++;
}

struct run {
        struct kh_store *store;
        struct kh_keystore *from, *to;
        const char *tenant;
        struct kh_ksmigrate_marker marker;
        bool have_marker;
        uint32_t uid;
};

/* The marker this run writes with its first move: the one an interrupted run left, or a new
 * one (a finished marker is from an earlier migration). */
static void marker_begin(struct run *run) {
        if (run->have_marker && run->marker.finished == 0)
                return;
        run->marker = (struct kh_ksmigrate_marker) { .started = (int64_t) time(NULL),
                                                     .uid = run->uid };
        (void) snprintf(run->marker.tenant, sizeof(run->marker.tenant), "%s", run->tenant);
        (void) snprintf(run->marker.from, sizeof(run->marker.from), "%s",
                        kh_keystore_name(run->from));
        (void) snprintf(run->marker.to, sizeof(run->marker.to), "%s", kh_keystore_name(run->to));
        run->have_marker = true;
}

/* The row's DEK under the new store's version, and the row and marker rewritten in one
 * transaction. */
static int move(struct run *run, const struct row *w, bool *ret_in_new) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 }, sig = { 0 };
        struct kh_tenant_key key = as_key(w);
        struct kh_key_ref ref = data_ref(run->tenant, w->version, KH_KEY_DATA), made;
        unsigned bits = 0;
        int r;

        *ret_in_new = false;
        /* the marker of a finished move that keyholdd has not recorded yet would be
         * replaced by this one, and its audit records lost with it */
        if (run->have_marker && run->marker.finished != 0 && !run->marker.audited)
                return -EALREADY;
        r = kh_dek_verify(run->from, run->tenant, &key, &bits);
        if (r >= 0)
                r = kh_keystore_unwrap(run->from, &ref, w->wrapped, w->len, &dek);
        if (r < 0)
                return r;

        *ret_in_new = true;
        r = kh_keystore_generate(run->to,
                                 &(struct kh_key_spec) { .tenant = run->tenant,
                                                         .version = w->version, .rsa_bits = bits,
                                                         .purpose = KH_KEY_DATA,
                                                         .alg = KH_KEY_ALG_RSA },
                                 &made);
        if (r < 0 && r != -EEXIST) /* -EEXIST: made by a run that died before its row */
                return r;
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
        r = kh_keystore_wrap(run->to, &ref, dek, &wrapped);
        if (r >= 0)
                r = kh_dek_sign(run->to, run->tenant, w->version, wrapped.data, wrapped.len, &sig);
        if (r < 0)
                return r;

        *ret_in_new = false;
        marker_begin(run);
        marker_add(&run->marker, w->version);
        r = kh_store_tx_begin(run->store);
        if (r < 0)
                return r;
        r = kh_store_tenant_key_rewrap(run->store, run->tenant, w->version, w->wrapped, w->len,
                                       wrapped.data, wrapped.len, sig.data, sig.len);
        if (r == 0)
                r = -ESTALE;
        if (r >= 0)
                r = kh_ksmigrate_marker_put(run->store, &run->marker);
        if (r >= 0)
                r = kh_store_tx_commit(run->store);
        if (r < 0)
                kh_store_tx_rollback(run->store);
        return r < 0 ? r : 0;
}

static int count_record(const struct kh_store_record *rec, void *userdata) {
        (void) rec;
        (*(uint64_t *) userdata)++;
        return 0;
}

/* Members enrolled under the old store's recovery key, unless the new store holds the same
 * key (the same store under another configuration). */
static int recovery_affected(struct run *run, uint64_t *ret) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *old = NULL, *new = NULL;
        struct kh_key_ref ref = data_ref(run->tenant, 1, KH_KEY_RECOVERY);
        int r;

        *ret = 0;
        r = kh_keystore_public_key(run->from, &ref, &old);
        if (r == -ENOENT)
                return 0;  /* never made: nobody could enrol */
        if (r < 0)
                return r;
        if (kh_keystore_public_key(run->to, &ref, &new) == 0 && EVP_PKEY_eq(old, new) == 1)
                return 0;
        return kh_store_records_list(run->store, run->tenant, KH_RECORD_RECOVERY, "",
                                     count_record, ret);
}

int kh_ksmigrate_tenant(struct kh_store *store, struct kh_keystore *from, struct kh_keystore *to,
                        const char *tenant, uint32_t uid, kh_ksmigrate_fn fn, void *userdata,
                        struct kh_ksmigrate_result *ret) {
        KH_CLEANUP_FREE struct rows *rows = NULL;
        struct run run = { .store = store, .from = from, .to = to, .tenant = tenant, .uid = uid };
        int r;

        *ret = (struct kh_ksmigrate_result) { 0 };
        rows = calloc(1, sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        r = kh_store_tenant_keys(store, tenant, collect, rows);
        if (r < 0)
                return r;
        r = kh_ksmigrate_marker_get(store, tenant, &run.marker);
        if (r < 0 && r != -ENOENT)
                return r;
        run.have_marker = r == 0;

        for (size_t i = 0; i < rows->n; i++) {
                const struct row *w = &rows->row[i];
                enum kh_ksmigrate_outcome o;

                if (!state_keeps_dek(w->state)) {
                        ret->no_key++;
                        o = KH_KSMIGRATE_NO_KEY;
                } else if (in_store(to, tenant, w)) {
                        ret->versions++;
                        ret->skipped++;
                        o = KH_KSMIGRATE_PRESENT;
                } else {
                        ret->versions++;
                        r = move(&run, w, &ret->failed_in_new);
                        if (r < 0) {
                                ret->failed_version = w->version;
                                return r;
                        }
                        ret->moved++;
                        o = KH_KSMIGRATE_MOVED;
                }
                if (fn)
                        fn(tenant, w->version, w->state, o, userdata);
        }

        /* every version in: the migration this marker tells of is finished */
        if (run.have_marker && run.marker.finished == 0) {
                run.marker.finished = (int64_t) time(NULL);
                run.marker.audited = false;
                r = kh_ksmigrate_marker_put(store, &run.marker);
                if (r < 0)
                        return r;
        }
        return recovery_affected(&run, &ret->recovery_enrolments);
}
