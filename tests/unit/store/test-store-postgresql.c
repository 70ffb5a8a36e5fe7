/* The store on PostgreSQL: the conformance suite plus what only PostgreSQL shows (several
 * processes migrating one database at once, start-up errors that name the key, timeouts
 * and lost connections as -KH_E_STORAGE_UNAVAILABLE, reconnecting after the server comes
 * back). Run by with-postgresql.py, which starts a throw-away server and passes:
 *   KEYHOLD_TEST_PG_CONNINFO  libpq conninfo of the server, without dbname and password
 *   KEYHOLD_TEST_PG_PASSWORD  the password of that role
 *   KEYHOLD_TEST_PG_CONTROL   a Unix socket: "stop\n" / "start\n" stops or starts the
 *                             server (same port and data), answered "ok\n" when done
 * Without them the test fails: a PostgreSQL that cannot start is a failure, not a skip. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "common/buf.h"
#include "common/errors.h"
#include "conformance.h"
#include "store/store.h"

static const char *conninfo, *password, *control;

/* A connection of our own, beside the store's, to a database (NULL: "postgres"). */
static PGconn *raw_connect(const char *db) {
        const char *keys[] = { "dbname", "dbname", "password", NULL };
        const char *values[] = { conninfo, db ? db : "postgres", password, NULL };
        PGconn *c = PQconnectdbParams(keys, values, 1);

        if (PQstatus(c) != CONNECTION_OK) {
                fprintf(stderr, "test connection failed: %s", PQerrorMessage(c));
                PQfinish(c);
                return NULL;
        }
        return c;
}

/* Runs sql on db; 0 or -EIO (with the message on stderr). */
static int raw_exec(const char *db, const char *sql) {
        PGconn *c = raw_connect(db);
        PGresult *res;
        int r = -EIO;

        if (!c)
                return -EIO;
        res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK)
                r = 0;
        else
                fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        return r;
}

/* The database name a config made by pg_create() reaches (the last dbname=). */
static const char *db_of(const struct kh_config_storage *cfg) {
        const char *p = strstr(cfg->url, " dbname=");

        return p ? p + strlen(" dbname=") : "";
}

static int pg_create(struct kh_config_storage *cfg) {
        static unsigned counter;
        char sql[128], name[64];

        (void) snprintf(name, sizeof(name), "kh_t%ld_%u", (long) getpid(), ++counter);
        (void) snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
        if (raw_exec(NULL, sql) < 0)
                return -EIO;
        *cfg = (struct kh_config_storage) { 0 };
        cfg->driver = strdup("postgresql");
        if (asprintf(&cfg->url, "%s dbname=%s", conninfo, name) < 0)
                cfg->url = NULL;
        cfg->password = strdup(password);
        if (!cfg->driver || !cfg->url || !cfg->password)
                return -ENOMEM;
        return 0;
}

static void pg_destroy(struct kh_config_storage *cfg) {
        char sql[128];

        if (cfg->url) {
                (void) snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)",
                                db_of(cfg));
                (void) raw_exec(NULL, sql);
        }
        free(cfg->driver);
        free(cfg->url);
        free(cfg->password);
        free(cfg->password_file);
        *cfg = (struct kh_config_storage) { 0 };
}

/* The single integer sql returns on cfg's database. */
static int raw_count(const struct kh_config_storage *cfg, const char *sql, uint64_t *ret) {
        PGconn *c = raw_connect(db_of(cfg));
        PGresult *res;
        int r = -EIO;

        if (!c)
                return -EIO;
        res = PQexec(c, sql);
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
                *ret = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
                r = 0;
        }
        PQclear(res);
        PQfinish(c);
        return r;
}

static int pg_migration_count(const struct kh_config_storage *cfg, int version,
                              uint64_t *ret_count) {
        char sql[128];

        (void) snprintf(sql, sizeof(sql),
                        "SELECT COUNT(*) FROM schema_migrations WHERE version = %d", version);
        return raw_count(cfg, sql, ret_count);
}

