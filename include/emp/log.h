/* SPDX-License-Identifier: Apache-2.0 */
/* One line per event on stderr: time, level, request id (when there is one), message and key=value
 * pairs. Not for user-facing output: the CLI prints its results itself. */
#ifndef EMP_LOG_H
#define EMP_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };

/* Parses "debug", "info", "warn", "error" or "off". Returns 0 or -EINVAL. */
int log_level_parse(const char *text, enum log_level *ret_level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* The request id that log lines of this thread carry; NULL or "" clears it. The string is copied.
 */
void log_set_request_id(const char *request_id);

/* msg is a short human sentence; the format adds key=value pairs after it, e.g.
 * log_msg(LOG_INFO, "request done", "method=%s status=%d", m, s). kv may be NULL. Values that a
 * user controls must go through log_quote(). */
void log_msg(enum log_level level, const char *msg, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Writes value to buf (size bytes) as a logfmt value: quoted and escaped if it holds spaces,
 * quotes,
 * '=' or control characters, truncated to fit. Returns buf. */
char *log_quote(char *buf, unsigned size, const char *value);

#define log_debug(msg, ...)                                                                        \
    do {                                                                                           \
        if (log_get_level() <= LOG_DEBUG)                                                          \
            log_msg(LOG_DEBUG, msg, __VA_ARGS__);                                                  \
    } while (0)
#define log_info(msg, ...)  log_msg(LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  log_msg(LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) log_msg(LOG_ERROR, msg, __VA_ARGS__)

#endif
