/* Routing: routes are data. The router resolves /t/{tenant} (404 unknown_tenant before
 * authentication, so tenant names are not secret), applies CORS, authenticates before any
 * handler runs, and turns every error a handler returns into a reply in one place. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/limits.h"
#include "http/http-internal.h"
#include "http/request.h"
#include "service/service.h"

static bool iov_eq(h2o_iovec_t v, const char *s) {
        size_t n = strlen(s);
        return v.len == n && memcmp(v.base, s, n) == 0;
}

static const struct kh_route_handlers handlers[KH_ROUTE_NONE] = {
#define KH_ROUTE(id, pattern, auth, scope, ...) [KH_ROUTE_##id] = { __VA_ARGS__ },
#include "http/routes.def"
#undef KH_ROUTE
};

static const unsigned all_methods[] = { KH_GET, KH_POST, KH_PUT, KH_DELETE, KH_PATCH };

static unsigned method_of(const h2o_req_t *h) {
        return kh_http_method_parse(h->method.base, h->method.len);
}

static kh_route_fn handler_of(enum kh_route_id id, unsigned method) {
        const struct kh_route_handlers *h = &handlers[id];

        switch (method) {
        case KH_GET: return h->get;
        case KH_POST: return h->post;
        case KH_PUT: return h->put;
        case KH_DELETE: return h->delete_;
        case KH_PATCH: return h->patch;
        default: return NULL;
        }
}

/* The methods a route answers: those it has a handler for. */
static unsigned methods_of(enum kh_route_id id) {
        unsigned mask = 0;

        for (size_t i = 0; i < KH_ELEMENTSOF(all_methods); i++)
                if (handler_of(id, all_methods[i]))
                        mask |= all_methods[i];
        return mask;
}

/* "GET, POST, PUT": the route's methods, copied into the request's pool. */
static void add_allow(struct kh_http_req *req, unsigned mask) {
        char text[KH_ALLOW_BUF];
        size_t n = kh_http_allow_format(mask, text);
        h2o_iovec_t v = h2o_strdup(&req->h2o->pool, text, n);

        kh_http_add_header(req, H2O_TOKEN_ALLOW, v.base, v.len);
}

