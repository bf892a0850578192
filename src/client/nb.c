/*
 * libobjmapper's non-blocking core: requests encoded into the caller's
 * buffer, and a decoder that turns received bytes and descriptors into
 * responses (docs/PROTOCOL.md). No call blocks. Runs in the caller's
 * process; the blocking calls of client.c and nginx's module use it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "os/om_os.h"
#include "proto/om_proto.h"

#define API __attribute__((visibility("default")))

#define DBUF_SIZE (64u * 1024u)
#define FDQ_MAX 64u
/* An inline body at least this long, with nothing buffered, is received
 * straight into its destination. */
#define DIRECT_MIN (16u * 1024u)

/* Where the decoder is in the response it assembles. */
enum stage {
	ST_HEADER,  /* waiting for 48 bytes */
	ST_PARTS,   /* waiting for message and metadata */
	ST_BODY,    /* receiving an inline body */
};

struct om_decoder {
	uint8_t *buf;          /* received, not yet decoded: buf[off, len) */
	size_t off, len, cap;
	int fdq[FDQ_MAX];      /* descriptors received, in order */
	unsigned fdq_head, fdq_n;
	uint64_t received;
	int broken;            /* a protocol error: every later next fails */
	enum stage stage;
	om_resp_t r;           /* the header being assembled */
	om_response_t cur;     /* the response being assembled */
	uint64_t body_got;
	bool body_skip;        /* no memory for the body: read and drop it */
	char err[256];
};

/* ---- requests ------------------------------------------------------------ */

API int
om_request_encode(const om_request_t *rq, void *buf, size_t cap)
{
	static const char name[] = "libobjmapper " OM_CLIENT_VERSION;
	uint8_t *b = buf;
	size_t ulen = 0, need;
	const void *body = NULL;
	om_req_t q;

	if (rq == NULL || (buf == NULL && cap > 0))
		return -OM_EINVAL;
	memset(&q, 0, sizeof(q));
	q.version = OM_PROTO_VERSION;
	q.op = (uint8_t)rq->op;
	q.id = rq->id;
	q.flags = rq->flags;
	switch (rq->op) {
	case OM_OP_GET:
		if ((rq->flags & ~(unsigned)(OM_MODE_MASK | OM_GET_WANT_META | OM_GET_NO_TOUCH)) != 0)
			return -OM_EINVAL;
		break;
	case OM_OP_STAT:
	case OM_OP_DELETE:
	case OM_OP_PING:
	case OM_OP_STATS:
	case OM_OP_VERIFY:
		/* Flags that do not change the frame: the daemon judges them
		 * (BAD_REQUEST), as it does any client's. */
		break;
	case OM_OP_PUT:
		if ((rq->flags & ~(unsigned)(OM_PUT_EPHEMERAL | OM_PUT_FD)) != 0 ||
		    rq->meta_len > OM_PROTO_META_MAX || (rq->meta_len > 0 && rq->meta == NULL))
			return -OM_EINVAL;
		q.meta_len = (uint16_t)rq->meta_len;
		q.body_len = rq->body_len;
		q.arg = rq->expires;
		break;
	case OM_OP_HELLO:
		if ((rq->flags & ~(unsigned)OM_HELLO_OFFSET_READS) != 0)
			return -OM_EINVAL;
		q.arg = OM_PROTO_VERSION;
		q.body_len = sizeof(name) - 1;
		body = name;
		break;
	case OM_OP_LIST:
	case OM_OP_PURGE:
		/* The URI is a prefix: any bytes a URI may hold, also a part of
		 * a segment; LIST's may be empty (every object), PURGE's not. */
		ulen = rq->uri != NULL ? strlen(rq->uri) : 0;
		if ((rq->op == OM_OP_PURGE && ulen == 0) ||
		    om_proto_prefix_error(rq->uri, ulen, OM_PROTO_URI_MAX) != NULL)
			return -OM_EINVAL;
		q.uri_len = (uint16_t)ulen;
		q.arg = (int64_t)rq->cursor;
		break;
	default:
		return -OM_EINVAL;
	}
	if (rq->op == OM_OP_GET || rq->op == OM_OP_PUT || rq->op == OM_OP_DELETE || rq->op == OM_OP_STAT ||
	    (rq->op == OM_OP_VERIFY && rq->uri != NULL)) {
		if (rq->uri == NULL)
			return -OM_EINVAL;
		ulen = strlen(rq->uri);
		if (om_proto_uri_error(rq->uri, ulen, OM_PROTO_URI_MAX) != NULL)
			return -OM_EINVAL;
		q.uri_len = (uint16_t)ulen;
	} else if (rq->uri != NULL && rq->op != OM_OP_LIST && rq->op != OM_OP_PURGE) {
		return -OM_EINVAL;
	}
	need = OM_REQ_HDR_LEN + ulen + q.meta_len + (body ? q.body_len : 0);
	if (need > cap || b == NULL)
		return -OM_ERANGE;
	om_proto_put_req(b, &q);
	if (ulen)
		memcpy(b + OM_REQ_HDR_LEN, rq->uri, ulen);
	if (q.meta_len)
		memcpy(b + OM_REQ_HDR_LEN + ulen, rq->meta, q.meta_len);
	if (body)
		memcpy(b + OM_REQ_HDR_LEN + ulen + q.meta_len, body, (size_t)q.body_len);
	return (int)need;
}