static int pg_clear_signatures(const struct kh_config_storage *cfg, const char *tenant) {
        char sql[160];

        (void) snprintf(sql, sizeof(sql),
                        "UPDATE tenant_keys SET signature = NULL WHERE tenant = '%s'", tenant);
        return raw_exec(db_of(cfg), sql);
}

static const struct kh_store_test_backend postgresql_backend = {
        .driver = "postgresql",
        .create = pg_create,
        .destroy = pg_destroy,
        .migration_count = pg_migration_count,
        .clear_signatures = pg_clear_signatures,
};

/* ---- PostgreSQL only ---- */

static const uint8_t BLOB[] = "sealed-bytes";

static int setup(void **state) {
        struct kh_config_storage *cfg = calloc(1, sizeof(*cfg));

        if (!cfg || pg_create(cfg) < 0) {
                free(cfg);
                return -1;
        }
        *state = cfg;
        return 0;
}

static int teardown(void **state) {
        pg_destroy(*state);
        free(*state);
        return 0;
}

#define PROCS 4

/* Replicas starting together on an empty database: each process opens it at once (after a
 * pipe releases them all); every open succeeds and each migration is recorded once. */
static void test_processes_starting_together_migrate_once(void **state) {
        for (int round = 0; round < 8; round++) {
                struct kh_config_storage cfg;
                int go[2];
                pid_t pid[PROCS];

                (void) state;
                assert_int_equal(pg_create(&cfg), 0);
                assert_int_equal(pipe(go), 0);
                for (int i = 0; i < PROCS; i++) {
                        pid[i] = fork();
                        assert_true(pid[i] >= 0);
                        if (pid[i] == 0) {
                                struct kh_store *s = NULL;
                                char c, why[400];
                                int ok, r;

                                (void) close(go[1]);
                                if (read(go[0], &c, 1) < 0)   /* EOF: everyone goes */
                                        _exit(2);
                                r = kh_store_open_explained(&cfg, &s, why, sizeof(why));
                                if (r < 0)
                                        fprintf(stderr, "  open failed: %s (%s)\n", why,
                                                kh_strerror(r));
                                ok = r == 0 &&
                                     kh_store_schema_version(s) == KH_STORE_TEST_SCHEMA_VERSION &&
                                     kh_store_ping(s) == 0;
                                s = kh_store_close(s);
                                _exit(ok ? 0 : 1);
                        }
                }
                (void) close(go[0]);
                (void) close(go[1]);
                for (int i = 0; i < PROCS; i++) {
                        int status = -1;

                        assert_int_equal(waitpid(pid[i], &status, 0), pid[i]);
                        assert_true(WIFEXITED(status));
                        assert_int_equal(WEXITSTATUS(status), 0);
                }
                for (int v = 1; v <= KH_STORE_TEST_SCHEMA_VERSION; v++) {
                        uint64_t n = 0;

                        assert_int_equal(pg_migration_count(&cfg, v, &n), 0);
                        assert_int_equal(n, 1);
                }
                pg_destroy(&cfg);
        }
}

static void expect_open_error(const struct kh_config_storage *cfg, int expected,
                              const char *key, const char *cause) {
        struct kh_store *s = NULL;
        char why[400];

        assert_int_equal(kh_store_open_explained(cfg, &s, why, sizeof(why)), expected);
        assert_null(s);
        fprintf(stderr, "  open error: %s\n", why);
        assert_non_null(strstr(why, key));
        assert_non_null(strstr(why, cause));
        if (cfg->password)
                assert_null(strstr(why, cfg->password));
}

