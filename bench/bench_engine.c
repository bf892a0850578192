/*
 * Storage-engine benchmark: prints a table of index lookups per second (1
 * and 2 processes, 1,000,000 entries), PUT+publish and GET+open rates of
 * 4 KiB objects on tmpfs, rebuild times, and index bytes per object. Each
 * figure is the median of several runs, with min and max.
 *
 *   bench_engine [--quick] [--runs N] [--dir DIR] [--rebuild N,N,...]
 *   bench_engine --fill DIR OBJECTS SIZE   (objects for bench/compare's restarts)
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "store/om_store.h"

#define URI_LEN 24

static int runs = 3;
static const char *base_dir = "/dev/shm";
static double lookup_secs = 1.0;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
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

static void
key(char *buf, uint64_t i)
{
	snprintf(buf, URI_LEN + 1, "/bench/object/%010" PRIu64, i);
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

typedef struct {
	double v[16];
	int n;
} series_t;

static void
row(const char *what, const char *unit, series_t *s)
{
	qsort(s->v, (size_t)s->n, sizeof(double), cmp_double);
	printf("| %-44s | %14.0f | %14.0f | %14.0f | %-10s |\n", what, s->v[s->n / 2], s->v[0],
	    s->v[s->n - 1], unit);
	fflush(stdout);
}

static void
row_f(const char *what, const char *unit, series_t *s)
{
	qsort(s->v, (size_t)s->n, sizeof(double), cmp_double);
	printf("| %-44s | %14.3f | %14.3f | %14.3f | %-10s |\n", what, s->v[s->n / 2], s->v[0],
	    s->v[s->n - 1], unit);
	fflush(stdout);
}

static void
mkdirs(char *out, size_t n, const char *tag)
{
	snprintf(out, n, "%s/om-bench-%s-%d", base_dir, tag, (int)getpid());
	if (mkdir(out, 0750) != 0 && errno != EEXIST) {
		perror(out);
		exit(1);
	}
}

static void
rmtree(const char *path)
{
	char cmd[1200];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
	if (system(cmd) != 0)
		fprintf(stderr, "warning: could not remove %s\n", path);
}

/* ---- index lookups ----------------------------------------------------- */

static om_index_t *
fill_index(uint32_t n)
{
	/* Promotion on, as a daemon runs with it: reads are counted. */
	om_ix_params_t p = { .capacity = n, .max_uri = 256, .hits_max = 4 };
	om_index_t *ix;
	char k[URI_LEN + 1];

	if (om_index_create(&p, &ix) != 0) {
		fprintf(stderr, "index create failed\n");
		exit(1);
	}
	for (uint32_t i = 0; i < n; i++) {
		om_ix_obj_t o = { .id = om_index_next_id(ix), .size = 4096 };

		key(k, i);
		if (om_index_put(ix, k, URI_LEN, &o, OM_IX_INSERT, NULL) != 0) {
			fprintf(stderr, "index insert failed at %u\n", i);
			exit(1);
		}
	}
	return ix;
}

/*
 * Random existing keys, made before the clock starts (a ring of KEYS_RING
 * keys read in order, so that making keys costs nothing in the loop).
 */
#define KEYS_RING (1u << 20)
#define KEY_STRIDE 32

static char *
make_keys(uint32_t n, uint64_t seed)
{
	char *keys = malloc((size_t)KEYS_RING * KEY_STRIDE);
	uint64_t s = seed | 1;

	if (keys == NULL)
		exit(1);
	for (uint32_t i = 0; i < KEYS_RING; i++)
		key(keys + (size_t)i * KEY_STRIDE, rnd_next(&s) % n);
	return keys;
}

