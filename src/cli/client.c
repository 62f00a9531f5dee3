/* SPDX-License-Identifier: Apache-2.0 */
/* One libcurl easy handle per client, reused across requests so that polling and paging keep the
 * connection. No redirects are followed (the token must not travel to another host), only http
 * and https are spoken, and every answer is bounded by CLIENT_BODY_MAX. */
#include "client.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "emp/textio.h"

struct client {
    CURL *curl;
    char *base_url;
    char *authorization; /* "Authorization: Bearer ..." or NULL */
};

struct body_buffer {
    char *data;
    size_t len;
    size_t capacity;
    bool too_large;
};

int client_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void client_global_cleanup(void)
{
    curl_global_cleanup();
}

static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p <= ' ' || *p == 0x7f)
            return true;
    return false;
}

int client_normalize_url(const char *url, const char *what, char *ret_url, struct failure *fail)
{
    char buf[CLIENT_URL_MAX + 1];
    size_t len = strlen(url);
    if (len == 0)
        return failure_usage(fail, "%s is empty: give emp-server's URL, e.g. http://127.0.0.1:7420",
                             what);
    if (len + sizeof("http://") > sizeof(buf))
        return failure_usage(fail, "%s is longer than %d characters", what, CLIENT_URL_MAX - 8);
    if (has_control(url))
        return failure_usage(fail,
                             "%s '%.200s' is not valid: a URL has no spaces or control "
                             "characters",
                             what, url);
    if (strstr(url, "://"))
        snprintf(buf, sizeof(buf), "%s", url);
    else
        snprintf(buf, sizeof(buf), "http://%s", url);
    if (strncasecmp(buf, "http://", 7) != 0 && strncasecmp(buf, "https://", 8) != 0)
        return failure_usage(fail,
                             "%s '%.200s' is not valid: use http://HOST:PORT or "
                             "https://HOST:PORT",
                             what, url);
    if (strpbrk(buf, "?#"))
        return failure_usage(fail,
                             "%s '%.200s' is not valid: give emp-server's base URL, without "
                             "a query or fragment",
                             what, url);
    len = strlen(buf);
    while (len > 0 && buf[len - 1] == '/')
        buf[--len] = '\0';
    CURLU *parsed = curl_url();
    if (!parsed)
        return failure_failed(fail, -ENOMEM, "out of memory");
    CURLUcode code = curl_url_set(parsed, CURLUPART_URL, buf, 0);
    curl_url_cleanup(parsed);
    if (code != CURLUE_OK)
        return failure_usage(fail, "%s '%.200s' is not a valid URL (%s): use http://HOST:PORT",
                             what, url, curl_url_strerror(code));
    memcpy(ret_url, buf, len + 1);
    return 0;
}

int client_append_segment(char *buf, size_t size, const char *s)
{
    return textio_url_encode(buf, size, s);
}

int client_new(const char *base_url, const char *token, struct client **ret_client,
               struct failure *fail)
{
    if (token && (strlen(token) == 0 || strlen(token) > CLIENT_TOKEN_MAX || has_control(token)))
        return failure_usage(fail,
                             "the token (EMP_TOKEN or the saved one) is not valid: it must "
                             "be 1 to %d printable characters; log in again with `emp login`",
                             CLIENT_TOKEN_MAX);
    struct client *c = calloc(1, sizeof(*c));
    if (!c)
        return failure_failed(fail, -ENOMEM, "out of memory");
    c->curl = curl_easy_init();
    c->base_url = strdup(base_url);
    if (token) {
        size_t len = strlen("Authorization: Bearer ") + strlen(token) + 1;
        c->authorization = malloc(len);
        if (c->authorization)
            snprintf(c->authorization, len, "Authorization: Bearer %s", token);
    }
    if (!c->curl || !c->base_url || (token && !c->authorization)) {
        client_free(c);
        return failure_failed(fail, -ENOMEM, "out of memory");
    }
    *ret_client = c;
    return 0;
}

