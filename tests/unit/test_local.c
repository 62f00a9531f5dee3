/* SPDX-License-Identifier: Apache-2.0 */
/* The local backend with real processes (emp-testapp) and real traffic through its gateway:
 * replicas start, become ready, are spread over, restarted when killed, scaled, stopped with
 * their data kept, and removed without a trace. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "cluster.h"
#include "emp/names.h"
#include "emp/spec.h"
#include "emp/timeutil.h"

#ifndef TESTAPP
#error "TESTAPP must name the emp-testapp binary"
#endif

struct ctx {
    char state_dir[128];
    struct cluster *cluster;
    int changes;
};

static void count_change(void *arg, const char *app_id)
{
    __atomic_add_fetch(&((struct ctx *)arg)->changes, 1, __ATOMIC_SEQ_CST);
}

static int open_backend(struct ctx *c, int port_min, int port_max)
{
    struct cluster_config config = {
        .state_dir = c->state_dir,
        .zipkin_url = "http://127.0.0.1:9411",
        .gateway_port_min = port_min,
        .gateway_port_max = port_max,
        .stop_grace_ms = 1000,
        .ready_timeout_ms = 1500,
    };
    struct emp_error err = {0};
    if (cluster_open("local", &config, &c->cluster, &err) < 0) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    cluster_on_change(c->cluster, count_change, c);
    return 0;
}

static int setup(void **state)
{
    signal(SIGPIPE, SIG_IGN);
    struct ctx *c = calloc(1, sizeof(*c));
    snprintf(c->state_dir, sizeof(c->state_dir), "/tmp/emp-unit-local-XXXXXX");
    if (!mkdtemp(c->state_dir))
        return -1;
    /* a range per test process, so that parallel tests do not meet */
    int base = 20000 + (getpid() % 400) * 20;
    if (open_backend(c, base, base + 19) < 0)
        return -1;
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct ctx *c = *state;
    cluster_close(c->cluster);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", c->state_dir);
    if (system(cmd) != 0)
        return -1;
    free(c);
    return 0;
}

struct app {
    char id[NAMES_UUID_LEN + 1];
    struct emp_spec *spec;
    struct cluster_app capp;
};

static void make_app(struct app *a, int n, const char *name, const char *extra, int replicas)
{
    char text[1024];
    snprintf(text, sizeof(text),
             "{\"name\":\"%s\",\"command\":[\"%s\"%s],\"port\":8080,"
             "\"replicas\":{\"min\":1,\"max\":20,\"initial\":%d}%s}",
             name, TESTAPP, "", replicas, extra);
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    if (spec_parse(text, strlen(text), &a->spec, &errs) < 0)
        fail_msg("spec: %s", errs.items[0].message);
    snprintf(a->id, sizeof(a->id), "00000000-0000-4000-8000-%012d", n);
    a->capp = (struct cluster_app){
        .id = a->id, .owner = "tester", .name = name, .spec = a->spec, .replicas = replicas};
}

static struct cluster_status status(struct ctx *c, struct app *a)
{
    struct cluster_status st;
    struct emp_error err = {0};
    assert_int_equal(cluster_status(c->cluster, &a->capp, &st, &err), 0);
    return st;
}

/* Waits until the app has `ready` ready replicas; returns the status. */
/* Waits until ready replicas are ready after at least restarts restarts. */
static struct cluster_status wait_restarted(struct ctx *c, struct app *a, int ready, int restarts,
                                            int within_ms)
{
    int64_t deadline = time_mono_ms() + within_ms;
    struct cluster_status st;
    for (;;) {
        st = status(c, a);
        if ((st.replicas_ready == ready && st.restarts >= restarts) || time_mono_ms() > deadline)
            break;
        struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (st.replicas_ready != ready || st.restarts < restarts)
        fail_msg("%d ready instead of %d, %d restarts instead of %d after %d ms (reason: %s)",
                 st.replicas_ready, ready, st.restarts, restarts, within_ms, st.reason);
    return st;
}

static struct cluster_status wait_ready(struct ctx *c, struct app *a, int ready, int within_ms)
{
    return wait_restarted(c, a, ready, 0, within_ms);
}

static int port_of(const char *address)
{
    const char *colon = strrchr(address, ':');
    return colon ? atoi(colon + 1) : -1;
}

/* GET path through address; writes the body into buf. Returns the HTTP status or -errno. */
static int http_get(const char *address, const char *method, const char *path, char *buf,
                    size_t size)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)port_of(address)),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 2};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    char req[256];
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                     method, path);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return -EIO;
    }
    size_t got = 0;
    ssize_t r;
    while (got + 1 < size && (r = read(fd, buf + got, size - 1 - got)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fd);
    if (got == 0)
        return -ECONNRESET; /* accepted and closed: no ready replica */
    int status = 0;
    sscanf(buf, "HTTP/1.1 %d", &status);
    char *body = strstr(buf, "\r\n\r\n");
    if (body)
        memmove(buf, body + 4, strlen(body + 4) + 1);
    return status;
}

