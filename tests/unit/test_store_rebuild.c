/*
 * Rebuild: a new, empty index over existing tiers recovers every committed
 * object (URI, bytes, size, metadata, expiry, tier) and nothing else. The
 * main test writes 10,000 objects, replaces and deletes some, then kills a
 * writer with SIGKILL in the middle of its PUTs while a reader checks that
 * no partial object is ever visible; after the rebuild every acknowledged
 * object is back byte for byte and no temporary file remains.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "store/om_store.h"
#include "om_test.h"

#define NKEYS    12000
#define MAXSIZE  6000

typedef struct {
	uint64_t seed;   /* 0 = absent */
	uint32_t size;
	uint8_t eph;
	int64_t expires;
} state_t;

typedef struct {
	state_t model[NKEYS];
	int32_t inflight_key;
	state_t inflight;
	uint64_t acked;
	uint64_t reads;
	uint64_t bad_reads;
	uint32_t stop;
	char why[256];
} shared_t;

static shared_t *sh;

typedef struct {
	char disk[256];
	char mem[256];
	om_index_t *ix;
	om_store_t *st;
	om_store_params_t p;
	uint32_t capacity;
} fx_t;

static void
fx_index(fx_t *f)
{
	om_ix_params_t ip = { .capacity = f->capacity, .max_uri = 128, .hits_max = 16 };
	char err[256];
	int rc;

	assert_int_equal(om_index_create(&ip, &f->ix), 0);
	f->p.disk.path = f->disk;
	f->p.mem.path = f->mem;
	rc = om_store_open(&f->p, f->ix, &f->st, err, sizeof(err));
	if (rc != 0)
		fail_msg("om_store_open: %s", err);
}

static fx_t *
fx_new(uint32_t capacity)
{
	fx_t *f = calloc(1, sizeof(*f));

	om_test_mkdtemp(f->disk, sizeof(f->disk), NULL);
	om_test_mkdtemp(f->mem, sizeof(f->mem), om_test_memdir());
	f->p.mem.limit = om_test_mem_limit(0);
	f->capacity = capacity;
	fx_index(f);
	return f;
}

