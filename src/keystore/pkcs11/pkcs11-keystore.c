/* The pkcs11 key store: tenant keys generated in, used in and never extractable from a
 * PKCS#11 token (an HSM; SoftHSM2 in tests).
 *
 * Objects. Each key version is a key pair of token objects, both labelled
 *   <key_label_prefix><owner>-<purpose>-v<version>
 * owner: the tenant id ("_server" for the server's audit chain: no tenant id starts with
 * '_'); purpose: "data" (a tenant key version), "audit" (an audit signing key) or
 * "recovery" (a tenant's account-recovery key). Tenant ids may hold '-', so a label is
 * read from its end: "-v<N>", then the purpose. The private half is CKA_TOKEN,
 * CKA_PRIVATE, CKA_SENSITIVE and not CKA_EXTRACTABLE; nothing in keyhold reads it.
 *
 * OAEP per key version. DEKs are wrapped with RSA-OAEP; which digest (also MGF1's) a token
 * can decrypt differs (SoftHSM2 2.6 has SHA-1 only). At the first generation of a tenant
 * key after open, the new key is tried: a test value is encrypted in software with
 * SHA-256, decrypted by the token and compared; if the token refuses the parameters,
 * SHA-1 is tried the same way. The result is the key's own, written into the CKA_ID of
 * both halves as "<label>;oaep=sha256" or "<label>;oaep=sha1", and every later wrap and
 * unwrap under that version reads it from there (kh_keystore_oaep() tells callers).
 * Later versions made by the same open store get the same digest without a new trial.
 * Audit and recovery keys have CKA_ID "<label>" (recovery decryption uses the digest its
 * ciphertext was made with).
 *
 * Audit keys are ECDSA P-256 if the token offers CKM_EC_KEY_PAIR_GEN and CKM_ECDSA, else
 * RSA-3072 signing with RSA-PSS, which the audit verifier accepts as well.
 *
 * Exactly one creator. generate looks the label up first (-EEXIST if a pair has it; half a
 * pair, left by a creator killed inside C_GenerateKeyPair, is destroyed first), makes
 * the pair, then looks again: if the token now holds more than one private key with the
 * label, another process made one at the same time, and ours is destroyed (-EEXIST). Two
 * processes on one token whose generations interleave exactly so that both see two keys
 * destroy both and both get -EEXIST; the caller's next use then finds no key (-ENOENT)
 * and the operation is retried. A token has no compare-and-swap, so keyhold replicas sharing
 * one token take the database's lease "keygen.<tenant>" before they make a tenant's first
 * version (service/app.c: one replica generates, the others wait for its row). Two rekeys of
 * one tenant on two replicas at the same moment are not serialised so: the database keeps
 * one new version (the other rekey answers invalid_state), and at worst both generations are
 * undone here and both rekeys fail, to be asked again; no row ever names a key that is gone.
 *
 * Sessions. One read-write session is opened and logged in at open (the primary); a pool
 * (pool.h) lends it, and up to [keystore] threads - 1 more sessions opened when threads
 * need them, to one operation at a time: every operation borrows a session and gives it
 * back, so threads use the token at once (keystore.h says which operations may). One
 * C_Login covers them all: login is per application and token. No object handle is kept
 * between operations (each finds its objects by label), so nothing cached needs a lock;
 * generate holds generate_lock (the OAEP trial writes oaep and oaep_known). A reconnect
 * drains the pool (every session back, all but the primary closed) before it touches the
 * module, and close does the same before the primary goes.
 *
 * Backups: the token's keys stay in the token. A backup is sealed under a key the token
 * derives (HMAC-SHA256 under a generic secret made inside it), and its header names the
 * token and the labels of the keys it needs (backup.h).
 *
 * Losing the token. Every CK_RV that says the device or the session is gone
 * (kh_p11_rv_is_lost()) is -KH_E_KEYSTORE_UNAVAILABLE. The store keeps the PIN in locked
 * memory (a kh_secret) from open to close, so that reconnect can log in again without
 * asking anyone; it never reaches a log or a detail text. Objects are found by label at
 * each use, so the new session's handles need no remapping. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/file.h"
#include "common/parse.h"
#include "crypto/random.h"
#include "crypto/rsa.h"
#include "keystore/keystore-backend.h"
#include "keystore/pkcs11/backup.h"
#include "keystore/pkcs11/labels.h"
#include "keystore/pkcs11/module-internal.h"
#include "keystore/pkcs11/pool.h"

#define LABEL_PREFIX_MAX KH_P11_LABEL_PREFIX_MAX
#define LABEL_MAX KH_P11_LABEL_MAX
#define ID_MAX (LABEL_MAX + 16)
#define OAEP_SHA256_TAG ";oaep=sha256"
#define OAEP_SHA1_TAG ";oaep=sha1"
#define PIN_FILE_MAX 256
#define AUDIT_RSA_BITS 3072 /* an audit key where the token has no ECDSA */
#define KEY_VERSIONS_MAX 65536
#define DUPLICATES_MAX 4
#define TOKEN_LABEL_MAX 32 /* CK_TOKEN_INFO.label */

