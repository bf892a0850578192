/*
 * TCP and UDP listeners and who may do what: the real daemon with a Unix,
 * a TCP (IPv4 and IPv6) and two UDP listeners. Objects travel byte-exact in
 * every mode a transport offers and a mode it does not offer is refused;
 * an error that ends a stream is read whole, then the end of the stream;
 * UDP answers within its datagram and amplification limits and ignores
 * garbage; allow lists are enforced for another uid on the Unix socket and
 * for another loopback address (127.0.0.2) over TCP and UDP, each refusal
 * answered DENIED, counted, and changing nothing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "om_daemon.h"
#include "om_test.h"
#include "proto/om_proto.h"

static om_daemon_t D;
static int tcp_port, udp_port, tcp2_port, udp2_port;
static char tcp_addr[64], tcp6_addr[64], udp_addr[64];

static void
write_conf(const char *acl_unix, const char *acl_tcp, const char *acl_udp)
{
	char extra[3000];

	snprintf(extra, sizeof(extra),
	    "mode = 0666\n%s\n"
	    "[listen.tcp]\ntype = tcp\naddress = 127.0.0.1\nport = %d\n%s\n"
	    "[listen.tcp6]\ntype = tcp\naddress = ::1\nport = %d\n"
	    "[listen.any]\ntype = tcp\naddress = 0.0.0.0\nport = %d\n%s\n"
	    "[listen.udp]\ntype = udp\naddress = 0.0.0.0\nport = %d\nmax_datagram = 8192\n%s\n"
	    "[listen.udp1472]\ntype = udp\nport = %d\n",
	    acl_unix, tcp_port, acl_tcp, tcp_port, tcp2_port, acl_tcp, udp_port, acl_udp, udp2_port);
	om_daemon_write_conf(&D, 2, extra);
}

static int
setup(void **state)
{
	tcp_port = om_test_free_port();
	tcp2_port = om_test_free_port();
	udp_port = om_test_free_port();
	udp2_port = om_test_free_port();
	snprintf(tcp_addr, sizeof(tcp_addr), "tcp://127.0.0.1:%d", tcp_port);
	snprintf(tcp6_addr, sizeof(tcp6_addr), "tcp://[::1]:%d", tcp_port);
	snprintf(udp_addr, sizeof(udp_addr), "udp://127.0.0.1:%d", udp_port);
	om_daemon_init(&D, 2, "");
	write_conf("", "allow_write = 127.0.0.1 ::1", "allow_write = 127.0.0.1");
	om_daemon_start(&D);
	*state = &D;
	return 0;
}

static uint8_t *
pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n ? n : 1);

	assert_non_null(p);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
	return p;
}

/* ---- TCP ---------------------------------------------------------------- */

static void
test_tcp_modes(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 65536, 65537, 1u << 20, 64u << 20 };
	om_client_t *c = om_test_connect(tcp_addr, 0), *c6 = om_test_connect(tcp6_addr, 0);
	const om_caps_t *caps = om_client_caps(c);

	(void)state;
	assert_int_equal(caps->transport, OM_TRANSPORT_TCP);
	assert_int_equal(caps->modes, 1u << OM_MODE_AUTO | 1u << OM_MODE_COPY | 1u << OM_MODE_SPLICE);
	assert_int_equal(om_client_caps(c6)->transport, OM_TRANSPORT_TCP);
	for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
		uint8_t *data = pattern(sizes[i], (unsigned)i);
		char uri[64];
		om_info_t info;

		snprintf(uri, sizeof(uri), "/tcp/%zu", sizes[i]);
		assert_int_equal(om_client_put(c, uri, data, sizes[i], NULL, &info), 0);
		assert_int_equal(info.size, sizes[i]);
		for (int mode = OM_MODE_AUTO; mode <= OM_MODE_SPLICE; mode++) {
			om_object_t o;

			if (mode == OM_MODE_FDPASS)
				continue;
			assert_int_equal(om_client_get(i % 2 ? c6 : c, uri, mode, 0, &o), 0);
			assert_int_equal(o.fd, -1);
			assert_int_equal(o.len, sizes[i]);
			assert_true(sizes[i] == 0 || memcmp(o.data, data, sizes[i]) == 0);
			om_object_free(&o);
		}
		free(data);
	}
	/* Descriptors do not cross TCP: a clear status, and the connection
	 * goes on. */
	{
		int fd = -1;

		assert_int_equal(om_client_get_fd(c, "/tcp/1", &fd, NULL), -OM_STATUS_MODE_UNSUPPORTED);
		assert_non_null(strstr(om_client_message(c), "not supported on this transport"));
		assert_int_equal(fd, -1);
		assert_int_equal(om_client_ping(c), 0);
	}
	/* put_fd over TCP sends the bytes. */
	{
		char tmpl[] = "/tmp/om-net-XXXXXX";
		int fd = mkstemp(tmpl);
		uint8_t *data = pattern(300000, 7);
		om_object_t o;

		assert_true(fd >= 0);
		unlink(tmpl);
		assert_int_equal(write(fd, data, 300000), 300000);
		assert_int_equal(om_client_put_fd(c, "/tcp/fromfd", fd, 300000, NULL, NULL), 0);
		assert_int_equal(om_client_get(c6, "/tcp/fromfd", OM_MODE_SPLICE, 0, &o), 0);
		assert_int_equal(o.len, 300000);
		assert_memory_equal(o.data, data, 300000);
		om_object_free(&o);
		close(fd);
		free(data);
	}
	/* A batch is pipelined over TCP as over Unix. */
	{
		const char *uris[3] = { "/tcp/1", "/tcp/none", "/tcp/4096" };
		om_object_t objs[3];
		int rcs[3];

		assert_int_equal(om_client_get_batch(c, 3, uris, OM_MODE_AUTO, 0, objs, rcs), 0);
		assert_int_equal(rcs[0], 0);
		assert_int_equal(rcs[1], -OM_STATUS_NOT_FOUND);
		assert_int_equal(rcs[2], 0);
		assert_int_equal(objs[2].len, 4096);
		om_object_free(&objs[0]);
		om_object_free(&objs[2]);
	}
	om_client_close(c);
	om_client_close(c6);
}

