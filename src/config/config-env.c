/* KEYHOLD_<SECTION>_<KEY> overrides. A variable under a config prefix (SERVER, STORAGE,
 * KEYSTORE, TENANT) with an unknown key is an error; other KEYHOLD_* variables are not ours. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/parse.h"
#include "config-readers.h"

/* s[0..len) is key in upper case. */
static bool env_key_equal(const char *s, size_t len, const char *key) {
        if (strlen(key) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] != toupper((unsigned char) key[i]))
                        return false;
        return true;
}

static int env_set(struct kh_cfg_ctx *c, size_t t, enum kh_cfg_key_id k, const char *name,
                   size_t name_len, const char *value) {
        struct kh_cfg_origin *o = kh_cfg_origin_of(c, t, k);
        const char *reason = NULL;
        int r;

        if (o->env)
                return 0; /* the first definition wins, as with getenv() */
        r = kh_cfg_set(c, t, k, value, &reason);
        if (r == -EINVAL)
                return kh_cfg_fail(c, 0, name, name_len, "%s", reason);
        if (r < 0)
                return r;
        o->line = 0;
        o->env = name;
        o->env_len = name_len;
        return 0;
}

int kh_cfg_env_tenant_key(const struct kh_cfg_key *keys, size_t n_keys, const char *rest,
                          size_t len) {
        size_t best_len = 0;
        int best = -ENOENT;

        for (size_t k = 0; k < n_keys; k++) {
                size_t klen = strlen(keys[k].name);

                if (keys[k].sect == S_TENANT && klen > best_len && len > klen + 1 &&
                    rest[len - klen - 1] == '_' &&
                    env_key_equal(rest + len - klen, klen, keys[k].name)) {
                        best = (int) k;
                        best_len = klen;
                }
        }
        return best;
}

/* "unknown key: ... with KEY one of ISSUER, ISSUER_CA, ...", from the table. */
static int fail_unknown_tenant_key(struct kh_cfg_ctx *c, const char *name, size_t name_len) {
        char keys[400];     /* every tenant key, upper-cased; fits in kh_config_error.reason */
        size_t n = 0;

        for (size_t k = 0; k < KH_CFG_N_KEYS; k++) {
                if (kh_cfg_keys[k].sect != S_TENANT)
                        continue;
                if (n > 0 && n + 2 < sizeof(keys)) {
                        keys[n++] = ',';
                        keys[n++] = ' ';
                }
                for (const char *p = kh_cfg_keys[k].name; *p && n + 1 < sizeof(keys); p++)
                        keys[n++] = (char) toupper((unsigned char) *p);
        }
        keys[n] = 0;
        return kh_cfg_fail(c, 0, name, name_len,
                           "unknown key: expected KEYHOLD_TENANT_<ID>_<KEY> with KEY one of %s",
                           keys);
}

/* KEYHOLD_TENANT_<ID>_<KEY>: the id is what comes before the key, lower-cased with '_' as '-'. */
static int env_tenant(struct kh_cfg_ctx *c, const char *name, size_t name_len, const char *value) {
        size_t plen = strlen(kh_cfg_sections[S_TENANT].env_prefix);
        const char *rest = name + plen;
        size_t rlen = name_len - plen, idlen, t;
        char id[KH_TENANT_ID_MAX + 1];
        int k, r;

        k = kh_cfg_env_tenant_key(kh_cfg_keys, KH_CFG_N_KEYS, rest, rlen);
        if (k < 0)
                return fail_unknown_tenant_key(c, name, name_len);
        idlen = rlen - strlen(kh_cfg_keys[k].name) - 1;
        if (idlen > KH_TENANT_ID_MAX)
                goto bad_id;
        for (size_t i = 0; i < idlen; i++) {
                char ch = rest[i];
                if (ch == '_')
                        id[i] = '-';
                else if ((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
                        id[i] = (char) tolower((unsigned char) ch);
                else
                        goto bad_id;
        }
        if (!kh_tenant_id_is_valid(id, idlen))
                goto bad_id;
        r = kh_cfg_tenant_get(c, id, idlen, &t);
        if (r == -E2BIG)
                return kh_cfg_fail(c, 0, name, name_len, "at most 256 tenants");
        if (r < 0)
                return r;
        return env_set(c, t, (enum kh_cfg_key_id) k, name, name_len, value);

bad_id:
        return kh_cfg_fail(
                c, 0, name, name_len,
                "the tenant id must be upper-case A-Z, 0-9 and '_' for '-', 1 to 63 long");
}

static bool has_prefix(const char *s, size_t len, const char *prefix) {
        size_t plen = strlen(prefix);

        return len >= plen && memcmp(s, prefix, plen) == 0;
}

static int env_one(struct kh_cfg_ctx *c, const char *name, size_t name_len, const char *value) {
        for (size_t s = 0; s < S_TENANT; s++) {
                size_t plen = strlen(kh_cfg_sections[s].env_prefix);

                if (!has_prefix(name, name_len, kh_cfg_sections[s].env_prefix))
                        continue;
                for (size_t k = 0; k < KH_CFG_N_KEYS; k++)
                        if (kh_cfg_keys[k].sect == s &&
                            env_key_equal(name + plen, name_len - plen, kh_cfg_keys[k].name))
                                return env_set(c, 0, (enum kh_cfg_key_id) k, name, name_len,
                                               value);
                return kh_cfg_fail(c, 0, name, name_len, "unknown key: [%s] has no such key",
                                   kh_cfg_sections[s].name);
        }
        if (has_prefix(name, name_len, kh_cfg_sections[S_TENANT].env_prefix))
                return env_tenant(c, name, name_len, value);
        return 0; /* KEYHOLD_URL, KEYHOLD_TOKEN ...: not configuration */
}

int kh_cfg_env_read(struct kh_cfg_ctx *c, char *const *envp) {
        int r;

        for (char *const *e = envp; e && *e; e++) {
                const char *eq = strchr(*e, '=');

                if (!eq || !has_prefix(*e, (size_t) (eq - *e), "KEYHOLD_"))
                        continue;
                r = env_one(c, *e, (size_t) (eq - *e), eq + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}
