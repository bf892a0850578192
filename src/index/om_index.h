/*
 * The shared-memory index: URIs to object records, in one segment created
 * by the master and inherited by every process forked from it. Any process
 * may look up and mutate; see docs/ARCHITECTURE.md for the layout and the
 * lock-repair scheme.
 */
#ifndef OM_INDEX_H
#define OM_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct om_index om_index_t;

/* Hard upper bound of a URI in bytes (the configured maximum may be lower). */
#define OM_IX_URI_MAX 1024
/* The largest arena (its 16-byte units are counted in 32 bits), rounded
 * down to a size the configuration can say. */
#define OM_IX_ARENA_MAX ((uint64_t)63 << 30)

typedef struct {
	uint32_t capacity;    /* objects; fixed for the life of the segment */
	uint32_t max_uri;     /* bytes, 1..OM_IX_URI_MAX */
	uint64_t arena_bytes; /* blocks (48-byte header + URI); 0 = 112 bytes per object */
	uint32_t stripes;     /* lock stripes, a power of two; 0 = 256 */
	uint32_t procs;       /* per-process slots; 0 = 64 */
	uint32_t proc_bytes;  /* bytes of each slot; 0 = 256 */
	uint32_t hits_max;    /* reads counted per object, up to OM_IX_HITS_MAX;
	                       * 0 = not counted (no promotion) */
	uint32_t atime_res_ms; /* a read refreshes an object's recency only if it
	                        * is older than this; 0 = 500 */
} om_ix_params_t;

/* Object flags kept in the index. */
#define OM_IX_F_EPHEMERAL 0x0004u /* primary file in the memory tier only */
#define OM_IX_F_COPY      0x0008u /* a promoted copy exists in the memory tier */
#define OM_IX_F_UNCHECKED 0x0010u /* indexed by a rebuild from its record alone: the
                                   * size of its file not yet compared with it */
#define OM_IX_F_PACKED    0x0020u /* an entry in a pack (loc), not a file of its own */

/* A packed object is smaller than this (its size and loc share the
 * block's 64-bit size field), and its loc below 2^(64 - this). */
#define OM_IX_PACKED_SIZE_BITS 24u
#define OM_IX_PACKED_SIZE_MAX  ((UINT64_C(1) << OM_IX_PACKED_SIZE_BITS) - 1)
#define OM_IX_LOC_MAX          ((UINT64_C(1) << (64 - OM_IX_PACKED_SIZE_BITS)) - 1)

/* Accounting classes: where an object's bytes are counted. */
enum {
	OM_IX_CLASS_PERSIST = 0, /* primary in the persistent tier */
	OM_IX_CLASS_EPHEMERAL,   /* primary in the memory tier */
	OM_IX_CLASS_COPY,        /* promoted copy in the memory tier */
	OM_IX_NCLASS
};
#define OM_IX_SEL(c) (1u << (c))

/* An object's record, as copied out of (or into) the index. */
typedef struct {
	uint64_t id;      /* unique, increasing; names the object's file */
	uint64_t size;    /* bytes */
	int64_t expires;  /* unix seconds; 0 = never */
	uint32_t crc;     /* CRC32C of the bytes */
	uint32_t flags;   /* OM_IX_F_* */
	uint32_t hits;    /* reads since the last decay, up to the index's hits_max */
	uint32_t atime;   /* last read, in ticks (om_index_ticks()) */
	uint32_t slot;    /* the object's block: a handle for the *_slot calls */
	uint64_t loc;     /* OM_IX_F_PACKED: where in which pack (the store's), else 0 */
} om_ix_obj_t;

typedef struct {
	uint64_t objects;
	uint64_t count[OM_IX_NCLASS];
	uint64_t bytes[OM_IX_NCLASS];
	uint64_t capacity;
	uint64_t arena_bytes;      /* total block storage */
	uint64_t arena_used;       /* bytes carved into blocks (live + free lists) */
	uint64_t arena_free_lists; /* bytes of free blocks, ready for reuse by their size */
	uint64_t owner_deaths;     /* robust-lock owner deaths repaired */
	uint64_t segment_bytes;
} om_ix_usage_t;

