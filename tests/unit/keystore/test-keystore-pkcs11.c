/* The pkcs11 key store on a real SoftHSM2 token that with-softhsm.sh makes for this run
 * ("kh-test", user PIN 5678): the conformance suite, then what is particular to a token
 * (the attributes of the keys and what the token refuses to give out, the OAEP digest
 * recorded per key, open errors, a second user of the module in the process).
 * Each case gets an empty store: the same token under a key label prefix of its own. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/errors.h"
#include "conformance.h"
#include "crypto/rsa.h"
#include "keystore/pkcs11/backup.h"
#include "keystore/pkcs11/module-internal.h"

struct fixture {
        const char *module, *token, *pin;
        char prefix[32];
        unsigned n;
        char pin_path[256];
        struct kh_config_keystore cfg;
};

static struct fixture fx;
static char driver_pkcs11[] = "pkcs11";

static const char *env_get(const char *name) {
        const char *v = getenv(name);

        if (!v || !*v) {
                fprintf(stderr, "%s is not set: run this test through with-softhsm.sh\n", name);
                exit(1);
        }
        return v;
}

/* A configuration for a new, empty store: a prefix no case used before. */
static struct kh_config_keystore *fresh_cfg(void) {
        (void) snprintf(fx.prefix, sizeof(fx.prefix), "t%u-", ++fx.n);
        fx.cfg = (struct kh_config_keystore) {
                .driver = driver_pkcs11,
                .module = (char *) (uintptr_t) fx.module,
                .token_label = (char *) (uintptr_t) fx.token,
                .pin = (char *) (uintptr_t) fx.pin,
                .key_label_prefix = fx.prefix,
                .rsa_bits = KH_KS_TEST_BITS,
        };
        return &fx.cfg;
}

static struct kh_keystore *open_ok(const struct kh_config_keystore *cfg) {
        struct kh_keystore *ks = NULL;
        char detail[256];

        assert_int_equal(kh_keystore_open_detail(cfg, &ks, detail, sizeof(detail)), 0);
        assert_string_equal(detail, "");
        return ks;
}

static int conf_open_empty(void *ctx, struct kh_keystore **ret) {
        (void) ctx;
        return kh_keystore_open(fresh_cfg(), ret);
}

static void conf_cleanup(void *ctx) {
        (void) ctx; /* the token goes with with-softhsm.sh's folder */
}

static int setup(void **state) {
        *state = open_ok(fresh_cfg());
        return 0;
}

static int teardown(void **state) {
        (void) kh_keystore_close(*state);
        return 0;
}

static struct kh_key_ref data_ref(const char *tenant, uint32_t version) {
        struct kh_key_ref ref = { .version = version, .purpose = KH_KEY_DATA };

        (void) snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
        return ref;
}

static void generate(struct kh_keystore *ks, const char *tenant, uint32_t version,
                     enum kh_key_purpose purpose) {
        const struct kh_key_spec spec = { tenant, version, KH_KS_TEST_BITS, purpose,
                                          KH_KEY_ALG_RSA };
        struct kh_key_ref ref;

        assert_int_equal(kh_keystore_generate(ks, &spec, &ref), 0);
}

/* A second session on the token, as another user of the module in this process would
 * have: kh_p11 internals give the function list. */
static struct kh_p11 *raw_open(void) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pin = NULL;
        struct kh_p11_open_args a = { .module_path = fx.module, .token_label = fx.token };
        struct kh_p11 *p = NULL;

        assert_int_equal(kh_secret_new_from(fx.pin, strlen(fx.pin), &pin), 0);
        a.pin = pin;
        assert_int_equal(kh_p11_open_ex(&a, &p, NULL, 0), 0);
        return p;
}

static CK_OBJECT_HANDLE raw_find(struct kh_p11 *p, CK_OBJECT_CLASS cls, const char *label) {
        CK_OBJECT_HANDLE h[2];
        size_t n = 0;

        assert_int_equal(kh_p11_find(p, cls, label, h, 2, &n), 0);
        assert_int_equal(n, 1);
        return h[0];
}

static CK_BBOOL raw_bool(struct kh_p11 *p, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE t) {
        CK_BBOOL v = 2;
        size_t len = 0;

        assert_int_equal(kh_p11_attr(p, h, t, &v, sizeof(v), &len), 0);
        assert_int_equal(len, sizeof(v));
        return v;
}

/* ---- the keys in the token ---- */

