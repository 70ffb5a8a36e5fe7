/* The backup file format (docs/backup.md): a clear header, then the payload in AES-256-GCM
 * chunks under a key only the key store's secret derives.
 *
 * Header (integers big-endian):
 *   "KHBACKUP" | format (1) | 3 zero bytes | header length (u32, the whole header)
 *   | created (u64, unix seconds) | chunk size (u32) | salt (32)
 *   | driver length (u8) | driver | keystore.meta length (u16) | keystore.meta
 * Chunk i (i = 0, 1, ...):
 *   flags (u8: 1 = last chunk) | length (u32) | ciphertext (length bytes) | tag (16)
 *   nonce = i (u64) | flags | 3 zero bytes; associated data = "keyhold-backup:1"
 *   | SHA-256(header) | flags | length. Every chunk but the last holds exactly chunk size
 *   bytes; the last one 0..chunk size; nothing follows it.
 * So a changed byte anywhere (header included), chunks swapped, dropped, repeated or cut
 * off, or bytes appended, fail to open, and the reader names which.
 *
 * Payload (the chunks' plaintext, one stream): entries, each
 *   type (u8: 1 manifest, 2 file, 0 end) | name length (u16) | name | size (u64) | data
 * The manifest comes first and once; then the files ("keyhold.db", "keystore/..."); then
 * one end entry (empty name, size 0), which must close the last chunk. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/secret.h"
#include "keystore/keystore.h"

#define KH_BACKUP_MAGIC "KHBACKUP"
#define KH_BACKUP_FORMAT 1
#define KH_BACKUP_CHUNK (64u * 1024)          /* plaintext bytes of a full chunk */
#define KH_BACKUP_CHUNK_OVERHEAD (1 + 4 + 16) /* flags, length, tag */
#define KH_BACKUP_FIXED_LEN 60                /* header bytes before the driver */
#define KH_BACKUP_DRIVER_MAX 32
#define KH_BACKUP_META_MAX 65535              /* bytes of the key store's meta (u16) */
#define KH_BACKUP_HEADER_MAX (KH_BACKUP_FIXED_LEN + 1 + KH_BACKUP_DRIVER_MAX + 2 + KH_BACKUP_META_MAX)
#define KH_BACKUP_NAME_MAX 255                /* bytes of an entry's name */
#define KH_BACKUP_ENTRIES_MAX 1000000         /* entries in one backup */
#define KH_BACKUP_KEY_LEN 32

enum kh_backup_entry_type {
        KH_BACKUP_END = 0,
        KH_BACKUP_MANIFEST = 1,
        KH_BACKUP_FILE = 2,
};

struct kh_backup_header {
        uint64_t created;                     /* unix seconds */
        uint32_t chunk_size;                  /* KH_BACKUP_CHUNK for every file written */
        uint8_t salt[KH_BACKUP_SALT_LEN];
        char driver[KH_BACKUP_DRIVER_MAX + 1];/* the key store's [keystore] driver */
        uint8_t meta[KH_BACKUP_META_MAX];     /* what opens it: the file store's keystore.meta,
                                               * the pkcs11 store's JSON (pkcs11/backup.h) */
        size_t meta_len;
        uint8_t bytes[KH_BACKUP_HEADER_MAX];  /* the header as in the file */
        size_t len;
};

/**
 * kh_backup_header_encode() - fills h->bytes and h->len from the other fields. Returns 0 or
 * -EINVAL (a driver of 0 or more than KH_BACKUP_DRIVER_MAX bytes, meta too long).
 */
KH_MUST_CHECK int kh_backup_header_encode(struct kh_backup_header *h);

/**
 * kh_backup_header_parse() - the header at the start of p[0..n).
 * Returns 0 (ret filled, ret->len bytes used), -ENODATA (p is a header's beginning; more
 * bytes are needed: at least 16, then the header length), or -EBADMSG (not a keyhold backup,
 * an unknown format, fields out of range).
 */
KH_MUST_CHECK int kh_backup_header_parse(const uint8_t *p, size_t n, struct kh_backup_header *ret);

/* Whether name is an entry name keyhold writes and restores: 1 to KH_BACKUP_NAME_MAX bytes,
 * at most 3 '/'-separated components, each of [A-Za-z0-9._-] not starting with '.'. */
