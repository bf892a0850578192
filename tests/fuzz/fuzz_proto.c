/*
 * The binary protocol's decoders (src/proto/proto.c): request and response
 * headers and the HELLO capability record as the daemon and libobjmapper
 * read them from a socket, and the URI rule both ends apply.
 *
 * Checks: decoding never reads past the fixed header; a decoded header
 * encodes back to the same bytes (a response: when its version is 1, the
 * only one put_resp writes); fields built from the input survive
 * encode -> decode; om_proto_uri_error and om_proto_prefix_error (LIST,
 * PURGE) agree with independent references of their rules, a valid URI
 * is a valid prefix and so is every beginning of a valid prefix; status
 * and op names are never NULL.
 */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "proto/om_proto.h"

/* The URI rule of docs/PROTOCOL.md, written differently on purpose: 1..max
 * bytes, none <= 0x20 or 0x7f, no segment that is exactly "..". */
static int
uri_ok_ref(const uint8_t *u, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (u[i] <= 0x20 || u[i] == 0x7f)
			return 0;
	for (size_t i = 0; i + 1 < len; i++) {
		int starts = i == 0 || u[i - 1] == '/';
		int ends = i + 2 == len || u[i + 2] == '/';

		if (starts && ends && u[i] == '.' && u[i + 1] == '.')
			return 0;
	}
	return 1;
}

/* The prefix rule of LIST and PURGE: 0..max bytes, none <= 0x20 or 0x7f
 * (".." allowed: a prefix may end anywhere). */
