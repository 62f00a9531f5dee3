/* SPDX-License-Identifier: Apache-2.0 */
/* The table of emp-server's settings. One row per setting gives the flag, the environment variable,
 * the default and the help line, so that --help, the parser and the defaults cannot disagree. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emp/timeutil.h"

enum kind { K_STRING, K_INT, K_DURATION, K_LISTEN, K_PORTS };

struct setting {
    const char *flag;
    const char *env;
    enum kind kind;
    size_t offset;
    const char *def; /* NULL: unset */
    long min, max;   /* K_INT and K_DURATION (seconds) bounds */
    const char *meta;
    const char *help;
};

#define OFF(field) offsetof(struct server_config, field)

static const struct setting settings[] = {
    {"listen", "EMP_LISTEN", K_LISTEN, 0, "127.0.0.1:7420", 0, 0, "HOST:PORT",
     "address of the REST API (port 0 picks a free port)"},
    {"redis-url", "EMP_REDIS_URL", K_STRING, OFF(redis_url), NULL, 0, 0, "URL",
     "redis://[:password@]host[:port][/db] or unix:///path; unset: run an embedded redis-server"},
    {"redis-server", "EMP_REDIS_SERVER", K_STRING, OFF(redis_server), "redis-server", 0, 0, "PATH",
     "the redis-server binary the embedded store runs"},
    {"state-dir", "EMP_STATE_DIR", K_STRING, OFF(state_dir), NULL, 0, 0, "DIR",
     "where emp-server keeps its files (default $XDG_STATE_HOME/emp, else ~/.local/state/emp)"},
    {"cluster", "EMP_CLUSTER", K_STRING, OFF(cluster), "local", 0, 0, "NAME",
     "cluster backend: local or kubernetes"},
    {"scheduler-token-file", "EMP_SCHEDULER_TOKEN_FILE", K_STRING, OFF(scheduler_token_file), NULL,
     0, 0, "FILE", "file holding the scheduler's bearer token (kept only as a digest)"},
    {"zipkin-url", "EMP_ZIPKIN_URL", K_STRING, OFF(zipkin_url), "http://127.0.0.1:9411", 0, 0,
     "URL", "Zipkin server whose UI `emp tracing` links to"},
    {"apps-zipkin-url", "EMP_APPS_ZIPKIN_URL", K_STRING, OFF(apps_zipkin_url), NULL, 0, 0, "URL",
     "where apps POST their spans (their EMP_ZIPKIN_URL; default: on the local backend this "
     "emp-server, which serves /api/v2/spans, on a cluster --zipkin-url)"},
    {"kafka-brokers", "EMP_KAFKA_BROKERS", K_STRING, OFF(kafka_brokers), NULL, 0, 0, "LIST",
     "Kafka bootstrap servers (host:port,...): consume spans from --kafka-topic, and produce "
     "there what POST /api/v2/spans receives"},
    {"kafka-topic", "EMP_KAFKA_TOPIC", K_STRING, OFF(kafka_topic), "zipkin", 0, 0, "NAME",
     "the topic of spans, as Zipkin's Kafka collector reads it"},
    {"kafka-group", "EMP_KAFKA_GROUP", K_STRING, OFF(kafka_group), "emp-tracing", 0, 0, "NAME",
     "the consumer group: emp-servers in one group split the topic's partitions"},
    {"kafka-session-timeout", "EMP_KAFKA_SESSION_TIMEOUT", K_DURATION, OFF(kafka_session_timeout_s),
     "10s", 1, 300, "DURATION",
     "how long the group waits for a consumer that stopped answering before it hands on its "
     "partitions"},
    {"kafka-inbox-mb", "EMP_KAFKA_INBOX_MB", K_INT, OFF(kafka_inbox_mb), "32", 1, 1024, "MIB",
     "consumed messages that may wait to be counted; with that many the consumer pauses its "
     "partitions until half is left"},
    {"trace-lateness", "EMP_TRACE_LATENESS", K_DURATION, OFF(trace_lateness_s), "10m", 10, 7200,
     "DURATION", "spans older than this (by their timestamp) are not counted"},
    {"trace-join", "EMP_TRACE_JOIN", K_DURATION, OFF(trace_join_s), "2s", 1, 60, "DURATION",
     "how long half of a call waits for its other half (a client span for its server span)"},
    {"threads", "EMP_THREADS", K_INT, OFF(threads), "0", 0, 256, "N",
     "HTTP worker threads (0: one per core)"},
    {"token-ttl", "EMP_TOKEN_TTL", K_DURATION, OFF(token_ttl_s), "24h", 60, 90L * 86400, "DURATION",
     "how long a login token stays valid (60s to 90d)"},
    {"login-max-failures", "EMP_LOGIN_MAX_FAILURES", K_INT, OFF(login_max_failures), "5", 1, 1000,
     "N", "failed logins of one username before further attempts get 429"},
    {"login-window", "EMP_LOGIN_WINDOW", K_DURATION, OFF(login_window_s), "15m", 1, 86400,
     "DURATION", "the window failed logins are counted in, and how long a lock lasts"},
    {"max-apps-per-user", "EMP_MAX_APPS_PER_USER", K_INT, OFF(max_apps_per_user), "100", 1, 100000,
     "N", "apps one account may have"},
    {"max-connections", "EMP_MAX_CONNECTIONS", K_INT, OFF(max_connections), "4096", 16, 100000, "N",
     "concurrent HTTP connections accepted"},
    {"reconcile-workers", "EMP_RECONCILE_WORKERS", K_INT, OFF(reconcile_workers), "2", 0, 64, "N",
     "reconciler threads (0: serve only the API and leave the apps to another emp-server)"},
    {"resync", "EMP_RESYNC", K_DURATION, OFF(resync_s), "60s", 1, 86400, "DURATION",
     "how often the reconciler re-checks an app that is as desired"},
    {"gateway-ports", "EMP_GATEWAY_PORTS", K_PORTS, 0, "31000-31999", 1, 65535, "MIN-MAX",
     "local backend: the ports of app gateways on 127.0.0.1"},
    {"gateway-max-connections", "EMP_GATEWAY_MAX_CONNECTIONS", K_INT, OFF(gateway_max_connections),
     "10000", 16, 1000000, "N", "local backend: client connections of all gateways together"},
    {"stop-grace", "EMP_STOP_GRACE", K_DURATION, OFF(stop_grace_s), "10s", 1, 3600, "DURATION",
     "local backend: how long a stopping replica has after SIGTERM before SIGKILL"},
    {"ready-timeout", "EMP_READY_TIMEOUT", K_DURATION, OFF(ready_timeout_s), "60s", 1, 3600,
     "DURATION", "local backend: a replica not ready by then has failed and is restarted"},
    {"kube-server", "EMP_KUBE_SERVER", K_STRING, OFF(kube_server), NULL, 0, 0, "URL",
     "Kubernetes backend: the API server (with --kube-token-file); first of all sources"},
    {"kube-token-file", "EMP_KUBE_TOKEN_FILE", K_STRING, OFF(kube_token_file), NULL, 0, 0, "FILE",
     "Kubernetes backend: the bearer token for --kube-server (read again when it rotates)"},
    {"kube-ca", "EMP_KUBE_CA", K_STRING, OFF(kube_ca), NULL, 0, 0, "FILE",
     "Kubernetes backend: the CA of --kube-server (default: the system's)"},
    {"kubeconfig", "EMP_KUBECONFIG", K_STRING, OFF(kubeconfig), NULL, 0, 0, "FILE",
     "Kubernetes backend: the kubeconfig (default $KUBECONFIG, then ~/.kube/config, then the "
     "pod's service account)"},
    {"kube-context", "EMP_KUBE_CONTEXT", K_STRING, OFF(kube_context), NULL, 0, 0, "NAME",
     "Kubernetes backend: the kubeconfig context (default: its current context)"},
    {"kube-service-type", "EMP_KUBE_SERVICE_TYPE", K_STRING, OFF(kube_service_type), "LoadBalancer",
     0, 0, "TYPE", "Kubernetes backend: LoadBalancer, NodePort or ClusterIP"},
    {"kube-volume-size", "EMP_KUBE_VOLUME_SIZE", K_STRING, OFF(kube_volume_size), "1Gi", 0, 0,
     "SIZE", "Kubernetes backend: the volume claim of each replica of a stateful app"},
    {"apps-kafka-address", "EMP_APPS_KAFKA_ADDRESS", K_STRING, OFF(apps_kafka_address), NULL, 0, 0,
     "HOST:PORT", "Kubernetes backend: KAFKAADDRESS of the apps (default --kafka-brokers)"},
    {"cache-entries", "EMP_CACHE_ENTRIES", K_INT, OFF(cache_entries), "16384", 0, 10000000, "N",
     "sessions and apps kept in memory, exact by Redis client tracking (0: none)"},
    {"log-level", "EMP_LOG_LEVEL", K_STRING, OFF(log_level), "info", 0, 0, "LEVEL",
     "debug, info, warn or error"},
};

