/*
 * Test helpers (see om_test.h). Linked into every test binary.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "om_test.h"

void
om_test_mkdtemp(char *out, size_t n, const char *base)
{
	const char *b = base ? base : getenv("TMPDIR");

	if (b == NULL || *b == '\0')
		b = "/tmp";
	snprintf(out, n, "%s/omtest.XXXXXX", b);
	if (mkdtemp(out) == NULL) {
		fprintf(stderr, "mkdtemp(%s): %s\n", out, strerror(errno));
		abort();
	}
}

static int
rmtree_at(int dfd, const char *name)
{
	struct stat st;
	int rc = 0;

	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (S_ISDIR(st.st_mode)) {
		int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		DIR *d;
		struct dirent *de;

		if (fd < 0)
			return -errno;
		d = fdopendir(fd);
		if (d == NULL) {
			close(fd);
			return -errno;
		}
		while ((de = readdir(d)) != NULL) {
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			if (rmtree_at(dirfd(d), de->d_name) != 0)
				rc = -1;
		}
		closedir(d);
		if (unlinkat(dfd, name, AT_REMOVEDIR) != 0)
			rc = -errno;
	} else if (unlinkat(dfd, name, 0) != 0) {
		rc = -errno;
	}
	return rc;
}

int
om_test_rmtree(const char *path)
{
	return rmtree_at(AT_FDCWD, path);
}

/* "0123456789abcdef.r": an object's record, where the filesystem has no
 * user extended attributes (it goes with its object). */
static int
is_record_file(const char *name)
{
	return strlen(name) == 18 && strcmp(name + 16, ".r") == 0;
}

static long
count_at(int dfd, const char *name, const char *part, long *matching)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	long n = 0;
	DIR *d;

	if (fd < 0)
		return 0;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return 0;
	}
	while ((de = readdir(d)) != NULL) {
		struct stat st;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0)
			continue;
		if (S_ISDIR(st.st_mode)) {
			n += count_at(dirfd(d), de->d_name, part, matching);
		} else if (is_record_file(de->d_name) || strcmp(de->d_name, ".objmapper-stamp") == 0 ||
		    strcmp(de->d_name, ".objmapper-writer") == 0) {
			continue;
		} else {
			n++;
			if (part != NULL && matching != NULL && strstr(de->d_name, part) != NULL)
				(*matching)++;
		}
	}
	closedir(d);
	return n;
}

long
om_test_count_files(const char *path, const char *part, long *matching)
{
	if (matching != NULL)
		*matching = 0;
	return count_at(AT_FDCWD, path, part, matching);
}

int
om_test_wait(pid_t pid)
{
	int status = 0;

	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	return status;
}

uint64_t
om_test_rand(uint64_t *state)
{
	uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dull;
}

void
om_test_fill(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t st = seed * 0x9e3779b97f4a7c15ull + 1;

	while (len >= 8) {
		uint64_t v = om_test_rand(&st);

		memcpy(p, &v, 8);
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t v = om_test_rand(&st);

		memcpy(p, &v, len);
	}
}

void
om_test_pause_hook(void *arg, unsigned step)
{
	const om_test_pause_t *p = arg;

	if (step == p->at) {
		char c = 'x';

		if (write(p->fd, &c, 1) != 1)
			_exit(3);
		for (;;)
			pause();
	}
}

const char *
om_test_memdir(void)
{
	const char *m = getenv("OM_TEST_MEMDIR");

	return m != NULL && m[0] != '\0' ? m : "/dev/shm";
}

uint64_t
om_test_mem_limit(uint64_t want)
{
	struct statvfs v;

	if (want == 0 && statvfs(om_test_memdir(), &v) == 0 && v.f_blocks == 0)
		return (uint64_t)1 << 30;
	return want;
}

int
om_test_under_valgrind(void)
{
	return getenv("OM_UNDER_VALGRIND") != NULL;
}

unsigned
om_test_fd_targets(pid_t pid, void (*fn)(void *arg, const char *target), void *arg)
{
	char dir[64];
	DIR *d;
	struct dirent *de;
	unsigned n = 0;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	if ((d = opendir(dir)) == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		char link[320], target[1024];
		ssize_t tn;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		tn = readlink(link, target, sizeof(target) - 1);
		target[tn > 0 ? tn : 0] = '\0';
		n++;
		fn(arg, target);
	}
	closedir(d);
	return n;
}

long
om_test_cpu_ticks(pid_t pid)
{
	char path[64], buf[1024];
	unsigned long ut = 0, st = 0;
	ssize_t n;
	char *p;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	assert_true(n > 0);
	buf[n] = '\0';
	/* Fields 14 and 15, counted from the last ')' (comm may hold spaces). */
	p = strrchr(buf, ')');
	assert_non_null(p);
	assert_int_equal(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st),
	    2);
	return (long)(ut + st);
}

uint64_t
om_test_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

long
om_test_status_kb(pid_t pid, const char *field)
{
	char path[64], line[256];
	size_t n = strlen(field);
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, field, n) == 0 && line[n] == ':' && sscanf(line + n + 1, "%ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

long
om_test_rss_kb(pid_t pid)
{
	return om_test_status_kb(pid, "VmRSS");
}
