/*
 * Descriptor and URI hygiene.
 *
 * - A client's descriptors: after many requests in every GET mode (auto,
 *   fdpass, copy, splice, batches), PUTs from descriptors, errors and
 *   promoted copies, a libobjmapper client holds what it held before plus
 *   its connections; every descriptor that came with a response was the
 *   object's own file (same inode as its file in the tier), read-only and
 *   close-on-exec; a packed object's (at most pack_max bytes, 16 KiB by
 *   default) a sealed memfd of its own (mode 0440, read-only,
 *   close-on-exec, of the object's size), never its pack. On the wire (raw recvmsg), only a GET answered with
 *   body kind "descriptor" ever carries one, exactly one, and an HTTP
 *   listener never sends any.
 * - The daemon's descriptors: every descriptor of every process (master,
 *   workers, cache manager), 0-2 aside, is close-on-exec (/proc/PID/fdinfo
 *   flags), with connections open on every listener, a PUT in progress,
 *   the workers' descriptor caches filled, after a reload and after a
 *   worker was killed and replaced.
 * - Bad URIs (a NUL byte, a ".." segment, control characters, longer than
 *   the limit) and metadata over the limit, over the binary protocol (Unix,
 *   TCP, UDP) and over HTTP, in every operation: each gets its clear status
 *   (URI_INVALID, META_TOO_LARGE; HTTP 400 or 414) and the store is exactly
 *   as it was (STATS counters and the tiers' files). test_input covers
 *   the stream staying in step after such frames; here the point is that
 *   they touch nothing.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"
#include "proto/om_proto.h"

#define MAX_URI 256
#define MAX_META 512
/* The tiers' pack_max (their default): objects up to it are packed. */
#define PACK_MAX (16 * 1024)

static om_daemon_t D;
static int tcp_port, udp_port;
static char tcp_addr[64], udp_addr[64], http_sock[400], tier_dir[2][400];

/*
 * Descriptors this process inherited above 2 that are not close-on-exec
 * (a CI runner's or a shell's) would pass into the daemon the test
 * starts and be blamed on it: they are marked close-on-exec first, as a
 * careful launcher (systemd) would hand none over.
 */
static void
own_fds_cloexec(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name), fl;

		if (de->d_name[0] == '.' || fd <= 2 || fd == dirfd(d))
			continue;
		fl = fcntl(fd, F_GETFD);
		if (fl >= 0 && !(fl & FD_CLOEXEC))
			(void)fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
	}
	closedir(d);
}

static int
setup(void **state)
{
	char extra[2048];

	tcp_port = om_test_free_port();
	udp_port = om_test_free_port();
	snprintf(tcp_addr, sizeof(tcp_addr), "tcp://127.0.0.1:%d", tcp_port);
	snprintf(udp_addr, sizeof(udp_addr), "udp://127.0.0.1:%d", udp_port);
	/* Detached, logging to a file, so that the pid file, the log file and
	 * daemon() are part of what is checked. Promotion after one read, so
	 * that GETs also come from memory-tier copies. */
	snprintf(extra, sizeof(extra),
	    "[daemon]\nworkers = 2\npid_file = objmapperd.pid\nshutdown_timeout = 10s\n"
	    "[log]\ntarget = file\nfile = daemon.log\nlevel = info\n"
	    "[cache]\ninterval = 100ms\npromote_hits = 1\nmax_metadata = %d\nopen_files = 4096\n"
	    "[listen.tcp]\ntype = tcp\naddress = 127.0.0.1\nport = %d\n"
	    "[listen.udp]\ntype = udp\naddress = 127.0.0.1\nport = %d\nmax_datagram = 8192\n"
	    "[listen.http]\ntype = http\npath = http.sock\n",
	    MAX_META, tcp_port, udp_port);
	om_daemon_init(&D, 2, extra);
	/* max_uri belongs to [index], which the harness writes: add it there. */
	{
		FILE *f = fopen(D.conf, "r");
		char conf[8192];
		size_t n;
		char *ix;

		assert_non_null(f);
		n = fread(conf, 1, sizeof(conf) - 1, f);
		fclose(f);
		conf[n] = '\0';
		ix = strstr(conf, "[index]\n");
		assert_non_null(ix);
		f = fopen(D.conf, "w");
		assert_non_null(f);
		fwrite(conf, 1, (size_t)(ix - conf) + 8, f);
		fprintf(f, "max_uri = %d\n", MAX_URI);
		fputs(ix + 8, f);
		assert_int_equal(fclose(f), 0);
	}
	D.detached = 1;
	snprintf(http_sock, sizeof(http_sock), "%s/http.sock", D.dir);
	snprintf(tier_dir[OM_TIER_PERSISTENT], sizeof(tier_dir[0]), "%s/objects", D.dir);
	snprintf(tier_dir[OM_TIER_MEMORY], sizeof(tier_dir[0]), "%s", D.mem);
	own_fds_cloexec();
	om_daemon_start(&D);
	*state = &D;
	return 0;
}

/* ---- a client's descriptors ---------------------------------------------- */

/* The descriptors open in this process, as a bitmap of the first 4096. */
typedef struct {
	unsigned char open[4096];
} fdset_t;

static void
list_fds(fdset_t *s)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	assert_non_null(d);
	memset(s, 0, sizeof(*s));
	while ((de = readdir(d)) != NULL) {
		int fd = atoi(de->d_name);

		if (de->d_name[0] == '.' || fd == dirfd(d) || fd >= 4096)
			continue;
		s->open[fd] = 1;
	}
	closedir(d);
}

static char *
fd_target(int fd, char *buf, size_t n)
{
	char link[64];
	ssize_t r;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	r = readlink(link, buf, n - 1);
	buf[r > 0 ? r : 0] = '\0';
	return buf;
}

/* after == before + extra (the clients' connections), and nothing else. */
static void
assert_fds(const fdset_t *before, const int *extra, int nextra)
{
	fdset_t now, want = *before;

	for (int i = 0; i < nextra; i++)
		if (extra[i] >= 0)
			want.open[extra[i]] = 1;
	list_fds(&now);
	for (int fd = 0; fd < 4096; fd++) {
		char t[512];

		if (now.open[fd] && !want.open[fd])
			fail_msg("descriptor %d (%s) was left open", fd, fd_target(fd, t, sizeof(t)));
		if (!now.open[fd] && want.open[fd])
			fail_msg("descriptor %d disappeared", fd);
	}
}

