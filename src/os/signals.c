/*
 * Signals as events: each process blocks the signals it handles and reads
 * them from a signalfd in its loop, so that no handler runs and no system
 * call returns EINTR because of them. The master, workers and the cache
 * manager use it.
 */
#include <errno.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "os/om_os.h"

int
om_os_signalfd(const int *sigs, unsigned n, int block)
{
	sigset_t set;
	int fd;

	sigemptyset(&set);
	for (unsigned i = 0; i < n; i++)
		sigaddset(&set, sigs[i]);
	if (block && sigprocmask(SIG_BLOCK, &set, NULL) != 0)
		return -errno;
	fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return fd >= 0 ? fd : -errno;
}

int
om_os_signal_next(int sigfd)
{
	struct signalfd_siginfo si;

	if (read(sigfd, &si, sizeof(si)) != (ssize_t)sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}
