/* AES-256-GCM, on the request path for every key served.
 *
 * Fetching the cipher and allocating a context cost more than sealing 32 bytes, so the
 * cipher is fetched once per process and each thread keeps one context, created on first
 * use and freed when the thread exits. After every operation the context is re-keyed with
 * zeros, so no key schedule (nor GHASH key) of a real key stays behind in ordinary heap
 * memory between requests. */
#include "crypto/aead.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "common/errors.h"
#include "crypto/random.h"

static EVP_CIPHER *gcm_cipher;
static pthread_once_t gcm_once = PTHREAD_ONCE_INIT;
static pthread_key_t gcm_ctx_key;
static _Thread_local EVP_CIPHER_CTX *gcm_ctx;

static void gcm_ctx_destroy(void *p) {
        EVP_CIPHER_CTX_free(p);
}

static void gcm_init_once(void) {
        gcm_cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
        /* The key only exists to free each thread's context when the thread exits. */
        if (pthread_key_create(&gcm_ctx_key, gcm_ctx_destroy) != 0) {
                EVP_CIPHER_free(gcm_cipher);
                gcm_cipher = NULL;
        }
}

/* The calling thread's context, bound to AES-256-GCM, or NULL (-ENOMEM/-EIO in *r). */
static EVP_CIPHER_CTX *gcm_thread_ctx(int *r) {
        EVP_CIPHER_CTX *ctx;

        if (gcm_ctx)
                return gcm_ctx;

        (void) pthread_once(&gcm_once, gcm_init_once);
        if (!gcm_cipher) {
                *r = -EIO;
                return NULL;
        }
        ctx = EVP_CIPHER_CTX_new();
        if (!ctx) {
                *r = -ENOMEM;
                return NULL;
        }
        /* Bind the cipher now; later inits pass NULL so OpenSSL keeps the provider
         * context instead of freeing and re-creating it. */
        if (EVP_CipherInit_ex2(ctx, gcm_cipher, NULL, NULL, 1, NULL) != 1 ||
            pthread_setspecific(gcm_ctx_key, ctx) != 0) {
                EVP_CIPHER_CTX_free(ctx);
                *r = -EIO;
                return NULL;
        }
        gcm_ctx = ctx;
        return ctx;
}

static void gcm_scrub(EVP_CIPHER_CTX *ctx) {
        static const uint8_t zero_key[KH_AEAD_KEY_LEN];

        if (EVP_CipherInit_ex2(ctx, NULL, zero_key, NULL, -1, NULL) != 1) {
                /* Cannot overwrite in place: drop the context; the next call makes one. */
                (void) pthread_setspecific(gcm_ctx_key, NULL);
                EVP_CIPHER_CTX_free(ctx);
                gcm_ctx = NULL;
        }
        ERR_clear_error();
}

/* One pass of GCM: n bytes of in to out, tag read (decrypt) or written (encrypt).
 * Returns 0, -KH_E_INTEGRITY (decrypt: tag mismatch), -ENOMEM or -EIO. */
static int gcm_run(bool enc, const struct kh_secret *key, const uint8_t nonce[KH_AEAD_NONCE_LEN],
                   const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t n,
                   uint8_t *out, uint8_t tag[KH_AEAD_TAG_LEN]) {
        EVP_CIPHER_CTX *ctx;
        int outl, r = -EIO;

        ctx = gcm_thread_ctx(&r);
        if (!ctx)
                return r;

        if (EVP_CipherInit_ex2(ctx, NULL, kh_secret_bytes(key), nonce, enc, NULL) != 1)
                goto done;
        if (aad_len > 0 && EVP_CipherUpdate(ctx, NULL, &outl, aad, (int) aad_len) != 1)
                goto done;
        if (n > 0 && (EVP_CipherUpdate(ctx, out, &outl, in, (int) n) != 1 || (size_t) outl != n))
                goto done;
        if (enc) {
                if (EVP_CipherFinal_ex(ctx, out + n, &outl) != 1 ||
                    EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, KH_AEAD_TAG_LEN, tag) != 1)
                        goto done;
        } else {
                if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, KH_AEAD_TAG_LEN, tag) != 1)
                        goto done;
                if (EVP_CipherFinal_ex(ctx, out + n, &outl) != 1) {
                        r = -KH_E_INTEGRITY;
                        goto done;
                }
        }
        r = 0;
done:
        gcm_scrub(ctx);
        return r;
}

