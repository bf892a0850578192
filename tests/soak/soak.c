/*
 * Soak test (make soak; tests/soak/README.md): the real objmapperd with
 * small tiers (so that PUTs evict and hot objects are promoted), a Unix,
 * a TCP, a UDP and an HTTP listener, under a mixed GET/PUT/DELETE/STAT
 * load from client threads on a small key space (keys collide), while
 * the master is sent SIGHUP and random workers (and now and then the
 * cache manager) are killed with SIGKILL. Every answer is checked against
 * a model of what was written; the daemon's resident memory and open
 * descriptors are sampled over time and must stay flat.
 *
 * The model. Each PUT writes a new version (a number unique over the run)
 * whose bytes derive from (key, version): a 24-byte header naming key,
 * version and size, then pseudo-random bytes seeded by both. A logical
 * clock (one atomic counter) orders the starts and ends of operations.
 * A GET (or STAT) that began at T0 and ended at T1 and returned version v
 * of key k is correct when:
 *   - v was PUT on k, that PUT began before T1, and the bytes are exactly
 *     v's (size, every byte, the CRC the server reports, the metadata);
 *   - the id the server reports is the one v's PUT was answered with (if
 *     that PUT was answered exactly once: no retry);
 *   - v was not superseded before T0: no PUT or DELETE of k that began
 *     after v's PUT was answered had itself been answered before T0.
 * Absence (NOT_FOUND, 404) is always allowed: eviction may remove any
 * object at any time. A PUT whose request may have been delivered more
 * than once (the library retried it, or a UDP exchange that took long
 * enough for a second datagram) has no known time of effect: it is never
 * judged stale (but it still supersedes what was answered before it
 * began). Anything else is a mismatch, and one mismatch fails the soak.
 *
 * Environment: SOAK_SECONDS (600), SOAK_THREADS (4), SOAK_RATE (operations
 * per second over all threads, 1500; 0 = no limit), SOAK_KEYS (96),
 * SOAK_HUP_EVERY (20 s), SOAK_KILL_EVERY (7 s), SOAK_SAMPLE_EVERY (5 s),
 * SOAK_WARMUP (a quarter of the run, at most 60 s), SOAK_RSS_MARGIN_PCT
 * (20), SOAK_RSS_MARGIN_KIB (4096), SOAK_FD_MARGIN (16).
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "core/om_core.h"
#include "om_daemon.h"
#include "om_packs.h"
#include "om_test.h"

#define MAX_THREADS 32
#define MAX_KEYS 4096
#define OBJ_MAX (64 * 1024)
#define HDR_LEN 24
#define NONE UINT64_MAX
#define WORKERS 2
/* The master's own margins (it is never restarted). */
#define MASTER_RSS_KIB 1024
#define MASTER_FDS 2

/* ---- configuration ------------------------------------------------------ */

static unsigned cfg_seconds, cfg_threads, cfg_rate, cfg_keys, cfg_hup, cfg_kill, cfg_sample,
    cfg_warmup, cfg_rss_pct, cfg_rss_kib, cfg_fd_margin;

static unsigned
env_u(const char *name, unsigned def)
{
	const char *v = getenv(name);
	char *end;
	unsigned long n;

	if (v == NULL || *v == '\0')
		return def;
	n = strtoul(v, &end, 10);
	if (*end != '\0' || n > 100000000ul) {
		fprintf(stderr, "soak: bad %s=%s (a number)\n", name, v);
		exit(2);
	}
	return (unsigned)n;
}

static void
read_config(void)
{
	cfg_seconds = env_u("SOAK_SECONDS", 600);
	cfg_threads = env_u("SOAK_THREADS", 4);
	cfg_rate = env_u("SOAK_RATE", 1500);
	cfg_keys = env_u("SOAK_KEYS", 96);
	cfg_hup = env_u("SOAK_HUP_EVERY", 20);
	cfg_kill = env_u("SOAK_KILL_EVERY", 7);
	cfg_sample = env_u("SOAK_SAMPLE_EVERY", 5);
	cfg_warmup = env_u("SOAK_WARMUP", cfg_seconds / 4 < 60 ? cfg_seconds / 4 : 60);
	cfg_rss_pct = env_u("SOAK_RSS_MARGIN_PCT", 20);
	cfg_rss_kib = env_u("SOAK_RSS_MARGIN_KIB", 4096);
	cfg_fd_margin = env_u("SOAK_FD_MARGIN", 16);
	if (cfg_threads < 1 || cfg_threads > MAX_THREADS)
		cfg_threads = cfg_threads < 1 ? 1 : MAX_THREADS;
	if (cfg_keys < 8 || cfg_keys > MAX_KEYS)
		cfg_keys = cfg_keys < 8 ? 8 : MAX_KEYS;
	if (cfg_sample < 1)
		cfg_sample = 1;
	if (cfg_warmup >= cfg_seconds)
		cfg_warmup = cfg_seconds / 2;
}

/* ---- the daemon ----------------------------------------------------------- */

static om_daemon_t D;
static int tcp_port, udp_port, http_port;
static char tcp_addr[64], udp_addr[64], tier_p[400], tier_m[400];
static unsigned conf_flip;

/*
 * Small tiers: the persistent one holds about a third of what the keys
 * would need at their average size, so PUTs evict; the memory tier takes
 * ephemeral objects and promoted copies (promote_hits 2 within a 250 ms
 * pass) and alternates between 512 KiB and 768 KiB on each reload. The
 * index holds two thirds of the keys, so that it is full and PUTs of new
 * keys evict from it too; the scrub reads the store again several times a
 * second (it must find nothing damaged: nothing is).
 */
static void
write_conf(void)
{
	FILE *f = fopen(D.conf, "w");

	assert_non_null(f);
	fprintf(f,
	    "[daemon]\nworkers = %d\npid_file = objmapperd.pid\nshutdown_timeout = 5s\n"
	    "[log]\ntarget = stderr\nlevel = info\n"
	    "[index]\ncapacity = %u\n"
	    "[memory]\npath = %s\nsize = %s\n"
	    "[persistent]\npath = objects\nsize = 384K\n"
	    "[cache]\ninterval = 250ms\npromote_hits = 2\npromote_max_size = 64K\nscrub_rate = 4M\nscrub_interval = 0\n"
	    "max_metadata = 256\n"
	    "[listen.local]\ntype = unix\npath = objmapper.sock\ninline_threshold = 16K\n"
	    "[listen.tcp]\ntype = tcp\naddress = 127.0.0.1\nport = %d\ninline_threshold = 16K\n"
	    "[listen.udp]\ntype = udp\naddress = 127.0.0.1\nport = %d\nmax_datagram = 8192\n"
	    "[listen.http]\ntype = http\naddress = 127.0.0.1\nport = %d\n",
	    WORKERS, cfg_keys * 2 / 3, D.mem, conf_flip % 2 ? "768K" : "512K", tcp_port, udp_port, http_port);
	assert_int_equal(fclose(f), 0);
}

/* ---- the model ------------------------------------------------------------ */

typedef struct {
	uint32_t key;
	uint32_t size;
	uint32_t crc;
	uint64_t start; /* logical time the PUT began; 0 until then */
	uint64_t ack;   /* when it was answered, once; NONE if unknown or failed */
	uint64_t id;    /* the id it was answered with; 0 if unknown */
} rec_t;

#define CHUNK_BITS 14
#define CHUNK (1u << CHUNK_BITS)
#define CHUNKS 8192

