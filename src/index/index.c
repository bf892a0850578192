/*
 * The shared-memory index. Created by the master before it forks; every
 * process (master, workers, cache manager) looks up and mutates it.
 *
 * An object is one block in the arena: header and URI together, so that a
 * lookup costs the bucket and one block. Readers walk a bucket chain
 * without a lock and validate with the stripe's sequence counter; writers
 * take the stripe's robust mutex and make every change through a redo log,
 * so that a process killed at any instruction leaves a state the next
 * owner of the lock completes.
 */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/index_sh.h"
#include "index/om_index.h"

struct om_index {
	uint8_t *base;
	size_t size;
	int fd;
	ix_header_sh_t *h;
	ix_stripe_sh_t *stripes;
	uint32_t *classes;
	uint32_t *buckets;
	uint8_t *procs;
	uint8_t *arena;
	uint32_t bmask;
	uint32_t smask;
	bool spin;     /* more than one CPU: waiters spin before they sleep */
	bool populate; /* atomic: MADV_POPULATE_WRITE works here */
	size_t faulted; /* atomic: arena bytes this process has populated */
	uint32_t capacity;
	uint32_t arena_units;
	uint32_t max_uri;
	uint32_t hits_max;
	uint32_t touch_ticks;
	om_ix_release_fn release;
	void *release_arg;
	void (*hook)(void *arg, unsigned step);
	void *hook_arg;
	unsigned hook_step;
};

#define HOOK(ix) \
	do { \
		if (OM_UNLIKELY((ix)->hook != NULL)) \
			(ix)->hook((ix)->hook_arg, ++(ix)->hook_step); \
	} while (0)

static inline uint32_t
uri_units(size_t len)
{
	return (uint32_t)((len + IX_UNIT - 1) / IX_UNIT);
}

static inline uint32_t
block_units(size_t len)
{
	return IX_HDR_UNITS + uri_units(len);
}

static inline ix_block_sh_t *
blk(const om_index_t *ix, uint32_t off)
{
	return (ix_block_sh_t *)(void *)(ix->arena + (size_t)off * IX_UNIT);
}

static inline uint8_t *
blk_uri(const om_index_t *ix, uint32_t off)
{
	return ix->arena + ((size_t)off + IX_HDR_UNITS) * IX_UNIT;
}

static inline uint32_t
ix_hash(const om_index_t *ix, const void *uri, size_t len)
{
	return (uint32_t)om_hash64(uri, len, ix->h->seed);
}

static inline unsigned
class_of_flags(uint32_t lf)
{
	return (lf & OM_IX_F_EPHEMERAL) ? OM_IX_CLASS_EPHEMERAL : OM_IX_CLASS_PERSIST;
}

static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---- redo logs --------------------------------------------------------- */

typedef struct {
	ix_log_sh_t *log;
	unsigned n;
} ix_lb_t;

static void
lb_init(ix_lb_t *lb, ix_log_sh_t *log)
{
	OM_ASSERT(OM_LOAD(&log->valid) == 0);
	lb->log = log;
	lb->n = 0;
}

static void
lb_put32(om_index_t *ix, ix_lb_t *lb, uint32_t *field, uint32_t v)
{
	ix_rec_sh_t *r;

	OM_ASSERT(lb->n < IX_LOG_MAX);
	r = &lb->log->rec[lb->n++];
	OM_STORE(&r->off, (uint64_t)((uint8_t *)field - ix->base));
	OM_STORE(&r->val, (uint64_t)v);
}

static void
lb_put64(om_index_t *ix, ix_lb_t *lb, uint64_t *field, uint64_t v)
{
	ix_rec_sh_t *r;

	OM_ASSERT(lb->n < IX_LOG_MAX);
	r = &lb->log->rec[lb->n++];
	OM_STORE(&r->off, (uint64_t)((uint8_t *)field - ix->base) | IX_REC_W64);
	OM_STORE(&r->val, v);
}

/* Release stores: a lock-free reader that sees a store (a new bump, a
 * link) also sees every store the log made before it. */
static void
rec_apply(om_index_t *ix, const ix_rec_sh_t *r)
{
	uint64_t off = OM_LOAD(&r->off), val = OM_LOAD(&r->val);
	uint64_t where = off & ~IX_REC_W64;

	if (off & IX_REC_W64) {
		OM_ASSERT(where % 8 == 0 && where + 8 <= ix->size);
		OM_STORE_REL((uint64_t *)(void *)(ix->base + where), val);
	} else {
		OM_ASSERT(where % 4 == 0 && where + 4 <= ix->size);
		OM_STORE_REL((uint32_t *)(void *)(ix->base + where), (uint32_t)val);
	}
}

/*
 * Publishes the log, then applies it. With a sequence counter (stripe
 * logs), optimistic readers see it odd for exactly the span of the stores.
 */
static void
lb_commit(om_index_t *ix, ix_lb_t *lb, uint32_t *seq)
{
	ix_log_sh_t *log = lb->log;
	uint32_t s = 0;

	OM_STORE(&log->n, lb->n);
	OM_STORE_REL(&log->valid, 1);
	HOOK(ix);
	if (seq != NULL) {
		s = OM_LOAD(seq);
		OM_ASSERT((s & 1) == 0);
		OM_STORE(seq, s + 1);
		OM_FENCE_REL();
	}
	for (unsigned i = 0; i < lb->n; i++) {
		rec_apply(ix, &log->rec[i]);
		HOOK(ix);
	}
	if (seq != NULL)
		OM_STORE_REL(seq, s + 2);
	OM_STORE_REL(&log->valid, 0);
	HOOK(ix);
}

/* Completes a log whose writer died: all of it, or (not yet valid) none. */
static void
log_redo(om_index_t *ix, ix_log_sh_t *log)
{
	uint32_t n;

	if (OM_LOAD_ACQ(&log->valid) == 0)
		return;
	n = OM_LOAD(&log->n);
	OM_ASSERT(n <= IX_LOG_MAX);
	for (uint32_t i = 0; i < n; i++)
		rec_apply(ix, &log->rec[i]);
	OM_STORE_REL(&log->valid, 0);
}

/* ---- locks and repair -------------------------------------------------- */

/*
 * The index's critical sections last a few hundred nanoseconds, and a
 * futex wait and wake-up cost several microseconds each (the rebuild's
 * threads made 140,000 of them for 1,000,000 objects): a waiter retries
 * every few pauses, for up to about 100 us, and sleeps in the kernel only
 * if the owner holds on longer (it may have been preempted). Where
 * there is one CPU the owner cannot run while we spin, so we do not.
 * Returns what pthread_mutex_lock does (EOWNERDEAD included).
 */
#define IX_SPINS 1000

static int
ix_mutex_lock(const om_index_t *ix, pthread_mutex_t *m)
{
	int rc = pthread_mutex_trylock(m);

	for (unsigned n = 0; rc == EBUSY && ix->spin && n < IX_SPINS; n++) {
		for (unsigned i = 0; i < 4; i++)
			cpu_relax();
		rc = pthread_mutex_trylock(m);
	}
	return rc == EBUSY ? pthread_mutex_lock(m) : rc;
}

static void
alloc_lock(om_index_t *ix)
{
	int rc = ix_mutex_lock(ix, &ix->h->alloc_mtx);

	if (OM_UNLIKELY(rc == EOWNERDEAD)) {
		/* The allocator's state changes only through its log. */
		log_redo(ix, &ix->h->alloc_log);
		OM_AZ(pthread_mutex_consistent(&ix->h->alloc_mtx));
		OM_ADD(&ix->h->owner_deaths, 1);
	} else {
		OM_AZ(rc);
	}
	HOOK(ix);
}

static void
alloc_unlock(om_index_t *ix)
{
	OM_AZ(pthread_mutex_unlock(&ix->h->alloc_mtx));
}

static void obj_from_block(const om_index_t *ix, uint32_t off, om_ix_obj_t *o);
static void block_free(om_index_t *ix, uint32_t off, uint32_t *pending);

/*
 * A process died holding this stripe. Finish its log, then undo what its
 * pending slots say was under way: a block allocated but never linked is
 * freed; a block unlinked but not yet freed is released (its files go)
 * and freed. Whatever the victim was doing is now wholly done or wholly
 * undone.
 */
static void
stripe_repair(om_index_t *ix, ix_stripe_sh_t *st)
{
	uint32_t seq, off;

	log_redo(ix, &st->log);
	seq = OM_LOAD(&st->seq);
	if (seq & 1)
		OM_STORE_REL(&st->seq, seq + 1);

	/* The allocator's log may still owe a store to our pending slots. */
	alloc_lock(ix);
	off = OM_LOAD(&st->pending_new);
	if (off != IX_NIL) {
		OM_ASSERT(off < ix->arena_units);
		OM_ASSERT((OM_LOAD(&blk(ix, off)->lenflags) & IX_ST_MASK) == IX_ST_ALLOC);
		block_free(ix, off, &st->pending_new);
	}
	off = OM_LOAD(&st->pending_old);
	if (off != IX_NIL) {
		OM_ASSERT(off < ix->arena_units);
		OM_ASSERT((OM_LOAD(&blk(ix, off)->lenflags) & IX_ST_MASK) == IX_ST_ALLOC);
		if (ix->release != NULL) {
			om_ix_obj_t o;

			obj_from_block(ix, off, &o);
			ix->release(ix->release_arg, &o);
		}
		block_free(ix, off, &st->pending_old);
	}
	alloc_unlock(ix);
}

