#include "http/bitwarden-models.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "service/devices.h"
#include "service/member-data.h"

#define JSON_TYPE "application/json; charset=utf-8"

/* Bitwarden's DeviceType display names (src/Core/Enums/DeviceType.cs). */
static const char *const device_type_names[] = {
        "Android", "iOS", "Chrome Extension", "Firefox Extension", "Opera Extension",
        "Edge Extension", "Windows", "macOS", "Linux", "Chrome", "Firefox", "Opera", "Edge",
        "Internet Explorer", "Unknown Browser", "Android", "UWP", "Safari", "Vivaldi",
        "Vivaldi Extension", "Safari Extension", "SDK", "Server", "Windows CLI", "MacOs CLI",
        "Linux CLI",
};

static const char *device_type_name(json_int_t t) {
        if (t < 0 || (size_t) t >= sizeof(device_type_names) / sizeof(device_type_names[0]))
                return "Unknown";
        return device_type_names[t];
}

int kh_http_reply_json_new(struct kh_http_req *req, int status, json_t *v) {
        char *text = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

        json_decref(v);
        if (!text)
                return -ENOMEM;
        /* an answer may carry a key encrypted to a requester: kept out of freed memory */
        kh_http_reply(req, status, JSON_TYPE, text, strlen(text), true);
        free(text);
        return 0;
}

static json_t *date_or_null(const json_t *doc, const char *name) {
        const json_t *v = json_object_get(doc, name);
        char text[32];

        if (!json_is_integer(v))
                return json_null();
        kh_mdata_date(json_integer_value(v), text);
        return json_string(text);
}

static json_t *copy_or_null(const json_t *doc, const char *name) {
        json_t *v = json_object_get(doc, name);
        return v ? json_incref(v) : json_null();
}

/* The host the request named, for "origin" (Bitwarden: its web vault's host). */
static json_t *origin_of(const struct kh_http_req *req) {
        const h2o_iovec_t *a = &req->h2o->authority;
        size_t n = a->len;

        for (size_t i = 0; i < a->len; i++)
                if (a->base[i] == ':' && memchr(a->base, ']', a->len) == NULL) {
                        n = i;
                        break;
                }
        return json_stringn(a->base ? a->base : "", a->base ? n : 0);
}

static json_t *model(const struct kh_http_req *req, const json_t *doc) {
        json_int_t type = json_integer_value(json_object_get(doc, "requestDeviceType"));

        return json_pack("{ss so so so sI ss so so sn so so so sb so so sI}",
                         "object", "auth-request",
                         "id", copy_or_null(doc, "id"),
                         "publicKey", copy_or_null(doc, "publicKey"),
                         "requestDeviceIdentifier", copy_or_null(doc, "requestDeviceIdentifier"),
                         "requestDeviceTypeValue", type,
                         "requestDeviceType", device_type_name(type),
                         "requestIpAddress", copy_or_null(doc, "requestIpAddress"),
                         "key", copy_or_null(doc, "key"),
                         "masterPasswordHash",
                         "creationDate", date_or_null(doc, "creationDate"),
                         "responseDate", date_or_null(doc, "responseDate"),
                         "origin", origin_of(req),
                         "requestApproved", json_is_true(json_object_get(doc, "approved")),
                         "status", copy_or_null(doc, "status"),
                         "requestCountryName", json_null(),
                         "type", json_integer_value(json_object_get(doc, "type")));
}

int kh_http_reply_auth_request(struct kh_http_req *req, int status, const json_t *doc) {
        return kh_http_reply_json_new(req, status, model(req, doc));
}

json_t *kh_http_list_of(json_t *data) {
        return data ? json_pack("{ss so sn}", "object", "list", "data", data,
                                "continuationToken")
                    : NULL;
}

static bool trusted(const json_t *doc) {
        return json_string_length(json_object_get(doc, "encryptedUserKey")) > 0 &&
               json_string_length(json_object_get(doc, "encryptedPublicKey")) > 0 &&
               json_string_length(json_object_get(doc, "encryptedPrivateKey")) > 0;
}

