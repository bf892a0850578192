/*
 * Internals shared by the store's files (listed below, by layer).
 * Process-local state; nothing here is in shared memory except
 * om_store_proc_sh_t.
 */
#ifndef OM_STORE_INT_H
#define OM_STORE_INT_H

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "store/om_store.h"
#include "store/store_meta.h"

#define OM_FANOUT 256
#define OM_NAME_MAX 24 /* "ab/0123456789abcdef.r" + NUL */
#define OM_REC_SUFFIX ".r" /* a record file: "ab/0123456789abcdef.r" */

typedef struct {
	int dirfd;
	int tmpfile_ok;  /* O_TMPFILE works on this filesystem */
	int rec_files;   /* records in files beside the objects, not attributes */
	uint8_t stamp[16]; /* what the index's owner area says of its tiers (store_attach.c) */
	int writer_same; /* the tier's files were last written as this run writes them */
	uint64_t limit;  /* bytes (0 = none), unless limit_pct */
	unsigned limit_pct;
	uint64_t reserve;
	unsigned reserve_pct;
	uint32_t pack_max; /* objects up to this many bytes go into packs; 0 = none */
	const char *name; /* "memory" or "persistent", for messages */
	char path[PATH_MAX];
} om_tier_t;

/*
 * In the process's slot of the index segment (shared memory): the object
 * this process has published but not yet indexed. If the process dies in
 * that window, the master removes the file (om_store_reclaim_slot), and
 * with it the process's temporary files (named with its pid) if the
 * tiers use temporary names.
 */
typedef struct {
	uint64_t intent_id;
	uint32_t intent_tier;
	uint32_t intent_kind;
	uint32_t pid;
	uint64_t intent_loc; /* intent_kind OM_KIND_PACKED: where the entry goes */
	uint8_t pad[36];
	om_store_stats_t stats; /* this process's counters (one writer) */
} om_store_proc_sh_t;

struct om_store {
	om_index_t *ix;
	om_tier_t tier[2];
	enum om_durability durability;
	uint32_t promote_hits;
	uint64_t promote_max_size;
	uint32_t evict_samples;
	uint32_t max_meta;
	unsigned slot;
	int no_evict;
	int set_owner;
	uid_t owner_uid;
	gid_t owner_gid;
	uint32_t cursor[OM_IX_NCLASS];
	uint64_t scrub_pass_objects; /* objects the current pass has checked */
	om_store_stats_t *stats;     /* in the process slot, or local_stats */
	om_store_stats_t local_stats;
	char why[256];               /* om_store_why */
	struct {                     /* the pack this process appends to, per tier */
		int fd;              /* -1: none yet */
		uint32_t no;
		uint64_t end;
		uint64_t linked_ms;  /* om_clock_ms when last found linked (fstat) */
	} pw[2];
	struct {                     /* packs opened to mark entries dead */
		int fd;
		int tier;
		uint32_t no;
		uint64_t seen;       /* om_index_notes_head when last found linked */
		uint64_t used;       /* pk_clock at the last use */
	} pk[256];                   /* 128 sets of 2 (pack_rw) */
	uint64_t pk_clock;
	uint64_t pk_notes;           /* the index's notes followed for pk[] (om_store_pack_follow) */
	struct {                     /* a tier's filesystem as this process last read it */
		uint64_t fs_size;
		uint64_t fs_free;
		uint64_t spent;      /* bytes admitted on these figures since */
		uint64_t at_ms;      /* om_clock_ms when read; 0: never */
	} fs_seen[2];
	/* Held around pk[] and the writes through it while the rebuild's
	 * threads walk packs (om_pack_rebuild); NULL otherwise, when one
	 * thread of a process marks entries dead. */
	pthread_mutex_t *pk_lock;
	uint64_t pack_seed;
	uint64_t pack_skip[16];      /* packs compaction leaves (damaged), tier << 62 | loc */
	unsigned pack_skip_next;
	struct om_pack_kept *pack_kept; /* packs compaction found more than half live (store_pack.c) */
	size_t npack_kept;
};

static inline int
om_store_tier_of(uint32_t ixflags)
{
	return (ixflags & OM_IX_F_EPHEMERAL) ? OM_TIER_MEM : OM_TIER_DISK;
}

/* A regular file of the tier that the rebuild gives to the configured
 * user: written while the daemon ran as another (root, say), it could not
 * be opened by the workers. */
static inline int
om_store_owner_differs(const om_store_t *st, int tier, const struct stat *sb)
{
	return S_ISREG(sb->st_mode) && st->set_owner && !st->tier[tier].writer_same &&
	    ((st->owner_uid != (uid_t)-1 && sb->st_uid != st->owner_uid) ||
	    (st->owner_gid != (gid_t)-1 && sb->st_gid != st->owner_gid));
}


