/* Configuration values, cross-key validation and the entry points; the file is read by
 * config-ini.c, the environment by config-env.c. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/file.h"
#include "common/net.h"
#include "common/parse.h"
#include "config-internal.h"
#include "config-values.h"
#include "dev-names.h"

static const char *const server_keys[SRV_N_] = {
        [SRV_LISTEN] = "listen",           [SRV_TLS_CERT] = "tls_cert",
        [SRV_TLS_KEY] = "tls_key",         [SRV_THREADS] = "threads",
        [SRV_CORS_ORIGINS] = "cors_origins", [SRV_BEHIND_TLS_PROXY] = "behind_tls_proxy",
        [SRV_PORT_FILE] = "port_file",
};
static const char *const storage_keys[STO_N_] = {
        [STO_DRIVER] = "driver", [STO_PATH] = "path", [STO_URL] = "url",
};
/* passphrase is a key so that the environment can set it; the file may not. */
static const char *const keystore_keys[KS_N_] = {
        [KS_DRIVER] = "driver", [KS_PATH] = "path", [KS_MASTER_KEY_FILE] = "master_key_file",
        [KS_RSA_BITS] = "rsa_bits", [KS_PASSPHRASE] = "passphrase",
};
static const char *const tenant_keys[TEN_N_] = {
        [TEN_ISSUER] = "issuer",       [TEN_ISSUER_CA] = "issuer_ca", [TEN_AUDIENCE] = "audience",
        [TEN_ADMINS] = "admins",       [TEN_JWKS_FILE] = "jwks_file",
        [TEN_CORS_ORIGINS] = "cors_origins", [TEN_MAX_TOKEN_LIFETIME] = "max_token_lifetime",
};

const struct kh_cfg_section kh_cfg_sections[] = {
        [S_SERVER] = { "server", "KEYHOLD_SERVER_", server_keys, SRV_N_ },
        [S_STORAGE] = { "storage", "KEYHOLD_STORAGE_", storage_keys, STO_N_ },
        [S_KEYSTORE] = { "keystore", "KEYHOLD_KEYSTORE_", keystore_keys, KS_N_ },
        [S_TENANT] = { "tenant", "KEYHOLD_TENANT_", tenant_keys, TEN_N_ },
};

__attribute__((format(printf, 5, 0))) static int vfail(struct kh_cfg_ctx *c, unsigned line,
                                                       const char *key, size_t key_len,
                                                       const char *fmt, va_list ap) {
        if (c->r < 0)
                return c->r; /* keep the first reason */
        c->r = -EINVAL;
        c->err->line = line;
        (void) snprintf(c->err->key, sizeof(c->err->key), "%.*s", (int) key_len, key);
        (void) vsnprintf(c->err->reason, sizeof(c->err->reason), fmt, ap);
        return -EINVAL;
}

int kh_cfg_fail(struct kh_cfg_ctx *c, unsigned line, const char *key, size_t key_len,
                const char *fmt, ...) {
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vfail(c, line, key, key_len, fmt, ap);
        va_end(ap);
        return r;
}

/* "server", "tenant.default" */
void kh_cfg_section_label(const struct kh_cfg_ctx *c, enum sect s, size_t t,
                          char buf[static 128]) {
        if (s == S_TENANT)
                (void) snprintf(buf, 128, "tenant.%s", c->cfg->tenants[t].id);
        else if (s == S_NONE)
                buf[0] = 0;
        else
                (void) snprintf(buf, 128, "%s", kh_cfg_sections[s].name);
}

/* "server.listen", "tenant.default.issuer" */
void kh_cfg_key_label(const struct kh_cfg_ctx *c, enum sect s, size_t t, const char *name,
                      char buf[static 128]) {
        size_t n;

        /* Truncated past 127 bytes: only an unknown key from the file can be that long. */
        kh_cfg_section_label(c, s, t, buf);
        n = strlen(buf);
        if (n < 127)
                buf[n++] = '.';
        for (; n < 127 && *name; name++)
                buf[n++] = *name;
        buf[n] = 0;
}

