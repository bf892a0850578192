/*
 * The object store: object files in a memory tier and a persistent tier,
 * published atomically and indexed in the shared-memory index. Every
 * process opens its own om_store_t over the inherited index; see
 * docs/ARCHITECTURE.md for the on-disk layout and the publish protocol.
 */
#ifndef OM_STORE_H
#define OM_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "index/om_index.h"

typedef struct om_store om_store_t;
typedef struct om_put_txn om_put_txn_t;

enum om_tier_id {
	OM_TIER_MEM = 0,  /* tmpfs: ephemeral objects and promoted copies */
	OM_TIER_DISK = 1, /* persistent */
};

enum om_durability {
	/* Publish without fsync: an acknowledged object survives any crash of
	 * objmapper's processes, but not necessarily a power loss. */
	OM_DURABLE_NONE = 0,
	/* fsync the file before it is published and its directory after, so
	 * that an acknowledged PUT or DELETE survives a power loss. */
	OM_DURABLE_FSYNC,
};

/*
 * A tier's directory and its space. limit and reserve are each either
 * bytes or, with *_pct set (1..100), that share of the filesystem's size,
 * resolved whenever the space is looked at (a tmpfs can be resized).
 */
typedef struct {
	const char *path;     /* directory; created (one level) if missing */
	uint64_t limit;       /* bytes; 0 = no limit of its own */
	unsigned limit_pct;   /* or this share of the filesystem; 0 = bytes */
	uint64_t reserve;     /* bytes kept free on the filesystem */
	unsigned reserve_pct; /* or this share of it; 0 = bytes */
	uint32_t pack_max;    /* objects of at most this many bytes go into packs
	                       * (many to a file); 0 = a file each. At most
	                       * OM_STORE_PACK_MAX. */
} om_tier_params_t;

#define OM_STORE_PACK_MAX (64u * 1024)
/* A pack file is never longer: a reader maps this much of it at once. */
#define OM_STORE_PACK_BYTES ((uint64_t)4 << 20)

/* Largest metadata blob stored with an object (an HTTP cache's headers). */
#define OM_STORE_META_MAX 2048

typedef struct {
	om_tier_params_t mem;
	om_tier_params_t disk;
	enum om_durability durability;
	uint32_t promote_hits;     /* reads since the last decay that promote; 0 = never */
	uint64_t promote_max_size; /* largest object promoted; 0 = a quarter of the memory tier */
	uint32_t evict_samples;    /* objects compared per eviction; 0 = 16 */
	uint32_t max_meta;         /* 0 = OM_STORE_META_MAX */
	unsigned proc_slot;        /* this process's slot in the index segment */
	int no_tmpfile;            /* publish through temporary names even if O_TMPFILE works */
	int no_evict;              /* never evict: a full tier or index refuses the PUT */
	int no_xattr;              /* keep records in files even where user xattrs work */
	int adopt;                 /* a binary upgrade: the tiers are tier_fd[], open and
	                            * locked by the daemon being replaced */
	int tier_fd[2];
	int set_owner;             /* make the tiers (directories, and object files at
	                            * rebuild) belong to owner_uid:owner_gid */
	uid_t owner_uid;
	gid_t owner_gid;
} om_store_params_t;

/* PUT flags */
#define OM_STORE_EPHEMERAL 0x1u /* memory tier only, dropped when evicted */
#define OM_STORE_SIZE_OPEN 0x4u /* size is only a bound: the object is what was written
                                 * by the commit (room is made then) */

typedef struct {
	uint64_t size;    /* exact number of bytes the PUT will bring */
	const void *meta; /* opaque blob kept with the object, or NULL */
	uint32_t meta_len;
	int64_t expires;  /* absolute unix seconds; 0 = never */
	unsigned flags;   /* OM_PUT_* */
} om_put_args_t;

/* A GET's result: a new read-only open file description at offset 0. */
typedef struct {
	int fd;           /* owned by the caller */
	int tier;         /* enum om_tier_id the descriptor points into */
	om_ix_obj_t obj;
} om_get_t;

