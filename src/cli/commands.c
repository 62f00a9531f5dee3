/* SPDX-License-Identifier: Apache-2.0 */
/* One function per command of the CLI contract. Each resolves the server and the token, makes its
 * REST calls, and prints either the server's JSON as received (-o json) or words for a person.
 * The app spec is checked with the shared spec_parse(), the very code emp-server runs. */
#include "commands.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "completion.h"
#include "credentials.h"
#include "emp/jsonutil.h"
#include "emp/names.h"
#include "emp/spec.h"
#include "emp/timeutil.h"
#include "output.h"
#include "prompt.h"

#define KV_MAX 96

struct ctx {
    const struct args_invocation *inv;
    const struct cmd_env *env;
    struct failure *fail;
    bool json;
    char server[CLIENT_URL_MAX + 1];
    char cred_path[CRED_PATH_MAX];
    struct cred_store *creds; /* loaded on first use */
    const char *token;        /* EMP_TOKEN or the saved one; NULL when there is none */
    bool token_is_saved;
    struct client *client;
};

/* ---- setup: server, credentials, token ---- */

static int load_creds(struct ctx *c)
{
    if (c->creds)
        return 0;
    int r = cred_path(c->env->config_home, c->env->home, c->cred_path, c->fail);
    if (r < 0)
        return r;
    return cred_load(c->cred_path, &c->creds, c->fail);
}

static bool given(const char *s)
{
    return s && s[0];
}

/* --server, else $EMP_SERVER, else the credentials file's current server, else the default. */
static int resolve_server(struct ctx *c)
{
    if (c->inv->server)
        return client_normalize_url(c->inv->server, "--server", c->server, c->fail);
    if (given(c->env->server_env))
        return client_normalize_url(c->env->server_env, "EMP_SERVER", c->server, c->fail);
    int r = load_creds(c);
    if (r < 0)
        return r;
    const char *current = cred_current(c->creds);
    if (current) {
        r = client_normalize_url(current, "the current server of the credentials file", c->server,
                                 c->fail);
        if (r < 0)
            failure_prefix(c->fail, "%s: ", c->cred_path);
        return r;
    }
    snprintf(c->server, sizeof(c->server), "%s", CMD_DEFAULT_SERVER);
    return 0;
}

/* The token to send: $EMP_TOKEN, else the one saved for the server. None is not an error: the
 * server's 401 says best what to do. */
static int resolve_token(struct ctx *c)
{
    if (given(c->env->token_env)) {
        c->token = c->env->token_env;
        return 0;
    }
    int r = load_creds(c);
    if (r < 0)
        return r;
    struct cred_entry entry;
    if (cred_get(c->creds, c->server, &entry) == 0) {
        c->token = entry.token;
        c->token_is_saved = true;
    }
    return 0;
}

static int connect_to_server(struct ctx *c, bool with_token)
{
    int r = resolve_server(c);
    if (r < 0)
        return r;
    if (with_token && (r = resolve_token(c)) < 0)
        return r;
    return client_new(c->server, with_token ? c->token : NULL, &c->client, c->fail);
}

/* ---- calls ---- */

/* Sends a request with text as its body (JSON, may be NULL) and checks that a 2xx answer came with
 * a JSON object. On success *ret_doc is the parsed answer (json_decref) and *ret_response holds the
 * body as received (client_response_clear). */
static int call_text(struct ctx *c, const char *method, const char *path, const char *text,
                     size_t len, struct client_response *ret_response, json_t **ret_doc)
{
    struct client_response response = {0};
    int r = client_request(c->client, method, path, text, len, &response, c->fail);
    if (r < 0)
        return r;
    if (response.status >= 400) {
        r = failure_server(c->fail, c->server, response.status, response.body, response.body_len);
        client_response_clear(&response);
        return r;
    }
    if (response.status < 200 || response.status >= 300) {
        r = failure_unreachable(c->fail,
                                "emp-server at %s answered HTTP %ld, which emp does not expect: is "
                                "--server (or EMP_SERVER) the address of emp-server?",
                                c->server, response.status);
        client_response_clear(&response);
        return r;
    }
    struct emp_error err = {0};
    json_t *doc = jsonu_parse(response.body, response.body_len, &err);
    if (!doc || !json_is_object(doc)) {
        json_decref(doc);
        client_response_clear(&response);
        return failure_unreachable(c->fail,
                                   "emp-server at %s did not answer JSON (HTTP %ld): is --server "
                                   "(or EMP_SERVER) the address of emp-server?",
                                   c->server, response.status);
    }
    *ret_doc = doc;
    *ret_response = response;
    return 0;
}

/* call_text() with body (may be NULL) as compact JSON. */
static int call(struct ctx *c, const char *method, const char *path, const json_t *body,
                struct client_response *ret_response, json_t **ret_doc)
{
    char *text = NULL;
    if (body && !(text = jsonu_dump(body)))
        return failure_failed(c->fail, -ENOMEM, "out of memory");
    int r = call_text(c, method, path, text, text ? strlen(text) : 0, ret_response, ret_doc);
    if (text) {
        explicit_bzero(text, strlen(text)); /* it may hold a password */
        free(text);
    }
    return r;
}

/* "/v1/apps/ID-OR-NAME" followed by suffix, into buf (CLIENT_PATH_MAX bytes). */
static int app_path(struct ctx *c, const char *app, const char *suffix, char *buf)
{
    if (!app[0])
        return failure_usage(c->fail, "APP is empty: give an app's id or name (see `emp list`)");
    if (strlen(app) > CMD_APP_REF_MAX)
        return failure_usage(c->fail,
                             "APP '%.40s...' is longer than %d characters: give an app's id or "
                             "name (see `emp list`)",
                             app, CMD_APP_REF_MAX);
    snprintf(buf, CLIENT_PATH_MAX, "/v1/apps/");
    if (client_append_segment(buf, CLIENT_PATH_MAX, app) < 0 ||
        strlen(buf) + strlen(suffix) >= CLIENT_PATH_MAX)
        return failure_usage(c->fail, "APP is too long");
    strcat(buf, suffix);
    return 0;
}

