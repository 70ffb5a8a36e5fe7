/* What the client-side commands (device, login-request, recovery) share: the member's
 * connection (libkeyhold's client over --url with the member's token), this machine's
 * state folder, the user key of a trusted device, and the reporting of libkeyhold's
 * statuses in the CLI's one failure format. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "cli/cli.h"
#include "cli/state.h"
#include "keyhold/client.h"
#include "keyhold/encstring.h"

enum {
        KH_MEMBER_TOKEN = 1u << 0,         /* a member token is required */
        KH_MEMBER_CREATE_DEVICE = 1u << 1, /* make this device's identifier if there is none */
        KH_MEMBER_NO_SERVER = 1u << 2,     /* the state only: no --url needed */
};

struct kh_member {
        struct kh_state *state;
        json_t *device;                 /* device.json, or NULL (no identifier yet) */
        struct keyhold_client *client;  /* NULL with KH_MEMBER_NO_SERVER */
        char *token;                    /* the member token, or NULL; wiped when closed */
        char tenant[64];                /* the tenant id ("default" for the bare routes) */
};

/**
 * kh_member_open() - the state folder (--state), this device's state and a client for the
 * member routes (--url, --token/--token-file/KEYHOLD_TOKEN, --cacert, --tenant).
 * Returns 0, or the exit status after reporting why not (2: no --url, no token where one
 * is needed; 1: the state folder or a file cannot be read).
 */
KH_MUST_CHECK int kh_member_open(struct kh_cli *cli, unsigned flags, struct kh_member *m);
void kh_member_close(struct kh_member *m);

/* The identifier of this device (device.json), or NULL. */
const char *kh_member_identifier(const struct kh_member *m);

/**
 * kh_member_fail() - reports the failure r of a libkeyhold call about what ("registering
 * this device"): the server's message and code when it answered, else a code made from r
 * (unreachable, not_found, denied, ...). Returns 1.
 */
int kh_member_fail(struct kh_cli *cli, const struct kh_member *m, int r, const char *what);

/**
 * kh_member_unlock() - the user key from this device's trust: device.json's device key,
 * the device's encryptedUserKey (and encryptedPrivateKey when the server gives it, else the
 * copy kept at trust time) from the server, and keyhold_device_unlock().
 * Returns 0, or 1 after reporting: not_trusted (this device has no trust here or on the
 * server), unlock_failed, or the server's refusal.
 */
KH_MUST_CHECK int kh_member_unlock(struct kh_cli *cli, struct kh_member *m,
                                   uint8_t user_key[KEYHOLD_USER_KEY_LEN]);

/**
 * kh_member_unlock_trust() - kh_member_unlock(), and on success also what opened the user
 * key: the device key into ret_device_key (secret; the caller wipes it) and the
 * encryptedPrivateKey used (a new string; free() it). Either may be NULL.
 */
KH_MUST_CHECK int kh_member_unlock_trust(struct kh_cli *cli, struct kh_member *m,
                                         uint8_t user_key[KEYHOLD_USER_KEY_LEN],
                                         uint8_t ret_device_key[KEYHOLD_USER_KEY_LEN],
                                         char **ret_encrypted_private_key);

/**
 * kh_member_read_user_key() - a user key file: base64 of 64 bytes, one trailing newline
 * allowed; "-" reads stdin. Returns 0, or 1 after reporting why not.
 */
KH_MUST_CHECK int kh_member_read_user_key(struct kh_cli *cli, const char *path,
                                          uint8_t user_key[KEYHOLD_USER_KEY_LEN]);

/**
 * kh_member_write_secret() - text and a newline into path (mode 0600, atomically; an existing
 * file is replaced), or onto stdout when path is NULL. Returns 0, or 1 after reporting.
 */
KH_MUST_CHECK int kh_member_write_secret(struct kh_cli *cli, const char *path, const char *text);

/* The user key as base64 in a new string (secret: keyhold_wipe_free(s, strlen(s))), or NULL
 * when memory ran out. */
char *kh_member_key_text(const uint8_t user_key[KEYHOLD_USER_KEY_LEN]);

/* The e-mail of the member: the token's email claim, lowercased, into a new string; NULL
 * when there is no token or no such claim. */
char *kh_member_token_email(const struct kh_member *m);
