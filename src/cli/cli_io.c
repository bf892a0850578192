/*
 * Descriptor I/O of the objmapper command: whole writes, whole reads, and
 * the kernel-side copy of a received object to the output. Runs in the
 * user's process.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/types.h>
#include <unistd.h>

#include "cli/cli_int.h"

/* A way of copying that this pair of descriptors does not support. */
#define UNSUPPORTED 1

#define RW_CHUNK   (256u * 1024u)
#define PIPE_WANT  (1024 * 1024)
#define KERN_CHUNK (1u << 30) /* sendfile moves at most 0x7ffff000 per call */

/* The shell may hand us a non-blocking descriptor (shared with whoever
 * set O_NONBLOCK on it): wait instead of failing with EAGAIN. */
static int
wait_fd(int fd, short events)
{
	struct pollfd p = { .fd = fd, .events = events };

	while (poll(&p, 1, -1) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int
again(int fd, short events)
{
	if (errno == EINTR)
		return 0;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return wait_fd(fd, events);
	return -errno;
}

static int
unsupported(int err)
{
	return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP;
}

int
om_cli_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;
	int rc;

	while (n > 0) {
		ssize_t w = write(fd, p, n > SSIZE_MAX ? SSIZE_MAX : n);

		if (w < 0) {
			if ((rc = again(fd, POLLOUT)) != 0)
				return rc;
			continue;
		}
		if (w == 0)
			return -EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static uint64_t
min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

/* *off: bytes of in already written to out, kept exact on every return so
 * that the next way can take over where this one stopped. */
static int
copy_sendfile(int out, int in, uint64_t *off, uint64_t len)
{
	int rc;

	while (*off < len) {
		off_t o = (off_t)*off;
		ssize_t n = sendfile(out, in, &o, (size_t)min_u64(len - *off, KERN_CHUNK));

		if (n < 0) {
			if (unsupported(errno))
				return UNSUPPORTED;
			if ((rc = again(out, POLLOUT)) != 0)
				return rc;
			continue;
		}
		if (n == 0)
			return -ENODATA;
		*off += (uint64_t)n;
	}
	return 0;
}

/* Empties the pipe into out by read and write, for an out that takes no
 * splice: the bytes already moved into the pipe must not be lost. */
static int
drain_rw(int out, int pipe_rd, size_t n, uint64_t *off)
{
	static char buf[64 * 1024];
	int rc;

	while (n > 0) {
		ssize_t r = read(pipe_rd, buf, n < sizeof(buf) ? n : sizeof(buf));

		if (r < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (r == 0)
			return -EIO;
		if ((rc = om_cli_write_all(out, buf, (size_t)r)) != 0)
			return rc;
		n -= (size_t)r;
		*off += (uint64_t)r;
	}
	return UNSUPPORTED;
}

static int
copy_splice(int out, int in, uint64_t *off, uint64_t len)
{
	int p[2], sz, rc = 0;

	if (pipe2(p, O_CLOEXEC) != 0)
		return UNSUPPORTED;
	/* A larger pipe means fewer calls; the default 64 KiB still works. */
	sz = fcntl(p[1], F_SETPIPE_SZ, PIPE_WANT);
	if (sz <= 0)
		sz = 64 * 1024;
	while (rc == 0 && *off < len) {
		loff_t o = (loff_t)*off;
		ssize_t n = splice(in, &o, p[1], NULL, (size_t)min_u64(len - *off, (uint64_t)sz),
		    SPLICE_F_MOVE);
		size_t inpipe;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = unsupported(errno) ? UNSUPPORTED : -errno;
			break;
		}
		if (n == 0) {
			rc = -ENODATA;
			break;
		}
		inpipe = (size_t)n;
		while (rc == 0 && inpipe > 0) {
			ssize_t w = splice(p[0], NULL, out, NULL, inpipe, SPLICE_F_MOVE);

			if (w < 0) {
				if (unsupported(errno))
					rc = drain_rw(out, p[0], inpipe, off);
				else
					rc = again(out, POLLOUT);
				continue;
			}
			inpipe -= (size_t)w;
			*off += (uint64_t)w;
		}
	}
	close(p[0]);
	close(p[1]);
	return rc;
}

static int
copy_rw(int out, int in, uint64_t *off, uint64_t len)
{
	char *buf = malloc(RW_CHUNK);
	int rc = 0;

	if (buf == NULL)
		return -ENOMEM;
	while (rc == 0 && *off < len) {
		ssize_t n = pread(in, buf, (size_t)min_u64(len - *off, RW_CHUNK), (off_t)*off);

		if (n < 0) {
			if (errno != EINTR)
				rc = -errno;
			continue;
		}
		if (n == 0) {
			rc = -ENODATA;
			break;
		}
		if ((rc = om_cli_write_all(out, buf, (size_t)n)) == 0)
			*off += (uint64_t)n;
	}
	free(buf);
	return rc;
}

int
om_cli_copy_fd(int out, int in, uint64_t len)
{
	uint64_t off = 0;
	int rc;

	/* sendfile refuses e.g. an O_APPEND output; splice refuses it too,
	 * and some character devices. */
	rc = copy_sendfile(out, in, &off, len);
	if (rc == UNSUPPORTED)
		rc = copy_splice(out, in, &off, len);
	if (rc == UNSUPPORTED)
		rc = copy_rw(out, in, &off, len);
	return rc;
}

int
om_cli_read_all(int fd, uint64_t limit, void **bufp, size_t *lenp)
{
	size_t cap = 64u * 1024u, len = 0;
	char *buf = malloc(cap), *nb;
	int rc;

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		ssize_t n;

		if (len == cap) {
			if (cap > SIZE_MAX / 2 || (nb = realloc(buf, cap * 2)) == NULL) {
				rc = -ENOMEM;
				goto fail;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len);
		if (n < 0) {
			if ((rc = again(fd, POLLIN)) != 0)
				goto fail;
			continue;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > limit) {
			rc = -EFBIG;
			goto fail;
		}
	}
	*bufp = buf;
	*lenp = len;
	return 0;
fail:
	free(buf);
	return rc;
}
