#include "server.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "common/limits.h"
#include "http/http-internal.h"

/* Bodies larger than ours are refused by h2o itself before a handler runs; ours (4 KiB)
 * is checked in the handler so that the client gets a JSON error. */
#define H2O_ENTITY_MAX (64 * 1024)
#define LISTEN_BACKLOG 1024
#define ACCEPTS_PER_WAKEUP 64
#define DRAIN_MS 2000
#define DRAIN_STEP_MS 10

/* err = what + arg; arg may carry a path, never a secret */
static void set_err(char *err, size_t len, const char *what, const char *arg) {
        (void) snprintf(err, len, "%s%s", what, arg);
}

static int tls_context(const struct kh_config_server *cfg, SSL_CTX **ret, char *err, size_t err_len) {
        SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

        if (!ctx)
                return -ENOMEM;
        (void) SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
        /* CLEANSE_PLAINTEXT: OpenSSL wipes its copy of each decrypted record once h2o has
         * read it, so that a request body (a member's key) is not left in its buffers. */
        SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                         SSL_OP_CIPHER_SERVER_PREFERENCE |
                                         SSL_OP_CLEANSE_PLAINTEXT);
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_cert) != 1) {
                set_err(err, err_len, "cannot load TLS certificate ", cfg->tls_cert);
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_key, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1) {
                set_err(err, err_len, "cannot load TLS key (or it does not match the certificate) ",
                        cfg->tls_key);
                SSL_CTX_free(ctx);
                return -EINVAL;
        }
        ERR_clear_error();
        *ret = ctx;
        return 0;
}

/* One listening socket of a worker. Every worker binds its own socket to the same address
 * with SO_REUSEPORT, so the kernel spreads connections over the loops without a lock. */
static int bind_listener(const struct kh_config_listen *l, uint16_t port, uint16_t *ret_port,
                         int *ret_fd) {
        struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
        struct addrinfo *ai = NULL;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        char service[8];
        int fd, one = 1, r;

        (void) snprintf(service, sizeof(service), "%u", port);
        r = getaddrinfo(l->host, service, &hints, &ai);
        if (r != 0)
                return -EINVAL;
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
                r = -errno;
                freeaddrinfo(ai);
                return r;
        }
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        (void) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0 ||
            getsockname(fd, (struct sockaddr *) &ss, &sl) < 0) {
                r = -errno;
                freeaddrinfo(ai);
                close(fd);
                return r;
        }
        freeaddrinfo(ai);
        *ret_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port
                                                   : ((struct sockaddr_in *) &ss)->sin_port);
        *ret_fd = fd;
        return 0;
}

/* The operator's socket: mode 0600 from the start (created under a umask that lets no one
 * else in), a stale socket file left by a crash replaced, a live one (another keyholdd)
 * refused. */
static int bind_unix(const char *path, int *ret_fd) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        mode_t old_mask;
        int fd, r;

        if (strlen(path) >= sizeof(sa.sun_path))
                return -ENAMETOOLONG;
        memcpy(sa.sun_path, path, strlen(path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == 0) {
                close(fd);
                return -EADDRINUSE;
        }
        /* Nobody listens: a socket is what a crash left behind. Linux says ECONNREFUSED for
         * any file that is not a socket too, and that one is not ours to remove. */
        if (errno == ECONNREFUSED) {
                struct stat st;
                if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
                        close(fd);
                        return -EEXIST;
                }
                (void) unlink(path);
        }
        close(fd);

        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return -errno;
        old_mask = umask(0177);
        r = bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 ? -errno : 0;
        umask(old_mask);
        if (r == 0 && (chmod(path, 0600) < 0 || listen(fd, LISTEN_BACKLOG) < 0))
                r = -errno;
        if (r < 0) {
                close(fd);
                return r;
        }
        *ret_fd = fd;
        return 0;
}

