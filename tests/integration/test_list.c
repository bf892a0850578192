/*
 * LIST and PURGE against the real daemon: the exact set of objects under a
 * prefix with their fields (libobjmapper, the objmapper command, raw
 * frames byte by byte, over Unix, TCP and UDP), the refusals (bad prefix,
 * flags, cursors, a reader's PURGE), and 100,000 objects listed and
 * purged while writers replace, create and delete objects: every object
 * that exists throughout a listing is listed exactly once, and a purge
 * removes what was under its prefix and nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"
#include "store/om_store.h"

static om_daemon_t D;
static int tcp_port, udp_port;
static char tcp_addr[64], udp_addr[64];

static int64_t
now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* ---- a listing collected ----------------------------------------------------- */

typedef struct {
	char uri[64];
	om_info_t info;
	int copy;
} got_t;

typedef struct {
	got_t e[256];
	unsigned n;
} coll_t;

static int
collect(void *arg, const om_entry_t *e)
{
	coll_t *c = arg;

	assert_true(c->n < 256);
	assert_int_equal(strlen(e->uri), e->uri_len);
	assert_true(e->uri_len < sizeof(c->e[0].uri));
	memcpy(c->e[c->n].uri, e->uri, e->uri_len + 1);
	c->e[c->n].info = e->info;
	c->e[c->n].copy = e->copy;
	c->n++;
	return 0;
}

static int
by_uri(const void *a, const void *b)
{
	return strcmp(((const got_t *)a)->uri, ((const got_t *)b)->uri);
}

/* The listing's URIs sorted and joined by spaces. */
static const char *
uris(coll_t *c)
{
	static char out[8192];
	size_t k = 0;

	qsort(c->e, c->n, sizeof(c->e[0]), by_uri);
	out[0] = '\0';
	for (unsigned i = 0; i < c->n; i++)
		k += (size_t)snprintf(out + k, sizeof(out) - k, "%s%s", i ? " " : "", c->e[i].uri);
	return out;
}

static const char *
list_uris(om_client_t *c, const char *prefix)
{
	static coll_t coll;

	memset(&coll, 0, sizeof(coll));
	if (om_client_list(c, prefix, collect, &coll) != 0)
		fail_msg("list %s: %s", prefix ? prefix : "(all)", om_client_message(c));
	return uris(&coll);
}

static void
put(om_client_t *c, const char *uri, const char *bytes, unsigned flags, int64_t expires)
{
	om_put_opts_t o = { .flags = flags, .expires = expires };

	if (om_client_put(c, uri, bytes, strlen(bytes), &o, NULL) != 0)
		fail_msg("put %s: %s", uri, om_client_message(c));
}

/* Runs the objmapper command with up to 3 arguments; its standard output
 * in out; returns the exit status. */
