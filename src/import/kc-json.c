/* The JSON file of Key Connector's `json` provider (spec section 2.2): a top-level object
 * with "symmetricKey" (the wrapped data key) and "userKey" (an array of {id, key, ...}).
 * JsonFlatFileDataStore writes lower camelCase, but names are matched case-insensitively,
 * as .NET would read them; a name present in two spellings is ambiguous and refused. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/file.h"
#include "import/kc-source-internal.h"
#include "import/kc-source.h"

#define TOP SIZE_MAX /* member() of the top-level object rather than of a userKey entry */

/* The member of obj (the top level, or userKey entry number entry) named name in any case
 * into *ret (NULL if absent). Returns 0 or -KH_E_KC_LAYOUT when two members match. */
static int member(json_t *obj, const char *name, size_t entry, json_t **ret, char *detail,
                  size_t detail_len) {
        const char *key, *found_key = NULL;
        json_t *value, *found = NULL;

        json_object_foreach(obj, key, value) {
                if (strcasecmp(key, name) != 0)
                        continue;
                if (found && entry == TOP)
                        kh_kc_detail(detail, detail_len,
                                     "the top-level object has both \"%s\" and \"%s\"",
                                     found_key, key);
                else if (found)
                        kh_kc_detail(detail, detail_len,
                                     "userKey entry %zu has both \"%s\" and \"%s\"", entry,
                                     found_key, key);
                if (found)
                        return -KH_E_KC_LAYOUT;
                found = value;
                found_key = key;
        }
        *ret = found;
        return 0;
}

static int add_entry(struct kh_kc_data *d, json_t *entry, size_t i, char *detail,
                     size_t detail_len) {
        json_t *id, *key;
        int r;

        if (!json_is_object(entry)) {
                kh_kc_detail(detail, detail_len, "userKey entry %zu is not an object", i);
                return -KH_E_KC_LAYOUT;
        }
        r = member(entry, "id", i, &id, detail, detail_len);
        if (r < 0)
                return r;
        r = member(entry, "key", i, &key, detail, detail_len);
        if (r < 0)
                return r;

        return kh_kc_add_record(d, json_is_string(id) ? json_string_value(id) : NULL,
                                json_is_string(id) ? json_string_length(id) : 0,
                                !key || json_is_null(key) ? KH_KC_KEY_NONE
                                : json_is_string(key)     ? KH_KC_KEY_TEXT
                                                          : KH_KC_KEY_NOT_TEXT,
                                json_is_string(key) ? json_string_value(key) : NULL,
                                json_is_string(key) ? json_string_length(key) : 0, detail,
                                detail_len);
}

int kh_kc_parse_json(const uint8_t *p, size_t n, struct kh_kc_data **ret, char *detail,
                     size_t detail_len) {
        KH_CLEANUP(kh_kc_data_freep) struct kh_kc_data *d = NULL;
        json_auto_t *root = NULL;
        json_t *sym, *users;
        json_error_t err;
        int r;

        kh_kc_detail(detail, detail_len, "%s", "");
        if (n > KH_KC_JSON_MAX) {
                kh_kc_detail(detail, detail_len, "the file is larger than %zu bytes",
                             KH_KC_JSON_MAX);
                return -KH_E_KC_TOO_LARGE;
        }
        /* jansson refuses a NULL buffer even of length 0: an empty file is a JSON error */
        root = json_loadb(p ? (const char *) p : "", n, JSON_REJECT_DUPLICATES, &err);
        if (!root) {
                if (json_error_code(&err) == json_error_out_of_memory)
                        return -ENOMEM;
                kh_kc_detail(detail, detail_len, "JSON error at line %d column %d: %s",
                             err.line, err.column, err.text);
                return -KH_E_KC_JSON;
        }
        if (!json_is_object(root)) {
                kh_kc_detail(detail, detail_len, "%s", "the top level is not a JSON object");
                return -KH_E_KC_LAYOUT;
        }
        r = member(root, "userKey", TOP, &users, detail, detail_len);
        if (r < 0)
                return r;
        if (!json_is_array(users)) {
                kh_kc_detail(detail, detail_len, "%s",
                             users ? "\"userKey\" is not an array" : "no \"userKey\" array");
                return -KH_E_KC_LAYOUT;
        }
        if (json_array_size(users) > KH_KC_RECORDS_MAX) {
                kh_kc_detail(detail, detail_len, "more than %d user-key entries",
                             KH_KC_RECORDS_MAX);
                return -KH_E_KC_TOO_LARGE;
        }
        r = member(root, "symmetricKey", TOP, &sym, detail, detail_len);
        if (r < 0)
                return r;
        if (sym && !json_is_null(sym) && !json_is_string(sym)) {
                kh_kc_detail(detail, detail_len, "%s", "\"symmetricKey\" is not a string");
                return -KH_E_KC_LAYOUT;
        }

        r = kh_kc_data_new("json", &d);
        if (r < 0)
                return r;
        for (size_t i = 0; i < json_array_size(users); i++) {
                r = add_entry(d, json_array_get(users, i), i, detail, detail_len);
                if (r < 0)
                        return r;
        }
        if (json_is_string(sym) && json_string_length(sym) > 0) {
                r = kh_kc_add_wrapped(d, json_string_value(sym), json_string_length(sym),
                                      detail, detail_len);
                if (r < 0)
                        return r;
        }
        if (d->n_wrapped == 0) {
                kh_kc_detail(detail, detail_len, "%s",
                             sym ? "\"symmetricKey\" is null or empty" : "no \"symmetricKey\"");
                return -KH_E_KC_NO_DATA_KEY;
        }

        *ret = KH_TAKE_PTR(d);
        return 0;
}

int kh_kc_read_json(const char *path, struct kh_kc_data **ret, char *detail,
                    size_t detail_len) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf text;
        int r;

        kh_buf_init(&text, KH_KC_JSON_MAX, false);
        r = kh_file_read(AT_FDCWD, path, 0, KH_KC_JSON_MAX, &text);
        if (r == -EFBIG) {
                kh_kc_detail(detail, detail_len, "%s is larger than %zu bytes", path,
                             KH_KC_JSON_MAX);
                return -KH_E_KC_TOO_LARGE;
        }
        if (r == -ENOMEM)
                return r;
        if (r < 0) {
                kh_kc_detail(detail, detail_len, "%s: %s", path,
                             r == -EINVAL ? "not a regular file" : kh_strerror(r));
                return -KH_E_KC_SOURCE_OPEN;
        }
        return kh_kc_parse_json(text.data, text.len, ret, detail, detail_len);
}
