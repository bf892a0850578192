/*
 * The protocols above the transport (conn.h): objmapper's binary frames
 * (proto_bin.c), HTTP/1.1 (proto_http.c), and the binary frames over UDP,
 * one per datagram (proto_udp.c). Worker processes only.
 */
#ifndef OM_PROTOCOLS_H
#define OM_PROTOCOLS_H

#include "server/conn.h"

/* The tables the worker gives its listeners' connections. */
extern const conn_proto_t conn_proto_bin;
extern const conn_proto_t conn_proto_http;

/* proto_bin.c, which a datagram runs on: what its table's process does,
 * and an error response to request q. */
bool conn_bin_process(conn_t *c);
void conn_bin_error(conn_t *c, const om_req_t *q, uint16_t status, const char *fmt, ...)
    OM_PRINTF(4, 5);

/* proto_udp.c: reads and answers the datagrams waiting on a UDP
 * listener; frees its pseudo-connection. */
void conn_udp_input(worker_t *w, wlistener_t *l);
void conn_udp_free(wlistener_t *l);

#endif
