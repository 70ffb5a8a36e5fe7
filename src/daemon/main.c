/* keyholdd: reads the configuration, hardens the process, opens the key store, database
 * and issuers, then runs one event loop per core until SIGTERM or SIGINT. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "common/errors.h"
#include "common/file.h"
#include "common/log.h"
#include "common/parse.h"
#include "config/config.h"
#include "config/dev-names.h"
#include "daemon/dev.h"
#include "daemon/notify.h"
#include "daemon/privileges.h"
#include "daemon/workers.h"
#include "http/server.h"
#include "service/app.h"
#include "service/stats.h"

extern char **environ;

static const char usage[] =
        "Usage: keyholdd --config FILE          run with a configuration file\n"
        "       keyholdd --dev [--data DIR]     local trial: self-signed TLS, SQLite, file key\n"
        "                                       store and a built-in token issuer (default\n"
        "                                       DIR ./keyhold-dev), on https://127.0.0.1:8443\n"
        "       keyholdd --check-config --config FILE\n"
        "                                       validate FILE (and KEYHOLD_* variables); names\n"
        "                                       the bad key and why, exit 1\n"
        "\n"
        "Every configuration key can be set from the environment as KEYHOLD_<SECTION>_<KEY>,\n"
        "e.g. KEYHOLD_SERVER_LISTEN=127.0.0.1:9443 or KEYHOLD_TENANT_DEFAULT_ISSUER=...; the key\n"
        "store passphrase only as KEYHOLD_KEYSTORE_PASSPHRASE, the PostgreSQL password only as\n"
        "KEYHOLD_STORAGE_PASSWORD (or in [storage] password_file).\n"
        "\n"
        "Options:\n"
        "  -c, --config FILE   configuration file (INI)\n"
        "      --dev           dev mode (never for production: tokens are minted locally)\n"
        "      --allow-root    stay root when started as root without [server] user\n"
        "                      (development only; --dev implies it)\n"
        "      --data DIR      dev mode data folder\n"
        "      --check-config  check the configuration and exit\n"
        "      --sign-unsigned-deks\n"
        "                      sign tenant DEKs stored without a signature (a database from\n"
        "                      before keyhold signed them) instead of refusing to start; only\n"
        "                      for a database you trust, once\n"
        "  -v, --verbose       debug logging\n"
        "  -h, --help          this help\n"
        "      --version       print the version\n";

struct options {
        const char *config;
        const char *data;
        bool dev, check, verbose, sign_unsigned_deks, allow_root;
};

static int parse_args(int argc, char **argv, struct options *o) {
        enum { OPT_DEV = 256, OPT_DATA, OPT_CHECK, OPT_VERSION, OPT_SIGN_UNSIGNED, OPT_ALLOW_ROOT };
        static const struct option longopts[] = {
                { "config", required_argument, NULL, 'c' }, { "dev", no_argument, NULL, OPT_DEV },
                { "data", required_argument, NULL, OPT_DATA },
                { "check-config", no_argument, NULL, OPT_CHECK },
                { "verbose", no_argument, NULL, 'v' },      { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                { "sign-unsigned-deks", no_argument, NULL, OPT_SIGN_UNSIGNED },
                { "allow-root", no_argument, NULL, OPT_ALLOW_ROOT },
                { NULL, 0, NULL, 0 },
        };
        int c;

        while ((c = getopt_long(argc, argv, "c:vh", longopts, NULL)) != -1) {
                switch (c) {
                case 'c': o->config = optarg; break;
                case OPT_DEV: o->dev = true; break;
                case OPT_DATA: o->data = optarg; break;
                case OPT_CHECK: o->check = true; break;
                case OPT_SIGN_UNSIGNED: o->sign_unsigned_deks = true; break;
                case OPT_ALLOW_ROOT: o->allow_root = true; break;
                case 'v': o->verbose = true; break;
                case 'h': fputs(usage, stdout); exit(EXIT_SUCCESS);
                case OPT_VERSION: puts("keyholdd " KH_VERSION); exit(EXIT_SUCCESS);
                default: fputs(usage, stderr); return -EINVAL;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "keyholdd: unexpected argument '%s'\n\n%s", argv[optind], usage);
                return -EINVAL;
        }
        if (o->dev == !!o->config) {
                fprintf(stderr, "keyholdd: give exactly one of --config FILE or --dev\n\n%s", usage);
                return -EINVAL;
        }
        if (o->data && !o->dev) {
                fprintf(stderr, "keyholdd: --data is for --dev only\n");
                return -EINVAL;
        }
        return 0;
}

/* Secrets must not reach a core dump or a debugger of another user; OpenSSL's secure heap
 * keeps private-key bignums in locked, non-dumpable memory. Also raises the descriptor
 * limit. */
