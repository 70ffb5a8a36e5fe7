/* The entry points and the rules that span keys. The file is read by config-ini.c, the
 * environment by config-env.c; both set keys through config-keys.c, as this file does. */
#include "config.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/file.h"
#include "common/net.h"
#include "config-readers.h"
#include "dev-names.h"

/* ---- after merging ---- */

/* [server] replica: a name that fits an audit chain's id (audit/record.h
 * kh_audit_replica_is_valid(), which this library does not link). */
static bool replica_ok(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 32 || s[0] == '-')
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static int validate(struct kh_cfg_ctx *c) {
        const struct kh_config *cfg = c->cfg;
        const struct kh_config_server *srv = &cfg->server;
        const struct kh_config_keystore *ks = &cfg->keystore;
        const struct kh_cfg_origin *slot = kh_cfg_origin_of(c, 0, KH_CFG_KEYSTORE_slot);

        if (strcmp(cfg->storage.driver, "sqlite") == 0 && !cfg->storage.path)
                return kh_cfg_fail_at(c, 0, KH_CFG_STORAGE_path,
                                      "is required when driver = sqlite");
        if (strcmp(cfg->storage.driver, "postgresql") == 0 && !cfg->storage.url)
                return kh_cfg_fail_at(c, 0, KH_CFG_STORAGE_url,
                                      "is required when driver = postgresql");
        if (cfg->storage.password_file && cfg->storage.password)
                return kh_cfg_fail_at(c, 0, KH_CFG_STORAGE_password_file,
                                      "set either password_file or KEYHOLD_STORAGE_PASSWORD, "
                                      "not both");
        c->cfg->keystore.has_slot = slot->line != 0 || slot->env != NULL;
        if (!ks->path && strcmp(ks->driver, "pkcs11") != 0)
                return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_path, "is required");
        if (srv->replica && !replica_ok(srv->replica))
                return kh_cfg_fail_at(c, 0, KH_CFG_SERVER_replica,
                                      "must be 1 to 32 of a-z, 0-9 and '-', not starting with '-'");
        if (srv->admin_socket && strlen(srv->admin_socket) > KH_ADMIN_SOCKET_PATH_MAX)
                return kh_cfg_fail_at(c, 0, KH_CFG_SERVER_admin_socket,
                                      "is longer than 107 bytes (the limit of a Unix socket path)");
        if (strcmp(ks->driver, "file") == 0) {
                if (ks->master_key_file && ks->passphrase)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_master_key_file,
                                              "set either master_key_file or "
                                              "KEYHOLD_KEYSTORE_PASSPHRASE, not both");
                /* neither: the server starts sealed, and an operator unseals it with the
                 * passphrase or key (DESIGN.md "Administration") */
        }
        if (strcmp(ks->driver, "pkcs11") == 0) {
                if (!ks->module)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_module,
                                              "is required when driver = pkcs11");
                if (!ks->token_label && !ks->has_slot)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_token_label,
                                              "or slot is required when driver = pkcs11");
                if (ks->token_label && ks->has_slot)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_token_label,
                                              "set either token_label or slot, not both");
                if (ks->token_label && strlen(ks->token_label) > 32)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_token_label,
                                              "is longer than 32 bytes (a token label's limit)");
                /* neither pin_file nor KEYHOLD_KEYSTORE_PIN: the server starts sealed, and
                 * an operator unseals it with the PIN (DESIGN.md "Administration") */
                if (ks->pin_file && ks->pin)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_pin_file,
                                              "set either pin_file or KEYHOLD_KEYSTORE_PIN, "
                                              "not both");
                if (!ks->key_label_prefix || strlen(ks->key_label_prefix) > 32)
                        return kh_cfg_fail_at(c, 0, KH_CFG_KEYSTORE_key_label_prefix,
                                              "must be 1 to 32 bytes");
        }
        if (cfg->n_tenants == 0)
                return kh_cfg_fail(c, 0, "tenant", strlen("tenant"),
                                   "at least one [tenant.<id>] section is required");
        for (size_t t = 0; t < cfg->n_tenants; t++)
                if (!cfg->tenants[t].issuer)
                        return kh_cfg_fail_at(c, t, KH_CFG_TENANT_issuer, "is required");
        if (srv->tls_cert && !srv->tls_key)
                return kh_cfg_fail_at(c, 0, KH_CFG_SERVER_tls_key,
                                      "is required when tls_cert is set");
        if (!srv->tls_cert && srv->tls_key)
                return kh_cfg_fail_at(c, 0, KH_CFG_SERVER_tls_cert,
                                      "is required when tls_key is set");
        if (!srv->tls_cert && !srv->behind_tls_proxy)
                for (size_t i = 0; i < srv->n_listen; i++)
                        if (!kh_host_is_loopback(srv->listen[i].host))
                                return kh_cfg_fail_at(
                                        c, 0, KH_CFG_SERVER_listen,
                                        "%s is not a loopback address: plain HTTP needs "
                                        "tls_cert and tls_key, or behind_tls_proxy = true",
                                        srv->listen[i].host);
        return 0;
}

/* ---- entry points ---- */

struct kh_config *kh_config_free(struct kh_config *cfg) {
        if (!cfg)
                return NULL;
        for (size_t s = 0; s < S_TENANT; s++)
                kh_cfg_section_free(cfg, (enum sect) s, 0);
        for (size_t t = 0; t < cfg->n_tenants; t++)
                kh_cfg_section_free(cfg, S_TENANT, t);
        free(cfg->tenants);
        free(cfg->data_dir);
        free(cfg);
        return NULL;
}

static void secret_wipe(char **p) {
        if (*p) {
                OPENSSL_cleanse(*p, strlen(*p));
                free(*p);
                *p = NULL;
        }
}