typedef struct {
	uint64_t puts;
	uint64_t put_bytes;
	uint64_t superseded;      /* PUTs ordered before a concurrent newer one */
	uint64_t gets;
	uint64_t hits[2];         /* objects opened, by tier (enum om_tier_id) */
	uint64_t misses;
	uint64_t deletes;
	uint64_t evicted[2];      /* objects evicted from the tier */
	uint64_t copies_dropped;
	uint64_t promoted;
	uint64_t expired;
	uint64_t lost_files;      /* index entries whose file had vanished */
	uint64_t scrubbed;        /* objects read again and found intact */
	uint64_t scrub_bytes;     /* bytes read by the scrub */
	uint64_t scrub_passes;    /* passes over the whole store completed */
	uint64_t damaged;         /* objects (or copies) whose bytes did not match: quarantined */
	uint64_t index_evicted;   /* of evicted[]: for a new entry in a full index */
	uint64_t packs_removed;   /* packs compacted away (or found empty) */
} om_store_stats_t;

typedef struct {
	uint64_t objects;
	uint64_t bytes;
	uint64_t ephemeral;
	uint64_t copies;
	uint64_t files_scanned;
	uint64_t stale_removed;   /* older versions of a URI (crash during replace) */
	uint64_t expired_removed;
	uint64_t temp_removed;
	uint64_t orphan_copies_removed;
	uint64_t corrupt_moved;   /* files with a bad record, moved to corrupt/ */
	uint64_t unknown_skipped; /* names that are not objects, left alone */
	double seconds;
} om_rebuild_stats_t;

typedef struct {
	uint64_t expired;
	uint64_t evicted;
	uint64_t copies_dropped;
	uint64_t promoted;
	uint64_t promote_failed;
} om_maint_stats_t;

/*
 * A tier's space at one moment. What a PUT may take follows from it:
 * an object larger than max is refused at once (-EFBIG), and one larger
 * than what evicting every object of the tier could free is refused
 * without evicting anything (-ENOSPC). See om_store_room.
 */
typedef struct {
	uint64_t fs_size; /* bytes of the tier's filesystem; 0: it reports none (ramfs) */
	uint64_t fs_free; /* bytes of it an unprivileged writer may still use */
	uint64_t limit;   /* the tier's own limit; UINT64_MAX = none */
	uint64_t reserve; /* bytes kept free on the filesystem */
	uint64_t used;    /* bytes of the tier's objects */
	uint64_t max;     /* the largest object the tier can ever hold */
} om_space_t;

typedef struct {
	uint64_t used[2];   /* bytes per tier (memory: ephemeral + copies) */
	uint64_t limit[2];  /* resolved; 0 = none */
	uint64_t objects;
	uint64_t copies;
	uint64_t ephemeral;
} om_store_usage_t;

/* Opens (creating the layout if needed) and locks both tiers. The index
 * must have been created by this process or inherited. 0 or -errno; on
 * error a message is in err. */
int om_store_open(const om_store_params_t *p, om_index_t *ix, om_store_t **out,
    char *err, size_t errlen);
void om_store_close(om_store_t *st);
/* Checks both tiers as om_store_open would find them (directory, or its
 * parent if it is to be created; files can be created in it; sizes
 * against the filesystem), without locking, creating or leaving
 * anything. 0, or -errno with a message in err. */
int om_store_check(const om_store_params_t *p, char *err, size_t errlen);
/* A forked child takes its own slot before it writes: its intents and
 * counters live there. */
void om_store_set_slot(om_store_t *st, unsigned slot);
/* Takes new limits and policies (a reload); paths cannot change. A
 * promotion threshold above what the index counts is lowered to it. 0, or
 * -errno with a message in err (and nothing changed). */
int om_store_reconfigure(om_store_t *st, const om_store_params_t *p, char *err, size_t errlen);
/* Bytes of a process slot the store uses (the rest is the caller's), and
 * the counters of another process's slot (for STATS). */
size_t om_store_proc_bytes(void);
const om_store_stats_t *om_store_slot_stats(om_store_t *st, unsigned slot);

/* Rebuilds an empty index from the files in both tiers. */
int om_store_rebuild(om_store_t *st, om_rebuild_stats_t *rs);

/*
 * An index kept across a stop (store_attach.c). om_store_claim marks a new
 * index as these tiers' (before a rebuild fills it); om_store_seal records,
 * once every process but the caller is gone, that the index was left
 * cleanly and how the tiers' directories were then. om_store_attach takes
 * an index attached from its file (after om_index_recover): it must be
 * these tiers' (their stamps), unchanged since a clean stop (or left by
 * processes that died: their unfinished publishes are settled), and pass
 * the consistency check; else -ESTALE (or -errno) and why says why, and
 * the caller rebuilds.
 */