uint64_t kh_http_now_ns(void) {
        struct timespec ts;
        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static bool origin_allowed(const struct kh_http_req *req, const h2o_iovec_t *origin) {
        const struct kh_config_server *scfg = req->worker->server->cfg;
        const struct kh_config_tenant *tcfg = req->tenant ? req->tenant->config : NULL;

        for (size_t i = 0; i < scfg->n_cors_origins; i++)
                if (iov_eq(*origin, scfg->cors_origins[i]))
                        return true;
        for (size_t i = 0; tcfg && i < tcfg->n_cors_origins; i++)
                if (iov_eq(*origin, tcfg->cors_origins[i]))
                        return true;
        return false;
}

static bool requested_method_answered(const struct kh_route *route, const h2o_iovec_t *m) {
        return (methods_of(route->id) & kh_http_method_parse(m->base, m->len)) != 0;
}

/* CORS as Bitwarden's Key Connector does it (spec section 4), with Vary: Origin always. A
 * preflight gets the requested method and headers back when the route answers that method.
 * Returns true if this was a preflight, which has then been answered. */
static bool apply_cors(struct kh_http_req *req, const struct kh_route *route) {
        ssize_t oi = h2o_find_header_by_str(&req->h2o->headers, H2O_STRLIT("origin"), -1);
        const h2o_iovec_t *origin = oi < 0 ? NULL : &req->h2o->headers.entries[oi].value;
        bool allowed = origin && origin_allowed(req, origin);
        bool preflight = iov_eq(req->h2o->method, "OPTIONS");

        kh_http_add_header(req, H2O_TOKEN_VARY, H2O_STRLIT("Origin"));
        if (allowed) {
                kh_http_add_header(req, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, origin->base, origin->len);
                kh_http_add_header_str(req, "access-control-allow-credentials", H2O_STRLIT("true"));
        }
        if (!preflight || !route)
                return false;

        if (allowed) {
                ssize_t m = h2o_find_header_by_str(&req->h2o->headers,
                                                   H2O_STRLIT("access-control-request-method"), -1);
                ssize_t h = h2o_find_header_by_str(&req->h2o->headers,
                                                   H2O_STRLIT("access-control-request-headers"), -1);
                if (m >= 0 && !requested_method_answered(route, &req->h2o->headers.entries[m].value))
                        m = h = -1;
                if (m >= 0)
                        kh_http_add_header_str(req, "access-control-allow-methods",
                                               req->h2o->headers.entries[m].value.base,
                                               req->h2o->headers.entries[m].value.len);
                if (h >= 0)
                        kh_http_add_header_str(req, "access-control-allow-headers",
                                               req->h2o->headers.entries[h].value.base,
                                               req->h2o->headers.entries[h].value.len);
        }
        kh_http_reply(req, 204, NULL, NULL, 0, false);
        return true;
}

static size_t header_count(const h2o_req_t *h, const h2o_token_t *token) {
        size_t n = 0;

        for (ssize_t i = -1; (i = h2o_find_header(&h->headers, token, i)) >= 0;)
                n++;
        return n;
}

static size_t headers_size(const h2o_req_t *h) {
        size_t total = 0;

        for (size_t i = 0; i < h->headers.size; i++)
                total += h->headers.entries[i].name->len + h->headers.entries[i].value.len + 4;
        return total;
}

/* RFC 7230 5.4: a server must answer 400 to an HTTP/1.1 request without Host. h2o 2.2.5
 * takes Host out of the headers into input.authority and, when there is none, points that
 * at the authority of the host configuration instead; a Host sent by the client (even an
 * empty one, which is legal) points into the request's own bytes. */
static bool lacks_host(const h2o_req_t *h) {
        return h->version >= 0x101 && h->hostconf &&
               h->input.authority.base == h->hostconf->authority.hostport.base;
}

/* Whether a listener serves a route at all: the public one no operator route, the metrics
 * one only /metrics, the operator socket everything. Elsewhere a route does not exist. */
static bool served_on(const struct kh_route *route, enum kh_listener_kind listener) {
        switch (listener) {
        case KH_LISTENER_PUBLIC:
                return route->auth != KH_AUTH_OPERATOR;
        case KH_LISTENER_METRICS:
                return route->id == KH_ROUTE_METRICS;
        case KH_LISTENER_OPERATOR:
        case KH_LISTENER_KINDS_:
                break;
        }
        return true;
}

/* Authenticates the caller as the route's row demands (routes.def), into req->who. On the
 * operator socket the caller is the operator: administrator of every tenant, without a
 * token. */
static int authenticate(struct kh_http_req *req, enum kh_auth auth) {
        struct kh_principal *who = &req->who;
        const h2o_iovec_t *authz;
        const char *token;
        size_t token_len;
        int r;

        memset(who, 0, sizeof(*who));
        switch (auth) {
        case KH_AUTH_NONE:
        case KH_AUTH_OPERATOR:           /* served_on() let only the right listener here */
                return 0;
        case KH_AUTH_ADMIN:
                if (req->listener == KH_LISTENER_OPERATOR) {
                        who->admin = true;
                        who->approver = true;
                        return 0;
                }
                break;
        case KH_AUTH_OPTIONAL:
                if (!kh_http_header(req, H2O_TOKEN_AUTHORIZATION))
                        return 0;        /* anonymous */
                break;
        case KH_AUTH_MEMBER:
                break;
        }
        if (!req->tenant)
                return -KH_E_UNKNOWN_TENANT;
        /* Two credentials are ambiguous: a proxy in front may have checked the other. */
        if (header_count(req->h2o, H2O_TOKEN_AUTHORIZATION) > 1 ||
            header_count(req->h2o, H2O_TOKEN_CONTENT_TYPE) > 1)
                return -KH_E_BAD_REQUEST;
        authz = kh_http_header(req, H2O_TOKEN_AUTHORIZATION);
        r = kh_http_bearer_parse(authz ? authz->base : NULL, authz ? authz->len : 0, &token,
                                 &token_len);
        if (r == -KH_E_INVALID_TOKEN)
                kh_service_count_token_rejection(req->worker->svc);
        if (r < 0)
                return r;
        return kh_service_authenticate(req->worker->svc, req->tenant, token, token_len,
                                       (int64_t) time(NULL),
                                       auth == KH_AUTH_ADMIN ? KH_CALLER_ADMIN : KH_CALLER_MEMBER,
                                       who);     /* KH_SERVICE_WAIT: no principal yet */
}

/* h2o 2.2.5 hides Content-Length and Transfer-Encoding from handlers (it frames the body
 * itself, taking Transfer-Encoding over Content-Length and the first of two lengths). To see
 * what the client sent, read the request head where h2o parsed it: an HTTP/1 connection of
 * h2o begins with its h2o_conn_t and its socket (lib/http1.c), whose input buffer starts
 * with the request being handled (h2o consumes it only after the response). The socket's
 * back pointer to the connection confirms the layout before anything is read. */
struct h2o_http1_conn_head {
        h2o_conn_t super;
        h2o_socket_t *sock;
};

/* The socket of h's HTTP/1 connection, or NULL when the layout is not the one we know. */
static h2o_socket_t *http1_socket(const h2o_req_t *h) {
        const struct h2o_http1_conn_head *c = (const void *) h->conn;

        return c->sock && c->sock->data == (void *) h->conn ? c->sock : NULL;
}

static int check_framing(const h2o_req_t *h) {
        const h2o_socket_t *sock = http1_socket(h);

        if (!sock || !sock->input || !sock->input->bytes)
                return 0;          /* not the layout we know: h2o's own framing stands */
        return kh_http_framing_check(sock->input->bytes, sock->input->size);
}

/* ---- audit ---- */

/* The uid of the process at the other end of the operator socket: SO_PEERCRED of the
 * connection's socket (reached as check_framing() does). UINT32_MAX when not known. */
static uint32_t operator_uid(const h2o_req_t *h) {
        h2o_socket_t *sock = http1_socket(h);
        struct ucred cred;
        socklen_t len = sizeof(cred);

        if (!sock || getsockopt(h2o_socket_get_fd(sock), SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
                return UINT32_MAX;
        return (uint32_t) cred.uid;
}

static void client_of(const struct kh_http_req *req, char *buf, size_t n) {
        struct sockaddr_storage ss;
        socklen_t len;
        const void *addr = NULL;
        size_t addr_len = 0;
        struct kh_http_client_text *last = &req->worker->last_client;

        buf[0] = '\0';
        if (req->listener == KH_LISTENER_OPERATOR) {
                (void) snprintf(buf, n, "local");
                return;
        }
        len = req->h2o->conn->callbacks->get_peername(req->h2o->conn, (struct sockaddr *) &ss);
        if (len == 0)
                return;
        if (ss.ss_family == AF_INET) {
                addr = &((const struct sockaddr_in *) &ss)->sin_addr;
                addr_len = sizeof(struct in_addr);
        } else if (ss.ss_family == AF_INET6) {
                addr = &((const struct sockaddr_in6 *) &ss)->sin6_addr;
                addr_len = sizeof(struct in6_addr);
        }
        if (!addr)
                return;
        if (last->family != ss.ss_family || memcmp(last->addr, addr, addr_len) != 0) {
                if (!inet_ntop(ss.ss_family, addr, last->text, sizeof(last->text))) {
                        last->family = AF_UNSPEC;
                        return;
                }
                last->family = ss.ss_family;
                memcpy(last->addr, addr, addr_len);
        }
        kh_audit_field_set(buf, n, last->text);
}

void kh_http_actor(const struct kh_http_req *req, char *buf, size_t n) {
        if (req->who.sub[0])
                (void) snprintf(buf, n, "%s", req->who.sub);
        else if (req->listener == KH_LISTENER_OPERATOR)
                (void) snprintf(buf, n, "local:uid=%u", operator_uid(req->h2o));
        else if (n > 0)
                buf[0] = '\0';
}

void kh_http_client_address(const struct kh_http_req *req, char *buf, size_t n) {
        client_of(req, buf, n);
}

void kh_http_audit_event(const struct kh_http_req *req, int r, struct kh_audit_event *ev) {
        const struct kh_route *route = req->target ? req->target->route : NULL;
        bool server = !req->tenant || (route && route->scope == KH_SCOPE_SERVER);
        bool member = route && (route->auth == KH_AUTH_MEMBER || route->auth == KH_AUTH_OPTIONAL) &&
                      req->who.sub[0];

        *ev = (struct kh_audit_event) {
                .time_ms = kh_audit_now_ms(), .key_version = req->key_version, .count = 1,
                .chain = server ? KH_AUDIT_SERVER_CHAIN : (uint32_t) req->tenant->index,
        };
        /* A member's token makes the member the actor, on the admin socket too (its client
         * is then "local"); else the socket's caller is the operator. */
        if (req->listener == KH_LISTENER_OPERATOR && !member)
                (void) snprintf(ev->actor, sizeof(ev->actor), "local:uid=%u", operator_uid(req->h2o));
        else
                KH_AUDIT_SET(ev->actor, req->who.sub[0] ? req->who.sub : "-");
        ev->action = r < 0 ? "refused" : req->action;
        /* a member's own events name the member, so that their history finds them */
        ev->target = member ? NULL : route ? kh_route_name(route->id) : "";
        ev->outcome = r < 0 ? kh_err_info(r)->code : "ok";
        KH_AUDIT_SET(ev->request_id, req->request_id);
        client_of(req, ev->client, sizeof(ev->client));
}

/* Gives an audited request its id, and its answer the X-Request-Id header. */
static void audit_start(struct kh_http_req *req, const char *action) {
        h2o_iovec_t id;

        req->action = action;
        kh_service_request_id(req->worker->svc, req->request_id);
        /* h2o keeps the value's pointer: a copy in the request's pool outlives this frame
         * (a write is answered after its commit) */
        id = h2o_strdup(&req->h2o->pool, req->request_id, KH_REQUEST_ID_LEN);
        kh_http_add_header_str(req, "x-request-id", id.base, id.len);
}

static void audit_end(struct kh_http_req *req, int r) {
        struct kh_service *svc = req->worker->svc;
        struct kh_audit_event ev;

        /* [audit] log_reads = false keeps only the key reads out */
        if (r >= 0 && strcmp(req->action, "read") == 0 && !kh_service_audits_reads(svc))
                return;
        kh_http_audit_event(req, r, &ev);
        kh_service_audit(svc, &ev);
}

/* A request waiting for its tenant's signing keys (kh_service_wait_keys()), in its own
 * pool: h2o reads nothing more from the connection until the request is answered, so the
 * request and its pool stay alive while it waits. */
struct parked {
        struct kh_issuer_waiter wait;
        struct kh_http_req req;
        struct kh_request_target target;
        const struct kh_route *route;
        kh_route_fn handler;
        uint64_t start_ns;
};

static void on_keys_loaded(struct kh_loop_task *task);

/* Authenticates as the route demands and runs its handler. A token signed by a key the
 * tenant's issuer is being asked for right now parks the request until that load ends;
 * woken, it is authenticated once more, without parking again. */
static int call(struct kh_http_req *req, const struct kh_route *route, kh_route_fn handler,
                uint64_t start_ns, bool may_park) {
        struct parked *p;
        int r;

        r = authenticate(req, route->auth);
        if (r == KH_SERVICE_WAIT && !may_park)
                r = -KH_E_INVALID_TOKEN;
        if (r == KH_SERVICE_WAIT) {
                p = h2o_mem_alloc_pool(&req->h2o->pool, sizeof(*p));
                *p = (struct parked) { .req = *req, .target = *req->target, .route = route,
                                       .handler = handler, .start_ns = start_ns };
                p->req.target = &p->target;
                p->wait.task.run = on_keys_loaded;
                kh_service_wait_keys(req->worker->svc, &p->wait);
                return KH_HTTP_PARKED;
        }
        if (r < 0)
                return r;
        return handler(req, &req->who);
}

static int dispatch(struct kh_http_req *req, struct kh_request_target *target,
                    uint64_t start_ns, enum kh_route_id *ret_route) {
        h2o_req_t *h = req->h2o;
        size_t path_len = h->query_at != SIZE_MAX ? h->query_at : h->path.len;
        const struct kh_route *route;
        kh_route_fn handler;
        int r;

        if (lacks_host(h))
                return -KH_E_MISSING_HOST;
        /* Refused framing closes the connection: bytes after a chunked body might be read
         * as a second request, which a proxy in front took for part of the first. */
        r = check_framing(h);
        if (r < 0) {
                h->http1_is_persistent = 0;
                return r;
        }
        if (headers_size(h) > KH_HEADER_MAX || h->headers.size > KH_HEADER_COUNT_MAX)
                return -KH_E_HEADER_TOO_LARGE;
        if (h->path.len > KH_PATH_MAX)
                return -KH_E_URI_TOO_LONG;

        r = kh_http_target_parse(h->path.base, path_len, target);
        if (r < 0 && r != -KH_E_NOT_FOUND)
                return r;
        route = target->route;
        if (route && !served_on(route, req->listener))
                route = target->route = NULL;
        req->target = target;
        req->tenant = kh_app_tenant(req->worker->server->app, target->tenant, target->tenant_len);
        if (target->tenant && !req->tenant) {
                /* before authentication: tenant names are not secret. The server's chain
                 * records it: no tenant's is concerned */
                if (route && handlers[route->id].action)
                        audit_start(req, "refused");
                return -KH_E_UNKNOWN_TENANT;
        }

        if (apply_cors(req, route))
                return 0;
        if (!route)
                return -KH_E_NOT_FOUND;
        *ret_route = route->id;
        if (handlers[route->id].action)
                audit_start(req, handlers[route->id].action);

        /* No cache of any kind may keep what an authenticated route answers (a member's key,
         * or why there is none), including its errors. */
        if (route->auth != KH_AUTH_NONE) {
                kh_http_add_header(req, H2O_TOKEN_CACHE_CONTROL, H2O_STRLIT("no-store"));
                kh_http_add_header_str(req, "pragma", H2O_STRLIT("no-cache"));
        }
        handler = handler_of(route->id, method_of(h));
        if (!handler) {
                add_allow(req, methods_of(route->id));
                return -KH_E_METHOD_NOT_ALLOWED;
        }
        return call(req, route, handler, start_ns, true);
}

/* Ends a request whatever became of it: the body wiped (it may carry a key; a write's
 * handler wiped it already after decoding, a parked request still needs it), an error
 * answered in the one place that turns errors into replies, the request counted. */
static void complete(struct kh_http_req *req, enum kh_route_id route, int r, uint64_t start_ns) {
        h2o_req_t *h = req->h2o;

        if (r == KH_HTTP_PARKED)
                return;
        if (h->entity.base && h->entity.len)
                OPENSSL_cleanse(h->entity.base, h->entity.len);
        if (r == KH_HTTP_DEFERRED)
                return;                  /* writes.c replies, records and counts it */
        if (r < 0)
                kh_http_reply_error(req, r);
        if (req->action)
                audit_end(req, r);
        kh_http_metrics_observe(&req->worker->metrics, route, req->status,
                                kh_http_now_ns() - start_ns);
}

bool kh_http_route_bitwarden(enum kh_route_id route) {
        return route < KH_ROUTE_NONE && handlers[route].bitwarden;
}

void kh_http_finish(struct kh_http_req *req, int r, uint64_t start_ns) {
        if (r < 0 && req->status == 0)
                kh_http_reply_error(req, r);
        if (req->action)
                audit_end(req, r);
        kh_http_metrics_observe(&req->worker->metrics, req->target->route->id, req->status,
                                kh_http_now_ns() - start_ns);
}

static void on_keys_loaded(struct kh_loop_task *task) {
        struct parked *p = kh_container_of(task, struct parked, wait.task);
        int r = call(&p->req, p->route, p->handler, p->start_ns, false);

        complete(&p->req, p->route->id, r, p->start_ns);
}

int kh_http_route(h2o_handler_t *self, h2o_req_t *h) {
        struct kh_http_worker *w = (struct kh_http_worker *) (void *) h->conn->ctx; /* ctx is first */
        struct kh_http_req req = {
                .h2o = h, .worker = w, .status = 0,
                .listener = ((const struct kh_http_handler *) self)->kind,
                .target = NULL,
        };
        struct kh_request_target target;
        enum kh_route_id route = KH_ROUTE_NONE;
        uint64_t start = kh_http_now_ns();
        int r = dispatch(&req, &target, start, &route);

        complete(&req, route, r, start);
        return 0;
}
