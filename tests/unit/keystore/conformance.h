/* The key-store conformance suite: the same cases run on every backend. A backend's test
 * main fills in a struct kh_ks_conformance and calls kh_ks_conformance_run(). */
#pragma once

#include "keystore/keystore.h"

struct kh_ks_conformance {
        const char *name; /* cmocka group name */
        void *ctx;        /* the backend's, passed back below */
        /* A new, empty key store for one case. Returns 0 or a negative error. */
        int (*open_empty)(void *ctx, struct kh_keystore **ret);
        /* Called after the case closed its store: remove what open_empty made. */
        void (*cleanup)(void *ctx);
};

/* Runs every case; returns the number of failed cases (cmocka's result). */
int kh_ks_conformance_run(const struct kh_ks_conformance *c);

/* Tenant key size the cases use: the smallest allowed, to keep them fast. */
#define KH_KS_TEST_BITS 2048
