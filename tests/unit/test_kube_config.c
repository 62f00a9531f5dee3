/* SPDX-License-Identifier: Apache-2.0 */
/* Finding the Kubernetes API and EMP's credential: kubeconfig parsing (tokens, certificates,
 * contexts, exec plugins with their cached tokens), flags and the pod's service account. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "emp/timeutil.h"
#include "kube_config.h"

static char dir[64];

static int setup(void **state)
{
    snprintf(dir, sizeof(dir), "/tmp/emp-unit-kube-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text, int mode)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static struct kube_config *parse(const char *yaml, const char *context)
{
    struct kube_config *c = NULL;
    struct emp_error err = {0};
    if (kube_config_parse(yaml, strlen(yaml), dir, context, "kubeconfig test", &c, &err) < 0)
        fail_msg("refused: %s", err.message);
    return c;
}

/* "hello CA" in base64 */
#define CA_DATA "aGVsbG8gQ0E="

static const char token_config[] = "apiVersion: v1\n"
                                   "kind: Config\n"
                                   "current-context: dev\n"
                                   "clusters:\n"
                                   "- name: c1\n"
                                   "  cluster:\n"
                                   "    server: https://10.0.0.1:6443/\n"
                                   "    certificate-authority-data: " CA_DATA "\n"
                                   "- name: c2\n"
                                   "  cluster:\n"
                                   "    server: https://k8s.example.com\n"
                                   "    insecure-skip-tls-verify: true\n"
                                   "contexts:\n"
                                   "- name: dev\n"
                                   "  context: {cluster: c1, user: alice}\n"
                                   "- name: prod\n"
                                   "  context:\n"
                                   "    cluster: c2\n"
                                   "    user: bob\n"
                                   "users:\n"
                                   "- name: alice\n"
                                   "  user:\n"
                                   "    token: s3cr3t-token\n"
                                   "- name: bob\n"
                                   "  user:\n"
                                   "    client-certificate: certs/bob.crt\n"
                                   "    client-key-data: a2V5\n";

static void test_token_and_ca_data(void **state)
{
    struct kube_config *c = parse(token_config, NULL);
    assert_string_equal(c->server, "https://10.0.0.1:6443"); /* trailing '/' dropped */
    assert_int_equal(c->ca_pem_len, 8);
    assert_memory_equal(c->ca_pem, "hello CA", 8);
    assert_false(c->insecure);
    char token[128];
    struct emp_error err = {0};
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    assert_string_equal(token, "s3cr3t-token");
    /* messages name the credential, never its value */
    assert_non_null(strstr(c->credential, "user 'alice'"));
    assert_null(strstr(c->credential, "s3cr3t"));
    kube_config_free(c);
}

static void test_context_certificates_insecure(void **state)
{
    struct kube_config *c = parse(token_config, "prod");
    assert_string_equal(c->server, "https://k8s.example.com");
    assert_true(c->insecure);
    /* relative to the kubeconfig's directory, as kubectl reads it */
    char expected[128];
    snprintf(expected, sizeof(expected), "%s/certs/bob.crt", dir);
    assert_string_equal(c->cert_file, expected);
    assert_memory_equal(c->key_pem, "key", 3);
    char token[64];
    struct emp_error err = {0};
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 0); /* no token: certs */
    assert_non_null(strstr(c->credential, "client certificate of user 'bob'"));
    kube_config_free(c);
}

static void refused(const char *yaml, const char *context, const char *needle)
{
    struct kube_config *c = NULL;
    struct emp_error err = {0};
    assert_true(kube_config_parse(yaml, strlen(yaml), dir, context, "kubeconfig test", &c, &err) <
                0);
    assert_null(c);
    if (!strstr(err.message, needle))
        fail_msg("message '%s' lacks '%s'", err.message, needle);
}

static void test_refusals(void **state)
{
    refused(token_config, "staging", "no context 'staging'");
    refused("clusters: []\n", NULL, "no current-context");
    refused("current-context: x\ncontexts:\n- name: x\n  context: {cluster: nope, user: u}\n", NULL,
            "cluster 'nope'");
    refused("a: [unclosed\n", NULL, "is not a kubeconfig");
    refused("current-context: x\nclusters:\n- name: c\n  cluster: {server: ftp://h}\n"
            "contexts:\n- name: x\n  context: {cluster: c}\n",
            NULL, "not an https:// URL");
}

