/* keyhold's configuration: an INI file (libinih) whose every key can be overridden from the
 * environment as KEYHOLD_<SECTION>_<KEY> (section upper-cased, every non-alphanumeric
 * character as '_': [tenant.default] issuer -> KEYHOLD_TENANT_DEFAULT_ISSUER), turned into
 * plain structs. Only daemon/ and cli/ call this module; they pass the structs down.
 * Names are a contract (DESIGN.md "Running it"): add keys, never rename them. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/limits.h"

struct kh_secret;

struct kh_config_listen {
        char host[64];   /* numeric IPv4/IPv6 address or "localhost" */
        uint16_t port;   /* 0 = pick a free port (tests) */
};

struct kh_config_server {
        struct kh_config_listen listen[KH_LISTEN_MAX];
        size_t n_listen;
        char *tls_cert;             /* PEM file; NULL = plain HTTP (loopback or behind proxy) */
        char *tls_key;
        unsigned threads;           /* 0 = one event loop per core */
        char *cors_origins[KH_CORS_ORIGINS_MAX]; /* exact origins, trailing '/' removed */
        size_t n_cors_origins;
        bool behind_tls_proxy;      /* allows plain HTTP on a non-loopback address */
        char *port_file;            /* optional: write the bound port(s) here once listening */
        unsigned max_connections;   /* per worker; it stops accepting while it has this many */
        char *admin_socket;         /* the operator's Unix socket (HTTP/1.1, no TLS); empty = none */
        struct kh_config_listen metrics_listen[KH_LISTEN_MAX]; /* plain HTTP /metrics only */
        size_t n_metrics_listen;
        char *user;                 /* started as root: the user to drop to once the sockets
                                     * are bound (daemon/privileges.h); NULL = unset */
        char *log_format;           /* "text" | "json" (one object per line) */
        char *replica;              /* this replica's name among those sharing a database: its
                                     * audit chains' (docs/audit.md "Replicas"); NULL = the
                                     * unnamed one, whose chains a single server has */
};

struct kh_config_storage {
        char *driver;               /* "sqlite" | "postgresql" */
        char *path;                 /* sqlite database file */
        char *url;                  /* postgresql: a libpq connection URI or key=value string */
        char *password_file;        /* postgresql: the password, less one trailing newline ... */
        char *password;             /* ... or the password itself (only from
                                     * KEYHOLD_STORAGE_PASSWORD) */
};

struct kh_config_keystore {
        char *driver;               /* "file" | "pkcs11" */
        char *path;                 /* file key store directory */
        char *master_key_file;      /* 32 random bytes, mode 0600 ... */
        char *passphrase;           /* ... or a passphrase (only from KEYHOLD_KEYSTORE_PASSPHRASE) */
        const struct kh_secret *master_key; /* ... or the key itself (unseal: never from the
                                             * file or the environment; borrowed) */
        const struct kh_secret *passphrase_secret; /* ... or the passphrase, NUL-terminated,
                                                    * in locked memory (unseal; borrowed) */
        unsigned rsa_bits;          /* tenant key size for new versions; default 3072 */
        /* driver = pkcs11 (keystore/pkcs11/pkcs11-keystore.c) */
        char *module;               /* the PKCS#11 library */
        char *token_label;          /* the token, by label ... */
        unsigned slot;              /* ... or by slot number, when has_slot */
        bool has_slot;              /* slot was set (in the file or the environment) */
        char *pin_file;             /* the user PIN: its first line ... */
        char *pin;                  /* ... or KEYHOLD_KEYSTORE_PIN (only from the environment) */
        char *key_label_prefix;     /* CKA_LABEL prefix of keyhold's objects; "keyhold-" */
        bool cache_deks_while_unavailable; /* while the HSM is gone, keep serving with the
                                            * DEKs in memory (false: drop them, and every key
                                            * route answers 503 keystore_unavailable) */
        unsigned threads;           /* threads that use the store at once (set by keyholdd, never
                                     * by the file): the pkcs11 store opens up to this many
                                     * sessions, as they are needed; 0:
                                     * KH_KEYSTORE_THREADS_DEFAULT (keystore.h) */
};