static const char *get_string(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static const char *or_dash(const char *s)
{
    return s ? s : "-";
}

static long long get_int(const json_t *obj, const char *key)
{
    return (long long)json_integer_value(json_object_get(obj, key));
}

/* ---- human output helpers ---- */

/* "in 3 hours" or "5 minutes ago" for an RFC 3339 time, into buf; "" when it does not parse. */
static void relative_time(const char *when, char *buf, size_t size)
{
    int64_t ms;
    buf[0] = '\0';
    if (!when || time_parse_rfc3339(when, &ms) < 0)
        return;
    int64_t delta = (ms - time_now_ms()) / 1000;
    bool future = delta > 0;
    int64_t secs = future ? delta : -delta;
    static const struct {
        int64_t seconds;
        const char *unit;
    } units[] = {{86400, "day"}, {3600, "hour"}, {60, "minute"}, {1, "second"}};
    if (secs < 5) {
        snprintf(buf, size, "just now");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (secs < units[i].seconds)
            continue;
        long long n = (long long)(secs / units[i].seconds);
        snprintf(buf, size, "%s%lld %s%s%s", future ? "in " : "", n, units[i].unit,
                 n == 1 ? "" : "s", future ? "" : " ago");
        return;
    }
}

/* A key/value block whose values are formatted as they are added. */
struct kv_block {
    struct output_kv pairs[KV_MAX];
    char *owned[KV_MAX];
    size_t count;
};

static void kv_add(struct kv_block *b, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void kv_add(struct kv_block *b, const char *key, const char *fmt, ...)
{
    if (b->count >= KV_MAX)
        return;
    char *value = NULL;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&value, fmt, ap) < 0)
        value = NULL;
    va_end(ap);
    b->owned[b->count] = value;
    b->pairs[b->count].key = key;
    b->pairs[b->count].value = value;
    b->count++;
}

static void kv_add_time(struct kv_block *b, const char *key, const char *when)
{
    char relative[64];
    relative_time(when, relative, sizeof(relative));
    if (!when)
        kv_add(b, key, "-");
    else if (relative[0])
        kv_add(b, key, "%s (%s)", when, relative);
    else
        kv_add(b, key, "%s", when);
}

static void kv_print_free(struct kv_block *b, FILE *out)
{
    output_kv_print(out, b->pairs, b->count);
    for (size_t i = 0; i < b->count; i++)
        free(b->owned[i]);
    b->count = 0;
}

