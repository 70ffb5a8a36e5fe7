/* The JSON Lines codec of audit records (src/audit/json.c) against docs/audit.md "Export":
 * the documented example line, lines written by tests/integration/auditref.py (an
 * independent writer), format(parse(x)) as a fixed point, and the reader's strictness:
 * every member missing, of a wrong type or out of range, hex and base64 spellings, the
 * signature's presence, line length, UTF-8. Usage: test-audit-json DATA_DIR. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "audit/json.h"

static const char *data_dir;
static struct kh_audit_parsed parsed, parsed2; /* large: not on the stack */

/* docs/audit.md "The hash" and "Export": the example record as its export line. */
static const char example_line[] =
        "{\"seq\":1,\"time\":\"2026-12-06T14:00:00.000Z\",\"tenant\":\"acme\",\"actor\":\"keyhold\","
        "\"action\":\"start\",\"target\":\"\",\"outcome\":\"ok\",\"key_version\":0,\"request_id\":\"\","
        "\"client\":\"\",\"count\":1,\"prev_hash\":"
        "\"0000000000000000000000000000000000000000000000000000000000000000\",\"hash\":"
        "\"2e5c2522d0e8f2998d81387be4431b55b236e17710b47540e89e4e545bd89f49\"}\n";

/* A checkpoint line (its hash and signature need not verify here: the codec does not check
 * them). The signature is 256 bytes: 0x00, 0x01, ... */
static char checkpoint_line[4096];

static int make_checkpoint_line(void **state) {
        static uint8_t sig[256];
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        struct kh_audit_record r = {
                .seq = 10, .tenant = "acme", .actor = "keyhold", .action = "checkpoint",
                .target = "", .outcome = "ok", .request_id = "", .client = "", .count = 1,
                .signature = sig, .signature_len = sizeof(sig),
        };

        memcpy(r.time, "2026-12-06T14:00:12.340Z", KH_AUDIT_TIME_LEN + 1);
        for (size_t i = 0; i < sizeof(sig); i++)
                sig[i] = (uint8_t) i;
        for (size_t i = 0; i < KH_AUDIT_HASH_LEN; i++) {
                r.prev_hash[i] = (uint8_t) (0xa0 + i);
                r.hash[i] = (uint8_t) (0x10 + i);
        }
        (void) state;
        kh_buf_init(&out, sizeof(checkpoint_line) - 1, false);
        if (kh_audit_json_format(&r, &out) < 0)
                return -1;
        memcpy(checkpoint_line, out.data, out.len + 1);
        return 0;
}

static int parse(const char *s, size_t n, const char **reason) {
        return kh_audit_json_parse(s, n, &parsed, reason);
}

/* format(rec) as a NUL-terminated string; the caller frees it. */
static char *format(const struct kh_audit_record *rec) {
        struct kh_buf out;

        kh_buf_init(&out, KH_AUDIT_LINE_MAX + 1, false);
        assert_int_equal(kh_audit_json_format(rec, &out), 0);
        return (char *) out.data;
}

static void assert_records_equal(const struct kh_audit_record *a, const struct kh_audit_record *b) {
        assert_int_equal(a->seq, b->seq);
        assert_string_equal(a->time, b->time);
        assert_string_equal(a->tenant, b->tenant);
        assert_string_equal(a->actor, b->actor);
        assert_string_equal(a->action, b->action);
        assert_string_equal(a->target, b->target);
        assert_string_equal(a->outcome, b->outcome);
        assert_int_equal(a->key_version, b->key_version);
        assert_string_equal(a->request_id, b->request_id);
        assert_string_equal(a->client, b->client);
        assert_int_equal(a->count, b->count);
        assert_memory_equal(a->prev_hash, b->prev_hash, KH_AUDIT_HASH_LEN);
        assert_memory_equal(a->hash, b->hash, KH_AUDIT_HASH_LEN);
        assert_int_equal(a->signature_len, b->signature_len);
        if (a->signature_len)
                assert_memory_equal(a->signature, b->signature, a->signature_len);
}

