/*
 * The cache manager process: every [cache] interval, one maintenance pass
 * of the store (expiry, tier limits, promotion, read-count decay). QUIT,
 * TERM and INT stop it between passes; USR1 reopens the log.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "server/om_server.h"

int
om_manager_run(om_srv_t *srv)
{
	om_srv_stats_sh_t *stats = om_srv_stats(srv, srv->slot);
	uint32_t interval = srv->conf->cache.interval_ms;
	uint64_t next = om_clock_ms() + interval;
	struct signalfd_siginfo si;
	sigset_t set;
	int sigfd;

	sigemptyset(&set);
	sigaddset(&set, SIGQUIT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGHUP);
	sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sigfd < 0) {
		om_log_err(errno, "signalfd failed");
		return OM_EXIT_FATAL;
	}
	for (;;) {
		struct pollfd p = { sigfd, POLLIN, 0 };
		uint64_t now = om_clock_ms();
		int rc = poll(&p, 1, next > now ? (int)(next - now) : 0);

		if (rc < 0 && errno != EINTR) {
			om_log_err(errno, "poll failed");
			return OM_EXIT_FATAL;
		}
		while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			if (si.ssi_signo == SIGUSR1) {
				if (om_log_reopen() != 0)
					om_log_err(errno, "reopening the log failed");
			} else if (si.ssi_signo != SIGHUP) {
				om_log_info(0, "exiting");
				return 0;
			}
		}
		if (om_clock_ms() >= next) {
			om_maint_stats_t ms;

			rc = om_store_maintain(srv->st, &ms);
			if (rc != 0)
				om_log_err(-rc, "maintenance pass failed");
			else if (ms.expired || ms.evicted || ms.promoted || ms.copies_dropped)
				om_log_debug(0, "%llu expired, %llu evicted, %llu promoted, "
				    "%llu copies dropped", (unsigned long long)ms.expired,
				    (unsigned long long)ms.evicted, (unsigned long long)ms.promoted,
				    (unsigned long long)ms.copies_dropped);
			OM_STORE(&stats->maint_passes, stats->maint_passes + 1);
			next = om_clock_ms() + interval;
		}
	}
}
