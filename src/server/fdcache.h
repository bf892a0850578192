/*
 * A worker's descriptor cache (fdcache.c) and the references to object
 * files that responses hold. Worker processes only.
 */
#ifndef OM_FDCACHE_H
#define OM_FDCACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "index/om_index.h"

/*
 * Object files kept open for the reads the worker does itself (sendfile,
 * pread) and for clients that read only at explicit offsets (HELLO
 * OFFSET_READS); [cache] open_files entries, direct-mapped by (tier, id).
 * Objects are immutable and ids never reused, so an entry never serves
 * wrong bytes. A replaced, deleted or evicted object's entry is closed
 * when the worker reads the index's note of its file
 * (om_index_note_drop), so that its space is given back.
 */
typedef struct {
	uint64_t id;   /* 0 = empty */
	int tier;
	int fd;
	unsigned refs; /* references held (responses queued with this descriptor) */
	bool dropped;  /* its file is gone: closed once refs is 0 */
	/* The object's record, once read (an object never changes, so one
	 * read serves every GET that wants its metadata and mtime). */
	bool has_meta;
	uint16_t meta_len;
	int64_t mtime;
	uint8_t *meta; /* malloc'd, meta_len bytes (NULL if none) */
	/* A small object served from its entry OM_FDC_MAP_HITS times is
	 * mapped (read-only, shared), and its inline GETs copy from the
	 * mapping instead of calling pread. */
	uint16_t hits;    /* times served from the cache (saturating) */
	bool map_failed;  /* mmap refused, or a copy faulted: pread from now on */
	uint8_t *map;     /* NULL if not mapped */
	size_t map_len;
	uint64_t used;    /* packs: the cache's clock at the last use */
} om_fdc_entry_t;

/* Packs (OM_STORE_IS_PACK_ID) have a table of their own: each serves many
 * objects, so two of them must never evict each other at every other
 * GET as two entries of a direct-mapped table would. Open addressing, a
 * probe of OM_FDC_PACK_PROBE slots, the least recently used one not in
 * use evicted. */
#define OM_FDC_PACKS      256u
#define OM_FDC_PACK_PROBE 8u

typedef struct {
	om_index_t *ix;
	om_fdc_entry_t *e;
	unsigned size;          /* entries: a power of two */
	unsigned shift;         /* 64 - log2(size) */
	unsigned count;         /* entries in use */
	unsigned mapped;        /* entries with a mapping */
	bool maps;              /* mappings allowed (the SIGBUS guard is installed) */
	bool deferred;          /* entries dropped while in use */
	om_fdc_entry_t *pk;     /* OM_FDC_PACKS entries for packs */
	uint64_t clock;         /* pack uses */
	uint64_t notes_cursor;  /* the index's notes of dropped files, read */
	uint64_t notes_at_tick; /* the cursor at the last tick */
	bool notes_behind;      /* and it was behind the head then */
} om_fdc_t;

/*
 * A descriptor of an object file, held: the cache's (its entry counts the
 * reference) or one of its own. om_fdref_put releases it (the entry's
 * count, or closes its own) and clears it; om_fdref_take hands it over,
 * clearing the source.
 */
typedef struct {
	int fd;             /* -1: none */
	om_fdc_entry_t *e;  /* the cache's entry of fd, or NULL: fd is the reference's own */
} om_fdref_t;

#define OM_FDREF_NONE ((om_fdref_t){ -1, NULL })

void om_fdref_put(om_fdref_t *r);
om_fdref_t om_fdref_take(om_fdref_t *r);

/* Entries of `want` as far as the descriptor limit allows beside
 * max_connections, rounded down to a power of two (at least 16). 0 or
 * -ENOMEM. */
int om_fdc_init(om_fdc_t *c, om_index_t *ix, uint64_t want, unsigned max_connections);
/* Closes every entry (none may be held) and frees the table. */
void om_fdc_clear(om_fdc_t *c);
/* A reference to the cached descriptor of (tier, id), or none (fd -1). */
om_fdref_t om_fdc_get(om_fdc_t *c, int tier, uint64_t id);
/* Takes fd into the cache and returns a reference to it; if the entry's
 * slot is held by another object in use, fd stays the reference's own. */
om_fdref_t om_fdc_add(om_fdc_t *c, int tier, uint64_t id, int fd);
/* Keeps a copy of the object's metadata and mtime in r's entry, if it has
 * one (and memory allows). */
void om_fdc_set_meta(const om_fdref_t *r, const void *meta, size_t len, int64_t mtime);
/*
 * Hits of an entry before its object is mapped, and the objects mapped:
 * at most OM_FDC_MAP_MAX bytes, at most OM_FDC_MAPS_MAX mappings per
 * worker (each is an area of the address space, and vm.max_map_count,
 * 65,530 by default, bounds them for the whole process, malloc's too).
 */
#define OM_FDC_MAP_HITS 16
#define OM_FDC_MAP_MAX  (64u * 1024u)
#define OM_FDC_MAPS_MAX 16384u
/* The mapping of r's object (size bytes), made at the first call once its
 * entry has OM_FDC_MAP_HITS hits; NULL if r has no entry, the entry is
 * not that hot, or the object cannot be mapped. */
const uint8_t *om_fdc_map(om_fdc_t *c, const om_fdref_t *r, uint64_t size);
/* The mapping of a pack's entry (OM_STORE_PACK_BYTES of it, at once:
 * many objects share it), or NULL (mappings refused: pread). */
const uint8_t *om_fdc_map_pack(om_fdc_t *c, const om_fdref_t *r);
/* Gives up r's mapping (a copy from it faulted): pread from now on. */
void om_fdc_map_fails(om_fdc_t *c, const om_fdref_t *r);
/* Reads the index's notes of dropped files and closes their entries (one
 * load when there are none): every turn of the worker's loop. */
void om_fdc_follow(om_fdc_t *c);
/* Once a second: entries dropped while in use, and notes never written. */
void om_fdc_tick(om_fdc_t *c);

#endif
