/*
 * libobjmapper's streamed PUT (om_client_put_begin/write/end/abort) and
 * its timeout (om_client_set_timeout) against the real daemon: what a
 * cache writing a body through as it arrives relies on (vmod_objmapper).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_test.h"

static om_daemon_t D;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int
two_children(void *arg)
{
	pid_t kids[8];

	(void)arg;
	return om_daemon_children(&D, kids, 8, NULL) >= 2;
}

/* The daemon's children once its worker and cache manager run: the socket
 * answers as soon as the master has bound it (connections wait in the
 * backlog), before they are forked (under a sanitizer, on a loaded
 * machine). */
static int
children_running(pid_t *kids, int max)
{
	assert_true(om_wait_until(two_children, NULL, 10000));
	return om_daemon_children(&D, kids, max, NULL);
}

/* GET uri and compare with want (len bytes); the object's metadata too. */
static void
assert_object(om_client_t *c, const char *uri, const void *want, size_t len, const char *meta)
{
	om_object_t o;
	char *got = malloc(len ? len : 1);

	assert_non_null(got);
	assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, OM_GET_WANT_META, &o), 0);
	assert_int_equal(o.len, len);
	memcpy(got, o.data, len);
	assert_memory_equal(got, want, len);
	if (meta != NULL) {
		assert_int_equal(o.meta_len, strlen(meta));
		assert_memory_equal(o.meta, meta, strlen(meta));
	}
	om_object_free(&o);
	free(got);
}

static void
test_streamed_put(void **state)
{
	const size_t len = 3u * 1024 * 1024 + 17;
	static const char meta[] = "Content-Type: text/plain\r\n";
	om_put_opts_t opts = { .meta = meta, .meta_len = sizeof(meta) - 1 };
	om_client_t *c;
	om_info_t info, st;
	uint8_t *buf = malloc(len);
	size_t off = 0, step = 1;

	(void)state;
	assert_non_null(buf);
	om_test_fill(buf, len, 7);
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	opts.expires = (int64_t)time(NULL) + 3600;
	assert_int_equal(om_client_put_begin(c, "/s/big", len, &opts), 0);
	/* Pieces of every size, from 1 byte up, as a fetch hands them over. */
	while (off < len) {
		size_t n = step < len - off ? step : len - off;

		assert_int_equal(om_client_put_write(c, buf + off, n), 0);
		off += n;
		step = step * 3 + 1;
	}
	assert_int_equal(om_client_put_end(c, &info), 0);
	assert_int_equal(info.size, len);
	assert_int_equal(om_client_stat(c, "/s/big", 0, &st, NULL, NULL), 0);
	assert_int_equal(st.id, info.id);
	assert_int_equal(st.crc, info.crc);
	assert_int_equal(st.expires, opts.expires);
	assert_object(c, "/s/big", buf, len, meta);

	/* An empty object, and a replacement of the big one. */
	assert_int_equal(om_client_put_begin(c, "/s/empty", 0, NULL), 0);
	assert_int_equal(om_client_put_end(c, &info), 0);
	assert_int_equal(info.size, 0);
	assert_object(c, "/s/empty", "", 0, NULL);
	om_test_fill(buf, 5000, 8);
	assert_int_equal(om_client_put_begin(c, "/s/big", 5000, NULL), 0);
	assert_int_equal(om_client_put_write(c, buf, 5000), 0);
	assert_int_equal(om_client_put_end(c, &st), 0);
	assert_true(st.id > info.id);
	assert_object(c, "/s/big", buf, 5000, "");
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	free(buf);
}

/* A PUT that never gets its last byte stores nothing: the old version
 * stays, a new URI stays absent, whether aborted or the handle closed. */
