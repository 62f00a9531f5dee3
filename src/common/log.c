/* SPDX-License-Identifier: Apache-2.0 */
/* Logfmt lines on stderr, written with one write(2) each so lines of concurrent threads never mix.
 */
#include "emp/log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static volatile enum log_level current_level = LOG_INFO;
static _Thread_local char thread_request_id[40];

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

int log_level_parse(const char *text, enum log_level *ret_level)
{
    for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
        if (strcasecmp(text, level_names[i]) == 0) {
            *ret_level = (enum log_level)i;
            return 0;
        }
    }
    if (strcasecmp(text, "warning") == 0) {
        *ret_level = LOG_WARN;
        return 0;
    }
    return -EINVAL;
}

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_get_level(void)
{
    return current_level;
}

void log_set_request_id(const char *request_id)
{
    snprintf(thread_request_id, sizeof(thread_request_id), "%s", request_id ? request_id : "");
}

char *log_quote(char *buf, unsigned size, const char *value)
{
    if (size == 0)
        return buf;
    if (!value)
        value = "";
    bool plain = value[0] != '\0';
    for (const char *p = value; *p && plain; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '=' || *p == '\\' || *p == 0x7f)
            plain = false;
    if (plain) {
        snprintf(buf, size, "%s", value);
        return buf;
    }
    unsigned out = 0;
    buf[out++] = '"';
    for (const char *p = value; *p && out + 6 < size; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            buf[out++] = '\\';
            buf[out++] = (char)c;
        } else if (c < ' ' || c == 0x7f) {
            out += (unsigned)snprintf(buf + out, size - out, "\\x%02x", c);
        } else {
            buf[out++] = (char)c;
        }
    }
    if (out + 1 < size)
        buf[out++] = '"';
    buf[out < size ? out : size - 1] = '\0';
    return buf;
}

void log_msg(enum log_level level, const char *msg, const char *kv_fmt, ...)
{
    if (level < current_level || level >= LOG_OFF)
        return;
    char line[2048];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    char quoted_msg[512];
    int len = snprintf(line, sizeof(line), "time=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s",
                       tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                       tm.tm_sec, now.tv_nsec / 1000000L, level_names[level]);
    if (thread_request_id[0] && len < (int)sizeof(line))
        len += snprintf(line + len, sizeof(line) - (size_t)len, " req=%s", thread_request_id);
    if (len < (int)sizeof(line))
        len += snprintf(line + len, sizeof(line) - (size_t)len, " msg=%s",
                        log_quote(quoted_msg, sizeof(quoted_msg), msg));
    if (kv_fmt && kv_fmt[0] && len < (int)sizeof(line) - 1) {
        line[len++] = ' ';
        va_list ap;
        va_start(ap, kv_fmt);
        len += vsnprintf(line + len, sizeof(line) - (size_t)len, kv_fmt, ap);
        va_end(ap);
    }
    if (len >= (int)sizeof(line) - 1)
        len = (int)sizeof(line) - 2;
    line[len++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)len);
    (void)ignored;
}