static int
cli(char *out, size_t cap, const char *a, const char *b, const char *c)
{
	char cmd[1024];
	size_t n;
	FILE *p;
	int st;

	snprintf(cmd, sizeof(cmd), "%s -s %s %s %s %s 2>/dev/null", om_test_program("objmapper"), D.sock,
	    a, b ? b : "", c ? c : "");
	p = popen(cmd, "r");
	assert_non_null(p);
	n = fread(out, 1, cap - 1, p);
	out[n] = '\0';
	st = pclose(p);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static unsigned long long
stat_value(const char *series)
{
	int fd = om_raw_connect_unix(D.sock);
	unsigned long long v = om_raw_stat_value(fd, series);

	close(fd);
	return v;
}

/* ---- a small store ----------------------------------------------------------- */

static int
setup_small(void **state)
{
	char extra[1024];

	tcp_port = om_test_free_port();
	udp_port = om_test_free_port();
	snprintf(tcp_addr, sizeof(tcp_addr), "tcp://127.0.0.1:%d", tcp_port);
	snprintf(udp_addr, sizeof(udp_addr), "udp://127.0.0.1:%d", udp_port);
	/* TCP: readers only (nobody is on 10.9.9.9). */
	snprintf(extra, sizeof(extra),
	    "[listen.tcp]\ntype = tcp\naddress = 127.0.0.1\nport = %d\nallow_read = 127.0.0.1\n"
	    "allow_write = 10.9.9.9\n"
	    "[listen.udp]\ntype = udp\naddress = 127.0.0.1\nport = %d\n",
	    tcp_port, udp_port);
	om_daemon_up(&D, 2, extra);
	*state = &D;
	return 0;
}

static void
fill_small(om_client_t *c)
{
	put(c, "/img/a.png", "aaaa", 0, 0);
	put(c, "/img/b.png", "bb", 0, 0);
	put(c, "/img/sub/c.png", "c", 0, 0);
	put(c, "/imgx", "x", 0, 0);
	put(c, "/css/site.css", "body{}", 0, 0);
	put(c, "/tmp/e", "ephemeral", OM_PUT_EPHEMERAL, 4000000000);
	/* Expired: absent from a listing, as from a GET. */
	put(c, "/img/old.png", "old", 0, 1000);
}

static void
test_list_small(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0), *t, *u;
	static coll_t coll;
	uint64_t cursor = 0;
	unsigned pages = 0;
	char out[4096];

	(void)state;
	fill_small(c);
	assert_string_equal(list_uris(c, NULL),
	    "/css/site.css /img/a.png /img/b.png /img/sub/c.png /imgx /tmp/e");
	assert_string_equal(list_uris(c, ""),
	    "/css/site.css /img/a.png /img/b.png /img/sub/c.png /imgx /tmp/e");
	assert_string_equal(list_uris(c, "/img"), "/img/a.png /img/b.png /img/sub/c.png /imgx");
	assert_string_equal(list_uris(c, "/img/"), "/img/a.png /img/b.png /img/sub/c.png");
	assert_string_equal(list_uris(c, "/img/sub/c.png"), "/img/sub/c.png");
	assert_string_equal(list_uris(c, "/img/sub/c.pngx"), "");
	assert_string_equal(list_uris(c, "/nothing"), "");
	/* A prefix may end inside a segment, also in "..". */
	assert_string_equal(list_uris(c, "/img/sub/."), "");

	/* The fields: as STAT gives them, the tier of the primary. */
	memset(&coll, 0, sizeof(coll));
	assert_int_equal(om_client_list(c, "/", collect, &coll), 0);
	assert_int_equal(coll.n, 6);
	(void)uris(&coll);
	for (unsigned i = 0; i < coll.n; i++) {
		om_info_t st;

		assert_int_equal(om_client_stat(c, coll.e[i].uri, 0, &st, NULL, NULL), 0);
		assert_int_equal(coll.e[i].info.id, st.id);
		assert_int_equal(coll.e[i].info.size, st.size);
		assert_int_equal(coll.e[i].info.crc, st.crc);
		assert_int_equal(coll.e[i].info.expires, st.expires);
		assert_int_equal(coll.e[i].info.mtime, 0);
		assert_int_equal(coll.e[i].copy, 0);
		assert_int_equal(coll.e[i].info.tier, strcmp(coll.e[i].uri, "/tmp/e") == 0 ?
		    OM_TIER_MEMORY : OM_TIER_PERSISTENT);
	}
	assert_int_equal(coll.e[5].info.expires, 4000000000);
	assert_int_equal(coll.e[1].info.size, 4);

	/* Page by page: the last cursor is 0. */
	memset(&coll, 0, sizeof(coll));
	do {
		assert_int_equal(om_client_list_page(c, "/img/", &cursor, collect, &coll), 0);
		pages++;
	} while (cursor != 0);
	assert_true(pages >= 1);
	assert_string_equal(uris(&coll), "/img/a.png /img/b.png /img/sub/c.png");

	/* The same over TCP (a reader there) and UDP. */
	t = om_test_connect(tcp_addr, 0);
	u = om_test_connect(udp_addr, 0);
	assert_string_equal(list_uris(t, "/img"), "/img/a.png /img/b.png /img/sub/c.png /imgx");
	assert_string_equal(list_uris(u, "/img"), "/img/a.png /img/b.png /img/sub/c.png /imgx");
	om_client_close(t);
	om_client_close(u);

	/* The command: URIs one per line; -l with size, expiry and tier. */
	assert_int_equal(cli(out, sizeof(out), "ls", "/img/", NULL), 0);
	{
		coll_t *l = calloc(1, sizeof(*l));

		assert_non_null(l);
		for (char *p = strtok(out, "\n"); p != NULL; p = strtok(NULL, "\n")) {
			assert_true(l->n < 8 && strlen(p) < sizeof(l->e[0].uri));
			strcpy(l->e[l->n++].uri, p);
		}
		assert_string_equal(uris(l), "/img/a.png /img/b.png /img/sub/c.png");
		free(l);
	}
	assert_int_equal(cli(out, sizeof(out), "ls", "-l", "/tmp"), 0);
	assert_string_equal(out, "           9  2096-10-02T07:06:40Z  memory           /tmp/e\n");
	assert_int_equal(cli(out, sizeof(out), "ls", "-l", "/css"), 0);
	assert_string_equal(out, "           6  never                 persistent       /css/site.css\n");
	assert_int_equal(cli(out, sizeof(out), "ls", "/none", NULL), 0);
	assert_string_equal(out, "");
	assert_int_equal(cli(out, sizeof(out), "ls", "/a", "/b"), 2);
	assert_int_equal(cli(out, sizeof(out), "ls", "-x", NULL), 2);
	om_client_close(c);
}

