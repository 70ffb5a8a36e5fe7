/* KEYHOLD_<SECTION>_<KEY> overrides. A variable under a config prefix (SERVER, STORAGE,
 * KEYSTORE, TENANT) with an unknown key is an error; other KEYHOLD_* variables are not ours. */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "common/parse.h"
#include "config-internal.h"

/* s[0..len) is key in upper case. */
static bool env_key_equal(const char *s, size_t len, const char *key) {
        if (strlen(key) != len)
                return false;
        for (size_t i = 0; i < len; i++)
                if (s[i] != toupper((unsigned char) key[i]))
                        return false;
        return true;
}

static int env_set(struct kh_cfg_ctx *c, enum sect s, size_t t, size_t k, const char *name,
                   size_t name_len, const char *value) {
        struct kh_cfg_origin *o = kh_cfg_origin_of(c, s, t, k);
        const char *reason = NULL;
        int r;

        if (o->env)
                return 0; /* the first definition wins, as with getenv() */
        r = kh_cfg_apply(c, s, t, k, value, &reason);
        if (r == -EINVAL)
                return kh_cfg_fail(c, 0, name, name_len, "%s", reason);
        if (r < 0)
                return r;
        o->line = 0;
        o->env = name;
        o->env_len = name_len;
        return 0;
}

/* KEYHOLD_TENANT_<ID>_<KEY>: the key is the known one the name ends with (none is a suffix of
 * another), the id the rest, lower-cased with '_' as '-'. */
static int env_tenant(struct kh_cfg_ctx *c, const char *name, size_t name_len, const char *value) {
        size_t plen = strlen(kh_cfg_sections[S_TENANT].env_prefix);
        const char *rest = name + plen;
        size_t rlen = name_len - plen, k, klen = 0, idlen, t;
        char id[KH_TENANT_ID_MAX + 1];
        int r;

        for (k = 0; k < TEN_N_; k++) {
                klen = strlen(kh_cfg_sections[S_TENANT].keys[k]);
                if (rlen > klen + 1 && rest[rlen - klen - 1] == '_' &&
                    env_key_equal(rest + rlen - klen, klen, kh_cfg_sections[S_TENANT].keys[k]))
                        break;
        }
        if (k == TEN_N_)
                return kh_cfg_fail(
                        c, 0, name, name_len,
                        "unknown key: expected KEYHOLD_TENANT_<ID>_<KEY> with KEY one of "
                        "ISSUER, ISSUER_CA, AUDIENCE, ADMINS, JWKS_FILE, CORS_ORIGINS");
        idlen = rlen - klen - 1;
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
        return env_set(c, S_TENANT, t, k, name, name_len, value);

bad_id:
        return kh_cfg_fail(
                c, 0, name, name_len,
                "the tenant id must be upper-case A-Z, 0-9 and '_' for '-', 1 to 63 long");
}

static int env_one(struct kh_cfg_ctx *c, const char *name, size_t name_len, const char *value) {
        for (size_t s = 0; s < S_TENANT; s++) {
                size_t plen = strlen(kh_cfg_sections[s].env_prefix);

                if (name_len < plen || memcmp(name, kh_cfg_sections[s].env_prefix, plen) != 0)
                        continue;
                for (size_t k = 0; k < kh_cfg_sections[s].n_keys; k++)
                        if (env_key_equal(name + plen, name_len - plen, kh_cfg_sections[s].keys[k]))
                                return env_set(c, (enum sect) s, 0, k, name, name_len, value);
                return kh_cfg_fail(c, 0, name, name_len, "unknown key: [%s] has no such key",
                                   kh_cfg_sections[s].name);
        }
        if (name_len >= strlen("KEYHOLD_TENANT_") &&
            memcmp(name, "KEYHOLD_TENANT_", strlen("KEYHOLD_TENANT_")) == 0)
                return env_tenant(c, name, name_len, value);
        return 0; /* KEYHOLD_URL, KEYHOLD_TOKEN ...: not configuration */
}

int kh_cfg_apply_env(struct kh_cfg_ctx *c, char *const *envp) {
        int r;

        for (char *const *e = envp; e && *e; e++) {
                const char *eq = strchr(*e, '=');

                if (!eq || strncmp(*e, "KEYHOLD_", 8) != 0)
                        continue;
                r = env_one(c, *e, (size_t) (eq - *e), eq + 1);
                if (r < 0)
                        return r;
        }
        return 0;
}
