/* SPDX-License-Identifier: Apache-2.0 */
/* The local backend: EMP's embedded cluster for one host. Each replica of an app is a real process
 * (spawn.c) that is health-checked and restarted with backoff when it fails; each running app has
 * a gateway listener (gateway.c) on a stable port (ports.c) that spreads connections over its
 * ready replicas. One event loop thread owns every process and check; the reconciler's calls only
 * change what is wanted and wake it, so they never wait on a process. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster.h"
#include "emp/log.h"
#include "emp/names.h"
#include "emp/timeutil.h"
#include "gateway.h"
#include "ports.h"
#include "spawn.h"

#define GATEWAY_HOST      "127.0.0.1"
#define START_CHECK_MS    25   /* how often a starting replica is probed */
#define LIVE_CHECK_MS     1000 /* how often a ready replica is probed */
#define CHECK_TIMEOUT_MS  1000
#define LIVE_FAILURES_MAX 3 /* failed probes in a row before a ready replica restarts */
#define BACKOFF_MIN_MS    250
#define BACKOFF_MAX_MS    30000
#define STABLE_MS         10000 /* ready this long: its failure count starts over */
#define LOG_MAX_BYTES     (1024 * 1024)
#define MAX_EVENTS        128

enum replica_state {
    R_WAITING,  /* not running; starts at next_ms (backoff, or a data directory still held) */
    R_STARTING, /* running, not ready yet */
    R_READY,
    R_STOPPING, /* asked to stop, waiting for it to exit */
};

struct lapp;

struct endpoint {
    int kind; /* EP_WAKE, EP_EXIT, EP_OUTPUT, EP_CHECK */
    struct replica *replica;
};
enum { EP_WAKE, EP_EXIT, EP_OUTPUT, EP_CHECK };

struct replica {
    struct lapp *app;
    int ordinal;
    enum replica_state state;
    bool retire; /* scaled away or app stopped: do not start again */
    struct spawn_result child;
    int port;
    int out_fd; /* read end of the replica's stdout and stderr, -1 when closed */
    int log_fd;
    off_t log_size;
    int64_t started_ms, ready_ms, next_ms;
    int failures;      /* failed runs in a row */
    int live_failures; /* failed probes in a row while ready */
    /* the probe in flight: a TCP connect, or an HTTP GET of health_check.path */
    int check_fd;
    int64_t check_deadline_ms;
    bool check_sent;
    char check_buf[64];
    size_t check_len;
    char last_problem[256]; /* what is wrong now (a probe's answer, a start that failed) */
    char last_failure[320]; /* how its last failed run ended, "" before any */
    struct endpoint exit_ep, output_ep, check_ep;
    bool dead; /* freed at the end of the loop's turn: events may still point here */
    struct replica *next_dead;
};

struct lapp {
    char id[NAMES_UUID_LEN + 1];
    char owner[NAMES_LABEL_MAX + 1];
    char name[NAMES_LABEL_MAX + 1];
    struct emp_spec *spec; /* our own copy */
    char program[4096];    /* command[0], resolved */
    int desired;
    bool stopped;
    bool removing;
    bool purge;
    int gateway_port;
    struct gateway_listener *listener;
    struct replica **replicas; /* by ordinal, SPEC_REPLICAS_MAX slots */
    int span;                  /* slots from 0 that may be in use: replicas[span..] are NULL */
    int restarts;
    char last_exit[320];
    int last_ready; /* what was last told to the reconciler */
};

struct local {
    struct cluster_config config;
    char state_dir[4096];
    char search_path[4096];
    char *kafka_address;
    char *zipkin_url;
    int grace_ms;
    int ready_timeout_ms;
    struct gateway *gateway;
    struct ports *ports;
    pthread_mutex_t lock;
    pthread_t thread;
    bool thread_started;
    bool stopping;
    int epfd;
    int wake_fd;
    struct endpoint wake_ep;
    struct lapp **apps;
    size_t napps, cap;
    struct replica *graveyard;
};

/* ---- helpers ---- */

static int make_dirs(const char *path)
{
    char buf[4096];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return -errno;
            *p = saved;
            if (!saved)
                return 0;
        }
    }
}

static void wake(struct local *l)
{
    uint64_t one = 1;
    ssize_t ignored = write(l->wake_fd, &one, sizeof(one));
    (void)ignored;
}

static void changed(struct local *l, struct lapp *a)
{
    if (l->config.changed)
        l->config.changed(l->config.changed_token, a->id);
}

static struct lapp *find_app(struct local *l, const char *id)
{
    for (size_t i = 0; i < l->napps; i++)
        if (strcmp(l->apps[i]->id, id) == 0)
            return l->apps[i];
    return NULL;
}

static void app_dir(const struct local *l, const struct lapp *a, char *buf, size_t size)
{
    snprintf(buf, size, "%s/local/apps/%s", l->state_dir, a->id);
}

/* Data directories belong to owner/name, not to an app id: like Kubernetes' volume claims, which
 * a new StatefulSet of the same name finds again, they outlive a remove unless it purges. */
