/*
 * Protocol frames (docs/PROTOCOL.md): byte-exact encoding and decoding of
 * headers and the HELLO capability record, and the URI rules. Compiled
 * into the daemon and into libobjmapper.
 */
#include <errno.h>
#include <string.h>

#include "proto/om_proto.h"

void
om_proto_put_req(uint8_t *b, const om_req_t *r)
{
	om_le16(b + 0, OM_PROTO_MAGIC);
	b[2] = r->version ? r->version : OM_PROTO_VERSION;
	b[3] = r->op;
	om_le32(b + 4, r->id);
	om_le32(b + 8, r->flags);
	om_le16(b + 12, r->uri_len);
	om_le16(b + 14, r->meta_len);
	om_le64(b + 16, r->body_len);
	om_le64(b + 24, (uint64_t)r->arg);
}

int
om_proto_get_req(const uint8_t *b, om_req_t *r)
{
	if (om_get16(b) != OM_PROTO_MAGIC)
		return -EPROTO;
	r->version = b[2];
	r->op = b[3];
	r->id = om_get32(b + 4);
	r->flags = om_get32(b + 8);
	r->uri_len = om_get16(b + 12);
	r->meta_len = om_get16(b + 14);
	r->body_len = om_get64(b + 16);
	r->arg = (int64_t)om_get64(b + 24);
	return r->version == OM_PROTO_VERSION ? 0 : -EPROTONOSUPPORT;
}

void
om_proto_put_resp(uint8_t *b, const om_resp_t *r)
{
	om_le16(b + 0, OM_PROTO_MAGIC);
	b[2] = OM_PROTO_VERSION;
	b[3] = r->op;
	om_le32(b + 4, r->id);
	om_le16(b + 8, r->status);
	b[10] = r->body;
	b[11] = r->tier;
	om_le16(b + 12, r->msg_len);
	om_le16(b + 14, r->meta_len);
	om_le64(b + 16, r->body_len);
	om_le64(b + 24, r->obj_id);
	om_le64(b + 32, (uint64_t)r->expires);
	om_le32(b + 40, r->crc);
	om_le32(b + 44, r->mtime);
}

int
om_proto_get_resp(const uint8_t *b, om_resp_t *r)
{
	if (om_get16(b) != OM_PROTO_MAGIC)
		return -EPROTO;
	r->version = b[2];
	r->op = b[3];
	r->id = om_get32(b + 4);
	r->status = om_get16(b + 8);
	r->body = b[10];
	r->tier = b[11];
	r->msg_len = om_get16(b + 12);
	r->meta_len = om_get16(b + 14);
	r->body_len = om_get64(b + 16);
	r->obj_id = om_get64(b + 24);
	r->expires = (int64_t)om_get64(b + 32);
	r->crc = om_get32(b + 40);
	r->mtime = om_get32(b + 44);
	return r->version == OM_PROTO_VERSION ? 0 : -EPROTONOSUPPORT;
}

void
om_proto_put_caps(uint8_t *b, const om_hello_caps_t *c)
{
	b[0] = c->version;
	b[1] = c->transport;
	om_le16(b + 2, c->modes);
	om_le32(b + 4, c->max_uri);
	om_le32(b + 8, c->max_meta);
	om_le32(b + 12, c->max_pipeline);
	om_le64(b + 16, c->max_object);
	om_le64(b + 24, c->inline_threshold);
	om_le32(b + 32, c->flags);
	om_le16(b + 36, c->max_datagram);
	b[38] = c->amplification;
	b[39] = 0;
}

void
om_proto_get_caps(const uint8_t *b, om_hello_caps_t *c)
{
	c->version = b[0];
	c->transport = b[1];
	c->modes = om_get16(b + 2);
	c->max_uri = om_get32(b + 4);
	c->max_meta = om_get32(b + 8);
	c->max_pipeline = om_get32(b + 12);
	c->max_object = om_get64(b + 16);
	c->inline_threshold = om_get64(b + 24);
	c->flags = om_get32(b + 32);
	c->max_datagram = om_get16(b + 36);
	c->amplification = b[38];
}

const char *
om_proto_uri_error(const void *uri, size_t len, size_t max)
{
	const unsigned char *u = uri;
	size_t seg = 0;

	if (len == 0)
		return "empty URI";
	if (len > max)
		return "URI longer than the limit";
	for (size_t i = 0; i <= len; i++) {
		if (i == len || u[i] == '/') {
			if (i - seg == 2 && u[seg] == '.' && u[seg + 1] == '.')
				return "URI has a \"..\" segment";
			seg = i + 1;
			continue;
		}
		if (u[i] <= 0x20 || u[i] == 0x7f)
			return u[i] == 0 ? "URI holds a NUL byte" : "URI holds a space or control character";
	}
	return NULL;
}

const char *
om_proto_prefix_error(const void *prefix, size_t len, size_t max)
{
	const unsigned char *u = prefix;

	/* Only the bytes: a prefix may end inside a segment ("/a/." is the
	 * beginning of "/a/.x"), and the empty prefix is every URI. */
	if (len > max)
		return "prefix longer than the URI limit";
	for (size_t i = 0; i < len; i++)
		if (u[i] <= 0x20 || u[i] == 0x7f)
			return u[i] == 0 ? "prefix holds a NUL byte" : "prefix holds a space or control character";
	return NULL;
}

static const char *const status_names[] = {
	"OK", "NOT_FOUND", "BAD_REQUEST", "VERSION", "UNKNOWN_OP", "MODE_UNSUPPORTED",
	"URI_INVALID", "META_TOO_LARGE", "TOO_LARGE", "NO_SPACE", "DENIED", "BUSY",
	"SHORT_BODY", "INTERNAL",
};

static const char *const status_texts[] = {
	"success",
	"no such object",
	"malformed request",
	"unsupported protocol version",
	"unknown operation",
	"mode not supported on this transport",
	"invalid URI",
	"metadata too large",
	"object too large",
	"no space left in the store",
	"permission denied",
	"server busy, try again",
	"descriptor holds fewer bytes than declared",
	"internal server error",
};

const char *
om_proto_status_name(unsigned status)
{
	return status <= OM_STATUS_MAX ? status_names[status] : "UNKNOWN_STATUS";
}

const char *
om_proto_status_text(unsigned status)
{
	return status <= OM_STATUS_MAX ? status_texts[status] : "unknown status";
}

const char *
om_proto_op_name(unsigned op)
{
	static const char *const names[] = {
		"?", "HELLO", "GET", "PUT", "DELETE", "STAT", "STATS", "PING", "GOAWAY", "VERIFY",
		"LIST", "PURGE",
	};

	return op < sizeof(names) / sizeof(names[0]) ? names[op] : "?";
}
