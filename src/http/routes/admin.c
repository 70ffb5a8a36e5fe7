/* The admin routes (docs/admin-api.md) and a member's access history: each parses its query,
 * calls one service function and encodes the answer as JSON. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "common/errors.h"
#include "http/http-internal.h"
#include "http/request.h"
#include "common/parse.h"
#include "service/admin.h"
#include "service/history.h"
#include "service/ksmigrate.h"
#include "service/lifecycle.h"
#include "service/reencrypt.h"
#include "service/stats.h"

#define JSON_TYPE "application/json; charset=utf-8"

/* The query string of req (without the '?'), or an empty one. */
static void query_of(const struct kh_http_req *req, const char **ret, size_t *ret_len) {
        const h2o_req_t *h = req->h2o;

        if (h->query_at == SIZE_MAX) {
                *ret = "";
                *ret_len = 0;
                return;
        }
        *ret = h->path.base + h->query_at + 1;
        *ret_len = h->path.len - h->query_at - 1;
}

static int parse_query(const struct kh_http_req *req, struct kh_query_param *params, size_t n) {
        const char *q;
        size_t len;

        query_of(req, &q, &len);
        return kh_http_query_parse(q, len, params, n);
}

/* Whose chain a route reads: the server's for the /server/ routes. */
static uint32_t chain_of(const struct kh_http_req *req) {
        return req->target->route->scope == KH_SCOPE_SERVER ? KH_AUDIT_SERVER_CHAIN
                                                            : (uint32_t) req->tenant->index;
}

static int reply_json(struct kh_http_req *req, json_t *doc) {
        char *text;

        if (!doc)
                return -ENOMEM;
        text = json_dumps(doc, JSON_COMPACT);
        json_decref(doc);
        if (!text)
                return -ENOMEM;
        kh_http_reply(req, 200, JSON_TYPE, text, strlen(text), false);
        free(text);
        return 0;
}

