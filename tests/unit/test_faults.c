/*
 * Crash points and injected faults in the storage engine, through the
 * fault layer (tests/lib/om_fault.c, linked into this binary: the
 * engine's system calls go through its wrappers).
 *
 * For each operation (PUT from a buffer, streamed, from a descriptor on
 * the same and on another filesystem, ephemeral, replace, replace with
 * temporary names and with fsync, delete, promotion, eviction by a PUT and
 * by the cache manager, the rebuild and the opening of the tiers), a child
 * first runs it with the layer counting, which gives the N calls it makes;
 * then, for every k = 1 .. N, a fresh copy of the same world is built and
 * a child runs the operation with the k-th call hit:
 *
 *  - kill: the child dies with SIGKILL at the call. "Restart": a new
 *    index is rebuilt from the files as they were left. "Survivor": the
 *    index the child shared is kept, the dead child's slot is reclaimed
 *    (as the master does) and the locks repaired; then a restart too,
 *    which must find the same state.
 *  - ENOSPC, EIO, EMFILE, EINTR: the call fails without doing anything;
 *    short: a data call moves half the bytes. The operation must return
 *    the injected error (or succeed if it absorbed it; a short write or
 *    an EINTR on a data call must be absorbed), leak no descriptor, and
 *    leave the store serving; then a restart too.
 *
 * After each: the index passes its consistency check; every object is
 * the old or the new version (only the one the operation touches may be
 * new; after a failure, only the old, but for a DELETE whose directory
 * sync failed after it removed the file), byte for byte, with its checksum,
 * metadata, record, mode and copy; the index holds nothing else; and the
 * tiers hold exactly the files of the indexed objects, nothing in tmp/
 * or corrupt/.
 *
 * make check enumerates every k of every operation except the directory
 * walk of the rebuild and the directory creation of the opening, which it
 * samples; make check-faults (OM_FAULTS_FULL=1) takes every k of the
 * walk and every 4th of the creation. A last test fills tiers on small
 * tmpfs mounts of their own.
 *
 * While working on a finding: OM_FAULTS_ONLY=GLOB runs the tests whose
 * names match (test_replace*), and OM_FAULTS_KEEP_GOING=1 prints every
 * failed check ("FINDING: ...") instead of stopping at the first.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "store/om_store.h"
#include "store/store_meta.h"
#include "om_fault.h"
#include "om_packs.h"
#include "om_test.h"

#define NK        12
#define MAXOBJ    (320 * 1024)
#define SLOT_KID  1

typedef struct {
	uint64_t seed;   /* 0 = absent */
	uint32_t size;
	uint8_t eph;
	uint8_t copy;    /* a promoted copy in the memory tier */
	int64_t expires;
} ver_t;

typedef struct {
	char uri[48];
	ver_t base;      /* before the operation */
	ver_t done;      /* after it */
	uint8_t victim;  /* may be evicted or expired, whatever the outcome */
} fkey_t;

enum op {
	OP_PUT, OP_PUT_STREAM, OP_PUT_FD, OP_PUT_FD_XDEV, OP_PUT_EPH, OP_REPLACE, OP_REPLACE_EPH,
	OP_PUT_TMPNAME, OP_REPLACE_FSYNC, OP_DELETE, OP_DELETE_FSYNC, OP_PROMOTE, OP_EVICT_PUT,
	OP_MAINTAIN, OP_REBUILD, OP_OPEN,
	/* The same over packs (pack_max 16 KiB: every object of the world is
	 * an entry of a pack but /f/big, which is a file with a copy). */
	OP_PK_PUT, OP_PK_PUT_EPH, OP_PK_REPLACE, OP_PK_REPLACE_EPH, OP_PK_REPLACE_FSYNC, OP_PK_GROW,
	OP_PK_SHRINK, OP_PK_DELETE, OP_PK_DELETE_FSYNC, OP_PK_EVICT_PUT, OP_PK_MAINTAIN, OP_PK_COMPACT,
	OP_PK_REBUILD, OP_N
};

static const char *const op_names[OP_N] = {
	"PUT (buffer)", "PUT (streamed, 300 KiB)", "PUT (descriptor)", "PUT (descriptor, other fs)",
	"PUT (ephemeral)", "replace (with copy)", "replace (ephemeral)", "replace (temporary names)",
	"replace (fsync)", "delete (with copy)", "delete (fsync)", "promotion", "eviction by a PUT",
	"eviction + expiry (manager)", "rebuild", "opening the tiers",
	"packed: PUT", "packed: PUT (ephemeral)", "packed: replace", "packed: replace (ephemeral)",
	"packed: replace (fsync)", "packed: replace by a file", "packed: a file replaced by an entry",
	"packed: delete", "packed: delete (fsync)", "packed: eviction by a PUT",
	"packed: eviction + expiry (manager)", "packed: compaction (manager)", "packed: rebuild",
};

#define PACK_MAX 16384

/* What an operation over packs does, as the operation over files it
 * mirrors: how it is run and which outcomes it may have. */
static enum op
base_op(enum op op)
{
	static const enum op base[] = {
		[OP_PK_PUT] = OP_PUT, [OP_PK_PUT_EPH] = OP_PUT_EPH, [OP_PK_REPLACE] = OP_REPLACE,
		[OP_PK_REPLACE_EPH] = OP_REPLACE_EPH, [OP_PK_REPLACE_FSYNC] = OP_REPLACE_FSYNC,
		[OP_PK_GROW] = OP_REPLACE, [OP_PK_SHRINK] = OP_REPLACE, [OP_PK_DELETE] = OP_DELETE,
		[OP_PK_DELETE_FSYNC] = OP_DELETE_FSYNC, [OP_PK_EVICT_PUT] = OP_EVICT_PUT,
		[OP_PK_MAINTAIN] = OP_MAINTAIN, [OP_PK_COMPACT] = OP_MAINTAIN, [OP_PK_REBUILD] = OP_REBUILD,
	};

	return op >= OP_PK_PUT ? base[op] : op;
}

enum kind { K_KILL, K_ENOSPC, K_EIO, K_EMFILE, K_EINTR, K_SHORT, K_N };
static const char *const kind_names[K_N] = { "kill", "ENOSPC", "EIO", "EMFILE", "EINTR", "short" };
static const int kind_err[K_N] = { 0, ENOSPC, EIO, EMFILE, EINTR, 0 };

enum outcome { O_OK, O_FAILED, O_KILLED };
enum view { V_INPLACE, V_RESTART, V_SURVIVOR };

typedef struct {
	char root[256];    /* $TMPDIR/omtest.X */
	char memroot[256]; /* /dev/shm/omtest.X */
	char disk[300], mem[300];
	char src_disk[300], src_mem[300];
	char aside_disk[300], aside_mem[300];
	om_index_t *ix;
	om_store_t *st;
	om_store_params_t p;
	fkey_t keys[NK];
	int nkeys;
	int target;       /* key the operation changes, or -1 */
	enum op op;
	enum op bop;      /* base_op(op) */
	int packed;       /* the tiers' pack_max is PACK_MAX */
	uint64_t garbage[8]; /* rebuild: ids of files it should remove */
	int ngarbage;
	uint64_t id_hi;   /* above every id issued in this run */
} world_t;

/* Shared with the children. */
typedef struct {
	int rc;
	int fd_leak;
	int verified;     /* rebuild, opening: the child checked its own index */
	int compacted;    /* packs the compaction removed */
	char why[1024];
	om_maint_stats_t ms;
} shared_t;

/* Figures for the summary (and docs/ARCHITECTURE.md). */
typedef struct {
	unsigned calls[OP_N];        /* N of the op (all its passes) */
	unsigned ks[OP_N];           /* k values enumerated */
	unsigned runs[OP_N][K_N];
	unsigned absorbed[OP_N][K_N];
	unsigned call_hits[OM_FC_NCALLS];
	unsigned moved_aside;        /* runs where a file went to tmp/ID.dropped */
} figures_t;

static shared_t *sh;
static om_fault_ctl_t *ctl;
static unsigned dropped_files;
/* Entries noted in tmp/ to be killed at the next start (tmp/ID.LOC.dead,
 * where marking them dead failed), per tier, as list_tier found them. */
static uint64_t tombs[2][NK], tomb_locs[2][NK];
static int ntombs[2];
static world_t *W;
static figures_t fig;
static int full_mode;
/*
 * Under AddressSanitizer or valgrind the point is memory errors on the
 * error paths, which one errno exercises as well as three: kill (restart
 * view), EIO and short only; under valgrind also a subset of the
 * operations and every 4th k of the rebuild. make check runs it all.
 */
static int reduced;
#if defined(__SANITIZE_ADDRESS__)
#define OM_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define OM_SANITIZED 1
#endif
#endif
#ifndef OM_SANITIZED
#define OM_SANITIZED 0
#endif
static unsigned char obj_buf[MAXOBJ + 1], want_buf[MAXOBJ];

/* ---- helpers ------------------------------------------------------------ */

static int
whyf(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
whyf(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
	return -1;
}

static void
meta_of(char *buf, size_t n, uint64_t seed)
{
	snprintf(buf, n, "seed=%" PRIu64, seed);
}

/* Open descriptors; with packs, those of packs are counted there instead
 * (the store keeps them open from one operation to the next: the pack it
 * appends to, and those it marks entries dead in). */
static int
count_fds(int *packs)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -1;
	if (packs != NULL)
		*packs = 0;
	while ((de = readdir(d)) != NULL) {
		char link[512];
		ssize_t len;

		if (de->d_name[0] == '.')
			continue;
		len = packs != NULL ? readlinkat(dirfd(d), de->d_name, link, sizeof(link) - 1) : -1;
		if (len > 0) {
			link[len] = '\0';
			if (strstr(link, "/packs/") != NULL) {
				(*packs)++;
				continue;
			}
		}
		n++;
	}
	closedir(d);
	return n;
}

static void
make_file(const char *path, uint64_t seed, size_t size)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

	assert_true(fd >= 0);
	om_test_fill(obj_buf, size, seed);
	assert_int_equal(write(fd, obj_buf, size), (ssize_t)size);
	close(fd);
}

/* ---- the world ---------------------------------------------------------- */

/* Notes the ids issued so far: files can only be named by them. */
static void
note_ids(world_t *w)
{
	if (w->ix != NULL) {
		uint64_t id = om_index_next_id(w->ix);

		if (id > w->id_hi)
			w->id_hi = id;
	}
}

