/*
 * objmapper wire protocol, version 1: constants and frame layouts shared
 * by the daemon and its clients. docs/PROTOCOL.md is the specification;
 * this header only names what it defines. All integers on the wire are
 * little-endian.
 */
#ifndef OBJMAPPER_PROTOCOL_H
#define OBJMAPPER_PROTOCOL_H

#include <stdint.h>

#define OM_PROTO_MAGIC   0x4d4fu /* the bytes 'O' 'M' */
#define OM_PROTO_VERSION 1u

#define OM_REQ_HDR_LEN  32u /* request header bytes */
#define OM_RESP_HDR_LEN 48u /* response header bytes */

/* Operations (request header byte 3). */
enum om_op {
	OM_OP_HELLO = 1,
	OM_OP_GET = 2,
	OM_OP_PUT = 3,
	OM_OP_DELETE = 4,
	OM_OP_STAT = 5,
	OM_OP_STATS = 6,
	OM_OP_PING = 7,
	OM_OP_GOAWAY = 8, /* server to client only */
	OM_OP_VERIFY = 9, /* check an object's bytes (URI), or start a scrub pass (no URI) */
	OM_OP_LIST = 10,  /* a page of the objects under a URI prefix */
	OM_OP_PURGE = 11, /* a step of deleting the objects under a URI prefix */
	OM_OP_MAX = 11,
};

/* GET: how the bytes come back (flags bits 0-1). */
enum om_mode {
	OM_MODE_AUTO = 0,   /* inline up to the listener's threshold, else a descriptor */
	OM_MODE_FDPASS = 1, /* a descriptor of the object's file (Unix sockets only) */
	OM_MODE_COPY = 2,   /* inline; the server reads and writes the bytes */
	OM_MODE_SPLICE = 3, /* inline; the server sendfile()s from the file */
};
#define OM_MODE_MASK 0x3u

/* Request flags. */
#define OM_GET_WANT_META  0x10u /* GET, STAT: return the metadata blob and mtime */
#define OM_GET_NO_TOUCH   0x20u /* GET: do not count the read (LRU, promotion) */
#define OM_PUT_EPHEMERAL  0x01u /* PUT: memory tier only, dropped when evicted */
#define OM_PUT_FD         0x02u /* PUT: the bytes are a descriptor sent with the header */
#define OM_STATS_PROMETHEUS 0x01u /* STATS: the Prometheus text format */
#define OM_HELLO_OFFSET_READS 0x01u /* HELLO: the client reads descriptors only at
                                     * explicit offsets (may share descriptions) */

/* Response body kinds (response header byte 10). */
enum om_body {
	OM_BODY_NONE = 0,
	OM_BODY_INLINE = 1,     /* body_len bytes follow the message and metadata */
	OM_BODY_DESCRIPTOR = 2, /* one descriptor came with this header; body_len = size */
};

/* Response status codes. */
enum om_status {
	OM_STATUS_OK = 0,
	OM_STATUS_NOT_FOUND = 1,
	OM_STATUS_BAD_REQUEST = 2,
	OM_STATUS_VERSION = 3,
	OM_STATUS_UNKNOWN_OP = 4,
	OM_STATUS_MODE_UNSUPPORTED = 5,
	OM_STATUS_URI_INVALID = 6,
	OM_STATUS_META_TOO_LARGE = 7,
	OM_STATUS_TOO_LARGE = 8,
	OM_STATUS_NO_SPACE = 9,
	OM_STATUS_DENIED = 10,
	OM_STATUS_BUSY = 11,
	OM_STATUS_SHORT_BODY = 12,
	OM_STATUS_INTERNAL = 13,
	OM_STATUS_MAX = 13,
};

/* Tiers (response header byte 11). */
#define OM_TIER_MEMORY     0u
#define OM_TIER_PERSISTENT 1u

/* LIST response body: a page header, then its entries, each an entry
 * header and the URI (not padded). PURGE response body: the next cursor
 * and the objects deleted, 8 bytes each. */
#define OM_LIST_PAGE_LEN  16u /* next cursor (8), entries (4), reserved (4) */
#define OM_LIST_ENTRY_LEN 32u /* size, expires, id (8 each), crc (4), tier,
                               * flags (1 each), uri_len (2) */
#define OM_LIST_F_COPY    0x01u /* entry flags: a copy in the memory tier */
#define OM_PURGE_BODY_LEN 16u

/* HELLO response body: a capability record, then the server's name. */
#define OM_HELLO_CAPS_LEN 40u
#define OM_TRANSPORT_UNIX 1u
#define OM_TRANSPORT_TCP  2u
#define OM_TRANSPORT_UDP  3u
#define OM_CAPS_SHARED_DESCRIPTIONS 0x1u

/* Limits every server honours whatever its configuration. */
#define OM_PROTO_URI_MAX   1024u
#define OM_PROTO_META_MAX  2048u
#define OM_PROTO_HELLO_MAX 256u /* HELLO request body */
#define OM_PROTO_MSG_MAX   1024u /* response message text */

#endif
