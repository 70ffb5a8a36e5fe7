/* keyhold init: the first run of a production install (the package has installed keyholdd,
 * the unit, the keyhold user and an example configuration). Makes what must never ship in a
 * package: the master key, the data folder, and on request a self-signed TLS key and
 * certificate; then says what is left to do. Offline; never overwrites a key. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "cli/cli.h"
#include "cli/commands.h"
#include "crypto/random.h"
#include "crypto/selfsigned.h"

#define INIT_DATA_DEFAULT   "/var/lib/keyhold"
#define INIT_CONFIG_DEFAULT "/etc/keyhold/keyhold.conf"
#define INIT_USER_DEFAULT   "keyhold"
#define MASTER_KEY_LEN      32
#define TLS_DAYS            825   /* what browsers and most clients accept for a leaf */
#define PASSWD_BUF_MAX      16384
#define INIT_PATH_MAX       4096

struct init {
        struct kh_cli *cli;
        uid_t uid;
        gid_t gid;
        json_t *created;      /* the paths made, in order */
};

static int path_join(char out[static INIT_PATH_MAX], const char *dir, const char *name) {
        int n = snprintf(out, INIT_PATH_MAX, "%s/%s", dir, name);
        return n < 0 || n >= INIT_PATH_MAX ? -ENAMETOOLONG : 0;
}

static int note_created(struct init *in, const char *path) {
        return json_array_append_new(in->created, json_string(path)) < 0 ? -ENOMEM : 0;
}

/* A folder owned by the user, mode 0700; one that exists is left as it is. */
static int make_dir(struct init *in, const char *path, bool *ret_made) {
        *ret_made = false;
        if (mkdir(path, 0700) < 0)
                return errno == EEXIST ? 0 : -errno;
        if (chown(path, in->uid, in->gid) < 0 || chmod(path, 0700) < 0)
                return -errno;
        *ret_made = true;
        return note_created(in, path);
}

/* An existing master key file is kept: fine if it holds exactly 32 bytes, a failure if not
 * (a server could not start with it, and it is not ours to replace). */
static int check_master_key(struct init *in, const char *path) {
        struct stat st;

        if (lstat(path, &st) < 0)
                return kh_cli_fail(in->cli, "file_error", "cannot read %s: %s", path,
                                   strerror(errno));
        if (!S_ISREG(st.st_mode) || st.st_size != MASTER_KEY_LEN)
                return kh_cli_fail(in->cli, "invalid_master_key",
                                   "%s exists but is not a 32-byte master key file; it was not "
                                   "changed (move it away to create a new one)", path);
        if (!kh_cli_json(in->cli))
                printf("kept      %s (exists; a master key is never overwritten)\n", path);
        return 0;
}

/* 32 random bytes, created exclusively (O_EXCL: never over a file that appeared since),
 * mode 0600 from the start, owned by the user, on disk before we say so. */
static int make_master_key(struct init *in, const char *path) {
        uint8_t key[MASTER_KEY_LEN];
        int fd, r;

        fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 && errno == EEXIST)
                return check_master_key(in, path);
        if (fd < 0)
                return kh_cli_fail(in->cli, "file_error", "cannot create %s: %s", path,
                                   strerror(errno));
        r = kh_random_bytes(key, sizeof(key));
        if (r >= 0 && write(fd, key, sizeof(key)) != (ssize_t) sizeof(key))
                r = errno ? -errno : -EIO;
        OPENSSL_cleanse(key, sizeof(key));
        if (r >= 0 && (fchown(fd, in->uid, in->gid) < 0 || fsync(fd) < 0))
                r = -errno;
        if (close(fd) < 0 && r >= 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(path);
                return kh_cli_fail(in->cli, "file_error", "cannot write %s: %s", path,
                                   strerror(-r));
        }
        if (!kh_cli_json(in->cli))
                printf("created   %s (master key, mode 0600)\n", path);
        return note_created(in, path);
}

/* A key and certificate for this host's name and 127.0.0.1, unless either file exists. */
static int make_tls(struct init *in, const char *key_path, const char *cert_path) {
        char host[256], cn[300], san[600];
        int r;

        if (access(key_path, F_OK) == 0 || access(cert_path, F_OK) == 0) {
                if (!kh_cli_json(in->cli))
                        printf("kept      %s, %s (exist)\n", key_path, cert_path);
                return 0;
        }
        if (gethostname(host, sizeof(host)) < 0 || !host[0] || strpbrk(host, ",:= \t"))
                (void) snprintf(host, sizeof(host), "localhost");
        (void) snprintf(cn, sizeof(cn), "%s", host);
        (void) snprintf(san, sizeof(san), "DNS:%s,IP:127.0.0.1", host);
        r = kh_selfsigned_write(cn, san, TLS_DAYS, key_path, cert_path);
        if (r >= 0 && (chown(key_path, in->uid, in->gid) < 0 || chown(cert_path, in->uid, in->gid) < 0))
                r = -errno;
        if (r < 0)
                return kh_cli_fail(in->cli, "file_error", "cannot make the TLS key and "
                                   "certificate %s, %s: %s", key_path, cert_path, strerror(-r));
        if (!kh_cli_json(in->cli))
                printf("created   %s (TLS key, mode 0600)\n"
                       "created   %s (self-signed certificate for %s and 127.0.0.1, %u days)\n",
                       key_path, cert_path, host, TLS_DAYS);
        r = note_created(in, key_path);
        return r < 0 ? r : note_created(in, cert_path);
}

