/*
 * The master process: builds the index over the tiers, binds the
 * listeners, forks the workers and the cache manager, and supervises
 * them. Signals arrive through a signalfd and are handled in one place:
 * HUP reloads (a new generation of workers, the old one drained), QUIT
 * stops gracefully, TERM and INT at once, USR1 reopens the logs, CHLD
 * reaps and replaces. It never serves a request.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <bsd/libutil.h>
#include <bsd/unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "server/om_master.h"
#include "server/om_server.h"

#define CHILD_MAX   (OM_CONF_WORKERS_MAX * 4 + 8)
#define KILL_GRACE_MS 5000

enum child_kind { CH_WORKER, CH_MANAGER };
enum child_state { CH_FREE = 0, CH_RUNNING, CH_DRAINING, CH_WAITING };

typedef struct {
	enum child_state state;
	enum child_kind kind;
	pid_t pid;
	unsigned worker_no;
	unsigned generation;
	unsigned slot;
	uint64_t started_ms;
	uint64_t respawn_at_ms; /* CH_WAITING */
	uint64_t kill_at_ms;    /* CH_DRAINING: SIGKILL if still there */
	unsigned quick_deaths;  /* consecutive exits soon after start */
	int ready_fd;           /* workers: read end of the readiness pipe, until it speaks */
	bool ready;             /* workers: accepting (a byte came through ready_fd) */
} child_t;

typedef struct {
	const char *conf_path;
	bool foreground;
	om_srv_t srv;
	om_conf_t *conf;
	struct pidfh *pfh;
	int ixfd;            /* [index] file, locked; -1 without one */
	int ep;
	int sigfd;
	pid_t pid;
	om_listener_t *ls[OM_CONF_LISTEN_MAX];
	unsigned nls;
	child_t ch[CHILD_MAX];
	uint8_t *slots; /* in use, by slot */
	unsigned nslots;
	unsigned mslot; /* the master's own slot (another than OM_SLOT_MASTER after an upgrade) */
	char exe[PATH_MAX];        /* this binary's path, for SIGUSR2 (a new file there is the new binary) */
	char conf_real[PATH_MAX];  /* the configuration's path, absolute */
	char conf_abs[PATH_MAX];   /* the same, its links not followed: what a reload reads */
	pid_t upgrade_pid;         /* SIGUSR2: the new binary's process, while it starts */
	bool handover;             /* a new master has taken over: leave it the sockets and index */
	/* Inherited from the master being replaced (OBJMAPPER_INHERIT). */
	bool adopt;
	int in_ixfd, in_tier[2];
	int in_ls[OM_CONF_LISTEN_MAX];
	unsigned nin_ls;
	int stopping;   /* 1 graceful, 2 fast */
	uint64_t stop_deadline_ms;
	uint64_t drain_at_ms; /* a reload's old workers are drained once the new ones accept, or then */
	int exit_status;
} master_t;

/* ---- listeners --------------------------------------------------------- */

static void
listener_close(om_listener_t *l, bool unlink_file)
{
	struct stat sb;

	if (l->fd >= 0)
		close(l->fd);
	/* Only our own socket file: a new daemon may have bound the path. */
	if (unlink_file && l->transport == OM_TRANSPORT_UNIX && stat(l->path, &sb) == 0 &&
	    sb.st_dev == l->dev && sb.st_ino == l->ino)
		unlink(l->path);
	free(l);
}

static unsigned
transport_of(const om_conf_listen_t *cl)
{
	return cl->type == OM_CONF_LISTEN_UNIX ? OM_TRANSPORT_UNIX :
	    cl->type == OM_CONF_LISTEN_TCP ? OM_TRANSPORT_TCP : OM_TRANSPORT_UDP;
}

/* The same socket: a reload keeps it open. */
static bool
listener_same(const om_listener_t *l, const om_conf_listen_t *cl)
{
	if (l->transport != transport_of(cl))
		return false;
	if (l->transport == OM_TRANSPORT_UNIX)
		return strcmp(l->path, cl->path) == 0;
	return l->port == cl->port && memcmp(l->addr, cl->addr, 16) == 0;
}

static uint64_t
max_object(const om_conf_t *conf, const om_conf_listen_t *cl)
{
	/* Shares of a filesystem and filesystems' sizes are the store's to
	 * resolve (TOO_LARGE at the PUT): HELLO gives only sizes in bytes. */
	uint64_t a = conf->memory.size.bytes, b = conf->persistent.size.bytes;
	uint64_t tiers = (a == 0 || b == 0 || conf->memory.size.pct || conf->persistent.size.pct) ? 0 :
	    a > b ? a : b;

	if (cl->max_object_size == 0)
		return tiers;
	return tiers != 0 && tiers < cl->max_object_size ? tiers : cl->max_object_size;
}

/* Applies the section's settings to a bound (or kept) listener. */
static int
listener_apply(om_listener_t *l, const om_conf_t *conf, const om_conf_listen_t *cl, char *err,
    size_t errlen)
{
	if (l->transport == OM_TRANSPORT_UNIX) {
		if (chmod(cl->path, cl->mode) != 0) {
			snprintf(err, errlen, "[listen.%s] chmod(\"%s\") failed: %s", cl->name, cl->path,
			    strerror(errno));
			return -errno;
		}
		if ((cl->owner.uid != (uid_t)-1 || cl->owner.gid != (gid_t)-1) &&
		    chown(cl->path, cl->owner.uid, cl->owner.gid) != 0) {
			snprintf(err, errlen, "[listen.%s] chown(\"%s\") failed: %s", cl->name, cl->path,
			    strerror(errno));
			return -errno;
		}
	}
	if (l->transport != OM_TRANSPORT_UDP && listen(l->fd, (int)cl->backlog) != 0) {
		snprintf(err, errlen, "[listen.%s] listen(%s) failed: %s", cl->name, l->where,
		    strerror(errno));
		return -errno;
	}
	snprintf(l->name, sizeof(l->name), "%s", cl->name);
	l->inline_threshold = cl->inline_threshold;
	l->send_buffer = cl->send_buffer;
	l->allow_read = cl->allow_read;
	l->allow_write = cl->allow_write;
	l->idle_timeout_ms = cl->idle_timeout_ms;
	l->request_timeout_ms = cl->request_timeout_ms;
	l->min_rate = cl->min_rate;
	l->max_object = max_object(conf, cl);
	l->max_pipeline = cl->max_pipeline;
	l->max_buffer = cl->max_buffer;
	l->max_datagram = cl->max_datagram;
	l->amplification = cl->amplification;
	/* New connections speak what the section says; connections of the
	 * previous generation keep what they spoke (their workers' copy). */
	l->http = cl->http != 0;
	l->max_header = cl->max_header;
	l->metrics = cl->http && cl->serve == OM_SERVE_METRICS;
	switch (l->transport) {
	case OM_TRANSPORT_UNIX:
		l->modes = 1u << OM_MODE_AUTO | 1u << OM_MODE_FDPASS | 1u << OM_MODE_COPY |
		    1u << OM_MODE_SPLICE;
		break;
	case OM_TRANSPORT_TCP:
		l->modes = 1u << OM_MODE_AUTO | 1u << OM_MODE_COPY | 1u << OM_MODE_SPLICE;
		break;
	default:
		l->modes = 1u << OM_MODE_AUTO | 1u << OM_MODE_COPY;
		/* A datagram is one response: nothing is sent as a descriptor. */
		l->inline_threshold = cl->max_datagram;
		break;
	}
	return 0;
}

