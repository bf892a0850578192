/*
 * Storage-engine benchmark: prints a table of index lookups per second (1
 * and 2 processes, 1,000,000 entries), PUT+publish and GET+open rates of
 * 4 KiB objects on tmpfs, rebuild times, and index bytes per object. Each
 * figure is the median of several runs, with min and max.
 *
 *   bench_engine [--quick] [--runs N] [--dir DIR] [--rebuild N,N,...]
 *                [--rebuild-size BYTES] [--pack-max BYTES]
 *   bench_engine --fill DIR OBJECTS SIZE [--pack-max BYTES]
 *                                          (objects for bench/compare's restarts)
 *
 * The rebuild is measured for both layouts of small objects, a file each
 * and packs (pack_max 16 KiB as the daemon's default, or --pack-max), with
 * the ratio packed / files of each run; its objects are 100 bytes, or
 * --rebuild-size BYTES (at most pack_max). --fill writes objects as the daemon
 * stores them by default: packed up to 16 KiB, or up to --pack-max BYTES
 * (0: a file each).
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
#include "conf/om_conf.h"
#include "index/om_index.h"
#include "store/om_store.h"

#define URI_LEN 24

static int runs = 3;
static const char *base_dir = "/dev/shm";
static double lookup_secs = 1.0;
/* Packs up to this size for --fill and the rebuild's packed layout: the
 * daemon's default unless --pack-max says otherwise. */
static uint32_t pack_max = OM_CONF_PACK_MAX_DEFAULT;
/* The rebuild's objects: small, so that the rows compare with earlier ones
 * (--rebuild-size for others; a packed object's bytes are read, a file's not). */
static uint32_t rebuild_size = 100;

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

