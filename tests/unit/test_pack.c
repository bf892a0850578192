/*
 * Packs (src/store/store_pack.c) through the store's API, on real tiers
 * with pack_max = 16 KiB: objects up to it are entries of TIER/packs/NNNNNN
 * (their record, a state word, their bytes), larger ones files. What a
 * GET gives (exactly the bytes, a read-only descriptor of its own, mode
 * 0440; the same made from a mapping of the pack), the state words a replace and a delete leave, the rebuild (live
 * entries only, a torn tail, a damaged entry, a duplicate left by an
 * unfinished compaction), the scrub, the compaction (an old descriptor
 * still reads the old bytes; another process's kept descriptor of the
 * removed pack closed on its note), a dead writer's entry reclaimed, durability
 * fsync, and writers killed at random moments.
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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "os/om_os.h"
#include "store/om_store.h"
#include "store/store_meta.h"
#include "om_test.h"

#define PACK_MAX 16384u

typedef struct {
	char disk[256];
	char mem[256];
	char tier[2][256]; /* by enum om_tier_id */
	om_index_t *ix;
	om_store_t *st;
	om_store_params_t p;
	uint32_t capacity;
} fx_t;

static void
fx_open(fx_t *f)
{
	char err[256];
	int rc;

	f->p.disk.path = f->disk;
	f->p.mem.path = f->mem;
	rc = om_store_open(&f->p, f->ix, &f->st, err, sizeof(err));
	if (rc != 0)
		fail_msg("om_store_open: %s (%s)", err, om_strerror(rc));
}

static void
fx_index(fx_t *f)
{
	om_ix_params_t ip = { .capacity = f->capacity, .max_uri = 128, .hits_max = 16,
		.atime_res_ms = OM_IX_TICK_MS };

	assert_int_equal(om_index_create(&ip, &f->ix), 0);
	fx_open(f);
}

static fx_t *
fx_new(uint32_t capacity)
{
	fx_t *f = calloc(1, sizeof(*f));

	om_test_mkdtemp(f->disk, sizeof(f->disk), NULL);
	om_test_mkdtemp(f->mem, sizeof(f->mem), om_test_memdir());
	snprintf(f->tier[OM_TIER_DISK], sizeof(f->tier[0]), "%s", f->disk);
	snprintf(f->tier[OM_TIER_MEM], sizeof(f->tier[0]), "%s", f->mem);
	f->p.mem.limit = om_test_mem_limit(0);
	f->p.mem.pack_max = PACK_MAX;
	f->p.disk.pack_max = PACK_MAX;
	f->capacity = capacity;
	fx_index(f);
	return f;
}

/* The store closed and opened again over the same index: the new handle
 * appends to no pack yet (the old one's are anybody's to compact). */
static void
fx_reopen(fx_t *f)
{
	om_store_close(f->st);
	fx_open(f);
}

/* What a crash of every process leaves: the tiers, and no index. */
static void
fx_restart(fx_t *f, om_rebuild_stats_t *rs)
{
	om_store_close(f->st);
	om_index_close(f->ix);
	fx_index(f);
	memset(rs, 0, sizeof(*rs));
	assert_int_equal(om_store_rebuild(f->st, rs), 0);
}

static void
fx_free(fx_t *f)
{
	char err[256];

	if (om_index_check(f->ix, err, sizeof(err)) != 0)
		fail_msg("index check: %s", err);
	om_store_close(f->st);
	om_index_close(f->ix);
	om_test_rmtree(f->disk);
	om_test_rmtree(f->mem);
	free(f);
}

static void
meta_of(char *buf, size_t n, uint64_t seed)
{
	snprintf(buf, n, "seed=%" PRIu64 ";content-type=x/y", seed);
}

/* PUTs size bytes made from seed, with metadata naming the seed. */
static int
put_seed(fx_t *f, const char *uri, size_t size, uint64_t seed, int eph, om_ix_obj_t *out)
{
	static unsigned char buf[65536];
	char meta[64];
	om_put_args_t a = { .size = size, .flags = eph ? OM_STORE_EPHEMERAL : 0 };

	assert_true(size <= sizeof(buf));
	om_test_fill(buf, size, seed);
	meta_of(meta, sizeof(meta), seed);
	a.meta = meta;
	a.meta_len = (uint32_t)strlen(meta);
	return om_store_put(f->st, uri, strlen(uri), buf, &a, out);
}

/* Reads the whole descriptor with pread and compares it with want. */
static void
assert_fd_bytes(int fd, const void *want, size_t size)
{
	unsigned char *got = malloc(size + 1);
	struct stat sb;
	size_t off = 0;

	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, (uint64_t)size);
	while (off < size) {
		ssize_t n = pread(fd, got + off, size - off, (off_t)off);

		assert_true(n > 0);
		off += (size_t)n;
	}
	assert_int_equal(pread(fd, got, 1, (off_t)size), 0);
	if (size)
		assert_memory_equal(got, want, size);
	free(got);
}

/* GETs uri and checks: the bytes of seed (size), its metadata, the
 * descriptor's kind. Returns the object. */
static om_ix_obj_t
check_obj(fx_t *f, const char *uri, size_t size, uint64_t seed)
{
	static unsigned char want[65536];
	char meta[128], wmeta[64];
	uint32_t mlen = 0;
	struct stat sb;
	om_get_t g;
	int fl;

	if (om_store_get(f->st, uri, strlen(uri), OM_GET_NOTOUCH, &g) != 0)
		fail_msg("%s: not found", uri);
	om_test_fill(want, size, seed);
	assert_int_equal(g.obj.size, size);
	assert_fd_bytes(g.fd, want, size);
	assert_int_equal(om_crc32c(0, want, size), g.obj.crc);
	/* Read-only, of its own, mode 0440, not inherited across exec. */
	fl = fcntl(g.fd, F_GETFL);
	assert_true(fl >= 0);
	assert_int_equal(fl & O_ACCMODE, O_RDONLY);
	assert_true(fcntl(g.fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(fstat(g.fd, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0440);
	assert_int_equal(write(g.fd, "x", 1), -1);
	assert_int_equal(om_store_read_meta(f->st, &g, meta, sizeof(meta), &mlen, NULL), 0);
	meta_of(wmeta, sizeof(wmeta), seed);
	assert_int_equal(mlen, strlen(wmeta));
	assert_memory_equal(meta, wmeta, mlen);
	close(g.fd);
	return g.obj;
}

static void
pack_path(const fx_t *f, int tier, uint32_t no, char *buf, size_t n)
{
	snprintf(buf, n, "%s/packs/%06" PRIx32, f->tier[tier], no);
}

/* The state word of a packed object's entry, read from its pack. */
static uint32_t
state_of(const fx_t *f, int tier, uint64_t loc)
{
	char path[600];
	uint8_t w[4];
	int fd;

	pack_path(f, tier, OM_PACK_NO(loc), path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, w, 4, (off_t)OM_PACK_OFF(loc) - 8), 4);
	close(fd);
	return (uint32_t)w[0] | (uint32_t)w[1] << 8 | (uint32_t)w[2] << 16 | (uint32_t)w[3] << 24;
}

/* Packs of a tier: their numbers (up to max), and how many. */
static unsigned
list_packs(const fx_t *f, int tier, uint32_t *nos, unsigned max)
{
	char path[600];
	struct dirent *de;
	unsigned n = 0;
	DIR *d;

	snprintf(path, sizeof(path), "%s/packs", f->tier[tier]);
	d = opendir(path);
	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n < max)
			nos[n] = (uint32_t)strtoul(de->d_name, NULL, 16);
		n++;
	}
	closedir(d);
	return n;
}

typedef struct {
	unsigned live, dead;
	uint64_t last_at;  /* the last entry's loc */
	uint64_t last_len; /* and its length */
} walk_count_t;

static int
count_entry(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	walk_count_t *c = arg;

	(void)data;
	if (state == OM_PACK_LIVE)
		c->live++;
	else
		c->dead++;
	c->last_at = loc;
	c->last_len = r->size;
	return 0;
}

/* Walks pack no of the tier as the rebuild does: where the walk stopped,
 * and the file's size. */
