/*
 * The cache manager process: every [cache] interval, one maintenance pass
 * of the store (expiry, tier limits, promotion, read-count decay), the
 * objects that VERIFY queued; between passes, every SCRUB_STEP_MS, a step
 * of the scrub at [cache] scrub_rate, a scrub pass starting at most every
 * [cache] scrub_interval. QUIT, TERM and INT stop it between passes; USR1
 * reopens the log.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "server/om_server.h"

/* A scrub pass asked for by VERIFY runs at least this fast (bytes/s). */
#define SCRUB_ON_DEMAND_RATE ((uint64_t)64 << 20)

/*
 * The scrub reads in steps this far apart, each what the rate allows since
 * the last one: a step per interval read 8 MiB of 1 KiB objects in one go
 * at the default rate, 11 ms of a CPU taken at once from the clients. A
 * step makes up for at most SCRUB_CATCHUP_MS (a long pass, a stopped
 * process): the rate is a ceiling.
 */
#define SCRUB_STEP_MS 20
#define SCRUB_CATCHUP_MS 100

/*
 * What VERIFY asked of us, in every process's slot: objects to check now,
 * and scrub passes to start (from the beginning, at least at the on-demand
 * rate until the pass ends). Returns 1 if a pass was asked for.
 */
static int
take_requests(om_srv_t *srv)
{
	unsigned nprocs = om_index_procs(srv->ix);
	int pass = 0;

	for (unsigned slot = 0; slot < nprocs; slot++) {
		om_srv_requests_sh_t *rq = om_srv_requests(srv, slot);
		uint64_t want, done;

		if (rq == NULL)
			continue;
		want = OM_LOAD_ACQ(&rq->pass_req);
		if (want != OM_LOAD(&rq->pass_done)) {
			OM_STORE(&rq->pass_done, want);
			pass = 1;
		}
		want = OM_LOAD_ACQ(&rq->verify_req);
		done = OM_LOAD(&rq->verify_done);
		if (want - done > OM_VERIFY_QUEUE)
			done = want - OM_VERIFY_QUEUE;
		for (; done < want; done++) {
			uint64_t id = OM_LOAD(&rq->verify_q[done % OM_VERIFY_QUEUE].id), n;
			uint32_t s = OM_LOAD(&rq->verify_q[done % OM_VERIFY_QUEUE].slot);
			om_ix_obj_t o;

			/* Gone or replaced since: nothing of it to check. */
			if (om_index_slot_get(srv->ix, s, id, &o) == 0)
				(void)om_store_verify_obj(srv->st, &o, &n);
		}
		OM_STORE(&rq->verify_done, want);
	}
	return pass;
}

/* Blocked already (the master's mask); HUP is read and ignored. */
static const int manager_signals[] = { SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGHUP };

int
om_manager_run(om_srv_t *srv)
{
	om_srv_stats_sh_t *stats = om_srv_stats(srv, srv->slot);
	uint32_t interval = srv->conf->cache.interval_ms;
	uint64_t rate = srv->conf->cache.scrub_rate, next = om_clock_ms() + interval;
	uint64_t last_scrub = om_clock_ms(), next_scrub = last_scrub + SCRUB_STEP_MS;
	/* When the pass under way started, and when the next may: a store
	 * read through in less than scrub_interval waits for the rest of
	 * it (a small one was read again every step, 50 passes a second,
	 * its cold objects dropped from the page cache and read back from
	 * the disk each time). A new manager starts, or goes on with, a
	 * pass at once. */
	uint64_t pass_start = last_scrub, pass_gate = 0;
	int64_t credit = 0; /* bytes the scrub may read now; below 0, read ahead */
	/* Kept in the master's slot, so that a reload's new manager goes on
	 * where the old one was rather than start the pass again. */
	uint32_t *cursor = &om_srv_requests(srv, OM_SLOT_MASTER)->scrub_cursor;
	int on_demand = 0;
	int sigfd, sig;

	sigfd = om_os_signalfd(manager_signals, OM_ARRAY_LEN(manager_signals), 0);
	if (sigfd < 0) {
		om_log_err(-sigfd, "signalfd failed");
		return OM_EXIT_FATAL;
	}
	for (;;) {
		struct pollfd p = { sigfd, POLLIN, 0 };
		uint64_t now = om_clock_ms(), wake = next;
		int rc, ready;

		if ((rate > 0 || on_demand) && next_scrub < wake)
			wake = next_scrub < pass_gate ? pass_gate : next_scrub;
		if (wake > next)
			wake = next;
		rc = ready = poll(&p, 1, wake > now ? (int)(wake - now) : 0);
		if (rc < 0 && errno != EINTR) {
			om_log_err(errno, "poll failed");
			return OM_EXIT_FATAL;
		}
		/* Only when it is readable: the scrub's steps wake the loop
		 * 50 times a second. */
		while (ready > 0 && (p.revents & POLLIN) && (sig = om_os_signal_next(sigfd)) != 0) {
			if (sig == SIGUSR1) {
				if ((rc = om_log_reopen()) != 0)
					om_log_err(-rc, "reopening the log failed");
			} else if (sig != SIGHUP) {
				om_log_info(0, "exiting");
				return 0;
			}
		}
		/* Packs that a worker's compaction removed are let go at
		 * once, not at the next pass's sweep: the descriptors this
		 * process marks entries dead through would hold their space. */
		om_store_pack_follow(srv->st);
		if (om_clock_ms() >= next) {
			om_maint_stats_t ms;

			rc = om_store_maintain(srv->st, &ms);
			if (rc != 0)
				om_log_err_limited(-rc, "maintenance pass failed");
			else if (ms.expired || ms.evicted || ms.promoted || ms.copies_dropped)
				om_log_debug(0, "%llu expired, %llu evicted, %llu promoted, "
				    "%llu copies dropped", (unsigned long long)ms.expired,
				    (unsigned long long)ms.evicted, (unsigned long long)ms.promoted,
				    (unsigned long long)ms.copies_dropped);
			OM_COUNT(stats->maint_passes, 1);
			if (take_requests(srv)) {
				OM_STORE(cursor, 0);
				on_demand = 1;
				pass_gate = 0;
				pass_start = om_clock_ms();
				om_log_info(0, "scrub: a pass over the store starts (asked for by VERIFY)");
			}
			om_log_limits_flush();
			next = om_clock_ms() + interval;
		}
		if (om_clock_ms() >= next_scrub && om_clock_ms() >= pass_gate && (rate > 0 || on_demand)) {
			/* A step of the scrub: what the rate allows since the last
			 * one, less what the last one read past its budget (a
			 * step ends after the object that spent it). */
			uint64_t now_ms = om_clock_ms(), r = rate, used = 0;
			uint64_t dt = now_ms - last_scrub > SCRUB_CATCHUP_MS ? SCRUB_CATCHUP_MS : now_ms - last_scrub;
			uint64_t passes = om_store_stats(srv->st)->scrub_passes;

			if (pass_gate != 0) {
				/* The first step of a pass after a wait: one
				 * step's reading, nothing saved up. */
				pass_gate = 0;
				pass_start = now_ms;
				credit = 0;
				dt = SCRUB_STEP_MS;
			}
			if (on_demand && r < SCRUB_ON_DEMAND_RATE)
				r = SCRUB_ON_DEMAND_RATE;
			credit += (int64_t)(r / 1000 * dt);
			if (credit > (int64_t)(r / 1000 * SCRUB_CATCHUP_MS))
				credit = (int64_t)(r / 1000 * SCRUB_CATCHUP_MS);
			last_scrub = now_ms;
			next_scrub = now_ms + SCRUB_STEP_MS;
			if (credit > 0) {
				if (om_store_scrub(srv->st, cursor, (uint64_t)credit, &used) == 1) {
					on_demand = 0;
					/* A walk that found no object (an empty
					 * store) is tried again at the next
					 * interval, not at once. */
					if (om_store_stats(srv->st)->scrub_passes != passes)
						pass_gate = pass_start + srv->conf->cache.scrub_interval_ms;
					else
						pass_gate = now_ms + interval;
					if (pass_gate <= now_ms)
						pass_gate = 0;
					else
						credit = 0;
				}
				credit -= (int64_t)used;
			}
		}
	}
}
