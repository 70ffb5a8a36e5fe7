/* Shared by the readers of kc-source.h (kc-json.c, kc-sqlite.c, kc-postgresql.c): building a
 * struct kh_kc_data row by row with the same decoding and limits for every source kind. */
#pragma once

#include <stddef.h>

#include "common/cleanup.h"
#include "import/kc-source.h"

/* Writes a NUL-terminated message to detail (if detail_len > 0), cut to fit. */
void kh_kc_detail(char *detail, size_t detail_len, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* A new empty result of this kind ("json", "sqlite", "postgresql": static storage).
 * Returns 0 or -ENOMEM. */
KH_MUST_CHECK int kh_kc_data_new(const char *kind, struct kh_kc_data **ret);

/* Appends a data-key row given as base64 text[0..len) (the caller skips NULL and empty
 * values). Returns 0, -KH_E_KC_LAYOUT (not strict base64, or longer than
 * KH_KC_KEY_TEXT_MAX), -KH_E_KC_TOO_LARGE (more than KH_KC_DATA_KEYS_MAX rows) or -ENOMEM,
 * with a detail on the first two. */
KH_MUST_CHECK int kh_kc_add_wrapped(struct kh_kc_data *d, const char *text, size_t len,
                                    char *detail, size_t detail_len);

enum kh_kc_key {
        KH_KC_KEY_TEXT,     /* key[0..key_len) is the stored text */
        KH_KC_KEY_NONE,     /* NULL or absent */
        KH_KC_KEY_NOT_TEXT, /* a value of another type (JSON number, object, ...) */
};

/* Appends a user-key row. id: the stored Id's bytes (NULL: none or not text); a longer id is
 * kept cut to KH_KC_ID_MAX bytes. The row's error is set as kh_kc_record documents.
 * Returns 0, -KH_E_KC_TOO_LARGE (more than KH_KC_RECORDS_MAX rows, with a detail) or
 * -ENOMEM. */
KH_MUST_CHECK int kh_kc_add_record(struct kh_kc_data *d, const char *id, size_t id_len,
                                   enum kh_kc_key kind, const char *key, size_t key_len,
                                   char *detail, size_t detail_len);

/* The readers, each behind its scheme; each checks at the end that a data key was found. */
KH_MUST_CHECK int kh_kc_read_json(const char *path, struct kh_kc_data **ret, char *detail,
                                  size_t detail_len);
KH_MUST_CHECK int kh_kc_read_sqlite(const char *path, struct kh_kc_data **ret, char *detail,
                                    size_t detail_len);
KH_MUST_CHECK int kh_kc_read_postgresql(const char *conninfo, struct kh_kc_data **ret,
                                        char *detail, size_t detail_len);
