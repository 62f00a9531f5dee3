/* SPDX-License-Identifier: Apache-2.0 */
/* Starting one replica process of the local backend, through a small shim process that ties the
 * replica's life to emp-server's: replica and shim each run in their own process group, the shim
 * dies with emp-server (PR_SET_PDEATHSIG) and takes the replica's whole group with it, and it
 * reports how the replica ended. Process mechanics only: no policy, no apps. */
#ifndef EMP_LOCAL_SPAWN_H
#define EMP_LOCAL_SPAWN_H

#include <stdint.h>
#include <sys/types.h>

struct spawn_request {
    const char *path;    /* resolved executable (spawn_resolve) */
    char *const *argv;   /* NULL-terminated */
    char *const *envp;   /* NULL-terminated */
    const char *workdir; /* chdir target of the replica */
    int output_fd;       /* stdout and stderr of the replica */
    int lock_fd;         /* held by the shim while it lives (a data directory's lock), or -1 */
    int grace_ms;        /* SIGTERM, then SIGKILL after this long */
    int orphan_grace_ms; /* the same when emp-server itself is gone */
};

struct spawn_result {
    pid_t shim_pid;
    int pidfd;     /* readable when the shim exited; O_CLOEXEC */
    int status_fd; /* the shim writes the replica's wait status here before it exits; O_CLOEXEC */
};

/* Finds program the way execvp would with search_path (PATH of the replica): a name with a '/'
 * is taken as it is. Writes the result into buf (size bytes). Returns 0, -ENOENT when there is no
 * such executable, -EACCES when it is not executable. */
int spawn_resolve(const char *program, const char *search_path, char *buf, size_t size);

/* Forks the shim, which forks and execs the replica. Returns 0 or -errno (fork failed). An exec
 * failure is not reported here but through status_fd, as spawn_decode() shows. */
int spawn_start(const struct spawn_request *req, struct spawn_result *ret);

/* Asks the shim to stop the replica (SIGTERM, then SIGKILL after the grace period). */
int spawn_stop(const struct spawn_result *child);

/* After the pidfd became readable: reaps the shim and fills what happened into buf ("exited with
 * status 3", "killed by signal 9 (SIGKILL)", "could not be started: No such file or directory").
 * *ret_clean is true for exit status 0. Closes the fds of child. */
void spawn_reap(struct spawn_result *child, char *buf, size_t size, int *ret_clean);

#endif
