#include "cli/rotate.h"

#include <stdlib.h>
#include <string.h>

int kh_rotate_rewrap(const uint8_t old_key[KEYHOLD_USER_KEY_LEN],
                     const uint8_t new_key[KEYHOLD_USER_KEY_LEN], const char *enc_public_key,
                     char **ret_enc_user_key, char **ret_enc_public_key) {
        uint8_t *spki = NULL;
        size_t spki_len = 0;
        char *uk = NULL, *pk = NULL;
        int r;

        if (!old_key || !new_key || !enc_public_key || !ret_enc_user_key || !ret_enc_public_key)
                return KEYHOLD_E_INVALID;
        r = keyhold_aes_decrypt(old_key, KEYHOLD_USER_KEY_LEN, enc_public_key,
                                strlen(enc_public_key), &spki, &spki_len);
        if (r < 0)
                return r;
        r = keyhold_spki_check(spki, spki_len);
        if (r == KEYHOLD_OK)
                r = keyhold_rsa_encapsulate(spki, spki_len, new_key, KEYHOLD_USER_KEY_LEN, &uk);
        if (r == KEYHOLD_OK)
                r = keyhold_aes_encrypt(new_key, spki, spki_len, &pk);
        keyhold_wipe_free(spki, spki_len);
        if (r < 0) {
                free(uk);
                free(pk);
                return r;
        }
        *ret_enc_user_key = uk;
        *ret_enc_public_key = pk;
        return KEYHOLD_OK;
}

const char *kh_rotate_reason(int r) {
        switch (r) {
        case KEYHOLD_E_MAC:
                return "its public key was wrapped under another user key";
        case KEYHOLD_E_TYPE:
                return "its public key is not wrapped as type 2 (AES-CBC-HMAC)";
        case KEYHOLD_E_FORMAT:
        case KEYHOLD_E_DECRYPT:
                return "its public key value is malformed";
        case KEYHOLD_E_KEY:
                return "its public key is not an RSA-2048 key";
        case KEYHOLD_E_INVALID:
                return "the server lists no public key for it";
        default:
                return keyhold_strerror(r);
        }
}
