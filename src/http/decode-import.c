/* POST /admin/import/user-keys (decode.h). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/limits.h"
#include "crypto/encoding.h"
#include "http/decode.h"

void kh_req_import_free(struct kh_req_import *imp) {
        for (size_t i = 0; i < imp->n; i++)
                imp->entries[i].key = kh_secret_free(imp->entries[i].key);
        free(imp->entries);
        *imp = (struct kh_req_import) { 0 };
}

static int optional_bool(const json_t *root, const char *name, bool *ret) {
        const json_t *v = json_object_get(root, name);

        *ret = false;
        if (!v)
                return 0;
        if (!json_is_boolean(v))
                return -KH_E_INVALID_IMPORT;
        *ret = json_is_true(v);
        return 0;
}

static void wipe(json_t *s) {
        OPENSSL_cleanse((char *) (uintptr_t) json_string_value(s), json_string_length(s));
}

/* One {"user", "key"}: exactly these two members. */
static int entry(json_t *e, struct kh_import_entry *ret) {
        json_t *user = json_object_get(e, "user"), *key = json_object_get(e, "key");
        int r;

        if (!json_is_object(e) || json_object_size(e) != 2 || !json_is_string(user) ||
            !json_is_string(key))
                return -KH_E_INVALID_IMPORT;
        if (kh_parse_guid(json_string_value(user), json_string_length(user), ret->user) < 0)
                return -KH_E_INVALID_IMPORT;
        r = kh_base64_decode_secret(json_string_value(key), json_string_length(key),
                                    KH_USER_KEY_LEN, &ret->key);
        wipe(key);
        return r == -EINVAL ? -KH_E_INVALID_KEY : r;
}

static int by_user(const void *a, const void *b) {
        return strcmp((*(const struct kh_import_entry *const *) a)->user,
                      (*(const struct kh_import_entry *const *) b)->user);
}

/* One answer per member: a user named twice would make the batch's outcome depend on the
 * order of its writes. Sorted, so a full batch costs n log n comparisons, not n². */
static int distinct(struct kh_import_entry *entries, size_t n) {
        const struct kh_import_entry *sorted[KH_IMPORT_BATCH_MAX];

        for (size_t i = 0; i < n; i++)
                sorted[i] = &entries[i];
        qsort(sorted, n, sizeof(sorted[0]), by_user);
        for (size_t i = 1; i < n; i++)
                if (strcmp(sorted[i - 1]->user, sorted[i]->user) == 0)
                        return -KH_E_INVALID_IMPORT;
        return 0;
}

int kh_req_import_parse(const char *body, size_t len, struct kh_req_import *ret) {
        json_auto_t *root = NULL;
        json_t *keys, *e;
        const char *name;
        json_t *v;
        size_t i;
        int r;

        *ret = (struct kh_req_import) { 0 };
        if (len > KH_REQ_IMPORT_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        if (!body || len == 0)
                return -KH_E_INVALID_IMPORT;
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root))
                return -KH_E_INVALID_IMPORT;
        json_object_foreach(root, name, v)
                if (strcmp(name, "keys") != 0 && strcmp(name, "overwrite") != 0 &&
                    strcmp(name, "verify") != 0)
                        return -KH_E_INVALID_IMPORT;
        keys = json_object_get(root, "keys");
        if (!json_is_array(keys) || json_array_size(keys) == 0 ||
            json_array_size(keys) > KH_IMPORT_BATCH_MAX)
                return -KH_E_INVALID_IMPORT;
        r = optional_bool(root, "overwrite", &ret->overwrite);
        if (r >= 0)
                r = optional_bool(root, "verify", &ret->verify);
        if (r < 0)
                return r;

        ret->entries = calloc(json_array_size(keys), sizeof(*ret->entries));
        if (!ret->entries)
                return -ENOMEM;
        json_array_foreach(keys, i, e) {
                r = entry(e, &ret->entries[i]);
                if (r < 0)
                        break;
                ret->n = i + 1;
        }
        if (r >= 0)
                r = distinct(ret->entries, ret->n);
        /* the keys' text, wiped whether or not the body was taken */
        json_array_foreach(keys, i, e)
                if (json_is_object(e) && json_is_string(json_object_get(e, "key")))
                        wipe(json_object_get(e, "key"));
        if (r < 0)
                kh_req_import_free(ret);
        return r;
}
