/* The device routes of Bitwarden's server (spec/trusted-devices.md sections 3 and 8), the
 * account-recovery enrolment routes, and keyhold's admin routes for a member's devices and
 * a member leaving. Bodies are decoded strictly here; the service keeps the records. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <keyhold/encstring.h>
#include <keyhold/keyhold.h>

#include "common/errors.h"
#include "common/jobs.h"
#include "common/limits.h"
#include "common/parse.h"
#include "crypto/encoding.h"
#include "http/decode.h"
#include "http/http-internal.h"
#include "service/devices.h"
#include "service/member-data.h"
#include "service/recovery.h"

#define JSON_TYPE "application/json; charset=utf-8"
#define LIST_BODY_MAX (64 * 1024)     /* update-trust and untrust carry lists */
#define ENCSTRING_MAX 16384           /* a wrapped RSA-4096 private key is about 3.3 KiB */

/* The types a trust value may have (spec/encstring.md section 9): the user key to the device
 * is RSA (3 or 4), the wrapped keys symmetric (2, or 7 for v2 accounts). */
#define RSA_TYPES ((1u << KEYHOLD_ENC_RSA_OAEP_SHA256) | (1u << KEYHOLD_ENC_RSA_OAEP_SHA1))
#define SYM_TYPES ((1u << KEYHOLD_ENC_AES_CBC256_HMAC) | (1u << KEYHOLD_ENC_COSE))

/* ---- replies ---- */

static int reply_doc(struct kh_http_req *req, int status, json_t *doc) {
        char *text = doc ? json_dumps(doc, JSON_COMPACT) : NULL;

        json_decref(doc);
        if (!text)
                return -ENOMEM;
        kh_http_reply(req, status, JSON_TYPE, text, strlen(text), false);
        free(text);
        return 0;
}

static int reply_empty(struct kh_http_req *req) {
        kh_http_reply(req, 200, NULL, NULL, 0, false);
        return 0;
}

static json_t *date_json(const json_t *seconds) {
        char text[32];

        if (!json_is_integer(seconds))
                return json_null();
        kh_mdata_date((int64_t) json_integer_value(seconds), text);
        return json_string(text);
}

static json_t *copy_or_null(const json_t *doc, const char *key) {
        const json_t *v = json_object_get(doc, key);
        return v ? json_incref((json_t *) (uintptr_t) v) : json_null();
}

static bool trusted(const json_t *doc) {
        return json_string_length(json_object_get(doc, "encryptedUserKey")) > 0 &&
               json_string_length(json_object_get(doc, "encryptedPublicKey")) > 0 &&
               json_string_length(json_object_get(doc, "encryptedPrivateKey")) > 0;
}

/* Bitwarden's DeviceResponseModel ("device") of a stored document, or its
 * ProtectedDeviceResponseModel ("protectedDevice"). Never the encrypted private key. */
static json_t *device_model(const json_t *doc, bool protected_) {
        json_t *m = json_object();

        if (!m)
                return NULL;
        if (json_object_set_new(m, "object", json_string(protected_ ? "protectedDevice" : "device")) < 0 ||
            json_object_set_new(m, "id", copy_or_null(doc, "id")) < 0 ||
            json_object_set_new(m, "name", copy_or_null(doc, "name")) < 0 ||
            json_object_set_new(m, "type", copy_or_null(doc, "type")) < 0 ||
            json_object_set_new(m, "identifier", copy_or_null(doc, "identifier")) < 0 ||
            json_object_set_new(m, "creationDate", date_json(json_object_get(doc, "creationDate"))) < 0 ||
            (!protected_ &&
             (json_object_set_new(m, "lastActivityDate",
                                  date_json(json_object_get(doc, "lastActivityDate"))) < 0 ||
              json_object_set_new(m, "isTrusted", json_boolean(trusted(doc))) < 0)) ||
            json_object_set_new(m, "encryptedUserKey", copy_or_null(doc, "encryptedUserKey")) < 0 ||
            json_object_set_new(m, "encryptedPublicKey", copy_or_null(doc, "encryptedPublicKey")) < 0) {
                json_decref(m);
                return NULL;
        }
        return m;
}

