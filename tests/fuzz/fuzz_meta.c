/*
 * The per-object record (extended attribute "user.objmapper") that a
 * rebuild reads back from every object file (src/store/store_meta.c,
 * om_meta_decode). The first input byte picks the mode:
 *
 *   0 the rest as a record, as read from the attribute;
 *   1 the same with its check sum (bytes 52..55) set right, so that the
 *     fuzzer gets past it to the lengths and fields behind;
 *   2 a record's fields taken from the input, encoded into a buffer of a
 *     size from the input, decoded back.
 *
 * Checks: a record that decodes has consistent lengths, a known kind, a
 * non-zero id, URI and metadata inside the buffer, and encodes back to the
 * same bytes (when its reserved word is 0: encoding writes 0 there); an
 * encoded record decodes to the fields it was made of; the encoder never
 * writes past the capacity it is given.
 */
#include <errno.h>
#include <string.h>

#include "core/om_core.h"
#include "fuzz.h"
#include "store/store_meta.h"

static void
check_decoded(const uint8_t *buf, size_t len)
{
	om_meta_rec_t r;
	uint8_t *again;
	size_t n;
	int rc;

	memset(&r, 0x5a, sizeof(r));
	rc = om_meta_decode(buf, len, &r);
	if (rc != 0) {
		FZ_ASSERT(rc == -EBADMSG, "rc %d", rc);
		return;
	}
	FZ_ASSERT(len == OM_META_HDR + (size_t)r.uri_len + r.meta_len, "lengths");
	FZ_ASSERT(r.uri_len > 0 && r.uri_len <= 0xffff, "uri_len %u", r.uri_len);
	FZ_ASSERT(r.kind >= OM_KIND_PERSIST && r.kind <= OM_KIND_COPY, "kind %u", r.kind);
	FZ_ASSERT(r.id != 0, "id 0");
	FZ_ASSERT((const uint8_t *)r.uri == buf + OM_META_HDR, "uri pointer");
	FZ_ASSERT(r.meta_len == 0 ? r.meta == NULL :
	    (const uint8_t *)r.meta == buf + OM_META_HDR + r.uri_len, "meta pointer");
	/* What the rebuild copies (remember_copy, om_index_put) is inside. */
	{
		volatile uint8_t sink = 0;
		const uint8_t *u = r.uri, *m = r.meta;

		for (uint32_t i = 0; i < r.uri_len; i++)
			sink ^= u[i];
		for (uint32_t i = 0; i < r.meta_len; i++)
			sink ^= m[i];
		(void)sink;
	}
	again = malloc(len);
	n = om_meta_encode(&r, again, len);
	FZ_ASSERT(n == len, "re-encoded to %zu of %zu bytes", n, len);
	if (buf[48] == 0 && buf[49] == 0 && buf[50] == 0 && buf[51] == 0)
		FZ_ASSERT(memcmp(again, buf, len) == 0, "record does not round-trip");
	else
		FZ_ASSERT(om_meta_decode(again, len, &r) == 0, "re-encoded record refused");
	/* One byte short does not fit. */
	FZ_ASSERT(om_meta_encode(&r, again, len - 1) == 0, "encoded into too small a buffer");
	free(again);
}

static void
fix_crc(uint8_t *b, size_t len)
{
	uint32_t c;

	if (len < OM_META_HDR)
		return;
	c = om_crc32c(0, b, 52);
	c = om_crc32c(c, b + OM_META_HDR, len - OM_META_HDR);
	for (int i = 0; i < 4; i++)
		b[52 + i] = (uint8_t)(c >> (8 * i));
}

static void
fuzz_fields(fz_in_t *in)
{
	om_meta_rec_t r, d;
	uint8_t *uri, *meta, *buf;
	size_t cap, n;

	memset(&r, 0, sizeof(r));
	r.kind = (uint8_t)(fz_u8(in) % 4);
	r.id = fz_u64(in);
	r.size = fz_u64(in);
	r.expires = (int64_t)fz_u64(in);
	r.mtime = (int64_t)fz_u64(in);
	r.crc = fz_u32(in);
	r.uri_len = fz_u16(in) % 1100;
	r.meta_len = fz_u16(in) % 2100;
	cap = fz_u16(in) % (OM_META_REC_MAX + 64);
	uri = malloc(r.uri_len + 1);
	meta = malloc(r.meta_len + 1);
	for (uint32_t i = 0; i < r.uri_len; i++)
		uri[i] = fz_u8(in);
	for (uint32_t i = 0; i < r.meta_len; i++)
		meta[i] = fz_u8(in);
	r.uri = uri;
	r.meta = meta;
	buf = malloc(cap ? cap : 1);
	n = om_meta_encode(&r, buf, cap);
	if (OM_META_HDR + (size_t)r.uri_len + r.meta_len > cap) {
		FZ_ASSERT(n == 0, "encoded %zu bytes into %zu", n, cap);
	} else {
		FZ_ASSERT(n == OM_META_HDR + (size_t)r.uri_len + r.meta_len, "encoded %zu", n);
		if (r.id != 0 && r.uri_len != 0 && r.kind != 0) {
			FZ_ASSERT(om_meta_decode(buf, n, &d) == 0, "own record refused");
			FZ_ASSERT(d.kind == r.kind && d.id == r.id && d.size == r.size &&
			    d.expires == r.expires && d.mtime == r.mtime && d.crc == r.crc &&
			    d.uri_len == r.uri_len && d.meta_len == r.meta_len &&
			    memcmp(d.uri, uri, r.uri_len) == 0 &&
			    (r.meta_len == 0 || memcmp(d.meta, meta, r.meta_len) == 0),
			    "fields changed");
		} else {
			FZ_ASSERT(om_meta_decode(buf, n, &d) == -EBADMSG, "bad record accepted");
		}
		check_decoded(buf, n);
	}
	free(buf);
	free(uri);
	free(meta);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_in_t in = { data, size };
	uint8_t *b;

	if (size == 0)
		return 0;
	switch (data[0] % 3) {
	case 0:
	case 1:
		/* An exact copy: ASan sees any read past the record. */
		b = malloc(size - 1 ? size - 1 : 1);
		memcpy(b, data + 1, size - 1);
		if (data[0] % 3 == 1)
			fix_crc(b, size - 1);
		check_decoded(b, size - 1);
		free(b);
		break;
	case 2:
		(void)fz_u8(&in);
		fuzz_fields(&in);
		break;
	}
	return 0;
}
