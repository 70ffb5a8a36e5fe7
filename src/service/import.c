#include "service/import.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/errors.h"
#include "service/service-internal.h"
#include "service/user-keys.h"
#include "store/store.h"

const char *kh_import_status_name(enum kh_import_status s) {
        static const char *const names[] = {
                [KH_IMPORT_IMPORTED] = "imported", [KH_IMPORT_SKIPPED] = "skipped",
                [KH_IMPORT_CONFLICT] = "conflict", [KH_IMPORT_OVERWRITTEN] = "overwritten",
                [KH_IMPORT_MATCH] = "match",       [KH_IMPORT_MISMATCH] = "mismatch",
                [KH_IMPORT_MISSING] = "missing",   [KH_IMPORT_FAILED] = "failed",
        };
        return (size_t) s < sizeof(names) / sizeof(names[0]) ? names[s] : "failed";
}

/* The member as the user-key use cases take it: only the subject counts there. */
static void member_of(const struct kh_tenant *t, const struct kh_import_entry *e,
                      struct kh_principal *ret) {
        *ret = (struct kh_principal) { 0 };
        (void) snprintf(ret->tenant, sizeof(ret->tenant), "%s", t->id);
        (void) snprintf(ret->sub, sizeof(ret->sub), "%s", e->user);
}

/* What t stores for e's member, compared with e's key in constant time: MATCH, MISMATCH,
 * MISSING or FAILED (set in e); or an error of the whole batch. */
static int compare(struct kh_service *svc, const struct kh_tenant *t, struct kh_import_entry *e) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *stored = NULL;
        struct kh_principal who;
        int r;

        member_of(t, e, &who);
        r = kh_user_keys_get(svc, t, &who, &stored, &e->key_version);
        switch (r) {
        case 0:
                e->status = kh_secret_equal(stored, e->key) ? KH_IMPORT_MATCH : KH_IMPORT_MISMATCH;
                return 0;
        case -KH_E_KEY_NOT_FOUND:
                e->status = KH_IMPORT_MISSING;
                return 0;
        case -KH_E_KEY_REVOKED:
        case -KH_E_INTEGRITY:
                e->status = KH_IMPORT_FAILED;
                e->error = r;
                return 0;
        default:
                return r;
        }
}

int kh_import_verify(struct kh_service *svc, const struct kh_tenant *t,
                     struct kh_import_entry *entries, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = compare(svc, t, &entries[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int apply_one(struct kh_service *svc, const struct kh_tenant *t, struct kh_import_entry *e,
                     bool overwrite) {
        struct kh_principal who;
        int r = compare(svc, t, e);

        if (r < 0)
                return r;
        member_of(t, e, &who);
        switch (e->status) {
        case KH_IMPORT_MATCH:
                e->status = KH_IMPORT_SKIPPED;
                return 0;
        case KH_IMPORT_MISSING:
                e->status = KH_IMPORT_IMPORTED;
                return kh_user_keys_post(svc, t, &who, e->key, &e->key_version);
        case KH_IMPORT_MISMATCH:
                if (!overwrite) {
                        e->status = KH_IMPORT_CONFLICT;
                        return 0;
                }
                e->status = KH_IMPORT_OVERWRITTEN;
                return kh_user_keys_put(svc, t, &who, e->key, &e->key_version);
        default:
                return 0;    /* FAILED: a record that does not open is never replaced blindly */
        }
}

int kh_import_apply(struct kh_service *svc, const struct kh_tenant *t,
                    struct kh_import_entry *entries, size_t n, bool overwrite) {
        int r = kh_store_savepoint(svc->store);

        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = apply_one(svc, t, &entries[i], overwrite);
        if (r < 0) {
                kh_store_savepoint_rollback(svc->store);
                return r;
        }
        return kh_store_savepoint_release(svc->store);
}