/*
 * An error that ends a stream connection, with more of the client's bytes
 * on the way: a GET that announces a body (not to be trusted: answered and
 * closed), then 200 KB the server never parses. The server lingers: the
 * client reads the whole answer and then the end of the stream, not a
 * reset (which over a real network can destroy the answer unread).
 */
static void
error_close_lingers(int fd, const char *what)
{
	static uint8_t buf[OM_REQ_HDR_LEN + 200000];
	om_req_t q = { .version = 1, .op = OM_OP_GET, .id = 41, .flags = OM_MODE_COPY, .uri_len = 6,
		.body_len = 1000 };
	size_t sent = 0;
	uint8_t h[OM_RESP_HDR_LEN];
	char msg[256], ch;
	struct pollfd p = { fd, POLLIN, 0 };
	om_resp_t r;
	ssize_t n;

	memset(buf, 'x', sizeof(buf));
	om_proto_put_req(buf, &q);
	memcpy(buf + OM_REQ_HDR_LEN, "/tcp/1", 6);
	/* As much as the sockets take: what the server does not read stays in
	 * its receive queue. */
	while (sent < sizeof(buf)) {
		n = send(fd, buf + sent, sizeof(buf) - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n <= 0)
			break;
		sent += (size_t)n;
	}
	if (sent <= 100000)
		fail_msg("%s: only %zu bytes sent", what, sent);
	/* Let the server answer and end the connection before reading. */
	assert_int_equal(poll(&p, 1, 5000), 1);
	usleep(300 * 1000);
	n = recv(fd, h, sizeof(h), MSG_WAITALL);
	if (n < 0)
		fail_msg("%s: the answer's header was lost: %s", what, strerror(errno));
	assert_int_equal(n, OM_RESP_HDR_LEN);
	assert_int_equal(om_proto_get_resp(h, &r), 0);
	assert_int_equal(r.id, 41);
	assert_int_equal(r.status, OM_STATUS_BAD_REQUEST);
	assert_true(r.msg_len > 0 && r.msg_len < sizeof(msg));
	assert_int_equal(recv(fd, msg, r.msg_len, MSG_WAITALL), r.msg_len);
	msg[r.msg_len] = '\0';
	assert_string_equal(msg, "GET takes no body");
	/* Then the end of the stream, not a reset. */
	n = recv(fd, &ch, 1, 0);
	if (n < 0)
		fail_msg("%s: after the answer: %s, not the end of the stream", what, strerror(errno));
	assert_int_equal(n, 0);
	close(fd);
}

static void
test_error_close_lingers(void **state)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)tcp_port) };
	struct sockaddr_un su = { .sun_family = AF_UNIX };
	int fd;

	(void)state;
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	error_close_lingers(fd, "TCP");
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_true(strlen(D.sock) < sizeof(su.sun_path));
	memcpy(su.sun_path, D.sock, strlen(D.sock));
	assert_int_equal(connect(fd, (struct sockaddr *)&su, sizeof(su)), 0);
	error_close_lingers(fd, "Unix");
}