static uint64_t
walk_pack(const fx_t *f, int tier, uint32_t no, walk_count_t *c, uint64_t *fsize)
{
	char path[600];
	struct stat sb;
	uint64_t end;
	void *img;
	int fd;

	pack_path(f, tier, no, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(img != MAP_FAILED);
	end = om_pack_walk(img, (size_t)sb.st_size, tier, no, count_entry, c);
	munmap(img, (size_t)sb.st_size);
	close(fd);
	if (fsize != NULL)
		*fsize = (uint64_t)sb.st_size;
	return end;
}

/* Live entries in every pack of both tiers. */
static unsigned
live_entries(const fx_t *f)
{
	uint32_t nos[256];
	unsigned live = 0;

	for (int tier = 0; tier < 2; tier++) {
		unsigned n = list_packs(f, tier, nos, 256);

		assert_true(n <= 256);
		for (unsigned i = 0; i < n; i++) {
			walk_count_t c = { 0, 0, 0, 0 };

			(void)walk_pack(f, tier, nos[i], &c, NULL);
			live += c.live;
		}
	}
	return live;
}

/* Object files (not packs, nor what corrupt/ holds) of both tiers. */
static long
object_files(const fx_t *f)
{
	long n = 0;

	for (int tier = 0; tier < 2; tier++) {
		char path[600];

		n += om_test_count_files(f->tier[tier], NULL, NULL);
		snprintf(path, sizeof(path), "%s/packs", f->tier[tier]);
		n -= om_test_count_files(path, NULL, NULL);
		snprintf(path, sizeof(path), "%s/corrupt", f->tier[tier]);
		n -= om_test_count_files(path, NULL, NULL);
	}
	return n;
}

static void
flip_at(const char *path, off_t at)
{
	unsigned char b;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x20;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
}

static void
note_pack_fd(void *arg, const char *target)
{
	int *n = arg;

	if (strstr(target, "/packs/") != NULL)
		(*n)++;
}

/* Descriptors this process has open on packs. */
static int
pack_fds(void)
{
	int n = 0;

	(void)om_test_fd_targets(getpid(), note_pack_fd, &n);
	return n;
}

/* ---- GET ---------------------------------------------------------------- */

static void
test_sizes_both_tiers(void **state)
{
	static const size_t sizes[] = { 0, 1, 1000, 4096, PACK_MAX, PACK_MAX + 1 };
	fx_t *f = fx_new(100);

	(void)state;
	for (int eph = 0; eph < 2; eph++) {
		for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
			char uri[64];
			om_ix_obj_t o, got;
			uint64_t seed = (uint64_t)eph * 100 + i + 1;
			int tier = eph ? OM_TIER_MEM : OM_TIER_DISK;

			snprintf(uri, sizeof(uri), "/size/%d/%zu", eph, sizes[i]);
			assert_int_equal(put_seed(f, uri, sizes[i], seed, eph, &o), 0);
			got = check_obj(f, uri, sizes[i], seed);
			assert_int_equal(got.id, o.id);
			if (sizes[i] <= PACK_MAX) {
				assert_true(got.flags & OM_IX_F_PACKED);
				assert_int_equal(got.loc, o.loc);
				assert_int_not_equal(OM_PACK_NO(got.loc), 0);
				assert_true(OM_PACK_OFF(got.loc) >= OM_PACK_HDR + OM_META_HDR + 8);
				assert_int_equal(OM_PACK_OFF(got.loc) % 16, 0);
				assert_int_equal(om_store_pack_no(&got), OM_PACK_NO(got.loc));
				assert_int_equal(state_of(f, tier, got.loc), OM_PACK_LIVE);
			} else {
				assert_false(got.flags & OM_IX_F_PACKED);
				assert_int_equal(got.loc, 0);
			}
			assert_int_equal(!!(got.flags & OM_IX_F_EPHEMERAL), eph);
		}
	}
	/* One pack per tier for the ten small objects; two object files. */
	{
		uint32_t nos[4];

		assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
		assert_int_equal(list_packs(f, OM_TIER_MEM, nos, 4), 1);
		assert_int_equal(object_files(f), 2);
		assert_int_equal(live_entries(f), 10);
	}
	fx_free(f);
}

/* Each GET of a packed object is a description of its own: a read on one
 * moves no other's offset; nothing can be written through it. */