struct kh_p11_ks {
        struct kh_keystore base;
        /* the session that holds the module and the login; every operation borrows a
         * session of the pool (this one or another), never uses it directly */
        struct kh_p11 *primary;
        struct kh_p11_pool *pool;
        pthread_mutex_t generate_lock; /* the OAEP trial below, and one generate at a time */
        struct kh_secret *pin;    /* locked memory, for reconnect */
        char token_label[TOKEN_LABEL_MAX + 1]; /* "" when the token is found by slot */
        bool has_slot;
        unsigned long slot;
        char prefix[LABEL_PREFIX_MAX + 1];
        bool has_ec;
        bool oaep_known;          /* oaep was tried on a key of this token */
        enum kh_oaep_md oaep;
};

/* A session borrowed from the pool for one operation, given back when it goes out of
 * scope: KH_CLEANUP(session_put) struct session s = { .pool = ks->pool }; then
 * session_get(). */
struct session {
        struct kh_p11_pool *pool;
        struct kh_p11 *p;
};

static int session_get(struct session *s) {
        return kh_p11_pool_get(s->pool, &s->p);
}

static void session_put(struct session *s) {
        if (s->p)
                kh_p11_pool_put(s->pool, s->p);
        s->p = NULL;
}

static struct kh_p11_ks *p11_ks(struct kh_keystore *ks) {
        return kh_container_of(ks, struct kh_p11_ks, base);
}

static struct kh_p11_ks *p11_ks_free(struct kh_p11_ks *ks) {
        if (!ks)
                return NULL;
        kh_p11_pool_free(ks->pool); /* every session back, all but the primary closed */
        kh_p11_free(ks->primary);
        pthread_mutex_destroy(&ks->generate_lock);
        kh_secret_free(ks->pin);
        free(ks);
        return NULL;
}
KH_DEFINE_CLEANUP(p11_ks_free, struct kh_p11_ks *)

/* ---- open / close ---- */

/* The PIN, from the first of: the secret an unseal gave (the passphrase: NUL-terminated
 * text; a 32-byte --master-key-file: its bytes minus one trailing newline), then
 * KEYHOLD_KEYSTORE_PIN, then pin_file: the file's whole content minus one trailing newline
 * (DESIGN.md "Running it"). -EINVAL if there is none or it is empty (-ENODATA: an empty
 * pin_file, said apart for the operator). */
static int pin_load(const struct kh_config_keystore *cfg, struct kh_secret **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        const uint8_t *p;
        size_t n;
        int r;

        if (cfg->passphrase_secret) {
                p = kh_secret_bytes(cfg->passphrase_secret);
                n = kh_secret_len(cfg->passphrase_secret);
                if (n > 0 && p[n - 1] == '\0')
                        n--;
                return n > 0 ? kh_secret_new_from(p, n, ret) : -EINVAL;
        }
        if (cfg->master_key) {
                p = kh_secret_bytes(cfg->master_key);
                n = kh_secret_len(cfg->master_key);
                if (n > 0 && p[n - 1] == '\n')
                        n--;
                return n > 0 ? kh_secret_new_from(p, n, ret) : -EINVAL;
        }
        if (cfg->pin && cfg->pin[0])
                return kh_secret_new_from(cfg->pin, strlen(cfg->pin), ret);
        if (!cfg->pin_file || !cfg->pin_file[0])
                return -EINVAL;
        kh_buf_init(&b, PIN_FILE_MAX, true);
        r = kh_file_read(AT_FDCWD, cfg->pin_file, 0, PIN_FILE_MAX, &b);
        if (r < 0)
                return r == -EFBIG ? -EINVAL : r;
        n = b.len;
        if (n > 0 && b.data[n - 1] == '\n')
                n--;
        if (n == 0)
                return -ENODATA;
        return kh_secret_new_from(b.data, n, ret);
}

