/* The stored form of audit blocks (src/audit/block.c) against docs/audit.md "How blocks are
 * stored": blocks spelt out byte by byte from the document, round trips of many records
 * through every flag, the derived seq and prev_hash, legacy JSON Lines blocks, refusals of
 * damaged data (truncated at every length, bad version, bad flags, varints, strings,
 * counts, signatures) and a writer that stops at its buffer's maximum. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "audit/block.h"
#include "audit/json.h"
#include "audit/record.h"

#define T0_MS 1796565600000LL           /* 2026-12-06T14:00:00.000Z, the documented example */
#define TIME_MAX_MS 253402300799999LL   /* 9999-12-31T23:59:59.999Z */
#define N_RECORDS 600
#define HDR (1 + KH_AUDIT_HASH_LEN)
/* where the records of documented_block() start, and its length */
#define REC2_AT (HDR + 59)
#define REC3_AT (REC2_AT + 61)
#define DOC_LEN (REC3_AT + 61)

/* One record's fields, owned (the writer and reader borrow). */
struct fields {
        char actor[KH_AUDIT_STR_MAX + 1], target[KH_AUDIT_STR_MAX + 1];
        char action[KH_AUDIT_STR_MAX + 1], outcome[KH_AUDIT_STR_MAX + 1];
        char request_id[KH_AUDIT_STR_MAX + 1], client[KH_AUDIT_STR_MAX + 1];
        uint32_t key_version, count;
        int64_t time_ms;
        uint8_t hash[KH_AUDIT_HASH_LEN];
        uint8_t sig[KH_AUDIT_SIG_MAX];
        size_t sig_len;
};

static struct fields recs[N_RECORDS];   /* large: not on the stack */
static struct kh_audit_block_writer writer;
static struct kh_audit_block_reader reader;
static struct kh_audit_parsed parsed;
static const uint8_t header_prev[KH_AUDIT_HASH_LEN] = {
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf,
        0xb0, 0xb1, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xbb, 0xbc, 0xbd, 0xbe, 0xbf,
};

static void set(char *dst, const char *s) {
        assert_true(strlen(s) <= KH_AUDIT_STR_MAX);
        memcpy(dst, s, strlen(s) + 1);
}

/* f as a record of chain tenant at seq (prev_hash is not stored: zero here) */
static struct kh_audit_record record_of(const struct fields *f, uint64_t seq, const char *tenant) {
        struct kh_audit_record r = {
                .seq = seq, .tenant = tenant, .actor = f->actor, .action = f->action,
                .target = f->target, .outcome = f->outcome, .key_version = f->key_version,
                .request_id = f->request_id, .client = f->client, .count = f->count,
                .signature = f->sig_len ? f->sig : NULL, .signature_len = f->sig_len,
        };

        assert_int_equal(kh_audit_time_format(f->time_ms, r.time), 0);
        memcpy(r.hash, f->hash, KH_AUDIT_HASH_LEN);
        return r;
}

static int add(const struct fields *f, uint64_t seq, const char *tenant) {
        struct kh_audit_record r = record_of(f, seq, tenant);

        return kh_audit_block_add(&writer, &r, f->time_ms);
}

/* Writes n records (seq first_seq...) into out; ends[i] = out's length after record i. */
static void write_block(struct kh_buf *out, const struct fields *f, size_t n, uint64_t first_seq,
                        const char *tenant, size_t *ends) {
        assert_int_equal(kh_audit_block_begin(&writer, out, header_prev), 0);
        assert_int_equal(out->len, HDR);
        for (size_t i = 0; i < n; i++) {
                assert_int_equal(add(&f[i], first_seq + i, tenant), 0);
                if (ends)
                        ends[i] = out->len;
        }
}

/* Reads data as a block and checks it holds exactly f[0..n) as records first_seq..., each
 * chained to the previous one's stored hash (the first to header_prev). */
static void assert_block_holds(const uint8_t *data, size_t len, const struct fields *f, size_t n,
                               uint64_t first_seq, const char *tenant) {
        const uint8_t *prev = header_prev;
        int64_t time_ms = -1;

        assert_int_equal(kh_audit_block_read_begin(&reader, data, len, first_seq, tenant), 0);
        for (size_t i = 0; i < n; i++) {
                const struct kh_audit_record *r = &parsed.rec;
                char t[KH_AUDIT_TIME_LEN + 1];

                assert_int_equal(kh_audit_block_next(&reader, &parsed, &time_ms), 1);
                assert_true(kh_audit_record_is_valid(r));
                assert_int_equal(r->seq, first_seq + i);
                assert_ptr_equal(r->tenant, tenant);
                assert_int_equal(time_ms, f[i].time_ms);
                assert_int_equal(kh_audit_time_format(f[i].time_ms, t), 0);
                assert_string_equal(r->time, t);
                assert_string_equal(r->actor, f[i].actor);
                assert_string_equal(r->target, f[i].target);
                assert_string_equal(r->action, f[i].action);
                assert_string_equal(r->outcome, f[i].outcome);
                assert_int_equal(r->key_version, f[i].key_version);
                assert_string_equal(r->request_id, f[i].request_id);
                assert_string_equal(r->client, f[i].client);
                assert_int_equal(r->count, f[i].count);
                assert_memory_equal(r->prev_hash, prev, KH_AUDIT_HASH_LEN);
                assert_memory_equal(r->hash, f[i].hash, KH_AUDIT_HASH_LEN);
                assert_int_equal(r->signature_len, f[i].sig_len);
                if (f[i].sig_len)
                        assert_memory_equal(r->signature, f[i].sig, f[i].sig_len);
                else
                        assert_null(r->signature);
                prev = f[i].hash;
        }
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &time_ms), 0);
}

