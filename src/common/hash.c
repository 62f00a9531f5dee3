/* SPDX-License-Identifier: Apache-2.0 */
#include "emp/hash.h"

uint64_t emp_hash_text(const char *s)
{
    uint64_t h = EMP_HASH_INIT;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = emp_hash_byte(h, *p);
    return h;
}
