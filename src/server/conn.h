/*
 * A worker's connections: the transport (conn.c) and what the protocols
 * above it (proto_bin.c, proto_http.c, proto_udp.c) share with it: the
 * worker's state, a connection's buffers and output queue, and the table
 * of functions through which the transport calls its listener's protocol.
 * Worker processes only.
 */
#ifndef OM_CONN_H
#define OM_CONN_H

#include <stdbool.h>
#include <stdint.h>

#include "os/om_os.h"
#include "proto/om_http.h"
#include "proto/om_proto.h"
#include "server/access.h"
#include "server/fdcache.h"
#include "server/om_server.h"
#include "store/om_store.h"

/* The input buffer holds any datagram (65,507 bytes) and any request frame
 * whose body is at most 64 KiB (INLINE_READ: a small object), header, URI
 * and metadata included: such a PUT arrives in one read and goes to its
 * file in one write (with a buffer of 64 KiB it took two of each). */
#define IN_CAP        (64u * 1024u + 4096u)
#define INLINE_READ   (64u * 1024u)         /* copy-mode objects up to this go in one buffer */
_Static_assert(IN_CAP >= OM_REQ_HDR_LEN + OM_PROTO_URI_MAX + OM_PROTO_META_MAX + INLINE_READ,
    "a frame with a body of INLINE_READ bytes fits the input buffer");
#define SKIP_MAX      (64ull * 1024 * 1024) /* a refused PUT body up to this is read and dropped */
#define RUN_BUDGET    32                    /* requests per turn before others get theirs */
#define BOUNCE_SIZE   (256u * 1024u)        /* copy mode: bytes read, then written */
#define BODY_BUF      (256u * 1024u)        /* a large PUT body's bytes, read past the input buffer */
#define RFD_MAX       OM_OS_FDS_MAX         /* descriptors received and not yet taken */

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
typedef struct conn_proto conn_proto_t;

/* A listener as a worker has it. */
typedef struct {
	ev_tag_t tag;
	om_listener_t *ls;
	const conn_proto_t *proto; /* what its connections speak */
	int in_epoll;
	conn_t *dgram;        /* UDP: the pseudo-connection each datagram runs on */
} wlistener_t;

/* A worker's state: its loop is worker.c's, its connections conn.c's. */
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
	uint8_t *body_buf;      /* BODY_BUF bytes: a PUT body read past the input buffer, written
	                         * to its transaction before any other connection reads */
} worker_t;

enum out_kind {
	OUT_BUF,
	OUT_COPY,   /* a file range, read and written */
	OUT_SPLICE, /* a file range, sendfile */
};

typedef struct out {
	struct out *next;
	enum out_kind kind;
	om_fdref_t ref;    /* BUF: a descriptor to pass with the first byte, or none; else the file */
	bool resp_end;     /* the last part of a response */
	uint64_t off;      /* file ranges: next offset */
	uint64_t len;      /* BUF: bytes of data; ranges: bytes left */
	uint64_t done;     /* BUF: bytes sent */
	/* COPY of a whole object: its bytes are checked against their CRC32C
	 * as they are read, and the last of them are not sent if they do not
	 * match (the object is quarantined, the connection closed). */
	bool check;
	uint32_t crc;
	int tier;
	om_ix_obj_t obj;
	uint8_t data[];
} out_t;

enum in_state {
	ST_HEADER, /* reading a request's header, URI and metadata */
	ST_BODY,   /* a PUT's bytes go to its transaction */
	ST_SKIP,   /* a refused request's bytes are dropped */
	ST_HTTP_BODY,    /* http: a PUT's body (Content-Length) goes to its transaction */
	ST_HTTP_CHUNKED, /* http: a PUT's chunked body, decoded into its transaction */
	ST_FDCOPY,  /* a PUT's bytes are copied from the client's descriptor, in steps */
};

/* HTTP: the request whose body is being received. */
typedef struct {
	bool close;        /* the connection closes after the response */
	bool existed;      /* PUT: the URI had an object (204, else 201) */
	bool head_started; /* a request's first bytes came (for a 408) */
	bool http10;       /* the request is HTTP/1.0: a response that keeps the
	                    * connection says so (Connection: keep-alive) */
	om_http_chunked_t ch;
} http_req_state_t;

