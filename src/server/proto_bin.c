/*
 * objmapper's binary protocol (docs/PROTOCOL.md) on a stream listener's
 * connections, and on a UDP listener's datagrams (proto_udp.c runs each
 * on a pseudo-connection): requests are read from the connection's
 * buffer, checked, run against the store, and answered in order through
 * the transport's queue (conn.c). Worker processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "server/object.h"
#include "server/protocols.h"

/* ---- responses ----------------------------------------------------------- */

typedef struct {
	uint16_t status;
	uint8_t body;
	uint8_t tier;
	uint64_t body_len;
	const om_ix_obj_t *obj;
	uint32_t mtime;
	const void *meta;
	uint16_t meta_len;
	const char *msg;
	size_t inline_len; /* bytes of body to reserve after the header */
} resp_t;

static out_t *
respond(conn_t *c, const om_req_t *q, const resp_t *r, bool last)
{
	size_t msg_len = r->msg ? strlen(r->msg) : 0;
	om_srv_stats_sh_t *stats = c->w->stats;
	om_resp_t h = { 0 };
	out_t *o;

	if (msg_len > OM_PROTO_MSG_MAX)
		msg_len = OM_PROTO_MSG_MAX;
	o = conn_out_new(OUT_BUF, OM_RESP_HDR_LEN + msg_len + r->meta_len + r->inline_len);
	if (o == NULL)
		return NULL;
	h.op = q->op;
	h.id = q->id;
	h.status = r->status;
	h.body = r->body;
	h.tier = r->tier;
	h.msg_len = (uint16_t)msg_len;
	h.meta_len = r->meta_len;
	h.body_len = r->body_len;
	h.mtime = r->mtime;
	if (r->obj != NULL) {
		h.obj_id = r->obj->id;
		h.expires = r->obj->expires;
		h.crc = r->obj->crc;
	}
	om_proto_put_resp(o->data, &h);
	if (msg_len)
		memcpy(o->data + OM_RESP_HDR_LEN, r->msg, msg_len);
	if (r->meta_len)
		memcpy(o->data + OM_RESP_HDR_LEN + msg_len, r->meta, r->meta_len);
	o->resp_end = last;
	/* Unknown ops (answered UNKNOWN_OP) count with op 0, "other". */
	if (r->status <= OM_STATUS_MAX) {
		uint64_t *row = om_srv_responses(stats, c->w->stats2, q->op);

		OM_COUNT(row[r->status], 1);
	}
	return o;
}

/* Queues a response without a body of its own to build, or ends the
 * connection if there is no memory for it. */
static void
answer(conn_t *c, const om_req_t *q, const resp_t *r)
{
	out_t *o = respond(c, q, r, true);

	if (o == NULL)
		conn_end(c, "out of memory");
	else
		conn_out_push(c, o);
}

static size_t
resp_data_at(const resp_t *r)
{
	size_t msg_len = r->msg ? strlen(r->msg) : 0;

	return OM_RESP_HDR_LEN + (msg_len > OM_PROTO_MSG_MAX ? OM_PROTO_MSG_MAX : msg_len) + r->meta_len;
}

void
conn_bin_error(conn_t *c, const om_req_t *q, uint16_t status, const char *fmt, ...)
{
	char msg[OM_PROTO_MSG_MAX + 1];
	resp_t r = { .status = status, .msg = msg };
	va_list ap;
	out_t *o;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	o = respond(c, q, &r, true);
	if (o == NULL) {
		conn_end(c, "out of memory for a response");
		return;
	}
	conn_out_push(c, o);
}

/* ---- operations -------------------------------------------------------- */

/*
 * Mode auto's threshold: the listener's inline_threshold, or by default
 * (auto) the size from which a descriptor costs less than the copy,
 * measured (docs/ARCHITECTURE.md, Small objects): over Unix 4 KiB for a
 * client that reads at offsets (the descriptor comes from the worker's
 * cache: no open, no close) and 32 KiB for one that needs a description
 * of its own (an open and a close per GET); over TCP, sendfile against a
 * buffer, 64 KiB. HELLO announces it, so it is the connection's.
 */
#define AUTO_INLINE_SHARED  (4u * 1024u)
#define AUTO_INLINE_PRIVATE (32u * 1024u)
#define AUTO_INLINE_NET     (64u * 1024u)

static uint64_t
inline_threshold(const conn_t *c)
{
	if (c->ls->inline_threshold != OM_CONF_SIZE_AUTO)
		return c->ls->inline_threshold;
	if (c->ls->transport != OM_TRANSPORT_UNIX)
		return AUTO_INLINE_NET;
	return c->offset_reads ? AUTO_INLINE_SHARED : AUTO_INLINE_PRIVATE;
}

static void
do_hello(conn_t *c, const om_req_t *q)
{
	const om_conf_t *conf = c->w->srv->conf;
	om_hello_caps_t caps = { 0 };
	resp_t r = { .status = OM_STATUS_OK, .body = OM_BODY_INLINE };
	size_t name_len = strlen(OM_SERVER_NAME);
	out_t *o;

	/* arg is the highest version the client speaks; 0 (a client that
	 * does not say) is taken as 1. A version this server cannot speak
	 * down to closes the connection, as any VERSION error does. */
	if (q->arg < 0) {
		conn_bin_error(c, q, OM_STATUS_VERSION, "no common protocol version: the client speaks up "
		    "to %lld, this server %u", (long long)q->arg, OM_PROTO_VERSION);
		conn_end(c, "no common protocol version");
		return;
	}
	if (q->flags & ~(uint32_t)OM_HELLO_OFFSET_READS) {
		conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "unknown HELLO flags 0x%x", q->flags);
		return;
	}
	/* Shared descriptions are granted where descriptors cross: only
	 * over Unix. Over TCP and UDP the flag promises nothing useful, and
	 * the answer says none were granted. */
	c->offset_reads = (q->flags & OM_HELLO_OFFSET_READS) != 0 &&
	    c->ls->transport == OM_TRANSPORT_UNIX;
	caps.version = OM_PROTO_VERSION;
	caps.transport = (uint8_t)c->ls->transport;
	caps.modes = (uint16_t)c->ls->modes;
	caps.max_uri = conf->index.max_uri;
	caps.max_meta = conf->cache.max_metadata;
	caps.max_pipeline = c->dgram ? 1 : c->ls->max_pipeline;
	caps.max_object = c->ls->max_object;
	if (c->dgram) {
		caps.max_datagram = (uint16_t)c->ls->max_datagram;
		caps.amplification = (uint8_t)c->ls->amplification;
	}
	caps.inline_threshold = inline_threshold(c);
	caps.flags = c->offset_reads ? OM_CAPS_SHARED_DESCRIPTIONS : 0;
	r.body_len = OM_HELLO_CAPS_LEN + name_len;
	r.inline_len = (size_t)r.body_len;
	o = respond(c, q, &r, true);
	if (o == NULL) {
		conn_end(c, "out of memory");
		return;
	}
	om_proto_put_caps(o->data + resp_data_at(&r), &caps);
	memcpy(o->data + resp_data_at(&r) + OM_HELLO_CAPS_LEN, OM_SERVER_NAME, name_len);
	conn_out_push(c, o);
}

