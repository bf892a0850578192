/*
 * libobjmapper: the client library of objmapper.
 *
 * A client connects to objmapperd's Unix socket and gets objects as file
 * descriptors (read them with pread, mmap or sendfile) or as bytes; it
 * puts objects from a buffer or from a descriptor. Calls are synchronous;
 * om_client_get_batch pipelines many GETs on one connection. A client
 * handle is not thread-safe: use one per thread.
 *
 * Every call returns 0 (or a count) on success and a negative code on
 * failure: -OM_STATUS_* for an answer of the server (e.g.
 * -OM_STATUS_NOT_FOUND), -OM_E* below for a local failure.
 * om_client_message() then describes the last failure in a sentence.
 *
 * If the daemon reloads or stops (GOAWAY) or a worker dies, the library
 * reconnects once and sends again the requests that were not answered, so
 * that a reload is invisible to callers.
 */
#ifndef OBJMAPPER_H
#define OBJMAPPER_H

#include <stddef.h>
#include <stdint.h>

#include <objmapper/protocol.h>

#ifdef __cplusplus
extern "C" {
#endif

#define OM_CLIENT_VERSION "0.1.0"

/* The socket a client uses when none is given and $OBJMAPPER_SOCKET is unset. */
#define OM_DEFAULT_SOCKET "/run/objmapper/objmapper.sock"

/* Default timeouts, in milliseconds: connecting and the answer to HELLO
 * (om_client_connect_timeout), and each later wait for the daemon
 * (om_client_set_timeout). */
#define OM_CLIENT_CONNECT_TIMEOUT 5000
#define OM_CLIENT_REQUEST_TIMEOUT 30000

/* Local failures (returned negated). The codes 1..99 are the server's
 * status codes (enum om_status). */
enum om_error {
	OM_ECONNECT = 100, /* cannot connect to the daemon */
	OM_EIO = 101,      /* the connection failed, also after a retry */
	OM_EPROTO = 102,   /* the server's answer broke the protocol */
	OM_EINVAL = 103,   /* bad argument (e.g. an invalid URI) */
	OM_ENOMEM = 104,   /* out of memory */
	OM_ERANGE = 105,   /* the caller's buffer is smaller than the object */
	OM_ESOURCE = 106,  /* reading the caller's descriptor or buffer failed */
	OM_ETIMEDOUT = 107, /* the daemon did not answer within the handle's timeout */
	OM_EAGAIN = 108,   /* non-blocking: nothing to read yet (om_decoder_recv) */
};

typedef struct om_client om_client_t;

/* What the server says about an object. */
typedef struct {
	uint64_t id;      /* version: changes with every PUT of the URI */
	uint64_t size;    /* bytes */
	int64_t expires;  /* unix seconds, 0 = never */
	int64_t mtime;    /* unix seconds of the PUT; 0 unless metadata was asked for */
	uint32_t crc;     /* CRC32C of the bytes */
	int tier;         /* OM_TIER_MEMORY or OM_TIER_PERSISTENT */
} om_info_t;

/* What a listener offers (from HELLO). */
typedef struct {
	unsigned version;
	unsigned transport;        /* OM_TRANSPORT_* */
	unsigned modes;            /* bit (1 << mode) for each enum om_mode supported */
	uint32_t max_uri;
	uint32_t max_meta;
	uint32_t max_pipeline;
	uint64_t max_object;       /* 0: only the tiers limit it */
	uint64_t inline_threshold;
	int shared_descriptions;   /* OFFSET_READS was granted */
	char server[64];           /* name and version */
	unsigned max_datagram;     /* UDP: largest response datagram; else 0 */
	unsigned amplification;    /* UDP: response <= this x request bytes; else 0 */
} om_caps_t;

/* A GET's result. Exactly one of fd >= 0 or data (possibly empty) holds
 * the bytes. Release with om_object_free. */
typedef struct {
	int fd;           /* a read-only descriptor of the object's file, or -1 */
	void *data;       /* the bytes, if they came inline (malloc'd), or NULL */
	uint64_t len;     /* bytes in data, or the object's size with fd */
	om_info_t info;
	void *meta;       /* the metadata blob, if asked for (malloc'd), or NULL */
	uint32_t meta_len;
} om_object_t;

typedef struct {
	const void *meta;  /* opaque metadata blob kept with the object */
	uint32_t meta_len;
	int64_t expires;   /* unix seconds, 0 = never */
	unsigned flags;    /* OM_PUT_EPHEMERAL */
} om_put_opts_t;

/* om_client_connect flags */
#define OM_CLIENT_OFFSET_READS 0x1u /* promise to read descriptors only at explicit
                                     * offsets (pread, mmap, sendfile with offset):
                                     * the server may then share descriptions */
#define OM_CLIENT_LAZY 0x2u         /* connect at the first call, not now (so that
                                     * om_client_set_timeout bounds that too) */

