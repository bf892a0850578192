/*
 * HTTP/1.1 message syntax (om_http.h). Strict where leniency lets two
 * parsers disagree about where a message ends (Content-Length and
 * Transfer-Encoding together, obsolete line folding, whitespace before a
 * colon, a bare CR): those are 400. Lines may end in CRLF or LF alone.
 */
#include <stdio.h>
#include <string.h>

#include "proto/om_http.h"

static bool
is_tchar(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* Field value characters: visible, SP, HTAB and obs-text. */
static bool
is_vchar(unsigned char ch)
{
	return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static bool
ieq(om_http_str_t s, const char *lit)
{
	size_t n = strlen(lit);

	if (s.n != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];

		if (a >= 'A' && a <= 'Z')
			a = (unsigned char)(a + 32);
		if (a != b)
			return false;
	}
	return true;
}

static om_http_str_t
trim(const char *p, size_t n)
{
	while (n > 0 && (*p == ' ' || *p == '\t')) {
		p++;
		n--;
	}
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		n--;
	return (om_http_str_t){ p, n };
}

/* The next line of buf[at, len): its length without the terminator, and
 * where the following line starts; false if not complete. */
static bool
next_line(const char *buf, size_t len, size_t at, size_t *line_len, size_t *next)
{
	const char *nl = memchr(buf + at, '\n', len - at);
	size_t e;

	if (nl == NULL)
		return false;
	e = (size_t)(nl - buf);
	*next = e + 1;
	if (e > at && buf[e - 1] == '\r')
		e--;
	*line_len = e - at;
	return true;
}

/* A comma-separated list holds token tok (case-insensitive). */
static bool
list_has(om_http_str_t v, const char *tok)
{
	size_t i = 0;

	while (i < v.n) {
		size_t j = i;

		while (j < v.n && v.p[j] != ',')
			j++;
		if (ieq(trim(v.p + i, j - i), tok))
			return true;
		i = j + 1;
	}
	return false;
}

static int
parse_u64(om_http_str_t v, uint64_t *out)
{
	uint64_t n = 0;

	if (v.n == 0 || v.n > 19)
		return -1;
	for (size_t i = 0; i < v.n; i++) {
		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		n = n * 10 + (uint64_t)(v.p[i] - '0');
	}
	*out = n;
	return 0;
}

static int
request_line(const char *p, size_t n, om_http_req_t *r, const char **why)
{
	size_t i = 0, m, t;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ' ') {
		*why = "malformed request line (method)";
		return -400;
	}
	r->method_name = (om_http_str_t){ p, i };
	m = i;
	if (m == 3 && memcmp(p, "GET", 3) == 0)
		r->method = OM_HTTP_GET;
	else if (m == 4 && memcmp(p, "HEAD", 4) == 0)
		r->method = OM_HTTP_HEAD;
	else if (m == 3 && memcmp(p, "PUT", 3) == 0)
		r->method = OM_HTTP_PUT;
	else if (m == 6 && memcmp(p, "DELETE", 6) == 0)
		r->method = OM_HTTP_DELETE;
	else
		r->method = OM_HTTP_OTHER;
	t = ++i;
	while (i < n && p[i] != ' ') {
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] == 0x7f) {
			*why = "control character in the request target";
			return -400;
		}
		i++;
	}
	if (i == t || i == n) {
		*why = "malformed request line (target)";
		return -400;
	}
	r->target = (om_http_str_t){ p + t, i - t };
	i++;
	if (n - i != 8 || memcmp(p + i, "HTTP/", 5) != 0 || p[i + 6] != '.' ||
	    p[i + 5] < '0' || p[i + 5] > '9' || p[i + 7] < '0' || p[i + 7] > '9') {
		*why = "malformed request line (version)";
		return -400;
	}
	if (p[i + 5] != '1') {
		*why = "only HTTP/1.0 and HTTP/1.1 are served";
		return -505;
	}
	r->minor = (unsigned)(p[i + 7] - '0');
	/* The path: origin-form as it is; absolute-form from its path on. */
	r->path = r->target;
	if (r->target.p[0] != '/') {
		const char *s = r->target.p;
		size_t k = r->target.n, h;

		if (k == 1 && s[0] == '*') {
			r->path = (om_http_str_t){ NULL, 0 };
			return 0;
		}
		if (k < 8 || !(ieq((om_http_str_t){ s, 7 }, "http://") ||
		    (k >= 9 && ieq((om_http_str_t){ s, 8 }, "https://")))) {
			*why = "the request target is neither a path nor an http URI";
			return -400;
		}
		h = s[4] == ':' ? 7 : 8;
		while (h < k && s[h] != '/' && s[h] != '?')
			h++;
		/* No path (perhaps a query): the path is "/" (RFC 9110 4.2.3). */
		r->path_slash = h == k || s[h] == '?';
		r->path = (om_http_str_t){ s + h, k - h };
	}
	return 0;
}