/* As a client that retries once would see it. */
static int http_get_retry(const char *address, const char *method, const char *path, char *buf,
                          size_t size)
{
    int status = http_get(address, method, path, buf, size);
    return status == 200 ? status : http_get(address, method, path, buf, size);
}

static int json_int(const char *body, const char *key)
{
    char pattern[64];
    snprintf(pattern, sizeof(pattern), "\"%s\":", key);
    const char *p = strstr(body, pattern);
    if (!p)
        return -1;
    p += strlen(pattern);
    if (*p == '"')
        p++;
    return atoi(p);
}

/* Processes whose environment holds EMP_APP_ID=id. */
static int processes_of(const char *id)
{
    char needle[64];
    snprintf(needle, sizeof(needle), "EMP_APP_ID=%s", id);
    DIR *proc = opendir("/proc");
    int count = 0;
    struct dirent *d;
    while ((d = readdir(proc))) {
        if (d->d_name[0] < '1' || d->d_name[0] > '9')
            continue;
        char path[300];
        snprintf(path, sizeof(path), "/proc/%s/environ", d->d_name);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        char env[16384];
        size_t n = fread(env, 1, sizeof(env) - 1, f);
        fclose(f);
        for (size_t i = 0; i < n; i += strlen(env + i) + 1) {
            env[n] = '\0';
            if (strcmp(env + i, needle) == 0) {
                count++;
                break;
            }
        }
    }
    closedir(proc);
    return count;
}

