/*
 * Packs in the real daemon ([memory] and [persistent] pack_max = 16K):
 * packed objects served in every mode over the binary protocol and over
 * HTTP (whole, ranges, HEAD, their metadata as header fields) are exactly
 * their bytes, their mtime answered only with the metadata; a descriptor of a packed object is the client's own
 * (read-only, mode 0440, sealed, its own offset), made from the worker's
 * mapping of the pack (served with the pack renamed away: no pack opened
 * for it); a mapped packed object replaced serves the new bytes; 1 KiB
 * objects in the memory tier take at most 1.5x their bytes (issue 20's
 * target); the cache manager compacts packs whose objects were deleted
 * (packs_removed_total), and their objects are served after; the whole
 * daemon killed with SIGKILL during packed PUTs from 4 clients comes back
 * with every acknowledged object.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
up_with(unsigned workers, const char *extra)
{
	char conf[1024];

	snprintf(conf, sizeof(conf), "[cache]\nscrub_rate = 0\n%s"
	    "[listen.http]\ntype = http\npath = http.sock\n", extra ? extra : "");
	om_daemon_init(&D, workers, conf);
	snprintf(D.mem_conf, sizeof(D.mem_conf), "size = 256M\npack_max = 16K");
	snprintf(D.disk_conf, sizeof(D.disk_conf), "size = 2G\npack_max = 16K");
	om_daemon_write_conf(&D, workers, conf);
	om_daemon_start(&D);
	snprintf(http_sock, sizeof(http_sock), "%s/http.sock", D.dir);
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

#define META "Content-Type: text/x-packed\r\nX-Pack-Test: yes\r\n"

static om_info_t
put_meta(const char *uri, size_t len, uint64_t seed, unsigned flags)
{
	unsigned char *buf = malloc(len ? len : 1);
	om_put_opts_t o = { .meta = META, .meta_len = (uint32_t)strlen(META), .flags = flags };
	om_info_t info;

	assert_non_null(buf);
	om_test_fill(buf, len, seed);
	if (om_client_put(cl, uri, buf, len, &o, &info) != 0)
		fail_msg("PUT %s: %s", uri, om_client_message(cl));
	free(buf);
	return info;
}

/* Reads all of fd from offset 0 and compares it with want. */
static void
fd_is(int fd, const unsigned char *want, size_t len)
{
	unsigned char *got = malloc(len + 1);
	struct stat sb;
	size_t off = 0;

	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, (uint64_t)len);
	while (off < len) {
		ssize_t n = pread(fd, got + off, len - off, (off_t)off);

		assert_true(n > 0);
		off += (size_t)n;
	}
	assert_int_equal(pread(fd, got, 1, (off_t)len), 0);
	if (len)
		assert_memory_equal(got, want, len);
	free(got);
}

/* A GET in mode `mode` gives exactly the bytes of seed, and the metadata. */
static void
get_mode_is(const char *uri, int mode, size_t len, uint64_t seed)
{
	unsigned char *want = malloc(len ? len : 1);
	om_object_t o;

	om_test_fill(want, len, seed);
	if (om_client_get(cl, uri, mode, OM_GET_WANT_META, &o) != 0)
		fail_msg("GET %s mode %d: %s", uri, mode, om_client_message(cl));
	assert_int_equal(o.info.size, len);
	assert_int_equal(o.meta_len, strlen(META));
	assert_memory_equal(o.meta, META, o.meta_len);
	if (o.fd >= 0) {
		assert_true(mode == OM_MODE_FDPASS || mode == OM_MODE_AUTO);
		fd_is(o.fd, want, len);
	} else {
		assert_int_equal(o.len, len);
		if (len)
			assert_memory_equal(o.data, want, len);
	}
	om_object_free(&o);
	free(want);
}

