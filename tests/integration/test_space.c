/*
 * Space at the real daemon, with its tiers on tmpfs mounts of a few MiB
 * in a mount namespace of the test's own: a PUT that can never fit gets
 * TOO_LARGE and one that cannot fit now NO_SPACE, with nothing evicted;
 * a PUT that fits by evicting keeps the filesystem's reserve free; an
 * unfinished PUT holds only what it sent and is cut when it trickles; a
 * full index evicts (or, with eviction = none, says which limit); a
 * DELETE the filesystem refuses is an error and stays undone across a
 * restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"
#include "proto/om_proto.h"

static om_daemon_t D;
static int have_ns;
static char disk[400];
static om_client_t *cl;

#define MiB (1024u * 1024u)

/* The daemon with its persistent tier (and, with mem_mb, its memory
 * tier) on tmpfs mounts of its own. */
static void
up(unsigned disk_mb, unsigned mem_mb, const char *mem_conf, const char *disk_conf, const char *extra)
{
	char opt[64];

	if (!have_ns)
		skip();
	om_daemon_init(&D, 1, extra);
	snprintf(D.mem_conf, sizeof(D.mem_conf), "%s", mem_conf);
	snprintf(D.disk_conf, sizeof(D.disk_conf), "%s", disk_conf);
	om_daemon_write_conf(&D, 1, extra);
	snprintf(disk, sizeof(disk), "%s/objects", D.dir);
	assert_int_equal(mkdir(disk, 0750), 0);
	if (disk_mb) {
		snprintf(opt, sizeof(opt), "size=%um,mode=0750", disk_mb);
		assert_int_equal(mount("tmpfs", disk, "tmpfs", 0, opt), 0);
	} else {
		/* A mount of its own, to be made read-only. */
		assert_int_equal(mount(disk, disk, "none", MS_BIND, NULL), 0);
	}
	if (mem_mb) {
		snprintf(opt, sizeof(opt), "size=%um,mode=0750", mem_mb);
		assert_int_equal(mount("tmpfs", D.mem, "tmpfs", 0, opt), 0);
	}
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
}

static int
down(void **state)
{
	(void)state;
	om_client_close(cl);
	cl = NULL;
	if (D.pid > 0)
		om_daemon_stop(&D);
	if (disk[0]) {
		umount2(disk, MNT_DETACH);
		umount2(D.mem, MNT_DETACH);
		disk[0] = '\0';
	}
	om_daemon_cleanup(&D);
	return 0;
}

static int
put(const char *uri, const void *data, size_t len, unsigned flags)
{
	om_put_opts_t o = { .flags = flags };

	return om_client_put(cl, uri, data, len, &o, NULL);
}

static unsigned
count_present(const char *fmt, unsigned n)
{
	unsigned have = 0;
	char uri[64];

	for (unsigned i = 0; i < n; i++) {
		snprintf(uri, sizeof(uri), fmt, i);
		if (om_client_stat(cl, uri, 0, NULL, NULL, NULL) == 0)
			have++;
	}
	return have;
}

/* A statistic as STATS gives it (summed over its labels, if any). */
static uint64_t
stat_of(const char *name)
{
	char *text = NULL;
	uint64_t sum = 0;
	size_t n = strlen(name);

	assert_int_equal(om_client_stats(cl, &text), 0);
	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{'))
			sum += strtoull(strchr(p, ' ') + 1, NULL, 10);
	}
	free(text);
	return sum;
}

static uint64_t
free_bytes(const char *path)
{
	struct statvfs v;

	assert_int_equal(statvfs(path, &v), 0);
	return (uint64_t)v.f_bavail * v.f_frsize;
}

/* One HTTP request on a fresh connection; the status of the answer. */
static int
http_status(const char *sock, const char *req)
{
	char buf[512];
	int fd = om_raw_connect_unix(sock), status = -1;
	size_t have = 0;

	om_raw_send_all(fd, req, strlen(req));
	while (have < sizeof(buf) - 1) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 5000) != 1 || (n = read(fd, buf + have, sizeof(buf) - 1 - have)) <= 0)
			break;
		have += (size_t)n;
		buf[have] = '\0';
		if (strstr(buf, "\r\n") != NULL)
			break;
	}
	buf[have] = '\0';
	if (sscanf(buf, "HTTP/1.1 %d", &status) != 1)
		status = -1;
	close(fd);
	return status;
}

