/* keyhold keystore migrate --to NEWCONF [--config OLDCONF]: moves every tenant key version to
 * another key store, offline (service/ksmigrate.h does the moving; docs/keystore-migrate.md is
 * the operator's side). keyholdd must be stopped: the command takes
 * the database's lock exclusively (store/lock.h), which every keyholdd holds shared. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "common/errors.h"
#include "common/file.h"
#include "config/config.h"
#include "keystore/keystore.h"
#include "service/audit.h"
#include "service/ksmigrate.h"
#include "store/lock.h"
#include "store/store.h"

#define CONFIG_DEFAULT "/etc/keyhold/keyhold.conf"

extern char **environ;

static void closep(int *fd) {
        if (*fd >= 0)
                (void) close(*fd);
}

/* Returns 0, or the exit status after saying why not. */
static int load(struct kh_cli *cli, const char *option, const char *path,
                struct kh_config **ret) {
        struct kh_config_error err = { 0 };
        int r = kh_config_load(path, environ, ret, &err);

        if (r == -EINVAL)
                return kh_cli_fail(cli, "bad_config", "%s %s: %s: %s; nothing was changed",
                                   option, path, err.key, err.reason);
        if (r < 0)
                return kh_cli_fail(cli, "bad_config", "%s %s: cannot read it: %s; nothing was "
                                   "changed", option, path, strerror(-r));
        return 0;
}

/* Whether the configuration gives its key store a secret (as keyholdd would start sealed). */
static bool has_secret(const struct kh_config_keystore *k) {
        if (strcmp(k->driver, "pkcs11") == 0)
                return (k->pin_file && k->pin_file[0]) || (k->pin && k->pin[0]);
        return (k->master_key_file && k->master_key_file[0]) || (k->passphrase && k->passphrase[0]);
}

static int open_keystore(struct kh_cli *cli, const char *option, const char *path,
                         const struct kh_config_keystore *k, struct kh_keystore **ret) {
        char detail[256];
        int r;

        if (!has_secret(k))
                return kh_cli_fail(cli, "no_secret",
                                   "%s %s: the %s key store has no secret configured (%s); an "
                                   "offline command cannot ask for it; nothing was changed",
                                   option, path, k->driver,
                                   strcmp(k->driver, "pkcs11") == 0
                                           ? "[keystore] pin_file or KEYHOLD_KEYSTORE_PIN"
                                           : "[keystore] master_key_file or "
                                             "KEYHOLD_KEYSTORE_PASSPHRASE");
        r = kh_keystore_open_detail(k, ret, detail, sizeof(detail));
        if (r < 0)
                return kh_cli_fail(cli, "keystore_error",
                                   "%s %s: cannot open its %s key store: %s%s%s; nothing was "
                                   "changed", option, path, k->driver, kh_strerror(r),
                                   detail[0] ? ": " : "", detail);
        return 0;
}

/* Refuses while a keyholdd serves the database: its shared lock, or its admin socket
 * answering (a PostgreSQL database has no lock file). *ret_fd holds the lock. */
static int server_stopped(struct kh_cli *cli, const char *path, const struct kh_config *cfg,
                          int *ret_fd) {
        const char *sock = cfg->server.admin_socket;
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int r, fd;

        r = kh_store_lock(&cfg->storage, true, ret_fd);
        if (r == -EWOULDBLOCK)
                return kh_cli_fail(cli, "server_running",
                                   "keyholdd serves the database of %s (it holds %s%s): stop it "
                                   "first (systemctl stop keyhold); nothing was changed", path,
                                   cfg->storage.path, KH_STORE_LOCK_SUFFIX);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot lock the database of %s: %s", path,
                                   strerror(-r));
        if (!sock || !sock[0] || strlen(sock) >= sizeof(sa.sun_path))
                return 0;
        memcpy(sa.sun_path, sock, strlen(sock));
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return 0;
        r = connect(fd, (const struct sockaddr *) &sa, sizeof(sa));
        (void) close(fd);
        if (r == 0)
                return kh_cli_fail(cli, "server_running",
                                   "keyholdd answers on the admin socket of %s (%s): stop it "
                                   "first; nothing was changed", path, sock);
        return 0;
}

