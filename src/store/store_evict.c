/*
 * Eviction for space: the least recently used objects of a tier (or of the
 * index) go to make room, for a PUT that needs it (workers) or for the
 * tier's limit (the cache manager). An approximate LRU: om_index_sample
 * looks at the next few objects of the tier's classes (a clock hand over
 * the arena's blocks) and returns the one read longest ago. The memory
 * tier gives up promoted copies before ephemeral objects, which exist
 * nowhere else.
 */
#include <errno.h>
#include <stdint.h>

#include "core/om_core.h"
#include "store/store_int.h"

static int
evict_class(om_store_t *st, unsigned cls, int tier, size_t uri_len)
{
	om_ix_obj_t v;

	if (om_index_sample(st->ix, OM_IX_SEL(cls), st->evict_samples, uri_len, &st->cursor[cls], &v) != 0)
		return -ENOENT;
	if (cls == OM_IX_CLASS_COPY) {
		om_store_drop_copy(st, &v);
		return 0;
	}
	/* The release callback unlinks the files. Losing the race to a
	 * concurrent writer is progress all the same. */
	if (om_index_delete_slot(st->ix, v.slot, v.id, NULL) == 0)
		st->stats->evicted[tier]++;
	return 0;
}

/*
 * The memory tier gives up promoted copies before it evicts ephemeral
 * objects, which exist nowhere else.
 */
int
om_store_evict_one(om_store_t *st, int tier)
{
	uint64_t b[OM_IX_NCLASS];

	if (tier == OM_TIER_DISK)
		return evict_class(st, OM_IX_CLASS_PERSIST, OM_TIER_DISK, 0);
	om_index_class_bytes(st->ix, b);
	if (b[OM_IX_CLASS_COPY] > 0 && evict_class(st, OM_IX_CLASS_COPY, OM_TIER_MEM, 0) == 0)
		return 0;
	return evict_class(st, OM_IX_CLASS_EPHEMERAL, OM_TIER_MEM, 0);
}

int
om_store_evict_index(om_store_t *st, size_t uri_len)
{
	unsigned sel = OM_IX_SEL(OM_IX_CLASS_PERSIST) | OM_IX_SEL(OM_IX_CLASS_EPHEMERAL);
	om_ix_obj_t v;

	if (om_index_sample(st->ix, sel, st->evict_samples, uri_len, &st->cursor[OM_IX_CLASS_PERSIST],
	    &v) != 0)
		return -ENOENT;
	if (om_index_delete_slot(st->ix, v.slot, v.id, NULL) == 0) {
		st->stats->evicted[om_store_tier_of(v.flags)]++;
		st->stats->index_evicted++;
	}
	return 0;
}

int
om_store_make_room(om_store_t *st, int tier, uint64_t need)
{
	uint64_t limit = om_store_limit(st, tier);

	if (limit == UINT64_MAX)
		return 0;
	if (need > limit)
		return -ENOSPC;
	/* Bounded: concurrent writers may refill what we free. */
	for (int i = 0; i < 4096 && !st->no_evict; i++) {
		if (om_store_tier_used(st, tier) + need <= limit)
			return 0;
		if (om_store_evict_one(st, tier) != 0)
			break;
	}
	return om_store_tier_used(st, tier) + need <= limit ? 0 : -ENOSPC;
}

int
om_store_evict_bytes(om_store_t *st, int tier, uint64_t bytes)
{
	uint64_t start = om_store_tier_used(st, tier);

	for (int i = 0; i < 4096 && !st->no_evict; i++) {
		uint64_t now = om_store_tier_used(st, tier);

		if (now + bytes <= start)
			return 0;
		if (om_store_evict_one(st, tier) != 0)
			break;
	}
	return om_store_tier_used(st, tier) + bytes <= start ? 0 : -ENOSPC;
}

int
om_store_enforce(om_store_t *st, int tier)
{
	uint64_t before = st->stats->evicted[tier] + st->stats->copies_dropped;
	int rc = om_store_make_room(st, tier, 0);

	if (rc != 0)
		return rc;
	return (int)(st->stats->evicted[tier] + st->stats->copies_dropped - before);
}