static int reply_device(struct kh_http_req *req, json_t *doc, bool protected_) {
        json_t *m = device_model(doc, protected_);

        json_decref(doc);
        return m ? reply_doc(req, 200, m) : -ENOMEM;
}

/* Bitwarden's list: {"object": "list", "data": [...], "continuationToken": null}. */
static int reply_list(struct kh_http_req *req, json_t *data) {
        json_t *list = data ? json_pack("{ss so sn}", "object", "list", "data", data,
                                        "continuationToken")
                            : NULL;
        return list ? reply_doc(req, 200, list) : -ENOMEM;
}

/* ---- request parts ---- */

/* The body as a JSON value of @max bytes at most; wiped once parsed. */
static int body_json(struct kh_http_req *req, size_t max, json_t **ret) {
        const h2o_iovec_t *ct = kh_http_header(req, H2O_TOKEN_CONTENT_TYPE);
        h2o_iovec_t *body = &req->h2o->entity;
        json_t *doc;

        if (body->len > max)
                return -KH_E_BODY_TOO_LARGE;
        if (!ct || !kh_req_content_type_is_json(ct->base, ct->len))
                return -KH_E_UNSUPPORTED_MEDIA;
        doc = json_loadb(body->base ? body->base : "", body->len, JSON_REJECT_DUPLICATES, NULL);
        if (!doc)
                return -KH_E_INVALID_BODY;
        *ret = doc;
        return 0;
}