/* A descriptor that came with a response: the object's file, read-only,
 * close-on-exec, of the object's size; a packed object's (it has no file):
 * a memfd of its own, sealed, mode 0440, read-only, close-on-exec, of the
 * object's size. */
static void
assert_object_fd(int fd, const om_info_t *info)
{
	char path[600], name[32];
	struct stat fs, ps;
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);

	assert_true(info->tier == OM_TIER_MEMORY || info->tier == OM_TIER_PERSISTENT);
	snprintf(name, sizeof(name), "%02x/%016" PRIx64, (unsigned)(info->id & 0xff), info->id);
	snprintf(path, sizeof(path), "%s/%s", tier_dir[info->tier], name);
	assert_int_equal(fstat(fd, &fs), 0);
	assert_true(S_ISREG(fs.st_mode));
	assert_int_equal((uint64_t)fs.st_size, info->size);
	if (info->size <= PACK_MAX) {
		int seals = fcntl(fd, F_GET_SEALS), need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
		char self[64], target[512];
		ssize_t n;

		if (stat(path, &ps) == 0)
			fail_msg("object %" PRIu64 " of %" PRIu64 " bytes has a file (%s): not packed", info->id,
			    info->size, path);
		snprintf(self, sizeof(self), "/proc/self/fd/%d", fd);
		n = readlink(self, target, sizeof(target) - 1);
		assert_true(n > 0);
		target[n] = '\0';
		if (strncmp(target, "/memfd:objmapper-object", 23) != 0)
			fail_msg("descriptor %d of packed object %" PRIu64 " is %s, not a memfd of its own", fd,
			    info->id, target);
		if (seals < 0 || (seals & need) != need)
			fail_msg("the memfd of packed object %" PRIu64 " is not sealed (seals %#x)", info->id,
			    (unsigned)seals);
		assert_int_equal(fs.st_mode & 07777, 0440);
		assert_int_equal(fl & O_ACCMODE, O_RDONLY);
		assert_true(fdfl & FD_CLOEXEC);
		return;
	}
	if (stat(path, &ps) != 0)
		fail_msg("the object's file %s: %s", path, strerror(errno));
	if (fs.st_ino != ps.st_ino || fs.st_dev != ps.st_dev)
		fail_msg("descriptor %d is not the file of object %" PRIu64 " (%s)", fd, info->id, path);
	assert_int_equal(fl & O_ACCMODE, O_RDONLY);
	assert_true(fdfl & FD_CLOEXEC);
}

static uint64_t
stat_value(const char *text, const char *name)
{
	size_t n = strlen(name);
	uint64_t sum = 0;

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{' || p[n] == '\0')) {
			const char *sp = strchr(p, ' ');

			if (sp != NULL)
				sum += strtoull(sp + 1, NULL, 10);
		}
	}
	return sum;
}

static uint64_t
daemon_stat(const char *name)
{
	om_client_t *c = NULL;
	char *text = NULL;
	uint64_t v;

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_stats(c, &text), 0);
	v = stat_value(text, name);
	free(text);
	om_client_close(c);
	return v;
}

static void
test_client_descriptors(void **state)
{
	static uint8_t big[200000], small[1000];
	const char *uris[] = { "/h/small", "/h/big", "/h/eph", "/h/fromfd", "/h/missing" };
	fdset_t before;
	om_client_t *c = NULL, *cs = NULL;
	om_put_opts_t eph = { .flags = OM_PUT_EPHEMERAL };
	unsigned fds_seen = 0, from_memory = 0;
	int src, conns[2];

	(void)state;
	om_test_fill(big, sizeof(big), 1);
	om_test_fill(small, sizeof(small), 2);
	list_fds(&before);
	/* One private client, one that shares descriptions. */
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_connect(D.sock, OM_CLIENT_OFFSET_READS, &cs), 0);
	assert_int_equal(om_client_put(c, uris[0], small, sizeof(small), NULL, NULL), 0);
	assert_int_equal(om_client_put(c, uris[1], big, sizeof(big), NULL, NULL), 0);
	assert_int_equal(om_client_put(c, uris[2], big, 30000, &eph, NULL), 0);
	/* PUTs from descriptors: a memfd and a regular file. */
	src = memfd_create("hygiene", MFD_CLOEXEC);
	assert_true(src >= 0);
	assert_int_equal(write(src, big, 70000), 70000);
	assert_int_equal(om_client_put_fd(c, uris[3], src, 70000, NULL, NULL), 0);
	close(src);
	{
		char tmp[512];

		snprintf(tmp, sizeof(tmp), "%s/put-source", D.dir);
		src = open(tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
		assert_true(src >= 0);
		assert_int_equal(write(src, big, sizeof(big)), (ssize_t)sizeof(big));
		for (int i = 0; i < 20; i++)
			assert_int_equal(om_client_put_fd(cs, uris[3], src, 70000 + (uint64_t)i, NULL, NULL), 0);
		close(src);
		unlink(tmp);
	}
	for (int round = 0; round < 60; round++) {
		om_client_t *cl = round % 2 ? cs : c;

		for (unsigned u = 0; u < sizeof(uris) / sizeof(uris[0]); u++) {
			for (int mode = OM_MODE_AUTO; mode <= OM_MODE_SPLICE; mode++) {
				om_object_t o;
				int rc = om_client_get(cl, uris[u], mode, round % 3 ? 0 : OM_GET_WANT_META, &o);

				if (u == 4) {
					assert_int_equal(rc, -OM_STATUS_NOT_FOUND);
					continue;
				}
				assert_int_equal(rc, 0);
				if (o.fd >= 0) {
					assert_object_fd(o.fd, &o.info);
					fds_seen++;
					from_memory += o.info.tier == OM_TIER_MEMORY && u != 2;
				} else {
					assert_true(mode != OM_MODE_FDPASS);
				}
				om_object_free(&o);
			}
			{
				int fd = -1;
				om_info_t info;
				int rc = om_client_get_fd(cl, uris[u], &fd, &info);

				if (u == 4) {
					assert_int_equal(rc, -OM_STATUS_NOT_FOUND);
					assert_int_equal(fd, -1);
				} else {
					assert_int_equal(rc, 0);
					assert_object_fd(fd, &info);
					fds_seen++;
					close(fd);
				}
			}
		}
		/* A batch in fdpass mode, the missing one in the middle. */
		{
			om_object_t objs[5];
			int rcs[5];

			assert_int_equal(om_client_get_batch(cl, 5, uris, OM_MODE_FDPASS, 0, objs, rcs), 0);
			for (int i = 0; i < 5; i++) {
				if (i == 4) {
					assert_int_equal(rcs[i], -OM_STATUS_NOT_FOUND);
					continue;
				}
				assert_int_equal(rcs[i], 0);
				assert_object_fd(objs[i].fd, &objs[i].info);
				fds_seen++;
				om_object_free(&objs[i]);
			}
		}
		/* Errors of every kind, and the other operations. */
		assert_int_equal(om_client_delete(cl, "/h/missing"), -OM_STATUS_NOT_FOUND);
		assert_int_equal(om_client_stat(cl, "/h/missing", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
		assert_int_equal(om_client_get(cl, "/h/../x", OM_MODE_FDPASS, 0, &(om_object_t){ 0 }), -OM_EINVAL);
		assert_int_equal(om_client_ping(cl), 0);
		{
			char *text = NULL;

			assert_int_equal(om_client_stats(cl, &text), 0);
			free(text);
		}
		if (round == 30)
			usleep(300000); /* a pass of the cache manager: promoted copies */
	}
	print_message("%u descriptors received, %u of them promoted copies in the memory tier\n", fds_seen,
	    from_memory);
	assert_true(from_memory > 0);
	conns[0] = om_client_fd(c);
	conns[1] = om_client_fd(cs);
	assert_fds(&before, conns, 2);
	om_client_close(c);
	om_client_close(cs);
	assert_fds(&before, NULL, 0);
}

/* ---- the same on the wire ------------------------------------------------- */

/* Reads exactly n bytes with recvmsg, counting the descriptors that come
 * (and checking each, then closing it). */
static int
recv_counting(int fd, void *buf, size_t n, int *fds, int *fdv, int fdcap)
{
	uint8_t *p = buf;

	while (n > 0) {
		union {
			struct cmsghdr h;
			char b[CMSG_SPACE(sizeof(int) * 8)];
		} ctl;
		struct iovec iov = { p, n };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
			.msg_controllen = sizeof(ctl.b) };
		struct pollfd pf = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pf, 1, 5000) != 1)
			return -1;
		r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
		if (r <= 0)
			return -1;
		assert_false(mh.msg_flags & MSG_CTRUNC);
		for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
				continue;
			for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
				int got;

				memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
				if (*fds < fdcap)
					fdv[*fds] = got;
				else
					close(got);
				(*fds)++;
			}
		}
		p += r;
		n -= (size_t)r;
	}
	return 0;
}