/*
 * 14.1: a PUT that can never fit, or cannot fit now, evicts nothing. The
 * persistent tier has no size of its own (the default), its filesystem
 * 8 MiB: the tier may take 8 MiB less the 5% reserve.
 */
static void
test_never_fits_evicts_nothing(void **state)
{
	static char obj[1000];
	uint8_t hdr[OM_REQ_HDR_LEN + 64];
	char msg[256], uri[64], web[400];
	unsigned char *big;
	om_resp_t r;
	size_t len;
	int fd;

	(void)state;
	up(8, 8, "size = 0", "size = 0", "[listen.web]\ntype = http\npath = web.sock\n");
	snprintf(web, sizeof(web), "%s/web.sock", D.dir);
	for (unsigned i = 0; i < 300; i++) {
		snprintf(uri, sizeof(uri), "/keep/%u", i);
		assert_int_equal(put(uri, obj, sizeof(obj), 0), 0);
	}
	for (unsigned i = 0; i < 20; i++) {
		snprintf(uri, sizeof(uri), "/eph/%u", i);
		assert_int_equal(put(uri, obj, sizeof(obj), OM_PUT_EPHEMERAL), 0);
	}

	/* A bare header announcing 1 TiB: TOO_LARGE at once. */
	fd = om_raw_connect_unix(D.sock);
	len = om_raw_req(hdr, OM_OP_PUT, 7, 0, "/huge", 0, 1ull << 40);
	om_raw_send_all(fd, hdr, len);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_TOO_LARGE);
	assert_non_null(strstr(msg, "more than the persistent tier can ever hold"));
	close(fd);
	/* The same over HTTP: 413. */
	assert_int_equal(http_status(web, "PUT /huge HTTP/1.1\r\nHost: a\r\n"
	    "Content-Length: 1099511627776\r\n\r\n"), 413);
	/* Larger than the filesystem, in either tier. */
	big = calloc(1, 12 * MiB);
	assert_non_null(big);
	assert_int_equal(put("/big", big, 12 * MiB, 0), -OM_STATUS_TOO_LARGE);
	assert_int_equal(put("/big", big, 12 * MiB, OM_PUT_EPHEMERAL), -OM_STATUS_TOO_LARGE);
	assert_int_equal(count_present("/keep/%u", 300), 300);
	assert_int_equal(count_present("/eph/%u", 20), 20);

	/*
	 * Another program fills the filesystem: what is left, with every
	 * object of the tier evicted, is less than the PUT. NO_SPACE at
	 * once, nothing evicted.
	 */
	{
		char path[500];
		uint64_t fr = free_bytes(disk), reserve = 8 * MiB / 20;
		int b;

		snprintf(path, sizeof(path), "%s/ballast", disk);
		b = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
		assert_true(b >= 0);
		assert_int_equal(fallocate(b, 0, 0, (off_t)(fr - reserve - 100 * 1024)), 0);
		close(b);
		assert_int_equal(put("/big", big, 2 * MiB, 0), -OM_STATUS_NO_SPACE);
		assert_non_null(strstr(om_client_message(cl), "no room in the persistent tier"));
		fd = om_raw_connect_unix(D.sock);
		len = om_raw_req(hdr, OM_OP_PUT, 8, 0, "/big", 0, 2 * MiB);
		om_raw_send_all(fd, hdr, len);
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_NO_SPACE);
		close(fd);
		assert_int_equal(count_present("/keep/%u", 300), 300);

		/* One that fits by evicting the tier's own objects does, and
		 * the reserve stays free. */
		assert_int_equal(put("/fits", big, 300 * 1024, 0), 0);
		assert_true(count_present("/keep/%u", 300) < 300);
		usleep(200 * 1000); /* the worker closes what it had open of them */
		if (free_bytes(disk) < reserve)
			fail_msg("%llu bytes free, under the reserve of %llu",
			    (unsigned long long)free_bytes(disk), (unsigned long long)reserve);
		unlink(path);
	}
	free(big);
	assert_int_equal(count_present("/eph/%u", 20), 20);
}