/* "app songs-ms (0b78...) " + what, on out. */
static void confirm(const struct ctx *c, const json_t *app, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void confirm(const struct ctx *c, const json_t *app, const char *fmt, ...)
{
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    FILE *out = c->env->out;
    fputs("app ", out);
    output_text(out, or_dash(get_string(app, "name")));
    fputs(" (", out);
    output_text(out, or_dash(get_string(app, "id")));
    fputs(") ", out);
    output_text(out, what);
    fputc('\n', out);
}

/* ---- accounts ---- */

struct login_input {
    char username[PROMPT_LINE_MAX + 1];
    char password[PROMPT_LINE_MAX + 1];
};

static int read_login_input(struct ctx *c, bool confirm_password, struct login_input *in)
{
    static const char hint[] = "--username NAME and --password-stdin";
    int r;
    if (c->inv->username) {
        if (strlen(c->inv->username) >= sizeof(in->username))
            return failure_usage(c->fail, "--username is longer than %d characters",
                                 PROMPT_LINE_MAX);
        snprintf(in->username, sizeof(in->username), "%s", c->inv->username);
    } else if ((r = prompt_ask("Username: ", false, hint, in->username, sizeof(in->username),
                               c->fail)) < 0) {
        return r;
    }
    if (!in->username[0])
        return failure_usage(c->fail, "the username is empty: give one with --username NAME");
    if (c->inv->password_stdin)
        return prompt_read_line_fd(c->env->in_fd, in->password, sizeof(in->password), c->fail);
    r = prompt_ask("Password: ", true, hint, in->password, sizeof(in->password), c->fail);
    if (r < 0 || !confirm_password)
        return r;
    char again[PROMPT_LINE_MAX + 1];
    r = prompt_ask("Repeat the password: ", true, hint, again, sizeof(again), c->fail);
    if (r == 0 && strcmp(again, in->password) != 0)
        r = failure_usage(c->fail, "the two passwords do not match: nothing was sent");
    explicit_bzero(again, sizeof(again));
    return r;
}

/* POSTs {"username", "password"} to path. */
static int post_credentials(struct ctx *c, const char *path, const struct login_input *in,
                            struct client_response *ret_response, json_t **ret_doc)
{
    json_t *body = json_pack("{s:s, s:s}", "username", in->username, "password", in->password);
    if (!body)
        return failure_usage(c->fail, "the username and password must be UTF-8 text");
    int r = call(c, "POST", path, body, ret_response, ret_doc);
    json_decref(body);
    return r;
}

static int cmd_create_account(struct ctx *c)
{
    struct login_input in;
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = connect_to_server(c, false);
    if (r < 0 || (r = read_login_input(c, true, &in)) < 0 ||
        (r = post_credentials(c, "/v1/users", &in, &response, &doc)) < 0)
        goto out;
    if (c->json) {
        output_json(c->env->out, response.body, response.body_len);
    } else {
        FILE *out = c->env->out;
        fputs("account ", out);
        output_text(out, get_string(doc, "username"));
        fprintf(out, " created on %s; log in with `emp login --username ", c->server);
        output_text(out, get_string(doc, "username"));
        fputs("`\n", out);
    }
out:
    explicit_bzero(&in, sizeof(in));
    json_decref(doc);
    client_response_clear(&response);
    return r;
}

static int cmd_login(struct ctx *c)
{
    struct login_input in;
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = connect_to_server(c, false);
    if (r < 0 || (r = read_login_input(c, false, &in)) < 0 ||
        (r = post_credentials(c, "/v1/sessions", &in, &response, &doc)) < 0)
        goto out;
    const char *token = get_string(doc, "token");
    const char *username = get_string(doc, "username");
    const char *expires = get_string(doc, "expires_at");
    if (!token || !username) {
        r = failure_unreachable(c->fail, "emp-server at %s answered a login without a token",
                                c->server);
        goto out;
    }
    if ((r = load_creds(c)) < 0)
        goto out;
    if (cred_set(c->creds, c->server, username, token, expires) < 0) {
        r = failure_failed(c->fail, -ENOMEM, "out of memory");
        goto out;
    }
    if ((r = cred_save(c->creds, c->cred_path, c->fail)) < 0) {
        failure_prefix(c->fail, "logged in, but the token could not be saved: ");
        goto out;
    }
    if (c->json) {
        output_json(c->env->out, response.body, response.body_len);
    } else {
        FILE *out = c->env->out;
        fputs("logged in as ", out);
        output_text(out, username);
        fputs(", token saved to ", out);
        output_text(out, c->cred_path);
        if (expires) {
            fputs(" (expires ", out);
            output_text(out, expires);
            fputc(')', out);
        }
        fputc('\n', out);
    }
out:
    explicit_bzero(&in, sizeof(in));
    json_decref(doc);
    client_response_clear(&response);
    return r;
}

static int forget_saved_token(struct ctx *c)
{
    if (!c->token_is_saved)
        return 0;
    c->token = NULL; /* it pointed into the store */
    if (cred_forget(c->creds, c->server) < 0)
        return 0;
    int r = cred_save(c->creds, c->cred_path, c->fail);
    if (r < 0)
        failure_prefix(c->fail, "logged out, but the token could not be forgotten: ");
    return r;
}

static int cmd_logout(struct ctx *c)
{
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = connect_to_server(c, true);
    if (r < 0)
        return r;
    if (!c->token) {
        fprintf(c->env->out, "not logged in to %s: nothing to do\n", c->server);
        return 0;
    }
    r = call(c, "DELETE", "/v1/sessions/current", NULL, &response, &doc);
    bool expired =
        r < 0 && c->fail->error.code == EMP_ERR_UNAUTHORIZED && c->fail->status == FAILURE_FAILED;
    if (r < 0 && !expired)
        goto out;
    if (expired) {
        /* the token is dead anyway: forgetting it is what the user asked for */
        if (c->json)
            failure_print(c->fail, true, c->env->err);
        failure_clear(c->fail);
    }
    if ((r = forget_saved_token(c)) < 0)
        goto out;
    if (c->json && !expired)
        output_json(c->env->out, response.body, response.body_len);
    else if (!c->json)
        fprintf(c->env->out, "logged out of %s%s\n", c->server,
                expired ? " (the token had already expired or been revoked)" : "");
out:
    json_decref(doc);
    client_response_clear(&response);
    return r;
}

static int cmd_whoami(struct ctx *c)
{
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = connect_to_server(c, true);
    if (r < 0 || (r = call(c, "GET", "/v1/sessions/current", NULL, &response, &doc)) < 0)
        goto out;
    if (c->json) {
        output_json(c->env->out, response.body, response.body_len);
        goto out;
    }
    struct kv_block b = {0};
    kv_add(&b, "username", "%s", or_dash(get_string(doc, "username")));
    kv_add(&b, "role", "%s", or_dash(get_string(doc, "role")));
    kv_add(&b, "server", "%s", c->server);
    if (get_string(doc, "expires_at"))
        kv_add_time(&b, "expires", get_string(doc, "expires_at"));
    else
        kv_add(&b, "expires", "never");
    kv_print_free(&b, c->env->out);
out:
    json_decref(doc);
    client_response_clear(&response);
    return r;
}

/* ---- deploy ---- */

/* Reads at most CMD_SPEC_FILE_MAX bytes of file ("-": stdin) into a malloc'd buffer. */
static int read_spec_file(struct ctx *c, const char *file, char **ret_text, size_t *ret_len)
{
    int fd = strcmp(file, "-") == 0 ? c->env->in_fd : open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return failure_usage(c->fail, "cannot read the app spec %s: %s", file, strerror(errno));
    char *text = malloc(CMD_SPEC_FILE_MAX + 2);
    size_t len = 0;
    int r = 0;
    if (!text) {
        r = failure_failed(c->fail, -ENOMEM, "out of memory");
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, text + len, CMD_SPEC_FILE_MAX + 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = failure_usage(c->fail, "cannot read the app spec %s: %s", file, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > CMD_SPEC_FILE_MAX) {
            r = failure_usage(
                c->fail, "the app spec %s is larger than 1 MiB, the most emp-server accepts", file);
            goto out;
        }
    }
    text[len] = '\0';
    *ret_text = text;
    *ret_len = len;
    text = NULL;
out:
    free(text);
    if (fd != c->env->in_fd)
        close(fd);
    return r;
}

/* The same checks emp-server makes, so that a bad spec is refused before anything is sent. */
static int validate_spec(struct ctx *c, const char *file, const char *text, size_t len)
{
    struct emp_errlist *errs = malloc(sizeof(*errs));
    if (!errs)
        return failure_failed(c->fail, -ENOMEM, "out of memory");
    emp_errlist_init(errs);
    struct emp_spec *spec = NULL;
    int r = spec_parse(text, len, &spec, errs);
    if (r == -EINVAL)
        r = failure_spec(c->fail, strcmp(file, "-") == 0 ? "stdin" : file, errs);
    else if (r < 0)
        r = failure_failed(c->fail, r, "cannot check the app spec %s: %s", file, strerror(-r));
    spec_free(spec);
    free(errs);
    return r;
}

/* The width of the terminal on fd, or 0 when unknown. */
static unsigned terminal_width(FILE *f)
{
    struct winsize ws;
    if (ioctl(fileno(f), TIOCGWINSZ, &ws) < 0)
        return 0;
    return ws.ws_col;
}

struct progress {
    char last[512];
    bool line_open; /* a progress line is on the terminal without its newline */
};

/* "songs-ms: deploying, 0/1 ready (waiting for ...)": rewritten in place on a terminal, one line
 * per change otherwise. */
static void show_progress(struct ctx *c, struct progress *p, const json_t *app)
{
    const json_t *replicas = json_object_get(app, "replicas");
    const char *state = get_string(app, "state");
    /* a failed app's reason comes in the failure message, once */
    const char *reason = state && strcmp(state, "failed") == 0 ? NULL : get_string(app, "reason");
    char line[512];
    snprintf(line, sizeof(line), "%s: %s, %lld/%lld ready%s%.300s%s",
             or_dash(get_string(app, "name")), or_dash(state), get_int(replicas, "ready"),
             get_int(replicas, "desired"), reason ? " (" : "", reason ? reason : "",
             reason ? ")" : "");
    if (strcmp(line, p->last) == 0)
        return;
    snprintf(p->last, sizeof(p->last), "%s", line);
    FILE *err = c->env->err;
    if (!c->env->err_is_terminal) {
        output_text(err, line);
        fputc('\n', err);
        fflush(err);
        return;
    }
    /* a line longer than the terminal would wrap, and \r only goes back to its last row */
    unsigned width = terminal_width(err);
    if (width > 1 && output_width(line) >= width) {
        size_t cut = width - 4;
        while (cut > 0 && ((unsigned char)line[cut] & 0xc0) == 0x80)
            cut--;
        snprintf(line + cut, sizeof(line) - cut, "...");
    }
    fputs("\r\033[K", err);
    output_text(err, line);
    fflush(err);
    p->line_open = true;
}

static void end_progress(struct ctx *c, struct progress *p)
{
    if (p->line_open)
        fputc('\n', c->env->err);
    p->line_open = false;
}

static void sleep_ms(int64_t ms)
{
    struct timespec pause = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    while (nanosleep(&pause, &pause) < 0 && errno == EINTR)
        ;
}

/* Polls the app until it runs, fails or the timeout passes. *response and *app hold the latest
 * answer on return, whatever the outcome. */
static int wait_for_app(struct ctx *c, struct client_response *response, json_t **app)
{
    char id[NAMES_UUID_LEN * 3 + 1];
    snprintf(id, sizeof(id), "%s", or_dash(get_string(*app, "id")));
    char path[CLIENT_PATH_MAX];
    int r = app_path(c, id, "", path);
    if (r < 0)
        return r;
    int64_t deadline = time_mono_ms() + c->inv->timeout_s * 1000;
    struct progress progress = {0};
    /* the first looks come soon (a local app runs within tens of ms), then every CMD_POLL_MS */
    int64_t pause_ms = CMD_POLL_FIRST_MS;
    for (;;) {
        show_progress(c, &progress, *app);
        const char *state = get_string(*app, "state");
        const char *reason = get_string(*app, "reason");
        if (state && strcmp(state, "running") == 0) {
            r = 0;
            break;
        }
        if (state && strcmp(state, "failed") == 0) {
            end_progress(c, &progress);
            return failure_failed(c->fail, -ECANCELED, "app %s (%s) failed: %s",
                                  or_dash(get_string(*app, "name")), id,
                                  reason ? reason : "the server gave no reason");
        }
        const char *desired = get_string(*app, "desired_state");
        if ((state && strcmp(state, "removing") == 0) ||
            (desired && strcmp(desired, "running") != 0)) {
            /* someone stopped or removed it meanwhile: it will not run */
            end_progress(c, &progress);
            return failure_failed(
                c->fail, -ECANCELED, "app %s (%s) will not run: it is %s, desired state %s",
                or_dash(get_string(*app, "name")), id, or_dash(state), or_dash(desired));
        }
        int64_t left = deadline - time_mono_ms();
        if (left <= 0) {
            end_progress(c, &progress);
            char timeout[32];
            int64_t t = c->inv->timeout_s;
            if (t % 3600 == 0)
                snprintf(timeout, sizeof(timeout), "%lldh", (long long)(t / 3600));
            else if (t % 60 == 0)
                snprintf(timeout, sizeof(timeout), "%lldm", (long long)(t / 60));
            else
                snprintf(timeout, sizeof(timeout), "%llds", (long long)t);
            return failure_failed(c->fail, -ETIMEDOUT,
                                  "timed out after %s waiting for app %s (%s) to run: it is %s "
                                  "(%lld/%lld ready)%s%s; see `emp info %s`",
                                  timeout, or_dash(get_string(*app, "name")), id, or_dash(state),
                                  get_int(json_object_get(*app, "replicas"), "ready"),
                                  get_int(json_object_get(*app, "replicas"), "desired"),
                                  reason ? ": " : "", reason ? reason : "", id);
        }
        sleep_ms(left < pause_ms ? left : pause_ms);
        pause_ms = pause_ms * 2 > CMD_POLL_MS ? CMD_POLL_MS : pause_ms * 2;
        struct client_response next_response = {0};
        json_t *next = NULL;
        r = call(c, "GET", path, NULL, &next_response, &next);
        if (r < 0 && c->fail->status == FAILURE_FAILED &&
            (c->fail->error.code == EMP_ERR_BUSY ||
             c->fail->error.code == EMP_ERR_STORE_UNAVAILABLE)) {
            failure_clear(c->fail); /* the server asks to retry: do, until the timeout */
            continue;
        }
        if (r < 0) {
            end_progress(c, &progress);
            return r;
        }
        client_response_clear(response);
        json_decref(*app);
        *response = next_response;
        *app = next;
    }
    end_progress(c, &progress);
    return r;
}

static int cmd_deploy(struct ctx *c)
{
    const char *file = c->inv->operands[0];
    char *text = NULL;
    size_t len = 0;
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = read_spec_file(c, file, &text, &len);
    if (r < 0 || (r = validate_spec(c, file, text, len)) < 0 ||
        (r = connect_to_server(c, true)) < 0)
        goto out;
    /* the file as the user wrote it: the server checks the very same text */
    if ((r = call_text(c, "POST", "/v1/apps", text, len, &response, &doc)) < 0)
        goto out;
    if (c->inv->wait)
        r = wait_for_app(c, &response, &doc);
    bool app_answered = r == 0 || r == -ECANCELED || r == -ETIMEDOUT;
    if (c->json && app_answered) {
        output_json(c->env->out, response.body, response.body_len);
    } else if (r == 0) {
        const char *address = get_string(doc, "address");
        if (address)
            confirm(c, doc, "is %s at %s", or_dash(get_string(doc, "state")), address);
        else
            confirm(c, doc, "is %s", or_dash(get_string(doc, "state")));
    }
out:
    free(text);
    json_decref(doc);
    client_response_clear(&response);
    return r;
}

/* ---- apps ---- */

static int add_app_row(struct output_table *table, const json_t *app)
{
    const json_t *replicas = json_object_get(app, "replicas");
    char ready[48];
    snprintf(ready, sizeof(ready), "%lld/%lld", get_int(replicas, "ready"),
             get_int(replicas, "desired"));
    const char *cells[] = {get_string(app, "name"), get_string(app, "id"), get_string(app, "state"),
                           ready, get_string(app, "address")};
    return output_table_add(table, cells);
}

static int cmd_list(struct ctx *c)
{
    static const char *const headers[] = {"NAME", "ID", "STATE", "READY", "ADDRESS"};
    struct output_table *table = NULL;
    json_t *all = NULL; /* -o json over several pages: every app in one document */
    char cursor[128] = "";
    int r = connect_to_server(c, true);
    if (r < 0)
        return r;
    if (!c->json && (r = output_table_new(headers, 5, &table)) < 0)
        return failure_failed(c->fail, r, "out of memory");
    for (int page = 0;; page++) {
        if (page == CMD_LIST_PAGES_MAX) {
            r = failure_failed(c->fail, -E2BIG,
                               "emp-server at %s answered more than %d pages of apps: stopped "
                               "listing",
                               c->server, CMD_LIST_PAGES_MAX);
            goto out;
        }
        char path[CLIENT_PATH_MAX];
        snprintf(path, sizeof(path), "/v1/apps?limit=%d%s", CMD_LIST_PAGE,
                 cursor[0] ? "&cursor=" : "");
        if (cursor[0] && client_append_segment(path, sizeof(path), cursor) < 0) {
            r = failure_failed(c->fail, -ENAMETOOLONG, "the cursor does not fit in a request");
            goto out;
        }
        struct client_response response = {0};
        json_t *doc = NULL;
        if ((r = call(c, "GET", path, NULL, &response, &doc)) < 0)
            goto out;
        const json_t *apps = json_object_get(doc, "apps");
        const char *next = get_string(doc, "next_cursor");
        if (c->json && page == 0 && !next) {
            /* one page: the server's body exactly as received */
            output_json(c->env->out, response.body, response.body_len);
            json_decref(doc);
            client_response_clear(&response);
            goto out;
        }
        if (c->json && !all && !(all = json_array()))
            r = -ENOMEM;
        size_t i;
        const json_t *app;
        json_array_foreach(apps, i, app)
        {
            if (r < 0)
                break;
            if (c->json)
                r = json_array_append(all, (json_t *)app) < 0 ? -ENOMEM : 0;
            else
                r = add_app_row(table, app);
        }
        bool more = next != NULL;
        if (more && strlen(next) >= sizeof(cursor))
            r = -ENAMETOOLONG;
        else if (more)
            snprintf(cursor, sizeof(cursor), "%s", next);
        json_decref(doc);
        client_response_clear(&response);
        if (r == -ENAMETOOLONG) {
            r = failure_unreachable(c->fail, "emp-server at %s answered a cursor that is too long",
                                    c->server);
            goto out;
        }
        if (r < 0) {
            r = failure_failed(c->fail, r, "out of memory while listing apps");
            goto out;
        }
        if (!more)
            break;
    }
    if (c->json) {
        json_t *merged = all ? json_pack("{s:O, s:n}", "apps", all, "next_cursor") : NULL;
        char *text = merged ? jsonu_dump(merged) : NULL;
        if (text)
            output_json(c->env->out, text, strlen(text));
        else
            r = failure_failed(c->fail, -ENOMEM, "out of memory");
        free(text);
        json_decref(merged);
    } else {
        output_table_print(table, c->env->out);
        if (output_table_rows(table) == 0)
            fprintf(c->env->err, "no apps on %s yet: deploy one with `emp deploy app.json`\n",
                    c->server);
    }
out:
    json_decref(all);
    output_table_free(table);
    return r;
}

/* argv as a shell would need it typed: python3 app.py 'my file'. */
static void join_command(const json_t *command, char *buf, size_t size)
{
    size_t used = 0;
    size_t i;
    const json_t *arg;
    buf[0] = '\0';
    json_array_foreach(command, i, arg)
    {
        const char *s = json_string_value(arg);
        if (!s)
            continue;
        bool plain =
            s[0] != '\0' && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                      "0123456789-_./=:,+@%") == strlen(s);
        if (used + 1 >= size)
            break;
        if (i > 0)
            buf[used++] = ' ';
        if (plain) {
            used += (size_t)snprintf(buf + used, size - used, "%s", s);
        } else {
            buf[used++] = '\'';
            for (const char *p = s; *p && used + 5 < size; p++) {
                if (*p == '\'')
                    used += (size_t)snprintf(buf + used, size - used, "'\\''");
                else
                    buf[used++] = *p;
            }
            if (used + 1 < size)
                buf[used++] = '\'';
        }
        if (used >= size) {
            used = size - 1;
            break;
        }
        buf[used] = '\0';
    }
    buf[used < size ? used : size - 1] = '\0';
}

