/*
 * The floor: the least a descriptor-passing server does per GET (open,
 * fstat, sendmsg with SCM_RIGHTS, close; with -S only the sendmsg of a cached
 * descriptor), speaking protocol v1 (HELLO, GET, PING) on a Unix socket. A
 * master forks -w workers, each an epoll loop.
 *
 *   floor_server -s SOCKET [-d DIR] [-w WORKERS] [-t INLINE_THRESHOLD] [-S]
 *
 * URI "/a/b" is the file DIR/a_b. loadgen --prepare-dir writes such files.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/om_proto.h"

#define SERVER_NAME  "objmapper floor_server 0.1.0"
#define MAX_PIPELINE 128u
#define WORKERS_MAX  64
#define IN_CAP       (16u * 1024u) /* >= a whole request: 32 + URI + meta + HELLO body */
#define OUT_HIGH     (256u * 1024u) /* buffered responses before reading stops */
#define EVENTS       256
#define SNDBUF       (2 << 20)      /* capped by net.core.wmem_max */

typedef struct {
	int fd;
	bool shared;          /* -S and the client promised OFFSET_READS */
	bool closing;         /* close once the output is sent (fatal protocol error) */
	bool want_out;        /* registered for EPOLLOUT (reading stopped) */
	uint8_t in[IN_CAP];
	size_t in_off, in_len;
	uint64_t skip;        /* bytes of a refused request still to drop */
	uint8_t *out;         /* responses not yet sent: out[out_off, out_len) */
	size_t out_off, out_len, out_cap;
	int pass_fd;          /* descriptor to send with the byte at out[pass_at] */
	size_t pass_at;
	bool pass_own;        /* close pass_fd once sent (not a cached one) */
	int sf_fd;            /* mode splice: file bytes to send after out */
	bool sf_own;
	off_t sf_off;
	uint64_t sf_left;
} conn_t;

static const char *sock_path;
static int dir_fd = -1;
static uint64_t inline_threshold = 65536;
static bool share_fds;     /* -S: a per-worker cache of open files */
static int worker_no = -1; /* -1 in the master */

static uint64_t stat_conns, stat_reqs;

__attribute__((format(printf, 2, 3))) static void
logmsg(int err, const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	if (worker_no < 0)
		n = snprintf(buf, sizeof(buf), "floor_server: master[%d]: ", (int)getpid());
	else
		n = snprintf(buf, sizeof(buf), "floor_server: worker %d[%d]: ", worker_no, (int)getpid());
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
	va_end(ap);
	if (err && n < (int)sizeof(buf))
		snprintf(buf + n, sizeof(buf) - (size_t)n, ": %s", strerror(err));
	fprintf(stderr, "%s\n", buf);
}

