/* SPDX-License-Identifier: Apache-2.0 */
/* fork, shim and exec. Between fork and exec only async-signal-safe calls are made: emp-server is
 * multi-threaded, and a forked copy of it may hold locks that no thread will ever release. */
#include "spawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MSG_EXEC_FAILED = 1, MSG_EXITED = 2 };

struct status_msg {
    int kind;
    int value; /* errno, or a wait status */
};

int spawn_resolve(const char *program, const char *search_path, char *buf, size_t size)
{
    if (!program[0])
        return -ENOENT;
    if (strchr(program, '/')) {
        struct stat st;
        if (stat(program, &st) < 0 || !S_ISREG(st.st_mode))
            return -ENOENT;
        if (access(program, X_OK) < 0)
            return -EACCES;
        if ((size_t)snprintf(buf, size, "%s", program) >= size)
            return -ENAMETOOLONG;
        return 0;
    }
    int found = -ENOENT;
    const char *p = search_path && search_path[0] ? search_path : "/usr/local/bin:/usr/bin:/bin";
    while (*p) {
        size_t len = strcspn(p, ":");
        char candidate[4096];
        if (len > 0 && (size_t)snprintf(candidate, sizeof(candidate), "%.*s/%s", (int)len, p,
                                        program) < sizeof(candidate)) {
            struct stat st;
            if (stat(candidate, &st) == 0 && S_ISREG(st.st_mode)) {
                if (access(candidate, X_OK) == 0) {
                    if ((size_t)snprintf(buf, size, "%s", candidate) >= size)
                        return -ENAMETOOLONG;
                    return 0;
                }
                found = -EACCES;
            }
        }
        p += len;
        if (*p == ':')
            p++;
    }
    return found;
}

/* Closes every fd from 3 up but those in keep (ascending, -1 entries ignored): a forked copy of
 * emp-server holds its listening sockets and connections, which must not outlive it. */
static void close_all_but(const int *keep, int count)
{
    unsigned from = 3;
    for (int i = 0; i < count; i++) {
        if (keep[i] < (int)from)
            continue;
        if ((unsigned)keep[i] > from)
            close_range(from, (unsigned)keep[i] - 1, 0);
        from = (unsigned)keep[i] + 1;
    }
    close_range(from, ~0U, 0);
}

static void sort_fds(int *fds, int count)
{
    for (int i = 1; i < count; i++)
        for (int j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
            int t = fds[j];
            fds[j] = fds[j - 1];
            fds[j - 1] = t;
        }
}

static void send_msg(int fd, int kind, int value)
{
    struct status_msg msg = {kind, value};
    ssize_t ignored = write(fd, &msg, sizeof(msg));
    (void)ignored;
}

static struct timespec ms_from_now(int ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* The replica, in the grandchild. Never returns. */
static void exec_replica(const struct spawn_request *req, int status_wr, pid_t shim)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != shim)
        _exit(127);
    setpgid(0, 0);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull >= 0)
        dup2(devnull, STDIN_FILENO);
    dup2(req->output_fd, STDOUT_FILENO);
    dup2(req->output_fd, STDERR_FILENO);
    int keep[] = {status_wr};
    close_all_but(keep, 1);
    if (chdir(req->workdir) < 0) {
        send_msg(status_wr, MSG_EXEC_FAILED, errno);
        _exit(127);
    }
    /* emp-server ignores SIGPIPE and blocks SIGTERM: the replica starts with the defaults */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(req->path, req->argv, req->envp);
    send_msg(status_wr, MSG_EXEC_FAILED, errno);
    _exit(127);
}

