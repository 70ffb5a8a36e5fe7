/* The command line parser (src/cli/args.c) against the real command table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "cli/args.h"
#include "cli/commands.h"

#define ARGC(v) ((int) (sizeof(v) / sizeof((v)[0])))

struct parsed {
        struct kh_cli_args a;
        char err[KH_CLI_ERROR_MAX];
        int r;
};

/* argv as main() gets it: not const (the parser only reads it; -Wwrite-strings would refuse
 * literals in a char * array). */
static void parse(struct parsed *p, int argc, const char *const *v) {
        static char *argv[16];

        assert_true(argc <= 16);
        for (int i = 0; i < argc; i++)
                argv[i] = (char *) (uintptr_t) v[i];
        memset(p->err, 'x', sizeof(p->err));
        p->r = kh_cli_args_parse(argc, argv, &p->a, p->err);
}

static void test_globals_before_and_after_the_command(void **state) {
        (void) state;
        const char *before[] = { "keyhold", "--json", "--socket", "/s", "key", "list" };
        const char *after[] = { "keyhold", "key", "list", "--json", "--socket=/s" };
        const char *between[] = { "keyhold", "key", "--socket", "/s", "list", "--json" };
        const char *const *all[] = { before, after, between };
        int argcs[] = { ARGC(before), ARGC(after), ARGC(between) };
        struct parsed p;

        for (size_t i = 0; i < 3; i++) {
                parse(&p, argcs[i], all[i]);
                assert_int_equal(p.r, 0);
                assert_non_null(p.a.command);
                assert_string_equal(p.a.command->path, "key list");
                assert_string_equal(p.a.global[KH_CLI_G_JSON], "");
                assert_string_equal(p.a.global[KH_CLI_G_SOCKET], "/s");
                assert_null(p.a.global[KH_CLI_G_URL]);
                assert_int_equal(p.a.n_operands, 0);
        }
}

static void test_command_options_short_long_and_bundled(void **state) {
        (void) state;
        const char *v1[] = { "keyhold", "audit", "tail", "-n", "5", "-f" };
        const char *v2[] = { "keyhold", "audit", "tail", "-fn5" };
        const char *v3[] = { "keyhold", "audit", "tail", "--lines=5", "--follow", "--tenant", "acme" };
        const char *const *all[] = { v1, v2, v3 };
        int argcs[] = { ARGC(v1), ARGC(v2), ARGC(v3) };
        struct parsed p;

        for (size_t i = 0; i < 3; i++) {
                parse(&p, argcs[i], all[i]);
                assert_int_equal(p.r, 0);
                assert_string_equal(p.a.command->path, "audit tail");
                assert_string_equal(kh_cli_args_value(&p.a, "lines"), "5");
                assert_string_equal(kh_cli_args_value(&p.a, "follow"), "");
                assert_null(kh_cli_args_value(&p.a, "server"));
        }
        assert_string_equal(p.a.global[KH_CLI_G_TENANT], "acme");
}

static void test_operands_and_options_mixed(void **state) {
        (void) state;
        const char *v[] = { "keyhold", "audit", "export", "--since", "7", "out.jsonl", "--force" };
        const char *dash[] = { "keyhold", "audit", "export", "-" };
        const char *dashdash[] = { "keyhold", "audit", "export", "--", "--force" };
        struct parsed p;

        parse(&p, ARGC(v), v);
        assert_int_equal(p.r, 0);
        assert_int_equal(p.a.n_operands, 1);
        assert_string_equal(p.a.operands[0], "out.jsonl");
        assert_string_equal(kh_cli_args_value(&p.a, "since"), "7");
        assert_string_equal(kh_cli_args_value(&p.a, "force"), "");

        parse(&p, ARGC(dash), dash);
        assert_int_equal(p.r, 0);
        assert_string_equal(p.a.operands[0], "-");

        parse(&p, ARGC(dashdash), dashdash); /* after --, a file may be called --force */
        assert_int_equal(p.r, 0);
        assert_string_equal(p.a.operands[0], "--force");
        assert_null(kh_cli_args_value(&p.a, "force"));
}

/* Each case: the arguments after "keyhold" and the exact message. */
struct usage_case {
        const char *argv[8];
        const char *message;
};