static int
listener_bind_unix(const om_conf_listen_t *cl, om_listener_t *l, char *err, size_t errlen)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat sb;
	mode_t um;
	int rc;

	if (lstat(cl->path, &sb) == 0) {
		int probe;

		if (!S_ISSOCK(sb.st_mode)) {
			snprintf(err, errlen, "[listen.%s] %s exists and is not a socket", cl->name, cl->path);
			return -EEXIST;
		}
		/* A socket someone answers on belongs to a running daemon. */
		memcpy(sa.sun_path, cl->path, strlen(cl->path));
		probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(probe);
			snprintf(err, errlen, "[listen.%s] %s is in use by another process", cl->name, cl->path);
			return -EADDRINUSE;
		}
		if (probe >= 0)
			close(probe);
		unlink(cl->path);
	}
	{
		/* The socket's directory, one level (e.g. /run/objmapper). */
		char dir[sizeof(cl->path)];
		char *slash;

		snprintf(dir, sizeof(dir), "%s", cl->path);
		slash = strrchr(dir, '/');
		if (slash != NULL && slash != dir) {
			*slash = '\0';
			(void)om_os_mkdir(AT_FDCWD, dir, 0755);
		}
	}
	snprintf(l->path, sizeof(l->path), "%s", cl->path);
	l->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "[listen.%s] socket: %s", cl->name, strerror(errno));
		return rc;
	}
	memset(sa.sun_path, 0, sizeof(sa.sun_path));
	memcpy(sa.sun_path, cl->path, strlen(cl->path));
	/* Born with the right mode: no moment in which others may connect. */
	um = umask(0777 & ~cl->mode);
	rc = bind(l->fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(um);
	if (rc != 0) {
		rc = -errno;
		snprintf(err, errlen, "[listen.%s] bind(\"%s\") failed: %s", cl->name, cl->path, strerror(errno));
		return rc;
	}
	if (stat(cl->path, &sb) == 0) {
		l->dev = sb.st_dev;
		l->ino = sb.st_ino;
	}
	return 0;
}

static int
listener_bind_inet(const om_conf_listen_t *cl, om_listener_t *l, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t slen;
	int type = cl->type == OM_CONF_LISTEN_TCP ? SOCK_STREAM : SOCK_DGRAM;
	int on = 1, rc;

	memset(&ss, 0, sizeof(ss));
	if (cl->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)cl->port);
		memcpy(&sin->sin_addr, cl->addr + 12, 4);
		slen = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)cl->port);
		memcpy(&sin6->sin6_addr, cl->addr, 16);
		slen = sizeof(*sin6);
	}
	memcpy(l->addr, cl->addr, 16);
	l->port = cl->port;
	l->fd = socket(cl->family, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l->fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "[listen.%s] socket: %s", cl->name, strerror(errno));
		return rc;
	}
	/* "::" means IPv6 only: IPv4 gets a listener of its own, so that
	 * what is bound is what the file says. */
	if (cl->family == AF_INET6)
		(void)setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
	if (type == SOCK_STREAM)
		(void)setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
	if (bind(l->fd, (struct sockaddr *)&ss, slen) != 0) {
		rc = -errno;
		snprintf(err, errlen, "[listen.%s] bind(%s) failed: %s", cl->name, l->where,
		    strerror(errno));
		return rc;
	}
	return 0;
}

static int
listener_bind(const om_conf_t *conf, const om_conf_listen_t *cl, om_listener_t **out, char *err,
    size_t errlen)
{
	om_listener_t *l = calloc(1, sizeof(*l));
	int rc;

	if (l == NULL)
		return -ENOMEM;
	l->fd = -1;
	l->transport = transport_of(cl);
	if (cl->type == OM_CONF_LISTEN_UNIX)
		snprintf(l->where, sizeof(l->where), "%s", cl->path);
	else
		snprintf(l->where, sizeof(l->where), "%s %s%s%s port %u",
		    cl->type == OM_CONF_LISTEN_TCP ? "tcp" : "udp", cl->family == AF_INET6 ? "[" : "",
		    cl->address, cl->family == AF_INET6 ? "]" : "", cl->port);
	rc = cl->type == OM_CONF_LISTEN_UNIX ? listener_bind_unix(cl, l, err, errlen) :
	    listener_bind_inet(cl, l, err, errlen);
	if (rc == 0)
		rc = listener_apply(l, conf, cl, err, errlen);
	if (rc != 0) {
		listener_close(l, true);
		return rc;
	}
	*out = l;
	return 0;
}

/* The socket file at a Unix listener's path is still the one it bound
 * (not deleted, not replaced by someone else's). */
static bool
socket_file_ours(const om_listener_t *l)
{
	struct stat sb;

	return l->transport != OM_TRANSPORT_UNIX ||
	    (lstat(l->path, &sb) == 0 && sb.st_dev == l->dev && sb.st_ino == l->ino);
}

/*
 * Builds the listener set of a configuration: a listener whose path the
 * running set already has keeps its socket (no connection attempt is ever
 * refused across a reload); others are bound, and so is a Unix listener
 * whose socket file is gone (no one can connect to it any more: the old
 * socket is closed once its workers have drained). On failure nothing
 * changes.
 */
static int
listeners_build(master_t *m, const om_conf_t *conf, om_listener_t **out, char *err, size_t errlen)
{
	bool reused[OM_CONF_LISTEN_MAX] = { false };
	int kept_as[OM_CONF_LISTEN_MAX]; /* out[k] is m->ls[kept_as[k]], or -1 if new */
	unsigned n = 0;
	int rc = 0;

	/* First the new sockets: a failure leaves the running ones untouched. */
	for (unsigned i = 0; i < conf->nlisten; i++) {
		const om_conf_listen_t *cl = &conf->listen[i];
		unsigned j;

		for (j = 0; j < m->nls; j++)
			if (!reused[j] && listener_same(m->ls[j], cl))
				break;
		if (j < m->nls && !socket_file_ours(m->ls[j])) {
			om_log_warn(0, "reload: the socket file %s of listener %s is gone; binding it again",
			    m->ls[j]->path, cl->name);
			j = m->nls;
		}
		if (j < m->nls) {
			reused[j] = true;
			kept_as[n] = (int)j;
			out[n++] = m->ls[j];
		} else {
			if ((rc = listener_bind(conf, cl, &out[n], err, errlen)) != 0)
				break;
			kept_as[n++] = -1;
		}
	}
	if (rc != 0) {
		for (unsigned k = 0; k < n; k++)
			if (kept_as[k] < 0)
				listener_close(out[k], true);
		return rc;
	}
	/* Then the kept ones take their new settings (mode, owner, backlog,
	 * limits); these calls fail only if the system does. */
	for (unsigned k = 0; k < n; k++) {
		if (kept_as[k] >= 0 && (rc = listener_apply(out[k], conf, &conf->listen[k], err, errlen)) != 0) {
			for (unsigned q = 0; q < n; q++)
				if (kept_as[q] < 0)
					listener_close(out[q], true);
			return rc;
		}
	}
	/* Listeners the new configuration dropped. */
	for (unsigned j = 0; j < m->nls; j++) {
		if (!reused[j]) {
			om_log_info(0, "closing listener %s (%s)", m->ls[j]->name, m->ls[j]->where);
			listener_close(m->ls[j], true);
		}
	}
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, copied as such */
	memcpy(m->ls, out, n * sizeof(*out));
	m->nls = n;
	return 0;
}

/* ---- children ---------------------------------------------------------- */

/*
 * Slots are taken with a compare-and-swap of their owner in the segment:
 * during a binary upgrade two masters give slots out of the same index.
 * A slot whose owner is a master that is gone is free again.
 */
static bool
slot_claim(master_t *m, unsigned s)
{
	om_srv_requests_sh_t *rq = om_srv_requests(&m->srv, s);
	uint32_t owner = OM_LOAD_ACQ(&rq->owner);

	if (owner != 0 && (pid_t)owner != m->pid && (kill((pid_t)owner, 0) == 0 || errno != ESRCH))
		return false;
	return __atomic_compare_exchange_n(&rq->owner, &owner, (uint32_t)m->pid, false, __ATOMIC_ACQ_REL,
	    __ATOMIC_ACQUIRE);
}

static int
slot_alloc(master_t *m)
{
	for (unsigned s = OM_SLOT_FIRST; s < m->nslots; s++) {
		if (!m->slots[s] && slot_claim(m, s)) {
			m->slots[s] = 1;
			return (int)s;
		}
	}
	return -1;
}

static void
slot_free(master_t *m, unsigned s)
{
	m->slots[s] = 0;
	OM_STORE_REL(&om_srv_requests(&m->srv, s)->owner, 0);
}

static child_t *
child_find(master_t *m, pid_t pid)
{
	for (unsigned i = 0; i < CHILD_MAX; i++)
		if (m->ch[i].state != CH_FREE && m->ch[i].state != CH_WAITING && m->ch[i].pid == pid)
			return &m->ch[i];
	return NULL;
}