static void test_name_caps(void **state) {
        struct kh_keystore *ks = *state;

        assert_string_equal(kh_keystore_name(ks), "pkcs11");
        assert_int_equal(kh_keystore_caps(ks),
                         KH_KS_NON_EXTRACTABLE | KH_KS_SLOW_SIGN | KH_KS_REMOVABLE);
}

/* The backup key: derived in the token, the same for the same salt, another for another
 * salt, and under a secret key the token made and never gives out. */
static void test_backup_key(void **state) {
        struct kh_keystore *ks = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *k1 = NULL, *k1b = NULL, *k2 = NULL;
        uint8_t salt[KH_BACKUP_SALT_LEN], value[64];
        CK_ATTRIBUTE a = { CKA_VALUE, value, sizeof(value) };
        CK_OBJECT_HANDLE h, hs[4];
        struct kh_keystore *again;
        char label[64];
        size_t n = 0;

        memset(salt, 0x5a, sizeof(salt));
        assert_int_equal(kh_keystore_backup_key(ks, salt, &k1), 0);
        assert_int_equal(kh_secret_len(k1), 32);
        assert_int_equal(kh_keystore_backup_key(ks, salt, &k1b), 0);
        assert_true(kh_secret_equal(k1, k1b));
        salt[31] ^= 1;
        assert_int_equal(kh_keystore_backup_key(ks, salt, &k2), 0);
        assert_false(kh_secret_equal(k1, k2));

        /* another open of the store (another process) derives the same key: one object */
        salt[31] ^= 1;
        k1b = kh_secret_free(k1b);
        again = open_ok(&fx.cfg);
        assert_int_equal(kh_keystore_backup_key(again, salt, &k1b), 0);
        (void) kh_keystore_close(again);
        assert_true(kh_secret_equal(k1, k1b));

        p = raw_open();
        (void) snprintf(label, sizeof(label), "%s_server-backup-v1", fx.prefix);
        assert_int_equal(kh_p11_find(p, CKO_SECRET_KEY, label, hs, 4, &n), 0);
        assert_int_equal(n, 1);
        h = hs[0];
        assert_int_equal(raw_bool(p, h, CKA_TOKEN), CK_TRUE);
        assert_int_equal(raw_bool(p, h, CKA_PRIVATE), CK_TRUE);
        assert_int_equal(raw_bool(p, h, CKA_SENSITIVE), CK_TRUE);
        assert_int_equal(raw_bool(p, h, CKA_EXTRACTABLE), CK_FALSE);
        assert_int_equal(raw_bool(p, h, CKA_NEVER_EXTRACTABLE), CK_TRUE);
        assert_int_equal(raw_bool(p, h, CKA_LOCAL), CK_TRUE); /* made in the token */
        assert_int_equal(raw_bool(p, h, CKA_SIGN), CK_TRUE);
        assert_int_equal(p->f->C_GetAttributeValue(p->session, h, &a, 1), CKR_ATTRIBUTE_SENSITIVE);
        assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);

        /* the key is HMAC-SHA256("keyhold-backup:1" || salt) under that object, as the
         * token computes it for anyone holding the session: checked with a raw C_Sign */
        {
                CK_MECHANISM mech = { CKM_SHA256_HMAC, NULL, 0 };
                uint8_t in[16 + KH_BACKUP_SALT_LEN], mac[32];
                CK_ULONG mac_len = sizeof(mac);

                memcpy(in, "keyhold-backup:1", 16);
                memcpy(in + 16, salt, sizeof(salt));
                assert_int_equal(p->f->C_SignInit(p->session, &mech, h), CKR_OK);
                assert_int_equal(p->f->C_Sign(p->session, in, sizeof(in), mac, &mac_len), CKR_OK);
                assert_int_equal(mac_len, 32);
                assert_memory_equal(mac, kh_secret_bytes(k1), 32);
        }
}

