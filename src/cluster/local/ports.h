/* SPDX-License-Identifier: Apache-2.0 */
/* Gateway ports of the local backend: which app holds which port of the configured range, kept in
 * a file in the state directory so that an app keeps its address across stop, start and restarts
 * of emp-server; and free ports for replicas. */
#ifndef EMP_LOCAL_PORTS_H
#define EMP_LOCAL_PORTS_H

#include "emp/error.h"

struct ports;

/* Loads the reservations of path (a missing file is an empty registry). Free with ports_free(). */
int ports_open(const char *path, int min, int max, struct ports **ret_ports, struct emp_error *err);
void ports_free(struct ports *ports);

/* The port reserved for app_id, reserving a free one if it has none: hint when it is in the range,
 * free and bindable on host (the port the app had before), else the lowest such one. -ENOSPC with
 * err when the range is used up. */
int ports_reserve(struct ports *ports, const char *app_id, const char *host, int hint,
                  int *ret_port, struct emp_error *err);
/* Frees app_id's port. */
void ports_release(struct ports *ports, const char *app_id);

/* A port on 127.0.0.1 that nothing listens on now (the kernel's choice), for a replica. */
int ports_ephemeral(int *ret_port);

#endif