/* s with the first `from` replaced by `to`; the caller frees it. */
static char *replace(const char *s, const char *from, const char *to) {
        const char *at = strstr(s, from);
        size_t n = strlen(s), f = strlen(from), t = strlen(to);
        char *r;

        assert_non_null(at);
        r = malloc(n - f + t + 1);
        assert_non_null(r);
        memcpy(r, s, (size_t) (at - s));
        memcpy(r + (at - s), to, t);
        memcpy(r + (at - s) + t, at + f, n - (size_t) (at - s) - f + 1);
        return r;
}

static void assert_refused(const char *line, const char *want_reason, uint64_t want_seq) {
        const char *reason = NULL;

        if (parse(line, strlen(line), &reason) != -EINVAL || strcmp(reason, want_reason) != 0 ||
            parsed.rec.seq != want_seq) {
                print_error("line %s\n  expected %s (seq %llu), got %s (seq %llu)\n", line,
                            want_reason, (unsigned long long) want_seq, reason ? reason : "success",
                            (unsigned long long) parsed.rec.seq);
                fail();
        }
}

static void assert_refused_edit(const char *base, const char *from, const char *to,
                                const char *want_reason, uint64_t want_seq) {
        char *line = replace(base, from, to);

        assert_refused(line, want_reason, want_seq);
        free(line);
}

static void test_example_record_formats_as_documented(void **state) {
        struct kh_audit_record r = {
                .seq = 1, .tenant = "acme", .actor = "keyhold", .action = "start", .target = "",
                .outcome = "ok", .key_version = 0, .request_id = "", .client = "", .count = 1,
        };
        char *line;
        (void) state;

        memcpy(r.time, "2026-12-06T14:00:00.000Z", KH_AUDIT_TIME_LEN + 1);
        kh_audit_record_hash(&r, r.hash);
        line = format(&r);
        assert_string_equal(line, example_line);
        free(line);
}

static void test_example_line_parses_to_the_example_record(void **state) {
        const char *reason = NULL;
        (void) state;

        assert_int_equal(parse(example_line, strlen(example_line), &reason), 0);
        assert_null(reason);
        assert_int_equal(parsed.rec.seq, 1);
        assert_string_equal(parsed.rec.time, "2026-12-06T14:00:00.000Z");
        assert_string_equal(parsed.rec.tenant, "acme");
        assert_string_equal(parsed.rec.action, "start");
        assert_string_equal(parsed.rec.target, "");
        assert_int_equal(parsed.rec.count, 1);
        assert_null(parsed.rec.signature);
        assert_int_equal(parsed.rec.hash[0], 0x2e);
        assert_int_equal(parsed.rec.hash[31], 0x49);
        /* without its newline, and not NUL-terminated */
        assert_int_equal(parse(example_line, strlen(example_line) - 1, &reason), 0);
}

/* Lines written by auditref.py (Python's json, independently of jansson) come out of
 * parse-then-format byte for byte: one canonical spelling for both writers. */
static void test_python_written_lines_are_canonical(void **state) {
        static const char *const files[] = { "intact.jsonl", "server.jsonl" };
        size_t lines = 0;
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(files); i++) {
                char path[4096], *line = NULL;
                size_t cap = 0;
                ssize_t n;
                FILE *f;

                (void) snprintf(path, sizeof(path), "%s/%s", data_dir, files[i]);
                f = fopen(path, "re");
                assert_non_null(f);
                while ((n = getline(&line, &cap, f)) > 0) {
                        const char *reason = NULL;
                        char *again;

                        assert_int_equal(parse(line, (size_t) n, &reason), 0);
                        again = format(&parsed.rec);
                        assert_string_equal(again, line);
                        free(again);
                        lines++;
                }
                free(line);
                fclose(f);
        }
        assert_int_equal(lines, 12 + 6);
}

