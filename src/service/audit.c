/* The audit chains (audit.h explains the two ways records reach the database). */
#include "audit.h"

#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>
#include <string.h>
#include <time.h>

#include <openssl/bio.h>
#include <openssl/pem.h>

#include "audit/block.h"
#include "audit/verify.h"
#include "audit/record.h"
#include "common/errors.h"
#include "common/limits.h"

/* Events waiting for the database; beyond, the oldest go (and are counted). 262144 events
 * (48 MiB, only while the disk stalls) are 5 s of reads at full speed: a 2-vCPU VM whose
 * fdatasync took over a second dropped 8,096 reads with room for 65536. */
#define QUEUE_MAX        262144
/* Between two commits of the thread: reads' records gather meanwhile. Each commit also
 * makes every worker's connection drop its page cache and read its pages again, so under
 * load (a commit that took BUSY_RECORDS or more) the thread commits once a second at most;
 * a quiet server's records are committed within QUIET_GAP_MS. */
#define FLUSH_GAP_MS     1000
#define QUIET_GAP_MS     10
#define BUSY_RECORDS     64
/* Queued events that end a gap early: a commit per second at most would hold a second of
 * reads in memory (and beyond QUEUE_MAX, drop them) on a server that reads fast enough;
 * 32768 events are 6 MiB. */
#define COMMIT_RECORDS   32768
#define YIELD_RECORDS    256     /* see append_events() */
#define IDLE_WAKE_MS     1000    /* an idle thread still looks for due checkpoints */
#define RETRY_MS         200     /* after a failed commit (a full disk, a locked file) */
/* The claim on this replica's chains (claim()): renewed every BEAT_MS; one not renewed for
 * STALE_MS is a dead replica's and may be taken over. */
#define BEAT_MS          3000
#define STALE_MS         15000
#define REPLICAS_KEY     "audit.replicas" /* meta: the named replicas, space-separated */
#define BLOCK_RECORDS    4096    /* records per stored block (one commit may store several) */
#define AUDIT_NICE       5       /* the thread's nice value: see run() */
#define PRUNE_EVERY_MS   (3600 * 1000) /* [audit] keep_days: at start, then hourly */

struct chain {
        char id[KH_TENANT_ID_MAX + 1];   /* the tenant: "" for the server */
        char store_id[KH_AUDIT_CHAIN_ID_MAX + 1]; /* kh_audit_chain_store_id() */
        uint64_t seq;                    /* the head: last seq, 0 while empty */
        uint8_t hash[KH_AUDIT_HASH_LEN];
        uint64_t since_checkpoint;       /* records after the last checkpoint */
        int64_t checkpoint_ms;           /* when the last checkpoint was appended (or start) */
        /* the open transaction's (under chain_lock) */
        bool touched;
        /* a transaction that appended to it did not commit, or the commit's outcome is
         * unknown (the connection was lost after the server committed): the head is read
         * from the database again before the next append, else that append repeats a seq
         * the database already holds and fails for good (EEXIST) */
        bool stale;
        uint64_t saved_seq, saved_since;
        int64_t saved_checkpoint_ms;
        uint8_t saved_hash[KH_AUDIT_HASH_LEN];
        struct kh_buf block;             /* the block being built (audit/block.h) */
        struct kh_audit_block_writer writer;
        uint64_t block_first, block_records;
        /* the signing key: set under ks_lock, read by any worker without it */
        _Atomic int key;                 /* 0 not looked at yet, 1 ready, < 0 failed */
        char *_Atomic pem;               /* its public half, set once before key is 1 */
        const char *algorithm;           /* its signatures' (audit/verify.h), set before pem */
};

struct uses {
        size_t tenant;
        uint32_t version;
        uint64_t encrypts, decrypts;
};

struct kh_auditor {
        const struct kh_config *cfg;
        const char *replica;             /* [server] replica, "" when unnamed */
        struct kh_keystore *const *ks;   /* the app's slot: NULL while the server is sealed */
        pthread_rwlock_t *ks_lock;       /* shared to sign, exclusive to load or make a key */
        struct kh_store *store;          /* the thread's own connection */
        struct chain *chains;            /* [0, n_tenants) tenants, [n_tenants] the server */
        size_t n_chains;

        pthread_mutex_t chain_lock;      /* held from kh_auditor_tx_append to _tx_end */
        uint32_t *touched;               /* chains written by the open transaction */
        int64_t time_sec;                /* record_time()'s second, and its text */
        char time_text[KH_AUDIT_TIME_LEN + 1];
        size_t n_touched;
        struct kh_audit_event *inflight; /* queued events the open transaction took */
        size_t n_inflight, inflight_cap;
        struct uses *inflight_uses;      /* and the use counts it writes */
        size_t n_inflight_uses;

        pthread_mutex_t qlock;           /* guards everything below */
        pthread_cond_t qcond;            /* the thread waits for work */
        pthread_cond_t gap_cond;         /* between two commits: a stop or COMMIT_RECORDS */
        struct kh_audit_event *queue;
        size_t qlen, qcap;
        struct uses *uses;               /* use counts not yet in the database */
        size_t n_uses, cap_uses;
        bool stopping;

        pthread_t thread;
        bool running;
        int64_t pruned_ms;               /* the thread's: when retention last ran */
        bool beats;                      /* renews the claim: a database other hosts share */
        int64_t beat_ms;                 /* the thread's: when the claim was last renewed */
        char holder[128];                /* who holds the claim: "HOST PID TOKEN" */
        uint64_t dropped_recorded;       /* the thread's: drops the server's chain tells of */
        _Atomic uint64_t dropped;
};

void kh_audit_field_set(char *field, size_t n, const char *s) {
        size_t len = strnlen(s, n - 1);

        /* a cut never splits a UTF-8 sequence: back off over continuation bytes */
        if (s[len] != '\0')
                while (len > 0 && ((unsigned char) s[len] & 0xc0) == 0x80)
                        len--;
        memcpy(field, s, len);
        field[len] = '\0';
}

int64_t kh_audit_now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static size_t chain_index(const struct kh_auditor *a, uint32_t chain) {
        if (chain == KH_AUDIT_SERVER_CHAIN)
                return a->n_chains - 1;
        return chain < a->n_chains - 1 ? chain : SIZE_MAX;
}

