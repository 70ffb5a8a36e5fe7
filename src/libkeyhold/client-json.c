/* The server's JSON into the structs of keyhold/client.h. Bitwarden binds requests
 * case-insensitively and its responses are camelCase; an older server or a proxy may send
 * PascalCase, so each field is looked up under both spellings (both at once: the
 * camelCase one). A field of the wrong JSON type is a malformed answer, not a missing one. */
#include <stdio.h>
#include <string.h>

#include "client-internal.h"

/* The value of field name (camelCase) or its PascalCase spelling; NULL when absent. */
static const json_t *field(const json_t *v, const char *name) {
        const json_t *f = json_object_get(v, name);
        char pascal[64];

        if (f || strlen(name) >= sizeof(pascal))
                return f;
        memcpy(pascal, name, strlen(name) + 1);
        if (pascal[0] >= 'a' && pascal[0] <= 'z')
                pascal[0] = (char) (pascal[0] - 'a' + 'A');
        return json_object_get(v, pascal);
}

/* An optional string field into *ret (NULL when absent or null). */
static int opt_string(const json_t *v, const char *name, char **ret) {
        const json_t *f = field(v, name);

        *ret = NULL;
        if (!f || json_is_null(f))
                return KEYHOLD_OK;
        if (!json_is_string(f))
                return KEYHOLD_E_RESPONSE;
        *ret = strndup(json_string_value(f), json_string_length(f));
        return *ret ? KEYHOLD_OK : KEYHOLD_E_NOMEM;
}

static int req_string(const json_t *v, const char *name, char **ret) {
        int r = opt_string(v, name, ret);

        if (r == KEYHOLD_OK && !*ret)
                return KEYHOLD_E_RESPONSE;
        return r;
}

/* An optional integer field in [min, max], def when absent or null. */
static int opt_int(const json_t *v, const char *name, int min, int max, int def, int *ret) {
        const json_t *f = field(v, name);
        json_int_t n;

        if (!f || json_is_null(f)) {
                *ret = def;
                return KEYHOLD_OK;
        }
        if (!json_is_integer(f))
                return KEYHOLD_E_RESPONSE;
        n = json_integer_value(f);
        if (n < min || n > max)
                return KEYHOLD_E_RESPONSE;
        *ret = (int) n;
        return KEYHOLD_OK;
}

/* An optional boolean; *ret_present says whether it was there (not null). */
static int opt_bool(const json_t *v, const char *name, bool *ret, bool *ret_present) {
        const json_t *f = field(v, name);

        *ret = false;
        if (ret_present)
                *ret_present = false;
        if (!f || json_is_null(f))
                return KEYHOLD_OK;
        if (!json_is_boolean(f))
                return KEYHOLD_E_RESPONSE;
        *ret = json_is_true(f);
        if (ret_present)
                *ret_present = true;
        return KEYHOLD_OK;
}

/* A date: the server's text as is, or a number of seconds (keyhold's stored shape) as its
 * decimal text. */
static int opt_date(const json_t *v, const char *name, char **ret) {
        const json_t *f = field(v, name);
        char buf[32];

        if (f && json_is_integer(f)) {
                (void) snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(f));
                *ret = strdup(buf);
                return *ret ? KEYHOLD_OK : KEYHOLD_E_NOMEM;
        }
        return opt_string(v, name, ret);
}

void khl_device_clear(struct keyhold_device *d) {
        free(d->id);
        free(d->name);
        free(d->identifier);
        free(d->creation_date);
        free(d->last_activity_date);
        free(d->encrypted_user_key);
        free(d->encrypted_public_key);
        free(d->encrypted_private_key);
        *d = (struct keyhold_device) { 0 };
}

void keyhold_device_free(struct keyhold_device *d) {
        if (!d)
                return;
        khl_device_clear(d);
        free(d);
}

void keyhold_device_list_free(struct keyhold_device_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                khl_device_clear(&l->items[i]);
        free(l->items);
        free(l);
}