/* The mechanisms every key version needs, each checked for what it is used for. */
static int mechanisms_check(struct kh_p11_ks *ks, char *detail, size_t detail_len) {
        static const struct {
                CK_MECHANISM_TYPE m;
                CK_FLAGS flags;
                const char *what;
        } need[] = {
                { CKM_RSA_PKCS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR,
                  "CKM_RSA_PKCS_KEY_PAIR_GEN (generating tenant keys)" },
                { CKM_RSA_PKCS_OAEP, CKF_DECRYPT, "CKM_RSA_PKCS_OAEP (unwrapping DEKs)" },
                { CKM_RSA_PKCS_PSS, CKF_SIGN, "CKM_RSA_PKCS_PSS (signing DEKs)" },
        };
        int r;

        for (size_t i = 0; i < KH_ELEMENTSOF(need); i++) {
                r = kh_p11_mechanism_has(ks->primary, need[i].m, need[i].flags);
                if (r < 0) {
                        kh_p11_detail_set(detail, detail_len, "C_GetMechanismInfo",
                                          r == -KH_E_PKCS11_MECHANISM ? need[i].what : "failed");
                        if (r == -KH_E_PKCS11_MECHANISM && detail && detail_len > 0)
                                (void) snprintf(detail, detail_len,
                                                "C_GetMechanismInfo: the token does not offer %s",
                                                need[i].what);
                        return r;
                }
        }
        ks->has_ec = kh_p11_mechanism_has(ks->primary, CKM_EC_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR) == 0 &&
                     kh_p11_mechanism_has(ks->primary, CKM_ECDSA, CKF_SIGN) == 0;
        return 0;
}

static int p11_open(const struct kh_config_keystore *cfg, struct kh_keystore **ret, char *detail,
                    size_t detail_len) {
        KH_CLEANUP(p11_ks_freep) struct kh_p11_ks *ks = NULL;
        const char *prefix = cfg->key_label_prefix ? cfg->key_label_prefix : "keyhold-";
        struct kh_p11_open_args a = {
                .module_path = cfg->module,
                .token_label = cfg->token_label && cfg->token_label[0] ? cfg->token_label : NULL,
                .has_slot = cfg->has_slot,
                .slot = cfg->slot,
                .read_write = true,
        };
        int r;

        if (!cfg->module || !cfg->module[0] || (!a.token_label && !a.has_slot) ||
            strlen(prefix) > LABEL_PREFIX_MAX ||
            (a.token_label && strlen(a.token_label) > TOKEN_LABEL_MAX)) {
                kh_p11_detail_set(detail, detail_len, "[keystore]",
                                  "needs module, token_label or slot, and a prefix of at most "
                                  "32 bytes");
                return -EINVAL;
        }
        if (cfg->threads > KH_P11_POOL_SIZE_MAX) {
                kh_p11_detail_set(detail, detail_len, "[keystore]", "too many threads");
                return -EINVAL;
        }
        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        pthread_mutex_init(&ks->generate_lock, NULL);
        r = pin_load(cfg, &ks->pin);
        if (r < 0) {
                kh_p11_detail_set(detail, detail_len, "[keystore] pin_file",
                                  r == -ENODATA  ? "is empty: it must hold the token's user PIN"
                                  : r == -EINVAL ? "no PIN (neither pin_file nor "
                                                   "KEYHOLD_KEYSTORE_PIN set, or too long)"
                                                 : "cannot be read");
                return r == -ENODATA ? -EINVAL : r;
        }
        a.pin = ks->pin;
        if (a.token_label)
                memcpy(ks->token_label, a.token_label, strlen(a.token_label));
        ks->has_slot = a.has_slot;
        ks->slot = a.slot;
        ks->base.ops = &kh_keystore_pkcs11_ops;
        memcpy(ks->prefix, prefix, strlen(prefix));
        ks->oaep = KH_OAEP_SHA256;
        r = kh_p11_open_ex(&a, &ks->primary, detail, detail_len);
        if (r < 0)
                return r;
        r = mechanisms_check(ks, detail, detail_len);
        if (r < 0)
                return r;
        r = kh_p11_pool_new(ks->primary, cfg->threads ? cfg->threads : KH_KEYSTORE_THREADS_DEFAULT,
                            &ks->pool);
        if (r < 0)
                return r;

        *ret = &KH_TAKE_PTR(ks)->base;
        return 0;
}

