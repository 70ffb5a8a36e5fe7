#include "keyring.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/errors.h"
#include "common/parse.h"
#include "crypto/hash.h"
#include "crypto/rsa.h"

const struct kh_key_version *kh_tenant_keys_version(const struct kh_tenant_keys *tk,
                                                    uint32_t version) {
        for (size_t i = 0; i < tk->n_versions; i++)
                if (tk->versions[i].version == version)
                        return &tk->versions[i];
        return NULL;
}

int kh_keys_refusal(const struct kh_keys *k) {
        if (k->sealed)
                return -KH_E_SEALED;
        return k->unavailable ? -KH_E_KEYSTORE_UNAVAILABLE : 0;
}

bool kh_tenant_keys_killed(const struct kh_tenant_keys *tk) {
        if (tk->active)
                return false;
        for (size_t i = 0; i < tk->n_versions; i++)
                if (tk->versions[i].state == KH_KEY_REVOKED &&
                    tk->versions[i].prior_state == KH_KEY_ACTIVE)
                        return true;
        return false;
}

struct kh_keys *kh_keys_ref(const struct kh_keys *k) {
        /* The count is the one mutable part of a published snapshot. */
        struct kh_keys *m = (struct kh_keys *) (uintptr_t) k;

        atomic_fetch_add_explicit(&m->refs_, 1, memory_order_relaxed);
        return m;
}

struct kh_keys *kh_keys_unref(struct kh_keys *k) {
        if (!k)
                return NULL;
        if (atomic_fetch_sub_explicit(&k->refs_, 1, memory_order_acq_rel) != 1)
                return NULL;
        for (size_t t = 0; t < k->n_tenants; t++)
                for (size_t i = 0; i < k->tenants[t].n_versions; i++)
                        k->tenants[t].versions[i].dek = kh_secret_free(k->tenants[t].versions[i].dek);
        free(k);
        return NULL;
}

static bool state_decrypts(enum kh_key_state s) {
        return s == KH_KEY_ACTIVE || s == KH_KEY_ARCHIVED || s == KH_KEY_REVOKED;
}

/* ---- signed DEKs ---- */

/* Every field has a fixed size or a length before it, so no two (tenant, version, wrapped)
 * frame to the same bytes. */
#define DEK_MESSAGE_MAX \
        (sizeof(KH_DEK_SIGNATURE_LABEL) + 1 + KH_TENANT_ID_MAX + 4 + 2 + KH_WRAPPED_DEK_MAX)
_Static_assert(KH_WRAPPED_DEK_MAX <= UINT16_MAX, "the wrapped length is framed in 16 bits");
_Static_assert(KH_TENANT_ID_MAX <= UINT8_MAX, "the tenant length is framed in 8 bits");

static int dek_digest(const char *tenant, uint32_t version, const uint8_t *wrapped, size_t len,
                      uint8_t digest[static KH_SHA256_LEN]) {
        uint8_t m[DEK_MESSAGE_MAX];
        size_t tenant_len, n;

        if (!tenant || version == 0 || !wrapped || len == 0 || len > KH_WRAPPED_DEK_MAX)
                return -EINVAL;
        tenant_len = strnlen(tenant, KH_TENANT_ID_MAX + 1);
        if (tenant_len > KH_TENANT_ID_MAX || !kh_tenant_id_is_valid(tenant, tenant_len))
                return -EINVAL;

        memcpy(m, KH_DEK_SIGNATURE_LABEL, sizeof(KH_DEK_SIGNATURE_LABEL)); /* with its NUL */
        n = sizeof(KH_DEK_SIGNATURE_LABEL);
        m[n++] = (uint8_t) tenant_len;
        memcpy(m + n, tenant, tenant_len);
        n += tenant_len;
        m[n++] = (uint8_t) (version >> 24);
        m[n++] = (uint8_t) (version >> 16);
        m[n++] = (uint8_t) (version >> 8);
        m[n++] = (uint8_t) version;
        m[n++] = (uint8_t) (len >> 8);
        m[n++] = (uint8_t) len;
        memcpy(m + n, wrapped, len);
        n += len;
        kh_sha256(m, n, digest);
        return 0;
}

static struct kh_key_ref key_ref(const char *tenant, uint32_t version) {
        struct kh_key_ref ref = { .version = version };

        (void) snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
        return ref;
}

