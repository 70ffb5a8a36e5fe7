/* The table of keys (keys.def) and what it drives: one setter per value type, the defaults,
 * freeing, and the first error with the key and line it concerns. */
#include "config-keys.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/parse.h"
#include "config-values.h"

const struct kh_cfg_section kh_cfg_sections[] = {
        [S_SERVER] = { "server", "KEYHOLD_SERVER_" },
        [S_STORAGE] = { "storage", "KEYHOLD_STORAGE_" },
        [S_KEYSTORE] = { "keystore", "KEYHOLD_KEYSTORE_" },
        [S_AUDIT] = { "audit", "KEYHOLD_AUDIT_" },
        [S_JOBS] = { "jobs", "KEYHOLD_JOBS_" },
        [S_TENANT] = { "tenant", "KEYHOLD_TENANT_" },
};

/* ---- the table ---- */

#define KH_CFG_STRUCT_SERVER struct kh_config_server
#define KH_CFG_STRUCT_STORAGE struct kh_config_storage
#define KH_CFG_STRUCT_KEYSTORE struct kh_config_keystore
#define KH_CFG_STRUCT_AUDIT struct kh_config_audit
#define KH_CFG_STRUCT_JOBS struct kh_config_jobs
#define KH_CFG_STRUCT_TENANT struct kh_config_tenant

/* The C type each value type's field has (a list's array as a pointer to its first element). */
#define KH_CFG_CTYPE_STR char *
#define KH_CFG_CTYPE_SECRET char *
#define KH_CFG_CTYPE_ISSUER char *
#define KH_CFG_CTYPE_ENUM char *
#define KH_CFG_CTYPE_UINT unsigned
#define KH_CFG_CTYPE_BOOL bool
#define KH_CFG_CTYPE_LISTEN struct kh_config_listen *
#define KH_CFG_CTYPE_ORIGINS char **
#define KH_CFG_CTYPE_MATCHERS struct kh_config_matcher *

/* Where a list keeps its length: next to the array, as n_<field>. */
#define KH_CFG_COUNT_STR(st, f) 0
#define KH_CFG_COUNT_SECRET(st, f) 0
#define KH_CFG_COUNT_ISSUER(st, f) 0
#define KH_CFG_COUNT_ENUM(st, f) 0
#define KH_CFG_COUNT_UINT(st, f) 0
#define KH_CFG_COUNT_BOOL(st, f) 0
#define KH_CFG_COUNT_LISTEN(st, f) offsetof(st, n_##f)
#define KH_CFG_COUNT_ORIGINS(st, f) offsetof(st, n_##f)
#define KH_CFG_COUNT_MATCHERS(st, f) offsetof(st, n_##f)