static void test_start_up_errors_name_the_key_and_cause(void **state) {
        struct kh_config_storage *cfg = *state, bad = *cfg;
        struct sockaddr_in a = { .sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        char url[512], wrong[] = "not-the-password-7f3a", pwfile[] = "/tmp/kh-pgpw-XXXXXX";
        struct kh_store *s = NULL;
        int fd;

        /* unreachable: a bound port that does not listen refuses connections */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fd >= 0);
        assert_int_equal(bind(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(getsockname(fd, (struct sockaddr *) &a, &len), 0);
        (void) snprintf(url, sizeof(url), "host=127.0.0.1 port=%u dbname=x user=keyhold",
                        ntohs(a.sin_port));
        bad.url = url;
        expect_open_error(&bad, -ECONNREFUSED, "[storage] url", "cannot reach");
        (void) close(fd);

        /* wrong password, from the environment's key or from password_file */
        bad = *cfg;
        bad.password = wrong;
        expect_open_error(&bad, -EACCES, "[storage] password_file", "refused the login");
        fd = mkstemp(pwfile);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, wrong, strlen(wrong)), (ssize_t) strlen(wrong));
        bad.password = NULL;
        bad.password_file = pwfile;
        expect_open_error(&bad, -EACCES, "[storage] password_file", "refused the login");
        /* the right one, with one trailing newline, opens it */
        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(pwrite(fd, password, strlen(password), 0), (ssize_t) strlen(password));
        assert_int_equal(pwrite(fd, "\n", 1, (off_t) strlen(password)), 1);
        assert_int_equal(kh_store_open(&bad, &s), 0);
        s = kh_store_close(s);
        (void) close(fd);
        (void) unlink(pwfile);
        expect_open_error(&bad, -ENOENT, "[storage] password_file", "cannot read");

        /* no such database */
        bad = *cfg;
        (void) snprintf(url, sizeof(url), "%s dbname=kh_no_such_database", conninfo);
        bad.url = url;
        expect_open_error(&bad, -ENOENT, "[storage] url", "no such database");

        /* TLS is libpq's, set in the URL: this server has no TLS, so a URL that demands it
         * is refused, with libpq's reason */
        (void) snprintf(url, sizeof(url), "%s sslmode=require", cfg->url);
        expect_open_error(&bad, -ECONNREFUSED, "[storage] url", "SSL");

        /* not a connection string */
        bad.url = url;
        (void) snprintf(url, sizeof(url), "postgresql://127.0.0.1/x?nosuchoption=1");
        expect_open_error(&bad, -EINVAL, "[storage] url", "not a libpq connection string");

        /* a schema newer than this build */
        assert_int_equal(kh_store_open(cfg, &s), 0);
        s = kh_store_close(s);
        assert_int_equal(raw_exec(db_of(cfg), "INSERT INTO schema_migrations VALUES (99, 0)"), 0);
        expect_open_error(cfg, -EPROTO, "[storage] url", "newer");
}

/* Ends the store's server sessions on the database, as a server restart or a network
 * failure would. */
static void terminate_sessions(const struct kh_config_storage *cfg) {
        char sql[256];

        (void) snprintf(sql, sizeof(sql),
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                        "datname = '%s' AND pid <> pg_backend_pid()",
                        db_of(cfg));
        assert_int_equal(raw_exec(NULL, sql), 0);
}

static void expect_blob(struct kh_store *s, const char *owner, int expected) {
        struct kh_buf b;
        uint32_t v = 0;

        kh_buf_init(&b, 4096, false);
        assert_int_equal(kh_store_record_get(s, "acme", KH_RECORD_USER_KEY, owner, &v, &b),
                         expected);
        if (expected == 0) {
                assert_int_equal(v, 1);
                assert_int_equal(b.len, sizeof(BLOB));
                assert_memory_equal(b.data, BLOB, sizeof(BLOB));
        }
        kh_buf_free(&b);
}

