/* Internal to src/config/: the parse state shared by config.c (values, validation, entry
 * points), config-ini.c (the file, through inih) and config-env.c (KEYHOLD_* variables). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* Room for a KH_CONFIG_VALUE_MAX value, its key and a comment. */
#define KH_CONFIG_LINE_MAX (2 * KH_CONFIG_VALUE_MAX)

enum sect { S_SERVER, S_STORAGE, S_KEYSTORE, S_TENANT, S_NONE };

enum { SRV_LISTEN, SRV_TLS_CERT, SRV_TLS_KEY, SRV_THREADS, SRV_CORS_ORIGINS,
       SRV_BEHIND_TLS_PROXY, SRV_PORT_FILE, SRV_N_ };
enum { STO_DRIVER, STO_PATH, STO_URL, STO_N_ };
enum { KS_DRIVER, KS_PATH, KS_MASTER_KEY_FILE, KS_RSA_BITS, KS_PASSPHRASE, KS_N_ };
enum { TEN_ISSUER, TEN_ISSUER_CA, TEN_AUDIENCE, TEN_ADMINS, TEN_JWKS_FILE, TEN_CORS_ORIGINS,
       TEN_MAX_TOKEN_LIFETIME, TEN_N_ };
#define KEYS_MAX SRV_N_ /* the largest section */

struct kh_cfg_section {
        const char *name;       /* "server"; tenants: "tenant" */
        const char *env_prefix; /* "KEYHOLD_SERVER_" */
        const char *const *keys;
        size_t n_keys;
};
extern const struct kh_cfg_section kh_cfg_sections[S_NONE];

/* Where a value came from, for error messages after merging: a file line or a variable. */
struct kh_cfg_origin {
        unsigned line;   /* 0: not from the file */
        const char *env; /* the variable's name (not NUL-terminated), NULL if not from it */
        size_t env_len;
};

struct kh_cfg_tenant_origin {
        unsigned section_line;
        struct kh_cfg_origin key[TEN_N_];
};

struct kh_cfg_ctx {
        struct kh_config *cfg;
        struct kh_config_error *err;
        int r;    /* the first failure; 0 while there is none */
        bool dev; /* a tenant issuer other than KH_DEV_ISSUER is refused */

        /* the INI text, fed to inih one line at a time so that we know the line */
        const char *text;
        size_t len, pos;
        unsigned line;
        enum sect sect; /* current section, tracked here: inih truncates long names */
        size_t tenant;  /* index of the current section's tenant */

        struct kh_cfg_origin fixed[S_TENANT][KEYS_MAX];
        struct kh_cfg_tenant_origin *tenant_origins; /* parallel to cfg->tenants */
        size_t tenants_cap;
};


/* Records the first failure (later ones are dropped) in c->err; returns -EINVAL (or the earlier
 * failure). key[0..key_len) is "section.key", a variable's name or a section. */
__attribute__((format(printf, 5, 6))) int kh_cfg_fail(struct kh_cfg_ctx *c, unsigned line,
                                                      const char *key, size_t key_len,
                                                      const char *fmt, ...);

/* "server", "tenant.default" ("" for S_NONE) and "server.listen", truncated to 127 bytes. */
void kh_cfg_section_label(const struct kh_cfg_ctx *c, enum sect s, size_t t,
                          char buf[static 128]);
void kh_cfg_key_label(const struct kh_cfg_ctx *c, enum sect s, size_t t, const char *name,
                      char buf[static 128]);

struct kh_cfg_origin *kh_cfg_origin_of(struct kh_cfg_ctx *c, enum sect s, size_t t, size_t k);

/* The tenant with this (valid) id, added if new. Returns 0, -E2BIG or -ENOMEM. */
int kh_cfg_tenant_get(struct kh_cfg_ctx *c, const char *id, size_t len, size_t *ret);

/* Sets key k of section s (tenant t). Returns 0, -EINVAL with *reason, or -ENOMEM. */
int kh_cfg_apply(struct kh_cfg_ctx *c, enum sect s, size_t t, size_t k, const char *value,
                 const char **reason);

/* config-ini.c: the file's settings. Returns 0, -EINVAL (c->err set) or -ENOMEM. */
int kh_cfg_parse_ini(struct kh_cfg_ctx *c, const char *text, size_t len);

/* config-env.c: KEYHOLD_<SECTION>_<KEY> overrides; envp may be NULL. Same returns. */
int kh_cfg_apply_env(struct kh_cfg_ctx *c, char *const *envp);
