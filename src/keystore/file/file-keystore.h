/* The file key store: tenant keys as files in one directory, each sealed (AES-256-GCM)
 * under a master key that comes from a 32-byte key file or from a passphrase (argon2id).
 *
 * Layout of cfg->path (created 0700 when missing):
 *   keystore.meta         argon2id salt and cost, and a check value sealed under the master
 *                         key, so a wrong key or passphrase is refused at open
 *   <tenant>/v<N>.key     header (tenant, version, bits, public key) + sealed PKCS#8 DER
 *                         private key; the header is the associated data, so a file renamed
 *                         to another tenant or version, or a swapped public key, fails to open
 *   <tenant>/v<N>.pub     the public key as PEM, for operators; the store itself trusts only
 *                         the authenticated copy in v<N>.key
 * Files are written under a temporary name and linked into place, so concurrent creators
 * agree on one winner. */
#pragma once

#include <stdint.h>

#include "keystore/keystore.h"

/* argon2id cost of a passphrase-derived master key. Stored in keystore.meta at creation;
 * later opens use the stored values. */
struct kh_file_ks_kdf {
        uint32_t t_cost;   /* iterations, 1..64 */
        uint32_t m_kib;    /* memory in KiB, 8 * parallelism .. 4 GiB */
        uint32_t parallelism; /* lanes, 1..16 */
};

/* What a new store gets by default: t=3, 64 MiB, 1 lane. */
extern const struct kh_file_ks_kdf kh_file_ks_kdf_default;

/**
 * kh_keystore_file_open_kdf() - open a file key store, creating it with kdf's argon2id cost
 * if it does not exist yet (tests use cheap values). An existing store keeps its own cost.
 * @cfg: path and either master_key_file or passphrase (exactly one).
 * @kdf: cost for a new store.
 * @ret: on success the store; close with kh_keystore_close().
 *
 * Returns 0, -EINVAL (no path, neither or both of key file and passphrase, key file not
 * exactly 32 bytes or not a regular file, kdf out of range), -EACCES (wrong master key or
 * passphrase, key file readable by group/others or owned by another user), -ENOENT (key
 * file or the parent of path missing), -EIO (keystore.meta malformed, I/O error), -ENOMEM.
 */
KH_MUST_CHECK int kh_keystore_file_open_kdf(const struct kh_config_keystore *cfg,
                                            const struct kh_file_ks_kdf *kdf,
                                            struct kh_keystore **ret);

/**
 * kh_keystore_file_backup_key() - offline, the key kh_keystore_backup_key() gives for salt,
 * from the bytes of a store's keystore.meta (as a backup carries them) and the store's
 * secret: cfg->master_key_file or cfg->passphrase (exactly one; cfg->path is not used).
 * The secret must open meta's check value first, so a wrong one is told apart from a
 * damaged backup.
 * Returns 0, -EINVAL (neither or both secrets, a key file not of 32 bytes), -EKEYREJECTED
 * (this secret does not open this key store), -EACCES (a key file readable by group or
 * others, or owned by another user), -EBADMSG (meta malformed), -ENOENT, -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_keystore_file_backup_key(const uint8_t *meta, size_t meta_len,
                                              const struct kh_config_keystore *cfg,
                                              const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                              struct kh_secret **ret);

/**
 * kh_keystore_file_check_file() - whether name (relative to the store's folder:
 * "keystore.meta", "<tenant>/v<N>.key", "<tenant>/audit-v<N>.key", "_server/audit-v<N>.key",
 * or a ".pub" beside one) holding p[0..n) is a file of a file key store: a well-formed meta
 * file, or a key file whose header names the tenant and version of its name, or a PEM
 * public key. Does not unseal anything. Returns 0 or -EBADMSG.
 */
KH_MUST_CHECK int kh_keystore_file_check_file(const char *name, const uint8_t *p, size_t n);
