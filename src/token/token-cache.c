/* Set-associative layout: the table is nsets sets of WAYS slots. A token hash picks one set
 * from its first 8 bytes (SHA-256 output is uniform, so no further mixing is needed), and
 * the set's tags (those 8 bytes per slot) fill exactly one cache line, so a probe touches
 * one line of tags and, on a tag match, one entry. Eviction never scans more than a set,
 * which makes put O(1) and the bound exact. */
#include "token/token-cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/limits.h"

#define WAYS 8

struct set {
        uint64_t tag[WAYS]; /* first 8 bytes of the token hash */
        uint8_t used;       /* bit i: slot i holds an entry */
};

struct kh_token_cache {
        size_t nsets, ways, size;
        uint64_t hits, misses;
        struct set *sets;
        struct kh_principal *entries; /* nsets * ways, slot (s, i) at s * ways + i */
};

int kh_token_cache_new(size_t max_entries, struct kh_token_cache **ret) {
        struct kh_token_cache *c;

        if (max_entries == 0 || max_entries > KH_TOKEN_CACHE_MAX)
                return -EINVAL;
        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->ways = max_entries < WAYS ? max_entries : WAYS;
        c->nsets = max_entries / c->ways;
        c->sets = calloc(c->nsets, sizeof(*c->sets));
        c->entries = calloc(c->nsets * c->ways, sizeof(*c->entries));
        if (!c->sets || !c->entries) {
                (void) kh_token_cache_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

struct kh_token_cache *kh_token_cache_free(struct kh_token_cache *c) {
        if (!c)
                return NULL;
        if (c->entries) /* subjects and token hashes: not secrets, but no need to leave them */
                OPENSSL_cleanse(c->entries, c->nsets * c->ways * sizeof(*c->entries));
        free(c->entries);
        free(c->sets);
        free(c);
        return NULL;
}

static uint64_t tag_of(const uint8_t hash[static KH_SHA256_LEN]) {
        uint64_t t;

        memcpy(&t, hash, sizeof(t));
        return t;
}

static size_t set_of(const struct kh_token_cache *c, uint64_t tag) {
        return (size_t) (tag % c->nsets);
}

static bool expired(const struct kh_principal *p, int64_t now) {
        int64_t limit;

        return !__builtin_add_overflow(p->exp, KH_CLOCK_SKEW_S, &limit) && now > limit;
}

/* The slot holding hash in set s, or -1. */
static int find(const struct kh_token_cache *c, size_t s, uint64_t tag,
                const uint8_t hash[static KH_SHA256_LEN]) {
        const struct set *set = &c->sets[s];

        for (size_t i = 0; i < c->ways; i++)
                if ((set->used & (1u << i)) && set->tag[i] == tag &&
                    CRYPTO_memcmp(c->entries[s * c->ways + i].token_hash, hash,
                                  KH_SHA256_LEN) == 0)
                        return (int) i;
        return -1;
}

bool kh_token_cache_get(struct kh_token_cache *c, const uint8_t hash[static KH_SHA256_LEN],
                        const char *tenant, int64_t now, struct kh_principal *ret) {
        uint64_t tag = tag_of(hash);
        size_t s = set_of(c, tag);
        const struct kh_principal *e;
        int i = find(c, s, tag, hash);

        if (i < 0)
                goto miss;
        e = &c->entries[s * c->ways + (size_t) i];
        if (expired(e, now)) {
                c->sets[s].used &= (uint8_t) ~(1u << i);
                c->size--;
                goto miss;
        }
        if (strcmp(e->tenant, tenant) != 0)
                goto miss;
        *ret = *e;
        c->hits++;
        return true;
miss:
        c->misses++;
        return false;
}

void kh_token_cache_put(struct kh_token_cache *c, const struct kh_principal *p) {
        uint64_t tag = tag_of(p->token_hash);
        size_t s = set_of(c, tag);
        struct set *set = &c->sets[s];
        int i = find(c, s, tag, p->token_hash);

        if (i < 0) {
                /* a free slot, else the entry that expires first (the least useful one) */
                for (size_t j = 0; j < c->ways; j++) {
                        if (!(set->used & (1u << j))) {
                                i = (int) j;
                                c->size++;
                                break;
                        }
                        if (i < 0 || c->entries[s * c->ways + j].exp <
                                             c->entries[s * c->ways + (size_t) i].exp)
                                i = (int) j;
                }
        }
        set->tag[i] = tag;
        set->used |= (uint8_t) (1u << i);
        c->entries[s * c->ways + (size_t) i] = *p;
}

size_t kh_token_cache_size(const struct kh_token_cache *c) {
        return c->size;
}

uint64_t kh_token_cache_hits(const struct kh_token_cache *c) {
        return c->hits;
}

uint64_t kh_token_cache_misses(const struct kh_token_cache *c) {
        return c->misses;
}
