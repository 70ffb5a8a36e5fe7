/* The audit export's line reader: kh_audit_json_parse() on arbitrary bytes, as an export
 * file handed to `keyhold audit verify` may hold. Invariants: the result is 0 or -EINVAL
 * (-ENOMEM aside); a refusal names a documented reason and a seq in range; an accepted
 * record is valid, and formats to one line within KH_AUDIT_LINE_MAX that parses again to
 * the same record, whose format is the same line (format(parse(x)) is a fixed point). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz-audit.h"
#include "audit/json.h"

static struct kh_audit_parsed p1, p2; /* large: not on the stack */

static bool reason_documented(const char *r) {
        static const char *const reasons[] = {
                "empty line", "line too long", "not JSON", "duplicate field", "not an object",
                "unknown field", "seq", "time", "tenant", "actor", "action", "target", "outcome",
                "key_version", "request_id", "client", "count", "prev_hash", "hash", "signature",
                "replica",
        };
        const char prefix[] = "malformed: ";

        if (!r || strncmp(r, prefix, strlen(prefix)) != 0)
                return false;
        for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
                if (strcmp(r + strlen(prefix), reasons[i]) == 0)
                        return true;
        return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf once = { 0 }, twice = { 0 };
        const char *reason = NULL;
        int r;

        if (size > KH_AUDIT_LINE_MAX + 16)
                return 0;
        r = kh_audit_json_parse((const char *) data, size, &p1, &reason);
        if (r == -ENOMEM)
                return 0;
        if (r < 0) {
                CHECK(r == -EINVAL);
                CHECK(reason_documented(reason));
                CHECK(p1.rec.seq <= KH_AUDIT_SEQ_MAX);
                return 0;
        }
        CHECK(r == 0 && reason == NULL);
        CHECK(kh_audit_record_is_valid(&p1.rec));
        CHECK((strcmp(p1.rec.action, KH_AUDIT_ACTION_CHECKPOINT) == 0) == (p1.rec.signature != NULL));

        kh_buf_init(&once, KH_AUDIT_LINE_MAX + 1, false);
        CHECK(kh_audit_json_format(&p1.rec, &once) == 0);
        CHECK(once.len >= 2 && once.data[once.len - 1] == '\n');
        CHECK(memchr(once.data, '\n', once.len - 1) == NULL);

        CHECK(kh_audit_json_parse((const char *) once.data, once.len, &p2, &reason) == 0);
        CHECK(same_record(&p1.rec, &p2.rec));
        kh_buf_init(&twice, KH_AUDIT_LINE_MAX + 1, false);
        CHECK(kh_audit_json_format(&p2.rec, &twice) == 0);
        CHECK(twice.len == once.len && memcmp(twice.data, once.data, once.len) == 0);

        return 0;
}