/* What a crash of every process leaves: the files, and no index. */
static void
fx_restart(fx_t *f, om_rebuild_stats_t *rs, int expect_rc)
{
	om_store_close(f->st);
	om_index_close(f->ix);
	fx_index(f);
	assert_int_equal(om_store_rebuild(f->st, rs), expect_rc);
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
key_uri(char *buf, size_t n, int k)
{
	snprintf(buf, n, "/rebuild/%05d/%.*s", k, k % 50, "objects-and-their-uris-come-in-many-lengths-------");
}

static int
put_state(om_store_t *st, int k, const state_t *s)
{
	static unsigned char buf[MAXSIZE];
	char uri[128], meta[64];
	om_put_args_t a = { 0 };

	key_uri(uri, sizeof(uri), k);
	om_test_fill(buf, s->size, s->seed);
	snprintf(meta, sizeof(meta), "seed=%" PRIu64 " key=%d", s->seed, k);
	a.size = s->size;
	a.meta = meta;
	a.meta_len = (uint32_t)strlen(meta);
	a.expires = s->expires;
	a.flags = s->eph ? OM_STORE_EPHEMERAL : 0;
	return om_store_put(st, uri, strlen(uri), buf, &a, NULL);
}

static int
del_key(om_store_t *st, int k)
{
	char uri[128];

	key_uri(uri, sizeof(uri), k);
	return om_store_delete(st, uri, strlen(uri));
}

static state_t
new_state(uint64_t *rnd, uint64_t seed)
{
	state_t s;

	s.seed = seed;
	s.size = (uint32_t)(om_test_rand(rnd) % MAXSIZE);
	s.eph = om_test_rand(rnd) % 20 == 0;
	s.expires = om_test_rand(rnd) % 10 == 0 ? om_time_s() + 3600 : 0;
	return s;
}

/*
 * Reads an object and checks it is wholly one version: the metadata names
 * the seed and key, the bytes are exactly those of that seed, the checksum
 * matches. Returns 0, -ENOENT, or -EBADMSG with a reason.
 */
static int
read_check(om_store_t *st, int k, state_t *got, char *why, size_t whylen)
{
	static unsigned char want[MAXSIZE], have[MAXSIZE + 1];
	char uri[128], meta[128];
	uint32_t mlen = 0;
	uint64_t seed = 0;
	int key = -1, rc;
	om_get_t g;
	ssize_t n;

	memset(got, 0, sizeof(*got)); /* absent, whatever happens below */
	key_uri(uri, sizeof(uri), k);
	rc = om_store_get(st, uri, strlen(uri), OM_GET_NOTOUCH, &g);
	if (rc != 0)
		return rc;
	rc = -EBADMSG;
	if (om_store_read_meta(st, &g, meta, sizeof(meta) - 1, &mlen, NULL) != 0) {
		snprintf(why, whylen, "key %d: no metadata", k);
		goto out;
	}
	meta[mlen] = '\0';
	if (sscanf(meta, "seed=%" SCNu64 " key=%d", &seed, &key) != 2 || key != k) {
		snprintf(why, whylen, "key %d: metadata \"%s\"", k, meta);
		goto out;
	}
	if (g.obj.size > MAXSIZE) {
		snprintf(why, whylen, "key %d: size %" PRIu64, k, g.obj.size);
		goto out;
	}
	n = pread(g.fd, have, MAXSIZE + 1, 0);
	if (n != (ssize_t)g.obj.size) {
		snprintf(why, whylen, "key %d: read %zd bytes of %" PRIu64, k, n, g.obj.size);
		goto out;
	}
	om_test_fill(want, (size_t)n, seed);
	if (memcmp(want, have, (size_t)n) != 0 || om_crc32c(0, have, (size_t)n) != g.obj.crc) {
		snprintf(why, whylen, "key %d: bytes differ from seed %" PRIu64, k, seed);
		goto out;
	}
	got->seed = seed;
	got->size = (uint32_t)n;
	got->eph = g.tier == OM_TIER_MEM && (g.obj.flags & OM_IX_F_EPHEMERAL);
	got->expires = g.obj.expires;
	rc = 0;
out:
	close(g.fd);
	return rc;
}

static void
writer(om_store_t *st)
{
	uint64_t rnd = (uint64_t)getpid() * 77 + 1, seed = 1000000;

	om_store_set_slot(st, 1);
	for (;;) {
		int k = (int)(om_test_rand(&rnd) % NKEYS);
		state_t s;

		if (om_test_rand(&rnd) % 5 == 0) {
			s = (state_t){ 0, 0, 0, 0 };
			sh->inflight = s;
			__atomic_store_n(&sh->inflight_key, k, __ATOMIC_SEQ_CST);
			(void)del_key(st, k);
		} else {
			s = new_state(&rnd, ++seed);
			sh->inflight = s;
			__atomic_store_n(&sh->inflight_key, k, __ATOMIC_SEQ_CST);
			if (put_state(st, k, &s) != 0)
				_exit(2);
		}
		sh->model[k] = s;
		__atomic_store_n(&sh->inflight_key, -1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&sh->acked, 1, __ATOMIC_SEQ_CST);
	}
}

static void
reader(om_store_t *st)
{
	uint64_t rnd = (uint64_t)getpid();

	om_store_set_slot(st, 2);
	while (!__atomic_load_n(&sh->stop, __ATOMIC_SEQ_CST)) {
		int k = (int)(om_test_rand(&rnd) % NKEYS);
		state_t got;
		char why[256];
		int rc = read_check(st, k, &got, why, sizeof(why));

		sh->reads++;
		if (rc == -EBADMSG) {
			if (sh->bad_reads++ == 0)
				snprintf(sh->why, sizeof(sh->why), "%s", why);
		}
	}
	_exit(0);
}

static int
same_state(const state_t *a, const state_t *b)
{
	return a->seed == b->seed && a->size == b->size && a->eph == b->eph && a->expires == b->expires;
}

static void
test_rebuild_10000_with_killed_writer(void **state)
{
	fx_t *f = fx_new(20000);
	uint64_t rnd = 12345, seed = 1;
	om_rebuild_stats_t rs;
	pid_t w, r;
	long files, extra;
	uint64_t present = 0;

	(void)state;
	memset(sh, 0, sizeof(*sh));
	sh->inflight_key = -1;
	for (int k = 0; k < 10000; k++) {
		sh->model[k] = new_state(&rnd, seed++);
		assert_int_equal(put_state(f->st, k, &sh->model[k]), 0);
	}
	for (int i = 0; i < 1000; i++) {
		int k = (int)(om_test_rand(&rnd) % 10000);

		sh->model[k] = new_state(&rnd, seed++);
		assert_int_equal(put_state(f->st, k, &sh->model[k]), 0);
	}
	for (int i = 0; i < 1000; i++) {
		int k = (int)(om_test_rand(&rnd) % 10000);

		(void)del_key(f->st, k);
		sh->model[k] = (state_t){ 0, 0, 0, 0 };
	}

	r = fork();
	assert_true(r >= 0);
	if (r == 0)
		reader(f->st);
	w = fork();
	assert_true(w >= 0);
	if (w == 0)
		writer(f->st);
	/* Let it run, then kill it at an arbitrary instant. */
	while (__atomic_load_n(&sh->acked, __ATOMIC_SEQ_CST) < 3000)
		usleep(1000);
	usleep((useconds_t)(om_test_rand(&rnd) % 5000));
	kill(w, SIGKILL);
	{
		int st = om_test_wait(w);

		assert_true(WIFSIGNALED(st));
	}
	__atomic_store_n(&sh->stop, 1, __ATOMIC_SEQ_CST);
	om_test_wait(r);
	if (sh->bad_reads)
		fail_msg("%" PRIu64 " of %" PRIu64 " reads saw a partial or mixed object: %s",
		    sh->bad_reads, sh->reads, sh->why);
	assert_true(sh->reads > 1000);

	fx_restart(f, &rs, 0);
	print_message("rebuilt %" PRIu64 " objects (%" PRIu64 " files) in %.3f s after %" PRIu64
	    " acknowledged writes by the killed writer; %" PRIu64 " reads checked meanwhile\n",
	    rs.objects, rs.files_scanned, rs.seconds, sh->acked, sh->reads);
	assert_int_equal(rs.corrupt_moved, 0);
	assert_int_equal(rs.unknown_skipped, 0);

	for (int k = 0; k < NKEYS; k++) {
		state_t got = { 0, 0, 0, 0 };
		char why[256] = "";
		int rc = read_check(f->st, k, &got, why, sizeof(why));
		const state_t *m = &sh->model[k];

		if (rc == -EBADMSG)
			fail_msg("after rebuild: %s", why);
		if (rc == -ENOENT)
			got = (state_t){ 0, 0, 0, 0 };
		if (same_state(&got, m) || (k == sh->inflight_key && same_state(&got, &sh->inflight))) {
			present += got.seed != 0;
			continue;
		}
		fail_msg("key %d: rebuilt seed %" PRIu64 " size %u eph %u expires %" PRId64
		    ", acknowledged seed %" PRIu64 " size %u eph %u expires %" PRId64, k,
		    got.seed, got.size, got.eph, got.expires, m->seed, m->size, m->eph, m->expires);
	}
	assert_int_equal(rs.objects, present);
	/* Nothing else on disk: one file per object, no temporary files. */
	files = om_test_count_files(f->disk, NULL, NULL) + om_test_count_files(f->mem, NULL, NULL);
	assert_int_equal(files, (long)present);
	om_test_count_files(f->disk, ".tmp", &extra);
	assert_int_equal(extra, 0);
	fx_free(f);
}

/* Pauses a writer inside om_index_put, after its file is linked. */
static void
kill_during_put(fx_t *f, int k, const state_t *s)
{
	int fds[2];
	char c;
	pid_t pid;

	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_test_pause_t pz = { fds[1], 1 };

		om_index_set_hook(f->ix, om_test_pause_hook, &pz);
		(void)put_state(f->st, k, s);
		_exit(0);
	}
	assert_int_equal(read(fds[0], &c, 1), 1);
	kill(pid, SIGKILL);
	om_test_wait(pid);
	close(fds[0]);
	close(fds[1]);
}