/* Sends one raw request, reads its whole response; returns the status
 * and how many descriptors came with it (each checked as the object's). */
static int
raw_exchange(int fd, const uint8_t *req, size_t len, om_resp_t *r, int *nfds)
{
	static uint8_t rest[1 << 20];
	uint8_t h[OM_RESP_HDR_LEN];
	int fdv[8];

	*nfds = 0;
	om_raw_send_all(fd, req, len);
	assert_int_equal(recv_counting(fd, h, sizeof(h), nfds, fdv, 8), 0);
	assert_int_equal(om_proto_get_resp(h, r), 0);
	{
		uint64_t more = (uint64_t)r->msg_len + r->meta_len + (r->body == OM_BODY_INLINE ? r->body_len : 0);

		assert_true(more <= sizeof(rest));
		if (more > 0)
			assert_int_equal(recv_counting(fd, rest, (size_t)more, nfds, fdv, 8), 0);
	}
	for (int i = 0; i < *nfds && i < 8; i++) {
		om_info_t info = { .id = r->obj_id, .size = r->body_len, .tier = r->tier };

		assert_object_fd(fdv[i], &info);
		close(fdv[i]);
	}
	return r->status;
}

static void
test_wire_descriptors(void **state)
{
	static uint8_t req[300000];
	uint8_t big[100000];
	om_resp_t r;
	size_t n;
	int fd = om_raw_connect_unix(D.sock), nfds, with = 0, without = 0;

	(void)state;
	om_test_fill(big, sizeof(big), 3);
	n = om_raw_req(req, OM_OP_HELLO, 1, 0, NULL, 0, 0);
	assert_int_equal(raw_exchange(fd, req, n, &r, &nfds), OM_STATUS_OK);
	assert_int_equal(nfds, 0);
	n = om_raw_req(req, OM_OP_PUT, 2, 0, "/w/big", 0, sizeof(big));
	memcpy(req + n, big, sizeof(big));
	assert_int_equal(raw_exchange(fd, req, n + sizeof(big), &r, &nfds), OM_STATUS_OK);
	assert_int_equal(nfds, 0);
	n = om_raw_req(req, OM_OP_PUT, 3, 0, "/w/small", 0, 100);
	memcpy(req + n, big, 100);
	assert_int_equal(raw_exchange(fd, req, n + 100, &r, &nfds), OM_STATUS_OK);
	assert_int_equal(nfds, 0);
	for (int i = 0; i < 50; i++) {
		static const char *const uri[] = { "/w/big", "/w/small", "/w/none", "/w/../x" };
		const char *u = uri[i % 4];

		for (uint32_t mode = OM_MODE_AUTO; mode <= OM_MODE_SPLICE; mode++) {
			int st;

			n = om_raw_req(req, OM_OP_GET, 100 + (uint32_t)i, mode | (i % 2 ? OM_GET_WANT_META : 0), u, 0, 0);
			st = raw_exchange(fd, req, n, &r, &nfds);
			assert_int_equal(nfds, r.body == OM_BODY_DESCRIPTOR ? 1 : 0);
			if (r.body == OM_BODY_DESCRIPTOR) {
				assert_int_equal(st, OM_STATUS_OK);
				assert_true(mode == OM_MODE_FDPASS || (mode == OM_MODE_AUTO && r.body_len > 65536));
				with++;
			} else {
				without++;
			}
			if (mode == OM_MODE_FDPASS && st == OM_STATUS_OK)
				assert_int_equal(r.body, OM_BODY_DESCRIPTOR);
		}
		n = om_raw_req(req, OM_OP_STAT, 200, OM_GET_WANT_META, u, 0, 0);
		raw_exchange(fd, req, n, &r, &nfds);
		assert_int_equal(nfds, 0);
		n = om_raw_req(req, OM_OP_DELETE, 201, 0, "/w/none", 0, 0);
		assert_int_equal(raw_exchange(fd, req, n, &r, &nfds), OM_STATUS_NOT_FOUND);
		assert_int_equal(nfds, 0);
		n = om_raw_req(req, OM_OP_STATS, 202, 0, NULL, 0, 0);
		assert_int_equal(raw_exchange(fd, req, n, &r, &nfds), OM_STATUS_OK);
		assert_int_equal(nfds, 0);
		n = om_raw_req(req, OM_OP_PING, 203, 0, NULL, 0, 0);
		assert_int_equal(raw_exchange(fd, req, n, &r, &nfds), OM_STATUS_OK);
		assert_int_equal(nfds, 0);
		n = om_raw_req(req, 99, 204, 0, NULL, 0, 0);
		assert_int_equal(raw_exchange(fd, req, n, &r, &nfds), OM_STATUS_UNKNOWN_OP);
		assert_int_equal(nfds, 0);
	}
	close(fd);
	print_message("raw Unix: %d responses with a descriptor (one each), %d without (none)\n", with, without);
	assert_true(with >= 30);

	/* HTTP on a Unix socket: never a descriptor. */
	fd = om_raw_connect_unix(http_sock);
	for (int i = 0; i < 40; i++) {
		const char *q = i % 2 ? "GET /w/big HTTP/1.1\r\nHost: x\r\n\r\n" : "GET /w/none HTTP/1.1\r\nHost: x\r\n\r\n";
		char head[4096];
		size_t have = 0, clen = 0;
		int fdv[8];
		char *cl;

		nfds = 0;
		om_raw_send_all(fd, q, strlen(q));
		for (;;) {
			assert_true(have < sizeof(head) - 1);
			assert_int_equal(recv_counting(fd, head + have, 1, &nfds, fdv, 8), 0);
			have++;
			head[have] = '\0';
			if (strstr(head, "\r\n\r\n") != NULL)
				break;
		}
		if ((cl = strcasestr(head, "\r\nContent-Length:")) != NULL)
			clen = strtoull(cl + 17, NULL, 10);
		assert_true(clen <= sizeof(req));
		if (clen > 0)
			assert_int_equal(recv_counting(fd, req, clen, &nfds, fdv, 8), 0);
		assert_int_equal(nfds, 0);
		assert_non_null(strstr(head, i % 2 ? " 200 " : " 404 "));
	}
	close(fd);
}

