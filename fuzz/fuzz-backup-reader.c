/* The backup reader (backup/format.h) on arbitrary file bytes under a fixed key (00 01 .. 1f),
 * fed in two pieces split where the input says. Invariants: entries come in the documented
 * order (the manifest first, once; then files with valid names), no entry gets more or fewer
 * data bytes than its size says, and a reader that reports success saw the end entry.
 * fuzz/gen-backup-seed.py wrote the seeds with an implementation of its own (Python), so the
 * valid seed also checks that both agree on the format. */
#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fuzz.h"
#include "backup/format.h"
#include "common/secret.h"

struct state {
        size_t entries;
        bool in_entry;
        uint64_t left;
};

static int on_entry(void *u, enum kh_backup_entry_type type, const char *name, uint64_t size) {
        struct state *s = u;

        assert(!s->in_entry);
        assert((s->entries == 0) == (type == KH_BACKUP_MANIFEST));
        assert(type == KH_BACKUP_MANIFEST ? name[0] == 0
                                          : kh_backup_name_is_valid(name, strlen(name)));
        s->entries++;
        s->in_entry = true;
        s->left = size;
        return 0;
}

static int on_data(void *u, const uint8_t *p, size_t n) {
        struct state *s = u;

        (void) p;
        assert(s->in_entry && n > 0 && n <= s->left);
        s->left -= n;
        return 0;
}

static int on_end(void *u) {
        struct state *s = u;

        assert(s->in_entry && s->left == 0);
        s->in_entry = false;
        return 0;
}

static const struct kh_backup_reader_ops ops = { on_entry, on_data, on_end };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct kh_secret *key;
        struct kh_backup_header h;
        struct kh_backup_reader *r = NULL;
        struct state s = { 0 };
        size_t split;
        int rc;

        if (!key) {
                uint8_t k[32];
                for (size_t i = 0; i < sizeof(k); i++)
                        k[i] = (uint8_t) i;
                if (kh_secret_new_from(k, sizeof(k), &key) < 0)
                        return 0;
        }
        if (kh_backup_header_parse(data, size, &h) < 0)
                return 0;
        if (kh_backup_reader_new(&h, key, &ops, &s, &r) < 0)
                return 0;
        split = h.len + (size - h.len) / 2;
        rc = kh_backup_reader_feed(r, data + h.len, split - h.len);
        if (rc == 0)
                rc = kh_backup_reader_feed(r, data + split, size - split);
        if (rc == 0)
                rc = kh_backup_reader_end(r);
        if (rc == 0)
                assert(!s.in_entry && s.entries >= 1);
        else
                assert(kh_backup_reader_error(r)[0] != 0);
        kh_backup_reader_free(r);
        return 0;
}