static void data_dir(const struct local *l, const struct lapp *a, int ordinal, char *buf,
                     size_t size)
{
    snprintf(buf, size, "%s/local/data/%s/%s/%d", l->state_dir, a->owner, a->name, ordinal);
}

static int ready_count(const struct lapp *a)
{
    int n = 0;
    for (int i = 0; i < a->span; i++)
        if (a->replicas[i] && a->replicas[i]->state == R_READY && !a->replicas[i]->retire)
            n++;
    return n;
}

/* Tells the gateway which replicas are ready. */
static void publish_backends(struct lapp *a)
{
    if (!a->listener)
        return;
    int ports[SPEC_REPLICAS_MAX];
    size_t n = 0;
    for (int i = 0; i < a->span; i++) {
        struct replica *r = a->replicas[i];
        if (r && r->state == R_READY && !r->retire)
            ports[n++] = r->port;
    }
    gateway_set_backends(a->listener, ports, n);
}

static void epoll_add(struct local *l, int fd, struct endpoint *ep, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = ep};
    epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev);
}

/* ---- logs ---- */

static int open_log(const struct local *l, struct replica *r)
{
    char dir[4200], path[4300];
    app_dir(l, r->app, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/replica-%d.log", dir, r->ordinal);
    r->log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    struct stat st;
    r->log_size = r->log_fd >= 0 && fstat(r->log_fd, &st) == 0 ? st.st_size : 0;
    return r->log_fd >= 0 ? 0 : -errno;
}

/* Keeps a replica's log under LOG_MAX_BYTES: the current file and one older one. */
static void rotate_log(const struct local *l, struct replica *r)
{
    char dir[4200], path[4300], old[4310];
    app_dir(l, r->app, dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/replica-%d.log", dir, r->ordinal);
    snprintf(old, sizeof(old), "%s.1", path);
    close(r->log_fd);
    rename(path, old);
    open_log(l, r);
}

static void drain_output(struct local *l, struct replica *r)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(r->out_fd, buf, sizeof(buf));
        if (n > 0) {
            if (r->log_fd >= 0) {
                if (r->log_size + n > LOG_MAX_BYTES / 2)
                    rotate_log(l, r);
                if (r->log_fd >= 0 && write(r->log_fd, buf, (size_t)n) == n)
                    r->log_size += n;
            }
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, r->out_fd, NULL);
            close(r->out_fd);
            r->out_fd = -1;
        }
        return;
    }
}

/* ---- probes ---- */

static void check_close(struct local *l, struct replica *r)
{
    if (r->check_fd >= 0) {
        /* explicitly: a fork in progress holds a copy, which would keep it registered */
        epoll_ctl(l->epfd, EPOLL_CTL_DEL, r->check_fd, NULL);
        close(r->check_fd);
        r->check_fd = -1;
    }
}

static void replica_stop(struct local *l, struct replica *r);

static void mark_ready(struct local *l, struct replica *r, int64_t now)
{
    r->state = R_READY;
    r->ready_ms = now;
    r->live_failures = 0;
    r->last_problem[0] = '\0';
    publish_backends(r->app);
}

/* A probe answered (ok) or failed (why says how). */
static void check_done(struct local *l, struct replica *r, bool ok, const char *why)
{
    int64_t now = time_mono_ms();
    check_close(l, r);
    if (r->state == R_STARTING) {
        if (ok) {
            mark_ready(l, r, now);
            return;
        }
        snprintf(r->last_problem, sizeof(r->last_problem), "%s", why);
        if (now - r->started_ms > l->ready_timeout_ms) {
            snprintf(r->last_problem, sizeof(r->last_problem),
                     "did not become ready within %d s (%s)", l->ready_timeout_ms / 1000, why);
            r->failures++;
            replica_stop(l, r);
            return;
        }
        r->next_ms = now + START_CHECK_MS;
        return;
    }
    if (r->state != R_READY)
        return;
    if (ok) {
        r->live_failures = 0;
        if (r->failures && now - r->ready_ms > STABLE_MS)
            r->failures = 0;
        r->next_ms = now + LIVE_CHECK_MS;
        return;
    }
    r->live_failures++;
    if (r->live_failures < LIVE_FAILURES_MAX) {
        r->next_ms = now + LIVE_CHECK_MS;
        return;
    }
    snprintf(r->last_problem, sizeof(r->last_problem), "failed %d health checks in a row (%s)",
             LIVE_FAILURES_MAX, why);
    r->failures++;
    replica_stop(l, r); /* out of the gateway first, then restarted once it exited */
}

static void check_start(struct local *l, struct replica *r, int64_t now)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        r->next_ms = now + START_CHECK_MS;
        return;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)r->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
    if (rc < 0 && errno != EINPROGRESS) {
        close(fd);
        char why[128];
        snprintf(why, sizeof(why), "nothing accepts connections on its port %d", r->port);
        check_done(l, r, false, why);
        return;
    }
    r->check_fd = fd;
    r->check_sent = false;
    r->check_len = 0;
    r->check_deadline_ms = now + CHECK_TIMEOUT_MS;
    r->next_ms = r->check_deadline_ms;
    epoll_add(l, fd, &r->check_ep, EPOLLOUT | EPOLLIN);
}

