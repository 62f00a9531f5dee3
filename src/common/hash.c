/* SPDX-License-Identifier: Apache-2.0 */
#include "emp/hash.h"

uint64_t emp_hash_text(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}