static void p11_close(struct kh_keystore *ks) {
        (void) p11_ks_free(p11_ks(ks));
}

static int p11_probe(struct kh_keystore *base, char *detail, size_t detail_len) {
        KH_CLEANUP(session_put) struct session s = { .pool = p11_ks(base)->pool };
        int r;

        r = session_get(&s);
        if (r < 0) {
                kh_p11_detail_set(detail, detail_len, "C_OpenSession",
                                  r == -KH_E_BUSY ? "every session busy" : "failed");
                return r == -KH_E_BUSY ? 0 : r; /* busy sessions: the token answers them */
        }
        return kh_p11_probe(s.p, detail, detail_len);
}

static int p11_reconnect(struct kh_keystore *base, char *detail, size_t detail_len) {
        struct kh_p11_ks *ks = p11_ks(base);
        const struct kh_p11_open_args a = {
                .token_label = ks->token_label[0] ? ks->token_label : NULL,
                .has_slot = ks->has_slot,
                .slot = ks->slot,
                .pin = ks->pin,
                .read_write = true,
        };

        int r;

        /* every session back and closed but the primary's: the module may be initialised
         * again, and the handles of the old sessions mean nothing afterwards */
        kh_p11_pool_drain(ks->pool);
        r = kh_p11_reconnect(ks->primary, &a, detail, detail_len);
        kh_p11_pool_resume(ks->pool);
        return r;
}

/* ---- labels ---- */

static int key_label(const struct kh_p11_ks *ks, const char *tenant, enum kh_key_purpose purpose,
                     uint32_t version, char label[static LABEL_MAX]) {
        return kh_p11_label(ks->prefix, tenant, kh_p11_purpose_name(purpose), version, label);
}

/* The one object of class cls labelled label: -ENOENT if none, -KH_E_INTEGRITY if several
 * (two creators raced, see the top of this file). */
static int key_find(struct kh_p11 *s, CK_OBJECT_CLASS cls, const char *label,
                    CK_OBJECT_HANDLE *ret) {
        CK_OBJECT_HANDLE hs[2];
        size_t n = 0;
        int r;

        r = kh_p11_find(s, cls, label, hs, KH_ELEMENTSOF(hs), &n);
        if (r < 0)
                return r;
        if (n == 0)
                return -ENOENT;
        if (n > 1)
                return -KH_E_INTEGRITY;
        *ret = hs[0];
        return 0;
}

static int ref_find(struct kh_p11_ks *ks, struct kh_p11 *s, const struct kh_key_ref *ref,
                    CK_OBJECT_CLASS cls, CK_OBJECT_HANDLE *ret) {
        char label[LABEL_MAX];
        int r;

        r = key_label(ks, ref->tenant, ref->purpose, ref->version, label);
        if (r < 0)
                return r;
        return key_find(s, cls, label, ret);
}

/* The OAEP digest recorded in h's CKA_ID ("<label>;oaep=..."). */
static int key_oaep(struct kh_p11_ks *ks, struct kh_p11 *s, const struct kh_key_ref *ref,
                    CK_OBJECT_HANDLE h, enum kh_oaep_md *ret) {
        char label[LABEL_MAX], id[ID_MAX];
        size_t len, label_len;
        int r;

        r = key_label(ks, ref->tenant, ref->purpose, ref->version, label);
        if (r < 0)
                return r;
        r = kh_p11_attr(s, h, CKA_ID, id, sizeof(id), &len);
        if (r < 0)
                return r == -KH_E_PKCS11_KEY ? -KH_E_INTEGRITY : r;
        label_len = strlen(label);
        if (len < label_len || memcmp(id, label, label_len) != 0)
                return -KH_E_INTEGRITY;
        if (len - label_len == strlen(OAEP_SHA256_TAG) &&
            memcmp(id + label_len, OAEP_SHA256_TAG, len - label_len) == 0)
                *ret = KH_OAEP_SHA256;
        else if (len - label_len == strlen(OAEP_SHA1_TAG) &&
                 memcmp(id + label_len, OAEP_SHA1_TAG, len - label_len) == 0)
                *ret = KH_OAEP_SHA1;
        else
                return -KH_E_INTEGRITY;
        return 0;
}