static void
test_rebuild_keeps_newer_version(void **state)
{
	fx_t *f = fx_new(100);
	state_t v1 = { 11, 3000, 0, 0 }, v2 = { 22, 1000, 0, 0 }, got;
	om_rebuild_stats_t rs;
	char why[256];

	(void)state;
	assert_int_equal(put_state(f->st, 7, &v1), 0);
	/* The replace dies with both files on disk and the index untouched. */
	kill_during_put(f, 7, &v2);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 2);
	fx_restart(f, &rs, 0);
	assert_int_equal(rs.objects, 1);
	assert_int_equal(rs.stale_removed, 1);
	assert_int_equal(read_check(f->st, 7, &got, why, sizeof(why)), 0);
	assert_true(same_state(&got, &v2));
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	fx_free(f);
}

static void
write_file(const char *dir, const char *name, const char *data)
{
	char path[600];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, strlen(data)), (ssize_t)strlen(data));
	close(fd);
}

static void
test_rebuild_cleans_and_quarantines(void **state)
{
	fx_t *f = fx_new(100);
	state_t keep = { 5, 100, 0, 0 }, hot = { 6, 4096, 0, 0 }, gone = { 7, 10, 0, 0 }, got;
	om_rebuild_stats_t rs;
	om_maint_stats_t ms;
	char why[256], name[32], src[600], dst[600];
	om_ix_obj_t o;
	om_get_t g;
	long n;

	(void)state;
	/* A promoted copy that must come back attached. */
	om_store_close(f->st);
	f->p.promote_hits = 1;
	f->p.promote_max_size = 1 << 20;
	{
		char err[256];

		assert_int_equal(om_store_open(&f->p, f->ix, &f->st, err, sizeof(err)), 0);
	}
	assert_int_equal(put_state(f->st, 1, &keep), 0);
	assert_int_equal(put_state(f->st, 2, &hot), 0);
	assert_int_equal(read_check(f->st, 2, &got, why, sizeof(why)), 0);
	{
		char uri[128];

		key_uri(uri, sizeof(uri), 2);
		assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
		close(g.fd);
	}
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.promoted, 1);
	/* An orphan copy: its object is then deleted behind the store's back
	 * (as if the manager died between the two steps). */
	assert_int_equal(put_state(f->st, 3, &gone), 0);
	{
		char uri[128];

		key_uri(uri, sizeof(uri), 3);
		assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	}
	om_store_object_name(o.id, name, sizeof(name));
	snprintf(src, sizeof(src), "%s/%s", f->disk, name);
	snprintf(dst, sizeof(dst), "%s/%s", f->mem, name);
	{
		/* Make a copy file by hand: same bytes, record of kind "copy". */
		char rec[4096];
		ssize_t rl = getxattr(src, "user.objmapper", rec, sizeof(rec));
		int in = open(src, O_RDONLY), out = open(dst, O_CREAT | O_WRONLY, 0440);
		char data[64];
		ssize_t dl = read(in, data, sizeof(data));

		assert_true(rl > 56 && in >= 0 && out >= 0 && dl == 10);
		assert_int_equal(write(out, data, (size_t)dl), dl);
		rec[5] = 3; /* kind: copy (the record checksum now fails) */
		if (om_store_records_in_files(f->st, OM_TIER_MEM)) {
			char rpath[700];
			int rfd;

			snprintf(rpath, sizeof(rpath), "%s.r", dst);
			rfd = open(rpath, O_CREAT | O_WRONLY | O_TRUNC | O_CLOEXEC, 0440);
			assert_true(rfd >= 0);
			assert_int_equal(write(rfd, rec, (size_t)rl), rl);
			close(rfd);
		} else {
			assert_int_equal(fsetxattr(out, "user.objmapper", rec, (size_t)rl, 0), 0);
		}
		close(in);
		close(out);
	}
	assert_int_equal(unlink(src), 0);
	/* Debris: a foreign file, an object name without a record, a record
	 * for another id, and a temporary file. */
	write_file(f->disk, "00/README", "not an object");
	write_file(f->disk, "01/0000000000000f01", "no record");
	{
		char rec[4096];
		ssize_t rl;
		char path[600], other[600];

		key_uri(path, sizeof(path), 1);
		assert_int_equal(om_store_stat(f->st, path, strlen(path), &o), 0);
		om_store_object_name(o.id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", f->disk, name);
		rl = getxattr(path, "user.objmapper", rec, sizeof(rec));
		assert_true(rl > 0);
		write_file(f->disk, "02/0000000000000e02", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		snprintf(other, sizeof(other), "%s/02/0000000000000e02", f->disk);
		assert_int_equal(setxattr(other, "user.objmapper", rec, (size_t)rl, 0), 0);
	}
	write_file(f->disk, "tmp/00000000000000aa.tmp", "half an object");

	fx_restart(f, &rs, 0);
	assert_int_equal(rs.objects, 2);
	assert_int_equal(rs.copies, 1);
	assert_int_equal(rs.unknown_skipped, 1);
	assert_int_equal(rs.corrupt_moved, 3); /* no record, other id, bad copy record */
	assert_int_equal(rs.temp_removed, 1);
	om_test_count_files(f->disk, "0000000000000f01", &n);
	assert_int_equal(n, 1); /* kept, under corrupt/ */
	{
		char path[600];
		struct stat sb;

		snprintf(path, sizeof(path), "%s/corrupt/0000000000000f01", f->disk);
		assert_int_equal(stat(path, &sb), 0);
		snprintf(path, sizeof(path), "%s/00/README", f->disk);
		assert_int_equal(stat(path, &sb), 0);
	}
	assert_int_equal(read_check(f->st, 1, &got, why, sizeof(why)), 0);
	assert_true(same_state(&got, &keep));
	{
		char uri[128];

		key_uri(uri, sizeof(uri), 2);
		assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
		assert_int_equal(g.tier, OM_TIER_MEM);
		close(g.fd);
	}
	assert_int_equal(read_check(f->st, 3, &got, why, sizeof(why)), -ENOENT);
	fx_free(f);
}

static void
test_rebuild_expired_and_orphan_copy(void **state)
{
	fx_t *f = fx_new(100);
	state_t soon = { 8, 10, 0, 0 }, eph = { 9, 20, 1, 0 }, got;
	om_rebuild_stats_t rs;
	char why[256];

	(void)state;
	soon.expires = om_time_s() + 1;
	assert_int_equal(put_state(f->st, 1, &soon), 0);
	assert_int_equal(put_state(f->st, 2, &eph), 0);
	sleep(2);
	fx_restart(f, &rs, 0);
	assert_int_equal(rs.expired_removed, 1);
	assert_int_equal(rs.objects, 1);
	assert_int_equal(rs.ephemeral, 1);
	assert_int_equal(read_check(f->st, 2, &got, why, sizeof(why)), 0);
	assert_true(same_state(&got, &eph));
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 0);
	assert_int_equal(om_test_count_files(f->mem, NULL, NULL), 1);
	fx_free(f);
}

