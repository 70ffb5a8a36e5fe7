/* Versioned schema migrations, one list per backend. A migration is applied once, in
 * order, inside the transaction that records its version in schema_migrations; applied
 * migrations are never edited, only followed by new ones. */
#pragma once

#include <stddef.h>

struct kh_store_migration {
        int version;     /* 1, 2, 3, ... without gaps */
        const char *sql; /* one or more statements */
};

extern const struct kh_store_migration kh_store_sqlite_migrations[];
extern const size_t kh_store_sqlite_n_migrations;

extern const struct kh_store_migration kh_store_postgresql_migrations[];
extern const size_t kh_store_postgresql_n_migrations;
