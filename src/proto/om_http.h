/*
 * HTTP/1.1 message syntax for the http listeners (RFC 9110, 9112): the
 * request head, chunked bodies, dates, byte ranges and entity tags. Pure
 * functions over buffers: no I/O, no allocation; every input is
 * untrusted.
 */
#ifndef OM_HTTP_H
#define OM_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define OM_HTTP_MAX_HEADERS 100 /* header fields in one request */

enum om_http_method {
	OM_HTTP_OTHER = 0, /* a valid token we do not serve: 405 */
	OM_HTTP_GET,
	OM_HTTP_HEAD,
	OM_HTTP_PUT,
	OM_HTTP_DELETE,
};

typedef struct {
	const char *p;
	size_t n;
} om_http_str_t;

/* A list field sent in several fields is one list (RFC 9110 5.3): the
 * values of up to OM_HTTP_LIST_FIELDS of them (more: 431). */
#define OM_HTTP_LIST_FIELDS 16
typedef struct {
	om_http_str_t v[OM_HTTP_LIST_FIELDS];
	unsigned n;
} om_http_list_t;

typedef struct {
	enum om_http_method method;
	om_http_str_t method_name;
	om_http_str_t target;     /* the request-target as sent */
	om_http_str_t path;       /* origin-form (absolute-form: from its path on) */
	bool path_slash;          /* absolute-form without a path: the path is "/"
	                           * followed by path (empty, or ?query) */
	unsigned minor;           /* HTTP/1.minor */
	size_t head_len;          /* bytes of the head, blank line included */
	size_t skipped;           /* empty lines before the request line */
	bool has_length;
	uint64_t content_length;
	bool chunked;
	bool close;               /* the connection closes after the response */
	bool asked_close;         /* Connection: close */
	bool keep_alive;          /* Connection: keep-alive (what makes HTTP/1.0 persist) */
	bool expect_continue;
	unsigned nfields;
	om_http_str_t host, range, if_range, if_modified_since, if_unmodified_since;
	om_http_list_t if_none_match, if_match;
	/* A PUT's only (what its object keeps); not read for other methods. */
	om_http_str_t content_type, cache_control, expires, content_encoding,
	    content_language, content_disposition;
} om_http_req_t;

/*
 * Parses the head of the request at buf[0, len). Returns the head's length
 * (> 0) when it is complete, 0 if more bytes are needed (and the head may
 * still fit max_head), or a negative HTTP status: -400 (malformed; *why
 * says how), -414 (a request line over max_head bytes, its target begun),
 * -431 (head over max_head bytes or too many fields), -501 (a transfer
 * coding other than chunked), -505 (not HTTP/1.x).
 */
int om_http_parse_head(const char *buf, size_t len, size_t max_head, om_http_req_t *r,
    const char **why);

/* Chunked transfer coding, decoded incrementally. */
typedef struct {
	int state;
	uint64_t left;     /* bytes of the current chunk still to come */
	unsigned digits;
	unsigned line;     /* bytes of the current size, extension or trailer line */
	bool in_ext;
	bool trailer_blank;
} om_http_chunked_t;

/*
 * Feeds in[0, n) to the decoder. Returns the bytes consumed (<= n), or -1
 * if the coding is malformed (*why says how). Chunk data found in those
 * bytes is given as *data, *data_len (at most one run per call: call again
 * with the rest); *done is set once the last chunk and the trailer
 * section have been read (the bytes after them are not consumed).
 */
long om_http_chunked_feed(om_http_chunked_t *d, const char *in, size_t n, const char **data,
    size_t *data_len, bool *done, const char **why);

/* IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"): 29 characters and a NUL. */
#define OM_HTTP_DATE_LEN 30
void om_http_date_format(int64_t t, char out[OM_HTTP_DATE_LEN]);
/* IMF-fixdate, RFC 850 or asctime; 0 or -1 (not a date). */
int om_http_date_parse(const char *s, size_t n, int64_t *t);

/*
 * A Range header against an object of size bytes: 1 with [*first, *last]
 * for a single satisfiable byte range, 0 to ignore it (not bytes=, several
 * ranges, or malformed: the whole object is served), -1 if unsatisfiable
 * (416).
 */
int om_http_range(const char *s, size_t n, uint64_t size, uint64_t *first, uint64_t *last);

/* Whether an If-None-Match list matches etag (weak comparison; "*"
 * matches any). etag is the quoted tag, e.g. "\"1f\"". */
bool om_http_etag_match(const char *list, size_t n, const char *etag);
/* The same over a list sent in several fields; with strong, the strong
 * comparison of If-Match (a weak tag W/"..." matches nothing). */
bool om_http_etag_match_list(const om_http_list_t *l, const char *etag, bool strong);

/* Cache-Control max-age (s-maxage wins) in seconds, or -1 if absent. */
int64_t om_http_max_age(const char *s, size_t n);

/* Whether meta[0, n) is a block of header lines "Name: value" that may be
 * sent (a token, a colon, visible characters; lines ended by CRLF or LF,
 * the last one perhaps by nothing). Objects stored over HTTP keep selected
 * headers so, each line ended by CRLF. */
bool om_http_meta_is_headers(const char *meta, size_t n);

const char *om_http_reason(int status);

#endif
