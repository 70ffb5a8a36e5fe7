/* Opening a backup file offline (keyhold backup verify / restore): no server, only the file
 * and the key store's secret. Both read the whole file and check everything before they
 * report success: every chunk, the manifest, the database snapshot (SQLite's own check, the
 * schema, the record counts against the manifest) and every key-store file's form. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "config/config.h"

/* What a backup holds, once checked. */
struct kh_backup_summary {
        uint64_t created;        /* unix seconds, from the header */
        size_t tenants;
        uint64_t records;
        uint64_t bytes;          /* the file's size */
};

/* Why a backup was refused, for the user: a machine code and a sentence. */
struct kh_backup_error {
        const char *code;        /* "not_a_backup", "wrong_secret", "damaged", "truncated",
                                  * "unsupported", "not_empty", "file_error", "internal_error";
                                  * a pkcs11 store's backup also "missing_key" (the token
                                  * lacks a key it needs), "wrong_keystore",
                                  * "pkcs11_pin_locked", "keystore_error" */
        char message[512];
};

/**
 * kh_backup_verify() - reads the backup at path and checks it without keeping anything
 * (the database snapshot goes to a scratch folder in $TMPDIR, removed before returning).
 * @secret: the key store's secret: master_key_file or passphrase (exactly one); for a
 *          backup of a pkcs11 store, keyholdd's whole [keystore] (module, token, prefix) with
 *          the PIN (pin, or pin_file).
 * Returns 0 with ret filled, or a negative error with err filled: -EBADMSG (damaged,
 * truncated, changed, not a backup), -EKEYREJECTED (secret does not open it), -ENOKEY (the
 * token lacks a key the backup needs), -EMEDIUMTYPE (another key label prefix), -EOPNOTSUPP
 * (a key-store driver this build cannot open offline), -EINVAL (secret missing or both),
 * -ENOENT/-EACCES/-EIO (files), -ENOMEM.
 */
KH_MUST_CHECK int kh_backup_verify(const char *path, const struct kh_config_keystore *secret,
                                   struct kh_backup_summary *ret, struct kh_backup_error *err);

/**
 * kh_backup_restore() - as kh_backup_verify(), writing DIR/keyhold.db and DIR/keystore/
 * (files 0600, folders 0700) into a new folder ".DIR.restore-XXXXXX" beside dir, renamed to
 * dir only once everything checked; so dir is either left as it was (absent or empty) or
 * holds the whole restore, whatever happens. dir must be absent or an empty folder.
 * Returns as kh_backup_verify(), and -ENOTEMPTY (dir holds something: err code "not_empty").
 */
KH_MUST_CHECK int kh_backup_restore(const char *path, const struct kh_config_keystore *secret,
                                    const char *dir, struct kh_backup_summary *ret,
                                    struct kh_backup_error *err);

/* Takes the checked database snapshot at db_path elsewhere (kh_backup_restore_load()).
 * Returns 0, or a negative error with err filled. */
typedef int (*kh_backup_load_fn)(const char *db_path, void *userdata,
                                 struct kh_backup_error *err);

/**
 * kh_backup_restore_load() - as kh_backup_restore(), but the database snapshot goes to
 * load() (keyhold backup restore --into-storage: into a PostgreSQL database) rather than
 * into DIR: load runs once everything checked and before dir appears; on its success the
 * database file is removed and dir holds DIR/keystore/ only; on its failure dir is left as
 * it was. Once load succeeded, a later failure (dir no longer empty) keeps the folder (it
 * then holds the only copy of the key store; err says so): kh_backup_restore_finish() ends
 * the restore. Returns as kh_backup_restore(), or load's error.
 */
KH_MUST_CHECK int kh_backup_restore_load(const char *path, const struct kh_config_keystore *secret,
                                         const char *dir, kh_backup_load_fn load, void *userdata,
                                         struct kh_backup_summary *ret,
                                         struct kh_backup_error *err);

/**
 * kh_backup_restore_finish() - ends a kh_backup_restore_load() whose load succeeded but
 * that stopped before tmp (its ".DIR.restore-XXXXXX" folder, checked in full before the
 * load) became dir: removes the database file if still there, syncs and renames tmp to
 * dir. Returns 0, or a negative error with err filled: -ENOENT (tmp is gone), -ENOTEMPTY
 * (dir holds something: "not_empty"), -EIO and the like ("file_error").
 */
KH_MUST_CHECK int kh_backup_restore_finish(const char *tmp, const char *dir,
                                           struct kh_backup_error *err);
