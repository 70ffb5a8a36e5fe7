/* Which server the global options and KEYHOLD_* pick (kh_cli_resolve), and option numbers. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/cmd-audit.h"
#include "config/config.h"

static const char *const env_names[] = { "KEYHOLD_SOCKET", "KEYHOLD_URL", "KEYHOLD_TOKEN",
                                         "KEYHOLD_CACERT", "KEYHOLD_TENANT" };

struct resolved {
        struct kh_cli_args args;
        struct kh_client_config cfg;
        const char *token_file;
        int r;
};

static int clear_env(void **state) {
        (void) state;
        for (size_t i = 0; i < sizeof(env_names) / sizeof(env_names[0]); i++)
                assert_int_equal(unsetenv(env_names[i]), 0);
        return 0;
}

/* Parses "keyhold key list" plus the arguments v (NULL-terminated) and resolves. */
static void resolve(struct resolved *res, const char *const *v) {
        static char *argv[16];
        KH_CLEANUP(kh_cli_freep) struct kh_cli *cli = NULL;
        char err[KH_CLI_ERROR_MAX];
        int argc = 0;

        argv[argc++] = (char *) (uintptr_t) "keyhold";
        argv[argc++] = (char *) (uintptr_t) "key";
        argv[argc++] = (char *) (uintptr_t) "list";
        for (; v && *v; v++) {
                assert_true(argc < 16);
                argv[argc++] = (char *) (uintptr_t) *v;
        }
        assert_int_equal(kh_cli_args_parse(argc, argv, &res->args, err), 0);
        assert_int_equal(kh_cli_new(&res->args, &cli), 0);
        memset(&res->cfg, 0xa5, sizeof(res->cfg)); /* untouched on failure: shows as garbage */
        res->token_file = (const char *) (uintptr_t) 1;
        res->r = kh_cli_resolve(cli, &res->cfg, &res->token_file);
}

static void test_socket_option_and_variable(void **state) {
        (void) state;
        const char *opt[] = { "--socket", "/opt/s.sock", NULL };
        struct resolved r;

        assert_int_equal(setenv("KEYHOLD_SOCKET", "/env/s.sock", 1), 0);
        resolve(&r, NULL);
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.socket_path, "/env/s.sock");
        assert_null(r.cfg.url);
        assert_null(r.cfg.token);
        assert_null(r.token_file);
        assert_null(r.cfg.tenant);

        resolve(&r, opt); /* the command line wins */
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.socket_path, "/opt/s.sock");
}

static void test_socket_needs_no_token_and_ignores_it(void **state) {
        (void) state;
        const char *opt[] = { "--socket", "/s", "--token", "has space", NULL };
        struct resolved r;

        assert_int_equal(setenv("KEYHOLD_CACERT", "/ca.pem", 1), 0);
        resolve(&r, opt);
        assert_int_equal(r.r, 0);
        assert_null(r.cfg.token);
        assert_null(r.cfg.cacert);
}

static void test_url_from_variables(void **state) {
        (void) state;
        struct resolved r;

        assert_int_equal(setenv("KEYHOLD_URL", "https://keys.example.com", 1), 0);
        assert_int_equal(setenv("KEYHOLD_TOKEN", "eyJ.abc.def", 1), 0);
        assert_int_equal(setenv("KEYHOLD_CACERT", "/ca.pem", 1), 0);
        assert_int_equal(setenv("KEYHOLD_TENANT", "acme", 1), 0);
        resolve(&r, NULL);
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.url, "https://keys.example.com");
        assert_null(r.cfg.socket_path);
        assert_string_equal(r.cfg.token, "eyJ.abc.def");
        assert_string_equal(r.cfg.cacert, "/ca.pem");
        assert_string_equal(r.cfg.tenant, "acme");
        assert_null(r.token_file);
}

static void test_options_win_over_variables(void **state) {
        (void) state;
        const char *socket[] = { "--socket", "/s", NULL };
        const char *opts[] = { "--token", "T2", "--tenant", "beta", "--cacert", "/b.pem", NULL };
        const char *file[] = { "--token-file", "/t", NULL };
        struct resolved r;

        assert_int_equal(setenv("KEYHOLD_URL", "https://keys.example.com", 1), 0);
        assert_int_equal(setenv("KEYHOLD_TOKEN", "T1", 1), 0);
        assert_int_equal(setenv("KEYHOLD_TENANT", "acme", 1), 0);
        assert_int_equal(setenv("KEYHOLD_CACERT", "/a.pem", 1), 0);

        resolve(&r, socket); /* --socket beats KEYHOLD_URL */
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.socket_path, "/s");
        assert_null(r.cfg.url);

        resolve(&r, opts);
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.token, "T2");
        assert_string_equal(r.cfg.tenant, "beta");
        assert_string_equal(r.cfg.cacert, "/b.pem");

        resolve(&r, file); /* --token-file beats KEYHOLD_TOKEN */
        assert_int_equal(r.r, 0);
        assert_null(r.cfg.token);
        assert_string_equal(r.token_file, "/t");
}

