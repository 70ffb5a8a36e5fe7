#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config/config.h"

/* Storage, key store and one tenant: 7 lines that make a file valid. */
#define REST                                                                                     \
        "[storage]\n"                                                                            \
        "path = /var/lib/keyhold/keyhold.db\n"                                                   \
        "[keystore]\n"                                                                           \
        "path = /var/lib/keyhold/keystore\n"                                                     \
        "master_key_file = /etc/keyhold/master.key\n"                                            \
        "[tenant.default]\n"                                                                     \
        "issuer = https://bitwarden.example.com/identity\n"

#define ISSUER "https://bitwarden.example.com/identity"

/* -Wwrite-strings: environment entries are char *, so each gets a writable array */
#define E(s) ((char[]){ s })

static char *const no_env[] = { NULL };
static struct kh_config sentinel_cfg;

static struct kh_config *parse_ok(const char *text, char *const *envp) {
        struct kh_config *cfg = NULL;
        struct kh_config_error err = { 0 };
        int r = kh_config_parse_string(text, strlen(text), envp ? envp : no_env, &cfg, &err);

        if (r != 0)
                fprintf(stderr, "unexpected error %d: %s: %s (line %u)\n", r, err.key, err.reason,
                        err.line);
        assert_int_equal(r, 0);
        assert_non_null(cfg);
        return cfg;
}

/* Refused with -EINVAL, naming exactly key and line, the reason containing reason_part;
 * *ret untouched. */
static void expect_error_len(const char *text, size_t len, char *const *envp, const char *key,
                             unsigned line, const char *reason_part) {
        struct kh_config *cfg = &sentinel_cfg;
        struct kh_config_error err;
        int r;

        memset(&err, 0x55, sizeof(err));
        r = kh_config_parse_string(text, len, envp ? envp : no_env, &cfg, &err);
        if (r != -EINVAL || strcmp(err.key, key) != 0 || err.line != line ||
            !strstr(err.reason, reason_part))
                fprintf(stderr, "got r=%d key '%.128s' line %u reason '%.256s'\n", r, err.key,
                        err.line, err.reason);
        assert_int_equal(r, -EINVAL);
        assert_ptr_equal(cfg, &sentinel_cfg);
        assert_string_equal(err.key, key);
        assert_int_equal(err.line, line);
        assert_non_null(strstr(err.reason, reason_part));
}

static void expect_error(const char *text, char *const *envp, const char *key, unsigned line,
                         const char *reason_part) {
        expect_error_len(text, strlen(text), envp, key, line, reason_part);
}

static void test_full_valid_file(void **state) {
        (void) state;
        const char text[] =
                "; keyhold configuration\n"
                "[server]\n"
                "listen = 0.0.0.0:8443, [::1]:9443   ; two addresses\n"
                "tls_cert = /etc/keyhold/tls.crt\n"
                "tls_key = /etc/keyhold/tls.key\n"
                "threads = 4\n"
                "cors_origins = https://vault.example.com/, http://localhost:8080\n"
                "behind_tls_proxy = false\n"
                "port_file = /run/keyhold/port\n"
                "\n"
                "[storage]\n"
                "driver = postgresql\n"
                "url = postgresql://keyhold@db/keyhold\n"
                "[keystore]\n"
                "driver = file\n"
                "path = /var/lib/keyhold/keystore\n"
                "master_key_file = /etc/keyhold/master.key\n"
                "rsa_bits = 4096\n"
                "# tenants\n"
                "[tenant.default]\n"
                "issuer = " ISSUER "\n"
                "issuer_ca = /etc/keyhold/issuer-ca.pem\n"
                "audience =                       ; optional\n"
                "admins = role:keyhold-admin\n"
                "[tenant.acme-2]\n"
                "issuer = http://127.0.0.1:5000/a;b\n"
                "jwks_file = /etc/keyhold/acme.jwks\n"
                "cors_origins = https://[2001:db8::1]:8443\n";
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = parse_ok(text, NULL);
        const struct kh_config_tenant *t;

        assert_int_equal(cfg->server.n_listen, 2);
        assert_string_equal(cfg->server.listen[0].host, "0.0.0.0");
        assert_int_equal(cfg->server.listen[0].port, 8443);
        assert_string_equal(cfg->server.listen[1].host, "::1");
        assert_int_equal(cfg->server.listen[1].port, 9443);
        assert_string_equal(cfg->server.tls_cert, "/etc/keyhold/tls.crt");
        assert_string_equal(cfg->server.tls_key, "/etc/keyhold/tls.key");
        assert_int_equal(cfg->server.threads, 4);
        assert_int_equal(cfg->server.n_cors_origins, 2);
        assert_string_equal(cfg->server.cors_origins[0], "https://vault.example.com");
        assert_string_equal(cfg->server.cors_origins[1], "http://localhost:8080");
        assert_false(cfg->server.behind_tls_proxy);
        assert_string_equal(cfg->server.port_file, "/run/keyhold/port");
        assert_string_equal(cfg->storage.driver, "postgresql");
        assert_null(cfg->storage.path);
        assert_string_equal(cfg->storage.url, "postgresql://keyhold@db/keyhold");
        assert_string_equal(cfg->keystore.driver, "file");
        assert_string_equal(cfg->keystore.path, "/var/lib/keyhold/keystore");
        assert_string_equal(cfg->keystore.master_key_file, "/etc/keyhold/master.key");
        assert_null(cfg->keystore.passphrase);
        assert_int_equal(cfg->keystore.rsa_bits, 4096);
        assert_false(cfg->dev);
        assert_null(cfg->data_dir);

        assert_int_equal(cfg->n_tenants, 2);
        t = kh_config_tenant(cfg, "default");
        assert_ptr_equal(t, &cfg->tenants[0]);
        assert_string_equal(t->id, "default");
        assert_string_equal(t->issuer, ISSUER);
        assert_string_equal(t->issuer_ca, "/etc/keyhold/issuer-ca.pem");
        assert_null(t->audience); /* empty = unset */
        assert_int_equal(t->n_admins, 1);
        assert_string_equal(t->admins[0].claim, "role");
        assert_string_equal(t->admins[0].value, "keyhold-admin");
        assert_null(t->jwks_file);
        assert_int_equal(t->n_cors_origins, 0);
        t = kh_config_tenant(cfg, "acme-2");
        assert_ptr_equal(t, &cfg->tenants[1]);
        assert_string_equal(t->issuer, "http://127.0.0.1:5000/a;b"); /* ';' without space */
        assert_string_equal(t->jwks_file, "/etc/keyhold/acme.jwks");
        assert_int_equal(t->n_cors_origins, 1);
        assert_string_equal(t->cors_origins[0], "https://[2001:db8::1]:8443");
        assert_null(kh_config_tenant(cfg, "acme"));
        assert_null(kh_config_tenant(cfg, "acme-22"));
}

