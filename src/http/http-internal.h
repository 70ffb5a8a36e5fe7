/* Types shared by the files of http/ only. */
#pragma once

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>

#include <h2o.h>

#include "common/buf.h"
#include "config/config.h"
#include "http/metrics.h"
#include "http/route.h"
#include "service/app.h"
#include "service/service.h"
#include "token/principal.h"

struct kh_http_server;
struct kh_http_worker;

/* Who can reach a listener, and so which routes it serves (router.c). */
enum kh_listener_kind {
        KH_LISTENER_PUBLIC,    /* [server] listen: members and admin tokens, over TLS */
        KH_LISTENER_METRICS,   /* [server] metrics_listen: GET /metrics only, plain HTTP */
        KH_LISTENER_OPERATOR,  /* [server] admin_socket: the operator, Unix socket */
        KH_LISTENER_KINDS_
};

/* The handler h2o calls for the hosts of one listener kind. */
struct kh_http_handler {
        h2o_handler_t super;             /* first */
        enum kh_listener_kind kind;
};

/* A listening socket of a worker. */
struct kh_http_listener {
        struct kh_http_worker *worker;
        enum kh_listener_kind kind;
        int fd;                          /* until the worker's loop owns it as sock */
        h2o_socket_t *sock;
};

/* A worker listens on every public and metrics address (SO_REUSEPORT); worker 0 alone on
 * the operator socket. */
#define KH_WORKER_LISTENERS_MAX (2 * KH_LISTEN_MAX + 1)

struct kh_http_worker {
        h2o_context_t ctx;               /* first: reached from a request by its ctx */
        h2o_accept_ctx_t accept_ctx[KH_LISTENER_KINDS_];
        struct kh_http_server *server;
        h2o_evloop_t *evloop;            /* the worker thread's loop (daemon/workers.c) */
        struct kh_loop *loop;            /* the same, as the job pool posts to it */
        struct kh_service *svc;
        struct kh_http_metrics metrics;
        struct kh_http_listener listeners[KH_WORKER_LISTENERS_MAX];
        size_t n_listeners;
        bool open;                       /* kh_http_worker_open() done, context live */
        size_t n_conns;                  /* open connections */
        bool accept_paused;              /* listeners not read: full, or out of descriptors */
        h2o_timeout_entry_t accept_retry;/* resumes accepting after running out of fds */
        /* the last client address an audit record named, and its text: most requests come
         * from the address before (a proxy, a few clients), and inet_ntop formats with
         * sprintf */
        struct kh_http_client_text {
                sa_family_t family;
                uint8_t addr[16];
                char text[INET6_ADDRSTRLEN];
        } last_client;
};

struct kh_http_server {
        const struct kh_config_server *cfg;
        struct kh_app *app;
        h2o_globalconf_t globalconf;
        h2o_hostconf_t *hosts[KH_LISTENER_KINDS_][2]; /* per kind, NULL-terminated */
        SSL_CTX *ssl_ctx;
        struct kh_http_worker *workers;
        unsigned n_workers;
        uint16_t ports[KH_LISTEN_MAX];
        size_t n_listeners;              /* public addresses */
        bool admin_socket_bound;         /* ours to remove at exit */
};

/* One request as the handlers see it. */
struct kh_http_req {
        h2o_req_t *h2o;
        struct kh_http_worker *worker;
        const struct kh_tenant *tenant;  /* resolved from /t/{tenant} or the default */
        const struct kh_request_target *target; /* route and path parameters */
        enum kh_listener_kind listener;  /* where the request came in */
        int status;                      /* set when the reply is sent, for metrics */
        /* for its audit record (router.c): */
        struct kh_principal who;         /* whom the token proved (zero: nobody) */
        const char *action;              /* the route's action, or the handler's; NULL:
                                          * the request is not audited */
        uint32_t key_version;            /* the tenant key version the handler used */
        char request_id[KH_REQUEST_ID_LEN + 1]; /* "" until the route is known */
};

typedef int (*kh_route_fn)(struct kh_http_req *req, const struct kh_principal *who);

/* The methods a route answers (routes.def): a NULL handler is a method it does not. */
struct kh_route_handlers {
        const char *action;              /* its audit action (docs/audit.md); NULL: the route
                                          * is not audited */
        bool bitwarden;                  /* a route of Bitwarden's server: errors carry
                                          * "object": "error" too */
        kh_route_fn get, post, put, delete_, patch;
};

