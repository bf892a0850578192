/*
 * objmapperd internals shared by its processes: the master (master.c), the
 * workers (worker.c and the files below it) and the cache manager (manager.c).
 */
#ifndef OM_SERVER_H
#define OM_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <objmapper/protocol.h>

#include "conf/om_conf.h"
#include "index/om_index.h"
#include "store/om_store.h"

#define OM_SERVER_NAME "objmapperd " OM_VERSION

/* Exit status of a child that must not be restarted (it cannot work with
 * this configuration: e.g. the user to run as cannot be assumed). */
#define OM_EXIT_FATAL 3

/* Process slots in the index segment. */
#define OM_SLOT_MASTER  0
#define OM_SLOT_RETIRED 1 /* counters of processes that have exited */
#define OM_SLOT_FIRST   2

/* Requests a connection may have in flight before its worker stops reading. */
#define OM_MAX_PIPELINE 128

/* A listening socket, created by the master and inherited by workers. */
typedef struct {
	char name[OM_CONF_LISTEN_NAME_MAX + 1];
	char path[OM_CONF_SOCKET_PATH_MAX + 1]; /* unix */
	char where[OM_CONF_SOCKET_PATH_MAX + 16]; /* for messages: the path, or tcp ADDR port N */
	int fd;
	dev_t dev;          /* identity of the socket file we created */
	ino_t ino;
	unsigned transport; /* OM_TRANSPORT_* */
	unsigned modes;     /* bit (1 << mode) for each GET mode it supports */
	uint8_t addr[16];   /* tcp, udp: bound address (IPv4 mapped), and port */
	uint32_t port;
	/* From the listener's section, updated on reload. */
	uint64_t inline_threshold;
	uint64_t send_buffer; /* SO_SNDBUF of accepted connections, 0 = default */
	om_conf_acl_list_t allow_read;
	om_conf_acl_list_t allow_write;
	uint32_t idle_timeout_ms;
	uint32_t request_timeout_ms;
	uint64_t min_rate;    /* bytes/s: request_timeout grows 1 s per min_rate bytes read */
	uint64_t max_object;  /* 0 = only the tiers limit it */
	uint32_t max_pipeline;
	uint64_t max_buffer;
	uint32_t max_datagram;
	uint32_t amplification;
	bool http;            /* HTTP/1.1 (proto_http.c), not objmapper frames */
	uint32_t max_header;  /* http: bytes of a request head */
	bool metrics;         /* http: serves the statistics only (serve = metrics) */
} om_listener_t;

/* What a peer may do on a listener (from its allow lists). */
enum om_access { OM_ACCESS_NONE = 0, OM_ACCESS_READ = 1, OM_ACCESS_WRITE = 2 };

/*
 * Per-process counters, in the process's slot of the index segment after
 * the store's part; one writer (the process, OM_COUNT), summed by STATS,
 * where each has its line in stats.c's metrics[]. Their places and sizes
 * are fixed: the processes of an older binary count in the same areas
 * during a binary upgrade (new counters go at the end of the last area).
 * Arrays are a labeled metric's series, in its labels' order.
 */
typedef struct {
	uint64_t conns_current;
	uint64_t conns_total;
	/* responses by the request's op and their status (GOAWAY: op 8); LIST
	 * and PURGE in om_srv_stats2_sh_t (om_srv_responses gives an op's row) */
	uint64_t responses[OM_OP_VERIFY + 1][OM_STATUS_MAX + 1];
	uint64_t bytes_in;
	uint64_t bytes_out;
	uint64_t fds_passed;
	uint64_t fds_received;
	uint64_t goaways;
	uint64_t bad_frames;
	uint64_t denied;            /* requests refused by a listener's allow lists */
	uint64_t conns_rejected;    /* over max_connections: answered BUSY and closed */
	uint64_t timeouts[2];       /* connections closed by idle_timeout, request_timeout */
	uint64_t accept_pauses;     /* accept failed (EMFILE, ENFILE...): paused */
	uint64_t dgrams[2];         /* UDP datagrams received, sent */
	uint64_t dgrams_dropped;    /* UDP datagrams dropped unanswered (not a frame) */
	uint64_t dgrams_limited;    /* UDP responses cut to the amplification limit */
	uint64_t http_responses[5]; /* HTTP responses by class: 1xx .. 5xx */
	/* master only */
	uint64_t reloads;
	uint64_t reload_failures;
	uint64_t worker_restarts;
	uint64_t started_at; /* unix seconds */
	uint64_t maint_passes;
} om_srv_stats_sh_t;

