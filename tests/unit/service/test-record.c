#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "service/record.h"

static const char alice[] = "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9";
static const char bob[] = "11111111-2222-3333-4444-555555555555";

static void test_record_aad_layout_is_exact(void **state) {
        uint8_t aad[KH_RECORD_AAD_MAX];
        static const uint8_t want[] = "keyhold:1\0acme\0\001u1\0\0\0\001\002";
        (void) state;

        /* "keyhold:1" NUL, tenant NUL, kind byte, owner NUL, version big-endian */
        assert_int_equal(kh_record_aad("acme", KH_RECORD_USER_KEY, "u1", 0x102, aad), 23);
        assert_memory_equal(aad, want, 23);
}

static void test_record_aad_rejects_oversize(void **state) {
        uint8_t aad[KH_RECORD_AAD_MAX];
        char owner[300];
        (void) state;

        memset(owner, 'a', sizeof(owner) - 1);
        owner[sizeof(owner) - 1] = 0;
        assert_int_equal(kh_record_aad("acme", KH_RECORD_USER_KEY, owner, 1, aad), -EINVAL);
}

static struct kh_secret *dek_of(uint8_t fill) {
        struct kh_secret *s = NULL;
        uint8_t b[32];

        memset(b, fill, sizeof(b));
        assert_int_equal(kh_secret_new_from(b, sizeof(b), &s), 0);
        return s;
}

static void test_record_opens_only_under_its_binding(void **state) {
        KH_CLEANUP(kh_secret_freep) struct kh_secret *dek = dek_of(1), *other = dek_of(2);
        KH_CLEANUP(kh_secret_freep) struct kh_secret *pt = dek_of(0x42), *out = NULL;
        KH_CLEANUP(kh_buf_freep) struct kh_buf blob;
        (void) state;

        kh_buf_init(&blob, 4096, false);
        assert_int_equal(kh_record_seal(dek, "acme", KH_RECORD_USER_KEY, alice, 1, pt, &blob), 0);
        assert_int_equal(blob.len, 12 + 32 + 16);

        assert_int_equal(kh_record_unseal(dek, "acme", KH_RECORD_USER_KEY, alice, 1, blob.data,
                                          blob.len, &out), 0);
        assert_true(kh_secret_equal(out, pt));
        out = kh_secret_free(out);

        /* another user, tenant, version or key: never opens */
        assert_int_equal(kh_record_unseal(dek, "acme", KH_RECORD_USER_KEY, bob, 1, blob.data,
                                          blob.len, &out), -KH_E_INTEGRITY);
        assert_int_equal(kh_record_unseal(dek, "default", KH_RECORD_USER_KEY, alice, 1, blob.data,
                                          blob.len, &out), -KH_E_INTEGRITY);
        assert_int_equal(kh_record_unseal(dek, "acme", KH_RECORD_USER_KEY, alice, 2, blob.data,
                                          blob.len, &out), -KH_E_INTEGRITY);
        assert_int_equal(kh_record_unseal(other, "acme", KH_RECORD_USER_KEY, alice, 1, blob.data,
                                          blob.len, &out), -KH_E_INTEGRITY);
        assert_null(out);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_record_aad_layout_is_exact),
                cmocka_unit_test(test_record_aad_rejects_oversize),
                cmocka_unit_test(test_record_opens_only_under_its_binding),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