__attribute__((noreturn, format(printf, 2, 3))) static void
die(int err, const char *fmt, ...)
{
	char buf[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	logmsg(err, "%s", buf);
	exit(1);
}

/* ---- output -------------------------------------------------------------- */

static uint8_t *
out_reserve(conn_t *c, size_t n)
{
	if (c->out_off == c->out_len)
		c->out_off = c->out_len = 0;
	if (c->out_len + n > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		uint8_t *p;

		while (cap < c->out_len + n)
			cap *= 2;
		if ((p = realloc(c->out, cap)) == NULL)
			return NULL;
		c->out = p;
		c->out_cap = cap;
	}
	return c->out + c->out_len;
}

/* Queues a response without a body; an error status carries `msg`. */
static int
resp_simple(conn_t *c, uint8_t op, uint32_t id, uint16_t status, const char *msg)
{
	om_resp_t r = { .op = op, .id = id, .status = status };
	size_t ml = msg ? strlen(msg) : 0;
	uint8_t *p;

	if ((p = out_reserve(c, OM_RESP_HDR_LEN + ml)) == NULL)
		return -ENOMEM;
	r.msg_len = (uint16_t)ml;
	om_proto_put_resp(p, &r);
	if (ml > 0)
		memcpy(p + OM_RESP_HDR_LEN, msg, ml);
	c->out_len += OM_RESP_HDR_LEN + ml;
	return 0;
}

/*
 * Sends what is queued. Returns 1 when all is sent, 0 if the socket is
 * full, -1 if the connection is broken. The descriptor goes in the
 * sendmsg that starts with its response's header, never with earlier bytes.
 */
static int
flush(conn_t *c)
{
	for (;;) {
		if (c->out_off < c->out_len) {
			union {
				struct cmsghdr h;
				char buf[CMSG_SPACE(sizeof(int))];
			} ctl;
			struct iovec iov;
			struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
			size_t end = c->out_len;
			bool with_fd = false;
			ssize_t n;

			if (c->pass_fd >= 0) {
				if (c->out_off < c->pass_at) {
					end = c->pass_at;
				} else {
					struct cmsghdr *cm;

					mh.msg_control = ctl.buf;
					mh.msg_controllen = sizeof(ctl.buf);
					cm = CMSG_FIRSTHDR(&mh);
					cm->cmsg_level = SOL_SOCKET;
					cm->cmsg_type = SCM_RIGHTS;
					cm->cmsg_len = CMSG_LEN(sizeof(int));
					memcpy(CMSG_DATA(cm), &c->pass_fd, sizeof(int));
					with_fd = true;
				}
			}
			iov.iov_base = c->out + c->out_off;
			iov.iov_len = end - c->out_off;
			n = sendmsg(c->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return errno == EAGAIN ? 0 : -1;
			}
			if (with_fd) {
				if (c->pass_own)
					close(c->pass_fd);
				c->pass_fd = -1;
			}
			c->out_off += (size_t)n;
			continue;
		}
		c->out_off = c->out_len = 0;
		if (c->sf_fd >= 0) {
			ssize_t n = sendfile(c->fd, c->sf_fd, &c->sf_off,
			    c->sf_left > (1u << 30) ? (1u << 30) : (size_t)c->sf_left);

			if (n < 0) {
				if (errno == EINTR)
					continue;
				return errno == EAGAIN ? 0 : -1;
			}
			if (n == 0)
				return -1; /* the file shrank: the stream cannot be completed */
			c->sf_left -= (uint64_t)n;
			if (c->sf_left == 0) {
				if (c->sf_own)
					close(c->sf_fd);
				c->sf_fd = -1;
			}
			continue;
		}
		return 1;
	}
}

/* ---- requests -------------------------------------------------------------- */

enum { REQ_DONE, REQ_PARTIAL, REQ_FLUSH, REQ_CLOSE };

/* URI "/a/b" -> "a_b": one flat directory, no path ever leaves it. */
static int
uri_to_name(const uint8_t *uri, size_t len, char *name, size_t cap)
{
	size_t n = 0;

	if (len > 0 && uri[0] == '/') {
		uri++;
		len--;
	}
	if (len == 0 || len >= cap)
		return -1;
	for (size_t i = 0; i < len; i++)
		name[n++] = uri[i] == '/' ? '_' : (char)uri[i];
	name[n] = '\0';
	return 0;
}

/*
 * -S: each worker keeps its files open, as a daemon's descriptor cache
 * does, so a GET costs no open, fstat or close. The files must not change
 * while the server runs.
 */
typedef struct {
	char *name;      /* NULL: free slot */
	int fd;
	uint64_t size, ino;
} file_t;

static file_t *files;
static size_t files_cap, files_n;

static uint64_t
name_hash(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
	return h;
}

static file_t *
files_slot(file_t *tab, size_t cap, const char *name)
{
	size_t i = (size_t)name_hash(name) & (cap - 1);

	while (tab[i].name != NULL && strcmp(tab[i].name, name) != 0)
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

/* Keeps an open file; a failure only means the next GET opens it again. */
static void
files_add(const char *name, int fd, const struct stat *st)
{
	file_t *f;

	if ((files_n + 1) * 4 > files_cap * 3) {
		size_t cap = files_cap ? files_cap * 2 : 1024;
		file_t *tab = calloc(cap, sizeof(*tab));

		if (tab == NULL)
			return;
		for (size_t i = 0; i < files_cap; i++)
			if (files[i].name != NULL)
				*files_slot(tab, cap, files[i].name) = files[i];
		free(files);
		files = tab;
		files_cap = cap;
	}
	f = files_slot(files, files_cap, name);
	if ((f->name = strdup(name)) == NULL)
		return;
	f->fd = fd;
	f->size = (uint64_t)st->st_size;
	f->ino = (uint64_t)st->st_ino;
	files_n++;
}

/*
 * The object's file: a cached descriptor (*own false) if -S and `shared`,
 * else a new open file description the caller closes. 0 or an errno.
 */
static int
file_open(const char *name, bool shared, int *fd, uint64_t *size, uint64_t *ino, bool *own)
{
	struct stat st;
	int err;

	if (shared && files_cap > 0) {
		file_t *f = files_slot(files, files_cap, name);

		if (f->name != NULL) {
			*fd = f->fd;
			*size = f->size;
			*ino = f->ino;
			*own = false;
			return 0;
		}
	}
	if ((*fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC)) < 0)
		return errno;
	/* A directory (URI "/.") is no object. */
	err = fstat(*fd, &st) != 0 ? errno : !S_ISREG(st.st_mode) ? ENOENT : 0;
	if (err != 0) {
		close(*fd);
		return err;
	}
	*size = (uint64_t)st.st_size;
	*ino = (uint64_t)st.st_ino;
	*own = true;
	if (shared) {
		size_t before = files_n;

		files_add(name, *fd, &st);
		*own = files_n == before;
	}
	return 0;
}

static int
do_hello(conn_t *c, const om_req_t *q)
{
	static const char name[] = SERVER_NAME;
	om_hello_caps_t hc = {
		.version = OM_PROTO_VERSION,
		.transport = OM_TRANSPORT_UNIX,
		.modes = 0xf,
		.max_uri = OM_PROTO_URI_MAX,
		.max_meta = OM_PROTO_META_MAX,
		.max_pipeline = MAX_PIPELINE,
		.max_object = 0,
		.inline_threshold = inline_threshold,
	};
	om_resp_t r = { .op = OM_OP_HELLO, .id = q->id, .body = OM_BODY_INLINE };
	uint8_t *p;

	/* Descriptions are shared only with clients that read at offsets. */
	if (share_fds && (q->flags & OM_HELLO_OFFSET_READS)) {
		c->shared = true;
		hc.flags = OM_CAPS_SHARED_DESCRIPTIONS;
	}
	if (q->arg < 1) {
		resp_simple(c, OM_OP_HELLO, q->id, OM_STATUS_VERSION, "the floor server speaks version 1");
		return REQ_CLOSE;
	}
	if ((p = out_reserve(c, OM_RESP_HDR_LEN + OM_HELLO_CAPS_LEN + sizeof(name) - 1)) == NULL)
		return REQ_CLOSE;
	r.body_len = OM_HELLO_CAPS_LEN + sizeof(name) - 1;
	om_proto_put_resp(p, &r);
	om_proto_put_caps(p + OM_RESP_HDR_LEN, &hc);
	memcpy(p + OM_RESP_HDR_LEN + OM_HELLO_CAPS_LEN, name, sizeof(name) - 1);
	c->out_len += (size_t)(OM_RESP_HDR_LEN + r.body_len);
	return REQ_DONE;
}

static int
reject(conn_t *c, const om_req_t *q, uint16_t status, const char *msg)
{
	return resp_simple(c, q->op, q->id, status, msg) == 0 ? REQ_DONE : REQ_CLOSE;
}

static int
get_error(conn_t *c, const om_req_t *q, int err, const char *name)
{
	char msg[160];
	uint16_t st;

	switch (err) {
	case ENOENT:
	case ENOTDIR:
	case EISDIR:
	case ENAMETOOLONG:
		st = OM_STATUS_NOT_FOUND;
		snprintf(msg, sizeof(msg), "no such object");
		break;
	case EMFILE:
	case ENFILE:
	case ENOMEM:
		st = OM_STATUS_BUSY;
		snprintf(msg, sizeof(msg), "open: %s", strerror(err));
		break;
	default:
		st = OM_STATUS_INTERNAL;
		snprintf(msg, sizeof(msg), "%s: %s", name, strerror(err));
		logmsg(err, "GET: %s", name);
		break;
	}
	return reject(c, q, st, msg);
}

/* Whole copy-mode bodies go into the output buffer: pread, then write. */
static int
get_copy(conn_t *c, const om_req_t *q, int fd, bool own, uint64_t size, uint64_t ino,
    const char *name)
{
	om_resp_t r = { .op = OM_OP_GET, .id = q->id, .body = OM_BODY_INLINE,
		.tier = OM_TIER_PERSISTENT, .obj_id = ino };
	uint64_t got = 0;
	uint8_t *p;
	int err = 0;

	if ((p = out_reserve(c, OM_RESP_HDR_LEN + size)) == NULL)
		err = ENOMEM;
	while (err == 0 && got < size) {
		ssize_t n = pread(fd, p + OM_RESP_HDR_LEN + got, (size_t)(size - got), (off_t)got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			err = n < 0 ? errno : EIO;
		else
			got += (uint64_t)n;
	}
	if (own)
		close(fd);
	if (err != 0)
		return get_error(c, q, err, name);
	r.body_len = size;
	om_proto_put_resp(p, &r);
	c->out_len += OM_RESP_HDR_LEN + size;
	return REQ_DONE;
}

static int
do_get(conn_t *c, const om_req_t *q, const uint8_t *uri)
{
	om_resp_t r = { .op = OM_OP_GET, .id = q->id, .tier = OM_TIER_PERSISTENT };
	unsigned mode = q->flags & OM_MODE_MASK;
	char name[OM_PROTO_URI_MAX + 1];
	const char *why;
	uint64_t size, ino;
	uint8_t *p;
	int fd, err;
	bool own;

	/* Both of these need the queue to themselves: flush first. */
	if ((mode != OM_MODE_COPY && c->pass_fd >= 0) || c->sf_fd >= 0)
		return REQ_FLUSH;
	if (q->flags & ~(uint32_t)(OM_MODE_MASK | OM_GET_WANT_META | OM_GET_NO_TOUCH))
		return reject(c, q, OM_STATUS_BAD_REQUEST, "unknown GET flag");
	if (q->meta_len != 0 || q->body_len != 0)
		return reject(c, q, OM_STATUS_BAD_REQUEST, "GET has no metadata or body");
	if ((why = om_proto_uri_error(uri, q->uri_len, OM_PROTO_URI_MAX)) != NULL)
		return reject(c, q, OM_STATUS_URI_INVALID, why);
	if (uri_to_name(uri, q->uri_len, name, sizeof(name)) != 0)
		return get_error(c, q, ENOENT, "");
	/* The server's own reads are at offsets: the cache serves them all.
	 * A descriptor handed out is shared only with a client that promised. */
	if ((err = file_open(name, share_fds && (mode != OM_MODE_FDPASS || c->shared), &fd,
	    &size, &ino, &own)) != 0)
		return get_error(c, q, err, name);
	if (mode == OM_MODE_AUTO && size > inline_threshold && !own && !c->shared) {
		/* A cached file, but this client gets a private description. */
		if ((err = file_open(name, false, &fd, &size, &ino, &own)) != 0)
			return get_error(c, q, err, name);
	}
	if (mode == OM_MODE_COPY || (mode == OM_MODE_AUTO && size <= inline_threshold))
		return get_copy(c, q, fd, own, size, ino, name);
	if ((p = out_reserve(c, OM_RESP_HDR_LEN)) == NULL) {
		if (own)
			close(fd);
		return get_error(c, q, ENOMEM, name);
	}
	r.obj_id = ino;
	r.body_len = size;
	if (mode == OM_MODE_SPLICE) {
		r.body = OM_BODY_INLINE;
		c->sf_fd = fd;
		c->sf_own = own;
		c->sf_off = 0;
		c->sf_left = size;
		if (c->sf_left == 0) {
			if (own)
				close(fd);
			c->sf_fd = -1;
		}
	} else {
		r.body = OM_BODY_DESCRIPTOR;
		c->pass_fd = fd;
		c->pass_own = own;
		c->pass_at = c->out_len;
	}
	om_proto_put_resp(p, &r);
	c->out_len += OM_RESP_HDR_LEN;
	return REQ_DONE;
}

/* Handles the request at the head of the input, if it is all there. */
static int
one_request(conn_t *c)
{
	uint8_t *b = c->in + c->in_off;
	size_t have = c->in_len - c->in_off, frame;
	uint64_t rest;
	om_req_t q;
	int rc;

	if (have < OM_REQ_HDR_LEN)
		return REQ_PARTIAL;
	rc = om_proto_get_req(b, &q);
	if (rc == -EPROTO) {
		resp_simple(c, 0, 0, OM_STATUS_BAD_REQUEST, "bad magic");
		return REQ_CLOSE;
	}
	if (rc != 0) {
		resp_simple(c, q.op, q.id, OM_STATUS_VERSION, "the floor server speaks version 1");
		return REQ_CLOSE;
	}
	rest = (uint64_t)q.uri_len + q.meta_len;
	if (!(q.op == OM_OP_PUT && (q.flags & OM_PUT_FD)))
		rest += q.body_len;
	if (q.op == OM_OP_GET || q.op == OM_OP_PING || q.op == OM_OP_HELLO) {
		if (q.uri_len > OM_PROTO_URI_MAX || q.meta_len > OM_PROTO_META_MAX ||
		    q.body_len > OM_PROTO_HELLO_MAX) {
			/* Answered, and its bytes dropped as they come. */
			uint16_t st = q.uri_len > OM_PROTO_URI_MAX ? OM_STATUS_URI_INVALID :
			    q.meta_len > OM_PROTO_META_MAX ? OM_STATUS_META_TOO_LARGE : OM_STATUS_BAD_REQUEST;

			if (resp_simple(c, q.op, q.id, st, q.uri_len > OM_PROTO_URI_MAX ?
			    "URI longer than the limit" : q.meta_len > OM_PROTO_META_MAX ?
			    "metadata over the limit" : "body over the limit") != 0)
				return REQ_CLOSE;
			c->in_off += OM_REQ_HDR_LEN;
			c->skip = rest;
			stat_reqs++;
			return REQ_DONE;
		}
		frame = OM_REQ_HDR_LEN + (size_t)rest;
		if (have < frame)
			return REQ_PARTIAL;
		if (q.op == OM_OP_GET) {
			if ((rc = do_get(c, &q, b + OM_REQ_HDR_LEN)) == REQ_FLUSH)
				return rc;
		} else if (q.op == OM_OP_HELLO) {
			rc = do_hello(c, &q);
		} else {
			rc = resp_simple(c, OM_OP_PING, q.id, 0, NULL) ? REQ_CLOSE : REQ_DONE;
		}
		c->in_off += frame;
		stat_reqs++;
		return rc;
	}
	/* PUT, DELETE, STAT, STATS, ...: refused, the frame dropped. (A
	 * descriptor sent with a PUT was discarded by recv already.) */
	if (q.op == OM_OP_PUT)
		rc = resp_simple(c, q.op, q.id, OM_STATUS_DENIED,
		    "the floor server does not store objects (use loadgen --prepare-dir)");
	else
		rc = resp_simple(c, q.op, q.id, OM_STATUS_UNKNOWN_OP,
		    "the floor server answers HELLO, GET and PING only");
	if (rc != 0)
		return REQ_CLOSE;
	c->in_off += OM_REQ_HDR_LEN;
	c->skip = rest;
	stat_reqs++;
	return REQ_DONE;
}

/* ---- connections --------------------------------------------------------- */

static void
conn_close(conn_t *c)
{
	close(c->fd);
	if (c->pass_fd >= 0 && c->pass_own)
		close(c->pass_fd);
	if (c->sf_fd >= 0 && c->sf_own)
		close(c->sf_fd);
	free(c->out);
	free(c);
}

static void
conn_want(int ep, conn_t *c, bool out)
{
	struct epoll_event ev = { .events = out ? EPOLLOUT : EPOLLIN, .data.ptr = c };

	if (c->want_out == out)
		return;
	c->want_out = out;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) != 0)
		logmsg(errno, "epoll_ctl");
}

