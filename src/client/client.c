/*
 * libobjmapper: the blocking client of objmapperd over a Unix socket, TCP
 * or UDP (docs/PROTOCOL.md), built on the non-blocking core of nb.c (its
 * encoder and decoder) with the waiting, reconnects and retries. Runs in
 * the caller's process; a handle is used by one thread at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "os/om_os.h"
#include "proto/om_proto.h"

#define API __attribute__((visibility("default")))

#define NOT_OURS "not an objmapper socket: "

#define UDP_MAX 65536u

struct om_client {
	int fd;
	unsigned flags;
	uint32_t next_id;
	int goaway;             /* a GOAWAY was read: reconnect before the next request */
	uint32_t goaway_last;
	int refused;            /* the last send failed: the daemon had closed */
	unsigned long retries;
	om_caps_t caps;
	unsigned transport;     /* OM_TRANSPORT_*: how `path` is reached */
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* or tcp://HOST:PORT */
	char host[256], port[16];
	uint8_t *dgram;         /* UDP: the request being sent */
	uint8_t *dgram_in;      /* UDP: the answer received */
	char msg[OM_PROTO_MSG_MAX + 128];
	int timeout_ms;         /* bound of each wait for an answer; 0: none */
	int connect_ms;         /* bound of connect and of the wait for HELLO's answer */
	int wait_ms;            /* the bound in force (one of the two); 0: none */
	int put_open;           /* a streamed PUT is in progress (put_begin) */
	uint64_t put_left;      /* its bytes not yet sent */
	uint32_t put_id;
	om_decoder_t *dec;      /* what the daemon sent, decoded */
};

/* ---- messages and errors ------------------------------------------------ */

__attribute__((format(printf, 3, 4))) static int
fail(om_client_t *c, int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
	va_end(ap);
	return -code;
}

API const char *
om_client_message(const om_client_t *c)
{
	return c ? c->msg : "no client";
}

API const char *
om_client_strerror(int code)
{
	if (code < 0)
		code = -code;
	if (code <= OM_STATUS_MAX)
		return om_proto_status_text((unsigned)code);
	switch (code) {
	case OM_ECONNECT: return "cannot connect to the daemon";
	case OM_EIO: return "connection to the daemon failed";
	case OM_EPROTO: return "protocol error";
	case OM_EINVAL: return "invalid argument";
	case OM_ENOMEM: return "out of memory";
	case OM_ERANGE: return "buffer too small for the object";
	case OM_ESOURCE: return "cannot read the source";
	case OM_ETIMEDOUT: return "the daemon did not answer in time";
	default: return "unknown error";
	}
}

API const om_caps_t *
om_client_caps(const om_client_t *c)
{
	return &c->caps;
}

API int
om_client_fd(const om_client_t *c)
{
	return c->fd;
}

API unsigned long
om_client_retries(const om_client_t *c)
{
	return c->retries;
}

/* The kernel bounds connect, send and MSG_WAITALL receives; poll in fill
 * bounds the other receives. ms: the bound now in force (0: none). */
