#include "cli/args.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const struct kh_cli_global_option kh_cli_globals[KH_CLI_G_N_] = {
        [KH_CLI_G_JSON] = { { "json", 0, NULL,
                              "JSON for scripts; a failure is {\"code\", \"message\"} on stdout" },
                            NULL },
        [KH_CLI_G_SOCKET] = { { "socket", 0, "PATH", "the server's admin socket (see below)" },
                              "KEYHOLD_SOCKET" },
        [KH_CLI_G_URL] = { { "url", 0, "URL",
                             "reach the server over HTTPS instead (https://host:port)" },
                           "KEYHOLD_URL" },
        [KH_CLI_G_TOKEN] = { { "token", 0, "TOKEN", "an admin bearer token, for --url" },
                             "KEYHOLD_TOKEN" },
        [KH_CLI_G_TOKEN_FILE] = { { "token-file", 0, "FILE",
                                    "the token from FILE (not readable by group or others)" },
                                  NULL },
        [KH_CLI_G_CACERT] = { { "cacert", 0, "PEM",
                                "trust only these CA certificates for --url" },
                              "KEYHOLD_CACERT" },
        [KH_CLI_G_TENANT] = { { "tenant", 0, "T", "the tenant (default: default)" },
                              "KEYHOLD_TENANT" },
        [KH_CLI_G_STATE] = { { "state", 0, "DIR",
                               "this machine's device state (default $XDG_STATE_HOME/keyhold "
                               "or ~/.local/state/keyhold)" },
                             "KEYHOLD_STATE" },
        [KH_CLI_G_HELP] = { { "help", 'h', NULL, "help on a command, with an example" }, NULL },
        [KH_CLI_G_VERSION] = { { "version", 0, NULL, "the version of keyhold" }, NULL },
};

struct parser {
        struct kh_cli_args *a;
        char *err;
        int argc;
        char *const *argv;
        int i; /* the argument being read */
};

