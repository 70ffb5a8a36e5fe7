/* Internal to src/config/: the keys of keys.def and what sets them. The parse state, one
 * generic setter per value type, the defaults, freeing, and the recording of the first error.
 * The readers (config-ini.c, config-env.c) and the entry points (config.c) call this; it calls
 * nothing in src/config/ but the value parsers of config-values.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

enum sect { S_SERVER, S_STORAGE, S_KEYSTORE, S_AUDIT, S_JOBS, S_TENANT, S_NONE };

struct kh_cfg_section {
        const char *name;       /* "server"; tenants: "tenant" */
        const char *env_prefix; /* "KEYHOLD_SERVER_"; tenants: "KEYHOLD_TENANT_" */
};
extern const struct kh_cfg_section kh_cfg_sections[S_NONE];

/* A key's index in kh_cfg_keys[]: KH_CFG_SERVER_listen, KH_CFG_TENANT_issuer, ... (the part
 * after the section is the key's name as written in the file). */
enum kh_cfg_key_id {
#define KH_CFG_KEY(section_, key_, ...) KH_CFG_##section_##_##key_,
#include "keys.def"
#undef KH_CFG_KEY
        KH_CFG_N_KEYS
};

enum kh_cfg_type {
        KH_CFG_T_STR,
        KH_CFG_T_SECRET,
        KH_CFG_T_ISSUER,
        KH_CFG_T_ENUM,
        KH_CFG_T_UINT,
        KH_CFG_T_BOOL,
        KH_CFG_T_LISTEN,
        KH_CFG_T_ORIGINS,
        KH_CFG_T_MATCHERS,
};

/* One row of keys.def (which says what each column means). */
struct kh_cfg_key {
        enum sect sect;
        const char *name;
        enum kh_cfg_type type;
        size_t offset;       /* of the field in its section's struct */
        size_t count_offset; /* LISTEN, ORIGINS, MATCHERS: of the size_t n_<field> */
        struct {
                uint64_t min, max, step;   /* UINT */
                const char *const *one_of; /* ENUM: NULL-terminated */
        } values;
        const char *def;
        const char *reason;
};
extern const struct kh_cfg_key kh_cfg_keys[KH_CFG_N_KEYS];

/* The key of section s named name[0..len) exactly, or -ENOENT. */
int kh_cfg_key_find(enum sect s, const char *name, size_t len);

/* Where a value came from, for error messages after merging: a file line or a variable. */
struct kh_cfg_origin {
        unsigned line;   /* 0: not from the file */
        const char *env; /* the variable's name (not NUL-terminated), NULL if not from it */
        size_t env_len;
};

struct kh_cfg_tenant_origin {
        unsigned section_line;
        struct kh_cfg_origin key[KH_CFG_N_KEYS]; /* indexed by key id; tenant keys only */
};

struct kh_cfg_ctx {
        struct kh_config *cfg;
        struct kh_config_error *err;
        int r;    /* the first failure; 0 while there is none */
        bool dev; /* a tenant issuer other than KH_DEV_ISSUER is refused */

        struct kh_cfg_origin fixed[KH_CFG_N_KEYS]; /* [server], [storage], [keystore] keys */
        struct kh_cfg_tenant_origin *tenant_origins; /* parallel to cfg->tenants */
        size_t tenants_cap;
};

/* Records the first failure (later ones are dropped) in c->err; returns -EINVAL (or the earlier
 * failure). key[0..key_len) is "section.key", a variable's name or a section. */
__attribute__((format(printf, 5, 6))) int kh_cfg_fail(struct kh_cfg_ctx *c, unsigned line,
                                                      const char *key, size_t key_len,
                                                      const char *fmt, ...);

/* kh_cfg_fail() naming where key k (of tenant t) got its value: the variable, or section.key
 * and its line (for a tenant key never set, its section's line; else 0). */
__attribute__((format(printf, 4, 5))) int kh_cfg_fail_at(struct kh_cfg_ctx *c, size_t t,
                                                         enum kh_cfg_key_id k, const char *fmt,
                                                         ...);

/* "server", "tenant.default" ("" for S_NONE) and "server.listen", truncated to 127 bytes. */
void kh_cfg_section_label(const struct kh_cfg_ctx *c, enum sect s, size_t t,
                          char buf[static 128]);
void kh_cfg_key_label(const struct kh_cfg_ctx *c, enum sect s, size_t t, const char *name,
                      char buf[static 128]);

/* The variable that sets key k (of tenant t): "KEYHOLD_KEYSTORE_PASSPHRASE",
 * "KEYHOLD_TENANT_ACME_CORP_ISSUER"; truncated to 127 bytes. */
void kh_cfg_env_label(const struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k,
                      char buf[static 128]);

/* Where key k (of tenant t, for a tenant key) got its value so far. */
struct kh_cfg_origin *kh_cfg_origin_of(struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k);

/* Index of the tenant with this id in cfg->tenants: 0 or -ENOENT. */
int kh_cfg_tenant_find(const struct kh_config *cfg, const char *id, size_t len, size_t *ret);

/* The tenant with this (valid) id, added with its defaults if new. Returns 0, -E2BIG or
 * -ENOMEM. */
int kh_cfg_tenant_get(struct kh_cfg_ctx *c, const char *id, size_t len, size_t *ret);

/* Sets the defaults of section s (s < S_TENANT; a tenant gets its own from
 * kh_cfg_tenant_get()). Returns 0 or -ENOMEM. */
int kh_cfg_section_init(struct kh_cfg_ctx *c, enum sect s);

/* Frees what the keys of section s (tenant t) hold; secrets are wiped first. */
void kh_cfg_section_free(struct kh_config *cfg, enum sect s, size_t t);

/* Sets key k of tenant t (for a tenant key) from text, parsed and checked for its type.
 * Returns 0, -EINVAL with *ret_reason, or -ENOMEM; the field is unchanged on failure. */
int kh_cfg_set(struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k, const char *value,
               const char **ret_reason);
