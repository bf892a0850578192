/*
 * The shared-memory index: operations, limits, accounting, sharing across
 * fork, the approximate LRU sample, and the bytes an object costs.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/index_sh.h"
#include "index/om_index.h"
#include "om_test.h"

static om_index_t *
mk(uint32_t capacity, uint32_t max_uri, uint64_t arena)
{
	om_ix_params_t p = { .capacity = capacity, .max_uri = max_uri, .arena_bytes = arena,
		.hits_max = OM_IX_HITS_MAX, .atime_res_ms = OM_IX_TICK_MS };
	om_index_t *ix = NULL;

	assert_int_equal(om_index_create(&p, &ix), 0);
	assert_non_null(ix);
	return ix;
}

static void
check_ok(om_index_t *ix)
{
	char err[256];
	int rc = om_index_check(ix, err, sizeof(err));

	if (rc != 0)
		fail_msg("consistency check: %s", err);
}

static om_ix_obj_t
obj(om_index_t *ix, uint64_t size)
{
	om_ix_obj_t o = { 0 };

	o.id = om_index_next_id(ix);
	o.size = size;
	o.crc = (uint32_t)(o.id * 2654435761u);
	o.expires = 1700000000 + (int64_t)o.id;
	return o;
}

static int
put(om_index_t *ix, const char *uri, const om_ix_obj_t *o, om_ix_obj_t *old)
{
	return om_index_put(ix, uri, strlen(uri), o, OM_IX_UPSERT, old);
}

static void
test_put_lookup_replace_delete(void **state)
{
	om_index_t *ix = mk(1000, 256, 0);
	om_ix_obj_t a = obj(ix, 100), b = obj(ix, 200), got, old;

	(void)state;
	assert_int_equal(om_index_lookup(ix, "/a", 2, &got, 0), -ENOENT);
	assert_int_equal(put(ix, "/a", &a, &old), 0);
	assert_int_equal(om_index_lookup(ix, "/a", 2, &got, 0), 0);
	assert_int_equal(got.id, a.id);
	assert_int_equal(got.size, 100);
	assert_int_equal(got.crc, a.crc);
	assert_int_equal(got.expires, a.expires);
	/* A prefix or extension of a URI is another URI. */
	assert_int_equal(om_index_lookup(ix, "/", 1, &got, 0), -ENOENT);
	assert_int_equal(om_index_lookup(ix, "/ab", 3, &got, 0), -ENOENT);

	assert_int_equal(put(ix, "/a", &b, &old), 1);
	assert_int_equal(old.id, a.id);
	assert_int_equal(old.size, 100);
	assert_int_equal(om_index_lookup(ix, "/a", 2, &got, 0), 0);
	assert_int_equal(got.id, b.id);
	assert_int_equal(got.size, 200);

	/* INSERT refuses an existing URI, REPLACE a missing one. */
	{
		om_ix_obj_t c = obj(ix, 1);

		assert_int_equal(om_index_put(ix, "/a", 2, &c, OM_IX_INSERT, &old), -EEXIST);
		assert_int_equal(old.id, b.id);
		assert_int_equal(om_index_put(ix, "/b", 2, &c, OM_IX_REPLACE, NULL), -ENOENT);
	}

	/* Delete only with the right id, then unconditionally. */
	assert_int_equal(om_index_delete(ix, "/a", 2, a.id, NULL), -ENOENT);
	assert_int_equal(om_index_delete(ix, "/a", 2, b.id, &old), 0);
	assert_int_equal(old.id, b.id);
	assert_int_equal(om_index_lookup(ix, "/a", 2, &got, 0), -ENOENT);
	assert_int_equal(om_index_delete(ix, "/a", 2, 0, NULL), -ENOENT);
	check_ok(ix);
	om_index_close(ix);
}

/* A write conditional on the version it saw: over that version only. */
static void
test_put_match(void **state)
{
	om_index_t *ix = mk(1000, 256, 0);
	om_ix_obj_t a = obj(ix, 10), b = obj(ix, 20), c = obj(ix, 30), d = obj(ix, 40), got, old;
	om_ix_usage_t u;

	(void)state;
	/* Nothing there: -ENOENT, nothing inserted. */
	assert_int_equal(om_index_put_match(ix, "/m", 2, &b, a.id, NULL), -ENOENT);
	assert_int_equal(om_index_lookup(ix, "/m", 2, &got, 0), -ENOENT);
	assert_int_equal(put(ix, "/m", &a, NULL), 0);
	/* Another version than the one named: -ECANCELED, the entry as it was. */
	memset(&old, 0, sizeof(old));
	assert_int_equal(om_index_put_match(ix, "/m", 2, &c, b.id, &old), -ECANCELED);
	assert_int_equal(old.id, a.id);
	assert_int_equal(old.size, 10);
	assert_int_equal(om_index_lookup(ix, "/m", 2, &got, 0), 0);
	assert_int_equal(got.id, a.id);
	/* The version named: replaced, *old the dropped one. */
	assert_int_equal(om_index_put_match(ix, "/m", 2, &c, a.id, &old), 1);
	assert_int_equal(old.id, a.id);
	assert_int_equal(om_index_lookup(ix, "/m", 2, &got, 0), 0);
	assert_int_equal(got.id, c.id);
	assert_int_equal(got.size, 30);
	/* The same condition again now names a version gone. */
	assert_int_equal(om_index_put_match(ix, "/m", 2, &d, a.id, &old), -ECANCELED);
	assert_int_equal(old.id, c.id);
	assert_int_equal(om_index_put_match(ix, "/m", 2, &d, 0, NULL), -EINVAL);
	om_index_usage(ix, &u);
	assert_int_equal(u.objects, 1);
	assert_int_equal(u.bytes[OM_IX_CLASS_PERSIST], 30);
	check_ok(ix);
	om_index_close(ix);
}