/* ---- blocks spelt out from docs/audit.md ---- */

static void fill_hash(uint8_t h[static KH_AUDIT_HASH_LEN], uint8_t first) {
        for (size_t i = 0; i < KH_AUDIT_HASH_LEN; i++)
                h[i] = (uint8_t) (first + i);
}

/* The documented example record (a start), a member's read (target is the actor, outcome
 * repeats, a hex request id) and a checkpoint 3 ms earlier (time goes backwards; target
 * and client are stored as "" again, outcome repeats). */
static void three_records(struct fields f[static 3]) {
        memset(f, 0, 3 * sizeof(*f));
        set(f[0].actor, "keyhold");
        set(f[0].action, "start");
        set(f[0].outcome, "ok");
        f[0].count = 1;
        f[0].time_ms = T0_MS;
        fill_hash(f[0].hash, 0x10);

        set(f[1].actor, "m");
        set(f[1].target, "m");
        set(f[1].action, "read");
        set(f[1].outcome, "ok");
        set(f[1].request_id, "0123456789abcdef");
        set(f[1].client, "127.0.0.1");
        f[1].key_version = 1;
        f[1].count = 1;
        f[1].time_ms = T0_MS + 5;
        fill_hash(f[1].hash, 0x30);

        set(f[2].actor, "keyhold");
        set(f[2].action, "checkpoint");
        set(f[2].outcome, "ok");
        f[2].count = 1;
        f[2].time_ms = T0_MS + 2;
        fill_hash(f[2].hash, 0x50);
        f[2].sig[0] = 'a';
        f[2].sig[1] = 'b';
        f[2].sig_len = 2;
}

static size_t hex_to(uint8_t *out, const char *hex) {
        size_t n = 0;

        for (; hex[0] && hex[1]; hex += 2) {
                unsigned v;
                assert_int_equal(sscanf(hex, "%2x", &v), 1);
                out[n++] = (uint8_t) v;
        }
        return n;
}

static size_t documented_block(uint8_t *out) {
        size_t n = 0;

        out[n++] = 0x01;                                 /* version */
        memcpy(out + n, header_prev, KH_AUDIT_HASH_LEN);
        n += KH_AUDIT_HASH_LEN;
        /* start: flags 0x24 (target and client repeat the first record's ""), time T0 */
        n += hex_to(out + n, "24" "809cbcbac968" "07" "6b6579686f6c64" "05" "7374617274"
                             "02" "6f6b" "00" "00" "01");
        fill_hash(out + n, 0x10);
        n += KH_AUDIT_HASH_LEN;
        /* read: flags 0x52 (target = actor, outcome repeats, hex request id), +5 ms */
        n += hex_to(out + n, "52" "0a" "01" "6d" "04" "72656164" "01" "0123456789abcdef"
                             "09" "3132372e302e302e31" "01");
        fill_hash(out + n, 0x30);
        n += KH_AUDIT_HASH_LEN;
        /* checkpoint: flags 0x90 (outcome repeats, signed), -3 ms (zigzag 5) */
        n += hex_to(out + n, "90" "05" "07" "6b6579686f6c64" "00" "0a" "636865636b706f696e74"
                             "00" "00" "00" "01");
        fill_hash(out + n, 0x50);
        n += KH_AUDIT_HASH_LEN;
        n += hex_to(out + n, "02" "6162");
        return n;
}

static void test_writer_writes_the_documented_bytes(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        static struct fields f[3];
        uint8_t want[512];
        size_t want_len = documented_block(want), ends[3];

        (void) state;
        assert_int_equal(want_len, DOC_LEN);
        assert_int_equal(want[REC2_AT], 0x52);
        assert_int_equal(want[REC3_AT], 0x90);
        three_records(f);
        kh_buf_init(&out, 1 << 20, false);
        write_block(&out, f, 3, 7, "acme", ends);
        assert_int_equal(ends[0], REC2_AT);
        assert_int_equal(ends[1], REC3_AT);
        assert_int_equal(out.len, want_len);
        assert_memory_equal(out.data, want, want_len);
}

