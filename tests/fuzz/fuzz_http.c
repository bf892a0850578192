/*
 * The HTTP/1.1 parsers of the http listeners (src/proto/http.c). The first
 * input byte picks what is fuzzed; the rest is the text.
 *
 *   0 om_http_parse_head: results stay inside the head; the head parses
 *     the same alone; any shorter prefix of a complete head asks for more
 *     (the listener parses again from the start as bytes arrive), and a
 *     prefix that is refused is a refused whole; the fields found go
 *     through the parsers the listener applies to them.
 *   1 om_http_chunked_feed: the body fed in pieces (sizes from the input)
 *     decodes to the same bytes, end and verdict as fed at once.
 *   2 om_http_date_parse: a parsed date formats to an IMF-fixdate that
 *     parses back to the same time; om_http_date_format of any time (the
 *     first 8 bytes) is a well-formed date that parses back to it when in
 *     1900..9999.
 *   3 om_http_range: a satisfiable range lies inside the object and agrees
 *     with a reference parser.
 *   4 om_http_etag_match, om_http_max_age: bounds, and "*", an exact tag.
 *   5 om_http_meta_is_headers: a block it accepts, sent as header lines
 *     ended by CRLF, is taken by om_http_parse_head (no syntax error).
 */
#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "fuzz.h"
#include "proto/om_http.h"

static bool
inside(om_http_str_t s, const char *buf, size_t len)
{
	if (s.p == NULL)
		return s.n == 0;
	return s.p >= buf && s.n <= len && (size_t)(s.p - buf) <= len - s.n;
}

static bool
list_inside(const om_http_list_t *l, const char *buf, size_t len)
{
	if (l->n > OM_HTTP_LIST_FIELDS)
		return false;
	for (unsigned i = 0; i < l->n; i++)
		if (l->v[i].p == NULL || !inside(l->v[i], buf, len))
			return false;
	return true;
}

static bool
str_eq(om_http_str_t a, om_http_str_t b)
{
	return a.p == b.p && a.n == b.n;
}

static void
sub_parsers(const om_http_req_t *r, uint64_t size)
{
	uint64_t first = 0, last = 0;
	int64_t t;
	int rc;

	if (r->range.p != NULL) {
		rc = om_http_range(r->range.p, r->range.n, size, &first, &last);
		FZ_ASSERT(rc >= -1 && rc <= 1, "range rc %d", rc);
		if (rc == 1)
			FZ_ASSERT(first <= last && last < size, "range %llu-%llu of %llu",
			    (unsigned long long)first, (unsigned long long)last, (unsigned long long)size);
	}
	(void)om_http_etag_match_list(&r->if_none_match, "\"1f\"", false);
	(void)om_http_etag_match_list(&r->if_match, "\"1f\"", true);
	if (r->if_unmodified_since.p != NULL)
		(void)om_http_date_parse(r->if_unmodified_since.p, r->if_unmodified_since.n, &t);
	if (r->if_modified_since.p != NULL)
		(void)om_http_date_parse(r->if_modified_since.p, r->if_modified_since.n, &t);
	if (r->if_range.p != NULL)
		(void)om_http_date_parse(r->if_range.p, r->if_range.n, &t);
	if (r->expires.p != NULL)
		(void)om_http_date_parse(r->expires.p, r->expires.n, &t);
	if (r->cache_control.p != NULL) {
		int64_t a = om_http_max_age(r->cache_control.p, r->cache_control.n);

		FZ_ASSERT(a >= -1 && a <= INT32_MAX, "max-age %lld", (long long)a);
	}
}

