/* The backup file format: see format.h for the layout and docs/backup.md for why. */
#include "backup/format.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "common/errors.h"
#include "crypto/stream.h"

#define CHUNK_AAD_LABEL "keyhold-backup:1"
#define CHUNK_AAD_LEN (sizeof(CHUNK_AAD_LABEL) - 1 + KH_SHA256_LEN + 1 + 4)
#define FLAG_LAST 1u
#define ENTRY_FIXED_MAX (1 + 2 + KH_BACKUP_NAME_MAX + 8)

static void put_u16(uint8_t *p, uint16_t v) {
        p[0] = (uint8_t) (v >> 8);
        p[1] = (uint8_t) v;
}

static void put_u32(uint8_t *p, uint32_t v) {
        for (int i = 3; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
}

static void put_u64(uint8_t *p, uint64_t v) {
        for (int i = 7; i >= 0; i--, v >>= 8)
                p[i] = (uint8_t) v;
}

static uint16_t get_u16(const uint8_t *p) {
        return (uint16_t) (p[0] << 8 | p[1]);
}

static uint32_t get_u32(const uint8_t *p) {
        return (uint32_t) p[0] << 24 | (uint32_t) p[1] << 16 | (uint32_t) p[2] << 8 | p[3];
}

static uint64_t get_u64(const uint8_t *p) {
        return (uint64_t) get_u32(p) << 32 | get_u32(p + 4);
}

/* ---- header ---- */

int kh_backup_header_encode(struct kh_backup_header *h) {
        size_t driver_len = strnlen(h->driver, sizeof(h->driver));
        uint8_t *p = h->bytes;
        size_t len;

        if (driver_len == 0 || driver_len > KH_BACKUP_DRIVER_MAX || h->meta_len > KH_BACKUP_META_MAX ||
            h->chunk_size == 0 || h->chunk_size > KH_BACKUP_CHUNK)
                return -EINVAL;
        len = KH_BACKUP_FIXED_LEN + 1 + driver_len + 2 + h->meta_len;
        memset(p, 0, len);
        memcpy(p, KH_BACKUP_MAGIC, 8);
        p[8] = KH_BACKUP_FORMAT;
        put_u32(p + 12, (uint32_t) len);
        put_u64(p + 16, h->created);
        put_u32(p + 24, h->chunk_size);
        memcpy(p + 28, h->salt, KH_BACKUP_SALT_LEN);
        p[60] = (uint8_t) driver_len;
        memcpy(p + 61, h->driver, driver_len);
        put_u16(p + 61 + driver_len, (uint16_t) h->meta_len);
        memcpy(p + 63 + driver_len, h->meta, h->meta_len);
        h->len = len;
        return 0;
}

int kh_backup_header_parse(const uint8_t *p, size_t n, struct kh_backup_header *ret) {
        static const uint8_t zero[3];
        size_t len, driver_len, meta_len;

        if (n < 16)
                return n < 8 && memcmp(p, KH_BACKUP_MAGIC, n) == 0 ? -ENODATA
                       : n >= 8 && memcmp(p, KH_BACKUP_MAGIC, 8) == 0 ? -ENODATA
                                                                       : -EBADMSG;
        if (memcmp(p, KH_BACKUP_MAGIC, 8) != 0 || p[8] != KH_BACKUP_FORMAT ||
            memcmp(p + 9, zero, 3) != 0)
                return -EBADMSG;
        len = get_u32(p + 12);
        if (len < KH_BACKUP_FIXED_LEN + 1 + 1 + 2 || len > KH_BACKUP_HEADER_MAX)
                return -EBADMSG;
        if (n < len)
                return -ENODATA;
        driver_len = p[60];
        if (driver_len == 0 || driver_len > KH_BACKUP_DRIVER_MAX ||
            len < KH_BACKUP_FIXED_LEN + 1 + driver_len + 2)
                return -EBADMSG;
        meta_len = get_u16(p + 61 + driver_len);
        if (meta_len > KH_BACKUP_META_MAX || len != KH_BACKUP_FIXED_LEN + 1 + driver_len + 2 + meta_len)
                return -EBADMSG;
        for (size_t i = 0; i < driver_len; i++)
                if (!((p[61 + i] >= 'a' && p[61 + i] <= 'z') || (p[61 + i] >= '0' && p[61 + i] <= '9')))
                        return -EBADMSG;

        memset(ret, 0, sizeof(*ret));
        ret->created = get_u64(p + 16);
        ret->chunk_size = get_u32(p + 24);
        if (ret->chunk_size == 0 || ret->chunk_size > KH_BACKUP_CHUNK)
                return -EBADMSG;
        memcpy(ret->salt, p + 28, KH_BACKUP_SALT_LEN);
        memcpy(ret->driver, p + 61, driver_len);
        memcpy(ret->meta, p + 63 + driver_len, meta_len);
        ret->meta_len = meta_len;
        memcpy(ret->bytes, p, len);
        ret->len = len;
        return 0;
}

bool kh_backup_name_is_valid(const char *name, size_t len) {
        size_t parts = 0, part_len = 0;

        if (len == 0 || len > KH_BACKUP_NAME_MAX)
                return false;
        for (size_t i = 0; i <= len; i++) {
                char c = i < len ? name[i] : '/';

                if (c == '/') {
                        if (part_len == 0 || ++parts > 3)
                                return false;
                        part_len = 0;
                        continue;
                }
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '.' || c == '_' || c == '-'))
                        return false;
                if (part_len == 0 && c == '.')
                        return false;
                part_len++;
        }
        return true;
}

