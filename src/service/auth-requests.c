/* Login requests, member side (auth-requests.h). The admin side is approvals.c; what both
 * need is auth-requests-internal.h. */
#include "service/auth-requests.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "common/parse.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"
#include "service/auth-requests-internal.h"
#include "service/devices.h"
#include "service/member-data.h"

#define RSA2048_BYTES 256
#define SPKI_B64_MAX 1024

/* ---- pure helpers ---- */

bool kh_auth_request_key_is_valid(const char *s, size_t len, bool allow_type3) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf ct = { 0 };
        bool ok;

        if (!s || len < 3 || s[1] != '.' || (s[0] != '4' && !(allow_type3 && s[0] == '3')))
                return false;
        if (len - 2 > 2 * RSA2048_BYTES)
                return false;
        kh_buf_init(&ct, 2 * RSA2048_BYTES, false);
        ok = kh_base64_decode(s + 2, len - 2, &ct) == 0 && ct.len == RSA2048_BYTES;
        return ok;
}

int kh_auth_request_spki_decode(const char *b64, size_t len, struct kh_buf *spki) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;

        if (!b64 || len == 0 || len > SPKI_B64_MAX)
                return -KH_E_INVALID_PUBLIC_KEY;
        kh_buf_reset(spki);
        if (kh_base64_decode(b64, len, spki) < 0 ||
            kh_rsa_spki_parse(spki->data, spki->len, 2048, &pub) < 0)
                return -KH_E_INVALID_PUBLIC_KEY;
        return 0;
}

/* ---- what both sides share ---- */

bool kh_ar_id_is_valid(const char *id) {
        char canon[KH_GUID_BUF];

        return id && kh_parse_guid(id, strlen(id), canon) == 0 && strcmp(canon, id) == 0;
}

static int64_t int_of(const json_t *doc, const char *name) {
        const json_t *v = json_object_get(doc, name);
        return json_is_integer(v) ? (int64_t) json_integer_value(v) : 0;
}

int64_t kh_ar_expiry(const struct kh_config_tenant *c, const json_t *doc) {
        const json_t *approved = json_object_get(doc, "approved");

        if (int_of(doc, "type") != KH_AUTH_REQUEST_ADMIN_APPROVAL)
                return int_of(doc, "creationDate") + c->auth_request_lifetime_s;
        if (json_is_true(approved))
                return int_of(doc, "responseDate") + c->approved_request_lifetime_s;
        return int_of(doc, "creationDate") + c->admin_request_lifetime_s;
}

const char *kh_ar_status(const struct kh_config_tenant *c, const json_t *doc, int64_t now) {
        const json_t *approved = json_object_get(doc, "approved");

        if (now >= kh_ar_expiry(c, doc))
                return "expired";
        if (json_is_true(approved))
                return "approved";
        if (json_is_false(approved))
                return "denied";
        return "pending";
}

json_t *kh_ar_public(const struct kh_config_tenant *c, const json_t *doc, int64_t now) {
        json_t *out = json_deep_copy(doc);

        if (!out)
                return NULL;
        (void) json_object_del(out, "accessCodeHash");
        (void) json_object_del(out, "createdMs");
        (void) json_object_del(out, "createdUs");
        if (json_object_set_new(out, "status", json_string(kh_ar_status(c, doc, now))) < 0) {
                json_decref(out);
                return NULL;
        }
        return out;
}

/* A request's creation in microseconds: "createdUs", or "createdMs" in a request stored by
 * an older keyholdd (two creations within one millisecond then tie, ordered by id). */
static int64_t created_of(const json_t *doc) {
        return json_object_get(doc, "createdUs") ? int_of(doc, "createdUs")
                                                 : int_of(doc, "createdMs") * 1000;
}

static int cmp_created(const void *a, const void *b) {
        const json_t *x = *(json_t *const *) a, *y = *(json_t *const *) b;
        int64_t dx = created_of(x), dy = created_of(y);

        if (dx != dy)
                return dx < dy ? -1 : 1;
        return strcmp(json_string_value(json_object_get(x, "id")),
                      json_string_value(json_object_get(y, "id")));
}