static rec_t *chunks[CHUNKS];
static pthread_mutex_t chunk_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t next_version = 1;
static uint64_t clock_seq = 1;
static uint64_t key_front[MAX_KEYS]; /* the latest start of an answered PUT/DELETE */

static uint64_t
tick(void)
{
	return __atomic_add_fetch(&clock_seq, 1, __ATOMIC_SEQ_CST);
}

static rec_t *
rec_of(uint64_t v)
{
	rec_t *c;

	if (v == 0 || v >= __atomic_load_n(&next_version, __ATOMIC_ACQUIRE) || (v >> CHUNK_BITS) >= CHUNKS)
		return NULL;
	c = __atomic_load_n(&chunks[v >> CHUNK_BITS], __ATOMIC_ACQUIRE);
	return c ? &c[v & (CHUNK - 1)] : NULL;
}

static uint64_t
new_version(void)
{
	uint64_t v = __atomic_fetch_add(&next_version, 1, __ATOMIC_ACQ_REL);
	size_t ci = (size_t)(v >> CHUNK_BITS);

	assert_true(ci < CHUNKS);
	if (__atomic_load_n(&chunks[ci], __ATOMIC_ACQUIRE) == NULL) {
		pthread_mutex_lock(&chunk_lock);
		if (chunks[ci] == NULL) {
			rec_t *c = calloc(CHUNK, sizeof(rec_t));

			if (c == NULL)
				abort();
			__atomic_store_n(&chunks[ci], c, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&chunk_lock);
	}
	return v;
}

static void
front_advance(unsigned key, uint64_t start)
{
	uint64_t cur = __atomic_load_n(&key_front[key], __ATOMIC_ACQUIRE);

	while (cur < start &&
	    !__atomic_compare_exchange_n(&key_front[key], &cur, start, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		;
}

static uint64_t
mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

/* Small keys (every fourth) stay small enough for UDP. */
static int
key_small(unsigned key)
{
	return key % 4 == 0;
}

static uint32_t
size_of(unsigned key, uint64_t version)
{
	uint64_t h = mix64((uint64_t)key << 40 ^ version);

	if (key_small(key))
		return (uint32_t)(64 + h % 1100);
	{
		uint32_t base = 256u << (h % 8);

		return base + (uint32_t)((h >> 8) % (base / 2));
	}
}

static void
make_bytes(uint8_t *buf, unsigned key, uint64_t version, uint32_t size)
{
	memcpy(buf, "SOAK", 4);
	memcpy(buf + 4, &(uint32_t){ key }, 4);
	memcpy(buf + 8, &version, 8);
	memcpy(buf + 16, &size, 4);
	memset(buf + 20, 0, 4);
	om_test_fill(buf + HDR_LEN, size - HDR_LEN, (uint64_t)key << 40 ^ version);
}

static void
key_uri(char *uri, size_t n, unsigned key)
{
	snprintf(uri, n, "/soak/k%04u", key);
}

/* In a client thread, where cmocka's assertions may not run. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(stderr, "soak: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	exit(1);
}

/* ---- counters ------------------------------------------------------------- */

enum { C_GET, C_PUT, C_DEL, C_STAT, C_ABSENT, C_FAIL, C_RETRY, C_MISMATCH, C_UNSURE, C_FDS, C_N };
static const char *const c_names[C_N] = { "gets", "puts", "deletes", "stats", "absent", "failures",
	"retried", "mismatches", "unsure", "fds" };

typedef struct {
	uint64_t c[C_N];
	uint64_t via[4]; /* ops per transport: unix, tcp, udp, http */
} counts_t;

static counts_t counts[MAX_THREADS];
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned reported;
static char first_failures[8][256];
static unsigned nfirst_failures;

static void
count(unsigned t, int what)
{
	__atomic_add_fetch(&counts[t].c[what], 1, __ATOMIC_RELAXED);
}

static uint64_t
total(int what)
{
	uint64_t n = 0;

	for (unsigned t = 0; t < cfg_threads; t++)
		n += __atomic_load_n(&counts[t].c[what], __ATOMIC_RELAXED);
	return n;
}

static void
mismatch(unsigned t, const char *via, const char *uri, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
mismatch(unsigned t, const char *via, const char *uri, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	count(t, C_MISMATCH);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&report_lock);
	if (reported++ < 20)
		printf("MISMATCH thread %u %s %s: %s\n", t, via, uri, msg);
	fflush(stdout);
	pthread_mutex_unlock(&report_lock);
}

static void
failure(unsigned t, const char *via, const char *what, const char *uri, int rc, const char *msg)
{
	count(t, C_FAIL);
	pthread_mutex_lock(&report_lock);
	if (nfirst_failures < 8)
		snprintf(first_failures[nfirst_failures++], sizeof(first_failures[0]), "%s %s %s: %d %s", via,
		    what, uri, rc, msg);
	pthread_mutex_unlock(&report_lock);
}

/* ---- checking a read ------------------------------------------------------ */

typedef struct {
	const uint8_t *bytes; /* NULL for a STAT */
	uint64_t len;
	uint64_t version;     /* from the bytes, or (STAT) from the metadata */
	int have_id, have_crc;
	uint64_t id;
	uint32_t crc;
	int have_meta_version;
	uint64_t meta_version;
} seen_t;

typedef struct {
	unsigned t;
	const char *via;
	const char *uri;
	unsigned key;
	uint64_t t0, t1, front; /* front: key_front at t0 */
} read_ctx_t;

/* The version a metadata blob names ("soak k=K v=V" from the binary
 * protocol, "Content-Type: application/x-soak; v=V" from HTTP). */
static int
meta_version(const void *meta, size_t len, uint64_t *v)
{
	char s[300];
	const char *p;

	if (meta == NULL || len == 0 || len >= sizeof(s))
		return 0;
	memcpy(s, meta, len);
	s[len] = '\0';
	p = strstr(s, "v=");
	return p != NULL && sscanf(p + 2, "%" SCNu64, v) == 1;
}

static void
check_read(const read_ctx_t *x, seen_t *s)
{
	static __thread uint8_t want[OBJ_MAX];
	const rec_t *r;
	uint64_t v = s->version;

	if (s->bytes != NULL) {
		uint32_t k, size;

		if (s->len < HDR_LEN || memcmp(s->bytes, "SOAK", 4) != 0) {
			mismatch(x->t, x->via, x->uri, "%" PRIu64 " bytes that no PUT wrote (no header)", s->len);
			return;
		}
		memcpy(&k, s->bytes + 4, 4);
		memcpy(&v, s->bytes + 8, 8);
		memcpy(&size, s->bytes + 16, 4);
		if (k != x->key) {
			mismatch(x->t, x->via, x->uri, "the bytes of key %u (version %" PRIu64 ")", k, v);
			return;
		}
		s->version = v;
	}
	r = rec_of(v);
	if (r == NULL || r->key != x->key) {
		mismatch(x->t, x->via, x->uri, "version %" PRIu64 " was never PUT on this key", v);
		return;
	}
	{
		uint64_t start = __atomic_load_n(&r->start, __ATOMIC_ACQUIRE);

		if (start == 0 || start > x->t1) {
			mismatch(x->t, x->via, x->uri, "version %" PRIu64 " read before its PUT began", v);
			return;
		}
	}
	if (s->len != r->size) {
		mismatch(x->t, x->via, x->uri, "version %" PRIu64 ": %" PRIu64 " bytes, its PUT had %u", v,
		    s->len, r->size);
		return;
	}
	if (s->bytes != NULL) {
		make_bytes(want, x->key, v, r->size);
		if (memcmp(want, s->bytes, r->size) != 0) {
			size_t at = 0;

			while (at < r->size && want[at] == s->bytes[at])
				at++;
			mismatch(x->t, x->via, x->uri, "version %" PRIu64 ": torn or wrong bytes from offset %zu of %u",
			    v, at, r->size);
			return;
		}
	}
	if (s->have_crc && s->crc != r->crc) {
		mismatch(x->t, x->via, x->uri, "version %" PRIu64 ": crc %08x reported, the bytes have %08x", v,
		    s->crc, r->crc);
		return;
	}
	if (s->have_meta_version && s->meta_version != v) {
		mismatch(x->t, x->via, x->uri, "the bytes are version %" PRIu64 ", the metadata says %" PRIu64, v,
		    s->meta_version);
		return;
	}
	{
		uint64_t ack = __atomic_load_n(&r->ack, __ATOMIC_ACQUIRE);
		uint64_t id = __atomic_load_n(&r->id, __ATOMIC_ACQUIRE);

		if (ack == NONE)
			return;
		if (s->have_id && id != 0 && s->id != id) {
			mismatch(x->t, x->via, x->uri, "version %" PRIu64 " served with id %" PRIu64
			    ", its PUT was answered with id %" PRIu64, v, s->id, id);
			return;
		}
		if (x->front > ack) {
			mismatch(x->t, x->via, x->uri, "stale: version %" PRIu64 " (answered at %" PRIu64
			    ") was superseded by an operation begun at %" PRIu64 " and answered before this "
			    "read began at %" PRIu64, v, ack, x->front, x->t0);
			return;
		}
	}
}

/* ---- a tiny HTTP/1.1 client ------------------------------------------------ */

typedef struct {
	int fd;
	uint8_t *buf;  /* head and body of the last response */
	size_t cap;
} http_t;

typedef struct {
	int status;
	int close;
	int has_etag;
	uint64_t etag_id;
	uint32_t etag_crc;
	int has_version;
	uint64_t version; /* from Content-Type */
	const uint8_t *body;
	size_t body_len;
} http_resp_t;

static int
http_open(http_t *h)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct timeval tv = { 15, 0 };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons((uint16_t)http_port);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	h->fd = fd;
	return 0;
}

static void
http_drop(http_t *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
}

static const char *
header_value(const char *head, const char *name)
{
	size_t n = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p + 2, "\r\n")) {
		if (strncasecmp(p + 2, name, n) == 0 && p[2 + n] == ':') {
			p += 2 + n + 1;
			while (*p == ' ')
				p++;
			return p;
		}
	}
	return NULL;
}