static void test_defaults(void **state) {
        (void) state;
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = parse_ok(REST, NULL);

        assert_int_equal(cfg->server.n_listen, 1);
        assert_string_equal(cfg->server.listen[0].host, "127.0.0.1");
        assert_int_equal(cfg->server.listen[0].port, 8443);
        assert_null(cfg->server.tls_cert);
        assert_null(cfg->server.tls_key);
        assert_int_equal(cfg->server.threads, 0);
        assert_int_equal(cfg->server.n_cors_origins, 0);
        assert_null(cfg->server.port_file);
        assert_string_equal(cfg->storage.driver, "sqlite");
        assert_string_equal(cfg->storage.path, "/var/lib/keyhold/keyhold.db");
        assert_string_equal(cfg->keystore.driver, "file");
        assert_int_equal(cfg->keystore.rsa_bits, 3072);
        assert_int_equal(cfg->n_tenants, 1);
        assert_int_equal(cfg->tenants[0].max_token_lifetime_s, 86400);
}

static void test_max_token_lifetime(void **state) {
        (void) state;
        char *const env[] = { E("KEYHOLD_TENANT_ACME_MAX_TOKEN_LIFETIME=0"), NULL };
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg =
                parse_ok(REST "max_token_lifetime = 3600\n[tenant.acme]\nissuer = " ISSUER
                              "\nmax_token_lifetime = 7200\n",
                         env);

        assert_int_equal(cfg->n_tenants, 2);
        assert_int_equal(cfg->tenants[0].max_token_lifetime_s, 3600);
        assert_int_equal(cfg->tenants[1].max_token_lifetime_s, 0); /* the environment wins */

        expect_error(REST "max_token_lifetime = 315360001\n", NULL,
                     "tenant.default.max_token_lifetime", 8, "from 0 (no cap) to 315360000");
        expect_error(REST "max_token_lifetime = -1\n", NULL, "tenant.default.max_token_lifetime",
                     8, "number of seconds");
        expect_error(REST "max_token_lifetime = 1h\n", NULL, "tenant.default.max_token_lifetime",
                     8, "number of seconds");
}

static void test_structure_errors(void **state) {
        (void) state;

        expect_error("[server]\nthreads = 1\n[serverx]\n" REST, NULL, "serverx", 3,
                     "unknown section");
        expect_error("[server]\nlistn = 127.0.0.1:1\n" REST, NULL, "server.listn", 2,
                     "unknown key");
        expect_error(REST "issuer_cb = x\n", NULL, "tenant.default.issuer_cb", 8, "unknown key");
        expect_error("listen = 127.0.0.1:1\n" REST, NULL, "listen", 1, "outside of a [section]");
        expect_error("[server]\nthreads = 1\nthreads = 2\n" REST, NULL, "server.threads", 3,
                     "duplicate key (first set on line 2)");
        /* the same section twice: keys still may not repeat */
        expect_error(REST "[storage]\npath = /other\n", NULL, "storage.path", 9, "duplicate");
        expect_error("[server]\nthreads = 1\nthis is not ini\n" REST, NULL, "server", 3,
                     "expected [section]");
        expect_error("[server]\n[storage\n" REST, NULL, "server", 2, "expected [section]");
        /* multi-line values are off: an indented line is not part of the previous value */
        expect_error(REST "audience = a\n  b\n", NULL, "tenant.default", 9, "expected [section]");
        expect_error("[tenant.Acme]\nissuer = " ISSUER "\n" REST, NULL, "tenant.Acme", 1,
                     "tenant id");
        expect_error("[tenant.-a]\n" REST, NULL, "tenant.-a", 1, "tenant id");
        expect_error("[tenant.]\n" REST, NULL, "tenant.", 1, "unknown section");
        expect_error_len("[server]\nthreads = 1\0\n" REST, sizeof("[server]\nthreads = 1\0\n" REST) - 1,
                         NULL, "server", 2, "NUL byte");
}

