/* SPDX-License-Identifier: Apache-2.0 */
/* A level-triggered epoll relay. Each connection reads into the thread's scratch buffer and writes
 * straight on; only bytes the other side cannot take yet are kept, in a buffer of their own, while
 * reading from their source pauses. So an idle connection costs a few hundred bytes, and a slow
 * reader is never flooded. Listeners are closed on the loop's thread (a command and an ack), so no
 * event can meet a freed listener. */
#include "gateway.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#define SCRATCH_SIZE     (64 * 1024)
#define MAX_BACKENDS     1024
#define CONNECT_ATTEMPTS 3
#define EVENTS_PER_WAIT  256
#define ACCEPTS_PER_WAKE 64

enum endpoint_kind { EP_WAKE, EP_LISTENER, EP_CLIENT, EP_BACKEND };

struct endpoint {
    enum endpoint_kind kind;
    void *owner;
};

struct gateway_listener {
    struct endpoint ep;
    struct gateway *gateway;
    int fd;
    int port;
    bool closed;          /* no longer accepting; freed when refs reaches 0 */
    int refs;             /* connections still pointing here (loop thread only) */
    pthread_mutex_t lock; /* backends */
    size_t count;
    size_t next; /* round-robin start among equally loaded backends */
    struct backend {
        int port;
        int active;
    } backends[MAX_BACKENDS];
    struct gateway_listener *next_listener;
};

/* One direction of a connection: bytes from src not yet written to dst. */
struct flow {
    char *pending;
    size_t len, off;
    bool eof; /* src closed its side; dst was (or will be, once pending is out) shut for writing */
};

struct connection {
    struct endpoint client_ep, backend_ep;
    struct gateway_listener *listener;
    int client_fd, backend_fd;
    int backend_port;
    bool connected;
    int attempts;
    int tried[CONNECT_ATTEMPTS];
    struct flow up;   /* client -> backend */
    struct flow down; /* backend -> client */
    uint32_t client_events, backend_events;
    struct connection *prev, *next; /* every connection, so that stopping frees them */
    bool dead;                      /* ended; freed after the loop's turn (events may follow) */
    struct connection *next_dead;
};

struct gateway {
    struct endpoint wake_ep;
    int epfd;
    int wake_fd;
    pthread_t thread;
    int max_connections;
    atomic_int connections;
    char *scratch;
    pthread_mutex_t lock; /* listeners list and the close queue */
    pthread_cond_t done;
    struct gateway_listener *listeners;
    struct connection *conns;     /* loop thread only */
    struct connection *graveyard; /* ended this turn, freed at its end */
    struct gateway_listener *to_close[64];
    size_t to_close_count;
    unsigned long closes_asked, closes_done;
    bool stopping;
};

static void wake(struct gateway *g)
{
    uint64_t one = 1;
    ssize_t ignored = write(g->wake_fd, &one, sizeof(one));
    (void)ignored;
}

/* ---- backends ---- */

int gateway_set_backends(struct gateway_listener *l, const int *ports, size_t count)
{
    if (count > MAX_BACKENDS)
        return -E2BIG;
    pthread_mutex_lock(&l->lock);
    struct backend next[MAX_BACKENDS];
    for (size_t i = 0; i < count; i++) {
        next[i].port = ports[i];
        next[i].active = 0;
        for (size_t j = 0; j < l->count; j++)
            if (l->backends[j].port == ports[i])
                next[i].active = l->backends[j].active;
    }
    memcpy(l->backends, next, count * sizeof(next[0]));
    l->count = count;
    if (l->next >= count)
        l->next = 0;
    pthread_mutex_unlock(&l->lock);
    return 0;
}

/* The least loaded backend not yet tried by c, or -1. */
static int pick_backend(struct connection *c)
{
    struct gateway_listener *l = c->listener;
    pthread_mutex_lock(&l->lock);
    int best = -1;
    for (size_t k = 0; k < l->count; k++) {
        size_t i = (l->next + k) % l->count;
        bool tried = false;
        for (int t = 0; t < c->attempts; t++)
            tried = tried || c->tried[t] == l->backends[i].port;
        if (tried)
            continue;
        if (best < 0 || l->backends[i].active < l->backends[best].active)
            best = (int)i;
    }
    int port = -1;
    if (best >= 0) {
        port = l->backends[best].port;
        l->backends[best].active++;
        l->next = ((size_t)best + 1) % l->count;
    }
    pthread_mutex_unlock(&l->lock);
    return port;
}