/* ---- responses ----------------------------------------------------------- */

static void
response_clear(om_response_t *r)
{
	memset(r, 0, sizeof(*r) - sizeof(r->msg));
	r->msg[0] = '\0';
	r->fd = -1;
}

API void
om_response_free(om_response_t *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		close(r->fd);
	free(r->data);
	free(r->meta);
	r->fd = -1;
	r->data = r->meta = NULL;
}

API int
om_response_take_fd(om_response_t *r)
{
	int fd = r->fd;

	r->fd = -1;
	return fd;
}

API int
om_response_caps(const om_response_t *r, om_caps_t *caps)
{
	om_hello_caps_t hc;
	size_t n;

	if (r->op != OM_OP_HELLO || r->rc != 0 || r->body != OM_BODY_INLINE ||
	    r->len < OM_HELLO_CAPS_LEN || r->data == NULL)
		return -OM_EPROTO;
	om_proto_get_caps(r->data, &hc);
	memset(caps, 0, sizeof(*caps));
	caps->version = hc.version;
	caps->transport = hc.transport;
	caps->modes = hc.modes;
	caps->max_uri = hc.max_uri;
	caps->max_meta = hc.max_meta;
	caps->max_pipeline = hc.max_pipeline ? hc.max_pipeline : 1;
	caps->max_object = hc.max_object;
	caps->inline_threshold = hc.inline_threshold;
	caps->shared_descriptions = (hc.flags & OM_CAPS_SHARED_DESCRIPTIONS) != 0;
	caps->max_datagram = hc.max_datagram;
	caps->amplification = hc.amplification;
	n = (size_t)(r->len - OM_HELLO_CAPS_LEN);
	if (n > sizeof(caps->server) - 1)
		n = sizeof(caps->server) - 1;
	memcpy(caps->server, (const uint8_t *)r->data + OM_HELLO_CAPS_LEN, n);
	caps->server[n] = '\0';
	return 0;
}

API int
om_response_list(const om_response_t *r, uint64_t *cursor, om_list_fn fn, void *arg)
{
	const uint8_t *p = r->data;
	uint64_t next, at = OM_LIST_PAGE_LEN;
	uint32_t n;
	char uri[OM_PROTO_URI_MAX + 1];

	if (r->rc != 0)
		return r->rc;
	if (r->op != OM_OP_LIST || r->body != OM_BODY_INLINE || r->len < OM_LIST_PAGE_LEN || p == NULL)
		return -OM_EPROTO;
	next = om_get64(p);
	n = om_get32(p + 8);
	/* The whole page is checked before fn sees any of it: each URI 1 to
	 * OM_PROTO_URI_MAX bytes a URI may hold (so none holds a NUL). */
	for (uint32_t i = 0; i < n; i++) {
		uint16_t ulen;

		if (r->len - at < OM_LIST_ENTRY_LEN)
			return -OM_EPROTO;
		ulen = om_get16(p + at + 30);
		at += OM_LIST_ENTRY_LEN;
		if (ulen == 0 || ulen > OM_PROTO_URI_MAX || r->len - at < ulen ||
		    om_proto_prefix_error(p + at, ulen, OM_PROTO_URI_MAX) != NULL)
			return -OM_EPROTO;
		at += ulen;
	}
	if (at != r->len)
		return -OM_EPROTO;
	at = OM_LIST_PAGE_LEN;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *d = p + at;
		om_entry_t e;
		int rc;

		memset(&e, 0, sizeof(e));
		e.info.size = om_get64(d);
		e.info.expires = (int64_t)om_get64(d + 8);
		e.info.id = om_get64(d + 16);
		e.info.crc = om_get32(d + 24);
		e.info.tier = d[28];
		e.copy = (d[29] & OM_LIST_F_COPY) != 0;
		e.uri_len = om_get16(d + 30);
		memcpy(uri, d + OM_LIST_ENTRY_LEN, e.uri_len);
		uri[e.uri_len] = '\0';
		e.uri = uri;
		at += OM_LIST_ENTRY_LEN + e.uri_len;
		if (fn != NULL && (rc = fn(arg, &e)) != 0)
			return rc;
	}
	if (cursor != NULL)
		*cursor = next;
	return 0;
}

