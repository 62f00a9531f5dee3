/* SPDX-License-Identifier: Apache-2.0 */
/* Tables and key/value blocks for human output. Text that comes from the server (names, reasons,
 * env values) is escaped here, so a crafted value cannot move the cursor or recolour the terminal.
 */
#include "output.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The escape for byte c at s (and the byte after it for C1 controls), or 0 when it is printable.
 * *ret_skip says how many bytes the escape stands for. */
static int escape_of(const unsigned char *s, char buf[8], size_t *ret_skip)
{
    *ret_skip = 1;
    if (s[0] == '\n')
        return snprintf(buf, 8, "\\n");
    if (s[0] == '\t')
        return snprintf(buf, 8, "\\t");
    if (s[0] == '\r')
        return snprintf(buf, 8, "\\r");
    if (s[0] < 0x20 || s[0] == 0x7f)
        return snprintf(buf, 8, "\\x%02x", s[0]);
    /* C1 controls (U+0080..U+009F, UTF-8 C2 80..C2 9F): some terminals obey them too */
    if (s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f) {
        *ret_skip = 2;
        return snprintf(buf, 8, "\\u%04x", s[1]);
    }
    return 0;
}

void output_text(FILE *out, const char *s)
{
    if (!s)
        return;
    const unsigned char *p = (const unsigned char *)s;
    const unsigned char *run = p;
    while (*p) {
        char buf[8];
        size_t skip;
        int len = escape_of(p, buf, &skip);
        if (len == 0) {
            p++;
            continue;
        }
        fwrite(run, 1, (size_t)(p - run), out);
        fwrite(buf, 1, (size_t)len, out);
        p += skip;
        run = p;
    }
    fwrite(run, 1, (size_t)(p - run), out);
}

size_t output_width(const char *s)
{
    size_t width = 0;
    if (!s)
        return 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        char buf[8];
        size_t skip;
        int len = escape_of(p, buf, &skip);
        if (len > 0) {
            width += (size_t)len;
            p += skip;
            continue;
        }
        if ((*p & 0xc0) != 0x80) /* not a UTF-8 continuation byte: a new character */
            width++;
        p++;
    }
    return width;
}

void output_json(FILE *out, const char *body, size_t len)
{
    fwrite(body, 1, len, out);
    if (len == 0 || body[len - 1] != '\n')
        fputc('\n', out);
}

/* ---- tables ---- */

struct output_table {
    size_t columns;
    char **cells; /* rows * columns, the header first */
    size_t rows;  /* including the header */
    size_t capacity;
    size_t widths[OUTPUT_COLUMNS_MAX];
};

/* A copy of s cut to OUTPUT_CELL_MAX bytes on a character boundary; free() it. */
static char *cell_copy(const char *s)
{
    if (!s || !s[0])
        s = "-";
    size_t len = strlen(s);
    if (len <= OUTPUT_CELL_MAX)
        return strdup(s);
    size_t cut = OUTPUT_CELL_MAX - 3;
    while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
        cut--;
    char *copy = malloc(cut + 4);
    if (!copy)
        return NULL;
    memcpy(copy, s, cut);
    memcpy(copy + cut, "...", 4);
    return copy;
}

static int append_row(struct output_table *t, const char *const *cells)
{
    if (t->rows > OUTPUT_ROWS_MAX)
        return -E2BIG;
    if (t->rows == t->capacity) {
        size_t capacity = t->capacity ? t->capacity * 2 : 16;
        char **grown = realloc(t->cells, capacity * t->columns * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        t->cells = grown;
        t->capacity = capacity;
    }
    char **row = t->cells + t->rows * t->columns;
    for (size_t c = 0; c < t->columns; c++) {
        row[c] = cell_copy(cells[c]);
        if (!row[c]) {
            while (c-- > 0)
                free(row[c]);
            return -ENOMEM;
        }
    }
    for (size_t c = 0; c < t->columns; c++) {
        size_t width = output_width(row[c]);
        if (width > t->widths[c])
            t->widths[c] = width;
    }
    t->rows++;
    return 0;
}

int output_table_new(const char *const *headers, size_t columns, struct output_table **ret_table)
{
    if (columns == 0 || columns > OUTPUT_COLUMNS_MAX)
        return -EINVAL;
    struct output_table *t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->columns = columns;
    int r = append_row(t, headers);
    if (r < 0) {
        output_table_free(t);
        return r;
    }
    *ret_table = t;
    return 0;
}

int output_table_add(struct output_table *table, const char *const *cells)
{
    return append_row(table, cells);
}

size_t output_table_rows(const struct output_table *table)
{
    return table->rows - 1;
}

void output_table_print(const struct output_table *table, FILE *out)
{
    for (size_t r = 0; r < table->rows; r++) {
        char *const *row = table->cells + r * table->columns;
        for (size_t c = 0; c < table->columns; c++) {
            output_text(out, row[c]);
            if (c + 1 == table->columns)
                break;
            size_t pad = table->widths[c] - output_width(row[c]) + OUTPUT_COLUMN_GAP;
            fprintf(out, "%*s", (int)pad, "");
        }
        fputc('\n', out);
    }
}

void output_table_free(struct output_table *table)
{
    if (!table)
        return;
    for (size_t i = 0; i < table->rows * table->columns; i++)
        free(table->cells[i]);
    free(table->cells);
    free(table);
}

/* ---- key: value blocks ---- */

void output_kv_print(FILE *out, const struct output_kv *pairs, size_t count)
{
    size_t key_width = 0;
    for (size_t i = 0; i < count; i++)
        if (pairs[i].key && output_width(pairs[i].key) + 1 > key_width)
            key_width = output_width(pairs[i].key) + 1;
    for (size_t i = 0; i < count; i++) {
        size_t used = 0;
        if (pairs[i].key) {
            output_text(out, pairs[i].key);
            fputc(':', out);
            used = output_width(pairs[i].key) + 1;
        }
        fprintf(out, "%*s", (int)(key_width - used + 1), "");
        output_text(out, pairs[i].value ? pairs[i].value : "-");
        fputc('\n', out);
    }
}
