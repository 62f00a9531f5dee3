/* SPDX-License-Identifier: Apache-2.0 */
/* libcurl glue for the Kubernetes API: the only code in the backend that speaks HTTP. */
#include "kube_client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "emp/textio.h"
#include "emp/timeutil.h"

#define BODY_MAX   (64 * 1024 * 1024) /* a LIST page of 500 objects fits well */
#define TOKEN_MAX  8192
#define LINE_MAX_B (16 * 1024 * 1024) /* one watch event */

struct kube_client {
    struct kube_config *config;
    pthread_key_t handle_key; /* each thread's CURL handle */
};

struct buffer {
    char *data;
    size_t len, cap;
    bool too_big;
};

static void free_handle(void *p)
{
    if (p)
        curl_easy_cleanup(p);
}

static void global_init(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
}

int kube_client_new(struct kube_config *config, struct kube_client **ret_client,
                    struct emp_error *err)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, global_init);
    struct kube_client *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->config = config;
    if (pthread_key_create(&c->handle_key, free_handle) != 0) {
        free(c);
        return -ENOMEM;
    }
    *ret_client = c;
    return 0;
}

void kube_client_free(struct kube_client *client)
{
    if (!client)
        return;
    free_handle(pthread_getspecific(client->handle_key));
    pthread_setspecific(client->handle_key, NULL);
    pthread_key_delete(client->handle_key);
    free(client);
}

void kube_response_clear(struct kube_response *resp)
{
    json_decref(resp->json);
    resp->json = NULL;
    resp->status = 0;
}

void kube_query_escape(const char *s, char *buf, size_t size)
{
    buf[0] = '\0';
    textio_url_encode(buf, size, s);
}

static size_t collect(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct buffer *b = userdata;
    size_t n = size * nmemb;
    if (b->len + n > BODY_MAX) {
        b->too_big = true;
        return 0;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown)
            return 0;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, ptr, n);
    b->len += n;
    b->data[b->len] = '\0';
    return n;
}