/*
 * Answers every complete request in the input, in order, and sends.
 * Returns -1 when the connection must be closed.
 */
static int
conn_run(int ep, conn_t *c)
{
	for (;;) {
		int rc = REQ_PARTIAL, fl;

		while (!c->closing) {
			if (c->skip > 0) {
				size_t k = c->in_len - c->in_off;

				if (k > c->skip)
					k = (size_t)c->skip;
				c->in_off += k;
				c->skip -= k;
				if (c->skip > 0)
					break;
			}
			if (c->out_len - c->out_off >= OUT_HIGH) {
				rc = REQ_FLUSH;
				break;
			}
			rc = one_request(c);
			if (rc == REQ_CLOSE)
				c->closing = true;
			if (rc == REQ_PARTIAL || rc == REQ_FLUSH)
				break;
		}
		if (c->in_off == c->in_len)
			c->in_off = c->in_len = 0;
		fl = flush(c);
		if (fl < 0)
			return -1;
		if (fl == 0) {
			conn_want(ep, c, true);
			return 0;
		}
		if (c->closing)
			return -1;
		if (rc != REQ_FLUSH) {
			conn_want(ep, c, false);
			return 0;
		}
	}
}

static int
conn_read(conn_t *c)
{
	ssize_t n;

	if (c->in_len == IN_CAP) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	if (c->in_len == IN_CAP)
		return -1; /* cannot happen: any frame we keep is smaller than the buffer */
	do
		n = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len, MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? 0 : -1;
	if (n == 0)
		return -1;
	c->in_len += (size_t)n;
	return 0;
}

