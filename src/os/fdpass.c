/*
 * Descriptor passing over Unix sockets (SCM_RIGHTS): a descriptor travels
 * with the first byte of the bytes it belongs to, and a receiver never
 * keeps more than it has room for. Used by objmapperd's workers and by
 * libobjmapper (client processes).
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "os/om_os.h"

ssize_t
om_os_send_fd(int sock, const struct iovec *iov, int iovcnt, int fd, int flags)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} ctl;
	struct msghdr mh;
	ssize_t n;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = (struct iovec *)iov;
	mh.msg_iovlen = (size_t)iovcnt;
	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = sizeof(ctl.buf);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	n = sendmsg(sock, &mh, flags | MSG_NOSIGNAL);
	return n >= 0 ? n : -errno;
}

ssize_t
om_os_recv_fds(int sock, void *buf, size_t len, int flags, om_os_fds_t *fds)
{
	struct iovec iov = { buf, len };

	return om_os_recv_fds_iov(sock, &iov, 1, flags, fds);
}

ssize_t
om_os_recv_fds_iov(int sock, struct iovec *iov, int iovcnt, int flags, om_os_fds_t *fds)
{
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * OM_OS_FDS_MAX)];
	} ctl;
	struct msghdr mh;
	ssize_t n;

	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = iov;
	mh.msg_iovlen = (size_t)iovcnt;
	mh.msg_control = ctl.buf;
	mh.msg_controllen = sizeof(ctl.buf);
	n = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			fds->received++;
			if (fds->n < fds->max)
				fds->fd[fds->n++] = fd;
			else
				close(fd);
		}
	}
	/* More descriptors came than the control buffer holds: the kernel
	 * closed the rest, and the stream cannot be trusted. */
	if (mh.msg_flags & MSG_CTRUNC)
		return -EPROTO;
	return n;
}