API int
om_response_purge(const om_response_t *r, uint64_t *cursor, uint64_t *count)
{
	if (r->rc != 0)
		return r->rc;
	if (r->op != OM_OP_PURGE || r->body != OM_BODY_INLINE || r->len != OM_PURGE_BODY_LEN ||
	    r->data == NULL)
		return -OM_EPROTO;
	if (cursor != NULL)
		*cursor = om_get64(r->data);
	if (count != NULL)
		*count = om_get64((const uint8_t *)r->data + 8);
	return 0;
}

/* ---- the decoder --------------------------------------------------------- */

API int
om_decoder_new(om_decoder_t **out)
{
	om_decoder_t *d = calloc(1, sizeof(*d));

	*out = NULL;
	if (d == NULL || (d->buf = malloc(DBUF_SIZE)) == NULL) {
		free(d);
		return -OM_ENOMEM;
	}
	d->cap = DBUF_SIZE;
	response_clear(&d->cur);
	*out = d;
	return 0;
}

API void
om_decoder_reset(om_decoder_t *d)
{
	while (d->fdq_n > 0) {
		close(d->fdq[d->fdq_head]);
		d->fdq_head = (d->fdq_head + 1) % FDQ_MAX;
		d->fdq_n--;
	}
	d->fdq_head = 0;
	om_response_free(&d->cur);
	response_clear(&d->cur);
	d->off = d->len = 0;
	d->received = 0;
	d->broken = 0;
	d->stage = ST_HEADER;
	d->body_got = 0;
	d->body_skip = false;
	d->err[0] = '\0';
}

API void
om_decoder_free(om_decoder_t *d)
{
	if (d == NULL)
		return;
	om_decoder_reset(d);
	free(d->buf);
	free(d);
}

API const char *
om_decoder_message(const om_decoder_t *d)
{
	return d->err;
}

API uint64_t
om_decoder_received(const om_decoder_t *d)
{
	return d->received;
}

__attribute__((format(printf, 2, 3))) static int
broken(om_decoder_t *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->err, sizeof(d->err), fmt, ap);
	va_end(ap);
	d->broken = 1;
	return -OM_EPROTO;
}

static int
fdq_push(om_decoder_t *d, int fd)
{
	if (d->fdq_n == FDQ_MAX) {
		close(fd);
		return broken(d, "too many descriptors from the server");
	}
	d->fdq[(d->fdq_head + d->fdq_n) % FDQ_MAX] = fd;
	d->fdq_n++;
	return 0;
}

/* Queues descriptors that came, in order; once the queue refuses one, the
 * rest are closed. */
static int
fdq_take(om_decoder_t *d, const int *fds, unsigned n)
{
	int rc = 0;

	for (unsigned i = 0; i < n; i++) {
		if (rc == 0)
			rc = fdq_push(d, fds[i]);
		else
			close(fds[i]);
	}
	return rc;
}

/* Moves what is buffered to the front when that makes room. */
static void
make_room(om_decoder_t *d)
{
	if (d->off == d->len) {
		d->off = d->len = 0;
	} else if (d->off > 0 && d->cap - d->len < d->cap / 2) {
		memmove(d->buf, d->buf + d->off, d->len - d->off);
		d->len -= d->off;
		d->off = 0;
	}
}

