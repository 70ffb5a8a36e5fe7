#include "cli/member.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/buf.h"
#include "common/file.h"
#include "common/limits.h"
#include "common/parse.h"
#include "config/config.h"
#include "keyhold/device.h"

#define KEY_FILE_MAX 1024
#define URL_MAX 2048

const char *kh_member_identifier(const struct kh_member *m) {
        return json_string_value(json_object_get(m->device, "identifier"));
}

void kh_member_close(struct kh_member *m) {
        keyhold_client_free(m->client);
        if (m->token)
                keyhold_wipe_free(m->token, strlen(m->token));
        json_decref(m->device);
        kh_state_free(m->state);
        *m = (struct kh_member) { 0 };
}

/* The member token: --token / KEYHOLD_TOKEN, or --token-file; *ret NULL when none. */
static int member_token(struct kh_cli *cli, char **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf file_token = { 0 };
        const char *file = kh_cli_global(cli, KH_CLI_G_TOKEN_FILE);
        const char *token = kh_cli_global(cli, KH_CLI_G_TOKEN);
        int r;

        kh_buf_init(&file_token, KH_TOKEN_MAX + 1, true);
        *ret = NULL;
        if (file) { /* the file wins over KEYHOLD_TOKEN */
                r = kh_cli_read_token_file(cli, file, &file_token);
                if (r != 0)
                        return r;
                token = (const char *) file_token.data;
        }
        if (!token)
                return 0;
        *ret = strdup(token);
        return *ret ? 0 : kh_cli_fail(cli, "internal_error", "out of memory");
}

int kh_member_open(struct kh_cli *cli, unsigned flags, struct kh_member *m) {
        struct keyhold_client_options o = { 0 };
        const char *url = kh_cli_global(cli, KH_CLI_G_URL);
        const char *tenant = kh_cli_global(cli, KH_CLI_G_TENANT);
        char base[URL_MAX + 80];
        size_t len;
        int r;

        *m = (struct kh_member) { 0 };
        if (tenant && !kh_tenant_id_is_valid(tenant, strlen(tenant)))
                return kh_cli_usage_error(cli, "--tenant: '%s' is no tenant id ([a-z0-9][a-z0-9-]*, "
                                               "at most 63)", tenant);
        (void) snprintf(m->tenant, sizeof(m->tenant), "%s", tenant ? tenant : "default");
        if (!(flags & KH_MEMBER_NO_SERVER)) {
                if (!url)
                        return kh_cli_usage_error(cli, "this command talks to the server as a member: "
                                                       "give --url URL (or KEYHOLD_URL) and the "
                                                       "member's token");
                r = member_token(cli, &m->token);
                if (r != 0)
                        return r;
                if ((flags & KH_MEMBER_TOKEN) && !m->token)
                        return kh_cli_usage_error(cli, "this command needs the member's token: "
                                                       "--token, --token-file or KEYHOLD_TOKEN");
        }

        r = kh_state_open(kh_cli_global(cli, KH_CLI_G_STATE), &m->state);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot open the state folder %s: %s",
                                   kh_cli_global(cli, KH_CLI_G_STATE)
                                           ? kh_cli_global(cli, KH_CLI_G_STATE)
                                           : "(default: set --state DIR, XDG_STATE_HOME or HOME)",
                                   strerror(-r));
        r = kh_state_device(m->state, flags & KH_MEMBER_CREATE_DEVICE, &m->device);
        if (r == -EPERM)
                return kh_cli_fail(cli, "file_error", "%s/device.json is open to group or others; "
                                   "chmod 600 it", kh_state_path(m->state));
        if (r < 0 && r != -ENOENT)
                return kh_cli_fail(cli, "file_error", "cannot use %s/device.json: %s",
                                   kh_state_path(m->state), strerror(-r));
        if (flags & KH_MEMBER_NO_SERVER)
                return 0;

        len = strlen(url);
        while (len > 0 && url[len - 1] == '/')
                len--;
        if (len >= URL_MAX)
                return kh_cli_usage_error(cli, "--url is too long");
        if (strcmp(m->tenant, "default") == 0)
                (void) snprintf(base, sizeof(base), "%.*s", (int) len, url);
        else
                (void) snprintf(base, sizeof(base), "%.*s/t/%s", (int) len, url, m->tenant);
        o.url = base;
        o.token = m->token;
        o.cacert = kh_cli_global(cli, KH_CLI_G_CACERT);
        o.device_identifier = kh_member_identifier(m);
        o.organization_id = m->tenant;
        if (o.cacert && access(o.cacert, R_OK) < 0)
                return kh_cli_fail(cli, "file_error", "cannot read the CA file %s: %s", o.cacert,
                                   strerror(errno));
        r = keyhold_client_new(&o, &m->client);
        if (r == KEYHOLD_E_INVALID)
                return kh_cli_usage_error(cli, "--url: '%s' is not an https:// URL (http:// only "
                                               "to this machine) without a query, or the token "
                                               "holds characters no bearer token has", url);
        if (r < 0)
                return kh_cli_fail(cli, "internal_error", "%s", keyhold_strerror(r));
        return 0;
}