/* The nonce and associated data of chunk index with flags holding len bytes. */
static void chunk_params(const uint8_t header_hash[static KH_SHA256_LEN], uint64_t index,
                         uint8_t flags, uint32_t len, uint8_t nonce[static KH_AEAD_NONCE_LEN],
                         uint8_t aad[static CHUNK_AAD_LEN]) {
        size_t off = sizeof(CHUNK_AAD_LABEL) - 1;

        memset(nonce, 0, KH_AEAD_NONCE_LEN);
        put_u64(nonce, index);
        nonce[8] = flags;
        memcpy(aad, CHUNK_AAD_LABEL, off);
        memcpy(aad + off, header_hash, KH_SHA256_LEN);
        aad[off + KH_SHA256_LEN] = flags;
        put_u32(aad + off + KH_SHA256_LEN + 1, len);
}

/* ---- writing ---- */

struct kh_backup_writer {
        int fd;
        const struct kh_secret *key;
        uint8_t header_hash[KH_SHA256_LEN];
        uint32_t chunk_size;
        uint64_t chunk_index;
        uint64_t written;          /* bytes to fd */
        uint8_t *buf;              /* flags | length | chunk plaintext -> ciphertext | tag */
        size_t fill;               /* plaintext bytes in buf */
        bool started;              /* an entry other than the end was begun */
        bool finished;
        enum kh_backup_entry_type type;
        uint64_t left;             /* data bytes the current entry still expects */
        size_t entries;
};

static int write_all(struct kh_backup_writer *w, const uint8_t *p, size_t n) {
        while (n > 0) {
                ssize_t k = write(w->fd, p, n);
                if (k < 0 && errno == EINTR)
                        continue;
                if (k < 0)
                        return -errno;
                if (k == 0)
                        return -EIO;
                p += k;
                n -= (size_t) k;
                w->written += (uint64_t) k;
        }
        return 0;
}

static int flush_chunk(struct kh_backup_writer *w, bool last) {
        uint8_t nonce[KH_AEAD_NONCE_LEN], aad[CHUNK_AAD_LEN];
        uint8_t flags = last ? FLAG_LAST : 0;
        uint8_t *body = w->buf + 5;
        int r;

        w->buf[0] = flags;
        put_u32(w->buf + 1, (uint32_t) w->fill);
        chunk_params(w->header_hash, w->chunk_index, flags, (uint32_t) w->fill, nonce, aad);
        r = kh_aead_chunk_seal(w->key, nonce, aad, sizeof(aad), body, w->fill, body,
                               body + w->fill);
        if (r < 0)
                return r;
        r = write_all(w, w->buf, 5 + w->fill + KH_AEAD_TAG_LEN);
        if (r < 0)
                return r;
        w->chunk_index++;
        w->fill = 0;
        return 0;
}

