/* SPDX-License-Identifier: Apache-2.0 */
/* Kubeconfig, flags and in-cluster configuration. The kubeconfig is read with libyaml into a
 * JSON tree (YAML is a superset of the JSON it holds), so the rest is plain lookups. Exec plugins
 * run with posix_spawn (emp-server is multi-threaded), bounded in time and output. */
#include "kube_config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml.h>

#include "emp/timeutil.h"

#define FILE_MAX         (1024 * 1024) /* kubeconfigs, tokens, certificates */
#define EXEC_TIMEOUT_MS  30000
#define EXEC_OUTPUT_MAX  (1024 * 1024)
#define EXPIRY_MARGIN_MS 30000 /* a plugin token is renewed this long before it expires */
#define SERVICE_ACCOUNT  "/var/run/secrets/kubernetes.io/serviceaccount"

extern char **environ;

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* Reads a whole file (at most FILE_MAX bytes) into a NUL-terminated buffer. */
static int read_file(const char *path, char **ret_text, size_t *ret_len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *buf = malloc(FILE_MAX + 1);
    size_t len = 0;
    ssize_t n = 0;
    while (buf && len < FILE_MAX && (n = read(fd, buf + len, FILE_MAX - len)) > 0)
        len += (size_t)n;
    close(fd);
    if (!buf)
        return -ENOMEM;
    if (n < 0) {
        free(buf);
        return -EIO;
    }
    buf[len] = '\0';
    *ret_text = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
}

static char *trimmed(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        s[--len] = '\0';
    return s;
}

/* Decodes base64 (certificate-authority-data and the like). */
static int base64_decode(const char *in, char **ret, size_t *ret_len)
{
    size_t len = strlen(in);
    char *out = malloc(len / 4 * 3 + 4);
    if (!out)
        return -ENOMEM;
    unsigned value = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+' || c == '-')
            v = 62;
        else if (c == '/' || c == '_')
            v = 63;
        else if (c == '=' || c == '\n' || c == '\r' || c == ' ')
            continue;
        else {
            free(out);
            return -EINVAL;
        }
        value = (value << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (char)((value >> bits) & 0xff);
        }
    }
    out[o] = '\0';
    *ret = out;
    *ret_len = o;
    return 0;
}

/* ---- YAML to JSON ---- */

static json_t *yaml_node_to_json(yaml_document_t *doc, yaml_node_t *node, int depth)
{
    if (!node || depth > 64)
        return NULL;
    switch (node->type) {
    case YAML_SCALAR_NODE:
        return json_stringn((const char *)node->data.scalar.value, node->data.scalar.length);
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();
        for (yaml_node_item_t *item = node->data.sequence.items.start;
             item < node->data.sequence.items.top; item++) {
            json_t *v = yaml_node_to_json(doc, yaml_document_get_node(doc, *item), depth + 1);
            if (v)
                json_array_append_new(arr, v);
        }
        return arr;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();
        for (yaml_node_pair_t *pair = node->data.mapping.pairs.start;
             pair < node->data.mapping.pairs.top; pair++) {
            yaml_node_t *key = yaml_document_get_node(doc, pair->key);
            if (!key || key->type != YAML_SCALAR_NODE)
                continue;
            json_t *v = yaml_node_to_json(doc, yaml_document_get_node(doc, pair->value), depth + 1);
            if (v)
                json_object_setn_new(obj, (const char *)key->data.scalar.value,
                                     key->data.scalar.length, v);
        }
        return obj;
    }
    default:
        return NULL;
    }
}

static json_t *parse_yaml(const char *text, size_t len, char *why, size_t why_size)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser))
        return NULL;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    json_t *root = NULL;
    if (!yaml_parser_load(&parser, &doc)) {
        snprintf(why, why_size, "%s at line %zu", parser.problem ? parser.problem : "bad YAML",
                 parser.problem_mark.line + 1);
    } else {
        root = yaml_node_to_json(&doc, yaml_document_get_root_node(&doc), 0);
        if (!root)
            snprintf(why, why_size, "it is empty");
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    return root;
}

