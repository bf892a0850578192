/*
 * The fault layer's wrappers (see om_fault.h): definitions of the system
 * calls the storage engine's write paths and rebuild make, which count
 * the calls of the process under test and hit the selected one, and
 * otherwise call the C library's function (dlsym RTLD_NEXT).
 *
 * Linked into a test binary, they take the place of libc's for the engine
 * linked into it; built as om_fault.so and preloaded, for every library of
 * the process. Calls that glibc makes internally (stdio, opendir's
 * getdents) are not seen, which keeps logging out of the count.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "om_fault.h"

#ifndef __NR_getxattrat
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the kernel's name, for headers older than the call */
#define __NR_getxattrat 464
#endif

#define EXPORT __attribute__((visibility("default")))

/* ---- the C library's functions ------------------------------------------ */

static void *
real(void **slot, const char *name)
{
	void *p = __atomic_load_n(slot, __ATOMIC_ACQUIRE);

	if (p == NULL) {
		p = dlsym(RTLD_NEXT, name);
		if (p == NULL) {
			static const char msg[] = "om_fault: a wrapped function is missing from the C library\n";
			ssize_t (*w)(int, const void *, size_t) = dlsym(RTLD_NEXT, "write");

			if (w != NULL)
				(void)w(2, msg, sizeof(msg) - 1);
			abort();
		}
		__atomic_store_n(slot, p, __ATOMIC_RELEASE);
	}
	return p;
}

#define REAL(type, name) ((type)real(&real_##name, #name))
static void *real_open, *real_openat, *real_write, *real_pwrite, *real_pread, *real_copy_file_range,
    *real_sendfile, *real_fallocate, *real_fsetxattr, *real_fgetxattr, *real_lgetxattr,
    *real_syscall, *real_fchmod, *real_fsync, *real_fdatasync, *real_linkat, *real_renameat,
    *real_unlinkat, *real_mkdirat, *real_fstatat, *real_fchownat, *real_readdir, *real_prctl,
    *real_pwritev;

/* ---- the control block -------------------------------------------------- */

static om_fault_ctl_t *ctl;
static int env_state; /* 0 not read, 1 reading, 2 done */
static char count_file[512];
/* OM_FAULT_NOXATTR=DIR: user extended attributes of files under DIR are
 * refused (EOPNOTSUPP), as tmpfs before Linux 6.6 refuses them. */
static char noxattr_dir[512];
/* OM_FAULT_STALL=FILE: a process that sets its parent-death signal (every
 * child of objmapperd, first thing after fork) waits while FILE exists, for
 * up to 60 s: a test holds a reload's new workers before they accept. */
static char stall_file[512];
/* OM_FAULT_NODUMP=FILE: while FILE exists, prctl(PR_SET_DUMPABLE) fails
 * (EPERM): a child of objmapperd running as [daemon] user cannot start. */
static char nodump_file[512];

EXPORT void
om_fault_use(om_fault_ctl_t *c)
{
	__atomic_store_n(&ctl, c, __ATOMIC_RELEASE);
	__atomic_store_n(&env_state, 2, __ATOMIC_RELEASE);
}

static unsigned
calls_from(const char *list)
{
	unsigned mask = 0;
	char buf[256], *save = NULL;

	if (list == NULL || strcmp(list, "all") == 0)
		return 0;
	snprintf(buf, sizeof(buf), "%s", list);
	for (char *t = strtok_r(buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save))
		for (unsigned c = 0; c < OM_FC_NCALLS; c++)
			if (strcmp(t, om_fault_call_name(c)) == 0)
				mask |= OM_FC_BIT(c);
	return mask;
}

static void
write_count_file(void)
{
	om_fault_ctl_t *c = __atomic_load_n(&ctl, __ATOMIC_ACQUIRE);
	int (*op)(const char *, int, ...) = REAL(int (*)(const char *, int, ...), open);
	ssize_t (*wr)(int, const void *, size_t) = REAL(ssize_t (*)(int, const void *, size_t), write);
	char buf[2048];
	size_t n;
	int fd;

	if (c == NULL || count_file[0] == '\0' || (c->pid != 0 && c->pid != getpid()))
		return;
	n = (size_t)snprintf(buf, sizeof(buf), "calls %llu\nfired %llu %s\n",
	    (unsigned long long)c->count, (unsigned long long)c->fired,
	    c->fired ? om_fault_call_name(c->fired_call) : "-");
	for (unsigned i = 0; i < OM_FC_NCALLS && n < sizeof(buf); i++)
		if (c->per_call[i])
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s %llu\n", om_fault_call_name(i),
			    (unsigned long long)c->per_call[i]);
	if (n > sizeof(buf))
		n = sizeof(buf);
	fd = op(count_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		(void)wr(fd, buf, n);
		close(fd);
	}
}

