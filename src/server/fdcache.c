/*
 * The worker's descriptor cache (fdcache.h): object files kept open,
 * direct-mapped by (tier, id), and closed when the index notes that their
 * file was dropped (or, when notes were lost, when fstat says the file is
 * gone), once no response holds them. References own the counting: a get
 * or an add takes one, om_fdref_put gives it back. Worker processes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "server/fdcache.h"
#include "store/om_store.h"

void
om_fdref_put(om_fdref_t *r)
{
	if (r->e != NULL)
		r->e->refs--;
	else if (r->fd >= 0)
		close(r->fd);
	*r = OM_FDREF_NONE;
}

om_fdref_t
om_fdref_take(om_fdref_t *r)
{
	om_fdref_t t = *r;

	*r = OM_FDREF_NONE;
	return t;
}

static om_fdc_entry_t *
slot_of(om_fdc_t *c, int tier, uint64_t id)
{
	uint64_t h = (id ^ ((uint64_t)tier << 63)) * 0x9e3779b97f4a7c15ull;

	return &c->e[h >> c->shift];
}

static unsigned
pack_home(int tier, uint64_t id)
{
	uint64_t h = (id ^ ((uint64_t)tier << 61)) * 0x9e3779b97f4a7c15ull;

	return (unsigned)(h >> 54) % OM_FDC_PACKS;
}

/* The pack's entry, or NULL. */
static om_fdc_entry_t *
pack_find(om_fdc_t *c, int tier, uint64_t id)
{
	unsigned h = pack_home(tier, id);

	for (unsigned i = 0; i < OM_FDC_PACK_PROBE; i++) {
		om_fdc_entry_t *e = &c->pk[(h + i) % OM_FDC_PACKS];

		if (e->id == id && e->tier == tier)
			return e;
	}
	return NULL;
}

/* Where a pack goes: an empty slot of its probe, else the least recently
 * used one not in use (the caller drops it), else NULL. */
static om_fdc_entry_t *
pack_place(om_fdc_t *c, int tier, uint64_t id)
{
	unsigned h = pack_home(tier, id);
	om_fdc_entry_t *best = NULL;

	for (unsigned i = 0; i < OM_FDC_PACK_PROBE; i++) {
		om_fdc_entry_t *e = &c->pk[(h + i) % OM_FDC_PACKS];

		if (e->id == 0)
			return e;
		if (e->refs == 0 && (best == NULL || e->used < best->used))
			best = e;
	}
	return best;
}

int
om_fdc_init(om_fdc_t *c, om_index_t *ix, uint64_t want, unsigned max_connections)
{
	uint64_t room = want;
	struct rlimit rl;
	unsigned bits = 4;
	int rc;

	memset(c, 0, sizeof(*c));
	c->ix = ix;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
		uint64_t other = (uint64_t)max_connections + 64 + OM_FDC_PACKS;

		room = rl.rlim_cur > other ? rl.rlim_cur - other : 0;
	}
	if (room < want) {
		om_log_warn(0, "descriptor limit %llu leaves room for %llu of open_files = %llu",
		    (unsigned long long)rl.rlim_cur, (unsigned long long)room, (unsigned long long)want);
		want = room;
	}
	while (bits < 24 && (1ull << (bits + 1)) <= want)
		bits++;
	c->size = 1u << bits;
	c->shift = 64 - bits;
	c->e = calloc(c->size, sizeof(*c->e));
	c->pk = calloc(OM_FDC_PACKS, sizeof(*c->pk));
	c->notes_cursor = c->notes_at_tick = om_index_notes_head(ix);
	if (c->e == NULL || c->pk == NULL) {
		free(c->e);
		free(c->pk);
		c->e = c->pk = NULL;
		return -ENOMEM;
	}
	if ((rc = om_os_mapped_guard()) == 0)
		c->maps = true;
	else
		om_log_warn(-rc, "no SIGBUS handler: small objects are read with pread, never mapped");
	return 0;
}

om_fdref_t
om_fdc_get(om_fdc_t *c, int tier, uint64_t id)
{
	om_fdc_entry_t *e;

	if (OM_STORE_IS_PACK_ID(id)) {
		if ((e = pack_find(c, tier, id)) == NULL)
			return OM_FDREF_NONE;
		e->used = ++c->clock;
		e->refs++;
		return (om_fdref_t){ e->fd, e };
	}
	e = slot_of(c, tier, id);
	if (e->id != id || e->tier != tier)
		return OM_FDREF_NONE;
	e->refs++;
	if (e->hits < UINT16_MAX)
		e->hits++;
	return (om_fdref_t){ e->fd, e };
}

const uint8_t *
om_fdc_map(om_fdc_t *c, const om_fdref_t *r, uint64_t size)
{
	om_fdc_entry_t *e = r->e;
	void *p;

	if (e == NULL || e->hits < OM_FDC_MAP_HITS)
		return NULL;
	if (e->map != NULL)
		return e->map_len == size ? e->map : NULL;
	if (!c->maps || e->map_failed || size == 0 || size > OM_FDC_MAP_MAX || c->mapped >= OM_FDC_MAPS_MAX)
		return NULL;
	p = mmap(NULL, (size_t)size, PROT_READ, MAP_SHARED, e->fd, 0);
	if (p == MAP_FAILED) {
		e->map_failed = true;
		return NULL;
	}
	e->map = p;
	e->map_len = (size_t)size;
	c->mapped++;
	return e->map;
}