static const char *
kind_name(const child_t *c, char *buf, size_t n)
{
	if (c->kind == CH_MANAGER)
		snprintf(buf, n, "cache manager");
	else
		snprintf(buf, n, "worker %u", c->worker_no);
	return buf;
}

int
om_srv_drop_privileges(const om_conf_t *conf)
{
	const om_conf_owner_t *o = &conf->daemon.run_as;

	if (o->uid == (uid_t)-1 && o->gid == (gid_t)-1)
		return 0;
	if (geteuid() != 0) {
		if ((o->uid == (uid_t)-1 || o->uid == geteuid()) && (o->gid == (gid_t)-1 || o->gid == getegid()))
			return 0;
		om_log_err(0, "cannot run as %s%s%s: not started as root", o->user, o->group[0] ? ":" : "",
		    o->group);
		return -EPERM;
	}
	if (o->gid != (gid_t)-1) {
		if ((o->user[0] ? initgroups(o->user, o->gid) : setgroups(0, NULL)) != 0 ||
		    setgid(o->gid) != 0) {
			om_log_err(errno, "cannot take group %u", (unsigned)o->gid);
			return -EPERM;
		}
	}
	if (o->uid != (uid_t)-1 && setuid(o->uid) != 0) {
		om_log_err(errno, "cannot take user %s", o->user);
		return -EPERM;
	}
	/* A change of user leaves the process not dumpable, which makes its
	 * own /proc/self/fd belong to root: publishing links O_TMPFILE files
	 * through there. */
	if (prctl(PR_SET_DUMPABLE, 1) != 0) {
		om_log_err(errno, "prctl(PR_SET_DUMPABLE) failed");
		return -EPERM;
	}
	return 0;
}

static void
child_main(master_t *m, child_t *c)
{
	char name[32];
	int rc;

	/* What only the master uses. */
	close(m->ep);
	close(m->sigfd);
	for (unsigned i = 0; i < CHILD_MAX; i++) {
		if (&m->ch[i] != c && m->ch[i].ready_fd >= 0)
			close(m->ch[i].ready_fd);
	}
	if (m->ixfd >= 0)
		close(m->ixfd);
	if (m->pfh != NULL)
		pidfile_close(m->pfh);
	kind_name(c, name, sizeof(name));
	om_log_set_process(name);
	setproctitle("%s process", c->kind == CH_MANAGER ? "cache manager" : "worker");
	if (om_srv_drop_privileges(m->conf) != 0)
		_exit(OM_EXIT_FATAL);
	/* Nobody serves without a master to supervise it. After the change
	 * of user: the kernel forgets this setting when credentials change. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != m->pid)
		_exit(0);
	m->srv.slot = c->slot;
	m->srv.worker_no = c->worker_no;
	m->srv.ready_fd = c->ready_fd;
	m->srv.generation = c->generation;
	m->srv.conf = m->conf;
	m->srv.nlisteners = m->nls;
	/* NOLINTNEXTLINE(bugprone-sizeof-expression): an array of pointers, copied as such */
	memcpy(m->srv.listeners, m->ls, m->nls * sizeof(m->ls[0]));
	om_store_set_slot(m->srv.st, c->slot);
	rc = c->kind == CH_MANAGER ? om_manager_run(&m->srv) : om_worker_run(&m->srv);
	_exit(rc);
}

static int
spawn(master_t *m, child_t *c)
{
	char name[32];
	int slot = slot_alloc(m), p[2] = { -1, -1 }, err;
	pid_t pid;

	if (slot < 0) {
		om_log_err_limited(0, "no free process slot for %s; retrying in 1 s", kind_name(c, name, sizeof(name)));
		c->state = CH_WAITING;
		c->respawn_at_ms = om_clock_ms() + 1000;
		return -EAGAIN;
	}
	c->slot = (unsigned)slot;
	c->started_ms = om_clock_ms();
	c->ready = false;
	/* A worker says when it accepts through a pipe (s6's readiness
	 * notification): a byte, then the end. Without the pipe it counts as
	 * accepting at once, as every worker did before. */
	if (c->kind == CH_WORKER && pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) {
		om_log_warn_limited(errno, "pipe2 failed: this worker is taken as accepting at once");
		p[0] = p[1] = -1;
	}
	pid = fork();
	if (pid < 0) {
		err = errno;
		om_log_err_limited(err, "fork failed; retrying in 1 s");
		if (p[0] >= 0) {
			close(p[0]);
			close(p[1]);
		}
		slot_free(m, (unsigned)slot);
		c->state = CH_WAITING;
		c->respawn_at_ms = om_clock_ms() + 1000;
		return -err;
	}
	if (pid == 0) {
		if (p[0] >= 0)
			close(p[0]);
		c->ready_fd = p[1];
		child_main(m, c);
	}
	c->ready_fd = -1;
	c->ready = p[0] < 0;
	if (p[0] >= 0) {
		struct epoll_event e = { .events = EPOLLIN, .data.fd = p[0] };

		close(p[1]);
		if (epoll_ctl(m->ep, EPOLL_CTL_ADD, p[0], &e) == 0) {
			c->ready_fd = p[0];
		} else {
			close(p[0]);
			c->ready = true;
		}
	}
	c->pid = pid;
	c->state = CH_RUNNING;
	om_log_debug(0, "started %s (pid %d, generation %u)", kind_name(c, name, sizeof(name)),
	    (int)pid, c->generation);
	return 0;
}

static child_t *
child_new(master_t *m, enum child_kind kind, unsigned worker_no)
{
	for (unsigned i = 0; i < CHILD_MAX; i++) {
		if (m->ch[i].state == CH_FREE) {
			child_t *c = &m->ch[i];

			memset(c, 0, sizeof(*c));
			c->ready_fd = -1;
			c->kind = kind;
			c->worker_no = worker_no;
			c->generation = m->srv.generation;
			return c;
		}
	}
	return NULL;
}

static void
spawn_generation(master_t *m)
{
	for (unsigned w = 0; w <= m->conf->daemon.workers; w++) {
		child_t *c = child_new(m, w < m->conf->daemon.workers ? CH_WORKER : CH_MANAGER, w);

		if (c == NULL) {
			om_log_err(0, "too many processes");
			return;
		}
		(void)spawn(m, c);
	}
}

static void
signal_children(master_t *m, int sig, bool old_only)
{
	for (unsigned i = 0; i < CHILD_MAX; i++) {
		child_t *c = &m->ch[i];

		if (c->state != CH_RUNNING && c->state != CH_DRAINING)
			continue;
		if (old_only && c->generation == m->srv.generation)
			continue;
		kill(c->pid, sig);
	}
}

/* The children of earlier generations (only the cache managers, or all)
 * go: QUIT, and SIGKILL after the shutdown timeout. */
static void
drain_old(master_t *m, bool workers)
{
	uint64_t kill_at = om_clock_ms() + m->conf->daemon.shutdown_timeout_ms + KILL_GRACE_MS;

	for (unsigned i = 0; i < CHILD_MAX; i++) {
		child_t *c = &m->ch[i];

		if (c->generation == m->srv.generation || (!workers && c->kind == CH_WORKER))
			continue;
		if (c->state == CH_RUNNING) {
			kill(c->pid, SIGQUIT);
			c->state = CH_DRAINING;
			c->kill_at_ms = kill_at;
		} else if (c->state == CH_WAITING) {
			c->state = CH_FREE; /* not replaced: its generation is gone */
		}
	}
}

/*
 * A reload drains the old workers only once every worker of the new
 * generation accepts: until then the old ones take the connections that
 * arrive (a new worker may take a while to be scheduled on a loaded
 * machine, and a connection left in the listen queue meanwhile waited for
 * it). If the new ones are not all accepting within RELOAD_READY_MS, the
 * old ones go all the same, so that generations never pile up.
 */
#define RELOAD_READY_MS 10000