static void
test_uri_limits(void **state)
{
	om_index_t *ix = mk(10, 64, 0);
	char uri[80];
	om_ix_obj_t o = obj(ix, 1);

	(void)state;
	memset(uri, 'x', sizeof(uri));
	assert_int_equal(om_index_put(ix, uri, 0, &o, OM_IX_UPSERT, NULL), -EINVAL);
	assert_int_equal(om_index_put(ix, uri, 65, &o, OM_IX_UPSERT, NULL), -EINVAL);
	assert_int_equal(om_index_put(ix, uri, 64, &o, OM_IX_UPSERT, NULL), 0);
	assert_int_equal(om_index_lookup(ix, uri, 64, NULL, 0), 0);
	assert_int_equal(om_index_lookup(ix, uri, 65, NULL, 0), -ENOENT);
	/* Bytes are bytes: a URI may hold any value but is never empty. */
	uri[3] = '\0';
	o = obj(ix, 1);
	assert_int_equal(om_index_put(ix, uri, 10, &o, OM_IX_UPSERT, NULL), 0);
	assert_int_equal(om_index_lookup(ix, uri, 10, NULL, 0), 0);
	check_ok(ix);
	om_index_close(ix);
}

static void
test_full_index_refuses(void **state)
{
	om_index_t *ix = mk(8, 128, 0);
	char uri[32];
	om_ix_usage_t u;

	(void)state;
	for (int i = 0; i < 8; i++) {
		om_ix_obj_t o = obj(ix, 10);

		snprintf(uri, sizeof(uri), "/k%d", i);
		assert_int_equal(put(ix, uri, &o, NULL), 0);
	}
	{
		om_ix_obj_t o = obj(ix, 10);

		assert_int_equal(put(ix, "/one-too-many", &o, NULL), -ENOSPC);
		/* A replace takes its new block beyond the capacity for as long
		 * as the old one is live: a full index takes new versions. */
		assert_int_equal(put(ix, "/k3", &o, NULL), 1);
	}
	assert_int_equal(om_index_lookup(ix, "/one-too-many", 13, NULL, 0), -ENOENT);
	om_index_usage(ix, &u);
	assert_int_equal(u.objects, 8);
	assert_int_equal(u.capacity, 8);
	/* Deleting one makes room again. */
	assert_int_equal(om_index_delete(ix, "/k0", 3, 0, NULL), 0);
	{
		om_ix_obj_t o = obj(ix, 10);

		assert_int_equal(put(ix, "/one-too-many", &o, NULL), 0);
	}
	check_ok(ix);
	om_index_close(ix);
}

/*
 * The arena is carved into blocks (48-byte header + URI) by size and a
 * freed block is reused only by a URI of the same size: full arena means
 * -ENOMEM for that size, while other sizes still fit their free blocks.
 */
static void
test_arena_full_and_reuse(void **state)
{
	/* Room for exactly 8 blocks of a 100-byte URI: 48 + 112 bytes each. */
	om_index_t *ix = mk(64, 512, 8 * 160);
	char uri[600];
	om_ix_usage_t u;
	int i;

	(void)state;
	memset(uri, 'u', sizeof(uri));
	for (i = 0; i < 8; i++) {
		om_ix_obj_t o = obj(ix, 1);

		uri[0] = (char)('A' + i);
		assert_int_equal(om_index_put(ix, uri, 100, &o, OM_IX_UPSERT, NULL), 0);
	}
	om_index_usage(ix, &u);
	assert_int_equal(u.arena_used, 8 * 160);
	assert_int_equal(u.arena_free_lists, 0);
	{
		om_ix_obj_t o = obj(ix, 1);

		uri[0] = 'Z';
		assert_int_equal(om_index_put(ix, uri, 100, &o, OM_IX_UPSERT, NULL), -ENOMEM);
		/* A replace needs a second block while the first is live. */
		uri[0] = 'A';
		assert_int_equal(om_index_put(ix, uri, 100, &o, OM_IX_UPSERT, NULL), -ENOMEM);
	}
	uri[0] = 'A';
	assert_int_equal(om_index_delete(ix, uri, 100, 0, NULL), 0);
	om_index_usage(ix, &u);
	assert_int_equal(u.arena_free_lists, 160);
	/* Another size cannot use that block... */
	{
		om_ix_obj_t o = obj(ix, 1);

		assert_int_equal(om_index_put(ix, "/short", 6, &o, OM_IX_UPSERT, NULL), -ENOMEM);
	}
	/* ...a URI of the same rounded size can, and takes exactly it. */
	{
		om_ix_obj_t o = obj(ix, 1);

		uri[0] = 'Y';
		assert_int_equal(om_index_put(ix, uri, 97, &o, OM_IX_UPSERT, NULL), 0);
	}
	om_index_usage(ix, &u);
	assert_int_equal(u.arena_free_lists, 0);
	assert_int_equal(u.arena_used, 8 * 160);
	check_ok(ix);
	/* Sampling by size finds only blocks that would fit. */
	{
		uint32_t cursor = 0;
		om_ix_obj_t v;

		assert_int_equal(om_index_sample(ix, OM_IX_SEL(OM_IX_CLASS_PERSIST), 4, 100, &cursor, &v), 0);
		assert_int_equal(om_index_sample(ix, OM_IX_SEL(OM_IX_CLASS_PERSIST), 4, 6, &cursor, &v), -ENOENT);
	}
	om_index_close(ix);
}