/* Other spellings of the same JSON (member order, whitespace, escapes) are read as the same
 * record, and format() gives the canonical line, which is then a fixed point. */
static void test_other_spellings_reach_the_canonical_fixed_point(void **state) {
        static const char *const spellings[] = {
                " {\"hash\":\"2e5c2522d0e8f2998d81387be4431b55b236e17710b47540e89e4e545bd89f49\","
                "\"count\":1,\"client\":\"\",\"request_id\":\"\",\"key_version\":0,"
                "\"outcome\":\"ok\",\"target\":\"\",\"action\":\"start\",\"actor\":\"keyhold\","
                "\"tenant\":\"acme\",\"time\":\"2026-12-06T14:00:00.000Z\",\"seq\":1,"
                "\"prev_hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"}",
                "{ \"seq\" : 1 ,\t\"time\":\"2026-12-06T14:00:00.000Z\",\"tenant\":\"\\u0061cme\","
                "\"actor\":\"keyhold\",\"action\":\"st\\u0061rt\",\"target\":\"\",\"outcome\":\"ok\","
                "\"key_version\":-0,\"request_id\":\"\",\"client\":\"\",\"count\":1,\"prev_hash\":"
                "\"0000000000000000000000000000000000000000000000000000000000000000\",\"hash\":"
                "\"2e5c2522d0e8f2998d81387be4431b55b236e17710b47540e89e4e545bd89f49\"}\r\n",
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(spellings); i++) {
                const char *reason = NULL;
                char *once, *twice;

                assert_int_equal(parse(spellings[i], strlen(spellings[i]), &reason), 0);
                once = format(&parsed.rec);
                assert_string_equal(once, example_line);
                assert_int_equal(kh_audit_json_parse(once, strlen(once), &parsed2, &reason), 0);
                assert_records_equal(&parsed.rec, &parsed2.rec);
                twice = format(&parsed2.rec);
                assert_string_equal(twice, once);
                free(once);
                free(twice);
        }
}

/* Escapes: control characters, quotes, backslashes, non-ASCII, and strings of exactly the
 * maximum length survive the round trip. */
static void test_strings_round_trip(void **state) {
        static char ctl[KH_AUDIT_STR_MAX + 1], wide[KH_AUDIT_STR_MAX + 1];
        struct kh_audit_record r = {
                .seq = 9, .tenant = "Zürich \"q\" \\ / \t\n\r\b\f", .actor = ctl,
                .action = "key.list", .target = wide, .outcome = "ok", .request_id = "\x7f",
                .client = "\xe2\x80\xa8\xf0\x9f\x94\x91", .count = 3, .key_version = UINT32_MAX,
        };
        const char *reason = NULL;
        char *line, *again;
        (void) state;

        memcpy(r.time, "2028-02-29T23:59:59.999Z", KH_AUDIT_TIME_LEN + 1);
        for (size_t i = 0; i < KH_AUDIT_STR_MAX; i++)
                ctl[i] = (char) (1 + i % 31);
        for (size_t i = 0; i < KH_AUDIT_STR_MAX; i += 2)
                memcpy(wide + i, "\xc3\xa9", 2); /* 512 x "é": 1024 bytes */
        line = format(&r);
        assert_int_equal(parse(line, strlen(line), &reason), 0);
        assert_records_equal(&r, &parsed.rec);
        again = format(&parsed.rec);
        assert_string_equal(again, line);
        free(line);
        free(again);
}

/* The writer's strings are jansson's compact dump of the same values, byte for byte (the
 * writer does not use jansson: json.c says why). */
