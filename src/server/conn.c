/*
 * One client connection in a worker: reads pipelined requests
 * (docs/PROTOCOL.md), runs them against the store, and queues responses,
 * sent in order: buffers, descriptors (SCM_RIGHTS with the header), file
 * ranges copied (pread + write) or spliced (sendfile). Worker processes.
 *
 * A connection never blocks the worker: sockets are non-blocking, output
 * waits in the queue, and a client that does not read has its reading
 * stopped once too much waits for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "server/conn_int.h"

/* ---- output ------------------------------------------------------------ */

out_t *
out_new(enum out_kind kind, size_t datalen)
{
	out_t *o = malloc(sizeof(*o) + datalen);

	if (o == NULL)
		return NULL;
	memset(o, 0, sizeof(*o));
	o->kind = kind;
	o->ref = OM_FDREF_NONE;
	o->len = datalen;
	return o;
}

static void
out_free(out_t *o)
{
	om_fdref_put(&o->ref);
	free(o);
}

void
out_push(conn_t *c, out_t *o)
{
	o->next = NULL;
	if (c->out_tail != NULL)
		c->out_tail->next = o;
	else
		c->out_head = o;
	c->out_tail = o;
	if (o->kind == OUT_BUF)
		c->out_bytes += o->len;
	if (o->resp_end)
		c->inflight++;
}

static void
set_events(conn_t *c)
{
	uint32_t ev = 0;
	struct epoll_event e;

	if (c->dead)
		return;
	if (c->lingering) {
		ev = EPOLLIN;
		goto set;
	}
	/* Read while a request is being received, or while there is room for
	 * more responses; not at all once closing or drained. */
	if (!c->eof && !c->closing && c->state != ST_FDCOPY &&
	    (c->state != ST_HEADER ||
		(!c->draining && c->inflight < c->ls->max_pipeline && c->out_bytes < c->ls->max_buffer)))
		ev |= EPOLLIN;
	if (c->out_head != NULL)
		ev |= EPOLLOUT;
set:
	if (ev == c->events)
		return;
	e.events = ev;
	e.data.ptr = c;
	if (epoll_ctl(c->w->ep, EPOLL_CTL_MOD, c->fd, &e) != 0)
		om_log_err_limited(errno, "epoll_ctl(MOD) failed");
	c->events = ev;
}

static void
finish_out(conn_t *c)
{
	out_t *o = c->out_head;

	c->out_head = o->next;
	if (c->out_head == NULL)
		c->out_tail = NULL;
	if (o->kind == OUT_BUF)
		c->out_bytes -= o->len;
	if (o->resp_end)
		c->inflight--;
	out_free(o);
}

/* Sends what the socket takes. Returns false if the connection failed. */
static bool
flush(conn_t *c)
{
	om_srv_stats_sh_t *stats = c->w->stats;

	if (c->out_head != NULL)
		c->active_ms = om_clock_ms(); /* a client that reads keeps it alive */
	while (c->out_head != NULL) {
		out_t *o = c->out_head;
		ssize_t n;

		if (o->kind == OUT_BUF && o->ref.fd >= 0 && o->done == 0) {
			/* A descriptor goes in the same sendmsg as its header's first
			 * byte, and alone: no other descriptor-carrying header shares
			 * that sendmsg. */
			union {
				struct cmsghdr h;
				char buf[CMSG_SPACE(sizeof(int))];
			} ctl;
			struct iovec iov = { o->data, (size_t)o->len };
			struct msghdr mh = { 0 };
			struct cmsghdr *cm;

			memset(&ctl, 0, sizeof(ctl));
			mh.msg_iov = &iov;
			mh.msg_iovlen = 1;
			mh.msg_control = ctl.buf;
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &o->ref.fd, sizeof(int));
			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n > 0) {
				OM_STORE(&stats->fds_passed, stats->fds_passed + 1);
				/* Passed: the kernel holds its own reference now. */
				om_fdref_put(&o->ref);
			}
		} else if (o->kind == OUT_BUF) {
			/* Gather buffers up to the next descriptor or file range. */
			struct iovec iov[64];
			int cnt = 0;

			for (out_t *p = o; p != NULL && cnt < 64 && p->kind == OUT_BUF &&
			    (p == o || p->ref.fd < 0); p = p->next) {
				iov[cnt].iov_base = p->data + p->done;
				iov[cnt].iov_len = (size_t)(p->len - p->done);
				cnt++;
			}
			n = writev(c->fd, iov, cnt);
			if (n > 0) {
				size_t left = (size_t)n;

				OM_STORE(&stats->bytes_out, stats->bytes_out + (uint64_t)n);
				while (left > 0) {
					out_t *p = c->out_head;
					size_t k = (size_t)(p->len - p->done);

					if (left < k) {
						p->done += left;
						break;
					}
					left -= k;
					p->done = p->len;
					finish_out(c);
				}
				continue;
			}
		} else if (o->kind == OUT_SPLICE) {
			off_t off = (off_t)o->off;

			n = sendfile(c->fd, o->ref.fd, &off, o->len > (1u << 30) ? (1u << 30) : (size_t)o->len);
			if (n == 0) {
				om_log_err_limited(0, "object file shorter than its size");
				return false;
			}
			if (n > 0) {
				OM_STORE(&stats->bytes_out, stats->bytes_out + (uint64_t)n);
				o->off += (uint64_t)n;
				o->len -= (uint64_t)n;
				if (o->len == 0)
					finish_out(c);
				continue;
			}
		} else {
			/* Copy mode: through a buffer, as a client without sendfile
			 * would do it. */
			if (c->bounce_len == 0) {
				size_t want = o->len < SCRATCH_SIZE ? (size_t)o->len : SCRATCH_SIZE;
				ssize_t r;

				if (c->bounce == NULL && (c->bounce = malloc(SCRATCH_SIZE)) == NULL)
					return false;
				r = pread(o->ref.fd, c->bounce, want, (off_t)o->off);
				if (r <= 0) {
					om_log_err_limited(r < 0 ? errno : 0, "reading an object file failed");
					return false;
				}
				c->bounce_off = 0;
				c->bounce_len = (size_t)r;
				o->off += (uint64_t)r;
				if (o->check) {
					o->crc = om_crc32c(o->crc, c->bounce, (size_t)r);
					/* The last bytes of a damaged object are not sent:
					 * the client sees a broken connection, not bytes
					 * that pass for the object. */
					if ((size_t)r == o->len && o->crc != o->obj.crc) {
						om_store_quarantine(c->w->srv->st, &o->obj, o->tier, "its bytes do not "
						    "match their checksum (found serving a GET)");
						return false;
					}
				}
			}
			n = write(c->fd, c->bounce + c->bounce_off, c->bounce_len);
			if (n > 0) {
				OM_STORE(&stats->bytes_out, stats->bytes_out + (uint64_t)n);
				c->bounce_off += (size_t)n;
				c->bounce_len -= (size_t)n;
				o->len -= (uint64_t)n;
				if (c->bounce_len == 0 && o->len == 0)
					finish_out(c);
				continue;
			}
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n > 0) {
			/* Part of a descriptor's message went: the rest is a buffer. */
			o->done = (uint64_t)n;
			OM_STORE(&stats->bytes_out, stats->bytes_out + (uint64_t)n);
			if (o->done == o->len)
				finish_out(c);
			continue;
		}
		if (n < 0 && errno != EPIPE && errno != ECONNRESET)
			om_log_warn_limited(errno, "send failed");
		return false;
	}
	if (c->bounce != NULL && c->out_head == NULL) {
		free(c->bounce);
		c->bounce = NULL;
	}
	return true;
}