static void
test_descriptor_private_and_read_only(void **state)
{
	fx_t *f = fx_new(100);
	unsigned char want[3000], a[100], b[100];
	om_get_t g1, g2;
	void *map;

	(void)state;
	om_test_fill(want, sizeof(want), 9);
	assert_int_equal(put_seed(f, "/p", sizeof(want), 9, 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/p", 2, 0, &g1), 0);
	assert_int_equal(om_store_get(f->st, "/p", 2, 0, &g2), 0);
	assert_int_not_equal(g1.fd, g2.fd);
	assert_int_equal(read(g1.fd, a, sizeof(a)), (ssize_t)sizeof(a));
	assert_int_equal(lseek(g1.fd, 0, SEEK_CUR), (off_t)sizeof(a));
	assert_int_equal(lseek(g2.fd, 0, SEEK_CUR), 0);
	assert_int_equal(read(g2.fd, b, sizeof(b)), (ssize_t)sizeof(b));
	assert_memory_equal(a, want, sizeof(a));
	assert_memory_equal(b, want, sizeof(b));
	assert_int_equal(pwrite(g1.fd, "x", 1, 0), -1);
	assert_int_equal(errno, EBADF);
	assert_int_not_equal(ftruncate(g1.fd, 0), 0);
	map = mmap(NULL, sizeof(want), PROT_READ | PROT_WRITE, MAP_SHARED, g1.fd, 0);
	assert_true(map == MAP_FAILED);
	/* A shared read-only mapping shows exactly the object. */
	map = mmap(NULL, sizeof(want), PROT_READ, MAP_SHARED, g2.fd, 0);
	assert_true(map != MAP_FAILED);
	assert_memory_equal(map, want, sizeof(want));
	munmap(map, sizeof(want));
	close(g1.fd);
	close(g2.fd);
	check_obj(f, "/p", sizeof(want), 9);
	fx_free(f);
}

/*
 * A descriptor made from a reader's mapping of the pack (a worker's):
 * exactly the bytes, a sealed memfd of its own, 0440, read-only, never the
 * pack; refused (-ENOENT) for an entry that is dead or another object's,
 * or past the mapping; -EFAULT once the pack was cut short under it.
 */
static void
test_memfd_from_mapping(void **state)
{
	const int need = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL;
	fx_t *f = fx_new(100);
	unsigned char want[9000];
	om_ix_obj_t m, n, other;
	struct stat sb, pb;
	char path[600];
	uint64_t cut;
	void *map;
	int pfd, fd;

	(void)state;
	assert_int_equal(om_os_mapped_guard(), 0);
	om_test_fill(want, sizeof(want), 11);
	assert_int_equal(put_seed(f, "/m", sizeof(want), 11, 0, &m), 0);
	assert_int_equal(put_seed(f, "/n", 200, 12, 0, &n), 0);
	assert_true(m.flags & OM_IX_F_PACKED);
	assert_int_equal(OM_PACK_NO(m.loc), OM_PACK_NO(n.loc));
	pack_path(f, OM_TIER_DISK, OM_PACK_NO(m.loc), path, sizeof(path));
	pfd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(pfd >= 0);
	assert_int_equal(fstat(pfd, &pb), 0);
	map = mmap(NULL, (size_t)OM_STORE_PACK_BYTES, PROT_READ, MAP_SHARED, pfd, 0);
	assert_true(map != MAP_FAILED);

	fd = om_store_pack_memfd_from(map, (size_t)OM_STORE_PACK_BYTES, &m);
	assert_true(fd >= 0);
	assert_fd_bytes(fd, want, sizeof(want));
	assert_int_equal(fstat(fd, &sb), 0);
	assert_false(sb.st_dev == pb.st_dev && sb.st_ino == pb.st_ino);
	assert_int_equal(sb.st_mode & 07777, 0440);
	assert_int_equal(fcntl(fd, F_GETFL) & O_ACCMODE, O_RDONLY);
	assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	assert_int_equal(fcntl(fd, F_GET_SEALS) & need, need);
	assert_int_equal(pwrite(fd, "x", 1, 0), -1);
	assert_int_equal(errno, EBADF);
	assert_int_not_equal(ftruncate(fd, 0), 0);
	assert_true(mmap(NULL, sizeof(want), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0) == MAP_FAILED);
	close(fd);

	/* Another object's entry, or the entry taken for another id. */
	other = n;
	other.id = m.id;
	assert_int_equal(om_store_pack_memfd_from(map, (size_t)OM_STORE_PACK_BYTES, &other), -ENOENT);
	other = m;
	other.id ^= 1;
	assert_int_equal(om_store_pack_memfd_from(map, (size_t)OM_STORE_PACK_BYTES, &other), -ENOENT);
	/* Past what is mapped. */
	assert_int_equal(om_store_pack_memfd_from(map, (size_t)OM_PACK_OFF(m.loc) + 100, &m), -ENOENT);
	/* Dead: deleted (the mapping shows the state word written). */
	assert_int_equal(om_store_delete(f->st, "/n", 2), 0);
	assert_int_equal(om_store_pack_memfd_from(map, (size_t)OM_STORE_PACK_BYTES, &n), -ENOENT);

	/* Cut short behind the store's back within m's bytes (its record
	 * still there): the copy faults, no SIGBUS. */
	cut = (OM_PACK_OFF(m.loc) + 4095) & ~(uint64_t)4095;
	assert_true(cut < OM_PACK_OFF(m.loc) + sizeof(want));
	assert_int_equal(ftruncate(pfd, (off_t)cut), 0);
	assert_int_equal(om_store_pack_memfd_from(map, (size_t)OM_STORE_PACK_BYTES, &m), -EFAULT);
	munmap(map, (size_t)OM_STORE_PACK_BYTES);
	close(pfd);
	fx_free(f);
}

/* ---- state words -------------------------------------------------------- */

static void
test_replace_and_delete_mark_dead(void **state)
{
	fx_t *f = fx_new(100);

	(void)state;
	for (int eph = 0; eph < 2; eph++) {
		int tier = eph ? OM_TIER_MEM : OM_TIER_DISK;
		om_ix_obj_t v1, v2, v3;
		om_get_t old;

		assert_int_equal(put_seed(f, "/r", 500, 1, eph, &v1), 0);
		assert_int_equal(state_of(f, tier, v1.loc), OM_PACK_LIVE);
		assert_int_equal(om_store_get(f->st, "/r", 2, 0, &old), 0);
		assert_int_equal(put_seed(f, "/r", 700, 2, eph, &v2), 0);
		assert_int_not_equal(v1.loc, v2.loc);
		assert_int_equal(state_of(f, tier, v1.loc), OM_PACK_DEAD);
		assert_int_equal(state_of(f, tier, v2.loc), OM_PACK_LIVE);
		check_obj(f, "/r", 700, 2);
		/* The descriptor of the old version still reads it whole. */
		{
			unsigned char want[500];

			om_test_fill(want, sizeof(want), 1);
			assert_fd_bytes(old.fd, want, sizeof(want));
			close(old.fd);
		}
		/* Replaced by a file: the entry dies too. */
		assert_int_equal(put_seed(f, "/r", PACK_MAX + 10, 3, eph, &v3), 0);
		assert_false(v3.flags & OM_IX_F_PACKED);
		assert_int_equal(state_of(f, tier, v2.loc), OM_PACK_DEAD);
		assert_int_equal(put_seed(f, "/r", 10, 4, eph, &v2), 0);
		assert_int_equal(om_store_delete(f->st, "/r", 2), 0);
		assert_int_equal(state_of(f, tier, v2.loc), OM_PACK_DEAD);
		assert_int_equal(om_store_stat(f->st, "/r", 2, NULL), -ENOENT);
		assert_int_equal(om_store_delete(f->st, "/r", 2), -ENOENT);
	}
	assert_int_equal(live_entries(f), 0);
	assert_int_equal(object_files(f), 0);
	fx_free(f);
}

/* ---- rebuild ------------------------------------------------------------ */

#define RB_KEYS 300

static void
test_rebuild_live_entries_only(void **state)
{
	static uint64_t seed_of[RB_KEYS];
	static size_t size_of[RB_KEYS];
	fx_t *f = fx_new(1000);
	om_rebuild_stats_t rs;
	uint64_t rnd = 77, seed = 1, live = 0, eph = 0;
	char uri[64];

	(void)state;
	for (int k = 0; k < RB_KEYS; k++) {
		snprintf(uri, sizeof(uri), "/rb/%d", k);
		size_of[k] = (size_t)(om_test_rand(&rnd) % (PACK_MAX + 2000));
		seed_of[k] = seed++;
		assert_int_equal(put_seed(f, uri, size_of[k], seed_of[k], k % 3 == 0, NULL), 0);
	}
	/* Replace a third, delete a sixth. */
	for (int k = 0; k < RB_KEYS; k += 3) {
		snprintf(uri, sizeof(uri), "/rb/%d", k);
		size_of[k] = (size_t)(om_test_rand(&rnd) % PACK_MAX);
		seed_of[k] = seed++;
		assert_int_equal(put_seed(f, uri, size_of[k], seed_of[k], k % 2 == 0, NULL), 0);
	}
	for (int k = 1; k < RB_KEYS; k += 6) {
		snprintf(uri, sizeof(uri), "/rb/%d", k);
		assert_int_equal(om_store_delete(f->st, uri, strlen(uri)), 0);
		seed_of[k] = 0;
	}
	for (int k = 0; k < RB_KEYS; k++) {
		live += seed_of[k] != 0;
		eph += seed_of[k] != 0 && k % 3 == 0 && k % 2 == 0;
	}
	fx_restart(f, &rs);
	print_message("rebuilt %" PRIu64 " objects, %" PRIu64 " entries and files scanned, %" PRIu64
	    " stale\n", rs.objects, rs.files_scanned, rs.stale_removed);
	assert_int_equal(rs.objects, live);
	assert_int_equal(rs.corrupt_moved, 0);
	assert_int_equal(rs.stale_removed, 0);
	for (int k = 0; k < RB_KEYS; k++) {
		snprintf(uri, sizeof(uri), "/rb/%d", k);
		if (seed_of[k] == 0) {
			assert_int_equal(om_store_stat(f->st, uri, strlen(uri), NULL), -ENOENT);
			continue;
		}
		{
			om_ix_obj_t o = check_obj(f, uri, size_of[k], seed_of[k]);

			assert_int_equal(!!(o.flags & OM_IX_F_PACKED), size_of[k] <= PACK_MAX);
		}
	}
	{
		om_store_usage_t u;

		om_store_usage(f->st, &u);
		assert_int_equal(u.objects, live);
		assert_int_equal(u.ephemeral, eph);
	}
	assert_int_equal((uint64_t)live_entries(f) + (uint64_t)object_files(f), live);
	/* A second rebuild finds the same. */
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, live);
	fx_free(f);
}

/* Ten objects in one pack of the persistent tier, the store then closed:
 * their locs in order. */
static void
ten_in_a_pack(fx_t *f, om_ix_obj_t *o)
{
	char uri[32];

	for (int i = 0; i < 10; i++) {
		snprintf(uri, sizeof(uri), "/t/%d", i);
		assert_int_equal(put_seed(f, uri, 1000 + (size_t)i * 100, (uint64_t)i + 1, 0, &o[i]), 0);
		assert_int_equal(OM_PACK_NO(o[i].loc), OM_PACK_NO(o[0].loc));
	}
}

static void
check_first(fx_t *f, int n)
{
	char uri[32];

	for (int i = 0; i < 10; i++) {
		snprintf(uri, sizeof(uri), "/t/%d", i);
		if (i < n)
			check_obj(f, uri, 1000 + (size_t)i * 100, (uint64_t)i + 1);
		else
			assert_int_equal(om_store_stat(f->st, uri, strlen(uri), NULL), -ENOENT);
	}
}

/* A writer killed in the middle of its last entry (or a tail of garbage):
 * that entry is lost, the others are indexed. */
static void
test_torn_tail(void **state)
{
	fx_t *f = fx_new(100);
	om_rebuild_stats_t rs;
	om_ix_obj_t o[10];
	char path[600];
	uint64_t end, size;
	walk_count_t c = { 0, 0, 0, 0 };
	uint32_t nos[4];
	int fd;

	(void)state;
	ten_in_a_pack(f, o);
	pack_path(f, OM_TIER_DISK, OM_PACK_NO(o[0].loc), path, sizeof(path));
	om_store_close(f->st);
	f->st = NULL;
	/* Cut in the middle of the last entry's bytes. */
	assert_int_equal(truncate(path, (off_t)(OM_PACK_OFF(o[9].loc) + 900)), 0);
	fx_open(f);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 9);
	assert_int_equal(rs.corrupt_moved, 0);
	check_first(f, 9);
	end = walk_pack(f, OM_TIER_DISK, OM_PACK_NO(o[0].loc), &c, &size);
	assert_int_equal(c.live, 9);
	assert_true(end < size);

	/* Cut inside the last entry's record: the same. */
	om_store_close(f->st);
	assert_int_equal(truncate(path, (off_t)(OM_PACK_OFF(o[8].loc) - 40)), 0);
	fx_open(f);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 8);
	check_first(f, 8);

	/* Garbage after the last whole entry, then half an entry (the first
	 * entry's first 100 bytes): nothing more, nothing less. */
	om_store_close(f->st);
	{
		struct stat sb;
		uint8_t junk[333], half[100];

		assert_int_equal(truncate(path, (off_t)(OM_PACK_OFF(o[7].loc) + OM_PACK_ALIGN16(1700))), 0);
		fd = open(path, O_RDWR | O_APPEND | O_CLOEXEC);
		assert_true(fd >= 0);
		om_test_fill(junk, sizeof(junk), 5);
		assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
		close(fd);
		fx_open(f);
		fx_restart(f, &rs);
		assert_int_equal(rs.objects, 8);
		check_first(f, 8);
		om_store_close(f->st);
		assert_int_equal(truncate(path, (off_t)(OM_PACK_OFF(o[7].loc) + OM_PACK_ALIGN16(1700))), 0);
		fd = open(path, O_RDWR | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(pread(fd, half, sizeof(half), OM_PACK_HDR), (ssize_t)sizeof(half));
		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(pwrite(fd, half, sizeof(half), sb.st_size), (ssize_t)sizeof(half));
		close(fd);
	}
	fx_open(f);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 8);
	check_first(f, 8);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	/* And the store writes on: a new pack, all of it found again. */
	assert_int_equal(put_seed(f, "/t/9", 1900, 10, 0, &o[9]), 0);
	assert_int_not_equal(OM_PACK_NO(o[9].loc), OM_PACK_NO(o[0].loc));
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 9);
	for (int i = 0; i < 8; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/t/%d", i);
		check_obj(f, uri, 1000 + (size_t)i * 100, (uint64_t)i + 1);
	}
	check_obj(f, "/t/9", 1900, 10);
	assert_int_equal(om_store_stat(f->st, "/t/8", 4, NULL), -ENOENT);
	fx_free(f);
}

