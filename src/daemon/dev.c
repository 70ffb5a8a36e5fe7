#include "dev.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/file.h"
#include "common/net.h"
#include "config/dev-names.h"
#include "crypto/random.h"
#include "crypto/rsa.h"
#include "token/jwt-sign.h"

KH_DEFINE_CLEANUP(X509_free, X509 *)
KH_DEFINE_CLEANUP(BIO_free, BIO *)

static int path_in(const struct kh_config *cfg, const char *name, char *out, size_t len) {
        int n = snprintf(out, len, "%s/%s", cfg->data_dir, name);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
}

static int write_pem(const char *path, EVP_PKEY *key, X509 *cert, mode_t mode) {
        KH_CLEANUP(BIO_freep) BIO *bio = BIO_new(BIO_s_secmem());
        char *data;
        long len;
        int ok;

        if (!bio)
                return -ENOMEM;
        ok = cert ? PEM_write_bio_X509(bio, cert)
                  : PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL);
        if (!ok)
                return -EIO;
        len = BIO_get_mem_data(bio, &data);
        return kh_file_write_atomic(AT_FDCWD, path, data, (size_t) len, mode, 0);
}

static int ensure_master_key(const struct kh_config *cfg) {
        uint8_t key[32];
        int r;

        if (access(cfg->keystore.master_key_file, F_OK) == 0)
                return 0;
        r = kh_random_bytes(key, sizeof(key));
        if (r >= 0)
                r = kh_file_write_atomic(AT_FDCWD, cfg->keystore.master_key_file, key, sizeof(key), 0600, 0);
        OPENSSL_cleanse(key, sizeof(key));
        return r;
}

static int add_ext(X509 *cert, int nid, const char *value) {
        X509V3_CTX ctx;
        X509_EXTENSION *ext;

        X509V3_set_ctx_nodb(&ctx);
        X509V3_set_ctx(&ctx, cert, cert, NULL, NULL, 0);
        ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
        if (!ext)
                return -EIO;
        int ok = X509_add_ext(cert, ext, -1);
        X509_EXTENSION_free(ext);
        return ok ? 0 : -EIO;
}

/* A self-signed certificate for the loopback names, valid for one year. */
static int ensure_tls(const struct kh_config *cfg) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        KH_CLEANUP(X509_freep) X509 *cert = NULL;
        X509_NAME *name;
        uint8_t serial[16];
        int r;

        if (access(cfg->server.tls_cert, F_OK) == 0 && access(cfg->server.tls_key, F_OK) == 0)
                return 0;
        key = EVP_EC_gen("P-256");
        cert = X509_new();
        if (!key || !cert)
                return -ENOMEM;
        r = kh_random_bytes(serial, sizeof(serial));
        if (r < 0)
                return r;
        serial[0] &= 0x7f;
        BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
        if (!bn || !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert))) {
                BN_free(bn);
                return -EIO;
        }
        BN_free(bn);
        (void) X509_set_version(cert, 2);
        (void) X509_gmtime_adj(X509_getm_notBefore(cert), -60);
        (void) X509_gmtime_adj(X509_getm_notAfter(cert), 365L * 24 * 3600);
        (void) X509_set_pubkey(cert, key);
        name = X509_get_subject_name(cert);
        (void) X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                          (const unsigned char *) "keyhold dev (self-signed)", -1, -1, 0);
        (void) X509_set_issuer_name(cert, name);
        r = add_ext(cert, NID_subject_alt_name, "IP:127.0.0.1,IP:::1,DNS:localhost");
        if (r >= 0)
                r = add_ext(cert, NID_basic_constraints, "critical,CA:FALSE");
        if (r >= 0)
                r = add_ext(cert, NID_ext_key_usage, "serverAuth");
        if (r < 0)
                return r;
        if (!X509_sign(cert, key, EVP_sha256()))
                return -EIO;
        r = write_pem(cfg->server.tls_key, key, NULL, 0600);
        if (r < 0)
                return r;
        return write_pem(cfg->server.tls_cert, NULL, cert, 0644);
}

static int ensure_dev_issuer(const struct kh_config *cfg) {
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        char key_path[4096];
        char *jwks = NULL;
        int r;

        r = path_in(cfg, KH_DEV_ISSUER_KEY_FILE, key_path, sizeof(key_path));
        if (r < 0)
                return r;
        if (access(key_path, F_OK) == 0 && access(cfg->tenants[0].jwks_file, F_OK) == 0)
                return 0;
        key = EVP_EC_gen("P-256");
        if (!key)
                return -ENOMEM;
        r = kh_jwk_public_json(key, KH_DEV_ISSUER_KID, KH_JWT_ALG_ES256, &jwks);
        if (r < 0)
                return r;
        r = kh_file_write_atomic(AT_FDCWD, cfg->tenants[0].jwks_file, jwks, strlen(jwks), 0644, 0);
        free(jwks);
        if (r < 0)
                return r;
        return write_pem(key_path, key, NULL, 0600);
}

int kh_dev_prepare(const struct kh_config *cfg, const char **ret_what) {
        int r;

        for (size_t i = 0; i < cfg->server.n_listen; i++)
                if (!kh_host_is_loopback(cfg->server.listen[i].host)) {
                        *ret_what = "dev mode listens on loopback addresses only";
                        return -EPERM;
                }
        if (cfg->n_tenants != 1 || !cfg->tenants[0].jwks_file) {
                *ret_what = "dev mode serves exactly one tenant with the built-in issuer";
                return -EPERM;
        }
        if (mkdir(cfg->data_dir, 0700) < 0 && errno != EEXIST) {
                *ret_what = cfg->data_dir;
                return -errno;
        }
        *ret_what = cfg->keystore.master_key_file;
        r = ensure_master_key(cfg);
        if (r < 0)
                return r;
        *ret_what = cfg->server.tls_cert;
        r = ensure_tls(cfg);
        if (r < 0)
                return r;
        *ret_what = KH_DEV_ISSUER_KEY_FILE;
        return ensure_dev_issuer(cfg);
}
