/* keyhold key rekey | retire | destroy | revoke | reinstate, and keyhold seal | unseal: the
 * key lifecycle routes (docs/admin-api.md "Key lifecycle"). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "cli/output.h"
#include "common/buf.h"
#include "common/file.h"
#include "common/limits.h"
#include "common/parse.h"
#include "common/secret.h"
#include "crypto/encoding.h"

#define WAIT_POLL_MS 500      /* each poll is an audited admin read */
#define SECRET_FILE_MAX 4096

static const char *tenant_of(struct kh_cli *cli) {
        const char *t = kh_cli_global(cli, KH_CLI_G_TENANT);
        return t ? t : "default";
}

/* The {"version", "state"} answer, printed. */
static int print_change(struct kh_cli *cli, const json_t *answer) {
        json_int_t v = json_integer_value(json_object_get(answer, "version"));
        const char *state = json_string_value(json_object_get(answer, "state"));

        if (!json_is_integer(json_object_get(answer, "version")) || !state)
                return kh_cli_fail(cli, "bad_response", "the server's answer names no version");
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, answer);
        {
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(state);
                printf("Version %" JSON_INTEGER_FORMAT " of tenant %s is now %s.\n", v,
                       tenant_of(cli), shown ? shown : "-");
        }
        return 0;
}

/* ---- rekey --wait ---- */

/* The job's numbers, 0 when absent. */
static uint64_t job_number(const json_t *job, const char *name) {
        json_int_t v = json_integer_value(json_object_get(job, name));
        return v > 0 ? (uint64_t) v : 0;
}

/* Whether records still wait under an archived version (the job has work left). */
static bool records_left(const json_t *keys) {
        const json_t *v;
        size_t i;

        json_array_foreach(json_object_get(keys, "versions"), i, v) {
                const char *state = json_string_value(json_object_get(v, "state"));
                if (state && strcmp(state, "archived") == 0 &&
                    json_integer_value(json_object_get(v, "records")) > 0)
                        return true;
        }
        return false;
}

/* Polls key status until the job that moves records to @version has nothing left. */
static int wait_job(struct kh_cli *cli, json_int_t version, json_t **ret_job) {
        bool bar = isatty(STDERR_FILENO);

        kh_cli_catch_signals();
        for (;;) {
                json_auto_t *keys = NULL;
                const json_t *job;
                const char *state;
                int r = kh_cli_get(cli, KH_CLIENT_TENANT, "/admin/keys", &keys);

                if (r != 0) {
                        if (kh_cli_interrupted())
                                return kh_cli_fail(cli, "interrupted",
                                                   "stopped waiting; the job goes on (keyhold key status)");
                        return r;
                }
                job = json_object_get(keys, "job");
                state = json_string_value(json_object_get(job, "state"));
                if (!state)
                        return kh_cli_fail(cli, "bad_response", "the server's key status has no job");
                if (bar && strcmp(state, "none") != 0)
                        kh_out_progress("re-encrypting", job_number(job, "moved") + job_number(job, "skipped"),
                                 job_number(job, "total"),
                                 json_is_integer(json_object_get(job, "eta_s"))
                                         ? json_integer_value(json_object_get(job, "eta_s"))
                                         : -1,
                                 false);
                if (strcmp(state, "failed") == 0) {
                        if (bar)
                                fputc('\n', stderr);
                        return kh_cli_fail(cli, "reencrypt_failed",
                                           "the re-encryption job stopped on an error (see the "
                                           "server's log); it resumes at the next start");
                }
                if (strcmp(state, "running") != 0 && !records_left(keys) &&
                    (strcmp(state, "none") == 0 ||
                     json_integer_value(json_object_get(job, "target")) == version)) {
                        if (bar && strcmp(state, "none") != 0)
                                kh_out_progress("re-encrypting", job_number(job, "moved") + job_number(job, "skipped"),
                                         job_number(job, "total"), 0, true);
                        *ret_job = json_deep_copy(job);
                        return 0;
                }
                if (!kh_cli_sleep_ms(WAIT_POLL_MS))
                        return kh_cli_fail(cli, "interrupted",
                                           "stopped waiting; the job goes on (keyhold key status)");
        }
}

