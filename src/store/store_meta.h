/*
 * The record kept with every object file (extended attribute
 * "user.objmapper"): what a rebuild needs to put the object back in the
 * index. Byte layout in docs/ARCHITECTURE.md. Private to src/store.
 */
#ifndef OM_STORE_META_H
#define OM_STORE_META_H

#include <stddef.h>
#include <stdint.h>

#define OM_META_XATTR    "user.objmapper"
#define OM_META_MAGIC    0x314f4d4fu /* "OMO1" little-endian */
#define OM_META_VERSION  1
#define OM_META_HDR      56
/* Worst case record: header + longest URI + largest metadata blob. Fits
 * the 4 KiB that ext4 gives all of an inode's attributes. */
#define OM_META_REC_MAX  (OM_META_HDR + 1024 + 2048)

enum om_meta_kind {
	OM_KIND_PERSIST = 1,   /* primary, persistent tier */
	OM_KIND_EPHEMERAL = 2, /* primary, memory tier only */
	OM_KIND_COPY = 3,      /* promoted copy of a persistent object */
	OM_KIND_PACKED = 4,    /* never in a record: an intent on a pack entry (intent_loc) */
};

typedef struct {
	uint8_t kind;
	uint64_t id;
	uint64_t size;
	int64_t expires;
	int64_t mtime;
	uint32_t crc;
	const void *uri;
	uint32_t uri_len;
	const void *meta;
	uint32_t meta_len;
} om_meta_rec_t;

/* Returns the record's length, or 0 if it does not fit cap. */
size_t om_meta_encode(const om_meta_rec_t *r, uint8_t *buf, size_t cap);
/* 0, or -EBADMSG (wrong magic, version, lengths or check sum). The uri
 * and meta pointers of r point into buf. */
int om_meta_decode(const uint8_t *buf, size_t len, om_meta_rec_t *r);

/* A pack: TIER/packs/NNNNNN (its number, 6 hex digits), a 64-byte header,
 * then entries, each 16-aligned: the record, the state word (live or
 * dead) and the record's length just before the bytes, which begin
 * 16-aligned, and padding. An object's loc says which pack and where its
 * bytes begin (docs/ARCHITECTURE.md, "Packs"). */
#define OM_PACK_BYTES   ((uint64_t)4 << 20) /* a pack is never longer (OM_STORE_PACK_BYTES) */
#define OM_PACK_HDR     64u
#define OM_PACK_MAGIC   0x31504d4fu /* "OMP1" */
#define OM_PACK_NO_BITS 22u
#define OM_PACK_NO_MAX  ((1u << OM_PACK_NO_BITS) - 1)
#define OM_PACK_LOC(no, off) ((uint64_t)(no) << 18 | (uint64_t)(off) >> 4)
#define OM_PACK_NO(loc)  ((uint32_t)((loc) >> 18))
#define OM_PACK_OFF(loc) (((loc) & 0x3ffffu) << 4)
#define OM_PACK_LIVE    0u
#define OM_PACK_DEAD    0x44414544u /* "DEAD" */
#define OM_PACK_BAD     0xffffffffu /* never written: om_pack_walk's word for a live
                                     * entry whose record checks and bytes do not */
#define OM_PACK_ALIGN16(n) (((n) + 15) & ~(uint64_t)15)

/* The entry of bytes at data offset d: where it begins and the total
 * length of an entry with a record of rlen and size bytes. */
static inline uint64_t
om_pack_entry_len(size_t rlen, uint64_t size)
{
	return OM_PACK_ALIGN16(rlen + 8) + OM_PACK_ALIGN16(size);
}
/* A pack's header (OM_PACK_HDR bytes): made, and checked (0 or -EBADMSG). */
void om_pack_header_make(uint8_t *h, int tier, uint32_t no);
int om_pack_header_check(const uint8_t *h, size_t len, int tier, uint32_t no);
/* Walks a pack's image (len bytes of pack no of the tier): fn gets each
 * entry that checks, live or dead (state), with its loc, and as
 * OM_PACK_BAD a live one whose record checks but whose bytes do not,
 * when more follows it (damage: the walk goes on past it); a non-zero
 * return stops the walk. Stops at the first entry whose record or
 * lengths do not check, or whose bytes do not and nothing follows (the
 * end of what a writer wrote). Returns where it stopped (0: no valid
 * header). Also the fuzzer's. */
uint64_t om_pack_walk(const uint8_t *img, size_t len, int tier, uint32_t no,
    int (*fn)(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data),
    void *arg);
#endif
