/* SPDX-License-Identifier: Apache-2.0 */
/* Routes of the v1 API and the JSON they speak. Handlers validate, call auth or apps, and answer at
 * once; nothing here waits on a cluster. Every answer, errors included, is application/json. */
#include "api.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "emp/jsonutil.h"
#include "emp/names.h"
#include "emp/textio.h"
#include "emp/timeutil.h"

#define PATH_SEGMENTS_MAX 6
#define SEGMENT_MAX       128
#define CURSOR_MAX        64

struct api {
    struct store *store;
    struct auth *auth;
    struct apps *apps;
    char *zipkin_url;
    char *cluster_name;
    bool cluster_available;
    struct traces *traces;
};

int api_new(struct store *store, struct auth *auth, struct apps *apps,
            const struct api_config *config, struct api **ret_api)
{
    struct api *a = calloc(1, sizeof(*a));
    if (!a)
        return -ENOMEM;
    a->store = store;
    a->auth = auth;
    a->apps = apps;
    a->zipkin_url = strdup(config->zipkin_url ? config->zipkin_url : "");
    a->cluster_name = strdup(config->cluster_name ? config->cluster_name : "");
    a->cluster_available = config->cluster_available;
    a->traces = config->traces;
    if (!a->zipkin_url || !a->cluster_name) {
        api_free(a);
        return -ENOMEM;
    }
    /* links are built as base + "/zipkin/...": drop a trailing slash */
    size_t len = strlen(a->zipkin_url);
    while (len > 0 && a->zipkin_url[len - 1] == '/')
        a->zipkin_url[--len] = '\0';
    *ret_api = a;
    return 0;
}

void api_free(struct api *api)
{
    if (!api)
        return;
    free(api->zipkin_url);
    free(api->cluster_name);
    free(api);
}

/* ---- answers ---- */

static void respond(struct http_response *resp, int status, json_t *body)
{
    resp->status = status;
    if (!body) {
        resp->status = 500;
        static const char oom[] =
            "{\"error\":{\"code\":\"internal\",\"message\":\"out of memory\"}}";
        resp->body = strdup(oom);
        resp->body_len = resp->body ? sizeof(oom) - 1 : 0;
        return;
    }
    resp->body = jsonu_dump(body);
    resp->body_len = resp->body ? strlen(resp->body) : 0;
    json_decref(body);
}

static void respond_errors(struct http_response *resp, const struct emp_error *err,
                           const struct emp_errlist *details)
{
    struct emp_error fallback = {0};
    if (!emp_error_is_set(err)) {
        emp_error_set(&fallback, -EIO, EMP_ERR_INTERNAL, NULL,
                      "internal error: the server could not complete the request");
        err = &fallback;
    }
    respond(resp, emp_errcode_http_status(err->code), jsonu_error_body(err, details));
    if (err->code == EMP_ERR_UNAUTHORIZED)
        resp->www_authenticate = "Bearer realm=\"emp\"";
    if (err->code == EMP_ERR_STORE_UNAVAILABLE || err->code == EMP_ERR_BUSY)
        resp->retry_after_s = resp->retry_after_s ? resp->retry_after_s : 1;
}

static void respond_error(struct http_response *resp, const struct emp_error *err)
{
    respond_errors(resp, err, NULL);
}

void api_error(void *ctx, const struct emp_error *err, struct http_response *resp)
{
    respond_error(resp, err);
}

static json_t *time_json(int64_t ms)
{
    char buf[TIME_RFC3339_LEN];
    return json_string(time_format_rfc3339(ms, buf));
}

