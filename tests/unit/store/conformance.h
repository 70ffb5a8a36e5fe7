/* The store conformance suite: the same cases on every storage backend. A backend's test
 * main describes how to make a fresh database and runs kh_store_conformance_run(). */
#pragma once

#include <stdint.h>

#include "config/config.h"

struct kh_store_test_backend {
        const char *driver;
        /* Makes a new, empty database and fills cfg (heap strings) to reach it. 0 or -errno. */
        int (*create)(struct kh_config_storage *cfg);
        /* Removes what create made and frees cfg's strings. */
        void (*destroy)(struct kh_config_storage *cfg);
        /* How many times migration version was recorded as applied, read with the backend's
         * own client (not through the store). 0 or -errno. */
        int (*migration_count)(const struct kh_config_storage *cfg, int version,
                               uint64_t *ret_count);
        /* Sets the signature of every row of tenant to NULL, as in a database written
         * before DEKs were signed (the store itself never writes such a row), with the
         * backend's own client. 0 or -errno. */
        int (*clear_signatures)(const struct kh_config_storage *cfg, const char *tenant);
};

/* Runs the suite; returns the number of failed tests. */
int kh_store_conformance_run(const struct kh_store_test_backend *backend);

/* Schema version this build's migrations end at (checked by hand, not read from the code). */
#define KH_STORE_TEST_SCHEMA_VERSION 6
