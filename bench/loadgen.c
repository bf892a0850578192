/*
 * Load generator over libobjmapper, or over memcached's text protocol or
 * HTTP/1.1 with the same structure (-s memcached:..., -s http:...): -c
 * connections in -p processes, each connection a thread in a closed loop
 * (send, wait, consume every byte, repeat) for -d seconds; prints ops/s, MB/s
 * and latency percentiles. --prepare-dir writes the objects as files for
 * bench/floor_server (or a web server's document root).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#define KEYS_MAX     100000000u /* keys are 8 decimal digits */
#define CONNS_MAX    4096
#define BATCH_MAX    1024
#define URI_CAP      (OM_PROTO_URI_MAX + 1)
#define PAGE         4096u
#define TAIL_MAGIC   0x7461696c6d61726bull /* the last 8 bytes: key ^ this */
#define MC_KEY_MAX   250                   /* memcached's longest key */
#define MC_RBUF      (64u << 10)           /* memcached, HTTP: a connection's input buffer */
#define HTTP_REQ_MAX (URI_CAP + 128)        /* HTTP: one request head, PUT included */
#define HTTP_GET_TAIL " HTTP/1.1\r\nHost: localhost\r\n\r\n" /* after GET URI */

/*
 * Latency histogram, in nanoseconds: exact below 64 ns, then 64 buckets
 * per power of two (1.6% wide) up to 2^38 ns (275 s).
 */
#define HIST_SUB     64
#define HIST_TOP     38
#define HIST_BUCKETS ((HIST_TOP - 5) * HIST_SUB)

/* One thread's results. Lives in shared memory: the parent merges them. */
typedef struct {
	uint64_t gets, puts, errors, bytes;  /* completed in the measured window */
	uint64_t ops_all, errors_all;        /* warm-up included (the 1% rule) */
	uint64_t sink;                       /* keeps the consumed bytes alive */
	char err[256];                       /* the thread's first failure */
	uint64_t hist[HIST_BUCKETS];
} __attribute__((aligned(64))) slot_sh_t;

enum { GO_WAIT, GO_RUN, GO_STOP };

/* Shared by every process (MAP_SHARED, mapped before the forks). */
typedef struct {
	uint32_t ready, failed;  /* threads connected (and preloaded), or failed */
	uint32_t go;
	uint32_t abort;          /* a thread saw more than 1% failures */
	uint64_t t_measure;      /* CLOCK_MONOTONIC ns: the warm-up ends */
	uint64_t t_end;
	slot_sh_t slots[];
} shm_sh_t;

enum { DRV_OBJMAPPER, DRV_MEMCACHED, DRV_HTTP };

static const char *sock_path;
static int driver = DRV_OBJMAPPER;
static const char *net_path;             /* memcached:PATH, http:PATH */
static char *net_host, *net_port;        /* memcached://HOST:PORT, http://HOST:PORT */
static int mode = OM_MODE_FDPASS;
static bool mode_set, private_set;
static double zipf_s;                    /* 0: keys uniform */
static double *zipf_cdf;                 /* nkeys entries, zipf_cdf[nkeys-1] = 1 */
static uint64_t zipf_mul;                /* rank r is key r * zipf_mul % nkeys */
static unsigned nconns = 1, nprocs = 1, batch = 1, put_pct;
static uint32_t nkeys = 1000;
static uint64_t obj_size = 4096;
static double duration = 5.0;
static bool preload, json;
static unsigned connect_flags = OM_CLIENT_OFFSET_READS; /* loadgen only preads */
static const char *prepare_dir;
static const char *prefix = "/bench/";
static int cpus[CPU_SETSIZE], ncpus;

static shm_sh_t *shm;

static const char *const mode_names[] = { "auto", "fdpass", "copy", "splice" };

__attribute__((noreturn, format(printf, 1, 2))) static void
die(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t
rnd_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* ---- histogram ------------------------------------------------------------ */

static unsigned
hist_index(uint64_t ns)
{
	unsigned e;

	if (ns < HIST_SUB)
		return (unsigned)ns;
	if (ns >= 1ull << HIST_TOP)
		ns = (1ull << HIST_TOP) - 1;
	e = 63u - (unsigned)__builtin_clzll(ns);
	return (e - 5) * HIST_SUB + (unsigned)((ns >> (e - 6)) & (HIST_SUB - 1));
}

/* A bucket's middle, ns. */
static double
hist_value(unsigned i)
{
	unsigned e, sub;

	if (i < HIST_SUB)
		return i;
	e = i / HIST_SUB + 5;
	sub = i % HIST_SUB;
	return (double)((uint64_t)(HIST_SUB + sub) << (e - 6)) + (double)(1ull << (e - 6)) / 2;
}

static double
hist_quantile(const uint64_t *h, uint64_t total, double q)
{
	uint64_t want = (uint64_t)(q * (double)total), seen = 0;

	if (total == 0)
		return 0;
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h[i];
		if (seen > want)
			return hist_value(i);
	}
	return hist_value(HIST_BUCKETS - 1);
}

/* ---- keys and files --------------------------------------------------------- */

/* The 8 digits of key k, in place. */
static void
key_set(char *digits, uint32_t k)
{
	for (int i = 7; i >= 0; i--) {
		digits[i] = (char)('0' + k % 10);
		k /= 10;
	}
}

/* The floor server's file name of a URI: leading '/' dropped, '/' -> '_'. */
static void
uri_to_name(const char *uri, char *name)
{
	if (*uri == '/')
		uri++;
	for (; *uri; uri++)
		*name++ = *uri == '/' ? '_' : *uri;
	*name = '\0';
}

/*
 * Makes the object bytes differ per key and per version: key k, version ver
 * is the word ver << 32 | k at every page and k ^ TAIL_MAGIC in the last 8
 * bytes (objects of 16 bytes or more), which is what a GET checks.
 */
static void
stamp(uint8_t *buf, uint64_t len, uint32_t k, uint32_t ver)
{
	uint64_t v = (uint64_t)ver << 32 | k, tail = k ^ TAIL_MAGIC;

	for (uint64_t o = 0; o + sizeof(v) <= len; o += PAGE)
		memcpy(buf + o, &v, sizeof(v));
	if (len >= 2 * sizeof(tail))
		memcpy(buf + len - sizeof(tail), &tail, sizeof(tail));
}

/* Whether len bytes look like a version of key k (see stamp). */
static bool
stamp_ok(const uint8_t *buf, uint64_t len, uint32_t k)
{
	uint64_t v, tail;

	if (len >= sizeof(v)) {
		memcpy(&v, buf, sizeof(v));
		if ((uint32_t)v != k)
			return false;
	}
	if (len >= 2 * sizeof(tail)) {
		memcpy(&tail, buf + len - sizeof(tail), sizeof(tail));
		if (tail != (k ^ TAIL_MAGIC))
			return false;
	}
	return true;
}

/*
 * ln and exp for the Zipf weights: loadgen does not link libm. Series to
 * double precision: ln m = 2 atanh((m - 1) / (m + 1)) for m in [1, 2), and
 * exp r by Taylor for r in [0, ln 2).
 */
#define LN2 0.69314718055994530942

static double
ln_ge1(double x)
{
	double z, z2, term, sum = 0;
	int e = 0;

	while (x >= 2) {
		x /= 2;
		e++;
	}
	z = (x - 1) / (x + 1);
	z2 = z * z;
	term = z;
	for (int i = 1; i < 40; i += 2) {
		sum += term / i;
		term *= z2;
	}
	return e * LN2 + 2 * sum;
}

static double
exp_le0(double y)
{
	double r, term = 1, sum = 1;
	int k = 0;

	while (y < 0) {
		y += LN2;
		k++;
	}
	r = y;
	for (int i = 1; i < 22; i++) {
		term *= r / i;
		sum += term;
	}
	while (k-- > 0)
		sum /= 2;
	return sum;
}

