/*
 * Instant restart: the index kept in its file ([index] file, beside the
 * pid file by default) is attached at the next start instead of rebuilt
 * from the tiers, after a graceful stop and after every process of the
 * daemon was killed; every object is there and nothing else, changes made
 * before the stop are kept. Anything doubtful falls back to the rebuild,
 * and the log says which way it went and why: no index file, other
 * [index] settings, a file that is not an index, a tier changed while the
 * daemon was stopped, a tier made anew, an index that fails its check.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "om_daemon.h"
#include "om_test.h"
#include "store/om_store.h"

#define NOBJ  100000
#define OSIZE 64

static om_daemon_t D;
static om_client_t *cl;
static char ixfile[400];

static double
now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void
body(char *buf, uint32_t i)
{
	memset(buf, 'a' + (int)(i % 26), OSIZE);
	memcpy(buf, &i, sizeof(i));
}

/* The daemon's tiers, filled through the engine directly (quicker than
 * 100,000 PUTs over a socket); the daemon's first start rebuilds them. */
static void
fill(void)
{
	om_ix_params_t ip = { .capacity = NOBJ + 1024, .max_uri = 256 };
	om_store_params_t p = { 0 };
	om_put_args_t a = { .size = OSIZE };
	char disk[400], err[256], k[32], buf[OSIZE];
	om_index_t *ix;
	om_store_t *st;
	double t0 = now_s();

	snprintf(disk, sizeof(disk), "%s/objects", D.dir);
	p.mem.path = D.mem;
	p.mem.limit = 256u << 20;
	p.disk.path = disk;
	assert_int_equal(om_index_create(&ip, &ix), 0);
	if (om_store_open(&p, ix, &st, err, sizeof(err)) != 0)
		fail_msg("store: %s", err);
	for (uint32_t i = 0; i < NOBJ; i++) {
		int len = snprintf(k, sizeof(k), "/r/%08u", i);

		body(buf, i);
		assert_int_equal(om_store_put(st, k, (size_t)len, buf, &a, NULL), 0);
	}
	om_store_close(st);
	om_index_close(ix);
	print_message("%u objects written in %.1f s\n", NOBJ, now_s() - t0);
}

/* Starts the daemon and measures until its socket answers. */
static double
start(void)
{
	double t0 = now_s();

	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
	return now_s() - t0;
}

static void
stop(void)
{
	om_client_close(cl);
	cl = NULL;
	om_daemon_stop(&D);
}

/* Every process of the daemon at once, as a crash or an OOM kill of the
 * whole unit would. */
static void
kill_group(void)
{
	pid_t kids[32];
	int n = om_daemon_children(&D, kids, 32, NULL);

	om_client_close(cl);
	cl = NULL;
	kill(D.pid, SIGKILL);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	om_daemon_wait(&D, 5000);
	for (int i = 0; i < n; i++)
		while (kill(kids[i], 0) == 0)
			usleep(10000);
}

static uint64_t
stat_value(const char *name)
{
	char *text = NULL, *p;
	uint64_t v = 0;

	assert_int_equal(om_client_stats(cl, &text), 0);
	p = strstr(text, name);
	if (p != NULL)
		v = strtoull(p + strlen(name), NULL, 10);
	free(text);
	return v;
}

/* All objects, and the bytes of every 97th. */
static void
check_all(uint32_t deleted_from, uint32_t deleted_to)
{
	char k[32], buf[OSIZE], got[OSIZE];

	assert_int_equal(stat_value("index_objects "), NOBJ - (deleted_to - deleted_from));
	for (uint32_t i = 0; i < NOBJ; i += 97) {
		size_t n = 0;
		int rc;

		snprintf(k, sizeof(k), "/r/%08u", i);
		rc = om_client_get_buf(cl, k, OM_MODE_COPY, got, sizeof(got), &n, NULL);
		if (i >= deleted_from && i < deleted_to) {
			assert_int_equal(rc, -OM_STATUS_NOT_FOUND);
			continue;
		}
		if (rc != 0)
			fail_msg("GET %s: %s", k, om_client_message(cl));
		body(buf, i);
		assert_int_equal(n, OSIZE);
		assert_memory_equal(got, buf, OSIZE);
	}
}

static void
log_has(const char *what)
{
	const char *log = om_daemon_log(&D);

	if (strstr(log, what) == NULL) {
		/* What it says about the index instead. */
		for (const char *p = log; (p = strstr(p, "index ")) != NULL; p++) {
			const char *e = strchr(p, '\n');

			print_message("log: %.*s\n", e ? (int)(e - p) : (int)strlen(p), p);
			if (e == NULL)
				break;
			p = e;
		}
		fail_msg("the daemon's log does not say \"%s\"", what);
	}
}