static void test_lost_connection_is_unavailable_then_made_again(void **state) {
        struct kh_config_storage *cfg = *state;
        struct kh_store *s = NULL;

        assert_int_equal(kh_store_open(cfg, &s), 0);
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u1", 1, BLOB,
                                             sizeof(BLOB)),
                         0);

        /* a read is run again on a new connection */
        terminate_sessions(cfg);
        expect_blob(s, "u1", 0);

        /* a write is not (it may have been committed): 503, then the next call reconnects */
        terminate_sessions(cfg);
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u2", 1, BLOB,
                                             sizeof(BLOB)),
                         -KH_E_STORAGE_UNAVAILABLE);
        assert_string_not_equal(kh_store_last_error(s), "");
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u2", 1, BLOB,
                                             sizeof(BLOB)),
                         0);
        expect_blob(s, "u2", 0);

        /* a transaction that lost its connection fails every call until rolled back, and
         * nothing of it was written */
        assert_int_equal(kh_store_tx_begin(s), 0);
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u3", 1, BLOB,
                                             sizeof(BLOB)),
                         0);
        terminate_sessions(cfg);
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u4", 1, BLOB,
                                             sizeof(BLOB)),
                         -KH_E_STORAGE_UNAVAILABLE);
        assert_int_equal(kh_store_ping(s), -KH_E_STORAGE_UNAVAILABLE);
        assert_int_equal(kh_store_tx_commit(s), -KH_E_STORAGE_UNAVAILABLE);
        kh_store_tx_rollback(s);
        assert_int_equal(kh_store_ping(s), 0);
        expect_blob(s, "u3", -ENOENT);
        expect_blob(s, "u4", -ENOENT);
        s = kh_store_close(s);
}

/* A table locked by another session: the write waits KH_STORE_WAIT_MS, then 503. */
static void test_lock_wait_is_bounded_and_unavailable(void **state) {
        struct kh_config_storage *cfg = *state;
        struct kh_store *s = NULL;
        PGconn *locker;
        PGresult *res;
        struct timespec t0, t1;
        long ms;

        assert_int_equal(kh_store_open(cfg, &s), 0);
        locker = raw_connect(db_of(cfg));
        assert_non_null(locker);
        res = PQexec(locker, "BEGIN; LOCK TABLE records IN ACCESS EXCLUSIVE MODE");
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);

        (void) clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u1", 1, BLOB,
                                             sizeof(BLOB)),
                         -KH_E_STORAGE_UNAVAILABLE);
        (void) clock_gettime(CLOCK_MONOTONIC, &t1);
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        fprintf(stderr, "  lock wait ended after %ld ms\n", ms);
        assert_true(ms >= KH_STORE_WAIT_MS - 100);
        assert_non_null(strstr(kh_store_last_error(s), "timeout"));

        PQfinish(locker);  /* its transaction rolls back, the lock goes */
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u1", 1, BLOB,
                                             sizeof(BLOB)),
                         0);
        s = kh_store_close(s);
}

/* Asks with-postgresql.py to stop or start the server; returns once it is done. */
static void server(const char *command) {
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        char reply[64] = { 0 };
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);

        assert_true(fd >= 0);
        (void) snprintf(a.sun_path, sizeof(a.sun_path), "%s", control);
        assert_int_equal(connect(fd, (struct sockaddr *) &a, sizeof(a)), 0);
        assert_int_equal(write(fd, command, strlen(command)), (ssize_t) strlen(command));
        assert_true(read(fd, reply, sizeof(reply) - 1) > 0);
        (void) close(fd);
        assert_string_equal(reply, "ok\n");
}

static void test_server_restart_reconnects(void **state) {
        struct kh_config_storage *cfg = *state;
        struct kh_store *s = NULL;

        assert_int_equal(kh_store_open(cfg, &s), 0);
        assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, "u1", 1, BLOB,
                                             sizeof(BLOB)),
                         0);

        server("stop\n");
        expect_blob(s, "u1", -KH_E_STORAGE_UNAVAILABLE);
        assert_int_equal(kh_store_ping(s), -KH_E_STORAGE_UNAVAILABLE);
        server("start\n");

        /* the next call after KH_STORE_RECONNECT_MS makes the connection again */
        (void) nanosleep(&(struct timespec) { .tv_sec = KH_STORE_RECONNECT_MS / 1000,
                                              .tv_nsec = (KH_STORE_RECONNECT_MS % 1000) *
                                                         1000000L },
                         NULL);
        assert_int_equal(kh_store_ping(s), 0);
        expect_blob(s, "u1", 0);
        s = kh_store_close(s);
}

/* ---- asynchronous reads (store.h), on a loop of poll() ---- */

