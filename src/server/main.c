/* SPDX-License-Identifier: Apache-2.0 */
/* emp-server: wires the modules together in order (store, cluster backend, auth, reconciler, API,
 * HTTP), serves until SIGTERM or SIGINT, then drains requests and stops them in reverse order. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api.h"
#include "apps.h"
#include "auth.h"
#include "cluster.h"
#include "collector.h"
#include "config.h"
#include "emp/log.h"
#include "emp/timeutil.h"
#include "http.h"
#include "kafka.h"
#include "reconciler.h"
#include "redis_child.h"
#include "store.h"
#include "traces.h"

#define DRAIN_MS      10000
#define STORE_WAIT_MS 30000

static int fail(const struct emp_error *err)
{
    fprintf(stderr, "emp-server: %s\n", err->message[0] ? err->message : "failed to start");
    return 1;
}

static int make_dirs(const char *path, struct emp_error *err)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf))
        return emp_error_set(err, -ENAMETOOLONG, EMP_ERR_INVALID_FIELD, "state-dir",
                             "--state-dir is too long");
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0700) < 0 && errno != EEXIST)
                return emp_error_set(err, -errno, EMP_ERR_INVALID_FIELD, "state-dir",
                                     "cannot create the state directory '%s': %s", buf,
                                     strerror(errno));
            *p = saved;
            if (saved == '\0')
                break;
        }
    }
    return 0;
}

/* One emp-server per state directory: its files (the embedded Redis, backend data) are not shared.
 */
static int lock_state_dir(const char *dir, int *ret_fd, struct emp_error *err)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/emp-server.lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0)
        return emp_error_set(err, -errno, EMP_ERR_INVALID_FIELD, "state-dir",
                             "cannot open '%s': %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        close(fd);
        return emp_error_set(err, -EBUSY, EMP_ERR_CONFLICT, "state-dir",
                             "another emp-server is using the state directory '%s': stop it, or "
                             "give this one its own --state-dir",
                             dir);
    }
    char pid[32];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(fd, 0) == 0 && write(fd, pid, (size_t)len) < 0)
        log_msg(LOG_WARN, "cannot write the lock file", "path=%s", path);
    *ret_fd = fd;
    return 0;
}

