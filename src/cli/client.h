/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP to emp-server: the only code of the CLI that uses libcurl. It sends one request and hands
 * back the status and the body as received; what the JSON means is the caller's business. */
#ifndef EMP_CLI_CLIENT_H
#define EMP_CLI_CLIENT_H

#include <stddef.h>

#include "failure.h"

#define CLIENT_CONNECT_TIMEOUT_MS 5000
#define CLIENT_TIMEOUT_MS         30000
#define CLIENT_BODY_MAX           (16 * 1024 * 1024) /* the largest answer accepted */
#define CLIENT_URL_MAX            2048               /* --server and EMP_SERVER */
#define CLIENT_TOKEN_MAX          512                /* EMP_TOKEN and saved tokens */
#define CLIENT_PATH_MAX           4096
#define CLIENT_USER_AGENT         "emp/" EMP_VERSION

/* Once per process, before any other client_ call; client_global_cleanup() at the end. */
int client_global_init(void);
void client_global_cleanup(void);

/* Checks and normalises a server URL: "http://" is assumed when no scheme is given, only http and
 * https are accepted, trailing '/' are dropped. Writes at most CLIENT_URL_MAX bytes to ret_url.
 * Returns 0, or -EINVAL with a usage failure naming `what` (e.g. "--server"). */
int client_normalize_url(const char *url, const char *what, char *ret_url, struct failure *fail);

/* Appends s to buf (of size bytes, holding a string) percent-encoded as one path segment: every
 * byte but A-Z a-z 0-9 - . _ ~ becomes %XX. Returns 0 or -ENAMETOOLONG. */
int client_append_segment(char *buf, size_t size, const char *s);

struct client;

/* A client for base_url (normalised, see client_normalize_url). token, when not NULL, is sent as
 * "Authorization: Bearer TOKEN"; it must be at most CLIENT_TOKEN_MAX printable characters. Both
 * strings are copied. Returns 0, -EINVAL (usage failure) or -ENOMEM; free with client_free(). */
int client_new(const char *base_url, const char *token, struct client **ret_client,
               struct failure *fail);
/* Accepts NULL. */
void client_free(struct client *client);
const char *client_base_url(const struct client *client);

struct client_response {
    long status; /* the HTTP status */
    char *body;  /* the body as received, NUL-terminated; owned, see client_response_clear() */
    size_t body_len;
};

/* Sends METHOD base_url+path (path starts with '/', query included) with body (JSON, may be NULL)
 * and waits for the answer, within CLIENT_CONNECT_TIMEOUT_MS to connect and CLIENT_TIMEOUT_MS in
 * all. Any HTTP status is a success here: the caller reads ret_response. When no answer comes (the
 * connection is refused, the name does not resolve, a timeout, a body over CLIENT_BODY_MAX),
 * returns -EHOSTUNREACH with an unreachable failure. */
int client_request(struct client *client, const char *method, const char *path, const char *body,
                   size_t body_len, struct client_response *ret_response, struct failure *fail);
/* Frees the body and empties the response. Accepts NULL. */
void client_response_clear(struct client_response *response);

#endif