/* Whether a GET's bytes go to the client as a descriptor of the file. */
static bool
get_as_fd(const conn_t *c, unsigned mode, uint64_t size)
{
	return c->ls->transport == OM_TRANSPORT_UNIX && (mode == OM_MODE_FDPASS ||
	    (mode == OM_MODE_AUTO && size > inline_threshold(c)));
}

/* A GET's descriptor: the cache's, unless it is passed to a client that
 * may read(2) it (fdpass, or auto over the threshold, on a Unix listener,
 * to a client that did not promise to read at explicit offsets). */
static om_obj_want_t
get_want(const conn_t *c, const om_req_t *q, unsigned mode)
{
	om_obj_want_t w = { .sflags = (q->flags & OM_GET_NO_TOUCH) ? OM_GET_NOTOUCH : 0,
		.meta = (q->flags & OM_GET_WANT_META) != 0, .private_over = UINT64_MAX };

	if (c->offset_reads || c->ls->transport != OM_TRANSPORT_UNIX)
		return w;
	if (mode == OM_MODE_FDPASS)
		w.private_all = true;
	else if (mode == OM_MODE_AUTO)
		w.private_over = inline_threshold(c);
	return w;
}

/* A small object: header and bytes in one buffer, one write; read anyway,
 * so checked against the checksum kept with it. */
static void
get_inline(conn_t *c, const om_req_t *q, resp_t *r, om_obj_t *ob)
{
	out_t *o;
	ssize_t n;

	r->inline_len = (size_t)ob->obj.size;
	if ((o = respond(c, q, r, true)) == NULL) {
		conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory");
		return;
	}
	n = om_obj_read(&c->w->fdc, ob, 0, o->data + resp_data_at(r), r->inline_len);
	if (n != (ssize_t)r->inline_len) {
		free(o);
		conn_bin_error(c, q, OM_STATUS_INTERNAL, "short read of the object's file");
		return;
	}
	if (om_crc32c(0, o->data + resp_data_at(r), r->inline_len) != ob->obj.crc) {
		free(o);
		om_store_quarantine(c->w->srv->st, &ob->obj, ob->tier, "its bytes do not match their "
		    "checksum (found serving a GET)");
		conn_bin_error(c, q, OM_STATUS_INTERNAL, "the object is damaged (its bytes do not match "
		    "their checksum): taken out of service");
		return;
	}
	conn_out_push(c, o);
}

/* A larger object (or splice): the header, then the file's bytes, copied
 * (each checked against the checksum as it is read) or sendfile'd. */
static void
get_range(conn_t *c, const om_req_t *q, resp_t *r, om_obj_t *ob, unsigned mode)
{
	out_t *o, *f;

	if ((o = respond(c, q, r, ob->obj.size == 0)) == NULL) {
		conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory");
		return;
	}
	conn_out_push(c, o);
	if (ob->obj.size == 0)
		return;
	if ((f = conn_out_new(mode == OM_MODE_SPLICE ? OUT_SPLICE : OUT_COPY, 0)) == NULL) {
		conn_end(c, "out of memory");
		return;
	}
	f->ref = om_fdref_take(&ob->ref);
	f->off = ob->base;
	f->len = ob->obj.size;
	f->resp_end = true;
	f->check = f->kind == OUT_COPY;
	f->crc = 0;
	f->tier = ob->tier;
	f->obj = ob->obj;
	conn_out_push(c, f);
}

static void
do_get(conn_t *c, const om_req_t *q, const uint8_t *uri)
{
	unsigned mode = q->flags & OM_MODE_MASK;
	uint8_t meta[OM_PROTO_META_MAX];
	resp_t r = { .status = OM_STATUS_OK };
	om_obj_want_t want;
	char ub[96];
	om_obj_t ob;
	out_t *o;
	int rc;

	if (q->flags & ~(uint32_t)(OM_MODE_MASK | OM_GET_WANT_META | OM_GET_NO_TOUCH)) {
		conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "unknown GET flags 0x%x", q->flags);
		return;
	}
	if (!(c->ls->modes & (1u << mode))) {
		conn_bin_error(c, q, OM_STATUS_MODE_UNSUPPORTED, "mode %u is not supported on this transport",
		    mode);
		return;
	}
	want = get_want(c, q, mode);
	if ((rc = om_obj_get(&c->w->fdc, c->w->srv->st, uri, q->uri_len, &want, &ob, meta, sizeof(meta))) != 0) {
		if (ob.bad_record)
			conn_bin_error(c, q, OM_STATUS_INTERNAL, "cannot read the object's record: %s", om_strerror(rc));
		else if (rc == -ENOENT)
			conn_bin_error(c, q, OM_STATUS_NOT_FOUND, "no such object: %s",
			    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)));
		else
			conn_bin_error(c, q, om_proto_status_of(rc), "cannot open the object: %s", om_strerror(rc));
		return;
	}
	if (c->dgram && OM_RESP_HDR_LEN + ob.meta_len + ob.obj.size > c->ls->max_datagram) {
		conn_bin_error(c, q, OM_STATUS_TOO_LARGE, "too large for UDP: %llu bytes (at most %llu here)",
		    (unsigned long long)ob.obj.size,
		    (unsigned long long)(c->ls->max_datagram - OM_RESP_HDR_LEN - ob.meta_len));
		om_obj_put(&ob);
		return;
	}
	r.tier = ob.tier == OM_TIER_MEM ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
	r.obj = &ob.obj;
	r.body_len = ob.obj.size;
	r.meta = meta;
	r.meta_len = (uint16_t)ob.meta_len;
	r.mtime = (uint32_t)ob.mtime;
	/* A packed object goes inline in mode auto (it is small, and copied
	 * from a mapping); a client that asks for its descriptor gets one of
	 * its own. */
	if ((mode == OM_MODE_FDPASS || !ob.packed) && get_as_fd(c, mode, ob.obj.size)) {
		if ((rc = om_obj_private(&c->w->fdc, c->w->srv->st, &ob)) != 0) {
			conn_bin_error(c, q, om_proto_status_of(rc), "cannot make the object's descriptor: %s",
			    om_strerror(rc));
			om_obj_put(&ob);
			return;
		}
		r.body = OM_BODY_DESCRIPTOR;
		if ((o = respond(c, q, &r, true)) == NULL) {
			conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory");
		} else {
			o->ref = om_fdref_take(&ob.ref);
			conn_out_push(c, o);
		}
		om_obj_put(&ob);
		return;
	}
	/* TCP auto: small objects through one buffer, large ones sendfile'd. */
	if (mode == OM_MODE_AUTO && c->ls->transport == OM_TRANSPORT_TCP)
		mode = ob.obj.size > inline_threshold(c) ? OM_MODE_SPLICE : OM_MODE_COPY;
	r.body = OM_BODY_INLINE;
	if (mode != OM_MODE_SPLICE && ob.obj.size <= INLINE_READ)
		get_inline(c, q, &r, &ob);
	else
		get_range(c, q, &r, &ob, mode);
	om_obj_put(&ob);
}

