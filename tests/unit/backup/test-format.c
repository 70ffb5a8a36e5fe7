/* src/backup/format.c: the backup container. A written backup reads back entry by entry;
 * chunk 0 opens with plain OpenSSL under the nonce and associated data docs/backup.md gives
 * (an independent reading of the format); any changed byte, cut, reordering, appended byte
 * or other key fails with -EBADMSG; names and entry order are checked both ways. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/sha.h>

#include "backup/format.h"
#include "common/secret.h"

#define BIG_LEN 150000            /* spans three chunks */

static struct kh_secret *key_of(uint8_t first) {
        uint8_t k[32];
        struct kh_secret *s = NULL;

        for (size_t i = 0; i < sizeof(k); i++)
                k[i] = (uint8_t) (first + i);
        assert_int_equal(kh_secret_new_from(k, sizeof(k), &s), 0);
        return s;
}

static void header_init(struct kh_backup_header *h) {
        memset(h, 0, sizeof(*h));
        h->created = 1700000000;
        h->chunk_size = KH_BACKUP_CHUNK;
        for (size_t i = 0; i < KH_BACKUP_SALT_LEN; i++)
                h->salt[i] = (uint8_t) (0xa0 + i);
        strcpy(h->driver, "file");
        memcpy(h->meta, "META-BYTES", 10);
        h->meta_len = 10;
        assert_int_equal(kh_backup_header_encode(h), 0);
}

/* A backup: manifest "{}", a.txt "hello", keystore/big (BIG_LEN bytes of a pattern). */
static uint8_t *make_backup(const struct kh_secret *key, size_t *ret_len) {
        struct kh_backup_header h;
        struct kh_backup_writer *w = NULL;
        uint8_t *big = malloc(BIG_LEN), *out;
        int fd = memfd_create("backup", 0);
        off_t len;

        assert_true(fd >= 0 && big);
        for (size_t i = 0; i < BIG_LEN; i++)
                big[i] = (uint8_t) (i * 7);
        header_init(&h);
        assert_int_equal(kh_backup_writer_new(fd, &h, key, &w), 0);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_MANIFEST, "", 2), 0);
        assert_int_equal(kh_backup_writer_data(w, "{}", 2), 0);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_FILE, "a.txt", 5), 0);
        assert_int_equal(kh_backup_writer_data(w, "hel", 3), 0);
        assert_int_equal(kh_backup_writer_data(w, "lo", 2), 0);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_FILE, "keystore/big", BIG_LEN), 0);
        assert_int_equal(kh_backup_writer_data(w, big, BIG_LEN), 0);
        assert_int_equal(kh_backup_writer_finish(w), 0);
        len = lseek(fd, 0, SEEK_CUR);
        assert_int_equal((uint64_t) len, kh_backup_writer_bytes(w));
        kh_backup_writer_free(w);
        out = malloc((size_t) len);
        assert_int_equal(pread(fd, out, (size_t) len, 0), len);
        close(fd);
        free(big);
        *ret_len = (size_t) len;
        return out;
}

struct seen {
        char log[4096];
        size_t data_bytes;
        uint64_t sum;
};

static int on_entry(void *u, enum kh_backup_entry_type type, const char *name, uint64_t size) {
        struct seen *s = u;
        size_t n = strlen(s->log);

        snprintf(s->log + n, sizeof(s->log) - n, "%d:%s:%llu;", type, name,
                 (unsigned long long) size);
        return 0;
}

static int on_data(void *u, const uint8_t *p, size_t n) {
        struct seen *s = u;

        for (size_t i = 0; i < n; i++)
                s->sum = s->sum * 31 + p[i];
        s->data_bytes += n;
        return 0;
}

static int on_end(void *u) {
        struct seen *s = u;

        strncat(s->log, "end;", sizeof(s->log) - strlen(s->log) - 1);
        return 0;
}

static const struct kh_backup_reader_ops ops = { on_entry, on_data, on_end };

/* Reads file[0..n) in pieces of step bytes; returns feed's or end's result. */
static int read_backup(const uint8_t *file, size_t n, const struct kh_secret *key, size_t step,
                       struct seen *s, bool *ret_auth_failed) {
        struct kh_backup_header h;
        struct kh_backup_reader *r = NULL;
        int rc;

        memset(s, 0, sizeof(*s));
        rc = kh_backup_header_parse(file, n, &h);
        if (rc < 0)
                return rc;
        assert_int_equal(kh_backup_reader_new(&h, key, &ops, s, &r), 0);
        rc = 0;
        for (size_t off = h.len; off < n && rc == 0; off += step)
                rc = kh_backup_reader_feed(r, file + off, off + step <= n ? step : n - off);
        if (rc == 0)
                rc = kh_backup_reader_end(r);
        if (ret_auth_failed)
                *ret_auth_failed = kh_backup_reader_auth_failed(r);
        if (rc != 0)
                assert_true(kh_backup_reader_error(r)[0] != 0);
        kh_backup_reader_free(r);
        return rc;
}

