/* Backups bound to a PKCS#11 token (docs/backup.md "HSM key store").
 *
 * The backup key. A generic secret made once inside the token, labelled
 * "<prefix>_server-backup-v1": CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not CKA_EXTRACTABLE,
 * CKA_SIGN. A backup's key is HMAC-SHA256 (CKM_SHA256_HMAC, computed by the token) of
 * "keyhold-backup:1" || salt under it: only this token derives it, and each salt gives
 * another key. Exactly one creator, as for key pairs (pkcs11-keystore.c): made, looked up
 * again, and ours destroyed if another process made one meanwhile.
 *
 * The header meta. What a backup of a pkcs11 store needs from the token, named in its clear
 * header (JSON, never a PIN):
 *   {"pkcs11_meta": 1, "token_label", "token_serial", "key_label_prefix", "backup_key",
 *    "keys": [labels]}
 * "keys" lists every token key the backup's database needs (tenant key versions not
 * destroyed, recovery and audit keys, the backup key), so that `backup verify` can check
 * the token holds them before anything is restored. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"
#include "keystore/keystore.h"

struct kh_p11;

#define KH_P11_BACKUP_META_VERSION 1
#define KH_P11_BACKUP_KEYS_MAX 16384 /* labels one meta may name */

/* A parsed header meta; strings NUL-terminated, keys[0..n_keys). */
struct kh_p11_backup_meta {
        char *token_label;
        char *token_serial;
        char *prefix;
        char *backup_key;
        char **keys;
        size_t n_keys;
};

/**
 * kh_p11_backup_meta_parse() - the meta a backup header carries for the pkcs11 store:
 * exactly the members above, strings of at most KH_P11_LABEL_MAX bytes, 1 to
 * KH_P11_BACKUP_KEYS_MAX keys, the backup key among them, the prefix starting every label.
 * Returns 0 (*ret a new meta, freed with kh_p11_backup_meta_free()), -EBADMSG or -ENOMEM.
 */
KH_MUST_CHECK int kh_p11_backup_meta_parse(const uint8_t *p, size_t n,
                                           struct kh_p11_backup_meta **ret);
struct kh_p11_backup_meta *kh_p11_backup_meta_free(struct kh_p11_backup_meta *m); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_p11_backup_meta_free, struct kh_p11_backup_meta *)

/* The backup key for salt, made in the token the first time (see above). Returns 0,
 * -KH_E_PKCS11_MECHANISM (no CKM_SHA256_HMAC signing or CKM_GENERIC_SECRET_KEY_GEN; detail
 * names it), -KH_E_PKCS11_MODULE, -KH_E_INTEGRITY (the label names another kind of object),
 * -ENOMEM. create false: -ENOENT instead of making one. */
KH_MUST_CHECK int kh_p11_backup_key(struct kh_p11 *p, const char *prefix, bool create,
                                    const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                    struct kh_secret **ret, char *detail, size_t detail_len);

/* Whether the token holds an object (private key or secret key) labelled label: 0,
 * -ENOENT, or -KH_E_PKCS11_MODULE. */
KH_MUST_CHECK int kh_p11_backup_has(struct kh_p11 *p, const char *label);

/* The header meta naming labels[0..n) (each present in the token), the token and the backup
 * key, appended to out as JSON. Returns 0, -KH_E_PKCS11_MODULE, -EINVAL or -ENOMEM. */
KH_MUST_CHECK int kh_p11_backup_meta_make(struct kh_p11 *p, const char *prefix,
                                          const char *const *labels, size_t n,
                                          struct kh_buf *out);

/* Offline: checks the token holds every key meta names and derives the backup key for
 * salt. Returns 0, -EBADMSG (meta malformed), -EMEDIUMTYPE (the store's prefix is not the
 * backup's), -ENOKEY (a key is missing: detail names its label), or an error as
 * kh_p11_backup_key(). */
KH_MUST_CHECK int kh_p11_backup_open(struct kh_p11 *p, const char *prefix, const uint8_t *meta,
                                     size_t meta_len,
                                     const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                     struct kh_secret **ret, char *detail, size_t detail_len);
