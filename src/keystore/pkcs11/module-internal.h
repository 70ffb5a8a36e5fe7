/* Internals of the PKCS#11 layer, shared by module.c, objects.c and the key store backend
 * (pkcs11-keystore.c): the only files that see the PKCS#11 API (p11-kit's header). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <p11-kit/pkcs11.h>

#include "common/buf.h"
#include "keystore/pkcs11/module.h"

struct kh_p11 {
        void *dl;
        CK_FUNCTION_LIST *f;
        bool initialised; /* holds a reference on the module's C_Initialize (module.c) */
        bool has_session;
        bool logged_in;   /* holds a reference on the token's login (module.c) */
        bool read_write;  /* the session is read-write */
        CK_SESSION_HANDLE session;
        CK_SLOT_ID slot;
};

/* Whether rv says the token is gone rather than that the call was wrong: the device was
 * removed or fails, the session or the module's state went with it (a network HSM or
 * p11-kit's client module whose server went away answers CKR_DEVICE_ERROR to every call,
 * until the module is initialised again). Every call that gets one of these answers
 * -KH_E_KEYSTORE_UNAVAILABLE; kh_p11_reconnect() is the way back. */
bool kh_p11_rv_is_lost(CK_RV rv);

/* rv's keyhold error: -KH_E_KEYSTORE_UNAVAILABLE for a lost token, -ENOMEM for
 * CKR_HOST_MEMORY, else other. */
int kh_p11_rv_error(CK_RV rv, int other);

/**
 * kh_p11_reconnect() - the way back after the token was lost: closes p's session (whatever
 * the module answers), initialises the module again (C_Finalize and C_Initialize, when p is
 * the only user of the module in the process: p11-kit's client module reconnects to its
 * server only then), finds the token again by a's label or slot, checks its mechanisms,
 * opens a new session and logs in with a->pin. The module stays loaded (no dlclose). Object
 * handles of the old session mean nothing afterwards: find objects again by label.
 * a: as kh_p11_open_ex() took it (a->module_path is not used).
 * Returns 0, -KH_E_KEYSTORE_UNAVAILABLE (the token is not back yet), -KH_E_PKCS11_PIN,
 * -KH_E_PKCS11_MECHANISM or -ENOMEM; on failure p has no logged-in session (its probe
 * answers -KH_E_KEYSTORE_UNAVAILABLE) and may be reconnected again or freed. detail as
 * kh_p11_open().
 */
KH_MUST_CHECK int kh_p11_reconnect(struct kh_p11 *p, const struct kh_p11_open_args *a,
                                   char *detail, size_t detail_len);

/**
 * kh_p11_session_open() - one more session on p's token, for another thread: a kh_p11 of
 * its own (read-write if p's is) that shares p's module and login. PKCS#11 login is per
 * application and token, so the new session is logged in as p's is; nothing is asked of
 * the PIN again. Freeing it (kh_p11_free()) closes only its session; it must be freed before
 * p, and before kh_p11_reconnect(p) (which may initialise the module again).
 * Returns 0, -KH_E_KEYSTORE_UNAVAILABLE (the token or its login is gone, or p has no
 * logged-in session: a reconnect that failed), -KH_E_PKCS11_MODULE or -ENOMEM.
 */
KH_MUST_CHECK int kh_p11_session_open(struct kh_p11 *p, struct kh_p11 **ret);

/* Whether p's session still answers and is logged in (C_GetSessionInfo: one round trip).
 * Returns 0, -KH_E_KEYSTORE_UNAVAILABLE (detail names the answer) or -KH_E_PKCS11_MODULE. */
KH_MUST_CHECK int kh_p11_probe(struct kh_p11 *p, char *detail, size_t detail_len);

/* "call: what" into detail (NULL-safe); "call: CKR_NAME" for rv. */
void kh_p11_detail_set(char *detail, size_t detail_len, const char *call, const char *what);
void kh_p11_detail_rv(char *detail, size_t detail_len, const char *call, CK_RV rv);

