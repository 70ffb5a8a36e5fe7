#include "http/decode-json.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "common/errors.h"

int kh_json_load(const char *body, size_t len, size_t max, bool object, json_t **ret) {
        json_t *root;

        *ret = NULL;
        if (len > max)
                return -KH_E_BODY_TOO_LARGE;
        if (!body || len == 0)
                return -KH_E_INVALID_REQUEST_BODY;
        /* JSON_REJECT_DUPLICATES: which of two equal names counts would be a parser's choice */
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!root || (object && !json_is_object(root))) {
                json_decref(root);
                return -KH_E_INVALID_REQUEST_BODY;
        }
        *ret = root;
        return 0;
}

int kh_json_member(const json_t *obj, const char *name, json_t **ret) {
        const char *k;
        json_t *v, *found = NULL;

        *ret = NULL;
        json_t *o = (json_t *) (uintptr_t) obj;  /* jansson's iteration takes no const */

        json_object_foreach(o, k, v) {
                if (strcasecmp(k, name) != 0)
                        continue;
                if (found)
                        return -KH_E_INVALID_REQUEST_BODY;
                found = v;
        }
        *ret = found;
        return 0;
}

int kh_json_string(const json_t *obj, const char *name, unsigned flags, size_t max,
                   const char **ret) {
        json_t *v;
        int r = kh_json_member(obj, name, &v);

        *ret = NULL;
        if (r < 0)
                return r;
        if (!v || json_is_null(v))
                return flags & KH_JSON_OPTIONAL ? 0 : -KH_E_INVALID_REQUEST_BODY;
        if (!json_is_string(v) || (max && json_string_length(v) > max) ||
            strlen(json_string_value(v)) != json_string_length(v) ||
            (!(flags & KH_JSON_EMPTY_OK) && json_string_length(v) == 0))
                return -KH_E_INVALID_REQUEST_BODY;
        *ret = json_string_value(v);
        return 0;
}

int kh_json_bool(const json_t *obj, const char *name, bool *ret) {
        json_t *v;
        int r = kh_json_member(obj, name, &v);

        if (r < 0)
                return r;
        if (!json_is_boolean(v))
                return -KH_E_INVALID_REQUEST_BODY;
        *ret = json_is_true(v);
        return 0;
}
