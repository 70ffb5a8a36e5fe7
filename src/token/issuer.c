/* Locking, and why there is any: the key set is replaced by the refresh thread while
 * workers verify tokens with it. Workers only reach kh_issuer_verify() on a token-cache
 * miss, which already costs a signature verification (tens of microseconds), so a
 * read-lock there is noise; swaps happen a few times a day. A read-write lock is the
 * simplest correct way to keep a borrowed EVP_PKEY alive across the verification while
 * a swap frees the old set; RCU or an atomic pointer with reference counts would save
 * little and be harder to review. Writers are preferred so that a steady stream of
 * misses cannot starve a swap. The refresh request itself takes no lock unless the rate
 * limit lets it through (then a mutex held for a flag store). */
#include "token/issuer.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/file.h"
#include "common/limits.h"
#include "common/parse.h"
#include "token/fetch.h"
#include "token/jwks.h"
#include "token/jwt.h"

#define REFRESH_NEVER INT64_MIN

struct kh_issuer {
        char tenant[KH_TENANT_ID_MAX + 1];
        char *issuer_url, *issuer_ca, *audience, *jwks_file;
        struct kh_claim_matcher admins[KH_ADMIN_MATCHERS_MAX]; /* strings owned */
        size_t n_admins;
        struct kh_claim_matcher approvers[KH_ADMIN_MATCHERS_MAX]; /* strings owned */
        size_t n_approvers;
        bool scope_array_only;
        int64_t max_lifetime_s;
        char *expected_issuer;
        char *jwks_uri; /* NULL with jwks_file */

        pthread_rwlock_t lock; /* guards jwks */
        struct kh_jwks *jwks;
        bool lock_ready;
        atomic_size_t nkeys; /* kh_jwks_count(jwks), readable without the lock */

        pthread_mutex_t mutex; /* guards wanted, refreshing and waiters, with cond */
        pthread_cond_t cond;   /* on CLOCK_MONOTONIC */
        bool wanted, sync_ready;
        atomic_bool refreshing;/* a load is wanted or under way (written under mutex; read
                                * without it on the rate-limited path) */
        struct kh_issuer_waiter *waiters; /* requests waiting for it to end */
        int64_t interval_s;    /* periodic refresh; 0 = only for unknown kids */
        int64_t first_max_age; /* Cache-Control max-age of the first load (-1: none) */
        pthread_t thread;
        bool thread_started;
        atomic_bool stopping;

        _Atomic int64_t last_request; /* the caller's "now" at the last refresh request */
        _Atomic uint64_t refreshes, failures;
        _Atomic uint64_t key_generation; /* bumped when a refresh drops or replaces a key */
};

static int strdup_opt(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

static int get_document(struct kh_issuer *iss, const char *url, struct kh_buf *out,
                        int64_t *ret_max_age) {
        kh_buf_init(out, KH_JWKS_MAX, false);
        return kh_fetch(url, iss->issuer_ca, &iss->stopping, out, ret_max_age);
}

/* Reads the key set from its source; *ret_max_age is the response's Cache-Control max-age
 * (-1: none, or a file). */
static int load_jwks(struct kh_issuer *iss, struct kh_jwks **ret, int64_t *ret_max_age) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf doc = { 0 };
        int r;

        *ret_max_age = -1;
        if (iss->jwks_file) {
                kh_buf_init(&doc, KH_JWKS_MAX, false);
                r = kh_file_read(AT_FDCWD, iss->jwks_file, 0, KH_JWKS_MAX, &doc);
        } else
                r = get_document(iss, iss->jwks_uri, &doc, ret_max_age);
        if (r < 0)
                return r;
        r = kh_jwks_parse(doc.data ? (const char *) doc.data : "", doc.len, ret);
        return r == -EINVAL ? -EBADMSG : r;
}

