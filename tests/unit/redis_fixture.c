/* SPDX-License-Identifier: Apache-2.0 */
/* Starts and stops the real redis-server that unit tests of the store and its users run against. */
#include "redis_fixture.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int spawn(struct redis_fixture *fx)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        char log[400];
        snprintf(log, sizeof(log), "%s/redis.log", fx->dir);
        execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", fx->socket_path,
               "--dir", fx->dir, "--save", "", "--appendonly", "yes", "--logfile", log,
               (char *)NULL);
        _exit(127);
    }
    fx->pid = pid;
    for (int i = 0; i < 500; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un addr = {.sun_family = AF_UNIX};
        snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", fx->socket_path);
        int ok = connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
        close(fd);
        if (ok)
            return 0;
        struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    return -1;
}

int redis_fixture_start(struct redis_fixture *fx)
{
    /* as emp-server does: a write to a Redis that went away must fail, not kill the process */
    signal(SIGPIPE, SIG_IGN);
    memset(fx, 0, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/emp-unit-redis-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    snprintf(fx->socket_path, sizeof(fx->socket_path), "%s/redis.sock", fx->dir);
    snprintf(fx->url, sizeof(fx->url), "unix://%s", fx->socket_path);
    return spawn(fx);
}

void redis_fixture_pause(struct redis_fixture *fx)
{
    if (fx->pid > 0) {
        kill(fx->pid, SIGTERM);
        waitpid(fx->pid, NULL, 0);
        fx->pid = 0;
    }
}

int redis_fixture_restart(struct redis_fixture *fx)
{
    return spawn(fx);
}

void redis_fixture_stop(struct redis_fixture *fx)
{
    redis_fixture_pause(fx);
    if (fx->dir[0]) {
        char cmd[400];
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", fx->dir);
    }
}

int redis_fixture_cli(const struct redis_fixture *fx, const char *args, char *buf, size_t size)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "redis-cli -s '%s' %s", fx->socket_path, args);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    buf[0] = '\0';
    if (!fgets(buf, (int)size, p))
        buf[0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return pclose(p) == 0 ? 0 : -1;
}