API int
om_decoder_feed(om_decoder_t *d, const void *bytes, size_t n, const int *fds, unsigned nfds)
{
	int rc = fdq_take(d, fds, nfds);

	if (rc != 0)
		return rc;
	make_room(d);
	if (n > d->cap - d->len) {
		/* The caller feeds more than it lets the decoder take: grow. */
		size_t cap = d->len + n;
		uint8_t *b;

		if (cap < d->len || (b = realloc(d->buf, cap)) == NULL) {
			snprintf(d->err, sizeof(d->err), "out of memory");
			return -OM_ENOMEM;
		}
		d->buf = b;
		d->cap = cap;
	}
	if (n > 0)
		memcpy(d->buf + d->len, bytes, n);
	d->len += n;
	d->received += n;
	return 0;
}

/* The bytes of the current inline body still to come. */
static uint64_t
body_left(const om_decoder_t *d)
{
	return d->r.body_len - d->body_got;
}

API int
om_decoder_recv(om_decoder_t *d, int fd)
{
	int got[OM_OS_FDS_MAX];
	om_os_fds_t fds = { got, 0, OM_OS_FDS_MAX, 0 };
	uint8_t *to;
	size_t want;
	bool direct;
	ssize_t n;
	int rc;

	make_room(d);
	/* In the middle of a large inline body with nothing buffered: into
	 * the body itself, never past it (the next response is not ours). */
	direct = d->stage == ST_BODY && !d->body_skip && d->off == d->len && body_left(d) >= DIRECT_MIN;
	if (direct) {
		uint64_t left = body_left(d);

		to = (uint8_t *)d->cur.data + d->body_got;
		want = left > (1u << 30) ? (1u << 30) : (size_t)left;
	} else {
		if (d->len == d->cap) {
			snprintf(d->err, sizeof(d->err), "the decoder's buffer is full: call om_decoder_next");
			return -OM_EIO;
		}
		to = d->buf + d->len;
		want = d->cap - d->len;
	}
	do
		n = om_os_recv_fds(fd, to, want, MSG_DONTWAIT, &fds);
	while (n == -EINTR);
	if (n < 0 && n != -EPROTO) {
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			return -OM_EAGAIN;
		snprintf(d->err, sizeof(d->err), "%s", strerror((int)-n));
		return -OM_EIO;
	}
	if ((rc = fdq_take(d, got, fds.n)) != 0)
		return rc;
	if (n == -EPROTO)
		return broken(d, "descriptors from the server were truncated");
	d->received += (uint64_t)n;
	if (direct)
		d->body_got += (uint64_t)n;
	else
		d->len += (size_t)n;
	return (int)(n > INT32_MAX ? INT32_MAX : n);
}

API uint64_t
om_decoder_need(const om_decoder_t *d)
{
	size_t have = d->len - d->off;

	switch (d->stage) {
	case ST_HEADER:
		return OM_RESP_HDR_LEN - have;
	case ST_PARTS:
		return (uint64_t)d->r.msg_len + d->r.meta_len - have;
	case ST_BODY:
		return body_left(d) > have ? body_left(d) - have : 1;
	}
	return 1;
}

/* The stream does not begin a response: say what it looks like (an HTTP
 * server's status line, or the first bytes). */
static int
not_ours(om_decoder_t *d)
{
	const uint8_t *p = d->buf + d->off;
	size_t have = d->len - d->off, n = 0, off;

	if (have >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		while (n < have && n < 80 && p[n] != '\r' && p[n] != '\n')
			n++;
		off = (size_t)snprintf(d->err, sizeof(d->err), "not an objmapper socket: it answered in HTTP (\"");
		for (size_t i = 0; i < n && off < sizeof(d->err) - 3; i++)
			d->err[off++] = p[i] < 0x20 || p[i] >= 0x7f ? '?' : (char)p[i];
		snprintf(d->err + off, sizeof(d->err) - off, "\")");
	} else {
		off = (size_t)snprintf(d->err, sizeof(d->err),
		    "not an objmapper socket: it answered bytes that are not the protocol's:");
		for (size_t i = 0; i < have && i < 8 && off < sizeof(d->err) - 4; i++)
			off += (size_t)snprintf(d->err + off, sizeof(d->err) - off, " %02x", p[i]);
	}
	d->broken = 1;
	return -OM_EPROTO;
}