static void
test_stale_write_is_dropped(void **state)
{
	om_index_t *ix = mk(16, 64, 0);
	om_ix_obj_t older = obj(ix, 1), newer = obj(ix, 2), got, old;

	(void)state;
	/* Two writers raced; the one with the newer id landed first. */
	assert_int_equal(put(ix, "/k", &newer, NULL), 0);
	assert_int_equal(put(ix, "/k", &older, &old), -ESTALE);
	assert_int_equal(old.id, newer.id);
	assert_int_equal(om_index_lookup(ix, "/k", 2, &got, 0), 0);
	assert_int_equal(got.id, newer.id);
	assert_int_equal(got.size, 2);
	check_ok(ix);
	om_index_close(ix);
}

typedef struct {
	uint64_t ids[64];
	int n;
} released_t;

static void
on_release(void *arg, const om_ix_obj_t *o)
{
	released_t *r = arg;

	if (r->n < 64)
		r->ids[r->n++] = o->id;
}

static void
test_release_callback(void **state)
{
	om_index_t *ix = mk(16, 64, 0);
	om_ix_obj_t a = obj(ix, 1), b = obj(ix, 2), c = obj(ix, 3);
	released_t r = { { 0 }, 0 };

	(void)state;
	om_index_set_release(ix, on_release, &r);
	assert_int_equal(put(ix, "/k", &a, NULL), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(put(ix, "/k", &b, NULL), 1);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.ids[0], a.id);
	/* A dropped stale write releases nothing: its caller owns it. */
	{
		om_ix_obj_t stale = a;

		assert_int_equal(put(ix, "/k", &stale, NULL), -ESTALE);
		assert_int_equal(r.n, 1);
	}
	assert_int_equal(put(ix, "/j", &c, NULL), 0);
	assert_int_equal(om_index_delete(ix, "/k", 2, 0, NULL), 0);
	assert_int_equal(r.n, 2);
	assert_int_equal(r.ids[1], b.id);
	assert_int_equal(om_index_delete_slot(ix, 12345, c.id, NULL), -ENOENT);
	{
		om_ix_obj_t got;

		assert_int_equal(om_index_lookup(ix, "/j", 2, &got, 0), 0);
		assert_int_equal(om_index_delete_slot(ix, got.slot, got.id + 1, NULL), -ENOENT);
		assert_int_equal(om_index_delete_slot(ix, got.slot, got.id, NULL), 0);
	}
	assert_int_equal(r.n, 3);
	assert_int_equal(r.ids[2], c.id);
	check_ok(ix);
	om_index_close(ix);
}

static void
test_accounting_and_flags(void **state)
{
	om_index_t *ix = mk(100, 64, 0);
	om_ix_obj_t p1 = obj(ix, 1000), p2 = obj(ix, 3000), e1 = obj(ix, 500), got;
	om_ix_usage_t u;

	(void)state;
	e1.flags = OM_IX_F_EPHEMERAL;
	assert_int_equal(put(ix, "/p1", &p1, NULL), 0);
	assert_int_equal(put(ix, "/p2", &p2, NULL), 0);
	assert_int_equal(put(ix, "/e1", &e1, NULL), 0);
	om_index_usage(ix, &u);
	assert_int_equal(u.objects, 3);
	assert_int_equal(u.count[OM_IX_CLASS_PERSIST], 2);
	assert_int_equal(u.bytes[OM_IX_CLASS_PERSIST], 4000);
	assert_int_equal(u.count[OM_IX_CLASS_EPHEMERAL], 1);
	assert_int_equal(u.bytes[OM_IX_CLASS_EPHEMERAL], 500);
	assert_int_equal(u.bytes[OM_IX_CLASS_COPY], 0);

	/* Promote p2: its bytes now count in the memory tier as well. */
	assert_int_equal(om_index_lookup(ix, "/p2", 3, &got, 0), 0);
	assert_int_equal(om_index_update_flags(ix, got.slot, got.id, OM_IX_F_COPY, 0), 0);
	assert_int_equal(om_index_lookup(ix, "/p2", 3, &got, 0), 0);
	assert_true(got.flags & OM_IX_F_COPY);
	om_index_usage(ix, &u);
	assert_int_equal(u.count[OM_IX_CLASS_COPY], 1);
	assert_int_equal(u.bytes[OM_IX_CLASS_COPY], 3000);
	assert_int_equal(u.bytes[OM_IX_CLASS_PERSIST], 4000);
	check_ok(ix);

	/* The wrong id changes nothing. */
	assert_int_equal(om_index_update_flags(ix, got.slot, got.id + 1, 0, OM_IX_F_COPY), -ENOENT);
	/* Replacing a promoted object drops its copy's accounting. */
	{
		om_ix_obj_t p2b = obj(ix, 10);
		om_ix_obj_t old;

		assert_int_equal(put(ix, "/p2", &p2b, &old), 1);
		assert_true(old.flags & OM_IX_F_COPY);
	}
	om_index_usage(ix, &u);
	assert_int_equal(u.count[OM_IX_CLASS_COPY], 0);
	assert_int_equal(u.bytes[OM_IX_CLASS_COPY], 0);
	assert_int_equal(u.bytes[OM_IX_CLASS_PERSIST], 1010);
	assert_int_equal(om_index_delete(ix, "/e1", 3, 0, NULL), 0);
	om_index_usage(ix, &u);
	assert_int_equal(u.count[OM_IX_CLASS_EPHEMERAL], 0);
	assert_int_equal(u.bytes[OM_IX_CLASS_EPHEMERAL], 0);
	check_ok(ix);
	om_index_close(ix);
}