/*
 * A request line not yet ended, p[0, n): 0 if more bytes can still make
 * it valid, else what the whole line would get, decided at the first byte
 * that cannot belong to one (anything that is not HTTP, such as objmapper
 * frames, is refused at once instead of waiting for a line end that may
 * never come).
 */
static int
request_line_prefix(const char *p, size_t n, const char **why)
{
	static const char version[] = "HTTP/";
	size_t i = 0, t, k;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == n)
		return 0;
	if (i == 0 || p[i] != ' ') {
		*why = "malformed request line (method)";
		return -400;
	}
	t = ++i;
	while (i < n && p[i] != ' ') {
		if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] == 0x7f) {
			*why = p[i] == '\r' ? "a bare CR in the request line" :
			    "control character in the request target";
			return -400;
		}
		i++;
	}
	/* The target: a path, "*", or an absolute http or https URI. */
	if (i > t && p[t] != '/' && !(p[t] == '*' && i - t == 1)) {
		const char *abs = i - t > 4 && (p[t + 4] == 's' || p[t + 4] == 'S') ? "https://" : "http://";

		for (k = 0; k < i - t && abs[k] != '\0'; k++) {
			if ((p[t + k] | 0x20) != abs[k]) {
				*why = "the request target is neither a path nor an http URI";
				return -400;
			}
		}
	}
	if (i == n)
		return 0;
	if (i == t) {
		*why = "malformed request line (target)";
		return -400;
	}
	/* The version, then the line's end. */
	for (k = 0, i++; i < n; i++, k++) {
		char ch = p[i];
		bool ok = k < 5 ? ch == version[k] : k == 6 ? ch == '.' :
		    k == 5 || k == 7 ? ch >= '0' && ch <= '9' : k == 8 && ch == '\r' && i + 1 == n;

		if (k == 5 && ok && ch != '1') {
			*why = "only HTTP/1.0 and HTTP/1.1 are served";
			return -505;
		}
		if (!ok) {
			*why = ch == '\r' ? "a bare CR in the request line" : "malformed request line (version)";
			return -400;
		}
	}
	return 0;
}

static bool
is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* RFC 3986's unreserved and sub-delims: what a reg-name is made of,
 * beside percent-encodings. */
static bool
is_host_char(unsigned char ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch != '\0' && strchr("-._~!$&'()*+,;=", ch) != NULL;
}

/* A Host value: uri-host [ ":" port ] (RFC 9112 3.2, RFC 3986 3.2.2),
 * perhaps empty. An IP-literal is brackets around IPv6 (hex digits,
 * colons, dots, a zone) or IPvFuture's characters. */
static bool
host_valid(om_http_str_t v)
{
	size_t i = 0;

	if (v.n > 0 && v.p[0] == '[') {
		for (i = 1; i < v.n && v.p[i] != ']'; i++) {
			unsigned char ch = (unsigned char)v.p[i];

			if (!is_host_char(ch) && ch != ':' && ch != '%')
				return false;
		}
		if (i == v.n || i == 1)
			return false;
		i++;
	} else {
		for (; i < v.n && v.p[i] != ':'; i++) {
			unsigned char ch = (unsigned char)v.p[i];

			if (ch == '%') {
				if (i + 2 >= v.n || !is_hex(v.p[i + 1]) || !is_hex(v.p[i + 2]))
					return false;
				i += 2;
			} else if (!is_host_char(ch)) {
				return false;
			}
		}
	}
	if (i == v.n)
		return true;
	if (v.p[i] != ':')
		return false;
	for (i++; i < v.n; i++)
		if (v.p[i] < '0' || v.p[i] > '9')
			return false;
	return true;
}