/*
 * 14.1: a tier with no size of its own fills its filesystem only up to
 * the reserve: PUTs go on by evicting the least recently used.
 */
static void
test_reserve_kept_free(void **state)
{
	unsigned char *obj = malloc(256 * 1024);
	uint64_t reserve = 8 * MiB / 20, low = UINT64_MAX;
	char uri[64];

	(void)state;
	assert_non_null(obj);
	up(8, 0, "", "size = 0", NULL);
	for (unsigned i = 0; i < 100; i++) {
		uint64_t fr;

		om_test_fill(obj, 256 * 1024, i);
		snprintf(uri, sizeof(uri), "/r/%u", i);
		if (put(uri, obj, 256 * 1024, 0) != 0)
			fail_msg("PUT %u: %s", i, om_client_message(cl));
		usleep(60 * 1000); /* the worker hears of what it evicted */
		fr = free_bytes(disk);
		if (fr < low)
			low = fr;
	}
	free(obj);
	print_message("8 MiB tier, size = 0: 100 PUTs of 256 KiB; lowest free %llu bytes, reserve %llu\n",
	    (unsigned long long)low, (unsigned long long)reserve);
	/* The lowest point: one PUT's step ahead of its eviction at most. */
	assert_true(low + 256 * 1024 >= reserve);
	assert_true(count_present("/r/%u", 100) >= 20);
}

/*
 * 14.1 for small objects (8 KiB: packed, pack_max = 16K): a
 * filesystem left with little more than the reserve free by another
 * program. Their PUTs check the room on the filesystem as a file's bytes
 * do: they go on by evicting the tier's own objects, whose bytes come
 * back when their pack is compacted, and the reserve stays free (one
 * PUT's step aside, as above).
 */
static void
test_small_puts_keep_the_reserve(void **state)
{
	static unsigned char obj[8192];
	uint64_t reserve = 8 * MiB / 20, low = UINT64_MAX;
	char uri[64], path[500];
	int b;

	(void)state;
	up(8, 0, "", "size = 0\npack_max = 16K", NULL);
	snprintf(path, sizeof(path), "%s/ballast", disk);
	b = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(b >= 0);
	assert_int_equal(fallocate(b, 0, 0, (off_t)(free_bytes(disk) - reserve - 256 * 1024)), 0);
	close(b);
	for (unsigned i = 0; i < 200; i++) {
		uint64_t fr;

		om_test_fill(obj, sizeof(obj), i);
		snprintf(uri, sizeof(uri), "/s/%u", i);
		if (put(uri, obj, sizeof(obj), 0) != 0)
			fail_msg("PUT %u: %s", i, om_client_message(cl));
		fr = free_bytes(disk);
		if (fr < low)
			low = fr;
	}
	print_message("256 KiB over the reserve free, 200 PUTs of 8 KiB: lowest free %llu bytes, "
	    "reserve %llu\n", (unsigned long long)low, (unsigned long long)reserve);
	assert_true(low + 256 * 1024 >= reserve);
	assert_true(count_present("/s/%u", 200) >= 10);
	unlink(path);
}

/*
 * 14.2: a PUT header announcing 200 MiB holds nothing it has not sent,
 * and a body that trickles is cut after about request_timeout.
 */