static void print_app(struct ctx *c, const json_t *app)
{
    const json_t *spec = json_object_get(app, "spec");
    const json_t *replicas = json_object_get(app, "replicas");
    struct kv_block b = {0};
    const char *reason = get_string(app, "reason");
    kv_add(&b, "id", "%s", or_dash(get_string(app, "id")));
    kv_add(&b, "name", "%s", or_dash(get_string(app, "name")));
    kv_add(&b, "owner", "%s", or_dash(get_string(app, "owner")));
    kv_add(&b, "state", "%s", or_dash(get_string(app, "state")));
    if (reason)
        kv_add(&b, "reason", "%s", reason);
    kv_add(&b, "desired state", "%s", or_dash(get_string(app, "desired_state")));
    kv_add(&b, "replicas", "%lld desired, %lld ready (min %lld, max %lld)",
           get_int(replicas, "desired"), get_int(replicas, "ready"), get_int(replicas, "min"),
           get_int(replicas, "max"));
    kv_add(&b, "address", "%s", or_dash(get_string(app, "address")));
    long long restarts = get_int(app, "restarts");
    const char *last_exit = get_string(app, "last_exit");
    if (restarts > 0 || last_exit)
        kv_add(&b, "restarts", "%lld%s%s", restarts, last_exit ? ", last: " : "",
               last_exit ? last_exit : "");
    kv_add(&b, "image", "%s", or_dash(get_string(spec, "docker_image")));
    char command[1024];
    join_command(json_object_get(spec, "command"), command, sizeof(command));
    kv_add(&b, "command", "%s", command[0] ? command : "-");
    const json_t *stateless = json_object_get(spec, "stateless");
    kv_add(&b, "stateless", "%s",
           !stateless || json_is_true(stateless) ? "yes" : "no (each instance keeps its volume)");
    kv_add(&b, "port", "%lld", get_int(spec, "port"));
    const json_t *resources = json_object_get(spec, "resources");
    const char *cpu = get_string(resources, "cpu");
    const char *memory = get_string(resources, "memory");
    if (cpu || memory)
        kv_add(&b, "resources", "%s%s%s%s%s", cpu ? "cpu " : "", cpu ? cpu : "",
               cpu && memory ? ", " : "", memory ? "memory " : "", memory ? memory : "");
    else
        kv_add(&b, "resources", "-");
    const char *health = get_string(json_object_get(spec, "health_check"), "path");
    kv_add(&b, "health check", "%s", health ? health : "-");
    size_t i;
    const json_t *item;
    const json_t *envs = json_object_get(spec, "envs");
    if (json_array_size(envs) == 0)
        kv_add(&b, "envs", "-");
    json_array_foreach(envs, i, item)
    {
        const char *value = get_string(item, "value");
        kv_add(&b, i == 0 ? "envs" : NULL, "%s=%s", or_dash(get_string(item, "name")),
               value ? value : "");
    }
    const json_t *metrics = json_object_get(spec, "quality_metrics");
    if (json_array_size(metrics) == 0)
        kv_add(&b, "quality metrics", "-");
    json_array_foreach(metrics, i, item)
    {
        kv_add(&b, i == 0 ? "quality metrics" : NULL, "%s %s", or_dash(get_string(item, "metric")),
               or_dash(get_string(item, "values")));
    }
    kv_add_time(&b, "created", get_string(app, "created_at"));
    kv_add_time(&b, "updated", get_string(app, "updated_at"));
    kv_print_free(&b, c->env->out);
}

