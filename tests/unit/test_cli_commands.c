/* SPDX-License-Identifier: Apache-2.0 */
/* The commands as a script or a person sees them: -o json passes the server's bytes through, errors
 * get the contract's exit status (1 the server said no, 2 usage and nothing sent, 3 unreachable or
 * not JSON), deploy --wait reports failure and timeout, list follows every page, login keeps the
 * token private. The peer is a scripted HTTP server in a thread: it can send bodies that emp-server
 * never would (odd spacing, HTML, a stuck deployment), which is what these tests need. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "args.h"
#include "client.h"
#include "commands.h"
#include "failure.h"

/* ---- a scripted HTTP peer ---- */

#define ROUTES_MAX   8
#define REQUESTS_MAX 64
#define REQUEST_MAX  16384

struct route {
    const char *start; /* the request line starts with this: "GET /v1/apps/x " */
    int status;
    const char *body;
};

struct peer {
    int listen_fd;
    int port;
    pthread_t thread;
    struct route routes[ROUTES_MAX];
    pthread_mutex_t lock;
    char *requests[REQUESTS_MAX]; /* each request as received: head and body */
    int request_count;
};

static ssize_t read_request(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n <= 0)
            return -1;
        len += (size_t)n;
        buf[len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (!end)
            continue;
        size_t want = 0;
        for (char *p = buf; p < end; p = strstr(p, "\r\n") + 2)
            if (strncasecmp(p, "Content-Length:", 15) == 0)
                want = strtoul(p + 15, NULL, 10);
        if (len >= (size_t)(end + 4 - buf) + want || len >= size - 1)
            return (ssize_t)len;
    }
}