static void test_passphrase_in_file_refused(void **state) {
        (void) state;

        expect_error("[keystore]\npath = /k\npassphrase = hunter2\n" REST, NULL,
                     "keystore.passphrase", 3, "secrets don't belong in config files");
}

#define P11_REST                                                                                 \
        "[storage]\n"                                                                            \
        "path = /k.db\n"                                                                         \
        "[tenant.default]\n"                                                                     \
        "issuer = https://bitwarden.example.com/identity\n"

#define PG_REST                                                                                  \
        "[keystore]\n"                                                                           \
        "path = /k\n"                                                                            \
        "master_key_file = /m\n"                                                                 \
        "[tenant.default]\n"                                                                     \
        "issuer = https://bitwarden.example.com/identity\n"

static void test_postgresql_storage(void **state) {
        struct kh_config *cfg;

        (void) state;
        cfg = parse_ok("[storage]\ndriver = postgresql\nurl = postgresql://kh@db/kh\n"
                       "password_file = /etc/keyhold/db.password\n" PG_REST, NULL);
        assert_string_equal(cfg->storage.driver, "postgresql");
        assert_string_equal(cfg->storage.url, "postgresql://kh@db/kh");
        assert_string_equal(cfg->storage.password_file, "/etc/keyhold/db.password");
        assert_null(cfg->storage.password);
        assert_null(cfg->storage.path);
        cfg = kh_config_free(cfg);

        /* the password from the environment; the database needs it after start-up too
         * (every worker connects, and connects again), so wiping secrets keeps it */
        cfg = parse_ok("[storage]\ndriver = postgresql\nurl = host=db dbname=kh\n" PG_REST,
                       (char *[]) { E("KEYHOLD_STORAGE_PASSWORD=s3cret"), NULL });
        assert_string_equal(cfg->storage.url, "host=db dbname=kh");
        assert_string_equal(cfg->storage.password, "s3cret");
        kh_config_wipe_secrets(cfg);
        assert_string_equal(cfg->storage.password, "s3cret");
        cfg = kh_config_free(cfg);

        expect_error("[storage]\ndriver = postgresql\nurl = postgresql://kh@db/kh\n"
                     "password_file = /p\n" PG_REST,
                     (char *[]) { E("KEYHOLD_STORAGE_PASSWORD=s3cret"), NULL },
                     "storage.password_file", 4, "not both");
        expect_error("[storage]\ndriver = postgresql\nurl = postgresql://kh@db/kh\n"
                     "password = s3cret\n" PG_REST,
                     NULL, "storage.password", 4, "secrets don't belong in config files");
        expect_error("[storage]\ndriver = mysql\nurl = x\n" PG_REST, NULL, "storage.driver", 2,
                     "must be sqlite or postgresql");
}

static void test_pkcs11_keystore(void **state) {
        struct kh_config *cfg;

        (void) state;
        /* no path needed; the PIN from the environment; the prefix's default */
        cfg = parse_ok("[keystore]\ndriver = pkcs11\nmodule = /usr/lib/softhsm/libsofthsm2.so\n"
                       "token_label = kh\n" P11_REST,
                       (char *[]) { E("KEYHOLD_KEYSTORE_PIN=5678"), NULL });
        assert_string_equal(cfg->keystore.module, "/usr/lib/softhsm/libsofthsm2.so");
        assert_string_equal(cfg->keystore.token_label, "kh");
        assert_false(cfg->keystore.has_slot);
        assert_string_equal(cfg->keystore.pin, "5678");
        assert_string_equal(cfg->keystore.key_label_prefix, "keyhold-");
        kh_config_wipe_secrets(cfg);
        assert_null(cfg->keystore.pin);
        cfg = kh_config_free(cfg);

        /* slot 0 is a slot: set, not unset */
        cfg = parse_ok("[keystore]\ndriver = pkcs11\nmodule = /m.so\nslot = 0\n"
                       "pin_file = /etc/keyhold/hsm.pin\nkey_label_prefix = kh2-\n" P11_REST, NULL);
        assert_true(cfg->keystore.has_slot);
        assert_int_equal(cfg->keystore.slot, 0);
        assert_string_equal(cfg->keystore.pin_file, "/etc/keyhold/hsm.pin");
        assert_string_equal(cfg->keystore.key_label_prefix, "kh2-");
        cfg = kh_config_free(cfg);

        expect_error("[keystore]\ndriver = pkcs11\ntoken_label = kh\npin_file = /p\n" P11_REST,
                     NULL, "keystore.module", 0, "is required when driver = pkcs11");
        expect_error("[keystore]\ndriver = pkcs11\nmodule = /m.so\npin_file = /p\n" P11_REST,
                     NULL, "keystore.token_label", 0, "or slot is required");
        /* no PIN at all: accepted, the server starts sealed until `keyhold unseal` */
        cfg = parse_ok("[keystore]\ndriver = pkcs11\nmodule = /m.so\ntoken_label = kh\n" P11_REST,
                       NULL);
        assert_null(cfg->keystore.pin_file);
        assert_null(cfg->keystore.pin);
        kh_config_free(cfg);
        expect_error("[keystore]\ndriver = pkcs11\nmodule = /m.so\ntoken_label = kh\nslot = 1\n"
                     "pin_file = /p\n" P11_REST,
                     NULL, "keystore.token_label", 4, "not both");
        expect_error("[keystore]\ndriver = pkcs11\nmodule = /m.so\ntoken_label = kh\n"
                     "pin = 1234\n" P11_REST,
                     NULL, "keystore.pin", 5, "secrets don't belong in config files");
        expect_error("[keystore]\ndriver = pkcs11\nmodule = /m.so\nslot = -1\npin_file = /p\n"
                     P11_REST, NULL, "keystore.slot", 4, "must be a slot number");
        /* the file store still needs its path */
        expect_error("[keystore]\nmaster_key_file = /m\n" P11_REST, NULL, "keystore.path", 0,
                     "is required");
}