static json_t *nullable_string(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* The app as the API shows it, as text. The stored spec is canonical JSON already, so for a
 * developer it goes into the answer as it is; only the scheduler's view, without envs, is parsed
 * and written anew. Returns malloc'd text, or NULL on ENOMEM. */
static char *app_text(const struct store_app *a, const struct auth_principal *caller)
{
    char *spec_text = NULL;
    const char *spec = a->spec_json;
    int min = 0, max = 0;
    if (caller->role == ROLE_SCHEDULER || spec_json_replica_bounds(spec, &min, &max) < 0) {
        json_t *doc = json_loads(a->spec_json, 0, NULL);
        if (!doc)
            doc = json_object();
        if (caller->role == ROLE_SCHEDULER)
            json_object_del(doc, "envs"); /* the scheduler may not read envs (PRODUCT.md, Roles) */
        json_t *limits = json_object_get(doc, "replicas");
        min = (int)json_integer_value(json_object_get(limits, "min"));
        max = (int)json_integer_value(json_object_get(limits, "max"));
        spec = spec_text = jsonu_dump(doc);
        json_decref(doc);
        if (!spec)
            return NULL;
    }
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:s, s:o, s:s, s:{s:i, s:i, s:i, s:i}, s:o, s:i, s:o, s:o, s:o, s:I, "
        "s:I}",
        "id", a->id, "name", a->name, "owner", a->owner, "state", app_state_name(a->state),
        "reason", nullable_string(a->reason), "desired_state", app_desired_name(a->desired),
        "replicas", "desired", a->desired_replicas, "ready", a->ready_replicas, "min", min, "max",
        max, "address", nullable_string(a->address), "restarts", a->restarts, "last_exit",
        nullable_string(a->last_exit), "created_at", time_json(a->created_ms), "updated_at",
        time_json(a->updated_ms), "generation", (json_int_t)a->generation, "observed_generation",
        (json_int_t)a->observed_generation);
    char *head = o ? jsonu_dump(o) : NULL;
    json_decref(o);
    char *text = NULL;
    /* {"id":...,"observed_generation":N} + ,"spec":{...} */
    if (head && asprintf(&text, "%.*s,\"spec\":%s}", (int)strlen(head) - 1, head, spec) < 0)
        text = NULL;
    free(head);
    free(spec_text);
    return text;
}

static void respond_text(struct http_response *resp, int status, char *text)
{
    if (!text) {
        respond(resp, 500, NULL);
        return;
    }
    resp->status = status;
    resp->body = text;
    resp->body_len = strlen(text);
}

static void respond_app(struct http_response *resp, int status, struct store_app *app,
                        const struct auth_principal *caller)
{
    respond_text(resp, status, app_text(app, caller));
    store_app_free(app);
}

/* ---- requests ---- */

static bool is_json_type(const char *content_type)
{
    if (!content_type)
        return false;
    while (*content_type == ' ')
        content_type++;
    static const char json_type[] = "application/json";
    if (strncasecmp(content_type, json_type, sizeof(json_type) - 1) != 0)
        return false;
    char next = content_type[sizeof(json_type) - 1];
    return next == '\0' || next == ';' || next == ' ';
}

/* The request body as a JSON object, or NULL with resp filled. */
static json_t *body_object(const struct http_request *req, struct http_response *resp)
{
    struct emp_error err = {0};
    if (!is_json_type(req->content_type)) {
        emp_error_set(&err, -EINVAL, EMP_ERR_UNSUPPORTED_MEDIA, NULL,
                      "the body must be JSON sent with 'Content-Type: application/json'%s%.60s%s",
                      req->content_type ? " (not '" : "",
                      req->content_type ? req->content_type : "", req->content_type ? "')" : "");
        respond_error(resp, &err);
        return NULL;
    }
    json_t *doc = jsonu_parse(req->body, req->body_len, &err);
    if (doc && !json_is_object(doc)) {
        emp_error_set(&err, -EINVAL, EMP_ERR_INVALID_FIELD, NULL,
                      "the body must be a JSON object, not %s", jsonu_type_name(doc));
        json_decref(doc);
        doc = NULL;
    }
    if (!doc)
        respond_error(resp, &err);
    return doc;
}

