/* SPDX-License-Identifier: Apache-2.0 */
/* Runs the embedded redis-server. It is tied to emp-server's life with PR_SET_PDEATHSIG, so a
 * killed emp-server never leaves it behind, and it shuts down with SIGTERM, which makes Redis write
 * out its append-only file: a restart of emp-server finds every record. */
#include "redis_child.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "emp/log.h"
#include "emp/timeutil.h"

#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS  15000

struct redis_child {
    pid_t pid;
    char dir[4096];
    char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    char pid_path[4200];
    char url[sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
};

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int make_dir(const char *path, struct emp_error *err)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) < 0 && errno != EEXIST)
            return emp_error_set(err, -errno, EMP_ERR_INTERNAL, "state-dir",
                                 "cannot create directory '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) < 0 && errno != EEXIST)
        return emp_error_set(err, -errno, EMP_ERR_INTERNAL, "state-dir",
                             "cannot create directory '%s': %s", buf, strerror(errno));
    return 0;
}

/* A redis-server left by an emp-server that was killed gets SIGTERM from the kernel and is still
 * writing its AOF: wait for it, so that two servers never share the data directory. */
static void wait_for_previous(const char *pid_path)
{
    FILE *f = fopen(pid_path, "re");
    if (!f)
        return;
    long pid = 0;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    if (pid <= 1)
        return;
    char exe_link[64], exe[4096];
    snprintf(exe_link, sizeof(exe_link), "/proc/%ld/exe", pid);
    ssize_t n = readlink(exe_link, exe, sizeof(exe) - 1);
    if (n <= 0)
        return;
    exe[n] = '\0';
    if (!strstr(exe, "redis"))
        return; /* the pid was reused by something else */
    log_msg(LOG_INFO, "waiting for the previous embedded redis-server to exit", "pid=%ld", pid);
    int64_t deadline = time_mono_ms() + STOP_TIMEOUT_MS;
    bool termed = false;
    while (kill((pid_t)pid, 0) == 0 && time_mono_ms() < deadline) {
        if (!termed && time_mono_ms() > deadline - STOP_TIMEOUT_MS + 2000) {
            kill((pid_t)pid, SIGTERM);
            termed = true;
        }
        sleep_ms(20);
    }
    if (kill((pid_t)pid, 0) == 0)
        kill((pid_t)pid, SIGKILL);
}

static bool socket_accepts(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
    bool ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

int redis_child_start(const char *binary, const char *state_dir, struct redis_child **ret_child,
                      struct emp_error *err)
{
    struct redis_child *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    int r;
    snprintf(c->dir, sizeof(c->dir), "%s/redis", state_dir);
    if ((size_t)snprintf(c->socket_path, sizeof(c->socket_path), "%s/redis.sock", c->dir) >=
        sizeof(c->socket_path)) {
        r = emp_error_set(err, -ENAMETOOLONG, EMP_ERR_INVALID_FIELD, "state-dir",
                          "the state directory '%s' is too long a path for a unix socket: use a "
                          "shorter --state-dir, or give --redis-url",
                          state_dir);
        goto fail;
    }
    snprintf(c->pid_path, sizeof(c->pid_path), "%s/emp-redis.pid", c->dir);
    snprintf(c->url, sizeof(c->url), "unix://%s", c->socket_path);
    if ((r = make_dir(c->dir, err)) < 0)
        goto fail;
    wait_for_previous(c->pid_path);

    char logfile[4200];
    snprintf(logfile, sizeof(logfile), "%s/redis.log", c->dir);
    const char *argv[] = {binary,
                          "--port",
                          "0",
                          "--unixsocket",
                          c->socket_path,
                          "--unixsocketperm",
                          "700",
                          "--dir",
                          c->dir,
                          "--appendonly",
                          "yes",
                          "--appendfsync",
                          "everysec",
                          "--save",
                          "",
                          "--daemonize",
                          "no",
                          "--logfile",
                          logfile,
                          "--protected-mode",
                          "yes",
                          NULL};
    int exec_pipe[2];
    if (pipe2(exec_pipe, O_CLOEXEC) < 0) {
        r = emp_error_set(err, -errno, EMP_ERR_INTERNAL, NULL, "pipe: %s", strerror(errno));
        goto fail;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        r = emp_error_set(err, -errno, EMP_ERR_INTERNAL, NULL, "fork: %s", strerror(errno));
        close(exec_pipe[0]);
        close(exec_pipe[1]);
        goto fail;
    }
    if (pid == 0) {
        /* the child: end with the parent, keep out of its terminal's signals, exec */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        setpgid(0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            dup2(devnull, STDOUT_FILENO);
        }
        execvp(binary, (char *const *)argv);
        int e = errno;
        ssize_t ignored = write(exec_pipe[1], &e, sizeof(e));
        (void)ignored;
        _exit(127);
    }
    close(exec_pipe[1]);
    int exec_errno = 0;
    ssize_t got = read(exec_pipe[0], &exec_errno, sizeof(exec_errno));
    close(exec_pipe[0]);
    if (got == sizeof(exec_errno)) {
        waitpid(pid, NULL, 0);
        r = emp_error_set(err, -exec_errno, EMP_ERR_INTERNAL, "redis-server",
                          "cannot run '%s': %s. Install Redis (apt-get install redis-server), "
                          "point --redis-server at it, or give --redis-url",
                          binary, strerror(exec_errno));
        goto fail;
    }
    c->pid = pid;
    FILE *f = fopen(c->pid_path, "we");
    if (f) {
        fprintf(f, "%d\n", (int)pid);
        fclose(f);
    }
    int64_t deadline = time_mono_ms() + READY_TIMEOUT_MS;
    while (!socket_accepts(c->socket_path)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            c->pid = 0;
            r = emp_error_set(err, -EIO, EMP_ERR_STORE_UNAVAILABLE, NULL,
                              "the embedded redis-server exited at start (status %d): see %s",
                              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                              logfile);
            goto fail;
        }
        if (time_mono_ms() > deadline) {
            r = emp_error_set(err, -ETIMEDOUT, EMP_ERR_STORE_UNAVAILABLE, NULL,
                              "the embedded redis-server did not open %s within %d s: see %s",
                              c->socket_path, READY_TIMEOUT_MS / 1000, logfile);
            goto fail;
        }
        sleep_ms(10);
    }
    log_msg(LOG_INFO, "embedded redis-server started", "pid=%d url=%s", (int)pid, c->url);
    *ret_child = c;
    return 0;
fail:
    redis_child_stop(c);
    return r;
}

const char *redis_child_url(const struct redis_child *child)
{
    return child->url;
}

void redis_child_stop(struct redis_child *child)
{
    if (!child)
        return;
    if (child->pid > 0) {
        kill(child->pid, SIGTERM);
        int64_t deadline = time_mono_ms() + STOP_TIMEOUT_MS;
        int status;
        while (waitpid(child->pid, &status, WNOHANG) == 0) {
            if (time_mono_ms() > deadline) {
                log_msg(LOG_WARN, "embedded redis-server did not stop in time, killing it",
                        "pid=%d", (int)child->pid);
                kill(child->pid, SIGKILL);
                waitpid(child->pid, &status, 0);
                break;
            }
            sleep_ms(10);
        }
        unlink(child->pid_path);
    }
    free(child);
}
