/*
 * A worker process: one epoll loop over the inherited listeners (accepting
 * with EPOLLEXCLUSIVE, so that one worker wakes per connection), its
 * connections and a signalfd. QUIT drains it (finish what was accepted,
 * GOAWAY, exit); TERM and INT stop it at once.
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "server/protocols.h"

/* One connection per wake-up: the listener stays readable, and with
 * EPOLLEXCLUSIVE an idle worker gets the next one, so that connections
 * spread over the workers instead of piling on whichever woke first. */
#define ACCEPT_BATCH 1
#define SWEEP_MS 1000
#define NOTES_MS 50

/* ---- connections ------------------------------------------------------- */

/* Stream listeners on or off (accepting); UDP listeners stay on until
 * the worker drains. */
static void
listeners_set(worker_t *w, int on)
{
	for (unsigned i = 0; i < w->nls; i++) {
		wlistener_t *l = &w->ls[i];
		struct epoll_event e;

		if (l->ls->transport == OM_TRANSPORT_UDP && !on && !w->draining)
			continue;
		if (on && !l->in_epoll) {
			e.events = EPOLLIN | EPOLLEXCLUSIVE;
			e.data.ptr = l;
			if (epoll_ctl(w->ep, EPOLL_CTL_ADD, l->ls->fd, &e) == 0)
				l->in_epoll = 1;
			else
				om_log_err_limited(errno, "epoll_ctl(ADD listener) failed");
		} else if (!on && l->in_epoll) {
			epoll_ctl(w->ep, EPOLL_CTL_DEL, l->ls->fd, NULL);
			l->in_epoll = 0;
		}
	}
	w->accepting = on;
}

static void
accept_some(worker_t *w, wlistener_t *l)
{
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		om_peer_t peer;
		int fd, rc;

		fd = accept4(l->ls->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED)
				return;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				/* Out of descriptors: pause accepting rather than spin. */
				om_log_warn_limited(errno, "accept on %s failed; pausing accepts for 100 ms",
				    l->ls->where);
				OM_COUNT(w->stats->accept_pauses, 1);
				listeners_set(w, 0);
				w->accept_resume_ms = om_clock_ms() + 100;
				return;
			}
			om_log_err_limited(errno, "accept on %s failed", l->ls->where);
			return;
		}
		if (w->nconns >= w->srv->conf->daemon.max_connections) {
			/* Over the limit: told so and closed. Then this worker stays
			 * out of accepting for a while, so that workers with room
			 * take the next ones. */
			conn_reject(w, fd, l, "too many connections: try again later");
			listeners_set(w, 0);
			w->accept_resume_ms = om_clock_ms() + 100;
			return;
		}
		if ((rc = om_peer_from_socket(&peer, fd, l->ls->transport)) != 0) {
			om_log_debug(-rc, "a peer on %s left before it was known", l->ls->where);
			close(fd);
			continue;
		}
		if (l->ls->transport == OM_TRANSPORT_TCP)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &(int){ 1 }, sizeof(int));
		/* A large inline response leaves in one write. */
		if (l->ls->send_buffer) {
			int sndbuf = (int)l->ls->send_buffer;

			if (setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0)
				om_log_debug(errno, "setsockopt(SO_SNDBUF) failed");
		}
		if (conn_new(w, fd, l, &peer) == NULL)
			close(fd);
	}
}

/* ---- the loop ---------------------------------------------------------- */

static void
start_drain(worker_t *w)
{
	if (w->draining)
		return;
	om_log_info(0, "draining (%u connections)", w->nconns);
	w->draining = 1;
	w->drain_deadline_ms = om_clock_ms() + w->srv->conf->daemon.shutdown_timeout_ms;
	listeners_set(w, 0);
	/* Stop listening for good: the socket stays open in the master and
	 * the next generation. */
	for (unsigned i = 0; i < w->nls; i++)
		close(w->ls[i].ls->fd);
	w->nls = 0;
	for (conn_t *c = w->conns; c != NULL;) {
		conn_t *n = conn_next(c);

		conn_drain(c);
		c = n;
	}
}

/* Blocked already: the master's mask is inherited. HUP is read and
 * ignored (the master reloads). */
static const int child_signals[] = { SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGHUP };

static int
handle_signals(worker_t *w)
{
	int sig, rc;

	while ((sig = om_os_signal_next(w->sigfd)) != 0) {
		switch (sig) {
		case SIGQUIT:
			start_drain(w);
			break;
		case SIGTERM:
		case SIGINT:
			return -1;
		case SIGUSR1:
			if ((rc = om_log_reopen()) != 0)
				om_log_err(-rc, "reopening the log failed");
			break;
		default:
			break;
		}
	}
	return 0;
}

/* The worker's state, its epoll set with the signalfd and its listeners
 * (accepting), its descriptor cache; NULL (logged) if any fails. */