#define TEST_TIMERS_MAX 256

struct poll_loop {
        struct kh_loop base;
        struct kh_loop_task *deferred_head;
        struct kh_loop_watch *watch;
        int fd;
        bool want_write;
        struct kh_loop_timer *timers[TEST_TIMERS_MAX];
        size_t n_timers;
};

static int64_t now_ms(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pl_defer(struct kh_loop *loop, struct kh_loop_task *task) {
        struct poll_loop *l = (struct poll_loop *) loop;
        struct kh_loop_task **p = &l->deferred_head;

        if (task->queued)
                return;
        task->queued = true;
        while (*p)
                p = &(*p)->next;
        *p = task;
}

static void pl_post(struct kh_loop *loop, struct kh_loop_task *task) {
        pl_defer(loop, task);
}

static struct poll_loop *the_loop;

static int pl_watch_start(struct kh_loop *loop, int fd, struct kh_loop_watch *w) {
        struct poll_loop *l = (struct poll_loop *) loop;

        l->watch = w;
        l->fd = fd;
        l->want_write = false;
        w->impl_ = l;
        return 0;
}

static void pl_watch_write(struct kh_loop_watch *w) {
        ((struct poll_loop *) w->impl_)->want_write = true;
}

static void pl_watch_stop(struct kh_loop_watch *w) {
        struct poll_loop *l = w->impl_;

        if (l)
                l->watch = NULL;
        w->impl_ = NULL;
}

static int pl_timer_start(struct kh_loop *loop, struct kh_loop_timer *t, unsigned ms) {
        struct poll_loop *l = (struct poll_loop *) loop;
        int64_t due = now_ms() + ms;

        assert_true(l->n_timers < TEST_TIMERS_MAX);
        memcpy(t->impl_, &due, sizeof(due));
        l->timers[l->n_timers++] = t;
        return 0;
}

static void pl_timer_stop(struct kh_loop_timer *t) {
        struct poll_loop *l = the_loop;

        for (size_t i = 0; i < l->n_timers; i++)
                if (l->timers[i] == t) {
                        l->timers[i] = l->timers[--l->n_timers];
                        return;
                }
}

static const struct kh_loop_ops poll_loop_ops = {
        .defer = pl_defer, .post = pl_post, .watch_start = pl_watch_start,
        .watch_write = pl_watch_write, .watch_stop = pl_watch_stop,
        .timer_start = pl_timer_start, .timer_stop = pl_timer_stop,
};

/* One pass: the deferred tasks, then at most 100 ms of waiting for the fd, then the
 * timers that are due. */
static void pl_pass(struct poll_loop *l) {
        struct kh_loop_task *list = l->deferred_head;
        struct pollfd p;
        int64_t now;

        l->deferred_head = NULL;
        kh_loop_run_deferred(list);
        if (l->watch) {
                p = (struct pollfd) { .fd = l->fd, .events = POLLIN | (l->want_write ? POLLOUT : 0) };
                if (poll(&p, 1, 100) > 0 && l->watch) {
                        if (p.revents & POLLOUT)
                                l->want_write = false;
                        l->watch->fn(l->watch);
                }
        } else {
                (void) poll(NULL, 0, 10);
        }
        now = now_ms();
        for (size_t i = 0; i < l->n_timers; i++) {
                struct kh_loop_timer *t = l->timers[i];
                int64_t due;

                memcpy(&due, t->impl_, sizeof(due));
                if (due <= now) {
                        pl_timer_stop(t);
                        t->fn(t);
                        i = (size_t) -1;         /* the list changed: from the start */
                }
        }
}

struct test_read {
        struct kh_store_read rd;
        int r;
        bool done;
        uint32_t version;
        size_t len;
        bool blob_ok;
};

static void on_test_read(struct kh_store_read *rd, int r, uint32_t version, const uint8_t *blob,
                         size_t len) {
        struct test_read *t = kh_container_of(rd, struct test_read, rd);

        assert_false(t->done);
        t->done = true;
        t->r = r;
        t->version = version;
        t->len = len;
        t->blob_ok = r == 0 && len == sizeof(BLOB) && memcmp(blob, BLOB, len) == 0;
}

#define READS 120

/* Submits n reads of owners "a0".."a<n-1>" (one pass's worth) and runs the loop until all
 * are answered (bounded: 20 s of passes). */
static void read_all(struct poll_loop *l, struct kh_store *s, struct test_read *t, size_t n) {
        char owner[32];
        int64_t end = now_ms() + 20000;
        size_t done;

        for (size_t i = 0; i < n; i++) {
                t[i] = (struct test_read) { .rd = { .done = on_test_read } };
                (void) snprintf(owner, sizeof(owner), "a%zu", i);
                assert_int_equal(kh_store_record_get_async(s, "acme", KH_RECORD_USER_KEY, owner,
                                                           &t[i].rd),
                                 0);
                assert_false(t[i].done);         /* never from inside the call */
        }
        do {
                pl_pass(l);
                done = 0;
                for (size_t i = 0; i < n; i++)
                        done += t[i].done;
        } while (done < n && now_ms() < end);
        assert_int_equal(done, n);
}

static struct kh_store *async_store(struct kh_config_storage *cfg, struct poll_loop *l) {
        struct kh_store *s = NULL;
        char owner[32];

        *l = (struct poll_loop) { .base = { .ops = &poll_loop_ops }, .fd = -1 };
        the_loop = l;
        assert_int_equal(kh_store_open(cfg, &s), 0);
        assert_false(kh_store_reads_async(s));
        assert_int_equal(kh_store_attach_loop(s, &l->base), 0);
        assert_true(kh_store_reads_async(s));
        /* every other owner has a record: the rest are -ENOENT */
        for (size_t i = 0; i < READS; i += 2) {
                (void) snprintf(owner, sizeof(owner), "a%zu", i);
                assert_int_equal(kh_store_record_put(s, "acme", KH_RECORD_USER_KEY, owner, 1,
                                                     BLOB, sizeof(BLOB)),
                                 0);
        }
        return s;
}

static void expect_reads(const struct test_read *t, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (i % 2) {
                        assert_int_equal(t[i].r, -ENOENT);
                        continue;
                }
                assert_int_equal(t[i].r, 0);
                assert_int_equal(t[i].version, 1);
                assert_true(t[i].blob_ok);
        }
}