static int __attribute__((format(printf, 2, 3))) fail(struct parser *p, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(p->err, KH_CLI_ERROR_MAX, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

/* The slot of the option named name[0..len) (long) or short_name (if not 0): one of the
 * command's (once the command is known), else a global one. The command's comes first so
 * that a contract name a global also has means the command's after its words: `incident
 * --version V` is the key version there, `keyhold --version` still keyhold's. NULL if none. */
static const char **find_option(struct kh_cli_args *a, const char *name, size_t len,
                                char short_name, const struct kh_cli_option **ret_opt) {
        for (size_t i = 0; a->command && a->command->options && a->command->options[i].name;
             i++) {
                const struct kh_cli_option *o = &a->command->options[i];
                assert(i < KH_CLI_OPTIONS_MAX);
                if (short_name ? o->short_name == short_name
                               : strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
                        *ret_opt = o;
                        return &a->values[i];
                }
        }
        for (size_t g = 0; g < KH_CLI_G_N_; g++) {
                const struct kh_cli_option *o = &kh_cli_globals[g].opt;
                if (short_name ? o->short_name == short_name
                               : strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
                        *ret_opt = o;
                        return &a->global[g];
                }
        }
        return NULL;
}

/* Stores value for o. A flag may be repeated; an option with a value may not (which one was
 * meant would be a guess). */
static int set_option(struct parser *p, const struct kh_cli_option *o, const char **slot,
                      const char *value) {
        if (*slot && o->value)
                return fail(p, "option --%s given twice", o->name);
        *slot = value;
        return 0;
}

/* The value of o: the rest of the argument (after '=' or a short name), else the next one. */
static int option_value(struct parser *p, const struct kh_cli_option *o, const char *attached,
                        const char **ret) {
        if (attached) {
                *ret = attached;
                return 0;
        }
        if (p->i + 1 >= p->argc)
                return fail(p, "option --%s needs a value (%s)", o->name, o->value);
        *ret = p->argv[++p->i];
        return 0;
}

static int long_option(struct parser *p, const char *arg) {
        const char *name = arg + 2, *eq = strchr(name, '='), *value = "";
        size_t len = eq ? (size_t) (eq - name) : strlen(name);
        const struct kh_cli_option *o;
        const char **slot;
        int r;

        slot = find_option(p->a, name, len, 0, &o);
        if (!slot)
                return fail(p, "unknown option '--%.*s'", (int) len, name);
        if (!o->value && eq)
                return fail(p, "option --%s takes no value", o->name);
        if (o->value) {
                r = option_value(p, o, eq ? eq + 1 : NULL, &value);
                if (r < 0)
                        return r;
        }
        return set_option(p, o, slot, value);
}

/* -f, -n 5, -n5, and flags bundled before one that takes a value: -fn 5. */
static int short_options(struct parser *p, const char *arg) {
        for (const char *c = arg + 1; *c; c++) {
                const struct kh_cli_option *o;
                const char **slot, *value = "";
                int r;

                slot = find_option(p->a, NULL, 0, *c, &o);
                if (!slot)
                        return fail(p, "unknown option '-%c'", *c);
                if (o->value) {
                        r = option_value(p, o, c[1] ? c + 1 : NULL, &value);
                        if (r < 0)
                                return r;
                        return set_option(p, o, slot, value);
                }
                r = set_option(p, o, slot, value);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int unknown_command(struct parser *p, const char *word) {
        char path[KH_CLI_ERROR_MAX] = "";
        size_t used = 0;

        for (size_t i = 0; i < p->a->n_words && used < sizeof(path); i++) {
                int n = snprintf(path + used, sizeof(path) - used, "%s ", p->a->words[i]);
                if (n < 0)
                        break;
                used += (size_t) n;
        }
        return fail(p, "unknown command '%s%s'", path, word);
}

/* A word before the command is complete extends its path; after, it is an operand. */
static int word(struct parser *p, const char *w) {
        struct kh_cli_args *a = p->a;

        if (a->command) {
                if (a->n_operands == KH_CLI_OPERANDS_MAX)
                        return fail(p, "too many arguments");
                a->operands[a->n_operands++] = w;
                return 0;
        }
        if (a->n_words == 0 && !a->global[KH_CLI_G_HELP] && strcmp(w, "help") == 0) {
                a->global[KH_CLI_G_HELP] = ""; /* keyhold help key list */
                return 0;
        }
        if (a->n_words == KH_CLI_WORDS_MAX)
                return unknown_command(p, w);
        a->words[a->n_words] = w;
        if (!kh_cli_command_prefix_exists(a->words, a->n_words + 1))
                return unknown_command(p, w);
        a->n_words++;
        a->command = kh_cli_command_find(a->words, a->n_words);
        return 0;
}

static int check_operands(struct parser *p) {
        const struct kh_cli_args *a = p->a;
        size_t min, max;

        kh_cli_command_operands(a->command, &min, &max);
        if (a->n_operands < min)
                return fail(p, "missing %s", a->command->operands);
        if (a->n_operands > max)
                return fail(p, "unexpected argument '%s'", a->operands[max]);
        return 0;
}

int kh_cli_args_parse(int argc, char *const *argv, struct kh_cli_args *ret,
                      char err[static KH_CLI_ERROR_MAX]) {
        struct parser p = { .a = ret, .err = err, .argc = argc, .argv = argv };
        bool dashes = false;
        int r = 0;

        *ret = (struct kh_cli_args) { 0 };
        err[0] = 0;
        for (p.i = 1; p.i < argc && r == 0; p.i++) {
                const char *arg = argv[p.i];

                if (dashes || arg[0] != '-' || arg[1] == 0)
                        r = word(&p, arg);
                else if (strcmp(arg, "--") == 0)
                        dashes = true;
                else if (arg[1] == '-')
                        r = long_option(&p, arg);
                else
                        r = short_options(&p, arg);
        }
        if (r < 0)
                return r;
        if (ret->command && !ret->global[KH_CLI_G_HELP] && !ret->global[KH_CLI_G_VERSION])
                return check_operands(&p);
        return 0;
}

const char *kh_cli_args_value(const struct kh_cli_args *a, const char *name) {
        const struct kh_cli_option *o;

        assert(a->command);
        o = kh_cli_command_option(a->command, name);
        assert(o); /* a handler asked for an option its row does not declare */
        return a->values[o - a->command->options];
}
