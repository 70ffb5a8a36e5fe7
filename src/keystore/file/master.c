/* The master key of a file key store and keystore.meta, which lets open() tell a wrong key or
 * passphrase from a right one.
 *
 * keystore.meta (96 bytes):
 *   "KHKM" | format (1) | 3 zero bytes | t_cost | m_kib | parallelism (u32 big-endian)
 *   | salt (16) | AES-256-GCM seal of 32 zero bytes under the master key
 * The seal's associated data is "keyhold-keystore-check:1" followed by the 36 header bytes,
 * so a tampered salt or cost fails like a wrong key. */
#include <argon2.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errors.h"
#include "common/file.h"
#include "crypto/aead.h"
#include "crypto/random.h"
#include "crypto/stream.h"
#include "keystore/file/file-internal.h"

#define META_NAME "keystore.meta"
#define META_MAGIC "KHKM"
#define META_FORMAT 1
#define META_SALT_LEN 16
#define META_HDR_LEN (4 + 4 + 3 * 4 + META_SALT_LEN)
#define META_CHECK_LEN 32
#define META_LEN (META_HDR_LEN + KH_AEAD_OVERHEAD + META_CHECK_LEN)
#define META_CHECK_AAD "keyhold-keystore-check:1"
#define MASTER_KEY_LEN 32
#define BACKUP_KEY_INFO "keyhold-backup:1"

#define KDF_T_MAX 64
#define KDF_M_KIB_MAX (4u * 1024 * 1024) /* 4 GiB */
#define KDF_P_MAX 16

const struct kh_file_ks_kdf kh_file_ks_kdf_default = {
        .t_cost = 3,
        .m_kib = 64 * 1024,
        .parallelism = 1,
};

struct meta {
        uint8_t hdr[META_HDR_LEN];
        struct kh_file_ks_kdf kdf;
        const uint8_t *salt; /* inside hdr */
        uint8_t check[KH_AEAD_OVERHEAD + META_CHECK_LEN];
};

static bool kdf_is_valid(const struct kh_file_ks_kdf *kdf) {
        return kdf->t_cost >= 1 && kdf->t_cost <= KDF_T_MAX && kdf->parallelism >= 1 &&
               kdf->parallelism <= KDF_P_MAX && kdf->m_kib >= 8 * kdf->parallelism &&
               kdf->m_kib <= KDF_M_KIB_MAX;
}

/* Reads the 32-byte key file. Refuses a file others could read or that belongs to someone
 * else: the key is the whole security of the store. Symlinks are followed (secret mounts
 * use them) and the target is what gets checked. */
