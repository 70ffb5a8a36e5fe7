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
#include "crypto/selfsigned.h"
#include "token/jwt-sign.h"


static int path_in(const struct kh_config *cfg, const char *name, char *out, size_t len) {
        int n = snprintf(out, len, "%s/%s", cfg->data_dir, name);
        return n < 0 || (size_t) n >= len ? -ENAMETOOLONG : 0;
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

/* A self-signed certificate for the loopback names, valid for one year. */
static int ensure_tls(const struct kh_config *cfg) {
        if (access(cfg->server.tls_cert, F_OK) == 0 && access(cfg->server.tls_key, F_OK) == 0)
                return 0;
        return kh_selfsigned_write("keyhold dev (self-signed)", "IP:127.0.0.1,IP:::1,DNS:localhost",
                                   365, cfg->server.tls_key, cfg->server.tls_cert);
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
        return kh_pem_write(key_path, key, NULL, 0600);
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
