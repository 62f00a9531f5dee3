/* SPDX-License-Identifier: Apache-2.0 */
/* The local backend's gateway (REQ-7): one TCP listener per running app that spreads connections
 * over the app's ready replicas, least connections first. One event loop thread (epoll) relays the
 * bytes of every connection both ways, half-close included. It knows ports, not apps. */
#ifndef EMP_LOCAL_GATEWAY_H
#define EMP_LOCAL_GATEWAY_H

#include <stddef.h>

#include "emp/error.h"

struct gateway;
struct gateway_listener;

/* Starts the event loop thread. max_connections bounds the client connections of all listeners
 * together; more are accepted and closed at once. Free with gateway_stop(). */
int gateway_start(int max_connections, struct gateway **ret_gateway, struct emp_error *err);
/* Closes every listener and connection and joins the thread. Accepts NULL. */
void gateway_stop(struct gateway *gateway);

/* Listens on host:port (127.0.0.1) and starts accepting. Returns 0, or -errno with err (the port is
 * in use, ...). The listener has no backends until gateway_set_backends(). */
int gateway_listen(struct gateway *gateway, const char *host, int port,
                   struct gateway_listener **ret_listener, struct emp_error *err);
/* Stops accepting and frees the listener once its connections have ended. Connections already
 * relayed go on until either side closes. Accepts NULL. */
void gateway_close(struct gateway_listener *listener);

/* The replicas new connections may go to, as ports on 127.0.0.1. Takes effect for the next
 * connection: a port left out is drained (its connections go on, it gets no new ones). */
int gateway_set_backends(struct gateway_listener *listener, const int *ports, size_t count);

/* Client connections the gateway relays now, over all listeners. */
int gateway_connections(struct gateway *gateway);

#endif
