/*
 * The shared-memory index (src/index/index.c) driven by a random sequence
 * of operations against a model: a small table of URIs and their records,
 * and the block allocator's counts (live blocks, bump pointer, free blocks
 * per size class). The input is a header (capacity, URI limit, stripes,
 * arena size, hits limit, URI lengths) and then operations, one byte each
 * with their arguments.
 *
 * After every operation: every URI looks up as the model says (record,
 * slot, hits), the releases the index reported are the ones expected, and
 * the usage counters (objects and bytes per class, arena used, free-list
 * bytes) match. Iteration, scans, sampling, the consistency check
 * (om_index_check) and a second mapping of the segment are operations of
 * their own. Every release is noted in the ring of dropped files, and the
 * notes read back after each operation are those releases, in order. Any
 * mismatch aborts.
 */
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include "core/om_core.h"
#include "fuzz.h"
#include "index/index_sh.h"
#include "index/om_index.h"

#define NKEYS 12
#define MAX_OPS 400

typedef struct {
	bool present;
	om_ix_obj_t o;      /* atime not modelled */
	uint32_t last_slot; /* of its latest version, kept after a delete */
	uint64_t last_id;
} mkey_t;

typedef struct {
	om_index_t *ix;
	om_index_t *ix2; /* a second mapping, once an operation made it */
	uint32_t capacity, max_uri, arena_units, hits_max;
	uint32_t live, bump;
	uint32_t free_blocks[OM_IX_URI_MAX / IX_UNIT + IX_HDR_UNITS + 2];
	uint64_t next_id;
	uint32_t cursor;
	uint8_t keys[NKEYS][OM_IX_URI_MAX + 2];
	size_t lens[NKEYS];
	mkey_t m[NKEYS];
	/* releases reported by the index since the last check */
	uint64_t released[4];
	unsigned nreleased;
	unsigned step;
	/* Every release is also noted as a dropped file (as the store does);
	 * the notes must come back in order (an exec's at most 1,600 fit the
	 * ring of 4,096). */
	uint64_t notes_cursor;
	uint64_t noted[MAX_OPS * 4];
	unsigned nnoted, nread;
} model_t;

static uint32_t
units_of(size_t len)
{
	return IX_HDR_UNITS + (uint32_t)((len + IX_UNIT - 1) / IX_UNIT);
}

static void
on_release(void *arg, const om_ix_obj_t *o)
{
	model_t *s = arg;

	FZ_ASSERT(s->nreleased < 4, "too many releases");
	s->released[s->nreleased++] = o->id;
	FZ_ASSERT(s->nnoted < MAX_OPS * 4, "too many notes");
	s->noted[s->nnoted++] = o->id << 1 | 1;
	om_index_note_drop(s->ix, o->id << 1 | 1);
}

static void
on_note(void *arg, uint64_t key)
{
	model_t *s = arg;

	FZ_ASSERT(s->nread < s->nnoted && s->noted[s->nread] == key,
	    "step %u: note %u is %llu, not the release noted", s->step, s->nread, (unsigned long long)key);
	s->nread++;
}

/* The notes read back: every release noted since the last read, in order. */
static void
check_notes(model_t *s)
{
	int rc = om_index_notes(s->ix, &s->notes_cursor, on_note, s);

	FZ_ASSERT(rc == 0, "step %u: om_index_notes: %d", s->step, rc);
	FZ_ASSERT(s->nread == s->nnoted && s->notes_cursor == s->nnoted &&
	    om_index_notes_head(s->ix) == s->nnoted, "step %u: %u notes read of %u", s->step, s->nread,
	    s->nnoted);
}

static void
expect_released(model_t *s, uint64_t id)
{
	if (id == 0) {
		FZ_ASSERT(s->nreleased == 0, "step %u: unexpected release of id %llu", s->step,
		    (unsigned long long)s->released[0]);
	} else {
		FZ_ASSERT(s->nreleased == 1 && s->released[0] == id,
		    "step %u: expected the release of id %llu (%u releases)", s->step,
		    (unsigned long long)id, s->nreleased);
	}
	s->nreleased = 0;
}