/* ---- responses --------------------------------------------------------- */

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
	o = out_new(OUT_BUF, OM_RESP_HDR_LEN + msg_len + r->meta_len + r->inline_len);
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

		OM_STORE(&row[r->status], row[r->status] + 1);
	}
	return o;
}

static size_t
resp_data_at(const resp_t *r)
{
	size_t msg_len = r->msg ? strlen(r->msg) : 0;

	return OM_RESP_HDR_LEN + (msg_len > OM_PROTO_MSG_MAX ? OM_PROTO_MSG_MAX : msg_len) + r->meta_len;
}

__attribute__((format(printf, 4, 5))) static void
respond_err(conn_t *c, const om_req_t *q, uint16_t status, const char *fmt, ...)
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
		fatal(c, "out of memory for a response");
		return;
	}
	out_push(c, o);
}

/* An error that leaves the stream unusable: answer, then close. */
void
fatal(conn_t *c, const char *why)
{
	c->closing = true;
	if (c->txn != NULL) {
		om_store_put_abort(c->txn);
		c->txn = NULL;
	}
	om_log_debug(0, "closing a connection: %s", why);
}

/* ---- operations -------------------------------------------------------- */

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
		respond_err(c, q, OM_STATUS_VERSION, "no common protocol version: the client speaks up "
		    "to %lld, this server %u", (long long)q->arg, OM_PROTO_VERSION);
		fatal(c, "no common protocol version");
		return;
	}
	if (q->flags & ~(uint32_t)OM_HELLO_OFFSET_READS) {
		respond_err(c, q, OM_STATUS_BAD_REQUEST, "unknown HELLO flags 0x%x", q->flags);
		return;
	}
	c->offset_reads = (q->flags & OM_HELLO_OFFSET_READS) != 0;
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
	caps.inline_threshold = c->ls->inline_threshold;
	caps.flags = c->offset_reads ? OM_CAPS_SHARED_DESCRIPTIONS : 0;
	r.body_len = OM_HELLO_CAPS_LEN + name_len;
	r.inline_len = (size_t)r.body_len;
	o = respond(c, q, &r, true);
	if (o == NULL) {
		fatal(c, "out of memory");
		return;
	}
	om_proto_put_caps(o->data + resp_data_at(&r), &caps);
	memcpy(o->data + resp_data_at(&r) + OM_HELLO_CAPS_LEN, OM_SERVER_NAME, name_len);
	out_push(c, o);
}

/* Whether a GET's bytes go to the client as a descriptor of the file. */
static bool
get_as_fd(const conn_t *c, unsigned mode, uint64_t size)
{
	return c->ls->transport == OM_TRANSPORT_UNIX && (mode == OM_MODE_FDPASS ||
	    (mode == OM_MODE_AUTO && size > c->ls->inline_threshold));
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
		w.private_over = c->ls->inline_threshold;
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
		respond_err(c, q, OM_STATUS_BUSY, "out of memory");
		return;
	}
	n = r->inline_len ? pread(ob->ref.fd, o->data + resp_data_at(r), r->inline_len, 0) : 0;
	if (n != (ssize_t)r->inline_len) {
		free(o);
		respond_err(c, q, OM_STATUS_INTERNAL, "short read of the object's file");
		return;
	}
	if (om_crc32c(0, o->data + resp_data_at(r), r->inline_len) != ob->obj.crc) {
		free(o);
		om_store_quarantine(c->w->srv->st, &ob->obj, ob->tier, "its bytes do not match their "
		    "checksum (found serving a GET)");
		respond_err(c, q, OM_STATUS_INTERNAL, "the object is damaged (its bytes do not match "
		    "their checksum): taken out of service");
		return;
	}
	out_push(c, o);
}

/* A larger object (or splice): the header, then the file's bytes, copied
 * (each checked against the checksum as it is read) or sendfile'd. */