/* tier_pack_max for both tiers: 0, a file per object, or packs up to that size. */
static om_store_t *
open_store(om_index_t *ix, const char *mem, const char *disk, uint32_t tier_pack_max)
{
	om_store_params_t p = { .mem = { .path = mem, .pack_max = tier_pack_max },
		.disk = { .path = disk, .pack_max = tier_pack_max } };
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
		st = open_store(ix, mem, disk, 0);
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

/*
 * The two layouts of small objects: a file each (pack_max 0) and packs
 * (pack_max, the daemon's default unless --pack-max says otherwise).
 */
enum { RB_FILES, RB_PACKED, RB_LAYOUTS };

typedef struct {
	const char *name;
	uint32_t pack_max;
	char mem[512], disk[512];
	om_index_t *ix;
	om_store_t *st;
	series_t secs, rate;
} rb_layout_t;

/* n objects of rebuild_size bytes through the store, left open. */
static void
rb_write(rb_layout_t *l, uint32_t n, const om_ix_params_t *ip, const char *tag)
{
	om_put_args_t a = { .size = rebuild_size };
	char *data = calloc(1, rebuild_size);
	char k[URI_LEN + 1], t[32];
	double t0;

	if (data == NULL)
		exit(1);

	snprintf(t, sizeof(t), "rb-%s-mem", tag);
	mkdirs(l->mem, sizeof(l->mem), t);
	snprintf(t, sizeof(t), "rb-%s-disk", tag);
	mkdirs(l->disk, sizeof(l->disk), t);
	if (om_index_create(ip, &l->ix) != 0)
		exit(1);
	l->st = open_store(l->ix, l->mem, l->disk, l->pack_max);
	t0 = now_s();
	for (uint32_t i = 0; i < n; i++) {
		key(k, i);
		if (om_store_put(l->st, k, URI_LEN, data, &a, NULL) != 0) {
			fprintf(stderr, "put failed at %u (%s)\n", i, l->name);
			exit(1);
		}
	}
	fprintf(stderr, "  (%u objects (%s) written in %.1f s)\n", n, l->name, now_s() - t0);
	free(data);
}

/* One rebuild of l's tiers into a new index. */
static double
rb_once(rb_layout_t *l, uint32_t n, const om_ix_params_t *ip)
{
	om_rebuild_stats_t rs;

	om_store_close(l->st);
	om_index_close(l->ix);
	if (om_index_create(ip, &l->ix) != 0)
		exit(1);
	l->st = open_store(l->ix, l->mem, l->disk, l->pack_max);
	if (om_store_rebuild(l->st, &rs) != 0 || rs.objects != n) {
		fprintf(stderr, "rebuild (%s) failed: %" PRIu64 " objects\n", l->name, rs.objects);
		exit(1);
	}
	l->secs.v[l->secs.n++] = rs.seconds;
	l->rate.v[l->rate.n++] = n / rs.seconds;
	return rs.seconds;
}

/*
 * Both layouts hold n objects at once and their rebuilds alternate, so that
 * a noisy neighbour hits both alike; the ratio packed / files is taken in
 * each run. The objects are 100 bytes unless --rebuild-size says otherwise:
 * a file's record is read, a packed entry's record and bytes (its CRC is
 * checked), so larger objects cost the packed layout more.
 */
static void
bench_rebuild(uint32_t n)
{
	om_ix_params_t ip = { .capacity = n + n / 4, .max_uri = 256 };
	rb_layout_t l[RB_LAYOUTS] = {
		[RB_FILES] = { .name = "files", .pack_max = 0 },
		[RB_PACKED] = { .name = "packed", .pack_max = pack_max },
	};
	series_t ratio = { .n = 0 };
	char what[80];

	rb_write(&l[RB_FILES], n, &ip, "files");
	rb_write(&l[RB_PACKED], n, &ip, "packed");
	for (int r = 0; r < runs; r++) {
		/* Which goes first alternates too: neither always follows the
		 * other's rebuild and what it left in the caches. */
		int first = r & 1;
		double s[RB_LAYOUTS];

		s[first] = rb_once(&l[first], n, &ip);
		s[!first] = rb_once(&l[!first], n, &ip);
		ratio.v[ratio.n++] = s[RB_PACKED] / s[RB_FILES];
	}
	for (int i = 0; i < RB_LAYOUTS; i++) {
		if (rebuild_size == 100)
			snprintf(what, sizeof(what), "rebuild %u objects (%s), tmpfs", n, l[i].name);
		else
			snprintf(what, sizeof(what), "rebuild %u x %u B (%s), tmpfs", n, rebuild_size, l[i].name);
		row_f(what, "seconds", &l[i].secs);
		row(what, "objects/s", &l[i].rate);
	}
	if (rebuild_size == 100)
		snprintf(what, sizeof(what), "rebuild %u objects, packed / files", n);
	else
		snprintf(what, sizeof(what), "rebuild %u x %u B, packed / files", n, rebuild_size);
	row_f(what, "ratio", &ratio);
	for (int i = 0; i < RB_LAYOUTS; i++) {
		om_store_close(l[i].st);
		om_index_close(l[i].ix);
		rmtree(l[i].mem);
		rmtree(l[i].disk);
	}
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
	st = open_store(ix, mem, disk, 0);
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
 * socket). Objects of at most pack_max bytes go into packs, as the daemon
 * stores them with its default pack_max (16 KiB; --pack-max for another,
 * 0 for a file each): a restart measured on a layout the daemon would not
 * have written measures something else.
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
	st = open_store(ix, mem, disk, pack_max);
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
	fprintf(stderr, "%u objects of %u bytes written in %.1f s (%s)\n", n, size, now_s() - t0,
	    pack_max > 0 && size <= pack_max ? "packed" : "a file each");
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
	const char *fill_dir = NULL;
	uint32_t fill_n = 0, fill_size = 0;

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--fill") == 0 && i + 3 < argc) {
			fill_dir = argv[++i];
			fill_n = (uint32_t)strtoul(argv[++i], NULL, 10);
			fill_size = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--pack-max") == 0 && i + 1 < argc) {
			unsigned long v = strtoul(argv[++i], NULL, 10);

			/* The store would cap it silently; the daemon's
			 * configuration refuses it. */
			if (v > OM_STORE_PACK_MAX) {
				fprintf(stderr, "--pack-max: at most %u\n", OM_STORE_PACK_MAX);
				return 2;
			}
			pack_max = (uint32_t)v;
		} else if (strcmp(argv[i], "--quick") == 0) {
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
		} else if (strcmp(argv[i], "--rebuild-size") == 0 && i + 1 < argc) {
			rebuild_size = (uint32_t)strtoul(argv[++i], NULL, 10);
		} else if (strcmp(argv[i], "--rebuild") == 0 && i + 1 < argc) {
			char *s = argv[++i], *tok;

			nrebuilds = 0;
			while ((tok = strsep(&s, ",")) != NULL && nrebuilds < 4)
				rebuilds[nrebuilds++] = (uint32_t)strtoul(tok, NULL, 10);
		} else {
			fprintf(stderr, "usage: %s [--quick] [--runs N] [--dir DIR] [--rebuild N,N] [--rebuild-size BYTES]\n"
			    "       [--pack-max BYTES]\n"
			    "       %s --fill DIR OBJECTS SIZE [--pack-max BYTES]\n", argv[0], argv[0]);
			return 2;
		}
	}
	if (fill_dir != NULL)
		return fill(fill_dir, fill_n, fill_size);
	if (pack_max == 0 || rebuild_size == 0 || rebuild_size > pack_max) {
		/* The packed rows would be the files' again. */
		fprintf(stderr, "the rebuild's objects (--rebuild-size, 1 to --pack-max bytes) are to fit in "
		    "packs; --pack-max 0 is for --fill only\n");
		return 2;
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
