/* Bodies of the trusted-device routes (decode.h). */
#include "decode.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <keyhold/encstring.h>
#include <keyhold/keyhold.h>

#include "common/errors.h"
#include "common/limits.h"
#include "common/parse.h"
#include "http/decode-json.h"

#define NAME_MAX_ 50
#define IDENTIFIER_MAX 50
#define ENCSTRING_MAX 16384     /* a wrapped RSA-4096 private key is about 3.3 KiB */

/* The types a trust value may have (spec/encstring.md section 9): the user key to the
 * device is RSA (3 or 4), the wrapped keys symmetric (2, or 7 for v2 accounts). */
#define RSA_TYPES ((1u << KEYHOLD_ENC_RSA_OAEP_SHA256) | (1u << KEYHOLD_ENC_RSA_OAEP_SHA1))
#define SYM_TYPES ((1u << KEYHOLD_ENC_AES_CBC256_HMAC) | (1u << KEYHOLD_ENC_COSE))

void kh_req_doc_free(struct kh_req_doc *doc) {
        json_decref(doc->json);
        doc->json = NULL;
}

static int load(const char *body, size_t len, size_t max, struct kh_req_doc *doc, json_t **ret) {
        int r = kh_json_load(body, len, max, true, ret);

        doc->json = r < 0 ? NULL : *ret;
        return r;
}

/* A string member of 1..max bytes; optional: absent or null gives NULL, "" allowed. */
static int string_member(const json_t *obj, const char *name, bool optional, size_t max,
                         const char **ret) {
        return kh_json_string(obj, name, optional ? KH_JSON_OPTIONAL | KH_JSON_EMPTY_OK : 0, max,
                              ret);
}

static int encstring_member(const json_t *obj, const char *name, unsigned types,
                            const char **ret) {
        int r = string_member(obj, name, false, ENCSTRING_MAX, ret);

        if (r < 0)
                return r;
        return keyhold_encstring_check(*ret, strlen(*ret), types) == KEYHOLD_OK
                       ? 0
                       : -KH_E_INVALID_ENCSTRING;
}

static bool identifier_ok(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > IDENTIFIER_MAX)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
                      (s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == '_' || s[i] == '-'))
                        return false;
        return true;
}

int kh_req_device_parse(const char *body, size_t len, struct kh_req_doc *doc,
                        struct kh_req_device *ret) {
        json_t *type;
        json_t *root;
        int r;

        r = load(body, len, KH_BODY_MAX, doc, &root);
        if (r >= 0)
                r = kh_json_member(root, "type", &type);
        if (r >= 0)
                r = string_member(root, "name", false, NAME_MAX_, &ret->name);
        if (r >= 0)
                r = string_member(root, "identifier", false, IDENTIFIER_MAX, &ret->identifier);
        if (r >= 0 && (!json_is_integer(type) || json_integer_value(type) < 0 ||
                       json_integer_value(type) > 1000 || !identifier_ok(ret->identifier)))
                r = -KH_E_INVALID_REQUEST_BODY;
        if (r < 0) {
                kh_req_doc_free(doc);
                return r;
        }
        ret->type = (int) json_integer_value(type);
        return 0;
}

/* The values of one trust object; private key only when @with_private. */
static int trust(const json_t *o, bool with_private, bool with_id, struct kh_req_trust *ret) {
        int r;

        *ret = (struct kh_req_trust) { 0 };
        if (!json_is_object(o))
                return -KH_E_INVALID_REQUEST_BODY;
        r = encstring_member(o, "encryptedUserKey", RSA_TYPES, &ret->user_key);
        if (r >= 0)
                r = encstring_member(o, "encryptedPublicKey", SYM_TYPES, &ret->public_key);
        if (r >= 0 && with_private)
                r = encstring_member(o, "encryptedPrivateKey", SYM_TYPES, &ret->private_key);
        if (r >= 0 && with_id) {
                const char *id;

                r = string_member(o, "deviceId", false, 64, &id);
                if (r >= 0 && kh_parse_guid(id, strlen(id), ret->device_id_buf) < 0)
                        r = -KH_E_INVALID_REQUEST_BODY;
                ret->device_id = ret->device_id_buf;
        }
        return r;
}

int kh_req_device_keys_parse(const char *body, size_t len, struct kh_req_doc *doc,
                             struct kh_req_trust *ret) {
        json_t *root;
        int r = load(body, len, KH_BODY_MAX, doc, &root);

        if (r >= 0)
                r = trust(root, true, false, ret);
        if (r < 0)
                kh_req_doc_free(doc);
        return r;
}