static worker_t *
worker_new(om_srv_t *srv)
{
	worker_t *w = calloc(1, sizeof(*w));
	struct epoll_event e = { .events = EPOLLIN };

	if (w == NULL)
		return NULL;
	w->srv = srv;
	w->stats = om_srv_stats(srv, srv->slot);
	w->stats2 = om_srv_stats2(srv, srv->slot);
	if (om_fdc_init(&w->fdc, srv->ix, srv->conf->cache.open_files, srv->conf->daemon.max_connections) != 0) {
		om_log_err(ENOMEM, "no memory for %u cached descriptors", w->fdc.size);
		free(w);
		return NULL;
	}
	w->ep = epoll_create1(EPOLL_CLOEXEC);
	w->sigfd = w->ep >= 0 ? om_os_signalfd(child_signals, OM_ARRAY_LEN(child_signals), 0) : -errno;
	if (w->ep < 0 || w->sigfd < 0) {
		om_log_err(-w->sigfd, "epoll or signalfd failed");
		if (w->ep >= 0)
			close(w->ep);
		free(w->fdc.e);
		free(w);
		return NULL;
	}
	w->sig_tag.kind = EV_SIGNAL;
	e.data.ptr = &w->sig_tag;
	epoll_ctl(w->ep, EPOLL_CTL_ADD, w->sigfd, &e);
	for (unsigned i = 0; i < srv->nlisteners; i++) {
		w->ls[i].tag.kind = EV_LISTENER;
		w->ls[i].ls = srv->listeners[i];
		w->ls[i].proto = srv->listeners[i]->http ? &conn_proto_http : &conn_proto_bin;
	}
	w->nls = srv->nlisteners;
	listeners_set(w, 1);
	w->next_sweep_ms = om_clock_ms() + SWEEP_MS;
	return w;
}

/* How long the loop may wait for events: until the next sweep, the end of
 * a drain, the resumption of accepting, the next read of the notes of
 * dropped files; not at all with work on the ready list. -1: the loop is
 * over (drained, or past the shutdown timeout). */
static int
wait_ms(worker_t *w)
{
	uint64_t now = om_clock_ms();
	int timeout = (int)(w->next_sweep_ms > now ? w->next_sweep_ms - now : 0);

	if (w->draining) {
		if (w->nconns == 0)
			return -1;
		if (now >= w->drain_deadline_ms) {
			om_log_warn(0, "shutdown timeout: closing %u connections", w->nconns);
			return -1;
		}
		if ((int)(w->drain_deadline_ms - now) < timeout)
			timeout = (int)(w->drain_deadline_ms - now);
	}
	if (w->accept_resume_ms && (int)(w->accept_resume_ms - now) < timeout)
		timeout = w->accept_resume_ms > now ? (int)(w->accept_resume_ms - now) : 0;
	/* While it holds descriptors, an idle worker still reads the notes of
	 * dropped files often, so that their space comes back within NOTES_MS. */
	if (w->fdc.count > 0 && timeout > NOTES_MS)
		timeout = NOTES_MS;
	if (w->ready != NULL)
		timeout = 0;
	return timeout;
}

/* The events of one epoll_wait. -1: a signal says stop now. */
static int
events(worker_t *w, const struct epoll_event *evs, int n)
{
	for (int i = 0; i < n; i++) {
		ev_tag_t *t = evs[i].data.ptr;

		if (t->kind == EV_CONN) {
			conn_event((conn_t *)t, evs[i].events);
		} else if (t->kind == EV_LISTENER) {
			wlistener_t *l = (wlistener_t *)t;

			if (w->draining)
				continue;
			if (l->ls->transport == OM_TRANSPORT_UDP)
				conn_udp_input(w, l);
			else
				accept_some(w, l);
		} else if (handle_signals(w) != 0) {
			return -1;
		}
	}
	return 0;
}

/* The rest of a turn: the notes of dropped files, the ready list, accepting
 * again after a pause, and once a second the sweep (timeouts, the cache,
 * the log's counts). */
static void
turn_end(worker_t *w)
{
	uint64_t now;

	om_fdc_follow(&w->fdc);
	om_store_pack_follow(w->srv->st);
	/* Connections with buffered work get their turn. */
	conn_ready_run(w);
	now = om_clock_ms();
	if (w->accept_resume_ms && now >= w->accept_resume_ms) {
		w->accept_resume_ms = 0;
		/* Also at the limit: the next newcomer that wakes this worker is
		 * told BUSY rather than left in the backlog. */
		if (!w->draining)
			listeners_set(w, 1);
	}
	if (now >= w->next_sweep_ms) {
		om_log_limits_flush();
		om_fdc_tick(&w->fdc);
		om_store_pack_sweep(w->srv->st);
		for (conn_t *k = w->conns; k != NULL;) {
			conn_t *next = conn_next(k);

			conn_tick(k, now);
			k = next;
		}
		w->next_sweep_ms = now + SWEEP_MS;
	}
}

static void
worker_end(worker_t *w)
{
	conn_t *c;

	while (w->conns != NULL)
		conn_close(w->conns);
	while ((c = conn_ready_pop(w)) != NULL)
		(void)conn_reap(c);
	om_fdc_clear(&w->fdc);
	for (unsigned i = 0; i < OM_CONF_LISTEN_MAX; i++)
		conn_udp_free(&w->ls[i]);
	om_log_info(0, "exiting");
	free(w->body_buf);
	free(w);
}

int
om_worker_run(om_srv_t *srv)
{
	worker_t *w = worker_new(srv);
	struct epoll_event evs[128];
	int rc = 0, timeout;

	if (w == NULL)
		return OM_EXIT_FATAL;
	/* Its listeners are in its epoll set: the master may now drain the
	 * workers it replaces (a reload), whose queue of connections this
	 * one takes over. */
	if (srv->ready_fd >= 0) {
		(void)!write(srv->ready_fd, "\n", 1);
		close(srv->ready_fd);
		srv->ready_fd = -1;
	}
	while ((timeout = wait_ms(w)) >= 0) {
		int n = epoll_wait(w->ep, evs, 128, timeout);

		if (n < 0 && errno != EINTR) {
			om_log_err(errno, "epoll_wait failed");
			rc = OM_EXIT_FATAL;
			break;
		}
		if (events(w, evs, n) != 0)
			break;
		turn_end(w);
	}
	worker_end(w);
	return rc;
}