/*
 * A flipped byte in an entry's bytes, in the middle of a pack: that entry
 * alone is lost (its record checks and says where the next one begins):
 * it is copied to corrupt/ID, marked dead, and counted; the nine others
 * and the object in another pack are indexed with their bytes. The next
 * rebuild finds it dead and counts nothing more.
 */
static void
test_damaged_entry_is_skipped_by_the_rebuild(void **state)
{
	fx_t *f = fx_new(100);
	om_rebuild_stats_t rs;
	om_ix_obj_t o[10];
	char path[600];
	uint32_t nos[4];
	struct stat sb;

	(void)state;
	ten_in_a_pack(f, o);
	/* One more object in another pack: not affected. */
	assert_int_equal(put_seed(f, "/other", 100, 99, 1, NULL), 0);
	pack_path(f, OM_TIER_DISK, OM_PACK_NO(o[0].loc), path, sizeof(path));
	flip_at(path, (off_t)OM_PACK_OFF(o[5].loc) + 17);
	fx_restart(f, &rs);
	print_message("a byte flipped in entry 6 of a pack of 10 (and 1 object elsewhere): the rebuild indexed %" PRIu64 " objects "
	    "(%" PRIu64 " scanned, %" PRIu64 " corrupt)\n", rs.objects, rs.files_scanned, rs.corrupt_moved);
	assert_int_equal(rs.objects, 10);
	assert_int_equal(rs.corrupt_moved, 1);
	for (int i = 0; i < 10; i++) {
		char uri[32];

		snprintf(uri, sizeof(uri), "/t/%d", i);
		if (i == 5)
			assert_int_equal(om_store_stat(f->st, uri, strlen(uri), NULL), -ENOENT);
		else
			check_obj(f, uri, 1000 + (size_t)i * 100, (uint64_t)i + 1);
	}
	check_obj(f, "/other", 100, 99);
	/* Its bytes, as found, for the operator; its entry dead. */
	snprintf(path, sizeof(path), "%s/corrupt/%016" PRIx64, f->disk, o[5].id);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_size, (off_t)o[5].size);
	assert_int_equal(state_of(f, OM_TIER_DISK, o[5].loc), OM_PACK_DEAD);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 10);
	assert_int_equal(rs.corrupt_moved, 0);
	fx_free(f);
}

/* The scrub of a damaged packed object: its bytes go to corrupt/ID, the
 * index drops it, its entry dies; its neighbours are intact. */
static void
test_scrub_quarantines_packed(void **state)
{
	fx_t *f = fx_new(100);
	om_ix_obj_t o[10], e;
	char path[600];
	uint64_t used = 0;
	uint32_t cursor = 0;

	(void)state;
	ten_in_a_pack(f, o);
	assert_int_equal(put_seed(f, "/eph", 2000, 50, 1, NULL), 0);
	/* As the index has them (a PUT's result has no slot). */
	assert_int_equal(om_store_stat(f->st, "/t/3", 4, &o[3]), 0);
	assert_int_equal(om_store_stat(f->st, "/eph", 4, &e), 0);
	/* Intact: verified. */
	assert_int_equal(om_store_verify_obj(f->st, &o[3], &used), 0);
	assert_int_equal(used, o[3].size);
	pack_path(f, OM_TIER_DISK, OM_PACK_NO(o[3].loc), path, sizeof(path));
	flip_at(path, (off_t)OM_PACK_OFF(o[3].loc) + 1000);
	pack_path(f, OM_TIER_MEM, OM_PACK_NO(e.loc), path, sizeof(path));
	flip_at(path, (off_t)OM_PACK_OFF(e.loc));
	assert_int_equal(om_store_verify_obj(f->st, &o[3], &used), -EBADMSG);
	assert_int_equal(om_store_stats(f->st)->damaged, 1);
	assert_int_equal(om_store_stat(f->st, "/t/3", 4, NULL), -ENOENT);
	{
		om_get_t g;

		assert_int_equal(om_store_get(f->st, "/t/3", 4, 0, &g), -ENOENT);
	}
	assert_int_equal(state_of(f, OM_TIER_DISK, o[3].loc), OM_PACK_DEAD);
	/* corrupt/ID holds the bytes as they were found. */
	{
		unsigned char want[1300];
		struct stat sb;
		int fd;

		snprintf(path, sizeof(path), "%s/corrupt/%016" PRIx64, f->disk, o[3].id);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(fstat(fd, &sb), 0);
		assert_int_equal(sb.st_size, 1300);
		om_test_fill(want, sizeof(want), 4);
		want[1000] ^= 0x20;
		assert_fd_bytes(fd, want, sizeof(want));
		close(fd);
	}
	/* The scrub's pass finds the ephemeral one. */
	while (om_store_scrub(f->st, &cursor, UINT64_MAX, &used) == 0)
		;
	assert_int_equal(om_store_stats(f->st)->damaged, 2);
	assert_int_equal(om_store_stat(f->st, "/eph", 4, NULL), -ENOENT);
	snprintf(path, sizeof(path), "%s/corrupt/%016" PRIx64, f->mem, e.id);
	{
		struct stat sb;

		assert_int_equal(stat(path, &sb), 0);
		assert_int_equal(sb.st_size, 2000);
	}
	for (int i = 0; i < 10; i++) {
		char uri[32];

		if (i == 3)
			continue;
		snprintf(uri, sizeof(uri), "/t/%d", i);
		check_obj(f, uri, 1000 + (size_t)i * 100, (uint64_t)i + 1);
	}
	assert_int_equal(om_store_stats(f->st)->scrubbed, 9 + 1);
	fx_free(f);
}

/* ---- compaction --------------------------------------------------------- */

/* The pack a process appends to, removed behind the store's back: once it
 * has looked (every few milliseconds, not at each append), what it writes
 * goes to a new pack, and is there after a restart. */