/* ---- the daemon's descriptors --------------------------------------------- */

/* Every descriptor above 2 of pid is close-on-exec; returns how many
 * were looked at. */
static unsigned
assert_process_cloexec(pid_t pid, const char *what)
{
	char dir[64];
	DIR *d;
	struct dirent *de;
	unsigned seen = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fdinfo", (int)pid);
	d = opendir(dir);
	if (d == NULL)
		fail_msg("%s %d: %s: %s", what, (int)pid, dir, strerror(errno));
	while ((de = readdir(d)) != NULL) {
		char path[400], line[256], target[512] = "", link[400];
		unsigned long flags = 0;
		int fd = atoi(de->d_name), found = 0;
		FILE *f;
		ssize_t tn;

		if (de->d_name[0] == '.' || fd <= 2)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if ((f = fopen(path, "re")) == NULL)
			continue; /* closed meanwhile */
		while (fgets(line, sizeof(line), f) != NULL)
			if (sscanf(line, "flags: %lo", &flags) == 1) {
				found = 1;
				break;
			}
		fclose(f);
		if (!found)
			continue;
		seen++;
		snprintf(link, sizeof(link), "/proc/%d/fd/%s", (int)pid, de->d_name);
		tn = readlink(link, target, sizeof(target) - 1);
		target[tn > 0 ? tn : 0] = '\0';
		if (!(flags & 02000000))
			fail_msg("%s %d: descriptor %d (%s) is not close-on-exec (flags 0%lo)", what, (int)pid, fd,
			    target, flags);
	}
	closedir(d);
	return seen;
}

static unsigned
assert_daemon_cloexec(const char *when)
{
	pid_t kids[32];
	int n = om_daemon_children(&D, kids, 32, NULL);
	unsigned seen = assert_process_cloexec(D.pid, "master");

	assert_true(n >= 3);
	for (int i = 0; i < n; i++) {
		char title[256] = "";

		om_proc_title(kids[i], title, sizeof(title));
		seen += assert_process_cloexec(kids[i], title);
	}
	print_message("%s: %d processes, %u descriptors, all close-on-exec\n", when, n + 1, seen);
	return seen;
}

/* Descriptors the workers hold of object files: all, and those of files
 * that are gone. */
typedef struct {
	unsigned all, gone;
} obj_fds_t;

static void
count_object_fd(void *arg, const char *target)
{
	obj_fds_t *k = arg;

	if (strncmp(target, tier_dir[OM_TIER_PERSISTENT], strlen(tier_dir[OM_TIER_PERSISTENT])) != 0 &&
	    strncmp(target, tier_dir[OM_TIER_MEMORY], strlen(tier_dir[OM_TIER_MEMORY])) != 0)
		return;
	k->all++;
	k->gone += strstr(target, " (deleted)") != NULL;
}

static void
count_object_fds(unsigned *all, unsigned *gone)
{
	pid_t kids[32];
	int n = om_daemon_children(&D, kids, 32, NULL);
	obj_fds_t k = { 0, 0 };

	for (int i = 0; i < n; i++)
		(void)om_test_fd_targets(kids[i], count_object_fd, &k);
	*all = k.all;
	*gone = k.gone;
}

/*
 * The workers' descriptor caches: [cache] open_files = 4096 holds more
 * than the default 1024 on one worker, and every descriptor of a deleted,
 * replaced or evicted object's file is closed (the index's notes of
 * dropped files), so that its space is given back. The objects are over
 * PACK_MAX: files of their own, a descriptor each (packed ones share their
 * pack's).
 */