enum om_ix_put_mode {
	OM_IX_UPSERT = 0, /* insert or replace */
	OM_IX_INSERT,     /* fail with -EEXIST if present */
	OM_IX_REPLACE,    /* fail with -ENOENT if absent */
};

/* Called for every object dropped from the index (replaced, deleted,
 * evicted, or found half-dropped by a lock repair), with its stripe lock
 * held: the store unlinks the object's files here. Must not call the index. */
typedef void (*om_ix_release_fn)(void *arg, const om_ix_obj_t *obj);

/* Iteration callback; a non-zero return stops the walk and is returned. */
typedef int (*om_ix_iter_fn)(void *arg, const char *uri, size_t len,
    const om_ix_obj_t *obj);

int om_index_create(const om_ix_params_t *p, om_index_t **out);
/* Empties ix's segment and makes it a new index with parameters p, as
 * om_index_create would, in the same mapping (-ENOSPC if that is too
 * small; the segment keeps its size). Only while nobody else maps the
 * segment. For programs that make many small indexes one after the other
 * (the index fuzzer): unmapping costs more than a short run. */
int om_index_recreate(om_index_t *ix, const om_ix_params_t *p);
/* Maps an existing segment (a descriptor inherited across exec). */
int om_index_attach(int fd, om_index_t **out);
void om_index_close(om_index_t *ix);
int om_index_fd(const om_index_t *ix);

void om_index_set_release(om_index_t *ix, om_ix_release_fn fn, void *arg);

#define OM_IX_HITS_MAX 1024u
/* The recency clock: CLOCK_MONOTONIC in ticks of 16 ms. Coarse on
 * purpose: a hot object's block is written at most once per tick. */
#define OM_IX_TICK_MS 16u
uint32_t om_index_ticks(void);
uint32_t om_index_hits_max(const om_index_t *ix);

/* Lookup flags */
#define OM_IX_TOUCH 0x1u /* record the read for LRU and promotion */

/* 0 and *out filled, or -ENOENT. Lock-free unless a writer is active on
 * the same stripe. */
int om_index_lookup(om_index_t *ix, const void *uri, size_t len,
    om_ix_obj_t *out, unsigned flags);

/*
 * Looks up n URIs at once: rc[i] is 0 (out[i] filled) or -ENOENT. Same
 * result as n calls of om_index_lookup, but the memory accesses of all n
 * are started together (prefetch), so their cache misses overlap: for
 * pipelined requests on an index larger than the CPU caches.
 */
#define OM_IX_BATCH_MAX 32
void om_index_lookup_batch(om_index_t *ix, unsigned n, const void *const *uris,
    const size_t *lens, om_ix_obj_t *out, int *rc, unsigned flags);

/*
 * Inserts or replaces. obj->id must come from om_index_next_id(). Returns
 * 0 (inserted), 1 (replaced; *old is the dropped record, already released),
 * -ESTALE (the index holds a newer id for this URI: this write is ordered
 * before it and dropped; *old is the newer record), -EEXIST, -ENOENT,
 * -ENOSPC (capacity reached), -ENOMEM (no arena space for a block of this
 * URI's size), -EINVAL (bad length).
 */
int om_index_put(om_index_t *ix, const void *uri, size_t len,
    const om_ix_obj_t *obj, enum om_ix_put_mode mode, om_ix_obj_t *old);

/*
 * Replaces only the version `match` (an id a lookup gave, not 0): the
 * test and the swap are one step under the URI's stripe lock, so a
 * conditional write cannot land over a version it did not see. As
 * om_index_put in OM_IX_REPLACE mode, but -ECANCELED (*old is the record
 * found) if the URI holds another id; -ENOENT if it holds none.
 */
int om_index_put_match(om_index_t *ix, const void *uri, size_t len,
    const om_ix_obj_t *obj, uint64_t match, om_ix_obj_t *old);

/* Deletes the URI (only if its id is `id`, unless id is 0). 0 or -ENOENT. */
int om_index_delete(om_index_t *ix, const void *uri, size_t len, uint64_t id,
    om_ix_obj_t *old);
/* Same by slot and id (from a lookup, sample or iteration). */
int om_index_delete_slot(om_index_t *ix, uint32_t slot, uint64_t id,
    om_ix_obj_t *old);
