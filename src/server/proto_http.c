/*
 * HTTP/1.1 on a listener of type http: GET and HEAD (with conditional and
 * single-range requests), PUT (Content-Length or chunked) and DELETE over
 * the same store, access rules and limits as the objmapper protocol; or,
 * on a listener with serve = metrics, the statistics at /metrics only.
 * Responses are queued like the binary protocol's (conn.c sends them in
 * order);
 * a body is sent with sendfile(2) from the object's file, through the
 * worker's descriptor cache. Worker processes.
 *
 * Errors that leave the stream's framing in doubt (a malformed head, a
 * body we will not read) are answered with "Connection: close" and the
 * connection is closed once the answer is sent; the others keep it.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "server/object.h"
#include "server/protocols.h"

#define ALLOW       "GET, HEAD, PUT, DELETE"
#define ALLOW_METRICS "GET, HEAD"
#define METRICS_PATH  "/metrics"
/* Bodies up to this are copied behind their head (one writev); larger
 * ones are sendfile'd, which copies once instead of twice. */
#define HTTP_SMALL_BODY (16u * 1024u)
#define HEAD_CAP    1024 /* a response head without the object's metadata */
#define CONTINUE    "HTTP/1.1 100 Continue\r\n\r\n"

/* ---- statistics -------------------------------------------------------- */

static unsigned
op_of(enum om_http_method m)
{
	switch (m) {
	case OM_HTTP_GET:
	case OM_HTTP_HEAD: return OM_OP_GET;
	case OM_HTTP_PUT: return OM_OP_PUT;
	case OM_HTTP_DELETE: return OM_OP_DELETE;
	default: return 0;
	}
}

/* A metrics listener's requests are all STATS. */
static void
count(conn_t *c, enum om_http_method m, int status)
{
	om_srv_stats_sh_t *st = c->w->stats;
	unsigned op = c->ls->metrics ? OM_OP_STATS : op_of(m), s = om_proto_status_of_http(status);
	unsigned k = (unsigned)status / 100 - 1;

	OM_COUNT(st->responses[op][s], 1);
	if (k < 5)
		OM_COUNT(st->http_responses[k], 1);
}

/* ---- response heads ---------------------------------------------------- */

typedef struct {
	out_t *o;
	size_t cap;
	bool overflow;
} head_t;

static const char *
http_date_now(void)
{
	static char buf[OM_HTTP_DATE_LEN];
	static int64_t at = -1;
	int64_t now = om_time_s();

	if (now != at) {
		om_http_date_format(now, buf);
		at = now;
	}
	return buf;
}

