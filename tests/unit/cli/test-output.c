/* Human output: terminal-safe text, aligned tables, JSON cells, audit lines. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/audit-line.h"
#include "cli/output.h"

static void assert_printable(const char *in, const char *want) {
        char *got = kh_out_printable(in);

        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
}

static void test_printable_escapes_controls_and_bad_utf8(void **state) {
        (void) state;
        assert_printable("plain text 123", "plain text 123");
        assert_printable("a\x1b[2Jb", "a\\x1b[2Jb");           /* ESC: no terminal command */
        assert_printable("tab\tnl\ncr\r", "tab\\x09nl\\x0acr\\x0d");
        assert_printable("del\x7f", "del\\x7f");
        assert_printable("back\\slash", "back\\\\slash");       /* \ itself is escaped */
        assert_printable("Z\xc3\xbcrich", "Z\xc3\xbcrich");      /* UTF-8 stays */
        assert_printable("\xe2\x82\xac \xf0\x9f\x94\x91", "\xe2\x82\xac \xf0\x9f\x94\x91");
        assert_printable("c1 \xc2\x9b" "1m", "c1 \\xc2\\x9b1m");  /* C1 CSI */
        assert_printable("\xc0\xaf", "\\xc0\\xaf");              /* overlong */
        assert_printable("\xed\xa0\x80", "\\xed\\xa0\\x80");     /* surrogate */
        assert_printable("cut \xe2\x82", "cut \\xe2\\x82");      /* truncated sequence */
        assert_printable("\xff", "\\xff");
        assert_printable("", "");
}

static void test_width_counts_characters(void **state) {
        (void) state;
        assert_int_equal(kh_out_width(""), 0);
        assert_int_equal(kh_out_width("abc"), 3);
        assert_int_equal(kh_out_width("Z\xc3\xbcrich"), 6);
        assert_int_equal(kh_out_width("\xe2\x82\xac"), 1);
}

static void test_cells_of_json_values(void **state) {
        (void) state;
        json_auto_t *s = json_string("active"), *i = json_integer(-42), *big = NULL;
        json_auto_t *real = json_real(12.25), *t = json_true(), *n = json_null();
        char buf[32];

        big = json_integer(INT64_MAX);
        assert_string_equal(kh_out_cell(s, buf, sizeof(buf)), "active");
        assert_string_equal(kh_out_cell(i, buf, sizeof(buf)), "-42");
        assert_string_equal(kh_out_cell(big, buf, sizeof(buf)), "9223372036854775807");
        assert_string_equal(kh_out_cell(real, buf, sizeof(buf)), "12.2"); /* %.1f, to even */
        assert_string_equal(kh_out_cell(t, buf, sizeof(buf)), "true");
        assert_null(kh_out_cell(n, buf, sizeof(buf)));
        assert_null(kh_out_cell(NULL, buf, sizeof(buf)));
}

static char *print_to_string(const struct kh_table *t) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        assert_non_null(f);
        assert_int_equal(kh_table_print(t, f), 0);
        assert_int_equal(fclose(f), 0);
        return text;
}

static const struct kh_table_column columns[] = {
        { "VERSION", "version", true },
        { "STATE", "state", false },
        { "RECORDS", "records", true },
        { "NOTE", "note", false },
};

static void test_table_aligns_columns(void **state) {
        (void) state;
        struct kh_table *t = NULL;
        json_auto_t *v1 = json_pack("{s:i, s:s, s:I, s:s}", "version", 1, "state", "archived",
                                    "records", (json_int_t) 1234567, "note", "Z\xc3\xbcrich");
        json_auto_t *v2 = json_pack("{s:i, s:s, s:i}", "version", 12, "state", "active",
                                    "records", 0);
        const char *row[] = { "3", "x\x1b", NULL, "" };
        char *text;

        assert_non_null(v1);
        assert_non_null(v2);
        assert_int_equal(kh_table_new(columns, 4, &t), 0);
        assert_int_equal(kh_table_add_object(t, v1), 0);
        assert_int_equal(kh_table_add_object(t, v2), 0); /* no "note": shows "-" */
        assert_int_equal(kh_table_add_row(t, row), 0);
        text = print_to_string(t);
        /* Right-aligned numbers (the title too), left-aligned text, two spaces between
         * columns, none after the last; widths in characters ("Zürich" is 6). */
        assert_string_equal(text,
                            "VERSION  STATE     RECORDS  NOTE\n"
                            "      1  archived  1234567  Z\xc3\xbcrich\n"
                            "     12  active          0  -\n"
                            "      3  x\\x1b           -  -\n");
        free(text);
        kh_table_free(t);
}