/* Sets or clears OM_IX_F_COPY or OM_IX_F_UNCHECKED of the object (slot, id).
 * 0 or -ENOENT. */
int om_index_update_flags(om_index_t *ix, uint32_t slot, uint64_t id,
    uint32_t set, uint32_t clear);

/* Moves a packed object (slot, id) from loc `from` to `to` (a compaction
 * copied its entry): 0, or -ENOENT if it is no longer that object there. */
int om_index_relocate(om_index_t *ix, uint32_t slot, uint64_t id, uint64_t from, uint64_t to);

/* Visits every object, one stripe at a time (no lock held during fn). */
int om_index_iterate(om_index_t *ix, om_ix_iter_fn fn, void *arg);

/*
 * Approximate LRU: sweeps the arena from *cursor (a clock hand), looks at
 * the next k objects of the selected classes (OM_IX_SEL bits) and returns
 * the one read longest ago. With uri_len > 0, only objects whose block has
 * the size a URI of that length needs (to free space after -ENOMEM).
 * 0, or -ENOENT when none is selected.
 */
int om_index_sample(om_index_t *ix, unsigned sel, unsigned k, size_t uri_len,
    uint32_t *cursor, om_ix_obj_t *victim);

/*
 * Visits every linked entry without locks, with a validated snapshot (all
 * fields of one version of one object). For scans by the cache manager;
 * act on what it finds through the *_slot calls, which recheck the id.
 */
typedef int (*om_ix_scan_fn)(void *arg, const om_ix_obj_t *obj);
int om_index_scan(om_index_t *ix, om_ix_scan_fn fn, void *arg);
/* The object at a slot handle that a lookup or scan gave, if it is still
 * linked and still that id (a validated snapshot, no lock); -ENOENT. */
int om_index_slot_get(om_index_t *ix, uint32_t slot, uint64_t id, om_ix_obj_t *out);
/* The same for at most max objects from *cursor (0 to begin; a block
 * offset it gave back), without locks: the cursor moves on. fn returning
 * non-zero stops the walk after that object (a negative value is
 * returned). Returns 1 when the walk reached the end of the arena (the
 * cursor is back at 0), else 0. */
int om_index_walk(om_index_t *ix, uint32_t *cursor, unsigned max, om_ix_scan_fn fn, void *arg);

/*
 * Listing by URI prefix, in pages (the protocol's LIST and PURGE): the
 * objects whose URI begins with prefix (plen bytes; 0: every object),
 * bucket after bucket of the hash table from *cursor (0 to begin). An
 * object stays in the bucket its URI hashes to for its whole life, a
 * replace included, and each bucket is read as one version (optimistic,
 * validated by its stripe's sequence counter; under the stripe's lock
 * after 4 tries) and handed to fn whole, with no lock held: so a URI that
 * exists throughout a walk, however many calls it takes, is seen exactly
 * once, and one stored or deleted meanwhile at most once. fn gets each
 * bucket's matches (only buckets that have some) and returns
 * OM_IX_LIST_MORE to go on, OM_IX_LIST_LAST to stop after them, or
 * OM_IX_LIST_REFUSE to stop before them (the cursor stays on that
 * bucket). The walk also stops after the bucket with which max_buckets
 * buckets were read or max_objects objects looked at. Returns 1 when it
 * reached the end (*cursor is 0 again), 0 with *cursor on the next bucket
 * to read, -EINVAL for a cursor that is not a bucket, or -ENOMEM.
 */
typedef struct {
	const char *uri;  /* len bytes, not NUL-terminated; valid during fn */
	size_t len;
	om_ix_obj_t obj;
} om_ix_entry_t;
enum { OM_IX_LIST_MORE = 0, OM_IX_LIST_LAST = 1, OM_IX_LIST_REFUSE = 2 };
typedef int (*om_ix_list_fn)(void *arg, const om_ix_entry_t *e, unsigned n);
int om_index_list(om_index_t *ix, uint32_t *cursor, const void *prefix, size_t plen,
    unsigned max_buckets, unsigned max_objects, om_ix_list_fn fn, void *arg);
