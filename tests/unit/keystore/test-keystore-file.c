/* The file key store: the conformance suite, then what is particular to files (master key
 * and passphrase handling, on-disk format and binding, modes, concurrent creators). */
#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "conformance.h"
#include "crypto/aead.h"
#include "crypto/rsa.h"
#include "keystore/file/file-keystore.h"

/* Cheap argon2id for tests; production stores use kh_file_ks_kdf_default. */
static const struct kh_file_ks_kdf cheap_kdf = { .t_cost = 1, .m_kib = 8, .parallelism = 1 };

static const uint8_t master_bytes[32] = "keyhold-test-master-key-32-bytes";

static const uint8_t dek_bytes[32] = "0123456789abcdef0123456789abcdef";
static char driver_file[] = "file", driver_vault[] = "vault";

/* One temporary directory per case: <tmp>/store is the key store, <tmp>/master.key its key. */
struct fixture {
        char dir[256];
        char store[300];
        char key[300];
        char pass[32];
        struct kh_config_keystore cfg;
};

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) st;
        (void) flag;
        (void) ftw;
        return remove(path);
}

static void write_file(const char *path, const void *p, size_t n, mode_t mode) {
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, n), (ssize_t) n);
        assert_int_equal(fchmod(fd, mode), 0);
        assert_int_equal(close(fd), 0);
}

static size_t read_file(const char *path, uint8_t *buf, size_t max) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        assert_true(fd >= 0);
        n = read(fd, buf, max);
        assert_true(n >= 0 && (size_t) n < max);
        assert_int_equal(close(fd), 0);
        return (size_t) n;
}

static void fixture_init(struct fixture *f) {
        const char *tmp = getenv("TMPDIR");

        memset(f, 0, sizeof(*f));
        (void) snprintf(f->dir, sizeof(f->dir), "%s/kh-keystore-XXXXXX", tmp ? tmp : "/tmp");
        assert_non_null(mkdtemp(f->dir));
        (void) snprintf(f->store, sizeof(f->store), "%s/store", f->dir);
        (void) snprintf(f->key, sizeof(f->key), "%s/master.key", f->dir);
        write_file(f->key, master_bytes, sizeof(master_bytes), 0600);
        strcpy(f->pass, "correct horse battery staple");
        f->cfg.driver = driver_file;
        f->cfg.path = f->store;
        f->cfg.master_key_file = f->key;
        f->cfg.rsa_bits = 2048;
}

static void fixture_cleanup(struct fixture *f) {
        if (f->dir[0])
                (void) nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        f->dir[0] = '\0';
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        if (!f)
                return -1;
        fixture_init(f);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fixture_cleanup(*state);
        free(*state);
        return 0;
}

static void generate(struct kh_keystore *ks, const char *tenant, uint32_t version) {
        struct kh_key_ref ref;

        assert_int_equal(
                kh_keystore_generate(ks, &(struct kh_key_spec) { tenant, version, 2048, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref), 0);
}

static void wrap_dek(struct kh_keystore *ks, const struct kh_key_ref *ref, struct kh_buf *out) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;

        assert_int_equal(kh_secret_new_from(dek_bytes, sizeof(dek_bytes), &dek), 0);
        kh_buf_init(out, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_keystore_wrap(ks, ref, dek, out), 0);
}

static void assert_unwraps_to_dek(struct kh_keystore *ks, const struct kh_key_ref *ref,
                                  const struct kh_buf *wrapped) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;

        assert_int_equal(kh_keystore_unwrap(ks, ref, wrapped->data, wrapped->len, &dek), 0);
        assert_int_equal(kh_secret_len(dek), sizeof(dek_bytes));
        assert_memory_equal(kh_secret_bytes(dek), dek_bytes, sizeof(dek_bytes));
}

static void path_in_store(const struct fixture *f, const char *rel, char out[static 400]) {
        (void) snprintf(out, 400, "%s/%s", f->store, rel);
}

/* ---- conformance ---- */

static struct fixture conf_fixture;

static int conf_open_empty(void *ctx, struct kh_keystore **ret) {
        struct fixture *f = ctx;

        fixture_init(f);
        return kh_keystore_open(&f->cfg, ret);
}

static void conf_cleanup(void *ctx) {
        fixture_cleanup(ctx);
}

/* ---- file-specific cases ---- */

