/*
 * libobjmapper and the objmapper command when the peer is not objmapperd
 * (issue 15, point 3): an HTTP answer to HELLO fails at once with "not an
 * objmapper socket: ..."; a peer that never answers HELLO, or a daemon
 * that never answers a request, is given up after the documented connect
 * and request timeouts (defaults included), so no call waits forever.
 * The peers are fake listeners forked by the test, and the real daemon's
 * HTTP listener.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_test.h"
#include "proto/om_proto.h"

#define NOT_OURS "not an objmapper socket: "

/* How a fake peer behaves on each connection it accepts. */
enum peer_kind {
	PEER_HTTP,   /* answers an HTTP 400 to the first bytes, keeps the connection */
	PEER_SILENT, /* reads, never answers */
	PEER_STALL,  /* answers HELLO as objmapperd does, then never answers */
};

typedef struct {
	char dir[256];
	char sock[300];
	pid_t pid;
	int accepts; /* read end: one byte per connection accepted */
} peer_t;

/* A HELLO answer as the daemon's (a Unix listener, pipelining 16). */
static size_t
hello_answer(uint8_t *buf, uint32_t id)
{
	static const char name[] = "fake";
	om_hello_caps_t hc = { .version = 1, .transport = OM_TRANSPORT_UNIX, .modes = 0xf,
		.max_uri = 1024, .max_meta = 2048, .max_pipeline = 16, .inline_threshold = 65536 };
	om_resp_t r = { .version = 1, .op = OM_OP_HELLO, .id = id, .body = OM_BODY_INLINE,
		.body_len = OM_HELLO_CAPS_LEN + sizeof(name) - 1 };

	om_proto_put_resp(buf, &r);
	om_proto_put_caps(buf + OM_RESP_HDR_LEN, &hc);
	memcpy(buf + OM_RESP_HDR_LEN + OM_HELLO_CAPS_LEN, name, sizeof(name) - 1);
	return OM_RESP_HDR_LEN + OM_HELLO_CAPS_LEN + sizeof(name) - 1;
}

/* One connection: behave, then hold it until the client closes it (or
 * 60 s pass, so that a client that waits forever is not waited for
 * forever by the test). */
static void
serve(int fd, enum peer_kind kind)
{
	uint8_t in[4096], out[256];
	int answered = 0;

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 60000) <= 0)
			break;
		n = read(fd, in, sizeof(in));
		if (n <= 0)
			break;
		if (answered)
			continue;
		answered = 1;
		if (kind == PEER_HTTP) {
			static const char resp[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";

			(void)write(fd, resp, sizeof(resp) - 1);
		} else if (kind == PEER_STALL && n >= (ssize_t)OM_REQ_HDR_LEN) {
			size_t len = hello_answer(out, om_get32(in + 4));

			(void)write(fd, out, len);
		}
	}
	close(fd);
}

static void
peer_start(peer_t *pe, enum peer_kind kind)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int ls, pfd[2];

	om_test_mkdtemp(pe->dir, sizeof(pe->dir), NULL);
	snprintf(pe->sock, sizeof(pe->sock), "%s/peer.sock", pe->dir);
	strcpy(sa.sun_path, pe->sock);
	ls = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(ls >= 0);
	assert_int_equal(bind(ls, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(ls, 16), 0);
	assert_int_equal(pipe(pfd), 0);
	pe->pid = fork();
	assert_true(pe->pid >= 0);
	if (pe->pid == 0) {
		close(pfd[0]);
		for (;;) {
			int fd = accept(ls, NULL, NULL);

			if (fd < 0)
				_exit(1);
			(void)write(pfd[1], "a", 1);
			if (fork() == 0) {
				close(ls);
				serve(fd, kind);
				_exit(0);
			}
			close(fd);
		}
	}
	close(ls);
	close(pfd[1]);
	pe->accepts = pfd[0];
}

/* Connections the peer accepted so far. */
static int
peer_accepts(const peer_t *pe)
{
	char buf[64];
	int n = 0;

	for (;;) {
		struct pollfd p = { pe->accepts, POLLIN, 0 };
		ssize_t r;

		if (poll(&p, 1, 0) <= 0)
			break;
		r = read(pe->accepts, buf, sizeof(buf));
		if (r <= 0)
			break;
		n += (int)r;
	}
	return n;
}