/*
 * Whether a PUT's descriptor can be read from offset 0, as the copy will:
 * a pipe, a socket, a directory or a descriptor not open for reading
 * cannot. That is the client's mistake, answered BAD_REQUEST with the
 * reason, not a failure of the server. A read of 0 bytes at offset 0
 * asks the kernel exactly that, whatever the kind of file.
 */
static bool
readable_at_offsets(int fd, char *why, size_t n)
{
	static const char *const what = "a PUT by descriptor needs one that can be read from offset 0";
	struct stat sb;
	const char *kind = "a file";
	ssize_t r;
	uint8_t b;
	int e;

	do
		r = pread(fd, &b, 0, 0);
	while (r < 0 && errno == EINTR);
	/* Only these say what the descriptor is; any other error is the
	 * copy's to report. */
	if (r == 0 || (errno != ESPIPE && errno != EBADF && errno != EISDIR && errno != EINVAL))
		return true;
	e = errno;
	if (fstat(fd, &sb) == 0) {
		int fl = fcntl(fd, F_GETFL);

		if (fl >= 0 && (fl & O_PATH))
			kind = "an O_PATH descriptor";
		else if (S_ISFIFO(sb.st_mode))
			kind = "a pipe";
		else if (S_ISSOCK(sb.st_mode))
			kind = "a socket";
		else if (S_ISDIR(sb.st_mode))
			kind = "a directory";
		else if (S_ISCHR(sb.st_mode))
			kind = "a character device";
		else if (fl >= 0 && (fl & O_ACCMODE) == O_WRONLY)
			kind = "a file open for writing only";
	}
	snprintf(why, n, "%s; this is %s (%s)", what, kind, strerror(e));
	return false;
}

static void
put_done(conn_t *c, const om_req_t *q, int rc, const om_ix_obj_t *obj)
{
	resp_t r = { .status = OM_STATUS_OK };

	if (rc == -ENODATA) {
		conn_bin_error(c, q, OM_STATUS_SHORT_BODY, "the descriptor holds fewer than %llu bytes",
		    (unsigned long long)q->body_len);
		return;
	}
	if (rc != 0) {
		char why[OM_PROTO_MSG_MAX];
		uint16_t status = om_obj_put_error(c->w->srv->st, rc,
		    (q->flags & OM_PUT_EPHEMERAL) ? OM_TIER_MEM : OM_TIER_DISK, why, sizeof(why));

		conn_bin_error(c, q, status, "%s", why);
		return;
	}
	r.obj = obj;
	/* cppcheck-suppress nullPointer ; obj is NULL only with rc != 0 (returned above) */
	r.body_len = obj->size;
	r.tier = (obj->flags & OM_IX_F_EPHEMERAL) ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
	answer(c, q, &r);
}

/* ST_FDCOPY: what one turn of the worker copies at most, in steps. */
#define COPY_STEP     (1u << 20)
#define COPY_SLICE_NS 2000000u

static uint64_t
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/*
 * A PUT by descriptor: copied from the client's descriptor in steps of
 * COPY_STEP for about COPY_SLICE_NS per turn of the worker, each step's
 * bytes checksummed while they are in the page cache, then committed. So
 * a copy of any size holds the worker's other connections up by one
 * slice at most (a 2 GiB one stalled them for seconds). Returns true
 * while bytes are left to copy.
 */
static bool
copy_some(conn_t *c)
{
	uint64_t start = now_ns();
	om_ix_obj_t obj;
	int rc;

	c->active_ms = om_clock_ms();
	do {
		uint64_t n = c->left < COPY_STEP ? c->left : COPY_STEP;

		if ((rc = om_store_put_copy(c->txn, c->put_fd, c->put_off, n)) != 0 ||
		    (rc = om_store_put_sum(c->txn, n)) != 0)
			break;
		c->put_off += n;
		c->left -= n;
	} while (c->left > 0 && now_ns() - start < COPY_SLICE_NS);
	if (rc == 0 && c->left > 0)
		return true;
	close(c->put_fd);
	c->put_fd = -1;
	c->state = ST_HEADER;
	if (rc != 0)
		om_store_put_abort(c->txn);
	else
		rc = om_store_put_commit(c->txn, &obj);
	c->txn = NULL;
	put_done(c, &c->req, rc, &obj);
	return false;
}

static void
put_begin(conn_t *c, const om_req_t *q, const uint8_t *uri, const uint8_t *meta)
{
	om_store_t *st = c->w->srv->st;
	om_put_args_t a = { 0 };
	om_ix_obj_t obj;
	int rc;

	a.size = q->body_len;
	a.meta = meta;
	a.meta_len = q->meta_len;
	a.expires = q->arg;
	a.flags = (q->flags & OM_PUT_EPHEMERAL) ? OM_STORE_EPHEMERAL : 0;

	if (q->flags & OM_PUT_FD) {
		char why[160];
		int fd;

		if (c->nrfds == 0) {
			conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "PUT with FD but no descriptor came with it");
			conn_end(c, "PUT without its descriptor");
			return;
		}
		fd = conn_take_fd(c);
		if (!readable_at_offsets(fd, why, sizeof(why))) {
			close(fd);
			conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "%s", why);
			return;
		}
		if ((rc = om_store_put_begin(st, uri, q->uri_len, &a, &c->txn)) != 0) {
			close(fd);
			put_done(c, q, rc, NULL);
			return;
		}
		/* The copy runs in steps between the other connections' turns. */
		c->req = *q;
		c->put_fd = fd;
		c->put_off = 0;
		c->left = q->body_len;
		c->state = ST_FDCOPY;
		return;
	}
	rc = om_store_put_begin(st, uri, q->uri_len, &a, &c->txn);
	if (rc != 0) {
		put_done(c, q, rc, NULL);
		/* Drop the bytes that follow, or close if there are too many. */
		if (q->body_len > SKIP_MAX) {
			conn_end(c, "refused PUT body too large to skip");
		} else {
			c->state = ST_SKIP;
			c->left = q->body_len;
		}
		return;
	}
	c->req = *q;
	c->left = q->body_len;
	c->state = ST_BODY;
	if (c->left == 0) {
		rc = om_store_put_commit(c->txn, &obj);
		c->txn = NULL;
		c->state = ST_HEADER;
		put_done(c, q, rc, &obj);
	}
}