static json_t *json_time(int64_t unix_s) {
        char buf[KH_AUDIT_TIME_LEN + 1];
        struct tm tm;
        time_t t = (time_t) unix_s;

        if (!gmtime_r(&t, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return json_null();
        return json_string(buf);
}

/* "keystore": the driver serving now and the tenant's last migration to it (or null), which
 * the hsm-vulnerability playbook reads: {"driver", "migration": {"from", "to", "started",
 * "finished" (null while unfinished), "versions": [moved]}}. */
static json_t *keystore_json(struct kh_http_req *req) {
        struct kh_ksmigrate_marker m;
        json_t *migration = json_null(), *versions;
        int r;

        r = kh_admin_keystore_migration(req->worker->svc, req->tenant, &m);
        if (r == 0 && (versions = json_array())) {
                for (size_t i = 0; i < m.n; i++)
                        (void) json_array_append_new(versions, json_integer(m.versions[i]));
                migration = json_pack("{ss ss so so so}", "from", m.from, "to", m.to, "started",
                                      json_time(m.started), "finished",
                                      m.finished ? json_time(m.finished) : json_null(),
                                      "versions", versions);
        }
        return json_pack("{ss so}", "driver",
                         kh_app_config(kh_service_app(req->worker->svc))->keystore.driver,
                         "migration", migration ? migration : json_null());
}

int kh_route_admin_keys(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP_FREE struct kh_keys_status *st = NULL;
        struct kh_job_progress job;
        json_t *doc, *versions;
        int r;

        (void) who;
        r = parse_query(req, NULL, 0);
        if (r < 0)
                return r;
        st = malloc(sizeof(*st));
        if (!st)
                return -ENOMEM;
        r = kh_admin_keys_status(req->worker->svc, req->tenant, st);
        if (r < 0)
                return r;

        versions = json_array();
        for (size_t i = 0; versions && i < st->n; i++) {
                const struct kh_key_status *v = &st->versions[i];
                char alg[32];

                if (v->rsa_bits)
                        (void) snprintf(alg, sizeof(alg), "rsa-%u", v->rsa_bits);
                else
                        (void) snprintf(alg, sizeof(alg), "rsa");
                if (json_array_append_new(versions, json_pack("{sI ss ss so sI sI sI}",
                                "version", (json_int_t) v->version,
                                "state", kh_key_state_name(v->state),
                                "algorithm", alg,
                                "created", json_time(v->created),
                                "records", (json_int_t) v->records,
                                "encrypts", (json_int_t) v->encrypts,
                                "decrypts", (json_int_t) v->decrypts)) < 0) {
                        json_decref(versions);
                        return -ENOMEM;
                }
        }
        if (!versions)
                return -ENOMEM;
        kh_key_job_progress(kh_service_app(req->worker->svc), req->tenant, &job);
        doc = json_pack("{so so sb so* s{ss sI sI sI sI sI sf so}}",
                        "active", st->active ? json_integer(st->active) : json_null(),
                        "versions", versions,
                        "sealed", kh_app_sealed(kh_service_app(req->worker->svc)),
                        "keystore", keystore_json(req),
                        "job", "state", kh_job_state_name(job.state),
                        "target", (json_int_t) job.target,
                        "moved", (json_int_t) job.moved, "skipped", (json_int_t) job.skipped,
                        "failed", (json_int_t) job.failed, "total", (json_int_t) job.total,
                        "rate", job.rate,
                        "eta_s", job.eta_s >= 0 ? json_integer(job.eta_s) : json_null());
        return reply_json(req, doc);
}

int kh_route_admin_audit(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_query_param q[] = {
                { .name = "since", .max = INT64_MAX },
                { .name = "limit", .max = KH_AUDIT_PAGE_MAX },
                { .name = "last", .max = KH_AUDIT_PAGE_MAX },
                { .name = "replica", .name_max = KH_AUDIT_REPLICA_MAX },
        };
        KH_CLEANUP(kh_buf_freep) struct kh_buf body = { 0 }, replicas = { 0 };
        struct kh_audit_page page;
        uint64_t limit = KH_AUDIT_PAGE_DEFAULT;
        char tail[96];
        int r;

        (void) who;
        r = parse_query(req, q, KH_ELEMENTSOF(q));
        if (r < 0)
                return r;
        if ((q[0].present && q[2].present) || (q[1].present && q[1].value == 0) ||
            (q[2].present && q[2].value == 0) || (q[0].present && q[0].value == 0))
                return -KH_E_INVALID_PARAMETER;
        if (q[1].present)
                limit = q[1].value;
        if (q[2].present)
                limit = q[2].value;

        /* the stored lines are the records' JSON already: read them behind the opening
         * of the answer, then make each newline a comma */
        kh_buf_init(&body, (size_t) 64 << 20, false);
        r = kh_buf_append_str(&body, "{\"records\":[");
        if (r < 0)
                return r;
        r = kh_audit_read(req->worker->svc, chain_of(req), q[3].present ? q[3].text : NULL,
                          q[0].present ? q[0].value : 1, q[2].present ? q[2].value : 0,
                          (size_t) limit, &body, &page);
        if (r < 0)
                return r;
        /* the replicas whose chains the database holds besides the unnamed one, for the
         * reader that wants them all (keyhold audit export) */
        kh_buf_init(&replicas, KH_STORE_META_VALUE_MAX, false);
        r = kh_audit_replica_names(req->worker->svc, &replicas);
        if (r < 0)
                return r;
        for (size_t i = sizeof("{\"records\":[") - 1; i < body.len; i++)
                if (body.data[i] == '\n')
                        body.data[i] = ',';
        if (page.n)
                body.len--;      /* the last comma */
        (void) snprintf(tail, sizeof(tail), "],\"next\":%" PRIu64 ",\"head\":%" PRIu64
                        ",\"replicas\":[", page.next, page.head);
        r = kh_buf_append_str(&body, tail);
        /* names of [a-z0-9-] (kh_audit_replica_is_valid()): nothing to escape */
        for (size_t i = 0; r >= 0 && i < replicas.len;) {
                size_t j = i;

                while (j < replicas.len && replicas.data[j] != ' ')
                        j++;
                r = kh_buf_append(&body, i ? ",\"" : "\"", i ? 2 : 1);
                if (r >= 0)
                        r = kh_buf_append(&body, replicas.data + i, j - i);
                if (r >= 0)
                        r = kh_buf_append(&body, "\"", 1);
                i = j + 1;
        }
        if (r >= 0)
                r = kh_buf_append_str(&body, "]}");
        if (r < 0)
                return r;
        kh_http_reply(req, 200, JSON_TYPE, body.data, body.len, false);
        return 0;
}

int kh_route_admin_audit_public_key(struct kh_http_req *req, const struct kh_principal *who) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf pem = { 0 };
        const char *algorithm = NULL;
        int r;

        (void) who;
        r = parse_query(req, NULL, 0);
        if (r < 0)
                return r;
        kh_buf_init(&pem, 16 * 1024, false);
        r = kh_auditor_public_key(kh_app_auditor(kh_service_app(req->worker->svc)),
                                  chain_of(req), &pem, &algorithm);
        if (r < 0)
                return r;
        if (kh_buf_append(&pem, "", 1) < 0)
                return -ENOMEM;
        return reply_json(req, json_pack("{ss ss}", "pem", (const char *) pem.data,
                                         "algorithm", algorithm));
}

/* A cursor as the answer carries it: the seq of the unnamed replica's chain as a number
 * (the form clients of a single server know), any other as a string. */
static json_t *cursor_json(const struct kh_buf *next) {
        uint64_t seq;

        if (next->len == 0)
                return json_null();
        if (!memchr(next->data, '_', next->len) &&
            kh_parse_u64((const char *) next->data, next->len, INT64_MAX, &seq) == 0)
                return json_integer((json_int_t) seq);
        return json_stringn((const char *) next->data, next->len);
}

int kh_route_user_keys_history(struct kh_http_req *req, const struct kh_principal *who) {
        struct kh_query_param q[] = {
                { .name = "limit", .max = KH_HISTORY_MAX },
                { .name = "before", .token_max = KH_HISTORY_CURSOR_MAX },
        };
        KH_CLEANUP(kh_buf_freep) struct kh_buf next = { 0 };
        KH_CLEANUP_FREE struct kh_history_event *ev = NULL;
        size_t n = 0;
        json_t *events;
        int r;

        r = parse_query(req, q, KH_ELEMENTSOF(q));
        if (r < 0)
                return r;
        if (q[0].present && q[0].value == 0)
                return -KH_E_INVALID_PARAMETER;
        ev = calloc(KH_HISTORY_MAX, sizeof(*ev));
        if (!ev)
                return -ENOMEM;
        kh_buf_init(&next, KH_HISTORY_CURSOR_MAX, false);
        r = kh_audit_history(req->worker->svc, req->tenant, who->sub,
                             q[1].present ? q[1].token : NULL, q[1].token_len,
                             q[0].present ? (size_t) q[0].value : KH_HISTORY_DEFAULT, ev, &n,
                             &next);
        if (r < 0)
                return r;

        events = json_array();
        for (size_t i = 0; events && i < n; i++) {
                json_t *e = json_pack("{sI ss ss ss sI ss ss sI}",
                                "seq", (json_int_t) ev[i].seq, "time", ev[i].time,
                                "action", ev[i].action, "outcome", ev[i].outcome,
                                "key_version", (json_int_t) ev[i].key_version,
                                "client", ev[i].client, "request_id", ev[i].request_id,
                                "count", (json_int_t) ev[i].count);

                /* a named replica's event says whose chain its seq is of, as its record */
                if (e && ev[i].replica[0] &&
                    json_object_set_new(e, "replica", json_string(ev[i].replica)) < 0) {
                        json_decref(e);
                        e = NULL;
                }
                if (json_array_append_new(events, e) < 0) {
                        json_decref(events);
                        return -ENOMEM;
                }
        }
        if (!events)
                return -ENOMEM;
        return reply_json(req, json_pack("{so so}", "events", events, "next_before",
                                         cursor_json(&next)));
}
