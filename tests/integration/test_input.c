/*
 * Bad input never costs other clients anything: raw frames on the real
 * daemon's socket (garbage, wrong version, truncated frames, lengths that
 * lie, a URI or metadata over the limit, unknown operations and flags, a
 * descriptor nobody asked for, a client gone in the middle of a PUT, one
 * that sends without reading). Each gets a status with a message or a
 * closed connection, nothing partial is stored, and a well-behaved client
 * is served all along.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"
#include "proto/om_proto.h"

static om_daemon_t D;

static int
setup(void **state)
{
	om_daemon_up(&D, 2, "");
	*state = &D;
	return 0;
}

/* A well-behaved client is served. */
static void
assert_serving(void)
{
	om_client_t *c = NULL;
	om_object_t o;

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/good", "fine", 4, NULL, NULL), 0);
	assert_int_equal(om_client_get(c, "/good", OM_MODE_AUTO, 0, &o), 0);
	assert_int_equal(o.len, 4);
	om_object_free(&o);
	om_client_close(c);
}

static void
assert_absent(const char *uri)
{
	om_client_t *c = NULL;

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_stat(c, uri, 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	om_client_close(c);
}

static void
test_garbage(void **state)
{
	char msg[256] = "";
	om_resp_t r;
	int fd = om_raw_connect_unix(D.sock);
	const char junk[] = "GET / HTTP/1.1\r\nHost: example\r\n\r\n";

	(void)state;
	om_raw_send_all(fd, junk, sizeof(junk) - 1);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	assert_non_null(strstr(msg, "bad magic"));
	om_raw_assert_closed(fd);
	close(fd);
	assert_serving();
}

static void
test_wrong_version(void **state)
{
	uint8_t buf[64];
	char msg[256] = "";
	om_resp_t r;
	int fd = om_raw_connect_unix(D.sock);

	(void)state;
	om_raw_req(buf, OM_OP_PING, 9, 0, NULL, 0, 0);
	buf[2] = 7;
	om_raw_send_all(fd, buf, OM_REQ_HDR_LEN);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_VERSION);
	assert_int_equal(r.id, 9);
	assert_non_null(strstr(msg, "version 7"));
	om_raw_assert_closed(fd);
	close(fd);
	assert_serving();
}

static void
test_truncated_frames(void **state)
{
	uint8_t buf[64];
	int fd;

	(void)state;
	/* Half a header, then gone. */
	fd = om_raw_connect_unix(D.sock);
	om_raw_req(buf, OM_OP_GET, 1, 0, "/x", 0, 0);
	om_raw_send_all(fd, buf, 10);
	close(fd);
	/* A header whose URI never comes. */
	fd = om_raw_connect_unix(D.sock);
	om_raw_req(buf, OM_OP_GET, 1, 0, "/abcdef", 0, 0);
	om_raw_send_all(fd, buf, OM_REQ_HDR_LEN + 2);
	close(fd);
	assert_serving();
}

/* A PUT that says 1 MiB and brings 100 bytes; then the client leaves. */
static void
test_put_lengths_lie(void **state)
{
	uint8_t buf[4096];
	size_t n;
	int fd = om_raw_connect_unix(D.sock);

	(void)state;
	n = om_raw_req(buf, OM_OP_PUT, 1, 0, "/liar", 0, 1 << 20);
	memset(buf + n, 'x', 100);
	om_raw_send_all(fd, buf, n + 100);
	usleep(100000);
	close(fd);
	usleep(100000);
	assert_absent("/liar");
	/* And in the middle of a large body, with a replace in flight: the
	 * old object stays whole. */
	{
		om_client_t *c = NULL;
		om_object_t o;
		static char body[1 << 20];

		assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
		assert_int_equal(om_client_put(c, "/keep", "the old bytes", 13, NULL, NULL), 0);
		fd = om_raw_connect_unix(D.sock);
		n = om_raw_req(buf, OM_OP_PUT, 2, 0, "/keep", 0, 4 << 20);
		om_raw_send_all(fd, buf, n);
		om_raw_send_all(fd, body, sizeof(body));
		close(fd);
		usleep(100000);
		assert_int_equal(om_client_get(c, "/keep", OM_MODE_COPY, 0, &o), 0);
		assert_int_equal(o.len, 13);
		assert_memory_equal(o.data, "the old bytes", 13);
		om_object_free(&o);
		om_client_close(c);
	}
	assert_serving();
}

/*
 * Large bodies, pipelined and interleaved: the rest of a body longer than
 * the input buffer is read into the worker's body buffer (shared by its
 * connections), what follows it into the connection's input buffer. Two
 * connections send their bodies in alternate pieces, one of them with
 * more requests right behind its body in the same sends: every byte of
 * every object is where it belongs.
 */
