#include "crypto/random.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

int kh_random_bytes(void *buf, size_t n) {
        uint8_t *p = buf;

        /* RAND_bytes takes an int; larger requests go in slices. */
        while (n > 0) {
                int chunk = n > INT_MAX ? INT_MAX : (int) n;

                if (RAND_bytes(p, chunk) != 1)
                        return -EIO;
                p += chunk;
                n -= (size_t) chunk;
        }
        return 0;
}

int kh_random_secret(size_t len, struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *s = NULL;
        int r;

        r = kh_secret_new(len, &s);
        if (r < 0)
                return r;

        /* Written in place: the key never exists outside locked memory. */
        r = kh_random_bytes(kh_secret_bytes_mut(s), len);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(s);
        return 0;
}

/* A multiple of the nonce size, so that no nonce straddles two refills. */
#define NONCE_POOL (KH_NONCE_LEN * 340)

static _Thread_local uint8_t nonce_pool[NONCE_POOL];
static _Thread_local size_t nonce_used = NONCE_POOL;   /* all used: refill first */
static pthread_once_t nonce_once = PTHREAD_ONCE_INIT;

/* In a forked child (only the forking thread survives): its pool is also the parent's, and
 * both would hand out the same nonces. */
static void nonce_forget(void) {
        OPENSSL_cleanse(nonce_pool, sizeof(nonce_pool));
        nonce_used = NONCE_POOL;
}

static void nonce_init(void) {
        (void) pthread_atfork(NULL, NULL, nonce_forget);
}

int kh_random_nonce(void *out) {
        int r;

        (void) pthread_once(&nonce_once, nonce_init);
        if (nonce_used == NONCE_POOL) {
                r = kh_random_bytes(nonce_pool, sizeof(nonce_pool));
                if (r < 0)
                        return r;
                nonce_used = 0;
        }
        memcpy(out, nonce_pool + nonce_used, KH_NONCE_LEN);
        /* a nonce handed out is gone from the pool */
        memset(nonce_pool + nonce_used, 0, KH_NONCE_LEN);
        nonce_used += KH_NONCE_LEN;
        return 0;
}

int kh_random_guid(char out[static 37]) {
        static const char hex[] = "0123456789abcdef";
        uint8_t b[16];
        size_t n = 0;
        int r = kh_random_bytes(b, sizeof(b));

        if (r < 0)
                return r;
        b[6] = (uint8_t) ((b[6] & 0x0f) | 0x40);  /* version 4 */
        b[8] = (uint8_t) ((b[8] & 0x3f) | 0x80);  /* RFC 4122 variant */
        for (size_t i = 0; i < sizeof(b); i++) {
                if (i == 4 || i == 6 || i == 8 || i == 10)
                        out[n++] = '-';
                out[n++] = hex[b[i] >> 4];
                out[n++] = hex[b[i] & 0x0f];
        }
        out[n] = '\0';
        return 0;
}
