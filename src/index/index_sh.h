/*
 * Layout of the index segment. Everything here lives in shared memory
 * (suffix _sh), is reached through offsets from the segment base, and is
 * read and written by every process. Private to src/index.
 */
#ifndef OM_INDEX_SH_H
#define OM_INDEX_SH_H

#include <pthread.h>
#include <stdint.h>

#include "index/om_index.h"

#define IX_MAGIC   0x58494d4fu /* "OMIX" */
#define IX_VERSION 5u
#define IX_NIL     UINT32_MAX
#define IX_LOG_MAX 16
#define IX_UNIT    16u /* arena granule */
#define IX_HDR_UNITS 3u /* a block's header: 48 bytes */
#define IX_NOTES   4096u /* the ring of dropped object files (a power of two) */

/* Block state, in the low bits of lenflags. */
#define IX_ST_FREE   0u
#define IX_ST_ALLOC  1u /* owned by a stripe's pending_* slot, not linked */
#define IX_ST_LINKED 2u
#define IX_ST_MASK   3u
#define IX_FLAG_MASK 0xfffcu
#define IX_LEN(lf)   ((lf) >> 16)

/*
 * A redo log: the complete list of stores one mutation makes, written
 * before `valid` is set. The stores are applied only after that, so a
 * repairer that finds valid == 1 re-applies them all (each stores an
 * absolute value, so applying twice is harmless) and one that finds
 * valid == 0 knows none was applied.
 */
#define IX_REC_W64 (1ull << 63)
typedef struct {
	uint64_t off; /* byte offset in the segment, | IX_REC_W64 for 8 bytes */
	uint64_t val;
} ix_rec_sh_t;

typedef struct {
	uint32_t valid;
	uint32_t n;
	ix_rec_sh_t rec[IX_LOG_MAX];
} ix_log_sh_t;

/* A lock stripe: guards buckets b with (b & (nstripes - 1)) == its index. */
typedef struct {
	pthread_mutex_t mtx;
	uint32_t seq;         /* odd while a log is being applied */
	uint32_t pending_new; /* block allocated, not yet linked, or IX_NIL */
	uint32_t pending_old; /* block unlinked, not yet freed, or IX_NIL */
	uint32_t count[OM_IX_NCLASS];
	uint64_t bytes[OM_IX_NCLASS];
	ix_log_sh_t log;
} __attribute__((aligned(64))) ix_stripe_sh_t;

/*
 * One object: a 48-byte header followed by its URI, padded to 16 bytes,
 * in the arena. Blocks are carved from the arena by size class and never
 * split or merged, so a block boundary stays a block boundary for the
 * life of the segment: a reader's late write of atime or hits through a
 * stale offset always lands on those fields of some block.
 */
typedef struct {
	uint64_t id;
	uint64_t size;
	int64_t expires;
	uint32_t next;     /* chain link, or free-list link: a block offset */
	uint32_t hash;     /* low 32 bits of the URI hash */
	uint32_t lenflags; /* URI length << 16 | OM_IX_F_* | state */
	uint32_t atime;    /* written by readers, no lock */
	uint32_t hits;     /* written by readers, no lock */
	uint32_t crc;
} ix_block_sh_t;

typedef struct {
	uint32_t magic;
	uint32_t version;
	uint64_t seg_size;
	uint64_t seed;
	uint32_t capacity;
	uint32_t nbuckets;
	uint32_t nstripes;
	uint32_t nclasses; /* block sizes 1..nclasses-1 granules */
	uint32_t max_uri;
	uint32_t nprocs;
	uint32_t proc_bytes;
	uint32_t arena_units;
	uint32_t hits_max;
	uint32_t touch_ticks; /* atime is refreshed when this many ticks old */
	uint64_t off_stripes;
	uint64_t off_classes;
	uint64_t off_buckets;
	uint64_t off_procs;
	uint64_t off_arena;
	uint64_t next_id;      /* atomic */
	uint64_t owner_deaths; /* atomic */

	/* For a segment kept in a file across a stop of its processes: whether
	 * the last of them left it cleanly (om_index_set_state), and a record
	 * of its owner's (the store's tiers: om_index_owner). */
	uint32_t state;        /* atomic: OM_IX_STATE_* */
	uint32_t owner_len;
	uint8_t owner[256];

	/* The allocator: arena bump pointer and per-size free lists, guarded
	 * by alloc_mtx. Lock order: a stripe, then alloc_mtx. */
	pthread_mutex_t alloc_mtx __attribute__((aligned(64)));
	uint32_t bump;  /* granules handed out from the arena's start */
	uint32_t live;  /* blocks not free (linked or pending) */
	ix_log_sh_t alloc_log;

	/* The notes of dropped object files (om_index_note_drop): note n goes
	 * in slot n % IX_NOTES, which holds seq = n + 1 once its key is
	 * written. notes_head (atomic) counts the notes taken. */
	uint64_t notes_head __attribute__((aligned(64)));
	struct {
		uint64_t seq; /* atomic */
		uint64_t key;
	} notes[IX_NOTES];
} ix_header_sh_t;

#endif
