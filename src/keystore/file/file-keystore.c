/* The file key store's operations and its key file format.
 *
 * <tenant>/v<N>.key (a tenant key version), <tenant>/audit-v<N>.key (an audit signing key;
 * _server/ for the server's chain):
 *   "KHKS" | format (1) | algorithm (1 = RSA, 2 = EC P-256) | bits (u16) | version (u32) | tenant length
 *   (u8) | tenant | public key length (u16) | SubjectPublicKeyInfo DER       -- the header
 *   | AES-256-GCM seal of the PKCS#8 DER private key under the master key
 * Integers are big-endian. The seal's associated data is "keyhold-keystore:1" followed by
 * the whole header ("keyhold-keystore-audit:1" for an audit key, so that neither kind of
 * file opens as the other), and a load checks the header's tenant and version against the name it
 * was asked for: a file copied to another name, or with another public key, fails to open. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/errors.h"
#include "common/parse.h"
#include "crypto/aead.h"
#include "crypto/ecdsa.h"
#include "crypto/rsa.h"
#include "keystore/file/file-internal.h"
#include "keystore/keystore-backend.h"

#define KEY_MAGIC "KHKS"
#define KEY_FORMAT 1
#define KEY_ALG_RSA 1
#define KEY_ALG_EC_P256 2
#define KEY_AAD_LABEL "keyhold-keystore:1"
#define KEY_AAD_LABEL_AUDIT "keyhold-keystore-audit:1"
#define KEY_AAD_LABEL_RECOVERY "keyhold-keystore-recovery:1"
#define SERVER_DIR "_server"     /* the server's audit key: no tenant id starts with '_' */
#define KEY_FILE_MAX (32 * 1024) /* RSA-8192: ~1.1 KiB public + ~4.8 KiB sealed private */
#define KEY_VERSIONS_MAX 65536   /* versions listed per tenant */
#define KEY_NAME_MAX (KH_TENANT_ID_MAX + sizeof("/audit-v4294967295.key"))
#define SIG_MAX 1024             /* RSA-8192 */

struct kh_file_ks {
        struct kh_keystore base;
        int dirfd;
        struct kh_secret *master;
};

static struct kh_file_ks *file_ks_free(struct kh_file_ks *ks) {
        if (!ks)
                return NULL;
        if (ks->dirfd >= 0)
                (void) close(ks->dirfd);
        kh_secret_free(ks->master);
        free(ks);
        return NULL;
}
KH_DEFINE_CLEANUP(file_ks_free, struct kh_file_ks *)
KH_DEFINE_CLEANUP(EVP_PKEY_CTX_free, EVP_PKEY_CTX *)
KH_DEFINE_CLEANUP(PKCS8_PRIV_KEY_INFO_free, PKCS8_PRIV_KEY_INFO *)
KH_DEFINE_CLEANUP(BIO_free, BIO *)

static inline void openssl_freep(unsigned char **p) {
        OPENSSL_free(*p);
}

static inline void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

static struct kh_file_ks *file_ks(struct kh_keystore *ks) {
        return kh_container_of(ks, struct kh_file_ks, base);
}

/* ---- open / close ---- */

static int open_store_dir(const char *path) {
        int fd;

        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return errno == ENOTDIR ? -EINVAL : -errno;
        return fd;
}

int kh_keystore_file_open_kdf(const struct kh_config_keystore *cfg,
                              const struct kh_file_ks_kdf *kdf, struct kh_keystore **ret) {
        KH_CLEANUP(file_ks_freep) struct kh_file_ks *ks = NULL;
        int r;

        if (!cfg->path || !cfg->path[0])
                return -EINVAL;

        ks = calloc(1, sizeof(*ks));
        if (!ks)
                return -ENOMEM;
        ks->base.ops = &kh_keystore_file_ops;
        ks->dirfd = open_store_dir(cfg->path);
        if (ks->dirfd < 0)
                return ks->dirfd;

        r = kh_fks_master_load(ks->dirfd, cfg, kdf, &ks->master);
        if (r < 0)
                return r;

        *ret = &KH_TAKE_PTR(ks)->base;
        return 0;
}