static void test_name_caps_and_layout(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        char p[400];
        struct stat st;

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        assert_string_equal(kh_keystore_name(ks), "file");
        assert_int_equal(kh_keystore_caps(ks), 0);
        generate(ks, "acme", 1);
        {
                /* a file store's tenant keys all wrap with OAEP SHA-256 */
                struct kh_key_ref ref = { .tenant = "acme", .version = 1 };
                enum kh_oaep_md md = KH_OAEP_SHA1;

                assert_int_equal(kh_keystore_oaep(ks, &ref, &md), 0);
                assert_int_equal(md, KH_OAEP_SHA256);
                ref.purpose = KH_KEY_AUDIT;
                assert_int_equal(kh_keystore_oaep(ks, &ref, &md), -EINVAL);
        }

        assert_int_equal(stat(f->store, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        path_in_store(f, "acme", p);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        path_in_store(f, "acme/v1.key", p);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        path_in_store(f, "keystore.meta", p);
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(st.st_size, 96);
}

static void test_reopen_keeps_keys(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref ref = { "acme", 1, KH_KEY_DATA };
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        struct kh_keystore *ks = NULL;

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        generate(ks, "acme", 1);
        wrap_dek(ks, &ref, &wrapped);
        ks = kh_keystore_close(ks);
        assert_null(ks);

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        assert_unwraps_to_dek(ks, &ref, &wrapped);
        ks = kh_keystore_close(ks);
}

static void test_wrong_master_key_is_eacces(void **state) {
        struct fixture *f = *state;
        struct kh_keystore *ks = NULL;
        uint8_t other[32];

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        ks = kh_keystore_close(ks);

        memcpy(other, master_bytes, sizeof(other));
        other[31] ^= 0x80;
        write_file(f->key, other, sizeof(other), 0600);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EACCES);
        assert_null(ks);

        /* A store made with a key file does not open with a passphrase either. */
        f->cfg.master_key_file = NULL;
        f->cfg.passphrase = f->pass;
        assert_int_equal(kh_keystore_file_open_kdf(&f->cfg, &cheap_kdf, &ks), -EACCES);
        assert_null(ks);
}

static void test_master_key_file_checks(void **state) {
        struct fixture *f = *state;
        struct kh_keystore *ks = NULL;
        char missing[300];

        write_file(f->key, master_bytes, sizeof(master_bytes), 0644);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EACCES);
        write_file(f->key, master_bytes, sizeof(master_bytes), 0640);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EACCES);
        write_file(f->key, master_bytes, sizeof(master_bytes), 0604);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EACCES);
        write_file(f->key, master_bytes, 31, 0600);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EINVAL);
        write_file(f->key, "0123456789abcdef0123456789abcdef\n", 33, 0600);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EINVAL);
        (void) snprintf(missing, sizeof(missing), "%s/none.key", f->dir);
        f->cfg.master_key_file = missing;
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -ENOENT);
        assert_null(ks);

        /* And the right file opens, so the refusals above were about the file. */
        write_file(f->key, master_bytes, sizeof(master_bytes), 0400);
        f->cfg.master_key_file = f->key;
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        ks = kh_keystore_close(ks);
}

static void test_bad_config_is_einval(void **state) {
        struct fixture *f = *state;
        struct kh_keystore *ks = NULL;
        struct kh_config_keystore cfg = f->cfg;
        const struct kh_file_ks_kdf zero_t_kdf = { .t_cost = 0, .m_kib = 8, .parallelism = 1 };
        char file_path[300];

        cfg.driver = driver_vault;
        assert_int_equal(kh_keystore_open(&cfg, &ks), -EINVAL);
        cfg = f->cfg;
        cfg.driver = NULL;
        assert_int_equal(kh_keystore_open(&cfg, &ks), -EINVAL);
        cfg = f->cfg;
        cfg.passphrase = f->pass; /* both */
        assert_int_equal(kh_keystore_open(&cfg, &ks), -EINVAL);
        cfg.master_key_file = NULL;
        cfg.passphrase = NULL; /* neither */
        assert_int_equal(kh_keystore_open(&cfg, &ks), -EINVAL);
        cfg = f->cfg;
        cfg.path = NULL;
        assert_int_equal(kh_keystore_open(&cfg, &ks), -EINVAL);
        cfg = f->cfg;
        cfg.path = f->key; /* a file, not a directory */
        assert_int_equal(kh_keystore_open(&cfg, &ks), -EINVAL);
        (void) snprintf(file_path, sizeof(file_path), "%s/no/such/dir", f->dir);
        cfg.path = file_path;
        assert_int_equal(kh_keystore_open(&cfg, &ks), -ENOENT);
        cfg = f->cfg;
        assert_int_equal(kh_keystore_file_open_kdf(&cfg, &zero_t_kdf, &ks), -EINVAL);
        assert_null(ks);
}

