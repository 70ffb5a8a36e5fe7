/* Key stores hold the tenant keys (RSA). The interface exposes operations, never a private
 * key: generate, wrap, unwrap, sign, public key, list versions. Callers include this file;
 * backends include keystore-backend.h.
 *
 * Threads. Of the functions below that take a store, these may run at once on one store,
 * from any number of threads, with each other:
 *   kh_keystore_wrap, _unwrap, _oaep, _decrypt, _sign, _public_key, _list, _backup_key,
 *   _backup_meta, _backup_open,
 *   _probe, and the getters _name, _caps, _is_lost.
 * These are exclusive: no other call on the store may run meanwhile:
 *   kh_keystore_close, _reconnect, _generate, _destroy (open makes a store no one else has).
 * (generate and destroy are safe against each other's data structures too, but a key made
 * or destroyed while another thread uses that version is not something callers want.)
 * keyholdd: the app's reload_lock is a read-write lock; recovery decryption, the auditor's
 * checkpoint signatures and backup keys take it shared, everything that generates,
 * destroys, seals, unseals or reconnects takes it exclusively. The file store keeps no
 * state but its master key and directory, both read-only once open. The pkcs11 store keeps
 * a pool of sessions, [keystore] threads of them at most (KH_KEYSTORE_THREADS_DEFAULT when
 * 0), opened as threads need them and all logged in by its one C_Login; an operation that
 * finds every session lent out waits up to 30 s for one (then -KH_E_BUSY). Its module is
 * initialised with CKF_OS_LOCKING_OK, so other code of the process (the Key Connector
 * importer) may use the same module at once. Never call a store from an event loop.
 *
 * A store that can go away (KH_KS_REMOVABLE: an HSM) answers -KH_E_KEYSTORE_UNAVAILABLE to
 * any operation once the device or its session is gone, at once and without touching the
 * device until kh_keystore_reconnect() succeeds.
 * Every operation below also returns -EINVAL for a tenant id that is not
 * [a-z0-9][a-z0-9-]{0,62} (or "" for an audit key), a version of 0, or (generate) rsa_bits outside 2048..8192 or not
 * a multiple of 1024, and -KH_E_INTEGRITY when stored key material fails its check. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "common/buf.h"
#include "common/cleanup.h"
#include "common/limits.h"
#include "common/secret.h"
#include "config/config.h"
#include "crypto/rsa.h"

struct kh_keystore;

/* What a key is for. A key of one purpose never stands in for another: the purpose is
 * part of its name and of what authenticates it in the store. */
enum kh_key_purpose {
        KH_KEY_DATA = 0,                 /* a tenant key version: wraps and signs DEKs */
        KH_KEY_AUDIT = 1,                /* signs a chain's audit checkpoints; tenant "" is
                                          * the server's own chain */
        KH_KEY_RECOVERY = 2,             /* a tenant's account-recovery key (Bitwarden's
                                          * organisation key pair, RSA-2048): members encrypt
                                          * their user key to its public half; only
                                          * kh_keystore_decrypt() uses the private half */
};

/* Names one key version inside a key store. */
struct kh_key_ref {
        char tenant[KH_TENANT_ID_MAX + 1];
        uint32_t version;                /* 1, 2, ... */
        enum kh_key_purpose purpose;
};

/* A key's algorithm. Tenant keys (KH_KEY_DATA) are RSA: they wrap DEKs. */
enum kh_key_alg {
        KH_KEY_ALG_RSA = 0,              /* RSA of rsa_bits; signs with RSA-PSS */
        KH_KEY_ALG_EC_P256 = 1,          /* ECDSA P-256 (audit keys only): signs 80 times
                                          * faster than RSA-3072 */
};

/* The RSA sizes a key store makes (rsa_bits), in steps of 1024. */
#define KH_RSA_BITS_MIN 2048
#define KH_RSA_BITS_MAX 8192

struct kh_key_spec {
        const char *tenant;
        uint32_t version;
        unsigned rsa_bits;               /* 2048..8192 (RSA only) */
        enum kh_key_purpose purpose;
        enum kh_key_alg alg;
};

enum {
        KH_KS_NON_EXTRACTABLE = 1u << 0, /* private keys are created inside a device */
        KH_KS_SLOW_SIGN = 1u << 1,       /* may block: call from a job, never from a loop */
        KH_KS_REMOVABLE = 1u << 2,       /* a device that can go away while serving: probe
                                          * it, reconnect when it is back */
};

typedef int (*kh_key_ref_fn)(const struct kh_key_ref *ref, void *userdata);

/* The threads that use one store at once when its config says 0 (struct kh_config_keystore
 * threads): keyholdd's 2 job threads, its auditor and one more (the monitor, a CLI tool). */
#define KH_KEYSTORE_THREADS_DEFAULT 4

