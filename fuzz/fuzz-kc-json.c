/* The Key Connector JSON source reader (import/kc-source.h, kh_kc_parse_json) on arbitrary
 * file bytes. Invariants: documented results only, nothing handed out on failure and a
 * detail on every refusal; on success exactly one data key, one record per "userKey" entry
 * (counted again here with jansson), each record's error consistent with its GUID and blob,
 * and every blob the exact base64 decoding of its entry's "key" (checked by encoding it
 * back, with the encoder rather than the decoder the reader used). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "fuzz.h"
#include "common/buf.h"
#include "common/errors.h"
#include "crypto/encoding.h"
#include "import/kc-source.h"

/* The only member of obj named name in any case (the reader refuses two). */
static json_t *member(json_t *obj, const char *name) {
        const char *key;
        json_t *value;

        json_object_foreach(obj, key, value) {
                if (strcasecmp(key, name) == 0)
                        return value;
        }
        return NULL;
}

static void check_record(const struct kh_kc_record *rec, json_t *entry) {
        json_t *key = member(entry, "key");

        CHECK(rec->id && strlen(rec->id) <= KH_KC_ID_MAX);
        CHECK(rec->guid[0] == 0 || is_canonical_guid(rec->guid));
        CHECK(rec->guid[0] == 0 || strcasecmp(rec->guid, rec->id) == 0);
        CHECK((rec->guid[0] == 0) == (rec->error == -KH_E_KC_BAD_ID));
        CHECK(rec->error == 0 || rec->error == -KH_E_KC_BAD_ID || rec->error == -KH_E_KC_NO_KEY ||
              rec->error == -KH_E_KC_BAD_BASE64);
        CHECK((rec->blob != NULL) == (rec->error == 0));
        CHECK(rec->error != -KH_E_KC_NO_KEY || !json_is_string(key) || json_string_length(key) == 0);
        if (rec->error == 0) {
                struct kh_buf b;

                CHECK(json_is_string(key) && rec->blob_len > 0);
                kh_buf_init(&b, KH_KC_KEY_TEXT_MAX, false);
                CHECK(kh_base64_encode(rec->blob, rec->blob_len, &b) == 0);
                CHECK(b.len == json_string_length(key));
                CHECK(memcmp(b.data, json_string_value(key), b.len) == 0);
                kh_buf_free(&b);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct kh_kc_data *d = NULL;
        json_t *root, *users;
        char detail[256];
        int r;

        memset(detail, 'x', sizeof(detail));
        r = kh_kc_parse_json(data, size, &d, detail, sizeof(detail));
        CHECK(memchr(detail, 0, sizeof(detail)) != NULL);
        if (r < 0) {
                CHECK(r == -KH_E_KC_LAYOUT || r == -KH_E_KC_JSON || r == -KH_E_KC_NO_DATA_KEY ||
                      r == -KH_E_KC_TOO_LARGE || r == -ENOMEM);
                CHECK(d == NULL);
                CHECK(r == -ENOMEM || detail[0] != 0);
                return 0;
        }
        CHECK(r == 0 && d && detail[0] == 0);
        CHECK(strcmp(d->kind, "json") == 0);
        CHECK(d->n_wrapped == 1 && d->wrapped[0].p && d->wrapped[0].len > 0);

        root = json_loadb((const char *) data, size, JSON_REJECT_DUPLICATES, NULL);
        CHECK(json_is_object(root));
        users = member(root, "userKey");
        CHECK(json_is_array(users) && json_array_size(users) == d->n_records);
        for (size_t i = 0; i < d->n_records; i++)
                check_record(&d->records[i], json_array_get(users, i));
        json_decref(root);
        CHECK(kh_kc_data_free(d) == NULL);
        return 0;
}