static void test_passphrase_round_trip(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref ref = { "acme", 1, KH_KEY_DATA };
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        struct kh_keystore *ks = NULL;
        char wrong[] = "correct horse battery stapl3";

        f->cfg.master_key_file = NULL;
        f->cfg.passphrase = f->pass;
        assert_int_equal(kh_keystore_file_open_kdf(&f->cfg, &cheap_kdf, &ks), 0);
        generate(ks, "acme", 1);
        wrap_dek(ks, &ref, &wrapped);
        ks = kh_keystore_close(ks);

        /* The default open uses the cost stored at creation (with the 64 MiB default it
         * would derive another key and fail). */
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        assert_unwraps_to_dek(ks, &ref, &wrapped);
        ks = kh_keystore_close(ks);

        f->cfg.passphrase = wrong;
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EACCES);
        assert_null(ks);
}

/* The passphrase-derived master key is argon2id(passphrase, salt from keystore.meta) with
 * the stored cost, computed here independently and then used as a key file. */
static void test_passphrase_key_is_argon2id(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref ref = { "acme", 1, KH_KEY_DATA };
        KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
        struct kh_keystore *ks = NULL;
        uint8_t meta[200], key[32];
        char p[400];

        f->cfg.master_key_file = NULL;
        f->cfg.passphrase = f->pass;
        assert_int_equal(kh_keystore_file_open_kdf(&f->cfg, &cheap_kdf, &ks), 0);
        generate(ks, "acme", 1);
        wrap_dek(ks, &ref, &wrapped);
        ks = kh_keystore_close(ks);

        path_in_store(f, "keystore.meta", p);
        assert_int_equal(read_file(p, meta, sizeof(meta)), 96);
        assert_memory_equal(meta, "KHKM\x01\0\0\0", 8);
        assert_memory_equal(meta + 8, "\0\0\0\x01\0\0\0\x08\0\0\0\x01", 12); /* t, m, p */
        assert_int_equal(argon2id_hash_raw(1, 8, 1, f->pass, strlen(f->pass), meta + 20, 16, key,
                                           sizeof(key)),
                         ARGON2_OK);
        write_file(f->key, key, sizeof(key), 0600);
        f->cfg.passphrase = NULL;
        f->cfg.master_key_file = f->key;
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        assert_unwraps_to_dek(ks, &ref, &wrapped);
        ks = kh_keystore_close(ks);
}

static void test_corrupt_meta_is_refused(void **state) {
        struct fixture *f = *state;
        struct kh_keystore *ks = NULL;
        uint8_t meta[200];
        size_t n;
        char p[400];

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        ks = kh_keystore_close(ks);
        path_in_store(f, "keystore.meta", p);
        n = read_file(p, meta, sizeof(meta));

        meta[25] ^= 1; /* the salt: bound into the check value */
        write_file(p, meta, n, 0600);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EACCES);
        meta[25] ^= 1;
        write_file(p, meta, n - 1, 0600); /* truncated */
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EIO);
        meta[0] = 'X';
        write_file(p, meta, n, 0600);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), -EIO);
        assert_null(ks);
        meta[0] = 'K';
        write_file(p, meta, n, 0600);
        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        ks = kh_keystore_close(ks);
}

/* v1.key copied over v2.key: its header names version 1, and the header is bound into
 * the seal, so neither the name nor an edited header makes it pass for version 2. */
