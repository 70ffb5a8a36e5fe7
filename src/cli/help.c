#include "cli/help.h"

#include <errno.h>
#include <string.h>

#include "config/config.h"
#include "config/dev-names.h"

#define COLUMN_MAX 40 /* an option or command column wider than this wraps its text */

static const char intro[] =
        "keyhold administers keyholdd: on the server's host over its admin socket (the\n"
        "operator, no token needed), or from anywhere over HTTPS with an admin token.\n";

static const char server_text[] =
        "The server: --url (or KEYHOLD_URL) reaches it over HTTPS with an admin token\n"
        "(--token, KEYHOLD_TOKEN or --token-file); otherwise its admin socket: --socket (or\n"
        "KEYHOLD_SOCKET), else " KH_ADMIN_SOCKET_DEFAULT ", else " KH_DEV_DATA_DEFAULT "/"
        KH_DEV_ADMIN_SOCKET_FILE "\n"
        "when only that one exists (next to `keyholdd --dev`).\n"
        "\n"
        "Exit status: 0 done; 1 refused or failed (the reason on stderr, or with --json\n"
        "{\"code\", \"message\"} on stdout); 2 usage error.\n";

/* "-n, --lines N" or "--since SEQ"; returns its length. */
static size_t option_label(const struct kh_cli_option *o, char *buf, size_t len) {
        char short_form[8] = "";

        if (o->short_name)
                (void) snprintf(short_form, sizeof(short_form), "-%c, ", o->short_name);
        (void) snprintf(buf, len, "%s--%s%s%s", short_form, o->name, o->value ? " " : "",
                        o->value ? o->value : "");
        return strlen(buf);
}

/* One "  label   text" line, the text starting at column (or on the next line). */
static void print_row(FILE *f, const char *label, const char *text, const char *env,
                      size_t column) {
        size_t w = strlen(label);

        if (w > column)
                fprintf(f, "  %s\n  %*s  %s", label, (int) column, "", text);
        else
                fprintf(f, "  %s%*s  %s", label, (int) (column - w), "", text);
        if (env)
                fprintf(f, " [%s]", env);
        fputc('\n', f);
}

/* opts[i] with its environment variable envs[i] (envs may be NULL). */
static void print_options(FILE *f, const struct kh_cli_option *const *opts,
                          const char *const *envs, size_t n) {
        char label[96];
        size_t column = 0;

        for (size_t i = 0; i < n; i++) {
                size_t w = option_label(opts[i], label, sizeof(label));
                if (w <= COLUMN_MAX && w > column)
                        column = w;
        }
        for (size_t i = 0; i < n; i++) {
                (void) option_label(opts[i], label, sizeof(label));
                print_row(f, label, opts[i]->help, envs ? envs[i] : NULL, column);
        }
}

static void print_globals(FILE *f) {
        const struct kh_cli_option *opts[KH_CLI_G_N_];
        const char *envs[KH_CLI_G_N_];

        for (size_t g = 0; g < KH_CLI_G_N_; g++) {
                opts[g] = &kh_cli_globals[g].opt;
                envs[g] = kh_cli_globals[g].env;
        }
        fputs("Global options (before or after the command):\n", f);
        print_options(f, opts, envs, KH_CLI_G_N_);
}

/* "audit export FILE" */
static void command_label(const struct kh_cli_command *c, char *buf, size_t len) {
        (void) snprintf(buf, len, "%s%s%s", c->path, *c->operands ? " " : "", c->operands);
}

/* The commands whose path starts with words[0..n) (all of them for n == 0). */
static void print_commands(FILE *f, const char *const *words, size_t n) {
        char label[96];
        size_t column = 0;

        for (size_t i = 0; i < kh_cli_commands_n; i++) {
                if (!kh_cli_command_has_prefix(&kh_cli_commands[i], words, n))
                        continue;
                command_label(&kh_cli_commands[i], label, sizeof(label));
                if (strlen(label) <= COLUMN_MAX && strlen(label) > column)
                        column = strlen(label);
        }
        for (size_t i = 0; i < kh_cli_commands_n; i++) {
                if (!kh_cli_command_has_prefix(&kh_cli_commands[i], words, n))
                        continue;
                command_label(&kh_cli_commands[i], label, sizeof(label));
                print_row(f, label, kh_cli_commands[i].summary, NULL, column);
        }
}

static void print_command(FILE *f, const struct kh_cli_command *c) {
        const struct kh_cli_option *opts[KH_CLI_OPTIONS_MAX];
        size_t n_options = 0;

        while (c->options && c->options[n_options].name && n_options < KH_CLI_OPTIONS_MAX) {
                opts[n_options] = &c->options[n_options];
                n_options++;
        }
        fprintf(f, "Usage: keyhold %s%s%s%s [GLOBAL OPTIONS]\n\n%s\n", c->path,
                *c->operands ? " " : "", c->operands, n_options ? " [OPTIONS]" : "",
                c->description);
        if (n_options) {
                fputs("\nOptions:\n", f);
                print_options(f, opts, NULL, n_options);
        }
        fputs("\n", f);
        print_globals(f);
        fprintf(f, "\nExample:\n  %s\n", c->example);
}

/* The words as one string: "key" (for a group). */
static void join(const char *const *words, size_t n, char *buf, size_t len) {
        size_t used = 0;

        buf[0] = 0;
        for (size_t i = 0; i < n && used < len; i++) {
                int w = snprintf(buf + used, len - used, "%s%s", i ? " " : "", words[i]);
                if (w < 0)
                        return;
                used += (size_t) w;
        }
}

static void print_group(FILE *f, const char *const *words, size_t n) {
        const struct kh_cli_command *first = NULL;
        char group[96];

        join(words, n, group, sizeof(group));
        for (size_t i = 0; i < kh_cli_commands_n && !first; i++)
                if (kh_cli_command_has_prefix(&kh_cli_commands[i], words, n))
                        first = &kh_cli_commands[i];
        fprintf(f, "Usage: keyhold %s COMMAND [OPTIONS]\n\nCommands:\n", group);
        print_commands(f, words, n);
        if (first)
                fprintf(f, "\nExample:\n  %s\n", first->example);
        fprintf(f, "\nRun 'keyhold %s COMMAND --help' for a command's options, 'keyhold --help'\n"
                   "for the global options.\n",
                group);
}

static void print_program(FILE *f) {
        fprintf(f, "Usage: keyhold COMMAND [OPTIONS]\n\n%s\nCommands:\n", intro);
        print_commands(f, NULL, 0);
        fputs("\n", f);
        print_globals(f);
        fprintf(f, "\n%s\nExample:\n  keyhold key list\n  keyhold --url https://keys.example.com "
                   "--token-file ~/.keyhold-token key status\n"
                   "\nRun 'keyhold COMMAND --help' for a command's options and an example.\n",
                server_text);
}

int kh_cli_help_print(FILE *f, const struct kh_cli_args *a) {
        if (a->command)
                print_command(f, a->command);
        else if (a->n_words > 0)
                print_group(f, a->words, a->n_words);
        else
                print_program(f);
        return ferror(f) ? -EIO : 0;
}
