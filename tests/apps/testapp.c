/* SPDX-License-Identifier: Apache-2.0 */
/* emp-testapp: the app the local backend's tests and benchmarks deploy. A small HTTP/1.1 server
 * (keep-alive, one epoll thread) on $PORT that says which replica answered, can be told to crash,
 * to answer slowly or to fail its health check, and keeps a counter in $EMP_DATA_DIR.
 *
 *   GET  /            {"replica":"0","pid":123,"app":"<EMP_APP_ID>"}
 *   GET  /health      200, or 503 after POST /unhealthy
 *   POST /crash       exits at once with status 3
 *   GET  /slow?ms=N   answers after N ms
 *   GET  /data        {"count":N} from $EMP_DATA_DIR/count
 *   POST /data        adds one to that count (written and fsynced)
 *   GET  /env?name=X  {"value":"..."} of the environment variable X
 * Options: --exit-at-start CODE (exit before listening), --ready-after MS (listen only after MS),
 * --ignore-sigterm (to test the SIGKILL after the grace period). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 4096
#define BUF_SIZE  8192

struct conn {
    int fd;
    int timer_fd; /* pending /slow answer, or -1 */
    size_t in_len;
    char in[BUF_SIZE];
    char slow_reply[512];
    size_t slow_len;
};

static bool healthy = true;
static const char *replica = "";
static const char *app_id = "";

static void reply(int fd, int status, const char *body, bool keep_alive)
{
    char out[BUF_SIZE];
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Service Unavailable";
    int len =
        snprintf(out, sizeof(out),
                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                 "%s\r\n%s",
                 status, reason, strlen(body), keep_alive ? "" : "Connection: close\r\n", body);
    ssize_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, out + off, (size_t)(len - off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return; /* the client went away; it will see a closed connection */
        off += n;
    }
}

static long count_read(void)
{
    const char *dir = getenv("EMP_DATA_DIR");
    if (!dir)
        return -1;
    char path[4096];
    snprintf(path, sizeof(path), "%s/count", dir);
    FILE *f = fopen(path, "re");
    long n = 0;
    if (f) {
        if (fscanf(f, "%ld", &n) != 1)
            n = 0;
        fclose(f);
    }
    return n;
}

static long count_add(void)
{
    const char *dir = getenv("EMP_DATA_DIR");
    if (!dir)
        return -1;
    long n = count_read() + 1;
    char path[4096], tmp[4200];
    snprintf(path, sizeof(path), "%s/count", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    char text[32];
    int len = snprintf(text, sizeof(text), "%ld\n", n);
    bool ok = write(fd, text, (size_t)len) == len && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        return -1;
    return n;
}

static const char *query_value(const char *target, const char *key, char *buf, size_t size)
{
    const char *q = strchr(target, '?');
    size_t klen = strlen(key);
    while (q) {
        q++;
        if (strncmp(q, key, klen) == 0 && q[klen] == '=') {
            size_t n = strcspn(q + klen + 1, "& ");
            if (n >= size)
                n = size - 1;
            memcpy(buf, q + klen + 1, n);
            buf[n] = '\0';
            return buf;
        }
        q = strchr(q, '&');
    }
    return NULL;
}

/* Answers one request; returns false to close the connection. */
static bool handle(struct conn *c, int epfd, const char *method, const char *target, bool keep)
{
    char body[1024], value[256];
    if (strcmp(target, "/") == 0 || strncmp(target, "/?", 2) == 0) {
        snprintf(body, sizeof(body), "{\"replica\":\"%s\",\"pid\":%d,\"app\":\"%s\"}", replica,
                 (int)getpid(), app_id);
        reply(c->fd, 200, body, keep);
    } else if (strcmp(target, "/health") == 0) {
        reply(c->fd, healthy ? 200 : 503, healthy ? "{\"ok\":true}" : "{\"ok\":false}", keep);
    } else if (strcmp(target, "/unhealthy") == 0 && strcmp(method, "POST") == 0) {
        healthy = false;
        reply(c->fd, 200, "{\"ok\":true}", keep);
    } else if (strcmp(target, "/crash") == 0 && strcmp(method, "POST") == 0) {
        _exit(3);
    } else if (strncmp(target, "/slow", 5) == 0) {
        long ms = query_value(target, "ms", value, sizeof(value)) ? atol(value) : 100;
        c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        struct itimerspec when = {
            .it_value = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L + 1}};
        timerfd_settime(c->timer_fd, 0, &when, NULL);
        snprintf(c->slow_reply, sizeof(c->slow_reply), "{\"replica\":\"%s\",\"slept_ms\":%ld}",
                 replica, ms);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        /* the connection waits on its timer instead of its socket */
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        ev.data.u64 = (uint64_t)(uintptr_t)c | 1;
        epoll_ctl(epfd, EPOLL_CTL_ADD, c->timer_fd, &ev);
    } else if (strcmp(target, "/data") == 0) {
        long n = strcmp(method, "POST") == 0 ? count_add() : count_read();
        snprintf(body, sizeof(body), "{\"count\":%ld}", n);
        reply(c->fd, n < 0 ? 503 : 200, body, keep);
    } else if (strncmp(target, "/env", 4) == 0 &&
               query_value(target, "name", value, sizeof(value))) {
        const char *v = getenv(value);
        snprintf(body, sizeof(body), "{\"value\":%s%s%s}", v ? "\"" : "", v ? v : "null",
                 v ? "\"" : "");
        reply(c->fd, 200, body, keep);
    } else {
        reply(c->fd, 404, "{\"error\":\"not found\"}", keep);
    }
    return keep;
}