int kh_cmd_key_rekey(struct kh_cli *cli) {
        const char *alg = kh_cli_value(cli, "algorithm");
        json_auto_t *body = NULL, *answer = NULL, *job = NULL;
        json_int_t version;
        int r;

        if (alg && strcmp(alg, "rsa-3072") != 0 && strcmp(alg, "rsa-4096") != 0)
                return kh_cli_usage_error(cli, "--algorithm must be rsa-3072 or rsa-4096");
        if (alg) {
                body = json_pack("{ss}", "algorithm", alg);
                if (!body)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        }
        r = kh_cli_post(cli, KH_CLIENT_TENANT, "/admin/keys/rekey", body, &answer);
        if (r != 0)
                return r;
        if (!json_is_integer(json_object_get(answer, "version")))
                return kh_cli_fail(cli, "bad_response", "the server's answer names no version");
        version = json_integer_value(json_object_get(answer, "version"));
        if (!kh_cli_flag(cli, "wait")) {
                if (kh_cli_json(cli)) {
                        json_auto_t *out = json_pack("{sI}", "version", version);
                        return kh_cli_print_json(cli, out);
                }
                printf("Version %" JSON_INTEGER_FORMAT " of tenant %s is active. Older records "
                       "move to it in the background: keyhold key status.\n",
                       version, tenant_of(cli));
                return 0;
        }
        r = wait_job(cli, version, &job);
        if (r != 0)
                return r;
        if (kh_cli_json(cli)) {
                json_auto_t *out = json_pack("{sI sI sI}", "version", version, "moved",
                                             (json_int_t) job_number(job, "moved"), "total",
                                             (json_int_t) job_number(job, "total"));
                return kh_cli_print_json(cli, out);
        }
        printf("Version %" JSON_INTEGER_FORMAT " of tenant %s is active: %" PRIu64 " of %" PRIu64
               " records moved to it, %" PRIu64 " skipped (under revoked versions).\n",
               version, tenant_of(cli), job_number(job, "moved"), job_number(job, "total"),
               job_number(job, "skipped"));
        return 0;
}

/* ---- retire, destroy, revoke, reinstate ---- */

/* The version operand: 1 to 2^32-1. Returns 0, or 2 after a usage error. */
static int version_operand(struct kh_cli *cli, uint32_t *ret) {
        const char *s = kh_cli_operand(cli, 0);
        uint64_t v;

        if (!s)
                return kh_cli_usage_error(cli, "which version? (keyhold key list)");
        if (kh_parse_u64(s, strlen(s), UINT32_MAX, &v) < 0 || v == 0)
                return kh_cli_usage_error(cli, "a version is a number from 1 (keyhold key list), not '%s'", s);
        *ret = (uint32_t) v;
        return 0;
}

static int version_post(struct kh_cli *cli, const char *op) {
        json_auto_t *answer = NULL;
        char path[64];
        uint32_t v;
        int r;

        r = version_operand(cli, &v);
        if (r != 0)
                return r;
        (void) snprintf(path, sizeof(path), "/admin/keys/%" PRIu32 "/%s", v, op);
        r = kh_cli_post(cli, KH_CLIENT_TENANT, path, NULL, &answer);
        return r != 0 ? r : print_change(cli, answer);
}

/* revoke --all / reinstate --all: the kill switch and its undo. */
static int switch_all(struct kh_cli *cli, const char *path, const char *what) {
        json_auto_t *answer = NULL;
        const json_t *list, *v;
        size_t i;
        int r;

        if (kh_cli_operand(cli, 0))
                return kh_cli_usage_error(cli, "--all takes no version");
        r = kh_cli_post(cli, KH_CLIENT_TENANT, path, NULL, &answer);
        if (r != 0)
                return r;
        list = json_object_get(answer, "versions");
        if (!json_is_array(list))
                return kh_cli_fail(cli, "bad_response", "the server's answer has no versions");
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, answer);
        printf("Tenant %s: %zu version(s) %s.\n", tenant_of(cli), json_array_size(list), what);
        json_array_foreach(list, i, v) {
                const char *state = json_string_value(json_object_get(v, "state"));
                KH_CLEANUP(kh_freep) char *shown = kh_out_printable(state ? state : "-");
                printf("  version %" JSON_INTEGER_FORMAT ": %s\n",
                       json_integer_value(json_object_get(v, "version")), shown ? shown : "-");
        }
        return 0;
}