static void
test_rebuild_temp_names_after_crash(void **state)
{
	fx_t *f = fx_new(100);
	om_rebuild_stats_t rs;
	pid_t pid;
	long n;

	(void)state;
	om_store_close(f->st);
	f->p.no_tmpfile = 1;
	{
		char err[256];

		assert_int_equal(om_store_open(&f->p, f->ix, &f->st, err, sizeof(err)), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_put_txn_t *t;
		om_put_args_t a = { .size = 100 };

		if (om_store_put_begin(f->st, "/half", 5, &a, &t) != 0 ||
		    om_store_put_write(t, "0123456789", 10) != 0)
			_exit(1);
		raise(SIGKILL);
	}
	om_test_wait(pid);
	om_test_count_files(f->disk, ".tmp", &n);
	assert_int_equal(n, 1);
	fx_restart(f, &rs, 0);
	assert_int_equal(rs.temp_removed, 1);
	assert_int_equal(rs.objects, 0);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 0);
	fx_free(f);
}

static void
test_rebuild_index_too_small(void **state)
{
	fx_t *f = fx_new(100);
	om_rebuild_stats_t rs;

	(void)state;
	for (int k = 0; k < 20; k++) {
		state_t s = { (uint64_t)k + 1, 10, 0, 0 };

		assert_int_equal(put_state(f->st, k, &s), 0);
	}
	f->capacity = 10;
	fx_restart(f, &rs, -ENOSPC);
	/* Nothing is deleted because it did not fit. */
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 20);
	f->capacity = 100;
	fx_restart(f, &rs, 0);
	assert_int_equal(rs.objects, 20);
	fx_free(f);
}