/* Connects and says HELLO (with OM_CLIENT_LAZY, at the first call). address: a Unix socket's path (or "unix:PATH"),
 * "tcp://HOST:PORT" or "udp://HOST:PORT" (an IPv6 HOST in brackets); NULL:
 * $OBJMAPPER_SOCKET, else OM_DEFAULT_SOCKET. Over TCP and UDP, GETs take
 * modes auto, copy (and splice, TCP); om_client_put_fd sends the bytes.
 * Over UDP each request is one datagram, sent again if no answer comes
 * (up to 6 times in about 6 s); batches run one GET at a time. On failure
 * *out may still hold a handle whose message explains; close it. */
int om_client_connect(const char *path, unsigned flags, om_client_t **out);
/* The same with another connect timeout (om_client_connect takes
 * OM_CLIENT_CONNECT_TIMEOUT): connect_ms bounds connecting and the wait
 * for HELLO's answer, also on every reconnect; 0 waits as long as it
 * takes. A peer that answers HELLO with anything but the protocol (an HTTP
 * listener, say) fails at once with -OM_EPROTO, and one that does not
 * answer within connect_ms with -OM_ETIMEDOUT; the message begins "not an
 * objmapper socket: ". */
int om_client_connect_timeout(const char *path, unsigned flags, int connect_ms, om_client_t **out);
void om_client_close(om_client_t *c);
/* The last failure in a sentence ("" if none). */
const char *om_client_message(const om_client_t *c);
/* A code's name in words. */
const char *om_client_strerror(int code);
/* The listener's capabilities. */
const om_caps_t *om_client_caps(const om_client_t *c);
/* The connection's socket descriptor (for poll; do not read or write it). */
int om_client_fd(const om_client_t *c);
/* Bounds every later wait for the daemon (connecting again, sending,
 * receiving) to ms milliseconds; 0 waits as long as it takes. Until it is
 * called, requests wait up to OM_CLIENT_REQUEST_TIMEOUT and connections up
 * to the connect timeout. A wait is for progress (a byte sent or
 * received), so a large object is not cut while it moves. A call whose
 * wait expires returns -OM_ETIMEDOUT at once, without a retry, and the
 * connection is closed (the next call connects again). */
void om_client_set_timeout(om_client_t *c, int ms);
/* Requests this handle has sent again: after a GOAWAY (never processed),
 * or after a lost connection (outcome unknown; GET, STAT, STATS, PING,
 * PUT and DELETE are repeated once). */
unsigned long om_client_retries(const om_client_t *c);

/*
 * GET in any mode (enum om_mode). flags: OM_GET_WANT_META, OM_GET_NO_TOUCH.
 * On success fill *obj; release it with om_object_free.
 */
int om_client_get(om_client_t *c, const char *uri, int mode, unsigned flags, om_object_t *obj);
void om_object_free(om_object_t *obj);
/* GET as a descriptor (mode fdpass): *fd is the caller's to close. */
int om_client_get_fd(om_client_t *c, const char *uri, int *fd, om_info_t *info);
/* GET inline (mode copy or splice) into the caller's buffer; *len gets the
 * size. -OM_ERANGE if it does not fit (info->size says how much is needed). */
int om_client_get_buf(om_client_t *c, const char *uri, int mode, void *buf, size_t cap,
    size_t *len, om_info_t *info);
/* n GETs pipelined on the connection; rcs[i] is each one's result (0 or
 * negative) and objs[i] is filled where rcs[i] == 0. Returns 0, or a
 * negative code if the connection itself failed. */
int om_client_get_batch(om_client_t *c, unsigned n, const char *const *uris, int mode,
    unsigned flags, om_object_t *objs, int *rcs);

/* PUT from a buffer. opts may be NULL; info (may be NULL) gets the stored
 * object's fields. */
int om_client_put(om_client_t *c, const char *uri, const void *data, size_t len,
    const om_put_opts_t *opts, om_info_t *info);
/* PUT from a descriptor: bytes [0, len) of fd, copied by the daemon in the
 * kernel. fd stays the caller's. */
int om_client_put_fd(om_client_t *c, const char *uri, int fd, uint64_t len,
    const om_put_opts_t *opts, om_info_t *info);
/*
 * PUT of bytes that arrive later (a body being received, of known size):
 * om_client_put_begin sends the request for an object of len bytes,
 * om_client_put_write sends the next bytes, in order, and om_client_put_end
 * (after exactly len bytes) waits for the answer. The daemon writes the
 * bytes into an unpublished object as they arrive and publishes it only
 * when the last one is there: om_client_put_abort, a failure, or closing
 * the handle before that drops the connection, and nothing is stored.
 * Between begin and end or abort the handle makes no other request (they
 * fail with -OM_EINVAL). Not over UDP; never repeated after a lost
 * connection (the bytes are gone).
 */