static int file_open(const struct kh_config_keystore *cfg, struct kh_keystore **ret,
                     char *detail, size_t detail_len) {
        (void) detail;
        (void) detail_len;
        return kh_keystore_file_open_kdf(cfg, &kh_file_ks_kdf_default, ret);
}

static void file_close(struct kh_keystore *ks) {
        (void) file_ks_free(file_ks(ks));
}

/* ---- the key file ---- */

struct key_hdr {
        unsigned alg, bits;
        uint32_t version;
        const uint8_t *tenant;
        size_t tenant_len;
        const uint8_t *spki;
        size_t spki_len;
        size_t len; /* header bytes; the seal follows */
};

/* The folder of a key's owner under the store. */
static const char *owner_dir(const char *tenant) {
        return tenant[0] ? tenant : SERVER_DIR;
}

static const char *file_prefix(enum kh_key_purpose purpose) {
        switch (purpose) {
        case KH_KEY_AUDIT:
                return "audit-v";
        case KH_KEY_RECOVERY:
                return "recovery-v";
        default:
                return "v";
        }
}

/* "v<N>.key" or "audit-v<N>.key" (ext ".key" or ".pub"), in the owner's folder or not. */
static int key_file_name(const char *tenant, enum kh_key_purpose purpose, uint32_t version,
                         const char *ext, bool with_dir, char name[static KEY_NAME_MAX]) {
        int n = snprintf(name, KEY_NAME_MAX, "%s%s%s%" PRIu32 "%s", with_dir ? owner_dir(tenant) : "",
                         with_dir ? "/" : "", file_prefix(purpose), version, ext);

        return n < 0 || (size_t) n >= KEY_NAME_MAX ? -EINVAL : 0;
}

static int key_hdr_parse(const uint8_t *p, size_t n, struct key_hdr *h) {
        size_t off = 13;

        if (n < off || memcmp(p, KEY_MAGIC, 4) != 0 || p[4] != KEY_FORMAT ||
            (p[5] != KEY_ALG_RSA && p[5] != KEY_ALG_EC_P256))
                return -KH_E_INTEGRITY;
        h->alg = p[5];
        h->bits = (unsigned) p[6] << 8 | p[7];
        h->version = kh_fks_get_u32(p + 8);
        h->tenant_len = p[12];
        h->tenant = p + off;
        if (n - off < h->tenant_len + 2)
                return -KH_E_INTEGRITY;
        off += h->tenant_len;
        h->spki_len = (size_t) p[off] << 8 | p[off + 1];
        off += 2;
        if (n - off < h->spki_len + KH_AEAD_OVERHEAD + 1)
                return -KH_E_INTEGRITY;
        h->spki = p + off;
        h->len = off + h->spki_len;
        return 0;
}

static int key_aad(enum kh_key_purpose purpose, const uint8_t *hdr, size_t hdr_len,
                   struct kh_buf *aad) {
        const char *label = purpose == KH_KEY_AUDIT      ? KEY_AAD_LABEL_AUDIT
                            : purpose == KH_KEY_RECOVERY ? KEY_AAD_LABEL_RECOVERY
                                                         : KEY_AAD_LABEL;
        int r;

        kh_buf_init(aad, strlen(label) + hdr_len, false);
        r = kh_buf_append(aad, label, strlen(label));
        if (r < 0)
                return r;
        return kh_buf_append(aad, hdr, hdr_len);
}