/* The log's last word on how the index came to be. */
static int
attached(void)
{
	const char *log = om_daemon_log(&D);
	const char *a = NULL, *r = NULL, *p;

	for (p = log; (p = strstr(p, "index attached from")) != NULL; p++)
		a = p;
	for (p = log; (p = strstr(p, "index rebuilt in")) != NULL; p++)
		r = p;
	if (a == NULL && r == NULL)
		fail_msg("the log says neither attached nor rebuilt");
	return a != NULL && (r == NULL || a > r);
}

/* The harness's [index] capacity, for one of this test's. */
static void
set_capacity(const char *from, const char *to)
{
	FILE *f = fopen(D.conf, "r+");
	char text[8192], *p;
	size_t n;

	assert_non_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	p = strstr(text, from);
	assert_non_null(p);
	assert_int_equal(strlen(from), strlen(to));
	memcpy(p, to, strlen(to));
	rewind(f);
	fputs(text, f);
	fclose(f);
}

static int
setup(void **state)
{
	(void)state;
	om_daemon_init(&D, 2, NULL);
	/* Room for the 100,000 objects and what the test adds: a full index
	 * would evict. */
	set_capacity("capacity = 100000", "capacity = 150000");
	snprintf(ixfile, sizeof(ixfile), "%s/objmapperd.index", D.dir);
	fill();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	om_client_close(cl);
	cl = NULL;
	if (D.pid > 0)
		om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	return 0;
}