static void sleep_ms(int ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static void test_validate(void **state)
{
    struct ctx *c = *state;
    struct emp_error err = {0};
    struct emp_spec *spec;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    const char *text = "{\"name\":\"img\",\"docker_image\":\"a/b:1\",\"port\":80}";
    assert_int_equal(spec_parse(text, strlen(text), &spec, &errs), 0);
    struct cluster_app capp = {.id = "x", .owner = "o", .name = "img", .spec = spec, .replicas = 1};
    assert_int_equal(cluster_validate(c->cluster, &capp, &err), -EINVAL);
    assert_string_equal(err.field, "command");
    assert_non_null(strstr(err.message, "add \"command\""));
    spec_free(spec);

    char plain[256], plain_spec[400];
    snprintf(plain, sizeof(plain), "%s/plain.txt", c->state_dir);
    FILE *f = fopen(plain, "w");
    fputs("not a program\n", f);
    fclose(f);
    chmod(plain, 0644);
    snprintf(plain_spec, sizeof(plain_spec), "{\"name\":\"a\",\"command\":[\"%s\"],\"port\":80}",
             plain);
    const char *cases[][2] = {
        {"{\"name\":\"a\",\"command\":[\"no-such-program-emp\"],\"port\":80}", "not found on"},
        {"{\"name\":\"a\",\"command\":[\"/nonexistent/bin/x\"],\"port\":80}", "does not exist"},
        {"{\"name\":\"a\",\"command\":[\"./run.sh\"],\"port\":80}", "relative path"},
        {plain_spec, "not executable"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        emp_errlist_init(&errs);
        assert_int_equal(spec_parse(cases[i][0], strlen(cases[i][0]), &spec, &errs), 0);
        capp.spec = spec;
        emp_error_clear(&err);
        assert_true(cluster_validate(c->cluster, &capp, &err) < 0);
        if (!strstr(err.message, cases[i][1]))
            fail_msg("'%s' lacks '%s'", err.message, cases[i][1]);
        assert_string_equal(err.field, "command[0]");
        spec_free(spec);
    }
}

static void test_serve_spread_restart_scale(void **state)
{
    struct ctx *c = *state;
    struct app a;
    make_app(&a, 1, "web", "", 2);
    struct emp_error err = {0};
    assert_int_equal(cluster_deploy(c->cluster, &a.capp, &err), 0);
    struct cluster_status st = wait_ready(c, &a, 2, 3000);
    assert_true(st.exists);
    assert_false(st.failed);
    int gateway = port_of(st.address);
    assert_true(gateway > 0);
    assert_true(c->changes > 0); /* the backend told about the replicas becoming ready */

    /* the gateway spreads connections over both replicas */
    char body[1024];
    int seen[2] = {0, 0}, pid = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(http_get(st.address, "GET", "/", body, sizeof(body)), 200);
        int replica = json_int(body, "replica");
        assert_true(replica == 0 || replica == 1);
        seen[replica]++;
        if (replica == 0)
            pid = json_int(body, "pid");
    }
    assert_true(seen[0] > 0 && seen[1] > 0);

    /* the environment EMP promises */
    assert_int_equal(http_get(st.address, "GET", "/env?name=EMP_SERVICE_NAME", body, sizeof(body)),
                     200);
    assert_string_equal(body, "{\"value\":\"tester/web\"}");
    assert_int_equal(http_get(st.address, "GET", "/env?name=EMP_DATA_DIR", body, sizeof(body)),
                     200);
    assert_string_equal(body, "{\"value\":null}"); /* stateless */

    /* a replica killed is noticed and replaced, while the other keeps serving: a client that
     * retries once sees no failure */
    int64_t killed_at = time_mono_ms();
    assert_int_equal(kill(pid, SIGKILL), 0);
    for (int i = 0; i < 10; i++)
        assert_int_equal(http_get_retry(st.address, "GET", "/", body, sizeof(body)), 200);
    st = wait_restarted(c, &a, 2, 1, 2000); /* noticed, replaced and ready again within 2 s */
    assert_true(time_mono_ms() - killed_at < 2000);
    assert_int_equal(st.restarts, 1);
    assert_non_null(strstr(st.last_exit, "replica 0 killed by signal 9 (SIGKILL)"));

    /* scale up and down: the highest ordinals go */
    assert_int_equal(cluster_scale(c->cluster, &a.capp, 5, &err), 0);
    a.capp.replicas = 5;
    wait_ready(c, &a, 5, 3000);
    assert_int_equal(processes_of(a.id), 5);
    assert_int_equal(cluster_scale(c->cluster, &a.capp, 1, &err), 0);
    a.capp.replicas = 1;
    wait_ready(c, &a, 1, 3000);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(http_get(st.address, "GET", "/", body, sizeof(body)), 200);
        assert_int_equal(json_int(body, "replica"), 0);
    }
    int64_t deadline = time_mono_ms() + 3000;
    while (processes_of(a.id) != 1 && time_mono_ms() < deadline)
        sleep_ms(20);
    assert_int_equal(processes_of(a.id), 1);

    /* remove: no process, no listener */
    assert_int_equal(cluster_remove(c->cluster, &a.capp, false, &err), 0);
    assert_int_equal(processes_of(a.id), 0);
    assert_true(http_get(st.address, "GET", "/", body, sizeof(body)) == -ECONNREFUSED);
    st = status(c, &a);
    assert_false(st.exists);
    spec_free(a.spec);
}

static void test_stop_start_keeps_data_and_port(void **state)
{
    struct ctx *c = *state;
    struct app a;
    make_app(&a, 2, "db", ",\"stateless\":false", 1);
    struct emp_error err = {0};
    assert_int_equal(cluster_deploy(c->cluster, &a.capp, &err), 0);
    struct cluster_status st = wait_ready(c, &a, 1, 3000);
    char address[CLUSTER_ADDRESS_MAX];
    snprintf(address, sizeof(address), "%s", st.address);
    char body[1024];
    assert_int_equal(http_get(address, "POST", "/data", body, sizeof(body)), 200);
    assert_int_equal(http_get(address, "POST", "/data", body, sizeof(body)), 200);
    assert_int_equal(json_int(body, "count"), 2);

    assert_int_equal(cluster_stop(c->cluster, &a.capp, &err), 0);
    st = status(c, &a);
    assert_true(st.stopped);
    assert_int_equal(http_get(address, "GET", "/", body, sizeof(body)), -ECONNREFUSED);
    int64_t deadline = time_mono_ms() + 3000;
    while (processes_of(a.id) > 0 && time_mono_ms() < deadline)
        sleep_ms(20);
    assert_int_equal(processes_of(a.id), 0);

    assert_int_equal(cluster_start(c->cluster, &a.capp, &err), 0);
    st = wait_ready(c, &a, 1, 3000);
    assert_string_equal(st.address, address); /* the same gateway port */
    assert_int_equal(http_get(address, "GET", "/data", body, sizeof(body)), 200);
    assert_int_equal(json_int(body, "count"), 2);

    /* a restart of emp-server: the backend is made anew and keeps the port and the data */
    cluster_close(c->cluster);
    int base = 20000 + (getpid() % 400) * 20;
    assert_int_equal(open_backend(c, base, base + 19), 0);
    assert_int_equal(cluster_deploy(c->cluster, &a.capp, &err), 0);
    st = wait_ready(c, &a, 1, 3000);
    assert_string_equal(st.address, address);
    assert_int_equal(http_get(address, "GET", "/data", body, sizeof(body)), 200);
    assert_int_equal(json_int(body, "count"), 2);

    assert_int_equal(cluster_remove(c->cluster, &a.capp, true, &err), 0);
    char data[300];
    snprintf(data, sizeof(data), "%s/local/data/tester/db", c->state_dir);
    assert_int_equal(access(data, F_OK), -1); /* purged */
    spec_free(a.spec);
}