static int pubkey_parse(const uint8_t *der, size_t len, unsigned alg, unsigned bits,
                        EVP_PKEY **ret) {
        const unsigned char *p = der;
        EVP_PKEY *pkey;

        pkey = d2i_PUBKEY(NULL, &p, (long) len);
        if (!pkey) {
                ERR_clear_error();
                return -KH_E_INTEGRITY;
        }
        if (p != der + len ||
            (alg == KEY_ALG_RSA ? EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA
                                : !kh_ec_is_p256(pkey)) ||
            EVP_PKEY_get_bits(pkey) != (int) bits) {
                EVP_PKEY_free(pkey);
                return -KH_E_INTEGRITY;
        }
        *ret = pkey;
        return 0;
}

static int privkey_parse(const struct kh_secret *der, EVP_PKEY *pub, EVP_PKEY **ret) {
        KH_CLEANUP(PKCS8_PRIV_KEY_INFO_freep) PKCS8_PRIV_KEY_INFO *p8 = NULL;
        const unsigned char *p = kh_secret_bytes(der);
        EVP_PKEY *pkey;

        p8 = d2i_PKCS8_PRIV_KEY_INFO(NULL, &p, (long) kh_secret_len(der));
        if (!p8 || p != kh_secret_bytes(der) + kh_secret_len(der)) {
                ERR_clear_error();
                return -KH_E_INTEGRITY;
        }
        pkey = EVP_PKCS82PKEY(p8);
        if (!pkey) {
                ERR_clear_error();
                return -KH_E_INTEGRITY;
        }
        if (EVP_PKEY_get_base_id(pkey) != EVP_PKEY_get_base_id(pub) || EVP_PKEY_eq(pkey, pub) != 1) {
                EVP_PKEY_free(pkey);
                ERR_clear_error();
                return -KH_E_INTEGRITY;
        }
        *ret = pkey;
        return 0;
}

/* Loads key ref, authenticated by the master key: its public half always, its private half
 * only if ret_priv is given (then in OpenSSL's secure heap when keyholdd enabled it). */
static int key_load(struct kh_file_ks *ks, const struct kh_key_ref *ref, EVP_PKEY **ret_pub,
                    EVP_PKEY **ret_priv) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf file = { 0 }, aad = { 0 };
        KH_CLEANUP(kh_secret_freep) struct kh_secret *der = NULL;
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL, *priv = NULL;
        char name[KEY_NAME_MAX];
        struct key_hdr h;
        int r;

        r = key_file_name(ref->tenant, ref->purpose, ref->version, ".key", true, name);
        if (r < 0)
                return r;
        kh_buf_init(&file, KEY_FILE_MAX, false);
        r = kh_fks_read_at(ks->dirfd, name, KEY_FILE_MAX, &file);
        if (r == -EFBIG)
                return -KH_E_INTEGRITY;
        if (r < 0)
                return r;

        r = key_hdr_parse(file.data, file.len, &h);
        if (r < 0)
                return r;
        if (h.version != ref->version || h.tenant_len != strlen(ref->tenant) ||
            memcmp(h.tenant, ref->tenant, h.tenant_len) != 0)
                return -KH_E_INTEGRITY; /* a key file under another key's name */

        r = key_aad(ref->purpose, file.data, h.len, &aad);
        if (r < 0)
                return r;
        r = kh_aead_unseal(ks->master, aad.data, aad.len, file.data + h.len, file.len - h.len,
                           &der);
        if (r < 0)
                return r == -EINVAL ? -EIO : r;

        r = pubkey_parse(h.spki, h.spki_len, h.alg, h.bits, &pub);
        if (r < 0)
                return r;
        if (ret_priv) {
                r = privkey_parse(der, pub, &priv);
                if (r < 0)
                        return r;
                *ret_priv = KH_TAKE_PTR(priv);
        }
        if (ret_pub)
                *ret_pub = KH_TAKE_PTR(pub);
        return 0;
}