static void check_io(struct local *l, struct replica *r)
{
    const char *path = r->app->spec->health_path;
    if (!r->check_sent) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        getsockopt(r->check_fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
        if (soerr) {
            char why[128];
            snprintf(why, sizeof(why), "nothing accepts connections on its port %d", r->port);
            check_done(l, r, false, why);
            return;
        }
        if (!path) {
            check_done(l, r, true, NULL); /* a connection is all a TCP probe asks */
            return;
        }
        char request[1200];
        int n = snprintf(request, sizeof(request),
                         "GET %s HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: emp-health/1\r\n"
                         "Connection: close\r\n\r\n",
                         path, r->port);
        if (send(r->check_fd, request, (size_t)n, MSG_NOSIGNAL) != n) {
            check_done(l, r, false, "the health check request could not be sent");
            return;
        }
        r->check_sent = true;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &r->check_ep};
        epoll_ctl(l->epfd, EPOLL_CTL_MOD, r->check_fd, &ev);
        return;
    }
    ssize_t n =
        recv(r->check_fd, r->check_buf + r->check_len, sizeof(r->check_buf) - 1 - r->check_len, 0);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n > 0)
        r->check_len += (size_t)n;
    r->check_buf[r->check_len] = '\0';
    int status = 0;
    if (r->check_len >= 12 || n <= 0) {
        if (sscanf(r->check_buf, "HTTP/%*d.%*d %d", &status) != 1)
            status = 0;
        char why[160];
        if (status)
            snprintf(why, sizeof(why), "GET %.60s answered %d", path, status);
        else
            snprintf(why, sizeof(why), "GET %.60s got no HTTP answer", path);
        check_done(l, r, status >= 200 && status < 300, why);
    }
}

/* ---- processes ---- */

/* The environment of a replica: what the server's PATH, HOME and LANG say (unless the app sets
 * them), the app's envs, then what EMP sets. Returns a NULL-terminated array in one allocation. */
static char **build_env(const struct local *l, const struct replica *r, const char *data)
{
    const struct lapp *a = r->app;
    const struct emp_spec *spec = a->spec;
    size_t cap = spec->envs_len + 16;
    char **envp = calloc(cap, sizeof(char *));
    if (!envp)
        return NULL;
    size_t n = 0;
    static const char *const inherited[] = {"PATH", "HOME", "LANG", "TZ"};
    for (size_t i = 0; i < sizeof(inherited) / sizeof(inherited[0]); i++) {
        bool overridden = false;
        for (size_t j = 0; j < spec->envs_len; j++)
            overridden = overridden || strcmp(spec->envs[j].name, inherited[i]) == 0;
        const char *v = getenv(inherited[i]);
        if (!overridden && (v || i == 0) &&
            asprintf(&envp[n], "%s=%s", inherited[i], v ? v : "/usr/local/bin:/usr/bin:/bin") > 0)
            n++;
    }
    for (size_t j = 0; j < spec->envs_len; j++)
        if (asprintf(&envp[n], "%s=%s", spec->envs[j].name, spec->envs[j].value) > 0)
            n++;
    if (asprintf(&envp[n], "PORT=%d", r->port) > 0)
        n++;
    if (l->kafka_address && asprintf(&envp[n], "KAFKAADDRESS=%s", l->kafka_address) > 0)
        n++;
    if (l->zipkin_url && asprintf(&envp[n], "EMP_ZIPKIN_URL=%s", l->zipkin_url) > 0)
        n++;
    if (asprintf(&envp[n], "EMP_APP_ID=%s", a->id) > 0)
        n++;
    if (asprintf(&envp[n], "EMP_SERVICE_NAME=%s/%s", a->owner, a->name) > 0)
        n++;
    if (asprintf(&envp[n], "EMP_REPLICA=%d", r->ordinal) > 0)
        n++;
    if (data && asprintf(&envp[n], "EMP_DATA_DIR=%s", data) > 0)
        n++;
    envp[n] = NULL;
    return envp;
}

static void free_env(char **envp)
{
    if (!envp)
        return;
    for (char **p = envp; *p; p++)
        free(*p);
    free(envp);
}

