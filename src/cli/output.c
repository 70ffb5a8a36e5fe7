#include "cli/output.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kh_table {
        const struct kh_table_column *columns;
        size_t n_columns;
        char **cells; /* rows * n_columns, row after row */
        size_t rows, cap_rows;
};

int kh_table_new(const struct kh_table_column *columns, size_t n, struct kh_table **ret) {
        struct kh_table *t;

        if (n == 0 || n > KH_TABLE_COLUMNS_MAX)
                return -EINVAL;
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        t->columns = columns;
        t->n_columns = n;
        *ret = t;
        return 0;
}

struct kh_table *kh_table_free(struct kh_table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->rows * t->n_columns; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

int kh_table_add_row(struct kh_table *t, const char *const *cells) {
        char **row;

        if (t->rows == KH_TABLE_ROWS_MAX)
                return -E2BIG;
        if (t->rows == t->cap_rows) {
                size_t cap = t->cap_rows ? t->cap_rows * 2 : 8;
                char **p = reallocarray(t->cells, cap * t->n_columns, sizeof(*p));
                if (!p)
                        return -ENOMEM;
                t->cells = p;
                t->cap_rows = cap;
        }
        row = t->cells + t->rows * t->n_columns;
        for (size_t c = 0; c < t->n_columns; c++) {
                row[c] = kh_out_printable(cells[c] && *cells[c] ? cells[c] : "-");
                if (!row[c]) {
                        while (c > 0)
                                free(row[--c]);
                        return -ENOMEM;
                }
        }
        t->rows++;
        return 0;
}

int kh_table_add_object(struct kh_table *t, const json_t *obj) {
        char numbers[KH_TABLE_COLUMNS_MAX][32];
        const char *cells[KH_TABLE_COLUMNS_MAX];

        for (size_t c = 0; c < t->n_columns; c++) {
                const char *field = t->columns[c].field;
                cells[c] = field ? kh_out_cell(json_object_get(obj, field), numbers[c],
                                               sizeof(numbers[c]))
                                 : NULL;
        }
        return kh_table_add_row(t, cells);
}

static int print_cell(FILE *f, const char *s, size_t width, bool right, bool last) {
        size_t pad = width - kh_out_width(s);

        if (right && fprintf(f, "%*s", (int) pad, "") < 0)
                return -EIO;
        if (fputs(s, f) < 0)
                return -EIO;
        if (!right && !last && fprintf(f, "%*s", (int) pad, "") < 0)
                return -EIO;
        return fputs(last ? "\n" : "  ", f) < 0 ? -EIO : 0;
}

int kh_table_print(const struct kh_table *t, FILE *f) {
        size_t width[KH_TABLE_COLUMNS_MAX];
        int r;

        for (size_t c = 0; c < t->n_columns; c++) {
                width[c] = kh_out_width(t->columns[c].title);
                for (size_t i = 0; i < t->rows; i++) {
                        size_t w = kh_out_width(t->cells[i * t->n_columns + c]);
                        if (w > width[c])
                                width[c] = w;
                }
        }
        for (size_t i = 0; i <= t->rows; i++) {
                for (size_t c = 0; c < t->n_columns; c++) {
                        const char *s = i == 0 ? t->columns[c].title
                                               : t->cells[(i - 1) * t->n_columns + c];
                        /* a right-aligned title is right-aligned too, over its numbers */
                        r = print_cell(f, s, width[c], t->columns[c].right, c + 1 == t->n_columns);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

/* The length of the UTF-8 sequence at p (1..4) if it is well-formed (RFC 3629: shortest
 * form, no surrogates, at most U+10FFFF) and no C1 control character; else 0. */
static size_t utf8_printable_len(const unsigned char *p) {
        unsigned char b = p[0];
        size_t n;

        if (b >= 0xc2 && b <= 0xdf)
                n = 2;
        else if (b >= 0xe0 && b <= 0xef)
                n = 3;
        else if (b >= 0xf0 && b <= 0xf4)
                n = 4;
        else
                return 0;
        for (size_t i = 1; i < n; i++)
                if ((p[i] & 0xc0) != 0x80) /* also stops at the NUL */
                        return 0;
        if ((b == 0xe0 && p[1] < 0xa0) || (b == 0xed && p[1] > 0x9f) ||
            (b == 0xf0 && p[1] < 0x90) || (b == 0xf4 && p[1] > 0x8f))
                return 0;
        if (b == 0xc2 && p[1] <= 0x9f) /* U+0080..U+009F: C1 controls (CSI is U+009B) */
                return 0;
        return n;
}

char *kh_out_printable(const char *s) {
        static const char hex[] = "0123456789abcdef";
        const unsigned char *p = (const unsigned char *) s;
        size_t len = strlen(s), size;
        char *out, *o;

        if (__builtin_mul_overflow(len, 4, &size) || __builtin_add_overflow(size, 1, &size))
                return NULL;
        out = malloc(size);
        if (!out)
                return NULL;
        o = out;
        while (*p) {
                size_t n = *p < 0x80 ? 1 : utf8_printable_len(p);

                if (n == 1 && *p >= 0x20 && *p != 0x7f && *p != '\\') {
                        *o++ = (char) *p++;
                } else if (n == 1 && *p == '\\') {
                        *o++ = '\\';
                        *o++ = '\\';
                        p++;
                } else if (n > 1) {
                        memcpy(o, p, n);
                        o += n;
                        p += n;
                } else { /* a control character, or a byte that starts no valid sequence */
                        *o++ = '\\';
                        *o++ = 'x';
                        *o++ = hex[*p >> 4];
                        *o++ = hex[*p & 0xf];
                        p++;
                }
        }
        *o = 0;
        return out;
}

size_t kh_out_width(const char *s) {
        size_t w = 0;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++)
                if ((*p & 0xc0) != 0x80)
                        w++;
        return w;
}

int kh_out_json(FILE *f, const json_t *v) {
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        int r = 0;

        if (!text)
                return -ENOMEM;
        if (fputs(text, f) < 0 || fputc('\n', f) < 0)
                r = -EIO;
        free(text);
        return r;
}

const char *kh_out_cell(const json_t *v, char *buf, size_t len) {
        if (json_is_string(v))
                return json_string_value(v);
        if (json_is_integer(v)) {
                (void) snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return buf;
        }
        if (json_is_real(v)) {
                (void) snprintf(buf, len, "%.1f", json_real_value(v));
                return buf;
        }
        if (json_is_boolean(v))
                return json_is_true(v) ? "true" : "false";
        return NULL;
}

void kh_out_progress(const char *label, uint64_t done, uint64_t total, int64_t eta_s,
                     bool finished) {
        enum { WIDTH = 30 };
        unsigned pct = total ? (unsigned) (done >= total ? 100 : done * 100 / total) : 100;
        unsigned fill = pct * WIDTH / 100;
        char bar[WIDTH + 1];

        memset(bar, '#', fill);
        memset(bar + fill, '.', WIDTH - fill);
        bar[WIDTH] = 0;
        fprintf(stderr, "\r%s [%s] %3u%%  %" PRIu64 "/%" PRIu64, label, bar, pct, done, total);
        if (eta_s >= 0 && !finished)
                fprintf(stderr, "  about %" PRId64 " s left   ", eta_s);
        else
                fputs("                   ", stderr);
        if (finished)
                fputc('\n', stderr);
        fflush(stderr);
}
