/* Sealing and opening of stored records. The associated data binds a blob to where it
 * belongs: "keyhold:1" | tenant id | record kind | owner id | key version, each field
 * NUL-terminated or fixed-size so that no two bindings share an encoding. A ciphertext
 * copied into another row, user, tenant or version fails to open. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"
#include "store/store.h"

/* Largest binding: prefix, tenant, owner (a GUID or device id), separators, kind, version. */
#define KH_RECORD_AAD_MAX 256

/* Writes the binding to out[KH_RECORD_AAD_MAX]; returns its length or -EINVAL. */
KH_MUST_CHECK int kh_record_aad(const char *tenant, enum kh_record_kind kind, const char *owner,
                                uint32_t version, uint8_t out[static KH_RECORD_AAD_MAX]);

/* Seals pt under dek for the binding, appending the blob to out. */
KH_MUST_CHECK int kh_record_seal(const struct kh_secret *dek, const char *tenant,
                                 enum kh_record_kind kind, const char *owner, uint32_t version,
                                 const struct kh_secret *pt, struct kh_buf *out);

/* Opens a blob sealed for the binding. -KH_E_INTEGRITY when it does not open. */
KH_MUST_CHECK int kh_record_unseal(const struct kh_secret *dek, const char *tenant,
                                   enum kh_record_kind kind, const char *owner, uint32_t version,
                                   const uint8_t *blob, size_t len, struct kh_secret **ret_pt);

/* As kh_record_seal(), of plain bytes (records that hold no key). */
KH_MUST_CHECK int kh_record_seal_bytes(const struct kh_secret *dek, const char *tenant,
                                       enum kh_record_kind kind, const char *owner,
                                       uint32_t version, const uint8_t *pt, size_t len,
                                       struct kh_buf *out);

/* As kh_record_unseal(), the plaintext appended to out (records that hold no key). */
KH_MUST_CHECK int kh_record_unseal_buf(const struct kh_secret *dek, const char *tenant,
                                       enum kh_record_kind kind, const char *owner,
                                       uint32_t version, const uint8_t *blob, size_t len,
                                       struct kh_buf *out);
