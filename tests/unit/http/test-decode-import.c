/* http/decode-import.c: the body of POST /admin/import/user-keys. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "common/limits.h"
#include "http/decode.h"

#define K1 "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="  /* 32 bytes of 0x01 */
#define K2 "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="  /* 32 bytes of 0x02 */
#define U1 "0A0B0C0D-0000-4000-8000-000000000001"
#define U2 "0a0b0c0d-0000-4000-8000-000000000002"

static int parse(const char *body, struct kh_req_import *imp) {
        return kh_req_import_parse(body, strlen(body), imp);
}

static void test_batch_decodes_with_canonical_users(void **state) {
        struct kh_req_import imp;
        (void) state;

        assert_int_equal(parse("{\"keys\":[{\"user\":\"" U1 "\",\"key\":\"" K1 "\"},"
                               "{\"key\":\"" K2 "\",\"user\":\"" U2 "\"}],\"overwrite\":true}", &imp), 0);
        assert_int_equal(imp.n, 2);
        assert_true(imp.overwrite);
        assert_false(imp.verify);
        assert_string_equal(imp.entries[0].user, "0a0b0c0d-0000-4000-8000-000000000001");
        assert_string_equal(imp.entries[1].user, U2);
        assert_int_equal(kh_secret_len(imp.entries[0].key), KH_USER_KEY_LEN);
        kh_req_import_free(&imp);
        assert_null(imp.entries);

        assert_int_equal(parse("{\"verify\":true,\"keys\":[{\"user\":\"" U2 "\",\"key\":\"" K2 "\"}]}", &imp), 0);
        assert_true(imp.verify);
        assert_false(imp.overwrite);
        kh_req_import_free(&imp);
}

static void test_refuses_each_bad_body(void **state) {
        static const struct { const char *body; int r; } bad[] = {
                { "", -KH_E_INVALID_IMPORT },
                { "[]", -KH_E_INVALID_IMPORT },
                { "{}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":{}}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[1]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[{\"user\":\"" U1 "\"}]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[{\"user\":\"" U1 "\",\"key\":\"" K1 "\",\"x\":1}]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[{\"user\":\"not-a-guid\",\"key\":\"" K1 "\"}]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[{\"user\":\"" U1 "\",\"key\":\"AAAA\"}]}", -KH_E_INVALID_KEY },
                { "{\"keys\":[{\"user\":\"" U1 "\",\"key\":1}]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[{\"user\":\"" U1 "\",\"key\":\"" K1 "\"}],\"overwrite\":1}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[{\"user\":\"" U1 "\",\"key\":\"" K1 "\"}],\"dryRun\":true}", -KH_E_INVALID_IMPORT },
                /* one member twice, in two spellings */
                { "{\"keys\":[{\"user\":\"" U1 "\",\"key\":\"" K1 "\"},"
                  "{\"user\":\"0a0b0c0d-0000-4000-8000-000000000001\",\"key\":\"" K2 "\"}]}", -KH_E_INVALID_IMPORT },
                { "{\"keys\":[],\"keys\":[]}", -KH_E_INVALID_IMPORT },
        };
        (void) state;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct kh_req_import imp;
                int r = parse(bad[i].body, &imp);
                if (r != bad[i].r)
                        fail_msg("body %zu: %d, want %d", i, r, bad[i].r);
                assert_null(imp.entries);
                assert_int_equal(imp.n, 0);
        }
}

/* KH_IMPORT_BATCH_MAX keys pass; one more is refused. */
static void test_batch_size_is_bounded(void **state) {
        char *body = malloc(KH_REQ_IMPORT_BODY_MAX + 1024);
        struct kh_req_import imp;
        (void) state;

        assert_non_null(body);
        for (size_t n = KH_IMPORT_BATCH_MAX; n <= KH_IMPORT_BATCH_MAX + 1; n++) {
                size_t len = (size_t) snprintf(body, 16, "{\"keys\":[");
                for (size_t i = 0; i < n; i++)
                        len += (size_t) snprintf(body + len, 200, "%s{\"user\":\"0a0b0c0d-0000-4000-8000-%012zu\",\"key\":\"" K1 "\"}",
                                                 i ? "," : "", i);
                len += (size_t) snprintf(body + len, 8, "]}");
                assert_true(len <= KH_REQ_IMPORT_BODY_MAX);
                assert_int_equal(kh_req_import_parse(body, len, &imp),
                                 n == KH_IMPORT_BATCH_MAX ? 0 : -KH_E_INVALID_IMPORT);
                if (n == KH_IMPORT_BATCH_MAX)
                        assert_int_equal(imp.n, KH_IMPORT_BATCH_MAX);
                kh_req_import_free(&imp);
        }
        assert_int_equal(kh_req_import_parse(body, KH_REQ_IMPORT_BODY_MAX + 1, &imp), -KH_E_BODY_TOO_LARGE);
        free(body);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_batch_decodes_with_canonical_users),
                cmocka_unit_test(test_refuses_each_bad_body),
                cmocka_unit_test(test_batch_size_is_bounded),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