static void test_writer_escapes_as_jansson_does(void **state) {
        static char every[128];
        struct kh_audit_record r = {
                .seq = 12, .tenant = "Z\xc3\xbcrich \"q\" \\ / \x7f", .actor = every,
                .action = "\xe2\x80\xa8", .target = "", .outcome = "ok", .request_id = "\t",
                .client = "\xf0\x9f\x94\x91", .count = 1, .key_version = 7,
        };
        const char *strs[] = { r.tenant, r.actor, r.action, r.target, r.outcome, r.request_id,
                               r.client };
        char *line, *dumped;
        (void) state;

        for (size_t i = 0; i < 127; i++)
                every[i] = (char) (i + 1);           /* 0x01 .. 0x7f */
        memcpy(r.time, "2026-12-06T14:00:00.000Z", KH_AUDIT_TIME_LEN + 1);
        line = format(&r);
        for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
                json_t *v = json_string(strs[i]);

                assert_non_null(v);
                dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                json_decref(v);
                assert_non_null(dumped);
                assert_non_null(strstr(line, dumped));
                free(dumped);
        }
        free(line);
}

/* The longest valid records fit KH_AUDIT_LINE_MAX: seven strings of 1024 control
 * characters, each written as a six-byte escape; a checkpoint with six of them and an
 * RSA-8192 signature. */
static void test_longest_records_fit_a_line(void **state) {
        static char ctl[KH_AUDIT_STR_MAX + 1];
        static uint8_t sig[KH_AUDIT_SIG_MAX];
        struct kh_audit_record r = {
                .seq = KH_AUDIT_SEQ_MAX, .tenant = ctl, .actor = ctl, .action = ctl,
                .target = ctl, .outcome = ctl, .request_id = ctl, .client = ctl,
                .count = UINT32_MAX, .key_version = UINT32_MAX,
        };
        const char *reason = NULL;
        char *line;
        (void) state;

        memset(ctl, 0x01, KH_AUDIT_STR_MAX);
        memset(sig, 0xff, sizeof(sig));
        memcpy(r.time, "9999-12-31T23:59:59.999Z", KH_AUDIT_TIME_LEN + 1);
        line = format(&r);
        assert_true(strlen(line) > 7 * 6 * KH_AUDIT_STR_MAX);
        assert_true(strlen(line) <= KH_AUDIT_LINE_MAX + 1);
        assert_int_equal(parse(line, strlen(line), &reason), 0);
        assert_records_equal(&r, &parsed.rec);
        free(line);

        r.action = KH_AUDIT_ACTION_CHECKPOINT;
        r.signature = sig;
        r.signature_len = sizeof(sig);
        line = format(&r);
        assert_true(strlen(line) > 6 * 6 * KH_AUDIT_STR_MAX + 1368);
        assert_true(strlen(line) <= KH_AUDIT_LINE_MAX + 1);
        assert_int_equal(parse(line, strlen(line), &reason), 0);
        assert_records_equal(&r, &parsed.rec);
        free(line);
}

static void test_format_refuses_invalid_records_and_keeps_out(void **state) {
        static uint8_t sig[4];
        struct kh_audit_record r = {
                .seq = 1, .tenant = "acme", .actor = "keyhold", .action = "start", .target = "",
                .outcome = "ok", .request_id = "", .client = "", .count = 1,
        };
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        (void) state;

        memcpy(r.time, "2026-12-06T14:00:00.000Z", KH_AUDIT_TIME_LEN + 1);
        kh_buf_init(&out, 4096, false);
        assert_int_equal(kh_buf_append(&out, "x", 1), 0);
        r.signature = sig; /* a signature on a record that is not a checkpoint */
        r.signature_len = sizeof(sig);
        assert_int_equal(kh_audit_json_format(&r, &out), -EINVAL);
        r.signature = NULL;
        r.signature_len = 0;
        r.count = 0;
        assert_int_equal(kh_audit_json_format(&r, &out), -EINVAL);
        r.count = 1;
        r.action = KH_AUDIT_ACTION_CHECKPOINT; /* a checkpoint without one */
        assert_int_equal(kh_audit_json_format(&r, &out), -EINVAL);
        r.action = "start";
        r.seq = 0;
        assert_int_equal(kh_audit_json_format(&r, &out), -EINVAL);
        r.seq = 1;
        assert_int_equal(out.len, 1);

        kh_buf_free(&out);
        kh_buf_init(&out, 100, false); /* too small for the line */
        assert_int_equal(kh_buf_append(&out, "x", 1), 0);
        assert_int_equal(kh_audit_json_format(&r, &out), -E2BIG);
        assert_int_equal(out.len, 1);
}