/* Checks that obj has only known fields and that each required string field is a string. Fills
 * resp and returns false on the first problem set. */
static bool check_fields(json_t *obj, const char *const *known, struct http_response *resp)
{
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    jsonu_check_known(obj, known, "", &errs);
    for (const char *const *k = known; *k; k++) {
        json_t *v = json_object_get(obj, *k);
        if (!v)
            emp_errlist_add(&errs, EMP_ERR_MISSING_FIELD, *k, "%s is missing", *k);
        else if (!json_is_string(v))
            emp_errlist_add(&errs, EMP_ERR_INVALID_FIELD, *k, "%s must be a string, not %s", *k,
                            jsonu_type_name(v));
    }
    if (errs.count == 0)
        return true;
    respond_errors(resp, &errs.items[0], &errs);
    return false;
}

static int authenticate(struct api *api, const struct http_request *req, struct auth_principal *ret,
                        struct emp_error *err)
{
    const char *token;
    int r = auth_bearer(req->authorization, &token, err);
    if (r < 0)
        return r;
    char digest[AUTH_DIGEST_HEX];
    auth_token_digest(token, digest);
    memset(ret, 0, sizeof(*ret));
    if (auth_is_scheduler(api->auth, digest)) {
        ret->role = ROLE_SCHEDULER;
        return 0;
    }
    r = store_session_get(api->store, digest, ret->username, &ret->expires_ms, err);
    if (r == -ENOENT)
        return emp_error_set(err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL,
                             "the token is not valid or has expired: log in again with `emp "
                             "login`");
    if (r < 0)
        return r;
    ret->role = ROLE_DEVELOPER;
    return 0;
}

/* ---- handlers ---- */

static void h_healthz(struct api *api, const struct http_request *req, struct http_response *resp)
{
    respond(resp, 200, json_pack("{s:s}", "status", "ok"));
}

static void h_readyz(struct api *api, const struct http_request *req, struct http_response *resp)
{
    struct emp_error err = {0};
    if (store_ping(api->store, &err) < 0) {
        respond_error(resp, &err);
        return;
    }
    respond(resp, 200, json_pack("{s:s}", "status", "ready"));
}

static void h_version(struct api *api, const struct http_request *req, struct http_response *resp)
{
    respond(resp, 200,
            json_pack("{s:s, s:s, s:{s:s, s:b}}", "version", EMP_VERSION, "api", "v1", "cluster",
                      "backend", api->cluster_name, "available", api->cluster_available));
}

static void h_users_create(struct api *api, const struct http_request *req,
                           struct http_response *resp)
{
    static const char *const fields[] = {"username", "password", NULL};
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    if (check_fields(body, fields, resp)) {
        struct emp_error err = {0};
        const char *username = json_string_value(json_object_get(body, "username"));
        int64_t created;
        if (auth_create_user(api->auth, username,
                             json_string_value(json_object_get(body, "password")), &created,
                             &err) < 0)
            respond_error(resp, &err);
        else
            respond(
                resp, 201,
                json_pack("{s:s, s:o}", "username", username, "created_at", time_json(created)));
    }
    json_decref(body);
}

static void h_sessions_create(struct api *api, const struct http_request *req,
                              struct http_response *resp)
{
    static const char *const fields[] = {"username", "password", NULL};
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    if (check_fields(body, fields, resp)) {
        struct emp_error err = {0};
        const char *username = json_string_value(json_object_get(body, "username"));
        char token[AUTH_TOKEN_MAX];
        int64_t expires = 0, retry_after = 0;
        if (auth_login(api->auth, username, json_string_value(json_object_get(body, "password")),
                       token, &expires, &retry_after, &err) < 0) {
            respond_error(resp, &err);
            if (err.code == EMP_ERR_THROTTLED)
                resp->retry_after_s = (int)retry_after;
        } else {
            respond(resp, 201,
                    json_pack("{s:s, s:s, s:o}", "token", token, "username", username, "expires_at",
                              time_json(expires)));
        }
        memset(token, 0, sizeof(token));
    }
    json_decref(body);
}

