#include "reencrypt.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "common/errors.h"
#include "common/limits.h"
#include "service/app-internal.h"
#include "service/audit.h"
#include "service/record.h"

/* Records per batch: one transaction each. Small enough that a member's write waiting for
 * the database lock waits a few milliseconds at most; large enough that the commit's flush
 * is spread over many records. */
#define BATCH            500
_Static_assert(BATCH <= KH_STORE_MOVES_MAX, "a batch is one kh_store_record_moves() call");
/* How long one transaction of the job may stay open where the store groups commits
 * (kh_store_groups_commits(): SQLite). Every commit by any connection makes every other
 * connection of the process drop its page cache (SQLite notices the changed database and
 * cannot tell which pages changed), so a commit per batch would make every worker re-read
 * its B-tree pages hundreds of times a second; a member's write waits at most this long for
 * the lock instead. On PostgreSQL each batch is a transaction of its own, sent in one round
 * trip (kh_store_record_moves()): a transaction left open by this thread, which runs at idle
 * priority, would hold the write lock for as long as a busy machine keeps it from running,
 * and members' writes gave up after KH_STORE_WAIT_MS. */
#define COMMIT_MS        250
/* The thread runs below the workers: it takes the CPU time they leave (SCHED_IDLE: a worker
 * that wakes up preempts it at once; its share when both want the CPU is a third of a
 * percent, so on a server busy all the time the job slows down rather than the requests).
 * Measured (bench/lifecycle.py, one core shared with the worker): nice 10 kept 0.78 of the
 * idle GET rate during the job, nice 15 0.72 to 0.94 over two runs, SCHED_IDLE 1.0 or more
 * with the million records moved in 7 s. JOB_NICE is the fallback where SCHED_IDLE is
 * refused. */
#define JOB_NICE         19
/* Passes over one version: a pass after the first finds only records a member wrote under
 * the old version from a stale snapshot, or that changed while read. */
#define PASSES_MAX       8
/* The job lease (docs/storage.md, "Several replicas"): a tenant's job runs on the replica
 * that holds its lease in the database, renewed every LEASE_RENEW_MS for LEASE_TTL_MS; another
 * replica takes it over once it expired (its holder died) and resumes from what is left under
 * the archived versions. The others read its progress from the lease every LEASE_POLL_MS. Two holders at
 * once (one paused past its lease) would only do work twice: every move is a compare-and-set. */
#define LEASE_TTL_MS     10000
#define LEASE_RENEW_MS   1000
#define LEASE_POLL_MS    1000

struct row {
        enum kh_record_kind kind;
        char owner[KH_STORE_OWNER_MAX + 1];
        size_t len;
        uint8_t blob[KH_SEALED_MAX];
        bool ok;                         /* sealed anew in sealed[] */
        size_t new_len;
        uint8_t sealed[KH_SEALED_MAX];
};

struct batch {
        size_t n;
        struct row rows[BATCH];
        struct kh_store_move moves[BATCH]; /* the resealed rows, for kh_store_record_moves() */
};

struct tenant_job {
        struct kh_job_progress p;        /* under the job's lock */
        int64_t started_ms, ended_ms;    /* ended: 0 while running */
        /* the job thread's own */
        bool elsewhere;                  /* another replica holds the lease */
        int64_t renewed_ms;              /* monotonic: when this one last renewed it */
        int64_t started_wall_ms;         /* unix ms the run began (in the lease's note) */
};

struct kh_reencrypt {
        struct kh_app *app;
        struct kh_store *store;          /* the thread's own connection */
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;            /* guards wake, stop and every tenant's progress */
        pthread_cond_t cond;
        bool wake, stop;
        bool tx_open;                    /* the thread's connection holds a write transaction */
        int64_t tx_since_ms;
        uint64_t tx_moved;               /* moves in the open transaction, not yet counted */
        struct batch *batch;
        struct kh_buf buf;
        size_t n;
        struct tenant_job tenants[];
};

const char *kh_job_state_name(enum kh_job_state s) {
        switch (s) {
        case KH_JOB_RUNNING:
                return "running";
        case KH_JOB_DONE:
                return "done";
        case KH_JOB_FAILED:
                return "failed";
        case KH_JOB_NONE:
                break;
        }
        return "none";
}

