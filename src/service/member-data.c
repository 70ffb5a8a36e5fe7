#include "service/member-data.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "common/parse.h"
#include "service/keyring.h"
#include "service/record.h"
#include "service/service-internal.h"

void kh_mdata_clear(struct kh_mdata *m) {
        json_decref(m->doc);
        m->doc = NULL;
        kh_buf_free(&m->blob);
}

/* Opens a sealed row of t into m (doc parsed). */
static int open_row(const struct kh_tenant_keys *tk, const struct kh_tenant *t,
                    enum kh_record_kind kind, const char *owner, uint32_t version,
                    const uint8_t *blob, size_t len, json_t **ret) {
        const struct kh_key_version *v = kh_tenant_keys_version(tk, version);
        KH_CLEANUP(kh_buf_freep) struct kh_buf text = { 0 };
        json_t *doc;
        int r;

        if (!v)
                return -KH_E_INTEGRITY;
        if (v->state == KH_KEY_REVOKED)
                return -KH_E_KEY_REVOKED;
        if (!v->dek)
                return -KH_E_INTEGRITY;
        kh_buf_init(&text, KH_SEALED_MAX, true);
        r = kh_record_unseal_buf(v->dek, t->id, kind, owner, version, blob, len, &text);
        if (r < 0)
                return r;
        doc = json_loadb((const char *) text.data, text.len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(doc)) {
                json_decref(doc);
                return -KH_E_INTEGRITY;
        }
        *ret = doc;
        return 0;
}

static const struct kh_tenant_keys *snapshot(struct kh_service *svc, const struct kh_tenant *t,
                                             int *r) {
        const struct kh_keys *keys = kh_keyring_get(svc->keyring);

        *r = kh_keys_refusal(keys);
        return kh_tenant_keys(keys, t);
}

int kh_mdata_get(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                 const char *owner, struct kh_mdata *ret) {
        const struct kh_tenant_keys *tk;
        int r;

        *ret = (struct kh_mdata) { 0 };
        tk = snapshot(svc, t, &r);
        if (r < 0)
                return r;
        kh_buf_init(&ret->blob, KH_SEALED_MAX, false);
        r = kh_store_record_get(svc->store, t->id, kind, owner, &ret->version, &ret->blob);
        if (r >= 0)
                r = open_row(tk, t, kind, owner, ret->version, ret->blob.data, ret->blob.len,
                             &ret->doc);
        if (r < 0)
                kh_mdata_clear(ret);
        return r;
}