struct kh_cfg_origin *kh_cfg_origin_of(struct kh_cfg_ctx *c, enum sect s, size_t t, size_t k) {
        return s == S_TENANT ? &c->tenant_origins[t].key[k] : &c->fixed[s][k];
}

/* Fails naming where key k got its value: the variable, or section.key and its line (for a
 * missing tenant key, its section's line). */
__attribute__((format(printf, 5, 6))) static int
fail_at(struct kh_cfg_ctx *c, enum sect s, size_t t, size_t k, const char *fmt, ...) {
        const struct kh_cfg_origin *o = kh_cfg_origin_of(c, s, t, k);
        char label[128];
        unsigned line = o->line;
        va_list ap;
        int r;

        va_start(ap, fmt);
        if (o->env) {
                r = vfail(c, 0, o->env, o->env_len, fmt, ap);
        } else {
                kh_cfg_key_label(c, s, t, kh_cfg_sections[s].keys[k], label);
                if (s == S_TENANT && line == 0)
                        line = c->tenant_origins[t].section_line;
                r = vfail(c, line, label, strlen(label), fmt, ap);
        }
        va_end(ap);
        return r;
}

static int tenant_find(const struct kh_config *cfg, const char *id, size_t len, size_t *ret) {
        for (size_t i = 0; i < cfg->n_tenants; i++)
                if (strlen(cfg->tenants[i].id) == len && memcmp(cfg->tenants[i].id, id, len) == 0) {
                        *ret = i;
                        return 0;
                }
        return -ENOENT;
}

int kh_cfg_tenant_get(struct kh_cfg_ctx *c, const char *id, size_t len, size_t *ret) {
        struct kh_config *cfg = c->cfg;
        size_t i;

        if (tenant_find(cfg, id, len, ret) == 0)
                return 0;
        if (cfg->n_tenants == KH_TENANTS_MAX)
                return -E2BIG;
        if (cfg->n_tenants == c->tenants_cap) {
                size_t cap = c->tenants_cap ? 2 * c->tenants_cap : 4;
                struct kh_config_tenant *t = reallocarray(cfg->tenants, cap, sizeof(*t));
                if (!t)
                        return -ENOMEM;
                cfg->tenants = t;
                struct kh_cfg_tenant_origin *o = reallocarray(c->tenant_origins, cap, sizeof(*o));
                if (!o)
                        return -ENOMEM;
                c->tenant_origins = o;
                c->tenants_cap = cap;
        }
        i = cfg->n_tenants++;
        memset(&cfg->tenants[i], 0, sizeof(cfg->tenants[i]));
        memset(&c->tenant_origins[i], 0, sizeof(c->tenant_origins[i]));
        memcpy(cfg->tenants[i].id, id, len);
        cfg->tenants[i].max_token_lifetime_s = KH_TOKEN_LIFETIME_DEFAULT_S;
        *ret = i;
        return 0;
}

/* Empty means unset, so that the environment can clear a value from the file. */
static int set_str(char **field, const char *value) {
        char *v = NULL;

        if (*value) {
                v = strdup(value);
                if (!v)
                        return -ENOMEM;
        }
        free(*field);
        *field = v;
        return 0;
}

static void free_secret_str(char *s) {
        if (s) {
                OPENSSL_cleanse(s, strlen(s));
                free(s);
        }
}

static int set_origins(char *list[static KH_CORS_ORIGINS_MAX], size_t *n, const char *value,
                       const char **reason) {
        char *parsed[KH_CORS_ORIGINS_MAX] = { 0 };
        size_t np = 0;
        int r;

        if (*value) {
                r = kh_config_origins_parse(value, parsed, &np, reason);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < *n; i++)
                free(list[i]);
        memcpy(list, parsed, sizeof(parsed));
        *n = np;
        return 0;
}