static struct kh_http_listener *add_listener(struct kh_http_worker *w, enum kh_listener_kind kind,
                                             int fd) {
        struct kh_http_listener *l = &w->listeners[w->n_listeners++];

        *l = (struct kh_http_listener) { .worker = w, .kind = kind, .fd = fd };
        return l;
}

/* Binds one TCP address on every worker (the port the first one got, for port 0). */
static int bind_everywhere(struct kh_http_server *s, const struct kh_config_listen *l,
                           enum kh_listener_kind kind, uint16_t *ret_port, char *err,
                           size_t err_len) {
        uint16_t want = l->port;
        int r, fd = -1;

        for (unsigned i = 0; i < s->n_workers; i++) {
                r = bind_listener(l, want, ret_port, &fd);
                if (r < 0) {
                        set_err(err, err_len, "cannot listen on ", l->host);
                        return r;
                }
                add_listener(&s->workers[i], kind, fd);
                want = *ret_port;
        }
        return 0;
}

static void register_kind(struct kh_http_server *s, enum kh_listener_kind kind, const char *name) {
        h2o_hostconf_t *host = h2o_config_register_host(&s->globalconf,
                                                        h2o_iovec_init(name, strlen(name)), 65535);
        h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
        struct kh_http_handler *h = (struct kh_http_handler *) h2o_create_handler(path, sizeof(*h));

        h->super.on_req = kh_http_route;
        h->kind = kind;
        s->hosts[kind][0] = host;
}

int kh_http_server_new(const struct kh_config_server *cfg, unsigned n_workers,
                       h2o_evloop_t *const *evloops, struct kh_loop *const *loops,
                       struct kh_http_server **ret, char *err, size_t err_len) {
        KH_CLEANUP(kh_http_server_freep) struct kh_http_server *s = NULL;
        uint16_t unused;
        int r, fd = -1;

        if (n_workers == 0 || n_workers > KH_THREADS_MAX)
                return -EINVAL;
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->cfg = cfg;

        h2o_config_init(&s->globalconf);
        s->globalconf.server_name = h2o_iovec_init(H2O_STRLIT("keyhold"));
        s->globalconf.max_request_entity_size = H2O_ENTITY_MAX;
        /* keyhold speaks HTTP/1.1 only (Bitwarden clients use it): no h2c upgrade and no
         * HTTP/2 preface on a plain or TLS connection, so h2o's HTTP/2 code is unreachable. */
        s->globalconf.http1.upgrade_to_http2 = 0;
        register_kind(s, KH_LISTENER_PUBLIC, "default");
        register_kind(s, KH_LISTENER_METRICS, "metrics");
        register_kind(s, KH_LISTENER_OPERATOR, "operator");

        if (cfg->tls_cert) {
                r = tls_context(cfg, &s->ssl_ctx, err, err_len);
                if (r < 0)
                        return r;
        }

        s->n_workers = n_workers;
        s->workers = calloc(s->n_workers, sizeof(*s->workers));
        if (!s->workers)
                return -ENOMEM;
        for (unsigned i = 0; i < s->n_workers; i++)
                s->workers[i].server = s;

        s->n_listeners = cfg->n_listen;
        for (size_t j = 0; j < cfg->n_listen; j++) {
                r = bind_everywhere(s, &cfg->listen[j], KH_LISTENER_PUBLIC, &s->ports[j], err,
                                    err_len);
                if (r < 0)
                        return r;
        }
        for (size_t j = 0; j < cfg->n_metrics_listen; j++) {
                r = bind_everywhere(s, &cfg->metrics_listen[j], KH_LISTENER_METRICS, &unused, err,
                                    err_len);
                if (r < 0)
                        return r;
        }
        if (cfg->admin_socket) {
                r = bind_unix(cfg->admin_socket, &fd);
                if (r < 0) {
                        set_err(err, err_len, "cannot create the admin socket ", cfg->admin_socket);
                        return r;
                }
                add_listener(&s->workers[0], KH_LISTENER_OPERATOR, fd);
                s->admin_socket_bound = true;
        }

        for (unsigned i = 0; i < s->n_workers; i++) {
                s->workers[i].evloop = evloops[i];
                s->workers[i].loop = loops[i];
        }

        *ret = KH_TAKE_PTR(s);
        return 0;
}