/* Starts r's process. On failure the replica waits and tries again (with backoff). */
static void replica_start(struct local *l, struct replica *r, int64_t now)
{
    struct lapp *a = r->app;
    char dir[4200], work[4300], data[4300], lock_path[4400];
    int lock_fd = -1, pipe_fds[2] = {-1, -1};
    char **envp = NULL;
    app_dir(l, a, dir, sizeof(dir));
    bool stateful = !a->spec->stateless;
    if (stateful) {
        data_dir(l, a, r->ordinal, data, sizeof(data));
        snprintf(work, sizeof(work), "%s", data);
    } else {
        snprintf(work, sizeof(work), "%s/replica-%d", dir, r->ordinal);
    }
    if (make_dirs(dir) < 0 || make_dirs(work) < 0) {
        snprintf(r->last_problem, sizeof(r->last_problem), "cannot create %s: %s", work,
                 strerror(errno));
        goto retry;
    }
    if (stateful) {
        /* the shim holds this lock while it lives: never two replicas on one data directory,
         * not even one left from an emp-server that was killed and is still stopping */
        snprintf(lock_path, sizeof(lock_path), "%s/../.%d.lock", data, r->ordinal);
        lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
            snprintf(r->last_problem, sizeof(r->last_problem),
                     "its data directory is still in use by a replica that is stopping");
            goto wait;
        }
    }
    if (ports_ephemeral(&r->port) < 0 || pipe2(pipe_fds, O_CLOEXEC) < 0) {
        snprintf(r->last_problem, sizeof(r->last_problem), "no port or pipe: %s", strerror(errno));
        goto retry;
    }
    int found = spawn_resolve(a->spec->command[0], l->search_path, a->program, sizeof(a->program));
    if (found < 0) {
        snprintf(r->last_problem, sizeof(r->last_problem), "could not be started: '%.200s' %s",
                 a->spec->command[0], found == -EACCES ? "is not executable" : "is not found");
        goto retry;
    }
    envp = build_env(l, r, stateful ? data : NULL);
    if (!envp || (r->log_fd < 0 && open_log(l, r) < 0)) {
        snprintf(r->last_problem, sizeof(r->last_problem), "cannot set up its environment or log");
        goto retry;
    }
    struct spawn_request req = {
        .path = a->program,
        .argv = a->spec->command,
        .envp = envp,
        .workdir = work,
        .output_fd = pipe_fds[1],
        .lock_fd = lock_fd,
        .grace_ms = l->grace_ms,
        .orphan_grace_ms = l->grace_ms < 2000 ? l->grace_ms : 2000,
    };
    int rc = spawn_start(&req, &r->child);
    if (rc < 0) {
        snprintf(r->last_problem, sizeof(r->last_problem), "cannot start a process: %s",
                 strerror(-rc));
        goto retry;
    }
    close(pipe_fds[1]);
    if (lock_fd >= 0)
        close(lock_fd); /* the shim keeps its copy */
    free_env(envp);
    fcntl(pipe_fds[0], F_SETFL, O_NONBLOCK);
    r->out_fd = pipe_fds[0];
    epoll_add(l, r->out_fd, &r->output_ep, EPOLLIN);
    epoll_add(l, r->child.pidfd, &r->exit_ep, EPOLLIN);
    r->state = R_STARTING;
    r->started_ms = now;
    r->next_ms = now + 5; /* a process takes a few ms to listen */
    return;
retry:
    r->failures++;
    snprintf(a->last_exit, sizeof(a->last_exit), "replica %d %s", r->ordinal, r->last_problem);
    snprintf(r->last_failure, sizeof(r->last_failure), "%s", a->last_exit);
wait:
    if (pipe_fds[0] >= 0) {
        close(pipe_fds[0]);
        close(pipe_fds[1]);
    }
    if (lock_fd >= 0)
        close(lock_fd);
    free_env(envp);
    r->state = R_WAITING;
    r->next_ms =
        now + (r->failures ? BACKOFF_MIN_MS << (r->failures > 6 ? 6 : r->failures - 1) : 200);
}

static void replica_stop(struct local *l, struct replica *r)
{
    bool was_ready = r->state == R_READY;
    check_close(l, r);
    if (r->child.shim_pid > 0) {
        r->state = R_STOPPING;
        spawn_stop(&r->child);
    } else {
        r->state = R_WAITING;
    }
    if (was_ready)
        publish_backends(r->app);
}

static void replica_free(struct local *l, struct replica *r)
{
    check_close(l, r);
    if (r->out_fd >= 0) {
        drain_output(l, r);
        if (r->out_fd >= 0) {
            epoll_ctl(l->epfd, EPOLL_CTL_DEL, r->out_fd, NULL);
            close(r->out_fd);
        }
    }
    if (r->log_fd >= 0)
        close(r->log_fd);
    r->app->replicas[r->ordinal] = NULL;
    r->dead = true;
    r->next_dead = l->graveyard;
    l->graveyard = r;
}

/* The replica's shim exited: find out how, and start it again unless it was meant to end. */
static void replica_exited(struct local *l, struct replica *r)
{
    char how[200];
    int clean = 0;
    bool was_ready = r->state == R_READY;
    bool asked = r->state == R_STOPPING;
    if (r->out_fd >= 0)
        drain_output(l, r);
    epoll_ctl(l->epfd, EPOLL_CTL_DEL, r->child.pidfd, NULL);
    spawn_reap(&r->child, how, sizeof(how), &clean);
    check_close(l, r);
    struct lapp *a = r->app;
    int64_t now = time_mono_ms();
    if (r->retire || a->stopped || a->removing) {
        replica_free(l, r);
        if (was_ready)
            publish_backends(a);
        return;
    }
    if (!asked || r->last_problem[0]) {
        /* it ended by itself (or was stopped for failing): that is a restart */
        if (!asked)
            r->failures = was_ready && now - r->ready_ms > STABLE_MS ? 1 : r->failures + 1;
        a->restarts++;
        if (asked && r->last_problem[0])
            snprintf(a->last_exit, sizeof(a->last_exit), "replica %d %s", r->ordinal,
                     r->last_problem);
        else
            snprintf(a->last_exit, sizeof(a->last_exit), "replica %d %s", r->ordinal, how);
        snprintf(r->last_failure, sizeof(r->last_failure), "%s", a->last_exit);
        char quoted[400];
        log_msg(LOG_WARN, "replica ended, restarting", "app=%s replica=%d how=%s restarts=%d",
                a->id, r->ordinal, log_quote(quoted, sizeof(quoted), a->last_exit + 0),
                a->restarts);
    }
    r->state = R_WAITING;
    int shift = r->failures > 0 ? r->failures - 1 : 0;
    int64_t delay = shift > 7 ? BACKOFF_MAX_MS : (int64_t)BACKOFF_MIN_MS << shift;
    r->next_ms = now + (delay > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay);
    if (was_ready)
        publish_backends(a);
}