static void
do_stat(conn_t *c, const om_req_t *q, const uint8_t *uri)
{
	om_store_t *st = c->w->srv->st;
	uint8_t meta[OM_PROTO_META_MAX];
	uint32_t meta_len = 0;
	int64_t mtime = 0;
	resp_t r = { .status = OM_STATUS_OK };
	char ub[96];
	om_ix_obj_t o;
	om_get_t g;
	int rc;

	if (q->flags & ~(uint32_t)OM_GET_WANT_META) {
		conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "unknown STAT flags 0x%x", q->flags);
		return;
	}
	/* The object's file is opened, not only its index entry read: an
	 * object whose file is gone (deleted from outside) is no object,
	 * and its entry goes (as for a GET). */
	rc = om_store_get(st, uri, q->uri_len, OM_GET_NOTOUCH | OM_GET_NOCOUNT, &g);
	if (rc == -ENOENT) {
		conn_bin_error(c, q, OM_STATUS_NOT_FOUND, "no such object: %s",
		    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)));
		return;
	}
	if (rc != 0) {
		conn_bin_error(c, q, om_proto_status_of(rc), "cannot open the object: %s", om_strerror(rc));
		return;
	}
	o = g.obj;
	if (q->flags & OM_GET_WANT_META)
		rc = om_store_read_meta(st, &g, meta, sizeof(meta), &meta_len, &mtime);
	close(g.fd);
	if (rc != 0) {
		conn_bin_error(c, q, om_proto_status_of(rc), "cannot read the object's record: %s", om_strerror(rc));
		return;
	}
	r.obj = &o;
	r.body_len = o.size;
	r.tier = (o.flags & (OM_IX_F_EPHEMERAL | OM_IX_F_COPY)) ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
	r.meta = meta;
	r.meta_len = (uint16_t)meta_len;
	r.mtime = (uint32_t)mtime;
	answer(c, q, &r);
}

static void
do_simple(conn_t *c, const om_req_t *q, const uint8_t *uri)
{
	resp_t r = { .status = OM_STATUS_OK };
	char ub[96];
	out_t *o;

	if (q->op == OM_OP_DELETE) {
		int rc = om_store_delete(c->w->srv->st, uri, q->uri_len);

		if (rc != 0) {
			const char *why = om_store_why(c->w->srv->st);

			conn_bin_error(c, q, om_proto_status_of(rc), "%s: %s%s%s",
			    rc == -ENOENT ? "no such object" : "cannot delete",
			    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)), why[0] ? ": " : "", why);
			return;
		}
	} else if (q->op == OM_OP_STATS) {
		size_t len = 0;
		char *text = om_srv_stats_text(c->w->srv, q->flags, &len);

		if (text == NULL) {
			conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory");
			return;
		}
		r.body = OM_BODY_INLINE;
		r.body_len = len;
		r.inline_len = len;
		o = respond(c, q, &r, true);
		if (o != NULL)
			memcpy(o->data + resp_data_at(&r), text, len);
		free(text);
		if (o == NULL) {
			conn_end(c, "out of memory");
			return;
		}
		conn_out_push(c, o);
		return;
	}
	answer(c, q, &r);
}

/*
 * VERIFY: the cache manager checks the object's bytes at its next turn
 * (within [cache] interval), or starts a scrub pass over the store. The
 * request goes into this process's slot, which the manager reads; the
 * answer says it was queued, and a damaged object is then quarantined.
 */
static void
do_verify(conn_t *c, const om_req_t *q, const uint8_t *uri)
{
	om_srv_requests_sh_t *rq = om_srv_requests(c->w->srv, c->w->srv->slot);
	resp_t r = { .status = OM_STATUS_OK };
	char ub[96];
	om_ix_obj_t o;

	if (rq == NULL) {
		conn_bin_error(c, q, OM_STATUS_INTERNAL, "no slot for requests to the cache manager");
		return;
	}
	if (q->uri_len == 0) {
		OM_STORE_REL(&rq->pass_req, OM_LOAD(&rq->pass_req) + 1);
		r.msg = "a scrub pass starts";
	} else {
		uint64_t n;

		if (om_store_stat(c->w->srv->st, uri, q->uri_len, &o) != 0) {
			conn_bin_error(c, q, OM_STATUS_NOT_FOUND, "no such object: %s",
			    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)));
			return;
		}
		/* A full queue drops its oldest request: the scrub's passes
		 * check every object anyway. */
		n = OM_LOAD(&rq->verify_req);
		OM_STORE(&rq->verify_q[n % OM_VERIFY_QUEUE].id, o.id);
		OM_STORE(&rq->verify_q[n % OM_VERIFY_QUEUE].slot, o.slot);
		OM_STORE_REL(&rq->verify_req, n + 1);
		r.obj = &o;
		r.body_len = o.size;
		r.tier = (o.flags & (OM_IX_F_EPHEMERAL | OM_IX_F_COPY)) ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
		r.msg = "queued: the cache manager checks its bytes at its next turn";
	}
	answer(c, q, &r);
}

/*
 * LIST and PURGE walk the index's hash table by URI prefix
 * (om_index_list): a page or a step reads whole buckets, without holding
 * a lock across them, and ends at these bounds, so that neither holds the
 * worker (and its other connections) up for long, whatever the store's
 * size. The client carries on from the cursor in the answer.
 */
#define LIST_BUCKETS  262144u       /* buckets read per page or step (1 MiB) */
#define LIST_LOOK     8192u         /* objects looked at per page or step */
#define LIST_ENTRIES  1000u         /* entries per page */
#define LIST_BYTES    (64u * 1024u) /* bytes of entries per page */
#define PURGE_DELETES 256u          /* objects deleted per step, */
#define PURGE_SLICE_NS 2000000u     /* ... for about this long at most (a
                                     * deletion syncs a directory with
                                     * durability = fsync) */

/* The cursor of a request: 0 begins; any other must carry this index's
 * tag (om_index_tag) and name one of its buckets. Answers and returns -1
 * if it does not. */
static int
cursor_bucket(conn_t *c, const om_req_t *q, uint32_t *bucket)
{
	om_index_t *ix = c->w->srv->ix;
	uint64_t cur = (uint64_t)q->arg;

	*bucket = 0;
	if (cur == 0)
		return 0;
	if ((uint32_t)(cur >> 32) != om_index_tag(ix)) {
		conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "the cursor 0x%llx is not from this index (the "
		    "daemon rebuilt its index since, at a restart): start again from 0",
		    (unsigned long long)cur);
		return -1;
	}
	if ((uint32_t)cur >= om_index_buckets(ix)) {
		conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "the cursor 0x%llx is not one this server gave: "
		    "start again from 0", (unsigned long long)cur);
		return -1;
	}
	*bucket = (uint32_t)cur;
	return 0;
}