static int
prefix_ok_ref(const uint8_t *u, size_t len, size_t max)
{
	if (len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (u[i] <= 0x20 || u[i] == 0x7f)
			return 0;
	return 1;
}

static void
check_req(const uint8_t *b)
{
	uint8_t out[OM_REQ_HDR_LEN];
	om_req_t r;
	int rc;

	memset(&r, 0xa5, sizeof(r));
	rc = om_proto_get_req(b, &r);
	if (b[0] != 'O' || b[1] != 'M') {
		FZ_ASSERT(rc == -EPROTO, "rc %d", rc);
		return;
	}
	FZ_ASSERT(rc == (b[2] == OM_PROTO_VERSION ? 0 : -EPROTONOSUPPORT), "rc %d", rc);
	FZ_ASSERT(r.version == b[2] && r.op == b[3], "version/op");
	if (r.version == 0)
		return; /* put_req writes version 0 as the current one */
	om_proto_put_req(out, &r);
	FZ_ASSERT(memcmp(out, b, sizeof(out)) == 0, "request does not round-trip");
}

static void
check_resp(const uint8_t *b)
{
	uint8_t out[OM_RESP_HDR_LEN];
	om_resp_t r;
	int rc;

	memset(&r, 0xa5, sizeof(r));
	rc = om_proto_get_resp(b, &r);
	if (b[0] != 'O' || b[1] != 'M') {
		FZ_ASSERT(rc == -EPROTO, "rc %d", rc);
		return;
	}
	FZ_ASSERT(rc == (b[2] == OM_PROTO_VERSION ? 0 : -EPROTONOSUPPORT), "rc %d", rc);
	if (rc != 0)
		return;
	om_proto_put_resp(out, &r);
	FZ_ASSERT(memcmp(out, b, sizeof(out)) == 0, "response does not round-trip");
	(void)om_proto_status_name(r.status);
	(void)om_proto_op_name(r.op);
}

static void
check_caps(const uint8_t *b)
{
	uint8_t out[OM_HELLO_CAPS_LEN];
	om_hello_caps_t c;

	om_proto_get_caps(b, &c);
	om_proto_put_caps(out, &c);
	/* Byte 39 is reserved: written as 0, ignored when read. */
	FZ_ASSERT(memcmp(out, b, 39) == 0 && out[39] == 0, "caps do not round-trip");
}

/* Fields from the input -> encode -> decode -> the same fields. */
static void
check_fields(fz_in_t *in)
{
	uint8_t buf[OM_RESP_HDR_LEN];
	om_req_t q, q2;
	om_resp_t s, s2;

	memset(&q, 0, sizeof(q));
	q.version = OM_PROTO_VERSION;
	q.op = fz_u8(in);
	q.id = fz_u32(in);
	q.flags = fz_u32(in);
	q.uri_len = fz_u16(in);
	q.meta_len = fz_u16(in);
	q.body_len = fz_u64(in);
	q.arg = (int64_t)fz_u64(in);
	om_proto_put_req(buf, &q);
	FZ_ASSERT(om_proto_get_req(buf, &q2) == 0, "own request rejected");
	FZ_ASSERT(q.op == q2.op && q.id == q2.id && q.flags == q2.flags && q.uri_len == q2.uri_len &&
	    q.meta_len == q2.meta_len && q.body_len == q2.body_len && q.arg == q2.arg,
	    "request fields changed");

	memset(&s, 0, sizeof(s));
	s.op = fz_u8(in);
	s.id = fz_u32(in);
	s.status = fz_u16(in);
	s.body = fz_u8(in);
	s.tier = fz_u8(in);
	s.msg_len = fz_u16(in);
	s.meta_len = fz_u16(in);
	s.body_len = fz_u64(in);
	s.obj_id = fz_u64(in);
	s.expires = (int64_t)fz_u64(in);
	s.crc = fz_u32(in);
	s.mtime = fz_u32(in);
	om_proto_put_resp(buf, &s);
	FZ_ASSERT(om_proto_get_resp(buf, &s2) == 0, "own response rejected");
	FZ_ASSERT(s2.version == OM_PROTO_VERSION && s.op == s2.op && s.id == s2.id &&
	    s.status == s2.status && s.body == s2.body && s.tier == s2.tier &&
	    s.msg_len == s2.msg_len && s.meta_len == s2.meta_len && s.body_len == s2.body_len &&
	    s.obj_id == s2.obj_id && s.expires == s2.expires && s.crc == s2.crc &&
	    s.mtime == s2.mtime, "response fields changed");
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_in_t in = { data, size };
	const char *why;
	size_t max;

	/* Exact-size copies: ASan catches a read past the frame's header. */
	if (size >= OM_REQ_HDR_LEN) {
		uint8_t *b = malloc(OM_REQ_HDR_LEN);

		memcpy(b, data, OM_REQ_HDR_LEN);
		check_req(b);
		free(b);
	}
	if (size >= OM_RESP_HDR_LEN) {
		uint8_t *b = malloc(OM_RESP_HDR_LEN);

		memcpy(b, data, OM_RESP_HDR_LEN);
		check_resp(b);
		free(b);
	}
	if (size >= OM_HELLO_CAPS_LEN) {
		uint8_t *b = malloc(OM_HELLO_CAPS_LEN);

		memcpy(b, data, OM_HELLO_CAPS_LEN);
		check_caps(b);
		free(b);
	}
	check_fields(&in);

	/* The whole input as a URI, against a limit from its first byte. */
	max = size > 0 ? (data[0] & 0x80 ? OM_PROTO_URI_MAX : data[0]) : 0;
	{
		uint8_t *u = malloc(size ? size : 1);

		memcpy(u, data, size);
		why = om_proto_uri_error(u, size, max);
		FZ_ASSERT((why == NULL) == uri_ok_ref(u, size, max), "uri rule disagrees: %s",
		    why ? why : "accepted");
		if (size > 1) {
			why = om_proto_uri_error(u + 1, size - 1, OM_PROTO_URI_MAX);
			FZ_ASSERT((why == NULL) == uri_ok_ref(u + 1, size - 1, OM_PROTO_URI_MAX),
			    "uri rule disagrees: %s", why ? why : "accepted");
		}
		why = om_proto_prefix_error(u, size, max);
		FZ_ASSERT((why == NULL) == prefix_ok_ref(u, size, max), "prefix rule disagrees: %s",
		    why ? why : "accepted");
		FZ_ASSERT(!uri_ok_ref(u, size, max) || why == NULL, "a URI that is no prefix");
		if (why == NULL && size > 0)
			FZ_ASSERT(om_proto_prefix_error(u, (size_t)data[size - 1] % size, max) == NULL,
			    "a beginning of a prefix that is not one");
		free(u);
	}
	for (unsigned i = 0; i < 3 && size > i; i++) {
		FZ_ASSERT(om_proto_status_name(data[i] | (unsigned)data[i] << 8) != NULL, "name");
		FZ_ASSERT(om_proto_status_text(data[i]) != NULL, "text");
		FZ_ASSERT(om_proto_op_name(data[i]) != NULL, "op");
	}
	return 0;
}
