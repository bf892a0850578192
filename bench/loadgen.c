/*
 * Load generator over libobjmapper: -c connections in -p processes, each
 * connection a thread in a closed loop (send, wait, consume every byte,
 * repeat) for -d seconds; prints ops/s, MB/s and latency percentiles.
 * --prepare-dir writes the objects as files for bench/floor_server.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#define KEYS_MAX     100000000u /* keys are 8 decimal digits */
#define CONNS_MAX    4096
#define BATCH_MAX    1024
#define URI_CAP      (OM_PROTO_URI_MAX + 1)
#define PAGE         4096u

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

static const char *sock_path;
static int mode = OM_MODE_FDPASS;
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

/* Makes the object bytes differ per key and per version. */
static void
stamp(uint8_t *buf, uint64_t len, uint64_t v)
{
	for (uint64_t o = 0; o + sizeof(v) <= len; o += PAGE)
		memcpy(buf + o, &v, sizeof(v));
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
		stamp(data, obj_size, k);
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
	uint8_t *buf;            /* GET: the object's bytes land here */
	uint8_t *put_data;       /* PUT: the bytes sent */
	uint64_t rng;
	uint64_t sink;
	uint64_t puts_done;
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

static int64_t
check_size(thr_t *t, const char *uri, uint64_t size)
{
	if (size != obj_size) {
		thr_fail(t, "GET %s: object of %" PRIu64 " bytes, expected %" PRIu64, uri, size, obj_size);
		return -1;
	}
	return (int64_t)size;
}

/* One GET of t->uri: the bytes consumed, or -1. */
static int64_t
do_get(thr_t *t)
{
	int64_t got;
	int rc;

	switch (mode) {
	case OM_MODE_AUTO: {
		om_object_t o;

		if ((rc = om_client_get(t->c, t->uri, OM_MODE_AUTO, 0, &o)) != 0)
			break;
		if (o.fd >= 0) {
			got = consume_fd(t, t->uri, o.fd, o.len);
		} else {
			t->sink += touch(o.data, o.len);
			got = (int64_t)o.len;
		}
		om_object_free(&o);
		return got < 0 ? got : check_size(t, t->uri, (uint64_t)got);
	}
	case OM_MODE_FDPASS: {
		om_info_t info;
		int fd;

		if ((rc = om_client_get_fd(t->c, t->uri, &fd, &info)) != 0)
			break;
		got = consume_fd(t, t->uri, fd, info.size);
		close(fd);
		return got < 0 ? got : check_size(t, t->uri, (uint64_t)got);
	}
	default: {
		om_info_t info;
		size_t len;

		if ((rc = om_client_get_buf(t->c, t->uri, mode, t->buf, obj_size, &len, &info)) != 0)
			break;
		t->sink += touch(t->buf, len);
		return check_size(t, t->uri, len);
	}
	}
	thr_fail(t, "GET %s: %s", t->uri, om_client_message(t->c));
	return -1;
}

static int64_t
do_put(thr_t *t)
{
	int rc;

	/* Fresh bytes for every version. */
	stamp(t->put_data, obj_size, ((uint64_t)t->no << 40) ^ ++t->puts_done);
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

		key_set(t->digits, (uint32_t)(rnd_next(&t->rng) % nkeys));
		put = is_put(t);
		t0 = now_ns();
		got = put ? do_put(t) : do_get(t);
		t1 = now_ns();
		account(t, t0, t1, put, got, t_measure, t_end);
		if (t1 >= t_end || __atomic_load_n(&shm->abort, __ATOMIC_RELAXED))
			return;
	}
}

/* A batch's object i: the bytes consumed, or -1. */
static int64_t
consume_obj(thr_t *t, const char *uri, int rc, int rci, om_object_t *o)
{
	int64_t got;

	if (rc != 0 || rci != 0) {
		thr_fail(t, "GET %s: %s", uri, rc != 0 ? om_client_message(t->c) : om_client_strerror(rci));
		return -1;
	}
	if (o->fd >= 0) {
		got = consume_fd(t, uri, o->fd, o->len);
	} else {
		t->sink += touch(o->data, o->len);
		got = (int64_t)o->len;
	}
	return got < 0 ? got : check_size(t, uri, (uint64_t)got);
}

/* -b: GETs in pipelined batches; a batch's time counts for each of its GETs. */
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

	if (uris == NULL || up == NULL || objs == NULL || rcs == NULL || gots == NULL || puts == NULL) {
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
			uint32_t k = (uint32_t)(rnd_next(&t->rng) % nkeys);

			if (is_put(t))
				puts[np++] = k;
			else
				key_set(uris[n++] + plen, k);
		}
		if (n > 0) {
			int rc;

			t0 = now_ns();
			rc = om_client_get_batch(t->c, n, up, mode, 0, objs, rcs);
			for (unsigned i = 0; i < n; i++) {
				gots[i] = consume_obj(t, up[i], rc, rcs[i], &objs[i]);
				om_object_free(&objs[i]);
			}
			t1 = now_ns();
			for (unsigned i = 0; i < n; i++)
				account(t, t0, t1, false, gots[i], t_measure, t_end);
		}
		for (unsigned i = 0; i < np; i++) {
			int64_t got;

			key_set(t->digits, puts[i]);
			t0 = now_ns();
			got = do_put(t);
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
}

