/* The CKA_LABEL of keyhold's objects on a token (pkcs11-keystore.c says why this shape):
 *   <key_label_prefix><owner>-<purpose>-v<version>
 * owner: a tenant id, or "_server" (no tenant id starts with '_'); purpose: "data",
 * "audit", "recovery", or "backup" (the server's backup key, backup.c). Shared by the key
 * store and its backups, which name the labels they need. */
#pragma once

#include <inttypes.h>
#include <stdio.h>

#include "keystore/keystore.h"

#define KH_P11_LABEL_PREFIX_MAX 32
#define KH_P11_LABEL_MAX 128 /* prefix + "_server"/tenant (63) + "-recovery-v4294967295" */
#define KH_P11_SERVER_OWNER "_server"

static inline const char *kh_p11_purpose_name(enum kh_key_purpose purpose) {
        switch (purpose) {
        case KH_KEY_AUDIT:
                return "audit";
        case KH_KEY_RECOVERY:
                return "recovery";
        default:
                return "data";
        }
}

/* The label of key (tenant, purpose, version) under prefix. Returns 0 or -EINVAL (too long). */
static inline int kh_p11_label(const char *prefix, const char *tenant, const char *purpose,
                               uint32_t version, char label[static KH_P11_LABEL_MAX]) {
        int n = snprintf(label, KH_P11_LABEL_MAX, "%s%s-%s-v%" PRIu32, prefix,
                         tenant[0] ? tenant : KH_P11_SERVER_OWNER, purpose, version);

        return n < 0 || n >= KH_P11_LABEL_MAX ? -EINVAL : 0;
}