static int64_t now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool stopping(struct kh_reencrypt *job) {
        bool s;

        pthread_mutex_lock(&job->lock);
        s = job->stop;
        pthread_mutex_unlock(&job->lock);
        return s || atomic_load(&job->app->sealed);
}

/* ---- progress ---- */

static void progress_update(struct kh_reencrypt *job, size_t t, const struct kh_job_progress *p) {
        pthread_mutex_lock(&job->lock);
        job->tenants[t].p = *p;
        job->tenants[t].ended_ms = p->state == KH_JOB_RUNNING ? 0 : now_ms();
        pthread_mutex_unlock(&job->lock);
}

void kh_reencrypt_progress(struct kh_reencrypt *job, size_t tenant, struct kh_job_progress *ret) {
        struct tenant_job *tj;
        int64_t elapsed;

        *ret = (struct kh_job_progress) { .state = KH_JOB_NONE, .eta_s = -1 };
        if (!job || tenant >= job->n)
                return;
        tj = &job->tenants[tenant];
        pthread_mutex_lock(&job->lock);
        *ret = tj->p;
        elapsed = (tj->ended_ms ? tj->ended_ms : now_ms()) - tj->started_ms;
        pthread_mutex_unlock(&job->lock);

        ret->eta_s = -1;
        if (ret->state == KH_JOB_NONE)
                return;
        if (elapsed > 0)
                ret->rate = (double) ret->moved * 1000.0 / (double) elapsed;
        if (ret->state == KH_JOB_RUNNING && ret->rate > 0) {
                uint64_t done = ret->moved + ret->skipped + ret->failed;
                uint64_t left = ret->total > done ? ret->total - done : 0;
                ret->eta_s = (int64_t) ((double) left / ret->rate + 0.5);
        } else if (ret->state == KH_JOB_DONE) {
                ret->eta_s = 0;
        }
}

/* ---- the lease ---- */

/* run_tenant()'s and move_version()'s answer: another replica holds the tenant's lease */
#define ELSEWHERE 2

static int64_t wall_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lease_name(struct kh_reencrypt *job, size_t t, char *out, size_t n) {
        (void) snprintf(out, n, "reencrypt.%s", kh_app_tenant_at(job->app, t)->id);
}

/* Takes or renews tenant t's lease until @expires (unix ms; 0 gives it up) with the progress
 * p as its note. The job's connection holds no transaction. Returns 1, 0 (held by another
 * replica) or an error of the store. */
static int lease_put(struct kh_reencrypt *job, size_t t, const struct kh_job_progress *p,
                     int64_t expires) {
        char name[KH_STORE_LEASE_NAME_MAX + 1];
        json_auto_t *doc = NULL;
        char *note = NULL;
        int r;

        lease_name(job, t, name, sizeof(name));
        doc = json_pack("{si sI sI sI sI sI sI sI}", "state", (int) p->state, "target",
                        (json_int_t) p->target, "moved", (json_int_t) p->moved, "skipped",
                        (json_int_t) p->skipped, "failed", (json_int_t) p->failed, "total",
                        (json_int_t) p->total, "started_ms",
                        (json_int_t) job->tenants[t].started_wall_ms, "updated_ms",
                        (json_int_t) wall_ms());
        note = doc ? json_dumps(doc, JSON_COMPACT) : NULL;
        if (!note)
                return -ENOMEM;
        r = strlen(note) <= KH_STORE_LEASE_DATA_MAX
                    ? kh_store_lease_take(job->store, name, job->app->node_id,
                                          kh_app_lease_now(job->app, wall_ms()), expires,
                                          (const uint8_t *) note, strlen(note))
                    : -EOVERFLOW;
        free(note);
        return r;
}

