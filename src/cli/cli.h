/* What a command handler works with: its parsed options and operands, the connection to the
 * server that the global options describe, and the one way of reporting a failure (stderr, or
 * {"code", "message"} on stdout with --json) so that every command fails alike. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cli/args.h"
#include "cli/client.h"
#include "common/cleanup.h"

struct kh_cli;

/* A context for args (borrowed: it must outlive the context). Returns 0 or -ENOMEM. */
KH_MUST_CHECK int kh_cli_new(const struct kh_cli_args *args, struct kh_cli **ret);
struct kh_cli *kh_cli_free(struct kh_cli *cli); /* closes its client; NULL-safe */
KH_DEFINE_CLEANUP(kh_cli_free, struct kh_cli *)

/* Whether --json was given. */
bool kh_cli_json(const struct kh_cli *cli);

/* The value of the command's option name ("" for a flag given; NULL when not given). The
 * option must be in the command's row. */
const char *kh_cli_value(const struct kh_cli *cli, const char *name);
bool kh_cli_flag(const struct kh_cli *cli, const char *name);

/* Operand i (the row's operand count was checked), or NULL past the last. */
const char *kh_cli_operand(const struct kh_cli *cli, size_t i);

/**
 * kh_cli_number() - the command option name as a decimal in [min, max], or def when not
 * given. Returns 0, or 2 after reporting a usage error.
 */
KH_MUST_CHECK int kh_cli_number(struct kh_cli *cli, const char *name, uint64_t min, uint64_t max,
                                uint64_t def, uint64_t *ret);

/* The value of the global option g: the command line's, else its environment variable's
 * (KEYHOLD_*; an empty variable counts as unset), else NULL. */
const char *kh_cli_global(const struct kh_cli *cli, enum kh_cli_global g);

/**
 * kh_cli_resolve() - the server the global options and KEYHOLD_* name, checked but not yet
 * contacted. The command line wins over the environment: --url or --socket given picks that
 * transport whatever KEYHOLD_URL and KEYHOLD_SOCKET say. Else KEYHOLD_URL (HTTPS with a
 * token), else KEYHOLD_SOCKET, else /run/keyhold/admin.sock, else ./keyhold-dev/admin.sock
 * when only that one exists (`keyholdd --dev` run from this folder).
 * @ret:            socket_path or url, and tenant, cacert, token (pointers into the
 *                  arguments and the environment); cancel is not set.
 * @ret_token_file: with a url, the --token-file to read (then ret->token is NULL); or NULL.
 *
 * Usage errors (exit 2): --url with --socket, or both variables set and neither option;
 * --token with --token-file; a tenant id that is none; a token with characters no bearer
 * token has; a url without any token. Returns 0, or 2 after reporting the error.
 */
KH_MUST_CHECK int kh_cli_resolve(struct kh_cli *cli, struct kh_client_config *ret,
                                 const char **ret_token_file);

/**
 * kh_cli_read_token_file() - the bearer token in path (--token-file) appended to out (a
 * sensitive buffer of KH_TOKEN_MAX + 1): the file's content less one trailing newline; a
 * file open to group or others is refused. Returns 0, or 1 after reporting why not.
 */
struct kh_buf;
KH_MUST_CHECK int kh_cli_read_token_file(struct kh_cli *cli, const char *path,
                                         struct kh_buf *out);

/**
 * kh_cli_connect() - the client kh_cli_resolve() describes, made once; the context owns it.
 * Returns 0, or the exit status (1 or 2) after reporting why not (an unreadable token file
 * or CA file, a url that is not https://).
 */
KH_MUST_CHECK int kh_cli_connect(struct kh_cli *cli, struct kh_client **ret);

/**
 * kh_cli_get() - GET path from the server (kh_cli_connect(), then kh_client_get()).
 * @ret_body: on success, the answer object; the caller owns it.
 * Returns 0, or the exit status (1 or 2) after reporting the failure: the server's error as
 * it sent it, or why it could not be reached. A request stopped by a signal (after
 * kh_cli_catch_signals()) returns 1 unreported: for `tail -f` that is the normal end, for
 * an export a failure, so the caller reports it (kh_cli_interrupted() tells).
 */
KH_MUST_CHECK int kh_cli_get(struct kh_cli *cli, enum kh_client_scope scope, const char *path,
                             json_t **ret_body);

/* POST path with body (NULL: none), as kh_cli_get() (kh_client_post()). */
KH_MUST_CHECK int kh_cli_post(struct kh_cli *cli, enum kh_client_scope scope, const char *path,
                              const json_t *body, json_t **ret_body);

/* Prints v as one line of compact JSON on stdout. Returns 0, or 1 after reporting that memory
 * ran out (a stdout that cannot be written is main's to report, once). */
int kh_cli_print_json(struct kh_cli *cli, const json_t *v);

/* Reports a failure made here: "keyhold CMD: message (code)" on stderr, or
 * {"code", "message"} on stdout with --json. Returns 1, the exit status. */
int kh_cli_fail(struct kh_cli *cli, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* Reports error, a {"code", "message"} object (the server's, passed on as it is); NULL stands
 * for running out of memory. Returns 1. */
int kh_cli_fail_with(struct kh_cli *cli, const json_t *error);

/* Reports a usage error and a one-line hint to the right --help. Returns 2. */
int kh_cli_usage_error(struct kh_cli *cli, const char *fmt, ...)
        __attribute__((format(printf, 2, 3)));

/* From now on SIGINT and SIGTERM end the command cleanly: they set the flag that
 * kh_cli_interrupted() reads and that stops a transfer in progress. */
void kh_cli_catch_signals(void);
bool kh_cli_interrupted(void);

/* Sleeps ms milliseconds, or less when interrupted. Returns !kh_cli_interrupted(). */
bool kh_cli_sleep_ms(unsigned ms);