static int set_server(struct kh_config_server *srv, size_t k, const char *value,
                      const char **reason) {
        uint64_t v;
        int r;

        switch (k) {
        case SRV_LISTEN:
                if (!*value) {
                        *reason = "must not be empty";
                        return -EINVAL;
                }
                return kh_config_listen_parse(value, srv->listen, &srv->n_listen, reason);
        case SRV_TLS_CERT:
                return set_str(&srv->tls_cert, value);
        case SRV_TLS_KEY:
                return set_str(&srv->tls_key, value);
        case SRV_THREADS:
                r = kh_parse_u64(value, strlen(value), KH_THREADS_MAX, &v);
                if (r < 0) {
                        *reason = "must be a number between 0 and 256";
                        return -EINVAL;
                }
                srv->threads = (unsigned) v;
                return 0;
        case SRV_CORS_ORIGINS:
                return set_origins(srv->cors_origins, &srv->n_cors_origins, value, reason);
        case SRV_BEHIND_TLS_PROXY:
                if (kh_parse_bool(value, &srv->behind_tls_proxy) < 0) {
                        *reason = "must be true or false";
                        return -EINVAL;
                }
                return 0;
        case SRV_PORT_FILE:
                return set_str(&srv->port_file, value);
        default:
                abort();
        }
}

static int set_driver(char **field, const char *value, const char *a, const char *b,
                      const char **reason, const char *why) {
        if (strcmp(value, a) != 0 && strcmp(value, b) != 0) {
                *reason = why;
                return -EINVAL;
        }
        return set_str(field, value);
}

static int set_storage(struct kh_config_storage *sto, size_t k, const char *value,
                       const char **reason) {
        switch (k) {
        case STO_DRIVER:
                return set_driver(&sto->driver, value, "sqlite", "postgresql", reason,
                                  "must be sqlite or postgresql");
        case STO_PATH:
                return set_str(&sto->path, value);
        case STO_URL:
                return set_str(&sto->url, value);
        default:
                abort();
        }
}

static int set_keystore(struct kh_config_keystore *ks, size_t k, const char *value,
                        const char **reason) {
        char *v = NULL;
        uint64_t bits;

        switch (k) {
        case KS_DRIVER:
                return set_driver(&ks->driver, value, "file", "pkcs11", reason,
                                  "must be file or pkcs11");
        case KS_PATH:
                return set_str(&ks->path, value);
        case KS_MASTER_KEY_FILE:
                return set_str(&ks->master_key_file, value);
        case KS_RSA_BITS:
                if (kh_parse_u64(value, strlen(value), 8192, &bits) < 0 || bits < 2048 ||
                    bits % 1024 != 0) {
                        *reason = "must be 2048, 3072, 4096, 5120, 6144, 7168 or 8192";
                        return -EINVAL;
                }
                ks->rsa_bits = (unsigned) bits;
                return 0;
        case KS_PASSPHRASE:
                if (*value) {
                        v = strdup(value);
                        if (!v)
                                return -ENOMEM;
                }
                free_secret_str(ks->passphrase);
                ks->passphrase = v;
                return 0;
        default:
                abort();
        }
}

static int set_tenant(struct kh_cfg_ctx *c, struct kh_config_tenant *t, size_t k,
                      const char *value, const char **reason) {
        switch (k) {
        case TEN_ISSUER:
                if (c->dev && strcmp(value, KH_DEV_ISSUER) != 0) {
                        *reason = "dev mode refuses a production issuer";
                        return -EINVAL;
                }
                if (*value && !kh_config_issuer_is_valid(value)) {
                        *reason = "must be an http:// or https:// URL";
                        return -EINVAL;
                }
                return set_str(&t->issuer, value);
        case TEN_ISSUER_CA:
                return set_str(&t->issuer_ca, value);
        case TEN_AUDIENCE:
                return set_str(&t->audience, value);
        case TEN_ADMINS:
                return set_str(&t->admins, value);
        case TEN_JWKS_FILE:
                return set_str(&t->jwks_file, value);
        case TEN_CORS_ORIGINS:
                return set_origins(t->cors_origins, &t->n_cors_origins, value, reason);
        case TEN_MAX_TOKEN_LIFETIME: {
                uint64_t v;

                if (kh_parse_u64(value, strlen(value), KH_TOKEN_LIFETIME_MAX_S, &v) < 0) {
                        *reason = "must be a number of seconds from 0 (no cap) to 315360000";
                        return -EINVAL;
                }
                t->max_token_lifetime_s = (uint32_t) v;
                return 0;
        }
        default:
                abort();
        }
}