static void release_backend(struct gateway_listener *l, int port)
{
    pthread_mutex_lock(&l->lock);
    for (size_t i = 0; i < l->count; i++)
        if (l->backends[i].port == port && l->backends[i].active > 0)
            l->backends[i].active--;
    pthread_mutex_unlock(&l->lock);
}

/* ---- connections ---- */

static void listener_unref(struct gateway_listener *l)
{
    if (--l->refs == 0 && l->closed) {
        pthread_mutex_destroy(&l->lock);
        free(l);
    }
}

static void conn_free(struct gateway *g, struct connection *c)
{
    /* out of the epoll set explicitly: a replica being forked this moment holds copies of our
     * fds, and while a copy lives, close() alone would leave the registration in place */
    if (c->client_fd >= 0) {
        epoll_ctl(g->epfd, EPOLL_CTL_DEL, c->client_fd, NULL);
        close(c->client_fd);
    }
    if (c->backend_fd >= 0) {
        epoll_ctl(g->epfd, EPOLL_CTL_DEL, c->backend_fd, NULL);
        close(c->backend_fd);
    }
    if (c->backend_port > 0)
        release_backend(c->listener, c->backend_port);
    free(c->up.pending);
    free(c->down.pending);
    listener_unref(c->listener);
    if (c->prev)
        c->prev->next = c->next;
    else
        g->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    /* one epoll_wait batch may hold events of both sockets: the struct stays until its end */
    c->dead = true;
    c->client_fd = c->backend_fd = -1;
    c->next_dead = g->graveyard;
    g->graveyard = c;
    atomic_fetch_sub(&g->connections, 1);
}

static void bury(struct gateway *g)
{
    while (g->graveyard) {
        struct connection *c = g->graveyard;
        g->graveyard = c->next_dead;
        free(c);
    }
}

static void set_events(struct gateway *g, int fd, struct endpoint *ep, uint32_t *current,
                       uint32_t wanted)
{
    if (fd < 0 || *current == wanted)
        return;
    struct epoll_event ev = {.events = wanted, .data.ptr = ep};
    epoll_ctl(g->epfd, EPOLL_CTL_MOD, fd, &ev);
    *current = wanted;
}

/* What each side should wait for: reading while its flow has nothing pending and is open,
 * writing while the flow towards it has something pending. */
static void update_interest(struct gateway *g, struct connection *c)
{
    uint32_t client = 0, backend = 0;
    if (!c->up.eof && c->up.len == 0)
        client |= EPOLLIN;
    if (c->down.len > 0)
        client |= EPOLLOUT;
    if (!c->down.eof && c->down.len == 0)
        backend |= EPOLLIN;
    if (c->up.len > 0)
        backend |= EPOLLOUT;
    set_events(g, c->client_fd, &c->client_ep, &c->client_events, client);
    set_events(g, c->backend_fd, &c->backend_ep, &c->backend_events, backend);
}

/* Writes what is pending on f to dst. Returns -1 on a write error. */
static int flush_flow(struct flow *f, int dst)
{
    while (f->len > 0) {
        ssize_t n = send(dst, f->pending + f->off, f->len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        f->off += (size_t)n;
        f->len -= (size_t)n;
    }
    free(f->pending);
    f->pending = NULL;
    f->off = 0;
    if (f->eof)
        shutdown(dst, SHUT_WR);
    return 0;
}

/* Moves what src has to dst. Returns -1 when the connection must end. */
static int relay(struct gateway *g, struct flow *f, int src, int dst)
{
    if (f->eof || f->len > 0)
        return 0;
    for (;;) {
        ssize_t n = recv(src, g->scratch, SCRATCH_SIZE, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -1;
        }
        if (n == 0) {
            f->eof = true;
            shutdown(dst, SHUT_WR);
            return 0;
        }
        size_t off = 0;
        while (off < (size_t)n) {
            ssize_t w = send(dst, g->scratch + off, (size_t)n - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0 && errno != EAGAIN)
                return -1;
            if (w < 0)
                break;
            off += (size_t)w;
        }
        if (off < (size_t)n) {
            f->pending = malloc((size_t)n - off);
            if (!f->pending)
                return -1;
            memcpy(f->pending, g->scratch + off, (size_t)n - off);
            f->len = (size_t)n - off;
            return 0; /* dst is full: wait for it before reading more */
        }
        if (n < SCRATCH_SIZE)
            return 0;
    }
}

static bool finished(const struct connection *c)
{
    return c->up.eof && c->down.eof && c->up.len == 0 && c->down.len == 0;
}

static int start_connect(struct gateway *g, struct connection *c);

static void on_connected(struct gateway *g, struct connection *c)
{
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    getsockopt(c->backend_fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
        /* the replica went away between being picked and the connect: try another */
        epoll_ctl(g->epfd, EPOLL_CTL_DEL, c->backend_fd, NULL);
        close(c->backend_fd);
        c->backend_fd = -1;
        release_backend(c->listener, c->backend_port);
        c->backend_port = 0;
        if (start_connect(g, c) < 0)
            conn_free(g, c);
        return;
    }
    c->connected = true;
    int one = 1;
    setsockopt(c->backend_fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = 0, .data.ptr = &c->client_ep};
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, c->client_fd, &ev);
    c->client_events = 0;
    update_interest(g, c);
}