static void
test_streamed_put_abort(void **state)
{
	const size_t len = 1024 * 1024;
	om_client_t *c, *c2;
	om_info_t st;
	uint8_t *old = malloc(len), *nu = malloc(len);

	(void)state;
	assert_non_null(old);
	assert_non_null(nu);
	om_test_fill(old, len, 1);
	om_test_fill(nu, len, 2);
	om_daemon_init(&D, 1, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/s/a", old, len, NULL, NULL), 0);

	assert_int_equal(om_client_put_begin(c, "/s/a", len, NULL), 0);
	assert_int_equal(om_client_put_write(c, nu, len - 1), 0);
	om_client_put_abort(c);
	/* The handle goes on, on a new connection. */
	assert_object(c, "/s/a", old, len, NULL);

	assert_int_equal(om_client_connect(D.sock, 0, &c2), 0);
	assert_int_equal(om_client_put_begin(c2, "/s/never", len, NULL), 0);
	assert_int_equal(om_client_put_write(c2, nu, len / 2), 0);
	om_client_close(c2);
	assert_int_equal(om_client_stat(c, "/s/never", 0, &st, NULL, NULL), -OM_STATUS_NOT_FOUND);
	/* And the daemon took the dropped connections in its stride. */
	assert_int_equal(om_client_put_begin(c, "/s/never", 3, NULL), 0);
	assert_int_equal(om_client_put_write(c, "abc", 3), 0);
	assert_int_equal(om_client_put_end(c, NULL), 0);
	assert_object(c, "/s/never", "abc", 3, NULL);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	free(old);
	free(nu);
}

static void
test_streamed_put_misuse(void **state)
{
	om_client_t *c;
	om_object_t o;
	om_info_t st;

	(void)state;
	om_daemon_init(&D, 1, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put_write(c, "x", 1), -OM_EINVAL);
	assert_int_equal(om_client_put_end(c, NULL), -OM_EINVAL);
	assert_int_equal(om_client_put_begin(c, "bad uri", 1, NULL), -OM_EINVAL);

	/* No other request while a streamed PUT is open. */
	assert_int_equal(om_client_put_begin(c, "/m/a", 10, NULL), 0);
	assert_int_equal(om_client_get(c, "/m/a", OM_MODE_AUTO, 0, &o), -OM_EINVAL);
	assert_int_equal(om_client_ping(c), -OM_EINVAL);
	assert_int_equal(om_client_put_begin(c, "/m/b", 1, NULL), -OM_EINVAL);
	/* Too few bytes at the end: refused, nothing stored. */
	assert_int_equal(om_client_put_write(c, "12345", 5), 0);
	assert_int_equal(om_client_put_end(c, NULL), -OM_EINVAL);
	assert_non_null(strstr(om_client_message(c), "lacks 5 bytes"));
	assert_int_equal(om_client_stat(c, "/m/a", 0, &st, NULL, NULL), -OM_STATUS_NOT_FOUND);
	/* Too many: refused, nothing stored. */
	assert_int_equal(om_client_put_begin(c, "/m/a", 2, NULL), 0);
	assert_int_equal(om_client_put_write(c, "123", 3), -OM_EINVAL);
	assert_int_equal(om_client_stat(c, "/m/a", 0, &st, NULL, NULL), -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_ping(c), 0);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/* The daemon's workers stopped (SIGSTOP): a call gives up after the
 * handle's timeout instead of hanging, and works again once they run. */
static void
test_timeout(void **state)
{
	pid_t kids[8];
	int n;
	om_client_t *c, *c2;
	om_object_t o;
	double t0, waited;
	const size_t len = 16u * 1024 * 1024;
	uint8_t *buf = malloc(len);
	int rc = 0;

	(void)state;
	assert_non_null(buf);
	om_test_fill(buf, len, 3);
	om_daemon_init(&D, 1, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_connect(D.sock, 0, &c2), 0);
	assert_int_equal(om_client_put(c, "/t/a", "abc", 3, NULL, NULL), 0);
	om_client_set_timeout(c, 300);
	om_client_set_timeout(c2, 300);
	assert_int_equal(om_client_put_begin(c, "/t/b", len, NULL), 0);
	n = children_running(kids, 8);
	assert_true(n > 0);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGSTOP);

	t0 = now_s();
	assert_int_equal(om_client_get(c2, "/t/a", OM_MODE_COPY, 0, &o), -OM_ETIMEDOUT);
	waited = now_s() - t0;
	print_message("GET gave up after %.3f s\n", waited);
	assert_true(waited >= 0.25 && waited < 3.0);
	/* Connecting again: the kernel accepts, HELLO gets no answer. */
	t0 = now_s();
	assert_int_equal(om_client_ping(c2), -OM_ETIMEDOUT);
	waited = now_s() - t0;
	print_message("a new connection gave up after %.3f s\n", waited);
	assert_true(waited >= 0.25 && waited < 3.0);
	/* The streamed PUT: its bytes fill the socket, then the wait expires. */
	t0 = now_s();
	for (size_t off = 0; off < len && rc == 0; off += 65536)
		rc = om_client_put_write(c, buf + off, 65536);
	waited = now_s() - t0;
	print_message("streamed PUT gave up after %.3f s\n", waited);
	assert_int_equal(rc, -OM_ETIMEDOUT);
	assert_true(waited < 5.0);

	for (int i = 0; i < n; i++)
		kill(kids[i], SIGCONT);
	assert_int_equal(om_client_get(c, "/t/a", OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, 3);
	om_object_free(&o);
	assert_int_equal(om_client_get(c2, "/t/a", OM_MODE_FDPASS, 0, &o), 0);
	om_object_free(&o);
	assert_int_equal(om_client_stat(c, "/t/b", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	om_client_close(c);
	om_client_close(c2);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	free(buf);
}

/* OM_CLIENT_LAZY: the handle connects at its first call, which the
 * timeout set in between bounds. */
static void
test_lazy_connect(void **state)
{
	pid_t kids[8];
	int n;
	om_client_t *c;
	double t0, waited;
	char missing[400];

	(void)state;
	om_daemon_init(&D, 1, NULL);
	snprintf(missing, sizeof(missing), "%s/no-such.sock", D.dir);
	assert_int_equal(om_client_connect(missing, OM_CLIENT_LAZY, &c), 0);
	assert_int_equal(om_client_fd(c), -1);
	assert_int_equal(om_client_ping(c), -OM_ECONNECT);
	om_client_close(c);

	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, OM_CLIENT_LAZY, &c), 0);
	assert_int_equal(om_client_fd(c), -1);
	om_client_set_timeout(c, 300);
	n = children_running(kids, 8);
	assert_true(n > 0);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGSTOP);
	t0 = now_s();
	assert_int_equal(om_client_ping(c), -OM_ETIMEDOUT);
	waited = now_s() - t0;
	print_message("the first call gave up after %.3f s\n", waited);
	assert_true(waited >= 0.25 && waited < 3.0);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGCONT);
	assert_int_equal(om_client_ping(c), 0);
	assert_true(om_client_fd(c) >= 0);
	assert_true(om_client_caps(c)->max_meta > 0);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/* An idle connection that the daemon closed (idle timeout, with its
 * GOAWAY) is noticed before a streamed PUT is sent on it. */
static void
test_put_begin_after_idle_close(void **state)
{
	om_client_t *c;

	(void)state;
	om_daemon_init(&D, 1, "idle_timeout = 1s\n");
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_ping(c), 0);
	sleep(3);
	assert_int_equal(om_client_put_begin(c, "/i/a", 2, NULL), 0);
	assert_int_equal(om_client_put_write(c, "hi", 2), 0);
	assert_int_equal(om_client_put_end(c, NULL), 0);
	assert_object(c, "/i/a", "hi", 2, NULL);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_streamed_put),
		cmocka_unit_test(test_streamed_put_abort),
		cmocka_unit_test(test_streamed_put_misuse),
		cmocka_unit_test(test_timeout),
		cmocka_unit_test(test_lazy_connect),
		cmocka_unit_test(test_put_begin_after_idle_close),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
