/* Backups bound to a PKCS#11 token: the backup key made and used inside the token, and the
 * header meta that names what a backup needs from the token (backup.h). */
#include "keystore/pkcs11/backup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/errors.h"
#include "keystore/pkcs11/labels.h"
#include "keystore/pkcs11/module-internal.h"

#define BACKUP_PURPOSE "backup"
#define BACKUP_VERSION 1
#define BACKUP_KEY_BYTES 32
#define BACKUP_INFO "keyhold-backup:1"
#define CREATE_ROUNDS 4 /* a creator that lost a race looks again this often */
#define DUPLICATES_MAX 4

static int backup_label(const char *prefix, char label[static KH_P11_LABEL_MAX]) {
        return kh_p11_label(prefix, "", BACKUP_PURPOSE, BACKUP_VERSION, label);
}

static int mechanism(struct kh_p11 *p, CK_MECHANISM_TYPE m, CK_FLAGS flags, const char *what,
                     char *detail, size_t detail_len) {
        int r = kh_p11_mechanism_has(p, m, flags);

        if (r == -KH_E_PKCS11_MECHANISM)
                kh_p11_detail_set(detail, detail_len, "C_GetMechanismInfo", what);
        else if (r < 0)
                kh_p11_detail_set(detail, detail_len, "C_GetMechanismInfo", "failed");
        return r;
}

/* The generic secret labelled label, made inside the token. */
static int generate(struct kh_p11 *p, const char *label, CK_OBJECT_HANDLE *ret) {
        CK_MECHANISM mech = { CKM_GENERIC_SECRET_KEY_GEN, NULL, 0 };
        CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
        CK_KEY_TYPE type = CKK_GENERIC_SECRET;
        CK_ULONG len = BACKUP_KEY_BYTES;
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        void *lbl = (void *) (uintptr_t) label;
        CK_ATTRIBUTE tmpl[] = {
                { CKA_CLASS, &cls, sizeof(cls) },
                { CKA_KEY_TYPE, &type, sizeof(type) },
                { CKA_VALUE_LEN, &len, sizeof(len) },
                { CKA_TOKEN, &yes, sizeof(yes) },
                { CKA_PRIVATE, &yes, sizeof(yes) },
                { CKA_SENSITIVE, &yes, sizeof(yes) },
                { CKA_EXTRACTABLE, &no, sizeof(no) },
                { CKA_SIGN, &yes, sizeof(yes) },
                { CKA_VERIFY, &no, sizeof(no) },
                { CKA_ENCRYPT, &no, sizeof(no) },
                { CKA_DECRYPT, &no, sizeof(no) },
                { CKA_WRAP, &no, sizeof(no) },
                { CKA_UNWRAP, &no, sizeof(no) },
                { CKA_DERIVE, &no, sizeof(no) },
                { CKA_LABEL, lbl, strlen(label) },
                { CKA_ID, lbl, strlen(label) },
        };
        CK_RV rv = p->f->C_GenerateKey(p->session, &mech, tmpl, KH_ELEMENTSOF(tmpl), ret);

        if (rv == CKR_DEVICE_MEMORY)
                return -ENOMEM;
        if (rv == CKR_MECHANISM_INVALID || rv == CKR_TEMPLATE_INCONSISTENT ||
            rv == CKR_ATTRIBUTE_VALUE_INVALID)
                return -KH_E_PKCS11_MECHANISM;
        return rv == CKR_OK ? 0 : kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
}

/* The one backup key: found, or (create) made. */
static int key_get(struct kh_p11 *p, const char *label, bool create, CK_OBJECT_HANDLE *ret) {
        CK_OBJECT_HANDLE hs[DUPLICATES_MAX], mine;
        size_t n = 0;
        int r;

        for (unsigned round = 0; round < CREATE_ROUNDS; round++) {
                r = kh_p11_find(p, CKO_SECRET_KEY, label, hs, KH_ELEMENTSOF(hs), &n);
                if (r < 0)
                        return r;
                if (n == 1) {
                        *ret = hs[0];
                        return 0;
                }
                if (n > 1)
                        return -KH_E_INTEGRITY; /* two creators raced and both kept theirs */
                if (!create)
                        return -ENOENT;
                r = generate(p, label, &mine);
                if (r < 0)
                        return r;
                r = kh_p11_find(p, CKO_SECRET_KEY, label, hs, KH_ELEMENTSOF(hs), &n);
                if (r < 0)
                        return r;
                if (n == 1) {
                        *ret = mine;
                        return 0;
                }
                /* another process made one meanwhile: ours goes, and we look again */
                (void) kh_p11_destroy(p, mine);
        }
        return -KH_E_PKCS11_MODULE;
}