/* Opens the key store cfg->driver names. Errors: -EINVAL (unknown driver, bad config),
 * -EACCES (wrong master key or passphrase, or a master key file readable by others),
 * -ENOENT, -ENOMEM, -EIO. */
KH_MUST_CHECK int kh_keystore_open(const struct kh_config_keystore *cfg, struct kh_keystore **ret);

/* kh_keystore_open() that also says why it failed, for the operator: detail gets a short
 * text naming the failing call or setting (the pkcs11 store: "C_Login: CKR_PIN_INCORRECT",
 * "C_GetMechanismInfo: the token does not offer CKM_RSA_PKCS_PSS (signing DEKs)"), never a
 * secret; "" if there is none. The pkcs11 store's errors also include -KH_E_PKCS11_MODULE,
 * -KH_E_PKCS11_TOKEN, -KH_E_PKCS11_PIN, -KH_E_PKCS11_PIN_LOCKED and -KH_E_PKCS11_MECHANISM.
 * The pkcs11 store takes its PIN from cfg->passphrase_secret or cfg->master_key (an
 * unseal's secret) before cfg->pin and cfg->pin_file. */
KH_MUST_CHECK int kh_keystore_open_detail(const struct kh_config_keystore *cfg,
                                          struct kh_keystore **ret, char *detail,
                                          size_t detail_len);
struct kh_keystore *kh_keystore_close(struct kh_keystore *ks); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_keystore_close, struct kh_keystore *)

const char *kh_keystore_name(const struct kh_keystore *ks); /* "file", "pkcs11" */
/* KH_KS_*: file 0; pkcs11 KH_KS_NON_EXTRACTABLE | KH_KS_SLOW_SIGN | KH_KS_REMOVABLE */
unsigned kh_keystore_caps(const struct kh_keystore *ks);

/* Creates key version spec->version for spec->tenant. Atomic across processes sharing the
 * store: exactly one caller creates it; the others get -EEXIST and use the existing key. */
KH_MUST_CHECK int kh_keystore_generate(struct kh_keystore *ks, const struct kh_key_spec *spec,
                                       struct kh_key_ref *ret_ref);

/* RSA-OAEP wrap of a DEK under key ref, with the key's own OAEP digest
 * (kh_keystore_oaep()); the wrapped bytes are appended to out.
 * Errors: -ENOENT (no such key), -ENOMEM, -EIO. */
KH_MUST_CHECK int kh_keystore_wrap(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                   const struct kh_secret *dek, struct kh_buf *out);

/* The OAEP digest (also MGF1's; the label is empty) DEKs wrapped under tenant key version
 * ref use: chosen when the version was generated and kept with it. The file store's keys
 * are all KH_OAEP_SHA256; a pkcs11 store's are what its token can decrypt (SoftHSM2 2.6:
 * KH_OAEP_SHA1). Returns 0, -EINVAL (not a KH_KEY_DATA key), -ENOENT or -KH_E_INTEGRITY. */
KH_MUST_CHECK int kh_keystore_oaep(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                   enum kh_oaep_md *ret);

/* Unwraps a DEK wrapped under ref. -KH_E_INTEGRITY if it does not unwrap, -ENOENT. */
KH_MUST_CHECK int kh_keystore_unwrap(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                     const uint8_t *wrapped, size_t len, struct kh_secret **ret_dek);

/* The signature over a 32-byte SHA-256 digest, appended to sig: RSA-PSS (SHA-256,
 * MGF1-SHA-256, salt = digest length) by an RSA key, ECDSA (DER) by a P-256 key.
 * -EINVAL if len is not 32. */
KH_MUST_CHECK int kh_keystore_sign(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                   const uint8_t *digest, size_t len, struct kh_buf *sig);

/* The public half of ref (caller frees with EVP_PKEY_free). */
KH_MUST_CHECK int kh_keystore_public_key(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                         EVP_PKEY **ret);

/* Decrypts in[0..len), an RSA-OAEP ciphertext made by a client with digest md (SHA-1 for a
 * Bitwarden type-4 EncString, SHA-256 for type 3), with recovery key ref (purpose
 * KH_KEY_RECOVERY only: -EINVAL for another), into a new secret the caller frees.
 * -KH_E_INTEGRITY if it does not decrypt, -ENOENT. */
KH_MUST_CHECK int kh_keystore_decrypt(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                      enum kh_oaep_md md, const uint8_t *in, size_t len,
                                      struct kh_secret **ret);

/* Deletes tenant key version ref (purpose KH_KEY_DATA only: -EINVAL for an audit key) for
 * good: a file store overwrites the key file before unlinking it, a device destroys the
 * object. Irreversible; the caller has made sure nothing is sealed under it any more.
 * Returns 0, -ENOENT (no such key: destroyed before) or -EIO. */
KH_MUST_CHECK int kh_keystore_destroy(struct kh_keystore *ks, const struct kh_key_ref *ref);