static int
stop_at_second(void *arg, const om_entry_t *e)
{
	unsigned *n = arg;

	(void)e;
	return ++*n == 2 ? 42 : 0;
}

static void
test_list_stops(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	unsigned n = 0;

	(void)state;
	fill_small(c);
	assert_int_equal(om_client_list(c, "/img/", stop_at_second, &n), 42);
	assert_int_equal(n, 2);
	/* The handle goes on. */
	assert_int_equal(om_client_ping(c), 0);
	om_client_close(c);
}

static void
test_purge_small(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0), *t;
	unsigned long long purged0 = stat_value("objects_purged_total");
	unsigned long long ok0 = stat_value("requests_total{op=\"purge\",status=\"ok\"}");
	unsigned long long den0 = stat_value("requests_total{op=\"purge\",status=\"denied\"}");
	uint64_t n = 99;
	char out[256];

	(void)state;
	fill_small(c);
	/* A reader may not purge: nothing goes. */
	t = om_test_connect(tcp_addr, 0);
	assert_int_equal(om_client_purge(t, "/img", &n), -OM_STATUS_DENIED);
	assert_int_equal(n, 0);
	assert_non_null(strstr(om_client_message(t), "may not write on listener tcp"));
	om_client_close(t);
	assert_string_equal(list_uris(c, "/img"), "/img/a.png /img/b.png /img/sub/c.png /imgx");
	/* An empty prefix is refused before it is sent. */
	assert_int_equal(om_client_purge(c, "", &n), -OM_EINVAL);
	assert_int_equal(om_client_purge(c, NULL, &n), -OM_EINVAL);

	/* Exactly what is under the prefix, the expired one too (not counted). */
	assert_int_equal(om_client_purge(c, "/img/", &n), 0);
	assert_int_equal(n, 3);
	assert_string_equal(list_uris(c, NULL), "/css/site.css /imgx /tmp/e");
	assert_int_equal(om_client_stat(c, "/img/old.png", 0, NULL, NULL, NULL), -OM_STATUS_NOT_FOUND);
	assert_int_equal(om_client_purge(c, "/img/", &n), 0);
	assert_int_equal(n, 0);
	/* The command prints the count. */
	assert_int_equal(cli(out, sizeof(out), "purge", "/tmp/", NULL), 0);
	assert_string_equal(out, "1\n");
	assert_int_equal(cli(out, sizeof(out), "purge", "/tmp/", NULL), 0);
	assert_string_equal(out, "0\n");
	assert_int_equal(cli(out, sizeof(out), "purge", "''", NULL), 2);
	assert_int_equal(cli(out, sizeof(out), "purge", NULL, NULL), 2);
	assert_string_equal(list_uris(c, NULL), "/css/site.css /imgx");
	/* Purged objects are gone on every path, and their files too. */
	{
		om_object_t o;

		assert_int_equal(om_client_get(c, "/img/a.png", OM_MODE_AUTO, 0, &o), -OM_STATUS_NOT_FOUND);
	}
	assert_int_equal(stat_value("objects_purged_total") - purged0, 4);
	assert_int_equal(stat_value("requests_total{op=\"purge\",status=\"denied\"}") - den0, 1);
	assert_true(stat_value("requests_total{op=\"purge\",status=\"ok\"}") - ok0 >= 4);
	assert_int_equal(stat_value("deletes_total"), 0);
	/* Cleanup for the next tests. */
	assert_int_equal(om_client_purge(c, "/", &n), 0);
	assert_int_equal(n, 2);
	om_client_close(c);
}

/* ---- the frames, byte by byte ------------------------------------------------ */

/* A LIST or PURGE frame with a cursor (arg) and flags. */
static size_t
frame(uint8_t *buf, uint8_t op, uint32_t id, uint32_t flags, const char *prefix, uint64_t cursor)
{
	size_t n = om_raw_req(buf, op, id, flags, prefix, 0, 0);

	om_le64(buf + 24, cursor);
	return n;
}