/* What a scan keeps and what it prunes. */
struct scan {
        const struct kh_config_tenant *cfg;
        const char *user;        /* NULL: every member's */
        int64_t now;
        json_t *live;            /* unexpired documents (of user), in any order */
        char (*expired)[KH_GUID_BUF];
        size_t n_expired, cap_expired;
};

static int scan_fn(const char *owner, const struct kh_mdata *m, void *userdata) {
        struct scan *s = userdata;
        const char *uid = json_string_value(json_object_get(m->doc, "userId"));
        const char *id = json_string_value(json_object_get(m->doc, "id"));

        if (!uid || !id || strcmp(id, owner) != 0)
                return 0;        /* not one of ours: left alone */
        if (s->now >= kh_ar_expiry(s->cfg, m->doc)) {
                if (s->n_expired == s->cap_expired) {
                        size_t cap = s->cap_expired ? s->cap_expired * 2 : 8;
                        void *v = realloc(s->expired, cap * sizeof(*s->expired));
                        if (!v)
                                return -ENOMEM;
                        s->expired = v;
                        s->cap_expired = cap;
                }
                (void) snprintf(s->expired[s->n_expired++], KH_GUID_BUF, "%s", owner);
                return 0;
        }
        if (s->user && strcmp(uid, s->user) != 0)
                return 0;
        return json_array_append(s->live, m->doc) < 0 ? -ENOMEM : 0;
}

int kh_ar_scan(struct kh_service *svc, const struct kh_tenant *t, const char *user,
               json_t **ret) {
        struct scan s = { .cfg = t->config, .user = user, .now = kh_mdata_now(),
                          .live = json_array() };
        json_t **v = NULL;
        size_t n;
        int r;

        if (!s.live)
                return -ENOMEM;
        r = kh_mdata_list(svc, t, KH_RECORD_AUTH_REQUEST, "", scan_fn, &s, NULL);
        /* pruned when met: an expired request is of no use to anyone any more */
        for (size_t i = 0; r >= 0 && i < s.n_expired; i++) {
                int d = kh_mdata_delete(svc, t, KH_RECORD_AUTH_REQUEST, s.expired[i]);
                if (d < 0)
                        r = d;
        }
        free(s.expired);
        n = json_array_size(s.live);
        if (r >= 0 && n > 1) {
                v = calloc(n, sizeof(*v));
                if (!v)
                        r = -ENOMEM;
                for (size_t i = 0; v && i < n; i++)
                        v[i] = json_incref(json_array_get(s.live, i));
                if (v) {
                        qsort(v, n, sizeof(*v), cmp_created);
                        (void) json_array_clear(s.live);
                        for (size_t i = 0; i < n; i++)
                                if (json_array_append_new(s.live, v[i]) < 0)
                                        r = -ENOMEM;
                        free(v);
                }
        }
        if (r < 0) {
                json_decref(s.live);
                return r;
        }
        *ret = s.live;
        return 0;
}

int kh_ar_read(struct kh_service *svc, const struct kh_tenant *t, const char *id,
               struct kh_mdata *ret) {
        int r;

        if (!kh_ar_id_is_valid(id))
                return -KH_E_AUTH_REQUEST_NOT_FOUND;
        r = kh_mdata_get(svc, t, KH_RECORD_AUTH_REQUEST, id, ret);
        if (r == -ENOENT)
                return -KH_E_AUTH_REQUEST_NOT_FOUND;
        if (r < 0)
                return r;
        if (!json_is_string(json_object_get(ret->doc, "userId"))) {
                kh_mdata_clear(ret);
                return -KH_E_AUTH_REQUEST_NOT_FOUND;
        }
        return 0;
}

/* ---- create ---- */

