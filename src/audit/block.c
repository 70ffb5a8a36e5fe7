/* The stored form of a run of audit records (block.h, docs/audit.md "How blocks are
 * stored"). */
#include "block.h"

#include <errno.h>
#include <string.h>

#include "common/parse.h"

#define F_ACTOR_SAME      0x01   /* actor = the previous record's */
#define F_TARGET_IS_ACTOR 0x02   /* target = this record's actor */
#define F_TARGET_SAME     0x04   /* target = the previous record's */
#define F_ACTION_SAME     0x08
#define F_OUTCOME_SAME    0x10
#define F_CLIENT_SAME     0x20
#define F_REQID_HEX       0x40   /* request_id is 16 lower-case hex digits, stored as 8 bytes */
#define F_SIGNED          0x80   /* a signature follows the hash */

#define REQID_HEX_LEN     16
#define VARINT_MAX        10     /* bytes of a 64-bit LEB128 number */
/* One record's most bytes: flags, time, five strings with their lengths, key_version, a
 * request id, count, hash, a signature with its length. */
#define RECORD_MAX (1 + VARINT_MAX + 6 * (VARINT_MAX + KH_AUDIT_STR_MAX) + 3 * VARINT_MAX + \
                    KH_AUDIT_HASH_LEN + VARINT_MAX + KH_AUDIT_SIG_MAX)

/* ---- writing ---- */

static size_t put_uvarint(uint8_t *p, uint64_t v) {
        size_t n = 0;

        while (v >= 0x80) {
                p[n++] = (uint8_t) (v | 0x80);
                v >>= 7;
        }
        p[n++] = (uint8_t) v;
        return n;
}

/* zigzag: small differences of either sign stay small */
static uint64_t zigzag(int64_t v) {
        return ((uint64_t) v << 1) ^ (uint64_t) (v >> 63);
}

static int64_t unzigzag(uint64_t v) {
        return (int64_t) (v >> 1) ^ -(int64_t) (v & 1);
}

static size_t put_str(uint8_t *p, const char *s) {
        size_t len = strlen(s), n = put_uvarint(p, len);

        memcpy(p + n, s, len);
        return n + len;
}

static int hex_value(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        return -1;
}

/* The request id as 8 bytes, when it is 16 lower-case hex digits (as the server makes
 * them): the hex spelling is then the only one, so nothing is lost. */
static bool reqid_pack(const char *s, uint8_t out[static REQID_HEX_LEN / 2]) {
        for (size_t i = 0; i < REQID_HEX_LEN; i += 2) {
                int hi = hex_value(s[i]), lo = hi < 0 ? -1 : hex_value(s[i + 1]);
                if (lo < 0)
                        return false;
                out[i / 2] = (uint8_t) (hi << 4 | lo);
        }
        return s[REQID_HEX_LEN] == '\0';
}

static void reqid_unpack(const uint8_t *p, char out[static REQID_HEX_LEN + 1]) {
        static const char hex[] = "0123456789abcdef";

        for (size_t i = 0; i < REQID_HEX_LEN / 2; i++) {
                out[2 * i] = hex[p[i] >> 4];
                out[2 * i + 1] = hex[p[i] & 15];
        }
        out[REQID_HEX_LEN] = '\0';
}

/* Copies s (at most KH_AUDIT_STR_MAX bytes, checked by the caller) into a slot of
 * KH_AUDIT_STR_MAX + 1: the kept previous strings, and the record handed out. */
static void keep(char *kept, const char *s) {
        size_t n = strlen(s);

        memcpy(kept, s, n + 1);
}

int kh_audit_block_begin(struct kh_audit_block_writer *w, struct kh_buf *out,
                         const uint8_t prev_hash[static KH_AUDIT_HASH_LEN]) {
        const uint8_t v = KH_AUDIT_BLOCK_V1;
        int r;

        w->out = out;
        w->time_ms = 0;
        w->actor[0] = w->target[0] = w->action[0] = w->outcome[0] = w->client[0] = '\0';
        kh_buf_reset(out);
        r = kh_buf_append(out, &v, 1);
        if (r == 0)
                r = kh_buf_append(out, prev_hash, KH_AUDIT_HASH_LEN);
        return r;
}

/* A string the block stores: what kh_audit_record_is_valid() demands of it. */
static bool str_ok(const char *s) {
        size_t n = strnlen(s, KH_AUDIT_STR_MAX + 1);

        return n <= KH_AUDIT_STR_MAX && kh_utf8_is_valid(s, n);
}