/*
 * OM_FAULT_CTL=FILE: the test's control block. Otherwise, for use by hand,
 * a private one armed from OM_FAULT_AT / _ACTION / _CALLS / _PID, its
 * counts written to OM_FAULT_COUNT_FILE at exit.
 */
static void
env_init(void)
{
	const char *path = getenv("OM_FAULT_CTL");
	const char *at = getenv("OM_FAULT_AT"), *action = getenv("OM_FAULT_ACTION");
	const char *cf = getenv("OM_FAULT_COUNT_FILE"), *pid = getenv("OM_FAULT_PID");
	const char *nx = getenv("OM_FAULT_NOXATTR"), *sf = getenv("OM_FAULT_STALL");
	const char *nd = getenv("OM_FAULT_NODUMP");
	om_fault_ctl_t *c = NULL;

	if (nx != NULL && nx[0] == '/')
		snprintf(noxattr_dir, sizeof(noxattr_dir), "%s", nx);
	if (sf != NULL && sf[0] == '/')
		snprintf(stall_file, sizeof(stall_file), "%s", sf);
	if (nd != NULL && nd[0] == '/')
		snprintf(nodump_file, sizeof(nodump_file), "%s", nd);
	if (path != NULL) {
		int fd = REAL(int (*)(const char *, int, ...), open)(path, O_RDWR | O_CLOEXEC);

		if (fd >= 0) {
			c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
			close(fd);
			if (c == MAP_FAILED || c->magic != OM_FAULT_MAGIC)
				c = NULL;
		}
	} else if (at != NULL || action != NULL || cf != NULL) {
		c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (c == MAP_FAILED) {
			c = NULL;
		} else {
			enum om_fault_action a = OM_FA_COUNT;
			int err = 0;

			if (action == NULL || strcmp(action, "count") == 0)
				a = OM_FA_COUNT;
			else if (strcmp(action, "kill") == 0)
				a = OM_FA_KILL;
			else if (strcmp(action, "short") == 0)
				a = OM_FA_SHORT;
			else {
				a = OM_FA_ERRNO;
				err = strcmp(action, "ENOSPC") == 0 ? ENOSPC : strcmp(action, "EMFILE") == 0 ? EMFILE :
				    strcmp(action, "EINTR") == 0 ? EINTR : strcmp(action, "EDQUOT") == 0 ? EDQUOT : EIO;
			}
			c->magic = OM_FAULT_MAGIC;
			c->pid = pid ? atoi(pid) : 0;
			c->mask = calls_from(getenv("OM_FAULT_CALLS"));
			c->at = at ? strtoull(at, NULL, 10) : 0;
			c->action = (uint32_t)a;
			c->err = err;
			c->armed = 1;
			if (cf != NULL) {
				snprintf(count_file, sizeof(count_file), "%s", cf);
				atexit(write_count_file);
			}
		}
	}
	__atomic_store_n(&ctl, c, __ATOMIC_RELEASE);
}

static om_fault_ctl_t *
get_ctl(void)
{
	int s = __atomic_load_n(&env_state, __ATOMIC_ACQUIRE);

	if (s == 0) {
		int zero = 0;

		if (!__atomic_compare_exchange_n(&env_state, &zero, 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return NULL; /* another thread is reading it: this call passes */
		env_init();
		__atomic_store_n(&env_state, 2, __ATOMIC_RELEASE);
	} else if (s == 1) {
		return NULL;
	}
	return __atomic_load_n(&ctl, __ATOMIC_ACQUIRE);
}

enum { PASS = 0, FAIL, SHORT };

/*
 * Counts the call if it is watched; returns what to do with it. fd >= 0:
 * a call on that descriptor, counted only if it is a file or a directory
 * (the daemon's sockets are not storage).
 */
static int
hit(unsigned call, int fd)
{
	om_fault_ctl_t *c = get_ctl();
	uint64_t n;
	int e = errno;

	if (c == NULL || !__atomic_load_n(&c->armed, __ATOMIC_ACQUIRE))
		return PASS;
	if (c->mask != 0 && !(c->mask & OM_FC_BIT(call)))
		return PASS;
	if (c->pid != 0 && c->pid != getpid())
		return PASS;
	if (fd >= 0) {
		struct stat sb;

		if (fstat(fd, &sb) != 0 || !(S_ISREG(sb.st_mode) || S_ISDIR(sb.st_mode))) {
			errno = e;
			return PASS;
		}
	}
	errno = e;
	n = __atomic_add_fetch(&c->count, 1, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&c->per_call[call], 1, __ATOMIC_RELAXED);
	if (n <= OM_FAULT_SEQ_MAX)
		c->seq[n - 1] = (uint8_t)call;
	if (c->action == OM_FA_COUNT || n != c->at)
		return PASS;
	if (c->action == OM_FA_SHORT && !(OM_FC_DATA & OM_FC_BIT(call)))
		return PASS;
	c->fired_call = call;
	__atomic_store_n(&c->fired, n, __ATOMIC_SEQ_CST);
	switch (c->action) {
	case OM_FA_KILL:
		kill(getpid(), SIGKILL);
		for (;;)
			pause();
	case OM_FA_ERRNO:
		errno = c->err;
		return FAIL;
	case OM_FA_SHORT:
		return SHORT;
	default:
		return PASS;
	}
}

static size_t
half(size_t n)
{
	return n > 1 ? n / 2 : n;
}

/* ---- the wrappers ------------------------------------------------------- */

static int
needs_mode(int flags)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

EXPORT int
open(const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (needs_mode(flags)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (hit(OM_FC_OPEN, -1) == FAIL)
		return -1;
	return REAL(int (*)(const char *, int, ...), open)(path, flags, mode);
}

EXPORT int
openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = 0;

	if (needs_mode(flags)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, int);
		va_end(ap);
	}
	if (hit(OM_FC_OPEN, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, int, ...), openat)(dirfd, path, flags, mode);
}

EXPORT ssize_t
write(int fd, const void *buf, size_t n)
{
	switch (hit(OM_FC_WRITE, fd)) {
	case FAIL: return -1;
	case SHORT: n = half(n); break;
	default: break;
	}
	return REAL(ssize_t (*)(int, const void *, size_t), write)(fd, buf, n);
}

EXPORT ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	switch (hit(OM_FC_WRITE, fd)) {
	case FAIL: return -1;
	case SHORT: n = half(n); break;
	default: break;
	}
	return REAL(ssize_t (*)(int, const void *, size_t, off_t), pwrite)(fd, buf, n, off);
}