/* Buckets of the hash table: a list cursor is below this. */
uint32_t om_index_buckets(const om_index_t *ix);
/* A tag of this segment (never 0), derived from its random hash key: the
 * same for the segment's life (across reloads and restarts that attach
 * it), another after a rebuild into a new segment. A listing's cursor
 * that a client keeps carries it, so that one from another index (whose
 * buckets hold other URIs) is refused instead of listing wrongly. */
uint32_t om_index_tag(const om_index_t *ix);

/* Bytes per accounting class, summed over the stripes (cheap, no lock). */
void om_index_class_bytes(om_index_t *ix, uint64_t bytes[OM_IX_NCLASS]);

/* Halves every read counter and clamps ancient atimes (the manager runs
 * this periodically). */
void om_index_decay(om_index_t *ix);

/*
 * Notes of dropped object files, for the processes that keep descriptors
 * of them open (a worker's descriptor cache): whoever unlinks an object's
 * file notes its key; a reader follows the notes from its cursor (start at
 * om_index_notes_head()). om_index_notes calls fn for each note since
 * *cursor and advances it, stopping before a note not yet written; it
 * returns -ERANGE, the cursor at the head, if notes were lost (the ring of
 * the last IX_NOTES went round past the cursor): the reader must then
 * check all it holds. A cursor that stays behind the head (a writer died
 * between taking a note and writing it) calls for the same.
 */
void om_index_note_drop(om_index_t *ix, uint64_t key);
uint64_t om_index_notes_head(om_index_t *ix);
int om_index_notes(om_index_t *ix, uint64_t *cursor, void (*fn)(void *arg, uint64_t key), void *arg);

uint64_t om_index_next_id(om_index_t *ix);
/* Makes every later id at least `next` (after a rebuild). */
void om_index_reserve_ids(om_index_t *ix, uint64_t next);

void om_index_usage(om_index_t *ix, om_ix_usage_t *u);
uint32_t om_index_max_uri(const om_index_t *ix);
/* Objects the index can hold. */
uint32_t om_index_capacity(const om_index_t *ix);

/*
 * A segment kept in a file (so that a restart finds it): om_index_create_in
 * makes an empty one in fd (truncating what it held), om_index_attach maps
 * an existing one (-EPROTO if it is not one of this layout version, or its
 * header does not describe a sound layout). Its state says whether the
 * processes that used it left it cleanly; its owner area (256 bytes) is
 * the caller's, to say what the segment belongs to. om_index_recover, run
 * before any other use of an attached segment whose processes are all
 * gone, settles what a dead one left (as lock repair does) and starts
 * every lock afresh.
 */
#define OM_IX_STATE_RUNNING 0u /* in use, or its processes died */
#define OM_IX_STATE_CLEAN   1u /* its last process stopped cleanly */
int om_index_create_in(int fd, const om_ix_params_t *p, om_index_t **out);
/* 1 if the segment has the layout and settings p would give it. */
int om_index_same_params(const om_index_t *ix, const om_ix_params_t *p);
uint32_t om_index_state(const om_index_t *ix);
void om_index_set_state(om_index_t *ix, uint32_t state);
void *om_index_owner(om_index_t *ix, size_t *len);
int om_index_recover(om_index_t *ix);

/* Bytes of index memory an object costs: block header + URI rounded up
 * to 16 + its share of the bucket array. */
size_t om_index_object_bytes(const om_index_t *ix, size_t uri_len);

/* Per-process slot of proc_bytes in the segment, or NULL. */
void *om_index_proc_area(om_index_t *ix, unsigned slot);
unsigned om_index_procs(const om_index_t *ix);
size_t om_index_proc_bytes(const om_index_t *ix);

/*
 * Full consistency check: takes every lock (repairing as needed), walks
 * every chain, the free list of every block size and the arena's blocks.
 * 0, or -EUCLEAN with a description in err.
 */
int om_index_check(om_index_t *ix, char *err, size_t errlen);

/* Test hook: fn(arg, step) runs at every step of a mutation (after each
 * lock, log commit and record). One per process; NULL to clear. */
void om_index_set_hook(om_index_t *ix, void (*fn)(void *arg, unsigned step),
    void *arg);

#endif
