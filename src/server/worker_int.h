/*
 * Internals of a worker process: the event loop (worker.c), connections
 * and the protocol (conn.c). Worker processes only.
 */
#ifndef OM_WORKER_INT_H
#define OM_WORKER_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/om_proto.h"
#include "server/fdcache.h"
#include "server/om_server.h"

enum ev_kind {
	EV_LISTENER = 1,
	EV_SIGNAL,
	EV_CONN,
};

/* What an epoll event points at: each of these structures begins with one. */
typedef struct {
	enum ev_kind kind;
} ev_tag_t;

typedef struct conn conn_t;

typedef struct {
	ev_tag_t tag;
	om_listener_t *ls;
	int in_epoll;
	conn_t *dgram;        /* UDP: the pseudo-connection each datagram runs on */
} wlistener_t;

/* Who is at the other end: credentials (Unix) or an address (TCP, UDP). */
typedef struct {
	bool has_cred, has_addr;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t groups[64];
	unsigned ngroups;
	uint8_t addr[16];     /* IPv4 mapped into IPv6 */
	char name[64];        /* "uid 1000", "127.0.0.2", for messages */
} om_peer_t;

typedef struct {
	om_srv_t *srv;
	om_srv_stats_sh_t *stats;
	om_srv_stats2_sh_t *stats2; /* counters added since (om_server.h) */
	int ep;
	int sigfd;
	ev_tag_t sig_tag;
	wlistener_t ls[OM_CONF_LISTEN_MAX];
	unsigned nls;
	int accepting;
	unsigned nconns;
	conn_t *conns;        /* every connection */
	conn_t *ready;        /* connections with buffered input to process */
	int draining;
	uint64_t drain_deadline_ms;
	uint64_t accept_resume_ms; /* accepting paused until (EMFILE) */
	uint64_t next_sweep_ms;
	om_fdc_t fdc;           /* the descriptor cache (fdcache.c) */
} worker_t;

/* access.c */
/* Who is at the other end of an accepted socket; 0 or -errno. */
int om_peer_from_socket(om_peer_t *p, int fd, unsigned transport);
void om_peer_from_sockaddr(om_peer_t *p, const struct sockaddr *sa);
enum om_access om_peer_access(const om_listener_t *ls, const om_peer_t *p);

/* conn.c */
conn_t *conn_new(worker_t *w, int fd, om_listener_t *ls, const om_peer_t *peer);
/* Answers a connection over the limit (GOAWAY, BUSY) and closes it. */
void conn_reject(worker_t *w, int fd, const om_listener_t *ls, const char *why);
/* Once a second: idle and request timeouts. */
void conn_tick(conn_t *c, uint64_t now_ms);
/* UDP: reads and answers the datagrams waiting on the listener. */
void conn_udp_input(worker_t *w, wlistener_t *l);
void conn_udp_free(wlistener_t *l);
/* The ready list: connections with buffered work, run after the events.
 * A connection closed while on it is freed when popped (conn_reap). */
void conn_ready_push(worker_t *w, conn_t *c);
conn_t *conn_ready_pop(worker_t *w);
/* Runs each connection of the ready list once. */
void conn_ready_run(worker_t *w);
bool conn_reap(conn_t *c);
conn_t *conn_next(const conn_t *c);
void conn_event(conn_t *c, uint32_t events);
/* Processes buffered input (from the ready list or after an event). */
void conn_run(conn_t *c);
/* The worker is draining: finish what was accepted, then GOAWAY. */
void conn_drain(conn_t *c);
void conn_close(conn_t *c);

/* worker.c */
void worker_conn_gone(worker_t *w, conn_t *c);

#endif
