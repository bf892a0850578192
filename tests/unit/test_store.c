/*
 * The object store on real directories: the persistent tier on the disk
 * ($TMPDIR, /tmp) and the memory tier on tmpfs (/dev/shm). Byte-exact PUT
 * and GET, immutability of published objects, permissions, expiry, tier
 * limits and LRU eviction, promotion and its undoing, and recovery of a
 * publish whose process died.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <pwd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "store/om_store.h"
#include "om_test.h"

typedef struct {
	char disk[256];
	char mem[256];
	om_index_t *ix;
	om_store_t *st;
	om_store_params_t p;
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

/* Keeps the fixture reachable, so that valgrind's leak check in a forked
 * child that ends with _exit does not count it as lost. */
static fx_t *volatile live_fx;

static fx_t *
fx_new(uint32_t capacity, uint64_t mem_limit, uint64_t disk_limit)
{
	fx_t *f = calloc(1, sizeof(*f));
	om_ix_params_t ip = { .capacity = capacity, .max_uri = 256, .hits_max = 16,
		.atime_res_ms = OM_IX_TICK_MS };

	om_test_mkdtemp(f->disk, sizeof(f->disk), NULL);
	om_test_mkdtemp(f->mem, sizeof(f->mem), om_test_memdir());
	assert_int_equal(om_index_create(&ip, &f->ix), 0);
	f->p.mem.limit = om_test_mem_limit(mem_limit);
	f->p.disk.limit = disk_limit;
	fx_open(f);
	live_fx = f;
	return f;
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

static int
put_buf(fx_t *f, const char *uri, const void *data, uint64_t size, unsigned flags,
    om_ix_obj_t *out)
{
	om_put_args_t a = { .size = size, .flags = flags };

	return om_store_put(f->st, uri, strlen(uri), data, &a, out);
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
	assert_memory_equal(got, want, size);
	free(got);
}

static void
test_put_get_sizes(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 1 << 20, (1 << 20) + 7 };
	fx_t *f = fx_new(1000, 0, 0);
	unsigned char *buf = malloc((1 << 20) + 7);

	(void)state;
	for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
		for (int eph = 0; eph < 2; eph++) {
			char uri[64];
			om_ix_obj_t o;
			om_get_t g;
			struct stat sb;

			snprintf(uri, sizeof(uri), "/size/%zu/%d", sizes[i], eph);
			om_test_fill(buf, sizes[i], i * 2 + (size_t)eph);
			assert_int_equal(put_buf(f, uri, buf, sizes[i], eph ? OM_STORE_EPHEMERAL : 0, &o), 0);
			assert_int_equal(o.crc, om_crc32c(0, buf, sizes[i]));
			assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
			assert_int_equal(g.tier, eph ? OM_TIER_MEM : OM_TIER_DISK);
			assert_int_equal(g.obj.size, sizes[i]);
			assert_int_equal(g.obj.id, o.id);
			assert_fd_bytes(g.fd, buf, sizes[i]);
			/* Read-only description, published mode 0440. */
			assert_int_equal(fcntl(g.fd, F_GETFL) & O_ACCMODE, O_RDONLY);
			assert_int_equal(fstat(g.fd, &sb), 0);
			assert_int_equal(sb.st_mode & 07777, 0440);
			assert_true(fcntl(g.fd, F_GETFD) & FD_CLOEXEC);
			close(g.fd);
		}
	}
	free(buf);
	fx_free(f);
}