static void test_reader_reads_the_documented_bytes(void **state) {
        static struct fields f[3];
        uint8_t data[512];
        size_t len = documented_block(data);

        (void) state;
        three_records(f);
        assert_block_holds(data, len, f, 3, 7, "acme");
        /* another row: the same bytes are records 1000..1002 of the server's chain */
        assert_block_holds(data, len, f, 3, 1000, "");
}

/* ---- round trips ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(uint32_t n) {
        rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
        return (uint32_t) (rng_state >> 33) % n;
}

#define PICK(a) ((a)[rnd(sizeof(a) / sizeof((a)[0]))])

/* n records through every flag combination: actor, target, action, outcome and client
 * repeated or changed, target = actor, empty target (and empty actor), hex and other
 * request ids, time forwards, still and backwards, checkpoints with signatures, strings
 * of 1024 bytes and non-ASCII UTF-8. */
static void many_records(struct fields *f, size_t n, size_t *ret_seen) {
        static char long_ascii[KH_AUDIT_STR_MAX + 1], long_utf8[KH_AUDIT_STR_MAX + 1];
        const char *actors[] = { "keyhold", "-", "local:uid=0", "6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c01",
                                 "6f1c2a4e-0b7d-4c3e-9a85-2d4f6b8e1c02", "", "admin@example.test",
                                 long_utf8, "m\xc3\xbcller \xe2\x82\xac \xf0\x9f\x94\x91" };
        const char *targets[] = { "", "/user-keys", "v2", long_ascii, "\"quoted\"\\\n" };
        const char *actions[] = { "read", "create", "replace", "refused", "audit.export", "" };
        const char *outcomes[] = { "ok", "invalid_token", "key_not_found", "" };
        const char *request_ids[] = { "", "0123456789ABCDEF", "0123456789abcde",
                                      "0123456789abcdef0", "0123456789abcdeg", "r\xc3\xa9quest",
                                      "ffffffffffffffff", "0000000000000000" };
        const char *clients[] = { "127.0.0.1", "::1", "local", "", "2001:db8::7" };
        const uint32_t numbers[] = { 0, 1, 2, 7, 127, 128, 16384, UINT32_MAX };
        const int64_t deltas[] = { 0, 1, 999, -1, -5000, 86400000, -86400000, 1 << 20 };
        size_t seen[8] = { 0 };
        int64_t t = T0_MS;

        memset(long_ascii, 'x', KH_AUDIT_STR_MAX);
        for (size_t i = 0; i + 2 <= KH_AUDIT_STR_MAX; i += 2)
                memcpy(long_utf8 + i, "\xc3\xa9", 2);   /* 512 × é: 1024 bytes */
        memset(f, 0, n * sizeof(*f));
        for (size_t i = 0; i < n; i++) {
                const struct fields *p = i ? &f[i - 1] : NULL;
                bool checkpoint = rnd(7) == 0;

                /* each field: the previous record's half of the time, else a fresh pick */
                set(f[i].actor, p && rnd(2) ? p->actor : PICK(actors));
                switch (rnd(4)) {
                case 0:  set(f[i].target, f[i].actor); break;
                case 1:  set(f[i].target, p ? p->target : ""); break;
                default: set(f[i].target, PICK(targets)); break;
                }
                set(f[i].action, p && rnd(2) ? p->action : PICK(actions));
                if (!checkpoint && strcmp(f[i].action, KH_AUDIT_ACTION_CHECKPOINT) == 0)
                        set(f[i].action, "read");         /* after a checkpoint */
                set(f[i].outcome, p && rnd(2) ? p->outcome : PICK(outcomes));
                set(f[i].client, p && rnd(2) ? p->client : PICK(clients));
                if (rnd(3) == 0) {
                        set(f[i].request_id, PICK(request_ids));
                } else {
                        for (size_t j = 0; j < 16; j++)
                                f[i].request_id[j] = "0123456789abcdef"[rnd(16)];
                        f[i].request_id[16] = '\0';
                }
                if (checkpoint) {
                        set(f[i].action, KH_AUDIT_ACTION_CHECKPOINT);
                        f[i].sig_len = 1 + (i % 5 == 0 ? KH_AUDIT_SIG_MAX - 1 : rnd(300));
                        for (size_t j = 0; j < f[i].sig_len; j++)
                                f[i].sig[j] = (uint8_t) rnd(256);
                }
                f[i].key_version = PICK(numbers);
                f[i].count = PICK(numbers) ? PICK(numbers) : 1;
                if (f[i].count == 0)
                        f[i].count = 3;
                t += PICK(deltas);
                f[i].time_ms = t < 0 ? 0 : t;
                t = f[i].time_ms;
                for (size_t j = 0; j < KH_AUDIT_HASH_LEN; j++)
                        f[i].hash[j] = (uint8_t) rnd(256);

                /* what the round trip covers, counted so that a change of the generator
                 * cannot quietly stop covering it */
                seen[0] += p && strcmp(f[i].actor, p->actor) == 0;
                seen[1] += f[i].target[0] && strcmp(f[i].target, f[i].actor) == 0;
                seen[2] += p && strcmp(f[i].target, p->target) == 0 &&
                           strcmp(f[i].target, f[i].actor) != 0;
                seen[3] += p && strcmp(f[i].action, p->action) == 0;
                seen[4] += p && strcmp(f[i].outcome, p->outcome) == 0;
                seen[5] += p && strcmp(f[i].client, p->client) == 0;
                seen[6] += p && f[i].time_ms < p->time_ms;
                seen[7] += checkpoint;
        }
        memcpy(ret_seen, seen, sizeof(seen));
}