static void test_value_errors(void **state) {
        (void) state;

        expect_error("[server]\nthreads = 257\n" REST, NULL, "server.threads", 2,
                     "must be a number between 0 and 256");
        expect_error("[server]\nthreads = -1\n" REST, NULL, "server.threads", 2,
                     "must be a number between 0 and 256");
        expect_error("[server]\nthreads = 0x10\n" REST, NULL, "server.threads", 2,
                     "must be a number between 0 and 256");
        expect_error("[server]\nbehind_tls_proxy = maybe\n" REST, NULL, "server.behind_tls_proxy",
                     2, "must be true or false");
        expect_error("[storage]\ndriver = mysql\n", NULL, "storage.driver", 2,
                     "must be sqlite or postgresql");
        expect_error("[keystore]\ndriver = vault\n", NULL, "keystore.driver", 2,
                     "must be file or pkcs11");
        expect_error("[keystore]\nrsa_bits = 3000\n", NULL, "keystore.rsa_bits", 2,
                     "must be 2048, 3072");
        expect_error("[keystore]\nrsa_bits = 1024\n", NULL, "keystore.rsa_bits", 2, "must be 2048");
        expect_error("[keystore]\nrsa_bits = 9216\n", NULL, "keystore.rsa_bits", 2, "must be 2048");
        expect_error("[tenant.a]\nissuer = bitwarden.example.com\n", NULL, "tenant.a.issuer", 2,
                     "must be an http:// or https:// URL");
}

static void test_listen_values(void **state) {
        (void) state;
        const char ok[] = "[server]\nlisten = [::1]:8443,127.0.0.1:0 , localhost:80\n" REST;
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = parse_ok(ok, NULL);

        assert_int_equal(cfg->server.n_listen, 3);
        assert_string_equal(cfg->server.listen[0].host, "::1");
        assert_int_equal(cfg->server.listen[0].port, 8443);
        assert_string_equal(cfg->server.listen[1].host, "127.0.0.1");
        assert_int_equal(cfg->server.listen[1].port, 0);
        assert_string_equal(cfg->server.listen[2].host, "localhost");
        assert_int_equal(cfg->server.listen[2].port, 80);

        expect_error("[server]\nlisten = ::1:8443\n" REST, NULL, "server.listen", 2,
                     "must be in brackets");
        expect_error("[server]\nlisten = 127.0.0.1:65536\n" REST, NULL, "server.listen", 2,
                     "port must be a number between 0 and 65535");
        expect_error("[server]\nlisten = 127.0.0.1\n" REST, NULL, "server.listen", 2,
                     "must be host:port");
        expect_error("[server]\nlisten = example.com:80\n" REST, NULL, "server.listen", 2,
                     "numeric IPv4");
        expect_error("[server]\nlisten = 127.0.0.01:80\n" REST, NULL, "server.listen", 2,
                     "numeric IPv4");
        expect_error("[server]\nlisten = [::g]:80\n" REST, NULL, "server.listen", 2, "IPv6");
        expect_error("[server]\nlisten = 127.0.0.1:1,,127.0.0.1:2\n" REST, NULL, "server.listen",
                     2, "empty entries");
        expect_error("[server]\nlisten =\n" REST, NULL, "server.listen", 2, "must not be empty");
        expect_error("[server]\nlisten = 127.0.0.1:1,127.0.0.1:2,127.0.0.1:3,127.0.0.1:4,"
                     "127.0.0.1:5,127.0.0.1:6,127.0.0.1:7,127.0.0.1:8,127.0.0.1:9\n" REST,
                     NULL, "server.listen", 2, "at most 8");
}

static void test_plain_http_only_on_loopback(void **state) {
        (void) state;
        struct kh_config *cfg;

        expect_error("[server]\nlisten = 127.0.0.1:1, 0.0.0.0:8443\n" REST, NULL, "server.listen",
                     2, "0.0.0.0 is not a loopback address");
        expect_error("[server]\nlisten = [::]:8443\n" REST, NULL, "server.listen", 2,
                     ":: is not a loopback address");
        expect_error("[server]\nlisten = 10.0.0.1:8443\n" REST, NULL, "server.listen", 2,
                     "not a loopback");

        cfg = parse_ok("[server]\nlisten = 0.0.0.0:8443\nbehind_tls_proxy = true\n" REST, NULL);
        assert_true(cfg->server.behind_tls_proxy);
        cfg = kh_config_free(cfg);
        assert_null(cfg);
        cfg = parse_ok("[server]\nlisten = 0.0.0.0:8443\ntls_cert = c\ntls_key = k\n" REST, NULL);
        cfg = kh_config_free(cfg);
        cfg = parse_ok("[server]\nlisten = 127.255.0.1:1, [::1]:2, localhost:3\n" REST, NULL);
        cfg = kh_config_free(cfg);

        /* the default listen address, so no line */
        char *const env[] = { E("KEYHOLD_SERVER_BEHIND_TLS_PROXY=no"), NULL };
        cfg = parse_ok(REST, env);
        cfg = kh_config_free(cfg);
}