/* A short pwritev moves the first half of the bytes of all its vectors. */
EXPORT ssize_t
pwritev(int fd, const struct iovec *iov, int cnt, off_t off)
{
	struct iovec cut[64];
	size_t total = 0, left;
	int n = 0;

	switch (hit(OM_FC_PWRITEV, fd)) {
	case FAIL: return -1;
	case SHORT:
		for (int i = 0; i < cnt; i++)
			total += iov[i].iov_len;
		left = half(total);
		for (int i = 0; i < cnt && i < 64 && left > 0; i++) {
			cut[n] = iov[i];
			if (cut[n].iov_len > left)
				cut[n].iov_len = left;
			left -= cut[n].iov_len;
			n++;
		}
		return REAL(ssize_t (*)(int, const struct iovec *, int, off_t), pwritev)(fd, cut, n, off);
	default: break;
	}
	return REAL(ssize_t (*)(int, const struct iovec *, int, off_t), pwritev)(fd, iov, cnt, off);
}

EXPORT ssize_t
pread(int fd, void *buf, size_t n, off_t off)
{
	switch (hit(OM_FC_PREAD, fd)) {
	case FAIL: return -1;
	case SHORT: n = half(n); break;
	default: break;
	}
	return REAL(ssize_t (*)(int, void *, size_t, off_t), pread)(fd, buf, n, off);
}

EXPORT ssize_t
copy_file_range(int in, loff_t *in_off, int out, loff_t *out_off, size_t n, unsigned flags)
{
	switch (hit(OM_FC_COPY, out)) {
	case FAIL: return -1;
	case SHORT: n = half(n); break;
	default: break;
	}
	return REAL(ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned), copy_file_range)(in,
	    in_off, out, out_off, n, flags);
}

EXPORT ssize_t
sendfile(int out, int in, off_t *off, size_t n)
{
	switch (hit(OM_FC_SENDFILE, out)) {
	case FAIL: return -1;
	case SHORT: n = half(n); break;
	default: break;
	}
	return REAL(ssize_t (*)(int, int, off_t *, size_t), sendfile)(out, in, off, n);
}

EXPORT int
fallocate(int fd, int mode, off_t off, off_t len)
{
	if (hit(OM_FC_FALLOCATE, fd) == FAIL)
		return -1;
	return REAL(int (*)(int, int, off_t, off_t), fallocate)(fd, mode, off, len);
}

/* A user attribute of a file under OM_FAULT_NOXATTR's directory. */
static int
refused_xattr(int fd, const char *path, const char *name)
{
	char link[64], target[1024];
	size_t len = strlen(noxattr_dir);
	ssize_t n;

	(void)get_ctl();
	if (noxattr_dir[0] == '\0' || strncmp(name, "user.", 5) != 0)
		return 0;
	if (path == NULL) {
		snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
		n = readlink(link, target, sizeof(target) - 1);
		if (n < 0)
			return 0;
		target[n] = '\0';
		path = target;
	}
	if (strncmp(path, noxattr_dir, len) != 0 || (path[len] != '/' && path[len] != '\0'))
		return 0;
	errno = EOPNOTSUPP;
	return 1;
}

