/*
 * No single client may cost the others a CPU, a stalled worker or a flooded
 * log: connections waiting for the rest of a request cost their worker
 * nothing (HTTP heads cut anywhere, objmapper frames, bodies), bytes that
 * cannot begin an HTTP request are refused at once, a PUT by descriptor of
 * any size leaves the other clients of its worker their latency, and a
 * descriptor that cannot be read is the client's error. Each test starts
 * its own daemon, with one worker, and talks to it with raw bytes.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "om_daemon.h"
#include "om_raw.h"
#include "core/om_core.h"
#include "om_test.h"
#include "proto/om_proto.h"

static om_daemon_t D;
static char http_sock[512];

/* Every listener a test talks to: the objmapper one of the harness and
 * an HTTP one, on Unix sockets; a request may take a minute to arrive. */
#define LISTENERS \
	"request_timeout = 60s\n" \
	"[listen.http]\ntype = http\npath = http.sock\nrequest_timeout = 60s\n"

static int
http_answers(void *arg)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	(void)arg;
	memcpy(sa.sun_path, http_sock, strlen(http_sock) + 1);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void
up(const char *extra)
{
	char conf[2048];

	snprintf(conf, sizeof(conf), "%s%s", LISTENERS, extra ? extra : "");
	om_daemon_init(&D, 1, conf);
	snprintf(http_sock, sizeof(http_sock), "%s/http.sock", D.dir);
	assert_true(strlen(http_sock) < sizeof(((struct sockaddr_un *)0)->sun_path));
	om_daemon_start(&D);
	/* The harness waits for the first listener; this one listens a
	 * moment later. */
	if (!om_wait_until(http_answers, NULL, 5000))
		fail_msg("%s does not answer", http_sock);
}

static int
down(void **state)
{
	(void)state;
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	return 0;
}

/* ---- raw objmapper requests ----------------------------------------------- */

/* PUT of len bytes from a buffer; asserts OK. */
static void
raw_put_flags(int fd, const char *uri, const void *data, size_t len, uint32_t flags)
{
	uint8_t h[OM_REQ_HDR_LEN + 256];
	char msg[256];
	om_resp_t r;

	om_raw_send_all(fd, h, om_raw_req(h, OM_OP_PUT, 1, flags, uri, 0, len));
	om_raw_send_all(fd, data, len);
	if (om_raw_read_resp(fd, &r, msg, sizeof(msg)) != OM_STATUS_OK)
		fail_msg("PUT %s: status %d: %s", uri, r.status, msg);
}

static void
raw_put(int fd, const char *uri, const void *data, size_t len)
{
	raw_put_flags(fd, uri, data, len, 0);
}

/* GET in copy mode: the bytes, compared with want. */
static void
raw_get_check(int fd, const char *uri, const void *want, size_t len)
{
	static uint8_t body[1 << 16];
	uint8_t h[OM_REQ_HDR_LEN + 256];
	char msg[256];
	om_resp_t r;

	assert_true(len <= sizeof(body));
	om_raw_send_all(fd, h, om_raw_req(h, OM_OP_GET, 2, OM_MODE_COPY, uri, 0, 0));
	if (om_raw_read_resp_body(fd, &r, msg, sizeof(msg), body, sizeof(body)) != OM_STATUS_OK)
		fail_msg("GET %s: status %d: %s", uri, r.status, msg);
	assert_int_equal(r.body_len, len);
	assert_memory_equal(body, want, len);
}

/* ---- raw HTTP ------------------------------------------------------------ */

/*
 * Reads one HTTP response within timeout_ms: the head and a body of its
 * Content-Length, into buf (NUL-terminated). Returns its length, or -1 if
 * the connection closed or nothing complete came in time.
 */
static ssize_t
http_read(int fd, char *buf, size_t cap, int timeout_ms)
{
	uint64_t end = om_test_now_ms() + (uint64_t)timeout_ms;
	size_t have = 0;

	buf[0] = '\0';
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		char *eoh = strstr(buf, "\r\n\r\n"), *cl;
		uint64_t t = om_test_now_ms();
		ssize_t n;

		if (eoh != NULL) {
			size_t want = (size_t)(eoh + 4 - buf);

			if ((cl = strcasestr(buf, "\r\nContent-Length: ")) != NULL && cl < eoh)
				want += strtoul(cl + 18, NULL, 10);
			if (have >= want)
				return (ssize_t)have;
		}
		if (have + 1 >= cap || t >= end || poll(&p, 1, (int)(end - t)) != 1)
			return -1;
		n = recv(fd, buf + have, cap - have - 1, 0);
		if (n <= 0)
			return -1;
		have += (size_t)n;
		buf[have] = '\0';
	}
}

