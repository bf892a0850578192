/*
 * ngx_http_objmapper_module with Debian's nginx and the real objmapperd
 * (make check-nginx): nginx on a temporary prefix and Unix socket loads
 * the module from the build tree; a test process is the HTTP client.
 * Bytes byte for byte at every size, HEAD, Range, 304, misses, objects
 * replaced while they are sent, 1,000 concurrent requests and slow ones,
 * objmapperd reloaded, restarted and down, nginx reloaded, and no
 * descriptor left in nginx's workers.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_test.h"

static om_daemon_t D;
static char NDIR[64], NSOCK[100], NCONF[100], NLOG[100];
static pid_t NPID;
static unsigned NWORKERS = 2;

/* ---- nginx ---------------------------------------------------------------- */

static void
nginx_conf(void)
{
	FILE *f = fopen(NCONF, "w");
	const char *mod = getenv("NGINX_MODULE");

	assert_non_null(f);
	assert_non_null(mod);
	fprintf(f,
	    "load_module %s;\n"
	    "daemon off;\nmaster_process on;\nworker_processes %u;\nuser root root;\n"
	    "worker_rlimit_nofile 8192;\n"
	    "error_log %s info;\npid %s/nginx.pid;\n"
	    "events { worker_connections 4096; }\n"
	    "http {\n"
	    "  access_log off;\n  sendfile on;\n  keepalive_requests 100000;\n"
	    "  client_body_temp_path %s/tmp;\n  proxy_temp_path %s/tmp;\n  fastcgi_temp_path %s/tmp;\n"
	    "  uwsgi_temp_path %s/tmp;\n  scgi_temp_path %s/tmp;\n"
	    "  server {\n"
	    "    listen unix:%s;\n"
	    "    location / { objmapper_pass unix:%s; objmapper_timeout 5s; }\n"
	    "    location /m/ { objmapper_pass unix:%s; objmapper_miss @origin; }\n"
	    "    location /k/ { objmapper_pass unix:%s; objmapper_key /keyed$arg_v; }\n"
	    "    location /t/ { objmapper_pass unix:%s; objmapper_timeout 1s; }\n"
	    "    location /if/ { objmapper_pass unix:%s; if ($arg_x) { add_header X-If $arg_x; } }\n"
	    "    location /ifp/ { if ($arg_p) { objmapper_pass unix:%s; } }\n"
	    "    location @origin { return 200 \"origin $uri\\n\"; }\n"
	    "  }\n"
	    "}\n",
	    mod, NWORKERS, NLOG, NDIR, NDIR, NDIR, NDIR, NDIR, NDIR, NSOCK, D.sock, D.sock, D.sock, D.sock,
	    D.sock, D.sock);
	fclose(f);
}