/* PKCS#8 DER of pkey, written straight into locked memory. */
static int privkey_encode(EVP_PKEY *pkey, struct kh_secret **ret) {
        KH_CLEANUP(PKCS8_PRIV_KEY_INFO_freep) PKCS8_PRIV_KEY_INFO *p8 = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *der = NULL;
        unsigned char *p;
        int n, r;

        p8 = EVP_PKEY2PKCS8(pkey); /* freeing it wipes the key bytes it holds */
        if (!p8) {
                ERR_clear_error();
                return -EIO;
        }
        n = i2d_PKCS8_PRIV_KEY_INFO(p8, NULL);
        if (n <= 0)
                return -EIO;
        r = kh_secret_new((size_t) n, &der);
        if (r < 0)
                return r;
        p = kh_secret_bytes_mut(der);
        if (i2d_PKCS8_PRIV_KEY_INFO(p8, &p) != n)
                return -EIO;

        *ret = KH_TAKE_PTR(der);
        return 0;
}

/* The bytes of a new key file for pkey. */
static int key_file_build(struct kh_file_ks *ks, const struct kh_key_spec *spec, EVP_PKEY *pkey,
                          struct kh_buf *out) {
        KH_CLEANUP(openssl_freep) unsigned char *spki = NULL;
        KH_CLEANUP(kh_secret_freep) struct kh_secret *der = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf aad = { 0 };
        size_t tenant_len = strlen(spec->tenant);
        uint8_t fixed[13];
        int spki_len, r;

        spki_len = i2d_PUBKEY(pkey, &spki);
        if (spki_len <= 0 || spki_len > UINT16_MAX)
                return -EIO;

        memcpy(fixed, KEY_MAGIC, 4);
        fixed[4] = KEY_FORMAT;
        fixed[5] = spec->alg == KH_KEY_ALG_EC_P256 ? KEY_ALG_EC_P256 : KEY_ALG_RSA;
        fixed[6] = (uint8_t) ((unsigned) EVP_PKEY_get_bits(pkey) >> 8);
        fixed[7] = (uint8_t) EVP_PKEY_get_bits(pkey);
        kh_fks_put_u32(fixed + 8, spec->version);
        fixed[12] = (uint8_t) tenant_len;

        if ((r = kh_buf_append(out, fixed, sizeof(fixed))) < 0 ||
            (r = kh_buf_append(out, spec->tenant, tenant_len)) < 0 ||
            (r = kh_buf_append(out, (uint8_t[]) { (uint8_t) (spki_len >> 8), (uint8_t) spki_len },
                               2)) < 0 ||
            (r = kh_buf_append(out, spki, (size_t) spki_len)) < 0)
                return r;

        r = key_aad(spec->purpose, out->data, out->len, &aad);
        if (r < 0)
                return r;
        r = privkey_encode(pkey, &der);
        if (r < 0)
                return r;
        return kh_aead_seal(ks->master, aad.data, aad.len, der, out);
}

static int pub_pem_write(int tdir, const struct kh_key_spec *spec, EVP_PKEY *pkey) {
        KH_CLEANUP(BIO_freep) BIO *bio = NULL;
        char name[KEY_NAME_MAX];
        char *pem;
        long len;

        bio = BIO_new(BIO_s_mem());
        if (!bio)
                return -ENOMEM;
        if (PEM_write_bio_PUBKEY(bio, pkey) != 1)
                return -EIO;
        len = BIO_get_mem_data(bio, &pem);
        if (len <= 0)
                return -EIO;
        if (key_file_name(spec->tenant, spec->purpose, spec->version, ".pub", false, name) < 0)
                return -EINVAL;
        return kh_fks_write_at(tdir, name, pem, (size_t) len, true);
}

/* ---- operations ---- */