/* Lookups for lookup_secs, one at a time or in batches; returns lookups/s. */
static double
lookup_loop(om_index_t *ix, const char *keys, unsigned flags, unsigned batch, uint32_t at)
{
	uint64_t done = 0, misses = 0;

	double t0 = now_s(), t;

	do {
		for (int i = 0; i < 4096; i += (int)batch) {
			if (batch <= 1) {
				om_ix_obj_t o;

				misses += om_index_lookup(ix, keys + (size_t)at * KEY_STRIDE, URI_LEN, &o, flags) != 0;
			} else {
				const void *u[OM_IX_BATCH_MAX];
				size_t l[OM_IX_BATCH_MAX];
				om_ix_obj_t o[OM_IX_BATCH_MAX];
				int rc[OM_IX_BATCH_MAX];

				for (unsigned j = 0; j < batch; j++) {
					u[j] = keys + (size_t)((at + j) & (KEYS_RING - 1)) * KEY_STRIDE;
					l[j] = URI_LEN;
				}
				om_index_lookup_batch(ix, batch, u, l, o, rc, flags);
				for (unsigned j = 0; j < batch; j++)
					misses += rc[j] != 0;
			}
			at = (at + (batch ? batch : 1)) & (KEYS_RING - 1);
		}
		done += 4096;
		t = now_s();
	} while (t - t0 < lookup_secs);
	if (misses) {
		fprintf(stderr, "unexpected misses: %" PRIu64 "\n", misses);
		exit(1);
	}
	return (double)done / (t - t0);
}

/* Each of `procs` processes runs lookup_loop at once; fills each and total. */
static void
lookup_procs(om_index_t *ix, const char *keys, unsigned batch, int procs, series_t *each,
    series_t *total)
{
	double *res = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t pid[8];
	double sum = 0;

	for (int p = 0; p < procs; p++) {
		pid[p] = fork();
		if (pid[p] == 0) {
			/* Processes read the ring from different points: they
			 * share the index, not a lockstep order of keys. */
			res[p] = lookup_loop(ix, keys, getenv("NOTOUCH") ? 0 : OM_IX_TOUCH, batch, (uint32_t)p * (KEYS_RING / 2));
			_exit(0);
		}
	}
	for (int p = 0; p < procs; p++) {
		waitpid(pid[p], NULL, 0);
		sum += res[p];
	}
	each->v[each->n++] = sum / procs;
	total->v[total->n++] = sum;
	munmap(res, 4096);
}

static void
bench_lookups(uint32_t n)
{
	series_t one = { .n = 0 }, touch = { .n = 0 }, b16 = { .n = 0 };
	series_t two = { .n = 0 }, two_total = { .n = 0 }, two16 = { .n = 0 }, two16_total = { .n = 0 };
	double t0 = now_s();
	om_index_t *ix = fill_index(n);
	double fill_s = now_s() - t0;
	char *keys = make_keys(n, 12345);
	char what[80];

	/* Interleaved, so that a noisy neighbour hits every variant alike. */
	for (int r = 0; r < runs; r++) {
		one.v[one.n++] = lookup_loop(ix, keys, 0, 1, 0);
		touch.v[touch.n++] = lookup_loop(ix, keys, OM_IX_TOUCH, 1, 0);
		b16.v[b16.n++] = lookup_loop(ix, keys, OM_IX_TOUCH, 16, 0);
		lookup_procs(ix, keys, 1, 2, &two, &two_total);
		lookup_procs(ix, keys, 16, 2, &two16, &two16_total);
	}
	snprintf(what, sizeof(what), "index insert (%u entries, 1 process)", n);
	{
		series_t f = { .n = 1 };

		f.v[0] = n / fill_s;
		row(what, "ops/s", &f);
	}
	row("lookup, 1 process", "ops/s", &one);
	row("lookup + touch (as GET does), 1 process", "ops/s", &touch);
	row("lookup + touch, batches of 16, 1 process", "ops/s", &b16);
	row("lookup + touch, 2 processes: each", "ops/s", &two);
	row("lookup + touch, 2 processes: total", "ops/s", &two_total);
	row("lookup + touch, batches of 16, 2 procs: each", "ops/s", &two16);
	row("lookup + touch, batches of 16, 2 procs: total", "ops/s", &two16_total);
	free(keys);
	om_index_close(ix);
}

/* ---- store: PUT and GET ------------------------------------------------ */

static om_store_t *
open_store(om_index_t *ix, const char *mem, const char *disk)
{
	om_store_params_t p = { .mem = { mem, 0 }, .disk = { disk, 0 } };
	char err[256];
	om_store_t *st;

	if (om_store_open(&p, ix, &st, err, sizeof(err)) != 0) {
		fprintf(stderr, "store open: %s\n", err);
		exit(1);
	}
	return st;
}

