/* SPDX-License-Identifier: Apache-2.0 */
/* Two small things server and CLI both need: writing a whole buffer to an fd, and percent-encoding
 * text for a URL. */
#ifndef EMP_TEXTIO_H
#define EMP_TEXTIO_H

#include <stddef.h>

/* Writes all len bytes, retrying short writes and EINTR. Returns 0 or -errno. */
int textio_write_all(int fd, const void *buf, size_t len);

/* Appends s to the NUL-terminated buf (size bytes), percent-encoding every byte but the
 * unreserved ones of RFC 3986 (letters, digits, '-', '.', '_', '~'). Returns 0, or
 * -ENAMETOOLONG (buf unchanged past its old end) when it does not fit. */
int textio_url_encode(char *buf, size_t size, const char *s);

#endif