static void
accept_one(int ep, int lfd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	conn_t *c;
	int fd;

	/* One per wakeup: with EPOLLEXCLUSIVE an idle worker takes the next. */
	fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			logmsg(errno, "accept4");
		return;
	}
	/* Whole large inline responses in one write: the default (wmem_default,
	 * 208 KiB) makes a 1 MiB copy-mode response five round trips. */
	if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &(int){ SNDBUF }, sizeof(int)) != 0)
		logmsg(errno, "setsockopt(SO_SNDBUF)");
	if ((c = malloc(sizeof(*c))) == NULL) {
		logmsg(ENOMEM, "new connection");
		close(fd);
		return;
	}
	memset(c, 0, offsetof(conn_t, in));
	c->in_off = c->in_len = 0;
	c->skip = 0;
	c->out = NULL;
	c->out_off = c->out_len = c->out_cap = 0;
	c->fd = fd;
	c->pass_fd = c->sf_fd = -1;
	c->sf_left = 0;
	ev.data.ptr = c;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
		logmsg(errno, "epoll_ctl");
		conn_close(c);
		return;
	}
	stat_conns++;
}

/* ---- processes ------------------------------------------------------------ */

static int sig_tag; /* epoll tag of the signalfd */

static void worker(int lfd) __attribute__((noreturn));