struct kh_config_jobs {
        unsigned reencrypt_rate;     /* records per second a re-encryption job may move; 0 = no
                                      * limit (it still yields to requests: a low priority) */
};

struct kh_config_audit {
        unsigned checkpoint_records; /* a signed checkpoint after this many records ... */
        unsigned checkpoint_seconds; /* ... or this many seconds, whichever comes first */
        unsigned keep_days;          /* 0 = keep everything */
        bool log_reads;              /* a record for every key read (false: writes, admin
                                      * actions and refusals only) */
};

/* CLAIM:VALUE: a token matches when its claim CLAIM equals VALUE or is an array holding
 * VALUE (DESIGN.md "Administration": role:keyhold-admin, groups:security, sub:<guid>). */
struct kh_config_matcher {
        char *claim;
        char *value;
};

struct kh_config_tenant {
        char id[KH_TENANT_ID_MAX + 1]; /* from the section name [tenant.<id>] */
        char *issuer;               /* authority URL: discovery at <issuer>/.well-known/openid-configuration */
        char *issuer_ca;            /* optional extra CA file for discovery/JWKS over HTTPS */
        char *audience;             /* optional: required "aud" value */
        struct kh_config_matcher admins[KH_ADMIN_MATCHERS_MAX]; /* who administers the tenant */
        size_t n_admins;
        char *jwks_file;            /* optional: keys from this local JWKS file, no discovery;
                                     * then "iss" must equal issuer verbatim */
        char *cors_origins[KH_CORS_ORIGINS_MAX]; /* optional, added to [server] cors_origins */
        size_t n_cors_origins;
        char *admin_issuer;         /* optional: a second IdP whose tokens may only administer */
        char *admin_issuer_ca;      /* optional: the only CA trusted for admin_issuer */
        char *console_client_id;    /* optional: the web console's OIDC public client (PKCE)
                                     * at admin_issuer, else at issuer (docs/console.md) */
        unsigned jwks_refresh_s;    /* reload the issuer's keys this often; 0 = on unknown kid */
        bool accept_scope_string;   /* also take "scope" as one space-separated string */
        uint32_t max_token_lifetime_s; /* refuse tokens with exp further ahead than this;
                                        * 0 = no cap; default KH_TOKEN_LIFETIME_DEFAULT_S */
        /* trusted devices (docs/trusted-devices.md) */
        struct kh_config_matcher approvers[KH_ADMIN_MATCHERS_MAX]; /* who may answer
                                     * admin-approval requests; none: the admins */
        size_t n_approvers;
        unsigned approval_quorum;   /* 1, or 2: two different approvers release the key */
        unsigned auth_request_lifetime_s;     /* a member's login request stays valid */
        unsigned admin_request_lifetime_s;    /* an admin-approval request stays pending */
        unsigned approved_request_lifetime_s; /* an approved admin request can be collected */
};

struct kh_config {
        struct kh_config_server server;
        struct kh_config_storage storage;
        struct kh_config_keystore keystore;
        struct kh_config_audit audit;
        struct kh_config_jobs jobs;
        struct kh_config_tenant *tenants; /* tenants[0..n_tenants) */
        size_t n_tenants;
        bool dev;                   /* set by keyholdd --dev, never by the file */
        bool sign_unsigned_deks;    /* set by keyholdd --sign-unsigned-deks, never by the file */
        char *data_dir;             /* dev mode data folder */
};

/* Why a configuration was refused: the exact key and the reason, for --check-config. */
struct kh_config_error {
        char key[128];              /* "section.key" (or "KEYHOLD_..." for the environment) */
        char reason[512];
        unsigned line;              /* line in the file, 0 if not from the file */
};

