/* What the admin routes and a member's history read: a tenant's key versions with their use,
 * the audit chains page by page, and a member's own key events. Reads only; on the worker's
 * loop, through the worker's own database connection. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "audit/record.h"
#include "common/buf.h"
#include "service/audit.h"
#include "service/service.h"
#include "service/keyring.h"

struct kh_key_status {
        uint32_t version;
        enum kh_key_state state;
        unsigned rsa_bits;               /* 0: not known (the version has no DEK loaded) */
        int64_t created;                 /* unix seconds */
        uint64_t records;                /* sealed under it now */
        uint64_t encrypts, decrypts;     /* since it was created (durable, see audit.h) */
};

struct kh_keys_status {
        uint32_t active;                 /* 0: none */
        size_t n;
        struct kh_key_status versions[KH_KEY_VERSIONS_MAX]; /* ascending */
};

/* The key versions of tenant t. Returns 0, -EIO or -KH_E_INTEGRITY. */
KH_MUST_CHECK int kh_admin_keys_status(struct kh_service *svc, const struct kh_tenant *t,
                                       struct kh_keys_status *ret);

/* Tenant t's last key store migration (ksmigrate.h) into *ret. Returns 0, -ENOENT (none),
 * -KH_E_INTEGRITY or -EIO. */
struct kh_ksmigrate_marker;
KH_MUST_CHECK int kh_admin_keystore_migration(struct kh_service *svc, const struct kh_tenant *t,
                                              struct kh_ksmigrate_marker *ret);

#define KH_AUDIT_PAGE_MAX      10000     /* records per page of GET .../audit */
#define KH_AUDIT_PAGE_DEFAULT  1000

struct kh_audit_page {
        size_t n;                        /* records returned */
        uint64_t next;                   /* the seq to ask for next */
        uint64_t head;                   /* the chain's last seq (0: empty) */
};

/**
 * kh_audit_read() - records of a chain (a tenant index or KH_AUDIT_SERVER_CHAIN) of
 * @replica (NULL or "": the unnamed replica's, the chain of a single server), in
 * ascending seq: from @since on, or, when @last is not 0, the last @last ones; at most
 * @limit (1..KH_AUDIT_PAGE_MAX). Each is appended to @lines as its export line (JSON, with
 * its newline; a named replica's with its "replica" member). Returns 0, -EIO,
 * -KH_E_INTEGRITY (a stored block is damaged) or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_read(struct kh_service *svc, uint32_t chain, const char *replica,
                                uint64_t since,
                                uint64_t last, size_t limit, struct kh_buf *lines,
                                struct kh_audit_page *ret);

/* The named replicas whose audit chains the database holds, space-separated, appended to
 * out (kh_audit_replicas()). Returns 0 or the store's error. */
KH_MUST_CHECK int kh_audit_replica_names(struct kh_service *svc, struct kh_buf *out);