static void
test_put_from_fd(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	size_t size = (3 << 20) + 123;
	unsigned char *buf = malloc(size);
	char src[300];
	int fd;

	(void)state;
	om_test_fill(buf, size, 42);
	snprintf(src, sizeof(src), "%s/source", f->disk);
	fd = open(src, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	/* The caller's offset is irrelevant: bytes [0, size) are taken. */
	assert_int_equal(lseek(fd, 100, SEEK_SET), 100);
	for (int eph = 0; eph < 2; eph++) {
		/* Same filesystem (copy_file_range) and tmpfs (fallback). */
		om_put_args_t a = { .size = size, .flags = eph ? OM_STORE_EPHEMERAL : 0 };
		const char *uri = eph ? "/fd/eph" : "/fd/disk";
		om_ix_obj_t o;
		om_get_t g;

		assert_int_equal(om_store_put_from_fd(f->st, uri, strlen(uri), fd, &a, &o), 0);
		assert_int_equal(o.crc, om_crc32c(0, buf, size));
		assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
		assert_fd_bytes(g.fd, buf, size);
		close(g.fd);
	}
	/* A source shorter than declared publishes nothing. */
	{
		om_put_args_t a = { .size = size + 1 };

		assert_int_equal(om_store_put_from_fd(f->st, "/fd/short", 9, fd, &a, NULL), -EINVAL);
		assert_int_equal(om_store_stat(f->st, "/fd/short", 9, NULL), -ENOENT);
	}
	close(fd);
	unlink(src);
	{
		long n = om_test_count_files(f->disk, NULL, NULL);

		assert_int_equal(n, 1);
	}
	free(buf);
	fx_free(f);
}

static void
test_stream_txn(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	unsigned char buf[10000];
	om_put_txn_t *t;
	om_put_args_t a = { .size = sizeof(buf), .meta = "Content-Type: x/y", .meta_len = 17 };
	om_get_t g;
	char meta[64];
	uint32_t mlen = 0;

	(void)state;
	om_test_fill(buf, sizeof(buf), 9);
	assert_int_equal(om_store_put_begin(f->st, "/txn", 4, &a, &t), 0);
	assert_int_equal(om_store_put_write(t, buf, 3), 0);
	assert_int_equal(om_store_put_write(t, buf + 3, 5000), 0);
	/* Bytes written straight into the file (as a splice would). */
	assert_int_equal(pwrite(om_store_put_fd(t), buf + 5003, 4000, 5003), 4000);
	assert_int_equal(lseek(om_store_put_fd(t), 9003, SEEK_SET), 9003);
	assert_int_equal(om_store_put_wrote(t, 4000), 0);
	assert_int_equal(om_store_put_write(t, buf + 9003, 997), 0);
	/* Beyond the declared size is refused. */
	assert_int_equal(om_store_put_write(t, buf, 1), -EFBIG);
	assert_int_equal(om_store_put_commit(t, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/txn", 4, 0, &g), 0);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	assert_int_equal(g.obj.crc, om_crc32c(0, buf, sizeof(buf)));
	assert_int_equal(om_store_read_meta(f->st, &g, meta, sizeof(meta), &mlen, NULL), 0);
	assert_int_equal(mlen, 17);
	assert_memory_equal(meta, "Content-Type: x/y", 17);
	assert_int_equal(om_store_read_meta(f->st, &g, meta, 5, &mlen, NULL), -ERANGE);
	close(g.fd);

	/* Short commit and abort leave nothing behind. */
	assert_int_equal(om_store_put_begin(f->st, "/short", 6, &a, &t), 0);
	assert_int_equal(om_store_put_write(t, buf, 10), 0);
	assert_int_equal(om_store_put_commit(t, NULL), -EINVAL);
	assert_int_equal(om_store_put_begin(f->st, "/aborted", 8, &a, &t), 0);
	assert_int_equal(om_store_put_write(t, buf, 10), 0);
	om_store_put_abort(t);
	assert_int_equal(om_store_stat(f->st, "/short", 6, NULL), -ENOENT);
	assert_int_equal(om_store_stat(f->st, "/aborted", 8, NULL), -ENOENT);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	fx_free(f);
}

/* A commit under a condition (om_store_put_cond) publishes only while the
 * URI holds what the condition names; refused, it leaves no file. */
static void
test_conditional_commit(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	unsigned char buf[5000];
	om_put_args_t a = { .size = sizeof(buf) };
	om_ix_obj_t v1, v2, got;
	om_put_txn_t *t, *t2;

	(void)state;
	om_test_fill(buf, sizeof(buf), 4);
	/* IF_NONE: the URI taken between begin and commit. */
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t), 0);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_NONE, 0), 0);
	assert_int_equal(om_store_put_write(t, buf, sizeof(buf)), 0);
	assert_int_equal(put_buf(f, "/c", buf, 10, 0, &v1), 0);
	assert_int_equal(om_store_put_commit(t, NULL), -ECANCELED);
	assert_int_equal(om_store_stat(f->st, "/c", 2, &got), 0);
	assert_int_equal(got.id, v1.id);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	/* IF_ID: the version replaced meanwhile. */
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t), 0);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_ID, v1.id), 0);
	assert_int_equal(om_store_put_write(t, buf, sizeof(buf)), 0);
	assert_int_equal(put_buf(f, "/c", buf, 20, 0, &v2), 0);
	assert_int_equal(om_store_put_commit(t, NULL), -ECANCELED);
	assert_int_equal(om_store_stat(f->st, "/c", 2, &got), 0);
	assert_int_equal(got.id, v2.id);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	/* IF_ID: the version deleted meanwhile. */
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t), 0);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_ID, v2.id), 0);
	assert_int_equal(om_store_put_write(t, buf, sizeof(buf)), 0);
	assert_int_equal(om_store_delete(f->st, "/c", 2), 0);
	assert_int_equal(om_store_put_commit(t, NULL), -ECANCELED);
	assert_int_equal(om_store_stat(f->st, "/c", 2, NULL), -ENOENT);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 0);
	/* Both hold: published. Two racing creations: the first wins. */
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t), 0);
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t2), 0);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_NONE, 0), 0);
	assert_int_equal(om_store_put_cond(t2, OM_STORE_IF_NONE, 0), 0);
	assert_int_equal(om_store_put_write(t, buf, sizeof(buf)), 0);
	assert_int_equal(om_store_put_write(t2, buf, sizeof(buf)), 0);
	assert_int_equal(om_store_put_commit(t2, &v1), 0);
	assert_int_equal(om_store_put_commit(t, NULL), -ECANCELED);
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t), 0);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_ID, v1.id), 0);
	assert_int_equal(om_store_put_write(t, buf, sizeof(buf)), 0);
	assert_int_equal(om_store_put_commit(t, &v2), 0);
	assert_int_equal(om_store_stat(f->st, "/c", 2, &got), 0);
	assert_int_equal(got.id, v2.id);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	/* Conditions that name nothing. */
	assert_int_equal(om_store_put_begin(f->st, "/c", 2, &a, &t), 0);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_ID, 0), -EINVAL);
	assert_int_equal(om_store_put_cond(t, OM_STORE_IF_NONE, 5), -EINVAL);
	om_store_put_abort(t);
	fx_free(f);
}

