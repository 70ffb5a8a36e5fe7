/* Audit records as JSON Lines (json.h): the canonical writer and the strict reader. */
#include "audit/json.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <jansson.h>

#include "crypto/encoding.h"

#define HEX_LEN (2 * KH_AUDIT_HASH_LEN)
/* Padded base64 of the longest signature. */
#define SIG_B64_MAX ((KH_AUDIT_SIG_MAX + 2) / 3 * 4)

enum kind {
        SEQ,  /* integer 1 .. KH_AUDIT_SEQ_MAX */
        TIME, /* a record time */
        STR,  /* a string of at most KH_AUDIT_STR_MAX bytes */
        U32,  /* integer min .. UINT32_MAX */
        HASH, /* 64 lower-case hex digits */
        SIG,  /* canonical padded base64 of 1 .. KH_AUDIT_SIG_MAX bytes */
};

/* docs/audit.md "Records", in order: the writer follows this table and the reader takes
 * exactly its members. */
static const struct field {
        const char *name;
        const char *reason;
        enum kind kind;
        size_t offset; /* of the member in struct kh_audit_record */
        uint32_t min;  /* U32 */
} fields[] = {
#define F(name, kind, min) { #name, "malformed: " #name, kind, offsetof(struct kh_audit_record, name), min }
        F(seq, SEQ, 0),
        F(time, TIME, 0),
        F(tenant, STR, 0),
        F(actor, STR, 0),
        F(action, STR, 0),
        F(target, STR, 0),
        F(outcome, STR, 0),
        F(key_version, U32, 0),
        F(request_id, STR, 0),
        F(client, STR, 0),
        F(count, U32, 1),
        F(prev_hash, HASH, 0),
        F(hash, HASH, 0),
        F(signature, SIG, 0),
#undef F
};

/* A pointer of type ptype to the member f of the record r. */
#define FIELD_PTR(r, f, ptype)  ((ptype) ((char *) (r) + (f)->offset))
#define FIELD_CPTR(r, f, ptype) ((ptype) ((const char *) (r) + (f)->offset))

static int dump_to_buf(const char *buffer, size_t size, void *data) {
        return kh_buf_append(data, buffer, size) == 0 ? 0 : -1;
}

static json_t *field_value(const struct kh_audit_record *r, const struct field *f, int *err) {
        char hex[HEX_LEN + 1];

        switch (f->kind) {
        case SEQ:
                return json_integer((json_int_t) *FIELD_CPTR(r, f, const uint64_t *));
        case TIME:
                return json_string(r->time);
        case STR:
                return json_string(*FIELD_CPTR(r, f, const char *const *));
        case U32:
                return json_integer((json_int_t) *FIELD_CPTR(r, f, const uint32_t *));
        case HASH:
                kh_hex_encode(FIELD_CPTR(r, f, const uint8_t *), KH_AUDIT_HASH_LEN, hex);
                return json_string(hex);
        case SIG: {
                KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 };

                kh_buf_init(&b, SIG_B64_MAX, false);
                *err = kh_base64_encode(r->signature, r->signature_len, &b);
                return *err < 0 ? NULL : json_stringn((const char *) b.data, b.len);
        }
        }
        return NULL;
}

int kh_audit_json_format(const struct kh_audit_record *rec, struct kh_buf *out) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf line = { 0 }; /* freed on every return */
        json_auto_t *obj = NULL;
        int r;

        if (!rec || !kh_audit_record_is_valid(rec))
                return -EINVAL;

        obj = json_object();
        if (!obj)
                return -ENOMEM;
        for (size_t i = 0; i < KH_ELEMENTSOF(fields); i++) {
                int err = -ENOMEM;
                json_t *v;

                if (fields[i].kind == SIG && !rec->signature)
                        continue;
                v = field_value(rec, &fields[i], &err);
                if (!v)
                        return err; /* the record is valid: only memory can fail here */
                /* jansson keeps members in insertion order, which is the documented one */
                if (json_object_set_new_nocheck(obj, fields[i].name, v) < 0)
                        return -ENOMEM;
        }

        kh_buf_init(&line, KH_AUDIT_LINE_MAX + 1, false);
        if (json_dump_callback(obj, dump_to_buf, &line, JSON_COMPACT) < 0)
                return -ENOMEM; /* a valid record's line fits KH_AUDIT_LINE_MAX */
        r = kh_buf_append(&line, "\n", 1);
        if (r < 0)
                return r;
        return kh_buf_append(out, line.data, line.len);
}