/* <issuer_url>/.well-known/openid-configuration: "issuer" and "jwks_uri". */
static int discover(struct kh_issuer *iss) {
        static const char suffix[] = "/.well-known/openid-configuration";
        KH_CLEANUP(kh_buf_freep) struct kh_buf url = { 0 };
        KH_CLEANUP(kh_buf_freep) struct kh_buf doc = { 0 };
        json_auto_t *root = NULL;
        json_t *issuer, *jwks_uri;
        size_t n = strlen(iss->issuer_url);
        int r;

        if (!kh_fetch_url_is_acceptable(iss->issuer_url))
                return -EINVAL;
        if (n > 0 && iss->issuer_url[n - 1] == '/')
                n--; /* "https://host/identity/" and ".../identity" name the same authority */
        kh_buf_init(&url, KH_CONFIG_VALUE_MAX + sizeof(suffix), false);
        r = kh_buf_append(&url, iss->issuer_url, n);
        if (r >= 0)
                r = kh_buf_append_str(&url, suffix);
        if (r < 0)
                return r == -E2BIG ? -EINVAL : r;

        r = get_document(iss, (const char *) url.data, &doc, NULL);
        if (r < 0)
                return r;
        root = json_loadb((const char *) doc.data, doc.len, JSON_REJECT_DUPLICATES, NULL);
        issuer = json_object_get(root, "issuer");
        jwks_uri = json_object_get(root, "jwks_uri");
        if (!json_is_string(issuer) || json_string_length(issuer) == 0 ||
            !json_is_string(jwks_uri) || !kh_fetch_url_is_acceptable(json_string_value(jwks_uri)))
                return -EBADMSG;
        if (strdup_opt(json_string_value(issuer), &iss->expected_issuer) < 0 ||
            strdup_opt(json_string_value(jwks_uri), &iss->jwks_uri) < 0)
                return -ENOMEM;
        return 0;
}

static void swap_jwks(struct kh_issuer *iss, struct kh_jwks *new) {
        struct kh_jwks *old;

        (void) pthread_rwlock_wrlock(&iss->lock);
        old = iss->jwks;
        iss->jwks = new;
        atomic_store(&iss->nkeys, kh_jwks_count(new));
        /* A key gone from the set is no longer trusted: what was verified with it (the
         * workers' token caches) must be verified again. Bumped under the write lock, so a
         * reader that verified with the old set sees the old generation. */
        if (!kh_jwks_covers(new, old))
                atomic_fetch_add(&iss->key_generation, 1);
        (void) pthread_rwlock_unlock(&iss->lock);
        (void) kh_jwks_free(old); /* no reader can hold it: they all held the read lock */
}

static struct timespec mono_after(int64_t seconds) {
        struct timespec t;

        (void) clock_gettime(CLOCK_MONOTONIC, &t);
        t.tv_sec += (time_t) seconds;
        return t;
}

/* When to look again: at the configured interval, sooner if the issuer's Cache-Control
 * says its keys may change sooner (never more often than KH_JWKS_REFRESH_MIN_INTERVAL_S);
 * after a failure, within a minute. */
static int64_t next_refresh_s(const struct kh_issuer *iss, int r, int64_t max_age) {
        int64_t s = iss->interval_s;

        if (max_age >= 0 && max_age < s)
                s = max_age < KH_JWKS_REFRESH_MIN_INTERVAL_S ? KH_JWKS_REFRESH_MIN_INTERVAL_S : max_age;
        if (r < 0 && s > KH_JWKS_RETRY_S)
                s = KH_JWKS_RETRY_S;
        return s;
}

/* Hands the waiting requests back to their loops. Caller holds iss->mutex. */
static void release_waiters(struct kh_issuer *iss) {
        struct kh_issuer_waiter *w = iss->waiters;

        iss->waiters = NULL;
        while (w) {
                struct kh_issuer_waiter *next = w->next;   /* the post relinks w->task only */
                kh_loop_post(w->loop, &w->task);
                w = next;
        }
}