/* A handler's return value: the reply will be sent later (group commit), by writes.c. */
#define KH_HTTP_DEFERRED 1
/* The router's own: the request waits for its tenant's keys (router.c). */
#define KH_HTTP_PARKED 2

/* The audit event of req with outcome r (0: ok), as the router records it. */
void kh_http_audit_event(const struct kh_http_req *req, int r, struct kh_audit_event *ev);

/* Submits a member key write to the worker's next group commit (service.h); the reply goes
 * out once it is durable, with its audit record in the same commit. Takes ownership of
 * key. Returns KH_HTTP_DEFERRED. */
int kh_http_write_enqueue(struct kh_http_req *req, const struct kh_principal *who,
                          struct kh_secret *key, bool replace);

uint64_t kh_http_now_ns(void);

/* Ends a request a handler answered later (KH_HTTP_DEFERRED, on its worker's loop): the
 * error reply when r < 0 and nothing was replied yet, its audit record (outcome r) and its
 * metrics.
 * req may be a copy of the handler's (its target must outlive the call). */
void kh_http_finish(struct kh_http_req *req, int r, uint64_t start_ns);

/* Who made req, as its audit record names the actor: the token's sub, or the operator
 * ("local:uid=N"); "" for nobody. */
void kh_http_actor(const struct kh_http_req *req, char *buf, size_t n);

/* The client's address as text ("" when unknown; "local" on the admin socket). */
void kh_http_client_address(const struct kh_http_req *req, char *buf, size_t n);

/* Shared checks (checks.c). A body the route decodes as JSON: at most max bytes
 * (-KH_E_BODY_TOO_LARGE) sent as application/json (-KH_E_UNSUPPORTED_MEDIA). */
int kh_http_json_body(const struct kh_http_req *req, size_t max);
/* A route that takes no body refuses one (-KH_E_INVALID_REQUEST_BODY) rather than ignore it. */
int kh_http_no_body(const struct kh_http_req *req);
/* {orgId}, the route's first parameter, names the request's tenant (else -KH_E_NOT_FOUND:
 * DESIGN.md "HTTP surface"). */
int kh_http_org_check(const struct kh_http_req *req);

/* Whether route's errors take Bitwarden's shape (routes.def .bitwarden). */
bool kh_http_route_bitwarden(enum kh_route_id route);

/* The request entry point registered with h2o. */
int kh_http_route(h2o_handler_t *self, h2o_req_t *h2o);

/* Replies (reply.c). Each sets req->status. Bodies are copied into the request's pool;
 * a sensitive body is wiped when the pool is released. */
void kh_http_reply_error(struct kh_http_req *req, int r);
void kh_http_reply(struct kh_http_req *req, int status, const char *content_type,
                   const void *body, size_t len, bool sensitive);
void kh_http_add_header(struct kh_http_req *req, const h2o_token_t *token, const char *value,
                        size_t len);
void kh_http_add_header_str(struct kh_http_req *req, const char *name, const char *value,
                            size_t len);

/* The value of a request header (first occurrence) or NULL. */
const h2o_iovec_t *kh_http_header(const struct kh_http_req *req, const h2o_token_t *token);

/* Routes (routes/). */
int kh_route_user_keys_get(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_user_keys_post(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_user_keys_put(struct kh_http_req *req, const struct kh_principal *who);
/* routes/devices.c */
int kh_route_devices_known(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_devices_update_trust(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_devices_untrust(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_devices_lost_trust(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_device_by_identifier(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_devices_list(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_devices_register(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_device_keys(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_device_retrieve_keys(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_device_get(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_device_delete(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_org_public_key(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_org_enrol(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_member_devices(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_member_device_untrust(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_member_remove(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_import(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_alive(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_health(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_metrics(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_user_keys_history(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_keys(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_audit(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_audit_public_key(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_rekey(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_key_retire(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_key_destroy(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_key_revoke(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_key_reinstate(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_keys_revoke_all(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_admin_keys_reinstate_all(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_server_seal(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_server_unseal(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_server_backup(struct kh_http_req *req, const struct kh_principal *who);
/* login requests and admin approval (routes/auth-requests.c, routes/approvals.c) */
int kh_route_auth_requests_create(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_auth_requests_list(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_auth_requests_admin_request(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_auth_requests_pending(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_auth_request_get(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_auth_request_put(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_auth_request_response(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_approvals_list(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_approvals_bulk(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_approvals_deny(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_approvals_answer(struct kh_http_req *req, const struct kh_principal *who);
/* the web console (routes/console.c) */
int kh_route_console(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_console_bare(struct kh_http_req *req, const struct kh_principal *who);
