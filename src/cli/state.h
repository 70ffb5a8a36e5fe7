/* The local state of a member's machine (DESIGN.md "Running it", client side): a folder
 * (--state DIR, else $XDG_STATE_HOME/keyhold, else ~/.local/state/keyhold), mode 0700, whose
 * files are JSON documents of mode 0600 written atomically:
 *   device.json          {"identifier", "id", "deviceKey", "encryptedPrivateKey"}: this
 *                        device's identifier (made on first use) and, once trusted, its
 *                        64-byte device key (base64) and wrapped private key
 *   request-<ID>.json    a login request this device made: its access code and ephemeral
 *                        private key, until the request is answered
 * A file open to group or others is refused: it may hold a key. */
#pragma once

#include <stdbool.h>

#include <jansson.h>

#include "common/cleanup.h"

struct kh_state;

/**
 * kh_state_open() - the state folder dir (NULL: the default), created with its parents
 * (mode 0700) when absent. Returns 0, -ENOENT (no dir and neither XDG_STATE_HOME nor HOME),
 * -ENOMEM or the -errno of creating or opening it.
 */
KH_MUST_CHECK int kh_state_open(const char *dir, struct kh_state **ret);
struct kh_state *kh_state_free(struct kh_state *s);
KH_DEFINE_CLEANUP(kh_state_free, struct kh_state *)

/* The folder's path, for messages. Lives as long as s. */
const char *kh_state_path(const struct kh_state *s);

/**
 * kh_state_read() - the JSON object in file name of the folder.
 * Returns 0, -ENOENT (no such file), -EPERM (open to group or others), -EBADMSG (not a JSON
 * object), -EFBIG, -ENOMEM or another -errno.
 */
KH_MUST_CHECK int kh_state_read(struct kh_state *s, const char *name, json_t **ret);

/* Writes v to file name (mode 0600, atomically); its text is wiped afterwards. Returns 0,
 * -ENOMEM or the -errno of writing. */
KH_MUST_CHECK int kh_state_write(struct kh_state *s, const char *name, const json_t *v);

/* Removes file name; an absent one is fine. Returns 0 or -errno. */
int kh_state_remove(struct kh_state *s, const char *name);

/**
 * kh_state_device() - device.json, made with a new identifier (a random GUID) when there is
 * none yet (if create) . Returns 0, -ENOENT (none and !create), or as kh_state_read() /
 * kh_state_write().
 */
KH_MUST_CHECK int kh_state_device(struct kh_state *s, bool create, json_t **ret);

/* The id of the request file written last (request-<ID>.json by mtime), into a new string.
 * Returns 0, -ENOENT (none) or -ENOMEM. */
KH_MUST_CHECK int kh_state_latest_request(struct kh_state *s, char **ret);

/* "request-<ID>.json" for id into buf. Returns 0, or -EINVAL for an id that is no file name
 * part ([A-Za-z0-9-], 1..64). */
KH_MUST_CHECK int kh_state_request_name(const char *id, char *buf, size_t len);