int kh_cfg_apply(struct kh_cfg_ctx *c, enum sect s, size_t t, size_t k, const char *value,
                 const char **reason) {
        if (strlen(value) > KH_CONFIG_VALUE_MAX) {
                *reason = "is longer than 4096 bytes";
                return -EINVAL;
        }
        switch (s) {
        case S_SERVER:
                return set_server(&c->cfg->server, k, value, reason);
        case S_STORAGE:
                return set_storage(&c->cfg->storage, k, value, reason);
        case S_KEYSTORE:
                return set_keystore(&c->cfg->keystore, k, value, reason);
        case S_TENANT:
                return set_tenant(c, &c->cfg->tenants[t], k, value, reason);
        default:
                abort();
        }
}

/* ---- after merging ---- */

static int validate(struct kh_cfg_ctx *c) {
        const struct kh_config *cfg = c->cfg;
        const struct kh_config_server *srv = &cfg->server;
        const struct kh_config_keystore *ks = &cfg->keystore;

        if (strcmp(cfg->storage.driver, "sqlite") == 0 && !cfg->storage.path)
                return fail_at(c, S_STORAGE, 0, STO_PATH, "is required when driver = sqlite");
        if (strcmp(cfg->storage.driver, "postgresql") == 0 && !cfg->storage.url)
                return fail_at(c, S_STORAGE, 0, STO_URL, "is required when driver = postgresql");
        if (!ks->path)
                return fail_at(c, S_KEYSTORE, 0, KS_PATH, "is required");
        if (strcmp(ks->driver, "file") == 0) {
                if (ks->master_key_file && ks->passphrase)
                        return fail_at(c, S_KEYSTORE, 0, KS_MASTER_KEY_FILE,
                                       "set either master_key_file or "
                                       "KEYHOLD_KEYSTORE_PASSPHRASE, not both");
                if (!ks->master_key_file && !ks->passphrase)
                        return fail_at(c, S_KEYSTORE, 0, KS_MASTER_KEY_FILE,
                                       "is required unless KEYHOLD_KEYSTORE_PASSPHRASE is set");
        }
        if (cfg->n_tenants == 0)
                return kh_cfg_fail(c, 0, "tenant", strlen("tenant"),
                                   "at least one [tenant.<id>] section is required");
        for (size_t t = 0; t < cfg->n_tenants; t++)
                if (!cfg->tenants[t].issuer)
                        return fail_at(c, S_TENANT, t, TEN_ISSUER, "is required");
        if (srv->tls_cert && !srv->tls_key)
                return fail_at(c, S_SERVER, 0, SRV_TLS_KEY, "is required when tls_cert is set");
        if (!srv->tls_cert && srv->tls_key)
                return fail_at(c, S_SERVER, 0, SRV_TLS_CERT, "is required when tls_key is set");
        if (!srv->tls_cert && !srv->behind_tls_proxy)
                for (size_t i = 0; i < srv->n_listen; i++)
                        if (!kh_host_is_loopback(srv->listen[i].host))
                                return fail_at(c, S_SERVER, 0, SRV_LISTEN,
                                               "%s is not a loopback address: plain HTTP needs "
                                               "tls_cert and tls_key, or behind_tls_proxy = true",
                                               srv->listen[i].host);
        return 0;
}

/* ---- entry points ---- */

struct kh_config *kh_config_free(struct kh_config *cfg) {
        if (!cfg)
                return NULL;
        free(cfg->server.tls_cert);
        free(cfg->server.tls_key);
        free(cfg->server.port_file);
        for (size_t i = 0; i < cfg->server.n_cors_origins; i++)
                free(cfg->server.cors_origins[i]);
        free(cfg->storage.driver);
        free(cfg->storage.path);
        free(cfg->storage.url);
        free(cfg->keystore.driver);
        free(cfg->keystore.path);
        free(cfg->keystore.master_key_file);
        free_secret_str(cfg->keystore.passphrase);
        for (size_t t = 0; t < cfg->n_tenants; t++) {
                struct kh_config_tenant *tn = &cfg->tenants[t];
                free(tn->issuer);
                free(tn->issuer_ca);
                free(tn->audience);
                free(tn->admins);
                free(tn->jwks_file);
                for (size_t i = 0; i < tn->n_cors_origins; i++)
                        free(tn->cors_origins[i]);
        }
        free(cfg->tenants);
        free(cfg->data_dir);
        free(cfg);
        return NULL;
}