static void
test_bad_arguments(void **state)
{
	fx_t *f = fx_new(100, 1 << 20, 1 << 20);
	char uri[300], meta[OM_STORE_META_MAX + 1];
	om_put_args_t a = { .size = 1 };

	(void)state;
	memset(uri, 'u', sizeof(uri));
	memset(meta, 'm', sizeof(meta));
	assert_int_equal(om_store_put(f->st, uri, 0, "x", &a, NULL), -EINVAL);
	assert_int_equal(om_store_put(f->st, uri, 257, "x", &a, NULL), -ENAMETOOLONG);
	a.meta = meta;
	a.meta_len = sizeof(meta);
	assert_int_equal(om_store_put(f->st, "/m", 2, "x", &a, NULL), -EMSGSIZE);
	a.meta_len = OM_STORE_META_MAX;
	assert_int_equal(om_store_put(f->st, "/m", 2, "x", &a, NULL), 0);
	a.meta_len = 0;
	a.size = (1 << 20) + 1;
	assert_int_equal(om_store_put(f->st, "/big", 4, NULL, &a, NULL), -EFBIG);
	a.flags = OM_STORE_EPHEMERAL;
	assert_int_equal(om_store_put(f->st, "/big", 4, NULL, &a, NULL), -EFBIG);
	/* The maximum URI and metadata together fit the on-disk record. */
	{
		om_get_t g;
		uint32_t mlen;
		static char mb[OM_STORE_META_MAX];

		a.size = 1;
		a.flags = 0;
		a.meta = meta;
		a.meta_len = OM_STORE_META_MAX;
		assert_int_equal(om_store_put(f->st, uri, 256, "x", &a, NULL), 0);
		assert_int_equal(om_store_get(f->st, uri, 256, 0, &g), 0);
		assert_int_equal(om_store_read_meta(f->st, &g, mb, sizeof(mb), &mlen, NULL), 0);
		assert_int_equal(mlen, OM_STORE_META_MAX);
		close(g.fd);
	}
	fx_free(f);
}