#define NSETTINGS (sizeof(settings) / sizeof(settings[0]))

void config_print_help(FILE *out)
{
    fprintf(out, "Usage: emp-server [OPTION]...\n"
                 "The EMP control plane: REST API, state in Redis, reconciler driving a cluster "
                 "backend.\n\nOptions (each also read from the environment variable shown):\n");
    for (size_t i = 0; i < NSETTINGS; i++) {
        const struct setting *s = &settings[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s %s", s->flag, s->meta);
        fprintf(out, "  %-34s %s\n  %-34s [%s%s%s]\n", left, s->help, "", s->env,
                s->def ? ", default " : "", s->def ? s->def : "");
    }
    fprintf(out, "  %-34s %s\n  %-34s %s\n", "--help", "show this help and exit", "--version",
            "show the version and exit");
}

static int set_value(struct server_config *c, const struct setting *s, const char *value,
                     const char *source, struct emp_error *err)
{
    char *base = (char *)c;
    switch (s->kind) {
    case K_STRING: {
        char **slot = (char **)(base + s->offset);
        if (value[0] == '\0')
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, s->flag,
                                 "%s: --%s must not be empty", source, s->flag);
        char *copy = strdup(value);
        if (!copy)
            return -ENOMEM;
        free(*slot);
        *slot = copy;
        return 0;
    }
    case K_INT: {
        char *end;
        errno = 0;
        long n = strtol(value, &end, 10);
        if (errno || end == value || *end || n < s->min || n > s->max)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, s->flag,
                                 "%s: --%s '%s' is not valid: use an integer from %ld to %ld",
                                 source, s->flag, value, s->min, s->max);
        *(int *)(base + s->offset) = (int)n;
        return 0;
    }
    case K_DURATION: {
        int64_t seconds;
        if (time_parse_duration(value, &seconds) < 0 || seconds < s->min || seconds > s->max)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, s->flag,
                                 "%s: --%s '%s' is not valid: use a duration such as 90s, 15m, "
                                 "24h or 7d, from %lds to %lds",
                                 source, s->flag, value, s->min, s->max);
        *(int64_t *)(base + s->offset) = seconds;
        return 0;
    }
    case K_PORTS: {
        char *end;
        long min = strtol(value, &end, 10), max = -1;
        if (*end == '-')
            max = strtol(end + 1, &end, 10);
        if (*end || min < s->min || max > s->max || min > max)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, s->flag,
                                 "%s: --%s '%s' is not valid: use MIN-MAX with 1 <= MIN <= MAX <= "
                                 "65535, for example 31000-31999",
                                 source, s->flag, value);
        c->gateway_port_min = (int)min;
        c->gateway_port_max = (int)max;
        return 0;
    }
    case K_LISTEN: {
        const char *colon = strrchr(value, ':');
        char host[256];
        const char *h = value;
        size_t hlen = colon ? (size_t)(colon - value) : 0;
        if (hlen >= 2 && value[0] == '[' && value[hlen - 1] == ']') {
            h = value + 1;
            hlen -= 2;
        }
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (!colon || hlen == 0 || hlen >= sizeof(host) || !end || *end || end == colon + 1 ||
            port < 0 || port > 65535)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, s->flag,
                                 "%s: --listen '%s' is not valid: use HOST:PORT, for example "
                                 "127.0.0.1:7420 or [::1]:7420",
                                 source, value);
        memcpy(host, h, hlen);
        host[hlen] = '\0';
        memcpy(c->listen_host, host, hlen + 1);
        c->listen_port = (int)port;
        return 0;
    }
    }
    return -EINVAL;
}