/* Many reads in flight on one connection, answered each with its own row, in any batch. */
static void test_async_reads_pipelined(void **state) {
        struct poll_loop l;
        struct kh_store *s = async_store(*state, &l);
        static struct test_read t[READS];

        read_all(&l, s, t, READS);
        expect_reads(t, READS);
        read_all(&l, s, t, 1);                   /* a second batch on the same connection */
        expect_reads(t, 1);
        kh_store_detach_loop(s);
        assert_null(l.watch);
        assert_int_equal(l.n_timers, 0);
        s = kh_store_close(s);
}

/* The read connection lost: what was in flight is 503 (or was answered before), the next
 * reads make it again. */
static void test_async_reads_after_lost_connection(void **state) {
        struct poll_loop l;
        struct kh_store *s = async_store(*state, &l);
        static struct test_read t[READS];

        read_all(&l, s, t, 4);
        expect_reads(t, 4);
        terminate_sessions(*state);
        read_all(&l, s, t, READS);
        for (size_t i = 0; i < READS; i++)
                if (t[i].r != -KH_E_STORAGE_UNAVAILABLE)
                        assert_int_equal(t[i].r, i % 2 ? -ENOENT : 0);
        read_all(&l, s, t, READS);
        expect_reads(t, READS);
        s = kh_store_close(s);                   /* detaches */
}

/* The server down: reads are 503 at once, never waiting on the loop; once it is back they
 * succeed again (after KH_STORE_RECONNECT_MS). */
