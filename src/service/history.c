#include "history.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errors.h"
#include "common/parse.h"
#include "service/service-internal.h"

/* ---- the cursor ---- */

static int cursor_seq(const char *s, size_t len, uint64_t *ret) {
        if (len == 0 || len > 20 || kh_parse_u64(s, len, INT64_MAX, ret) < 0 || *ret == 0)
                return -KH_E_INVALID_PARAMETER;
        return 0;
}

/* "I_SEQ": chain I (its index among the tenant's chains) from below SEQ. */
static int cursor_entry(const char *s, size_t len, size_t n, uint64_t *before) {
        const char *sep = memchr(s, '_', len);
        uint64_t i, seq;

        if (!sep || sep == s || (s[0] == '0' && sep - s > 1) ||
            kh_parse_u64(s, (size_t) (sep - s), n - 1, &i) < 0 ||
            cursor_seq(sep + 1, len - (size_t) (sep - s) - 1, &seq) < 0)
                return -KH_E_INVALID_PARAMETER;
        if (before[i])
                return -KH_E_INVALID_PARAMETER; /* named twice */
        before[i] = seq;
        return 0;
}

int kh_history_cursor_parse(const char *text, size_t len, size_t n, uint64_t *before) {
        const char *p = text, *end = text + len;

        if (n == 0 || len == 0 || len > KH_HISTORY_CURSOR_MAX)
                return -KH_E_INVALID_PARAMETER;
        memset(before, 0, n * sizeof(*before));
        if (!memchr(text, '_', len))
                return cursor_seq(text, len, &before[0]);
        for (;;) {
                const char *dot = memchr(p, '.', (size_t) (end - p));
                const char *entry_end = dot ? dot : end;
                int r = cursor_entry(p, (size_t) (entry_end - p), n, before);

                if (r < 0)
                        return r;
                if (!dot)
                        return 0;
                p = dot + 1;
        }
}

int kh_history_cursor_format(size_t n, const uint64_t *before, struct kh_buf *out) {
        bool others = false, first = true;
        char seq[24], entry[48];
        int r = 0;

        for (size_t i = 1; i < n; i++)
                others = others || before[i];
        if (!others) {
                if (!before[0])
                        return 0;
                (void) snprintf(seq, sizeof(seq), "%" PRIu64, before[0]);
                return kh_buf_append_str(out, seq);
        }
        for (size_t i = 0; r >= 0 && i < n; i++) {
                if (!before[i])
                        continue;
                (void) snprintf(entry, sizeof(entry), "%s%zu_%" PRIu64, first ? "" : ".", i,
                                before[i]);
                r = kh_buf_append_str(out, entry);
                first = false;
        }
        return r;
}

/* ---- one chain ---- */

#define HISTORY_FULL 1

struct chain_read {
        const char *chain_id;
        const char *replica;
        size_t chain;
        const char *sub;
        uint64_t before;                 /* 0: from the newest */
        size_t limit;
        struct kh_history_event *ev;
        size_t n;
        /* matches of the block being read, ascending: taken newest first */
        struct kh_history_event block[64];
        size_t n_block;
        bool more;
};

static const char *history_action(const char *action, const char *outcome) {
        static const char *const actions[] = { "read", "create", "replace" };

        if (strcmp(action, "refused") == 0)
                return "refused";
        for (size_t i = 0; i < KH_ELEMENTSOF(actions); i++)
                if (strcmp(action, actions[i]) == 0)
                        return strcmp(outcome, "ok") == 0 ? actions[i] : "refused";
        return NULL;
}

static void history_take(struct chain_read *c) {
        while (c->n_block > 0) {
                if (c->n == c->limit) {
                        c->more = true;
                        c->n_block = 0;
                        return;
                }
                c->ev[c->n++] = c->block[--c->n_block];
        }
}