static void
world_open(world_t *w)
{
	om_ix_params_t ip = { .capacity = 64, .max_uri = 128, .hits_max = 16,
		.atime_res_ms = OM_IX_TICK_MS };
	char err[256];
	int rc;

	assert_int_equal(om_index_create(&ip, &w->ix), 0);
	w->p.disk.path = w->disk;
	w->p.mem.path = w->mem;
	rc = om_store_open(&w->p, w->ix, &w->st, err, sizeof(err));
	if (rc != 0)
		fail_msg("om_store_open: %s", err);
}

static void
world_close(world_t *w)
{
	if (w->st != NULL)
		om_store_close(w->st);
	if (w->ix != NULL)
		om_index_close(w->ix);
	w->st = NULL;
	w->ix = NULL;
}

static int
put_ver(om_store_t *st, const char *uri, const ver_t *v)
{
	char meta[64];
	om_put_args_t a = { 0 };

	meta_of(meta, sizeof(meta), v->seed);
	om_test_fill(obj_buf, v->size, v->seed);
	a.size = v->size;
	a.meta = meta;
	a.meta_len = (uint32_t)strlen(meta);
	a.expires = v->expires;
	a.flags = v->eph ? OM_STORE_EPHEMERAL : 0;
	return om_store_put(st, uri, strlen(uri), obj_buf, &a, NULL);
}

static int
add_key(world_t *w, const char *uri, uint64_t seed, uint32_t size, int eph, int64_t expires)
{
	fkey_t *k = &w->keys[w->nkeys];

	assert_true(w->nkeys < NK);
	memset(k, 0, sizeof(*k));
	snprintf(k->uri, sizeof(k->uri), "%s", uri);
	k->base = (ver_t){ seed, size, (uint8_t)eph, 0, expires };
	if (seed != 0)
		assert_int_equal(put_ver(w->st, uri, &k->base), 0);
	k->done = k->base;
	return w->nkeys++;
}

static void
touch(world_t *w, const char *uri, int times)
{
	for (int i = 0; i < times; i++) {
		om_get_t g;

		assert_int_equal(om_store_get(w->st, uri, strlen(uri), 0, &g), 0);
		close(g.fd);
	}
}

static uint64_t
id_of(world_t *w, const char *uri)
{
	om_ix_obj_t o;

	assert_int_equal(om_index_lookup(w->ix, uri, strlen(uri), &o, 0), 0);
	return o.id;
}

static void
obj_path(char *buf, size_t n, const char *tier, uint64_t id)
{
	char name[32];

	om_store_object_name(id, name, sizeof(name));
	snprintf(buf, n, "%s/%s", tier, name);
}

/* Files the rebuild must clean up: an older version of a URI (a crash
 * during a replace), a copy of an older version, an expired object and
 * temporary files. */
/* A file kept aside and put back (with its record file, where the tier
 * keeps records in files), as a crash would leave it. */
static void
keep_aside(world_t *w, int tier, const char *from, const char *to)
{
	assert_int_equal(link(from, to), 0);
	if (om_store_records_in_files(w->st, tier)) {
		char rf[720], rt[720];

		snprintf(rf, sizeof(rf), "%s.r", from);
		snprintf(rt, sizeof(rt), "%s.r", to);
		assert_int_equal(link(rf, rt), 0);
	}
}

static void
put_back(world_t *w, int tier, const char *from, const char *to)
{
	assert_int_equal(link(to, from), 0);
	assert_int_equal(unlink(to), 0);
	if (om_store_records_in_files(w->st, tier)) {
		char rf[720], rt[720];

		snprintf(rf, sizeof(rf), "%s.r", from);
		snprintf(rt, sizeof(rt), "%s.r", to);
		assert_int_equal(link(rt, rf), 0);
		assert_int_equal(unlink(rt), 0);
	}
}

static void
make_garbage(world_t *w)
{
	om_maint_stats_t ms;
	char from[700], to[700];
	uint64_t id;
	ver_t v;
	int s, o;

	s = add_key(w, "/f/stale", 201, 1200, 0, 0);
	id = id_of(w, "/f/stale");
	obj_path(from, sizeof(from), w->disk, id);
	snprintf(to, sizeof(to), "%s/stale", w->aside_disk);
	keep_aside(w, OM_TIER_DISK, from, to);
	v = (ver_t){ 202, 1300, 0, 0, 0 };
	assert_int_equal(put_ver(w->st, "/f/stale", &v), 0);
	w->keys[s].base = w->keys[s].done = v;
	put_back(w, OM_TIER_DISK, from, to);
	w->garbage[w->ngarbage++] = id;

	o = add_key(w, "/f/orphan", 203, 1400, 0, 0);
	touch(w, "/f/orphan", 2);
	assert_int_equal(om_store_maintain(w->st, &ms), 0);
	assert_int_equal(ms.promoted, 1);
	id = id_of(w, "/f/orphan");
	obj_path(from, sizeof(from), w->mem, id);
	snprintf(to, sizeof(to), "%s/orphan", w->aside_mem);
	keep_aside(w, OM_TIER_MEM, from, to);
	v = (ver_t){ 204, 1500, 0, 0, 0 };
	assert_int_equal(put_ver(w->st, "/f/orphan", &v), 0);
	w->keys[o].base = w->keys[o].done = v;
	put_back(w, OM_TIER_MEM, from, to);
	w->garbage[w->ngarbage++] = id;

	v = (ver_t){ 205, 900, 0, 0, om_time_s() - 1 };
	assert_int_equal(put_ver(w->st, "/f/expired", &v), 0);
	w->garbage[w->ngarbage++] = id_of(w, "/f/expired");

	snprintf(to, sizeof(to), "%s/tmp/00000000000000aa.tmp", w->disk);
	make_file(to, 206, 5000);
	snprintf(to, sizeof(to), "%s/tmp/00000000000000bb.copy", w->mem);
	make_file(to, 207, 5000);
}

/* Over packs: packs less than half live that no process appends to, for
 * the compaction. Beside the world's objects, 8 of 3,000 bytes put and
 * deleted in the persistent tier, 4 in the memory tier; then a restart,
 * which leaves no pack being written. */
static void
make_holes(world_t *w)
{
	om_rebuild_stats_t rs;
	char uri[32];

	for (int i = 0; i < 12; i++) {
		ver_t v = { 300 + (uint64_t)i, 3000, i >= 8, 0, 0 };

		snprintf(uri, sizeof(uri), "/f/hole/%d", i);
		assert_int_equal(put_ver(w->st, uri, &v), 0);
	}
	for (int i = 0; i < 12; i++) {
		snprintf(uri, sizeof(uri), "/f/hole/%d", i);
		assert_int_equal(om_store_delete(w->st, uri, strlen(uri)), 0);
	}
	note_ids(w);
	world_close(w);
	world_open(w);
	assert_int_equal(om_store_rebuild(w->st, &rs), 0);
}

/* Over packs, what crashes leave for the rebuild: an older version of a
 * URI still live (a replace killed before it marked the old entry dead),
 * an expired object, temporary files, and a torn tail (an entry cut short
 * at the end of the pack being written). */
static void
make_garbage_packed(world_t *w)
{
	uint8_t live[4], junk[200];
	char path[700], to[700];
	struct stat sb;
	om_ix_obj_t o;
	ver_t v;
	int s, fd;

	om_le32(live, OM_PACK_LIVE);
	s = add_key(w, "/f/stale", 201, 1200, 0, 0);
	assert_int_equal(om_index_lookup(w->ix, "/f/stale", 8, &o, 0), 0);
	assert_true(o.flags & OM_IX_F_PACKED);
	v = (ver_t){ 202, 1300, 0, 0, 0 };
	assert_int_equal(put_ver(w->st, "/f/stale", &v), 0);
	w->keys[s].base = w->keys[s].done = v;
	snprintf(path, sizeof(path), "%s/packs/%06" PRIx32, w->disk, om_store_pack_no(&o));
	fd = open(path, O_WRONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, live, sizeof(live), (off_t)om_store_pack_off(&o) - 8), 4);
	w->garbage[w->ngarbage++] = o.id;

	v = (ver_t){ 205, 900, 0, 0, om_time_s() - 1 };
	assert_int_equal(put_ver(w->st, "/f/expired", &v), 0);
	w->garbage[w->ngarbage++] = id_of(w, "/f/expired");

	snprintf(to, sizeof(to), "%s/tmp/00000000000000aa.tmp", w->disk);
	make_file(to, 206, 5000);

	/* Last: nothing is appended after it. */
	assert_int_equal(om_index_lookup(w->ix, "/f/expired", 10, &o, 0), 0);
	assert_int_equal(om_store_pack_no(&o), (uint32_t)strtoul(strrchr(path, '/') + 1, NULL, 16));
	memset(junk, 0x5a, sizeof(junk));
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal(pwrite(fd, junk, sizeof(junk), sb.st_size), (ssize_t)sizeof(junk));
	close(fd);
}

static uint64_t
disk_used(world_t *w)
{
	om_store_usage_t u;

	om_store_usage(w->st, &u);
	return u.used[OM_TIER_DISK];
}