/* GET, POST, PUT or DELETE on one app (suffix after /v1/apps/{app}); prints the answer as JSON,
 * or hands it to the caller in *ret_app for words. */
static int app_call(struct ctx *c, const char *method, const char *suffix, const json_t *body,
                    json_t **ret_app)
{
    char path[CLIENT_PATH_MAX];
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = connect_to_server(c, true);
    if (r < 0 || (r = app_path(c, c->inv->operands[0], suffix, path)) < 0 ||
        (r = call(c, method, path, body, &response, &doc)) < 0)
        return r;
    if (c->json) {
        output_json(c->env->out, response.body, response.body_len);
        json_decref(doc);
        doc = NULL;
    }
    client_response_clear(&response);
    *ret_app = doc;
    return 0;
}

static int cmd_info(struct ctx *c)
{
    json_t *app = NULL;
    int r = app_call(c, "GET", "", NULL, &app);
    if (r == 0 && app)
        print_app(c, app);
    json_decref(app);
    return r;
}

static bool state_is(const json_t *app, const char *state)
{
    const char *s = get_string(app, "state");
    return s && strcmp(s, state) == 0;
}

static int cmd_stop(struct ctx *c)
{
    json_t *app = NULL;
    int r = app_call(c, "POST", "/stop", NULL, &app);
    if (r == 0 && app)
        confirm(c, app, "%s", state_is(app, "stopped") ? "is stopped" : "is stopping");
    json_decref(app);
    return r;
}