static void test_round_trip_of_many_records(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        size_t seen[8];

        (void) state;
        many_records(recs, N_RECORDS, seen);
        for (size_t i = 0; i < 8; i++)
                assert_true(seen[i] >= 20 && seen[i] <= N_RECORDS - 20);
        kh_buf_init(&out, 16 << 20, false);
        write_block(&out, recs, N_RECORDS, 41, "acme", NULL);
        assert_block_holds(out.data, out.len, recs, N_RECORDS, 41, "acme");
        /* the same data as another chain's row elsewhere: seq and tenant follow the row */
        assert_block_holds(out.data, out.len, recs, N_RECORDS, 1, "");
        /* and every suffix written as a block of its own starts from its own "previous" */
        for (size_t i = 1; i < N_RECORDS; i += 97) {
                write_block(&out, recs + i, N_RECORDS - i, 1 + i, "acme", NULL);
                assert_block_holds(out.data, out.len, recs + i, N_RECORDS - i, 1 + i, "acme");
        }
}

static void test_round_trip_of_each_record_alone(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        size_t seen[8];

        (void) state;
        many_records(recs, N_RECORDS, seen);
        kh_buf_init(&out, 1 << 20, false);
        for (size_t i = 0; i < N_RECORDS; i++) {
                write_block(&out, &recs[i], 1, KH_AUDIT_SEQ_MAX, "t", NULL);
                assert_block_holds(out.data, out.len, &recs[i], 1, KH_AUDIT_SEQ_MAX, "t");
        }
}

static void test_block_of_no_records_reads_as_empty(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        int64_t t;

        (void) state;
        kh_buf_init(&out, 1 << 20, false);
        assert_int_equal(kh_audit_block_begin(&writer, &out, header_prev), 0);
        assert_int_equal(kh_audit_block_read_begin(&reader, out.data, out.len, 1, "acme"), 0);
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 0);
}

/* ---- legacy JSON Lines blocks ---- */

static void test_legacy_json_block_is_read_as_written(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        static struct fields f[3];
        struct kh_audit_record r[3];
        int64_t t;

        (void) state;
        three_records(f);
        kh_buf_init(&out, 1 << 20, false);
        for (size_t i = 0; i < 3; i++) {
                r[i] = record_of(&f[i], 10 + i, "acme");
                memcpy(r[i].prev_hash, i ? f[i - 1].hash : header_prev, KH_AUDIT_HASH_LEN);
                assert_int_equal(kh_audit_json_format(&r[i], &out), 0);
        }
        assert_int_equal(out.data[0], '{');
        /* the row says otherwise: the lines carry their own seq and tenant */
        assert_int_equal(kh_audit_block_read_begin(&reader, out.data, out.len, 99, "beta"), 0);
        for (size_t i = 0; i < 3; i++) {
                assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 1);
                assert_int_equal(parsed.rec.seq, 10 + i);
                assert_string_equal(parsed.rec.tenant, "acme");
                assert_string_equal(parsed.rec.time, r[i].time);
                assert_int_equal(t, f[i].time_ms);
                assert_string_equal(parsed.rec.actor, f[i].actor);
                assert_string_equal(parsed.rec.target, f[i].target);
                assert_string_equal(parsed.rec.request_id, f[i].request_id);
                assert_string_equal(parsed.rec.client, f[i].client);
                assert_memory_equal(parsed.rec.prev_hash, r[i].prev_hash, KH_AUDIT_HASH_LEN);
                assert_memory_equal(parsed.rec.hash, f[i].hash, KH_AUDIT_HASH_LEN);
                assert_int_equal(parsed.rec.signature_len, f[i].sig_len);
        }
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 0);

        /* the last line without its newline is still a line */
        assert_int_equal(kh_audit_block_read_begin(&reader, out.data, out.len - 1, 1, "acme"), 0);
        for (size_t i = 0; i < 3; i++)
                assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 1);
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 0);

        /* a damaged line is a damaged block */
        out.data[out.len - 3] = '!';
        assert_int_equal(kh_audit_block_read_begin(&reader, out.data, out.len, 1, "acme"), 0);
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 1);
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 1);
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), -EINVAL);
}

/* ---- refusals ---- */