static int start_connect(struct gateway *g, struct connection *c)
{
    while (c->attempts < CONNECT_ATTEMPTS) {
        int port = pick_backend(c);
        if (port < 0)
            return -1;
        c->tried[c->attempts++] = port;
        c->backend_port = port;
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        struct sockaddr_in addr = {.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)port),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        int r = connect(fd, (struct sockaddr *)&addr, sizeof(addr));
        if (r == 0 || errno == EINPROGRESS) {
            c->backend_fd = fd;
            c->backend_events = EPOLLOUT;
            struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = &c->backend_ep};
            epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev);
            return 0;
        }
        close(fd);
        release_backend(c->listener, port);
        c->backend_port = 0;
    }
    return -1;
}

static void on_accept(struct gateway *g, struct gateway_listener *l)
{
    for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
        int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (atomic_load(&g->connections) >= g->max_connections) {
            close(fd);
            continue;
        }
        struct connection *c = calloc(1, sizeof(*c));
        if (!c) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        c->client_ep = (struct endpoint){EP_CLIENT, c};
        c->backend_ep = (struct endpoint){EP_BACKEND, c};
        c->listener = l;
        c->client_fd = fd;
        c->backend_fd = -1;
        c->next = g->conns;
        if (g->conns)
            g->conns->prev = c;
        g->conns = c;
        l->refs++;
        atomic_fetch_add(&g->connections, 1);
        if (start_connect(g, c) < 0)
            conn_free(g, c); /* no ready replica: the client sees the connection closed */
    }
}

static void on_event(struct gateway *g, struct connection *c, bool client_side, uint32_t events)
{
    if (!c->connected) {
        on_connected(g, c);
        return;
    }
    if (events & EPOLLERR) {
        conn_free(g, c); /* reset by a peer */
        return;
    }
    int rc = 0;
    struct flow *in = client_side ? &c->up : &c->down;  /* what this side sends */
    struct flow *out = client_side ? &c->down : &c->up; /* what this side is sent */
    int fd = client_side ? c->client_fd : c->backend_fd;
    int other = client_side ? c->backend_fd : c->client_fd;
    if (events & EPOLLOUT)
        rc = flush_flow(out, fd);
    if (rc == 0 && (events & (EPOLLIN | EPOLLHUP)))
        rc = relay(g, in, fd, other);
    /* hung up in both directions: nothing more can be written to this side */
    if ((events & EPOLLHUP) && in->eof && out->len > 0)
        rc = -1;
    if (rc < 0 || finished(c)) {
        conn_free(g, c);
        return;
    }
    update_interest(g, c);
}

/* ---- listeners ---- */

static void close_pending(struct gateway *g)
{
    pthread_mutex_lock(&g->lock);
    for (size_t i = 0; i < g->to_close_count; i++) {
        struct gateway_listener *l = g->to_close[i];
        close(l->fd);
        struct gateway_listener **p = &g->listeners;
        while (*p && *p != l)
            p = &(*p)->next_listener;
        if (*p)
            *p = l->next_listener;
        l->closed = true;
        l->refs++;
        listener_unref(l); /* frees it unless connections still point to it */
        g->closes_done++;
    }
    g->to_close_count = 0;
    pthread_cond_broadcast(&g->done);
    pthread_mutex_unlock(&g->lock);
}

