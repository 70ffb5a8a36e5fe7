/* A member's own key events (GET /user-keys/history, docs/admin-api.md "Member access
 * history"): read from every chain of the tenant, the unnamed replica's and each named
 * replica's (docs/audit.md "Replicas"), merged newest first, with a cursor that remembers
 * where each chain's next page starts. Reads only; on the worker's loop, through the
 * worker's own database connection. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "audit/record.h"
#include "common/buf.h"
#include "common/limits.h"
#include "service/app.h"
#include "service/audit.h"
#include "service/service.h"
#include "store/store.h"

#define KH_HISTORY_MAX     500
#define KH_HISTORY_DEFAULT 50

/* The chains of a tenant a cursor can name: the unnamed replica's and every name the meta
 * row of the replicas can hold (one byte and a space each). */
#define KH_HISTORY_CHAINS_MAX (1 + KH_STORE_META_VALUE_MAX / 2)

/* Bytes of a cursor taken: what fits in a request path (KH_PATH_MAX) beside the route. A
 * cursor holds "I_SEQ." for each chain with events left, some 10 to 15 bytes: about 60
 * chains fit, twice the replicas one database's meta row names with names of 32 bytes. */
#define KH_HISTORY_CURSOR_MAX KH_PATH_MAX

/* One of a member's key events. */
struct kh_history_event {
        uint64_t seq;                    /* in its chain */
        int64_t time_ms;                 /* unix milliseconds: what the chains merge by */
        char time[KH_AUDIT_TIME_LEN + 1];
        char replica[KH_AUDIT_REPLICA_MAX + 1]; /* the chain's: "" the unnamed replica's */
        char action[16];                 /* "read", "create", "replace" or "refused" */
        char outcome[KH_AUDIT_NAME_MAX + 1];
        uint32_t key_version;
        uint32_t count;                  /* > 1 for refusals of one second, gathered */
        char client[KH_AUDIT_CLIENT_MAX + 1];
        char request_id[KH_REQUEST_ID_LEN + 1];
        size_t chain;                    /* which of the tenant's chains (cursor order) */
};

/**
 * kh_history_cursor_parse() - a cursor's text into where each of a tenant's n chains
 * (1..KH_HISTORY_CHAINS_MAX) has its next page.
 * The chains are numbered: 0 the unnamed replica's, then the named replicas in the order
 * kh_audit_replicas() lists them (names are only ever added to that list, so a number keeps
 * its chain). The text is either SEQ (decimal: chain 0 only, the form a server without
 * named replicas always gave) or entries I_SEQ (chain I, no leading zero) joined by '.'.
 * before[i] out: the events of chain i wanted are those below it; 0 for a chain the cursor
 * leaves out (done: its remaining events were on earlier pages, or it began after them).
 * A total function over untrusted bytes: returns 0, or -KH_E_INVALID_PARAMETER for
 * anything else (a chain the tenant has not, one twice, a seq of 0 or beyond INT64_MAX, a
 * stray byte).
 */
KH_MUST_CHECK int kh_history_cursor_parse(const char *text, size_t len, size_t n,
                                          uint64_t *before);

/* The cursor of before[0..n) (as above) appended to out: nothing when every chain is done,
 * SEQ when only chain 0 is left. Returns 0 or -ENOMEM. */
KH_MUST_CHECK int kh_history_cursor_format(size_t n, const uint64_t *before, struct kh_buf *out);

/**
 * kh_audit_history() - the key events of member @sub in every chain of tenant t, newest
 * first: each chain's in descending seq, the chains merged by time, then replica name, then
 * seq, all descending (a chain's times need not follow its seqs: a queued read may be
 * committed after a later write).
 * @cursor: a cursor from an earlier answer (len bytes), or NULL for the first page.
 * @limit:  at most this many events (1..KH_HISTORY_MAX) into @ev.
 * @next:   the cursor of the next page, appended (nothing when there is none).
 * Each chain is read through the store's index on (chain, seq), newest block first, and
 * only as far as it can contribute to this page. Returns 0, -KH_E_INVALID_PARAMETER (a bad
 * cursor), -EIO, -KH_E_INTEGRITY or -ENOMEM.
 */
KH_MUST_CHECK int kh_audit_history(struct kh_service *svc, const struct kh_tenant *t,
                                   const char *sub, const char *cursor, size_t len,
                                   size_t limit, struct kh_history_event *ev, size_t *ret_n,
                                   struct kh_buf *next);
