/* The storage record decoder: kh_record_unseal() on arbitrary blob bytes, as a corrupt or
 * hostile database row would hand it over, under a fixed DEK and binding. Invariants: the
 * only result is -KH_E_INTEGRITY, except for the one blob sealed for this binding
 * (fuzz/gen-record-seed.py made it, outside keyhold's C code, and it is in the corpus):
 * that one opens, to the expected plaintext, and under no other binding. Nothing else was
 * ever sealed under this DEK, so anything else that opened would be a forgery. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "common/errors.h"
#include "common/secret.h"
#include "service/record.h"

#define FUZZ_MAX (64u * 1024)

#define TENANT "acme"
#define OWNER "6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c07"
#define VERSION 7u

static const char plaintext[] = "keyhold fuzz record plaintext!!!";

/* fuzz/corpus/record/valid-sealed: DEK 00 01 .. 1f, nonce 00 01 .. 0b, the binding above. */
static const uint8_t valid_blob[] = {
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x2c, 0x67, 0xaf,
        0x73, 0xaa, 0x89, 0xa6, 0x3b, 0xeb, 0x34, 0xed, 0xf1, 0x91, 0x9b, 0x1d, 0x0e, 0xec, 0xa4,
        0xe3, 0x14, 0x80, 0x17, 0x3e, 0x15, 0x56, 0x13, 0x80, 0xfd, 0x69, 0x48, 0x21, 0x93, 0x6c,
        0x9d, 0xf6, 0x32, 0x2c, 0xfb, 0xb4, 0xa0, 0x9f, 0xd7, 0xc2, 0xa7, 0x8d, 0xf9, 0xe0, 0x73,
};

static struct kh_secret *dek, *expected; /* made once, kept for the run */

static void init(void) {
        uint8_t key[32];

        if (dek)
                return;
        for (size_t i = 0; i < sizeof(key); i++)
                key[i] = (uint8_t) i;
        CHECK(kh_secret_new_from(key, sizeof(key), &dek) == 0);
        CHECK(kh_secret_new_from(plaintext, sizeof(plaintext) - 1, &expected) == 0);
}

/* The valid blob must not open anywhere else: the binding is what stops a row copied into
 * another tenant, user, kind or key version. */
static void check_other_bindings(const uint8_t *blob, size_t len) {
        static const struct {
                const char *tenant, *owner;
                enum kh_record_kind kind;
                uint32_t version;
        } others[] = {
                { "acme2", OWNER, KH_RECORD_USER_KEY, VERSION },
                { "acm", OWNER, KH_RECORD_USER_KEY, VERSION },
                { TENANT, "6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c08", KH_RECORD_USER_KEY, VERSION },
                { TENANT, OWNER, (enum kh_record_kind) 2, VERSION },
                { TENANT, OWNER, KH_RECORD_USER_KEY, VERSION + 1 },
                { TENANT, OWNER, KH_RECORD_USER_KEY, VERSION | 0x01000000u },
        };

        for (size_t i = 0; i < sizeof(others) / sizeof(others[0]); i++) {
                struct kh_secret *pt = NULL;
                CHECK(kh_record_unseal(dek, others[i].tenant, others[i].kind, others[i].owner,
                                       others[i].version, blob, len, &pt) == -KH_E_INTEGRITY);
                CHECK(pt == NULL);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = NULL;
        bool is_valid = size == sizeof(valid_blob) && memcmp(data, valid_blob, size) == 0;
        int r;

        if (size > FUZZ_MAX)
                return 0;
        init();
        r = kh_record_unseal(dek, TENANT, KH_RECORD_USER_KEY, OWNER, VERSION, data, size, &pt);
        if (!is_valid) {
                CHECK(r == -KH_E_INTEGRITY && pt == NULL);
                return 0;
        }
        CHECK(r == 0);
        CHECK(kh_secret_equal(pt, expected));
        check_other_bindings(data, size);
        return 0;
}