static void
stripe_lock(om_index_t *ix, ix_stripe_sh_t *st)
{
	int rc = ix_mutex_lock(ix, &st->mtx);

	if (OM_UNLIKELY(rc == EOWNERDEAD)) {
		stripe_repair(ix, st);
		OM_AZ(pthread_mutex_consistent(&st->mtx));
		OM_ADD(&ix->h->owner_deaths, 1);
	} else {
		OM_AZ(rc);
	}
	HOOK(ix);
}

static void
stripe_unlock(ix_stripe_sh_t *st)
{
	OM_AZ(pthread_mutex_unlock(&st->mtx));
}

/* ---- allocator (alloc lock held) --------------------------------------- */

/*
 * Takes a block for a URI of `len` bytes (a free one of exactly that size,
 * else a new one from the arena) and records it in st->pending_new, all in
 * one log: if the caller dies before linking it, the stripe's repair frees
 * it. A replace frees a block as soon as it has linked the new one, so it
 * may take one beyond the capacity: a full index still takes new versions
 * of what it holds (the linked blocks never exceed the capacity; the
 * allocated ones by at most one per stripe).
 */
/*
 * New blocks come from untouched pages of the arena at the bump pointer:
 * the first write to each (a page fault that allocates and zeroes it, a
 * few microseconds) happened under the allocator's lock, and every other
 * writer waited for it. So the pages a little ahead of the bump pointer
 * are made present first, outside the lock, a step at a time, by one
 * caller (the others go on), with MADV_POPULATE_WRITE, which changes no
 * byte. Where it fails (an old kernel, no memory left) nothing is lost:
 * the fault happens under the lock, as before.
 */
#define IX_FAULT_STEP ((size_t)64 * 1024)
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14; before, EINVAL */
#endif

static void
arena_populate(om_index_t *ix)
{
	size_t at = (size_t)OM_LOAD(&ix->h->bump) * IX_UNIT;
	size_t done = __atomic_load_n(&ix->faulted, __ATOMIC_RELAXED);
	size_t arena = (size_t)ix->arena_units * IX_UNIT, to;
	size_t page, first, span;
	uint8_t *from;

	if (!__atomic_load_n(&ix->populate, __ATOMIC_RELAXED) || at + IX_FAULT_STEP / 2 <= done ||
	    done >= arena)
		return;
	to = at + IX_FAULT_STEP < arena ? at + IX_FAULT_STEP : arena;
	if (!__atomic_compare_exchange_n(&ix->faulted, &done, to, false, __ATOMIC_RELAXED,
	    __ATOMIC_RELAXED))
		return;
	/* From the page of the first byte not yet done (or of the bump
	 * pointer, if it ran ahead) to the page of the last. */
	page = (size_t)sysconf(_SC_PAGESIZE);
	first = done > at ? done : at;
	from = ix->arena + first - (((uintptr_t)ix->arena + first) & (page - 1));
	span = (size_t)(ix->arena + to - from);
	if (madvise(from, (span + page - 1) & ~(page - 1), MADV_POPULATE_WRITE) != 0 && errno == EINVAL)
		__atomic_store_n(&ix->populate, false, __ATOMIC_RELAXED);
}

static int
block_alloc(om_index_t *ix, ix_stripe_sh_t *st, size_t len, bool replacing, uint32_t *out)
{
	ix_header_sh_t *h = ix->h;
	uint32_t units = block_units(len), off, bump;
	ix_lb_t lb;
	int rc = 0;

	arena_populate(ix);
	alloc_lock(ix);
	if (OM_LOAD(&h->live) >= ix->capacity + (replacing ? ix->smask + 1 : 0)) {
		rc = -ENOSPC;
		goto out;
	}
	lb_init(&lb, &h->alloc_log);
	off = OM_LOAD(&ix->classes[units]);
	bump = OM_LOAD(&h->bump);
	if (off != IX_NIL) {
		lb_put32(ix, &lb, &ix->classes[units], OM_LOAD(&blk(ix, off)->next));
		lb_put32(ix, &lb, &blk(ix, off)->lenflags, (uint32_t)len << 16 | IX_ST_ALLOC);
	} else if ((uint64_t)bump + units <= ix->arena_units) {
		off = bump;
		/* The new block's size is written before the bump that exposes it
		 * to arena walkers. */
		lb_put32(ix, &lb, &blk(ix, off)->lenflags, (uint32_t)len << 16 | IX_ST_ALLOC);
		lb_put32(ix, &lb, &h->bump, bump + units);
	} else {
		rc = -ENOMEM;
		goto out;
	}
	lb_put32(ix, &lb, &h->live, OM_LOAD(&h->live) + 1);
	lb_put32(ix, &lb, &st->pending_new, off);
	lb_commit(ix, &lb, NULL);
	*out = off;
out:
	alloc_unlock(ix);
	return rc;
}

/* Puts an unlinked block on its size's free list; clears the pending slot. */
static void
block_free(om_index_t *ix, uint32_t off, uint32_t *pending)
{
	ix_header_sh_t *h = ix->h;
	ix_block_sh_t *b = blk(ix, off);
	uint32_t lf = OM_LOAD(&b->lenflags);
	uint32_t units = block_units(IX_LEN(lf));
	ix_lb_t lb;

	OM_ASSERT(units < h->nclasses);
	lb_init(&lb, &h->alloc_log);
	/* The length stays: it is what makes the arena walkable. */
	lb_put32(ix, &lb, &b->lenflags, (lf & ~(IX_ST_MASK | IX_FLAG_MASK)) | IX_ST_FREE);
	lb_put32(ix, &lb, &b->next, OM_LOAD(&ix->classes[units]));
	lb_put32(ix, &lb, &ix->classes[units], off);
	lb_put32(ix, &lb, &h->live, OM_LOAD(&h->live) - 1);
	lb_put32(ix, &lb, pending, IX_NIL);
	lb_commit(ix, &lb, NULL);
}

/* ---- blocks ------------------------------------------------------------ */

static void
obj_from_block(const om_index_t *ix, uint32_t off, om_ix_obj_t *o)
{
	const ix_block_sh_t *b = blk(ix, off);

	o->id = OM_LOAD(&b->id);
	o->size = OM_LOAD(&b->size);
	o->loc = 0;
	o->expires = OM_LOAD(&b->expires);
	o->crc = OM_LOAD(&b->crc);
	o->flags = OM_LOAD(&b->lenflags) & IX_FLAG_MASK;
	o->hits = OM_LOAD(&b->hits);
	o->atime = OM_LOAD(&b->atime);
	o->slot = off;
	if (o->flags & OM_IX_F_PACKED) {
		o->loc = o->size >> OM_IX_PACKED_SIZE_BITS;
		o->size &= OM_IX_PACKED_SIZE_MAX;
	}
}

/* The block's size field: a packed object's loc shares it. */
static uint64_t
size_field(const om_ix_obj_t *o)
{
	if (!(o->flags & OM_IX_F_PACKED))
		return o->size;
	OM_ASSERT(o->size <= OM_IX_PACKED_SIZE_MAX && o->loc <= OM_IX_LOC_MAX);
	return o->loc << OM_IX_PACKED_SIZE_BITS | o->size;
}

/* An object's bytes from its flags and size field (or its size). */
static uint64_t
size_of(uint32_t lf, uint64_t field)
{
	return (lf & OM_IX_F_PACKED) ? field & OM_IX_PACKED_SIZE_MAX : field;
}

/*
 * Compares a block's URI with a key. A block may be rewritten under an
 * optimistic reader, so it is read with relaxed word loads; URIs are
 * padded to 16 bytes, so whole-word loads stay inside the block.
 */
static bool
uri_equal(const om_index_t *ix, uint32_t off, const void *key, size_t len)
{
	const uint64_t *w = (const uint64_t *)(const void *)blk_uri(ix, off);
	const unsigned char *k = key;

	while (len >= 8) {
		uint64_t a = OM_LOAD(w), b;

		memcpy(&b, k, 8);
		if (a != b)
			return false;
		w++;
		k += 8;
		len -= 8;
	}
	if (len) {
		uint64_t a = OM_LOAD(w), b = 0, mask = (1ull << (len * 8)) - 1;

		memcpy(&b, k, len);
		if ((a & mask) != b)
			return false;
	}
	return true;
}

static void
uri_store(om_index_t *ix, uint32_t off, const void *key, size_t len)
{
	uint64_t *w = (uint64_t *)(void *)blk_uri(ix, off);
	size_t words = (size_t)uri_units(len) * (IX_UNIT / 8);
	const unsigned char *k = key;

	for (size_t i = 0; i < words; i++) {
		uint64_t v = 0;
		size_t n = len > 8 ? 8 : len;

		memcpy(&v, k, n);
		OM_STORE(&w[i], v);
		k += n;
		len -= n;
	}
}

#define IX_OPTIMISTIC_STEPS 4096

/*
 * Walks bucket b for the URI. Returns the address of the link (bucket head
 * or a predecessor's next) that holds the match, or NULL. With `optimistic`,
 * tolerates a chain that changes underneath (offsets out of range or an
 * endless walk set *bad); the caller validates with the stripe sequence.
 */
