/* Importing member keys from another key server (keyhold import, docs/import.md): the
 * importer decrypts each key where it came from and hands it to keyholdd, which seals it
 * under the tenant's envelope like any write. A batch is idempotent: a key already stored
 * with the same value is skipped, one stored with another value is a conflict (replaced only
 * when asked), so an interrupted import can simply run again. The verification pass compares
 * without writing, inside the server, so no key is ever sent back. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/limits.h"
#include "common/parse.h"
#include "common/secret.h"
#include "service/service.h"

enum kh_import_status {
        KH_IMPORT_IMPORTED,    /* stored: there was none */
        KH_IMPORT_SKIPPED,     /* the same key is stored already */
        KH_IMPORT_CONFLICT,    /* another key is stored; left as it is */
        KH_IMPORT_OVERWRITTEN, /* another key was stored; replaced (overwrite) */
        KH_IMPORT_MATCH,       /* verify: the stored key is this one */
        KH_IMPORT_MISMATCH,    /* verify: another key is stored */
        KH_IMPORT_MISSING,     /* verify: no key is stored */
        KH_IMPORT_FAILED,      /* the stored key does not open (error says why) */
};

/* The status's name in answers and the CLI's summary ("imported", "skipped", ...). */
const char *kh_import_status_name(enum kh_import_status s);

struct kh_import_entry {
        char user[KH_GUID_BUF];      /* canonical lower-case GUID */
        struct kh_secret *key;       /* 32 bytes; owned by the caller */
        enum kh_import_status status; /* out */
        int error;                   /* out: with KH_IMPORT_FAILED, -KH_E_KEY_REVOKED or
                                      * -KH_E_INTEGRITY */
        uint32_t key_version;        /* out: the version the stored key is sealed under */
};

/**
 * kh_import_apply() - stores entries[0..n) for tenant t, each as its status says.
 * Runs inside the group commit's transaction (an op's apply): either every entry's write
 * happens or none (a savepoint), so the caller can report the batch as it is. Entries must
 * name distinct users. Returns 0 (each entry has its status), -KH_E_SEALED, -KH_E_NOT_READY,
 * -KH_E_KEY_REVOKED (the kill switch), -EIO or -ENOMEM.
 */
KH_MUST_CHECK int kh_import_apply(struct kh_service *svc, const struct kh_tenant *t,
                                  struct kh_import_entry *entries, size_t n, bool overwrite);

/* Compares entries[0..n) with what t stores, without writing: MATCH, MISMATCH, MISSING or
 * FAILED each. Returns 0, -KH_E_SEALED, -EIO or -ENOMEM. */
KH_MUST_CHECK int kh_import_verify(struct kh_service *svc, const struct kh_tenant *t,
                                   struct kh_import_entry *entries, size_t n);
