/* A tenant's account-recovery key: Bitwarden's organisation key pair (RSA-2048) held in the
 * key store (purpose KH_KEY_RECOVERY, version 1). Members enrol by encrypting their user key
 * to its public half (spec/trusted-devices.md section 6); keyholdd decrypts an enrolment only
 * to answer an admin-approval request, inside the key store abstraction. Both functions block
 * on the key store: call them from the job pool (kh_app_jobs()), never from a loop. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/secret.h"
#include "crypto/rsa.h"
#include "service/app.h"

/* RSA size of a recovery key: Bitwarden clients encrypt to RSA-2048 organisation keys. */
#define KH_RECOVERY_RSA_BITS 2048

/**
 * kh_recovery_public_key() - the tenant's recovery public key as SubjectPublicKeyInfo DER,
 * appended to spki. The key pair is made in the key store on first use (atomic across
 * processes sharing the store); later calls answer from the app's cache.
 * Returns 0, -KH_E_SEALED, -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_recovery_public_key(struct kh_app *app, const struct kh_tenant *t,
                                         struct kh_buf *spki);

/**
 * kh_recovery_decrypt() - decrypts ct[0..len), an RSA-OAEP ciphertext a member made to the
 * tenant's recovery public key (digest md: SHA-1 for EncString type 4, SHA-256 for type 3),
 * into a new secret the caller frees (and so wipes).
 * Returns 0, -KH_E_SEALED, -KH_E_INTEGRITY (does not decrypt under this key), -ENOENT (the
 * tenant has no recovery key yet), -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_recovery_decrypt(struct kh_app *app, const struct kh_tenant *t,
                                      enum kh_oaep_md md, const uint8_t *ct, size_t len,
                                      struct kh_secret **ret);