static int master_from_file(const char *path, struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        KH_CLEANUP(kh_closep) int fd = -1;
        uint8_t *p;
        struct stat st;
        size_t got = 0;
        int r;

        fd = kh_file_open_regular(AT_FDCWD, path, 0, &st);
        if (fd < 0)
                return fd;
        if (st.st_uid != geteuid() || (st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
                return -EACCES;
        if (st.st_size != MASTER_KEY_LEN)
                return -EINVAL; /* exactly 32 raw bytes, not hex or base64 text */

        r = kh_secret_new(MASTER_KEY_LEN, &key);
        if (r < 0)
                return r;
        p = kh_secret_bytes_mut(key);
        while (got < MASTER_KEY_LEN) {
                ssize_t n = read(fd, p + got, MASTER_KEY_LEN - got);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -EINVAL; /* shrank since fstat */
                got += (size_t) n;
        }

        *ret = KH_TAKE_PTR(key);
        return 0;
}

static int master_from_passphrase(const char *passphrase, size_t passphrase_len,
                                  const struct meta *m, struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        int r;

        r = kh_secret_new(MASTER_KEY_LEN, &key);
        if (r < 0)
                return r;
        r = argon2id_hash_raw(m->kdf.t_cost, m->kdf.m_kib, m->kdf.parallelism, passphrase,
                              passphrase_len, m->salt, META_SALT_LEN,
                              kh_secret_bytes_mut(key), MASTER_KEY_LEN);
        if (r == ARGON2_MEMORY_ALLOCATION_ERROR)
                return -ENOMEM;
        if (r != ARGON2_OK)
                return -EIO;

        *ret = KH_TAKE_PTR(key);
        return 0;
}

static void meta_fill_hdr(struct meta *m, const uint8_t salt[static META_SALT_LEN]) {
        memset(m->hdr, 0, sizeof(m->hdr));
        memcpy(m->hdr, META_MAGIC, 4);
        m->hdr[4] = META_FORMAT;
        kh_fks_put_u32(m->hdr + 8, m->kdf.t_cost);
        kh_fks_put_u32(m->hdr + 12, m->kdf.m_kib);
        kh_fks_put_u32(m->hdr + 16, m->kdf.parallelism);
        memcpy(m->hdr + 20, salt, META_SALT_LEN);
        m->salt = m->hdr + 20;
}

static int meta_parse(const uint8_t *p, size_t n, struct meta *m) {
        static const uint8_t zero[3];

        if (n != META_LEN || memcmp(p, META_MAGIC, 4) != 0 || p[4] != META_FORMAT ||
            memcmp(p + 5, zero, 3) != 0)
                return -EIO;
        m->kdf.t_cost = kh_fks_get_u32(p + 8);
        m->kdf.m_kib = kh_fks_get_u32(p + 12);
        m->kdf.parallelism = kh_fks_get_u32(p + 16);
        if (!kdf_is_valid(&m->kdf))
                return -EIO;
        meta_fill_hdr(m, p + 20);
        memcpy(m->check, p + META_HDR_LEN, sizeof(m->check));
        return 0;
}

#define CHECK_AAD_LEN (sizeof(META_CHECK_AAD) - 1 + META_HDR_LEN)

static size_t check_aad(const struct meta *m, uint8_t aad[static CHECK_AAD_LEN]) {
        memcpy(aad, META_CHECK_AAD, sizeof(META_CHECK_AAD) - 1);
        memcpy(aad + sizeof(META_CHECK_AAD) - 1, m->hdr, META_HDR_LEN);
        return CHECK_AAD_LEN;
}

static int master_get(const struct kh_config_keystore *cfg, const struct meta *m,
                      struct kh_secret **ret) {
        if (cfg->master_key) {
                if (kh_secret_len(cfg->master_key) != MASTER_KEY_LEN)
                        return -EINVAL;
                return kh_secret_new_from(kh_secret_bytes(cfg->master_key), MASTER_KEY_LEN, ret);
        }
        if (cfg->master_key_file)
                return master_from_file(cfg->master_key_file, ret);
        if (cfg->passphrase_secret) {
                /* NUL-terminated: the text is one byte shorter than the secret */
                size_t len = kh_secret_len(cfg->passphrase_secret);
                if (len < 2)
                        return -EINVAL;
                return master_from_passphrase((const char *) kh_secret_bytes(cfg->passphrase_secret),
                                              len - 1, m, ret);
        }
        return master_from_passphrase(cfg->passphrase, strlen(cfg->passphrase), m, ret);
}

/* Whether key opens m's check value: 0, -KH_E_INTEGRITY (another key), -ENOMEM, -EIO. */
static int meta_check(const struct kh_secret *key, const struct meta *m) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *check = NULL;
        uint8_t aad[CHECK_AAD_LEN];

        return kh_aead_unseal(key, aad, check_aad(m, aad), m->check, sizeof(m->check), &check);
}

/* The existing store: the master key must open the check value. */
static int meta_verify(const struct kh_config_keystore *cfg, const struct meta *m,
                       struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL;
        int r;

        r = master_get(cfg, m, &key);
        if (r < 0)
                return r;
        r = meta_check(key, m);
        if (r == -KH_E_INTEGRITY)
                return -EACCES;
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(key);
        return 0;
}

/* A new store: returns -EEXIST if another process created keystore.meta first. */
static int meta_create(int dirfd, const struct kh_config_keystore *cfg,
                       const struct kh_file_ks_kdf *kdf, struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *key = NULL, *zero = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf sealed = { 0 };
        uint8_t aad[CHECK_AAD_LEN];
        uint8_t salt[META_SALT_LEN];
        uint8_t file[META_LEN];
        struct meta m = { .kdf = *kdf };
        int r;

        r = kh_random_bytes(salt, sizeof(salt));
        if (r < 0)
                return r;
        meta_fill_hdr(&m, salt);

        r = master_get(cfg, &m, &key);
        if (r < 0)
                return r;
        r = kh_secret_new(META_CHECK_LEN, &zero);
        if (r < 0)
                return r;
        kh_buf_init(&sealed, sizeof(m.check), false);
        r = kh_aead_seal(key, aad, check_aad(&m, aad), zero, &sealed);
        if (r < 0)
                return r;
        if (sealed.len != sizeof(m.check))
                return -EIO;

        memcpy(file, m.hdr, META_HDR_LEN);
        memcpy(file + META_HDR_LEN, sealed.data, sealed.len);
        r = kh_fks_write_at(dirfd, META_NAME, file, sizeof(file), false);
        if (r < 0)
                return r;

        *ret = KH_TAKE_PTR(key);
        return 0;
}

int kh_fks_master_load(int dirfd, const struct kh_config_keystore *cfg,
                       const struct kh_file_ks_kdf *kdf, struct kh_secret **ret_master) {
        bool have_file = (cfg->master_key_file && cfg->master_key_file[0]) || cfg->master_key;
        bool have_pass = (cfg->passphrase && cfg->passphrase[0]) || cfg->passphrase_secret;
        int r;

        if (have_file == have_pass || !kdf_is_valid(kdf))
                return -EINVAL;

        /* Two rounds: if another process creates the meta file between our read and our
         * link(), we lose the race and use its salt. */
        for (int round = 0; round < 2; round++) {
                KH_CLEANUP(kh_buf_freep) struct kh_buf buf = { 0 };
                struct meta m;

                kh_buf_init(&buf, META_LEN, false);
                r = kh_fks_read_at(dirfd, META_NAME, META_LEN, &buf);
                if (r == 0) {
                        r = meta_parse(buf.data, buf.len, &m);
                        if (r < 0)
                                return r;
                        return meta_verify(cfg, &m, ret_master);
                }
                if (r == -EFBIG)
                        return -EIO;
                if (r != -ENOENT)
                        return r;

                r = meta_create(dirfd, cfg, kdf, ret_master);
                if (r != -EEXIST)
                        return r;
        }
        return -EIO;
}

int kh_fks_backup_key(const struct kh_secret *master, const uint8_t salt[static KH_BACKUP_SALT_LEN],
                      struct kh_secret **ret) {
        return kh_hkdf_sha256(master, salt, KH_BACKUP_SALT_LEN, BACKUP_KEY_INFO, MASTER_KEY_LEN,
                              ret);
}

bool kh_fks_meta_is_valid(const uint8_t *p, size_t n) {
        struct meta m;

        return meta_parse(p, n, &m) == 0;
}

int kh_keystore_file_backup_key(const uint8_t *meta, size_t meta_len,
                                const struct kh_config_keystore *cfg,
                                const uint8_t salt[static KH_BACKUP_SALT_LEN],
                                struct kh_secret **ret) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *master = NULL;
        bool have_file = (cfg->master_key_file && cfg->master_key_file[0]) || cfg->master_key;
        bool have_pass = (cfg->passphrase && cfg->passphrase[0]) || cfg->passphrase_secret;
        struct meta m;
        int r;

        if (have_file == have_pass)
                return -EINVAL;
        if (meta_parse(meta, meta_len, &m) < 0)
                return -EBADMSG;
        r = master_get(cfg, &m, &master);   /* -EACCES here: the key file's permissions */
        if (r < 0)
                return r;
        r = meta_check(master, &m);
        if (r == -KH_E_INTEGRITY)
                return -EKEYREJECTED;
        if (r < 0)
                return r;
        return kh_fks_backup_key(master, salt, ret);
}
