#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

void kh_buf_init(struct kh_buf *b, size_t max, bool sensitive) {
        *b = (struct kh_buf) { .max = max, .sensitive = sensitive };
}

static int buf_grow(struct kh_buf *b, size_t need) {
        size_t cap = b->cap ? b->cap : 64;
        uint8_t *p;

        while (cap < need + 1) {
                if (__builtin_mul_overflow(cap, 2, &cap))
                        return -ENOMEM;
        }
        if (cap > b->max + 1)
                cap = b->max + 1;

        if (b->sensitive) {
                /* realloc could leave a copy of the secret behind in freed memory */
                p = malloc(cap);
                if (!p)
                        return -ENOMEM;
                if (b->data) {
                        memcpy(p, b->data, b->len + 1);
                        OPENSSL_cleanse(b->data, b->cap);
                        free(b->data);
                }
        } else {
                p = realloc(b->data, cap);
                if (!p)
                        return -ENOMEM;
        }
        b->data = p;
        b->cap = cap;
        return 0;
}

int kh_buf_append(struct kh_buf *b, const void *p, size_t n) {
        size_t need;
        int r;

        if (__builtin_add_overflow(b->len, n, &need) || need > b->max)
                return -E2BIG;
        if (need + 1 > b->cap) {
                r = buf_grow(b, need);
                if (r < 0)
                        return r;
        }
        if (n > 0)
                memcpy(b->data + b->len, p, n);
        b->len = need;
        b->data[b->len] = 0;
        return 0;
}

int kh_buf_append_str(struct kh_buf *b, const char *s) {
        return kh_buf_append(b, s, strlen(s));
}

void kh_buf_reset(struct kh_buf *b) {
        if (!b->data)
                return;
        if (b->sensitive)
                OPENSSL_cleanse(b->data, b->cap);
        b->len = 0;
        b->data[0] = 0;
}

void kh_buf_free(struct kh_buf *b) {
        if (b->data && b->sensitive)
                OPENSSL_cleanse(b->data, b->cap);
        free(b->data);
        b->data = NULL;
        b->len = b->cap = 0;
}
