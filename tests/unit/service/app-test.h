/* A data folder for a real app in a service unit test: a key store directory, a random
 * master key and a local JWKS file as the tenants' issuer keys, so that kh_app_open()
 * needs no network. Include after <cmocka.h>. */
#pragma once

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "crypto/random.h"

/* RFC 7517 appendix A.1's P-256 public key, as a signing key. */
static const char app_test_jwks[] =
        "{\"keys\":[{\"kty\":\"EC\",\"crv\":\"P-256\",\"use\":\"sig\",\"alg\":\"ES256\",\"kid\":\"1\","
        "\"x\":\"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4\","
        "\"y\":\"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM\"}]}";

static inline void app_test_write_file(const char *dir, const char *name, const void *p,
                                       size_t n, mode_t mode) {
        char path[128];
        int fd;

        snprintf(path, sizeof(path), "%s/%s", dir, name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, p, n), (ssize_t) n);
        close(fd);
}

/* Creates dir from its mkdtemp() template (ending in XXXXXX) with keystore/ (the key store
 * path), master.key and jwks.json in it. */
static inline void app_test_make_dir(char *dir) {
        char ks[128];
        uint8_t master[32];

        assert_non_null(mkdtemp(dir));
        snprintf(ks, sizeof(ks), "%s/keystore", dir);
        assert_int_equal(mkdir(ks, 0700), 0);
        assert_int_equal(kh_random_bytes(master, sizeof(master)), 0);
        app_test_write_file(dir, "master.key", master, sizeof(master), 0600);
        app_test_write_file(dir, "jwks.json", app_test_jwks, strlen(app_test_jwks), 0644);
}

/* Creates dir as app_test_make_dir() does and returns the parsed configuration of an app on
 * it: SQLite file keyhold.db, the file key store (RSA-2048), and a [tenant.<id>] for each of
 * tenants[0..n) whose issuer keys are jwks.json. The caller frees it (kh_config_free). */
static inline struct kh_config *app_test_config(char *dir, const char *const *tenants,
                                                size_t n) {
        struct kh_config *cfg = NULL;
        char text[2048];
        int len;

        app_test_make_dir(dir);
        len = snprintf(text, sizeof(text),
                       "[storage]\npath = %s/keyhold.db\n"
                       "[keystore]\npath = %s/keystore\nmaster_key_file = %s/master.key\n"
                       "rsa_bits = 2048\n",
                       dir, dir, dir);
        for (size_t i = 0; i < n; i++) {
                assert_in_range(len, 0, sizeof(text) - 1);
                len += snprintf(text + len, sizeof(text) - (size_t) len,
                                "[tenant.%s]\nissuer = https://%s.test\njwks_file = %s/jwks.json\n",
                                tenants[i], tenants[i], dir);
        }
        assert_in_range(len, 0, sizeof(text) - 1);
        assert_int_equal(kh_config_parse_string(text, (size_t) len, NULL, &cfg, NULL), 0);
        return cfg;
}
