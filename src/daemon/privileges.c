#include "privileges.h"

#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PASSWD_BUF_MAX 16384

int kh_privileges_plan(const char *user, bool allow_root, struct kh_run_as *ret, char *err,
                       size_t err_len) {
        struct passwd pw, *found = NULL;
        char buf[PASSWD_BUF_MAX];
        uid_t euid = geteuid();
        int r;

        if (!user) {
                if (euid == 0 && !allow_root) {
                        (void) snprintf(err, err_len,
                                        "refusing to run as root: set [server] user (e.g. "
                                        "user = keyhold) so that keyholdd drops to that user "
                                        "once its sockets are bound, or pass --allow-root "
                                        "(development only)");
                        return -EPERM;
                }
                *ret = (struct kh_run_as) { .drop = false, .uid = euid, .gid = getegid() };
                return 0;
        }

        r = getpwnam_r(user, &pw, buf, sizeof(buf), &found);
        if (r != 0 || !found) {
                (void) snprintf(err, err_len, "[server] user: %s '%s'%s%s",
                                r != 0 ? "cannot look up user" : "no such user", user,
                                r != 0 ? ": " : "", r != 0 ? strerror(r) : "");
                return r != 0 ? -r : -ENOENT;
        }
        if (strlen(pw.pw_name) >= sizeof(ret->name)) {
                (void) snprintf(err, err_len, "[server] user: the name '%s' is too long", user);
                return -ENAMETOOLONG;
        }
        if (euid != 0 && pw.pw_uid != euid) {
                (void) snprintf(err, err_len,
                                "[server] user is '%s' (uid %u), but keyholdd runs as uid %u: "
                                "only root can switch users; start it as root or as '%s'",
                                user, (unsigned) pw.pw_uid, (unsigned) euid, user);
                return -EPERM;
        }
        *ret = (struct kh_run_as) { .drop = euid == 0 && pw.pw_uid != 0, .uid = pw.pw_uid,
                                    .gid = pw.pw_gid };
        memcpy(ret->name, pw.pw_name, strlen(pw.pw_name) + 1);
        return 0;
}

static int fail(char *err, size_t err_len, const char *step) {
        int r = errno ? -errno : -EPERM;

        (void) snprintf(err, err_len, "dropping privileges: %s: %s", step, strerror(-r));
        return r;
}

/* A check that found the drop incomplete (no system call failed). */
static int refuse(char *err, size_t err_len, const char *what) {
        (void) snprintf(err, err_len, "dropping privileges: %s", what);
        return -EPERM;
}

/* capget/capset without libcap: the three 64-bit sets as two 32-bit words each. */
static int caps_get(struct __user_cap_data_struct data[static 2]) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };

        return (int) syscall(SYS_capget, &h, data);
}

static int caps_clear(void) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct data[2] = { 0 };

        return (int) syscall(SYS_capset, &h, data);
}

int kh_privileges_drop(const struct kh_run_as *who, char *err, size_t err_len) {
        struct __user_cap_data_struct caps[2];
        uid_t ruid, euid, suid;
        gid_t rgid, egid, sgid;

        if (!who->drop)
                return 0;
        errno = 0;
        if (initgroups(who->name, who->gid) < 0)
                return fail(err, err_len, "initgroups");
        /* only root (CAP_SETPCAP) can empty the bounding set: before the switch */
        for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
                if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
                        return fail(err, err_len, "PR_CAPBSET_DROP");
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                return fail(err, err_len, "PR_CAP_AMBIENT_CLEAR_ALL");
        if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
                return fail(err, err_len, "PR_SET_KEEPCAPS");
        if (setresgid(who->gid, who->gid, who->gid) < 0)
                return fail(err, err_len, "setresgid");
        if (setresuid(who->uid, who->uid, who->uid) < 0)
                return fail(err, err_len, "setresuid");
        /* the switch emptied the effective and permitted sets; the inheritable one stays */
        if (caps_clear() < 0)
                return fail(err, err_len, "capset");
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                return fail(err, err_len, "PR_SET_NO_NEW_PRIVS");
        /* the switch made the process dumpable again (suid_dumpable): not for key material */
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

        errno = 0;
        if (getresuid(&ruid, &euid, &suid) < 0 || getresgid(&rgid, &egid, &sgid) < 0)
                return fail(err, err_len, "getresuid");
        if (ruid != who->uid || euid != who->uid || suid != who->uid || rgid != who->gid ||
            egid != who->gid || sgid != who->gid)
                return refuse(err, err_len, "the user and group ids did not all change");
        if (setuid(0) == 0 || setgid(0) == 0)
                return refuse(err, err_len, "root could be regained");
        errno = 0;
        if (caps_get(caps) < 0)
                return fail(err, err_len, "capget");
        for (int i = 0; i < 2; i++)
                if (caps[i].effective || caps[i].permitted || caps[i].inheritable)
                        return refuse(err, err_len, "capabilities are left");
        return 0;
}