/* ---- the loop ---- */

/* Makes an app's replicas what is wanted: the first `desired` ordinals run, the others retire. */
static void converge_app(struct local *l, struct lapp *a, int64_t now)
{
    int want = a->stopped || a->removing ? 0 : a->desired;
    bool drained = false;
    if (want > a->span)
        a->span = want;
    for (int i = 0; i < a->span; i++) {
        struct replica *r = a->replicas[i];
        if (i < want && !r) {
            r = calloc(1, sizeof(*r));
            if (!r)
                continue;
            r->app = a;
            r->ordinal = i;
            r->out_fd = r->log_fd = r->check_fd = -1;
            r->child.pidfd = r->child.status_fd = -1;
            r->exit_ep = (struct endpoint){EP_EXIT, r};
            r->output_ep = (struct endpoint){EP_OUTPUT, r};
            r->check_ep = (struct endpoint){EP_CHECK, r};
            r->state = R_WAITING;
            r->next_ms = now;
            a->replicas[i] = r;
        } else if (i < want && r->retire) {
            r->retire = false; /* scaled back up while it was stopping */
        } else if (i >= want && r && !r->retire) {
            r->retire = true;
            drained = drained || r->state == R_READY;
            if (r->state == R_WAITING)
                replica_free(l, r);
            else
                replica_stop(l, r);
        }
    }
    if (drained)
        publish_backends(a);
    while (a->span > 0 && !a->replicas[a->span - 1])
        a->span--;
}

static void run_timers(struct local *l, int64_t now, int64_t *ret_next)
{
    int64_t next = now + 60000;
    for (size_t i = 0; i < l->napps; i++) {
        struct lapp *a = l->apps[i];
        converge_app(l, a, now);
        for (int k = 0; k < a->span; k++) {
            struct replica *r = a->replicas[k];
            if (!r)
                continue;
            if (r->next_ms <= now) {
                if (r->state == R_WAITING && !r->retire)
                    replica_start(l, r, now);
                else if ((r->state == R_STARTING || r->state == R_READY) && r->check_fd < 0)
                    check_start(l, r, now);
                else if (r->check_fd >= 0 && now >= r->check_deadline_ms)
                    check_done(l, r, false, "the health check timed out");
            }
            r = a->replicas[k];
            if (r && r->state != R_STOPPING && r->next_ms < next)
                next = r->next_ms;
        }
        int ready = ready_count(a);
        if (ready != a->last_ready) {
            a->last_ready = ready;
            changed(l, a);
        }
    }
    *ret_next = next;
}

static void *event_loop(void *arg)
{
    struct local *l = arg;
    struct epoll_event events[MAX_EVENTS];
    int64_t next = time_mono_ms();
    for (;;) {
        int64_t wait_ms = next - time_mono_ms();
        int n = epoll_wait(l->epfd, events, MAX_EVENTS, wait_ms < 0 ? 0 : (int)wait_ms);
        pthread_mutex_lock(&l->lock);
        for (int i = 0; i < n; i++) {
            struct endpoint *ep = events[i].data.ptr;
            if (ep->replica && ep->replica->dead)
                continue;
            switch (ep->kind) {
            case EP_WAKE: {
                uint64_t value;
                ssize_t ignored = read(l->wake_fd, &value, sizeof(value));
                (void)ignored;
                break;
            }
            case EP_EXIT:
                replica_exited(l, ep->replica);
                break;
            case EP_OUTPUT:
                drain_output(l, ep->replica);
                break;
            case EP_CHECK:
                if (ep->replica->check_fd >= 0)
                    check_io(l, ep->replica);
                break;
            }
        }
        bool stopping = l->stopping;
        run_timers(l, time_mono_ms(), &next);
        while (l->graveyard) {
            struct replica *r = l->graveyard;
            l->graveyard = r->next_dead;
            free(r);
        }
        /* apps being removed go once their last replica has exited */
        for (size_t i = 0; i < l->napps;) {
            struct lapp *a = l->apps[i];
            bool empty = true;
            for (int k = 0; k < a->span && empty; k++)
                empty = a->replicas[k] == NULL;
            if (a->removing && empty) {
                l->apps[i] = l->apps[--l->napps];
                spec_free(a->spec);
                free(a->replicas);
                free(a);
                continue;
            }
            i++;
        }
        bool idle = true;
        for (size_t i = 0; i < l->napps && idle; i++)
            for (int k = 0; k < l->apps[i]->span && idle; k++)
                idle = l->apps[i]->replicas[k] == NULL;
        pthread_mutex_unlock(&l->lock);
        if (stopping && idle)
            return NULL;
    }
}

