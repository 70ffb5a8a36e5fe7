/* A PKCS#11 module (an HSM's or SoftHSM2's shared library), loaded with dlopen(), and one
 * logged-in session on one of its tokens. Two users: importing from Key Connector (RSA-OAEP
 * decryption with a private key that never leaves the token, below) and the pkcs11 key
 * store (pkcs11-keystore.c, which uses the object operations of module-internal.h). Both
 * may hold a kh_p11 on the same module at once: initialisation and login are counted per
 * process (the last one out finalises and logs out). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/secret.h"
#include "crypto/rsa.h"

struct kh_p11; /* opaque: the module, its function list and one session */

/**
 * kh_p11_open() - loads a module, finds a token by label and logs in as its user.
 * @module_path: the module's shared library (e.g. /usr/lib/softhsm/libsofthsm2.so).
 * @token_label: the token's label (CKA_LABEL of CK_TOKEN_INFO, at most 32 bytes, compared
 *               after the blank padding is removed); the first slot with it is used.
 * @pin:         the user PIN; borrowed.
 * @ret:         on success the new object; the caller frees it with kh_p11_free().
 * @detail:      on failure a short text for the operator naming the failing call and its
 *               CKR_ code (or dlerror()), without the PIN; "" if none. May be NULL.
 * @detail_len:  its size.
 *
 * dlopen()s the module (RTLD_NOW | RTLD_LOCAL), calls C_GetFunctionList and C_Initialize
 * (CKF_OS_LOCKING_OK; a module some other code of the process initialised already is used,
 * and never finalised by kh_p11_free()), checks the slot offers CKM_RSA_PKCS_OAEP for
 * decryption, opens a read-only session and logs in with CKU_USER. PKCS#11 login state is
 * per process and token: if this process is logged in already (CKR_USER_ALREADY_LOGGED_IN)
 * the PIN is not checked again. kh_p11 objects on one module count their uses: the last
 * one freed logs out and (if one of them initialised the module) finalises it.
 *
 * Returns 0, -KH_E_PKCS11_MODULE (the library does not load, is no PKCS#11 module, or a
 * call fails unexpectedly), -KH_E_PKCS11_TOKEN (no token with that label),
 * -KH_E_PKCS11_MECHANISM (no RSA-OAEP decryption on that token), -KH_E_PKCS11_PIN
 * (CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE, CKR_PIN_INVALID, CKR_PIN_EXPIRED),
 * -KH_E_PKCS11_PIN_LOCKED (CKR_PIN_LOCKED: the token takes no PIN until unlocked),
 * -EINVAL (NULL arguments, a label over 32 bytes) or -ENOMEM. Blocks as long as the device
 * does: never call it from an event loop.
 */
KH_MUST_CHECK int kh_p11_open(const char *module_path, const char *token_label,
                              const struct kh_secret *pin, struct kh_p11 **ret, char *detail,
                              size_t detail_len);

/* What kh_p11_open_ex() opens: a token by label, or (token_label NULL) by slot number. */
struct kh_p11_open_args {
        const char *module_path;
        const char *token_label;
        bool has_slot;
        unsigned long slot;
        const struct kh_secret *pin;
        bool read_write; /* a read-write session: makes and destroys token objects */
};

/* kh_p11_open() with a slot instead of a label, or a read-write session. A slot that does
 * not exist or holds no token is -KH_E_PKCS11_TOKEN. */
KH_MUST_CHECK int kh_p11_open_ex(const struct kh_p11_open_args *a, struct kh_p11 **ret,
                                 char *detail, size_t detail_len);

/**
 * kh_p11_key_find() - checks the token holds an RSA private key labelled key_label.
 *
 * Returns 0, -KH_E_PKCS11_KEY (none, or not RSA), -KH_E_PKCS11_MODULE or -EINVAL. The first
 * match is the one kh_p11_rsa_oaep_decrypt() uses.
 */
KH_MUST_CHECK int kh_p11_key_find(struct kh_p11 *p, const char *key_label);

/**
 * kh_p11_rsa_oaep_decrypt() - RSA-OAEP decryption on the token.
 * @p:         the session; one thread at a time.
 * @key_label: CKA_LABEL of the private key (CKO_PRIVATE_KEY, CKK_RSA; the first match).
 * @md:        the OAEP hash and MGF1 hash (KH_OAEP_SHA1: CKM_SHA_1 with CKG_MGF1_SHA1;
 *             KH_OAEP_SHA256: CKM_SHA256 with CKG_MGF1_SHA256); the label is empty
 *             (CKZ_DATA_SPECIFIED, no data).
 * @in, @len:  the ciphertext.
 * @ret:       on success a new secret with the plaintext (at least one byte).
 *
 * Returns 0, -KH_E_PKCS11_KEY (no such key, its CKA_MODULUS unreadable, or it may not
 * decrypt), -KH_E_PKCS11_MECHANISM (the token refuses these OAEP parameters: SoftHSM2 2.6
 * has SHA-1 only), -KH_E_PKCS11_DECRYPT (C_Decrypt fails: the key does not open this
 * ciphertext; or len is not the modulus length, checked before the token sees it),
 * -KH_E_PKCS11_MODULE, -EINVAL or -ENOMEM.
 */
KH_MUST_CHECK int kh_p11_rsa_oaep_decrypt(struct kh_p11 *p, const char *key_label,
                                          enum kh_oaep_md md, const uint8_t *in, size_t len,
                                          struct kh_secret **ret);

/* Logs out, closes the session, C_Finalize (if kh_p11_open initialised the module) and
 * dlclose. NULL-safe; returns NULL. */
struct kh_p11 *kh_p11_free(struct kh_p11 *p);
KH_DEFINE_CLEANUP(kh_p11_free, struct kh_p11 *)