static void test_renamed_key_file_is_integrity(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref v1 = { "acme", 1, KH_KEY_DATA }, v2 = { "acme", 2, KH_KEY_DATA };
        KH_CLEANUP(kh_buf_freep) struct kh_buf w1 = { 0 }, w2 = { 0 };
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        struct kh_secret *dek = NULL;
        EVP_PKEY *pub = NULL;
        uint8_t file[8192];
        size_t n;
        char p1[400], p2[400];

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        generate(ks, "acme", 1);
        generate(ks, "acme", 2);
        wrap_dek(ks, &v1, &w1);
        wrap_dek(ks, &v2, &w2);

        path_in_store(f, "acme/v1.key", p1);
        path_in_store(f, "acme/v2.key", p2);
        n = read_file(p1, file, sizeof(file));
        write_file(p2, file, n, 0600);
        assert_int_equal(kh_keystore_unwrap(ks, &v2, w2.data, w2.len, &dek), -KH_E_INTEGRITY);
        assert_int_equal(kh_keystore_unwrap(ks, &v2, w1.data, w1.len, &dek), -KH_E_INTEGRITY);
        assert_int_equal(kh_keystore_public_key(ks, &v2, &pub), -KH_E_INTEGRITY);

        file[11] = 2; /* the header's version, edited to match the name */
        write_file(p2, file, n, 0600);
        assert_int_equal(kh_keystore_unwrap(ks, &v2, w1.data, w1.len, &dek), -KH_E_INTEGRITY);
        assert_int_equal(kh_keystore_public_key(ks, &v2, &pub), -KH_E_INTEGRITY);
        assert_null(dek);
        assert_null(pub);

        assert_unwraps_to_dek(ks, &v1, &w1); /* the original is untouched */
}


/* A tenant key file copied to the audit key's name does not open as the audit key: the
 * purpose is part of what the seal authenticates. */
static void test_data_key_does_not_open_as_audit_key(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref audit = { "acme", 1, KH_KEY_AUDIT };
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        EVP_PKEY *pub = NULL;
        uint8_t file[8192];
        size_t n;
        char p1[400], p2[400];

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        generate(ks, "acme", 1);
        path_in_store(f, "acme/v1.key", p1);
        path_in_store(f, "acme/audit-v1.key", p2);
        n = read_file(p1, file, sizeof(file));
        write_file(p2, file, n, 0600);
        assert_int_equal(kh_keystore_public_key(ks, &audit, &pub), -KH_E_INTEGRITY);
        assert_null(pub);
}

/* Replacing the stored public key would make new DEKs wrap to someone else: the public key
 * is authenticated with the private one. */
static void test_swapped_public_key_is_integrity(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref v1 = { "acme", 1, KH_KEY_DATA };
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        EVP_PKEY *pub = NULL;
        uint8_t file[8192];
        size_t n;
        char p[400];

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        generate(ks, "acme", 1);
        path_in_store(f, "acme/v1.key", p);
        n = read_file(p, file, sizeof(file));
        file[13 + 4 + 2 + 40] ^= 0x01; /* inside the SubjectPublicKeyInfo (modulus) */
        write_file(p, file, n, 0600);

        assert_int_equal(kh_secret_new_from(dek_bytes, sizeof(dek_bytes), &dek), 0);
        kh_buf_init(&out, KH_WRAPPED_DEK_MAX, false);
        assert_int_equal(kh_keystore_wrap(ks, &v1, dek, &out), -KH_E_INTEGRITY);
        assert_int_equal(kh_keystore_public_key(ks, &v1, &pub), -KH_E_INTEGRITY);
        assert_int_equal(out.len, 0);
        assert_null(pub);
}

static bool contains(const uint8_t *hay, size_t n, const void *needle, size_t m) {
        return memmem(hay, n, needle, m) != NULL;
}

/* The private key is on disk only sealed: decrypting the file here with the known master
 * key (format parsed independently) yields a PKCS#8 key matching the public key, and none
 * of its bytes appear in the file in the clear. */