static void
check_object(om_client_t *c, const char *uri, const uint8_t *want, size_t len)
{
	om_object_t o;

	assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, len);
	assert_memory_equal(o.data, want, len);
	om_object_free(&o);
}

static void
test_large_bodies_interleaved(void **state)
{
	static const size_t lens[] = { (1u << 20) + 12345, 70000, 5, 300000 };
	static const char *const uris[] = { "/big/a1", "/big/a2", "/big/a3", "/big/b1" };
	uint8_t *obj[4], *sa, *sb;
	size_t na = 0, nb = 0, offa = 0, offb = 0;
	int fa = om_raw_connect_unix(D.sock), fb = om_raw_connect_unix(D.sock);
	om_client_t *c = NULL;
	om_resp_t r;

	(void)state;
	sa = malloc((1u << 21) + 4096);
	sb = malloc(400000);
	assert_non_null(sa);
	assert_non_null(sb);
	for (int i = 0; i < 4; i++) {
		obj[i] = malloc(lens[i]);
		assert_non_null(obj[i]);
		om_test_fill(obj[i], lens[i], (uint64_t)i + 40);
	}
	/* Connection a: three PUTs back to back; b: one. */
	for (int i = 0; i < 3; i++) {
		na += om_raw_req(sa + na, OM_OP_PUT, (uint32_t)(i + 1), 0, uris[i], 0, lens[i]);
		memcpy(sa + na, obj[i], lens[i]);
		na += lens[i];
	}
	nb += om_raw_req(sb, OM_OP_PUT, 9, 0, uris[3], 0, lens[3]);
	memcpy(sb + nb, obj[3], lens[3]);
	nb += lens[3];
	/* In alternate pieces of odd sizes, so that bodies and frames are
	 * cut anywhere. */
	while (offa < na || offb < nb) {
		size_t k = offa < na ? (na - offa < 50001 ? na - offa : 50001) : 0;

		om_raw_send_all(fa, sa + offa, k);
		offa += k;
		k = offb < nb ? (nb - offb < 33333 ? nb - offb : 33333) : 0;
		om_raw_send_all(fb, sb + offb, k);
		offb += k;
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(om_raw_read_resp(fa, &r, NULL, 0), 0);
		assert_int_equal(r.status, OM_STATUS_OK);
		assert_int_equal(r.id, (uint32_t)(i + 1));
		assert_int_equal(r.body_len, lens[i]);
	}
	assert_int_equal(om_raw_read_resp(fb, &r, NULL, 0), 0);
	assert_int_equal(r.status, OM_STATUS_OK);
	assert_int_equal(r.id, 9);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	for (int i = 0; i < 4; i++)
		check_object(c, uris[i], obj[i], lens[i]);
	om_client_close(c);
	close(fa);
	close(fb);
	for (int i = 0; i < 4; i++)
		free(obj[i]);
	free(sa);
	free(sb);
	assert_serving();
}

