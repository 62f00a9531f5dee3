/* SPDX-License-Identifier: Apache-2.0 */
/* A hash of text for in-memory tables (FNV-1a): fast on short keys, not for hostile input that
 * could choose collisions (every table using it bounds what it holds). */
#ifndef EMP_HASH_H
#define EMP_HASH_H

#include <stdint.h>

#define EMP_HASH_INIT 1469598103934665603ULL /* the hash of "" */

/* The hash of text so far (EMP_HASH_INIT at first) and then byte c: for a parser that hashes
 * what it copies as it goes. */
static inline uint64_t emp_hash_byte(uint64_t hash, unsigned char c)
{
    return (hash ^ c) * 1099511628211ULL;
}

uint64_t emp_hash_text(const char *s);

#endif