#define FDC_A (PACK_MAX + 600)
#define FDC_B (PACK_MAX + 700)

static void
test_cached_descriptors(void **state)
{
	static uint8_t buf[FDC_B], want[FDC_B];
	om_client_t *c = NULL, *c2 = NULL;
	unsigned all = 0, gone = 0, i;
	uint64_t t0;
	char uri[64];

	(void)state;
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	for (i = 0; i < 3000; i++) {
		snprintf(uri, sizeof(uri), "/fdc/%u", i);
		om_test_fill(buf, FDC_A, i);
		assert_int_equal(om_client_put(c, uri, buf, FDC_A, NULL, NULL), 0);
	}
	/* Read back by the worker (copy mode: from its cache), twice: the
	 * second read of each comes from a memory-tier copy (promote_hits 1). */
	for (int round = 0; round < 2; round++) {
		for (i = 0; i < 3000; i++) {
			size_t n = 0;

			snprintf(uri, sizeof(uri), "/fdc/%u", i);
			assert_int_equal(om_client_get_buf(c, uri, OM_MODE_COPY, buf, sizeof(buf), &n, NULL), 0);
			assert_int_equal(n, FDC_A);
			om_test_fill(want, FDC_A, i);
			assert_memory_equal(buf, want, FDC_A);
		}
		if (round == 0)
			usleep(300000); /* a manager pass or two: the copies */
	}
	count_object_fds(&all, &gone);
	print_message("after 6,000 GETs of 3,000 objects: %u descriptors of object files, %u of "
	    "files gone\n", all, gone);
	assert_true(all > 1024 + 256);
	/* Replaced (the first 1,000), deleted (the rest), over another
	 * connection: if it is another worker's, the one holding the
	 * descriptors hears of it while idle, within 50 ms (allowed 2 s
	 * here: the machine may be loaded). */
	assert_int_equal(om_client_connect(D.sock, 0, &c2), 0);
	for (i = 0; i < 3000; i++) {
		snprintf(uri, sizeof(uri), "/fdc/%u", i);
		if (i < 1000) {
			om_test_fill(buf, FDC_B, i + 7);
			assert_int_equal(om_client_put(c2, uri, buf, FDC_B, NULL, NULL), 0);
		} else {
			assert_int_equal(om_client_delete(c2, uri), 0);
		}
	}
	t0 = om_clock_ms();
	for (int t = 0; t < 80; t++) {
		count_object_fds(&all, &gone);
		if (gone == 0)
			break;
		usleep(25000);
	}
	print_message("after replacing 1,000 and deleting 2,000: %u descriptors, %u of files gone "
	    "(%llu ms after the last delete)\n", all, gone, (unsigned long long)(om_clock_ms() - t0));
	assert_int_equal(gone, 0);
	om_client_close(c2);
	for (i = 0; i < 1000; i++) {
		size_t n = 0;

		snprintf(uri, sizeof(uri), "/fdc/%u", i);
		assert_int_equal(om_client_get_buf(c, uri, OM_MODE_COPY, buf, sizeof(buf), &n, NULL), 0);
		assert_int_equal(n, FDC_B);
		om_test_fill(want, FDC_B, i + 7);
		assert_memory_equal(buf, want, FDC_B);
		assert_int_equal(om_client_delete(c, uri), 0);
	}
	om_client_close(c);
}

static int
children_are(void *arg)
{
	pid_t kids[32];

	return om_daemon_children(&D, kids, 32, NULL) == *(int *)arg;
}

static void
test_daemon_cloexec(void **state)
{
	static uint8_t buf[300000];
	om_client_t *c = NULL, *ct = NULL, *cu = NULL;
	int hold[4], three = 3;
	size_t n;

	(void)state;
	/* Connections on every listener, the descriptor caches in use. */
	assert_int_equal(om_client_connect(D.sock, OM_CLIENT_OFFSET_READS, &c), 0);
	assert_int_equal(om_client_connect(tcp_addr, 0, &ct), 0);
	assert_int_equal(om_client_connect(udp_addr, 0, &cu), 0);
	for (int i = 0; i < 20; i++) {
		char uri[64];
		om_object_t o;

		snprintf(uri, sizeof(uri), "/cx/%d", i);
		assert_int_equal(om_client_put(c, uri, buf, 1000 + (size_t)i * 5000, NULL, NULL), 0);
		assert_int_equal(om_client_get(c, uri, OM_MODE_FDPASS, 0, &o), 0);
		om_object_free(&o);
		assert_int_equal(om_client_get(ct, uri, OM_MODE_SPLICE, 0, &o), 0);
		om_object_free(&o);
		assert_int_equal(om_client_get(c, uri, OM_MODE_COPY, 0, &o), 0);
		om_object_free(&o);
	}
	assert_int_equal(om_client_ping(cu), 0);
	hold[0] = om_raw_connect_unix(http_sock);
	om_raw_send_all(hold[0], "GET /cx/1 HTTP/1.1\r\nHost: x\r\n\r\n", 31);
	/* A PUT in progress: its unlinked file is open in a worker. */
	hold[1] = om_raw_connect_unix(D.sock);
	n = om_raw_req(buf, OM_OP_PUT, 1, 0, "/cx/partial", 0, 200000);
	om_raw_send_all(hold[1], buf, n + 50000);
	/* The same over TCP. */
	{
		struct sockaddr_in sa = { .sin_family = AF_INET };

		hold[2] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((uint16_t)tcp_port);
		assert_int_equal(connect(hold[2], (struct sockaddr *)&sa, sizeof(sa)), 0);
		n = om_raw_req(buf, OM_OP_PUT, 1, 0, "/cx/partial2", 0, 200000);
		om_raw_send_all(hold[2], buf, n + 50000);
	}
	hold[3] = om_raw_connect_unix(D.sock); /* idle */
	usleep(300000);
	assert_daemon_cloexec("under load");
	for (int i = 0; i < 4; i++)
		close(hold[i]);

	/* After a reload (a new generation; the master keeps its sockets),
	 * and after a worker is killed and replaced. */
	om_daemon_kill(&D, SIGHUP);
	usleep(300000);
	assert_true(om_wait_until(children_are, &three, 20000));
	assert_int_equal(om_client_ping(c), 0);
	assert_int_equal(om_client_ping(ct), 0);
	assert_int_equal(om_client_ping(cu), 0);
	assert_daemon_cloexec("after a reload");
	{
		pid_t w[8], victim;
		int nw = om_daemon_children(&D, w, 8, "worker process");

		assert_true(nw > 0);
		victim = w[0];
		assert_int_equal(kill(victim, SIGKILL), 0);
		for (int i = 0; i < 1000; i++) {
			int alive = 0;

			nw = om_daemon_children(&D, w, 8, "worker process");
			for (int k = 0; k < nw; k++)
				alive |= w[k] == victim;
			if (!alive && nw == 2)
				break;
			usleep(20000);
		}
		assert_int_equal(nw, 2);
	}
	assert_int_equal(om_client_ping(c), 0);
	assert_daemon_cloexec("after a worker was killed");
	om_client_close(c);
	om_client_close(ct);
	om_client_close(cu);
}