/*
 * The store's files by layer, each using only those above it in this
 * list (tests/lint/layers):
 *   store_meta.c    the record's bytes (encode, decode)
 *   store_tier.c    a tier's directory, its files' names, new files and
 *                   their publication; this process's slot
 *   store_space.c   a tier's space, limit and usage; om_store_why
 *   store_record.c  where a tier keeps records: attributes or files
 *   store_pack.c    packs: small objects many to a file
 *   store_drop.c    removing objects' files, emptying tmp/; a dead
 *                   process's publish
 *   store_evict.c   eviction for space      store_attach.c  an index kept
 *   store_put.c     PUT                                     across a stop
 *   store_scrub.c   scrubbing, and the      store_rebuild.c the rebuild
 *                   first open's check
 *   store_maint.c   expiry and promotion
 *   store.c         opening the store; GET, STAT, DELETE
 */

/* ---- store_tier.c ---- */

/*
 * A tier's new file, not yet published: unlinked (O_TMPFILE), or
 * tmp/ID.PID.SUFFIX where the filesystem has no O_TMPFILE. Objects, record
 * files and promoted copies are all made and published this way.
 * om_store_file_new opens it (oflags: O_EXCL or O_TRUNC for a temporary
 * name), 0 or -errno; om_store_file_publish gives it its name (a link of
 * the unlinked file, a rename of the temporary one), 0 or -errno;
 * om_store_file_discard removes a temporary name never published and
 * closes the descriptor.
 */
typedef struct {
	int fd;            /* -1: none */
	char tmpname[48];  /* its temporary name, or "" */
} om_store_file_t;
void om_store_file_init(om_store_file_t *f);
int om_store_file_new(om_store_t *st, int tier, uint64_t id, const char *suffix, int oflags, mode_t mode,
    om_store_file_t *f);
int om_store_file_publish(om_store_t *st, int tier, om_store_file_t *f, const char *name);
void om_store_file_discard(om_store_t *st, int tier, om_store_file_t *f);
/* A tier's directory for the store (created, locked, probed; adopt_fd:
 * one handed over open and locked by a binary upgrade, else -1); what
 * om_store_check finds of one; its space settings; the check that its
 * filesystem can bound it; its directories given to the daemon's user. */
int om_tier_open(om_tier_t *t, const char *name, const om_tier_params_t *tp, int no_tmpfile, int no_xattr,
    int adopt_fd, char *err, size_t errlen);
int om_tier_check(const char *name, const om_tier_params_t *tp, char *err, size_t errlen);
void om_tier_set_space(om_tier_t *t, const om_tier_params_t *tp);
int om_tier_check_space(const om_tier_t *t, char *err, size_t errlen);
int om_tier_chown(om_tier_t *t, const om_store_params_t *p, char *err, size_t errlen);
/* A process's slot of the index segment, or NULL. */
om_store_proc_sh_t *om_store_proc(om_store_t *st, unsigned slot);
/* Records (or clears, id 0) the object this process is about to publish. */
void om_store_intent(om_store_t *st, uint64_t id, int tier, int kind);
/* The same for a pack entry about to be written at loc. */
void om_store_intent_loc(om_store_t *st, uint64_t id, int tier, uint64_t loc);

/* ---- store_space.c ---- */

/* Bytes used in a tier (memory: ephemeral + copies). */
uint64_t om_store_tier_used(om_store_t *st, int tier);
/* The tier's limit in bytes now (UINT64_MAX = none): one statvfs if it is
 * a share of the filesystem. */
uint64_t om_store_limit(om_store_t *st, int tier);
/* Sets om_store_why's sentence. */
void om_store_set_why(om_store_t *st, const char *fmt, ...) OM_PRINTF(2, 3);

/* ---- store_record.c: in the object file's attribute, or in a record file
 * where the tier's filesystem has no user attributes ---- */

void om_rec_name(uint64_t id, char *buf, size_t n);
/* The record of object id (fd: its file, or -1): its length, or -errno
 * (-ENODATA: none). */
ssize_t om_rec_read(om_store_t *st, int tier, uint64_t id, int fd, uint8_t *buf, size_t cap);
/* The same for dirfd/name (in dirpath), without opening the object. */
ssize_t om_rec_read_at(om_store_t *st, int tier, int dirfd, const char *dirpath, const char *name,
    uint8_t *buf, size_t cap);
/* Stores the record of the unpublished object file fd: as its attribute,
 * or in a new unpublished record file (r), which om_rec_publish links
 * before the object is. -EMSGSIZE if the attribute is too large. */
int om_rec_prepare(om_store_t *st, int tier, uint64_t id, int fd, const uint8_t *rec, size_t len,
    om_store_file_t *r);
int om_rec_publish(om_store_t *st, int tier, uint64_t id, om_store_file_t *r);
/* Removes the record file of a removed object (none with attributes). */
void om_rec_unlink(om_store_t *st, int tier, uint64_t id);

/* ---- store_drop.c ---- */

