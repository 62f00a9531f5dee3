/* SPDX-License-Identifier: Apache-2.0 */
/* Whole writes and URL encoding. */
#include "emp/textio.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

int textio_write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int textio_url_encode(char *buf, size_t size, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t start = strlen(buf), used = start;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        bool plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' || *p == '~';
        size_t need = plain ? 1 : 3;
        if (used + need >= size) {
            buf[start] = '\0';
            return -ENAMETOOLONG;
        }
        if (plain) {
            buf[used++] = (char)*p;
        } else {
            buf[used++] = '%';
            buf[used++] = hex[*p >> 4];
            buf[used++] = hex[*p & 15];
        }
    }
    buf[used] = '\0';
    return 0;
}
