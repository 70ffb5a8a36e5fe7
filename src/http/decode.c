#include "decode.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/crypto.h>

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

/* Wipes a secret's text inside the parsed document before jansson frees it. */
static void wipe_string(const json_t *s) {
        OPENSSL_cleanse((char *) (uintptr_t) json_string_value(s), json_string_length(s));
}

/* The body of an admin POST that takes an optional JSON object: none at all, or an object
 * without unknown members. Returns root (NULL for no body) or an error. */
static int admin_body(const char *body, size_t len, const char *const *members, size_t n,
                      json_t **ret) {
        json_t *root;
        const char *name;
        json_t *v;

        *ret = NULL;
        if (len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        if (!body || len == 0)
                return 0;
        root = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root)) {
                json_decref(root);
                return -KH_E_INVALID_BODY;
        }
        json_object_foreach(root, name, v) {
                bool known = false;
                for (size_t i = 0; i < n; i++)
                        known |= strcmp(name, members[i]) == 0;
                if (!known) {
                        json_decref(root);
                        return -KH_E_INVALID_BODY;
                }
        }
        *ret = root;
        return 0;
}

int kh_req_rekey_parse(const char *body, size_t len, unsigned default_bits,
                       unsigned *ret_bits) {
        static const char *const members[] = { "algorithm" };
        json_auto_t *root = NULL;
        const json_t *alg;
        const char *s;
        int r;

        r = admin_body(body, len, members, 1, &root);
        if (r < 0)
                return r;
        *ret_bits = default_bits;
        alg = json_object_get(root, "algorithm");
        if (!alg)
                return 0;
        if (!json_is_string(alg))
                return -KH_E_INVALID_ALGORITHM;
        s = json_string_value(alg);
        if (strcmp(s, "rsa-3072") == 0)
                *ret_bits = 3072;
        else if (strcmp(s, "rsa-4096") == 0)
                *ret_bits = 4096;
        else
                return -KH_E_INVALID_ALGORITHM;
        return 0;
}

int kh_req_unseal_parse(const char *body, size_t len, struct kh_secret **ret_master_key,
                        struct kh_secret **ret_passphrase) {
        static const char *const members[] = { "master_key", "passphrase" };
        json_auto_t *root = NULL;
        const json_t *key, *pass;
        int r;

        *ret_master_key = *ret_passphrase = NULL;
        r = admin_body(body, len, members, 2, &root);
        if (r < 0)
                return r;
        key = json_object_get(root, "master_key");
        pass = json_object_get(root, "passphrase");
        if (!root || (key != NULL) == (pass != NULL))
                return -KH_E_INVALID_BODY;
        if (key) {
                if (!json_is_string(key))
                        return -KH_E_INVALID_BODY;
                r = kh_base64_decode_secret(json_string_value(key), json_string_length(key),
                                            KH_MASTER_KEY_LEN, ret_master_key);
                wipe_string(key);
                return r == -EINVAL ? -KH_E_INVALID_KEY : r;
        }
        /* a passphrase is text without NUL (the key store hashes it as a C string) */
        if (!json_is_string(pass) || json_string_length(pass) == 0 ||
            strlen(json_string_value(pass)) != json_string_length(pass))
                return -KH_E_INVALID_BODY;
        r = kh_secret_new_from(json_string_value(pass), json_string_length(pass) + 1,
                               ret_passphrase);
        wipe_string(pass);
        return r;
}
