#pragma once
#include <stddef.h>
#include <stdint.h>

#define KH_SHA256_LEN 32

/* SHA-256 of p[0..n). Never fails (aborts only if OpenSSL itself is broken). Thread-safe. */
void kh_sha256(const void *p, size_t n, uint8_t out[static KH_SHA256_LEN]);