/* One more field of a list field; too_many says why there is none. */
static int
list_add(om_http_list_t *l, om_http_str_t v, const char *too_many, const char **why)
{
	if (l->n == OM_HTTP_LIST_FIELDS) {
		*why = too_many;
		return -431;
	}
	l->v[l->n++] = v;
	return 0;
}

static int
field(om_http_req_t *r, const char *p, size_t n, bool *saw_te, const char **why)
{
	size_t i = 0;
	om_http_str_t name, v;
	int rc;

	while (i < n && is_tchar((unsigned char)p[i]))
		i++;
	if (i == 0 || i == n || p[i] != ':') {
		*why = i < n && (p[i] == ' ' || p[i] == '\t') ? "whitespace before a header field's colon" :
		    "malformed header field";
		return -400;
	}
	name = (om_http_str_t){ p, i };
	for (size_t j = i + 1; j < n; j++) {
		if (!is_vchar((unsigned char)p[j])) {
			*why = "control character in a header field value";
			return -400;
		}
	}
	v = trim(p + i + 1, n - i - 1);

#define ONCE(f, label)                                          \
	do {                                                        \
		if (r->f.p != NULL) {                                   \
			*why = "more than one " label " header field";     \
			return -400;                                        \
		}                                                       \
		r->f = v;                                               \
	} while (0)
/* A field that only a PUT uses (it is kept with the object): another
 * method is not refused for sending it twice. */
#define KEPT(f, label)                                          \
	do {                                                        \
		if (r->method == OM_HTTP_PUT)                           \
			ONCE(f, label);                                     \
	} while (0)

	switch (name.n) {
	case 4:
		if (ieq(name, "host")) {
			ONCE(host, "Host");
			if (!host_valid(v)) {
				*why = "invalid Host";
				return -400;
			}
		}
		break;
	case 5:
		if (ieq(name, "range"))
			ONCE(range, "Range");
		break;
	case 6:
		if (ieq(name, "expect")) {
			if (!ieq(v, "100-continue")) {
				*why = "unsupported expectation";
				return -417;
			}
			/* HTTP/1.0 has no 1xx responses: there it is ignored. */
			r->expect_continue = r->minor >= 1;
		}
		break;
	case 7:
		if (ieq(name, "expires"))
			KEPT(expires, "Expires");
		break;
	case 8:
		if (ieq(name, "if-range"))
			ONCE(if_range, "If-Range");
		else if (ieq(name, "if-match") &&
		    (rc = list_add(&r->if_match, v, "too many If-Match fields", why)) != 0)
			return rc;
		break;
	case 10:
		if (ieq(name, "connection")) {
			/* Several fields are one list: close in any of them wins. */
			if (list_has(v, "close"))
				r->asked_close = true;
			else if (list_has(v, "keep-alive"))
				r->keep_alive = true;
		}
		break;
	case 12:
		if (ieq(name, "content-type"))
			KEPT(content_type, "Content-Type");
		break;
	case 13:
		if (ieq(name, "if-none-match")) {
			if ((rc = list_add(&r->if_none_match, v, "too many If-None-Match fields",
			    why)) != 0)
				return rc;
		} else if (ieq(name, "cache-control")) {
			KEPT(cache_control, "Cache-Control");
		}
		break;
	case 14:
		if (ieq(name, "content-length")) {
			uint64_t cl;

			if (parse_u64(v, &cl) != 0) {
				*why = "invalid Content-Length";
				return -400;
			}
			if (r->has_length && cl != r->content_length) {
				*why = "conflicting Content-Length fields";
				return -400;
			}
			r->has_length = true;
			r->content_length = cl;
		}
		break;
	case 16:
		if (ieq(name, "content-encoding"))
			KEPT(content_encoding, "Content-Encoding");
		else if (ieq(name, "content-language"))
			KEPT(content_language, "Content-Language");
		break;
	case 17:
		if (ieq(name, "transfer-encoding")) {
			if (*saw_te || !ieq(v, "chunked")) {
				*why = "only the chunked transfer coding is supported";
				return -501;
			}
			*saw_te = true;
			r->chunked = true;
		} else if (ieq(name, "if-modified-since")) {
			/* Two are a list of dates, not a valid value: the
			 * condition is ignored (RFC 9110 13.1.3), kept empty. */
			if (r->if_modified_since.p != NULL)
				v.n = 0;
			r->if_modified_since = v;
		}
		break;
	case 19:
		if (ieq(name, "if-unmodified-since")) {
			/* Two are a list of dates, which is not a valid value: the
			 * condition is ignored (RFC 9110 13.1.4), kept empty. */
			if (r->if_unmodified_since.p != NULL)
				v.n = 0;
			r->if_unmodified_since = v;
		} else if (ieq(name, "content-disposition"))
			KEPT(content_disposition, "Content-Disposition");
		break;
	}
#undef KEPT
#undef ONCE
	return 0;
}

