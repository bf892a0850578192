/*
 * Thin wrappers over the system calls the storage engine needs, each
 * returning 0 (or a count) or -errno. Used by every process.
 */
#ifndef OM_OS_H
#define OM_OS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct iovec;

/* Writes all n bytes at the current offset (retrying EINTR and short writes). */
int om_os_write_all(int fd, const void *buf, size_t n);
/* Reads exactly n bytes at off; -EIO if the file is shorter. */
int om_os_pread_all(int fd, void *buf, size_t n, uint64_t off);
/* All n bytes at off, or -errno. */
int om_os_pwrite_all(int fd, const void *buf, size_t n, uint64_t off);
/*
 * Appends len bytes of src (from src_off) to dst at dst's offset: in the
 * kernel with copy_file_range, else sendfile, else read/write (across
 * filesystems that refuse the faster calls). -ENODATA if src is shorter.
 */
int om_os_copy_range(int dst, int src, uint64_t src_off, uint64_t len);
/* Gives an O_TMPFILE descriptor a name (linkat with AT_EMPTY_PATH, or through
 * /proc/self/fd where that is not allowed). */
int om_os_link_tmpfile(int fd, int dirfd, const char *name);
/* fsync of a directory, by path relative to dirfd ("." for dirfd itself). */
int om_os_fsync_dir(int dirfd, const char *name);
/*
 * The value of extended attribute `attr` of dirfd/name (not following a
 * symbolic link): getxattrat where the kernel has it (6.13), else lgetxattr
 * on dirpath/name. Returns its length or -errno.
 */
ssize_t om_os_getxattr_at(int dirfd, const char *dirpath, const char *name,
    const char *attr, void *buf, size_t size);
/*
 * Copies n bytes out of a shared mapping of a file, or returns -EFAULT if
 * the file no longer holds them (cut short behind the mapping's back: the
 * SIGBUS is caught, not fatal). om_os_mapped_guard installs the handler
 * (and unblocks SIGBUS) once per process, before the first copy; 0 or
 * -errno. A SIGBUS anywhere else keeps its default action.
 */
int om_os_mapped_guard(void);
int om_os_copy_mapped(void *dst, const void *src, size_t n);
/* mkdirat that accepts an existing directory. */
int om_os_mkdir(int dirfd, const char *name, mode_t mode);
/* Tells the service manager (systemd, Type=notify) a state such as
 * "READY=1\nMAINPID=1234", in a datagram to $NOTIFY_SOCKET; 0 without one. */
int om_os_notify(const char *state);

/*
 * Descriptor passing (fdpass.c). om_os_send_fd is one sendmsg of iov with
 * fd (if >= 0) attached to its first byte (SCM_RIGHTS), flags |
 * MSG_NOSIGNAL: the bytes sent, or -errno (the descriptor went only if
 * some bytes did). om_os_recv_fds is one recvmsg (flags |
 * MSG_CMSG_CLOEXEC) of at most len bytes with up to OM_OS_FDS_MAX
 * descriptors: each is kept in fds->fd while fds->n < fds->max, else
 * closed; fds->received counts them all. The bytes received (0: end of
 * stream), or -errno; -EPROTO when more descriptors came than it takes
 * (the kernel dropped some), those that came kept or closed all the same.
 */
#define OM_OS_FDS_MAX 8
typedef struct {
	int *fd;           /* room for max descriptors */
	unsigned n, max;   /* kept, and at most */
	unsigned received; /* that came, kept or closed */
} om_os_fds_t;
ssize_t om_os_send_fd(int sock, const struct iovec *iov, int iovcnt, int fd, int flags);
ssize_t om_os_recv_fds(int sock, void *buf, size_t len, int flags, om_os_fds_t *fds);
/* The same into iovcnt buffers, filled in order. */
ssize_t om_os_recv_fds_iov(int sock, struct iovec *iov, int iovcnt, int flags, om_os_fds_t *fds);

/*
 * Signals read from a signalfd (signals.c). om_os_signalfd blocks the n
 * signals of sigs first if block (a child inherits its master's mask),
 * and returns a non-blocking signalfd for them, or -errno.
 * om_os_signal_next reads the next signal that came: its number, or 0
 * when none is left.
 */
int om_os_signalfd(const int *sigs, unsigned n, int block);
int om_os_signal_next(int sigfd);

#endif