/* The header meta names the token, the keys held and the backup key; opening checks each. */
static void test_backup_meta_and_open(void **state) {
        struct kh_keystore *ks = *state;
        KH_CLEANUP(kh_buf_freep) struct kh_buf meta = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *k = NULL, *back = NULL;
        KH_CLEANUP(kh_p11_backup_meta_freep) struct kh_p11_backup_meta *m = NULL;
        struct kh_key_ref refs[3] = { data_ref("acme", 1), data_ref("acme", 2),
                                      data_ref("acme", 1) };
        uint8_t salt[KH_BACKUP_SALT_LEN] = { 1, 2, 3 };
        struct kh_keystore *ks2;
        char detail[256], want[64];

        refs[2].purpose = KH_KEY_RECOVERY; /* not made: left out */
        generate(ks, "acme", 1, KH_KEY_DATA);
        generate(ks, "acme", 2, KH_KEY_DATA);
        assert_int_equal(kh_keystore_backup_key(ks, salt, &k), 0);
        kh_buf_init(&meta, 65536, false);
        assert_int_equal(kh_keystore_backup_meta(ks, refs, 3, &meta), 0);
        assert_int_equal(kh_p11_backup_meta_parse(meta.data, meta.len, &m), 0);
        assert_string_equal(m->token_label, fx.token);
        assert_true(strlen(m->token_serial) > 0);
        assert_string_equal(m->prefix, fx.prefix);
        assert_int_equal(m->n_keys, 3);
        (void) snprintf(want, sizeof(want), "%sacme-data-v2", fx.prefix);
        assert_string_equal(m->keys[1], want);
        (void) snprintf(want, sizeof(want), "%s_server-backup-v1", fx.prefix);
        assert_string_equal(m->keys[2], want);
        assert_string_equal(m->backup_key, want);
        assert_null(memmem(meta.data, meta.len, fx.pin, strlen(fx.pin)));

        assert_int_equal(kh_keystore_backup_open(ks, meta.data, meta.len, salt, &back, detail,
                                                 sizeof(detail)), 0);
        assert_true(kh_secret_equal(k, back));
        back = kh_secret_free(back);

        /* another prefix is another store */
        (void) snprintf(want, sizeof(want), "%sacme-data-v2", fx.prefix);
        ks2 = open_ok(fresh_cfg());
        assert_int_equal(kh_keystore_backup_open(ks2, meta.data, meta.len, salt, &back, detail,
                                                 sizeof(detail)), -EMEDIUMTYPE);
        (void) kh_keystore_close(ks2);

        /* a key gone from the token: named */
        assert_int_equal(kh_keystore_destroy(ks, &refs[1]), 0);
        assert_int_equal(kh_keystore_backup_open(ks, meta.data, meta.len, salt, &back, detail,
                                                 sizeof(detail)), -ENOKEY);
        assert_null(back);
        assert_non_null(strstr(detail, want));

        /* a damaged meta */
        meta.data[0] = '[';
        assert_int_equal(kh_keystore_backup_open(ks, meta.data, meta.len, salt, &back, detail,
                                                 sizeof(detail)), -EBADMSG);
}