static uint32_t *
chain_find(om_index_t *ix, uint32_t b, uint32_t hash, const void *uri,
    size_t len, bool optimistic, bool *bad, uint32_t *found)
{
	uint32_t *link = &ix->buckets[b];
	uint32_t off, steps = 0, units = block_units(len);
	uint32_t limit = optimistic ? IX_OPTIMISTIC_STEPS : ix->capacity + 1;

	while ((off = OM_LOAD(link)) != IX_NIL) {
		const ix_block_sh_t *e;

		if (OM_UNLIKELY(off > ix->arena_units - IX_HDR_UNITS || ++steps > limit)) {
			OM_ASSERT(optimistic);
			*bad = true;
			return NULL;
		}
		e = blk(ix, off);
		if (OM_LOAD(&e->hash) == hash) {
			uint32_t lf = OM_LOAD(&e->lenflags);

			if (IX_LEN(lf) == len && (lf & IX_ST_MASK) == IX_ST_LINKED) {
				if (OM_UNLIKELY((uint64_t)off + units > ix->arena_units)) {
					OM_ASSERT(optimistic);
					*bad = true;
					return NULL;
				}
				if (uri_equal(ix, off, uri, len)) {
					*found = off;
					return link;
				}
			}
		}
		link = (uint32_t *)&e->next;
	}
	return NULL;
}

/* Finds a linked block's link by walking its bucket (stripe lock held). */
static uint32_t *
chain_find_slot(om_index_t *ix, uint32_t b, uint32_t slot)
{
	uint32_t *link = &ix->buckets[b];
	uint32_t off;

	while ((off = OM_LOAD(link)) != IX_NIL) {
		OM_ASSERT(off < ix->arena_units);
		if (off == slot)
			return link;
		link = &blk(ix, off)->next;
	}
	return NULL;
}

uint32_t
om_index_ticks(void)
{
	return (uint32_t)(om_clock_ms() / OM_IX_TICK_MS);
}

static void
touch(om_index_t *ix, uint32_t off, uint32_t flags)
{
	ix_block_sh_t *e = blk(ix, off);
	uint32_t now = om_index_ticks();

	/* The block may have been reused since the lookup: block boundaries
	 * never move, so these writes land on some block's access fields.
	 * Recency is refreshed only when it is getting old: a hot object's
	 * cache line is not written (and bounced between CPUs) on every read. */
	if (now - OM_LOAD(&e->atime) >= ix->touch_ticks)
		OM_STORE(&e->atime, now);
	/* Only persistent objects without a copy are promotion candidates;
	 * skip the shared write for everything else, and once the count is
	 * past any promotion threshold. */
	if (!(flags & (OM_IX_F_COPY | OM_IX_F_EPHEMERAL)) && OM_LOAD(&e->hits) < ix->hits_max)
		OM_ADD(&e->hits, 1);
}

/* An object's contribution to a stripe's counters. */
typedef struct {
	int64_t count[OM_IX_NCLASS];
	int64_t bytes[OM_IX_NCLASS];
} ix_delta_t;

static void
delta_add(ix_delta_t *d, uint32_t lf, uint64_t size, int sign)
{
	unsigned c = class_of_flags(lf);

	size = size_of(lf, size);
	d->count[c] += sign;
	d->bytes[c] += sign * (int64_t)size;
	if (lf & OM_IX_F_COPY) {
		d->count[OM_IX_CLASS_COPY] += sign;
		d->bytes[OM_IX_CLASS_COPY] += sign * (int64_t)size;
	}
}

static void
delta_log(om_index_t *ix, ix_lb_t *lb, ix_stripe_sh_t *st, const ix_delta_t *d)
{
	for (unsigned c = 0; c < OM_IX_NCLASS; c++) {
		if (d->count[c] != 0)
			lb_put32(ix, lb, &st->count[c], (uint32_t)((int64_t)OM_LOAD(&st->count[c]) + d->count[c]));
		if (d->bytes[c] != 0)
			lb_put64(ix, lb, &st->bytes[c], (uint64_t)((int64_t)OM_LOAD(&st->bytes[c]) + d->bytes[c]));
	}
}

/* ---- public operations ------------------------------------------------- */

int
om_index_lookup(om_index_t *ix, const void *uri, size_t len, om_ix_obj_t *out,
    unsigned flags)
{
	uint32_t hash, b, off = IX_NIL, *link = NULL;
	ix_stripe_sh_t *st;
	om_ix_obj_t o;

	if (len == 0 || len > ix->max_uri)
		return -ENOENT;
	hash = ix_hash(ix, uri, len);
	b = hash & ix->bmask;
	st = &ix->stripes[b & ix->smask];

	for (int tries = 0; tries < 4; tries++) {
		uint32_t s1 = OM_LOAD_ACQ(&st->seq), s2;
		bool bad = false;

		if (s1 & 1) {
			cpu_relax();
			continue;
		}
		link = chain_find(ix, b, hash, uri, len, true, &bad, &off);
		if (link != NULL)
			obj_from_block(ix, off, &o);
		OM_FENCE_ACQ();
		s2 = OM_LOAD(&st->seq);
		if (s1 == s2 && !bad)
			goto done;
	}

	/* A writer kept the stripe busy (or died in it): read under the lock,
	 * which also repairs. */
	stripe_lock(ix, st);
	link = chain_find(ix, b, hash, uri, len, false, NULL, &off);
	if (link != NULL)
		obj_from_block(ix, off, &o);
	stripe_unlock(st);
done:
	if (link == NULL)
		return -ENOENT;
	if (flags & OM_IX_TOUCH)
		touch(ix, o.slot, o.flags);
	if (out != NULL)
		*out = o;
	return 0;
}

void
om_index_lookup_batch(om_index_t *ix, unsigned n, const void *const *uris,
    const size_t *lens, om_ix_obj_t *out, int *rc, unsigned flags)
{
	uint32_t hash[OM_IX_BATCH_MAX];

	OM_ASSERT(n <= OM_IX_BATCH_MAX);
	/* Round 1: the buckets. Round 2: the first block of each chain (its
	 * header and URI). Round 3: the ordinary validated lookups, which now
	 * mostly hit the cache. */
	for (unsigned i = 0; i < n; i++) {
		if (lens[i] == 0 || lens[i] > ix->max_uri)
			continue;
		hash[i] = ix_hash(ix, uris[i], lens[i]);
		__builtin_prefetch(&ix->buckets[hash[i] & ix->bmask]);
	}
	for (unsigned i = 0; i < n; i++) {
		uint32_t off;

		if (lens[i] == 0 || lens[i] > ix->max_uri)
			continue;
		off = OM_LOAD(&ix->buckets[hash[i] & ix->bmask]);
		if (off != IX_NIL && off <= ix->arena_units - block_units(lens[i])) {
			__builtin_prefetch(blk(ix, off));
			__builtin_prefetch((const uint8_t *)blk(ix, off) + 64);
		}
	}
	for (unsigned i = 0; i < n; i++)
		rc[i] = om_index_lookup(ix, uris[i], lens[i], &out[i], flags);
}

static void
block_fill(om_index_t *ix, uint32_t off, uint32_t hash, const void *uri,
    size_t len, const om_ix_obj_t *obj)
{
	ix_block_sh_t *e = blk(ix, off);

	OM_STORE(&e->hash, hash);
	OM_STORE(&e->id, obj->id);
	OM_STORE(&e->size, size_field(obj));
	OM_STORE(&e->expires, obj->expires);
	OM_STORE(&e->crc, obj->crc);
	OM_STORE(&e->atime, om_index_ticks());
	OM_STORE(&e->hits, 0u);
	uri_store(ix, off, uri, len);
}

/* Unlinks the block at *link, releases it and frees it (stripe lock held). */
static void
unlink_locked(om_index_t *ix, ix_stripe_sh_t *st, uint32_t *link, om_ix_obj_t *old)
{
	uint32_t off = OM_LOAD(link);
	ix_block_sh_t *e = blk(ix, off);
	uint32_t lf = OM_LOAD(&e->lenflags);
	ix_delta_t d = { { 0 }, { 0 } };
	om_ix_obj_t o;
	ix_lb_t lb;

	obj_from_block(ix, off, &o);
	delta_add(&d, lf, o.size, -1);
	lb_init(&lb, &st->log);
	lb_put32(ix, &lb, link, OM_LOAD(&e->next));
	lb_put32(ix, &lb, &e->lenflags, (lf & ~IX_ST_MASK) | IX_ST_ALLOC);
	lb_put32(ix, &lb, &st->pending_old, off);
	delta_log(ix, &lb, st, &d);
	lb_commit(ix, &lb, &st->seq);

	if (ix->release != NULL)
		ix->release(ix->release_arg, &o);
	HOOK(ix);
	alloc_lock(ix);
	block_free(ix, off, &st->pending_old);
	alloc_unlock(ix);
	if (old != NULL)
		*old = o;
}

/* om_index_put, and with match != 0 om_index_put_match. */
static int
put_obj(om_index_t *ix, const void *uri, size_t len, const om_ix_obj_t *obj,
    enum om_ix_put_mode mode, uint64_t match, om_ix_obj_t *old)
{
	uint32_t hash, b, *link, off_old = IX_NIL, off_new, lf_new;
	ix_delta_t d = { { 0 }, { 0 } };
	ix_stripe_sh_t *st;
	ix_lb_t lb;
	int rc;

	if (len == 0 || len > ix->max_uri)
		return -EINVAL;
	OM_ASSERT(obj->id != 0);
	hash = ix_hash(ix, uri, len);
	b = hash & ix->bmask;
	st = &ix->stripes[b & ix->smask];