static void test_table_column_count_bounds(void **state) {
        (void) state;
        struct kh_table *t = NULL;

        assert_int_equal(kh_table_new(columns, 0, &t), -EINVAL);
        assert_int_equal(kh_table_new(columns, KH_TABLE_COLUMNS_MAX + 1, &t), -EINVAL);
        assert_null(t);
}

static void test_empty_table_prints_its_titles(void **state) {
        (void) state;
        struct kh_table *t = NULL;
        char *text;

        assert_int_equal(kh_table_new(columns, 2, &t), 0);
        text = print_to_string(t);
        assert_string_equal(text, "VERSION  STATE\n");
        free(text);
        kh_table_free(t);
}

static void test_json_is_compact_one_line(void **state) {
        (void) state;
        json_auto_t *v = json_pack("{s:i, s:s, s:[i,i]}", "b", 1, "a", "x\ny", "c", 1, 2);
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        assert_non_null(f);
        assert_int_equal(kh_out_json(f, v), 0);
        assert_int_equal(fclose(f), 0);
        assert_string_equal(text, "{\"b\":1,\"a\":\"x\\ny\",\"c\":[1,2]}\n"); /* member order kept */
        free(text);
}

static void assert_audit_line(const char *record_json, const char *want) {
        json_auto_t *rec = json_loads(record_json, 0, NULL);
        char *got;

        assert_non_null(rec);
        got = kh_audit_line_format(rec);
        assert_non_null(got);
        assert_string_equal(got, want);
        free(got);
}

static void test_audit_lines(void **state) {
        (void) state;
        /* a member's read: every optional field present */
        assert_audit_line(
                "{\"seq\":812,\"time\":\"2026-12-06T14:03:11.042Z\",\"tenant\":\"acme\","
                "\"actor\":\"6f1c2a4e\",\"action\":\"read\",\"target\":\"6f1c2a4e\","
                "\"outcome\":\"ok\",\"key_version\":2,\"request_id\":\"5f0c\","
                "\"client\":\"192.0.2.10\",\"count\":1,\"prev_hash\":\"00\",\"hash\":\"11\"}",
                "812  2026-12-06T14:03:11.042Z  6f1c2a4e  read  6f1c2a4e  ok  key_version=2  "
                "client=192.0.2.10  request_id=5f0c");
        /* the server's own record: empty target, no version, client or request id */
        assert_audit_line(
                "{\"seq\":1,\"time\":\"2026-12-06T14:00:00.000Z\",\"tenant\":\"\","
                "\"actor\":\"keyhold\",\"action\":\"start\",\"target\":\"\",\"outcome\":\"ok\","
                "\"key_version\":0,\"request_id\":\"\",\"client\":\"\",\"count\":1}",
                "1  2026-12-06T14:00:00.000Z  keyhold  start  -  ok");
        /* an aggregated refusal with a hostile actor */
        assert_audit_line(
                "{\"seq\":9,\"time\":\"2026-12-06T14:00:09.000Z\",\"actor\":\"-\\u001b[31m\","
                "\"action\":\"refused\",\"target\":\"/user-keys\",\"outcome\":\"invalid_token\","
                "\"key_version\":0,\"request_id\":\"r9\",\"client\":\"2001:db8::1\",\"count\":40}",
                "9  2026-12-06T14:00:09.000Z  -\\x1b[31m  refused  /user-keys  invalid_token  "
                "client=2001:db8::1  request_id=r9  count=40");
        /* missing fields show "-" rather than vanish */
        assert_audit_line("{\"seq\":5}", "5  -  -  -  -  -");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_printable_escapes_controls_and_bad_utf8),
                cmocka_unit_test(test_width_counts_characters),
                cmocka_unit_test(test_cells_of_json_values),
                cmocka_unit_test(test_table_aligns_columns),
                cmocka_unit_test(test_table_column_count_bounds),
                cmocka_unit_test(test_empty_table_prints_its_titles),
                cmocka_unit_test(test_json_is_compact_one_line),
                cmocka_unit_test(test_audit_lines),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
