/* The PostgreSQL backend's read connection: one more libpq connection per store, in
 * nonblocking and pipeline mode, driven by the store's loop (common/loop.h), so that a
 * worker keeps many reads in flight instead of stalling its loop for each round trip.
 *
 * A read is queued as one Bind/Execute of a statement prepared on each new connection;
 * the reads of one pass of the loop go out together, closed by one Sync, when the pass
 * ends (a deferred task), and their rows come back in the order sent (FIFO). Each read has
 * a timer of KH_STORE_WAIT_MS from its submission: the reads share that length, so the
 * oldest fires first, and when it fires the server has answered nothing for that long. The
 * connection is then dropped and every read in flight answered -KH_E_STORAGE_UNAVAILABLE,
 * as when libpq reports it lost. The server ends a slow statement itself a second earlier
 * (KH_PG_ASYNC_STATEMENT_MS), which fails that read only. A new connection is started, not
 * waited for, by the next read; after an attempt that failed, reads are refused at once for
 * KH_STORE_RECONNECT_MS. Host names are resolved by libpq while it starts a connection: a
 * URL naming an address (or a local socket) never blocks the loop. */
#include "store/postgresql/pg-conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/errors.h"
#include "common/fifo.h"

#define PG_ASYNC_GET "khget"

struct kh_pg_async {
        struct kh_pg_store *s;
        struct kh_loop *loop;            /* NULL once detached */
        PGconn *conn;                    /* NULL: none; else connecting or ready */
        bool ready;                      /* connected, in pipeline mode, statement sent */
        bool prepare_pending;            /* the first results are the PREPARE's */
        bool unsynced;                   /* statements sent since the last Sync */
        bool connect_failed;
        int64_t last_connect_ms;
        struct kh_loop_watch watch;
        struct kh_loop_task flush;       /* at the end of the pass: Sync and send */
        struct kh_loop_task refuse;      /* answers the waiting reads when none can be sent */
        struct kh_store_read *sent_head, *sent_tail;     /* in the pipeline, in order */
        struct kh_store_read *wait_head, *wait_tail;     /* for a connection */
        PGresult *head_res;              /* the first result of the oldest statement */
};

static int64_t monotonic_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void note(struct kh_pg_async *a, const char *msg) {
        kh_pg_copy_message(a->s->error, sizeof(a->s->error), msg);
}

/* Ends rd with r (or the row of res): its timer stopped, done called last, as done may
 * free rd. */
static void answer(struct kh_store_read *rd, int r, const PGresult *res) {
        struct kh_pg_async *a = rd->store_;
        int64_t version = 0;
        const uint8_t *blob = NULL;
        int len = 0;

        a->loop->ops->timer_stop(&rd->timer);
        rd->next = NULL;
        if (r == 0 && PQntuples(res) == 0)
                r = -ENOENT;
        else if (r == 0) {
                len = PQgetlength(res, 0, 1);
                if (PQnfields(res) != 2 || !kh_pg_get_int(res, 0, 0, &version) ||
                    !kh_store_version_ok(version) || kh_pg_is_null(res, 0, 1) || len < 0 ||
                    !kh_store_sealed_len_ok((size_t) len))
                        r = -KH_E_INTEGRITY;
                else
                        blob = (const uint8_t *) PQgetvalue(res, 0, 1);
        }
        if (r < 0)
                rd->done(rd, r, 0, NULL, 0);
        else
                rd->done(rd, 0, (uint32_t) version, blob, (size_t) len);
}

static void answer_all(struct kh_store_read *list, int r) {
        while (list) {
                struct kh_store_read *next = list->next;

                answer(list, r, NULL);
                list = next;
        }
}

static void unwatch(struct kh_pg_async *a) {
        if (a->loop && a->watch.impl_)
                a->loop->ops->watch_stop(&a->watch);
}

/* The connection is gone or given up: every read sent or waiting is answered 503. */
static void drop(struct kh_pg_async *a, const char *why) {
        struct kh_store_read *sent = a->sent_head, *waiting = a->wait_head;

        if (why)
                note(a, why);
        unwatch(a);
        PQfinish(a->conn);
        a->conn = NULL;
        a->ready = a->prepare_pending = a->unsynced = false;
        PQclear(a->head_res);
        a->head_res = NULL;
        a->sent_head = a->sent_tail = a->wait_head = a->wait_tail = NULL;
        answer_all(sent, -KH_E_STORAGE_UNAVAILABLE);
        answer_all(waiting, -KH_E_STORAGE_UNAVAILABLE);
}

static void on_refuse(struct kh_loop_task *task) {
        struct kh_pg_async *a = kh_container_of(task, struct kh_pg_async, refuse);
        struct kh_store_read *waiting = a->wait_head;

        if (!a->loop || a->conn)
                return;                  /* detached, or a connection is being made */
        a->wait_head = a->wait_tail = NULL;
        answer_all(waiting, -KH_E_STORAGE_UNAVAILABLE);
}