static void
same_obj(const model_t *s, const om_ix_obj_t *a, const om_ix_obj_t *m, const char *what)
{
	FZ_ASSERT(a->id == m->id && a->size == m->size && a->expires == m->expires &&
	    a->crc == m->crc && a->flags == m->flags && a->hits == m->hits && a->slot == m->slot &&
	    a->loc == m->loc,
	    "step %u: %s: index id %llu size %llu flags %#x hits %u slot %u, model id %llu size "
	    "%llu flags %#x hits %u slot %u", s->step, what, (unsigned long long)a->id,
	    (unsigned long long)a->size, a->flags, a->hits, a->slot, (unsigned long long)m->id,
	    (unsigned long long)m->size, m->flags, m->hits, m->slot);
}

static bool
key_valid(const model_t *s, int k)
{
	return s->lens[k] >= 1 && s->lens[k] <= s->max_uri;
}

/* Every key looks up as the model says; the counters match. */
static void
check_all(model_t *s)
{
	om_ix_usage_t u;
	uint64_t count[OM_IX_NCLASS] = { 0 }, bytes[OM_IX_NCLASS] = { 0 }, cb[OM_IX_NCLASS];
	uint64_t free_bytes = 0;

	for (int k = 0; k < NKEYS; k++) {
		om_ix_obj_t o;
		int rc = om_index_lookup(s->ix, s->keys[k], s->lens[k], &o, 0);

		if (!s->m[k].present) {
			FZ_ASSERT(rc == -ENOENT, "step %u: key %d: absent but lookup gives %d", s->step, k,
			    rc);
			continue;
		}
		FZ_ASSERT(rc == 0, "step %u: key %d: present but lookup gives %d", s->step, k, rc);
		same_obj(s, &o, &s->m[k].o, "lookup");
		{
			unsigned c = (s->m[k].o.flags & OM_IX_F_EPHEMERAL) ? OM_IX_CLASS_EPHEMERAL :
			    OM_IX_CLASS_PERSIST;

			count[c]++;
			bytes[c] += s->m[k].o.size;
			if (s->m[k].o.flags & OM_IX_F_COPY) {
				count[OM_IX_CLASS_COPY]++;
				bytes[OM_IX_CLASS_COPY] += s->m[k].o.size;
			}
		}
	}
	om_index_usage(s->ix, &u);
	om_index_class_bytes(s->ix, cb);
	for (unsigned c = 0; c < OM_IX_NCLASS; c++) {
		FZ_ASSERT(u.count[c] == count[c] && u.bytes[c] == bytes[c] && cb[c] == bytes[c],
		    "step %u: class %u: index %llu objects %llu bytes, model %llu %llu", s->step, c,
		    (unsigned long long)u.count[c], (unsigned long long)u.bytes[c],
		    (unsigned long long)count[c], (unsigned long long)bytes[c]);
	}
	FZ_ASSERT(u.objects == count[0] + count[1] && u.objects == s->live, "step %u: objects", s->step);
	FZ_ASSERT(u.arena_used == (uint64_t)s->bump * IX_UNIT, "step %u: arena used %llu, model %llu",
	    s->step, (unsigned long long)u.arena_used, (unsigned long long)s->bump * IX_UNIT);
	for (unsigned c = 0; c < OM_ARRAY_LEN(s->free_blocks); c++)
		free_bytes += (uint64_t)s->free_blocks[c] * c * IX_UNIT;
	FZ_ASSERT(u.arena_free_lists == free_bytes, "step %u: free lists %llu, model %llu", s->step,
	    (unsigned long long)u.arena_free_lists, (unsigned long long)free_bytes);
	FZ_ASSERT(u.capacity == s->capacity, "capacity");
	FZ_ASSERT(s->nreleased == 0, "step %u: stray release", s->step);
}

/* The allocator's verdict for a block of len bytes; takes it on success.
 * A replace may go past the capacity while the old block is live. */
static int
model_alloc(model_t *s, size_t len, bool replacing)
{
	uint32_t units = units_of(len);

	if (s->live >= s->capacity + (replacing ? 1u : 0u))
		return -ENOSPC;
	if (s->free_blocks[units] > 0)
		s->free_blocks[units]--;
	else if ((uint64_t)s->bump + units <= s->arena_units)
		s->bump += units;
	else
		return -ENOMEM;
	s->live++;
	return 0;
}