/* One exchange on the open connection: 0, or -1 if the connection failed
 * (nothing or part of a response came). */
static int
http_exchange(http_t *h, const char *method, const char *uri, const void *body, size_t blen,
    const char *extra, http_resp_t *r)
{
	char head[512];
	int n = snprintf(head, sizeof(head), "%s %s HTTP/1.1\r\nHost: soak\r\n%s", method, uri, extra);
	size_t have = 0, head_len = 0, clen = 0;
	const char *v;

	memset(r, 0, sizeof(*r));
	if (body != NULL || strcmp(method, "PUT") == 0)
		n += snprintf(head + n, sizeof(head) - (size_t)n, "Content-Length: %zu\r\n", blen);
	n += snprintf(head + n, sizeof(head) - (size_t)n, "\r\n");
	{
		struct iovec iov[2] = { { head, (size_t)n }, { (void *)body, blen } };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = body ? 2 : 1 };
		size_t left = (size_t)n + (body ? blen : 0);

		while (left > 0) {
			ssize_t w = sendmsg(h->fd, &mh, MSG_NOSIGNAL);

			if (w <= 0)
				return -1;
			left -= (size_t)w;
			while (w > 0 && mh.msg_iovlen > 0) {
				if ((size_t)w >= mh.msg_iov[0].iov_len) {
					w -= (ssize_t)mh.msg_iov[0].iov_len;
					mh.msg_iov++;
					mh.msg_iovlen--;
				} else {
					mh.msg_iov[0].iov_base = (char *)mh.msg_iov[0].iov_base + w;
					mh.msg_iov[0].iov_len -= (size_t)w;
					w = 0;
				}
			}
		}
	}
	for (;;) {
		ssize_t got;
		uint8_t *end;

		if (have > 4) {
			end = memmem(h->buf, have, "\r\n\r\n", 4);
			if (end != NULL) {
				head_len = (size_t)(end - h->buf) + 4;
				break;
			}
		}
		if (have + 1 >= h->cap)
			return -1;
		got = recv(h->fd, h->buf + have, h->cap - have - 1, 0);
		if (got <= 0)
			return -1;
		have += (size_t)got;
	}
	h->buf[head_len - 2] = '\0'; /* the head as a string, through its last CRLF */
	if (sscanf((char *)h->buf, "HTTP/1.%*c %d", &r->status) != 1)
		return -1;
	if ((v = header_value((char *)h->buf, "Content-Length")) != NULL)
		clen = strtoull(v, NULL, 10);
	if ((v = header_value((char *)h->buf, "Connection")) != NULL && strncasecmp(v, "close", 5) == 0)
		r->close = 1;
	if ((v = header_value((char *)h->buf, "ETag")) != NULL &&
	    sscanf(v, "\"%" SCNx64 "-%" SCNx32 "\"", &r->etag_id, &r->etag_crc) == 2)
		r->has_etag = 1;
	if ((v = header_value((char *)h->buf, "Content-Type")) != NULL && strncmp(v, "application/x-soak", 18) == 0) {
		const char *e = strstr(v, "\r\n");
		const char *p = strstr(v, "v=");

		if (p != NULL && (e == NULL || p < e) && sscanf(p + 2, "%" SCNu64, &r->version) == 1)
			r->has_version = 1;
	}
	if (strcmp(method, "HEAD") == 0 || r->status == 204 || r->status == 304)
		clen = 0;
	if (head_len + clen > h->cap)
		return -1;
	while (have < head_len + clen) {
		ssize_t got = recv(h->fd, h->buf + have, head_len + clen - have, 0);

		if (got <= 0)
			return -1;
		have += (size_t)got;
	}
	r->body = h->buf + head_len;
	r->body_len = clen;
	return 0;
}

/* An exchange, on a new connection if needed; a connection that fails
 * before the whole response came is opened again and the request sent
 * once more (*retried). 0, or -1 if it failed twice. */
static int
http_call(http_t *h, const char *method, const char *uri, const void *body, size_t blen,
    const char *extra, http_resp_t *r, int *retried)
{
	*retried = 0;
	for (int round = 0; round < 2; round++) {
		if (round > 0)
			*retried = 1;
		if (h->fd < 0 && http_open(h) != 0)
			continue;
		if (http_exchange(h, method, uri, body, blen, extra, r) == 0) {
			if (r->close)
				http_drop(h);
			return 0;
		}
		http_drop(h);
	}
	return -1;
}

/* ---- client threads --------------------------------------------------------- */

enum { T_UNIX, T_TCP, T_UDP, T_HTTP };
static const char *const t_names[] = { "unix", "tcp", "udp", "http" };