/* OFFSET_READS asks for descriptors from the server's cache: granted over
 * Unix, where descriptors cross; over TCP and UDP none do, and HELLO's
 * answer says nothing was granted (flags 0). */
static void
test_offset_reads_net(void **state)
{
	const char *addrs[3] = { D.sock, tcp_addr, udp_addr };

	(void)state;
	for (int i = 0; i < 3; i++) {
		om_client_t *c = om_test_connect(addrs[i], OM_CLIENT_OFFSET_READS);
		const om_caps_t *caps = om_client_caps(c);

		if (caps->shared_descriptions != (i == 0))
			fail_msg("%s: shared descriptions %s", addrs[i],
			    caps->shared_descriptions ? "granted" : "refused");
		assert_int_equal(om_client_ping(c), 0);
		om_client_close(c);
	}
}

/* ---- UDP ---------------------------------------------------------------- */

static int
udp_socket(const char *src)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	inet_pton(AF_INET, src, &sa.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	sa.sin_port = htons((uint16_t)udp_port);
	inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* One request datagram of `total` bytes (frame, then zero padding);
 * returns the answer's length, or -1 if none came within 500 ms. */
static ssize_t
udp_ask(int fd, uint8_t op, uint32_t id, uint32_t flags, const char *uri, const void *body,
    size_t body_len, size_t total, uint8_t *ans, size_t cap)
{
	uint8_t dg[70000] = { 0 };
	om_req_t q = { .version = 1, .op = op, .id = id, .flags = flags, .body_len = body_len };
	size_t ulen = uri ? strlen(uri) : 0, len = OM_REQ_HDR_LEN + ulen + body_len;
	struct pollfd p = { fd, POLLIN, 0 };

	q.uri_len = (uint16_t)ulen;
	om_proto_put_req(dg, &q);
	if (ulen)
		memcpy(dg + OM_REQ_HDR_LEN, uri, ulen);
	if (body_len)
		memcpy(dg + OM_REQ_HDR_LEN + ulen, body, body_len);
	if (total < len)
		total = len;
	assert_int_equal(send(fd, dg, total, 0), (ssize_t)total);
	if (poll(&p, 1, 500) != 1)
		return -1;
	return recv(fd, ans, cap, 0);
}

static void
test_udp(void **state)
{
	om_client_t *c = om_test_connect(udp_addr, 0), *t = om_test_connect(tcp_addr, 0);
	const om_caps_t *caps = om_client_caps(c);
	uint8_t *small = pattern(5000, 3), ans[70000];
	om_resp_t r;
	om_object_t o;
	om_info_t info;
	ssize_t n;
	int fd;

	(void)state;
	/* HELLO tells the limits; the library pads under them. */
	assert_int_equal(caps->transport, OM_TRANSPORT_UDP);
	assert_int_equal(caps->modes, 1u << OM_MODE_AUTO | 1u << OM_MODE_COPY);
	assert_int_equal(caps->max_datagram, 8192);
	assert_int_equal(caps->amplification, 3);
	assert_int_equal(caps->max_pipeline, 1);

	/* Every operation. */
	assert_int_equal(om_client_put(c, "/udp/a", small, 5000, NULL, &info), 0);
	assert_int_equal(info.size, 5000);
	assert_int_equal(om_client_get(c, "/udp/a", OM_MODE_AUTO, 0, &o), 0);
	assert_int_equal(o.len, 5000);
	assert_memory_equal(o.data, small, 5000);
	om_object_free(&o);
	assert_int_equal(om_client_get(t, "/udp/a", OM_MODE_COPY, 0, &o), 0); /* the same store */
	assert_memory_equal(o.data, small, 5000);
	om_object_free(&o);
	assert_int_equal(om_client_stat(c, "/udp/a", 0, &info, NULL, NULL), 0);
	assert_int_equal(info.size, 5000);
	assert_int_equal(om_client_ping(c), 0);
	assert_int_equal(om_client_get(c, "/udp/a", OM_MODE_SPLICE, 0, &o), -OM_STATUS_MODE_UNSUPPORTED);
	assert_int_equal(om_client_get(c, "/udp/a", OM_MODE_FDPASS, 0, &o), -OM_STATUS_MODE_UNSUPPORTED);
	assert_int_equal(om_client_delete(c, "/udp/a"), 0);
	assert_int_equal(om_client_get(c, "/udp/a", OM_MODE_AUTO, 0, &o), -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_delete(c, "/udp/a"), -OM_STATUS_NOT_FOUND);

	/* Too large for a datagram: a clear status, whether stored over TCP
	 * or refused on the way in. */
	{
		uint8_t *big = pattern(9000, 4);

		assert_int_equal(om_client_put(t, "/udp/big", big, 9000, NULL, NULL), 0);
		assert_int_equal(om_client_get(c, "/udp/big", OM_MODE_AUTO, 0, &o), -OM_STATUS_TOO_LARGE);
		assert_non_null(strstr(om_client_message(c), "too large for UDP"));
		assert_int_equal(om_client_put(c, "/udp/big2", big, 9000, NULL, NULL), -OM_STATUS_TOO_LARGE);
		free(big);
	}

	/* A listener of max_datagram 1472: metadata of 1500 bytes leave no
	 * room for an object, and the refusal says so. */
	{
		static uint8_t dg[OM_REQ_HDR_LEN + 7 + 1500 + 1];
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)udp2_port) };
		om_req_t q = { .version = 1, .op = OM_OP_PUT, .id = 85, .uri_len = 7, .meta_len = 1500,
			.body_len = 1 };
		int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
		struct pollfd p = { u, POLLIN, 0 };

		inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
		assert_int_equal(connect(u, (struct sockaddr *)&sa, sizeof(sa)), 0);
		om_proto_put_req(dg, &q);
		memcpy(dg + OM_REQ_HDR_LEN, "/udp/m2", 7);
		memset(dg + OM_REQ_HDR_LEN + 7, 'm', 1501);
		assert_int_equal(send(u, dg, sizeof(dg), 0), (ssize_t)sizeof(dg));
		assert_int_equal(poll(&p, 1, 2000), 1);
		n = recv(u, ans, sizeof(ans) - 1, 0);
		assert_true(n >= (ssize_t)OM_RESP_HDR_LEN);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 85);
		assert_int_equal(r.status, OM_STATUS_TOO_LARGE);
		ans[OM_RESP_HDR_LEN + r.msg_len] = 0;
		assert_non_null(strstr((char *)ans + OM_RESP_HDR_LEN, "too large for UDP: 1 bytes (at most 0 "));
		close(u);
	}

	/* The amplification limit, with raw datagrams: a 39-byte GET of a
	 * 5000-byte object gets a short TOO_LARGE of at most 3 x 39 bytes that
	 * says how far to pad; padded to that, it gets the object. */
	assert_int_equal(om_client_put(t, "/udp/b", small, 5000, NULL, NULL), 0);
	fd = udp_socket("127.0.0.1");
	n = udp_ask(fd, OM_OP_GET, 77, OM_MODE_COPY, "/udp/b", NULL, 0, 0, ans, sizeof(ans));
	assert_true(n >= (ssize_t)OM_RESP_HDR_LEN && n <= 3 * (OM_REQ_HDR_LEN + 6));
	assert_int_equal(om_proto_get_resp(ans, &r), 0);
	assert_int_equal(r.id, 77);
	assert_int_equal(r.status, OM_STATUS_TOO_LARGE);
	assert_true(r.msg_len > 0);
	{
		size_t need = (OM_RESP_HDR_LEN + 5000 + 2) / 3;
		char want[64];

		/* The length comes first, whole, in the few bytes there is room for. */
		snprintf(want, sizeof(want), "pad to %zu bytes", need);
		assert_true(r.msg_len >= strlen(want));
		assert_memory_equal(ans + OM_RESP_HDR_LEN, want, strlen(want));

		n = udp_ask(fd, OM_OP_GET, 78, OM_MODE_COPY, "/udp/b", NULL, 0, need, ans, sizeof(ans));
		assert_int_equal(n, OM_RESP_HDR_LEN + 5000);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 78);
		assert_int_equal(r.status, OM_STATUS_OK);
		assert_memory_equal(ans + OM_RESP_HDR_LEN, small, 5000);
	}
	/* Metadata counts toward "too large for UDP" only when the GET asks
	 * for it: 48 + 8,000 bytes fit the 8,192 of max_datagram, with 500
	 * bytes of metadata they do not. */
	{
		static uint8_t meta[500];
		uint8_t *obj = pattern(8000, 5);
		om_put_opts_t po = { .meta = meta, .meta_len = sizeof(meta) };

		memset(meta, 'm', sizeof(meta));
		assert_int_equal(om_client_put(t, "/udp/meta", obj, 8000, &po, NULL), 0);
		n = udp_ask(fd, OM_OP_GET, 83, OM_MODE_COPY, "/udp/meta", NULL, 0, 8192 / 3 + 1, ans,
		    sizeof(ans));
		assert_int_equal(n, OM_RESP_HDR_LEN + 8000);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.status, OM_STATUS_OK);
		assert_memory_equal(ans + OM_RESP_HDR_LEN, obj, 8000);
		n = udp_ask(fd, OM_OP_GET, 84, OM_MODE_COPY | OM_GET_WANT_META, "/udp/meta", NULL, 0,
		    8192 / 3 + 1, ans, sizeof(ans));
		assert_true(n >= (ssize_t)OM_RESP_HDR_LEN);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.status, OM_STATUS_TOO_LARGE);
		free(obj);
	}
	/* Every answer stays under 3x its request, whatever the request. */
	n = udp_ask(fd, OM_OP_STATS, 79, 0, NULL, NULL, 0, 0, ans, sizeof(ans));
	assert_true(n > 0 && n <= 3 * OM_REQ_HDR_LEN);
	n = udp_ask(fd, OM_OP_PING, 80, 0, NULL, NULL, 0, 0, ans, sizeof(ans));
	assert_int_equal(n, OM_RESP_HDR_LEN);
	/* Garbage, a short datagram, and a frame cut short. */
	assert_int_equal(send(fd, "GET / HTTP/1.0\r\n\r\n", 18, 0), 18);
	assert_int_equal(send(fd, "OM", 2, 0), 2);
	{
		uint8_t junk[64];

		memset(junk, 0x5a, sizeof(junk));
		assert_int_equal(send(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
		n = udp_ask(fd, OM_OP_PING, 81, 0, NULL, NULL, 0, 0, ans, sizeof(ans));
		assert_int_equal(n, OM_RESP_HDR_LEN); /* only the PING was answered */
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 81);
	}
	{
		/* A PUT whose bytes the datagram does not hold: refused, not stored. */
		uint8_t dg[200] = { 0 };
		om_req_t q = { .version = 1, .op = OM_OP_PUT, .id = 82, .uri_len = 8, .body_len = 1000 };

		om_proto_put_req(dg, &q);
		memcpy(dg + OM_REQ_HDR_LEN, "/udp/cut", 8);
		assert_int_equal(send(fd, dg, sizeof(dg), 0), (ssize_t)sizeof(dg));
		assert_true(recv(fd, ans, sizeof(ans), 0) >= (ssize_t)OM_RESP_HDR_LEN);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 82);
		assert_int_equal(r.status, OM_STATUS_BAD_REQUEST);
		assert_int_equal(om_client_stat(t, "/udp/cut", 0, &info, NULL, NULL), -OM_STATUS_NOT_FOUND);
	}
	{
		/* A HELLO whose client name the datagram ends inside of: refused
		 * as any field cut short, with a message (the datagram is long
		 * enough for the capability record's answer to fit). */
		uint8_t dg[OM_REQ_HDR_LEN + 200];
		om_req_t q = { .version = 1, .op = OM_OP_HELLO, .id = 85, .body_len = 256, .arg = 1 };

		om_proto_put_req(dg, &q);
		memset(dg + OM_REQ_HDR_LEN, 'n', 200);
		assert_int_equal(send(fd, dg, sizeof(dg), 0), (ssize_t)sizeof(dg));
		assert_true(recv(fd, ans, sizeof(ans), 0) >= (ssize_t)OM_RESP_HDR_LEN);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 85);
		assert_int_equal(r.op, OM_OP_HELLO);
		assert_int_equal(r.status, OM_STATUS_BAD_REQUEST);
		assert_true(r.msg_len > 0);
		assert_int_equal(r.body_len, 0);
		/* The whole name: answered. */
		q.body_len = 200;
		q.id = 86;
		om_proto_put_req(dg, &q);
		assert_int_equal(send(fd, dg, sizeof(dg), 0), (ssize_t)sizeof(dg));
		assert_true(recv(fd, ans, sizeof(ans), 0) >= (ssize_t)OM_RESP_HDR_LEN);
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 86);
		assert_int_equal(r.status, OM_STATUS_OK);
		assert_true(r.body_len >= OM_HELLO_CAPS_LEN);
	}
	close(fd);
	free(small);
	om_client_close(c);
	om_client_close(t);
}

