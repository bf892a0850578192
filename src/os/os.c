/*
 * System-call wrappers for the storage engine (see om_os.h). Every
 * process uses them.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "os/om_os.h"

int
om_os_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int
om_os_pread_all(int fd, void *buf, size_t n, uint64_t off)
{
	char *p = buf;

	while (n > 0) {
		ssize_t r = pread(fd, p, n, (off_t)off);

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		p += r;
		n -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

int
om_os_pwrite_all(int fd, const void *buf, size_t n, uint64_t off)
{
	const char *p = buf;

	while (n > 0) {
		ssize_t w = pwrite(fd, p, n, (off_t)off);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
		off += (uint64_t)w;
	}
	return 0;
}

static int
copy_readwrite(int dst, int src, uint64_t off, uint64_t len)
{
	char buf[65536];

	while (len > 0) {
		size_t want = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		ssize_t r = pread(src, buf, want, (off_t)off);
		int rc;

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -ENODATA;
		if ((rc = om_os_write_all(dst, buf, (size_t)r)) != 0)
			return rc;
		off += (uint64_t)r;
		len -= (uint64_t)r;
	}
	return 0;
}

int
om_os_copy_range(int dst, int src, uint64_t src_off, uint64_t len)
{
	loff_t off = (loff_t)src_off;
	int use_sendfile = 0;

	while (len > 0) {
		size_t chunk = len > (1u << 30) ? (1u << 30) : (size_t)len;
		ssize_t n;

		if (!use_sendfile) {
			n = copy_file_range(src, &off, dst, NULL, chunk, 0);
			if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS ||
			    errno == EOPNOTSUPP)) {
				use_sendfile = 1;
				continue;
			}
		} else {
			off_t o = (off_t)off;

			n = sendfile(dst, src, &o, chunk);
			if (n < 0 && (errno == EINVAL || errno == ENOSYS))
				return copy_readwrite(dst, src, (uint64_t)off, len);
			if (n > 0)
				off = (loff_t)o;
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ENODATA;
		len -= (uint64_t)n;
	}
	return 0;
}

/*
 * linkat(fd, "", AT_EMPTY_PATH) is the cheaper way (no walk through /proc,
 * which cost a PUT of 64 KiB on tmpfs 4% of the worker's CPU): Linux
 * allows it to a process with CAP_DAC_READ_SEARCH, and from 6.10 to one
 * whose credentials opened the file; elsewhere it fails with ENOENT. The
 * first time it does and /proc works, this process uses /proc from then on.
 */
static int empty_path_links = 1;

int
om_os_link_tmpfile(int fd, int dirfd, const char *name)
{
	char proc[64];
	int e;

	if (__atomic_load_n(&empty_path_links, __ATOMIC_RELAXED)) {
		if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
			return 0;
		if (errno != ENOENT)
			return -errno;
	}
	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	if (linkat(AT_FDCWD, proc, dirfd, name, AT_SYMLINK_FOLLOW) == 0) {
		/* So ENOENT meant "not allowed", not a missing directory. */
		__atomic_store_n(&empty_path_links, 0, __ATOMIC_RELAXED);
		return 0;
	}
	e = errno;
	if (e != ENOENT || __atomic_load_n(&empty_path_links, __ATOMIC_RELAXED))
		return -e;
	/* No /proc: AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH. */
	if (linkat(fd, "", dirfd, name, AT_EMPTY_PATH) == 0)
		return 0;
	return -errno;
}

int
om_os_fsync_dir(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

#ifndef __NR_getxattrat
/* NOLINTNEXTLINE(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): the kernel's name, for headers older than the call */
#define __NR_getxattrat 464 /* the same number on every architecture */
#endif

/* The kernel's struct xattr_args: only the kernel reads its members. */
struct om_xattr_args {
	uint64_t value; /* cppcheck-suppress unusedStructMember ; read by the kernel */
	uint32_t size;  /* cppcheck-suppress unusedStructMember ; read by the kernel */
	uint32_t flags; /* cppcheck-suppress unusedStructMember ; read by the kernel */
};

ssize_t
om_os_getxattr_at(int dirfd, const char *dirpath, const char *name, const char *attr,
    void *buf, size_t size)
{
	static int no_getxattrat;
	char path[PATH_MAX];
	ssize_t n;

	if (!__atomic_load_n(&no_getxattrat, __ATOMIC_RELAXED)) {
		struct om_xattr_args a = { (uint64_t)(uintptr_t)buf, (uint32_t)size, 0 };

		n = syscall(__NR_getxattrat, dirfd, name, AT_SYMLINK_NOFOLLOW, attr, &a, sizeof(a));
		if (n >= 0)
			return n;
		if (errno != ENOSYS)
			return -errno;
		__atomic_store_n(&no_getxattrat, 1, __ATOMIC_RELAXED);
	}
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dirpath, name) >= sizeof(path))
		return -ENAMETOOLONG;
	n = lgetxattr(path, attr, buf, size);
	return n >= 0 ? n : -errno;
}

int
om_os_mkdir(int dirfd, const char *name, mode_t mode)
{
	struct stat st;

	if (mkdirat(dirfd, name, mode) == 0)
		return 0;
	if (errno != EEXIST)
		return -errno;
	if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int
om_os_notify(const char *state)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len;
	ssize_t n;
	int fd, rc = 0;

	if (path == NULL || path[0] == '\0')
		return 0;
	len = strlen(path);
	if (len >= sizeof(sa.sun_path) || (path[0] != '/' && path[0] != '@'))
		return -EINVAL;
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = '\0'; /* the abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	n = sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sa,
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len));
	if (n < 0)
		rc = -errno;
	close(fd);
	return rc;
}

/*
 * A copy out of a mapping faults with SIGBUS where the file was cut short
 * after it was mapped. The handler jumps back into the copy that faulted;
 * a SIGBUS anywhere else gets the default action back and, returning,
 * faults again at the same instruction: the process dies as it always
 * did. SA_NODEFER leaves SIGBUS unblocked after the jump, so no signal
 * mask needs saving (sigsetjmp(jb, 0)).
 */
static _Thread_local sigjmp_buf *volatile mapped_jump;

static void
mapped_fault(int sig, siginfo_t *si, void *uc)
{
	sigjmp_buf *jb = mapped_jump;

	(void)si;
	(void)uc;
	if (jb != NULL) {
		mapped_jump = NULL;
		siglongjmp(*jb, 1);
	}
	signal(sig, SIG_DFL);
}

int
om_os_mapped_guard(void)
{
	struct sigaction sa;
	sigset_t set;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = mapped_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) != 0)
		return -errno;
	sigemptyset(&set);
	sigaddset(&set, SIGBUS);
	return -pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int
om_os_copy_mapped(void *dst, const void *src, size_t n)
{
	sigjmp_buf jb;

	if (sigsetjmp(jb, 0) != 0)
		return -EFAULT;
	mapped_jump = &jb;
	memcpy(dst, src, n);
	mapped_jump = NULL;
	return 0;
}