/* What a path holds, or -1. */
static long
file_size(const char *dir, const char *name)
{
	char path[600];
	struct stat sb;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static void
get_meta(fx_t *f, const char *uri, const char *want)
{
	char meta[64];
	uint32_t mlen = 0;
	om_get_t g;

	assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
	assert_int_equal(om_store_read_meta(f->st, &g, meta, sizeof(meta), &mlen, NULL), 0);
	close(g.fd);
	assert_int_equal(mlen, strlen(want));
	assert_memory_equal(meta, want, mlen);
}

/*
 * A filesystem without user extended attributes (tmpfs before Linux 6.6):
 * records go into "ID.r" files beside the objects, published before them
 * and removed after them; a restart finds every object with its
 * metadata, removes a record left without its object and quarantines an
 * object without its record.
 */
static void
test_records_in_files(void **state)
{
	fx_t *f = fx_new(100);
	om_put_args_t a = { .size = 5, .meta = "m-disk", .meta_len = 6 };
	om_rebuild_stats_t rs;
	om_ix_obj_t p, e;
	char name[32], rname[40];

	(void)state;
	om_store_close(f->st);
	om_index_close(f->ix);
	f->p.no_xattr = 1;
	fx_index(f);
	assert_int_equal(om_store_records_in_files(f->st, OM_TIER_DISK), 1);
	assert_int_equal(om_store_records_in_files(f->st, OM_TIER_MEM), 1);
	assert_int_equal(om_store_put(f->st, "/p", 2, "disk!", &a, &p), 0);
	a.meta = "m-mem";
	a.meta_len = 5;
	a.flags = OM_STORE_EPHEMERAL;
	assert_int_equal(om_store_put(f->st, "/e", 2, "mem!!", &a, &e), 0);
	assert_int_equal(om_store_put(f->st, "/gone", 5, "bye!!", &a, NULL), 0);

	/* The object file holds its bytes, the record file its record. */
	om_store_object_name(p.id, name, sizeof(name));
	snprintf(rname, sizeof(rname), "%s.r", name);
	assert_int_equal(file_size(f->disk, name), 5);
	assert_true(file_size(f->disk, rname) > 56);
	{
		char path[600], x[8];

		snprintf(path, sizeof(path), "%s/%s", f->disk, name);
		assert_int_equal(getxattr(path, "user.objmapper", x, sizeof(x)), -1);
		assert_int_equal(errno, ENODATA);
	}
	get_meta(f, "/p", "m-disk");
	get_meta(f, "/e", "m-mem");
	/* A deleted object takes its record with it. */
	assert_int_equal(om_store_delete(f->st, "/gone", 5), 0);
	assert_int_equal(om_test_count_files(f->mem, NULL, NULL), 1);
	{
		char rec[4096], dir[300];
		long files = 0;
		DIR *d;

		assert_true(om_store_read_record(f->st, OM_TIER_MEM, e.id, rec, sizeof(rec)) > 56);
		/* Exactly /e and its record are left in the memory tier. */
		om_store_object_name(e.id, name, sizeof(name));
		name[2] = '\0';
		snprintf(dir, sizeof(dir), "%s/%s", f->mem, name);
		d = opendir(dir);
		assert_non_null(d);
		for (struct dirent *de; (de = readdir(d)) != NULL;)
			files += de->d_name[0] != '.';
		closedir(d);
		assert_int_equal(files, 2);
	}

	/* What crashes leave: a record whose object was never linked, and an
	 * object whose record is gone. */
	write_file(f->mem, "07/0000000000000707.r", "a record without its object");
	write_file(f->disk, "08/0000000000000808", "an object without its record");
	fx_restart(f, &rs, 0);
	assert_int_equal(rs.objects, 2);
	assert_int_equal(rs.ephemeral, 1);
	assert_int_equal(rs.corrupt_moved, 1);
	assert_int_equal(rs.temp_removed, 1);
	assert_int_equal(file_size(f->mem, "07/0000000000000707.r"), -1);
	assert_int_equal(file_size(f->disk, "corrupt/0000000000000808"), 28);
	get_meta(f, "/p", "m-disk");
	get_meta(f, "/e", "m-mem");
	fx_free(f);
}

/*
 * A rebuild indexes a file from its record without looking at the file
 * (one system call per file): the size of a file that a power loss left
 * shorter or longer than its record (durability none) is compared at its
 * first open, or by the scrub. Such an object is never served: it is
 * quarantined, and the rest are served and marked checked.
 */
static void
test_rebuild_size_checked_at_first_open(void **state)
{
	fx_t *f = fx_new(256);
	const state_t a = { 101, 3000, 0, 0 }, b = { 102, 2000, 0, 0 }, c = { 103, 1000, 0, 0 },
	    d = { 104, 500, 0, 0 };
	om_rebuild_stats_t rs;
	om_ix_obj_t o;
	om_get_t g;
	state_t got;
	char why[256], uri[128], path[600], name[32];
	uint64_t used = 0;
	uint32_t cursor = 0;
	int keys[4] = { 1, 2, 3, 4 };

	(void)state;
	assert_int_equal(put_state(f->st, 1, &a), 0);
	assert_int_equal(put_state(f->st, 2, &b), 0);
	assert_int_equal(put_state(f->st, 3, &c), 0);
	assert_int_equal(put_state(f->st, 4, &d), 0);
	/* Key 1 cut short, key 3 grown, behind the store's back. */
	for (int i = 0; i < 4; i += 2) {
		key_uri(uri, sizeof(uri), keys[i]);
		assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
		om_store_object_name(o.id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", f->disk, name);
		assert_int_equal(truncate(path, i == 0 ? 100 : 1500), 0);
	}
	fx_restart(f, &rs, 0);
	assert_int_equal(rs.objects, 4);
	assert_int_equal(rs.corrupt_moved, 0);
	/* Every entry waits for its check. */
	for (int i = 0; i < 4; i++) {
		key_uri(uri, sizeof(uri), keys[i]);
		assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
		assert_true(o.flags & OM_IX_F_UNCHECKED);
	}
	/* The first open: the short one is a miss from then on, moved to
	 * corrupt/; an intact one is served and checked once. */
	key_uri(uri, sizeof(uri), 1);
	assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), -ENOENT);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), -ENOENT);
	assert_int_equal(om_store_stats(f->st)->damaged, 1);
	assert_int_equal(read_check(f->st, 2, &got, why, sizeof(why)), 0);
	assert_true(same_state(&got, &b));
	key_uri(uri, sizeof(uri), 2);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	assert_false(o.flags & OM_IX_F_UNCHECKED);
	/* The scrub finds the grown one before anyone asks for it, and
	 * marks the intact ones it reads. */
	while (om_store_scrub(f->st, &cursor, UINT64_MAX, &used) == 0)
		;
	assert_int_equal(om_store_stats(f->st)->damaged, 2);
	key_uri(uri, sizeof(uri), 3);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), -ENOENT);
	key_uri(uri, sizeof(uri), 4);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	assert_false(o.flags & OM_IX_F_UNCHECKED);
	assert_int_equal(read_check(f->st, 4, &got, why, sizeof(why)), 0);
	snprintf(path, sizeof(path), "%s/corrupt", f->disk);
	assert_int_equal(om_test_count_files(path, NULL, NULL), 2);
	fx_free(f);
}