static void *refresh_thread(void *userdata) {
        struct kh_issuer *iss = userdata;
        struct timespec due = mono_after(next_refresh_s(iss, 0, iss->first_max_age));

        for (;;) {
                struct kh_jwks *jwks = NULL;
                int64_t max_age = -1;
                int r;

                (void) pthread_mutex_lock(&iss->mutex);
                while (!iss->wanted && !atomic_load(&iss->stopping)) {
                        if (iss->interval_s == 0) {
                                (void) pthread_cond_wait(&iss->cond, &iss->mutex);
                        } else if (pthread_cond_timedwait(&iss->cond, &iss->mutex, &due) ==
                                   ETIMEDOUT) {
                                atomic_store(&iss->refreshing, true);     /* periodic */
                                iss->wanted = true;
                        }
                }
                iss->wanted = false;
                (void) pthread_mutex_unlock(&iss->mutex);
                if (atomic_load(&iss->stopping))
                        return NULL;

                r = load_jwks(iss, &jwks, &max_age);
                /* an empty or broken set never replaces keys that work: keep serving */
                if (r < 0 || kh_jwks_count(jwks) == 0) {
                        atomic_fetch_add(&iss->failures, 1);
                        (void) kh_jwks_free(jwks);
                        r = r < 0 ? r : -EBADMSG;
                } else
                        swap_jwks(iss, jwks);
                due = mono_after(next_refresh_s(iss, r, max_age));

                (void) pthread_mutex_lock(&iss->mutex);
                /* counted once done, so a reader who sees the count sees the new keys */
                atomic_fetch_add(&iss->refreshes, 1);
                atomic_store(&iss->refreshing, iss->wanted);
                release_waiters(iss);
                (void) pthread_mutex_unlock(&iss->mutex);
        }
}

struct kh_issuer *kh_issuer_close(struct kh_issuer *iss) {
        if (!iss)
                return NULL;
        if (iss->thread_started) {
                (void) pthread_mutex_lock(&iss->mutex);
                atomic_store(&iss->stopping, true);
                (void) pthread_cond_signal(&iss->cond);
                (void) pthread_mutex_unlock(&iss->mutex);
                (void) pthread_join(iss->thread, NULL);
        }
        if (iss->sync_ready) {
                /* the loops that parked these have stopped: nothing runs them any more */
                iss->waiters = NULL;
                (void) pthread_cond_destroy(&iss->cond);
                (void) pthread_mutex_destroy(&iss->mutex);
        }
        if (iss->lock_ready)
                (void) pthread_rwlock_destroy(&iss->lock);
        (void) kh_jwks_free(iss->jwks);
        free(iss->issuer_url);
        free(iss->issuer_ca);
        free(iss->audience);
        free(iss->jwks_file);
        for (size_t i = 0; i < iss->n_approvers; i++) {
                free((char *) (uintptr_t) iss->approvers[i].claim);
                free((char *) (uintptr_t) iss->approvers[i].value);
        }
        for (size_t i = 0; i < iss->n_admins; i++) {
                free((char *) (uintptr_t) iss->admins[i].claim);
                free((char *) (uintptr_t) iss->admins[i].value);
        }
        free(iss->expected_issuer);
        free(iss->jwks_uri);
        free(iss);
        return NULL;
}

static int init_sync(struct kh_issuer *iss) {
        pthread_rwlockattr_t attr;
        int r;

        r = pthread_rwlockattr_init(&attr);
        if (r != 0)
                return -r;
        r = pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        if (r == 0)
                r = pthread_rwlock_init(&iss->lock, &attr);
        (void) pthread_rwlockattr_destroy(&attr);
        if (r != 0)
                return -r;
        iss->lock_ready = true;

        r = pthread_mutex_init(&iss->mutex, NULL);
        if (r != 0)
                return -r;
        pthread_condattr_t cattr;
        (void) pthread_condattr_init(&cattr);
        (void) pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
        r = pthread_cond_init(&iss->cond, &cattr);
        (void) pthread_condattr_destroy(&cattr);
        if (r != 0) {
                (void) pthread_mutex_destroy(&iss->mutex);
                return -r;
        }
        iss->sync_ready = true;
        return 0;
}

/* Copies matchers (n of them) into out, counting them in *n_out as they are made, so that
 * the issuer's free releases what a failure left. */