/* HTTP request: the status, the head (NUL-terminated) and the body. */
static int
http_req(const char *method, const char *uri, const char *range, char *head, size_t hcap,
    unsigned char *body, size_t cap, size_t *len)
{
	char req[512];
	size_t n = 0, want;
	const char *cl_at, *end;
	int fd = om_raw_connect_unix(http_sock), status;
	ssize_t r;

	snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n", method, uri,
	    range ? "Range: bytes=" : "", range ? range : "", range ? "\r\n" : "");
	om_raw_send_all(fd, req, strlen(req));
	for (;;) {
		r = recv(fd, head + n, hcap - 1 - n, 0);
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
	end += 4;
	*len = n - (size_t)(end - head);
	if (strcmp(method, "HEAD") == 0) {
		assert_int_equal(*len, 0);
		*len = want;
		close(fd);
		return status;
	}
	assert_true(want <= cap);
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

static const size_t sizes[] = { 0, 1, 1000, 4096, 9000, 16384 };

static void
test_modes_unix_and_http(void **state)
{
	static const int modes[] = { OM_MODE_AUTO, OM_MODE_COPY, OM_MODE_FDPASS, OM_MODE_SPLICE };
	om_client_t *offs;

	(void)state;
	up_with(1, NULL);
	for (int eph = 0; eph < 2; eph++) {
		for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
			char uri[64];

			snprintf(uri, sizeof(uri), "/m/%d/%zu", eph, sizes[i]);
			put_meta(uri, sizes[i], (uint64_t)eph * 100 + i + 1, eph ? OM_PUT_EPHEMERAL : 0);
			/* 25 rounds: the first GETs, then from the worker's mapping. */
			for (int round = 0; round < 25; round++)
				for (size_t m = 0; m < OM_ARRAY_LEN(modes); m++)
					get_mode_is(uri, modes[m], sizes[i], (uint64_t)eph * 100 + i + 1);
		}
	}
	/* Each is an entry of a pack, not a file. */
	{
		char objects[300], packs[320];
		long files, packed;

		snprintf(objects, sizeof(objects), "%s/objects", D.dir);
		snprintf(packs, sizeof(packs), "%s/objects/packs", D.dir);
		files = om_test_count_files(objects, NULL, NULL);
		packed = om_test_count_files(packs, NULL, NULL);
		assert_int_equal(files, packed);
		assert_int_equal(packed, 1);
		snprintf(packs, sizeof(packs), "%s/packs", D.mem);
		assert_int_equal(om_test_count_files(D.mem, NULL, NULL), om_test_count_files(packs, NULL, NULL));
	}
	/* A client that reads at offsets: the same bytes in every mode. */
	assert_int_equal(om_client_connect(D.sock, OM_CLIENT_OFFSET_READS, &offs), 0);
	{
		om_client_t *keep = cl;

		cl = offs;
		for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
			char uri[64];

			snprintf(uri, sizeof(uri), "/m/0/%zu", sizes[i]);
			for (size_t m = 0; m < OM_ARRAY_LEN(modes); m++)
				get_mode_is(uri, modes[m], sizes[i], i + 1);
		}
		cl = keep;
	}
	om_client_close(offs);

	/* HTTP: whole, ranges, HEAD, the metadata's fields. */
	for (size_t i = 1; i < OM_ARRAY_LEN(sizes); i++) {
		unsigned char want[16384], got[16384];
		char uri[64], head[4096], range[64];
		size_t len, n = sizes[i];

		snprintf(uri, sizeof(uri), "/m/1/%zu", n);
		om_test_fill(want, n, 100 + i + 1);
		for (int round = 0; round < 20; round++) {
			assert_int_equal(http_req("GET", uri, NULL, head, sizeof(head), got, sizeof(got), &len), 200);
			assert_int_equal(len, n);
			assert_memory_equal(got, want, n);
		}
		assert_non_null(strstr(head, "Content-Type: text/x-packed\r\n"));
		assert_non_null(strstr(head, "X-Pack-Test: yes\r\n"));
		assert_int_equal(http_req("HEAD", uri, NULL, head, sizeof(head), got, sizeof(got), &len), 200);
		assert_int_equal(len, n);
		assert_non_null(strstr(head, "X-Pack-Test: yes\r\n"));
		if (n < 2)
			continue;
		snprintf(range, sizeof(range), "1-%zu", n / 2);
		assert_int_equal(http_req("GET", uri, range, head, sizeof(head), got, sizeof(got), &len), 206);
		assert_int_equal(len, n / 2);
		assert_memory_equal(got, want + 1, n / 2);
		assert_int_equal(http_req("GET", uri, "-1", head, sizeof(head), got, sizeof(got), &len), 206);
		assert_int_equal(len, 1);
		assert_int_equal(got[0], want[n - 1]);
	}
}