static int cmd_start(struct ctx *c)
{
    json_t *app = NULL;
    int r = app_call(c, "POST", "/start", NULL, &app);
    if (r == 0 && app)
        confirm(c, app, "%s", state_is(app, "running") ? "is running" : "is starting");
    json_decref(app);
    return r;
}

static int cmd_remove(struct ctx *c)
{
    json_t *app = NULL;
    int r = app_call(c, "DELETE", c->inv->purge ? "?purge=true" : "", NULL, &app);
    if (r == 0 && app)
        confirm(c, app, "%s",
                c->inv->purge ? "is being removed with its data" : "is being removed");
    json_decref(app);
    return r;
}

static int cmd_scale(struct ctx *c)
{
    const char *text = c->inv->operands[1];
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (!text[0] || *end || errno || n < 1 || n > SPEC_REPLICAS_MAX)
        return failure_usage(c->fail,
                             "replica count '%.40s' is not valid: use an integer from 1 to %d",
                             text, SPEC_REPLICAS_MAX);
    json_t *body = json_pack("{s:i}", "replicas", (int)n);
    if (!body)
        return failure_failed(c->fail, -ENOMEM, "out of memory");
    json_t *app = NULL;
    int r = app_call(c, "PUT", "/replicas", body, &app);
    if (r == 0 && app)
        confirm(c, app, "is scaling to %ld replica%s", n, n == 1 ? "" : "s");
    json_decref(app);
    json_decref(body);
    return r;
}

static int cmd_update_metrics(struct ctx *c)
{
    const char *metric = c->inv->operands[1];
    const char *values = c->inv->operands[2];
    /* METRIC and VALUES are the server's to judge: it names what is wrong and what it accepts */
    char suffix[CLIENT_PATH_MAX] = "/quality-metrics/";
    if (client_append_segment(suffix, sizeof(suffix), metric) < 0)
        return failure_usage(c->fail, "METRIC is too long");
    json_t *body = json_pack("{s:s}", "values", values);
    if (!body)
        return failure_usage(c->fail, "VALUES must be UTF-8 text");
    json_t *app = NULL;
    int r = app_call(c, "PUT", suffix, body, &app);
    if (r == 0 && app)
        confirm(c, app, "now has the target %s %s", metric, values);
    json_decref(app);
    json_decref(body);
    return r;
}

/* ---- tracing ---- */

/* "12.3 ms" for a number of milliseconds, "-" for null. */
static void fmt_ms(const json_t *v, char *buf, size_t size)
{
    if (!json_is_number(v)) {
        snprintf(buf, size, "-");
        return;
    }
    double ms = json_number_value(v);
    if (ms >= 1000)
        snprintf(buf, size, "%.2f s", ms / 1000);
    else if (ms >= 100)
        snprintf(buf, size, "%.0f ms", ms);
    else
        snprintf(buf, size, "%.3g ms", ms);
}

static double get_number(const json_t *obj, const char *key)
{
    return json_number_value(json_object_get(obj, key));
}

/* "p50 12 ms  p95 30 ms  p99 41 ms" of a latency object, into buf. */
static void fmt_percentiles(const json_t *lat, char *buf, size_t size)
{
    static const char *const keys[] = {"p50", "p90", "p95", "p99"};
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < 4 && len < size; i++) {
        const json_t *v = json_object_get(lat, keys[i]);
        if (!v)
            continue;
        char ms[32];
        fmt_ms(v, ms, sizeof(ms));
        len += (size_t)snprintf(buf + len, size - len, "%s%s %s", len ? "   " : "", keys[i], ms);
    }
}

