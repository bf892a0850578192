/*
 * Bit rot at the real daemon: one byte flipped in an object's file behind
 * the daemon's back. The scrub finds it within a pass and quarantines it
 * (corrupt/, never served again, logged once, counted); a GET that reads
 * the bytes anyway (copy mode) refuses to pass them off as the object;
 * `objmapper verify` says which objects are damaged and asks the daemon
 * to check them, or starts a pass; a restart does not bring a quarantined
 * object back. A store read through sooner than scrub_interval waits for
 * the rest of it before the next pass (VERIFY's passes do not).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_packs.h"
#include "om_test.h"

static om_daemon_t D;
static om_client_t *cl;

static void
up(const char *extra)
{
	om_daemon_init(&D, 1, extra);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
}

static int
down(void **state)
{
	(void)state;
	om_client_close(cl);
	cl = NULL;
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	return 0;
}

static om_info_t
put(const char *uri, size_t len, uint64_t seed)
{
	return om_test_put_filled(cl, uri, len, seed);
}

static void
obj_path(char *buf, size_t n, uint64_t id)
{
	om_daemon_obj_path(&D, buf, n, id);
}

static void
flip(uint64_t id, off_t at)
{
	char path[600];
	unsigned char b;
	int fd;

	obj_path(path, sizeof(path), id);
	assert_int_equal(chmod(path, 0640), 0);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 1;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
	assert_int_equal(chmod(path, 0440), 0);
}

static uint64_t
stat_value(const char *name)
{
	char *text = NULL, *p;
	uint64_t v = 0;

	assert_int_equal(om_client_stats(cl, &text), 0);
	p = strstr(text, name);
	if (p != NULL && (p == text || p[-1] == '\n'))
		v = strtoull(p + strlen(name), NULL, 10);
	free(text);
	return v;
}

static int
gone(void *arg)
{
	return om_client_stat(cl, arg, 0, NULL, NULL, NULL) == -OM_STATUS_NOT_FOUND;
}

static unsigned
log_lines(const char *needle)
{
	const char *p = om_daemon_log(&D);
	unsigned n = 0;

	while ((p = strstr(p, needle)) != NULL) {
		n++;
		p += strlen(needle);
	}
	return n;
}

/* The scrub, at its rate, finds a flipped byte and quarantines it. */
static void
test_scrub_finds_bit_rot(void **state)
{
	char path[600], corrupt[600];
	om_info_t a, b;
	struct stat sb;

	(void)state;
	up("[cache]\ninterval = 100ms\nscrub_rate = 64M\nscrub_interval = 0\n");
	for (int i = 0; i < 50; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/s/%d", i);
		put(uri, 1000 + (size_t)i * 997, (uint64_t)i);
	}
	a = put("/rot", 300000, 99);
	b = put("/fine", 300000, 98);
	flip(a.id, 123456);
	if (!om_wait_until(gone, "/rot", 10000))
		fail_msg("the damaged object is still served after 10 s of scrubbing at 64 MiB/s");
	assert_int_equal(om_client_stat(cl, "/fine", 0, NULL, NULL, NULL), 0);
	for (int i = 0; i < 50; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/s/%d", i);
		assert_int_equal(om_client_stat(cl, uri, 0, NULL, NULL, NULL), 0);
	}
	assert_int_equal(stat_value("objects_damaged_total "), 1);
	/* Logged once, whatever the passes after it. */
	usleep(500 * 1000);
	assert_true(stat_value("scrub_passes_total ") >= 1);
	assert_true(stat_value("scrub_objects_total ") >= 51);
	assert_int_equal(log_lines("do not match their checksum"), 1);
	obj_path(path, sizeof(path), a.id);
	assert_int_equal(stat(path, &sb), -1);
	snprintf(corrupt, sizeof(corrupt), "%s/objects/corrupt/%016llx", D.dir, (unsigned long long)a.id);
	assert_int_equal(stat(corrupt, &sb), 0);
	/* A restart does not bring it back. */
	om_client_close(cl);
	cl = NULL;
	om_daemon_stop(&D);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
	assert_int_equal(om_client_stat(cl, "/rot", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_stat(cl, "/fine", 0, NULL, NULL, NULL), 0);
	(void)b;
}

/*
 * The scrub reads at its rate in small steps, not the interval's worth at
 * once: a burst of a second's reading every interval took one CPU for
 * 11 ms (8 MiB/s, 1 KiB objects) from the workers' clients.
 */
static void
test_scrub_in_steps(void **state)
{
	uint64_t last, first, now;
	unsigned grew = 0, windows = 40;

	(void)state;
	up("[cache]\ninterval = 1s\nscrub_rate = 1M\nscrub_interval = 0\n");
	/* 2 MiB: more than two seconds of the rate, so the scrub never waits
	 * for a new pass. */
	for (int i = 0; i < 512; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/st/%d", i);
		put(uri, 4096, (uint64_t)i);
	}
	usleep(1100 * 1000);
	first = last = stat_value("scrub_bytes_total ");
	for (unsigned w = 0; w < windows; w++) {
		usleep(50 * 1000);
		now = stat_value("scrub_bytes_total ");
		grew += now > last;
		last = now;
	}
	print_message("scrub_bytes_total grew in %u of %u windows of 50 ms, by %llu bytes in all\n", grew, windows,
	    (unsigned long long)(last - first));
	/* Every 20 ms a step: most windows see one. Once per interval, two
	 * windows would. */
	assert_true(grew >= windows / 2);
	/* And the rate holds: 2 s of windows (and their STATS), at 1 MiB/s,
	 * with a step's catching up. */
	assert_true(last - first <= (uint64_t)3 << 20);
}

/* A byte of packed object id flipped in its pack (at `at` of its bytes). */
static void
flip_packed(uint64_t id, uint64_t at)
{
	char tier[400], path[1200];
	unsigned char b;
	uint64_t off;
	int fd;

	snprintf(tier, sizeof(tier), "%s/objects", D.dir);
	if (om_packs_find(tier, OM_TIER_PERSISTENT, id, path, sizeof(path), &off) != 0)
		fail_msg("object %llu is in no pack", (unsigned long long)id);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, (off_t)(off + at)), 1);
	b ^= 1;
	assert_int_equal(pwrite(fd, &b, 1, (off_t)(off + at)), 1);
	close(fd);
}