static void
get_range(conn_t *c, const om_req_t *q, resp_t *r, om_obj_t *ob, unsigned mode)
{
	out_t *o, *f;

	if ((o = respond(c, q, r, ob->obj.size == 0)) == NULL) {
		respond_err(c, q, OM_STATUS_BUSY, "out of memory");
		return;
	}
	out_push(c, o);
	if (ob->obj.size == 0)
		return;
	if ((f = out_new(mode == OM_MODE_SPLICE ? OUT_SPLICE : OUT_COPY, 0)) == NULL) {
		fatal(c, "out of memory");
		return;
	}
	f->ref = om_fdref_take(&ob->ref);
	f->off = 0;
	f->len = ob->obj.size;
	f->resp_end = true;
	f->check = f->kind == OUT_COPY;
	f->crc = 0;
	f->tier = ob->tier;
	f->obj = ob->obj;
	out_push(c, f);
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
		respond_err(c, q, OM_STATUS_BAD_REQUEST, "unknown GET flags 0x%x", q->flags);
		return;
	}
	if (!(c->ls->modes & (1u << mode))) {
		respond_err(c, q, OM_STATUS_MODE_UNSUPPORTED, "mode %u is not supported on this transport",
		    mode);
		return;
	}
	want = get_want(c, q, mode);
	if ((rc = om_obj_get(&c->w->fdc, c->w->srv->st, uri, q->uri_len, &want, &ob, meta, sizeof(meta))) != 0) {
		if (ob.bad_record)
			respond_err(c, q, OM_STATUS_INTERNAL, "cannot read the object's record: %s", om_strerror(rc));
		else if (rc == -ENOENT)
			respond_err(c, q, OM_STATUS_NOT_FOUND, "no such object: %s",
			    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)));
		else
			respond_err(c, q, om_proto_status_of(rc), "cannot open the object: %s", om_strerror(rc));
		return;
	}
	if (c->dgram && OM_RESP_HDR_LEN + ob.meta_len + ob.obj.size > c->ls->max_datagram) {
		respond_err(c, q, OM_STATUS_TOO_LARGE, "too large for UDP: %llu bytes (at most %llu here)",
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
	if (get_as_fd(c, mode, ob.obj.size)) {
		r.body = OM_BODY_DESCRIPTOR;
		if ((o = respond(c, q, &r, true)) == NULL) {
			respond_err(c, q, OM_STATUS_BUSY, "out of memory");
		} else {
			o->ref = om_fdref_take(&ob.ref);
			out_push(c, o);
		}
		om_obj_put(&ob);
		return;
	}
	/* TCP auto: small objects through one buffer, large ones sendfile'd. */
	if (mode == OM_MODE_AUTO && c->ls->transport == OM_TRANSPORT_TCP)
		mode = ob.obj.size > c->ls->inline_threshold ? OM_MODE_SPLICE : OM_MODE_COPY;
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
	out_t *o;

	if (rc == -ENODATA) {
		respond_err(c, q, OM_STATUS_SHORT_BODY, "the descriptor holds fewer than %llu bytes",
		    (unsigned long long)q->body_len);
		return;
	}
	if (rc != 0) {
		char why[OM_PROTO_MSG_MAX];
		uint16_t status = om_obj_put_error(c->w->srv->st, rc,
		    (q->flags & OM_PUT_EPHEMERAL) ? OM_TIER_MEM : OM_TIER_DISK, why, sizeof(why));

		respond_err(c, q, status, "%s", why);
		return;
	}
	r.obj = obj;
	/* cppcheck-suppress nullPointer ; obj is NULL only with rc != 0 (returned above) */
	r.body_len = obj->size;
	r.tier = (obj->flags & OM_IX_F_EPHEMERAL) ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
	if ((o = respond(c, q, &r, true)) == NULL) {
		fatal(c, "out of memory");
		return;
	}
	out_push(c, o);
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
			respond_err(c, q, OM_STATUS_BAD_REQUEST, "PUT with FD but no descriptor came with it");
			fatal(c, "PUT without its descriptor");
			return;
		}
		fd = c->rfds[0];
		memmove(c->rfds, c->rfds + 1, (c->nrfds - 1) * sizeof(int));
		c->nrfds--;
		if (!readable_at_offsets(fd, why, sizeof(why))) {
			close(fd);
			respond_err(c, q, OM_STATUS_BAD_REQUEST, "%s", why);
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
			fatal(c, "refused PUT body too large to skip");
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
	out_t *out;
	int rc;

	if (q->flags & ~(uint32_t)OM_GET_WANT_META) {
		respond_err(c, q, OM_STATUS_BAD_REQUEST, "unknown STAT flags 0x%x", q->flags);
		return;
	}
	/* The object's file is opened, not only its index entry read: an
	 * object whose file is gone (deleted from outside) is no object,
	 * and its entry goes (as for a GET). */
	rc = om_store_get(st, uri, q->uri_len, OM_GET_NOTOUCH | OM_GET_NOCOUNT, &g);
	if (rc == -ENOENT) {
		respond_err(c, q, OM_STATUS_NOT_FOUND, "no such object: %s",
		    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)));
		return;
	}
	if (rc != 0) {
		respond_err(c, q, om_proto_status_of(rc), "cannot open the object: %s", om_strerror(rc));
		return;
	}
	o = g.obj;
	if (q->flags & OM_GET_WANT_META)
		rc = om_store_read_meta(st, &g, meta, sizeof(meta), &meta_len, &mtime);
	close(g.fd);
	if (rc != 0) {
		respond_err(c, q, om_proto_status_of(rc), "cannot read the object's record: %s", om_strerror(rc));
		return;
	}
	r.obj = &o;
	r.body_len = o.size;
	r.tier = (o.flags & (OM_IX_F_EPHEMERAL | OM_IX_F_COPY)) ? OM_TIER_MEMORY : OM_TIER_PERSISTENT;
	r.meta = meta;
	r.meta_len = (uint16_t)meta_len;
	r.mtime = (uint32_t)mtime;
	if ((out = respond(c, q, &r, true)) == NULL) {
		fatal(c, "out of memory");
		return;
	}
	out_push(c, out);
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

			respond_err(c, q, om_proto_status_of(rc), "%s: %s%s%s",
			    rc == -ENOENT ? "no such object" : "cannot delete",
			    om_obj_uri_shown(uri, q->uri_len, ub, sizeof(ub)), why[0] ? ": " : "", why);
			return;
		}
	} else if (q->op == OM_OP_STATS) {
		size_t len = 0;
		char *text = om_srv_stats_text(c->w->srv, q->flags, &len);

		if (text == NULL) {
			respond_err(c, q, OM_STATUS_BUSY, "out of memory");
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
			fatal(c, "out of memory");
			return;
		}
		out_push(c, o);
		return;
	}
	if ((o = respond(c, q, &r, true)) == NULL) {
		fatal(c, "out of memory");
		return;
	}
	out_push(c, o);
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
	out_t *out;

	if (rq == NULL) {
		respond_err(c, q, OM_STATUS_INTERNAL, "no slot for requests to the cache manager");
		return;
	}
	if (q->uri_len == 0) {
		OM_STORE_REL(&rq->pass_req, OM_LOAD(&rq->pass_req) + 1);
		r.msg = "a scrub pass starts";
	} else {
		uint64_t n;

		if (om_store_stat(c->w->srv->st, uri, q->uri_len, &o) != 0) {
			respond_err(c, q, OM_STATUS_NOT_FOUND, "no such object: %s",
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
	if ((out = respond(c, q, &r, true)) == NULL) {
		fatal(c, "out of memory");
		return;
	}
	out_push(c, out);
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
		respond_err(c, q, OM_STATUS_BAD_REQUEST, "the cursor 0x%llx is not from this index (the "
		    "daemon rebuilt its index since, at a restart): start again from 0",
		    (unsigned long long)cur);
		return -1;
	}
	if ((uint32_t)cur >= om_index_buckets(ix)) {
		respond_err(c, q, OM_STATUS_BAD_REQUEST, "the cursor 0x%llx is not one this server gave",
		    (unsigned long long)cur);
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
		respond_err(c, q, OM_STATUS_BUSY, "out of memory for a page of the listing");
		return;
	}
	r.body_len = OM_LIST_PAGE_LEN + p.len;
	r.inline_len = (size_t)r.body_len;
	if ((o = respond(c, q, &r, true)) == NULL) {
		free(p.buf);
		respond_err(c, q, OM_STATUS_BUSY, "out of memory for a page of the listing");
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
	out_push(c, o);
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
	OM_STORE(&stats2->purged, stats2->purged + p.deleted);
	if (p.rc != 0) {
		const char *why = om_store_why(c->w->srv->st);

		respond_err(c, q, om_proto_status_of(p.rc), "cannot delete %s: %s (%llu objects were deleted "
		    "before it)", p.uri, why[0] ? why : om_strerror(p.rc), (unsigned long long)p.deleted);
		om_log_err_limited(0, "PURGE: cannot delete %s: %s", p.uri, why[0] ? why : om_strerror(p.rc));
		return;
	}
	if (rc < 0) {
		respond_err(c, q, OM_STATUS_BUSY, "out of memory (%llu objects were deleted before)",
		    (unsigned long long)p.deleted);
		return;
	}
	r.body_len = OM_PURGE_BODY_LEN;
	r.inline_len = OM_PURGE_BODY_LEN;
	if ((o = respond(c, q, &r, true)) == NULL) {
		fatal(c, "out of memory");
		return;
	}
	om_le64(o->data + resp_data_at(&r), cursor_next(c, bucket, rc == 1));
	om_le64(o->data + resp_data_at(&r) + 8, p.deleted);
	out_push(c, o);
}

/* ---- input ------------------------------------------------------------- */

/* A PUT with FD that is refused before it runs still takes its descriptor. */
static void
drop_put_fd(conn_t *c, const om_req_t *q)
{
	if (q->op == OM_OP_PUT && (q->flags & OM_PUT_FD) && c->nrfds > 0) {
		close(c->rfds[0]);
		memmove(c->rfds, c->rfds + 1, (c->nrfds - 1) * sizeof(int));
		c->nrfds--;
	}
}

void
consume(conn_t *c, size_t n)
{
	c->in_off += n;
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
}

/* A PUT's bytes in the buffer, up to the c->left still expected, to its
 * transaction (both protocols). Returns the store's error, or 0. */
int
body_write(conn_t *c)
{
	size_t have = c->in_len - c->in_off, n = have < c->left ? have : (size_t)c->left;
	int rc = om_store_put_write(c->txn, c->in + c->in_off, n);

	consume(c, n);
	c->left -= n;
	return rc;
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
	} else if (q->op != OM_OP_PUT && q->op != OM_OP_HELLO && q->body_len != 0) {
		/* Without a body this frame may be garbage: do not trust it. */
		respond_err(c, q, OM_STATUS_BAD_REQUEST, "%s takes no body", om_proto_op_name(q->op));
		fatal(c, "unexpected body");
		return -1;
	} else if (q->op == OM_OP_STATS && (q->flags & ~(uint32_t)OM_STATS_PROMETHEUS)) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "unknown STATS flags 0x%x", q->flags);
	} else if ((q->op == OM_OP_DELETE || q->op == OM_OP_PING || q->op == OM_OP_VERIFY || prefix) &&
	    q->flags) {
		status = OM_STATUS_BAD_REQUEST;
		snprintf(why, sizeof(why), "%s takes no flags (0x%x)", om_proto_op_name(q->op), q->flags);
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
	} else if (q->op == OM_OP_PUT && c->dgram &&
	    q->body_len + q->meta_len + OM_RESP_HDR_LEN > c->ls->max_datagram) {
		status = OM_STATUS_TOO_LARGE;
		snprintf(why, sizeof(why), "too large for UDP: %llu bytes (at most %u here)",
		    (unsigned long long)q->body_len, c->ls->max_datagram - OM_RESP_HDR_LEN - q->meta_len);
	} else if (c->access < need_access(q->op)) {
		status = OM_STATUS_DENIED;
		snprintf(why, sizeof(why), "%s may not %s on listener %s", c->peer.name,
		    need_access(q->op) == OM_ACCESS_WRITE ? "write" : "read", c->ls->name);
		OM_STORE(&c->w->stats->denied, c->w->stats->denied + 1);
	}
	if (status == OM_STATUS_OK)
		return 0;
	respond_err(c, q, status, "%s", why);
	drop_put_fd(c, q);
	if (q->op == OM_OP_PUT && (q->flags & OM_PUT_FD))
		rest -= q->body_len;
	if (rest > SKIP_MAX) {
		fatal(c, "refused request too large to skip");
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
		respond_err(c, q, OM_STATUS_URI_INVALID, "%s", bad);
		drop_put_fd(c, q);
		if (q->op == OM_OP_PUT && !(q->flags & OM_PUT_FD) && q->body_len) {
			c->state = ST_SKIP;
			c->left = q->body_len;
		}
		return;
	}
	if ((q->op == OM_OP_LIST || q->op == OM_OP_PURGE) &&
	    (bad = om_proto_prefix_error(uri, q->uri_len, c->w->srv->conf->index.max_uri)) != NULL) {
		respond_err(c, q, OM_STATUS_URI_INVALID, "%s", bad);
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
	OM_STORE(&c->w->stats->goaways, c->w->stats->goaways + 1);
	if (o != NULL)
		out_push(c, o);
}