void kh_req_update_trust_free(struct kh_req_update_trust *u) {
        free(u->others);
        u->others = NULL;
        u->n_others = 0;
}

int kh_req_update_trust_parse(const char *body, size_t len, struct kh_req_doc *doc,
                              struct kh_req_update_trust *ret) {
        json_t *cur, *list, *flag;
        json_t *root;
        int r;

        *ret = (struct kh_req_update_trust) { 0 };
        r = load(body, len, KH_REQ_LIST_BODY_MAX, doc, &root);
        if (r >= 0)
                r = kh_json_member(root, "currentDevice", &cur);
        if (r >= 0)
                r = trust(cur, false, false, &ret->current);
        if (r >= 0)
                r = kh_json_member(root, "otherDevices", &list);
        if (r >= 0)
                r = kh_json_member(root, "untrustUnlisted", &flag);
        if (r >= 0 && flag && !json_is_boolean(flag))
                r = -KH_E_INVALID_REQUEST_BODY;
        if (r >= 0 && list && !json_is_null(list)) {
                if (!json_is_array(list) || json_array_size(list) > KH_REQ_DEVICES_MAX) {
                        r = -KH_E_INVALID_REQUEST_BODY;
                } else if (json_array_size(list) > 0) {
                        ret->others = calloc(json_array_size(list), sizeof(*ret->others));
                        if (!ret->others)
                                r = -ENOMEM;
                        for (size_t i = 0; r >= 0 && i < json_array_size(list); i++, ret->n_others++)
                                r = trust(json_array_get(list, i), false, true, &ret->others[i]);
                }
        }
        if (r < 0) {
                kh_req_update_trust_free(ret);
                kh_req_doc_free(doc);
                return r;
        }
        ret->untrust_unlisted = flag && json_is_true(flag);
        return 0;
}

int kh_req_untrust_parse(const char *body, size_t len, char ids[static KH_REQ_DEVICES_MAX][37],
                         size_t *ret_n) {
        struct kh_req_doc doc;
        json_t *list, *v;
        json_t *root;
        size_t i;
        int r;

        *ret_n = 0;
        r = load(body, len, KH_REQ_LIST_BODY_MAX, &doc, &root);
        if (r >= 0)
                r = kh_json_member(root, "devices", &list);
        if (r >= 0 && (!json_is_array(list) || json_array_size(list) > KH_REQ_DEVICES_MAX))
                r = -KH_E_INVALID_REQUEST_BODY;
        if (r >= 0)
                json_array_foreach(list, i, v) {
                        if (!json_is_string(v) ||
                            kh_parse_guid(json_string_value(v), json_string_length(v), ids[i]) < 0) {
                                r = -KH_E_INVALID_REQUEST_BODY;
                                break;
                        }
                }
        if (r >= 0)
                *ret_n = json_array_size(list);
        kh_req_doc_free(&doc);
        return r;
}

/* An RSA EncString (type 3 or 4) of one RSA-2048 block: a user key encrypted to the
 * tenant's recovery key. */
static bool recovery_key_ok(const char *s) {
        struct keyhold_encstring *es = NULL;
        const uint8_t *ct;
        size_t len = 0;
        bool ok;

        if (keyhold_encstring_parse(s, strlen(s), &es) != KEYHOLD_OK)
                return false;
        ok = (keyhold_encstring_type(es) == KEYHOLD_ENC_RSA_OAEP_SHA1 ||
              keyhold_encstring_type(es) == KEYHOLD_ENC_RSA_OAEP_SHA256) &&
             keyhold_encstring_part(es, 0, &ct, &len) == KEYHOLD_OK && len == 256;
        keyhold_encstring_free(es);
        return ok;
}

int kh_req_enrol_parse(const char *body, size_t len, struct kh_req_doc *doc,
                       const char **ret_key) {
        json_t *root;
        int r = load(body, len, KH_BODY_MAX, doc, &root);

        if (r >= 0)
                r = string_member(root, "resetPasswordKey", true, ENCSTRING_MAX, ret_key);
        if (r >= 0 && *ret_key && !(*ret_key)[0])
                *ret_key = NULL;          /* empty withdraws, as null does */
        if (r >= 0 && *ret_key && !recovery_key_ok(*ret_key))
                r = -KH_E_INVALID_ENCSTRING;
        if (r < 0) {
                *ret_key = NULL;
                kh_req_doc_free(doc);
        }
        return r;
}
