/* The commands of `keyhold`: one table, one row per command. Adding a command is a row in
 * commands.c and its handler (one function in a cmd-<area>.c file, declared below); parsing,
 * help, usage errors and global options follow from the row. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct kh_cli;

/* One option of a command (global options are in args.h). */
struct kh_cli_option {
        const char *name;  /* long name without the dashes: "since" is given as --since */
        char short_name;   /* 'n' for -n, or 0 */
        const char *value; /* the value's name in help ("SEQ"); NULL for a flag */
        const char *help;  /* one line */
};

/* Runs a command whose options and operands have been parsed and checked against its row.
 * Returns the exit status: 0 done, 1 refused or failed (reported already, see cli.h),
 * 2 usage error (reported already). */
typedef int (*kh_cli_handler)(struct kh_cli *cli);

struct kh_cli_command {
        const char *path;     /* the command words: "audit export" */
        const char *operands; /* "FILE", "[ID]" (optional), "" (none): checked, and shown in help */
        const char *summary;  /* one line for the command list */
        const char *description;            /* what it does, a paragraph for --help */
        const struct kh_cli_option *options; /* ends with { 0 }; NULL: none */
        const char *example;  /* one command line, shown under --help */
        kh_cli_handler run;
};

extern const struct kh_cli_command kh_cli_commands[];
extern const size_t kh_cli_commands_n;

/* The command whose path is exactly words[0..n), or NULL. */
const struct kh_cli_command *kh_cli_command_find(const char *const *words, size_t n);

/* Whether words[0..n) (n >= 1) are the leading words of some command's path, i.e. name a
 * command or a group of commands ("key"). */
bool kh_cli_command_prefix_exists(const char *const *words, size_t n);

/* Whether cmd's path starts with words[0..n) (whole words). */
bool kh_cli_command_has_prefix(const struct kh_cli_command *cmd, const char *const *words,
                               size_t n);

/* The option of cmd called name (long name), or NULL. */
const struct kh_cli_option *kh_cli_command_option(const struct kh_cli_command *cmd,
                                                  const char *name);

/* Counts cmd's operands: *ret_min required ones, *ret_max in all ("[X]" is optional). */
void kh_cli_command_operands(const struct kh_cli_command *cmd, size_t *ret_min, size_t *ret_max);

/* Handlers, one per row (cmd-dev-token.c, cmd-key.c, cmd-audit.c, cmd-incident.c, ...),
 * each documented by its row. */
int kh_cmd_dev_token(struct kh_cli *cli);
int kh_cmd_init(struct kh_cli *cli);
int kh_cmd_import_bitwarden_kc(struct kh_cli *cli);
int kh_cmd_key_list(struct kh_cli *cli);
int kh_cmd_key_status(struct kh_cli *cli);
int kh_cmd_key_rekey(struct kh_cli *cli);
int kh_cmd_key_retire(struct kh_cli *cli);
int kh_cmd_key_destroy(struct kh_cli *cli);
int kh_cmd_key_revoke(struct kh_cli *cli);
int kh_cmd_key_reinstate(struct kh_cli *cli);
int kh_cmd_seal(struct kh_cli *cli);
int kh_cmd_unseal(struct kh_cli *cli);
int kh_cmd_audit_tail(struct kh_cli *cli);
int kh_cmd_audit_export(struct kh_cli *cli);
int kh_cmd_audit_public_key(struct kh_cli *cli);
int kh_cmd_audit_verify(struct kh_cli *cli);
int kh_cmd_backup_create(struct kh_cli *cli);
int kh_cmd_backup_verify(struct kh_cli *cli);
int kh_cmd_backup_restore(struct kh_cli *cli);
int kh_cmd_incident(struct kh_cli *cli);
int kh_cmd_keystore_migrate(struct kh_cli *cli);
int kh_cmd_device_trust(struct kh_cli *cli);
int kh_cmd_device_unlock(struct kh_cli *cli);
int kh_cmd_device_rotate(struct kh_cli *cli);
int kh_cmd_device_list(struct kh_cli *cli);
int kh_cmd_device_untrust(struct kh_cli *cli);
int kh_cmd_login_request_create(struct kh_cli *cli);
int kh_cmd_login_request_wait(struct kh_cli *cli);
int kh_cmd_login_request_approve(struct kh_cli *cli);
int kh_cmd_login_request_deny(struct kh_cli *cli);
int kh_cmd_recovery_enrol(struct kh_cli *cli);
int kh_cmd_member_remove(struct kh_cli *cli);
int kh_cmd_approvals_list(struct kh_cli *cli);
int kh_cmd_approvals_approve(struct kh_cli *cli);
int kh_cmd_approvals_deny(struct kh_cli *cli);