/* Handles what the buffer holds, within the pipeline limit. Returns true
 * if there is more to do right away (budget spent). */
static bool
process(conn_t *c)
{
	int budget = RUN_BUDGET;

	c->starved = false;
	if (c->ls->http)
		return http_process(c);

	while (!c->closing && !c->dead) {
		size_t have = c->in_len - c->in_off;

		if (c->state == ST_FDCOPY) {
			if (copy_some(c))
				return true; /* the worker's other connections first */
			continue;
		}
		if (c->state == ST_BODY) {
			int rc;

			if (have == 0)
				return false;
			if ((rc = body_write(c)) != 0) {
				om_store_put_abort(c->txn);
				c->txn = NULL;
				put_done(c, &c->req, rc, NULL);
				c->state = c->left ? ST_SKIP : ST_HEADER;
				if (c->left > SKIP_MAX)
					fatal(c, "failed PUT body too large to skip");
				continue;
			}
			if (c->left == 0) {
				om_ix_obj_t obj;

				c->frames++;
				rc = om_store_put_commit(c->txn, &obj);
				c->txn = NULL;
				c->state = ST_HEADER;
				put_done(c, &c->req, rc, &obj);
			}
			continue;
		}
		if (c->state == ST_SKIP) {
			size_t n = have < c->left ? have : (size_t)c->left;

			if (c->left == 0) {
				c->state = ST_HEADER;
				continue;
			}
			if (n == 0)
				return false;
			consume(c, n);
			c->left -= n;
			if (c->left == 0) {
				c->state = ST_HEADER;
				c->frames++;
			}
			continue;
		}

		/* ST_HEADER */
		if (c->inflight >= c->ls->max_pipeline || c->out_bytes >= c->ls->max_buffer)
			return false;
		if (c->dgram && c->dgram_done)
			return false; /* what follows the request is padding */
		if (budget-- == 0)
			return true;
		if (c->draining && !c->goaway_sent && !frame_complete(c)) {
			/* Nothing more is accepted: a request half received was not
			 * accepted either (the GOAWAY tells the client which were). */
			c->in_off = c->in_len = 0;
			send_goaway(c);
			return false;
		}
		if (have < OM_REQ_HDR_LEN) {
			c->starved = have > 0;
			return false;
		}
		{
			om_req_t q;
			int rc = om_proto_get_req(c->in + c->in_off, &q);
			size_t parts;

			if (rc != 0) {
				om_req_t z = { .op = 0, .id = 0 };
				om_srv_stats_sh_t *stats = c->w->stats;

				OM_STORE(&stats->bad_frames, stats->bad_frames + 1);
				if (rc == -EPROTONOSUPPORT) {
					z.op = q.op;
					z.id = q.id;
					respond_err(c, &z, OM_STATUS_VERSION, "protocol version %u is not supported "
					    "(this server speaks %u)", q.version, OM_PROTO_VERSION);
				} else {
					respond_err(c, &z, OM_STATUS_BAD_REQUEST, "not an objmapper frame (bad magic)");
				}
				fatal(c, "bad frame");
				return false;
			}
			c->dgram_done = true;
			/* Checked before its URI and metadata arrive: a refused frame
			 * is skipped whatever its lengths, an accepted one has at
			 * most 1024 + 2048 bytes to gather. */
			if (check_request(c, &q) != 0) {
				c->frames++;
				if (c->state == ST_SKIP)
					consume(c, OM_REQ_HDR_LEN); /* the skip counts the rest */
				continue;
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
				return false;
			}
			{
				const uint8_t *uri = c->in + c->in_off + OM_REQ_HDR_LEN;
				const uint8_t *meta = uri + q.uri_len;

				if (q.op == OM_OP_HELLO && q.body_len) {
					/* The client's name: skipped with the frame. */
					c->state = ST_SKIP;
					c->left = q.body_len;
				}
				dispatch(c, &q, uri, meta);
				c->frames++;
				/* The URI and metadata were copied where kept. */
				consume(c, parts);
			}
		}
	}
	return false;
}

