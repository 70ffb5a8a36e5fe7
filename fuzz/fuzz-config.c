/* The configuration parser on arbitrary INI text, with an empty environment. Invariants:
 * an accepted config satisfies every rule kh_config_load() promises; a refusal is -EINVAL
 * with a NUL-terminated key and reason, or -ENOMEM. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/parse.h"
#include "config/config.h"

static void check_origins(char *const *origins, size_t n) {
        CHECK(n <= KH_CORS_ORIGINS_MAX);
        for (size_t i = 0; i < n; i++) {
                size_t len = strlen(origins[i]);
                CHECK(len > 0 && origins[i][len - 1] != '/');
                CHECK(strncmp(origins[i], "http://", 7) == 0 ||
                      strncmp(origins[i], "https://", 8) == 0);
        }
}

static void check_config(const struct kh_config *cfg) {
        const struct kh_config_server *srv = &cfg->server;

        CHECK(!cfg->dev && !cfg->data_dir);
        CHECK(srv->n_listen >= 1 && srv->n_listen <= KH_LISTEN_MAX);
        for (size_t i = 0; i < srv->n_listen; i++)
                CHECK(srv->listen[i].host[0] != 0 &&
                      strnlen(srv->listen[i].host, sizeof(srv->listen[i].host)) <
                              sizeof(srv->listen[i].host));
        CHECK(!srv->tls_cert == !srv->tls_key);
        CHECK(srv->threads <= KH_THREADS_MAX);
        check_origins(srv->cors_origins, srv->n_cors_origins);

        if (strcmp(cfg->storage.driver, "sqlite") == 0)
                CHECK(cfg->storage.path != NULL);
        else
                CHECK(strcmp(cfg->storage.driver, "postgresql") == 0 && cfg->storage.url);

        CHECK(cfg->keystore.path != NULL);
        CHECK(cfg->keystore.passphrase == NULL); /* only from the environment */
        /* the unseal secrets are never read from a configuration */
        CHECK(cfg->keystore.master_key == NULL && cfg->keystore.passphrase_secret == NULL);
        /* a file store without a master key file is allowed: the server starts sealed */
        if (strcmp(cfg->keystore.driver, "file") == 0)
                CHECK(cfg->keystore.master_key_file == NULL || cfg->keystore.master_key_file[0]);
        else
                CHECK(strcmp(cfg->keystore.driver, "pkcs11") == 0);
        CHECK(cfg->keystore.rsa_bits >= 2048 && cfg->keystore.rsa_bits <= 8192 &&
              cfg->keystore.rsa_bits % 1024 == 0);

        CHECK(cfg->n_tenants >= 1 && cfg->n_tenants <= KH_TENANTS_MAX);
        for (size_t t = 0; t < cfg->n_tenants; t++) {
                const struct kh_config_tenant *tn = &cfg->tenants[t];
                CHECK(kh_tenant_id_is_valid(tn->id, strlen(tn->id)));
                CHECK(kh_config_tenant(cfg, tn->id) == tn); /* ids are unique */
                CHECK(tn->issuer && tn->issuer[0]);
                CHECK(tn->max_token_lifetime_s <= KH_TOKEN_LIFETIME_MAX_S);
                check_origins(tn->cors_origins, tn->n_cors_origins);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *const envp[] = { NULL };
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        struct kh_config_error err;
        int r;

        if (size > KH_CONFIG_FILE_MAX)
                return 0;
        r = kh_config_parse_string((const char *) data, size, envp, &cfg, &err);
        if (r < 0) {
                CHECK(cfg == NULL);
                CHECK(r == -EINVAL || r == -ENOMEM);
                if (r == -EINVAL) {
                        CHECK(strnlen(err.key, sizeof(err.key)) < sizeof(err.key));
                        CHECK(strnlen(err.reason, sizeof(err.reason)) < sizeof(err.reason));
                        CHECK(err.reason[0] != 0);
                }
                return 0;
        }
        check_config(cfg);
        return 0;
}
