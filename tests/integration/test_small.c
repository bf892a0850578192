/*
 * Small objects served from a worker's mapping: an object served 16 times
 * from the descriptor cache (OM_FDC_MAP_HITS) is mapped and copied from
 * the mapping (no pread). The bytes are the object's, over the binary
 * protocol and HTTP (whole and ranges, before and after the mapping); a
 * replaced object's mapping goes with its file; a flipped byte is still
 * caught by the checksum; a file cut short behind the daemon's back is a
 * refused GET, not a dead worker. Mode auto's threshold per connection.
 * Every object here is a file of its own (pack_max = 0,
 * om_daemon_init_files): these are the mechanisms of file objects (their
 * mapping, their file flipped or cut); a packed object is always inline in
 * mode auto (mapped with its pack, one mapping per pack).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"

static om_daemon_t D;
static om_client_t *cl;
static char http_sock[400];

static void
up(void)
{
	om_daemon_init_files(&D, 1, "[cache]\nscrub_rate = 0\n"
	    "[listen.http]\ntype = http\npath = http.sock\n");
	om_daemon_start(&D);
	snprintf(http_sock, sizeof(http_sock), "%s/http.sock", D.dir);
	assert_int_equal(om_client_connect(D.sock, OM_CLIENT_OFFSET_READS, &cl), 0);
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

/* A GET in copy mode returns exactly the bytes put with seed. */
static void
get_is(const char *uri, size_t len, uint64_t seed)
{
	unsigned char *want = malloc(len);
	om_object_t o;

	assert_non_null(want);
	om_test_fill(want, len, seed);
	assert_int_equal(om_client_get(cl, uri, OM_MODE_COPY, 0, &o), 0);
	assert_int_equal(o.len, len);
	assert_non_null(o.data);
	assert_memory_equal(o.data, want, len);
	om_object_free(&o);
	free(want);
}

static void
obj_path(char *buf, size_t n, uint64_t id)
{
	om_daemon_obj_path(&D, buf, n, id);
}

static pid_t
worker(void)
{
	pid_t w;

	assert_int_equal(om_daemon_children(&D, &w, 1, "worker"), 1);
	return w;
}

/* GETs enough to have the object mapped (the first opens it, 16 hits). */
static void
warm(const char *uri, size_t len, uint64_t seed)
{
	for (int i = 0; i < 18; i++)
		get_is(uri, len, seed);
}

/* Whether the worker maps the object's file. */
static int
mapped(pid_t w, uint64_t id)
{
	char maps[64], name[32], line[1024];
	FILE *f;
	int found = 0;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)w);
	snprintf(name, sizeof(name), "/%016llx", (unsigned long long)id);
	f = fopen(maps, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, name) != NULL)
			found = 1;
	fclose(f);
	return found;
}

typedef struct {
	pid_t w;
	uint64_t id;
} map_arg_t;

static int
unmapped(void *arg)
{
	const map_arg_t *a = arg;

	return !mapped(a->w, a->id);
}

static void
rewrite(uint64_t id, off_t at, int cut)
{
	char path[600];
	unsigned char b;
	int fd;

	obj_path(path, sizeof(path), id);
	assert_int_equal(chmod(path, 0640), 0);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	if (cut) {
		assert_int_equal(ftruncate(fd, at), 0);
	} else {
		assert_int_equal(pread(fd, &b, 1, at), 1);
		b ^= 1;
		assert_int_equal(pwrite(fd, &b, 1, at), 1);
	}
	close(fd);
	assert_int_equal(chmod(path, 0440), 0);
}

/* Mapped once hot, the same bytes; a replace drops the mapping. */
static void
test_mapped_gets(void **state)
{
	om_info_t a, b;
	map_arg_t m;
	pid_t w;

	(void)state;
	up();
	w = worker();
	a = put("/m", 3000, 1);
	get_is("/m", 3000, 1);
	get_is("/m", 3000, 1);
	assert_false(mapped(w, a.id));
	warm("/m", 3000, 1);
	assert_true(mapped(w, a.id));
	for (int i = 0; i < 20; i++)
		get_is("/m", 3000, 1);
	/* Larger than 64 KiB: read by pread (or streamed), never mapped. */
	b = put("/big", 100000, 3);
	warm("/big", 100000, 3);
	assert_false(mapped(w, b.id));
	/* Replaced: the new bytes, and the old file's mapping goes. */
	b = put("/m", 2000, 2);
	warm("/m", 2000, 2);
	m.w = w;
	m.id = a.id;
	if (!om_wait_until(unmapped, &m, 5000))
		fail_msg("the replaced object's file is still mapped after 5 s");
	assert_true(mapped(w, b.id));
	assert_int_equal(worker(), w);
}