	stripe_lock(ix, st);
	link = chain_find(ix, b, hash, uri, len, false, NULL, &off_old);
	if (link != NULL && match != 0 && OM_LOAD(&blk(ix, off_old)->id) != match) {
		/* Another version than the one the caller's condition was on. */
		if (old != NULL)
			obj_from_block(ix, off_old, old);
		rc = -ECANCELED;
		goto out;
	}
	if (link != NULL) {
		/* Ids order writes: an equal or newer id already here wins. */
		if (mode == OM_IX_INSERT || OM_LOAD(&blk(ix, off_old)->id) >= obj->id) {
			if (old != NULL)
				obj_from_block(ix, off_old, old);
			rc = mode == OM_IX_INSERT ? -EEXIST : -ESTALE;
			goto out;
		}
	} else if (mode == OM_IX_REPLACE) {
		rc = -ENOENT;
		goto out;
	}

	rc = block_alloc(ix, st, len, link != NULL, &off_new);
	if (rc != 0)
		goto out;
	HOOK(ix);
	block_fill(ix, off_new, hash, uri, len, obj);
	HOOK(ix);

	/* The new block is private until the log below links it. */
	lf_new = (uint32_t)len << 16 | (obj->flags & (OM_IX_F_EPHEMERAL | OM_IX_F_UNCHECKED | OM_IX_F_PACKED)) |
	    IX_ST_LINKED;
	delta_add(&d, lf_new, obj->size, 1);
	lb_init(&lb, &st->log);
	if (link != NULL) {
		ix_block_sh_t *eo = blk(ix, off_old);
		uint32_t lf_old = OM_LOAD(&eo->lenflags);

		delta_add(&d, lf_old, OM_LOAD(&eo->size), -1);
		lb_put32(ix, &lb, &blk(ix, off_new)->next, OM_LOAD(&eo->next));
		lb_put32(ix, &lb, &blk(ix, off_new)->lenflags, lf_new);
		lb_put32(ix, &lb, link, off_new);
		lb_put32(ix, &lb, &eo->lenflags, (lf_old & ~IX_ST_MASK) | IX_ST_ALLOC);
		lb_put32(ix, &lb, &st->pending_old, off_old);
	} else {
		lb_put32(ix, &lb, &blk(ix, off_new)->next, OM_LOAD(&ix->buckets[b]));
		lb_put32(ix, &lb, &blk(ix, off_new)->lenflags, lf_new);
		lb_put32(ix, &lb, &ix->buckets[b], off_new);
	}
	lb_put32(ix, &lb, &st->pending_new, IX_NIL);
	delta_log(ix, &lb, st, &d);
	lb_commit(ix, &lb, &st->seq);

	if (link != NULL) {
		om_ix_obj_t o;

		obj_from_block(ix, off_old, &o);
		if (ix->release != NULL)
			ix->release(ix->release_arg, &o);
		HOOK(ix);
		alloc_lock(ix);
		block_free(ix, off_old, &st->pending_old);
		alloc_unlock(ix);
		if (old != NULL)
			*old = o;
		rc = 1;
	}
out:
	stripe_unlock(st);
	return rc;
}

int
om_index_put(om_index_t *ix, const void *uri, size_t len, const om_ix_obj_t *obj,
    enum om_ix_put_mode mode, om_ix_obj_t *old)
{
	return put_obj(ix, uri, len, obj, mode, 0, old);
}

int
om_index_put_match(om_index_t *ix, const void *uri, size_t len, const om_ix_obj_t *obj,
    uint64_t match, om_ix_obj_t *old)
{
	if (match == 0)
		return -EINVAL;
	return put_obj(ix, uri, len, obj, OM_IX_REPLACE, match, old);
}

int
om_index_delete(om_index_t *ix, const void *uri, size_t len, uint64_t id,
    om_ix_obj_t *old)
{
	uint32_t hash, b, off, *link;
	ix_stripe_sh_t *st;
	int rc = -ENOENT;

	if (len == 0 || len > ix->max_uri)
		return -ENOENT;
	hash = ix_hash(ix, uri, len);
	b = hash & ix->bmask;
	st = &ix->stripes[b & ix->smask];

	stripe_lock(ix, st);
	link = chain_find(ix, b, hash, uri, len, false, NULL, &off);
	if (link != NULL && (id == 0 || OM_LOAD(&blk(ix, off)->id) == id)) {
		unlink_locked(ix, st, link, old);
		rc = 0;
	}
	stripe_unlock(st);
	return rc;
}

/* True if `slot` is the offset of a block header inside the carved arena. */
static bool
slot_plausible(const om_index_t *ix, uint32_t slot)
{
	return (uint64_t)slot + IX_HDR_UNITS < OM_LOAD_ACQ(&ix->h->bump) + 1ull;
}

/*
 * Locks the stripe a block appears to belong to and finds it linked there
 * with the expected id. The block may be freed and reused by another
 * stripe at any moment, so nothing read before the lock is trusted: only a
 * walk of the bucket under the lock proves the slot is this object.
 */
static uint32_t *
slot_lock(om_index_t *ix, uint32_t slot, uint64_t id, ix_stripe_sh_t **stp)
{
	uint32_t hash, b, *link;
	ix_stripe_sh_t *st;

	if (!slot_plausible(ix, slot))
		return NULL;
	hash = OM_LOAD(&blk(ix, slot)->hash);
	b = hash & ix->bmask;
	st = &ix->stripes[b & ix->smask];
	stripe_lock(ix, st);
	link = chain_find_slot(ix, b, slot);
	if (link == NULL || OM_LOAD(&blk(ix, slot)->id) != id) {
		stripe_unlock(st);
		return NULL;
	}
	*stp = st;
	return link;
}

int
om_index_delete_slot(om_index_t *ix, uint32_t slot, uint64_t id, om_ix_obj_t *old)
{
	ix_stripe_sh_t *st;
	uint32_t *link = slot_lock(ix, slot, id, &st);

	if (link == NULL)
		return -ENOENT;
	unlink_locked(ix, st, link, old);
	stripe_unlock(st);
	return 0;
}

int
om_index_update_flags(om_index_t *ix, uint32_t slot, uint64_t id, uint32_t set,
    uint32_t clear)
{
	ix_block_sh_t *e;
	ix_stripe_sh_t *st;
	uint32_t *link, lf, nlf;
	ix_delta_t d = { { 0 }, { 0 } };
	ix_lb_t lb;

	OM_ASSERT(((set | clear) & ~(OM_IX_F_COPY | OM_IX_F_UNCHECKED)) == 0);
	link = slot_lock(ix, slot, id, &st);
	if (link == NULL)
		return -ENOENT;
	e = blk(ix, slot);
	lf = OM_LOAD(&e->lenflags);
	nlf = (lf | set) & ~clear;
	if (nlf != lf) {
		delta_add(&d, lf, OM_LOAD(&e->size), -1);
		delta_add(&d, nlf, OM_LOAD(&e->size), 1);
		lb_init(&lb, &st->log);
		lb_put32(ix, &lb, &e->lenflags, nlf);
		if (set & OM_IX_F_COPY)
			lb_put32(ix, &lb, &e->hits, 0);
		delta_log(ix, &lb, st, &d);
		lb_commit(ix, &lb, &st->seq);
	}
	stripe_unlock(st);
	return 0;
}

int
om_index_relocate(om_index_t *ix, uint32_t slot, uint64_t id, uint64_t from, uint64_t to)
{
	ix_block_sh_t *e;
	ix_stripe_sh_t *st;
	om_ix_obj_t o;
	ix_lb_t lb;

	OM_ASSERT(to <= OM_IX_LOC_MAX);
	if (slot_lock(ix, slot, id, &st) == NULL)
		return -ENOENT;
	e = blk(ix, slot);
	obj_from_block(ix, slot, &o);
	if (!(o.flags & OM_IX_F_PACKED) || o.loc != from) {
		stripe_unlock(st);
		return -ENOENT;
	}
	o.loc = to;
	lb_init(&lb, &st->log);
	lb_put64(ix, &lb, &e->size, size_field(&o));
	lb_commit(ix, &lb, &st->seq);
	stripe_unlock(st);
	return 0;
}

typedef struct {
	om_ix_obj_t obj;
	size_t uri_at;
	uint32_t uri_len;
} ix_item_t;

int
om_index_iterate(om_index_t *ix, om_ix_iter_fn fn, void *arg)
{
	ix_item_t *items = NULL;
	char *uris = NULL;
	size_t icap = 0, ucap = 0;
	int rc = 0;

	for (uint32_t s = 0; s <= ix->smask && rc == 0; s++) {
		ix_stripe_sh_t *st = &ix->stripes[s];
		size_t n = 0, ulen = 0;

		stripe_lock(ix, st);
		for (uint32_t b = s; b <= ix->bmask && rc == 0; b += ix->smask + 1) {
			for (uint32_t off = OM_LOAD(&ix->buckets[b]); off != IX_NIL;
			    off = OM_LOAD(&blk(ix, off)->next)) {
				uint32_t len = IX_LEN(OM_LOAD(&blk(ix, off)->lenflags));

				if (n == icap) {
					size_t c = icap ? icap * 2 : 256;
					ix_item_t *p = realloc(items, c * sizeof(*p));

					if (p == NULL) {
						rc = -ENOMEM;
						break;
					}
					items = p;
					icap = c;
				}
				if (uris == NULL || ulen + len > ucap) {
					size_t c = ucap ? ucap * 2 : 16384;
					char *p;

					while (c < ulen + len)
						c *= 2;
					p = realloc(uris, c);
					if (p == NULL) {
						rc = -ENOMEM;
						break;
					}
					uris = p;
					ucap = c;
				}
				obj_from_block(ix, off, &items[n].obj);
				items[n].uri_at = ulen;
				items[n].uri_len = len;
				memcpy(uris + ulen, blk_uri(ix, off), len);
				ulen += len;
				n++;
			}
		}
		stripe_unlock(st);
		for (size_t i = 0; i < n && rc == 0; i++)
			rc = fn(arg, uris + items[i].uri_at, items[i].uri_len, &items[i].obj);
	}
	free(items);
	free(uris);
	return rc;
}