static void
model_free(model_t *s, int k)
{
	s->free_blocks[units_of(s->lens[k])]++;
	s->live--;
	s->m[k].present = false;
}

static uint64_t
new_id(model_t *s)
{
	uint64_t id = om_index_next_id(s->ix);

	FZ_ASSERT(id == s->next_id, "next id %llu, model %llu", (unsigned long long)id,
	    (unsigned long long)s->next_id);
	s->next_id++;
	return id;
}

static void
learn_slot(model_t *s, int k)
{
	om_ix_obj_t o;

	FZ_ASSERT(om_index_lookup(s->ix, s->keys[k], s->lens[k], &o, 0) == 0, "step %u: new key %d "
	    "not found", s->step, k);
	s->m[k].o.slot = o.slot;
	s->m[k].last_slot = o.slot;
	s->m[k].last_id = o.id;
}

/* With match, om_index_put_match over the version there or another id. */
static void
op_put(model_t *s, fz_in_t *in, enum om_ix_put_mode mode, bool stale, bool match)
{
	int k = fz_u8(in) % NKEYS;
	uint16_t flags = fz_u16(in);
	om_ix_obj_t obj, old, want;
	mkey_t *m = &s->m[k];
	uint64_t match_id = 0;
	int rc, exp;

	memset(&obj, 0, sizeof(obj));
	obj.size = fz_u32(in) | (uint64_t)fz_u8(in) << 32;
	obj.expires = (int64_t)fz_u64(in);
	obj.crc = fz_u32(in);
	obj.flags = flags; /* only OM_IX_F_EPHEMERAL, OM_IX_F_UNCHECKED and OM_IX_F_PACKED are taken */
	if (flags & OM_IX_F_PACKED) {
		/* A packed object's size and loc share the block's field. */
		obj.size &= OM_IX_PACKED_SIZE_MAX;
		obj.loc = fz_u64(in) & OM_IX_LOC_MAX;
	}
	obj.hits = 77;
	obj.atime = 1;
	obj.slot = 12345;
	if (stale) {
		/* An id not newer than the one there: the write is dropped. */
		if (!m->present)
			return;
		obj.id = m->o.id - (m->o.id > 1 ? fz_u8(in) % 2 : 0);
	} else {
		obj.id = new_id(s);
	}
	memset(&old, 0, sizeof(old));
	if (match) {
		uint8_t b = fz_u8(in);

		mode = OM_IX_REPLACE;
		match_id = m->present && (b & 1) ? m->o.id : 1 + (m->present ? m->o.id : 0) + (b >> 1);
		rc = om_index_put_match(s->ix, s->keys[k], s->lens[k], &obj, match_id, &old);
	} else {
		rc = om_index_put(s->ix, s->keys[k], s->lens[k], &obj, mode, &old);
	}

	if (!key_valid(s, k)) {
		exp = -EINVAL;
	} else if (m->present && match && m->o.id != match_id) {
		exp = -ECANCELED;
	} else if (m->present && mode == OM_IX_INSERT) {
		exp = -EEXIST;
	} else if (m->present && m->o.id >= obj.id) {
		exp = -ESTALE;
	} else if (!m->present && mode == OM_IX_REPLACE) {
		exp = -ENOENT;
	} else {
		exp = model_alloc(s, s->lens[k], m->present);
		if (exp == 0 && m->present)
			exp = 1;
	}
	FZ_ASSERT(rc == exp, "step %u: put key %d (len %zu) mode %d id %llu: %d, model %d", s->step,
	    k, s->lens[k], (int)mode, (unsigned long long)obj.id, rc, exp);
	if (rc == -EEXIST || rc == -ESTALE || rc == -ECANCELED || rc == 1)
		same_obj(s, &old, &m->o, "put's old record");
	if (rc == 1) {
		expect_released(s, m->o.id);
		model_free(s, k);
	} else {
		expect_released(s, 0);
	}
	if (rc == 0 || rc == 1) {
		want = obj;
		want.flags = obj.flags & (OM_IX_F_EPHEMERAL | OM_IX_F_UNCHECKED | OM_IX_F_PACKED);
		want.hits = 0;
		m->o = want;
		m->present = true;
		learn_slot(s, k);
	}
}