/* Reads what the socket has, with any descriptors. Returns the bytes
 * read (0 for nothing yet or end of stream) or -errno; *drained is set
 * when the read took less than it had room for (the socket is empty). */
static int
read_in(conn_t *c, bool *drained)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * RFD_MAX)];
	} ctl;
	om_srv_stats_sh_t *stats = c->w->stats;
	struct msghdr mh = { 0 };
	struct iovec iov;
	ssize_t n;

	if (c->in_off > 0 && c->in_len == IN_CAP) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	*drained = false;
	if (c->in_len == IN_CAP)
		return 0;
	iov.iov_base = c->in + c->in_len;
	iov.iov_len = IN_CAP - c->in_len;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	*drained = n < (ssize_t)iov.iov_len;
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			OM_STORE(&stats->fds_received, stats->fds_received + 1);
			if (c->nrfds == RFD_MAX) {
				close(fd);
				continue;
			}
			c->rfds[c->nrfds++] = fd;
		}
	}
	if (mh.msg_flags & MSG_CTRUNC)
		return -EPROTO;
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	OM_STORE(&stats->bytes_in, stats->bytes_in + (uint64_t)n);
	c->starved = false;
	c->active_ms = om_clock_ms();
	if (c->req_start_ms == 0) {
		c->req_start_ms = c->active_ms;
		c->req_bytes = 0;
	}
	c->req_bytes += (uint64_t)n;
	c->in_len += (size_t)n;
	return (int)n;
}

/* ---- life cycle -------------------------------------------------------- */