static void
drain_when_ready(master_t *m)
{
	unsigned ready = 0, waiting = 0;

	if (m->drain_at_ms == 0)
		return;
	for (unsigned i = 0; i < CHILD_MAX; i++) {
		const child_t *c = &m->ch[i];

		if (c->kind != CH_WORKER || c->generation != m->srv.generation)
			continue;
		if (c->state == CH_RUNNING && c->ready)
			ready++;
		else if (c->state == CH_RUNNING || c->state == CH_WAITING)
			waiting++;
	}
	if ((ready == 0 || waiting > 0) && om_clock_ms() < m->drain_at_ms)
		return;
	if (ready == 0 || waiting > 0)
		om_log_warn(0, "generation %u: %u of its workers accepting after %u ms; draining the "
		    "previous one all the same", m->srv.generation, ready, RELOAD_READY_MS);
	m->drain_at_ms = 0;
	drain_old(m, true);
}

static child_t *
child_of_ready_fd(master_t *m, int fd)
{
	for (unsigned i = 0; i < CHILD_MAX; i++) {
		if (m->ch[i].ready_fd == fd && m->ch[i].state != CH_FREE)
			return &m->ch[i];
	}
	return NULL;
}

static void
ready_close(child_t *c)
{
	if (c->ready_fd >= 0) {
		close(c->ready_fd); /* which takes it out of the epoll set */
		c->ready_fd = -1;
	}
}

/* A worker's pipe spoke: a byte if it accepts, the end alone if it died
 * before (its exit is reaped as any other). */
static void
ready_event(master_t *m, int fd)
{
	child_t *c = child_of_ready_fd(m, fd);
	ssize_t n;
	char b;

	if (c == NULL)
		return;
	n = read(fd, &b, 1);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return; /* an event of an earlier pipe with this number */
	c->ready = n == 1;
	ready_close(c);
	drain_when_ready(m);
}

/* ---- binary upgrade ---------------------------------------------------- */

static void
oldbin_path(const master_t *m, char *buf, size_t n)
{
	snprintf(buf, n, "%s.oldbin", m->conf->daemon.pid_file);
}

/*
 * SIGUSR2: the binary at our path (a new one, after an upgrade of the
 * package) starts as a second master with our listeners, tiers and index,
 * handed over by descriptor (OBJMAPPER_INHERIT); our pid file becomes
 * PID_FILE.oldbin so that the new master can write its own. Both serve
 * until QUIT tells this one to drain and go. If the new binary fails to
 * start, this one keeps serving and says so.
 */
static void
upgrade(master_t *m)
{
	char oldbin[PATH_MAX + 8], env[512], *argv[5];
	size_t k = 0;
	sigset_t none;
	pid_t pid;
	int n;

	if (m->stopping || m->upgrade_pid > 0 || m->handover) {
		om_log_warn(0, "binary upgrade: %s; SIGUSR2 ignored", m->stopping ? "stopping" :
		    m->handover ? "a new master has taken over already" : "one is under way");
		return;
	}
	oldbin_path(m, oldbin, sizeof(oldbin));
	if (rename(m->conf->daemon.pid_file, oldbin) != 0) {
		om_log_err(errno, "binary upgrade: renaming %s to %s failed; not upgrading",
		    m->conf->daemon.pid_file, oldbin);
		return;
	}
	n = snprintf(env, sizeof(env), "ix=%d;tier=%d,%d;ls=", m->ixfd,
	    om_store_tier_fd(m->srv.st, OM_TIER_MEM), om_store_tier_fd(m->srv.st, OM_TIER_DISK));
	for (unsigned i = 0; i < m->nls && n > 0 && (size_t)n < sizeof(env); i++)
		n += snprintf(env + n, sizeof(env) - (size_t)n, "%s%d", i ? "," : "", m->ls[i]->fd);
	argv[k++] = m->exe;
	argv[k++] = (char *)"-f";
	argv[k++] = m->conf_real;
	if (m->foreground)
		argv[k++] = (char *)"-F";
	argv[k] = NULL;
	pid = fork();
	if (pid < 0) {
		om_log_err(errno, "binary upgrade: fork failed; not upgrading");
		(void)rename(oldbin, m->conf->daemon.pid_file);
		return;
	}
	if (pid == 0) {
		/* What is handed over crosses the exec; nothing else does. */
		int fds[OM_CONF_LISTEN_MAX + 3];
		unsigned nfds = 0;

		fds[nfds++] = m->ixfd;
		fds[nfds++] = om_store_tier_fd(m->srv.st, OM_TIER_MEM);
		fds[nfds++] = om_store_tier_fd(m->srv.st, OM_TIER_DISK);
		for (unsigned i = 0; i < m->nls; i++)
			fds[nfds++] = m->ls[i]->fd;
		for (unsigned i = 0; i < nfds; i++)
			if (fds[i] >= 0)
				(void)fcntl(fds[i], F_SETFD, 0);
		setenv("OBJMAPPER_INHERIT", env, 1);
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		execv(m->exe, argv);
		_exit(127);
	}
	m->upgrade_pid = pid;
	om_log_info(0, "binary upgrade: started %s (pid %d) with the listeners, tiers and index; this "
	    "master (pid %d, its pid file now %s) serves until QUIT", m->exe, (int)pid, (int)m->pid, oldbin);
}

/* The process SIGUSR2 started has ended: the new master daemonized (it
 * forked and its first process exited 0), or it failed. */
static void
upgrade_ended(master_t *m, int status)
{
	char oldbin[PATH_MAX + 8];

	m->upgrade_pid = 0;
	if (!m->foreground && WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		m->handover = true;
		om_log_info(0, "binary upgrade: the new master runs; send QUIT to this one (pid %d) to finish",
		    (int)m->pid);
		return;
	}
	oldbin_path(m, oldbin, sizeof(oldbin));
	if (rename(oldbin, m->conf->daemon.pid_file) != 0)
		om_log_err(errno, "binary upgrade: renaming %s back failed", oldbin);
	if (WIFSIGNALED(status))
		om_log_err(0, "binary upgrade failed: the new master was killed by signal %d; this one "
		    "serves on", WTERMSIG(status));
	else
		om_log_err(0, "binary upgrade failed: the new master exited with status %d (its log says "
		    "why); this one serves on", WEXITSTATUS(status));
}

static void
reap(master_t *m)
{
	om_srv_stats_sh_t *ms = om_srv_stats(&m->srv, m->mslot);
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		child_t *c = child_find(m, pid);
		uint64_t now = om_clock_ms();
		char name[32], how[64];

		if (pid == m->upgrade_pid) {
			upgrade_ended(m, status);
			continue;
		}
		if (c == NULL)
			continue;
		ready_close(c);
		/* A file it published but did not index, and its counters. */
		om_store_reclaim_slot(m->srv.st, c->slot);
		om_srv_stats_retire(&m->srv, c->slot);
		slot_free(m, c->slot);
		if (WIFSIGNALED(status))
			snprintf(how, sizeof(how), "killed by signal %d", WTERMSIG(status));
		else
			snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
		kind_name(c, name, sizeof(name));
		if (c->state == CH_DRAINING || m->stopping || c->generation != m->srv.generation) {
			om_log_info(0, "%s (pid %d, generation %u) %s", name, (int)pid, c->generation, how);
			c->state = CH_FREE;
			continue;
		}
		if (WIFEXITED(status) && WEXITSTATUS(status) == OM_EXIT_FATAL) {
			om_log_err(0, "%s (pid %d) %s: it cannot run with this configuration; "
			    "not restarting it", name, (int)pid, how);
			c->state = CH_FREE;
			continue;
		}
		/* Only what is started again: worker_restarts_total. */
		OM_COUNT(ms->worker_restarts, 1);
		/* Replace at once; a child that keeps dying young waits longer
		 * each time (up to 30 s), never a respawn storm. */
		c->quick_deaths = now - c->started_ms < 2000 ? c->quick_deaths + 1 : 0;
		c->respawn_at_ms = now;
		if (c->quick_deaths > 1) {
			uint64_t delay = 250ull << (c->quick_deaths - 2 > 7 ? 7 : c->quick_deaths - 2);

			c->respawn_at_ms = now + (delay > 30000 ? 30000 : delay);
		}
		om_log_warn(0, "%s (pid %d) %s; restarting it%s", name, (int)pid, how,
		    c->respawn_at_ms > now ? " after a pause" : "");
		c->state = CH_WAITING;
	}
}

