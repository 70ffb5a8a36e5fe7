/* The stored audit block reader (src/audit/block.h) on arbitrary bytes, as a damaged or
 * forged database may hold them. The input is a row: byte 0 & 15 = the tenant's length,
 * bytes 1..8 = first_seq (little-endian, mapped into 1..KH_AUDIT_SEQ_MAX), then the tenant,
 * then the block's data. Invariants: reading gives records then 0 or -EINVAL (-ENOMEM
 * aside), never anything else; each record is valid, its time is the time_ms given with it
 * (0 .. year 9999 in the binary form; a legacy JSON line may date before 1970);
 * a binary block's records have seq first_seq + position, the row's tenant and prev_hash
 * chained from the block's header; and the records read (up to any damage) written again
 * with kh_audit_block_add into a new block read back as the same records, a block which,
 * read and written once more, is the same bytes (a fixed point). */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz-audit.h"
#include "audit/block.h"

#define ROW_HDR 9

/* large: not on the stack */
static struct kh_audit_parsed a, b;
static struct kh_audit_block_reader ra, rb;
static struct kh_audit_block_writer w, w2;

/* The next record of r into p; checks what every record read must satisfy. Returns
 * kh_audit_block_next()'s result. */
static int next_checked(struct kh_audit_block_reader *r, struct kh_audit_parsed *p,
                        int64_t *time_ms) {
        int64_t parsed_ms;
        int e;

        e = kh_audit_block_next(r, p, time_ms);
        CHECK(e == 1 || e == 0 || e == -EINVAL || e == -ENOMEM);
        if (e != 1)
                return e;
        CHECK(kh_audit_record_is_valid(&p->rec));
        CHECK(kh_audit_time_parse(p->rec.time, &parsed_ms) && parsed_ms == *time_ms);
        return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        KH_CLEANUP(kh_buf_freep) struct kh_buf again = { 0 }, thrice = { 0 };
        uint8_t prev[KH_AUDIT_HASH_LEN], first_prev[KH_AUDIT_HASH_LEN];
        char tenant[16] = "";
        uint64_t first_seq = 0, again_seq = 1;
        const uint8_t *block;
        const char *again_tenant;
        size_t tenant_len, block_len, n = 0;
        int64_t ta, tb;
        bool json;
        int e;

        if (size < ROW_HDR)
                return 0;
        tenant_len = data[0] & 15;
        if (size < ROW_HDR + tenant_len)
                return 0;
        for (size_t i = 0; i < 8; i++)
                first_seq |= (uint64_t) data[1 + i] << (8 * i);
        first_seq = first_seq % (uint64_t) KH_AUDIT_SEQ_MAX + 1;
        memcpy(tenant, data + ROW_HDR, tenant_len);           /* a NUL in it shortens it */
        block = data + ROW_HDR + tenant_len;
        block_len = size - ROW_HDR - tenant_len;

        e = kh_audit_block_read_begin(&ra, block, block_len, first_seq, tenant);
        CHECK(e == 0 || e == -EINVAL);
        if (e < 0) {
                CHECK(block_len < 1 + KH_AUDIT_HASH_LEN || block[0] != KH_AUDIT_BLOCK_V1);
                return 0;
        }
        json = block[0] == '{';
        if (!json)
                memcpy(prev, block + 1, KH_AUDIT_HASH_LEN);

        /* pass 1: every record until the end or the damage, written again as a block */
        kh_buf_init(&again, 2 * block_len + 1024, false);
        while ((e = next_checked(&ra, &a, &ta)) == 1) {
                if (ta < 0) {
                        /* a JSON line may date before 1970, which the binary form does not
                         * hold (kh_audit_block_add: -EINVAL): stop there */
                        CHECK(json);
                        break;
                }
                if (n == 0) {
                        memcpy(first_prev, a.rec.prev_hash, KH_AUDIT_HASH_LEN);
                        again_seq = json ? 1 : first_seq;  /* JSON seqs need not follow */
                        CHECK(kh_audit_block_begin(&w, &again, first_prev) == 0);
                }
                if (!json) {
                        CHECK(a.rec.seq == first_seq + n);
                        CHECK(a.rec.tenant == tenant);
                        CHECK(memcmp(a.rec.prev_hash, prev, KH_AUDIT_HASH_LEN) == 0);
                        memcpy(prev, a.rec.hash, KH_AUDIT_HASH_LEN);
                }
                e = kh_audit_block_add(&w, &a.rec, ta);
                if (e == -ENOMEM)
                        return 0;
                CHECK(e == 0);
                n++;
        }
        if (e == -ENOMEM || n == 0)
                return 0;
        CHECK(e == 0 || e == -EINVAL || (e == 1 && json));

        /* pass 2: the new block holds the same records (a JSON block's own seq, tenant and
         * prev_hash aside: the binary form derives them) and writes to the same bytes */
        CHECK(kh_audit_block_read_begin(&ra, block, block_len, first_seq, tenant) == 0);
        /* (a JSON block's lines carry their tenants; its row's may not even be valid) */
        again_tenant = json ? "t" : tenant;
        CHECK(kh_audit_block_read_begin(&rb, again.data, again.len, again_seq, again_tenant) == 0);
        kh_buf_init(&thrice, again.len, false);
        CHECK(kh_audit_block_begin(&w2, &thrice, first_prev) == 0);
        for (size_t i = 0; i < n; i++) {
                CHECK(next_checked(&ra, &a, &ta) == 1);
                e = next_checked(&rb, &b, &tb);
                if (e == -ENOMEM)
                        return 0;
                CHECK(e == 1);
                CHECK(ta == tb);
                if (json) {
                        a.rec.tenant = again_tenant;
                        a.rec.seq = again_seq + i;
                        if (i > 0)
                                memcpy(a.rec.prev_hash, prev, KH_AUDIT_HASH_LEN);
                        memcpy(prev, a.rec.hash, KH_AUDIT_HASH_LEN);
                }
                CHECK(same_record(&a.rec, &b.rec));
                e = kh_audit_block_add(&w2, &b.rec, tb);
                if (e == -ENOMEM)
                        return 0;
                CHECK(e == 0);
        }
        e = next_checked(&rb, &b, &tb);
        CHECK(e == 0 || e == -ENOMEM);
        CHECK(thrice.len == again.len && memcmp(thrice.data, again.data, again.len) == 0);
        return 0;
}
