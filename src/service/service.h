/* A worker's service: its own database connection, verified-token cache and counters.
 * Loop-local: only the worker that created it calls it, so the request path takes no
 * locks. Counters are _Atomic so that /metrics, on any worker, can read them (relaxed). */
#pragma once

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "service/app.h"
#include "token/principal.h"

struct kh_service;

struct kh_service_counters {
        _Atomic uint64_t token_cache_hits;
        _Atomic uint64_t token_cache_misses;
        _Atomic uint64_t token_rejections;
        _Atomic uint64_t integrity_failures;
        _Atomic uint64_t *key_version_uses; /* [tenant index * KH_KEY_VERSIONS_MAX + slot] */
};

/* Opens the worker's store connection and token cache. Returns 0, -EIO or -ENOMEM. */
KH_MUST_CHECK int kh_service_new(struct kh_app *app, struct kh_service **ret);
struct kh_service *kh_service_free(struct kh_service *svc); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_service_free, struct kh_service *)

struct kh_app *kh_service_app(const struct kh_service *svc);
const struct kh_service_counters *kh_service_counters(const struct kh_service *svc);
size_t kh_service_token_cache_size(const struct kh_service *svc);

/**
 * kh_service_authenticate() - the principal a bearer token proves for tenant t.
 * @token: the bearer token (NULL if none was sent), @len its length.
 * Verifies strictly (issuer of t only, algorithm allow-list, signature, expiry, claims) or
 * answers from the worker's cache of verified tokens. Returns 0, -KH_E_MISSING_TOKEN,
 * -KH_E_INVALID_TOKEN, -KH_E_INSUFFICIENT_SCOPE, -KH_E_INVALID_SUBJECT or -KH_E_NOT_READY.
 */
KH_MUST_CHECK int kh_service_authenticate(struct kh_service *svc, const struct kh_tenant *t,
                                          const char *token, size_t len, int64_t now,
                                          struct kh_principal *ret);

/* Counts a bearer token refused before verification (malformed at the HTTP layer), so
 * that keyhold_token_rejections_total covers every refused token. */
void kh_service_count_token_rejection(struct kh_service *svc);

/* Group commit of member writes. Between kh_service_batch_begin() and
 * kh_service_batch_commit(), kh_user_keys_post()/put() are applied but not durable; the
 * commit makes all of them durable with one synchronous commit, and only then may they be
 * acknowledged. On a failed commit call kh_service_batch_abort(): none of them happened.
 * Returns 0, -EBUSY or -EIO. */
KH_MUST_CHECK int kh_service_batch_begin(struct kh_service *svc);
KH_MUST_CHECK int kh_service_batch_commit(struct kh_service *svc);
void kh_service_batch_abort(struct kh_service *svc);

/* Pings the worker's database connection (for /health). */
KH_MUST_CHECK int kh_service_ping(struct kh_service *svc);
