/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes objects EMP makes for an app. Each builder's output is checked here for what
 * EMP relies on, and, when EMP_MANIFEST_OUT names a directory, written there so that
 * check_manifests.py validates it against the official JSON schemas. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kube_manifest.h"

static const struct kube_manifest_options options = {
    .kafka_address = "kafka.emp-system.svc:9092",
    .zipkin_url = "http://zipkin.emp-system.svc:9411",
    .service_type = "LoadBalancer",
    .volume_size = "2Gi",
};

static struct emp_spec *spec_of(const char *text)
{
    struct emp_spec *spec;
    struct emp_errlist errs;
    emp_errlist_init(&errs);
    if (spec_parse(text, strlen(text), &spec, &errs) < 0)
        fail_msg("spec: %s", errs.items[0].message);
    return spec;
}

static void save(const char *name, json_t *doc)
{
    const char *dir = getenv("EMP_MANIFEST_OUT");
    if (!dir)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.json", dir, name);
    assert_int_equal(json_dump_file(doc, path, JSON_INDENT(2)), 0);
}

static const char *at(json_t *doc, const char *path)
{
    /* a dotted path, numbers index arrays: "spec.template.spec.containers.0.image" (label keys
     * have dots of their own: those are looked up directly) */
    json_t *v = doc;
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *part = strtok(buf, "."); part && v; part = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(part)) : json_object_get(v, part);
    static char text[256];
    if (json_is_integer(v)) {
        snprintf(text, sizeof(text), "%lld", (long long)json_integer_value(v));
        return text;
    }
    return json_string_value(v);
}

static const char *env_value(json_t *doc, const char *name)
{
    json_t *env = json_object_get(
        json_array_get(
            json_object_get(
                json_object_get(json_object_get(json_object_get(doc, "spec"), "template"), "spec"),
                "containers"),
            0),
        "env");
    size_t i;
    json_t *e;
    json_array_foreach(env, i, e) if (strcmp(json_string_value(json_object_get(e, "name")), name) ==
                                      0) return json_string_value(json_object_get(e, "value"));
    return NULL;
}

static const char stateless_text[] =
    "{\"name\":\"songs-ms\",\"docker_image\":\"fcribeiro/songs_ms:1.0\",\"port\":5000,"
    "\"envs\":[{\"name\":\"DB_HOST\",\"value\":\"songs-db\"}],"
    "\"resources\":{\"cpu\":\"250m\",\"memory\":\"256Mi\"},"
    "\"replicas\":{\"min\":1,\"max\":10,\"initial\":3},\"health_check\":{\"path\":\"/health\"}}";

static void test_deployment(void **state)
{
    struct emp_spec *spec = spec_of(stateless_text);
    struct cluster_app app = {.id = "0b78f0aa-6d3b-450b-81a8-07d842b61e65",
                              .owner = "alice",
                              .name = "songs-ms",
                              .spec = spec,
                              .replicas = 3};
    json_t *d = kube_workload(&app, &options);
    save("deployment", d);
    assert_string_equal(at(d, "kind"), "Deployment");
    assert_string_equal(at(d, "apiVersion"), "apps/v1");
    assert_string_equal(at(d, "metadata.namespace"), "emp-alice");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(json_object_get(d, "metadata"), "labels"),
                                          "app.kubernetes.io/managed-by")),
        "emp");
    json_t *labels = json_object_get(json_object_get(d, "metadata"), "labels");
    assert_string_equal(json_string_value(json_object_get(labels, "emp.io/app-id")), app.id);
    assert_string_equal(json_string_value(json_object_get(labels, "emp.io/owner")), "alice");
    assert_string_equal(json_string_value(json_object_get(labels, "app.kubernetes.io/name")),
                        "songs-ms");
    assert_string_equal(at(d, "spec.replicas"), "3");
    assert_string_equal(at(d, "spec.template.spec.containers.0.image"), "fcribeiro/songs_ms:1.0");
    assert_string_equal(at(d, "spec.template.spec.containers.0.ports.0.containerPort"), "5000");
    assert_string_equal(at(d, "spec.template.spec.containers.0.resources.requests.cpu"), "250m");
    assert_string_equal(at(d, "spec.template.spec.containers.0.resources.limits.memory"), "256Mi");
    assert_string_equal(at(d, "spec.template.spec.containers.0.readinessProbe.httpGet.path"),
                        "/health");
    assert_string_equal(at(d, "spec.template.spec.containers.0.livenessProbe.httpGet.port"),
                        "http");
    /* the selector and the pods' labels agree, or the Deployment is refused */
    json_t *selector =
        json_object_get(json_object_get(json_object_get(d, "spec"), "selector"), "matchLabels");
    json_t *pod_labels = json_object_get(
        json_object_get(json_object_get(json_object_get(d, "spec"), "template"), "metadata"),
        "labels");
    assert_string_equal(json_string_value(json_object_get(selector, "emp.io/app-id")),
                        json_string_value(json_object_get(pod_labels, "emp.io/app-id")));
    assert_string_equal(env_value(d, "DB_HOST"), "songs-db");
    assert_string_equal(env_value(d, "KAFKAADDRESS"), "kafka.emp-system.svc:9092");
    assert_string_equal(env_value(d, "EMP_SERVICE_NAME"), "alice/songs-ms");
    assert_string_equal(env_value(d, "EMP_APP_ID"), app.id);
    assert_string_equal(env_value(d, "EMP_ZIPKIN_URL"), "http://zipkin.emp-system.svc:9411");
    assert_string_equal(env_value(d, "PORT"), "5000");
    assert_null(env_value(d, "EMP_DATA_DIR"));
    assert_null(json_object_get(json_object_get(d, "spec"), "volumeClaimTemplates"));
    json_decref(d);

    json_t *svc = kube_service(&app, &options);
    save("service", svc);
    assert_string_equal(at(svc, "kind"), "Service");
    assert_string_equal(at(svc, "metadata.name"), "songs-ms");
    assert_string_equal(at(svc, "spec.type"), "LoadBalancer");
    assert_string_equal(at(svc, "spec.ports.0.port"), "5000");
    assert_string_equal(at(svc, "spec.ports.0.targetPort"), "http");
    json_decref(svc);
    spec_free(spec);
}

