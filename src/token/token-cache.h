/* The verified-token cache: a worker remembers the principals of bearer tokens it has
 * verified, so a client that sends the same token again costs one SHA-256 and a table
 * probe instead of a signature verification. Keyed by the SHA-256 of the token (the token
 * itself is a secret and is never stored). Only successful verifications are put.
 *
 * Loop-local: one cache per worker thread, no locks; never share one between threads. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "crypto/hash.h"
#include "token/principal.h"

struct kh_token_cache;

/**
 * kh_token_cache_new() - an empty cache.
 * @max_entries: 1..KH_TOKEN_CACHE_MAX. The cache is 8-way set-associative, so it holds at
 *               most max_entries rounded down to a multiple of 8 (when max_entries >= 8).
 * Returns 0, -EINVAL or -ENOMEM.
 */
KH_MUST_CHECK int kh_token_cache_new(size_t max_entries, struct kh_token_cache **ret);

/* NULL-safe; returns NULL. */
struct kh_token_cache *kh_token_cache_free(struct kh_token_cache *c);
KH_DEFINE_CLEANUP(kh_token_cache_free, struct kh_token_cache *)

/**
 * kh_token_cache_get() - the principal cached for a token hash, if still valid.
 * @hash:   SHA-256 of the bearer token.
 * @tenant: the tenant of the request; an entry verified for another tenant is a miss.
 * @now:    unix seconds; an entry with now > exp + KH_CLOCK_SKEW_S is a miss and evicted
 *          (the skew the verifier allowed, so the cache neither extends nor shortens it).
 * @ret:    filled on a hit only.
 */
bool kh_token_cache_get(struct kh_token_cache *c, const uint8_t hash[static KH_SHA256_LEN],
                        const char *tenant, int64_t now, struct kh_principal *ret);

/* Remembers p under p->token_hash (replacing an entry for the same hash). A hash may live
 * in either of two sets and goes to the less full one; when both are full, the entry of
 * the two sets that expires first is evicted: the cache never grows past its maximum.
 * Never fails. */
void kh_token_cache_put(struct kh_token_cache *c, const struct kh_principal *p);

size_t kh_token_cache_size(const struct kh_token_cache *c);
uint64_t kh_token_cache_hits(const struct kh_token_cache *c);
uint64_t kh_token_cache_misses(const struct kh_token_cache *c);