/*
 * Each tier says who its files were written as. A rebuild looks at every
 * file's type and size only where the directory gives no type; as root
 * with another user configured, a tier last written as someone else has
 * every file given to that user, and the next rebuild stats nothing.
 */
static void
test_rebuild_writer_file(void **state)
{
	fx_t *f = fx_new(64);
	const state_t a = { 201, 700, 0, 0 };
	om_rebuild_stats_t rs;
	om_ix_obj_t o;
	char uri[128], path[600], name[32], buf[64];
	struct stat sb;
	int fd;
	ssize_t n;

	(void)state;
	assert_int_equal(put_state(f->st, 1, &a), 0);
	fx_restart(f, &rs, 0);
	snprintf(path, sizeof(path), "%s/.objmapper-writer", f->disk);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	{
		char want[64];

		snprintf(want, sizeof(want), "%lu:%lu\n", (unsigned long)geteuid(), (unsigned long)getegid());
		assert_string_equal(buf, want);
	}
	if (geteuid() != 0) {
		fx_free(f);
		skip();
	}
	/* As root, for uid 65534: the file becomes that user's at the first
	 * rebuild, and the tiers then say so. */
	key_uri(uri, sizeof(uri), 1);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	om_store_object_name(o.id, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", f->disk, name);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 0);
	f->p.set_owner = 1;
	f->p.owner_uid = 65534;
	f->p.owner_gid = (gid_t)-1;
	fx_restart(f, &rs, 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 65534);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	assert_false(o.flags & OM_IX_F_UNCHECKED); /* stat'ed for its owner */
	/* Changed back behind its back: the tier says files are 65534's
	 * already, so the next rebuild trusts it and looks at no file. */
	assert_int_equal(chown(path, 0, 0), 0);
	fx_restart(f, &rs, 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 0);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	assert_true(o.flags & OM_IX_F_UNCHECKED);
	snprintf(path, sizeof(path), "%s/.objmapper-writer", f->disk);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	snprintf(name, sizeof(name), "65534:%lu\n", (unsigned long)getegid());
	assert_string_equal(buf, name);
	fx_free(f);
}

/* As root with another user configured, the packs (small objects, many
 * to a file) are given to that user too: its workers read them. */
static void
test_rebuild_packs_change_owner(void **state)
{
	fx_t *f = fx_new(64);
	const state_t a = { 203, 700, 0, 0 };
	om_rebuild_stats_t rs;
	om_ix_obj_t o;
	char uri[128], dir[300], path[600];
	struct dirent *de;
	struct stat sb;
	DIR *d;

	(void)state;
	if (geteuid() != 0) {
		fx_free(f);
		skip();
	}
	f->p.disk.pack_max = 16u << 10;
	fx_restart(f, &rs, 0);
	assert_int_equal(put_state(f->st, 1, &a), 0);
	key_uri(uri, sizeof(uri), 1);
	assert_int_equal(om_store_stat(f->st, uri, strlen(uri), &o), 0);
	assert_true(o.flags & OM_IX_F_PACKED);
	snprintf(dir, sizeof(dir), "%s/packs", f->disk);
	d = opendir(dir);
	assert_non_null(d);
	path[0] = '\0';
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
	closedir(d);
	assert_int_not_equal(path[0], '\0');
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 0);
	f->p.set_owner = 1;
	f->p.owner_uid = 65534;
	f->p.owner_gid = (gid_t)-1;
	fx_restart(f, &rs, 0);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_uid, 65534);
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rebuild_10000_with_killed_writer),
		cmocka_unit_test(test_rebuild_keeps_newer_version),
		cmocka_unit_test(test_rebuild_cleans_and_quarantines),
		cmocka_unit_test(test_rebuild_expired_and_orphan_copy),
		cmocka_unit_test(test_rebuild_temp_names_after_crash),
		cmocka_unit_test(test_rebuild_index_too_small),
		cmocka_unit_test(test_records_in_files),
		cmocka_unit_test(test_rebuild_size_checked_at_first_open),
		cmocka_unit_test(test_rebuild_writer_file),
		cmocka_unit_test(test_rebuild_packs_change_owner),
	};

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
