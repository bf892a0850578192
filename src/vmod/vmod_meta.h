/*
 * vmod_objmapper's metadata format and keys: pure functions, no Varnish
 * types, so that they are unit-tested without a varnishd (test_vmod_meta).
 */
#ifndef OMV_META_H
#define OMV_META_H

#include <stddef.h>
#include <stdint.h>

/*
 * The metadata of an object written through, text of at most the
 * daemon's metadata limit:
 *
 *   om-vmod 1 O STATUS T_ORIGIN TTL GRACE KEEP\n
 *   REASON\n
 *   Name: value\n            (the response headers, one per line)
 *
 * and of a Vary marker (an empty object at the base key):
 *
 *   om-vmod 1 V\n
 *   name\n                   (the varied request headers, lower case)
 */
#define OMV_META_TAG "om-vmod 1 "
#define OMV_KIND_OBJECT 'O'
#define OMV_KIND_VARY 'V'

typedef struct {
	int kind;               /* OMV_KIND_* */
	unsigned status;
	double t_origin, ttl, grace, keep;
	const char *reason;     /* not NUL-terminated: reason_len bytes */
	size_t reason_len;
	const char *lines;      /* header lines, or the marker's names, each ending in \n */
	size_t lines_len;
} omv_meta_t;

/* 0, or -1 if buf is not this format (then m is undefined). */
int omv_meta_parse(const void *buf, size_t len, omv_meta_t *m);

/* The next line of m->lines at *off (without its \n), or NULL at the end. */
const char *omv_meta_line(const omv_meta_t *m, size_t *off, size_t *len);

/* A bounded text buffer: appends that do not fit set `overflow`. */
typedef struct {
	char *p;
	size_t len, cap;
	int overflow;
} omv_buf_t;

void omv_put(omv_buf_t *b, const char *s, size_t n);
void omv_printf(omv_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Unpadded base64url of n bytes into out (4 * ceil(n / 3) + 1 bytes). */
void omv_b64url(char *out, const uint8_t *in, size_t n);

/* The longest key: a prefix of up to OMV_PREFIX_MAX bytes, the request's
 * hash (43), and for a variant "~", the marker's id in hex (16), "~" and
 * 22 characters of the hash of the varied values. */
#define OMV_PREFIX_MAX 512
#define OMV_KEY_MAX (OMV_PREFIX_MAX + 43 + 1 + 16 + 1 + 22 + 1)

/* prefix + base64url(digest) */
void omv_key_base(char *out, size_t n, const char *prefix, const uint8_t digest[32]);
/* base + "~" + hex(marker_id) + "~" + base64url(vhash)[0..22) */
void omv_key_variant(char *out, size_t n, const char *base, uint64_t marker_id,
    const uint8_t vhash[32]);

/*
 * The names of a Vary header's value, lower case, one per line ("a\nb\n"),
 * in the order given, duplicates dropped. Returns their length, 0 for an
 * empty list, -1 for "*" or a name that is not a token, -2 if out is too
 * small.
 */
long omv_vary_names(const char *vary, char *out, size_t n);

/* Status codes whose responses are written through. */
int omv_status_stored(unsigned status);

/* The "Name: value" header line that must not be stored (hop-by-hop, framing,
 * Age: recomputed when it comes back): 1 if so. len is the line's length. */
int omv_header_dropped(const char *line, size_t len);

#endif