conn_t *
conn_new(worker_t *w, int fd, om_listener_t *ls, const om_peer_t *peer)
{
	conn_t *c = calloc(1, sizeof(*c));
	struct epoll_event e;

	if (c == NULL || (c->in = malloc(IN_CAP)) == NULL) {
		free(c);
		return NULL;
	}
	c->tag.kind = EV_CONN;
	c->w = w;
	c->ls = ls;
	c->fd = fd;
	c->peer = *peer;
	c->access = om_peer_access(ls, peer);
	c->active_ms = om_clock_ms();
	c->state = ST_HEADER;
	c->put_fd = -1;
	c->events = EPOLLIN;
	e.events = EPOLLIN;
	e.data.ptr = c;
	if (epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &e) != 0) {
		om_log_err_limited(errno, "epoll_ctl(ADD) failed");
		free(c->in);
		free(c);
		return NULL;
	}
	c->next = w->conns;
	if (w->conns != NULL)
		w->conns->prev = c;
	w->conns = c;
	c->draining = w->draining;
	return c;
}

void
conn_close(conn_t *c)
{
	worker_t *w = c->w;

	if (c->dead)
		return;
	c->dead = true;
	if (c->txn != NULL)
		om_store_put_abort(c->txn);
	if (c->put_fd >= 0)
		close(c->put_fd);
	while (c->out_head != NULL)
		finish_out(c);
	for (unsigned i = 0; i < c->nrfds; i++)
		close(c->rfds[i]);
	epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	free(c->in);
	free(c->bounce);
	worker_conn_gone(w, c);
	/* Freed by the worker once off its ready list. */
	if (!c->in_ready)
		free(c);
}

#define LINGER_MS    2000               /* http: how long a closing connection reads on */
#define LINGER_BYTES (8u * 1024 * 1024) /* and how much */

/*
 * HTTP: a response that ends the connection (a refused body, a malformed
 * request) may be followed by bytes the client is still sending. Closing
 * with them unread makes the kernel send a reset, which can destroy the
 * response before the client reads it. So: shut down our side, read and
 * drop what comes for a while, then close (what nginx calls a lingering
 * close). Returns false if the connection should be closed now.
 */
static bool
linger(conn_t *c)
{
	if (shutdown(c->fd, SHUT_WR) != 0)
		return false;
	c->lingering = true;
	c->linger_until_ms = om_clock_ms() + LINGER_MS;
	c->linger_bytes = 0;
	set_events(c);
	return true;
}

/* Reads and drops; closes at the end of the stream or past the limits. */
static void
linger_read(conn_t *c)
{
	for (int i = 0; i < 16; i++) {
		ssize_t n = read(c->fd, c->in, IN_CAP);

		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
			return;
		if (n <= 0 || (c->linger_bytes += (uint64_t)n) > LINGER_BYTES) {
			conn_close(c);
			return;
		}
	}
}

/* A whole request waits in the buffer. */
static bool
request_ready(const conn_t *c)
{
	return c->ls->http ? http_request_ready(c) : frame_complete(c);
}

/* After any progress: send, decide whether to go on, update interest. */
static void
settle(conn_t *c, bool more)
{
	if (c->dead)
		return;
	if (!flush(c)) {
		conn_close(c);
		return;
	}
	/* Descriptors that no request took are a protocol error. It belongs
	 * to no request (the requests it came with are answered), so it is
	 * said the way the connection ends: GOAWAY naming the last request
	 * accepted, with status BAD_REQUEST. */
	if (c->nrfds > 0 && c->state == ST_HEADER && c->in_off == c->in_len && !c->closing &&
	    !c->ls->http) {
		om_req_t g = { .op = OM_OP_GOAWAY, .id = c->last_id };

		OM_STORE(&c->w->stats->goaways, c->w->stats->goaways + 1);
		c->goaway_sent = true;
		respond_err(c, &g, OM_STATUS_BAD_REQUEST, "a descriptor came with a request that takes "
		    "none (after request %u): closing", c->last_id);
		fatal(c, "stray descriptor");
		(void)flush(c);
	}
	if (c->lingering)
		return;
	if ((c->closing || (c->eof && c->state == ST_HEADER && !more && !request_ready(c))) &&
	    c->out_head == NULL) {
		if (c->ls->http && c->closing && !c->eof && linger(c))
			return;
		conn_close(c);
		return;
	}
	if (c->eof && c->state != ST_HEADER && c->state != ST_FDCOPY && c->in_off == c->in_len) {
		/* The client left in the middle of a request. */
		conn_close(c);
		return;
	}
	/* Run again without waiting for input only if there is something to
	 * do: requests left in the buffer when a limit stopped the last run.
	 * A request still arriving waits for its bytes (epoll says when); run
	 * again, it would only find the same part and the worker would spin. */
	if (more || (c->state == ST_HEADER && c->in_len > c->in_off && !c->starved &&
	    c->inflight < c->ls->max_pipeline && c->out_bytes < c->ls->max_buffer) ||
	    (c->draining && !c->goaway_sent))
		conn_ready_push(c->w, c);
	set_events(c);
}

/* The request being received: when it began, for request_timeout. A
 * request that completed restarts the clock for the next one. */
static bool
process_tracked(conn_t *c)
{
	uint64_t before = c->frames;
	bool more = process(c);

	if (c->state == ST_HEADER && c->in_off == c->in_len) {
		c->req_start_ms = 0;
	} else if (c->frames != before || c->req_start_ms == 0) {
		/* What is left in the buffer belongs to the next request. */
		c->req_start_ms = om_clock_ms();
		c->req_bytes = c->in_len - c->in_off;
	}
	return more;
}

void
conn_run(conn_t *c)
{
	settle(c, process_tracked(c));
}

void
conn_event(conn_t *c, uint32_t events)
{
	bool more = false;

	if (events & (EPOLLERR | EPOLLHUP)) {
		if (!(events & EPOLLIN)) {
			conn_close(c);
			return;
		}
	}
	if (c->lingering) {
		if (events & EPOLLIN)
			linger_read(c);
		return;
	}
	if (events & EPOLLOUT) {
		if (!flush(c)) {
			conn_close(c);
			return;
		}
	}
	if (events & EPOLLIN) {
		/* Read and process until the socket is empty, the buffer is full
		 * or the pipeline limit stops us. */
		for (int i = 0; i < 16 && !c->dead && !c->closing && !c->eof; i++) {
			bool drained;
			int rc = read_in(c, &drained);

			if (rc < 0) {
				if (rc != -ECONNRESET)
					om_log_debug(-rc, "receive failed");
				conn_close(c);
				return;
			}
			more = process_tracked(c);
			/* Level-triggered: an emptied socket is reported again when
			 * more arrives, so no second read that would only say EAGAIN. */
			if (rc == 0 || drained || more || c->inflight >= c->ls->max_pipeline ||
			    c->out_bytes >= c->ls->max_buffer)
				break;
			if (c->draining && c->state == ST_HEADER)
				break;
		}
	}
	settle(c, more);
}