static void harden_process(void) {
        struct rlimit no_core = { 0, 0 };

        struct rlimit files;

        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        (void) setrlimit(RLIMIT_CORE, &no_core);
        /* every connection is a descriptor: take all the hard limit allows (the soft one is
         * often 1024); [server] max_connections keeps each worker below what it can use */
        if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
                files.rlim_cur = files.rlim_max;
                (void) setrlimit(RLIMIT_NOFILE, &files);
        }
        if (CRYPTO_secure_malloc_init(1 << 20, 32) != 1)
                kh_log_warning("OpenSSL secure heap unavailable; private keys use ordinary memory");
}

/* jansson holds request bodies (the member's key in base64) while parsing: wipe every
 * block it frees. */
static void wiping_free(void *p) {
        if (!p)
                return;
        OPENSSL_cleanse(p, malloc_usable_size(p));
        free(p);
}

/* A secret variable's value is wiped where the kernel put the environment (what
 * /proc/PID/environ shows) and the variable removed, once the configuration has a copy. */
static void forget_env_secret(const char *name) {
        size_t n = strlen(name);

        for (char **e = environ; *e; e++)
                if (strncmp(*e, name, n) == 0 && (*e)[n] == '=')
                        OPENSSL_cleanse(*e + n + 1, strlen(*e + n + 1));
        (void) unsetenv(name);
}

static void on_app_event(const char *tenant, const char *what, int r, void *userdata) {
        (void) userdata;
        if (r < 0 && tenant)
                kh_log_ctx(KH_LOG_ERROR, tenant, NULL, "tenant %s: %s: %s", tenant, what,
                           kh_strerror(r));
        else if (r < 0)
                kh_log_error("%s: %s", what, kh_strerror(r));
        else if (tenant)
                kh_log_ctx(KH_LOG_INFO, tenant, NULL, "tenant %s: %s", tenant, what);
        else
                kh_log_info("%s", what);
}

static int write_port_file(const char *path, uint16_t port) {
        char text[8];
        int n = snprintf(text, sizeof(text), "%u\n", port);

        return kh_file_write_atomic(AT_FDCWD, path, text, (size_t) n, 0644, 0);
}

/* How often the signal thread looks at readiness while it waits for a signal. */
#define READINESS_TICK_MS 100

/* What systemd is told (notify.h): READY=1 the first time /health would answer 200, and a
 * STATUS= line each time the reason changes (sealed, an issuer without keys, a full disk).
 * The signal thread polls: readiness changes on other threads (issuer retries, unseal,
 * writes), and a look is a few atomic loads. */
struct readiness {
        struct kh_app *app;
        bool ready_sent;
        char status[256];
};

static void readiness_update(struct readiness *rd) {
        struct kh_health h = kh_app_health(rd->app);
        const struct kh_tenant *waiting = kh_app_issuer_waiting(rd->app);
        char status[256], message[300];

        if (h.ready)
                (void) snprintf(status, sizeof(status), "serving");
        else if (kh_app_sealed(rd->app))
                (void) snprintf(status, sizeof(status), "sealed: waiting for keyhold unseal");
        else if (waiting)
                (void) snprintf(status, sizeof(status),
                                "issuer of tenant %s unreachable: no signing keys yet, retrying",
                                waiting->id);
        else
                (void) snprintf(status, sizeof(status), "not ready: %s", h.reason);
        if (strcmp(status, rd->status) == 0)
                return;
        (void) snprintf(message, sizeof(message), "%sSTATUS=%s",
                        h.ready && !rd->ready_sent ? "READY=1\n" : "", status);
        kh_notify(message);
        rd->ready_sent |= h.ready;
        memcpy(rd->status, status, sizeof(status));
}