static int key_id(const char *label, bool oaep_tag, enum kh_oaep_md md, char id[static ID_MAX],
                  size_t *ret_len) {
        int n = snprintf(id, ID_MAX, "%s%s", label,
                         !oaep_tag ? "" : md == KH_OAEP_SHA1 ? OAEP_SHA1_TAG : OAEP_SHA256_TAG);

        if (n < 0 || n >= ID_MAX)
                return -EINVAL;
        *ret_len = (size_t) n;
        return 0;
}

/* ---- operations ---- */

/* Whether the token decrypts under priv what software encrypted to pub with md. */
static int oaep_try(struct kh_p11 *s, EVP_PKEY *pub, CK_OBJECT_HANDLE priv, enum kh_oaep_md md) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *probe = NULL, *back = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf ct = { 0 };
        int r;

        r = kh_random_secret(32, &probe);
        if (r < 0)
                return r;
        kh_buf_init(&ct, KH_WRAPPED_DEK_MAX, false);
        r = kh_rsa_oaep_encrypt_md(pub, md, probe, &ct);
        if (r < 0)
                return r;
        r = kh_p11_oaep_decrypt(s, priv, md, ct.data, ct.len, &back);
        if (r < 0)
                return r;
        return kh_secret_equal(probe, back) ? 0 : -KH_E_PKCS11_MECHANISM;
}

/* Decides the OAEP digest of the new tenant key (pub, priv), made with ks->oaep in its
 * CKA_ID, and rewrites the CKA_ID if another digest is the one the token can do. */
static int oaep_settle(struct kh_p11_ks *ks, struct kh_p11 *s, const char *label,
                       CK_OBJECT_HANDLE pub_h, CK_OBJECT_HANDLE priv) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        static const enum kh_oaep_md order[] = { KH_OAEP_SHA256, KH_OAEP_SHA1 };
        char id[ID_MAX];
        size_t id_len;
        int r = -KH_E_PKCS11_MECHANISM;

        if (ks->oaep_known)
                return 0;
        r = kh_p11_public_key(s, pub_h, &pub);
        if (r < 0)
                return r;
        for (size_t i = 0; i < KH_ELEMENTSOF(order); i++) {
                r = oaep_try(s, pub, priv, order[i]);
                if (r == -KH_E_PKCS11_MECHANISM)
                        continue;
                if (r < 0)
                        return r;
                if (order[i] != ks->oaep) {
                        r = key_id(label, true, order[i], id, &id_len);
                        if (r < 0)
                                return r;
                        r = kh_p11_attr_set(s, pub_h, CKA_ID, id, id_len);
                        if (r == 0)
                                r = kh_p11_attr_set(s, priv, CKA_ID, id, id_len);
                        if (r < 0)
                                return r;
                }
                ks->oaep = order[i];
                ks->oaep_known = true;
                return 0;
        }
        return r;
}

/* -EEXIST if the pair labelled label is there. Half a pair (one object of the two) is what a
 * creator killed inside C_GenerateKeyPair leaves: no operation can use it and it would keep
 * the version from ever being made, so it is destroyed and 0 returned, as when neither half
 * is there. */
static int half_pair_drop(struct kh_p11 *s, const char *label) {
        CK_OBJECT_HANDLE priv, pub;
        size_t n_priv = 0, n_pub = 0;
        int r;

        r = kh_p11_find(s, CKO_PRIVATE_KEY, label, &priv, 1, &n_priv);
        if (r == 0)
                r = kh_p11_find(s, CKO_PUBLIC_KEY, label, &pub, 1, &n_pub);
        if (r < 0)
                return r;
        if (n_priv > 0 && n_pub > 0)
                return -EEXIST;
        if (n_priv > 0)
                return kh_p11_destroy(s, priv);
        if (n_pub > 0)
                return kh_p11_destroy(s, pub);
        return 0;
}