static void
test_writer_pack_removed(void **state)
{
	fx_t *f = fx_new(64);
	om_rebuild_stats_t rs;
	om_ix_obj_t a, b;
	char path[512];

	(void)state;
	assert_int_equal(put_seed(f, "/w/a", 1000, 1, 0, &a), 0);
	assert_true(a.flags & OM_IX_F_PACKED);
	pack_path(f, OM_TIER_DISK, om_store_pack_no(&a), path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	usleep(50 * 1000);
	assert_int_equal(put_seed(f, "/w/b", 1000, 2, 0, &b), 0);
	assert_true(om_store_pack_no(&b) != om_store_pack_no(&a));
	fx_restart(f, &rs);
	check_obj(f, "/w/b", 1000, 2);
	fx_free(f);
}

static void
test_compaction(void **state)
{
	fx_t *f = fx_new(1000);
	om_ix_obj_t o[200];
	om_rebuild_stats_t rs;
	uint32_t old_no, nos[4];
	char path[600], uri[32];
	unsigned char want[1200], got[1200];
	int oldfd;

	(void)state;
	for (int i = 0; i < 200; i++) {
		snprintf(uri, sizeof(uri), "/c/%d", i);
		assert_int_equal(put_seed(f, uri, 1000 + (size_t)i, (uint64_t)i + 1, 0, &o[i]), 0);
		assert_int_equal(OM_PACK_NO(o[i].loc), OM_PACK_NO(o[0].loc));
	}
	old_no = OM_PACK_NO(o[0].loc);
	for (int i = 0; i < 200; i++) {
		if (i % 4 == 0)
			continue;
		snprintf(uri, sizeof(uri), "/c/%d", i);
		assert_int_equal(om_store_delete(f->st, uri, strlen(uri)), 0);
	}
	/* The writer's own pack is never compacted. */
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 0);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	/* A reader holds the pack open. */
	pack_path(f, OM_TIER_DISK, old_no, path, sizeof(path));
	oldfd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(oldfd >= 0);
	fx_reopen(f);
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 1);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	assert_int_not_equal(nos[0], old_no);
	{
		struct stat sb;

		assert_int_equal(stat(path, &sb), -1);
	}
	for (int i = 0; i < 200; i += 4) {
		om_ix_obj_t n;

		snprintf(uri, sizeof(uri), "/c/%d", i);
		n = check_obj(f, uri, 1000 + (size_t)i, (uint64_t)i + 1);
		assert_int_equal(n.id, o[i].id);
		assert_true(n.flags & OM_IX_F_PACKED);
		assert_int_equal(OM_PACK_NO(n.loc), nos[0]);
	}
	for (int i = 1; i < 200; i += 4) {
		snprintf(uri, sizeof(uri), "/c/%d", i);
		assert_int_equal(om_store_stat(f->st, uri, strlen(uri), NULL), -ENOENT);
	}
	/* The old descriptor reads the old bytes, live and dead alike. */
	for (int i = 0; i < 200; i += 37) {
		size_t n = 1000 + (size_t)i;

		om_test_fill(want, n, (uint64_t)i + 1);
		assert_int_equal(pread(oldfd, got, n, (off_t)OM_PACK_OFF(o[i].loc)), (ssize_t)n);
		assert_memory_equal(got, want, n);
	}
	close(oldfd);
	assert_int_equal(live_entries(f), 50);
	/* Nothing left to compact. */
	fx_reopen(f);
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 0);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 50);
	for (int i = 0; i < 200; i += 4) {
		snprintf(uri, sizeof(uri), "/c/%d", i);
		check_obj(f, uri, 1000 + (size_t)i, (uint64_t)i + 1);
	}
	fx_free(f);
}

/* The pack a compaction copied into is compacted in its turn, by the
 * same handle, once most of what it copied is deleted (a handle never
 * compacts the pack it appends to: the compaction lets it go). */
static void
test_compaction_pack_compacted_in_turn(void **state)
{
	fx_t *f = fx_new(1000);
	uint32_t nos[4], first;
	char uri[32];
	om_ix_obj_t o;

	(void)state;
	for (int i = 0; i < 100; i++) {
		snprintf(uri, sizeof(uri), "/ct/%d", i);
		assert_int_equal(put_seed(f, uri, 1500, (uint64_t)i + 1, 0, &o), 0);
	}
	fx_reopen(f);
	for (int i = 0; i < 100; i++) {
		if (i % 10 == 0 || i % 10 >= 7)
			continue;
		snprintf(uri, sizeof(uri), "/ct/%d", i);
		assert_int_equal(om_store_delete(f->st, uri, strlen(uri)), 0);
	}
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 1);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	first = nos[0];
	for (int i = 0; i < 100; i++) {
		if (i % 10 <= 6) /* 0 kept, 1..6 gone already */
			continue;
		snprintf(uri, sizeof(uri), "/ct/%d", i);
		assert_int_equal(om_store_delete(f->st, uri, strlen(uri)), 0);
	}
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 1);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	assert_int_not_equal(nos[0], first);
	for (int i = 0; i < 100; i += 10) {
		snprintf(uri, sizeof(uri), "/ct/%d", i);
		o = check_obj(f, uri, 1500, (uint64_t)i + 1);
		assert_int_equal(OM_PACK_NO(o.loc), nos[0]);
	}
	assert_int_equal(live_entries(f), 10);
	fx_free(f);
}

/* Descriptors of path (the pack, or once unlinked "path (deleted)") this
 * process holds. */
static int
fds_of(const char *path)
{
	char link[300], got[700];
	size_t plen = strlen(path);
	struct dirent *de;
	int n = 0;
	DIR *d = opendir("/proc/self/fd");

	assert_non_null(d);
	while ((de = readdir(d)) != NULL) {
		ssize_t l;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/self/fd/%s", de->d_name);
		l = readlink(link, got, sizeof(got) - 1);
		if (l < 0)
			continue;
		got[l] = '\0';
		if (strncmp(got, path, plen) == 0 && (got[plen] == '\0' || strcmp(got + plen, " (deleted)") == 0))
			n++;
	}
	closedir(d);
	return n;
}

/* Keeps the fixture reachable, so that valgrind's leak check in the
 * forked child that ends with _exit does not count it as lost. */
static fx_t *volatile follow_fx;

/* A process that marked entries dead keeps the pack's descriptor; when
 * another process compacts that pack away, the drop note it leaves makes
 * om_store_pack_follow close the descriptor (else every removed pack's
 * pages stay held by whoever once wrote a state word in it). */