static void test_async_reads_server_down_then_back(void **state) {
        struct poll_loop l;
        struct kh_store *s = async_store(*state, &l);
        static struct test_read t[READS];

        server("stop\n");
        read_all(&l, s, t, READS);
        for (size_t i = 0; i < READS; i++)
                assert_int_equal(t[i].r, -KH_E_STORAGE_UNAVAILABLE);
        assert_string_not_equal(kh_store_last_error(s), "");
        server("start\n");
        (void) nanosleep(&(struct timespec) { .tv_sec = KH_STORE_RECONNECT_MS / 1000 + 1 }, NULL);
        read_all(&l, s, t, READS);
        expect_reads(t, READS);
        kh_store_detach_loop(s);
        s = kh_store_close(s);
}

/* keyhold keystore migrate's hold on the database: every connection holds the database's
 * advisory lock shared, so a store turns exclusive only while it is the one connected, and
 * then no other opens it, even after its own connection was lost and made again. */
static void test_exclusive_keeps_every_other_user_out(void **state) {
        struct kh_config_storage *cfg = *state;
        struct kh_store *a = NULL, *b = NULL, *c = NULL;
        char why[400];

        assert_int_equal(kh_store_open(cfg, &a), 0);
        assert_int_equal(kh_store_open(cfg, &b), 0);
        assert_int_equal(kh_store_exclusive(a), -EWOULDBLOCK);
        assert_int_equal(kh_store_ping(a), 0); /* still a user like any other */
        b = kh_store_close(b);
        /* the server ends b's session (and its share of the lock) a moment after b closed */
        for (int i = 0; i < 200 && kh_store_exclusive(a) == -EWOULDBLOCK; i++)
                (void) nanosleep(&(struct timespec) { .tv_nsec = 10 * 1000000L }, NULL);
        assert_int_equal(kh_store_exclusive(a), 0);

        expect_open_error(cfg, -EBUSY, "[storage] url", "keystore migrate");
        /* its connection lost and made again, it holds the database alone as before */
        terminate_sessions(cfg);
        assert_int_equal(kh_store_ping(a), 0);
        expect_open_error(cfg, -EBUSY, "[storage] url", "keystore migrate");

        a = kh_store_close(a);
        assert_int_equal(kh_store_open_explained(cfg, &c, why, sizeof(why)), 0);
        c = kh_store_close(c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_processes_starting_together_migrate_once),
                cmocka_unit_test_setup_teardown(test_start_up_errors_name_the_key_and_cause,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_lost_connection_is_unavailable_then_made_again,
                                                setup, teardown),
                cmocka_unit_test_setup_teardown(test_lock_wait_is_bounded_and_unavailable, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_server_restart_reconnects, setup, teardown),
                cmocka_unit_test_setup_teardown(test_async_reads_pipelined, setup, teardown),
                cmocka_unit_test_setup_teardown(test_async_reads_after_lost_connection, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_async_reads_server_down_then_back, setup,
                                                teardown),
                cmocka_unit_test_setup_teardown(test_exclusive_keeps_every_other_user_out, setup,
                                                teardown),
        };
        int failed;

        conninfo = getenv("KEYHOLD_TEST_PG_CONNINFO");
        password = getenv("KEYHOLD_TEST_PG_PASSWORD");
        control = getenv("KEYHOLD_TEST_PG_CONTROL");
        if (!conninfo || !password || !control) {
                fprintf(stderr, "KEYHOLD_TEST_PG_CONNINFO, KEYHOLD_TEST_PG_PASSWORD and "
                                "KEYHOLD_TEST_PG_CONTROL must be set: run this test through "
                                "with-postgresql.py (meson test does)\n");
                return 1;
        }
        /* KEYHOLD_TEST_FILTER=test_name: only that test (to repeat one while debugging) */
        if (getenv("KEYHOLD_TEST_FILTER")) {
                cmocka_set_test_filter(getenv("KEYHOLD_TEST_FILTER"));
                return cmocka_run_group_tests_name("postgresql", tests, NULL, NULL) ? 1 : 0;
        }
        failed = kh_store_conformance_run(&postgresql_backend);
        failed += cmocka_run_group_tests_name("postgresql", tests, NULL, NULL);
        return failed ? 1 : 0;
}