/* ---- bad URIs and metadata touch nothing ---------------------------------- */

typedef struct {
	uint64_t objects, puts, deletes, bytes;
	char *files; /* every file under both tiers, with its size */
	size_t files_len;
} snap_t;

static void
walk(const char *base, const char *rel, char **out, size_t *len)
{
	char path[1200];
	DIR *d;
	struct dirent *de;

	snprintf(path, sizeof(path), "%s%s", base, rel);
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char sub[1200], line[1400];
		struct stat st;
		int k;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", rel, de->d_name);
		snprintf(path, sizeof(path), "%s%s", base, sub);
		if (lstat(path, &st) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			walk(base, sub, out, len);
			continue;
		}
		k = snprintf(line, sizeof(line), "%s %lld\n", sub, (long long)st.st_size);
		*out = realloc(*out, *len + (size_t)k + 1);
		assert_non_null(*out);
		memcpy(*out + *len, line, (size_t)k + 1);
		*len += (size_t)k;
	}
	closedir(d);
}

static int
line_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void
snapshot(snap_t *s)
{
	om_client_t *c = NULL;
	char *text = NULL;

	memset(s, 0, sizeof(*s));
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_stats(c, &text), 0);
	s->objects = stat_value(text, "index_objects");
	s->puts = stat_value(text, "puts_total");
	s->deletes = stat_value(text, "deletes_total");
	s->bytes = stat_value(text, "bytes");
	free(text);
	om_client_close(c);
	for (int t = 0; t < 2; t++) {
		char *part = NULL;
		size_t plen = 0;

		walk(tier_dir[t], "", &part, &plen);
		/* readdir's order is the filesystem's: sort the lines. */
		if (part != NULL) {
			char *lines[4096];
			size_t nl = 0;

			for (char *p = strtok(part, "\n"); p != NULL && nl < 4096; p = strtok(NULL, "\n"))
				lines[nl++] = p;
			if (nl > 1)
				qsort(lines, nl, sizeof(lines[0]), line_cmp);
			for (size_t i = 0; i < nl; i++) {
				size_t k = strlen(lines[i]);

				s->files = realloc(s->files, s->files_len + k + 4);
				assert_non_null(s->files);
				s->files[s->files_len++] = (char)('0' + t);
				memcpy(s->files + s->files_len, lines[i], k);
				s->files_len += k;
				s->files[s->files_len++] = '\n';
				s->files[s->files_len] = '\0';
			}
		}
		free(part);
	}
}

static void
assert_same(const snap_t *a, const snap_t *b, const char *what)
{
	if (a->objects != b->objects || a->puts != b->puts || a->deletes != b->deletes || a->bytes != b->bytes)
		fail_msg("%s changed the store: objects %" PRIu64 " -> %" PRIu64 ", puts %" PRIu64 " -> %" PRIu64
		    ", deletes %" PRIu64 " -> %" PRIu64 ", bytes %" PRIu64 " -> %" PRIu64, what, a->objects,
		    b->objects, a->puts, b->puts, a->deletes, b->deletes, a->bytes, b->bytes);
	if (a->files_len != b->files_len || (a->files_len && memcmp(a->files, b->files, a->files_len) != 0))
		fail_msg("%s changed the tiers' files:\nbefore:\n%s\nafter:\n%s", what, a->files ? a->files : "",
		    b->files ? b->files : "");
}

typedef struct {
	const char *name;
	const char *says; /* in the error's message */
	char uri[70000];
	size_t len;
} bad_uri_t;

static bad_uri_t bad[12];
static unsigned nbad;

static void
add_bad(const char *name, const char *says, const void *uri, size_t len)
{
	bad_uri_t *b = &bad[nbad++];

	assert_true(len < sizeof(b->uri));
	b->name = name;
	b->says = says;
	memcpy(b->uri, uri, len);
	b->len = len;
}

static void
make_bad_uris(void)
{
	static char long_uri[65535];

	nbad = 0;
	add_bad("a NUL byte", "NUL", "/keep\0/x", 8);
	add_bad("a NUL byte at the end", "NUL", "/keep\0", 6);
	add_bad("a \"..\" segment", "\"..\"", "/keep/../x", 10);
	add_bad("\"..\" alone", "\"..\"", "..", 2);
	add_bad("a trailing \"..\"", "\"..\"", "/keep/..", 8);
	add_bad("a tab", "control character", "/keep\tx", 7);
	add_bad("a newline", "control character", "/keep\r\nX-Injected: 1", 20);
	add_bad("DEL (0x7f)", "control character", "/keep\x7f", 6);
	add_bad("a space", "space", "/keep x", 7);
	memset(long_uri, 'u', sizeof(long_uri));
	long_uri[0] = '/';
	add_bad("one byte over max_uri", "1 to 256 allowed", long_uri, MAX_URI + 1);
	add_bad("over the protocol's 1024", "1 to 256 allowed", long_uri, 1025);
	add_bad("65535 bytes", "1 to 256 allowed", long_uri, 65535);
}

/* A request with a URI of any bytes and length. */
static size_t
req_with_uri(uint8_t *buf, uint8_t op, uint32_t id, uint32_t flags, const bad_uri_t *u, uint16_t meta_len,
    uint64_t body_len)
{
	om_req_t q = { .version = 1, .op = op, .id = id, .flags = flags, .uri_len = (uint16_t)u->len,
		.meta_len = meta_len, .body_len = body_len };

	om_proto_put_req(buf, &q);
	memcpy(buf + OM_REQ_HDR_LEN, u->uri, u->len);
	return OM_REQ_HDR_LEN + u->len;
}