/* The same starting state for every k of an operation. */
static void
world_setup(world_t *w, enum op op)
{
	enum op b = base_op(op);
	om_maint_stats_t ms;
	int plain, hot, eph, big, nk;

	memset(&w->p, 0, sizeof(w->p));
	w->p.mem.limit = om_test_mem_limit(0);
	w->p.promote_hits = 2;
	w->p.no_tmpfile = op == OP_PUT_TMPNAME;
	w->p.durability = (b == OP_REPLACE_FSYNC || b == OP_DELETE_FSYNC) ? OM_DURABLE_FSYNC :
	    OM_DURABLE_NONE;
	w->packed = op >= OP_PK_PUT;
	w->p.mem.pack_max = w->p.disk.pack_max = w->packed ? PACK_MAX : 0;
	w->nkeys = 0;
	w->ngarbage = 0;
	w->target = -1;
	w->op = op;
	w->bop = b;
	world_open(w);

	plain = add_key(w, "/f/plain", 11, 3000, 0, 0);
	hot = add_key(w, "/f/hot", 12, 5000, 0, 0);
	eph = add_key(w, "/f/eph", 13, 2000, 1, 0);
	big = add_key(w, "/f/big", 14, 100000, 0, 0);
	add_key(w, "/f/a", 15, 1000, 0, 0);
	add_key(w, "/f/b", 16, 1500, 0, 0);
	add_key(w, "/f/c", 17, 2500, 0, om_time_s() + 36000);
	nk = add_key(w, "/f/new", 0, 0, 0, 0);
	/* /f/hot has a copy in the memory tier; over packs /f/big, the one
	 * object that is a file (packed objects are not promoted). */
	touch(w, w->packed ? "/f/big" : "/f/hot", 2);
	assert_int_equal(om_store_maintain(w->st, &ms), 0);
	assert_int_equal(ms.promoted, 1);
	w->keys[w->packed ? big : hot].base.copy = w->keys[w->packed ? big : hot].done.copy = 1;

	switch (op) {
	case OP_PUT:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 101, 3000, 0, 0, 0 };
		break;
	case OP_PUT_STREAM:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 102, 300000, 0, 0, 0 };
		break;
	case OP_PUT_FD:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 103, 200000, 0, 0, 0 };
		make_file(w->src_disk, 103, 200000);
		break;
	case OP_PUT_FD_XDEV:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 104, 150000, 0, 0, 0 };
		make_file(w->src_mem, 104, 150000);
		break;
	case OP_PUT_EPH:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 105, 2500, 1, 0, 0 };
		break;
	case OP_REPLACE:
		w->target = hot;
		w->keys[hot].done = (ver_t){ 106, 4000, 0, 0, 0 };
		break;
	case OP_REPLACE_EPH:
		w->target = eph;
		w->keys[eph].done = (ver_t){ 107, 2200, 1, 0, 0 };
		break;
	case OP_PUT_TMPNAME:
		w->target = plain;
		w->keys[plain].done = (ver_t){ 108, 3300, 0, 0, 0 };
		break;
	case OP_REPLACE_FSYNC:
		w->target = plain;
		w->keys[plain].done = (ver_t){ 109, 80000, 0, 0, 0 };
		break;
	case OP_DELETE:
	case OP_PK_DELETE:
		w->target = hot;
		w->keys[hot].done = (ver_t){ 0 };
		break;
	case OP_DELETE_FSYNC:
	case OP_PK_DELETE_FSYNC:
		w->target = plain;
		w->keys[plain].done = (ver_t){ 0 };
		break;
	case OP_PROMOTE:
		w->target = plain;
		w->keys[plain].done.copy = 1;
		touch(w, "/f/plain", 2);
		break;
	case OP_PK_PUT:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 121, 3000, 0, 0, 0 };
		break;
	case OP_PK_PUT_EPH:
		w->target = nk;
		w->keys[nk].done = (ver_t){ 122, 2500, 1, 0, 0 };
		break;
	case OP_PK_REPLACE:
		w->target = hot;
		w->keys[hot].done = (ver_t){ 123, 4000, 0, 0, 0 };
		break;
	case OP_PK_REPLACE_EPH:
		w->target = eph;
		w->keys[eph].done = (ver_t){ 124, 2200, 1, 0, 0 };
		break;
	case OP_PK_REPLACE_FSYNC:
		w->target = plain;
		w->keys[plain].done = (ver_t){ 125, 6000, 0, 0, 0 };
		break;
	case OP_PK_GROW:
		w->target = plain;
		w->keys[plain].done = (ver_t){ 126, 40000, 0, 0, 0 };
		break;
	case OP_PK_SHRINK:
		w->target = big;
		w->keys[big].done = (ver_t){ 127, 1000, 0, 0, 0 };
		break;
	case OP_PK_COMPACT:
		make_holes(w);
		break;
	case OP_PK_REBUILD:
		make_garbage_packed(w);
		note_ids(w);
		world_close(w);
		break;
	case OP_EVICT_PUT:
	case OP_MAINTAIN:
	case OP_PK_EVICT_PUT:
	case OP_PK_MAINTAIN:
		for (int k = 0; k < w->nkeys; k++)
			if (w->keys[k].base.seed != 0 && !w->keys[k].base.eph) {
				w->keys[k].victim = 1;
				w->keys[k].done = (ver_t){ 0 };
			}
		if (b == OP_EVICT_PUT) {
			/* Over packs the new object is an entry too. */
			uint32_t size = w->packed ? 12000 : 30000;

			w->target = nk;
			w->keys[nk].done = (ver_t){ 110, size, 0, 0, 0 };
			w->p.disk.limit = disk_used(w) + size - 1;
		} else {
			w->p.disk.limit = disk_used(w) - 1;
			w->target = add_key(w, "/f/expired", 111, 700, 0, om_time_s() - 1);
			w->keys[w->target].done = (ver_t){ 0 };
		}
		assert_int_equal(om_store_reconfigure(w->st, &w->p, NULL, 0), 0);
		break;
	case OP_REBUILD:
	case OP_OPEN:
		make_garbage(w);
		note_ids(w);
		world_close(w);
		break;
	default:
		break;
	}
}

/*
 * Lists the object files of a tier; with wipe, removes every file
 * instead. Anything in corrupt/, or in tmp/ unless tolerated, is an
 * error. Every object file is named by an id the index issued, so only
 * the directories of ids below w->id_hi are looked at (all 256 once ids
 * wrap around them).
 */
