/* keyhold: the command line of keyholdd's administration. main parses the command line
 * against the command table (commands.c), shows help or a usage error, runs the command's
 * handler and turns a stdout that could not be written into a failure. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/help.h"

/* Exit statuses of the interface contract (DESIGN.md "Administration"). */
enum { EXIT_DONE = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* What ran is reported; whether stdout took it is checked once, here: a full disk or a
 * closed pipe must not look like success to a script. */
static int finish_stdout(int status) {
        if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "keyhold: cannot write the output: %s\n", strerror(errno));
                return status == EXIT_DONE ? EXIT_FAILED : status;
        }
        return status;
}

static int run(struct kh_cli *cli, const struct kh_cli_args *args) {
        if (args->global[KH_CLI_G_VERSION]) {
                puts("keyhold " KH_VERSION);
                return EXIT_DONE;
        }
        if (args->global[KH_CLI_G_HELP])
                return kh_cli_help_print(stdout, args) < 0 ? EXIT_FAILED : EXIT_DONE;
        if (!args->command) {
                /* `keyhold` or `keyhold key`: what could follow, as a usage error */
                (void) kh_cli_help_print(stderr, args);
                return EXIT_USAGE;
        }
        return args->command->run(cli);
}

int main(int argc, char **argv) {
        KH_CLEANUP(kh_cli_freep) struct kh_cli *cli = NULL;
        char err[KH_CLI_ERROR_MAX];
        struct kh_cli_args args;
        int r, status;

        r = kh_cli_args_parse(argc, argv, &args, err);
        if (kh_cli_new(&args, &cli) < 0) {
                fputs("keyhold: out of memory\n", stderr);
                return EXIT_FAILED;
        }
        if (r < 0)
                return finish_stdout(kh_cli_usage_error(cli, "%s", err));
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                fputs("keyhold: cannot initialise libcurl\n", stderr);
                return EXIT_FAILED;
        }
        status = finish_stdout(run(cli, &args));
        cli = kh_cli_free(cli); /* its client, before libcurl goes */
        curl_global_cleanup();
        return status;
}