static void test_empty_variables_count_as_unset(void **state) {
        (void) state;
        const char *opt[] = { "--url", "https://k.example.com", "--token", "T", NULL };
        struct resolved r;

        assert_int_equal(setenv("KEYHOLD_SOCKET", "", 1), 0);
        assert_int_equal(setenv("KEYHOLD_TENANT", "", 1), 0);
        resolve(&r, opt);
        assert_int_equal(r.r, 0);
        assert_null(r.cfg.tenant);
        assert_string_equal(r.cfg.url, "https://k.example.com");
}

/* Without --socket or KEYHOLD_SOCKET: /run/keyhold/admin.sock when it exists, else the one of
 * `keyholdd --dev` in ./keyhold-dev when that exists, else the first (for the message). */
static void test_default_socket_falls_back_to_the_dev_folder(void **state) {
        (void) state;
        char dir[] = "/tmp/kh-test-cli-XXXXXX", old[4096];
        bool production = access(KH_ADMIN_SOCKET_DEFAULT, F_OK) == 0;
        struct resolved r;
        int fd;

        assert_non_null(getcwd(old, sizeof(old)));
        assert_non_null(mkdtemp(dir));
        assert_int_equal(chdir(dir), 0);

        resolve(&r, NULL);
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.socket_path, KH_ADMIN_SOCKET_DEFAULT);

        assert_int_equal(mkdir("keyhold-dev", 0700), 0);
        fd = open("keyhold-dev/admin.sock", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        assert_true(fd >= 0);
        close(fd);
        resolve(&r, NULL);
        assert_int_equal(r.r, 0);
        assert_string_equal(r.cfg.socket_path,
                            production ? KH_ADMIN_SOCKET_DEFAULT : "./keyhold-dev/admin.sock");

        assert_int_equal(unlink("keyhold-dev/admin.sock"), 0);
        assert_int_equal(rmdir("keyhold-dev"), 0);
        assert_int_equal(chdir(old), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void test_usage_errors_exit_2(void **state) {
        (void) state;
        const char *both[] = { "--url", "https://k", "--socket", "/s", NULL };
        const char *two_tokens[] = { "--url", "https://k", "--token", "T", "--token-file", "/t",
                                     NULL };
        const char *no_token[] = { "--url", "https://k", NULL };
        const char *bad_token[] = { "--url", "https://k", "--token", "a b", NULL };
        const char *bad_tenant[] = { "--tenant", "Acme!", NULL };
        const char *const *cases[] = { both, two_tokens, no_token, bad_token, bad_tenant };
        struct resolved r;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                resolve(&r, cases[i]);
                assert_int_equal(r.r, 2);
                assert_ptr_equal(r.token_file, (const char *) (uintptr_t) 1); /* untouched */
        }

        assert_int_equal(setenv("KEYHOLD_URL", "https://k", 1), 0);
        assert_int_equal(setenv("KEYHOLD_SOCKET", "/s", 1), 0);
        resolve(&r, NULL); /* two servers from the environment: which one is a guess */
        assert_int_equal(r.r, 2);
        assert_int_equal(unsetenv("KEYHOLD_URL"), 0);
        assert_int_equal(unsetenv("KEYHOLD_SOCKET"), 0);

        assert_int_equal(setenv("KEYHOLD_TENANT", "-acme", 1), 0);
        resolve(&r, NULL);
        assert_int_equal(r.r, 2);
}

static void test_numbers_of_options(void **state) {
        (void) state;
        static char *argv[8];
        const char *v[] = { "keyhold", "audit", "tail", "-n", NULL };
        const char *values[] = { "1", "10000", "0", "10001", "+5", " 5", "5x", "0x10", "" };
        const int64_t expect[] = { 1, 10000, -1, -1, -1, -1, -1, -1, -1 };

        for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
                KH_CLEANUP(kh_cli_freep) struct kh_cli *cli = NULL;
                char err[KH_CLI_ERROR_MAX];
                struct kh_cli_args args;
                uint64_t n = 77;

                v[4] = values[i];
                for (int j = 0; j < 5; j++)
                        argv[j] = (char *) (uintptr_t) v[j];
                assert_int_equal(kh_cli_args_parse(5, argv, &args, err), 0);
                assert_int_equal(kh_cli_new(&args, &cli), 0);
                if (expect[i] < 0) {
                        assert_int_equal(kh_cli_number(cli, "lines", 1, 10000, 20, &n), 2);
                        assert_int_equal(n, 77);
                } else {
                        assert_int_equal(kh_cli_number(cli, "lines", 1, 10000, 20, &n), 0);
                        assert_int_equal(n, (uint64_t) expect[i]);
                }
        }
}