/* Reads data to its end: the number of records, or the error that stopped it. */
static int read_all(const uint8_t *data, size_t len) {
        int64_t t;
        int n = 0, r;

        r = kh_audit_block_read_begin(&reader, data, len, 1, "acme");
        if (r < 0)
                return r;
        while ((r = kh_audit_block_next(&reader, &parsed, &t)) == 1)
                n++;
        return r < 0 ? r : n;
}

static void test_truncated_block_is_refused_at_every_length(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        static struct fields f[3];
        size_t ends[3];
        uint8_t *copy;

        (void) state;
        three_records(f);
        kh_buf_init(&out, 1 << 20, false);
        write_block(&out, f, 3, 1, "acme", ends);
        assert_int_equal(read_all(out.data, out.len), 3);
        for (size_t len = 0; len < out.len; len++) {
                int want = -EINVAL;

                if (len == HDR)
                        want = 0;                 /* a block of no records */
                for (size_t i = 0; i < 3; i++)
                        if (len == ends[i])
                                want = (int) i + 1; /* a shorter block, not a damaged one */
                copy = malloc(len ? len : 1);   /* exactly len bytes: ASan sees any overread */
                assert_non_null(copy);
                memcpy(copy, out.data, len);
                assert_int_equal(read_all(copy, len), want);
                free(copy);
        }
}

static void test_bad_version_is_refused(void **state) {
        uint8_t data[512];
        size_t len = documented_block(data);
        const uint8_t versions[] = { 0x00, 0x02, 0x7b ^ 0x01, 0x81, 0xff };

        (void) state;
        for (size_t i = 0; i < sizeof(versions); i++) {
                data[0] = versions[i];
                assert_int_equal(kh_audit_block_read_begin(&reader, data, len, 1, "acme"), -EINVAL);
        }
        assert_int_equal(kh_audit_block_read_begin(&reader, data, 0, 1, "acme"), -EINVAL);
}

/* A hand-built block of one record (after the 33-byte header): the fields as given. */
struct hb {
        uint8_t b[16384];
        size_t n;
};

static void hb_byte(struct hb *h, uint8_t v) {
        assert_true(h->n < sizeof(h->b));
        h->b[h->n++] = v;
}

static void hb_bytes(struct hb *h, const void *p, size_t n) {
        assert_true(h->n + n <= sizeof(h->b));
        memcpy(h->b + h->n, p, n);
        h->n += n;
}

static void hb_uvarint(struct hb *h, uint64_t v) {
        while (v >= 0x80) {
                hb_byte(h, (uint8_t) (v | 0x80));
                v >>= 7;
        }
        hb_byte(h, (uint8_t) v);
}

static void hb_str(struct hb *h, const char *s, size_t len) {
        hb_uvarint(h, len);
        hb_bytes(h, s, len);
}

static void hb_begin(struct hb *h, uint8_t flags, uint64_t time_zigzag) {
        h->n = 0;
        hb_byte(h, KH_AUDIT_BLOCK_V1);
        hb_bytes(h, header_prev, KH_AUDIT_HASH_LEN);
        hb_byte(h, flags);
        hb_uvarint(h, time_zigzag);
}

/* flags 0 and the given actor; the rest of a plain read record, then count and hash */
static void hb_read_record(struct hb *h, const char *actor, size_t actor_len, uint64_t count) {
        uint8_t hash[KH_AUDIT_HASH_LEN] = { 0 };

        hb_begin(h, 0x00, 2 * (uint64_t) T0_MS);
        hb_str(h, actor, actor_len);
        hb_str(h, "t", 1);
        hb_str(h, "read", 4);
        hb_str(h, "ok", 2);
        hb_uvarint(h, 1);                   /* key_version */
        hb_str(h, "rid", 3);
        hb_str(h, "::1", 3);
        hb_uvarint(h, count);
        hb_bytes(h, hash, sizeof(hash));
}

static void test_hand_built_record_is_read(void **state) {
        struct hb h;
        int64_t t;

        (void) state;
        hb_read_record(&h, "alice", 5, 1);
        assert_int_equal(read_all(h.b, h.n), 1);
        assert_int_equal(kh_audit_block_read_begin(&reader, h.b, h.n, 5, "acme"), 0);
        assert_int_equal(kh_audit_block_next(&reader, &parsed, &t), 1);
        assert_int_equal(parsed.rec.seq, 5);
        assert_string_equal(parsed.rec.time, "2026-12-06T14:00:00.000Z");
        assert_string_equal(parsed.rec.actor, "alice");
        assert_string_equal(parsed.rec.target, "t");
        assert_string_equal(parsed.rec.request_id, "rid");
        assert_string_equal(parsed.rec.client, "::1");
        assert_int_equal(parsed.rec.count, 1);
        /* the largest count and a string of exactly 1024 bytes are fine */
        static char s[KH_AUDIT_STR_MAX];
        memset(s, 'a', sizeof(s));
        hb_read_record(&h, s, KH_AUDIT_STR_MAX, UINT32_MAX);
        assert_int_equal(read_all(h.b, h.n), 1);
}

