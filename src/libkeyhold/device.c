/* Trusted devices (spec/trusted-devices.md 2.1-2.3), built only from the public
 * functions of encstring.h: the device key opens the device private key (type 2), which
 * opens the user key (type 4). Every intermediate secret (the PKCS#8 key, a decapsulated
 * key) lives in a buffer that is wiped on every path out. */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include "keyhold/device.h"
#include "internal.h"

/* Longest EncString accepted through the NUL-terminated arguments of this module. */
static int str_len(const char *s, size_t *ret) {
        size_t n;

        if (!s)
                return KEYHOLD_E_INVALID;
        n = strnlen(s, KEYHOLD_ENCSTRING_MAX + 1);
        if (n > KEYHOLD_ENCSTRING_MAX)
                return KEYHOLD_E_FORMAT;
        *ret = n;
        return KEYHOLD_OK;
}

static void wipe_freep(struct khl_secret_buf *b) {
        khl_secret_buf_wipe(b);
}

/* The device's private key, decrypted with its device key (type 2 only). */
static int open_private_key(const uint8_t device_key[KEYHOLD_USER_KEY_LEN],
                            const char *encrypted_private_key, struct khl_secret_buf *ret) {
        uint8_t *pkcs8 = NULL;
        size_t len = 0, n = 0;
        int r;

        r = str_len(encrypted_private_key, &n);
        if (r < 0)
                return r;
        r = keyhold_aes_decrypt(device_key, KEYHOLD_USER_KEY_LEN, encrypted_private_key, n,
                                &pkcs8, &len);
        if (r < 0)
                return r;
        ret->data = pkcs8;
        ret->cap = len;
        return KEYHOLD_OK;
}

void keyhold_device_trust_free(struct keyhold_device_trust *t) {
        if (!t)
                return;
        OPENSSL_cleanse(t->device_key, sizeof(t->device_key));
        free(t->encrypted_user_key);
        free(t->encrypted_public_key);
        free(t->encrypted_private_key);
        free(t);
}
KHL_DEFINE_CLEANUP(keyhold_device_trust_free, struct keyhold_device_trust *)

int keyhold_device_trust_new(const uint8_t user_key[KEYHOLD_USER_KEY_LEN],
                             struct keyhold_device_trust **ret) {
        KHL_CLEANUP(keyhold_device_trust_freep) struct keyhold_device_trust *t = NULL;
        KHL_CLEANUP_FREE uint8_t *spki = NULL;
        KHL_CLEANUP(wipe_freep) struct khl_secret_buf pkcs8 = { NULL, 0 };
        size_t spki_len = 0;
        int r;

        if (!user_key || !ret)
                return KEYHOLD_E_INVALID;
        t = calloc(1, sizeof(*t));
        if (!t)
                return KEYHOLD_E_NOMEM;
        if (RAND_priv_bytes(t->device_key, sizeof(t->device_key)) != 1) {
                ERR_clear_error();
                return KEYHOLD_E_CRYPTO;
        }
        r = keyhold_rsa_keypair(&spki, &spki_len, &pkcs8.data, &pkcs8.cap);
        if (r < 0)
                return r;

        r = keyhold_rsa_encapsulate(spki, spki_len, user_key, KEYHOLD_USER_KEY_LEN,
                                    &t->encrypted_user_key);
        if (r < 0)
                return r;
        r = keyhold_aes_encrypt(user_key, spki, spki_len, &t->encrypted_public_key);
        if (r < 0)
                return r;
        r = keyhold_aes_encrypt(t->device_key, pkcs8.data, pkcs8.cap, &t->encrypted_private_key);
        if (r < 0)
                return r;

        *ret = KHL_TAKE_PTR(t);
        return KEYHOLD_OK;
}

int keyhold_device_unlock(const uint8_t device_key[KEYHOLD_USER_KEY_LEN],
                          const char *encrypted_private_key, const char *encrypted_user_key,
                          uint8_t user_key[KEYHOLD_USER_KEY_LEN]) {
        KHL_CLEANUP(wipe_freep) struct khl_secret_buf pkcs8 = { NULL, 0 }, key = { NULL, 0 };
        size_t n = 0;
        int r;

        if (!device_key || !encrypted_private_key || !encrypted_user_key || !user_key)
                return KEYHOLD_E_INVALID;
        r = str_len(encrypted_user_key, &n);
        if (r < 0)
                return r;
        r = open_private_key(device_key, encrypted_private_key, &pkcs8);
        if (r < 0)
                return r;
        r = keyhold_rsa_decapsulate(pkcs8.data, pkcs8.cap, encrypted_user_key, n, &key.data,
                                    &key.cap);
        if (r < 0)
                return r;
        if (key.cap != KEYHOLD_USER_KEY_LEN)
                return KEYHOLD_E_KEY; /* e.g. a v2 (COSE) user key: not for this API */

        memcpy(user_key, key.data, KEYHOLD_USER_KEY_LEN);
        return KEYHOLD_OK;
}

int keyhold_device_rotate(const uint8_t device_key[KEYHOLD_USER_KEY_LEN],
                          const char *encrypted_private_key,
                          const uint8_t new_user_key[KEYHOLD_USER_KEY_LEN], char **enc_user_key,
                          char **enc_public_key) {
        KHL_CLEANUP(wipe_freep) struct khl_secret_buf pkcs8 = { NULL, 0 };
        KHL_CLEANUP(EVP_PKEY_freep) EVP_PKEY *priv = NULL;
        KHL_CLEANUP_FREE uint8_t *spki = NULL;
        KHL_CLEANUP_FREE char *user = NULL;
        KHL_CLEANUP_FREE char *pub = NULL;
        size_t spki_len = 0;
        int r;

        if (!device_key || !encrypted_private_key || !new_user_key || !enc_user_key ||
            !enc_public_key)
                return KEYHOLD_E_INVALID;
        r = open_private_key(device_key, encrypted_private_key, &pkcs8);
        if (r < 0)
                return r;
        r = khl_rsa_load_private(pkcs8.data, pkcs8.cap, &priv);
        if (r < 0)
                return r;
        r = khl_rsa_spki(priv, &spki, &spki_len);
        if (r < 0)
                return r;

        r = keyhold_rsa_encapsulate(spki, spki_len, new_user_key, KEYHOLD_USER_KEY_LEN, &user);
        if (r < 0)
                return r;
        r = keyhold_aes_encrypt(new_user_key, spki, spki_len, &pub);
        if (r < 0)
                return r;

        *enc_user_key = KHL_TAKE_PTR(user);
        *enc_public_key = KHL_TAKE_PTR(pub);
        return KEYHOLD_OK;
}