json_t *kh_http_device_model(const json_t *doc, bool protected_) {
        json_t *m = json_object();

        if (!m)
                return NULL;
        if (json_object_set_new(m, "object", json_string(protected_ ? "protectedDevice" : "device")) < 0 ||
            json_object_set_new(m, "id", copy_or_null(doc, "id")) < 0 ||
            json_object_set_new(m, "name", copy_or_null(doc, "name")) < 0 ||
            json_object_set_new(m, "type", copy_or_null(doc, "type")) < 0 ||
            json_object_set_new(m, "identifier", copy_or_null(doc, "identifier")) < 0 ||
            json_object_set_new(m, "creationDate", date_or_null(doc, "creationDate")) < 0 ||
            (!protected_ &&
             (json_object_set_new(m, "lastActivityDate", date_or_null(doc, "lastActivityDate")) < 0 ||
              json_object_set_new(m, "isTrusted", json_boolean(trusted(doc))) < 0)) ||
            json_object_set_new(m, "encryptedUserKey", copy_or_null(doc, "encryptedUserKey")) < 0 ||
            json_object_set_new(m, "encryptedPublicKey", copy_or_null(doc, "encryptedPublicKey")) < 0) {
                json_decref(m);
                return NULL;
        }
        return m;
}

int kh_http_reply_auth_request_list(struct kh_http_req *req, const json_t *docs, bool pending) {
        json_t *data = json_array(), *doc;
        size_t i;

        json_array_foreach(docs, i, doc) {
                json_t *m = model(req, doc);
                if (m && pending) {
                        json_t *dev = NULL;
                        const char *user = json_string_value(json_object_get(doc, "userId"));
                        const char *ident = json_string_value(json_object_get(doc, "requestDeviceIdentifier"));
                        if (user && ident &&
                            kh_devices_get(req->worker->svc, req->tenant, user, ident, false, &dev) == 0)
                                (void) json_object_set(m, "requestDeviceId", json_object_get(dev, "id"));
                        else
                                (void) json_object_set_new(m, "requestDeviceId", json_null());
                        json_decref(dev);
                }
                if (!m || json_array_append_new(data, m) < 0) {
                        json_decref(data);
                        return -ENOMEM;
                }
        }
        return kh_http_reply_json_new(req, 200, kh_http_list_of(data));
}

static json_t *approvals_of(const json_t *doc) {
        json_t *out = json_array(), *a;
        size_t i;

        json_array_foreach(json_object_get(doc, "approvals"), i, a) {
                json_t *item = json_pack("{sO so}", "by", json_object_get(a, "by"), "at",
                                         date_or_null(a, "at"));
                if (!item || json_array_append_new(out, item) < 0) {
                        json_decref(out);
                        return NULL;
                }
        }
        return out;
}

int kh_http_reply_approvals(struct kh_http_req *req, const json_t *docs) {
        json_t *data = json_array(), *doc;
        size_t i;

        json_array_foreach(docs, i, doc) {
                json_int_t type = json_integer_value(json_object_get(doc, "requestDeviceType"));
                json_t *m = json_pack("{ss so so so so so so sI ss so sn so so so so}",
                                      "object", "pending-org-auth-request",
                                      "id", copy_or_null(doc, "id"),
                                      "userId", copy_or_null(doc, "userId"),
                                      "organizationUserId", copy_or_null(doc, "userId"),
                                      "email", copy_or_null(doc, "email"),
                                      "publicKey", copy_or_null(doc, "publicKey"),
                                      "requestDeviceIdentifier", copy_or_null(doc, "requestDeviceIdentifier"),
                                      "requestDeviceTypeValue", type,
                                      "requestDeviceType", device_type_name(type),
                                      "requestIpAddress", copy_or_null(doc, "requestIpAddress"),
                                      "requestCountryName",
                                      "creationDate", date_or_null(doc, "creationDate"),
                                      "fingerprint", copy_or_null(doc, "fingerprint"),
                                      "approvals", approvals_of(doc),
                                      "needed", copy_or_null(doc, "needed"));
                if (!m || json_array_append_new(data, m) < 0) {
                        json_decref(data);
                        return -ENOMEM;
                }
        }
        return kh_http_reply_json_new(req, 200, kh_http_list_of(data));
}