/* A table of dependencies (an array of edges). */
static int print_edges(struct ctx *c, const json_t *edges, const char *title)
{
    FILE *out = c->env->out;
    fputs(title, out);
    if (!json_array_size(edges)) {
        fputs(" none\n", out);
        return 0;
    }
    fputc('\n', out);
    static const char *const headers[] = {"  SERVICE", "CALLS", "RATE", "ERRORS",
                                          "P50",       "P95",   "P99"};
    struct output_table *t;
    if (output_table_new(headers, 7, &t) < 0)
        return failure_failed(c->fail, -ENOMEM, "out of memory");
    size_t i;
    const json_t *e;
    json_array_foreach(edges, i, e)
    {
        char service[300], calls[32], rate[32], errors[32], p50[32], p95[32], p99[32];
        snprintf(service, sizeof(service), "  %s", or_dash(get_string(e, "service")));
        snprintf(calls, sizeof(calls), "%lld", get_int(e, "calls"));
        snprintf(rate, sizeof(rate), "%.3g/s", get_number(e, "rate_rps"));
        snprintf(errors, sizeof(errors), "%.2f%%", 100 * get_number(e, "error_rate"));
        const json_t *lat = json_object_get(e, "latency_ms");
        fmt_ms(json_object_get(lat, "p50"), p50, sizeof(p50));
        fmt_ms(json_object_get(lat, "p95"), p95, sizeof(p95));
        fmt_ms(json_object_get(lat, "p99"), p99, sizeof(p99));
        const char *cells[] = {service, calls, rate, errors, p50, p95, p99};
        output_table_add(t, cells);
    }
    output_table_print(t, out);
    output_table_free(t);
    return 0;
}

static void print_metrics(struct ctx *c, const json_t *m)
{
    struct kv_block b = {0};
    const json_t *replicas = json_object_get(m, "replicas");
    char lat[200], self[200];
    fmt_percentiles(json_object_get(m, "latency_ms"), lat, sizeof(lat));
    fmt_percentiles(json_object_get(m, "self_time_ms"), self, sizeof(self));
    kv_add(&b, "service", "%s", or_dash(get_string(m, "service")));
    kv_add(&b, "window", "%llds, %s to %s", get_int(m, "window_s"), or_dash(get_string(m, "from")),
           or_dash(get_string(m, "to")));
    kv_add(&b, "requests", "%lld (%.3g/s)", get_int(m, "requests"), get_number(m, "rate_rps"));
    const json_t *per = json_object_get(m, "rate_per_replica_rps");
    if (json_is_number(per))
        kv_add(&b, "per replica", "%.3g/s (%lld of %lld ready)", json_number_value(per),
               get_int(replicas, "ready"), get_int(replicas, "desired"));
    else
        kv_add(&b, "per replica", "- (%lld of %lld ready)", get_int(replicas, "ready"),
               get_int(replicas, "desired"));
    kv_add(&b, "errors", "%lld (%.2f%%)", get_int(m, "errors"), 100 * get_number(m, "error_rate"));
    kv_add(&b, "latency", "%s", lat[0] ? lat : "-");
    kv_add(&b, "own code", "%s", self[0] ? self : "-");
    kv_print_free(&b, c->env->out);
    const json_t *deps = json_object_get(m, "dependencies");
    print_edges(c, json_object_get(deps, "outgoing"), "calls out:");
    print_edges(c, json_object_get(deps, "incoming"), "called by:");
}

static int metrics_path(struct ctx *c, char *path)
{
    char suffix[128] = "/metrics";
    if (c->inv->window) {
        strcat(suffix, "?window=");
        if (client_append_segment(suffix, sizeof(suffix), c->inv->window) < 0)
            return failure_usage(c->fail, "--window is too long");
    }
    return app_path(c, c->inv->operands[0], suffix, path);
}

static int cmd_metrics(struct ctx *c)
{
    char path[CLIENT_PATH_MAX];
    int r = connect_to_server(c, true);
    if (r < 0 || (r = metrics_path(c, path)) < 0)
        return r;
    bool in_place = c->inv->watch && isatty(fileno(c->env->out));
    for (;;) {
        struct client_response response = {0};
        json_t *doc = NULL;
        r = call(c, "GET", path, NULL, &response, &doc);
        if (r < 0)
            return r;
        if (c->json) {
            output_json(c->env->out, response.body, response.body_len);
        } else {
            if (in_place)
                fputs("\033[H\033[2J", c->env->out); /* home, clear: the new numbers in place */
            else if (c->inv->watch)
                fputc('\n', c->env->out);
            print_metrics(c, doc);
        }
        fflush(c->env->out);
        json_decref(doc);
        client_response_clear(&response);
        if (!c->inv->watch)
            return 0;
        sleep_ms(ARGS_WATCH_EVERY_S * 1000);
    }
}

static int cmd_tracing(struct ctx *c)
{
    json_t *tracing = NULL;
    int r = app_call(c, "GET", "/tracing", NULL, &tracing);
    if (r == 0 && tracing) {
        const json_t *m = json_object_get(tracing, "summary");
        struct kv_block b = {0};
        char lat[200];
        fmt_percentiles(json_object_get(m, "latency_ms"), lat, sizeof(lat));
        kv_add(&b, "service", "%s", or_dash(get_string(tracing, "service")));
        kv_add(&b, "traces", "%s", or_dash(get_string(tracing, "link")));
        kv_add(&b, "last 5 minutes", "%lld requests (%.3g/s), %.2f%% errors",
               get_int(m, "requests"), get_number(m, "rate_rps"),
               100 * get_number(m, "error_rate"));
        kv_add(&b, NULL, "latency %s", lat[0] ? lat : "-");
        const json_t *deps = json_object_get(m, "dependencies");
        kv_add(&b, NULL, "calls %zu service%s, called by %zu",
               json_array_size(json_object_get(deps, "outgoing")),
               json_array_size(json_object_get(deps, "outgoing")) == 1 ? "" : "s",
               json_array_size(json_object_get(deps, "incoming")));
        kv_print_free(&b, c->env->out);
    }
    json_decref(tracing);
    return r;
}