static void h_session_get(struct api *api, const struct http_request *req,
                          struct http_response *resp, const struct auth_principal *caller)
{
    if (caller->role == ROLE_SCHEDULER)
        respond(resp, 200,
                json_pack("{s:s, s:n, s:n}", "role", "scheduler", "username", "expires_at"));
    else
        respond(resp, 200,
                json_pack("{s:s, s:s, s:o}", "role", "developer", "username", caller->username,
                          "expires_at", time_json(caller->expires_ms)));
}

static void h_session_delete(struct api *api, const struct http_request *req,
                             struct http_response *resp, const struct auth_principal *caller)
{
    struct emp_error err = {0};
    if (caller->role != ROLE_DEVELOPER) {
        emp_error_set(&err, -EPERM, EMP_ERR_FORBIDDEN, NULL,
                      "the scheduler credential is set by the operator and cannot log out");
        respond_error(resp, &err);
        return;
    }
    const char *token;
    char digest[AUTH_DIGEST_HEX];
    auth_bearer(req->authorization, &token, &err);
    auth_token_digest(token, digest);
    int r = store_session_delete(api->store, digest, &err);
    if (r < 0 && r != -ENOENT) {
        respond_error(resp, &err);
        return;
    }
    respond(resp, 200, json_pack("{s:b}", "logged_out", 1));
}

static void h_apps_list(struct api *api, const struct http_request *req, struct http_response *resp,
                        const struct auth_principal *caller)
{
    struct emp_error err = {0};
    const char *limit_text = http_query(req, "limit");
    const char *cursor = http_query(req, "cursor");
    long limit = APPS_PAGE_DEFAULT;
    if (limit_text) {
        char *end;
        limit = strtol(limit_text, &end, 10);
        if (!limit_text[0] || *end || limit < 1 || limit > APPS_PAGE_MAX) {
            emp_error_set(&err, -EINVAL, EMP_ERR_BAD_REQUEST, "limit",
                          "limit '%.20s' is not valid: use an integer from 1 to %d", limit_text,
                          APPS_PAGE_MAX);
            respond_error(resp, &err);
            return;
        }
    }
    if (cursor) {
        bool ok = strlen(cursor) <= CURSOR_MAX;
        for (const char *p = cursor; *p && ok; p++)
            ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-';
        if (!ok) {
            emp_error_set(&err, -EINVAL, EMP_ERR_BAD_REQUEST, "cursor",
                          "cursor is not valid: pass the next_cursor of the page before");
            respond_error(resp, &err);
            return;
        }
    }
    struct store_app **list = NULL;
    size_t count = 0;
    char *next = NULL;
    if (apps_list(api->apps, caller, cursor ? cursor : "", (size_t)limit, &list, &count, &next,
                  &err) < 0) {
        respond_error(resp, &err);
        return;
    }
    /* {"apps":[APP,...],"next_cursor":...}, each app as app_text writes it */
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    bool ok = out != NULL;
    if (ok)
        fputs("{\"apps\":[", out);
    for (size_t i = 0; i < count && ok; i++) {
        char *one = app_text(list[i], caller);
        ok = one && fprintf(out, "%s%s", i ? "," : "", one) > 0;
        free(one);
    }
    store_app_list_free(list, count);
    json_t *next_json = nullable_string(next);
    char *cursor_text = jsonu_dump(next_json);
    json_decref(next_json);
    free(next);
    ok = ok && cursor_text && fprintf(out, "],\"next_cursor\":%s}", cursor_text) > 0;
    free(cursor_text);
    if (out && fclose(out) != 0)
        ok = false;
    if (!ok) {
        free(text);
        text = NULL;
    }
    respond_text(resp, 200, text);
}