static void test_private_key_attributes_and_refusals(void **state) {
        struct kh_keystore *ks = *state;
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = NULL;
        CK_OBJECT_HANDLE priv, pub, aes = 0;
        CK_MECHANISM aes_gen = { CKM_AES_KEY_GEN, NULL, 0 };
        CK_MECHANISM wrap_mech = { CKM_AES_KEY_WRAP_PAD, NULL, 0 };
        CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
        CK_ULONG aes_len = 32;
        CK_ATTRIBUTE aes_tmpl[] = {
                { CKA_TOKEN, &no, sizeof(no) },
                { CKA_WRAP, &yes, sizeof(yes) },
                { CKA_VALUE_LEN, &aes_len, sizeof(aes_len) },
        };
        uint8_t buf[4096];
        CK_ULONG buf_len = sizeof(buf);
        CK_ATTRIBUTE d = { CKA_PRIVATE_EXPONENT, buf, sizeof(buf) };
        char label[64];
        size_t len;
        CK_RV rv;

        generate(ks, "acme", 1, KH_KEY_DATA);
        generate(ks, "acme", 1, KH_KEY_RECOVERY);
        assert_int_equal(kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 1, 0, KH_KEY_AUDIT, KH_KEY_ALG_EC_P256 }, &(struct kh_key_ref) { 0 }), 0);
        p = raw_open(); /* the store holds the module and the login: shared */

        static const char *const purposes[] = { "data", "recovery", "audit" };
        for (size_t i = 0; i < KH_ELEMENTSOF(purposes); i++) {
                (void) snprintf(label, sizeof(label), "%sacme-%s-v1", fx.prefix, purposes[i]);
                priv = raw_find(p, CKO_PRIVATE_KEY, label);
                pub = raw_find(p, CKO_PUBLIC_KEY, label);
                assert_int_equal(raw_bool(p, priv, CKA_TOKEN), CK_TRUE);
                assert_int_equal(raw_bool(p, priv, CKA_PRIVATE), CK_TRUE);
                assert_int_equal(raw_bool(p, priv, CKA_SENSITIVE), CK_TRUE);
                assert_int_equal(raw_bool(p, priv, CKA_EXTRACTABLE), CK_FALSE);
                assert_int_equal(raw_bool(p, priv, CKA_ALWAYS_SENSITIVE), CK_TRUE);
                assert_int_equal(raw_bool(p, priv, CKA_NEVER_EXTRACTABLE), CK_TRUE);
                assert_int_equal(raw_bool(p, priv, CKA_LOCAL), CK_TRUE); /* made in the token */
                assert_int_equal(raw_bool(p, pub, CKA_TOKEN), CK_TRUE);

                /* the private value is not readable ... */
                d.ulValueLen = sizeof(buf);
                d.type = i < 2 ? CKA_PRIVATE_EXPONENT : CKA_VALUE;
                rv = p->f->C_GetAttributeValue(p->session, priv, &d, 1);
                assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
                assert_int_equal(d.ulValueLen, CK_UNAVAILABLE_INFORMATION);
                if (i < 2) {
                        d.type = CKA_PRIME_1;
                        d.ulValueLen = sizeof(buf);
                        assert_int_equal(p->f->C_GetAttributeValue(p->session, priv, &d, 1),
                                         CKR_ATTRIBUTE_SENSITIVE);
                }
                /* ... and does not leave the token wrapped either */
                if (!aes)
                        assert_int_equal(p->f->C_GenerateKey(p->session, &aes_gen, aes_tmpl,
                                                             KH_ELEMENTSOF(aes_tmpl), &aes),
                                         CKR_OK);
                buf_len = sizeof(buf);
                rv = p->f->C_WrapKey(p->session, &wrap_mech, aes, priv, buf, &buf_len);
                assert_true(rv == CKR_KEY_UNEXTRACTABLE || rv == CKR_KEY_NOT_WRAPPABLE);
        }

        /* a tenant key's CKA_ID records its OAEP digest, as kh_keystore_oaep() says */
        (void) snprintf(label, sizeof(label), "%sacme-data-v1", fx.prefix);
        pub = raw_find(p, CKO_PUBLIC_KEY, label);
        assert_int_equal(kh_p11_attr(p, pub, CKA_ID, buf, sizeof(buf), &len), 0);
        {
                enum kh_oaep_md md;
                char want[96];
                const struct kh_key_ref ref = data_ref("acme", 1);

                assert_int_equal(kh_keystore_oaep(ks, &ref, &md), 0);
                (void) snprintf(want, sizeof(want), "%s;oaep=%s", label,
                                md == KH_OAEP_SHA1 ? "sha1" : "sha256");
                assert_int_equal(len, strlen(want));
                assert_memory_equal(buf, want, len);
        }
}

/* The OAEP digest is the token's best: SHA-256 where it decrypts with it, else SHA-1. A
 * DEK wrapped with the other digest does not unwrap. */
static void test_oaep_is_what_the_token_decrypts(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = data_ref("acme", 1), ref2 = data_ref("acme", 2);
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf ct = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_secret *out = NULL;
        enum kh_oaep_md md, md2, other;
        CK_MECHANISM_INFO info;
        int r;

        generate(ks, "acme", 1, KH_KEY_DATA);
        generate(ks, "acme", 2, KH_KEY_DATA);
        assert_int_equal(kh_keystore_oaep(ks, &ref, &md), 0);
        assert_int_equal(kh_keystore_oaep(ks, &ref2, &md2), 0);
        assert_int_equal(md, md2);
        print_message("token OAEP digest: %s\n", md == KH_OAEP_SHA1 ? "SHA-1" : "SHA-256");

        assert_int_equal(kh_secret_new_from("0123456789abcdef0123456789abcdef", 32, &dek), 0);
        assert_int_equal(kh_keystore_public_key(ks, &ref, &pub), 0);
        other = md == KH_OAEP_SHA1 ? KH_OAEP_SHA256 : KH_OAEP_SHA1;
        kh_buf_init(&ct, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_rsa_oaep_encrypt_md(pub, other, dek, &ct), 0);
        r = kh_keystore_unwrap(ks, &ref, ct.data, ct.len, &out);
        assert_true(r == -KH_E_INTEGRITY || r == -EOPNOTSUPP);
        assert_null(out);

        /* the key wraps what it unwraps, and the store still works after the refusal */
        kh_buf_reset(&ct);
        assert_int_equal(kh_keystore_wrap(ks, &ref, dek, &ct), 0);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, ct.data, ct.len, &out), 0);
        assert_true(kh_secret_equal(out, dek));
        out = kh_secret_free(out);

        /* the mechanism is there at all (the open checks it) */
        {
                KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = raw_open();
                assert_int_equal(p->f->C_GetMechanismInfo(p->slot, CKM_RSA_PKCS_OAEP, &info),
                                 CKR_OK);
        }
}

