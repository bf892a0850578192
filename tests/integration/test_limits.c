/*
 * Per-listener and per-worker limits of the real daemon: max_connections
 * (polite BUSY), idle_timeout, request_timeout against a slowloris, a
 * thousand idle connections, max_pipeline and max_buffer against a client
 * that sends without reading, max_files (accept pauses, no spinning),
 * max_object_size and the URI limit. Each test starts its own daemon with
 * its own configuration; someone well-behaved is served throughout.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"
#include "proto/om_proto.h"

static om_daemon_t D;

/* What a test holds, released by down() even when the test fails. */
static om_client_t *clients[8];
static char *stats_text;

/* Starts the daemon of one test; down() (its teardown) stops it. */
static void
up(unsigned workers, const char *extra)
{
	om_daemon_init(&D, workers, extra);
	om_daemon_start(&D);
}

static int
down(void **state)
{
	(void)state;
	for (unsigned i = 0; i < sizeof(clients) / sizeof(clients[0]); i++) {
		om_client_close(clients[i]);
		clients[i] = NULL;
	}
	free(stats_text);
	stats_text = NULL;
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	return 0;
}

static om_client_t *
client(void)
{
	unsigned i = 0;

	while (i < sizeof(clients) / sizeof(clients[0]) && clients[i] != NULL)
		i++;
	assert_true(i < sizeof(clients) / sizeof(clients[0]));
	if (om_client_connect(D.sock, 0, &clients[i]) != 0)
		fail_msg("connect: %s", clients[i] ? om_client_message(clients[i]) : "");
	return clients[i];
}

static void
drop(om_client_t *c)
{
	for (unsigned i = 0; i < sizeof(clients) / sizeof(clients[0]); i++)
		if (clients[i] == c)
			clients[i] = NULL;
	om_client_close(c);
}

/* ---- statistics and processes -------------------------------------------- */

/* STATS text, valid until the next call. */
static const char *
stats(om_client_t *c)
{
	free(stats_text);
	stats_text = NULL;
	assert_int_equal(om_client_stats(c, &stats_text), 0);
	assert_non_null(stats_text);
	return stats_text;
}

/* A series' value in STATS text; a labeled series left out (zero) is 0. */
static uint64_t
value(const char *text, const char *series)
{
	size_t n = strlen(series);

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtoull(p + n + 1, NULL, 10);
	}
	if (strchr(series, '{') != NULL)
		return 0;
	fail_msg("no series %s in:\n%s", series, text);
	return 0;
}

static uint64_t
stat_of(om_client_t *c, const char *series)
{
	return value(stats(c), series);
}

/* Resident memory of a process that must be there. */
static long
rss_kb(pid_t pid)
{
	long kb = om_test_rss_kb(pid);

	assert_true(kb >= 0);
	return kb;
}

/* PUT then GET back (mode copy), byte for byte. */
static void
put_get(om_client_t *c, const char *uri, size_t len, uint64_t seed)
{
	static uint8_t data[64 << 10];
	om_object_t o;

	assert_true(len <= sizeof(data));
	om_test_fill(data, len, seed);
	assert_int_equal(om_client_put(c, uri, data, len, NULL, NULL), 0);
	assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, len);
	assert_memory_equal(o.data, data, len);
	om_object_free(&o);
}

/* ---- max_connections ----------------------------------------------------- */

#define BUSY_MSG "too many connections: try again later"

/* A connection over the limit: GOAWAY BUSY (id 0, the message), then EOF. */
static void
assert_rejected(int fd)
{
	char msg[256];
	om_resp_t r;

	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BUSY);
	assert_int_equal(r.op, OM_OP_GOAWAY);
	assert_int_equal(r.id, 0);
	assert_int_equal(r.body, OM_BODY_NONE);
	assert_string_equal(msg, BUSY_MSG);
	om_raw_assert_closed(fd);
}

static void
test_max_connections(void **state)
{
	om_client_t *cs[4], *c;
	int fd;

	(void)state;
	up(0, "[daemon]\nworkers = 1\npid_file = objmapperd.pid\nmax_connections = 4\n");
	for (int i = 0; i < 4; i++)
		cs[i] = client();
	/* The fifth is told and closed. */
	fd = om_raw_connect_unix(D.sock);
	assert_rejected(fd);
	close(fd);
	/* The four are served as before. */
	for (int i = 0; i < 4; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/mc/%d", i);
		assert_int_equal(om_client_ping(cs[i]), 0);
		put_get(cs[i], uri, 1000 + 3000 * (size_t)i, (uint64_t)i);
	}
	{
		const char *text = stats(cs[0]);

		assert_int_equal(value(text, "connections_rejected_total"), 1);
		assert_int_equal(value(text, "connections_current"), 4);
	}
	/* A slot freed is a slot for the next client. */
	drop(cs[3]);
	usleep(200 * 1000);
	c = client();
	put_get(c, "/mc/new", 5000, 99);
	assert_int_equal(om_client_retries(c), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(om_client_ping(cs[i]), 0);
		assert_int_equal(om_client_retries(cs[i]), 0);
		drop(cs[i]);
	}
	drop(c);
}