static void h_apps_create(struct api *api, const struct http_request *req,
                          struct http_response *resp, const struct auth_principal *caller)
{
    struct emp_error err = {0};
    if (!is_json_type(req->content_type)) {
        emp_error_set(&err, -EINVAL, EMP_ERR_UNSUPPORTED_MEDIA, NULL,
                      "the app spec must be sent with 'Content-Type: application/json'");
        respond_error(resp, &err);
        return;
    }
    struct emp_errlist *errs = malloc(sizeof(*errs));
    if (!errs) {
        respond(resp, 500, NULL);
        return;
    }
    emp_errlist_init(errs);
    struct store_app *app = NULL;
    if (apps_deploy(api->apps, caller, req->body, req->body_len, &app, errs) < 0) {
        struct emp_error *first = errs->count ? &errs->items[0] : &err;
        respond_errors(resp, first, errs);
    } else {
        respond_app(resp, 201, app, caller);
    }
    free(errs);
}

static void h_app_get(struct api *api, const struct http_request *req, struct http_response *resp,
                      const char *ref)
{
    struct emp_error err = {0};
    struct auth_principal caller = {0};
    struct store_app *app = NULL;
    const char *token;
    /* The hot path (GET by id with a developer token): session and app in one round trip. */
    if (names_is_uuid(ref) && auth_bearer(req->authorization, &token, &err) == 0) {
        char digest[AUTH_DIGEST_HEX];
        auth_token_digest(token, digest);
        if (!auth_is_scheduler(api->auth, digest)) {
            if (store_session_and_app(api->store, digest, ref, caller.username, &caller.expires_ms,
                                      &app, &err) < 0) {
                respond_error(resp, &err);
                return;
            }
            if (!caller.username[0]) {
                store_app_free(app);
                emp_error_set(&err, -EACCES, EMP_ERR_UNAUTHORIZED, NULL,
                              "the token is not valid or has expired: log in again with `emp "
                              "login`");
                respond_error(resp, &err);
                return;
            }
            caller.role = ROLE_DEVELOPER;
            if (!app || !apps_visible(&caller, app)) {
                store_app_free(app);
                emp_error_set(&err, -ENOENT, EMP_ERR_NOT_FOUND, NULL,
                              "no app '%s' among your apps: see `emp list`", ref);
                respond_error(resp, &err);
                return;
            }
            respond_app(resp, 200, app, &caller);
            return;
        }
    }
    emp_error_clear(&err);
    if (authenticate(api, req, &caller, &err) < 0 ||
        apps_get(api->apps, &caller, ref, &app, &err) < 0) {
        respond_error(resp, &err);
        return;
    }
    respond_app(resp, 200, app, &caller);
}

static void h_app_desired(struct api *api, struct http_response *resp,
                          const struct auth_principal *caller, const char *ref,
                          enum app_desired desired)
{
    struct emp_error err = {0};
    struct store_app *app;
    if (apps_set_desired(api->apps, caller, ref, desired, &app, &err) < 0)
        respond_error(resp, &err);
    else
        respond_app(resp, 202, app, caller);
}

static void h_app_remove(struct api *api, const struct http_request *req,
                         struct http_response *resp, const struct auth_principal *caller,
                         const char *ref)
{
    struct emp_error err = {0};
    const char *purge_text = http_query(req, "purge");
    bool purge = false;
    if (purge_text) {
        if (strcmp(purge_text, "true") == 0) {
            purge = true;
        } else if (strcmp(purge_text, "false") != 0) {
            emp_error_set(&err, -EINVAL, EMP_ERR_BAD_REQUEST, "purge",
                          "purge '%.20s' is not valid: use true (delete the app's data too) or "
                          "false",
                          purge_text);
            respond_error(resp, &err);
            return;
        }
    }
    struct store_app *app;
    if (apps_remove(api->apps, caller, ref, purge, &app, &err) < 0)
        respond_error(resp, &err);
    else
        respond_app(resp, 202, app, caller);
}

