/* KEYHOLD_* variables (src/config/config-env.c): how a tenant variable splits into id and key,
 * and the messages made from the table of keys. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "config/config-readers.h"

/* -Wwrite-strings: environment entries are char *, so each gets a writable array */
#define E(s) ((char[]){ s })

#define REST                                                                                     \
        "[storage]\npath = /db\n[keystore]\npath = /k\nmaster_key_file = /m\n"                   \
        "[tenant.default]\nissuer = https://bitwarden.example.com/identity\n"

static int tenant_key(const struct kh_cfg_key *keys, size_t n, const char *rest) {
        return kh_cfg_env_tenant_key(keys, n, rest, strlen(rest));
}

/* Keys that end with another key, as a future admin_issuer would end with issuer. */
static void test_tenant_key_is_the_longest(void **state) {
        (void) state;
        const struct kh_cfg_key short_first[] = {
                { .sect = S_TENANT, .name = "issuer" },
                { .sect = S_TENANT, .name = "admin_issuer" },
        };
        const struct kh_cfg_key long_first[] = {
                { .sect = S_TENANT, .name = "admin_issuer" },
                { .sect = S_TENANT, .name = "issuer" },
        };

        assert_int_equal(tenant_key(short_first, 2, "ACME_ADMIN_ISSUER"), 1);
        assert_int_equal(tenant_key(long_first, 2, "ACME_ADMIN_ISSUER"), 0);
        assert_int_equal(tenant_key(short_first, 2, "ACME_CORP_ADMIN_ISSUER"), 1);
        assert_int_equal(tenant_key(short_first, 2, "ACME_ISSUER"), 0);
        assert_int_equal(tenant_key(long_first, 2, "ACME_ISSUER"), 1);
        /* the longer key would leave no id: tenant "admin", key issuer */
        assert_int_equal(tenant_key(short_first, 2, "ADMIN_ISSUER"), 0);
        /* the longer key must start after a '_': tenant "acmeadmin", key issuer */
        assert_int_equal(tenant_key(short_first, 2, "ACMEADMIN_ISSUER"), 0);
        assert_int_equal(tenant_key(short_first, 2, "ISSUER"), -ENOENT);
        assert_int_equal(tenant_key(short_first, 2, "ACME_admin_issuer"), -ENOENT);
        assert_int_equal(tenant_key(short_first, 2, "ACME_ISSUERX"), -ENOENT);
}

static void test_tenant_key_only_from_tenant_section(void **state) {
        (void) state;
        const struct kh_cfg_key keys[] = {
                { .sect = S_SERVER, .name = "admin_issuer" },
                { .sect = S_TENANT, .name = "issuer" },
        };

        assert_int_equal(tenant_key(keys, 2, "ACME_ADMIN_ISSUER"), 1);
}

static void test_tenant_key_on_the_real_table(void **state) {
        (void) state;

        assert_int_equal(tenant_key(kh_cfg_keys, KH_CFG_N_KEYS, "ACME_ISSUER_CA"),
                         KH_CFG_TENANT_issuer_ca);
        assert_int_equal(tenant_key(kh_cfg_keys, KH_CFG_N_KEYS, "ACME_CA_ISSUER"),
                         KH_CFG_TENANT_issuer);
        assert_int_equal(tenant_key(kh_cfg_keys, KH_CFG_N_KEYS, "A_MAX_TOKEN_LIFETIME"),
                         KH_CFG_TENANT_max_token_lifetime);
        assert_int_equal(tenant_key(kh_cfg_keys, KH_CFG_N_KEYS, "A_LISTEN"), -ENOENT);
}

static void expect_reason(const char *text, char *const *envp, const char *key,
                          const char *reason) {
        struct kh_config *cfg = NULL;
        struct kh_config_error err = { 0 };

        assert_int_equal(kh_config_parse_string(text, strlen(text), envp, &cfg, &err), -EINVAL);
        assert_null(cfg);
        assert_string_equal(err.key, key);
        assert_string_equal(err.reason, reason);
}

/* The messages that list or name keys come from the table. */
static void test_messages_from_the_table(void **state) {
        (void) state;
        char *const unknown[] = { E("KEYHOLD_TENANT_ACME_ISSUR=x"), NULL };
        char *const no_env[] = { NULL };

        expect_reason(REST, unknown, "KEYHOLD_TENANT_ACME_ISSUR",
                      "unknown key: expected KEYHOLD_TENANT_<ID>_<KEY> with KEY one of ISSUER, "
                      "ISSUER_CA, ADMIN_ISSUER, ADMIN_ISSUER_CA, AUDIENCE, ADMINS, JWKS_FILE, CORS_ORIGINS, "
                      "JWKS_REFRESH, ACCEPT_SCOPE_STRING, MAX_TOKEN_LIFETIME, APPROVERS, APPROVAL_QUORUM, AUTH_REQUEST_LIFETIME, ADMIN_REQUEST_LIFETIME, APPROVED_REQUEST_LIFETIME, "
                      "CONSOLE_CLIENT_ID");
        expect_reason("[keystore]\npassphrase = x\n" REST, no_env, "keystore.passphrase",
                      "secrets don't belong in config files: set KEYHOLD_KEYSTORE_PASSPHRASE in "
                      "the environment instead");
}

/* A variable may appear twice in an environment; getenv() and keyhold take the first. */
static void test_first_definition_wins_per_tenant(void **state) {
        (void) state;
        char *const env[] = { E("KEYHOLD_TENANT_DEFAULT_ADMINS=role:first"),
                              E("KEYHOLD_TENANT_DEFAULT_ADMINS=role:second"),
                              E("KEYHOLD_TENANT_DEFAULT_ADMINS=not even checked \x01"), NULL };
        struct kh_config *cfg = NULL;
        struct kh_config_error err;

        assert_int_equal(kh_config_parse_string(REST, strlen(REST), env, &cfg, &err), 0);
        assert_int_equal(cfg->tenants[0].n_admins, 1);
        assert_string_equal(cfg->tenants[0].admins[0].claim, "role");
        assert_string_equal(cfg->tenants[0].admins[0].value, "first");
        cfg = kh_config_free(cfg);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_tenant_key_is_the_longest),
                cmocka_unit_test(test_tenant_key_only_from_tenant_section),
                cmocka_unit_test(test_tenant_key_on_the_real_table),
                cmocka_unit_test(test_messages_from_the_table),
                cmocka_unit_test(test_first_definition_wins_per_tenant),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