static void
op_delete(model_t *s, fz_in_t *in, bool by_id)
{
	int k = fz_u8(in) % NKEYS;
	uint8_t how = fz_u8(in);
	mkey_t *m = &s->m[k];
	uint64_t id = 0;
	om_ix_obj_t old;
	int rc, exp;

	if (by_id)
		id = (how & 1) ? m->last_id + 1 + (how >> 1) : m->last_id;
	rc = om_index_delete(s->ix, s->keys[k], s->lens[k], id, &old);
	exp = m->present && key_valid(s, k) && (id == 0 || id == m->o.id) ? 0 : -ENOENT;
	FZ_ASSERT(rc == exp, "step %u: delete key %d id %llu: %d, model %d", s->step, k,
	    (unsigned long long)id, rc, exp);
	if (rc == 0) {
		same_obj(s, &old, &m->o, "deleted record");
		expect_released(s, m->o.id);
		model_free(s, k);
	} else {
		expect_released(s, 0);
	}
}

/* The key whose live record is (slot, id), or -1. */
static int
model_by_slot(const model_t *s, uint32_t slot, uint64_t id)
{
	for (int k = 0; k < NKEYS; k++)
		if (s->m[k].present && s->m[k].o.slot == slot && s->m[k].o.id == id)
			return k;
	return -1;
}

static void
pick_slot(model_t *s, fz_in_t *in, uint32_t *slot, uint64_t *id)
{
	int k = fz_u8(in) % NKEYS;
	uint8_t how = fz_u8(in);

	*slot = s->m[k].last_slot;
	*id = s->m[k].last_id;
	switch (how % 4) {
	case 0:
	case 1:
		break;
	case 2:
		*id += 1 + how / 4;
		break;
	case 3:
		*slot = fz_u16(in) % (s->arena_units + 8); /* anywhere, even mid-block */
		*id = fz_u8(in) % (s->next_id + 1);
		break;
	}
}

static void
op_delete_slot(model_t *s, fz_in_t *in)
{
	uint32_t slot;
	uint64_t id;
	om_ix_obj_t old;
	int rc, k;

	pick_slot(s, in, &slot, &id);
	k = model_by_slot(s, slot, id);
	rc = om_index_delete_slot(s->ix, slot, id, &old);
	FZ_ASSERT(rc == (k >= 0 ? 0 : -ENOENT), "step %u: delete_slot %u id %llu: %d, model key %d",
	    s->step, slot, (unsigned long long)id, rc, k);
	if (rc == 0) {
		same_obj(s, &old, &s->m[k].o, "deleted by slot");
		expect_released(s, id);
		model_free(s, k);
	} else {
		expect_released(s, 0);
	}
}

static void
op_flags(model_t *s, fz_in_t *in)
{
	uint8_t b = fz_u8(in);
	uint32_t set = ((b & 1) ? OM_IX_F_COPY : 0) | ((b & 4) ? OM_IX_F_UNCHECKED : 0);
	uint32_t clear = ((b & 2) ? OM_IX_F_COPY : 0) | ((b & 8) ? OM_IX_F_UNCHECKED : 0), slot;
	uint64_t id;
	int rc, k;

	pick_slot(s, in, &slot, &id);
	k = model_by_slot(s, slot, id);
	if (b & 0x10) {
		/* A compaction's move of a packed object: only from where it is. */
		uint64_t from = (k >= 0 && (b & 0x20)) ? s->m[k].o.loc : fz_u64(in) & OM_IX_LOC_MAX;
		uint64_t to = fz_u64(in) & OM_IX_LOC_MAX;
		bool ok = k >= 0 && (s->m[k].o.flags & OM_IX_F_PACKED) && s->m[k].o.loc == from;

		rc = om_index_relocate(s->ix, slot, id, from, to);
		FZ_ASSERT(rc == (ok ? 0 : -ENOENT), "step %u: relocate %u id %llu: %d, model key %d",
		    s->step, slot, (unsigned long long)id, rc, k);
		if (ok)
			s->m[k].o.loc = to;
		return;
	}
	rc = om_index_update_flags(s->ix, slot, id, set, clear);
	FZ_ASSERT(rc == (k >= 0 ? 0 : -ENOENT), "step %u: update_flags %u id %llu: %d, model key %d",
	    s->step, slot, (unsigned long long)id, rc, k);
	if (rc == 0) {
		uint32_t f = s->m[k].o.flags, nf = (f | set) & ~clear;

		if (nf != f && (set & OM_IX_F_COPY))
			s->m[k].o.hits = 0;
		s->m[k].o.flags = nf;
	}
}

