/* The device routes of Bitwarden's server (spec/trusted-devices.md sections 3 and 8), the
 * account-recovery enrolment routes, and keyhold's admin routes for a member's devices and
 * a member leaving. Bodies are decoded strictly here; the service keeps the records. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/jobs.h"
#include "common/limits.h"
#include "common/parse.h"
#include "crypto/encoding.h"
#include "http/decode.h"
#include "http/bitwarden-models.h"
#include "http/http-internal.h"
#include "service/devices.h"
#include "service/member-data.h"
#include "service/recovery.h"

#define JSON_TYPE "application/json; charset=utf-8"

/* ---- replies ---- */

static int reply_empty(struct kh_http_req *req) {
        kh_http_reply(req, 200, NULL, NULL, 0, false);
        return 0;
}

static int reply_device(struct kh_http_req *req, json_t *doc, bool protected_) {
        json_t *m = kh_http_device_model(doc, protected_);

        json_decref(doc);
        return m ? kh_http_reply_json_new(req, 200, m) : -ENOMEM;
}

/* ---- request parts ---- */

/* The body, once it is JSON of at most KH_REQ_LIST_BODY_MAX bytes (each decoder has its own,
 * smaller maximum but for the lists). */
static int json_body(struct kh_http_req *req, const char **ret, size_t *ret_len) {
        int r = kh_http_json_body(req, KH_REQ_LIST_BODY_MAX);

        *ret = req->h2o->entity.base;
        *ret_len = req->h2o->entity.len;
        return r;
}

/* The path parameter i as a NUL-terminated copy in the request's pool. */
static const char *param(struct kh_http_req *req, size_t i) {
        const struct kh_slice *p = &req->target->params[i];
        return h2o_strdup(&req->h2o->pool, p->p, p->len).base;
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
        KH_CLEANUP(kh_buf_freep) struct kh_buf payload = { 0 };
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
                json_t *m = kh_http_device_model(d, false);
                /* keyhold answers pending requests on their own routes */
                if (!m || json_object_set_new(m, "devicePendingAuthRequest", json_null()) < 0 ||
                    json_array_append_new(data, m) < 0) {
                        json_decref(m);
                        data = NULL;
                        break;
                }
        }
        json_decref(docs);
        data = kh_http_list_of(data);
        return data ? kh_http_reply_json_new(req, 200, data) : -ENOMEM;
}

int kh_route_devices_register(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_req_doc doc;
        struct kh_req_device dev;
        const char *body;
        char email[256];
        size_t len;
        json_t *stored;
        int r;

        r = json_body(req, &body, &len);
        if (r >= 0)
                r = kh_req_device_parse(body, len, &doc, &dev);
        if (r < 0)
                return r;
        token_email(req, email);
        r = kh_devices_register(req->worker->svc, req->tenant, who->sub, dev.identifier, dev.name,
                                dev.type, email[0] ? email : NULL, &stored);
        kh_req_doc_free(&doc);
        return r < 0 ? r : reply_device(req, stored, false);
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
        struct kh_req_doc doc;
        struct kh_req_trust t;
        const char *identifier, *body;
        size_t len;
        json_t *stored;
        int r;

        req->action = "device.trust";
        r = identifier_param(req, 0, &identifier);
        if (r >= 0)
                r = json_body(req, &body, &len);
        if (r >= 0)
                r = kh_req_device_keys_parse(body, len, &doc, &t);
        if (r < 0)
                return r;
        r = kh_devices_set_keys(req->worker->svc, req->tenant, who->sub, identifier,
                                &(const struct kh_device_keys) {
                                        .encrypted_user_key = t.user_key,
                                        .encrypted_public_key = t.public_key,
                                        .encrypted_private_key = t.private_key,
                                },
                                &stored);
        kh_req_doc_free(&doc);
        return r < 0 ? r : reply_device(req, stored, false);
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

int kh_route_devices_update_trust(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_req_update_trust u;
        struct kh_device_trust_update *others = NULL;
        struct kh_req_doc doc;
        const char *identifier, *body;
        size_t len;
        int r;

        r = json_body(req, &body, &len);
        if (r >= 0)
                r = kh_req_update_trust_parse(body, len, &doc, &u);
        if (r < 0)
                return r;
        r = device_header(req, &identifier);
        if (r >= 0 && u.n_others > 0) {
                others = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*others) * u.n_others);
                for (size_t i = 0; i < u.n_others; i++)
                        others[i] = (struct kh_device_trust_update) {
                                .device_id = u.others[i].device_id,
                                .keys = { .encrypted_user_key = u.others[i].user_key,
                                          .encrypted_public_key = u.others[i].public_key },
                        };
        }
        if (r >= 0)
                r = kh_devices_update_trust(req->worker->svc, req->tenant, who->sub, identifier,
                                            &(const struct kh_device_keys) {
                                                    .encrypted_user_key = u.current.user_key,
                                                    .encrypted_public_key = u.current.public_key,
                                            },
                                            others, u.n_others, u.untrust_unlisted);
        kh_req_update_trust_free(&u);
        kh_req_doc_free(&doc);
        return r < 0 ? r : reply_empty(req);
}