static void print_steps(const char *config, const char *data, const char *key_path,
                        const char *tls_key, const char *tls_cert) {
        printf("\nWhat is left to do:\n"
               "  1. In %s:\n"
               "       [keystore] master_key_file = %s\n"
               "       [storage] path = %s/keyhold.db    [keystore] path = %s/keystore\n",
               config, key_path, data, data);
        if (tls_cert)
                printf("       [server] tls_cert = %s    tls_key = %s\n", tls_cert, tls_key);
        else
                printf("       [server] tls_cert / tls_key: your certificate (or run again "
                       "with --self-signed)\n");
        printf("       [tenant.default] issuer = https://<your Bitwarden server>/identity\n"
               "       [server] cors_origins = https://<your web vault's origin>\n"
               "  2. keyholdd --check-config --config %s\n"
               "  3. systemctl enable --now keyhold\n"
               "  4. curl -fsS https://127.0.0.1:8443/health%s   (expect {\"status\":\"ready\"})\n"
               "  5. Back up %s somewhere safe and apart from the data: without it no backup "
               "opens.\n",
               config, tls_cert ? " --cacert <the certificate>" : "", key_path);
}

static int lookup_user(struct kh_cli *cli, const char *name, uid_t *ret_uid, gid_t *ret_gid) {
        struct passwd pw, *found = NULL;
        char buf[PASSWD_BUF_MAX];
        int r = getpwnam_r(name, &pw, buf, sizeof(buf), &found);

        if (r != 0 || !found)
                return kh_cli_fail(cli, "no_such_user",
                                   "no user '%s' (the package creates 'keyhold'; or pass --user)",
                                   name);
        if (geteuid() != 0 && pw.pw_uid != geteuid())
                return kh_cli_fail(cli, "not_permitted",
                                   "only root can give files to user '%s': run as root, or "
                                   "pass --user with your own name", name);
        *ret_uid = pw.pw_uid;
        *ret_gid = pw.pw_gid;
        return 0;
}

int kh_cmd_init(struct kh_cli *cli) {
        const char *data = kh_cli_value(cli, "data"), *config = kh_cli_value(cli, "config");
        const char *user = kh_cli_value(cli, "user");
        bool self_signed = kh_cli_flag(cli, "self-signed");
        char config_copy[INIT_PATH_MAX], dir[INIT_PATH_MAX], key_path[INIT_PATH_MAX];
        char keystore[INIT_PATH_MAX], tls_key[INIT_PATH_MAX], tls_cert[INIT_PATH_MAX];
        json_auto_t *created = json_array(), *out = NULL;
        struct init in = { .cli = cli, .created = created };
        bool made;
        int r;

        data = data ? data : INIT_DATA_DEFAULT;
        config = config ? config : INIT_CONFIG_DEFAULT;
        user = user ? user : INIT_USER_DEFAULT;
        if (!created)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        if (!*data || !*config || strlen(config) >= sizeof(config_copy))
                return kh_cli_usage_error(cli, "--data and --config need a path");
        r = lookup_user(cli, user, &in.uid, &in.gid);
        if (r != 0)
                return r;

        /* the secrets live next to the configuration: /etc/keyhold for the package's */
        memcpy(config_copy, config, strlen(config) + 1);
        (void) snprintf(dir, sizeof(dir), "%s", dirname(config_copy));
        if (path_join(key_path, dir, "master.key") < 0 || path_join(keystore, data, "keystore") < 0 ||
            path_join(tls_key, dir, "tls.key") < 0 || path_join(tls_cert, dir, "tls.crt") < 0)
                return kh_cli_usage_error(cli, "--data or --config: the path is too long");
        if (mkdir(dir, 0755) == 0) {
                if (!kh_cli_json(cli))
                        printf("created   %s (mode 0755)\n", dir);
                r = note_created(&in, dir);
                if (r < 0)
                        return kh_cli_fail(cli, "internal_error", "out of memory");
        } else if (errno != EEXIST) {
                return kh_cli_fail(cli, "file_error", "cannot create %s: %s", dir, strerror(errno));
        }

        r = make_master_key(&in, key_path);
        if (r != 0)
                return r;
        r = make_dir(&in, data, &made);
        if (r >= 0 && !made && !kh_cli_json(cli))
                printf("kept      %s (exists)\n", data);
        else if (r >= 0 && !kh_cli_json(cli))
                printf("created   %s (data folder, mode 0700)\n", data);
        if (r >= 0)
                r = make_dir(&in, keystore, &made);
        if (r >= 0 && made && !kh_cli_json(cli))
                printf("created   %s (key store, mode 0700)\n", keystore);
        if (r < 0)
                return kh_cli_fail(cli, "file_error", "cannot create %s or %s: %s", data,
                                   keystore, strerror(-r));
        if (self_signed) {
                r = make_tls(&in, tls_key, tls_cert);
                if (r != 0)
                        return r;
        }

        if (!kh_cli_json(cli)) {
                print_steps(config, data, key_path, tls_key, self_signed ? tls_cert : NULL);
                return 0;
        }
        out = json_pack("{s:s, s:s, s:s?, s:O}", "master_key_file", key_path, "data", data,
                        "tls_cert", self_signed ? tls_cert : NULL, "created", created);
        if (!out)
                return kh_cli_fail(cli, "internal_error", "out of memory");
        return kh_cli_print_json(cli, out);
}
