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

int
om_store_space(om_store_t *st, int tier, om_space_t *sp)
{
	om_tier_t *t = &st->tier[tier];
	struct statvfs v;

	memset(sp, 0, sizeof(*sp));
	if (fstatvfs(t->dirfd, &v) != 0)
		return errno ? -errno : -EIO;
	sp->fs_size = (uint64_t)v.f_blocks * v.f_frsize;
	sp->fs_free = (uint64_t)v.f_bavail * v.f_frsize;
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
	return 0;
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