static const char *code_for(int r) {
        switch (r) {
        case KEYHOLD_E_HTTP:
                return "unreachable";
        case KEYHOLD_E_BAD_REQUEST:
                return "bad_request";
        case KEYHOLD_E_UNAUTHORIZED:
                return "unauthorized";
        case KEYHOLD_E_FORBIDDEN:
                return "forbidden";
        case KEYHOLD_E_NOT_FOUND:
                return "not_found";
        case KEYHOLD_E_CONFLICT:
                return "conflict";
        case KEYHOLD_E_RESPONSE:
                return "bad_response";
        case KEYHOLD_E_DENIED:
                return "denied";
        case KEYHOLD_E_EXPIRED:
                return "expired";
        case KEYHOLD_E_UNTRUSTED:
                return "not_trusted";
        case KEYHOLD_E_NOMEM:
                return "internal_error";
        default:
                return r <= KEYHOLD_E_HTTP ? "server_error" : "crypto_error";
        }
}

int kh_member_fail(struct kh_cli *cli, const struct kh_member *m, int r, const char *what) {
        const char *message = m->client ? keyhold_client_error_message(m->client) : "";
        const char *code = m->client ? keyhold_client_error_code(m->client) : "";

        if (r > KEYHOLD_E_HTTP || !*message)
                return kh_cli_fail(cli, code_for(r), "%s failed: %s", what, keyhold_strerror(r));
        if (r == KEYHOLD_E_HTTP)
                return kh_cli_fail(cli, "unreachable", "%s failed: cannot reach the server: %s "
                                   "(is the URL right? --cacert names the CA of its certificate)",
                                   what, message);
        return kh_cli_fail(cli, *code ? code : code_for(r), "%s failed: %s", what, message);
}

/* base64 text of exactly 64 bytes into key. */
static int decode_key(const char *text, size_t len, uint8_t key[KEYHOLD_USER_KEY_LEN]) {
        uint8_t *raw = NULL;
        size_t n = 0;
        int r;

        r = keyhold_base64_decode(text, len, &raw, &n);
        if (r < 0)
                return r;
        if (n != KEYHOLD_USER_KEY_LEN) {
                keyhold_wipe_free(raw, n);
                return KEYHOLD_E_KEY;
        }
        memcpy(key, raw, KEYHOLD_USER_KEY_LEN);
        keyhold_wipe_free(raw, n);
        return 0;
}

int kh_member_read_user_key(struct kh_cli *cli, const char *path,
                            uint8_t user_key[KEYHOLD_USER_KEY_LEN]) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        char chunk[256];
        ssize_t n;
        int r;

        kh_buf_init(&b, KEY_FILE_MAX, true);
        if (strcmp(path, "-") == 0) {
                while ((n = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0 || kh_buf_append(&b, chunk, (size_t) n) < 0) {
                                OPENSSL_cleanse(chunk, sizeof(chunk));
                                return kh_cli_fail(cli, "file_error",
                                                   "cannot read the user key from stdin");
                        }
                }
                OPENSSL_cleanse(chunk, sizeof(chunk));
        } else {
                r = kh_file_read(AT_FDCWD, path, 0, KEY_FILE_MAX, &b);
                if (r < 0)
                        return kh_cli_fail(cli, "file_error", "cannot read the user key file %s: %s",
                                           path, strerror(-r));
        }
        if (b.len > 0 && b.data[b.len - 1] == '\n')
                b.len--;
        if (b.len > 0 && b.data[b.len - 1] == '\r')
                b.len--;
        r = decode_key((const char *) b.data, b.len, user_key);
        if (r < 0)
                return kh_cli_fail(cli, "invalid_key", "%s holds no user key: base64 of 64 bytes "
                                   "on one line", strcmp(path, "-") == 0 ? "stdin" : path);
        return 0;
}