int kh_route_devices_untrust(struct kh_http_req *req, const struct kh_principal *who) {
        char (*ids)[37] = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*ids) * KH_REQ_DEVICES_MAX);
        const char **list = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*list) * KH_REQ_DEVICES_MAX);
        const char *body;
        size_t len, n;
        int r;

        r = json_body(req, &body, &len);
        if (r >= 0)
                r = kh_req_untrust_parse(body, len, ids, &n);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                list[i] = ids[i];
        r = kh_devices_untrust(req->worker->svc, req->tenant, who->sub, list, n);
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
        int r = kh_http_no_body(req);

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
        KH_CLEANUP(kh_buf_freep) struct kh_buf email = { 0 };
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
                r = kh_http_reply_json_new(&op->req, 200,
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
        r = kh_http_org_check(req);
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

int kh_route_org_enrol(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_req_doc doc;
        const char *key, *body;
        char user[37];
        size_t len;
        int r;

        r = kh_http_org_check(req);
        if (r >= 0)
                r = guid_param(req, 1, -KH_E_NOT_YOUR_ACCOUNT, user);
        if (r >= 0 && strcmp(user, who->sub) != 0)
                r = -KH_E_NOT_YOUR_ACCOUNT;
        if (r >= 0)
                r = json_body(req, &body, &len);
        /* masterPasswordHash is accepted and ignored: the token authenticates (section 8) */
        if (r >= 0)
                r = kh_req_enrol_parse(body, len, &doc, &key);
        if (r < 0)
                return r;
        req->action = key ? "recovery.enrol" : "recovery.withdraw";
        r = kh_recovery_enrol(req->worker->svc, req->tenant, who->sub, key);
        kh_req_doc_free(&doc);
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
                json_t *m = kh_http_device_model(d, false);
                if (!m || json_array_append_new(data, m) < 0) {
                        json_decref(m);
                        json_decref(data);
                        data = NULL;
                        break;
                }
        }
        json_decref(docs);
        return data ? kh_http_reply_json_new(req, 200, json_pack("{ss so}", "user", user, "devices", data))
                    : -ENOMEM;
}

int kh_route_admin_member_device_untrust(struct kh_http_req *req, const struct kh_principal *who) {
        char user[37], id[37];
        const char *ids[1] = { id };
        int r;

        (void) who;
        r = kh_http_no_body(req);
        if (r >= 0)
                r = guid_param(req, 0, -KH_E_INVALID_SUBJECT, user);
        if (r >= 0)
                r = guid_param(req, 1, -KH_E_DEVICE_NOT_FOUND, id);
        if (r >= 0)
                r = kh_devices_untrust(req->worker->svc, req->tenant, user, ids, 1);
        if (r < 0)
                return r;
        return kh_http_reply_json_new(req, 200, json_pack("{ss ss sb}", "user", user, "device", id, "trusted", 0));
}

int kh_route_admin_member_remove(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_member_removed n;
        char user[37];
        int r;

        (void) who;
        r = kh_http_no_body(req);
        if (r >= 0)
                r = guid_param(req, 0, -KH_E_INVALID_SUBJECT, user);
        if (r >= 0)
                r = kh_member_remove(req->worker->svc, req->tenant, user, &n);
        if (r < 0)
                return r;
        return kh_http_reply_json_new(req, 200,
                         json_pack("{ss s{sI sI sI sI}}", "user", user, "removed", "keys",
                                   (json_int_t) n.keys, "devices", (json_int_t) n.devices,
                                   "requests", (json_int_t) n.requests, "enrolments",
                                   (json_int_t) n.enrolments));
}