static int
nginx_answers(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", NSOCK);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

static void
nginx_start(void)
{
	char tmp[100];

	om_test_mkdtemp(NDIR, sizeof(NDIR), NULL);
	snprintf(NSOCK, sizeof(NSOCK), "%s/nginx.sock", NDIR);
	snprintf(NCONF, sizeof(NCONF), "%s/nginx.conf", NDIR);
	snprintf(NLOG, sizeof(NLOG), "%s/error.log", NDIR);
	snprintf(tmp, sizeof(tmp), "%s/tmp", NDIR);
	assert_int_equal(mkdir(tmp, 0700), 0);
	nginx_conf();
	NPID = fork();
	assert_true(NPID >= 0);
	if (NPID == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execlp("nginx", "nginx", "-p", NDIR, "-c", NCONF, "-e", NLOG, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && !nginx_answers(); i++)
		usleep(10000);
	assert_true(nginx_answers());
}

static void
nginx_stop(void)
{
	kill(NPID, SIGQUIT);
	om_test_wait(NPID);
	om_test_rmtree(NDIR);
}

static char *
nginx_log(void)
{
	static char buf[1 << 16];
	int fd = open(NLOG, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? pread(fd, buf, sizeof(buf) - 1, 0) : 0;

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

/* nginx's workers now. */
static int
nginx_workers(pid_t *pids, int n)
{
	om_daemon_t m = { .pid = NPID };

	return om_daemon_children(&m, pids, n, "worker process");
}

/* ---- an HTTP client ------------------------------------------------------- */

typedef struct {
	int status;
	char head[4096];
	unsigned char *body;
	size_t len;
} resp_t;

static int
nginx_connect(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", NSOCK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

/* Parses a whole response (read to the end of the connection). */
static void
parse(resp_t *r, unsigned char *buf, size_t n)
{
	unsigned char *end = memmem(buf, n, "\r\n\r\n", 4);

	assert_non_null(end);
	assert_true((size_t)(end - buf) < sizeof(r->head));
	memcpy(r->head, buf, (size_t)(end - buf) + 2);
	r->head[end - buf + 2] = '\0';
	assert_int_equal(sscanf(r->head, "HTTP/1.1 %d", &r->status), 1);
	r->len = n - (size_t)(end + 4 - buf);
	r->body = malloc(r->len + 1);
	memcpy(r->body, end + 4, r->len);
}

/* method PATH with extra header lines; Connection: close. */
static void
request(const char *method, const char *path, const char *extra, resp_t *r)
{
	char req[1024];
	size_t cap = 1 << 20, n = 0;
	unsigned char *buf = malloc(cap);
	int fd = nginx_connect(), len;

	len = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n",
	    method, path, extra ? extra : "");
	assert_int_equal(write(fd, req, (size_t)len), len);
	for (;;) {
		ssize_t k;

		if (n == cap) {
			unsigned char *b = realloc(buf, cap * 2);

			assert_non_null(b);
			buf = b;
			cap *= 2;
		}
		k = read(fd, buf + n, cap - n);
		assert_true(k >= 0);
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	memset(r, 0, sizeof(*r));
	parse(r, buf, n);
	free(buf);
}

static const char *
header(const resp_t *r, const char *name)
{
	static char v[512];
	char key[80];
	const char *p;

	snprintf(key, sizeof(key), "\r\n%s: ", name);
	p = strcasestr(r->head, key);
	if (p == NULL)
		return NULL;
	p += strlen(key);
	snprintf(v, sizeof(v), "%.*s", (int)strcspn(p, "\r"), p);
	return v;
}

static void
put(const char *uri, const void *bytes, size_t n, const char *meta, om_info_t *info)
{
	om_client_t *c;
	om_put_opts_t po = { .meta = meta, .meta_len = meta ? (uint32_t)strlen(meta) : 0 };

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, uri, bytes, n, &po, info), 0);
	om_client_close(c);
}

/* Descriptors of nginx's workers that are object files of the daemon. */
typedef struct {
	const char *dir, *mem;
	unsigned n;
} fds_t;

static void
count_object(void *arg, const char *target)
{
	fds_t *f = arg;

	if (strncmp(target, f->dir, strlen(f->dir)) == 0 || strncmp(target, f->mem, strlen(f->mem)) == 0)
		if (strstr(target, ".sock") == NULL && strstr(target, ".log") == NULL)
			f->n++;
}

static unsigned
worker_object_fds(void)
{
	pid_t w[16];
	int n = nginx_workers(w, 16);
	fds_t f = { D.dir, D.mem, 0 };

	for (int i = 0; i < n; i++)
		om_test_fd_targets(w[i], count_object, &f);
	return f.n;
}

static int
setup(void **state)
{
	struct rlimit rl = { 8192, 8192 };

	(void)state;
	(void)setrlimit(RLIMIT_NOFILE, &rl);
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	nginx_start();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	nginx_stop();
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	return 0;
}

/* ---- the tests -------------------------------------------------------------- */

/* 0 B, 1 B, 4 KiB (inline), 1 MiB and 64 MiB (descriptors): byte for
 * byte, with the object's headers. */
static void
test_sizes(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 1u << 20, 64u << 20 };
	unsigned char *obj = malloc(64u << 20);

	(void)state;
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		char uri[64], etag[64];
		om_info_t info;
		resp_t r;

		snprintf(uri, sizeof(uri), "/size/%zu", sizes[i]);
		om_test_fill(obj, sizes[i], 100 + i);
		put(uri, obj, sizes[i], "Content-Type: text/x-test\r\nX-Stored: yes", &info);
		request("GET", uri, NULL, &r);
		assert_int_equal(r.status, 200);
		assert_int_equal(r.len, sizes[i]);
		assert_memory_equal(r.body, obj, sizes[i]);
		assert_string_equal(header(&r, "Content-Type"), "text/x-test");
		assert_string_equal(header(&r, "X-Stored"), "yes");
		snprintf(etag, sizeof(etag), "\"%llx-%08x\"", (unsigned long long)info.id, info.crc);
		assert_string_equal(header(&r, "ETag"), etag);
		assert_non_null(header(&r, "Last-Modified"));
		free(r.body);
	}
	free(obj);
	assert_int_equal(worker_object_fds(), 0);
}

/* HEAD, Range (206, 416) and the conditional requests (304), by nginx's
 * own filters, on an object that comes as a descriptor. */
static void
test_head_range_conditional(void **state)
{
	const size_t len = 300000;
	unsigned char *obj = malloc(len);
	char etag[64], lm[64], cond[128];
	resp_t r;

	(void)state;
	om_test_fill(obj, len, 7);
	put("/hrc", obj, len, NULL, NULL);
	request("HEAD", "/hrc", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 0);
	assert_string_equal(header(&r, "Content-Length"), "300000");
	assert_string_equal(header(&r, "Content-Type"), "application/octet-stream");
	snprintf(etag, sizeof(etag), "%s", header(&r, "ETag"));
	snprintf(lm, sizeof(lm), "%s", header(&r, "Last-Modified"));
	free(r.body);

	request("GET", "/hrc", "Range: bytes=1000-1999\r\n", &r);
	assert_int_equal(r.status, 206);
	assert_int_equal(r.len, 1000);
	assert_memory_equal(r.body, obj + 1000, 1000);
	assert_string_equal(header(&r, "Content-Range"), "bytes 1000-1999/300000");
	free(r.body);
	request("GET", "/hrc", "Range: bytes=400000-\r\n", &r);
	assert_int_equal(r.status, 416);
	free(r.body);

	snprintf(cond, sizeof(cond), "If-None-Match: %s\r\n", etag);
	request("GET", "/hrc", cond, &r);
	assert_int_equal(r.status, 304);
	assert_int_equal(r.len, 0);
	free(r.body);
	request("GET", "/hrc", "If-None-Match: \"1-00000000\"\r\n", &r);
	assert_int_equal(r.status, 200);
	free(r.body);
	/* nginx's if_modified_since is "exact" by default. */
	snprintf(cond, sizeof(cond), "If-Modified-Since: %s\r\n", lm);
	request("GET", "/hrc", cond, &r);
	assert_int_equal(r.status, 304);
	free(r.body);
	request("GET", "/hrc", "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n", &r);
	assert_int_equal(r.status, 200);
	free(r.body);
	free(obj);
	assert_int_equal(worker_object_fds(), 0);
}

/* A miss: 404, or the objmapper_miss location; objmapper_key. */
static void
test_miss_and_key(void **state)
{
	resp_t r;

	(void)state;
	request("GET", "/nothing/here", NULL, &r);
	assert_int_equal(r.status, 404);
	free(r.body);
	request("GET", "/m/nothing", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, strlen("origin /m/nothing\n"));
	assert_memory_equal(r.body, "origin /m/nothing\n", r.len);
	free(r.body);
	put("/m/there", "here", 4, NULL, NULL);
	request("GET", "/m/there", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "here", 4);
	free(r.body);
	put("/keyed7", "seven", 5, NULL, NULL);
	request("GET", "/k/anything?v=7", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "seven", 5);
	free(r.body);
	request("POST", "/m/there", NULL, &r);
	assert_int_equal(r.status, 405);
	free(r.body);
}

/* An "if" block in an objmapper_pass location keeps the location's
 * handler (nginx's rule), so it serves with the location's connection;
 * objmapper_pass inside an "if" serves when the condition holds. */
static void
test_if_in_location(void **state)
{
	resp_t r;

	(void)state;
	put("/if/obj", "iffy", 4, NULL, NULL);
	put("/ifp/obj", "ifp", 3, NULL, NULL);
	request("GET", "/if/obj?x=1", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.len, 4);
	assert_memory_equal(r.body, "iffy", 4);
	assert_string_equal(header(&r, "X-If"), "1");
	free(r.body);
	request("GET", "/if/obj", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "iffy", 4);
	assert_null(header(&r, "X-If"));
	free(r.body);
	request("HEAD", "/if/obj?x=2", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(header(&r, "Content-Length"), "4");
	free(r.body);
	request("GET", "/if/none?x=1", NULL, &r);
	assert_int_equal(r.status, 404);
	free(r.body);
	request("GET", "/ifp/obj?p=1", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "ifp", 3);
	free(r.body);
	assert_null(strstr(nginx_log(), "exited on signal"));
}

static double
since(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/*
 * objmapperd stalled (its processes stopped: connections are accepted,
 * nothing is answered) while requests keep coming: the first request is
 * answered 502 after objmapper_timeout (1 s) and its one repetition on a
 * new connection, not kept waiting as long as new requests arrive behind
 * it. One nginx worker, so that every request shares its connection.
 */
static void
test_stalled_daemon_timeout(void **state)
{
	pid_t kids[16];
	int nk, first, later[64], nlater = 0;
	const char req[] = "GET /t/stalled HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	struct pollfd pf;
	struct timespec t0;
	unsigned char buf[4096];
	ssize_t k;
	double took;
	resp_t r;

	(void)state;
	nginx_stop();
	NWORKERS = 1;
	nginx_start();
	put("/t/stalled", "stalled", 7, NULL, NULL);
	request("GET", "/t/stalled", NULL, &r);
	assert_int_equal(r.status, 200);
	free(r.body);

	nk = om_daemon_children(&D, kids, 16, NULL);
	assert_true(nk > 0);
	for (int i = 0; i < nk; i++)
		assert_int_equal(kill(kids[i], SIGSTOP), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	first = nginx_connect();
	assert_int_equal(write(first, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	/* A new request every 200 ms until the first is answered (8 s at
	 * most). */
	pf.fd = first;
	pf.events = POLLIN;
	while (poll(&pf, 1, 200) == 0 && nlater < 40) {
		later[nlater] = nginx_connect();
		assert_int_equal(write(later[nlater], req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
		nlater++;
	}
	took = since(&t0);
	k = nlater < 40 ? read(first, buf, sizeof(buf) - 1) : -1;
	buf[k > 0 ? k : 0] = '\0';
	/* objmapperd goes on before anything is asserted, so that a failure
	 * here leaves the next tests a daemon that answers. */
	for (int i = 0; i < nk; i++)
		assert_int_equal(kill(kids[i], SIGCONT), 0);
	close(first);
	for (int i = 0; i < nlater; i++)
		close(later[i]);
	print_message("objmapperd stalled: the first request answered after %.2f s, %d requests behind it\n",
	    took, nlater);
	assert_true(nlater < 40);
	assert_non_null(strstr((char *)buf, "HTTP/1.1 502 "));
	assert_true(took >= 1.9);
	assert_true(took < 3.5);
	assert_non_null(strstr(nginx_log(), "did not answer"));
	assert_non_null(strstr(nginx_log(), "objmapper: \"/t/stalled\" from unix:"));

	request("GET", "/t/stalled", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "stalled", 7);
	free(r.body);
	nginx_stop();
	NWORKERS = 2;
	nginx_start();
}

/* An object replaced, then deleted, while a slow client reads it: the
 * client gets the complete old bytes; the next one the new ones. */
static void
test_replaced_while_sent(void **state)
{
	const size_t len = 64u << 20;
	unsigned char *old = malloc(len), *neu = malloc(len), *buf = malloc(len + 65536);
	const char req[] = "GET /rep HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	size_t n = 0;
	int fd, small = 4096;
	unsigned char *body;
	resp_t r;
	om_client_t *c;

	(void)state;
	om_test_fill(old, len, 1);
	om_test_fill(neu, len, 2);
	put("/rep", old, len, NULL, NULL);
	fd = nginx_connect();
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	assert_int_equal(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
	/* A slow start: some bytes, then the object changes under it. */
	while (n < 100000) {
		ssize_t k = read(fd, buf + n, 4096);

		assert_true(k > 0);
		n += (size_t)k;
	}
	/* The worker holds the object's descriptor while it sends (which
	 * also shows that worker_object_fds sees them). */
	assert_true(worker_object_fds() >= 1);
	put("/rep", neu, len, NULL, NULL);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_delete(c, "/rep"), 0);
	om_client_close(c);
	for (;;) {
		ssize_t k = read(fd, buf + n, len + 65536 - n);

		assert_true(k >= 0);
		if (k == 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	body = memmem(buf, n, "\r\n\r\n", 4);
	assert_non_null(body);
	body += 4;
	assert_int_equal(n - (size_t)(body - buf), len);
	assert_memory_equal(body, old, len);
	request("GET", "/rep", NULL, &r);
	assert_int_equal(r.status, 404);
	free(r.body);
	free(old);
	free(neu);
	free(buf);
	assert_int_equal(worker_object_fds(), 0);
}

/*
 * Clients in parallel on non-blocking sockets: each sends one GET of key
 * (i % nkeys) and reads to the end. Returns how many got a 200 with the
 * right bytes; `slow` of them read 16 KiB at a time with pauses.
 */
#define NKEYS 50
static size_t
key_size(unsigned k)
{
	return k % 3 == 0 ? 300000 : k % 3 == 1 ? 4096 : 60000;
}

static unsigned
parallel_gets(unsigned nconn, unsigned slow, unsigned *bad_status, char *why, size_t whylen)
{
	typedef struct {
		int fd;
		unsigned key;
		unsigned char *buf;
		size_t n, cap;
		int done;
	} cl_t;
	cl_t *cl = calloc(nconn, sizeof(*cl));
	struct pollfd *pf = calloc(nconn, sizeof(*pf));
	unsigned char *want = malloc(300000);
	unsigned left = nconn, good = 0;

	*bad_status = 0;
	for (unsigned i = 0; i < nconn; i++) {
		char req[128];
		int len;

		cl[i].key = i % NKEYS;
		cl[i].fd = nginx_connect();
		cl[i].cap = key_size(cl[i].key) + 4096;
		cl[i].buf = malloc(cl[i].cap);
		len = snprintf(req, sizeof(req), "GET /par/%u HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		    cl[i].key);
		assert_int_equal(write(cl[i].fd, req, (size_t)len), len);
		(void)fcntl(cl[i].fd, F_SETFL, O_NONBLOCK);
	}
	while (left > 0) {
		unsigned np = 0;

		for (unsigned i = 0; i < nconn; i++) {
			if (cl[i].done)
				continue;
			pf[np].fd = cl[i].fd;
			pf[np].events = POLLIN;
			np++;
		}
		assert_true(poll(pf, np, 30000) > 0);
		for (unsigned i = 0; i < nconn; i++) {
			ssize_t k;
			size_t room;

			if (cl[i].done)
				continue;
			room = cl[i].cap - cl[i].n;
			if (i < slow && room > 16384)
				room = 16384;
			k = read(cl[i].fd, cl[i].buf + cl[i].n, room);
			if (k < 0 && errno == EAGAIN)
				continue;
			if (k > 0 && cl[i].n + (size_t)k < cl[i].cap) {
				cl[i].n += (size_t)k;
				continue;
			}
			cl[i].done = 1;
			left--;
			close(cl[i].fd);
			{
				unsigned char *b = memmem(cl[i].buf, cl[i].n, "\r\n\r\n", 4);
				size_t sz = key_size(cl[i].key);
				int st = 0;

				(void)sscanf((char *)cl[i].buf, "HTTP/1.1 %d", &st);
				if (st != 200) {
					(*bad_status)++;
					if (why[0] == '\0')
						snprintf(why, whylen, "/par/%u: status %d", cl[i].key, st);
				} else if (b != NULL && cl[i].n - (size_t)(b + 4 - cl[i].buf) == sz) {
					om_test_fill(want, sz, 5000 + cl[i].key);
					good += memcmp(b + 4, want, sz) == 0;
				}
			}
			free(cl[i].buf);
		}
		if (slow > 0)
			usleep(1000);
	}
	free(cl);
	free(pf);
	free(want);
	return good;
}

static void
put_parallel_keys(void)
{
	unsigned char *obj = malloc(300000);

	for (unsigned k = 0; k < NKEYS; k++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/par/%u", k);
		om_test_fill(obj, key_size(k), 5000 + k);
		put(uri, obj, key_size(k), NULL, NULL);
	}
	free(obj);
}

/* 1,000 concurrent requests, 20 of them slow readers: every one whole. */
static void
test_concurrent_and_slow(void **state)
{
	unsigned bad = 0, good;
	char why[256] = "";

	(void)state;
	put_parallel_keys();
	good = parallel_gets(1000, 20, &bad, why, sizeof(why));
	print_message("1000 concurrent requests (20 slow): %u whole, %u bad statuses %s\n", good, bad, why);
	assert_int_equal(bad, 0);
	assert_int_equal(good, 1000);
	assert_int_equal(worker_object_fds(), 0);
}

/* Load from forked clients through nginx; counts failures by kind. */
typedef struct {
	volatile unsigned stop;
	unsigned ok, failed, wrong;
	char why[256];
} load_sh_t;

static void
load_client(load_sh_t *sh, unsigned id)
{
	unsigned char *want = malloc(300000);
	uint64_t rnd = id + 1;

	while (!__atomic_load_n(&sh->stop, __ATOMIC_RELAXED)) {
		unsigned k = (unsigned)(om_test_rand(&rnd) % NKEYS);
		char uri[32];
		resp_t r;

		snprintf(uri, sizeof(uri), "/par/%u", k);
		request("GET", uri, NULL, &r);
		if (r.status != 200) {
			__atomic_add_fetch(&sh->failed, 1, __ATOMIC_RELAXED);
			if (sh->why[0] == '\0')
				snprintf(sh->why, sizeof(sh->why), "%s: %d", uri, r.status);
		} else {
			om_test_fill(want, key_size(k), 5000 + k);
			if (r.len != key_size(k) || memcmp(r.body, want, r.len) != 0)
				__atomic_add_fetch(&sh->wrong, 1, __ATOMIC_RELAXED);
			else
				__atomic_add_fetch(&sh->ok, 1, __ATOMIC_RELAXED);
		}
		free(r.body);
	}
	_exit(0);
}

static load_sh_t *
load_start(pid_t *kids, unsigned n)
{
	load_sh_t *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	memset(sh, 0, sizeof(*sh));
	for (unsigned i = 0; i < n; i++) {
		kids[i] = fork();
		assert_true(kids[i] >= 0);
		if (kids[i] == 0)
			load_client(sh, i);
	}
	return sh;
}

static void
load_stop(load_sh_t *sh, pid_t *kids, unsigned n)
{
	__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
	for (unsigned i = 0; i < n; i++)
		om_test_wait(kids[i]);
}

static void
wait_ok(load_sh_t *sh, unsigned more)
{
	unsigned at = __atomic_load_n(&sh->ok, __ATOMIC_RELAXED);

	for (int t = 0; t < 1000 && __atomic_load_n(&sh->ok, __ATOMIC_RELAXED) < at + more; t++)
		usleep(10000);
}

/* objmapperd reloaded (GOAWAY) ten times under load, and nginx reloaded
 * twice: no request fails. */
static void
test_reloads_under_load(void **state)
{
	pid_t kids[4];
	load_sh_t *sh;

	(void)state;
	put_parallel_keys();
	sh = load_start(kids, 4);
	wait_ok(sh, 100);
	for (int i = 0; i < 10; i++) {
		om_daemon_kill(&D, SIGHUP);
		wait_ok(sh, 100);
	}
	for (int i = 0; i < 2; i++) {
		kill(NPID, SIGHUP);
		wait_ok(sh, 200);
	}
	load_stop(sh, kids, 4);
	print_message("10 objmapperd reloads, 2 nginx reloads: %u whole, %u failed, %u wrong %s\n",
	    sh->ok, sh->failed, sh->wrong, sh->why);
	assert_int_equal(sh->failed, 0);
	assert_int_equal(sh->wrong, 0);
	assert_true(sh->ok > 1000);
	assert_int_equal(worker_object_fds(), 0);
	munmap(sh, sizeof(*sh));
}

/* objmapperd stopped and started again under load: while it is down the
 * answer is 502 (the miss location for /m/), with a line in the error
 * log; afterwards the module has reconnected by itself and no request
 * fails; never a wrong byte. */
static void
test_daemon_down_and_restarted(void **state)
{
	pid_t kids[4];
	load_sh_t *sh;
	unsigned failed_before;
	resp_t r;

	(void)state;
	put_parallel_keys();
	sh = load_start(kids, 4);
	wait_ok(sh, 100);
	om_daemon_stop(&D);
	request("GET", "/par/1", NULL, &r);
	assert_int_equal(r.status, 502);
	free(r.body);
	request("GET", "/m/par", NULL, &r);
	assert_int_equal(r.status, 200);
	assert_memory_equal(r.body, "origin /m/par\n", 14);
	free(r.body);
	assert_non_null(strstr(nginx_log(), "objmapper: \"/par/1\" from unix:"));
	assert_non_null(strstr(nginx_log(), "connect() to"));
	om_daemon_start(&D);
	wait_ok(sh, 50);
	/* From here on the daemon is up: nothing may fail. */
	failed_before = __atomic_load_n(&sh->failed, __ATOMIC_RELAXED);
	wait_ok(sh, 300);
	load_stop(sh, kids, 4);
	print_message("objmapperd down then restarted under load: %u whole, %u failed (while down), %u wrong\n",
	    sh->ok, sh->failed, sh->wrong);
	assert_int_equal(sh->failed, failed_before);
	assert_int_equal(sh->wrong, 0);
	munmap(sh, sizeof(*sh));
	assert_int_equal(worker_object_fds(), 0);
}

/* nginx -t of a server whose location has the directive line: its exit
 * status, and what it said in out. */
static int
nginx_check(const char *line, char *out, size_t cap)
{
	char dir[64], conf[128], cmd[512];
	const char *mod = getenv("NGINX_MODULE");
	size_t got;
	FILE *f, *p;
	int status;

	assert_non_null(mod);
	om_test_mkdtemp(dir, sizeof(dir), NULL);
	snprintf(conf, sizeof(conf), "%s/nginx.conf", dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "load_module %s;\nerror_log %s/error.log;\npid %s/nginx.pid;\nevents { }\n"
	    "http {\n  access_log off;\n  client_body_temp_path %s;\n  proxy_temp_path %s;\n"
	    "  fastcgi_temp_path %s;\n  uwsgi_temp_path %s;\n  scgi_temp_path %s;\n"
	    "  server {\n    listen unix:%s/n.sock;\n"
	    "    location / { objmapper_pass unix:%s/om.sock; %s }\n"
	    "    location @origin { return 204; }\n  }\n}\n",
	    mod, dir, dir, dir, dir, dir, dir, dir, dir, dir, line);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "nginx -t -p %s -c %s -e %s/error.log 2>&1", dir, conf, dir);
	p = popen(cmd, "r");
	assert_non_null(p);
	got = fread(out, 1, cap - 1, p);
	out[got] = '\0';
	status = pclose(p);
	om_test_rmtree(dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Values a directive cannot work with are refused when the configuration
 * is read, not met at the first request: a timeout of 0 gave up every
 * connection at once (each request a 502), a miss that is neither a named
 * location nor a URI redirected to a relative one. */
static void
test_directive_values(void **state)
{
	char out[2048];

	(void)state;
	assert_int_not_equal(nginx_check("objmapper_timeout 0;", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"objmapper_timeout\" directive must be more than 0"));
	assert_int_not_equal(nginx_check("objmapper_miss foo;", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"objmapper_miss\" directive must be a named location (@name) or a URI"));
	assert_int_not_equal(nginx_check("objmapper_miss @;", out, sizeof(out)), 0);
	if (nginx_check("objmapper_timeout 1ms; objmapper_miss @origin;", out, sizeof(out)) != 0)
		fail_msg("nginx -t refused good values: %s", out);
	if (nginx_check("objmapper_miss /fallback;", out, sizeof(out)) != 0)
		fail_msg("nginx -t refused a URI for objmapper_miss: %s", out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_directive_values),
		cmocka_unit_test(test_sizes),
		cmocka_unit_test(test_head_range_conditional),
		cmocka_unit_test(test_miss_and_key),
		cmocka_unit_test(test_if_in_location),
		cmocka_unit_test(test_stalled_daemon_timeout),
		cmocka_unit_test(test_replaced_while_sent),
		cmocka_unit_test(test_concurrent_and_slow),
		cmocka_unit_test(test_reloads_under_load),
		cmocka_unit_test(test_daemon_down_and_restarted),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