static void test_statefulset(void **state)
{
    struct emp_spec *spec =
        spec_of("{\"name\":\"db\",\"docker_image\":\"postgres:16\",\"port\":5432,"
                "\"stateless\":false,\"replicas\":{\"initial\":2}}");
    struct cluster_app app = {.id = "11111111-2222-4333-8444-555555555555",
                              .owner = "bob",
                              .name = "db",
                              .spec = spec,
                              .replicas = 2};
    json_t *s = kube_workload(&app, &options);
    save("statefulset", s);
    assert_string_equal(at(s, "kind"), "StatefulSet");
    assert_string_equal(at(s, "spec.serviceName"), "db-headless");
    assert_string_equal(at(s, "spec.volumeClaimTemplates.0.metadata.name"), "data");
    assert_string_equal(at(s, "spec.volumeClaimTemplates.0.spec.resources.requests.storage"),
                        "2Gi");
    /* claims stay when the app stops, shrinks or goes */
    assert_string_equal(at(s, "spec.persistentVolumeClaimRetentionPolicy.whenDeleted"), "Retain");
    assert_string_equal(at(s, "spec.persistentVolumeClaimRetentionPolicy.whenScaled"), "Retain");
    assert_string_equal(at(s, "spec.template.spec.containers.0.volumeMounts.0.mountPath"), "/data");
    assert_string_equal(env_value(s, "EMP_DATA_DIR"), "/data");
    /* without health_check: a TCP probe */
    assert_string_equal(at(s, "spec.template.spec.containers.0.readinessProbe.tcpSocket.port"),
                        "http");
    assert_null(at(s, "spec.template.spec.containers.0.resources.limits.cpu"));
    json_decref(s);

    json_t *h = kube_headless_service(&app);
    save("headless-service", h);
    assert_string_equal(at(h, "metadata.name"), "db-headless");
    assert_string_equal(at(h, "spec.clusterIP"), "None");
    json_decref(h);
    spec_free(spec);
}

static void test_namespace_and_scale(void **state)
{
    json_t *ns = kube_namespace("alice");
    save("namespace", ns);
    assert_string_equal(at(ns, "kind"), "Namespace");
    assert_string_equal(at(ns, "metadata.name"), "emp-alice");
    json_decref(ns);
    char name[64];
    kube_namespace_name("a-forty-character-username-is-the-longest", name, sizeof(name));
    assert_true(strlen(name) <= 63); /* a namespace is a DNS-1123 label */
    json_t *patch = kube_scale_patch(7);
    char *text = json_dumps(patch, JSON_COMPACT);
    assert_string_equal(text, "{\"spec\":{\"replicas\":7}}");
    free(text);
    json_decref(patch);
}

static void test_service_types(void **state)
{
    struct emp_spec *spec = spec_of(stateless_text);
    struct cluster_app app = {.id = "0b78f0aa-6d3b-450b-81a8-07d842b61e65",
                              .owner = "alice",
                              .name = "songs-ms",
                              .spec = spec,
                              .replicas = 1};
    struct kube_manifest_options node_port = options;
    node_port.service_type = "NodePort";
    json_t *svc = kube_service(&app, &node_port);
    save("service-nodeport", svc);
    assert_string_equal(at(svc, "spec.type"), "NodePort");
    json_decref(svc);
    spec_free(spec);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_deployment),
        cmocka_unit_test(test_statefulset),
        cmocka_unit_test(test_namespace_and_scale),
        cmocka_unit_test(test_service_types),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