int kh_cmd_key_retire(struct kh_cli *cli) {
        return version_post(cli, "retire");
}

int kh_cmd_key_revoke(struct kh_cli *cli) {
        if (kh_cli_flag(cli, "all"))
                return switch_all(cli, "/admin/keys/revoke-all",
                                  "revoked (kill switch on: every key read and write is refused)");
        return version_post(cli, "revoke");
}

int kh_cmd_key_reinstate(struct kh_cli *cli) {
        if (kh_cli_flag(cli, "all"))
                return switch_all(cli, "/admin/keys/reinstate-all", "reinstated");
        return version_post(cli, "reinstate");
}

/* Reads one line from the terminal (echo off when secret); the newline is dropped. */
static int read_tty_line(const char *prompt, bool secret, char *buf, size_t n) {
        struct termios old, quiet;
        bool restore = false;
        size_t len;

        fputs(prompt, stderr);
        fflush(stderr);
        if (secret && tcgetattr(STDIN_FILENO, &old) == 0) {
                quiet = old;
                quiet.c_lflag &= (tcflag_t) ~ECHO;
                restore = tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) == 0;
        }
        if (!fgets(buf, (int) n, stdin))
                buf[0] = 0;
        if (restore) {
                (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
                fputc('\n', stderr);
        }
        len = strlen(buf);
        if (len && buf[len - 1] == '\n')
                buf[--len] = 0;
        return 0;
}

int kh_cmd_key_destroy(struct kh_cli *cli) {
        char line[32];
        uint32_t v;
        int r;

        r = version_operand(cli, &v);
        if (r != 0)
                return r;
        if (!kh_cli_flag(cli, "yes")) {
                char prompt[200], want[16];

                if (!isatty(STDIN_FILENO))
                        return kh_cli_fail(cli, "confirmation_required",
                                           "destroy is irreversible: run it on a terminal to "
                                           "confirm, or pass --yes; nothing was changed");
                (void) snprintf(prompt, sizeof(prompt),
                                "Destroy version %" PRIu32 " of tenant %s for good? Its tenant "
                                "key is deleted and cannot come back.\nType the version number "
                                "to confirm: ", v, tenant_of(cli));
                (void) read_tty_line(prompt, false, line, sizeof(line));
                (void) snprintf(want, sizeof(want), "%" PRIu32, v);
                if (strcmp(line, want) != 0)
                        return kh_cli_fail(cli, "not_confirmed", "not confirmed; nothing was changed");
        }
        return version_post(cli, "destroy");
}

/* ---- seal, unseal ---- */

static int print_sealed(struct kh_cli *cli, const json_t *answer) {
        const json_t *sealed = json_object_get(answer, "sealed");

        if (!json_is_boolean(sealed))
                return kh_cli_fail(cli, "bad_response", "the server's answer does not say whether it is sealed");
        if (kh_cli_json(cli))
                return kh_cli_print_json(cli, answer);
        puts(json_is_true(sealed)
                     ? "Sealed: every key route answers 503 sealed until `keyhold unseal`, "
                       "restarts included."
                     : "Unsealed: keys are served.");
        return 0;
}

int kh_cmd_seal(struct kh_cli *cli) {
        json_auto_t *answer = NULL;
        int r = kh_cli_post(cli, KH_CLIENT_SERVER, "/server/seal", NULL, &answer);

        return r != 0 ? r : print_sealed(cli, answer);
}