/* ---- reload ------------------------------------------------------------ */

static void
store_params(const om_conf_t *conf, om_store_params_t *p)
{
	memset(p, 0, sizeof(*p));
	p->mem.path = conf->memory.path;
	p->mem.limit = conf->memory.size.bytes;
	p->mem.limit_pct = conf->memory.size.pct;
	p->mem.reserve = conf->memory.reserve.bytes;
	p->mem.reserve_pct = conf->memory.reserve.pct;
	p->mem.pack_max = (uint32_t)conf->memory.pack_max;
	p->disk.path = conf->persistent.path;
	p->disk.limit = conf->persistent.size.bytes;
	p->disk.limit_pct = conf->persistent.size.pct;
	p->disk.reserve = conf->persistent.reserve.bytes;
	p->disk.reserve_pct = conf->persistent.reserve.pct;
	p->disk.pack_max = (uint32_t)conf->persistent.pack_max;
	p->no_evict = conf->cache.eviction == OM_EVICTION_NONE;
	p->durability = conf->persistent.durability;
	p->promote_hits = conf->cache.promote_hits;
	p->promote_max_size = conf->cache.promote_max_size;
	p->evict_samples = conf->cache.evict_samples;
	/* The protocol checks the configured limit; the store keeps its own. */
	p->max_meta = OM_STORE_META_MAX;
	p->proc_slot = OM_SLOT_MASTER;
	if (geteuid() == 0 && (conf->daemon.run_as.uid != (uid_t)-1 || conf->daemon.run_as.gid != (gid_t)-1)) {
		p->set_owner = 1;
		p->owner_uid = conf->daemon.run_as.uid;
		p->owner_gid = conf->daemon.run_as.gid;
	}
}

int
om_master_check(const om_conf_t *conf, char *err, size_t errlen)
{
	om_store_params_t sp;

	store_params(conf, &sp);
	return om_store_check(&sp, err, errlen);
}

#define KEEP(field, what) \
	do { \
		if (memcmp(&nc->field, &oc->field, sizeof(nc->field)) != 0) { \
			om_log_warn(0, "reload: %s changes only at restart; keeping the running value", what); \
			memcpy(&nc->field, &oc->field, sizeof(nc->field)); \
		} \
	} while (0)

static void
reload(master_t *m)
{
	om_srv_stats_sh_t *ms = om_srv_stats(&m->srv, m->mslot);
	om_listener_t *ls[OM_CONF_LISTEN_MAX];
	om_conf_t *nc, *oc = m->conf;
	om_store_params_t sp;
	char err[1024];
	int rc;

	om_log_info(0, "reloading %s", m->conf_path);
	if (om_conf_load(m->conf_path, &nc, err, sizeof(err)) != 0) {
		om_log_err(0, "reload failed: %s; the running configuration stays", err);
		OM_COUNT(ms->reload_failures, 1);
		return;
	}
	/* NOLINTNEXTLINE(bugprone-suspicious-memory-comparison,cert-exp42-c,cert-flp37-c): both come from om_conf_load's calloc: padding is zero */
	KEEP(index, "[index]");
	KEEP(memory.path, "[memory] path");
	KEEP(persistent.path, "[persistent] path");
	KEEP(daemon.run_as, "[daemon] user and group");
	/* Socket files whose owner defaults to the daemon's user follow the
	 * user kept, not the one in the file. */
	for (unsigned i = 0; i < nc->nlisten; i++) {
		om_conf_owner_t *o = &nc->listen[i].owner;

		if (nc->listen[i].owner_user_default) {
			memcpy(o->user, nc->daemon.run_as.user, sizeof(o->user));
			o->uid = nc->daemon.run_as.uid;
			o->user_gid = nc->daemon.run_as.user_gid;
		}
		if (nc->listen[i].owner_group_default) {
			memcpy(o->group, nc->daemon.run_as.group, sizeof(o->group));
			o->gid = nc->daemon.run_as.gid;
		}
	}
	KEEP(daemon.pid_file, "[daemon] pid_file");
	if (nc->cache.promote_hits > oc->cache.promote_hits &&
	    nc->cache.promote_hits > om_index_hits_max(m->srv.ix)) {
		om_log_warn(0, "reload: [cache] promote_hits above %u needs a restart; using %u",
		    om_index_hits_max(m->srv.ix), om_index_hits_max(m->srv.ix));
		nc->cache.promote_hits = om_index_hits_max(m->srv.ix);
	}
	/* The store checks the new tiers' sizes against their filesystems (a
	 * share of a filesystem without a size is refused) and takes them
	 * only if they are good. */
	store_params(nc, &sp);
	if (om_store_reconfigure(m->srv.st, &sp, err, sizeof(err)) != 0) {
		om_log_err(0, "reload failed: %s; the running configuration stays", err);
		OM_COUNT(ms->reload_failures, 1);
		om_conf_free(nc);
		return;
	}
	if (listeners_build(m, nc, ls, err, sizeof(err)) != 0) {
		store_params(oc, &sp);
		(void)om_store_reconfigure(m->srv.st, &sp, err, sizeof(err));
		om_log_err(0, "reload failed: %s; the running configuration stays", err);
		OM_COUNT(ms->reload_failures, 1);
		om_conf_free(nc);
		return;
	}
	if (!m->foreground && (nc->log.target != oc->log.target || strcmp(nc->log.file, oc->log.file) != 0 ||
	    nc->log.level != oc->log.level)) {
		if ((rc = om_log_open(nc->log.target, nc->log.file, (int)nc->log.level)) != 0)
			om_log_err(-rc, "reload: cannot open log %s; logging as before", nc->log.file);
	} else if (m->foreground) {
		om_log_set_level((int)nc->log.level);
	}
	m->conf = nc;
	m->srv.conf = nc;
	om_conf_free(oc);
	m->srv.generation++;
	OM_COUNT(ms->reloads, 1);
	spawn_generation(m);
	drain_old(m, false);
	if (m->drain_at_ms == 0)
		m->drain_at_ms = om_clock_ms() + RELOAD_READY_MS;
	om_log_info(0, "generation %u running with %u workers; draining the previous one once they accept",
	    m->srv.generation, m->conf->daemon.workers);
	drain_when_ready(m);
}

/* ---- start and stop ---------------------------------------------------- */

static void
stop(master_t *m, int how)
{
	if (m->stopping >= how)
		return;
	om_log_info(0, "%s stop", how == 1 ? "graceful" : "fast");
	m->stopping = how;
	/* In the foreground the new master of an upgrade is our child: if it
	 * is running when we are told to go, it has taken over. */
	if (m->upgrade_pid > 0 && kill(m->upgrade_pid, 0) == 0) {
		m->handover = true;
		m->upgrade_pid = 0;
	}
	/* The service stops, unless a new master goes on with it. */
	if (m->handover)
		om_log_info(0, "binary upgrade: handing over to the new master");
	else
		(void)om_os_notify("STOPPING=1");
	if (how == 1) {
		m->stop_deadline_ms = om_clock_ms() + m->conf->daemon.shutdown_timeout_ms + KILL_GRACE_MS;
		signal_children(m, SIGQUIT, false);
	} else {
		m->stop_deadline_ms = om_clock_ms() + 3000;
		signal_children(m, SIGTERM, false);
	}
	/* No new connections: the workers close their copies as they go. */
	for (unsigned i = 0; i < m->nls; i++) {
		close(m->ls[i]->fd);
		m->ls[i]->fd = -1;
	}
}

static bool
children_left(master_t *m)
{
	for (unsigned i = 0; i < CHILD_MAX; i++)
		if (m->ch[i].state == CH_RUNNING || m->ch[i].state == CH_DRAINING)
			return true;
	return false;
}

/* What the master reads from its signalfd (blocked: its children inherit
 * the mask, and make signalfds of their own). */
static const int master_signals[] = { SIGCHLD, SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGUSR2 };

#define SIG_BIT(sig) (1u << (unsigned)(sig))

/* The signals pending, acted on in this order rather than the kernel's
 * (lowest number first): a stop before a SIGHUP that came with it, which
 * is then ignored, as during any stop, instead of starting a generation
 * only to drain it. */