static void
test_follow_closes_removed_packs(void **state)
{
	fx_t *f = fx_new(1000);
	int ready[2], go[2];
	char path[600], uri[32], c = 0;
	om_ix_obj_t o;
	pid_t pid;

	(void)state;
	for (int i = 0; i < 100; i++) {
		snprintf(uri, sizeof(uri), "/f/%d", i);
		assert_int_equal(put_seed(f, uri, 1000, (uint64_t)i + 1, 0, &o), 0);
	}
	pack_path(f, OM_TIER_DISK, OM_PACK_NO(o.loc), path, sizeof(path));
	fx_reopen(f); /* the pack is nobody's to append to */
	follow_fx = f;
	assert_int_equal(fds_of(path), 0);
	assert_int_equal(pipe(ready), 0);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int held, after;

		om_store_set_slot(f->st, 3);
		for (int i = 0; i < 100; i++) {
			snprintf(uri, sizeof(uri), "/f/%d", i);
			if (i % 10 != 0 && om_store_delete(f->st, uri, strlen(uri)) != 0)
				_exit(10);
		}
		if (fds_of(path) != 1)
			_exit(11); /* kept to mark the next entry dead */
		if (write(ready[1], "r", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(12);
		held = fds_of(path); /* now "path (deleted)" */
		om_store_pack_follow(f->st);
		after = fds_of(path);
		_exit(held == 1 && after == 0 ? 0 : 20 + held * 4 + after);
	}
	assert_int_equal(read(ready[0], &c, 1), 1);
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 1);
	{
		struct stat sb;

		assert_int_equal(stat(path, &sb), -1);
	}
	assert_int_equal(write(go[1], "g", 1), 1);
	{
		int st = om_test_wait(pid);

		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	close(ready[0]);
	close(ready[1]);
	close(go[0]);
	close(go[1]);
	for (int i = 0; i < 100; i += 10) {
		snprintf(uri, sizeof(uri), "/f/%d", i);
		check_obj(f, uri, 1000, (uint64_t)i + 1);
	}
	follow_fx = NULL;
	fx_free(f);
}

/* Small objects with large metadata (the headers of HTTP responses): the
 * index alone counts their packs mostly dead. A pack that is live is not
 * copied, pass after pass; once most of it dies it is, once. */
static void
test_compaction_large_metadata(void **state)
{
	static unsigned char buf[100];
	fx_t *f = fx_new(1000);
	char meta[600], uri[32];
	uint32_t nos[4], first;
	om_ix_obj_t o;

	(void)state;
	memset(meta, 'h', sizeof(meta));
	for (int i = 0; i < 100; i++) {
		om_put_args_t a = { .size = sizeof(buf), .meta = meta, .meta_len = sizeof(meta) };

		snprintf(uri, sizeof(uri), "/lm/%d", i);
		om_test_fill(buf, sizeof(buf), (uint64_t)i + 1);
		assert_int_equal(om_store_put(f->st, uri, strlen(uri), buf, &a, &o), 0);
		assert_true(o.flags & OM_IX_F_PACKED);
	}
	fx_reopen(f);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	first = nos[0];
	for (int pass = 0; pass < 3; pass++)
		assert_int_equal(om_store_compact(f->st, UINT64_MAX), 0);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	assert_int_equal(nos[0], first);
	for (int i = 0; i < 100; i++) {
		if (i % 10 == 0)
			continue;
		snprintf(uri, sizeof(uri), "/lm/%d", i);
		assert_int_equal(om_store_delete(f->st, uri, strlen(uri)), 0);
	}
	assert_int_equal(om_store_compact(f->st, UINT64_MAX), 1);
	fx_reopen(f);
	for (int pass = 0; pass < 3; pass++)
		assert_int_equal(om_store_compact(f->st, UINT64_MAX), 0);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	assert_int_not_equal(nos[0], first);
	assert_int_equal(live_entries(f), 10);
	fx_free(f);
}

/* A compaction killed between its copy and the removal leaves every live
 * entry in two packs: the rebuild indexes each object once. */
static void
test_duplicate_entries_rebuild_once(void **state)
{
	fx_t *f = fx_new(100);
	om_rebuild_stats_t rs;
	om_ix_obj_t o[10];
	uint32_t no, nos[4];
	char src[600], dst[600];
	uint8_t h[OM_PACK_HDR];

	(void)state;
	ten_in_a_pack(f, o);
	om_store_close(f->st);
	f->st = NULL;
	no = OM_PACK_NO(o[0].loc);
	pack_path(f, OM_TIER_DISK, no, src, sizeof(src));
	pack_path(f, OM_TIER_DISK, no ^ 0x1000, dst, sizeof(dst));
	{
		char cmd[1300];

		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
		assert_int_equal(system(cmd), 0);
	}
	om_pack_header_make(h, OM_TIER_DISK, no ^ 0x1000);
	{
		int fd = open(dst, O_RDWR | O_CLOEXEC);

		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		close(fd);
	}
	fx_open(f);
	fx_restart(f, &rs);
	print_message("two packs of the same 10 entries: %" PRIu64 " objects, %" PRIu64 " stale\n",
	    rs.objects, rs.stale_removed);
	assert_int_equal(rs.objects, 10);
	assert_int_equal(rs.stale_removed, 10);
	/* The rebuild marked 10 entries dead, and keeps no pack open for it:
	 * the master rebuilds, then forks every other process. */
	assert_int_equal(pack_fds(), 0);
	check_first(f, 10);
	assert_int_equal(live_entries(f), 10);
	/* The copy whose entries all died is removed by the next rebuild (or
	 * the compaction); either way the objects stay. */
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 10);
	assert_int_equal(rs.stale_removed, 0);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 4), 1);
	check_first(f, 10);
	fx_free(f);
}

/* The same 10 entries in 8 packs, walked by the rebuild's threads at
 * once: each object is indexed once, from the pack of the lowest number
 * whichever thread came first, the 70 other entries are marked dead (from
 * several threads through one cache of descriptors), and the counts of
 * every thread are summed. */
static void
test_duplicate_entries_many_packs(void **state)
{
	fx_t *f = fx_new(100);
	om_rebuild_stats_t rs;
	om_ix_obj_t o[10];
	uint32_t no, nos[16];
	char src[600], dst[600];
	uint8_t h[OM_PACK_HDR];

	(void)state;
	ten_in_a_pack(f, o);
	om_store_close(f->st);
	f->st = NULL;
	no = OM_PACK_NO(o[0].loc);
	if ((no & ~(uint32_t)0x7000) == 0) { /* one of the copies would be number 0, no pack's */
		fx_free(f);
		skip();
	}
	pack_path(f, OM_TIER_DISK, no, src, sizeof(src));
	for (uint32_t c = 1; c < 8; c++) {
		char cmd[1300];
		int fd;

		pack_path(f, OM_TIER_DISK, no ^ c << 12, dst, sizeof(dst));
		snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", src, dst);
		assert_int_equal(system(cmd), 0);
		om_pack_header_make(h, OM_TIER_DISK, no ^ c << 12);
		fd = open(dst, O_RDWR | O_CLOEXEC);
		assert_true(fd >= 0);
		assert_int_equal(pwrite(fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
		close(fd);
	}
	fx_open(f);
	fx_restart(f, &rs);
	print_message("eight packs of the same 10 entries: %" PRIu64 " objects, %" PRIu64 " stale\n",
	    rs.objects, rs.stale_removed);
	assert_int_equal(rs.objects, 10);
	assert_int_equal(rs.stale_removed, 70);
	assert_int_equal(rs.files_scanned, 80);
	assert_int_equal(pack_fds(), 0);
	check_first(f, 10);
	assert_int_equal(live_entries(f), 10);
	/* The 7 packs whose entries all died are removed by the next
	 * rebuild. */
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 10);
	assert_int_equal(rs.stale_removed, 0);
	assert_int_equal(list_packs(f, OM_TIER_DISK, nos, 16), 1);
	assert_int_equal(nos[0], no & ~(uint32_t)0x7000);
	assert_int_equal(live_entries(f), 10);
	check_first(f, 10);
	fx_free(f);
}

/* ---- a dead writer ------------------------------------------------------ */

typedef struct {
	const char *uri;
	uint32_t state;
	int found;
} find_t;

static int
find_uri(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	find_t *x = arg;

	(void)loc;
	(void)data;
	if (r->uri_len == strlen(x->uri) && memcmp(r->uri, x->uri, r->uri_len) == 0) {
		x->found++;
		x->state = state;
	}
	return 0;
}

/* A writer dies after its entry is written, before it is indexed: the
 * master's reclaim of its slot marks the entry dead. */
static void
test_reclaim_dead_writer(void **state)
{
	fx_t *f = fx_new(100);
	int fds[2];
	char c;
	pid_t pid;
	uint32_t nos[8];
	unsigned n;
	find_t x = { "/never-acked", 0, 0 };
	om_rebuild_stats_t rs;

	(void)state;
	assert_int_equal(put_seed(f, "/kept", 10, 1, 0, NULL), 0);
	/* The child must append to a pack of its own, not the parent's. */
	fx_reopen(f);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_test_pause_t pz = { fds[1], 1 };

		om_store_set_slot(f->st, 5);
		om_index_set_hook(f->ix, om_test_pause_hook, &pz);
		(void)put_seed(f, "/never-acked", 4000, 2, 0, NULL);
		_exit(0);
	}
	assert_int_equal(read(fds[0], &c, 1), 1);
	kill(pid, SIGKILL);
	om_test_wait(pid);
	close(fds[0]);
	close(fds[1]);
	n = list_packs(f, OM_TIER_DISK, nos, 8);
	assert_int_equal(n, 2);
	for (unsigned i = 0; i < n; i++) {
		walk_count_t wc = { 0, 0, 0, 0 };
		char path[600];
		struct stat sb;
		void *img;
		int fd;

		(void)walk_pack(f, OM_TIER_DISK, nos[i], &wc, NULL);
		pack_path(f, OM_TIER_DISK, nos[i], path, sizeof(path));
		fd = open(path, O_RDONLY | O_CLOEXEC);
		assert_int_equal(fstat(fd, &sb), 0);
		img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
		assert_true(img != MAP_FAILED);
		(void)om_pack_walk(img, (size_t)sb.st_size, OM_TIER_DISK, nos[i], find_uri, &x);
		munmap(img, (size_t)sb.st_size);
		close(fd);
	}
	assert_int_equal(x.found, 1);
	assert_int_equal(x.state, OM_PACK_LIVE);
	assert_int_equal(om_store_reclaim_slot(f->st, 5), 1);
	assert_int_equal(pack_fds(), 0); /* the master's reclaim keeps none open */
	assert_int_equal(om_store_stat(f->st, "/never-acked", 12, NULL), -ENOENT);
	check_obj(f, "/kept", 10, 1);
	assert_int_equal(om_store_reclaim_slot(f->st, 5), 0);
	assert_int_equal(om_store_reclaim_slot(f->st, 6), 0);
	assert_int_equal(live_entries(f), 1);
	/* It stays dead. */
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 1);
	assert_int_equal(om_store_stat(f->st, "/never-acked", 12, NULL), -ENOENT);
	fx_free(f);
}