static int no_body(const struct kh_http_req *req) {
        if (req->h2o->entity.len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        return req->h2o->entity.len > 0 ? -KH_E_INVALID_BODY : 0;
}

/* Member of a request body: Bitwarden binds names case-insensitively (section 1). Two
 * spellings of one name are ambiguous: -KH_E_INVALID_BODY. */
static int member(const json_t *obj, const char *name, const json_t **ret) {
        const char *k;
        const json_t *v, *found = NULL;

        json_object_foreach((json_t *) (uintptr_t) obj, k, v) {
                if (strcasecmp(k, name) != 0)
                        continue;
                if (found)
                        return -KH_E_INVALID_BODY;
                found = v;
        }
        *ret = found;
        return 0;
}

/* A required (or, with @optional, possibly absent or null: *ret NULL) string member. */
static int string_member(const json_t *obj, const char *name, bool optional, size_t max,
                         const char **ret) {
        const json_t *v;
        int r = member(obj, name, &v);

        if (r < 0)
                return r;
        *ret = NULL;
        if (!v || json_is_null(v))
                return optional ? 0 : -KH_E_INVALID_BODY;
        if (!json_is_string(v) || json_string_length(v) > max ||
            strlen(json_string_value(v)) != json_string_length(v))
                return -KH_E_INVALID_BODY;
        *ret = json_string_value(v);
        return 0;
}

static int encstring_member(const json_t *obj, const char *name, unsigned types, bool optional,
                            const char **ret) {
        int r = string_member(obj, name, optional, ENCSTRING_MAX, ret);

        if (r < 0 || !*ret)
                return r;
        return keyhold_encstring_check(*ret, strlen(*ret), types) == KEYHOLD_OK
                       ? 0
                       : -KH_E_INVALID_ENCSTRING;
}

/* The path parameter i as a NUL-terminated copy in the request's pool. */
static const char *param(struct kh_http_req *req, size_t i) {
        const struct kh_slice *p = &req->target->params[i];
        return h2o_strdup(&req->h2o->pool, p->p, p->len).base;
}

/* {orgId} must name the request's tenant (DESIGN.md "HTTP surface"). */
static int org_check(struct kh_http_req *req) {
        const struct kh_slice *p = &req->target->params[0];

        return p->len == strlen(req->tenant->id) && memcmp(p->p, req->tenant->id, p->len) == 0
                       ? 0
                       : -KH_E_NOT_FOUND;
}

/* A device identifier from the path. */
static int identifier_param(struct kh_http_req *req, size_t i, const char **ret) {
        const struct kh_slice *p = &req->target->params[i];

        if (!kh_device_identifier_is_valid(p->p, p->len))
                return -KH_E_DEVICE_NOT_FOUND;
        *ret = param(req, i);
        return 0;
}

/* A GUID from the path, canonical; @missing is the error for a malformed one. */
static int guid_param(struct kh_http_req *req, size_t i, int missing, char out[static 37]) {
        const struct kh_slice *p = &req->target->params[i];
        return kh_parse_guid(p->p, p->len, out) < 0 ? missing : 0;
}

/* The "email" claim of the (already verified) bearer token, lower-cased into out, or "". */
static void token_email(struct kh_http_req *req, char out[static 256]) {
        const h2o_iovec_t *authz = kh_http_header(req, H2O_TOKEN_AUTHORIZATION);
        KH_CLEANUP(kh_buf_freep) struct kh_buf payload;
        const char *tok, *dot1, *dot2;
        json_auto_t *claims = NULL;
        const char *email;
        size_t n;

        out[0] = '\0';
        if (!authz || authz->len < 8 || strncasecmp(authz->base, "Bearer ", 7) != 0)
                return;
        tok = authz->base + 7;
        n = authz->len - 7;
        dot1 = memchr(tok, '.', n);
        dot2 = dot1 ? memchr(dot1 + 1, '.', n - (size_t) (dot1 + 1 - tok)) : NULL;
        if (!dot2)
                return;
        kh_buf_init(&payload, KH_TOKEN_MAX, false);
        if (kh_base64url_decode(dot1 + 1, (size_t) (dot2 - dot1 - 1), &payload) < 0)
                return;
        claims = json_loadb((const char *) payload.data, payload.len, 0, NULL);
        email = json_string_value(json_object_get(claims, "email"));
        if (!email || strlen(email) >= 256 || !strchr(email, '@'))
                return;
        for (n = 0; email[n]; n++)
                out[n] = (char) (email[n] >= 'A' && email[n] <= 'Z' ? email[n] + 32 : email[n]);
        out[n] = '\0';
}

/* A request header by name, or NULL. */
static const h2o_iovec_t *header(struct kh_http_req *req, const char *name, size_t len) {
        ssize_t i = h2o_find_header_by_str(&req->h2o->headers, name, len, -1);
        return i < 0 ? NULL : &req->h2o->headers.entries[i].value;
}

/* The Device-Identifier header: the caller's current device. */
static int device_header(struct kh_http_req *req, const char **ret) {
        const h2o_iovec_t *v = header(req, H2O_STRLIT("device-identifier"));

        if (!v)
                return -KH_E_DEVICE_HEADERS;
        if (!kh_device_identifier_is_valid(v->base, v->len))
                return -KH_E_DEVICE_NOT_FOUND;
        *ret = h2o_strdup(&req->h2o->pool, v->base, v->len).base;
        return 0;
}

/* ---- devices (member) ---- */

int kh_route_devices_list(struct kh_http_req *req, const struct kh_principal *who) {
        json_t *docs, *data, *d;
        size_t i;
        int r;

        req->action = "device.list";
        r = kh_devices_list(req->worker->svc, req->tenant, who->sub, &docs);
        if (r < 0)
                return r;
        data = json_array();
        json_array_foreach(docs, i, d) {
                json_t *m = device_model(d, false);
                /* keyhold answers pending requests on their own routes */
                if (!m || json_object_set_new(m, "devicePendingAuthRequest", json_null()) < 0 ||
                    json_array_append_new(data, m) < 0) {
                        json_decref(m);
                        data = NULL;
                        break;
                }
        }
        json_decref(docs);
        return reply_list(req, data);
}

int kh_route_devices_register(struct kh_http_req *req, const struct kh_principal *who) {
        json_auto_t *body = NULL;
        const json_t *type;
        const char *name, *identifier;
        char email[256];
        json_t *doc;
        int r;

        r = body_json(req, KH_BODY_MAX, &body);
        if (r < 0)
                return r;
        if (!json_is_object(body))
                return -KH_E_INVALID_BODY;
        r = member(body, "type", &type);
        if (r >= 0)
                r = string_member(body, "name", false, KH_DEVICE_NAME_MAX, &name);
        if (r >= 0)
                r = string_member(body, "identifier", false, KH_DEVICE_IDENTIFIER_MAX, &identifier);
        if (r < 0)
                return r;
        if (!json_is_integer(type) || json_integer_value(type) < 0 || json_integer_value(type) > 1000 ||
            !kh_device_identifier_is_valid(identifier, strlen(identifier)) || !name[0])
                return -KH_E_INVALID_BODY;
        token_email(req, email);
        r = kh_devices_register(req->worker->svc, req->tenant, who->sub, identifier, name,
                                (int) json_integer_value(type), email[0] ? email : NULL, &doc);
        return r < 0 ? r : reply_device(req, doc, false);
}

int kh_route_device_get(struct kh_http_req *req, const struct kh_principal *who) {
        char id[37];
        json_t *doc;
        int r;

        req->action = "device.get";
        r = guid_param(req, 0, -KH_E_DEVICE_NOT_FOUND, id);
        if (r >= 0)
                r = kh_devices_get(req->worker->svc, req->tenant, who->sub, id, true, &doc);
        return r < 0 ? r : reply_device(req, doc, false);
}

int kh_route_device_by_identifier(struct kh_http_req *req, const struct kh_principal *who) {
        const char *identifier;
        json_t *doc;
        int r = identifier_param(req, 0, &identifier);

        if (r >= 0)
                r = kh_devices_get(req->worker->svc, req->tenant, who->sub, identifier, false, &doc);
        return r < 0 ? r : reply_device(req, doc, false);
}

int kh_route_device_keys(struct kh_http_req *req, const struct kh_principal *who) {
        json_auto_t *body = NULL;
        struct kh_device_keys keys;
        const char *identifier;
        json_t *doc;
        int r;

        req->action = "device.trust";
        r = identifier_param(req, 0, &identifier);
        if (r >= 0)
                r = body_json(req, KH_BODY_MAX, &body);
        if (r < 0)
                return r;
        if (!json_is_object(body))
                return -KH_E_INVALID_BODY;
        r = encstring_member(body, "encryptedUserKey", RSA_TYPES, false, &keys.encrypted_user_key);
        if (r >= 0)
                r = encstring_member(body, "encryptedPublicKey", SYM_TYPES, false,
                                     &keys.encrypted_public_key);
        if (r >= 0)
                r = encstring_member(body, "encryptedPrivateKey", SYM_TYPES, false,
                                     &keys.encrypted_private_key);
        if (r >= 0)
                r = kh_devices_set_keys(req->worker->svc, req->tenant, who->sub, identifier, &keys,
                                        &doc);
        return r < 0 ? r : reply_device(req, doc, false);
}

int kh_route_device_retrieve_keys(struct kh_http_req *req, const struct kh_principal *who) {
        const char *identifier;
        json_t *doc;
        int r;

        /* older clients sent a secret-verification body: accepted and ignored (section 3) */
        if (req->h2o->entity.len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        r = identifier_param(req, 0, &identifier);
        if (r >= 0)
                r = kh_devices_get(req->worker->svc, req->tenant, who->sub, identifier, false, &doc);
        return r < 0 ? r : reply_device(req, doc, true);
}

/* One {deviceId?, encryptedPublicKey, encryptedUserKey} of update-trust. */
static int trust_update(const json_t *o, bool other, struct kh_device_trust_update *ret) {
        int r;

        if (!json_is_object(o))
                return -KH_E_INVALID_BODY;
        *ret = (struct kh_device_trust_update) { 0 };
        r = encstring_member(o, "encryptedUserKey", RSA_TYPES, false, &ret->keys.encrypted_user_key);
        if (r >= 0)
                r = encstring_member(o, "encryptedPublicKey", SYM_TYPES, false,
                                     &ret->keys.encrypted_public_key);
        if (r >= 0 && other) {
                r = string_member(o, "deviceId", false, 36, &ret->device_id);
                if (r >= 0 && kh_parse_guid(ret->device_id, strlen(ret->device_id),
                                            (char[37]) { 0 }) < 0)
                        r = -KH_E_INVALID_BODY;
        }
        return r;
}

int kh_route_devices_update_trust(struct kh_http_req *req, const struct kh_principal *who) {
        json_auto_t *body = NULL;
        struct kh_device_trust_update current, *others = NULL;
        const json_t *list, *flag;
        const char *identifier;
        size_t n = 0;
        int r;

        r = body_json(req, LIST_BODY_MAX, &body);
        if (r < 0)
                return r;
        r = device_header(req, &identifier);
        if (r < 0)
                return r;
        if (!json_is_object(body))
                return -KH_E_INVALID_BODY;
        r = member(body, "currentDevice", &list);
        if (r >= 0)
                r = trust_update(list, false, &current);
        if (r >= 0)
                r = member(body, "otherDevices", &list);
        if (r < 0)
                return r;
        if (list && !json_is_null(list)) {
                const json_t *o;
                size_t i;

                if (!json_is_array(list) || json_array_size(list) > KH_DEVICES_PER_MEMBER_MAX)
                        return -KH_E_INVALID_BODY;
                n = json_array_size(list);
                others = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*others) * (n ? n : 1));
                json_array_foreach(list, i, o) {
                        r = trust_update(o, true, &others[i]);
                        if (r < 0)
                                return r;
                }
        }
        r = member(body, "untrustUnlisted", &flag);
        if (r < 0)
                return r;
        if (flag && !json_is_boolean(flag))
                return -KH_E_INVALID_BODY;
        r = kh_devices_update_trust(req->worker->svc, req->tenant, who->sub, identifier,
                                    &current.keys, others, n, flag && json_is_true(flag));
        return r < 0 ? r : reply_empty(req);
}