struct conn {
	ev_tag_t tag;
	worker_t *w;
	om_listener_t *ls;
	const conn_proto_t *proto; /* its listener's protocol */
	int fd;
	conn_t *next, *prev;      /* worker's list */
	conn_t *ready_next;
	bool in_ready;
	uint8_t *in;
	size_t in_off, in_len;
	int rfds[RFD_MAX];        /* descriptors received, not yet used */
	unsigned nrfds;
	enum in_state state;
	om_req_t req;             /* ST_BODY: the PUT */
	om_put_txn_t *txn;
	uint64_t left;            /* ST_BODY, ST_SKIP, ST_FDCOPY: bytes still to come */
	int put_fd;               /* ST_FDCOPY: the client's descriptor (owned), or -1 */
	uint64_t put_off;         /* ST_FDCOPY: its bytes copied so far */
	size_t body_ext;          /* ST_BODY, ST_HTTP_BODY: bytes of the body read into the
	                           * worker's body_buf, not yet written (they come before
	                           * those of the input buffer) */
	out_t *out_head, *out_tail;
	uint64_t out_bytes;
	unsigned inflight;        /* responses queued, not fully sent */
	uint32_t last_id;         /* the last request accepted */
	uint32_t events;          /* epoll interest */
	bool offset_reads;
	bool eof;                 /* the client will send nothing more */
	bool starved;             /* the bytes buffered are not a whole request:
	                           * nothing to do before more arrive */
	bool closing;             /* close once the queue is sent */
	bool draining;
	bool goaway_sent;
	bool dead;
	uint8_t *bounce;          /* copy mode: bytes read, not yet written */
	size_t bounce_off, bounce_len;
	om_peer_t peer;
	enum om_access access;
	uint64_t active_ms;       /* last byte read or written */
	uint64_t req_start_ms;    /* the request being received began (0: none) */
	uint64_t req_bytes;       /* bytes read since then, for min_rate */
	uint64_t frames;          /* requests received whole */
	uint64_t req_taken;       /* bytes of the request being received that the protocol
	                           * took from the input buffer (binary protocol; else 0) */
	bool dgram;               /* a UDP listener's pseudo-connection */
	bool dgram_done;          /* its datagram's request was taken */
	http_req_state_t http;    /* http listeners */
	bool lingering;           /* answered and shut down for writing (conn_proto_t
	                           * linger); reading what the client still sends,
	                           * then closing */
	uint64_t linger_until_ms;
	uint64_t linger_bytes;
};

/*
 * A protocol, as the transport calls it: each listener's connections speak
 * one (worker.c picks it). The transport reads, sends, times out and
 * closes; the protocol makes requests of the bytes and queues responses.
 */
struct conn_proto {
	/* Handles what the buffer holds; true if there is more to do at once
	 * (its budget is spent: the worker's other connections go first). */
	bool (*process)(conn_t *c);
	/* A whole request waits in the buffer. */
	bool (*ready)(const conn_t *c);
	/* The server closes the connection (a timeout; status OK for an idle
	 * one): queue the protocol's last words. */
	void (*goodbye)(conn_t *c, uint16_t status, const char *why);
	/* A connection over max_connections: the protocol's answer on fd,
	 * which the transport then closes. */
	void (*reject)(worker_t *w, int fd, const om_listener_t *ls, const char *why);
	/* Closing while the client may still be sending: read and drop for a
	 * while first, so that the answer is not lost to a reset. */
	bool linger;
};

/* ---- conn.c: the output queue, input, life cycle ---- */

out_t *conn_out_new(enum out_kind kind, size_t datalen);
void conn_out_push(conn_t *c, out_t *o);
/* Drops everything queued. */
void conn_out_clear(conn_t *c);
/* n bytes of the input buffer were used. */
void conn_consume(conn_t *c, size_t n);
/* The first descriptor received and not yet taken, now the caller's; -1
 * if none. */
int conn_take_fd(conn_t *c);
/* A PUT's bytes in the buffer, up to the c->left still expected, to its
 * transaction. Returns the store's error, or 0. */
int conn_body_write(conn_t *c);
/* Bytes of a PUT's body received and not yet written (ST_BODY, ST_HTTP_BODY). */
static inline size_t
conn_body_have(const conn_t *c)
{
	return c->body_ext + (c->in_len - c->in_off);
}
/* An error that leaves the stream unusable: what is queued is sent, then
 * the connection closes (an unfinished PUT is dropped). */
void conn_end(conn_t *c, const char *why);

/* Takes an accepted socket of listener l; NULL (the caller closes fd) if
 * there is no memory for it or epoll refuses it. */
conn_t *conn_new(worker_t *w, int fd, const wlistener_t *l, const om_peer_t *peer);
/* Answers a connection over the limit (the protocol's way) and closes it. */
void conn_reject(worker_t *w, int fd, const wlistener_t *l, const char *why);
/* Once a second: idle and request timeouts. */
void conn_tick(conn_t *c, uint64_t now_ms);
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
/* The worker is draining: finish what was accepted, then say goodbye. */
void conn_drain(conn_t *c);
void conn_close(conn_t *c);

#endif