static void test_tls_pair(void **state) {
        (void) state;

        expect_error("[server]\ntls_cert = /c\n" REST, NULL, "server.tls_key", 0,
                     "is required when tls_cert is set");
        expect_error("[server]\ntls_key = /k\n" REST, NULL, "server.tls_cert", 0,
                     "is required when tls_key is set");
}

static void test_cors_origins(void **state) {
        (void) state;
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = parse_ok(
                "[server]\ncors_origins = https://a.example:8443/,http://127.0.0.1\n" REST, NULL);

        assert_int_equal(cfg->server.n_cors_origins, 2);
        assert_string_equal(cfg->server.cors_origins[0], "https://a.example:8443");
        assert_string_equal(cfg->server.cors_origins[1], "http://127.0.0.1");

        expect_error("[server]\ncors_origins = https://a.example/vault\n" REST, NULL,
                     "server.cors_origins", 2, "no path");
        expect_error("[server]\ncors_origins = ftp://a.example\n" REST, NULL,
                     "server.cors_origins", 2, "http:// or https://");
        expect_error("[server]\ncors_origins = HTTPS://a.example\n" REST, NULL,
                     "server.cors_origins", 2, "http:// or https://");
        expect_error("[server]\ncors_origins = https://A.example\n" REST, NULL,
                     "server.cors_origins", 2, "lower case");
        expect_error("[server]\ncors_origins = https://a.example:0\n" REST, NULL,
                     "server.cors_origins", 2, "port 1..65535");
        expect_error("[server]\ncors_origins = https://\n" REST, NULL, "server.cors_origins", 2,
                     "http:// or https://");
        expect_error("[server]\ncors_origins = *\n" REST, NULL, "server.cors_origins", 2,
                     "http:// or https://");
        expect_error(REST "cors_origins = https://x//\n", NULL, "tenant.default.cors_origins", 8,
                     "no path");
        expect_error("[server]\ncors_origins = http://a,http://b,http://c,http://d,http://e,"
                     "http://f,http://g,http://h,http://i,http://j,http://k,http://l,http://m,"
                     "http://n,http://o,http://p,http://q\n" REST,
                     NULL, "server.cors_origins", 2, "at most 16");
}

static void test_required_keys(void **state) {
        (void) state;
        char *const pass[] = { E("KEYHOLD_KEYSTORE_PASSPHRASE=correct horse"), NULL };

        expect_error("[keystore]\npath = /k\nmaster_key_file = /m\n[tenant.a]\nissuer = " ISSUER
                     "\n",
                     NULL, "storage.path", 0, "is required when driver = sqlite");
        expect_error("[storage]\ndriver = postgresql\n[keystore]\npath = /k\nmaster_key_file = "
                     "/m\n[tenant.a]\nissuer = " ISSUER "\n",
                     NULL, "storage.url", 0, "is required when driver = postgresql");
        expect_error("[storage]\npath = /db\n[keystore]\nmaster_key_file = /m\n", NULL,
                     "keystore.path", 0, "is required");
        expect_error(REST, pass, "keystore.master_key_file", 5, "not both");
        expect_error("[storage]\npath = /db\n[keystore]\npath = /k\nmaster_key_file = /m\n", NULL,
                     "tenant", 0, "at least one [tenant.<id>] section is required");
        expect_error(REST "[tenant.acme]\naudience = x\n", NULL, "tenant.acme.issuer", 8,
                     "is required");

        /* no secret at all: a server that starts sealed */
        {
                KH_CLEANUP(kh_config_freep) struct kh_config *sealed = parse_ok(
                        "[storage]\npath = /db\n[keystore]\npath = /k\n[tenant.a]\nissuer = " ISSUER
                        "\n", NULL);
                assert_null(sealed->keystore.master_key_file);
                assert_null(sealed->keystore.passphrase);
        }

        /* pkcs11 needs neither (nor a path), but a module, a token and a PIN
         * (test_pkcs11_keystore) */
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = parse_ok(
                "[storage]\npath = /db\n[keystore]\ndriver = pkcs11\n"
                "module = /usr/lib/softhsm/libsofthsm2.so\ntoken_label = t\npin_file = /p\n"
                "[tenant.a]\nissuer = " ISSUER "\n",
                NULL);
        assert_string_equal(cfg->keystore.driver, "pkcs11");
}

static void test_env_overrides(void **state) {
        (void) state;
        char *const env[] = {
                E("PATH=/usr/bin"),
                E("KEYHOLD_URL=https://ignored.example"),
                E("KEYHOLD_TOKEN=ignored"),
                E("KEYHOLD_SERVER_LISTEN=127.0.0.1:0"),
                E("KEYHOLD_SERVER_THREADS=16"),
                E("KEYHOLD_STORAGE_PATH=/tmp/other.db"),
                E("KEYHOLD_KEYSTORE_MASTER_KEY_FILE="),
                E("KEYHOLD_KEYSTORE_PASSPHRASE=correct horse battery staple"),
                E("KEYHOLD_KEYSTORE_RSA_BITS=2048"),
                E("KEYHOLD_TENANT_DEFAULT_ISSUER=https://other.example/identity"),
                E("KEYHOLD_TENANT_DEFAULT_ISSUER_CA=/ca.pem"),
                E("KEYHOLD_TENANT_DEFAULT_CORS_ORIGINS=https://t.example/"),
                E("KEYHOLD_SERVER_THREADS=99"), /* the first one wins, as with getenv() */
                NULL,
        };
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg =
                parse_ok("[server]\nlisten = 127.0.0.1:8443\nthreads = 2\n" REST, env);

        assert_int_equal(cfg->server.n_listen, 1);
        assert_int_equal(cfg->server.listen[0].port, 0);
        assert_int_equal(cfg->server.threads, 16);
        assert_string_equal(cfg->storage.path, "/tmp/other.db");
        assert_null(cfg->keystore.master_key_file);
        assert_string_equal(cfg->keystore.passphrase, "correct horse battery staple");
        assert_int_equal(cfg->keystore.rsa_bits, 2048);
        assert_int_equal(cfg->n_tenants, 1);
        assert_string_equal(cfg->tenants[0].issuer, "https://other.example/identity");
        assert_string_equal(cfg->tenants[0].issuer_ca, "/ca.pem");
        assert_int_equal(cfg->tenants[0].n_cors_origins, 1);
        assert_string_equal(cfg->tenants[0].cors_origins[0], "https://t.example");
}