/* The calling thread's handle, reset to the client's TLS settings. */
static CURL *handle(struct kube_client *c)
{
    CURL *h = pthread_getspecific(c->handle_key);
    if (!h) {
        h = curl_easy_init();
        if (!h)
            return NULL;
        pthread_setspecific(c->handle_key, h);
    } else {
        curl_easy_reset(h); /* keeps its connections */
    }
    struct kube_config *k = c->config;
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)KUBE_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(h, CURLOPT_USERAGENT, "emp-server/" EMP_VERSION);
    if (k->insecure) {
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    if (k->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, k->ca_file);
    if (k->ca_pem) {
        struct curl_blob blob = {.data = k->ca_pem, .len = k->ca_pem_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (k->cert_file)
        curl_easy_setopt(h, CURLOPT_SSLCERT, k->cert_file);
    if (k->cert_pem) {
        struct curl_blob blob = {
            .data = k->cert_pem, .len = k->cert_pem_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &blob);
    }
    if (k->key_file)
        curl_easy_setopt(h, CURLOPT_SSLKEY, k->key_file);
    if (k->key_pem) {
        struct curl_blob blob = {
            .data = k->key_pem, .len = k->key_pem_len, .flags = CURL_BLOB_COPY};
        curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &blob);
    }
    return h;
}

/* The headers of a call: the credential, the body's type, Accept. *ret is a curl list. */
static int headers(struct kube_client *c, const char *content_type, bool has_body,
                   struct curl_slist **ret, struct emp_error *err)
{
    char token[TOKEN_MAX];
    int r = kube_config_token(c->config, token, sizeof(token), err);
    if (r < 0)
        return r;
    struct curl_slist *list = curl_slist_append(NULL, "Accept: application/json");
    if (r == 1) {
        char header[TOKEN_MAX + 32];
        snprintf(header, sizeof(header), "Authorization: Bearer %s", token);
        list = curl_slist_append(list, header);
        memset(header, 0, sizeof(header));
    }
    memset(token, 0, sizeof(token));
    if (has_body) {
        char header[128];
        snprintf(header, sizeof(header), "Content-Type: %s",
                 content_type ? content_type : "application/json");
        list = curl_slist_append(list, header);
    }
    *ret = list;
    return 0;
}

static void sleep_ms(int64_t ms)
{
    struct timespec t = {.tv_sec = (time_t)(ms / 1000), .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static int64_t backoff_ms(int attempt)
{
    int64_t ms = 200LL << (attempt < 5 ? attempt : 5);
    unsigned jitter = 0;
    if (getrandom(&jitter, sizeof(jitter), GRND_NONBLOCK) != sizeof(jitter))
        jitter = 0;
    return ms + (int64_t)(jitter % (unsigned)(ms / 4 + 1));
}

/* What to do about a TLS failure, for the message. */
static const char *tls_hint(CURLcode code)
{
    switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
        return " (the server's certificate is not signed by a CA EMP trusts: give the cluster's "
               "CA with --kube-ca, or certificate-authority in the kubeconfig)";
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
        return " (check the TLS settings: CA, client certificate and key)";
    default:
        return "";
    }
}

int kube_request(struct kube_client *c, const char *method, const char *path, const json_t *body,
                 const char *content_type, struct kube_response *resp, struct emp_error *err)
{
    char *body_text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (body && !body_text)
        return -ENOMEM;
    char url[8192];
    snprintf(url, sizeof(url), "%s%s", c->config->server, path);
    int64_t deadline = time_mono_ms() + KUBE_TIMEOUT_MS;
    char why[CURL_ERROR_SIZE + 64] = "";
    int r = -EIO;
    bool refused_once = false;
    for (int attempt = 0; attempt < KUBE_ATTEMPTS; attempt++) {
        CURL *h = handle(c);
        struct curl_slist *list = NULL;
        if (!h) {
            r = -ENOMEM;
            break;
        }
        r = headers(c, content_type, body_text != NULL, &list, err);
        if (r < 0)
            break;
        struct buffer b = {0};
        char curl_err[CURL_ERROR_SIZE] = "";
        int64_t left = deadline - time_mono_ms();
        curl_easy_setopt(h, CURLOPT_URL, url);
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(left > 100 ? left : 100));
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
        if (body_text)
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, body_text);
        else if (strcmp(method, "GET") == 0)
            curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
        CURLcode code = curl_easy_perform(h);
        curl_slist_free_all(list);
        long status = 0;
        curl_off_t retry_after = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &retry_after);
        bool transient = code != CURLE_OK || status == 429 || status >= 500;
        if (code == CURLE_OK && status == 401 && c->config->exec_argv && !refused_once) {
            /* the plugin's token may have been revoked early: get a new one, once */
            kube_config_token_refused(c->config);
            refused_once = true;
            transient = true;
        }
        if (!transient || attempt + 1 == KUBE_ATTEMPTS ||
            time_mono_ms() + backoff_ms(attempt) >= deadline) {
            if (code != CURLE_OK) {
                snprintf(why, sizeof(why), "%s", curl_err[0] ? curl_err : curl_easy_strerror(code));
                free(b.data);
                r = emp_error_set(err, -EIO, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                                  "the Kubernetes API at %s cannot be reached: %s%s",
                                  c->config->server, why, tls_hint(code));
                break;
            }
            resp->status = status;
            resp->json = b.data ? json_loadb(b.data, b.len, 0, NULL) : NULL;
            free(b.data);
            r = 0;
            break;
        }
        free(b.data);
        int64_t pause = backoff_ms(attempt);
        if (retry_after > 0)
            pause = retry_after > 10 ? 10000 : (int64_t)retry_after * 1000;
        sleep_ms(pause);
    }
    free(body_text);
    return r;
}