/* ---- the backend operations (reconciler threads) ---- */

static struct emp_spec *copy_spec(const struct emp_spec *spec)
{
    char *text = spec_to_json(spec, SPEC_JSON_DEFAULT);
    if (!text)
        return NULL;
    struct emp_spec *copy = NULL;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    spec_parse(text, strlen(text), &copy, &errs);
    free(text);
    return copy;
}

static int local_validate(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct local *l = state;
    if (!app->spec->command)
        return emp_error_set(err, -EINVAL, EMP_ERR_MISSING_FIELD, "command",
                             "app '%s' has no command: the local backend runs a command, so add "
                             "\"command\": [\"program\", \"argument\", ...] to the spec "
                             "(docker_image is what the Kubernetes backend runs)",
                             app->name);
    const char *program = app->spec->command[0];
    if (strchr(program, '/') && program[0] != '/')
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "command[0]",
                             "command[0] '%.200s' is a relative path: give an absolute path or "
                             "the name of a program on PATH",
                             program);
    char resolved[4096];
    int r = spawn_resolve(program, l->search_path, resolved, sizeof(resolved));
    if (r == -EACCES)
        return emp_error_set(err, r, EMP_ERR_INVALID_FIELD, "command[0]",
                             "command[0] '%.200s' is not executable: make it so (chmod +x) or "
                             "name another program",
                             program);
    if (r < 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "command[0]",
                             strchr(program, '/')
                                 ? "command[0] '%.200s' does not exist: give the path of an "
                                   "executable file"
                                 : "command[0] '%.200s' is not found on emp-server's PATH: give "
                                   "its absolute path or install it",
                             program);
    return 0;
}

static int open_listener(struct local *l, struct lapp *a, struct emp_error *err)
{
    if (a->listener)
        return 0;
    int r = gateway_listen(l->gateway, GATEWAY_HOST, a->gateway_port, &a->listener, err);
    if (r < 0)
        emp_error_prefix(err, "the gateway of app '%s': ", a->name);
    else
        publish_backends(a);
    return r;
}

static int local_deploy(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct local *l = state;
    int r = local_validate(state, app, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&l->lock);
    struct lapp *a = find_app(l, app->id);
    if (a && a->removing) {
        pthread_mutex_unlock(&l->lock);
        return emp_error_set(err, -EBUSY, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                             "app '%s' is still being removed", app->name);
    }
    bool created = false;
    if (!a) {
        if (l->napps == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 16;
            struct lapp **grown = realloc(l->apps, cap * sizeof(*grown));
            if (!grown) {
                pthread_mutex_unlock(&l->lock);
                return -ENOMEM;
            }
            l->apps = grown;
            l->cap = cap;
        }
        a = calloc(1, sizeof(*a));
        struct replica **slots = calloc(SPEC_REPLICAS_MAX, sizeof(*slots));
        struct emp_spec *spec = copy_spec(app->spec);
        if (!a || !slots || !spec) {
            free(a);
            free(slots);
            spec_free(spec);
            pthread_mutex_unlock(&l->lock);
            return -ENOMEM;
        }
        a->replicas = slots;
        a->spec = spec;
        snprintf(a->id, sizeof(a->id), "%s", app->id);
        snprintf(a->owner, sizeof(a->owner), "%s", app->owner);
        snprintf(a->name, sizeof(a->name), "%s", app->name);
        a->last_ready = -1;
        created = true;
    }
    int hint = app->binding ? atoi(app->binding) : 0;
    r = ports_reserve(l->ports, a->id, GATEWAY_HOST, hint, &a->gateway_port, err);
    if (r == 0)
        r = open_listener(l, a, err);
    if (r < 0) {
        if (created) {
            spec_free(a->spec);
            free(a->replicas);
            free(a);
        }
        pthread_mutex_unlock(&l->lock);
        return r;
    }
    if (created)
        l->apps[l->napps++] = a;
    a->desired = app->replicas;
    a->stopped = false;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    return 0;
}

static int with_app(struct local *l, const struct cluster_app *app, struct lapp **ret)
{
    pthread_mutex_lock(&l->lock);
    struct lapp *a = find_app(l, app->id);
    if (!a || a->removing) {
        pthread_mutex_unlock(&l->lock);
        return -ENOENT;
    }
    *ret = a;
    return 0;
}

static int local_scale(void *state, const struct cluster_app *app, int replicas,
                       struct emp_error *err)
{
    struct local *l = state;
    struct lapp *a;
    if (with_app(l, app, &a) < 0)
        return emp_error_set(err, -ENOENT, EMP_ERR_NOT_FOUND, NULL,
                             "app '%s' is not deployed on the local backend", app->name);
    a->desired = replicas;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    return 0;
}