static void
handle_signals(master_t *m)
{
	unsigned got = 0;
	int sig, rc;

	while ((sig = om_os_signal_next(m->sigfd)) != 0)
		if (sig > 0 && sig < 32)
			got |= SIG_BIT(sig);
	if (got & (SIG_BIT(SIGTERM) | SIG_BIT(SIGINT)))
		stop(m, 2);
	if (got & SIG_BIT(SIGQUIT))
		stop(m, 1);
	if ((got & SIG_BIT(SIGHUP)) && !m->stopping)
		reload(m);
	if (got & SIG_BIT(SIGUSR1)) {
		if ((rc = om_log_reopen()) != 0)
			om_log_err(-rc, "reopening the log failed");
		signal_children(m, SIGUSR1, false);
	}
	if (got & SIG_BIT(SIGUSR2))
		upgrade(m);
	if (got & SIG_BIT(SIGCHLD))
		reap(m);
}

static void
timers(master_t *m)
{
	uint64_t now = om_clock_ms();

	for (unsigned i = 0; i < CHILD_MAX; i++) {
		child_t *c = &m->ch[i];

		if (c->state == CH_WAITING && now >= c->respawn_at_ms && !m->stopping)
			(void)spawn(m, c);
		if (c->state == CH_DRAINING && now >= c->kill_at_ms) {
			om_log_warn(0, "pid %d still draining after the shutdown timeout; killing it",
			    (int)c->pid);
			kill(c->pid, SIGKILL);
			c->kill_at_ms = UINT64_MAX;
		}
	}
	if (m->drain_at_ms != 0 && now >= m->drain_at_ms)
		drain_when_ready(m);
	if (m->stopping && now >= m->stop_deadline_ms) {
		om_log_warn(0, "children still running after the timeout; killing them");
		signal_children(m, SIGKILL, false);
		m->stop_deadline_ms = UINT64_MAX;
	}
}

static int
next_timeout(master_t *m)
{
	uint64_t now = om_clock_ms(), next = now + 1000;

	for (unsigned i = 0; i < CHILD_MAX; i++) {
		if (m->ch[i].state == CH_WAITING && m->ch[i].respawn_at_ms < next)
			next = m->ch[i].respawn_at_ms;
		if (m->ch[i].state == CH_DRAINING && m->ch[i].kill_at_ms < next)
			next = m->ch[i].kill_at_ms;
	}
	if (m->stopping && m->stop_deadline_ms < next)
		next = m->stop_deadline_ms;
	if (m->drain_at_ms != 0 && m->drain_at_ms < next)
		next = m->drain_at_ms;
	return next > now ? (int)(next - now) : 0;
}

/* Descriptors: max_files if set (lowered or raised), else enough for
 * max_connections and the descriptor cache per worker, raised as far as
 * allowed. */
static void
raise_nofile(const om_conf_t *conf)
{
	rlim_t want = conf->daemon.max_files ? (rlim_t)conf->daemon.max_files :
	    (rlim_t)conf->daemon.max_connections * 2 + conf->cache.open_files + 1024;
	struct rlimit rl, was;
	int err = 0;

	if (getrlimit(RLIMIT_NOFILE, &was) != 0)
		return;
	if (was.rlim_cur == want || (conf->daemon.max_files == 0 && was.rlim_cur >= want))
		return;
	/* Above the hard limit only with the privilege to raise it; without,
	 * as far as the hard limit allows. */
	rl = was;
	if (rl.rlim_max < want)
		rl.rlim_max = want;
	rl.rlim_cur = want;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
		err = errno;
		rl = was;
		rl.rlim_cur = want < was.rlim_max ? want : was.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			err = errno;
	}
	/* What it is now, whatever happened. */
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur != want)
		om_log_warn(0, "cannot set the descriptor limit to %llu%s%s: it is %llu%s",
		    (unsigned long long)want, err ? ": " : "", err ? strerror(err) : "",
		    (unsigned long long)rl.rlim_cur,
		    rl.rlim_cur == rl.rlim_max && rl.rlim_cur < want ? " (the hard limit)" : "");
}

static int
open_pidfile(master_t *m)
{
	char dir[PATH_MAX], *slash;
	pid_t other = 0;

	snprintf(dir, sizeof(dir), "%s", m->conf->daemon.pid_file);
	slash = strrchr(dir, '/');
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		(void)om_os_mkdir(AT_FDCWD, dir, 0755);
	}
	m->pfh = pidfile_open(m->conf->daemon.pid_file, 0644, &other);
	if (m->pfh == NULL) {
		if (errno == EEXIST)
			fprintf(stderr, "objmapperd: already running (pid %d, pid file %s)\n", (int)other,
			    m->conf->daemon.pid_file);
		else
			fprintf(stderr, "objmapperd: pid file %s: %s\n", m->conf->daemon.pid_file, strerror(errno));
		return -1;
	}
	/* libbsd opens it without O_CLOEXEC; every descriptor of the daemon
	 * is close-on-exec (tests/integration/test_hygiene.c). */
	if (fcntl(pidfile_fileno(m->pfh), F_SETFD, FD_CLOEXEC) != 0)
		om_log_warn(errno, "pid file: fcntl(FD_CLOEXEC) failed");
	return 0;
}

/*
 * The index kept in [index] file: opened and locked (one daemon per file),
 * and attached if it holds a segment of this layout and settings; *ix is
 * then the attached segment, else a new one made in the file. Without a
 * file, a memfd that lives as long as the daemon.
 */