void
conn_drain(conn_t *c)
{
	c->draining = true;
	if (!c->dead)
		conn_ready_push(c->w, c);
}

void
conn_ready_push(worker_t *w, conn_t *c)
{
	if (c->in_ready || c->dead)
		return;
	c->in_ready = true;
	c->ready_next = w->ready;
	w->ready = c;
}

conn_t *
conn_ready_pop(worker_t *w)
{
	conn_t *c = w->ready;

	if (c != NULL)
		w->ready = c->ready_next;
	return c;
}

/*
 * One turn for each connection on the ready list: the list is taken
 * whole first, so that a connection that wants another turn (a budget
 * spent, a copy in steps) goes on a new list and gets it only after the
 * worker has looked at its other events again.
 */
void
conn_ready_run(worker_t *w)
{
	conn_t *c = w->ready;

	w->ready = NULL;
	while (c != NULL) {
		conn_t *next = c->ready_next;

		if (!conn_reap(c))
			conn_run(c);
		c = next;
	}
}

conn_t *
conn_next(const conn_t *c)
{
	return c->next;
}

/* Off the ready list: true if the connection was closed meanwhile and is
 * now freed. */
bool
conn_reap(conn_t *c)
{
	c->in_ready = false;
	if (c->dead) {
		free(c);
		return true;
	}
	return false;
}

/* ---- limits ------------------------------------------------------------ */

/* GOAWAY with a reason, one try to send what is queued, then close: a
 * client that does not read gets nothing more. */
static void
close_with(conn_t *c, uint16_t status, const char *why)
{
	om_req_t q = { .op = OM_OP_GOAWAY, .id = c->last_id };
	resp_t r = { .status = status, .msg = why };
	out_t *o;

	om_log_debug(0, "closing a connection from %s on %s: %s", c->peer.name, c->ls->name, why);
	if (c->ls->http)
		http_close_timeout(c, status != OM_STATUS_OK);
	if (!c->goaway_sent && (o = respond(c, &q, &r, true)) != NULL) {
		c->goaway_sent = true;
		OM_STORE(&c->w->stats->goaways, c->w->stats->goaways + 1);
		out_push(c, o);
	}
	(void)flush(c);
	conn_close(c);
}

void
conn_tick(conn_t *c, uint64_t now)
{
	const om_listener_t *ls = c->ls;
	om_srv_stats_sh_t *stats = c->w->stats;
	bool held = c->inflight >= ls->max_pipeline || c->out_bytes >= ls->max_buffer;
	char why[128];

	if (c->dead || c->dgram)
		return;
	if (c->lingering) {
		if (now >= c->linger_until_ms)
			conn_close(c);
		return;
	}
	/* A request must arrive in full in time, and the time grows by a
	 * second per min_rate bytes that arrived (what the client sent, not
	 * what it announced: a client that trickles is cut after about
	 * request_timeout). Not while we are the ones not reading, nor while
	 * we copy a PUT's bytes from its descriptor. */
	if (ls->request_timeout_ms && c->req_start_ms && !held && c->state != ST_FDCOPY) {
		uint64_t limit = ls->request_timeout_ms + c->req_bytes * 1000 / (ls->min_rate ? ls->min_rate : 1);

		if (now - c->req_start_ms > limit) {
			OM_STORE(&stats->timeouts_request, stats->timeouts_request + 1);
			snprintf(why, sizeof(why), "request timeout: not received in full within %llu ms "
			    "(%llu bytes arrived)", (unsigned long long)limit, (unsigned long long)c->req_bytes);
			close_with(c, OM_STATUS_BAD_REQUEST, why);
			return;
		}
	}
	/* Nothing read or written for idle_timeout: an idle client, or one
	 * that does not read what it asked for. */
	if (ls->idle_timeout_ms && now - c->active_ms > ls->idle_timeout_ms) {
		OM_STORE(&stats->timeouts_idle, stats->timeouts_idle + 1);
		snprintf(why, sizeof(why), "idle for %u ms", ls->idle_timeout_ms);
		close_with(c, OM_STATUS_OK, why);
	}
}

void
conn_reject(worker_t *w, int fd, const om_listener_t *ls, const char *why)
{
	uint8_t buf[OM_RESP_HDR_LEN + 128];
	size_t len = strlen(why) < 128 ? strlen(why) : 128;
	om_resp_t h = { 0 };

	if (ls->http) {
		http_reject(w, fd, why);
		close(fd);
		OM_STORE(&w->stats->conns_rejected, w->stats->conns_rejected + 1);
		return;
	}

	h.op = OM_OP_GOAWAY;
	h.status = OM_STATUS_BUSY;
	h.msg_len = (uint16_t)len;
	om_proto_put_resp(buf, &h);
	memcpy(buf + OM_RESP_HDR_LEN, why, len);
	(void)send(fd, buf, OM_RESP_HDR_LEN + len, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
	OM_STORE(&w->stats->conns_rejected, w->stats->conns_rejected + 1);
	OM_STORE(&w->stats->responses[OM_OP_GOAWAY][OM_STATUS_BUSY],
	    w->stats->responses[OM_OP_GOAWAY][OM_STATUS_BUSY] + 1);
}

/* ---- UDP --------------------------------------------------------------- */

/*
 * A UDP listener runs each datagram on a pseudo-connection: the same
 * checks and operations as a stream, one request per datagram (bytes after
 * its frame are padding), and the response gathered into one datagram of
 * at most max_datagram bytes and at most `amplification` times the
 * request's bytes. A response over that limit is replaced by a short
 * TOO_LARGE (or dropped if even that does not fit), so that a forged
 * source address never gets more than that factor of what was sent.
 */
static conn_t *
udp_conn(worker_t *w, wlistener_t *l)
{
	conn_t *c;

	if (l->dgram != NULL)
		return l->dgram;
	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->in = malloc(IN_CAP)) == NULL) {
		free(c);
		return NULL;
	}
	c->w = w;
	c->ls = l->ls;
	c->fd = l->ls->fd;
	c->put_fd = -1;
	c->dgram = true;
	l->dgram = c;
	return c;
}

