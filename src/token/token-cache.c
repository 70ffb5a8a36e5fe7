/* Set-associative layout with two choices: the table is nsets sets of WAYS slots, and a
 * token hash may live in either of two sets, picked from its first and its second 8 bytes
 * (SHA-256 output is uniform, so no further mixing is needed). A new entry goes to the
 * less full of its two sets. With one choice, sets fill unevenly: 10,000 tokens in 16,384
 * slots of 8-way sets leave about 2% of them evicting each other forever (each such miss
 * is a full signature verification); with two choices no set overflows until the table is
 * about three quarters full. Each set's tags (the first 8 bytes of its entries' hashes)
 * fill exactly one cache line, so a probe touches at most two lines of tags and, on a tag
 * match, one entry. Eviction never scans more than the two sets, which makes put O(1) and
 * the bound exact. */
#include "token/token-cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

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

/* The two sets a hash may live in (the same one twice when there is a single set). */
static void sets_of(const struct kh_token_cache *c, const uint8_t hash[static KH_SHA256_LEN],
                    size_t ret[static 2]) {
        uint64_t second;

        memcpy(&second, hash + sizeof(uint64_t), sizeof(second));
        ret[0] = (size_t) (tag_of(hash) % c->nsets);
        ret[1] = (size_t) (second % c->nsets);
}

static unsigned used_slots(const struct set *set) {
        return (unsigned) __builtin_popcount(set->used);
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

/* The set of the two that holds hash, with its slot in *ret_slot, or -1. */
static ssize_t find_either(const struct kh_token_cache *c, const size_t sets[static 2],
                           uint64_t tag, const uint8_t hash[static KH_SHA256_LEN],
                           int *ret_slot) {
        for (size_t k = 0; k < 2; k++) {
                int i = find(c, sets[k], tag, hash);

                if (i >= 0) {
                        *ret_slot = i;
                        return (ssize_t) sets[k];
                }
        }
        return -1;
}

bool kh_token_cache_get(struct kh_token_cache *c, const uint8_t hash[static KH_SHA256_LEN],
                        const char *tenant, int64_t now, struct kh_principal *ret) {
        uint64_t tag = tag_of(hash);
        const struct kh_principal *e;
        size_t sets[2], s;
        ssize_t found;
        int i = -1;

        sets_of(c, hash, sets);
        found = find_either(c, sets, tag, hash, &i);
        if (found < 0)
                goto miss;
        s = (size_t) found;
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
        size_t sets[2], s;
        ssize_t found;
        int i = -1;

        sets_of(c, p->token_hash, sets);
        found = find_either(c, sets, tag, p->token_hash, &i);
        if (found >= 0) {
                s = (size_t) found;
        } else {
                /* the less full of the two sets; if both are full, the entry of the two that
                 * expires first (the least useful one) */
                s = used_slots(&c->sets[sets[1]]) < used_slots(&c->sets[sets[0]]) ? sets[1]
                                                                                  : sets[0];
                for (size_t j = 0; j < c->ways; j++)
                        if (!(c->sets[s].used & (1u << j))) {
                                i = (int) j;
                                c->size++;
                                break;
                        }
                if (i < 0) {
                        const struct kh_principal *first = NULL;

                        for (size_t k = 0; k < 2; k++)
                                for (size_t j = 0; j < c->ways; j++) {
                                        const struct kh_principal *e =
                                                &c->entries[sets[k] * c->ways + j];

                                        if (!first || e->exp < first->exp) {
                                                first = e;
                                                s = sets[k];
                                                i = (int) j;
                                        }
                                }
                }
        }
        c->sets[s].tag[i] = tag;
        c->sets[s].used |= (uint8_t) (1u << i);
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