static void test_key_file_holds_private_key_only_sealed(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref v1 = { "acme", 1, KH_KEY_DATA };
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *master = NULL, *der = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL, *priv = NULL, *pem_pub = NULL;
        PKCS8_PRIV_KEY_INFO *p8;
        BIGNUM *prime = NULL;
        uint8_t file[8192], aad[8192], prime_bytes[256];
        static const uint8_t pkcs8_prefix[] = { 0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a,
                                                0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01 };
        const unsigned char *dp;
        size_t n, hdr_len, spki_len;
        int prime_len;
        char p[400];
        FILE *fp;

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        generate(ks, "acme", 1);
        assert_int_equal(kh_keystore_public_key(ks, &v1, &pub), 0);

        path_in_store(f, "acme/v1.key", p);
        n = read_file(p, file, sizeof(file));
        assert_memory_equal(file, "KHKS\x01\x01\x08\x00\0\0\0\x01\x04" "acme", 17);
        spki_len = (size_t) file[17] << 8 | file[18];
        hdr_len = 19 + spki_len;
        assert_true(n > hdr_len + KH_AEAD_OVERHEAD);

        memcpy(aad, "keyhold-keystore:1", 18);
        memcpy(aad + 18, file, hdr_len);
        assert_int_equal(kh_secret_new_from(master_bytes, sizeof(master_bytes), &master), 0);
        assert_int_equal(
                kh_aead_unseal(master, aad, 18 + hdr_len, file + hdr_len, n - hdr_len, &der), 0);
        dp = kh_secret_bytes(der);
        p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &dp, (long) kh_secret_len(der));
        assert_non_null(p8);
        priv = EVP_PKCS82PKEY(p8);
        PKCS8_PRIV_KEY_INFO_free(p8);
        assert_non_null(priv);
        assert_int_equal(EVP_PKEY_eq(priv, pub), 1);

        assert_false(contains(file, n, "PRIVATE KEY", 11));
        assert_false(contains(file, n, pkcs8_prefix, sizeof(pkcs8_prefix)));
        assert_false(contains(file, n, kh_secret_bytes(der), 32));
        assert_int_equal(EVP_PKEY_get_bn_param(priv, OSSL_PKEY_PARAM_RSA_FACTOR1, &prime), 1);
        prime_len = BN_bn2bin(prime, prime_bytes);
        BN_clear_free(prime);
        assert_int_equal(prime_len, 128);
        assert_false(contains(file, n, prime_bytes, 16));

        /* The .pub file is the same public key, as PEM. */
        path_in_store(f, "acme/v1.pub", p);
        fp = fopen(p, "r");
        assert_non_null(fp);
        pem_pub = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
        (void) fclose(fp);
        assert_non_null(pem_pub);
        assert_int_equal(EVP_PKEY_eq(pem_pub, pub), 1);
}

struct seen {
        uint32_t v[16];
        size_t n;
};

static int collect(const struct kh_key_ref *ref, void *userdata) {
        struct seen *seen = userdata;

        if (seen->n >= KH_ELEMENTSOF(seen->v))
                return -ERANGE;
        seen->v[seen->n++] = ref->version;
        return 0;
}