static const struct usage_case usage_cases[] = {
        { { "frobnicate" }, "unknown command 'frobnicate'" },
        { { "key", "lsit" }, "unknown command 'key lsit'" },
        { { "key", "list", "--frob" }, "unknown option '--frob'" },
        { { "key", "list", "-x" }, "unknown option '-x'" },
        { { "--since", "3", "audit", "export", "f" }, "unknown option '--since'" },
        { { "key", "list", "extra" }, "unexpected argument 'extra'" },
        { { "audit", "export" }, "missing FILE" },
        { { "audit", "export", "a", "b" }, "unexpected argument 'b'" },
        { { "audit", "tail", "-n" }, "option --lines needs a value (N)" },
        { { "key", "list", "--socket" }, "option --socket needs a value (PATH)" },
        { { "key", "list", "--json=yes" }, "option --json takes no value" },
        { { "key", "list", "--url", "https://a", "--url", "https://b" },
          "option --url given twice" },
        { { "audit", "export", "f", "--since", "1", "--since=2" }, "option --since given twice" },
        { { "audit", "verify", "f", "--first-seq" }, "option --first-seq needs a value (N)" },
        { { "audit", "verify", "f", "--through-seq=1", "--through-seq=2" },
          "option --through-seq given twice" },
        { { "audit", "verify", "--first-seq", "1" }, "missing FILE" },
        { { "--first-seq", "1", "audit", "verify", "f" }, "unknown option '--first-seq'" },
};

static void test_usage_errors_name_the_problem(void **state) {
        (void) state;
        for (size_t i = 0; i < sizeof(usage_cases) / sizeof(usage_cases[0]); i++) {
                const char *argv[9] = { "keyhold" };
                int argc = 1;
                struct parsed p;

                while (usage_cases[i].argv[argc - 1]) {
                        argv[argc] = usage_cases[i].argv[argc - 1];
                        argc++;
                }
                parse(&p, argc, argv);
                assert_int_equal(p.r, -EINVAL);
                assert_string_equal(p.err, usage_cases[i].message);
        }
}

static void test_verify_expectations_are_its_options(void **state) {
        (void) state;
        const char *v[] = { "keyhold", "audit", "verify", "--first-seq", "1", "chain.jsonl",
                            "--through-seq=12", "--public-key", "k.pem" };
        const char *none[] = { "keyhold", "audit", "verify", "chain.jsonl" };
        struct parsed p;

        parse(&p, ARGC(v), v);
        assert_int_equal(p.r, 0);
        assert_string_equal(p.a.command->path, "audit verify");
        assert_int_equal(p.a.n_operands, 1);
        assert_string_equal(p.a.operands[0], "chain.jsonl");
        assert_string_equal(kh_cli_args_value(&p.a, "first-seq"), "1");
        assert_string_equal(kh_cli_args_value(&p.a, "through-seq"), "12");
        assert_string_equal(kh_cli_args_value(&p.a, "public-key"), "k.pem");

        parse(&p, ARGC(none), none);
        assert_int_equal(p.r, 0);
        assert_null(kh_cli_args_value(&p.a, "first-seq"));
        assert_null(kh_cli_args_value(&p.a, "through-seq"));
}

static void test_flags_may_repeat(void **state) {
        (void) state;
        const char *v[] = { "keyhold", "--json", "key", "list", "--json" };
        struct parsed p;

        parse(&p, ARGC(v), v);
        assert_int_equal(p.r, 0);
        assert_string_equal(p.a.global[KH_CLI_G_JSON], "");
}

static void test_help_forms(void **state) {
        (void) state;
        const char *word[] = { "keyhold", "help", "key", "list" };
        const char *flag[] = { "keyhold", "key", "-h" };
        const char *bare[] = { "keyhold" };
        const char *no_operand[] = { "keyhold", "audit", "export", "--help" };
        struct parsed p;

        parse(&p, ARGC(word), word);
        assert_int_equal(p.r, 0);
        assert_non_null(p.a.global[KH_CLI_G_HELP]);
        assert_string_equal(p.a.command->path, "key list");

        parse(&p, ARGC(flag), flag); /* a group: no command, its word kept for the help */
        assert_int_equal(p.r, 0);
        assert_non_null(p.a.global[KH_CLI_G_HELP]);
        assert_null(p.a.command);
        assert_int_equal(p.a.n_words, 1);
        assert_string_equal(p.a.words[0], "key");

        parse(&p, ARGC(bare), bare);
        assert_int_equal(p.r, 0);
        assert_null(p.a.command);
        assert_int_equal(p.a.n_words, 0);

        parse(&p, ARGC(no_operand), no_operand); /* --help needs no FILE */
        assert_int_equal(p.r, 0);
        assert_string_equal(p.a.command->path, "audit export");
}