char *kh_member_key_text(const uint8_t user_key[KEYHOLD_USER_KEY_LEN]) {
        char *s = NULL;

        return keyhold_base64_encode(user_key, KEYHOLD_USER_KEY_LEN, &s) == 0 ? s : NULL;
}

int kh_member_write_secret(struct kh_cli *cli, const char *path, const char *text) {
        size_t len = strlen(text);
        char *line;
        int r;

        if (!path) {
                printf("%s\n", text);
                return 0;
        }
        line = malloc(len + 2);
        if (!line)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        memcpy(line, text, len);
        line[len] = '\n';
        line[len + 1] = 0;
        r = kh_file_write_atomic(AT_FDCWD, path, line, len + 1, 0600, 0);
        keyhold_wipe_free(line, len + 2);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot write %s: %s", path, strerror(-r));
        return 0;
}

char *kh_member_token_email(const struct kh_member *m) {
        char *email = NULL;

        if (!m->token || keyhold_token_claim(m->token, "email", &email) != 0)
                return NULL;
        for (char *p = email; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        return email;
}

int kh_member_unlock(struct kh_cli *cli, struct kh_member *m,
                     uint8_t user_key[KEYHOLD_USER_KEY_LEN]) {
        return kh_member_unlock_trust(cli, m, user_key, NULL, NULL);
}

int kh_member_unlock_trust(struct kh_cli *cli, struct kh_member *m,
                           uint8_t user_key[KEYHOLD_USER_KEY_LEN],
                           uint8_t ret_device_key[KEYHOLD_USER_KEY_LEN],
                           char **ret_encrypted_private_key) {
        const json_t *dk = json_object_get(m->device, "deviceKey");
        const char *local_priv = json_string_value(json_object_get(m->device, "encryptedPrivateKey"));
        struct keyhold_device *d = NULL;
        uint8_t device_key[KEYHOLD_USER_KEY_LEN];
        const char *priv;
        int r;

        if (!json_is_string(dk))
                return kh_cli_fail(cli, "not_trusted",
                                   "this device is not trusted (no device key in %s): `keyhold "
                                   "device trust`, or ask with `keyhold login-request create`",
                                   kh_state_path(m->state));
        if (decode_key(json_string_value(dk), json_string_length(dk), device_key) < 0)
                return kh_cli_fail(cli, "file_error", "%s/device.json holds no valid device key",
                                   kh_state_path(m->state));
        r = keyhold_device_get(m->client, NULL, &d);
        if (r == KEYHOLD_E_NOT_FOUND) {
                OPENSSL_cleanse(device_key, sizeof(device_key));
                return kh_cli_fail(cli, "not_trusted",
                                   "the server knows no device %s of this member: it is not "
                                   "trusted (removed, or another member's token?)",
                                   kh_member_identifier(m));
        }
        if (r < 0) {
                OPENSSL_cleanse(device_key, sizeof(device_key));
                return kh_member_fail(cli, m, r, "reading this device's trust");
        }
        priv = d->encrypted_private_key ? d->encrypted_private_key : local_priv;
        if (!d->encrypted_user_key || !priv) {
                keyhold_device_free(d);
                OPENSSL_cleanse(device_key, sizeof(device_key));
                return kh_cli_fail(cli, "not_trusted",
                                   "the server does not trust this device (%s) any more: it was "
                                   "untrusted. Ask for access with `keyhold login-request create`",
                                   kh_member_identifier(m));
        }
        r = keyhold_device_unlock(device_key, priv, d->encrypted_user_key, user_key);
        if (r == 0 && ret_encrypted_private_key) {
                *ret_encrypted_private_key = strdup(priv);
                if (!*ret_encrypted_private_key) {
                        OPENSSL_cleanse(user_key, KEYHOLD_USER_KEY_LEN);
                        r = KEYHOLD_E_NOMEM;
                }
        }
        if (r == 0 && ret_device_key)
                memcpy(ret_device_key, device_key, sizeof(device_key));
        keyhold_device_free(d);
        OPENSSL_cleanse(device_key, sizeof(device_key));
        if (r == KEYHOLD_E_NOMEM)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        if (r < 0)
                return kh_cli_fail(cli, "unlock_failed",
                                   "this device's trust does not open the user key (%s): trust "
                                   "it again with `keyhold device trust`",
                                   keyhold_strerror(r));
        return 0;
}