/* A DOT identifier: quoted, with '"' and '\' escaped, a newline as DOT's line break "\n" (labels
 * have two lines), and other control characters left out. */
static void dot_quote(FILE *out, const char *s)
{
    fputc('"', out);
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++) {
        if (*p == '\n')
            fputs("\\n", out);
        if (*p == '"' || *p == '\\')
            fputc('\\', out);
        if (*p >= 0x20)
            fputc(*p, out);
    }
    fputc('"', out);
}

static void print_graph_dot(struct ctx *c, const json_t *g)
{
    FILE *out = c->env->out;
    fprintf(out, "digraph emp {\n  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];\n");
    size_t i;
    const json_t *n;
    json_array_foreach(json_object_get(g, "services"), i, n)
    {
        const char *service = get_string(n, "service");
        char label[400], p95[32];
        fmt_ms(json_object_get(json_object_get(n, "latency_ms"), "p95"), p95, sizeof(p95));
        if (json_is_true(json_object_get(n, "emp_app")) && json_object_get(n, "requests"))
            snprintf(label, sizeof(label), "%s\n%.3g req/s, p95 %s", or_dash(service),
                     get_number(n, "rate_rps"), p95);
        else
            snprintf(label, sizeof(label), "%s", or_dash(service));
        fputs("  ", out);
        dot_quote(out, service);
        fputs(" [label=", out);
        dot_quote(out, label);
        fputs(json_is_true(json_object_get(n, "emp_app")) ? "" : ", style=dashed", out);
        fputs("];\n", out);
    }
    const json_t *e;
    json_array_foreach(json_object_get(g, "calls"), i, e)
    {
        char label[200], p95[32];
        fmt_ms(json_object_get(json_object_get(e, "latency_ms"), "p95"), p95, sizeof(p95));
        snprintf(label, sizeof(label), "%lld calls, %.2f%% errors, p95 %s", get_int(e, "calls"),
                 100 * get_number(e, "error_rate"), p95);
        fputs("  ", out);
        dot_quote(out, get_string(e, "from"));
        fputs(" -> ", out);
        dot_quote(out, get_string(e, "to"));
        fputs(" [label=", out);
        dot_quote(out, label);
        fputs("];\n", out);
    }
    fputs("}\n", out);
}

static int print_graph_text(struct ctx *c, const json_t *g)
{
    FILE *out = c->env->out;
    fprintf(out, "window: %llds, %s to %s\n", get_int(g, "window_s"),
            or_dash(get_string(g, "from")), or_dash(get_string(g, "to")));
    static const char *const headers[] = {"FROM", "TO", "CALLS", "RATE", "ERRORS", "P95"};
    struct output_table *t;
    if (output_table_new(headers, 6, &t) < 0)
        return failure_failed(c->fail, -ENOMEM, "out of memory");
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(g, "calls"), i, e)
    {
        char calls[32], rate[32], errors[32], p95[32];
        snprintf(calls, sizeof(calls), "%lld", get_int(e, "calls"));
        snprintf(rate, sizeof(rate), "%.3g/s", get_number(e, "rate_rps"));
        snprintf(errors, sizeof(errors), "%.2f%%", 100 * get_number(e, "error_rate"));
        fmt_ms(json_object_get(json_object_get(e, "latency_ms"), "p95"), p95, sizeof(p95));
        const char *cells[] = {
            get_string(e, "from"), get_string(e, "to"), calls, rate, errors, p95};
        output_table_add(t, cells);
    }
    if (output_table_rows(t))
        output_table_print(t, out);
    else
        fputs("no calls between services in this window\n", out);
    output_table_free(t);
    if (json_is_true(json_object_get(g, "truncated")))
        fputs("(only the first apps are shown)\n", out);
    return 0;
}

static int cmd_graph(struct ctx *c)
{
    char path[CLIENT_PATH_MAX] = "/v1/graph";
    if (c->inv->window) {
        strcat(path, "?window=");
        if (client_append_segment(path, sizeof(path), c->inv->window) < 0)
            return failure_usage(c->fail, "--window is too long");
    }
    struct client_response response = {0};
    json_t *doc = NULL;
    int r = connect_to_server(c, true);
    if (r < 0 || (r = call(c, "GET", path, NULL, &response, &doc)) < 0)
        return r;
    if (c->json)
        output_json(c->env->out, response.body, response.body_len);
    else if (c->inv->format == ARGS_FORMAT_DOT)
        print_graph_dot(c, doc);
    else
        r = print_graph_text(c, doc);
    json_decref(doc);
    client_response_clear(&response);
    return r;
}

static int cmd_completion(struct ctx *c)
{
    const char *shell = c->inv->operands[0];
    if (completion_print(shell, c->env->out) < 0)
        return failure_usage(c->fail, "there is no completion script for '%.40s': use %s", shell,
                             "bash or zsh");
    return 0;
}

typedef int (*command_fn)(struct ctx *c);

static const command_fn commands[ARGS__COMMAND_COUNT] = {
    [ARGS_CREATE_ACCOUNT] = cmd_create_account,
    [ARGS_LOGIN] = cmd_login,
    [ARGS_LOGOUT] = cmd_logout,
    [ARGS_WHOAMI] = cmd_whoami,
    [ARGS_DEPLOY] = cmd_deploy,
    [ARGS_LIST] = cmd_list,
    [ARGS_INFO] = cmd_info,
    [ARGS_STOP] = cmd_stop,
    [ARGS_START] = cmd_start,
    [ARGS_REMOVE] = cmd_remove,
    [ARGS_SCALE] = cmd_scale,
    [ARGS_UPDATE_METRICS] = cmd_update_metrics,
    [ARGS_TRACING] = cmd_tracing,
    [ARGS_METRICS] = cmd_metrics,
    [ARGS_GRAPH] = cmd_graph,
    [ARGS_COMPLETION] = cmd_completion,
};

int cmd_run(const struct args_invocation *inv, const struct cmd_env *env, struct failure *fail)
{
    if (inv->command < 0 || inv->command >= ARGS__COMMAND_COUNT || !commands[inv->command])
        return failure_usage(fail, "no command given: run `emp --help` to see the commands");
    struct ctx c = {
        .inv = inv,
        .env = env,
        .fail = fail,
        .json = inv->format == ARGS_FORMAT_JSON,
    };
    int r = commands[inv->command](&c);
    client_free(c.client);
    cred_free(c.creds);
    return r;
}