static void test_number_default_when_absent(void **state) {
        (void) state;
        static char *argv[] = { NULL, NULL, NULL };
        KH_CLEANUP(kh_cli_freep) struct kh_cli *cli = NULL;
        char err[KH_CLI_ERROR_MAX];
        struct kh_cli_args args;
        uint64_t n = 0;

        argv[0] = (char *) (uintptr_t) "keyhold";
        argv[1] = (char *) (uintptr_t) "audit";
        argv[2] = (char *) (uintptr_t) "tail";
        assert_int_equal(kh_cli_args_parse(3, argv, &args, err), 0);
        assert_int_equal(kh_cli_new(&args, &cli), 0);
        assert_int_equal(kh_cli_number(cli, "lines", 1, 10000, 20, &n), 0);
        assert_int_equal(n, 20);
        assert_false(kh_cli_flag(cli, "follow"));
        assert_null(kh_cli_operand(cli, 0));
}

/* `audit verify FILE --public-key K` and more: what kh_cli_audit_verify_expect() makes of the
 * expectations. */
struct expect_case {
        const char *argv[5];
        int r;                   /* 0, or 2: a usage error */
        uint64_t first, through; /* when 0 is returned */
};

static const struct expect_case expect_cases[] = {
        { { NULL }, 0, 0, 0 },
        { { "--first-seq", "1" }, 0, 1, 0 },
        { { "--through-seq", "12" }, 0, 0, 12 },
        { { "--first-seq=4", "--through-seq", "12" }, 0, 4, 12 },
        { { "--through-seq", "7", "--first-seq", "7" }, 0, 7, 7 },
        { { "--first-seq", "9223372036854775807" }, 0, INT64_MAX, 0 },
        { { "--through-seq", "9223372036854775807" }, 0, 0, INT64_MAX },
        { { "--first-seq", "9223372036854775808" }, 2, 0, 0 },
        { { "--through-seq", "18446744073709551616" }, 2, 0, 0 },
        { { "--first-seq", "0" }, 2, 0, 0 },
        { { "--through-seq", "0" }, 2, 0, 0 },
        { { "--first-seq=-1" }, 2, 0, 0 },
        { { "--first-seq", "1e3" }, 2, 0, 0 },
        { { "--through-seq", "" }, 2, 0, 0 },
        { { "--first-seq", "5", "--through-seq", "4" }, 2, 0, 0 },
        { { "--first-seq", "x", "--through-seq", "4" }, 2, 0, 0 },
};

static void test_verify_expectations(void **state) {
        (void) state;
        for (size_t i = 0; i < sizeof(expect_cases) / sizeof(expect_cases[0]); i++) {
                const struct expect_case *c = &expect_cases[i];
                KH_CLEANUP(kh_cli_freep) struct kh_cli *cli = NULL;
                static char *argv[16];
                char err[KH_CLI_ERROR_MAX];
                struct kh_cli_args args;
                struct kh_audit_verify_expect e = { .first_seq = 77, .through_seq = 78 };
                const char *head[] = { "keyhold", "audit", "verify", "f.jsonl", "--public-key",
                                       "k.pem" };
                int argc = 0;

                for (size_t j = 0; j < sizeof(head) / sizeof(head[0]); j++)
                        argv[argc++] = (char *) (uintptr_t) head[j];
                for (size_t j = 0; j < 5 && c->argv[j]; j++)
                        argv[argc++] = (char *) (uintptr_t) c->argv[j];
                assert_int_equal(kh_cli_args_parse(argc, argv, &args, err), 0);
                assert_int_equal(kh_cli_new(&args, &cli), 0);
                assert_int_equal(kh_cli_audit_verify_expect(cli, &e), c->r);
                if (c->r == 0) {
                        assert_int_equal(e.first_seq, c->first);
                        assert_int_equal(e.through_seq, c->through);
                } else { /* untouched */
                        assert_int_equal(e.first_seq, 77);
                        assert_int_equal(e.through_seq, 78);
                }
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup(test_socket_option_and_variable, clear_env),
                cmocka_unit_test_setup(test_socket_needs_no_token_and_ignores_it, clear_env),
                cmocka_unit_test_setup(test_url_from_variables, clear_env),
                cmocka_unit_test_setup(test_options_win_over_variables, clear_env),
                cmocka_unit_test_setup(test_empty_variables_count_as_unset, clear_env),
                cmocka_unit_test_setup(test_default_socket_falls_back_to_the_dev_folder, clear_env),
                cmocka_unit_test_setup(test_usage_errors_exit_2, clear_env),
                cmocka_unit_test_setup(test_numbers_of_options, clear_env),
                cmocka_unit_test_setup(test_number_default_when_absent, clear_env),
                cmocka_unit_test_setup(test_verify_expectations, clear_env),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
