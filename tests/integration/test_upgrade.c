/*
 * Binary upgrade, nginx's way: SIGUSR2 starts the binary again as a
 * second master with the listeners, tiers and index handed over, the old
 * pid file becomes PID_FILE.oldbin, and QUIT to the old master finishes.
 * Twenty upgrades under a load on every transport (Unix and TCP through
 * libobjmapper, UDP datagrams, HTTP keep-alive) fail no request and lose
 * no object; a new binary that cannot start leaves the old one serving,
 * its pid file back, and the reason in the log.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_load.h"
#include "om_test.h"

#define KEYS     24
#define SMALL    32   /* small objects for UDP and HTTP */
#define UPGRADES 20

static om_daemon_t D;
static int tcp_port, udp_port, http_port;
static char pidfile[400], oldbin[420];

/* Counters of the UDP and HTTP clients (forked), in shared memory. */
typedef struct {
	uint32_t stop;
	uint64_t ops[2], failures[2], reconnects;
	char why[2][256];
} shared_t;
static shared_t *sh;
static pid_t kids[2];

static pid_t
pid_in(const char *path)
{
	FILE *f = fopen(path, "r");
	int pid = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%d", &pid) != 1)
		pid = 0;
	fclose(f);
	return pid;
}

static void
small_body(char *buf, unsigned i)
{
	memset(buf, 'A' + (int)(i % 26), 200);
	memcpy(buf, &i, sizeof(i));
}

/* ---- UDP: GETs of small objects through libobjmapper ------------------ */

static void
udp_client(void)
{
	char addr[64], got[256], want[256];
	om_client_t *c = NULL;
	unsigned i = 0;

	snprintf(addr, sizeof(addr), "udp://127.0.0.1:%d", udp_port);
	if (om_client_connect(addr, 0, &c) != 0)
		_exit(2);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		char uri[32];
		size_t n = 0;
		int rc;

		snprintf(uri, sizeof(uri), "/small/%u", i % SMALL);
		rc = om_client_get_buf(c, uri, OM_MODE_COPY, got, sizeof(got), &n, NULL);
		small_body(want, i % SMALL);
		if (rc != 0 || n != 200 || memcmp(got, want, 200) != 0) {
			if (sh->failures[0]++ == 0)
				snprintf(sh->why[0], sizeof(sh->why[0]), "UDP GET %s: %s", uri,
				    rc ? om_client_message(c) : "wrong bytes");
		}
		sh->ops[0]++;
		i++;
	}
	om_client_close(c);
	_exit(0);
}

/* ---- HTTP: keep-alive GETs; a connection closed under a request is
 * opened again and the request sent again, as HTTP clients do ---------- */

static int
http_connect(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sa.sin_port = htons((uint16_t)http_port);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* One exchange: 1 the body came whole and right, 0 the connection ended
 * first (try again), -1 a wrong answer. *closing: the server said close. */
static int
http_get(int fd, unsigned i, int *closing)
{
	char req[128], buf[1024], want[256];
	size_t have = 0;
	int len = snprintf(req, sizeof(req), "GET /small/%u HTTP/1.1\r\nHost: t\r\n\r\n", i % SMALL);
	char *end;

	if (send(fd, req, (size_t)len, MSG_NOSIGNAL) != len)
		return 0;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 10000) != 1)
			return -1;
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0)
			return 0;
		have += (size_t)n;
		buf[have] = '\0';
		if ((end = strstr(buf, "\r\n\r\n")) != NULL && have >= (size_t)(end + 4 - buf) + 200)
			break;
	}
	if (strncmp(buf, "HTTP/1.1 200 ", 13) != 0)
		return -1;
	small_body(want, i % SMALL);
	if (memcmp(end + 4, want, 200) != 0)
		return -1;
	*closing = strstr(buf, "Connection: close") != NULL;
	return 1;
}

static void
http_client(void)
{
	unsigned i = 0;
	int fd = -1;

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		int closing = 0, rc = 0;

		for (int tries = 0; tries < 3 && rc == 0; tries++) {
			if (fd < 0 && (fd = http_connect()) < 0)
				break;
			rc = http_get(fd, i, &closing);
			if (rc == 0) {
				close(fd);
				fd = -1;
				sh->reconnects++;
			}
		}
		if (rc != 1 && sh->failures[1]++ == 0)
			snprintf(sh->why[1], sizeof(sh->why[1]), "HTTP GET /small/%u: %s", i % SMALL,
			    rc == 0 ? "no answer after 3 connections" : "wrong answer");
		if (closing && fd >= 0) {
			close(fd);
			fd = -1;
		}
		sh->ops[1]++;
		i++;
	}
	if (fd >= 0)
		close(fd);
	_exit(0);
}

static void
start_kids(void)
{
	for (int k = 0; k < 2; k++) {
		kids[k] = fork();
		assert_true(kids[k] >= 0);
		if (kids[k] == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (k == 0)
				udp_client();
			http_client();
		}
	}
}

