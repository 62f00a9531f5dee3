/* SPDX-License-Identifier: Apache-2.0 */
/* The CLI's human output: tables whose columns line up, key/value blocks, text from the server
 * that cannot drive the terminal, and -o json that passes the server's bytes through untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "output.h"

struct capture {
    FILE *f;
    char *text;
    size_t len;
};

static void capture_open(struct capture *c)
{
    c->text = NULL;
    c->len = 0;
    c->f = open_memstream(&c->text, &c->len);
    assert_non_null(c->f);
}

/* Closes the stream; the text stays in c->text (free it). */
static const char *capture_close(struct capture *c)
{
    fclose(c->f);
    return c->text;
}

/* The byte offset of needle in line, as a column. */
static long column_of(const char *line, const char *needle)
{
    const char *at = strstr(line, needle);
    return at ? at - line : -1;
}

/* Copies line number n (0-based) of text into buf. */
static void nth_line(const char *text, int n, char *buf, size_t size)
{
    const char *p = text;
    for (int i = 0; i < n && p; i++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    assert_non_null(p);
    size_t len = strcspn(p, "\n");
    assert_true(len < size);
    memcpy(buf, p, len);
    buf[len] = '\0';
}

static void test_table_columns_line_up(void **state)
{
    static const char *const headers[] = {"NAME", "ID", "STATE", "READY", "ADDRESS"};
    struct output_table *table;
    assert_int_equal(output_table_new(headers, 5, &table), 0);
    const char *row1[] = {"songs-ms", "0b78d6a2-1111-4222-8333-944455556666", "running", "2/2",
                          "http://127.0.0.1:40001"};
    const char *row2[] = {"a", "1", "deploying", "0/10", NULL};
    assert_int_equal(output_table_add(table, row1), 0);
    assert_int_equal(output_table_add(table, row2), 0);
    assert_int_equal(output_table_rows(table), 2);
    struct capture c;
    capture_open(&c);
    output_table_print(table, c.f);
    output_table_free(table);
    const char *text = capture_close(&c);

    char header[256], first[256], second[256];
    nth_line(text, 0, header, sizeof(header));
    nth_line(text, 1, first, sizeof(first));
    nth_line(text, 2, second, sizeof(second));
    /* every column starts where its header starts, on every row */
    assert_int_equal(column_of(header, "ID"), column_of(first, "0b78"));
    assert_int_equal(column_of(header, "ID"), column_of(second, "1 "));
    assert_int_equal(column_of(header, "STATE"), column_of(first, "running"));
    assert_int_equal(column_of(header, "STATE"), column_of(second, "deploying"));
    assert_int_equal(column_of(header, "READY"), column_of(second, "0/10"));
    assert_int_equal(column_of(header, "ADDRESS"), column_of(first, "http://"));
    /* a column is as wide as its widest cell plus the gap */
    assert_int_equal(column_of(header, "ID"), strlen("songs-ms") + OUTPUT_COLUMN_GAP);
    /* no address shows as "-", and no line ends in spaces */
    assert_int_equal(column_of(header, "ADDRESS"), column_of(second, "-"));
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        size_t len = strcspn(line, "\n");
        assert_true(len > 0);
        assert_true(line[len - 1] != ' ');
    }
    free(c.text);
}

static void test_table_counts_characters_not_bytes(void **state)
{
    static const char *const headers[] = {"NAME", "STATE"};
    struct output_table *table;
    assert_int_equal(output_table_new(headers, 2, &table), 0);
    const char *accented[] = {"caf\xc3\xa9", "running"}; /* "café": 5 bytes, 4 columns */
    const char *plain[] = {"cafe", "stopped"};
    assert_int_equal(output_table_add(table, accented), 0);
    assert_int_equal(output_table_add(table, plain), 0);
    struct capture c;
    capture_open(&c);
    output_table_print(table, c.f);
    output_table_free(table);
    const char *text = capture_close(&c);
    char header[128], first[128], second[128];
    nth_line(text, 0, header, sizeof(header));
    nth_line(text, 1, first, sizeof(first));
    nth_line(text, 2, second, sizeof(second));
    assert_int_equal(output_width(first), output_width(second));
    assert_int_equal(column_of(header, "STATE"), column_of(second, "stopped"));
    assert_int_equal(column_of(first, "running"), column_of(second, "stopped") + 1); /* bytes */
    free(c.text);
}

static void test_server_text_cannot_drive_the_terminal(void **state)
{
    struct capture c;
    capture_open(&c);
    output_text(c.f, "ok\x1b[2Jthen\nnext\t\xc2\x9b"
                     "31m end");
    const char *text = capture_close(&c);
    assert_string_equal(text, "ok\\x1b[2Jthen\\nnext\\t\\u009b31m end");
    assert_null(strchr(text, '\x1b'));
    assert_int_equal(output_width("a\nb"), 4); /* as shown: a \ n b */
    free(c.text);
}

static void test_key_value_block_aligns_values(void **state)
{
    const struct output_kv pairs[] = {
        {"id", "0b78"},    {"desired state", "running"},
        {"address", NULL}, {"envs", "DB_HOST=songs-db"},
        {NULL, "OTHER=1"},
    };
    struct capture c;
    capture_open(&c);
    output_kv_print(c.f, pairs, sizeof(pairs) / sizeof(pairs[0]));
    const char *text = capture_close(&c);
    assert_string_equal(text, "id:            0b78\n"
                              "desired state: running\n"
                              "address:       -\n"
                              "envs:          DB_HOST=songs-db\n"
                              "               OTHER=1\n");
    free(c.text);
}

static void test_json_passes_through_byte_for_byte(void **state)
{
    /* spacing and key order that a re-encoder would change */
    static const char body[] = "{ \"b\" : 1,\"a\":[ 2 ,3 ], \"s\":\"\\u00e9\" }";
    struct capture c;
    capture_open(&c);
    output_json(c.f, body, strlen(body));
    capture_close(&c);
    assert_int_equal(c.len, strlen(body) + 1);
    assert_memory_equal(c.text, body, strlen(body));
    assert_int_equal(c.text[strlen(body)], '\n');
    free(c.text);

    capture_open(&c);
    output_json(c.f, "{}\n", 3); /* already ends with a newline: not doubled */
    assert_string_equal(capture_close(&c), "{}\n");
    free(c.text);
}

static void test_long_cells_are_cut(void **state)
{
    static const char *const headers[] = {"REASON"};
    struct output_table *table;
    assert_int_equal(output_table_new(headers, 1, &table), 0);
    char *huge = malloc(OUTPUT_CELL_MAX * 2 + 1);
    memset(huge, 'x', OUTPUT_CELL_MAX * 2);
    huge[OUTPUT_CELL_MAX * 2] = '\0';
    const char *row[] = {huge};
    assert_int_equal(output_table_add(table, row), 0);
    struct capture c;
    capture_open(&c);
    output_table_print(table, c.f);
    output_table_free(table);
    const char *text = capture_close(&c);
    char line[OUTPUT_CELL_MAX * 3];
    nth_line(text, 1, line, sizeof(line));
    assert_int_equal(strlen(line), OUTPUT_CELL_MAX);
    assert_string_equal(line + OUTPUT_CELL_MAX - 3, "...");
    free(huge);
    free(c.text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_columns_line_up),
        cmocka_unit_test(test_table_counts_characters_not_bytes),
        cmocka_unit_test(test_server_text_cannot_drive_the_terminal),
        cmocka_unit_test(test_key_value_block_aligns_values),
        cmocka_unit_test(test_json_passes_through_byte_for_byte),
        cmocka_unit_test(test_long_cells_are_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
