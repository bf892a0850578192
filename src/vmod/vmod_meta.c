/*
 * vmod_objmapper's metadata text and object keys (vmod_meta.h). Runs in
 * varnishd's worker process, inside the VMOD; needs nothing of Varnish.
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vmod_meta.h"

static const char *
line_end(const char *p, const char *e)
{
	const char *nl = memchr(p, '\n', (size_t)(e - p));

	return nl;
}

/* A decimal number (digits, at most one dot), then one space or \n. */
static int
number(const char **pp, const char *e, double *out, char sep)
{
	const char *p = *pp;
	char tmp[40];
	size_t n = 0;
	int dots = 0;

	while (p < e && (isdigit((unsigned char)*p) || *p == '.' || (*p == '-' && n == 0))) {
		if (*p == '.')
			dots++;
		if (n + 1 >= sizeof(tmp) || dots > 1)
			return -1;
		tmp[n++] = *p++;
	}
	if (n == 0 || p >= e || *p != sep)
		return -1;
	tmp[n] = '\0';
	*out = strtod(tmp, NULL);
	*pp = p + 1;
	return 0;
}

int
omv_meta_parse(const void *buf, size_t len, omv_meta_t *m)
{
	const char *p, *e, *nl;
	double st;

	memset(m, 0, sizeof(*m));
	if (buf == NULL || len < sizeof(OMV_META_TAG) + 1 ||
	    memcmp(buf, OMV_META_TAG, sizeof(OMV_META_TAG) - 1) != 0)
		return -1;
	p = buf;
	e = p + len;
	p += sizeof(OMV_META_TAG) - 1;
	m->kind = (unsigned char)*p++;
	if (m->kind == OMV_KIND_VARY) {
		if (*p++ != '\n')
			return -1;
	} else if (m->kind == OMV_KIND_OBJECT) {
		if (*p++ != ' ' || number(&p, e, &st, ' ') != 0 || st < 100 || st > 999 ||
		    st != (double)(unsigned)st || number(&p, e, &m->t_origin, ' ') != 0 ||
		    number(&p, e, &m->ttl, ' ') != 0 || number(&p, e, &m->grace, ' ') != 0 ||
		    number(&p, e, &m->keep, '\n') != 0)
			return -1;
		m->status = (unsigned)st;
		if ((nl = line_end(p, e)) == NULL)
			return -1;
		m->reason = p;
		m->reason_len = (size_t)(nl - p);
		p = nl + 1;
	} else {
		return -1;
	}
	/* Every line that follows is complete, not empty, and holds no control
	 * character (a CR would let stored headers split a response: whoever
	 * may write to objmapperd must not be able to). */
	m->lines = p;
	m->lines_len = (size_t)(e - p);
	while (p < e) {
		if ((nl = line_end(p, e)) == NULL || nl == p)
			return -1;
		if (m->kind == OMV_KIND_OBJECT && memchr(p, ':', (size_t)(nl - p)) == NULL)
			return -1;
		for (const char *q = p; q < nl; q++)
			if (((unsigned char)*q < 0x20 && *q != '\t') || *q == 0x7f)
				return -1;
		p = nl + 1;
	}
	for (size_t i = 0; i < m->reason_len; i++)
		if ((unsigned char)m->reason[i] < 0x20 || m->reason[i] == 0x7f)
			return -1;
	return 0;
}

const char *
omv_meta_line(const omv_meta_t *m, size_t *off, size_t *len)
{
	const char *p, *nl;

	if (*off >= m->lines_len)
		return NULL;
	p = m->lines + *off;
	nl = memchr(p, '\n', m->lines_len - *off);
	if (nl == NULL)
		return NULL;
	*len = (size_t)(nl - p);
	*off += *len + 1;
	return p;
}

void
omv_put(omv_buf_t *b, const char *s, size_t n)
{
	if (b->overflow || n > b->cap - b->len) {
		b->overflow = 1;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

void
omv_printf(omv_buf_t *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	/* vsnprintf needs a byte for its NUL: an append that would fill the
	 * last byte counts as not fitting. */
	if (n < 0 || (size_t)n >= b->cap - b->len)
		b->overflow = 1;
	else
		b->len += (size_t)n;
}

void
omv_b64url(char *out, const uint8_t *in, size_t n)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i = 0, o = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];

		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = a[v >> 6 & 63];
		out[o++] = a[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;

		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;

		out[o++] = a[v >> 18 & 63];
		out[o++] = a[v >> 12 & 63];
		out[o++] = a[v >> 6 & 63];
	}
	out[o] = '\0';
}

void
omv_key_base(char *out, size_t n, const char *prefix, const uint8_t digest[32])
{
	char h[45];

	omv_b64url(h, digest, 32);
	snprintf(out, n, "%s%s", prefix, h);
}

void
omv_key_variant(char *out, size_t n, const char *base, uint64_t marker_id, const uint8_t vhash[32])
{
	char h[45];

	omv_b64url(h, vhash, 32);
	h[22] = '\0'; /* 132 bits: collisions need some 2^66 variants of one key */
	snprintf(out, n, "%s~%llx~%s", base, (unsigned long long)marker_id, h);
}

/* RFC 9110 token characters. */
static int
tchar(int c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

long
omv_vary_names(const char *vary, char *out, size_t n)
{
	const char *p = vary;
	size_t len = 0;

	while (*p != '\0') {
		const char *s;
		size_t k;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (*p == '\0')
			break;
		if (*p == '*')
			return -1;
		s = p;
		while (tchar((unsigned char)*p))
			p++;
		k = (size_t)(p - s);
		while (*p == ' ' || *p == '\t')
			p++;
		if (k == 0 || (*p != ',' && *p != '\0'))
			return -1;
		/* Lower case, and once only. */
		{
			char name[256];
			size_t off = 0;
			int dup = 0;

			if (k >= sizeof(name))
				return -1;
			for (size_t i = 0; i < k; i++)
				name[i] = (char)tolower((unsigned char)s[i]);
			while (off < len) {
				const char *nl = memchr(out + off, '\n', len - off);
				size_t l = (size_t)(nl - (out + off));

				if (l == k && memcmp(out + off, name, k) == 0)
					dup = 1;
				off += l + 1;
			}
			if (dup)
				continue;
			if (len + k + 1 > n)
				return -2;
			memcpy(out + len, name, k);
			out[len + k] = '\n';
			len += k + 1;
		}
	}
	return (long)len;
}

int
omv_status_stored(unsigned status)
{
	switch (status) {
	case 200: case 203: case 204: case 300: case 301: case 302:
	case 307: case 308: case 404: case 410: case 414:
		return 1;
	default:
		return 0;
	}
}

int
omv_header_dropped(const char *line, size_t len)
{
	static const char *const names[] = {
		"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Proxy-Connection", "TE", "Trailer", "Transfer-Encoding", "Upgrade",
		"Content-Length", "Age",
	};
	const char *colon = memchr(line, ':', len);
	size_t k;

	if (colon == NULL)
		return 1;
	k = (size_t)(colon - line);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == k && strncasecmp(line, names[i], k) == 0)
			return 1;
	return 0;
}