static void
stop_kids(void)
{
	__atomic_store_n(&sh->stop, 1, __ATOMIC_RELAXED);
	for (int k = 0; k < 2; k++)
		if (kids[k] > 0)
			om_test_wait(kids[k]);
	kids[0] = kids[1] = 0;
}

/* ---- the daemon ---------------------------------------------------------- */

static void
up(void)
{
	char extra[1024];

	tcp_port = om_test_free_port();
	udp_port = om_test_free_port();
	http_port = om_test_free_port();
	memset(&D, 0, sizeof(D));
	om_daemon_init(&D, 2, NULL);
	snprintf(extra, sizeof(extra),
	    "[log]\ntarget = file\nfile = %s\nlevel = info\n"
	    "[listen.tcp]\ntype = tcp\nport = %d\n"
	    "[listen.udp]\ntype = udp\nport = %d\nmax_datagram = 1472\n"
	    "[listen.web]\ntype = http\nport = %d\n", D.log, tcp_port, udp_port, http_port);
	om_daemon_write_conf(&D, 2, extra);
	D.detached = 1;
	snprintf(pidfile, sizeof(pidfile), "%s/objmapperd.pid", D.dir);
	snprintf(oldbin, sizeof(oldbin), "%s.oldbin", pidfile);
	om_daemon_start(&D);
}

static int
teardown(void **state)
{
	pid_t p;

	(void)state;
	stop_kids();
	/* Whichever masters are left (a failed test may leave two). */
	if ((p = pid_in(oldbin)) > 0)
		kill(p, SIGKILL);
	if ((p = pid_in(pidfile)) > 0 && p != D.pid)
		kill(p, SIGKILL);
	if (D.pid > 0)
		om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	return 0;
}

static void
preload_small(void)
{
	om_client_t *c = NULL;
	char uri[32], buf[256];

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	for (unsigned i = 0; i < SMALL; i++) {
		snprintf(uri, sizeof(uri), "/small/%u", i);
		small_body(buf, i);
		assert_int_equal(om_client_put(c, uri, buf, 200, NULL, NULL), 0);
	}
	om_client_close(c);
}

static int
until(int (*fn)(void *), void *arg, int ms)
{
	return om_wait_until(fn, arg, ms);
}

static pid_t want_old;

static int
new_master_up(void *arg)
{
	pid_t p = pid_in(pidfile);

	(void)arg;
	return p > 0 && p != want_old && kill(p, 0) == 0 && pid_in(oldbin) == want_old;
}

static int
old_gone(void *arg)
{
	(void)arg;
	return kill(want_old, 0) != 0;
}

/* One upgrade: USR2, the new master writes its pid file, QUIT to the old. */
static void
upgrade_once(unsigned n)
{
	want_old = D.pid;
	assert_int_equal(kill(want_old, SIGUSR2), 0);
	if (!until(new_master_up, NULL, 15000))
		fail_msg("upgrade %u: no new master in 15 s:\n%s", n, om_daemon_log(&D));
	assert_int_equal(kill(want_old, SIGQUIT), 0);
	if (!until(old_gone, NULL, 20000))
		fail_msg("upgrade %u: the old master (pid %d) did not finish:\n%s", n, (int)want_old,
		    om_daemon_log(&D));
	/* The old pid file is its to remove; the new one stays. */
	assert_int_equal(access(oldbin, F_OK), -1);
	D.pid = pid_in(pidfile);
}

static void
test_upgrades_under_load(void **state)
{
	om_load_result_t ru, rt;
	om_load_t *lu, *lt;
	char tcp[64], err[256];
	uint64_t before;

	(void)state;
	up();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	snprintf(tcp, sizeof(tcp), "tcp://127.0.0.1:%d", tcp_port);
	assert_int_equal(om_load_preload(D.sock, KEYS), 0);
	preload_small();
	lu = om_load_start(D.sock, 2, KEYS, 10);
	lt = om_load_start(tcp, 2, KEYS, 0);
	start_kids();
	for (unsigned n = 1; n <= UPGRADES; n++) {
		before = om_load_ops(lu) + om_load_ops(lt) + sh->ops[0] + sh->ops[1];
		upgrade_once(n);
		/* Every client gets on with the new master before the next. */
		for (int t = 0; t < 500 && om_load_ops(lu) + om_load_ops(lt) + sh->ops[0] + sh->ops[1] < before + 200; t++)
			usleep(10000);
	}
	usleep(300 * 1000);
	om_load_stop(lu, &ru);
	om_load_stop(lt, &rt);
	stop_kids();
	print_message("%u upgrades: unix %llu ops (%llu failed), tcp %llu (%llu), udp %llu (%llu), http %llu "
	    "(%llu; %llu connections opened again)\n", UPGRADES, (unsigned long long)ru.ops,
	    (unsigned long long)ru.failures, (unsigned long long)rt.ops, (unsigned long long)rt.failures,
	    (unsigned long long)sh->ops[0], (unsigned long long)sh->failures[0],
	    (unsigned long long)sh->ops[1], (unsigned long long)sh->failures[1],
	    (unsigned long long)sh->reconnects);
	if (ru.failures || rt.failures || ru.wrong || rt.wrong)
		fail_msg("libobjmapper clients: %s %s", ru.why, rt.why);
	if (sh->failures[0] || sh->failures[1])
		fail_msg("%s %s", sh->why[0], sh->why[1]);
	assert_true(ru.ops > 0 && rt.ops > 0 && sh->ops[0] > 0 && sh->ops[1] > 0);
	/* Still one daemon, whole. */
	assert_int_equal(om_daemon_check_index(&D, err, sizeof(err)), 0);
	assert_int_equal(om_load_preload(D.sock, 1), 0);
}