/* Parses and answers every complete request in c->in. Returns false to close. */
static bool serve(struct conn *c, int epfd)
{
    for (;;) {
        if (c->timer_fd >= 0)
            return true;
        c->in[c->in_len] = '\0';
        char *end = strstr(c->in, "\r\n\r\n");
        if (!end)
            return c->in_len < BUF_SIZE - 1;
        char method[16], target[1024], version[16];
        if (sscanf(c->in, "%15s %1023s %15s", method, target, version) != 3)
            return false;
        bool keep = strcmp(version, "HTTP/1.1") == 0 && !strcasestr(c->in, "connection: close");
        size_t used = (size_t)(end + 4 - c->in);
        /* bodies are not used by any route; skip a Content-Length worth of them */
        const char *cl = strcasestr(c->in, "content-length:");
        size_t body = cl && cl < end ? (size_t)atol(cl + 15) : 0;
        if (used + body > c->in_len)
            return c->in_len < BUF_SIZE - 1;
        used += body;
        bool open = handle(c, epfd, method, target, keep);
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        if (!open)
            return false;
    }
}

static void close_conn(struct conn *c)
{
    if (c->timer_fd >= 0)
        close(c->timer_fd);
    close(c->fd);
    free(c);
}

int main(int argc, char **argv)
{
    int ready_after_ms = 0;
    bool ignore_term = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--exit-at-start") == 0 && i + 1 < argc)
            return atoi(argv[i + 1]);
        if (strcmp(argv[i], "--ready-after") == 0 && i + 1 < argc)
            ready_after_ms = atoi(argv[++i]);
        else if (strcmp(argv[i], "--ignore-sigterm") == 0)
            ignore_term = true;
    }
    signal(SIGPIPE, SIG_IGN);
    if (ignore_term)
        signal(SIGTERM, SIG_IGN);
    const char *port_text = getenv("PORT");
    if (!port_text) {
        fprintf(stderr, "emp-testapp: PORT is not set\n");
        return 2;
    }
    replica = getenv("EMP_REPLICA") ? getenv("EMP_REPLICA") : "";
    app_id = getenv("EMP_APP_ID") ? getenv("EMP_APP_ID") : "";
    if (ready_after_ms > 0) {
        struct timespec t = {.tv_sec = ready_after_ms / 1000,
                             .tv_nsec = (ready_after_ms % 1000) * 1000000L};
        nanosleep(&t, NULL);
    }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)atoi(port_text)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1024) < 0) {
        fprintf(stderr, "emp-testapp: cannot listen on 127.0.0.1:%s: %s\n", port_text,
                strerror(errno));
        return 1;
    }
    printf("emp-testapp replica %s listening on 127.0.0.1:%s\n", replica, port_text);
    fflush(stdout);
    int epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[256];
    for (;;) {
        int n = epoll_wait(epfd, events, 256, -1);
        for (int i = 0; i < n; i++) {
            if (!events[i].data.ptr) {
                int fd;
                while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
                    struct conn *c = calloc(1, sizeof(*c));
                    c->fd = fd;
                    c->timer_fd = -1;
                    struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &cev);
                }
                continue;
            }
            if (events[i].data.u64 & 1) {
                /* a /slow answer is due */
                struct conn *c = (struct conn *)(uintptr_t)(events[i].data.u64 & ~(uint64_t)1);
                epoll_ctl(epfd, EPOLL_CTL_DEL, c->timer_fd, NULL);
                close(c->timer_fd);
                c->timer_fd = -1;
                reply(c->fd, 200, c->slow_reply, true);
                struct epoll_event cev = {.events = EPOLLIN, .data.ptr = c};
                epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &cev);
                if (!serve(c, epfd))
                    close_conn(c);
                continue;
            }
            struct conn *c = events[i].data.ptr;
            ssize_t got = read(c->fd, c->in + c->in_len, BUF_SIZE - 1 - c->in_len);
            if (got <= 0) {
                if (got < 0 && (errno == EAGAIN || errno == EINTR))
                    continue;
                close_conn(c);
                continue;
            }
            c->in_len += (size_t)got;
            if (!serve(c, epfd))
                close_conn(c);
        }
    }
}