static void test_env_errors(void **state) {
        (void) state;
        char *const unknown[] = { E("KEYHOLD_SERVER_LISTN=127.0.0.1:1"), NULL };
        char *const bad_value[] = { E("KEYHOLD_SERVER_THREADS=1000"), NULL };
        char *const tenant_key[] = { E("KEYHOLD_TENANT_DEFAULT_ISSUR=x"), NULL };
        char *const no_id[] = { E("KEYHOLD_TENANT_ISSUER=" ISSUER), NULL };
        char *const bad_id[] = { E("KEYHOLD_TENANT_acme_ISSUER=" ISSUER), NULL };
        char *const storage[] = { E("KEYHOLD_STORAGE_=x"), NULL };
        char *const plain[] = { E("KEYHOLD_SERVER_LISTEN=0.0.0.0:1"), NULL };
        char *const no_issuer[] = { E("KEYHOLD_TENANT_ACME_ADMINS=role:x"), NULL };

        expect_error(REST, unknown, "KEYHOLD_SERVER_LISTN", 0, "unknown key");
        expect_error(REST, bad_value, "KEYHOLD_SERVER_THREADS", 0,
                     "must be a number between 0 and 256");
        expect_error(REST, tenant_key, "KEYHOLD_TENANT_DEFAULT_ISSUR", 0, "unknown key");
        expect_error(REST, no_id, "KEYHOLD_TENANT_ISSUER", 0, "unknown key");
        expect_error(REST, bad_id, "KEYHOLD_TENANT_acme_ISSUER", 0, "tenant id");
        expect_error(REST, storage, "KEYHOLD_STORAGE_", 0, "unknown key");
        expect_error(REST, plain, "KEYHOLD_SERVER_LISTEN", 0, "not a loopback address");
        expect_error(REST, no_issuer, "tenant.acme.issuer", 0, "is required");
}

static void test_tenant_only_from_env(void **state) {
        (void) state;
        char *const env[] = {
                E("KEYHOLD_STORAGE_PATH=/db"),
                E("KEYHOLD_KEYSTORE_PATH=/ks"),
                E("KEYHOLD_KEYSTORE_PASSPHRASE=pw"),
                E("KEYHOLD_TENANT_ACME_CORP_ISSUER=" ISSUER),
                E("KEYHOLD_TENANT_ACME_CORP_JWKS_FILE=/acme.jwks"),
                E("KEYHOLD_TENANT_T2_ISSUER=https://t2.example"),
                NULL,
        };
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        struct kh_config_error err;
        const struct kh_config_tenant *t;

        /* no file at all */
        assert_int_equal(kh_config_load(NULL, env, &cfg, &err), 0);
        assert_int_equal(cfg->n_tenants, 2);
        t = kh_config_tenant(cfg, "acme-corp");
        assert_non_null(t);
        assert_string_equal(t->issuer, ISSUER);
        assert_string_equal(t->jwks_file, "/acme.jwks");
        t = kh_config_tenant(cfg, "t2");
        assert_non_null(t);
        assert_string_equal(t->issuer, "https://t2.example");
        assert_null(t->jwks_file);
        assert_string_equal(cfg->keystore.passphrase, "pw");
        assert_string_equal(cfg->storage.path, "/db");
}