void kh_config_wipe_secrets(struct kh_config *cfg) {
        secret_wipe(&cfg->keystore.passphrase);
        secret_wipe(&cfg->keystore.pin);
}

static int ctx_init(struct kh_cfg_ctx *c, struct kh_config_error *err) {
        int r;

        *c = (struct kh_cfg_ctx) { .err = err };
        c->cfg = calloc(1, sizeof(*c->cfg));
        if (!c->cfg)
                return -ENOMEM;
        for (size_t s = 0; s < S_TENANT; s++) {
                r = kh_cfg_section_init(c, (enum sect) s);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void ctx_done(struct kh_cfg_ctx *c) {
        c->cfg = kh_config_free(c->cfg);
        free(c->tenant_origins);
}

static char *path_join(const char *dir, const char *name) {
        size_t dl = strlen(dir);
        const char *sep = dl > 0 && dir[dl - 1] == '/' ? "" : "/";
        char *p = NULL;

        if (asprintf(&p, "%s%s%s", dir, sep, name) < 0)
                return NULL;
        return p;
}

static int dev_defaults(struct kh_cfg_ctx *c, const char *data_dir) {
        struct kh_config *cfg = c->cfg;
        size_t t;
        int r;

        cfg->dev = true;
        c->dev = true;
        cfg->data_dir = strdup(data_dir);
        cfg->server.tls_cert = path_join(data_dir, KH_DEV_TLS_CERT_FILE);
        cfg->server.tls_key = path_join(data_dir, KH_DEV_TLS_KEY_FILE);
        cfg->storage.path = path_join(data_dir, "keyhold.db");
        cfg->keystore.path = path_join(data_dir, "keystore");
        cfg->keystore.master_key_file = path_join(data_dir, KH_DEV_MASTER_KEY_FILE);
        free(cfg->server.admin_socket);
        cfg->server.admin_socket = path_join(data_dir, KH_DEV_ADMIN_SOCKET_FILE);
        r = kh_cfg_tenant_get(c, "default", strlen("default"), &t);
        if (r < 0)
                return r;
        cfg->tenants[t].issuer = strdup(KH_DEV_ISSUER);
        cfg->tenants[t].jwks_file = path_join(data_dir, KH_DEV_ISSUER_JWKS_FILE);
        if (!cfg->data_dir || !cfg->server.tls_cert || !cfg->server.tls_key ||
            !cfg->storage.path || !cfg->keystore.path || !cfg->keystore.master_key_file ||
            !cfg->server.admin_socket ||
            !cfg->tenants[t].issuer || !cfg->tenants[t].jwks_file)
                return -ENOMEM;
        return 0;
}

/* Every entry point in one order: defaults, then the file's text (or, with dev_data_dir, the
 * dev profile), then the environment, then the rules that span keys. */
static int build(const char *text, size_t len, const char *dev_data_dir, char *const *envp,
                 struct kh_config **ret, struct kh_config_error *err) {
        struct kh_cfg_ctx c;
        int r;

        r = ctx_init(&c, err);
        if (r >= 0)
                r = dev_data_dir ? dev_defaults(&c, dev_data_dir) : kh_cfg_ini_read(&c, text, len);
        if (r >= 0)
                r = kh_cfg_env_read(&c, envp);
        if (r >= 0)
                r = validate(&c);
        if (r >= 0)
                *ret = KH_TAKE_PTR(c.cfg);
        ctx_done(&c);
        return r < 0 ? r : 0;
}

int kh_config_parse_string(const char *text, size_t len, char *const *envp,
                           struct kh_config **ret, struct kh_config_error *ret_err) {
        struct kh_config_error scratch;
        struct kh_cfg_ctx c = { .err = ret_err ? ret_err : &scratch };

        if (len > KH_CONFIG_FILE_MAX)
                return kh_cfg_fail(&c, 0, "", 0, "the file is larger than 1 MiB");
        return build(text, len, NULL, envp, ret, c.err);
}

int kh_config_load(const char *path, char *const *envp, struct kh_config **ret,
                   struct kh_config_error *ret_err) {
        /* sensitive: a misplaced secret should not outlive the parse */
        KH_CLEANUP(kh_buf_freep) struct kh_buf text = { 0 };
        struct kh_config_error scratch;
        struct kh_cfg_ctx c = { .err = ret_err ? ret_err : &scratch };
        int r;

        if (!path)
                return kh_config_parse_string("", 0, envp, ret, ret_err);
        kh_buf_init(&text, KH_CONFIG_FILE_MAX, true);
        r = kh_file_read(AT_FDCWD, path, 0, KH_CONFIG_FILE_MAX, &text);
        if (r == -EFBIG)
                return kh_cfg_fail(&c, 0, "", 0, "the file is larger than 1 MiB");
        if (r == -EINVAL)
                return kh_cfg_fail(&c, 0, path, strlen(path), "is not a regular file");
        if (r < 0)
                return r;
        return kh_config_parse_string(text.data ? (const char *) text.data : "", text.len, envp,
                                      ret, ret_err);
}

int kh_config_dev(const char *data_dir, char *const *envp, struct kh_config **ret,
                  struct kh_config_error *ret_err) {
        struct kh_config_error scratch;

        return build(NULL, 0, data_dir, envp, ret, ret_err ? ret_err : &scratch);
}

const struct kh_config_tenant *kh_config_tenant(const struct kh_config *cfg, const char *id) {
        size_t t;

        if (!cfg || !id || kh_cfg_tenant_find(cfg, id, strlen(id), &t) < 0)
                return NULL;
        return &cfg->tenants[t];
}