void client_free(struct client *client)
{
    if (!client)
        return;
    if (client->curl)
        curl_easy_cleanup(client->curl);
    free(client->base_url);
    if (client->authorization) {
        explicit_bzero(client->authorization, strlen(client->authorization));
        free(client->authorization);
    }
    free(client);
}

const char *client_base_url(const struct client *client)
{
    return client->base_url;
}

/* libcurl's sockets, made close-on-exec like every other fd of emp. */
static curl_socket_t open_socket(void *userdata, curlsocktype purpose,
                                 struct curl_sockaddr *address)
{
    return socket(address->family, address->socktype | SOCK_CLOEXEC, address->protocol);
}

static size_t on_body(char *data, size_t size, size_t count, void *userdata)
{
    struct body_buffer *b = userdata;
    size_t chunk = size * count;
    if (chunk > CLIENT_BODY_MAX - b->len) {
        b->too_large = true;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (b->len + chunk + 1 > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (capacity < b->len + chunk + 1)
            capacity *= 2;
        char *grown = realloc(b->data, capacity);
        if (!grown)
            return 0;
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->len, data, chunk);
    b->len += chunk;
    b->data[b->len] = '\0';
    return chunk;
}

static int add_header(struct curl_slist **list, const char *header)
{
    struct curl_slist *grown = curl_slist_append(*list, header);
    if (!grown)
        return -ENOMEM;
    *list = grown;
    return 0;
}

void client_response_clear(struct client_response *response)
{
    if (!response)
        return;
    free(response->body);
    memset(response, 0, sizeof(*response));
}

int client_request(struct client *client, const char *method, const char *path, const char *body,
                   size_t body_len, struct client_response *ret_response, struct failure *fail)
{
    char url[CLIENT_URL_MAX + CLIENT_PATH_MAX];
    if (strlen(path) >= CLIENT_PATH_MAX)
        return failure_usage(fail, "the request path is longer than %d bytes", CLIENT_PATH_MAX);
    snprintf(url, sizeof(url), "%s%s", client->base_url, path);

    CURL *curl = client->curl;
    struct curl_slist *headers = NULL;
    struct body_buffer received = {0};
    char errbuf[CURL_ERROR_SIZE] = "";
    int r = 0;

    curl_easy_reset(curl);
    if (add_header(&headers, "Accept: application/json") < 0 ||
        (body && add_header(&headers, "Content-Type: application/json") < 0) ||
        add_header(&headers, "Expect:") < 0 || /* no 100-continue round trip */
        (client->authorization && add_header(&headers, client->authorization) < 0)) {
        r = failure_failed(fail, -ENOMEM, "out of memory");
        goto out;
    }

    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)CLIENT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)CLIENT_TIMEOUT_MS);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, CLIENT_USER_AGENT);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &received);
    if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(curl, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, method);
        if (body || strcmp(method, "DELETE") != 0) {
            /* POST and PUT always carry a body, an empty one when there is nothing to send */
            curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body ? body : "");
            curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
        }
    }

    CURLcode code = curl_easy_perform(curl);
    if (code != CURLE_OK) {
        if (received.too_large)
            r = failure_unreachable(fail,
                                    "emp-server at %s answered more than %d MiB: is --server (or "
                                    "EMP_SERVER) the address of emp-server?",
                                    client->base_url, CLIENT_BODY_MAX / (1024 * 1024));
        else
            r = failure_unreachable(fail,
                                    "cannot reach emp-server at %s: %s; is it running? Set "
                                    "--server or EMP_SERVER",
                                    client->base_url,
                                    errbuf[0] ? errbuf : curl_easy_strerror(code));
        goto out;
    }
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (!received.data) {
        received.data = strdup("");
        if (!received.data) {
            r = failure_failed(fail, -ENOMEM, "out of memory");
            goto out;
        }
    }
    ret_response->status = status;
    ret_response->body = received.data;
    ret_response->body_len = received.len;
    received.data = NULL;
out:
    /* the handle keeps pointers to these until the next request: drop them now */
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(headers);
    free(received.data);
    return r;
}