/* HMAC-SHA256 by the token under h of BACKUP_INFO || salt. */
static int hmac(struct kh_p11 *p, CK_OBJECT_HANDLE h, const uint8_t salt[KH_BACKUP_SALT_LEN],
                struct kh_secret **ret) {
        CK_MECHANISM mech = { CKM_SHA256_HMAC, NULL, 0 };
        uint8_t in[sizeof(BACKUP_INFO) - 1 + KH_BACKUP_SALT_LEN], out[BACKUP_KEY_BYTES];
        CK_ULONG out_len = sizeof(out);
        CK_RV rv;
        int r;

        memcpy(in, BACKUP_INFO, sizeof(BACKUP_INFO) - 1);
        memcpy(in + sizeof(BACKUP_INFO) - 1, salt, KH_BACKUP_SALT_LEN);
        rv = p->f->C_SignInit(p->session, &mech, h);
        if (rv == CKR_MECHANISM_INVALID)
                return -KH_E_PKCS11_MECHANISM;
        if (rv == CKR_KEY_FUNCTION_NOT_PERMITTED || rv == CKR_KEY_TYPE_INCONSISTENT)
                return -KH_E_INTEGRITY;
        if (rv != CKR_OK)
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        /* out fits the MAC: one call, and the operation always ends here */
        rv = p->f->C_Sign(p->session, in, sizeof(in), out, &out_len);
        if (rv != CKR_OK)
                r = kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        else if (out_len != sizeof(out))
                r = -KH_E_PKCS11_MODULE;
        else
                r = kh_secret_new_from(out, sizeof(out), ret);
        OPENSSL_cleanse(out, sizeof(out));
        return r;
}

int kh_p11_backup_key(struct kh_p11 *p, const char *prefix, bool create,
                      const uint8_t salt[static KH_BACKUP_SALT_LEN], struct kh_secret **ret,
                      char *detail, size_t detail_len) {
        char label[KH_P11_LABEL_MAX];
        CK_OBJECT_HANDLE h;
        int r;

        r = backup_label(prefix, label);
        if (r < 0)
                return r;
        r = mechanism(p, CKM_SHA256_HMAC, CKF_SIGN,
                      "the token does not offer CKM_SHA256_HMAC (deriving backup keys)", detail,
                      detail_len);
        if (r == 0 && create)
                r = mechanism(p, CKM_GENERIC_SECRET_KEY_GEN, CKF_GENERATE,
                              "the token does not offer CKM_GENERIC_SECRET_KEY_GEN (making the "
                              "backup key)",
                              detail, detail_len);
        if (r < 0)
                return r;
        r = key_get(p, label, create, &h);
        if (r < 0)
                return r;
        return hmac(p, h, salt, ret);
}

int kh_p11_backup_has(struct kh_p11 *p, const char *label) {
        static const CK_OBJECT_CLASS classes[] = { CKO_PRIVATE_KEY, CKO_SECRET_KEY };
        CK_OBJECT_HANDLE h;

        for (size_t i = 0; i < KH_ELEMENTSOF(classes); i++) {
                size_t n = 0;
                int r = kh_p11_find(p, classes[i], label, &h, 1, &n);

                if (r < 0)
                        return r;
                if (n > 0)
                        return 0;
        }
        return -ENOENT;
}

/* A blank-padded CK_TOKEN_INFO field as a string. */
static json_t *padded(const CK_UTF8CHAR *s, size_t n) {
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\0'))
                n--;
        return json_stringn((const char *) s, n);
}

int kh_p11_backup_meta_make(struct kh_p11 *p, const char *prefix, const char *const *labels,
                            size_t n, struct kh_buf *out) {
        json_auto_t *m = NULL, *keys = json_array();
        KH_CLEANUP_FREE char *text = NULL;
        char label[KH_P11_LABEL_MAX];
        CK_TOKEN_INFO info;
        CK_RV rv;
        int r;

        r = backup_label(prefix, label);
        if (r < 0)
                return r;
        rv = p->f->C_GetTokenInfo(p->slot, &info);
        if (rv != CKR_OK)
                return kh_p11_rv_error(rv, -KH_E_PKCS11_MODULE);
        if (!keys)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (json_array_append_new(keys, json_string(labels[i])) < 0)
                        return -ENOMEM;
        if (json_array_append_new(keys, json_string(label)) < 0)
                return -ENOMEM;
        m = json_pack("{si so so ss ss sO}", "pkcs11_meta", KH_P11_BACKUP_META_VERSION,
                      "token_label", padded(info.label, sizeof(info.label)), "token_serial",
                      padded(info.serialNumber, sizeof(info.serialNumber)), "key_label_prefix",
                      prefix, "backup_key", label, "keys", keys);
        text = m ? json_dumps(m, JSON_COMPACT) : NULL;
        if (!text)
                return -ENOMEM;
        return kh_buf_append(out, text, strlen(text));
}

/* ---- the meta, parsed ---- */