int kh_http_server_attach(struct kh_http_server *s, struct kh_app *app, char *err,
                          size_t err_len) {
        int r;

        assert(s && app && !s->app);
        s->app = app;
        for (unsigned i = 0; i < s->n_workers; i++) {
                struct kh_http_worker *w = &s->workers[i];
                r = kh_service_new(app, w->loop, &w->svc);
                if (r < 0) {
                        set_err(err, err_len, "cannot open the database for a worker", "");
                        return r;
                }
        }
        return 0;
}

static void accept_pause(struct kh_http_worker *w) {
        if (w->accept_paused)
                return;
        for (size_t j = 0; j < w->n_listeners; j++)
                h2o_socket_read_stop(w->listeners[j].sock);
        w->accept_paused = true;
}

static void on_accept(h2o_socket_t *listener, const char *err);

static void accept_resume(struct kh_http_worker *w) {
        if (!w->accept_paused || w->n_conns >= w->server->cfg->max_connections ||
            h2o_timeout_is_linked(&w->accept_retry))
                return;
        for (size_t j = 0; j < w->n_listeners; j++)
                h2o_socket_read_start(w->listeners[j].sock, on_accept);
        w->accept_paused = false;
}

static void on_conn_close(void *data) {
        struct kh_http_worker *w = data;

        w->n_conns--;
        accept_resume(w);
}

static void on_accept_retry(h2o_timeout_entry_t *entry) {
        accept_resume(kh_container_of(entry, struct kh_http_worker, accept_retry));
}

/* Accepts what is waiting, up to the worker's connection cap (then it stops reading the
 * listeners until a connection closes, as h2o's own server does). Out of descriptors
 * (EMFILE, ENFILE), the listener would stay readable and the loop spin on it: accepting
 * pauses for 100 ms instead, while the open connections are served. */
static void on_accept(h2o_socket_t *listener, const char *err) {
        struct kh_http_listener *l = listener->data;
        struct kh_http_worker *w = l->worker;

        if (err)
                return;
        for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
                h2o_socket_t *sock;

                if (w->n_conns >= w->server->cfg->max_connections) {
                        accept_pause(w);
                        return;
                }
                errno = 0;
                sock = h2o_evloop_socket_accept(listener);
                if (!sock) {
                        if (errno == EMFILE || errno == ENFILE) {
                                accept_pause(w);
                                h2o_timeout_link(w->evloop, &w->ctx.hundred_ms_timeout,
                                                 &w->accept_retry);
                        }
                        return;
                }
                w->n_conns++;
                sock->on_close.cb = on_conn_close;
                sock->on_close.data = w;
                h2o_accept(&w->accept_ctx[l->kind], sock);
        }
}

static bool context_is_idle(h2o_context_t *ctx) {
        h2o_timeout_t *const timeouts[] = {
                &ctx->zero_timeout, &ctx->one_sec_timeout, &ctx->hundred_ms_timeout,
                &ctx->handshake_timeout, &ctx->http1.req_timeout, &ctx->http2.idle_timeout,
                &ctx->http2.graceful_shutdown_timeout,
        };

        if (!h2o_linklist_is_empty(&ctx->http1._conns) ||
            !h2o_linklist_is_empty(&ctx->http2._conns))
                return false;
        for (size_t i = 0; i < KH_ELEMENTSOF(timeouts); i++)
                if (!h2o_linklist_is_empty(&timeouts[i]->_entries))
                        return false;
        return true;
}

/* Stopping: keep-alive connections are closed as soon as their current request is done
 * (idle ones at once, by expiring their request timeout), for at most DRAIN_MS. Returns
 * true once the context holds nothing, so that it can be disposed of. */