/* Each member removed, and each member given values of the wrong types. */
static void test_missing_and_mistyped_members(void **state) {
        static const char *const members[] = { "seq", "time", "tenant", "actor", "action",
                                               "target", "outcome", "key_version", "request_id",
                                               "client", "count", "prev_hash", "hash" };
        static const char *const ints[] = { "seq", "key_version", "count" };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(members); i++) {
                json_t *wrong[] = { json_null(), json_true(), json_false(), json_real(1.0),
                                    json_array(), json_object(), NULL, NULL };
                char reason[64];
                uint64_t seq = strcmp(members[i], "seq") == 0 ? 0 : 1;
                bool is_int = false;
                json_t *obj;
                char *line;

                for (size_t k = 0; k < KH_ELEMENTSOF(ints); k++)
                        is_int |= strcmp(members[i], ints[k]) == 0;
                wrong[6] = is_int ? json_string("1") : json_integer(1);
                (void) snprintf(reason, sizeof(reason), "malformed: %s", members[i]);

                obj = json_loads(example_line, 0, NULL);
                assert_non_null(obj);
                assert_int_equal(json_object_del(obj, members[i]), 0);
                line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
                assert_refused(line, reason, seq);
                free(line);

                for (size_t k = 0; wrong[k]; k++) {
                        assert_int_equal(json_object_set_new(obj, members[i], wrong[k]), 0);
                        line = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
                        assert_refused(line, reason, seq);
                        free(line);
                }
                json_decref(obj);
        }
}

static void test_integers_out_of_range(void **state) {
        const char *reason = NULL;
        char *line;
        (void) state;

        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":0", "malformed: seq", 0);
        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":-1", "malformed: seq", 0);
        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":1.0", "malformed: seq", 0);
        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":1e0", "malformed: seq", 0);
        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":01", "malformed: not JSON", 0);
        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":+1", "malformed: not JSON", 0);
        /* 2^63 does not fit jansson's integer: the whole line is refused, as auditref.py does */
        assert_refused_edit(example_line, "\"seq\":1", "\"seq\":9223372036854775808",
                            "malformed: not JSON", 0);
        line = replace(example_line, "\"seq\":1", "\"seq\":9223372036854775807");
        assert_int_equal(parse(line, strlen(line), &reason), 0);
        assert_int_equal(parsed.rec.seq, (uint64_t) INT64_MAX);
        free(line);

        assert_refused_edit(example_line, "\"key_version\":0", "\"key_version\":4294967296",
                            "malformed: key_version", 1);
        assert_refused_edit(example_line, "\"key_version\":0", "\"key_version\":-1",
                            "malformed: key_version", 1);
        line = replace(example_line, "\"key_version\":0", "\"key_version\":4294967295");
        assert_int_equal(parse(line, strlen(line), &reason), 0);
        assert_int_equal(parsed.rec.key_version, UINT32_MAX);
        free(line);

        assert_refused_edit(example_line, "\"count\":1", "\"count\":0", "malformed: count", 1);
        assert_refused_edit(example_line, "\"count\":1", "\"count\":4294967296",
                            "malformed: count", 1);
        assert_refused_edit(example_line, "\"count\":1", "\"count\":1e400", "malformed: not JSON",
                            0);
}