static void
model_touch(model_t *s, int k)
{
	om_ix_obj_t *o = &s->m[k].o;

	if (!(o->flags & (OM_IX_F_COPY | OM_IX_F_EPHEMERAL)) && o->hits < s->hits_max)
		o->hits++;
}

static void
op_lookup(model_t *s, fz_in_t *in)
{
	int k = fz_u8(in) % NKEYS;
	om_ix_obj_t o;
	int rc = om_index_lookup(s->ix, s->keys[k], s->lens[k], &o, OM_IX_TOUCH);

	FZ_ASSERT(rc == (s->m[k].present ? 0 : -ENOENT), "step %u: lookup key %d: %d", s->step, k,
	    rc);
	if (rc == 0) {
		same_obj(s, &o, &s->m[k].o, "touching lookup");
		model_touch(s, k);
	}
}

static void
op_batch(model_t *s, fz_in_t *in)
{
	unsigned n = 1 + fz_u8(in) % 8, flags = fz_u8(in) & 1 ? OM_IX_TOUCH : 0;
	const void *uris[8];
	size_t lens[8];
	om_ix_obj_t out[8], want[8];
	int rc[8], ks[8];

	for (unsigned i = 0; i < n; i++) {
		ks[i] = fz_u8(in) % NKEYS;
		uris[i] = s->keys[ks[i]];
		lens[i] = s->lens[ks[i]];
	}
	/* The lookups run in order: a key twice sees its first touch. */
	for (unsigned i = 0; i < n; i++) {
		want[i] = s->m[ks[i]].o;
		if (s->m[ks[i]].present && flags)
			model_touch(s, ks[i]);
	}
	om_index_lookup_batch(s->ix, n, uris, lens, out, rc, flags);
	for (unsigned i = 0; i < n; i++) {
		FZ_ASSERT(rc[i] == (s->m[ks[i]].present ? 0 : -ENOENT), "step %u: batch %u key %d: %d",
		    s->step, i, ks[i], rc[i]);
		if (rc[i] == 0)
			same_obj(s, &out[i], &want[i], "batch lookup");
	}
}

static void
op_decay(model_t *s)
{
	om_index_decay(s->ix);
	for (int k = 0; k < NKEYS; k++)
		s->m[k].o.hits /= 2;
}

static bool
selected(const om_ix_obj_t *o, unsigned sel)
{
	if ((sel & OM_IX_SEL(OM_IX_CLASS_COPY)) && (o->flags & OM_IX_F_COPY))
		return true;
	return (sel & OM_IX_SEL((o->flags & OM_IX_F_EPHEMERAL) ? OM_IX_CLASS_EPHEMERAL :
	    OM_IX_CLASS_PERSIST)) != 0;
}

static void
op_sample(model_t *s, fz_in_t *in)
{
	unsigned sel = fz_u8(in) % 8, k = 1 + fz_u8(in) % 6;
	uint8_t b = fz_u8(in);
	size_t uri_len = (b & 1) ? s->lens[(b >> 1) % NKEYS] : 0;
	om_ix_obj_t v;
	int rc, any = 0, hit = -1;

	if (uri_len > s->max_uri)
		uri_len = 0;
	for (int i = 0; i < NKEYS; i++) {
		if (!s->m[i].present || !selected(&s->m[i].o, sel) ||
		    (uri_len && units_of(s->lens[i]) != units_of(uri_len)))
			continue;
		any = 1;
	}
	rc = om_index_sample(s->ix, sel, k, uri_len, &s->cursor, &v);
	FZ_ASSERT(rc == (any ? 0 : -ENOENT), "step %u: sample sel %u len %zu: %d, model %d", s->step,
	    sel, uri_len, rc, any);
	if (rc == 0) {
		for (int i = 0; i < NKEYS; i++)
			if (s->m[i].present && s->m[i].o.id == v.id)
				hit = i;
		FZ_ASSERT(hit >= 0, "step %u: sampled id %llu not in the model", s->step,
		    (unsigned long long)v.id);
		same_obj(s, &v, &s->m[hit].o, "sample");
		FZ_ASSERT(selected(&v, sel) && (!uri_len || units_of(s->lens[hit]) == units_of(uri_len)),
		    "step %u: sample picked an object not asked for", s->step);
	}
	FZ_ASSERT(s->cursor < s->bump || s->bump == 0, "cursor %u past bump %u", s->cursor, s->bump);
}