static void test_list_ignores_stray_names(void **state) {
        struct fixture *f = *state;
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        static const char *const stray[] = { "v0.key", "v01.key", "v+3.key", "v3.key.tmp",
                                             ".v3.key.tmp-0011", "v4294967296.key", "v.key",
                                             "x3.key", "v3.pub", "v 3.key" };
        char p[400], rel[64];
        struct seen seen = { 0 };

        assert_int_equal(kh_keystore_open(&f->cfg, &ks), 0);
        generate(ks, "acme", 2);
        for (size_t i = 0; i < KH_ELEMENTSOF(stray); i++) {
                (void) snprintf(rel, sizeof(rel), "acme/%s", stray[i]);
                path_in_store(f, rel, p);
                write_file(p, "x", 1, 0600);
        }
        assert_int_equal(kh_keystore_list(ks, "acme", collect, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_int_equal(seen.v[0], 2);
}

/* ---- two processes creating the same store and key at once ---- */

static int child_race(struct fixture *f, int gate, const char *out_path) {
        const struct kh_key_ref v1 = { "acme", 1, KH_KEY_DATA };
        struct kh_keystore *ks = NULL;
        struct kh_secret *dek = NULL, *back = NULL;
        struct kh_buf wrapped;
        struct kh_key_ref ref;
        char c;
        int g, r, fd, code = 0;

        if (read(gate, &c, 1) != 0) /* returns 0 once the parent closes the pipe */
                return 10;
        if (kh_keystore_file_open_kdf(&f->cfg, &cheap_kdf, &ks) < 0)
                return 11;
        g = kh_keystore_generate(ks, &(struct kh_key_spec) { "acme", 1, 2048, KH_KEY_DATA, KH_KEY_ALG_RSA }, &ref);
        if (g == 0)
                code = 0;
        else if (g == -EEXIST)
                code = 1;
        else
                code = 12;

        kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
        r = kh_secret_new_from(dek_bytes, sizeof(dek_bytes), &dek);
        if (r == 0)
                r = kh_keystore_wrap(ks, &v1, dek, &wrapped);
        if (r == 0)
                r = kh_keystore_unwrap(ks, &v1, wrapped.data, wrapped.len, &back);
        if (r == 0 && !kh_secret_equal(dek, back))
                r = -EBADMSG;
        if (r == 0) {
                fd = open(out_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
                if (fd < 0 || write(fd, wrapped.data, wrapped.len) != (ssize_t) wrapped.len)
                        r = -EIO;
                if (fd >= 0)
                        (void) close(fd);
        }
        kh_buf_free(&wrapped);
        kh_secret_free(dek);
        kh_secret_free(back);
        kh_keystore_close(ks);
        return r < 0 ? 13 : code;
}

static void test_concurrent_creators_agree(void **state) {
        struct fixture *f = *state;
        const struct kh_key_ref v1 = { "acme", 1, KH_KEY_DATA };
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *ks = NULL;
        char out[2][300];
        pid_t pid[2];
        int gate[2], codes[2];
        struct seen seen = { 0 };

        /* Passphrase mode: the two must also agree on one salt in keystore.meta. */
        f->cfg.master_key_file = NULL;
        f->cfg.passphrase = f->pass;
        assert_int_equal(pipe2(gate, O_CLOEXEC), 0);
        for (int i = 0; i < 2; i++) {
                (void) snprintf(out[i], sizeof(out[i]), "%s/wrapped-%d", f->dir, i);
                pid[i] = fork();
                assert_true(pid[i] >= 0);
                if (pid[i] == 0) {
                        (void) close(gate[1]);
                        _exit(child_race(f, gate[0], out[i]));
                }
        }
        (void) close(gate[0]);
        (void) close(gate[1]); /* both start now */
        for (int i = 0; i < 2; i++) {
                int status;
                assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
                assert_true(WIFEXITED(status));
                codes[i] = WEXITSTATUS(status);
        }
        /* exactly one created the key, the other got -EEXIST */
        assert_true((codes[0] == 0 && codes[1] == 1) || (codes[0] == 1 && codes[1] == 0));

        assert_int_equal(kh_keystore_file_open_kdf(&f->cfg, &cheap_kdf, &ks), 0);
        for (int i = 0; i < 2; i++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf wrapped = { 0 };
                uint8_t buf[KH_WRAPPED_DEK_MAX + 1];
                size_t n = read_file(out[i], buf, sizeof(buf));

                assert_int_equal(n, 256);
                kh_buf_init(&wrapped, KH_WRAPPED_DEK_MAX, false);
                assert_int_equal(kh_buf_append(&wrapped, buf, n), 0);
                assert_unwraps_to_dek(ks, &v1, &wrapped);
        }
        assert_int_equal(kh_keystore_list(ks, "acme", collect, &seen), 0);
        assert_int_equal(seen.n, 1);
        assert_int_equal(seen.v[0], 1);
}

int main(void) {
        const struct kh_ks_conformance conf = {
                .name = "keystore-file-conformance",
                .ctx = &conf_fixture,
                .open_empty = conf_open_empty,
                .cleanup = conf_cleanup,
        };
#define CASE(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
        const struct CMUnitTest tests[] = {
                CASE(test_name_caps_and_layout),
                CASE(test_reopen_keeps_keys),
                CASE(test_wrong_master_key_is_eacces),
                CASE(test_master_key_file_checks),
                CASE(test_bad_config_is_einval),
                CASE(test_passphrase_round_trip),
                CASE(test_passphrase_key_is_argon2id),
                CASE(test_corrupt_meta_is_refused),
                CASE(test_renamed_key_file_is_integrity),
                CASE(test_data_key_does_not_open_as_audit_key),
                CASE(test_swapped_public_key_is_integrity),
                CASE(test_key_file_holds_private_key_only_sealed),
                CASE(test_list_ignores_stray_names),
                CASE(test_concurrent_creators_agree),
        };
#undef CASE
        int failed = kh_ks_conformance_run(&conf);

        return failed + cmocka_run_group_tests_name("keystore-file", tests, NULL, NULL);
}