/* Whether the token offers mechanism m with all of flags (CKF_DECRYPT, CKF_SIGN, ...).
 * Returns 0, -KH_E_PKCS11_MECHANISM (not offered, or not for that) or -KH_E_PKCS11_MODULE. */
KH_MUST_CHECK int kh_p11_mechanism_has(struct kh_p11 *p, CK_MECHANISM_TYPE m, CK_FLAGS flags);

/* Up to max handles of objects of class cls labelled label into hs, their number into *n.
 * Returns 0 or -KH_E_PKCS11_MODULE. */
KH_MUST_CHECK int kh_p11_find(struct kh_p11 *p, CK_OBJECT_CLASS cls, const char *label,
                              CK_OBJECT_HANDLE *hs, size_t max, size_t *n);

/* Calls fn with the label (not NUL-terminated) of each object of class cls; stops at fn's
 * first non-zero value and returns it. Returns 0, -KH_E_PKCS11_MODULE or -ENOMEM. */
typedef int (*kh_p11_label_fn)(const char *label, size_t len, void *userdata);
KH_MUST_CHECK int kh_p11_labels(struct kh_p11 *p, CK_OBJECT_CLASS cls, kh_p11_label_fn fn,
                                void *userdata);

/* The value of attribute t of h into buf[0..cap), its length into *len. Returns 0,
 * -KH_E_PKCS11_KEY (absent, sensitive, or longer than cap) or -KH_E_PKCS11_MODULE. */
KH_MUST_CHECK int kh_p11_attr(struct kh_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t,
                              void *buf, size_t cap, size_t *len);

/* Sets attribute t of h to v[0..len). Returns 0 or -KH_E_PKCS11_KEY. */
KH_MUST_CHECK int kh_p11_attr_set(struct kh_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t,
                                  const void *v, size_t len);

/* A key pair inside the token: token objects, the private half CKA_PRIVATE, CKA_SENSITIVE,
 * not CKA_EXTRACTABLE; both labelled label with CKA_ID id[0..id_len). RSA of bits with
 * e = 65537 (decrypts and signs), or EC P-256 (signs). Returns 0, -KH_E_PKCS11_MECHANISM,
 * -KH_E_PKCS11_MODULE or -ENOMEM. */
KH_MUST_CHECK int kh_p11_generate_rsa(struct kh_p11 *p, const char *label, const void *id,
                                      size_t id_len, unsigned bits, CK_OBJECT_HANDLE *ret_pub,
                                      CK_OBJECT_HANDLE *ret_priv);
KH_MUST_CHECK int kh_p11_generate_ec_p256(struct kh_p11 *p, const char *label, const void *id,
                                          size_t id_len, CK_OBJECT_HANDLE *ret_pub,
                                          CK_OBJECT_HANDLE *ret_priv);

/* The public key object pub (RSA or EC P-256) as a new EVP_PKEY. Returns 0,
 * -KH_E_PKCS11_KEY (another type or curve, attributes unreadable), -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_p11_public_key(struct kh_p11 *p, CK_OBJECT_HANDLE pub, EVP_PKEY **ret);

/* RSA-OAEP decryption with private key h (see kh_p11_rsa_oaep_decrypt()). */
KH_MUST_CHECK int kh_p11_oaep_decrypt(struct kh_p11 *p, CK_OBJECT_HANDLE h, enum kh_oaep_md md,
                                      const uint8_t *in, size_t len, struct kh_secret **ret);

/* Signature by private key h over a 32-byte SHA-256 digest, appended to sig: RSA-PSS
 * (SHA-256, MGF1-SHA-256, salt 32) for an RSA key, ECDSA as DER for an EC key. Returns 0,
 * -KH_E_PKCS11_KEY, -KH_E_PKCS11_MECHANISM, -KH_E_PKCS11_MODULE, -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_p11_sign(struct kh_p11 *p, CK_OBJECT_HANDLE h, const uint8_t digest[32],
                              struct kh_buf *sig);

/* C_DestroyObject. Returns 0 or -KH_E_PKCS11_MODULE (not KH_MUST_CHECK: cleanups after a
 * failure ignore it). */
int kh_p11_destroy(struct kh_p11 *p, CK_OBJECT_HANDLE h);