static int matchers_copy(const struct kh_claim_matcher *m, size_t n,
                         struct kh_claim_matcher out[static KH_ADMIN_MATCHERS_MAX],
                         size_t *n_out) {
        if (n > KH_ADMIN_MATCHERS_MAX)
                return -EINVAL;
        for (size_t i = 0; i < n; i++) {
                char *claim = strdup(m[i].claim), *value = strdup(m[i].value);
                out[(*n_out)++] = (struct kh_claim_matcher) { claim, value };
                if (!claim || !value)
                        return -ENOMEM;
        }
        return 0;
}

int kh_issuer_open(const struct kh_issuer_config *cfg, struct kh_issuer **ret) {
        KH_CLEANUP(kh_issuer_closep) struct kh_issuer *iss = NULL;
        int r;

        if (!cfg->tenant || !kh_tenant_id_is_valid(cfg->tenant, strlen(cfg->tenant)) ||
            !cfg->issuer_url || cfg->issuer_url[0] == 0 ||
            strlen(cfg->issuer_url) > KH_CONFIG_VALUE_MAX)
                return -EINVAL;

        iss = calloc(1, sizeof(*iss));
        if (!iss)
                return -ENOMEM;
        atomic_init(&iss->stopping, false);
        atomic_init(&iss->last_request, REFRESH_NEVER);
        atomic_init(&iss->refreshes, 0);
        atomic_init(&iss->failures, 0);
        atomic_init(&iss->nkeys, 0);
        strcpy(iss->tenant, cfg->tenant); /* length checked above */
        iss->scope_array_only = cfg->scope_array_only;
        iss->max_lifetime_s = cfg->max_lifetime_s;
        iss->interval_s = cfg->refresh_interval_s;
        if (strdup_opt(cfg->issuer_url, &iss->issuer_url) < 0 ||
            strdup_opt(cfg->issuer_ca, &iss->issuer_ca) < 0 ||
            strdup_opt(cfg->audience, &iss->audience) < 0 ||
            strdup_opt(cfg->jwks_file, &iss->jwks_file) < 0)
                return -ENOMEM;
        r = matchers_copy(cfg->admins, cfg->n_admins, iss->admins, &iss->n_admins);
        if (r >= 0)
                r = matchers_copy(cfg->approvers, cfg->n_approvers, iss->approvers,
                                  &iss->n_approvers);
        if (r < 0)
                return r;
        r = init_sync(iss);
        if (r < 0)
                return r;

        if (iss->jwks_file)
                r = strdup_opt(iss->issuer_url, &iss->expected_issuer);
        else
                r = discover(iss);
        if (r < 0)
                return r;
        r = load_jwks(iss, &iss->jwks, &iss->first_max_age);
        atomic_fetch_add(&iss->refreshes, 1);
        if (r < 0)
                return r;
        atomic_store(&iss->nkeys, kh_jwks_count(iss->jwks));

        r = pthread_create(&iss->thread, NULL, refresh_thread, iss);
        if (r != 0)
                return -r;
        iss->thread_started = true;

        *ret = KH_TAKE_PTR(iss);
        return 0;
}

const char *kh_issuer_expected_issuer(const struct kh_issuer *iss) {
        return iss->expected_issuer;
}

bool kh_issuer_has_keys(const struct kh_issuer *iss) {
        return atomic_load(&iss->nkeys) > 0;
}

uint64_t kh_issuer_refresh_count(const struct kh_issuer *iss) {
        return atomic_load(&iss->refreshes);
}

uint64_t kh_issuer_refresh_failures(const struct kh_issuer *iss) {
        return atomic_load(&iss->failures);
}

/* Unknown kid: the issuer may have rotated its keys. Returns true if a load is under way
 * (asked for now, or already), false if one was asked for less than
 * KH_JWKS_REFRESH_MIN_INTERVAL_S of the caller's clock ago (a clock that went backwards
 * allows one at once): a stream of made-up kids costs one fetch per interval. */
