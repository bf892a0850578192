/*
 * Encoding of the per-object record (see store_meta.h): fixed-width
 * little-endian fields, then the URI and the metadata blob, protected by a
 * CRC32C so that a rebuild never trusts a damaged record.
 */
#include <errno.h>
#include <string.h>

#include "core/om_core.h"
#include "store/store_meta.h"

/*
 *  0  4  magic "OMO1"
 *  4  1  version
 *  5  1  kind
 *  6  2  URI length
 *  8  4  metadata length
 * 12  4  CRC32C of the object's bytes
 * 16  8  id
 * 24  8  size
 * 32  8  expires (unix seconds, 0 = never)
 * 40  8  mtime (unix seconds)
 * 48  4  reserved, 0
 * 52  4  CRC32C of bytes 0..51, the URI and the metadata
 * 56     URI, then metadata
 */
size_t
om_meta_encode(const om_meta_rec_t *r, uint8_t *buf, size_t cap)
{
	size_t len = OM_META_HDR + (size_t)r->uri_len + r->meta_len;
	uint32_t c;

	if (len > cap || r->uri_len > 0xffff)
		return 0;
	om_le32(buf + 0, OM_META_MAGIC);
	buf[4] = OM_META_VERSION;
	buf[5] = r->kind;
	om_le16(buf + 6, (uint16_t)r->uri_len);
	om_le32(buf + 8, r->meta_len);
	om_le32(buf + 12, r->crc);
	om_le64(buf + 16, r->id);
	om_le64(buf + 24, r->size);
	om_le64(buf + 32, (uint64_t)r->expires);
	om_le64(buf + 40, (uint64_t)r->mtime);
	om_le32(buf + 48, 0);
	if (r->uri_len)
		memcpy(buf + OM_META_HDR, r->uri, r->uri_len);
	if (r->meta_len)
		memcpy(buf + OM_META_HDR + r->uri_len, r->meta, r->meta_len);
	c = om_crc32c(0, buf, 52);
	c = om_crc32c(c, buf + OM_META_HDR, len - OM_META_HDR);
	om_le32(buf + 52, c);
	return len;
}

int
om_meta_decode(const uint8_t *buf, size_t len, om_meta_rec_t *r)
{
	uint32_t c;
	size_t want;

	if (len < OM_META_HDR || om_get32(buf) != OM_META_MAGIC || buf[4] != OM_META_VERSION)
		return -EBADMSG;
	memset(r, 0, sizeof(*r));
	r->kind = buf[5];
	r->uri_len = om_get16(buf + 6);
	r->meta_len = om_get32(buf + 8);
	want = OM_META_HDR + (size_t)r->uri_len + r->meta_len;
	if (want != len || r->uri_len == 0)
		return -EBADMSG;
	if (r->kind < OM_KIND_PERSIST || r->kind > OM_KIND_COPY)
		return -EBADMSG;
	c = om_crc32c(0, buf, 52);
	c = om_crc32c(c, buf + OM_META_HDR, len - OM_META_HDR);
	if (c != om_get32(buf + 52))
		return -EBADMSG;
	r->crc = om_get32(buf + 12);
	r->id = om_get64(buf + 16);
	r->size = om_get64(buf + 24);
	r->expires = (int64_t)om_get64(buf + 32);
	r->mtime = (int64_t)om_get64(buf + 40);
	r->uri = buf + OM_META_HDR;
	r->meta = r->meta_len ? buf + OM_META_HDR + r->uri_len : NULL;
	return r->id != 0 ? 0 : -EBADMSG;
}

/* ---- packs (store_pack.c): a pack's header and its entries ------------- */

void
om_pack_header_make(uint8_t *h, int tier, uint32_t no)
{
	memset(h, 0, OM_PACK_HDR);
	om_le32(h, OM_PACK_MAGIC);
	h[4] = 1;
	h[5] = (uint8_t)tier;
	om_le32(h + 8, no);
	om_le32(h + 60, om_crc32c(0, h, 60));
}

int
om_pack_header_check(const uint8_t *h, size_t len, int tier, uint32_t no)
{
	if (len < OM_PACK_HDR || om_get32(h) != OM_PACK_MAGIC || h[4] != 1 || h[5] != (uint8_t)tier ||
	    om_get32(h + 8) != no || om_get32(h + 60) != om_crc32c(0, h, 60))
		return -EBADMSG;
	return 0;
}

/*
 * Walks a pack's image (len bytes read from it): fn gets every entry that
 * checks (record, length, bytes against their checksum), live or dead,
 * with its loc and state. Stops at the first that does not: the end of
 * what a writer that died, or failed, wrote. Returns the offset where it
 * stopped. Shared with the fuzzer (tests/fuzz/fuzz_pack.c).
 */
uint64_t
om_pack_walk(const uint8_t *img, size_t len, int tier, uint32_t no,
    int (*fn)(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data),
    void *arg)
{
	uint64_t at = OM_PACK_HDR;

	if (om_pack_header_check(img, len, tier, no) != 0)
		return 0;
	while (at + OM_META_HDR + 8 <= len) {
		om_meta_rec_t r;
		uint64_t d, elen;
		uint32_t rlen, state;
		size_t avail = len - (size_t)at;

		if (om_get32(img + at) != OM_META_MAGIC)
			break;
		/* The record's own lengths: its header says them. */
		rlen = OM_META_HDR + (uint32_t)(img[at + 6] | img[at + 7] << 8) + om_get32(img + at + 8);
		if (rlen > OM_META_REC_MAX || rlen > avail || om_meta_decode(img + at, rlen, &r) != 0)
			break;
		d = at + OM_PACK_ALIGN16((uint64_t)rlen + 8);
		elen = om_pack_entry_len(rlen, r.size);
		if (r.size > OM_PACK_BYTES || at + elen > len || om_get32(img + d - 4) != rlen)
			break;
		state = om_get32(img + d - 8);
		if (om_crc32c(0, img + d, (size_t)r.size) != r.crc) {
			/* The end of what a writer wrote (nothing follows), or
			 * damage in the middle: that entry alone is bad, its
			 * record (which checks) says where the next begins. */
			if (at + elen >= len)
				break;
			if (state != OM_PACK_DEAD)
				state = OM_PACK_BAD;
		}
		if (fn != NULL && fn(arg, &r, OM_PACK_LOC(no, d), state, img + d) != 0)
			break;
		at += elen;
	}
	return at;
}