static void *serve(void *arg)
{
    struct peer *peer = arg;
    for (;;) {
        int fd = accept4(peer->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return NULL;
        char *request = calloc(1, REQUEST_MAX);
        if (read_request(fd, request, REQUEST_MAX) < 0) {
            free(request);
            close(fd);
            continue;
        }
        const struct route *answer = NULL;
        pthread_mutex_lock(&peer->lock);
        for (int i = 0; i < ROUTES_MAX && peer->routes[i].start && !answer; i++)
            if (strncmp(request, peer->routes[i].start, strlen(peer->routes[i].start)) == 0)
                answer = &peer->routes[i];
        if (peer->request_count < REQUESTS_MAX)
            peer->requests[peer->request_count++] = request;
        else
            free(request);
        pthread_mutex_unlock(&peer->lock);
        static const struct route missing = {"", 404,
                                             "{\"error\":{\"code\":\"not_found\",\"message\":"
                                             "\"no route in the test\"}}"};
        if (!answer)
            answer = &missing;
        char head[256];
        int head_len = snprintf(head, sizeof(head),
                                "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                                "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                                answer->status, strlen(answer->body));
        ssize_t ignored = write(fd, head, (size_t)head_len);
        ignored = write(fd, answer->body, strlen(answer->body));
        (void)ignored;
        close(fd);
    }
}

static void peer_start(struct peer *peer, const struct route *routes, size_t count)
{
    memset(peer, 0, sizeof(*peer));
    pthread_mutex_init(&peer->lock, NULL);
    if (count)
        memcpy(peer->routes, routes, count * sizeof(*routes));
    peer->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(peer->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(peer->listen_fd, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(peer->listen_fd, (struct sockaddr *)&addr, &len);
    peer->port = ntohs(addr.sin_port);
    pthread_create(&peer->thread, NULL, serve, peer);
}

static void peer_stop(struct peer *peer)
{
    shutdown(peer->listen_fd, SHUT_RDWR);
    pthread_join(peer->thread, NULL);
    close(peer->listen_fd);
    for (int i = 0; i < peer->request_count; i++)
        free(peer->requests[i]);
    pthread_mutex_destroy(&peer->lock);
}

static int peer_requests(struct peer *peer)
{
    pthread_mutex_lock(&peer->lock);
    int count = peer->request_count;
    pthread_mutex_unlock(&peer->lock);
    return count;
}

/* ---- running a command ---- */

struct run {
    int status; /* the exit status */
    char *out, *err;
    size_t out_len, err_len;
};

struct fixture {
    char dir[128];
    char server[64];
    const char *token;
    int in_fd;
};

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/emp-test-cmd-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    fx->token = "emp_test_token";
    fx->in_fd = -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    nftw(fx->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* Runs `emp WORDS...` (NULL-terminated) the way main does, against fx->server. */
static struct run run_emp(struct fixture *fx, ...)
{
    char *argv[ARGS_COUNT_MAX + 2] = {"emp"};
    int argc = 1;
    va_list ap;
    va_start(ap, fx);
    for (char *word; (word = va_arg(ap, char *));)
        argv[argc++] = word;
    va_end(ap);
    struct run run = {0};
    FILE *out = open_memstream(&run.out, &run.out_len);
    FILE *err = open_memstream(&run.err, &run.err_len);
    struct cmd_env env = {
        .out = out,
        .err = err,
        .in_fd = fx->in_fd,
        .server_env = fx->server,
        .token_env = fx->token,
        .config_home = fx->dir,
        .home = "/nonexistent",
    };
    struct failure fail;
    failure_init(&fail);
    struct args_invocation inv = {0};
    if (args_parse(argc, argv, &inv, &fail) < 0 || cmd_run(&inv, &env, &fail) < 0) {
        failure_print(&fail, inv.format == ARGS_FORMAT_JSON, err);
        run.status = failure_exit_status(&fail);
    }
    failure_clear(&fail);
    fclose(out);
    fclose(err);
    return run;
}

static void run_free(struct run *run)
{
    free(run->out);
    free(run->err);
}

static void use_peer(struct fixture *fx, const struct peer *peer)
{
    snprintf(fx->server, sizeof(fx->server), "http://127.0.0.1:%d", peer->port);
}

static char *write_spec(struct fixture *fx, const char *name, const char *text)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", fx->dir, name);
    FILE *f = fopen(path, "we");
    fputs(text, f);
    fclose(f);
    return path;
}

#define APP_JSON(state, ready, reason)                                                             \
    "{\"id\":\"0b78d6a2-1111-4222-8333-944455556666\",\"name\":\"songs-ms\",\"owner\":\"alice\","  \
    "\"state\":\"" state "\",\"reason\":" reason ",\"desired_state\":\"running\",\"replicas\":{"   \
    "\"desired\":1,\"ready\":" ready ",\"min\":1,\"max\":10},\"address\":null,\"spec\":{\"name\":" \
    "\"songs-ms\",\"port\":5000},\"created_at\":\"2026-01-01T00:00:00.000Z\",\"updated_at\":"      \
    "\"2026-01-01T00:00:00.000Z\",\"generation\":1,\"observed_generation\":1}"

#define GOOD_SPEC                                                                                  \
    "{\"name\":\"songs-ms\",\"docker_image\":\"fcribeiro/songs_ms:1.0\",\"port\":5000}"

/* ---- tests ---- */

static void test_json_output_is_the_servers_body(void **state)
{
    struct fixture *fx = *state;
    /* spacing and key order jansson would never write: a re-encoded body would differ */
    static const char body[] = "{ \"name\" : \"songs ms\",  \"id\":\"x\" ,\"state\":\"running\"}";
    const struct route routes[] = {{"GET /v1/apps/songs%20ms ", 200, body}};
    struct peer peer;
    peer_start(&peer, routes, 1);
    use_peer(fx, &peer);

    struct run run = run_emp(fx, "info", "songs ms", "-o", "json", NULL);
    assert_int_equal(run.status, 0);
    assert_int_equal(run.out_len, strlen(body) + 1);
    assert_memory_equal(run.out, body, strlen(body));
    assert_string_equal(run.out + strlen(body), "\n");
    assert_int_equal(run.err_len, 0);
    run_free(&run);

    /* what was sent: the app percent-encoded in the path, our User-Agent, the EMP_TOKEN */
    assert_int_equal(peer_requests(&peer), 1);
    const char *request = peer.requests[0];
    assert_non_null(strstr(request, "GET /v1/apps/songs%20ms HTTP/1.1\r\n"));
    assert_non_null(strstr(request, "\r\nUser-Agent: emp/" EMP_VERSION "\r\n"));
    assert_non_null(strstr(request, "\r\nAuthorization: Bearer emp_test_token\r\n"));
    peer_stop(&peer);
}

static void test_server_errors_exit_1_with_every_problem(void **state)
{
    struct fixture *fx = *state;
    static const char body[] =
        "{\"error\":{\"code\":\"out_of_range\",\"message\":\"replicas 30 is outside the range\","
        "\"field\":\"replicas\",\"details\":[{\"code\":\"out_of_range\",\"message\":\"replicas 30 "
        "is outside the range\",\"field\":\"replicas\"},{\"code\":\"invalid_field\",\"message\":"
        "\"another problem\",\"field\":\"x.y\"}]}}";
    const struct route routes[] = {{"PUT /v1/apps/songs-ms/replicas ", 422, body}};
    struct peer peer;
    peer_start(&peer, routes, 1);
    use_peer(fx, &peer);

    struct run run = run_emp(fx, "scale", "songs-ms", "30", NULL);
    assert_int_equal(run.status, 1);
    assert_int_equal(run.out_len, 0);
    assert_string_equal(run.err, "emp: replicas 30 is outside the range\n"
                                 "  - replicas: replicas 30 is outside the range\n"
                                 "  - x.y: another problem\n");
    run_free(&run);

    /* -o json: the error body as received, on stderr */
    run = run_emp(fx, "scale", "songs-ms", "30", "-o", "json", NULL);
    assert_int_equal(run.status, 1);
    assert_int_equal(run.out_len, 0);
    assert_int_equal(run.err_len, strlen(body) + 1);
    assert_memory_equal(run.err, body, strlen(body));
    run_free(&run);

    /* the request carried the count as JSON */
    assert_non_null(strstr(peer.requests[0], "\r\n\r\n{\"replicas\":30}"));
    assert_non_null(strstr(peer.requests[0], "Content-Type: application/json"));
    peer_stop(&peer);
}

static void test_answers_that_are_not_json_exit_3(void **state)
{
    struct fixture *fx = *state;
    const struct route routes[] = {
        {"GET /v1/apps?", 200, "<html>not emp</html>"},
        {"GET /v1/sessions/current ", 502, "<html>bad gateway</html>"},
    };
    struct peer peer;
    peer_start(&peer, routes, 2);
    use_peer(fx, &peer);
    struct run run = run_emp(fx, "list", NULL);
    assert_int_equal(run.status, 3);
    assert_non_null(strstr(run.err, "did not answer JSON"));
    run_free(&run);
    run = run_emp(fx, "whoami", NULL);
    assert_int_equal(run.status, 3);
    assert_non_null(strstr(run.err, "HTTP 502"));
    run_free(&run);
    peer_stop(&peer);
}

static void test_unreachable_server_exits_3(void **state)
{
    struct fixture *fx = *state;
    /* a port where nothing listens: bind one, then let it go */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    snprintf(fx->server, sizeof(fx->server), "http://127.0.0.1:%d", ntohs(addr.sin_port));

    struct run run = run_emp(fx, "info", "songs-ms", NULL);
    assert_int_equal(run.status, 3);
    char expected[128];
    snprintf(expected, sizeof(expected), "emp: cannot reach emp-server at %s: ", fx->server);
    assert_non_null(strstr(run.err, expected));
    assert_non_null(strstr(run.err, "is it running? Set --server or EMP_SERVER"));
    run_free(&run);
}

static void test_invalid_spec_exits_2_and_sends_nothing(void **state)
{
    struct fixture *fx = *state;
    const struct route routes[] = {{"POST /v1/apps ", 201, APP_JSON("deploying", "0", "null")}};
    struct peer peer;
    peer_start(&peer, routes, 1);
    use_peer(fx, &peer);

    const char *bad = write_spec(fx, "bad.json",
                                 "{\"name\":\"songs_ms\",\"port\":0,\"docker_image\":\"a\","
                                 "\"envs\":[{\"name\":\"PORT\",\"value\":\"1\"}]}");
    struct run run = run_emp(fx, "deploy", bad, NULL);
    assert_int_equal(run.status, 2);
    assert_non_null(strstr(run.err, "'songs_ms'"));
    assert_non_null(strstr(run.err, "  - port: "));
    assert_non_null(strstr(run.err, "  - envs[0].name: "));
    run_free(&run);

    run = run_emp(fx, "deploy", write_spec(fx, "broken.json", "{\"name\": \"x\","), NULL);
    assert_int_equal(run.status, 2);
    assert_non_null(strstr(run.err, "not valid JSON"));
    run_free(&run);

    /* larger than the server's 1 MiB */
    char *big = malloc(CMD_SPEC_FILE_MAX + 2);
    memset(big, ' ', CMD_SPEC_FILE_MAX + 1);
    memcpy(big, GOOD_SPEC, strlen(GOOD_SPEC));
    big[CMD_SPEC_FILE_MAX + 1] = '\0';
    run = run_emp(fx, "deploy", write_spec(fx, "big.json", big), NULL);
    free(big);
    assert_int_equal(run.status, 2);
    assert_non_null(strstr(run.err, "1 MiB"));
    run_free(&run);

    run = run_emp(fx, "deploy", "/nonexistent/app.json", NULL);
    assert_int_equal(run.status, 2);
    assert_non_null(strstr(run.err, "/nonexistent/app.json"));
    run_free(&run);

    assert_int_equal(peer_requests(&peer), 0);

    /* a good spec goes out exactly as written */
    run = run_emp(fx, "deploy", write_spec(fx, "good.json", GOOD_SPEC), NULL);
    assert_int_equal(run.status, 0);
    assert_string_equal(run.out, "app songs-ms (0b78d6a2-1111-4222-8333-944455556666) is "
                                 "deploying\n");
    run_free(&run);
    assert_int_equal(peer_requests(&peer), 1);
    assert_non_null(strstr(peer.requests[0], "\r\n\r\n" GOOD_SPEC));
    peer_stop(&peer);
}

static void test_deploy_wait_reports_failure_and_timeout(void **state)
{
    struct fixture *fx = *state;
    const char *spec = write_spec(fx, "app.json", GOOD_SPEC);
    const struct route failing[] = {
        {"POST /v1/apps ", 201, APP_JSON("deploying", "0", "null")},
        {"GET /v1/apps/0b78d6a2-1111-4222-8333-944455556666 ", 200,
         APP_JSON("failed", "0", "\"cluster backend 'local' is not available\"")},
    };
    struct peer peer;
    peer_start(&peer, failing, 2);
    use_peer(fx, &peer);
    struct run run = run_emp(fx, "deploy", spec, "--wait", NULL);
    assert_int_equal(run.status, 1);
    assert_int_equal(run.out_len, 0);
    /* progress, one line per change when stderr is not a terminal, then the reason */
    assert_non_null(strstr(run.err, "songs-ms: deploying, 0/1 ready\n"));
    assert_non_null(strstr(run.err, "songs-ms: failed, 0/1 ready\n"));
    assert_non_null(strstr(run.err, "emp: app songs-ms (0b78d6a2-1111-4222-8333-944455556666) "
                                    "failed: cluster backend 'local' is not available\n"));
    run_free(&run);
    peer_stop(&peer);

    const struct route stuck[] = {
        {"POST /v1/apps ", 201, APP_JSON("deploying", "0", "null")},
        {"GET /v1/apps/0b78d6a2-1111-4222-8333-944455556666 ", 200,
         APP_JSON("deploying", "0", "\"pulling the image\"")},
    };
    peer_start(&peer, stuck, 2);
    use_peer(fx, &peer);
    run = run_emp(fx, "deploy", spec, "--wait", "--timeout", "1s", "-o", "json", NULL);
    assert_int_equal(run.status, 1);
    assert_non_null(strstr(run.err, "timed out after 1s"));
    assert_non_null(strstr(run.err, "pulling the image"));
    /* -o json: the app as last seen, on stdout */
    assert_non_null(strstr(run.out, "\"reason\":\"pulling the image\""));
    run_free(&run);
    /* polled after 20, 40, 80, 160 ms, then every 200 ms: the POST and about 7 GETs in a
     * second, not a busy loop */
    assert_in_range(peer_requests(&peer), 6, 10);
    peer_stop(&peer);
}

static void test_list_follows_every_page(void **state)
{
    struct fixture *fx = *state;
    const struct route routes[] = {
        {"GET /v1/apps?limit=200&cursor=c2 ", 200,
         "{\"apps\":[{\"id\":\"id-2\",\"name\":\"zeta-long-name\",\"state\":\"stopped\","
         "\"replicas\":{\"desired\":3,\"ready\":0},\"address\":null}],\"next_cursor\":null}"},
        {"GET /v1/apps?limit=200 ", 200,
         "{\"apps\":[{\"id\":\"id-1\",\"name\":\"a\",\"state\":\"running\",\"replicas\":{"
         "\"desired\":2,\"ready\":2},\"address\":\"http://127.0.0.1:40001\"}],"
         "\"next_cursor\":\"c2\"}"},
    };
    struct peer peer;
    peer_start(&peer, routes, 2);
    use_peer(fx, &peer);
    struct run run = run_emp(fx, "list", NULL);
    assert_int_equal(run.status, 0);
    assert_string_equal(run.out,
                        "NAME             ID     STATE     READY   ADDRESS\n"
                        "a                id-1   running   2/2     http://127.0.0.1:40001\n"
                        "zeta-long-name   id-2   stopped   0/3     -\n");
    run_free(&run);

    /* -o json over several pages: one document with every app */
    run = run_emp(fx, "list", "-o", "json", NULL);
    assert_int_equal(run.status, 0);
    assert_non_null(strstr(run.out, "\"id-1\""));
    assert_non_null(strstr(run.out, "\"id-2\""));
    assert_non_null(strstr(run.out, "\"next_cursor\":null"));
    run_free(&run);
    peer_stop(&peer);
}

static void test_login_saves_the_token_privately(void **state)
{
    struct fixture *fx = *state;
    const struct route routes[] = {
        {"POST /v1/sessions ", 201,
         "{\"token\":\"emp_SECRET\",\"username\":\"alice\",\"expires_at\":"
         "\"2030-01-01T00:00:00.000Z\"}"},
        {"DELETE /v1/sessions/current ", 401,
         "{\"error\":{\"code\":\"unauthorized\",\"message\":\"the token is not valid\"}}"},
    };
    struct peer peer;
    peer_start(&peer, routes, 2);
    use_peer(fx, &peer);
    fx->token = NULL; /* no EMP_TOKEN: the saved one */

    int pipe_fds[2];
    assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
    assert_int_equal(write(pipe_fds[1], "pass word1\r\nrest", 16), 16);
    close(pipe_fds[1]);
    fx->in_fd = pipe_fds[0];
    struct run run = run_emp(fx, "login", "--username", "alice", "--password-stdin", NULL);
    close(pipe_fds[0]);
    assert_int_equal(run.status, 0);
    char path[256];
    snprintf(path, sizeof(path), "%s/emp/credentials.json", fx->dir);
    char expected[512];
    snprintf(expected, sizeof(expected),
             "logged in as alice, token saved to %s (expires 2030-01-01T00:00:00.000Z)\n", path);
    assert_string_equal(run.out, expected);
    assert_null(strstr(run.out, "emp_SECRET"));
    assert_null(strstr(run.err, "emp_SECRET"));
    run_free(&run);
    /* the first line of stdin, without its \r\n, was the password */
    assert_non_null(
        strstr(peer.requests[0], "{\"username\":\"alice\",\"password\":\"pass word1\"}"));

    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    FILE *f = fopen(path, "re");
    char text[1024] = "";
    size_t ignored = fread(text, 1, sizeof(text) - 1, f);
    (void)ignored;
    fclose(f);
    assert_non_null(strstr(text, "\"token\": \"emp_SECRET\""));

    /* logout: the server no longer knows the token (401), and it is forgotten anyway */
    run = run_emp(fx, "logout", NULL);
    assert_int_equal(run.status, 0);
    assert_non_null(strstr(run.out, "logged out of"));
    run_free(&run);
    assert_non_null(strstr(peer.requests[1], "Authorization: Bearer emp_SECRET\r\n"));
    f = fopen(path, "re");
    memset(text, 0, sizeof(text));
    ignored = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    assert_null(strstr(text, "emp_SECRET"));
    peer_stop(&peer);
}

static void test_no_terminal_for_a_prompt_exits_2(void **state)
{
    struct fixture *fx = *state;
    struct peer peer;
    peer_start(&peer, NULL, 0);
    use_peer(fx, &peer);
    /* in a new session there is no controlling terminal, as for a command run by a script */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        setsid();
        struct run run = run_emp(fx, "login", "--password-stdin", NULL);
        _exit(run.status == 2 && strstr(run.err, "--username") ? 0 : 1);
    }
    int status = -1;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(peer_requests(&peer), 0);
    peer_stop(&peer);
}

int main(void)
{
    client_global_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_json_output_is_the_servers_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_errors_exit_1_with_every_problem, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_answers_that_are_not_json_exit_3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_server_exits_3, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_spec_exits_2_and_sends_nothing, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deploy_wait_reports_failure_and_timeout, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_list_follows_every_page, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_saves_the_token_privately, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_terminal_for_a_prompt_exits_2, setup, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    client_global_cleanup();
    return failed;
}