/* A non-negative integer member of the note, or -1. */
static int64_t note_int(const json_t *doc, const char *key) {
        const json_t *v = json_object_get(doc, key);

        return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

/* Shows tenant t's job as the lease's note says, when another replica holds or held it.
 * Returns 1 when another replica holds it now (unexpired), else 0. */
static int lease_mirror(struct kh_reencrypt *job, size_t t) {
        char name[KH_STORE_LEASE_NAME_MAX + 1];
        KH_CLEANUP(kh_buf_freep) struct kh_buf holder = { 0 }, data = { 0 };
        int64_t expires, v[8], now = wall_ms(), mono = now_ms();
        static const char *const keys[8] = { "state", "target", "moved",      "skipped",
                                             "failed", "total", "started_ms", "updated_ms" };
        json_auto_t *doc = NULL;
        bool ok = true;
        int r;

        kh_buf_init(&holder, KH_STORE_LEASE_HOLDER_MAX, false);
        kh_buf_init(&data, KH_STORE_LEASE_DATA_MAX, false);
        lease_name(job, t, name, sizeof(name));
        r = kh_store_lease_get(job->store, name, &holder, &expires, &data);
        if (r < 0)
                return 0;
        if (holder.len == strlen(job->app->node_id) &&
            memcmp(holder.data, job->app->node_id, holder.len) == 0)
                return 0;
        doc = json_loadb((const char *) data.data, data.len, 0, NULL);
        for (size_t i = 0; i < KH_ELEMENTSOF(keys); i++)
                ok = ok && (v[i] = note_int(doc, keys[i])) >= 0;
        if (ok && v[0] <= KH_JOB_FAILED && v[1] <= UINT32_MAX) {
                /* a holder that died left "running": what it did stands, the rest is the
                 * next holder's */
                pthread_mutex_lock(&job->lock);
                job->tenants[t].p = (struct kh_job_progress) {
                        .state = (enum kh_job_state) v[0], .target = (uint32_t) v[1],
                        .moved = (uint64_t) v[2], .skipped = (uint64_t) v[3],
                        .failed = (uint64_t) v[4], .total = (uint64_t) v[5], .eta_s = -1 };
                job->tenants[t].started_ms = mono - (now - v[6]);
                job->tenants[t].ended_ms = v[0] == KH_JOB_RUNNING ? 0 : mono - (now - v[7]);
                pthread_mutex_unlock(&job->lock);
        }
        return expires > now;
}

/* ---- one batch ---- */

static int collect(const struct kh_store_record *rec, void *userdata) {
        struct batch *b = userdata;
        struct row *row = &b->rows[b->n];

        if (b->n == BATCH)
                return -EOVERFLOW;
        row->kind = rec->kind;
        memcpy(row->owner, rec->owner, strlen(rec->owner) + 1);
        memcpy(row->blob, rec->blob, rec->len);
        row->len = rec->len;
        row->ok = false;
        b->n++;
        return 0;
}

/* Seals every row of the batch anew: from @from to @to. Rows that do not open stay !ok. */
static void reseal(struct kh_reencrypt *job, const char *tenant, const struct kh_key_version *from,
                   const struct kh_key_version *to, uint64_t *failed) {
        struct batch *b = job->batch;

        for (size_t i = 0; i < b->n; i++) {
                struct row *row = &b->rows[i];
                KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
                int r;

                r = kh_record_unseal(from->dek, tenant, row->kind, row->owner, from->version,
                                     row->blob, row->len, &pt);
                if (r < 0) {
                        (*failed)++;
                        continue;
                }
                kh_buf_reset(&job->buf);
                r = kh_record_seal(to->dek, tenant, row->kind, row->owner, to->version, pt,
                                   &job->buf);
                if (r < 0 || job->buf.len > sizeof(row->sealed)) {
                        (*failed)++;
                        continue;
                }
                /* ciphertext: nothing here needs wiping (the key was in pt, a secret) */
                memcpy(row->sealed, job->buf.data, job->buf.len);
                row->new_len = job->buf.len;
                row->ok = true;
        }
}

/* Commits the open transaction, if any: its moves count from now on. */
static int tx_commit(struct kh_reencrypt *job, uint64_t *moved) {
        int r;

        if (!job->tx_open)
                return 0;
        job->tx_open = false;
        r = kh_store_tx_commit(job->store);
        if (r < 0) {
                kh_store_tx_rollback(job->store);
                job->tx_moved = 0;
                return r;
        }
        *moved += job->tx_moved;
        job->tx_moved = 0;
        return 0;
}

/* Drops the open transaction's moves (an error, a stop): the records stay where they were,
 * to be found again. */
static void tx_abort(struct kh_reencrypt *job) {
        if (job->tx_open)
                kh_store_tx_rollback(job->store);
        job->tx_open = false;
        job->tx_moved = 0;
}

/* Moves the batch's resealed rows: where the store groups commits, in the open transaction
 * (opening one), committed once it has been open COMMIT_MS; elsewhere in a transaction of
 * their own. */
static int commit_moves(struct kh_reencrypt *job, const char *tenant, uint32_t from, uint32_t to,
                        uint64_t *moved) {
        struct batch *b = job->batch;
        size_t n = 0;
        int r;

        for (size_t i = 0; i < b->n; i++) {
                const struct row *row = &b->rows[i];
                if (row->ok)
                        b->moves[n++] = (struct kh_store_move) {
                                .kind = row->kind, .owner = row->owner, .old = row->blob,
                                .old_len = row->len, .blob = row->sealed, .len = row->new_len };
        }
        if (!job->tx_open && kh_store_groups_commits(job->store)) {
                r = kh_store_tx_begin(job->store);
                if (r < 0)
                        return r;
                job->tx_open = true;
                job->tx_since_ms = now_ms();
        }
        r = n ? kh_store_record_moves(job->store, tenant, from, to, b->moves, n) : 0;
        if (r < 0) {
                tx_abort(job);
                return r;
        }
        if (!job->tx_open) {
                *moved += (uint64_t) r;
                return 0;
        }
        job->tx_moved += (uint64_t) r;
        if (now_ms() - job->tx_since_ms >= COMMIT_MS)
                return tx_commit(job, moved);
        return 0;
}

/* move_batch()'s answer when @from can no longer be moved from (revoked meanwhile, or the
 * active version changed): the tenant is looked at again from the start. */
#define VERSION_GONE 1

/* Reads the next batch of records under version @from after the cursor (the last row of
 * the previous batch, or none) and moves them to the active version. */
static int move_batch(struct kh_reencrypt *job, size_t t, uint32_t from_version,
                      uint32_t target, bool first, uint64_t *moved, uint64_t *failed,
                      size_t *ret_n) {
        const struct kh_tenant *tenant = kh_app_tenant_at(job->app, t);
        KH_CLEANUP(kh_keys_unrefp) struct kh_keys *keys = kh_keyring_acquire(job->app->keyring);
        const struct kh_tenant_keys *tk = &keys->tenants[t];
        const struct kh_key_version *from = kh_tenant_keys_version(tk, from_version);
        struct batch *b = job->batch;
        enum kh_record_kind after_kind = 0;
        char after[KH_STORE_OWNER_MAX + 1] = "";
        int r;

        *ret_n = 0;
        if (kh_keys_refusal(keys) < 0)
                return kh_keys_refusal(keys);
        if (!tk->active || tk->active->version != target || !from ||
            from->state != KH_KEY_ARCHIVED || !from->dek)
                return VERSION_GONE;
        if (!first && b->n > 0) {
                after_kind = b->rows[b->n - 1].kind;
                memcpy(after, b->rows[b->n - 1].owner, sizeof(after));
        }
        b->n = 0;
        r = kh_store_records_under(job->store, tenant->id, from_version, after_kind, after,
                                   BATCH, collect, b);
        if (r < 0)
                return r;
        if (b->n == 0)
                return 0;
        reseal(job, tenant->id, from, tk->active, failed);
        r = commit_moves(job, tenant->id, from_version, target, moved);
        if (r < 0)
                return r;
        *ret_n = b->n;
        return 0;
}

/* ---- a tenant ---- */

/* Renews the lease when due, committing the moves made so far first (a lease renewed
 * inside the open transaction would be renewed only at its commit). Returns 0, ELSEWHERE
 * (lost: another replica took it over) or an error. */
static int lease_renew(struct kh_reencrypt *job, size_t t, struct kh_job_progress *p);

/* Sleeps as long as [jobs] reencrypt_rate asks after moving p->moved records since start_ms,
 * keeping the lease (a slow rate sleeps longer than a lease lasts). Returns 0, ELSEWHERE or
 * an error of renewing. */
static int throttle(struct kh_reencrypt *job, size_t t, struct kh_job_progress *p,
                    int64_t start_ms) {
        unsigned rate = job->app->cfg->jobs.reencrypt_rate;
        int64_t due, now;

        if (rate == 0)
                return 0;
        due = start_ms + (int64_t) (p->moved * 1000 / rate);
        now = now_ms();
        while (due > now && !stopping(job)) {
                int64_t ms = due - now > 100 ? 100 : due - now;
                int r;

                (void) nanosleep(&(struct timespec) { .tv_sec = 0, .tv_nsec = ms * 1000000 }, NULL);
                r = lease_renew(job, t, p);
                if (r != 0)
                        return r;
                now = now_ms();
        }
        return 0;
}

/* Records under archived (to move) and revoked (skipped) versions older than the active. */
static int count_old(struct kh_reencrypt *job, size_t t, const struct kh_tenant_keys *tk,
                     uint64_t *ret_archived, uint64_t *ret_revoked) {
        const char *id = kh_app_tenant_at(job->app, t)->id;

        *ret_archived = *ret_revoked = 0;
        for (size_t i = 0; i < tk->n_versions; i++) {
                const struct kh_key_version *v = &tk->versions[i];
                uint64_t n;
                int r;

                if (v == tk->active || (v->state != KH_KEY_ARCHIVED && v->state != KH_KEY_REVOKED))
                        continue;
                r = kh_store_record_count(job->store, id, v->version, &n);
                if (r < 0)
                        return r;
                if (v->state == KH_KEY_ARCHIVED)
                        *ret_archived += n;
                else
                        *ret_revoked += n;
        }
        return 0;
}

static int lease_renew(struct kh_reencrypt *job, size_t t, struct kh_job_progress *p) {
        int r;

        if (now_ms() - job->tenants[t].renewed_ms < LEASE_RENEW_MS)
                return 0;
        r = tx_commit(job, &p->moved);
        if (r < 0)
                return r;
        progress_update(job, t, p);
        r = lease_put(job, t, p, wall_ms() + LEASE_TTL_MS);
        if (r < 0)
                return r;
        if (r == 0)
                return ELSEWHERE;
        job->tenants[t].renewed_ms = now_ms();
        return 0;
}

/* Every pass over version v until a pass moves nothing or nothing is left. */
static int move_version(struct kh_reencrypt *job, size_t t, uint32_t v, uint32_t target,
                        struct kh_job_progress *p, int64_t start_ms) {
        const char *id = kh_app_tenant_at(job->app, t)->id;

        for (unsigned pass = 0; pass < PASSES_MAX; pass++) {
                uint64_t moved_before = p->moved, failed = 0, left;
                bool first = true;
                size_t n;
                int r;

                do {
                        if (stopping(job)) {
                                tx_abort(job);
                                return -ECANCELED;
                        }
                        r = move_batch(job, t, v, target, first, &p->moved, &failed, &n);
                        if (r != 0) {
                                tx_abort(job);
                                return r;
                        }
                        first = false;
                        p->failed = failed;
                        r = lease_renew(job, t, p);
                        if (r != 0) {
                                tx_abort(job);
                                return r;
                        }
                        if (job->app->cfg->jobs.reencrypt_rate) {
                                /* never sleep holding the lock */
                                r = tx_commit(job, &p->moved);
                                if (r < 0)
                                        return r;
                                progress_update(job, t, p);
                                r = throttle(job, t, p, start_ms);
                                if (r != 0)
                                        return r;
                        } else {
                                progress_update(job, t, p);
                        }
                } while (n == BATCH);
                r = tx_commit(job, &p->moved);
                if (r < 0)
                        return r;
                progress_update(job, t, p);

                r = kh_store_record_count(job->store, id, v, &left);
                if (r < 0)
                        return r;
                if (left <= failed || p->moved == moved_before)
                        return 0;
        }
        return 0;
}

/* The job's audit record in the tenant's chain: started, done or failed. */
static void audit(struct kh_reencrypt *job, size_t t, const char *action, const char *outcome,
                  uint32_t version) {
        struct kh_audit_event ev = {
                .time_ms = kh_audit_now_ms(), .chain = (uint32_t) t, .key_version = version,
                .count = 1, .action = action, .outcome = outcome, .target = "key",
        };

        KH_AUDIT_SET(ev.actor, "keyhold:reencrypt");
        KH_AUDIT_SET(ev.client, "local");
        kh_auditor_enqueue(job->app->auditor, &ev, 1);
}

static void report(struct kh_reencrypt *job, size_t t, const char *what, int r) {
        if (job->app->event)
                job->app->event(kh_app_tenant_at(job->app, t)->id, what, r, job->app->userdata);
}

/* Moves what is under the tenant's archived versions. Returns 0 (nothing to do, done), or
 * an error that stopped it (-ECANCELED: stopping or sealed). */
static int run_tenant(struct kh_reencrypt *job, size_t t) {
        struct kh_job_progress p = { .state = KH_JOB_RUNNING, .eta_s = -1 };
        uint32_t versions[KH_KEY_VERSIONS_MAX];
        size_t n_versions = 0;
        uint64_t archived, revoked;
        int64_t start_ms;
        char what[160];
        int r;

        {
                KH_CLEANUP(kh_keys_unrefp) struct kh_keys *keys =
                        kh_keyring_acquire(job->app->keyring);
                const struct kh_tenant_keys *tk = &keys->tenants[t];

                if (kh_keys_refusal(keys) < 0)
                        return -ECANCELED;
                if (!tk->active)
                        return 0;
                r = count_old(job, t, tk, &archived, &revoked);
                if (r < 0)
                        return r;
                if (archived == 0) {
                        struct kh_job_progress cur;
                        kh_reencrypt_progress(job, t, &cur);
                        /* a rekey's job (kh_reencrypt_begin()) ends here when nothing was
                         * under the old versions; one for a version this snapshot does not
                         * know yet is the next wake-up's */
                        if ((cur.state == KH_JOB_RUNNING || cur.state == KH_JOB_FAILED) &&
                            (cur.target == 0 || cur.target == tk->active->version)) {
                                cur.state = KH_JOB_DONE;
                                cur.target = tk->active->version;
                                cur.skipped = revoked;
                                progress_update(job, t, &cur);
                        }
                        return 0;
                }
                p.target = tk->active->version;
                for (size_t i = 0; i < tk->n_versions; i++)
                        if (tk->versions[i].state == KH_KEY_ARCHIVED)
                                versions[n_versions++] = tk->versions[i].version;
        }

        p.total = archived + revoked;
        p.skipped = revoked;
        job->tenants[t].started_wall_ms = wall_ms();
        r = lease_put(job, t, &p, wall_ms() + LEASE_TTL_MS);
        if (r < 0)
                return r;
        if (r == 0) {
                (void) lease_mirror(job, t);
                job->tenants[t].elsewhere = true;
                return ELSEWHERE;
        }
        job->tenants[t].elsewhere = false;
        job->tenants[t].renewed_ms = now_ms();
        start_ms = now_ms();
        pthread_mutex_lock(&job->lock);
        job->tenants[t].started_ms = start_ms;
        job->tenants[t].ended_ms = 0;
        job->tenants[t].p = p;
        pthread_mutex_unlock(&job->lock);
        audit(job, t, "key.reencrypt", "started", p.target);

        for (size_t i = 0; i < n_versions; i++) {
                r = move_version(job, t, versions[i], p.target, &p, start_ms);
                if (r == VERSION_GONE)
                        continue;        /* revoked meanwhile: its records are skipped */
                if (r == ELSEWHERE) {
                        report(job, t, "re-encryption lease lost to another replica (this one "
                                       "stalled past it); it goes on there",
                               0);
                        job->tenants[t].elsewhere = true;
                        return ELSEWHERE;
                }
                if (r < 0) {
                        /* handed over at once: another replica may go on (a stop, a seal);
                         * one not given up expires */
                        if (lease_put(job, t, &p, 0) < 0)
                                report(job, t, "cannot give up the re-encryption lease", 0);
                        /* sealed or the key store gone: resumed when it is back */
                        if (r != -ECANCELED && r != -KH_E_SEALED &&
                            r != -KH_E_KEYSTORE_UNAVAILABLE) {
                                p.state = KH_JOB_FAILED;
                                progress_update(job, t, &p);
                                audit(job, t, "key.reencrypt", kh_err_info(r)->code, p.target);
                                report(job, t, "re-encryption stopped on an error; it is tried "
                                               "again at the next rekey, reinstate or start", r);
                        }
                        return r;
                }
        }

        {
                KH_CLEANUP(kh_keys_unrefp) struct kh_keys *keys =
                        kh_keyring_acquire(job->app->keyring);
                r = count_old(job, t, &keys->tenants[t], &archived, &revoked);
                if (r < 0)
                        return r;
        }
        p.skipped = revoked;
        p.state = KH_JOB_DONE;
        progress_update(job, t, &p);
        /* given up; its note shows the job done (one not given up expires) */
        if (lease_put(job, t, &p, 0) < 0)
                report(job, t, "cannot give up the re-encryption lease", 0);
        audit(job, t, "key.reencrypt", "ok", p.target);
        (void) snprintf(what, sizeof(what),
                        "re-encryption done: %llu records moved to version %u, %llu skipped "
                        "(revoked), %llu did not open",
                        (unsigned long long) p.moved, p.target, (unsigned long long) revoked,
                        (unsigned long long) p.failed);
        report(job, t, what, 0);
        return 0;
}

static void *job_thread(void *userdata) {
        struct kh_reencrypt *job = userdata;

        /* SCHED_IDLE where the kernel allows it, else nice */
        if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &(struct sched_param) { 0 }) != 0)
                (void) setpriority(PRIO_PROCESS, (id_t) gettid(), JOB_NICE);
        for (;;) {
                bool woken, elsewhere = false;

                for (size_t t = 0; t < job->n; t++)
                        elsewhere |= job->tenants[t].elsewhere;
                pthread_mutex_lock(&job->lock);
                if (elsewhere && !job->wake && !job->stop) {
                        /* a job another replica runs: its progress, and whether it died */
                        struct timespec until;

                        (void) clock_gettime(CLOCK_REALTIME, &until);
                        until.tv_sec += LEASE_POLL_MS / 1000;
                        (void) pthread_cond_timedwait(&job->cond, &job->lock, &until);
                } else {
                        while (!job->wake && !job->stop)
                                pthread_cond_wait(&job->cond, &job->lock);
                }
                if (job->stop) {
                        pthread_mutex_unlock(&job->lock);
                        break;
                }
                woken = job->wake;
                job->wake = false;
                pthread_mutex_unlock(&job->lock);

                for (size_t t = 0; t < job->n; t++) {
                        /* not woken: only the jobs of others are looked at, by their lease
                         * (no count of records each second) */
                        if (!woken && !job->tenants[t].elsewhere)
                                continue;
                        if (!woken && lease_mirror(job, t) == 1)
                                continue;
                        job->tenants[t].elsewhere = false;
                        if (run_tenant(job, t) == -ECANCELED)
                                break;
                }
        }
        return NULL;
}