static void test_hashes_are_64_lower_case_hex_digits(void **state) {
        static const char zero[] = "\"prev_hash\":\"0000000000000000000000000000000000000000000000000000000000000000\"";
        (void) state;

        assert_refused_edit(example_line, "2e5c2522d0e8", "2E5C2522D0E8", "malformed: hash", 1);
        assert_refused_edit(example_line, "2e5c2522d0e8", "2e5c2522d0eg", "malformed: hash", 1);
        assert_refused_edit(example_line, "2e5c2522d0e8", "2e5c2522d0e", "malformed: hash", 1);
        assert_refused_edit(example_line, "2e5c2522d0e8", "2e5c2522d0e80", "malformed: hash", 1);
        assert_refused_edit(example_line, "2e5c2522d0e8", " 2e5c2522d0e", "malformed: hash", 1);
        assert_refused_edit(example_line, zero, "\"prev_hash\":\"\"", "malformed: prev_hash", 1);
        assert_refused_edit(example_line, zero,
                            "\"prev_hash\":\"0x00000000000000000000000000000000000000000000000000000000000000\"",
                            "malformed: prev_hash", 1);
}

static void test_signature_is_canonical_padded_base64_on_checkpoints_only(void **state) {
        const char *reason = NULL;
        const char *sig = strstr(checkpoint_line, "\"signature\":\"") + 13;
        char *b64 = strndup(sig, (size_t) (strchr(sig, '"') - sig));
        char *line, *edited, key[64];
        (void) state;

        assert_int_equal(parse(checkpoint_line, strlen(checkpoint_line), &reason), 0);
        assert_int_equal(parsed.rec.signature_len, 256);
        assert_int_equal(parsed.rec.signature[255], 255);
        assert_int_equal(strlen(b64), 344); /* 256 bytes: two padding characters */
        assert_string_equal(b64 + 340, "/w==");

        /* padding bits that the canonical spelling has as zero */
        assert_refused_edit(checkpoint_line, "/w==", "/x==", "malformed: signature", 10);
        assert_refused_edit(checkpoint_line, "/w==", "/w=", "malformed: signature", 10);
        assert_refused_edit(checkpoint_line, "/w==", "/w", "malformed: signature", 10);
        assert_refused_edit(checkpoint_line, "/w==", "_w==", "malformed: signature", 10);
        assert_refused_edit(checkpoint_line, "/w==", "/w==\\n", "malformed: signature", 10);
        assert_refused_edit(checkpoint_line, b64, "", "malformed: signature", 10);
        (void) snprintf(key, sizeof(key), "\"signature\":\"%.4s", b64);
        edited = replace(checkpoint_line, key, "\"signature\":\" AAE");
        assert_refused(edited, "malformed: signature", 10);
        free(edited);
        edited = replace(checkpoint_line, key, "\"signature\":null,\"x\":\"");
        assert_refused(edited, "malformed: signature", 10);
        free(edited);

        /* presence: a checkpoint needs one, any other record must not have one */
        edited = replace(checkpoint_line, "\",\"signature\":\"", "\",\"x\":\"");
        assert_refused(edited, "malformed: unknown field", 10);
        free(edited);
        line = strdup(checkpoint_line);
        *strstr(line, ",\"signature\"") = 0;
        edited = malloc(strlen(line) + 3);
        (void) snprintf(edited, strlen(line) + 3, "%s}\n", line);
        assert_refused(edited, "malformed: signature", 10);
        free(edited);
        free(line);
        assert_refused_edit(checkpoint_line, "\"action\":\"checkpoint\"", "\"action\":\"start\"",
                            "malformed: signature", 10);
        edited = malloc(strlen(example_line) + 400);
        (void) snprintf(edited, strlen(example_line) + 400, "%.*s,\"signature\":\"%s\"}\n",
                        (int) strlen(example_line) - 2, example_line, b64);
        assert_refused(edited, "malformed: signature", 1);
        free(edited);

        /* longer than the longest signature (1024 bytes) */
        line = malloc(4096);
        memset(line, 'A', 1368 + 4);
        line[1372] = 0;
        edited = replace(checkpoint_line, b64, line);
        assert_refused(edited, "malformed: signature", 10);
        free(edited);
        memcpy(line + 1366, "==", 3); /* exactly 1024 bytes: accepted */
        edited = replace(checkpoint_line, b64, line);
        assert_int_equal(parse(edited, strlen(edited), &reason), 0);
        assert_int_equal(parsed.rec.signature_len, KH_AUDIT_SIG_MAX);
        free(edited);
        free(line);
        free(b64);
}