/* Removes an object file: 0, -ENOENT if there was none, or -errno if it
 * could be neither unlinked nor moved to tmp/ (*err: why not moved). */
int om_store_drop_file(om_store_t *st, int tier, uint64_t id, int *err);
/* Unlinks an object file; ENOENT is not an error. */
int om_store_unlink_obj(om_store_t *st, int tier, uint64_t id);
/* The index's release callback: a dropped object's files go. */
void om_store_release(void *arg, const om_ix_obj_t *o);
/* Drops a promoted copy: unlinks it, then clears the flag. */
void om_store_drop_copy(om_store_t *st, const om_ix_obj_t *o);
/* Empties the tier's tmp/ (what a start must: files being written by
 * processes that are gone, dropped files). */
int om_store_clean_tmp(om_store_t *st, int tier, uint64_t *removed);

/* ---- store_pack.c: small objects, many to a file ---- */

void om_pack_name(uint32_t no, char *buf, size_t n);
/* Appends an entry (record rec, then the bytes) to this process's pack of
 * the tier, opening a new pack if it has none or it is full; the entry's
 * loc is known (and returned in *loc, and recorded as the intent) before
 * anything is written. 0 or -errno. */
int om_pack_append(om_store_t *st, int tier, uint64_t id, const uint8_t *rec, size_t rlen,
    const void *data, size_t size, uint64_t *loc);
/* Marks an entry dead (its object replaced, deleted, evicted), not synced
 * (om_pack_sync): 0 or -errno. */
int om_pack_kill(om_store_t *st, int tier, uint64_t loc);
/* om_pack_kill, or where it fails a note in tmp/ for the next rebuild
 * (tmp/ID.LOC.dead): 0, -ENOENT (the pack is gone), or -errno if neither
 * could be done (logged). */
int om_pack_drop(om_store_t *st, int tier, uint64_t id, uint64_t loc);
/* Whether a name in tmp/ is such a note (the rebuild of the packs reads
 * and removes them; om_store_clean_tmp leaves them). */
int om_pack_is_tomb(const char *name);
/* Syncs the pack holding loc (durability = fsync: a DELETE's state word). */
int om_pack_sync(om_store_t *st, int tier, uint64_t loc);
/* Opens a pack read-only: a descriptor or -errno. */
int om_pack_open(om_store_t *st, int tier, uint32_t no);
/* Checks that the entry at loc in the pack open as fd is live and holds
 * object id; copies its record into rec (cap bytes) if rec is not NULL.
 * The record's length, or -ENOENT (dead, or another object), or -errno. */
ssize_t om_pack_entry(int fd, uint64_t loc, uint64_t id, uint8_t *rec, size_t cap);
/* Closes this process's packs. */
void om_pack_close_all(om_store_t *st);
/* The rebuild of one tier's packs (store_rebuild.c calls it), walked by
 * up to nthreads threads, this one included. */
typedef struct {
	uint64_t max_id;
	uint64_t entries, stale, expired, corrupt;
} om_pack_rebuild_t;
int om_pack_rebuild(om_store_t *st, int tier, int64_t now, unsigned nthreads, om_pack_rebuild_t *pr);
/* A dead process's intent on a pack entry: kill it if it is not indexed. */
int om_pack_reclaim(om_store_t *st, int tier, uint64_t id, uint64_t loc);
/* What evicting packed objects freed is on the filesystem only once their
 * pack is gone: closes this process's pack of the tier and compacts the
 * tier's packs (om_store_compact, about budget bytes copied). The packs
 * removed, or -errno. */
int om_pack_give_back(om_store_t *st, int tier, uint64_t budget);

/* ---- store_evict.c ---- */

/* Evicts one object to make room in the tier; 0, or -ENOENT if nothing
 * can be evicted. */
int om_store_evict_one(om_store_t *st, int tier);
/* Evicts one object to make room in the index: any object, or with
 * uri_len > 0 one whose index block fits a URI of that length. */
int om_store_evict_index(om_store_t *st, size_t uri_len);
/* Makes `need` bytes of room under the tier's limit, evicting; 0 or
 * -ENOSPC. */
int om_store_make_room(om_store_t *st, int tier, uint64_t need);
/* Evicts from the tier until `bytes` (by the index's count) are gone;
 * 0, or -ENOSPC if the tier ran out of objects first. */
int om_store_evict_bytes(om_store_t *st, int tier, uint64_t bytes);

/* ---- store_attach.c ---- */
/* Reads the tier's stamp, or makes one (store_attach.c). */
int om_store_stamp(om_store_t *st, int tier, char *err, size_t errlen);
/* Each tier says who its files were written as ("uid:gid" in
 * .objmapper-writer): om_store_writer_read sets writer_same, and
 * om_store_writer_note writes this run's where it differs, once the index
 * is known to match the files (after a rebuild or an attach, before any
 * worker writes). */
void om_store_writer_read(om_store_t *st, int tier);
void om_store_writer_note(om_store_t *st);

#endif