static void h_app_replicas(struct api *api, const struct http_request *req,
                           struct http_response *resp, const struct auth_principal *caller,
                           const char *ref)
{
    static const char *const known[] = {"replicas", NULL};
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    jsonu_check_known(body, known, "", &errs);
    json_t *replicas = json_object_get(body, "replicas");
    if (!replicas)
        emp_errlist_add(&errs, EMP_ERR_MISSING_FIELD, "replicas",
                        "replicas is missing: send {\"replicas\": N}");
    else if (!json_is_integer(replicas))
        emp_errlist_add(&errs, EMP_ERR_INVALID_FIELD, "replicas",
                        "replicas must be an integer, not %s", jsonu_type_name(replicas));
    if (errs.count) {
        respond_errors(resp, &errs.items[0], &errs);
    } else {
        struct emp_error err = {0};
        struct store_app *app;
        if (apps_scale(api->apps, caller, ref, (long long)json_integer_value(replicas), &app,
                       &err) < 0)
            respond_error(resp, &err);
        else
            respond_app(resp, 202, app, caller);
    }
    json_decref(body);
}

static void h_app_metric(struct api *api, const struct http_request *req,
                         struct http_response *resp, const struct auth_principal *caller,
                         const char *ref, const char *metric)
{
    static const char *const fields[] = {"values", NULL};
    json_t *body = body_object(req, resp);
    if (!body)
        return;
    if (check_fields(body, fields, resp)) {
        struct emp_error err = {0};
        struct store_app *app;
        if (apps_set_metric(api->apps, caller, ref, metric,
                            json_string_value(json_object_get(body, "values")), &app, &err) < 0)
            respond_error(resp, &err);
        else
            respond_app(resp, 200, app, caller);
    }
    json_decref(body);
}

static void respond_json_result(struct http_response *resp, int r, json_t *body,
                                const struct emp_error *err)
{
    if (r < 0)
        respond_error(resp, err);
    else
        respond(resp, 200, body);
}

static void h_app_tracing(struct api *api, struct http_response *resp,
                          const struct auth_principal *caller, const char *ref)
{
    struct emp_error err = {0};
    json_t *body = NULL;
    int r = traces_tracing(api->traces, caller, ref, &body, &err);
    respond_json_result(resp, r, body, &err);
}

static void h_app_metrics(struct api *api, const struct http_request *req,
                          struct http_response *resp, const struct auth_principal *caller,
                          const char *ref)
{
    struct emp_error err = {0};
    json_t *body = NULL;
    int r = traces_metrics(api->traces, caller, ref, http_query(req, "window"), &body, &err);
    respond_json_result(resp, r, body, &err);
}

static void h_graph(struct api *api, const struct http_request *req, struct http_response *resp,
                    const struct auth_principal *caller)
{
    struct emp_error err = {0};
    json_t *body = NULL;
    int r = traces_graph(api->traces, caller, http_query(req, "window"), &body, &err);
    respond_json_result(resp, r, body, &err);
}

static void h_tracing_status(struct api *api, struct http_response *resp)
{
    struct emp_error err = {0};
    json_t *body = NULL;
    int r = traces_status(api->traces, &body, &err);
    respond_json_result(resp, r, body, &err);
}

/* Zipkin's collector endpoint: open like Zipkin's (instrumented apps send no credentials); a span
 * can change only the numbers of the service it names. 202 as Zipkin answers, with what was taken
 * (Zipkin's libraries read no body). */
static void h_spans(struct api *api, const struct http_request *req, struct http_response *resp)
{
    struct emp_error err = {0};
    size_t spans = 0, bad = 0;
    if (traces_ingest(api->traces, req->content_type, req->content_encoding, req->body,
                      req->body_len, &spans, &bad, &err) < 0) {
        respond_error(resp, &err);
        return;
    }
    respond(resp, 202,
            json_pack("{s:I, s:I}", "spans", (json_int_t)spans, "bad_spans", (json_int_t)bad));
}

