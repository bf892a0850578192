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

#endif
