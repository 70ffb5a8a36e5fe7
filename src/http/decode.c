#include "decode.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/limits.h"
#include "crypto/encoding.h"

int kh_req_user_key_parse(const char *body, size_t len, struct kh_secret **ret_key) {
        json_auto_t *root = NULL;
        json_t *lower, *upper, *key;
        int r;

        if (len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        if (!body || len == 0)
                return -KH_E_INVALID_BODY;

        /* JSON_REJECT_DUPLICATES: two "key" members would make the stored value depend on
         * which one a parser keeps. */
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        lower = json_object_get(root, "key"); /* NULL unless root is an object */
        upper = json_object_get(root, "Key");
        key = lower ? lower : upper;
        if (!json_is_string(key) || (lower && upper))
                return -KH_E_INVALID_BODY;

        r = kh_base64_decode_secret(json_string_value(key), json_string_length(key),
                                    KH_USER_KEY_LEN, ret_key);
        return r == -EINVAL ? -KH_E_INVALID_KEY : r; /* -ENOMEM stays a server fault */
}

bool kh_req_content_type_is_json(const char *value, size_t len) {
        static const char json[] = "application/json";
        const size_t n = sizeof(json) - 1;

        if (len < n || strncasecmp(value, json, n) != 0)
                return false;
        /* exactly the type, or the type followed by parameters */
        for (size_t i = n; i < len; i++) {
                if (value[i] == ';')
                        return true;
                if (value[i] != ' ' && value[i] != '\t')
                        return false;
        }
        return true;
}