size_t api_body_limit(void *ctx, const char *method, const char *path)
{
    return strcmp(path, "/api/v2/spans") == 0 ? TRACES_BODY_MAX : HTTP_BODY_MAX;
}

/* ---- routing ---- */

static void method_not_allowed(struct http_response *resp, const char *allow, const char *method)
{
    struct emp_error err = {0};
    emp_error_set(&err, -EINVAL, EMP_ERR_METHOD_NOT_ALLOWED, NULL,
                  "method %.16s is not allowed here: use %s", method, allow);
    respond_error(resp, &err);
    resp->allow = allow;
}

static void no_route(struct http_response *resp, const char *path)
{
    struct emp_error err = {0};
    emp_error_set(&err, -ENOENT, EMP_ERR_NOT_FOUND, NULL,
                  "there is no endpoint %.100s: see api/openapi.yaml for the API", path);
    respond_error(resp, &err);
}

/* Whether method is one of allow's comma-separated methods. */
static bool method_in(const char *allow, const char *method)
{
    size_t len = strlen(method);
    for (const char *p = allow; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t tok = strcspn(p, ", ");
        if (tok == len && strncmp(p, method, len) == 0)
            return true;
        p += tok;
    }
    return false;
}

/* Splits "/v1/apps/x" into its segments. Only canonical paths are endpoints: an empty segment
 * ("//", a trailing '/') is not, so that every URL has one meaning. Returns the count or -1. */
static int split_path(const char *path, char segs[PATH_SEGMENTS_MAX][SEGMENT_MAX])
{
    if (path[0] != '/')
        return -1;
    int n = 0;
    const char *p = path + 1;
    for (;;) {
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0 || len >= SEGMENT_MAX || n >= PATH_SEGMENTS_MAX)
            return -1;
        memcpy(segs[n], p, len);
        segs[n][len] = '\0';
        n++;
        if (!end)
            return n;
        p = end + 1;
    }
}

#define IS(m) (strcmp(req->method, (m)) == 0)

