#include "crypto/hash.h"

#include <pthread.h>
#include <stdlib.h>

#include <openssl/evp.h>

/* Fetched once: an implicit fetch (EVP_sha256()) looks the algorithm up on every call,
 * and token hashing is on the request path. Kept for the life of the process. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void) {
        sha256_md = EVP_MD_fetch(NULL, "SHA2-256", NULL);
}

void kh_sha256(const void *p, size_t n, uint8_t out[static KH_SHA256_LEN]) {
        unsigned int len = 0;

        (void) pthread_once(&sha256_once, sha256_fetch);
        /* No input can make SHA-256 fail; only a broken OpenSSL can, and then no answer
         * would be safe to return. */
        if (!sha256_md || EVP_Digest(p, n, out, &len, sha256_md, NULL) != 1 ||
            len != KH_SHA256_LEN)
                abort();
}