/* The old store's audit public keys, one PEM per chain that has one, into dir: the only way
 * to verify checkpoints signed before the move, once the old store is gone. */
static int save_audit_keys(struct kh_cli *cli, struct kh_keystore *ks, const struct kh_config *cfg,
                           const char *dir, json_t *files) {
        for (size_t i = 0; i <= cfg->n_tenants; i++) {
                const char *tenant = i == 0 ? "" : cfg->tenants[i - 1].id;
                struct kh_key_ref ref = { .version = KH_AUDIT_KEY_VERSION, .purpose = KH_KEY_AUDIT };
                KH_CLEANUP(EVP_PKEY_freep) EVP_PKEY *pub = NULL;
                char path[PATH_MAX];
                BIO *mem;
                char *pem;
                long len;
                int r;

                (void) snprintf(ref.tenant, sizeof(ref.tenant), "%s", tenant);
                r = kh_keystore_public_key(ks, &ref, &pub);
                if (r == -ENOENT)
                        continue;  /* a chain that never signed a checkpoint */
                if (r < 0)
                        return kh_cli_fail(cli, "keystore_error", "the audit key of %s%s: %s",
                                           i ? "tenant " : "the server", tenant, kh_strerror(r));
                if ((size_t) snprintf(path, sizeof(path), "%s/%s%s.pem", dir, i ? "tenant-" : "server",
                                      tenant) >= sizeof(path))
                        return kh_cli_usage_error(cli, "--audit-keys: %s is too long", dir);
                mem = BIO_new(BIO_s_mem());
                if (!mem || PEM_write_bio_PUBKEY(mem, pub) != 1) {
                        BIO_free(mem);
                        ERR_clear_error();
                        return kh_cli_fail(cli, "internal_error", "cannot encode a PEM");
                }
                len = BIO_get_mem_data(mem, &pem);
                r = kh_file_write_atomic(AT_FDCWD, path, pem, (size_t) len, 0644, 0);
                BIO_free(mem);
                if (r < 0)
                        return kh_cli_fail(cli, "file_error", "cannot write %s: %s; nothing was "
                                           "changed", path, strerror(-r));
                (void) json_array_append_new(files, json_string(path));
        }
        return 0;
}

struct progress {
        bool show;
};

static void on_version(const char *tenant, uint32_t version, enum kh_key_state state,
                       enum kh_ksmigrate_outcome o, void *userdata) {
        static const char *const states[] = { [KH_KEY_ACTIVE] = "active",
                                              [KH_KEY_ARCHIVED] = "archived",
                                              [KH_KEY_RETIRED] = "retired",
                                              [KH_KEY_REVOKED] = "revoked",
                                              [KH_KEY_DESTROYED] = "destroyed" };
        static const char *const what[] = {
                [KH_KSMIGRATE_MOVED] = "moved",
                [KH_KSMIGRATE_PRESENT] = "in the new key store already",
                [KH_KSMIGRATE_NO_KEY] = "no key to move",
        };
        const struct progress *p = userdata;

        if (p->show)
                fprintf(stderr, "  %s version %" PRIu32 " (%s): %s\n", tenant, version,
                        (size_t) state < KH_ELEMENTSOF(states) && states[state] ? states[state]
                                                                                  : "?",
                        what[o]);
}

static const char *why(int r, bool in_new) {
        switch (r) {
        case -KH_E_INTEGRITY:
                return "its DEK's signature verifies in neither key store, or the DEK does not "
                       "unwrap";
        case -ENOENT:
                return in_new ? "the new key store has no such key" : "the old key store has "
                                                                      "no key for it";
        case -ESTALE:
                return "its row changed meanwhile: something else writes this database";
        case -EALREADY:
                return "the tenant's previous key store migration is not in the audit chain yet: "
                       "start keyholdd once on the configuration it moved to (it records it), "
                       "stop it, then move on";
        case -E2BIG:
                return "the tenant has more versions than keyhold keeps";
        default:
                return kh_strerror(r);
        }
}

