#include "http/decode-auth.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"
#include "common/limits.h"
#include "http/decode-json.h"

void kh_req_auth_clear(json_t **root) {
        json_decref(*root);
        *root = NULL;
}

int kh_req_auth_create_parse(const char *body, size_t len, struct kh_req_auth_create *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_create c = { 0 };
        json_t *type;
        int r;

        r = kh_json_load(body, len, KH_BODY_MAX, true, &root);
        if (r < 0)
                return r;
        if ((r = kh_json_string(root, "email", 0, 0, &c.email)) < 0 ||
            (r = kh_json_string(root, "publicKey", 0, 0, &c.public_key)) < 0 ||
            (r = kh_json_string(root, "deviceIdentifier", 0, 0, &c.device_identifier)) < 0 ||
            (r = kh_json_string(root, "accessCode", 0, 0, &c.access_code)) < 0 ||
            (r = kh_json_member(root, "type", &type)) < 0)
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

        r = kh_json_load(body, len, KH_BODY_MAX, true, &root);
        if (r < 0)
                return r;
        if ((r = kh_json_string(root, "key", KH_JSON_OPTIONAL, 0, &u.key)) < 0 ||
            (r = kh_json_string(root, "deviceIdentifier", 0, 0, &u.device_identifier)) < 0 ||
            (r = kh_json_bool(root, "requestApproved", &u.approved)) < 0)
                return r;
        u.root = KH_TAKE_PTR(root);
        *ret = u;
        return 0;
}

int kh_req_auth_answer_parse(const char *body, size_t len, struct kh_req_auth_answers *ret) {
        json_auto_t *root = NULL;
        struct kh_req_auth_answer a = { 0 };
        int r;

        r = kh_json_load(body, len, KH_BODY_MAX, true, &root);
        if (r < 0)
                return r;
        if ((r = kh_json_bool(root, "requestApproved", &a.approved)) < 0 ||
            (r = kh_json_string(root, "encryptedUserKey", KH_JSON_OPTIONAL, 0, &a.key)) < 0)
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

        r = kh_json_load(body, len, KH_REQ_AUTH_LIST_BODY_MAX, true, &root);
        if (r < 0)
                return r;
        r = kh_json_member(root, "ids", &ids);
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

        r = kh_json_load(body, len, KH_REQ_AUTH_LIST_BODY_MAX, false, &root);
        if (r < 0)
                return r;
        if (!json_is_array(root) || json_array_size(root) == 0 ||
            json_array_size(root) > KH_REQ_AUTH_ITEMS_MAX)
                return -KH_E_INVALID_REQUEST_BODY;
        json_array_foreach(root, i, v) {
                struct kh_req_auth_answer a = { 0 };

                if (!json_is_object(v))
                        return -KH_E_INVALID_REQUEST_BODY;
                if ((r = kh_json_string(v, "id", 0, 0, &a.id)) < 0 ||
                    (r = kh_json_bool(v, "approved", &a.approved)) < 0 ||
                    (r = kh_json_string(v, "key", KH_JSON_OPTIONAL, 0, &a.key)) < 0)
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
                        if (lo < 0)
                                return -KH_E_INVALID_PARAMETER;
                        c = (char) (hi << 4 | lo);
                        i += 2;
                }
                /* an access code is printable text: no NUL or other control byte, raw or
                 * percent-encoded (a NUL would cut the code short where it is compared) */
                if ((unsigned char) c < 0x20 || c == 0x7f || o == max)
                        return -KH_E_INVALID_PARAMETER;
                out[o++] = c;
        }
        out[o] = '\0';
        *ret_len = o;
        return 0;
}