/* PUTs by HTTP (with a Content-Length), in pieces and by descriptor:
 * each small one is packed, and reads back the same. */
static void
test_other_put_paths(void **state)
{
	unsigned char body[6000], got[6000];
	char req[512], head[4096], resp[512];
	char packs[320];
	size_t len;
	int fd;
	ssize_t n;

	(void)state;
	up_with(1, NULL);
	snprintf(packs, sizeof(packs), "%s/objects/packs", D.dir);
	/* HTTP, with a Content-Length: packed. */
	om_test_fill(body, sizeof(body), 61);
	fd = om_raw_connect_unix(http_sock);
	snprintf(req, sizeof(req), "PUT /hp HTTP/1.1\r\nHost: x\r\nContent-Type: text/x-hp\r\n"
	    "Content-Length: %zu\r\n\r\n", sizeof(body));
	om_raw_send_all(fd, req, strlen(req));
	om_raw_send_all(fd, body, sizeof(body));
	n = recv(fd, resp, sizeof(resp) - 1, 0);
	assert_true(n > 12);
	resp[n] = '\0';
	assert_non_null(strstr(resp, "HTTP/1.1 201"));
	close(fd);
	assert_int_equal(om_test_count_files(packs, NULL, NULL), 1);
	assert_int_equal(http_req("GET", "/hp", NULL, head, sizeof(head), got, sizeof(got), &len), 200);
	assert_int_equal(len, sizeof(body));
	assert_memory_equal(got, body, sizeof(body));
	assert_non_null(strstr(head, "Content-Type: text/x-hp\r\n"));
	{
		om_object_t o;

		assert_int_equal(om_client_get(cl, "/hp", OM_MODE_FDPASS, 0, &o), 0);
		fd_is(o.fd, body, sizeof(body));
		om_object_free(&o);
	}
	/* The binary protocol, the bytes in pieces. */
	assert_int_equal(om_client_put_begin(cl, "/pieces", sizeof(body), NULL), 0);
	for (size_t off = 0; off < sizeof(body); off += 1000)
		assert_int_equal(om_client_put_write(cl, body + off, 1000), 0);
	assert_int_equal(om_client_put_end(cl, NULL), 0);
	/* By descriptor: the daemon copies from it. */
	{
		char path[400];
		om_put_opts_t po = { .meta = META, .meta_len = (uint32_t)strlen(META) };

		snprintf(path, sizeof(path), "%s/source", D.dir);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, body, sizeof(body)), (ssize_t)sizeof(body));
		assert_int_equal(om_client_put_fd(cl, "/byfd", fd, 4000, &po, NULL), 0);
		close(fd);
		unlink(path);
	}
	{
		om_object_t o;

		assert_int_equal(om_client_get(cl, "/pieces", OM_MODE_COPY, 0, &o), 0);
		assert_int_equal(o.len, sizeof(body));
		assert_memory_equal(o.data, body, sizeof(body));
		om_object_free(&o);
	}
	get_mode_is("/byfd", OM_MODE_SPLICE, 4000, 61);
	/* Three packed objects, no object file: the tier holds its pack. */
	{
		char objects[300];

		snprintf(objects, sizeof(objects), "%s/objects", D.dir);
		assert_int_equal(om_test_count_files(objects, NULL, NULL), om_test_count_files(packs, NULL, NULL));
	}
}

/* A raw GET of uri with flags: the response's mtime field. */
static uint32_t
raw_get_mtime(int fd, const char *uri, uint32_t flags)
{
	static unsigned char body[32768];
	uint8_t buf[256];
	om_resp_t r;

	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_GET, 1, flags, uri, 0, 0));
	assert_int_equal(om_raw_read_resp_body(fd, &r, NULL, 0, body, sizeof(body)), OM_STATUS_OK);
	return r.mtime;
}

