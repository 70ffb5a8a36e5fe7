/* The PostgreSQL backend's connection: what pg-conn.c gives pg-store.c. One struct
 * kh_pg_store is one libpq connection (loop-local, as every struct kh_store). A statement
 * that waits longer than KH_STORE_WAIT_MS for the database (statement_timeout, lock_timeout)
 * and a lost connection give -KH_E_STORAGE_UNAVAILABLE; the connection is then made again
 * on the next call, and after a failed attempt at most once per KH_STORE_RECONNECT_MS. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "store/store-backend.h"

enum {
        PG_ST_TENANT_KEY_INSERT,
        PG_ST_TENANT_KEYS,
        PG_ST_TENANT_KEY_SET_STATE,
        PG_ST_TENANT_KEY_SET_SIGNATURE,
        PG_ST_TENANT_KEY_EXISTS,
        PG_ST_TENANT_KEY_REWRAP,
        PG_ST_TENANT_KEY_ADD_USES,
        PG_ST_TENANT_KEY_UPDATE,
        PG_ST_TENANT_KEY_DESTROY,
        PG_ST_RECORDS_UNDER,
        PG_ST_RECORD_MOVE,
        PG_ST_AUDIT_APPEND,
        PG_ST_AUDIT_LAST,
        PG_ST_AUDIT_SCAN_ASC,
        PG_ST_AUDIT_SCAN_DESC,
        PG_ST_AUDIT_PRUNE,
        PG_ST_META_GET,
        PG_ST_META_PUT,
        PG_ST_RECORD_GET,
        PG_ST_RECORD_INSERT,
        PG_ST_RECORD_PUT,
        PG_ST_RECORD_COUNT,
        PG_ST_RECORDS_LIST,
        PG_ST_RECORD_DELETE,
        PG_ST_RECORDS_DELETE_PREFIX,
        PG_ST_PING,
        PG_ST_KEY_EPOCH,
        PG_ST_LEASE_TAKE,
        PG_ST_LEASE_GET,
        PG_ST_TX_BEGIN,
        PG_ST_TX_LOCK,
        PG_ST_TX_COMMIT,
        PG_ST_TX_ROLLBACK,
        PG_ST_SAVEPOINT,
        PG_ST_SAVEPOINT_RELEASE,
        PG_ST_SAVEPOINT_ROLLBACK,
        PG_ST_N_
};

/* pg_advisory_lock() keys ("khmigrat", "khwrite!", "khserve!" as big-endian ASCII): one
 * serialises the migrations of replicas starting together, one is the write lock of a
 * transaction (kh_store_tx_begin() takes "the write lock", as BEGIN IMMEDIATE does on
 * SQLite), and the last is the database's users' lock (store/lock.h on PostgreSQL): every
 * connection holds it shared for its whole session, kh_store_exclusive() exclusively. */
#define PG_MIGRATION_LOCK "7739556259110740340"
#define PG_WRITE_LOCK     "7739567292915410209"
#define PG_USERS_LOCK     "7739562839185450273"
/* How long opening a store, or kh_store_exclusive(), tries for PG_USERS_LOCK. */
#define PG_USERS_LOCK_WAIT_MS 1000

/* The SQL of each statement, prepared on every new connection (pg-store.c). */
extern const char *const kh_pg_statements[PG_ST_N_];

struct kh_pg_store {
        struct kh_store base;
        PGconn *conn;            /* NULL while there is none (lost, not yet made again) */
        char *url;
        char *password;          /* NULL: libpq's own sources (.pgpass); wiped when freed */
        int64_t last_connect_ms; /* CLOCK_MONOTONIC of the last attempt to reconnect */
        bool connect_failed;     /* ... which failed */
        bool exclusive;          /* holds PG_USERS_LOCK exclusively (kh_store_exclusive());
                                  * otherwise shared, on every connection it makes */
        bool in_tx;              /* between tx_begin and commit/rollback */
        bool tx_lost;            /* the connection went away inside a transaction: every call
                                  * fails until tx_rollback */
        bool listening;          /* LISTEN keyhold_keys was run on this connection */
        int schema_version;
        uint8_t head_hash[KH_STORE_AUDIT_HASH_LEN]; /* audit_last's answer */
        char error[256];
        struct kh_pg_async *async; /* the read connection (pg-async.c); NULL: none */
};

/* A statement on the read connection ends on the server after this long (57014), a second
 * before pg-async.c gives up on the connection (KH_STORE_WAIT_MS). */
