#include "service/devices.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/cleanup.h"
#include "common/errors.h"
#include "common/parse.h"
#include "crypto/encoding.h"
#include "crypto/hash.h"
#include "crypto/random.h"
#include "service/member-data.h"
#include "store/store.h"

/* "<user>/<identifier>": the owner of a device record. */
#define OWNER_MAX (36 + 1 + KH_DEVICE_IDENTIFIER_MAX + 1)

static const char *const trust_fields[] = {
        "encryptedUserKey", "encryptedPublicKey", "encryptedPrivateKey",
};

bool kh_device_identifier_is_valid(const char *s, size_t len) {
        if (len == 0 || len > KH_DEVICE_IDENTIFIER_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

static int device_owner(const char *user, const char *identifier, char out[static OWNER_MAX]) {
        if (!kh_device_identifier_is_valid(identifier, strlen(identifier)))
                return -KH_E_DEVICE_NOT_FOUND;
        int n = snprintf(out, OWNER_MAX, "%s/%s", user, identifier);
        return n < 0 || n >= OWNER_MAX ? -EINVAL : 0;
}

static int user_prefix(const char *user, char out[static OWNER_MAX]) {
        int n = snprintf(out, OWNER_MAX, "%s/", user);
        return n < 0 || n >= OWNER_MAX ? -EINVAL : 0;
}

static bool streq_opt(const char *a, const char *b) {
        return a && strcmp(a, b) == 0;
}

static bool is_trusted(const json_t *doc) {
        for (size_t i = 0; i < KH_ELEMENTSOF(trust_fields); i++) {
                const json_t *v = json_object_get(doc, trust_fields[i]);
                if (!json_is_string(v) || json_string_length(v) == 0)
                        return false;
        }
        return true;
}

static int set_str(json_t *doc, const char *key, const char *value) {
        return json_object_set_new(doc, key, value ? json_string(value) : json_null()) < 0
                       ? -ENOMEM
                       : 0;
}

static int set_int(json_t *doc, const char *key, json_int_t value) {
        return json_object_set_new(doc, key, json_integer(value)) < 0 ? -ENOMEM : 0;
}

static int clear_trust(json_t *doc) {
        for (size_t i = 0; i < KH_ELEMENTSOF(trust_fields); i++)
                if (set_str(doc, trust_fields[i], NULL) < 0)
                        return -ENOMEM;
        return 0;
}

/* ---- listing ---- */

struct collect {
        json_t *array;
        const char *id;                    /* only this id (kh_devices_get by id), or NULL */
        size_t n;                          /* records seen */
};

static int collect_fn(const char *owner, const struct kh_mdata *m, void *userdata) {
        struct collect *c = userdata;
        const char *id = json_string_value(json_object_get(m->doc, "id"));

        (void) owner;
        c->n++;
        if (c->id && (!id || strcmp(id, c->id) != 0))
                return 0;
        return json_array_append(c->array, m->doc) < 0 ? -ENOMEM : 0;
}

static int list(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                const char *id, json_t **ret, size_t *ret_n) {
        char prefix[OWNER_MAX];
        struct collect c = { .array = json_array(), .id = id };
        int r;

        if (!c.array)
                return -ENOMEM;
        r = user_prefix(user, prefix);
        if (r >= 0)
                r = kh_mdata_list(svc, t, KH_RECORD_DEVICE, prefix, collect_fn, &c, NULL);
        if (r < 0) {
                json_decref(c.array);
                return r;
        }
        *ret = c.array;
        if (ret_n)
                *ret_n = c.n;
        return 0;
}

int kh_devices_list(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                    json_t **ret) {
        return list(svc, t, user, NULL, ret, NULL);
}

int kh_devices_get(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                   const char *key, bool by_id, json_t **ret) {
        struct kh_mdata m;
        char owner[OWNER_MAX];
        json_t *found;
        int r;

        if (by_id) {
                r = list(svc, t, user, key, &found, NULL);
                if (r < 0)
                        return r;
                if (json_array_size(found) != 1) {
                        json_decref(found);
                        return -KH_E_DEVICE_NOT_FOUND;
                }
                *ret = json_incref(json_array_get(found, 0));
                json_decref(found);
                return 0;
        }
        r = device_owner(user, key, owner);
        if (r < 0)
                return r;
        r = kh_mdata_get(svc, t, KH_RECORD_DEVICE, owner, &m);
        if (r == -ENOENT)
                return -KH_E_DEVICE_NOT_FOUND;
        if (r < 0)
                return r;
        *ret = json_incref(m.doc);
        kh_mdata_clear(&m);
        return 0;
}

/* ---- writes ---- */

/* ---- the anonymous routes' lookup ----
 * The anonymous routes name a member by e-mail and device identifier. An index record per
 * (e-mail, identifier) names the member, so that a lookup is one read however many devices
 * the tenant has. Its owner is a hash (the e-mail is not written in clear); a lookup checks
 * the device record it leads to, so that an entry left behind by an e-mail change leads
 * nowhere. */

#define INDEX_OWNER_LEN (1 + 2 * KH_SHA256_LEN)

static void index_owner(const char *email, const char *identifier,
                        char out[static INDEX_OWNER_LEN + 1]) {
        static const char label[] = "keyhold-device-index:1";
        uint8_t digest[KH_SHA256_LEN];
        char buf[sizeof(label) + 256 + 1 + KH_DEVICE_IDENTIFIER_MAX + 1];
        size_t n = 0, el = strlen(email), il = strlen(identifier);

        memcpy(buf, label, sizeof(label));          /* with its NUL */
        n = sizeof(label);
        el = el > 255 ? 255 : el;
        for (size_t i = 0; i < el; i++)
                buf[n++] = (char) tolower((unsigned char) email[i]);
        buf[n++] = '\0';
        memcpy(buf + n, identifier, il);
        n += il;
        kh_sha256(buf, n, digest);
        out[0] = 'x';
        kh_hex_encode(digest, sizeof(digest), out + 1);
        out[INDEX_OWNER_LEN] = '\0';
}

/* Points the index of (email, identifier) at user. */
static int index_put(struct kh_service *svc, const struct kh_tenant *t, const char *email,
                     const char *identifier, const char *user) {
        KH_CLEANUP(json_decrefp) json_t *doc = json_pack("{ss}", "user", user);
        char owner[INDEX_OWNER_LEN + 1];

        if (!doc)
                return -ENOMEM;
        index_owner(email, identifier, owner);
        return kh_mdata_put(svc, t, KH_RECORD_DEVICE_INDEX, owner, doc);
}

/* Removes the index entry of a stored device document, if it has an e-mail. */
static int index_delete(struct kh_service *svc, const struct kh_tenant *t, const json_t *doc) {
        const char *email = json_string_value(json_object_get(doc, "email"));
        const char *identifier = json_string_value(json_object_get(doc, "identifier"));
        char owner[INDEX_OWNER_LEN + 1];
        int r;

        if (!email || !identifier)
                return 0;
        index_owner(email, identifier, owner);
        r = kh_mdata_delete(svc, t, KH_RECORD_DEVICE_INDEX, owner);
        return r < 0 ? r : 0;
}

struct registration {
        const char *name, *email;
        int type;
};

static int register_fn(json_t *doc, void *userdata) {
        const struct registration *g = userdata;

        if (set_str(doc, "name", g->name) < 0 || set_int(doc, "type", g->type) < 0 ||
            (g->email && set_str(doc, "email", g->email) < 0))
                return -ENOMEM;
        return 0;
}

static int edit(struct kh_service *svc, const struct kh_tenant *t, const char *owner,
                int (*change)(json_t *doc, void *userdata), void *userdata, json_t **ret);

int kh_devices_register(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                        const char *identifier, const char *name, int type, const char *email,
                        json_t **ret) {
        struct registration g = { .name = name, .email = email, .type = type };
        char owner[OWNER_MAX], id[37];
        int64_t now = kh_mdata_now();
        int r;

        r = device_owner(user, identifier, owner);
        if (r < 0)
                return r == -KH_E_DEVICE_NOT_FOUND ? -KH_E_BAD_REQUEST : r;
        for (int attempt = 0; attempt < 3; attempt++) {
                KH_CLEANUP(json_decrefp) json_t *doc = NULL;
                json_t *all;
                size_t n = 0;

                /* registered before: name and type change (a compare-and-set, so that trust
                 * values set meanwhile stay) */
                r = edit(svc, t, owner, register_fn, &g, ret);
                if (r >= 0 && email)
                        r = index_put(svc, t, email, identifier, user);
                if (r != -KH_E_DEVICE_NOT_FOUND)
                        return r;
                r = list(svc, t, user, "", &all, &n);
                if (r < 0)
                        return r;
                json_decref(all);
                if (n >= KH_DEVICES_PER_MEMBER_MAX)
                        return -KH_E_TOO_MANY_DEVICES;
                r = kh_random_guid(id);
                if (r < 0)
                        return r;
                doc = json_object();
                if (!doc || set_str(doc, "id", id) < 0 || set_str(doc, "identifier", identifier) < 0 ||
                    set_int(doc, "creationDate", now) < 0 || set_int(doc, "lastActivityDate", now) < 0 ||
                    clear_trust(doc) < 0 || register_fn(doc, &g) < 0)
                        return -ENOMEM;
                /* two first registrations at once: one inserts, the other updates that one */
                r = kh_mdata_insert(svc, t, KH_RECORD_DEVICE, owner, doc);
                if (r == -EEXIST)
                        continue;
                if (r >= 0 && email)
                        r = index_put(svc, t, email, identifier, user);
                if (r < 0)
                        return r;
                *ret = KH_TAKE_PTR(doc);
                return 0;
        }
        return -EBUSY;
}

/* Reads the member's device @identifier, lets @change edit it, and writes it back unless it
 * changed meanwhile (then once more). */
static int edit(struct kh_service *svc, const struct kh_tenant *t, const char *owner,
                int (*change)(json_t *doc, void *userdata), void *userdata, json_t **ret) {
        for (int attempt = 0;; attempt++) {
                struct kh_mdata m;
                KH_CLEANUP(json_decrefp) json_t *doc = NULL;
                int r = kh_mdata_get(svc, t, KH_RECORD_DEVICE, owner, &m);

                if (r == -ENOENT)
                        return -KH_E_DEVICE_NOT_FOUND;
                if (r < 0)
                        return r;
                doc = json_deep_copy(m.doc);
                r = doc ? change(doc, userdata) : -ENOMEM;
                if (r >= 0)
                        r = set_int(doc, "lastActivityDate", kh_mdata_now());
                if (r >= 0)
                        r = kh_mdata_replace(svc, t, KH_RECORD_DEVICE, owner, &m, doc);
                kh_mdata_clear(&m);
                if (r == -ESTALE && attempt < 3)
                        continue;
                if (r == -ESTALE)
                        r = -EBUSY;
                if (r < 0)
                        return r;
                if (ret)
                        *ret = KH_TAKE_PTR(doc);
                return 0;
        }
}

static int set_keys_fn(json_t *doc, void *userdata) {
        const struct kh_device_keys *k = userdata;

        if (set_str(doc, "encryptedUserKey", k->encrypted_user_key) < 0 ||
            set_str(doc, "encryptedPublicKey", k->encrypted_public_key) < 0)
                return -ENOMEM;
        if (k->encrypted_private_key &&
            set_str(doc, "encryptedPrivateKey", k->encrypted_private_key) < 0)
                return -ENOMEM;
        return 0;
}

int kh_devices_set_keys(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                        const char *identifier, const struct kh_device_keys *keys, json_t **ret) {
        char owner[OWNER_MAX];
        int r = device_owner(user, identifier, owner);

        if (r < 0)
                return r;
        return edit(svc, t, owner, set_keys_fn, (void *) (uintptr_t) keys, ret);
}

static int clear_fn(json_t *doc, void *userdata) {
        (void) userdata;
        return clear_trust(doc);
}

/* The owner of the member's device whose id is @id, from the listing @all. */
static int owner_of_id(const json_t *all, const char *user, const char *id,
                       char owner[static OWNER_MAX], const json_t **ret_doc) {
        size_t i;
        const json_t *d;

        json_array_foreach(all, i, d) {
                const char *did = json_string_value(json_object_get(d, "id"));
                const char *ident = json_string_value(json_object_get(d, "identifier"));
                if (did && ident && strcmp(did, id) == 0) {
                        if (ret_doc)
                                *ret_doc = d;
                        return device_owner(user, ident, owner);
                }
        }
        return -KH_E_DEVICE_NOT_FOUND;
}

int kh_devices_update_trust(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                            const char *current, const struct kh_device_keys *current_keys,
                            const struct kh_device_trust_update *others, size_t n,
                            bool untrust_unlisted) {
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        const json_t *cur = NULL, *d;
        char owner[OWNER_MAX];
        size_t i;
        int r;

        r = list(svc, t, user, NULL, &all, NULL);
        if (r < 0)
                return r;
        /* everything checked before anything changes */
        json_array_foreach(all, i, d)
                if (streq_opt(json_string_value(json_object_get(d, "identifier")), current))
                        cur = d;
        if (!cur)
                return -KH_E_DEVICE_NOT_FOUND;
        for (size_t k = 0; k < n; k++) {
                const json_t *od = NULL;

                if (streq_opt(json_string_value(json_object_get(cur, "id")), others[k].device_id))
                        return -KH_E_BAD_REQUEST;   /* the current device among the others */
                r = owner_of_id(all, user, others[k].device_id, owner, &od);
                if (r < 0)
                        return r;
                if (!is_trusted(od))
                        return -KH_E_DEVICE_NOT_TRUSTED;
        }

        r = device_owner(user, current, owner);
        if (r >= 0)
                r = edit(svc, t, owner, set_keys_fn, (void *) (uintptr_t) current_keys, NULL);
        for (size_t k = 0; r >= 0 && k < n; k++) {
                r = owner_of_id(all, user, others[k].device_id, owner, NULL);
                if (r >= 0)
                        r = edit(svc, t, owner, set_keys_fn, (void *) (uintptr_t) &others[k].keys,
                                 NULL);
        }
        if (r < 0 || !untrust_unlisted)
                return r;
        json_array_foreach(all, i, d) {
                const char *did = json_string_value(json_object_get(d, "id"));
                bool named = d == cur;

                for (size_t k = 0; !named && k < n; k++)
                        named = did && strcmp(did, others[k].device_id) == 0;
                if (named || !is_trusted(d))
                        continue;
                r = device_owner(user, json_string_value(json_object_get(d, "identifier")), owner);
                if (r >= 0)
                        r = edit(svc, t, owner, clear_fn, NULL, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kh_devices_untrust(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                       const char *const *ids, size_t n) {
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        char owner[OWNER_MAX];
        int r = list(svc, t, user, NULL, &all, NULL);

        if (r < 0)
                return r;
        for (size_t k = 0; k < n; k++) {
                r = owner_of_id(all, user, ids[k], owner, NULL);
                if (r < 0)
                        return r;
        }
        for (size_t k = 0; k < n; k++) {
                r = owner_of_id(all, user, ids[k], owner, NULL);
                if (r >= 0)
                        r = edit(svc, t, owner, clear_fn, NULL, NULL);
                if (r < 0)
                        return r;
        }
        return 0;
}

int kh_devices_delete(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                      const char *id) {
        KH_CLEANUP(json_decrefp) json_t *all = NULL;
        const json_t *doc = NULL;
        char owner[OWNER_MAX];
        int r = list(svc, t, user, NULL, &all, NULL);

        if (r >= 0)
                r = owner_of_id(all, user, id, owner, &doc);
        if (r >= 0)
                r = index_delete(svc, t, doc);
        if (r >= 0)
                r = kh_mdata_delete(svc, t, KH_RECORD_DEVICE, owner);
        if (r == 0)
                return -KH_E_DEVICE_NOT_FOUND; /* gone meanwhile */
        return r < 0 ? r : 0;
}

int kh_devices_find_member(struct kh_service *svc, const struct kh_tenant *t, const char *email,
                           const char *identifier, char user[static 37]) {
        char owner[INDEX_OWNER_LEN + 1], guid[37];
        const char *stored, *u;
        struct kh_mdata m;
        json_t *dev;
        int r;

        if (!kh_device_identifier_is_valid(identifier, strlen(identifier)) || !email[0])
                return 0;
        index_owner(email, identifier, owner);
        r = kh_mdata_get(svc, t, KH_RECORD_DEVICE_INDEX, owner, &m);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        u = json_string_value(json_object_get(m.doc, "user"));
        r = u && kh_parse_guid(u, strlen(u), guid) == 0 ? 0 : -KH_E_INTEGRITY;
        kh_mdata_clear(&m);
        if (r < 0)
                return r;
        r = kh_devices_get(svc, t, guid, identifier, false, &dev);
        if (r == -KH_E_DEVICE_NOT_FOUND)
                return 0;
        if (r < 0)
                return r;
        stored = json_string_value(json_object_get(dev, "email"));
        r = stored && strcasecmp(stored, email) == 0;
        json_decref(dev);
        if (r)
                memcpy(user, guid, 37);
        return r;
}

/* ---- recovery enrolment and leaving ---- */

int kh_recovery_enrol(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                      const char *reset_password_key) {
        KH_CLEANUP(json_decrefp) json_t *doc = NULL;
        int r;

        if (!reset_password_key) {
                r = kh_mdata_delete(svc, t, KH_RECORD_RECOVERY, user);
                return r < 0 ? r : 0;
        }
        doc = json_object();
        if (!doc || set_str(doc, "resetPasswordKey", reset_password_key) < 0 ||
            set_int(doc, "enrolledAt", kh_mdata_now()) < 0)
                return -ENOMEM;
        return kh_mdata_put(svc, t, KH_RECORD_RECOVERY, user, doc);
}

struct requests_of {
        const char *user;
        char (*ids)[37];
        size_t n, cap;
};

static int requests_fn(const char *owner, const struct kh_mdata *m, void *userdata) {
        struct requests_of *q = userdata;
        const char *uid = json_string_value(json_object_get(m->doc, "userId"));

        if (!uid || strcmp(uid, q->user) != 0 || strlen(owner) != 36)
                return 0;
        if (q->n == q->cap) {
                size_t cap = q->cap ? q->cap * 2 : 8;
                void *v = realloc(q->ids, cap * sizeof(*q->ids));
                if (!v)
                        return -ENOMEM;
                q->ids = v;
                q->cap = cap;
        }
        memcpy(q->ids[q->n++], owner, 37);
        return 0;
}

int kh_member_remove(struct kh_service *svc, const struct kh_tenant *t, const char *user,
                     struct kh_member_removed *ret) {
        KH_CLEANUP(json_decrefp) json_t *devices = NULL;
        struct requests_of q = { .user = user };
        char prefix[OWNER_MAX];
        int r;

        *ret = (struct kh_member_removed) { 0 };
        r = user_prefix(user, prefix);
        if (r < 0)
                return r;
        /* the requests first: finding them needs them to open; a request that does not open
         * any more (under a revoked version) stays until it expires, harmless without the
         * member's devices and key */
        r = kh_mdata_list(svc, t, KH_RECORD_AUTH_REQUEST, "", requests_fn, &q, NULL);
        for (size_t i = 0; r >= 0 && i < q.n; i++) {
                r = kh_mdata_delete(svc, t, KH_RECORD_AUTH_REQUEST, q.ids[i]);
                if (r > 0)
                        ret->requests++;
        }
        free(q.ids);
        if (r < 0)
                return r;
        r = kh_mdata_delete(svc, t, KH_RECORD_USER_KEY, user);
        if (r < 0)
                return r;
        ret->keys = (unsigned) r;
        r = list(svc, t, user, NULL, &devices, NULL);
        for (size_t i = 0; r >= 0 && i < json_array_size(devices); i++)
                r = index_delete(svc, t, json_array_get(devices, i));
        if (r >= 0)
                r = kh_mdata_delete_prefix(svc, t, KH_RECORD_DEVICE, prefix);
        if (r < 0)
                return r;
        ret->devices = (unsigned) r;
        r = kh_mdata_delete(svc, t, KH_RECORD_RECOVERY, user);
        if (r < 0)
                return r;
        ret->enrolments = (unsigned) r;
        return 0;
}
