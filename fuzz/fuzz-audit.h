/* Shared by the audit fuzz targets: whether two records are the same in every field the
 * hash covers, the hash itself, the signature and the replica (NULL and "" are the same:
 * the unnamed one). */
#pragma once

#include <stdbool.h>
#include <string.h>

#include "audit/record.h"

static inline bool same_record(const struct kh_audit_record *x, const struct kh_audit_record *y) {
        return x->seq == y->seq && strcmp(x->time, y->time) == 0 &&
               strcmp(x->tenant, y->tenant) == 0 && strcmp(x->actor, y->actor) == 0 &&
               strcmp(x->action, y->action) == 0 && strcmp(x->target, y->target) == 0 &&
               strcmp(x->outcome, y->outcome) == 0 && x->key_version == y->key_version &&
               strcmp(x->request_id, y->request_id) == 0 && strcmp(x->client, y->client) == 0 &&
               x->count == y->count && memcmp(x->prev_hash, y->prev_hash, KH_AUDIT_HASH_LEN) == 0 &&
               memcmp(x->hash, y->hash, KH_AUDIT_HASH_LEN) == 0 &&
               x->signature_len == y->signature_len &&
               (x->signature == NULL) == (y->signature == NULL) &&
               (!x->signature_len || memcmp(x->signature, y->signature, x->signature_len) == 0) &&
               strcmp(x->replica ? x->replica : "", y->replica ? y->replica : "") == 0;
}