/* A request line that does not fit in max_head bytes: 414 once its target
 * has begun (the URI is what is too long), else 431. */
static int
line_too_long(const char *p, size_t n, const char **why)
{
	if (memchr(p, ' ', n) != NULL) {
		*why = "request target too long";
		return -414;
	}
	*why = "request head too large";
	return -431;
}

int
om_http_parse_head(const char *buf, size_t len, size_t max_head, om_http_req_t *r,
    const char **why)
{
	size_t at = 0, n, next;
	bool saw_te = false;
	int rc;

	memset(r, 0, sizeof(*r));
	*why = "";
	/* Empty lines before a request are ignored (RFC 9112 2.2). */
	while (at < len && (buf[at] == '\r' || buf[at] == '\n')) {
		if (buf[at] == '\r' && (at + 1 == len || buf[at + 1] != '\n')) {
			if (at + 1 == len)
				return 0;
			*why = "a bare CR";
			return -400;
		}
		at += buf[at] == '\r' ? 2 : 1;
		if (at > 64) {
			*why = "too many empty lines before the request";
			return -400;
		}
	}
	r->skipped = at;
	if (!next_line(buf, len, at, &n, &next)) {
		if ((rc = request_line_prefix(buf + at, len - at, why)) != 0)
			return rc;
		return len >= max_head ? line_too_long(buf + at, len - at, why) : 0;
	}
	if (next > max_head)
		return line_too_long(buf + at, n, why);
	if (memchr(buf + at, '\r', n) != NULL) {
		*why = "a bare CR in the request line";
		return -400;
	}
	if ((rc = request_line(buf + at, n, r, why)) != 0)
		return rc;
	at = next;
	for (;;) {
		if (!next_line(buf, len, at, &n, &next))
			goto more;
		if (next > max_head)
			goto big;
		if (n == 0)
			break;
		if (buf[at] == ' ' || buf[at] == '\t') {
			*why = "obsolete line folding";
			return -400;
		}
		if (memchr(buf + at, '\r', n) != NULL) {
			*why = "a bare CR in a header field";
			return -400;
		}
		if (++r->nfields > OM_HTTP_MAX_HEADERS) {
			*why = "too many header fields";
			return -431;
		}
		if ((rc = field(r, buf + at, n, &saw_te, why)) != 0)
			return rc;
		at = next;
	}
	r->head_len = next;
	/* HTTP/1.1 persists unless asked not to; HTTP/1.0 only if asked to. */
	r->close = r->asked_close || (r->minor == 0 && !r->keep_alive);
	if (r->chunked && r->has_length) {
		*why = "both Content-Length and Transfer-Encoding";
		return -400;
	}
	if (r->chunked && r->minor == 0) {
		*why = "Transfer-Encoding in an HTTP/1.0 request";
		return -400;
	}
	if (r->minor >= 1 && r->host.p == NULL) {
		*why = "no Host header field";
		return -400;
	}
	if (r->path.p == NULL && r->method != OM_HTTP_OTHER) {
		*why = "\"*\" is a target for OPTIONS only";
		return -400;
	}
	return (int)r->head_len;
more:
	if (len >= max_head)
		goto big;
	return 0;
big:
	*why = "request head too large";
	return -431;
}

/* ---- chunked ----------------------------------------------------------- */