/* The mtime field of a GET's answer is the PUT's time only when the
 * metadata was asked for (WANT_META), else 0: for a packed object as
 * for one in a file of its own. */
static void
test_mtime_only_with_meta(void **state)
{
	static const char *const uris[] = { "/mt/packed", "/mt/file" };
	static const size_t lens[] = { 100, 20000 };
	int fd;

	(void)state;
	up_with(1, NULL);
	fd = om_raw_connect_unix(D.sock);
	for (size_t i = 0; i < OM_ARRAY_LEN(uris); i++) {
		put_meta(uris[i], lens[i], i + 1, 0);
		for (int round = 0; round < 3; round++) {
			assert_int_equal(raw_get_mtime(fd, uris[i], OM_MODE_COPY), 0);
			assert_int_equal(raw_get_mtime(fd, uris[i], OM_MODE_AUTO), 0);
			assert_true(raw_get_mtime(fd, uris[i], OM_MODE_COPY | OM_GET_WANT_META) > 0);
		}
	}
	close(fd);
}

/* fdpass: each GET a description of the client's own, read-only, 0440. */
static void
test_fdpass_private(void **state)
{
	unsigned char want[5000], a[100];
	om_info_t i1, i2;
	struct stat sb;
	int f1, f2;

	(void)state;
	up_with(1, NULL);
	put_meta("/fd", sizeof(want), 5, 0);
	om_test_fill(want, sizeof(want), 5);
	assert_int_equal(om_client_get_fd(cl, "/fd", &f1, &i1), 0);
	assert_int_equal(om_client_get_fd(cl, "/fd", &f2, &i2), 0);
	assert_int_equal(read(f1, a, sizeof(a)), (ssize_t)sizeof(a));
	assert_memory_equal(a, want, sizeof(a));
	assert_int_equal(lseek(f1, 0, SEEK_CUR), (off_t)sizeof(a));
	assert_int_equal(lseek(f2, 0, SEEK_CUR), 0);
	for (int i = 0; i < 2; i++) {
		int fd = i ? f2 : f1;

		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(sb.st_mode & 07777, 0440);
		assert_int_equal(sb.st_size, (off_t)sizeof(want));
		assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
		assert_int_equal(pwrite(fd, "x", 1, 0), -1);
		assert_int_equal(errno, EBADF);
		assert_int_not_equal(ftruncate(fd, 0), 0);
		assert_true(mmap(NULL, sizeof(want), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
		fd_is(fd, want, sizeof(want));
	}
	/* Replaced: the old descriptors keep the old bytes. */
	put_meta("/fd", 3000, 6, 0);
	fd_is(f1, want, sizeof(want));
	close(f1);
	close(f2);
	get_mode_is("/fd", OM_MODE_FDPASS, 3000, 6);
}

static void
count_pack_fd(void *arg, const char *target)
{
	unsigned *n = arg;

	if (strstr(target, "/packs/") != NULL)
		(*n)++;
}

/* Descriptors of packs the worker has open. */
static unsigned
pack_fds(pid_t w)
{
	unsigned n = 0;

	(void)om_test_fd_targets(w, count_pack_fd, &n);
	return n;
}

/*
 * A descriptor of a packed object is filled from the worker's mapping of
 * its pack: the pack is not opened again. With the pack renamed away
 * (its number no longer names it) the worker still serves its objects by
 * descriptor, the same bytes, sealed, 0440, read-only, and opens nothing
 * of packs/ for them.
 */
static void
test_fdpass_from_mapping(void **state)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
	char packs[320], from[600], to[600];
	unsigned char want[7000];
	struct dirent *de;
	unsigned before;
	DIR *d;
	pid_t w;

	(void)state;
	up_with(1, NULL);
	w = om_daemon_only_worker(&D);
	put_meta("/a", sizeof(want), 8, 0);
	put_meta("/b", 100, 9, 0);
	/* Served once inline: the worker has the pack open and mapped. */
	get_mode_is("/a", OM_MODE_COPY, sizeof(want), 8);
	snprintf(packs, sizeof(packs), "%s/objects/packs", D.dir);
	assert_int_equal(om_test_count_files(packs, NULL, NULL), 1);
	d = opendir(packs);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL && de->d_name[0] == '.')
		;
	assert_non_null(de);
	snprintf(from, sizeof(from), "%s/%s", packs, de->d_name);
	snprintf(to, sizeof(to), "%s/.aside-%s", packs, de->d_name);
	closedir(d);
	assert_int_equal(rename(from, to), 0);
	before = pack_fds(w);
	om_test_fill(want, sizeof(want), 8);
	for (int i = 0; i < 20; i++) {
		om_info_t info;
		struct stat sb;
		int fd;

		if (om_client_get_fd(cl, "/a", &fd, &info) != 0)
			fail_msg("fdpass GET %d of a packed object, its pack renamed: %s", i,
			    om_client_message(cl));
		assert_int_equal(info.size, sizeof(want));
		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(sb.st_mode & 07777, 0440);
		assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
		assert_int_equal(fcntl(fd, F_GET_SEALS) & need, need);
		assert_int_equal(pwrite(fd, "x", 1, 0), -1);
		assert_int_equal(errno, EBADF);
		fd_is(fd, want, sizeof(want));
		close(fd);
	}
	get_mode_is("/b", OM_MODE_FDPASS, 100, 9);
	assert_int_equal(pack_fds(w), before);
	assert_int_equal(rename(to, from), 0);
	get_mode_is("/a", OM_MODE_FDPASS, sizeof(want), 8);
}