bool kh_backup_name_is_valid(const char *name, size_t len);

/* ---- writing ---- */

struct kh_backup_writer;

/**
 * kh_backup_writer_new() - starts a backup on fd (written from its current offset, not
 * closed): writes the encoded header h. key (KH_BACKUP_KEY_LEN bytes) is borrowed for the
 * writer's life. Returns 0, -EINVAL, -ENOMEM or the -errno of write (-ENOSPC...).
 */
KH_MUST_CHECK int kh_backup_writer_new(int fd, const struct kh_backup_header *h,
                                       const struct kh_secret *key,
                                       struct kh_backup_writer **ret);

/* Starts the next entry: a manifest (name "") or a file (a valid name); the previous
 * entry's data must be complete. Returns 0, -EINVAL (order, name, too many entries),
 * -ENOMEM, -EIO or a -errno of write. */
KH_MUST_CHECK int kh_backup_writer_entry(struct kh_backup_writer *w, enum kh_backup_entry_type type,
                                         const char *name, uint64_t size);

/* Appends data to the current entry; never more than its size in all. Returns 0, -EINVAL
 * (past the entry's size), -EIO or a -errno of write. */
KH_MUST_CHECK int kh_backup_writer_data(struct kh_backup_writer *w, const void *p, size_t n);

/* Writes the end entry and the last chunk. Returns 0, -EINVAL (an entry incomplete),
 * or an error as above. Nothing may be written after it. */
KH_MUST_CHECK int kh_backup_writer_finish(struct kh_backup_writer *w);

/* Bytes written to fd so far, header included. */
uint64_t kh_backup_writer_bytes(const struct kh_backup_writer *w);

struct kh_backup_writer *kh_backup_writer_free(struct kh_backup_writer *w); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_backup_writer_free, struct kh_backup_writer *)

/* ---- reading ---- */

/* What a reader hands on, in order: entry(), then data() for its bytes (in pieces), then
 * entry_end(); after the end entry, nothing. A non-zero return stops the reader, and
 * kh_backup_reader_feed() returns it. */
struct kh_backup_reader_ops {
        int (*entry)(void *userdata, enum kh_backup_entry_type type, const char *name,
                     uint64_t size);
        int (*data)(void *userdata, const uint8_t *p, size_t n);
        int (*entry_end)(void *userdata);
};

struct kh_backup_reader;

/* A reader of the chunks that follow header h (borrowed, as key and ops, for the reader's
 * life). Returns 0, -EINVAL (key not KH_BACKUP_KEY_LEN bytes) or -ENOMEM. */
KH_MUST_CHECK int kh_backup_reader_new(const struct kh_backup_header *h,
                                       const struct kh_secret *key,
                                       const struct kh_backup_reader_ops *ops, void *userdata,
                                       struct kh_backup_reader **ret);

/**
 * kh_backup_reader_feed() - the next n bytes of the file after the header, in any pieces.
 * Every chunk is authenticated before any of its bytes reach ops.
 * Returns 0, a callback's non-zero value, or -EBADMSG: the file is damaged, changed, cut or
 * not opened by this key; kh_backup_reader_error() says where and how. Once it failed, every
 * later call fails alike.
 */
KH_MUST_CHECK int kh_backup_reader_feed(struct kh_backup_reader *r, const uint8_t *p, size_t n);

/* At the end of the file: 0 if the last chunk and the end entry were read, else -EBADMSG
 * (truncated). */
KH_MUST_CHECK int kh_backup_reader_end(struct kh_backup_reader *r);

/* Why the reader failed ("chunk 3 at byte 196714 does not authenticate ..."), or "". */
const char *kh_backup_reader_error(const struct kh_backup_reader *r);

/* Whether a chunk failed to authenticate (as opposed to a malformed stream). A failure in
 * chunk 0 is what another key store secret gives, too. */
bool kh_backup_reader_auth_failed(const struct kh_backup_reader *r);

struct kh_backup_reader *kh_backup_reader_free(struct kh_backup_reader *r); /* NULL-safe */
KH_DEFINE_CLEANUP(kh_backup_reader_free, struct kh_backup_reader *)