static void
bench_put_get(uint32_t n)
{
	series_t put = { .n = 0 }, get = { .n = 0 }, get_meta = { .n = 0 }, put_eph = { .n = 0 };
	static char data[4096];

	memset(data, 'd', sizeof(data));
	for (int r = 0; r < runs; r++) {
		char mem[512], disk[512], k[URI_LEN + 1];
		om_ix_params_t ip = { .capacity = n * 2, .max_uri = 256 };
		om_put_args_t a = { .size = sizeof(data), .meta = "Content-Type: application/octet-stream",
			.meta_len = 38 };
		om_index_t *ix;
		om_store_t *st;
		uint64_t s = 5;
		double t0;

		mkdirs(mem, sizeof(mem), "mem");
		mkdirs(disk, sizeof(disk), "disk");
		if (om_index_create(&ip, &ix) != 0)
			exit(1);
		st = open_store(ix, mem, disk);
		t0 = now_s();
		for (uint32_t i = 0; i < n; i++) {
			key(k, i);
			if (om_store_put(st, k, URI_LEN, data, &a, NULL) != 0) {
				fprintf(stderr, "put failed\n");
				exit(1);
			}
		}
		put.v[put.n++] = n / (now_s() - t0);
		a.flags = OM_STORE_EPHEMERAL;
		t0 = now_s();
		for (uint32_t i = 0; i < n; i++) {
			key(k, n + i);
			if (om_store_put(st, k, URI_LEN, data, &a, NULL) != 0)
				exit(1);
		}
		put_eph.v[put_eph.n++] = n / (now_s() - t0);
		t0 = now_s();
		for (uint32_t i = 0; i < n; i++) {
			om_get_t g;

			key(k, rnd_next(&s) % n);
			if (om_store_get(st, k, URI_LEN, 0, &g) != 0)
				exit(1);
			close(g.fd);
		}
		get.v[get.n++] = n / (now_s() - t0);
		t0 = now_s();
		for (uint32_t i = 0; i < n; i++) {
			om_get_t g;
			char meta[128];
			uint32_t ml;

			key(k, rnd_next(&s) % n);
			if (om_store_get(st, k, URI_LEN, 0, &g) != 0 ||
			    om_store_read_meta(st, &g, meta, sizeof(meta), &ml, NULL) != 0)
				exit(1);
			close(g.fd);
		}
		get_meta.v[get_meta.n++] = n / (now_s() - t0);
		om_store_close(st);
		om_index_close(ix);
		rmtree(mem);
		rmtree(disk);
	}
	row("PUT+publish 4 KiB, tmpfs, no fsync", "ops/s", &put);
	row("PUT+publish 4 KiB, ephemeral (memory tier)", "ops/s", &put_eph);
	row("GET: lookup + open descriptor + close", "ops/s", &get);
	row("GET + read metadata (HTTP headers)", "ops/s", &get_meta);
}

/* ---- rebuild ----------------------------------------------------------- */

static void
bench_rebuild(uint32_t n)
{
	char mem[512], disk[512], k[URI_LEN + 1], what[80];
	om_ix_params_t ip = { .capacity = n + n / 4, .max_uri = 256 };
	om_put_args_t a = { .size = 100 };
	series_t secs = { .n = 0 }, rate = { .n = 0 };
	static char data[100];
	om_index_t *ix;
	om_store_t *st;
	double t0;

	mkdirs(mem, sizeof(mem), "rb-mem");
	mkdirs(disk, sizeof(disk), "rb-disk");
	if (om_index_create(&ip, &ix) != 0)
		exit(1);
	st = open_store(ix, mem, disk);
	t0 = now_s();
	for (uint32_t i = 0; i < n; i++) {
		key(k, i);
		if (om_store_put(st, k, URI_LEN, data, &a, NULL) != 0) {
			fprintf(stderr, "put failed at %u\n", i);
			exit(1);
		}
	}
	fprintf(stderr, "  (%u objects written in %.1f s)\n", n, now_s() - t0);
	for (int r = 0; r < runs; r++) {
		om_rebuild_stats_t rs;

		om_store_close(st);
		om_index_close(ix);
		if (om_index_create(&ip, &ix) != 0)
			exit(1);
		st = open_store(ix, mem, disk);
		if (om_store_rebuild(st, &rs) != 0 || rs.objects != n) {
			fprintf(stderr, "rebuild failed: %" PRIu64 " objects\n", rs.objects);
			exit(1);
		}
		secs.v[secs.n++] = rs.seconds;
		rate.v[rate.n++] = n / rs.seconds;
	}
	snprintf(what, sizeof(what), "rebuild %u objects, tmpfs", n);
	row_f(what, "seconds", &secs);
	snprintf(what, sizeof(what), "rebuild %u objects, tmpfs", n);
	row(what, "objects/s", &rate);
	om_store_close(st);
	om_index_close(ix);
	rmtree(mem);
	rmtree(disk);
}