/* Calls fn for each version (of purpose KH_KEY_DATA) of tenant, ascending; stops early and returns fn's value if it
 * returns non-zero. */
KH_MUST_CHECK int kh_keystore_list(struct kh_keystore *ks, const char *tenant, kh_key_ref_fn fn,
                                   void *userdata);

/* Bytes of the random salt a backup's key is derived with (backup/format.h). */
#define KH_BACKUP_SALT_LEN 32

/**
 * kh_keystore_backup_key() - the 32-byte key that seals a backup made with this salt: only
 * this key store's secret derives it (the file store: HKDF-SHA256 of its master key with
 * the salt and info "keyhold-backup:1"; the pkcs11 store in the token, below). Offline, kh_keystore_file_backup_key() derives the same key from keystore.meta and
 * the master key file or passphrase. On success *ret is a new secret the caller frees.
 * The pkcs11 store: HMAC-SHA256 computed by the token (CKM_SHA256_HMAC) over
 * "keyhold-backup:1" || salt with a generic secret it makes once inside the token
 * ("<prefix>_server-backup-v1", sensitive, not extractable; keystore/pkcs11/backup.h).
 * Returns 0, -EOPNOTSUPP (a store that cannot make backups), -KH_E_PKCS11_MECHANISM (the
 * token lacks CKM_SHA256_HMAC or CKM_GENERIC_SECRET_KEY_GEN), -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_keystore_backup_key(struct kh_keystore *ks,
                                         const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                         struct kh_secret **ret);

/**
 * kh_keystore_backup_meta() - what a backup's clear header says about this key store, for
 * a store whose keys stay in a device (pkcs11): the token and the labels of refs[0..n) that
 * the token holds (refs it does not hold are left out), plus the backup key's, appended to
 * out; never a secret. Call kh_keystore_backup_key() first (it makes the backup key).
 * Returns 0, -EOPNOTSUPP (the file store: its keystore.meta file is the header's meta),
 * -ENOMEM or -EIO.
 */
KH_MUST_CHECK int kh_keystore_backup_meta(struct kh_keystore *ks, const struct kh_key_ref *refs,
                                          size_t n, struct kh_buf *out);

/**
 * kh_keystore_backup_open() - offline (backup verify and restore): checks this open store
 * holds every key meta[0..meta_len) (a header's meta made by kh_keystore_backup_meta())
 * names, and derives the backup key for salt into *ret. detail (may be NULL) names a
 * missing key's label or the failing call.
 * Returns 0, -EOPNOTSUPP (the file store: see kh_keystore_file_backup_key()), -EBADMSG
 * (meta malformed), -EMEDIUMTYPE (the store is not the backup's: another key label
 * prefix), -ENOKEY (a key the backup needs is missing), -ENOENT (no backup key), or an
 * error as kh_keystore_backup_key().
 */
KH_MUST_CHECK int kh_keystore_backup_open(struct kh_keystore *ks, const uint8_t *meta,
                                          size_t meta_len,
                                          const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                          struct kh_secret **ret, char *detail,
                                          size_t detail_len);

/**
 * kh_keystore_probe() - whether the store's device still answers: one cheap round trip
 * (the pkcs11 store: C_GetSessionInfo, logged in). A store without a device (file) is
 * always there. detail: on -KH_E_KEYSTORE_UNAVAILABLE, the answer that said so
 * ("C_GetSessionInfo: CKR_DEVICE_ERROR"); never a secret. May be NULL.
 * Returns 0, -KH_E_KEYSTORE_UNAVAILABLE (also while the store is lost, until a reconnect) or
 * -KH_E_PKCS11_MODULE (an answer that says neither).
 */
KH_MUST_CHECK int kh_keystore_probe(struct kh_keystore *ks, char *detail, size_t detail_len);

/**
 * kh_keystore_reconnect() - the way back after -KH_E_KEYSTORE_UNAVAILABLE: the pkcs11 store
 * initialises its module again, finds the token by its label (or slot), opens a new
 * session and logs in with the PIN it keeps in locked memory since open. Keys are found by
 * label at each use, so nothing else changes. 0 for a store without a device.
 * Returns 0 (operations work again), -KH_E_KEYSTORE_UNAVAILABLE (not back yet: try again
 * later), -KH_E_PKCS11_PIN (the token is back but refuses the PIN), -KH_E_PKCS11_MECHANISM
 * or -ENOMEM. detail as kh_keystore_probe(). Blocks as long as the device does.
 */
KH_MUST_CHECK int kh_keystore_reconnect(struct kh_keystore *ks, char *detail, size_t detail_len);

/* Whether the store is lost (an operation answered -KH_E_KEYSTORE_UNAVAILABLE since the
 * last reconnect). Any thread. */
bool kh_keystore_is_lost(const struct kh_keystore *ks);
