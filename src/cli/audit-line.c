#include "cli/audit-line.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>

#include "cli/output.h"
#include "common/buf.h"
#include "common/cleanup.h"

/* Far more than a line of valid record fields: seven strings of at most 1024 bytes, each at
 * most four times as long once made printable. */
#define AUDIT_LINE_MAX (64 * 1024)

/* Appends "  " (unless first), label and the printable text of v ("-" when it has none). */
static int append_field(struct kh_buf *b, const char *label, const json_t *v, bool first) {
        KH_CLEANUP(kh_freep) char *shown = NULL;
        char number[32];
        const char *text = kh_out_cell(v, number, sizeof(number));
        int r = 0;

        shown = kh_out_printable(text && *text ? text : "-");
        if (!shown)
                return -ENOMEM;
        if (!first)
                r = kh_buf_append_str(b, "  ");
        if (r == 0 && label)
                r = kh_buf_append_str(b, label);
        if (r == 0)
                r = kh_buf_append_str(b, shown);
        return r;
}

static bool is_integer(const json_t *v, json_int_t n) {
        return json_is_integer(v) && json_integer_value(v) == n;
}

static bool is_empty_string(const json_t *v) {
        return json_is_string(v) && json_string_length(v) == 0;
}

char *kh_audit_line_format(const json_t *rec) {
        static const char *const always[] = { "time", "actor", "action", "target", "outcome" };
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };
        const json_t *v;
        int r;

        kh_buf_init(&b, AUDIT_LINE_MAX, false);
        r = append_field(&b, NULL, json_object_get(rec, "seq"), true);
        for (size_t i = 0; r == 0 && i < KH_ELEMENTSOF(always); i++)
                r = append_field(&b, NULL, json_object_get(rec, always[i]), false);

        v = json_object_get(rec, "key_version");
        if (r == 0 && v && !is_integer(v, 0))
                r = append_field(&b, "key_version=", v, false);
        v = json_object_get(rec, "client");
        if (r == 0 && v && !is_empty_string(v))
                r = append_field(&b, "client=", v, false);
        v = json_object_get(rec, "request_id");
        if (r == 0 && v && !is_empty_string(v))
                r = append_field(&b, "request_id=", v, false);
        v = json_object_get(rec, "count");
        if (r == 0 && v && !is_integer(v, 1))
                r = append_field(&b, "count=", v, false);
        /* records of several replicas' chains mix in a tail: whose chain a seq is of */
        v = json_object_get(rec, "replica");
        if (r == 0 && v && !is_empty_string(v))
                r = append_field(&b, "replica=", v, false);
        return r < 0 ? NULL : strdup((const char *) b.data); /* b holds a field: not empty */
}