static int
list_tier(const world_t *w, const char *tier, uint64_t *ids, int cap, int *n, int wipe, int tmp_ok,
    char *why, size_t wn)
{
	static const char *const extra[] = { "tmp", "corrupt" };
	int tfd = open(tier, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	uint64_t recs[2 * NK + 512];
	int nrecs = 0;

	*n = 0;
	if (tfd < 0)
		return whyf(why, wn, "open(%s): %s", tier, strerror(errno));
	for (unsigned i = 0; i < 256 + 2; i++) {
		char sub[8];
		struct dirent *de;
		DIR *d;
		int fd;

		if (i < 256 && w->id_hi < 256 && i >= w->id_hi)
			continue;
		if (i < 256)
			snprintf(sub, sizeof(sub), "%02x", i);
		else
			snprintf(sub, sizeof(sub), "%s", extra[i - 256]);
		fd = openat(tfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0) {
			close(tfd);
			return whyf(why, wn, "open(%s/%s): %s", tier, sub, strerror(errno));
		}
		d = fdopendir(fd);
		while ((de = readdir(d)) != NULL) {
			uint64_t id = 0;
			char *end;

			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (wipe) {
				unlinkat(dirfd(d), de->d_name, 0);
				continue;
			}
			/* tmp_ok 1: anything in tmp/; 2: only files of dropped
			 * objects that could not be unlinked (ID.dropped), and
			 * notes of packed ones that could not be marked dead
			 * (ID.LOC.dead). */
			if (i == 256 && tmp_ok == 2 && strlen(de->d_name) == 32 &&
			    strcmp(de->d_name + 27, ".dead") == 0) {
				int t = strcmp(tier, w->mem) == 0 ? OM_TIER_MEM : OM_TIER_DISK;

				if (ntombs[t] < NK) {
					tombs[t][ntombs[t]] = strtoull(de->d_name, NULL, 16);
					tomb_locs[t][ntombs[t]++] = strtoull(de->d_name + 17, NULL, 16);
				}
				dropped_files++;
				continue;
			}
			if (i == 256 && (tmp_ok == 1 || (tmp_ok == 2 && ((strlen(de->d_name) == 24 &&
			    strcmp(de->d_name + 16, ".dropped") == 0) || (strlen(de->d_name) == 26 &&
			    strcmp(de->d_name + 16, ".r.dropped") == 0))))) {
				dropped_files++;
				continue;
			}
			if (i >= 256) {
				closedir(d);
				close(tfd);
				return whyf(why, wn, "%s/%s/%s is left", tier, sub, de->d_name);
			}
			id = strtoull(de->d_name, &end, 16);
			if (end == de->d_name + 16 && strcmp(end, ".r") == 0 && (id & 0xff) == i) {
				/* A record file: only beside its object (below). */
				if (nrecs < (int)OM_ARRAY_LEN(recs))
					recs[nrecs++] = id;
				continue;
			}
			if (*end != '\0' || strlen(de->d_name) != 16 || (id & 0xff) != i) {
				closedir(d);
				close(tfd);
				return whyf(why, wn, "%s/%s/%s: not an object name", tier, sub, de->d_name);
			}
			if (*n < cap)
				ids[(*n)++] = id;
		}
		closedir(d);
	}
	close(tfd);
	for (int r = 0; r < nrecs; r++) {
		int found = 0;

		for (int k = 0; k < *n && !found; k++)
			found = ids[k] == recs[r];
		if (!found)
			return whyf(why, wn, "%s: the record file of %016" PRIx64 " is left without its object",
			    tier, recs[r]);
	}
	return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int
same_set(uint64_t *a, int na, uint64_t *b, int nb)
{
	qsort(a, (size_t)na, sizeof(*a), cmp_u64);
	qsort(b, (size_t)nb, sizeof(*b), cmp_u64);
	return na == nb && memcmp(a, b, (size_t)na * sizeof(*a)) == 0;
}

static int
read_all(int fd, uint64_t size, char *why, size_t n)
{
	struct stat sb;
	size_t off = 0;

	if (fstat(fd, &sb) != 0 || (uint64_t)sb.st_size != size || size > MAXOBJ)
		return whyf(why, n, "file of %lld bytes, the index says %" PRIu64, (long long)sb.st_size, size);
	if ((sb.st_mode & 07777) != 0440)
		return whyf(why, n, "file mode %o, not 0440", (unsigned)(sb.st_mode & 07777));
	while (off < size) {
		ssize_t r = pread(fd, obj_buf + off, size - off, (off_t)off);

		if (r <= 0)
			return whyf(why, n, "read stopped at %zu of %" PRIu64, off, size);
		off += (size_t)r;
	}
	return 0;
}

static int
check_record(world_t *w, int tier, const char *uri, uint64_t id, int kind, char *why, size_t n)
{
	uint8_t rec[OM_META_REC_MAX];
	om_meta_rec_t r;
	int len = om_store_read_record(w->st, tier, id, rec, sizeof(rec));

	if (len < 0 || om_meta_decode(rec, (size_t)len, &r) != 0)
		return whyf(why, n, "%s: no valid record", uri);
	if (r.id != id || r.kind != kind || r.uri_len != strlen(uri) || memcmp(r.uri, uri, r.uri_len) != 0)
		return whyf(why, n, "%s: record of id %" PRIx64 " kind %d", uri, r.id, r.kind);
	return 0;
}

/* A packed object's record, read from its pack behind the store's back:
 * its one live entry is where the index says, and names it. */
static int
check_pack_record(world_t *w, int tier, const char *uri, const om_ix_obj_t *o, int kind, char *why,
    size_t n)
{
	uint8_t mark[8], rec[OM_META_REC_MAX];
	char path[1400];
	om_meta_rec_t r;
	uint64_t off;
	uint32_t rlen;
	int fd, ok;

	if (om_packs_find(tier == OM_TIER_MEM ? w->mem : w->disk, tier, o->id, path, sizeof(path), &off) != 0)
		return whyf(why, n, "%s: no live entry of %016" PRIx64 " in the packs", uri, o->id);
	if (off != om_store_pack_off(o) || strtoul(strrchr(path, '/') + 1, NULL, 16) != om_store_pack_no(o))
		return whyf(why, n, "%s: its live entry is in %s at %" PRIu64 ", the index says pack %06" PRIx32
		    " at %" PRIu64, uri, path, off, om_store_pack_no(o), om_store_pack_off(o));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return whyf(why, n, "%s: open(%s): %s", uri, path, strerror(errno));
	ok = pread(fd, mark, sizeof(mark), (off_t)off - 8) == 8;
	if (ok) {
		rlen = om_get32(mark + 4);
		ok = rlen <= sizeof(rec) && pread(fd, rec, rlen, (off_t)(off - OM_PACK_ALIGN16(rlen + 8))) ==
		    (ssize_t)rlen && om_meta_decode(rec, rlen, &r) == 0;
	}
	close(fd);
	if (!ok)
		return whyf(why, n, "%s: the record of its entry does not decode", uri);
	if (r.id != o->id || r.kind != kind || r.uri_len != strlen(uri) || memcmp(r.uri, uri, r.uri_len) != 0)
		return whyf(why, n, "%s: the record of its entry: id %" PRIx64 " kind %d", uri, r.id, r.kind);
	return 0;
}

/* Reads the object the index holds for key k: which version it is, and
 * that it is that version whole. */
static int
read_version(world_t *w, const fkey_t *k, const om_ix_obj_t *o, ver_t *got, char *why, size_t n)
{
	int tier = (o->flags & OM_IX_F_EPHEMERAL) ? OM_TIER_MEM : OM_TIER_DISK;
	char meta[128], wn[600];
	uint32_t mlen = 0;
	uint64_t seed = 0;
	int packed = (o->flags & OM_IX_F_PACKED) != 0, rc = -1;
	int fd = packed ? om_store_pack_memfd(w->st, tier, o) : om_store_open_obj(w->st, tier, o->id);

	if (fd < 0)
		return whyf(why, n, "%s: id %" PRIx64 " indexed, its %s cannot be opened: %s", k->uri, o->id,
		    packed ? "entry" : "file", om_strerror(fd));
	if (read_all(fd, o->size, wn, sizeof(wn)) != 0) {
		whyf(why, n, "%s: %s", k->uri, wn);
		goto out;
	}
	if (om_crc32c(0, obj_buf, o->size) != o->crc) {
		whyf(why, n, "%s: checksum differs", k->uri);
		goto out;
	}
	if (om_store_read_meta(w->st, &(om_get_t){ .fd = fd, .tier = tier, .obj = *o }, meta,
	    sizeof(meta) - 1, &mlen, NULL) != 0) {
		whyf(why, n, "%s: no metadata", k->uri);
		goto out;
	}
	meta[mlen] = '\0';
	if (sscanf(meta, "seed=%" SCNu64, &seed) != 1) {
		whyf(why, n, "%s: metadata \"%s\"", k->uri, meta);
		goto out;
	}
	om_test_fill(want_buf, o->size, seed);
	if (memcmp(want_buf, obj_buf, o->size) != 0) {
		whyf(why, n, "%s: bytes are not those of seed %" PRIu64, k->uri, seed);
		goto out;
	}
	if (packed ? check_pack_record(w, tier, k->uri, o, tier == OM_TIER_MEM ? OM_KIND_EPHEMERAL :
	    OM_KIND_PERSIST, why, n) != 0 : check_record(w, tier, k->uri, o->id, tier == OM_TIER_MEM ?
	    OM_KIND_EPHEMERAL : OM_KIND_PERSIST, why, n) != 0)
		goto out;
	if (o->flags & OM_IX_F_COPY) {
		int cfd = om_store_open_obj(w->st, OM_TIER_MEM, o->id);

		if (cfd < 0) {
			whyf(why, n, "%s: flagged with a copy, but it has none", k->uri);
			goto out;
		}
		if (read_all(cfd, o->size, wn, sizeof(wn)) != 0 || memcmp(want_buf, obj_buf, o->size) != 0 ||
		    check_record(w, OM_TIER_MEM, k->uri, o->id, OM_KIND_COPY, wn, sizeof(wn)) != 0) {
			close(cfd);
			whyf(why, n, "%s: its copy differs: %s", k->uri, wn);
			goto out;
		}
		close(cfd);
	}
	*got = (ver_t){ seed, (uint32_t)o->size, (uint8_t)(tier == OM_TIER_MEM),
		(uint8_t)((o->flags & OM_IX_F_COPY) != 0), o->expires };
	rc = 0;
out:
	close(fd);
	return rc;
}

static int
same_ver(const ver_t *a, const ver_t *b)
{
	if (a->seed != b->seed)
		return 0;
	return a->seed == 0 || (a->size == b->size && a->eph == b->eph && a->copy == b->copy &&
	    a->expires == b->expires);
}

static void
ver_str(char *buf, size_t n, const ver_t *v)
{
	if (v->seed == 0)
		snprintf(buf, n, "absent");
	else
		snprintf(buf, n, "seed %" PRIu64 " (%u bytes%s%s)", v->seed, v->size, v->eph ? ", ephemeral" : "",
		    v->copy ? ", with copy" : "");
}

#define A_BASE   1u
#define A_DONE   2u
#define A_GONE   4u /* evicted */
#define A_NOCOPY 8u /* the base version, its copy dropped */

/* What verify tolerates besides the indexed objects' files. */
enum {
	T_STRICT = 0,  /* nothing */
	T_GARBAGE = 1, /* after a rebuild that failed to clean up: the world's
	                * garbage ids and anything in tmp/ (the next start must) */
	T_DROPPED = 2, /* a running store: tmp/ID.dropped, the file of a dropped
	                * object that could not be unlinked (the next start
	                * removes it) */
};

/* Leaves out of ids (and locs beside them, if not NULL) the world's
 * garbage (what a failed rebuild may leave). */
static int
drop_garbage(const world_t *w, uint64_t *ids, uint64_t *locs, int n)
{
	int j = 0;

	for (int i = 0; i < n; i++) {
		int g = 0;

		for (int x = 0; x < w->ngarbage; x++)
			g |= ids[i] == w->garbage[x];
		if (g)
			continue;
		if (locs != NULL)
			locs[j] = locs[i];
		ids[j++] = ids[i];
	}
	return j;
}

/*
 * The state check. allow[k]: the versions key k may be in (A_BASE,
 * A_DONE); observed[k] gets the one it is in.
 */
static int
verify(world_t *w, const unsigned *allow, unsigned *observed, int tolerate, char *why, size_t n)
{
	uint64_t want[2][2 * NK], have[2][2 * NK + 512], wantp[2][NK], wantl[2][NK], havep[2][NK + 64],
	    havel[2][NK + 64];
	int nwant[2] = { 0, 0 }, nhave[2], nwantp[2] = { 0, 0 }, nhavep[2], present = 0;
	char err[256];
	om_ix_usage_t u;

	if (om_index_check(w->ix, err, sizeof(err)) != 0)
		return whyf(why, n, "index check: %s", err);
	for (int i = 0; i < w->nkeys; i++) {
		const fkey_t *k = &w->keys[i];
		ver_t got = { 0 };
		om_ix_obj_t o;
		unsigned m = 0;

		if (om_index_lookup(w->ix, k->uri, strlen(k->uri), &o, 0) == 0) {
			int tier = (o.flags & OM_IX_F_EPHEMERAL) ? OM_TIER_MEM : OM_TIER_DISK;

			if (read_version(w, k, &o, &got, why, n) != 0)
				return -1;
			present++;
			if (o.flags & OM_IX_F_PACKED) {
				wantl[tier][nwantp[tier]] = o.loc;
				wantp[tier][nwantp[tier]++] = o.id;
			}
			else
				want[tier][nwant[tier]++] = o.id;
			if (o.flags & OM_IX_F_COPY)
				want[OM_TIER_MEM][nwant[OM_TIER_MEM]++] = o.id;
		}
		if (same_ver(&got, &k->base))
			m |= A_BASE;
		if (same_ver(&got, &k->done))
			m |= A_DONE;
		if (got.seed == 0)
			m |= A_GONE;
		if (k->base.copy && got.seed == k->base.seed && !got.copy) {
			ver_t nc = k->base;

			nc.copy = 0;
			if (same_ver(&got, &nc))
				m |= A_NOCOPY;
		}
		if (!(m & allow[i])) {
			char g[96], b[96], d[96];

			ver_str(g, sizeof(g), &got);
			ver_str(b, sizeof(b), &k->base);
			ver_str(d, sizeof(d), &k->done);
			return whyf(why, n, "%s is %s; it may be only%s%s%s%s%s%s", k->uri, g,
			    (allow[i] & A_BASE) ? " " : "", (allow[i] & A_BASE) ? b : "",
			    (allow[i] & A_DONE) ? " or " : "", (allow[i] & A_DONE) ? d : "",
			    (allow[i] & A_GONE) ? " or absent" : "", (allow[i] & A_NOCOPY) ? " or without copy" : "");
		}
		if (observed != NULL)
			observed[i] = m & allow[i];
	}
	om_index_usage(w->ix, &u);
	if (u.objects != (uint64_t)present)
		return whyf(why, n, "the index holds %" PRIu64 " objects, %d expected", u.objects, present);
	for (int t = 0; t < 2; t++) {
		const char *path = t == OM_TIER_MEM ? w->mem : w->disk;
		char lw[512];

		note_ids(w);
		ntombs[t] = 0;
		if (list_tier(w, path, have[t], 2 * NK + 512, &nhave[t], 0, tolerate, lw, sizeof(lw)) != 0)
			return whyf(why, n, "%s", lw);
		/* Live entries of packs, each object in one (an entry live
		 * twice is counted twice). */
		nhavep[t] = (int)om_packs_live_at(path, t, havep[t], havel[t], NK + 64);
		if (nhavep[t] > NK + 64)
			return whyf(why, n, "the %s tier's packs hold %d live entries", t ? "persistent" : "memory",
			    nhavep[t]);
		if (tolerate == T_GARBAGE) {
			nhave[t] = drop_garbage(w, have[t], NULL, nhave[t]);
			nhavep[t] = drop_garbage(w, havep[t], havel[t], nhavep[t]);
		}
		/* A noted entry may still be live (the next start kills it),
		 * but never the one the index holds (a compaction notes the
		 * old entry of an object it moved). */
		for (int x = 0; x < ntombs[t]; x++) {
			for (int i = 0; i < nwantp[t]; i++)
				if (wantp[t][i] == tombs[t][x] && wantl[t][i] == tomb_locs[t][x])
					return whyf(why, n, "the entry the index holds of %016" PRIx64 " is noted "
					    "dead in tmp/", tombs[t][x]);
			for (int i = 0; i < nhavep[t]; i++)
				if (havep[t][i] == tombs[t][x] && havel[t][i] == tomb_locs[t][x]) {
					nhavep[t]--;
					havep[t][i] = havep[t][nhavep[t]];
					havel[t][i] = havel[t][nhavep[t]];
					break;
				}
		}
		if (!same_set(want[t], nwant[t], have[t], nhave[t]))
			return whyf(why, n, "the %s tier holds %d object files, the index %d", t ? "persistent" :
			    "memory", nhave[t], nwant[t]);
		if (!same_set(wantp[t], nwantp[t], havep[t], nhavep[t]))
			return whyf(why, n, "the %s tier's packs hold %d live entries, the index %d packed objects",
			    t ? "persistent" : "memory", nhavep[t], nwantp[t]);
	}
	return 0;
}

static void
world_wipe(world_t *w)
{
	uint64_t ids[4];
	char why[256];
	int n;

	note_ids(w);
	world_close(w);
	list_tier(w, w->disk, ids, 4, &n, 1, 1, why, sizeof(why));
	list_tier(w, w->mem, ids, 4, &n, 1, 1, why, sizeof(why));
	for (int t = 0; t < 2; t++) {
		char dir[320];
		struct dirent *de;
		DIR *d;

		snprintf(dir, sizeof(dir), "%s/packs", t ? w->disk : w->mem);
		if ((d = opendir(dir)) == NULL)
			continue;
		while ((de = readdir(d)) != NULL)
			if (de->d_name[0] != '.')
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
	w->id_hi = 0;
}

static void
world_restart(world_t *w)
{
	om_rebuild_stats_t rs;
	int rc;

	note_ids(w);
	world_close(w);
	world_open(w);
	if ((rc = om_store_rebuild(w->st, &rs)) != 0)
		fail_msg("%s: rebuild after the fault: %s", op_names[w->op], om_strerror(rc));
}

/* The store still takes, serves and deletes an object (limits lifted, so
 * that it evicts nothing the check after it expects). */
static void
assert_serves(world_t *w, const char *ctx)
{
	om_store_params_t p = w->p;
	ver_t v = { 999, 1234, 0, 0, 0 };
	char why[256];
	om_ix_obj_t o;
	fkey_t k = { .uri = "/f/serves" };

	p.disk.limit = 0;
	p.mem.limit = om_test_mem_limit(0);
	assert_int_equal(om_store_reconfigure(w->st, &p, NULL, 0), 0);
	if (put_ver(w->st, k.uri, &v) != 0)
		fail_msg("%s: the store no longer takes a PUT", ctx);
	assert_int_equal(om_index_lookup(w->ix, k.uri, strlen(k.uri), &o, 0), 0);
	{
		ver_t got;

		if (read_version(w, &k, &o, &got, why, sizeof(why)) != 0)
			fail_msg("%s: a PUT after the fault: %s", ctx, why);
	}
	assert_int_equal(om_store_delete(w->st, k.uri, strlen(k.uri)), 0);
	assert_int_equal(om_store_reconfigure(w->st, &w->p, NULL, 0), 0);
}

/* ---- the operation, in a child ------------------------------------------ */

static int
do_op(world_t *w, int src_fd)
{
	const fkey_t *t = w->target >= 0 ? &w->keys[w->target] : NULL;
	om_put_args_t a = { 0 };
	char meta[64];
	int rc;

	/* Only the cache manager's passes have no target. */
	if (t == NULL && w->bop != OP_PROMOTE && w->bop != OP_MAINTAIN)
		return -EINVAL;
	if (t != NULL) {
		meta_of(meta, sizeof(meta), t->done.seed);
		a.size = t->done.size;
		a.meta = meta;
		a.meta_len = (uint32_t)strlen(meta);
		a.flags = t->done.eph ? OM_STORE_EPHEMERAL : 0;
	}
	switch (w->bop) {
	case OP_PUT_STREAM: {
		om_put_txn_t *txn;

		if ((rc = om_store_put_begin(w->st, t->uri, strlen(t->uri), &a, &txn)) != 0)
			return rc;
		for (uint64_t off = 0; off < a.size; off += 60000) {
			size_t n = a.size - off < 60000 ? (size_t)(a.size - off) : 60000;

			if ((rc = om_store_put_write(txn, obj_buf + off, n)) != 0) {
				om_store_put_abort(txn);
				return rc;
			}
		}
		return om_store_put_commit(txn, NULL);
	}
	case OP_PUT_FD:
	case OP_PUT_FD_XDEV:
		return om_store_put_from_fd(w->st, t->uri, strlen(t->uri), src_fd, &a, NULL);
	case OP_DELETE:
	case OP_DELETE_FSYNC:
		return om_store_delete(w->st, t->uri, strlen(t->uri));
	case OP_PROMOTE:
	case OP_MAINTAIN:
		if (w->op == OP_PK_COMPACT) {
			rc = om_store_compact(w->st, 16u << 20);
			sh->compacted = rc > 0 ? rc : 0;
			return rc < 0 ? rc : 0;
		}
		return om_store_maintain(w->st, &sh->ms);
	default:
		return om_store_put(w->st, t->uri, strlen(t->uri), obj_buf, &a, NULL);
	}
}

static void
child_run(world_t *w, uint32_t mask, uint64_t at, enum om_fault_action action, int err)
{
	int src = -1, fds, packs = 0, packs_after = 0;

	alarm(60);
	sh->rc = 0;
	sh->fd_leak = 0;
	sh->verified = 0;
	sh->compacted = 0;
	sh->why[0] = '\0';
	if (w->bop == OP_REBUILD || w->bop == OP_OPEN) {
		om_ix_params_t ip = { .capacity = 64, .max_uri = 128, .hits_max = 16 };
		unsigned allow[NK] = { 0 };
		om_rebuild_stats_t rs;
		char err2[256];
		int rc;

		fds = count_fds(NULL);
		if (om_index_create(&ip, &w->ix) != 0)
			_exit(3);
		w->p.disk.path = w->disk;
		w->p.mem.path = w->mem;
		if (w->bop == OP_OPEN)
			om_fault_arm(ctl, getpid(), mask, at, action, err);
		rc = om_store_open(&w->p, w->ix, &w->st, err2, sizeof(err2));
		if (rc != 0) {
			om_fault_disarm(ctl);
			sh->rc = rc;
			/* The message must say what failed, with the error. */
			if (action == OM_FA_ERRNO && strstr(err2, strerror(err)) == NULL)
				snprintf(sh->why, sizeof(sh->why), "om_store_open says \"%s\"", err2);
			w->st = NULL;
		} else {
			om_store_set_slot(w->st, SLOT_KID);
			if (w->bop == OP_REBUILD)
				om_fault_arm(ctl, getpid(), mask, at, action, err);
			else
				om_fault_disarm(ctl);
			rc = om_store_rebuild(w->st, &rs);
			om_fault_disarm(ctl);
			sh->rc = rc;
			if (rc == 0) {
				for (int i = 0; i < w->nkeys; i++)
					allow[i] = A_BASE;
				if (verify(w, allow, NULL, T_GARBAGE, sh->why, sizeof(sh->why)) == 0)
					sh->verified = 1;
			}
			/* A store opened despite a fault publishes as any other:
			 * with O_TMPFILE and linkat, not temporary names. */
			if (rc == 0 && sh->verified && w->bop == OP_OPEN && ctl->fired != 0) {
				ver_t v = { 998, 100, 0, 0, 0 };
				uint64_t fired = ctl->fired;
				uint32_t fired_call = ctl->fired_call;
				int linked;

				om_fault_arm(ctl, getpid(), 0, 0, OM_FA_COUNT, 0);
				rc = put_ver(w->st, "/f/probe", &v);
				om_fault_disarm(ctl);
				ctl->fired_call = fired_call; /* for the parent's report */
				ctl->fired = fired;
				linked = ctl->per_call[OM_FC_LINKAT] != 0 && ctl->per_call[OM_FC_RENAMEAT] == 0;
				if (rc != 0 || om_store_delete(w->st, "/f/probe", 8) != 0 || !linked) {
					sh->verified = 0;
					snprintf(sh->why, sizeof(sh->why), "after the fault, a PUT %s",
					    rc != 0 ? "fails" : !linked ? "publishes through a temporary name" :
					    "cannot be deleted");
				}
			}
		}
		world_close(w);
		sh->fd_leak = count_fds(NULL) - fds;
		_exit(0);
	}

	om_store_set_slot(w->st, SLOT_KID);
	if (w->bop == OP_PUT_FD || w->bop == OP_PUT_FD_XDEV) {
		src = open(w->bop == OP_PUT_FD ? w->src_disk : w->src_mem, O_RDONLY | O_CLOEXEC);
		if (src < 0)
			_exit(3);
	} else if (w->target >= 0 && w->keys[w->target].done.seed != 0) {
		om_test_fill(obj_buf, w->keys[w->target].done.size, w->keys[w->target].done.seed);
	}
	fds = count_fds(&packs);
	om_fault_arm(ctl, getpid(), mask, at, action, err);
	sh->rc = do_op(w, src);
	om_fault_disarm(ctl);
	sh->fd_leak = count_fds(&packs_after) - fds;
	/* Packs kept open: at most the one appended to and the one marked in,
	 * per tier. */
	if (packs_after > packs + 4)
		sh->fd_leak = packs_after - packs;
	_exit(0);
}

static enum outcome
run_child(world_t *w, uint32_t mask, uint64_t at, enum om_fault_action action, int err)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		child_run(w, mask, at, action, err);
	status = om_test_wait(pid);
	om_fault_disarm(ctl); /* a child killed while armed could not */
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL && ctl->fired != 0)
		return O_KILLED;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("%s: the child ended with status %#x (k = %" PRIu64 ", %s)", op_names[w->op], status,
		    at, om_fault_kind_name(action, err));
	return sh->rc == 0 ? O_OK : O_FAILED;
}

/* ---- one k -------------------------------------------------------------- */

static int
is_put(enum op op)
{
	return op <= OP_REPLACE_FSYNC || op == OP_EVICT_PUT;
}

static void
allow_for(const world_t *w, enum outcome oc, enum kind kind, unsigned fired_call, unsigned *allow)
{
	int either = w->bop == OP_PROMOTE || w->bop == OP_MAINTAIN;
	/* A PUT that finds the filesystem full (creating its files, writing
	 * its bytes or its record, linking them) evicts from its tier. */
	int fs_full = kind == K_ENOSPC && is_put(w->bop) && fired_call < OM_FC_NCALLS &&
	    ((OM_FC_DATA | OM_FC_BIT(OM_FC_OPEN) | OM_FC_BIT(OM_FC_FSETXATTR) |
	    OM_FC_BIT(OM_FC_LINKAT) | OM_FC_BIT(OM_FC_RENAMEAT)) & OM_FC_BIT(fired_call));
	/* Over packs, the sync of the entry too: a filesystem that allocates
	 * at writeback says ENOSPC there, and the PUT evicts and appends the
	 * entry again. */
	fs_full |= kind == K_ENOSPC && is_put(w->bop) && w->packed && fired_call == OM_FC_FSYNC;
	int eph = w->target >= 0 && w->keys[w->target].done.eph;
	/* A DELETE removes the file before the entry, and with durability =
	 * fsync then syncs its directory: a failed sync is an error (the
	 * removal is not known to be durable) of a DELETE that happened. */
	int unsynced = w->bop == OP_DELETE_FSYNC && oc == O_FAILED && fired_call < OM_FC_NCALLS &&
	    ((OM_FC_BIT(OM_FC_OPEN) | OM_FC_BIT(OM_FC_FSYNC)) & OM_FC_BIT(fired_call));

	for (int i = 0; i < w->nkeys; i++) {
		const fkey_t *k = &w->keys[i];

		if (k->victim || oc == O_KILLED || (i == w->target && (either || unsynced)))
			allow[i] = A_BASE | A_DONE;
		else if (i == w->target)
			allow[i] = oc == O_OK ? A_DONE : A_BASE;
		else
			allow[i] = A_BASE;
		if (fs_full && i != w->target && k->base.seed != 0) {
			if (!eph && !k->base.eph)
				allow[i] |= A_GONE;
			if (eph && k->base.eph)
				allow[i] |= A_GONE;
			if (eph && k->base.copy)
				allow[i] |= A_NOCOPY;
		}
	}
}

/* Fails the test, or with OM_FAULTS_KEEP_GOING prints and goes on to the
 * next k (to see every finding at once while fixing them). */
static int keep_going;
static unsigned findings;

static int
bad(const char *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
bad(const char *ctx, const char *fmt, ...)
{
	char msg[1536];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	findings++;
	if (!keep_going)
		fail_msg("%s: %s", ctx, msg);
	print_message("FINDING: %s: %s\n", ctx, msg);
	return -1;
}

static int
check_k(world_t *w, enum outcome oc, enum kind kind, enum view view, const char *ctx)
{
	int err = kind_err[kind];
	unsigned allow[NK] = { 0 }, observed[NK];
	unsigned fired_call = ctl->fired ? ctl->fired_call : OM_FC_NCALLS;
	char why[1024];
	int rebuildish = w->bop == OP_REBUILD || w->bop == OP_OPEN;
	unsigned d0;

	if (oc != O_KILLED) {
		if (sh->fd_leak != 0)
			return bad(ctx, "%d descriptors left open", sh->fd_leak);
		if (sh->why[0] != '\0')
			return bad(ctx, "%s", sh->why);
		if (oc == O_FAILED && !ctl->fired)
			return bad(ctx, "failed (%s) without a fault", om_strerror(sh->rc));
		if (oc == O_FAILED && (kind == K_SHORT ||
		    (kind == K_EINTR && (OM_FC_DATA & OM_FC_BIT(fired_call)))))
			return bad(ctx, "%s (a data call must be retried)", om_strerror(sh->rc));
		if (oc == O_FAILED && sh->rc != -err)
			return bad(ctx, "the operation returned %s, not the error injected", om_strerror(sh->rc));
		if (rebuildish && oc == O_OK && !sh->verified)
			return bad(ctx, "the rebuild succeeded, but did not check");
		/* A PUT that made room keeps its tier within the limit. */
		if (oc == O_OK && w->p.disk.limit && disk_used(w) > w->p.disk.limit)
			return bad(ctx, "the persistent tier is over its limit");
		if (oc == O_OK && ctl->fired)
			fig.absorbed[w->op][kind]++;
	}

	if (rebuildish) {
		/* Whatever the child did, a clean start finds the whole world. */
		world_restart(w);
		for (int i = 0; i < w->nkeys; i++)
			allow[i] = A_BASE;
		if (verify(w, allow, NULL, 0, why, sizeof(why)) != 0)
			return bad(ctx, "after a clean restart: %s", why);
		return 0;
	}

	allow_for(w, oc, kind, fired_call, allow);
	if (view == V_RESTART) {
		world_restart(w);
		if (verify(w, allow, NULL, 0, why, sizeof(why)) != 0)
			return bad(ctx, "after the restart: %s", why);
		assert_serves(w, ctx);
		return 0;
	}
	if (view == V_SURVIVOR)
		om_store_reclaim_slot(w->st, SLOT_KID);
	d0 = dropped_files;
	if (verify(w, allow, observed, T_DROPPED, why, sizeof(why)) != 0)
		return bad(ctx, "%s", why);
	fig.moved_aside += dropped_files != d0;
	assert_serves(w, ctx);
	/* A restart then finds the same state. */
	world_restart(w);
	for (int i = 0; i < w->nkeys; i++)
		allow[i] = observed[i];
	if (verify(w, allow, NULL, 0, why, sizeof(why)) != 0)
		return bad(ctx, "the restart after it disagrees: %s", why);
	return 0;
}

static void
one_k(world_t *w, uint32_t mask, uint64_t k, enum kind kind, enum view view)
{
	enum om_fault_action action = kind == K_KILL ? OM_FA_KILL : kind == K_SHORT ? OM_FA_SHORT :
	    OM_FA_ERRNO;
	enum outcome oc;
	char ctx[256];
	unsigned fired_call;

	world_setup(w, w->op);
	oc = run_child(w, mask, k, action, kind_err[kind]);
	fired_call = ctl->fired ? ctl->fired_call : OM_FC_NCALLS;
	snprintf(ctx, sizeof(ctx), "%s, %s at call %" PRIu64 " (%s)%s", op_names[w->op], kind_names[kind], k,
	    fired_call < OM_FC_NCALLS ? om_fault_call_name(fired_call) : "not reached",
	    view == V_SURVIVOR ? ", survivor" : view == V_RESTART ? ", restart" : "");
	fig.runs[w->op][kind]++;
	if (fired_call < OM_FC_NCALLS)
		fig.call_hits[fired_call]++;
	check_k(w, oc, kind, view, ctx);
	world_wipe(w);
}

/* ---- enumeration -------------------------------------------------------- */

typedef struct {
	uint32_t mask;   /* calls counted; 0 = all */
	unsigned stride; /* every stride-th k (1 = all) */
	unsigned kinds;  /* bit per enum kind; 0 = all */
} pass_t;

static unsigned
passes_of(enum op op, pass_t *ps)
{
	const uint32_t walk = OM_FC_BIT(OM_FC_OPEN) | OM_FC_BIT(OM_FC_READDIR);
	const uint32_t mk = OM_FC_BIT(OM_FC_MKDIRAT) | OM_FC_BIT(OM_FC_FSTATAT);
	const uint32_t all = (1u << OM_FC_NCALLS) - 1;

	if (base_op(op) != OP_REBUILD && base_op(op) != OP_OPEN) {
		ps[0] = (pass_t){ 0, 1, 0 };
		return 1;
	}
	/*
	 * Every call but the directory walk (or the creation of the fan-out
	 * directories), then those: a sample of them in make check; in
	 * check-faults every k of the walk and every 4th of the creation, with
	 * kill and EIO only (each is the same call on another directory, and
	 * every errno takes the same path).
	 */
	if (base_op(op) == OP_REBUILD) {
		ps[0] = (pass_t){ all & ~walk, reduced == 2 ? 4 : 1, 0 };
		ps[1] = (pass_t){ walk, full_mode ? 1 : 41, 0 };
	} else {
		ps[0] = (pass_t){ all & ~mk, 1, 0 };
		ps[1] = (pass_t){ mk, full_mode ? 4 : 53, 0 };
	}
	if (full_mode)
		ps[1].kinds = 1u << K_KILL | 1u << K_EIO;
	return reduced ? 1 : 2;
}

static void
enumerate(enum op op)
{
	world_t *w = W;
	pass_t ps[2];
	unsigned np;

	if (reduced == 2 && op != OP_PUT && op != OP_PUT_FD && op != OP_REPLACE && op != OP_DELETE &&
	    op != OP_PROMOTE && op != OP_EVICT_PUT && op != OP_REBUILD && op != OP_PK_REPLACE &&
	    op != OP_PK_SHRINK && op != OP_PK_COMPACT && op != OP_PK_REBUILD) {
		print_message("%s: skipped under valgrind (make check runs it)\n", op_names[op]);
		return;
	}
	np = passes_of(op, ps);
	int rebuildish = base_op(op) == OP_REBUILD || base_op(op) == OP_OPEN;

	w->id_hi = 256;
	world_wipe(w); /* after a test that failed half-way */
	for (unsigned p = 0; p < np; p++) {
		uint8_t seq[OM_FAULT_SEQ_MAX];
		uint64_t n;
		unsigned allow[NK] = { 0 };
		char why[1024];
		enum outcome oc;

		/* Count: N calls, and which. */
		world_setup(w, op);
		oc = run_child(w, ps[p].mask, 0, OM_FA_COUNT, 0);
		n = ctl->count;
		memcpy(seq, ctl->seq, sizeof(seq));
		if (oc != O_OK || (rebuildish && !sh->verified))
			fail_msg("%s without faults: %s %s", op_names[op], om_strerror(sh->rc), sh->why);
		if (!rebuildish) {
			allow_for(w, O_OK, K_KILL, OM_FC_NCALLS, allow);
			if (verify(w, allow, NULL, 0, why, sizeof(why)) != 0)
				fail_msg("%s without faults: %s", op_names[op], why);
		}
		/* Over packs, the operation took the layout it is named for. */
		if (op == OP_PK_COMPACT && sh->compacted != 2)
			fail_msg("%s without faults: %d packs removed, not 2", op_names[op], sh->compacted);
		if (w->packed && w->target >= 0 && w->keys[w->target].done.seed != 0) {
			const fkey_t *t = &w->keys[w->target];
			om_ix_obj_t o;

			assert_int_equal(om_index_lookup(w->ix, t->uri, strlen(t->uri), &o, 0), 0);
			if (((o.flags & OM_IX_F_PACKED) != 0) != (t->done.size <= PACK_MAX))
				fail_msg("%s: %s of %u bytes is %s", op_names[op], t->uri, t->done.size,
				    (o.flags & OM_IX_F_PACKED) ? "packed" : "a file");
		}
		world_wipe(w);
		assert_true(n > 0);
		fig.calls[op] += (unsigned)n;

		if (p == 0) {
			char list[1024];
			size_t len = 0;

			for (uint64_t i = 0; i < n && i < OM_FAULT_SEQ_MAX && len < 900; i++)
				len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s", i ? " " :
				    "", om_fault_call_name(seq[i]));
			print_message("%s: %" PRIu64 " calls%s%s%s\n", op_names[op], n, rebuildish ? "" : ": ",
			    rebuildish ? "" : list, n > 60 && !rebuildish ? " ..." : "");
		}
		for (uint64_t k = 1; k <= n; k += ps[p].stride) {
			fig.ks[op]++;
			for (int kind = 0; kind < K_N; kind++) {
				if (kind == K_SHORT && (rebuildish || k > OM_FAULT_SEQ_MAX ||
				    !(OM_FC_DATA & OM_FC_BIT(seq[k - 1]))))
					continue;
				if (reduced && kind != K_KILL && kind != K_EIO && kind != K_SHORT)
					continue;
				if (ps[p].kinds != 0 && !(ps[p].kinds & (1u << kind)))
					continue;
				if (kind == K_KILL && !rebuildish) {
					one_k(w, ps[p].mask, k, K_KILL, V_RESTART);
					if (!reduced)
						one_k(w, ps[p].mask, k, K_KILL, V_SURVIVOR);
				} else {
					one_k(w, ps[p].mask, k, (enum kind)kind, rebuildish ? V_RESTART : V_INPLACE);
				}
			}
		}
	}
	{
		char line[512];
		size_t len = 0;

		for (int kind = 0; kind < K_N; kind++)
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %s %u (%u absorbed)",
			    kind_names[kind], fig.runs[op][kind], fig.absorbed[op][kind]);
		print_message("  %u crash points:%s\n", fig.ks[op], line);
	}
}

