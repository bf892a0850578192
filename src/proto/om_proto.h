/*
 * Encoding and decoding of protocol frames (docs/PROTOCOL.md), and the
 * validity rules both ends apply. Used by the daemon's workers and by the
 * client library.
 */
#ifndef OM_PROTO_H
#define OM_PROTO_H

#include <stddef.h>
#include <stdint.h>

#include <objmapper/protocol.h>

#include "core/om_core.h"

typedef struct {
	uint8_t version;
	uint8_t op;
	uint32_t id;
	uint32_t flags;
	uint16_t uri_len;
	uint16_t meta_len;
	uint64_t body_len;
	int64_t arg;
} om_req_t;

typedef struct {
	uint8_t version;
	uint8_t op;
	uint32_t id;
	uint16_t status;
	uint8_t body;
	uint8_t tier;
	uint16_t msg_len;
	uint16_t meta_len;
	uint64_t body_len;
	uint64_t obj_id;
	int64_t expires;
	uint32_t crc;
	uint32_t mtime;
} om_resp_t;

typedef struct {
	uint8_t version;
	uint8_t transport;
	uint16_t modes;
	uint32_t max_uri;
	uint32_t max_meta;
	uint32_t max_pipeline;
	uint64_t max_object;
	uint64_t inline_threshold;
	uint32_t flags;
	uint16_t max_datagram;   /* UDP: largest response datagram; else 0 */
	uint8_t amplification;   /* UDP: response <= this x the request's bytes; else 0 */
} om_hello_caps_t;

void om_proto_put_req(uint8_t *buf, const om_req_t *r);
/* 0, -EPROTO (bad magic) or -EPROTONOSUPPORT (other version; r->version set). */
int om_proto_get_req(const uint8_t *buf, om_req_t *r);
void om_proto_put_resp(uint8_t *buf, const om_resp_t *r);
int om_proto_get_resp(const uint8_t *buf, om_resp_t *r);
void om_proto_put_caps(uint8_t *buf, const om_hello_caps_t *c);
void om_proto_get_caps(const uint8_t *buf, om_hello_caps_t *c);

/* A URI's bytes are valid (1..max bytes of 0x21-0x7e or 0x80-0xff, no ".."
 * segment). Returns NULL, or what is wrong in words. */
const char *om_proto_uri_error(const void *uri, size_t len, size_t max);
/* A URI prefix (LIST, PURGE): 0..max bytes of those a URI may hold. NULL,
 * or what is wrong in words. */
const char *om_proto_prefix_error(const void *prefix, size_t len, size_t max);

/* Status names ("NOT_FOUND") and short descriptions. */
const char *om_proto_status_name(unsigned status);
const char *om_proto_status_text(unsigned status);
const char *om_proto_op_name(unsigned op);

/* The daemon's answers to a failure of -errno rc (status.c): its
 * objmapper status, its HTTP status (INTERNAL and 500 for an errno the
 * table does not have); and the objmapper status an HTTP status counts as
 * (2xx and 3xx: OK; another without a row: INTERNAL from 500, else
 * BAD_REQUEST). */
uint16_t om_proto_status_of(int rc);
int om_proto_http_status_of(int rc);
uint16_t om_proto_status_of_http(int http);

#endif