static uint64_t
gcd(uint64_t a, uint64_t b)
{
	while (b != 0) {
		uint64_t r = a % b;

		a = b;
		b = r;
	}
	return a;
}

/*
 * -Z: P(rank r) proportional to 1 / (r + 1)^s, as a cumulative table that a
 * binary search inverts. Computed once before the forks (the children share
 * its pages). Rank r is key r * zipf_mul mod nkeys, a permutation, so that the
 * hot keys are not neighbours.
 */
static void
zipf_init(void)
{
	double sum = 0;

	if ((zipf_cdf = malloc((size_t)nkeys * sizeof(*zipf_cdf))) == NULL)
		die("-Z: out of memory for a table of %u keys", nkeys);
	for (uint32_t r = 0; r < nkeys; r++) {
		sum += exp_le0(-zipf_s * ln_ge1((double)r + 1));
		zipf_cdf[r] = sum;
	}
	for (uint32_t r = 0; r < nkeys; r++)
		zipf_cdf[r] /= sum;
	zipf_cdf[nkeys - 1] = 1;
	zipf_mul = (uint64_t)((double)nkeys * 0.6180339887) | 1;
	while (gcd(zipf_mul, nkeys) != 1)
		zipf_mul++;
}

/* The next key: uniform, or Zipf with -Z. */
static uint32_t
key_draw(uint64_t *rng)
{
	double u;
	uint32_t lo = 0, hi = nkeys - 1;

	if (zipf_cdf == NULL)
		return (uint32_t)(rnd_next(rng) % nkeys);
	u = (double)(rnd_next(rng) >> 11) * 0x1p-53;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (zipf_cdf[mid] > u)
			hi = mid;
		else
			lo = mid + 1;
	}
	return (uint32_t)((uint64_t)lo * zipf_mul % nkeys);
}

/* A buffer of len bytes, faulted in now rather than while measuring. */
static void *
buf_alloc(uint64_t len)
{
	size_t n = (size_t)((len + PAGE - 1) / PAGE * PAGE);
	void *p;

	if (n == 0)
		n = PAGE;
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	memset(p, 0x5a, n);
	return p;
}

static void
fill_random(uint8_t *buf, uint64_t len, uint64_t seed)
{
	uint64_t s = seed | 1;

	for (uint64_t o = 0; o < len; o += 8) {
		uint64_t v = rnd_next(&s);

		memcpy(buf + o, &v, len - o < 8 ? (size_t)(len - o) : 8);
	}
}