static void test_recovery_decrypt(void **state) {
        struct kh_keystore *ks = *state;
        struct kh_key_ref ref = data_ref("acme", 1);
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf ct = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *uk = NULL;
        struct kh_secret *out = NULL;
        int r;

        ref.purpose = KH_KEY_RECOVERY;
        generate(ks, "acme", 1, KH_KEY_RECOVERY);
        assert_int_equal(kh_keystore_public_key(ks, &ref, &pub), 0);
        assert_int_equal(kh_secret_new_from("a user key of sixty-four bytes, as Bitwarden's are!!"
                                            "............",
                                            64, &uk),
                         0);
        /* EncString type 4: SHA-1, what Bitwarden clients send */
        kh_buf_init(&ct, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_rsa_oaep_encrypt_md(pub, KH_OAEP_SHA1, uk, &ct), 0);
        assert_int_equal(kh_keystore_decrypt(ks, &ref, KH_OAEP_SHA1, ct.data, ct.len, &out), 0);
        assert_true(kh_secret_equal(out, uk));
        out = kh_secret_free(out);
        ct.data[10] ^= 1;
        assert_int_equal(kh_keystore_decrypt(ks, &ref, KH_OAEP_SHA1, ct.data, ct.len, &out),
                         -KH_E_INTEGRITY);
        /* type 3 (SHA-256): decrypts where the token can, else "not supported" */
        kh_buf_reset(&ct);
        assert_int_equal(kh_rsa_oaep_encrypt_md(pub, KH_OAEP_SHA256, uk, &ct), 0);
        r = kh_keystore_decrypt(ks, &ref, KH_OAEP_SHA256, ct.data, ct.len, &out);
        assert_true(r == 0 || r == -EOPNOTSUPP);
        if (r == 0)
                assert_true(kh_secret_equal(out, uk));
        out = kh_secret_free(out);
}

static int count(const struct kh_key_ref *ref, void *userdata) {
        (void) ref;
        (*(size_t *) userdata)++;
        return 0;
}

static void test_destroy_and_dashed_tenants(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref v1 = data_ref("acme", 1), v2 = data_ref("acme", 2);
        struct kh_key_ref audit = data_ref("acme", 1);
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = NULL;
        EVP_PKEY *pub = NULL;
        CK_OBJECT_HANDLE h[2];
        char label[64];
        size_t n = 0;

        generate(ks, "acme", 1, KH_KEY_DATA);
        generate(ks, "acme", 2, KH_KEY_DATA);
        generate(ks, "acme-data", 1, KH_KEY_DATA); /* "t<N>-acme-data-data-v1" */
        generate(ks, "acme-data-v", 3, KH_KEY_DATA);
        assert_int_equal(kh_keystore_list(ks, "acme", count, &n), 0);
        assert_int_equal(n, 2);
        n = 0;
        assert_int_equal(kh_keystore_list(ks, "acme-data", count, &n), 0);
        assert_int_equal(n, 1);

        audit.purpose = KH_KEY_AUDIT;
        assert_int_equal(kh_keystore_destroy(ks, &audit), -EINVAL);
        assert_int_equal(kh_keystore_destroy(ks, &v1), 0);
        assert_int_equal(kh_keystore_destroy(ks, &v1), -ENOENT);
        assert_int_equal(kh_keystore_public_key(ks, &v1, &pub), -ENOENT);
        n = 0;
        assert_int_equal(kh_keystore_list(ks, "acme", count, &n), 0);
        assert_int_equal(n, 1);
        assert_int_equal(kh_keystore_public_key(ks, &v2, &pub), 0);
        EVP_PKEY_free(pub);

        /* both halves are gone from the token */
        p = raw_open();
        (void) snprintf(label, sizeof(label), "%sacme-data-v1", fx.prefix);
        assert_int_equal(kh_p11_find(p, CKO_PRIVATE_KEY, label, h, 2, &n), 0);
        assert_int_equal(n, 0);
        assert_int_equal(kh_p11_find(p, CKO_PUBLIC_KEY, label, h, 2, &n), 0);
        assert_int_equal(n, 0);
}