static void
fuzz_head(const uint8_t *data, size_t size)
{
	size_t max_head = 64 + (size > 0 ? (size_t)data[0] * 32 : 0), len;
	char *buf;
	om_http_req_t r, r2;
	const char *why, *why2;
	int rc, rc2;

	if (size == 0)
		return;
	len = size - 1;
	buf = malloc(len ? len : 1);
	memcpy(buf, data + 1, len);
	rc = om_http_parse_head(buf, len, max_head, &r, &why);
	FZ_ASSERT(why != NULL, "why");
	FZ_ASSERT(rc >= 0 || rc == -400 || rc == -414 || rc == -417 || rc == -431 || rc == -501 ||
	    rc == -505,
	    "rc %d", rc);
	/* What a prefix refuses, no bytes after it can make valid (the
	 * listener refuses a request line at its first impossible byte). */
	if (len > 1) {
		size_t k = ((size_t)data[0] * 37 + len) % len;

		rc2 = om_http_parse_head(buf, k, max_head, &r2, &why2);
		FZ_ASSERT(rc2 >= 0 || rc < 0, "a %zu-byte prefix is refused (%d: %s), the %zu bytes are not (%d)",
		    k, rc2, why2, len, rc);
	}
	if (rc > 0) {
		size_t h = (size_t)rc;

		FZ_ASSERT(h == r.head_len && h <= len && h <= max_head, "head %zu of %zu", h, len);
		FZ_ASSERT(buf[h - 1] == '\n', "head does not end a line");
		FZ_ASSERT(r.skipped < h, "skipped");
		FZ_ASSERT(inside(r.method_name, buf, h) && inside(r.target, buf, h) &&
		    inside(r.path, buf, h) && inside(r.host, buf, h) && inside(r.range, buf, h) &&
		    inside(r.if_range, buf, h) && list_inside(&r.if_none_match, buf, h) &&
		    list_inside(&r.if_match, buf, h) && inside(r.if_unmodified_since, buf, h) &&
		    inside(r.if_modified_since, buf, h) && inside(r.content_type, buf, h) &&
		    inside(r.cache_control, buf, h) && inside(r.expires, buf, h) &&
		    inside(r.content_encoding, buf, h) && inside(r.content_language, buf, h) &&
		    inside(r.content_disposition, buf, h), "a field outside the head");
		FZ_ASSERT(r.method_name.n > 0 && r.target.n > 0, "empty method or target");
		FZ_ASSERT(r.path.p == NULL ? r.method == OM_HTTP_OTHER :
		    ((r.path_slash ? r.path.n == 0 || r.path.p[0] == '?' : r.path.n > 0 && r.path.p[0] == '/') &&
		    r.path.p + r.path.n == r.target.p + r.target.n), "path");
		FZ_ASSERT(r.minor <= 9 && !(r.chunked && r.has_length), "minor/length");
		FZ_ASSERT(r.nfields <= OM_HTTP_MAX_HEADERS, "fields");
		for (size_t i = 0; i < r.target.n; i++)
			FZ_ASSERT((unsigned char)r.target.p[i] > 0x20 &&
			    (unsigned char)r.target.p[i] != 0x7f, "control in target");

		/* The head alone parses the same. */
		rc2 = om_http_parse_head(buf, h, max_head, &r2, &why2);
		FZ_ASSERT(rc2 == rc && r2.method == r.method && str_eq(r2.target, r.target) &&
		    str_eq(r2.path, r.path) && str_eq(r2.host, r.host) &&
		    r2.content_length == r.content_length && r2.has_length == r.has_length &&
		    r2.chunked == r.chunked && r2.close == r.close &&
		    r2.expect_continue == r.expect_continue && r2.nfields == r.nfields,
		    "the head alone parses differently (%d)", rc2);
		/* Every shorter prefix is incomplete. */
		for (size_t k = h > 8 ? h - 8 : 0; k < h; k++) {
			rc2 = om_http_parse_head(buf, k, max_head, &r2, &why2);
			FZ_ASSERT(rc2 == 0, "prefix of %zu of a %zu-byte head: %d (%s)", k, h, rc2, why2);
		}
		if (h > 1) {
			size_t k = (size_t)data[0] * 131 % h;

			rc2 = om_http_parse_head(buf, k, max_head, &r2, &why2);
			FZ_ASSERT(rc2 == 0, "prefix of %zu of a %zu-byte head: %d (%s)", k, h, rc2, why2);
		}
		sub_parsers(&r, (uint64_t)data[0] * data[0] * 977);
	} else if (rc == 0) {
		FZ_ASSERT(len < max_head, "wants more past max_head");
	}
	free(buf);
}

