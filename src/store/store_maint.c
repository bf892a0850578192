/*
 * The cache manager's pass over the store (om_store_maintain): expired
 * objects are removed, both tiers brought within their limits, hot
 * persistent objects copied into the memory tier, and read counts decayed.
 * Cache manager only.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "store/store_int.h"

/* ---- expiry ------------------------------------------------------------ */

typedef struct {
	om_ix_obj_t *v;
	size_t n, cap;
	int64_t now;
	uint32_t min_hits;
	uint64_t max_size;
} collect_t;

static int
collect_push(collect_t *c, const om_ix_obj_t *o)
{
	if (c->n == c->cap && om_grow(&c->v, &c->cap, sizeof(*c->v)) != 0)
		return -ENOMEM;
	c->v[c->n++] = *o;
	return 0;
}

static int
collect_expired(void *arg, const om_ix_obj_t *o)
{
	collect_t *c = arg;

	if (o->expires != 0 && o->expires <= c->now)
		return collect_push(c, o);
	return 0;
}

static int
collect_hot(void *arg, const om_ix_obj_t *o)
{
	collect_t *c = arg;

	if (!(o->flags & (OM_IX_F_EPHEMERAL | OM_IX_F_COPY | OM_IX_F_PACKED)) && o->hits >= c->min_hits &&
	    o->size <= c->max_size && (o->expires == 0 || o->expires > c->now))
		return collect_push(c, o);
	return 0;
}

static int
by_hits_desc(const void *a, const void *b)
{
	const om_ix_obj_t *x = a, *y = b;

	return x->hits < y->hits ? 1 : x->hits > y->hits ? -1 : 0;
}

/* Bytes of live entries a maintenance pass copies out of packs at most. */
#define COMPACT_STEP ((uint64_t)16 << 20)

/* ---- promotion --------------------------------------------------------- */

/* A copy never eats into the reserve of the memory tier's filesystem. */
static bool
fs_has_room(om_store_t *st, int tier, uint64_t size)
{
	om_space_t sp;

	if (om_store_space(st, tier, &sp) != 0 || sp.fs_size == 0)
		return true;
	return sp.fs_free >= sp.reserve && sp.fs_free - sp.reserve >= size + 4096;
}

/*
 * Copies a persistent object into the memory tier under the same id, then
 * flags it. The copy is published like any object (unlinked file, record,
 * link); if the object changed meanwhile the flag update fails and the
 * copy goes.
 */
static int
promote_one(om_store_t *st, const om_ix_obj_t *o)
{
	uint8_t rec[OM_META_REC_MAX];
	char name[OM_NAME_MAX];
	om_meta_rec_t r;
	om_store_file_t dst, cr;
	int src, rc;
	ssize_t n;

	om_store_file_init(&dst);
	om_store_file_init(&cr);
	src = om_store_open_entry(st, OM_TIER_DISK, o);
	if (src < 0)
		return src;
	n = om_rec_read(st, OM_TIER_DISK, o->id, src, rec, sizeof(rec));
	if (n < 0) {
		rc = (int)n;
		goto out;
	}
	if ((rc = om_meta_decode(rec, (size_t)n, &r)) != 0 || r.id != o->id)
		goto out;
	r.kind = OM_KIND_COPY;
	{
		uint8_t copy[OM_META_REC_MAX];
		size_t len = om_meta_encode(&r, copy, sizeof(copy));

		OM_ASSERT(len != 0);
		memcpy(rec, copy, len);
		n = (ssize_t)len;
	}
	if ((rc = om_store_file_new(st, OM_TIER_MEM, o->id, "copy", O_TRUNC, 0600, &dst)) != 0)
		goto out;
	if ((rc = om_os_copy_range(dst.fd, src, 0, o->size)) != 0)
		goto out;
	if ((rc = om_rec_prepare(st, OM_TIER_MEM, o->id, dst.fd, rec, (size_t)n, &cr)) != 0)
		goto out;
	if (fchmod(dst.fd, 0440) != 0) {
		rc = -errno;
		goto out;
	}
	om_store_object_name(o->id, name, sizeof(name));
	om_store_intent(st, o->id, OM_TIER_MEM, OM_KIND_COPY);
	/* EEXIST: the record of a copy left by a manager that died (below). */
	rc = om_rec_publish(st, OM_TIER_MEM, o->id, &cr);
	if (rc == 0 || rc == -EEXIST)
		rc = om_store_file_publish(st, OM_TIER_MEM, &dst, name);
	if (rc == 0 || rc == -EEXIST) {
		/* EEXIST: a copy left by a manager that died before flagging it;
		 * objects are immutable, so it holds the same bytes. */
		if (om_index_update_flags(st->ix, o->slot, o->id, OM_IX_F_COPY, 0) == 0) {
			rc = 0;
		} else {
			om_store_unlink_obj(st, OM_TIER_MEM, o->id);
			rc = -ENOENT;
		}
	} else {
		om_rec_unlink(st, OM_TIER_MEM, o->id);
	}
	om_store_intent(st, 0, 0, 0);
out:
	om_store_file_discard(st, OM_TIER_MEM, &cr);
	om_store_file_discard(st, OM_TIER_MEM, &dst);
	close(src);
	return rc;
}