/*
 * Requests of a process to the cache manager, in its slot after its
 * counters: VERIFY asks for objects to be checked at once or for a scrub
 * pass to start. The process writes the *_req fields, the manager the
 * *_done ones (a manager that starts goes on from them).
 */
#define OM_VERIFY_QUEUE 16
typedef struct {
	uint64_t pass_req;    /* scrub passes asked for */
	uint64_t pass_done;   /* ... of which the manager has started */
	uint64_t verify_req;  /* objects queued in verify_q (index mod its size) */
	uint64_t verify_done; /* ... of which the manager has taken */
	uint32_t scrub_cursor; /* master's slot: where the scrub goes on, across managers */
	uint32_t owner;        /* pid of the master that gave the slot out (0: free); two masters
	                        * share the slots during a binary upgrade */
	struct {
		uint64_t id;
		uint32_t slot;    /* the index's handle of the object */
		uint32_t pad;
	} verify_q[OM_VERIFY_QUEUE];
} om_srv_requests_sh_t;

/*
 * Counters added since, in an area of their own after the requests: the
 * areas before keep their places and sizes, because the processes of an
 * older binary count in the same slots' areas during a binary upgrade (and
 * the masters find their slots' owners there). Later counters go here, at
 * the end, or in another area after this one.
 */
typedef struct {
	uint64_t responses[OM_OP_MAX - OM_OP_VERIFY][OM_STATUS_MAX + 1]; /* LIST, PURGE */
	uint64_t purged;            /* objects deleted by PURGE */
} om_srv_stats2_sh_t;

/* The row of requests_total counters of an op (unknown ops: op 0's). */
static inline uint64_t *
om_srv_responses(om_srv_stats_sh_t *s, om_srv_stats2_sh_t *s2, unsigned op)
{
	if (op <= OM_OP_VERIFY)
		return s->responses[op];
	if (op <= OM_OP_MAX)
		return s2->responses[op - OM_OP_VERIFY - 1];
	return s->responses[0];
}

/* What every process of one generation shares (inherited from the master). */
typedef struct {
	om_conf_t *conf;
	om_index_t *ix;
	om_store_t *st;
	om_listener_t *listeners[OM_CONF_LISTEN_MAX];
	unsigned nlisteners;
	unsigned generation;
	unsigned slot;      /* this process's slot */
	unsigned master_slot; /* its master's (OM_SLOT_MASTER, or another after a binary upgrade) */
	unsigned worker_no; /* workers: 0..N-1 */
	int ready_fd;       /* workers: a byte written to it says "accepting"; -1 once said */
} om_srv_t;

/* Index of timeouts[] and dgrams[]. */
enum { OM_TIMEOUT_IDLE, OM_TIMEOUT_REQUEST };
enum { OM_DGRAM_IN, OM_DGRAM_OUT };

om_srv_stats_sh_t *om_srv_stats(om_srv_t *srv, unsigned slot);
om_srv_requests_sh_t *om_srv_requests(om_srv_t *srv, unsigned slot);
om_srv_stats2_sh_t *om_srv_stats2(om_srv_t *srv, unsigned slot);
/* Adds a slot's counters to the retired totals and zeroes it. */
void om_srv_stats_retire(om_srv_t *srv, unsigned slot);
/* The STATS body, summed over every process: flags 0 for the text of
 * "name{labels} value" lines, OM_STATS_PROMETHEUS for the Prometheus text
 * exposition format (docs/PROTOCOL.md). malloc'd; NULL if out of memory. */
char *om_srv_stats_text(om_srv_t *srv, unsigned flags, size_t *len);

/* Runs a worker process until it has drained; returns its exit status. */
int om_worker_run(om_srv_t *srv);
/* Runs the cache manager; returns its exit status. */
int om_manager_run(om_srv_t *srv);
/* Drops root for the configured user and group (children only). */
int om_srv_drop_privileges(const om_conf_t *conf);

#endif
