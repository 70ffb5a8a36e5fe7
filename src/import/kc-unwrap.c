/* The three ways to Key Connector's data key behind one type, so the importer tries each
 * wrapped data-key row the same way whatever holds the RSA key. */
#include "import/kc-unwrap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "common/errors.h"
#include "crypto/kc-blob.h"
#include "crypto/pkcs12.h"
#include "crypto/rsa.h"
#include "keystore/pkcs11/module.h"

enum unwrapper_kind { UNWRAP_PFX, UNWRAP_PKCS11, UNWRAP_DATA_KEY };

struct kh_kc_unwrapper {
        enum unwrapper_kind kind;
        EVP_PKEY *pkey;             /* UNWRAP_PFX */
        struct kh_p11 *p11;         /* UNWRAP_PKCS11 */
        char *key_label;            /* UNWRAP_PKCS11 */
        struct kh_secret *data_key; /* UNWRAP_DATA_KEY */
};

struct kh_kc_unwrapper *kh_kc_unwrapper_free(struct kh_kc_unwrapper *u) {
        if (!u)
                return NULL;
        EVP_PKEY_free(u->pkey);
        kh_p11_free(u->p11);
        free(u->key_label);
        kh_secret_free(u->data_key);
        free(u);
        return NULL;
}

static int unwrapper_new(enum unwrapper_kind kind, struct kh_kc_unwrapper **ret) {
        struct kh_kc_unwrapper *u = calloc(1, sizeof(*u));

        if (!u)
                return -ENOMEM;
        u->kind = kind;
        *ret = u;
        return 0;
}

int kh_kc_unwrapper_pfx(const uint8_t *pfx, size_t len, const struct kh_secret *password,
                        struct kh_kc_unwrapper **ret) {
        KH_CLEANUP(kh_kc_unwrapper_freep) struct kh_kc_unwrapper *u = NULL;
        int r;

        if (!pfx || !ret)
                return -EINVAL;
        r = unwrapper_new(UNWRAP_PFX, &u);
        if (r < 0)
                return r;
        r = kh_pkcs12_rsa_key(pfx, len, password, &u->pkey);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(u);
        return 0;
}

int kh_kc_unwrapper_pkcs11(const char *module, const char *token_label, const struct kh_secret *pin,
                           const char *key_label, struct kh_kc_unwrapper **ret, char *detail,
                           size_t dl) {
        KH_CLEANUP(kh_kc_unwrapper_freep) struct kh_kc_unwrapper *u = NULL;
        int r;

        if (detail && dl > 0)
                detail[0] = '\0';
        if (!module || !token_label || !pin || !key_label || !ret)
                return -EINVAL;
        r = unwrapper_new(UNWRAP_PKCS11, &u);
        if (r < 0)
                return r;
        u->key_label = strdup(key_label);
        if (!u->key_label)
                return -ENOMEM;
        r = kh_p11_open(module, token_label, pin, &u->p11, detail, dl);
        if (r < 0)
                return r;
        r = kh_p11_key_find(u->p11, key_label);
        if (r < 0) {
                if (detail && dl > 0 && r == -KH_E_PKCS11_KEY)
                        (void) snprintf(detail, dl,
                                        "C_FindObjects: no RSA private key "
                                        "with this label");
                return r;
        }

        *ret = KH_TAKE_PTR(u);
        return 0;
}

int kh_kc_unwrapper_data_key(const struct kh_secret *file_content, struct kh_kc_unwrapper **ret) {
        KH_CLEANUP(kh_kc_unwrapper_freep) struct kh_kc_unwrapper *u = NULL;
        int r;

        if (!file_content || !ret)
                return -EINVAL;
        r = unwrapper_new(UNWRAP_DATA_KEY, &u);
        if (r < 0)
                return r;
        r = kh_kc_data_key_decode(file_content, &u->data_key);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(u);
        return 0;
}

int kh_kc_unwrap(struct kh_kc_unwrapper *u, const uint8_t *wrapped, size_t len,
                 struct kh_secret **ret_data_key) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dk = NULL;
        int r;

        if (!u || !ret_data_key)
                return -EINVAL;
        switch (u->kind) {
        case UNWRAP_DATA_KEY:
                return kh_secret_dup(u->data_key, ret_data_key);
        case UNWRAP_PFX:
                if (!wrapped || len == 0)
                        return -KH_E_KC_UNWRAP;
                r = kh_rsa_oaep_decrypt_md(u->pkey, KH_OAEP_SHA1, wrapped, len, &dk);
                if (r == -KH_E_INTEGRITY)
                        r = -KH_E_KC_UNWRAP; /* another key's, wrong length, or damaged */
                break;
        case UNWRAP_PKCS11:
                if (!wrapped || len == 0)
                        return -KH_E_KC_UNWRAP;
                r = kh_p11_rsa_oaep_decrypt(u->p11, u->key_label, KH_OAEP_SHA1, wrapped, len, &dk);
                if (r == -KH_E_PKCS11_DECRYPT)
                        r = -KH_E_KC_UNWRAP;
                break;
        default:
                return -EINVAL;
        }
        if (r < 0)
                return r;
        if (kh_secret_len(dk) != KH_KC_DATA_KEY_LEN)
                return -KH_E_KC_UNWRAP;

        *ret_data_key = KH_TAKE_PTR(dk);
        return 0;
}
