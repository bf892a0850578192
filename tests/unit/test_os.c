/*
 * src/os over a socketpair: a descriptor travels with the first byte of
 * its bytes (SCM_RIGHTS), arrives close-on-exec and open on the same file;
 * a receiver keeps what it has room for and closes the rest (counted from
 * /proc); a message with more descriptors than it takes is an error that
 * leaks nothing; end of stream and errors come back as values. Signals
 * read from a signalfd.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "om_test.h"
#include "os/om_os.h"

static int
open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

static void
pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
}

/* Same file: same device and inode. */
static void
assert_same_file(int a, int b)
{
	struct stat sa, sb;

	assert_int_equal(fstat(a, &sa), 0);
	assert_int_equal(fstat(b, &sb), 0);
	assert_true(sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino);
}

/* Sends n descriptors of fd in one message with one byte, the way a peer
 * that does not follow the protocol could. */
static void
send_many(int sock, int fd, unsigned n)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * 16)];
	} ctl;
	int fds[16] = { 0 };
	struct iovec iov = { "x", 1 };
	struct msghdr mh = { 0 };
	struct cmsghdr *cm;

	assert_true(n <= 16);
	for (unsigned i = 0; i < n; i++)
		fds[i] = fd;
	memset(&ctl, 0, sizeof(ctl));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = CMSG_SPACE(sizeof(int) * n);
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int) * n);
	memcpy(CMSG_DATA(cm), fds, sizeof(int) * n);
	assert_int_equal(sendmsg(sock, &mh, 0), 1);
}

static void
test_fd_with_first_byte(void **state)
{
	struct iovec iov[2] = { { "head", 4 }, { "er+body", 7 } };
	int sv[2], got[OM_OS_FDS_MAX], file, before;
	om_os_fds_t fds = { got, 0, OM_OS_FDS_MAX, 0 };
	char buf[64];

	(void)state;
	pair(sv);
	file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_true(file >= 0);
	before = open_fds();
	assert_int_equal(om_os_send_fd(sv[0], iov, 2, file, 0), 11);
	/* Sent: the kernel holds its own reference, ours may go. */
	close(file);
	/* The first byte alone brings the descriptor; the rest follows. */
	assert_int_equal(om_os_recv_fds(sv[1], buf, 1, 0, &fds), 1);
	assert_int_equal(fds.n, 1);
	assert_int_equal(fds.received, 1);
	assert_int_equal(buf[0], 'h');
	assert_int_equal(fcntl(got[0], F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	file = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	assert_same_file(got[0], file);
	close(file);
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), 0, &fds), 10);
	assert_memory_equal(buf, "eader+body", 10);
	assert_int_equal(fds.n, 1);
	close(got[0]);
	assert_int_equal(open_fds(), before - 1);
	close(sv[0]);
	close(sv[1]);
}

static void
test_no_fd(void **state)
{
	struct iovec iov = { "abc", 3 };
	int sv[2], got[1] = { -1 };
	om_os_fds_t fds = { got, 0, 1, 0 };
	char buf[8];

	(void)state;
	pair(sv);
	assert_int_equal(om_os_send_fd(sv[0], &iov, 1, -1, 0), 3);
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), 0, &fds), 3);
	assert_int_equal(fds.n, 0);
	assert_int_equal(fds.received, 0);
	close(sv[0]);
	close(sv[1]);
}

/* Descriptors beyond the receiver's room are closed, not leaked. */
static void
test_surplus_closed(void **state)
{
	int sv[2], got[2], before;
	om_os_fds_t fds = { got, 0, 2, 0 };
	char buf[8];

	(void)state;
	pair(sv);
	before = open_fds();
	send_many(sv[0], sv[0], 5);
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), 0, &fds), 1);
	assert_int_equal(fds.received, 5);
	assert_int_equal(fds.n, 2);
	assert_int_equal(open_fds(), before + 2);
	assert_same_file(got[0], sv[0]);
	assert_same_file(got[1], sv[0]);
	close(got[0]);
	close(got[1]);
	/* A full receiver keeps nothing more. */
	fds.n = 0;
	fds.max = 0;
	fds.received = 0;
	send_many(sv[0], sv[0], 1);
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), 0, &fds), 1);
	assert_int_equal(fds.received, 1);
	assert_int_equal(fds.n, 0);
	assert_int_equal(open_fds(), before);
	close(sv[0]);
	close(sv[1]);
}

/* More than OM_OS_FDS_MAX in one message: the kernel drops what does not
 * fit the control buffer, which is an error; those that came are kept. */