static int
setup(void **state)
{
	(void)state;
	full_mode = getenv("OM_FAULTS_FULL") != NULL;
	keep_going = getenv("OM_FAULTS_KEEP_GOING") != NULL;
	reduced = om_test_under_valgrind() ? 2 : OM_SANITIZED ? 1 : 0;
	if (full_mode)
		reduced = 0;
	if (reduced)
		print_message("test_faults: under %s, only kill (restart view), EIO and short faults%s; "
		    "make check runs every kind\n", reduced == 2 ? "valgrind" : "a sanitizer",
		    reduced == 2 ? ", and a subset of the operations" : "");
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(sh != MAP_FAILED);
	ctl = om_fault_create(NULL);
	assert_non_null(ctl);
	om_fault_use(ctl);
	W = calloc(1, sizeof(*W));
	om_test_mkdtemp(W->root, sizeof(W->root), NULL);
	om_test_mkdtemp(W->memroot, sizeof(W->memroot), om_test_memdir());
	snprintf(W->disk, sizeof(W->disk), "%s/disk", W->root);
	snprintf(W->mem, sizeof(W->mem), "%s/mem", W->memroot);
	snprintf(W->src_disk, sizeof(W->src_disk), "%s/source", W->root);
	snprintf(W->src_mem, sizeof(W->src_mem), "%s/source", W->memroot);
	snprintf(W->aside_disk, sizeof(W->aside_disk), "%s/aside", W->root);
	snprintf(W->aside_mem, sizeof(W->aside_mem), "%s/aside", W->memroot);
	assert_int_equal(mkdir(W->aside_disk, 0700), 0);
	assert_int_equal(mkdir(W->aside_mem, 0700), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	world_close(W);
	om_test_rmtree(W->root);
	om_test_rmtree(W->memroot);
	free(W);
	om_fault_use(NULL);
	om_fault_destroy(ctl);
	munmap(sh, sizeof(*sh));
	return 0;
}

#define OP_TEST(name, op) \
	static void name(void **state) { (void)state; enumerate(op); }

OP_TEST(test_put, OP_PUT)
OP_TEST(test_put_stream, OP_PUT_STREAM)
OP_TEST(test_put_fd, OP_PUT_FD)
OP_TEST(test_put_fd_xdev, OP_PUT_FD_XDEV)
OP_TEST(test_put_ephemeral, OP_PUT_EPH)
OP_TEST(test_replace, OP_REPLACE)
OP_TEST(test_replace_ephemeral, OP_REPLACE_EPH)
OP_TEST(test_replace_tmpname, OP_PUT_TMPNAME)
OP_TEST(test_replace_fsync, OP_REPLACE_FSYNC)
OP_TEST(test_delete, OP_DELETE)
OP_TEST(test_delete_fsync, OP_DELETE_FSYNC)
OP_TEST(test_promote, OP_PROMOTE)
OP_TEST(test_evict_put, OP_EVICT_PUT)
OP_TEST(test_maintain, OP_MAINTAIN)
OP_TEST(test_rebuild, OP_REBUILD)
OP_TEST(test_open, OP_OPEN)
OP_TEST(test_pk_put, OP_PK_PUT)
OP_TEST(test_pk_put_ephemeral, OP_PK_PUT_EPH)
OP_TEST(test_pk_replace, OP_PK_REPLACE)
OP_TEST(test_pk_replace_ephemeral, OP_PK_REPLACE_EPH)
OP_TEST(test_pk_replace_fsync, OP_PK_REPLACE_FSYNC)
OP_TEST(test_pk_grow, OP_PK_GROW)
OP_TEST(test_pk_shrink, OP_PK_SHRINK)
OP_TEST(test_pk_delete, OP_PK_DELETE)
OP_TEST(test_pk_delete_fsync, OP_PK_DELETE_FSYNC)
OP_TEST(test_pk_evict_put, OP_PK_EVICT_PUT)
OP_TEST(test_pk_maintain, OP_PK_MAINTAIN)
OP_TEST(test_pk_compact, OP_PK_COMPACT)
OP_TEST(test_pk_rebuild, OP_PK_REBUILD)

/* ---- a full tier ---------------------------------------------------------- */

typedef struct {
	world_t *w;
	unsigned objects;
	char *why;
	size_t n;
} full_check_t;

static int
full_check_one(void *arg, const char *uri, size_t len, const om_ix_obj_t *o)
{
	full_check_t *c = arg;
	fkey_t k;
	ver_t got;

	memset(&k, 0, sizeof(k));
	if (len >= sizeof(k.uri))
		return whyf(c->why, c->n, "URI of %zu bytes", len);
	memcpy(k.uri, uri, len);
	c->objects++;
	return read_version(c->w, &k, o, &got, c->why, c->n) != 0 ? -1 : 0;
}

/* Every indexed object whole, the tiers' files exactly those. */
static void
full_check(world_t *w, const char *when)
{
	full_check_t c = { w, 0, NULL, 0 };
	uint64_t ids[2][600];
	int nids[2];
	char why[1024], err[256];
	om_store_usage_t u;

	c.why = why;
	c.n = sizeof(why);
	if (om_index_check(w->ix, err, sizeof(err)) != 0)
		fail_msg("%s: index check: %s", when, err);
	if (om_index_iterate(w->ix, full_check_one, &c) != 0)
		fail_msg("%s: %s", when, why);
	w->id_hi = 256;
	for (int t = 0; t < 2; t++)
		if (list_tier(w, t == OM_TIER_MEM ? w->mem : w->disk, ids[t], 600, &nids[t], 0, T_STRICT, why,
		    sizeof(why)) != 0)
			fail_msg("%s: %s", when, why);
	om_store_usage(w->st, &u);
	if ((uint64_t)nids[0] + (uint64_t)nids[1] != u.objects + u.copies || c.objects != u.objects)
		fail_msg("%s: %d files for %u objects", when, nids[0] + nids[1], c.objects);
}

static int
full_put(world_t *w, const char *uri, uint64_t seed, uint32_t size, int eph, int how)
{
	ver_t v = { seed, size, (uint8_t)eph, 0, 0 };
	om_put_args_t a = { 0 };
	om_put_txn_t *t;
	char meta[64];
	int rc, fd;

	if (how == 0)
		return put_ver(w->st, uri, &v);
	meta_of(meta, sizeof(meta), seed);
	a.size = size;
	a.meta = meta;
	a.meta_len = (uint32_t)strlen(meta);
	a.flags = eph ? OM_STORE_EPHEMERAL : 0;
	if (how == 1) { /* by descriptor, from the disk */
		make_file(w->src_disk, seed, size);
		fd = open(w->src_disk, O_RDONLY | O_CLOEXEC);
		assert_true(fd >= 0);
		rc = om_store_put_from_fd(w->st, uri, strlen(uri), fd, &a, NULL);
		close(fd);
		return rc;
	}
	/* streamed in pieces of 10,000 bytes */
	om_test_fill(obj_buf, size, seed);
	if ((rc = om_store_put_begin(w->st, uri, strlen(uri), &a, &t)) != 0)
		return rc;
	for (uint32_t off = 0; off < size; off += 10000) {
		if ((rc = om_store_put_write(t, obj_buf + off, size - off < 10000 ? size - off : 10000)) != 0) {
			om_store_put_abort(t);
			return rc;
		}
	}
	return om_store_put_commit(t, NULL);
}

/*
 * Tiers on tmpfs mounts of 2 MiB (persistent) and 1 MiB (memory), with
 * limits far above: the filesystem fills first. Every PUT then evicts
 * least recently used objects of its tier and succeeds, whatever its way
 * in (buffer, descriptor, streamed, ephemeral); with the space taken by
 * something else, it evicts what it may and fails with ENOSPC (NO_SPACE
 * in the protocol). Every object the index holds is whole throughout, and
 * after a restart.
 */
static void
test_full_tier(void **state)
{
	world_t *w = calloc(1, sizeof(*w));
	char uri[64], path[400];
	struct statvfs sv;
	int rc, fd;

	(void)state;
	if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0) {
		print_message("full tier: skipped: no mount namespace of our own (%s)\n", strerror(errno));
		free(w);
		skip();
		return;
	}
	*w = *W;
	w->ix = NULL;
	w->st = NULL;
	snprintf(w->disk, sizeof(w->disk), "%s/fulldisk", W->root);
	snprintf(w->mem, sizeof(w->mem), "%s/fullmem", W->root);
	assert_int_equal(mkdir(w->disk, 0700), 0);
	assert_int_equal(mkdir(w->mem, 0700), 0);
	if (mount("tmpfs", w->disk, "tmpfs", 0, "size=2m,mode=0700") != 0 ||
	    mount("tmpfs", w->mem, "tmpfs", 0, "size=1m,mode=0700") != 0) {
		print_message("full tier: skipped: cannot mount tmpfs (%s)\n", strerror(errno));
		umount2(w->disk, MNT_DETACH);
		free(w);
		skip();
		return;
	}
	memset(&w->p, 0, sizeof(w->p));
	w->p.disk.limit = w->p.mem.limit = 64u << 20;
	world_open(w);

	/* Large objects (space reserved at the start), then small ones,
	 * by descriptor, streamed, ephemeral: about 4 times what fits. */
	for (int i = 0; i < 24; i++) {
		snprintf(uri, sizeof(uri), "/full/large/%d", i);
		if ((rc = full_put(w, uri, 1000 + (uint64_t)i, 300000, 0, 0)) != 0)
			fail_msg("%s: %s", uri, om_strerror(rc));
	}
	full_check(w, "large objects");
	assert_int_equal(om_store_stat(w->st, "/full/large/23", 14, NULL), 0);
	for (int i = 0; i < 60; i++) {
		snprintf(uri, sizeof(uri), "/full/small/%d", i);
		if ((rc = full_put(w, uri, 2000 + (uint64_t)i, 40000, 0, 0)) != 0)
			fail_msg("%s: %s", uri, om_strerror(rc));
	}
	full_check(w, "small objects");
	for (int i = 0; i < 30; i++) {
		snprintf(uri, sizeof(uri), "/full/fd/%d", i);
		if ((rc = full_put(w, uri, 3000 + (uint64_t)i, i % 3 ? 50000 : 200000, 0, 1)) != 0)
			fail_msg("%s: %s", uri, om_strerror(rc));
	}
	full_check(w, "by descriptor");
	for (int i = 0; i < 20; i++) {
		snprintf(uri, sizeof(uri), "/full/stream/%d", i);
		if ((rc = full_put(w, uri, 4000 + (uint64_t)i, 100000, 0, 2)) != 0)
			fail_msg("%s: %s", uri, om_strerror(rc));
	}
	full_check(w, "streamed");
	for (int i = 0; i < 30; i++) {
		snprintf(uri, sizeof(uri), "/full/eph/%d", i);
		if ((rc = full_put(w, uri, 5000 + (uint64_t)i, i % 2 ? 30000 : 100000, 1, i % 3 == 0 ? 2 : 0)) != 0)
			fail_msg("%s: %s", uri, om_strerror(rc));
	}
	full_check(w, "ephemeral");
	print_message("full tier: %u PUTs of about 4 times the tiers' space, every one stored "
	    "(%" PRIu64 " + %" PRIu64 " objects evicted)\n", 24 + 60 + 30 + 20 + 30,
	    om_store_stats(w->st)->evicted[OM_TIER_DISK], om_store_stats(w->st)->evicted[OM_TIER_MEM]);

	/* The space taken by something else: two small objects are all the
	 * tier may give up, not enough. */
	for (int i = 0; i < 114; i++) {
		snprintf(uri, sizeof(uri), "/full/%s/%d", i < 24 ? "large" : i < 84 ? "small" : "fd", i < 24 ? i :
		    i < 84 ? i - 24 : i - 84);
		(void)om_store_delete(w->st, uri, strlen(uri));
	}
	for (int i = 0; i < 20; i++) {
		snprintf(uri, sizeof(uri), "/full/stream/%d", i);
		(void)om_store_delete(w->st, uri, strlen(uri));
	}
	assert_int_equal(full_put(w, "/full/keep/1", 6001, 4000, 0, 0), 0);
	assert_int_equal(full_put(w, "/full/keep/2", 6002, 4000, 0, 0), 0);
	snprintf(path, sizeof(path), "%s/ballast", w->disk);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(statvfs(w->disk, &sv), 0);
	assert_int_equal(fallocate(fd, 0, 0, (off_t)(sv.f_bavail * sv.f_frsize) - 8192), 0);
	close(fd);
	rc = full_put(w, "/full/no/large", 7001, 300000, 0, 0);
	if (rc != -ENOSPC)
		fail_msg("a large PUT into a full filesystem: %s, not ENOSPC", om_strerror(rc));
	rc = full_put(w, "/full/no/small", 7002, 40000, 0, 0);
	if (rc != -ENOSPC)
		fail_msg("a small PUT into a full filesystem: %s, not ENOSPC", om_strerror(rc));
	rc = full_put(w, "/full/no/fd", 7003, 40000, 0, 1);
	if (rc != -ENOSPC)
		fail_msg("a PUT by descriptor into a full filesystem: %s, not ENOSPC", om_strerror(rc));
	/* Nothing was evicted for PUTs that could not fit: the space is held
	 * by the ballast, not by the tier's objects. */
	assert_int_equal(om_store_stat(w->st, "/full/keep/1", 12, NULL), 0);
	assert_int_equal(om_store_stat(w->st, "/full/keep/2", 12, NULL), 0);
	full_check(w, "no space");
	/* It still serves, and takes what fits. */
	assert_int_equal(full_put(w, "/full/fits", 7004, 1000, 0, 0), 0);
	full_check(w, "a PUT that fits");

	/* A restart over the full tiers. */
	{
		om_rebuild_stats_t rs;

		world_close(w);
		world_open(w);
		assert_int_equal(om_store_rebuild(w->st, &rs), 0);
		full_check(w, "after a restart");
		assert_int_equal(om_store_stat(w->st, "/full/fits", 10, NULL), 0);
	}
	world_close(w);
	assert_int_equal(umount2(w->disk, MNT_DETACH), 0);
	assert_int_equal(umount2(w->mem, MNT_DETACH), 0);
	rmdir(w->disk);
	rmdir(w->mem);
	free(w);
}