static bool send_read(struct kh_pg_async *a, struct kh_store_read *rd) {
        struct kh_pg_params p = { 0 };
        const char *values[3];

        kh_pg_param_text(&p, rd->tenant);
        kh_pg_param_int(&p, rd->kind);
        kh_pg_param_text(&p, rd->owner);
        for (int i = 0; i < p.n; i++)
                values[i] = p.is_int[i] ? (const char *) &p.ints[i] : p.values[i];
        return PQsendQueryPrepared(a->conn, PG_ASYNC_GET, p.n, values, p.lengths, p.formats,
                                   1) == 1;
}

/* Sends every waiting read into the pipeline; the Sync and the write wait for the end of
 * the pass (on_flush), so that a pass's reads leave in one write. */
static void send_waiting(struct kh_pg_async *a) {
        while (a->wait_head) {
                struct kh_store_read *rd = a->wait_head;

                if (!send_read(a, rd)) {
                        drop(a, PQerrorMessage(a->conn));
                        return;
                }
                a->wait_head = rd->next;
                if (!a->wait_head)
                        a->wait_tail = NULL;
                rd->next = NULL;
                KH_FIFO_PUSH(a->sent_head, a->sent_tail, rd);
                a->unsynced = true;
        }
        kh_loop_defer(a->loop, &a->flush);
}

static void flush_out(struct kh_pg_async *a) {
        int r = PQflush(a->conn);

        if (r < 0)
                drop(a, PQerrorMessage(a->conn));
        else if (r > 0)
                a->loop->ops->watch_write(&a->watch); /* the rest once the socket takes it */
}

static void on_flush(struct kh_loop_task *task) {
        struct kh_pg_async *a = kh_container_of(task, struct kh_pg_async, flush);

        if (!a->loop || !a->ready)
                return;
        if (a->unsynced) {
                a->unsynced = false;
                if (PQpipelineSync(a->conn) != 1) {
                        drop(a, PQerrorMessage(a->conn));
                        return;
                }
        }
        flush_out(a);
}

/* The results that arrived, each statement's handed to its read once libpq marks its end
 * (a NULL result). Sync results only separate the passes' batches. */
static void read_results(struct kh_pg_async *a) {
        int nulls = 0;

        if (PQconsumeInput(a->conn) != 1) {
                drop(a, PQerrorMessage(a->conn));
                return;
        }
        while (a->conn && !PQisBusy(a->conn) && nulls < 2) {
                PGresult *res = PQgetResult(a->conn);
                ExecStatusType st;

                if (!res) {
                        struct kh_store_read *rd = a->head_res ? a->sent_head : NULL;
                        PGresult *done_res = a->head_res;
                        int r;

                        nulls++;
                        if (!done_res)
                                continue;
                        a->head_res = NULL;
                        nulls = 0;
                        st = PQresultStatus(done_res);
                        r = st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK
                                    ? 0
                                    : st == PGRES_PIPELINE_ABORTED ? -KH_E_STORAGE_UNAVAILABLE
                                                                   : kh_pg_error_of(done_res);
                        if (r < 0 && kh_pg_connection_lost(a->conn, done_res)) {
                                note(a, PQresultErrorMessage(done_res));
                                PQclear(done_res);
                                drop(a, NULL);
                                return;
                        }
                        if (a->prepare_pending) {
                                a->prepare_pending = false;
                                if (r < 0) {
                                        note(a, PQresultErrorMessage(done_res));
                                        PQclear(done_res);
                                        drop(a, NULL);
                                        return;
                                }
                                PQclear(done_res);
                                continue;
                        }
                        if (!rd) {               /* a result nobody asked for: a bug */
                                PQclear(done_res);
                                drop(a, "the read connection answered an unknown statement");
                                return;
                        }
                        a->sent_head = rd->next;
                        if (!a->sent_head)
                                a->sent_tail = NULL;
                        if (r < 0)
                                note(a, PQresultErrorMessage(done_res));
                        answer(rd, r, done_res);
                        PQclear(done_res);
                        continue;
                }
                nulls = 0;
                st = PQresultStatus(res);
                if (st == PGRES_PIPELINE_SYNC || a->head_res)
                        PQclear(res);            /* a batch's end, or a second result */
                else
                        a->head_res = res;
        }
        if (a->conn && PQstatus(a->conn) != CONNECTION_OK)
                drop(a, PQerrorMessage(a->conn));
}

static int watch(struct kh_pg_async *a) {
        int fd = PQsocket(a->conn);

        a->loop->ops->watch_stop(&a->watch);
        if (fd < 0)
                return -EBADF;
        return a->loop->ops->watch_start(a->loop, fd, &a->watch);
}

/* The connection is up: pipeline mode, the statement prepared (its answer comes first),
 * and the reads that waited for it. */
