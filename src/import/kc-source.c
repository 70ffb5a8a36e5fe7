/* kh_kc_read(): the scheme table, and the row decoding every reader shares, so that a JSON
 * file, a SQLite file and a PostgreSQL database give the same records for the same rows. */
#include "import/kc-source.h"

#include <assert.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "common/buf.h"
#include "common/errors.h"
#include "common/parse.h"
#include "crypto/encoding.h"
#include "import/kc-source-internal.h"

/* The result and what it takes to grow it; callers see only the first member. */
struct kc_data {
        struct kh_kc_data pub;
        size_t records_cap;
        size_t wrapped_cap;
        struct kh_buf scratch; /* one decoded value at a time, reused */
};

static const struct {
        const char *scheme; /* with its colon */
        int (*read)(const char *rest, struct kh_kc_data **ret, char *detail, size_t detail_len);
} readers[] = {
        { "json:", kh_kc_read_json },
        { "sqlite:", kh_kc_read_sqlite },
        { "postgresql:", kh_kc_read_postgresql },
};

void kh_kc_detail(char *detail, size_t detail_len, const char *fmt, ...) {
        va_list ap;

        if (!detail || detail_len == 0)
                return;
        va_start(ap, fmt);
        if (vsnprintf(detail, detail_len, fmt, ap) < 0)
                detail[0] = 0;
        va_end(ap);
}

int kh_kc_read(const char *spec, struct kh_kc_data **ret, char *detail, size_t detail_len) {
        assert(ret);

        kh_kc_detail(detail, detail_len, "%s", "");
        if (!spec)
                return -KH_E_KC_SOURCE_SPEC;
        for (size_t i = 0; i < KH_ELEMENTSOF(readers); i++) {
                size_t n = strlen(readers[i].scheme);

                if (strncmp(spec, readers[i].scheme, n) != 0)
                        continue;
                if (spec[n] == 0) {
                        kh_kc_detail(detail, detail_len, "nothing after \"%s\"",
                                     readers[i].scheme);
                        return -KH_E_KC_SOURCE_SPEC;
                }
                return readers[i].read(spec + n, ret, detail, detail_len);
        }
        kh_kc_detail(detail, detail_len, "%s",
                     "the source must start with json:, sqlite: or postgresql:");
        return -KH_E_KC_SOURCE_SPEC;
}

int kh_kc_data_new(const char *kind, struct kh_kc_data **ret) {
        struct kc_data *d = calloc(1, sizeof(*d));

        if (!d)
                return -ENOMEM;
        d->pub.kind = kind;
        kh_buf_init(&d->scratch, KH_KC_KEY_TEXT_MAX, true);
        *ret = &d->pub;
        return 0;
}

static void wipe_free(void *p, size_t len) {
        if (p)
                OPENSSL_cleanse(p, len);
        free(p);
}

struct kh_kc_data *kh_kc_data_free(struct kh_kc_data *pub) {
        struct kc_data *d;

        if (!pub)
                return NULL;
        d = kh_container_of(pub, struct kc_data, pub);
        for (size_t i = 0; i < pub->n_wrapped; i++)
                wipe_free(pub->wrapped[i].p, pub->wrapped[i].len);
        for (size_t i = 0; i < pub->n_records; i++) {
                free(pub->records[i].id);
                wipe_free(pub->records[i].blob, pub->records[i].blob_len);
        }
        free(pub->wrapped);
        free(pub->records);
        kh_buf_free(&d->scratch);
        free(d);
        return NULL;
}

/* Makes room for one more element in *array (n used, *cap allocated, at most max).
 * Returns 0, -E2BIG (max reached) or -ENOMEM. */
static int grow(void **array, size_t size, size_t n, size_t *cap, size_t max) {
        size_t new_cap, bytes;
        void *p;

        if (n < *cap)
                return 0;
        if (n >= max)
                return -E2BIG;
        new_cap = *cap ? *cap : 16;
        if (new_cap <= n && __builtin_mul_overflow(new_cap, 2, &new_cap))
                return -ENOMEM;
        if (new_cap > max)
                new_cap = max;
        if (__builtin_mul_overflow(new_cap, size, &bytes))
                return -ENOMEM;
        p = realloc(*array, bytes);
        if (!p)
                return -ENOMEM;
        *array = p;
        *cap = new_cap;
        return 0;
}