/* The "name"d entry of a kubeconfig list (clusters, contexts, users), its inner object. */
static json_t *named(json_t *root, const char *list, const char *inner, const char *name)
{
    size_t i;
    json_t *item;
    json_array_foreach(json_object_get(root, list), i, item)
    {
        const char *n = json_string_value(json_object_get(item, "name"));
        if (n && name && strcmp(n, name) == 0)
            return json_object_get(item, inner);
    }
    return NULL;
}

static const char *str(json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static bool truthy(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    const char *s = json_string_value(v);
    return json_is_true(v) || (s && (strcmp(s, "true") == 0 || strcmp(s, "True") == 0));
}

/* A path from a kubeconfig: relative ones are relative to the kubeconfig's directory. */
static char *resolve(const char *base_dir, const char *path)
{
    if (!path)
        return NULL;
    if (path[0] == '/' || !base_dir)
        return strdup(path);
    char *full = NULL;
    if (asprintf(&full, "%s/%s", base_dir, path) < 0)
        return NULL;
    return full;
}

/* ---- loading ---- */

void kube_config_free(struct kube_config *c)
{
    if (!c)
        return;
    free(c->server);
    free(c->ca_file);
    free(c->ca_pem);
    free(c->cert_file);
    free(c->cert_pem);
    free(c->key_file);
    free(c->key_pem);
    if (c->token)
        memset(c->token, 0, strlen(c->token));
    free(c->token);
    free(c->token_file);
    for (char **p = c->exec_argv; p && *p; p++)
        free(*p);
    free(c->exec_argv);
    for (char **p = c->exec_env; p && *p; p++)
        free(*p);
    free(c->exec_env);
    free(c->exec_api_version);
    free(c->source);
    free(c->credential);
    if (c->exec_token)
        memset(c->exec_token, 0, strlen(c->exec_token));
    free(c->exec_token);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static struct kube_config *config_new(void)
{
    struct kube_config *c = calloc(1, sizeof(*c));
    if (c)
        pthread_mutex_init(&c->lock, NULL);
    return c;
}

static int set_server(struct kube_config *c, const char *server, const char *where,
                      struct emp_error *err)
{
    if (!server || !server[0])
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kube-server",
                             "%s gives no API server address", where);
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kube-server",
                             "the API server '%.200s' (%s) is not an https:// URL", server, where);
    c->server = strdup(server);
    size_t len = strlen(c->server);
    while (len > 0 && c->server[len - 1] == '/')
        c->server[--len] = '\0';
    return 0;
}

/* Reads the text of base64 data into pem (certificate-authority-data, client-*-data). */
static int take_data(json_t *obj, const char *key, char **pem, size_t *pem_len, const char *where,
                     struct emp_error *err)
{
    const char *data = str(obj, key);
    if (!data)
        return 0;
    if (base64_decode(data, pem, pem_len) < 0)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kubeconfig",
                             "%s: %s is not base64", where, key);
    return 0;
}