/* Whether the worker maps a pack of the tier (its directory path). */
static int
maps_a_pack(pid_t w, const char *tier)
{
	char maps[64], line[1024], want[400];
	FILE *f;
	int found = 0;

	snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)w);
	snprintf(want, sizeof(want), "%s/packs/", tier);
	f = fopen(maps, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f) != NULL)
		if (strstr(line, want) != NULL)
			found = 1;
	fclose(f);
	return found;
}

/* Served 20 times (from the worker's mapping of the pack), then replaced:
 * the new bytes, in every mode. */
static void
test_mapped_then_replaced(void **state)
{
	char objects[300];
	pid_t w;

	(void)state;
	up_with(1, NULL);
	w = om_daemon_only_worker(&D);
	snprintf(objects, sizeof(objects), "%s/objects", D.dir);
	for (int v = 0; v < 4; v++) {
		put_meta("/hot", 2000 + (size_t)v * 700, 40 + (uint64_t)v, v % 2 ? OM_PUT_EPHEMERAL : 0);
		for (int i = 0; i < 20; i++)
			get_mode_is("/hot", OM_MODE_COPY, 2000 + (size_t)v * 700, 40 + (uint64_t)v);
		/* Served from a mapping of its pack. */
		assert_true(maps_a_pack(w, v % 2 ? D.mem : objects));
		get_mode_is("/hot", OM_MODE_AUTO, 2000 + (size_t)v * 700, 40 + (uint64_t)v);
		get_mode_is("/hot", OM_MODE_FDPASS, 2000 + (size_t)v * 700, 40 + (uint64_t)v);
	}
	assert_int_equal(om_client_delete(cl, "/hot"), 0);
	{
		om_object_t o;

		assert_int_equal(om_client_get(cl, "/hot", OM_MODE_COPY, 0, &o), -OM_STATUS_NOT_FOUND);
	}
}

/* Bytes (st_blocks) of the files under a tree. */
static uint64_t
tree_bytes(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t sum = 0;
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return 0;
	d = fdopendir(fd);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		struct stat sb;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(sb.st_mode))
			sum += tree_bytes(dirfd(d), de->d_name);
		else
			sum += (uint64_t)sb.st_blocks * 512;
	}
	closedir(d);
	return sum;
}

static uint64_t
dir_bytes(const char *path)
{
	return tree_bytes(AT_FDCWD, path);
}

/* Issue 20's target: 1 KiB objects in the memory tier take at most 1.5x
 * their bytes. */