static struct chain *chain_of(struct kh_auditor *a, uint32_t chain) {
        size_t i = chain_index(a, chain);
        return i == SIZE_MAX ? NULL : &a->chains[i];
}

const char *kh_auditor_chain_id(const struct kh_auditor *a, uint32_t chain) {
        size_t i = chain_index(a, chain);
        return i == SIZE_MAX ? NULL : a->chains[i].store_id;
}

const char *kh_auditor_tenant_id(const struct kh_auditor *a, uint32_t chain) {
        size_t i = chain_index(a, chain);
        return i == SIZE_MAX ? NULL : a->chains[i].id;
}

const char *kh_auditor_replica(const struct kh_auditor *a) {
        return a->replica;
}

void kh_audit_chain_store_id(const char *tenant, const char *replica,
                             char out[static KH_AUDIT_CHAIN_ID_MAX + 1]) {
        /* the unnamed replica's chains keep the ids chains had before replicas had names */
        if (replica && replica[0])
                (void) snprintf(out, KH_AUDIT_CHAIN_ID_MAX + 1, "%.*s@%.*s", KH_TENANT_ID_MAX,
                                tenant, KH_AUDIT_REPLICA_MAX, replica);
        else
                (void) snprintf(out, KH_AUDIT_CHAIN_ID_MAX + 1, "%.*s", KH_TENANT_ID_MAX, tenant);
}

uint64_t kh_auditor_dropped(const struct kh_auditor *a) {
        return atomic_load_explicit(&a->dropped, memory_order_relaxed);
}

/* ---- signing keys ---- */

static int pem_of(EVP_PKEY *pub, char **ret) {
        BIO *bio = BIO_new(BIO_s_mem());
        char *data, *pem;
        long len;

        if (!bio)
                return -ENOMEM;
        if (PEM_write_bio_PUBKEY(bio, pub) != 1 || (len = BIO_get_mem_data(bio, &data)) <= 0) {
                BIO_free(bio);
                return -EIO;
        }
        /* not strndup: the BIO's bytes have no NUL to stop at */
        pem = malloc((size_t) len + 1);
        if (pem) {
                memcpy(pem, data, (size_t) len);
                pem[len] = '\0';
        }
        BIO_free(bio);
        if (!pem)
                return -ENOMEM;
        *ret = pem;
        return 0;
}

/* Loads the chain's signing key, creating it the first time. Under ks_lock, exclusively
 * (generate). */
static int key_ensure_locked(struct kh_auditor *a, struct chain *c) {
        struct kh_key_ref ref = { .version = KH_AUDIT_KEY_VERSION, .purpose = KH_KEY_AUDIT };
        /* ECDSA P-256: a checkpoint is signed every checkpoint_records records, dozens of
         * times a second under load (an older server's RSA key is kept and used) */
        struct kh_key_spec spec = { .tenant = c->id, .version = KH_AUDIT_KEY_VERSION,
                                    .purpose = KH_KEY_AUDIT, .alg = KH_KEY_ALG_EC_P256 };
        EVP_PKEY *pub = NULL;
        int r;

        struct kh_keystore *ks = *a->ks;

        if (atomic_load(&c->key) > 0)
                return 0;
        if (!ks)
                return -KH_E_SEALED;     /* not an answer to keep: tried again once unsealed */
        memcpy(ref.tenant, c->id, sizeof(ref.tenant));
        r = kh_keystore_public_key(ks, &ref, &pub);
        if (r == -ENOENT) {
                r = kh_keystore_generate(ks, &spec, &ref);
                if (r == -EEXIST)
                        r = 0;
                if (r == 0)
                        r = kh_keystore_public_key(ks, &ref, &pub);
        }
        if (r == 0) {
                char *pem = NULL;

                c->algorithm = kh_audit_key_algorithm(pub);
                r = c->algorithm ? pem_of(pub, &pem) : -EIO;
                EVP_PKEY_free(pub);
                if (r == 0)
                        atomic_store(&c->pem, pem);
        }
        atomic_store(&c->key, r < 0 ? r : 1);
        return r;
}

static int key_ensure(struct kh_auditor *a, struct chain *c) {
        int r;

        if (atomic_load(&c->key) > 0)
                return 0;
        pthread_rwlock_wrlock(a->ks_lock);
        r = key_ensure_locked(a, c);
        pthread_rwlock_unlock(a->ks_lock);
        return r;
}

int kh_auditor_public_key(struct kh_auditor *a, uint32_t chain, struct kh_buf *out,
                          const char **ret_algorithm) {
        struct chain *c = chain_of(a, chain);
        int key;

        if (!c)
                return -EINVAL;
        /* the thread creates missing keys; a key it has not reached yet is not ready */
        key = atomic_load(&c->key);
        if (key == 0)
                return -KH_E_NOT_READY;
        if (key < 0)
                return -EIO;
        *ret_algorithm = c->algorithm;
        return kh_buf_append_str(out, atomic_load(&c->pem));
}

static int store_uses(struct kh_auditor *a, struct kh_store *store);
static int claim(struct kh_auditor *a, bool first, int64_t beat_ms);
static int replicas_add(struct kh_auditor *a);
static void server_event(struct kh_audit_event *ev, const char *action);
static void uses_done(struct kh_auditor *a, bool committed);

/* ---- appending (under chain_lock, inside a transaction) ---- */

static void touch(struct kh_auditor *a, struct chain *c) {
        if (c->touched)
                return;
        c->touched = true;
        c->saved_seq = c->seq;
        c->saved_since = c->since_checkpoint;
        c->saved_checkpoint_ms = c->checkpoint_ms;
        memcpy(c->saved_hash, c->hash, sizeof(c->hash));
        kh_buf_reset(&c->block);
        c->block_first = c->seq + 1;
        c->block_records = 0;
        a->touched[a->n_touched++] = (uint32_t) (c - a->chains);
}

/* Adds rec to c's block, starting one when none is open, and a new one when it is full. */
static int block_add(struct kh_store *store, struct chain *c, const struct kh_audit_record *rec,
                     int64_t time_ms);