static void test_both_target_flags_are_refused(void **state) {
        uint8_t data[512];
        size_t len = documented_block(data);

        (void) state;
        assert_int_equal(read_all(data, len), 3);
        assert_int_equal(data[HDR], 0x24);
        data[HDR] = 0x24 | 0x02;            /* target repeats and is the actor */
        assert_int_equal(read_all(data, len), -EINVAL);
        data[HDR] = 0x06;
        assert_int_equal(read_all(data, len), -EINVAL);
}

static void test_overlong_varints_are_refused(void **state) {
        struct hb h;
        static const uint8_t eleven[] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                          0x80, 0x00 };
        static const uint8_t beyond_64[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                             0xff, 0x02 };
        static const uint8_t unended[] = { 0x80, 0x80, 0x80 };
        const uint8_t *bad[] = { eleven, beyond_64, unended };
        const size_t bad_len[] = { sizeof(eleven), sizeof(beyond_64), sizeof(unended) };

        (void) state;
        for (size_t i = 0; i < 3; i++) {
                /* as the time */
                h.n = 0;
                hb_byte(&h, KH_AUDIT_BLOCK_V1);
                hb_bytes(&h, header_prev, KH_AUDIT_HASH_LEN);
                hb_byte(&h, 0x00);
                hb_bytes(&h, bad[i], bad_len[i]);
                assert_int_equal(read_all(h.b, h.n), -EINVAL);
                /* as a string's length */
                hb_begin(&h, 0x00, 2 * (uint64_t) T0_MS);
                hb_bytes(&h, bad[i], bad_len[i]);
                assert_int_equal(read_all(h.b, h.n), -EINVAL);
        }

        /* a count of 2^64 + 1, which is 1 if the 65th bit were dropped, and 1 spelt in
         * 10 bytes (fine: at most 10) */
        static const uint8_t count_65_bits[] = { 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                                 0x80, 0x02 };
        static const uint8_t count_1_in_10[] = { 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                                 0x80, 0x00 };
        uint8_t hash[KH_AUDIT_HASH_LEN] = { 0 };
        for (size_t i = 0; i < 2; i++) {
                hb_begin(&h, 0x01 | 0x04 | 0x08 | 0x10 | 0x20, 2 * (uint64_t) T0_MS);
                hb_uvarint(&h, 0);
                hb_str(&h, "", 0);
                hb_bytes(&h, i ? count_1_in_10 : count_65_bits, sizeof(count_65_bits));
                hb_bytes(&h, hash, sizeof(hash));
                assert_int_equal(read_all(h.b, h.n), i ? 1 : -EINVAL);
        }
}

static void test_long_string_is_refused(void **state) {
        static char s[KH_AUDIT_STR_MAX + 1];
        struct hb h;

        (void) state;
        memset(s, 'a', sizeof(s));
        hb_read_record(&h, s, KH_AUDIT_STR_MAX + 1, 1);
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
        /* far longer than the reader's room for a string (ASan sees an overflow, if any) */
        static char huge[12000];
        memset(huge, 'a', sizeof(huge));
        hb_read_record(&h, huge, sizeof(huge), 1);
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
        /* a length far beyond the data */
        hb_begin(&h, 0x00, 2 * (uint64_t) T0_MS);
        hb_uvarint(&h, UINT64_MAX);
        hb_bytes(&h, s, 16);
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
}

static void test_nul_in_a_string_is_refused(void **state) {
        struct hb h;

        (void) state;
        hb_read_record(&h, "al\0ce", 5, 1);
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
        hb_read_record(&h, "\0", 1, 1);
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
}

static void test_invalid_utf8_is_refused(void **state) {
        static const char *const bad[] = {
                "\xff", "a\xc3", "\xc0\x80", "\xed\xa0\x80" /* a surrogate */,
                "\xf4\x90\x80\x80" /* beyond U+10FFFF */, "\x80",
        };
        struct hb h;

        (void) state;
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                hb_read_record(&h, bad[i], strlen(bad[i]), 1);
                assert_int_equal(read_all(h.b, h.n), -EINVAL);
        }
        hb_read_record(&h, "\xf0\x9f\x94\x91", 4, 1);    /* valid: U+1F511 */
        assert_int_equal(read_all(h.b, h.n), 1);
}