static void
test_summary(void **state)
{
	unsigned ks = 0, runs[K_N] = { 0 }, total = 0, absorbed = 0;
	char line[1024];
	size_t len = 0;

	(void)state;
	for (int op = 0; op < OP_N; op++) {
		ks += fig.ks[op];
		for (int k = 0; k < K_N; k++) {
			runs[k] += fig.runs[op][k];
			total += fig.runs[op][k];
			absorbed += fig.absorbed[op][k];
		}
	}
	for (int k = 0; k < K_N; k++)
		len += (size_t)snprintf(line + len, sizeof(line) - len, "%s%s %u", k ? ", " : "", kind_names[k],
		    runs[k]);
	print_message("fault injection%s: %u crash points, %u runs (%s); %u faults absorbed (the "
	    "operation succeeded)\n", full_mode ? " (full)" : "", ks, total, line, absorbed);
	len = 0;
	for (int c = 0; c < OM_FC_NCALLS; c++)
		if (fig.call_hits[c])
			len += (size_t)snprintf(line + len, sizeof(line) - len, " %s %u", om_fault_call_name(c),
			    fig.call_hits[c]);
	print_message("faults hit, by call:%s\n", line);
	print_message("runs where a dropped object's file could not be unlinked and went to tmp/: %u\n",
	    fig.moved_aside);
	if (findings)
		fail_msg("%u findings (OM_FAULTS_KEEP_GOING)", findings);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put),
		cmocka_unit_test(test_put_stream),
		cmocka_unit_test(test_put_fd),
		cmocka_unit_test(test_put_fd_xdev),
		cmocka_unit_test(test_put_ephemeral),
		cmocka_unit_test(test_replace),
		cmocka_unit_test(test_replace_ephemeral),
		cmocka_unit_test(test_replace_tmpname),
		cmocka_unit_test(test_replace_fsync),
		cmocka_unit_test(test_delete),
		cmocka_unit_test(test_delete_fsync),
		cmocka_unit_test(test_promote),
		cmocka_unit_test(test_evict_put),
		cmocka_unit_test(test_maintain),
		cmocka_unit_test(test_rebuild),
		cmocka_unit_test(test_open),
		cmocka_unit_test(test_pk_put),
		cmocka_unit_test(test_pk_put_ephemeral),
		cmocka_unit_test(test_pk_replace),
		cmocka_unit_test(test_pk_replace_ephemeral),
		cmocka_unit_test(test_pk_replace_fsync),
		cmocka_unit_test(test_pk_grow),
		cmocka_unit_test(test_pk_shrink),
		cmocka_unit_test(test_pk_delete),
		cmocka_unit_test(test_pk_delete_fsync),
		cmocka_unit_test(test_pk_evict_put),
		cmocka_unit_test(test_pk_maintain),
		cmocka_unit_test(test_pk_compact),
		cmocka_unit_test(test_pk_rebuild),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_full_tier),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("OM_FAULTS_ONLY") != NULL) /* a glob over the test names */
		cmocka_set_test_filter(getenv("OM_FAULTS_ONLY"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