static int
open_index(master_t *m, const om_ix_params_t *ip, om_index_t **ix, int *attached)
{
	const char *file = m->conf->index.file;
	char why[160] = "";
	struct stat sb;
	int fd, rc;

	*attached = 0;
	if (strcmp(file, "none") == 0)
		return om_index_create(ip, ix);
	m->ixfd = open(file, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (m->ixfd < 0) {
		rc = -errno;
		fprintf(stderr, "objmapperd: [index] file %s: %s\n", file, strerror(-rc));
		return rc;
	}
	if (flock(m->ixfd, LOCK_EX | LOCK_NB) != 0) {
		fprintf(stderr, "objmapperd: [index] file %s is in use by another process\n", file);
		return -EBUSY;
	}
	if (fstat(m->ixfd, &sb) != 0)
		return -errno;
	/* The index keeps its own descriptor of the file. */
	if ((fd = fcntl(m->ixfd, F_DUPFD_CLOEXEC, 3)) < 0)
		return -errno;
	if (sb.st_size > 0) {
		rc = om_index_attach(fd, ix);
		if (rc != 0)
			snprintf(why, sizeof(why), "it holds no index of this version (%s)", strerror(-rc));
		else if (!om_index_same_params(*ix, ip))
			snprintf(why, sizeof(why), "it was made for other [index] settings");
		if (rc == 0 && why[0] == '\0') {
			*attached = 1;
			return 0;
		}
		if (rc == 0) {
			om_index_close(*ix);
			if ((fd = fcntl(m->ixfd, F_DUPFD_CLOEXEC, 3)) < 0)
				return -errno;
		}
		om_log_info(0, "index file %s not used: %s; rebuilding from the tiers", file, why);
	}
	if ((rc = om_index_create_in(fd, ip, ix)) != 0)
		close(fd);
	return rc;
}

/*
 * A binary upgrade: the index in use by the master being replaced, its
 * tiers' locked directories and its listeners come as descriptors. The
 * index is live (that master's children use it): nothing is checked,
 * repaired or rebuilt; the process slots are shared by compare-and-swap.
 */
static int
adopt_store(master_t *m, om_ix_params_t *ip)
{
	om_store_params_t sp;
	char err[512];
	int fd, rc;

	m->ixfd = m->in_ixfd;
	if ((fd = fcntl(m->ixfd, F_DUPFD_CLOEXEC, 3)) < 0 || om_index_attach(fd, &m->srv.ix) != 0) {
		fprintf(stderr, "objmapperd: binary upgrade: the index handed over cannot be mapped\n");
		return -EPROTO;
	}
	if (!om_index_same_params(m->srv.ix, ip)) {
		fprintf(stderr, "objmapperd: binary upgrade: the running index has other [index] settings "
		    "than %s; an upgrade keeps the index: restart to change them\n", m->conf_real);
		return -EINVAL;
	}
	m->nslots = om_index_procs(m->srv.ix);
	m->slots = calloc(m->nslots, 1);
	if (m->slots == NULL)
		return -ENOMEM;
	/* A slot of our own, beside the replaced master's. */
	m->mslot = 0;
	for (unsigned s = OM_SLOT_FIRST; s < m->nslots && m->mslot == 0; s++)
		if (slot_claim(m, s))
			m->mslot = s;
	if (m->mslot == 0) {
		fprintf(stderr, "objmapperd: binary upgrade: no free process slot in the index\n");
		return -ENOSPC;
	}
	m->slots[m->mslot] = 1;
	m->srv.master_slot = m->mslot;
	store_params(m->conf, &sp);
	sp.adopt = 1;
	sp.tier_fd[OM_TIER_MEM] = m->in_tier[OM_TIER_MEM];
	sp.tier_fd[OM_TIER_DISK] = m->in_tier[OM_TIER_DISK];
	if ((rc = om_store_open(&sp, m->srv.ix, &m->srv.st, err, sizeof(err))) != 0) {
		fprintf(stderr, "objmapperd: %s\n", err);
		return rc;
	}
	om_store_set_slot(m->srv.st, m->mslot);
	om_log_info(0, "binary upgrade: took over the running index (%s) and tiers", m->conf->index.file);
	return 0;
}

/* A listening socket handed over by the master being replaced: what it
 * is bound to, read back from the kernel, so that listeners_build keeps
 * it for the configured listener it matches. */
static om_listener_t *
listener_inherit(int fd)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t slen = sizeof(ss), tlen = sizeof(int);
	om_listener_t *l;
	int type = 0;

	if (getsockname(fd, (struct sockaddr *)&ss, &slen) != 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tlen) != 0 || (l = calloc(1, sizeof(*l))) == NULL)
		return NULL;
	l->fd = fd;
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss;
		struct stat sb;

		l->transport = OM_TRANSPORT_UNIX;
		/* sun_path holds at most sizeof(l->path) - 1 bytes (the
		 * configuration's limit), NUL-terminated or not. */
		memcpy(l->path, sun->sun_path, sizeof(l->path) - 1);
		l->path[sizeof(l->path) - 1] = '\0';
		snprintf(l->where, sizeof(l->where), "%s", l->path);
		if (stat(l->path, &sb) == 0) {
			l->dev = sb.st_dev;
			l->ino = sb.st_ino;
		}
	} else {
		l->transport = type == SOCK_STREAM ? OM_TRANSPORT_TCP : OM_TRANSPORT_UDP;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in sin;

			memcpy(&sin, &ss, sizeof(sin));
			memset(l->addr, 0, 10);
			l->addr[10] = l->addr[11] = 0xff;
			memcpy(l->addr + 12, &sin.sin_addr, 4);
			l->port = ntohs(sin.sin_port);
		} else {
			struct sockaddr_in6 sin6;

			memcpy(&sin6, &ss, sizeof(sin6));
			memcpy(l->addr, &sin6.sin6_addr, 16);
			l->port = ntohs(sin6.sin6_port);
		}
		snprintf(l->where, sizeof(l->where), "%s port %u (handed over)",
		    l->transport == OM_TRANSPORT_TCP ? "tcp" : "udp", l->port);
	}
	return l;
}

/* OBJMAPPER_INHERIT="ix=FD;tier=FD,FD;ls=FD,...": what SIGUSR2 hands
 * over (upgrade()). */
static int
inherit_fd(const char **p, const char *prefix, char sep, int *fd)
{
	size_t n = strlen(prefix);
	char *end;
	long v;

	if (strncmp(*p, prefix, n) != 0)
		return -EINVAL;
	v = strtol(*p + n, &end, 10);
	if (end == *p + n || v < 0 || v > INT_MAX || *end != sep)
		return -EINVAL;
	*fd = (int)v;
	*p = end + 1;
	return 0;
}

static int
inherit_parse(master_t *m, const char *v)
{
	const char *p = v;

	if (inherit_fd(&p, "ix=", ';', &m->in_ixfd) != 0 ||
	    inherit_fd(&p, "tier=", ',', &m->in_tier[0]) != 0 ||
	    inherit_fd(&p, "", ';', &m->in_tier[1]) != 0 || strncmp(p, "ls=", 3) != 0)
		return -EINVAL;
	p += 3;
	while (*p != '\0' && m->nin_ls < OM_CONF_LISTEN_MAX) {
		const char *q = p + strcspn(p, ",");
		char sep = *q;

		if (inherit_fd(&p, "", sep, &m->in_ls[m->nin_ls]) != 0)
			return -EINVAL;
		m->nin_ls++;
		if (sep == '\0')
			break;
	}
	m->adopt = true;
	return 0;
}

static int
build_store(master_t *m)
{
	const om_conf_t *conf = m->conf;
	om_ix_params_t ip = { 0 };
	om_store_params_t sp;
	om_rebuild_stats_t rs;
	char err[512];
	int rc, attached;

	ip.capacity = conf->index.capacity;
	ip.max_uri = conf->index.max_uri;
	ip.arena_bytes = conf->index.arena_bytes;
	ip.atime_res_ms = conf->index.atime_res_ms;
	ip.hits_max = conf->cache.promote_hits;
	/* Every process has a slot: the master, the retired counters, and
	 * workers and managers of up to four generations at once. */
	ip.procs = OM_SLOT_FIRST + 4 * (conf->daemon.workers + 1) + 4;
	ip.proc_bytes = 4096;
	if (m->adopt)
		return adopt_store(m, &ip);
	if ((rc = open_index(m, &ip, &m->srv.ix, &attached)) != 0) {
		fprintf(stderr, "objmapperd: cannot create the index (%u objects): %s\n", ip.capacity,
		    strerror(-rc));
		return rc;
	}
	/* An attached index may have more process slots than asked for. */
	ip.procs = om_index_procs(m->srv.ix);
	m->nslots = ip.procs;
	m->slots = calloc(m->nslots, 1);
	if (m->slots == NULL)
		return -ENOMEM;
	store_params(conf, &sp);
	if ((rc = om_store_open(&sp, m->srv.ix, &m->srv.st, err, sizeof(err))) != 0) {
		fprintf(stderr, "objmapperd: %s\n", err);
		return rc;
	}
	if (attached) {
		om_attach_stats_t as;
		double t0 = (double)om_clock_ms();

		err[0] = '\0';
		if ((rc = om_index_recover(m->srv.ix)) == 0 &&
		    (rc = om_store_attach(m->srv.st, &as, err, sizeof(err))) == 0) {
			om_log_info(0, "index attached from %s in %.3f s (%s): %llu objects; %llu unfinished "
			    "publishes and %llu temporary files removed", conf->index.file,
			    ((double)om_clock_ms() - t0) / 1000, as.clean ? "left by a graceful stop" :
			    "its processes had died; repaired", (unsigned long long)as.objects,
			    (unsigned long long)as.reclaimed, (unsigned long long)as.temp_removed);
			return 0;
		}
		om_log_info(0, "index file %s not used: %s; rebuilding from the tiers", conf->index.file,
		    err[0] ? err : strerror(-rc));
		if ((rc = om_index_recreate(m->srv.ix, &ip)) != 0) {
			fprintf(stderr, "objmapperd: cannot make the index anew: %s\n", strerror(-rc));
			return rc;
		}
		om_store_close(m->srv.st);
		if ((rc = om_store_open(&sp, m->srv.ix, &m->srv.st, err, sizeof(err))) != 0) {
			fprintf(stderr, "objmapperd: %s\n", err);
			return rc;
		}
	}
	om_store_claim(m->srv.st);
	if ((rc = om_store_rebuild(m->srv.st, &rs)) != 0) {
		fprintf(stderr, "objmapperd: rebuilding the index from %s and %s failed: %s\n",
		    conf->persistent.path, conf->memory.path, strerror(-rc));
		return rc;
	}
	om_log_info(0, "index rebuilt in %.3f s: %llu objects (%llu ephemeral, %llu copies), "
	    "%llu bytes; removed %llu stale, %llu expired, %llu temporary; %llu moved to corrupt/",
	    rs.seconds, (unsigned long long)rs.objects, (unsigned long long)rs.ephemeral,
	    (unsigned long long)rs.copies, (unsigned long long)rs.bytes,
	    (unsigned long long)rs.stale_removed, (unsigned long long)rs.expired_removed,
	    (unsigned long long)rs.temp_removed, (unsigned long long)rs.corrupt_moved);
	return 0;
}

