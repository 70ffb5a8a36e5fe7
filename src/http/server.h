/* The HTTP server: on each worker's event loop (daemon/workers.c) its own SO_REUSEPORT
 * listeners, TLS built in (OpenSSL), HTTP/1.1 keep-alive. This directory is the only code
 * that knows h2o's HTTP side; the daemon owns the threads and loops. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <h2o.h>

#include "common/cleanup.h"
#include "common/loop.h"
#include "config/config.h"
#include "service/app.h"

struct kh_http_server;

/**
 * kh_http_server_new() - binds the listeners of cfg (one socket per worker, SO_REUSEPORT)
 * and the admin socket, and loads the TLS certificate and key: everything that may need
 * root (a port below 1024, /run, a root-only key file), so that keyholdd can drop its
 * privileges right after, before it opens the key store. The server serves nothing until
 * kh_http_server_attach().
 * @cfg:     borrowed for the server's lifetime.
 * @evloops: n_workers event loops, and @loops the same loops as struct kh_loop; borrowed.
 * @ret_err: on failure, a short reason (no secrets) for the daemon to print.
 * Returns 0, -EADDRINUSE, -EACCES, -EINVAL (TLS files, n_workers), -EIO, -ENOMEM.
 */
KH_MUST_CHECK int kh_http_server_new(const struct kh_config_server *cfg, unsigned n_workers,
                                     h2o_evloop_t *const *evloops,
                                     struct kh_loop *const *loops, struct kh_http_server **ret,
                                     char *ret_err, size_t err_len);

/**
 * kh_http_server_attach() - gives the server its application and creates each worker's
 * service (database connection, token cache) on its loop. Once, before the workers run.
 * @app:     shared application state; borrowed for the server's lifetime.
 * @ret_err: as for kh_http_server_new().
 * Returns 0 or an error of kh_service_new().
 */
KH_MUST_CHECK int kh_http_server_attach(struct kh_http_server *s, struct kh_app *app,
                                        char *ret_err, size_t err_len);
struct kh_http_server *kh_http_server_free(struct kh_http_server *s); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_http_server_free, struct kh_http_server *)

/* On worker i's thread, before its loop runs: starts serving its listeners. Returns 0. */
KH_MUST_CHECK int kh_http_worker_open(struct kh_http_server *s, unsigned i);

/* On worker i's thread, once its loop is to stop: stops accepting and lets the connections
 * finish their current request (at most 2 s, running the loop). Returns true if nothing of
 * the server is left on the loop, so that the loop may be destroyed. */
bool kh_http_worker_close(struct kh_http_server *s, unsigned i);

/* On worker i's thread, after every pass of its loop. */
void kh_http_worker_pass(struct kh_http_server *s, unsigned i);

/* The port listener i is bound to (useful with port 0). */
uint16_t kh_http_server_port(const struct kh_http_server *s, size_t i);
size_t kh_http_server_n_listeners(const struct kh_http_server *s);

