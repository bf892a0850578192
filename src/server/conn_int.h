/*
 * A client connection's state, shared by the objmapper protocol (conn.c)
 * and HTTP (http.c). Worker processes only.
 */
#ifndef OM_CONN_INT_H
#define OM_CONN_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/om_http.h"
#include "server/object.h"
#include "server/worker_int.h"
#include "store/om_store.h"

#define IN_CAP        (64u * 1024u)            /* holds any datagram (65,507 bytes) */
#define INLINE_READ   (64u * 1024u)        /* copy-mode objects up to this go in one buffer */
#define SKIP_MAX      (64ull * 1024 * 1024) /* a refused PUT body up to this is read and dropped */
#define RUN_BUDGET    32                   /* requests per turn before others get theirs */
#define SCRATCH_SIZE  (256u * 1024u)
#define RFD_MAX       8

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
	om_http_chunked_t ch;
} http_req_state_t;

struct conn {
	ev_tag_t tag;
	worker_t *w;
	om_listener_t *ls;
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
	bool dgram;               /* a UDP listener's pseudo-connection */
	bool dgram_done;          /* its datagram's request was taken */
	http_req_state_t http;    /* http listeners */
	bool lingering;           /* http: answered and shut down for writing; reading
	                           * what the client still sends, then closing */
	uint64_t linger_until_ms;
	uint64_t linger_bytes;
};

/* conn.c, for http.c */
out_t *out_new(enum out_kind kind, size_t datalen);
void out_push(conn_t *c, out_t *o);
void consume(conn_t *c, size_t n);
int body_write(conn_t *c);
void fatal(conn_t *c, const char *why);

/* http.c */
/* Handles what the buffer holds; true if there is more to do at once. */
bool http_process(conn_t *c);
/* A whole request head is buffered. */
bool http_request_ready(const conn_t *c);
/* Closes after a timeout: 408 if a request was being received. */
void http_close_timeout(conn_t *c, bool request);
/* The answer to a connection over max_connections. */
void http_reject(worker_t *w, int fd, const char *why);

#endif


