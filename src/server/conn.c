/*
 * The transport under a worker's connections: reading (with descriptors
 * that come with the bytes), the output queue and its sending (buffers,
 * descriptors with the first byte of their header, file ranges copied or
 * sendfile'd), the life cycle, the ready list, lingering close and the
 * timeouts. What the bytes mean is the protocol's of the connection's
 * listener (proto_bin.c, proto_http.c), called through its table
 * (conn_proto_t); nothing here knows one protocol from another. Worker
 * processes.
 *
 * A connection never blocks the worker: sockets are non-blocking, output
 * waits in the queue, and a client that does not read has its reading
 * stopped once too much waits for it.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "server/conn.h"

/* ---- output ------------------------------------------------------------ */

out_t *
conn_out_new(enum out_kind kind, size_t datalen)
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
conn_out_push(conn_t *c, out_t *o)
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

/*
 * The senders of flush, one per kind of output at the head of the queue:
 * each sends what it can once and accounts for it. They return the bytes
 * that left (> 0), -errno from the system call, or 0 when the connection
 * cannot go on (said in the log where it is the server's trouble).
 */

/* A descriptor goes in the same sendmsg as its header's first byte, and
 * alone: no other descriptor-carrying header shares that sendmsg. */
static ssize_t
send_fd(conn_t *c, out_t *o)
{
	om_srv_stats_sh_t *stats = c->w->stats;
	struct iovec iov = { o->data, (size_t)o->len };
	ssize_t n = om_os_send_fd(c->fd, &iov, 1, o->ref.fd, MSG_DONTWAIT);

	if (n <= 0)
		return n;
	OM_COUNT(stats->fds_passed, 1);
	/* Passed: the kernel holds its own reference now. */
	om_fdref_put(&o->ref);
	/* Part of the message went: the rest is a buffer. */
	o->done = (uint64_t)n;
	OM_COUNT(stats->bytes_out, (uint64_t)n);
	if (o->done == o->len)
		finish_out(c);
	return n;
}

/* Buffers, gathered up to the next descriptor or file range. */
static ssize_t
send_bufs(conn_t *c, out_t *o)
{
	om_srv_stats_sh_t *stats = c->w->stats;
	struct iovec iov[64];
	size_t left;
	int cnt = 0;
	ssize_t n;

	for (out_t *p = o; p != NULL && cnt < 64 && p->kind == OUT_BUF && (p == o || p->ref.fd < 0);
	    p = p->next) {
		iov[cnt].iov_base = p->data + p->done;
		iov[cnt].iov_len = (size_t)(p->len - p->done);
		cnt++;
	}
	if ((n = writev(c->fd, iov, cnt)) <= 0)
		return n < 0 ? -errno : 0;
	OM_COUNT(stats->bytes_out, (uint64_t)n);
	for (left = (size_t)n; left > 0;) {
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
	return n;
}

/* A file range, sendfile'd. */
static ssize_t
send_file(conn_t *c, out_t *o)
{
	om_srv_stats_sh_t *stats = c->w->stats;
	off_t off = (off_t)o->off;
	ssize_t n = sendfile(c->fd, o->ref.fd, &off, o->len > (1u << 30) ? (1u << 30) : (size_t)o->len);

	if (n < 0)
		return -errno;
	if (n == 0) {
		om_log_err_limited(0, "object file shorter than its size");
		return 0;
	}
	OM_COUNT(stats->bytes_out, (uint64_t)n);
	o->off += (uint64_t)n;
	o->len -= (uint64_t)n;
	if (o->len == 0)
		finish_out(c);
	return n;
}

/* Refills the bounce buffer of a file range in copy mode. The bytes of a
 * whole object are checked against its checksum as they are read, and
 * the last of a damaged one are not sent: the client sees a broken
 * connection, not bytes that pass for the object. */
static bool
bounce_fill(conn_t *c, out_t *o)
{
	size_t want = o->len < BOUNCE_SIZE ? (size_t)o->len : BOUNCE_SIZE;
	ssize_t r;

	if (c->bounce == NULL && (c->bounce = malloc(BOUNCE_SIZE)) == NULL)
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
		if ((size_t)r == o->len && o->crc != o->obj.crc) {
			om_store_quarantine(c->w->srv->st, &o->obj, o->tier, "its bytes do not match their "
			    "checksum (found serving a GET)");
			return false;
		}
	}
	return true;
}

/* A file range in copy mode: through a buffer, as a client without
 * sendfile would do it. */
static ssize_t
send_copy(conn_t *c, out_t *o)
{
	om_srv_stats_sh_t *stats = c->w->stats;
	ssize_t n;

	if (c->bounce_len == 0 && !bounce_fill(c, o))
		return 0;
	if ((n = write(c->fd, c->bounce + c->bounce_off, c->bounce_len)) <= 0)
		return n < 0 ? -errno : 0;
	OM_COUNT(stats->bytes_out, (uint64_t)n);
	c->bounce_off += (size_t)n;
	c->bounce_len -= (size_t)n;
	o->len -= (uint64_t)n;
	if (c->bounce_len == 0 && o->len == 0)
		finish_out(c);
	return n;
}