static void
test_frames(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	uint8_t req[1200], body[4096];
	char msg[512];
	om_resp_t r;
	om_info_t info;
	uint64_t cursor;
	int fd, st;
	size_t n;

	(void)state;
	put(c, "/f/one", "12345", 0, 0);
	assert_int_equal(om_client_stat(c, "/f/one", 0, &info, NULL, NULL), 0);
	fd = om_raw_connect_unix(D.sock);
	/* Pages until the object shows: then its entry, byte by byte. */
	cursor = 0;
	for (int i = 0;; i++) {
		assert_true(i < 100000);
		n = frame(req, OM_OP_LIST, 7, 0, "/f/", cursor);
		om_raw_send_all(fd, req, n);
		memset(body, 0, sizeof(body));
		st = om_raw_read_resp_body(fd, &r, msg, sizeof(msg), body, sizeof(body));
		assert_int_equal(st, 0);
		assert_int_equal(r.op, OM_OP_LIST);
		assert_int_equal(r.id, 7);
		assert_int_equal(r.body, OM_BODY_INLINE);
		assert_true(r.body_len >= 16);
		assert_int_equal(om_get32(body + 12), 0);
		cursor = om_get64(body);
		if (om_get32(body + 8) == 1)
			break;
		assert_int_equal(om_get32(body + 8), 0);
		assert_int_equal(r.body_len, 16);
		assert_int_not_equal(cursor, 0);
	}
	assert_int_equal(r.body_len, 16 + 32 + 6);
	assert_int_equal(om_get64(body + 16), 5);            /* size */
	assert_int_equal(om_get64(body + 24), 0);            /* expires */
	assert_int_equal(om_get64(body + 32), info.id);      /* id */
	assert_int_equal(om_get32(body + 40), info.crc);     /* crc */
	assert_int_equal(body[44], OM_TIER_PERSISTENT);      /* tier */
	assert_int_equal(body[45], 0);                       /* flags */
	assert_int_equal(om_get16(body + 46), 6);            /* uri_len */
	assert_memory_equal(body + 48, "/f/one", 6);
	/* The rest of the listing has no more of it. */
	while (cursor != 0) {
		n = frame(req, OM_OP_LIST, 8, 0, "/f/", cursor);
		om_raw_send_all(fd, req, n);
		assert_int_equal(om_raw_read_resp_body(fd, &r, msg, sizeof(msg), body, sizeof(body)), 0);
		assert_int_equal(om_get32(body + 8), 0);
		cursor = om_get64(body);
	}

	/* Refusals, each answered, the connection kept. */
	n = frame(req, OM_OP_LIST, 9, 0x1, "/f/", 0);
	om_raw_send_all(fd, req, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	assert_string_equal(msg, "LIST takes no flags (0x1)");
	n = frame(req, OM_OP_LIST, 10, 0, "/f/", 0x1234567800000001ull);
	om_raw_send_all(fd, req, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	assert_non_null(strstr(msg, "is not from this index"));
	n = frame(req, OM_OP_PURGE, 11, 0, NULL, 0);
	om_raw_send_all(fd, req, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_string_equal(msg, "prefix of 0 bytes (1 to 1024 allowed)");
	n = frame(req, OM_OP_LIST, 12, 0, "/f/ x", 0);
	om_raw_send_all(fd, req, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_URI_INVALID);
	assert_string_equal(msg, "prefix holds a space or control character");
	/* A page is at most 1000 entries: 1100 objects take two, the first
	 * with a cursor that carries this index's tag. Then that tag with a
	 * bucket past the table. */
	for (unsigned i = 0; i < 1100; i++) {
		char u[32];

		snprintf(u, sizeof(u), "/many/%u", i);
		put(c, u, "m", 0, 0);
	}
	{
		static uint8_t big[70000];
		uint64_t tag = 0;

		n = frame(req, OM_OP_LIST, 13, 0, "/many/", 0);
		om_raw_send_all(fd, req, n);
		assert_int_equal(om_raw_read_resp_body(fd, &r, msg, sizeof(msg), big, sizeof(big)), 0);
		assert_true(om_get32(big + 8) > 0 && om_get32(big + 8) <= 1000);
		assert_true(r.body_len <= 16 + 64 * 1024);
		tag = om_get64(big) >> 32;
		assert_int_not_equal(tag, 0);
		n = frame(req, OM_OP_LIST, 14, 0, NULL, tag << 32 | 0xffffffffu);
		om_raw_send_all(fd, req, n);
		assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
		assert_non_null(strstr(msg, "is not one this server gave"));
		/* PROTOCOL.md: the message says to start again from 0. */
		assert_non_null(strstr(msg, "start again from 0"));
	}
	/* PURGE: one step's answer, 16 bytes. */
	cursor = 0;
	{
		uint64_t total = 0;

		do {
			n = frame(req, OM_OP_PURGE, 15, 0, "/f/", cursor);
			om_raw_send_all(fd, req, n);
			assert_int_equal(om_raw_read_resp_body(fd, &r, msg, sizeof(msg), body, sizeof(body)), 0);
			assert_int_equal(r.op, OM_OP_PURGE);
			assert_int_equal(r.body, OM_BODY_INLINE);
			assert_int_equal(r.body_len, 16);
			cursor = om_get64(body);
			total += om_get64(body + 8);
		} while (cursor != 0);
		assert_int_equal(total, 1);
	}
	/* A LIST with a body cannot be trusted: answered, then closed. */
	n = om_raw_req(req, OM_OP_LIST, 16, 0, NULL, 0, 3);
	om_raw_send_all(fd, req, n);
	assert_int_equal(om_raw_read_resp(fd, &r, msg, sizeof(msg)), OM_STATUS_BAD_REQUEST);
	om_raw_assert_closed(fd);
	close(fd);
	assert_string_equal(list_uris(c, "/f/"), "");
	om_client_close(c);
}

/* ---- 100,000 objects and writers --------------------------------------------- */

#define NOBJ    100000
#define NCHURN  1000   /* /w/NNNN: created and deleted by writer 0 */
#define NUNDER  2000   /* writer 1's keys under the purged prefix "/s/1" */
#define PREFIX  "/s/1" /* /s/10000../s/19999, and writer 1's new /s/1w/NNNN */

typedef struct {
	int64_t send_ns, ack_ns; /* of the last PUT */
	uint32_t puts;
} put_rec_t;

typedef struct {
	volatile int stop;
	volatile uint64_t ops[2];
	volatile uint64_t failures;
	char why[256];
	volatile int ping_go, ping_stop;
	volatile uint64_t pings, ping_max_ns; /* the pinger's answers, its slowest */
	uint8_t churn[NCHURN];   /* writer 0: 1 if /w/N exists */
	put_rec_t under[NUNDER]; /* writer 1: /s/1NNNN (N < 1000), then /s/1w/NNNN */
} shared_t;

static shared_t *sh;
static pid_t writers[2];

static void
under_uri(unsigned k, char *uri, size_t n)
{
	if (k < NUNDER / 2)
		snprintf(uri, n, "/s/1%04u", k);
	else
		snprintf(uri, n, "/s/1w/%04u", k - NUNDER / 2);
}

static void
writer_fail(om_client_t *c, const char *what, const char *uri)
{
	if (sh->failures++ == 0)
		snprintf(sh->why, sizeof(sh->why), "%s %s: %s", what, uri, om_client_message(c));
}

/* Writer 0: replaces objects outside the prefix (and outside /s/2,
 * purged with an exact count), creates and deletes /w/ keys. Writer 1: PUTs under the prefix (replacing originals and
 * creating new keys), noting when each PUT was sent and answered. */
static void
writer(int role)
{
	om_client_t *c = NULL;
	uint64_t r = 77 + (uint64_t)role;
	char uri[32];

	if (om_client_connect(D.sock, 0, &c) != 0)
		_exit(1);
	while (!sh->stop) {
		uint64_t x = om_test_rand(&r);

		if (role == 0) {
			unsigned i = (unsigned)(x % NOBJ), k = (unsigned)((x >> 20) % NCHURN);

			if (i >= 10000 && i < 30000)
				i %= 10000; /* outside /s/1 and /s/2 */
			snprintf(uri, sizeof(uri), "/s/%05u", i);
			if (om_client_put(c, uri, "replaced", 8, NULL, NULL) != 0)
				writer_fail(c, "put", uri);
			snprintf(uri, sizeof(uri), "/w/%04u", k);
			if (x & (1u << 31)) {
				if (om_client_put(c, uri, "w", 1, NULL, NULL) != 0)
					writer_fail(c, "put", uri);
				sh->churn[k] = 1;
			} else {
				int rc = om_client_delete(c, uri);

				if (rc != 0 && rc != -OM_STATUS_NOT_FOUND)
					writer_fail(c, "delete", uri);
				sh->churn[k] = 0;
			}
		} else {
			unsigned k = (unsigned)(x % NUNDER);
			int64_t t0;

			under_uri(k, uri, sizeof(uri));
			t0 = now_ns();
			if (om_client_put(c, uri, "under", 5, NULL, NULL) != 0) {
				writer_fail(c, "put", uri);
				continue;
			}
			sh->under[k].send_ns = t0;
			sh->under[k].ack_ns = now_ns();
			sh->under[k].puts++;
		}
		sh->ops[role]++;
	}
	om_client_close(c);
	_exit(0);
}

/* PINGs one after the other, beside a purge, on the daemon's one worker;
 * forked with the writers, before the tests hold anything (valgrind checks
 * the children's leaks too). */
static pid_t pinger;

static pid_t
pinger_start(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		om_client_t *c = NULL;

		while (!sh->ping_go && !sh->stop)
			usleep(1000);
		if (om_client_connect(D.sock, 0, &c) != 0)
			_exit(1);
		while (!sh->ping_stop && !sh->stop) {
			int64_t t0 = now_ns(), t;

			if (om_client_ping(c) != 0)
				_exit(2);
			t = now_ns() - t0;
			if ((uint64_t)t > sh->ping_max_ns)
				sh->ping_max_ns = (uint64_t)t;
			sh->pings++;
		}
		om_client_close(c);
		_exit(0);
	}
	return pid;
}

static void
writers_start(void)
{
	for (int i = 0; i < 2; i++) {
		writers[i] = fork();
		assert_true(writers[i] >= 0);
		if (writers[i] == 0)
			writer(i);
	}
	pinger = pinger_start();
}

static void
writers_stop(void)
{
	sh->stop = 1;
	for (int i = 0; i < 2; i++) {
		if (writers[i] > 0)
			assert_int_equal(om_test_wait(writers[i]), 0);
		writers[i] = 0;
	}
	if (sh->failures != 0)
		fail_msg("%llu writer requests failed; the first: %s", (unsigned long long)sh->failures, sh->why);
}

/* Replaces the first `from` of the daemon's configuration with `to`. */
static void
conf_replace(const char *from, const char *to)
{
	char buf[16384], out[16384 + 512], *at;
	FILE *f = fopen(D.conf, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	at = strstr(buf, from);
	assert_non_null(at);
	assert_true(strlen(to) < 512);
	snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - buf), buf, to, at + strlen(from));
	f = fopen(D.conf, "w");
	assert_non_null(f);
	assert_int_equal(fputs(out, f) >= 0, 1);
	fclose(f);
}

/* The persistent tier on the memory tier's filesystem where it has user
 * extended attributes (tmpfs since Linux 6.6): 100,000 files are made and
 * removed there in a few seconds, on a disk under load in a minute. */
static char shm_disk[300];

static void
place_disk(char *disk, size_t n)
{
	char probe[400];
	int fd;

	om_test_mkdtemp(shm_disk, sizeof(shm_disk), om_test_memdir());
	snprintf(probe, sizeof(probe), "%s/probe", shm_disk);
	fd = open(probe, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	if (fsetxattr(fd, "user.objmapper.probe", "x", 1, 0) == 0) {
		close(fd);
		unlink(probe);
		snprintf(disk, n, "%s/objects", shm_disk);
		{
			char line[480];

			snprintf(line, sizeof(line), "[persistent]\npath = %s\n", disk);
			conf_replace("[persistent]\npath = objects\n", line);
		}
		return;
	}
	close(fd);
	om_test_rmtree(shm_disk);
	shm_disk[0] = '\0';
	snprintf(disk, n, "%s/objects", D.dir);
}

/* The tiers filled through the engine (quicker than 100,000 PUTs over a
 * socket); the daemon's start rebuilds the index from them. */
static int
setup_big(void **state)
{
	om_ix_params_t ip = { .capacity = NOBJ + 1024, .max_uri = 256 };
	om_store_params_t p = { 0 };
	om_put_args_t a = { .size = 8 };
	char disk[400], err[256], k[32];
	om_index_t *ix;
	om_store_t *st;
	int64_t t0;

	/* One worker: the listings, purges, writers and pinger share it. */
	om_daemon_init(&D, 1, NULL);
	conf_replace("capacity = 100000", "capacity = 150000");
	place_disk(disk, sizeof(disk));
	p.mem.path = D.mem;
	p.mem.limit = 256u << 20;
	p.disk.path = disk;
	assert_int_equal(om_index_create(&ip, &ix), 0);
	if (om_store_open(&p, ix, &st, err, sizeof(err)) != 0)
		fail_msg("store: %s", err);
	t0 = now_ns();
	for (uint32_t i = 0; i < NOBJ; i++) {
		int len = snprintf(k, sizeof(k), "/s/%05u", i);

		assert_int_equal(om_store_put(st, k, (size_t)len, "original", &a, NULL), 0);
	}
	om_store_close(st);
	om_index_close(ix);
	print_message("%u objects written in %.1f s (%s)\n", NOBJ, (double)(now_ns() - t0) / 1e9, disk);
	t0 = now_ns();
	om_daemon_start(&D);
	print_message("daemon ready in %.1f s\n", (double)(now_ns() - t0) / 1e9);
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	memset(sh, 0, sizeof(*sh));
	writers_start();
	*state = &D;
	return 0;
}

static int
teardown_big(void **state)
{
	int64_t t0 = now_ns();
	int rc;

	sh->stop = 1;
	for (int i = 0; i < 2; i++)
		if (writers[i] > 0)
			(void)om_test_wait(writers[i]);
	if (pinger > 0)
		(void)om_test_wait(pinger);
	munmap(sh, sizeof(*sh));
	rc = om_daemon_teardown(state);
	if (shm_disk[0] != '\0')
		om_test_rmtree(shm_disk);
	print_message("teardown in %.1f s\n", (double)(now_ns() - t0) / 1e9);
	return rc;
}

/* How often a listing saw each URI. */
typedef struct {
	uint8_t s[NOBJ];       /* /s/NNNNN */
	uint8_t w[NCHURN];     /* /w/NNNN */
	uint8_t u[NUNDER / 2]; /* /s/1w/NNNN */
	unsigned long other;
	unsigned long entries;
	char first_other[64];
} seen_t;

static int
see(void *arg, const om_entry_t *e)
{
	seen_t *s = arg;
	unsigned k;
	char tail;

	s->entries++;
	if (sscanf(e->uri, "/s/1w/%4u%c", &k, &tail) == 1 && e->uri_len == 10 && k < NUNDER / 2)
		s->u[k]++;
	else if (sscanf(e->uri, "/s/%5u%c", &k, &tail) == 1 && e->uri_len == 8 && k < NOBJ)
		s->s[k]++;
	else if (sscanf(e->uri, "/w/%4u%c", &k, &tail) == 1 && e->uri_len == 7 && k < NCHURN)
		s->w[k]++;
	else if (s->other++ == 0)
		snprintf(s->first_other, sizeof(s->first_other), "%s", e->uri);
	return 0;
}

static void
test_list_100k_under_writers(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	static seen_t s;
	uint64_t ops0 = sh->ops[0] + sh->ops[1];
	double t;
	int64_t t0;

	(void)state;
	for (int round = 0; round < 3; round++) {
		memset(&s, 0, sizeof(s));
		t0 = now_ns();
		if (om_client_list(c, round == 2 ? "/s/" : NULL, see, &s) != 0)
			fail_msg("list: %s", om_client_message(c));
		t = (double)(now_ns() - t0) / 1e9;
		if (s.other != 0)
			fail_msg("%lu entries that no writer made, the first %s", s.other, s.first_other);
		/* Every object that exists throughout, exactly once, replaced
		 * or not; the ones that come and go at most once. */
		for (unsigned k = 0; k < NOBJ; k++)
			if (s.s[k] != 1)
				fail_msg("round %d: /s/%05u listed %u times", round, k, s.s[k]);
		for (unsigned k = 0; k < NCHURN; k++) {
			assert_true(s.w[k] <= 1);
			if (round == 2)
				assert_int_equal(s.w[k], 0);
		}
		for (unsigned k = 0; k < NUNDER / 2; k++)
			assert_true(s.u[k] <= 1);
		print_message("listing %s: %lu entries in %.3f s (%.0f/s) with writers running\n",
		    round == 2 ? "/s/" : "everything", s.entries, t, (double)s.entries / t);
	}
	/* The writers did write meanwhile. */
	assert_true(sh->ops[0] + sh->ops[1] > ops0 + 100);
	/* The command lists a prefix of 10,000. */
	{
		char cmd[512];
		FILE *p;
		unsigned long lines = 0;
		int ch;

		snprintf(cmd, sizeof(cmd), "%s -s %s ls /s/2", om_test_program("objmapper"), D.sock);
		p = popen(cmd, "r");
		assert_non_null(p);
		while ((ch = fgetc(p)) != EOF)
			lines += ch == '\n';
		assert_int_equal(pclose(p), 0);
		assert_int_equal(lines, 10000);
	}
	om_client_close(c);
}

static int
present(om_client_t *c, const char *uri)
{
	int rc = om_client_stat(c, uri, 0, NULL, NULL, NULL);

	if (rc != 0 && rc != -OM_STATUS_NOT_FOUND)
		fail_msg("stat %s: %s", uri, om_client_message(c));
	return rc == 0;
}

static void
test_purge_100k_under_writers(void **state)
{
	om_client_t *c = om_test_connect(D.sock, 0);
	unsigned long long purged0 = stat_value("objects_purged_total");
	int64_t start, end;
	uint64_t n = 0, ops0;
	static seen_t s;
	char uri[32];
	unsigned long expect;

	(void)state;
	ops0 = sh->ops[0] + sh->ops[1];
	usleep(200000);
	start = now_ns();
	if (om_client_purge(c, PREFIX, &n) != 0)
		fail_msg("purge: %s", om_client_message(c));
	end = now_ns();
	print_message("purge %s: %llu objects in %.3f s, with writers running\n", PREFIX,
	    (unsigned long long)n, (double)(end - start) / 1e9);
	/* /s/2: 10,000 objects that nobody writes, while the writers go on
	 * beside them: the count is exact. The daemon's one worker answers a
	 * pinger all along: the purge goes in steps, each a request of its
	 * own, never the worker's for long. */
	{
		uint64_t n2 = 0, p0;
		int64_t t0;

		sh->ping_go = 1;
		while (sh->pings < 10)
			usleep(1000);
		sh->ping_max_ns = 0;
		p0 = sh->pings;
		t0 = now_ns();
		if (om_client_purge(c, "/s/2", &n2) != 0)
			fail_msg("purge: %s", om_client_message(c));
		t0 = now_ns() - t0;
		p0 = sh->pings - p0;
		sh->ping_stop = 1;
		assert_int_equal(om_test_wait(pinger), 0);
		pinger = 0;
		print_message("purge /s/2: %llu objects in %.3f s, with writers running; %llu PINGs "
		    "answered meanwhile, the slowest in %.1f ms\n", (unsigned long long)n2,
		    (double)t0 / 1e9, (unsigned long long)p0, (double)sh->ping_max_ns / 1e6);
		assert_int_equal(n2, 10000);
		/* 40 steps or more (256 objects at most each): a PING between
		 * most of them. */
		assert_true(p0 >= 10);
		assert_string_equal(list_uris(c, "/s/2"), "");
		n += n2;
	}
	usleep(200000);
	writers_stop();
	assert_true(sh->ops[0] + sh->ops[1] > ops0 + 100);
	assert_int_equal(stat_value("objects_purged_total") - purged0, n);
	n -= 10000;
	/* The 9,000 originals no writer touched were there throughout. */
	assert_true(n >= 9000 && n <= 10000 + NUNDER + sh->ops[1]);

	/* What is left, against the writers' record; checked by STAT, and
	 * by a listing that must agree. */
	expect = 0;
	for (unsigned i = 0; i < NOBJ; i++) {
		snprintf(uri, sizeof(uri), "/s/%05u", i);
		if (i < 10000 || i >= 30000) {
			if (i % 10 == 0)
				assert_true(present(c, uri));
			expect++;
		} else if (i >= 10000 + NUNDER / 2 && i % 7 == 0) {
			if (present(c, uri))
				fail_msg("%s was under a purged prefix and nobody wrote it again: still there", uri);
		}
	}
	for (unsigned k = 0; k < NCHURN; k++) {
		snprintf(uri, sizeof(uri), "/w/%04u", k);
		assert_int_equal(present(c, uri), sh->churn[k]);
		expect += sh->churn[k];
	}
	for (unsigned k = 0; k < NUNDER; k++) {
		const put_rec_t *r = &sh->under[k];
		int here;

		under_uri(k, uri, sizeof(uri));
		here = present(c, uri);
		expect += (unsigned long)here;
		if (r->puts == 0 || r->ack_ns < start) {
			/* There before the purge began (or never written). */
			if (here)
				fail_msg("%s (last written before the purge) is still there", uri);
		} else if (r->send_ns > end && !here) {
			fail_msg("%s (written after the purge) is gone", uri);
		}
	}
	memset(&s, 0, sizeof(s));
	assert_int_equal(om_client_list(c, NULL, see, &s), 0);
	assert_int_equal(s.other, 0);
	assert_int_equal(s.entries, expect);
	for (unsigned i = 0; i < NOBJ; i++) {
		snprintf(uri, sizeof(uri), "/s/%05u", i);
		if (i < 10000 || i >= 30000)
			assert_int_equal(s.s[i], 1);
		else if (i >= 10000 + NUNDER / 2)
			assert_int_equal(s.s[i], 0);
		else
			assert_int_equal(s.s[i], present(c, uri));
	}
	{
		char err[256];

		if (om_daemon_check_index(&D, err, sizeof(err)) != 0)
			fail_msg("index check: %s", err);
	}
	om_client_close(c);
}

int
main(void)
{
	const struct CMUnitTest small[] = {
		cmocka_unit_test(test_list_small),
		cmocka_unit_test(test_list_stops),
		cmocka_unit_test(test_purge_small),
		cmocka_unit_test(test_frames),
	};
	/* In this order: the purge ends the writers the listing runs beside. */
	const struct CMUnitTest big[] = {
		cmocka_unit_test(test_list_100k_under_writers),
		cmocka_unit_test(test_purge_100k_under_writers),
	};
	int rc = cmocka_run_group_tests_name("small", small, setup_small, om_daemon_teardown);

	return rc + cmocka_run_group_tests_name("big", big, setup_big, teardown_big);
}