static void test_long_tenant_id_and_value(void **state) {
        (void) state;
        char id[KH_TENANT_ID_MAX + 1];
        char *text, *env_var;
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        struct kh_config_error err;

        /* 63 characters: longer than inih's own section buffer */
        memset(id, 'a', KH_TENANT_ID_MAX);
        id[KH_TENANT_ID_MAX] = 0;
        assert_true(asprintf(&text, REST "[tenant.%s]\nissuer = " ISSUER "\n", id) > 0);
        assert_true(asprintf(&env_var, "KEYHOLD_TENANT_%s_ADMINS=role:x", id) > 0);
        for (char *p = env_var + strlen("KEYHOLD_TENANT_"); *p != '_'; p++)
                *p = 'A';
        char *const env[] = { env_var, NULL };
        cfg = parse_ok(text, env);
        assert_int_equal(cfg->n_tenants, 2);
        assert_string_equal(cfg->tenants[1].id, id);
        assert_int_equal(cfg->tenants[1].n_admins, 1);
        assert_string_equal(cfg->tenants[1].admins[0].value, "x");
        free(text);
        free(env_var);

        /* a 64-character id is refused */
        assert_true(asprintf(&text, REST "[tenant.%sb]\n", id) > 0);
        struct kh_config *c2 = NULL;
        assert_int_equal(kh_config_parse_string(text, strlen(text), no_env, &c2, &err), -EINVAL);
        assert_int_equal(err.line, 8);
        assert_true(strncmp(err.key, "tenant.aaa", 10) == 0);
        free(text);

        /* a value of exactly KH_CONFIG_VALUE_MAX bytes is fine, one more is not */
        char *val = malloc(KH_CONFIG_VALUE_MAX + 2);
        assert_non_null(val);
        memset(val, 'x', KH_CONFIG_VALUE_MAX + 1);
        val[KH_CONFIG_VALUE_MAX] = 0;
        assert_true(asprintf(&text, REST "audience = %s\n", val) > 0);
        c2 = parse_ok(text, NULL);
        assert_int_equal(strlen(c2->tenants[0].audience), KH_CONFIG_VALUE_MAX);
        c2 = kh_config_free(c2);
        free(text);
        val[KH_CONFIG_VALUE_MAX] = 'x';
        val[KH_CONFIG_VALUE_MAX + 1] = 0;
        assert_true(asprintf(&text, REST "audience = %s\n", val) > 0);
        expect_error(text, NULL, "tenant.default.audience", 8, "longer than 4096 bytes");
        free(text);
        free(val);

        /* a line past inih's buffer is refused, never split into two lines */
        val = malloc(3 * KH_CONFIG_VALUE_MAX);
        assert_non_null(val);
        memset(val, 'y', 3 * KH_CONFIG_VALUE_MAX - 1);
        val[3 * KH_CONFIG_VALUE_MAX - 1] = 0;
        assert_true(asprintf(&text, REST "; %s\n", val) > 0);
        expect_error(text, NULL, "tenant.default", 8, "line is longer than");
        free(text);
        free(val);
}

static void test_bom_and_crlf(void **state) {
        (void) state;
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = parse_ok(
                "\xEF\xBB\xBF[server]\r\nthreads = 3\r\n[storage]\r\npath = /db\r\n[keystore]\r\n"
                "path = /k\r\nmaster_key_file = /m\r\n[tenant.x]\r\nissuer = " ISSUER "\r\n",
                NULL);

        assert_int_equal(cfg->server.threads, 3);
        assert_string_equal(cfg->storage.path, "/db");
        assert_string_equal(cfg->tenants[0].issuer, ISSUER);
}

static void test_dev_config(void **state) {
        (void) state;
        char *const env[] = { E("KEYHOLD_SERVER_LISTEN=127.0.0.1:0"),
                              E("KEYHOLD_TENANT_DEFAULT_ISSUER=" KH_DEV_ISSUER), NULL };
        char *const prod[] = { E("KEYHOLD_TENANT_DEFAULT_ISSUER=" ISSUER), NULL };
        char *const other[] = { E("KEYHOLD_TENANT_OTHER_ISSUER=" ISSUER), NULL };
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        struct kh_config *untouched = &sentinel_cfg;
        struct kh_config_error err;
        const struct kh_config_tenant *t;

        assert_int_equal(kh_config_dev("/tmp/kh-dev", env, &cfg, &err), 0);
        assert_true(cfg->dev);
        assert_string_equal(cfg->data_dir, "/tmp/kh-dev");
        assert_int_equal(cfg->server.n_listen, 1);
        assert_string_equal(cfg->server.listen[0].host, "127.0.0.1");
        assert_int_equal(cfg->server.listen[0].port, 0);
        assert_string_equal(cfg->server.tls_cert, "/tmp/kh-dev/tls.crt");
        assert_string_equal(cfg->server.tls_key, "/tmp/kh-dev/tls.key");
        assert_string_equal(cfg->storage.driver, "sqlite");
        assert_string_equal(cfg->storage.path, "/tmp/kh-dev/keyhold.db");
        assert_string_equal(cfg->keystore.driver, "file");
        assert_string_equal(cfg->keystore.path, "/tmp/kh-dev/keystore");
        assert_string_equal(cfg->keystore.master_key_file, "/tmp/kh-dev/master.key");
        assert_null(cfg->keystore.passphrase);
        assert_int_equal(cfg->keystore.rsa_bits, 3072);
        assert_int_equal(cfg->n_tenants, 1);
        t = kh_config_tenant(cfg, "default");
        assert_non_null(t);
        assert_string_equal(t->issuer, KH_DEV_ISSUER);
        assert_string_equal(t->jwks_file, "/tmp/kh-dev/dev-issuer.jwks");
        cfg = kh_config_free(cfg);

        /* default port, trailing slash in the folder */
        assert_int_equal(kh_config_dev("./dev/", no_env, &cfg, &err), 0);
        assert_int_equal(cfg->server.listen[0].port, 8443);
        assert_string_equal(cfg->storage.path, "./dev/keyhold.db");
        cfg = kh_config_free(cfg);

        memset(&err, 0, sizeof(err));
        assert_int_equal(kh_config_dev("/tmp/kh-dev", prod, &untouched, &err), -EINVAL);
        assert_ptr_equal(untouched, &sentinel_cfg);
        assert_string_equal(err.key, "KEYHOLD_TENANT_DEFAULT_ISSUER");
        assert_int_equal(err.line, 0);
        assert_string_equal(err.reason, "dev mode refuses a production issuer");
        assert_int_equal(kh_config_dev("/tmp/kh-dev", other, &untouched, &err), -EINVAL);
        assert_string_equal(err.key, "KEYHOLD_TENANT_OTHER_ISSUER");
}

