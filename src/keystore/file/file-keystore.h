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
