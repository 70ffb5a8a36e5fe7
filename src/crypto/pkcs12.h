/* The RSA private key of a PKCS#12 (PFX) file, as Bitwarden Key Connector keeps its
 * certificate (spec/key-connector-storage.md section 4). */
#pragma once
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/cleanup.h"
#include "common/secret.h"

/**
 * kh_pkcs12_rsa_key() - the RSA private key in a PKCS#12 file's bytes.
 * @der:      the file's content, DER (what `openssl pkcs12 -export` writes); nothing may
 *            follow the structure.
 * @len:      its length.
 * @password: borrowed; NULL or empty for a file exported without a password (both the
 *            empty and the absent password are tried, as OpenSSL does). It must not
 *            contain a NUL byte (such a password never opens: -KH_E_PFX_PASSWORD).
 * @ret:      on success a new key; the caller frees it with EVP_PKEY_free().
 *
 * Opens OpenSSL 3's defaults (PBES2, AES-256-CBC, SHA-256 MAC) and OpenSSL 1.1's
 * (RC2-40 and 3DES, SHA-1 MAC). For the latter, the first call loads OpenSSL's "legacy"
 * provider, with "default" beside it, into the default library context, once per process;
 * keyhold fetches its own algorithms by name, so they are unaffected.
 *
 * Returns 0, -KH_E_PFX_PASSWORD (the MAC does not verify: wrong password),
 * -KH_E_PFX_INVALID (not PKCS#12 DER, a bag that does not decrypt, or no RSA private key
 * in it), -EINVAL (der or ret NULL) or -ENOMEM. Any thread may call it.
 */
KH_MUST_CHECK int kh_pkcs12_rsa_key(const uint8_t *der, size_t len,
                                    const struct kh_secret *password, EVP_PKEY **ret);