/* ---- scrub ------------------------------------------------------------ */

/*
 * A full scrub pass over n objects of 4 KiB, unthrottled (what the disk
 * and the CPU allow: the ceiling of [cache] scrub_rate), and how long a
 * pass takes at the default rate of 8 MiB/s (each object counting 4 KiB).
 */
static void
bench_scrub(uint32_t n)
{
	char mem[512], disk[512], k[URI_LEN + 1], what[80];
	om_ix_params_t ip = { .capacity = n + n / 4, .max_uri = 256 };
	om_put_args_t a = { .size = 4096 };
	series_t secs = { .n = 0 }, rate = { .n = 0 }, mbs = { .n = 0 }, at_default = { .n = 0 };
	static char data[4096];
	om_index_t *ix;
	om_store_t *st;

	mkdirs(mem, sizeof(mem), "sc-mem");
	mkdirs(disk, sizeof(disk), "sc-disk");
	if (om_index_create(&ip, &ix) != 0)
		exit(1);
	st = open_store(ix, mem, disk);
	memset(data, 'x', sizeof(data));
	for (uint32_t i = 0; i < n; i++) {
		key(k, i);
		if (om_store_put(st, k, URI_LEN, data, &a, NULL) != 0) {
			fprintf(stderr, "put failed at %u\n", i);
			exit(1);
		}
	}
	for (int r = 0; r < runs; r++) {
		uint64_t before = om_store_stats(st)->scrubbed, used = 0;
		uint32_t cursor = 0;
		double t0 = now_s(), dt;

		if (om_store_scrub(st, &cursor, UINT64_MAX, &used) != 1 ||
		    om_store_stats(st)->scrubbed - before != n) {
			fprintf(stderr, "scrub: %" PRIu64 " of %u objects checked\n",
			    om_store_stats(st)->scrubbed - before, n);
			exit(1);
		}
		dt = now_s() - t0;
		secs.v[secs.n++] = dt;
		rate.v[rate.n++] = n / dt;
		mbs.v[mbs.n++] = (double)n * 4096 / dt / 1e6;
		at_default.v[at_default.n++] = (double)used / (8 << 20);
	}
	snprintf(what, sizeof(what), "scrub pass, %u objects of 4 KiB, tmpfs", n);
	row_f(what, "seconds", &secs);
	row(what, "objects/s", &rate);
	row(what, "MB/s", &mbs);
	snprintf(what, sizeof(what), "scrub pass at scrub_rate = 8M, %u x 4 KiB", n);
	row_f(what, "seconds", &at_default);
	if (om_store_stats(st)->damaged != 0)
		exit(1);
	om_store_close(st);
	om_index_close(ix);
	rmtree(mem);
	rmtree(disk);
}

/*
 * --fill DIR N SIZE: writes N objects of SIZE bytes (URIs /r/00000000 ...)
 * through the store into DIR/memory and DIR/objects, the tiers of an
 * objmapperd whose configuration points there; bench/compare measures the
 * daemon's restart on them (the daemon rebuilds its index from the files
 * whoever wrote them, and this is several times quicker than PUTs over a
 * socket).
 */