typedef struct {
	int clean;             /* it had been sealed (a graceful stop) */
	uint64_t objects;
	uint64_t reclaimed;    /* unfinished publishes of dead processes removed */
	uint64_t temp_removed; /* files left in tmp/ */
} om_attach_stats_t;
void om_store_claim(om_store_t *st);
int om_store_seal(om_store_t *st);
int om_store_attach(om_store_t *st, om_attach_stats_t *as, char *why, size_t n);

/* The space of a tier now (one statvfs). 0 or -errno. */
int om_store_space(om_store_t *st, int tier, om_space_t *sp);
/* The same for admitting a PUT of `size` bytes: from this process's last
 * reading of the filesystem where that is safe (store_space.c), else
 * om_store_space. */
int om_store_space_small(om_store_t *st, int tier, uint64_t size, om_space_t *sp);
/* Bytes a new object could take in the tier now, evicting every object of
 * it if need be (and if the store may evict); never more than sp->max. */
uint64_t om_store_room(const om_store_t *st, const om_space_t *sp);

/*
 * PUT in steps, for callers that receive the bytes piecewise:
 * begin (checks that the object can fit, opens an unlinked file),
 * write / copy (any mix, in order), commit (makes room under the tier's
 * limit, publishes atomically, then swaps the index entry) or abort. The
 * size is declared up front and checked at commit. Nothing is evicted
 * and no space is held for bytes that have not arrived: an unfinished PUT
 * holds what it has written (see docs/ARCHITECTURE.md, "Space").
 * Errors: -EINVAL, -ENAMETOOLONG (URI), -EMSGSIZE (metadata), -EFBIG
 * (larger than the tier can ever hold), -ENOSPC (no room even after
 * eviction, or the index is full), others from the kernel. After -EFBIG
 * and -ENOSPC, om_store_why says which limit in a sentence.
 */
int om_store_put_begin(om_store_t *st, const void *uri, size_t len,
    const om_put_args_t *a, om_put_txn_t **out);
int om_store_put_write(om_put_txn_t *t, const void *buf, size_t n);
/* Appends n bytes of fd from offset off (copy_file_range, or a fallback). */
int om_store_put_copy(om_put_txn_t *t, int fd, uint64_t off, uint64_t n);
/* Extends the checksum over up to max more of the bytes written so far
 * (those that came by copy or splice, which the commit would otherwise
 * read back in one go): a caller that copies a large object in steps
 * checksums each step's bytes while they are in the page cache. */
int om_store_put_sum(om_put_txn_t *t, uint64_t max);
/* The new file's descriptor, to splice into; then om_store_put_wrote. */
int om_store_put_fd(const om_put_txn_t *t);
int om_store_put_wrote(om_put_txn_t *t, uint64_t n);
/*
 * A condition the commit publishes under, checked in the same step as the
 * index entry's swap (under its lock): OM_STORE_IF_NONE, only if the URI
 * holds no object (an expired one counts as none); OM_STORE_IF_ID, only if
 * it holds the version id (an id a lookup gave). Otherwise the commit
 * fails with -ECANCELED and leaves nothing of the new object. 0 or
 * -EINVAL.
 */
enum { OM_STORE_IF_ANY = 0, OM_STORE_IF_NONE, OM_STORE_IF_ID };
int om_store_put_cond(om_put_txn_t *t, int cond, uint64_t id);
/* Publishes; frees t whatever the result. *out may be NULL. */
int om_store_put_commit(om_put_txn_t *t, om_ix_obj_t *out);
void om_store_put_abort(om_put_txn_t *t);

/* One-call PUT from a buffer, or from a descriptor (bytes [0, a->size)). */
int om_store_put(om_store_t *st, const void *uri, size_t len, const void *data,
    const om_put_args_t *a, om_ix_obj_t *out);
int om_store_put_from_fd(om_store_t *st, const void *uri, size_t len, int fd,
    const om_put_args_t *a, om_ix_obj_t *out);

#define OM_GET_NOTOUCH 0x1u /* do not count the read (LRU, promotion) */
#define OM_GET_NOCOUNT 0x2u /* not a GET: leave the statistics alone */

/* 0 with out->fd, or -ENOENT (absent or expired), or -errno. */
int om_store_get(om_store_t *st, const void *uri, size_t len, unsigned flags,
    om_get_t *out);
