/* SPDX-License-Identifier: Apache-2.0 */
/* Where the Kubernetes API is and how to prove who EMP is: from emp-server's flags, a kubeconfig
 * file (parsed with libyaml), or the pod's service account, in that order. Also runs exec
 * credential plugins (GKE's gke-gcloud-auth-plugin) and caches their tokens until they expire.
 * No HTTP here: kube_client uses what this module finds. */
#ifndef EMP_KUBE_CONFIG_H
#define EMP_KUBE_CONFIG_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emp/error.h"

/* What emp-server was told. NULL fields were not given. */
struct kube_config_source {
    const char *server;     /* --kube-server */
    const char *token_file; /* --kube-token-file */
    const char *ca_file;    /* --kube-ca */
    const char *kubeconfig; /* --kubeconfig; NULL: $KUBECONFIG, then ~/.kube/config */
    const char *context;    /* --kube-context; NULL: the current context */
    /* where the pod's service account lives (tests point it elsewhere); NULL: the real place */
    const char *service_account_dir;
};

struct kube_config {
    char *server;  /* https://host:port, without a trailing '/' */
    char *ca_file; /* PEM file of the CA, or NULL */
    char *ca_pem;  /* PEM text of the CA (certificate-authority-data), or NULL */
    size_t ca_pem_len;
    bool insecure;   /* insecure-skip-tls-verify */
    char *cert_file; /* client certificate, PEM file or data */
    char *cert_pem;
    size_t cert_pem_len;
    char *key_file;
    char *key_pem;
    size_t key_pem_len;
    char *token;      /* a static bearer token */
    char *token_file; /* a token read from this file (again when it changes: they rotate) */
    char **exec_argv; /* an exec credential plugin, NULL-terminated */
    char **exec_env;  /* extra NAME=VALUE for it */
    char *exec_api_version;
    char *source;     /* where all this came from, for messages: "kubeconfig ~/.kube/config ..." */
    char *credential; /* which credential, for 401/403 messages: "the token in /run/...", ... */
    /* kube_config.c's own: the plugin's token and when it expires */
    pthread_mutex_t lock;
    char *exec_token;
    int64_t exec_expires_ms; /* 0: no expiry given */
};

/* Finds the configuration. Returns 0, or -EINVAL/-ENOENT with err saying what is missing or
 * wrong (and where). Free with kube_config_free(). */
int kube_config_load(const struct kube_config_source *source, struct kube_config **ret_config,
                     struct emp_error *err);
void kube_config_free(struct kube_config *config);

/* Parses kubeconfig text (YAML or JSON), for tests and kube_config_load. base_dir resolves
 * relative file paths, as kubectl does (relative to the kubeconfig's directory). */
int kube_config_parse(const char *text, size_t len, const char *base_dir, const char *context,
                      const char *source_name, struct kube_config **ret_config,
                      struct emp_error *err);

/* The bearer token to send now, if this configuration uses one: static, read from token_file, or
 * from the exec plugin (run again once its token expired). Writes it into buf (size bytes) and
 * returns 1; returns 0 when no token is used (client certificates); -errno with err when the
 * plugin or the file fails. Thread-safe. */
int kube_config_token(struct kube_config *config, char *buf, size_t size, struct emp_error *err);

/* Forgets a cached plugin token (the server refused it: 401), so the next call runs it again. */
void kube_config_token_refused(struct kube_config *config);

#endif
