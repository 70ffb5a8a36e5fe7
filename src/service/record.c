#include "record.h"

#include <errno.h>
#include <string.h>

#include "crypto/aead.h"

static const char aad_prefix[] = "keyhold:1"; /* versioned: a new layout gets a new prefix */

int kh_record_aad(const char *tenant, enum kh_record_kind kind, const char *owner,
                  uint32_t version, uint8_t out[static KH_RECORD_AAD_MAX]) {
        size_t tl = strlen(tenant), ol = strlen(owner), n = 0;

        if (sizeof(aad_prefix) + tl + 1 + 1 + ol + 1 + 4 > KH_RECORD_AAD_MAX)
                return -EINVAL;
        memcpy(out + n, aad_prefix, sizeof(aad_prefix)); /* with its NUL */
        n += sizeof(aad_prefix);
        memcpy(out + n, tenant, tl + 1);
        n += tl + 1;
        out[n++] = (uint8_t) kind;
        memcpy(out + n, owner, ol + 1);
        n += ol + 1;
        out[n++] = (uint8_t) (version >> 24);
        out[n++] = (uint8_t) (version >> 16);
        out[n++] = (uint8_t) (version >> 8);
        out[n++] = (uint8_t) version;
        return (int) n;
}

int kh_record_seal(const struct kh_secret *dek, const char *tenant, enum kh_record_kind kind,
                   const char *owner, uint32_t version, const struct kh_secret *pt,
                   struct kh_buf *out) {
        uint8_t aad[KH_RECORD_AAD_MAX];
        int n = kh_record_aad(tenant, kind, owner, version, aad);

        if (n < 0)
                return n;
        return kh_aead_seal(dek, aad, (size_t) n, pt, out);
}

int kh_record_unseal(const struct kh_secret *dek, const char *tenant, enum kh_record_kind kind,
                     const char *owner, uint32_t version, const uint8_t *blob, size_t len,
                     struct kh_secret **ret_pt) {
        uint8_t aad[KH_RECORD_AAD_MAX];
        int n = kh_record_aad(tenant, kind, owner, version, aad);

        if (n < 0)
                return n;
        return kh_aead_unseal(dek, aad, (size_t) n, blob, len, ret_pt);
}

int kh_record_unseal_buf(const struct kh_secret *dek, const char *tenant,
                         enum kh_record_kind kind, const char *owner, uint32_t version,
                         const uint8_t *blob, size_t len, struct kh_buf *out) {
        uint8_t aad[KH_RECORD_AAD_MAX];
        int n = kh_record_aad(tenant, kind, owner, version, aad);

        if (n < 0)
                return n;
        return kh_aead_unseal_buf(dek, aad, (size_t) n, blob, len, out);
}

int kh_record_seal_bytes(const struct kh_secret *dek, const char *tenant,
                         enum kh_record_kind kind, const char *owner, uint32_t version,
                         const uint8_t *pt, size_t len, struct kh_buf *out) {
        uint8_t aad[KH_RECORD_AAD_MAX];
        int n = kh_record_aad(tenant, kind, owner, version, aad);

        if (n < 0)
                return n;
        return kh_aead_seal_bytes(dek, aad, (size_t) n, pt, len, out);
}
