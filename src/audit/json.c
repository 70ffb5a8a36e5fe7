/* Audit records as JSON Lines (json.h): the canonical writer and the strict reader. */
#include "audit/json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
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
        NAME, /* optional: a replica name (kh_audit_replica_is_valid()) */
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
        F(replica, NAME, 0),
#undef F
};

/* A pointer of type ptype to the member f of the record r. */
#define FIELD_PTR(r, f, ptype)  ((ptype) ((char *) (r) + (f)->offset))
#define FIELD_CPTR(r, f, ptype) ((ptype) ((const char *) (r) + (f)->offset))

/* The writer is direct, not through jansson: the server formats every record it appends
 * (one per key read), and building a jansson object of fourteen members per record cost
 * more than the rest of an audited read. Its output is what jansson's compact dump of the
 * same members gives (the tests hold it to format(parse(line)) == line for every line of
 * the committed chains and to auditref.py): strings escaped as jansson does, '"' and '\\'
 * and control characters only, "\\uXXXX" in upper-case hex for those without a short
 * escape, other UTF-8 as is. */
static int put_str(struct kh_buf *out, const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        const char *run = s;
        int r = kh_buf_append(out, "\"", 1);

        for (; r >= 0 && *s; s++) {
                unsigned char c = (unsigned char) *s;
                char esc[6] = { '\\', 0 };
                size_t n = 2;

                if (c >= 0x20 && c != '"' && c != '\\')
                        continue;
                switch (c) {
                case '"': esc[1] = '"'; break;
                case '\\': esc[1] = '\\'; break;
                case '\b': esc[1] = 'b'; break;
                case '\f': esc[1] = 'f'; break;
                case '\n': esc[1] = 'n'; break;
                case '\r': esc[1] = 'r'; break;
                case '\t': esc[1] = 't'; break;
                default:
                        memcpy(esc + 1, "u00", 3);
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        n = 6;
                }
                r = kh_buf_append(out, run, (size_t) (s - run));
                if (r >= 0)
                        r = kh_buf_append(out, esc, n);
                run = s + 1;
        }
        if (r >= 0)
                r = kh_buf_append(out, run, (size_t) (s - run));
        if (r >= 0)
                r = kh_buf_append(out, "\"", 1);
        return r;
}

static int put_member(struct kh_buf *out, const struct kh_audit_record *rec,
                      const struct field *f, bool first) {
        char num[24], hex[HEX_LEN + 1];
        int r;

        r = kh_buf_append(out, first ? "{\"" : ",\"", 2);
        if (r >= 0)
                r = kh_buf_append_str(out, f->name);
        if (r >= 0)
                r = kh_buf_append(out, "\":", 2);
        if (r < 0)
                return r;
        switch (f->kind) {
        case SEQ:
                (void) snprintf(num, sizeof(num), "%" PRIu64, *FIELD_CPTR(rec, f, const uint64_t *));
                return kh_buf_append_str(out, num);
        case U32:
                (void) snprintf(num, sizeof(num), "%" PRIu32, *FIELD_CPTR(rec, f, const uint32_t *));
                return kh_buf_append_str(out, num);
        case TIME:
                return put_str(out, rec->time);
        case STR:
                return put_str(out, *FIELD_CPTR(rec, f, const char *const *));
        case HASH:
                kh_hex_encode(FIELD_CPTR(rec, f, const uint8_t *), KH_AUDIT_HASH_LEN, hex);
                r = kh_buf_append(out, "\"", 1);
                if (r >= 0)
                        r = kh_buf_append(out, hex, HEX_LEN);
                return r >= 0 ? kh_buf_append(out, "\"", 1) : r;
        case SIG:
                r = kh_buf_append(out, "\"", 1);
                if (r >= 0)
                        r = kh_base64_encode(rec->signature, rec->signature_len, out);
                return r >= 0 ? kh_buf_append(out, "\"", 1) : r;
        case NAME:
                return put_str(out, rec->replica);
        }
        return -EINVAL;
}

int kh_audit_json_format(const struct kh_audit_record *rec, struct kh_buf *out) {
        size_t start;
        int r = 0;

        if (!rec || !kh_audit_record_is_valid(rec))
                return -EINVAL;
        start = out->len;
        for (size_t i = 0; r >= 0 && i < KH_ELEMENTSOF(fields); i++)
                if ((fields[i].kind != SIG || rec->signature) &&
                    (fields[i].kind != NAME || (rec->replica && rec->replica[0])))
                        r = put_member(out, rec, &fields[i], i == 0);
        if (r >= 0)
                r = kh_buf_append(out, "}\n", 2);
        if (r < 0)
                out->len = start;    /* unchanged on failure */
        return r;
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
        case NAME:
                /* present means named: the unnamed replica's lines leave it out */
                if (!json_is_string(v) || json_string_length(v) > KH_AUDIT_REPLICA_MAX ||
                    !kh_audit_replica_is_valid(json_string_value(v)))
                        return -EINVAL;
                return parse_str(v, p, used, &r->replica) ? 0 : -EINVAL;
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
                        if (f->kind == SIG || f->kind == NAME)
                                continue; /* SIG's presence is checked against the action */
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

bool kh_audit_json_next_line(const uint8_t **p, const uint8_t *end, const uint8_t **ret_line,
                             size_t *ret_len) {
        const uint8_t *nl;

        if (*p >= end)
                return false;
        nl = memchr(*p, '\n', (size_t) (end - *p));
        *ret_line = *p;
        *ret_len = nl ? (size_t) (nl - *p) : (size_t) (end - *p);
        *p = nl ? nl + 1 : end;
        return true;
}
