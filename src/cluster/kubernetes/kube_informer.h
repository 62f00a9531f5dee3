/* SPDX-License-Identifier: Apache-2.0 */
/* A cache of one kind of object EMP manages (Deployments, StatefulSets, Services, Pods), kept by
 * one paginated LIST and then a WATCH, listed again when the watch expires (410 Gone). Status
 * questions are answered from it, so the backend's cost in API calls does not grow with the
 * number of apps. Objects are indexed by their emp.io/app-id label. */
#ifndef EMP_KUBE_INFORMER_H
#define EMP_KUBE_INFORMER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "emp/error.h"
#include "kube_client.h"

#define KUBE_LIST_PAGE 500

struct kube_informer;

/* Starts a thread that lists and watches path (a cluster-wide collection such as
 * "/apis/apps/v1/deployments") for objects matching selector. Objects are indexed by their
 * emp.io/app-id label; what the cache holds of each is what transform(obj) returns (a new
 * reference; it may share obj's values), so that it can keep only the fields its users read (a
 * pod's JSON is kilobytes, and a cache of 10,000 apps holds tens of thousands of objects); NULL
 * keeps all of it. changed(ctx, app_id) is called from that thread for every app whose objects
 * changed. Free with kube_informer_stop(). */
int kube_informer_start(struct kube_client *client, const char *path, const char *selector,
                        json_t *(*transform)(json_t *obj),
                        void (*changed)(void *ctx, const char *app_id), void *ctx,
                        struct kube_informer **ret_informer, struct emp_error *err);
void kube_informer_stop(struct kube_informer *informer);

/* True once the first LIST is in. */
bool kube_informer_synced(struct kube_informer *informer);

/* Why the last LIST failed (copied into buf), when it did: true while the cache cannot be
 * brought up to date. */
bool kube_informer_error(struct kube_informer *informer, char *buf, size_t size);

/* The objects labelled with app_id, as a new JSON array (json_decref); empty when none. */
json_t *kube_informer_objects(struct kube_informer *informer, const char *app_id);

/* The app ids of every object in the cache, as a new JSON object used as a set. */
json_t *kube_informer_apps(struct kube_informer *informer);

/* Lists and watches made so far (for tests and benchmarks of the calls EMP makes). */
unsigned long kube_informer_lists(struct kube_informer *informer);

#endif