typedef struct {
	unsigned t;
	pthread_t th;
	uint64_t rnd;
	om_client_t *c[3]; /* unix, tcp, udp */
	http_t http;
	int memfd;
	uint8_t *buf;
} thr_t;

static thr_t thr[MAX_THREADS];
/* pause_flag: clients stop and normalize their connections; each one
 * says which pause_gen it normalized for in its paused_at. */
static int stop_flag, pause_flag;
static unsigned pause_gen, paused_at[MAX_THREADS];

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static unsigned
pick_key(thr_t *th, int small)
{
	uint64_t r = om_test_rand(&th->rnd);
	unsigned key;

	/* Half the operations go to a hot eighth of the keys (collisions,
	 * promotions), half anywhere. */
	if (r % 2)
		key = (unsigned)((r >> 8) % (cfg_keys / 8));
	else
		key = (unsigned)((r >> 8) % cfg_keys);
	if (small)
		key &= ~3u;
	return key;
}

static int
connect_client(thr_t *th, int which)
{
	const char *addr = which == T_UNIX ? D.sock : which == T_TCP ? tcp_addr : udp_addr;
	/* One thread promises offset reads: shared descriptions from the
	 * workers' descriptor caches. */
	unsigned flags = which == T_UNIX && th->t == 0 ? OM_CLIENT_OFFSET_READS : 0;
	int rc;

	if (th->c[which] != NULL)
		return 0;
	rc = om_client_connect(addr, flags, &th->c[which]);
	if (rc != 0) {
		om_client_close(th->c[which]);
		th->c[which] = NULL;
	}
	return rc;
}

/* A descriptor that came with a GET: the object's file, read-only. */
static int
check_fd(thr_t *th, const read_ctx_t *x, int fd, uint64_t len, uint8_t *out)
{
	struct stat st;
	int fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);

	count(th->t, C_FDS);
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != len) {
		mismatch(th->t, x->via, x->uri, "the descriptor is not a regular file of %" PRIu64 " bytes", len);
		return -1;
	}
	if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY || fdfl < 0 || !(fdfl & FD_CLOEXEC)) {
		mismatch(th->t, x->via, x->uri, "the descriptor is not read-only and close-on-exec (flags %o, %o)",
		    fl, fdfl);
		return -1;
	}
	if (len > OBJ_MAX || pread(fd, out, len, 0) != (ssize_t)len) {
		mismatch(th->t, x->via, x->uri, "cannot read %" PRIu64 " bytes from the descriptor", len);
		return -1;
	}
	return 0;
}

static void
op_get_lib(thr_t *th, int which, unsigned key, const char *uri)
{
	static const int unix_modes[] = { OM_MODE_AUTO, OM_MODE_FDPASS, OM_MODE_COPY, OM_MODE_SPLICE };
	static const int tcp_modes[] = { OM_MODE_AUTO, OM_MODE_COPY, OM_MODE_SPLICE };
	static const int udp_modes[] = { OM_MODE_AUTO, OM_MODE_COPY };
	uint64_t r = om_test_rand(&th->rnd);
	int mode = which == T_UNIX ? unix_modes[r % 4] : which == T_TCP ? tcp_modes[r % 3] : udp_modes[r % 2];
	unsigned flags = (r >> 8) % 2 ? OM_GET_WANT_META : 0;
	om_client_t *c = th->c[which];
	unsigned long before = om_client_retries(c);
	read_ctx_t x = { .t = th->t, .via = t_names[which], .uri = uri, .key = key };
	om_object_t o;
	seen_t s = { 0 };
	int rc;

	count(th->t, C_GET);
	x.t0 = tick();
	x.front = __atomic_load_n(&key_front[key], __ATOMIC_ACQUIRE);
	rc = om_client_get(c, uri, mode, flags, &o);
	x.t1 = tick();
	if (om_client_retries(c) != before)
		count(th->t, C_RETRY);
	if (rc == -OM_STATUS_NOT_FOUND) {
		count(th->t, C_ABSENT);
		return;
	}
	if (rc != 0) {
		failure(th->t, x.via, "GET", uri, rc, om_client_message(c));
		return;
	}
	s.len = o.len;
	s.have_id = s.have_crc = 1;
	s.id = o.info.id;
	s.crc = o.info.crc;
	if (o.meta != NULL)
		s.have_meta_version = meta_version(o.meta, o.meta_len, &s.meta_version);
	if (o.fd >= 0) {
		if (check_fd(th, &x, o.fd, o.len, th->buf) == 0) {
			s.bytes = th->buf;
			check_read(&x, &s);
		}
	} else {
		s.bytes = o.data;
		check_read(&x, &s);
	}
	om_object_free(&o);
}

static void
op_stat_lib(thr_t *th, int which, unsigned key, const char *uri)
{
	om_client_t *c = th->c[which];
	read_ctx_t x = { .t = th->t, .via = t_names[which], .uri = uri, .key = key };
	om_info_t info;
	void *meta = NULL;
	uint32_t meta_len = 0;
	seen_t s = { 0 };
	int rc;

	count(th->t, C_STAT);
	x.t0 = tick();
	x.front = __atomic_load_n(&key_front[key], __ATOMIC_ACQUIRE);
	rc = om_client_stat(c, uri, OM_GET_WANT_META, &info, &meta, &meta_len);
	x.t1 = tick();
	if (rc == -OM_STATUS_NOT_FOUND) {
		count(th->t, C_ABSENT);
		return;
	}
	if (rc != 0) {
		failure(th->t, x.via, "STAT", uri, rc, om_client_message(c));
		return;
	}
	if (!meta_version(meta, meta_len, &s.version)) {
		mismatch(th->t, x.via, uri, "STAT: metadata that no PUT wrote (%u bytes)", meta_len);
		free(meta);
		return;
	}
	free(meta);
	s.len = info.size;
	s.have_id = s.have_crc = 1;
	s.id = info.id;
	s.crc = info.crc;
	check_read(&x, &s);
}

/* A new version of key: its record, its bytes in th->buf. */
static uint64_t
begin_put(thr_t *th, unsigned key, rec_t **rp)
{
	uint64_t v = new_version();
	rec_t *r = rec_of(v);
	uint32_t size = size_of(key, v);

	make_bytes(th->buf, key, v, size);
	r->key = key;
	r->size = size;
	r->crc = om_crc32c(0, th->buf, size);
	r->id = 0;
	r->ack = NONE;
	__atomic_store_n(&r->start, tick(), __ATOMIC_RELEASE);
	*rp = r;
	return v;
}

/* A PUT or DELETE answered: it supersedes what was answered before it
 * began; a PUT answered exactly once also has its time and id. */
static void
answered(unsigned key, rec_t *r, uint64_t start, int once, uint64_t id)
{
	uint64_t ack = tick();

	if (r != NULL && once) {
		__atomic_store_n(&r->id, id, __ATOMIC_RELEASE);
		__atomic_store_n(&r->ack, ack, __ATOMIC_RELEASE);
	}
	front_advance(key, start);
}