static int
fill(const char *dir, uint32_t n, uint32_t size)
{
	char mem[512], disk[512], k[64];
	om_ix_params_t ip = { .capacity = n + n / 4 + 1024, .max_uri = 256 };
	om_put_args_t a = { .size = size };
	char *data = malloc(size ? size : 1);
	om_index_t *ix;
	om_store_t *st;
	double t0 = now_s();

	if (data == NULL)
		return 1;
	memset(data, 'f', size);
	snprintf(mem, sizeof(mem), "%s/memory", dir);
	snprintf(disk, sizeof(disk), "%s/objects", dir);
	if ((mkdir(dir, 0750) != 0 && errno != EEXIST) || (mkdir(mem, 0750) != 0 && errno != EEXIST) ||
	    (mkdir(disk, 0750) != 0 && errno != EEXIST)) {
		perror(dir);
		free(data);
		return 1;
	}
	if (om_index_create(&ip, &ix) != 0) {
		free(data);
		return 1;
	}
	st = open_store(ix, mem, disk);
	for (uint32_t i = 0; i < n; i++) {
		int len = snprintf(k, sizeof(k), "/r/%08" PRIu32, i);

		if (size >= 8)
			memcpy(data, &i, sizeof(i));
		if (om_store_put(st, k, (size_t)len, data, &a, NULL) != 0) {
			fprintf(stderr, "put failed at %u\n", i);
			free(data);
			return 1;
		}
	}
	om_store_close(st);
	om_index_close(ix);
	free(data);
	fprintf(stderr, "%u objects of %u bytes written in %.1f s\n", n, size, now_s() - t0);
	return 0;
}

static void
bench_bytes(void)
{
	om_ix_params_t p = { .capacity = 1000000, .max_uri = 1024 };
	om_index_t *ix;

	if (om_index_create(&p, &ix) != 0)
		exit(1);
	printf("\nIndex bytes per object (1,000,000 capacity): %zu + URI rounded up to 16; "
	    "a %d-byte URI costs %zu (bound: 64 + %d = %d)\n",
	    om_index_object_bytes(ix, 0), URI_LEN, om_index_object_bytes(ix, URI_LEN),
	    (URI_LEN + 15) / 16 * 16, 64 + (URI_LEN + 15) / 16 * 16);
	om_index_close(ix);
}

int
main(int argc, char **argv)
{
	uint32_t lookups_n = 1000000, put_n = 100000, scrub_n = 100000;
	uint32_t rebuilds[4] = { 100000, 1000000 };
	int nrebuilds = 2;

	if (argc == 5 && strcmp(argv[1], "--fill") == 0)
		return fill(argv[2], (uint32_t)strtoul(argv[3], NULL, 10), (uint32_t)strtoul(argv[4], NULL, 10));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--quick") == 0) {
			lookups_n = 100000;
			put_n = 20000;
			rebuilds[0] = 20000;
			nrebuilds = 1;
			scrub_n = 10000;
			lookup_secs = 0.3;
		} else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
			runs = atoi(argv[++i]);
			if (runs < 1 || runs > 15)
				runs = 3;
		} else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
			base_dir = argv[++i];
		} else if (strcmp(argv[i], "--rebuild") == 0 && i + 1 < argc) {
			char *s = argv[++i], *tok;

			nrebuilds = 0;
			while ((tok = strsep(&s, ",")) != NULL && nrebuilds < 4)
				rebuilds[nrebuilds++] = (uint32_t)strtoul(tok, NULL, 10);
		} else {
			fprintf(stderr, "usage: %s [--quick] [--runs N] [--dir DIR] [--rebuild N,N]\n"
			    "       %s --fill DIR OBJECTS SIZE\n", argv[0], argv[0]);
			return 2;
		}
	}
	printf("objmapper storage engine, %ld CPUs, tiers under %s, median of %d runs\n\n",
	    sysconf(_SC_NPROCESSORS_ONLN), base_dir, runs);
	printf("| %-44s | %14s | %14s | %14s | %-10s |\n", "measure", "median", "min", "max", "unit");
	printf("|%s|%s|%s|%s|%s|\n", "----------------------------------------------",
	    "----------------", "----------------", "----------------", "------------");
	bench_lookups(lookups_n);
	bench_put_get(put_n);
	for (int i = 0; i < nrebuilds; i++)
		bench_rebuild(rebuilds[i]);
	bench_scrub(scrub_n);
	bench_bytes();
	return 0;
}