/* A flipped byte under the mapping is seen by the checksum. */
static void
test_mapped_damage(void **state)
{
	om_object_t o;
	om_info_t a;
	pid_t w;

	(void)state;
	up();
	w = worker();
	a = put("/d", 4096, 7);
	warm("/d", 4096, 7);
	assert_true(mapped(w, a.id));
	rewrite(a.id, 100, 0);
	assert_int_equal(om_client_get(cl, "/d", OM_MODE_COPY, 0, &o), -OM_STATUS_INTERNAL);
	assert_non_null(strstr(om_client_message(cl), "damaged"));
	assert_int_equal(om_client_stat(cl, "/d", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	assert_int_equal(worker(), w);
}

/* A file cut short behind the mapping: a refused GET, the worker lives. */
static void
test_mapped_cut(void **state)
{
	om_object_t o;
	om_info_t a;
	pid_t w;

	(void)state;
	up();
	w = worker();
	a = put("/c", 10000, 8);
	put("/other", 5000, 9);
	warm("/c", 10000, 8);
	assert_true(mapped(w, a.id));
	rewrite(a.id, 0, 1);
	assert_int_equal(om_client_get(cl, "/c", OM_MODE_COPY, 0, &o), -OM_STATUS_INTERNAL);
	assert_non_null(strstr(om_client_message(cl), "short read"));
	/* Again, now by pread: still refused. */
	assert_int_equal(om_client_get(cl, "/c", OM_MODE_COPY, 0, &o), -OM_STATUS_INTERNAL);
	assert_int_equal(worker(), w);
	assert_int_equal(om_client_ping(cl), 0);
	get_is("/other", 5000, 9);
	get_is("/other", 5000, 9);
}

/* HTTP GET of `uri`: the status and the body (at most cap bytes). */
static int
http_get(const char *uri, const char *range, unsigned char *body, size_t cap, size_t *len)
{
	char req[512], head[4096];
	size_t n = 0, want;
	const char *cl_at, *end;
	int fd = om_raw_connect_unix(http_sock), status;
	ssize_t r;

	snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n", uri,
	    range ? "Range: bytes=" : "", range ? range : "", range ? "\r\n" : "");
	om_raw_send_all(fd, req, strlen(req));
	for (;;) {
		r = recv(fd, head + n, sizeof(head) - 1 - n, 0);
		assert_true(r > 0);
		n += (size_t)r;
		head[n] = 0;
		if ((end = strstr(head, "\r\n\r\n")) != NULL)
			break;
	}
	assert_int_equal(sscanf(head, "HTTP/1.1 %d", &status), 1);
	cl_at = strstr(head, "Content-Length: ");
	assert_non_null(cl_at);
	want = strtoul(cl_at + 16, NULL, 10);
	assert_true(want <= cap);
	end += 4;
	*len = n - (size_t)(end - head);
	memcpy(body, end, *len);
	while (*len < want) {
		r = recv(fd, body + *len, want - *len, 0);
		assert_true(r > 0);
		*len += (size_t)r;
	}
	assert_int_equal(*len, want);
	close(fd);
	return status;
}

/* HTTP: the mapped body behind its head, whole and in ranges. */
static void
test_mapped_http(void **state)
{
	unsigned char want[9000], got[9000];
	om_info_t a;
	size_t len;
	pid_t w;

	(void)state;
	up();
	w = worker();
	a = put("/h", sizeof(want), 11);
	om_test_fill(want, sizeof(want), 11);
	/* Before the mapping: read behind the head with pread. */
	assert_int_equal(http_get("/h", "8990-", got, sizeof(got), &len), 206);
	assert_int_equal(len, 10);
	assert_memory_equal(got, want + 8990, 10);
	assert_false(mapped(w, a.id));
	for (int i = 0; i < 20; i++) {
		assert_int_equal(http_get("/h", NULL, got, sizeof(got), &len), 200);
		assert_int_equal(len, sizeof(want));
		assert_memory_equal(got, want, sizeof(want));
	}
	assert_true(mapped(w, a.id));
	assert_int_equal(http_get("/h", "100-199", got, sizeof(got), &len), 206);
	assert_int_equal(len, 100);
	assert_memory_equal(got, want + 100, 100);
	assert_int_equal(http_get("/h", "-10", got, sizeof(got), &len), 206);
	assert_int_equal(len, 10);
	assert_memory_equal(got, want + sizeof(want) - 10, 10);
	/* Over 16 KiB: sendfile'd after the head, the same bytes. */
	{
		unsigned char *big = malloc(40000), *bgot = malloc(40000);

		assert_non_null(big);
		assert_non_null(bgot);
		put("/hb", 40000, 12);
		om_test_fill(big, 40000, 12);
		for (int i = 0; i < 20; i++) {
			assert_int_equal(http_get("/hb", NULL, bgot, 40000, &len), 200);
			assert_int_equal(len, 40000);
			assert_memory_equal(bgot, big, 40000);
		}
		assert_int_equal(http_get("/hb", "20000-39999", bgot, 40000, &len), 206);
		assert_int_equal(len, 20000);
		assert_memory_equal(bgot, big + 20000, 20000);
		free(big);
		free(bgot);
	}
	assert_int_equal(worker(), w);
}

/* Mode auto's threshold by default: 4 KiB for a client that reads at
 * offsets, 32 KiB for one that does not (HELLO says which); a listener's
 * inline_threshold is the same for both. */
static void
auto_is(om_client_t *c, const char *uri, int inline_bytes)
{
	om_object_t o;

	assert_int_equal(om_client_get(c, uri, OM_MODE_AUTO, 0, &o), 0);
	if (inline_bytes) {
		assert_int_equal(o.fd, -1);
		assert_non_null(o.data);
	} else {
		assert_true(o.fd >= 0);
	}
	om_object_free(&o);
}

static void
test_auto_threshold(void **state)
{
	om_client_t *priv;

	(void)state;
	up();
	put("/4k", 4096, 1);
	put("/5k", 5000, 2);
	put("/32k", 32768, 3);
	put("/33k", 33000, 4);
	assert_int_equal(om_client_caps(cl)->inline_threshold, 4096);
	auto_is(cl, "/4k", 1);
	auto_is(cl, "/5k", 0);
	auto_is(cl, "/33k", 0);
	assert_int_equal(om_client_connect(D.sock, 0, &priv), 0);
	assert_int_equal(om_client_caps(priv)->inline_threshold, 32768);
	auto_is(priv, "/5k", 1);
	auto_is(priv, "/32k", 1);
	auto_is(priv, "/33k", 0);
	om_client_close(priv);
	om_client_close(cl);
	cl = NULL;
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);

	om_daemon_init_files(&D, 1, "[listen.fixed]\ntype = unix\npath = fixed.sock\n"
	    "inline_threshold = 8K\n");
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, OM_CLIENT_OFFSET_READS, &cl), 0);
	put("/5k", 5000, 2);
	put("/9k", 9000, 5);
	{
		char path[400];

		snprintf(path, sizeof(path), "%s/fixed.sock", D.dir);
		assert_int_equal(om_client_connect(path, OM_CLIENT_OFFSET_READS, &priv), 0);
	}
	assert_int_equal(om_client_caps(priv)->inline_threshold, 8192);
	auto_is(priv, "/5k", 1);
	auto_is(priv, "/9k", 0);
	om_client_close(priv);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_mapped_gets, down),
		cmocka_unit_test_teardown(test_mapped_damage, down),
		cmocka_unit_test_teardown(test_mapped_cut, down),
		cmocka_unit_test_teardown(test_mapped_http, down),
		cmocka_unit_test_teardown(test_auto_threshold, down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