int om_client_put_begin(om_client_t *c, const char *uri, uint64_t len, const om_put_opts_t *opts);
int om_client_put_write(om_client_t *c, const void *data, size_t len);
int om_client_put_end(om_client_t *c, om_info_t *info);
void om_client_put_abort(om_client_t *c);
int om_client_delete(om_client_t *c, const char *uri);
/* STAT; with OM_GET_WANT_META also the metadata (*meta malloc'd, may be NULL). */
int om_client_stat(om_client_t *c, const char *uri, unsigned flags, om_info_t *info,
    void **meta, uint32_t *meta_len);
/* STATS: *text (malloc'd, NUL-terminated) holds "name value\n" lines
 * (a name may carry labels: name{op="get",status="ok"}). */
int om_client_stats(om_client_t *c, char **text);
/* STATS with flags: OM_STATS_PROMETHEUS for the Prometheus text format. */
int om_client_stats_ex(om_client_t *c, unsigned flags, char **text);
int om_client_ping(om_client_t *c);
/* VERIFY (a writer's request): with a URI, the daemon's cache manager
 * reads the object again at its next turn and quarantines it if its bytes
 * do not match their checksum (info, may be NULL, gets what was queued);
 * with uri NULL, a scrub pass over the whole store starts. Answered at
 * once: the check itself is not waited for. */
int om_client_verify(om_client_t *c, const char *uri, om_info_t *info);

/*
 * Listing and purging by URI prefix. An entry of a listing: the URI (NUL-
 * terminated, uri_len bytes; valid during the callback only) and the
 * object's fields: id, size, expires, crc, and tier, the tier of its
 * primary (OM_TIER_MEMORY for an ephemeral object); mtime is 0. copy is 1
 * for a persistent object with a copy in the memory tier.
 */
typedef struct {
	const char *uri;
	size_t uri_len;
	om_info_t info;
	int copy;
} om_entry_t;
/* Called for each entry; a non-zero return stops the listing, and the
 * call that made it returns that value. */
typedef int (*om_list_fn)(void *arg, const om_entry_t *e);
/*
 * LIST: fn for every object whose URI begins with prefix (NULL or "":
 * every object), page after page, in no particular order. An object that
 * exists throughout the listing (also if it is replaced meanwhile) is
 * listed exactly once; one stored or deleted meanwhile at most once.
 * Expired objects are not listed. A reload of the daemon is followed; a
 * restart that rebuilt the daemon's index ends the listing with
 * -OM_STATUS_BAD_REQUEST (start again).
 */
int om_client_list(om_client_t *c, const char *prefix, om_list_fn fn, void *arg);
/* One page of it: from *cursor (0 to begin); *cursor gets the next
 * page's, 0 after the last page. A page may have no entries and still not
 * be the last. */
int om_client_list_page(om_client_t *c, const char *prefix, uint64_t *cursor, om_list_fn fn,
    void *arg);
/*
 * PURGE (a writer's request): deletes every object whose URI begins with
 * prefix (at least 1 byte), in steps of a bounded size; *count (may be
 * NULL) gets how many were deleted, also when it fails part way. Objects
 * stored under the prefix while it runs may or may not be deleted.
 */
int om_client_purge(om_client_t *c, const char *prefix, uint64_t *count);

/*
 * The non-blocking API, for event loops: the protocol without any I/O
 * that could block and without hidden threads. The blocking calls above
 * are built on it. libobjmapper(3), "NON-BLOCKING API", has an example.
 *
 * Requests are encoded into the caller's buffer (om_request_encode); the
 * caller sends them (a PUT's bytes, or its descriptor with the first byte,
 * follow). What the daemon sends is fed to a decoder, by om_decoder_recv
 * (one recvmsg with MSG_DONTWAIT on the caller's socket) or by
 * om_decoder_feed (bytes and descriptors the caller received), and
 * om_decoder_next yields the complete responses, in order. The caller
 * waits for its socket to be readable while it has requests in flight.
 */
typedef struct {
	int op;                /* OM_OP_HELLO, GET, PUT, DELETE, STAT, STATS, PING, VERIFY,
	                        * LIST, PURGE */
	uint32_t id;           /* any; comes back in the response */
	const char *uri;       /* GET, PUT, DELETE, STAT, VERIFY; LIST, PURGE: the prefix
	                        * (LIST: NULL or "" for every object); NULL otherwise */
	unsigned flags;        /* GET: mode | OM_GET_*; STAT: OM_GET_WANT_META; STATS:
	                        * OM_STATS_PROMETHEUS; PUT: OM_PUT_EPHEMERAL | OM_PUT_FD;
	                        * HELLO: OM_HELLO_OFFSET_READS */
	uint64_t body_len;     /* PUT: the object's size (its bytes follow the request) */
	const void *meta;      /* PUT: metadata, meta_len bytes */
	uint32_t meta_len;
	union {
		int64_t expires;   /* PUT: unix seconds, 0 = never */
		uint64_t cursor;   /* LIST, PURGE: 0 to begin, else what the last answer gave */
	};
} om_request_t;