static void
op_put_lib(thr_t *th, int which, unsigned key, const char *uri)
{
	om_client_t *c = th->c[which];
	unsigned long before = om_client_retries(c);
	uint64_t r = om_test_rand(&th->rnd), t_ns;
	om_put_opts_t po = { 0 };
	char meta[64];
	om_info_t info;
	rec_t *rec;
	uint64_t v = begin_put(th, key, &rec);
	int rc, once;

	count(th->t, C_PUT);
	snprintf(meta, sizeof(meta), "soak k=%u v=%" PRIu64, key, v);
	po.meta = meta;
	po.meta_len = (uint32_t)strlen(meta);
	if (which != T_UDP && r % 5 == 0)
		po.flags = OM_PUT_EPHEMERAL;
	t_ns = now_ns();
	if (which == T_UNIX && (r >> 8) % 3 == 0) {
		/* From a descriptor. */
		if (ftruncate(th->memfd, rec->size) != 0 ||
		    pwrite(th->memfd, th->buf, rec->size, 0) != (ssize_t)rec->size)
			die("memfd: %s", strerror(errno));
		rc = om_client_put_fd(c, uri, th->memfd, rec->size, &po, &info);
	} else {
		rc = om_client_put(c, uri, th->buf, rec->size, &po, &info);
	}
	t_ns = now_ns() - t_ns;
	/* Exactly one request reached the daemon: no retry by the library,
	 * and over UDP an answer before the first resend (100 ms). */
	once = om_client_retries(c) == before && (which != T_UDP || t_ns < 90000000ull);
	if (!once)
		count(th->t, which == T_UDP ? C_UNSURE : C_RETRY);
	if (rc != 0) {
		failure(th->t, t_names[which], "PUT", uri, rc, om_client_message(c));
		return;
	}
	answered(key, rec, rec->start, once, info.id);
}

static void
op_delete_lib(thr_t *th, int which, unsigned key, const char *uri)
{
	om_client_t *c = th->c[which];
	unsigned long before = om_client_retries(c);
	uint64_t start = tick();
	int rc;

	count(th->t, C_DEL);
	rc = om_client_delete(c, uri);
	if (om_client_retries(c) != before)
		count(th->t, C_RETRY);
	if (rc != 0 && rc != -OM_STATUS_NOT_FOUND) {
		failure(th->t, t_names[which], "DELETE", uri, rc, om_client_message(c));
		return;
	}
	answered(key, NULL, start, 0, 0);
}

static void
op_http(thr_t *th, int op, unsigned key, const char *uri)
{
	read_ctx_t x = { .t = th->t, .via = "http", .uri = uri, .key = key };
	http_resp_t r;
	int retried, rc;

	if (op == C_GET) {
		seen_t s = { 0 };

		count(th->t, C_GET);
		x.t0 = tick();
		x.front = __atomic_load_n(&key_front[key], __ATOMIC_ACQUIRE);
		rc = http_call(&th->http, "GET", uri, NULL, 0, "", &r, &retried);
		x.t1 = tick();
		if (retried)
			count(th->t, C_RETRY);
		if (rc != 0) {
			failure(th->t, "http", "GET", uri, -1, "connection failed twice");
			return;
		}
		if (r.status == 404) {
			count(th->t, C_ABSENT);
			return;
		}
		if (r.status != 200) {
			failure(th->t, "http", "GET", uri, r.status, "status");
			return;
		}
		s.bytes = r.body;
		s.len = r.body_len;
		s.have_id = s.have_crc = r.has_etag;
		s.id = r.etag_id;
		s.crc = r.etag_crc;
		s.have_meta_version = r.has_version;
		s.meta_version = r.version;
		if (!r.has_etag)
			mismatch(th->t, "http", uri, "a 200 without an ETag");
		check_read(&x, &s);
	} else if (op == C_PUT) {
		rec_t *rec;
		uint64_t v = begin_put(th, key, &rec);
		char extra[96];

		count(th->t, C_PUT);
		snprintf(extra, sizeof(extra), "Content-Type: application/x-soak; v=%" PRIu64 "\r\n", v);
		rc = http_call(&th->http, "PUT", uri, th->buf, rec->size, extra, &r, &retried);
		if (retried)
			count(th->t, C_RETRY);
		if (rc != 0 || (r.status != 201 && r.status != 204)) {
			failure(th->t, "http", "PUT", uri, rc ? -1 : r.status, rc ? "connection failed twice" : "status");
			return;
		}
		if (!r.has_etag)
			mismatch(th->t, "http", uri, "a PUT answered without an ETag");
		answered(key, rec, rec->start, !retried && r.has_etag, r.etag_id);
	} else {
		uint64_t start = tick();

		count(th->t, C_DEL);
		rc = http_call(&th->http, "DELETE", uri, NULL, 0, "", &r, &retried);
		if (retried)
			count(th->t, C_RETRY);
		if (rc != 0 || (r.status != 204 && r.status != 404)) {
			failure(th->t, "http", "DELETE", uri, rc ? -1 : r.status, rc ? "connection failed twice" : "status");
			return;
		}
		answered(key, NULL, start, 0, 0);
	}
}

/* Every connection open and answered, so that settled samples compare
 * like with like. */
static void
normalize(thr_t *th)
{
	http_resp_t r;
	int retried;

	for (int w = T_UNIX; w <= T_TCP; w++)
		if (connect_client(th, w) == 0)
			(void)om_client_ping(th->c[w]);
	(void)http_call(&th->http, "GET", "/soak/none", NULL, 0, "", &r, &retried);
	if (th->http.fd < 0)
		(void)http_call(&th->http, "GET", "/soak/none", NULL, 0, "", &r, &retried);
}

static void *
thread_main(void *arg)
{
	thr_t *th = arg;
	uint64_t next = now_ns(), gap = cfg_rate ? 1000000000ull * cfg_threads / cfg_rate : 0;

	while (!__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) {
		uint64_t r, now;
		int which, op;
		unsigned key;
		char uri[64];

		if (__atomic_load_n(&pause_flag, __ATOMIC_ACQUIRE)) {
			unsigned g = __atomic_load_n(&pause_gen, __ATOMIC_ACQUIRE);

			if (__atomic_load_n(&paused_at[th->t], __ATOMIC_ACQUIRE) != g) {
				normalize(th);
				__atomic_store_n(&paused_at[th->t], g, __ATOMIC_RELEASE);
			}
			usleep(10000);
			next = now_ns();
			continue;
		}
		if (gap) {
			now = now_ns();
			if (next > now)
				usleep((useconds_t)((next - now) / 1000));
			else if (now - next > 1000000000ull)
				next = now; /* far behind (a pause): do not rush */
			next += gap;
		}
		r = om_test_rand(&th->rnd);
		/* Transport: Unix 40%, TCP 25%, HTTP 20%, UDP 15% (small keys). */
		which = r % 100 < 40 ? T_UNIX : r % 100 < 65 ? T_TCP : r % 100 < 85 ? T_HTTP : T_UDP;
		/* Operation: GET 60%, PUT 27%, DELETE 7%, STAT 6% (not HTTP). */
		op = (r >> 16) % 100 < 60 ? C_GET : (r >> 16) % 100 < 87 ? C_PUT : (r >> 16) % 100 < 94 ? C_DEL : C_STAT;
		key = pick_key(th, which == T_UDP);
		key_uri(uri, sizeof(uri), key);
		__atomic_add_fetch(&counts[th->t].via[which], 1, __ATOMIC_RELAXED);
		if (which == T_HTTP) {
			op_http(th, op == C_STAT ? C_GET : op, key, uri);
			continue;
		}
		if (connect_client(th, which) != 0) {
			failure(th->t, t_names[which], "connect", uri, -OM_ECONNECT, "");
			usleep(100000);
			continue;
		}
		switch (op) {
		case C_GET: op_get_lib(th, which, key, uri); break;
		case C_PUT: op_put_lib(th, which, key, uri); break;
		case C_DEL: op_delete_lib(th, which, key, uri); break;
		default: op_stat_lib(th, which, key, uri); break;
		}
	}
	return NULL;
}