int kube_error(struct kube_client *c, const char *what, const struct kube_response *resp,
               struct emp_error *err)
{
    const char *message = json_string_value(json_object_get(resp->json, "message"));
    const char *reason = json_string_value(json_object_get(resp->json, "reason"));
    if (!message)
        message = reason ? reason : "no message";
    switch (resp->status) {
    case 401:
        return emp_error_set(err, -EACCES, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                             "%s: the Kubernetes API refused %s (401 Unauthorized): renew or fix "
                             "that credential",
                             what, c->config->credential);
    case 403:
        return emp_error_set(err, -EPERM, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                             "%s: forbidden for %s (403: %s): give it the RBAC rules EMP needs "
                             "(deploy/k8s)",
                             what, c->config->credential, message);
    case 404:
        return emp_error_set(err, -ENOENT, EMP_ERR_NOT_FOUND, NULL, "%s: %s", what, message);
    case 409:
        return emp_error_set(err, -EEXIST, EMP_ERR_CONFLICT, NULL, "%s: %s", what, message);
    case 422:
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, NULL,
                             "%s: the Kubernetes API found the object invalid: %s", what, message);
    default:
        return emp_error_set(err, -EIO, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                             "%s: the Kubernetes API answered %ld: %s", what, resp->status,
                             message);
    }
}

/* ---- watch ---- */

struct stream {
    struct buffer line;
    int (*on_event)(void *ctx, json_t *event);
    void *ctx;
    bool stopped_by_callback;
    atomic_bool *stop;
    long status;
    CURL *h;
    struct buffer error_body; /* a refused watch's Status */
};

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct stream *s = userdata;
    size_t n = size * nmemb;
    if (!s->status)
        curl_easy_getinfo(s->h, CURLINFO_RESPONSE_CODE, &s->status);
    if (s->status != 200)
        return collect(ptr, size, nmemb, &s->error_body);
    /* one event per line; a line may arrive in pieces */
    size_t start = 0;
    while (start < n) {
        const char *nl = memchr(ptr + start, '\n', n - start);
        size_t piece = nl ? (size_t)(nl - (ptr + start)) : n - start;
        if (s->line.len + piece >= LINE_MAX_B ||
            (piece && collect(ptr + start, 1, piece, &s->line) != piece))
            return 0; /* an event larger than any real object: drop the stream */
        start += piece + (nl ? 1 : 0);
        if (!nl || s->line.len == 0)
            continue;
        json_t *event = json_loadb(s->line.data, s->line.len, 0, NULL);
        s->line.len = 0;
        if (!event)
            continue;
        int stop = s->on_event(s->ctx, event);
        json_decref(event);
        if (stop) {
            s->stopped_by_callback = true;
            return 0;
        }
    }
    return n;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    struct stream *s = userdata;
    return atomic_load(s->stop) ? 1 : 0;
}

int kube_watch(struct kube_client *c, const char *path, int (*on_event)(void *ctx, json_t *event),
               void *ctx, atomic_bool *stop, struct emp_error *err)
{
    CURL *h = handle(c);
    if (!h)
        return -ENOMEM;
    struct curl_slist *list = NULL;
    int r = headers(c, NULL, false, &list, err);
    if (r < 0)
        return r;
    char url[8192];
    snprintf(url, sizeof(url), "%s%s", c->config->server, path);
    struct stream s = {.on_event = on_event, .ctx = ctx, .stop = stop, .h = h};
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &s);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    /* no total timeout: the server ends a watch itself (timeoutSeconds); a silent dead peer is
     * noticed by the lack of bytes, bookmarks included */
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 120L);
    CURLcode code = curl_easy_perform(h);
    curl_slist_free_all(list);
    if (!s.status)
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &s.status);
    free(s.line.data);
    free(s.error_body.data);
    if (s.stopped_by_callback || atomic_load(stop))
        return 0;
    if (code != CURLE_OK && s.status != 200 && s.status)
        return (int)s.status;
    if (code != CURLE_OK)
        return emp_error_set(err, -EIO, EMP_ERR_CLUSTER_UNAVAILABLE, NULL, "watching %s: %s", path,
                             curl_err[0] ? curl_err : curl_easy_strerror(code));
    return s.status == 200 ? 0 : (int)s.status;
}
