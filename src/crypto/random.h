#pragma once
#include <stddef.h>

#include "common/cleanup.h"
#include "common/secret.h"

/* n bytes from OpenSSL's CSPRNG. Returns 0 or -EIO. Thread-safe. */
KH_MUST_CHECK int kh_random_bytes(void *buf, size_t n);

/* KH_NONCE_LEN (12) fresh random bytes for an AEAD nonce: the same CSPRNG, drawn a few
 * kilobytes at a time into a per-thread pool, because each RAND_bytes call costs a getpid()
 * system call (OpenSSL's fork check), a tenth of re-encrypting a record. A forked child
 * never uses its parent's pool (pthread_atfork). Returns 0 or -EIO. Thread-safe. */
#define KH_NONCE_LEN 12
KH_MUST_CHECK int kh_random_nonce(void *out);

/* Added by crypto/: a new secret of len (> 0) random bytes, generated in place so a fresh
 * key (a DEK) never sits in ordinary memory. On success *ret is a new secret the caller
 * frees. Returns 0, -EINVAL (len 0), -ENOMEM or -EIO. Thread-safe. */
KH_MUST_CHECK int kh_random_secret(size_t len, struct kh_secret **ret);

/* A random (version 4) GUID, lower-case and hyphenated as Bitwarden writes them, into
 * out[37]. Returns 0 or -EIO. */
KH_MUST_CHECK int kh_random_guid(char out[static 37]);