/*
 * A lock-free copy of one block that is known to be one version of one
 * object: the state is read with acquire (so a linked block's fill is
 * visible), and neither state nor id changed while the fields were read.
 * Ids are never reused, so a block freed and reused meanwhile shows up.
 */
static bool
snapshot(const om_index_t *ix, uint32_t off, uint32_t lf, om_ix_obj_t *o)
{
	const ix_block_sh_t *e = blk(ix, off);
	uint64_t id;

	if ((lf & IX_ST_MASK) != IX_ST_LINKED)
		return false;
	id = OM_LOAD(&e->id);
	obj_from_block(ix, off, o);
	OM_FENCE_ACQ();
	return OM_LOAD(&e->id) == id && o->id == id && OM_LOAD(&e->lenflags) == lf;
}

/*
 * Steps through the arena block by block. Boundaries never move, so the
 * walk is well defined without locks: each block's length says where the
 * next begins. Returns the next offset, or IX_NIL at the end of the carved
 * arena (or at a damaged length, which the consistency check reports).
 */
static inline uint32_t
arena_next(const om_index_t *ix, uint32_t off, uint32_t bump, uint32_t *lf)
{
	uint32_t len;

	*lf = OM_LOAD_ACQ(&blk(ix, off)->lenflags);
	len = IX_LEN(*lf);
	if (OM_UNLIKELY(len == 0 || len > ix->max_uri))
		return IX_NIL;
	off += block_units(len);
	return off < bump ? off : IX_NIL;
}

int
om_index_scan(om_index_t *ix, om_ix_scan_fn fn, void *arg)
{
	uint32_t bump = OM_LOAD_ACQ(&ix->h->bump);

	for (uint32_t off = 0, next; bump > 0 && off != IX_NIL; off = next) {
		om_ix_obj_t o;
		uint32_t lf;
		int rc;

		next = arena_next(ix, off, bump, &lf);
		if (snapshot(ix, off, lf, &o) && (rc = fn(arg, &o)) != 0)
			return rc;
	}
	return 0;
}

int
om_index_slot_get(om_index_t *ix, uint32_t slot, uint64_t id, om_ix_obj_t *out)
{
	uint32_t bump = OM_LOAD_ACQ(&ix->h->bump);

	/* A slot handle is a block offset, and block boundaries never move. */
	if (slot >= bump || !snapshot(ix, slot, OM_LOAD_ACQ(&blk(ix, slot)->lenflags), out) ||
	    out->id != id)
		return -ENOENT;
	return 0;
}

int
om_index_walk(om_index_t *ix, uint32_t *cursor, unsigned max, om_ix_scan_fn fn, void *arg)
{
	uint32_t bump = OM_LOAD_ACQ(&ix->h->bump), off = *cursor, next, lf;
	unsigned seen = 0;

	/* As for the sampler's hand: an offset past the end starts over. */
	if (bump == 0 || off >= bump) {
		*cursor = 0;
		return 1;
	}
	for (; seen < max; off = next) {
		om_ix_obj_t o;
		int rc;

		next = arena_next(ix, off, bump, &lf);
		if (snapshot(ix, off, lf, &o)) {
			seen++;
			if ((rc = fn(arg, &o)) != 0) {
				*cursor = next == IX_NIL ? 0 : next;
				return rc < 0 ? rc : (next == IX_NIL);
			}
		}
		if (next == IX_NIL) {
			*cursor = 0;
			return 1;
		}
	}
	*cursor = off;
	return 0;
}

/* ---- listing by prefix --------------------------------------------------- */

/* One bucket's matches: entries and their URIs, grown as needed. */
typedef struct {
	om_ix_entry_t *e;
	size_t *at;      /* each entry's URI offset in uris (uris may move) */
	unsigned n, cap;
	char *uris;
	size_t ulen, ucap;
} ix_matches_t;

static void
matches_free(ix_matches_t *m)
{
	free(m->e);
	free(m->at);
	free(m->uris);
}

/* Room for one more entry of a URI of len bytes (rounded up to whole
 * words: the copy reads the block in 8-byte loads). */
static int
matches_room(ix_matches_t *m, size_t len)
{
	size_t words = (len + 7) & ~(size_t)7;

	if (m->n == m->cap) {
		unsigned c = m->cap ? m->cap * 2 : 16;
		om_ix_entry_t *e = realloc(m->e, c * sizeof(*e));
		size_t *at;

		if (e == NULL)
			return -ENOMEM;
		m->e = e;
		if ((at = realloc(m->at, c * sizeof(*at))) == NULL)
			return -ENOMEM;
		m->at = at;
		m->cap = c;
	}
	if (m->uris == NULL || m->ulen + words > m->ucap) {
		size_t c = m->ucap ? m->ucap * 2 : 4096;
		char *u;

		while (c < m->ulen + words)
			c *= 2;
		if ((u = realloc(m->uris, c)) == NULL)
			return -ENOMEM;
		m->uris = u;
		m->ucap = c;
	}
	return 0;
}

/* Copies a block's URI with relaxed word loads (a writer may be changing
 * the block under an optimistic reader, who validates afterwards). */
static void
uri_copy(const om_index_t *ix, uint32_t off, char *dst, size_t len)
{
	const uint64_t *w = (const uint64_t *)(const void *)blk_uri(ix, off);

	for (size_t i = 0; i < (len + 7) / 8; i++) {
		uint64_t v = OM_LOAD(&w[i]);

		memcpy(dst + i * 8, &v, 8);
	}
}

/*
 * Collects bucket b's objects whose URI begins with the prefix. With
 * `optimistic` (no lock), a chain that changes underneath (offsets out of
 * range, a walk without end) sets *bad; the caller validates with the
 * stripe's sequence. *looked counts the objects looked at.
 */
static int
bucket_collect(om_index_t *ix, uint32_t b, const void *prefix, size_t plen, bool optimistic,
    bool *bad, ix_matches_t *m, unsigned *looked)
{
	uint32_t off, steps = 0, limit = optimistic ? IX_OPTIMISTIC_STEPS : ix->capacity + 1;
	const uint32_t *link = &ix->buckets[b];

	m->n = 0;
	m->ulen = 0;
	*looked = 0;
	while ((off = OM_LOAD(link)) != IX_NIL) {
		const ix_block_sh_t *e;
		uint32_t lf, len;
		int rc;

		if (OM_UNLIKELY(off > ix->arena_units - IX_HDR_UNITS || ++steps > limit)) {
			OM_ASSERT(optimistic);
			*bad = true;
			return 0;
		}
		e = blk(ix, off);
		lf = OM_LOAD(&e->lenflags);
		len = IX_LEN(lf);
		if (OM_UNLIKELY(len == 0 || len > ix->max_uri ||
		    (uint64_t)off + block_units(len) > ix->arena_units)) {
			OM_ASSERT(optimistic);
			*bad = true;
			return 0;
		}
		(*looked)++;
		if ((lf & IX_ST_MASK) == IX_ST_LINKED && len >= plen &&
		    (plen == 0 || uri_equal(ix, off, prefix, plen))) {
			if ((rc = matches_room(m, len)) != 0)
				return rc;
			m->at[m->n] = m->ulen;
			uri_copy(ix, off, m->uris + m->ulen, len);
			m->e[m->n].len = len;
			obj_from_block(ix, off, &m->e[m->n].obj);
			m->ulen += (len + 7) & ~(size_t)7;
			m->n++;
		}
		link = &e->next;
	}
	return 0;
}

/* Bucket b as one version: optimistic reads validated by the stripe's
 * sequence, then, if writers keep it busy, under its lock (which also
 * repairs a dead writer's stripe). */
static int
bucket_read(om_index_t *ix, uint32_t b, const void *prefix, size_t plen, ix_matches_t *m,
    unsigned *looked)
{
	ix_stripe_sh_t *st = &ix->stripes[b & ix->smask];
	int rc;

	for (int tries = 0; tries < 4; tries++) {
		uint32_t s1 = OM_LOAD_ACQ(&st->seq);
		bool bad = false;

		if (s1 & 1) {
			cpu_relax();
			continue;
		}
		rc = bucket_collect(ix, b, prefix, plen, true, &bad, m, looked);
		OM_FENCE_ACQ();
		if (rc != 0)
			return rc;
		if (OM_LOAD(&st->seq) == s1 && !bad)
			return 0;
	}
	stripe_lock(ix, st);
	rc = bucket_collect(ix, b, prefix, plen, false, NULL, m, looked);
	stripe_unlock(st);
	return rc;
}

int
om_index_list(om_index_t *ix, uint32_t *cursor, const void *prefix, size_t plen,
    unsigned max_buckets, unsigned max_objects, om_ix_list_fn fn, void *arg)
{
	ix_matches_t m = { 0 };
	unsigned buckets = 0, looked = 0;
	uint32_t b = *cursor;
	int rc = 0;

	if (b > ix->bmask)
		return -EINVAL;
	if (plen > ix->max_uri) {
		/* No URI is that long: nothing matches. */
		*cursor = 0;
		return 1;
	}
	for (;;) {
		unsigned k;

		if ((rc = bucket_read(ix, b, prefix, plen, &m, &k)) != 0)
			break;
		buckets++;
		looked += k;
		if (m.n > 0) {
			int take;

			for (unsigned i = 0; i < m.n; i++)
				m.e[i].uri = m.uris + m.at[i];
			take = fn(arg, m.e, m.n);
			if (take == OM_IX_LIST_REFUSE) {
				*cursor = b;
				rc = 0;
				break;
			}
			if (take == OM_IX_LIST_LAST) {
				buckets = max_buckets; /* stop after this one */
			}
		}
		if (b == ix->bmask) {
			*cursor = 0;
			rc = 1;
			break;
		}
		b++;
		if (buckets >= max_buckets || looked >= max_objects) {
			*cursor = b;
			rc = 0;
			break;
		}
	}
	matches_free(&m);
	return rc;
}