int kh_dek_sign(struct kh_keystore *ks, const char *tenant, uint32_t version,
                const uint8_t *wrapped, size_t len, struct kh_buf *sig) {
        uint8_t digest[KH_SHA256_LEN];
        struct kh_key_ref ref;
        int r;

        r = dek_digest(tenant, version, wrapped, len, digest);
        if (r < 0)
                return r;
        ref = key_ref(tenant, version);
        return kh_keystore_sign(ks, &ref, digest, sizeof(digest), sig);
}

int kh_dek_verify(struct kh_keystore *ks, const char *tenant, const struct kh_tenant_key *key,
                  unsigned *ret_bits) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        uint8_t digest[KH_SHA256_LEN];
        struct kh_key_ref ref = key_ref(tenant, key->version);
        int r;

        if (!key->signature)
                return -KH_E_INTEGRITY;
        r = dek_digest(tenant, key->version, key->wrapped_dek, key->wrapped_dek_len, digest);
        if (r < 0)
                return r;
        r = kh_keystore_public_key(ks, &ref, &pub);
        if (r < 0)
                return r;
        if (ret_bits)
                *ret_bits = (unsigned) EVP_PKEY_get_bits(pub);
        return kh_rsa_pss_verify(pub, digest, key->signature, key->signature_len);
}

/* The rows of one tenant that have no signature yet and whose DEK is unwrapped (others
 * are never checked: their key may be gone from the key store). */
struct unsigned_deks {
        size_t n;
        struct {
                uint32_t version;
                size_t len;
                uint8_t wrapped[KH_WRAPPED_DEK_MAX];
        } row[KH_KEY_VERSIONS_MAX];
};

static int collect_unsigned(const struct kh_tenant_key *key, void *userdata) {
        struct unsigned_deks *u = userdata;

        if (key->signature || !state_decrypts(key->state))
                return 0;
        if (u->n == KH_KEY_VERSIONS_MAX)
                return -E2BIG;
        u->row[u->n].version = key->version;
        u->row[u->n].len = key->wrapped_dek_len;
        memcpy(u->row[u->n].wrapped, key->wrapped_dek, key->wrapped_dek_len);
        u->n++;
        return 0;
}

/* Signs the unsigned rows of tenant. The rows are read first and signed afterwards, so that
 * no update runs under the open read of the same table. */
static int sign_unsigned(struct kh_store *store, struct kh_keystore *ks, const char *tenant,
                         uint32_t *ret_version) {
        KH_CLEANUP_FREE struct unsigned_deks *u = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 };
        int r;

        u = calloc(1, sizeof(*u));
        if (!u)
                return -ENOMEM;
        r = kh_store_tenant_keys(store, tenant, collect_unsigned, u);
        if (r < 0)
                return r;

        kh_buf_init(&sig, KH_STORE_SIGNATURE_MAX, false);
        for (size_t i = 0; i < u->n; i++) {
                kh_buf_reset(&sig);
                r = kh_dek_sign(ks, tenant, u->row[i].version, u->row[i].wrapped, u->row[i].len,
                                &sig);
                if (r >= 0)
                        r = kh_store_tenant_key_set_signature(store, tenant, u->row[i].version,
                                                              sig.data, sig.len);
                if (r < 0) {
                        *ret_version = u->row[i].version;
                        return r;
                }
        }
        return 0;
}

/* ---- loading ---- */

struct load_ctx {
        struct kh_keystore *ks;
        const char *tenant;
        struct kh_tenant_keys *tk;
        uint32_t failed_version;
        bool unsigned_dek;
        int error;
};

static int load_version(const struct kh_tenant_key *key, void *userdata) {
        struct load_ctx *c = userdata;
        struct kh_tenant_keys *tk = c->tk;
        struct kh_key_version *v;
        struct kh_key_ref ref = key_ref(c->tenant, key->version);
        int r;

        c->failed_version = key->version;
        if (tk->n_versions >= KH_KEY_VERSIONS_MAX)
                return c->error = -E2BIG;
        v = &tk->versions[tk->n_versions];
        *v = (struct kh_key_version) { .version = key->version, .state = key->state,
                                       .prior_state = key->prior_state,
                                       .created = key->created_at };

        /* A revoked version keeps its DEK loaded so that reinstate needs no key store
         * round trip; reads of it are refused by state, not by absence. The signature is
         * checked first: unwrapping proves only that the DEK was wrapped under the public
         * key, which anyone may hold. */
        if (state_decrypts(key->state) && c->ks) {
                c->unsigned_dek = !key->signature;
                r = kh_dek_verify(c->ks, c->tenant, key, &v->rsa_bits);
                if (r >= 0)
                        r = kh_keystore_unwrap(c->ks, &ref, key->wrapped_dek, key->wrapped_dek_len,
                                               &v->dek);
                if (r < 0)
                        return c->error = r;
        }
        if (key->state == KH_KEY_ACTIVE)
                tk->active = v;
        tk->n_versions++;
        c->failed_version = 0;
        return 0;
}

