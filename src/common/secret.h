/* Secrets: bytes that live in locked (mlock), non-dumpable (MADV_DONTDUMP) memory that a
 * forked child sees zeroed (MADV_WIPEONFORK), wiped on free. Small secrets (<= 64 bytes:
 * DEKs, user keys, master keys) come from per-thread slabs of such pages, so creating one
 * on the request path makes no system call; larger ones get pages of their own.
 * Code reads a secret in place and never copies it out. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cleanup.h"

struct kh_secret;

#define KH_SECRET_SMALL_MAX 64

/* A new zero-filled secret of len bytes (len > 0). Returns 0, -EINVAL or -ENOMEM. */
KH_MUST_CHECK int kh_secret_new(size_t len, struct kh_secret **ret);

/* A new secret holding a copy of p[0..len). */
KH_MUST_CHECK int kh_secret_new_from(const void *p, size_t len, struct kh_secret **ret);

/* A new secret holding a copy of s (borrowed), for code outside crypto/ and keystore/ that
 * hands a key on without reading it. Returns 0 or -ENOMEM. */
KH_MUST_CHECK int kh_secret_dup(const struct kh_secret *s, struct kh_secret **ret);

/* Wipes and releases s. NULL-safe; returns NULL. Any thread may free any secret. */
struct kh_secret *kh_secret_free(struct kh_secret *s);
KH_DEFINE_CLEANUP(kh_secret_free, struct kh_secret *)

size_t kh_secret_len(const struct kh_secret *s);

/* The bytes, for crypto/ and keystore/ only (a CI grep enforces it). */
const uint8_t *kh_secret_bytes(const struct kh_secret *s);
uint8_t *kh_secret_bytes_mut(struct kh_secret *s);

/* Constant-time equality (lengths are not secret). */
bool kh_secret_equal(const struct kh_secret *a, const struct kh_secret *b);

/* Bytes of locked memory the slabs hold, for /metrics and tests. */
size_t kh_secret_locked_bytes(void);