/*
 * A connection refused over max_connections is counted the same way on
 * both protocols, as docs/STATISTICS.md says: in connections_rejected_total
 * and in requests_total{op="other",status="busy"} (an HTTP 503 is also in
 * http_responses_total, as every HTTP response is in requests_total); the
 * GOAWAY that refuses an objmapper connection in goaways_total.
 */
static void
test_max_connections_counted(void **state)
{
	char http_sock[sizeof(D.dir) + 16], buf[1024];
	const char *text;
	om_client_t *c;
	size_t got = 0;
	ssize_t r;
	int held, fd;

	(void)state;
	up(0, "[daemon]\nworkers = 1\npid_file = objmapperd.pid\nmax_connections = 2\n"
	    "[listen.http]\ntype = http\npath = http.sock\n");
	snprintf(http_sock, sizeof(http_sock), "%s/http.sock", D.dir);
	c = client();
	held = om_raw_connect_unix(http_sock);
	usleep(100 * 1000);
	fd = om_raw_connect_unix(D.sock);
	assert_rejected(fd);
	close(fd);
	/* After the worker's pause, an HTTP newcomer: 503. */
	usleep(300 * 1000);
	fd = om_raw_connect_unix(http_sock);
	while (got < sizeof(buf) - 1 && (r = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += (size_t)r;
	buf[got] = '\0';
	close(fd);
	if (strncmp(buf, "HTTP/1.1 503 ", 13) != 0)
		fail_msg("an HTTP connection over max_connections got: %s", buf);
	close(held);
	text = stats(c);
	assert_int_equal(value(text, "connections_rejected_total"), 2);
	assert_int_equal(value(text, "requests_total{op=\"other\",status=\"busy\"}"), 2);
	assert_int_equal(value(text, "http_responses_total{class=\"5xx\"}"), 1);
	assert_int_equal(value(text, "goaways_total"), 1);
}

/*
 * After its 100 ms pause, a worker still at its limit answers the next
 * newcomer BUSY as well, rather than leaving it unanswered in the backlog
 * until some connection closes.
 */
static void
test_max_connections_after_pause(void **state)
{
	om_client_t *cs[4];
	char msg[256];
	om_resp_t r;
	int fd, st;

	(void)state;
	up(0, "[daemon]\nworkers = 1\npid_file = objmapperd.pid\nmax_connections = 4\n");
	for (int i = 0; i < 4; i++)
		cs[i] = client();
	fd = om_raw_connect_unix(D.sock);
	assert_rejected(fd);
	close(fd);
	usleep(300 * 1000);
	fd = om_raw_connect_unix(D.sock);
	st = om_raw_read_resp(fd, &r, msg, sizeof(msg));
	if (st != OM_STATUS_BUSY)
		fail_msg("a connection over max_connections 300 ms after the first rejection got "
		    "no GOAWAY BUSY within 5 s (read gave %d)", st);
	assert_int_equal(r.op, OM_OP_GOAWAY);
	assert_int_equal(r.id, 0);
	assert_string_equal(msg, BUSY_MSG);
	om_raw_assert_closed(fd);
	close(fd);
	assert_int_equal(stat_of(cs[0], "connections_rejected_total"), 2);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(om_client_ping(cs[i]), 0);
		assert_int_equal(om_client_retries(cs[i]), 0);
		drop(cs[i]);
	}
}

/* ---- idle_timeout -------------------------------------------------------- */

static void
test_idle_timeout(void **state)
{
	uint8_t buf[64];
	char msg[256];
	om_client_t *keep;
	om_resp_t r;
	uint64_t t0, next_ping, cut = 0;
	int fd;

	(void)state;
	up(1, "idle_timeout = 2s\n");
	keep = client();
	fd = om_raw_connect_unix(D.sock);
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_PING, 7, 0, NULL, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
	/* A request refused before it runs is answered, so accepted too. */
	om_raw_send_all(fd, buf, om_raw_req(buf, 77, 8, 0, NULL, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_UNKNOWN_OP);
	t0 = next_ping = om_test_now_ms();
	/* One connection says nothing, the other PINGs every 200 ms (a
	 * slack of 1.8 s before its own idle timeout: under a load of 10 on
	 * 2 CPUs, pings 500 ms apart once let it time out too). */
	while (om_test_now_ms() - t0 < 4000 || (cut == 0 && om_test_now_ms() - t0 < 6000)) {
		struct pollfd p = { fd, POLLIN, 0 };

		if (om_test_now_ms() >= next_ping) {
			assert_int_equal(om_client_ping(keep), 0);
			next_ping += 200;
		}
		if (cut == 0 && poll(&p, 1, 20) == 1) {
			cut = om_test_now_ms();
			assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
			assert_int_equal(r.op, OM_OP_GOAWAY);
			assert_int_equal(r.id, 8); /* the last request accepted */
			assert_string_equal(msg, "idle for 2000 ms");
			om_raw_assert_closed(fd);
		} else if (cut != 0) {
			usleep(20 * 1000);
		}
	}
	if (cut == 0)
		fail_msg("an idle connection was not closed within 6 s (idle_timeout 2s)");
	print_message("idle connection closed after %llu ms\n", (unsigned long long)(cut - t0));
	assert_true(cut - t0 >= 1950 && cut - t0 <= 3500);
	close(fd);
	/* The talkative one was never closed (no reconnect). */
	assert_int_equal(om_client_ping(keep), 0);
	assert_int_equal(om_client_retries(keep), 0);
	{
		const char *text = stats(keep);

		assert_int_equal(value(text, "timeouts_total{kind=\"idle\"}"), 1);
		assert_int_equal(value(text, "timeouts_total{kind=\"request\"}"), 0);
	}
	drop(keep);
}

/* ---- request_timeout ----------------------------------------------------- */

/* A client that sends one byte of a GET a second, while another works. */
static void
test_request_timeout(void **state)
{
	uint8_t frame[64];
	char msg[256], uri[32];
	om_client_t *good;
	om_resp_t r;
	uint64_t t0, next_byte, cut = 0;
	size_t flen, sent = 0;
	unsigned ops = 0;
	int fd;

	(void)state;
	up(1, "request_timeout = 2s\n");
	good = client();
	fd = om_raw_connect_unix(D.sock);
	flen = om_raw_req(frame, OM_OP_GET, 9, OM_MODE_COPY, "/rt/slow", 0, 0);
	t0 = om_test_now_ms();
	om_raw_send_all(fd, frame, 1);
	sent = 1;
	next_byte = t0 + 1000;
	for (unsigned i = 0; cut == 0 && om_test_now_ms() - t0 < 6000; i++) {
		struct pollfd p = { fd, POLLIN, 0 };

		snprintf(uri, sizeof(uri), "/rt/%u", i % 50);
		put_get(good, uri, 512 + (i * 997u) % 16384, i);
		ops += 2;
		if (om_test_now_ms() >= next_byte && sent < flen) {
			/* Once it is closed a send may fail: the GOAWAY says why. */
			if (send(fd, frame + sent, 1, MSG_NOSIGNAL) == 1)
				sent++;
			next_byte += 1000;
		}
		if (poll(&p, 1, 0) == 1) {
			cut = om_test_now_ms();
			assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
			assert_int_equal(r.op, OM_OP_GOAWAY);
			assert_int_equal(r.id, 0); /* nothing was accepted */
			if (strncmp(msg, "request timeout: not received in full", 37) != 0)
				fail_msg("GOAWAY message: \"%s\"", msg);
			om_raw_assert_closed(fd);
		}
		usleep(2000);
	}
	if (cut == 0)
		fail_msg("a slowloris was not cut off within 6 s (request_timeout 2s)");
	print_message("slowloris cut off after %llu ms and %zu bytes; another client did %u "
	    "requests meanwhile\n", (unsigned long long)(cut - t0), sent, ops);
	assert_true(cut - t0 >= 1950 && cut - t0 <= 3500);
	assert_true(sent < flen);
	assert_true(ops >= 200);
	close(fd);
	assert_int_equal(om_client_retries(good), 0);
	{
		const char *text = stats(good);

		assert_int_equal(value(text, "timeouts_total{kind=\"request\"}"), 1);
		assert_int_equal(value(text, "timeouts_total{kind=\"idle\"}"), 0);
	}
	drop(good);
}

/* A PUT's body has one more second per 256 KiB: 1 MiB sent over about
 * 4.2 s (well past the 2 s of a frame without a body, within its 6 s) is
 * stored. */
static void
test_request_timeout_put_body(void **state)
{
	static uint8_t body[1 << 20];
	uint8_t buf[64];
	char msg[256];
	om_client_t *c;
	om_object_t o;
	om_resp_t r;
	uint64_t t0;
	int fd;

	(void)state;
	up(1, "request_timeout = 2s\n");
	om_test_fill(body, sizeof(body), 11);
	fd = om_raw_connect_unix(D.sock);
	t0 = om_test_now_ms();
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_PUT, 51, 0, "/rt/put", 0, sizeof(body)));
	/* 3.2 s of sending: past request_timeout (2 s), within its allowance
	 * for 1 MiB (2 + 4 s), with room for a loaded machine. */
	for (size_t i = 0; i < 16; i++) {
		usleep(200 * 1000);
		om_raw_send_all(fd, body + i * (64 << 10), 64 << 10);
	}
	assert_true(om_test_now_ms() - t0 > 3000);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(r.op, OM_OP_PUT);
	assert_int_equal(r.id, 51);
	assert_int_equal(r.body_len, sizeof(body));
	close(fd);
	c = client();
	assert_int_equal(om_client_get(c, "/rt/put", OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, sizeof(body));
	assert_memory_equal(o.data, body, sizeof(body));
	om_object_free(&o);
	assert_int_equal(stat_of(c, "timeouts_total{kind=\"request\"}"), 0);
	drop(c);
}

/* The bytes that arrive with a request's header count toward its time
 * and are said in the GOAWAY: a PUT of 100 bytes whose header came with
 * 10 of them, then nothing; alone, and behind a PING in the same write
 * (whose bytes are not the PUT's). */
static void
test_request_timeout_counts_first_read(void **state)
{
	uint8_t buf[2][128];
	char msg[256], want[64];
	size_t n, ping;
	om_resp_t r;
	int fd[2];

	(void)state;
	up(1, "request_timeout = 1s\n");
	ping = om_raw_req(buf[1], OM_OP_PING, 53, 0, NULL, 0, 0);
	for (int i = 0; i < 2; i++) {
		uint8_t *at = buf[i] + (i ? ping : 0);

		n = om_raw_req(at, OM_OP_PUT, 52, 0, "/rt/first", 0, 100);
		memset(at + n, 'b', 10);
		fd[i] = om_raw_connect_unix(D.sock);
		om_raw_send_all(fd[i], buf[i], (i ? ping : 0) + n + 10);
	}
	snprintf(want, sizeof(want), "(%zu bytes arrived)", n + 10);
	for (int i = 0; i < 2; i++) {
		if (i == 1) {
			assert_int_equal(om_raw_read_resp(fd[i], &r, msg, sizeof(msg)), OM_STATUS_OK);
			assert_int_equal(r.id, 53);
		}
		assert_int_equal(om_raw_read_resp(fd[i], &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
		assert_int_equal(r.op, OM_OP_GOAWAY);
		if (strstr(msg, want) == NULL)
			fail_msg("%s: GOAWAY message \"%s\" does not say %s", i ? "behind a PING" : "alone",
			    msg, want);
		om_raw_assert_closed(fd[i]);
		close(fd[i]);
	}
}

/* ---- a thousand idle connections ----------------------------------------- */

#define IDLE_CONNS 1000

struct current_arg {
	om_client_t *c;
	uint64_t want;
	int at_least;
};

static int
current_is(void *arg)
{
	struct current_arg *a = arg;
	uint64_t v = stat_of(a->c, "connections_current");

	return a->at_least ? v >= a->want : v == a->want;
}

static void
raise_nofile(rlim_t need)
{
	struct rlimit rl;

	assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
	rl.rlim_cur = rl.rlim_max;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
		skip();
}

static void
test_many_idle_connections(void **state)
{
	static uint8_t data[10][40000];
	static int fds[IDLE_CONNS];
	const char *uris[10];
	char names[10][24];
	struct current_arg a;
	om_client_t *c;
	uint8_t buf[64];
	char msg[64];
	om_resp_t r;

	(void)state;
	raise_nofile(IDLE_CONNS + 200);
	up(2, NULL);
	c = client();
	for (int i = 0; i < 10; i++) {
		snprintf(names[i], sizeof(names[i]), "/idle/%d", i);
		uris[i] = names[i];
		om_test_fill(data[i], sizeof(data[i]), 1000 + (uint64_t)i);
		assert_int_equal(om_client_put(c, uris[i], data[i], 100 + 4000 * (size_t)i, NULL, NULL), 0);
	}
	for (int i = 0; i < IDLE_CONNS; i++)
		fds[i] = om_raw_connect_unix(D.sock);
	a = (struct current_arg){ c, IDLE_CONNS + 1, 1 };
	if (!om_wait_until(current_is, &a, 10000))
		fail_msg("connections_current stayed under %d", IDLE_CONNS + 1);
	/* Every one of them is there and answers. */
	for (int i = 0; i < IDLE_CONNS; i++)
		om_raw_send_all(fds[i], buf, om_raw_req(buf, OM_OP_PING, (uint32_t)i + 1, 0, NULL, 0, 0));
	for (int i = 0; i < IDLE_CONNS; i++) {
		assert_int_equal(om_raw_read_resp(fds[i], &r, msg, sizeof(msg)), OM_STATUS_OK);
		assert_int_equal(r.op, OM_OP_PING);
		assert_int_equal(r.id, (uint32_t)i + 1);
	}
	/* Meanwhile another client is served. */
	for (int i = 0; i < 100; i++) {
		size_t len = 100 + 4000 * (size_t)(i % 10);
		om_object_t o;

		assert_int_equal(om_client_get(c, uris[i % 10], i % 2 ? OM_MODE_COPY : OM_MODE_AUTO,
		    0, &o), 0);
		assert_int_equal(o.len, len);
		if (o.fd >= 0) {
			static uint8_t back[40000];

			assert_int_equal(pread(o.fd, back, len, 0), (ssize_t)len);
			assert_memory_equal(back, data[i % 10], len);
		} else {
			assert_memory_equal(o.data, data[i % 10], len);
		}
		om_object_free(&o);
	}
	assert_true(stat_of(c, "connections_current") >= IDLE_CONNS + 1);
	for (int i = 0; i < IDLE_CONNS; i++)
		close(fds[i]);
	a = (struct current_arg){ c, 1, 0 };
	if (!om_wait_until(current_is, &a, 5000))
		fail_msg("connections_current did not drop back to 1");
	assert_int_equal(om_client_retries(c), 0);
	drop(c);
}

/* ---- max_pipeline and max_buffer ----------------------------------------- */

#define PIPE_REQS 2000
#define PIPE_OBJ  (16u << 10)

/*
 * A client sends 2,000 GETs of a 16 KiB object (bytes inline) without
 * reading: the worker stops reading it, its memory stays bounded and
 * others are served; when the client reads, every answer comes in order.
 */
static void
test_pipeline_bounded(void **state)
{
	static uint8_t obj[PIPE_OBJ], in[1 << 20], reqs[PIPE_REQS * (OM_REQ_HDR_LEN + 250)];
	char uri[300], msg[64];
	om_client_t *c;
	uint8_t hello[64], caps[256];
	size_t rl, total, off = 0, in_off = 0, in_len = 0;
	unsigned got = 0;
	long rss0, rss1;
	uint64_t t_end, stuck = 0;
	om_resp_t r;
	pid_t w;
	int fd, h;

	(void)state;
	up(1, "max_pipeline = 4\nmax_buffer = 64K\n");
	c = client();
	assert_int_equal(om_client_caps(c)->max_pipeline, 4);
	/* The capability record says so at offset 12. */
	h = om_raw_connect_unix(D.sock);
	om_raw_send_all(h, hello, om_raw_req(hello, OM_OP_HELLO, 1, 0, NULL, 0, 0));
	assert_int_equal(om_raw_read_resp_body(h, &r, msg, sizeof(msg), caps, sizeof(caps)), OM_STATUS_OK);
	assert_int_equal(r.body, OM_BODY_INLINE);
	assert_true(r.body_len >= OM_HELLO_CAPS_LEN);
	assert_int_equal(om_get32(caps + 12), 4);
	close(h);

	/* Long URIs, so that 2,000 requests are more than the buffers hold. */
	memset(uri, 'p', 250);
	memcpy(uri, "/pipe/", 6);
	uri[250] = '\0';
	om_test_fill(obj, sizeof(obj), 77);
	assert_int_equal(om_client_put(c, uri, obj, sizeof(obj), NULL, NULL), 0);
	w = om_daemon_only_worker(&D);
	rss0 = rss_kb(w);

	rl = OM_REQ_HDR_LEN + strlen(uri);
	total = rl * PIPE_REQS;
	assert_true(total <= sizeof(reqs));
	for (unsigned i = 0; i < PIPE_REQS; i++)
		om_raw_req(reqs + i * rl, OM_OP_GET, i + 1, OM_MODE_COPY, uri, 0, 0);
	fd = om_raw_connect_unix_flags(D.sock, SOCK_NONBLOCK);
	/* Send, one request per write, until the daemon takes no more for
	 * 500 ms. (Not poll: a Unix socket polls writable only while its
	 * send buffer is three quarters empty, well before sends fail.) */
	while (off < total) {
		ssize_t n = send(fd, reqs + off, rl - off % rl, MSG_NOSIGNAL);

		if (n > 0) {
			off += (size_t)n;
			stuck = 0;
			continue;
		}
		assert_true(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
		if (stuck == 0)
			stuck = om_test_now_ms();
		else if (om_test_now_ms() - stuck >= 500)
			break;
		usleep(10 * 1000);
	}
	if (off == total)
		fail_msg("the daemon read all %d pipelined requests of a client that reads nothing",
		    PIPE_REQS);
	/* It stays stopped. */
	usleep(500 * 1000);
	assert_int_equal(send(fd, reqs + off, rl - off % rl, MSG_NOSIGNAL), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

	/* Others are served promptly meanwhile. */
	for (int i = 0; i < 50; i++) {
		uint64_t t = om_test_now_ms();
		om_object_t o;

		assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, 0, &o), 0);
		assert_int_equal(o.len, sizeof(obj));
		assert_memory_equal(o.data, obj, sizeof(obj));
		om_object_free(&o);
		assert_true(om_test_now_ms() - t < 1000);
	}
	rss1 = rss_kb(w);
	print_message("a pipelining client that does not read: %zu of %d requests sent before "
	    "the daemon stopped reading; worker RSS %+ld KiB\n", off / rl, PIPE_REQS, rss1 - rss0);
	assert_true(rss1 - rss0 < 64 * 1024);

	/* Now it reads (and sends the rest as the daemon takes it): every
	 * answer, in order, byte for byte. */
	t_end = om_test_now_ms() + 30000;
	while (got < PIPE_REQS) {
		struct pollfd p = { fd, (short)(POLLIN | (off < total ? POLLOUT : 0)), 0 };
		ssize_t n;

		assert_true(om_test_now_ms() < t_end);
		assert_int_equal(poll(&p, 1, 5000), 1);
		assert_false(p.revents & (POLLERR | POLLNVAL));
		while (off < total && (n = send(fd, reqs + off, total - off, MSG_NOSIGNAL)) > 0)
			off += (size_t)n;
		if (in_off > sizeof(in) / 2) {
			memmove(in, in + in_off, in_len - in_off);
			in_len -= in_off;
			in_off = 0;
		}
		n = recv(fd, in + in_len, sizeof(in) - in_len, MSG_DONTWAIT);
		if (n == 0)
			fail_msg("closed after %u responses", got);
		if (n < 0) {
			assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
			continue;
		}
		in_len += (size_t)n;
		while (in_len - in_off >= OM_RESP_HDR_LEN) {
			size_t whole;

			assert_int_equal(om_proto_get_resp(in + in_off, &r), 0);
			whole = OM_RESP_HDR_LEN + r.msg_len + r.meta_len +
			    (r.body == OM_BODY_INLINE ? (size_t)r.body_len : 0);
			if (in_len - in_off < whole)
				break;
			assert_int_equal(r.op, OM_OP_GET);
			assert_int_equal(r.id, got + 1);
			assert_int_equal(r.status, OM_STATUS_OK);
			assert_int_equal(r.body, OM_BODY_INLINE);
			assert_int_equal(r.body_len, sizeof(obj));
			assert_int_equal(r.msg_len + r.meta_len, 0);
			assert_memory_equal(in + in_off + OM_RESP_HDR_LEN, obj, sizeof(obj));
			in_off += whole;
			got++;
		}
	}
	assert_int_equal(in_len, in_off);
	close(fd);
	assert_int_equal(om_client_retries(c), 0);
	drop(c);
}

/* ---- max_files ----------------------------------------------------------- */

#define FILES_CONNS 150

static int
log_has_pause(void *arg)
{
	(void)arg;
	return strstr(om_daemon_log(&D), "pausing accepts") != NULL;
}

/* Lines of text holding what. */
static unsigned
count_lines(const char *text, const char *what)
{
	unsigned n = 0;

	for (const char *p = text; (p = strstr(p, what)) != NULL; p += strlen(what))
		n++;
	return n;
}

static int
log_has_count(void *arg)
{
	const char *p = strstr(om_daemon_log(&D), "such lines not logged in");

	(void)arg;
	return p != NULL;
}

static void
test_max_files(void **state)
{
	static int fds[FILES_CONNS];
	om_client_t *c, *n;
	uint64_t pauses0, pauses1, current;
	long cpu0, cpu1;
	pid_t w;

	(void)state;
	up(0, "[daemon]\nworkers = 1\npid_file = objmapperd.pid\nmax_files = 64\n");
	w = om_daemon_only_worker(&D);
	c = client();
	for (int i = 0; i < FILES_CONNS; i++)
		fds[i] = om_raw_connect_unix_flags(D.sock, SOCK_NONBLOCK);
	if (!om_wait_until(log_has_pause, NULL, 5000))
		fail_msg("no \"pausing accepts\" in the log:\n%s", om_daemon_log(&D));
	assert_non_null(strstr(om_daemon_log(&D), "Too many open files"));
	/* Out of descriptors with connections waiting: the worker pauses
	 * rather than spins, and its connections are served. */
	pauses0 = stat_of(c, "accept_pauses_total");
	cpu0 = om_test_cpu_ticks(w);
	for (int i = 0; i < 6; i++) {
		usleep(500 * 1000);
		assert_int_equal(om_client_ping(c), 0);
	}
	cpu1 = om_test_cpu_ticks(w);
	{
		const char *text = stats(c);

		pauses1 = value(text, "accept_pauses_total");
		current = value(text, "connections_current");
	}
	print_message("max_files 64: %llu of %d connections accepted, %llu accept pauses in 3 s, "
	    "worker CPU %ld ticks\n", (unsigned long long)current - 1, FILES_CONNS,
	    (unsigned long long)(pauses1 - pauses0), cpu1 - cpu0);
	assert_true(pauses0 > 0);
	assert_true(current > 1 && current < FILES_CONNS + 1);
	/* Pausing 100 ms each time: at most a few dozen pauses in 3 s, and
	 * still pausing while connections wait. */
	assert_true(pauses1 > pauses0 && pauses1 - pauses0 <= 45);
	assert_true(cpu1 - cpu0 < sysconf(_SC_CLK_TCK));
	/* Some 30 pauses, a few lines in the log: the rest are counted, and
	 * the count is logged when the window (5 s) is over. */
	{
		unsigned lines = count_lines(om_daemon_log(&D), "pausing accepts");

		print_message("%u lines of \"pausing accepts\" in the log\n", lines);
		assert_true(lines >= 1 && lines <= 5);
		if (!om_wait_until(log_has_count, NULL, 8000))
			fail_msg("no count of the lines not logged:\n%s", om_daemon_log(&D));
	}
	/* Descriptors back: a newcomer is served. */
	for (int i = 0; i < FILES_CONNS; i++)
		close(fds[i]);
	n = client();
	put_get(n, "/files/new", 20000, 5);
	assert_int_equal(om_client_retries(n), 0);
	assert_int_equal(om_client_retries(c), 0);
	drop(n);
	drop(c);
}

/* ---- the descriptor limit ------------------------------------------------- */

/* In the daemon's process before its exec: a soft limit of 100 under a
 * hard one of 300, and, as root, no privilege to raise the hard limit (a
 * container's root). */
static void
low_nofile(void)
{
	struct rlimit rl = { 100, 300 };

	(void)prctl(PR_CAPBSET_DROP, CAP_SYS_RESOURCE, 0, 0, 0);
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		_exit(126);
}

/* The soft and hard descriptor limits of a process, from /proc. */
static void
proc_nofile(pid_t pid, long *soft, long *hard)
{
	char path[64], line[256];
	FILE *f;

	*soft = *hard = -1;
	snprintf(path, sizeof(path), "/proc/%d/limits", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Max open files %ld %ld", soft, hard) == 2)
			break;
	fclose(f);
}

/*
 * Wanting more descriptors than the hard limit allows, without the
 * privilege to raise it: the soft limit goes up to the hard one, and the
 * log says what the limit really is (it said "it is 2248", the limit
 * wanted, while the limit stayed at 100).
 */
static void
test_nofile_below_wanted(void **state)
{
	long soft, hard;
	char want[128];
	pid_t w;

	(void)state;
	om_daemon_init(&D, 1, NULL);
	if (om_test_under_valgrind()) {
		/* valgrind keeps descriptors of its own above the limit and
		 * refuses a hard limit below them. */
		print_message("skipped under valgrind, which virtualizes RLIMIT_NOFILE\n");
		skip();
	}
	om_daemon_write_conf(&D, 1, "[daemon]\nworkers = 1\npid_file = objmapperd.pid\n"
	    "max_connections = 100\n[cache]\nopen_files = 1024\n");
	D.before_exec = low_nofile;
	om_daemon_start(&D);
	w = om_daemon_only_worker(&D);
	proc_nofile(D.pid, &soft, &hard);
	print_message("descriptor limit 100 (hard 300), 2248 wanted: the daemon has %ld (hard %ld)\n",
	    soft, hard);
	assert_int_equal(hard, 300);
	assert_int_equal(soft, 300);
	proc_nofile(w, &soft, &hard);
	assert_int_equal(soft, 300);
	snprintf(want, sizeof(want), "cannot set the descriptor limit to 2248");
	if (strstr(om_daemon_log(&D), want) == NULL ||
	    strstr(om_daemon_log(&D), "it is 300 (the hard limit)") == NULL)
		fail_msg("the log does not say what the limit is:\n%s", om_daemon_log(&D));
}

/* ---- max_object_size and the URI limit ----------------------------------- */

static void
test_max_object_size(void **state)
{
	static uint8_t body[(1 << 20) + 1];
	uint8_t buf[64];
	char msg[256];
	om_client_t *c;
	om_object_t o;
	om_resp_t r;
	int fd;

	(void)state;
	up(1, "max_object_size = 1M\n");
	c = client();
	assert_int_equal(om_client_caps(c)->max_object, 1 << 20);
	om_test_fill(body, sizeof(body), 3);
	/* 1 MiB + 1: refused with a message, its body skipped, the stream in step. */
	fd = om_raw_connect_unix(D.sock);
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_PUT, 31, 0, "/big", 0, sizeof(body)));
	om_raw_send_all(fd, body, sizeof(body));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_TOO_LARGE);
	assert_int_equal(r.id, 31);
	assert_true(r.msg_len > 0);
	assert_non_null(strstr(msg, "1048577"));
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_PING, 32, 0, NULL, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(r.id, 32);
	close(fd);
	assert_int_equal(om_client_stat(c, "/big", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	/* Through the library too, and then exactly 1 MiB is stored whole. */
	assert_int_equal(om_client_put(c, "/big", body, sizeof(body), NULL, NULL), -OM_STATUS_TOO_LARGE);
	assert_int_equal(om_client_ping(c), 0);
	assert_int_equal(om_client_put(c, "/big", body, sizeof(body) - 1, NULL, NULL), 0);
	assert_int_equal(om_client_get(c, "/big", OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, sizeof(body) - 1);
	assert_memory_equal(o.data, body, sizeof(body) - 1);
	om_object_free(&o);
	assert_int_equal(om_client_retries(c), 0);
	drop(c);
}

static void
test_uri_limit(void **state)
{
	static uint8_t buf[4096];
	char uri[1026], msg[256];
	om_client_t *c;
	om_object_t o;
	om_resp_t r;
	size_t n;
	int fd;

	(void)state;
	up(1, NULL);
	memset(uri, 'u', 1025);
	uri[0] = '/';
	uri[1025] = '\0';
	fd = om_raw_connect_unix(D.sock);
	/* 1025 bytes: refused, a PUT's body skipped, the connection goes on. */
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_GET, 41, 0, uri, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_int_equal(r.id, 41);
	assert_true(r.msg_len > 0);
	n = om_raw_req(buf, OM_OP_PUT, 42, 0, uri, 0, 100);
	memset(buf + n, 'b', 100);
	om_raw_send_all(fd, buf, n + 100);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_int_equal(r.id, 42);
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_PING, 43, 0, NULL, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(r.id, 43);
	/* Nothing was stored under its first 1024 bytes either; and 1024
	 * bytes is a URI like any other. */
	uri[1024] = '\0';
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_STAT, 44, 0, uri, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_NOT_FOUND);
	c = client();
	assert_int_equal(om_client_put(c, uri, "at the limit", 12, NULL, NULL), 0);
	assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, 12);
	assert_memory_equal(o.data, "at the limit", 12);
	om_object_free(&o);
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_STAT, 45, 0, uri, 0, 0));
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(r.body_len, 12);
	close(fd);
	drop(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_uri_limit, down),
		cmocka_unit_test_teardown(test_max_object_size, down),
		cmocka_unit_test_teardown(test_max_connections, down),
		cmocka_unit_test_teardown(test_max_connections_after_pause, down),
		cmocka_unit_test_teardown(test_max_connections_counted, down),
		cmocka_unit_test_teardown(test_idle_timeout, down),
		cmocka_unit_test_teardown(test_request_timeout, down),
		cmocka_unit_test_teardown(test_request_timeout_put_body, down),
		cmocka_unit_test_teardown(test_request_timeout_counts_first_read, down),
		cmocka_unit_test_teardown(test_pipeline_bounded, down),
		cmocka_unit_test_teardown(test_many_idle_connections, down),
		cmocka_unit_test_teardown(test_max_files, down),
		cmocka_unit_test_teardown(test_nofile_below_wanted, down),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
