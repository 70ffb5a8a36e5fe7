#include "secret.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/crypto.h>

/* A secret is a header followed by its bytes in the same locked mapping. Small ones are
 * fixed-size slots carved from locked chunks; freed slots go onto the freeing thread's
 * list. Chunks are never unmapped, so a slot may move between threads safely, and the
 * total stays bounded by the peak number of live small secrets. */
struct kh_secret {
        size_t len;
        size_t map_len;                  /* 0 for a slab slot */
        struct kh_secret *next_free;     /* slab free list link while unused */
        uint8_t bytes[];
};

#define SLOT_SIZE (sizeof(struct kh_secret) + KH_SECRET_SMALL_MAX)
#define CHUNK_SIZE (64 * 1024)

static _Thread_local struct kh_secret *free_slots;
static _Atomic size_t locked_bytes;

static void *locked_map(size_t len) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

        if (p == MAP_FAILED)
                return NULL;
        /* mlock may fail under a low RLIMIT_MEMLOCK: the memory is still kept out of
         * core dumps and forks, which is what protects it at rest. */
        (void) mlock(p, len);
        (void) madvise(p, len, MADV_DONTDUMP);
#ifdef MADV_WIPEONFORK
        (void) madvise(p, len, MADV_WIPEONFORK);
#endif
        atomic_fetch_add_explicit(&locked_bytes, len, memory_order_relaxed);
        return p;
}

static int slab_refill(void) {
        uint8_t *chunk = locked_map(CHUNK_SIZE);

        if (!chunk)
                return -ENOMEM;
        for (size_t off = 0; off + SLOT_SIZE <= CHUNK_SIZE; off += SLOT_SIZE) {
                struct kh_secret *s = (struct kh_secret *) (void *) (chunk + off);
                s->next_free = free_slots;
                free_slots = s;
        }
        return 0;
}

int kh_secret_new(size_t len, struct kh_secret **ret) {
        struct kh_secret *s;
        int r;

        if (len == 0)
                return -EINVAL;

        if (len <= KH_SECRET_SMALL_MAX) {
                if (!free_slots) {
                        r = slab_refill();
                        if (r < 0)
                                return r;
                }
                s = free_slots;
                free_slots = s->next_free;
                s->map_len = 0;
        } else {
                size_t map_len;
                if (__builtin_add_overflow(len, sizeof(*s), &map_len))
                        return -ENOMEM;
                s = locked_map(map_len);
                if (!s)
                        return -ENOMEM;
                s->map_len = map_len;
        }
        s->next_free = NULL;
        s->len = len;
        memset(s->bytes, 0, len);
        *ret = s;
        return 0;
}

int kh_secret_new_from(const void *p, size_t len, struct kh_secret **ret) {
        struct kh_secret *s;
        int r;

        r = kh_secret_new(len, &s);
        if (r < 0)
                return r;
        memcpy(s->bytes, p, len);
        *ret = s;
        return 0;
}

int kh_secret_dup(const struct kh_secret *s, struct kh_secret **ret) {
        return kh_secret_new_from(s->bytes, s->len, ret);
}

struct kh_secret *kh_secret_free(struct kh_secret *s) {
        if (!s)
                return NULL;
        OPENSSL_cleanse(s->bytes, s->len);
        if (s->map_len == 0) {
                s->len = 0;
                s->next_free = free_slots;
                free_slots = s;
        } else {
                size_t map_len = s->map_len;
                (void) munlock(s, map_len);
                (void) munmap(s, map_len);
                atomic_fetch_sub_explicit(&locked_bytes, map_len, memory_order_relaxed);
        }
        return NULL;
}

size_t kh_secret_len(const struct kh_secret *s) {
        return s->len;
}

const uint8_t *kh_secret_bytes(const struct kh_secret *s) {
        return s->bytes;
}

uint8_t *kh_secret_bytes_mut(struct kh_secret *s) {
        return s->bytes;
}

bool kh_secret_equal(const struct kh_secret *a, const struct kh_secret *b) {
        if (a->len != b->len)
                return false;
        return CRYPTO_memcmp(a->bytes, b->bytes, a->len) == 0;
}

size_t kh_secret_locked_bytes(void) {
        return atomic_load_explicit(&locked_bytes, memory_order_relaxed);
}