static void
apply_timeout(om_client_t *c, int ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	c->wait_ms = ms;
	if (c->fd < 0)
		return;
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

API void
om_client_set_timeout(om_client_t *c, int ms)
{
	c->timeout_ms = c->connect_ms = ms > 0 ? ms : 0;
	if (c->fd >= 0)
		apply_timeout(c, c->timeout_ms);
}

/* ---- the connection ---------------------------------------------------- */

static void
disconnect(om_client_t *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->goaway = 0;
	c->put_open = 0;
	if (c->dec != NULL)
		om_decoder_reset(c->dec);
}

/* The stream is out of step after a wait that expired: drop it. */
static int
timed_out(om_client_t *c, const char *what)
{
	disconnect(c);
	return fail(c, OM_ETIMEDOUT, "%s %s: no answer within %d ms", what, c->path, c->wait_ms);
}

/*
 * The next response of the connection, waiting for its bytes (each wait
 * bounded by the one in force): 0 and *o filled (a GOAWAY or a status is
 * also kept in the message), or -OM_EIO (the connection ended or failed),
 * -OM_EPROTO (the stream broke the protocol), -OM_ETIMEDOUT.
 */
static int
next_resp(om_client_t *c, om_response_t *o)
{
	for (;;) {
		int rc = om_decoder_next(c->dec, o);

		if (rc == 1) {
			if (o->op == OM_OP_GOAWAY) {
				c->goaway = 1;
				c->goaway_last = o->id;
				snprintf(c->msg, sizeof(c->msg), "GOAWAY: %s", o->msg);
			} else if (o->rc < 0 && o->rc >= -OM_STATUS_MAX) {
				snprintf(c->msg, sizeof(c->msg), "%s: %s", om_proto_status_name((unsigned)-o->rc),
				    o->msg[0] ? o->msg : om_proto_status_text((unsigned)-o->rc));
			}
			return 0;
		}
		if (rc < 0) {
			const char *why = om_decoder_message(c->dec);

			if (strncmp(why, NOT_OURS, strlen(NOT_OURS)) == 0)
				return fail(c, OM_EPROTO, NOT_OURS "%s: %s", c->path, why + strlen(NOT_OURS));
			return fail(c, OM_EPROTO, "bad response from %s: %s", c->path, why);
		}
		if (c->transport == OM_TRANSPORT_UDP)
			return fail(c, OM_EPROTO, "a response from %s is longer than its datagram", c->path);
		rc = om_decoder_recv(c->dec, c->fd);
		if (rc > 0)
			continue;
		if (rc == 0)
			return fail(c, OM_EIO, "the daemon closed the connection");
		if (rc == -OM_EAGAIN) {
			/* Wait in poll for input only: a recvmsg asleep on the
			 * socket is also woken each time the daemon reads our
			 * request (write space), a wasted context switch. */
			struct pollfd p = { c->fd, POLLIN, 0 };
			int n = poll(&p, 1, c->wait_ms > 0 ? c->wait_ms : -1);

			if (n == 0)
				return timed_out(c, "receive from");
			if (n < 0 && errno != EINTR)
				return fail(c, OM_EIO, "poll on %s: %s", c->path, strerror(errno));
			continue;
		}
		if (rc == -OM_EPROTO)
			return fail(c, OM_EPROTO, "%s", om_decoder_message(c->dec));
		return fail(c, OM_EIO, "receive from %s: %s", c->path, om_decoder_message(c->dec));
	}
}

/* Sends every byte of iov (modified), the descriptor fd (if >= 0) with
 * the first; *sent (may be NULL) counts the bytes that left, also on
 * failure. */
static int
send_all(om_client_t *c, struct iovec *iov, int iovcnt, int fd, size_t *sent)
{
	if (sent != NULL)
		*sent = 0;
	while (iovcnt > 0) {
		ssize_t n = om_os_send_fd(c->fd, iov, iovcnt, fd, 0);

		if (n < 0) {
			if (n == -EINTR)
				continue;
			if (n == -EAGAIN || n == -EWOULDBLOCK)
				return timed_out(c, "send to");
			/* The daemon closed its end (after a GOAWAY): nothing of
			 * what did not leave was taken. */
			c->refused = n == -EPIPE || n == -ECONNRESET;
			return fail(c, OM_EIO, "send to %s: %s", c->path, strerror((int)-n));
		}
		if (sent != NULL)
			*sent += (size_t)n;
		/* The descriptor went with the first bytes. */
		fd = -1;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* A request id: never 0 (GOAWAY's "none"). */
static uint32_t
new_id(om_client_t *c)
{
	uint32_t id = c->next_id++;

	if (c->next_id == 0)
		c->next_id = 1;
	return id;
}

/*
 * UDP: sends the request as one datagram and feeds the datagram of its
 * response to the decoder. The request is padded so that the server may answer
 * with a full datagram under its amplification limit (docs/PROTOCOL.md);
 * it is sent again after 100, 200, 400... ms without an answer (UDP loses
 * datagrams), and answers to other ids (late ones) are dropped.
 */
#define UDP_TRIES 6
static int
udp_exchange(om_client_t *c, const struct iovec *iov, int iovcnt, uint32_t id)
{
	size_t len = 0, pad = 256; /* before HELLO: room for its answer */
	int timeout = 100;

	if (c->caps.max_datagram && c->caps.amplification)
		pad = (c->caps.max_datagram + c->caps.amplification - 1u) / c->caps.amplification;
	for (int i = 0; i < iovcnt; i++) {
		if (len + iov[i].iov_len > 65507)
			return fail(c, OM_EINVAL, "request too large for UDP (%zu bytes or more)",
			    len + iov[i].iov_len);
		if (iov[i].iov_len)
			memcpy(c->dgram + len, iov[i].iov_base, iov[i].iov_len);
		len += iov[i].iov_len;
	}
	if (len < pad) {
		memset(c->dgram + len, 0, pad - len);
		len = pad;
	}
	for (int tries = 0; tries < UDP_TRIES; tries++, timeout *= 2) {
		if (send(c->fd, c->dgram, len, MSG_NOSIGNAL) != (ssize_t)len)
			return fail(c, OM_EIO, "send to %s: %s", c->path, strerror(errno));
		for (;;) {
			struct pollfd p = { c->fd, POLLIN, 0 };
			ssize_t n;
			int rc = poll(&p, 1, timeout);

			if (rc < 0 && errno == EINTR)
				continue;
			if (rc <= 0)
				break;
			n = recv(c->fd, c->dgram_in, UDP_MAX, MSG_DONTWAIT);
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			if (n < 0)
				return fail(c, OM_EIO, "receive from %s: %s", c->path, strerror(errno));
			if ((size_t)n < OM_RESP_HDR_LEN || om_get32(c->dgram_in + 4) != id)
				continue; /* an answer to an earlier try */
			om_decoder_reset(c->dec);
			if (om_decoder_feed(c->dec, c->dgram_in, (size_t)n, NULL, 0) != 0)
				return fail(c, OM_ENOMEM, "out of memory");
			return 0;
		}
	}
	return fail(c, OM_EIO, "no answer from %s", c->path);
}

/*
 * Says HELLO and keeps the capabilities. The decoder refuses a stream
 * that does not begin as the protocol's at its first bytes (an HTTP
 * listener's "HTTP/1.1 400"), so a peer that is not objmapperd fails at
 * once; the wait for the answer is bounded by the connect timeout.
 */
static int
hello(om_client_t *c)
{
	uint8_t h[OM_REQUEST_OVERHEAD];
	om_request_t rq = { .op = OM_OP_HELLO, .id = new_id(c) };
	om_response_t o;
	int rc, len;

	rq.flags = (c->flags & OM_CLIENT_OFFSET_READS) ? OM_HELLO_OFFSET_READS : 0;
	len = om_request_encode(&rq, h, sizeof(h));
	if (len < 0)
		return fail(c, OM_EINVAL, "cannot encode HELLO");
	{
		struct iovec iov = { h, (size_t)len };

		rc = c->transport == OM_TRANSPORT_UDP ? udp_exchange(c, &iov, 1, rq.id) :
		    send_all(c, &iov, 1, -1, NULL);
	}
	if (rc == 0)
		rc = next_resp(c, &o);
	if (rc == -OM_ETIMEDOUT && c->transport != OM_TRANSPORT_UDP)
		return fail(c, OM_ETIMEDOUT, NOT_OURS "%s: no answer to HELLO within %d ms", c->path,
		    c->connect_ms);
	if (rc == -OM_EIO && om_decoder_received(c->dec) == 0 && c->transport != OM_TRANSPORT_UDP)
		return fail(c, OM_EIO, NOT_OURS "%s: closed without answering HELLO", c->path);
	if (rc != 0)
		return rc;
	if (o.op == OM_OP_GOAWAY)
		rc = fail(c, OM_EIO, "the daemon is going away");
	else if (o.rc != 0)
		rc = o.rc == -OM_ENOMEM ? fail(c, OM_ENOMEM, "out of memory") : o.rc;
	else if (o.op != OM_OP_HELLO || o.len > 4096 || om_response_caps(&o, &c->caps) != 0)
		rc = fail(c, OM_EPROTO, "bad HELLO response");
	om_response_free(&o);
	return rc;
}

/* TCP or UDP: the first address of HOST that takes a connection. */
static int
connect_inet(om_client_t *c)
{
	struct addrinfo hints = { 0 }, *res = NULL, *ai;
	int rc, err = 0;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = c->transport == OM_TRANSPORT_TCP ? SOCK_STREAM : SOCK_DGRAM;
	rc = getaddrinfo(c->host, c->port, &hints, &res);
	if (rc != 0)
		return fail(c, OM_ECONNECT, "%s: %s", c->path, gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (c->fd < 0) {
			err = errno;
			continue;
		}
		apply_timeout(c, c->connect_ms);
		if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		/* SO_SNDTIMEO ran out (EINPROGRESS). */
		err = errno == EINPROGRESS ? ETIMEDOUT : errno;
		close(c->fd);
		c->fd = -1;
	}
	freeaddrinfo(res);
	if (c->fd < 0)
		return fail(c, OM_ECONNECT, "connect to %s: %s", c->path, strerror(err));
	if (c->transport == OM_TRANSPORT_TCP)
		(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	return hello(c);
}

static int
connect_transport(om_client_t *c)
{
	struct sockaddr_un sa;

	disconnect(c);
	if (c->transport != OM_TRANSPORT_UNIX)
		return connect_inet(c);
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	memcpy(sa.sun_path, c->path, strlen(c->path));
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return fail(c, OM_ECONNECT, "socket: %s", strerror(errno));
	apply_timeout(c, c->connect_ms);
	if (connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		/* SO_SNDTIMEO ran out while the listener's backlog was full. */
		int rc = errno == EAGAIN ?
		    fail(c, OM_ETIMEDOUT, "connect to %s: no room in its backlog within %d ms", c->path,
			c->connect_ms) :
		    fail(c, OM_ECONNECT, "connect to %s: %s", c->path, strerror(errno));

		disconnect(c);
		return rc;
	}
	return hello(c);
}

/* Connects and says HELLO within the connect timeout; the request
 * timeout bounds what follows. */
static int
connect_once(om_client_t *c)
{
	int rc = connect_transport(c);

	if (rc == 0)
		apply_timeout(c, c->timeout_ms);
	return rc;
}

/*
 * Connects and says HELLO. A connection that a draining worker took just
 * before it stopped accepting gets a GOAWAY (or is closed) at once: the
 * daemon has another generation, so try again.
 */
static int
reconnect(om_client_t *c)
{
	int rc;

	for (int attempt = 0; attempt < 8; attempt++) {
		rc = connect_once(c);
		if (rc == 0)
			return 0;
		disconnect(c);
		if (rc != -OM_EIO)
			return rc;
		usleep(1000u << attempt);
	}
	{
		char why[sizeof(c->msg)];

		memcpy(why, c->msg, sizeof(why));
		return fail(c, OM_ECONNECT, "%s", why);
	}
}

/*
 * "tcp://HOST:PORT", "udp://HOST:PORT" (HOST a name, an IPv4 address or an
 * IPv6 one in brackets), "unix:PATH", or a path.
 */
static int
parse_address(om_client_t *c, const char *a)
{
	const char *hp, *colon;
	size_t hl;

	if (strlen(a) >= sizeof(c->path))
		return fail(c, OM_EINVAL, "address too long: %s", a);
	strcpy(c->path, a);
	if (strncmp(a, "unix:", 5) == 0) {
		memmove(c->path, c->path + 5, strlen(c->path + 5) + 1);
		if (strncmp(c->path, "//", 2) == 0)
			memmove(c->path, c->path + 2, strlen(c->path + 2) + 1);
		c->transport = OM_TRANSPORT_UNIX;
		return c->path[0] ? 0 : fail(c, OM_EINVAL, "no path in %s", a);
	}
	if (strncmp(a, "tcp://", 6) != 0 && strncmp(a, "udp://", 6) != 0) {
		c->transport = OM_TRANSPORT_UNIX;
		return 0;
	}
	c->transport = a[0] == 't' ? OM_TRANSPORT_TCP : OM_TRANSPORT_UDP;
	hp = a + 6;
	if (*hp == '[') {
		const char *end = strchr(hp, ']');

		if (end == NULL || end[1] != ':')
			return fail(c, OM_EINVAL, "bad address %s (tcp://[IPV6]:PORT)", a);
		hp++;
		hl = (size_t)(end - hp);
		colon = end + 1;
	} else {
		colon = strrchr(hp, ':');
		if (colon == NULL)
			return fail(c, OM_EINVAL, "bad address %s (no :PORT)", a);
		hl = (size_t)(colon - hp);
	}
	if (hl == 0 || hl >= sizeof(c->host) || strlen(colon + 1) == 0 ||
	    strlen(colon + 1) >= sizeof(c->port) || strspn(colon + 1, "0123456789") != strlen(colon + 1))
		return fail(c, OM_EINVAL, "bad address %s (HOST:PORT)", a);
	memcpy(c->host, hp, hl);
	c->host[hl] = '\0';
	strcpy(c->port, colon + 1);
	return 0;
}

API int
om_client_connect(const char *path, unsigned flags, om_client_t **out)
{
	return om_client_connect_timeout(path, flags, OM_CLIENT_CONNECT_TIMEOUT, out);
}

API int
om_client_connect_timeout(const char *path, unsigned flags, int connect_ms, om_client_t **out)
{
	om_client_t *c;
	int rc;

	*out = NULL;
	if (path == NULL || *path == '\0')
		path = getenv("OBJMAPPER_SOCKET");
	if (path == NULL || *path == '\0')
		path = OM_DEFAULT_SOCKET;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -OM_ENOMEM;
	c->fd = -1;
	c->flags = flags;
	c->next_id = 1;
	c->connect_ms = connect_ms > 0 ? connect_ms : 0;
	c->timeout_ms = OM_CLIENT_REQUEST_TIMEOUT;
	*out = c;
	if ((rc = parse_address(c, path)) != 0)
		return rc;
	if (om_decoder_new(&c->dec) != 0)
		return fail(c, OM_ENOMEM, "out of memory");
	if (c->transport == OM_TRANSPORT_UDP &&
	    ((c->dgram = malloc(UDP_MAX)) == NULL || (c->dgram_in = malloc(UDP_MAX)) == NULL))
		return fail(c, OM_ENOMEM, "out of memory");
	if (flags & OM_CLIENT_LAZY)
		return 0;
	return reconnect(c);
}

API void
om_client_close(om_client_t *c)
{
	if (c == NULL)
		return;
	disconnect(c);
	om_decoder_free(c->dec);
	free(c->dgram_in);
	free(c->dgram);
	free(c);
}

/* ---- requests ---------------------------------------------------------- */

static int
check_uri(om_client_t *c, const char *uri, size_t *len)
{
	const char *why;

	*len = 0;
	if (uri == NULL)
		return fail(c, OM_EINVAL, "no URI");
	*len = strlen(uri);
	why = om_proto_uri_error(uri, *len, c->caps.max_uri ? c->caps.max_uri : OM_PROTO_URI_MAX);
	if (why != NULL)
		return fail(c, OM_EINVAL, "%s", why);
	return 0;
}

/* A response and what the caller wants of it. */
typedef struct {
	om_response_t o;
	void *buf;      /* caller's buffer for an inline body, or NULL */
	size_t cap;
	int want_data;  /* keep an inline body (else drop it) */
	int want_meta;
} sink_t;

static void
sink_init(sink_t *s, int want_data, int want_meta)
{
	memset(s, 0, sizeof(*s));
	s->o.fd = -1;
	s->want_data = want_data;
	s->want_meta = want_meta;
}

static void
sink_release(sink_t *s)
{
	om_response_free(&s->o);
}

/* What a response that arrived means for its call: 0, a status other
 * than OK negated (its message kept), or a local failure. */
static int
finish(om_client_t *c, sink_t *s)
{
	om_response_t *o = &s->o;

	if (!s->want_meta) {
		free(o->meta);
		o->meta = NULL;
	}
	if (o->rc == -OM_ENOMEM)
		return fail(c, OM_ENOMEM, "out of memory for %llu bytes", (unsigned long long)o->len);
	if (o->body == OM_BODY_INLINE && !s->want_data) {
		free(o->data);
		o->data = NULL;
	} else if (o->body == OM_BODY_INLINE && s->buf != NULL) {
		if (o->len > s->cap) {
			free(o->data);
			o->data = NULL;
			return fail(c, OM_ERANGE, "object of %llu bytes, buffer of %zu",
			    (unsigned long long)o->len, s->cap);
		}
		if (o->len > 0)
			memcpy(s->buf, o->data, (size_t)o->len);
		free(o->data);
		o->data = NULL;
	}
	if (o->rc != 0)
		return o->rc;
	/* A GET or STATS answered without its bytes: the callers would take
	 * len bytes from a buffer that holds none. */
	if (s->want_data && o->body == OM_BODY_NONE)
		return fail(c, OM_EPROTO, "a response without the bytes it announces");
	return 0;
}

/*
 * The exchange: a list of requests run through the connection, pipelined
 * up to the listener's in-flight limit, with the retry rules in one place
 * for single calls and batches alike:
 *  - a request not wholly sent (the daemon had closed: EPIPE) was not
 *    taken and goes again;
 *  - after a GOAWAY, every request sent and not answered before it was not
 *    processed and goes again on a new connection;
 *  - a connection that ends without GOAWAY (a worker died) leaves the
 *    outcome of the requests in flight unknown: each is repeated once,
 *    if it is repeatable;
 *  - a request that broke the protocol fails, the connection is dropped,
 *    and the others in flight are repeated as after a lost connection.
 * A send that fails does not end a round: the answers the daemon sent
 * before it closed (and its GOAWAY) are read first, so that what was
 * answered is kept and what was not is known.
 * Four rounds in a row that answer nothing end it (-OM_EIO).
 */
typedef struct {
	uint8_t *enc;           /* the encoded request (header, URI, metadata) */
	size_t enc_len;
	struct iovec body;      /* a PUT's bytes, sent after it */
	int send_fd;            /* a descriptor to send with the header, or -1 */
	uint32_t id;            /* the id it was last sent with */
	bool repeatable;        /* may be repeated after a lost connection */
	sink_t *s;              /* where the response goes */
	int rc;                 /* XR_PENDING, XR_FLIGHT, or the outcome */
	unsigned lost;          /* lost connections while in flight */
	size_t bytes;           /* request and body */
} xreq_t;

#define XR_PENDING 1
#define XR_FLIGHT 2
#define XR_IOV_MAX 64

/* Encodes rq (om_request_encode: the one encoder) for the exchange; its
 * id is set at each send. A failure to encode is its outcome. */
static void
xreq_init(om_client_t *c, xreq_t *x, const om_request_t *rq, const void *body, size_t body_len,
    int send_fd, sink_t *s)
{
	size_t cap = OM_REQUEST_OVERHEAD + (rq->uri ? strlen(rq->uri) : 0) + rq->meta_len;
	int len;

	memset(x, 0, sizeof(*x));
	x->send_fd = send_fd;
	x->repeatable = true;
	x->s = s;
	x->rc = XR_PENDING;
	x->body = (struct iovec){ (void *)body, body_len };
	if ((x->enc = malloc(cap)) == NULL) {
		x->rc = fail(c, OM_ENOMEM, "out of memory");
		return;
	}
	len = om_request_encode(rq, x->enc, cap);
	if (len < 0) {
		x->rc = fail(c, OM_EINVAL, "bad request (URI, flags or metadata)");
		return;
	}
	x->enc_len = (size_t)len;
	x->bytes = x->enc_len + body_len;
}

static void
xreq_release(xreq_t *x)
{
	free(x->enc);
	x->enc = NULL;
}

/* Sends pending requests from *next on, at most `room`, in one sendmsg
 * (one that carries a descriptor leads its own). fl gets the indices of
 * those wholly sent, *nfl their count. */
static int
send_some(om_client_t *c, xreq_t *x, unsigned n, unsigned *next, unsigned room, unsigned *fl,
    unsigned *nfl)
{
	struct iovec iov[XR_IOV_MAX];
	unsigned batch[XR_IOV_MAX], nb = 0;
	int cnt = 0, fd = -1, rc;
	size_t sent, at = 0;

	for (unsigned i = *next; i < n && nb < room && cnt + 2 <= XR_IOV_MAX; i++) {
		xreq_t *r = &x[i];

		if (r->rc != XR_PENDING)
			continue;
		if (r->send_fd >= 0) {
			if (nb > 0)
				break;
			fd = r->send_fd;
		}
		r->id = new_id(c);
		om_le32(r->enc + 4, r->id);
		iov[cnt++] = (struct iovec){ r->enc, r->enc_len };
		if (r->body.iov_len > 0)
			iov[cnt++] = r->body;
		batch[nb++] = i;
		if (fd >= 0)
			break;
	}
	if (nb == 0) {
		*next = n;
		return 0;
	}
	rc = send_all(c, iov, cnt, fd, &sent);
	/* Only whole requests were taken; the rest stays pending. */
	for (unsigned k = 0; k < nb; k++) {
		xreq_t *r = &x[batch[k]];

		at += r->bytes;
		if (at > sent)
			break;
		r->rc = XR_FLIGHT;
		fl[(*nfl)++] = batch[k];
	}
	*next = batch[nb - 1] + 1;
	return rc;
}

static int
exchange(om_client_t *c, xreq_t *x, unsigned n)
{
	unsigned left = 0, idle_rounds = 0, *fl;
	int rc = 0;

	for (unsigned i = 0; i < n; i++)
		left += x[i].rc == XR_PENDING;
	if (left == 0)
		return 0;
	if ((fl = malloc(n * sizeof(*fl))) == NULL)
		return fail(c, OM_ENOMEM, "out of memory");
	while (left > 0) {
		unsigned window, next = 0, head = 0, nfl = 0, answered = 0;
		bool send_failed = false, drop = false;

		if (idle_rounds >= 4) {
			char why[sizeof(c->msg)];

			memcpy(why, c->msg, sizeof(why));
			rc = fail(c, OM_EIO, "the daemon keeps going away (%s)", why);
			break;
		}
		if (c->fd < 0 || c->goaway) {
			if ((rc = reconnect(c)) != 0)
				break;
		}
		window = c->caps.max_pipeline ? c->caps.max_pipeline : 1;
		for (;;) {
			xreq_t *r;
			int got;

			if (!send_failed && next < n && nfl - head < window) {
				got = send_some(c, x, n, &next, window - (nfl - head), fl, &nfl);
				if (got == -OM_ETIMEDOUT) {
					/* The handle's bound: no retry (the connection is closed). */
					rc = got;
					break;
				}
				send_failed = got != 0;
				continue;
			}
			if (head == nfl)
				break;
			/* The answer to the oldest request in flight. */
			r = &x[fl[head]];
			got = next_resp(c, &r->s->o);
			if (got == 0 && r->s->o.op == OM_OP_GOAWAY) {
				/* Not processed: all in flight goes again. */
				drop = true;
				break;
			}
			if (got == 0 && r->s->o.id != r->id)
				got = fail(c, OM_EPROTO, "response for request %u, expected %u",
				    r->s->o.id, r->id);
			if (got == 0)
				got = finish(c, r->s);
			if (got == -OM_ETIMEDOUT) {
				rc = got;
				break;
			}
			if (got == -OM_EIO || got == -OM_EPROTO) {
				if (got == -OM_EPROTO) {
					r->rc = got;
					left--;
					head++;
				}
				/* The rest in flight: outcome unknown. */
				for (unsigned k = head; k < nfl; k++) {
					xreq_t *u = &x[fl[k]];

					if (!u->repeatable || u->lost++ > 0) {
						u->rc = got == -OM_EPROTO ? -OM_EIO : got;
						left--;
					}
				}
				drop = true;
				break;
			}
			r->rc = got;
			left--;
			head++;
			answered++;
		}
		if (rc != 0)
			break;
		/* What was not answered (and did not just fail) goes again. */
		for (unsigned k = head; k < nfl; k++)
			if (x[fl[k]].rc == XR_FLIGHT) {
				sink_release(x[fl[k]].s);
				x[fl[k]].rc = XR_PENDING;
				c->retries++;
			}
		if (drop || send_failed)
			disconnect(c);
		idle_rounds = answered > 0 ? 0 : idle_rounds + 1;
	}
	for (unsigned i = 0; rc < 0 && i < n; i++)
		if (x[i].rc == XR_PENDING || x[i].rc == XR_FLIGHT)
			x[i].rc = rc;
	free(fl);
	return rc;
}

/* One request over the connection (UDP: one datagram), with the retry
 * rules of exchange; its outcome. */
static int
call(om_client_t *c, const om_request_t *rq, const void *body, size_t body_len, int send_fd,
    sink_t *s)
{
	xreq_t x;
	int rc;

	if (c->put_open)
		return fail(c, OM_EINVAL, "a streamed PUT is in progress on this handle");
	if (c->transport == OM_TRANSPORT_UDP && (c->fd < 0 && (rc = reconnect(c)) != 0))
		return rc;
	xreq_init(c, &x, rq, body, body_len, send_fd, s);
	if (x.rc != XR_PENDING) {
		rc = x.rc;
	} else if (c->transport == OM_TRANSPORT_UDP) {
		struct iovec iov[2] = { { x.enc, x.enc_len }, x.body };

		x.id = new_id(c);
		om_le32(x.enc + 4, x.id);
		rc = udp_exchange(c, iov, 2, x.id);
		if (rc == 0)
			rc = next_resp(c, &s->o);
		if (rc == 0)
			rc = finish(c, s);
	} else {
		rc = exchange(c, &x, 1);
		if (rc == 0)
			rc = x.rc;
	}
	xreq_release(&x);
	return rc;
}

static void
obj_from(om_object_t *obj, sink_t *s)
{
	obj->fd = om_response_take_fd(&s->o);
	obj->data = s->o.data;
	obj->len = s->o.len;
	obj->meta = s->o.meta;
	obj->meta_len = s->o.meta_len;
	obj->info = s->o.info;
	s->o.data = s->o.meta = NULL;
}

API int
om_client_get(om_client_t *c, const char *uri, int mode, unsigned flags, om_object_t *obj)
{
	om_request_t rq = { .op = OM_OP_GET, .uri = uri };
	sink_t s;
	size_t len;
	int rc;

	memset(obj, 0, sizeof(*obj));
	obj->fd = -1;
	if ((rc = check_uri(c, uri, &len)) != 0)
		return rc;
	if (mode < OM_MODE_AUTO || mode > OM_MODE_SPLICE ||
	    (flags & ~(unsigned)(OM_GET_WANT_META | OM_GET_NO_TOUCH)) != 0)
		return fail(c, OM_EINVAL, "bad mode or flags");
	rq.flags = (unsigned)mode | flags;
	sink_init(&s, 1, (flags & OM_GET_WANT_META) != 0);
	rc = call(c, &rq, NULL, 0, -1, &s);
	if (rc == 0)
		obj_from(obj, &s);
	sink_release(&s);
	return rc;
}

API void
om_object_free(om_object_t *obj)
{
	if (obj == NULL)
		return;
	if (obj->fd >= 0)
		close(obj->fd);
	free(obj->data);
	free(obj->meta);
	memset(obj, 0, sizeof(*obj));
	obj->fd = -1;
}

API int
om_client_get_fd(om_client_t *c, const char *uri, int *fd, om_info_t *info)
{
	om_object_t o;
	int rc = om_client_get(c, uri, OM_MODE_FDPASS, 0, &o);

	*fd = -1;
	if (rc != 0)
		return rc;
	if (o.fd < 0) {
		om_object_free(&o);
		return fail(c, OM_EPROTO, "fdpass GET answered without a descriptor");
	}
	*fd = o.fd;
	if (info != NULL)
		*info = o.info;
	return 0;
}

API int
om_client_get_buf(om_client_t *c, const char *uri, int mode, void *buf, size_t cap, size_t *len,
    om_info_t *info)
{
	om_request_t rq = { .op = OM_OP_GET, .uri = uri };
	sink_t s;
	size_t ulen;
	int rc;

	if ((rc = check_uri(c, uri, &ulen)) != 0)
		return rc;
	if (mode < OM_MODE_AUTO || mode > OM_MODE_SPLICE)
		return fail(c, OM_EINVAL, "bad mode");
	rq.flags = (unsigned)mode;
	sink_init(&s, 1, 0);
	s.buf = buf;
	s.cap = cap;
	rc = call(c, &rq, NULL, 0, -1, &s);
	if ((rc == 0 || rc == -OM_ERANGE) && info != NULL)
		*info = s.o.info;
	if (rc == 0 && s.o.fd >= 0) {
		/* A descriptor (mode auto, large object): read it here. */
		uint64_t off = 0;

		if (s.o.len > cap) {
			rc = fail(c, OM_ERANGE, "object of %llu bytes, buffer of %zu",
			    (unsigned long long)s.o.len, cap);
		}
		while (rc == 0 && off < s.o.len) {
			ssize_t n = pread(s.o.fd, (char *)buf + off, (size_t)(s.o.len - off), (off_t)off);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				rc = fail(c, OM_EIO, "reading the object's descriptor: %s",
				    n == 0 ? "short file" : strerror(errno));
			else
				off += (uint64_t)n;
		}
	}
	if (rc == 0)
		*len = (size_t)s.o.len;
	sink_release(&s);
	return rc;
}

API int
om_client_get_batch(om_client_t *c, unsigned n, const char *const *uris, int mode, unsigned flags,
    om_object_t *objs, int *rcs)
{
	xreq_t *x = NULL;
	sink_t *s = NULL;
	int rc = 0;

	if (mode < OM_MODE_AUTO || mode > OM_MODE_SPLICE ||
	    (flags & ~(unsigned)(OM_GET_WANT_META | OM_GET_NO_TOUCH)) != 0)
		return fail(c, OM_EINVAL, "bad mode or flags");
	if (c->put_open)
		return fail(c, OM_EINVAL, "a streamed PUT is in progress on this handle");
	if (c->transport == OM_TRANSPORT_UDP) {
		/* A datagram is one request: one at a time. */
		for (unsigned i = 0; i < n; i++) {
			rcs[i] = om_client_get(c, uris[i], mode, flags, &objs[i]);
			if (rcs[i] == -OM_EIO || rcs[i] == -OM_ECONNECT)
				return rcs[i];
		}
		return 0;
	}
	for (unsigned i = 0; i < n; i++) {
		memset(&objs[i], 0, sizeof(objs[i]));
		objs[i].fd = -1;
	}
	x = calloc((size_t)n + 1, sizeof(*x));
	s = malloc(((size_t)n + 1) * sizeof(*s));
	if (x == NULL || s == NULL) {
		rc = fail(c, OM_ENOMEM, "out of memory");
		for (unsigned i = 0; i < n; i++)
			rcs[i] = rc;
		goto out;
	}
	for (unsigned i = 0; i < n; i++) {
		om_request_t rq = { .op = OM_OP_GET, .uri = uris[i], .flags = (unsigned)mode | flags };
		size_t len;
		int r = check_uri(c, uris[i], &len);

		sink_init(&s[i], 1, (flags & OM_GET_WANT_META) != 0);
		if (r != 0) {
			x[i].rc = r;
			continue;
		}
		xreq_init(c, &x[i], &rq, NULL, 0, -1, &s[i]);
	}
	rc = exchange(c, x, n);
	for (unsigned i = 0; i < n; i++) {
		rcs[i] = x[i].rc;
		if (rcs[i] == 0)
			obj_from(&objs[i], &s[i]);
		sink_release(&s[i]);
		xreq_release(&x[i]);
	}
out:
	free(x);
	free(s);
	return rc;
}

static int
check_put_opts(om_client_t *c, const om_put_opts_t *opts)
{
	if (opts != NULL && (opts->meta_len > OM_PROTO_META_MAX || (opts->flags & ~OM_PUT_EPHEMERAL) ||
	    (opts->meta_len > 0 && opts->meta == NULL)))
		return fail(c, OM_EINVAL, "bad metadata length or flags");
	return 0;
}

static void
put_request(om_request_t *rq, const char *uri, uint64_t len, const om_put_opts_t *opts)
{
	memset(rq, 0, sizeof(*rq));
	rq->op = OM_OP_PUT;
	rq->uri = uri;
	rq->body_len = len;
	if (opts != NULL) {
		rq->meta = opts->meta;
		rq->meta_len = opts->meta_len;
		rq->expires = opts->expires;
		rq->flags = opts->flags;
	}
}

API int
om_client_put(om_client_t *c, const char *uri, const void *data, size_t len,
    const om_put_opts_t *opts, om_info_t *info)
{
	om_request_t rq;
	sink_t s;
	size_t ulen;
	int rc;

	if ((rc = check_uri(c, uri, &ulen)) != 0 || (rc = check_put_opts(c, opts)) != 0)
		return rc;
	if (len && data == NULL)
		return fail(c, OM_EINVAL, "no data");
	put_request(&rq, uri, len, opts);
	sink_init(&s, 0, 0);
	rc = call(c, &rq, data, len, -1, &s);
	if (rc == 0 && info != NULL)
		*info = s.o.info;
	sink_release(&s);
	return rc;
}

/* Descriptors do not cross TCP or UDP: the bytes go instead, mapped from
 * the file (or read, if it cannot be mapped). */
static int
put_fd_bytes(om_client_t *c, const char *uri, int fd, uint64_t len, const om_put_opts_t *opts,
    om_info_t *info)
{
	void *p = NULL;
	bool mapped = false;
	int rc;

	if (len > SIZE_MAX / 2)
		return fail(c, OM_EINVAL, "object too large");
	if (len > 0) {
		p = mmap(NULL, (size_t)len, PROT_READ, MAP_SHARED, fd, 0);
		if (p != MAP_FAILED) {
			mapped = true;
		} else if ((p = malloc((size_t)len)) == NULL) {
			return fail(c, OM_ENOMEM, "out of memory for %llu bytes", (unsigned long long)len);
		} else {
			for (size_t got = 0; got < len;) {
				ssize_t n = pread(fd, (char *)p + got, (size_t)len - got, (off_t)got);

				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0) {
					free(p);
					return fail(c, OM_ESOURCE, "reading the descriptor: %s",
					    n == 0 ? "fewer bytes than asked for" : strerror(errno));
				}
				got += (size_t)n;
			}
		}
	}
	rc = om_client_put(c, uri, p, (size_t)len, opts, info);
	if (mapped)
		munmap(p, (size_t)len);
	else
		free(p);
	return rc;
}

API int
om_client_put_fd(om_client_t *c, const char *uri, int fd, uint64_t len, const om_put_opts_t *opts,
    om_info_t *info)
{
	om_request_t rq;
	sink_t s;
	size_t ulen;
	int rc;

	if ((rc = check_uri(c, uri, &ulen)) != 0)
		return rc;
	if (fd < 0)
		return fail(c, OM_EINVAL, "no descriptor");
	if ((rc = check_put_opts(c, opts)) != 0)
		return rc;
	if (c->transport != OM_TRANSPORT_UNIX)
		return put_fd_bytes(c, uri, fd, len, opts, info);
	put_request(&rq, uri, len, opts);
	rq.flags |= OM_PUT_FD;
	sink_init(&s, 0, 0);
	{
		/* No byte moves while the daemon copies: its answer may take
		 * the time of the copy, one more second per 256 KiB (the rule
		 * of the daemon's own request timeout). */
		int saved = c->timeout_ms;
		uint64_t extra = len / (256u * 1024u) * 1000u;

		if (saved > 0) {
			c->timeout_ms = extra > (uint64_t)(INT32_MAX - saved) ? INT32_MAX : saved + (int)extra;
			if (c->fd >= 0)
				apply_timeout(c, c->timeout_ms);
		}
		rc = call(c, &rq, NULL, 0, fd, &s);
		c->timeout_ms = saved;
		if (c->fd >= 0)
			apply_timeout(c, saved);
	}
	if (rc == 0 && info != NULL)
		*info = s.o.info;
	sink_release(&s);
	return rc;
}

/*
 * A streamed PUT: the request header now, the bytes as the caller gets
 * them. The daemon publishes when the last byte is in; a connection lost
 * before that stores nothing, which is what put_abort relies on.
 */
API int
om_client_put_begin(om_client_t *c, const char *uri, uint64_t len, const om_put_opts_t *opts)
{
	uint8_t h[OM_REQUEST_OVERHEAD + OM_PROTO_URI_MAX + OM_PROTO_META_MAX];
	om_request_t rq;
	size_t ulen;
	int rc, n;

	if (c->put_open)
		return fail(c, OM_EINVAL, "a streamed PUT is in progress on this handle");
	if ((rc = check_uri(c, uri, &ulen)) != 0 || (rc = check_put_opts(c, opts)) != 0)
		return rc;
	if (c->transport == OM_TRANSPORT_UDP)
		return fail(c, OM_EINVAL, "a streamed PUT needs a stream socket, not UDP");
	put_request(&rq, uri, len, opts);
	for (int round = 0; round < 2; round++) {
		struct pollfd p = { c->fd, POLLIN, 0 };
		struct iovec iov;

		/* Nothing is due on an idle connection: anything readable is a
		 * GOAWAY or the end of it (idle timeout, reload). */
		if (c->fd >= 0 && !c->goaway && poll(&p, 1, 0) > 0)
			disconnect(c);
		if ((c->fd < 0 || c->goaway) && (rc = reconnect(c)) != 0)
			return rc;
		rq.id = new_id(c);
		if ((n = om_request_encode(&rq, h, sizeof(h))) < 0)
			return fail(c, OM_EINVAL, "bad request (URI, flags or metadata)");
		iov = (struct iovec){ h, (size_t)n };
		c->refused = 0;
		rc = send_all(c, &iov, 1, -1, NULL);
		if (rc == 0) {
			c->put_open = 1;
			c->put_left = len;
			c->put_id = rq.id;
			return 0;
		}
		if (rc != -OM_EIO || !c->refused)
			break;
		/* The daemon had closed the connection: none of it was taken. */
		disconnect(c);
		c->retries++;
	}
	disconnect(c);
	return rc;
}

API int
om_client_put_write(om_client_t *c, const void *data, size_t len)
{
	struct iovec iov;
	int rc;

	if (!c->put_open)
		return fail(c, OM_EINVAL, "no streamed PUT in progress");
	if (len > c->put_left) {
		rc = fail(c, OM_EINVAL, "%zu bytes for a PUT that takes %llu more", len,
		    (unsigned long long)c->put_left);
		disconnect(c);
		return rc;
	}
	if (len == 0)
		return 0;
	iov = (struct iovec){ (void *)data, len };
	if ((rc = send_all(c, &iov, 1, -1, NULL)) != 0) {
		disconnect(c);
		return rc;
	}
	c->put_left -= len;
	return 0;
}

API int
om_client_put_end(om_client_t *c, om_info_t *info)
{
	sink_t s;
	int rc;

	if (!c->put_open)
		return fail(c, OM_EINVAL, "no streamed PUT in progress");
	if (c->put_left != 0) {
		rc = fail(c, OM_EINVAL, "the PUT still lacks %llu bytes", (unsigned long long)c->put_left);
		disconnect(c);
		return rc;
	}
	c->put_open = 0;
	sink_init(&s, 0, 0);
	rc = next_resp(c, &s.o);
	if (rc == 0 && s.o.op == OM_OP_GOAWAY)
		rc = fail(c, OM_EIO, "the daemon went away before the PUT (%s)", c->msg);
	else if (rc == 0 && s.o.id != c->put_id)
		rc = fail(c, OM_EPROTO, "response for request %u, expected %u", s.o.id, c->put_id);
	if (rc == 0)
		rc = finish(c, &s);
	if (rc == 0 && info != NULL)
		*info = s.o.info;
	else if (rc == -OM_EIO || rc == -OM_EPROTO)
		disconnect(c);
	sink_release(&s);
	return rc;
}

API void
om_client_put_abort(om_client_t *c)
{
	if (c != NULL && c->put_open)
		disconnect(c);
}

static int
simple(om_client_t *c, int op, const char *uri, unsigned flags, sink_t *s)
{
	om_request_t rq = { .op = op, .uri = uri, .flags = flags };
	size_t ulen = 0;
	int rc;

	if (uri != NULL && (rc = check_uri(c, uri, &ulen)) != 0)
		return rc;
	return call(c, &rq, NULL, 0, -1, s);
}

API int
om_client_delete(om_client_t *c, const char *uri)
{
	sink_t s;
	int rc;

	sink_init(&s, 0, 0);
	if (uri == NULL)
		return fail(c, OM_EINVAL, "no URI");
	rc = simple(c, OM_OP_DELETE, uri, 0, &s);
	sink_release(&s);
	return rc;
}

API int
om_client_stat(om_client_t *c, const char *uri, unsigned flags, om_info_t *info, void **meta,
    uint32_t *meta_len)
{
	sink_t s;
	int rc;

	if (flags & ~(unsigned)OM_GET_WANT_META)
		return fail(c, OM_EINVAL, "bad flags");
	if (uri == NULL)
		return fail(c, OM_EINVAL, "no URI");
	sink_init(&s, 0, meta != NULL);
	rc = simple(c, OM_OP_STAT, uri, flags, &s);
	if (rc == 0) {
		if (info != NULL)
			*info = s.o.info;
		if (meta != NULL) {
			*meta = s.o.meta;
			s.o.meta = NULL;
		}
		if (meta_len != NULL)
			*meta_len = s.o.meta_len;
	}
	sink_release(&s);
	return rc;
}

API int
om_client_verify(om_client_t *c, const char *uri, om_info_t *info)
{
	sink_t s;
	int rc;

	sink_init(&s, 0, 0);
	rc = simple(c, OM_OP_VERIFY, uri, 0, &s);
	if (rc == 0 && info != NULL && uri != NULL)
		*info = s.o.info;
	sink_release(&s);
	return rc;
}

API int
om_client_stats(om_client_t *c, char **text)
{
	return om_client_stats_ex(c, 0, text);
}

API int
om_client_stats_ex(om_client_t *c, unsigned flags, char **text)
{
	sink_t s;
	int rc;

	*text = NULL;
	sink_init(&s, 1, 0);
	rc = simple(c, OM_OP_STATS, NULL, flags, &s);
	/* The text comes inline: a descriptor instead leaves data NULL and
	 * len anything. */
	if (rc == 0 && s.o.body != OM_BODY_INLINE)
		rc = fail(c, OM_EPROTO, "STATS answered without its text");
	if (rc == 0) {
		/* NOLINTNEXTLINE(clang-analyzer-optin.portability.UnixAPI): the decoder refused len > PTRDIFF_MAX - 1 */
		char *t = realloc(s.o.data, (size_t)s.o.len + 1);

		if (t == NULL) {
			sink_release(&s);
			return fail(c, OM_ENOMEM, "out of memory");
		}
		t[s.o.len] = '\0';
		*text = t;
		s.o.data = NULL;
	}
	sink_release(&s);
	return rc;
}

API int
om_client_ping(om_client_t *c)
{
	sink_t s;
	int rc;

	sink_init(&s, 0, 0);
	rc = simple(c, OM_OP_PING, NULL, 0, &s);

	sink_release(&s);
	return rc;
}

/* ---- listing and purging ------------------------------------------------- */

static int
check_prefix(om_client_t *c, const char *prefix, int need)
{
	size_t len = prefix != NULL ? strlen(prefix) : 0;
	const char *why;

	if (need && len == 0)
		return fail(c, OM_EINVAL, "an empty prefix (it would purge every object)");
	why = om_proto_prefix_error(prefix, len, c->caps.max_uri ? c->caps.max_uri : OM_PROTO_URI_MAX);
	if (why != NULL)
		return fail(c, OM_EINVAL, "%s", why);
	return 0;
}

API int
om_client_list_page(om_client_t *c, const char *prefix, uint64_t *cursor, om_list_fn fn, void *arg)
{
	om_request_t rq = { .op = OM_OP_LIST, .uri = prefix != NULL && *prefix ? prefix : NULL };
	uint64_t next = 0;
	sink_t s;
	int rc;

	if ((rc = check_prefix(c, prefix, 0)) != 0)
		return rc;
	rq.cursor = *cursor;
	sink_init(&s, 1, 0);
	rc = call(c, &rq, NULL, 0, -1, &s);
	if (rc == 0) {
		/* The page was read whole: fn may take its time (or call the
		 * library again) without holding anything up. */
		rc = om_response_list(&s.o, &next, fn, arg);
		if (rc == -OM_EPROTO)
			rc = fail(c, OM_EPROTO, "a LIST answer that is not a page");
		else if (rc == 0)
			*cursor = next;
	}
	sink_release(&s);
	return rc;
}

API int
om_client_list(om_client_t *c, const char *prefix, om_list_fn fn, void *arg)
{
	uint64_t cursor = 0;
	int rc;

	do
		rc = om_client_list_page(c, prefix, &cursor, fn, arg);
	while (rc == 0 && cursor != 0);
	return rc;
}

API int
om_client_purge(om_client_t *c, const char *prefix, uint64_t *count)
{
	om_request_t rq = { .op = OM_OP_PURGE, .uri = prefix };
	uint64_t total = 0;
	int rc;

	if (count != NULL)
		*count = 0;
	if ((rc = check_prefix(c, prefix, 1)) != 0)
		return rc;
	/* Each step is one request: none holds the daemon, or this handle's
	 * waits, for longer than a step takes. */
	do {
		uint64_t n = 0;
		sink_t s;

		sink_init(&s, 1, 0);
		rc = call(c, &rq, NULL, 0, -1, &s);
		if (rc == 0) {
			rc = om_response_purge(&s.o, &rq.cursor, &n);
			if (rc != 0)
				rc = fail(c, OM_EPROTO, "a PURGE answer that is not a step");
			total += n;
		}
		sink_release(&s);
	} while (rc == 0 && rq.cursor != 0);
	if (count != NULL)
		*count = total;
	return rc;
}