__attribute__((format(printf, 2, 3))) static void
add(head_t *h, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (h->o == NULL || h->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf((char *)h->o->data + h->o->len, h->cap - h->o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= h->cap - h->o->len)
		h->overflow = true;
	else
		h->o->len += (size_t)n;
}

/* A head with its status line and the fields every response has; extra is
 * room for more (metadata, a body). */
static head_t
head_begin(conn_t *c, int status, bool close, size_t extra)
{
	head_t h = { NULL, HEAD_CAP + extra, false };

	h.o = conn_out_new(OUT_BUF, h.cap);
	if (h.o == NULL)
		return h;
	h.o->len = 0;
	add(&h, "HTTP/1.1 %d %s\r\nServer: objmapper\r\nDate: %s\r\n", status, om_http_reason(status),
	    http_date_now());
	if (close)
		add(&h, "Connection: close\r\n");
	else if (c->http.http10)
		add(&h, "Connection: keep-alive\r\n");
	return h;
}

/* Queues the head (the last part of its response unless a body follows). */
static bool
head_push(conn_t *c, head_t *h, bool last)
{
	if (h->o == NULL || h->overflow) {
		free(h->o);
		h->o = NULL;
		conn_end(c, "out of memory for a response");
		return false;
	}
	h->o->resp_end = last;
	conn_out_push(c, h->o);
	h->o = NULL;
	return true;
}

/*
 * A response without an object: the status, a short text body saying why
 * (none for HEAD, 204 and 304), and extra fields. With close, the
 * connection closes once it is sent.
 */
__attribute__((format(printf, 6, 7))) static void
reply(conn_t *c, enum om_http_method m, int status, bool close, const char *fields,
    const char *fmt, ...)
{
	char why[400], text[512] = "";
	int n = 0;
	head_t h;
	va_list ap;

	why[0] = '\0';
	if (fmt != NULL) {
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
	}
	if (status >= 400)
		n = snprintf(text, sizeof(text), "%d %s%s%s\n", status, om_http_reason(status),
		    why[0] ? ": " : "", why);
	h = head_begin(c, status, close, sizeof(text) + 64);
	if (fields != NULL)
		add(&h, "%s", fields);
	if (status == 204 || status == 304) {
		add(&h, "\r\n");
	} else if (status >= 400) {
		/* HEAD: the length a GET would have, without the body. */
		add(&h, "Content-Type: text/plain\r\nContent-Length: %d\r\n\r\n%s", n,
		    m == OM_HTTP_HEAD ? "" : text);
	} else {
		add(&h, "Content-Length: 0\r\n\r\n");
	}
	count(c, m, status);
	if (status >= 400 && why[0])
		om_log_debug(0, "http %d to %s on %s: %s", status, c->peer.name, c->ls->name, why);
	if (close) {
		c->http.close = true;
		c->closing = true;
	}
	(void)head_push(c, &h, true);
}

/* ---- GET and HEAD ------------------------------------------------------ */

/*
 * An object's entity tag: its id and the CRC32C of its bytes. The id alone
 * is not enough: ids are unique among the objects that exist, but after a
 * restart the next id is the highest one found + 1, so the id of an object
 * deleted before the restart can come back for other bytes; the CRC tells
 * those apart (and Last-Modified, from the record, too).
 */
static void
http_etag(char *buf, size_t n, const om_ix_obj_t *o)
{
	snprintf(buf, n, "\"%" PRIx64 "-%08" PRIx32 "\"", o->id, o->crc);
}

/* Fields of the object's metadata that may not be sent as they are: they
 * frame the message or are the server's own. */
static bool
reserved_field(const char *name, size_t n)
{
	static const char *const names[] = { "content-length", "transfer-encoding", "connection",
		"keep-alive", "upgrade", "trailer", "te", "date", "server", "etag", "last-modified",
		"accept-ranges", "content-range", "proxy-connection" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
			return true;
	return false;
}

/* Appends the metadata's header lines (each ended by CRLF or LF, the
 * last one perhaps by nothing) with CRLF; tells which of Content-Type,
 * Expires and Cache-Control it had. */
static void
add_meta(head_t *h, const char *meta, size_t n, bool *has_type, bool *has_freshness)
{
	size_t i = 0;

	*has_type = *has_freshness = false;
	if (!om_http_meta_is_headers(meta, n))
		return;
	while (i < n) {
		const char *colon = memchr(meta + i, ':', n - i);
		const char *nl = memchr(meta + i, '\n', n - i);
		size_t name = (size_t)(colon - (meta + i));
		size_t end = nl != NULL ? (size_t)(nl - meta) : n, len = end - i;

		if (len > 0 && meta[i + len - 1] == '\r')
			len--;
		if (!reserved_field(meta + i, name)) {
			if (name == 12 && strncasecmp(meta + i, "content-type", 12) == 0)
				*has_type = true;
			if ((name == 7 && strncasecmp(meta + i, "expires", 7) == 0) ||
			    (name == 13 && strncasecmp(meta + i, "cache-control", 13) == 0))
				*has_freshness = true;
			add(h, "%.*s\r\n", (int)len, meta + i);
		}
		i = end + 1;
	}
}

/* If-Range: the range applies only to the representation it names. */
static bool
if_range_holds(const om_http_req_t *r, const char *etag, int64_t mtime)
{
	int64_t t;

	if (r->if_range.p == NULL)
		return true;
	if (r->if_range.n > 0 && r->if_range.p[0] == '"')
		return r->if_range.n == strlen(etag) && memcmp(r->if_range.p, etag, r->if_range.n) == 0;
	return om_http_date_parse(r->if_range.p, r->if_range.n, &t) == 0 && t == mtime;
}

/* Whether the request has a precondition on the object's state (If-Match,
 * If-None-Match, If-Unmodified-Since). */
static bool
has_preconditions(const om_http_req_t *r)
{
	return r->if_match.n > 0 || r->if_none_match.n > 0 || r->if_unmodified_since.p != NULL;
}

/*
 * The preconditions of RFC 9110 13.2.2 (steps 1 to 4) against the
 * object's current version (exists, with etag and mtime) or its absence:
 * 0 to go on, 412 if one is false, 304 for a GET or HEAD whose
 * If-None-Match (else If-Modified-Since) says the client has it. *bound
 * says whether the outcome rested on that version (or absence): then a
 * write must happen only while it is still the current one. An invalid
 * date is ignored, as are If-Unmodified-Since with If-Match and both
 * dates without an object.
 */
static int
preconditions(const om_http_req_t *r, bool exists, const char *etag, int64_t mtime, bool *bound)
{
	bool get = r->method == OM_HTTP_GET || r->method == OM_HTTP_HEAD;
	int64_t t;

	*bound = false;
	if (r->if_match.n > 0) {
		*bound = true;
		if (!exists || !om_http_etag_match_list(&r->if_match, etag, true))
			return 412;
	} else if (exists && r->if_unmodified_since.p != NULL &&
	    om_http_date_parse(r->if_unmodified_since.p, r->if_unmodified_since.n, &t) == 0) {
		*bound = true;
		if (mtime > t)
			return 412;
	}
	if (r->if_none_match.n > 0) {
		*bound = true;
		if (exists && om_http_etag_match_list(&r->if_none_match, etag, false))
			return get ? 304 : 412;
	} else if (get && exists && r->if_modified_since.p != NULL &&
	    om_http_date_parse(r->if_modified_since.p, r->if_modified_since.n, &t) == 0 && mtime <= t) {
		return 304;
	}
	return 0;
}

/*
 * What a GET of the object answers (RFC 9110 13.2.2): 412 or 304 as the
 * preconditions say, 206 for a range that applies and fits ([*first,
 * *last]), 416 for one that does not fit, else 200 (the whole object in
 * [*first, *last]).
 */
static int
get_status(const om_http_req_t *r, const char *etag, int64_t mtime, uint64_t size, uint64_t *first,
    uint64_t *last)
{
	bool bound;
	int rng = 0, pre;

	*first = *last = 0;
	if ((pre = preconditions(r, true, etag, mtime, &bound)) != 0)
		return pre;
	if (r->range.p != NULL && if_range_holds(r, etag, mtime))
		rng = om_http_range(r->range.p, r->range.n, size, first, last);
	if (rng < 0)
		return 416;
	if (rng > 0)
		return 206;
	*last = size ? size - 1 : 0;
	return 200;
}

static void
do_get(conn_t *c, const om_http_req_t *r, bool bye)
{
	om_obj_want_t want = { .sflags = r->method == OM_HTTP_HEAD ? OM_GET_NOTOUCH : 0, .meta = true,
		.private_over = UINT64_MAX };
	bool head = r->method == OM_HTTP_HEAD, has_type, has_fresh, small;
	uint8_t meta[OM_PROTO_META_MAX];
	uint64_t first, last, len;
	char etag[48], lm[OM_HTTP_DATE_LEN], ub[96];
	int status, rc;
	om_obj_t ob;
	head_t h;

	/* The worker reads the bytes itself (sendfile): the cache's descriptor. */
	if ((rc = om_obj_get(&c->w->fdc, c->w->srv->st, r->path.p, r->path.n, &want, &ob, meta,
	    sizeof(meta))) != 0) {
		if (rc == -ENOENT && !ob.bad_record)
			reply(c, r->method, 404, bye, NULL, "no such object: %s",
			    om_obj_uri_shown(r->path.p, r->path.n, ub, sizeof(ub)));
		else
			reply(c, r->method, 500, bye, NULL, "cannot %s: %s", ob.bad_record ?
			    "read the object's record" : "open the object", om_strerror(rc));
		return;
	}
	http_etag(etag, sizeof(etag), &ob.obj);
	om_http_date_format(ob.mtime, lm);
	status = get_status(r, etag, ob.mtime, ob.obj.size, &first, &last);
	if (status == 412) {
		reply(c, r->method, 412, bye, NULL, "the object's current version does not meet the "
		    "request's precondition");
		goto drop;
	}
	if (status == 416) {
		char f[64];

		snprintf(f, sizeof(f), "Content-Range: bytes */%" PRIu64 "\r\n", ob.obj.size);
		reply(c, r->method, 416, bye, f, "the range is outside the object's %" PRIu64 " bytes",
		    ob.obj.size);
		goto drop;
	}
	len = ob.obj.size ? last - first + 1 : 0;

	/* A small body goes in the head's buffer: one writev for the
	 * response instead of a writev and a sendfile. */
	small = !head && status != 304 && len > 0 && len <= HTTP_SMALL_BODY;
	h = head_begin(c, status, bye, ob.meta_len + 2 * ob.meta_len / 16 + (small ? len : 0));
	add(&h, "ETag: %s\r\nLast-Modified: %s\r\n", etag, lm);
	add_meta(&h, (const char *)meta, ob.meta_len, &has_type, &has_fresh);
	if (!has_fresh && ob.obj.expires > 0) {
		char ex[OM_HTTP_DATE_LEN];

		om_http_date_format(ob.obj.expires, ex);
		add(&h, "Expires: %s\r\n", ex);
	}
	if (status == 304) {
		add(&h, "\r\n");
		count(c, r->method, 304);
		(void)head_push(c, &h, true);
		goto drop;
	}
	if (!has_type)
		add(&h, "Content-Type: application/octet-stream\r\n");
	add(&h, "Accept-Ranges: bytes\r\n");
	if (status == 206)
		add(&h, "Content-Range: bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64 "\r\n", first, last,
		    ob.obj.size);
	add(&h, "Content-Length: %" PRIu64 "\r\n\r\n", len);
	count(c, r->method, status);
	if (head || len == 0) {
		(void)head_push(c, &h, true);
		goto drop;
	}
	if (small && h.o != NULL && !h.overflow && h.cap - h.o->len >= len &&
	    om_obj_read(&c->w->fdc, &ob, first, h.o->data + h.o->len, (size_t)len) == (ssize_t)len) {
		h.o->len += (size_t)len;
		(void)head_push(c, &h, true);
		goto drop;
	}
	/* (A file cut short behind the daemon's back: sendfile says so.) */
	if (!head_push(c, &h, false))
		goto drop;
	{
		out_t *f = conn_out_new(OUT_SPLICE, 0);

		if (f == NULL) {
			conn_end(c, "out of memory");
			goto drop;
		}
		f->ref = om_fdref_take(&ob.ref);
		f->off = ob.base + first;
		f->len = len;
		f->resp_end = true;
		conn_out_push(c, f);
	}
drop:
	om_obj_put(&ob);
}

/* ---- preconditions of PUT and DELETE ------------------------------------ */

/*
 * The object a PUT's or DELETE's preconditions are evaluated on: 1 with
 * its record, ETag and mtime (read only where If-Unmodified-Since needs
 * it), 0 if there is none (or it expired), or -errno. Not counted as a
 * read.
 */
static int
current(conn_t *c, const om_http_req_t *r, om_ix_obj_t *o, char *etag, size_t n, int64_t *mtime)
{
	om_store_t *st = c->w->srv->st;
	int rc;

	*mtime = 0;
	if (r->if_match.n > 0 || r->if_unmodified_since.p == NULL) {
		if ((rc = om_store_stat(st, r->path.p, r->path.n, o)) != 0)
			return rc == -ENOENT ? 0 : rc;
	} else {
		om_obj_want_t want = { .sflags = OM_GET_NOTOUCH | OM_GET_NOCOUNT, .meta = true,
			.private_over = UINT64_MAX };
		uint8_t meta[OM_PROTO_META_MAX];
		om_obj_t ob;

		if ((rc = om_obj_get(&c->w->fdc, st, r->path.p, r->path.n, &want, &ob, meta,
		    sizeof(meta))) != 0)
			return rc == -ENOENT && !ob.bad_record ? 0 : rc;
		*o = ob.obj;
		*mtime = ob.mtime;
		om_obj_put(&ob);
	}
	http_etag(etag, n, o);
	return 1;
}

/* ---- PUT --------------------------------------------------------------- */

/* The store's own sentence for its refusals ("index full: capacity 8"). */
static const char *
store_msg(const conn_t *c, int rc)
{
	const char *why = om_store_why(c->w->srv->st);

	return why[0] ? why : om_strerror(rc);
}

/* The request's fields an object keeps, as header lines. */
static int
put_meta(const om_http_req_t *r, char *out, size_t cap, size_t *len)
{
	const struct {
		const char *name;
		om_http_str_t v;
	} keep[] = {
		{ "Content-Type", r->content_type },
		{ "Cache-Control", r->cache_control },
		{ "Expires", r->expires },
		{ "Content-Encoding", r->content_encoding },
		{ "Content-Language", r->content_language },
		{ "Content-Disposition", r->content_disposition },
	};
	size_t n = 0;

	for (size_t i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		int k;

		if (keep[i].v.p == NULL)
			continue;
		k = snprintf(out + n, cap - n, "%s: %.*s\r\n", keep[i].name, (int)keep[i].v.n, keep[i].v.p);
		if (k < 0 || (size_t)k >= cap - n)
			return -1;
		n += (size_t)k;
	}
	*len = n;
	return 0;
}

/* Expiry from Cache-Control (max-age, s-maxage), else Expires; 0 none. */
static int64_t
put_expires(const om_http_req_t *r)
{
	int64_t now = om_time_s(), age, t;

	if (r->cache_control.p != NULL && (age = om_http_max_age(r->cache_control.p, r->cache_control.n)) >= 0)
		return now + (age > 0 ? age : 0) + (age == 0);
	if (r->expires.p != NULL && om_http_date_parse(r->expires.p, r->expires.n, &t) == 0)
		return t > 0 ? t : 1;
	return 0;
}

/* A failed PUT's status and message; one the server cannot explain by
 * the request is logged (and says if the tier's directory was deleted). */
static int
put_error(conn_t *c, int rc, char *why, size_t n)
{
	uint16_t status = om_obj_put_error(c->w->srv->st, rc, OM_TIER_DISK, why, n);

	return status == OM_STATUS_INTERNAL ? 500 : om_proto_http_status_of(rc);
}

static void
put_finish(conn_t *c)
{
	om_ix_obj_t obj;
	int rc = om_store_put_commit(c->txn, &obj);
	char f[80];

	c->txn = NULL;
	c->state = ST_HEADER;
	c->frames++;
	if (rc == -ECANCELED) {
		/* The version the preconditions held on was replaced or
		 * deleted (or the URI taken) while the body arrived. */
		reply(c, OM_HTTP_PUT, 412, c->http.close, NULL, "%s", store_msg(c, rc));
		return;
	}
	if (rc != 0) {
		char why[300];
		int status = put_error(c, rc, why, sizeof(why));

		reply(c, OM_HTTP_PUT, status, c->http.close, NULL, "%s", why);
		return;
	}
	{
		char etag[48];

		http_etag(etag, sizeof(etag), &obj);
		snprintf(f, sizeof(f), "ETag: %s\r\n", etag);
	}
	reply(c, OM_HTTP_PUT, c->http.existed ? 204 : 201, c->http.close, f, NULL);
}

static void
put_fail(conn_t *c, int status, const char *why)
{
	om_store_put_abort(c->txn);
	c->txn = NULL;
	c->state = ST_HEADER;
	/* The rest of the body is not read: the connection ends. */
	reply(c, OM_HTTP_PUT, status, true, NULL, "%s", why);
}

static void
do_put(conn_t *c, const om_http_req_t *r, bool bye)
{
	om_store_t *st = c->w->srv->st;
	uint64_t max = c->ls->max_object;
	bool body = r->chunked || r->content_length > 0;
	char meta[OM_PROTO_META_MAX];
	om_put_args_t a = { 0 };
	size_t meta_len = 0;
	bool bound = false;
	om_ix_obj_t cur;
	int rc, exists = 0;

	if (!r->has_length && !r->chunked) {
		reply(c, r->method, 411, bye, NULL, "a PUT needs Content-Length or a chunked body");
		return;
	}
	if (r->has_length && max && r->content_length > max) {
		reply(c, r->method, 413, true, NULL, "object of %" PRIu64 " bytes (at most %" PRIu64 ")",
		    r->content_length, max);
		return;
	}
	if (put_meta(r, meta, sizeof(meta), &meta_len) != 0 || meta_len > c->w->srv->conf->cache.max_metadata) {
		reply(c, r->method, 400, body || bye, NULL,
		    "the fields kept with the object exceed max_metadata (%u bytes)",
		    c->w->srv->conf->cache.max_metadata);
		return;
	}
	a.meta = meta;
	a.meta_len = (uint16_t)meta_len;
	a.expires = put_expires(r);
	if (r->chunked) {
		a.size = max ? max : UINT64_MAX;
		a.flags = OM_STORE_SIZE_OPEN;
	} else {
		a.size = r->content_length;
	}
	if (has_preconditions(r)) {
		char etag[48];
		int64_t mtime;

		if ((exists = current(c, r, &cur, etag, sizeof(etag), &mtime)) < 0) {
			reply(c, r->method, 500, body || bye, NULL, "cannot read the object's record: %s",
			    om_strerror(exists));
			return;
		}
		if (preconditions(r, exists, etag, mtime, &bound) != 0) {
			/* The body is not read, as for the other refusals. */
			reply(c, r->method, 412, body || bye, NULL, "%s", exists ?
			    "the object's current version does not meet the request's precondition" :
			    "no object: If-Match needs one");
			return;
		}
		c->http.existed = exists;
	} else {
		c->http.existed = om_store_stat(st, r->path.p, r->path.n, NULL) == 0;
	}
	if ((rc = om_store_put_begin(st, r->path.p, r->path.n, &a, &c->txn)) != 0) {
		char why[300];
		int status = put_error(c, rc, why, sizeof(why));

		c->txn = NULL;
		reply(c, r->method, status, body || bye, NULL, "%s", why);
		return;
	}
	/* What the preconditions held on must still be there when the object
	 * is published: the store checks it in the same step. */
	if (bound)
		(void)om_store_put_cond(c->txn, exists ? OM_STORE_IF_ID : OM_STORE_IF_NONE,
		    exists ? cur.id : 0);
	c->http.close = bye;
	if (r->expect_continue && body) {
		out_t *o = conn_out_new(OUT_BUF, sizeof(CONTINUE) - 1);

		if (o == NULL) {
			put_fail(c, 503, "out of memory");
			return;
		}
		memcpy(o->data, CONTINUE, sizeof(CONTINUE) - 1);
		conn_out_push(c, o);
	}
	if (r->chunked) {
		memset(&c->http.ch, 0, sizeof(c->http.ch));
		c->left = 0;
		c->state = ST_HTTP_CHUNKED;
	} else if (r->content_length > 0) {
		c->left = r->content_length;
		c->state = ST_HTTP_BODY;
	} else {
		put_finish(c);
	}
}

/* Body bytes in the buffer to the transaction. Returns false to wait. */
static bool
put_body(conn_t *c)
{
	size_t have;

	if (c->state == ST_HTTP_BODY) {
		int rc;

		if (conn_body_have(c) == 0)
			return false;
		if ((rc = conn_body_write(c)) != 0) {
			char why[300];
			int status = put_error(c, rc, why, sizeof(why));

			put_fail(c, status, why);
			return true;
		}
		if (c->left == 0)
			put_finish(c);
		return true;
	}
	/* Chunked. */
	for (;;) {
		const char *data, *why = "";
		size_t dlen;
		bool done;
		long k;
		int rc;

		have = c->in_len - c->in_off;
		if (have == 0)
			return false;
		k = om_http_chunked_feed(&c->http.ch, (const char *)c->in + c->in_off, have, &data, &dlen,
		    &done, &why);
		if (k < 0) {
			put_fail(c, 400, why);
			return true;
		}
		if (dlen > 0 && (rc = om_store_put_write(c->txn, data, dlen)) != 0) {
			char msg[300];

			if (rc == -EFBIG) {
				put_fail(c, 413, "the chunked body exceeds the object size limit");
			} else {
				int status = put_error(c, rc, msg, sizeof(msg));

				put_fail(c, status, msg);
			}
			return true;
		}
		conn_consume(c, (size_t)k);
		c->left += dlen; /* received: request_timeout grows with it */
		if (done) {
			put_finish(c);
			return true;
		}
		if (k == 0)
			return false;
	}
}

/* ---- requests ---------------------------------------------------------- */

/*
 * A DELETE with preconditions: evaluated on the current version, which is
 * then deleted only if it is still the current one (else they are
 * evaluated again on the one that replaced it).
 */
static void
delete_if(conn_t *c, const om_http_req_t *r, bool bye)
{
	char ub[96], etag[48];

	for (int tries = 0; tries < 8; tries++) {
		om_ix_obj_t o;
		int64_t mtime;
		bool bound;
		int rc, exists = current(c, r, &o, etag, sizeof(etag), &mtime);

		if (exists < 0) {
			reply(c, r->method, 500, bye, NULL, "cannot read the object's record: %s",
			    om_strerror(exists));
			return;
		}
		if (preconditions(r, exists, etag, mtime, &bound) != 0) {
			reply(c, r->method, 412, bye, NULL, "%s", exists ? "the object's current version "
			    "does not meet the request's precondition" : "no object: If-Match needs one");
			return;
		}
		if (!exists) {
			reply(c, r->method, 404, bye, NULL, "no such object: %s",
			    om_obj_uri_shown(r->path.p, r->path.n, ub, sizeof(ub)));
			return;
		}
		if ((rc = om_store_delete_version(c->w->srv->st, &o)) == -ENOENT)
			continue;
		if (rc != 0)
			reply(c, r->method, om_proto_http_status_of(rc), bye, NULL, "cannot delete: %s",
			    store_msg(c, rc));
		else
			reply(c, r->method, 204, bye, NULL, NULL);
		return;
	}
	reply(c, r->method, 412, bye, NULL, "the object kept changing while its preconditions were "
	    "evaluated");
}

static void
do_delete(conn_t *c, const om_http_req_t *r, bool bye)
{
	char ub[96];
	int rc;

	if (has_preconditions(r)) {
		delete_if(c, r, bye);
		return;
	}
	rc = om_store_delete(c->w->srv->st, r->path.p, r->path.n);

	if (rc == -ENOENT)
		reply(c, r->method, 404, bye, NULL, "no such object: %s",
		    om_obj_uri_shown(r->path.p, r->path.n, ub, sizeof(ub)));
	else if (rc != 0)
		reply(c, r->method, om_proto_http_status_of(rc), bye, NULL, "cannot delete: %s", store_msg(c, rc));
	else
		reply(c, r->method, 204, bye, NULL, NULL);
}

/* ---- serve = metrics ---------------------------------------------------- */

/*
 * The statistics in the Prometheus text format, for a scraper's plain GET
 * of /metrics (a query is ignored). The listener serves nothing else, so
 * no object's URI can ever be taken for it; its allow lists govern it as
 * STATS: a reader may.
 */
static void
do_metrics(conn_t *c, const om_http_req_t *r, bool close)
{
	size_t plen = sizeof(METRICS_PATH) - 1, len = 0;
	bool head = r->method == OM_HTTP_HEAD;
	char *text;
	head_t h;

	if (r->method != OM_HTTP_GET && !head) {
		reply(c, r->method, 405, close, "Allow: " ALLOW_METRICS "\r\n", "listener %s serves "
		    "the statistics only: GET " METRICS_PATH, c->ls->name);
		return;
	}
	if (r->path.n < plen || memcmp(r->path.p, METRICS_PATH, plen) != 0 ||
	    (r->path.n > plen && r->path.p[plen] != '?')) {
		reply(c, r->method, 404, close, NULL, "listener %s serves the statistics at "
		    METRICS_PATH " only", c->ls->name);
		return;
	}
	if (c->access < OM_ACCESS_READ) {
		OM_COUNT(c->w->stats->denied, 1);
		reply(c, r->method, 403, close, NULL, "%s may not read on listener %s", c->peer.name,
		    c->ls->name);
		return;
	}
	if ((text = om_srv_stats_text(c->w->srv, OM_STATS_PROMETHEUS, &len)) == NULL) {
		reply(c, r->method, 503, close, "Retry-After: 1\r\n", "out of memory");
		return;
	}
	h = head_begin(c, 200, close, head ? 0 : len);
	add(&h, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
	    "Cache-Control: no-store\r\nContent-Length: %zu\r\n\r\n", len);
	if (!head && h.o != NULL && !h.overflow && h.cap - h.o->len >= len) {
		memcpy(h.o->data + h.o->len, text, len);
		h.o->len += len;
	} else if (!head) {
		h.overflow = true;
	}
	free(text);
	count(c, r->method, 200);
	if (close) {
		c->http.close = true;
		c->closing = true;
	}
	(void)head_push(c, &h, true);
}

static void
dispatch(conn_t *c, const om_http_req_t *r)
{
	const om_conf_t *conf = c->w->srv->conf;
	bool body = r->chunked || r->content_length > 0;
	bool close = r->close || c->draining || c->w->draining;
	char root[OM_IX_URI_MAX + 1];
	om_http_req_t with_root;
	enum om_access need;
	const char *bad;

	if (r->path_slash) {
		/* An absolute-form target without a path: "/", then its query. */
		if (r->path.n + 1 > conf->index.max_uri) {
			reply(c, r->method, 414, close || body, NULL,
			    "URI of %zu bytes (at most %u)", r->path.n + 1, conf->index.max_uri);
			return;
		}
		root[0] = '/';
		memcpy(root + 1, r->path.p, r->path.n);
		with_root = *r;
		with_root.path = (om_http_str_t){ root, r->path.n + 1 };
		with_root.path_slash = false;
		r = &with_root;
	}

	if (c->ls->metrics) {
		/* A body is never read here: answered, then the connection ends. */
		do_metrics(c, r, close || body);
		return;
	}
	if (r->method == OM_HTTP_OTHER) {
		reply(c, r->method, 405, close || body, "Allow: " ALLOW "\r\n", "%.*s is not served here",
		    (int)(r->method_name.n < 32 ? r->method_name.n : 32), r->method_name.p);
		return;
	}
	if (r->path.n > conf->index.max_uri) {
		reply(c, r->method, 414, close || body, NULL,
		    "URI of %zu bytes (at most %u)", r->path.n, conf->index.max_uri);
		return;
	}
	if ((bad = om_proto_uri_error(r->path.p, r->path.n, conf->index.max_uri)) != NULL) {
		reply(c, r->method, 400, close || body, NULL, "%s", bad);
		return;
	}
	need = r->method == OM_HTTP_PUT || r->method == OM_HTTP_DELETE ? OM_ACCESS_WRITE : OM_ACCESS_READ;
	if (c->access < need) {
		OM_COUNT(c->w->stats->denied, 1);
		reply(c, r->method, 403, close || body, NULL, "%s may not %s on listener %s", c->peer.name,
		    need == OM_ACCESS_WRITE ? "write" : "read", c->ls->name);
		return;
	}
	if (r->method != OM_HTTP_PUT && body) {
		/* A body where none is expected is not read: answered, then
		 * the connection ends. */
		close = true;
	}
	switch (r->method) {
	case OM_HTTP_GET:
	case OM_HTTP_HEAD: do_get(c, r, close); break;
	case OM_HTTP_PUT: do_put(c, r, close); break;
	case OM_HTTP_DELETE: do_delete(c, r, close); break;
	default: break;
	}
	if (close && c->state == ST_HEADER)
		c->closing = true;
}

static bool
http_ready(const conn_t *c)
{
	om_http_req_t r;
	const char *why;

	if (c->state != ST_HEADER || c->in_len == c->in_off)
		return false;
	return om_http_parse_head((const char *)c->in + c->in_off, c->in_len - c->in_off,
	    c->ls->max_header, &r, &why) != 0;
}

static bool
http_process(conn_t *c)
{
	int budget = RUN_BUDGET;

	if (c->nrfds > 0) {
		/* Descriptors mean nothing here. */
		for (unsigned i = 0; i < c->nrfds; i++)
			close(c->rfds[i]);
		c->nrfds = 0;
		reply(c, OM_HTTP_OTHER, 400, true, NULL, "descriptors are not taken on an HTTP listener");
		return false;
	}
	while (!c->closing && !c->dead) {
		size_t have = c->in_len - c->in_off;
		om_http_req_t r;
		const char *why;
		int rc;

		if (c->state == ST_HTTP_BODY || c->state == ST_HTTP_CHUNKED) {
			if (!put_body(c))
				return false;
			continue;
		}
		if (c->inflight >= c->ls->max_pipeline || c->out_bytes >= c->ls->max_buffer)
			return false;
		if (budget-- == 0)
			return true;
		rc = have ? om_http_parse_head((const char *)c->in + c->in_off, have, c->ls->max_header, &r,
		    &why) : 0;
		if (rc == 0) {
			c->starved = have > 0;
			if (c->draining) {
				/* Nothing more is taken; a request half received gets
				 * no answer (the client sees the connection close
				 * before its response, and may retry). */
				c->goaway_sent = true;
				c->closing = true;
			} else if (c->in_off > 0 && c->in_len == IN_CAP) {
				memmove(c->in, c->in + c->in_off, have);
				c->in_len = have;
				c->in_off = 0;
			}
			return false;
		}
		if (rc < 0) {
			OM_COUNT(c->w->stats->bad_frames, 1);
			if (rc == -431 || r.method_name.p == NULL)
				r.method = OM_HTTP_OTHER;
			reply(c, r.method, -rc, true, NULL, "%s", why);
			return false;
		}
		c->frames++;
		c->http.http10 = r.minor == 0;
		dispatch(c, &r);
		conn_consume(c, (size_t)rc);
	}
	return false;
}

/* A 408 if a request was being received (and nothing is queued). */
static void
http_goodbye(conn_t *c, uint16_t status, const char *why)
{
	(void)why;
	if (status != OM_STATUS_OK && c->out_head == NULL && !c->goaway_sent)
		reply(c, OM_HTTP_OTHER, 408, true, NULL, "the request was not received in time");
	c->goaway_sent = true;
}

/* 503 in one try. */
static void
http_reject(worker_t *w, int fd, const om_listener_t *ls, const char *why)
{
	char buf[512];
	int n;

	(void)ls;
	n = snprintf(buf, sizeof(buf), "HTTP/1.1 503 Service Unavailable\r\nServer: objmapper\r\n"
	    "Date: %s\r\nRetry-After: 1\r\nConnection: close\r\nContent-Type: text/plain\r\n"
	    "Content-Length: %zu\r\n\r\n503 Service Unavailable: %s\n", http_date_now(),
	    strlen("503 Service Unavailable: \n") + strlen(why), why);
	if (n > 0 && (size_t)n < sizeof(buf))
		(void)send(fd, buf, (size_t)n, MSG_DONTWAIT | MSG_NOSIGNAL);
	/* No request was read: op "other", as an objmapper connection's BUSY. */
	OM_COUNT(w->stats->responses[0][OM_STATUS_BUSY], 1);
	OM_COUNT(w->stats->http_responses[4], 1);
}

const conn_proto_t conn_proto_http = {
	.process = http_process,
	.ready = http_ready,
	.goodbye = http_goodbye,
	.reject = http_reject,
	.linger = true,
};