static int generate_on(struct kh_p11_ks *ks, struct kh_p11 *s, const struct kh_key_spec *spec) {
        CK_OBJECT_HANDLE pub = 0, priv = 0, hs[DUPLICATES_MAX];
        char label[LABEL_MAX], id[ID_MAX];
        bool data = spec->purpose == KH_KEY_DATA;
        size_t id_len, n = 0;
        int r;

        r = key_label(ks, spec->tenant, spec->purpose, spec->version, label);
        if (r < 0)
                return r;
        r = half_pair_drop(s, label);
        if (r < 0)
                return r;

        r = key_id(label, data, ks->oaep, id, &id_len);
        if (r < 0)
                return r;
        if (spec->alg == KH_KEY_ALG_EC_P256 && ks->has_ec)
                r = kh_p11_generate_ec_p256(s, label, id, id_len, &pub, &priv);
        else
                r = kh_p11_generate_rsa(s, label, id, id_len,
                                        spec->alg == KH_KEY_ALG_EC_P256 ? AUDIT_RSA_BITS
                                                                         : spec->rsa_bits,
                                        &pub, &priv);
        if (r < 0)
                return r;
        if (data)
                r = oaep_settle(ks, s, label, pub, priv);
        if (r == 0)
                r = kh_p11_find(s, CKO_PRIVATE_KEY, label, hs, KH_ELEMENTSOF(hs), &n);
        if (r == 0 && n > 1)
                r = -EEXIST; /* another process made one meanwhile: ours goes */
        if (r < 0) {
                (void) kh_p11_destroy(s, priv);
                (void) kh_p11_destroy(s, pub);
                return r;
        }

        return 0;
}

/* One generate at a time: the first tenant key's OAEP trial decides ks->oaep for the rest. */
static int p11_generate(struct kh_keystore *base, const struct kh_key_spec *spec) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        int r;

        r = session_get(&s);
        if (r < 0)
                return r;
        pthread_mutex_lock(&ks->generate_lock);
        r = generate_on(ks, s.p, spec);
        pthread_mutex_unlock(&ks->generate_lock);
        return r;
}

/* The public half of ref, of the type its purpose needs. */
static int public_load(struct kh_p11_ks *ks, struct kh_p11 *s, const struct kh_key_ref *ref,
                       CK_OBJECT_HANDLE *ret_h, EVP_PKEY **ret) {
        EVP_PKEY *pkey = NULL;
        CK_OBJECT_HANDLE h;
        int r;

        r = ref_find(ks, s, ref, CKO_PUBLIC_KEY, &h);
        if (r < 0)
                return r;
        r = kh_p11_public_key(s, h, &pkey);
        if (r < 0)
                return r == -KH_E_PKCS11_KEY ? -KH_E_INTEGRITY : r;
        if (ref->purpose != KH_KEY_AUDIT && EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA) {
                EVP_PKEY_free(pkey);
                return -KH_E_INTEGRITY;
        }
        if (ret_h)
                *ret_h = h;
        *ret = pkey;
        return 0;
}

static int p11_oaep(struct kh_keystore *base, const struct kh_key_ref *kek, enum kh_oaep_md *ret) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        CK_OBJECT_HANDLE h;
        int r;

        if (kek->purpose != KH_KEY_DATA)
                return -EINVAL;
        r = session_get(&s);
        if (r < 0)
                return r;
        r = ref_find(ks, s.p, kek, CKO_PUBLIC_KEY, &h);
        if (r < 0)
                return r;
        return key_oaep(ks, s.p, kek, h, ret);
}

static int p11_wrap(struct kh_keystore *base, const struct kh_key_ref *kek,
                    const struct kh_secret *dek, struct kh_buf *out) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        enum kh_oaep_md md;
        CK_OBJECT_HANDLE h;
        int r;

        if (kek->purpose != KH_KEY_DATA)
                return -EINVAL;
        r = session_get(&s);
        if (r < 0)
                return r;
        r = public_load(ks, s.p, kek, &h, &pub);
        if (r < 0)
                return r;
        r = key_oaep(ks, s.p, kek, h, &md);
        if (r < 0)
                return r;
        session_put(&s);
        /* the public half encrypts in software: same result as C_Encrypt, no token round
         * trip (and the session is back meanwhile) */
        return kh_rsa_oaep_encrypt_md(pub, md, dek, out);
}

/* A token's answer to a decryption, as the interface names it. */
static int decrypt_error(int r) {
        switch (r) {
        case -KH_E_PKCS11_DECRYPT:
                return -KH_E_INTEGRITY;
        case -KH_E_PKCS11_MECHANISM:
                return -EOPNOTSUPP;
        case -KH_E_PKCS11_KEY:
                return -KH_E_INTEGRITY;
        default:
                return r;
        }
}

