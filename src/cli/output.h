/* SPDX-License-Identifier: Apache-2.0 */
/* What the CLI shows a person: aligned tables, "key: value" blocks, and text from the server made
 * safe for a terminal; plus the verbatim JSON passthrough of -o json. It formats; it does not
 * decide what to show. */
#ifndef EMP_CLI_OUTPUT_H
#define EMP_CLI_OUTPUT_H

#include <stddef.h>
#include <stdio.h>

#define OUTPUT_COLUMNS_MAX 16
#define OUTPUT_CELL_MAX    512     /* longer cells are cut, ending in "..." */
#define OUTPUT_ROWS_MAX    1000000 /* bounds what one table holds */
#define OUTPUT_COLUMN_GAP  3       /* spaces between columns */

/* Writes s with control characters (which could drive the terminal) shown as escapes: \n, \t,
 * \x1b, \u009b. Everything else, UTF-8 included, goes out as is. NULL writes nothing. */
void output_text(FILE *out, const char *s);

/* The columns output_text(s) takes on a terminal, counting one per character. */
size_t output_width(const char *s);

/* Writes a JSON document exactly as received, then a newline (unless it already ends with one). */
void output_json(FILE *out, const char *body, size_t len);

struct output_table;

/* A table with columns headers (1 to OUTPUT_COLUMNS_MAX). Returns 0, -EINVAL or -ENOMEM; free with
 * output_table_free(). */
int output_table_new(const char *const *headers, size_t columns, struct output_table **ret_table);
/* Appends a row of `columns` cells; NULL and empty cells show as "-". The cells are copied. Returns
 * 0, -ENOMEM, or -E2BIG past OUTPUT_ROWS_MAX rows. */
int output_table_add(struct output_table *table, const char *const *cells);
size_t output_table_rows(const struct output_table *table);
/* Prints the header and the rows, each column as wide as its widest cell, OUTPUT_COLUMN_GAP spaces
 * apart, no trailing spaces. */
void output_table_print(const struct output_table *table, FILE *out);
/* Accepts NULL. */
void output_table_free(struct output_table *table);

struct output_kv {
    const char *key;   /* NULL: another line of the value above, aligned under it */
    const char *value; /* NULL shows as "-" */
};

/* Prints "key: value" lines, the values aligned in one column. */
void output_kv_print(FILE *out, const struct output_kv *pairs, size_t count);

#endif