/* ---- chunked ------------------------------------------------------------ */

typedef struct {
	long verdict; /* -1 malformed, else bytes consumed in all */
	bool done;
	size_t out_len;
} ch_result_t;

static void
ch_run(const char *in, size_t n, const uint8_t *splits, size_t nsplits, char *out,
    ch_result_t *res)
{
	om_http_chunked_t d;
	size_t at = 0, s = 0;

	memset(&d, 0, sizeof(d));
	res->verdict = 0;
	res->done = false;
	res->out_len = 0;
	while (at < n) {
		/* The next piece: from the split list, or all the rest. */
		size_t piece = n - at;
		const char *data, *why = NULL;
		size_t dlen;
		bool done;
		long k;
		char *copy;

		if (nsplits > 0) {
			piece = (size_t)splits[s++ % nsplits] % 17 + 1;
			if (piece > n - at)
				piece = n - at;
		}
		/* An exact copy: ASan sees a read past the piece. */
		copy = malloc(piece);
		memcpy(copy, in + at, piece);
		/* Called until the piece is used up, ended or refused. */
		size_t used = 0;
		for (;;) {
			k = om_http_chunked_feed(&d, copy + used, piece - used, &data, &dlen, &done, &why);
			if (k < 0) {
				FZ_ASSERT(why != NULL && why[0] != '\0', "no reason");
				res->verdict = -1;
				free(copy);
				return;
			}
			FZ_ASSERT((size_t)k <= piece - used, "consumed %ld of %zu", k, piece - used);
			if (dlen > 0) {
				FZ_ASSERT(data >= copy + used && data + dlen <= copy + used + (size_t)k,
				    "data outside what was consumed");
				memcpy(out + res->out_len, data, dlen);
				res->out_len += dlen;
			}
			used += (size_t)k;
			res->verdict += k;
			if (done) {
				FZ_ASSERT(d.state == 7, "done in state %d", d.state);
				res->done = true;
				free(copy);
				return;
			}
			if (used == piece)
				break;
			FZ_ASSERT(k > 0, "no progress with %zu bytes left", piece - used);
		}
		free(copy);
		at += piece;
	}
}

static void
fuzz_chunked(const uint8_t *data, size_t size)
{
	size_t nsplits, n;
	const char *body;
	char *out1, *out2;
	ch_result_t a, b;

	if (size < 2)
		return;
	nsplits = data[0] % 8;
	if (size < 1 + nsplits)
		return;
	body = (const char *)data + 1 + nsplits;
	n = size - 1 - nsplits;
	out1 = malloc(n + 1);
	out2 = malloc(n + 1);
	ch_run(body, n, NULL, 0, out1, &a);
	ch_run(body, n, data + 1, nsplits ? nsplits : 1, out2, &b);
	FZ_ASSERT(a.verdict == b.verdict && a.done == b.done, "one-shot %ld/%d, pieces %ld/%d",
	    a.verdict, a.done, b.verdict, b.done);
	if (a.verdict >= 0) {
		FZ_ASSERT(a.out_len == b.out_len && memcmp(out1, out2, a.out_len) == 0,
		    "decoded bytes differ");
		FZ_ASSERT(a.out_len <= (size_t)a.verdict, "more out than in");
		FZ_ASSERT(a.done || (size_t)a.verdict == n, "stopped early without an end");
	}
	free(out1);
	free(out2);
}

/* ---- dates ------------------------------------------------------------- */

static void
check_fixdate(const char *s, int64_t t)
{
	int64_t t2 = -1;
	static const char *const wd[] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);

	FZ_ASSERT(strlen(s) == 29 && s[3] == ',' && memcmp(s + 26, "GMT", 3) == 0, "format: %s", s);
	FZ_ASSERT(om_http_date_parse(s, 29, &t2) == 0 && t2 == t, "%s: %lld, not %lld", s,
	    (long long)t2, (long long)t);
	FZ_ASSERT(memcmp(s, wd[((days % 7) + 7 + 4) % 7], 3) == 0, "weekday of %s", s);
}