static void
test_memory_footprint(void **state)
{
	uint64_t before, after, data = 2000 * 1024;

	(void)state;
	up_with(1, NULL);
	before = dir_bytes(D.mem);
	for (int i = 0; i < 2000; i++) {
		char uri[32];
		unsigned char buf[1024];

		snprintf(uri, sizeof(uri), "/f/%d", i);
		om_test_fill(buf, sizeof(buf), (uint64_t)i);
		{
			om_put_opts_t o = { .flags = OM_PUT_EPHEMERAL };

			assert_int_equal(om_client_put(cl, uri, buf, sizeof(buf), &o, NULL), 0);
		}
	}
	after = dir_bytes(D.mem);
	print_message("2,000 objects of 1 KiB in the memory tier: %" PRIu64 " bytes (%.2fx their bytes)\n",
	    after - before, (double)(after - before) / (double)data);
	assert_true((after - before) * 2 <= data * 3);
	for (int i = 0; i < 2000; i += 99) {
		char uri[32];
		unsigned char want[1024];
		om_object_t o;

		snprintf(uri, sizeof(uri), "/f/%d", i);
		om_test_fill(want, sizeof(want), (uint64_t)i);
		assert_int_equal(om_client_get(cl, uri, OM_MODE_AUTO, 0, &o), 0);
		assert_int_equal(o.len, sizeof(want));
		assert_non_null(o.data);
		assert_memory_equal(o.data, want, sizeof(want));
		om_object_free(&o);
	}
}

static unsigned long long
stat_of(const char *name)
{
	char *text = NULL, key[128];
	const char *p;
	unsigned long long v = 0;

	assert_int_equal(om_client_stats(cl, &text), 0);
	snprintf(key, sizeof(key), "\n%s ", name);
	p = strstr(text, key);
	if (p == NULL)
		fail_msg("no %s in STATS:\n%s", name, text);
	v = strtoull(p + strlen(key), NULL, 10);
	free(text);
	return v;
}

typedef struct {
	const char *path;
	uint64_t below;
} shrink_t;

static int
shrunk(void *arg)
{
	const shrink_t *s = arg;

	return dir_bytes(s->path) < s->below;
}

static char held_by[600];

static void
note_deleted_pack(void *arg, const char *target)
{
	int *n = arg;

	if (strstr(target, "/packs/") != NULL && strstr(target, "(deleted)") != NULL) {
		snprintf(held_by, sizeof(held_by), "%s", target);
		(*n)++;
	}
}

/* No process of the daemon has a descriptor or a mapping of a pack that
 * was removed. */
static int
no_removed_pack_open(void *arg)
{
	pid_t pids[64];
	int n = om_daemon_children(&D, pids, 63, NULL), held = 0;

	(void)arg;
	pids[n++] = D.pid;
	for (int i = 0; i < n; i++) {
		char maps[64], line[1024];
		FILE *f;

		(void)om_test_fd_targets(pids[i], note_deleted_pack, &held);
		snprintf(maps, sizeof(maps), "/proc/%d/maps", (int)pids[i]);
		if ((f = fopen(maps, "r")) == NULL)
			continue;
		while (fgets(line, sizeof(line), f) != NULL)
			note_deleted_pack(&held, line);
		fclose(f);
	}
	return held == 0;
}

/*
 * The cache manager compacts: 4,000 objects of 1 KiB fill a worker's
 * first pack (4 MiB) and start a second; 60% of them deleted, the first
 * pack (no longer appended to) is compacted within seconds, and once most
 * of what it copied is deleted too, the pack it copied to is compacted in
 * its turn. A worker's current pack is not: it is compacted once full.
 */