uint32_t
om_index_buckets(const om_index_t *ix)
{
	return ix->bmask + 1;
}

uint32_t
om_index_tag(const om_index_t *ix)
{
	static const char what[] = "objmapper list cursor";
	uint32_t t = (uint32_t)(om_hash64(what, sizeof(what) - 1, ix->h->seed) >> 32);

	return t != 0 ? t : 1;
}

void
om_index_class_bytes(om_index_t *ix, uint64_t bytes[OM_IX_NCLASS])
{
	for (unsigned c = 0; c < OM_IX_NCLASS; c++)
		bytes[c] = 0;
	for (uint32_t s = 0; s <= ix->smask; s++)
		for (unsigned c = 0; c < OM_IX_NCLASS; c++)
			bytes[c] += OM_LOAD(&ix->stripes[s].bytes[c]);
}

static bool
selected(uint32_t lf, unsigned sel)
{
	if ((sel & OM_IX_SEL(OM_IX_CLASS_COPY)) && (lf & OM_IX_F_COPY))
		return true;
	return (sel & OM_IX_SEL(class_of_flags(lf))) != 0;
}

int
om_index_sample(om_index_t *ix, unsigned sel, unsigned k, size_t uri_len,
    uint32_t *cursor, om_ix_obj_t *victim)
{
	uint32_t now = om_index_ticks(), best_age = 0;
	uint32_t bump = OM_LOAD_ACQ(&ix->h->bump), off = *cursor, lf;
	uint32_t want = uri_len ? block_units(uri_len) : 0;
	uint64_t seen = 0, limit = (uint64_t)bump;
	unsigned found = 0;

	if (bump == 0)
		return -ENOENT;
	/* The cursor is a block offset this process handed out before;
	 * anything else starts over. */
	if (off >= bump)
		off = 0;
	while (found < k && seen < limit) {
		uint32_t next = arena_next(ix, off, bump, &lf);
		om_ix_obj_t o;

		seen += next == IX_NIL ? bump - off : next - off;
		if (snapshot(ix, off, lf, &o) && selected(o.flags, sel) &&
		    (want == 0 || block_units(IX_LEN(lf)) == want)) {
			uint32_t age = now - o.atime;

			if (found == 0 || age > best_age) {
				best_age = age;
				*victim = o;
			}
			found++;
		}
		off = next == IX_NIL ? 0 : next;
	}
	*cursor = off;
	return found ? 0 : -ENOENT;
}

void
om_index_decay(om_index_t *ix)
{
	uint32_t now = om_index_ticks(), bump = OM_LOAD_ACQ(&ix->h->bump);

	for (uint32_t off = 0, next, lf; bump > 0 && off != IX_NIL; off = next) {
		ix_block_sh_t *e = blk(ix, off);
		uint32_t hits, atime;

		next = arena_next(ix, off, bump, &lf);
		if ((lf & IX_ST_MASK) != IX_ST_LINKED)
			continue;
		hits = OM_LOAD(&e->hits);
		if (hits)
			OM_STORE(&e->hits, hits / 2);
		/* atime is a wrapping clock: keep ages below 2^30 ticks (1.6
		 * years) so that a long-unread object never looks fresh. */
		atime = OM_LOAD(&e->atime);
		if (now - atime > (1u << 30))
			OM_STORE(&e->atime, now - (1u << 30));
	}
}

void
om_index_note_drop(om_index_t *ix, uint64_t key)
{
	uint64_t n = OM_FETCH_ADD(&ix->h->notes_head, 1);

	ix->h->notes[n & (IX_NOTES - 1)].key = key;
	OM_STORE_REL(&ix->h->notes[n & (IX_NOTES - 1)].seq, n + 1);
}

uint64_t
om_index_notes_head(om_index_t *ix)
{
	return OM_LOAD_ACQ(&ix->h->notes_head);
}

int
om_index_notes(om_index_t *ix, uint64_t *cursor, void (*fn)(void *arg, uint64_t key), void *arg)
{
	uint64_t head = OM_LOAD_ACQ(&ix->h->notes_head), n = *cursor;

	if (head - n > IX_NOTES) {
		*cursor = head;
		return -ERANGE;
	}
	for (; n != head; n++) {
		uint64_t seq = OM_LOAD_ACQ(&ix->h->notes[n & (IX_NOTES - 1)].seq), key;

		if (seq < n + 1) /* not written yet: its writer is between the stores */
			break;
		if (seq > n + 1) { /* written over by a later lap */
			*cursor = OM_LOAD_ACQ(&ix->h->notes_head);
			return -ERANGE;
		}
		key = ix->h->notes[n & (IX_NOTES - 1)].key;
		/* Written over while it was read: lost. */
		if (OM_LOAD_ACQ(&ix->h->notes[n & (IX_NOTES - 1)].seq) != n + 1) {
			*cursor = OM_LOAD_ACQ(&ix->h->notes_head);
			return -ERANGE;
		}
		fn(arg, key);
	}
	*cursor = n;
	return 0;
}

uint64_t
om_index_next_id(om_index_t *ix)
{
	return OM_FETCH_ADD(&ix->h->next_id, 1);
}