struct totals {
        size_t versions, moved, skipped, no_key;
        uint64_t enrolments;
};

static int migrate_all(struct kh_cli *cli, struct kh_store *store, struct kh_keystore *from,
                       struct kh_keystore *to, const struct kh_config *cfg, json_t *per_tenant,
                       struct totals *t) {
        struct progress p = { .show = isatty(STDERR_FILENO) };  /* stderr: also with --json */

        for (size_t i = 0; i < cfg->n_tenants; i++) {
                const char *id = cfg->tenants[i].id;
                struct kh_ksmigrate_result res;
                int r;

                if (p.show)
                        fprintf(stderr, "tenant %s:\n", id);
                r = kh_ksmigrate_tenant(store, from, to, id, (uint32_t) getuid(), on_version, &p,
                                        &res);
                if (r < 0 && res.failed_version)
                        return kh_cli_fail(cli, "migrate_failed",
                                           "tenant %s, version %" PRIu32 ": %s (%s key store). "
                                           "Versions moved before it stay moved; run the same "
                                           "command again once fixed", id, res.failed_version,
                                           why(r, res.failed_in_new),
                                           res.failed_in_new ? "new" : "old");
                if (r < 0)
                        return kh_cli_fail(cli, "migrate_failed", "tenant %s: %s (%s)", id,
                                           why(r, false), kh_store_last_error(store));
                t->versions += res.versions;
                t->moved += res.moved;
                t->skipped += res.skipped;
                t->no_key += res.no_key;
                t->enrolments += res.recovery_enrolments;
                (void) json_array_append_new(
                        per_tenant,
                        json_pack("{ss sI sI sI sI sI}", "tenant", id, "versions",
                                  (json_int_t) res.versions, "moved", (json_int_t) res.moved,
                                  "skipped", (json_int_t) res.skipped, "no_key",
                                  (json_int_t) res.no_key, "recovery_enrolments_affected",
                                  (json_int_t) res.recovery_enrolments));
        }
        return 0;
}

static void print_summary(const struct kh_config *old, const struct kh_config *new,
                          const struct totals *t, const json_t *audit_files,
                          const char *new_path) {
        printf("%zu tenant(s), %zu key version(s) that keep a DEK: %zu moved from the %s key "
               "store to the %s key store, %zu there already; %zu retired or destroyed "
               "version(s) need no key.\n",
               old->n_tenants, t->versions, t->moved, old->keystore.driver, new->keystore.driver,
               t->skipped, t->no_key);
        if (t->versions > 0 && t->moved == 0 && t->skipped == t->versions)
                printf("Nothing was left to move.\n");
        if (t->enrolments > 0)
                printf("Account recovery: %" PRIu64 " member enrolment(s) were made to the old "
                       "key store's recovery key, which cannot leave it: these members must enrol "
                       "again (keyhold recovery enrol); the new key store makes a new recovery "
                       "key at first use.\n", t->enrolments);
        else
                printf("Account recovery: no member enrolment is affected.\n");
        if (json_array_size(audit_files) > 0)
                printf("Audit: the old key store's audit public keys were saved (%zu PEM "
                       "file(s)); checkpoints signed before the move verify only with them.\n",
                       json_array_size(audit_files));
        else
                printf("Audit: the new key store signs new checkpoints with its own audit key; "
                       "checkpoints signed before verify only with the old key store's public "
                       "keys (--audit-keys DIR saves them, keyhold audit public-key prints "
                       "them).\n");
        printf("Next: start keyholdd with --config %s (it records each moved version in the "
               "audit chain), then re-encrypt under a new version and destroy the old ones:\n"
               "  keyhold incident hsm-vulnerability --version V --execute\n", new_path);
}