const uint8_t *
om_fdc_map_pack(om_fdc_t *c, const om_fdref_t *r)
{
	om_fdc_entry_t *e = r->e;
	void *p;

	if (e == NULL)
		return NULL;
	if (e->map != NULL)
		return e->map;
	if (!c->maps || e->map_failed || c->mapped >= OM_FDC_MAPS_MAX)
		return NULL;
	p = mmap(NULL, (size_t)OM_STORE_PACK_BYTES, PROT_READ, MAP_SHARED, e->fd, 0);
	if (p == MAP_FAILED) {
		e->map_failed = true;
		return NULL;
	}
	e->map = p;
	e->map_len = (size_t)OM_STORE_PACK_BYTES;
	c->mapped++;
	return e->map;
}

static void
unmap(om_fdc_t *c, om_fdc_entry_t *e)
{
	if (e->map == NULL)
		return;
	munmap(e->map, e->map_len);
	e->map = NULL;
	e->map_len = 0;
	c->mapped--;
}

void
om_fdc_map_fails(om_fdc_t *c, const om_fdref_t *r)
{
	if (r->e == NULL)
		return;
	unmap(c, r->e);
	r->e->map_failed = true;
}

static void
drop(om_fdc_t *c, om_fdc_entry_t *e)
{
	c->count--;
	unmap(c, e);
	e->map_failed = false;
	e->hits = 0;
	close(e->fd);
	free(e->meta);
	e->meta = NULL;
	e->has_meta = false;
	e->dropped = false;
	e->id = 0;
}

void
om_fdc_set_meta(const om_fdref_t *r, const void *meta, size_t len, int64_t mtime)
{
	om_fdc_entry_t *e = r->e;
	uint8_t *copy = NULL;

	if (e == NULL || (len > 0 && (copy = malloc(len)) == NULL))
		return;
	if (len > 0)
		memcpy(copy, meta, len);
	free(e->meta);
	e->meta = copy;
	e->meta_len = (uint16_t)len;
	e->mtime = mtime;
	e->has_meta = true;
}

om_fdref_t
om_fdc_add(om_fdc_t *c, int tier, uint64_t id, int fd)
{
	om_fdc_entry_t *e;

	if (OM_STORE_IS_PACK_ID(id)) {
		if ((e = pack_place(c, tier, id)) == NULL)
			return (om_fdref_t){ fd, NULL };
		e->used = ++c->clock;
	} else {
		e = slot_of(c, tier, id);
	}
	if (e->id != 0) {
		if (e->refs > 0)
			return (om_fdref_t){ fd, NULL };
		drop(c, e);
	}
	c->count++;
	e->id = id;
	e->tier = tier;
	e->fd = fd;
	e->refs = 1;
	return (om_fdref_t){ fd, e };
}

/* An entry whose file is gone: closed now, or once no response uses it. */
static void
gone(om_fdc_t *c, om_fdc_entry_t *e)
{
	e->dropped = true;
	if (e->refs > 0)
		c->deferred = true;
	else
		drop(c, e);
}

/* Closes the entries dropped while in use and, with files, every entry
 * whose file is gone (link count 0): when notes of dropped files were
 * lost. */
static void
scan(om_fdc_t *c, bool files)
{
	c->deferred = false;
	for (unsigned i = 0; i < c->size + OM_FDC_PACKS; i++) {
		om_fdc_entry_t *e = i < c->size ? &c->e[i] : &c->pk[i - c->size];
		struct stat sb;

		if (e->id != 0 && (e->dropped ||
		    (files && (fstat(e->fd, &sb) != 0 || sb.st_nlink == 0))))
			gone(c, e);
	}
}

static void
noted(void *arg, uint64_t key)
{
	om_fdc_t *c = arg;
	int tier = OM_STORE_DROP_TIER(key);
	uint64_t id = OM_STORE_DROP_ID(key);
	om_fdc_entry_t *e = OM_STORE_IS_PACK_ID(id) ? pack_find(c, tier, id) : slot_of(c, tier, id);

	if (e != NULL && e->id == id && e->tier == tier)
		gone(c, e);
}

void
om_fdc_follow(om_fdc_t *c)
{
	if (om_index_notes_head(c->ix) != c->notes_cursor &&
	    om_index_notes(c->ix, &c->notes_cursor, noted, c) == -ERANGE)
		scan(c, true);
}

/* The entries left in use, and a cursor that stayed behind one note for a
 * whole second (following stops only before a note not yet written: its
 * writer died between the two stores). */
void
om_fdc_tick(om_fdc_t *c)
{
	bool behind;

	om_fdc_follow(c);
	behind = om_index_notes_head(c->ix) != c->notes_cursor;
	if (behind && c->notes_behind && c->notes_cursor == c->notes_at_tick) {
		om_log_warn(0, "a note of a dropped file was never written; checking every cached descriptor");
		c->notes_cursor = om_index_notes_head(c->ix);
		behind = false;
		scan(c, true);
	} else if (c->deferred) {
		scan(c, false);
	}
	c->notes_at_tick = c->notes_cursor;
	c->notes_behind = behind;
	/* Packs are removed with a note (compaction); one removed from
	 * outside (its tier's directory deleted) is let go within a second. */
	for (unsigned i = 0; i < OM_FDC_PACKS; i++) {
		om_fdc_entry_t *e = &c->pk[i];
		struct stat sb;

		if (e->id != 0 && !e->dropped &&
		    (fstat(e->fd, &sb) != 0 || sb.st_nlink == 0))
			gone(c, e);
	}
}

void
om_fdc_clear(om_fdc_t *c)
{
	for (unsigned i = 0; c->e != NULL && i < c->size; i++) {
		if (c->e[i].id != 0 && c->e[i].refs == 0)
			drop(c, &c->e[i]);
	}
	for (unsigned i = 0; c->pk != NULL && i < OM_FDC_PACKS; i++) {
		if (c->pk[i].id != 0 && c->pk[i].refs == 0)
			drop(c, &c->pk[i]);
	}
	free(c->e);
	free(c->pk);
	c->e = NULL;
	c->pk = NULL;
}