static uint64_t
cursor_next(conn_t *c, uint32_t bucket, int done)
{
	return done ? 0 : (uint64_t)om_index_tag(c->w->srv->ix) << 32 | bucket;
}

static int
entry_expired(const om_ix_obj_t *o, int64_t now)
{
	return o->expires != 0 && o->expires <= now;
}

typedef struct {
	uint8_t *buf;   /* the entries */
	size_t len, cap;
	size_t limit;   /* bytes of entries a page may hold */
	unsigned n;
	int64_t now;
	bool oom;
} page_t;

/* A bucket's matches go into the page whole, or (if the page has some
 * already and they would not fit) not at all: the next page begins with
 * them. Expired objects are absent, as for GET. */
static int
page_take(void *arg, const om_ix_entry_t *e, unsigned n)
{
	page_t *p = arg;
	size_t need = 0;
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++) {
		if (entry_expired(&e[i].obj, p->now))
			continue;
		need += OM_LIST_ENTRY_LEN + e[i].len;
		k++;
	}
	if (k == 0)
		return OM_IX_LIST_MORE;
	if (p->n > 0 && (p->n + k > LIST_ENTRIES || p->len + need > p->limit))
		return OM_IX_LIST_REFUSE;
	if (p->len + need > p->cap) {
		size_t cap = p->cap ? p->cap : 4096;
		uint8_t *b;

		while (cap < p->len + need)
			cap *= 2;
		if ((b = realloc(p->buf, cap)) == NULL) {
			p->oom = true;
			return OM_IX_LIST_REFUSE;
		}
		p->buf = b;
		p->cap = cap;
	}
	for (unsigned i = 0; i < n; i++) {
		const om_ix_obj_t *o = &e[i].obj;
		uint8_t *d = p->buf + p->len;

		if (entry_expired(o, p->now))
			continue;
		om_le64(d, o->size);
		om_le64(d + 8, (uint64_t)o->expires);
		om_le64(d + 16, o->id);
		om_le32(d + 24, o->crc);
		d[28] = (o->flags & OM_IX_F_EPHEMERAL) ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
		d[29] = (o->flags & OM_IX_F_COPY) ? OM_LIST_F_COPY : 0;
		om_le16(d + 30, (uint16_t)e[i].len);
		memcpy(d + OM_LIST_ENTRY_LEN, e[i].uri, e[i].len);
		p->len += OM_LIST_ENTRY_LEN + e[i].len;
	}
	p->n += k;
	return p->n >= LIST_ENTRIES || p->len >= p->limit ? OM_IX_LIST_LAST : OM_IX_LIST_MORE;
}

/* LIST: a page of the objects under the prefix (the request's URI). */
static void
do_list(conn_t *c, const om_req_t *q, const uint8_t *prefix)
{
	om_index_t *ix = c->w->srv->ix;
	page_t p = { .limit = LIST_BYTES, .now = om_time_s() };
	resp_t r = { .status = OM_STATUS_OK, .body = OM_BODY_INLINE };
	uint32_t bucket;
	out_t *o;
	int rc;

	if (cursor_bucket(c, q, &bucket) != 0)
		return;
	if (c->dgram) {
		/* One datagram: what the amplification limit leaves for entries
		 * (a bucket that alone is more is answered TOO_LARGE). */
		size_t room = c->ls->max_datagram;

		if ((uint64_t)c->ls->amplification * c->in_len < room)
			room = c->ls->amplification * c->in_len;
		room = room > OM_RESP_HDR_LEN + OM_LIST_PAGE_LEN ? room - OM_RESP_HDR_LEN -
		    OM_LIST_PAGE_LEN : 0;
		if (room < p.limit)
			p.limit = room;
	}
	rc = om_index_list(ix, &bucket, prefix, q->uri_len, LIST_BUCKETS, LIST_LOOK, page_take, &p);
	if (rc < 0 || p.oom) {
		free(p.buf);
		conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory for a page of the listing");
		return;
	}
	r.body_len = OM_LIST_PAGE_LEN + p.len;
	r.inline_len = (size_t)r.body_len;
	if ((o = respond(c, q, &r, true)) == NULL) {
		free(p.buf);
		conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory for a page of the listing");
		return;
	}
	{
		uint8_t *d = o->data + resp_data_at(&r);

		om_le64(d, cursor_next(c, bucket, rc == 1));
		om_le32(d + 8, p.n);
		om_le32(d + 12, 0);
		if (p.len)
			memcpy(d + OM_LIST_PAGE_LEN, p.buf, p.len);
	}
	free(p.buf);
	conn_out_push(c, o);
}

typedef struct {
	conn_t *c;
	uint64_t start_ns;
	uint64_t deleted;
	unsigned tried;
	int rc;          /* the first failure */
	char uri[96];    /* its object's URI, shown */
} purge_t;

/* Deletes a bucket's matches (no index lock is held here), each only if
 * it is still the version the walk saw. */
static int
purge_take(void *arg, const om_ix_entry_t *e, unsigned n)
{
	purge_t *p = arg;
	om_store_t *st = p->c->w->srv->st;

	for (unsigned i = 0; i < n; i++) {
		int rc = om_store_delete_obj(st, &e[i].obj);

		p->tried++;
		if (rc == 0 && !entry_expired(&e[i].obj, om_time_s()))
			p->deleted++;
		if (rc != 0 && rc != -ENOENT) {
			p->rc = rc;
			om_obj_uri_shown((const uint8_t *)e[i].uri, e[i].len, p->uri, sizeof(p->uri));
			return OM_IX_LIST_LAST;
		}
	}
	return p->tried >= PURGE_DELETES || now_ns() - p->start_ns > PURGE_SLICE_NS ? OM_IX_LIST_LAST :
	    OM_IX_LIST_MORE;
}