int kh_cmd_keystore_migrate(struct kh_cli *cli) {
        const char *new_path = kh_cli_value(cli, "to"), *old_path = kh_cli_value(cli, "config");
        const char *audit_dir = kh_cli_value(cli, "audit-keys");
        KH_CLEANUP(kh_config_freep) struct kh_config *old = NULL, *new = NULL;
        KH_CLEANUP(kh_keystore_closep) struct kh_keystore *from = NULL, *to = NULL;
        KH_CLEANUP(kh_store_closep) struct kh_store *store = NULL;
        KH_CLEANUP(closep) int lock = -1;
        json_auto_t *audit_files = json_array(), *per_tenant = json_array(), *out = NULL;
        struct totals t = { 0 };
        struct stat st;
        int r;

        if (!new_path || !new_path[0])
                return kh_cli_usage_error(cli, "--to NEWCONF names the configuration whose "
                                               "[keystore] the keys move to");
        if (!old_path)
                old_path = CONFIG_DEFAULT;
        if (audit_dir && (stat(audit_dir, &st) < 0 || !S_ISDIR(st.st_mode)))
                return kh_cli_usage_error(cli, "--audit-keys: %s is no folder", audit_dir);
        if (!audit_files || !per_tenant)
                return kh_cli_fail(cli, "internal_error", "out of memory");

        r = load(cli, "--config", old_path, &old);
        if (r == 0)
                r = load(cli, "--to", new_path, &new);
        if (r != 0)
                return r;
        if (strcmp(old->storage.driver, new->storage.driver) != 0 ||
            (old->storage.path && new->storage.path &&
             strcmp(old->storage.path, new->storage.path) != 0))
                fprintf(stderr, "keyhold: warning: --to %s names another database than --config "
                                "%s; the keys of the database of --config move\n",
                        new_path, old_path);

        r = server_stopped(cli, old_path, old, &lock);
        if (r != 0)
                return r;
        r = open_keystore(cli, "--config", old_path, &old->keystore, &from);
        if (r == 0)
                r = open_keystore(cli, "--to", new_path, &new->keystore, &to);
        if (r != 0)
                return r;
        r = kh_store_open(&old->storage, &store);
        if (r < 0)
                return kh_cli_fail(cli, "storage_error", "cannot open the database of %s: %s",
                                   old_path, strerror(-r));
        /* PostgreSQL: the database's advisory lock, exclusive until the store is closed (a
         * SQLite database's lock file was taken above) */
        r = kh_store_exclusive(store);
        if (r == -EWOULDBLOCK)
                return kh_cli_fail(cli, "server_running",
                                   "a keyholdd (or another keyhold tool) is connected to the "
                                   "database of %s: stop every keyholdd on it first; nothing "
                                   "was changed",
                                   old_path);
        if (r < 0)
                return kh_cli_fail(cli, "storage_error", "cannot lock the database of %s: %s (%s)",
                                   old_path, kh_strerror(r), kh_store_last_error(store));
        if (audit_dir) {
                r = save_audit_keys(cli, from, old, audit_dir, audit_files);
                if (r != 0)
                        return r;
        }

        r = migrate_all(cli, store, from, to, old, per_tenant, &t);
        if (r != 0)
                return r;

        if (!kh_cli_json(cli)) {
                print_summary(old, new, &t, audit_files, new_path);
                return 0;
        }
        out = json_pack("{sI sI sI sI sI sI ss ss sO sO}", "tenants", (json_int_t) old->n_tenants,
                        "versions", (json_int_t) t.versions, "moved", (json_int_t) t.moved,
                        "skipped", (json_int_t) t.skipped, "no_key", (json_int_t) t.no_key,
                        "recovery_enrolments_affected", (json_int_t) t.enrolments, "from",
                        old->keystore.driver, "to", new->keystore.driver, "audit_keys",
                        audit_files, "per_tenant", per_tenant);
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return kh_cli_print_json(cli, out);
}