/* Bytes a request takes at most besides its URI and metadata. */
#define OM_REQUEST_OVERHEAD 64u

/* Writes the request (header, URI, metadata; HELLO: the client's name)
 * into buf. Returns its length, -OM_ERANGE if cap is too small (never
 * with cap >= OM_REQUEST_OVERHEAD + URI + metadata), or -OM_EINVAL (bad
 * op, URI, GET, PUT or HELLO flags, metadata; other flags are the
 * daemon's to judge). */
int om_request_encode(const om_request_t *rq, void *buf, size_t cap);

/* A response. The caller owns fd, data and meta: om_response_free. */
typedef struct {
	int op;                /* the request's op, or OM_OP_GOAWAY */
	uint32_t id;           /* the request's id (GOAWAY: the last request accepted) */
	int rc;                /* 0, -OM_STATUS_* (the daemon's status; msg says why),
	                        * or -OM_ENOMEM (no memory for the inline body: dropped) */
	int body;              /* OM_BODY_NONE, OM_BODY_INLINE or OM_BODY_DESCRIPTOR */
	int fd;                /* OM_BODY_DESCRIPTOR: the object's descriptor, else -1 */
	void *data;            /* OM_BODY_INLINE: the bytes (malloc'd), else NULL */
	uint64_t len;          /* bytes in data; with fd, STAT and PUT: the object's size */
	void *meta;            /* metadata (malloc'd) or NULL */
	uint32_t meta_len;
	om_info_t info;        /* the object's fields (GET, STAT, PUT) */
	char msg[OM_PROTO_MSG_MAX + 1]; /* the daemon's message, NUL-terminated ("" if none) */
} om_response_t;

/* Closes fd, frees data and meta. */
void om_response_free(om_response_t *r);
/* Hands over the response's descriptor (-1 if none) and clears it. */
int om_response_take_fd(om_response_t *r);
/* The capabilities a HELLO response carries: 0 or -OM_EPROTO. */
int om_response_caps(const om_response_t *r, om_caps_t *caps);
/* A LIST response's page: fn for each entry (or fn's non-zero value),
 * *cursor the next page's (0: the last); 0, or -OM_EPROTO for a body
 * that is not a page (r->rc != 0: that). */
int om_response_list(const om_response_t *r, uint64_t *cursor, om_list_fn fn, void *arg);
/* A PURGE response's step: *cursor the next step's (0: done), *count the
 * objects it deleted; 0, or -OM_EPROTO (r->rc != 0: that). */
int om_response_purge(const om_response_t *r, uint64_t *cursor, uint64_t *count);

typedef struct om_decoder om_decoder_t;

int om_decoder_new(om_decoder_t **out);
/* Frees it and closes the descriptors it holds. */
void om_decoder_free(om_decoder_t *d);
/* Forgets everything (for a new connection); closes held descriptors. */
void om_decoder_reset(om_decoder_t *d);
/* One recvmsg(MSG_DONTWAIT | MSG_CMSG_CLOEXEC) on fd into the decoder,
 * descriptors included (large inline bodies are received in place).
 * Returns the bytes received (> 0), 0 at the end of the stream,
 * -OM_EAGAIN if nothing is there yet, -OM_EIO (om_decoder_message says
 * why) or -OM_EPROTO (descriptors lost: MSG_CTRUNC). */
int om_decoder_recv(om_decoder_t *d, int fd);
/* Feeds bytes the caller received, and the descriptors that came with
 * them (the decoder takes them over, also on failure). 0 or -OM_ENOMEM,
 * -OM_EPROTO (too many descriptors). */
int om_decoder_feed(om_decoder_t *d, const void *bytes, size_t n, const int *fds, unsigned nfds);
/* The next complete response: 1 and *r filled (the caller's to free), 0
 * if more bytes are needed, or -OM_EPROTO: the stream broke the protocol
 * (om_decoder_message says how; a stream that does not begin as the
 * protocol's is named "not an objmapper socket"), and the connection must
 * be closed. */
int om_decoder_next(om_decoder_t *d, om_response_t *r);
/* Bytes still needed to complete the response being received (at least
 * 1), for a caller that wants to size its reads. */
uint64_t om_decoder_need(const om_decoder_t *d);
/* Bytes the decoder has received in all since it was made or reset. */
uint64_t om_decoder_received(const om_decoder_t *d);
/* What went wrong last, in a sentence. */
const char *om_decoder_message(const om_decoder_t *d);

#ifdef __cplusplus
}
#endif

#endif