typedef struct {
	int seen[1000];
	int n;
} iter_t;

static int
iter_cb(void *arg, const char *uri, size_t len, const om_ix_obj_t *o)
{
	iter_t *it = arg;
	char buf[32];
	int k;

	/* The URI is len bytes, not a C string. */
	assert_true(len > 3 && len < sizeof(buf) && memcmp(uri, "/it", 3) == 0);
	memcpy(buf, uri, len);
	buf[len] = '\0';
	k = atoi(buf + 3);
	assert_true(k >= 0 && k < 1000);
	assert_int_equal(o->size, (uint64_t)k);
	it->seen[k]++;
	it->n++;
	return 0;
}

static int
iter_stop(void *arg, const char *uri, size_t len, const om_ix_obj_t *o)
{
	(void)uri;
	(void)len;
	(void)o;
	return ++*(int *)arg == 10 ? 77 : 0;
}

static void
test_iterate(void **state)
{
	om_index_t *ix = mk(2000, 64, 0);
	static iter_t it;
	char uri[32];
	int stop = 0;

	(void)state;
	for (int k = 0; k < 1000; k++) {
		om_ix_obj_t o = obj(ix, (uint64_t)k);

		snprintf(uri, sizeof(uri), "/it%d", k);
		assert_int_equal(put(ix, uri, &o, NULL), 0);
	}
	for (int k = 0; k < 1000; k += 2) {
		snprintf(uri, sizeof(uri), "/it%d", k);
		assert_int_equal(om_index_delete(ix, uri, strlen(uri), 0, NULL), 0);
	}
	assert_int_equal(om_index_iterate(ix, iter_cb, &it), 0);
	assert_int_equal(it.n, 500);
	for (int k = 0; k < 1000; k++)
		assert_int_equal(it.seen[k], k % 2);
	assert_int_equal(om_index_iterate(ix, iter_stop, &stop), 77);
	assert_int_equal(stop, 10);
	om_index_close(ix);
}

static void
test_sample_prefers_least_recent(void **state)
{
	om_index_t *ix = mk(64, 64, 0);
	char uri[32];
	uint32_t cursor = 0;
	om_ix_obj_t v;

	(void)state;
	for (int k = 0; k < 32; k++) {
		om_ix_obj_t o = obj(ix, 1);

		o.flags = (k % 2) ? OM_IX_F_EPHEMERAL : 0;
		snprintf(uri, sizeof(uri), "/s%d", k);
		assert_int_equal(put(ix, uri, &o, NULL), 0);
	}
	/* Let the coarse clock move, then read everything except /s6. */
	usleep(60000);
	for (int k = 0; k < 32; k++) {
		if (k == 6)
			continue;
		snprintf(uri, sizeof(uri), "/s%d", k);
		assert_int_equal(om_index_lookup(ix, uri, strlen(uri), NULL, OM_IX_TOUCH), 0);
	}
	/* Seeing every persistent object, the sample picks the unread one. */
	assert_int_equal(om_index_sample(ix, OM_IX_SEL(OM_IX_CLASS_PERSIST), 64, 0, &cursor, &v), 0);
	{
		om_ix_obj_t s6;

		assert_int_equal(om_index_lookup(ix, "/s6", 3, &s6, 0), 0);
		assert_int_equal(v.id, s6.id);
		assert_int_equal(v.slot, s6.slot);
	}
	/* Only ephemeral objects when asked, and none when no copy exists. */
	assert_int_equal(om_index_sample(ix, OM_IX_SEL(OM_IX_CLASS_EPHEMERAL), 4, 0, &cursor, &v), 0);
	assert_true(v.flags & OM_IX_F_EPHEMERAL);
	assert_int_equal(om_index_sample(ix, OM_IX_SEL(OM_IX_CLASS_COPY), 4, 0, &cursor, &v), -ENOENT);
	/* Reads count toward promotion; decay halves them. */
	{
		om_ix_obj_t o;

		for (int i = 0; i < 9; i++)
			assert_int_equal(om_index_lookup(ix, "/s8", 3, NULL, OM_IX_TOUCH), 0);
		assert_int_equal(om_index_lookup(ix, "/s8", 3, &o, 0), 0);
		assert_int_equal(o.hits, 10);
		om_index_decay(ix);
		assert_int_equal(om_index_lookup(ix, "/s8", 3, &o, 0), 0);
		assert_int_equal(o.hits, 5);
	}
	om_index_close(ix);
}

static void
test_shared_across_fork(void **state)
{
	om_index_t *ix = mk(1000, 64, 0);
	pid_t pid;

	(void)state;
	{
		om_ix_obj_t o = obj(ix, 11);

		assert_int_equal(put(ix, "/parent", &o, NULL), 0);
	}
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		om_ix_obj_t o, got;
		int bad = 0;

		/* The child sees the parent's object and adds its own. */
		bad |= om_index_lookup(ix, "/parent", 7, &got, 0) != 0 || got.size != 11;
		o = obj(ix, 22);
		bad |= put(ix, "/child", &o, NULL) != 0;
		bad |= om_index_delete(ix, "/parent", 7, 0, NULL) != 0;
		_exit(bad);
	}
	assert_int_equal(om_test_wait(pid), 0);
	{
		om_ix_obj_t got;

		assert_int_equal(om_index_lookup(ix, "/child", 6, &got, 0), 0);
		assert_int_equal(got.size, 22);
		assert_int_equal(om_index_lookup(ix, "/parent", 7, NULL, 0), -ENOENT);
	}
	/* Ids come from one shared counter. */
	{
		uint64_t a = om_index_next_id(ix);

		om_index_reserve_ids(ix, a + 1000);
		assert_int_equal(om_index_next_id(ix), a + 1000);
		om_index_reserve_ids(ix, 5);
		assert_int_equal(om_index_next_id(ix), a + 1001);
	}
	check_ok(ix);
	om_index_close(ix);
}

