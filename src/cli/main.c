/* keyhold: the command line. Today: dev-token (dev mode). Administration commands
 * (keys, devices, approvals, audit, backup) arrive with their issues. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/pem.h>

#include "common/errors.h"
#include "common/parse.h"
#include "config/config.h"
#include "config/dev-names.h"
#include "crypto/rsa.h"
#include "token/jwt-sign.h"

static const char usage[] =
        "Usage: keyhold COMMAND [OPTIONS]\n"
        "\n"
        "Commands:\n"
        "  dev-token --user GUID   print a bearer token from the built-in issuer of a\n"
        "                          `keyholdd --dev` data folder (dev mode only)\n"
        "\n"
        "Run `keyhold COMMAND --help` for a command's options.\n";

static const char dev_token_usage[] =
        "Usage: keyhold dev-token --user GUID [--data DIR] [--ttl SECONDS] [--json]\n"
        "\n"
        "Prints a token signed by the dev issuer of a `keyholdd --dev` data folder, with the\n"
        "claims a Bitwarden client's token carries (scope api, amr external).\n"
        "\n"
        "  --user GUID      the member's user id (sub claim)\n"
        "  --data DIR       the dev data folder (default " KH_DEV_DATA_DEFAULT ")\n"
        "  --ttl SECONDS    lifetime, 1..86400 (default 3600)\n"
        "  --json           print {\"token\": ..., \"expires\": ...}\n";

static int dev_token(int argc, char **argv) {
        static const struct option longopts[] = {
                { "user", required_argument, NULL, 'u' }, { "data", required_argument, NULL, 'd' },
                { "ttl", required_argument, NULL, 't' },  { "json", no_argument, NULL, 'j' },
                { "help", no_argument, NULL, 'h' },       { NULL, 0, NULL, 0 },
        };
        const char *user = NULL, *data = KH_DEV_DATA_DEFAULT;
        char guid[KH_GUID_BUF], path[4096];
        KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *key = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf token;
        json_auto_t *claims = NULL;
        uint64_t ttl = 3600;
        bool as_json = false;
        char *claims_text;
        FILE *f;
        int c, r;

        kh_buf_init(&token, 16 * 1024, true);
        optind = 1;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                switch (c) {
                case 'u': user = optarg; break;
                case 'd': data = optarg; break;
                case 't':
                        if (kh_parse_u64(optarg, strlen(optarg), 86400, &ttl) < 0 || ttl == 0) {
                                fprintf(stderr, "keyhold dev-token: --ttl must be 1..86400 seconds\n");
                                return 2;
                        }
                        break;
                case 'j': as_json = true; break;
                case 'h': fputs(dev_token_usage, stdout); return 0;
                default: fputs(dev_token_usage, stderr); return 2;
                }
        }
        if (!user || kh_parse_guid(user, strlen(user), guid) < 0) {
                fprintf(stderr, "keyhold dev-token: --user must be a GUID such as "
                                "3fa85f64-5717-4562-b3fc-2c963f66afa6\n");
                return 2;
        }
        (void) snprintf(path, sizeof(path), "%s/%s", data, KH_DEV_ISSUER_KEY_FILE);
        f = fopen(path, "re");
        if (!f) {
                fprintf(stderr, "keyhold dev-token: cannot open %s: %s\n(start `keyholdd --dev%s%s` first)\n",
                        path, strerror(errno), strcmp(data, KH_DEV_DATA_DEFAULT) ? " --data " : "",
                        strcmp(data, KH_DEV_DATA_DEFAULT) ? data : "");
                return 1;
        }
        key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (!key) {
                fprintf(stderr, "keyhold dev-token: %s is not a private key\n", path);
                return 1;
        }

        time_t now = time(NULL);
        claims = json_pack("{s:s, s:s, s:s, s:[s,s], s:[s], s:I, s:I, s:I, s:s}",
                           "iss", KH_DEV_ISSUER, "sub", guid, "email", "dev@keyhold.invalid",
                           "scope", "api", "offline_access", "amr", "external",
                           "iat", (json_int_t) now, "nbf", (json_int_t) now - 5,
                           "exp", (json_int_t) (now + (time_t) ttl), "client_id", "keyhold-dev");
        claims_text = claims ? json_dumps(claims, JSON_COMPACT) : NULL;
        if (!claims_text)
                return 1;
        r = kh_jwt_sign(key, KH_JWT_ALG_ES256, KH_DEV_ISSUER_KID, claims_text, &token);
        free(claims_text);
        if (r < 0) {
                fprintf(stderr, "keyhold dev-token: signing failed: %s\n", kh_strerror(r));
                return 1;
        }
        if (as_json)
                printf("{\"token\":\"%s\",\"expires\":%lld}\n", (const char *) token.data,
                       (long long) (now + (time_t) ttl));
        else
                printf("%s\n", (const char *) token.data);
        return 0;
}

int main(int argc, char **argv) {
        if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
            strcmp(argv[1], "help") == 0) {
                fputs(usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (strcmp(argv[1], "--version") == 0) {
                puts("keyhold " KH_VERSION);
                return 0;
        }
        if (strcmp(argv[1], "dev-token") == 0)
                return dev_token(argc - 1, argv + 1);
        fprintf(stderr, "keyhold: unknown command '%s'\n\n%s", argv[1], usage);
        return 2;
}