/* Keys persist in the token: another open (the same prefix) sees them. */
static void test_reopen_keeps_keys(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = data_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL, *out = NULL;
        struct kh_keystore *again;

        generate(ks, "acme", 1, KH_KEY_DATA);
        assert_int_equal(kh_secret_new_from("0123456789abcdef0123456789abcdef", 32, &dek), 0);
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_keystore_wrap(ks, &ref, dek, &wrapped), 0);
        *state = kh_keystore_close(ks);

        again = open_ok(&fx.cfg);
        *state = again;
        assert_int_equal(kh_keystore_unwrap(again, &ref, wrapped.data, wrapped.len, &out), 0);
        assert_true(kh_secret_equal(out, dek));
        assert_int_equal(kh_keystore_generate(again, &(struct kh_key_spec) { "acme", 1, KH_KS_TEST_BITS, KH_KEY_DATA, KH_KEY_ALG_RSA }, &(struct kh_key_ref) { 0 }), -EEXIST);
}

/* ---- open ---- */

static void open_fails(const struct kh_config_keystore *cfg, int want, const char *detail_has) {
        struct kh_keystore *ks = NULL;
        char detail[256];

        assert_int_equal(kh_keystore_open_detail(cfg, &ks, detail, sizeof(detail)), want);
        assert_null(ks);
        if (detail_has && !strstr(detail, detail_has))
                fail_msg("detail \"%s\" does not name \"%s\"", detail, detail_has);
        assert_null(strstr(detail, fx.pin)); /* never the PIN */
}

static void test_open_errors(void **state) {
        struct kh_config_keystore cfg;
        char wrong[] = "0000", missing_token[] = "no-such-token",
             missing_module[] = "/nonexistent/libpkcs11.so", libc[] = "libc.so.6";

        (void) state;
        cfg = *fresh_cfg();
        cfg.pin = wrong;
        open_fails(&cfg, -KH_E_PKCS11_PIN, "C_Login: CKR_PIN_INCORRECT");

        cfg = *fresh_cfg();
        cfg.token_label = missing_token;
        open_fails(&cfg, -KH_E_PKCS11_TOKEN, "no token with this label");

        cfg = *fresh_cfg();
        cfg.token_label = NULL;
        cfg.has_slot = true;
        cfg.slot = 4000000000u;
        open_fails(&cfg, -KH_E_PKCS11_TOKEN, "no token in a slot with this number");

        cfg = *fresh_cfg();
        cfg.module = missing_module;
        open_fails(&cfg, -KH_E_PKCS11_MODULE, "dlopen");
        cfg.module = libc;
        open_fails(&cfg, -KH_E_PKCS11_MODULE, "C_GetFunctionList");

        cfg = *fresh_cfg();
        cfg.pin = NULL;
        open_fails(&cfg, -EINVAL, "KEYHOLD_KEYSTORE_PIN");
        cfg = *fresh_cfg();
        cfg.module = NULL;
        open_fails(&cfg, -EINVAL, NULL);
}