/* A worker that reads the bytes anyway (copy mode) checks them: a small
 * object (3000 bytes: packed, at the default pack_max), inline, and a
 * large one (a file), streamed. */
static void
test_copy_mode_checks(void **state)
{
	om_object_t o;
	om_info_t s, l;

	(void)state;
	up("[cache]\nscrub_rate = 0\n");
	s = put("/small", 3000, 1);
	l = put("/large", 1000000, 2);
	flip_packed(s.id, 0);
	flip(l.id, 999999);
	/* Inline: an error instead of the bytes. */
	assert_int_equal(om_client_get(cl, "/small", OM_MODE_COPY, 0, &o), -OM_STATUS_INTERNAL);
	assert_non_null(strstr(om_client_message(cl), "damaged"));
	assert_int_equal(om_client_stat(cl, "/small", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	/* Streamed: the connection breaks before the last bytes; the retry
	 * finds it gone. */
	assert_true(om_client_get(cl, "/large", OM_MODE_COPY, 0, &o) < 0);
	assert_int_equal(om_client_stat(cl, "/large", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	assert_int_equal(stat_value("objects_damaged_total "), 2);
}

/* objmapper verify: exit status and message; the daemon quarantines. */
static int
cli(const char *args, char *out, size_t n)
{
	char cmd[1200];
	FILE *p;
	size_t got;
	int status;

	snprintf(cmd, sizeof(cmd), "%s -s %s %s 2>&1", om_test_program("objmapper"), D.sock, args);
	p = popen(cmd, "r");
	assert_non_null(p);
	got = fread(out, 1, n - 1, p);
	out[got] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_cli_verify(void **state)
{
	char out[1024];
	om_info_t a, b;

	(void)state;
	up("[cache]\ninterval = 100ms\nscrub_rate = 0\n");
	a = put("/v/a", 200000, 5);
	b = put("/v/b", 200000, 6);
	if (cli("verify /v/a", out, sizeof(out)) != 0)
		fail_msg("objmapper verify /v/a: %s", out);
	assert_non_null(strstr(out, "ok /v/a: 200000 bytes"));
	flip(a.id, 7);
	if (cli("-m fdpass verify /v/a", out, sizeof(out)) != 4)
		fail_msg("objmapper -m fdpass verify /v/a: %s", out);
	assert_non_null(strstr(out, "/v/a is damaged"));
	assert_non_null(strstr(out, "reported to the daemon"));
	if (!om_wait_until(gone, "/v/a", 5000))
		fail_msg("verify reported /v/a, but the daemon still serves it");
	/* No scrub rate: a pass runs when asked for. */
	flip(b.id, 100);
	assert_int_equal(cli("verify", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "a scrub pass over the store started"));
	if (!om_wait_until(gone, "/v/b", 5000))
		fail_msg("an on-demand scrub pass did not find /v/b");
	assert_int_equal(stat_value("objects_damaged_total "), 2);
	assert_int_equal(cli("verify /v/none", out, sizeof(out)), 1);
}

static int
passes_reach(void *arg)
{
	return stat_value("scrub_passes_total ") >= *(const uint64_t *)arg;
}

/*
 * A small store is read through in a step; the next pass waits for the
 * rest of scrub_interval (1 hour by default) instead of starting at
 * once: 50 passes a second, each reading every object again (and
 * dropping the cold ones from the page cache). A pass VERIFY asks for
 * does not wait.
 */
static void
test_scrub_waits_between_passes(void **state)
{
	char out[1024];
	uint64_t want = 1, passes, objects;

	(void)state;
	up("[cache]\ninterval = 100ms\nscrub_rate = 64M\n");
	for (int i = 0; i < 20; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/w/%d", i);
		put(uri, 4096, (uint64_t)i);
	}
	if (!om_wait_until(passes_reach, &want, 5000))
		fail_msg("no scrub pass in 5 s at 64 MiB/s");
	passes = stat_value("scrub_passes_total ");
	objects = stat_value("scrub_objects_total ");
	usleep(1000 * 1000);
	print_message("scrub passes %llu -> %llu, objects checked %llu -> %llu in 1 s\n",
	    (unsigned long long)passes, (unsigned long long)stat_value("scrub_passes_total "),
	    (unsigned long long)objects, (unsigned long long)stat_value("scrub_objects_total "));
	assert_int_equal(stat_value("scrub_passes_total "), passes);
	assert_int_equal(stat_value("scrub_objects_total "), objects);
	/* Asked for, a pass starts at once, and is followed by none. */
	assert_int_equal(cli("verify", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "a scrub pass over the store started"));
	want = passes + 1;
	if (!om_wait_until(passes_reach, &want, 5000))
		fail_msg("the pass VERIFY asked for did not run: %s", out);
	usleep(500 * 1000);
	assert_int_equal(stat_value("scrub_passes_total "), passes + 1);
	assert_int_equal(stat_value("scrub_objects_total "), objects + 20);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_scrub_finds_bit_rot, down),
		cmocka_unit_test_teardown(test_copy_mode_checks, down),
		cmocka_unit_test_teardown(test_cli_verify, down),
		cmocka_unit_test_teardown(test_scrub_in_steps, down),
		cmocka_unit_test_teardown(test_scrub_waits_between_passes, down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