struct kh_p11_backup_meta *kh_p11_backup_meta_free(struct kh_p11_backup_meta *m) {
        if (!m)
                return NULL;
        for (size_t i = 0; i < m->n_keys; i++)
                free(m->keys[i]);
        free(m->keys);
        free(m->token_label);
        free(m->token_serial);
        free(m->prefix);
        free(m->backup_key);
        free(m);
        return NULL;
}

/* A string member of at most KH_P11_LABEL_MAX - 1 bytes without NUL, copied. */
static int str_member(const json_t *o, const char *name, bool empty_ok, char **ret) {
        const json_t *v = json_object_get(o, name);
        size_t len;

        if (!json_is_string(v))
                return -EBADMSG;
        len = json_string_length(v);
        if ((!empty_ok && len == 0) || len >= KH_P11_LABEL_MAX ||
            strlen(json_string_value(v)) != len)
                return -EBADMSG;
        *ret = strdup(json_string_value(v));
        return *ret ? 0 : -ENOMEM;
}

int kh_p11_backup_meta_parse(const uint8_t *p, size_t n, struct kh_p11_backup_meta **ret) {
        static const char *const members[] = { "pkcs11_meta", "token_label", "token_serial",
                                                "key_label_prefix", "backup_key", "keys" };
        KH_CLEANUP(kh_p11_backup_meta_freep) struct kh_p11_backup_meta *m = NULL;
        json_auto_t *root = NULL;
        const json_t *keys, *v;
        bool has_backup = false;
        char want[KH_P11_LABEL_MAX];
        size_t i, prefix_len;
        int r;

        root = json_loadb((const char *) p, n, JSON_REJECT_DUPLICATES, NULL);
        if (!json_is_object(root) || json_object_size(root) != KH_ELEMENTSOF(members))
                return -EBADMSG;
        for (i = 0; i < KH_ELEMENTSOF(members); i++)
                if (!json_object_get(root, members[i]))
                        return -EBADMSG;
        v = json_object_get(root, "pkcs11_meta");
        if (!json_is_integer(v) || json_integer_value(v) != KH_P11_BACKUP_META_VERSION)
                return -EBADMSG;
        keys = json_object_get(root, "keys");
        if (!json_is_array(keys) || json_array_size(keys) == 0 ||
            json_array_size(keys) > KH_P11_BACKUP_KEYS_MAX)
                return -EBADMSG;
        m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->keys = calloc(json_array_size(keys), sizeof(*m->keys));
        if (!m->keys)
                return -ENOMEM;
        r = str_member(root, "token_label", true, &m->token_label);
        if (r == 0)
                r = str_member(root, "token_serial", true, &m->token_serial);
        if (r == 0)
                r = str_member(root, "key_label_prefix", false, &m->prefix);
        if (r == 0)
                r = str_member(root, "backup_key", false, &m->backup_key);
        if (r < 0)
                return r;
        prefix_len = strlen(m->prefix);
        if (prefix_len > KH_P11_LABEL_PREFIX_MAX || backup_label(m->prefix, want) < 0 ||
            strcmp(want, m->backup_key) != 0)
                return -EBADMSG;
        json_array_foreach(keys, i, v) {
                json_t *holder = json_pack("{sO}", "k", v);

                if (!holder)
                        return -ENOMEM;
                r = str_member(holder, "k", false, &m->keys[i]);
                json_decref(holder);
                if (r < 0)
                        return r;
                m->n_keys++;
                if (strncmp(m->keys[i], m->prefix, prefix_len) != 0)
                        return -EBADMSG;
                has_backup |= strcmp(m->keys[i], m->backup_key) == 0;
        }
        if (!has_backup)
                return -EBADMSG;
        *ret = KH_TAKE_PTR(m);
        return 0;
}

int kh_p11_backup_open(struct kh_p11 *p, const char *prefix, const uint8_t *meta,
                       size_t meta_len, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                       struct kh_secret **ret, char *detail, size_t detail_len) {
        KH_CLEANUP(kh_p11_backup_meta_freep) struct kh_p11_backup_meta *m = NULL;
        int r;

        r = kh_p11_backup_meta_parse(meta, meta_len, &m);
        if (r < 0)
                return r;
        if (strcmp(m->prefix, prefix) != 0) {
                kh_p11_detail_set(detail, detail_len, "[keystore] key_label_prefix",
                                  "is not the backup's");
                return -EMEDIUMTYPE;
        }
        for (size_t i = 0; i < m->n_keys; i++) {
                r = kh_p11_backup_has(p, m->keys[i]);
                if (r == -ENOENT) {
                        kh_p11_detail_set(detail, detail_len, "the token lacks", m->keys[i]);
                        return -ENOKEY;
                }
                if (r < 0)
                        return r;
        }
        return kh_p11_backup_key(p, prefix, false, salt, ret, detail, detail_len);
}
