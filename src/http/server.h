/* The HTTP server: one event loop per worker thread (h2o evloop), each with its own
 * SO_REUSEPORT listeners, TLS built in (OpenSSL), HTTP/1.1 keep-alive. This directory is the
 * only code that knows the HTTP library. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "config/config.h"
#include "service/app.h"

struct kh_http_server;

/**
 * kh_http_server_new() - binds the listeners of cfg, loads the TLS certificate and creates
 * one worker per thread (each with its own service: database connection, token cache).
 * @app: shared application state; borrowed for the server's lifetime.
 * @ret_err: on failure, a short reason (no secrets) for the daemon to print.
 * Returns 0, -EADDRINUSE, -EACCES, -EINVAL (TLS files), -EIO, -ENOMEM.
 */
KH_MUST_CHECK int kh_http_server_new(const struct kh_config_server *cfg, struct kh_app *app,
                                     struct kh_http_server **ret, char *ret_err, size_t err_len);
struct kh_http_server *kh_http_server_free(struct kh_http_server *s); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_http_server_free, struct kh_http_server *)

/* The port listener i is bound to (useful with port 0). */
uint16_t kh_http_server_port(const struct kh_http_server *s, size_t i);
size_t kh_http_server_n_listeners(const struct kh_http_server *s);
unsigned kh_http_server_n_workers(const struct kh_http_server *s);

/* Runs every worker loop; returns once kh_http_server_stop() was called and all loops
 * have ended. Returns 0 or a negative error from starting a thread. */
KH_MUST_CHECK int kh_http_server_run(struct kh_http_server *s);

/* Asks every loop to stop. Async-signal-safe (sets an atomic flag). */
void kh_http_server_stop(struct kh_http_server *s);
