/* kh-tde: libkeyhold's trusted-device operations behind a line protocol, for the interop
 * test against Bitwarden's own SDK (tests/interop/test_sdk_trusted_devices.py; its SDK
 * counterpart is sdk-tde.mjs). Test-only: built, never installed.
 *
 * It uses only libkeyhold's public API (the headers in include/keyhold/), as a client
 * would. Each line of stdin is one JSON object {"op": ..., ...}; each gets one line of JSON
 * on stdout, flushed: the results, or {"error": "...", "status": N} with N a
 * keyhold_status. Bytes travel as standard base64 (keyhold_base64_*), EncStrings as text.
 *
 *   trust       user_key                                      -> device_key,
 *               encrypted_user_key, encrypted_public_key, encrypted_private_key
 *   unlock      device_key, encrypted_private_key, encrypted_user_key  -> user_key
 *   keypair                                                   -> spki, pkcs8
 *   encapsulate spki, data (type 4 EncString of data to spki) -> enc
 *   decapsulate pkcs8, enc                                    -> data
 *   encrypt     key (64 bytes), data (type 2)                 -> enc
 *   decrypt     key, enc                                      -> data
 *   fingerprint material, spki                                -> phrase
 *
 * Exits 0 at the end of stdin, 1 on a line that is not a JSON object or an unknown op. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "keyhold/device.h"
#include "keyhold/encstring.h"
#include "keyhold/fingerprint.h"
#include "keyhold/keyhold.h"

/* A decoded argument; secret or not, it is wiped when freed. */
struct bytes {
        uint8_t *p;
        size_t len;
};

static void bytes_free(struct bytes *b) {
        keyhold_wipe_free(b->p, b->len);
        b->p = NULL;
        b->len = 0;
}

static const char *str_arg(json_t *req, const char *name) {
        return json_string_value(json_object_get(req, name));
}

/* The base64 field name of req, decoded: KEYHOLD_E_INVALID when absent. */
static int b64_arg(json_t *req, const char *name, struct bytes *ret) {
        const char *s = str_arg(req, name);

        if (!s)
                return KEYHOLD_E_INVALID;
        return keyhold_base64_decode(s, strlen(s), &ret->p, &ret->len);
}

/* A 64-byte key argument. */
static int key_arg(json_t *req, const char *name, struct bytes *ret) {
        int r = b64_arg(req, name, ret);

        if (r == KEYHOLD_OK && ret->len != KEYHOLD_USER_KEY_LEN) {
                bytes_free(ret);
                return KEYHOLD_E_INVALID;
        }
        return r;
}

static int set_b64(json_t *res, const char *name, const uint8_t *p, size_t len) {
        char *s = NULL;
        int r = keyhold_base64_encode(p, len, &s);

        if (r < 0)
                return r;
        r = json_object_set_new(res, name, json_string(s)) == 0 ? KEYHOLD_OK : KEYHOLD_E_NOMEM;
        free(s);
        return r;
}

static int set_str(json_t *res, const char *name, const char *s) {
        return json_object_set_new(res, name, json_string(s)) == 0 ? KEYHOLD_OK : KEYHOLD_E_NOMEM;
}

static int op_trust(json_t *req, json_t *res) {
        struct bytes user_key = {0};
        struct keyhold_device_trust *t = NULL;
        int r;

        r = key_arg(req, "user_key", &user_key);
        if (r == KEYHOLD_OK)
                r = keyhold_device_trust_new(user_key.p, &t);
        if (r == KEYHOLD_OK)
                r = set_b64(res, "device_key", t->device_key, sizeof(t->device_key));
        if (r == KEYHOLD_OK)
                r = set_str(res, "encrypted_user_key", t->encrypted_user_key);
        if (r == KEYHOLD_OK)
                r = set_str(res, "encrypted_public_key", t->encrypted_public_key);
        if (r == KEYHOLD_OK)
                r = set_str(res, "encrypted_private_key", t->encrypted_private_key);
        keyhold_device_trust_free(t);
        bytes_free(&user_key);
        return r;
}

static int op_unlock(json_t *req, json_t *res) {
        struct bytes device_key = {0};
        uint8_t user_key[KEYHOLD_USER_KEY_LEN];
        const char *priv = str_arg(req, "encrypted_private_key");
        const char *uk = str_arg(req, "encrypted_user_key");
        int r;

        r = key_arg(req, "device_key", &device_key);
        if (r == KEYHOLD_OK)
                r = keyhold_device_unlock(device_key.p, priv, uk, user_key);
        if (r == KEYHOLD_OK)
                r = set_b64(res, "user_key", user_key, sizeof(user_key));
        memset(user_key, 0, sizeof(user_key));
        bytes_free(&device_key);
        return r;
}

static int op_keypair(json_t *res) {
        struct bytes spki = {0}, pkcs8 = {0};
        int r;

        r = keyhold_rsa_keypair(&spki.p, &spki.len, &pkcs8.p, &pkcs8.len);
        if (r == KEYHOLD_OK)
                r = set_b64(res, "spki", spki.p, spki.len);
        if (r == KEYHOLD_OK)
                r = set_b64(res, "pkcs8", pkcs8.p, pkcs8.len);
        bytes_free(&spki);
        bytes_free(&pkcs8);
        return r;
}

