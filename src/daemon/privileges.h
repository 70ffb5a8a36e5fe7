/* Who keyholdd runs as. Started as root, it binds its listeners and admin socket, then
 * drops to [server] user (DESIGN.md "Running it") before it opens the key store, the
 * database or any tenant key; it refuses to stay root unless told so (--allow-root, or
 * --dev, which is development by definition). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct kh_run_as {
        bool drop;        /* true: switch to uid/gid (started as root with a user set) */
        uid_t uid;
        gid_t gid;
        char name[64];    /* the user's name, for initgroups() and messages */
};

/**
 * kh_privileges_plan() - decides, before anything is bound, whom keyholdd will run as.
 * @user:       [server] user, or NULL.
 * @allow_root: --allow-root or --dev: root without a user is accepted.
 * @ret:        the plan, written only on success.
 * @err:        on failure, the message to print (names the user and what to do).
 *
 * Root with a user: drop to it. Root without one: refused unless allow_root. Not root with
 * a user: accepted when it is that user already (nothing to drop), refused otherwise.
 * Returns 0, -ENOENT (no such user), -EPERM (refused) or another -errno of getpwnam_r().
 */
int kh_privileges_plan(const char *user, bool allow_root, struct kh_run_as *ret, char *err,
                       size_t err_len);

/**
 * kh_privileges_drop() - becomes who->uid/gid for good, if who->drop: the user's groups
 * (initgroups, as systemd's User= sets them), then gid, then uid (real, effective, saved);
 * every capability out of the bounding and ambient sets before, the inheritable set after;
 * PR_SET_NO_NEW_PRIVS. Then verifies it: all three ids are the user's, setuid(0) fails and
 * no capability is left (effective, permitted, inheritable). Call before any thread exists.
 * Returns 0, or a negative errno with @err saying which step failed; keyholdd must exit.
 */
int kh_privileges_drop(const struct kh_run_as *who, char *err, size_t err_len);
