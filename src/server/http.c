/* SPDX-License-Identifier: Apache-2.0 */
/* libmicrohttpd glue: one listening socket made here (so bind errors read well and port 0 works),
 * a thread pool on epoll, bodies collected up to HTTP_BODY_MAX, an access log line per request, and
 * a drain on stop that lets in-flight requests finish. */
#include "http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "emp/log.h"
#include "emp/timeutil.h"

#define IDLE_TIMEOUT_S 30
#define LISTEN_BACKLOG 1024

struct http_server {
    struct MHD_Daemon *daemon;
    int listen_fd;
    int port;
    http_handler_fn handler;
    http_error_fn on_error;
    http_body_limit_fn body_limit;
    void *ctx;
    atomic_int in_flight;
};

struct request_state {
    char *body;
    size_t len;
    size_t cap;
    bool too_large;
    size_t limit;
    struct timespec start;
    char request_id[HTTP_REQUEST_ID_MAX];
};

const char *http_query(const struct http_request *req, const char *key)
{
    return MHD_lookup_connection_value(req->impl, MHD_GET_ARGUMENT_KIND, key);
}

static void new_request_id(char *buf)
{
    static _Thread_local uint64_t state;
    while (state == 0 && getrandom(&state, sizeof(state), 0) != sizeof(state))
        ;
    /* xorshift64*: request ids need to be unique, not secret */
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    snprintf(buf, HTTP_REQUEST_ID_MAX, "%016llx",
             (unsigned long long)(state * 2685821657736338717ULL));
}

static bool acceptable_request_id(const char *id)
{
    size_t len = strlen(id);
    if (len == 0 || len >= HTTP_REQUEST_ID_MAX)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_' || *p == '.'))
            return false;
    return true;
}

static enum MHD_Result send_response(struct MHD_Connection *connection, struct request_state *rs,
                                     struct http_response *resp)
{
    struct MHD_Response *response;
    if (resp->body)
        response =
            MHD_create_response_from_buffer_with_free_callback(resp->body_len, resp->body, free);
    else
        response = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!response) {
        free(resp->body);
        return MHD_NO;
    }
    resp->body = NULL;
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(response, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(response, "X-Request-Id", rs->request_id);
    if (resp->retry_after_s > 0) {
        char value[24];
        snprintf(value, sizeof(value), "%d", resp->retry_after_s);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, value);
    }
    if (resp->allow)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, resp->allow);
    if (resp->www_authenticate)
        MHD_add_response_header(response, MHD_HTTP_HEADER_WWW_AUTHENTICATE, resp->www_authenticate);
    enum MHD_Result ret =
        MHD_queue_response(connection, (unsigned)(resp->status ? resp->status : 500), response);
    MHD_destroy_response(response);
    return ret;
}