/* ---- sampling the daemon ------------------------------------------------- */

typedef struct {
	double t;
	unsigned procs;
	uint64_t rss_kib, anon_kib, shared_kib;
	unsigned fds, fds_obj, fds_deleted, maps_deleted;
	uint64_t master_kib;
	unsigned master_fds;
	uint64_t ops, evictions, promotions, restarts, reloads;
	uint64_t scrub_passes, damaged, ix_objects, ix_capacity, ix_evictions;
	uint64_t packs_removed;
	int settled;
} sample_t;

static int
under(const char *path, const char *dir)
{
	size_t n = strlen(dir);

	return strncmp(path, dir, n) == 0 && path[n] == '/';
}

/* Descriptors of a process: all, those of object files in a tier, and
 * those of object files already unlinked. */
typedef struct {
	unsigned *obj, *deleted;
} fd_count_t;

static void
count_fd(void *arg, const char *target)
{
	fd_count_t *k = arg;

	if (under(target, tier_p) || under(target, tier_m)) {
		if (strstr(target, " (deleted)") != NULL)
			(*k->deleted)++;
		else if (strrchr(target, '/') != NULL && strlen(strrchr(target, '/')) == 17)
			(*k->obj)++;
	}
}

static void
fds_of(pid_t pid, unsigned *all, unsigned *obj, unsigned *deleted)
{
	fd_count_t k = { obj, deleted };

	*all += om_test_fd_targets(pid, count_fd, &k);
}

/* Mappings of a process of tier files already unlinked (a pack that
 * compaction removed, still mapped): one per line of /proc/PID/maps. */
static unsigned
deleted_maps_of(pid_t pid)
{
	char path[64], line[1280];
	unsigned n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	if ((f = fopen(path, "re")) == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *name = strchr(line, '/');

		if (name != NULL && (under(name, tier_p) || under(name, tier_m)) && strstr(name, " (deleted)") != NULL)
			n++;
	}
	fclose(f);
	return n;
}

static om_client_t *stats_client;
static unsigned index_full_seen; /* samples that found the index full */

/* A statistic summed over its labels ("name" or "name{...}"). */
static uint64_t
stat_value(const char *text, const char *name)
{
	size_t n = strlen(name);
	uint64_t sum = 0;

	for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '{')) {
			const char *sp = strchr(p, ' ');

			if (sp != NULL)
				sum += strtoull(sp + 1, NULL, 10);
		}
	}
	return sum;
}

static void
daemon_stats(sample_t *s)
{
	char *text = NULL;

	if (stats_client == NULL && om_client_connect(D.sock, 0, &stats_client) != 0) {
		om_client_close(stats_client);
		stats_client = NULL;
		return;
	}
	if (om_client_stats(stats_client, &text) != 0) {
		free(text);
		return;
	}
	s->evictions = stat_value(text, "evictions_total");
	s->promotions = stat_value(text, "promotions_total");
	s->restarts = stat_value(text, "worker_restarts_total");
	s->reloads = stat_value(text, "reloads_total");
	s->scrub_passes = stat_value(text, "scrub_passes_total");
	s->damaged = stat_value(text, "objects_damaged_total");
	s->ix_objects = stat_value(text, "index_objects");
	s->ix_capacity = stat_value(text, "index_capacity");
	s->ix_evictions = stat_value(text, "index_evictions_total");
	s->packs_removed = stat_value(text, "packs_removed_total");
	if (s->ix_objects >= s->ix_capacity && s->ix_capacity > 0)
		index_full_seen++;
	free(text);
}

static uint64_t t_start;

static void
sample(sample_t *s)
{
	pid_t pids[64];
	int n;

	memset(s, 0, sizeof(*s));
	s->t = (double)(now_ns() - t_start) / 1e9;
	pids[0] = D.pid;
	n = 1 + om_daemon_children(&D, pids + 1, 63, NULL);
	s->procs = (unsigned)n;
	for (int i = 0; i < n; i++) {
		long kb = om_test_rss_kb(pids[i]);
		long anon = om_test_status_kb(pids[i], "RssAnon");
		long file = om_test_status_kb(pids[i], "RssFile");
		long shmem = om_test_status_kb(pids[i], "RssShmem");
		unsigned fds = 0;

		if (kb > 0)
			s->rss_kib += (uint64_t)kb;
		if (anon > 0)
			s->anon_kib += (uint64_t)anon;
		s->shared_kib += (uint64_t)(file > 0 ? file : 0) + (uint64_t)(shmem > 0 ? shmem : 0);
		s->maps_deleted += deleted_maps_of(pids[i]);
		fds_of(pids[i], &fds, &s->fds_obj, &s->fds_deleted);
		s->fds += fds;
		if (i == 0) {
			s->master_kib = kb > 0 ? (uint64_t)kb : 0;
			s->master_fds = fds;
		}
	}
	for (int w = 0; w < C_N; w++)
		if (w == C_GET || w == C_PUT || w == C_DEL || w == C_STAT)
			s->ops += total(w);
	daemon_stats(s);
}

static unsigned hups, kills_worker, kills_manager;

static void
print_header(void)
{
	printf("\n%7s %9s %6s %5s %6s %6s %4s %5s %5s %8s %8s %8s %5s %5s %5s %5s %7s %6s %7s %6s\n", "time_s",
	    "ops", "ops/s", "mism", "retry", "fail", "hups", "kills", "procs", "rss_kib", "anon_kib", "shr_kib",
	    "fds", "objfd", "delfd", "delmap", "mst_kib", "mst_fd", "evict", "promo");
	fflush(stdout);
}

static void
print_sample(const sample_t *s, const sample_t *prev, const char *mark)
{
	double dt = prev ? s->t - prev->t : s->t;
	uint64_t dops = prev ? s->ops - prev->ops : s->ops;

	printf("%7.1f %9" PRIu64 " %6.0f %5" PRIu64 " %6" PRIu64 " %6" PRIu64 " %4u %5u %5u %8" PRIu64 " %8" PRIu64
	    " %8" PRIu64 " %5u %5u %5u %5u %7" PRIu64 " %6u %7" PRIu64 " %6" PRIu64 "%s\n",
	    s->t, s->ops, dt > 0 ? (double)dops / dt : 0.0, total(C_MISMATCH), total(C_RETRY), total(C_FAIL),
	    hups, kills_worker + kills_manager, s->procs, s->rss_kib, s->anon_kib, s->shared_kib, s->fds,
	    s->fds_obj, s->fds_deleted, s->maps_deleted, s->master_kib, s->master_fds, s->evictions,
	    s->promotions, mark);
	fflush(stdout);
}

static int
generation_settled(void *arg)
{
	pid_t pids[64];

	(void)arg;
	return om_daemon_children(&D, pids, 64, NULL) == WORKERS + 1;
}

/*
 * A sample that can be compared with another: the clients paused, each
 * with its connections open, only the current generation running (no
 * draining one), and the workers' once-a-second sweep of unlinked
 * descriptors done.
 */
