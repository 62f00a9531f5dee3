/* SPDX-License-Identifier: Apache-2.0 */
/* The REST API of api/openapi.yaml: routing, authentication, request bodies and JSON answers. It
 * turns HTTP requests into calls of auth and apps, and their results into the documented shapes. */
#ifndef EMP_API_H
#define EMP_API_H

#include "apps.h"
#include "auth.h"
#include "http.h"
#include "store.h"
#include "traces.h"

struct api_config {
    const char *zipkin_url;   /* base of the links `emp tracing` prints */
    const char *cluster_name; /* for /v1/version */
    bool cluster_available;
    struct traces *traces; /* the tracing endpoints */
};

struct api;

/* All pointers are borrowed and must outlive the api. Free with api_free(). */
int api_new(struct store *store, struct auth *auth, struct apps *apps,
            const struct api_config *config, struct api **ret_api);
void api_free(struct api *api);

/* An http_handler_fn; ctx is the struct api. */
void api_handle(void *ctx, const struct http_request *req, struct http_response *resp);
/* An http_body_limit_fn: Zipkin's span endpoint takes larger bodies than the rest. */
size_t api_body_limit(void *ctx, const char *method, const char *path);
/* An http_error_fn: the API's error body for err. */
void api_error(void *ctx, const struct emp_error *err, struct http_response *resp);

#endif