/* Takes the header: checks it and prepares the response. */
static int
take_header(om_decoder_t *d)
{
	om_resp_t *r = &d->r;
	om_response_t *o = &d->cur;
	int rc = om_proto_get_resp(d->buf + d->off, r);

	if (rc == -EPROTONOSUPPORT)
		return broken(d, "a response of protocol version %u", r->version);
	if (rc != 0)
		return not_ours(d);
	d->off += OM_RESP_HDR_LEN;
	if (r->msg_len > OM_PROTO_MSG_MAX || r->meta_len > OM_PROTO_META_MAX)
		return broken(d, "response lengths out of range (message %u, metadata %u)", r->msg_len,
		    r->meta_len);
	response_clear(o);
	o->op = r->op;
	o->id = r->id;
	o->rc = -(int)r->status;
	o->body = r->body;
	o->len = r->body_len;
	o->info.id = r->obj_id;
	o->info.size = r->body_len;
	o->info.expires = r->expires;
	o->info.mtime = r->mtime;
	o->info.crc = r->crc;
	o->info.tier = r->tier;
	d->body_got = 0;
	d->body_skip = false;
	switch (r->body) {
	case OM_BODY_NONE:
		break;
	case OM_BODY_DESCRIPTOR:
		if (d->fdq_n == 0)
			return broken(d, "a response announced a descriptor that did not come");
		o->fd = d->fdq[d->fdq_head];
		d->fdq_head = (d->fdq_head + 1) % FDQ_MAX;
		d->fdq_n--;
		break;
	case OM_BODY_INLINE:
		if (r->body_len > PTRDIFF_MAX - 1 ||
		    (o->data = malloc(r->body_len ? (size_t)r->body_len : 1)) == NULL) {
			/* Keep the stream in step: drop the bytes. */
			d->body_skip = true;
			o->rc = -OM_ENOMEM;
		}
		break;
	default:
		return broken(d, "unknown body kind %u", r->body);
	}
	d->stage = ST_PARTS;
	return 0;
}

API int
om_decoder_next(om_decoder_t *d, om_response_t *out)
{
	om_response_t *o = &d->cur;

	if (d->broken)
		return -OM_EPROTO;
	for (;;) {
		size_t have = d->len - d->off;

		switch (d->stage) {
		case ST_HEADER: {
			static const uint8_t magic[2] = { 'O', 'M' };
			size_t k = have < sizeof(magic) ? have : sizeof(magic);
			int rc;

			/* Refuse a foreign stream at its first byte, without waiting
			 * for a whole header that may never come. */
			if (memcmp(d->buf + d->off, magic, k) != 0)
				return not_ours(d);
			if (have > 2 && d->buf[d->off + 2] != OM_PROTO_VERSION)
				return broken(d, "a response of protocol version %u", d->buf[d->off + 2]);
			if (have < OM_RESP_HDR_LEN)
				return 0;
			if ((rc = take_header(d)) != 0)
				return rc;
			continue;
		}
		case ST_PARTS:
			if (have < (size_t)d->r.msg_len + d->r.meta_len)
				return 0;
			memcpy(o->msg, d->buf + d->off, d->r.msg_len);
			o->msg[d->r.msg_len] = '\0';
			d->off += d->r.msg_len;
			if (d->r.meta_len > 0) {
				if ((o->meta = malloc(d->r.meta_len)) == NULL) {
					if (o->rc == 0)
						o->rc = -OM_ENOMEM;
				} else {
					memcpy(o->meta, d->buf + d->off, d->r.meta_len);
					o->meta_len = d->r.meta_len;
				}
				d->off += d->r.meta_len;
			}
			d->stage = ST_BODY;
			continue;
		case ST_BODY:
			if (o->body == OM_BODY_INLINE && body_left(d) > 0) {
				uint64_t left = body_left(d);
				size_t k = left < have ? (size_t)left : have;

				if (!d->body_skip)
					memcpy((uint8_t *)o->data + d->body_got, d->buf + d->off, k);
				d->off += k;
				d->body_got += k;
				if (body_left(d) > 0)
					return 0;
			}
			if (d->body_skip) {
				free(o->data);
				o->data = NULL;
				o->len = 0;
			}
			*out = *o;
			response_clear(o);
			d->stage = ST_HEADER;
			return 1;
		}
	}
}
