/* SPDX-License-Identifier: Apache-2.0 */
/* The HTTP layer: libmicrohttpd with an internal thread pool on epoll. It reads requests (bounded
 * body), hands them to one handler as plain structs, and writes what the handler answers. It knows
 * nothing of routes, users or Redis. */
#ifndef EMP_HTTP_H
#define EMP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "emp/error.h"

#define HTTP_BODY_MAX       (1024 * 1024) /* larger bodies get 413, unless body_limit says */
#define HTTP_REQUEST_ID_MAX 65

struct http_request {
    const char *method;
    const char *path;
    const char *authorization;    /* NULL when absent */
    const char *content_type;     /* NULL when absent */
    const char *content_encoding; /* NULL when absent */
    const char *body;             /* NUL-terminated for convenience; body_len excludes it */
    size_t body_len;
    const char *request_id;
    void *impl;
};

/* A query parameter of the request, or NULL. */
const char *http_query(const struct http_request *req, const char *key);

struct http_response {
    int status;
    char *body; /* malloc'd JSON text, owned by the HTTP layer once set; NULL for no body */
    size_t body_len;
    int retry_after_s;            /* > 0: sends Retry-After */
    const char *allow;            /* sends Allow (405) */
    const char *www_authenticate; /* sends WWW-Authenticate (401) */
};

/* Called on a pool thread for every complete request. Fills resp; status 0 means 500. */
typedef void (*http_handler_fn)(void *ctx, const struct http_request *req,
                                struct http_response *resp);

/* The answer for a request the HTTP layer refuses itself (413, 400), so that it has the API's error
 * shape; given by the API. Fills resp from err. */
typedef void (*http_error_fn)(void *ctx, const struct emp_error *err, struct http_response *resp);

/* The largest body a request may have, by its method and path (the default is HTTP_BODY_MAX). */
typedef size_t (*http_body_limit_fn)(void *ctx, const char *method, const char *path);

struct http_config {
    const char *host;
    int port; /* 0: any free port */
    int threads;
    int max_connections;
    http_body_limit_fn body_limit; /* NULL: HTTP_BODY_MAX for every request */
    bool listening;                /* listen_fd, bound to listen_port, is the socket to serve */
    int listen_fd;
    int listen_port;
};

/* Opens the listening socket of config's host and port, so that the port is known before the
 * server starts (port 0 picks a free one). http_start takes the fd over. Returns 0, or -errno with
 * err (the port is taken, the host does not resolve). */
int http_listen(const struct http_config *config, int *ret_fd, int *ret_port,
                struct emp_error *err);

struct http_server;

/* Starts listening and serving. Returns 0, or -errno with err (for example the port is taken). */
int http_start(const struct http_config *config, http_handler_fn handler, http_error_fn on_error,
               void *ctx, struct http_server **ret_server, struct emp_error *err);
/* The port actually bound. */
int http_port(const struct http_server *server);
/* Stops accepting, lets in-flight requests finish for up to drain_ms, then stops. Accepts NULL. */
void http_stop(struct http_server *server, int drain_ms);

#endif