static void test_unknown_duplicate_and_non_object(void **state) {
        (void) state;

        assert_refused_edit(example_line, "{\"seq\":1,", "{\"seq\":1,\"note\":\"\",",
                            "malformed: unknown field", 1);
        assert_refused_edit(example_line, "{\"seq\":1,", "{\"seq\":1,\"Seq\":1,",
                            "malformed: unknown field", 1);
        assert_refused_edit(example_line, "{\"seq\":1,", "{\"seq\":1,\"seq\":1,",
                            "malformed: duplicate field", 0);
        assert_refused_edit(example_line, "\"count\":1,", "\"count\":1,\"count\":1,",
                            "malformed: duplicate field", 0);
        {       /* a member twice in what is not JSON anyway: "not JSON", whichever comes first */
                char *twice = replace(example_line, "{\"seq\":1,", "{\"seq\":1,\"seq\":1,");

                assert_refused_edit(twice, "}\n", "}}\n", "malformed: not JSON", 0);
                assert_refused_edit(twice, "\"ok\"", "\"ok", "malformed: not JSON", 0);
                free(twice);
        }
        assert_refused("[1]", "malformed: not an object", 0);
        assert_refused("\"seq\"", "malformed: not an object", 0);
        assert_refused("null\n", "malformed: not an object", 0);
        assert_refused("{", "malformed: not JSON", 0);
        assert_refused("seq=1", "malformed: not JSON", 0);
        assert_refused("\n", "malformed: empty line", 0);
        assert_refused("", "malformed: empty line", 0);
        assert_refused(" \n", "malformed: not JSON", 0);
        assert_refused_edit(example_line, "}\n", "}{}\n", "malformed: not JSON", 0);
}

static void test_time_must_be_the_documented_form(void **state) {
        static const char *const bad[] = {
                "2026-02-29T14:00:00.000Z", "2026-12-06T24:00:00.000Z", "2026-12-06T14:00:00.000z",
                "2026-12-06T14:00:00Z", "2026-12-06 14:00:00.000Z", "2026-12-06T14:00:00.0000Z",
                "2026-12-06T14:00:60.000Z", "2026-13-06T14:00:00.000Z", "2026-12-00T14:00:00.000Z",
                "+026-12-06T14:00:00.000Z", "2026-12-06T14:00:00.000+00:00",
        };
        (void) state;

        for (size_t i = 0; i < KH_ELEMENTSOF(bad); i++)
                assert_refused_edit(example_line, "2026-12-06T14:00:00.000Z", bad[i],
                                    "malformed: time", 1);
}

