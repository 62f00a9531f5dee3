/* SPDX-License-Identifier: Apache-2.0 */
/* Manifest builders. What goes in follows the issue: the app's image, port, envs and EMP's own
 * variables, resources as requests and limits, probes from health_check, the replica count, and
 * EMP's labels on every object so that the backend finds them again by selector. */
#include "kube_manifest.h"

#include <stdio.h>
#include <string.h>

void kube_namespace_name(const char *owner, char *buf, size_t size)
{
    snprintf(buf, size, "%s%s", KUBE_NAMESPACE_PREFIX, owner);
}

static json_t *labels(const struct cluster_app *app)
{
    return json_pack("{s:s, s:s, s:s, s:s}", KUBE_LABEL_MANAGED_BY, KUBE_MANAGER, KUBE_LABEL_APP_ID,
                     app->id, KUBE_LABEL_OWNER, app->owner, KUBE_LABEL_NAME, app->name);
}

static json_t *metadata(const struct cluster_app *app, const char *name)
{
    char ns[64];
    kube_namespace_name(app->owner, ns, sizeof(ns));
    return json_pack("{s:s, s:s, s:o}", "name", name, "namespace", ns, "labels", labels(app));
}

json_t *kube_namespace(const char *owner)
{
    char ns[64];
    kube_namespace_name(owner, ns, sizeof(ns));
    return json_pack("{s:s, s:s, s:{s:s, s:{s:s, s:s}}}", "apiVersion", "v1", "kind", "Namespace",
                     "metadata", "name", ns, "labels", KUBE_LABEL_MANAGED_BY, KUBE_MANAGER,
                     KUBE_LABEL_OWNER, owner);
}

const char *kube_workload_resource(const struct cluster_app *app)
{
    return app->spec->stateless ? "deployments" : "statefulsets";
}

static void add_env(json_t *env, const char *name, const char *value)
{
    json_array_append_new(env, json_pack("{s:s, s:s}", "name", name, "value", value));
}

static json_t *container_env(const struct cluster_app *app,
                             const struct kube_manifest_options *options)
{
    const struct emp_spec *spec = app->spec;
    json_t *env = json_array();
    for (size_t i = 0; i < spec->envs_len; i++)
        add_env(env, spec->envs[i].name, spec->envs[i].value);
    char text[128];
    snprintf(text, sizeof(text), "%d", spec->port);
    add_env(env, "PORT", text);
    if (options->kafka_address)
        add_env(env, "KAFKAADDRESS", options->kafka_address);
    if (options->zipkin_url)
        add_env(env, "EMP_ZIPKIN_URL", options->zipkin_url);
    add_env(env, "EMP_APP_ID", app->id);
    snprintf(text, sizeof(text), "%s/%s", app->owner, app->name);
    add_env(env, "EMP_SERVICE_NAME", text);
    if (!spec->stateless) {
        add_env(env, "EMP_DATA_DIR", KUBE_DATA_MOUNT);
        /* the ordinal of a StatefulSet's pod, a label Kubernetes sets since 1.28 */
        json_array_append_new(env, json_pack("{s:s, s:{s:{s:s}}}", "name", "EMP_REPLICA",
                                             "valueFrom", "fieldRef", "fieldPath",
                                             "metadata.labels['apps.kubernetes.io/pod-index']"));
    }
    return env;
}

static json_t *probe(const struct emp_spec *spec, int initial_delay, int period)
{
    json_t *p = spec->health_path ? json_pack("{s:{s:s, s:s}}", "httpGet", "path",
                                              spec->health_path, "port", KUBE_PORT_NAME)
                                  : json_pack("{s:{s:s}}", "tcpSocket", "port", KUBE_PORT_NAME);
    json_object_set_new(p, "initialDelaySeconds", json_integer(initial_delay));
    json_object_set_new(p, "periodSeconds", json_integer(period));
    json_object_set_new(p, "timeoutSeconds", json_integer(2));
    json_object_set_new(p, "failureThreshold", json_integer(3));
    return p;
}