/* ---- who may do what ---------------------------------------------------- */

static long
stat_value(om_client_t *c, const char *name)
{
	char *text = NULL, *p;
	long v = -1;

	assert_int_equal(om_client_stats(c, &text), 0);
	p = strstr(text, name);
	if (p != NULL && (p == text || p[-1] == '\n'))
		v = strtol(p + strlen(name), NULL, 10);
	free(text);
	return v;
}

/* TCP and UDP from 127.0.0.2, which allow_write does not list. */
static void
test_acl_network(void **state)
{
	struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET };
	om_client_t *c = om_test_connect(tcp_addr, 0);
	uint8_t h[OM_REQ_HDR_LEN + 16], ans[4096];
	long denied0 = stat_value(c, "requests_denied_total ");
	om_resp_t r;
	om_info_t info;
	ssize_t n;
	int fd;

	(void)state;
	assert_int_equal(om_client_put(c, "/acl/net", "secret", 6, NULL, NULL), 0);

	/* TCP: a GET and a PUT from 127.0.0.2, each DENIED with a message; a
	 * PING still answers. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
	assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0);
	inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
	dst.sin_port = htons((uint16_t)tcp2_port);
	assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof(dst)), 0);
	{
		om_req_t q = { .version = 1, .op = OM_OP_GET, .id = 5, .flags = OM_MODE_COPY, .uri_len = 9 };
		om_req_t p = { .version = 1, .op = OM_OP_PUT, .id = 6, .uri_len = 9, .body_len = 3 };
		om_req_t g = { .version = 1, .op = OM_OP_PING, .id = 7 };

		om_proto_put_req(h, &q);
		memcpy(h + OM_REQ_HDR_LEN, "/acl/net", 8);
		memcpy(h + OM_REQ_HDR_LEN + 8, "x", 1); /* "/acl/netx" */
		assert_int_equal(send(fd, h, OM_REQ_HDR_LEN + 9, 0), OM_REQ_HDR_LEN + 9);
		om_proto_put_req(h, &p);
		memcpy(h + OM_REQ_HDR_LEN, "/acl/net2abc", 12);
		assert_int_equal(send(fd, h, OM_REQ_HDR_LEN + 12, 0), OM_REQ_HDR_LEN + 12);
		om_proto_put_req(h, &g);
		assert_int_equal(send(fd, h, OM_REQ_HDR_LEN, 0), OM_REQ_HDR_LEN);
	}
	for (int i = 0; i < 3; i++) {
		size_t got = 0;

		while (got < OM_RESP_HDR_LEN) {
			n = recv(fd, ans + got, OM_RESP_HDR_LEN - got, 0);
			assert_true(n > 0);
			got += (size_t)n;
		}
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 5 + i);
		assert_int_equal(r.status, i < 2 ? OM_STATUS_DENIED : OM_STATUS_OK);
		if (r.msg_len > 0) /* a recv of 0 bytes would wait for more */
			assert_int_equal(recv(fd, ans, r.msg_len, MSG_WAITALL), r.msg_len);
		if (i < 2) {
			ans[r.msg_len] = '\0';
			assert_non_null(strstr((char *)ans, "127.0.0.2 may not"));
		}
	}
	close(fd);
	assert_int_equal(om_client_stat(c, "/acl/net2", 0, &info, NULL, NULL), -OM_STATUS_NOT_FOUND);

	/* UDP: the same from 127.0.0.2; from 127.0.0.1 allowed. */
	fd = udp_socket("127.0.0.2");
	n = udp_ask(fd, OM_OP_GET, 9, OM_MODE_COPY, "/acl/net", NULL, 0, 100, ans, sizeof(ans));
	assert_true(n >= (ssize_t)OM_RESP_HDR_LEN);
	assert_int_equal(om_proto_get_resp(ans, &r), 0);
	assert_int_equal(r.status, OM_STATUS_DENIED);
	n = udp_ask(fd, OM_OP_PUT, 10, 0, "/acl/udp2", "abc", 3, 100, ans, sizeof(ans));
	assert_true(n >= (ssize_t)OM_RESP_HDR_LEN);
	assert_int_equal(om_proto_get_resp(ans, &r), 0);
	assert_int_equal(r.status, OM_STATUS_DENIED);
	close(fd);
	assert_int_equal(om_client_stat(c, "/acl/udp2", 0, &info, NULL, NULL), -OM_STATUS_NOT_FOUND);
	fd = udp_socket("127.0.0.1");
	n = udp_ask(fd, OM_OP_GET, 11, OM_MODE_COPY, "/acl/net", NULL, 0, 100, ans, sizeof(ans));
	assert_int_equal(n, OM_RESP_HDR_LEN + 6);
	assert_int_equal(om_proto_get_resp(ans, &r), 0);
	assert_int_equal(r.status, OM_STATUS_OK);
	assert_memory_equal(ans + OM_RESP_HDR_LEN, "secret", 6);
	close(fd);

	assert_int_equal(stat_value(c, "requests_denied_total "), denied0 + 4);

	/* Read-only for 127.0.0.2 after a reload: GET yes, PUT no. */
	write_conf("", "allow_read = 127.0.0.2\nallow_write = 127.0.0.1 ::1",
	    "allow_read = 127.0.0.2/32\nallow_write = 127.0.0.1");
	om_daemon_kill(&D, SIGHUP);
	usleep(500 * 1000);
	fd = udp_socket("127.0.0.2");
	n = udp_ask(fd, OM_OP_GET, 12, OM_MODE_COPY, "/acl/net", NULL, 0, 100, ans, sizeof(ans));
	assert_int_equal(n, OM_RESP_HDR_LEN + 6);
	assert_int_equal(om_proto_get_resp(ans, &r), 0);
	assert_int_equal(r.status, OM_STATUS_OK);
	n = udp_ask(fd, OM_OP_DELETE, 13, 0, "/acl/net", NULL, 0, 100, ans, sizeof(ans));
	assert_true(n >= (ssize_t)OM_RESP_HDR_LEN);
	assert_int_equal(om_proto_get_resp(ans, &r), 0);
	assert_int_equal(r.status, OM_STATUS_DENIED);
	close(fd);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&src, sizeof(src)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&dst, sizeof(dst)), 0);
	{
		om_req_t q = { .version = 1, .op = OM_OP_GET, .id = 14, .flags = OM_MODE_COPY, .uri_len = 8 };
		om_req_t d = { .version = 1, .op = OM_OP_DELETE, .id = 15, .uri_len = 8 };
		size_t got = 0, want = 2 * OM_RESP_HDR_LEN + 6;

		om_proto_put_req(h, &q);
		memcpy(h + OM_REQ_HDR_LEN, "/acl/net", 8);
		assert_int_equal(send(fd, h, OM_REQ_HDR_LEN + 8, 0), OM_REQ_HDR_LEN + 8);
		om_proto_put_req(h, &d);
		assert_int_equal(send(fd, h, OM_REQ_HDR_LEN + 8, 0), OM_REQ_HDR_LEN + 8);
		while (got < want) {
			n = recv(fd, ans + got, sizeof(ans) - got, 0);
			assert_true(n > 0);
			got += (size_t)n;
			if (got >= OM_RESP_HDR_LEN + 6 + OM_RESP_HDR_LEN) {
				om_resp_t d2;

				assert_int_equal(om_proto_get_resp(ans + OM_RESP_HDR_LEN + 6, &d2), 0);
				want = 2 * OM_RESP_HDR_LEN + 6 + d2.msg_len;
			}
		}
		assert_int_equal(om_proto_get_resp(ans, &r), 0);
		assert_int_equal(r.id, 14);
		assert_int_equal(r.status, OM_STATUS_OK);
		assert_memory_equal(ans + OM_RESP_HDR_LEN, "secret", 6);
		assert_int_equal(om_proto_get_resp(ans + OM_RESP_HDR_LEN + 6, &r), 0);
		assert_int_equal(r.id, 15);
		assert_int_equal(r.status, OM_STATUS_DENIED);
	}
	close(fd);
	/* The refused DELETEs changed nothing. */
	assert_int_equal(om_client_stat(c, "/acl/net", 0, &info, NULL, NULL), 0);
	assert_int_equal(info.size, 6);
	om_client_close(c);
}