int kh_route_devices_untrust(struct kh_http_req *req, const struct kh_principal *who) {
        json_auto_t *body = NULL;
        const json_t *list, *v;
        const char **ids;
        size_t i;
        int r;

        r = body_json(req, LIST_BODY_MAX, &body);
        if (r < 0)
                return r;
        if (!json_is_object(body))
                return -KH_E_INVALID_BODY;
        r = member(body, "devices", &list);
        if (r < 0)
                return r;
        if (!json_is_array(list) || json_array_size(list) > KH_DEVICES_PER_MEMBER_MAX)
                return -KH_E_INVALID_BODY;
        ids = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*ids) * (json_array_size(list) + 1));
        json_array_foreach(list, i, v) {
                char *id = h2o_mem_alloc_pool(&req->h2o->pool, 37);
                if (!json_is_string(v) ||
                    kh_parse_guid(json_string_value(v), json_string_length(v), id) < 0)
                        return -KH_E_INVALID_BODY;
                ids[i] = id;
        }
        r = kh_devices_untrust(req->worker->svc, req->tenant, who->sub, ids, json_array_size(list));
        return r < 0 ? r : reply_empty(req);
}

int kh_route_devices_lost_trust(struct kh_http_req *req, const struct kh_principal *who) {
        (void) who;
        /* Bitwarden only logs it; so does keyhold, in the audit record of this request */
        if (!header(req, H2O_STRLIT("device-identifier")) || !header(req, H2O_STRLIT("device-type")))
                return -KH_E_DEVICE_HEADERS;
        if (req->h2o->entity.len > KH_BODY_MAX)
                return -KH_E_BODY_TOO_LARGE;
        return reply_empty(req);
}

