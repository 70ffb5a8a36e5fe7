/* `keyhold --help`, `keyhold GROUP --help` and `keyhold COMMAND --help`, made from the
 * command table so that a new row has its help and an example without more code. */
#pragma once

#include <stdio.h>

#include "cli/args.h"

/* Prints the help that a's words ask for: a command's (usage, description, options, example),
 * a group's (its commands and an example) or the whole program's. Returns 0 or -EIO. */
int kh_cli_help_print(FILE *f, const struct kh_cli_args *a);
