/*
 * A pack's image, as a rebuild or a compaction reads it from
 * TIER/packs/NNNNNN (src/store/store_meta.c, om_pack_walk). The first
 * input byte picks the mode:
 *
 *   0 the rest as the whole file;
 *   1 a valid header (tier 1, pack 0x123) and then the rest as entries;
 *   2 the same, with entries made from the input: each a record and
 *     bytes, its record's and bytes' check sums right, laid out as the
 *     store writes them, then mutated by a few input-chosen byte flips.
 *
 * Checks: the walk stops inside the image and at an entry boundary; every
 * entry it hands out lies inside the image, its loc names this pack and a
 * 16-aligned offset whose bytes hold the record's size and check sum (or,
 * passed as bad, do not and more follows), its
 * record decodes, and the length word before the bytes is the record's
 * length; the walk of an image of well-formed entries reaches its end and
 * hands out each of them in order, live or dead as written.
 */
#include <string.h>

#include "core/om_core.h"
#include "fuzz.h"
#include "store/store_meta.h"

#define NO   0x123u
#define TIER 1

typedef struct {
	const uint8_t *img;
	size_t len;
	unsigned n;
	uint64_t want_locs[64];
	uint32_t want_state[64];
	unsigned want_n;
	int check_order;
} walk_t;

static int
seen(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	walk_t *w = arg;
	uint64_t d = OM_PACK_OFF(loc);

	FZ_ASSERT(OM_PACK_NO(loc) == NO, "loc of pack %u", OM_PACK_NO(loc));
	FZ_ASSERT(d % 16 == 0 && d >= OM_PACK_HDR + OM_META_HDR + 8, "data offset %llu", (unsigned long long)d);
	FZ_ASSERT(data == w->img + d, "data pointer");
	FZ_ASSERT(d + r->size <= w->len, "bytes past the image");
	if (state == OM_PACK_BAD) {
		/* Damaged in the middle: more follows it, its word is not DEAD. */
		FZ_ASSERT(om_crc32c(0, data, (size_t)r->size) != r->crc, "a bad entry whose bytes check");
		FZ_ASSERT(om_get32(data - 8) != OM_PACK_DEAD, "a dead entry called bad");
		FZ_ASSERT(d + OM_PACK_ALIGN16(r->size) < w->len, "a bad entry at the end");
	} else {
		FZ_ASSERT(state == om_get32(data - 8), "state word");
		FZ_ASSERT(state == OM_PACK_DEAD || om_crc32c(0, data, (size_t)r->size) == r->crc,
		    "bytes against their check sum");
	}
	FZ_ASSERT(om_get32(data - 4) >= OM_META_HDR, "length word");
	if (w->check_order && w->n < w->want_n) {
		FZ_ASSERT(loc == w->want_locs[w->n], "entry %u at another loc", w->n);
		FZ_ASSERT(state == w->want_state[w->n], "entry %u state", w->n);
	}
	w->n++;
	return 0;
}

static void
walk(walk_t *w)
{
	uint64_t end = om_pack_walk(w->img, w->len, TIER, NO, seen, w);

	FZ_ASSERT(end <= w->len, "stopped at %llu of %zu", (unsigned long long)end, w->len);
	FZ_ASSERT(end == 0 || (end >= OM_PACK_HDR && end % 16 == 0), "stopped at %llu", (unsigned long long)end);
}

/* Entries made from the input, as om_pack_append lays them out. */
static size_t
build(fz_in_t *in, uint8_t *img, size_t cap, walk_t *w)
{
	size_t at = OM_PACK_HDR;
	unsigned n = fz_u8(in) % 16;

	om_pack_header_make(img, TIER, NO);
	for (unsigned i = 0; i < n; i++) {
		uint8_t uri[64], data[512];
		om_meta_rec_t r;
		size_t rlen, d;
		uint32_t state;

		memset(&r, 0, sizeof(r));
		r.kind = OM_KIND_PERSIST;
		r.id = (uint64_t)i + 1;
		r.size = fz_u16(in) % sizeof(data);
		r.uri_len = 1 + fz_u8(in) % (sizeof(uri) - 1);
		for (uint32_t k = 0; k < r.uri_len; k++)
			uri[k] = fz_u8(in);
		for (uint64_t k = 0; k < r.size; k++)
			data[k] = fz_u8(in);
		r.uri = uri;
		r.crc = om_crc32c(0, data, (size_t)r.size);
		state = (fz_u8(in) & 1) ? OM_PACK_DEAD : OM_PACK_LIVE;
		if (at + om_pack_entry_len(OM_META_HDR + r.uri_len, r.size) > cap)
			break;
		memset(img + at, 0, (size_t)om_pack_entry_len(OM_META_HDR + r.uri_len, r.size));
		rlen = om_meta_encode(&r, img + at, cap - at);
		FZ_ASSERT(rlen == OM_META_HDR + r.uri_len, "encode");
		d = at + (size_t)OM_PACK_ALIGN16(rlen + 8);
		om_le32(img + d - 8, state);
		om_le32(img + d - 4, (uint32_t)rlen);
		memcpy(img + d, data, (size_t)r.size);
		w->want_locs[w->want_n] = OM_PACK_LOC(NO, d);
		w->want_state[w->want_n] = state;
		w->want_n++;
		at += (size_t)om_pack_entry_len(rlen, r.size);
	}
	return at;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fz_in_t in = { data, size };
	walk_t w;
	uint8_t *img;
	size_t len;

	if (size == 0)
		return 0;
	memset(&w, 0, sizeof(w));
	switch (data[0] % 3) {
	case 0:
		/* An exact copy: ASan sees any read past the image. */
		len = size - 1;
		img = malloc(len ? len : 1);
		memcpy(img, data + 1, len);
		break;
	case 1:
		len = OM_PACK_HDR + size - 1;
		img = malloc(len);
		om_pack_header_make(img, TIER, NO);
		memcpy(img + OM_PACK_HDR, data + 1, size - 1);
		break;
	default: {
		uint8_t *big = malloc(16 * 1024);
		unsigned flips;

		(void)fz_u8(&in);
		len = build(&in, big, 16 * 1024, &w);
		img = malloc(len);
		memcpy(img, big, len);
		free(big);
		w.img = img;
		w.len = len;
		w.check_order = 1;
		walk(&w);
		FZ_ASSERT(w.n == w.want_n, "walked %u of %u entries", w.n, w.want_n);
		/* Damage: the walk still stays inside, and stops at or
		 * before the damage when it is in an entry. */
		flips = fz_u8(&in) % 4;
		for (unsigned i = 0; i < flips && len > 0; i++) {
			size_t at = fz_u16(&in) % len;

			img[at] ^= (uint8_t)(1u << (fz_u8(&in) % 8));
		}
		memset(&w, 0, sizeof(w));
		break;
	}
	}
	w.img = img;
	w.len = len;
	walk(&w);
	free(img);
	return 0;
}