void api_handle(void *ctx, const struct http_request *req, struct http_response *resp)
{
    struct api *api = ctx;
    char segs[PATH_SEGMENTS_MAX][SEGMENT_MAX];
    int n = split_path(req->path, segs);
    if (n < 0) {
        no_route(resp, req->path);
        return;
    }
    /* unauthenticated endpoints */
    if (n == 1 && strcmp(segs[0], "healthz") == 0) {
        IS("GET") ? h_healthz(api, req, resp) : method_not_allowed(resp, "GET", req->method);
        return;
    }
    if (n == 1 && strcmp(segs[0], "readyz") == 0) {
        IS("GET") ? h_readyz(api, req, resp) : method_not_allowed(resp, "GET", req->method);
        return;
    }
    if (n == 3 && strcmp(segs[0], "api") == 0 && strcmp(segs[1], "v2") == 0 &&
        strcmp(segs[2], "spans") == 0) {
        IS("POST") ? h_spans(api, req, resp) : method_not_allowed(resp, "POST", req->method);
        return;
    }
    if (n < 2 || strcmp(segs[0], "v1") != 0) {
        no_route(resp, req->path);
        return;
    }
    const char *area = segs[1];
    if (n == 2 && strcmp(area, "version") == 0) {
        IS("GET") ? h_version(api, req, resp) : method_not_allowed(resp, "GET", req->method);
        return;
    }
    if (n == 2 && strcmp(area, "users") == 0) {
        IS("POST") ? h_users_create(api, req, resp) : method_not_allowed(resp, "POST", req->method);
        return;
    }
    if (n == 2 && strcmp(area, "sessions") == 0) {
        IS("POST") ? h_sessions_create(api, req, resp)
                   : method_not_allowed(resp, "POST", req->method);
        return;
    }
    /* the app read by id has its own fast path with authentication inside */
    if (n == 3 && strcmp(area, "apps") == 0 && IS("GET")) {
        h_app_get(api, req, resp, segs[2]);
        return;
    }

    /* which endpoint, and is the method right, before authentication: 404/405 need no token */
    enum {
        R_SESSION,
        R_APPS,
        R_APP,
        R_STOP,
        R_START,
        R_REPLICAS,
        R_METRIC,
        R_TRACING,
        R_METRICS,
        R_GRAPH,
        R_TRACING_STATUS
    } route;
    const char *allow;
    if (n == 3 && strcmp(area, "sessions") == 0 && strcmp(segs[2], "current") == 0)
        route = R_SESSION, allow = "GET, DELETE";
    else if (n == 2 && strcmp(area, "apps") == 0)
        route = R_APPS, allow = "GET, POST";
    else if (n == 3 && strcmp(area, "apps") == 0)
        route = R_APP, allow = "GET, DELETE";
    else if (n == 4 && strcmp(area, "apps") == 0 && strcmp(segs[3], "stop") == 0)
        route = R_STOP, allow = "POST";
    else if (n == 4 && strcmp(area, "apps") == 0 && strcmp(segs[3], "start") == 0)
        route = R_START, allow = "POST";
    else if (n == 4 && strcmp(area, "apps") == 0 && strcmp(segs[3], "replicas") == 0)
        route = R_REPLICAS, allow = "PUT";
    else if (n == 4 && strcmp(area, "apps") == 0 && strcmp(segs[3], "tracing") == 0)
        route = R_TRACING, allow = "GET";
    else if (n == 4 && strcmp(area, "apps") == 0 && strcmp(segs[3], "metrics") == 0)
        route = R_METRICS, allow = "GET";
    else if (n == 2 && strcmp(area, "graph") == 0)
        route = R_GRAPH, allow = "GET";
    else if (n == 2 && strcmp(area, "tracing") == 0)
        route = R_TRACING_STATUS, allow = "GET";
    else if (n == 5 && strcmp(area, "apps") == 0 && strcmp(segs[3], "quality-metrics") == 0)
        route = R_METRIC, allow = "PUT";
    else {
        no_route(resp, req->path);
        return;
    }
    if (!method_in(allow, req->method)) {
        method_not_allowed(resp, allow, req->method);
        return;
    }
    struct emp_error err = {0};
    struct auth_principal caller;
    if (authenticate(api, req, &caller, &err) < 0) {
        respond_error(resp, &err);
        return;
    }
    switch (route) {
    case R_SESSION:
        IS("GET") ? h_session_get(api, req, resp, &caller)
                  : h_session_delete(api, req, resp, &caller);
        break;
    case R_APPS:
        IS("GET") ? h_apps_list(api, req, resp, &caller) : h_apps_create(api, req, resp, &caller);
        break;
    case R_APP:
        h_app_remove(api, req, resp, &caller, segs[2]);
        break;
    case R_STOP:
        h_app_desired(api, resp, &caller, segs[2], DESIRED_STOPPED);
        break;
    case R_START:
        h_app_desired(api, resp, &caller, segs[2], DESIRED_RUNNING);
        break;
    case R_REPLICAS:
        h_app_replicas(api, req, resp, &caller, segs[2]);
        break;
    case R_METRIC:
        h_app_metric(api, req, resp, &caller, segs[2], segs[4]);
        break;
    case R_TRACING:
        h_app_tracing(api, resp, &caller, segs[2]);
        break;
    case R_METRICS:
        h_app_metrics(api, req, resp, &caller, segs[2]);
        break;
    case R_GRAPH:
        h_graph(api, req, resp, &caller);
        break;
    case R_TRACING_STATUS:
        h_tracing_status(api, resp);
        break;
    }
}