static int history_record(const struct kh_audit_record *rec, int64_t time_ms, void *userdata) {
        struct chain_read *c = userdata;
        struct kh_history_event *e;
        const char *action;

        if (c->before && rec->seq >= c->before)
                return 0;
        if (strcmp(rec->target, c->sub) != 0)
                return 0;
        action = history_action(rec->action, rec->outcome);
        if (!action)
                return 0;
        if (c->n_block == KH_ELEMENTSOF(c->block)) {
                /* keep the newest of the block: drop its oldest match */
                memmove(&c->block[0], &c->block[1], (c->n_block - 1) * sizeof(c->block[0]));
                c->n_block--;
                c->more = true;
        }
        e = &c->block[c->n_block++];
        *e = (struct kh_history_event) { .seq = rec->seq, .time_ms = time_ms,
                                         .key_version = rec->key_version, .count = rec->count,
                                         .chain = c->chain };
        memcpy(e->time, rec->time, sizeof(e->time));
        KH_AUDIT_SET(e->replica, c->replica);
        KH_AUDIT_SET(e->action, action);
        KH_AUDIT_SET(e->outcome, rec->outcome);
        KH_AUDIT_SET(e->client, rec->client);
        KH_AUDIT_SET(e->request_id, rec->request_id);
        return 0;
}

static int history_block(const struct kh_store_audit_block *b, void *userdata) {
        struct chain_read *c = userdata;
        int r;

        c->n_block = 0;
        r = kh_audit_block_each(b, c->chain_id, history_record, c);
        if (r != 0)
                return r;
        history_take(c);
        return c->more ? HISTORY_FULL : 0;
}

/* ---- every chain, merged ---- */

/* What one chain gave to a page. */
struct chain_state {
        uint64_t before;                 /* the cursor's: 0 done, UINT64_MAX from the newest */
        uint64_t newest;                 /* seq of its newest event read (0: none) */
        bool more;                       /* events beyond those read */
        size_t n;                        /* events read */
};

struct history {
        char names_buf[KH_STORE_META_VALUE_MAX + 1];
        const char *names[KH_HISTORY_CHAINS_MAX];
        size_t n_chains;
        struct chain_state chains[KH_HISTORY_CHAINS_MAX];
        struct chain_read read;
        struct kh_history_event scratch[KH_HISTORY_MAX];
        struct kh_history_event merged[KH_HISTORY_MAX];
        uint64_t before[KH_HISTORY_CHAINS_MAX];  /* the cursor's, then the next one's */
        size_t taken[KH_HISTORY_CHAINS_MAX];     /* events of each chain on the page */
        uint64_t oldest[KH_HISTORY_CHAINS_MAX];  /* seq of each chain's last one there */
};

/* The tenant's chains: the unnamed replica's, then the named ones in the meta row's order
 * (names are only ever added to it, so a cursor's chains stay). */
static int history_chains(struct kh_service *svc, struct history *h) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf list = { 0 };
        int r;

        kh_buf_init(&list, KH_STORE_META_VALUE_MAX, false);
        r = kh_audit_replicas(svc->store, &list);
        if (r < 0)
                return r;
        if (list.len)
                memcpy(h->names_buf, list.data, list.len);
        h->names_buf[list.len] = '\0';
        h->names[0] = "";
        h->n_chains = 1;
        for (char *p = h->names_buf; *p && h->n_chains < KH_HISTORY_CHAINS_MAX;) {
                char *sp = strchr(p, ' ');

                if (sp)
                        *sp = '\0';
                h->names[h->n_chains++] = p; /* even a bad one: it keeps the numbers */
                if (!sp)
                        break;
                p = sp + 1;
        }
        return 0;
}

/* Whether a comes before b on a page: newer, then the greater replica name, then seq. */
static bool history_first(const struct kh_history_event *a, const struct kh_history_event *b) {
        int c;

        if (a->time_ms != b->time_ms)
                return a->time_ms > b->time_ms;
        c = strcmp(a->replica, b->replica);
        if (c != 0)
                return c > 0;
        return a->seq > b->seq;
}

/* Merges the chain just read (h->scratch) into the page so far (ev[0..*n)), keeping the
 * first limit. Each chain's events stay in their chain's order, so what a chain gave to the
 * page is always its newest ones read: the cursor only has to remember where they end. */
