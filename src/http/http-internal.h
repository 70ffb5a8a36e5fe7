/* Types shared by the files of http/ only. */
#pragma once

#include <pthread.h>
#include <stdatomic.h>
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

/* A PUT/POST decoded and authenticated, waiting for its group commit (writes.c). */
struct kh_pending_write {
        h2o_req_t *h2o;
        struct kh_principal who;
        struct kh_secret *key;           /* owned */
        bool replace;                    /* PUT: create or replace; POST: create only */
        uint64_t start_ns;
};

#define KH_WRITE_BATCH_MAX 128

struct kh_http_worker {
        h2o_context_t ctx;               /* first: reached from a request by its ctx */
        h2o_accept_ctx_t accept_ctx;
        struct kh_http_server *server;
        struct kh_service *svc;
        struct kh_http_metrics metrics;
        h2o_socket_t *listeners[KH_LISTEN_MAX];
        int listen_fds[KH_LISTEN_MAX];
        size_t n_listeners;
        pthread_t thread;
        bool started;
        struct kh_pending_write pending[KH_WRITE_BATCH_MAX];
        size_t n_pending;
        h2o_timeout_entry_t flush_entry; /* on the zero timeout while writes are pending */
};

struct kh_http_server {
        const struct kh_config_server *cfg;
        struct kh_app *app;
        h2o_globalconf_t globalconf;
        SSL_CTX *ssl_ctx;
        struct kh_http_worker *workers;
        unsigned n_workers;
        uint16_t ports[KH_LISTEN_MAX];
        size_t n_listeners;
        atomic_bool stopping;
};

/* One request as the handlers see it. */
struct kh_http_req {
        h2o_req_t *h2o;
        struct kh_http_worker *worker;
        const struct kh_tenant *tenant;  /* resolved from /t/{tenant} or the default */
        const struct kh_request_target *target; /* route and path parameters */
        int status;                      /* set when the reply is sent, for metrics */
};

typedef int (*kh_route_fn)(struct kh_http_req *req, const struct kh_principal *who);

/* The methods a route answers (routes.def): a NULL handler is a method it does not. */
struct kh_route_handlers {
        kh_route_fn get, post, put, delete_, patch;
};

/* A handler's return value: the reply will be sent later (group commit), by writes.c. */
#define KH_HTTP_DEFERRED 1

/* Queues a write for the worker's next group commit, which runs once the loop has read
 * every request of this pass; takes ownership of key. Returns KH_HTTP_DEFERRED. */
int kh_http_write_enqueue(struct kh_http_req *req, const struct kh_principal *who,
                          struct kh_secret *key, bool replace);

/* Commits every queued write in one transaction and replies to each. */
void kh_http_writes_flush(struct kh_http_worker *w);

uint64_t kh_http_now_ns(void);

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
int kh_route_alive(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_health(struct kh_http_req *req, const struct kh_principal *who);
int kh_route_metrics(struct kh_http_req *req, const struct kh_principal *who);