void
om_index_reserve_ids(om_index_t *ix, uint64_t next)
{
	uint64_t cur = OM_LOAD(&ix->h->next_id);

	while (cur < next &&
	    !__atomic_compare_exchange_n(&ix->h->next_id, &cur, next, false,
		__ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

void
om_index_usage(om_index_t *ix, om_ix_usage_t *u)
{
	ix_header_sh_t *h = ix->h;
	uint64_t on_lists = 0;

	memset(u, 0, sizeof(*u));
	for (uint32_t s = 0; s <= ix->smask; s++) {
		for (unsigned c = 0; c < OM_IX_NCLASS; c++) {
			u->count[c] += OM_LOAD(&ix->stripes[s].count[c]);
			u->bytes[c] += OM_LOAD(&ix->stripes[s].bytes[c]);
		}
	}
	u->objects = u->count[OM_IX_CLASS_PERSIST] + u->count[OM_IX_CLASS_EPHEMERAL];
	u->capacity = ix->capacity;
	u->arena_bytes = (uint64_t)ix->arena_units * IX_UNIT;
	alloc_lock(ix);
	u->arena_used = (uint64_t)OM_LOAD(&h->bump) * IX_UNIT;
	for (uint32_t k = 1; k < h->nclasses; k++) {
		uint32_t n = 0;

		for (uint32_t c = OM_LOAD(&ix->classes[k]); c != IX_NIL && n <= ix->arena_units;
		    c = OM_LOAD(&blk(ix, c)->next), n++)
			on_lists += (uint64_t)k * IX_UNIT;
	}
	alloc_unlock(ix);
	u->arena_free_lists = on_lists;
	u->owner_deaths = OM_LOAD(&h->owner_deaths);
	u->segment_bytes = ix->size;
}

uint32_t
om_index_hits_max(const om_index_t *ix)
{
	return ix->hits_max;
}

uint32_t
om_index_capacity(const om_index_t *ix)
{
	return ix->capacity;
}

uint32_t
om_index_max_uri(const om_index_t *ix)
{
	return ix->max_uri;
}

size_t
om_index_object_bytes(const om_index_t *ix, size_t uri_len)
{
	/* Buckets are a power of two >= 2 x capacity: fewer than 4 per object. */
	size_t bucket_share = ((size_t)ix->h->nbuckets * sizeof(uint32_t) +
	    ix->capacity - 1) / ix->capacity;

	return sizeof(ix_block_sh_t) + (size_t)uri_units(uri_len) * IX_UNIT + bucket_share;
}

void *
om_index_proc_area(om_index_t *ix, unsigned slot)
{
	if (slot >= ix->h->nprocs)
		return NULL;
	return ix->procs + (size_t)slot * ix->h->proc_bytes;
}

unsigned
om_index_procs(const om_index_t *ix)
{
	return ix->h->nprocs;
}

size_t
om_index_proc_bytes(const om_index_t *ix)
{
	return ix->h->proc_bytes;
}

int
om_index_fd(const om_index_t *ix)
{
	return ix->fd;
}

void
om_index_set_release(om_index_t *ix, om_ix_release_fn fn, void *arg)
{
	ix->release = fn;
	ix->release_arg = arg;
}

void
om_index_set_hook(om_index_t *ix, void (*fn)(void *arg, unsigned step), void *arg)
{
	ix->hook = fn;
	ix->hook_arg = arg;
	ix->hook_step = 0;
}

/* ---- creation ---------------------------------------------------------- */

static uint32_t
pow2_at_least(uint64_t n)
{
	uint32_t p = 1;

	while (p < n && p < (1u << 31))
		p <<= 1;
	return p;
}

static void
index_bind(om_index_t *ix, uint8_t *base, size_t size, int fd)
{
	ix_header_sh_t *h = (ix_header_sh_t *)(void *)base;

	ix->base = base;
	ix->size = size;
	ix->fd = fd;
	ix->h = h;
	ix->stripes = (ix_stripe_sh_t *)(void *)(base + h->off_stripes);
	ix->classes = (uint32_t *)(void *)(base + h->off_classes);
	ix->buckets = (uint32_t *)(void *)(base + h->off_buckets);
	ix->procs = base + h->off_procs;
	ix->arena = base + h->off_arena;
	ix->bmask = h->nbuckets - 1;
	ix->smask = h->nstripes - 1;
	ix->spin = sysconf(_SC_NPROCESSORS_ONLN) > 1;
	ix->populate = true;
	ix->capacity = h->capacity;
	ix->arena_units = h->arena_units;
	ix->max_uri = h->max_uri;
	ix->hits_max = h->hits_max;
	ix->touch_ticks = h->touch_ticks;
}

static int
mutex_init_shared(pthread_mutex_t *m)
{
	pthread_mutexattr_t a;
	int rc;

	if ((rc = pthread_mutexattr_init(&a)) != 0)
		return -rc;
	rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
	if (rc == 0)
		rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (rc == 0)
		rc = pthread_mutex_init(m, &a);
	pthread_mutexattr_destroy(&a);
	return -rc;
}

/* Where everything lies in a segment made with the given parameters. */
typedef struct {
	uint32_t capacity, max_uri, nstripes, nprocs, proc_bytes;
	uint32_t nbuckets, nclasses, arena_units;
	uint64_t off_stripes, off_classes, off_buckets, off_procs, off_arena;
	uint64_t size; /* rounded up to pages */
} ix_layout_t;

static int
ix_layout(const om_ix_params_t *p, ix_layout_t *l)
{
	uint64_t arena_bytes = p->arena_bytes ? p->arena_bytes : (uint64_t)p->capacity * 112;
	uint64_t off;

	l->capacity = p->capacity;
	l->max_uri = p->max_uri;
	l->nstripes = p->stripes ? p->stripes : 256;
	l->nprocs = p->procs ? p->procs : 64;
	l->proc_bytes = p->proc_bytes ? OM_ALIGN_UP(p->proc_bytes, 64u) : 256;
	if (l->capacity == 0 || l->capacity >= IX_NIL / 4 || l->max_uri == 0 ||
	    l->max_uri > OM_IX_URI_MAX || (l->nstripes & (l->nstripes - 1)) != 0 ||
	    l->nstripes > 65536 || l->nprocs > 4096 || p->hits_max > OM_IX_HITS_MAX)
		return -EINVAL;
	l->nclasses = block_units(l->max_uri) + 1;
	if (p->arena_bytes == 0 && arena_bytes < (uint64_t)block_units(l->max_uri) * IX_UNIT * 2)
		arena_bytes = (uint64_t)block_units(l->max_uri) * IX_UNIT * 2;
	_Static_assert(OM_IX_ARENA_MAX / IX_UNIT < IX_NIL, "the configuration's largest arena fits");
	if (arena_bytes / IX_UNIT >= IX_NIL ||
	    arena_bytes < (uint64_t)block_units(l->max_uri) * IX_UNIT)
		return -EINVAL;
	l->arena_units = (uint32_t)(arena_bytes / IX_UNIT);
	/* Two to four buckets per object (8 to 16 bytes): chains stay short,
	 * so a lookup rarely reads a second block. At least one bucket per
	 * stripe, so small indexes get fewer stripes. */
	l->nbuckets = pow2_at_least((uint64_t)l->capacity * 2);
	if (l->nstripes > l->nbuckets)
		l->nstripes = l->nbuckets;

	off = OM_ALIGN_UP((uint64_t)sizeof(ix_header_sh_t), 64u);
	l->off_stripes = off;
	off += (uint64_t)l->nstripes * sizeof(ix_stripe_sh_t);
	l->off_classes = off;
	off = OM_ALIGN_UP(off + (uint64_t)l->nclasses * 4, 64u);
	l->off_buckets = off;
	off = OM_ALIGN_UP(off + (uint64_t)l->nbuckets * 4, 64u);
	l->off_procs = off;
	off += (uint64_t)l->nprocs * l->proc_bytes;
	l->off_arena = OM_ALIGN_UP(off, 64u);
	off = l->off_arena + (uint64_t)l->arena_units * IX_UNIT;
	l->size = OM_ALIGN_UP(off, (uint64_t)sysconf(_SC_PAGESIZE));
	return 0;
}

/* Writes an empty index laid out as l into a zeroed segment of size bytes
 * (at least l->size) and binds ix to it. */
static int
ix_format(om_index_t *ix, uint8_t *base, size_t size, int fd, const ix_layout_t *l,
    const om_ix_params_t *p)
{
	ix_header_sh_t *h = (ix_header_sh_t *)(void *)base;
	int rc;

	h->version = IX_VERSION;
	h->seg_size = size;
	if (getrandom(&h->seed, sizeof(h->seed), 0) != sizeof(h->seed))
		h->seed = (uint64_t)getpid() * 0x9e3779b97f4a7c15ull ^ (uint64_t)om_clock_ms();
	h->capacity = l->capacity;
	h->nbuckets = l->nbuckets;
	h->nstripes = l->nstripes;
	h->nclasses = l->nclasses;
	h->max_uri = l->max_uri;
	h->nprocs = l->nprocs;
	h->proc_bytes = l->proc_bytes;
	h->arena_units = l->arena_units;
	h->hits_max = p->hits_max;
	h->touch_ticks = (p->atime_res_ms ? p->atime_res_ms : 500) / OM_IX_TICK_MS;
	if (h->touch_ticks == 0)
		h->touch_ticks = 1;
	h->off_stripes = l->off_stripes;
	h->off_classes = l->off_classes;
	h->off_buckets = l->off_buckets;
	h->off_procs = l->off_procs;
	h->off_arena = l->off_arena;
	h->next_id = 1;
	h->bump = 0;
	h->live = 0;
	index_bind(ix, base, size, fd);

	if ((rc = mutex_init_shared(&h->alloc_mtx)) != 0)
		return rc;
	for (uint32_t s = 0; s < l->nstripes; s++) {
		ix_stripe_sh_t *st = &ix->stripes[s];

		if ((rc = mutex_init_shared(&st->mtx)) != 0)
			return rc;
		st->pending_new = IX_NIL;
		st->pending_old = IX_NIL;
	}
	memset(ix->classes, 0xff, (size_t)l->nclasses * 4);
	memset(ix->buckets, 0xff, (size_t)l->nbuckets * 4);
	OM_STORE_REL(&h->magic, IX_MAGIC);
	return 0;
}

int
om_index_create(const om_ix_params_t *p, om_index_t **out)
{
	int fd = memfd_create("objmapper-index", MFD_CLOEXEC), rc;

	if (fd < 0)
		return -errno;
	if ((rc = om_index_create_in(fd, p, out)) != 0)
		close(fd);
	return rc;
}

int
om_index_create_in(int fd, const om_ix_params_t *p, om_index_t **out)
{
	ix_layout_t l;
	om_index_t *ix;
	uint8_t *base;
	int rc;

	if ((rc = ix_layout(p, &l)) != 0)
		return rc;
	ix = calloc(1, sizeof(*ix));
	if (ix == NULL)
		return -ENOMEM;
	/* Whatever the file held goes: a new segment is zeroed. */
	if (ftruncate(fd, 0) != 0 || ftruncate(fd, (off_t)l.size) != 0) {
		rc = -errno;
		goto fail;
	}
	base = mmap(NULL, l.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		rc = -errno;
		goto fail;
	}
	if ((rc = ix_format(ix, base, l.size, fd, &l, p)) != 0)
		goto fail_unmap;
	*out = ix;
	return 0;

fail_unmap:
	munmap(base, l.size);
fail:
	free(ix);
	return rc;
}

int
om_index_recreate(om_index_t *ix, const om_ix_params_t *p)
{
	ix_layout_t l;
	int rc;

	if ((rc = ix_layout(p, &l)) != 0)
		return rc;
	if (l.size > ix->size)
		return -ENOSPC;
	memset(ix->base, 0, ix->size);
	ix->release = NULL;
	ix->release_arg = NULL;
	ix->hook = NULL;
	ix->hook_arg = NULL;
	ix->hook_step = 0;
	return ix_format(ix, ix->base, ix->size, ix->fd, &l, p);
}

int
om_index_attach(int fd, om_index_t **out)
{
	ix_header_sh_t hdr;
	ix_layout_t l;
	om_ix_params_t p;
	struct stat sb;
	om_index_t *ix;
	uint8_t *base;

	if (pread(fd, &hdr, sizeof(hdr), 0) != (ssize_t)sizeof(hdr))
		return -EINVAL;
	if (hdr.magic != IX_MAGIC || hdr.version != IX_VERSION)
		return -EPROTO;
	/* A header that does not describe the layout it claims (or a file cut
	 * short) is not mapped: every offset must lie where the parameters
	 * put it. */
	memset(&p, 0, sizeof(p));
	p.capacity = hdr.capacity;
	p.max_uri = hdr.max_uri;
	p.arena_bytes = (uint64_t)hdr.arena_units * IX_UNIT;
	p.stripes = hdr.nstripes;
	p.procs = hdr.nprocs;
	p.proc_bytes = hdr.proc_bytes;
	p.hits_max = hdr.hits_max;
	if (ix_layout(&p, &l) != 0 || l.size > hdr.seg_size || l.nstripes != hdr.nstripes ||
	    l.nbuckets != hdr.nbuckets || l.nclasses != hdr.nclasses || l.off_stripes != hdr.off_stripes ||
	    l.off_classes != hdr.off_classes || l.off_buckets != hdr.off_buckets ||
	    l.off_procs != hdr.off_procs || l.off_arena != hdr.off_arena ||
	    fstat(fd, &sb) != 0 || (uint64_t)sb.st_size < hdr.seg_size)
		return -EPROTO;
	base = mmap(NULL, hdr.seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED)
		return -errno;
	ix = calloc(1, sizeof(*ix));
	if (ix == NULL) {
		munmap(base, hdr.seg_size);
		return -ENOMEM;
	}
	index_bind(ix, base, hdr.seg_size, fd);
	*out = ix;
	return 0;
}

int
om_index_same_params(const om_index_t *ix, const om_ix_params_t *p)
{
	const ix_header_sh_t *h = ix->h;
	ix_layout_t l;

	if (ix_layout(p, &l) != 0)
		return 0;
	/* As many process slots or more will do. */
	return l.capacity == h->capacity && l.max_uri == h->max_uri &&
	    l.arena_units == h->arena_units && l.nstripes == h->nstripes && h->nprocs >= l.nprocs &&
	    l.proc_bytes == h->proc_bytes && p->hits_max == h->hits_max &&
	    h->touch_ticks == ((p->atime_res_ms ? p->atime_res_ms : 500) / OM_IX_TICK_MS ?
	    (p->atime_res_ms ? p->atime_res_ms : 500) / OM_IX_TICK_MS : 1);
}

uint32_t
om_index_state(const om_index_t *ix)
{
	return OM_LOAD_ACQ(&ix->h->state);
}

void
om_index_set_state(om_index_t *ix, uint32_t state)
{
	OM_STORE_REL(&ix->h->state, state);
}

void *
om_index_owner(om_index_t *ix, size_t *len)
{
	*len = sizeof(ix->h->owner);
	return ix->h->owner;
}

/*
 * The segment was attached from a file, and none of the processes that
 * used it is alive. A lock one of them held is repaired as a dead
 * owner's (its log redone, its pending slots settled), whatever the
 * kernel left in the mutex word, and every lock starts afresh; the notes
 * of dropped files are for descriptor caches that no longer exist.
 */
int
om_index_recover(om_index_t *ix)
{
	ix_header_sh_t *h = ix->h;
	int rc;

	log_redo(ix, &h->alloc_log);
	if ((rc = mutex_init_shared(&h->alloc_mtx)) != 0)
		return rc;
	for (uint32_t s = 0; s <= ix->smask; s++) {
		ix_stripe_sh_t *st = &ix->stripes[s];

		if ((rc = mutex_init_shared(&st->mtx)) != 0)
			return rc;
		if (OM_LOAD(&st->log.valid) || (OM_LOAD(&st->seq) & 1) || OM_LOAD(&st->pending_new) != IX_NIL ||
		    OM_LOAD(&st->pending_old) != IX_NIL) {
			stripe_repair(ix, st);
			OM_ADD(&h->owner_deaths, 1);
		}
	}
	OM_STORE(&h->notes_head, 0);
	memset(h->notes, 0, sizeof(h->notes));
	return 0;
}

void
om_index_close(om_index_t *ix)
{
	if (ix == NULL)
		return;
	munmap(ix->base, ix->size);
	close(ix->fd);
	free(ix);
}

/* ---- consistency check ------------------------------------------------- */

#define CHECK(cond, ...) \
	do { \
		if (!(cond)) { \
			snprintf(err, errlen, __VA_ARGS__); \
			rc = -EUCLEAN; \
			goto out; \
		} \
	} while (0)

/* Marks in `mark` (one byte per granule of block start): 1 reached from a
 * chain, 2 on a free list. */
int
om_index_check(om_index_t *ix, char *err, size_t errlen)
{
	ix_header_sh_t *h = ix->h;
	uint8_t *mark = NULL;
	uint32_t linked = 0, nfree = 0, blocks = 0, bump;
	int rc = 0;

	if (errlen)
		err[0] = '\0';
	for (uint32_t s = 0; s <= ix->smask; s++)
		stripe_lock(ix, &ix->stripes[s]);
	alloc_lock(ix);

	CHECK(h->magic == IX_MAGIC && h->version == IX_VERSION, "bad header");
	CHECK(OM_LOAD(&h->alloc_log.valid) == 0, "allocator log left valid");
	bump = OM_LOAD(&h->bump);
	CHECK(bump <= ix->arena_units, "arena bump %u beyond %u", bump, ix->arena_units);
	mark = calloc((size_t)bump + 1, 1);
	CHECK(mark != NULL, "out of memory");

	/* The arena is a sequence of whole blocks up to the bump pointer. */
	for (uint32_t off = 0; off < bump;) {
		uint32_t lf = OM_LOAD(&blk(ix, off)->lenflags), len = IX_LEN(lf);

		CHECK(len >= 1 && len <= ix->max_uri, "block %u: URI length %u", off, len);
		CHECK((uint64_t)off + block_units(len) <= bump, "block %u runs past the arena", off);
		CHECK((lf & IX_ST_MASK) != IX_ST_ALLOC, "block %u allocated but owned by nobody", off);
		mark[off] = 4; /* a block starts here */
		blocks++;
		off += block_units(len);
	}

	for (uint32_t s = 0; s <= ix->smask; s++) {
		ix_stripe_sh_t *st = &ix->stripes[s];
		uint64_t count[OM_IX_NCLASS] = { 0 }, bytes[OM_IX_NCLASS] = { 0 };

		CHECK(OM_LOAD(&st->log.valid) == 0, "stripe %u: log left valid", s);
		CHECK((OM_LOAD(&st->seq) & 1) == 0, "stripe %u: odd sequence", s);
		CHECK(OM_LOAD(&st->pending_new) == IX_NIL, "stripe %u: pending new block", s);
		CHECK(OM_LOAD(&st->pending_old) == IX_NIL, "stripe %u: pending old block", s);
		for (uint32_t b = s; b <= ix->bmask; b += ix->smask + 1) {
			for (uint32_t off = OM_LOAD(&ix->buckets[b]); off != IX_NIL;
			    off = OM_LOAD(&blk(ix, off)->next)) {
				ix_block_sh_t *e;
				uint32_t lf, len;

				CHECK(off < bump && mark[off] != 0, "bucket %u: %u is not a block", b, off);
				CHECK(mark[off] == 4, "bucket %u: block %u reached twice", b, off);
				mark[off] = 1;
				linked++;
				e = blk(ix, off);
				lf = OM_LOAD(&e->lenflags);
				len = IX_LEN(lf);
				CHECK((lf & IX_ST_MASK) == IX_ST_LINKED, "block %u: in a chain but state %u", off,
				    lf & IX_ST_MASK);
				CHECK((OM_LOAD(&e->hash) & ix->bmask) == b, "block %u: hash in wrong bucket", off);
				CHECK(ix_hash(ix, blk_uri(ix, off), len) == OM_LOAD(&e->hash),
				    "block %u: hash does not match its URI", off);
				CHECK(OM_LOAD(&e->id) != 0 && OM_LOAD(&e->id) < OM_LOAD(&h->next_id),
				    "block %u: id %llu not issued", off, (unsigned long long)OM_LOAD(&e->id));
				count[class_of_flags(lf)]++;
				bytes[class_of_flags(lf)] += size_of(lf, OM_LOAD(&e->size));
				if (lf & OM_IX_F_COPY) {
					count[OM_IX_CLASS_COPY]++;
					bytes[OM_IX_CLASS_COPY] += size_of(lf, OM_LOAD(&e->size));
				}
			}
		}
		for (unsigned c = 0; c < OM_IX_NCLASS; c++) {
			CHECK(count[c] == OM_LOAD(&st->count[c]), "stripe %u: class %u counts %u, chains hold %llu",
			    s, c, OM_LOAD(&st->count[c]), (unsigned long long)count[c]);
			CHECK(bytes[c] == OM_LOAD(&st->bytes[c]), "stripe %u: class %u bytes %llu, chains hold %llu",
			    s, c, (unsigned long long)OM_LOAD(&st->bytes[c]), (unsigned long long)bytes[c]);
		}
	}

	for (uint32_t k = 1; k < h->nclasses; k++) {
		for (uint32_t off = OM_LOAD(&ix->classes[k]); off != IX_NIL; off = OM_LOAD(&blk(ix, off)->next)) {
			uint32_t lf;

			CHECK(off < bump && mark[off] != 0, "size %u free list: %u is not a block", k, off);
			CHECK(mark[off] == 4, "size %u free list: block %u linked or listed twice", k, off);
			mark[off] = 2;
			nfree++;
			lf = OM_LOAD(&blk(ix, off)->lenflags);
			CHECK((lf & IX_ST_MASK) == IX_ST_FREE, "free list: block %u not free", off);
			CHECK(block_units(IX_LEN(lf)) == k, "size %u free list holds block %u of size %u", k,
			    off, block_units(IX_LEN(lf)));
		}
	}
	CHECK(linked + nfree == blocks, "%u linked + %u free != %u blocks (blocks leaked)", linked,
	    nfree, blocks);
	CHECK(OM_LOAD(&h->live) == linked, "live count %u, chains hold %u", OM_LOAD(&h->live), linked);
	CHECK(linked <= ix->capacity, "%u objects above capacity %u", linked, ix->capacity);
out:
	free(mark);
	alloc_unlock(ix);
	for (uint32_t s = ix->smask + 1; s-- > 0;)
		stripe_unlock(&ix->stripes[s]);
	return rc;
}
