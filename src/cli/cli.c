#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "cli/output.h"
#include "common/buf.h"
#include "common/file.h"
#include "common/limits.h"
#include "common/parse.h"
#include "config/config.h"
#include "config/dev-names.h"

#define DEV_SOCKET KH_DEV_DATA_DEFAULT "/" KH_DEV_ADMIN_SOCKET_FILE
#define NAME_MAX_ 128

struct kh_cli {
        const struct kh_cli_args *args;
        char name[NAME_MAX_]; /* "keyhold audit export": the prefix of messages, the hint */
        struct kh_client *client;
};

/* Set by the signal handler, hence a global: a handler can reach nothing else. */
static volatile sig_atomic_t interrupted;

int kh_cli_new(const struct kh_cli_args *args, struct kh_cli **ret) {
        struct kh_cli *cli = calloc(1, sizeof(*cli));
        size_t used;

        if (!cli)
                return -ENOMEM;
        cli->args = args;
        used = (size_t) snprintf(cli->name, sizeof(cli->name), "keyhold");
        for (size_t i = 0; i < args->n_words && used < sizeof(cli->name); i++) {
                int n = snprintf(cli->name + used, sizeof(cli->name) - used, " %s", args->words[i]);
                if (n < 0)
                        break;
                used += (size_t) n;
        }
        *ret = cli;
        return 0;
}

struct kh_cli *kh_cli_free(struct kh_cli *cli) {
        if (!cli)
                return NULL;
        kh_client_free(cli->client);
        free(cli);
        return NULL;
}

bool kh_cli_json(const struct kh_cli *cli) {
        return cli->args->global[KH_CLI_G_JSON] != NULL;
}

const char *kh_cli_value(const struct kh_cli *cli, const char *name) {
        return kh_cli_args_value(cli->args, name);
}

bool kh_cli_flag(const struct kh_cli *cli, const char *name) {
        return kh_cli_args_value(cli->args, name) != NULL;
}

const char *kh_cli_operand(const struct kh_cli *cli, size_t i) {
        return i < cli->args->n_operands ? cli->args->operands[i] : NULL;
}

/* Prints "NAME: message (code)" with the server's text made safe for a terminal. */
static void print_failure(const struct kh_cli *cli, const char *code, const char *message) {
        KH_CLEANUP(kh_freep) char *m = kh_out_printable(message);
        KH_CLEANUP(kh_freep) char *c = kh_out_printable(code);

        fprintf(stderr, "%s: %s (%s)\n", cli->name, m ? m : "out of memory", c ? c : "-");
}

/* error as one line of JSON on stdout; without memory for it, a fixed one. A stdout that
 * cannot be written shows in main's check. */
static void print_error_json(const json_t *error) {
        if (!error || kh_out_json(stdout, error) == -ENOMEM)
                puts("{\"code\":\"internal_error\",\"message\":\"out of memory\"}");
}

/* {"code", "message"} for a message made here. It may quote a file name or an argument
 * that is not UTF-8, which JSON cannot hold: such bytes are spelled \xNN, as on a terminal. */
static json_t *error_new(const char *code, const char *message) {
        KH_CLEANUP(kh_freep) char *m = kh_out_printable(message);

        return m ? json_pack("{s:s, s:s}", "code", code, "message", m) : NULL;
}

int kh_cli_fail_with(struct kh_cli *cli, const json_t *error) {
        const char *code = json_string_value(json_object_get(error, "code"));
        const char *message = json_string_value(json_object_get(error, "message"));

        if (!code || !message) {
                code = "internal_error";
                message = "out of memory";
                error = NULL;
        }
        if (!kh_cli_json(cli)) {
                print_failure(cli, code, message);
                return 1;
        }
        print_error_json(error);
        return 1;
}

int kh_cli_fail(struct kh_cli *cli, const char *code, const char *fmt, ...) {
        json_auto_t *error = NULL;
        char message[1024];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        error = error_new(code, message);
        return kh_cli_fail_with(cli, error);
}

int kh_cli_usage_error(struct kh_cli *cli, const char *fmt, ...) {
        const char *hint = cli->args->command || cli->args->n_words > 0 ? cli->name : "keyhold";
        json_auto_t *error = NULL;
        char message[1024];
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        {
                KH_CLEANUP(kh_freep) char *m = kh_out_printable(message);
                fprintf(stderr, "%s: %s\nRun '%s --help' for usage.\n", cli->name,
                        m ? m : "usage error", hint);
        }
        if (kh_cli_json(cli)) {
                error = error_new("usage", message);
                print_error_json(error);
        }
        return 2;
}