int kube_config_parse(const char *text, size_t len, const char *base_dir, const char *context,
                      const char *source_name, struct kube_config **ret_config,
                      struct emp_error *err)
{
    char why[256] = "";
    json_t *root = parse_yaml(text, len, why, sizeof(why));
    if (!root)
        return emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kubeconfig",
                             "%s is not a kubeconfig: %s", source_name, why);
    struct kube_config *c = config_new();
    int r = -ENOMEM;
    if (!c)
        goto out;
    const char *ctx_name = context ? context : str(root, "current-context");
    r = -EINVAL;
    if (!ctx_name || !ctx_name[0]) {
        emp_error_set(err, r, EMP_ERR_INVALID_FIELD, "kube-context",
                      "%s has no current-context: give --kube-context", source_name);
        goto out;
    }
    json_t *ctx = named(root, "contexts", "context", ctx_name);
    if (!ctx) {
        emp_error_set(err, r, EMP_ERR_INVALID_FIELD, "kube-context", "%s has no context '%.100s'",
                      source_name, ctx_name);
        goto out;
    }
    const char *cluster_name = str(ctx, "cluster");
    const char *user_name = str(ctx, "user");
    json_t *cluster = named(root, "clusters", "cluster", cluster_name);
    if (!cluster) {
        emp_error_set(err, r, EMP_ERR_INVALID_FIELD, "kubeconfig",
                      "%s: context '%.100s' names cluster '%.100s', which it does not define",
                      source_name, ctx_name, cluster_name ? cluster_name : "");
        goto out;
    }
    if (asprintf(&c->source, "%s, context %s", source_name, ctx_name) < 0)
        goto out;
    if ((r = set_server(c, str(cluster, "server"), c->source, err)) < 0)
        goto out;
    c->insecure = truthy(cluster, "insecure-skip-tls-verify");
    c->ca_file = resolve(base_dir, str(cluster, "certificate-authority"));
    if ((r = take_data(cluster, "certificate-authority-data", &c->ca_pem, &c->ca_pem_len, c->source,
                       err)) < 0)
        goto out;
    json_t *user = user_name ? named(root, "users", "user", user_name) : NULL;
    if (user_name && !user) {
        r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kubeconfig",
                          "%s: context '%.100s' names user '%.100s', which it does not define",
                          source_name, ctx_name, user_name);
        goto out;
    }
    c->token = xstrdup(str(user, "token"));
    c->token_file = resolve(base_dir, str(user, "tokenFile"));
    c->cert_file = resolve(base_dir, str(user, "client-certificate"));
    c->key_file = resolve(base_dir, str(user, "client-key"));
    if ((r = take_data(user, "client-certificate-data", &c->cert_pem, &c->cert_pem_len, c->source,
                       err)) < 0 ||
        (r = take_data(user, "client-key-data", &c->key_pem, &c->key_pem_len, c->source, err)) < 0)
        goto out;
    json_t *exec = json_object_get(user, "exec");
    if (exec) {
        const char *command = str(exec, "command");
        json_t *args = json_object_get(exec, "args");
        json_t *env = json_object_get(exec, "env");
        if (!command) {
            r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kubeconfig",
                              "%s: user '%.100s' has an exec plugin without a command", c->source,
                              user_name);
            goto out;
        }
        size_t nargs = json_array_size(args), nenv = json_array_size(env);
        c->exec_argv = calloc(nargs + 2, sizeof(char *));
        c->exec_env = calloc(nenv + 1, sizeof(char *));
        if (!c->exec_argv || !c->exec_env)
            goto out;
        /* a command with a '/' is relative to the kubeconfig, like kubectl resolves it */
        c->exec_argv[0] = strchr(command, '/') ? resolve(base_dir, command) : strdup(command);
        for (size_t i = 0; i < nargs; i++)
            c->exec_argv[i + 1] = xstrdup(json_string_value(json_array_get(args, i)));
        size_t k = 0;
        for (size_t i = 0; i < nenv; i++) {
            const char *n = str(json_array_get(env, i), "name");
            const char *v = str(json_array_get(env, i), "value");
            if (n && v && asprintf(&c->exec_env[k], "%s=%s", n, v) > 0)
                k++;
        }
        const char *api = str(exec, "apiVersion");
        c->exec_api_version = strdup(api ? api : "client.authentication.k8s.io/v1");
    }
    if (c->exec_argv)
        r = asprintf(&c->credential, "the token of exec plugin '%s' (%s, user %s)", c->exec_argv[0],
                     c->source, user_name);
    else if (c->token)
        r = asprintf(&c->credential, "the token of user '%s' (%s)", user_name, c->source);
    else if (c->token_file)
        r = asprintf(&c->credential, "the token in %s (user '%s', %s)", c->token_file, user_name,
                     c->source);
    else if (c->cert_file || c->cert_pem)
        r = asprintf(&c->credential, "the client certificate of user '%s' (%s)", user_name,
                     c->source);
    else
        r = asprintf(&c->credential, "no credential (%s)", c->source);
    r = r < 0 ? -ENOMEM : 0;
out:
    json_decref(root);
    if (r < 0) {
        kube_config_free(c);
        return r;
    }
    *ret_config = c;
    return 0;
}