static void history_merge(struct history *h, struct kh_history_event *ev, size_t *n,
                          size_t limit) {
        size_t i = 0, j = 0, k = 0;

        while (k < limit && (i < *n || j < h->read.n)) {
                if (j == h->read.n || (i < *n && history_first(&ev[i], &h->scratch[j])))
                        h->merged[k++] = ev[i++];
                else
                        h->merged[k++] = h->scratch[j++];
        }
        memcpy(ev, h->merged, k * sizeof(*ev));
        *n = k;
}

/* Where each chain's next page starts, from what the page took of it; returns how many of
 * ev[0..n) the page keeps. A chain read short of limit that has more (a block held more of
 * the member's events than chain_read keeps: its older ones wait) ends the page at its last
 * event read, as a k-way merge waits for each input: what it has not read may be newer than
 * other chains' events further down. */
static size_t history_next(struct history *h, const struct kh_history_event *ev, size_t n) {
        size_t *taken = h->taken;
        uint64_t *oldest = h->oldest, *before = h->before;

        for (size_t i = 0; i < n; i++) {
                size_t c = ev[i].chain;

                taken[c]++;
                oldest[c] = ev[i].seq; /* a chain's events come in descending seq */
                if (h->chains[c].more && taken[c] == h->chains[c].n) {
                        n = i + 1;
                        break;
                }
        }
        for (size_t i = 0; i < h->n_chains; i++) {
                const struct chain_state *c = &h->chains[i];

                if (c->before == 0 || (c->n == 0 && !c->more))
                        before[i] = 0;
                else if (taken[i] == 0)
                        /* none made the page: its next starts above its newest read, so that
                         * an event appended since does not come up under older pages */
                        before[i] = c->newest + 1;
                else if (taken[i] < c->n || c->more)
                        before[i] = oldest[i];
                else
                        before[i] = 0;
        }
        return n;
}

int kh_audit_history(struct kh_service *svc, const struct kh_tenant *t, const char *sub,
                     const char *cursor, size_t len, size_t limit, struct kh_history_event *ev,
                     size_t *ret_n, struct kh_buf *next) {
        char id[KH_AUDIT_CHAIN_ID_MAX + 1];
        struct history *h;
        size_t n = 0;
        int r;

        *ret_n = 0;
        if (limit == 0 || limit > KH_HISTORY_MAX || !sub[0])
                return -EINVAL;
        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        r = history_chains(svc, h);
        if (r >= 0 && cursor)
                r = kh_history_cursor_parse(cursor, len, h->n_chains, h->before);
        for (size_t i = 0; r >= 0 && i < h->n_chains; i++) {
                struct chain_state *c = &h->chains[i];

                c->before = cursor ? h->before[i] : UINT64_MAX;
                if (i > 0 && !kh_audit_replica_is_valid(h->names[i]))
                        c->before = 0;   /* no chain of the store's can have that name */
                if (c->before == 0)
                        continue;
                kh_audit_chain_store_id(t->id, h->names[i], id);
                h->read = (struct chain_read) {
                        .chain_id = id, .replica = h->names[i], .chain = i, .sub = sub,
                        .before = c->before == UINT64_MAX ? 0 : c->before, .limit = limit,
                        .ev = h->scratch };
                r = kh_store_audit_scan(svc->store, id,
                                        c->before == UINT64_MAX ? INT64_MAX : c->before - 1,
                                        true, history_block, &h->read);
                if (r < 0)
                        break;
                r = 0;
                c->n = h->read.n;
                c->more = h->read.more;
                c->newest = h->read.n ? h->scratch[0].seq : 0;
                history_merge(h, ev, &n, limit);
        }
        if (r >= 0) {
                n = history_next(h, ev, n);
                r = kh_history_cursor_format(h->n_chains, h->before, next);
        }
        *ret_n = r >= 0 ? n : 0;
        free(h);
        return r < 0 ? r : 0;
}