/* Plaintext into the chunk buffer, sealing and writing each chunk as it fills. A full
 * chunk is written only once more bytes come, so that the last chunk is never empty
 * unless the payload is. */
static int put(struct kh_backup_writer *w, const uint8_t *p, size_t n) {
        while (n > 0) {
                size_t k;
                int r;

                if (w->fill == w->chunk_size) {
                        r = flush_chunk(w, false);
                        if (r < 0)
                                return r;
                }
                k = w->chunk_size - w->fill;
                if (k > n)
                        k = n;
                memcpy(w->buf + 5 + w->fill, p, k);
                w->fill += k;
                p += k;
                n -= k;
        }
        return 0;
}

int kh_backup_writer_new(int fd, const struct kh_backup_header *h, const struct kh_secret *key,
                         struct kh_backup_writer **ret) {
        KH_CLEANUP(kh_backup_writer_freep) struct kh_backup_writer *w = NULL;
        int r;

        if (kh_secret_len(key) != KH_BACKUP_KEY_LEN || h->len == 0 || h->chunk_size == 0 ||
            h->chunk_size > KH_BACKUP_CHUNK)
                return -EINVAL;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->fd = fd;
        w->key = key;
        w->chunk_size = h->chunk_size;
        w->buf = malloc(5 + (size_t) h->chunk_size + KH_AEAD_TAG_LEN);
        if (!w->buf)
                return -ENOMEM;
        kh_sha256(h->bytes, h->len, w->header_hash);
        r = write_all(w, h->bytes, h->len);
        if (r < 0)
                return r;
        *ret = KH_TAKE_PTR(w);
        return 0;
}

static int put_entry_head(struct kh_backup_writer *w, enum kh_backup_entry_type type,
                          const char *name, uint64_t size) {
        uint8_t head[ENTRY_FIXED_MAX];
        size_t name_len = strlen(name);

        head[0] = (uint8_t) type;
        put_u16(head + 1, (uint16_t) name_len);
        memcpy(head + 3, name, name_len);
        put_u64(head + 3 + name_len, size);
        return put(w, head, 3 + name_len + 8);
}

int kh_backup_writer_entry(struct kh_backup_writer *w, enum kh_backup_entry_type type,
                           const char *name, uint64_t size) {
        int r;

        if (w->finished || w->left != 0 || w->entries >= KH_BACKUP_ENTRIES_MAX)
                return -EINVAL;
        if (type == KH_BACKUP_MANIFEST ? (w->started || name[0])
                                       : (type != KH_BACKUP_FILE || !w->started ||
                                          !kh_backup_name_is_valid(name, strlen(name))))
                return -EINVAL;
        r = put_entry_head(w, type, name, size);
        if (r < 0)
                return r;
        w->started = true;
        w->type = type;
        w->left = size;
        w->entries++;
        return 0;
}

int kh_backup_writer_data(struct kh_backup_writer *w, const void *p, size_t n) {
        int r;

        if (w->finished || n > w->left)
                return -EINVAL;
        r = put(w, p, n);
        if (r < 0)
                return r;
        w->left -= n;
        return 0;
}

int kh_backup_writer_finish(struct kh_backup_writer *w) {
        int r;

        if (w->finished || !w->started || w->left != 0)
                return -EINVAL;
        r = put_entry_head(w, KH_BACKUP_END, "", 0);
        if (r < 0)
                return r;
        w->finished = true;
        return flush_chunk(w, true);
}

uint64_t kh_backup_writer_bytes(const struct kh_backup_writer *w) {
        return w->written;
}

struct kh_backup_writer *kh_backup_writer_free(struct kh_backup_writer *w) {
        if (!w)
                return NULL;
        if (w->buf) {
                OPENSSL_cleanse(w->buf, 5 + (size_t) w->chunk_size + KH_AEAD_TAG_LEN);
                free(w->buf);
        }
        free(w);
        return NULL;
}

/* ---- reading ---- */

enum payload_state {
        P_TYPE,       /* the next entry's fixed part: type and name length */
        P_NAME,       /* its name and size */
        P_DATA,
        P_DONE,       /* the end entry was read */
};