/* A reclaim after a writer that finished its PUT and died leaves its
 * object alone. */
static void
test_reclaim_keeps_indexed_entry(void **state)
{
	fx_t *f = fx_new(100);
	pid_t pid;

	(void)state;
	fx_reopen(f);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_store_set_slot(f->st, 5);
		if (put_seed(f, "/acked", 4000, 3, 1, NULL) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	om_test_wait(pid);
	(void)om_store_reclaim_slot(f->st, 5);
	check_obj(f, "/acked", 4000, 3);
	fx_free(f);
}

/* ---- expiry and eviction ------------------------------------------------ */

static int
put_exp(fx_t *f, const char *uri, size_t size, uint64_t seed, int eph, int64_t expires, om_ix_obj_t *out)
{
	unsigned char buf[4096];
	om_put_args_t a = { .size = size, .expires = expires, .flags = eph ? OM_STORE_EPHEMERAL : 0 };

	om_test_fill(buf, size, seed);
	return om_store_put(f->st, uri, strlen(uri), buf, &a, out);
}

/* An expired packed object: a miss at once, its entry dead after the
 * manager's pass, and not brought back by a rebuild (which marks the
 * entry of one that expired while stopped dead too). */
static void
test_expiry(void **state)
{
	fx_t *f = fx_new(100);
	om_ix_obj_t past[2], keep, later[2];
	om_maint_stats_t ms;
	om_rebuild_stats_t rs;
	om_get_t g;

	(void)state;
	for (int eph = 0; eph < 2; eph++) {
		int tier = eph ? OM_TIER_MEM : OM_TIER_DISK;
		char uri[32];

		snprintf(uri, sizeof(uri), "/past/%d", eph);
		assert_int_equal(put_exp(f, uri, 100, 1, eph, om_time_s() - 1, &past[eph]), 0);
		assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), -ENOENT);
		assert_int_equal(state_of(f, tier, past[eph].loc), OM_PACK_LIVE);
		snprintf(uri, sizeof(uri), "/later/%d", eph);
		assert_int_equal(put_exp(f, uri, 200, 2, eph, om_time_s() + 2, &later[eph]), 0);
	}
	assert_int_equal(put_exp(f, "/keep", 300, 3, 0, 0, &keep), 0);
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.expired, 2);
	assert_int_equal(state_of(f, OM_TIER_DISK, past[0].loc), OM_PACK_DEAD);
	assert_int_equal(state_of(f, OM_TIER_MEM, past[1].loc), OM_PACK_DEAD);
	assert_int_equal(state_of(f, OM_TIER_DISK, later[0].loc), OM_PACK_LIVE);
	/* Stopped; /later expires meanwhile. */
	om_store_close(f->st);
	f->st = NULL;
	while (om_time_s() <= later[0].expires)
		usleep(100000);
	fx_open(f);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 1);
	assert_int_equal(rs.expired_removed, 2);
	assert_int_equal(state_of(f, OM_TIER_DISK, later[0].loc), OM_PACK_DEAD);
	/* The memory tier's pack had nothing live left: removed. */
	{
		uint32_t nos[4];

		assert_int_equal(list_packs(f, OM_TIER_MEM, nos, 4), 0);
	}
	{
		unsigned char want[300];

		om_test_fill(want, sizeof(want), 3);
		assert_int_equal(om_store_get(f->st, "/keep", 5, 0, &g), 0);
		assert_fd_bytes(g.fd, want, sizeof(want));
		close(g.fd);
	}
	assert_int_equal(live_entries(f), 1);
	fx_free(f);
}

/* A memory tier of 64 KiB takes 100 packed objects of 2,000 bytes by
 * evicting: the objects left are whole, their entries the only live
 * ones, the evicted ones' entries dead. */
static void
test_eviction(void **state)
{
	fx_t *f = fx_new(1000);
	om_store_usage_t u;
	unsigned found = 0;
	char uri[32];

	(void)state;
	om_store_close(f->st);
	f->p.mem.limit = 64 * 1024;
	fx_open(f);
	for (int i = 0; i < 100; i++) {
		snprintf(uri, sizeof(uri), "/ev/%d", i);
		assert_int_equal(put_seed(f, uri, 2000, (uint64_t)i + 1, 1, NULL), 0);
	}
	assert_true(om_store_stats(f->st)->evicted[OM_TIER_MEM] > 0);
	om_store_usage(f->st, &u);
	assert_true(u.used[OM_TIER_MEM] <= 64 * 1024);
	for (int i = 0; i < 100; i++) {
		snprintf(uri, sizeof(uri), "/ev/%d", i);
		if (om_store_stat(f->st, uri, strlen(uri), NULL) != 0)
			continue;
		check_obj(f, uri, 2000, (uint64_t)i + 1);
		found++;
	}
	print_message("a memory tier of 64 KiB: %u of 100 objects of 2,000 bytes left, %" PRIu64 " evicted\n",
	    found, om_store_stats(f->st)->evicted[OM_TIER_MEM]);
	assert_int_equal(found, u.ephemeral);
	assert_int_equal(found + om_store_stats(f->st)->evicted[OM_TIER_MEM], 100);
	assert_int_equal(live_entries(f), found);
	/* The most recent ones are kept. */
	check_obj(f, "/ev/99", 2000, 100);
	fx_free(f);
}

/* ---- durability = fsync ------------------------------------------------- */

static void
test_durable_fsync(void **state)
{
	fx_t *f = fx_new(100);
	om_ix_obj_t a, b;
	om_rebuild_stats_t rs;

	(void)state;
	om_store_close(f->st);
	f->p.durability = OM_DURABLE_FSYNC;
	fx_open(f);
	assert_int_equal(put_seed(f, "/d", 3000, 1, 0, &a), 0);
	assert_true(a.flags & OM_IX_F_PACKED);
	check_obj(f, "/d", 3000, 1);
	assert_int_equal(put_seed(f, "/d", 100, 2, 0, &b), 0);
	assert_int_equal(state_of(f, OM_TIER_DISK, a.loc), OM_PACK_DEAD);
	check_obj(f, "/d", 100, 2);
	assert_int_equal(put_seed(f, "/e", 50, 3, 1, &a), 0);
	assert_int_equal(om_store_delete(f->st, "/d", 2), 0);
	assert_int_equal(state_of(f, OM_TIER_DISK, b.loc), OM_PACK_DEAD);
	assert_int_equal(om_store_stat(f->st, "/d", 2, NULL), -ENOENT);
	fx_restart(f, &rs);
	assert_int_equal(rs.objects, 1);
	check_obj(f, "/e", 50, 3);
	fx_free(f);
}

/* ---- writers killed at random moments ----------------------------------- */

#define KW_KEYS 400

typedef struct {
	uint64_t seed; /* 0: absent */
	uint32_t size;
	uint8_t eph;
} kstate_t;

typedef struct {
	kstate_t model[KW_KEYS];
	int32_t inflight_key;
	kstate_t inflight;
	uint64_t acked;
	uint32_t stop;
	uint64_t reads, bad_reads;
	char why[256];
} kshared_t;

static kshared_t *ksh;

static void
kw_uri(char *buf, size_t n, int k)
{
	snprintf(buf, n, "/kw/%d/%.*s", k, k % 40, "a-uri-of-some-length-to-vary-records---");
}

static int
kw_put(fx_t *f, int k, const kstate_t *s)
{
	char uri[128];

	kw_uri(uri, sizeof(uri), k);
	return put_seed(f, uri, s->size, s->seed, s->eph, NULL);
}

static void
kw_writer(fx_t *f, uint64_t rnd, uint64_t seed)
{
	om_store_set_slot(f->st, 3);
	for (;;) {
		int k = (int)(om_test_rand(&rnd) % KW_KEYS);
		kstate_t s = { 0, 0, 0 };
		char uri[128];

		if (om_test_rand(&rnd) % 6 == 0) {
			ksh->inflight = s;
			__atomic_store_n(&ksh->inflight_key, k, __ATOMIC_SEQ_CST);
			kw_uri(uri, sizeof(uri), k);
			(void)om_store_delete(f->st, uri, strlen(uri));
		} else {
			s.seed = ++seed;
			s.size = (uint32_t)(om_test_rand(&rnd) % 10 == 0 ? PACK_MAX + om_test_rand(&rnd) % 4000 :
			    om_test_rand(&rnd) % (PACK_MAX + 1));
			s.eph = om_test_rand(&rnd) % 3 == 0;
			ksh->inflight = s;
			__atomic_store_n(&ksh->inflight_key, k, __ATOMIC_SEQ_CST);
			if (kw_put(f, k, &s) != 0)
				_exit(2);
		}
		ksh->model[k] = s;
		__atomic_store_n(&ksh->inflight_key, -1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&ksh->acked, 1, __ATOMIC_SEQ_CST);
	}
}