/* A new pause generation, and every client normalized for it. */
static void
pause_clients(void)
{
	unsigned g = __atomic_add_fetch(&pause_gen, 1, __ATOMIC_ACQ_REL);

	__atomic_store_n(&pause_flag, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 6000; i++) {
		unsigned done = 0;

		for (unsigned t = 0; t < cfg_threads; t++)
			done += __atomic_load_n(&paused_at[t], __ATOMIC_ACQUIRE) == g;
		if (done == cfg_threads)
			return;
		usleep(10000);
	}
	printf("soak: clients did not pause within 60 s\n");
}

static void
settled_sample(sample_t *s, int stop_after)
{
	pause_clients();
	if (!om_wait_until(generation_settled, NULL, 30000))
		printf("soak: the daemon still has more than %d processes after 30 s\n", WORKERS + 2);
	/* Connections that a draining or killed worker held were opened
	 * again by the pings; once more now that nothing drains. */
	pause_clients();
	usleep(2500000);
	sample(s);
	s->settled = 1;
	if (!stop_after)
		__atomic_store_n(&pause_flag, 0, __ATOMIC_RELEASE);
}

/* ---- after the load: a restart, and every key once more ---------------- */

static unsigned
verify_all_keys(const char *when)
{
	om_client_t *c = NULL;
	unsigned present = 0;
	uint64_t before = total(C_MISMATCH);

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	for (unsigned k = 0; k < cfg_keys; k++) {
		char uri[64];
		read_ctx_t x = { .t = 0, .via = when, .uri = uri, .key = k };
		om_object_t o;
		seen_t s = { 0 };
		int rc;

		key_uri(uri, sizeof(uri), k);
		x.t0 = tick();
		x.front = __atomic_load_n(&key_front[k], __ATOMIC_ACQUIRE);
		rc = om_client_get(c, uri, OM_MODE_COPY, OM_GET_WANT_META, &o);
		x.t1 = tick();
		if (rc == -OM_STATUS_NOT_FOUND)
			continue;
		if (rc != 0)
			fail_msg("%s: GET %s: %s", when, uri, om_client_message(c));
		present++;
		s.bytes = o.data;
		s.len = o.len;
		s.have_id = s.have_crc = 1;
		s.id = o.info.id;
		s.crc = o.info.crc;
		if (o.meta != NULL)
			s.have_meta_version = meta_version(o.meta, o.meta_len, &s.meta_version);
		check_read(&x, &s);
		om_object_free(&o);
	}
	om_client_close(c);
	printf("%s: %u of %u keys present, %" PRIu64 " mismatches\n", when, present, cfg_keys,
	    total(C_MISMATCH) - before);
	return present;
}

/* ---- the soak ------------------------------------------------------------- */