int kh_audit_block_add(struct kh_audit_block_writer *w, const struct kh_audit_record *rec,
                       int64_t time_ms) {
        uint8_t rec_buf[RECORD_MAX], reqid[REQID_HEX_LEN / 2];
        bool checkpoint = strcmp(rec->action, KH_AUDIT_ACTION_CHECKPOINT) == 0;
        unsigned flags = 0;
        size_t n = 1;
        int r;

        /* kh_audit_record_is_valid(), but each string only when it is stored (most repeat
         * the record before) and not the time, which is time_ms formatted by the caller */
        if (rec->seq < 1 || rec->seq > (uint64_t) KH_AUDIT_SEQ_MAX || rec->count < 1 ||
            checkpoint != (rec->signature_len > 0) || rec->signature_len > KH_AUDIT_SIG_MAX ||
            time_ms < 0 || strlen(rec->time) != KH_AUDIT_TIME_LEN)
                return -EINVAL;
        /* the kept strings change below only when the record is taken */
        if (strcmp(w->actor, rec->actor) == 0)
                flags |= F_ACTOR_SAME;
        else if (!str_ok(rec->actor))
                return -EINVAL;
        if (rec->target[0] && strcmp(rec->target, rec->actor) == 0)
                flags |= F_TARGET_IS_ACTOR;
        else if (strcmp(w->target, rec->target) == 0)
                flags |= F_TARGET_SAME;
        else if (!str_ok(rec->target))
                return -EINVAL;
        if (strcmp(w->action, rec->action) == 0)
                flags |= F_ACTION_SAME;
        else if (!str_ok(rec->action))
                return -EINVAL;
        if (strcmp(w->outcome, rec->outcome) == 0)
                flags |= F_OUTCOME_SAME;
        else if (!str_ok(rec->outcome))
                return -EINVAL;
        if (strcmp(w->client, rec->client) == 0)
                flags |= F_CLIENT_SAME;
        else if (!str_ok(rec->client))
                return -EINVAL;
        if (reqid_pack(rec->request_id, reqid))
                flags |= F_REQID_HEX;
        else if (!str_ok(rec->request_id))
                return -EINVAL;
        if (checkpoint)
                flags |= F_SIGNED;

        rec_buf[0] = (uint8_t) flags;
        n += put_uvarint(rec_buf + n, zigzag(time_ms - w->time_ms));
        if (!(flags & F_ACTOR_SAME))
                n += put_str(rec_buf + n, rec->actor);
        if (!(flags & (F_TARGET_IS_ACTOR | F_TARGET_SAME)))
                n += put_str(rec_buf + n, rec->target);
        if (!(flags & F_ACTION_SAME))
                n += put_str(rec_buf + n, rec->action);
        if (!(flags & F_OUTCOME_SAME))
                n += put_str(rec_buf + n, rec->outcome);
        n += put_uvarint(rec_buf + n, rec->key_version);
        if (flags & F_REQID_HEX) {
                memcpy(rec_buf + n, reqid, sizeof(reqid));
                n += sizeof(reqid);
        } else {
                n += put_str(rec_buf + n, rec->request_id);
        }
        if (!(flags & F_CLIENT_SAME))
                n += put_str(rec_buf + n, rec->client);
        n += put_uvarint(rec_buf + n, rec->count);
        memcpy(rec_buf + n, rec->hash, KH_AUDIT_HASH_LEN);
        n += KH_AUDIT_HASH_LEN;
        if (flags & F_SIGNED) {
                n += put_uvarint(rec_buf + n, rec->signature_len);
                memcpy(rec_buf + n, rec->signature, rec->signature_len);
                n += rec->signature_len;
        }
        r = kh_buf_append(w->out, rec_buf, n);
        if (r < 0)
                return r;
        w->time_ms = time_ms;
        if (!(flags & F_ACTOR_SAME))
                keep(w->actor, rec->actor);
        if (!(flags & F_TARGET_SAME))
                keep(w->target, rec->target);
        if (!(flags & F_ACTION_SAME))
                keep(w->action, rec->action);
        if (!(flags & F_OUTCOME_SAME))
                keep(w->outcome, rec->outcome);
        if (!(flags & F_CLIENT_SAME))
                keep(w->client, rec->client);
        return 0;
}

/* ---- reading ---- */

int kh_audit_block_read_begin(struct kh_audit_block_reader *r, const uint8_t *data, size_t len,
                              uint64_t first_seq, const char *tenant) {
        *r = (struct kh_audit_block_reader) { .p = data, .end = data + len, .seq = first_seq,
                                              .tenant = tenant };
        r->actor[0] = r->target[0] = r->action[0] = r->outcome[0] = r->client[0] = '\0';
        if (len > 0 && data[0] == '{') {
                r->json = true;
                return 0;
        }
        if (len < 1 + KH_AUDIT_HASH_LEN || data[0] != KH_AUDIT_BLOCK_V1)
                return -EINVAL;
        memcpy(r->prev_hash, data + 1, KH_AUDIT_HASH_LEN);
        r->p = data + 1 + KH_AUDIT_HASH_LEN;
        return 0;
}

static bool get_uvarint(struct kh_audit_block_reader *r, uint64_t *ret) {
        uint64_t v = 0;

        for (unsigned shift = 0; shift < 64 && r->p < r->end; shift += 7) {
                uint8_t b = *r->p++;

                if (shift == 63 && b > 1)
                        return false;            /* beyond 64 bits */
                v |= (uint64_t) (b & 0x7f) << shift;
                if (!(b & 0x80)) {
                        *ret = v;
                        return true;
                }
        }
        return false;
}