typedef struct {
	uint64_t keys[IX_NOTES + 8];
	unsigned n;
} seen_t;

static void
seen(void *arg, uint64_t key)
{
	seen_t *s = arg;

	assert_true(s->n < IX_NOTES + 8);
	s->keys[s->n++] = key;
}

/* The notes of dropped files: written by any process, read in order from
 * a cursor; lost notes (the ring went round) and a note never written
 * (its writer died between taking and writing it) are told apart. */
static void
test_drop_notes(void **state)
{
	om_index_t *ix = mk(100, 64, 0);
	static seen_t s;
	uint64_t cur = om_index_notes_head(ix), cur2;
	ix_header_sh_t *h;
	pid_t pid;

	(void)state;
	assert_int_equal(cur, 0);
	assert_int_equal(om_index_notes(ix, &cur, seen, &s), 0);
	assert_int_equal(s.n, 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		for (uint64_t k = 1; k <= 10; k++)
			om_index_note_drop(ix, k * 3);
		_exit(0);
	}
	assert_int_equal(om_test_wait(pid), 0);
	om_index_note_drop(ix, 99);
	assert_int_equal(om_index_notes_head(ix), 11);
	assert_int_equal(om_index_notes(ix, &cur, seen, &s), 0);
	assert_int_equal(cur, 11);
	assert_int_equal(s.n, 11);
	for (unsigned i = 0; i < 10; i++)
		assert_int_equal(s.keys[i], (i + 1) * 3);
	assert_int_equal(s.keys[10], 99);

	/* A reader that fell behind by more than the ring: -ERANGE, and its
	 * cursor at the head; one just within it reads them all. */
	cur2 = cur;
	for (unsigned i = 0; i < IX_NOTES; i++)
		om_index_note_drop(ix, 1000 + i);
	s.n = 0;
	assert_int_equal(om_index_notes(ix, &cur2, seen, &s), 0);
	assert_int_equal(s.n, IX_NOTES);
	assert_int_equal(s.keys[IX_NOTES - 1], 1000 + IX_NOTES - 1);
	om_index_note_drop(ix, 7);
	s.n = 0;
	assert_int_equal(om_index_notes(ix, &cur, seen, &s), -ERANGE);
	assert_int_equal(cur, 11 + IX_NOTES + 1);
	assert_int_equal(s.n, 0);

	/* A note taken but never written: the reader stops before it. */
	h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, om_index_fd(ix), 0);
	assert_true(h != MAP_FAILED);
	h->notes_head++;
	om_index_note_drop(ix, 8);
	assert_int_equal(om_index_notes(ix, &cur, seen, &s), 0);
	assert_int_equal(cur, 11 + IX_NOTES + 1);
	assert_int_equal(s.n, 0);
	assert_int_equal(om_index_notes_head(ix), cur + 2);
	munmap(h, sizeof(*h));
	check_ok(ix);
	om_index_close(ix);
}

/*
 * Bytes per object: entry + bucket share + URI rounded up to 16 must be at
 * most 64 + the URI rounded up to 16, for every capacity (the worst bucket
 * share is just past a power of two) and every length.
 */
static void
test_bytes_per_object(void **state)
{
	static const uint32_t caps[] = { 1, 100, 1024, 1025, 65537, 1000000 };

	(void)state;
	for (size_t c = 0; c < OM_ARRAY_LEN(caps); c++) {
		om_index_t *ix = mk(caps[c], 1024, 1024 * 16);

		for (size_t len = 1; len <= 1024; len++) {
			size_t r16 = (len + 15) / 16 * 16;

			assert_true(om_index_object_bytes(ix, len) <= 64 + r16);
		}
		om_index_close(ix);
	}
	/* And the arena really consumes the rounded URI length, nothing more. */
	{
		om_index_t *ix = mk(1000, 1024, 0);
		om_ix_usage_t u;
		char uri[200];
		size_t expect = 0;

		memset(uri, 'q', sizeof(uri));
		for (int i = 0; i < 200; i++) {
			om_ix_obj_t o = obj(ix, 1);
			size_t len = (size_t)(i % 100) + 1;
			char head[16];

			/* A unique 10-byte head, then 'q' up to the length. */
			snprintf(head, sizeof(head), "/%09d", i);
			memcpy(uri, head, 10);
			len = len < 10 ? 10 : len;
			assert_int_equal(om_index_put(ix, uri, len, &o, OM_IX_UPSERT, NULL), 0);
			expect += 48 + (len + 15) / 16 * 16;
		}
		om_index_usage(ix, &u);
		assert_int_equal(u.arena_used, expect);
		print_message("index bytes per object: %zu + URI rounded up to 16 (a 13-byte URI: %zu)\n",
		    om_index_object_bytes(ix, 0), om_index_object_bytes(ix, 13));
		om_index_close(ix);
	}
}