static void
peer_stop(peer_t *pe)
{
	kill(pe->pid, SIGKILL);
	om_test_wait(pe->pid);
	close(pe->accepts);
	om_test_rmtree(pe->dir);
}

/* Runs objmapper with args; stderr into err. Returns the exit status. */
static int
cli(char *err, size_t cap, const char *const *argv)
{
	const char *args[16] = { "objmapper" };
	int ep[2], n = 1, status;
	size_t got = 0;
	pid_t pid;

	for (; *argv != NULL && n < 15; argv++)
		args[n++] = *argv;
	assert_int_equal(pipe(ep), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(ep[1], 2);
		close(ep[0]);
		execv(om_test_program("objmapper"), (char *const *)args);
		_exit(127);
	}
	close(ep[1]);
	for (ssize_t r; (r = read(ep[0], err + got, cap - 1 - got)) > 0;)
		got += (size_t)r;
	err[got] = '\0';
	close(ep[0]);
	status = om_test_wait(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define ARGV(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* An HTTP answer to HELLO: -OM_EPROTO at once, on the first connection,
 * while the peer still holds it (a client waiting for a whole response
 * header would wait until the peer gives up). */
static void
test_http_answer_fails_at_once(void **state)
{
	peer_t pe;
	om_client_t *c = NULL;
	char err[1024];
	int rc;

	(void)state;
	peer_start(&pe, PEER_HTTP);
	rc = om_client_connect(pe.sock, 0, &c);
	assert_int_equal(rc, -OM_EPROTO);
	print_message("%s\n", om_client_message(c));
	assert_int_equal(strncmp(om_client_message(c), NOT_OURS, strlen(NOT_OURS)), 0);
	assert_non_null(strstr(om_client_message(c), "HTTP/1.1 400 Bad Request"));
	assert_int_equal(peer_accepts(&pe), 1);
	om_client_close(c);

	assert_int_equal(cli(err, sizeof(err), ARGV("-s", pe.sock, "ping")), 3);
	print_message("%s", err);
	assert_int_equal(strncmp(err, "objmapper: ping: " NOT_OURS, 17 + strlen(NOT_OURS)), 0);
	assert_non_null(strstr(err, "HTTP/1.1 400 Bad Request"));
	assert_int_equal(peer_accepts(&pe), 1);
	peer_stop(&pe);
}

/* No answer to HELLO: given up after the connect timeout, with no retry. */
static void
test_no_hello_answer_connect_timeout(void **state)
{
	peer_t pe;
	om_client_t *c = NULL;
	char err[1024];

	(void)state;
	peer_start(&pe, PEER_SILENT);
	assert_int_equal(om_client_connect_timeout(pe.sock, 0, 300, &c), -OM_ETIMEDOUT);
	print_message("%s\n", om_client_message(c));
	assert_int_equal(strncmp(om_client_message(c), NOT_OURS, strlen(NOT_OURS)), 0);
	assert_non_null(strstr(om_client_message(c), "no answer to HELLO within 300 ms"));
	assert_int_equal(peer_accepts(&pe), 1);
	om_client_close(c);

	assert_int_equal(cli(err, sizeof(err), ARGV("-t", "300", "-s", pe.sock, "ping")), 3);
	print_message("%s", err);
	assert_non_null(strstr(err, "objmapper: ping: " NOT_OURS));
	assert_non_null(strstr(err, "no answer to HELLO within 300 ms"));
	assert_int_equal(cli(err, sizeof(err), ARGV("-t", "soon", "-s", pe.sock, "ping")), 2);
	peer_stop(&pe);
}

/* HELLO answered, the request never: -OM_ETIMEDOUT after the request
 * timeout, the connection dropped; the next call connects again. */
static void
test_request_timeout(void **state)
{
	peer_t pe;
	om_client_t *c = NULL;
	om_object_t o;
	char err[1024];

	(void)state;
	peer_start(&pe, PEER_STALL);
	assert_int_equal(om_client_connect(pe.sock, 0, &c), 0);
	assert_string_equal(om_client_caps(c)->server, "fake");
	om_client_set_timeout(c, 300);
	assert_int_equal(om_client_get(c, "/a", OM_MODE_AUTO, 0, &o), -OM_ETIMEDOUT);
	assert_int_equal(o.fd, -1);
	assert_int_equal(om_client_fd(c), -1);
	assert_int_equal(om_client_ping(c), -OM_ETIMEDOUT);
	assert_int_equal(peer_accepts(&pe), 2);
	om_client_close(c);

	assert_int_equal(cli(err, sizeof(err), ARGV("-t", "300", "-s", pe.sock, "stat", "/a")), 3);
	print_message("%s", err);
	assert_non_null(strstr(err, "no answer within 300 ms"));
	peer_stop(&pe);
}

/* The defaults bound every wait: a peer that never answers HELLO, and one
 * that never answers a request, each given up (OM_CLIENT_CONNECT_TIMEOUT,
 * OM_CLIENT_REQUEST_TIMEOUT) by a client that set nothing. Both run at
 * once, in two processes. */
static void
test_default_timeouts(void **state)
{
	peer_t silent, stall;
	pid_t kid[2];
	int status;

	(void)state;
	peer_start(&silent, PEER_SILENT);
	peer_start(&stall, PEER_STALL);
	for (int k = 0; k < 2; k++) {
		kid[k] = fork();
		assert_true(kid[k] >= 0);
		if (kid[k] == 0) {
			om_client_t *c = NULL;
			int rc;

			if (k == 0) {
				rc = om_client_connect(silent.sock, 0, &c);
			} else {
				om_object_t o;

				rc = om_client_connect(stall.sock, 0, &c);
				if (rc == 0)
					rc = om_client_get(c, "/a", OM_MODE_AUTO, 0, &o);
			}
			fprintf(stderr, "%s: %d %s\n", k ? "request" : "connect", rc,
			    om_client_message(c));
			om_client_close(c);
			_exit(rc == -OM_ETIMEDOUT ? 0 : 1);
		}
	}
	for (int k = 0; k < 2; k++) {
		status = om_test_wait(kid[k]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	assert_int_equal(peer_accepts(&silent), 1);
	assert_int_equal(peer_accepts(&stall), 1);
	peer_stop(&silent);
	peer_stop(&stall);
}

/* The daemon's own HTTP listener: HELLO there is refused with "not an
 * objmapper socket" (an HTTP 400, or no answer within the timeout). */
static void
test_real_http_listener(void **state)
{
	om_daemon_t d;
	om_client_t *c = NULL;
	char http[400], err[1024];
	int rc;

	(void)state;
	om_daemon_init(&d, 1, "[listen.http]\ntype = http\npath = http.sock\n");
	om_daemon_start(&d);
	snprintf(http, sizeof(http), "%s/http.sock", d.dir);
	rc = om_client_connect_timeout(http, 0, 1000, &c);
	print_message("%d %s\n", rc, om_client_message(c));
	assert_true(rc == -OM_EPROTO || rc == -OM_ETIMEDOUT);
	assert_int_equal(strncmp(om_client_message(c), NOT_OURS, strlen(NOT_OURS)), 0);
	om_client_close(c);
	assert_int_equal(cli(err, sizeof(err), ARGV("-t", "1000", "-s", http, "get", "/x")), 3);
	assert_non_null(strstr(err, "objmapper: get /x: " NOT_OURS));
	/* The objmapper listener beside it answers. */
	assert_int_equal(om_client_connect(d.sock, 0, &c), 0);
	assert_int_equal(om_client_ping(c), 0);
	om_client_close(c);
	om_daemon_stop(&d);
	om_daemon_cleanup(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_http_answer_fails_at_once),
		cmocka_unit_test(test_no_hello_answer_connect_timeout),
		cmocka_unit_test(test_request_timeout),
		cmocka_unit_test(test_real_http_listener),
		cmocka_unit_test(test_default_timeouts),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