static int file_generate(struct kh_keystore *base, const struct kh_key_spec *spec) {
        struct kh_file_ks *ks = file_ks(base);
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pkey = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        KH_CLEANUP(kh_closep) int tdir = -1;
        char name[KEY_NAME_MAX];
        struct stat st;
        int r;

        if (mkdirat(ks->dirfd, owner_dir(spec->tenant), 0700) == 0) {
                if (fsync(ks->dirfd) < 0)
                        return -errno;
        } else if (errno != EEXIST)
                return -errno;
        tdir = openat(ks->dirfd, owner_dir(spec->tenant), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (tdir < 0)
                return -errno;

        r = key_file_name(spec->tenant, spec->purpose, spec->version, ".key", false, name);
        if (r < 0)
                return r;
        if (fstatat(tdir, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
                return -EEXIST; /* spare a key generation; link() below decides races */

        r = spec->alg == KH_KEY_ALG_EC_P256 ? kh_ec_p256_generate(&pkey)
                                             : kh_rsa_generate(spec->rsa_bits, &pkey);
        if (r < 0)
                return r;
        kh_buf_init(&out, KEY_FILE_MAX, false);
        r = key_file_build(ks, spec, pkey, &out);
        if (r < 0)
                return r;
        r = kh_fks_write_at(tdir, name, out.data, out.len, false);
        if (r < 0)
                return r;
        r = pub_pem_write(tdir, spec, pkey);
        if (r < 0)
                return r;

        return 0;
}

static int file_wrap(struct kh_keystore *base, const struct kh_key_ref *kek,
                     const struct kh_secret *dek, struct kh_buf *out) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
        int r;

        r = key_load(file_ks(base), kek, &pub, NULL);
        if (r < 0)
                return r;
        return kh_rsa_oaep_encrypt(pub, dek, out);
}

static int file_unwrap(struct kh_keystore *base, const struct kh_key_ref *kek,
                       const uint8_t *wrapped, size_t len, struct kh_secret **ret_dek) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *priv = NULL;
        int r;

        r = key_load(file_ks(base), kek, NULL, &priv);
        if (r < 0)
                return r;
        return kh_rsa_oaep_decrypt(priv, wrapped, len, ret_dek);
}

static int file_decrypt(struct kh_keystore *base, const struct kh_key_ref *key,
                        enum kh_oaep_md md, const uint8_t *in, size_t len,
                        struct kh_secret **ret) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *priv = NULL;
        int r;

        r = key_load(file_ks(base), key, NULL, &priv);
        if (r < 0)
                return r;
        return kh_rsa_oaep_decrypt_md(priv, md, in, len, ret);
}

static int file_sign(struct kh_keystore *base, const struct kh_key_ref *key,
                     const uint8_t *digest, size_t len, struct kh_buf *sig) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *priv = NULL;
        KH_CLEANUP(EVP_PKEY_CTX_freep) EVP_PKEY_CTX *ctx = NULL;
        uint8_t out[SIG_MAX];
        size_t out_len = sizeof(out);
        int r;

        r = key_load(file_ks(base), key, NULL, &priv);
        if (r < 0)
                return r;
        if (kh_ec_is_p256(priv)) {
                r = kh_ecdsa_sign(priv, digest, sig);
                return r == -EINVAL ? -EIO : r;
        }

        ctx = EVP_PKEY_CTX_new_from_pkey(NULL, priv, NULL);
        if (!ctx)
                return -ENOMEM;
        if (EVP_PKEY_sign_init(ctx) <= 0 ||
            EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, (int) len) <= 0 ||
            EVP_PKEY_sign(ctx, out, &out_len, digest, len) <= 0) {
                ERR_clear_error();
                return -EIO;
        }
        return kh_buf_append(sig, out, out_len);
}

static int file_public_key(struct kh_keystore *base, const struct kh_key_ref *key,
                           EVP_PKEY **ret) {
        return key_load(file_ks(base), key, ret, NULL);
}

/* "v<N>.key" with N a decimal in 1..UINT32_MAX without leading zeros; anything else
 * (temporary files, .pub, stray files) is not a key version. */
