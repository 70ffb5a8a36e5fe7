#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit/json.h"
#include "common/errors.h"
#include "common/parse.h"
#include "service/app.h"
#include "service/ksmigrate.h"
#include "service/service-internal.h"

/* ---- key status ---- */

struct status_ctx {
        struct kh_keys_status *st;
};

static int collect_status(const struct kh_tenant_key *key, void *userdata) {
        struct kh_keys_status *st = ((struct status_ctx *) userdata)->st;
        struct kh_key_status *v;

        if (st->n == KH_KEY_VERSIONS_MAX)
                return -E2BIG;
        v = &st->versions[st->n++];
        *v = (struct kh_key_status) { .version = key->version, .state = key->state,
                                      .created = key->created_at, .encrypts = key->encrypts,
                                      .decrypts = key->decrypts };
        return 0;
}

int kh_admin_keystore_migration(struct kh_service *svc, const struct kh_tenant *t,
                                struct kh_ksmigrate_marker *ret) {
        return kh_ksmigrate_marker_get(svc->store, t->id, ret);
}

int kh_admin_keys_status(struct kh_service *svc, const struct kh_tenant *t,
                         struct kh_keys_status *ret) {
        const struct kh_tenant_keys *tk = kh_tenant_keys(kh_keyring_get(svc->keyring), t);
        struct status_ctx c = { ret };
        int r;

        uint32_t versions[KH_KEY_VERSIONS_MAX];
        uint64_t records[KH_KEY_VERSIONS_MAX];

        memset(ret, 0, sizeof(*ret));
        r = kh_store_tenant_keys(svc->store, t->id, collect_status, &c);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ret->n; i++)
                versions[i] = ret->versions[i].version;
        r = kh_app_record_counts(svc->app, svc->store, t, versions, ret->n, records);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ret->n; i++) {
                struct kh_key_status *v = &ret->versions[i];
                const struct kh_key_version *kv = kh_tenant_keys_version(tk, v->version);
                uint64_t e, d;

                /* the state in force is the snapshot's; the row may be ahead of it */
                if (kv) {
                        v->state = kv->state;
                        v->rsa_bits = kv->rsa_bits;
                }
                if (v->state == KH_KEY_ACTIVE)
                        ret->active = v->version;
                kh_auditor_pending_uses(kh_app_auditor(svc->app), t->index, v->version, &e, &d);
                v->encrypts += e;
                v->decrypts += d;
                v->records = records[i];
        }
        return 0;
}

/* ---- reading chains ---- */

struct read_ctx {
        const char *chain_id;
        uint64_t since;
        size_t limit;
        struct kh_buf *lines;
        struct kh_audit_page *page;
        int error;
};

#define READ_FULL 1

static int read_record(const struct kh_audit_record *rec, int64_t time_ms, void *userdata) {
        struct read_ctx *c = userdata;
        int r;

        (void) time_ms;
        if (rec->seq < c->since)
                return 0;
        if (c->page->n == c->limit)
                return READ_FULL;
        r = kh_audit_json_format(rec, c->lines);
        if (r < 0)
                return c->error = r;
        c->page->n++;
        c->page->next = rec->seq + 1;
        return 0;
}

static int read_block(const struct kh_store_audit_block *b, void *userdata) {
        struct read_ctx *c = userdata;

        return kh_audit_block_each(b, c->chain_id, read_record, c);
}

int kh_audit_read(struct kh_service *svc, uint32_t chain, const char *replica, uint64_t since,
                  uint64_t last, size_t limit, struct kh_buf *lines, struct kh_audit_page *ret) {
        const char *tenant = kh_auditor_tenant_id(kh_app_auditor(svc->app), chain);
        char id[KH_AUDIT_CHAIN_ID_MAX + 1];
        struct kh_store_audit_block head;
        struct read_ctx c = { .chain_id = id, .limit = limit, .lines = lines, .page = ret };
        int r;

        if (!tenant || limit == 0 || limit > KH_AUDIT_PAGE_MAX ||
            (replica && replica[0] && !kh_audit_replica_is_valid(replica)))
                return -EINVAL;
        kh_audit_chain_store_id(tenant, replica, id);
        *ret = (struct kh_audit_page) { 0 };
        r = kh_store_audit_last(svc->store, id, &head);
        if (r == -ENOENT) {
                ret->next = since ? since : 1;
                return 0;
        }
        if (r < 0)
                return r;
        ret->head = head.last_seq;
        if (last)
                since = head.last_seq >= last ? head.last_seq - last + 1 : 1;
        if (since == 0)
                since = 1;
        c.since = since;
        ret->next = since;
        r = kh_store_audit_scan(svc->store, id, since, false, read_block, &c);
        if (c.error < 0)
                return c.error;
        /* READ_FULL: the page is full; next says where the following one starts */
        return r < 0 ? r : 0;
}

int kh_audit_replica_names(struct kh_service *svc, struct kh_buf *out) {
        return kh_audit_replicas(svc->store, out);
}
