#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "common/buf.h"

static void test_buf_append_within_max(void **state) {
        struct kh_buf b;
        (void) state;

        kh_buf_init(&b, 8, false);
        assert_int_equal(kh_buf_append(&b, "abcd", 4), 0);
        assert_int_equal(kh_buf_append_str(&b, "efgh"), 0);
        assert_int_equal(b.len, 8);
        assert_string_equal((const char *) b.data, "abcdefgh");
        kh_buf_free(&b);
        assert_null(b.data);
}

static void test_buf_append_past_max_fails_and_keeps_content(void **state) {
        struct kh_buf b;
        (void) state;

        kh_buf_init(&b, 5, true);
        assert_int_equal(kh_buf_append(&b, "abc", 3), 0);
        assert_int_equal(kh_buf_append(&b, "def", 3), -E2BIG);
        assert_int_equal(b.len, 3);
        assert_memory_equal(b.data, "abc", 4);
        kh_buf_reset(&b);
        assert_int_equal(b.len, 0);
        assert_int_equal(kh_buf_append(&b, "12345", 5), 0);
        kh_buf_free(&b);
}

static void test_buf_grows_sensitive_buffer_across_many_appends(void **state) {
        struct kh_buf b;
        (void) state;

        kh_buf_init(&b, 10000, true);
        for (int i = 0; i < 1000; i++)
                assert_int_equal(kh_buf_append(&b, "0123456789", 10), 0);
        assert_int_equal(b.len, 10000);
        assert_int_equal(b.data[9999], '9');
        assert_int_equal(kh_buf_append(&b, "x", 1), -E2BIG);
        kh_buf_free(&b);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_buf_append_within_max),
                cmocka_unit_test(test_buf_append_past_max_fails_and_keeps_content),
                cmocka_unit_test(test_buf_grows_sensitive_buffer_across_many_appends),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