int kh_route_device_delete(struct kh_http_req *req, const struct kh_principal *who) {
        char id[37];
        int r = no_body(req);

        if (r >= 0)
                r = guid_param(req, 0, -KH_E_DEVICE_NOT_FOUND, id);
        if (r >= 0)
                r = kh_devices_delete(req->worker->svc, req->tenant, who->sub, id);
        return r < 0 ? r : reply_empty(req);
}

/* GET /devices/knowndevice (anonymous): X-Request-Email is base64url of the e-mail (with or
 * without padding), X-Device-Identifier the device. Answers JSON true or false. */
int kh_route_devices_known(struct kh_http_req *req, const struct kh_principal *who) {
        const h2o_iovec_t *e = header(req, H2O_STRLIT("x-request-email"));
        const h2o_iovec_t *d = header(req, H2O_STRLIT("x-device-identifier"));
        KH_CLEANUP(kh_buf_freep) struct kh_buf email;
        char user[37], *identifier;
        size_t len;
        int r;

        (void) who;
        if (!e || !d)
                return -KH_E_DEVICE_HEADERS;
        len = e->len;
        while (len > 0 && e->base[len - 1] == '=')
                len--;
        kh_buf_init(&email, 256, false);
        if (kh_base64url_decode(e->base, len, &email) < 0 || email.len == 0 ||
            memchr(email.data, 0, email.len) || kh_buf_append(&email, "", 1) < 0)
                return -KH_E_BAD_REQUEST;
        r = 0;
        if (kh_device_identifier_is_valid(d->base, d->len)) {
                identifier = h2o_strdup(&req->h2o->pool, d->base, d->len).base;
                r = kh_devices_find_member(req->worker->svc, req->tenant,
                                           (const char *) email.data, identifier, user);
                if (r < 0)
                        return r;
        }
        kh_http_reply(req, 200, JSON_TYPE, r ? "true" : "false", r ? 4 : 5, false);
        return 0;
}

