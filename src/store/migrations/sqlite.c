/* SQLite schema. Column names and types stay portable so the PostgreSQL list can mirror
 * them; WITHOUT ROWID is SQLite-only and makes a record lookup one B-tree search. */
#include "store/migrations/migrations.h"

const struct kh_store_migration kh_store_sqlite_migrations[] = {
        { 1,
          "CREATE TABLE tenant_keys ("
          "  tenant      TEXT    NOT NULL,"
          "  version     INTEGER NOT NULL CHECK (version BETWEEN 0 AND 4294967295),"
          "  state       INTEGER NOT NULL CHECK (state BETWEEN 1 AND 5),"
          "  wrapped_dek BLOB    NOT NULL,"
          "  created_at  INTEGER NOT NULL,"
          "  PRIMARY KEY (tenant, version)"
          ") WITHOUT ROWID;"
          "CREATE TABLE records ("
          "  tenant      TEXT    NOT NULL,"
          "  kind        INTEGER NOT NULL,"
          "  owner       TEXT    NOT NULL,"
          "  key_version INTEGER NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),"
          "  blob        BLOB    NOT NULL,"
          "  created_at  INTEGER NOT NULL,"
          "  updated_at  INTEGER,"
          "  PRIMARY KEY (tenant, kind, owner)"
          ") WITHOUT ROWID;"
          /* re-encryption walks the records of one old version; record_count counts them */
          "CREATE INDEX records_by_key_version ON records (tenant, key_version);" },
        /* one row: how often and when a connection last opened this database (see
         * mark_opened() in sqlite-store.c for why opening writes) */
        { 2,
          "CREATE TABLE store_opens ("
          "  id             INTEGER PRIMARY KEY CHECK (id = 1),"
          "  opens          INTEGER NOT NULL,"
          "  last_opened_at INTEGER NOT NULL"
          ");"
          "INSERT INTO store_opens (id, opens, last_opened_at) VALUES (1, 0, 0);" },
        /* each wrapped DEK's signature by its own tenant key version (service/keyring.h);
         * NULL in rows written before, which `keyholdd --sign-unsigned-deks` signs on an
         * operator's word (a first design signed them on first use and noted it in meta;
         * meta stays, a key-value table for the store's own settings) */
        { 3,
          "ALTER TABLE tenant_keys ADD COLUMN signature BLOB;"
          "CREATE TABLE meta ("
          "  key   TEXT NOT NULL PRIMARY KEY,"
          "  value BLOB NOT NULL"
          ") WITHOUT ROWID;" },
        /* how often each version was used (durable use counters, written now and then from
         * the workers' in-memory counts), and the audit chains: one row per group commit
         * holding a run of consecutive records (JSON Lines when this was written, now the
         * binary form of audit/block.h; docs/audit.md "How blocks are stored"), so that
         * auditing every read costs one row per commit, not one per request */
        { 4,
          "ALTER TABLE tenant_keys ADD COLUMN encrypts INTEGER NOT NULL DEFAULT 0;"
          "ALTER TABLE tenant_keys ADD COLUMN decrypts INTEGER NOT NULL DEFAULT 0;"
          "CREATE TABLE audit_blocks ("
          "  chain     TEXT    NOT NULL,"
          "  first_seq INTEGER NOT NULL CHECK (first_seq >= 1),"
          "  last_seq  INTEGER NOT NULL CHECK (last_seq >= first_seq),"
          "  head_hash BLOB    NOT NULL,"
          "  data      BLOB    NOT NULL,"
          "  PRIMARY KEY (chain, first_seq)"
          ") WITHOUT ROWID;" },
        /* the key lifecycle: the state a revoked version had (reinstate returns it there);
         * NULL for every version that is not revoked */
        { 5,
          "ALTER TABLE tenant_keys ADD COLUMN prior_state INTEGER "
          "CHECK (prior_state IS NULL OR prior_state BETWEEN 1 AND 2);" },
        /* replicas (docs/storage.md, "Several replicas"): key_epoch is bumped by triggers in
         * the transaction of every change of a version's state or DEK and of the sealed flag, so that a replica
         * learns of another's change by reading one row (PostgreSQL also notifies); the
         * job leases say which replica runs a job (the re-encryption of a tenant) until when,
         * with its progress. SQLite has one process per database: the same tables keep the
         * schemas alike and cost one row write per key state change. */
        { 6,
          "CREATE TABLE key_epoch ("
          "  id    INTEGER PRIMARY KEY CHECK (id = 1),"
          "  epoch INTEGER NOT NULL"
          ");"
          "INSERT INTO key_epoch (id, epoch) VALUES (1, 0);"
          "CREATE TRIGGER key_epoch_insert AFTER INSERT ON tenant_keys BEGIN "
          "  UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1; END;"
          "CREATE TRIGGER key_epoch_update "
          "AFTER UPDATE OF state, prior_state, wrapped_dek, signature ON tenant_keys BEGIN "
          "  UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1; END;"
          "CREATE TRIGGER key_epoch_seal_insert AFTER INSERT ON meta "
          "WHEN NEW.key = 'keyhold.sealed' BEGIN "
          "  UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1; END;"
          "CREATE TRIGGER key_epoch_seal_update AFTER UPDATE ON meta "
          "WHEN NEW.key = 'keyhold.sealed' BEGIN "
          "  UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1; END;"
          "CREATE TABLE job_leases ("
          "  name       TEXT    NOT NULL PRIMARY KEY,"
          "  holder     TEXT    NOT NULL,"
          "  expires_at INTEGER NOT NULL,"
          "  data       BLOB    NOT NULL"
          ") WITHOUT ROWID;" },
};

const size_t kh_store_sqlite_n_migrations =
        sizeof(kh_store_sqlite_migrations) / sizeof(kh_store_sqlite_migrations[0]);