static uint64_t expected_sum(void) {
        uint64_t sum = 0;
        const char *a = "{}hello";

        for (size_t i = 0; a[i]; i++)
                sum = sum * 31 + (uint8_t) a[i];
        for (size_t i = 0; i < BIG_LEN; i++)
                sum = sum * 31 + (uint8_t) (i * 7);
        return sum;
}

static void test_round_trip_in_any_pieces(void **state) {
        struct kh_secret *key = key_of(0);
        size_t n, steps[] = { 1, 7, 4096, 65557, 1u << 20 };
        uint8_t *file = make_backup(key, &n);
        struct seen s;
        (void) state;

        for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
                if (steps[i] == 1 && n > 200000)
                        continue;
                assert_int_equal(read_backup(file, n, key, steps[i], &s, NULL), 0);
                assert_string_equal(s.log, "1::2;end;2:a.txt:5;end;2:keystore/big:150000;end;");
                assert_int_equal(s.data_bytes, 2 + 5 + BIG_LEN);
                assert_true(s.sum == expected_sum());
        }
        free(file);
        kh_secret_free(key);
}

/* The header, field by field, and chunk 0 opened with OpenSSL as docs/backup.md says. */
static void test_layout_matches_the_documentation(void **state) {
        struct kh_secret *key = key_of(0);
        size_t n, hlen = 60 + 1 + 4 + 2 + 10;
        uint8_t *file = make_backup(key, &n);
        uint8_t k[32], nonce[12] = { 0 }, aad[16 + 32 + 5], hh[32], tag[16], pt[KH_BACKUP_CHUNK];
        const uint8_t *c0 = file + hlen;
        uint32_t len0 = (uint32_t) c0[1] << 24 | (uint32_t) c0[2] << 16 | c0[3] << 8 | c0[4];
        EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
        int outl;
        (void) state;

        assert_memory_equal(file, "KHBACKUP\x01\0\0\0", 12);
        assert_int_equal(file[15], hlen);
        assert_int_equal(file[24 + 1], 0x01);                 /* chunk size 65536 */
        assert_int_equal(file[28], 0xa0);                     /* salt */
        assert_memory_equal(file + 60, "\x04" "file" "\x00\x0a" "META-BYTES", 17);
        assert_int_equal(c0[0], 0);                           /* not the last chunk */
        assert_int_equal(len0, KH_BACKUP_CHUNK);

        for (size_t i = 0; i < 32; i++)
                k[i] = (uint8_t) i;
        SHA256(file, hlen, hh);
        memcpy(aad, "keyhold-backup:1", 16);
        memcpy(aad + 16, hh, 32);
        memcpy(aad + 48, c0, 5);
        assert_int_equal(EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k, nonce), 1);
        assert_int_equal(EVP_DecryptUpdate(ctx, NULL, &outl, aad, sizeof(aad)), 1);
        assert_int_equal(EVP_DecryptUpdate(ctx, pt, &outl, c0 + 5, (int) len0), 1);
        memcpy(tag, c0 + 5 + len0, sizeof(tag));
        assert_int_equal(EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, 16, tag), 1);
        assert_int_equal(EVP_DecryptFinal_ex(ctx, pt + outl, &outl), 1);
        /* the manifest entry: type 1, empty name, size 2, "{}" */
        assert_memory_equal(pt, "\x01\x00\x00" "\0\0\0\0\0\0\0\x02" "{}", 13);
        EVP_CIPHER_CTX_free(ctx);
        free(file);
        kh_secret_free(key);
}

static void test_every_changed_byte_fails(void **state) {
        struct kh_secret *key = key_of(0);
        size_t n;
        uint8_t *file = make_backup(key, &n);
        struct seen s;
        (void) state;

        /* every byte of the header and of the first frames, then a stride through the rest */
        for (size_t at = 0; at < n; at += at < 200 ? 1 : 997) {
                file[at] ^= 0x40;
                assert_int_not_equal(read_backup(file, n, key, 65536, &s, NULL), 0);
                file[at] ^= 0x40;
        }
        file[n - 1] ^= 1;
        assert_int_equal(read_backup(file, n, key, 65536, &s, NULL), -EBADMSG);
        file[n - 1] ^= 1;
        assert_int_equal(read_backup(file, n, key, 65536, &s, NULL), 0);
        free(file);
        kh_secret_free(key);
}

static void test_every_cut_fails(void **state) {
        struct kh_secret *key = key_of(0);
        size_t n;
        uint8_t *file = make_backup(key, &n);
        struct seen s;
        (void) state;

        for (size_t len = 0; len < n; len += len < 100 ? 1 : 1009)
                assert_int_not_equal(read_backup(file, len, key, 4096, &s, NULL), 0);
        assert_int_equal(read_backup(file, n - 1, key, 4096, &s, NULL), -EBADMSG);
        free(file);
        kh_secret_free(key);
}