/* Seals doc for (kind, owner) under the active version into svc->blob. */
static int seal(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                const char *owner, const json_t *doc, uint32_t *ret_version) {
        const struct kh_tenant_keys *tk;
        const struct kh_key_version *v;
        char *text;
        int r;

        tk = snapshot(svc, t, &r);
        if (r < 0)
                return r;
        v = tk->active;
        if (!v && kh_tenant_keys_killed(tk))
                return -KH_E_KEY_REVOKED;        /* the kill switch */
        if (!v || !v->dek)
                return -KH_E_NOT_READY;
        text = json_dumps(doc, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        kh_buf_reset(&svc->blob);
        r = kh_record_seal_bytes(v->dek, t->id, kind, owner, v->version, (const uint8_t *) text,
                                 strlen(text), &svc->blob);
        OPENSSL_cleanse(text, strlen(text));
        free(text);
        if (r == -E2BIG)
                return -KH_E_BODY_TOO_LARGE;     /* the client sent more than a row holds */
        *ret_version = v->version;
        return r;
}

int kh_mdata_put(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                 const char *owner, const json_t *doc) {
        uint32_t version;
        int r = seal(svc, t, kind, owner, doc, &version);

        if (r < 0)
                return r;
        return kh_store_record_put(svc->store, t->id, kind, owner, version, svc->blob.data,
                                   svc->blob.len);
}

int kh_mdata_insert(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                    const char *owner, const json_t *doc) {
        uint32_t version;
        int r = seal(svc, t, kind, owner, doc, &version);

        if (r < 0)
                return r;
        return kh_store_record_insert(svc->store, t->id, kind, owner, version, svc->blob.data,
                                      svc->blob.len);
}

int kh_mdata_replace(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                     const char *owner, const struct kh_mdata *old, const json_t *doc) {
        uint32_t version;
        int r = seal(svc, t, kind, owner, doc, &version);

        if (r < 0)
                return r;
        r = kh_store_record_move(svc->store, t->id, kind, owner, old->version, old->blob.data,
                                 old->blob.len, version, svc->blob.data, svc->blob.len);
        if (r < 0)
                return r;
        return r == 1 ? 0 : -ESTALE;
}

/* The rows of a listing, copied out of the store's callback (which may not call the store
 * back, and the rows are opened after). */
struct row {
        char *owner;
        uint32_t version;
        uint8_t *blob;
        size_t len;
};

struct rows {
        struct row *v;
        size_t n, cap;
};

static void rows_free(struct rows *rs) {
        for (size_t i = 0; i < rs->n; i++) {
                free(rs->v[i].owner);
                free(rs->v[i].blob);
        }
        free(rs->v);
}

static int collect(const struct kh_store_record *rec, void *userdata) {
        struct rows *rs = userdata;
        struct row *row;

        if (rs->n == rs->cap) {
                size_t cap = rs->cap ? rs->cap * 2 : 16;
                struct row *v = realloc(rs->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                rs->v = v;
                rs->cap = cap;
        }
        row = &rs->v[rs->n];
        *row = (struct row) { .owner = strdup(rec->owner), .version = rec->version,
                              .blob = malloc(rec->len), .len = rec->len };
        if (!row->owner || !row->blob) {
                free(row->owner);
                free(row->blob);
                return -ENOMEM;
        }
        memcpy(row->blob, rec->blob, rec->len);
        rs->n++;
        return 0;
}

int kh_mdata_list(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                  const char *prefix, kh_mdata_fn fn, void *userdata, size_t *ret_skipped) {
        const struct kh_tenant_keys *tk;
        struct rows rs = { 0 };
        size_t skipped = 0;
        int r;

        tk = snapshot(svc, t, &r);
        if (r < 0)
                return r;
        r = kh_store_records_list(svc->store, t->id, kind, prefix, collect, &rs);
        for (size_t i = 0; r == 0 && i < rs.n; i++) {
                struct kh_mdata m = { .version = rs.v[i].version };
                int o = open_row(tk, t, kind, rs.v[i].owner, rs.v[i].version, rs.v[i].blob,
                                 rs.v[i].len, &m.doc);
                if (o == -ENOMEM) {
                        r = o;
                        break;
                }
                if (o < 0) {
                        skipped++;
                        continue;
                }
                /* the sealed bytes, for a compare-and-set by the caller */
                kh_buf_init(&m.blob, KH_SEALED_MAX, false);
                r = kh_buf_append(&m.blob, rs.v[i].blob, rs.v[i].len);
                if (r >= 0)
                        r = fn(rs.v[i].owner, &m, userdata);
                kh_mdata_clear(&m);
        }
        rows_free(&rs);
        if (ret_skipped)
                *ret_skipped = skipped;
        return r;
}

int kh_mdata_delete(struct kh_service *svc, const struct kh_tenant *t, enum kh_record_kind kind,
                    const char *owner) {
        return kh_store_record_delete(svc->store, t->id, kind, owner);
}

int kh_mdata_delete_prefix(struct kh_service *svc, const struct kh_tenant *t,
                           enum kh_record_kind kind, const char *prefix) {
        return kh_store_records_delete_prefix(svc->store, t->id, kind, prefix);
}

/* The seconds KEYHOLD_TEST_CLOCK_OFFSET_FILE moves the clock by (member-data.h), else 0. */
static int64_t clock_offset_s(void) {
        const char *path = getenv("KEYHOLD_TEST_CLOCK_OFFSET_FILE");
        uint64_t mag;
        char text[32];
        FILE *f;
        size_t n;

        if (!path || !path[0])
                return 0;
        f = fopen(path, "re");
        if (!f)
                return 0;
        n = fread(text, 1, sizeof(text) - 1, f);
        (void) fclose(f);
        while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == ' '))
                n--;
        text[n] = '\0';
        /* "-N" moves back; a value that does not parse moves nothing */
        if (n > 1 && text[0] == '-' && kh_parse_u64(text + 1, n - 1, INT32_MAX, &mag) == 0)
                return -(int64_t) mag;
        if (n > 0 && kh_parse_u64(text, n, INT32_MAX, &mag) == 0)
                return (int64_t) mag;
        return 0;
}

int64_t kh_mdata_now(void) {
        return (int64_t) time(NULL) + clock_offset_s();
}

int64_t kh_mdata_now_us(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return ((int64_t) ts.tv_sec + clock_offset_s()) * 1000000 + ts.tv_nsec / 1000;
}

void kh_mdata_date(int64_t t, char out[static 32]) {
        time_t tt = (time_t) t;
        struct tm tm;

        if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%S.000Z", &tm) == 0)
                (void) snprintf(out, 32, "1970-01-01T00:00:00.000Z");
}