/* A batch gives exactly what one lookup at a time gives. */
static void
test_lookup_batch(void **state)
{
	om_index_t *ix = mk(1000, 64, 0);
	char keys[OM_IX_BATCH_MAX][32], big[80];
	const void *u[OM_IX_BATCH_MAX];
	size_t l[OM_IX_BATCH_MAX];
	om_ix_obj_t o[OM_IX_BATCH_MAX];
	int rc[OM_IX_BATCH_MAX];

	(void)state;
	for (int k = 0; k < 500; k += 2) {
		om_ix_obj_t x = obj(ix, (uint64_t)k);

		snprintf(keys[0], sizeof(keys[0]), "/b/%d", k);
		assert_int_equal(put(ix, keys[0], &x, NULL), 0);
	}
	memset(big, 'x', sizeof(big));
	for (int base = 0; base < 500; base += OM_IX_BATCH_MAX) {
		for (int j = 0; j < OM_IX_BATCH_MAX; j++) {
			snprintf(keys[j], sizeof(keys[j]), "/b/%d", base + j);
			u[j] = keys[j];
			l[j] = strlen(keys[j]);
		}
		/* Lengths the index refuses are misses, not errors. */
		u[5] = big;
		l[5] = sizeof(big);
		l[6] = 0;
		om_index_lookup_batch(ix, OM_IX_BATCH_MAX, u, l, o, rc, OM_IX_TOUCH);
		for (int j = 0; j < OM_IX_BATCH_MAX; j++) {
			om_ix_obj_t one;
			int r1 = om_index_lookup(ix, u[j], l[j], &one, 0);

			assert_int_equal(rc[j], r1);
			if (j == 5 || j == 6) {
				assert_int_equal(rc[j], -ENOENT);
				continue;
			}
			assert_int_equal(rc[j], (base + j) % 2 == 0 && base + j < 500 ? 0 : -ENOENT);
			if (rc[j] == 0) {
				assert_int_equal(o[j].id, one.id);
				assert_int_equal(o[j].size, (uint64_t)(base + j));
			}
		}
	}
	om_index_close(ix);
}