static int ctx_init(struct kh_cfg_ctx *c, struct kh_config_error *err) {
        struct kh_config *cfg;

        *c = (struct kh_cfg_ctx) { .err = err, .sect = S_NONE };
        cfg = calloc(1, sizeof(*cfg));
        if (!cfg)
                return -ENOMEM;
        c->cfg = cfg;
        (void) snprintf(cfg->server.listen[0].host, sizeof(cfg->server.listen[0].host), "%s",
                        "127.0.0.1");
        cfg->server.listen[0].port = 8443;
        cfg->server.n_listen = 1;
        cfg->keystore.rsa_bits = 3072;
        cfg->storage.driver = strdup("sqlite");
        cfg->keystore.driver = strdup("file");
        if (!cfg->storage.driver || !cfg->keystore.driver)
                return -ENOMEM;
        return 0;
}

static void ctx_done(struct kh_cfg_ctx *c) {
        c->cfg = kh_config_free(c->cfg);
        free(c->tenant_origins);
}

int kh_config_parse_string(const char *text, size_t len, char *const *envp,
                           struct kh_config **ret, struct kh_config_error *ret_err) {
        struct kh_config_error scratch;
        struct kh_cfg_ctx c;
        int r;

        if (len > KH_CONFIG_FILE_MAX) {
                c = (struct kh_cfg_ctx) { .err = ret_err ? ret_err : &scratch };
                return kh_cfg_fail(&c, 0, "", 0, "the file is larger than 1 MiB");
        }
        r = ctx_init(&c, ret_err ? ret_err : &scratch);
        if (r >= 0)
                r = kh_cfg_parse_ini(&c, text, len);
        if (r >= 0)
                r = kh_cfg_apply_env(&c, envp);
        if (r >= 0)
                r = validate(&c);
        if (r >= 0)
                *ret = KH_TAKE_PTR(c.cfg);
        ctx_done(&c);
        return r < 0 ? r : 0;
}

int kh_config_load(const char *path, char *const *envp, struct kh_config **ret,
                   struct kh_config_error *ret_err) {
        /* sensitive: a misplaced secret should not outlive the parse */
        KH_CLEANUP(kh_buf_freep) struct kh_buf text;
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
        r = kh_cfg_tenant_get(c, "default", strlen("default"), &t);
        if (r < 0)
                return r;
        cfg->tenants[t].issuer = strdup(KH_DEV_ISSUER);
        cfg->tenants[t].jwks_file = path_join(data_dir, KH_DEV_ISSUER_JWKS_FILE);
        if (!cfg->data_dir || !cfg->server.tls_cert || !cfg->server.tls_key ||
            !cfg->storage.path || !cfg->keystore.path || !cfg->keystore.master_key_file ||
            !cfg->tenants[t].issuer || !cfg->tenants[t].jwks_file)
                return -ENOMEM;
        return 0;
}

int kh_config_dev(const char *data_dir, char *const *envp, struct kh_config **ret,
                  struct kh_config_error *ret_err) {
        struct kh_config_error scratch;
        struct kh_cfg_ctx c;
        int r;

        r = ctx_init(&c, ret_err ? ret_err : &scratch);
        if (r >= 0)
                r = dev_defaults(&c, data_dir);
        if (r >= 0)
                r = kh_cfg_apply_env(&c, envp);
        if (r >= 0)
                r = validate(&c);
        if (r >= 0)
                *ret = KH_TAKE_PTR(c.cfg);
        ctx_done(&c);
        return r < 0 ? r : 0;
}

const struct kh_config_tenant *kh_config_tenant(const struct kh_config *cfg, const char *id) {
        size_t t;

        if (!cfg || !id || tenant_find(cfg, id, strlen(id), &t) < 0)
                return NULL;
        return &cfg->tenants[t];
}