/* Errors a frame can be skipped past: answered, and the connection goes on. */
static void
test_recoverable_errors(void **state)
{
	static uint8_t buf[8192];
	char msg[256], uri[2001];
	om_resp_t r;
	size_t n;
	int fd = om_raw_connect_unix(D.sock);

	(void)state;
	/* URI over the limit (2000 > 1024). */
	memset(uri, 'u', 2000);
	uri[0] = '/';
	uri[2000] = '\0';
	n = om_raw_req(buf, OM_OP_GET, 11, 0, uri, 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_int_equal(r.id, 11);
	/* A URI with a control character, and one with a ".." segment. */
	n = om_raw_req(buf, OM_OP_GET, 12, 0, "/a\tb", 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	n = om_raw_req(buf, OM_OP_DELETE, 13, 0, "/a/../b", 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_non_null(strstr(msg, ".."));
	/* Unknown operation; one with a body is skipped whole. */
	n = om_raw_req(buf, 77, 14, 0, NULL, 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_UNKNOWN_OP);
	n = om_raw_req(buf, 77, 19, 0, "/x", 0, 4);
	memcpy(buf + n, "body", 4);
	om_raw_send_all(fd, buf, n + 4);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_UNKNOWN_OP);
	assert_int_equal(r.id, 19);
	/* Unknown GET flags. */
	n = om_raw_req(buf, OM_OP_GET, 15, 0x4000, "/good", 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	assert_non_null(strstr(msg, "flags"));
	/* Flags on an operation that takes none. */
	n = om_raw_req(buf, OM_OP_PING, 18, 0x1, NULL, 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	assert_int_equal(r.id, 18);
	/* An arg on an operation that takes none (only HELLO, PUT, LIST and
	 * PURGE do): refused as a flag would be, and skipped. */
	{
		static const struct {
			uint8_t op;
			const char *uri;
			int64_t arg;
		} noarg[] = {
			{ OM_OP_PING, NULL, 5 },
			{ OM_OP_GET, "/good", -1 },
			{ OM_OP_STAT, "/good", 1 },
			{ OM_OP_DELETE, "/good", 1 },
			{ OM_OP_STATS, NULL, 1 },
			{ OM_OP_VERIFY, NULL, 1 },
		};

		for (uint32_t i = 0; i < OM_ARRAY_LEN(noarg); i++) {
			om_req_t q;

			n = om_raw_req(buf, noarg[i].op, 30 + i, 0, noarg[i].uri, 0, 0);
			assert_int_equal(om_proto_get_req(buf, &q), 0);
			q.arg = noarg[i].arg;
			om_proto_put_req(buf, &q);
			om_raw_send_all(fd, buf, n);
			assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
			assert_int_equal(r.id, 30 + i);
			if (strstr(msg, "takes no arg") == NULL)
				fail_msg("op %u with arg %lld: \"%s\"", noarg[i].op, (long long)noarg[i].arg, msg);
		}
	}
	/* Metadata over the limit (3000 > 2048), with a body: both skipped. */
	n = om_raw_req(buf, OM_OP_PUT, 16, 0, "/meta", 3000, 10);
	memset(buf + n, 'm', 3010);
	om_raw_send_all(fd, buf, n + 3010);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_META_TOO_LARGE);
	/* The stream is still in step: a PING answers with its id. */
	n = om_raw_req(buf, OM_OP_PING, 17, 0, NULL, 0, 0);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(r.id, 17);
	close(fd);
	assert_absent("/meta");
	assert_serving();
}

/* Errors that leave the stream unusable: answered, then closed. */
static void
test_fatal_errors(void **state)
{
	uint8_t buf[256];
	char msg[256];
	om_resp_t r;
	size_t n;
	int fd;

	(void)state;
	/* A GET with a body cannot be trusted. */
	fd = om_raw_connect_unix(D.sock);
	n = om_raw_req(buf, OM_OP_GET, 21, 0, "/good", 0, 5);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	om_raw_assert_closed(fd);
	close(fd);
	/* Nor its other lengths: a GET with a body and a URI over the limit
	 * is not skipped as a URI_INVALID would be (its header is enough to
	 * tell). */
	{
		static uint8_t big[OM_REQ_HDR_LEN + 2000];
		char uri[2001];

		memset(uri, 'u', 2000);
		uri[0] = '/';
		uri[2000] = '\0';
		fd = om_raw_connect_unix(D.sock);
		om_raw_req(big, OM_OP_GET, 28, 0, uri, 0, 5);
		om_raw_send_all(fd, big, OM_REQ_HDR_LEN);
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
		assert_int_equal(r.id, 28);
		assert_non_null(strstr(msg, "takes no body"));
		om_raw_assert_closed(fd);
		close(fd);
	}
	/* A PUT larger than anything the tiers hold (2G) is not read. */
	fd = om_raw_connect_unix(D.sock);
	n = om_raw_req(buf, OM_OP_PUT, 22, 0, "/huge", 0, 3ull << 30);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_TOO_LARGE);
	om_raw_assert_closed(fd);
	close(fd);
	/* Nor is the body (over 64 MiB) of a PUT refused for its URI's bytes. */
	fd = om_raw_connect_unix(D.sock);
	n = om_raw_req(buf, OM_OP_PUT, 27, 0, "/a b", 0, 100ull << 20);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_int_equal(r.id, 27);
	om_raw_assert_closed(fd);
	close(fd);
	/* A PUT with the FD flag and no descriptor. */
	fd = om_raw_connect_unix(D.sock);
	n = om_raw_req(buf, OM_OP_PUT, 23, OM_PUT_FD, "/nofd", 0, 10);
	om_raw_send_all(fd, buf, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	om_raw_assert_closed(fd);
	close(fd);
	/* A descriptor sent with a PING. */
	{
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(int))];
		} ctl;
		struct msghdr mh = { 0 };
		struct iovec iov;
		struct cmsghdr *cm;
		int devnull = open("/dev/null", O_RDONLY);

		memset(&ctl, 0, sizeof(ctl)); /* the control message's padding too */
		fd = om_raw_connect_unix(D.sock);
		n = om_raw_req(buf, OM_OP_PING, 24, 0, NULL, 0, 0);
		iov.iov_base = buf;
		iov.iov_len = n;
		mh.msg_iov = &iov;
		mh.msg_iovlen = 1;
		mh.msg_control = ctl.b;
		mh.msg_controllen = sizeof(ctl.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &devnull, sizeof(int));
		assert_int_equal(sendmsg(fd, &mh, 0), (ssize_t)n);
		close(devnull);
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
		assert_int_equal(r.op, OM_OP_PING);
		assert_int_equal(r.id, 24);
		/* Not a second answer to the PING: the end of the connection,
		 * naming the last request accepted, and why. */
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
		assert_int_equal(r.op, OM_OP_GOAWAY);
		assert_int_equal(r.id, 24);
		assert_non_null(strstr(msg, "descriptor"));
		om_raw_assert_closed(fd);
		close(fd);
	}
	/* HELLO: arg 0 is version 1; a version below any the server speaks
	 * is VERSION, and VERSION closes the connection. */
	{
		uint8_t caps[OM_HELLO_CAPS_LEN + 64];
		om_req_t q = { .version = 1, .op = OM_OP_HELLO, .id = 25, .arg = 0 };

		fd = om_raw_connect_unix(D.sock);
		om_proto_put_req(buf, &q);
		om_raw_send_all(fd, buf, OM_REQ_HDR_LEN);
		assert_int_equal(om_raw_read_resp_body(fd, &r, msg, sizeof(msg), caps, sizeof(caps)),
		    OM_STATUS_OK);
		assert_int_equal(r.id, 25);
		assert_int_equal(caps[0], 1);
		q.id = 26;
		q.arg = -1;
		om_proto_put_req(buf, &q);
		om_raw_send_all(fd, buf, OM_REQ_HDR_LEN);
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_VERSION);
		assert_int_equal(r.id, 26);
		om_raw_assert_closed(fd);
		close(fd);
	}
	assert_absent("/huge");
	assert_absent("/nofd");
	assert_serving();
}

