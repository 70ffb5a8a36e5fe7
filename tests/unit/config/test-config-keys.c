/* The table of keys (src/config/keys.def) as config-keys.c builds it: rows that the setters can
 * use, and the names of the variables that set them. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config/config-keys.h"
#include "config/config-readers.h"

static bool name_is_lower_snake(const char *s) {
        if (!(*s >= 'a' && *s <= 'z'))
                return false;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return false;
        return s[-1] != '_';
}

static void test_every_row_is_usable(void **state) {
        (void) state;

        for (size_t k = 0; k < KH_CFG_N_KEYS; k++) {
                const struct kh_cfg_key *key = &kh_cfg_keys[k];
                bool needs_reason = key->type == KH_CFG_T_UINT || key->type == KH_CFG_T_BOOL ||
                                    key->type == KH_CFG_T_ENUM || key->type == KH_CFG_T_ISSUER;

                assert_true(key->sect < S_NONE);
                assert_non_null(key->name);
                assert_true(name_is_lower_snake(key->name));
                assert_true(needs_reason == (key->reason != NULL));
                /* a section's keys stand together: the order of messages */
                if (k > 0 && key->sect != kh_cfg_keys[k - 1].sect)
                        for (size_t j = 0; j < k; j++)
                                assert_int_not_equal(kh_cfg_keys[j].sect, key->sect);
                for (size_t j = 0; j < k; j++)
                        if (kh_cfg_keys[j].sect == key->sect)
                                assert_string_not_equal(kh_cfg_keys[j].name, key->name);
                assert_int_equal(kh_cfg_key_find(key->sect, key->name, strlen(key->name)),
                                 (int) k);

                if (key->type == KH_CFG_T_UINT) {
                        assert_true(key->values.step >= 1);
                        assert_true(key->values.min <= key->values.max);
                        assert_true(key->values.max <= UINT_MAX);
                        assert_int_equal(key->values.min % key->values.step, 0);
                } else {
                        assert_int_equal(key->values.max, 0);
                }
                if (key->type == KH_CFG_T_ENUM) {
                        bool found = false;

                        assert_non_null(key->values.one_of);
                        assert_non_null(key->values.one_of[0]);
                        assert_non_null(key->def); /* an enum is never unset */
                        for (const char *const *v = key->values.one_of; *v; v++)
                                found = found || strcmp(*v, key->def) == 0;
                        assert_true(found);
                } else {
                        assert_null(key->values.one_of);
                }
                /* the secret is set from the environment only, so it has nothing to default to */
                if (key->type == KH_CFG_T_SECRET)
                        assert_null(key->def);
        }
}

static void test_find_is_exact(void **state) {
        (void) state;

        assert_int_equal(kh_cfg_key_find(S_SERVER, "listen", 6), KH_CFG_SERVER_listen);
        assert_int_equal(kh_cfg_key_find(S_TENANT, "issuer_ca", 9), KH_CFG_TENANT_issuer_ca);
        assert_int_equal(kh_cfg_key_find(S_TENANT, "issuer_ca", 6), KH_CFG_TENANT_issuer);
        assert_int_equal(kh_cfg_key_find(S_SERVER, "LISTEN", 6), -ENOENT);
        assert_int_equal(kh_cfg_key_find(S_SERVER, "issuer", 6), -ENOENT);
        assert_int_equal(kh_cfg_key_find(S_STORAGE, "driver", 6), KH_CFG_STORAGE_driver);
        assert_int_equal(kh_cfg_key_find(S_KEYSTORE, "driver", 6), KH_CFG_KEYSTORE_driver);
}

/* Every key's own variable, as kh_cfg_env_label() spells it, is read back as that key. */
static void test_env_label_reads_back(void **state) {
        (void) state;
        struct kh_config_error err;
        struct kh_cfg_ctx c = { .err = &err };
        const size_t tlen = strlen(kh_cfg_sections[S_TENANT].env_prefix);
        char label[128];
        size_t t;

        c.cfg = calloc(1, sizeof(*c.cfg));
        assert_non_null(c.cfg);
        assert_int_equal(kh_cfg_tenant_get(&c, "acme-corp-2", strlen("acme-corp-2"), &t), 0);

        kh_cfg_env_label(&c, 0, KH_CFG_KEYSTORE_passphrase, label);
        assert_string_equal(label, "KEYHOLD_KEYSTORE_PASSPHRASE");
        kh_cfg_env_label(&c, t, KH_CFG_TENANT_max_token_lifetime, label);
        assert_string_equal(label, "KEYHOLD_TENANT_ACME_CORP_2_MAX_TOKEN_LIFETIME");

        for (size_t k = 0; k < KH_CFG_N_KEYS; k++) {
                if (kh_cfg_keys[k].sect != S_TENANT)
                        continue;
                kh_cfg_env_label(&c, t, (enum kh_cfg_key_id) k, label);
                assert_int_equal(kh_cfg_env_tenant_key(kh_cfg_keys, KH_CFG_N_KEYS, label + tlen,
                                                       strlen(label) - tlen),
                                 (int) k);
        }

        kh_cfg_section_free(c.cfg, S_TENANT, t);
        free(c.cfg->tenants);
        free(c.cfg);
        free(c.tenant_origins);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_row_is_usable),
                cmocka_unit_test(test_find_is_exact),
                cmocka_unit_test(test_env_label_reads_back),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
