/* Who turns Key Connector's wrapped data key (ApplicationDatas.SymmetricKey, base64-decoded)
 * into the 32-byte data key: the RSA key of its PFX file, the same key inside an HSM
 * (PKCS#11), or the operator, who unwrapped it themselves and gives us the data key.
 * spec/key-connector-storage.md section 4. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/secret.h"

struct kh_kc_unwrapper;

/**
 * kh_kc_unwrapper_pfx() - unwraps with the RSA private key of a PKCS#12 file.
 * @pfx, @len: the file's content (DER); only read during the call.
 * @password:  borrowed; NULL or empty: none.
 * @ret:       on success a new unwrapper; free it with kh_kc_unwrapper_free().
 *
 * Returns 0, -KH_E_PFX_PASSWORD, -KH_E_PFX_INVALID, -EINVAL or -ENOMEM
 * (kh_pkcs12_rsa_key()).
 */
KH_MUST_CHECK int kh_kc_unwrapper_pfx(const uint8_t *pfx, size_t len,
                                      const struct kh_secret *password,
                                      struct kh_kc_unwrapper **ret);

/**
 * kh_kc_unwrapper_pkcs11() - unwraps on a PKCS#11 token, as Key Connector's pkcs11
 * provider does (CKM_RSA_PKCS_OAEP, SHA-1, MGF1-SHA-1, no label).
 * @module:      the module's path; @token_label: the token; @pin: its user PIN (borrowed).
 * @key_label:   CKA_LABEL of the RSA private key; checked now, so a wrong label fails here.
 * @detail, @dl: as for kh_p11_open() (NULL allowed).
 *
 * Returns 0, kh_p11_open()'s errors, -KH_E_PKCS11_KEY (no such key), -EINVAL or -ENOMEM.
 * The unwrapper holds the session until it is freed.
 */
KH_MUST_CHECK int kh_kc_unwrapper_pkcs11(const char *module, const char *token_label,
                                         const struct kh_secret *pin, const char *key_label,
                                         struct kh_kc_unwrapper **ret, char *detail, size_t dl);

/**
 * kh_kc_unwrapper_data_key() - the operator unwrapped the data key themselves.
 * @file_content: the data-key file's bytes (borrowed): 32 raw bytes, or the base64 of 32
 *                bytes with at most one trailing newline.
 *
 * Returns 0, -KH_E_KC_DATA_KEY_FILE, -EINVAL or -ENOMEM.
 */
KH_MUST_CHECK int kh_kc_unwrapper_data_key(const struct kh_secret *file_content,
                                           struct kh_kc_unwrapper **ret);

/**
 * kh_kc_unwrap() - the data key of one wrapped data key.
 * @u:                an unwrapper; one thread at a time (a PKCS#11 session is not shared).
 * @wrapped, @len:    the wrapped data key, base64-decoded.
 * @ret_data_key:     on success a new 32-byte secret; the caller frees it.
 *
 * pfx and pkcs11 decrypt with RSA-OAEP SHA-1/MGF1-SHA-1, no label; the data-key unwrapper
 * returns a copy of its key whatever the input (whether it is right shows when the user
 * keys are opened with it).
 *
 * Returns 0, -KH_E_KC_UNWRAP (this key does not open this wrapped data key, or the result
 * is not 32 bytes: the same for both kinds, so an importer trying several data-key rows
 * sees one answer), -KH_E_PKCS11_KEY, -KH_E_PKCS11_MECHANISM, -KH_E_PKCS11_MODULE, -EINVAL
 * or -ENOMEM.
 */
KH_MUST_CHECK int kh_kc_unwrap(struct kh_kc_unwrapper *u, const uint8_t *wrapped, size_t len,
                               struct kh_secret **ret_data_key);

/* NULL-safe; returns NULL. Frees the key or closes the PKCS#11 session. */
struct kh_kc_unwrapper *kh_kc_unwrapper_free(struct kh_kc_unwrapper *u);
KH_DEFINE_CLEANUP(kh_kc_unwrapper_free, struct kh_kc_unwrapper *)