int kh_cli_number(struct kh_cli *cli, const char *name, uint64_t min, uint64_t max, uint64_t def,
                  uint64_t *ret) {
        const char *v = kh_cli_value(cli, name);
        uint64_t n;

        if (!v) {
                *ret = def;
                return 0;
        }
        if (kh_parse_u64(v, strlen(v), max, &n) < 0 || n < min)
                return kh_cli_usage_error(cli, "--%s must be a number from %llu to %llu", name,
                                          (unsigned long long) min, (unsigned long long) max);
        *ret = n;
        return 0;
}

const char *kh_cli_global(const struct kh_cli *cli, enum kh_cli_global g) {
        const char *v = cli->args->global[g];

        if (!v && kh_cli_globals[g].env) {
                v = getenv(kh_cli_globals[g].env);
                if (v && !*v)
                        v = NULL;
        }
        return v;
}

/* The admin socket when neither --socket nor KEYHOLD_SOCKET names one: the production path
 * if it exists; else the one `keyholdd --dev` makes in ./keyhold-dev, so that the quick start
 * works from the folder keyholdd --dev runs in; else the production path, for the message. */
static const char *default_socket(void) {
        if (access(KH_ADMIN_SOCKET_DEFAULT, F_OK) == 0)
                return KH_ADMIN_SOCKET_DEFAULT;
        if (access(DEV_SOCKET, F_OK) == 0)
                return DEV_SOCKET;
        return KH_ADMIN_SOCKET_DEFAULT;
}

/* A bearer token is a token68 (RFC 7235): printable ASCII, no blanks. Anything else would
 * at best be refused and at worst split the Authorization header. */
static bool token_is_valid(const char *t, size_t len) {
        if (len == 0 || len > KH_TOKEN_MAX)
                return false;
        for (size_t i = 0; i < len; i++)
                if (t[i] <= 0x20 || t[i] >= 0x7f)
                        return false;
        return true;
}

int kh_cli_resolve(struct kh_cli *cli, struct kh_client_config *ret,
                   const char **ret_token_file) {
        const char *const *given = cli->args->global;
        struct kh_client_config cfg = { 0 };
        const char *token_file = NULL;

        if (given[KH_CLI_G_URL] && given[KH_CLI_G_SOCKET])
                return kh_cli_usage_error(cli, "--url and --socket name two different servers");
        if (given[KH_CLI_G_TOKEN] && given[KH_CLI_G_TOKEN_FILE])
                return kh_cli_usage_error(cli, "--token and --token-file both give a token");

        if (given[KH_CLI_G_SOCKET]) {
                cfg.socket_path = given[KH_CLI_G_SOCKET];
        } else if (given[KH_CLI_G_URL]) {
                cfg.url = given[KH_CLI_G_URL];
        } else {
                cfg.url = kh_cli_global(cli, KH_CLI_G_URL);
                cfg.socket_path = kh_cli_global(cli, KH_CLI_G_SOCKET);
                if (cfg.url && cfg.socket_path)
                        return kh_cli_usage_error(cli, "KEYHOLD_URL and KEYHOLD_SOCKET name two "
                                                       "different servers (--url or --socket "
                                                       "picks one)");
                if (!cfg.url && !cfg.socket_path)
                        cfg.socket_path = default_socket();
        }

        cfg.tenant = kh_cli_global(cli, KH_CLI_G_TENANT);
        if (cfg.tenant && !kh_tenant_id_is_valid(cfg.tenant, strlen(cfg.tenant)))
                return kh_cli_usage_error(cli, "--tenant: '%s' is no tenant id ([a-z0-9][a-z0-9-]*, "
                                               "at most 63)", cfg.tenant);
        if (cfg.url) {
                /* the socket needs no token: whoever can open it is the operator */
                cfg.cacert = kh_cli_global(cli, KH_CLI_G_CACERT);
                token_file = given[KH_CLI_G_TOKEN_FILE];
                if (!token_file) {
                        cfg.token = kh_cli_global(cli, KH_CLI_G_TOKEN);
                        if (!cfg.token)
                                return kh_cli_usage_error(cli, "--url needs an admin token: "
                                                               "--token, --token-file or "
                                                               "KEYHOLD_TOKEN");
                        if (!token_is_valid(cfg.token, strlen(cfg.token)))
                                return kh_cli_usage_error(cli, "the token holds characters no "
                                                               "bearer token has");
                }
        }
        *ret = cfg;
        *ret_token_file = token_file;
        return 0;
}

/* The token in path: the file's content less one trailing newline. The file must not be
 * open to group or others: a token there is as good as the admin's password. Read from the
 * descriptor whose mode was checked, so a file swapped in meanwhile is not read. */