struct signal_ctx {
        sigset_t set;
        struct kh_workers *workers;
        struct readiness readiness;
        atomic_bool ended;     /* the loops ended on their own: the wake-up is ours */
        atomic_bool stopping;  /* STOPPING=1 sent */
};

static void *signal_thread(void *userdata) {
        struct signal_ctx *s = userdata;
        const struct timespec tick = { .tv_nsec = READINESS_TICK_MS * 1000 * 1000 };
        int sig;

        for (;;) {
                sig = sigtimedwait(&s->set, NULL, &tick);
                if (sig >= 0)
                        break;
                if (errno != EAGAIN && errno != EINTR)
                        return NULL;
                readiness_update(&s->readiness);
        }
        if (atomic_load(&s->ended))
                return NULL;
        kh_log_info("received %s, stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
        kh_notify("STOPPING=1\nSTATUS=stopping");
        atomic_store(&s->stopping, true);
        kh_workers_stop(s->workers);
        return NULL;
}

/* What each worker thread runs around its loop: the HTTP server's listeners and
 * connections, and the worker's place among the readers of the tenant key snapshot. */
struct worker_ctx {
        struct kh_http_server *server;
        struct kh_keyring *keyring;
};

static int worker_start(unsigned i, void *userdata) {
        struct worker_ctx *c = userdata;

        kh_keyring_online(c->keyring, i);
        return kh_http_worker_open(c->server, i);
}

static void worker_pass(unsigned i, void *userdata) {
        struct worker_ctx *c = userdata;

        kh_http_worker_pass(c->server, i);
        kh_keyring_quiescent(c->keyring, i);  /* no request of this pass is in a handler */
}

static bool worker_stop(unsigned i, void *userdata) {
        struct worker_ctx *c = userdata;
        bool idle = kh_http_worker_close(c->server, i);

        kh_keyring_offline(c->keyring, i);
        return idle;
}

static const struct kh_worker_hooks worker_hooks = {
        .start = worker_start, .pass = worker_pass, .stop = worker_stop,
};

static unsigned worker_count(const struct kh_config_server *cfg) {
        long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
        unsigned n = cfg->threads ? cfg->threads : (unsigned) (ncpu > 0 ? ncpu : 1);

        return n > KH_THREADS_MAX ? KH_THREADS_MAX : n;
}

static void dev_banner(const struct kh_config *cfg, uint16_t port) {
        fprintf(stderr,
                "\n"
                "  ************************************************************************\n"
                "  *  keyholdd DEV MODE: for local trials only, never for real keys.      *\n"
                "  *  Tokens come from a built-in issuer whose key is in the data folder. *\n"
                "  ************************************************************************\n"
                "  data folder : %s\n"
                "  listening on: https://127.0.0.1:%u  (self-signed certificate %s)\n"
                "  get a token : keyhold dev-token --data %s --user <GUID>\n\n",
                cfg->data_dir, port, cfg->server.tls_cert, cfg->data_dir);
}

/* The operator's socket is the target user's, mode 0600 (root can open it anyway), so that
 * the dropped keyholdd can remove it at exit and the unit's keyhold user owns it too. */
static int chown_admin_socket(const struct kh_config *cfg, const struct kh_run_as *who) {
        if (!who->drop || !cfg->server.admin_socket)
                return 0;
        return chown(cfg->server.admin_socket, who->uid, who->gid) < 0 ? -errno : 0;
}

static int run(struct kh_config *cfg, const struct kh_run_as *who) {
        KH_CLEANUP(kh_workers_freep) struct kh_workers *workers = NULL;
        KH_CLEANUP(kh_app_closep) struct kh_app *app = NULL;
        KH_CLEANUP(kh_http_server_freep) struct kh_http_server *server = NULL;
        h2o_evloop_t *evloops[KH_THREADS_MAX];
        struct kh_loop *loops[KH_THREADS_MAX];
        struct signal_ctx sig = { .ended = false, .stopping = false };
        pthread_t sig_thread;
        char err[256] = "";
        unsigned n;
        int r;

        /* The built-in default needs /run/keyhold (the package makes it): without it keyholdd
         * runs without an operator socket rather than not at all. A path set on purpose that
         * cannot be made stops start-up (kh_http_server_new). */
        if (cfg->server.admin_socket &&
            strcmp(cfg->server.admin_socket, KH_ADMIN_SOCKET_DEFAULT) == 0 &&
            access("/run/keyhold", W_OK) != 0) {
                kh_log_warning("no admin socket: /run/keyhold is missing or not writable "
                               "(set [server] admin_socket to serve the operator elsewhere)");
                free(cfg->server.admin_socket);
                cfg->server.admin_socket = NULL;
        }

        r = kh_workers_new(worker_count(&cfg->server), &workers);
        if (r < 0) {
                kh_log_error("cannot create the worker loops: %s", kh_strerror(r));
                return r;
        }
        n = kh_workers_count(workers);
        for (unsigned i = 0; i < n; i++) {
                evloops[i] = kh_workers_evloop(workers, i);
                loops[i] = kh_workers_loop(workers, i);
        }

        kh_notify("STATUS=binding the listeners");
        r = kh_http_server_new(&cfg->server, n, evloops, loops, &server, err, sizeof(err));
        if (r < 0) {
                kh_log_error("%s: %s", err[0] ? err : "cannot start the HTTP server", kh_strerror(r));
                return r;
        }
        r = chown_admin_socket(cfg, who);
        if (r < 0) {
                kh_log_error("cannot give the admin socket %s to user %s: %s",
                             cfg->server.admin_socket, who->name, kh_strerror(r));
                return r;
        }
        /* Sockets bound, TLS key read: nothing more needs root. Before any thread exists
         * and before the key store, the database or a tenant key is opened. */
        r = kh_privileges_drop(who, err, sizeof(err));
        if (r < 0) {
                kh_log_error("%s", err);
                return r;
        }
        if (who->drop)
                kh_log_info("running as user %s (uid %u, gid %u), no capabilities", who->name,
                            (unsigned) who->uid, (unsigned) who->gid);
        else if (geteuid() == 0 && !cfg->dev)
                kh_log_warning("running as root (--allow-root): set [server] user for "
                               "production");

        kh_notify("STATUS=opening the key store and the database");
        r = kh_app_open(cfg, on_app_event, NULL, &app);
        kh_config_wipe_secrets(cfg);   /* the key store has derived its master key */
        if (r < 0) {
                kh_log_error("start-up failed: %s", kh_strerror(r));
                return r;
        }
        r = kh_http_server_attach(server, app, err, sizeof(err));
        if (r < 0) {
                kh_log_error("%s: %s", err[0] ? err : "cannot start the HTTP server", kh_strerror(r));
                return r;
        }

        sig.workers = workers;
        sig.readiness.app = app;
        sigemptyset(&sig.set);
        sigaddset(&sig.set, SIGINT);
        sigaddset(&sig.set, SIGTERM);
        r = -pthread_create(&sig_thread, NULL, signal_thread, &sig);
        if (r < 0)
                return r;

        for (size_t i = 0; i < kh_http_server_n_listeners(server); i++)
                kh_log_info("listening on %s://%s:%u (%u workers)", cfg->server.tls_cert ? "https" : "http",
                            cfg->server.listen[i].host, kh_http_server_port(server, i), n);
        if (cfg->server.admin_socket)
                kh_log_info("admin socket %s", cfg->server.admin_socket);
        if (cfg->dev)
                dev_banner(cfg, kh_http_server_port(server, 0));
        if (cfg->server.port_file) {
                r = write_port_file(cfg->server.port_file, kh_http_server_port(server, 0));
                if (r < 0)
                        kh_log_error("cannot write port file %s: %s", cfg->server.port_file, kh_strerror(r));
        }

        r = kh_workers_run(workers, &worker_hooks,
                           &(struct worker_ctx) { server, kh_app_keyring(app) });
        /* wake the signal thread if the loops ended for another reason */
        atomic_store(&sig.ended, true);
        (void) pthread_kill(sig_thread, SIGTERM);
        (void) pthread_join(sig_thread, NULL);
        if (!atomic_load(&sig.stopping))
                kh_notify("STOPPING=1\nSTATUS=stopping");
        kh_log_info("stopped");
        return r;
}

/* Whether stderr is the journal's stream: systemd sets JOURNAL_STREAM to its "DEV:INODE",
 * and a redirection by the operator (keyholdd 2>file) makes it a different file. */
static bool stderr_is_journal(void) {
        const char *v = getenv("JOURNAL_STREAM"), *colon;
        uint64_t dev, ino;
        struct stat st;

        if (!v || !(colon = strchr(v, ':')) || fstat(STDERR_FILENO, &st) < 0)
                return false;
        if (kh_parse_u64(v, (size_t) (colon - v), UINT64_MAX, &dev) < 0 ||
            kh_parse_u64(colon + 1, strlen(colon + 1), UINT64_MAX, &ino) < 0)
                return false;
        return (uint64_t) st.st_dev == dev && (uint64_t) st.st_ino == ino;
}

int main(int argc, char **argv) {
        KH_CLEANUP(kh_config_freep) struct kh_config *cfg = NULL;
        struct kh_config_error cerr = { 0 };
        struct options o = { 0 };
        struct kh_run_as who;
        char err[512];
        sigset_t set;
        int r;

        if (parse_args(argc, argv, &o) < 0)
                return 2;
        if (o.verbose)
                kh_log_set_level(KH_LOG_DEBUG);

        /* Block the stop signals before any thread exists, so only sigwait sees them. */
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        (void) pthread_sigmask(SIG_BLOCK, &set, NULL);
        (void) signal(SIGPIPE, SIG_IGN);

        harden_process();
        json_set_alloc_funcs(malloc, wiping_free);

        r = o.dev ? kh_config_dev(o.data ? o.data : KH_DEV_DATA_DEFAULT, environ, &cfg, &cerr)
                  : kh_config_load(o.config, environ, &cfg, &cerr);
        if (r < 0) {
                if (r == -EINVAL && cerr.line)
                        fprintf(stderr, "keyholdd: %s (line %u): %s\n", cerr.key, cerr.line, cerr.reason);
                else if (r == -EINVAL)
                        fprintf(stderr, "keyholdd: %s: %s\n", cerr.key, cerr.reason);
                else
                        fprintf(stderr, "keyholdd: cannot read configuration %s: %s\n",
                                o.config ? o.config : "(dev)", kh_strerror(r));
                return 1;
        }
        forget_env_secret("KEYHOLD_KEYSTORE_PASSPHRASE");
        forget_env_secret("KEYHOLD_STORAGE_PASSWORD");
        cfg->sign_unsigned_deks = o.sign_unsigned_deks;
        if (o.check) {
                printf("keyholdd: configuration OK (%zu tenant%s)\n", cfg->n_tenants,
                       cfg->n_tenants == 1 ? "" : "s");
                return 0;
        }
        kh_log_set_format(strcmp(cfg->server.log_format, "json") == 0 ? KH_LOG_JSON : KH_LOG_TEXT);
        kh_log_set_journal(stderr_is_journal());
        r = kh_privileges_plan(cfg->server.user, o.allow_root || cfg->dev, &who, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "keyholdd: %s\n", err);
                return 1;
        }
        if (cfg->dev) {
                const char *what = "";
                r = kh_dev_prepare(cfg, &what);
                if (r < 0) {
                        fprintf(stderr, "keyholdd: dev mode: %s: %s\n", what, kh_strerror(r));
                        return 1;
                }
        }

        r = run(cfg, &who);
        return r < 0 ? 1 : 0;
}