/* The unseal request's body, from --master-key-file, --passphrase-file or the terminal. */
static int unseal_body(struct kh_cli *cli, json_t **ret) {
        const char *key_file = kh_cli_value(cli, "master-key-file");
        const char *pass_file = kh_cli_value(cli, "passphrase-file");
        KH_CLEANUP(kh_buf_freep) struct kh_buf secret = { 0 }, b64 = { 0 };
        int r;

        if (key_file && pass_file)
                return kh_cli_usage_error(cli, "give --master-key-file or --passphrase-file, not both");
        kh_buf_init(&secret, SECRET_FILE_MAX, true);
        kh_buf_init(&b64, 2 * SECRET_FILE_MAX, true);
        if (key_file) {
                r = kh_file_read(AT_FDCWD, key_file, 0, SECRET_FILE_MAX - 1, &secret);
                if (r < 0 && r != -EFBIG)
                        return kh_cli_fail(cli, "unreadable_file", "cannot read %s: %s", key_file,
                                           strerror(-r));
                if (r == -EFBIG || (secret.len != KH_MASTER_KEY_LEN &&
                                    (secret.len == 0 || memchr(secret.data, 0, secret.len))))
                        return kh_cli_fail(cli, "invalid_key",
                                           "%s must hold exactly 32 raw bytes (a master key file) "
                                           "or an HSM's PIN", key_file);
                if (secret.len == KH_MASTER_KEY_LEN) {
                        r = kh_base64_encode(secret.data, secret.len, &b64);
                        if (r >= 0 && kh_buf_append(&b64, "", 1) >= 0)
                                *ret = json_pack("{ss}", "master_key", (const char *) b64.data);
                        return *ret ? 0 : kh_cli_fail(cli, "internal_error", "out of memory");
                }
                /* not a master key: an HSM store's PIN file (DESIGN.md: "--master-key-file F
                 * (the PIN for an HSM store)"), sent as the text secret; a file store takes it
                 * as a passphrase and refuses it unless it is one */
        }
        if (key_file || pass_file) {
                if (pass_file) {
                        r = kh_file_read(AT_FDCWD, pass_file, 0, SECRET_FILE_MAX - 1, &secret);
                        if (r < 0)
                                return kh_cli_fail(cli, "unreadable_file", "cannot read %s: %s",
                                                   pass_file, strerror(-r));
                }
                if (secret.len && secret.data[secret.len - 1] == '\n')
                        secret.len--;    /* one trailing newline, as for every secret file */
        } else {
                char line[SECRET_FILE_MAX];

                if (!isatty(STDIN_FILENO))
                        return kh_cli_usage_error(cli, "no terminal to ask the passphrase on: "
                                                       "give --passphrase-file or --master-key-file");
                (void) read_tty_line("Passphrase of the key store: ", true, line, sizeof(line));
                r = kh_buf_append(&secret, line, strlen(line));
                OPENSSL_cleanse(line, sizeof(line));
                if (r < 0)
                        return kh_cli_fail(cli, "internal_error", "passphrase too long");
        }
        if (secret.len == 0 || memchr(secret.data, 0, secret.len))
                return kh_cli_fail(cli, "invalid_body", "the passphrase is empty or holds a NUL byte");
        if (kh_buf_append(&secret, "", 1) < 0)
                return kh_cli_fail(cli, "internal_error", "passphrase too long");
        *ret = json_pack("{ss}", "passphrase", (const char *) secret.data);
        return *ret ? 0 : kh_cli_fail(cli, "internal_error", "out of memory");
}

/* Wipes the secret inside the request body before it is freed. */
static void body_wipe(json_t *body) {
        const char *name;
        json_t *v;

        json_object_foreach(body, name, v)
                OPENSSL_cleanse((char *) (uintptr_t) json_string_value(v), json_string_length(v));
}

int kh_cmd_unseal(struct kh_cli *cli) {
        json_auto_t *answer = NULL;
        json_t *body = NULL;
        int r;

        r = unseal_body(cli, &body);
        if (r != 0)
                return r;
        r = kh_cli_post(cli, KH_CLIENT_SERVER, "/server/unseal", body, &answer);
        body_wipe(body);
        json_decref(body);
        return r != 0 ? r : print_sealed(cli, answer);
}