static int block_store(struct kh_store *store, struct chain *c) {
        int r;

        if (c->block_records == 0)
                return 0;
        r = kh_store_audit_append(store, c->store_id, &(struct kh_store_audit_block) {
                                          .first_seq = c->block_first, .last_seq = c->seq,
                                          .head_hash = c->hash, .data = c->block.data,
                                          .len = c->block.len });
        kh_buf_reset(&c->block);
        c->block_first = c->seq + 1;
        c->block_records = 0;
        return r;
}

static int block_add(struct kh_store *store, struct chain *c, const struct kh_audit_record *rec,
                     int64_t time_ms) {
        int r;

        if (c->block_records == 0) {
                r = kh_audit_block_begin(&c->writer, &c->block, rec->prev_hash);
                if (r < 0)
                        return r;
        }
        r = kh_audit_block_add(&c->writer, rec, time_ms);
        if (r == -E2BIG && c->block_records > 0) {
                r = block_store(store, c);
                if (r == 0)
                        r = kh_audit_block_begin(&c->writer, &c->block, rec->prev_hash);
                if (r == 0)
                        r = kh_audit_block_add(&c->writer, rec, time_ms);
        }
        if (r == 0)
                c->block_records++;
        return r;
}

/* The record time of ms: the date and time of day are formatted once per second (under
 * chain_lock, like every append), the milliseconds every time. */
static int record_time(struct kh_auditor *a, int64_t ms, char out[static KH_AUDIT_TIME_LEN + 1]) {
        int64_t sec = ms / 1000;
        int r;

        if (sec != a->time_sec || !a->time_text[0]) {
                r = kh_audit_time_format(ms, a->time_text);
                if (r < 0)
                        return r;
                a->time_sec = sec;
        }
        memcpy(out, a->time_text, KH_AUDIT_TIME_LEN + 1);
        out[20] = (char) ('0' + ms % 1000 / 100);
        out[21] = (char) ('0' + ms % 100 / 10);
        out[22] = (char) ('0' + ms % 10);
        return 0;
}

/* append()'s answer for a checkpoint the key store could not sign: nothing was appended. */
#define NOT_SIGNED 1

/* Appends one record to c's block: the event with the next seq, chained to the head. A
 * checkpoint is signed here, with the chain's key. Returns 0, NOT_SIGNED or an error. */
static int append_fresh(struct kh_auditor *a, struct kh_store *store, struct chain *c,
                        const struct kh_audit_event *ev);

/* The head as the database holds it (c->stale); inside the transaction, before touch(). */
static int chain_refresh(struct kh_store *store, struct chain *c) {
        struct kh_store_audit_block last;
        int r = kh_store_audit_last(store, c->store_id, &last);

        if (r == -ENOENT) {
                c->seq = 0;
                memset(c->hash, 0, sizeof(c->hash));
        } else if (r < 0) {
                return r;
        } else {
                c->seq = last.last_seq;
                memcpy(c->hash, last.head_hash, sizeof(c->hash));
        }
        c->stale = false;
        return 0;
}

static int append(struct kh_auditor *a, struct kh_store *store, struct chain *c,
                  const struct kh_audit_event *ev) {
        if (c->stale && !c->touched) {
                int r = chain_refresh(store, c);
                if (r < 0)
                        return r;
        }
        return append_fresh(a, store, c, ev);
}

static int append_fresh(struct kh_auditor *a, struct kh_store *store, struct chain *c,
                        const struct kh_audit_event *ev) {
        bool checkpoint = strcmp(ev->action, KH_AUDIT_ACTION_CHECKPOINT) == 0;
        struct kh_audit_record rec = {
                .seq = c->seq + 1, .tenant = c->id, .actor = ev->actor, .action = ev->action,
                .target = kh_audit_event_target(ev), .outcome = ev->outcome,
                .key_version = ev->key_version,
                .request_id = ev->request_id, .client = ev->client,
                .count = ev->count ? ev->count : 1, .replica = a->replica,
        };
        KH_CLEANUP(kh_buf_freep) struct kh_buf sig = { 0 };
        int r;

        touch(a, c);
        r = record_time(a, ev->time_ms, rec.time);
        if (r < 0)
                return r;
        memcpy(rec.prev_hash, c->hash, sizeof(c->hash));
        kh_audit_record_hash(&rec, rec.hash);
        if (checkpoint) {
                struct kh_key_ref ref = { .version = KH_AUDIT_KEY_VERSION, .purpose = KH_KEY_AUDIT };
                uint8_t digest[KH_AUDIT_HASH_LEN];

                memcpy(ref.tenant, c->id, sizeof(ref.tenant));
                kh_audit_checkpoint_digest(c->id, a->replica, rec.seq, rec.hash, digest);
                kh_buf_init(&sig, KH_AUDIT_SIG_MAX, false);
                /* Never wait for the key store here: this runs inside a write transaction,
                 * and whoever holds the key store (a rekey, an unseal) may be waiting for
                 * the database in turn. The checkpoint is tried again at the next commit. */
                if (atomic_load(&c->key) <= 0) {
                        /* the key's first load may make it: exclusive */
                        if (pthread_rwlock_trywrlock(a->ks_lock) != 0)
                                return NOT_SIGNED;
                        r = key_ensure_locked(a, c);
                        pthread_rwlock_unlock(a->ks_lock);
                        if (r < 0)
                                return NOT_SIGNED;
                }
                /* signing is shared: recovery decryptions may use the store meanwhile */
                if (pthread_rwlock_tryrdlock(a->ks_lock) != 0)
                        return NOT_SIGNED;
                r = *a->ks ? kh_keystore_sign(*a->ks, &ref, digest, sizeof(digest), &sig)
                           : -KH_E_SEALED;       /* sealed after the key was loaded */
                pthread_rwlock_unlock(a->ks_lock);
                if (r < 0)
                        return NOT_SIGNED;       /* nothing appended */
                rec.signature = sig.data;
                rec.signature_len = sig.len;
        }
        r = block_add(store, c, &rec, ev->time_ms);
        if (r < 0)
                return r;
        c->seq = rec.seq;
        memcpy(c->hash, rec.hash, sizeof(c->hash));
        if (checkpoint) {
                c->since_checkpoint = 0;
                c->checkpoint_ms = ev->time_ms;
        } else {
                c->since_checkpoint++;
        }
        if (c->block_records == BLOCK_RECORDS)
                return block_store(store, c);
        return 0;
}

