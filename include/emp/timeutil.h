/* SPDX-License-Identifier: Apache-2.0 */
/* Clocks and the one timestamp format of the API (RFC 3339, UTC, milliseconds). */
#ifndef EMP_TIMEUTIL_H
#define EMP_TIMEUTIL_H

#include <stdint.h>
#include <time.h>

#define TIME_RFC3339_LEN 32

/* Wall-clock time in milliseconds since the epoch. */
int64_t time_now_ms(void);
/* Monotonic time in milliseconds, for timeouts and backoff. */
int64_t time_mono_ms(void);
/* The wall-clock time ms milliseconds from now, as pthread_cond_timedwait and sem_timedwait take
 * it. */
struct timespec time_deadline(int64_t ms);
/* Writes "2026-12-03T18:54:31.123Z" to buf (at least TIME_RFC3339_LEN bytes). Returns buf. */
char *time_format_rfc3339(int64_t ms, char *buf);
/* Parses what time_format_rfc3339 writes (and the form without milliseconds). Returns 0 or -EINVAL.
 */
int time_parse_rfc3339(const char *text, int64_t *ret_ms);
/* Parses a duration like "90", "90s", "15m", "24h", "7d" into seconds. Returns 0 or -EINVAL. */
int time_parse_duration(const char *text, int64_t *ret_seconds);

#endif