int kh_keys_load(struct kh_store *store, struct kh_keystore *ks, const char *const *tenants,
                 size_t n, unsigned flags, struct kh_keys **ret, struct kh_keys_failure *failed) {
        KH_CLEANUP(kh_keys_unrefp) struct kh_keys *k = NULL;
        int r;

        *failed = (struct kh_keys_failure) { 0 };
        for (size_t t = 0; t < n && ks && (flags & KH_KEYS_SIGN_UNSIGNED); t++) {
                r = sign_unsigned(store, ks, tenants[t], &failed->version);
                if (r < 0) {
                        failed->tenant = t;
                        return r;
                }
        }

        k = calloc(1, sizeof(*k) + n * sizeof(k->tenants[0]));
        if (!k)
                return -ENOMEM;
        atomic_init(&k->refs_, 1);
        k->n_tenants = n;
        k->sealed = !ks;

        for (size_t t = 0; t < n; t++) {
                struct load_ctx c = { .ks = ks, .tenant = tenants[t], .tk = &k->tenants[t] };

                r = kh_store_tenant_keys(store, tenants[t], load_version, &c);
                if (r == 0 && k->tenants[t].n_versions == 0 && ks)
                        r = -ENOENT;
                if (r < 0) {
                        /* a row the store refused is not the one load_version saw last */
                        *failed = (struct kh_keys_failure) {
                                .tenant = t, .version = c.error ? c.failed_version : 0,
                                .unsigned_dek = c.error && c.unsigned_dek };
                        return c.error ? c.error : r;
                }
        }
        *ret = KH_TAKE_PTR(k);
        return 0;
}

/* ---- the ring ---- */

/* A reader's last quiescent epoch, alone on its cache line: each worker writes its own. */
struct reader {
        _Alignas(64) _Atomic uint64_t seen;  /* 0: offline */
};

struct retired {
        struct kh_keys *keys;
        uint64_t epoch;                      /* free once every online reader saw this */
        struct retired *next;
};

struct kh_keyring {
        _Atomic(struct kh_keys *) current;
        _Atomic uint64_t epoch;
        pthread_mutex_t lock;                /* writers and the retired list */
        struct retired *retired;
        _Atomic size_t n_retired;
        unsigned n_readers;
        struct reader readers[];
};

int kh_keyring_new(unsigned n_readers, struct kh_keys *first, struct kh_keyring **ret) {
        struct kh_keyring *ring;

        if (!first || n_readers == 0 || n_readers > KH_THREADS_MAX)
                return -EINVAL;
        ring = aligned_alloc(64, (sizeof(*ring) + n_readers * sizeof(ring->readers[0]) + 63) / 64 * 64);
        if (!ring)
                return -ENOMEM;
        memset(ring, 0, sizeof(*ring) + n_readers * sizeof(ring->readers[0]));
        pthread_mutex_init(&ring->lock, NULL);
        atomic_init(&ring->epoch, 1);
        atomic_init(&ring->current, first);
        ring->n_readers = n_readers;
        *ret = ring;
        return 0;
}

/* Releases what no online reader can hold. Caller holds ring->lock. */
static void reclaim_locked(struct kh_keyring *ring) {
        uint64_t oldest = UINT64_MAX;
        struct retired **p = &ring->retired;

        /* pairs with the fence in kh_keyring_quiescent(): the swap of current is ordered
         * before these loads, as a reader's store of seen is before its next load of it */
        atomic_thread_fence(memory_order_seq_cst);
        for (unsigned i = 0; i < ring->n_readers; i++) {
                uint64_t s = atomic_load_explicit(&ring->readers[i].seen, memory_order_acquire);
                if (s != 0 && s < oldest)
                        oldest = s;
        }
        while (*p) {
                struct retired *r = *p;
                if (r->epoch <= oldest) {
                        *p = r->next;
                        kh_keys_unref(r->keys);
                        free(r);
                        atomic_fetch_sub_explicit(&ring->n_retired, 1, memory_order_relaxed);
                } else {
                        p = &r->next;
                }
        }
}

