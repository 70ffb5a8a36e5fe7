#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/parse.h"

static void test_parse_u64_accepts_only_plain_digits(void **state) {
        uint64_t v = 7;
        (void) state;

        assert_int_equal(kh_parse_u64("8443", 4, 65535, &v), 0);
        assert_int_equal(v, 8443);
        assert_int_equal(kh_parse_u64("+1", 2, 10, &v), -EINVAL);
        assert_int_equal(kh_parse_u64(" 1", 2, 10, &v), -EINVAL);
        assert_int_equal(kh_parse_u64("0x10", 4, 100, &v), -EINVAL);
        assert_int_equal(kh_parse_u64("", 0, 100, &v), -EINVAL);
        assert_int_equal(kh_parse_u64("65536", 5, 65535, &v), -ERANGE);
        assert_int_equal(kh_parse_u64("99999999999999999999", 20, UINT64_MAX, &v), -ERANGE);
        assert_int_equal(v, 8443); /* untouched on failure */
}

static void test_parse_bool_spellings(void **state) {
        bool b = false;
        (void) state;

        assert_int_equal(kh_parse_bool("yes", &b), 0);
        assert_true(b);
        assert_int_equal(kh_parse_bool("off", &b), 0);
        assert_false(b);
        assert_int_equal(kh_parse_bool("TRUE", &b), -EINVAL);
        assert_int_equal(kh_parse_bool("", &b), -EINVAL);
}

static void test_parse_guid_canonicalises_and_rejects(void **state) {
        char g[KH_GUID_BUF];
        const char *up = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9";
        (void) state;

        assert_int_equal(kh_parse_guid(up, strlen(up), g), 0);
        assert_string_equal(g, "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9");
        assert_int_equal(kh_parse_guid("0a1b2c3d4e5f60718293a4b5c6d7e8f9", 32, g), -EINVAL);
        assert_int_equal(kh_parse_guid("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8fg", 36, g), -EINVAL);
        assert_int_equal(kh_parse_guid("{a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", 36, g), -EINVAL);
        assert_int_equal(kh_parse_guid("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9x", 37, g), -EINVAL);
}

static void test_tenant_id_syntax(void **state) {
        (void) state;

        assert_true(kh_tenant_id_is_valid("acme-2", 6));
        assert_true(kh_tenant_id_is_valid("0", 1));
        assert_false(kh_tenant_id_is_valid("-acme", 5));
        assert_false(kh_tenant_id_is_valid("Acme", 4));
        assert_false(kh_tenant_id_is_valid("a/b", 3));
        assert_false(kh_tenant_id_is_valid("", 0));
        assert_true(kh_tenant_id_is_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 63));
        assert_false(kh_tenant_id_is_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 64));
}

/* RFC 3629 section 4's syntax, each boundary on both sides. */
static void test_utf8_validity(void **state) {
        static const struct { const char *s; size_t len; bool ok; } cases[] = {
                { "", 0, true },
                { "plain ascii", 11, true },
                { "\xc3\xa9", 2, true },                 /* U+00E9 */
                { "\xc2\x80", 2, true },                 /* U+0080, smallest 2-byte */
                { "\xc1\xbf", 2, false },                /* overlong U+007F */
                { "\xc0\x80", 2, false },                /* overlong NUL */
                { "\xe0\xa0\x80", 3, true },             /* U+0800 */
                { "\xe0\x9f\xbf", 3, false },            /* overlong U+07FF */
                { "\xed\x9f\xbf", 3, true },             /* U+D7FF */
                { "\xed\xa0\x80", 3, false },            /* U+D800, a surrogate */
                { "\xee\x80\x80", 3, true },             /* U+E000 */
                { "\xef\xbf\xbf", 3, true },             /* U+FFFF */
                { "\xf0\x90\x80\x80", 4, true },         /* U+10000 */
                { "\xf0\x8f\xbf\xbf", 4, false },        /* overlong U+FFFF */
                { "\xf4\x8f\xbf\xbf", 4, true },         /* U+10FFFF */
                { "\xf4\x90\x80\x80", 4, false },        /* U+110000 */
                { "\xf5\x80\x80\x80", 4, false },
                { "\x80", 1, false },                    /* a lone continuation byte */
                { "\xc3", 1, false },                    /* truncated */
                { "\xe2\x82", 2, false },                /* truncated */
                { "\xe2\x28\xa1", 3, false },            /* bad continuation */
                { "a\0b", 3, false },                    /* NUL */
                { "\xff", 1, false },
        };
        (void) state;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
                if (kh_utf8_is_valid(cases[i].s, cases[i].len) != cases[i].ok)
                        fail_msg("case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_u64_accepts_only_plain_digits),
                cmocka_unit_test(test_parse_bool_spellings),
                cmocka_unit_test(test_parse_guid_canonicalises_and_rejects),
                cmocka_unit_test(test_tenant_id_syntax),
                cmocka_unit_test(test_utf8_validity),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