/* Set on the auditor's own thread: its appends come in thousands at a time. */
static _Thread_local bool on_audit_thread;

static int append_events(struct kh_auditor *a, struct kh_store *store,
                         const struct kh_audit_event *ev, size_t n) {
        for (size_t i = 0; i < n; i++) {
                struct chain *c = chain_of(a, ev[i].chain);
                int r;

                /* A worker woken while the thread works through a second of reads waits for
                 * the thread's time slice (milliseconds on a shared core); offering the core
                 * every YIELD_RECORDS appends keeps that wait to a fraction of one. */
                if (on_audit_thread && i % YIELD_RECORDS == YIELD_RECORDS - 1)
                        (void) sched_yield();
                if (!c)
                        continue;        /* a tenant index from nowhere: a bug, not a record */
                r = append(a, store, c, &ev[i]);
                if (r < 0)
                        return r;
        }
        return 0;
}

static void checkpoint_event(struct kh_audit_event *ev, uint32_t chain, int64_t ms) {
        *ev = (struct kh_audit_event) { .time_ms = ms, .chain = chain, .count = 1 };
        KH_AUDIT_SET(ev->actor, KH_AUDIT_ACTOR_SERVER);
        ev->action = KH_AUDIT_ACTION_CHECKPOINT;
        ev->outcome = "ok";
        ev->target = "";
}

/* Checkpoints for every chain whose records since its last one reached the count or the
 * age (all of them with records since, when closing). */
static int append_checkpoints(struct kh_auditor *a, struct kh_store *store, bool closing) {
        const int64_t ms = kh_audit_now_ms();

        for (size_t i = 0; i < a->n_chains; i++) {
                struct chain *c = &a->chains[i];
                struct kh_audit_event ev;
                int r;

                if (c->since_checkpoint == 0)
                        continue;
                if (!closing && c->since_checkpoint < a->cfg->audit.checkpoint_records &&
                    ms - c->checkpoint_ms < (int64_t) a->cfg->audit.checkpoint_seconds * 1000)
                        continue;
                checkpoint_event(&ev, i == a->n_chains - 1 ? KH_AUDIT_SERVER_CHAIN : (uint32_t) i,
                                 ms);
                /* A key store that cannot sign now (no key yet, a device gone) must not
                 * hold up the records: they go on, and the checkpoint is tried again at the
                 * next commit. append() changed nothing when signing failed. */
                r = append(a, store, c, &ev);
                if (r == NOT_SIGNED)
                        continue;
                if (r < 0)
                        return r;
        }
        return 0;
}

