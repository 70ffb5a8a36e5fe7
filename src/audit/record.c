/* The audit record's canonical encoding, hash, checkpoint digest and time (record.h). */
#include "record.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/parse.h"
#include "crypto/hash.h"

#define RECORD_LABEL     "keyhold-audit:1"
#define CHECKPOINT_LABEL "keyhold-audit-checkpoint:1"
#define CHECKPOINT_LABEL_REPLICA "keyhold-audit-checkpoint:2"

/* Room for the canonical encoding of any valid record: the label, three u64, seven strings
 * with their lengths, the time with its length, the previous hash. */
#define ENCODING_MAX (sizeof(RECORD_LABEL) + 3 * 8 + 7 * (4 + KH_AUDIT_STR_MAX) + \
                      4 + KH_AUDIT_TIME_LEN + KH_AUDIT_HASH_LEN)

struct enc {
        uint8_t *p;
        size_t n;
};

static void put_bytes(struct enc *e, const void *p, size_t n) {
        memcpy(e->p + e->n, p, n);
        e->n += n;
}

static void put_u64(struct enc *e, uint64_t v) {
        for (int i = 7; i >= 0; i--)
                e->p[e->n++] = (uint8_t) (v >> (8 * i));
}

static void put_str(struct enc *e, const char *s) {
        size_t n = strlen(s);

        for (int i = 3; i >= 0; i--)
                e->p[e->n++] = (uint8_t) (n >> (8 * i));
        put_bytes(e, s, n);
}

static bool str_ok(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strnlen(s, KH_AUDIT_STR_MAX + 1);
        return n <= KH_AUDIT_STR_MAX && kh_utf8_is_valid(s, n);
}

bool kh_audit_replica_is_valid(const char *s) {
        size_t n = strnlen(s, KH_AUDIT_REPLICA_MAX + 1);

        if (n == 0 || n > KH_AUDIT_REPLICA_MAX || s[0] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

bool kh_audit_record_is_valid(const struct kh_audit_record *r) {
        bool checkpoint;

        if (r->replica && r->replica[0] && !kh_audit_replica_is_valid(r->replica))
                return false;
        if (r->seq < 1 || r->seq > (uint64_t) KH_AUDIT_SEQ_MAX || r->count < 1 ||
            !kh_audit_time_is_valid(r->time))
                return false;
        if (!str_ok(r->tenant) || !str_ok(r->actor) || !str_ok(r->action) || !str_ok(r->target) ||
            !str_ok(r->outcome) || !str_ok(r->request_id) || !str_ok(r->client))
                return false;
        checkpoint = strcmp(r->action, KH_AUDIT_ACTION_CHECKPOINT) == 0;
        if (checkpoint)
                return r->signature && r->signature_len >= 1 &&
                       r->signature_len <= KH_AUDIT_SIG_MAX;
        return !r->signature && r->signature_len == 0;
}

void kh_audit_record_hash(const struct kh_audit_record *r, uint8_t out[static KH_AUDIT_HASH_LEN]) {
        uint8_t buf[ENCODING_MAX];
        struct enc e = { buf, 0 };

        put_bytes(&e, RECORD_LABEL, sizeof(RECORD_LABEL));   /* with its NUL */
        put_u64(&e, r->seq);
        put_str(&e, r->time);
        put_str(&e, r->tenant);
        put_str(&e, r->actor);
        put_str(&e, r->action);
        put_str(&e, r->target);
        put_str(&e, r->outcome);
        put_u64(&e, r->key_version);
        put_str(&e, r->request_id);
        put_str(&e, r->client);
        put_u64(&e, r->count);
        put_bytes(&e, r->prev_hash, KH_AUDIT_HASH_LEN);
        kh_sha256(buf, e.n, out);
}

void kh_audit_checkpoint_digest(const char *tenant, const char *replica, uint64_t seq,
                                const uint8_t hash[static KH_AUDIT_HASH_LEN],
                                uint8_t out[static KH_AUDIT_HASH_LEN]) {
        uint8_t buf[sizeof(CHECKPOINT_LABEL_REPLICA) + 4 + KH_AUDIT_STR_MAX + 4 +
                    KH_AUDIT_REPLICA_MAX + 8 + KH_AUDIT_HASH_LEN];
        struct enc e = { buf, 0 };

        /* the unnamed replica's keeps the first form: chains written before replicas had
         * names verify as they did */
        if (replica && replica[0]) {
                put_bytes(&e, CHECKPOINT_LABEL_REPLICA, sizeof(CHECKPOINT_LABEL_REPLICA));
                put_str(&e, tenant);
                put_str(&e, replica);
        } else {
                put_bytes(&e, CHECKPOINT_LABEL, sizeof(CHECKPOINT_LABEL));
                put_str(&e, tenant);
        }
        put_u64(&e, seq);
        put_bytes(&e, hash, KH_AUDIT_HASH_LEN);
        kh_sha256(buf, e.n, out);
}

/* Years 0000..9999 are what the format can spell. */
#define TIME_MAX_MS 253402300799999LL    /* 9999-12-31T23:59:59.999Z */

int kh_audit_time_format(int64_t unix_ms, char out[static KH_AUDIT_TIME_LEN + 1]) {
        time_t secs;
        struct tm tm;

        if (unix_ms < 0 || unix_ms > TIME_MAX_MS)
                return -EINVAL;
        secs = (time_t) (unix_ms / 1000);
        if (!gmtime_r(&secs, &tm))
                return -EINVAL;
        if (strftime(out, KH_AUDIT_TIME_LEN + 1, "%Y-%m-%dT%H:%M:%S", &tm) != 19)
                return -EINVAL;
        out[19] = '.';
        out[20] = (char) ('0' + unix_ms % 1000 / 100);
        out[21] = (char) ('0' + unix_ms % 100 / 10);
        out[22] = (char) ('0' + unix_ms % 10);
        out[23] = 'Z';
        out[24] = 0;
        return 0;
}

static bool digits(const char *s, size_t n, unsigned *ret) {
        unsigned v = 0;

        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return false;
                v = v * 10 + (unsigned) (s[i] - '0');
        }
        *ret = v;
        return true;
}

bool kh_audit_time_parse(const char *s, int64_t *ret_ms) {
        static const unsigned days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
        unsigned y, mo, d, h, mi, sec, ms, dim;
        struct tm tm;

        if (strnlen(s, KH_AUDIT_TIME_LEN + 1) != KH_AUDIT_TIME_LEN || s[4] != '-' ||
            s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' ||
            s[23] != 'Z')
                return false;
        if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) ||
            !digits(s + 11, 2, &h) || !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec) ||
            !digits(s + 20, 3, &ms))
                return false;
        if (mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59)
                return false;
        dim = days[mo - 1] + (mo == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
        if (d < 1 || d > dim)
                return false;
        tm = (struct tm) { .tm_year = (int) y - 1900, .tm_mon = (int) mo - 1, .tm_mday = (int) d,
                           .tm_hour = (int) h, .tm_min = (int) mi, .tm_sec = (int) sec };
        *ret_ms = (int64_t) timegm(&tm) * 1000 + ms;
        return true;
}

bool kh_audit_time_is_valid(const char *s) {
        int64_t ms;

        return kh_audit_time_parse(s, &ms);
}