/* The object's record without opening it; -ENOENT if absent or expired. */
int om_store_stat(om_store_t *st, const void *uri, size_t len, om_ix_obj_t *out);
/* Copies the metadata blob of an object (as a GET found it: g->tier,
 * g->obj.id, and g->fd if open, else -1) into buf; *len gets its length.
 * -ERANGE if cap is too small. */
int om_store_read_meta(om_store_t *st, const om_get_t *g, void *buf, size_t cap, uint32_t *len,
    int64_t *mtime);
/* A GET without the open: the object and the tier to open it from
 * (out->fd = -1). For callers that keep descriptors (a per-worker cache):
 * open with om_store_open_obj, and on -ENOENT fall back to om_store_get. */
int om_store_locate(om_store_t *st, const void *uri, size_t len, unsigned flags, om_get_t *out);
/* Opens an object file read-only (a new open file description); -errno. */
int om_store_open_obj(om_store_t *st, int tier, uint64_t id);
/* Opens the file of tier of an object just looked up, for a reader: as
 * om_store_open_obj, and the first open of an object that a rebuild
 * indexed from its record alone (OM_IX_F_UNCHECKED) compares the file's
 * size with the record; a file that differs is quarantined and the
 * answer is -ENOENT, as for an object deleted meanwhile. */
int om_store_open_entry(om_store_t *st, int tier, const om_ix_obj_t *o);
/* Every object file the store unlinks is noted in the index
 * (om_index_note_drop) under this key, so that the processes that keep
 * descriptors open close theirs and the space is given back. */
#define OM_STORE_DROP_KEY(tier, id) ((uint64_t)(id) << 1 | (uint64_t)((tier) & 1))
#define OM_STORE_DROP_TIER(key)     ((int)((key) & 1))
#define OM_STORE_DROP_ID(key)       ((key) >> 1)
/* A pack, where an id is expected (a descriptor cache's key): packs are
 * noted as dropped under OM_STORE_DROP_KEY(tier, OM_STORE_PACK_ID(no)). */
#define OM_STORE_PACK_ID(no)        (UINT64_C(1) << 62 | (uint64_t)(no))
#define OM_STORE_IS_PACK_ID(id)     (((id) >> 62) == 1)
/* A packed object (OM_IX_F_PACKED): its pack and where its bytes begin. */
uint32_t om_store_pack_no(const om_ix_obj_t *o);
uint64_t om_store_pack_off(const om_ix_obj_t *o);
/* Opens pack no of the tier read-only, for a reader that keeps it (a
 * worker's descriptor cache): a descriptor, or -errno (-ENOENT: removed
 * by a compaction; look the object up again). */
int om_store_open_pack(om_store_t *st, int tier, uint32_t no);
/* Whether the entry of o in the pack open as fd is still o's and live
 * (0), or -ENOENT. */
int om_store_pack_check(int fd, const om_ix_obj_t *o);
/* Where the record of packed object o begins in its pack, given the 8
 * bytes just before its bytes (mark): its length in *rlen; 0 or -ENOENT
 * (not an entry's mark). */
int om_store_pack_rec_at(const om_ix_obj_t *o, const uint8_t mark[8], uint64_t *at, uint32_t *rlen);
/* Decodes o's record (rlen bytes read from its pack): its metadata into
 * buf (cap bytes; buf NULL: only checked and measured), *len and *mtime.
 * 0, -ENOENT if it is not o's record, -ERANGE if cap is too small. */
int om_store_pack_meta(const om_ix_obj_t *o, const uint8_t *rec, uint32_t rlen, void *buf,
    size_t cap, uint32_t *len, int64_t *mtime);
/* A descriptor for a client of a packed object's bytes: a sealed memfd,
 * read-only, holding exactly them (a pack's descriptor would show the
 * other objects in it). -errno. */
int om_store_pack_memfd(om_store_t *st, int tier, const om_ix_obj_t *o);
/* The same from a reader's mapping of o's pack (map, maplen bytes from
 * its start, as a worker keeps it): o's entry checked there (live, its
 * record decodes and names o's id), the memfd written from it; the pack is
 * not opened nor read. -ENOENT as above; -EFAULT if the pack no longer
 * holds the bytes (cut short behind the daemon's back: the mapping is to
 * be given up). The caller has om_os_mapped_guard installed. */