static void test_exec_plugin(void **state)
{
    /* a plugin that counts its runs and hands out a token valid for 10 minutes */
    char script[1024];
    int64_t expiry = time_now_ms() + 600000;
    char when[TIME_RFC3339_LEN];
    time_format_rfc3339(expiry, when);
    snprintf(script, sizeof(script),
             "#!/bin/sh\n"
             "echo run >> '%s/runs'\n"
             "case \"$KUBERNETES_EXEC_INFO\" in *ExecCredential*) ;; *) exit 3 ;; esac\n"
             "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
             "\"ExecCredential\",\"status\":{\"token\":\"tok-%%s\",\"expirationTimestamp\":"
             "\"%s\"}}' \"$EXTRA\"\n",
             dir, when);
    write_file("plugin.sh", script, 0755);
    const char yaml[] = "current-context: gke\n"
                        "clusters:\n- name: g\n  cluster: {server: 'https://34.1.2.3'}\n"
                        "contexts:\n- name: gke\n  context: {cluster: g, user: u}\n"
                        "users:\n- name: u\n  user:\n    exec:\n"
                        "      apiVersion: client.authentication.k8s.io/v1beta1\n"
                        "      command: ./plugin.sh\n"
                        "      args: [--quiet]\n"
                        "      env:\n      - {name: EXTRA, value: xyz}\n"
                        "      interactiveMode: Never\n";
    struct kube_config *c = parse(yaml, NULL);
    char token[128];
    struct emp_error err = {0};
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    assert_string_equal(token, "tok-xyz");
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    char runs_path[128];
    snprintf(runs_path, sizeof(runs_path), "%s/runs", dir);
    FILE *f = fopen(runs_path, "r");
    int runs = 0;
    char line[16];
    while (fgets(line, sizeof(line), f))
        runs++;
    fclose(f);
    assert_int_equal(runs, 1); /* cached until it expires */
    /* refused by the server: the next call runs the plugin again */
    kube_config_token_refused(c);
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    f = fopen(runs_path, "r");
    runs = 0;
    while (fgets(line, sizeof(line), f))
        runs++;
    fclose(f);
    assert_int_equal(runs, 2);
    assert_non_null(strstr(c->credential, "exec plugin"));
    kube_config_free(c);

    /* a plugin that fails says so, and what to try */
    write_file("broken.sh", "#!/bin/sh\nexit 1\n", 0755);
    const char broken[] = "current-context: gke\n"
                          "clusters:\n- name: g\n  cluster: {server: 'https://34.1.2.3'}\n"
                          "contexts:\n- name: gke\n  context: {cluster: g, user: u}\n"
                          "users:\n- name: u\n  user:\n    exec: {command: ./broken.sh}\n";
    c = parse(broken, NULL);
    assert_true(kube_config_token(c, token, sizeof(token), &err) < 0);
    assert_non_null(strstr(err.message, "failed (status 1)"));
    kube_config_free(c);
}

static void test_flags_and_token_files(void **state)
{
    write_file("token", "first-token\n", 0600);
    char token_path[128];
    snprintf(token_path, sizeof(token_path), "%s/token", dir);
    struct kube_config_source src = {
        .server = "https://127.0.0.1:6443", .token_file = token_path, .kubeconfig = "/nonexistent"};
    struct kube_config *c;
    struct emp_error err = {0};
    /* flags come first, whatever else is configured */
    assert_int_equal(kube_config_load(&src, &c, &err), 0);
    char token[128];
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    assert_string_equal(token, "first-token");
    /* rotated in place: the next call sends the new one */
    write_file("token", "second-token\n", 0600);
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    assert_string_equal(token, "second-token");
    kube_config_free(c);

    struct kube_config_source only_server = {.server = "https://127.0.0.1:6443"};
    assert_int_equal(kube_config_load(&only_server, &c, &err), -EINVAL);
    assert_non_null(strstr(err.message, "--kube-token-file"));
}

static void test_kubeconfig_file_and_in_cluster(void **state)
{
    write_file("config", token_config, 0600);
    char path[128];
    snprintf(path, sizeof(path), "%s/config", dir);
    struct kube_config_source src = {.kubeconfig = path, .context = "dev"};
    struct kube_config *c;
    struct emp_error err = {0};
    assert_int_equal(kube_config_load(&src, &c, &err), 0);
    assert_non_null(strstr(c->source, path));
    kube_config_free(c);

    /* in a pod: the service account */
    mkdir(strcat(strcpy(path, dir), "/sa"), 0700);
    write_file("sa/token", "pod-token", 0600);
    write_file("sa/ca.crt", "CA", 0600);
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    setenv("HOME", dir, 1); /* no ~/.kube/config there */
    unsetenv("KUBECONFIG");
    struct kube_config_source pod = {.service_account_dir = path};
    assert_int_equal(kube_config_load(&pod, &c, &err), 0);
    assert_string_equal(c->server, "https://10.96.0.1:443");
    char token[64];
    assert_int_equal(kube_config_token(c, token, sizeof(token), &err), 1);
    assert_string_equal(token, "pod-token");
    kube_config_free(c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    emp_error_clear(&err);
    assert_int_equal(kube_config_load(&pod, &c, &err), -ENOENT);
    assert_non_null(strstr(err.message, "no Kubernetes configuration"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_token_and_ca_data),
        cmocka_unit_test(test_context_certificates_insecure),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_exec_plugin),
        cmocka_unit_test(test_flags_and_token_files),
        cmocka_unit_test(test_kubeconfig_file_and_in_cluster),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