/* ---- partial requests cost nothing --------------------------------------- */

#define PARTIALS     100
#define KINDS        5
#define OBJ_LEN      1000

enum { HTTP_MID_LINE, HTTP_BETWEEN_LINES, FRAME_HEADER, FRAME_URI, HTTP_CHUNKED };

static const char *const kind_names[KINDS] = {
	"HTTP head cut mid-line", "HTTP head cut between lines", "frame cut in its header",
	"frame cut in its URI", "HTTP chunked body cut",
};

/* The request of connection i, and where it is cut. */
static size_t
partial_request(unsigned i, uint8_t *buf, size_t *cut)
{
	char uri[32];
	size_t n;

	snprintf(uri, sizeof(uri), "/p/%u", i % 20);
	switch (i % KINDS) {
	case HTTP_MID_LINE:
		n = (size_t)sprintf((char *)buf, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", uri);
		*cut = n - 9; /* "GET ... HTTP/1.1\r\nHo" */
		return n;
	case HTTP_BETWEEN_LINES:
		n = (size_t)sprintf((char *)buf, "GET %s HTTP/1.1\r\nHost: a\r\n\r\n", uri);
		*cut = n - 2;
		return n;
	case FRAME_HEADER:
		n = om_raw_req(buf, OM_OP_GET, i, OM_MODE_COPY, uri, 0, 0);
		*cut = 20;
		return n;
	case FRAME_URI:
		n = om_raw_req(buf, OM_OP_GET, i, OM_MODE_COPY, uri, 0, 0);
		*cut = OM_REQ_HDR_LEN + 2;
		return n;
	default:
		n = (size_t)sprintf((char *)buf, "PUT /c/%u HTTP/1.1\r\nHost: a\r\n"
		    "Transfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", i);
		*cut = n - 10; /* in the chunk's bytes: "5\r\nab" */
		return n;
	}
}

static int
conns_are(void *arg)
{
	int *a = arg;

	return om_raw_stat_value(a[0], "connections_current") == (unsigned long long)a[1];
}

/*
 * 100 connections each hold part of a request: HTTP heads cut in a line
 * and between lines, objmapper frames cut in the header and in the URI,
 * a chunked PUT cut in its body. Their worker must sleep: its CPU time
 * over 3 s stays near zero (a worker that polls them spins at a whole
 * CPU, some 3 s). Then every request is completed and answered.
 */
static void
test_partial_requests_cost_nothing(void **state)
{
	static int fds[PARTIALS];
	static uint8_t obj[20][OBJ_LEN];
	static char resp[8192];
	uint8_t req[512], body[OBJ_LEN];
	long hz = sysconf(_SC_CLK_TCK), t0, t1;
	int ctl, arg[2];
	pid_t w;

	(void)state;
	up(NULL);
	w = om_daemon_only_worker(&D);
	ctl = om_raw_connect_unix(D.sock);
	for (unsigned i = 0; i < 20; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/p/%u", i);
		om_test_fill(obj[i], OBJ_LEN, i + 1);
		raw_put(ctl, uri, obj[i], OBJ_LEN);
	}
	for (unsigned i = 0; i < PARTIALS; i++) {
		size_t cut;

		(void)partial_request(i, req, &cut);
		fds[i] = om_raw_connect_unix(i % KINDS == FRAME_HEADER || i % KINDS == FRAME_URI ?
		    D.sock : http_sock);
		om_raw_send_all(fds[i], req, cut);
	}
	arg[0] = ctl;
	arg[1] = PARTIALS + 1;
	if (!om_wait_until(conns_are, arg, 5000))
		fail_msg("the worker does not hold %d connections", PARTIALS + 1);
	usleep(200 * 1000); /* every part read */
	t0 = om_test_cpu_ticks(w);
	sleep(3);
	t1 = om_test_cpu_ticks(w);
	print_message("worker holding %d partial requests (%d of each: %s, %s, %s, %s, %s): "
	    "%ld ticks of CPU in 3 s (%ld ticks a second)\n", PARTIALS, PARTIALS / KINDS,
	    kind_names[0], kind_names[1], kind_names[2], kind_names[3], kind_names[4], t1 - t0, hz);
	/* A tenth of a CPU at most, where polling them costs all of one. */
	assert_true(t1 - t0 <= 3 * hz / 10);

	/* They were waited for, not dropped: each is answered when whole. */
	for (unsigned i = 0; i < PARTIALS; i++) {
		size_t cut, n = partial_request(i, req, &cut);
		unsigned k = i % KINDS;

		om_raw_send_all(fds[i], req + cut, n - cut);
		if (k == FRAME_HEADER || k == FRAME_URI) {
			om_resp_t r;

			assert_int_equal(om_raw_read_resp_body(fds[i], &r, NULL, 0, body, sizeof(body)),
			    OM_STATUS_OK);
			assert_int_equal(r.id, i);
			assert_int_equal(r.body_len, OBJ_LEN);
			assert_memory_equal(body, obj[i % 20], OBJ_LEN);
		} else {
			ssize_t len = http_read(fds[i], resp, sizeof(resp), 5000);

			if (len < 0)
				fail_msg("%s: no answer once whole", kind_names[k]);
			if (k == HTTP_CHUNKED) {
				char uri[32];

				assert_true(strncmp(resp, "HTTP/1.1 201 ", 13) == 0);
				snprintf(uri, sizeof(uri), "/c/%u", i);
				raw_get_check(ctl, uri, "abcde", 5);
			} else {
				assert_true(strncmp(resp, "HTTP/1.1 200 ", 13) == 0);
				assert_true((size_t)len > OBJ_LEN);
				assert_memory_equal(resp + len - OBJ_LEN, obj[i % 20], OBJ_LEN);
			}
		}
		close(fds[i]);
	}
	close(ctl);
}

/* ---- HTTP: what cannot begin a request is refused at once ----------------- */

/*
 * Bytes that no request line can begin with get 400 (505 for another HTTP
 * version) and the connection's end at once, not after request_timeout
 * (60 s here): an objmapper frame (what the objmapper command sends when
 * pointed at the wrong socket), TLS, and lines broken at each part. Bytes
 * that can still become a request line are waited for.
 */
static void
test_http_refuses_at_once(void **state)
{
	static const struct {
		const char *what;
		const char *bytes;
		size_t len;
		const char *status;
	} cases[] = {
		{ "a TLS ClientHello", "\x16\x03\x01\x02\x00\x01", 6, "400" },
		{ "a tab after the method", "GET\t/x", 6, "400" },
		{ "a control character in the target", "GET /a\x01", 7, "400" },
		{ "a target that is neither a path nor an http URI", "GET x", 5, "400" },
		{ "a bare CR in the target", "GET /x\rH", 8, "400" },
		{ "bytes after the version", "GET /x HTTP/1.1 ", 16, "400" },
		{ "another HTTP version", "GET /x HTTP/2", 13, "505" },
	};
	char buf[4096], want[32];
	uint8_t frame[OM_REQ_HDR_LEN];
	struct pollfd p;
	uint64_t t0;
	int fd;

	(void)state;
	up(NULL);
	for (size_t i = 0; i <= sizeof(cases) / sizeof(cases[0]); i++) {
		const char *what = i < sizeof(cases) / sizeof(cases[0]) ? cases[i].what :
		    "an objmapper HELLO";

		fd = om_raw_connect_unix(http_sock);
		t0 = om_test_now_ms();
		if (i < sizeof(cases) / sizeof(cases[0])) {
			om_raw_send_all(fd, cases[i].bytes, cases[i].len);
			snprintf(want, sizeof(want), "HTTP/1.1 %s ", cases[i].status);
		} else {
			om_raw_send_all(fd, frame, om_raw_req(frame, OM_OP_HELLO, 7, 0, NULL, 0, 0));
			snprintf(want, sizeof(want), "HTTP/1.1 400 ");
		}
		if (http_read(fd, buf, sizeof(buf), 3000) < 0)
			fail_msg("%s: no answer within 3 s", what);
		if (strncmp(buf, want, strlen(want)) != 0 || strstr(buf, "\r\nConnection: close\r\n") == NULL)
			fail_msg("%s: answered\n%s", what, buf);
		print_message("%s: \"%.*s\" after %llu ms\n", what, (int)strcspn(buf, "\r"), buf,
		    (unsigned long long)(om_test_now_ms() - t0));
		om_raw_assert_closed(fd);
		close(fd);
	}

	/* A request line arriving byte by byte, absolute-form, is waited for. */
	{
		static const char line[] = "GET http://h/none HTTP/1.1\r";

		fd = om_raw_connect_unix(http_sock);
		for (size_t i = 0; i < sizeof(line) - 1; i++) {
			om_raw_send_all(fd, line + i, 1);
			usleep(2000);
		}
		p = (struct pollfd){ fd, POLLIN, 0 };
		assert_int_equal(poll(&p, 1, 300), 0);
		om_raw_send_all(fd, "\nHost: a\r\n\r\n", 12);
		assert_true(http_read(fd, buf, sizeof(buf), 3000) > 0);
		assert_true(strncmp(buf, "HTTP/1.1 404 ", 13) == 0);
		close(fd);
	}
}

/* ---- a PUT by descriptor does not stall its worker ----------------------- */

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * While one client PUTs a large file by descriptor (1 GiB; OM_BIG_PUT_MB
 * sets another size), another client of the same worker GETs a 1 KB
 * object over and over: its p99 stays far below what one copy in one go
 * costs (seconds: the GETs waited for the whole copy). The object stored
 * has the checksum of the file's bytes.
 */
static void
test_put_fd_keeps_latency(void **state)
{
	static uint64_t lat_us[1 << 18];
	static uint8_t chunk[1 << 20];
	const char *env = getenv("OM_BIG_PUT_MB");
	uint64_t mb = env != NULL ? strtoull(env, NULL, 10) : om_test_under_valgrind() ? 128 : 1024;
	uint64_t size = mb << 20, t0, t_put, p50, p99;
	uint8_t small[1024], req[OM_REQ_HDR_LEN + 64];
	char path[320], msg[256];
	unsigned n = 0;
	uint32_t crc = 0;
	om_resp_t r;
	int src, a, b;

	(void)state;
	up(NULL);
	/* The file: on tmpfs, so that the copy is bound by the daemon. */
	snprintf(path, sizeof(path), "%s/big", D.mem);
	src = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	assert_true(src >= 0);
	for (uint64_t i = 0; i < mb; i++) {
		om_test_fill(chunk, sizeof(chunk), i + 1);
		crc = om_crc32c(crc, chunk, sizeof(chunk));
		assert_int_equal(write(src, chunk, sizeof(chunk)), (ssize_t)sizeof(chunk));
	}
	close(src);
	src = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(src >= 0);

	a = om_raw_connect_unix(D.sock);
	b = om_raw_connect_unix(D.sock);
	om_test_fill(small, sizeof(small), 99);
	/* In the memory tier: a PUT as large as the persistent tier makes
	 * room there by evicting what it holds. */
	raw_put_flags(b, "/small", small, sizeof(small), OM_PUT_EPHEMERAL);

	t0 = om_test_now_ms();
	om_raw_send_with_fd(a, req, om_raw_req(req, OM_OP_PUT, 5, OM_PUT_FD, "/big", 0, size), src);
	close(src);
	for (;;) {
		struct pollfd p = { a, POLLIN, 0 };
		struct timespec s, e;

		if (poll(&p, 1, 0) == 1)
			break;
		clock_gettime(CLOCK_MONOTONIC, &s);
		raw_get_check(b, "/small", small, sizeof(small));
		clock_gettime(CLOCK_MONOTONIC, &e);
		if (n < sizeof(lat_us) / sizeof(lat_us[0]))
			lat_us[n++] = (uint64_t)(e.tv_sec - s.tv_sec) * 1000000u +
			    (uint64_t)(e.tv_nsec / 1000) - (uint64_t)(s.tv_nsec / 1000);
	}
	if (om_raw_read_resp(a, &r, msg, sizeof(msg)) != OM_STATUS_OK)
		fail_msg("PUT by descriptor: status %d: %s", r.status, msg);
	t_put = om_test_now_ms() - t0;
	/* The client's file, removed by the client once stored (the last
	 * close of a removed file frees its pages: the daemon's would be). */
	unlink(path);
	assert_int_equal(r.body_len, size);
	assert_int_equal(r.crc, crc);
	assert_true(n > 0);
	qsort(lat_us, n, sizeof(lat_us[0]), cmp_u64);
	p99 = lat_us[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1];
	p50 = lat_us[n / 2];
	print_message("PUT of %llu MiB by descriptor: %llu ms; meanwhile %u GETs of 1 KB on the same "
	    "worker: p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", (unsigned long long)mb,
	    (unsigned long long)t_put, n, (double)p50 / 1000, (double)p99 / 1000, (double)lat_us[n - 1] / 1000);
	/* Served while the copy ran, never held for long (the copy in one go
	 * held them for all of it: 1 GiB here, about 2 s). */
	assert_true(n >= 20);
	assert_true(p99 < 200 * 1000);
	close(a);
	close(b);
}

/* ---- a descriptor that cannot be read is the client's error --------------- */

/*
 * A PUT whose descriptor cannot be read from offset 0 (a pipe, a socket,
 * a file open for writing only, a directory, an O_PATH descriptor) is
 * answered BAD_REQUEST saying why, on a connection that goes on; the
 * daemon logs no error for it.
 */
static void
test_put_fd_unreadable(void **state)
{
	static const char *const kinds[] = {
		"a pipe", "a socket", "a file open for writing only", "a directory", "an O_PATH descriptor",
	};
	uint8_t req[OM_REQ_HDR_LEN + 64];
	char path[320], msg[512];
	om_resp_t r;
	int c, pfd[2], sp[2];

	(void)state;
	up(NULL);
	c = om_raw_connect_unix(D.sock);
	snprintf(path, sizeof(path), "%s/file", D.dir);
	assert_int_equal(pipe2(pfd, O_CLOEXEC), 0);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	for (unsigned i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		int fd;

		switch (i) {
		case 0: fd = pfd[0]; break;
		case 1: fd = sp[0]; break;
		case 2: fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600); break;
		case 3: fd = open(D.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC); break;
		default: fd = open(path, O_PATH | O_CLOEXEC); break;
		}
		assert_true(fd >= 0);
		if (i == 2)
			assert_int_equal(write(fd, "0123456789", 10), 10);
		om_raw_send_with_fd(c, req, om_raw_req(req, OM_OP_PUT, 20 + i, OM_PUT_FD, "/bad", 0, 10), fd);
		if (i >= 2)
			close(fd);
		if (om_raw_read_resp(c, &r, msg, sizeof(msg)) != OM_STATUS_BAD_REQUEST)
			fail_msg("PUT by %s: status %d: %s", kinds[i], r.status, msg);
		assert_int_equal(r.id, 20 + i);
		print_message("%s: %s\n", kinds[i], msg);
		if (strstr(msg, "can be read from offset 0") == NULL || strstr(msg, kinds[i]) == NULL)
			fail_msg("PUT by %s: the message does not say why: %s", kinds[i], msg);
		/* The connection goes on. */
		om_raw_send_all(c, req, om_raw_req(req, OM_OP_PING, 30 + i, 0, NULL, 0, 0));
		assert_int_equal(om_raw_read_resp(c, &r, msg, sizeof(msg)), OM_STATUS_OK);
		assert_int_equal(r.id, 30 + i);
	}
	assert_int_equal(om_raw_stat_value(c, "index_objects"), 0);
	close(pfd[0]);
	close(pfd[1]);
	close(sp[0]);
	close(sp[1]);
	close(c);
	if (strstr(om_daemon_log(&D), "[error]") != NULL)
		fail_msg("the daemon logged an error:\n%s", om_daemon_log(&D));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_http_refuses_at_once, down),
		cmocka_unit_test_teardown(test_partial_requests_cost_nothing, down),
		cmocka_unit_test_teardown(test_put_fd_unreadable, down),
		cmocka_unit_test_teardown(test_put_fd_keeps_latency, down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