/* Seals pt[0..pt_len) (pt_len > 0) for kh_aead_seal() and kh_aead_seal_bytes(). */
static int seal(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                const uint8_t *pt, size_t pt_len, struct kh_buf *out) {
        uint8_t stack[256], *heap = NULL, *blob;
        size_t blob_len;
        int r;

        if (!key || kh_secret_len(key) != KH_AEAD_KEY_LEN || !pt || pt_len == 0 ||
            (aad_len > 0 && !aad))
                return -EINVAL;
        /* EVP counts in int. */
        if (pt_len > INT_MAX - KH_AEAD_OVERHEAD || aad_len > INT_MAX)
                return -E2BIG;
        blob_len = pt_len + KH_AEAD_OVERHEAD;

        if (blob_len <= sizeof(stack))
                blob = stack;
        else {
                blob = heap = malloc(blob_len);
                if (!heap)
                        return -ENOMEM;
        }

        _Static_assert(KH_AEAD_NONCE_LEN == KH_NONCE_LEN, "a GCM nonce is 96 bits");
        r = kh_random_nonce(blob);
        if (r >= 0)
                r = gcm_run(true, key, blob, aad, aad_len, pt, pt_len,
                            blob + KH_AEAD_NONCE_LEN, blob + KH_AEAD_NONCE_LEN + pt_len);
        if (r >= 0)
                r = kh_buf_append(out, blob, blob_len);

        free(heap);
        return r;
}

int kh_aead_seal(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                 const struct kh_secret *pt, struct kh_buf *out) {
        if (!pt)
                return -EINVAL;
        return seal(key, aad, aad_len, kh_secret_bytes(pt), kh_secret_len(pt), out);
}

int kh_aead_seal_bytes(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                       const uint8_t *pt, size_t pt_len, struct kh_buf *out) {
        return seal(key, aad, aad_len, pt, pt_len, out);
}

/* Opens the blob in[0..in_len) into pt[0..in_len - KH_AEAD_OVERHEAD), which the caller
 * sized with open_len(). On a bad tag pt holds garbage the caller wipes. */
static int open_into(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                     const uint8_t *in, size_t in_len, uint8_t *pt) {
        uint8_t tag[KH_AEAD_TAG_LEN];

        memcpy(tag, in + in_len - KH_AEAD_TAG_LEN, KH_AEAD_TAG_LEN);
        return gcm_run(false, key, in, aad, aad_len, in + KH_AEAD_NONCE_LEN,
                       in_len - KH_AEAD_OVERHEAD, pt, tag);
}

/* The checks of an unseal's arguments, and the plaintext's length into *ret. */
static int open_len(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                    const uint8_t *in, size_t in_len, size_t *ret) {
        if (!key || kh_secret_len(key) != KH_AEAD_KEY_LEN || (aad_len > 0 && !aad))
                return -EINVAL;
        /* a seal never makes a blob of an empty plaintext (a secret has a byte at least, and
         * kh_aead_seal_bytes refuses none), so a blob of bare overhead is as corrupt as a
         * shorter one */
        if (!in || in_len <= KH_AEAD_OVERHEAD || in_len - KH_AEAD_OVERHEAD > INT_MAX ||
            aad_len > INT_MAX)
                return -KH_E_INTEGRITY;
        *ret = in_len - KH_AEAD_OVERHEAD;
        return 0;
}

int kh_aead_unseal(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                   const uint8_t *in, size_t in_len, struct kh_secret **ret_pt) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
        size_t pt_len;
        int r;

        r = open_len(key, aad, aad_len, in, in_len, &pt_len);
        if (r < 0)
                return r;
        r = kh_secret_new(pt_len, &pt);
        if (r < 0)
                return r;
        /* Decrypted straight into locked memory; on a bad tag the cleanup wipes it. */
        r = open_into(key, aad, aad_len, in, in_len, kh_secret_bytes_mut(pt));
        if (r < 0)
                return r;

        *ret_pt = KH_TAKE_PTR(pt);
        return 0;
}

int kh_aead_unseal_buf(const struct kh_secret *key, const uint8_t *aad, size_t aad_len,
                       const uint8_t *in, size_t in_len, struct kh_buf *out) {
        uint8_t *pt;
        size_t pt_len;
        int r;

        r = open_len(key, aad, aad_len, in, in_len, &pt_len);
        if (r < 0)
                return r;
        /* Plain memory, not a kh_secret: these records hold no key, and locking a page for
         * each (mmap, mlock, madvise, munmap) cost five times the rest of a device read. */
        pt = malloc(pt_len);
        if (!pt)
                return -ENOMEM;
        r = open_into(key, aad, aad_len, in, in_len, pt);
        if (r >= 0)
                r = kh_buf_append(out, pt, pt_len);
        OPENSSL_cleanse(pt, pt_len);
        free(pt);
        return r;
}