int kh_cli_read_token_file(struct kh_cli *cli, const char *path, struct kh_buf *out) {
        KH_CLEANUP(kh_closep) int fd = -1;
        char chunk[4096];
        struct stat st;
        ssize_t n;

        fd = kh_file_open_regular(AT_FDCWD, path, 0, &st);
        if (fd < 0)
                return kh_cli_fail(cli, "file_error", "cannot read the token file %s: %s", path,
                                   strerror(-fd));
        if (st.st_mode & (S_IRWXG | S_IRWXO))
                return kh_cli_fail(cli, "file_error",
                                   "the token file %s is open to group or others (mode %04o); "
                                   "chmod 600 it",
                                   path, (unsigned) (st.st_mode & 07777));
        while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return kh_cli_fail(cli, "file_error", "cannot read the token file %s: %s",
                                           path, strerror(errno));
                if (kh_buf_append(out, chunk, (size_t) n) < 0) {
                        OPENSSL_cleanse(chunk, sizeof(chunk));
                        return kh_cli_fail(cli, "file_error",
                                           "the token file %s is too large for a token", path);
                }
        }
        OPENSSL_cleanse(chunk, sizeof(chunk));
        if (out->len > 0 && out->data[out->len - 1] == '\n')
                out->data[--out->len] = 0;
        if (!token_is_valid((const char *) out->data, out->len))
                return kh_cli_fail(cli, "file_error",
                                   "the token file %s holds no bearer token (one line of "
                                   "printable characters)",
                                   path);
        return 0;
}

int kh_cli_connect(struct kh_cli *cli, struct kh_client **ret) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf file_token = { 0 };
        struct kh_client_config cfg;
        const char *token_file;
        int r;

        kh_buf_init(&file_token, KH_TOKEN_MAX + 1, true);
        if (cli->client) {
                *ret = cli->client;
                return 0;
        }
        r = kh_cli_resolve(cli, &cfg, &token_file);
        if (r != 0)
                return r;
        cfg.cancel = &interrupted;
        if (cfg.cacert && access(cfg.cacert, R_OK) < 0)
                return kh_cli_fail(cli, "file_error", "cannot read the CA file %s: %s",
                                   cfg.cacert, strerror(errno));
        if (token_file) {
                r = kh_cli_read_token_file(cli, token_file, &file_token);
                if (r != 0)
                        return r;
                cfg.token = (const char *) file_token.data;
        }

        r = kh_client_new(&cfg, &cli->client);
        if (r == -EINVAL)
                return kh_cli_usage_error(cli, "--url: '%s' is not an https:// URL (http:// only "
                                               "to this machine) without a query", cfg.url);
        if (r < 0)
                return kh_cli_fail(cli, "internal_error", "%s", strerror(-r));
        *ret = cli->client;
        return 0;
}

/* GET path, or POST it with body when post is true. */
static int request(struct kh_cli *cli, enum kh_client_scope scope, const char *path, bool post,
                   const json_t *body, json_t **ret_body) {
        json_auto_t *error = NULL;
        struct kh_client *c;
        int r;

        r = kh_cli_connect(cli, &c);
        if (r != 0)
                return r;
        r = post ? kh_client_post(c, scope, path, body, ret_body, &error)
                 : kh_client_get(c, scope, path, ret_body, &error);
        if (r == -ECANCELED)
                return 1; /* the caller asked for signals: it says what stopping means */
        if (r < 0)
                return kh_cli_fail_with(cli, error);
        return 0;
}

int kh_cli_get(struct kh_cli *cli, enum kh_client_scope scope, const char *path,
               json_t **ret_body) {
        return request(cli, scope, path, false, NULL, ret_body);
}

int kh_cli_post(struct kh_cli *cli, enum kh_client_scope scope, const char *path,
                const json_t *body, json_t **ret_body) {
        return request(cli, scope, path, true, body, ret_body);
}

int kh_cli_print_json(struct kh_cli *cli, const json_t *v) {
        if (kh_out_json(stdout, v) == -ENOMEM)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return 0;
}

static void on_signal(int sig) {
        (void) sig;
        interrupted = 1;
}

void kh_cli_catch_signals(void) {
        /* no SA_RESTART: a sleep or a read returns at once with EINTR */
        struct sigaction sa = { .sa_handler = on_signal };

        (void) sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) sigaction(SIGTERM, &sa, NULL);
}

bool kh_cli_interrupted(void) {
        return interrupted != 0;
}

bool kh_cli_sleep_ms(unsigned ms) {
        struct timespec left = { .tv_sec = ms / 1000, .tv_nsec = (long) (ms % 1000) * 1000000L };

        while (!interrupted && nanosleep(&left, &left) < 0 && errno == EINTR)
                ;
        return !interrupted;
}