/* Reads are counted up to hits_max and not at all without it. */
static void
test_hits_limit(void **state)
{
	om_ix_params_t p = { .capacity = 10, .max_uri = 64, .hits_max = 5 };
	om_index_t *ix;
	om_ix_obj_t o, got;

	(void)state;
	assert_int_equal(om_index_create(&p, &ix), 0);
	o = obj(ix, 1);
	assert_int_equal(put(ix, "/h", &o, NULL), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(om_index_lookup(ix, "/h", 2, NULL, OM_IX_TOUCH), 0);
	assert_int_equal(om_index_lookup(ix, "/h", 2, &got, 0), 0);
	assert_int_equal(got.hits, 5);
	om_index_close(ix);
	p.hits_max = 0;
	assert_int_equal(om_index_create(&p, &ix), 0);
	o = obj(ix, 1);
	assert_int_equal(put(ix, "/h", &o, NULL), 0);
	for (int i = 0; i < 20; i++)
		assert_int_equal(om_index_lookup(ix, "/h", 2, NULL, OM_IX_TOUCH), 0);
	assert_int_equal(om_index_lookup(ix, "/h", 2, &got, 0), 0);
	assert_int_equal(got.hits, 0);
	om_index_close(ix);
	p.hits_max = OM_IX_HITS_MAX + 1;
	assert_int_equal(om_index_create(&p, &ix), -EINVAL);
}

/* A segment made anew in place is an empty index with the new parameters:
 * nothing of the old one looks up, ids, counters and notes start over, the
 * release callback is gone, and a second mapping sees the new layout.
 * Parameters that need a bigger segment are refused and change nothing. */
static void
test_recreate(void **state)
{
	om_index_t *ix = mk(1000, 256, 0), *ix2;
	om_ix_params_t small = { .capacity = 10, .max_uri = 32, .stripes = 4, .hits_max = 3,
		.atime_res_ms = OM_IX_TICK_MS };
	om_ix_params_t big = { .capacity = 100000, .max_uri = 256 };
	released_t r = { { 0 }, 0 };
	om_ix_obj_t o, got;
	om_ix_usage_t u;
	char uri[40];

	(void)state;
	om_index_set_release(ix, on_release, &r);
	for (int i = 0; i < 500; i++) {
		o = obj(ix, 10);
		snprintf(uri, sizeof(uri), "/old/%d", i);
		assert_int_equal(put(ix, uri, &o, NULL), 0);
	}
	om_index_note_drop(ix, 7);
	assert_int_equal(om_index_recreate(ix, &big), -ENOSPC);
	assert_int_equal(om_index_lookup(ix, "/old/1", 6, &got, 0), 0);
	assert_int_equal(om_index_notes_head(ix), 1);

	assert_int_equal(om_index_recreate(ix, &small), 0);
	check_ok(ix);
	assert_int_equal(om_index_lookup(ix, "/old/1", 6, &got, 0), -ENOENT);
	om_index_usage(ix, &u);
	assert_int_equal(u.objects, 0);
	assert_int_equal(u.capacity, 10);
	assert_int_equal(u.arena_used, 0);
	assert_int_equal(om_index_notes_head(ix), 0);
	/* The new limits hold: URIs up to 32 bytes, 10 objects. */
	memset(uri, 'u', sizeof(uri));
	o = obj(ix, 5);
	assert_int_equal(o.id, 1);
	assert_int_equal(om_index_put(ix, uri, 33, &o, OM_IX_UPSERT, NULL), -EINVAL);
	assert_int_equal(om_index_put(ix, uri, 32, &o, OM_IX_UPSERT, NULL), 0);
	for (int i = 1; i <= 10; i++) {
		char u2[16];

		o = obj(ix, 1);
		snprintf(u2, sizeof(u2), "/n/%d", i);
		assert_int_equal(put(ix, u2, &o, NULL), i < 10 ? 0 : -ENOSPC);
	}
	/* Nothing is released to the old callback. */
	assert_int_equal(om_index_delete(ix, "/n/1", 4, 0, NULL), 0);
	assert_int_equal(r.n, 0);
	assert_int_equal(om_index_attach(dup(om_index_fd(ix)), &ix2), 0);
	assert_int_equal(om_index_lookup(ix2, "/n/5", 4, &got, 0), 0);
	assert_int_equal(om_index_lookup(ix2, "/n/1", 4, &got, 0), -ENOENT);
	assert_int_equal(om_index_lookup(ix2, "/old/1", 6, &got, 0), -ENOENT);
	om_index_close(ix2);
	check_ok(ix);
	om_index_close(ix);
}

/* ---- listing by prefix ---------------------------------------------------- */

#define LIST_N 3000

/* What a listing saw: per key, how many times (keys "/lsP/K": P the
 * prefix group 0..2, K 0..LIST_N-1), and anything it should not have. */
typedef struct {
	unsigned char seen[3][LIST_N];
	unsigned churn;     /* "/churn/..." entries */
	unsigned other;     /* anything else, or a field that does not fit */
	unsigned calls, entries;
	unsigned refuse_at; /* refuse the call with this number (0: never) */
} lsee_t;

static int
lsee_cb(void *arg, const om_ix_entry_t *e, unsigned n)
{
	lsee_t *s = arg;

	if (++s->calls == s->refuse_at)
		return OM_IX_LIST_REFUSE;
	for (unsigned i = 0; i < n; i++) {
		unsigned p, k;
		char u[64];

		s->entries++;
		if (e[i].len >= sizeof(u)) {
			s->other++;
			continue;
		}
		memcpy(u, e[i].uri, e[i].len);
		u[e[i].len] = '\0';
		if (strncmp(u, "/churn/", 7) == 0)
			s->churn++;
		else if (sscanf(u, "/ls%u/%u", &p, &k) == 2 && p < 3 && k < LIST_N &&
		    e[i].obj.size == p * 100000u + k % 1000)
			s->seen[p][k]++;
		else
			s->other++;
	}
	return OM_IX_LIST_MORE;
}

/* A whole listing in pages of at most `buckets` buckets; the calls it took. */
static unsigned
list_all(om_index_t *ix, const char *prefix, unsigned buckets, lsee_t *s)
{
	uint32_t cursor = 0;
	unsigned pages = 0;
	int rc;

	do {
		rc = om_index_list(ix, &cursor, prefix, strlen(prefix), buckets, 1u << 30, lsee_cb, s);
		assert_true(rc == 0 || rc == 1);
		pages++;
		assert_true(pages < 1000000);
	} while (rc == 0);
	assert_int_equal(cursor, 0);
	return pages;
}

static void
ls_put(om_index_t *ix, unsigned p, unsigned k)
{
	char uri[32];
	om_ix_obj_t o = obj(ix, p * 100000u + k % 1000);

	snprintf(uri, sizeof(uri), "/ls%u/%u", p, k);
	assert_true(put(ix, uri, &o, NULL) >= 0);
}

static void
test_list_prefix(void **state)
{
	om_index_t *ix = mk(4 * LIST_N, 64, 0);
	static lsee_t s;
	uint32_t cursor;
	unsigned pages;

	(void)state;
	for (unsigned p = 0; p < 3; p++)
		for (unsigned k = 0; k < LIST_N; k++)
			ls_put(ix, p, k);
	/* Everything, in one call and in pages of 7 buckets. */
	memset(&s, 0, sizeof(s));
	assert_int_equal(list_all(ix, "", 1u << 30, &s), 1);
	for (unsigned p = 0; p < 3; p++)
		for (unsigned k = 0; k < LIST_N; k++)
			assert_int_equal(s.seen[p][k], 1);
	assert_int_equal(s.other, 0);
	memset(&s, 0, sizeof(s));
	pages = list_all(ix, "", 7, &s);
	assert_int_equal(pages, (om_index_buckets(ix) + 6) / 7);
	assert_int_equal(s.entries, 3 * LIST_N);
	/* One prefix: exactly its objects. "/ls1/" is not "/ls1" + more digits. */
	memset(&s, 0, sizeof(s));
	(void)list_all(ix, "/ls1/", 100, &s);
	assert_int_equal(s.entries, LIST_N);
	for (unsigned k = 0; k < LIST_N; k++)
		assert_int_equal(s.seen[1][k], 1);
	/* A longer prefix: /ls2/12 matches 12, 120..129, 1200..1299. */
	memset(&s, 0, sizeof(s));
	(void)list_all(ix, "/ls2/12", 100, &s);
	assert_int_equal(s.entries, 1 + 10 + 100);
	assert_int_equal(s.seen[2][12] + s.seen[2][125] + s.seen[2][1299], 3);
	/* Nothing, and a prefix longer than any URI. */
	memset(&s, 0, sizeof(s));
	(void)list_all(ix, "/nothing", 1000, &s);
	assert_int_equal(s.entries + s.calls, 0);
	cursor = 0;
	{
		char longp[200];

		memset(longp, 'x', sizeof(longp));
		assert_int_equal(om_index_list(ix, &cursor, longp, sizeof(longp), 10, 10, lsee_cb, &s), 1);
	}
	/* A bucket refused stays for the next call: nothing lost, nothing twice. */
	memset(&s, 0, sizeof(s));
	s.refuse_at = 5;
	cursor = 0;
	assert_int_equal(om_index_list(ix, &cursor, "", 0, 1u << 30, 1u << 30, lsee_cb, &s), 0);
	assert_int_equal(s.calls, 5);
	assert_true(cursor > 0);
	s.refuse_at = 0;
	while (om_index_list(ix, &cursor, "", 0, 50, 1u << 30, lsee_cb, &s) == 0)
		;
	assert_int_equal(s.entries, 3 * LIST_N);
	for (unsigned p = 0; p < 3; p++)
		for (unsigned k = 0; k < LIST_N; k++)
			assert_int_equal(s.seen[p][k], 1);
	/* Stopping after a bucket; the object bound. */
	memset(&s, 0, sizeof(s));
	cursor = 0;
	assert_int_equal(om_index_list(ix, &cursor, "", 0, 1u << 30, 10, lsee_cb, &s), 0);
	assert_true(s.entries >= 10 && s.entries < 3 * LIST_N);
	/* A cursor that is not a bucket. */
	cursor = om_index_buckets(ix);
	assert_int_equal(om_index_list(ix, &cursor, "", 0, 10, 10, lsee_cb, &s), -EINVAL);
	assert_int_not_equal(om_index_tag(ix), 0);
	om_index_close(ix);
}

/*
 * A listing in small pages while another process replaces, deletes and
 * re-inserts objects: every object that exists throughout (group 0, and
 * group 1, which is replaced again and again: a replace keeps its URI in
 * its bucket) is seen exactly once, one that comes and goes (group 2) at
 * most once, and nothing else appears.
 */
static void
test_list_under_writers(void **state)
{
	om_index_t *ix = mk(4 * LIST_N + 1000, 64, 0);
	static lsee_t s;
	volatile uint32_t *stop;
	pid_t pid;

	(void)state;
	stop = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_true(stop != MAP_FAILED);
	*stop = 0;
	for (unsigned p = 0; p < 3; p++)
		for (unsigned k = 0; k < LIST_N; k++)
			ls_put(ix, p, k);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		uint64_t r = 42;

		while (!__atomic_load_n(stop, __ATOMIC_ACQUIRE)) {
			unsigned k = (unsigned)(om_test_rand(&r) % LIST_N);
			char uri[32];

			ls_put(ix, 1, k); /* a replace */
			snprintf(uri, sizeof(uri), "/ls2/%u", k);
			if (om_test_rand(&r) & 1)
				(void)om_index_delete(ix, uri, strlen(uri), 0, NULL);
			else
				ls_put(ix, 2, k);
			snprintf(uri, sizeof(uri), "/churn/%u", k);
			if (om_test_rand(&r) & 1) {
				om_ix_obj_t o = obj(ix, 1);

				(void)put(ix, uri, &o, NULL);
			} else {
				(void)om_index_delete(ix, uri, strlen(uri), 0, NULL);
			}
		}
		/* The child's mapping and handle (valgrind checks its leaks). */
		om_index_close(ix);
		_exit(0);
	}
	for (int round = 0; round < 20; round++) {
		memset(&s, 0, sizeof(s));
		(void)list_all(ix, "", 3, &s);
		assert_int_equal(s.other, 0);
		for (unsigned k = 0; k < LIST_N; k++) {
			assert_int_equal(s.seen[0][k], 1);
			assert_int_equal(s.seen[1][k], 1);
			assert_true(s.seen[2][k] <= 1);
		}
	}
	__atomic_store_n(stop, 1, __ATOMIC_RELEASE);
	assert_int_equal(om_test_wait(pid), 0);
	check_ok(ix);
	munmap((void *)stop, 4096);
	om_index_close(ix);
}