int khl_device_decode(const json_t *v, struct keyhold_device *d) {
        struct keyhold_device x = { 0 };
        bool trusted, trusted_given;
        int r;

        if (!json_is_object(v))
                return KEYHOLD_E_RESPONSE;
        r = req_string(v, "id", &x.id);
        if (r == KEYHOLD_OK)
                r = req_string(v, "identifier", &x.identifier);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "name", &x.name);
        if (r == KEYHOLD_OK)
                r = opt_int(v, "type", 0, 1000, 0, &x.type);
        if (r == KEYHOLD_OK)
                r = opt_date(v, "creationDate", &x.creation_date);
        if (r == KEYHOLD_OK)
                r = opt_date(v, "lastActivityDate", &x.last_activity_date);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "encryptedUserKey", &x.encrypted_user_key);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "encryptedPublicKey", &x.encrypted_public_key);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "encryptedPrivateKey", &x.encrypted_private_key);
        if (r == KEYHOLD_OK)
                r = opt_bool(v, "isTrusted", &trusted, &trusted_given);
        if (r != KEYHOLD_OK) {
                khl_device_clear(&x);
                return r;
        }
        /* The server's word when it gives one; the stored shape has only the values. */
        x.is_trusted = trusted_given ? trusted
                                     : (x.encrypted_user_key && x.encrypted_public_key &&
                                        x.encrypted_private_key);
        *d = x;
        return KEYHOLD_OK;
}

/* The items of a list answer: {"data": [...]} or a bare array. */
static const json_t *list_items(const json_t *v) {
        if (json_is_array(v))
                return v;
        v = field(v, "data");
        return json_is_array(v) ? v : NULL;
}

int khl_device_list_decode(const json_t *v, struct keyhold_device_list **ret) {
        const json_t *items = list_items(v), *item;
        struct keyhold_device_list *l;
        size_t i;
        int r;

        if (!items)
                return KEYHOLD_E_RESPONSE;
        l = calloc(1, sizeof(*l));
        if (!l)
                return KEYHOLD_E_NOMEM;
        l->items = calloc(json_array_size(items) ? json_array_size(items) : 1, sizeof(*l->items));
        if (!l->items) {
                free(l);
                return KEYHOLD_E_NOMEM;
        }
        json_array_foreach(items, i, item) {
                r = khl_device_decode(item, &l->items[l->n]);
                if (r != KEYHOLD_OK) {
                        keyhold_device_list_free(l);
                        return r;
                }
                l->n++;
        }
        *ret = l;
        return KEYHOLD_OK;
}

void khl_auth_request_clear(struct keyhold_auth_request *r) {
        free(r->id);
        free(r->user_id);
        free(r->email);
        free(r->public_key);
        free(r->request_device_identifier);
        free(r->request_ip_address);
        free(r->key);
        free(r->creation_date);
        free(r->response_date);
        free(r->fingerprint);
        *r = (struct keyhold_auth_request) { 0 };
}

void keyhold_auth_request_free(struct keyhold_auth_request *r) {
        if (!r)
                return;
        khl_auth_request_clear(r);
        free(r);
}

void keyhold_auth_request_list_free(struct keyhold_auth_request_list *l) {
        if (!l)
                return;
        for (size_t i = 0; i < l->n; i++)
                khl_auth_request_clear(&l->items[i]);
        free(l->items);
        free(l);
}

static int decode_status(const json_t *v, struct keyhold_auth_request *x) {
        static const char *const names[] = {
                [KEYHOLD_AUTH_REQUEST_PENDING] = "pending",
                [KEYHOLD_AUTH_REQUEST_APPROVED] = "approved",
                [KEYHOLD_AUTH_REQUEST_DENIED] = "denied",
                [KEYHOLD_AUTH_REQUEST_EXPIRED] = "expired",
        };
        const json_t *f = field(v, "status");

        if (f && !json_is_null(f)) {
                if (!json_is_string(f))
                        return KEYHOLD_E_RESPONSE;
                for (size_t i = 0; i < KHL_ELEMENTSOF(names); i++)
                        if (strcmp(json_string_value(f), names[i]) == 0) {
                                x->status = (enum keyhold_auth_request_status) i;
                                return KEYHOLD_OK;
                        }
                return KEYHOLD_E_RESPONSE;
        }
        if (x->request_approved)
                x->status = KEYHOLD_AUTH_REQUEST_APPROVED;
        else if (x->response_date)
                x->status = KEYHOLD_AUTH_REQUEST_DENIED;
        else
                x->status = KEYHOLD_AUTH_REQUEST_PENDING;
        return KEYHOLD_OK;
}