static void *
thr_main(void *arg)
{
	thr_t *t = arg;
	uint64_t t_measure, t_end;
	int rc;

	rc = om_client_connect(sock_path, connect_flags, &t->c);
	if (rc != 0) {
		/* The library's message names the socket. */
		thr_fail(t, "%s", t->c ? om_client_message(t->c) : om_client_strerror(rc));
		goto failed;
	}
	if (!(om_client_caps(t->c)->modes & (1u << mode))) {
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
			key_set(t->digits, k);
			if (do_put(t) != 0)
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
	    "  -s ADDRESS     the server: a Unix socket path, tcp://HOST:PORT or udp://HOST:PORT\n"
	    "  -m MODE        auto, fdpass, copy or splice (default fdpass)\n"
	    "  -c N           connections, one thread each (default 1)\n"
	    "  -p M           client processes the connections are spread over (default 1)\n"
	    "  -k KEYS        distinct keys, chosen uniformly (default 1000)\n"
	    "  -z SIZE        object size, K/M/G suffixes (default 4K)\n"
	    "  -d SECONDS     measured duration, after a warm-up of 10%% (>= 0.2 s) (default 5)\n"
	    "  -w PERCENT     PUTs in the mix, 0-100 (default 0)\n"
	    "  -P             preload: PUT every key through the server first\n"
	    "  --prepare-dir DIR  write the objects as files for floor_server, then measure\n"
	    "                 if -s is given, else exit\n"
	    "  -u PREFIX      URI prefix; key i is PREFIX + 8-digit i (default /bench/)\n"
	    "  -C CPUS        pin client process i to the i-th CPU of the list (e.g. 1 or 0-1)\n"
	    "  -b BATCH       GETs per om_client_get_batch call (default 1: om_client_get*)\n"
	    "  -j             print one JSON line instead of the table\n"
	    "  --private      do not promise offset reads: every descriptor must be a\n"
	    "                 private open file description (no shared descriptions)\n");
	exit(2);
}

static void
report(double secs)
{
	uint64_t *h = calloc(HIST_BUCKETS, sizeof(*h));
	uint64_t gets = 0, puts = 0, errors = 0, bytes = 0, ops_all = 0, errors_all = 0, n;
	double p50, p99, p999, ops_s, mb_s;
	char sz[32];

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
	if (json) {
		printf("{\"connections\":%u,\"processes\":%u,\"mode\":\"%s\",\"size\":%" PRIu64
		    ",\"batch\":%u,\"put_percent\":%u,\"keys\":%u,\"duration_s\":%.3f,\"gets\":%" PRIu64
		    ",\"puts\":%" PRIu64 ",\"ops_per_s\":%.1f,\"mb_per_s\":%.1f,\"p50_us\":%.1f"
		    ",\"p99_us\":%.1f,\"p999_us\":%.1f,\"errors\":%" PRIu64 "}\n",
		    nconns, nprocs, mode_names[mode], obj_size, batch, put_pct, nkeys, secs, gets, puts,
		    ops_s, mb_s, p50, p99, p999, errors);
	} else {
		printf("| conns | procs | mode   |  size | batch | put%% |      ops/s |     MB/s |"
		    "  p50 us |  p99 us | p999 us | errors |\n");
		printf("|------:|------:|--------|------:|------:|-----:|-----------:|---------:|"
		    "--------:|--------:|--------:|-------:|\n");
		printf("| %5u | %5u | %-6s | %5s | %5u | %4u | %10.0f | %8.1f | %7.1f | %7.1f | %7.1f |"
		    " %6" PRIu64 " |\n", nconns, nprocs, mode_names[mode], sz, batch, put_pct, ops_s, mb_s,
		    p50, p99, p999, errors);
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

	while ((opt = getopt_long(argc, argv, "s:m:c:p:k:z:d:w:Pu:C:jb:h", longopts, NULL)) != -1) {
		switch (opt) {
		case 's': sock_path = optarg; break;
		case 'm':
			mode = -1;
			for (int i = 0; i < 4; i++)
				if (strcmp(optarg, mode_names[i]) == 0)
					mode = i;
			if (mode < 0)
				die("-m: auto, fdpass, copy or splice, not %s", optarg);
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
		case 'O': connect_flags &= ~OM_CLIENT_OFFSET_READS; break;
		case 'u': prefix = optarg; break;
		case 'C': parse_cpus(optarg); break;
		case 'j': json = true; break;
		case 'b': batch = parse_uint(optarg, "-b", 1, BATCH_MAX); break;
		default: bad = 1; break;
		}
	}
	if (bad || optind != argc || (sock_path == NULL && prepare_dir == NULL))
		usage();
	if (strlen(prefix) + 8 >= URI_CAP)
		die("-u: prefix too long");
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