/* PURGE: a step of deleting the objects under the prefix. */
static void
do_purge(conn_t *c, const om_req_t *q, const uint8_t *prefix)
{
	om_srv_stats2_sh_t *stats2 = c->w->stats2;
	resp_t r = { .status = OM_STATUS_OK, .body = OM_BODY_INLINE };
	purge_t p = { .c = c, .start_ns = now_ns() };
	uint32_t bucket;
	out_t *o;
	int rc;

	if (cursor_bucket(c, q, &bucket) != 0)
		return;
	rc = om_index_list(c->w->srv->ix, &bucket, prefix, q->uri_len, LIST_BUCKETS, LIST_LOOK,
	    purge_take, &p);
	OM_COUNT(stats2->purged, p.deleted);
	if (p.rc != 0) {
		const char *why = om_store_why(c->w->srv->st);

		conn_bin_error(c, q, om_proto_status_of(p.rc), "cannot delete %s: %s (%llu objects were deleted "
		    "before it)", p.uri, why[0] ? why : om_strerror(p.rc), (unsigned long long)p.deleted);
		om_log_err_limited(0, "PURGE: cannot delete %s: %s", p.uri, why[0] ? why : om_strerror(p.rc));
		return;
	}
	if (rc < 0) {
		conn_bin_error(c, q, OM_STATUS_BUSY, "out of memory (%llu objects were deleted before)",
		    (unsigned long long)p.deleted);
		return;
	}
	r.body_len = OM_PURGE_BODY_LEN;
	r.inline_len = OM_PURGE_BODY_LEN;
	if ((o = respond(c, q, &r, true)) == NULL) {
		conn_end(c, "out of memory");
		return;
	}
	om_le64(o->data + resp_data_at(&r), cursor_next(c, bucket, rc == 1));
	om_le64(o->data + resp_data_at(&r) + 8, p.deleted);
	conn_out_push(c, o);
}

/* ---- requests ------------------------------------------------------------ */

/* A PUT with FD that is refused before it runs still takes its descriptor. */
static void
drop_put_fd(conn_t *c, const om_req_t *q)
{
	if (q->op == OM_OP_PUT && (q->flags & OM_PUT_FD) && c->nrfds > 0)
		close(conn_take_fd(c));
}

/* What an operation needs of the allow lists. HELLO and PING need nothing:
 * they tell nothing about the objects. */
static enum om_access
need_access(unsigned op)
{
	switch (op) {
	case OM_OP_PUT:
	case OM_OP_DELETE:
	case OM_OP_PURGE:
	case OM_OP_VERIFY: /* it costs the daemon reads: a writer's right */
		return OM_ACCESS_WRITE;
	case OM_OP_GET:
	case OM_OP_STAT:
	case OM_OP_STATS:
	case OM_OP_LIST:
		return OM_ACCESS_READ;
	default:
		return OM_ACCESS_NONE;
	}
}

/* UDP: the largest object a PUT with this metadata may store, so that a
 * GET's answer with it fits a datagram (0 if the metadata alone does not). */
static uint32_t
udp_put_room(const conn_t *c, const om_req_t *q)
{
	uint32_t used = OM_RESP_HDR_LEN + q->meta_len;

	return c->ls->max_datagram > used ? c->ls->max_datagram - used : 0;
}

/*
 * Checks a header whose lengths are sane enough to skip the frame: returns
 * 0 to run it, or answers it (and arranges to drop its bytes).
 */
static int
check_request(conn_t *c, const om_req_t *q)
{
	const om_conf_t *conf = c->w->srv->conf;
	uint64_t rest = (uint64_t)q->uri_len + q->meta_len + q->body_len;
	bool has_uri = q->op == OM_OP_GET || q->op == OM_OP_PUT || q->op == OM_OP_DELETE ||
	    q->op == OM_OP_STAT || (q->op == OM_OP_VERIFY && q->uri_len != 0);
	bool prefix = q->op == OM_OP_LIST || q->op == OM_OP_PURGE;
	uint16_t status = OM_STATUS_OK;
	char why[160] = "";

	if (q->op < OM_OP_HELLO || q->op == OM_OP_GOAWAY || q->op > OM_OP_MAX) {
		status = OM_STATUS_UNKNOWN_OP;
		snprintf(why, sizeof(why), "unknown operation %u", q->op);
	} else if (q->op != OM_OP_PUT && q->op != OM_OP_HELLO && q->body_len != 0) {
		/* Without a body this frame may be garbage: do not trust it, nor
		 * its other lengths (before any is checked and skipped). */
		conn_bin_error(c, q, OM_STATUS_BAD_REQUEST, "%s takes no body", om_proto_op_name(q->op));
		conn_end(c, "unexpected body");
		return -1;
	} else if (prefix && (q->uri_len > conf->index.max_uri || (q->op == OM_OP_PURGE && q->uri_len == 0))) {
		/* An empty PURGE would empty the store: not by accident. */
		status = OM_STATUS_URI_INVALID;
		snprintf(why, sizeof(why), "prefix of %u bytes (%u to %u allowed)", q->uri_len,
		    q->op == OM_OP_PURGE ? 1u : 0u, conf->index.max_uri);
	} else if (has_uri && (q->uri_len == 0 || q->uri_len > conf->index.max_uri)) {
		status = OM_STATUS_URI_INVALID;
		snprintf(why, sizeof(why), "URI of %u bytes (1 to %u allowed)", q->uri_len,
		    conf->index.max_uri);
	} else if (!has_uri && !prefix && q->uri_len != 0) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "%s takes no URI", om_proto_op_name(q->op));
	} else if (q->op != OM_OP_PUT && q->meta_len != 0) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "%s takes no metadata", om_proto_op_name(q->op));
	} else if (q->op == OM_OP_PUT && q->meta_len > conf->cache.max_metadata) {
		status = OM_STATUS_META_TOO_LARGE;
		snprintf(why, sizeof(why), "metadata of %u bytes (at most %u)", q->meta_len,
		    conf->cache.max_metadata);
	} else if (q->op == OM_OP_HELLO && q->body_len > OM_PROTO_HELLO_MAX) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "HELLO body of %llu bytes", (unsigned long long)q->body_len);
	} else if (q->op == OM_OP_STATS && (q->flags & ~(uint32_t)OM_STATS_PROMETHEUS)) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "unknown STATS flags 0x%x", q->flags);
	} else if ((q->op == OM_OP_DELETE || q->op == OM_OP_PING || q->op == OM_OP_VERIFY || prefix) &&
	    q->flags) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "%s takes no flags (0x%x)", om_proto_op_name(q->op), q->flags);
	} else if (q->op != OM_OP_HELLO && q->op != OM_OP_PUT && !prefix && q->arg != 0) {
		/* arg is HELLO's version, PUT's expiry, a cursor; else 0. */
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "%s takes no arg (%lld)", om_proto_op_name(q->op),
		    (long long)q->arg);
	} else if (q->op == OM_OP_PUT && (q->flags & ~(uint32_t)(OM_PUT_EPHEMERAL | OM_PUT_FD))) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "unknown PUT flags 0x%x", q->flags);
	} else if (q->op == OM_OP_PUT && (q->flags & OM_PUT_FD) && c->ls->transport != OM_TRANSPORT_UNIX) {
		status = OM_STATUS_MODE_UNSUPPORTED;
		snprintf(why, sizeof(why), "descriptors do not cross this transport");
	} else if (q->op == OM_OP_PUT && c->ls->max_object && q->body_len > c->ls->max_object) {
		status = OM_STATUS_TOO_LARGE;
		snprintf(why, sizeof(why), "object of %llu bytes (at most %llu)",
		    (unsigned long long)q->body_len, (unsigned long long)c->ls->max_object);
	} else if (q->op == OM_OP_PUT && c->dgram && q->body_len > udp_put_room(c, q)) {
		status = OM_STATUS_TOO_LARGE;
		snprintf(why, sizeof(why), "too large for UDP: %llu bytes (at most %u here with %u bytes of "
		    "metadata)", (unsigned long long)q->body_len, udp_put_room(c, q), q->meta_len);
	} else if (c->access < need_access(q->op)) {
		status = OM_STATUS_DENIED;
		snprintf(why, sizeof(why), "%s may not %s on listener %s", c->peer.name,
		    need_access(q->op) == OM_ACCESS_WRITE ? "write" : "read", c->ls->name);
		OM_COUNT(c->w->stats->denied, 1);
	}
	if (status == OM_STATUS_OK)
		return 0;
	conn_bin_error(c, q, status, "%s", why);
	drop_put_fd(c, q);
	if (q->op == OM_OP_PUT && (q->flags & OM_PUT_FD))
		rest -= q->body_len;
	if (rest > SKIP_MAX) {
		conn_end(c, "refused request too large to skip");
		return -1;
	}
	c->state = ST_SKIP;
	c->left = rest;
	return -1;
}