typedef struct {
	model_t *s;
	unsigned seen[NKEYS];
	unsigned n;
} walk_t;

static int
on_item(void *arg, const char *uri, size_t len, const om_ix_obj_t *o)
{
	walk_t *w = arg;
	model_t *s = w->s;

	for (int k = 0; k < NKEYS; k++) {
		if (s->m[k].present && s->lens[k] == len && memcmp(s->keys[k], uri, len) == 0) {
			same_obj(s, o, &s->m[k].o, "iterate");
			w->seen[k]++;
			w->n++;
			return 0;
		}
	}
	FZ_ASSERT(0, "step %u: iterate gave a URI of %zu bytes not in the model", s->step, len);
	return 0;
}

static int
on_scan(void *arg, const om_ix_obj_t *o)
{
	walk_t *w = arg;
	int k = model_by_slot(w->s, o->slot, o->id);

	FZ_ASSERT(k >= 0, "step %u: scan gave slot %u id %llu not in the model", w->s->step, o->slot,
	    (unsigned long long)o->id);
	same_obj(w->s, o, &w->s->m[k].o, "scan");
	w->seen[k]++;
	w->n++;
	return 0;
}

static void
op_walks(model_t *s)
{
	walk_t w;
	unsigned present = 0;

	for (int k = 0; k < NKEYS; k++)
		present += s->m[k].present;
	memset(&w, 0, sizeof(w));
	w.s = s;
	FZ_ASSERT(om_index_iterate(s->ix, on_item, &w) == 0, "iterate");
	FZ_ASSERT(w.n == present, "step %u: iterate saw %u of %u", s->step, w.n, present);
	for (int k = 0; k < NKEYS; k++)
		FZ_ASSERT(w.seen[k] == s->m[k].present, "step %u: iterate saw key %d %u times", s->step,
		    k, w.seen[k]);
	memset(&w, 0, sizeof(w));
	w.s = s;
	FZ_ASSERT(om_index_scan(s->ix, on_scan, &w) == 0, "scan");
	FZ_ASSERT(w.n == present, "step %u: scan saw %u of %u", s->step, w.n, present);
	for (int k = 0; k < NKEYS; k++)
		FZ_ASSERT(w.seen[k] == s->m[k].present, "step %u: scan saw key %d %u times", s->step, k,
		    w.seen[k]);
}

static void
op_check(model_t *s)
{
	char err[256];
	int rc = om_index_check(s->ix, err, sizeof(err));

	FZ_ASSERT(rc == 0, "step %u: om_index_check: %d: %s", s->step, rc, err);
}

/* A second mapping of the segment agrees. It is made at the first such
 * operation and kept to the end of the run, as a forked worker keeps its
 * own, so later ones read, through it, what changed since. */
static void
op_attach(model_t *s)
{
	if (s->ix2 == NULL) {
		int fd = dup(om_index_fd(s->ix));

		FZ_ASSERT(fd >= 0, "dup");
		FZ_ASSERT(om_index_attach(fd, &s->ix2) == 0, "attach");
	}
	for (int k = 0; k < NKEYS; k++) {
		om_ix_obj_t o;
		int rc = om_index_lookup(s->ix2, s->keys[k], s->lens[k], &o, 0);

		FZ_ASSERT(rc == (s->m[k].present ? 0 : -ENOENT), "step %u: second mapping, key %d: %d",
		    s->step, k, rc);
		if (rc == 0)
			same_obj(s, &o, &s->m[k].o, "second mapping");
	}
}