static int p11_unwrap(struct kh_keystore *base, const struct kh_key_ref *kek,
                      const uint8_t *wrapped, size_t len, struct kh_secret **ret_dek) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        enum kh_oaep_md md;
        CK_OBJECT_HANDLE h;
        int r;

        if (kek->purpose != KH_KEY_DATA)
                return -EINVAL;
        r = session_get(&s);
        if (r < 0)
                return r;
        r = ref_find(ks, s.p, kek, CKO_PRIVATE_KEY, &h);
        if (r < 0)
                return r;
        r = key_oaep(ks, s.p, kek, h, &md);
        if (r < 0)
                return r;
        return decrypt_error(kh_p11_oaep_decrypt(s.p, h, md, wrapped, len, ret_dek));
}

static int p11_decrypt(struct kh_keystore *base, const struct kh_key_ref *key, enum kh_oaep_md md,
                       const uint8_t *in, size_t len, struct kh_secret **ret) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        CK_OBJECT_HANDLE h;
        int r;

        r = session_get(&s);
        if (r < 0)
                return r;
        r = ref_find(ks, s.p, key, CKO_PRIVATE_KEY, &h);
        if (r < 0)
                return r;
        return decrypt_error(kh_p11_oaep_decrypt(s.p, h, md, in, len, ret));
}

static int p11_sign(struct kh_keystore *base, const struct kh_key_ref *key, const uint8_t *digest,
                    size_t len, struct kh_buf *sig) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        CK_OBJECT_HANDLE h;
        int r;

        if (len != 32)
                return -EINVAL;
        r = session_get(&s);
        if (r < 0)
                return r;
        r = ref_find(ks, s.p, key, CKO_PRIVATE_KEY, &h);
        if (r < 0)
                return r;
        r = kh_p11_sign(s.p, h, digest, sig);
        return r == -KH_E_PKCS11_KEY || r == -KH_E_PKCS11_MECHANISM ? -EIO : r;
}

static int p11_public_key(struct kh_keystore *base, const struct kh_key_ref *key, EVP_PKEY **ret) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        int r;

        r = session_get(&s);
        if (r < 0)
                return r;
        return public_load(ks, s.p, key, NULL, ret);
}

struct list_ctx {
        const char *want; /* "<prefix><tenant>-data-v" */
        size_t want_len;
        uint32_t *v;
        size_t n, cap;
};

static int list_label(const char *label, size_t len, void *userdata) {
        struct list_ctx *c = userdata;
        const char *num = label + c->want_len;
        size_t num_len = len - c->want_len;
        uint64_t v;

        if (len <= c->want_len || memcmp(label, c->want, c->want_len) != 0 || num[0] == '0' ||
            kh_parse_u64(num, num_len, UINT32_MAX, &v) < 0 || v == 0)
                return 0;
        if (c->n == c->cap) {
                size_t ncap = c->cap ? 2 * c->cap : 16;
                uint32_t *nv;

                if (ncap > KEY_VERSIONS_MAX)
                        return -E2BIG;
                nv = reallocarray(c->v, ncap, sizeof(*nv));
                if (!nv)
                        return -ENOMEM;
                c->v = nv;
                c->cap = ncap;
        }
        c->v[c->n++] = (uint32_t) v;
        return 0;
}

static int u32_cmp(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return (x > y) - (x < y);
}

static int p11_list(struct kh_keystore *base, const char *tenant, kh_key_ref_fn fn,
                    void *userdata) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        char want[LABEL_MAX];
        struct list_ctx c = { .want = want };
        struct kh_key_ref ref = { 0 };
        int n, r;

        n = snprintf(want, sizeof(want), "%s%s-data-v", ks->prefix, tenant);
        if (n < 0 || (size_t) n >= sizeof(want))
                return -EINVAL;
        c.want_len = (size_t) n;
        r = session_get(&s);
        if (r < 0)
                return r;
        r = kh_p11_labels(s.p, CKO_PRIVATE_KEY, list_label, &c);
        session_put(&s); /* fn may take its time */
        if (r == 0 && c.n > 0)
                qsort(c.v, c.n, sizeof(*c.v), u32_cmp);

        memcpy(ref.tenant, tenant, strlen(tenant));
        for (size_t i = 0; r == 0 && i < c.n; i++) {
                if (i > 0 && c.v[i] == c.v[i - 1])
                        continue; /* two objects of one version: a race (see the top) */
                ref.version = c.v[i];
                r = fn(&ref, userdata);
        }
        free(c.v);
        return r;
}

