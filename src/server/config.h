/* SPDX-License-Identifier: Apache-2.0 */
/* emp-server's settings: command-line flags, each with an environment variable of the same meaning
 * (the flag wins), and their defaults. Parsing and --help only; nothing here acts on a setting. */
#ifndef EMP_SERVER_CONFIG_H
#define EMP_SERVER_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "emp/error.h"

struct server_config {
    char listen_host[256];
    int listen_port;
    char *redis_url;    /* NULL: run an embedded redis-server in the state directory */
    char *redis_server; /* the redis-server binary for the embedded one */
    char *state_dir;
    char *cluster;
    char *scheduler_token_file; /* NULL: no scheduler credential */
    char *zipkin_url;
    char *apps_zipkin_url; /* NULL: this emp-server's URL on the local backend, else none */
    char *kafka_brokers;   /* NULL until configured */
    char *kafka_topic;
    char *kafka_group;
    int64_t kafka_session_timeout_s;
    int kafka_inbox_mb;
    int64_t trace_lateness_s;
    int64_t trace_join_s;
    char *log_level;
    int threads;
    int64_t token_ttl_s;
    int login_max_failures;
    int64_t login_window_s;
    int max_apps_per_user;
    int max_connections;
    int reconcile_workers;
    int64_t resync_s;
    int cache_entries;
    int gateway_port_min; /* local backend */
    int gateway_port_max;
    int gateway_max_connections;
    int64_t stop_grace_s;
    int64_t ready_timeout_s;
    char *kube_server; /* Kubernetes backend */
    char *kube_token_file;
    char *kube_ca;
    char *kubeconfig;
    char *kube_context;
    char *kube_service_type;
    char *kube_volume_size;
    char *apps_kafka_address;
};

enum config_outcome { CONFIG_RUN, CONFIG_HELP, CONFIG_VERSION };

/* Fills *config from argv and the environment. Returns 0 with *ret_outcome, or -EINVAL with err
 * naming the flag and what it accepts. Free with config_free(). */
int config_parse(int argc, char **argv, struct server_config *config,
                 enum config_outcome *ret_outcome, struct emp_error *err);
void config_free(struct server_config *config);
void config_print_help(FILE *out);

#endif
