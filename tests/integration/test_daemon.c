/*
 * objmapperd as its users meet it: the real daemon on temporary
 * directories, driven through libobjmapper. Options and configuration
 * check, every mode at every size byte for byte, PUT from a descriptor,
 * the pid file and process titles, stop and restart with every object
 * back, shared descriptions for offset-only readers.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "om_daemon.h"
#include "om_test.h"

static om_daemon_t D;

static int
setup(void **state)
{
	om_daemon_up(&D, 2, NULL);
	*state = &D;
	return 0;
}

/* Runs a program, returns its exit status and its output (stdout+stderr). */
static int
run(char *out, size_t n, const char *prog, const char *a1, const char *a2, const char *a3)
{
	int fds[2], status;
	size_t got = 0;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(fds[1], 1);
		dup2(fds[1], 2);
		close(fds[0]);
		execl(prog, prog, a1, a2, a3, (char *)NULL);
		_exit(127);
	}
	close(fds[1]);
	for (;;) {
		ssize_t r = read(fds[0], out + got, n - 1 - got);

		if (r <= 0)
			break;
		got += (size_t)r;
	}
	out[got] = '\0';
	close(fds[0]);
	status = om_test_wait(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_options_and_config_check(void **state)
{
	const char *prog = om_test_program("objmapperd");
	char out[4096], bad[400];
	FILE *f;

	(void)state;
	assert_int_equal(run(out, sizeof(out), prog, "-t", "-f", D.conf), 0);
	assert_string_equal(out, "ok\n");
	assert_int_equal(run(out, sizeof(out), prog, "-v", NULL, NULL), 0);
	assert_non_null(strstr(out, "objmapperd "));
	assert_int_equal(run(out, sizeof(out), prog, "-h", NULL, NULL), 0);
	assert_non_null(strstr(out, "usage: objmapperd"));
	/* The summary of the signals names each one objmapperd(8) lists. */
	{
		static const char *const sigs[] = { "HUP ", "QUIT ", "TERM", "INT ", "USR1 ", "USR2 " };

		for (size_t i = 0; i < OM_ARRAY_LEN(sigs); i++)
			if (strstr(out, sigs[i]) == NULL)
				fail_msg("objmapperd -h does not name %s:\n%s", sigs[i], out);
	}
	assert_int_equal(run(out, sizeof(out), prog, "-x", NULL, NULL), 2);
	/* The long forms, as every program has them. */
	{
		char v[256];

		assert_int_equal(run(v, sizeof(v), prog, "-v", NULL, NULL), 0);
		assert_int_equal(run(out, sizeof(out), prog, "--version", NULL, NULL), 0);
		assert_string_equal(out, v);
		assert_int_equal(run(out, sizeof(out), prog, "--help", NULL, NULL), 0);
		assert_non_null(strstr(out, "usage: objmapperd"));
		assert_non_null(strstr(out, "--version"));
		assert_int_equal(run(out, sizeof(out), prog, "--frobnicate", NULL, NULL), 2);
	}
	/* A bad value: the error names file, line and key. */
	snprintf(bad, sizeof(bad), "%s/bad.conf", D.dir);
	f = fopen(bad, "w");
	assert_non_null(f);
	fprintf(f, "[daemon]\nworkers = 2\n[index]\ncapacity = lots\n[listen.a]\ntype = unix\npath = x.sock\n");
	fclose(f);
	assert_int_equal(run(out, sizeof(out), prog, "-t", "-f", bad), 1);
	assert_non_null(strstr(out, "bad.conf:4: [index] capacity"));
	assert_int_equal(run(out, sizeof(out), prog, "-t", "-f", "/nonexistent/objmapper.conf"), 1);
	assert_non_null(strstr(out, "/nonexistent/objmapper.conf"));
}

static void
test_processes_pidfile_titles(void **state)
{
	char buf[512], title[512];
	pid_t kids[16];
	int fd, n;
	ssize_t r;

	(void)state;
	fd = open(D.pidfile, O_RDONLY);
	assert_true(fd >= 0);
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(r > 0);
	buf[r] = '\0';
	assert_int_equal(atoi(buf), D.pid);
	assert_int_equal(om_proc_title(D.pid, title, sizeof(title)), 0);
	assert_non_null(strstr(title, "objmapperd: master process"));
	n = om_daemon_children(&D, kids, 16, "worker process");
	assert_int_equal(n, 2);
	n = om_daemon_children(&D, kids, 16, "cache manager process");
	assert_int_equal(n, 1);
	/* A second master on the same pid file refuses to start. */
	{
		char out[4096];

		assert_int_equal(run(out, sizeof(out), om_test_program("objmapperd"), "-F", "-f", D.conf), 1);
		assert_non_null(strstr(out, "already running"));
	}
}

/* Every mode, sizes 0, 1, 4 KiB, 1 MiB, 64 MiB, byte for byte. */
static void
test_every_mode_every_size(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 1 << 20, 64 << 20 };
	om_client_t *c = om_test_connect(D.sock, 0);
	unsigned char *buf = malloc(64 << 20), *got = malloc(64 << 20);

	(void)state;
	for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
		char uri[64];
		om_info_t info;

		snprintf(uri, sizeof(uri), "/sizes/%zu", sizes[i]);
		om_test_fill(buf, sizes[i], 100 + i);
		if (om_client_put(c, uri, buf, sizes[i], NULL, &info) != 0)
			fail_msg("put %s: %s", uri, om_client_message(c));
		assert_int_equal(info.size, sizes[i]);
		assert_int_equal(info.crc, om_crc32c(0, buf, sizes[i]));
		for (int mode = OM_MODE_AUTO; mode <= OM_MODE_SPLICE; mode++) {
			om_object_t o;
			const unsigned char *bytes;

			if (om_client_get(c, uri, mode, 0, &o) != 0)
				fail_msg("get %s mode %d: %s", uri, mode, om_client_message(c));
			assert_int_equal(o.len, sizes[i]);
			assert_int_equal(o.info.id, info.id);
			assert_int_equal(o.info.crc, info.crc);
			if (o.fd >= 0) {
				struct stat sb;
				size_t off = 0;

				/* fdpass, or auto above the inline threshold */
				assert_true(mode == OM_MODE_FDPASS || (mode == OM_MODE_AUTO && sizes[i] > 65536));
				assert_int_equal(fstat(o.fd, &sb), 0);
				assert_int_equal((uint64_t)sb.st_size, sizes[i]);
				assert_int_equal(fcntl(o.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
				assert_int_equal(lseek(o.fd, 0, SEEK_CUR), 0);
				while (off < sizes[i]) {
					ssize_t r = pread(o.fd, got + off, sizes[i] - off, (off_t)off);

					assert_true(r > 0);
					off += (size_t)r;
				}
				bytes = got;
			} else {
				assert_true(mode != OM_MODE_FDPASS);
				bytes = o.data;
			}
			assert_true(sizes[i] == 0 || memcmp(bytes, buf, sizes[i]) == 0);
			om_object_free(&o);
		}
		/* Into a caller's buffer, in copy and splice mode. */
		{
			size_t len = 0;

			assert_int_equal(om_client_get_buf(c, uri, OM_MODE_SPLICE, got, 64 << 20, &len, NULL), 0);
			assert_int_equal(len, sizes[i]);
			assert_true(sizes[i] == 0 || memcmp(got, buf, sizes[i]) == 0);
			if (sizes[i] > 1)
				assert_int_equal(om_client_get_buf(c, uri, OM_MODE_COPY, got, 1, &len, NULL), -OM_ERANGE);
		}
	}
	/* The connection is still in step after all that. */
	assert_int_equal(om_client_ping(c), 0);
	om_client_close(c);
	free(buf);
	free(got);
}

static void
test_put_from_descriptor(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	size_t size = (3 << 20) + 17;
	unsigned char *buf = malloc(size);
	char path[400];
	om_object_t o;
	om_info_t info;
	int fd;

	(void)state;
	om_test_fill(buf, size, 7);
	snprintf(path, sizeof(path), "%s/source", D.dir);
	fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	if (om_client_put_fd(c, "/byfd", fd, size, NULL, &info) != 0)
		fail_msg("put_fd: %s", om_client_message(c));
	assert_int_equal(info.crc, om_crc32c(0, buf, size));
	assert_int_equal(om_client_get(c, "/byfd", OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, size);
	assert_memory_equal(o.data, buf, size);
	om_object_free(&o);
	/* A descriptor shorter than declared: SHORT_BODY, nothing stored. */
	assert_int_equal(om_client_put_fd(c, "/short", fd, size + 10, NULL, NULL), -OM_STATUS_SHORT_BODY);
	assert_int_equal(om_client_stat(c, "/short", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	/* Ephemeral objects live in the memory tier. */
	{
		om_put_opts_t po = { .flags = OM_PUT_EPHEMERAL };

		assert_int_equal(om_client_put_fd(c, "/byfd-eph", fd, 4096, &po, &info), 0);
		assert_int_equal(info.tier, OM_TIER_MEMORY);
		assert_int_equal(om_client_stat(c, "/byfd-eph", 0, &info, NULL, NULL), 0);
		assert_int_equal(info.tier, OM_TIER_MEMORY);
	}
	close(fd);
	om_client_close(c);
	free(buf);
}

static void
test_metadata_expiry_delete(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	om_put_opts_t po = { .meta = "Content-Type: text/html\r\n", .meta_len = 25 };
	om_info_t info;
	void *meta = NULL;
	uint32_t mlen = 0;
	om_object_t o;

	(void)state;
	po.expires = time(NULL) + 3600;
	assert_int_equal(om_client_put(c, "/meta", "<p>", 3, &po, NULL), 0);
	assert_int_equal(om_client_stat(c, "/meta", OM_GET_WANT_META, &info, &meta, &mlen), 0);
	assert_int_equal(mlen, 25);
	assert_memory_equal(meta, "Content-Type: text/html\r\n", 25);
	assert_int_equal(info.expires, po.expires);
	assert_true(info.mtime > time(NULL) - 60 && info.mtime <= time(NULL) + 1);
	free(meta);
	assert_int_equal(om_client_get(c, "/meta", OM_MODE_AUTO, OM_GET_WANT_META, &o), 0);
	assert_int_equal(o.meta_len, 25);
	om_object_free(&o);
	/* Already expired: a miss. */
	po.expires = time(NULL) - 1;
	assert_int_equal(om_client_put(c, "/gone", "x", 1, &po, NULL), 0);
	assert_int_equal(om_client_get(c, "/gone", OM_MODE_AUTO, 0, &o), -OM_STATUS_NOT_FOUND);
	assert_non_null(strstr(om_client_message(c), "NOT_FOUND"));
	assert_int_equal(om_client_delete(c, "/meta"), 0);
	assert_int_equal(om_client_delete(c, "/meta"), -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_get(c, "/meta", OM_MODE_AUTO, 0, &o), -OM_STATUS_NOT_FOUND);
	/* A URI the protocol refuses never leaves the library. */
	assert_int_equal(om_client_get(c, "/a b", OM_MODE_AUTO, 0, &o), -OM_EINVAL);
	assert_int_equal(om_client_get(c, "/x/../y", OM_MODE_AUTO, 0, &o), -OM_EINVAL);
	om_client_close(c);
}

static void
test_pipelined_batch(void **state)
{
	enum { N = 300 };
	om_client_t *c = om_test_connect(D.sock, 0);
	static char uris[N][32];
	const char *u[N];
	static om_object_t objs[N];
	int rcs[N];

	(void)state;
	for (int i = 0; i < N; i++) {
		char val[32];

		snprintf(uris[i], sizeof(uris[i]), "/batch/%d", i);
		u[i] = uris[i];
		if (i % 3 == 0)
			continue; /* every third is missing */
		snprintf(val, sizeof(val), "value %d", i);
		assert_int_equal(om_client_put(c, uris[i], val, strlen(val), NULL, NULL), 0);
	}
	assert_int_equal(om_client_get_batch(c, N, u, OM_MODE_AUTO, 0, objs, rcs), 0);
	for (int i = 0; i < N; i++) {
		char val[32];

		if (i % 3 == 0) {
			assert_int_equal(rcs[i], -OM_STATUS_NOT_FOUND);
			continue;
		}
		snprintf(val, sizeof(val), "value %d", i);
		assert_int_equal(rcs[i], 0);
		assert_int_equal(objs[i].len, strlen(val));
		assert_memory_equal(objs[i].data, val, strlen(val));
		om_object_free(&objs[i]);
	}
	/* And with descriptors. */
	assert_int_equal(om_client_get_batch(c, N, u, OM_MODE_FDPASS, 0, objs, rcs), 0);
	for (int i = 0; i < N; i++) {
		char val[32], got[32] = "";

		if (i % 3 == 0)
			continue;
		snprintf(val, sizeof(val), "value %d", i);
		assert_int_equal(rcs[i], 0);
		assert_true(objs[i].fd >= 0);
		assert_int_equal(pread(objs[i].fd, got, sizeof(got), 0), (ssize_t)strlen(val));
		assert_memory_equal(got, val, strlen(val));
		om_object_free(&objs[i]);
	}
	om_client_close(c);
}

/* A client reading only at offsets may share one description; others
 * never do; a replaced object is never served from the cache. The
 * objects are over 16 KiB (the default pack_max), files of their own:
 * the descriptions shared are of the descriptor cache's files. A packed
 * object's descriptor is a memfd of its own, shared with no one, for
 * either client (the end of this test). */
#define SHARED_LEN (20 * 1024)
static void
test_shared_descriptions(void **state)
{
	om_client_t *priv = om_test_connect(D.sock, 0), *shared = om_test_connect(D.sock, OM_CLIENT_OFFSET_READS);
	static char one[SHARED_LEN], two[SHARED_LEN];
	int a, b;
	char got[16] = "";
	om_info_t info;

	(void)state;
	memcpy(one, "version one", 11);
	memcpy(two, "version two", 11);
	assert_true(om_client_caps(shared)->shared_descriptions);
	assert_false(om_client_caps(priv)->shared_descriptions);
	assert_int_equal(om_client_put(priv, "/shared", one, SHARED_LEN, NULL, NULL), 0);
	assert_int_equal(om_client_get_fd(priv, "/shared", &a, NULL), 0);
	assert_int_equal(om_client_get_fd(priv, "/shared", &b, NULL), 0);
	assert_int_equal(lseek(a, 5, SEEK_SET), 5);
	assert_int_equal(lseek(b, 0, SEEK_CUR), 0);
	close(a);
	close(b);
	/* The same connection lands on one worker, whose cache it hits. */
	assert_int_equal(om_client_get_fd(shared, "/shared", &a, NULL), 0);
	assert_int_equal(om_client_get_fd(shared, "/shared", &b, NULL), 0);
	assert_int_equal(lseek(a, 5, SEEK_SET), 5);
	assert_int_equal(lseek(b, 0, SEEK_CUR), 5);
	close(a);
	close(b);
	assert_int_equal(om_client_put(priv, "/shared", two, SHARED_LEN, NULL, NULL), 0);
	assert_int_equal(om_client_get_fd(shared, "/shared", &a, &info), 0);
	assert_int_equal(pread(a, got, 11, 0), 11);
	assert_memory_equal(got, "version two", 11);
	close(a);
	/* Packed (11 bytes): a description of its own at every GET, for the
	 * client that may share too. */
	assert_int_equal(om_client_put(priv, "/shared-packed", "version one", 11, NULL, NULL), 0);
	assert_int_equal(om_client_get_fd(shared, "/shared-packed", &a, NULL), 0);
	assert_int_equal(om_client_get_fd(shared, "/shared-packed", &b, NULL), 0);
	assert_int_equal(lseek(a, 5, SEEK_SET), 5);
	assert_int_equal(lseek(b, 0, SEEK_CUR), 0);
	assert_int_equal(pread(b, got, sizeof(got), 0), 11);
	assert_memory_equal(got, "version one", 11);
	close(a);
	close(b);
	om_client_close(priv);
	om_client_close(shared);
}

static void
test_stats(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	char *text = NULL;

	(void)state;
	assert_int_equal(om_client_stats(c, &text), 0);
	assert_non_null(strstr(text, "\nrequests_total{op=\"get\",status=\"ok\"} "));
	assert_non_null(strstr(text, "\ndescriptors_passed_total "));
	assert_non_null(strstr(text, "\nobjects{tier=\"persistent\"} "));
	assert_null(strstr(text, "\nrequests_total{op=\"get\",status=\"ok\"} 0\n"));
	free(text);
	om_client_close(c);
}

/* QUIT: a clean exit, socket and pid file gone; a new start brings every
 * object back from disk. */
static void
test_stop_and_restart(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	unsigned char buf[10000];
	struct stat sb;
	om_object_t o;

	(void)state;
	for (int i = 0; i < 50; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/restart/%d", i);
		om_test_fill(buf, sizeof(buf) - (size_t)i * 100, (uint64_t)i);
		assert_int_equal(om_client_put(c, uri, buf, sizeof(buf) - (size_t)i * 100, NULL, NULL), 0);
	}
	om_client_close(c);
	om_daemon_stop(&D);
	assert_int_not_equal(stat(D.sock, &sb), 0);
	assert_int_not_equal(stat(D.pidfile, &sb), 0);
	om_daemon_start(&D);
	c = om_test_connect(D.sock, 0);
	for (int i = 0; i < 50; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/restart/%d", i);
		om_test_fill(buf, sizeof(buf) - (size_t)i * 100, (uint64_t)i);
		assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, 0, &o), 0);
		assert_int_equal(o.len, sizeof(buf) - (size_t)i * 100);
		assert_memory_equal(o.data, buf, o.len);
		om_object_free(&o);
	}
	assert_int_equal(om_client_get(c, "/sizes/1", OM_MODE_COPY, 0, &o), 0);
	om_object_free(&o);
	om_client_close(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_options_and_config_check),
		cmocka_unit_test(test_processes_pidfile_titles),
		cmocka_unit_test(test_every_mode_every_size),
		cmocka_unit_test(test_put_from_descriptor),
		cmocka_unit_test(test_metadata_expiry_delete),
		cmocka_unit_test(test_pipelined_batch),
		cmocka_unit_test(test_shared_descriptions),
		cmocka_unit_test(test_stats),
		cmocka_unit_test(test_stop_and_restart),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, om_daemon_teardown);
}