/* ---- account recovery (member) ---- */

/* GET organizations/{orgId}/public-key: made in the key store on first use, so on the job
 * pool. */
struct public_key_op {
        struct kh_job job;
        struct kh_http_req req;           /* a copy: the handler's frame is gone by then */
        struct kh_request_target target;
        uint64_t start_ns;
        struct kh_buf spki;
};

static void public_key_run(struct kh_job *job) {
        struct public_key_op *op = kh_container_of(job, struct public_key_op, job);

        job->result = kh_recovery_public_key(kh_service_app(op->req.worker->svc), op->req.tenant,
                                             &op->spki);
}

static void public_key_done(struct kh_job *job) {
        struct public_key_op *op = kh_container_of(job, struct public_key_op, job);
        KH_CLEANUP(kh_buf_freep) struct kh_buf b64;
        int r = job->result;

        kh_buf_init(&b64, 4096, false);
        if (r >= 0)
                r = kh_base64_encode(op->spki.data, op->spki.len, &b64);
        if (r >= 0 && kh_buf_append(&b64, "", 1) >= 0)
                r = reply_doc(&op->req, 200,
                              json_pack("{ss ss}", "object", "organizationPublicKey", "publicKey",
                                        (const char *) b64.data));
        else if (r >= 0)
                r = -ENOMEM;
        kh_buf_free(&op->spki);
        if (r == -ECANCELED || r == -EAGAIN)
                r = -KH_E_NOT_READY;
        kh_http_finish(&op->req, r, op->start_ns);
}

int kh_route_org_public_key(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_app *app = kh_service_app(req->worker->svc);
        struct public_key_op *op;
        int r;

        (void) who;
        r = org_check(req);
        if (r < 0)
                return r;
        if (kh_app_sealed(app))
                return -KH_E_SEALED;
        op = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*op));
        memset(op, 0, sizeof(*op));
        op->req = *req;
        op->target = *req->target;
        op->req.target = &op->target;
        op->start_ns = kh_http_now_ns();
        kh_buf_init(&op->spki, 4096, false);
        op->job = (struct kh_job) { .run = public_key_run, .done = public_key_done };
        r = kh_jobs_submit(kh_app_jobs(app), req->worker->loop, &op->job);
        if (r < 0) {
                kh_buf_free(&op->spki);
                return r == -EAGAIN ? -KH_E_NOT_READY : r;
        }
        return KH_HTTP_DEFERRED;
}

