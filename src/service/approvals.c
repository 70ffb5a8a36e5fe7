/* Admin approval of login requests (auth-requests.h "admin approval"; DESIGN.md
 * "Administration"): the tenant's approvers list the pending admin requests with their
 * fingerprint phrases and answer them, with a quorum of one or two different approvers; the
 * key is the approver's, or made here from the member's account-recovery enrolment. */
#include "service/auth-requests.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "crypto/encoding.h"
#include "service/auth-requests-internal.h"
#include "service/fingerprint.h"
#include "service/member-data.h"
#include "service/recovery.h"

#define USER_KEY_LEN 64       /* a Bitwarden user key: enc_key || mac_key */
#define ANSWER_TRIES 4        /* compare-and-set retries when another approver wrote first */

void kh_approval_result_clear(struct kh_approval_result *r) {
        kh_buf_free(&r->enrolment);
        kh_buf_free(&r->spki);
}

/* The fingerprint phrase of a stored request: its public key, its e-mail lowercased. */
static int fingerprint_of(const json_t *doc, char out[static KH_FINGERPRINT_MAX]) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf spki = { 0 };
        const char *pk = json_string_value(json_object_get(doc, "publicKey"));
        const char *email = json_string_value(json_object_get(doc, "email"));
        char lower[KH_FINGERPRINT_MATERIAL_MAX + 1];
        size_t n;
        int r;

        if (!pk || !email || (n = strlen(email)) > KH_FINGERPRINT_MATERIAL_MAX)
                return -KH_E_INTEGRITY;
        for (size_t i = 0; i <= n; i++)
                lower[i] = (char) tolower((unsigned char) email[i]);
        kh_buf_init(&spki, 1024, false);
        r = kh_auth_request_spki_decode(pk, strlen(pk), &spki);
        if (r < 0)
                return -KH_E_INTEGRITY;
        return kh_fingerprint_phrase(lower, spki.data, spki.len, out);
}

int kh_approvals_list(struct kh_service *svc, const struct kh_tenant *t, json_t **ret) {
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        KH_CLEANUP(json_decrefp) json_t *out = json_array();
        int64_t now = kh_mdata_now();
        json_t *doc;
        size_t i;
        int r;

        if (!out)
                return -ENOMEM;
        r = kh_ar_scan(svc, t, NULL, &all);
        if (r < 0)
                return r;
        json_array_foreach(all, i, doc) {
                char phrase[KH_FINGERPRINT_MAX];
                json_t *item;

                if (json_integer_value(json_object_get(doc, "type")) != KH_AUTH_REQUEST_ADMIN_APPROVAL ||
                    strcmp(kh_ar_status(t->config, doc, now), "pending") != 0)
                        continue;
                if (fingerprint_of(doc, phrase) < 0)
                        continue;        /* not a request keyhold made: never shown */
                item = kh_ar_public(t->config, doc, now);
                if (!item || json_object_set_new(item, "fingerprint", json_string(phrase)) < 0 ||
                    json_object_set_new(item, "needed",
                                        json_integer(t->config->approval_quorum)) < 0 ||
                    json_array_append_new(out, item) < 0)
                        return -ENOMEM;
        }
        *ret = KH_TAKE_PTR(out);
        return 0;
}

static bool approved_by(const json_t *approvals, const char *approver) {
        const json_t *a;
        size_t i;

        json_array_foreach(approvals, i, a) {
                const char *by = json_string_value(json_object_get(a, "by"));
                if (by && strcmp(by, approver) == 0)
                        return true;
        }
        return false;
}

/* The member's enrolment and the request's public key, for kh_approval_make_key(). */
static int needs_key(struct kh_service *svc, const struct kh_tenant *t, const json_t *doc,
                     struct kh_approval_result *ret) {
        const char *user = json_string_value(json_object_get(doc, "userId"));
        const char *pk = json_string_value(json_object_get(doc, "publicKey"));
        const char *rpk;
        struct kh_mdata e;
        int r;

        r = kh_mdata_get(svc, t, KH_RECORD_RECOVERY, user, &e);
        if (r == -ENOENT)
                return -KH_E_NOT_ENROLLED;
        if (r < 0)
                return r;
        rpk = json_string_value(json_object_get(e.doc, "resetPasswordKey"));
        if (!rpk || !kh_auth_request_key_is_valid(rpk, strlen(rpk), true)) {
                kh_mdata_clear(&e);
                return -KH_E_NOT_ENROLLED;
        }
        ret->md = rpk[0] == '4' ? KH_OAEP_SHA1 : KH_OAEP_SHA256;
        kh_buf_init(&ret->enrolment, 1024, false);
        kh_buf_init(&ret->spki, 1024, false);
        r = kh_base64_decode(rpk + 2, strlen(rpk + 2), &ret->enrolment);
        kh_mdata_clear(&e);
        if (r < 0)
                return -KH_E_NOT_ENROLLED;
        r = kh_auth_request_spki_decode(pk, pk ? strlen(pk) : 0, &ret->spki);
        if (r < 0)
                return -KH_E_INTEGRITY;
        ret->outcome = KH_APPROVAL_NEEDS_KEY;
        return 0;
}