/* A new binary that cannot start: the old master serves on. */
static void
test_failed_upgrade(void **state)
{
	FILE *f;
	om_client_t *c = NULL;

	(void)state;
	up();
	/* The file as the new master reads it is wrong. */
	f = fopen(D.conf, "a");
	assert_non_null(f);
	fputs("[cache]\nno_such_key = 1\n", f);
	fclose(f);
	want_old = D.pid;
	assert_int_equal(kill(D.pid, SIGUSR2), 0);
	for (int t = 0; t < 500 && strstr(om_daemon_log(&D), "binary upgrade failed") == NULL; t++)
		usleep(10000);
	if (strstr(om_daemon_log(&D), "binary upgrade failed: the new master exited with status 1") == NULL)
		fail_msg("no word of the failed upgrade:\n%s", om_daemon_log(&D));
	assert_int_equal(pid_in(pidfile), D.pid);
	assert_int_equal(access(oldbin, F_OK), -1);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_ping(c), 0);
	om_client_close(c);
	/* Fixed, it upgrades. */
	om_daemon_write_conf(&D, 2, NULL);
	{
		char extra[1024];

		snprintf(extra, sizeof(extra), "[log]\ntarget = file\nfile = %s\nlevel = info\n"
		    "[listen.tcp]\ntype = tcp\nport = %d\n[listen.udp]\ntype = udp\nport = %d\n"
		    "[listen.web]\ntype = http\nport = %d\n", D.log, tcp_port, udp_port, http_port);
		om_daemon_write_conf(&D, 2, extra);
	}
	upgrade_once(1);
}

/* What the daemon told "systemd" (NOTIFY_SOCKET): the last MAINPID
 * with READY=1 within ms, or 0. */
static pid_t
notified_main(int fd, int ms)
{
	pid_t main_pid = 0;
	char buf[256];

	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;
		const char *m;

		if (poll(&p, 1, ms) != 1)
			return main_pid;
		n = recv(fd, buf, sizeof(buf) - 1, 0);
		if (n <= 0)
			return main_pid;
		buf[n] = '\0';
		if (strstr(buf, "READY=1") != NULL && (m = strstr(buf, "MAINPID=")) != NULL)
			main_pid = atoi(m + 8);
		ms = 200;
	}
}

/*
 * Under systemd (Type=notify, NotifyAccess=all, -F): each master says
 * READY=1 and its MAINPID, so that the service follows the new master of
 * an upgrade (a child of the old one, adopted by the service manager when
 * the old one leaves) instead of taking the old one's exit for its end.
 */
static void
test_upgrade_notifies_systemd(void **state)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char path[300];
	pid_t old, new_master;
	int fd;

	(void)state;
	/* The service manager adopts orphans: so do we. */
	assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
	memset(&D, 0, sizeof(D));
	om_daemon_init(&D, 1, NULL);
	snprintf(pidfile, sizeof(pidfile), "%s/objmapperd.pid", D.dir);
	snprintf(oldbin, sizeof(oldbin), "%s.oldbin", pidfile);
	snprintf(path, sizeof(path), "%s/notify", D.dir);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", path, 1);
	om_daemon_start(&D);
	unsetenv("NOTIFY_SOCKET");
	old = D.pid;
	assert_int_equal(notified_main(fd, 5000), old);

	want_old = old;
	assert_int_equal(kill(old, SIGUSR2), 0);
	new_master = notified_main(fd, 10000);
	assert_true(new_master > 0 && new_master != old);
	assert_true(until(new_master_up, NULL, 5000));
	assert_int_equal(pid_in(pidfile), new_master);
	assert_int_equal(kill(old, SIGQUIT), 0);
	assert_int_equal(WEXITSTATUS(om_test_wait(old)), 0);
	/* The new master goes on, now ours (the subreaper's). */
	{
		om_client_t *c = NULL;

		assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
		assert_int_equal(om_client_ping(c), 0);
		om_client_close(c);
	}
	D.pid = new_master;
	close(fd);
	unlink(path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_upgrades_under_load, teardown),
		cmocka_unit_test_teardown(test_failed_upgrade, teardown),
		cmocka_unit_test_teardown(test_upgrade_notifies_systemd, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