void
conn_out_clear(conn_t *c)
{
	while (c->out_head != NULL)
		finish_out(c);
}

/* Sends what the socket takes. Returns false if the connection failed. */
static bool
flush(conn_t *c)
{
	if (c->out_head != NULL)
		c->active_ms = om_clock_ms(); /* a client that reads keeps it alive */
	while (c->out_head != NULL) {
		out_t *o = c->out_head;
		ssize_t n;

		if (o->kind == OUT_BUF && o->ref.fd >= 0 && o->done == 0)
			n = send_fd(c, o);
		else if (o->kind == OUT_BUF)
			n = send_bufs(c, o);
		else if (o->kind == OUT_SPLICE)
			n = send_file(c, o);
		else
			n = send_copy(c, o);
		if (n > 0 || n == -EINTR)
			continue;
		if (n == -EAGAIN || n == -EWOULDBLOCK)
			break;
		if (n < 0 && n != -EPIPE && n != -ECONNRESET)
			om_log_warn_limited((int)-n, "send failed");
		return false;
	}
	if (c->bounce != NULL && c->out_head == NULL) {
		free(c->bounce);
		c->bounce = NULL;
	}
	return true;
}

/* An error that leaves the stream unusable: answer, then close. */
void
conn_end(conn_t *c, const char *why)
{
	c->closing = true;
	if (c->txn != NULL) {
		om_store_put_abort(c->txn);
		c->txn = NULL;
	}
	om_log_debug(0, "closing a connection: %s", why);
}

/* ---- input ------------------------------------------------------------- */

void
conn_consume(conn_t *c, size_t n)
{
	c->in_off += n;
	if (c->in_off == c->in_len)
		c->in_off = c->in_len = 0;
}

/* A PUT's bytes in the buffer, up to the c->left still expected, to its
 * transaction (both protocols). Returns the store's error, or 0. */
int
conn_body_write(conn_t *c)
{
	size_t have = c->in_len - c->in_off, n = have < c->left ? have : (size_t)c->left;
	int rc;

	if (c->body_ext > 0) {
		/* Read past the input buffer (read_in): these came first. */
		n = c->body_ext;
		c->body_ext = 0;
		c->left -= n;
		return om_store_put_write(c->txn, c->w->body_buf, n);
	}
	rc = om_store_put_write(c->txn, c->in + c->in_off, n);

	conn_consume(c, n);
	c->left -= n;
	return rc;
}

int
conn_take_fd(conn_t *c)
{
	int fd;

	if (c->nrfds == 0)
		return -1;
	fd = c->rfds[0];
	memmove(c->rfds, c->rfds + 1, (c->nrfds - 1) * sizeof(int));
	c->nrfds--;
	return fd;
}

/* Whether the next read takes the rest of a PUT's body past the input
 * buffer: a body still longer than that buffer, none of it waiting. */
static bool
body_direct(conn_t *c)
{
	if ((c->state != ST_BODY && c->state != ST_HTTP_BODY) || c->txn == NULL || c->dgram ||
	    c->in_off != c->in_len || c->body_ext != 0 || c->left <= IN_CAP)
		return false;
	if (c->w->body_buf == NULL && (c->w->body_buf = malloc(BODY_BUF)) == NULL)
		return false;
	return true;
}

/* Reads what the socket has, with any descriptors. Returns the bytes
 * read (0 for nothing yet or end of stream) or -errno; *drained is set
 * when the read took less than it had room for (the socket is empty). */
static int
read_in(conn_t *c, bool *drained)
{
	om_srv_stats_sh_t *stats = c->w->stats;
	om_os_fds_t fds = { c->rfds, c->nrfds, RFD_MAX, 0 };
	size_t room, to_in = 0;
	ssize_t n;

	if (c->in_off > 0 && c->in_len == IN_CAP) {
		memmove(c->in, c->in + c->in_off, c->in_len - c->in_off);
		c->in_len -= c->in_off;
		c->in_off = 0;
	}
	*drained = false;
	if (c->in_len == IN_CAP)
		return 0;
	if (body_direct(c)) {
		/*
		 * The rest of a large body: read into the worker's body buffer,
		 * and what follows it into the (empty) input buffer, so that
		 * it goes to the file in steps of up to BODY_BUF, a read and a
		 * write each, rather than of IN_CAP. The body's bytes are
		 * written before this connection's turn ends, so before any
		 * other connection reads into the buffer.
		 */
		size_t want = c->left < BODY_BUF ? (size_t)c->left : BODY_BUF;
		struct iovec iov[2] = { { c->w->body_buf, want }, { c->in, IN_CAP } };

		c->in_off = c->in_len = 0;
		room = want + IN_CAP;
		n = om_os_recv_fds_iov(c->fd, iov, 2, MSG_DONTWAIT, &fds);
		if (n > 0) {
			c->body_ext = (size_t)n < want ? (size_t)n : want;
			to_in = (size_t)n - c->body_ext;
		}
	} else {
		room = IN_CAP - c->in_len;
		n = om_os_recv_fds(c->fd, c->in + c->in_len, room, MSG_DONTWAIT, &fds);
		to_in = n > 0 ? (size_t)n : 0;
	}
	*drained = n < (ssize_t)room;
	/* Descriptors beyond RFD_MAX were closed; all are counted. */
	c->nrfds = fds.n;
	OM_COUNT(stats->fds_received, fds.received);
	if (n < 0)
		return n == -EAGAIN || n == -EWOULDBLOCK || n == -EINTR ? 0 : (int)n;
	if (n == 0) {
		c->eof = true;
		return 0;
	}
	OM_COUNT(stats->bytes_in, (uint64_t)n);
	c->starved = false;
	c->active_ms = om_clock_ms();
	if (c->req_start_ms == 0) {
		c->req_start_ms = c->active_ms;
		c->req_bytes = 0;
	}
	c->req_bytes += (uint64_t)n;
	c->in_len += to_in;
	return (int)n;
}