/* The object of key k now: its state (seed from its metadata), or absent.
 * Fails on a partial or mixed object. */
static kstate_t
kw_read(fx_t *f, int k)
{
	static unsigned char want[PACK_MAX + 4000], have[PACK_MAX + 4001];
	kstate_t got = { 0, 0, 0 };
	char uri[128], meta[128];
	uint32_t mlen = 0;
	uint64_t seed = 0;
	om_get_t g;
	ssize_t n;

	kw_uri(uri, sizeof(uri), k);
	if (om_store_get(f->st, uri, strlen(uri), OM_GET_NOTOUCH, &g) != 0)
		return got;
	assert_int_equal(om_store_read_meta(f->st, &g, meta, sizeof(meta) - 1, &mlen, NULL), 0);
	meta[mlen] = '\0';
	assert_int_equal(sscanf(meta, "seed=%" SCNu64, &seed), 1);
	n = pread(g.fd, have, sizeof(have), 0);
	assert_int_equal(n, (ssize_t)g.obj.size);
	om_test_fill(want, (size_t)n, seed);
	if (memcmp(want, have, (size_t)n) != 0)
		fail_msg("key %d: bytes differ from seed %" PRIu64, k, seed);
	got.seed = seed;
	got.size = (uint32_t)n;
	got.eph = g.tier == OM_TIER_MEM;
	close(g.fd);
	return got;
}

/* A reader beside the writer (a process of its own, no cmocka): every
 * object it finds is wholly one version, its bytes those its metadata
 * names. */
static void
kw_reader(fx_t *f, uint64_t rnd)
{
	static unsigned char want[PACK_MAX + 4000], have[PACK_MAX + 4001];

	om_store_set_slot(f->st, 4);
	while (!__atomic_load_n(&ksh->stop, __ATOMIC_SEQ_CST)) {
		int k = (int)(om_test_rand(&rnd) % KW_KEYS);
		char uri[128], meta[128];
		uint32_t mlen = 0;
		uint64_t seed = 0;
		om_get_t g;
		ssize_t n;
		const char *bad = NULL;

		kw_uri(uri, sizeof(uri), k);
		if (om_store_get(f->st, uri, strlen(uri), OM_GET_NOTOUCH, &g) != 0)
			continue;
		if (om_store_read_meta(f->st, &g, meta, sizeof(meta) - 1, &mlen, NULL) != 0) {
			/* Replaced between the GET and the record's read: the
			 * descriptor is still whole, the record gone. */
			close(g.fd);
			continue;
		}
		meta[mlen] = '\0';
		n = pread(g.fd, have, sizeof(have), 0);
		if (sscanf(meta, "seed=%" SCNu64, &seed) != 1)
			bad = "metadata";
		else if (n != (ssize_t)g.obj.size)
			bad = "size";
		else {
			om_test_fill(want, (size_t)n, seed);
			if (memcmp(want, have, (size_t)n) != 0)
				bad = "bytes";
		}
		close(g.fd);
		ksh->reads++;
		if (bad != NULL && ksh->bad_reads++ == 0)
			snprintf(ksh->why, sizeof(ksh->why), "key %d: %s (seed %" PRIu64 ", %zd of %" PRIu64
			    " bytes)", k, bad, seed, n, g.obj.size);
	}
	_exit(0);
}

static int
kw_same(const kstate_t *a, const kstate_t *b)
{
	return a->seed == b->seed && (a->seed == 0 || (a->size == b->size && a->eph == b->eph));
}

static void
test_killed_writers(void **state)
{
	fx_t *f = fx_new(4000);
	uint64_t rnd = 4242, seed = 1, total = 0;
	om_rebuild_stats_t rs;

	(void)state;
	memset(ksh, 0, sizeof(*ksh));
	ksh->inflight_key = -1;
	for (int round = 0; round < 6; round++) {
		uint64_t present = 0, before = ksh->acked;
		pid_t w, r;

		/* Each round's writer appends to packs of its own. */
		fx_reopen(f);
		ksh->stop = 0;
		r = fork();
		assert_true(r >= 0);
		if (r == 0)
			kw_reader(f, rnd + (uint64_t)round);
		w = fork();
		assert_true(w >= 0);
		if (w == 0)
			kw_writer(f, rnd + (uint64_t)round * 1000003, seed + (uint64_t)round * 1000000);
		while (__atomic_load_n(&ksh->acked, __ATOMIC_SEQ_CST) < before + 300)
			usleep(500);
		usleep((useconds_t)(om_test_rand(&rnd) % 3000));
		kill(w, SIGKILL);
		assert_true(WIFSIGNALED(om_test_wait(w)));
		__atomic_store_n(&ksh->stop, 1, __ATOMIC_SEQ_CST);
		om_test_wait(r);
		if (ksh->bad_reads)
			fail_msg("round %d: %" PRIu64 " of %" PRIu64 " reads saw a partial or mixed object: %s",
			    round, ksh->bad_reads, ksh->reads, ksh->why);
		total += ksh->acked - before;
		/* Odd rounds: the master reclaims the slot first; even rounds:
		 * a crash of everything. */
		if (round % 2)
			(void)om_store_reclaim_slot(f->st, 3);
		fx_restart(f, &rs);
		assert_int_equal(rs.corrupt_moved, 0);
		for (int k = 0; k < KW_KEYS; k++) {
			kstate_t got = kw_read(f, k);
			const kstate_t *m = &ksh->model[k];

			if (kw_same(&got, m)) {
				present += got.seed != 0;
				continue;
			}
			if (k == ksh->inflight_key && kw_same(&got, &ksh->inflight)) {
				/* The in-flight version landed: it is the model now. */
				ksh->model[k] = got;
				present += got.seed != 0;
				continue;
			}
			fail_msg("round %d, key %d: rebuilt seed %" PRIu64 " size %u, acknowledged seed %"
			    PRIu64 " size %u (in flight: key %d seed %" PRIu64 ")", round, k, got.seed,
			    got.size, m->seed, m->size, ksh->inflight_key, ksh->inflight.seed);
		}
		ksh->inflight_key = -1;
		assert_int_equal(rs.objects, present);
		assert_int_equal((uint64_t)live_entries(f) + (uint64_t)object_files(f), present);
		/* Objects found are readable after a compaction too. */
		fx_reopen(f);
		(void)om_store_compact(f->st, UINT64_MAX);
		for (int k = 0; k < KW_KEYS; k += 7) {
			kstate_t got = kw_read(f, k);

			assert_true(kw_same(&got, &ksh->model[k]));
		}
	}
	print_message("%" PRIu64 " acknowledged writes by 6 killed writers, %" PRIu64 " reads beside them\n",
	    total, ksh->reads);
	assert_true(ksh->reads > 0);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sizes_both_tiers),
		cmocka_unit_test(test_descriptor_private_and_read_only),
		cmocka_unit_test(test_memfd_from_mapping),
		cmocka_unit_test(test_replace_and_delete_mark_dead),
		cmocka_unit_test(test_rebuild_live_entries_only),
		cmocka_unit_test(test_torn_tail),
		cmocka_unit_test(test_damaged_entry_is_skipped_by_the_rebuild),
		cmocka_unit_test(test_scrub_quarantines_packed),
		cmocka_unit_test(test_writer_pack_removed),
		cmocka_unit_test(test_compaction),
		cmocka_unit_test(test_compaction_pack_compacted_in_turn),
		cmocka_unit_test(test_follow_closes_removed_packs),
		cmocka_unit_test(test_compaction_large_metadata),
		cmocka_unit_test(test_duplicate_entries_rebuild_once),
		cmocka_unit_test(test_duplicate_entries_many_packs),
		cmocka_unit_test(test_reclaim_dead_writer),
		cmocka_unit_test(test_reclaim_keeps_indexed_entry),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_eviction),
		cmocka_unit_test(test_durable_fsync),
		cmocka_unit_test(test_killed_writers),
	};

	ksh = mmap(NULL, sizeof(*ksh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (ksh == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