enum { CH_SIZE = 0, CH_SIZE_LF, CH_DATA, CH_DATA_CR, CH_DATA_LF, CH_TRAILER, CH_TRAILER_LF, CH_DONE };

#define CH_LINE_MAX 4096 /* a size line with its extensions, or a trailer line */

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

long
om_http_chunked_feed(om_http_chunked_t *d, const char *in, size_t n, const char **data,
    size_t *data_len, bool *done, const char **why)
{
	size_t i = 0;

	*data = NULL;
	*data_len = 0;
	*done = d->state == CH_DONE;
	while (i < n && d->state != CH_DONE) {
		char ch = in[i];

		switch (d->state) {
		case CH_SIZE:
			if (++d->line > CH_LINE_MAX) {
				*why = "chunk size line too long";
				return -1;
			}
			if (!d->in_ext && hexval(ch) >= 0) {
				if (d->digits == 15) {
					*why = "chunk size too large";
					return -1;
				}
				d->left = d->left * 16 + (uint64_t)hexval(ch);
				d->digits++;
			} else if (ch == '\r' || ch == '\n') {
				if (d->digits == 0) {
					*why = "chunk without a size";
					return -1;
				}
				d->state = ch == '\r' ? CH_SIZE_LF : (d->left ? CH_DATA : CH_TRAILER);
				d->line = 0;
			} else if (d->digits > 0 && (ch == ';' || ch == ' ' || ch == '\t')) {
				d->in_ext = true; /* extensions are ignored */
			} else if (!d->in_ext || !is_vchar((unsigned char)ch)) {
				*why = "malformed chunk size";
				return -1;
			}
			i++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n') {
				*why = "chunk size line not ended by CRLF";
				return -1;
			}
			i++;
			d->state = d->left ? CH_DATA : CH_TRAILER;
			d->trailer_blank = true;
			break;
		case CH_DATA: {
			size_t k = n - i < d->left ? n - i : (size_t)d->left;

			*data = in + i;
			*data_len = k;
			d->left -= k;
			i += k;
			if (d->left == 0)
				d->state = CH_DATA_CR;
			return (long)i;
		}
		case CH_DATA_CR:
			if (ch == '\n') {
				d->state = CH_SIZE;
			} else if (ch == '\r') {
				d->state = CH_DATA_LF;
			} else {
				*why = "chunk data not followed by CRLF";
				return -1;
			}
			i++;
			d->digits = 0;
			d->in_ext = false;
			d->line = 0;
			break;
		case CH_DATA_LF:
			if (ch != '\n') {
				*why = "chunk data not followed by CRLF";
				return -1;
			}
			i++;
			d->state = CH_SIZE;
			break;
		case CH_TRAILER:
			/* Trailer fields are read and dropped, up to a blank line. */
			if (ch == '\r') {
				d->state = CH_TRAILER_LF;
			} else if (ch == '\n') {
				if (d->line == 0)
					d->state = CH_DONE;
				d->line = 0;
			} else if (++d->line > CH_LINE_MAX || !is_vchar((unsigned char)ch)) {
				*why = "malformed trailer section";
				return -1;
			}
			i++;
			break;
		case CH_TRAILER_LF:
			if (ch != '\n') {
				*why = "trailer line not ended by CRLF";
				return -1;
			}
			i++;
			d->state = d->line == 0 ? CH_DONE : CH_TRAILER;
			d->line = 0;
			break;
		}
	}
	*done = d->state == CH_DONE;
	return (long)i;
}

/* ---- dates ------------------------------------------------------------- */

static const char wdays[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
	"Sep", "Oct", "Nov", "Dec" };

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

void
om_http_date_format(int64_t t, char out[OM_HTTP_DATE_LEN])
{
	/* Floor division, written so that no time overflows (t - 86399 did
	 * near INT64_MIN). */
	int64_t days = t >= 0 ? t / 86400 : -1 - -(t + 1) / 86400;
	int64_t secs = t >= 0 ? t % 86400 : 86399 - -(t + 1) % 86400;
	int64_t z = days + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
	unsigned d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
	int64_t y = (int64_t)yoe + era * 400 + (m <= 2);
	int wd = (int)((days % 7 + 11) % 7); /* 1970-01-01 was a Thursday */

	if (y < 0 || y > 9999) {
		memcpy(out, "Thu, 01 Jan 1970 00:00:00 GMT", OM_HTTP_DATE_LEN);
		return;
	}
	snprintf(out, OM_HTTP_DATE_LEN, "%s, %02u %s %04d %02d:%02d:%02d GMT", wdays[wd], d,
	    months[m - 1], (int)y, (int)(secs / 3600), (int)(secs / 60 % 60), (int)(secs % 60));
}