static void connected(struct kh_pg_async *a) {
        if (PQsetnonblocking(a->conn, 1) != 0 || PQenterPipelineMode(a->conn) != 1 ||
            PQsendPrepare(a->conn, PG_ASYNC_GET, kh_pg_statements[PG_ST_RECORD_GET], 0, NULL) !=
                    1) {
                a->connect_failed = true;
                drop(a, PQerrorMessage(a->conn));
                return;
        }
        a->connect_failed = false;
        a->ready = a->prepare_pending = a->unsynced = true;
        send_waiting(a);
}

static void connect_step(struct kh_pg_async *a) {
        PostgresPollingStatusType st = PQconnectPoll(a->conn);

        if (st == PGRES_POLLING_FAILED) {
                a->connect_failed = true;
                drop(a, PQerrorMessage(a->conn));
                return;
        }
        /* libpq may have moved to another socket (the next address of a host) */
        if (watch(a) < 0) {
                a->connect_failed = true;
                drop(a, "cannot watch the connection's socket");
                return;
        }
        if (st == PGRES_POLLING_WRITING)
                a->loop->ops->watch_write(&a->watch);
        else if (st == PGRES_POLLING_OK)
                connected(a);
}

static void on_ready(struct kh_loop_watch *w) {
        struct kh_pg_async *a = kh_container_of(w, struct kh_pg_async, watch);

        if (!a->conn)
                return;
        if (!a->ready) {
                connect_step(a);
                return;
        }
        if (PQisnonblocking(a->conn) && PQflush(a->conn) > 0)
                a->loop->ops->watch_write(&a->watch);
        read_results(a);
}

static void start_connect(struct kh_pg_async *a) {
        a->last_connect_ms = monotonic_ms();
        a->conn = kh_pg_connect_start(a->s);
        if (!a->conn || PQstatus(a->conn) == CONNECTION_BAD || watch(a) < 0) {
                a->connect_failed = true;
                note(a, a->conn ? PQerrorMessage(a->conn) : "out of memory");
                unwatch(a);
                PQfinish(a->conn);
                a->conn = NULL;
                kh_loop_defer(a->loop, &a->refuse);
                return;
        }
        a->loop->ops->watch_write(&a->watch);   /* PGRES_POLLING_WRITING comes first */
}

static void on_timeout(struct kh_loop_timer *t) {
        struct kh_store_read *rd = kh_container_of(t, struct kh_store_read, timer);
        struct kh_pg_async *a = rd->store_;

        /* the oldest read: the server answered nothing for KH_STORE_WAIT_MS */
        if (!a->conn)
                a->connect_failed = true;
        drop(a, "the database did not answer in time");
}

void kh_pg_async_record_get(struct kh_store *store, struct kh_store_read *rd) {
        struct kh_pg_async *a = kh_pg_of(store)->async;

        rd->store_ = a;
        rd->timer.fn = on_timeout;
        if (a->loop->ops->timer_start(a->loop, &rd->timer, KH_STORE_WAIT_MS) < 0) {
                /* cannot happen with the loop's few lengths; refuse rather than wait forever */
                KH_FIFO_PUSH(a->wait_head, a->wait_tail, rd);
                kh_loop_defer(a->loop, &a->refuse);
                return;
        }
        KH_FIFO_PUSH(a->wait_head, a->wait_tail, rd);
        if (a->ready) {
                send_waiting(a);
                return;
        }
        if (a->conn)
                return;                          /* connecting: sent once connected */
        if (a->connect_failed && monotonic_ms() - a->last_connect_ms < KH_STORE_RECONNECT_MS) {
                kh_loop_defer(a->loop, &a->refuse);
                return;
        }
        start_connect(a);
}

int kh_pg_async_attach(struct kh_store *store, struct kh_loop *loop) {
        struct kh_pg_store *s = kh_pg_of(store);
        struct kh_pg_async *a = s->async;

        if (!a) {
                a = calloc(1, sizeof(*a));
                if (!a)
                        return -ENOMEM;
                s->async = a;
        }
        *a = (struct kh_pg_async) {
                .s = s, .loop = loop, .watch = { .fn = on_ready },
                .flush = { .run = on_flush }, .refuse = { .run = on_refuse },
        };
        return 0;
}

bool kh_pg_async_ready(const struct kh_store *store) {
        /* base is the first member (pg-conn.h) */
        const struct kh_pg_async *a = ((const struct kh_pg_store *) (const void *) store)->async;

        return a && a->loop;
}

void kh_pg_async_detach(struct kh_store *store) {
        struct kh_pg_async *a = kh_pg_of(store)->async;

        if (!a || !a->loop)
                return;
        drop(a, NULL);
        /* deferred tasks may still be queued on the loop: they find it detached */
        a->loop = NULL;
}

void kh_pg_async_free(struct kh_pg_store *s) {
        if (!s->async)
                return;
        kh_pg_async_detach(&s->base);
        free(s->async);
        s->async = NULL;
}