static bool get_bytes(struct kh_audit_block_reader *r, void *out, size_t n) {
        if ((size_t) (r->end - r->p) < n)
                return false;
        memcpy(out, r->p, n);
        r->p += n;
        return true;
}

/* A string of at most KH_AUDIT_STR_MAX bytes into out (NUL-terminated); its content is
 * checked with the whole record. */
static bool get_str(struct kh_audit_block_reader *r, char out[static KH_AUDIT_STR_MAX + 1]) {
        uint64_t len;

        if (!get_uvarint(r, &len) || len > KH_AUDIT_STR_MAX || !get_bytes(r, out, (size_t) len))
                return false;
        if (memchr(out, '\0', (size_t) len))
                return false;
        out[len] = '\0';
        return true;
}

static int json_next(struct kh_audit_block_reader *r, struct kh_audit_parsed *out,
                     int64_t *time_ms) {
        const uint8_t *line;
        const char *reason;
        size_t len;
        int e;

        do {
                if (!kh_audit_json_next_line(&r->p, r->end, &line, &len))
                        return 0;
        } while (len == 0);
        e = kh_audit_json_parse((const char *) line, len, out, &reason);
        if (e < 0)
                return e;
        if (!kh_audit_time_parse(out->rec.time, time_ms))
                return -EINVAL;
        return 1;
}

int kh_audit_block_next(struct kh_audit_block_reader *r, struct kh_audit_parsed *out,
                        int64_t *time_ms) {
        struct kh_audit_record *rec = &out->rec;
        char *const s = out->strings;    /* the five strings' slots, then the request id */
        char *const actor = s, *const target = s + (KH_AUDIT_STR_MAX + 1);
        char *const action = s + 2 * (KH_AUDIT_STR_MAX + 1), *const outcome = s + 3 * (KH_AUDIT_STR_MAX + 1);
        char *const client = s + 4 * (KH_AUDIT_STR_MAX + 1), *const reqid = s + 5 * (KH_AUDIT_STR_MAX + 1);
        uint64_t dt, kv, count, sig_len;
        uint8_t flags;

        if (r->json)
                return json_next(r, out, time_ms);
        if (r->p == r->end)
                return 0;
        flags = *r->p++;
        if ((flags & F_TARGET_IS_ACTOR) && (flags & F_TARGET_SAME))
                return -EINVAL;
        if (!get_uvarint(r, &dt) || __builtin_add_overflow(r->time_ms, unzigzag(dt), &r->time_ms))
                return -EINVAL;

        if (!(flags & F_ACTOR_SAME) && !get_str(r, r->actor))
                return -EINVAL;
        if (flags & F_TARGET_IS_ACTOR)
                keep(r->target, r->actor);
        else if (!(flags & F_TARGET_SAME) && !get_str(r, r->target))
                return -EINVAL;
        if (!(flags & F_ACTION_SAME) && !get_str(r, r->action))
                return -EINVAL;
        if (!(flags & F_OUTCOME_SAME) && !get_str(r, r->outcome))
                return -EINVAL;
        if (!get_uvarint(r, &kv) || kv > UINT32_MAX)
                return -EINVAL;
        if (flags & F_REQID_HEX) {
                uint8_t packed[REQID_HEX_LEN / 2];

                if (!get_bytes(r, packed, sizeof(packed)))
                        return -EINVAL;
                reqid_unpack(packed, reqid);
        } else if (!get_str(r, reqid)) {
                return -EINVAL;
        }
        if (!(flags & F_CLIENT_SAME) && !get_str(r, r->client))
                return -EINVAL;
        if (!get_uvarint(r, &count) || count > UINT32_MAX)
                return -EINVAL;

        *rec = (struct kh_audit_record) { .seq = r->seq, .tenant = r->tenant,
                                          .key_version = (uint32_t) kv, .count = (uint32_t) count,
                                          .actor = actor, .target = target, .action = action,
                                          .outcome = outcome, .request_id = reqid, .client = client };
        if (!get_bytes(r, rec->hash, KH_AUDIT_HASH_LEN))
                return -EINVAL;
        if (flags & F_SIGNED) {
                if (!get_uvarint(r, &sig_len) || sig_len == 0 || sig_len > KH_AUDIT_SIG_MAX ||
                    !get_bytes(r, out->sig, (size_t) sig_len))
                        return -EINVAL;
                rec->signature = out->sig;
                rec->signature_len = (size_t) sig_len;
        }
        keep(actor, r->actor);
        keep(target, r->target);
        keep(action, r->action);
        keep(outcome, r->outcome);
        keep(client, r->client);
        memcpy(rec->prev_hash, r->prev_hash, KH_AUDIT_HASH_LEN);
        if (r->time_ms < 0 || kh_audit_time_format(r->time_ms, rec->time) < 0 ||
            !kh_audit_record_is_valid(rec))
                return -EINVAL;
        memcpy(r->prev_hash, rec->hash, KH_AUDIT_HASH_LEN);
        r->seq++;
        *time_ms = r->time_ms;
        return 1;
}