static int
num(const char *s, size_t n, size_t at, size_t digits, unsigned *out)
{
	unsigned v = 0;

	if (at + digits > n)
		return -1;
	for (size_t i = 0; i < digits; i++) {
		char ch = s[at + i];

		if (ch == ' ' && digits == 2 && i == 0) /* asctime pads the day */
			continue;
		if (ch < '0' || ch > '9')
			return -1;
		v = v * 10 + (unsigned)(ch - '0');
	}
	*out = v;
	return 0;
}

static int
month(const char *s, size_t n, size_t at, unsigned *out)
{
	if (at + 3 > n)
		return -1;
	for (unsigned i = 0; i < 12; i++) {
		if (memcmp(s + at, months[i], 3) == 0) {
			*out = i + 1;
			return 0;
		}
	}
	return -1;
}

static int
hms(const char *s, size_t n, size_t at, unsigned *h, unsigned *mi, unsigned *se)
{
	if (at + 8 > n || s[at + 2] != ':' || s[at + 5] != ':')
		return -1;
	if (num(s, n, at, 2, h) || num(s, n, at + 3, 2, mi) || num(s, n, at + 6, 2, se))
		return -1;
	return *h < 24 && *mi < 60 && *se < 61 ? 0 : -1;
}

int
om_http_date_parse(const char *s, size_t n, int64_t *t)
{
	unsigned d, m, y, h, mi, se;
	const char *comma = memchr(s, ',', n);

	if (comma != NULL && comma - s == 3) {
		/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
		if (n != 29 || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
		    s[25] != ' ' || memcmp(s + 26, "GMT", 3) != 0)
			return -1;
		if (num(s, n, 5, 2, &d) || month(s, n, 8, &m) || num(s, n, 12, 4, &y) ||
		    hms(s, n, 17, &h, &mi, &se))
			return -1;
	} else if (comma != NULL) {
		/* RFC 850: Sunday, 06-Nov-94 08:49:37 GMT */
		size_t a = (size_t)(comma - s) + 2;

		if (a + 22 != n || s[a - 1] != ' ' || s[a + 2] != '-' || s[a + 6] != '-' ||
		    s[a + 9] != ' ' || s[a + 18] != ' ' || memcmp(s + a + 19, "GMT", 3) != 0)
			return -1;
		if (num(s, n, a, 2, &d) || month(s, n, a + 3, &m) || num(s, n, a + 7, 2, &y) ||
		    hms(s, n, a + 10, &h, &mi, &se))
			return -1;
		y += y < 70 ? 2000 : 1900;
	} else {
		/* asctime: Sun Nov  6 08:49:37 1994 */
		if (n != 24 || s[3] != ' ' || s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
			return -1;
		if (month(s, n, 4, &m) || num(s, n, 8, 2, &d) || hms(s, n, 11, &h, &mi, &se) ||
		    num(s, n, 20, 4, &y))
			return -1;
	}
	if (d < 1 || d > 31 || y < 1900)
		return -1;
	*t = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + se;
	return 0;
}

/* ---- ranges, tags, cache control ---------------------------------------- */

/* A byte position: digits, as many as sent; one past 2^64 - 1 is taken as
 * 2^64 - 1 (beyond any object all the same). */
static int
parse_pos(om_http_str_t v, uint64_t *out)
{
	uint64_t n = 0;

	if (v.n == 0)
		return -1;
	for (size_t i = 0; i < v.n; i++) {
		unsigned d = (unsigned)(v.p[i] - '0');

		if (v.p[i] < '0' || v.p[i] > '9')
			return -1;
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	*out = n;
	return 0;
}

int
om_http_range(const char *s, size_t n, uint64_t size, uint64_t *first, uint64_t *last)
{
	om_http_str_t v = trim(s, n);
	size_t i = 6, dash;
	uint64_t a = 0, b = 0;
	bool has_a, has_b;

	/* The range unit is case-insensitive (RFC 9110 14.1). */
	if (v.n < 7 || !ieq((om_http_str_t){ v.p, 6 }, "bytes=") || memchr(v.p, ',', v.n) != NULL)
		return 0;
	for (dash = i; dash < v.n && v.p[dash] != '-'; dash++)
		;
	if (dash == v.n)
		return 0;
	has_a = dash > i;
	has_b = dash + 1 < v.n;
	if ((has_a && parse_pos((om_http_str_t){ v.p + i, dash - i }, &a) != 0) ||
	    (has_b && parse_pos((om_http_str_t){ v.p + dash + 1, v.n - dash - 1 }, &b) != 0) ||
	    (!has_a && !has_b) || (has_a && has_b && b < a))
		return 0;
	if (!has_a) {
		/* The last b bytes. */
		if (b == 0 || size == 0)
			return -1;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return 1;
	}
	if (a >= size)
		return -1;
	*first = a;
	*last = !has_b || b >= size ? size - 1 : b;
	return 1;
}

static bool
etag_match(const char *list, size_t n, const char *etag, bool strong)
{
	om_http_str_t v = trim(list, n);
	size_t i = 0, elen = strlen(etag);

	if (v.n == 1 && v.p[0] == '*')
		return true;
	while (i < v.n) {
		size_t j = i;
		om_http_str_t tag;

		while (j < v.n && v.p[j] != ',')
			j++;
		tag = trim(v.p + i, j - i);
		if (tag.n >= 2 && tag.p[0] == 'W' && tag.p[1] == '/') {
			if (strong) {
				i = j + 1;
				continue;
			}
			tag.p += 2;
			tag.n -= 2;
		}
		if (tag.n == elen && memcmp(tag.p, etag, elen) == 0)
			return true;
		i = j + 1;
	}
	return false;
}

bool
om_http_etag_match(const char *list, size_t n, const char *etag)
{
	return etag_match(list, n, etag, false);
}

bool
om_http_etag_match_list(const om_http_list_t *l, const char *etag, bool strong)
{
	for (unsigned i = 0; i < l->n; i++)
		if (etag_match(l->v[i].p, l->v[i].n, etag, strong))
			return true;
	return false;
}

int64_t
om_http_max_age(const char *s, size_t n)
{
	int64_t max_age = -1, s_maxage = -1;
	size_t i = 0;

	while (i < n) {
		size_t j = i;
		om_http_str_t d;

		while (j < n && s[j] != ',')
			j++;
		d = trim(s + i, j - i);
		for (int k = 0; k < 2; k++) {
			const char *name = k ? "s-maxage=" : "max-age=";
			size_t l = strlen(name);
			uint64_t v;

			if (d.n > l && ieq((om_http_str_t){ d.p, l }, name)) {
				om_http_str_t num_s = { d.p + l, d.n - l };

				if (num_s.n >= 2 && num_s.p[0] == '"' && num_s.p[num_s.n - 1] == '"') {
					num_s.p++;
					num_s.n -= 2;
				}
				if (parse_u64(num_s, &v) == 0) {
					if (v > (uint64_t)INT32_MAX)
						v = INT32_MAX;
					if (k)
						s_maxage = (int64_t)v;
					else
						max_age = (int64_t)v;
				}
			}
		}
		i = j + 1;
	}
	return s_maxage >= 0 ? s_maxage : max_age;
}

bool
om_http_meta_is_headers(const char *meta, size_t n)
{
	size_t i = 0;

	if (n == 0)
		return false;
	while (i < n) {
		size_t j = i;

		while (j < n && is_tchar((unsigned char)meta[j]))
			j++;
		if (j == i || j == n || meta[j] != ':')
			return false;
		for (j++; j < n && meta[j] != '\n'; j++) {
			if (meta[j] == '\r' && j + 1 < n && meta[j + 1] == '\n')
				continue;
			if (!is_vchar((unsigned char)meta[j]))
				return false;
		}
		i = j + 1;
	}
	return true;
}

const char *
om_http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 416: return "Range Not Satisfiable";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	case 507: return "Insufficient Storage";
	default: return "Unknown";
	}
}
