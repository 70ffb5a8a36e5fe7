#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"

static void test_err_info_maps_keyhold_errors(void **state) {
        (void) state;
        const struct kh_err_info *e = kh_err_info(-KH_E_KEY_NOT_FOUND);

        assert_int_equal(e->status, 404);
        assert_string_equal(e->code, "key_not_found");
        assert_int_equal(kh_err_info(-KH_E_BODY_TOO_LARGE)->status, 413);
        assert_string_equal(kh_err_info(-KH_E_MISSING_TOKEN)->code, "missing_token");
}

static void test_err_info_maps_errno_and_garbage_to_internal(void **state) {
        (void) state;

        assert_int_equal(kh_err_info(-EIO)->status, 500);
        assert_string_equal(kh_err_info(-ENOMEM)->code, "internal_error");
        assert_int_equal(kh_err_info(-KH_E_FIRST_)->status, 500);
        assert_int_equal(kh_err_info(-KH_E_LAST_)->status, 500);
        assert_int_equal(kh_err_info(12345678)->status, 500);
}

/* The server's own conditions (a damaged record, not ready, a full disk, a busy job pool, a
 * failed backup, sealed, a key store that went away, a database that does not answer) are
 * 5xx; whatever a client can cause is 4xx. */
static void test_every_client_error_is_4xx_except_server_conditions(void **state) {
        (void) state;

        for (int e = KH_E_FIRST_ + 1; e < KH_E_LAST_; e++) {
                const struct kh_err_info *i = kh_err_info(-e);
                if (e == KH_E_INTEGRITY || e == KH_E_NOT_READY || e == KH_E_INSUFFICIENT_STORAGE ||
                    e == KH_E_SEALED || e == KH_E_BUSY || e == KH_E_BACKUP_FAILED ||
                    e == KH_E_KEYSTORE_UNAVAILABLE || e == KH_E_STORAGE_UNAVAILABLE)
                        assert_true(i->status >= 500);
                else
                        assert_in_range(i->status, 400, 499);
                assert_non_null(i->code);
                assert_non_null(i->message);
        }
        /* DESIGN.md "Scaling out": a request that waited 5 s on the database */
        assert_int_equal(kh_err_info(-KH_E_STORAGE_UNAVAILABLE)->status, 503);
        assert_string_equal(kh_err_info(-KH_E_STORAGE_UNAVAILABLE)->code, "storage_unavailable");
        assert_string_equal(kh_strerror(-ENOENT), "No such file or directory");
        assert_string_equal(kh_strerror(-KH_E_INVALID_KEY), "invalid_key");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_err_info_maps_keyhold_errors),
                cmocka_unit_test(test_err_info_maps_errno_and_garbage_to_internal),
                cmocka_unit_test(test_every_client_error_is_4xx_except_server_conditions),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
