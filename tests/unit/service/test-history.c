/* The cursor of GET /user-keys/history (service/history.h): what it says, what it refuses,
 * and that a formatted one reads back as it was. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/errors.h"
#include "service/history.h"

static int parse(const char *text, size_t n, uint64_t *before) {
        return kh_history_cursor_parse(text, strlen(text), n, before);
}

static void test_cursor_plain_seq_is_the_unnamed_chains(void **state) {
        uint64_t before[3] = { 7, 7, 7 };
        (void) state;

        /* the form a single server always answered: the other chains are done */
        assert_int_equal(parse("812", 3, before), 0);
        assert_int_equal(before[0], 812);
        assert_int_equal(before[1], 0);
        assert_int_equal(before[2], 0);
        assert_int_equal(parse("9223372036854775807", 1, before), 0);
        assert_int_equal(before[0], INT64_MAX);
}

static void test_cursor_entries_name_chains_by_number(void **state) {
        uint64_t before[12] = { 0 };
        (void) state;

        assert_int_equal(parse("0_6.2_4", 3, before), 0);
        assert_int_equal(before[0], 6);
        assert_int_equal(before[1], 0);
        assert_int_equal(before[2], 4);
        assert_int_equal(parse("11_1", 12, before), 0);
        assert_int_equal(before[11], 1);
        assert_int_equal(before[0], 0);
}

static void test_cursor_refuses_anything_else(void **state) {
        static const char *const bad[] = {
                "", "0", "-1", "+1", " 1", "1 ", "9223372036854775808", "18446744073709551616",
                "3_5", "1_0", "1_9223372036854775808", "1_1.1_2", "0_1.0_1", "_", "_5", "1_",
                "01_5", "00_5", ".", "1_5.", ".1_5", "1_5..2_3", "a_5", "1_5a", "1_1_2", "1.5",
                "1_-5", "1_+5", "1_0x5", "0_1.2_3.1_4.2_5",
        };
        uint64_t before[3];
        (void) state;

        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                print_message("%s\n", bad[i]);
                assert_int_equal(parse(bad[i], 3, before), -KH_E_INVALID_PARAMETER);
        }
        /* a chain past the tenant's is refused whatever the count */
        assert_int_equal(parse("1_5", 1, before), -KH_E_INVALID_PARAMETER);
        /* not NUL-terminated: only len bytes count */
        assert_int_equal(kh_history_cursor_parse("1_5x", 3, 3, before), 0);
        assert_int_equal(before[1], 5);
}

static void test_cursor_formats_and_reads_back(void **state) {
        static const uint64_t cases[][3] = {
                { 0, 0, 0 }, { 812, 0, 0 }, { 0, 5, 0 }, { 6, 5, 4 }, { 0, 0, INT64_MAX },
                { INT64_MAX, 1, 0 },
        };
        static const char *const want[] = {
                "", "812", "1_5", "0_6.1_5.2_4", "2_9223372036854775807",
                "0_9223372036854775807.1_1",
        };
        (void) state;

        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct kh_buf b;
                uint64_t back[3];

                kh_buf_init(&b, KH_HISTORY_CURSOR_MAX, false);
                assert_int_equal(kh_history_cursor_format(3, cases[i], &b), 0);
                assert_int_equal(b.len, strlen(want[i]));
                assert_memory_equal(b.data, want[i], b.len);
                if (b.len) {
                        assert_int_equal(kh_history_cursor_parse((const char *) b.data, b.len,
                                                                 3, back), 0);
                        assert_memory_equal(back, cases[i], sizeof(back));
                }
                kh_buf_free(&b);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_cursor_plain_seq_is_the_unnamed_chains),
                cmocka_unit_test(test_cursor_entries_name_chains_by_number),
                cmocka_unit_test(test_cursor_refuses_anything_else),
                cmocka_unit_test(test_cursor_formats_and_reads_back),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