/* Strict base64 text[0..len) into a new exact-size allocation. Returns 0, -EINVAL (not
 * base64, empty result or over KH_KC_KEY_TEXT_MAX) or -ENOMEM. */
static int decode(struct kc_data *d, const char *text, size_t len, uint8_t **ret_p,
                  size_t *ret_len) {
        uint8_t *p;
        int r;

        if (len == 0 || len > KH_KC_KEY_TEXT_MAX)
                return -EINVAL;
        kh_buf_reset(&d->scratch);
        r = kh_base64_decode(text, len, &d->scratch);
        if (r == -E2BIG)
                return -EINVAL; /* cannot happen: decoded is shorter than the text */
        if (r < 0)
                return r;
        if (d->scratch.len == 0)
                return -EINVAL;
        p = malloc(d->scratch.len);
        if (!p)
                return -ENOMEM;
        memcpy(p, d->scratch.data, d->scratch.len);
        *ret_p = p;
        *ret_len = d->scratch.len;
        kh_buf_reset(&d->scratch);
        return 0;
}

int kh_kc_add_wrapped(struct kh_kc_data *pub, const char *text, size_t len, char *detail,
                      size_t detail_len) {
        struct kc_data *d = kh_container_of(pub, struct kc_data, pub);
        struct kh_kc_wrapped w;
        int r;

        r = grow((void **) &pub->wrapped, sizeof(*pub->wrapped), pub->n_wrapped,
                 &d->wrapped_cap, KH_KC_DATA_KEYS_MAX);
        if (r == -E2BIG) {
                kh_kc_detail(detail, detail_len, "more than %d data-key rows",
                             KH_KC_DATA_KEYS_MAX);
                return -KH_E_KC_TOO_LARGE;
        }
        if (r < 0)
                return r;
        r = decode(d, text, len, &w.p, &w.len);
        if (r == -EINVAL) {
                kh_kc_detail(detail, detail_len,
                             "the wrapped data key is not standard base64 of at most %d "
                             "characters",
                             KH_KC_KEY_TEXT_MAX);
                return -KH_E_KC_LAYOUT;
        }
        if (r < 0)
                return r;
        pub->wrapped[pub->n_wrapped++] = w;
        return 0;
}

int kh_kc_add_record(struct kh_kc_data *pub, const char *id, size_t id_len, enum kh_kc_key kind,
                     const char *key, size_t key_len, char *detail, size_t detail_len) {
        struct kc_data *d = kh_container_of(pub, struct kc_data, pub);
        struct kh_kc_record rec = { 0 };
        int r;

        r = grow((void **) &pub->records, sizeof(*pub->records), pub->n_records,
                 &d->records_cap, KH_KC_RECORDS_MAX);
        if (r == -E2BIG) {
                kh_kc_detail(detail, detail_len, "more than %d user-key rows",
                             KH_KC_RECORDS_MAX);
                return -KH_E_KC_TOO_LARGE;
        }
        if (r < 0)
                return r;

        if (!id)
                id_len = 0;
        rec.id = strndup(id ? id : "", id_len > KH_KC_ID_MAX ? KH_KC_ID_MAX : id_len);
        if (!rec.id)
                return -ENOMEM;
        /* strndup stops at a NUL byte: an id with one inside is no GUID either */
        if (strlen(rec.id) != id_len || kh_parse_guid(rec.id, id_len, rec.guid) < 0) {
                rec.guid[0] = 0;
                rec.error = -KH_E_KC_BAD_ID;
        } else if (kind == KH_KC_KEY_NONE || (kind == KH_KC_KEY_TEXT && key_len == 0)) {
                rec.error = -KH_E_KC_NO_KEY;
        } else if (kind == KH_KC_KEY_NOT_TEXT) {
                rec.error = -KH_E_KC_BAD_BASE64;
        } else {
                r = decode(d, key, key_len, &rec.blob, &rec.blob_len);
                if (r == -EINVAL)
                        rec.error = -KH_E_KC_BAD_BASE64;
                else if (r < 0) {
                        free(rec.id);
                        return r;
                }
        }
        pub->records[pub->n_records++] = rec;
        return 0;
}