/**
 * kh_config_load() - parse a configuration file and apply environment overrides.
 * @path:    the INI file; NULL to build from the environment and defaults only.
 * @envp:    environment (NULL-terminated "NAME=value" array) to read KEYHOLD_* from.
 * @ret:     on success a new config; free with kh_config_free().
 * @ret_err: on -EINVAL, which key is wrong and why.
 *
 * Unknown sections or keys, malformed values, missing required keys (storage path,
 * keystore path, a master key or passphrase, at least one tenant with an issuer, TLS cert
 * and key unless plain HTTP is allowed) are all -EINVAL with @ret_err filled. Plain HTTP is
 * allowed only when every listen address is loopback or behind_tls_proxy is true.
 * Returns 0, -EINVAL, -ENOENT (file missing) or -ENOMEM.
 */
KH_MUST_CHECK int kh_config_load(const char *path, char *const *envp, struct kh_config **ret,
                                 struct kh_config_error *ret_err);

/**
 * kh_config_dev() - the configuration of `keyholdd --dev`: listen 127.0.0.1:8443 (port
 * overridable by the environment like any key), TLS cert/key, SQLite database, file key
 * store and master key all under data_dir, one tenant "default" whose issuer is the
 * built-in dev issuer (jwks_file in data_dir). Environment overrides apply.
 * Does not create files. Returns 0, -EINVAL (with ret_err) or -ENOMEM.
 */
KH_MUST_CHECK int kh_config_dev(const char *data_dir, char *const *envp, struct kh_config **ret,
                                struct kh_config_error *ret_err);

/* The largest configuration file kh_config_load() reads; a larger one is -EINVAL. */
#define KH_CONFIG_FILE_MAX (1024 * 1024)

/**
 * kh_config_parse_string() - kh_config_load() on INI text already in memory (the fuzz target
 * and tests use it; kh_config_load() reads the file and calls it).
 * @text:    len bytes of INI text; need not be NUL-terminated; a NUL byte is -EINVAL.
 * @len:     at most KH_CONFIG_FILE_MAX.
 * @envp:    as for kh_config_load(); NULL = no environment.
 * @ret:     on success a new config; free with kh_config_free().
 * @ret_err: on -EINVAL, which key is wrong and why; may be NULL.
 *
 * For a malformed line (or a NUL byte, or a line too long) ret_err->key is the section the
 * line is in ("server", "tenant.x"; empty before any), for a file too large it is empty.
 * Returns 0, -EINVAL or -ENOMEM. Lines are at most 8 KiB with Debian's libinih (whose
 * run-time options this module sets once per process: no multi-line values, heap line
 * buffer), 196 bytes with a stock build.
 */
KH_MUST_CHECK int kh_config_parse_string(const char *text, size_t len, char *const *envp,
                                         struct kh_config **ret,
                                         struct kh_config_error *ret_err);

/* The tenant named id, or NULL. */
const struct kh_config_tenant *kh_config_tenant(const struct kh_config *cfg, const char *id);

struct kh_config *kh_config_free(struct kh_config *cfg); /* wipes the passphrase; NULL-safe */

/* Wipes and drops the secrets cfg holds (the key store passphrase, the PKCS#11 PIN), for once the key store
 * has taken what it needs: they should not outlive their use in the process's memory. */
void kh_config_wipe_secrets(struct kh_config *cfg);
KH_DEFINE_CLEANUP(kh_config_free, struct kh_config *)

#define KH_DEV_ISSUER "https://keyhold.dev.invalid/dev-issuer"

/* [server] admin_socket when the configuration names none; a missing /run/keyhold is not an
 * error for this default (keyholdd runs without the socket and says so). */
#define KH_ADMIN_SOCKET_DEFAULT "/run/keyhold/admin.sock"
#define KH_ADMIN_SOCKET_PATH_MAX 107  /* sun_path holds 108 bytes with the NUL */
