#include "crypto/random.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>

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