static void
test_manager_compacts(void **state)
{
	char packs[320];
	uint64_t full;
	shrink_t s;

	(void)state;
	up_with(1, "interval = 100ms\n");
	for (int i = 0; i < 4000; i++) {
		char uri[32];
		unsigned char buf[1024];

		snprintf(uri, sizeof(uri), "/k/%d", i);
		om_test_fill(buf, sizeof(buf), (uint64_t)i + 7);
		assert_int_equal(om_client_put(cl, uri, buf, sizeof(buf), NULL, NULL), 0);
	}
	snprintf(packs, sizeof(packs), "%s/objects/packs", D.dir);
	assert_int_equal(om_test_count_files(packs, NULL, NULL), 2);
	full = dir_bytes(packs);
	/* 60% deleted, and the first pack compacted: its live entries are
	 * copied to the cache manager's pack. Then most of those deleted
	 * too: that pack is compacted in its turn. */
	for (int phase = 0; phase < 2; phase++) {
		for (int i = 0; i < 4000; i++) {
			char uri[32];

			if (i % 10 == 0 || (phase == 0) != (i % 10 <= 6))
				continue;
			snprintf(uri, sizeof(uri), "/k/%d", i);
			assert_int_equal(om_client_delete(cl, uri), 0);
		}
		for (int t = 0; phase == 0 && t < 500 && stat_of("packs_removed_total") == 0; t++)
			usleep(20000);
		if (phase == 0)
			assert_true(stat_of("packs_removed_total") >= 1);
	}
	s.path = packs;
	/* What is live: 400 objects (and the pack still appended to). */
	s.below = full / 4;
	if (!om_wait_until(shrunk, &s, 10000))
		fail_msg("packs/ still holds %" PRIu64 " bytes (of %" PRIu64 ") after 10 s:\n%s",
		    dir_bytes(packs), full, om_daemon_log(&D));
	print_message("4,000 objects of 1 KiB, 3,600 deleted: packs/ from %" PRIu64 " to %" PRIu64 " bytes\n",
	    full, dir_bytes(packs));
	assert_true(stat_of("packs_removed_total") >= 2);
	/* The space goes back: no process of the daemon keeps the removed
	 * pack open (nor mapped). */
	if (!om_wait_until(no_removed_pack_open, NULL, 5000))
		fail_msg("a process of the daemon still holds a removed pack after 5 s: %s", held_by);
	for (int i = 0; i < 4000; i += 10) {
		char uri[32];
		unsigned char want[1024];
		om_object_t o;

		snprintf(uri, sizeof(uri), "/k/%d", i);
		om_test_fill(want, sizeof(want), (uint64_t)i + 7);
		assert_int_equal(om_client_get(cl, uri, OM_MODE_COPY, 0, &o), 0);
		assert_int_equal(o.len, sizeof(want));
		assert_memory_equal(o.data, want, sizeof(want));
		om_object_free(&o);
		/* By descriptor: filled from the worker's mapping of the
		 * pack the object was copied to. */
		{
			om_info_t info;
			int fd;

			assert_int_equal(om_client_get_fd(cl, uri, &fd, &info), 0);
			fd_is(fd, want, sizeof(want));
			close(fd);
		}
	}
	{
		char err[256];

		if (om_daemon_check_index(&D, err, sizeof(err)) != 0)
			fail_msg("index: %s", err);
	}
}

/* ---- the whole daemon killed -------------------------------------------- */

#define KKEYS 500
#define KCLIENTS 4

typedef struct {
	uint32_t acked[KCLIENTS][KKEYS]; /* version acknowledged, 0: none */
	int32_t inflight_key[KCLIENTS];
	uint32_t inflight_version[KCLIENTS];
	uint64_t puts;
} kill_t;

static size_t
ksize(unsigned c, unsigned k, uint32_t v)
{
	return (size_t)((c * 7919u + k * 104729u + v * 31u) % 16385u);
}

static uint64_t
kseed(unsigned c, unsigned k, uint32_t v)
{
	return (uint64_t)c << 40 | (uint64_t)k << 20 | v;
}

static void
kwriter(kill_t *w, unsigned c, const char *sock)
{
	static unsigned char buf[16384];
	om_client_t *h;
	uint64_t rnd = 99 + c;

	if (om_client_connect(sock, 0, &h) != 0)
		_exit(1);
	for (uint32_t v = 1;; v++) {
		unsigned k = (unsigned)(om_test_rand(&rnd) % KKEYS);
		char uri[64], meta[32];
		size_t n = ksize(c, k, v);
		om_put_opts_t o = { .meta = meta, .flags = k % 3 == 0 ? OM_PUT_EPHEMERAL : 0 };

		snprintf(uri, sizeof(uri), "/kill/%u/%u", c, k);
		snprintf(meta, sizeof(meta), "v=%u", v);
		o.meta_len = (uint32_t)strlen(meta);
		om_test_fill(buf, n, kseed(c, k, v));
		w->inflight_version[c] = v;
		__atomic_store_n(&w->inflight_key[c], (int32_t)k, __ATOMIC_SEQ_CST);
		if (om_client_put(h, uri, buf, n, &o, NULL) != 0)
			_exit(0);
		w->acked[c][k] = v;
		__atomic_store_n(&w->inflight_key[c], -1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&w->puts, 1, __ATOMIC_SEQ_CST);
	}
}