static void
fuzz_date(const uint8_t *data, size_t size)
{
	char *s = malloc(size ? size : 1), out[OM_HTTP_DATE_LEN];
	int64_t t = 0;

	memcpy(s, data, size);
	if (om_http_date_parse(s, size, &t) == 0) {
		/* Years 1900..9999 (RFC 850 gives 1970..2069). */
		FZ_ASSERT(t >= -2208988800LL && t <= 253402300799LL + 86400, "time %lld", (long long)t);
		om_http_date_format(t, out);
		if (t <= 253402300799LL)
			check_fixdate(out, t);
	}
	free(s);
	if (size >= 8) {
		fz_in_t in = { data, size };

		t = (int64_t)fz_u64(&in);
		om_http_date_format(t, out);
		if (t >= -2208988800LL && t <= 253402300799LL)
			check_fixdate(out, t);
		else
			FZ_ASSERT(strlen(out) == 29, "format of %lld: %s", (long long)t, out);
		/* Near the edges and ordinary times. */
		t = (int64_t)(fz_u64(&in) % (253402300799ULL + 2208988801ULL)) - 2208988800LL;
		om_http_date_format(t, out);
		check_fixdate(out, t);
	}
}

/* ---- ranges ------------------------------------------------------------- */

/* Digits s[i, e) as a number, 2^64 - 1 for any above it: by their count
 * without leading zeros, and against 2^64 - 1's digits at 20. */
static uint64_t
pos_ref(const char *s, size_t i, size_t e)
{
	static const char max[] = "18446744073709551615";
	uint64_t v = 0;

	while (i < e && s[i] == '0')
		i++;
	/* cppcheck-suppress knownConditionTrueFalse ; true for 21 digits or more (cppcheck 2.10 loses the loop above) */
	if (e - i > 20 || (e - i == 20 && memcmp(s + i, max, 20) > 0))
		return UINT64_MAX;
	for (; i < e; i++)
		v = v * 10 + (uint64_t)(s[i] - '0');
	return v;
}

/* bytes=A-B, A-, -B (the unit in any case) with digits, as many as sent
 * (a position past 2^64 - 1 is 2^64 - 1), optional spaces and tabs around
 * the whole; everything else is ignored (0). */
static int
range_ref(const char *s, size_t n, uint64_t size, uint64_t *f, uint64_t *l)
{
	size_t i = 0, e = n, da = 0, db = 0, at;
	uint64_t a = 0, b = 0;

	while (i < e && (s[i] == ' ' || s[i] == '\t'))
		i++;
	while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t'))
		e--;
	/* cppcheck-suppress knownConditionTrueFalse ; false for n >= 7 (cppcheck 2.10 loses the two trims) */
	if (e - i < 7 || strncasecmp(s + i, "bytes=", 6) != 0)
		return 0;
	i += 6;
	for (at = i; i < e && s[i] >= '0' && s[i] <= '9'; i++)
		da++;
	a = pos_ref(s, at, i);
	if (i == e || s[i] != '-')
		return 0;
	i++;
	for (at = i; i < e && s[i] >= '0' && s[i] <= '9'; i++)
		db++;
	b = pos_ref(s, at, i);
	if (i != e || (da == 0 && db == 0) || (da && db && b < a))
		return 0;
	if (da == 0) {
		if (b == 0 || size == 0)
			return -1;
		*f = b >= size ? 0 : size - b;
		*l = size - 1;
		return 1;
	}
	if (a >= size)
		return -1;
	*f = a;
	*l = db == 0 || b >= size ? size - 1 : b;
	return 1;
}