int khl_auth_request_decode(const json_t *v, struct keyhold_auth_request *out) {
        struct keyhold_auth_request x = { 0 };
        int r;

        if (!json_is_object(v))
                return KEYHOLD_E_RESPONSE;
        r = req_string(v, "id", &x.id);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "userId", &x.user_id);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "email", &x.email);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "publicKey", &x.public_key);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "requestDeviceIdentifier", &x.request_device_identifier);
        if (r == KEYHOLD_OK)
                r = opt_int(v, "requestDeviceTypeValue", 0, 1000, -1, &x.request_device_type);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "requestIpAddress", &x.request_ip_address);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "key", &x.key);
        if (r == KEYHOLD_OK)
                r = opt_date(v, "creationDate", &x.creation_date);
        if (r == KEYHOLD_OK)
                r = opt_date(v, "responseDate", &x.response_date);
        if (r == KEYHOLD_OK)
                r = opt_bool(v, "requestApproved", &x.request_approved, NULL);
        if (r == KEYHOLD_OK)
                r = opt_string(v, "fingerprint", &x.fingerprint);
        if (r == KEYHOLD_OK)
                r = decode_status(v, &x);
        if (r != KEYHOLD_OK) {
                khl_auth_request_clear(&x);
                return r;
        }
        *out = x;
        return KEYHOLD_OK;
}

int khl_auth_request_list_decode(const json_t *v, struct keyhold_auth_request_list **ret) {
        const json_t *items = list_items(v), *item;
        struct keyhold_auth_request_list *l;
        size_t i;
        int r;

        if (!items)
                return KEYHOLD_E_RESPONSE;
        l = calloc(1, sizeof(*l));
        if (!l)
                return KEYHOLD_E_NOMEM;
        l->items = calloc(json_array_size(items) ? json_array_size(items) : 1, sizeof(*l->items));
        if (!l->items) {
                free(l);
                return KEYHOLD_E_NOMEM;
        }
        json_array_foreach(items, i, item) {
                r = khl_auth_request_decode(item, &l->items[l->n]);
                if (r != KEYHOLD_OK) {
                        keyhold_auth_request_list_free(l);
                        return r;
                }
                l->n++;
        }
        *ret = l;
        return KEYHOLD_OK;
}

int khl_public_key_decode(const json_t *v, uint8_t **ret, size_t *ret_len) {
        const json_t *f = field(v, "publicKey");
        uint8_t *der = NULL;
        size_t len = 0;
        int r;

        if (!json_is_string(f))
                return KEYHOLD_E_RESPONSE;
        r = keyhold_base64_decode(json_string_value(f), json_string_length(f), &der, &len);
        if (r == KEYHOLD_E_FORMAT || (r == KEYHOLD_OK && len == 0))
                r = KEYHOLD_E_RESPONSE;
        if (r != KEYHOLD_OK) {
                free(der);
                return r;
        }
        *ret = der;
        *ret_len = len;
        return KEYHOLD_OK;
}

static void copy_text(const json_t *f, char *out, size_t out_len) {
        const char *s = json_string_value(f);

        if (out_len == 0)
                return;
        out[0] = 0;
        if (s)
                (void) snprintf(out, out_len, "%s", s);
}

void khl_error_decode(const json_t *v, char *message, size_t message_len, char *code,
                      size_t code_len) {
        copy_text(field(v, "message"), message, message_len);
        copy_text(json_object_get(v, "code"), code, code_len);
}

int khl_status_for_http(long http_status) {
        switch (http_status) {
        case 400:
                return KEYHOLD_E_BAD_REQUEST;
        case 401:
                return KEYHOLD_E_UNAUTHORIZED;
        case 403:
                return KEYHOLD_E_FORBIDDEN;
        case 404:
                return KEYHOLD_E_NOT_FOUND;
        case 409:
                return KEYHOLD_E_CONFLICT;
        default:
                return KEYHOLD_E_SERVER;
        }
}