static void *loop(void *arg)
{
    struct gateway *g = arg;
    struct epoll_event events[EVENTS_PER_WAIT];
    for (;;) {
        int n = epoll_wait(g->epfd, events, EVENTS_PER_WAIT, -1);
        bool woken = false;
        for (int i = 0; i < n; i++) {
            struct endpoint *ep = events[i].data.ptr;
            switch (ep->kind) {
            case EP_WAKE: {
                uint64_t value;
                ssize_t ignored = read(g->wake_fd, &value, sizeof(value));
                (void)ignored;
                woken = true; /* listeners are closed after the batch, like connections */
                break;
            }
            case EP_LISTENER:
                on_accept(g, ep->owner);
                break;
            case EP_CLIENT:
            case EP_BACKEND:
                if (!((struct connection *)ep->owner)->dead)
                    on_event(g, ep->owner, ep->kind == EP_CLIENT, events[i].events);
                break;
            }
        }
        bury(g);
        if (woken)
            close_pending(g);
        pthread_mutex_lock(&g->lock);
        bool stopping = g->stopping;
        pthread_mutex_unlock(&g->lock);
        if (stopping)
            return NULL;
    }
}

int gateway_listen(struct gateway *g, const char *host, int port,
                   struct gateway_listener **ret_listener, struct emp_error *err)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, NULL,
                             "gateway address '%s' is not an IPv4 address", host);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return emp_error_set(err, -errno, EMP_ERR_INTERNAL, NULL, "socket: %s", strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1024) < 0) {
        int e = errno;
        close(fd);
        return emp_error_set(err, -e, EMP_ERR_CONFLICT, NULL, "cannot listen on %s:%d: %s", host,
                             port, strerror(e));
    }
    struct gateway_listener *l = calloc(1, sizeof(*l));
    if (!l) {
        close(fd);
        return -ENOMEM;
    }
    l->ep = (struct endpoint){EP_LISTENER, l};
    l->gateway = g;
    l->fd = fd;
    l->port = port;
    pthread_mutex_init(&l->lock, NULL);
    pthread_mutex_lock(&g->lock);
    l->next_listener = g->listeners;
    g->listeners = l;
    pthread_mutex_unlock(&g->lock);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &l->ep};
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, fd, &ev);
    *ret_listener = l;
    return 0;
}

void gateway_close(struct gateway_listener *l)
{
    if (!l)
        return;
    struct gateway *g = l->gateway;
    pthread_mutex_lock(&g->lock);
    /* out of the epoll set first, so that the loop sees no accept on it any more */
    epoll_ctl(g->epfd, EPOLL_CTL_DEL, l->fd, NULL);
    while (g->to_close_count == sizeof(g->to_close) / sizeof(g->to_close[0]))
        pthread_cond_wait(&g->done, &g->lock);
    g->to_close[g->to_close_count++] = l;
    unsigned long ticket = ++g->closes_asked;
    wake(g);
    while (g->closes_done < ticket)
        pthread_cond_wait(&g->done, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

int gateway_connections(struct gateway *g)
{
    return atomic_load(&g->connections);
}

int gateway_start(int max_connections, struct gateway **ret_gateway, struct emp_error *err)
{
    struct gateway *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->max_connections = max_connections;
    g->scratch = malloc(SCRATCH_SIZE);
    g->epfd = epoll_create1(EPOLL_CLOEXEC);
    g->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->done, NULL);
    g->wake_ep = (struct endpoint){EP_WAKE, g};
    if (!g->scratch || g->epfd < 0 || g->wake_fd < 0) {
        gateway_stop(g);
        return emp_error_set(err, -ENOMEM, EMP_ERR_INTERNAL, NULL, "cannot set up the gateway");
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &g->wake_ep};
    epoll_ctl(g->epfd, EPOLL_CTL_ADD, g->wake_fd, &ev);
    if (pthread_create(&g->thread, NULL, loop, g) != 0) {
        close(g->epfd);
        g->epfd = -1;
        gateway_stop(g);
        return emp_error_set(err, -EAGAIN, EMP_ERR_INTERNAL, NULL,
                             "cannot start the gateway thread");
    }
    *ret_gateway = g;
    return 0;
}

void gateway_stop(struct gateway *g)
{
    if (!g)
        return;
    if (g->epfd >= 0 && g->thread) {
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_mutex_unlock(&g->lock);
        wake(g);
        pthread_join(g->thread, NULL);
    }
    /* what is left: connections, then listeners */
    while (g->conns)
        conn_free(g, g->conns);
    bury(g);
    struct gateway_listener *l = g->listeners;
    while (l) {
        struct gateway_listener *next = l->next_listener;
        close(l->fd);
        l->closed = true;
        l->refs++;
        listener_unref(l);
        l = next;
    }
    if (g->epfd >= 0)
        close(g->epfd);
    if (g->wake_fd >= 0)
        close(g->wake_fd);
    pthread_cond_destroy(&g->done);
    pthread_mutex_destroy(&g->lock);
    free(g->scratch);
    free(g);
}