int om_store_pack_memfd_from(const void *map, size_t maplen, const om_ix_obj_t *o);
/*
 * Compaction (the cache manager): packs with less than half of them live
 * have their live entries copied to the manager's own pack and are
 * removed, until about `budget` bytes were copied. Returns the packs
 * removed, or -errno.
 */
int om_store_compact(om_store_t *st, uint64_t budget);
/* Closes what this process keeps open of packs removed since (by another
 * process's compaction) to mark their entries dead: a removed pack's
 * space goes back only once no process holds it. A worker calls it at
 * its tick; om_store_maintain does. */
void om_store_pack_sweep(om_store_t *st);
/* Closes at once the kept descriptors of packs that a compaction (in any
 * process) removed, as the index's notes say: until then they would hold
 * the packs' space. Cheap when there is no new note; a worker calls it
 * every turn, the cache manager at every wake. */
void om_store_pack_follow(om_store_t *st);
/* 0, or -ENOENT. */
int om_store_delete(om_store_t *st, const void *uri, size_t len);
/* Deletes the version o that a lookup or a listing found (its file, then
 * its entry), as DELETE does, but only if the index still holds it: 0, or
 * -ENOENT if it was replaced or deleted meanwhile, or -errno (om_store_why
 * says why). Not counted as a DELETE (deletes_total): the caller counts. */
int om_store_delete_obj(om_store_t *st, const om_ix_obj_t *o);
/* The same for a DELETE of that version (a conditional one): counted. */
int om_store_delete_version(om_store_t *st, const om_ix_obj_t *o);

/* Cache manager pass: reap expired objects, enforce both tier limits,
 * promote hot persistent objects, decay read counters. */
int om_store_maintain(om_store_t *st, om_maint_stats_t *ms);
/* Evicts until the tier is within its limit; returns objects evicted or -ENOSPC. */
int om_store_enforce(om_store_t *st, int tier);

/*
 * Scrubbing (store_scrub.c). om_store_scrub reads objects again from
 * *cursor on (0 at first; a walk over the index, which moves it) until
 * `budget` bytes were read, each object counting at least 4 KiB; *used
 * gets what it cost. 1 when it completed a pass over the store (*cursor
 * is 0 again), 0 if not yet, or -errno. A damaged object is quarantined:
 * moved to its tier's corrupt/ and dropped from the index (a damaged
 * memory copy is dropped).
 */
int om_store_scrub(om_store_t *st, uint32_t *cursor, uint64_t budget, uint64_t *used);
/* Checks one object (and its copy) now: 0 if intact, -EBADMSG if damaged
 * (quarantined), -ENOENT if it is gone; *read gets the bytes read. */
int om_store_verify_obj(om_store_t *st, const om_ix_obj_t *o, uint64_t *read);
/* Takes a damaged object (the file of tier) out of service, saying why
 * in the log. For callers that found its bytes wrong themselves. */
int om_store_quarantine(om_store_t *st, const om_ix_obj_t *o, int tier, const char *why);

/* After a process in `slot` died: removes a file it had published but not
 * yet indexed (its PUT was never acknowledged). Called by the master. */
int om_store_reclaim_slot(om_store_t *st, unsigned slot);

void om_store_usage(om_store_t *st, om_store_usage_t *u);
const om_store_stats_t *om_store_stats(const om_store_t *st);
/* The record of an object (the bytes of docs/ARCHITECTURE.md's layout):
 * its length, or -errno (-ENODATA: none). For checks and tools. */
int om_store_read_record(om_store_t *st, int tier, uint64_t id, void *buf, size_t cap);
/* 1 if the tier keeps records in files beside the objects. */
int om_store_records_in_files(const om_store_t *st, int tier);
/* Why this handle's last PUT or DELETE failed, in a sentence ("index
 * full: capacity 8"), or "" if it did not say. */
const char *om_store_why(const om_store_t *st);
/* Object file name relative to its tier ("ab/00000000000012ab"). */
void om_store_object_name(uint64_t id, char *buf, size_t n);
const char *om_store_tier_path(const om_store_t *st, int tier);
/* The tier's directory, open and locked (what a binary upgrade hands over). */
int om_store_tier_fd(const om_store_t *st, int tier);
/* Whether the tier's directory was deleted while the store has it open:
 * nothing can be stored there, nor found, until a restart makes it again. */
int om_store_tier_gone(const om_store_t *st, int tier);

#endif