static bool email_is_valid(const char *s) {
        size_t n = s ? strnlen(s, KH_AUTH_REQUEST_EMAIL_MAX + 1) : 0;

        if (n == 0 || n > KH_AUTH_REQUEST_EMAIL_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if ((unsigned char) s[i] < 0x20 || s[i] == 0x7f)
                        return false;
        return strchr(s, '@') != NULL;
}

/* The member the request is for, into user[37]. */
static int find_member(struct kh_service *svc, const struct kh_tenant *t, const char *token_user,
                       const struct kh_auth_request_new *in, char user[static KH_GUID_BUF]) {
        KH_CLEANUP(json_decrefp) json_t *dev = NULL;
        const char *email;
        int r;

        if (!token_user) {
                r = kh_devices_find_member(svc, t, in->email, in->device_identifier, user);
                if (r < 0)
                        return r;
                return r == 1 ? 0 : -KH_E_UNKNOWN_USER_OR_DEVICE;
        }
        r = kh_devices_get(svc, t, token_user, in->device_identifier, false, &dev);
        if (r == -KH_E_DEVICE_NOT_FOUND)
                return -KH_E_UNKNOWN_USER_OR_DEVICE;
        if (r < 0)
                return r;
        /* the token's user must be the e-mail's (as far as keyhold knows the e-mail) */
        email = json_string_value(json_object_get(dev, "email"));
        if (email && strcasecmp(email, in->email) != 0)
                return -KH_E_UNKNOWN_USER_OR_DEVICE;
        (void) snprintf(user, KH_GUID_BUF, "%s", token_user);
        return 0;
}

/* A device keeps at most KH_AUTH_REQUESTS_PER_DEVICE_MAX - 1 older requests: the oldest go. */
static int make_room(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                     const char *identifier) {
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        size_t n = 0, i;
        json_t *doc;
        int r;

        r = kh_ar_scan(svc, t, user, &all);
        if (r < 0)
                return r;
        json_array_foreach(all, i, doc) {
                const char *dev = json_string_value(json_object_get(doc, "requestDeviceIdentifier"));
                if (dev && strcmp(dev, identifier) == 0)
                        n++;
        }
        /* oldest first (kh_ar_scan's order) */
        json_array_foreach(all, i, doc) {
                const char *dev = json_string_value(json_object_get(doc, "requestDeviceIdentifier"));
                if (n < KH_AUTH_REQUESTS_PER_DEVICE_MAX)
                        break;
                if (!dev || strcmp(dev, identifier) != 0)
                        continue;
                r = kh_mdata_delete(svc, t, KH_RECORD_AUTH_REQUEST,
                                    json_string_value(json_object_get(doc, "id")));
                if (r < 0)
                        return r;
                n--;
        }
        return 0;
}

int kh_auth_requests_create(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                            bool admin, const struct kh_auth_request_new *in, json_t **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf spki = { 0 };
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        uint8_t hash[KH_SHA256_LEN];
        char hash_hex[2 * KH_SHA256_LEN + 1], member[KH_GUID_BUF], id[KH_GUID_BUF];
        size_t code_len;
        int64_t now, now_us;
        int r;

        if (admin ? in->type != KH_AUTH_REQUEST_ADMIN_APPROVAL
                  : in->type != KH_AUTH_REQUEST_AUTHENTICATE_AND_UNLOCK &&
                            in->type != KH_AUTH_REQUEST_UNLOCK)
                return -KH_E_INVALID_REQUEST_TYPE;
        if (admin && !user)
                return -KH_E_MISSING_TOKEN;
        code_len = in->access_code ? strnlen(in->access_code, KH_AUTH_REQUEST_ACCESS_CODE_MAX + 1) : 0;
        if (code_len == 0 || code_len > KH_AUTH_REQUEST_ACCESS_CODE_MAX)
                return -KH_E_INVALID_ACCESS_CODE;
        if (!email_is_valid(in->email))
                return -KH_E_UNKNOWN_USER_OR_DEVICE;
        if (!in->device_identifier ||
            !kh_device_identifier_is_valid(in->device_identifier, strlen(in->device_identifier)))
                return -KH_E_UNKNOWN_USER_OR_DEVICE;
        if (in->device_type < 0 || in->device_type > KH_AUTH_REQUEST_DEVICE_TYPE_MAX)
                return -KH_E_DEVICE_HEADERS;
        kh_buf_init(&spki, SPKI_B64_MAX, false);
        r = kh_auth_request_spki_decode(in->public_key, in->public_key ? strlen(in->public_key) : 0,
                                        &spki);
        if (r < 0)
                return r;
        r = find_member(svc, t, user, in, member);
        if (r < 0)
                return r;
        r = make_room(svc, t, member, in->device_identifier);
        if (r < 0)
                return r;

        kh_sha256(in->access_code, code_len, hash);
        kh_hex_encode(hash, sizeof(hash), hash_hex);
        r = kh_random_guid(id);
        if (r < 0)
                return r;
        /* its second and its microseconds from one reading of the clock: read apart, a request
         * made as the second turned sorted before those of the second before (only a
         * device's most recent request may be approved, and the oldest go first) */
        now_us = kh_mdata_now_us();
        now = now_us / 1000000;
        doc = json_pack("{ss ss ss si ss ss si ss ss sI sI sn sn sn sn s[] sb}",
                        "id", id, "userId", member, "email", in->email, "type", in->type,
                        "publicKey", in->public_key, "requestDeviceIdentifier",
                        in->device_identifier, "requestDeviceType", in->device_type,
                        "requestIpAddress", in->ip ? in->ip : "", "accessCodeHash", hash_hex,
                        "creationDate", (json_int_t) now, "createdUs",
                        (json_int_t) now_us, "responseDate", "approved", "key",
                        "responseDeviceId", "approvals", "delivered", 0);
        OPENSSL_cleanse(hash_hex, sizeof(hash_hex));
        if (!doc)
                return -ENOMEM;
        r = kh_mdata_insert(svc, t, KH_RECORD_AUTH_REQUEST, id, doc);
        if (r < 0)
                return r;
        *ret = kh_ar_public(t->config, doc, now);
        return *ret ? 0 : -ENOMEM;
}

/* ---- the member's view ---- */

int kh_auth_requests_get(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                         const char *id, json_t **ret) {
        struct kh_mdata m;
        int r = kh_ar_read(svc, t, id, &m);

        if (r < 0)
                return r;
        if (strcmp(json_string_value(json_object_get(m.doc, "userId")), user) != 0) {
                kh_mdata_clear(&m);
                return -KH_E_AUTH_REQUEST_NOT_FOUND;
        }
        *ret = kh_ar_public(t->config, m.doc, kh_mdata_now());
        kh_mdata_clear(&m);
        return *ret ? 0 : -ENOMEM;
}

/* Whether doc is the most recent pending request of its device among all (sorted). */
static bool most_recent_pending(const struct kh_config_tenant *c, const json_t *all,
                                const json_t *doc, int64_t now) {
        const char *dev = json_string_value(json_object_get(doc, "requestDeviceIdentifier"));
        const json_t *last = NULL, *d;
        size_t i;

        json_array_foreach(all, i, d) {
                const char *other = json_string_value(json_object_get(d, "requestDeviceIdentifier"));
                if (other && dev && strcmp(other, dev) == 0 &&
                    int_of(d, "type") == int_of(doc, "type") &&
                    strcmp(kh_ar_status(c, d, now), "pending") == 0)
                        last = d;
        }
        return last && json_equal(json_object_get(last, "id"), json_object_get(doc, "id"));
}

int kh_auth_requests_list(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                          bool pending_only, json_t **ret) {
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        KH_CLEANUP(json_decrefp) json_t *out = json_array();
        int64_t now = kh_mdata_now();
        json_t *doc;
        size_t i;
        int r;

        if (!out)
                return -ENOMEM;
        r = kh_ar_scan(svc, t, user, &all);
        if (r < 0)
                return r;
        json_array_foreach(all, i, doc) {
                if (pending_only && (int_of(doc, "type") == KH_AUTH_REQUEST_ADMIN_APPROVAL ||
                                     !most_recent_pending(t->config, all, doc, now)))
                        continue;
                if (json_array_append_new(out, kh_ar_public(t->config, doc, now)) < 0)
                        return -ENOMEM;
        }
        *ret = KH_TAKE_PTR(out);
        return 0;
}

int kh_auth_requests_answer(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                            const char *id, bool approve, const char *key,
                            const char *device_identifier, json_t **ret) {
        KH_CLEANUP(json_decrefp) json_t *dev = NULL;
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        int64_t now = kh_mdata_now();
        struct kh_mdata m;
        const char *status;
        int r;

        r = kh_ar_read(svc, t, id, &m);
        if (r < 0)
                return r;
        status = kh_ar_status(t->config, m.doc, now);
        if (strcmp(json_string_value(json_object_get(m.doc, "userId")), user) != 0 ||
            strcmp(status, "expired") == 0) {
                r = -KH_E_AUTH_REQUEST_NOT_FOUND;
                goto out;
        }
        if (strcmp(status, "pending") != 0) {
                r = -KH_E_REQUEST_ANSWERED;
                goto out;
        }
        if (!device_identifier ||
            !kh_device_identifier_is_valid(device_identifier, strlen(device_identifier))) {
                r = -KH_E_INVALID_DEVICE;
                goto out;
        }
        r = kh_devices_get(svc, t, user, device_identifier, false, &dev);
        if (r == -KH_E_DEVICE_NOT_FOUND)
                r = -KH_E_INVALID_DEVICE;
        if (r < 0)
                goto out;
        if (approve) {
                if (!key || !kh_auth_request_key_is_valid(key, strlen(key), false)) {
                        r = -KH_E_INVALID_ENCSTRING;
                        goto out;
                }
                r = kh_ar_scan(svc, t, user, &all);
                if (r < 0)
                        goto out;
                if (!most_recent_pending(t->config, all, m.doc, now)) {
                        r = -KH_E_STALE_REQUEST;
                        goto out;
                }
        }
        doc = json_deep_copy(m.doc);
        if (!doc || json_object_set_new(doc, "approved", json_boolean(approve)) < 0 ||
            json_object_set_new(doc, "responseDate", json_integer(now)) < 0 ||
            json_object_set(doc, "responseDeviceId", json_object_get(dev, "id")) < 0 ||
            (approve && json_object_set_new(doc, "key", json_string(key)) < 0)) {
                r = -ENOMEM;
                goto out;
        }
        /* one answer only: another worker's answer in between makes this one stale */
        r = kh_mdata_replace(svc, t, KH_RECORD_AUTH_REQUEST, id, &m, doc);
        if (r == -ESTALE)
                r = -KH_E_REQUEST_ANSWERED;
        if (r < 0)
                goto out;
        *ret = kh_ar_public(t->config, doc, now);
        r = *ret ? 0 : -ENOMEM;
out:
        kh_mdata_clear(&m);
        return r;
}

int kh_auth_requests_response(struct kh_service *svc, const struct kh_tenant *t, const char *id,
                              const char *code, size_t code_len, json_t **ret) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        uint8_t hash[KH_SHA256_LEN];
        char hash_hex[2 * KH_SHA256_LEN + 1];
        int64_t now = kh_mdata_now();
        const char *stored, *status;
        struct kh_mdata m;
        bool match;
        int r;

        if (!code || code_len == 0 || code_len > KH_AUTH_REQUEST_ACCESS_CODE_MAX)
                return -KH_E_AUTH_REQUEST_NOT_FOUND;
        r = kh_ar_read(svc, t, id, &m);
        if (r < 0)
                return r;
        kh_sha256(code, code_len, hash);
        kh_hex_encode(hash, sizeof(hash), hash_hex);
        stored = json_string_value(json_object_get(m.doc, "accessCodeHash"));
        match = stored && strlen(stored) == 2 * KH_SHA256_LEN &&
                CRYPTO_memcmp(stored, hash_hex, 2 * KH_SHA256_LEN) == 0;
        OPENSSL_cleanse(hash_hex, sizeof(hash_hex));
        status = kh_ar_status(t->config, m.doc, now);
        if (!match || json_is_true(json_object_get(m.doc, "delivered"))) {
                r = -KH_E_AUTH_REQUEST_NOT_FOUND;
                goto out;
        }
        if (strcmp(status, "expired") == 0) {
                r = kh_mdata_delete(svc, t, KH_RECORD_AUTH_REQUEST, id);
                r = r < 0 ? r : -KH_E_AUTH_REQUEST_NOT_FOUND;
                goto out;
        }
        if (strcmp(status, "approved") == 0) {
                /* delivered once: the stored request keeps no key from now on */
                doc = json_deep_copy(m.doc);
                if (!doc || json_object_set_new(doc, "key", json_null()) < 0 ||
                    json_object_set_new(doc, "delivered", json_true()) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
                r = kh_mdata_replace(svc, t, KH_RECORD_AUTH_REQUEST, id, &m, doc);
                if (r == -ESTALE)
                        r = -KH_E_AUTH_REQUEST_NOT_FOUND;   /* another poll took it */
                if (r < 0)
                        goto out;
        }
        *ret = kh_ar_public(t->config, m.doc, now);
        r = *ret ? 0 : -ENOMEM;
out:
        kh_mdata_clear(&m);
        return r;
}