static void wait_for_store(struct store *store)
{
    int64_t deadline = time_mono_ms() + STORE_WAIT_MS;
    struct emp_error err = {0};
    while (store_ping(store, &err) < 0) {
        if (time_mono_ms() > deadline) {
            char quoted[600];
            log_msg(LOG_WARN, "the store is not reachable yet; serving 503 until it is",
                    "detail=%s", log_quote(quoted, sizeof(quoted), err.message));
            return;
        }
        emp_error_clear(&err);
        struct timespec pause = {.tv_nsec = 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Gateways hold two fds per connection and every replica a few: use what the hard limit
 * allows (the soft one is often 1,024). */
static void raise_fd_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        setrlimit(RLIMIT_NOFILE, &limit);
    }
}

int main(int argc, char **argv)
{
    struct server_config config;
    enum config_outcome outcome;
    struct emp_error err = {0};
    if (config_parse(argc, argv, &config, &outcome, &err) < 0) {
        fprintf(stderr, "emp-server: %s\n", err.message);
        config_free(&config);
        return 2;
    }
    if (outcome == CONFIG_HELP) {
        config_print_help(stdout);
        config_free(&config);
        return 0;
    }
    if (outcome == CONFIG_VERSION) {
        printf("emp-server %s\n", EMP_VERSION);
        config_free(&config);
        return 0;
    }
    enum log_level level;
    if (log_level_parse(config.log_level, &level) < 0) {
        fprintf(stderr,
                "emp-server: --log-level '%s' is not valid: use debug, info, warn or "
                "error\n",
                config.log_level);
        config_free(&config);
        return 2;
    }
    log_set_level(level);

    /* Signals are taken by sigwait() below; every thread inherits this mask. */
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGTERM);
    sigaddset(&stop_signals, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_fd_limit();

    int status = 1;
    int lock_fd = -1;
    int listen_fd = -1;
    struct redis_child *redis = NULL;
    struct store *store = NULL;
    struct cluster *cluster = NULL;
    struct auth *auth = NULL;
    struct recon *recon = NULL;
    struct apps *apps = NULL;
    struct api *api = NULL;
    struct http_server *http = NULL;
    struct collector *collector = NULL;
    struct kafka *kafka = NULL;
    struct traces *traces = NULL;

    if (make_dirs(config.state_dir, &err) < 0 ||
        lock_state_dir(config.state_dir, &lock_fd, &err) < 0)
        goto out;
    /* the port first: apps on the local backend are told this server's URL for their spans */
    struct http_config http_config = {
        .host = config.listen_host,
        .port = config.listen_port,
        .threads = config.threads,
        .max_connections = config.max_connections,
        .body_limit = api_body_limit,
    };
    if (http_listen(&http_config, &listen_fd, &http_config.listen_port, &err) < 0)
        goto out;
    http_config.listening = true;
    http_config.listen_fd = listen_fd;
    char own_url[300];
    const char *apps_zipkin_url = config.apps_zipkin_url;
    if (!apps_zipkin_url && strcmp(config.cluster, "local") == 0) {
        const char *host = config.listen_host;
        if (!host[0] || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0)
            host = "127.0.0.1";
        bool v6 = strchr(host, ':') != NULL;
        snprintf(own_url, sizeof(own_url), "http://%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "",
                 http_config.listen_port);
        apps_zipkin_url = own_url;
    } else if (!apps_zipkin_url) {
        /* On a cluster this process's address is not known to the pods: the Zipkin server,
         * which collects spans over HTTP too, unless --apps-zipkin-url names emp-server. */
        apps_zipkin_url = config.zipkin_url;
    }
    const char *redis_url = config.redis_url;
    if (!redis_url) {
        if (redis_child_start(config.redis_server, config.state_dir, &redis, &err) < 0)
            goto out;
        redis_url = redis_child_url(redis);
    }
    if (store_open(redis_url, &store, &err) < 0 ||
        store_enable_cache(store, (size_t)config.cache_entries, &err) < 0)
        goto out;
    wait_for_store(store);

    struct cluster_config cluster_config = {
        .state_dir = config.state_dir,
        .kafka_address = config.kafka_brokers,
        .zipkin_url = apps_zipkin_url,
        .gateway_port_min = config.gateway_port_min,
        .gateway_port_max = config.gateway_port_max,
        .gateway_max_connections = config.gateway_max_connections,
        .stop_grace_ms = (int)(config.stop_grace_s * 1000),
        .ready_timeout_ms = (int)(config.ready_timeout_s * 1000),
        .kube =
            {
                .server = config.kube_server,
                .token_file = config.kube_token_file,
                .ca_file = config.kube_ca,
                .kubeconfig = config.kubeconfig,
                .context = config.kube_context,
                .service_type = config.kube_service_type,
                .volume_size = config.kube_volume_size,
                .apps_kafka_address = config.apps_kafka_address,
            },
    };
    if (cluster_open(config.cluster, &cluster_config, &cluster, &err) < 0)
        goto out;
    if (!cluster_available(cluster))
        log_msg(LOG_WARN,
                "cluster backend not available in this build: apps will fail with that "
                "reason",
                "cluster=%s", config.cluster);

    struct auth_config auth_config = {
        .token_ttl_s = config.token_ttl_s,
        .login_max_failures = config.login_max_failures,
        .login_window_s = config.login_window_s,
        .scheduler_token_file = config.scheduler_token_file,
    };
    if (auth_new(store, &auth_config, &auth, &err) < 0)
        goto out;

    struct recon_config recon_config;
    recon_config_defaults(&recon_config);
    recon_config.workers = config.reconcile_workers;
    recon_config.resync_ms = config.resync_s * 1000;
    char node[4200];
    char *real_state_dir = realpath(config.state_dir, NULL);
    char host[256] = "localhost";
    gethostname(host, sizeof(host) - 1);
    /* the same host and state directory is the same node (the state dir lock makes sure the
     * one before is gone), so a restarted emp-server takes its apps back at once */
    snprintf(node, sizeof(node), "%s:%s", host, real_state_dir ? real_state_dir : config.state_dir);
    free(real_state_dir);
    recon_config.node = node;
    if (recon_start(store, cluster, &recon_config, &recon, &err) < 0)
        goto out;
    cluster_on_change(cluster, recon_app_changed, recon);

    struct apps_config apps_config = {
        .max_apps_per_user = config.max_apps_per_user,
        .wake = recon_wake,
        .wake_ctx = recon,
    };
    if (apps_new(store, cluster, &apps_config, &apps) < 0)
        goto out;
    long long adopted = 0;
    struct emp_error adopt_err = {0};
    if (store_trace_adopt(store, time_now_ms(), &adopted, &adopt_err) < 0)
        log_warn("trace minutes written before roll-ups were not marked", "error=\"%s\"",
                 adopt_err.message);
    else if (adopted > 0)
        log_info("trace minutes written before roll-ups marked as rolled up", "minutes=%lld",
                 adopted);
    struct collector_config collector_config = {
        .store = store,
        .lateness_s = config.trace_lateness_s,
        .join_ms = config.trace_join_s * 1000,
        .join_wait_ms = config.trace_join_s * 5000,
    };
    if (collector_new(&collector_config, &collector, &err) < 0)
        goto out;
    if (config.kafka_brokers && config.kafka_brokers[0]) {
        struct kafka_config kafka_config = {
            .brokers = config.kafka_brokers,
            .topic = config.kafka_topic,
            .group = config.kafka_group,
            .session_timeout_ms = (int)(config.kafka_session_timeout_s * 1000),
            .inbox_bytes = (size_t)config.kafka_inbox_mb << 20,
            .collector = collector,
        };
        if (kafka_start(&kafka_config, &kafka, &err) < 0)
            goto out;
    }
    struct traces_config traces_config = {.zipkin_url = config.zipkin_url};
    if (traces_new(store, apps, collector, kafka, &traces_config, &traces) < 0)
        goto out;
    struct api_config api_config = {
        .zipkin_url = config.zipkin_url,
        .cluster_name = cluster_name(cluster),
        .cluster_available = cluster_available(cluster),
        .traces = traces,
    };
    if (api_new(store, auth, apps, &api_config, &api) < 0)
        goto out;
    int started = http_start(&http_config, api_handle, api_error, api, &http, &err);
    listen_fd = -1; /* the HTTP server's now, closed by it also when it failed */
    if (started < 0)
        goto out;

    bool v6 = strchr(config.listen_host, ':') != NULL;
    log_msg(LOG_INFO, "listening",
            "url=http://%s%s%s:%d store=%s cluster=%s threads=%d state_dir=%s kafka=%s",
            v6 ? "[" : "", config.listen_host, v6 ? "]" : "", http_port(http),
            store_display_url(store), config.cluster, config.threads, config.state_dir,
            kafka ? config.kafka_brokers : "none");

    int sig = 0;
    while (sigwait(&stop_signals, &sig) != 0)
        ;
    log_msg(LOG_INFO, "stopping: draining requests", "signal=%d", sig);
    status = 0;
out:
    if (status != 0 && emp_error_is_set(&err))
        fail(&err);
    http_stop(http, DRAIN_MS);
    if (cluster)
        cluster_on_change(cluster, NULL, NULL); /* the reconciler goes first */
    recon_stop(recon);
    kafka_stop(kafka);         /* counts and commits what it consumed */
    collector_free(collector); /* adds the last counts to the store */
    api_free(api);
    traces_free(traces);
    apps_free(apps);
    auth_free(auth);
    cluster_close(cluster);
    store_close(store);
    redis_child_stop(redis);
    if (lock_fd >= 0)
        close(lock_fd);
    if (listen_fd >= 0)
        close(listen_fd);
    if (status == 0)
        log_msg(LOG_INFO, "stopped", NULL);
    config_free(&config);
    return status;
}