int
om_master_run(const char *conf_path, om_conf_t *conf, int foreground)
{
	master_t *m = calloc(1, sizeof(*m));
	om_listener_t *ls[OM_CONF_LISTEN_MAX];
	struct epoll_event e;
	sigset_t set;
	char err[1024], cwd[PATH_MAX];
	int rc;

	if (m == NULL)
		return 1;
	/* A reload reads the file again once daemon(3) has moved to /: a
	 * relative path is made absolute now, its links left to be followed
	 * then (a link switched to another file is the file reloaded). */
	m->conf_path = conf_path;
	if (conf_path[0] != '/' && getcwd(cwd, sizeof(cwd)) != NULL) {
		int n = snprintf(m->conf_abs, sizeof(m->conf_abs), "%s/%s", cwd, conf_path);

		if (n > 0 && (size_t)n < sizeof(m->conf_abs))
			m->conf_path = m->conf_abs;
	}
	m->foreground = foreground != 0;
	m->conf = conf;
	m->srv.conf = conf;
	m->srv.generation = 1;
	m->ep = m->sigfd = m->ixfd = -1;
	m->pid = getpid();
	/* For SIGUSR2: the binary at this path and the file at that one, as
	 * they will be then (after an upgrade of the package, a new binary). */
	if (realpath("/proc/self/exe", m->exe) == NULL)
		snprintf(m->exe, sizeof(m->exe), "/usr/sbin/objmapperd");
	if (realpath(conf_path, m->conf_real) == NULL)
		snprintf(m->conf_real, sizeof(m->conf_real), "%s", conf_path);
	{
		const char *inh = getenv("OBJMAPPER_INHERIT");

		if (inh != NULL) {
			if (inherit_parse(m, inh) != 0) {
				fprintf(stderr, "objmapperd: OBJMAPPER_INHERIT: not what a binary upgrade hands "
				    "over: %s\n", inh);
				free(m);
				return 1;
			}
			unsetenv("OBJMAPPER_INHERIT");
		}
	}

	/* Blocked before anything slow (the rebuild takes seconds): a signal
	 * that comes while the daemon starts waits for the signalfd below and
	 * is acted on once it has started; one that came before would kill it
	 * (QUIT, TERM, INT) or be lost where the parent ignored it (a shell
	 * starts background jobs with QUIT and INT ignored, and a blocked
	 * signal is kept even then). The rebuild's threads inherit the mask. */
	sigemptyset(&set);
	for (unsigned i = 0; i < OM_ARRAY_LEN(master_signals); i++)
		sigaddset(&set, master_signals[i]);
	sigprocmask(SIG_BLOCK, &set, NULL);

	if (foreground)
		rc = om_log_open(OM_LOG_STDERR, NULL, (int)conf->log.level);
	else
		rc = om_log_open(conf->log.target, conf->log.file, (int)conf->log.level);
	if (rc != 0) {
		fprintf(stderr, "objmapperd: cannot open log %s: %s\n", conf->log.file, strerror(-rc));
		goto fail;
	}
	om_log_set_process("master");
	if (open_pidfile(m) != 0)
		goto fail;
	raise_nofile(conf);
	signal(SIGPIPE, SIG_IGN);
	if (build_store(m) != 0)
		goto fail;
	/* Handed-over sockets are kept for the listeners they match, as a
	 * reload keeps its own; the rest are bound. */
	for (unsigned i = 0; i < m->nin_ls; i++) {
		om_listener_t *l = listener_inherit(m->in_ls[i]);

		if (l == NULL) {
			fprintf(stderr, "objmapperd: binary upgrade: descriptor %d is not a socket\n", m->in_ls[i]);
			goto fail;
		}
		m->ls[m->nls++] = l;
	}
	if (listeners_build(m, conf, ls, err, sizeof(err)) != 0) {
		fprintf(stderr, "objmapperd: %s\n", err);
		goto fail;
	}

	/* Detach before the signalfd and epoll exist: an epoll set made by
	 * the process that forks is not woken by signals to the child. */
	if (!foreground && daemon(0, 0) != 0) {
		fprintf(stderr, "objmapperd: daemon: %s\n", strerror(errno));
		goto fail;
	}
	m->sigfd = om_os_signalfd(master_signals, OM_ARRAY_LEN(master_signals), 1);
	if (m->sigfd < 0) {
		fprintf(stderr, "objmapperd: signalfd/epoll: %s\n", strerror(-m->sigfd));
		goto fail;
	}
	m->ep = epoll_create1(EPOLL_CLOEXEC);
	if (m->ep < 0) {
		fprintf(stderr, "objmapperd: signalfd/epoll: %s\n", strerror(errno));
		goto fail;
	}
	e.events = EPOLLIN;
	e.data.fd = m->sigfd;
	epoll_ctl(m->ep, EPOLL_CTL_ADD, m->sigfd, &e);

	m->pid = getpid();
	if (pidfile_write(m->pfh) != 0)
		om_log_warn(errno, "writing the pid file failed");
	setproctitle("master process %s", conf_path);
	OM_STORE(&om_srv_stats(&m->srv, m->mslot)->started_at, (uint64_t)om_time_s());
	om_log_info(0, "%s started: %u workers, %u listeners (%s%s)", OM_SERVER_NAME,
	    conf->daemon.workers, m->nls, m->ls[0]->where, m->nls > 1 ? ", ..." : "");

	spawn_generation(m);
	/* systemd (Type=notify): serving, and this is the main process (after
	 * a binary upgrade, the new one: NotifyAccess=all lets it say so). */
	{
		char state[64];

		snprintf(state, sizeof(state), "READY=1\nMAINPID=%d", (int)m->pid);
		(void)om_os_notify(state);
	}
	for (;;) {
		struct epoll_event ev[4];
		int n = epoll_wait(m->ep, ev, 4, next_timeout(m));

		if (n < 0 && errno != EINTR) {
			/* Deaf to signals from now on: stop everything, and say so. */
			om_log_err(errno, "epoll_wait failed; stopping");
			signal_children(m, SIGTERM, false);
			m->exit_status = 1;
			break;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.fd == m->sigfd)
				handle_signals(m);
			else
				ready_event(m, ev[i].data.fd);
		}
		timers(m);
		om_log_limits_flush();
		if (m->stopping && !children_left(m))
			break;
	}
	om_log_info(0, "exiting");
	/* After a binary upgrade the socket files, the index and the pid file
	 * are the new master's. */
	for (unsigned i = 0; i < m->nls; i++)
		listener_close(m->ls[i], !m->handover);
	/* Every child is gone: the index is left for the next start. */
	if (m->ixfd >= 0 && !children_left(m) && !m->handover) {
		if ((rc = om_store_seal(m->srv.st)) != 0)
			om_log_warn(-rc, "the index in %s is left unsealed; the next start checks it more",
			    m->conf->index.file);
		else
			om_log_info(0, "the index is kept in %s for the next start", m->conf->index.file);
	}
	if (m->handover) {
		char oldbin[PATH_MAX + 8];

		oldbin_path(m, oldbin, sizeof(oldbin));
		pidfile_close(m->pfh);
		(void)unlink(oldbin);
	} else {
		pidfile_remove(m->pfh);
	}
	om_store_close(m->srv.st);
	om_index_close(m->srv.ix);
	if (m->ixfd >= 0)
		close(m->ixfd);
	om_conf_free(m->conf);
	free(m->slots);
	rc = m->exit_status;
	free(m);
	return rc;
fail:
	for (unsigned i = 0; i < m->nls; i++)
		listener_close(m->ls[i], true);
	if (m->pfh != NULL)
		pidfile_remove(m->pfh);
	free(m);
	return 1;
}