static om_index_t *seg;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static model_t s;
	fz_in_t in = { data, size };
	om_ix_params_t p;
	uint8_t b;
	int rc;

	memset(&s, 0, sizeof(s));
	memset(&p, 0, sizeof(p));
	p.capacity = 1 + fz_u8(&in) % 24;
	p.max_uri = 1 + fz_u8(&in) % 80;
	p.stripes = 1u << (fz_u8(&in) % 4);
	b = fz_u8(&in);
	/* 0: the default (112 bytes an object, at least two largest blocks);
	 * else from one largest block up, not always a whole number of units. */
	p.arena_bytes = b & 0x80 ? 0 : (uint64_t)units_of(p.max_uri) * IX_UNIT + (uint64_t)b * 9;
	b = fz_u8(&in);
	p.hits_max = b & 0x80 ? OM_IX_HITS_MAX : b % 6;
	p.procs = 1;
	p.proc_bytes = 64;
	/* One segment for every run, made anew for each (om_index_recreate),
	 * and replaced by a bigger one when a run's parameters need it:
	 * unmapping a segment per run took a third of the time. */
	rc = seg != NULL ? om_index_recreate(seg, &p) : -ENOSPC;
	if (rc == -ENOSPC) {
		om_index_close(seg);
		seg = NULL;
		rc = om_index_create(&p, &seg);
	}
	FZ_ASSERT(rc == 0, "making the index: %d", rc);
	s.ix = seg;
	om_index_set_release(s.ix, on_release, &s);
	s.capacity = p.capacity;
	s.max_uri = p.max_uri;
	s.hits_max = p.hits_max;
	{
		uint64_t ab = p.arena_bytes ? p.arena_bytes : (uint64_t)p.capacity * 112;

		if (p.arena_bytes == 0 && ab < (uint64_t)units_of(p.max_uri) * IX_UNIT * 2)
			ab = (uint64_t)units_of(p.max_uri) * IX_UNIT * 2;
		s.arena_units = (uint32_t)(ab / IX_UNIT);
	}
	s.next_id = 1;
	/* Keys: distinct first bytes; lengths 1..max_uri + 2 (some too long). */
	for (int k = 0; k < NKEYS; k++) {
		s.lens[k] = 1 + fz_u8(&in) % (p.max_uri + 2);
		s.keys[k][0] = (uint8_t)('A' + k);
		for (size_t i = 1; i < s.lens[k]; i++)
			s.keys[k][i] = (uint8_t)('a' + (k * 7 + i) % 26);
	}

	for (s.step = 1; in.n > 0 && s.step <= MAX_OPS; s.step++) {
		uint8_t op = fz_u8(&in);

		switch (op % 19) {
		case 0: case 1: case 2: op_put(&s, &in, OM_IX_UPSERT, false, false); break;
		case 3: op_put(&s, &in, OM_IX_INSERT, false, false); break;
		case 4: op_put(&s, &in, OM_IX_REPLACE, false, false); break;
		case 5: op_put(&s, &in, (enum om_ix_put_mode)(fz_u8(&in) % 3), true, false); break;
		case 6: op_delete(&s, &in, false); break;
		case 7: op_delete(&s, &in, true); break;
		case 8: op_delete_slot(&s, &in); break;
		case 9: op_flags(&s, &in); break;
		case 10: case 11: op_lookup(&s, &in); break;
		case 12: op_batch(&s, &in); break;
		case 13: op_decay(&s); break;
		case 14: op_sample(&s, &in); break;
		case 15: op_walks(&s); break;
		case 16:
			b = fz_u8(&in);
			if (b & 1) {
				op_check(&s);
			} else {
				uint64_t want = s.next_id + b;

				om_index_reserve_ids(s.ix, want);
				if (want > s.next_id)
					s.next_id = want;
			}
			break;
		case 17: op_attach(&s); break;
		case 18: op_put(&s, &in, OM_IX_REPLACE, fz_u8(&in) & 1, true); break;
		}
		check_all(&s);
		check_notes(&s);
	}
	op_walks(&s);
	op_check(&s);
	om_index_close(s.ix2);
	return 0;
}