static void
test_unfinished_put_holds_what_it_sent(void **state)
{
	uint8_t hdr[OM_REQ_HDR_LEN + 64];
	uint64_t before, t0, cut = 0;
	char msg[256];
	om_resp_t r;
	size_t len;
	int fd;

	(void)state;
	up(256, 0, "", "size = 0", "request_timeout = 1s\n");
	before = free_bytes(disk);
	fd = om_raw_connect_unix(D.sock);
	len = om_raw_req(hdr, OM_OP_PUT, 9, 0, "/slow", 0, 200ull * MiB);
	om_raw_send_all(fd, hdr, len);
	om_raw_send_all(fd, "0123456789", 10);
	usleep(300 * 1000);
	if (before - free_bytes(disk) > 2 * MiB)
		fail_msg("an unfinished PUT that sent 10 bytes holds %llu bytes",
		    (unsigned long long)(before - free_bytes(disk)));
	/* A byte every 200 ms: cut, with a GOAWAY saying why. */
	t0 = om_test_now_ms();
	while (om_test_now_ms() - t0 < 20000) {
		struct pollfd p = { fd, POLLIN, 0 };

		if (poll(&p, 1, 200) == 1) {
			cut = om_test_now_ms() - t0;
			break;
		}
		if (send(fd, "x", 1, MSG_NOSIGNAL) != 1) {
			cut = om_test_now_ms() - t0;
			break;
		}
	}
	print_message("a PUT announcing 200 MiB and sending a byte every 200 ms was cut after %llu ms\n",
	    (unsigned long long)cut);
	assert_true(cut > 0 && cut < 5000);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	assert_int_equal(r.op, OM_OP_GOAWAY);
	assert_non_null(strstr(msg, "request timeout"));
	close(fd);
	usleep(100 * 1000);
	assert_true(before - free_bytes(disk) < MiB);
	/* A quick large PUT is not cut. */
	{
		unsigned char *obj = calloc(1, 64 * MiB);

		assert_non_null(obj);
		assert_int_equal(put("/quick", obj, 64 * MiB, 0), 0);
		free(obj);
	}
}

/* 14.3: a full index makes room like a full tier; with eviction = none
 * it refuses and says which limit. */
static void
test_full_index(void **state)
{
	char uri[64];

	(void)state;
	if (have_ns == 0)
		skip();
	om_daemon_init(&D, 1, "[index]\ncapacity = 8\n");
	/* The harness's own [index] goes: only one may appear. */
	{
		FILE *f = fopen(D.conf, "r");
		char text[8192], *p;
		size_t n;

		assert_non_null(f);
		n = fread(text, 1, sizeof(text) - 1, f);
		fclose(f);
		text[n] = '\0';
		p = strstr(text, "[index]\ncapacity = 100000\n");
		assert_non_null(p);
		memmove(p, p + strlen("[index]\ncapacity = 100000\n"), strlen(p + strlen("[index]\ncapacity = 100000\n")) + 1);
		f = fopen(D.conf, "w");
		assert_non_null(f);
		fputs(text, f);
		fclose(f);
	}
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
	for (unsigned i = 0; i < 20; i++) {
		snprintf(uri, sizeof(uri), "/ix/%u", i);
		if (put(uri, "abc", 3, 0) != 0)
			fail_msg("PUT %u into an index of 8: %s", i, om_client_message(cl));
	}
	assert_int_equal(count_present("/ix/%u", 20), 8);
	assert_int_equal(om_client_stat(cl, "/ix/19", 0, NULL, NULL, NULL), 0);
	/* Each of the 12 beyond the capacity evicted one, and says why. */
	assert_int_equal(stat_of("index_evictions_total"), 12);
	assert_int_equal(stat_of("evictions_total"), 12);

	/* A store that must never evict. */
	{
		FILE *f = fopen(D.conf, "a");

		assert_non_null(f);
		fputs("[cache]\neviction = none\n", f);
		fclose(f);
	}
	om_daemon_kill(&D, SIGHUP);
	/* Until the reload takes effect, a PUT of a new URI may still reach
	 * a worker of the old configuration and evict: each try is a URI of
	 * its own, so that a replace (which needs no new entry) never passes
	 * for a refusal. */
	for (unsigned i = 0;; i++) {
		int rc;

		assert_true(i < 100);
		snprintf(uri, sizeof(uri), "/ix/new%u", i);
		if ((rc = put(uri, "abc", 3, 0)) == -OM_STATUS_NO_SPACE)
			break;
		assert_int_equal(rc, 0);
		usleep(50 * 1000);
	}
	assert_non_null(strstr(om_client_message(cl), "index full: capacity 8, and this store never evicts"));
	{
		/* From now on a new URI evicts nothing: the same 8 stay. */
		uint64_t evicted = stat_of("index_evictions_total");
		char held[8][64];
		unsigned n = 0;

		for (unsigned i = 0; i < 120; i++) {
			snprintf(uri, sizeof(uri), i < 20 ? "/ix/%u" : "/ix/new%u", i < 20 ? i : i - 20);
			if (om_client_stat(cl, uri, 0, NULL, NULL, NULL) == 0) {
				assert_true(n < 8);
				snprintf(held[n++], sizeof(held[0]), "%s", uri);
			}
		}
		assert_int_equal(n, 8);
		assert_int_equal(put("/ix/other", "abc", 3, 0), -OM_STATUS_NO_SPACE);
		assert_non_null(strstr(om_client_message(cl), "index full: capacity 8, and this store never evicts"));
		for (unsigned i = 0; i < n; i++)
			assert_int_equal(om_client_stat(cl, held[i], 0, NULL, NULL, NULL), 0);
		assert_int_equal(stat_of("index_evictions_total"), evicted);
		/* A replace needs no new entry. */
		assert_int_equal(put(held[0], "abcd", 4, 0), 0);
	}
}