static void test_strings_utf8_nul_and_length(void **state) {
        static char s[KH_AUDIT_STR_MAX + 32];
        const char *reason = NULL;
        char *line;
        (void) state;

        assert_refused_edit(example_line, "\"acme\"", "\"ac\xffme\"", "malformed: not JSON", 0);
        assert_refused_edit(example_line, "\"acme\"", "\"ac\xc0\xafme\"", "malformed: not JSON", 0);
        assert_refused_edit(example_line, "\"acme\"", "\"ac\xed\xa0\x80me\"", "malformed: not JSON",
                            0);
        assert_refused_edit(example_line, "\"acme\"", "\"acme\xc3\"", "malformed: not JSON", 0);
        assert_refused_edit(example_line, "\"acme\"", "\"ac\\ud800me\"", "malformed: not JSON", 0);
        assert_refused_edit(example_line, "\"acme\"", "\"ac\tme\"", "malformed: not JSON", 0);
        /* a NUL is that member's error, the line's seq still known */
        assert_refused_edit(example_line, "\"acme\"", "\"ac\\u0000me\"", "malformed: tenant", 1);
        assert_refused_edit(example_line, "\"ok\"", "\"\\u0000\"", "malformed: outcome", 1);

        memset(s, 'a', sizeof(s));
        s[0] = '"';
        s[KH_AUDIT_STR_MAX + 1] = '"';
        s[KH_AUDIT_STR_MAX + 2] = 0; /* 1024 bytes */
        line = replace(example_line, "\"acme\"", s);
        assert_int_equal(parse(line, strlen(line), &reason), 0);
        assert_int_equal(strlen(parsed.rec.tenant), KH_AUDIT_STR_MAX);
        free(line);
        s[KH_AUDIT_STR_MAX + 1] = 'a';
        s[KH_AUDIT_STR_MAX + 2] = '"';
        s[KH_AUDIT_STR_MAX + 3] = 0; /* 1025 */
        assert_refused_edit(example_line, "\"acme\"", s, "malformed: tenant", 1);
        memcpy(s + KH_AUDIT_STR_MAX, "\xc3\xa9\"", 4); /* 1023 + 2 bytes */
        assert_refused_edit(example_line, "\"keyhold\"", s, "malformed: actor", 1);
}

/* KH_AUDIT_LINE_MAX bytes without the newline are read; one more is refused as too long. */
static void test_line_length_limit(void **state) {
        size_t n = strlen(example_line) - 1; /* without its newline */
        char *line = malloc(KH_AUDIT_LINE_MAX + 2);
        const char *reason = NULL;
        (void) state;

        assert_non_null(line);
        memset(line, ' ', KH_AUDIT_LINE_MAX + 2);
        memcpy(line, example_line, n - 1);               /* without its "}" */
        line[KH_AUDIT_LINE_MAX - 1] = '}';
        assert_int_equal(parse(line, KH_AUDIT_LINE_MAX, &reason), 0);
        line[KH_AUDIT_LINE_MAX] = '\n';
        assert_int_equal(parse(line, KH_AUDIT_LINE_MAX + 1, &reason), 0);

        line[KH_AUDIT_LINE_MAX - 1] = ' ';
        line[KH_AUDIT_LINE_MAX] = '}';
        assert_int_equal(parse(line, KH_AUDIT_LINE_MAX + 1, &reason), -EINVAL);
        assert_string_equal(reason, "malformed: line too long");
        assert_int_equal(parsed.rec.seq, 0);
        free(line);
}

int main(int argc, char **argv) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_example_record_formats_as_documented),
                cmocka_unit_test(test_example_line_parses_to_the_example_record),
                cmocka_unit_test(test_python_written_lines_are_canonical),
                cmocka_unit_test(test_other_spellings_reach_the_canonical_fixed_point),
                cmocka_unit_test(test_strings_round_trip),
                cmocka_unit_test(test_longest_records_fit_a_line),
                cmocka_unit_test(test_format_refuses_invalid_records_and_keeps_out),
                cmocka_unit_test(test_missing_and_mistyped_members),
                cmocka_unit_test(test_integers_out_of_range),
                cmocka_unit_test(test_hashes_are_64_lower_case_hex_digits),
                cmocka_unit_test(test_signature_is_canonical_padded_base64_on_checkpoints_only),
                cmocka_unit_test(test_unknown_duplicate_and_non_object),
                cmocka_unit_test(test_time_must_be_the_documented_form),
                cmocka_unit_test(test_strings_utf8_nul_and_length),
                cmocka_unit_test(test_line_length_limit),
                cmocka_unit_test(test_writer_escapes_as_jansson_does),
        };

        if (argc != 2) {
                fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
                return 2;
        }
        data_dir = argv[1];
        return cmocka_run_group_tests(tests, make_checkpoint_line, NULL);
}