static bool version_parse(const char *name, uint32_t *ret) {
        size_t len = strlen(name);
        uint64_t v;

        if (len < 6 || name[0] != 'v' || strcmp(name + len - 4, ".key") != 0 || name[1] == '0')
                return false;
        if (kh_parse_u64(name + 1, len - 5, UINT32_MAX, &v) < 0 || v == 0)
                return false;
        *ret = (uint32_t) v;
        return true;
}

static int u32_cmp(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;

        return (x > y) - (x < y);
}

static int file_list(struct kh_keystore *base, const char *tenant, kh_key_ref_fn fn,
                     void *userdata) {
        struct kh_file_ks *ks = file_ks(base);
        KH_CLEANUP(closedirp) DIR *d = NULL;
        KH_CLEANUP_FREE uint32_t *versions = NULL;
        size_t n = 0, cap = 0;
        struct kh_key_ref ref = { 0 };
        int fd, r;

        fd = openat(ks->dirfd, tenant, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return errno == ENOENT ? 0 : -errno; /* a tenant without keys yet */
        d = fdopendir(fd);
        if (!d) {
                r = -errno;
                (void) close(fd);
                return r;
        }

        for (;;) {
                struct dirent *de;
                uint32_t v;

                errno = 0;
                de = readdir(d);
                if (!de) {
                        if (errno != 0)
                                return -errno;
                        break;
                }
                if (!version_parse(de->d_name, &v))
                        continue;
                if (n == cap) {
                        size_t ncap = cap ? 2 * cap : 16;
                        uint32_t *nv;
                        if (ncap > KEY_VERSIONS_MAX)
                                return -E2BIG;
                        nv = reallocarray(versions, ncap, sizeof(*versions));
                        if (!nv)
                                return -ENOMEM;
                        versions = nv;
                        cap = ncap;
                }
                versions[n++] = v;
        }
        if (n > 0)
                qsort(versions, n, sizeof(*versions), u32_cmp);

        memcpy(ref.tenant, tenant, strlen(tenant));
        for (size_t i = 0; i < n; i++) {
                ref.version = versions[i];
                r = fn(&ref, userdata);
                if (r != 0)
                        return r;
        }
        return 0;
}

/* Overwrites dirfd/name with zeros and syncs it, so that the sealed private key is not
 * left in the file's blocks for whoever later reads the disk (or a copy of an old master
 * key); then unlinks it. On a copy-on-write or flash file system the old blocks may
 * survive anyway: the key is also sealed under the master key, which is what protects it
 * there (docs/security.md). */
static int shred_at(int dirfd, const char *name) {
        KH_CLEANUP(kh_closep) int fd = -1;
        uint8_t zeros[4096] = { 0 };
        struct stat st;
        off_t off = 0;

        fd = openat(dirfd, name, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        if (fstat(fd, &st) < 0)
                return -errno;
        if (!S_ISREG(st.st_mode))
                return -EIO;
        while (off < st.st_size) {
                size_t n = (size_t) (st.st_size - off) < sizeof(zeros) ? (size_t) (st.st_size - off)
                                                                        : sizeof(zeros);
                ssize_t w = pwrite(fd, zeros, n, off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        return w < 0 ? -errno : -EIO;
                off += w;
        }
        if (fsync(fd) < 0)
                return -errno;
        return unlinkat(dirfd, name, 0) < 0 ? -errno : 0;
}

static int file_destroy(struct kh_keystore *base, const struct kh_key_ref *key) {
        struct kh_file_ks *ks = file_ks(base);
        KH_CLEANUP(kh_closep) int tdir = -1;
        char name[KEY_NAME_MAX];
        int r;

        tdir = openat(ks->dirfd, owner_dir(key->tenant), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        if (tdir < 0)
                return -errno;
        r = key_file_name(key->tenant, key->purpose, key->version, ".key", false, name);
        if (r < 0)
                return r;
        r = shred_at(tdir, name);
        if (r < 0)
                return r;
        /* the public half is no secret; it goes so that nothing names a key that is gone */
        r = key_file_name(key->tenant, key->purpose, key->version, ".pub", false, name);
        if (r < 0)
                return r;
        if (unlinkat(tdir, name, 0) < 0 && errno != ENOENT)
                return -errno;
        return fsync(tdir) < 0 ? -errno : 0;
}

static int file_backup_key(struct kh_keystore *base, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                           struct kh_secret **ret) {
        return kh_fks_backup_key(file_ks(base)->master, salt, ret);
}

/* ---- files as a backup carries them ---- */

static bool owner_dir_is_valid(const char *dir, size_t len) {
        return (len == strlen(SERVER_DIR) && memcmp(dir, SERVER_DIR, len) == 0) ||
               (len <= KH_TENANT_ID_MAX && kh_tenant_id_is_valid(dir, len));
}

/* "v<N>" or "audit-v<N>" followed by ext: the purpose and N. */
static bool key_name_parse(const char *base, const char *ext, enum kh_key_purpose *ret_purpose,
                           uint32_t *ret_version) {
        size_t len = strlen(base), ext_len = strlen(ext), pre;
        uint64_t v;

        if (strncmp(base, "audit-v", 7) == 0) {
                *ret_purpose = KH_KEY_AUDIT;
                pre = 7;
        } else if (strncmp(base, "recovery-v", 10) == 0) {
                *ret_purpose = KH_KEY_RECOVERY;
                pre = 10;
        } else if (base[0] == 'v') {
                *ret_purpose = KH_KEY_DATA;
                pre = 1;
        } else {
                return false;
        }
        if (len <= pre + ext_len || strcmp(base + len - ext_len, ext) != 0 || base[pre] == '0')
                return false;
        if (kh_parse_u64(base + pre, len - pre - ext_len, UINT32_MAX, &v) < 0 || v == 0)
                return false;
        *ret_version = (uint32_t) v;
        return true;
}

int kh_keystore_file_check_file(const char *name, const uint8_t *p, size_t n) {
        static const char pem[] = "-----BEGIN PUBLIC KEY-----";
        const char *slash = strchr(name, '/');
        enum kh_key_purpose purpose;
        struct key_hdr h;
        uint32_t version;
        size_t dir_len;
        bool server;

        if (!slash)
                return strcmp(name, "keystore.meta") == 0 && kh_fks_meta_is_valid(p, n) ? 0
                                                                                       : -EBADMSG;
        dir_len = (size_t) (slash - name);
        if (strchr(slash + 1, '/') || !owner_dir_is_valid(name, dir_len))
                return -EBADMSG;
        server = dir_len == strlen(SERVER_DIR) && memcmp(name, SERVER_DIR, dir_len) == 0;
        if (key_name_parse(slash + 1, ".pub", &purpose, &version))
                return n > sizeof(pem) && memcmp(p, pem, sizeof(pem) - 1) == 0 ? 0 : -EBADMSG;
        if (!key_name_parse(slash + 1, ".key", &purpose, &version) ||
            (server && purpose != KH_KEY_AUDIT) || n > KEY_FILE_MAX)
                return -EBADMSG;
        if (key_hdr_parse(p, n, &h) < 0 || h.version != version ||
            h.tenant_len != (server ? 0 : dir_len) || memcmp(h.tenant, name, h.tenant_len) != 0)
                return -EBADMSG;
        return 0;
}

const struct kh_keystore_ops kh_keystore_file_ops = {
        .name = "file",
        .caps = 0,
        .open = file_open,
        .close = file_close,
        .generate = file_generate,
        .wrap = file_wrap,
        .unwrap = file_unwrap,
        .decrypt = file_decrypt,
        .sign = file_sign,
        .public_key = file_public_key,
        .list = file_list,
        .destroy = file_destroy,
        .backup_key = file_backup_key,
};