static void access_log(struct request_state *rs, const char *method, const char *url, int status,
                       size_t bytes)
{
    if (log_get_level() > LOG_INFO)
        return;
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    double ms = (double)(end.tv_sec - rs->start.tv_sec) * 1e3 +
                (double)(end.tv_nsec - rs->start.tv_nsec) / 1e6;
    char path[300];
    log_msg(LOG_INFO, "request", "method=%s path=%s status=%d bytes=%zu duration_ms=%.3f", method,
            log_quote(path, sizeof(path), url), status, bytes, ms);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    struct http_server *server = cls;
    struct request_state *rs = *con_cls;
    if (!rs) {
        rs = calloc(1, sizeof(*rs));
        if (!rs)
            return MHD_NO;
        clock_gettime(CLOCK_MONOTONIC, &rs->start);
        const char *given =
            MHD_lookup_connection_value(connection, MHD_HEADER_KIND, "X-Request-Id");
        if (given && acceptable_request_id(given))
            snprintf(rs->request_id, sizeof(rs->request_id), "%s", given);
        else
            new_request_id(rs->request_id);
        *con_cls = rs;
        atomic_fetch_add(&server->in_flight, 1);
        rs->limit = server->body_limit ? server->body_limit(server->ctx, method, url) : 0;
        if (rs->limit == 0)
            rs->limit = HTTP_BODY_MAX;
        const char *length = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (length && strtoull(length, NULL, 10) > rs->limit)
            rs->too_large = true;
        else
            return MHD_YES;
    }
    if (*upload_data_size > 0 && !rs->too_large) {
        size_t chunk = *upload_data_size;
        if (rs->len + chunk > rs->limit) {
            rs->too_large = true;
            free(rs->body);
            rs->body = NULL;
        } else {
            if (rs->len + chunk + 1 > rs->cap) {
                size_t cap = rs->cap ? rs->cap : 4096;
                while (cap < rs->len + chunk + 1)
                    cap *= 2;
                char *grown = realloc(rs->body, cap);
                if (!grown)
                    return MHD_NO;
                rs->body = grown;
                rs->cap = cap;
            }
            memcpy(rs->body + rs->len, upload_data, chunk);
            rs->len += chunk;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        *upload_data_size = 0; /* too large: drain what the client still sends, keep nothing */
        return MHD_YES;
    }

    log_set_request_id(rs->request_id);
    struct http_response resp = {0};
    if (rs->too_large) {
        struct emp_error err = {0};
        emp_error_set(&err, -E2BIG, EMP_ERR_PAYLOAD_TOO_LARGE, NULL,
                      "the request body is larger than %zu bytes: send a smaller document",
                      rs->limit);
        server->on_error(server->ctx, &err, &resp);
    } else {
        struct http_request req = {
            .method = method,
            .path = url,
            .authorization = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                         MHD_HTTP_HEADER_AUTHORIZATION),
            .content_type = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                        MHD_HTTP_HEADER_CONTENT_TYPE),
            .content_encoding = MHD_lookup_connection_value(connection, MHD_HEADER_KIND,
                                                            MHD_HTTP_HEADER_CONTENT_ENCODING),
            .body = rs->body ? rs->body : "",
            .body_len = rs->len,
            .request_id = rs->request_id,
            .impl = connection,
        };
        if (rs->body)
            rs->body[rs->len] = '\0';
        server->handler(server->ctx, &req, &resp);
    }
    int status = resp.status ? resp.status : 500;
    size_t bytes = resp.body_len;
    enum MHD_Result ret = send_response(connection, rs, &resp);
    access_log(rs, method, url, status, bytes);
    log_set_request_id(NULL);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *connection, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct http_server *server = cls;
    struct request_state *rs = *con_cls;
    if (!rs)
        return;
    free(rs->body);
    free(rs);
    *con_cls = NULL;
    atomic_fetch_sub(&server->in_flight, 1);
}

static void mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof(line), fmt, ap);
    size_t len = strlen(line);
    while (len > 0 && line[len - 1] == '\n')
        line[--len] = '\0';
    char quoted[600];
    log_msg(LOG_WARN, "http layer", "detail=%s", log_quote(quoted, sizeof(quoted), line));
}

int http_listen(const struct http_config *config, int *ret_fd, int *ret_port, struct emp_error *err)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%d", config->port);
    int gai = getaddrinfo(config->host, port, &hints, &res);
    if (gai != 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "listen",
                             "cannot listen on '%s': %s", config->host, gai_strerror(gai));
    int fd = -1;
    int saved = 0;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return emp_error_set(err, -saved, EMP_ERR_INVALID_FIELD, "listen",
                             "cannot listen on %s:%d: %s", config->host, config->port,
                             strerror(saved));
    struct sockaddr_storage addr;
    socklen_t len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    *ret_port = addr.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&addr)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&addr)->sin_port);
    *ret_fd = fd;
    return 0;
}

int http_start(const struct http_config *config, http_handler_fn handler, http_error_fn on_error,
               void *ctx, struct http_server **ret_server, struct emp_error *err)
{
    struct http_server *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->handler = handler;
    s->on_error = on_error;
    s->body_limit = config->body_limit;
    s->ctx = ctx;
    if (config->listening) {
        s->listen_fd = config->listen_fd;
        s->port = config->listen_port;
    } else {
        int r = http_listen(config, &s->listen_fd, &s->port, err);
        if (r < 0) {
            free(s);
            return r;
        }
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned)(config->threads > 0 ? config->threads : 1), MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)config->max_connections, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, s, MHD_OPTION_END);
    if (!s->daemon) {
        close(s->listen_fd);
        free(s);
        return emp_error_set(err, -EIO, EMP_ERR_INTERNAL, "listen",
                             "cannot start the HTTP server on %s:%d", config->host, config->port);
    }
    *ret_server = s;
    return 0;
}

int http_port(const struct http_server *server)
{
    return server->port;
}

void http_stop(struct http_server *server, int drain_ms)
{
    if (!server)
        return;
    MHD_socket fd = MHD_quiesce_daemon(server->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    int64_t deadline = time_mono_ms() + drain_ms;
    while (atomic_load(&server->in_flight) > 0 && time_mono_ms() < deadline) {
        struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    MHD_stop_daemon(server->daemon);
    free(server);
}