/* One attempt: -ESTALE when the request changed between the read and the write. */
static int answer_once(struct kh_service *svc, const struct kh_tenant *t, const char *approver,
                       const char *id, bool approve, const char *key,
                       struct kh_approval_result *ret) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        int64_t now = kh_mdata_now();
        unsigned quorum = t->config->approval_quorum ? t->config->approval_quorum : 1;
        const json_t *approvals;
        const char *status;
        struct kh_mdata m;
        size_t n;
        int r;

        r = kh_ar_read(svc, t, id, &m);
        if (r < 0)
                return r;
        status = kh_ar_status(t->config, m.doc, now);
        if (json_integer_value(json_object_get(m.doc, "type")) != KH_AUTH_REQUEST_ADMIN_APPROVAL ||
            strcmp(status, "expired") == 0) {
                r = -KH_E_AUTH_REQUEST_NOT_FOUND;
                goto out;
        }
        if (strcmp(status, "pending") != 0) {
                r = -KH_E_REQUEST_ANSWERED;
                goto out;
        }
        approvals = json_object_get(m.doc, "approvals");
        n = json_array_size(approvals);
        doc = json_deep_copy(m.doc);
        if (!doc) {
                r = -ENOMEM;
                goto out;
        }
        if (!json_is_array(json_object_get(doc, "approvals")) &&
            json_object_set_new(doc, "approvals", json_array()) < 0) {
                r = -ENOMEM;
                goto out;
        }
        if (!approve) {
                /* a deny by any approver ends it */
                if (json_object_set_new(doc, "approved", json_false()) < 0 ||
                    json_object_set_new(doc, "responseDate", json_integer(now)) < 0 ||
                    json_object_set_new(doc, "deniedBy", json_string(approver)) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                *ret = (struct kh_approval_result) { .outcome = KH_APPROVAL_DONE, .status = "denied" };
        } else {
                if (approved_by(approvals, approver)) {
                        r = -KH_E_SAME_APPROVER;
                        goto out;
                }
                if (n + 1 >= quorum && !key) {
                        r = needs_key(svc, t, m.doc, ret);
                        goto out;        /* nothing written: the caller comes back with it */
                }
                if (n + 1 >= quorum && !kh_auth_request_key_is_valid(key, strlen(key), false)) {
                        r = -KH_E_INVALID_ENCSTRING;
                        goto out;
                }
                if (json_array_append_new(json_object_get(doc, "approvals"),
                                          json_pack("{ss sI}", "by", approver, "at",
                                                    (json_int_t) now)) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                if (n + 1 < quorum) {
                        *ret = (struct kh_approval_result) {
                                .outcome = KH_APPROVAL_RECORDED,
                                .approvals = (unsigned) (n + 1), .needed = quorum,
                        };
                } else {
                        if (json_object_set_new(doc, "approved", json_true()) < 0 ||
                            json_object_set_new(doc, "responseDate", json_integer(now)) < 0 ||
                            json_object_set_new(doc, "key", json_string(key)) < 0) {
                                r = -ENOMEM;
                                goto out;
                        }
                        *ret = (struct kh_approval_result) { .outcome = KH_APPROVAL_DONE,
                                                             .status = "approved" };
                }
        }
        r = kh_mdata_replace(svc, t, KH_RECORD_AUTH_REQUEST, id, &m, doc);
out:
        kh_mdata_clear(&m);
        return r;
}

int kh_approvals_answer(struct kh_service *svc, const struct kh_tenant *t, const char *approver,
                        const char *id, bool approve, const char *key,
                        struct kh_approval_result *ret) {
        int r = -ESTALE;

        *ret = (struct kh_approval_result) { .outcome = KH_APPROVAL_DONE };
        if (!approver || !approver[0])
                return -KH_E_NOT_APPROVER;
        /* another approver's write in between: read again and decide on what it left (an
         * answer, or an approval that makes this one the releasing one) */
        for (unsigned i = 0; i < ANSWER_TRIES && r == -ESTALE; i++) {
                kh_approval_result_clear(ret);
                *ret = (struct kh_approval_result) { .outcome = KH_APPROVAL_DONE };
                r = answer_once(svc, t, approver, id, approve, key, ret);
        }
        if (r < 0)
                kh_approval_result_clear(ret);
        return r == -ESTALE ? -KH_E_REQUEST_ANSWERED : r;
}

int kh_approval_make_key(struct kh_app *app, const struct kh_tenant *t,
                         const struct kh_approval_result *need, struct kh_buf *out) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *user_key = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf ct = { 0 };
        int r;

        if (need->outcome != KH_APPROVAL_NEEDS_KEY)
                return -EINVAL;
        r = kh_recovery_decrypt(app, t, need->md, need->enrolment.data, need->enrolment.len,
                                &user_key);
        /* no recovery key (nobody could enrol), or an enrolment made to another key or of
         * something else than a user key: the member's doing, not a server fault */
        if (r == -ENOENT || r == -KH_E_INTEGRITY)
                return -KH_E_NOT_ENROLLED;
        if (r < 0)
                return r;
        if (kh_secret_len(user_key) != USER_KEY_LEN)
                return -KH_E_NOT_ENROLLED;
        kh_buf_init(&ct, 1024, false);
        r = kh_rsa_oaep_encrypt_spki(need->spki.data, need->spki.len, KH_OAEP_SHA1, user_key, &ct);
        if (r == -EINVAL)
                return -KH_E_INVALID_PUBLIC_KEY;
        if (r < 0)
                return r;
        r = kh_buf_append(out, "4.", 2);
        if (r >= 0)
                r = kh_base64_encode(ct.data, ct.len, out);
        if (r >= 0)
                r = kh_buf_append(out, "", 1);
        return r;
}
