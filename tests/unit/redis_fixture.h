/* SPDX-License-Identifier: Apache-2.0 */
/* A real redis-server for unit tests: started on a unix socket in a fresh temporary directory,
 * stopped (and the directory removed) by redis_fixture_stop(). */
#ifndef EMP_TEST_REDIS_FIXTURE_H
#define EMP_TEST_REDIS_FIXTURE_H

#include <sys/types.h>

struct redis_fixture {
    pid_t pid;
    char dir[256];
    char socket_path[300];
    char url[320]; /* unix:///... */
};

/* Returns 0 once the server accepts connections, -1 if it could not be started. */
int redis_fixture_start(struct redis_fixture *fx);
void redis_fixture_stop(struct redis_fixture *fx);
/* Stops the server but keeps its directory, so that redis_fixture_restart() brings it back. */
void redis_fixture_pause(struct redis_fixture *fx);
int redis_fixture_restart(struct redis_fixture *fx);
/* Runs redis-cli against the fixture with the given arguments (space separated, no quoting) and
 * returns its first output line in buf (size bytes). Returns 0 on success. */
int redis_fixture_cli(const struct redis_fixture *fx, const char *args, char *buf, size_t size);

#endif
