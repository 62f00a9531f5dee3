/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP to the Kubernetes API server over libcurl: TLS as the configuration says, the credential
 * on every call, timeouts, retries with backoff for 429, 5xx and broken connections (honouring
 * Retry-After), Status bodies turned into errors a developer can read, and watch streams. One
 * curl handle per thread, so connections (and TLS sessions) are reused. */
#ifndef EMP_KUBE_CLIENT_H
#define EMP_KUBE_CLIENT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "emp/error.h"
#include "kube_config.h"

#define KUBE_TIMEOUT_MS         15000 /* one call, retries included */
#define KUBE_CONNECT_TIMEOUT_MS 5000
#define KUBE_ATTEMPTS           5

struct kube_client;

/* config is borrowed and must outlive the client. Free with kube_client_free(). */
int kube_client_new(struct kube_config *config, struct kube_client **ret_client,
                    struct emp_error *err);
void kube_client_free(struct kube_client *client);

struct kube_response {
    long status;  /* HTTP status */
    json_t *json; /* the parsed body, or NULL when it was not JSON */
};
void kube_response_clear(struct kube_response *resp);

/* method path (with its query) and an optional JSON body (content_type NULL: application/json).
 * Returns 0 with *resp filled whatever the HTTP status (after retries for 429/5xx), or -EIO with
 * err when the server cannot be reached. */
int kube_request(struct kube_client *client, const char *method, const char *path,
                 const json_t *body, const char *content_type, struct kube_response *resp,
                 struct emp_error *err);

/* Fills err from a failed response: the Status' message, the credential used for 401 and 403,
 * what to do for the common cases. what names the operation ("create Deployment emp-a/web").
 * Returns the negative errno that suits the status (-ENOENT for 404, -EEXIST for 409, ...). */
int kube_error(struct kube_client *client, const char *what, const struct kube_response *resp,
               struct emp_error *err);

/* Streams a watch (path with watch=1): calls on_event for every event as it arrives, until the
 * server ends the stream, on_event returns non-zero, or *stop becomes true. Returns 0 when the
 * stream ended, the HTTP status as a positive number when the server refused the watch (410 when
 * its resourceVersion is too old), or -EIO with err. */
int kube_watch(struct kube_client *client, const char *path,
               int (*on_event)(void *ctx, json_t *event), void *ctx, atomic_bool *stop,
               struct emp_error *err);

/* Percent-encodes s for a query value (label selectors) into buf. */
void kube_query_escape(const char *s, char *buf, size_t size);

#endif