/* ---- life cycle -------------------------------------------------------- */

conn_t *
conn_new(worker_t *w, int fd, const wlistener_t *l, const om_peer_t *peer)
{
	conn_t *c = calloc(1, sizeof(*c));
	struct epoll_event e;

	if (c == NULL || (c->in = malloc(IN_CAP)) == NULL) {
		free(c);
		return NULL;
	}
	c->tag.kind = EV_CONN;
	c->w = w;
	c->ls = l->ls;
	c->proto = l->proto;
	c->fd = fd;
	c->peer = *peer;
	c->access = om_peer_access(c->ls, peer);
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
	w->nconns++;
	OM_COUNT(w->stats->conns_current, 1);
	OM_COUNT(w->stats->conns_total, 1);
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
	conn_out_clear(c);
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
	w->nconns--;
	OM_STORE(&w->stats->conns_current, w->stats->conns_current - 1);
	/* Freed by the worker once off its ready list. */
	if (!c->in_ready)
		free(c);
}

#define LINGER_MS    2000               /* how long a closing connection reads on */
#define LINGER_BYTES (8u * 1024 * 1024) /* and how much */

/*
 * For protocols that say so (HTTP, and objmapper's frames on a stream): a
 * response that ends the connection (a refused body, a malformed request)
 * may be followed by bytes the client is still sending. Closing with them
 * unread makes the kernel send a reset, which can destroy the response
 * before the client reads it. So: shut down our side, read and drop what
 * comes for a while, then close (what nginx calls a lingering close): at
 * most LINGER_MS and LINGER_BYTES, in reads of the input buffer, a few per
 * event. Returns false if the connection should be closed now.
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
	if (c->lingering)
		return;
	if ((c->closing || (c->eof && c->state == ST_HEADER && !more && !c->proto->ready(c))) &&
	    c->out_head == NULL) {
		if (c->proto->linger && c->closing && !c->eof && linger(c))
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
	bool more;

	c->starved = false;
	more = c->proto->process(c);

	if (c->state == ST_HEADER && c->in_off == c->in_len) {
		c->req_start_ms = 0;
	} else if (c->frames != before || c->req_start_ms == 0) {
		/* What is left in the buffer belongs to the next request, and
		 * so does what it took already (a PUT's header and the bytes
		 * that came with it, behind a request that completed). */
		c->req_start_ms = om_clock_ms();
		c->req_bytes = c->in_len - c->in_off + (c->state != ST_HEADER ? c->req_taken : 0);
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

/* The protocol's last words (a GOAWAY, a 408), one try to send what is
 * queued, then close: a client that does not read gets nothing more. */
static void
close_with(conn_t *c, uint16_t status, const char *why)
{
	om_log_debug(0, "closing a connection from %s on %s: %s", c->peer.name, c->ls->name, why);
	c->proto->goodbye(c, status, why);
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
			OM_COUNT(stats->timeouts[OM_TIMEOUT_REQUEST], 1);
			snprintf(why, sizeof(why), "request timeout: not received in full within %llu ms "
			    "(%llu bytes arrived)", (unsigned long long)limit, (unsigned long long)c->req_bytes);
			close_with(c, OM_STATUS_BAD_REQUEST, why);
			return;
		}
	}
	/* Nothing read or written for idle_timeout: an idle client, or one
	 * that does not read what it asked for. */
	if (ls->idle_timeout_ms && now - c->active_ms > ls->idle_timeout_ms) {
		OM_COUNT(stats->timeouts[OM_TIMEOUT_IDLE], 1);
		snprintf(why, sizeof(why), "idle for %u ms", ls->idle_timeout_ms);
		close_with(c, OM_STATUS_OK, why);
	}
}

void
conn_reject(worker_t *w, int fd, const wlistener_t *l, const char *why)
{
	l->proto->reject(w, fd, l->ls, why);
	close(fd);
	OM_COUNT(w->stats->conns_rejected, 1);
}
