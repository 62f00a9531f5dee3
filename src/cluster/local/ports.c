/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway port registry: a text file of "PORT APP-ID" lines, rewritten atomically (temporary
 * file and rename) on every change. Callers serialise access. */
#include "ports.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "emp/names.h"

struct reservation {
    int port;
    char app_id[NAMES_UUID_LEN + 1];
};

struct ports {
    char path[4096];
    int min, max;
    struct reservation *items;
    size_t count, cap;
};

static int save(struct ports *p, struct emp_error *err)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", p->path);
    FILE *f = fopen(tmp, "we");
    if (!f)
        return emp_error_set(err, -errno, EMP_ERR_INTERNAL, NULL, "cannot write %s: %s", tmp,
                             strerror(errno));
    for (size_t i = 0; i < p->count; i++)
        fprintf(f, "%d %s\n", p->items[i].port, p->items[i].app_id);
    bool ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, p->path) < 0)
        return emp_error_set(err, -EIO, EMP_ERR_INTERNAL, NULL, "cannot write %s", p->path);
    return 0;
}

static int add(struct ports *p, int port, const char *app_id)
{
    if (p->count == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct reservation *grown = realloc(p->items, cap * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        p->items = grown;
        p->cap = cap;
    }
    p->items[p->count].port = port;
    snprintf(p->items[p->count].app_id, sizeof(p->items[0].app_id), "%s", app_id);
    p->count++;
    return 0;
}

int ports_open(const char *path, int min, int max, struct ports **ret_ports, struct emp_error *err)
{
    struct ports *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    snprintf(p->path, sizeof(p->path), "%s", path);
    p->min = min;
    p->max = max;
    FILE *f = fopen(path, "re");
    if (f) {
        int port;
        char id[64];
        while (fscanf(f, "%d %63s", &port, id) == 2)
            if (names_is_uuid(id) && add(p, port, id) < 0)
                break;
        fclose(f);
    }
    *ret_ports = p;
    return 0;
}

void ports_free(struct ports *ports)
{
    if (!ports)
        return;
    free(ports->items);
    free(ports);
}

static bool bindable(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    bool ok = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

static bool held(const struct ports *p, int port)
{
    for (size_t i = 0; i < p->count; i++)
        if (p->items[i].port == port)
            return true;
    return false;
}

int ports_reserve(struct ports *p, const char *app_id, const char *host, int hint, int *ret_port,
                  struct emp_error *err)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->items[i].app_id, app_id) == 0) {
            *ret_port = p->items[i].port;
            return 0;
        }
    bool hint_usable = hint >= p->min && hint <= p->max && !held(p, hint) && bindable(host, hint);
    for (int port = hint_usable ? hint : p->min; port <= p->max; port++) {
        if (!(hint_usable && port == hint) && (held(p, port) || !bindable(host, port)))
            continue;
        int r = add(p, port, app_id);
        if (r < 0)
            return r;
        r = save(p, err);
        if (r < 0) {
            p->count--;
            return r;
        }
        *ret_port = port;
        return 0;
    }
    return emp_error_set(err, -ENOSPC, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                         "no free gateway port in %d-%d: every port is held by an app or by "
                         "another program; remove apps or widen emp-server's --gateway-ports",
                         p->min, p->max);
}

void ports_release(struct ports *p, const char *app_id)
{
    for (size_t i = 0; i < p->count; i++)
        if (strcmp(p->items[i].app_id, app_id) == 0) {
            p->items[i] = p->items[--p->count];
            save(p, NULL);
            return;
        }
}

int ports_ephemeral(int *ret_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(addr);
    int r = 0;
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        r = -errno;
    close(fd);
    if (r == 0)
        *ret_port = ntohs(addr.sin_port);
    return r;
}