static void
worker(int lfd)
{
	struct epoll_event evs[EVENTS], ev;
	sigset_t ss;
	int ep, sfd;

	/* The master dies, the workers follow. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		exit(0);
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	if ((sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		die(errno, "signalfd");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die(errno, "epoll_create1");
	ev.events = EPOLLIN | EPOLLEXCLUSIVE;
	ev.data.ptr = NULL;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) != 0)
		die(errno, "epoll_ctl(listener)");
	ev.events = EPOLLIN;
	ev.data.ptr = &sig_tag;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) != 0)
		die(errno, "epoll_ctl(signalfd)");
	for (;;) {
		int n = epoll_wait(ep, evs, EVENTS, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			die(errno, "epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			conn_t *c = evs[i].data.ptr;

			if (c == NULL) {
				accept_one(ep, lfd);
				continue;
			}
			if ((void *)c == &sig_tag) {
				logmsg(0, "stopping: %" PRIu64 " connections, %" PRIu64 " requests",
				    stat_conns, stat_reqs);
				exit(0);
			}
			if (evs[i].events & EPOLLERR) {
				conn_close(c);
				continue;
			}
			if (!c->want_out && (evs[i].events & (EPOLLIN | EPOLLHUP))) {
				if (conn_read(c) != 0) {
					conn_close(c);
					continue;
				}
			}
			if (conn_run(ep, c) != 0)
				conn_close(c);
		}
	}
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: floor_server -s SOCKET [-d DIR] [-w WORKERS] [-t INLINE_THRESHOLD] [-S]\n"
	    "  -s SOCKET  Unix socket to listen on (replaced if it exists)\n"
	    "  -d DIR     directory of the objects: URI /a/b is the file DIR/a_b (default .)\n"
	    "  -w N       worker processes (default 1)\n"
	    "  -t BYTES   inline threshold of mode auto (default 65536)\n"
	    "  -S         keep files open (a descriptor cache) and pass shared descriptions\n"
	    "             to clients that promise OFFSET_READS; files must not change\n");
	exit(2);
}

static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

int
main(int argc, char **argv)
{
	const char *dir = ".";
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	pid_t pids[WORKERS_MAX];
	int nworkers = 1, lfd, sfd, opt, live;
	sigset_t ss;
	char *end;

	while ((opt = getopt(argc, argv, "s:d:w:t:Sh")) != -1) {
		switch (opt) {
		case 's':
			sock_path = optarg;
			break;
		case 'd':
			dir = optarg;
			break;
		case 'w':
			nworkers = (int)strtol(optarg, &end, 10);
			if (*end != '\0' || nworkers < 1 || nworkers > WORKERS_MAX)
				die(0, "-w: 1 to %d workers", WORKERS_MAX);
			break;
		case 'S':
			share_fds = true;
			break;
		case 't':
			inline_threshold = strtoull(optarg, &end, 10);
			if (*end != '\0')
				die(0, "-t: a number of bytes");
			break;
		default:
			usage();
		}
	}
	if (sock_path == NULL || optind != argc)
		usage();
	if (strlen(sock_path) >= sizeof(sa.sun_path))
		die(0, "socket path too long: %s", sock_path);
	if ((dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		die(errno, "open(\"%s\")", dir);
	raise_nofile();

	/* Signals are read from signalfds, by the master and each worker. */
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGCHLD);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	signal(SIGPIPE, SIG_IGN);

	strcpy(sa.sun_path, sock_path);
	if ((lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		die(errno, "socket");
	if (unlink(sock_path) != 0 && errno != ENOENT)
		die(errno, "unlink(\"%s\")", sock_path);
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die(errno, "bind(\"%s\")", sock_path);
	if (listen(lfd, 4096) != 0)
		die(errno, "listen");
	for (int i = 0; i < nworkers; i++) {
		if ((pids[i] = fork()) < 0)
			die(errno, "fork");
		if (pids[i] == 0) {
			worker_no = i;
			worker(lfd);
		}
	}
	logmsg(0, "%d workers on %s, objects in %s, inline threshold %" PRIu64 "%s",
	    nworkers, sock_path, dir, inline_threshold, share_fds ? ", shared descriptions" : "");

	if ((sfd = signalfd(-1, &ss, SFD_CLOEXEC)) < 0)
		die(errno, "signalfd");
	live = nworkers;
	for (;;) {
		struct signalfd_siginfo si;
		ssize_t n = read(sfd, &si, sizeof(si));

		if (n != (ssize_t)sizeof(si)) {
			if (n < 0 && errno == EINTR)
				continue;
			die(errno, "read(signalfd)");
		}
		if (si.ssi_signo == SIGCHLD) {
			pid_t p;
			int st;

			while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
				for (int i = 0; i < nworkers; i++)
					if (pids[i] == p)
						pids[i] = -1;
				live--;
				logmsg(0, "worker %d exited with status %d", (int)p,
				    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			}
			if (live > 0)
				continue;
			unlink(sock_path);
			die(0, "no worker left");
		}
		break;
	}
	unlink(sock_path);
	for (int i = 0; i < nworkers; i++)
		if (pids[i] > 0)
			kill(pids[i], SIGTERM);
	while (wait(NULL) > 0 || errno == EINTR)
		;
	return 0;
}