static void test_appended_byte_fails(void **state) {
        struct kh_secret *key = key_of(0);
        size_t n;
        uint8_t *file = make_backup(key, &n), *longer = malloc(n + 1);
        struct seen s;
        (void) state;

        memcpy(longer, file, n);
        longer[n] = 0;
        assert_int_equal(read_backup(longer, n + 1, key, 4096, &s, NULL), -EBADMSG);
        free(longer);
        free(file);
        kh_secret_free(key);
}

static void test_swapped_chunks_fail(void **state) {
        struct kh_secret *key = key_of(0);
        size_t n, hlen = 77, frame = 5 + KH_BACKUP_CHUNK + 16;
        uint8_t *file = make_backup(key, &n), *tmp = malloc(frame);
        struct seen s;
        bool auth;
        (void) state;

        memcpy(tmp, file + hlen, frame);
        memmove(file + hlen, file + hlen + frame, frame);
        memcpy(file + hlen + frame, tmp, frame);
        assert_int_equal(read_backup(file, n, key, 4096, &s, &auth), -EBADMSG);
        assert_true(auth);
        assert_string_equal(s.log, "");          /* nothing reached the callbacks */
        free(tmp);
        free(file);
        kh_secret_free(key);
}

static void test_another_key_fails_at_chunk_zero(void **state) {
        struct kh_secret *key = key_of(0), *other = key_of(1);
        size_t n;
        uint8_t *file = make_backup(key, &n);
        struct seen s;
        bool auth = false;
        (void) state;

        assert_int_equal(read_backup(file, n, other, 4096, &s, &auth), -EBADMSG);
        assert_true(auth);
        assert_string_equal(s.log, "");
        free(file);
        kh_secret_free(key);
        kh_secret_free(other);
}

static void test_header_parse_needs_and_refuses(void **state) {
        struct kh_backup_header h, g;
        (void) state;

        header_init(&h);
        assert_int_equal(kh_backup_header_parse(h.bytes, 4, &g), -ENODATA);
        assert_int_equal(kh_backup_header_parse(h.bytes, 16, &g), -ENODATA);
        assert_int_equal(kh_backup_header_parse(h.bytes, h.len - 1, &g), -ENODATA);
        assert_int_equal(kh_backup_header_parse(h.bytes, h.len, &g), 0);
        assert_int_equal(g.len, h.len);
        assert_int_equal(g.meta_len, 10);
        assert_string_equal(g.driver, "file");
        assert_true(g.created == 1700000000);
        assert_int_equal(kh_backup_header_parse((const uint8_t *) "SQLite format 3\0", 16, &g),
                         -EBADMSG);
        h.bytes[8] = 2; /* a format this build does not know */
        assert_int_equal(kh_backup_header_parse(h.bytes, h.len, &g), -EBADMSG);
}

static void test_entry_names(void **state) {
        static const char *const good[] = { "keyhold.db", "keystore/keystore.meta",
                                            "keystore/acme/v1.key", "keystore/_server/audit-v1.key" };
        static const char *const bad[] = { "", "/etc/passwd", "../x", "keystore/../x", "a//b",
                                           ".hidden", "a/.b", "a/b/c/d", "a b", "a\\b", "x/" };
        (void) state;

        for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
                assert_true(kh_backup_name_is_valid(good[i], strlen(good[i])));
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
                assert_false(kh_backup_name_is_valid(bad[i], strlen(bad[i])));
}

static void test_writer_refuses_wrong_order_and_overflow(void **state) {
        struct kh_secret *key = key_of(0);
        struct kh_backup_header h;
        struct kh_backup_writer *w = NULL;
        int fd = memfd_create("w", 0);
        (void) state;

        header_init(&h);
        assert_int_equal(kh_backup_writer_new(fd, &h, key, &w), 0);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_FILE, "a", 1), -EINVAL);
        assert_int_equal(kh_backup_writer_finish(w), -EINVAL);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_MANIFEST, "", 1), 0);
        assert_int_equal(kh_backup_writer_data(w, "ab", 2), -EINVAL);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_FILE, "a", 1), -EINVAL);
        assert_int_equal(kh_backup_writer_data(w, "a", 1), 0);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_FILE, "../a", 1), -EINVAL);
        assert_int_equal(kh_backup_writer_entry(w, KH_BACKUP_MANIFEST, "", 1), -EINVAL);
        assert_int_equal(kh_backup_writer_finish(w), 0);
        kh_backup_writer_free(w);
        close(fd);
        kh_secret_free(key);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip_in_any_pieces),
                cmocka_unit_test(test_layout_matches_the_documentation),
                cmocka_unit_test(test_every_changed_byte_fails),
                cmocka_unit_test(test_every_cut_fails),
                cmocka_unit_test(test_appended_byte_fails),
                cmocka_unit_test(test_swapped_chunks_fail),
                cmocka_unit_test(test_another_key_fails_at_chunk_zero),
                cmocka_unit_test(test_header_parse_needs_and_refuses),
                cmocka_unit_test(test_entry_names),
                cmocka_unit_test(test_writer_refuses_wrong_order_and_overflow),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
