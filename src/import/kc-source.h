/* The source of `keyhold import bitwarden-kc`: one Bitwarden Key Connector database (its JSON
 * file, SQLite file or PostgreSQL database; the design's spec/key-connector-storage.md,
 * docs/import.md), read once and read only. This module only reads and decodes: it does not
 * unwrap the data key nor open the records (kc-unwrap.h, crypto/kc-blob.h do). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "common/cleanup.h"
#include "common/limits.h"

/* One wrapped data-key row (ApplicationDatas.SymmetricKey, JSON "symmetricKey"), decoded. */
struct kh_kc_wrapped {
        uint8_t *p;
        size_t len; /* >= 1 */
};

/* One user-key row (UserKeys, JSON "userKey" entry). */
struct kh_kc_record {
        char *id;      /* Id as stored, NUL-terminated, never NULL (may be any case; "" when
                        * NULL or not a string; cut to KH_KC_ID_MAX bytes, then never a GUID) */
        char guid[37]; /* canonical lower-case GUID of id, or "" if id is no GUID */
        uint8_t *blob; /* Key, base64-decoded (AES-GCM ct || tag || nonce, not checked here:
                        * any length >= 1); NULL when error != 0 */
        size_t blob_len;
        int error;     /* 0, or why the row cannot be used, in this order of precedence:
                        * -KH_E_KC_BAD_ID (id not in 8-4-4-4-12 form, either case),
                        * -KH_E_KC_NO_KEY (Key NULL, absent or ""),
                        * -KH_E_KC_BAD_BASE64 (Key not strict standard base64 with padding,
                        * not a string, or longer than KH_KC_KEY_TEXT_MAX characters) */
};

struct kh_kc_data {
        const char *kind;             /* "json", "sqlite", "postgresql" (static storage) */
        struct kh_kc_wrapped *wrapped; /* n_wrapped >= 1 rows; SQL: ORDER BY Id, NULL and
                                        * empty values skipped; JSON: the one value */
        size_t n_wrapped;
        struct kh_kc_record *records; /* SQL: ORDER BY Id; JSON: file order. Duplicate ids
                                       * are kept (the importer reports them) */
        size_t n_records;             /* may be 0 */
};

/**
 * kh_kc_read() - reads a whole Key Connector database into memory.
 * @spec: "json:PATH" | "sqlite:PATH" | "postgresql:CONNINFO" (a libpq key=value conninfo
 *        string or a postgresql:// URI). The scheme is case-sensitive; the rest non-empty.
 *        Nothing is ever written: SQLite is opened as an immutable read-only URI (no -wal,
 *        -shm or journal appears); PostgreSQL runs two SELECTs in one REPEATABLE READ READ
 *        ONLY transaction on a session with default_transaction_read_only=on; the JSON file
 *        is read into memory.
 * @ret: on success a new object; the caller frees it with kh_kc_data_free().
 * @detail: if detail_len > 0, receives on failure a short human text naming what was wrong
 *        (the SQLite/libpq message, "table UserKeys has no column Key", "JSON error at line 3
 *        column 17: ...") and "" on success or when there is nothing to add. Never contains
 *        key material, and never the conninfo (which may carry a password).
 *
 * Returns 0,
 * -KH_E_KC_SOURCE_SPEC (no or unknown scheme, empty rest, a conninfo libpq cannot parse),
 * -KH_E_KC_SOURCE_OPEN (file missing, unreadable or not a regular file, SQLite file that is
 *     not a database or has a non-empty PATH-wal beside it (a running Key Connector's writes
 *     not yet in the file: stop it first), PostgreSQL unreachable, login refused, or a
 *     SELECT refused, e.g. for lack of privileges),
 * -KH_E_KC_LAYOUT (no table UserKeys with columns Id and Key, or no ApplicationDatas with Id
 *     and SymmetricKey; JSON: not an object, no "userKey" array, an entry not an object, a
 *     name present in two spellings; a data key that is not a string or not base64),
 * -KH_E_KC_JSON (not valid JSON: truncated, garbage, a duplicate key),
 * -KH_E_KC_NO_DATA_KEY (no data-key row or "symmetricKey", or all of them NULL/empty),
 * -KH_E_KC_TOO_LARGE (more than KH_KC_RECORDS_MAX records, more than KH_KC_DATA_KEYS_MAX
 *     data-key rows, or a JSON file over KH_KC_JSON_MAX bytes),
 * -ENOMEM.
 * Rows that cannot be used (bad id, no key, bad base64) are no failure: see
 * kh_kc_record.error. Blocks (file and network I/O): call it from a command, not a loop.
 */
KH_MUST_CHECK int kh_kc_read(const char *spec, struct kh_kc_data **ret, char *detail,
                             size_t detail_len);

/**
 * kh_kc_parse_json() - the JSON reader of kh_kc_read() on the file's bytes p[0..n).
 * Same results as kh_kc_read("json:...") apart from -KH_E_KC_SOURCE_*; kind is "json".
 */
KH_MUST_CHECK int kh_kc_parse_json(const uint8_t *p, size_t n, struct kh_kc_data **ret,
                                   char *detail, size_t detail_len);

/* Frees d and everything in it, wiping the wrapped keys and blobs. NULL-safe; returns NULL. */
struct kh_kc_data *kh_kc_data_free(struct kh_kc_data *d);
KH_DEFINE_CLEANUP(kh_kc_data_free, struct kh_kc_data *)