static int default_state_dir(struct server_config *c)
{
    const char *xdg = getenv("XDG_STATE_HOME");
    const char *home = getenv("HOME");
    char path[4096];
    if (xdg && xdg[0] == '/')
        snprintf(path, sizeof(path), "%s/emp", xdg);
    else if (home && home[0] == '/')
        snprintf(path, sizeof(path), "%s/.local/state/emp", home);
    else
        snprintf(path, sizeof(path), "/var/lib/emp");
    c->state_dir = strdup(path);
    return c->state_dir ? 0 : -ENOMEM;
}

int config_parse(int argc, char **argv, struct server_config *config,
                 enum config_outcome *ret_outcome, struct emp_error *err)
{
    memset(config, 0, sizeof(*config));
    int r;
    /* defaults, then the environment, then flags */
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].def &&
            (r = set_value(config, &settings[i], settings[i].def, "default", err)) < 0)
            return r;
    for (size_t i = 0; i < NSETTINGS; i++) {
        const char *v = getenv(settings[i].env);
        if (v && v[0]) {
            char source[64];
            snprintf(source, sizeof(source), "environment variable %s", settings[i].env);
            if ((r = set_value(config, &settings[i], v, source, err)) < 0)
                return r;
        }
    }
    *ret_outcome = CONFIG_RUN;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            *ret_outcome = CONFIG_HELP;
            return 0;
        }
        if (strcmp(arg, "--version") == 0) {
            *ret_outcome = CONFIG_VERSION;
            return 0;
        }
        if (strncmp(arg, "--", 2) != 0)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, NULL,
                                 "unexpected argument '%s': emp-server takes only --options (see "
                                 "--help)",
                                 arg);
        const char *name = arg + 2;
        const char *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const struct setting *s = NULL;
        for (size_t k = 0; k < NSETTINGS && !s; k++)
            if (strlen(settings[k].flag) == name_len &&
                strncmp(settings[k].flag, name, name_len) == 0)
                s = &settings[k];
        if (!s)
            return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, NULL,
                                 "unknown option '%.*s': see emp-server --help", (int)name_len + 2,
                                 arg);
        const char *value = eq ? eq + 1 : NULL;
        if (!value) {
            if (i + 1 >= argc)
                return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, s->flag,
                                     "option --%s needs a value (%s)", s->flag, s->meta);
            value = argv[++i];
        }
        if ((r = set_value(config, s, value, "command line", err)) < 0)
            return r;
    }
    if (!config->state_dir && (r = default_state_dir(config)) < 0)
        return r;
    if (config->threads == 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        config->threads = cores > 0 ? (int)(cores > 64 ? 64 : cores) : 1;
    }
    return 0;
}

void config_free(struct server_config *config)
{
    if (!config)
        return;
    for (size_t i = 0; i < NSETTINGS; i++)
        if (settings[i].kind == K_STRING) {
            char **slot = (char **)((char *)config + settings[i].offset);
            free(*slot);
            *slot = NULL;
        }
}