/* A wrong field type in keys.def fails here, naming the key. */
#define KH_CFG_KEY(section_, key_, field_, type_, ...)                                           \
        _Static_assert(_Generic(((KH_CFG_STRUCT_##section_ *) 0)->field_,                        \
                                KH_CFG_CTYPE_##type_: 1,                                         \
                                default: 0),                                                     \
                       "keys.def: " #section_ " " #key_ ": " #field_ " is not a " #type_ " field");
#include "keys.def"
#undef KH_CFG_KEY

#define ANY { 0 }
#define RANGE(lo, hi, multiple) { .min = (lo), .max = (hi), .step = (multiple) }
#define ONE_OF(...) { .one_of = (const char *const[]){ __VA_ARGS__, NULL } }
#define TEXT(number) TEXT_(number)
#define TEXT_(number) #number

const struct kh_cfg_key kh_cfg_keys[] = {
#define KH_CFG_KEY(section_, key_, field_, type_, values_, def_, reason_)                        \
        [KH_CFG_##section_##_##key_] = {                                                         \
                .sect = S_##section_,                                                            \
                .name = #key_,                                                                   \
                .type = KH_CFG_T_##type_,                                                        \
                .offset = offsetof(KH_CFG_STRUCT_##section_, field_),                            \
                .count_offset = KH_CFG_COUNT_##type_(KH_CFG_STRUCT_##section_, field_),          \
                .values = values_,                                                               \
                .def = def_,                                                                     \
                .reason = reason_,                                                               \
        },
#include "keys.def"
#undef KH_CFG_KEY
};

#undef ANY
#undef RANGE
#undef ONE_OF
#undef TEXT
#undef TEXT_

int kh_cfg_key_find(enum sect s, const char *name, size_t len) {
        for (size_t k = 0; k < KH_CFG_N_KEYS; k++)
                if (kh_cfg_keys[k].sect == s && strlen(kh_cfg_keys[k].name) == len &&
                    memcmp(kh_cfg_keys[k].name, name, len) == 0)
                        return (int) k;
        return -ENOENT;
}

/* ---- errors ---- */

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

int kh_cfg_fail_at(struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k, const char *fmt, ...) {
        const struct kh_cfg_origin *o = kh_cfg_origin_of(c, t, k);
        enum sect s = kh_cfg_keys[k].sect;
        char label[128];
        unsigned line = o->line;
        va_list ap;
        int r;

        va_start(ap, fmt);
        if (o->env) {
                r = vfail(c, 0, o->env, o->env_len, fmt, ap);
        } else {
                kh_cfg_key_label(c, s, t, kh_cfg_keys[k].name, label);
                if (s == S_TENANT && line == 0)
                        line = c->tenant_origins[t].section_line;
                r = vfail(c, line, label, strlen(label), fmt, ap);
        }
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

/* Appends s upper-cased, '-' as '_', to buf[*n..127). */
static void env_append(char buf[static 128], size_t *n, const char *s) {
        for (; *n < 127 && *s; s++)
                buf[(*n)++] = *s == '-' ? '_' : (char) toupper((unsigned char) *s);
        buf[*n] = 0;
}

void kh_cfg_env_label(const struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k,
                      char buf[static 128]) {
        enum sect s = kh_cfg_keys[k].sect;
        size_t n = 0;

        env_append(buf, &n, kh_cfg_sections[s].env_prefix);
        if (s == S_TENANT) {
                env_append(buf, &n, c->cfg->tenants[t].id);
                env_append(buf, &n, "_");
        }
        env_append(buf, &n, kh_cfg_keys[k].name);
}

struct kh_cfg_origin *kh_cfg_origin_of(struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k) {
        return kh_cfg_keys[k].sect == S_TENANT ? &c->tenant_origins[t].key[k] : &c->fixed[k];
}

/* ---- tenants ---- */

int kh_cfg_tenant_find(const struct kh_config *cfg, const char *id, size_t len, size_t *ret) {
        for (size_t i = 0; i < cfg->n_tenants; i++)
                if (strlen(cfg->tenants[i].id) == len && memcmp(cfg->tenants[i].id, id, len) == 0) {
                        *ret = i;
                        return 0;
                }
        return -ENOENT;
}

static int section_defaults(struct kh_cfg_ctx *c, enum sect s, size_t t);

int kh_cfg_tenant_get(struct kh_cfg_ctx *c, const char *id, size_t len, size_t *ret) {
        struct kh_config *cfg = c->cfg;
        size_t i;
        int r;

        if (kh_cfg_tenant_find(cfg, id, len, ret) == 0)
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
        r = section_defaults(c, S_TENANT, i);
        if (r < 0)
                return r;
        *ret = i;
        return 0;
}

/* ---- the fields ---- */

/* The struct of section s (tenant t): what a key's offsets are relative to. */
static char *section_base(struct kh_config *cfg, enum sect s, size_t t) {
        switch (s) {
        case S_SERVER:
                return (char *) &cfg->server;
        case S_STORAGE:
                return (char *) &cfg->storage;
        case S_KEYSTORE:
                return (char *) &cfg->keystore;
        case S_AUDIT:
                return (char *) &cfg->audit;
        case S_JOBS:
                return (char *) &cfg->jobs;
        case S_TENANT:
                return (char *) &cfg->tenants[t];
        case S_NONE:
                break;
        }
        abort();
}

/* Frees what the field of key holds, leaving it to be overwritten. */
static void field_free(const struct kh_cfg_key *key, char *base) {
        char **str = (char **) (base + key->offset);

        switch (key->type) {
        case KH_CFG_T_STR:
        case KH_CFG_T_ISSUER:
        case KH_CFG_T_ENUM:
                free(*str);
                break;
        case KH_CFG_T_SECRET:
                if (*str) {
                        OPENSSL_cleanse(*str, strlen(*str));
                        free(*str);
                }
                break;
        case KH_CFG_T_ORIGINS:
                for (size_t i = 0; i < *(size_t *) (base + key->count_offset); i++)
                        free(str[i]);
                break;
        case KH_CFG_T_MATCHERS: {
                struct kh_config_matcher *m = (struct kh_config_matcher *) (base + key->offset);
                for (size_t i = 0; i < *(size_t *) (base + key->count_offset); i++) {
                        free(m[i].claim);
                        free(m[i].value);
                }
                break;
        }
        case KH_CFG_T_UINT:
        case KH_CFG_T_BOOL:
        case KH_CFG_T_LISTEN:
                break;
        }
}

void kh_cfg_section_free(struct kh_config *cfg, enum sect s, size_t t) {
        for (size_t k = 0; k < KH_CFG_N_KEYS; k++)
                if (kh_cfg_keys[k].sect == s)
                        field_free(&kh_cfg_keys[k], section_base(cfg, s, t));
}

/* A string field: empty means unset, so that the environment can clear a value from the file. */
static int set_str(const struct kh_cfg_key *key, char *base, const char *value) {
        char *v = NULL;

        if (*value) {
                v = strdup(value);
                if (!v)
                        return -ENOMEM;
        }
        field_free(key, base);
        *(char **) (base + key->offset) = v;
        return 0;
}

static int set_origins(const struct kh_cfg_key *key, char *base, const char *value,
                       const char **ret_reason) {
        char *parsed[KH_CORS_ORIGINS_MAX] = { 0 };
        size_t n = 0;
        int r;

        if (*value) {
                r = kh_config_origins_parse(value, parsed, &n, ret_reason);
                if (r < 0)
                        return r;
        }
        field_free(key, base);
        memcpy(base + key->offset, parsed, sizeof(parsed));
        *(size_t *) (base + key->count_offset) = n;
        return 0;
}

static int set_matchers(const struct kh_cfg_key *key, char *base, const char *value,
                        const char **ret_reason) {
        struct kh_config_matcher parsed[KH_ADMIN_MATCHERS_MAX] = { 0 };
        size_t n = 0;
        int r;

        if (*value) {
                r = kh_config_matchers_parse(value, parsed, &n, ret_reason);
                if (r < 0)
                        return r;
        }
        field_free(key, base);
        memcpy(base + key->offset, parsed, sizeof(parsed));
        *(size_t *) (base + key->count_offset) = n;
        return 0;
}

static bool is_one_of(const char *value, const char *const *one_of) {
        for (; *one_of; one_of++)
                if (strcmp(value, *one_of) == 0)
                        return true;
        return false;
}

int kh_cfg_set(struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k, const char *value,
               const char **ret_reason) {
        const struct kh_cfg_key *key = &kh_cfg_keys[k];
        char *base = section_base(c->cfg, key->sect, t);
        void *field = base + key->offset;
        uint64_t v;
        bool b;

        if (strlen(value) > KH_CONFIG_VALUE_MAX) {
                *ret_reason = "is longer than 4096 bytes";
                return -EINVAL;
        }
        switch (key->type) {
        case KH_CFG_T_STR:
        case KH_CFG_T_SECRET:
                return set_str(key, base, value);
        case KH_CFG_T_ISSUER:
                if (c->dev && strcmp(value, KH_DEV_ISSUER) != 0) {
                        *ret_reason = "dev mode refuses a production issuer";
                        return -EINVAL;
                }
                if (*value && !kh_config_issuer_is_valid(value))
                        break;
                return set_str(key, base, value);
        case KH_CFG_T_ENUM:
                if (!is_one_of(value, key->values.one_of))
                        break;
                return set_str(key, base, value);
        case KH_CFG_T_UINT:
                if (kh_parse_u64(value, strlen(value), key->values.max, &v) < 0 ||
                    v < key->values.min || v % key->values.step != 0)
                        break;
                *(unsigned *) field = (unsigned) v;
                return 0;
        case KH_CFG_T_BOOL:
                if (kh_parse_bool(value, &b) < 0)
                        break;
                *(bool *) field = b;
                return 0;
        case KH_CFG_T_LISTEN:
                if (!*value) {
                        *ret_reason = "must not be empty";
                        return -EINVAL;
                }
                return kh_config_listen_parse(value, field,
                                              (size_t *) (base + key->count_offset), ret_reason);
        case KH_CFG_T_ORIGINS:
                return set_origins(key, base, value, ret_reason);
        case KH_CFG_T_MATCHERS:
                return set_matchers(key, base, value, ret_reason);
        }
        *ret_reason = key->reason;
        return -EINVAL;
}

static int section_defaults(struct kh_cfg_ctx *c, enum sect s, size_t t) {
        const char *reason = NULL;
        int r;

        for (size_t k = 0; k < KH_CFG_N_KEYS; k++) {
                if (kh_cfg_keys[k].sect != s || !kh_cfg_keys[k].def)
                        continue;
                r = kh_cfg_set(c, t, (enum kh_cfg_key_id) k, kh_cfg_keys[k].def, &reason);
                if (r == -EINVAL)
                        abort(); /* a default that its own setter refuses: fix keys.def */
                if (r < 0)
                        return r;
        }
        return 0;
}

int kh_cfg_section_init(struct kh_cfg_ctx *c, enum sect s) {
        return section_defaults(c, s, 0);
}