static void
test_each_get_private_description(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	char a[100], b[100];
	unsigned char buf[8192];
	om_get_t g1, g2;

	(void)state;
	om_test_fill(buf, sizeof(buf), 3);
	assert_int_equal(put_buf(f, "/p", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/p", 2, 0, &g1), 0);
	assert_int_equal(om_store_get(f->st, "/p", 2, 0, &g2), 0);
	/* read() on one moves only its own offset. */
	assert_int_equal(read(g1.fd, a, sizeof(a)), (ssize_t)sizeof(a));
	assert_int_equal(lseek(g1.fd, 0, SEEK_CUR), (off_t)sizeof(a));
	assert_int_equal(lseek(g2.fd, 0, SEEK_CUR), 0);
	assert_int_equal(read(g2.fd, b, sizeof(b)), (ssize_t)sizeof(b));
	assert_memory_equal(a, b, sizeof(a));
	assert_memory_equal(a, buf, sizeof(a));
	close(g1.fd);
	close(g2.fd);
	fx_free(f);
}

static void
test_cannot_write_through_descriptor(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	unsigned char buf[4096];
	om_get_t g;
	void *map;

	(void)state;
	om_test_fill(buf, sizeof(buf), 5);
	assert_int_equal(put_buf(f, "/ro", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/ro", 3, 0, &g), 0);
	assert_int_equal(write(g.fd, "x", 1), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(pwrite(g.fd, "x", 1, 0), -1);
	assert_int_equal(errno, EBADF);
	assert_int_not_equal(ftruncate(g.fd, 0), 0);
	map = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_SHARED, g.fd, 0);
	assert_true(map == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	/* A private writable mapping never reaches the file. */
	map = mmap(NULL, sizeof(buf), PROT_READ | PROT_WRITE, MAP_PRIVATE, g.fd, 0);
	assert_true(map != MAP_FAILED);
	memset(map, 0, sizeof(buf));
	munmap(map, sizeof(buf));
	close(g.fd);
	assert_int_equal(om_store_get(f->st, "/ro", 3, 0, &g), 0);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	close(g.fd);
	fx_free(f);
}

/* A process of another uid, even holding a descriptor, cannot change the
 * object: not through /proc, not by path, not by chmod or unlink. */
static void
test_other_uid_cannot_modify(void **state)
{
	fx_t *f;
	unsigned char buf[4096];
	om_get_t g;
	pid_t pid;
	int status;

	(void)state;
	if (geteuid() != 0)
		skip();
	f = fx_new(100, 0, 0);
	om_test_fill(buf, sizeof(buf), 6);
	assert_int_equal(put_buf(f, "/other", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/other", 6, 0, &g), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char proc[64], path[600], name[32];
		int bad = 0;

		if (setgid(65534) != 0 || setuid(65534) != 0)
			_exit(100);
		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", g.fd);
		om_store_object_name(g.obj.id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", f->disk, name);
		bad |= (open(proc, O_RDWR) >= 0) << 0;
		bad |= (open(proc, O_WRONLY | O_TRUNC) >= 0) << 1;
		bad |= (open(path, O_WRONLY) >= 0) << 2;
		bad |= (unlink(path) == 0) << 3;
		bad |= (chmod(path, 0666) == 0) << 4;
		bad |= (fchmod(g.fd, 0666) == 0) << 5;
		bad |= (write(g.fd, "x", 1) >= 0) << 6;
		_exit(bad);
	}
	status = om_test_wait(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	close(g.fd);
	fx_free(f);
}

/* The daemon's workers run as an unprivileged user that owns the tiers:
 * publishing, replacing and promoting must work without root. */
static void
test_unprivileged_owner_publishes(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	fx_t *f;
	pid_t pid;
	int status;

	(void)state;
	if (geteuid() != 0 || pw == NULL)
		skip();
	f = fx_new(100, 1 << 20, 0);
	om_store_close(f->st);
	f->p.set_owner = 1;
	f->p.owner_uid = pw->pw_uid;
	f->p.owner_gid = pw->pw_gid;
	f->p.promote_hits = 1;
	f->p.promote_max_size = 4096;
	fx_open(f);
	/* Parents of the private tiers must be reachable. */
	assert_int_equal(chmod(f->disk, 0755), 0);
	assert_int_equal(chmod(f->mem, 0755), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_maint_stats_t ms;
		om_get_t g;
		int bad = 0;

		if (setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0 || prctl(PR_SET_DUMPABLE, 1) != 0)
			_exit(100);
		bad |= (put_buf(f, "/mine", "abc", 3, 0, NULL) != 0) << 0;
		bad |= (put_buf(f, "/mine", "abcd", 4, 0, NULL) != 0) << 1;
		bad |= (put_buf(f, "/eph", "e", 1, OM_STORE_EPHEMERAL, NULL) != 0) << 2;
		bad |= (om_store_get(f->st, "/mine", 5, 0, &g) != 0) << 3;
		close(g.fd);
		bad |= (om_store_maintain(f->st, &ms) != 0 || ms.promoted != 1) << 4;
		bad |= (om_store_delete(f->st, "/mine", 5) != 0) << 5;
		_exit(bad);
	}
	status = om_test_wait(pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	fx_free(f);
}

static void
test_replace_and_delete_keep_old_descriptor(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	size_t big = 1 << 20;
	unsigned char *v1 = malloc(big), *v2 = malloc(big);
	om_get_t g1, g2, g3;
	om_ix_obj_t o1, o2;

	(void)state;
	om_test_fill(v1, big, 1);
	om_test_fill(v2, big, 2);
	assert_int_equal(put_buf(f, "/obj", v1, big, 0, &o1), 0);
	assert_int_equal(om_store_get(f->st, "/obj", 4, 0, &g1), 0);
	assert_int_equal(put_buf(f, "/obj", v2, 4096, 0, &o2), 0);
	assert_true(o2.id > o1.id);
	/* The new version is served; the old descriptor reads all old bytes. */
	assert_int_equal(om_store_get(f->st, "/obj", 4, 0, &g2), 0);
	assert_fd_bytes(g2.fd, v2, 4096);
	assert_fd_bytes(g1.fd, v1, big);
	/* The old file is gone from the tier: only the new one remains. */
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	assert_int_equal(om_store_delete(f->st, "/obj", 4), 0);
	assert_int_equal(om_store_get(f->st, "/obj", 4, 0, &g3), -ENOENT);
	assert_int_equal(om_store_delete(f->st, "/obj", 4), -ENOENT);
	assert_fd_bytes(g2.fd, v2, 4096);
	assert_fd_bytes(g1.fd, v1, big);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 0);
	close(g1.fd);
	close(g2.fd);
	free(v1);
	free(v2);
	fx_free(f);
}

static void
test_expiry(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	om_put_args_t a = { .size = 3 };
	om_maint_stats_t ms;
	om_get_t g;

	(void)state;
	a.expires = om_time_s() - 1;
	assert_int_equal(om_store_put(f->st, "/past", 5, "abc", &a, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/past", 5, 0, &g), -ENOENT);
	assert_int_equal(om_store_stat(f->st, "/past", 5, NULL), -ENOENT);
	a.expires = om_time_s() + 1;
	assert_int_equal(om_store_put(f->st, "/soon", 5, "abc", &a, NULL), 0);
	a.expires = 0;
	assert_int_equal(om_store_put(f->st, "/never", 6, "abc", &a, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/soon", 5, 0, &g), 0);
	close(g.fd);
	/* A miss as soon as the second has passed, without any maintenance. */
	sleep(2);
	assert_int_equal(om_store_get(f->st, "/soon", 5, 0, &g), -ENOENT);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 3);
	/* The manager reclaims both expired objects; the other stays. */
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.expired, 2);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	assert_int_equal(om_store_get(f->st, "/never", 6, 0, &g), 0);
	close(g.fd);
	fx_free(f);
}

static void
test_disk_limit_evicts_lru(void **state)
{
	fx_t *f = fx_new(100, 0, 10 * 4096);
	unsigned char buf[4096];
	char uri[32];
	om_store_usage_t u;
	om_get_t g;

	(void)state;
	om_test_fill(buf, sizeof(buf), 8);
	for (int i = 0; i < 10; i++) {
		snprintf(uri, sizeof(uri), "/lru/%d", i);
		assert_int_equal(put_buf(f, uri, buf, sizeof(buf), 0, NULL), 0);
	}
	usleep(60000);
	for (int i = 0; i < 10; i++) {
		if (i == 3)
			continue;
		snprintf(uri, sizeof(uri), "/lru/%d", i);
		assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
		close(g.fd);
	}
	assert_int_equal(put_buf(f, "/lru/new", buf, sizeof(buf), 0, NULL), 0);
	/* The one not read is gone, files and all; the rest stay. */
	assert_int_equal(om_store_get(f->st, "/lru/3", 6, 0, &g), -ENOENT);
	for (int i = 0; i < 10; i++) {
		if (i == 3)
			continue;
		snprintf(uri, sizeof(uri), "/lru/%d", i);
		assert_int_equal(om_store_stat(f->st, uri, strlen(uri), NULL), 0);
	}
	om_store_usage(f->st, &u);
	assert_int_equal(u.used[OM_TIER_DISK], 10 * 4096);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 10);
	assert_int_equal(om_store_stats(f->st)->evicted[OM_TIER_DISK], 1);
	fx_free(f);
}

static void
test_promotion_and_copies(void **state)
{
	fx_t *f;
	unsigned char buf[4096], buf2[4096];
	om_maint_stats_t ms;
	om_get_t g;
	struct stat mem_sb, sb;

	(void)state;
	f = fx_new(100, 3 * 4096, 0);
	/* Reopen with promotion enabled. */
	om_store_close(f->st);
	f->p.promote_hits = 3;
	f->p.promote_max_size = 4096;
	fx_open(f);
	assert_int_equal(stat(f->mem, &mem_sb), 0);

	om_test_fill(buf, sizeof(buf), 11);
	assert_int_equal(put_buf(f, "/hot", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(put_buf(f, "/cold", buf, sizeof(buf), 0, NULL), 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
		assert_int_equal(g.tier, OM_TIER_DISK);
		close(g.fd);
	}
	assert_int_equal(om_store_get(f->st, "/cold", 5, 0, &g), 0);
	close(g.fd);
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.promoted, 1);
	/* Now served from tmpfs, byte-exact. */
	assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
	assert_int_equal(g.tier, OM_TIER_MEM);
	assert_int_equal(fstat(g.fd, &sb), 0);
	assert_int_equal(sb.st_dev, mem_sb.st_dev);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	close(g.fd);
	assert_int_equal(om_test_count_files(f->mem, NULL, NULL), 1);
	{
		om_store_usage_t u;

		om_store_usage(f->st, &u);
		assert_int_equal(u.copies, 1);
		assert_int_equal(u.used[OM_TIER_MEM], 4096);
	}
	/* Replacing the object drops its copy with it. */
	om_test_fill(buf2, sizeof(buf2), 12);
	assert_int_equal(put_buf(f, "/hot", buf2, sizeof(buf2), 0, NULL), 0);
	assert_int_equal(om_test_count_files(f->mem, NULL, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
	assert_int_equal(g.tier, OM_TIER_DISK);
	assert_fd_bytes(g.fd, buf2, sizeof(buf2));
	close(g.fd);
	/* A copy whose file vanished is served from the primary and unflagged. */
	for (int i = 0; i < 3; i++) {
		assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
		close(g.fd);
	}
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.promoted, 1);
	{
		om_ix_obj_t o;
		char name[32];

		assert_int_equal(om_store_stat(f->st, "/hot", 4, &o), 0);
		char path[600];

		om_store_object_name(o.id, name, sizeof(name));
		snprintf(path, sizeof(path), "%s/%s", f->mem, name);
		assert_int_equal(unlink(path), 0);
		assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
		assert_int_equal(g.tier, OM_TIER_DISK);
		assert_fd_bytes(g.fd, buf2, sizeof(buf2));
		close(g.fd);
		assert_int_equal(om_store_stat(f->st, "/hot", 4, &o), 0);
		assert_false(o.flags & OM_IX_F_COPY);
	}
	fx_free(f);
}

static void
test_memory_pressure_drops_copies_first(void **state)
{
	fx_t *f = fx_new(100, 3 * 4096, 0);
	unsigned char buf[4096];
	om_maint_stats_t ms;
	om_store_usage_t u;
	om_get_t g;

	(void)state;
	om_store_close(f->st);
	f->p.promote_hits = 1;
	f->p.promote_max_size = 4096;
	fx_open(f);
	om_test_fill(buf, sizeof(buf), 13);
	assert_int_equal(put_buf(f, "/e1", buf, sizeof(buf), OM_STORE_EPHEMERAL, NULL), 0);
	assert_int_equal(put_buf(f, "/p1", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(put_buf(f, "/p2", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/p1", 3, 0, &g), 0);
	close(g.fd);
	assert_int_equal(om_store_get(f->st, "/p2", 3, 0, &g), 0);
	close(g.fd);
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.promoted, 2);
	om_store_usage(f->st, &u);
	assert_int_equal(u.used[OM_TIER_MEM], 3 * 4096);
	/* The memory tier is full: a new ephemeral object costs a copy,
	 * never the other ephemeral object. */
	assert_int_equal(put_buf(f, "/e2", buf, sizeof(buf), OM_STORE_EPHEMERAL, NULL), 0);
	om_store_usage(f->st, &u);
	assert_int_equal(u.copies, 1);
	assert_int_equal(u.ephemeral, 2);
	assert_int_equal(u.used[OM_TIER_MEM], 3 * 4096);
	assert_int_equal(om_store_stat(f->st, "/e1", 3, NULL), 0);
	/* Both persistent objects still read fine, wherever from. */
	assert_int_equal(om_store_get(f->st, "/p1", 3, OM_GET_NOTOUCH, &g), 0);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	close(g.fd);
	assert_int_equal(om_store_get(f->st, "/p2", 3, OM_GET_NOTOUCH, &g), 0);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	close(g.fd);
	/* Another: the last copy goes. Then ephemeral objects are evicted
	 * least recently used first and are gone for good. */
	assert_int_equal(put_buf(f, "/e3", buf, sizeof(buf), OM_STORE_EPHEMERAL, NULL), 0);
	om_store_usage(f->st, &u);
	assert_int_equal(u.copies, 0);
	assert_int_equal(u.ephemeral, 3);
	usleep(60000);
	assert_int_equal(om_store_get(f->st, "/e1", 3, 0, &g), 0);
	close(g.fd);
	assert_int_equal(om_store_get(f->st, "/e3", 3, 0, &g), 0);
	close(g.fd);
	assert_int_equal(put_buf(f, "/e4", buf, sizeof(buf), OM_STORE_EPHEMERAL, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/e2", 3, 0, &g), -ENOENT);
	assert_int_equal(om_store_stat(f->st, "/e1", 3, NULL), 0);
	assert_int_equal(om_store_stat(f->st, "/e3", 3, NULL), 0);
	assert_int_equal(om_store_stat(f->st, "/e4", 3, NULL), 0);
	assert_int_equal(om_test_count_files(f->mem, NULL, NULL), 3);
	fx_free(f);
}

static void
test_index_full(void **state)
{
	fx_t *f = fx_new(4, 0, 0);
	char uri[32], err[256];
	om_get_t g;

	(void)state;
	/* A store that must never evict refuses, and says which limit. */
	f->p.no_evict = 1;
	assert_int_equal(om_store_reconfigure(f->st, &f->p, err, sizeof(err)), 0);
	for (int i = 0; i < 4; i++) {
		snprintf(uri, sizeof(uri), "/full/%d", i);
		assert_int_equal(put_buf(f, uri, "x", 1, 0, NULL), 0);
	}
	usleep(60000);
	for (int i = 1; i < 4; i++) {
		snprintf(uri, sizeof(uri), "/full/%d", i);
		assert_int_equal(om_store_get(f->st, uri, strlen(uri), 0, &g), 0);
		close(g.fd);
	}
	assert_int_equal(put_buf(f, "/full/4", "y", 1, 0, NULL), -ENOSPC);
	assert_string_equal(om_store_why(f->st), "index full: capacity 4, and this store never evicts");
	/* Refused cleanly: nothing published. */
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 4);
	assert_int_equal(om_store_stat(f->st, "/full/4", 7, NULL), -ENOENT);
	/* A cache (the default) makes room with the least recently read. */
	f->p.no_evict = 0;
	assert_int_equal(om_store_reconfigure(f->st, &f->p, err, sizeof(err)), 0);
	assert_int_equal(put_buf(f, "/full/4", "y", 1, 0, NULL), 0);
	assert_int_equal(om_store_stat(f->st, "/full/0", 7, NULL), -ENOENT);
	assert_int_equal(om_store_stat(f->st, "/full/4", 7, NULL), 0);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 4);
	assert_int_equal(om_store_stats(f->st)->evicted[OM_TIER_DISK], 1);
	fx_free(f);
}

static void
test_lost_file_is_a_miss(void **state)
{
	fx_t *f = fx_new(10, 0, 0);
	om_ix_obj_t o;
	char name[32], path[600];
	om_get_t g;

	(void)state;
	assert_int_equal(put_buf(f, "/lost", "abc", 3, 0, &o), 0);
	om_store_object_name(o.id, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", f->disk, name);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(om_store_get(f->st, "/lost", 5, 0, &g), -ENOENT);
	assert_int_equal(om_store_stats(f->st)->lost_files, 1);
	assert_int_equal(om_store_stat(f->st, "/lost", 5, NULL), -ENOENT);
	fx_free(f);
}

static void
test_tier_in_use(void **state)
{
	fx_t *f = fx_new(10, 0, 0);
	om_store_t *second = NULL;
	char err[256];

	(void)state;
	assert_int_equal(om_store_open(&f->p, f->ix, &second, err, sizeof(err)), -EBUSY);
	assert_non_null(strstr(err, "in use"));
	/* A promotion threshold the index does not count up to is refused. */
	f->p.promote_hits = 17;
	assert_int_equal(om_store_open(&f->p, f->ix, &second, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "counts only 16"));
	f->p.promote_hits = 0;
	fx_free(f);
}

static void
test_temporary_names_mode(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	unsigned char buf[5000];
	om_put_txn_t *t;
	om_put_args_t a = { .size = sizeof(buf) };
	om_get_t g;
	long tmp;

	(void)state;
	om_store_close(f->st);
	f->p.no_tmpfile = 1;
	fx_open(f);
	om_test_fill(buf, sizeof(buf), 21);
	assert_int_equal(put_buf(f, "/tn", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/tn", 3, 0, &g), 0);
	assert_fd_bytes(g.fd, buf, sizeof(buf));
	close(g.fd);
	/* While a PUT is open its bytes sit under tmp/, and go on abort. */
	assert_int_equal(om_store_put_begin(f->st, "/tn2", 4, &a, &t), 0);
	om_test_count_files(f->disk, ".tmp", &tmp);
	assert_int_equal(tmp, 1);
	om_store_put_abort(t);
	om_test_count_files(f->disk, ".tmp", &tmp);
	assert_int_equal(tmp, 0);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	fx_free(f);
}

static void
test_durable_mode(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	unsigned char buf[8192];
	om_get_t g;

	(void)state;
	om_store_close(f->st);
	f->p.durability = OM_DURABLE_FSYNC;
	fx_open(f);
	om_test_fill(buf, sizeof(buf), 22);
	assert_int_equal(put_buf(f, "/d", buf, sizeof(buf), 0, NULL), 0);
	assert_int_equal(put_buf(f, "/d", buf, 100, 0, NULL), 0);
	assert_int_equal(om_store_get(f->st, "/d", 2, 0, &g), 0);
	assert_fd_bytes(g.fd, buf, 100);
	close(g.fd);
	assert_int_equal(om_store_delete(f->st, "/d", 2), 0);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 0);
	fx_free(f);
}

/* A writer dies after linking its file but before indexing it; the
 * master's reclaim removes the unacknowledged file. */
static void
test_reclaim_dead_writer(void **state)
{
	fx_t *f = fx_new(100, 0, 0);
	int fds[2];
	char c;
	pid_t pid;

	(void)state;
	assert_int_equal(put_buf(f, "/kept", "k", 1, 0, NULL), 0);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_store_set_slot(f->st, 5);
		om_test_pause_t pz = { fds[1], 1 };

		om_index_set_hook(f->ix, om_test_pause_hook, &pz);
		(void)put_buf(f, "/never-acked", "data", 4, 0, NULL);
		_exit(0);
	}
	assert_int_equal(read(fds[0], &c, 1), 1);
	/* The child holds the stripe lock inside om_index_put: its file is
	 * linked, the index not yet updated. */
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 2);
	kill(pid, SIGKILL);
	om_test_wait(pid);
	close(fds[0]);
	close(fds[1]);
	assert_int_equal(om_store_reclaim_slot(f->st, 5), 1);
	assert_int_equal(om_test_count_files(f->disk, NULL, NULL), 1);
	assert_int_equal(om_store_stat(f->st, "/never-acked", 12, NULL), -ENOENT);
	assert_int_equal(om_store_stat(f->st, "/kept", 5, NULL), 0);
	/* Nothing to do the second time, nor for a slot that was idle. */
	assert_int_equal(om_store_reclaim_slot(f->st, 5), 0);
	assert_int_equal(om_store_reclaim_slot(f->st, 6), 0);
	fx_free(f);
}

/* Flips one byte of an object's file, behind the store's back (bit rot). */
static void
flip_byte(const char *tier, uint64_t id, off_t at)
{
	char name[32], path[600];
	unsigned char b;
	int fd;

	om_store_object_name(id, name, sizeof(name));
	snprintf(path, sizeof(path), "%s/%s", tier, name);
	assert_int_equal(chmod(path, 0640), 0);
	fd = open(path, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, at), 1);
	b ^= 0x20;
	assert_int_equal(pwrite(fd, &b, 1, at), 1);
	close(fd);
	assert_int_equal(chmod(path, 0440), 0);
}

/*
 * Bit rot: the scrub reads every object again, within its budget, and a
 * damaged one (a persistent object, an ephemeral one, a memory copy) is
 * quarantined: moved to corrupt/, dropped from the index, never served;
 * a damaged copy is dropped and the primary served.
 */
static void
test_scrub_quarantines_bit_rot(void **state)
{
	unsigned char buf[10000];
	om_ix_obj_t a, b, e, hot;
	om_maint_stats_t ms;
	uint32_t cur = 0;
	uint64_t used;
	om_get_t g;
	fx_t *f;

	(void)state;
	f = fx_new(100, 0, 0);
	om_store_close(f->st);
	f->p.promote_hits = 2;
	fx_open(f);
	om_test_fill(buf, sizeof(buf), 77);
	assert_int_equal(put_buf(f, "/a", buf, 10000, 0, &a), 0);
	assert_int_equal(put_buf(f, "/b", buf, 5000, 0, &b), 0);
	assert_int_equal(put_buf(f, "/e", buf, 3000, OM_STORE_EPHEMERAL, &e), 0);
	assert_int_equal(put_buf(f, "/hot", buf, 2000, 0, &hot), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
		close(g.fd);
	}
	assert_int_equal(om_store_maintain(f->st, &ms), 0);
	assert_int_equal(ms.promoted, 1);

	/* Intact: one pass reads everything (and the copy), finds nothing. */
	assert_int_equal(om_store_scrub(f->st, &cur, 1u << 30, &used), 1);
	assert_int_equal(om_store_stats(f->st)->scrubbed, 4);
	assert_int_equal(om_store_stats(f->st)->scrub_bytes, 10000 + 5000 + 3000 + 2 * 2000);
	assert_int_equal(om_store_stats(f->st)->scrub_passes, 1);
	assert_int_equal(om_store_stats(f->st)->damaged, 0);

	/* A budget of 15,000 bytes checks /a and /b (10,000 and 5,000), then stops. */
	cur = 0;
	assert_int_equal(om_store_scrub(f->st, &cur, 15000, &used), 0);
	assert_int_equal(om_store_stats(f->st)->scrubbed, 6);

	flip_byte(f->disk, a.id, 1234);
	flip_byte(f->mem, e.id, 0);
	flip_byte(f->mem, hot.id, 1999);
	cur = 0;
	assert_int_equal(om_store_scrub(f->st, &cur, 1u << 30, &used), 1);
	assert_int_equal(om_store_stats(f->st)->damaged, 3);
	assert_int_equal(om_store_get(f->st, "/a", 2, 0, &g), -ENOENT);
	assert_int_equal(om_store_get(f->st, "/e", 2, 0, &g), -ENOENT);
	assert_int_equal(om_store_get(f->st, "/b", 2, 0, &g), 0);
	close(g.fd);
	/* The damaged copy went; the primary serves. */
	assert_int_equal(om_store_get(f->st, "/hot", 4, 0, &g), 0);
	assert_int_equal(g.tier, OM_TIER_DISK);
	assert_fd_bytes(g.fd, buf, 2000);
	close(g.fd);
	/* Kept for the operator, where the rebuild would not take them back. */
	{
		char path[600];
		struct stat sb;

		snprintf(path, sizeof(path), "%s/corrupt/%016llx", f->disk, (unsigned long long)a.id);
		assert_int_equal(stat(path, &sb), 0);
		assert_int_equal(sb.st_size, 10000);
		snprintf(path, sizeof(path), "%s/corrupt/%016llx", f->mem, (unsigned long long)e.id);
		assert_int_equal(stat(path, &sb), 0);
	}
	assert_int_equal(om_test_count_files(f->mem, NULL, NULL), 1); /* corrupt/ holds /e */
	fx_free(f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_sizes),
		cmocka_unit_test(test_put_from_fd),
		cmocka_unit_test(test_stream_txn),
		cmocka_unit_test(test_conditional_commit),
		cmocka_unit_test(test_bad_arguments),
		cmocka_unit_test(test_each_get_private_description),
		cmocka_unit_test(test_cannot_write_through_descriptor),
		cmocka_unit_test(test_other_uid_cannot_modify),
		cmocka_unit_test(test_unprivileged_owner_publishes),
		cmocka_unit_test(test_replace_and_delete_keep_old_descriptor),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_disk_limit_evicts_lru),
		cmocka_unit_test(test_promotion_and_copies),
		cmocka_unit_test(test_memory_pressure_drops_copies_first),
		cmocka_unit_test(test_index_full),
		cmocka_unit_test(test_lost_file_is_a_miss),
		cmocka_unit_test(test_tier_in_use),
		cmocka_unit_test(test_temporary_names_mode),
		cmocka_unit_test(test_durable_mode),
		cmocka_unit_test(test_reclaim_dead_writer),
		cmocka_unit_test(test_scrub_quarantines_bit_rot),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