/* Runs one request whose header, URI and metadata are in the buffer. */
static void
dispatch(conn_t *c, const om_req_t *q, const uint8_t *uri, const uint8_t *meta)
{
	const char *bad;

	c->last_id = q->id;
	if ((q->op == OM_OP_GET || q->op == OM_OP_PUT || q->op == OM_OP_DELETE || q->op == OM_OP_STAT ||
	    (q->op == OM_OP_VERIFY && q->uri_len != 0)) &&
	    (bad = om_proto_uri_error(uri, q->uri_len, c->w->srv->conf->index.max_uri)) != NULL) {
		conn_bin_error(c, q, OM_STATUS_URI_INVALID, "%s", bad);
		drop_put_fd(c, q);
		if (q->op == OM_OP_PUT && !(q->flags & OM_PUT_FD) && q->body_len) {
			/* As for any refused PUT: a body over SKIP_MAX is not read. */
			if (q->body_len > SKIP_MAX) {
				conn_end(c, "refused PUT body too large to skip");
			} else {
				c->state = ST_SKIP;
				c->left = q->body_len;
			}
		}
		return;
	}
	if ((q->op == OM_OP_LIST || q->op == OM_OP_PURGE) &&
	    (bad = om_proto_prefix_error(uri, q->uri_len, c->w->srv->conf->index.max_uri)) != NULL) {
		conn_bin_error(c, q, OM_STATUS_URI_INVALID, "%s", bad);
		return;
	}
	switch (q->op) {
	case OM_OP_HELLO: do_hello(c, q); break;
	case OM_OP_GET: do_get(c, q, uri); break;
	case OM_OP_PUT: put_begin(c, q, uri, meta); break;
	case OM_OP_STAT: do_stat(c, q, uri); break;
	case OM_OP_VERIFY: do_verify(c, q, uri); break;
	case OM_OP_LIST: do_list(c, q, uri); break;
	case OM_OP_PURGE: do_purge(c, q, uri); break;
	default: do_simple(c, q, uri); break;
	}
}

/* The buffer holds a whole request header, URI and metadata. */
static bool
frame_complete(const conn_t *c)
{
	size_t have = c->in_len - c->in_off;

	if (have < OM_REQ_HDR_LEN)
		return false;
	return have >= OM_REQ_HDR_LEN + (size_t)om_get16(c->in + c->in_off + 12) +
	    om_get16(c->in + c->in_off + 14);
}

static void
send_goaway(conn_t *c)
{
	om_req_t q = { .op = OM_OP_GOAWAY, .id = c->last_id };
	resp_t r = { .status = OM_STATUS_OK, .msg = c->w->draining ? "the server is reloading or stopping" :
		"closing the connection" };
	out_t *o = respond(c, &q, &r, true);

	c->goaway_sent = true;
	c->closing = true;
	OM_COUNT(c->w->stats->goaways, 1);
	if (o != NULL)
		conn_out_push(c, o);
}

/* What one step of the loop over a connection's buffer says. */
enum step {
	STEP_ON,    /* go on */
	STEP_WAIT,  /* wait for input, or for room to answer */
	STEP_YIELD, /* the worker's other connections first */
};

/* ST_BODY: a PUT's bytes to its transaction, committed once all came. */
static enum step
body_step(conn_t *c)
{
	uint64_t left = c->left;
	om_ix_obj_t obj;
	int rc;

	if (conn_body_have(c) == 0)
		return STEP_WAIT;
	rc = conn_body_write(c);
	c->req_taken += left - c->left;
	if (rc != 0) {
		om_store_put_abort(c->txn);
		c->txn = NULL;
		put_done(c, &c->req, rc, NULL);
		c->state = c->left ? ST_SKIP : ST_HEADER;
		if (c->left == 0)
			c->frames++; /* else when the rest is skipped */
		if (c->left > SKIP_MAX)
			conn_end(c, "failed PUT body too large to skip");
		return STEP_ON;
	}
	if (c->left == 0) {
		c->frames++;
		rc = om_store_put_commit(c->txn, &obj);
		c->txn = NULL;
		c->state = ST_HEADER;
		put_done(c, &c->req, rc, &obj);
	}
	return STEP_ON;
}

/* ST_SKIP: a refused request's bytes are dropped. */
static enum step
skip_step(conn_t *c)
{
	size_t have = c->in_len - c->in_off, n = have < c->left ? have : (size_t)c->left;

	if (c->left == 0) {
		c->state = ST_HEADER;
		return STEP_ON;
	}
	if (n == 0)
		return STEP_WAIT;
	conn_consume(c, n);
	c->left -= n;
	c->req_taken += n;
	if (c->left == 0) {
		c->state = ST_HEADER;
		c->frames++;
	}
	return STEP_ON;
}

/* A frame that is not one (bad magic) or of another version: answered,
 * and the stream is not trusted further. */
static void
bad_frame(conn_t *c, int rc, const om_req_t *q)
{
	om_req_t z = { .op = 0, .id = 0 };
	om_srv_stats_sh_t *stats = c->w->stats;

	OM_COUNT(stats->bad_frames, 1);
	if (rc == -EPROTONOSUPPORT) {
		z.op = q->op;
		z.id = q->id;
		conn_bin_error(c, &z, OM_STATUS_VERSION, "protocol version %u is not supported (this "
		    "server speaks %u)", q->version, OM_PROTO_VERSION);
	} else {
		conn_bin_error(c, &z, OM_STATUS_BAD_REQUEST, "not an objmapper frame (bad magic)");
	}
	conn_end(c, "bad frame");
}