static void
test_bad_params(void **state)
{
	om_ix_params_t p = { .capacity = 0, .max_uri = 64 };
	om_index_t *ix = NULL;

	(void)state;
	assert_int_equal(om_index_create(&p, &ix), -EINVAL);
	p.capacity = 10;
	p.max_uri = OM_IX_URI_MAX + 1;
	assert_int_equal(om_index_create(&p, &ix), -EINVAL);
	p.max_uri = 64;
	p.stripes = 3;
	assert_int_equal(om_index_create(&p, &ix), -EINVAL);
	p.stripes = 0;
	p.arena_bytes = 16; /* smaller than one URI of the maximum length */
	assert_int_equal(om_index_create(&p, &ix), -EINVAL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_lookup_replace_delete),
		cmocka_unit_test(test_put_match),
		cmocka_unit_test(test_uri_limits),
		cmocka_unit_test(test_full_index_refuses),
		cmocka_unit_test(test_arena_full_and_reuse),
		cmocka_unit_test(test_stale_write_is_dropped),
		cmocka_unit_test(test_release_callback),
		cmocka_unit_test(test_accounting_and_flags),
		cmocka_unit_test(test_iterate),
		cmocka_unit_test(test_sample_prefers_least_recent),
		cmocka_unit_test(test_shared_across_fork),
		cmocka_unit_test(test_drop_notes),
		cmocka_unit_test(test_bytes_per_object),
		cmocka_unit_test(test_lookup_batch),
		cmocka_unit_test(test_hits_limit),
		cmocka_unit_test(test_recreate),
		cmocka_unit_test(test_bad_params),
		cmocka_unit_test(test_list_prefix),
		cmocka_unit_test(test_list_under_writers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