/* Every operation with every bad URI on one stream (Unix or TCP): status
 * URI_INVALID with a message, the stream still in step. */
static void
bad_uris_on_stream(int fd, const char *transport, unsigned *answered)
{
	static uint8_t buf[80000];
	static const uint8_t ops[] = { OM_OP_PUT, OM_OP_GET, OM_OP_STAT, OM_OP_DELETE };

	for (unsigned i = 0; i < nbad; i++) {
		for (unsigned o = 0; o < sizeof(ops); o++) {
			char msg[256];
			om_resp_t r;
			size_t n;
			uint32_t id = 1000 + i * 10 + o;

			if (ops[o] == OM_OP_PUT) {
				n = req_with_uri(buf, OM_OP_PUT, id, 0, &bad[i], 5, 10);
				memcpy(buf + n, "meta!0123456789", 15);
				n += 15;
			} else {
				n = req_with_uri(buf, ops[o], id, 0, &bad[i], 0, 0);
			}
			om_raw_send_all(fd, buf, n);
			if (om_raw_read_resp(fd, &r, msg, sizeof(msg)) != OM_STATUS_URI_INVALID)
				fail_msg("%s: %s with %s: status %d (%s), not URI_INVALID", transport,
				    om_proto_op_name(ops[o]), bad[i].name, r.status, msg);
			assert_int_equal(r.id, id);
			if (strstr(msg, bad[i].says) == NULL)
				fail_msg("%s: %s with %s: the message \"%s\" does not say \"%s\"", transport,
				    om_proto_op_name(ops[o]), bad[i].name, msg, bad[i].says);
			(*answered)++;
		}
	}
	/* Metadata over the limit: over max_metadata, and over the protocol's
	 * 2048; with a good URI and with a bad one. */
	{
		static const uint16_t metas[] = { MAX_META + 1, 2049, 4000 };

		for (unsigned m = 0; m < 3; m++) {
			char msg[256];
			om_resp_t r;
			size_t n = om_raw_req(buf, OM_OP_PUT, 77, 0, "/keep", metas[m], 10);

			memset(buf + n, 'm', metas[m] + 10u);
			om_raw_send_all(fd, buf, n + metas[m] + 10);
			if (om_raw_read_resp(fd, &r, msg, sizeof(msg)) != OM_STATUS_META_TOO_LARGE)
				fail_msg("%s: PUT with %u bytes of metadata: status %d (%s)", transport, metas[m], r.status,
				    msg);
			if (strstr(msg, "metadata") == NULL)
				fail_msg("%s: PUT with %u bytes of metadata: the message \"%s\" does not say so", transport,
				    metas[m], msg);
			(*answered)++;
		}
		{
			char msg[256];
			om_resp_t r;
			size_t n = req_with_uri(buf, OM_OP_PUT, 78, 0, &bad[2], MAX_META + 1, 10);
			int st;

			memset(buf + n, 'm', MAX_META + 11);
			om_raw_send_all(fd, buf, n + MAX_META + 11);
			st = om_raw_read_resp(fd, &r, msg, sizeof(msg));
			assert_true(st == OM_STATUS_URI_INVALID || st == OM_STATUS_META_TOO_LARGE);
			(*answered)++;
		}
	}
	{
		char msg[64];
		om_resp_t r;
		size_t n = om_raw_req(buf, OM_OP_PING, 99, 0, NULL, 0, 0);

		om_raw_send_all(fd, buf, n);
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_OK);
		assert_int_equal(r.id, 99);
	}
}

/* The same over UDP: one datagram per request, padded. */
static void
bad_uris_on_udp(unsigned *answered)
{
	static uint8_t buf[70000], resp[9000];
	static const uint8_t ops[] = { OM_OP_PUT, OM_OP_GET, OM_OP_STAT, OM_OP_DELETE };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)udp_port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	for (unsigned i = 0; i < nbad; i++) {
		for (unsigned o = 0; o < sizeof(ops); o++) {
			uint32_t id = 5000 + i * 10 + o;
			size_t n;
			om_resp_t r;
			int got = 0;

			if (bad[i].len > 60000)
				continue; /* does not fit a datagram */
			if (ops[o] == OM_OP_PUT) {
				n = req_with_uri(buf, OM_OP_PUT, id, 0, &bad[i], 0, 10);
				memset(buf + n, 'b', 10);
				n += 10;
			} else {
				n = req_with_uri(buf, ops[o], id, 0, &bad[i], 0, 0);
			}
			if (n < 3000) {
				memset(buf + n, 0, 3000 - n);
				n = 3000;
			}
			for (int tries = 0; tries < 5 && !got; tries++) {
				struct pollfd pf = { fd, POLLIN, 0 };

				assert_int_equal(send(fd, buf, n, 0), (ssize_t)n);
				while (poll(&pf, 1, 200 << tries) == 1) {
					ssize_t k = recv(fd, resp, sizeof(resp), 0);

					if (k >= OM_RESP_HDR_LEN && om_proto_get_resp(resp, &r) == 0 && r.id == id) {
						got = 1;
						break;
					}
				}
			}
			if (!got)
				fail_msg("udp: %s with %s: no answer", om_proto_op_name(ops[o]), bad[i].name);
			if (r.status != OM_STATUS_URI_INVALID)
				fail_msg("udp: %s with %s: status %u, not URI_INVALID", om_proto_op_name(ops[o]), bad[i].name,
				    r.status);
			(*answered)++;
		}
	}
	close(fd);
}