static void
test_daemon_killed_during_packed_puts(void **state)
{
	kill_t *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	static unsigned char want[16384];
	pid_t kids[64], wp[KCLIENTS];
	unsigned present = 0;
	int n;

	(void)state;
	assert_true(w != MAP_FAILED);
	memset(w, 0, sizeof(*w));
	up_with(2, NULL);
	for (unsigned c = 0; c < KCLIENTS; c++) {
		w->inflight_key[c] = -1;
		wp[c] = fork();
		assert_true(wp[c] >= 0);
		if (wp[c] == 0)
			kwriter(w, c, D.sock);
	}
	while (__atomic_load_n(&w->puts, __ATOMIC_SEQ_CST) < 3000)
		usleep(2000);
	n = om_daemon_children(&D, kids, 64, NULL);
	om_daemon_kill(&D, SIGKILL);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	assert_true(om_daemon_wait(&D, 5000) >= 0);
	for (unsigned c = 0; c < KCLIENTS; c++)
		om_test_wait(wp[c]);
	for (int i = 0; i < 100; i++) {
		if (om_daemon_children(&D, kids, 64, NULL) == 0)
			break;
		usleep(10000);
	}
	om_client_close(cl);
	cl = NULL;
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &cl), 0);
	for (unsigned c = 0; c < KCLIENTS; c++) {
		for (unsigned k = 0; k < KKEYS; k++) {
			char uri[64], meta[32] = "";
			unsigned v = 0;
			om_object_t o;
			int rc;

			snprintf(uri, sizeof(uri), "/kill/%u/%u", c, k);
			rc = om_client_get(cl, uri, OM_MODE_COPY, OM_GET_WANT_META, &o);
			if (rc == -OM_STATUS_NOT_FOUND) {
				if (w->acked[c][k] != 0)
					fail_msg("%s lost after the crash (version %u acknowledged)", uri, w->acked[c][k]);
				continue;
			}
			if (rc != 0)
				fail_msg("GET %s: %s", uri, om_client_message(cl));
			memcpy(meta, o.meta, o.meta_len < 31 ? o.meta_len : 31);
			assert_int_equal(sscanf(meta, "v=%u", &v), 1);
			if (v != w->acked[c][k] && !((int32_t)k == w->inflight_key[c] && v == w->inflight_version[c]))
				fail_msg("%s: version %u after the crash, acknowledged %u", uri, v, w->acked[c][k]);
			assert_int_equal(o.len, ksize(c, k, v));
			om_test_fill(want, o.len, kseed(c, k, v));
			if (o.len)
				assert_memory_equal(o.data, want, o.len);
			present++;
			om_object_free(&o);
		}
	}
	print_message("daemon killed after %" PRIu64 " acknowledged packed PUTs from %d clients: all %u "
	    "objects back, byte for byte\n", w->puts, KCLIENTS, present);
	munmap(w, sizeof(*w));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_modes_unix_and_http, down),
		cmocka_unit_test_teardown(test_other_put_paths, down),
		cmocka_unit_test_teardown(test_mtime_only_with_meta, down),
		cmocka_unit_test_teardown(test_fdpass_private, down),
		cmocka_unit_test_teardown(test_fdpass_from_mapping, down),
		cmocka_unit_test_teardown(test_mapped_then_replaced, down),
		cmocka_unit_test_teardown(test_memory_footprint, down),
		cmocka_unit_test_teardown(test_manager_compacts, down),
		cmocka_unit_test_teardown(test_daemon_killed_during_packed_puts, down),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