static int hex_nibble(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1; /* upper case is another spelling: refused */
}

static bool parse_hash(const json_t *v, uint8_t out[static KH_AUDIT_HASH_LEN]) {
        const char *s = json_string_value(v);

        if (!s || json_string_length(v) != HEX_LEN)
                return false;
        for (size_t i = 0; i < KH_AUDIT_HASH_LEN; i++) {
                int hi = hex_nibble(s[2 * i]), lo = hex_nibble(s[2 * i + 1]);

                if (hi < 0 || lo < 0)
                        return false;
                out[i] = (uint8_t) (hi << 4 | lo);
        }
        return true;
}

static int parse_sig(const json_t *v, struct kh_audit_parsed *p) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf b = { 0 }; /* freed on every return */
        size_t n = json_string_length(v);
        int r;

        if (!json_is_string(v) || n == 0 || n > SIG_B64_MAX)
                return -EINVAL;
        kh_buf_init(&b, KH_AUDIT_SIG_MAX, false);
        r = kh_base64_decode(json_string_value(v), n, &b);
        if (r == -E2BIG)
                return -EINVAL;
        if (r < 0)
                return r;
        if (b.len == 0)
                return -EINVAL;
        memcpy(p->sig, b.data, b.len);
        p->rec.signature = p->sig;
        p->rec.signature_len = b.len;
        return 0;
}

/* Copies a string member into p's storage at *used. */
static bool parse_str(const json_t *v, struct kh_audit_parsed *p, size_t *used, const char **ret) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);

        /* jansson has checked UTF-8; a "\u0000" shows as a NUL before the end */
        if (!s || n > KH_AUDIT_STR_MAX || strlen(s) != n)
                return false;
        memcpy(p->strings + *used, s, n + 1);
        *ret = p->strings + *used;
        *used += n + 1;
        return true;
}

static bool parse_int(const json_t *v, uint64_t min, uint64_t max, uint64_t *ret) {
        json_int_t i;

        if (!json_is_integer(v)) /* a real (1.0, 1e3) is another type, as is true */
                return false;
        i = json_integer_value(v);
        if (i < 0 || (uint64_t) i < min || (uint64_t) i > max)
                return false;
        *ret = (uint64_t) i;
        return true;
}

/* One member into p->rec. Returns 0, -EINVAL or -ENOMEM. */
static int parse_field(const struct field *f, const json_t *v, struct kh_audit_parsed *p,
                       size_t *used) {
        struct kh_audit_record *r = &p->rec;
        uint64_t n;

        switch (f->kind) {
        case SEQ:
                if (!parse_int(v, 1, KH_AUDIT_SEQ_MAX, &n))
                        return -EINVAL;
                r->seq = n;
                return 0;
        case TIME:
                if (!json_is_string(v) || json_string_length(v) != KH_AUDIT_TIME_LEN ||
                    !kh_audit_time_is_valid(json_string_value(v)))
                        return -EINVAL;
                memcpy(r->time, json_string_value(v), KH_AUDIT_TIME_LEN + 1);
                return 0;
        case STR:
                return parse_str(v, p, used, FIELD_PTR(r, f, const char **)) ? 0 : -EINVAL;
        case U32:
                if (!parse_int(v, f->min, UINT32_MAX, &n))
                        return -EINVAL;
                *FIELD_PTR(r, f, uint32_t *) = (uint32_t) n;
                return 0;
        case HASH:
                return parse_hash(v, FIELD_PTR(r, f, uint8_t *)) ? 0 : -EINVAL;
        case SIG:
                return parse_sig(v, p);
        }
        return -EINVAL;
}