static void
fuzz_range(const uint8_t *data, size_t size)
{
	fz_in_t in = { data, size };
	uint64_t sz, f = 0, l = 0, f2 = 0, l2 = 0;
	uint8_t k = fz_u8(&in);
	char *s;
	int rc, ref;

	sz = k & 0x80 ? fz_u64(&in) : fz_u16(&in);
	s = malloc(in.n ? in.n : 1);
	memcpy(s, in.p, in.n);
	rc = om_http_range(s, in.n, sz, &f, &l);
	ref = range_ref(s, in.n, sz, &f2, &l2);
	FZ_ASSERT(rc == ref, "range %d, reference %d", rc, ref);
	if (rc == 1)
		FZ_ASSERT(f == f2 && l == l2 && f <= l && l < sz, "range %llu-%llu, ref %llu-%llu",
		    (unsigned long long)f, (unsigned long long)l, (unsigned long long)f2,
		    (unsigned long long)l2);
	free(s);
}

/* ---- tags, cache control ----------------------------------------------- */

static void
fuzz_tags(const uint8_t *data, size_t size)
{
	size_t split = size ? data[0] % (size < 40 ? size : 40) : 0;
	char *etag, *list;
	size_t n;
	int64_t a;

	if (size == 0)
		return;
	/* etag: bytes 1..split (a C string), the list: the rest. */
	etag = malloc(split + 1);
	memcpy(etag, data + 1, split ? split - 1 : 0);
	etag[split ? split - 1 : 0] = '\0';
	n = size - (split ? split : 1);
	list = malloc(n ? n : 1);
	memcpy(list, data + (split ? split : 1), n);
	(void)om_http_etag_match(list, n, etag);
	if (n == 1 && list[0] == '*')
		FZ_ASSERT(om_http_etag_match(list, n, etag), "* did not match");
	/* A quoted tag, as the listener makes them, matches itself. */
	if (etag[0] == '"' && strchr(etag, ',') == NULL && etag[strlen(etag) - 1] != ' ' &&
	    etag[strlen(etag) - 1] != '\t')
		FZ_ASSERT(om_http_etag_match(etag, strlen(etag), etag), "%s did not match itself", etag);
	a = om_http_max_age(list, n);
	FZ_ASSERT(a >= -1 && a <= INT32_MAX, "max-age %lld", (long long)a);
	free(etag);
	free(list);
}

/* ---- metadata as header lines ---------------------------------------------- */

static void
fuzz_meta(const uint8_t *data, size_t size)
{
	static const char pre[] = "GET /x HTTP/1.1\r\nHost: h\r\n";
	char *m = malloc(size ? size : 1), *req;
	om_http_req_t r;
	const char *why;
	size_t len, i = 0;
	int rc;

	memcpy(m, data, size);
	if (om_http_meta_is_headers(m, size)) {
		/* Sent as header lines, each ended by CRLF, then the blank line. */
		req = malloc(sizeof(pre) + 2 * size + 4);
		memcpy(req, pre, sizeof(pre) - 1);
		len = sizeof(pre) - 1;
		while (i < size) {
			const char *nl = memchr(m + i, '\n', size - i);
			size_t e = nl ? (size_t)(nl - m) : size, l = e - i;

			if (l > 0 && m[i + l - 1] == '\r')
				l--;
			memcpy(req + len, m + i, l);
			len += l;
			memcpy(req + len, "\r\n", 2);
			len += 2;
			i = e + 1;
		}
		memcpy(req + len, "\r\n", 2);
		len += 2;
		rc = om_http_parse_head(req, len, 1 << 20, &r, &why);
		/* Only what a field's meaning forbids may fail, not its syntax. */
		FZ_ASSERT(rc == (int)len || rc == -417 || rc == -431 || rc == -501 ||
		    (rc == -400 && (strstr(why, "Content-Length") != NULL ||
		    strstr(why, "more than one") != NULL)),
		    "headers block refused: %d %s", rc, why);
		free(req);
	}
	free(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	switch (data[0] % 6) {
	case 0: fuzz_head(data + 1, size - 1); break;
	case 1: fuzz_chunked(data + 1, size - 1); break;
	case 2: fuzz_date(data + 1, size - 1); break;
	case 3: fuzz_range(data + 1, size - 1); break;
	case 4: fuzz_tags(data + 1, size - 1); break;
	case 5: fuzz_meta(data + 1, size - 1); break;
	}
	/* Every status has a reason phrase. */
	FZ_ASSERT(om_http_reason(data[0] * 3) != NULL, "reason");
	return 0;
}
