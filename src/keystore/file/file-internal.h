/* Internals of the file key store, shared by its .c files only. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/secret.h"
#include "keystore/file/file-keystore.h"

/* Reads the whole regular file dirfd/name into out (initialised by the caller), at most max
 * bytes. Follows no symlink in the last component. Returns 0, -ENOENT, -EFBIG (larger than
 * max), -EIO (not a regular file), -ENOMEM or another -errno. */
KH_MUST_CHECK int kh_fks_read_at(int dirfd, const char *name, size_t max, struct kh_buf *out);

/* Durably creates dirfd/name (mode 0600) holding p[0..n): written under a temporary name,
 * fsynced, then linked into place and the directory fsynced. With replace false, a name
 * that already exists is left alone and -EEXIST returned (exactly one of several concurrent
 * creators wins); with replace true the file is renamed over it. The temporary name never
 * survives a failure (but may survive a crash: it starts with '.'). Returns 0 or -errno. */
KH_MUST_CHECK int kh_fks_write_at(int dirfd, const char *name, const void *p, size_t n,
                                  bool replace);

/* Loads the master key of the store open at dirfd, creating keystore.meta (with kdf's cost)
 * when it does not exist. Errors as kh_keystore_file_open_kdf(). */
KH_MUST_CHECK int kh_fks_master_load(int dirfd, const struct kh_config_keystore *cfg,
                                     const struct kh_file_ks_kdf *kdf,
                                     struct kh_secret **ret_master);

/* The backup key of a store whose master key is master (HKDF-SHA256, info
 * "keyhold-backup:1"). */
KH_MUST_CHECK int kh_fks_backup_key(const struct kh_secret *master,
                                    const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                    struct kh_secret **ret);

/* Whether p[0..n) is a well-formed keystore.meta (nothing is unsealed). */
bool kh_fks_meta_is_valid(const uint8_t *p, size_t n);

static inline void kh_fks_put_u32(uint8_t *p, uint32_t v) {
        p[0] = (uint8_t) (v >> 24);
        p[1] = (uint8_t) (v >> 16);
        p[2] = (uint8_t) (v >> 8);
        p[3] = (uint8_t) v;
}

static inline uint32_t kh_fks_get_u32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}