int kh_audit_json_parse(const char *line, size_t len, struct kh_audit_parsed *p,
                        const char **reason) {
        json_auto_t *root = NULL;
        json_error_t jerr;
        size_t used = 0, found = 0;
        bool checkpoint;

        p->rec = (struct kh_audit_record) { 0 };
        if (len > 0 && line[len - 1] == '\n')
                len--;
        if (len == 0) {
                *reason = "malformed: empty line";
                return -EINVAL;
        }
        if (len > KH_AUDIT_LINE_MAX) {
                *reason = "malformed: line too long";
                return -EINVAL;
        }

        /* JSON_REJECT_DUPLICATES: with two "hash" members the record would depend on which
         * one a reader keeps. JSON_ALLOW_NUL: a "\u0000" in a string is then that member's
         * error (parse_str() refuses it), not the whole line's, and the line's seq is known.
         * JSON_DECODE_ANY: a line of JSON that is no object is "not an object". */
        root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_ANY,
                          &jerr);
        if (!root) {
                switch (json_error_code(&jerr)) {
                case json_error_out_of_memory:
                        return -ENOMEM;
                case json_error_duplicate_key: {
                        /* JSON with a member twice, or not JSON at all (jansson stops at
                         * whichever comes first): the reason must not depend on that order */
                        json_auto_t *any = json_loadb(line, len, JSON_ALLOW_NUL | JSON_DECODE_ANY,
                                                      &jerr);

                        if (!any && json_error_code(&jerr) == json_error_out_of_memory)
                                return -ENOMEM;
                        *reason = any ? "malformed: duplicate field" : "malformed: not JSON";
                        return -EINVAL;
                }
                default:
                        *reason = "malformed: not JSON";
                        return -EINVAL;
                }
        }
        if (!json_is_object(root)) {
                *reason = "malformed: not an object";
                return -EINVAL;
        }

        for (size_t i = 0; i < KH_ELEMENTSOF(fields); i++) {
                const struct field *f = &fields[i];
                const json_t *v = json_object_get(root, f->name);
                int r;

                if (!v) {
                        if (f->kind == SIG)
                                continue; /* its presence is checked against the action */
                        *reason = f->reason;
                        return -EINVAL;
                }
                r = parse_field(f, v, p, &used);
                if (r == -EINVAL)
                        *reason = f->reason;
                if (r < 0)
                        return r;
                found++;
        }
        /* every member found was a known one, and none twice: any other is unknown */
        if (json_object_size(root) != found) {
                *reason = "malformed: unknown field";
                return -EINVAL;
        }
        checkpoint = strcmp(p->rec.action, KH_AUDIT_ACTION_CHECKPOINT) == 0;
        if (checkpoint != (p->rec.signature != NULL)) {
                *reason = "malformed: signature";
                return -EINVAL;
        }
        if (!kh_audit_record_is_valid(&p->rec)) { /* each field was checked: cannot happen */
                *reason = "malformed: record";
                return -EINVAL;
        }
        return 0;
}

bool kh_audit_json_line_seq(const uint8_t *line, size_t len, uint64_t *ret) {
        static const char key[] = "{\"seq\":";
        size_t i = sizeof(key) - 1;
        uint64_t v = 0;

        if (len <= i || memcmp(line, key, i) != 0)
                return false;
        for (; i < len && line[i] >= '0' && line[i] <= '9'; i++) {
                uint64_t d = (uint64_t) (line[i] - '0');

                if (v > UINT64_MAX / 10 || (v == UINT64_MAX / 10 && d > UINT64_MAX % 10))
                        return false;
                v = v * 10 + d;
        }
        if (i == len || line[i] != ',' || i == sizeof(key) - 1)
                return false;
        *ret = v;
        return true;
}