struct kh_backup_reader {
        const struct kh_secret *key;
        const struct kh_backup_reader_ops *ops;
        void *userdata;
        uint8_t header_hash[KH_SHA256_LEN];
        uint32_t chunk_size;
        uint64_t chunk_index;
        uint64_t offset;           /* file offset of the chunk being gathered */
        uint8_t *buf;              /* one chunk as in the file */
        size_t have;               /* bytes of it gathered */
        bool last_seen;
        bool failed;
        bool auth_failed;
        int fail_r;
        /* payload parser */
        enum payload_state state;
        uint8_t head[ENTRY_FIXED_MAX];
        size_t head_have, head_need;
        enum kh_backup_entry_type type;
        uint64_t left;
        size_t entries;
        char error[160];
};

int kh_backup_reader_new(const struct kh_backup_header *h, const struct kh_secret *key,
                         const struct kh_backup_reader_ops *ops, void *userdata,
                         struct kh_backup_reader **ret) {
        struct kh_backup_reader *r;

        if (kh_secret_len(key) != KH_BACKUP_KEY_LEN || h->chunk_size == 0 ||
            h->chunk_size > KH_BACKUP_CHUNK)
                return -EINVAL;
        r = calloc(1, sizeof(*r));
        if (!r)
                return -ENOMEM;
        r->buf = malloc(5 + (size_t) h->chunk_size + KH_AEAD_TAG_LEN);
        if (!r->buf) {
                free(r);
                return -ENOMEM;
        }
        r->key = key;
        r->ops = ops;
        r->userdata = userdata;
        r->chunk_size = h->chunk_size;
        r->offset = h->len;
        r->head_need = 3;
        kh_sha256(h->bytes, h->len, r->header_hash);
        *ret = r;
        return 0;
}

static int __attribute__((format(printf, 2, 3))) fail(struct kh_backup_reader *r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        (void) vsnprintf(r->error, sizeof(r->error), fmt, ap);
        va_end(ap);
        r->failed = true;
        r->fail_r = -EBADMSG;
        return -EBADMSG;
}

static int stop(struct kh_backup_reader *r, int v) {
        r->failed = true;
        r->fail_r = v;
        return v;
}

/* Plaintext of an authenticated chunk, through the entry parser. */
static int payload(struct kh_backup_reader *r, const uint8_t *p, size_t n) {
        int v;

        while (n > 0) {
                size_t k;

                switch (r->state) {
                case P_TYPE:
                case P_NAME:
                        k = r->head_need - r->head_have;
                        if (k > n)
                                k = n;
                        memcpy(r->head + r->head_have, p, k);
                        r->head_have += k;
                        p += k;
                        n -= k;
                        if (r->head_have < r->head_need)
                                break;
                        if (r->state == P_TYPE) {
                                size_t name_len = get_u16(r->head + 1);
                                r->type = r->head[0];
                                if (r->type > KH_BACKUP_FILE || name_len > KH_BACKUP_NAME_MAX)
                                        return fail(r, "entry %zu: malformed", r->entries + 1);
                                r->head_need = 3 + name_len + 8;
                                r->state = P_NAME;
                                break;
                        }
                        {
                                size_t name_len = r->head_need - 11;
                                char name[KH_BACKUP_NAME_MAX + 1];

                                memcpy(name, r->head + 3, name_len);
                                name[name_len] = 0;
                                r->left = get_u64(r->head + 3 + name_len);
                                if (++r->entries > KH_BACKUP_ENTRIES_MAX)
                                        return fail(r, "too many entries");
                                if ((r->entries == 1) != (r->type == KH_BACKUP_MANIFEST) ||
                                    (r->type == KH_BACKUP_FILE &&
                                     !kh_backup_name_is_valid(name, name_len)) ||
                                    (r->type != KH_BACKUP_FILE && (name_len || (r->type == KH_BACKUP_END && r->left))))
                                        return fail(r, "entry %zu: malformed or out of order",
                                                    r->entries);
                                if (r->type == KH_BACKUP_END) {
                                        r->state = P_DONE;
                                        break;
                                }
                                v = r->ops->entry(r->userdata, r->type, name, r->left);
                                if (v != 0)
                                        return stop(r, v);
                                r->state = P_DATA;
                        }
                        /* an empty entry ends at once */
                        if (r->left == 0) {
                                v = r->ops->entry_end(r->userdata);
                                if (v != 0)
                                        return stop(r, v);
                                r->state = P_TYPE;
                                r->head_have = 0;
                                r->head_need = 3;
                        }
                        break;
                case P_DATA:
                        k = n < r->left ? n : (size_t) r->left;
                        v = r->ops->data(r->userdata, p, k);
                        if (v != 0)
                                return stop(r, v);
                        p += k;
                        n -= k;
                        r->left -= k;
                        if (r->left == 0) {
                                v = r->ops->entry_end(r->userdata);
                                if (v != 0)
                                        return stop(r, v);
                                r->state = P_TYPE;
                                r->head_have = 0;
                                r->head_need = 3;
                        }
                        break;
                case P_DONE:
                        return fail(r, "data after the end entry");
                }
        }
        return 0;
}