/* ST_HEADER, a request's header in the buffer: checked before its URI and
 * metadata arrive (a refused frame is skipped whatever its lengths, an
 * accepted one has at most 1024 + 2048 bytes to gather), then run once
 * they are there. */
static enum step
frame_step(conn_t *c)
{
	size_t have = c->in_len - c->in_off, parts;
	const uint8_t *uri;
	om_req_t q;
	int rc;

	if ((rc = om_proto_get_req(c->in + c->in_off, &q)) != 0) {
		bad_frame(c, rc, &q);
		return STEP_WAIT;
	}
	c->dgram_done = true;
	c->req_taken = 0; /* a request begins: what it takes counts (conn.c) */
	if (check_request(c, &q) != 0) {
		/* Answered (refused): a GOAWAY names it as it names a request
		 * that ran, so that none answered comes after its id. */
		c->last_id = q.id;
		c->frames++;
		if (c->state == ST_SKIP) {
			conn_consume(c, OM_REQ_HDR_LEN); /* the skip counts the rest */
			c->req_taken = OM_REQ_HDR_LEN;
		}
		return STEP_ON;
	}
	parts = OM_REQ_HDR_LEN + q.uri_len + q.meta_len;
	if (have < parts) {
		/* Wait for the rest; make room if the buffer is full. */
		c->starved = true;
		if (c->in_off > 0 && c->in_len == IN_CAP) {
			memmove(c->in, c->in + c->in_off, have);
			c->in_len = have;
			c->in_off = 0;
		}
		return STEP_WAIT;
	}
	if (c->dgram && q.op == OM_OP_HELLO && have - parts < q.body_len) {
		/* The datagram ends inside the client's name: not run, and
		 * refused as any frame cut short (proto_udp.c). */
		return STEP_WAIT;
	}
	uri = c->in + c->in_off + OM_REQ_HDR_LEN;
	if (q.op == OM_OP_HELLO && q.body_len) {
		/* The client's name: skipped with the frame. */
		c->state = ST_SKIP;
		c->left = q.body_len;
	}
	dispatch(c, &q, uri, uri + q.uri_len);
	/* A PUT whose bytes are still to come is received whole with its
	 * last byte (body_step): until then what arrived of it, the bytes
	 * that came with its header included, counts for request_timeout. */
	if (c->state != ST_BODY)
		c->frames++;
	/* The URI and metadata were copied where kept. */
	conn_consume(c, parts);
	c->req_taken = parts;
	return STEP_ON;
}

/* ST_HEADER: the next request, within the pipeline limit and the budget. */
static enum step
header_step(conn_t *c, int *budget)
{
	size_t have = c->in_len - c->in_off;

	if (c->inflight >= c->ls->max_pipeline || c->out_bytes >= c->ls->max_buffer)
		return STEP_WAIT;
	if (c->dgram && c->dgram_done)
		return STEP_WAIT; /* what follows the request is padding */
	if ((*budget)-- == 0)
		return STEP_YIELD;
	if (c->draining && !c->goaway_sent && !frame_complete(c)) {
		/* Nothing more is accepted: a request half received was not
		 * accepted either (the GOAWAY tells the client which were). */
		c->in_off = c->in_len = 0;
		send_goaway(c);
		return STEP_WAIT;
	}
	if (have < OM_REQ_HDR_LEN) {
		c->starved = have > 0;
		return STEP_WAIT;
	}
	return frame_step(c);
}

/*
 * Descriptors that no request took are a protocol error. It belongs to no
 * request (the requests it came with are answered), so it is said the way
 * the connection ends: GOAWAY naming the last request accepted, with
 * status BAD_REQUEST.
 */
static void
stray_descriptors(conn_t *c)
{
	om_req_t g = { .op = OM_OP_GOAWAY, .id = c->last_id };

	if (c->nrfds == 0 || c->state != ST_HEADER || c->in_off != c->in_len || c->closing)
		return;
	OM_COUNT(c->w->stats->goaways, 1);
	c->goaway_sent = true;
	conn_bin_error(c, &g, OM_STATUS_BAD_REQUEST, "a descriptor came with a request that takes none "
	    "(after request %u): closing", c->last_id);
	conn_end(c, "stray descriptor");
}

/* Handles what the buffer holds, within the pipeline limit. Returns true
 * if there is more to do right away (budget spent, or a copy in steps). */
bool
conn_bin_process(conn_t *c)
{
	int budget = RUN_BUDGET;
	enum step s = STEP_ON;

	while (s == STEP_ON && !c->closing && !c->dead) {
		switch (c->state) {
		case ST_FDCOPY:
			s = copy_some(c) ? STEP_YIELD : STEP_ON;
			break;
		case ST_BODY:
			s = body_step(c);
			break;
		case ST_SKIP:
			s = skip_step(c);
			break;
		default:
			s = header_step(c, &budget);
			break;
		}
	}
	stray_descriptors(c);
	return s == STEP_YIELD;
}

/* ---- the transport's calls ------------------------------------------------ */

static bool
bin_ready(const conn_t *c)
{
	return frame_complete(c);
}

/* GOAWAY with the reason, unless one was sent. */
static void
bin_goodbye(conn_t *c, uint16_t status, const char *why)
{
	om_req_t q = { .op = OM_OP_GOAWAY, .id = c->last_id };
	resp_t r = { .status = status, .msg = why };
	out_t *o;

	if (!c->goaway_sent && (o = respond(c, &q, &r, true)) != NULL) {
		c->goaway_sent = true;
		OM_COUNT(c->w->stats->goaways, 1);
		conn_out_push(c, o);
	}
}

/* GOAWAY with BUSY, in one try. */
static void
bin_reject(worker_t *w, int fd, const om_listener_t *ls, const char *why)
{
	uint8_t buf[OM_RESP_HDR_LEN + 128];
	size_t len = strlen(why) < 128 ? strlen(why) : 128;
	om_resp_t h = { 0 };

	(void)ls;
	h.op = OM_OP_GOAWAY;
	h.status = OM_STATUS_BUSY;
	h.msg_len = (uint16_t)len;
	om_proto_put_resp(buf, &h);
	memcpy(buf + OM_RESP_HDR_LEN, why, len);
	(void)send(fd, buf, OM_RESP_HDR_LEN + len, MSG_DONTWAIT | MSG_NOSIGNAL);
	OM_COUNT(w->stats->responses[OM_OP_GOAWAY][OM_STATUS_BUSY], 1);
	OM_COUNT(w->stats->goaways, 1);
}

const conn_proto_t conn_proto_bin = {
	.process = conn_bin_process,
	.ready = bin_ready,
	.goodbye = bin_goodbye,
	.reject = bin_reject,
	/* An error that ends the connection (a frame that cannot be trusted,
	 * a refused body too large to skip) may leave bytes of the client's
	 * on their way: the answer must not be lost to a reset. */
	.linger = true,
};