static void test_out_of_range_numbers_are_refused(void **state) {
        uint8_t hash[KH_AUDIT_HASH_LEN] = { 0 };
        struct hb h;

        (void) state;
        hb_read_record(&h, "a", 1, 0);                          /* count 0 */
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
        hb_read_record(&h, "a", 1, (uint64_t) UINT32_MAX + 1);  /* count beyond 32 bits */
        assert_int_equal(read_all(h.b, h.n), -EINVAL);

        /* key_version beyond 32 bits */
        hb_begin(&h, 0x01 | 0x04 | 0x08 | 0x10 | 0x20, 2 * (uint64_t) T0_MS);
        hb_uvarint(&h, (uint64_t) UINT32_MAX + 1);
        hb_str(&h, "", 0);
        hb_uvarint(&h, 1);
        hb_bytes(&h, hash, sizeof(hash));
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
        h.n = HDR + 1 + 6;                     /* the same with key_version UINT32_MAX */
        hb_uvarint(&h, UINT32_MAX);
        hb_str(&h, "", 0);
        hb_uvarint(&h, 1);
        hb_bytes(&h, hash, sizeof(hash));
        assert_int_equal(read_all(h.b, h.n), 1);

        /* times: before 1970 (zigzag 1 = -1 ms), after 9999 */
        const uint64_t times[] = { 1, 2 * (uint64_t) (TIME_MAX_MS + 1) };
        for (size_t i = 0; i < 2; i++) {
                hb_begin(&h, 0x01 | 0x04 | 0x08 | 0x10 | 0x20, times[i]);
                hb_uvarint(&h, 0);
                hb_str(&h, "", 0);
                hb_uvarint(&h, 1);
                hb_bytes(&h, hash, sizeof(hash));
                assert_int_equal(read_all(h.b, h.n), -EINVAL);
        }
        hb_begin(&h, 0x01 | 0x04 | 0x08 | 0x10 | 0x20, 2 * (uint64_t) TIME_MAX_MS);
        hb_uvarint(&h, 0);
        hb_str(&h, "", 0);
        hb_uvarint(&h, 1);
        hb_bytes(&h, hash, sizeof(hash));
        assert_int_equal(read_all(h.b, h.n), 1);
        assert_string_equal(parsed.rec.time, "9999-12-31T23:59:59.999Z");
}

static void test_time_going_below_zero_within_a_block_is_refused(void **state) {
        uint8_t data[512];
        size_t len = documented_block(data);

        (void) state;
        /* the second record's +5 ms (zigzag 0x0a) becomes -(T0 + 1) ms: before 1970 */
        assert_int_equal(data[REC2_AT], 0x52);
        assert_int_equal(data[REC2_AT + 1], 0x0a);
        struct hb h = { .n = 0 };
        hb_uvarint(&h, 2 * (uint64_t) (T0_MS + 1) - 1);
        uint8_t *copy = malloc(len + h.n);
        assert_non_null(copy);
        memcpy(copy, data, REC2_AT + 1);
        memcpy(copy + REC2_AT + 1, h.b, h.n);
        memcpy(copy + REC2_AT + 1 + h.n, data + REC2_AT + 2, len - REC2_AT - 2);
        assert_int_equal(read_all(copy, len + h.n - 1), -EINVAL);
        free(copy);
}

static void test_signatures_only_on_checkpoints(void **state) {
        uint8_t data[512];
        size_t len = documented_block(data);
        const size_t cp = REC3_AT;

        (void) state;
        /* the checkpoint's flags: 0x90 at the start of the third record */
        assert_int_equal(data[cp], 0x90);
        /* a checkpoint without its signature (flag cleared, the two bytes dropped) */
        data[cp] = 0x10;
        assert_int_equal(read_all(data, len - 3), -EINVAL);
        data[cp] = 0x90;
        assert_int_equal(read_all(data, len), 3);
        /* a signature of 0 bytes, and of more than KH_AUDIT_SIG_MAX */
        data[len - 3] = 0x00;
        assert_int_equal(read_all(data, len - 2), -EINVAL);
        data[len - 3] = 0x02;

        /* a signature on the read (flags 0x52 | 0x80): its bytes follow its hash */
        struct hb h;
        size_t second = REC2_AT;
        assert_int_equal(data[second], 0x52);
        h.n = 0;
        hb_bytes(&h, data, cp);
        h.b[second] |= 0x80;
        hb_bytes(&h, "\x02" "ab", 3);
        hb_bytes(&h, data + cp, len - cp);
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
        /* while the same bytes without the flag are a damaged block (two stray bytes) */
        h.b[second] &= 0x7f;
        assert_int_equal(read_all(h.b, h.n), -EINVAL);
}

static void test_oversized_signature_is_refused(void **state) {
        static uint8_t sig[KH_AUDIT_SIG_MAX + 1];
        uint8_t hash[KH_AUDIT_HASH_LEN] = { 0 };
        struct hb h;

        (void) state;
        for (size_t len = KH_AUDIT_SIG_MAX; len <= KH_AUDIT_SIG_MAX + 1; len++) {
                hb_begin(&h, 0x80 | 0x04 | 0x20, 2 * (uint64_t) T0_MS);
                hb_str(&h, "keyhold", 7);
                hb_str(&h, "checkpoint", 10);
                hb_str(&h, "ok", 2);
                hb_uvarint(&h, 0);
                hb_str(&h, "", 0);
                hb_uvarint(&h, 1);
                hb_bytes(&h, hash, sizeof(hash));
                hb_uvarint(&h, len);
                hb_bytes(&h, sig, len);
                assert_int_equal(read_all(h.b, h.n), len <= KH_AUDIT_SIG_MAX ? 1 : -EINVAL);
        }
}

