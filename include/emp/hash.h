/* SPDX-License-Identifier: Apache-2.0 */
/* A hash of text for in-memory tables (FNV-1a): fast on short keys, not for hostile input that
 * could choose collisions (every table using it bounds what it holds). */
#ifndef EMP_HASH_H
#define EMP_HASH_H

#include <stdint.h>

uint64_t emp_hash_text(const char *s);

#endif