static int local_stop(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct local *l = state;
    struct lapp *a;
    if (with_app(l, app, &a) < 0)
        return 0; /* nothing runs: it is stopped */
    a->stopped = true;
    if (a->listener) {
        gateway_close(a->listener); /* new connections are refused from now on */
        a->listener = NULL;
    }
    pthread_mutex_unlock(&l->lock);
    wake(l);
    return 0;
}

static int local_start(void *state, const struct cluster_app *app, struct emp_error *err)
{
    struct local *l = state;
    struct lapp *a;
    if (with_app(l, app, &a) < 0)
        return local_deploy(state, app, err);
    int r = open_listener(l, a, err);
    if (r == 0) {
        a->stopped = false;
        a->desired = app->replicas;
    }
    pthread_mutex_unlock(&l->lock);
    wake(l);
    return r;
}

static int purge_dir(const char *path)
{
    char cmd[4400];
    /* the path is ours (state dir, owner and name are validated labels) */
    snprintf(cmd, sizeof(cmd), "rm -rf -- '%s'", path);
    return system(cmd) == 0 ? 0 : -EIO;
}

static int local_remove(void *state, const struct cluster_app *app, bool purge,
                        struct emp_error *err)
{
    struct local *l = state;
    pthread_mutex_lock(&l->lock);
    struct lapp *a = find_app(l, app->id);
    if (a && !a->removing) {
        a->removing = true;
        a->purge = purge;
        if (a->listener) {
            gateway_close(a->listener);
            a->listener = NULL;
        }
    }
    bool gone = !a;
    pthread_mutex_unlock(&l->lock);
    wake(l);
    if (!gone) {
        /* replicas get SIGTERM and the grace period; remove waits until they are gone */
        int64_t deadline = time_mono_ms() + l->grace_ms + 5000;
        while (!gone && time_mono_ms() < deadline) {
            struct timespec pause = {.tv_nsec = 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
            pthread_mutex_lock(&l->lock);
            gone = find_app(l, app->id) == NULL;
            pthread_mutex_unlock(&l->lock);
        }
        if (!gone)
            return emp_error_set(err, -ETIMEDOUT, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                                 "the replicas of app '%s' did not exit in time", app->name);
    }
    pthread_mutex_lock(&l->lock);
    ports_release(l->ports, app->id);
    pthread_mutex_unlock(&l->lock);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/local/apps/%s", l->state_dir, app->id);
    purge_dir(dir);
    if (purge && !app->spec->stateless) {
        snprintf(dir, sizeof(dir), "%s/local/data/%s/%s", l->state_dir, app->owner, app->name);
        if (purge_dir(dir) < 0)
            return emp_error_set(err, -EIO, EMP_ERR_INTERNAL, NULL,
                                 "cannot delete the data of app '%s' in %s", app->name, dir);
    }
    return 0;
}

/* The app's gateway: its port is reserved now if it has none yet, so that its deploy gets it. */
static int local_address_of(void *state, const struct cluster_app *app, char *buf, size_t size,
                            struct emp_error *err)
{
    struct local *l = state;
    int hint = app->binding ? atoi(app->binding) : 0, port;
    pthread_mutex_lock(&l->lock);
    int r = ports_reserve(l->ports, app->id, GATEWAY_HOST, hint, &port, err);
    pthread_mutex_unlock(&l->lock);
    if (r == 0)
        snprintf(buf, size, "%s:%d", GATEWAY_HOST, port);
    return r;
}

static int local_status(void *state, const struct cluster_app *app, struct cluster_status *st,
                        struct emp_error *err)
{
    struct local *l = state;
    memset(st, 0, sizeof(*st));
    struct lapp *a;
    if (with_app(l, app, &a) < 0)
        return 0;
    st->exists = true;
    st->stopped = a->stopped;
    st->replicas_desired = a->stopped ? 0 : a->desired;
    st->replicas_ready = ready_count(a);
    st->restarts = a->restarts;
    snprintf(st->binding, sizeof(st->binding), "%d", a->gateway_port);
    snprintf(st->last_exit, sizeof(st->last_exit), "%s", a->last_exit);
    if (!a->stopped)
        snprintf(st->address, sizeof(st->address), "%s:%d", GATEWAY_HOST, a->gateway_port);
    /* why replicas are not ready: the first that has a problem says it */
    int waiting = 0;
    const struct replica *troubled = NULL;
    for (int i = 0; i < a->desired && i < a->span; i++) {
        const struct replica *r = a->replicas[i];
        if (r && r->state != R_READY) {
            waiting++;
            if (!troubled && (r->failures > 0 || r->last_problem[0]))
                troubled = r;
        }
    }
    if (troubled && troubled->failures > 0) {
        /* it failed before: how it failed says more than what the new attempt sees so far */
        int64_t in_ms = troubled->next_ms - time_mono_ms();
        /* a replica that just failed is still being stopped: its problem is the failure */
        char stopping[sizeof(troubled->last_problem) + 24];
        snprintf(stopping, sizeof(stopping), "replica %d %s", troubled->ordinal,
                 troubled->last_problem);
        const char *failure = troubled->last_failure[0]   ? troubled->last_failure
                              : troubled->last_problem[0] ? stopping
                                                          : a->last_exit;
        if (troubled->state == R_WAITING)
            snprintf(st->reason, sizeof(st->reason), "%s; %d restarts, next try in %.1f s", failure,
                     a->restarts, in_ms > 0 ? (double)in_ms / 1000.0 : 0.0);
        else
            snprintf(st->reason, sizeof(st->reason), "%s; %d restarts, trying again", failure,
                     a->restarts);
        st->failed = st->replicas_ready == 0;
    } else if (troubled) {
        snprintf(st->reason, sizeof(st->reason), "replica %d %s", troubled->ordinal,
                 troubled->last_problem);
    } else if (waiting && !a->stopped) {
        snprintf(st->reason, sizeof(st->reason), "%d of %d replicas ready", st->replicas_ready,
                 a->desired);
    }
    pthread_mutex_unlock(&l->lock);
    return 0;
}

static int local_init(void *state, const struct cluster_config *config, struct emp_error *err)
{
    struct local *l = state;
    l->config = *config;
    l->epfd = l->wake_fd = -1;
    snprintf(l->state_dir, sizeof(l->state_dir), "%s", config->state_dir);
    const char *path = getenv("PATH");
    snprintf(l->search_path, sizeof(l->search_path), "%s",
             path ? path : "/usr/local/bin:/usr/bin:/bin");
    l->kafka_address = config->kafka_address ? strdup(config->kafka_address) : NULL;
    l->zipkin_url = config->zipkin_url ? strdup(config->zipkin_url) : NULL;
    l->grace_ms = config->stop_grace_ms > 0 ? config->stop_grace_ms : 10000;
    l->ready_timeout_ms = config->ready_timeout_ms > 0 ? config->ready_timeout_ms : 60000;
    pthread_mutex_init(&l->lock, NULL);
    char dir[4200];
    snprintf(dir, sizeof(dir), "%s/local", l->state_dir);
    if (make_dirs(dir) < 0)
        return emp_error_set(err, -errno, EMP_ERR_INTERNAL, "state-dir", "cannot create %s: %s",
                             dir, strerror(errno));
    char registry[4300];
    snprintf(registry, sizeof(registry), "%s/gateway-ports", dir);
    int min = config->gateway_port_min > 0 ? config->gateway_port_min : 31000;
    int max = config->gateway_port_max > 0 ? config->gateway_port_max : 31999;
    int r = ports_open(registry, min, max, &l->ports, err);
    if (r < 0)
        return r;
    r = gateway_start(config->gateway_max_connections > 0 ? config->gateway_max_connections : 10000,
                      &l->gateway, err);
    if (r < 0)
        return r;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->epfd < 0 || l->wake_fd < 0)
        return emp_error_set(err, -errno, EMP_ERR_INTERNAL, NULL, "epoll: %s", strerror(errno));
    l->wake_ep = (struct endpoint){EP_WAKE, NULL};
    epoll_add(l, l->wake_fd, &l->wake_ep, EPOLLIN);
    if (pthread_create(&l->thread, NULL, event_loop, l) != 0)
        return emp_error_set(err, -EAGAIN, EMP_ERR_INTERNAL, NULL,
                             "cannot start the local backend's thread");
    l->thread_started = true;
    return 0;
}