/* Whether a kid asked for at now is within the rate limit of the last request. */
static bool too_soon(int64_t last, int64_t now) {
        int64_t elapsed;

        return last != REFRESH_NEVER && now >= last && !__builtin_sub_overflow(now, last, &elapsed) &&
               elapsed < KH_JWKS_REFRESH_MIN_INTERVAL_S;
}

static bool request_refresh(struct kh_issuer *iss, int64_t now) {
        int64_t last;
        bool asked = true;

        /* Made-up kids are the common case here (a flood of forged tokens): refused without
         * the lock while no load is under way and the last one is recent. */
        if (!atomic_load(&iss->refreshing) && too_soon(atomic_load(&iss->last_request), now))
                return false;
        (void) pthread_mutex_lock(&iss->mutex);
        last = atomic_load(&iss->last_request);
        if (!iss->refreshing) {
                if (too_soon(last, now)) {
                        asked = false;
                } else {
                        atomic_store(&iss->last_request, now);
                        atomic_store(&iss->refreshing, true);
                        iss->wanted = true;
                        (void) pthread_cond_signal(&iss->cond);
                }
        }
        (void) pthread_mutex_unlock(&iss->mutex);
        return asked;
}

void kh_issuer_wait(struct kh_issuer *iss, struct kh_issuer_waiter *w, uint64_t seen) {
        (void) pthread_mutex_lock(&iss->mutex);
        if (atomic_load(&iss->refreshes) != seen || !iss->refreshing) {
                /* a load ended since the caller looked: try again at once */
                (void) pthread_mutex_unlock(&iss->mutex);
                kh_loop_post(w->loop, &w->task);
                return;
        }
        w->next = iss->waiters;
        iss->waiters = w;
        (void) pthread_mutex_unlock(&iss->mutex);
}

uint64_t kh_issuer_key_generation(const struct kh_issuer *iss) {
        return atomic_load_explicit(&iss->key_generation, memory_order_acquire);
}

bool kh_issuer_names_itself(const struct kh_issuer *iss, const char *token, size_t len) {
        KH_CLEANUP(kh_jwt_freep) struct kh_jwt *jwt = NULL;
        const char *claimed;

        if (kh_jwt_parse(token, len, &jwt) < 0)
                return false;
        claimed = kh_jwt_unverified_iss(jwt);
        return claimed && iss->expected_issuer && strcmp(claimed, iss->expected_issuer) == 0;
}

int kh_issuer_verify(struct kh_issuer *iss, const char *token, size_t len, int64_t now,
                     struct kh_principal *ret) {
        KH_CLEANUP(kh_jwt_freep) struct kh_jwt *jwt = NULL;
        const struct kh_claims_policy policy = {
                .issuer = iss->expected_issuer,
                .audience = iss->audience,
                .now = now,
                .skew_s = KH_CLOCK_SKEW_S,
                .admins = iss->admins,
                .n_admins = iss->n_admins,
                .approvers = iss->approvers,
                .n_approvers = iss->n_approvers,
                .scope_array_only = iss->scope_array_only,
                .max_lifetime_s = iss->max_lifetime_s,
        };
        struct kh_principal p;
        uint64_t generation;
        EVP_PKEY *key;
        int r;

        r = kh_jwt_parse(token, len, &jwt);
        if (r < 0)
                return r;

        (void) pthread_rwlock_rdlock(&iss->lock);
        generation = kh_issuer_key_generation(iss);
        key = kh_jwks_find(iss->jwks, kh_jwt_kid(jwt), kh_jwt_alg(jwt));
        r = key ? kh_jwt_verify_signature(jwt, key) : -KH_E_INVALID_TOKEN;
        (void) pthread_rwlock_unlock(&iss->lock);
        if (!key && request_refresh(iss, now))
                return KH_ISSUER_WAIT;
        if (r < 0)
                return r;

        r = kh_jwt_check_claims(jwt, &policy, &p);
        if (r < 0)
                return r;
        strcpy(p.tenant, iss->tenant);
        p.key_generation = generation;
        *ret = p;
        return 0;
}