void
conn_udp_free(wlistener_t *l)
{
	conn_t *c = l->dgram;

	if (c == NULL)
		return;
	while (c->out_head != NULL)
		finish_out(c);
	free(c->in);
	free(c->bounce);
	free(c);
	l->dgram = NULL;
}

/* What the request's answer became, for the count by status. */
static void
recount(conn_t *c, unsigned op, unsigned from, unsigned to)
{
	uint64_t *row = om_srv_responses(c->w->stats, c->w->stats2, op);

	if (op > OM_OP_MAX)
		return;
	OM_STORE(&row[from], row[from] - 1);
	OM_STORE(&row[to], row[to] + 1);
}

static void
udp_one(conn_t *c, size_t n, const struct sockaddr *from, socklen_t fromlen)
{
	static uint8_t dg[IN_CAP];
	om_srv_stats_sh_t *stats = c->w->stats;
	const om_listener_t *ls = c->ls;
	size_t limit = ls->max_datagram, len = 0;
	bool whole = true;
	om_req_t q;

	c->in_off = 0;
	c->in_len = n;
	c->state = ST_HEADER;
	c->closing = false;
	c->dgram_done = false;
	c->offset_reads = false;
	c->left = 0;
	om_peer_from_sockaddr(&c->peer, from);
	c->access = om_peer_access(ls, &c->peer);
	if ((uint64_t)ls->amplification * n < limit)
		limit = ls->amplification * n;

	/* Not a frame: no answer to whoever it claims to come from. */
	if (n < OM_REQ_HDR_LEN || om_get16(c->in) != OM_PROTO_MAGIC) {
		OM_STORE(&stats->dgrams_dropped, stats->dgrams_dropped + 1);
		return;
	}
	(void)om_proto_get_req(c->in, &q);
	(void)process(c);
	if (c->state == ST_BODY) {
		/* The datagram ended inside the PUT's bytes: nothing is stored. */
		om_store_put_abort(c->txn);
		c->txn = NULL;
		respond_err(c, &c->req, OM_STATUS_BAD_REQUEST, "the datagram holds %llu of the %llu bytes",
		    (unsigned long long)(c->req.body_len - c->left), (unsigned long long)c->req.body_len);
	} else if (c->out_head == NULL) {
		respond_err(c, &q, OM_STATUS_BAD_REQUEST, "the datagram ends inside the request");
	}
	c->state = ST_HEADER;

	for (out_t *o = c->out_head; o != NULL; o = o->next) {
		if (o->kind != OUT_BUF || o->ref.fd >= 0 || len + o->len > sizeof(dg)) {
			whole = false; /* cannot happen: GETs over UDP are inline buffers */
			break;
		}
		memcpy(dg + len, o->data, (size_t)o->len);
		len += (size_t)o->len;
	}
	if (!whole || len > limit) {
		om_resp_t h = { 0 };
		char msg[200];
		int m;
		unsigned old = om_get16(dg + 8);

		if (!whole)
			m = snprintf(msg, sizeof(msg), "cannot answer this over UDP");
		else if (len > ls->max_datagram)
			m = snprintf(msg, sizeof(msg), "response of %zu bytes is too large for UDP (max %u)",
			    len, ls->max_datagram);
		else
			/* The length first: the message is cut to what the limit
			 * leaves, which is least for the short requests it is for. */
			m = snprintf(msg, sizeof(msg), "pad to %zu bytes: a response of %zu bytes is over %u "
			    "times the request's %zu", (len + ls->amplification - 1) / ls->amplification, len,
			    ls->amplification, n);
		OM_STORE(&stats->dgrams_limited, stats->dgrams_limited + 1);
		if (limit < OM_RESP_HDR_LEN || m < 0) {
			recount(c, q.op, old, OM_STATUS_TOO_LARGE);
			goto done; /* not even a header fits: silence */
		}
		if ((size_t)m > limit - OM_RESP_HDR_LEN)
			m = (int)(limit - OM_RESP_HDR_LEN);
		h.op = q.op;
		h.id = q.id;
		h.status = OM_STATUS_TOO_LARGE;
		h.msg_len = (uint16_t)m;
		om_proto_put_resp(dg, &h);
		memcpy(dg + OM_RESP_HDR_LEN, msg, (size_t)m);
		len = OM_RESP_HDR_LEN + (size_t)m;
		if (whole)
			recount(c, q.op, old, OM_STATUS_TOO_LARGE);
	}
	if (sendto(c->fd, dg, len, MSG_DONTWAIT | MSG_NOSIGNAL, from, fromlen) == (ssize_t)len) {
		OM_STORE(&stats->dgrams_out, stats->dgrams_out + 1);
		OM_STORE(&stats->bytes_out, stats->bytes_out + len);
	} else {
		om_log_debug(errno, "sendto %s failed", c->peer.name);
	}
done:
	while (c->out_head != NULL)
		finish_out(c);
	c->out_bytes = 0;
	c->inflight = 0;
}

void
conn_udp_input(worker_t *w, wlistener_t *l)
{
	conn_t *c = udp_conn(w, l);

	if (c == NULL)
		return;
	/* A bounded batch: the other events of this worker get their turn. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage from;
		socklen_t fromlen = sizeof(from);
		ssize_t n = recvfrom(l->ls->fd, c->in, IN_CAP, MSG_DONTWAIT | MSG_TRUNC,
		    (struct sockaddr *)&from, &fromlen);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				om_log_warn_limited(errno, "recvfrom on %s failed", l->ls->where);
			return;
		}
		OM_STORE(&w->stats->dgrams_in, w->stats->dgrams_in + 1);
		OM_STORE(&w->stats->bytes_in, w->stats->bytes_in + (uint64_t)n);
		if ((size_t)n > IN_CAP) {
			OM_STORE(&w->stats->dgrams_dropped, w->stats->dgrams_dropped + 1);
			continue;
		}
		udp_one(c, (size_t)n, (struct sockaddr *)&from, fromlen);
	}
}
