/* PostgreSQL schema: the same tables, columns and versions as sqlite.c, in PostgreSQL's types
 * (BIGINT for every integer, BYTEA for every blob). A version here means what it means there,
 * so that a database's schema_migrations reads the same on either backend. */
#include "store/migrations/migrations.h"

const struct kh_store_migration kh_store_postgresql_migrations[] = {
        { 1,
          "CREATE TABLE tenant_keys ("
          "  tenant      TEXT   NOT NULL,"
          "  version     BIGINT NOT NULL CHECK (version BETWEEN 0 AND 4294967295),"
          "  state       BIGINT NOT NULL CHECK (state BETWEEN 1 AND 5),"
          "  wrapped_dek BYTEA  NOT NULL,"
          "  created_at  BIGINT NOT NULL,"
          "  PRIMARY KEY (tenant, version)"
          ");"
          /* COLLATE "C": owners compare byte by byte, as in SQLite, so that the prefix
           * ranges of records_list and the (kind, owner) order of records_under agree */
          "CREATE TABLE records ("
          "  tenant      TEXT   NOT NULL,"
          "  kind        BIGINT NOT NULL,"
          "  owner       TEXT   COLLATE \"C\" NOT NULL,"
          "  key_version BIGINT NOT NULL CHECK (key_version BETWEEN 0 AND 4294967295),"
          "  blob        BYTEA  NOT NULL,"
          "  created_at  BIGINT NOT NULL,"
          "  updated_at  BIGINT,"
          "  PRIMARY KEY (tenant, kind, owner)"
          ");"
          /* kind and owner after the version: records_under pages through one version in
           * (kind, owner) order with a range scan of this index alone */
          "CREATE INDEX records_by_key_version ON records (tenant, key_version, kind, owner);" },
        /* kept for the same numbering as SQLite; this backend does not write it on open
         * (the reason SQLite does is its WAL index, see sqlite-store.c) */
        { 2,
          "CREATE TABLE store_opens ("
          "  id             BIGINT PRIMARY KEY CHECK (id = 1),"
          "  opens          BIGINT NOT NULL,"
          "  last_opened_at BIGINT NOT NULL"
          ");"
          "INSERT INTO store_opens (id, opens, last_opened_at) VALUES (1, 0, 0);" },
        { 3,
          "ALTER TABLE tenant_keys ADD COLUMN signature BYTEA;"
          "CREATE TABLE meta ("
          "  key   TEXT  NOT NULL PRIMARY KEY,"
          "  value BYTEA NOT NULL"
          ");" },
        { 4,
          "ALTER TABLE tenant_keys ADD COLUMN encrypts BIGINT NOT NULL DEFAULT 0;"
          "ALTER TABLE tenant_keys ADD COLUMN decrypts BIGINT NOT NULL DEFAULT 0;"
          "CREATE TABLE audit_blocks ("
          "  chain     TEXT   NOT NULL,"
          "  first_seq BIGINT NOT NULL CHECK (first_seq >= 1),"
          "  last_seq  BIGINT NOT NULL CHECK (last_seq >= first_seq),"
          "  head_hash BYTEA  NOT NULL,"
          "  data      BYTEA  NOT NULL,"
          "  PRIMARY KEY (chain, first_seq)"
          ");" },
        { 5,
          "ALTER TABLE tenant_keys ADD COLUMN prior_state BIGINT "
          "CHECK (prior_state IS NULL OR prior_state BETWEEN 1 AND 2);" },
        /* FOR EACH ROW: a compare-and-set or insert-if-absent that changed nothing bumps
         * nothing; pg_notify is delivered at commit, to every replica's LISTEN connection */
        { 6,
          "CREATE TABLE key_epoch ("
          "  id    BIGINT PRIMARY KEY CHECK (id = 1),"
          "  epoch BIGINT NOT NULL"
          ");"
          "INSERT INTO key_epoch (id, epoch) VALUES (1, 0);"
          "CREATE FUNCTION keyhold_key_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$"
          "BEGIN"
          "  UPDATE key_epoch SET epoch = epoch + 1 WHERE id = 1;"
          "  PERFORM pg_notify('keyhold_keys', '');"
          "  RETURN NULL;"
          "END $$;"
          "CREATE TRIGGER key_epoch_insert AFTER INSERT ON tenant_keys "
          "FOR EACH ROW EXECUTE FUNCTION keyhold_key_epoch_bump();"
          "CREATE TRIGGER key_epoch_update "
          "AFTER UPDATE OF state, prior_state, wrapped_dek, signature ON tenant_keys "
          "FOR EACH ROW EXECUTE FUNCTION keyhold_key_epoch_bump();"
          "CREATE TRIGGER key_epoch_seal AFTER INSERT OR UPDATE ON meta "
          "FOR EACH ROW WHEN (NEW.key = 'keyhold.sealed') "
          "EXECUTE FUNCTION keyhold_key_epoch_bump();"
          "CREATE TABLE job_leases ("
          "  name       TEXT   NOT NULL PRIMARY KEY,"
          "  holder     TEXT   NOT NULL,"
          "  expires_at BIGINT NOT NULL,"
          "  data       BYTEA  NOT NULL"
          ");" },
};

const size_t kh_store_postgresql_n_migrations =
        sizeof(kh_store_postgresql_migrations) / sizeof(kh_store_postgresql_migrations[0]);