static json_t *container(const struct cluster_app *app, const struct kube_manifest_options *options)
{
    const struct emp_spec *spec = app->spec;
    json_t *c = json_pack("{s:s, s:s, s:[{s:s, s:i, s:s}], s:o, s:o, s:o}", "name", KUBE_CONTAINER,
                          "image", spec->docker_image ? spec->docker_image : "", "ports", "name",
                          KUBE_PORT_NAME, "containerPort", spec->port, "protocol", "TCP", "env",
                          container_env(app, options), "readinessProbe", probe(spec, 0, 5),
                          "livenessProbe", probe(spec, 10, 10));
    if (spec->cpu || spec->memory) {
        /* requests and limits alike: the app gets what it declared (REQ-6) and no more */
        json_t *amounts = json_object();
        if (spec->cpu)
            json_object_set_new(amounts, "cpu", json_string(spec->cpu));
        if (spec->memory)
            json_object_set_new(amounts, "memory", json_string(spec->memory));
        json_object_set_new(c, "resources",
                            json_pack("{s:O, s:O}", "requests", amounts, "limits", amounts));
        json_decref(amounts);
    }
    if (!spec->stateless)
        json_object_set_new(
            c, "volumeMounts",
            json_pack("[{s:s, s:s}]", "name", KUBE_DATA_VOLUME, "mountPath", KUBE_DATA_MOUNT));
    return c;
}

json_t *kube_workload(const struct cluster_app *app, const struct kube_manifest_options *options)
{
    bool stateful = !app->spec->stateless;
    json_t *template = json_pack("{s:{s:o}, s:{s:[o]}}", "metadata", "labels", labels(app), "spec",
                                 "containers", container(app, options));
    json_t *spec = json_pack("{s:i, s:{s:{s:s}}, s:o}", "replicas", app->replicas, "selector",
                             "matchLabels", KUBE_LABEL_APP_ID, app->id, "template", template);
    if (stateful) {
        char headless[128];
        snprintf(headless, sizeof(headless), "%s%s", app->name, KUBE_HEADLESS_SUFFIX);
        json_object_set_new(spec, "serviceName", json_string(headless));
        /* replicas start and stop together: scaling is not a rolling affair */
        json_object_set_new(spec, "podManagementPolicy", json_string("Parallel"));
        /* claims outlive stop, scale-down and remove (PRODUCT.md: volumes stay) */
        json_object_set_new(
            spec, "persistentVolumeClaimRetentionPolicy",
            json_pack("{s:s, s:s}", "whenDeleted", "Retain", "whenScaled", "Retain"));
        json_object_set_new(spec, "volumeClaimTemplates",
                            json_pack("[{s:{s:s, s:o}, s:{s:[s], s:{s:{s:s}}}}]", "metadata",
                                      "name", KUBE_DATA_VOLUME, "labels", labels(app), "spec",
                                      "accessModes", "ReadWriteOnce", "resources", "requests",
                                      "storage",
                                      options->volume_size ? options->volume_size : "1Gi"));
    }
    return json_pack("{s:s, s:s, s:o, s:o}", "apiVersion", "apps/v1", "kind",
                     stateful ? "StatefulSet" : "Deployment", "metadata", metadata(app, app->name),
                     "spec", spec);
}

static json_t *service_ports(const struct cluster_app *app)
{
    return json_pack("[{s:s, s:i, s:s, s:s}]", "name", KUBE_PORT_NAME, "port", app->spec->port,
                     "targetPort", KUBE_PORT_NAME, "protocol", "TCP");
}

json_t *kube_service(const struct cluster_app *app, const struct kube_manifest_options *options)
{
    return json_pack("{s:s, s:s, s:o, s:{s:s, s:{s:s}, s:o}}", "apiVersion", "v1", "kind",
                     "Service", "metadata", metadata(app, app->name), "spec", "type",
                     options->service_type ? options->service_type : "LoadBalancer", "selector",
                     KUBE_LABEL_APP_ID, app->id, "ports", service_ports(app));
}

json_t *kube_headless_service(const struct cluster_app *app)
{
    char name[128];
    snprintf(name, sizeof(name), "%s%s", app->name, KUBE_HEADLESS_SUFFIX);
    return json_pack("{s:s, s:s, s:o, s:{s:s, s:{s:s}, s:o}}", "apiVersion", "v1", "kind",
                     "Service", "metadata", metadata(app, name), "spec", "clusterIP", "None",
                     "selector", KUBE_LABEL_APP_ID, app->id, "ports", service_ports(app));
}

json_t *kube_scale_patch(int replicas)
{
    return json_pack("{s:{s:i}}", "spec", "replicas", replicas);
}
