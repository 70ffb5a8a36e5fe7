/* The command line of `keyhold`, parsed against the command table (commands.h): global
 * options anywhere (before or after the command words), the command's own options after its
 * words, and its operands. Pure: no I/O, no environment (cli.c applies KEYHOLD_*). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "cli/commands.h"
#include "common/cleanup.h"

/* The global options, in the order help lists them. */
enum kh_cli_global {
        KH_CLI_G_JSON,
        KH_CLI_G_SOCKET,
        KH_CLI_G_URL,
        KH_CLI_G_TOKEN,
        KH_CLI_G_TOKEN_FILE,
        KH_CLI_G_CACERT,
        KH_CLI_G_TENANT,
        KH_CLI_G_STATE,
        KH_CLI_G_HELP,
        KH_CLI_G_VERSION,
        KH_CLI_G_N_
};

struct kh_cli_global_option {
        struct kh_cli_option opt;
        const char *env; /* the environment variable that sets it, or NULL */
};

extern const struct kh_cli_global_option kh_cli_globals[KH_CLI_G_N_];

#define KH_CLI_WORDS_MAX    4  /* command words: "key list" is 2 */
#define KH_CLI_OPERANDS_MAX 8  /* more than any command takes: the excess is a usage error */
#define KH_CLI_OPTIONS_MAX  16 /* options of one command */
#define KH_CLI_ERROR_MAX    256

/* A parsed command line. Its strings point into argv (or are "" for a flag given). */
struct kh_cli_args {
        const struct kh_cli_command *command; /* NULL: no whole command named (none, or a group) */
        const char *words[KH_CLI_WORDS_MAX];  /* the command words given, e.g. just "key" */
        size_t n_words;
        const char *global[KH_CLI_G_N_];       /* by enum kh_cli_global; NULL: not given */
        const char *values[KH_CLI_OPTIONS_MAX]; /* by the option's index in the command's row */
        const char *operands[KH_CLI_OPERANDS_MAX];
        size_t n_operands;
};

/**
 * kh_cli_args_parse() - parses argv[1..argc) into ret.
 * @err: on a usage error, a one-line message (no trailing newline) of at most
 *       KH_CLI_ERROR_MAX bytes with its NUL.
 *
 * `keyhold help WORDS...` is read as `keyhold WORDS... --help`. A command's operand count is
 * checked unless --help or --version is given. Words that name a group ("key") but no command
 * are not an error here: ret->command stays NULL and the caller shows the group.
 *
 * Returns 0, or -EINVAL on a usage error (unknown command or option, a value missing, given
 * to a flag or given twice, a wrong number of operands); ret then holds what was parsed
 * before the error (so the caller can point at the right --help).
 */
KH_MUST_CHECK int kh_cli_args_parse(int argc, char *const *argv, struct kh_cli_args *ret,
                                    char err[static KH_CLI_ERROR_MAX]);

/* The value of the command option called name (which must be in the command's row: asserted),
 * "" for a flag given, NULL when not given. */
const char *kh_cli_args_value(const struct kh_cli_args *a, const char *name);