int
om_store_maintain(om_store_t *st, om_maint_stats_t *ms)
{
	collect_t c = { NULL, 0, 0, om_time_s(), 0, 0 };
	uint64_t ev0 = st->stats->evicted[0] + st->stats->evicted[1];
	uint64_t cd0 = st->stats->copies_dropped;
	int rc = 0;

	memset(ms, 0, sizeof(*ms));

	/* Expired objects are misses already; reclaim their space. */
	if ((rc = om_index_scan(st->ix, collect_expired, &c)) != 0)
		goto out;
	for (size_t i = 0; i < c.n; i++) {
		if (om_index_delete_slot(st->ix, c.v[i].slot, c.v[i].id, NULL) == 0) {
			st->stats->expired++;
			ms->expired++;
		}
	}

	(void)om_store_make_room(st, OM_TIER_DISK, 0);
	(void)om_store_make_room(st, OM_TIER_MEM, 0);
	/* What dead entries hold in packs goes back (a step per pass). */
	if ((rc = om_store_compact(st, COMPACT_STEP)) > 0)
		st->stats->packs_removed += (uint64_t)rc;
	om_store_pack_sweep(st);
	rc = 0;

	if (st->promote_hits > 0) {
		uint64_t limit = om_store_limit(st, OM_TIER_MEM);

		c.n = 0;
		c.min_hits = st->promote_hits;
		c.max_size = st->promote_max_size;
		if (c.max_size == 0)
			c.max_size = limit == UINT64_MAX ? UINT64_MAX : limit / 4;
		if ((rc = om_index_scan(st->ix, collect_hot, &c)) != 0)
			goto out;
		if (c.n > 1)
			qsort(c.v, c.n, sizeof(*c.v), by_hits_desc);
		for (size_t i = 0; i < c.n; i++) {
			/* Room comes only from colder copies, never from
			 * ephemeral objects. */
			while (limit != UINT64_MAX && om_store_tier_used(st, OM_TIER_MEM) + c.v[i].size > limit) {
				om_ix_obj_t v;
				uint32_t now = om_index_ticks();

				if (om_index_sample(st->ix, OM_IX_SEL(OM_IX_CLASS_COPY), st->evict_samples, 0,
				    &st->cursor[OM_IX_CLASS_COPY], &v) != 0 ||
				    now - v.atime <= now - c.v[i].atime)
					break;
				om_store_drop_copy(st, &v);
			}
			if ((limit != UINT64_MAX && om_store_tier_used(st, OM_TIER_MEM) + c.v[i].size > limit) ||
			    !fs_has_room(st, OM_TIER_MEM, c.v[i].size)) {
				ms->promote_failed++;
				continue;
			}
			if (promote_one(st, &c.v[i]) == 0) {
				st->stats->promoted++;
				ms->promoted++;
			} else {
				ms->promote_failed++;
			}
		}
	}
	om_index_decay(st->ix);
out:
	ms->evicted = st->stats->evicted[0] + st->stats->evicted[1] - ev0;
	ms->copies_dropped = st->stats->copies_dropped - cd0;
	free(c.v);
	return rc;
}
