/* A growable byte buffer with a hard maximum given at creation (curl's dynbuf idea).
 * The struct is public so it can live on the stack; touch fields only through these
 * functions. Invariant: data is NUL-terminated when non-NULL (len excludes the NUL). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

struct kh_buf {
        uint8_t *data;
        size_t len;
        size_t cap;
        size_t max;     /* appends beyond this fail with -E2BIG */
        bool sensitive; /* wiped before every free or reallocation */
};

/* Initialises an empty buffer that may hold at most max bytes. Never fails. */
void kh_buf_init(struct kh_buf *b, size_t max, bool sensitive);

/* Appends n bytes. Returns 0, -E2BIG past the maximum (buffer unchanged) or -ENOMEM. */
KH_MUST_CHECK int kh_buf_append(struct kh_buf *b, const void *p, size_t n);
KH_MUST_CHECK int kh_buf_append_str(struct kh_buf *b, const char *s);

/* Empties the buffer, keeping its storage (wiped if sensitive). */
void kh_buf_reset(struct kh_buf *b);

/* Releases storage (wiped if sensitive); the buffer is empty and reusable afterwards. */
void kh_buf_free(struct kh_buf *b);
static inline void kh_buf_freep(struct kh_buf *b) {
        kh_buf_free(b);
}
