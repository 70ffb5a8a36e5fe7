#include "http/decode-auth.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"
#include "common/limits.h"

void kh_req_auth_clear(json_t **root) {
        json_decref(*root);
        *root = NULL;
}

/* The member of obj named name in any case: 0 with *ret (NULL when absent), or
 * -KH_E_INVALID_REQUEST_BODY when two members match. */
static int member(json_t *obj, const char *name, json_t **ret) {
        const char *k;
        json_t *v, *found = NULL;

        json_object_foreach(obj, k, v) {
                if (strcasecmp(k, name) != 0)
                        continue;
                if (found)
                        return -KH_E_INVALID_REQUEST_BODY;
                found = v;
        }
        *ret = found;
        return 0;
}

/* A required string member (non-empty, no NUL inside). */
static int string_member(json_t *obj, const char *name, const char **ret) {
        json_t *v;
        int r = member(obj, name, &v);

        if (r < 0)
                return r;
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            strlen(json_string_value(v)) != json_string_length(v))
                return -KH_E_INVALID_REQUEST_BODY;
        *ret = json_string_value(v);
        return 0;
}

/* An optional string member: absent or null gives NULL; else as string_member(). */
static int optional_string_member(json_t *obj, const char *name, const char **ret) {
        json_t *v;
        int r = member(obj, name, &v);

        if (r < 0)
                return r;
        if (!v || json_is_null(v)) {
                *ret = NULL;
                return 0;
        }
        return string_member(obj, name, ret);
}

static int bool_member(json_t *obj, const char *name, bool *ret) {
        json_t *v;
        int r = member(obj, name, &v);

        if (r < 0)
                return r;
        if (!json_is_boolean(v))
                return -KH_E_INVALID_REQUEST_BODY;
        *ret = json_is_true(v);
        return 0;
}

static int load(const char *body, size_t len, size_t max, json_t **ret) {
        json_t *root;

        if (len > max)
                return -KH_E_BODY_TOO_LARGE;
        if (!body || len == 0)
                return -KH_E_INVALID_REQUEST_BODY;
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!root)
                return -KH_E_INVALID_REQUEST_BODY;
        *ret = root;
        return 0;
}

int kh_req_auth_create_parse(const char *body, size_t len, struct kh_req_auth_create *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_create c = { 0 };
        json_t *type;
        int r;

        r = load(body, len, KH_BODY_MAX, &root);
        if (r < 0)
                return r;
        if (!json_is_object(root))
                return -KH_E_INVALID_REQUEST_BODY;
        if ((r = string_member(root, "email", &c.email)) < 0 ||
            (r = string_member(root, "publicKey", &c.public_key)) < 0 ||
            (r = string_member(root, "deviceIdentifier", &c.device_identifier)) < 0 ||
            (r = string_member(root, "accessCode", &c.access_code)) < 0 ||
            (r = member(root, "type", &type)) < 0)
                return r;
        /* AuthRequestType 0, 1 or 2; any other number is decoded, and refused by the
         * service with the reason that fits */
        if (!json_is_integer(type) || json_integer_value(type) < 0 ||
            json_integer_value(type) > 255)
                return -KH_E_INVALID_REQUEST_BODY;
        c.type = (int) json_integer_value(type);
        c.root = KH_TAKE_PTR(root);
        *ret = c;
        return 0;
}

int kh_req_auth_update_parse(const char *body, size_t len, struct kh_req_auth_update *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_update u = { 0 };
        int r;

        r = load(body, len, KH_BODY_MAX, &root);
        if (r < 0)
                return r;
        if (!json_is_object(root))
                return -KH_E_INVALID_REQUEST_BODY;
        if ((r = optional_string_member(root, "key", &u.key)) < 0 ||
            (r = string_member(root, "deviceIdentifier", &u.device_identifier)) < 0 ||
            (r = bool_member(root, "requestApproved", &u.approved)) < 0)
                return r;
        u.root = KH_TAKE_PTR(root);
        *ret = u;
        return 0;
}

