/* Human output of `keyhold`: tables with aligned columns and text made safe for a terminal.
 * A server's strings (a token's sub as audit actor, an error message) are data, not terminal
 * commands: every string printed for a human goes through kh_out_printable(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "common/cleanup.h"

#define KH_TABLE_COLUMNS_MAX 16
#define KH_TABLE_ROWS_MAX    100000 /* more is not a table for a human */

struct kh_table_column {
        const char *title; /* printed as given, e.g. "VERSION" */
        const char *field; /* for kh_table_add_object(): the JSON field shown, or NULL */
        bool right;        /* right-aligned (numbers) */
};

struct kh_table;

/**
 * kh_table_new() - an empty table with n columns (1..KH_TABLE_COLUMNS_MAX).
 * @columns: borrowed; must outlive the table.
 * Returns 0, -EINVAL (n out of range) or -ENOMEM.
 */
KH_MUST_CHECK int kh_table_new(const struct kh_table_column *columns, size_t n,
                               struct kh_table **ret);
struct kh_table *kh_table_free(struct kh_table *t);
KH_DEFINE_CLEANUP(kh_table_free, struct kh_table *)

/* Appends a row of the table's column count of cells (NULL or "" prints as "-", so that no
 * cell is blank), copied as kh_out_printable() makes them. Returns 0, -E2BIG (KH_TABLE_ROWS_MAX) or -ENOMEM. */
KH_MUST_CHECK int kh_table_add_row(struct kh_table *t, const char *const *cells);

/* Appends a row showing the columns' fields of the JSON object obj (kh_out_cell() of each;
 * a missing field shows "-"). Returns as kh_table_add_row(). */
KH_MUST_CHECK int kh_table_add_object(struct kh_table *t, const json_t *obj);

/* Prints the header and the rows, columns two spaces apart and as wide as their widest cell
 * (counted in characters, not bytes), without trailing blanks. Returns 0 or -EIO. */
KH_MUST_CHECK int kh_table_print(const struct kh_table *t, FILE *f);

/**
 * kh_out_printable() - s as a terminal may show it: control characters (C0, DEL, C1) and
 * bytes that are not UTF-8 become \xNN, and a backslash becomes \\, so that what is shown
 * names the bytes exactly and no escape sequence reaches the terminal. Other UTF-8 stays.
 * Returns a new string (the caller frees it), or NULL when out of memory.
 */
char *kh_out_printable(const char *s);

/* The number of characters (UTF-8 code points) of s: its width in a table. */
size_t kh_out_width(const char *s);

/* Prints v as compact JSON and a newline. Returns 0, -ENOMEM or -EIO. */
KH_MUST_CHECK int kh_out_json(FILE *f, const json_t *v);

/* The text of a JSON value for a table cell: a string as is, an integer or real in decimal,
 * true/false, and NULL for null or a missing value (the cell shows "-"). buf receives numbers
 * and is what is returned for them. */
const char *kh_out_cell(const json_t *v, char *buf, size_t len);

/* A progress bar on stderr (callers draw it only when stderr is a terminal): "label [###...]
 * 42%  done/total  about N s left" redrawn in place (eta_s < 0: unknown); finished ends the
 * line. */
void kh_out_progress(const char *label, uint64_t done, uint64_t total, int64_t eta_s,
                     bool finished);