/* The gathered chunk: authenticate, then parse. */
static int open_chunk(struct kh_backup_reader *r, uint32_t len, uint8_t flags) {
        uint8_t nonce[KH_AEAD_NONCE_LEN], aad[CHUNK_AAD_LEN];
        uint8_t *body = r->buf + 5;
        int v;

        chunk_params(r->header_hash, r->chunk_index, flags, len, nonce, aad);
        v = kh_aead_chunk_open(r->key, nonce, aad, sizeof(aad), body, len, body + len, body);
        if (v == -KH_E_INTEGRITY) {
                r->auth_failed = true;
                return fail(r, "chunk %" PRIu64 " at byte %" PRIu64 " does not authenticate: "
                            "changed, moved, or not sealed by this key store's secret",
                            r->chunk_index, r->offset);
        }
        if (v < 0)
                return stop(r, v);
        v = payload(r, body, len);
        OPENSSL_cleanse(body, len);
        if (v != 0)
                return v;
        if (flags & FLAG_LAST) {
                if (r->state != P_DONE)
                        return fail(r, "the last chunk ends inside an entry");
                r->last_seen = true;
        }
        r->offset += 5 + (uint64_t) len + KH_AEAD_TAG_LEN;
        r->chunk_index++;
        r->have = 0;
        return 0;
}

int kh_backup_reader_feed(struct kh_backup_reader *r, const uint8_t *p, size_t n) {
        if (r->failed)
                return r->fail_r;
        while (n > 0) {
                size_t need, k;
                uint32_t len;
                uint8_t flags;
                int v;

                if (r->last_seen)
                        return fail(r, "%zu bytes after the last chunk (at byte %" PRIu64 ")", n,
                                    r->offset);
                need = 5;
                if (r->have >= 5) {
                        flags = r->buf[0];
                        len = get_u32(r->buf + 1);
                        if ((flags & ~FLAG_LAST) || len > r->chunk_size ||
                            (!(flags & FLAG_LAST) && len != r->chunk_size))
                                return fail(r, "chunk %" PRIu64 " at byte %" PRIu64
                                            " has a malformed frame", r->chunk_index, r->offset);
                        need = 5 + (size_t) len + KH_AEAD_TAG_LEN;
                }
                k = need - r->have;
                if (k > n)
                        k = n;
                memcpy(r->buf + r->have, p, k);
                r->have += k;
                p += k;
                n -= k;
                if (r->have < need || need == 5)
                        continue;
                v = open_chunk(r, get_u32(r->buf + 1), r->buf[0]);
                if (v != 0)
                        return v;
        }
        return 0;
}

int kh_backup_reader_end(struct kh_backup_reader *r) {
        if (r->failed)
                return r->fail_r;
        if (!r->last_seen)
                return fail(r, "truncated: the file ends at byte %" PRIu64 " before its last "
                            "chunk", r->offset + r->have);
        return 0;
}

const char *kh_backup_reader_error(const struct kh_backup_reader *r) {
        return r->error;
}

bool kh_backup_reader_auth_failed(const struct kh_backup_reader *r) {
        return r->auth_failed;
}

struct kh_backup_reader *kh_backup_reader_free(struct kh_backup_reader *r) {
        if (!r)
                return NULL;
        OPENSSL_cleanse(r->buf, 5 + (size_t) r->chunk_size + KH_AEAD_TAG_LEN);
        free(r->buf);
        free(r);
        return NULL;
}
