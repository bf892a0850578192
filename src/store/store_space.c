/*
 * The space of a tier: its limit and the reserve kept free on its
 * filesystem, each bytes or a share of the filesystem, and what a PUT may
 * take given both. Runs in every process that writes (workers, the cache
 * manager, the master at start-up).
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>

#include "core/om_core.h"
#include "store/store_int.h"

static uint64_t
share(uint64_t total, unsigned pct)
{
	/* pct <= 100: no overflow below 2^57 bytes. */
	return total / 100 * pct + total % 100 * pct / 100;
}

uint64_t
om_store_tier_used(om_store_t *st, int tier)
{
	uint64_t b[OM_IX_NCLASS];

	om_index_class_bytes(st->ix, b);
	if (tier == OM_TIER_DISK)
		return b[OM_IX_CLASS_PERSIST];
	return b[OM_IX_CLASS_EPHEMERAL] + b[OM_IX_CLASS_COPY];
}

void
om_store_usage(om_store_t *st, om_store_usage_t *u)
{
	om_ix_usage_t iu;

	om_index_usage(st->ix, &iu);
	memset(u, 0, sizeof(*u));
	u->used[OM_TIER_DISK] = iu.bytes[OM_IX_CLASS_PERSIST];
	u->used[OM_TIER_MEM] = iu.bytes[OM_IX_CLASS_EPHEMERAL] + iu.bytes[OM_IX_CLASS_COPY];
	for (int t = 0; t < 2; t++) {
		uint64_t l = om_store_limit(st, t);

		u->limit[t] = l == UINT64_MAX ? 0 : l;
	}
	u->objects = iu.objects;
	u->copies = iu.count[OM_IX_CLASS_COPY];
	u->ephemeral = iu.count[OM_IX_CLASS_EPHEMERAL];
}

/* The figures of sp from the filesystem's. */
static void
space_fill(om_store_t *st, int tier, uint64_t fs_size, uint64_t fs_free, om_space_t *sp)
{
	om_tier_t *t = &st->tier[tier];

	memset(sp, 0, sizeof(*sp));
	sp->fs_size = fs_size;
	sp->fs_free = fs_free;
	if (t->limit_pct)
		sp->limit = share(sp->fs_size, t->limit_pct);
	else
		sp->limit = t->limit ? t->limit : UINT64_MAX;
	sp->reserve = t->reserve_pct ? share(sp->fs_size, t->reserve_pct) : t->reserve;
	sp->used = om_store_tier_used(st, tier);
	sp->max = sp->limit;
	/* A filesystem that reports no size (ramfs) bounds nothing: the
	 * store refuses to open such a tier without a limit in bytes. */
	if (sp->fs_size != 0) {
		uint64_t fs_max = sp->fs_size > sp->reserve ? sp->fs_size - sp->reserve : 0;

		if (fs_max < sp->max)
			sp->max = fs_max;
	}
}

int
om_store_space(om_store_t *st, int tier, om_space_t *sp)
{
	struct statvfs v;
	uint64_t size, avail;

	if (fstatvfs(st->tier[tier].dirfd, &v) != 0) {
		memset(sp, 0, sizeof(*sp));
		return errno ? -errno : -EIO;
	}
	size = (uint64_t)v.f_blocks * v.f_frsize;
	avail = (uint64_t)v.f_bavail * v.f_frsize;
	st->fs_seen[tier].fs_size = size;
	st->fs_seen[tier].fs_free = avail;
	st->fs_seen[tier].spent = 0;
	st->fs_seen[tier].at_ms = om_clock_ms();
	space_fill(st, tier, size, avail, sp);
	return 0;
}

/*
 * Small PUTs (mix10 at 4 KiB: one in ten operations) are admitted on the
 * figures this process last read, without a statvfs each, while they are
 * younger than SPACE_FRESH_MS, what it admitted on them stays within
 * SPACE_SPEND, and they leave SPACE_MARGIN free above the reserve. Other
 * processes admit as much on theirs at most, so that the processes of a
 * daemon (256 workers at most, twice that during a reload, and the
 * manager) cannot together take the margin before one of them reads the
 * filesystem again; one nearer its
 * reserve is read at every PUT, as before. What is admitted is taken off
 * the figures, and the PUT's own writes still say ENOSPC if it comes.
 */
#define SPACE_FRESH_MS 100u
#define SPACE_SPEND    ((uint64_t)256 << 10)
#define SPACE_MARGIN   ((uint64_t)128 << 20)

int
om_store_space_small(om_store_t *st, int tier, uint64_t size, om_space_t *sp)
{
	__typeof__(st->fs_seen[0]) *fs = &st->fs_seen[tier];
	uint64_t need = (size + 4095) & ~(uint64_t)4095;
	int rc;

	if (need <= SPACE_SPEND && fs->at_ms != 0 && fs->fs_size != 0 &&
	    om_clock_ms() - fs->at_ms < SPACE_FRESH_MS && fs->spent + need <= SPACE_SPEND &&
	    fs->fs_free >= fs->spent) {
		space_fill(st, tier, fs->fs_size, fs->fs_free - fs->spent, sp);
		if (sp->fs_free >= sp->reserve + SPACE_MARGIN) {
			fs->spent += need;
			return 0;
		}
	}
	if ((rc = om_store_space(st, tier, sp)) == 0)
		fs->spent = need;
	return rc;
}

uint64_t
om_store_room(const om_store_t *st, const om_space_t *sp)
{
	uint64_t room = sp->max;

	if (sp->limit != UINT64_MAX) {
		/* Evicting every object of the tier frees its whole limit. */
		uint64_t under = st->no_evict ? (sp->used < sp->limit ? sp->limit - sp->used : 0) : sp->limit;

		if (under < room)
			room = under;
	}
	if (sp->fs_size != 0) {
		/* The tier's objects are what eviction can give back. */
		uint64_t have = sp->fs_free + (st->no_evict ? 0 : sp->used);
		uint64_t fs_room = have > sp->reserve ? have - sp->reserve : 0;

		if (fs_room < room)
			room = fs_room;
	}
	return room;
}

uint64_t
om_store_limit(om_store_t *st, int tier)
{
	om_tier_t *t = &st->tier[tier];
	om_space_t sp;

	if (!t->limit_pct)
		return t->limit ? t->limit : UINT64_MAX;
	if (om_store_space(st, tier, &sp) != 0)
		return UINT64_MAX;
	return sp.limit;
}

void
om_store_set_why(om_store_t *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->why, sizeof(st->why), fmt, ap);
	va_end(ap);
}

const char *
om_store_why(const om_store_t *st)
{
	return st->why;
}
