/* SPDX-License-Identifier: Apache-2.0 */
/* The embedded store: a redis-server child on a unix socket in the state directory, with AOF on,
 * that dies with emp-server (also on SIGKILL) and comes back with all data on the next start. Runs
 * the process only; speaking Redis is the store's job. */
#ifndef EMP_REDIS_CHILD_H
#define EMP_REDIS_CHILD_H

#include "emp/error.h"

struct redis_child;

/* Starts redis-server (binary: the redis-server path or name on PATH) with its data in
 * state_dir/redis and waits until it accepts connections. Writes its URL ("unix:///...") into
 * *ret_child. Returns 0 or -errno with err. Stop with redis_child_stop(). */
int redis_child_start(const char *binary, const char *state_dir, struct redis_child **ret_child,
                      struct emp_error *err);
const char *redis_child_url(const struct redis_child *child);
/* Asks the child to shut down (it writes its AOF) and waits for it. Accepts NULL. */
void redis_child_stop(struct redis_child *child);

#endif