/*
 * A client that sends GETs of a 1 MiB object and never reads: the worker
 * stops reading it once its answers pile up, keeps its memory bounded and
 * serves everyone else meanwhile.
 */
static void
test_sender_that_never_reads(void **state)
{
	static uint8_t big[1 << 20], buf[256];
	om_client_t *c = NULL;
	pid_t workers[8];
	long before[8], after[8], grown = 0;
	int nw, fd, flags;
	size_t n, sent = 0;

	(void)state;
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/big", big, sizeof(big), NULL, NULL), 0);
	nw = om_daemon_children(&D, workers, 8, "worker process");
	for (int i = 0; i < nw; i++)
		before[i] = om_test_rss_kb(workers[i]);
	fd = om_raw_connect_unix(D.sock);
	flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	n = om_raw_req(buf, OM_OP_GET, 1, OM_MODE_COPY, "/big", 0, 0);
	/* Push requests until the daemon stops taking them (at most 20,000:
	 * 20 GB of answers if it read them all). */
	for (int i = 0; i < 20000; i++) {
		ssize_t w = send(fd, buf, n, MSG_NOSIGNAL);

		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			usleep(20000);
			w = send(fd, buf, n, MSG_NOSIGNAL);
			if (w < 0)
				break;
		}
		assert_true(w == (ssize_t)n);
		sent++;
	}
	assert_true(sent < 20000);
	/* Meanwhile, others are served promptly. */
	for (int i = 0; i < 20; i++) {
		struct timespec t0, t1;
		om_object_t o;

		clock_gettime(CLOCK_MONOTONIC, &t0);
		assert_int_equal(om_client_get(c, "/good", OM_MODE_COPY, 0, &o), 0);
		om_object_free(&o);
		clock_gettime(CLOCK_MONOTONIC, &t1);
		assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 < 1000);
	}
	for (int i = 0; i < nw; i++) {
		after[i] = om_test_rss_kb(workers[i]);
		/* Bounded: the output queue, not the 1 MiB per request asked. */
		assert_true(after[i] - before[i] < 64 * 1024);
		if (after[i] - before[i] > grown)
			grown = after[i] - before[i];
	}
	print_message("a client that never reads: the daemon took %zu requests and stopped; "
	    "worker memory grew by at most %ld KiB\n", sent, grown);
	close(fd);
	om_client_close(c);
	assert_serving();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_wrong_version),
		cmocka_unit_test(test_truncated_frames),
		cmocka_unit_test(test_put_lengths_lie),
		cmocka_unit_test(test_large_bodies_interleaved),
		cmocka_unit_test(test_recoverable_errors),
		cmocka_unit_test(test_fatal_errors),
		cmocka_unit_test(test_sender_that_never_reads),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, om_daemon_teardown);
}