static char *write_temp(const char *text, size_t len) {
        char tmpl[] = "/tmp/kh-test-config-XXXXXX";
        int fd = mkstemp(tmpl);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, text, len), (ssize_t) len);
        assert_int_equal(close(fd), 0);
        return strdup(tmpl);
}

static void test_load_file(void **state) {
        (void) state;
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        struct kh_config *untouched = &sentinel_cfg;
        struct kh_config_error err;
        char *path = write_temp("[server]\nthreads = 7\n" REST, strlen("[server]\nthreads = 7\n" REST));
        char *big_text, *big;

        assert_int_equal(kh_config_load(path, no_env, &cfg, &err), 0);
        assert_int_equal(cfg->server.threads, 7);
        assert_string_equal(cfg->tenants[0].issuer, ISSUER);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(kh_config_load(path, no_env, &untouched, &err), -ENOENT);
        assert_ptr_equal(untouched, &sentinel_cfg);
        free(path);

        /* errors from a file carry its line numbers */
        path = write_temp("[server]\n\n\nthreads = many\n", strlen("[server]\n\n\nthreads = many\n"));
        assert_int_equal(kh_config_load(path, no_env, &untouched, &err), -EINVAL);
        assert_string_equal(err.key, "server.threads");
        assert_int_equal(err.line, 4);
        assert_int_equal(unlink(path), 0);
        free(path);

        /* larger than KH_CONFIG_FILE_MAX: comments only, refused for its size */
        big_text = malloc(KH_CONFIG_FILE_MAX + 1);
        assert_non_null(big_text);
        memset(big_text, ';', KH_CONFIG_FILE_MAX + 1);
        for (size_t i = 63; i < KH_CONFIG_FILE_MAX + 1; i += 64)
                big_text[i] = '\n';
        big = write_temp(big_text, KH_CONFIG_FILE_MAX + 1);
        assert_int_equal(kh_config_load(big, no_env, &untouched, &err), -EINVAL);
        assert_string_equal(err.reason, "the file is larger than 1 MiB");
        assert_int_equal(unlink(big), 0);
        free(big);
        free(big_text);
}

static void test_admin_matchers(void **state) {
        struct kh_config *cfg;
        (void) state;

        cfg = parse_ok(REST "admins = role:keyhold-admin, groups:security ,sub:urn:x:y\n", NULL);
        assert_int_equal(cfg->tenants[0].n_admins, 3);
        assert_string_equal(cfg->tenants[0].admins[0].claim, "role");
        assert_string_equal(cfg->tenants[0].admins[0].value, "keyhold-admin");
        assert_string_equal(cfg->tenants[0].admins[1].claim, "groups");
        assert_string_equal(cfg->tenants[0].admins[1].value, "security");
        assert_string_equal(cfg->tenants[0].admins[2].claim, "sub");
        assert_string_equal(cfg->tenants[0].admins[2].value, "urn:x:y");  /* first ':' splits */
        kh_config_free(cfg);

        cfg = parse_ok(REST "admins =\n", NULL);
        assert_int_equal(cfg->tenants[0].n_admins, 0);
        kh_config_free(cfg);

        expect_error(REST "admins = keyhold-admin\n", NULL, "tenant.default.admins", 8,
                     "CLAIM:VALUE");
        expect_error(REST "admins = role:\n", NULL, "tenant.default.admins", 8, "CLAIM:VALUE");
        expect_error(REST "admins = :x\n", NULL, "tenant.default.admins", 8, "CLAIM:VALUE");
        expect_error(REST "admins = ro le:x\n", NULL, "tenant.default.admins", 8, "CLAIM:VALUE");
        expect_error(REST "admins = role:a,,role:b\n", NULL, "tenant.default.admins", 8,
                     "CLAIM:VALUE");
        expect_error(REST "admins = a:1,a:2,a:3,a:4,a:5,a:6,a:7,a:8,a:9,a:10,a:11,a:12,a:13,"
                          "a:14,a:15,a:16,a:17\n",
                     NULL, "tenant.default.admins", 8, "at most 16");
}

static void test_free_null(void **state) {
        (void) state;
        assert_null(kh_config_free(NULL));
        assert_null(kh_config_tenant(NULL, "default"));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_full_valid_file),
                cmocka_unit_test(test_defaults),
                cmocka_unit_test(test_max_token_lifetime),
                cmocka_unit_test(test_structure_errors),
                cmocka_unit_test(test_passphrase_in_file_refused),
                cmocka_unit_test(test_pkcs11_keystore),
                cmocka_unit_test(test_postgresql_storage),
                cmocka_unit_test(test_value_errors),
                cmocka_unit_test(test_listen_values),
                cmocka_unit_test(test_plain_http_only_on_loopback),
                cmocka_unit_test(test_tls_pair),
                cmocka_unit_test(test_cors_origins),
                cmocka_unit_test(test_required_keys),
                cmocka_unit_test(test_env_overrides),
                cmocka_unit_test(test_env_errors),
                cmocka_unit_test(test_tenant_only_from_env),
                cmocka_unit_test(test_long_tenant_id_and_value),
                cmocka_unit_test(test_bom_and_crlf),
                cmocka_unit_test(test_dev_config),
                cmocka_unit_test(test_load_file),
                cmocka_unit_test(test_admin_matchers),
                cmocka_unit_test(test_free_null),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