static int store_blocks(struct kh_auditor *a, struct kh_store *store) {
        for (size_t i = 0; i < a->n_touched; i++) {
                int r = block_store(store, &a->chains[a->touched[i]]);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Takes what is queued into inflight (the open transaction's), under qlock. */
static int take_queue(struct kh_auditor *a) {
        pthread_mutex_lock(&a->qlock);
        if (a->n_inflight == 0) {
                /* the usual case: the queue's array becomes the transaction's, unread */
                struct kh_audit_event *q = a->queue;
                size_t cap = a->qcap;

                a->queue = a->inflight;
                a->qcap = a->inflight_cap;
                a->inflight = q;
                a->inflight_cap = cap;
                a->n_inflight = a->qlen;
                a->qlen = 0;
                pthread_mutex_unlock(&a->qlock);
                return 0;
        }
        if (a->qlen > a->inflight_cap - a->n_inflight) {
                size_t cap = a->n_inflight + a->qlen;
                struct kh_audit_event *p = reallocarray(a->inflight, cap, sizeof(*p));
                if (!p) {
                        pthread_mutex_unlock(&a->qlock);
                        return -ENOMEM;
                }
                a->inflight = p;
                a->inflight_cap = cap;
        }
        if (a->qlen)
                memcpy(a->inflight + a->n_inflight, a->queue, a->qlen * sizeof(*a->queue));
        a->n_inflight += a->qlen;
        a->qlen = 0;
        pthread_mutex_unlock(&a->qlock);
        return 0;
}

int kh_auditor_tx_append(struct kh_auditor *a, struct kh_store *store,
                         const struct kh_audit_event *ev, size_t n) {
        int r;

        pthread_mutex_lock(&a->chain_lock);
        /* what was queued before goes first: it happened first */
        r = take_queue(a);
        if (r == 0)
                r = append_events(a, store, a->inflight, a->n_inflight);
        if (r == 0)
                r = append_events(a, store, ev, n);
        if (r == 0)
                r = store_blocks(a, store);
        if (r == 0)
                r = store_uses(a, store);
        return r;
}

/* Puts events back at the head of the queue (a transaction that did not commit), keeping
 * at most QUEUE_MAX; under qlock. */
static void requeue_locked(struct kh_auditor *a, const struct kh_audit_event *ev, size_t n) {
        size_t keep = n + a->qlen > QUEUE_MAX ? (QUEUE_MAX > a->qlen ? QUEUE_MAX - a->qlen : 0) : n;
        size_t drop = n - keep;

        if (a->qlen + keep > a->qcap) {
                size_t cap = a->qlen + keep;
                struct kh_audit_event *p = reallocarray(a->queue, cap, sizeof(*p));
                if (!p) {
                        drop = n;
                        keep = 0;
                } else {
                        a->queue = p;
                        a->qcap = cap;
                }
        }
        if (keep) {
                memmove(a->queue + keep, a->queue, a->qlen * sizeof(*a->queue));
                memcpy(a->queue, ev + drop, keep * sizeof(*ev));   /* the oldest are dropped */
                a->qlen += keep;
        }
        if (drop)
                atomic_fetch_add_explicit(&a->dropped, drop, memory_order_relaxed);
}

void kh_auditor_tx_end(struct kh_auditor *a, bool committed) {
        for (size_t i = 0; i < a->n_touched; i++) {
                struct chain *c = &a->chains[a->touched[i]];
                if (!committed) {
                        c->stale = true;
                        c->seq = c->saved_seq;
                        c->since_checkpoint = c->saved_since;
                        c->checkpoint_ms = c->saved_checkpoint_ms;
                        memcpy(c->hash, c->saved_hash, sizeof(c->hash));
                }
                kh_buf_reset(&c->block);
                c->touched = false;
        }
        a->n_touched = 0;
        if (!committed && a->n_inflight) {
                pthread_mutex_lock(&a->qlock);
                requeue_locked(a, a->inflight, a->n_inflight);
                pthread_mutex_unlock(&a->qlock);
        }
        a->n_inflight = 0;
        uses_done(a, committed);
        pthread_mutex_unlock(&a->chain_lock);
}

/* ---- use counters ---- */

static void add_uses_locked(struct kh_auditor *a, size_t tenant, uint32_t version,
                            uint64_t encrypts, uint64_t decrypts) {
        for (size_t i = 0; i < a->n_uses; i++)
                if (a->uses[i].tenant == tenant && a->uses[i].version == version) {
                        a->uses[i].encrypts += encrypts;
                        a->uses[i].decrypts += decrypts;
                        return;
                }
        if (a->n_uses == a->cap_uses) {
                size_t cap = a->cap_uses ? 2 * a->cap_uses : 16;
                struct uses *p = reallocarray(a->uses, cap, sizeof(*p));
                if (!p)
                        return;  /* counts are best effort: the records are what matters */
                a->uses = p;
                a->cap_uses = cap;
        }
        a->uses[a->n_uses++] = (struct uses) { tenant, version, encrypts, decrypts };
}

void kh_auditor_add_uses(struct kh_auditor *a, size_t tenant, uint32_t version,
                         uint64_t encrypts, uint64_t decrypts) {
        pthread_mutex_lock(&a->qlock);
        add_uses_locked(a, tenant, version, encrypts, decrypts);
        pthread_mutex_unlock(&a->qlock);
}

void kh_auditor_pending_uses(struct kh_auditor *a, size_t tenant, uint32_t version,
                             uint64_t *ret_encrypts, uint64_t *ret_decrypts) {
        *ret_encrypts = *ret_decrypts = 0;
        pthread_mutex_lock(&a->qlock);
        for (size_t i = 0; i < a->n_uses; i++)
                if (a->uses[i].tenant == tenant && a->uses[i].version == version) {
                        *ret_encrypts = a->uses[i].encrypts;
                        *ret_decrypts = a->uses[i].decrypts;
                }
        pthread_mutex_unlock(&a->qlock);
}

/* Writes the pending use counts inside the open transaction (under chain_lock). Until it
 * commits they are not counted by kh_auditor_pending_uses: a status read in between may
 * miss them, never count them twice. */
static int store_uses(struct kh_auditor *a, struct kh_store *store) {
        pthread_mutex_lock(&a->qlock);
        a->inflight_uses = a->uses;
        a->n_inflight_uses = a->n_uses;
        a->uses = NULL;
        a->n_uses = a->cap_uses = 0;
        pthread_mutex_unlock(&a->qlock);
        for (size_t i = 0; i < a->n_inflight_uses; i++) {
                const struct uses *u = &a->inflight_uses[i];
                int r = kh_store_tenant_key_add_uses(store, a->chains[u->tenant].id, u->version,
                                                     u->encrypts, u->decrypts);
                if (r < 0 && r != -ENOENT)
                        return r;
        }
        return 0;
}

/* After the commit: forgets what was written, or makes it pending again. */
static void uses_done(struct kh_auditor *a, bool committed) {
        if (!committed && a->n_inflight_uses) {
                pthread_mutex_lock(&a->qlock);
                for (size_t i = 0; i < a->n_inflight_uses; i++) {
                        const struct uses *u = &a->inflight_uses[i];
                        add_uses_locked(a, u->tenant, u->version, u->encrypts, u->decrypts);
                }
                pthread_mutex_unlock(&a->qlock);
        }
        free(a->inflight_uses);
        a->inflight_uses = NULL;
        a->n_inflight_uses = 0;
}

/* ---- retention ---- */

int kh_audit_block_each(const struct kh_store_audit_block *b, const char *chain_id,
                        int (*fn)(const struct kh_audit_record *rec, int64_t time_ms,
                                  void *userdata),
                        void *userdata) {
        struct kh_audit_block_reader rd;
        struct kh_audit_parsed *p = malloc(sizeof(*p));  /* 8 KiB: not on a worker's stack */
        const char *at = strchr(chain_id, '@');
        char tenant[KH_TENANT_ID_MAX + 1];
        int64_t ms;
        int r;

        if (!p)
                return -ENOMEM;
        /* "TENANT@REPLICA": the records' tenant and replica */
        (void) snprintf(tenant, sizeof(tenant), "%.*s",
                        (int) (at ? (size_t) (at - chain_id) : strlen(chain_id)), chain_id);
        r = kh_audit_block_read_begin(&rd, b->data, b->len, b->first_seq, tenant);
        while (r == 0 && (r = kh_audit_block_next(&rd, p, &ms)) == 1) {
                p->rec.replica = at ? at + 1 : NULL;
                r = fn(&p->rec, ms, userdata);
        }
        free(p);
        return r == -EINVAL ? -KH_E_INTEGRITY : r;
}

struct prune_scan {
        const char *chain_id;
        int64_t cutoff_ms;
        uint64_t keep_from;              /* the first seq to keep: after the old blocks */
        uint64_t newest_checkpoint;      /* seq of the newest checkpoint seen */
        bool vouched;                    /* a checkpoint at or after keep_from was seen */
        int64_t last_ms;                 /* the time of the block's last record */
};

static int prune_record(const struct kh_audit_record *rec, int64_t time_ms, void *userdata) {
        struct prune_scan *ps = userdata;

        if (rec->signature_len) {
                ps->newest_checkpoint = rec->seq;
                if (rec->seq >= ps->keep_from)
                        ps->vouched = true;
        }
        ps->last_ms = time_ms;
        return 0;
}

static int prune_block(const struct kh_store_audit_block *b, void *userdata) {
        struct prune_scan *ps = userdata;

        ps->last_ms = INT64_MAX;
        if (kh_audit_block_each(b, ps->chain_id, prune_record, ps) < 0)
                return 1;        /* an unreadable block ends what can be pruned */
        if (ps->last_ms < ps->cutoff_ms) {
                ps->keep_from = b->last_seq + 1;
                ps->vouched = false;
                return 0;
        }
        /* newer than the cutoff: done once something signs what is kept */
        return ps->vouched ? 1 : 0;
}

/* Removes the blocks older than [audit] keep_days, keeping the chain verifiable: what is
 * kept starts at a block boundary and a checkpoint at or after that start is kept (the
 * newest checkpoint, when every record is older), so the signature vouches for it. */
static void prune(struct kh_auditor *a) {
        const int64_t days = a->cfg->audit.keep_days;

        if (days == 0)
                return;
        for (size_t i = 0; i < a->n_chains; i++) {
                struct prune_scan ps = { .chain_id = a->chains[i].store_id,
                                         .cutoff_ms = kh_audit_now_ms() - days * 86400000 };
                uint64_t before;

                if (kh_store_audit_scan(a->store, a->chains[i].store_id, 1, false, prune_block, &ps) < 0)
                        continue;        /* tried again in an hour */
                before = ps.keep_from;
                if (!ps.vouched)
                        before = ps.newest_checkpoint < before ? ps.newest_checkpoint : before;
                /* a failure is tried again in an hour */
                if (before > 1 && kh_store_audit_prune(a->store, a->chains[i].store_id, before) < 0)
                        continue;
        }
}

/* ---- the thread ---- */

/* One commit of whatever is queued, with the checkpoints that are due. Returns 0 or the
 * store's error (the events are queued again). */
static int flush(struct kh_auditor *a, bool closing, const struct kh_audit_event *extra,
                 size_t n_extra) {
        uint64_t dropped = kh_auditor_dropped(a);
        struct kh_audit_event lost;
        int r = kh_store_tx_begin(a->store), t;

        if (r < 0)
                return r;
        t = kh_auditor_tx_append(a, a->store, extra, n_extra);
        /* events lost to a database that could not take them leave a mark in the server's
         * chain, so that the chain itself says it is incomplete, and by how much */
        if (t == 0 && dropped > a->dropped_recorded) {
                uint64_t n = dropped - a->dropped_recorded;

                server_event(&lost, "audit.dropped");
                lost.count = n > UINT32_MAX ? UINT32_MAX : (uint32_t) n;
                lost.outcome = "insufficient_storage";
                t = append(a, a->store, &a->chains[a->n_chains - 1], &lost);
                if (t == 0)
                        t = store_blocks(a, a->store);
        }
        if (t == 0)
                t = append_checkpoints(a, a->store, closing);
        if (t == 0)
                t = store_blocks(a, a->store);
        if (t == 0)
                t = kh_store_tx_commit(a->store);
        if (t < 0)
                kh_store_tx_rollback(a->store);
        kh_auditor_tx_end(a, t == 0);
        if (t == 0 && dropped > a->dropped_recorded)
                a->dropped_recorded += lost.count;
        return t;
}

static bool checkpoint_due(struct kh_auditor *a) {
        const int64_t ms = kh_audit_now_ms();
        bool due = false;

        /* a racy read of the heads is fine: the flush decides again under the lock */
        pthread_mutex_lock(&a->chain_lock);
        for (size_t i = 0; i < a->n_chains && !due; i++) {
                const struct chain *c = &a->chains[i];
                due = c->since_checkpoint > 0 &&
                      (c->since_checkpoint >= a->cfg->audit.checkpoint_records ||
                       ms - c->checkpoint_ms >= (int64_t) a->cfg->audit.checkpoint_seconds * 1000);
        }
        pthread_mutex_unlock(&a->chain_lock);
        return due;
}

static void deadline_in(struct timespec *ts, int64_t ms) {
        (void) clock_gettime(CLOCK_REALTIME, ts);
        ts->tv_sec += ms / 1000;
        ts->tv_nsec += (ms % 1000) * 1000000;
        if (ts->tv_nsec >= 1000000000) {
                ts->tv_sec++;
                ts->tv_nsec -= 1000000000;
        }
}

static void sleep_ms(int64_t ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
        (void) nanosleep(&ts, NULL);
}

static void *run(void *userdata) {
        struct kh_auditor *a = userdata;
        size_t next_key = 0;

        /* The records of reads are written in bursts (one per FLUSH_GAP_MS); on a core it
         * shares with a worker, a burst at equal priority holds that worker's requests for a
         * whole time slice. A lower priority lets the workers' requests go first while the
         * thread keeps a quarter of a busy core, more than auditing needs. */
        (void) setpriority(PRIO_PROCESS, (id_t) gettid(), AUDIT_NICE);
        on_audit_thread = true;

        pthread_mutex_lock(&a->qlock);
        while (!a->stopping) {
                bool uses, woken = false;
                size_t queued;
                int r;

                if (a->qlen == 0 && next_key == a->n_chains) {
                        struct timespec until;

                        deadline_in(&until, IDLE_WAKE_MS);
                        woken = pthread_cond_timedwait(&a->qcond, &a->qlock, &until) == 0;
                }
                queued = a->qlen;
                uses = a->n_uses > 0;
                pthread_mutex_unlock(&a->qlock);

                /* creates the chains' signing keys one by one, off the request path */
                if (next_key < a->n_chains && key_ensure(a, &a->chains[next_key]) != -KH_E_SEALED)
                        next_key++;
                if (a->beats && kh_audit_now_ms() - a->beat_ms >= BEAT_MS &&
                    claim(a, false, kh_audit_now_ms()) == 0)
                        a->beat_ms = kh_audit_now_ms(); /* a failure is tried at the next pass */
                if (kh_audit_now_ms() - a->pruned_ms >= PRUNE_EVERY_MS) {
                        a->pruned_ms = kh_audit_now_ms();
                        prune(a);
                }
                r = 0;
                /* use counts alone are written once per idle wake-up, not per pass */
                if (queued || checkpoint_due(a) || (uses && !woken))
                        r = flush(a, false, NULL, 0);
                if (r < 0)
                        sleep_ms(RETRY_MS);
                pthread_mutex_lock(&a->qlock);
                if (r == 0 && queued) {
                        /* let the next reads gather: one commit per gap at most (only a
                         * stop or COMMIT_RECORDS events end it early, not each event) */
                        struct timespec until;

                        deadline_in(&until, queued >= BUSY_RECORDS ? FLUSH_GAP_MS : QUIET_GAP_MS);
                        while (!a->stopping && a->qlen < COMMIT_RECORDS &&
                               pthread_cond_timedwait(&a->gap_cond, &a->qlock, &until) == 0)
                                ;
                }
        }
        pthread_mutex_unlock(&a->qlock);
        return NULL;
}

void kh_auditor_enqueue(struct kh_auditor *a, const struct kh_audit_event *ev, size_t n) {
        pthread_mutex_lock(&a->qlock);
        if (a->qlen + n > a->qcap && a->qlen + n <= QUEUE_MAX) {
                size_t cap = a->qcap ? a->qcap : 256;
                struct kh_audit_event *p;

                while (cap < a->qlen + n)
                        cap *= 2;
                p = reallocarray(a->queue, cap, sizeof(*p));
                if (p) {
                        a->queue = p;
                        a->qcap = cap;
                }
        }
        if (a->qlen + n <= a->qcap) {
                memcpy(a->queue + a->qlen, ev, n * sizeof(*ev));
                if (a->qlen < COMMIT_RECORDS && a->qlen + n >= COMMIT_RECORDS)
                        pthread_cond_signal(&a->gap_cond);
                a->qlen += n;
        } else {
                atomic_fetch_add_explicit(&a->dropped, n, memory_order_relaxed);
        }
        pthread_cond_signal(&a->qcond);
        pthread_mutex_unlock(&a->qlock);
}

/* ---- the replica's claim on its chains ----
 * Two servers appending to one chain would fork it: each numbers records from the head it
 * loaded. So a server claims its replica name in the database (meta "audit.replica" for the
 * unnamed one, "audit.replica.NAME" otherwise: "HOST PID TOKEN BEAT_MS") and renews it while
 * it runs (PostgreSQL only: a SQLite database has one host). Another server with the same
 * name on the same database refuses to start while the claim's server lives: on this host
 * its pid says so, on another one a claim renewed within STALE_MS; otherwise it is taken
 * over. The names of the replicas are kept in REPLICAS_KEY, for the
 * readers that gather every replica's chains (kh_audit_replicas()). */

static void claim_key(const char *replica, char out[static KH_STORE_META_KEY_MAX + 1]) {
        (void) snprintf(out, KH_STORE_META_KEY_MAX + 1, replica[0] ? "audit.replica.%s" : "audit.replica",
                        replica);
}

/* Whether process pid runs: a killed one not yet reaped (a zombie) does not. */
static bool process_lives(pid_t pid) {
        char path[64], stat[512];
        const char *end;
        FILE *f;
        size_t n;

        if (kill(pid, 0) < 0 && errno == ESRCH)
                return false;
        (void) snprintf(path, sizeof(path), "/proc/%ld/stat", (long) pid);
        f = fopen(path, "re");
        if (!f)
                return true; /* no /proc to ask: it exists */
        n = fread(stat, 1, sizeof(stat) - 1, f);
        fclose(f);
        stat[n] = '\0';
        end = strrchr(stat, ')'); /* "PID (COMM) STATE ...": COMM may hold anything */
        return !(end && end[1] == ' ' && end[2] == 'Z');
}

/* Whether the claim in value (not NUL-terminated) is another live server's. */
static bool claim_is_live(const struct kh_auditor *a, const uint8_t *value, size_t len,
                          int64_t now) {
        char text[KH_STORE_META_VALUE_MAX + 1], host[128], token[40], ours_host[128];
        long long pid, beat;

        memcpy(text, value, len);
        text[len] = '\0';
        if (sscanf(text, "%127s %lld %39s %lld", host, &pid, token, &beat) != 4)
                return false; /* not a claim this version wrote: nothing to respect */
        if (beat == 0)
                return false; /* released by a server that stopped */
        (void) sscanf(a->holder, "%127s", ours_host);
        /* on this host whether the server lives is known at once (a restart after kill -9),
         * and a SQLite database is only ever served from one host */
        if (strcmp(host, ours_host) == 0 && pid > 0 && pid <= INT32_MAX)
                return process_lives((pid_t) pid);
        return now - beat < STALE_MS; /* another host's: alive while it renews the claim */
}

/* Adds this replica's name to REPLICAS_KEY (inside the claim's transaction). */
static int replicas_add(struct kh_auditor *a) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        size_t n = strlen(a->replica);
        int r;

        kh_buf_init(&v, KH_STORE_META_VALUE_MAX, false);
        r = kh_store_meta_get(a->store, REPLICAS_KEY, &v);
        if (r < 0 && r != -ENOENT)
                return r;
        r = 0;
        for (size_t i = 0; i < v.len;) {
                size_t j = i;

                while (j < v.len && v.data[j] != ' ')
                        j++;
                if (j - i == n && memcmp(v.data + i, a->replica, n) == 0)
                        return 0;
                i = j + 1;
        }
        if (v.len + 1 + n > KH_STORE_META_VALUE_MAX)
                return -ENOSPC; /* about 30 names: more replicas than one database serves */
        if (v.len > 0)
                r = kh_buf_append(&v, " ", 1);
        if (r >= 0)
                r = kh_buf_append(&v, a->replica, n);
        if (r < 0)
                return r;
        return kh_store_meta_put(a->store, REPLICAS_KEY, v.data, v.len);
}

/* Takes (first) or renews this replica's claim; beat_ms 0 releases it. Returns 0,
 * -EADDRINUSE (first: another live server holds it) or the store's error. */
static int claim(struct kh_auditor *a, bool first, int64_t beat_ms) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf v = { 0 };
        char key[KH_STORE_META_KEY_MAX + 1], value[256];
        int r, n;

        claim_key(a->replica, key);
        kh_buf_init(&v, KH_STORE_META_VALUE_MAX, false);
        r = kh_store_tx_begin(a->store);
        if (r < 0)
                return r;
        if (first) {
                r = kh_store_meta_get(a->store, key, &v);
                if (r == 0 && claim_is_live(a, v.data, v.len, kh_audit_now_ms()))
                        r = -EADDRINUSE;
                else if (r == -ENOENT)
                        r = 0;
                if (r == 0 && a->replica[0])
                        r = replicas_add(a);
        }
        n = snprintf(value, sizeof(value), "%s %" PRId64, a->holder, beat_ms);
        if (r == 0)
                r = kh_store_meta_put(a->store, key, (const uint8_t *) value, (size_t) n);
        if (r == 0)
                r = kh_store_tx_commit(a->store);
        else
                kh_store_tx_rollback(a->store);
        return r;
}

static void holder_init(struct kh_auditor *a) {
        char host[64] = "";
        uint64_t token = 0;

        if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
                (void) snprintf(host, sizeof(host), "unknown");
        host[strcspn(host, " ")] = '\0';
        /* the token tells this server from an earlier one that had the same pid */
        if (getentropy(&token, sizeof(token)) < 0)
                token = (uint64_t) kh_audit_now_ms();
        (void) snprintf(a->holder, sizeof(a->holder), "%s %ld %016" PRIx64, host, (long) getpid(),
                        token);
}

int kh_audit_replicas(struct kh_store *store, struct kh_buf *out) {
        int r = kh_store_meta_get(store, REPLICAS_KEY, out);

        return r == -ENOENT ? 0 : r;
}

/* ---- life ---- */

static void server_event(struct kh_audit_event *ev, const char *action) {
        *ev = (struct kh_audit_event) { .time_ms = kh_audit_now_ms(), .chain = KH_AUDIT_SERVER_CHAIN,
                                        .count = 1 };
        KH_AUDIT_SET(ev->actor, KH_AUDIT_ACTOR_SERVER);
        ev->action = action;             /* a literal */
        ev->outcome = "ok";
        ev->target = "";
}

static int chain_load(struct kh_auditor *a, struct chain *c) {
        struct kh_store_audit_block last;
        int r = kh_store_audit_last(a->store, c->store_id, &last);

        c->checkpoint_ms = kh_audit_now_ms();
        kh_buf_init(&c->block, KH_STORE_AUDIT_BLOCK_MAX, false);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        c->seq = last.last_seq;
        memcpy(c->hash, last.head_hash, sizeof(c->hash));
        /* how many records follow the last checkpoint is not kept: after a crash they stay
         * unsigned until the next checkpoint, which new records make due (by count or age) */
        c->since_checkpoint = 0;
        return 0;
}

int kh_auditor_new(const struct kh_config *cfg, const char *const *tenants, size_t n,
                   struct kh_keystore *const *ks, pthread_rwlock_t *ks_lock,
                   struct kh_auditor **ret) {
        KH_CLEANUP(kh_auditor_freep) struct kh_auditor *a = NULL;
        struct kh_audit_event start;
        int r;

        a = calloc(1, sizeof(*a));
        if (!a)
                return -ENOMEM;
        a->cfg = cfg;
        a->replica = cfg->server.replica ? cfg->server.replica : "";
        a->ks = ks;
        a->ks_lock = ks_lock;
        pthread_mutex_init(&a->chain_lock, NULL);
        pthread_mutex_init(&a->qlock, NULL);
        pthread_cond_init(&a->qcond, NULL);
        pthread_cond_init(&a->gap_cond, NULL);
        a->n_chains = n + 1;
        a->chains = calloc(a->n_chains, sizeof(*a->chains));
        a->touched = calloc(a->n_chains, sizeof(*a->touched));
        if (!a->chains || !a->touched)
                return -ENOMEM;
        r = kh_store_open(&cfg->storage, &a->store);
        if (r < 0)
                return r;
        holder_init(a);
        /* Only a database that several hosts' replicas share needs the claim: a SQLite file
         * keeps none (and a backup of it, restored beside the server it was taken from,
         * must not inherit that server's claim) */
        a->beats = strcmp(cfg->storage.driver, "sqlite") != 0;
        r = a->beats ? claim(a, true, kh_audit_now_ms()) : 0;
        if (r == 0 && !a->beats && a->replica[0]) {
                /* still listed, for the readers of every replica's chains */
                r = kh_store_tx_begin(a->store);
                if (r == 0)
                        r = replicas_add(a);
                if (r == 0)
                        r = kh_store_tx_commit(a->store);
                else
                        kh_store_tx_rollback(a->store);
        }
        if (r < 0)
                return r;
        a->beat_ms = kh_audit_now_ms();
        for (size_t i = 0; i < a->n_chains; i++) {
                struct chain *c = &a->chains[i];
                if (i < n)
                        KH_AUDIT_SET(c->id, tenants[i]);
                kh_audit_chain_store_id(c->id, a->replica, c->store_id);
                r = chain_load(a, c);
                if (r < 0)
                        return r;
        }

        server_event(&start, "start");
        r = flush(a, false, &start, 1);
        if (r < 0)
                return r;
        r = -pthread_create(&a->thread, NULL, run, a);
        if (r < 0)
                return r;
        (void) pthread_setname_np(a->thread, "kh-audit");     /* for top -H and perf */
        a->running = true;
        *ret = KH_TAKE_PTR(a);
        return 0;
}

struct kh_auditor *kh_auditor_free(struct kh_auditor *a) {
        if (!a)
                return NULL;
        if (a->running) {
                struct kh_audit_event stop;

                pthread_mutex_lock(&a->qlock);
                a->stopping = true;
                pthread_cond_broadcast(&a->qcond);
                pthread_cond_broadcast(&a->gap_cond);
                pthread_mutex_unlock(&a->qlock);
                (void) pthread_join(a->thread, NULL);
                a->running = false;
                server_event(&stop, "stop");
                /* nothing to do about a failure here but keep what is durable */
                (void) flush(a, true, &stop, 1);
                /* released: a server that starts next with this name need not wait */
                if (a->beats)
                        (void) claim(a, false, 0);
        }
        for (size_t i = 0; a->chains && i < a->n_chains; i++) {
                kh_buf_free(&a->chains[i].block);
                free(atomic_load(&a->chains[i].pem));
        }
        kh_store_close(a->store);
        free(a->chains);
        free(a->touched);
        free(a->inflight);
        free(a->queue);
        free(a->uses);
        pthread_cond_destroy(&a->qcond);
        pthread_cond_destroy(&a->gap_cond);
        pthread_mutex_destroy(&a->qlock);
        pthread_mutex_destroy(&a->chain_lock);
        free(a);
        return NULL;
}