struct kh_keyring *kh_keyring_free(struct kh_keyring *ring) {
        if (!ring)
                return NULL;
        pthread_mutex_lock(&ring->lock);
        while (ring->retired) {
                struct retired *r = ring->retired;
                ring->retired = r->next;
                kh_keys_unref(r->keys);
                free(r);
        }
        pthread_mutex_unlock(&ring->lock);
        kh_keys_unref(atomic_load(&ring->current));
        pthread_mutex_destroy(&ring->lock);
        free(ring);
        return NULL;
}

const struct kh_keys *kh_keyring_get(const struct kh_keyring *ring) {
        return atomic_load_explicit(&ring->current, memory_order_acquire);
}

void kh_keyring_publish(struct kh_keyring *ring, struct kh_keys *k) {
        struct retired *r = malloc(sizeof(*r));
        struct kh_keys *old;

        pthread_mutex_lock(&ring->lock);
        old = atomic_exchange_explicit(&ring->current, k, memory_order_acq_rel);
        /* Readers that load from here on see k; one that loaded old has seen an epoch below
         * this one until its next quiescent point. */
        uint64_t e = atomic_fetch_add_explicit(&ring->epoch, 1, memory_order_acq_rel) + 1;
        if (r) {
                *r = (struct retired) { .keys = old, .epoch = e, .next = ring->retired };
                ring->retired = r;
                atomic_fetch_add_explicit(&ring->n_retired, 1, memory_order_relaxed);
        } else {
                /* Out of memory for the list entry: keep the old snapshot for good rather
                 * than free it under a reader (a leak of one snapshot, not a crash). */
                (void) old;
        }
        reclaim_locked(ring);
        pthread_mutex_unlock(&ring->lock);
}

struct kh_keys *kh_keyring_acquire(struct kh_keyring *ring) {
        struct kh_keys *k;

        /* the ring's own reference to current is dropped only under the lock (publish puts
         * it on the retired list; reclaim releases it there) */
        pthread_mutex_lock(&ring->lock);
        k = kh_keys_ref(atomic_load_explicit(&ring->current, memory_order_acquire));
        pthread_mutex_unlock(&ring->lock);
        return k;
}

void kh_keyring_synchronize(struct kh_keyring *ring) {
        uint64_t target = atomic_load_explicit(&ring->epoch, memory_order_acquire);

        for (;;) {
                bool behind = false;

                atomic_thread_fence(memory_order_seq_cst);
                for (unsigned i = 0; i < ring->n_readers; i++) {
                        uint64_t s = atomic_load_explicit(&ring->readers[i].seen,
                                                          memory_order_acquire);
                        if (s != 0 && s < target)
                                behind = true;
                }
                if (!behind)
                        break;
                (void) nanosleep(&(struct timespec) { .tv_nsec = 1000 * 1000 }, NULL);
        }
        pthread_mutex_lock(&ring->lock);
        reclaim_locked(ring);
        pthread_mutex_unlock(&ring->lock);
}

void kh_keyring_quiescent(struct kh_keyring *ring, unsigned r) {
        uint64_t e = atomic_load_explicit(&ring->epoch, memory_order_acquire);

        atomic_store_explicit(&ring->readers[r].seen, e, memory_order_release);
        /* Store then load: without a full fence a reader coming online could load current
         * before its seen is visible, and a writer that read seen == 0 would free what it
         * loaded. */
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load_explicit(&ring->n_retired, memory_order_relaxed) == 0)
                return;
        if (pthread_mutex_trylock(&ring->lock) == 0) {  /* a writer busy now reclaims itself */
                reclaim_locked(ring);
                pthread_mutex_unlock(&ring->lock);
        }
}

void kh_keyring_online(struct kh_keyring *ring, unsigned r) {
        kh_keyring_quiescent(ring, r);
}

void kh_keyring_offline(struct kh_keyring *ring, unsigned r) {
        atomic_store_explicit(&ring->readers[r].seen, 0, memory_order_release);
}

size_t kh_keyring_retired(struct kh_keyring *ring) {
        return atomic_load_explicit(&ring->n_retired, memory_order_relaxed);
}