/* Whether s is an RSA EncString (type 3 or 4) of one RSA-2048 block: what a user key
 * encrypted to the recovery key is. */
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

int kh_route_org_enrol(struct kh_http_req *req, const struct kh_principal *who) {
        json_auto_t *body = NULL;
        const char *key;
        char user[37];
        int r;

        r = org_check(req);
        if (r < 0)
                return r;
        r = guid_param(req, 1, -KH_E_NOT_YOUR_ACCOUNT, user);
        if (r < 0)
                return r;
        if (strcmp(user, who->sub) != 0)
                return -KH_E_NOT_YOUR_ACCOUNT;
        r = body_json(req, KH_BODY_MAX, &body);
        if (r < 0)
                return r;
        if (!json_is_object(body))
                return -KH_E_INVALID_BODY;
        /* masterPasswordHash is accepted and ignored: the token authenticates (section 8) */
        r = string_member(body, "resetPasswordKey", true, ENCSTRING_MAX, &key);
        if (r < 0)
                return r;
        if (key && !key[0])
                key = NULL;                    /* empty: withdraws, as null does */
        if (key && !recovery_key_ok(key))
                return -KH_E_INVALID_ENCSTRING;
        req->action = key ? "recovery.enrol" : "recovery.withdraw";
        r = kh_recovery_enrol(req->worker->svc, req->tenant, who->sub, key);
        return r < 0 ? r : reply_empty(req);
}

/* ---- a member's devices and leaving (admin) ---- */

int kh_route_admin_member_devices(struct kh_http_req *req, const struct kh_principal *who) {
        json_t *docs, *data, *d;
        char user[37];
        size_t i;
        int r;

        (void) who;
        r = guid_param(req, 0, -KH_E_INVALID_SUBJECT, user);
        if (r >= 0)
                r = kh_devices_list(req->worker->svc, req->tenant, user, &docs);
        if (r < 0)
                return r;
        data = json_array();
        json_array_foreach(docs, i, d) {
                json_t *m = device_model(d, false);
                if (!m || json_array_append_new(data, m) < 0) {
                        json_decref(m);
                        json_decref(data);
                        data = NULL;
                        break;
                }
        }
        json_decref(docs);
        return data ? reply_doc(req, 200, json_pack("{ss so}", "user", user, "devices", data))
                    : -ENOMEM;
}

int kh_route_admin_member_device_untrust(struct kh_http_req *req, const struct kh_principal *who) {
        char user[37], id[37];
        const char *ids[1] = { id };
        int r;

        (void) who;
        r = no_body(req);
        if (r >= 0)
                r = guid_param(req, 0, -KH_E_INVALID_SUBJECT, user);
        if (r >= 0)
                r = guid_param(req, 1, -KH_E_DEVICE_NOT_FOUND, id);
        if (r >= 0)
                r = kh_devices_untrust(req->worker->svc, req->tenant, user, ids, 1);
        if (r < 0)
                return r;
        return reply_doc(req, 200, json_pack("{ss ss sb}", "user", user, "device", id, "trusted", 0));
}

int kh_route_admin_member_remove(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_member_removed n;
        char user[37];
        int r;

        (void) who;
        r = no_body(req);
        if (r >= 0)
                r = guid_param(req, 0, -KH_E_INVALID_SUBJECT, user);
        if (r >= 0)
                r = kh_member_remove(req->worker->svc, req->tenant, user, &n);
        if (r < 0)
                return r;
        return reply_doc(req, 200,
                         json_pack("{ss s{sI sI sI sI}}", "user", user, "removed", "keys",
                                   (json_int_t) n.keys, "devices", (json_int_t) n.devices,
                                   "requests", (json_int_t) n.requests, "enrolments",
                                   (json_int_t) n.enrolments));
}