static void test_crash_loop_backs_off(void **state)
{
    struct ctx *c = *state;
    char text[512];
    snprintf(text, sizeof(text),
             "{\"name\":\"crashy\",\"command\":[\"%s\",\"--exit-at-start\",\"3\"],\"port\":1}",
             TESTAPP);
    struct app a;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    assert_int_equal(spec_parse(text, strlen(text), &a.spec, &errs), 0);
    snprintf(a.id, sizeof(a.id), "00000000-0000-4000-8000-000000000003");
    a.capp = (struct cluster_app){
        .id = a.id, .owner = "tester", .name = "crashy", .spec = a.spec, .replicas = 1};
    struct emp_error err = {0};
    assert_int_equal(cluster_deploy(c->cluster, &a.capp, &err), 0);
    sleep_ms(2500);
    struct cluster_status st = status(c, &a);
    assert_true(st.failed);
    assert_non_null(strstr(st.reason, "replica 0 exited with status 3"));
    assert_non_null(strstr(st.reason, "next try in"));
    /* backoff, not a busy loop: 250 ms doubling gives about 4 tries in 2.5 s */
    assert_true(st.restarts >= 2 && st.restarts <= 5);
    assert_int_equal(cluster_remove(c->cluster, &a.capp, false, &err), 0);
    spec_free(a.spec);
}

static void test_never_ready(void **state)
{
    struct ctx *c = *state;
    char text[512];
    snprintf(text, sizeof(text),
             "{\"name\":\"sleepy\",\"command\":[\"%s\",\"--ready-after\",\"100000\"],\"port\":1}",
             TESTAPP);
    struct app a;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    assert_int_equal(spec_parse(text, strlen(text), &a.spec, &errs), 0);
    snprintf(a.id, sizeof(a.id), "00000000-0000-4000-8000-000000000004");
    a.capp = (struct cluster_app){
        .id = a.id, .owner = "tester", .name = "sleepy", .spec = a.spec, .replicas = 1};
    struct emp_error err = {0};
    assert_int_equal(cluster_deploy(c->cluster, &a.capp, &err), 0);
    sleep_ms(300);
    struct cluster_status st = status(c, &a);
    assert_false(st.failed); /* still within the ready timeout */
    assert_non_null(strstr(st.reason, "nothing accepts connections"));
    int64_t deadline = time_mono_ms() + 4000;
    while (!st.failed && time_mono_ms() < deadline) {
        sleep_ms(50);
        st = status(c, &a);
    }
    assert_true(st.failed);
    assert_non_null(strstr(st.reason, "did not become ready within 1 s"));
    assert_int_equal(cluster_remove(c->cluster, &a.capp, false, &err), 0);
    spec_free(a.spec);
}

static void test_port_range_exhausted(void **state)
{
    struct ctx *c = *state;
    cluster_close(c->cluster);
    int port = 20000 + (getpid() % 400) * 20 + 19;
    assert_int_equal(open_backend(c, port, port), 0);
    struct app a, b;
    make_app(&a, 5, "first", "", 1);
    make_app(&b, 6, "second", "", 1);
    struct emp_error err = {0};
    assert_int_equal(cluster_deploy(c->cluster, &a.capp, &err), 0);
    assert_int_equal(cluster_deploy(c->cluster, &b.capp, &err), -ENOSPC);
    assert_non_null(strstr(err.message, "no free gateway port"));
    assert_non_null(strstr(err.message, "--gateway-ports"));
    assert_false(status(c, &b).exists);
    assert_int_equal(cluster_remove(c->cluster, &a.capp, false, &err), 0);
    /* the port is free again */
    emp_error_clear(&err);
    assert_int_equal(cluster_deploy(c->cluster, &b.capp, &err), 0);
    assert_int_equal(cluster_remove(c->cluster, &b.capp, false, &err), 0);
    spec_free(a.spec);
    spec_free(b.spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serve_spread_restart_scale, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_start_keeps_data_and_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_loop_backs_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_never_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_port_range_exhausted, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
