/* keyhold dev-token: a member token from the built-in issuer of a `keyholdd --dev` data
 * folder, so that a developer can call the API without an identity provider. Offline: it
 * signs with the folder's issuer key and never talks to keyholdd. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/pem.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "common/buf.h"
#include "common/errors.h"
#include "common/parse.h"
#include "config/config.h"
#include "config/dev-names.h"
#include "crypto/rsa.h"
#include "token/jwt-sign.h"

#define DEV_TOKEN_TTL_DEFAULT_S 3600
#define DEV_TOKEN_TTL_MAX_S     86400
#define DEV_TOKEN_MAX           (16 * 1024)

/* The dev issuer's private key from data. Returns 0 or 1 after reporting why not. */
static int load_issuer_key(struct kh_cli *cli, const char *data, EVP_PKEY **ret) {
        bool default_data = strcmp(data, KH_DEV_DATA_DEFAULT) == 0;
        char path[4096];
        EVP_PKEY *key;
        FILE *f;

        if ((size_t) snprintf(path, sizeof(path), "%s/%s", data, KH_DEV_ISSUER_KEY_FILE) >=
            sizeof(path))
                return kh_cli_fail(cli, "file_error", "--data: the folder name is too long");
        f = fopen(path, "re");
        if (!f)
                return kh_cli_fail(cli, "file_error",
                                   "cannot open %s: %s (start `keyholdd --dev%s%s` first)", path,
                                   strerror(errno), default_data ? "" : " --data ",
                                   default_data ? "" : data);
        key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        (void) fclose(f);
        if (!key)
                return kh_cli_fail(cli, "file_error", "%s is not a private key", path);
        *ret = key;
        return 0;
}

int kh_cmd_dev_token(struct kh_cli *cli) {
        const char *user = kh_cli_value(cli, "user"), *data = kh_cli_value(cli, "data");
        const char *email = kh_cli_value(cli, "email");
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf token = { 0 };
        KH_CLEANUP(kh_freep) char *claims_text = NULL;
        json_auto_t *claims = NULL, *out = NULL;
        char guid[KH_GUID_BUF];
        uint64_t ttl;
        time_t now;
        int r;

        kh_buf_init(&token, DEV_TOKEN_MAX, true);
        r = kh_cli_number(cli, "ttl", 1, DEV_TOKEN_TTL_MAX_S, DEV_TOKEN_TTL_DEFAULT_S, &ttl);
        if (r != 0)
                return r;
        if (!user || kh_parse_guid(user, strlen(user), guid) < 0)
                return kh_cli_usage_error(cli, "--user must be a GUID such as "
                                               "3fa85f64-5717-4562-b3fc-2c963f66afa6");
        if (email && (!*email || strlen(email) > 254 || !strchr(email, '@') ||
                      strpbrk(email, " \t\r\n")))
                return kh_cli_usage_error(cli, "--email must be an e-mail address");
        r = load_issuer_key(cli, data ? data : KH_DEV_DATA_DEFAULT, &key);
        if (r != 0)
                return r;

        now = time(NULL);
        claims = json_pack("{s:s, s:s, s:s, s:[s,s], s:[s], s:I, s:I, s:I, s:s}",
                           "iss", KH_DEV_ISSUER, "sub", guid, "email", email ? email : "dev@keyhold.invalid",
                           "scope", "api", "offline_access", "amr", "external",
                           "iat", (json_int_t) now, "nbf", (json_int_t) now - 5,
                           "exp", (json_int_t) (now + (time_t) ttl), "client_id", "keyhold-dev");
        claims_text = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
        if (!claims_text)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        r = kh_jwt_sign(key, KH_JWT_ALG_ES256, KH_DEV_ISSUER_KID, claims_text, &token);
        if (r < 0)
                return kh_cli_fail(cli, "internal_error", "signing failed: %s", kh_strerror(r));
        if (!kh_cli_json(cli)) {
                printf("%s\n", (const char *) token.data);
                return 0;
        }
        out = json_pack("{s:s, s:I}", "token", (const char *) token.data, "expires",
                        (json_int_t) (now + (time_t) ttl));
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return kh_cli_print_json(cli, out);
}