/*
 * 14.5: a DELETE that the filesystem refuses (remounted read-only, as
 * errors=remount-ro does) is an error, and the object is still there
 * after a restart. The objects are files (pack_max = 0): a bind mount is
 * not remounted read-only while a process holds a file of it open for
 * writing (EBUSY), and the daemon keeps its pack so; a packed object's
 * DELETE fails the same way when its state word cannot be written
 * (store.c, delete_file).
 */
static void
test_delete_refused_stays_undone(void **state)
{
	char msg[512];

	(void)state;
	up(0, 0, "", "size = 2G\npack_max = 0", NULL);
	assert_int_equal(put("/a", "aaa", 3, 0), 0);
	assert_int_equal(put("/b", "bbb", 3, 0), 0);
	assert_int_equal(mount("none", disk, "none", MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0);
	{
		int rc = om_client_delete(cl, "/a");

		snprintf(msg, sizeof(msg), "%s", om_client_message(cl));
		if (rc == 0)
			fail_msg("a DELETE on a read-only filesystem was answered OK");
		assert_int_equal(rc, -OM_STATUS_INTERNAL);
		assert_non_null(strstr(msg, "Read-only file system"));
	}
	/* Still served. */
	{
		char buf[8];
		size_t n = 0;

		assert_int_equal(om_client_get_buf(cl, "/a", OM_MODE_COPY, buf, sizeof(buf), &n, NULL), 0);
		assert_int_equal(n, 3);
		assert_memory_equal(buf, "aaa", 3);
	}
	assert_int_equal(mount("none", disk, "none", MS_REMOUNT | MS_BIND, NULL), 0);
	assert_int_equal(om_client_delete(cl, "/b"), 0);
	om_client_close(cl);
	cl = NULL;
	om_daemon_stop(&D);
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
	assert_int_equal(om_client_stat(cl, "/a", 0, NULL, NULL, NULL), 0);
	assert_int_equal(om_client_stat(cl, "/b", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
}

/* objmapperd -t's verdict on D's configuration, and its message. */
static int
check_conf(char *out, size_t n)
{
	char cmd[1200];
	FILE *p;
	size_t got;
	int status;

	snprintf(cmd, sizeof(cmd), "%s -t -f %s 2>&1", om_test_program("objmapperd"), D.conf);
	p = popen(cmd, "r");
	assert_non_null(p);
	got = fread(out, 1, n - 1, p);
	out[got] = '\0';
	status = pclose(p);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * 15.1: objmapperd -t checks the tiers as a start would: a memory tier on
 * a filesystem that reports no size (ramfs) with a share of it as its
 * size, and a persistent tier on a read-only filesystem, are refused by
 * -t, by a start and by a reload alike; a ramfs with a size in bytes is
 * fine (records in files: it has no user extended attributes).
 */
static void
test_check_tiers(void **state)
{
	char out[1024];

	(void)state;
	if (!have_ns)
		skip();
	om_daemon_init(&D, 1, NULL);
	assert_int_equal(mount("ramfs", D.mem, "ramfs", 0, "mode=0750"), 0);
	snprintf(disk, sizeof(disk), "%s/objects", D.dir);
	assert_int_equal(mkdir(disk, 0750), 0);
	assert_int_equal(mount(disk, disk, "none", MS_BIND, NULL), 0);

	snprintf(D.mem_conf, sizeof(D.mem_conf), "size = 50%%");
	om_daemon_write_conf(&D, 1, NULL);
	assert_int_equal(check_conf(out, sizeof(out)), 1);
	assert_non_null(strstr(out, "memory tier: the filesystem of"));
	assert_non_null(strstr(out, "reports no size (ramfs?): its size must be given in bytes"));
	{
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			execl(om_test_program("objmapperd"), "objmapperd", "-F", "-f", D.conf, (char *)NULL);
			_exit(127);
		}
		assert_int_equal(WEXITSTATUS(om_test_wait(pid)), 1);
	}

	snprintf(D.mem_conf, sizeof(D.mem_conf), "size = 64M");
	om_daemon_write_conf(&D, 1, NULL);
	assert_int_equal(check_conf(out, sizeof(out)), 0);
	assert_string_equal(out, "ok\n");
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
	{
		om_put_opts_t o = { .meta = "m", .meta_len = 1, .flags = OM_PUT_EPHEMERAL };
		void *meta = NULL;
		uint32_t ml = 0;

		assert_int_equal(om_client_put(cl, "/eph", "on ramfs", 8, &o, NULL), 0);
		assert_int_equal(om_client_stat(cl, "/eph", OM_GET_WANT_META, NULL, &meta, &ml), 0);
		assert_int_equal(ml, 1);
		free(meta);
	}
	/* A reload to what a start would refuse is refused; it keeps serving. */
	snprintf(D.mem_conf, sizeof(D.mem_conf), "size = 50%%");
	om_daemon_write_conf(&D, 1, NULL);
	om_daemon_kill(&D, SIGHUP);
	usleep(500 * 1000);
	assert_non_null(strstr(om_daemon_log(&D), "reload failed: memory tier: the filesystem of"));
	assert_int_equal(om_client_stat(cl, "/eph", 0, NULL, NULL, NULL), 0);

	/* A read-only persistent tier. */
	snprintf(D.mem_conf, sizeof(D.mem_conf), "size = 64M");
	om_daemon_write_conf(&D, 1, NULL);
	assert_int_equal(mount("none", disk, "none", MS_REMOUNT | MS_BIND | MS_RDONLY, NULL), 0);
	assert_int_equal(check_conf(out, sizeof(out)), 1);
	assert_non_null(strstr(out, "persistent tier: cannot create files in"));
	assert_non_null(strstr(out, "Read-only file system"));
	assert_int_equal(mount("none", disk, "none", MS_REMOUNT | MS_BIND, NULL), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_never_fits_evicts_nothing, down),
		cmocka_unit_test_teardown(test_reserve_kept_free, down),
		cmocka_unit_test_teardown(test_small_puts_keep_the_reserve, down),
		cmocka_unit_test_teardown(test_unfinished_put_holds_what_it_sent, down),
		cmocka_unit_test_teardown(test_full_index, down),
		cmocka_unit_test_teardown(test_delete_refused_stays_undone, down),
		cmocka_unit_test_teardown(test_check_tiers, down),
	};

	/* Mounts of our own, which the daemons started here see. */
	if (unshare(CLONE_NEWNS) == 0 && mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) == 0)
		have_ns = 1;
	else
		fprintf(stderr, "test_space: every test skipped: no mount namespace of our own (%s)\n",
		    strerror(errno));
	return cmocka_run_group_tests(tests, NULL, NULL);
}