static void test_open_by_slot_and_pin_file(void **state) {
        KH_CLEANUP(kh_p11_freep) struct kh_p11 *p = raw_open();
        struct kh_config_keystore cfg = *fresh_cfg();
        char pin_line[64];
        struct kh_keystore *ks;
        int fd;

        (void) state;
        (void) snprintf(fx.pin_path, sizeof(fx.pin_path), "%s/kh-pin-XXXXXX",
                        getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        fd = mkstemp(fx.pin_path);
        assert_true(fd >= 0);
        (void) snprintf(pin_line, sizeof(pin_line), "%s\n", fx.pin);
        assert_int_equal(write(fd, pin_line, strlen(pin_line)), (ssize_t) strlen(pin_line));
        assert_int_equal(close(fd), 0);

        cfg.token_label = NULL;
        cfg.has_slot = true;
        cfg.slot = (unsigned) p->slot;
        cfg.pin = NULL;
        cfg.pin_file = fx.pin_path;
        p = kh_p11_free(p); /* nothing else holds the login now: the PIN is checked */
        ks = open_ok(&cfg);
        generate(ks, "acme", 1, KH_KEY_DATA);
        (void) kh_keystore_close(ks);
        assert_int_equal(unlink(fx.pin_path), 0);
}

/* The Key Connector importer's kh_p11 and the key store on one module in one process:
 * either may go first, and freeing one leaves the other working. */
static void test_importer_and_store_share_the_module(void **state) {
        struct kh_keystore *ks = *state;
        const char *kc_key = env_get("KH_P11_KEY");
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pin = NULL;
        const struct kh_key_ref ref = data_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_secret *out = NULL;
        struct kh_p11 *importer = NULL;

        assert_int_equal(kh_secret_new_from(fx.pin, strlen(fx.pin), &pin), 0);
        assert_int_equal(kh_secret_new_from("0123456789abcdef0123456789abcdef", 32, &dek), 0);
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);

        /* store first, importer second, importer freed first */
        assert_int_equal(kh_p11_open(fx.module, fx.token, pin, &importer, NULL, 0), 0);
        assert_int_equal(kh_p11_key_find(importer, kc_key), 0);
        importer = kh_p11_free(importer);
        generate(ks, "acme", 1, KH_KEY_DATA);
        assert_int_equal(kh_keystore_wrap(ks, &ref, dek, &wrapped), 0);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &out), 0);
        out = kh_secret_free(out);

        /* importer first, store freed first: the importer keeps its session and login */
        assert_int_equal(kh_p11_open(fx.module, fx.token, pin, &importer, NULL, 0), 0);
        *state = kh_keystore_close(ks);
        assert_int_equal(kh_p11_key_find(importer, kc_key), 0);
        ks = open_ok(&fx.cfg);
        *state = ks;
        importer = kh_p11_free(importer);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &out), 0);
        assert_true(kh_secret_equal(out, dek));
        out = kh_secret_free(out);
}

/* The store's session goes from under it (another user of the module in this process closes
 * every session on the token, as a token that restarted would): the next operation answers
 * -KH_E_KEYSTORE_UNAVAILABLE and marks the store lost; from then on every operation answers
 * so at once, the probe names the device's answer, and a reconnect (new session, login with
 * the PIN the store kept) brings every key back, found again by its label. */
static void test_lost_session_then_reconnect(void **state) {
        struct kh_keystore *ks = *state;
        const struct kh_key_ref ref = data_ref("acme", 1);
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 }, sig = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL, *out = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        const uint8_t digest[32] = { 1 };
        struct kh_p11 *raw;
        char detail[256];

        assert_int_equal(kh_secret_new_from("0123456789abcdef0123456789abcdef", 32, &dek), 0);
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        kh_buf_init(&sig, 1024, false);
        generate(ks, "acme", 1, KH_KEY_DATA);
        assert_int_equal(kh_keystore_wrap(ks, &ref, dek, &wrapped), 0);

        raw = raw_open();
        assert_int_equal(raw->f->C_CloseAllSessions(raw->slot), CKR_OK);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &out),
                         -KH_E_KEYSTORE_UNAVAILABLE);
        assert_null(out);
        assert_true(kh_keystore_is_lost(ks));
        assert_int_equal(kh_keystore_public_key(ks, &ref, &pub), -KH_E_KEYSTORE_UNAVAILABLE);
        assert_int_equal(kh_keystore_sign(ks, &ref, digest, sizeof(digest), &sig),
                         -KH_E_KEYSTORE_UNAVAILABLE);
        assert_int_equal(kh_keystore_probe(ks, detail, sizeof(detail)), -KH_E_KEYSTORE_UNAVAILABLE);
        assert_string_equal(detail, "C_GetSessionInfo: CKR_SESSION_HANDLE_INVALID");
        raw = kh_p11_free(raw);

        assert_int_equal(kh_keystore_reconnect(ks, detail, sizeof(detail)), 0);
        assert_false(kh_keystore_is_lost(ks));
        assert_int_equal(kh_keystore_probe(ks, detail, sizeof(detail)), 0);
        assert_int_equal(kh_keystore_unwrap(ks, &ref, wrapped.data, wrapped.len, &out), 0);
        assert_true(kh_secret_equal(out, dek));
        assert_int_equal(kh_keystore_sign(ks, &ref, digest, sizeof(digest), &sig), 0);
        generate(ks, "acme", 2, KH_KEY_DATA);
}

struct unwraps {
        struct kh_keystore *ks;
        struct kh_key_ref ref;
        const struct kh_buf *wrapped;
        const struct kh_secret *dek;
        atomic_uint failed;
};