/* One HTTP request on a fresh connection to the HTTP listener; its status. */
static int
http_status(const void *req, size_t len, char *why, size_t whycap, int head_only)
{
	int fd = om_raw_connect_unix(http_sock);
	char resp[8192];
	size_t have = 0;
	int status = -1;

	om_raw_send_all(fd, req, len);
	/* Read until the head is complete and its body is there (or EOF). */
	for (;;) {
		struct pollfd pf = { fd, POLLIN, 0 };
		ssize_t k;
		char *end;

		if (have + 1 >= sizeof(resp) || poll(&pf, 1, 5000) != 1)
			break;
		k = recv(fd, resp + have, sizeof(resp) - 1 - have, 0);
		if (k <= 0)
			break;
		have += (size_t)k;
		resp[have] = '\0';
		if ((end = strstr(resp, "\r\n\r\n")) != NULL) {
			char *cl = strcasestr(resp, "\r\nContent-Length:");
			size_t clen = cl && cl < end && !head_only ? strtoull(cl + 17, NULL, 10) : 0;

			if (have >= (size_t)(end + 4 - resp) + clen) {
				snprintf(why, whycap, "%.*s", (int)clen, end + 4);
				break;
			}
		}
	}
	resp[have] = '\0';
	if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
		status = -1;
	close(fd);
	return status;
}

static void
bad_uris_on_http(unsigned *answered)
{
	static const char *const methods[] = { "PUT", "GET", "HEAD", "DELETE" };
	static char req[80000];

	for (unsigned i = 0; i < nbad; i++) {
		for (unsigned m = 0; m < 4; m++) {
			char why[512] = "";
			size_t n = 0;
			int st, want_ok;

			n += (size_t)snprintf(req + n, sizeof(req) - n, "%s ", methods[m]);
			memcpy(req + n, bad[i].uri, bad[i].len);
			n += bad[i].len;
			n += (size_t)snprintf(req + n, sizeof(req) - n, " HTTP/1.1\r\nHost: x\r\n%s\r\n%s",
			    m == 0 ? "Content-Length: 5\r\n" : "", m == 0 ? "hello" : "");
			st = http_status(req, n, why, sizeof(why), m == 2);
			/* A URI that breaks the request line (a space, a
			 * newline) makes a malformed request: 400 either way.
			 * Over the limit: 414 (or 431 when the head itself is
			 * over max_header). */
			want_ok = st == 400 || st == 414 || (st == 431 && bad[i].len > 1024);
			if (!want_ok)
				fail_msg("http: %s with %s: status %d", methods[m], bad[i].name, st);
			(*answered)++;
		}
	}
	/* Metadata (the fields a PUT keeps) over max_metadata. */
	{
		char ct[MAX_META + 100], why[512] = "";
		int n, st;

		memset(ct, 'a', sizeof(ct) - 1);
		ct[sizeof(ct) - 1] = '\0';
		n = snprintf(req, sizeof(req), "PUT /keep HTTP/1.1\r\nHost: x\r\nContent-Type: text/%s\r\n"
		    "Content-Length: 5\r\n\r\nhello", ct);
		st = http_status(req, (size_t)n, why, sizeof(why), 0);
		if (st != 400 || strstr(why, "max_metadata") == NULL)
			fail_msg("http: PUT with metadata over the limit: status %d (%s)", st, why);
		(*answered)++;
	}
}

static void
test_bad_input_touches_nothing(void **state)
{
	om_client_t *c = NULL;
	snap_t before, after;
	unsigned answered = 0;
	uint64_t invalid_before, invalid_after;
	int fd;

	(void)state;
	make_bad_uris();
	/* Objects a bad URI could hit if it were cut at the bad byte, and a
	 * control: names that look odd but are valid. */
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/keep", "keep", 4, NULL, NULL), 0);
	assert_int_equal(om_client_put(c, "/keep/..x", "ok", 2, NULL, NULL), 0);
	assert_int_equal(om_client_put(c, "/keep/.../x", "ok", 2, NULL, NULL), 0);
	assert_int_equal(om_client_put(c, "/x", "x", 1, NULL, NULL), 0);
	/* The library refuses them before sending. */
	assert_int_equal(om_client_put(c, "/keep/../x", "no", 2, NULL, NULL), -OM_EINVAL);
	assert_int_equal(om_client_delete(c, "/keep\t"), -OM_EINVAL);
	om_client_close(c);
	usleep(300000); /* the cache manager's pass: nothing in flight */
	snapshot(&before);
	invalid_before = daemon_stat("requests_total{op=\"put\",status=\"uri_invalid\"}") +
	    daemon_stat("requests_total{op=\"get\",status=\"uri_invalid\"}");

	fd = om_raw_connect_unix(D.sock);
	bad_uris_on_stream(fd, "unix", &answered);
	close(fd);
	{
		struct sockaddr_in sa = { .sin_family = AF_INET };

		fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sa.sin_port = htons((uint16_t)tcp_port);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		bad_uris_on_stream(fd, "tcp", &answered);
		close(fd);
	}
	bad_uris_on_udp(&answered);
	bad_uris_on_http(&answered);
	usleep(300000);
	snapshot(&after);
	invalid_after = daemon_stat("requests_total{op=\"put\",status=\"uri_invalid\"}") +
	    daemon_stat("requests_total{op=\"get\",status=\"uri_invalid\"}");
	print_message("%u bad requests answered with their error; the store did not change (%" PRIu64
	    " objects, %zu bytes of file list)\n", answered, after.objects, after.files_len);
	assert_same(&before, &after, "bad URIs and metadata");
	/* The binary PUTs and GETs with a bad URI reached the daemon and were
	 * counted as such: 12 URIs on Unix and TCP, 11 on UDP (65535 bytes
	 * do not fit a datagram); HTTP GETs and HEADs with a URI the parser
	 * takes (".." segments, over the limit) add to it. */
	print_message("requests_total{op=put|get,status=uri_invalid}: +%" PRIu64 "\n",
	    invalid_after - invalid_before);
	assert_true(invalid_after - invalid_before >= 2 * (2 * nbad) + 2 * (nbad - 1));
	/* And the objects are intact. */
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	{
		char b[8];
		size_t len;

		assert_int_equal(om_client_get_buf(c, "/keep", OM_MODE_COPY, b, sizeof(b), &len, NULL), 0);
		assert_int_equal(len, 4);
		assert_memory_equal(b, "keep", 4);
	}
	om_client_close(c);
	free(before.files);
	free(after.files);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_client_descriptors),
		cmocka_unit_test(test_wire_descriptors),
		cmocka_unit_test(test_daemon_cloexec),
		cmocka_unit_test(test_cached_descriptors),
		cmocka_unit_test(test_bad_input_touches_nothing),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, om_daemon_teardown);
}