static int from_flags(const struct kube_config_source *src, struct kube_config **ret,
                      struct emp_error *err)
{
    struct kube_config *c = config_new();
    if (!c)
        return -ENOMEM;
    int r = set_server(c, src->server, "--kube-server", err);
    if (r == 0 && !src->token_file)
        r = emp_error_set(err, -EINVAL, EMP_ERR_INVALID_FIELD, "kube-token-file",
                          "--kube-server needs --kube-token-file: the file holding the bearer "
                          "token EMP authenticates with");
    if (r == 0) {
        c->token_file = strdup(src->token_file);
        c->ca_file = xstrdup(src->ca_file);
        if (asprintf(&c->source, "--kube-server %s", src->server) < 0 ||
            asprintf(&c->credential, "the token in %s (--kube-token-file)", src->token_file) < 0)
            r = -ENOMEM;
    }
    if (r < 0) {
        kube_config_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

static int in_cluster(const struct kube_config_source *src, struct kube_config **ret,
                      struct emp_error *err)
{
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    const char *dir = src->service_account_dir ? src->service_account_dir : SERVICE_ACCOUNT;
    struct kube_config *c = config_new();
    if (!c)
        return -ENOMEM;
    int r = 0;
    char *server = NULL;
    bool v6 = strchr(host, ':') != NULL;
    if (asprintf(&server, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                 port ? port : "443") < 0 ||
        asprintf(&c->token_file, "%s/token", dir) < 0 ||
        asprintf(&c->ca_file, "%s/ca.crt", dir) < 0 ||
        asprintf(&c->source, "the pod's service account (%s)", dir) < 0 ||
        asprintf(&c->credential, "the service account token in %s/token", dir) < 0)
        r = -ENOMEM;
    if (r == 0)
        r = set_server(c, server, "KUBERNETES_SERVICE_HOST", err);
    free(server);
    if (r == 0 && access(c->token_file, R_OK) < 0)
        r = emp_error_set(err, -ENOENT, EMP_ERR_INVALID_FIELD, "cluster",
                          "running in a pod, but its service account token %s cannot be read: "
                          "mount the service account, or give --kubeconfig",
                          c->token_file);
    if (r < 0) {
        kube_config_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

int kube_config_load(const struct kube_config_source *src, struct kube_config **ret_config,
                     struct emp_error *err)
{
    if (src->server || src->token_file)
        return from_flags(src, ret_config, err);
    char path[4096] = "";
    const char *env = getenv("KUBECONFIG");
    const char *home = getenv("HOME");
    if (src->kubeconfig)
        snprintf(path, sizeof(path), "%s", src->kubeconfig);
    else if (env && env[0])
        snprintf(path, sizeof(path), "%.*s", (int)strcspn(env, ":"), env); /* the first file */
    else if (home)
        snprintf(path, sizeof(path), "%s/.kube/config", home);
    bool given = src->kubeconfig || (env && env[0]);
    if (path[0] && (given || access(path, F_OK) == 0)) {
        char *text;
        size_t len;
        int r = read_file(path, &text, &len);
        if (r < 0)
            return emp_error_set(err, r, EMP_ERR_INVALID_FIELD, "kubeconfig",
                                 "cannot read the kubeconfig %s: %s", path, strerror(-r));
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash)
            *slash = '\0';
        else
            snprintf(dir, sizeof(dir), ".");
        char name[4200];
        snprintf(name, sizeof(name), "kubeconfig %s", path);
        r = kube_config_parse(text, len, dir, src->context, name, ret_config, err);
        free(text);
        return r;
    }
    if (getenv("KUBERNETES_SERVICE_HOST"))
        return in_cluster(src, ret_config, err);
    return emp_error_set(err, -ENOENT, EMP_ERR_INVALID_FIELD, "cluster",
                         "no Kubernetes configuration: give --kube-server with "
                         "--kube-token-file, or --kubeconfig (there is no $KUBECONFIG and no "
                         "~/.kube/config), or run emp-server in a pod");
}

/* ---- tokens ---- */

/* Runs the exec plugin, reads its ExecCredential, and caches the token. Lock held. */
static int run_plugin(struct kube_config *c, struct emp_error *err)
{
    int out[2];
    if (pipe2(out, O_CLOEXEC) < 0)
        return emp_error_set(err, -errno, EMP_ERR_CLUSTER_UNAVAILABLE, NULL, "pipe: %s",
                             strerror(errno));
    /* the environment: ours, the plugin's own, and what the exec protocol says */
    size_t n = 0;
    while (environ[n])
        n++;
    size_t extra = 0;
    while (c->exec_env[extra])
        extra++;
    char **envp = calloc(n + extra + 2, sizeof(char *));
    char *info = NULL;
    if (!envp || asprintf(&info,
                          "KUBERNETES_EXEC_INFO={\"apiVersion\":\"%s\",\"kind\":\"ExecCredential\","
                          "\"spec\":{\"interactive\":false}}",
                          c->exec_api_version) < 0) {
        free(envp);
        close(out[0]);
        close(out[1]);
        return -ENOMEM;
    }
    memcpy(envp, environ, n * sizeof(char *));
    memcpy(envp + n, c->exec_env, extra * sizeof(char *));
    envp[n + extra] = info;
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    pid_t pid;
    int rc = posix_spawnp(&pid, c->exec_argv[0], &actions, NULL, c->exec_argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    close(out[1]);
    free(info);
    free(envp);
    if (rc != 0) {
        close(out[0]);
        return emp_error_set(err, -rc, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                             "cannot run the exec credential plugin '%s' (%s): %s", c->exec_argv[0],
                             c->source, strerror(rc));
    }
    char *buf = malloc(EXEC_OUTPUT_MAX + 1);
    size_t len = 0;
    int64_t deadline = time_mono_ms() + EXEC_TIMEOUT_MS;
    bool timed_out = false;
    while (buf && len < EXEC_OUTPUT_MAX) {
        struct pollfd pfd = {.fd = out[0], .events = POLLIN};
        int64_t left = deadline - time_mono_ms();
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
            timed_out = true;
            break;
        }
        ssize_t got = read(out[0], buf + len, EXEC_OUTPUT_MAX - len);
        if (got <= 0)
            break;
        len += (size_t)got;
    }
    close(out[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    waitpid(pid, &status, 0);
    int r = 0;
    if (!buf) {
        r = -ENOMEM;
    } else if (timed_out) {
        r = emp_error_set(err, -ETIMEDOUT, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                          "the exec credential plugin '%s' did not answer within %d s",
                          c->exec_argv[0], EXEC_TIMEOUT_MS / 1000);
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        r = emp_error_set(err, -EIO, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                          "the exec credential plugin '%s' failed (status %d): is it logged in "
                          "(for GKE: gcloud auth login)?",
                          c->exec_argv[0], WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    } else {
        buf[len] = '\0';
        json_t *doc = json_loads(buf, 0, NULL);
        json_t *st = json_object_get(doc, "status");
        const char *token = json_string_value(json_object_get(st, "token"));
        const char *expiry = json_string_value(json_object_get(st, "expirationTimestamp"));
        if (!token || !token[0]) {
            r = emp_error_set(err, -EINVAL, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                              "the exec credential plugin '%s' printed no ExecCredential with "
                              "status.token",
                              c->exec_argv[0]);
        } else {
            free(c->exec_token);
            c->exec_token = strdup(token);
            int64_t ms = 0;
            c->exec_expires_ms = expiry && time_parse_rfc3339(expiry, &ms) == 0 ? ms : 0;
        }
        json_decref(doc);
    }
    free(buf);
    return r;
}

int kube_config_token(struct kube_config *c, char *buf, size_t size, struct emp_error *err)
{
    if (c->exec_argv) {
        pthread_mutex_lock(&c->lock);
        int r = 0;
        if (!c->exec_token ||
            (c->exec_expires_ms && time_now_ms() > c->exec_expires_ms - EXPIRY_MARGIN_MS))
            r = run_plugin(c, err);
        if (r == 0)
            snprintf(buf, size, "%s", c->exec_token);
        pthread_mutex_unlock(&c->lock);
        return r < 0 ? r : 1;
    }
    if (c->token) {
        snprintf(buf, size, "%s", c->token);
        return 1;
    }
    if (c->token_file) {
        /* read each time: mounted service account tokens are rotated in place */
        char *text;
        int r = read_file(c->token_file, &text, NULL);
        if (r < 0)
            return emp_error_set(err, r, EMP_ERR_CLUSTER_UNAVAILABLE, NULL,
                                 "cannot read the token file %s: %s", c->token_file, strerror(-r));
        snprintf(buf, size, "%s", trimmed(text));
        memset(text, 0, strlen(text));
        free(text);
        return 1;
    }
    return 0;
}

void kube_config_token_refused(struct kube_config *c)
{
    pthread_mutex_lock(&c->lock);
    if (c->exec_token)
        memset(c->exec_token, 0, strlen(c->exec_token));
    free(c->exec_token);
    c->exec_token = NULL;
    pthread_mutex_unlock(&c->lock);
}