static int op_encapsulate(json_t *req, json_t *res) {
        struct bytes spki = {0}, data = {0};
        char *enc = NULL;
        int r;

        r = b64_arg(req, "spki", &spki);
        if (r == KEYHOLD_OK)
                r = b64_arg(req, "data", &data);
        if (r == KEYHOLD_OK)
                r = keyhold_rsa_encapsulate(spki.p, spki.len, data.p, data.len, &enc);
        if (r == KEYHOLD_OK)
                r = set_str(res, "enc", enc);
        free(enc);
        bytes_free(&spki);
        bytes_free(&data);
        return r;
}

static int op_decapsulate(json_t *req, json_t *res) {
        struct bytes pkcs8 = {0}, data = {0};
        const char *enc = str_arg(req, "enc");
        int r;

        r = b64_arg(req, "pkcs8", &pkcs8);
        if (r == KEYHOLD_OK && !enc)
                r = KEYHOLD_E_INVALID;
        if (r == KEYHOLD_OK)
                r = keyhold_rsa_decapsulate(pkcs8.p, pkcs8.len, enc, strlen(enc), &data.p,
                                            &data.len);
        if (r == KEYHOLD_OK)
                r = set_b64(res, "data", data.p, data.len);
        bytes_free(&pkcs8);
        bytes_free(&data);
        return r;
}

static int op_encrypt(json_t *req, json_t *res) {
        struct bytes key = {0}, data = {0};
        char *enc = NULL;
        int r;

        r = key_arg(req, "key", &key);
        if (r == KEYHOLD_OK)
                r = b64_arg(req, "data", &data);
        if (r == KEYHOLD_OK)
                r = keyhold_aes_encrypt(key.p, data.p, data.len, &enc);
        if (r == KEYHOLD_OK)
                r = set_str(res, "enc", enc);
        free(enc);
        bytes_free(&key);
        bytes_free(&data);
        return r;
}

static int op_decrypt(json_t *req, json_t *res) {
        struct bytes key = {0}, data = {0};
        const char *enc = str_arg(req, "enc");
        int r;

        r = b64_arg(req, "key", &key);
        if (r == KEYHOLD_OK && !enc)
                r = KEYHOLD_E_INVALID;
        if (r == KEYHOLD_OK)
                r = keyhold_aes_decrypt(key.p, key.len, enc, strlen(enc), &data.p, &data.len);
        if (r == KEYHOLD_OK)
                r = set_b64(res, "data", data.p, data.len);
        bytes_free(&key);
        bytes_free(&data);
        return r;
}

static int op_fingerprint(json_t *req, json_t *res) {
        struct bytes spki = {0};
        const char *material = str_arg(req, "material");
        char phrase[KEYHOLD_FINGERPRINT_MAX];
        int r;

        r = b64_arg(req, "spki", &spki);
        if (r == KEYHOLD_OK && !material)
                r = KEYHOLD_E_INVALID;
        if (r == KEYHOLD_OK)
                r = keyhold_fingerprint(material, spki.p, spki.len, phrase);
        if (r == KEYHOLD_OK)
                r = set_str(res, "phrase", phrase);
        bytes_free(&spki);
        return r;
}

/* Runs one request; 1 when op is unknown. */
static int dispatch(json_t *req, json_t *res, int *status) {
        const char *op = str_arg(req, "op");

        if (!op)
                return 1;
        if (strcmp(op, "trust") == 0)
                *status = op_trust(req, res);
        else if (strcmp(op, "unlock") == 0)
                *status = op_unlock(req, res);
        else if (strcmp(op, "keypair") == 0)
                *status = op_keypair(res);
        else if (strcmp(op, "encapsulate") == 0)
                *status = op_encapsulate(req, res);
        else if (strcmp(op, "decapsulate") == 0)
                *status = op_decapsulate(req, res);
        else if (strcmp(op, "encrypt") == 0)
                *status = op_encrypt(req, res);
        else if (strcmp(op, "decrypt") == 0)
                *status = op_decrypt(req, res);
        else if (strcmp(op, "fingerprint") == 0)
                *status = op_fingerprint(req, res);
        else
                return 1;
        return 0;
}

int main(void) {
        char *line = NULL;
        size_t cap = 0;
        int rc = 0;

        while (rc == 0 && getline(&line, &cap, stdin) >= 0) {
                json_error_t err;
                json_t *req = json_loads(line, 0, &err), *res = json_object();
                int status = KEYHOLD_OK;
                char *out = NULL;

                if (!json_is_object(req) || !res) {
                        fprintf(stderr, "kh-tde: not a JSON object: %s\n", err.text);
                        rc = 1;
                } else if (dispatch(req, res, &status) != 0) {
                        fprintf(stderr, "kh-tde: unknown op\n");
                        rc = 1;
                } else {
                        if (status != KEYHOLD_OK) {
                                json_object_clear(res);
                                json_object_set_new(res, "error",
                                                    json_string(keyhold_strerror(status)));
                                json_object_set_new(res, "status", json_integer(status));
                        }
                        out = json_dumps(res, JSON_COMPACT);
                        if (!out || printf("%s\n", out) < 0 || fflush(stdout) != 0)
                                rc = 1;
                }
                free(out);
                json_decref(req);
                json_decref(res);
        }
        free(line);
        return rc;
}