int kh_req_auth_answer_parse(const char *body, size_t len, struct kh_req_auth_answers *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_answer a = { 0 };
        int r;

        r = load(body, len, KH_BODY_MAX, &root);
        if (r < 0)
                return r;
        if (!json_is_object(root))
                return -KH_E_INVALID_REQUEST_BODY;
        if ((r = bool_member(root, "requestApproved", &a.approved)) < 0 ||
            (r = optional_string_member(root, "encryptedUserKey", &a.key)) < 0)
                return r;
        ret->root = KH_TAKE_PTR(root);
        ret->items[0] = a;
        ret->n = 1;
        return 0;
}

int kh_req_auth_deny_parse(const char *body, size_t len, struct kh_req_auth_answers *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_answer items[KH_REQ_AUTH_ITEMS_MAX];
        json_t *ids, *v;
        size_t i;
        int r;

        r = load(body, len, KH_REQ_AUTH_LIST_BODY_MAX, &root);
        if (r < 0)
                return r;
        if (!json_is_object(root))
                return -KH_E_INVALID_REQUEST_BODY;
        r = member(root, "ids", &ids);
        if (r < 0)
                return r;
        if (!json_is_array(ids) || json_array_size(ids) == 0 ||
            json_array_size(ids) > KH_REQ_AUTH_ITEMS_MAX)
                return -KH_E_INVALID_REQUEST_BODY;
        json_array_foreach(ids, i, v) {
                if (!json_is_string(v) || json_string_length(v) == 0 ||
                    strlen(json_string_value(v)) != json_string_length(v))
                        return -KH_E_INVALID_REQUEST_BODY;
                items[i] = (struct kh_req_auth_answer) { .id = json_string_value(v) };
        }
        ret->n = json_array_size(ids);
        memcpy(ret->items, items, ret->n * sizeof(items[0]));
        ret->root = KH_TAKE_PTR(root);
        return 0;
}

int kh_req_auth_bulk_parse(const char *body, size_t len, struct kh_req_auth_answers *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_answer items[KH_REQ_AUTH_ITEMS_MAX];
        json_t *v;
        size_t i;
        int r;

        r = load(body, len, KH_REQ_AUTH_LIST_BODY_MAX, &root);
        if (r < 0)
                return r;
        if (!json_is_array(root) || json_array_size(root) == 0 ||
            json_array_size(root) > KH_REQ_AUTH_ITEMS_MAX)
                return -KH_E_INVALID_REQUEST_BODY;
        json_array_foreach(root, i, v) {
                struct kh_req_auth_answer a = { 0 };

                if (!json_is_object(v))
                        return -KH_E_INVALID_REQUEST_BODY;
                if ((r = string_member(v, "id", &a.id)) < 0 ||
                    (r = bool_member(v, "approved", &a.approved)) < 0 ||
                    (r = optional_string_member(v, "key", &a.key)) < 0)
                        return r;
                items[i] = a;
        }
        ret->n = json_array_size(root);
        memcpy(ret->items, items, ret->n * sizeof(items[0]));
        ret->root = KH_TAKE_PTR(root);
        return 0;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

int kh_req_access_code_parse(const char *q, size_t len, char *out, size_t max, size_t *ret_len) {
        static const char name[] = "code=";
        const size_t name_len = sizeof(name) - 1;
        size_t o = 0;

        if (!q || len <= name_len || memcmp(q, name, name_len) != 0 || max == 0)
                return -KH_E_INVALID_PARAMETER;
        for (size_t i = name_len; i < len; i++) {
                char c = q[i];

                if (c == '&' || c == '=' || c == '#')
                        return -KH_E_INVALID_PARAMETER;   /* one parameter only */
                if (c == '%') {
                        int hi = i + 2 < len ? hex_value(q[i + 1]) : -1;
                        int lo = hi >= 0 ? hex_value(q[i + 2]) : -1;
                        if (lo < 0 || (hi == 0 && lo == 0))
                                return -KH_E_INVALID_PARAMETER;
                        c = (char) (hi << 4 | lo);
                        i += 2;
                }
                if (o == max)
                        return -KH_E_INVALID_PARAMETER;
                out[o++] = c;
        }
        out[o] = '\0';
        *ret_len = o;
        return 0;
}