static void
prepare_files(void)
{
	char uri[URI_CAP], name[URI_CAP], tmp[URI_CAP + 8];
	size_t plen = strlen(prefix);
	uint8_t *data = buf_alloc(obj_size);
	uint64_t t0 = now_ns();
	int dfd;

	if (data == NULL)
		die("out of memory for an object of %" PRIu64 " bytes", obj_size);
	if (mkdir(prepare_dir, 0755) != 0 && errno != EEXIST)
		die("mkdir(\"%s\"): %s", prepare_dir, strerror(errno));
	if ((dfd = open(prepare_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
		die("open(\"%s\"): %s", prepare_dir, strerror(errno));
	fill_random(data, obj_size, 0x6f626a6d61707065ull);
	memcpy(uri, prefix, plen);
	uri[plen + 8] = '\0';
	for (uint32_t k = 0; k < nkeys; k++) {
		uint64_t off = 0;
		int fd;

		key_set(uri + plen, k);
		uri_to_name(uri, name);
		snprintf(tmp, sizeof(tmp), "%s.tmp", name);
		stamp(data, obj_size, k, 0);
		/* Written aside and renamed: a running server never serves half a file. */
		if ((fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
			die("open(\"%s/%s\"): %s", prepare_dir, tmp, strerror(errno));
		while (off < obj_size) {
			ssize_t n = write(fd, data + off, (size_t)(obj_size - off));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				die("write(\"%s/%s\"): %s", prepare_dir, tmp, n ? strerror(errno) : "no progress");
			off += (uint64_t)n;
		}
		if (close(fd) != 0)
			die("close(\"%s/%s\"): %s", prepare_dir, tmp, strerror(errno));
		if (renameat(dfd, tmp, dfd, name) != 0)
			die("rename(\"%s/%s\"): %s", prepare_dir, tmp, strerror(errno));
	}
	close(dfd);
	fprintf(stderr, "loadgen: %u objects of %" PRIu64 " bytes in %s (%.2f s)\n", nkeys, obj_size,
	    prepare_dir, (double)(now_ns() - t0) / 1e9);
}

/* ---- one connection ------------------------------------------------------- */

typedef struct {
	unsigned no;             /* connection number, 0..nconns-1 */
	slot_sh_t *s;
	om_client_t *c;
	int mfd;                 /* memcached, HTTP: the connection, or -1 */
	bool broken;             /* memcached, HTTP: out of step with the server */
	char *rbuf;              /* memcached, HTTP: input, MC_RBUF bytes */
	size_t rpos, rlen;       /* memcached, HTTP: unread input is rbuf[rpos, rlen) */
	char *cmd;               /* memcached, HTTP: the request being built */
	uint8_t *buf;            /* GET: the object's bytes land here */
	uint8_t *put_data;       /* PUT: the bytes sent */
	uint64_t rng;
	uint64_t sink;
	uint64_t puts_done;
	uint32_t key;            /* the key in uri */
	char uri[URI_CAP];
	char *digits;            /* uri + strlen(prefix) */
} thr_t;

__attribute__((format(printf, 2, 3))) static void
thr_fail(thr_t *t, const char *fmt, ...)
{
	va_list ap;

	if (t->s->err[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(t->s->err, sizeof(t->s->err), fmt, ap);
	va_end(ap);
}

static uint64_t
touch(const uint8_t *p, uint64_t len)
{
	uint64_t sum = 0;

	for (uint64_t o = 0; o < len; o += PAGE)
		sum += p[o];
	return len ? sum + p[len - 1] : sum;
}

/* Reads a whole descriptor into the thread's buffer; bytes, or -1. */
static int64_t
consume_fd(thr_t *t, const char *uri, int fd, uint64_t size)
{
	uint64_t off = 0;

	if (size > obj_size) {
		thr_fail(t, "GET %s: object of %" PRIu64 " bytes, expected %" PRIu64, uri, size, obj_size);
		return -1;
	}
	while (off < size) {
		ssize_t n = pread(fd, t->buf + off, (size_t)(size - off), (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			thr_fail(t, "GET %s: pread: %s", uri, n ? strerror(errno) : "short file");
			return -1;
		}
		off += (uint64_t)n;
	}
	t->sink += touch(t->buf, size);
	return (int64_t)size;
}

/* Key k's object, size bytes at data: the size, or -1. */
static int64_t
check_obj(thr_t *t, const char *uri, uint32_t k, const uint8_t *data, uint64_t size)
{
	if (size != obj_size) {
		thr_fail(t, "GET %s: object of %" PRIu64 " bytes, expected %" PRIu64, uri, size, obj_size);
		return -1;
	}
	if (!stamp_ok(data, size, k)) {
		thr_fail(t, "GET %s: the first or last 8 bytes are not those loadgen wrote", uri);
		return -1;
	}
	return (int64_t)size;
}

/* ---- memcached's text protocol and HTTP/1.1: a stream connection ------------- */

/* The name of the driver, in messages. */
static const char *
net_name(void)
{
	return driver == DRV_HTTP ? "http" : "memcached";
}

/* The socket of a connection (TCP: TCP_NODELAY), into t->mfd; 0 or -1. */
static int
net_dial(thr_t *t)
{
	int fd = -1;

	if (net_host == NULL) {
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		memcpy(sa.sun_path, net_path, strlen(net_path) + 1);
		if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0 ||
		    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			thr_fail(t, "connect(\"%s\"): %s", net_path, strerror(errno));
			if (fd >= 0)
				close(fd);
			return -1;
		}
	} else {
		struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res, *ai;
		int rc, one = 1, err = 0;

		if ((rc = getaddrinfo(net_host, net_port, &hints, &res)) != 0) {
			thr_fail(t, "%s:%s: %s", net_host, net_port, gai_strerror(rc));
			return -1;
		}
		for (ai = res; ai != NULL; ai = ai->ai_next) {
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
			if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
				break;
			err = errno;
			if (fd >= 0)
				close(fd);
			fd = -1;
		}
		freeaddrinfo(res);
		if (fd < 0) {
			thr_fail(t, "connect(%s:%s): %s", net_host, net_port, strerror(err));
			return -1;
		}
		/* Requests are single writes: Nagle would only delay them. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	t->mfd = fd;
	t->rpos = t->rlen = 0;
	return 0;
}

static int
net_connect(thr_t *t)
{
	/* A batch is one "get" line of up to BATCH_MAX keys, or BATCH_MAX
	 * pipelined HTTP requests. */
	t->rbuf = malloc(MC_RBUF);
	t->cmd = malloc((size_t)batch * (driver == DRV_HTTP ? HTTP_REQ_MAX : URI_CAP + 1) + 64);
	if (t->rbuf == NULL || t->cmd == NULL) {
		thr_fail(t, "out of memory for the buffers");
		return -1;
	}
	return net_dial(t);
}

/* The socket closed (HTTP: the server said it closes); buffers kept. */
static void
net_hangup(thr_t *t)
{
	if (t->mfd >= 0)
		close(t->mfd);
	t->mfd = -1;
	t->rpos = t->rlen = 0;
}

static void
net_close(thr_t *t)
{
	net_hangup(t);
	free(t->rbuf);
	free(t->cmd);
}

/* Marks the connection unusable: the failure is already recorded. */
static int
net_broken(thr_t *t)
{
	t->broken = true;
	return -1;
}

static int
net_write(thr_t *t, struct iovec *iov, int iovcnt)
{
	while (iovcnt > 0) {
		ssize_t n = writev(t->mfd, iov, iovcnt);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			thr_fail(t, "%s: write: %s", net_name(), strerror(errno));
			return net_broken(t);
		}
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	return 0;
}

/* More input into rbuf, after what is unread. */
static int
net_fill(thr_t *t)
{
	ssize_t n;

	if (t->rpos > 0) {
		memmove(t->rbuf, t->rbuf + t->rpos, t->rlen - t->rpos);
		t->rlen -= t->rpos;
		t->rpos = 0;
	}
	if (t->rlen == MC_RBUF) {
		thr_fail(t, "%s: a response %s longer than %u bytes", net_name(),
		    driver == DRV_HTTP ? "head" : "line", MC_RBUF);
		return net_broken(t);
	}
	do
		n = read(t->mfd, t->rbuf + t->rlen, MC_RBUF - t->rlen);
	while (n < 0 && errno == EINTR);
	if (n <= 0) {
		thr_fail(t, "%s: read: %s", net_name(), n ? strerror(errno) : "connection closed");
		return net_broken(t);
	}
	t->rlen += (size_t)n;
	return 0;
}

/* The next response line, its "\r\n" replaced by a NUL; NULL on failure. */
static char *
mc_line(thr_t *t)
{
	for (;;) {
		char *p = t->rbuf + t->rpos, *nl = memchr(p, '\n', t->rlen - t->rpos);

		if (nl != NULL && nl > p && nl[-1] == '\r') {
			nl[-1] = '\0';
			t->rpos += (size_t)(nl - p) + 1;
			return p;
		}
		if (nl != NULL) {
			thr_fail(t, "memcached: a response line not ended by \\r\\n");
			net_broken(t);
			return NULL;
		}
		if (net_fill(t) != 0)
			return NULL;
	}
}

/* Exactly n bytes into dst: first what rbuf holds, then straight from the socket. */
static int
net_read(thr_t *t, void *dst, size_t n)
{
	size_t have = t->rlen - t->rpos, off = have < n ? have : n;

	memcpy(dst, t->rbuf + t->rpos, off);
	t->rpos += off;
	while (off < n) {
		ssize_t r = read(t->mfd, (char *)dst + off, n - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			thr_fail(t, "%s: read: %s", net_name(), r ? strerror(errno) : "connection closed");
			return net_broken(t);
		}
		off += (size_t)r;
	}
	return 0;
}

/*
 * One VALUE block of a get response, its line already read: the bytes into
 * t->buf, checked as key k's. The bytes consumed; -1 (the connection still
 * usable) or -2 (broken).
 */
static int64_t
mc_value(thr_t *t, char *line, const char *key, uint32_t k)
{
	char *p = line + 6, *end, crlf[2];
	size_t klen = strlen(key);
	uint64_t len;

	if (strncmp(p, key, klen) != 0 || p[klen] != ' ')
		goto bad;
	p += klen + 1;
	(void)strtoul(p, &end, 10);                 /* the flags */
	if (end == p || *end != ' ')
		goto bad;
	p = end + 1;
	errno = 0;
	len = strtoull(p, &end, 10);
	if (end == p || errno != 0 || (*end != '\0' && *end != ' '))
		goto bad;
	if (len > obj_size) {
		thr_fail(t, "GET %s: object of %" PRIu64 " bytes, expected %" PRIu64, key, len, obj_size);
		net_broken(t);
		return -2;
	}
	if (net_read(t, t->buf, (size_t)len) != 0 || net_read(t, crlf, 2) != 0)
		return -2;
	if (crlf[0] != '\r' || crlf[1] != '\n') {
		thr_fail(t, "GET %s: memcached's value is not followed by \\r\\n", key);
		net_broken(t);
		return -2;
	}
	t->sink += touch(t->buf, len);
	return check_obj(t, key, k, t->buf, len);
bad:
	thr_fail(t, "GET %s: memcached answered \"%.80s\"", key, line);
	net_broken(t);
	return -2;
}

/* n GETs in one "get" line (keys may repeat); gots[i]: bytes or -1. */
static void
mc_get(thr_t *t, unsigned n, const char *const *keys, const uint32_t *ks, int64_t *gots)
{
	size_t len = 3;
	unsigned i = 0;
	char *line;

	for (unsigned j = 0; j < n; j++)
		gots[j] = -1;
	if (t->broken) {
		thr_fail(t, "GET %s: the memcached connection is broken", keys[0]);
		return;
	}
	memcpy(t->cmd, "get", 3);
	for (unsigned j = 0; j < n; j++) {
		size_t kl = strlen(keys[j]);

		t->cmd[len++] = ' ';
		memcpy(t->cmd + len, keys[j], kl);
		len += kl;
	}
	t->cmd[len++] = '\r';
	t->cmd[len++] = '\n';
	if (net_write(t, &(struct iovec){ .iov_base = t->cmd, .iov_len = len }, 1) != 0)
		return;
	/* Hits come in the order asked; a miss is just left out. */
	for (;;) {
		if ((line = mc_line(t)) == NULL)
			return;
		if (strcmp(line, "END") == 0)
			break;
		if (strncmp(line, "VALUE ", 6) != 0) {
			thr_fail(t, "GET %s: memcached answered \"%.80s\"", keys[i < n ? i : 0], line);
			net_broken(t);
			return;
		}
		while (i < n) {
			size_t kl = strlen(keys[i]);

			if (strncmp(line + 6, keys[i], kl) == 0 && line[6 + kl] == ' ')
				break;
			thr_fail(t, "GET %s: not found", keys[i]);
			i++;
		}
		if (i == n) {
			thr_fail(t, "GET: memcached answered \"%.80s\", not asked for", line);
			net_broken(t);
			return;
		}
		if ((gots[i] = mc_value(t, line, keys[i], ks[i])) < -1) {
			gots[i] = -1;
			return;
		}
		i++;
	}
	if (i < n)
		thr_fail(t, "GET %s: not found", keys[i]);
}

static int
mc_set(thr_t *t, const char *key, const void *data, size_t len)
{
	char head[URI_CAP + 64], *line;
	struct iovec iov[3];

	if (t->broken) {
		thr_fail(t, "PUT %s: the memcached connection is broken", key);
		return -1;
	}
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)snprintf(head, sizeof(head), "set %s 0 0 %zu\r\n", key, len);
	iov[1].iov_base = (void *)data;
	iov[1].iov_len = len;
	iov[2].iov_base = "\r\n";
	iov[2].iov_len = 2;
	if (net_write(t, iov, 3) != 0 || (line = mc_line(t)) == NULL)
		return -1;
	if (strcmp(line, "STORED") != 0) {
		/* SERVER_ERROR (too large, out of memory): memcached swallowed the
		 * bytes and the connection goes on; anything else is out of step. */
		thr_fail(t, "PUT %s: memcached answered \"%.80s\"", key, line);
		if (strncmp(line, "SERVER_ERROR ", 13) != 0)
			net_broken(t);
		return -1;
	}
	return 0;
}

/* ---- HTTP/1.1 ------------------------------------------------------------------ */

/* A response head, parsed. */
typedef struct {
	int status;
	int64_t clen;            /* Content-Length, or -1 */
	bool chunked;            /* Transfer-Encoding other than identity */
	bool close;              /* the server closes the connection after it */
} http_resp_t;

/* Whether the comma-separated list [v, end) holds token tok (any case). */
static bool
http_has_token(const char *v, const char *end, const char *tok)
{
	size_t tl = strlen(tok);

	while (v < end) {
		const char *e = memchr(v, ',', (size_t)(end - v)), *b = v;

		if (e == NULL)
			e = end;
		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		const char *te = e;
		while (te > b && (te[-1] == ' ' || te[-1] == '\t'))
			te--;
		if ((size_t)(te - b) == tl && strncasecmp(b, tok, tl) == 0)
			return true;
		v = e + 1;
	}
	return false;
}

/*
 * Reads a response head (status line and headers, which may arrive over
 * several reads, up to MC_RBUF bytes) and parses it into r; 1xx interim
 * responses are skipped. rbuf[rpos...] is then the body. 0, or -1 (broken).
 */
static int
http_head(thr_t *t, const char *what, const char *uri, http_resp_t *r)
{
	for (;;) {
		char *p, *end, *eol;
		size_t scanned = 0;
		bool http10;

		for (;;) {
			size_t have = t->rlen - t->rpos;

			/* Only the new bytes (and the 3 before them) are searched again. */
			p = t->rbuf + t->rpos;
			end = memmem(p + scanned, have - scanned, "\r\n\r\n", 4);
			if (end != NULL)
				break;
			scanned = have < 3 ? 0 : have - 3;
			if (net_fill(t) != 0)
				return -1;
		}
		/* Status line: HTTP/1.x SSS reason */
		eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		if (eol - p < 12 || strncmp(p, "HTTP/1.", 7) != 0 || (p[7] != '0' && p[7] != '1') ||
		    p[8] != ' ' || p[9] < '1' || p[9] > '5' || p[10] < '0' || p[10] > '9' ||
		    p[11] < '0' || p[11] > '9' || (eol - p > 12 && p[12] != ' ')) {
			thr_fail(t, "%s %s: not an HTTP/1.x status line: \"%.*s\"", what, uri,
			    (int)(eol - p < 80 ? eol - p : 80), p);
			return net_broken(t);
		}
		http10 = p[7] == '0';
		r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
		r->clen = -1;
		r->chunked = false;
		r->close = http10;
		/* Header lines: name: value */
		for (char *l = eol + 2; l < end + 2; l = eol + 2) {
			char *colon, *v, *ve;

			eol = memmem(l, (size_t)(end + 2 - l), "\r\n", 2);
			if (*l == ' ' || *l == '\t')
				continue;            /* obsolete line folding: nothing we need */
			colon = memchr(l, ':', (size_t)(eol - l));
			if (colon == NULL || colon == l) {
				thr_fail(t, "%s %s: a malformed header line: \"%.*s\"", what, uri,
				    (int)(eol - l < 80 ? eol - l : 80), l);
				return net_broken(t);
			}
			for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
				;
			for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
				;
#define HDR_IS(name) ((size_t)(colon - l) == sizeof(name) - 1 && strncasecmp(l, name, sizeof(name) - 1) == 0)
			if (HDR_IS("content-length")) {
				int64_t n = 0;

				if (v == ve)
					goto bad_length;
				for (const char *c = v; c < ve; c++) {
					if (*c < '0' || *c > '9' || n > (INT64_MAX - 9) / 10)
						goto bad_length;
					n = n * 10 + (*c - '0');
				}
				if (r->clen >= 0 && r->clen != n)
					goto bad_length;
				r->clen = n;
			} else if (HDR_IS("transfer-encoding")) {
				if (!http_has_token(v, ve, "identity"))
					r->chunked = true;
			} else if (HDR_IS("connection")) {
				if (http_has_token(v, ve, "close"))
					r->close = true;
				else if (http_has_token(v, ve, "keep-alive"))
					r->close = false;
			}
#undef HDR_IS
		}
		t->rpos = (size_t)(end + 4 - t->rbuf);
		if (r->status >= 200 || r->status == 101)
			break;
	}
	/* No body by definition; a body without a length we cannot frame. */
	if (r->status == 204 || r->status == 304)
		r->clen = 0;
	if (r->chunked) {
		thr_fail(t, "%s %s: HTTP %d with Transfer-Encoding (loadgen reads Content-Length bodies only)",
		    what, uri, r->status);
		return net_broken(t);
	}
	if (r->clen < 0 && !r->close) {
		thr_fail(t, "%s %s: HTTP %d without Content-Length", what, uri, r->status);
		return net_broken(t);
	}
	return 0;
bad_length:
	thr_fail(t, "%s %s: a bad Content-Length", what, uri);
	return net_broken(t);
}

/* Drops n body bytes (-1: until the server closes); 0, or -1 (broken). */
static int
http_skip(thr_t *t, int64_t n)
{
	while (n != 0) {
		size_t have = t->rlen - t->rpos, k;
		ssize_t got;

		if (have == 0) {
			do
				got = read(t->mfd, t->rbuf, MC_RBUF);
			while (got < 0 && errno == EINTR);
			if (got == 0 && n < 0)
				return 0;
			if (got <= 0) {
				thr_fail(t, "http: read: %s", got ? strerror(errno) : "connection closed");
				return net_broken(t);
			}
			t->rpos = 0;
			t->rlen = (size_t)got;
			continue;
		}
		k = n >= 0 && (uint64_t)n < have ? (size_t)n : have;
		t->rpos += k;
		if (n > 0)
			n -= (int64_t)k;
	}
	return 0;
}

/* Connects again if the server closed the last connection; 0 or -1. */
static int
http_ready(thr_t *t, const char *what, const char *uri)
{
	if (t->broken) {
		thr_fail(t, "%s %s: the HTTP connection is broken", what, uri);
		return -1;
	}
	if (t->mfd < 0 && net_dial(t) != 0)
		return net_broken(t);
	return 0;
}

/*
 * n GETs (pipelined in one write when n > 1; URIs may repeat); gots[i]:
 * the bytes of object i consumed and checked as key ks[i]'s, or -1. Status
 * 200 and a Content-Length of the object size are required.
 */
static void
http_get(thr_t *t, unsigned n, const char *const *uris, const uint32_t *ks, int64_t *gots)
{
	size_t len = 0;
	unsigned i;

	for (i = 0; i < n; i++)
		gots[i] = -1;
	if (http_ready(t, "GET", uris[0]) != 0)
		return;
	for (i = 0; i < n; i++) {
		size_t ul = strlen(uris[i]);

		memcpy(t->cmd + len, "GET ", 4);
		memcpy(t->cmd + len + 4, uris[i], ul);
		len += 4 + ul;
		memcpy(t->cmd + len, HTTP_GET_TAIL, sizeof(HTTP_GET_TAIL) - 1);
		len += sizeof(HTTP_GET_TAIL) - 1;
	}
	if (net_write(t, &(struct iovec){ .iov_base = t->cmd, .iov_len = len }, 1) != 0)
		return;
	for (i = 0; i < n; i++) {
		http_resp_t r;

		if (http_head(t, "GET", uris[i], &r) != 0)
			return;
		if (r.status != 200 || r.clen != (int64_t)obj_size) {
			if (r.status != 200)
				thr_fail(t, "GET %s: HTTP %d%s", uris[i], r.status,
				    r.status == 404 ? " (not found)" : "");
			else if (r.clen < 0)
				thr_fail(t, "GET %s: HTTP 200 without Content-Length", uris[i]);
			else
				thr_fail(t, "GET %s: object of %" PRId64 " bytes, expected %" PRIu64, uris[i],
				    r.clen, obj_size);
			if (http_skip(t, r.clen) != 0)
				return;
		} else {
			if (net_read(t, t->buf, (size_t)obj_size) != 0)
				return;
			t->sink += touch(t->buf, obj_size);
			gots[i] = check_obj(t, uris[i], ks[i], t->buf, obj_size);
		}
		if (r.close) {
			/* The next request connects again. */
			net_hangup(t);
			if (i + 1 < n)
				thr_fail(t, "GET %s: the server closed the connection with requests pending",
				    uris[i + 1]);
			return;
		}
	}
}

/* PUT of len bytes at uri (Content-Length); a 2xx answer is success. */
static int
http_put(thr_t *t, const char *uri, const void *data, size_t len)
{
	char head[HTTP_REQ_MAX];
	struct iovec iov[2];
	http_resp_t r;

	if (http_ready(t, "PUT", uri) != 0)
		return -1;
	iov[0].iov_base = head;
	iov[0].iov_len = (size_t)snprintf(head, sizeof(head),
	    "PUT %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: %zu\r\n\r\n", uri, len);
	iov[1].iov_base = (void *)data;
	iov[1].iov_len = len;
	if (net_write(t, iov, len > 0 ? 2 : 1) != 0 || http_head(t, "PUT", uri, &r) != 0 ||
	    http_skip(t, r.clen) != 0)
		return -1;
	if (r.close)
		net_hangup(t);
	if (r.status < 200 || r.status > 299) {
		thr_fail(t, "PUT %s: HTTP %d", uri, r.status);
		return -1;
	}
	return 0;
}

/* ---- GET and PUT through either driver -------------------------------------- */

/* One GET of t->uri: the bytes consumed, or -1. */
static int64_t
do_get(thr_t *t)
{
	int64_t got;

	if (driver == DRV_MEMCACHED) {
		const char *key = t->uri;

		mc_get(t, 1, &key, &t->key, &got);
		return got;
	}
	if (driver == DRV_HTTP) {
		const char *uri = t->uri;

		http_get(t, 1, &uri, &t->key, &got);
		return got;
	}
	switch (mode) {
	case OM_MODE_AUTO: {
		om_object_t o;

		if (om_client_get(t->c, t->uri, OM_MODE_AUTO, 0, &o) != 0)
			break;
		if (o.fd >= 0) {
			got = consume_fd(t, t->uri, o.fd, o.len);
			if (got >= 0)
				got = check_obj(t, t->uri, t->key, t->buf, (uint64_t)got);
		} else {
			t->sink += touch(o.data, o.len);
			got = check_obj(t, t->uri, t->key, o.data, o.len);
		}
		om_object_free(&o);
		return got;
	}
	case OM_MODE_FDPASS: {
		om_info_t info;
		int fd;

		if (om_client_get_fd(t->c, t->uri, &fd, &info) != 0)
			break;
		got = consume_fd(t, t->uri, fd, info.size);
		close(fd);
		return got < 0 ? got : check_obj(t, t->uri, t->key, t->buf, (uint64_t)got);
	}
	default: {
		om_info_t info;
		size_t len;

		if (om_client_get_buf(t->c, t->uri, mode, t->buf, obj_size, &len, &info) != 0)
			break;
		t->sink += touch(t->buf, len);
		return check_obj(t, t->uri, t->key, t->buf, len);
	}
	}
	thr_fail(t, "GET %s: %s", t->uri, om_client_message(t->c));
	return -1;
}

/* A PUT of t->uri: the object replaced (or, preloading, created). */
static int64_t
do_put(thr_t *t, bool preloading)
{
	int rc;

	/* Fresh bytes for every version. */
	stamp(t->put_data, obj_size, t->key,
	    preloading ? 0 : (uint32_t)((uint64_t)(t->no + 1) << 20 ^ ++t->puts_done));
	if (driver == DRV_MEMCACHED)
		return mc_set(t, t->uri, t->put_data, (size_t)obj_size);
	if (driver == DRV_HTTP)
		return http_put(t, t->uri, t->put_data, (size_t)obj_size);
	rc = om_client_put(t->c, t->uri, t->put_data, obj_size, NULL, NULL);
	if (rc != 0) {
		thr_fail(t, "PUT %s: %s", t->uri, om_client_message(t->c));
		return -1;
	}
	return 0;
}

static void
account(thr_t *t, uint64_t t0, uint64_t t1, bool put, int64_t got, uint64_t t_measure, uint64_t t_end)
{
	slot_sh_t *s = t->s;

	s->ops_all++;
	if (got < 0 && ++s->errors_all >= 100 && s->errors_all * 100 > s->ops_all)
		__atomic_store_n(&shm->abort, 1, __ATOMIC_RELAXED);
	if (t1 < t_measure || t1 >= t_end)
		return;
	s->hist[hist_index(t1 - t0)]++;
	if (put)
		s->puts++;
	else
		s->gets++;
	if (got < 0)
		s->errors++;
	else if (!put)
		s->bytes += (uint64_t)got;
}

static bool
is_put(thr_t *t)
{
	return put_pct > 0 && rnd_next(&t->rng) % 100 < put_pct;
}

static void
run_single(thr_t *t, uint64_t t_measure, uint64_t t_end)
{
	for (;;) {
		bool put;
		uint64_t t0, t1;
		int64_t got;

		/* A PUT replaces one of the keys the GETs read, drawn alike. */
		t->key = key_draw(&t->rng);
		key_set(t->digits, t->key);
		put = is_put(t);
		t0 = now_ns();
		got = put ? do_put(t, false) : do_get(t);
		t1 = now_ns();
		account(t, t0, t1, put, got, t_measure, t_end);
		if (t1 >= t_end || __atomic_load_n(&shm->abort, __ATOMIC_RELAXED))
			return;
	}
}

/* A batch's object i, key k: the bytes consumed, or -1. */
static int64_t
consume_obj(thr_t *t, const char *uri, uint32_t k, int rc, int rci, om_object_t *o)
{
	int64_t got;

	if (rc != 0 || rci != 0) {
		thr_fail(t, "GET %s: %s", uri, rc != 0 ? om_client_message(t->c) : om_client_strerror(rci));
		return -1;
	}
	if (o->fd >= 0) {
		got = consume_fd(t, uri, o->fd, o->len);
		return got < 0 ? got : check_obj(t, uri, k, t->buf, (uint64_t)got);
	}
	t->sink += touch(o->data, o->len);
	return check_obj(t, uri, k, o->data, o->len);
}

/*
 * -b: GETs in pipelined batches (memcached: one "get" line of many keys;
 * HTTP: the requests in one write, the responses read in order); a batch's
 * time counts for each of its GETs.
 */
static void
run_batch(thr_t *t, uint64_t t_measure, uint64_t t_end)
{
	size_t plen = strlen(prefix);
	char (*uris)[URI_CAP] = calloc(batch, URI_CAP);
	const char **up = calloc(batch, sizeof(*up));
	om_object_t *objs = calloc(batch, sizeof(*objs));
	int *rcs = calloc(batch, sizeof(*rcs));
	int64_t *gots = calloc(batch, sizeof(*gots));
	uint32_t *puts = calloc(batch, sizeof(*puts));
	uint32_t *ks = calloc(batch, sizeof(*ks));

	if (uris == NULL || up == NULL || objs == NULL || rcs == NULL || gots == NULL || puts == NULL ||
	    ks == NULL) {
		thr_fail(t, "out of memory");
		__atomic_store_n(&shm->abort, 1, __ATOMIC_RELAXED);
		goto out;
	}
	for (unsigned i = 0; i < batch; i++) {
		memcpy(uris[i], prefix, plen);
		uris[i][plen + 8] = '\0';
		up[i] = uris[i];
	}
	for (;;) {
		unsigned n = 0, np = 0;
		uint64_t t0, t1;

		/* The mix is drawn per operation; PUTs go one by one after the batch. */
		for (unsigned i = 0; i < batch; i++) {
			uint32_t k = key_draw(&t->rng);

			if (is_put(t)) {
				puts[np++] = k;
			} else {
				ks[n] = k;
				key_set(uris[n++] + plen, k);
			}
		}
		if (n > 0 && driver != DRV_OBJMAPPER) {
			t0 = now_ns();
			if (driver == DRV_MEMCACHED)
				mc_get(t, n, up, ks, gots);
			else
				http_get(t, n, up, ks, gots);
			t1 = now_ns();
			for (unsigned i = 0; i < n; i++)
				account(t, t0, t1, false, gots[i], t_measure, t_end);
		} else if (n > 0) {
			int rc;

			t0 = now_ns();
			rc = om_client_get_batch(t->c, n, up, mode, 0, objs, rcs);
			for (unsigned i = 0; i < n; i++) {
				gots[i] = consume_obj(t, up[i], ks[i], rc, rcs[i], &objs[i]);
				om_object_free(&objs[i]);
			}
			t1 = now_ns();
			for (unsigned i = 0; i < n; i++)
				account(t, t0, t1, false, gots[i], t_measure, t_end);
		}
		for (unsigned i = 0; i < np; i++) {
			int64_t got;

			t->key = puts[i];
			key_set(t->digits, t->key);
			t0 = now_ns();
			got = do_put(t, false);
			t1 = now_ns();
			account(t, t0, t1, true, got, t_measure, t_end);
		}
		if (now_ns() >= t_end || __atomic_load_n(&shm->abort, __ATOMIC_RELAXED))
			break;
	}
out:
	free(uris);
	free(up);
	free(objs);
	free(rcs);
	free(gots);
	free(puts);
	free(ks);
}

static void *
thr_main(void *arg)
{
	thr_t *t = arg;
	uint64_t t_measure, t_end;
	int rc;

	if (driver != DRV_OBJMAPPER) {
		if (net_connect(t) != 0)
			goto failed;
	} else if ((rc = om_client_connect(sock_path, connect_flags, &t->c)) != 0) {
		/* The library's message names the socket. */
		thr_fail(t, "%s", t->c ? om_client_message(t->c) : om_client_strerror(rc));
		goto failed;
	} else if (!(om_client_caps(t->c)->modes & (1u << mode))) {
		thr_fail(t, "%s does not support mode %s", sock_path, mode_names[mode]);
		goto failed;
	}
	if ((t->buf = buf_alloc(obj_size)) == NULL) {
		thr_fail(t, "out of memory for the buffers");
		goto failed;
	}
	if (put_pct > 0 || preload) {
		if ((t->put_data = buf_alloc(obj_size)) == NULL) {
			thr_fail(t, "out of memory for the buffers");
			goto failed;
		}
		fill_random(t->put_data, obj_size, t->rng);
	}
	if (preload) {
		/* Every thread puts its share of the keys. */
		for (uint32_t k = t->no; k < nkeys; k += nconns) {
			t->key = k;
			key_set(t->digits, k);
			if (do_put(t, true) != 0)
				goto failed;
		}
	}
	__atomic_add_fetch(&shm->ready, 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&shm->go, __ATOMIC_ACQUIRE) == GO_WAIT)
		nanosleep(&(struct timespec){ .tv_nsec = 200000 }, NULL);
	if (__atomic_load_n(&shm->go, __ATOMIC_ACQUIRE) != GO_RUN)
		goto out;
	t_measure = shm->t_measure;
	t_end = shm->t_end;
	if (batch > 1)
		run_batch(t, t_measure, t_end);
	else
		run_single(t, t_measure, t_end);
	t->s->sink = t->sink;
	goto out;
failed:
	__atomic_add_fetch(&shm->failed, 1, __ATOMIC_RELEASE);
out:
	om_client_close(t->c);
	net_close(t);
	return NULL;
}

/* A client process: its share of the connections, one thread each. */
static void
child(unsigned p)
{
	unsigned n = 0;
	size_t plen = strlen(prefix);
	pthread_t *tids = calloc(nconns, sizeof(*tids));
	thr_t *thr = calloc(nconns, sizeof(*thr));
	pthread_attr_t attr;

	if (tids == NULL || thr == NULL)
		die("out of memory");
	/* Thousands of connections must not reserve 8 MiB of stack each. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 256 << 10);
	if (ncpus > 0) {
		cpu_set_t set;

		CPU_ZERO(&set);
		CPU_SET(cpus[p % (unsigned)ncpus], &set);
		if (sched_setaffinity(0, sizeof(set), &set) != 0)
			die("sched_setaffinity(CPU %d): %s", cpus[p % (unsigned)ncpus], strerror(errno));
	}
	for (unsigned i = p; i < nconns; i += nprocs, n++) {
		thr_t *t = &thr[n];

		t->no = i;
		t->s = &shm->slots[i];
		t->mfd = -1;
		t->rng = (now_ns() ^ ((uint64_t)getpid() << 32) ^ ((uint64_t)i * 0x9e3779b97f4a7c15ull)) | 1;
		memcpy(t->uri, prefix, plen);
		t->digits = t->uri + plen;
		t->uri[plen + 8] = '\0';
		if (pthread_create(&tids[n], &attr, thr_main, t) != 0)
			die("pthread_create failed");
	}
	for (unsigned i = 0; i < n; i++)
		pthread_join(tids[i], NULL);
	_exit(0);
}

/* ---- options and results ---------------------------------------------------- */

static uint64_t
parse_size(const char *s, const char *opt)
{
	char *end;
	uint64_t v;

	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || end == s)
		die("%s: not a size: %s", opt, s);
	switch (*end) {
	case 'k': case 'K': v <<= 10; end++; break;
	case 'm': case 'M': v <<= 20; end++; break;
	case 'g': case 'G': v <<= 30; end++; break;
	default: break;
	}
	if (*end == 'i' && end[1] == 'B')
		end += 2;
	else if (*end == 'B')
		end++;
	if (*end != '\0')
		die("%s: not a size: %s", opt, s);
	return v;
}

static unsigned
parse_uint(const char *s, const char *opt, unsigned lo, unsigned hi)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("%s: a number from %u to %u, not %s", opt, lo, hi, s);
	return (unsigned)v;
}

/* "0-1,3" */
static void
parse_cpus(const char *s)
{
	const char *p = s;

	while (*p) {
		char *end;
		long a = strtol(p, &end, 10), b;

		if (end == p || a < 0 || a >= CPU_SETSIZE)
			die("-C: not a CPU list: %s", s);
		b = a;
		p = end;
		if (*p == '-') {
			b = strtol(p + 1, &end, 10);
			if (end == p + 1 || b < a || b >= CPU_SETSIZE)
				die("-C: not a CPU list: %s", s);
			p = end;
		}
		for (long c = a; c <= b && ncpus < CPU_SETSIZE; c++)
			cpus[ncpus++] = (int)c;
		if (*p == ',')
			p++;
		else if (*p != '\0')
			die("-C: not a CPU list: %s", s);
	}
	if (ncpus == 0)
		die("-C: empty CPU list");
}

static const char *
size_text(uint64_t v, char *buf, size_t n)
{
	if (v >= (1u << 30) && v % (1u << 30) == 0)
		snprintf(buf, n, "%" PRIu64 "G", v >> 30);
	else if (v >= (1u << 20) && v % (1u << 20) == 0)
		snprintf(buf, n, "%" PRIu64 "M", v >> 20);
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(buf, n, "%" PRIu64 "K", v >> 10);
	else
		snprintf(buf, n, "%" PRIu64, v);
	return buf;
}

static void
usage(void)
{
	fprintf(stderr,
	    "usage: loadgen -s SOCKET [options]       measure\n"
	    "       loadgen --prepare-dir DIR [-k KEYS] [-z SIZE] [-u PREFIX]\n"
	    "  -s ADDRESS     the server: a Unix socket path, tcp://HOST:PORT or udp://HOST:PORT;\n"
	    "                 memcached:PATH or memcached://HOST:PORT for memcached's text protocol;\n"
	    "                 http:PATH or http://HOST:PORT for HTTP/1.1 (GET and PUT of PREFIX + key)\n"
	    "  -m MODE        auto, fdpass, copy or splice (default fdpass; not with memcached or http)\n"
	    "  -c N           connections, one thread each (default 1)\n"
	    "  -p M           client processes the connections are spread over (default 1)\n"
	    "  -k KEYS        distinct keys, chosen uniformly unless -Z (default 1000)\n"
	    "  -Z S           Zipf-distributed keys: rank r drawn with weight 1/(r+1)^S (e.g. 0.99)\n"
	    "  -z SIZE        object size, K/M/G suffixes (default 4K)\n"
	    "  -d SECONDS     measured duration, after a warm-up of 10%% (>= 0.2 s) (default 5)\n"
	    "  -w PERCENT     PUTs in the mix, 0-100, each replacing a key the GETs read (default 0)\n"
	    "  -P             preload: PUT (memcached: set) every key through the server first\n"
	    "  --prepare-dir DIR  write the objects as files for floor_server, then measure\n"
	    "                 if -s is given, else exit\n"
	    "  -u PREFIX      URI prefix; key i is PREFIX + 8-digit i (default /bench/)\n"
	    "  -C CPUS        pin client process i to the i-th CPU of the list (e.g. 1 or 0-1)\n"
	    "  -b BATCH       GETs per om_client_get_batch call, per memcached \"get\" line, or\n"
	    "                 pipelined HTTP requests per write (default 1: om_client_get*)\n"
	    "  -j             print one JSON line instead of the table\n"
	    "  --private      do not promise offset reads: every descriptor must be a\n"
	    "                 private open file description (no shared descriptions)\n");
	exit(2);
}

/*
 * -s memcached:PATH or memcached://HOST:PORT, http:PATH or http://HOST:PORT
 * (an IPv6 HOST in brackets); a is what follows "memcached:" or "http:".
 */
static void
net_parse(int drv, const char *a)
{
	const char *name = drv == DRV_HTTP ? "http" : "memcached";
	size_t plen = strlen(prefix);

	driver = drv;
	if (mode_set || private_set)
		die("-s %s: %s takes neither -m nor --private", sock_path, name);
	if (drv == DRV_MEMCACHED && plen + 8 > MC_KEY_MAX)
		die("-u: memcached keys are at most %d bytes", MC_KEY_MAX);
	if (drv == DRV_HTTP && prefix[0] != '/')
		die("-u: an HTTP request target starts with /");
	for (size_t i = 0; i < plen; i++)
		if ((unsigned char)prefix[i] <= ' ' || prefix[i] == 0x7f)
			die("-u: %s hold no spaces or control characters",
			    drv == DRV_HTTP ? "URIs" : "memcached keys");
	if (strncmp(a, "//", 2) == 0) {
		char *colon;

		a += 2;
		if ((net_host = strdup(*a == '[' ? a + 1 : a)) == NULL)
			die("out of memory");
		colon = strrchr(net_host, ':');
		if (colon == NULL || colon[1] == '\0' || colon == net_host)
			die("-s %s: %s://HOST:PORT", sock_path, name);
		*colon = '\0';
		net_port = colon + 1;
		if (*a == '[') {
			if (colon[-1] != ']')
				die("-s %s: %s://[IPV6]:PORT", sock_path, name);
			colon[-1] = '\0';
		}
		return;
	}
	if (*a == '\0' || strlen(a) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		die("-s %s: %s:PATH, a Unix socket path of at most %zu bytes", sock_path, name,
		    sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
	net_path = a;
}

/* The mode column: memcached and HTTP have one way to GET. */
static const char *
mode_label(void)
{
	return driver == DRV_MEMCACHED ? "mc" : driver == DRV_HTTP ? "http" : mode_names[mode];
}

static void
report(double secs)
{
	uint64_t *h = calloc(HIST_BUCKETS, sizeof(*h));
	uint64_t gets = 0, puts = 0, errors = 0, bytes = 0, ops_all = 0, errors_all = 0, n;
	double p50, p99, p999, ops_s, mb_s;
	char sz[32], zs[32];

	if (h == NULL)
		die("out of memory");
	for (unsigned i = 0; i < nconns; i++) {
		slot_sh_t *s = &shm->slots[i];

		gets += s->gets;
		puts += s->puts;
		errors += s->errors;
		bytes += s->bytes;
		ops_all += s->ops_all;
		errors_all += s->errors_all;
		for (unsigned b = 0; b < HIST_BUCKETS; b++)
			h[b] += s->hist[b];
	}
	if (errors_all * 100 > ops_all || shm->abort) {
		const char *first = "";

		for (unsigned i = 0; i < nconns && *first == '\0'; i++)
			first = shm->slots[i].err;
		free(h);
		die("aborted: %" PRIu64 " of %" PRIu64 " operations failed (%.1f%%); first: %s",
		    errors_all, ops_all, ops_all ? 100.0 * (double)errors_all / (double)ops_all : 0.0,
		    first);
	}
	n = gets + puts;
	p50 = hist_quantile(h, n, 0.50) / 1e3;
	p99 = hist_quantile(h, n, 0.99) / 1e3;
	p999 = hist_quantile(h, n, 0.999) / 1e3;
	ops_s = (double)n / secs;
	mb_s = (double)bytes / secs / 1e6;
	size_text(obj_size, sz, sizeof(sz));
	if (zipf_s > 0)
		snprintf(zs, sizeof(zs), "%.3g", zipf_s);
	else
		snprintf(zs, sizeof(zs), "unif");
	if (json) {
		printf("{\"server\":\"%s\",\"connections\":%u,\"processes\":%u,\"mode\":\"%s\",\"size\":%"
		    PRIu64 ",\"batch\":%u,\"put_percent\":%u,\"keys\":%u,\"zipf\":%g,\"duration_s\":%.3f"
		    ",\"gets\":%" PRIu64 ",\"puts\":%" PRIu64 ",\"ops_per_s\":%.1f,\"mb_per_s\":%.1f"
		    ",\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"errors\":%" PRIu64 "}\n",
		    driver == DRV_MEMCACHED ? "memcached" : driver == DRV_HTTP ? "http" : "objmapper", nconns, nprocs, mode_label(), obj_size,
		    batch, put_pct, nkeys, zipf_s, secs, gets, puts, ops_s, mb_s, p50, p99, p999, errors);
	} else {
		printf("| conns | procs | mode   |  size | batch | put%% |      keys | zipf |      ops/s |     MB/s |"
		    "  p50 us |  p99 us | p999 us | errors |\n");
		printf("|------:|------:|--------|------:|------:|-----:|----------:|-----:|-----------:|---------:|"
		    "--------:|--------:|--------:|-------:|\n");
		printf("| %5u | %5u | %-6s | %5s | %5u | %4u | %9u | %4s | %10.0f | %8.1f | %7.1f | %7.1f |"
		    " %7.1f | %6" PRIu64 " |\n", nconns, nprocs, mode_label(), sz, batch, put_pct,
		    nkeys, zs, ops_s, mb_s, p50, p99, p999, errors);
	}
	if (errors > 0) {
		for (unsigned i = 0; i < nconns; i++)
			if (shm->slots[i].err[0]) {
				fprintf(stderr, "loadgen: %" PRIu64 " errors; first: %s\n", errors,
				    shm->slots[i].err);
				break;
			}
	}
	free(h);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "prepare-dir", required_argument, NULL, 'D' },
		{ "private", no_argument, NULL, 'O' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	size_t shm_len;
	pid_t *pids;
	uint64_t grace;
	double warm;
	int opt, bad = 0;

	while ((opt = getopt_long(argc, argv, "s:m:c:p:k:z:d:w:Pu:C:jb:Z:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': sock_path = optarg; break;
		case 'm':
			mode = -1;
			for (int i = 0; i < 4; i++)
				if (strcmp(optarg, mode_names[i]) == 0)
					mode = i;
			if (mode < 0)
				die("-m: auto, fdpass, copy or splice, not %s", optarg);
			mode_set = true;
			break;
		case 'c': nconns = parse_uint(optarg, "-c", 1, CONNS_MAX); break;
		case 'p': nprocs = parse_uint(optarg, "-p", 1, CONNS_MAX); break;
		case 'k': nkeys = parse_uint(optarg, "-k", 1, KEYS_MAX); break;
		case 'z': obj_size = parse_size(optarg, "-z"); break;
		case 'd': {
			char *end;

			duration = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(duration > 0) || duration > 86400)
				die("-d: seconds, not %s", optarg);
			break;
		}
		case 'w': put_pct = parse_uint(optarg, "-w", 0, 100); break;
		case 'P': preload = true; break;
		case 'D': prepare_dir = optarg; break;
		case 'O':
			connect_flags &= ~OM_CLIENT_OFFSET_READS;
			private_set = true;
			break;
		case 'u': prefix = optarg; break;
		case 'C': parse_cpus(optarg); break;
		case 'j': json = true; break;
		case 'b': batch = parse_uint(optarg, "-b", 1, BATCH_MAX); break;
		case 'Z': {
			char *end;

			zipf_s = strtod(optarg, &end);
			if (end == optarg || *end != '\0' || !(zipf_s >= 0) || zipf_s > 100)
				die("-Z: an exponent from 0 (uniform) to 100, not %s", optarg);
			break;
		}
		default: bad = 1; break;
		}
	}
	if (bad || optind != argc || (sock_path == NULL && prepare_dir == NULL))
		usage();
	if (strlen(prefix) + 8 >= URI_CAP)
		die("-u: prefix too long");
	if (sock_path != NULL && strncmp(sock_path, "memcached:", 10) == 0)
		net_parse(DRV_MEMCACHED, sock_path + 10);
	else if (sock_path != NULL && strncmp(sock_path, "http:", 5) == 0)
		net_parse(DRV_HTTP, sock_path + 5);
	if (obj_size > SIZE_MAX / 2)
		die("-z: too large");
	/*
	 * The library mallocs every inline body it returns (om_client_get,
	 * om_client_get_batch). Without this, glibc gives 1 MiB bodies back to
	 * the kernel on free and each GET faults its pages in again, so the
	 * client, not the server, is measured.
	 */
	mallopt(M_MMAP_THRESHOLD, 64 << 20);
	mallopt(M_TRIM_THRESHOLD, 512 << 20);
	if (prepare_dir != NULL) {
		prepare_files();
		if (sock_path == NULL)
			return 0;
	}
	if (nprocs > nconns)
		nprocs = nconns;
	if (zipf_s > 0)
		zipf_init();

	shm_len = sizeof(shm_sh_t) + (size_t)nconns * sizeof(slot_sh_t);
	shm = mmap(NULL, shm_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (shm == MAP_FAILED)
		die("mmap(%zu): %s", shm_len, strerror(errno));
	if ((pids = calloc(nprocs, sizeof(*pids))) == NULL)
		die("out of memory");
	signal(SIGPIPE, SIG_IGN);
	fflush(NULL);
	for (unsigned p = 0; p < nprocs; p++) {
		if ((pids[p] = fork()) < 0)
			die("fork: %s", strerror(errno));
		if (pids[p] == 0)
			child(p);
	}

	/* Everyone connected (and preloaded): start together. */
	for (;;) {
		uint32_t ready = __atomic_load_n(&shm->ready, __ATOMIC_ACQUIRE);
		uint32_t failed = __atomic_load_n(&shm->failed, __ATOMIC_ACQUIRE);
		int st;

		if (failed > 0 || waitpid(-1, &st, WNOHANG) > 0) {
			const char *first = "a client process died";

			__atomic_store_n(&shm->go, GO_STOP, __ATOMIC_RELEASE);
			while (wait(NULL) > 0)
				;
			for (unsigned i = 0; i < nconns; i++)
				if (shm->slots[i].err[0]) {
					first = shm->slots[i].err;
					break;
				}
			die("%s", first);
		}
		if (ready == nconns)
			break;
		nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
	}
	warm = duration / 10 < 0.2 ? 0.2 : duration / 10;
	shm->t_measure = now_ns() + (uint64_t)(warm * 1e9);
	shm->t_end = shm->t_measure + (uint64_t)(duration * 1e9);
	__atomic_store_n(&shm->go, GO_RUN, __ATOMIC_RELEASE);
	/* A server that stops answering leaves threads blocked in a read:
	 * past the grace period the processes are killed. */
	grace = shm->t_end + (uint64_t)((duration < 10 ? 10 : duration) * 1e9);
	for (unsigned left = nprocs; left > 0;) {
		pid_t pid;
		int st;

		if ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
			left--;
			if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
				die("a client process %s %d", WIFEXITED(st) ? "exited with" :
				    "was killed by signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
			continue;
		}
		if (pid < 0 && errno != EINTR)
			die("waitpid: %s", strerror(errno));
		if (now_ns() > grace) {
			for (unsigned p = 0; p < nprocs; p++)
				kill(pids[p], SIGKILL);
			die("the server stopped answering: connections still waiting %.0f s after the end",
			    (double)(now_ns() - shm->t_end) / 1e9);
		}
		nanosleep(&(struct timespec){ .tv_nsec = 10000000 }, NULL);
	}
	free(pids);
	report(duration);
	return 0;
}