int kh_reencrypt_start(struct kh_app *app, struct kh_reencrypt **ret) {
        struct kh_reencrypt *job;
        size_t n = kh_app_n_tenants(app);
        int r;

        job = calloc(1, sizeof(*job) + n * sizeof(job->tenants[0]));
        if (!job)
                return -ENOMEM;
        job->app = app;
        job->n = n;
        job->wake = true;                /* a job a crash interrupted resumes at once */
        pthread_mutex_init(&job->lock, NULL);
        pthread_cond_init(&job->cond, NULL);
        kh_buf_init(&job->buf, KH_SEALED_MAX, false);
        job->batch = calloc(1, sizeof(*job->batch));
        r = job->batch ? kh_store_open(&app->cfg->storage, &job->store) : -ENOMEM;
        if (r == 0)
                r = -pthread_create(&job->thread, NULL, job_thread, job);
        if (r < 0) {
                kh_reencrypt_stop(job);
                return r;
        }
        job->started = true;
        *ret = job;
        return 0;
}

void kh_reencrypt_begin(struct kh_reencrypt *job, size_t tenant, uint32_t version) {
        if (!job || tenant >= job->n)
                return;
        pthread_mutex_lock(&job->lock);
        job->tenants[tenant].p = (struct kh_job_progress) {
                .state = KH_JOB_RUNNING, .target = version, .eta_s = -1 };
        job->tenants[tenant].started_ms = now_ms();
        job->tenants[tenant].ended_ms = 0;
        pthread_mutex_unlock(&job->lock);
        kh_reencrypt_wake(job);
}

void kh_reencrypt_wake(struct kh_reencrypt *job) {
        if (!job)
                return;
        pthread_mutex_lock(&job->lock);
        job->wake = true;
        pthread_cond_signal(&job->cond);
        pthread_mutex_unlock(&job->lock);
}

void kh_reencrypt_stop(struct kh_reencrypt *job) {
        if (!job)
                return;
        if (job->started) {
                pthread_mutex_lock(&job->lock);
                job->stop = true;
                pthread_cond_signal(&job->cond);
                pthread_mutex_unlock(&job->lock);
                (void) pthread_join(job->thread, NULL);
        }
        kh_store_close(job->store);
        free(job->batch);
        kh_buf_free(&job->buf);
        pthread_cond_destroy(&job->cond);
        pthread_mutex_destroy(&job->lock);
        free(job);
}