static void
test_attach_after_quit_and_kill(void **state)
{
	double first, t;
	char k[32], buf[OSIZE];

	(void)state;
	first = start();
	assert_false(attached());
	check_all(0, 0);
	stop();

	t = start();
	print_message("100,000 objects: ready %.3f s after the first start (rebuild), %.3f s after QUIT "
	    "(attach)\n", first, t);
	assert_true(attached());
	log_has("left by a graceful stop): 100000 objects");
	check_all(0, 0);

	/* Changes made before a stop are kept: new objects, deleted ones. */
	for (uint32_t i = 0; i < 10; i++) {
		snprintf(k, sizeof(k), "/new/%u", i);
		body(buf, i + 7);
		assert_int_equal(om_client_put(cl, k, buf, OSIZE, NULL, NULL), 0);
	}
	for (uint32_t i = 5000; i < 5010; i++) {
		snprintf(k, sizeof(k), "/r/%08u", i);
		assert_int_equal(om_client_delete(cl, k), 0);
	}
	kill_group();
	t = start();
	print_message("ready %.3f s after kill -9 of every process (attach and repair)\n", t);
	assert_true(attached());
	log_has("its processes had died; repaired): 100000 objects");
	for (uint32_t i = 0; i < 10; i++) {
		char got[OSIZE];
		size_t n = 0;

		snprintf(k, sizeof(k), "/new/%u", i);
		assert_int_equal(om_client_get_buf(cl, k, OM_MODE_COPY, got, sizeof(got), &n, NULL), 0);
		body(buf, i + 7);
		assert_memory_equal(got, buf, OSIZE);
	}
	for (uint32_t i = 5000; i < 5010; i++) {
		snprintf(k, sizeof(k), "/r/%08u", i);
		assert_int_equal(om_client_stat(cl, k, 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	}
	{
		char err[256];

		assert_int_equal(om_daemon_check_index(&D, err, sizeof(err)), 0);
	}
	stop();
}

/* Each doubt sends the start to the rebuild, which finds the same objects. */
static void
expect_rebuild(const char *why)
{
	start();
	if (attached())
		fail_msg("attached where it should have rebuilt (%s):\n%s", why, om_daemon_log(&D));
	log_has(why);
	assert_int_equal(stat_value("index_objects "), NOBJ);
	stop();
	/* ... and the next start attaches again. */
	start();
	assert_true(attached());
	stop();
}

static void
test_fallbacks(void **state)
{
	char path[600], name[32];
	int fd;

	(void)state;
	/* A reboot emptied the tmpfs that held the file. */
	assert_int_equal(unlink(ixfile), 0);
	start();
	assert_false(attached());
	stop();

	/* Other [index] settings. */
	set_capacity("capacity = 150000", "capacity = 200000");
	expect_rebuild("it was made for other [index] settings");

	/* Not an index: its header scribbled over. */
	fd = open(ixfile, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "garbage!", 8, 0), 8);
	close(fd);
	expect_rebuild("it holds no index of this version");

	/* A file of the tier removed behind the stopped daemon's back. */
	om_store_object_name(1, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/objects/%s", D.dir, name);
	/* The object comes back in the rebuild: put it back after. */
	{
		char aside[600];

		snprintf(aside, sizeof(aside), "%s/aside", D.dir);
		assert_int_equal(rename(path, aside), 0);
		start();
		assert_false(attached());
		log_has("files of the persistent tier changed while the daemon "
		    "was stopped");
		assert_int_equal(stat_value("index_objects "), NOBJ - 1);
		stop();
		assert_int_equal(rename(aside, path), 0);
		expect_rebuild("files of the persistent tier changed while the daemon was stopped");
	}

	/* The memory tier made anew (its stamp is another). */
	{
		char stamp[600];

		snprintf(stamp, sizeof(stamp), "%s/.objmapper-stamp", D.mem);
		assert_int_equal(unlink(stamp), 0);
		expect_rebuild("it belongs to another memory tier");
	}

	/* An index that fails its check: a chain link scribbled over, in a
	 * file left by processes that died (so nothing else is checked). */
	start();
	kill_group();
	{
		om_index_t *ix;
		uint64_t off;

		fd = open(ixfile, O_RDWR | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(om_index_attach(fd, &ix), 0);
		/* The arena ends the segment (at most a page before its end):
		 * the middle of its used part is blocks. */
		{
			om_ix_usage_t u;

			om_index_usage(ix, &u);
			off = u.segment_bytes - u.arena_bytes - 4096 + u.arena_used / 2;
		}
		om_index_close(ix);
		fd = open(ixfile, O_WRONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		{
			char junk[4096];

			memset(junk, 0x5a, sizeof(junk));
			assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)off), (ssize_t)sizeof(junk));
		}
		close(fd);
	}
	expect_rebuild("its consistency check failed");
}

/* The daemon started as a shell starts a background job: QUIT and INT
 * ignored. */
static void
ignore_quit(void)
{
	signal(SIGQUIT, SIG_IGN);
	signal(SIGINT, SIG_IGN);
}

/*
 * A QUIT that comes while the daemon starts (here, in the middle of a
 * rebuild of 100,000 objects) is not lost: the daemon finishes starting,
 * then stops gracefully, even where it was started with QUIT ignored (it
 * went on serving, and systemd's stop waited for its timeout).
 */
static void
test_quit_while_starting(void **state)
{
	struct stat sb;
	int status = -1;
	double t0;

	(void)state;
	assert_int_equal(unlink(ixfile), 0);
	(void)unlink(D.pidfile);
	{
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			int fd = open(D.log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

			prctl(PR_SET_PDEATHSIG, SIGKILL);
			dup2(fd, 1);
			dup2(fd, 2);
			ignore_quit();
			execl(om_test_program("objmapperd"), "objmapperd", "-F", "-f", D.conf, (char *)NULL);
			_exit(127);
		}
		D.pid = pid;
	}
	/* The pid file is made (empty) before the index: the rebuild is
	 * under way, or about to be. */
	t0 = now_s();
	while (stat(D.pidfile, &sb) != 0 && now_s() - t0 < 10)
		usleep(1000);
	assert_int_equal(stat(D.pidfile, &sb), 0);
	assert_int_equal(kill(D.pid, SIGQUIT), 0);
	t0 = now_s();
	while (now_s() - t0 < 30) {
		if (waitpid(D.pid, &status, WNOHANG) == D.pid)
			break;
		usleep(10000);
	}
	if (!WIFEXITED(status))
		fail_msg("a QUIT sent while it started did not stop it within 30 s:\n%s", om_daemon_log(&D));
	assert_int_equal(WEXITSTATUS(status), 0);
	log_has("index rebuilt");
	D.pid = 0;
	/* The stop sealed the index: the next start attaches it. */
	start();
	assert_true(attached());
	assert_int_equal(stat_value("index_objects "), NOBJ);
	stop();
}

int
main(void)
{
	/* One daemon's tiers for both (filling them is the slow part); the
	 * second starts where the first left them: 100,000 objects, 10 of
	 * them replaced by others. */
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_attach_after_quit_and_kill),
		cmocka_unit_test(test_fallbacks),
		cmocka_unit_test(test_quit_while_starting),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