static void local_destroy(void *state)
{
    struct local *l = state;
    if (l->thread_started) {
        /* every replica gets SIGTERM and its grace period; the loop ends when all exited */
        pthread_mutex_lock(&l->lock);
        l->stopping = true;
        for (size_t i = 0; i < l->napps; i++) {
            l->apps[i]->stopped = true;
            if (l->apps[i]->listener) {
                gateway_close(l->apps[i]->listener);
                l->apps[i]->listener = NULL;
            }
        }
        pthread_mutex_unlock(&l->lock);
        wake(l);
        pthread_join(l->thread, NULL);
    }
    for (size_t i = 0; i < l->napps; i++) {
        spec_free(l->apps[i]->spec);
        free(l->apps[i]->replicas);
        free(l->apps[i]);
    }
    free(l->apps);
    gateway_stop(l->gateway);
    ports_free(l->ports);
    if (l->epfd >= 0)
        close(l->epfd);
    if (l->wake_fd >= 0)
        close(l->wake_fd);
    free(l->kafka_address);
    free(l->zipkin_url);
    pthread_mutex_destroy(&l->lock);
}

const struct cluster_backend_ops cluster_local_ops = {
    .name = "local",
    .caps = CLUSTER_CAP_STATEFUL | CLUSTER_CAP_NEEDS_COMMAND | CLUSTER_CAP_EPHEMERAL |
            CLUSTER_CAP_SINGLE_NODE,
    .state_size = sizeof(struct local),
    .init = local_init,
    .destroy = local_destroy,
    .validate = local_validate,
    .deploy = local_deploy,
    .address_of = local_address_of,
    .scale = local_scale,
    .stop = local_stop,
    .start = local_start,
    .remove = local_remove,
    .status = local_status,
};