EXPORT int
fsetxattr(int fd, const char *name, const void *value, size_t size, int flags)
{
	if (refused_xattr(fd, NULL, name))
		return -1;
	if (hit(OM_FC_FSETXATTR, fd) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, const void *, size_t, int), fsetxattr)(fd, name, value,
	    size, flags);
}

EXPORT ssize_t
fgetxattr(int fd, const char *name, void *value, size_t size)
{
	if (refused_xattr(fd, NULL, name))
		return -1;
	if (hit(OM_FC_GETXATTR, fd) == FAIL)
		return -1;
	return REAL(ssize_t (*)(int, const char *, void *, size_t), fgetxattr)(fd, name, value, size);
}

EXPORT ssize_t
lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	if (refused_xattr(-1, path, name))
		return -1;
	if (hit(OM_FC_GETXATTR, -1) == FAIL)
		return -1;
	return REAL(ssize_t (*)(const char *, const char *, void *, size_t), lgetxattr)(path, name,
	    value, size);
}

/* Only getxattrat is watched; every other number passes. The arguments
 * are taken as six longs whatever the call, as glibc's own syscall()
 * does: those the caller did not pass are values the kernel ignores. */
EXPORT long
syscall(long nr, ...)
{
	long a[6];
	va_list ap;

	va_start(ap, nr);
	for (int i = 0; i < 6; i++)
		a[i] = va_arg(ap, long);
	va_end(ap);
	if (nr == __NR_getxattrat && hit(OM_FC_GETXATTR, -1) == FAIL)
		return -1;
	return REAL(long (*)(long, ...), syscall)(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
}

EXPORT int
fchmod(int fd, mode_t mode)
{
	if (hit(OM_FC_FCHMOD, fd) == FAIL)
		return -1;
	return REAL(int (*)(int, mode_t), fchmod)(fd, mode);
}

EXPORT int
fsync(int fd)
{
	if (hit(OM_FC_FSYNC, fd) == FAIL)
		return -1;
	return REAL(int (*)(int), fsync)(fd);
}

EXPORT int
fdatasync(int fd)
{
	if (hit(OM_FC_FSYNC, fd) == FAIL)
		return -1;
	return REAL(int (*)(int), fdatasync)(fd);
}

EXPORT int
linkat(int olddir, const char *oldpath, int newdir, const char *newpath, int flags)
{
	if (hit(OM_FC_LINKAT, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, int, const char *, int), linkat)(olddir, oldpath, newdir,
	    newpath, flags);
}

EXPORT int
renameat(int olddir, const char *oldpath, int newdir, const char *newpath)
{
	if (hit(OM_FC_RENAMEAT, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, int, const char *), renameat)(olddir, oldpath, newdir,
	    newpath);
}

EXPORT int
unlinkat(int dirfd, const char *path, int flags)
{
	if (hit(OM_FC_UNLINKAT, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, int), unlinkat)(dirfd, path, flags);
}

EXPORT int
mkdirat(int dirfd, const char *path, mode_t mode)
{
	if (hit(OM_FC_MKDIRAT, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, mode_t), mkdirat)(dirfd, path, mode);
}

EXPORT int
fstatat(int dirfd, const char *restrict path, struct stat *restrict sb, int flags)
{
	if (hit(OM_FC_FSTATAT, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, struct stat *, int), fstatat)(dirfd, path, sb, flags);
}

EXPORT int
fchownat(int dirfd, const char *path, uid_t uid, gid_t gid, int flags)
{
	if (hit(OM_FC_FCHOWNAT, -1) == FAIL)
		return -1;
	return REAL(int (*)(int, const char *, uid_t, gid_t, int), fchownat)(dirfd, path, uid, gid,
	    flags);
}

EXPORT struct dirent *
readdir(DIR *d)
{
	if (hit(OM_FC_READDIR, dirfd(d)) == FAIL)
		return NULL;
	return REAL(struct dirent *(*)(DIR *), readdir)(d);
}

EXPORT int
prctl(int option, ...)
{
	unsigned long a[4];
	va_list ap;

	va_start(ap, option);
	for (int i = 0; i < 4; i++)
		a[i] = va_arg(ap, unsigned long);
	va_end(ap);
	(void)get_ctl();
	if (option == PR_SET_PDEATHSIG && stall_file[0] != '\0') {
		for (int i = 0; i < 6000 && access(stall_file, F_OK) == 0; i++)
			usleep(10000);
	}
	if (option == PR_SET_DUMPABLE && nodump_file[0] != '\0' && access(nodump_file, F_OK) == 0) {
		errno = EPERM;
		return -1;
	}
	return REAL(int (*)(int, unsigned long, unsigned long, unsigned long, unsigned long), prctl)(option,
	    a[0], a[1], a[2], a[3]);
}