/* No cmocka assertion off the test's thread: failures are counted. */
static void *unwrap_thread(void *userdata) {
        struct unwraps *u = userdata;

        for (unsigned i = 0; i < 15; i++) {
                struct kh_secret *out = NULL;

                if (kh_keystore_unwrap(u->ks, &u->ref, u->wrapped->data, u->wrapped->len,
                                       &out) < 0 ||
                    !kh_secret_equal(out, u->dek))
                        atomic_fetch_add(&u->failed, 1);
                out = kh_secret_free(out);
        }
        return NULL;
}

/* 4 threads unwrapping at once; returns how many unwraps failed. */
static unsigned unwrap_at_once(struct unwraps *u) {
        pthread_t t[4];

        atomic_store(&u->failed, 0);
        for (size_t i = 0; i < KH_ELEMENTSOF(t); i++)
                assert_int_equal(pthread_create(&t[i], NULL, unwrap_thread, u), 0);
        for (size_t i = 0; i < KH_ELEMENTSOF(t); i++)
                assert_int_equal(pthread_join(t[i], NULL), 0);
        return atomic_load(&u->failed);
}

/* [keystore] threads bounds the sessions, not the threads: with one session, four threads
 * take turns (each waits for it) and all unwrap right; over KH_P11_POOL_SIZE_MAX is refused
 * at open. With several sessions open (four threads at once), every one of them is lost
 * with the token's sessions, and a reconnect brings the pool back. */
static void test_session_pool(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        struct kh_config_keystore *cfg = fresh_cfg();
        struct unwraps u = { .ref = data_ref("acme", 1), .wrapped = &wrapped };
        struct kh_keystore *ks = NULL;
        struct kh_secret *out = NULL;
        struct kh_p11 *raw;

        (void) state;
        assert_int_equal(kh_secret_new_from("0123456789abcdef0123456789abcdef", 32, &dek), 0);
        u.dek = dek;
        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        cfg->threads = 65;
        assert_int_equal(kh_keystore_open(cfg, &ks), -EINVAL);

        cfg->threads = 1;
        ks = open_ok(cfg);
        u.ks = ks;
        generate(ks, "acme", 1, KH_KEY_DATA);
        assert_int_equal(kh_keystore_wrap(ks, &u.ref, dek, &wrapped), 0);
        assert_int_equal(unwrap_at_once(&u), 0);
        ks = kh_keystore_close(ks);

        cfg->threads = 4;
        ks = open_ok(cfg);
        u.ks = ks;
        assert_int_equal(unwrap_at_once(&u), 0);
        raw = raw_open();
        assert_int_equal(raw->f->C_CloseAllSessions(raw->slot), CKR_OK);
        raw = kh_p11_free(raw);
        assert_int_equal(kh_keystore_unwrap(ks, &u.ref, wrapped.data, wrapped.len, &out),
                         -KH_E_KEYSTORE_UNAVAILABLE);
        assert_int_equal(kh_keystore_reconnect(ks, NULL, 0), 0);
        assert_int_equal(unwrap_at_once(&u), 0);
        assert_false(kh_keystore_is_lost(ks));
        (void) kh_keystore_close(ks);
}

int main(void) {
        const struct kh_ks_conformance conf = {
                .name = "keystore-pkcs11-conformance",
                .open_empty = conf_open_empty,
                .cleanup = conf_cleanup,
        };
#define CASE(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                CASE(test_name_caps),
                CASE(test_backup_key),
                CASE(test_backup_meta_and_open),
                CASE(test_private_key_attributes_and_refusals),
                CASE(test_oaep_is_what_the_token_decrypts),
                CASE(test_recovery_decrypt),
                CASE(test_destroy_and_dashed_tenants),
                CASE(test_reopen_keeps_keys),
                cmocka_unit_test(test_open_errors),
                cmocka_unit_test(test_open_by_slot_and_pin_file),
                CASE(test_importer_and_store_share_the_module),
                CASE(test_lost_session_then_reconnect),
                cmocka_unit_test(test_session_pool),
        };
#undef CASE
        int failed;

        fx.module = env_get("KH_P11_MODULE");
        fx.token = env_get("KH_P11_TOKEN");
        fx.pin = env_get("KH_P11_PIN");
        failed = kh_ks_conformance_run(&conf);
        return failed + cmocka_run_group_tests_name("keystore-pkcs11", tests, NULL, NULL);
}