static void
soak(void **state)
{
	sample_t samples[4096], base = { 0 }, end = { 0 }, prev = { 0 };
	unsigned nsamples = 0, based = 0;
	uint64_t seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20, rnd;
	const char *seed_env = getenv("SOAK_SEED");
	double next_sample, next_hup, next_kill;
	int fail = 0;

	(void)state;
	if (seed_env != NULL)
		seed = strtoull(seed_env, NULL, 10);
	rnd = seed | 1;
	printf("soak: %u s (warm-up %u s), %u threads, %u ops/s (0: no limit), %u keys, SIGHUP every %u s, "
	    "SIGKILL every %u s, samples every %u s; margins: private memory +%u%% or +%u KiB (the larger), descriptors "
	    "+%u; seed %" PRIu64 "\n",
	    cfg_seconds, cfg_warmup, cfg_threads, cfg_rate, cfg_keys, cfg_hup, cfg_kill, cfg_sample,
	    cfg_rss_pct, cfg_rss_kib, cfg_fd_margin, seed);

	om_daemon_init(&D, WORKERS, "");
	tcp_port = om_test_free_port();
	udp_port = om_test_free_port();
	http_port = om_test_free_port();
	snprintf(tcp_addr, sizeof(tcp_addr), "tcp://127.0.0.1:%d", tcp_port);
	snprintf(udp_addr, sizeof(udp_addr), "udp://127.0.0.1:%d", udp_port);
	snprintf(tier_p, sizeof(tier_p), "%s/objects", D.dir);
	snprintf(tier_m, sizeof(tier_m), "%s", D.mem);
	write_conf();
	om_daemon_start(&D);
	printf("soak: daemon %d in %s (memory tier %s)\n", (int)D.pid, D.dir, D.mem);

	t_start = now_ns();
	for (unsigned t = 0; t < cfg_threads; t++) {
		thr_t *th = &thr[t];

		th->t = t;
		th->rnd = mix64(seed + t + 1) | 1;
		th->http.fd = -1;
		th->http.cap = OBJ_MAX + 16384;
		th->http.buf = malloc(th->http.cap);
		th->buf = malloc(OBJ_MAX);
		th->memfd = memfd_create("soak-put", MFD_CLOEXEC);
		assert_non_null(th->http.buf);
		assert_non_null(th->buf);
		assert_true(th->memfd >= 0);
		assert_int_equal(pthread_create(&th->th, NULL, thread_main, th), 0);
	}
	print_header();
	next_sample = cfg_sample;
	next_hup = cfg_hup ? cfg_hup : 1e18;
	next_kill = cfg_kill ? cfg_kill : 1e18;
	for (;;) {
		double t = (double)(now_ns() - t_start) / 1e9;

		if (t >= cfg_seconds)
			break;
		if (!based && t >= cfg_warmup) {
			settled_sample(&base, 0);
			print_sample(&base, nsamples ? &samples[nsamples - 1] : NULL, "  <- after warm-up (settled)");
			if (nsamples < 4096)
				samples[nsamples++] = base;
			based = 1;
			while (next_sample < base.t + 1)
				next_sample += cfg_sample;
			continue;
		}
		if (t >= next_hup) {
			conf_flip++;
			write_conf();
			om_daemon_kill(&D, SIGHUP);
			hups++;
			next_hup += cfg_hup;
		}
		if (t >= next_kill) {
			pid_t pids[16];
			int manager = om_test_rand(&rnd) % 5 == 0;
			int n = om_daemon_children(&D, pids, 16, manager ? "cache manager" : "worker process");

			if (n > 0 && kill(pids[om_test_rand(&rnd) % (unsigned)n], SIGKILL) == 0) {
				if (manager)
					kills_manager++;
				else
					kills_worker++;
			}
			next_kill += cfg_kill;
		}
		if (t >= next_sample) {
			sample_t s;

			sample(&s);
			print_sample(&s, nsamples ? &samples[nsamples - 1] : NULL, "");
			if (nsamples < 4096)
				samples[nsamples++] = s;
			next_sample += cfg_sample;
		}
		usleep(50000);
	}
	settled_sample(&end, 1);
	print_sample(&end, nsamples ? &samples[nsamples - 1] : NULL, "  <- end (settled)");
	prev = end;
	__atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
	for (unsigned t = 0; t < cfg_threads; t++) {
		thr_t *th = &thr[t];

		pthread_join(th->th, NULL);
		for (int w = 0; w < 3; w++)
			om_client_close(th->c[w]);
		http_drop(&th->http);
		close(th->memfd);
		free(th->http.buf);
		free(th->buf);
	}
	om_client_close(stats_client);
	stats_client = NULL;

	/* The index after all that: every lock, chain and counter. */
	{
		char err[512] = "";
		int rc = om_daemon_check_index(&D, err, sizeof(err));

		if (rc != 0) {
			printf("FAIL: the index check failed: %s\n", err);
			fail = 1;
		} else {
			printf("index check: consistent\n");
		}
	}
	verify_all_keys("after the load");
	om_daemon_stop(&D);
	om_daemon_start(&D);
	verify_all_keys("after a restart");
	om_daemon_stop(&D);
	/* The tiers as the daemon left them: every object in one file or
	 * one live pack entry, never two (om_packs_objects fails the test
	 * otherwise). */
	{
		long in_tiers = om_packs_objects(tier_p, OM_TIER_PERSISTENT) + om_packs_objects(tier_m, OM_TIER_MEMORY);

		printf("tiers: %ld objects and copies in files and live pack entries, none twice\n", in_tiers);
	}

	/* Summary. */
	{
		uint64_t ops = 0, via[4] = { 0 };
		uint64_t anon_limit = base.anon_kib + (base.anon_kib * cfg_rss_pct / 100 > cfg_rss_kib ?
		    base.anon_kib * cfg_rss_pct / 100 : cfg_rss_kib);
		unsigned base_other = base.fds - base.fds_obj - base.fds_deleted;
		unsigned end_other = end.fds - end.fds_obj - end.fds_deleted;
		uint64_t rss_max = 0, anon_max = 0;
		unsigned fds_max = 0;

		for (unsigned i = 0; i < nsamples; i++) {
			if (samples[i].rss_kib > rss_max)
				rss_max = samples[i].rss_kib;
			if (samples[i].anon_kib > anon_max)
				anon_max = samples[i].anon_kib;
			if (samples[i].fds > fds_max)
				fds_max = samples[i].fds;
		}
		for (unsigned t = 0; t < cfg_threads; t++)
			for (int w = 0; w < 4; w++)
				via[w] += counts[t].via[w];
		for (int w = 0; w < 4; w++)
			ops += via[w];
		printf("\nsoak summary (%.0f s):\n", prev.t);
		printf("  operations   %" PRIu64 " (unix %" PRIu64 ", tcp %" PRIu64 ", udp %" PRIu64 ", http %" PRIu64
		    ")\n", ops, via[T_UNIX], via[T_TCP], via[T_UDP], via[T_HTTP]);
		for (int w = 0; w < C_N; w++)
			printf("  %-12s %" PRIu64 "\n", c_names[w], total(w));
		printf("  reloads      %u sent, %" PRIu64 " taken (reloads_total)\n", hups, end.reloads);
		printf("  kills        %u workers, %u cache managers; worker_restarts_total %" PRIu64 "\n",
		    kills_worker, kills_manager, end.restarts);
		printf("  evictions    %" PRIu64 ", promotions %" PRIu64 "\n", end.evictions, end.promotions);
		printf("  index        capacity %" PRIu64 ", full in %u samples, %" PRIu64 " evictions for a new "
		    "entry (index_evictions_total)\n", end.ix_capacity, index_full_seen, end.ix_evictions);
		printf("  scrub        %" PRIu64 " passes, %" PRIu64 " objects damaged\n", end.scrub_passes,
		    end.damaged);
		printf("  anon_kib     after warm-up %" PRIu64 ", end %" PRIu64 " (limit %" PRIu64 "), max sampled %"
		    PRIu64 "\n", base.anon_kib, end.anon_kib, anon_limit, anon_max);
		printf("  rss_kib      after warm-up %" PRIu64 " (%" PRIu64 " shared), end %" PRIu64 " (%" PRIu64
		    " shared), max sampled %" PRIu64 "; mappings of unlinked files: %u\n", base.rss_kib,
		    base.shared_kib, end.rss_kib, end.shared_kib, rss_max, end.maps_deleted);
		printf("  descriptors  after warm-up %u (%u object files), end %u (%u object files); other than "
		    "object files: %u -> %u (limit +%u); unlinked files held: %u; max sampled %u\n",
		    base.fds, base.fds_obj, end.fds, end.fds_obj, base_other, end_other, cfg_fd_margin,
		    end.fds_deleted, fds_max);
		printf("  master       rss_kib %" PRIu64 " -> %" PRIu64 " (limit +%u), descriptors %u -> %u (limit +%u)\n",
		    base.master_kib, end.master_kib, MASTER_RSS_KIB, base.master_fds, end.master_fds, MASTER_FDS);
		for (unsigned i = 0; i < nfirst_failures; i++)
			printf("  failure: %s\n", first_failures[i]);
		if (total(C_MISMATCH) != 0) {
			printf("FAIL: %" PRIu64 " mismatches\n", total(C_MISMATCH));
			fail = 1;
		}
		if (end.anon_kib > anon_limit) {
			printf("FAIL: private resident memory grew from %" PRIu64 " to %" PRIu64 " KiB\n",
			    base.anon_kib, end.anon_kib);
			fail = 1;
		}
		if (end.maps_deleted > cfg_fd_margin) {
			printf("FAIL: %u mappings of unlinked files held\n", end.maps_deleted);
			fail = 1;
		}
		if (end_other > base_other + cfg_fd_margin || end.fds_deleted > cfg_fd_margin) {
			printf("FAIL: descriptors grew: %u -> %u (other than object files), %u unlinked files held\n",
			    base_other, end_other, end.fds_deleted);
			fail = 1;
		}
		/* The master outlives every reload and every killed child:
		 * whatever it leaks per event adds up, so it gets a margin of
		 * its own. */
		if (end.master_kib > base.master_kib + MASTER_RSS_KIB || end.master_fds > base.master_fds + MASTER_FDS) {
			printf("FAIL: the master grew: %" PRIu64 " -> %" PRIu64 " KiB, %u -> %u descriptors\n",
			    base.master_kib, end.master_kib, base.master_fds, end.master_fds);
			fail = 1;
		}
		if (ops > 0 && total(C_FAIL) * 100 > ops) {
			printf("FAIL: %" PRIu64 " of %" PRIu64 " operations failed (over 1%%)\n", total(C_FAIL), ops);
			fail = 1;
		}
		if (end.evictions == 0 || end.promotions == 0) {
			printf("FAIL: no tier pressure: %" PRIu64 " evictions, %" PRIu64 " promotions\n", end.evictions,
			    end.promotions);
			fail = 1;
		}
		if (end.damaged != 0) {
			printf("FAIL: the scrub found %" PRIu64 " damaged objects where none are\n", end.damaged);
			fail = 1;
		}
		/* The index is full whenever a PUT of a new key evicts from it;
		 * a sample every few seconds may well miss those moments, the
		 * daemon's own counter does not. */
		if (end.scrub_passes == 0 || end.ix_evictions == 0) {
			printf("FAIL: %" PRIu64 " scrub passes; %" PRIu64 " evictions for a full index\n",
			    end.scrub_passes, end.ix_evictions);
			fail = 1;
		}
		/* Small objects are packed (pack_max 16K, the default): the
		 * manager must have compacted, or the packs' removal was not
		 * exercised. */
		printf("  packs        %" PRIu64 " removed by compaction (packs_removed_total)\n",
		    end.packs_removed);
		if (end.packs_removed == 0) {
			printf("FAIL: no pack was compacted (packs_removed_total 0)\n");
			fail = 1;
		}
		if (end.reloads != hups) {
			printf("FAIL: %u SIGHUPs sent, %" PRIu64 " reloads taken\n", hups, end.reloads);
			fail = 1;
		}
		printf("%s\n", fail ? "soak: FAILED" : "soak: passed");
		fflush(stdout);
	}
	if (fail)
		fail_msg("soak failed (daemon log: %s)", D.log);
	om_daemon_cleanup(&D);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(soak),
	};

	read_config();
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