/* A child as `nobody` against the Unix socket, where only root writes and
 * nobody's primary group reads. Then a reload that takes the read right
 * away applies to new connections. */
static void
test_acl_unix(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	om_client_t *c;
	char acl[128];
	int status;
	pid_t pid;

	(void)state;
	if (geteuid() != 0 || pw == NULL)
		skip();
	assert_int_equal(chmod(D.dir, 0755), 0);
	snprintf(acl, sizeof(acl), "allow_read = gid:%u\nallow_write = user:root", (unsigned)pw->pw_gid);
	write_conf(acl, "allow_write = 127.0.0.1 ::1", "allow_write = 127.0.0.1");
	om_daemon_kill(&D, SIGHUP);
	usleep(500 * 1000);
	c = om_test_connect(D.sock, 0);
	assert_int_equal(om_client_put(c, "/acl/unix", "root's", 6, NULL, NULL), 0);

	for (int round = 0; round < 2; round++) {
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			om_client_t *n = NULL;
			om_object_t o;
			int rc;

			if (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
				_exit(10);
			if (om_client_connect(D.sock, 0, &n) != 0)
				_exit(11);
			rc = om_client_get(n, "/acl/unix", OM_MODE_FDPASS, 0, &o);
			if (round == 0) {
				/* May read, not write or delete. */
				if (rc != 0 || o.len != 6)
					_exit(12);
				om_object_free(&o);
				if (om_client_put(n, "/acl/unix", "nobody", 6, NULL, NULL) != -OM_STATUS_DENIED)
					_exit(13);
				if (strstr(om_client_message(n), "may not write") == NULL)
					_exit(14);
				if (om_client_delete(n, "/acl/unix") != -OM_STATUS_DENIED)
					_exit(15);
			} else if (rc != -OM_STATUS_DENIED || om_client_ping(n) != 0) {
				_exit(16);
			}
			om_client_close(n);
			_exit(0);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		if (round == 0) {
			/* Reload: nobody may no longer read. */
			write_conf("allow_write = uid:0", "allow_write = 127.0.0.1 ::1", "allow_write = 127.0.0.1");
			om_daemon_kill(&D, SIGHUP);
			usleep(500 * 1000);
		}
	}
	/* Nothing changed: root's bytes are still there. */
	{
		om_client_t *r = om_test_connect(D.sock, 0);
		om_object_t o;

		assert_int_equal(om_client_get(r, "/acl/unix", OM_MODE_COPY, 0, &o), 0);
		assert_memory_equal(o.data, "root's", 6);
		om_object_free(&o);
		om_client_close(r);
	}
	om_client_close(c);
}

/* The CLI reaches TCP and UDP listeners with -H, -p, -u or an address. */
static int
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void
test_cli(void **state)
{
	const char *cli = om_test_program("objmapper");
	char in[300], out[300];
	uint8_t *data = pattern(200000, 9), *back;
	FILE *f;

	(void)state;
	snprintf(in, sizeof(in), "%s/cli.in", D.dir);
	snprintf(out, sizeof(out), "%s/cli.out", D.dir);
	f = fopen(in, "w");
	assert_non_null(f);
	assert_int_equal(fwrite(data, 1, 200000, f), 200000);
	fclose(f);
	/* TCP by -H and -p; by address; IPv6. */
	assert_int_equal(sh("%s -H 127.0.0.1 -p %d put /cli/a %s", cli, tcp_port, in), 0);
	assert_int_equal(sh("%s -p %d get /cli/a %s", cli, tcp_port, out), 0);
	assert_int_equal(sh("cmp -s %s %s", in, out), 0);
	assert_int_equal(sh("%s -s tcp://[::1]:%d -m splice get /cli/a %s", cli, tcp_port, out), 0);
	assert_int_equal(sh("cmp -s %s %s", in, out), 0);
	assert_int_equal(sh("%s -H ::1 -p %d -m copy get /cli/a > %s", cli, tcp_port, out), 0);
	assert_int_equal(sh("cmp -s %s %s", in, out), 0);
	assert_int_equal(sh("%s -p %d -m fdpass get /cli/a %s 2>/dev/null", cli, tcp_port, out), 3);
	/* UDP: small objects; a large one is a clear error. */
	assert_int_equal(sh("head -c 1000 %s | %s -u -p %d put /cli/u", in, cli, udp_port), 0);
	assert_int_equal(sh("%s -u -p %d get /cli/u %s", cli, udp_port, out), 0);
	back = malloc(1000);
	f = fopen(out, "r");
	assert_non_null(f);
	assert_int_equal(fread(back, 1, 1000, f), 1000);
	assert_int_equal(fgetc(f), EOF);
	fclose(f);
	assert_memory_equal(back, data, 1000);
	free(back);
	assert_int_equal(sh("%s -s udp://127.0.0.1:%d get /cli/a %s 2>%s", cli, udp_port, out, in), 3);
	assert_int_equal(sh("grep -q 'too large for UDP' %s", in), 0);
	assert_int_equal(sh("%s -u -p %d delete /cli/u", cli, udp_port), 0);
	assert_int_equal(sh("%s -u -p %d stat /cli/u >/dev/null 2>&1", cli, udp_port), 1);
	/* Usage errors. */
	assert_int_equal(sh("%s -s /x -p 1 ping 2>/dev/null", cli), 2);
	assert_int_equal(sh("%s -p 70000 ping 2>/dev/null", cli), 2);
	assert_int_equal(sh("%s -s tcp://nocolon ping 2>/dev/null", cli), 3);
	free(data);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tcp_modes),
		cmocka_unit_test(test_offset_reads_net),
		cmocka_unit_test(test_error_close_lingers),
		cmocka_unit_test(test_udp),
		cmocka_unit_test(test_acl_network),
		cmocka_unit_test(test_acl_unix),
		cmocka_unit_test(test_cli),
	};

	return cmocka_run_group_tests(tests, setup, om_daemon_teardown);
}