/* ---- the writer's refusals ---- */

static void test_writer_stops_at_the_buffer_maximum(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        static struct fields f[4], big;
        uint8_t before[4096];
        size_t ends[2], len;

        (void) state;
        three_records(f);
        /* room for the first two records and a little more, not for a long third one */
        kh_buf_init(&out, 1 << 20, false);
        write_block(&out, f, 2, 1, "acme", ends);
        kh_buf_free(&out);
        kh_buf_init(&out, ends[1] + 70, false);
        write_block(&out, f, 2, 1, "acme", NULL);
        len = out.len;
        memcpy(before, out.data, len);

        big = f[0];
        set(big.actor, "zz");                 /* new actor, target and client: too long */
        memset(big.target, 'y', 200);
        big.target[200] = '\0';
        set(big.client, "10.0.0.1");
        assert_int_equal(add(&big, 3, "acme"), -E2BIG);
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, before, len);
        for (size_t i = 0; i < 100; i++)        /* and again: nothing changes */
                assert_int_equal(add(&big, 3, "acme"), -E2BIG);
        assert_int_equal(out.len, len);

        /* nothing of the refused record was kept for the next one's flags: a checkpoint
         * with the refused one's actor and client (stored, not repeated) still fits and
         * reads back exactly */
        f[3] = f[2];
        set(f[3].actor, "zz");
        set(f[3].client, "10.0.0.1");
        assert_int_equal(add(&f[3], 3, "acme"), 0);
        assert_block_holds(out.data, out.len, (struct fields[]) { f[0], f[1], f[3] }, 3, 1,
                           "acme");

        /* a buffer too small for the header */
        struct kh_buf tiny;
        kh_buf_init(&tiny, HDR - 1, false);
        assert_int_equal(kh_audit_block_begin(&writer, &tiny, header_prev), -E2BIG);
        kh_buf_free(&tiny);
}

static void test_writer_refuses_invalid_records(void **state) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf out = { 0 };
        static struct fields f[3], bad;
        uint8_t before[512];
        size_t len;

        (void) state;
        three_records(f);
        kh_buf_init(&out, 1 << 20, false);
        write_block(&out, f, 1, 1, "acme", NULL);
        len = out.len;
        memcpy(before, out.data, len);

        bad = f[1];
        bad.count = 0;
        assert_int_equal(add(&bad, 2, "acme"), -EINVAL);
        bad = f[1];
        bad.sig_len = 2;                        /* a signature on a read */
        assert_int_equal(add(&bad, 2, "acme"), -EINVAL);
        bad = f[2];
        bad.sig_len = 0;                        /* a checkpoint without one */
        assert_int_equal(add(&bad, 2, "acme"), -EINVAL);
        bad = f[1];
        set(bad.client, "\xff");
        assert_int_equal(add(&bad, 2, "acme"), -EINVAL);
        bad = f[1];
        set(bad.request_id, "0123456789abcde\xc3");
        assert_int_equal(add(&bad, 2, "acme"), -EINVAL);
        bad = f[1];
        set(bad.actor, "\xc0\x80");
        set(bad.target, "\xc0\x80");
        assert_int_equal(add(&bad, 2, "acme"), -EINVAL);
        {
                struct kh_audit_record r = record_of(&f[1], 0, "acme");   /* seq 0 */
                assert_int_equal(kh_audit_block_add(&writer, &r, f[1].time_ms), -EINVAL);
        }
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, before, len);
        assert_int_equal(add(&f[1], 2, "acme"), 0);
        assert_block_holds(out.data, out.len, f, 2, 1, "acme");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_writer_writes_the_documented_bytes),
                cmocka_unit_test(test_reader_reads_the_documented_bytes),
                cmocka_unit_test(test_round_trip_of_many_records),
                cmocka_unit_test(test_round_trip_of_each_record_alone),
                cmocka_unit_test(test_block_of_no_records_reads_as_empty),
                cmocka_unit_test(test_legacy_json_block_is_read_as_written),
                cmocka_unit_test(test_truncated_block_is_refused_at_every_length),
                cmocka_unit_test(test_bad_version_is_refused),
                cmocka_unit_test(test_hand_built_record_is_read),
                cmocka_unit_test(test_both_target_flags_are_refused),
                cmocka_unit_test(test_overlong_varints_are_refused),
                cmocka_unit_test(test_long_string_is_refused),
                cmocka_unit_test(test_nul_in_a_string_is_refused),
                cmocka_unit_test(test_invalid_utf8_is_refused),
                cmocka_unit_test(test_out_of_range_numbers_are_refused),
                cmocka_unit_test(test_time_going_below_zero_within_a_block_is_refused),
                cmocka_unit_test(test_signatures_only_on_checkpoints),
                cmocka_unit_test(test_oversized_signature_is_refused),
                cmocka_unit_test(test_writer_stops_at_the_buffer_maximum),
                cmocka_unit_test(test_writer_refuses_invalid_records),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
