#include "service/recovery.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "keystore/keystore.h"
#include "service/app-internal.h"

static const struct kh_key_ref *recovery_ref(const struct kh_tenant *t, struct kh_key_ref *ref) {
        *ref = (struct kh_key_ref) { .version = 1, .purpose = KH_KEY_RECOVERY };
        memcpy(ref->tenant, t->id, sizeof(ref->tenant));
        return ref;
}

/* The public key of t's recovery key, made if there is none yet. Caller holds reload_lock
 * exclusively (generate). */
static int public_key_locked(struct kh_app *app, const struct kh_tenant *t, EVP_PKEY **ret) {
        struct kh_key_ref ref, made;
        const struct kh_key_spec spec = {
                .tenant = t->id, .version = 1, .rsa_bits = KH_RECOVERY_RSA_BITS,
                .purpose = KH_KEY_RECOVERY, .alg = KH_KEY_ALG_RSA,
        };
        int r;

        r = kh_keystore_public_key(app->keystore, recovery_ref(t, &ref), ret);
        if (r != -ENOENT)
                return r;
        /* exactly one of several processes creating it at once wins; the others use it */
        r = kh_keystore_generate(app->keystore, &spec, &made);
        if (r < 0 && r != -EEXIST)
                return r;
        return kh_keystore_public_key(app->keystore, &ref, ret);
}

int kh_recovery_public_key(struct kh_app *app, const struct kh_tenant *t, struct kh_buf *spki) {
        struct kh_recovery_spki *c = &app->recovery[t->index];
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        unsigned char *der = NULL;
        int r, n;

        pthread_rwlock_wrlock(&app->reload_lock);
        if (c->der) {
                r = kh_buf_append(spki, c->der, c->len);
                goto out;
        }
        r = !app->keystore ? -KH_E_SEALED
            : atomic_load(&app->ks_unavailable) ? -KH_E_KEYSTORE_UNAVAILABLE : 0;
        if (r < 0)
                goto out;
        r = public_key_locked(app, t, &pub);
        if (r < 0)
                goto out;
        n = i2d_PUBKEY(pub, &der);
        if (n <= 0) {
                ERR_clear_error();
                r = -EIO;
                goto out;
        }
        c->der = (uint8_t *) der;
        c->len = (size_t) n;
        r = kh_buf_append(spki, c->der, c->len);
out:
        pthread_rwlock_unlock(&app->reload_lock);
        return r;
}

int kh_recovery_decrypt(struct kh_app *app, const struct kh_tenant *t, enum kh_oaep_md md,
                        const uint8_t *ct, size_t len, struct kh_secret **ret) {
        struct kh_key_ref ref;
        int r;

        /* shared: decryptions on the job threads use the token at once (its session pool) */
        pthread_rwlock_rdlock(&app->reload_lock);
        if (!app->keystore)
                r = -KH_E_SEALED;
        else if (atomic_load(&app->ks_unavailable))
                r = -KH_E_KEYSTORE_UNAVAILABLE; /* at once: no trip to a device that is gone */
        else
                r = kh_keystore_decrypt(app->keystore, recovery_ref(t, &ref), md, ct, len, ret);
        pthread_rwlock_unlock(&app->reload_lock);
        return r;
}
