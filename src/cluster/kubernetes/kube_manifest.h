/* SPDX-License-Identifier: Apache-2.0 */
/* The Kubernetes objects EMP makes for an app, as JSON documents: its user's Namespace, a
 * Deployment (stateless) or a StatefulSet with its headless Service (stateful), the app's Service,
 * and the patch that scales it. Pure functions of the app and the settings: no I/O. Used only
 * inside the Kubernetes backend. */
#ifndef EMP_KUBE_MANIFEST_H
#define EMP_KUBE_MANIFEST_H

#include <jansson.h>

#include "cluster.h"

/* The labels every object carries. */
#define KUBE_LABEL_MANAGED_BY "app.kubernetes.io/managed-by"
#define KUBE_LABEL_NAME       "app.kubernetes.io/name"
#define KUBE_LABEL_APP_ID     "emp.io/app-id"
#define KUBE_LABEL_OWNER      "emp.io/owner"
#define KUBE_MANAGER          "emp"
/* The label selector of every object EMP manages. */
#define KUBE_SELECTOR_MANAGED KUBE_LABEL_MANAGED_BY "=" KUBE_MANAGER

#define KUBE_NAMESPACE_PREFIX "emp-"
#define KUBE_HEADLESS_SUFFIX  "-headless"
#define KUBE_DATA_VOLUME      "data"
#define KUBE_DATA_MOUNT       "/data"
#define KUBE_CONTAINER        "app"
#define KUBE_PORT_NAME        "http"

struct kube_manifest_options {
    const char *kafka_address; /* KAFKAADDRESS of the apps; NULL: not set */
    const char *zipkin_url;    /* EMP_ZIPKIN_URL; NULL: not set */
    const char *service_type;  /* LoadBalancer, NodePort or ClusterIP */
    const char *volume_size;   /* the claim of each stateful replica, e.g. "1Gi" */
};

/* "emp-alice": the namespace of owner's apps (NAMESPACE_PREFIX + a DNS label of at most 40
 * characters fits Kubernetes' 63). Writes into buf (at least 64 bytes). */
void kube_namespace_name(const char *owner, char *buf, size_t size);

/* Each returns a new JSON document (json_decref), or NULL on ENOMEM. */
json_t *kube_namespace(const char *owner);
/* A Deployment for a stateless app, a StatefulSet for a stateful one; replicas = app->replicas. */
json_t *kube_workload(const struct cluster_app *app, const struct kube_manifest_options *options);
/* The app's Service (the external address). */
json_t *kube_service(const struct cluster_app *app, const struct kube_manifest_options *options);
/* The headless Service a StatefulSet names in spec.serviceName. */
json_t *kube_headless_service(const struct cluster_app *app);
/* {"spec":{"replicas":N}}, a merge patch of the /scale subresource. */
json_t *kube_scale_patch(int replicas);

/* "deployments" or "statefulsets": the resource of app's workload. */
const char *kube_workload_resource(const struct cluster_app *app);

#endif