#define KH_PG_ASYNC_STATEMENT_MS 4000

/* Parameters of one statement, all sent in binary: a text as its bytes, an integer as 8
 * bytes in network order (every integer column is BIGINT), a blob as its bytes. An
 * integer's bytes live in the struct itself and are pointed to only when it is run, so the
 * struct may be copied (returned by value). */
#define PG_PARAMS_MAX 8

struct kh_pg_params {
        int n;
        const char *values[PG_PARAMS_MAX];
        int lengths[PG_PARAMS_MAX];
        int formats[PG_PARAMS_MAX];
        uint64_t ints[PG_PARAMS_MAX];
        bool is_int[PG_PARAMS_MAX];
};

void kh_pg_param_text(struct kh_pg_params *p, const char *s);
void kh_pg_param_int(struct kh_pg_params *p, int64_t v);
void kh_pg_param_bytes(struct kh_pg_params *p, const uint8_t *b, size_t len);
void kh_pg_param_null(struct kh_pg_params *p);

/**
 * kh_pg_run() - runs prepared statement id with p (NULL: none), results in binary.
 * Makes the connection again first if it was lost (after a failed attempt, at most once
 * per KH_STORE_RECONNECT_MS). On success *ret is the result (the caller PQclear()s it; a
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK one). Returns 0, -KH_E_STORAGE_UNAVAILABLE (timeout,
 * lost connection, no connection yet), -ENOSPC, -ENOMEM or -EIO; s->error says why.
 */
KH_MUST_CHECK int kh_pg_run(struct kh_pg_store *s, int id, const struct kh_pg_params *p,
                            PGresult **ret);

/**
 * kh_pg_run_batch() - runs prepared statement id once for each of params[0..n), all sent at
 * once (pipeline mode: one round trip). In the open transaction, or with none open in one
 * of its own (BEGIN, the write lock, COMMIT in the same round trip), all or none.
 * *ret_changes: the rows they changed together. Returns kh_pg_run()'s errors; after one the
 * caller's transaction is aborted (its own was rolled back).
 */
KH_MUST_CHECK int kh_pg_run_batch(struct kh_pg_store *s, int id, const struct kh_pg_params *params,
                                  size_t n, int *ret_changes);

/* The number of rows a command changed (INSERT/UPDATE/DELETE). */
int kh_pg_changes(PGresult *res);

/* Column readers for binary results: false when the value is NULL or not of the size its
 * type has (a damaged or unexpected row). */
bool kh_pg_get_int(const PGresult *res, int row, int col, int64_t *ret);

static inline bool kh_pg_is_null(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) != 0;
}

KH_DEFINE_CLEANUP(PQclear, PGresult *)

/* libpq's message on one line, in dst (n bytes). */
void kh_pg_copy_message(char *dst, size_t n, const char *msg);

/* Starts a connection to s's database without waiting (PQconnectStartParams; NULL: out of
 * memory), with the read connection's statement timeout. */
PGconn *kh_pg_connect_start(const struct kh_pg_store *s);

/* Whether res (a failed result, or NULL) means that c is gone; else the errno of res. */
bool kh_pg_connection_lost(PGconn *c, const PGresult *res);
int kh_pg_error_of(const PGresult *res);

/* pg-async.c: the read connection driven by a loop (store.h's asynchronous reads). */
int kh_pg_async_attach(struct kh_store *store, struct kh_loop *loop);
void kh_pg_async_detach(struct kh_store *store);
bool kh_pg_async_ready(const struct kh_store *store);
void kh_pg_async_record_get(struct kh_store *store, struct kh_store_read *rd);
void kh_pg_async_free(struct kh_pg_store *s); /* detaches first */
/* kh_store_key_epoch_wait() (store.h) on this connection. */
KH_MUST_CHECK int kh_pg_key_epoch_wait(struct kh_store *store, int timeout_ms);

int kh_pg_open(const struct kh_config_storage *cfg, struct kh_store **ret, char *why, size_t n);
void kh_pg_close(struct kh_store *store);
int kh_pg_tx_begin(struct kh_store *store);
int kh_pg_tx_commit(struct kh_store *store);
void kh_pg_tx_rollback(struct kh_store *store);
int kh_pg_exclusive(struct kh_store *store);

static inline struct kh_pg_store *kh_pg_of(struct kh_store *s) {
        return kh_container_of(s, struct kh_pg_store, base);
}