static int p11_destroy(struct kh_keystore *base, const struct kh_key_ref *key) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        static const CK_OBJECT_CLASS classes[] = { CKO_PRIVATE_KEY, CKO_PUBLIC_KEY };
        CK_OBJECT_HANDLE hs[DUPLICATES_MAX];
        char label[LABEL_MAX];
        size_t total = 0;
        int r;

        r = key_label(ks, key->tenant, key->purpose, key->version, label);
        if (r < 0)
                return r;
        r = session_get(&s);
        if (r < 0)
                return r;
        /* the private half first: once it is gone the version is gone, whatever follows */
        for (size_t c = 0; c < KH_ELEMENTSOF(classes); c++) {
                size_t n = 0;

                r = kh_p11_find(s.p, classes[c], label, hs, KH_ELEMENTSOF(hs), &n);
                if (r < 0)
                        return r == -KH_E_KEYSTORE_UNAVAILABLE ? r : -EIO;
                for (size_t i = 0; i < n; i++) {
                        r = kh_p11_destroy(s.p, hs[i]);
                        if (r < 0)
                                return r == -KH_E_KEYSTORE_UNAVAILABLE ? r : -EIO;
                }
                total += n;
        }
        return total > 0 ? 0 : -ENOENT;
}

/* ---- backups (backup.c) ---- */

static int p11_backup_key(struct kh_keystore *base, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                          struct kh_secret **ret) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        int r;

        r = session_get(&s);
        if (r < 0)
                return r;
        /* the first one makes the backup secret in the token: one generate at a time */
        pthread_mutex_lock(&ks->generate_lock);
        r = kh_p11_backup_key(s.p, ks->prefix, true, salt, ret, NULL, 0);
        pthread_mutex_unlock(&ks->generate_lock);
        return r;
}

static int p11_backup_meta(struct kh_keystore *base, const struct kh_key_ref *refs, size_t n,
                           struct kh_buf *out) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        KH_CLEANUP_FREE char *labels = NULL;
        KH_CLEANUP_FREE const char **names = NULL;
        size_t held = 0;
        int r;

        labels = calloc(n ? n : 1, LABEL_MAX);
        names = calloc(n ? n : 1, sizeof(*names));
        if (!labels || !names)
                return -ENOMEM;
        r = session_get(&s);
        if (r < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                char *label = labels + held * LABEL_MAX;

                r = key_label(ks, refs[i].tenant, refs[i].purpose, refs[i].version, label);
                if (r == 0)
                        r = kh_p11_backup_has(s.p, label);
                if (r == -ENOENT)
                        continue; /* not in the token: nothing of it to need */
                if (r < 0)
                        return r;
                names[held++] = label;
        }
        return kh_p11_backup_meta_make(s.p, ks->prefix, names, held, out);
}

static int p11_backup_open(struct kh_keystore *base, const uint8_t *meta, size_t meta_len,
                           const uint8_t salt[static KH_BACKUP_SALT_LEN], struct kh_secret **ret,
                           char *detail, size_t detail_len) {
        struct kh_p11_ks *ks = p11_ks(base);
        KH_CLEANUP(session_put) struct session s = { .pool = ks->pool };
        int r;

        r = session_get(&s);
        if (r < 0)
                return r;
        return kh_p11_backup_open(s.p, ks->prefix, meta, meta_len, salt, ret, detail,
                                  detail_len);
}

const struct kh_keystore_ops kh_keystore_pkcs11_ops = {
        .name = "pkcs11",
        .caps = KH_KS_NON_EXTRACTABLE | KH_KS_SLOW_SIGN | KH_KS_REMOVABLE,
        .open = p11_open,
        .close = p11_close,
        .generate = p11_generate,
        .wrap = p11_wrap,
        .unwrap = p11_unwrap,
        .decrypt = p11_decrypt,
        .sign = p11_sign,
        .public_key = p11_public_key,
        .list = p11_list,
        .destroy = p11_destroy,
        .oaep = p11_oaep,
        .backup_key = p11_backup_key,
        .backup_meta = p11_backup_meta,
        .backup_open = p11_backup_open,
        .probe = p11_probe,
        .reconnect = p11_reconnect,
};