static bool drain(struct kh_http_worker *w) {
        h2o_context_request_shutdown(&w->ctx);
        w->ctx.http1.req_timeout.timeout = 0;
        w->ctx.handshake_timeout.timeout = 0;
        for (int waited = 0; waited < DRAIN_MS; waited += DRAIN_STEP_MS) {
                (void) h2o_evloop_run(w->ctx.loop, DRAIN_STEP_MS);
                /* Shutting down, h2o re-sends HTTP/2 GOAWAY frames from a one-second timer
                 * that stays linked even when no HTTP/2 connection is left to send them
                 * to; waiting it out made every stop take a second. */
                if (h2o_linklist_is_empty(&w->ctx.http2._conns) &&
                    h2o_timeout_is_linked(&w->ctx.http2._graceful_shutdown_timeout))
                        h2o_timeout_unlink(&w->ctx.http2._graceful_shutdown_timeout);
                if (context_is_idle(&w->ctx))
                        return true;
        }
        return false;
}

int kh_http_worker_open(struct kh_http_server *s, unsigned i) {
        struct kh_http_worker *w = &s->workers[i];

        h2o_context_init(&w->ctx, w->evloop, &s->globalconf);
        for (int k = 0; k < KH_LISTENER_KINDS_; k++)
                w->accept_ctx[k] = (h2o_accept_ctx_t) {
                        .ctx = &w->ctx, .hosts = s->hosts[k],
                        /* TLS on the public listeners; the others are local and plain */
                        .ssl_ctx = k == KH_LISTENER_PUBLIC ? s->ssl_ctx : NULL,
                };
        w->accept_retry.cb = on_accept_retry;
        w->open = true;

        for (size_t j = 0; j < w->n_listeners; j++) {
                struct kh_http_listener *l = &w->listeners[j];
                l->sock = h2o_evloop_socket_create(w->evloop, l->fd, H2O_SOCKET_FLAG_DONT_READ);
                l->fd = -1; /* the socket owns it now */
                l->sock->data = l;
                h2o_socket_read_start(l->sock, on_accept);
        }
        return 0;
}

bool kh_http_worker_close(struct kh_http_server *s, unsigned i) {
        struct kh_http_worker *w = &s->workers[i];

        if (!w->open)
                return true;
        if (h2o_timeout_is_linked(&w->accept_retry))
                h2o_timeout_unlink(&w->accept_retry);
        for (size_t j = 0; j < w->n_listeners; j++) {
                h2o_socket_read_stop(w->listeners[j].sock);
                h2o_socket_close(w->listeners[j].sock);
        }
        if (!drain(w)) {
                kh_service_detach_loop(w->svc);
                return false;   /* a client still holds a connection: leave it to exit */
        }
        kh_service_detach_loop(w->svc);
        h2o_context_dispose(&w->ctx);
        w->open = false;
        return true;
}

void kh_http_worker_pass(struct kh_http_server *s, unsigned i) {
        if (s->workers[i].open)
                kh_service_pass(s->workers[i].svc);
}

uint16_t kh_http_server_port(const struct kh_http_server *s, size_t i) {
        return i < s->n_listeners ? s->ports[i] : 0;
}

size_t kh_http_server_n_listeners(const struct kh_http_server *s) {
        return s->n_listeners;
}

struct kh_http_server *kh_http_server_free(struct kh_http_server *s) {
        if (!s)
                return NULL;
        for (unsigned i = 0; s->workers && i < s->n_workers; i++) {
                struct kh_http_worker *w = &s->workers[i];
                for (size_t j = 0; j < w->n_listeners; j++)
                        if (w->listeners[j].fd >= 0 && !w->listeners[j].sock)
                                close(w->listeners[j].fd);
                kh_service_free(w->svc);
        }
        free(s->workers);
        if (s->admin_socket_bound)
                (void) unlink(s->cfg->admin_socket);
        if (s->ssl_ctx)
                SSL_CTX_free(s->ssl_ctx);
        h2o_config_dispose(&s->globalconf);
        free(s);
        return NULL;
}