static void
test_too_many(void **state)
{
	int sv[2], got[OM_OS_FDS_MAX], before;
	om_os_fds_t fds = { got, 0, OM_OS_FDS_MAX, 0 };
	char buf[8];

	(void)state;
	pair(sv);
	before = open_fds();
	send_many(sv[0], sv[0], OM_OS_FDS_MAX + 4);
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), 0, &fds), -EPROTO);
	assert_int_equal(fds.n, OM_OS_FDS_MAX);
	assert_int_equal(fds.received, OM_OS_FDS_MAX);
	assert_int_equal(open_fds(), before + OM_OS_FDS_MAX);
	for (unsigned i = 0; i < fds.n; i++)
		close(got[i]);
	assert_int_equal(open_fds(), before);
	close(sv[0]);
	close(sv[1]);
}

static void
test_errors(void **state)
{
	struct iovec iov = { "abc", 3 };
	int sv[2], got[1] = { -1 };
	om_os_fds_t fds = { got, 0, 1, 0 };
	char buf[8];

	(void)state;
	pair(sv);
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), MSG_DONTWAIT, &fds), -EAGAIN);
	close(sv[0]);
	/* End of stream. */
	assert_int_equal(om_os_recv_fds(sv[1], buf, sizeof(buf), 0, &fds), 0);
	pair(sv);
	close(sv[1]);
	/* A closed peer: an error, not SIGPIPE. */
	assert_int_equal(om_os_send_fd(sv[0], &iov, 1, sv[0], 0), -EPIPE);
	assert_int_equal(om_os_send_fd(-1, &iov, 1, -1, 0), -EBADF);
	close(sv[0]);
	assert_int_equal(fds.received, 0);
}

static void
test_signalfd(void **state)
{
	static const int sigs[] = { SIGUSR1, SIGUSR2 };
	sigset_t old, now;
	int fd;

	(void)state;
	assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &old), 0);
	fd = om_os_signalfd(sigs, 2, 1);
	assert_true(fd >= 0);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &now), 0);
	assert_true(sigismember(&now, SIGUSR1) && sigismember(&now, SIGUSR2));
	assert_int_equal(om_os_signal_next(fd), 0);
	assert_int_equal(raise(SIGUSR2), 0);
	assert_int_equal(raise(SIGUSR1), 0);
	/* Pending signals are read lowest first. */
	assert_int_equal(om_os_signal_next(fd), SIGUSR1);
	assert_int_equal(om_os_signal_next(fd), SIGUSR2);
	assert_int_equal(om_os_signal_next(fd), 0);
	close(fd);
	assert_int_equal(sigprocmask(SIG_SETMASK, &old, NULL), 0);
	/* Not blocking: the mask stays as it was. */
	fd = om_os_signalfd(sigs, 1, 0);
	assert_true(fd >= 0);
	assert_int_equal(sigprocmask(SIG_SETMASK, NULL, &now), 0);
	assert_int_equal(sigismember(&now, SIGUSR1), sigismember(&old, SIGUSR1));
	close(fd);
}

/* A copy out of a mapping: the bytes; a file cut short under the
 * mapping is -EFAULT (the SIGBUS caught), and the next copy works. */
static void
test_copy_mapped(void **state)
{
	char path[] = "/tmp/om_test_os.XXXXXX";
	unsigned char want[8192], got[8192];
	void *m;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	om_test_fill(want, sizeof(want), 5);
	assert_int_equal(write(fd, want, sizeof(want)), (ssize_t)sizeof(want));
	m = mmap(NULL, sizeof(want), PROT_READ, MAP_SHARED, fd, 0);
	assert_true(m != MAP_FAILED);
	assert_int_equal(om_os_mapped_guard(), 0);
	assert_int_equal(om_os_copy_mapped(got, m, sizeof(got)), 0);
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(om_os_copy_mapped(got, (const unsigned char *)m + 4096, 100), -EFAULT);
	assert_int_equal(om_os_copy_mapped(got, m, 4096), 0);
	assert_memory_equal(got, want, 4096);
	assert_int_equal(om_os_copy_mapped(got, m, sizeof(got)), -EFAULT);
	munmap(m, sizeof(want));
	close(fd);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fd_with_first_byte),
		cmocka_unit_test(test_no_fd),
		cmocka_unit_test(test_surplus_closed),
		cmocka_unit_test(test_too_many),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_signalfd),
		cmocka_unit_test(test_copy_mapped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