/* The shim, in the child. Never returns. */
static void run_shim(const struct spawn_request *req, int status_wr, pid_t server)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    prctl(PR_SET_NAME, "emp-shim"); /* what ps -o comm and top show for it */
    if (getppid() != server)
        _exit(127);
    setpgid(0, 0);
    int keep[] = {status_wr, req->output_fd, req->lock_fd};
    sort_fds(keep, 3);
    close_all_but(keep, 3);
    sigset_t waited;
    sigemptyset(&waited);
    sigaddset(&waited, SIGTERM);
    sigaddset(&waited, SIGINT);
    sigaddset(&waited, SIGHUP);
    sigaddset(&waited, SIGCHLD);
    sigprocmask(SIG_BLOCK, &waited, NULL);
    pid_t shim = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        send_msg(status_wr, MSG_EXEC_FAILED, errno);
        _exit(127);
    }
    if (pid == 0)
        exec_replica(req, status_wr, shim);
    setpgid(pid, pid); /* also here, so that a stop right away reaches the group */
    close(req->output_fd);
    bool stopping = false, killed = false;
    struct timespec deadline = {0};
    for (;;) {
        struct timespec timeout, *wait_for = NULL;
        if (stopping && !killed) {
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            long long left_ns = (long long)(deadline.tv_sec - now.tv_sec) * 1000000000LL +
                                (deadline.tv_nsec - now.tv_nsec);
            if (left_ns <= 0) {
                kill(-pid, SIGKILL);
                killed = true;
            } else {
                timeout.tv_sec = (time_t)(left_ns / 1000000000LL);
                timeout.tv_nsec = (long)(left_ns % 1000000000LL);
                wait_for = &timeout;
            }
        }
        siginfo_t info;
        int sig = sigtimedwait(&waited, &info, wait_for);
        if (sig < 0)
            continue; /* the grace period ran out (EAGAIN), or EINTR */
        if (sig == SIGCHLD) {
            int status;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                kill(-pid, SIGKILL); /* whatever the replica left behind in its group */
                send_msg(status_wr, MSG_EXITED, status);
                _exit(0);
            }
            continue;
        }
        if (!stopping) {
            stopping = true;
            kill(-pid, SIGTERM);
            deadline = ms_from_now(getppid() == server ? req->grace_ms : req->orphan_grace_ms);
        }
    }
}

int spawn_start(const struct spawn_request *req, struct spawn_result *ret)
{
    int status_pipe[2];
    if (pipe2(status_pipe, O_CLOEXEC) < 0)
        return -errno;
    pid_t server = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(status_pipe[0]);
        close(status_pipe[1]);
        return -e;
    }
    if (pid == 0) {
        close(status_pipe[0]);
        run_shim(req, status_pipe[1], server);
    }
    close(status_pipe[1]);
    int pidfd = pidfd_open(pid, 0);
    if (pidfd < 0) {
        int e = errno;
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(status_pipe[0]);
        return -e;
    }
    fcntl(status_pipe[0], F_SETFL, O_NONBLOCK);
    ret->shim_pid = pid;
    ret->pidfd = pidfd;
    ret->status_fd = status_pipe[0];
    return 0;
}

int spawn_stop(const struct spawn_result *child)
{
    if (pidfd_send_signal(child->pidfd, SIGTERM, NULL, 0) < 0)
        return -errno;
    return 0;
}

static void describe_status(int status, char *buf, size_t size, int *ret_clean)
{
    *ret_clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (WIFEXITED(status))
        snprintf(buf, size, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(buf, size, "killed by signal %d (SIG%s)", WTERMSIG(status),
                 sigabbrev_np(WTERMSIG(status)) ? sigabbrev_np(WTERMSIG(status)) : "?");
    else
        snprintf(buf, size, "ended with wait status %d", status);
}

void spawn_reap(struct spawn_result *child, char *buf, size_t size, int *ret_clean)
{
    int shim_status = 0;
    waitpid(child->shim_pid, &shim_status, 0);
    struct status_msg msgs[2];
    ssize_t got = read(child->status_fd, msgs, sizeof(msgs));
    int n = got > 0 ? (int)(got / (ssize_t)sizeof(msgs[0])) : 0;
    *ret_clean = 0;
    if (n >= 1 && msgs[0].kind == MSG_EXEC_FAILED)
        snprintf(buf, size, "could not be started: %s", strerror(msgs[0].value));
    else if (n >= 1 && msgs[0].kind == MSG_EXITED)
        describe_status(msgs[0].value, buf, size, ret_clean);
    else if (WIFSIGNALED(shim_status))
        snprintf(buf, size, "its supervising shim was killed by signal %d", WTERMSIG(shim_status));
    else
        snprintf(buf, size, "ended without a status");
    close(child->pidfd);
    close(child->status_fd);
    child->pidfd = child->status_fd = -1;
    child->shim_pid = 0;
}