static void test_every_row_is_consistent(void **state) {
        (void) state;
        assert_true(kh_cli_commands_n > 0);
        for (size_t i = 0; i < kh_cli_commands_n; i++) {
                const struct kh_cli_command *c = &kh_cli_commands[i];
                const char *words[KH_CLI_WORDS_MAX];
                char path[128];
                size_t n = 0, n_options = 0;

                assert_non_null(c->run);
                assert_non_null(c->summary);
                assert_non_null(c->description);
                assert_non_null(c->example);
                assert_non_null(c->operands);
                /* the example runs this very command */
                assert_int_equal(strncmp(c->example, "keyhold ", 8), 0);
                assert_non_null(strstr(c->example, c->path));
                assert_true(strlen(c->path) < sizeof(path));
                strcpy(path, c->path);
                for (char *w = strtok(path, " "); w; w = strtok(NULL, " ")) {
                        assert_true(n < KH_CLI_WORDS_MAX);
                        words[n++] = w;
                }
                assert_ptr_equal(kh_cli_command_find(words, n), c);
                for (const struct kh_cli_option *o = c->options; o && o->name; o++) {
                        n_options++;
                        /* no shadowed global, but DESIGN.md's `incident --version V`, the
                         * key version (test_command_option_wins_over_a_global) */
                        for (size_t g = 0; g < KH_CLI_G_N_; g++)
                                if (!(g == KH_CLI_G_VERSION && strcmp(c->path, "incident") == 0))
                                        assert_string_not_equal(o->name,
                                                                kh_cli_globals[g].opt.name);
                }
                assert_true(n_options <= KH_CLI_OPTIONS_MAX);
        }
}

/* After the command words a command's own option wins over a global of the same name:
 * `incident leaked --version 3` is key version 3, `keyhold --version` keyhold's version. */
static void test_command_option_wins_over_a_global(void **state) {
        (void) state;
        const char *inc[] = { "keyhold", "incident", "leaked", "--version", "3" };
        const char *ver[] = { "keyhold", "--version" };
        struct parsed p;

        parse(&p, ARGC(inc), inc);
        assert_int_equal(p.r, 0);
        assert_string_equal(p.a.command->path, "incident");
        assert_string_equal(kh_cli_args_value(&p.a, "version"), "3");
        assert_null(p.a.global[KH_CLI_G_VERSION]);
        parse(&p, ARGC(ver), ver);
        assert_int_equal(p.r, 0);
        assert_non_null(p.a.global[KH_CLI_G_VERSION]);
}

static void test_operand_counts(void **state) {
        (void) state;
        struct kh_cli_command c = { .operands = "FILE [SEQ] [MORE]" };
        size_t min, max;

        kh_cli_command_operands(&c, &min, &max);
        assert_int_equal(min, 1);
        assert_int_equal(max, 3);
        c.operands = "";
        kh_cli_command_operands(&c, &min, &max);
        assert_int_equal(min, 0);
        assert_int_equal(max, 0);
}

static void test_prefixes_are_whole_words(void **state) {
        (void) state;
        const char *ke[] = { "ke" }, *key[] = { "key" }, *audit_ex[] = { "audit", "ex" };

        assert_false(kh_cli_command_prefix_exists(ke, 1));
        assert_true(kh_cli_command_prefix_exists(key, 1));
        assert_null(kh_cli_command_find(key, 1));
        assert_false(kh_cli_command_prefix_exists(audit_ex, 2));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_globals_before_and_after_the_command),
                cmocka_unit_test(test_command_options_short_long_and_bundled),
                cmocka_unit_test(test_operands_and_options_mixed),
                cmocka_unit_test(test_verify_expectations_are_its_options),
                cmocka_unit_test(test_usage_errors_name_the_problem),
                cmocka_unit_test(test_flags_may_repeat),
                cmocka_unit_test(test_help_forms),
                cmocka_unit_test(test_every_row_is_consistent),
                cmocka_unit_test(test_command_option_wins_over_a_global),
                cmocka_unit_test(test_operand_counts),
                cmocka_unit_test(test_prefixes_are_whole_words),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
