/*
 * Owner death is repaired, not just unlocked. For every mutation the index
 * makes, a child runs it and stops at step k (the test hook pauses it
 * there); the parent kills it with SIGKILL. The parent's next lock gets
 * EOWNERDEAD and repairs; the consistency check must pass, every other
 * entry must be intact and the one in flight wholly old or wholly new.
 * k runs from 1 until the operation completes without reaching k.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/om_core.h"
#include "index/om_index.h"
#include "om_test.h"

#define NKEYS 40

enum op {
	OP_INSERT,       /* new URI, space from the arena's bump region */
	OP_INSERT_REUSE, /* new URI, a freed block of the same size */
	OP_REPLACE,
	OP_DELETE,
	OP_DELETE_SLOT,  /* eviction path */
	OP_SET_COPY,     /* promotion bookkeeping */
	OP_COUNT
};

static const char *const op_names[] = {
	"insert", "insert-reuse", "replace", "delete", "delete-slot", "set-copy",
};

/* Shared with the children: objects released by whoever released them. */
typedef struct {
	uint64_t ids[256];
	uint32_t n;
} shared_rel_t;

static shared_rel_t *rel;

static void
on_release(void *arg, const om_ix_obj_t *o)
{
	(void)arg;
	uint32_t i = __atomic_fetch_add(&rel->n, 1, __ATOMIC_SEQ_CST);

	if (i < 256)
		rel->ids[i] = o->id;
}

typedef struct {
	om_index_t *ix;
	om_ix_obj_t keys[NKEYS];
	om_ix_obj_t newobj;
	char target[64];
	int target_key; /* index into keys of the target, or -1 for a new URI */
} world_t;

static void
key_uri(char *buf, size_t n, int k)
{
	/* Lengths vary so that URIs fall in several size classes. */
	snprintf(buf, n, "/crash/%d/%.*s", k, k % 23, "abcdefghijklmnopqrstuvwxyz");
}

static om_ix_obj_t
mkobj(om_index_t *ix, uint64_t size, uint32_t flags)
{
	om_ix_obj_t o = { 0 };

	o.id = om_index_next_id(ix);
	o.size = size;
	o.crc = (uint32_t)(o.id * 0x9e3779b1u);
	o.expires = (int64_t)(2000000000 + o.id);
	o.flags = flags;
	return o;
}

/* Builds the same starting state for every k. */
static void
world_init(world_t *w, enum op op)
{
	om_ix_params_t p = { .capacity = 64, .max_uri = 128, .stripes = 4 };
	char uri[64];

	memset(w, 0, sizeof(*w));
	assert_int_equal(om_index_create(&p, &w->ix), 0);
	om_index_set_release(w->ix, on_release, NULL);
	for (int k = 0; k < NKEYS; k++) {
		key_uri(uri, sizeof(uri), k);
		w->keys[k] = mkobj(w->ix, 1000 + (uint64_t)k, (k % 5 == 0) ? OM_IX_F_EPHEMERAL : 0);
		assert_int_equal(om_index_put(w->ix, uri, strlen(uri), &w->keys[k], OM_IX_INSERT, NULL), 0);
		assert_int_equal(om_index_lookup(w->ix, uri, strlen(uri), &w->keys[k], 0), 0);
	}
	w->target_key = -1;
	switch (op) {
	case OP_INSERT:
		snprintf(w->target, sizeof(w->target), "/crash/new-object");
		break;
	case OP_INSERT_REUSE: {
		/* Free a 2-granule URI; the new one has the same class. */
		om_ix_obj_t o = mkobj(w->ix, 1, 0);

		assert_int_equal(om_index_put(w->ix, "/crash/spare/0123456789", 23, &o, OM_IX_INSERT, NULL), 0);
		assert_int_equal(om_index_delete(w->ix, "/crash/spare/0123456789", 23, 0, NULL), 0);
		snprintf(w->target, sizeof(w->target), "/crash/reused/abcdefghi");
		break;
	}
	case OP_REPLACE:
	case OP_DELETE:
	case OP_DELETE_SLOT:
	case OP_SET_COPY:
		w->target_key = 17;
		key_uri(w->target, sizeof(w->target), 17);
		break;
	default:
		break;
	}
	w->newobj = mkobj(w->ix, 777777, 0);
	rel->n = 0;
}

static int
run_op(world_t *w, enum op op)
{
	size_t len = strlen(w->target);
	om_ix_obj_t *t = w->target_key >= 0 ? &w->keys[w->target_key] : NULL;

	switch (op) {
	case OP_INSERT:
	case OP_INSERT_REUSE:
		return om_index_put(w->ix, w->target, len, &w->newobj, OM_IX_INSERT, NULL);
	case OP_REPLACE:
		return om_index_put(w->ix, w->target, len, &w->newobj, OM_IX_UPSERT, NULL) == 1 ? 0 : -1;
	case OP_DELETE:
		return om_index_delete(w->ix, w->target, len, 0, NULL);
	case OP_DELETE_SLOT:
		return t == NULL ? -1 : om_index_delete_slot(w->ix, t->slot, t->id, NULL);
	case OP_SET_COPY:
		return t == NULL ? -1 : om_index_update_flags(w->ix, t->slot, t->id, OM_IX_F_COPY, 0);
	default:
		return -1;
	}
}

static void
assert_released_only(uint64_t id)
{
	assert_true(rel->n >= 1 && rel->n <= 3);
	for (uint32_t i = 0; i < rel->n; i++)
		assert_int_equal(rel->ids[i], id);
}

static int
same(const om_ix_obj_t *a, const om_ix_obj_t *b)
{
	return a->id == b->id && a->size == b->size && a->crc == b->crc &&
	    a->expires == b->expires;
}

/* Returns 1 if the state after repair is the completed op, 0 if untouched. */
static int
verify(world_t *w, enum op op)
{
	char uri[64], err[256];
	om_ix_obj_t got;
	int done = -1, rc;
	om_ix_usage_t u;

	rc = om_index_check(w->ix, err, sizeof(err));
	if (rc != 0)
		fail_msg("%s: consistency check after repair: %s", op_names[op], err);
	for (int k = 0; k < NKEYS; k++) {
		if (k == w->target_key)
			continue;
		key_uri(uri, sizeof(uri), k);
		assert_int_equal(om_index_lookup(w->ix, uri, strlen(uri), &got, 0), 0);
		assert_true(same(&got, &w->keys[k]));
		assert_int_equal(got.flags, w->keys[k].flags);
	}
	rc = om_index_lookup(w->ix, w->target, strlen(w->target), &got, 0);
	switch (op) {
	case OP_INSERT:
	case OP_INSERT_REUSE:
		if (rc == 0) {
			assert_true(same(&got, &w->newobj));
			done = 1;
		} else {
			done = 0;
		}
		assert_int_equal(rel->n, 0);
		break;
	case OP_REPLACE:
		assert_int_equal(rc, 0);
		if (same(&got, &w->newobj)) {
			done = 1;
			/* The old object was released by the victim or by the
			 * repair (at least once: unlinking twice is harmless),
			 * and nothing else was. */
			assert_released_only(w->keys[w->target_key].id);
		} else {
			assert_true(same(&got, &w->keys[w->target_key]));
			assert_int_equal(rel->n, 0);
			done = 0;
		}
		break;
	case OP_DELETE:
	case OP_DELETE_SLOT:
		if (rc == 0) {
			assert_true(same(&got, &w->keys[w->target_key]));
			assert_int_equal(rel->n, 0);
			done = 0;
		} else {
			assert_released_only(w->keys[w->target_key].id);
			done = 1;
		}
		break;
	case OP_SET_COPY:
		assert_int_equal(rc, 0);
		assert_true(same(&got, &w->keys[w->target_key]));
		done = (got.flags & OM_IX_F_COPY) ? 1 : 0;
		om_index_usage(w->ix, &u);
		assert_int_equal(u.count[OM_IX_CLASS_COPY], (uint64_t)done);
		break;
	default:
		break;
	}
	/* The repaired index keeps working: the target can be rewritten. */
	{
		om_ix_obj_t again = mkobj(w->ix, 5, 0);

		rc = om_index_put(w->ix, w->target, strlen(w->target), &again, OM_IX_UPSERT, NULL);
		assert_true(rc == 0 || rc == 1);
		assert_int_equal(om_index_lookup(w->ix, w->target, strlen(w->target), &got, 0), 0);
		assert_true(same(&got, &again));
		rc = om_index_check(w->ix, err, sizeof(err));
		if (rc != 0)
			fail_msg("%s: check after a new write: %s", op_names[op], err);
	}
	return done;
}

/* What a restart finds: the segment as the dead process left it, in a
 * file of its own (a copy), attached and recovered (om_index_recover)
 * before any lock is taken. */
static om_index_t *
copy_segment(om_index_t *ix)
{
	int from = om_index_fd(ix), to = memfd_create("crash-copy", MFD_CLOEXEC);
	static char buf[65536];
	om_index_t *copy;
	off_t off = 0;
	ssize_t n;

	assert_true(to >= 0);
	while ((n = pread(from, buf, sizeof(buf), off)) > 0) {
		assert_int_equal(pwrite(to, buf, (size_t)n, off), n);
		off += n;
	}
	assert_int_equal(om_index_attach(to, &copy), 0);
	om_index_set_release(copy, on_release, NULL);
	assert_int_equal(om_index_recover(copy), 0);
	return copy;
}

/* One crash at step k. Returns 1 if the child was stopped and killed, 0 if
 * the operation finished before reaching step k. */
static int
crash_at(enum op op, unsigned k, int *completed)
{
	world_t w;
	int fds[2], status;
	char c = 0;
	pid_t pid;
	om_ix_usage_t u;

	world_init(&w, op);
	assert_int_equal(pipe(fds), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int rc;

		om_test_pause_t pz = { fds[1], k };

		close(fds[0]);
		om_index_set_hook(w.ix, om_test_pause_hook, &pz);
		rc = run_op(&w, op);
		c = rc == 0 ? 'D' : 'E';
		if (write(fds[1], &c, 1) != 1)
			_exit(3);
		_exit(0);
	}
	close(fds[1]);
	assert_int_equal(read(fds[0], &c, 1), 1);
	close(fds[0]);
	if (c == 'x')
		kill(pid, SIGKILL);
	status = om_test_wait(pid);
	if (c != 'x') {
		assert_int_equal(c, 'D');
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
		assert_int_equal(verify(&w, op), 1);
		om_index_close(w.ix);
		return 0;
	}
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* A restart's attach settles it as the lock repair does. */
	{
		world_t w2 = w;
		uint32_t released = rel->n;
		int done;

		w2.ix = copy_segment(w.ix);
		done = verify(&w2, op);
		om_index_close(w2.ix);
		rel->n = released;
		assert_int_equal(verify(&w, op), done);
		*completed += done;
	}
	/* The victim held at least one lock when it died. */
	om_index_usage(w.ix, &u);
	assert_true(u.owner_deaths >= 1);
	om_index_close(w.ix);
	return 1;
}

static void
crash_every_step(enum op op)
{
	unsigned k;
	int completed = 0;

	for (k = 1; crash_at(op, k, &completed); k++)
		;
	/* Every step is a crash point, and the op has more than a few. */
	assert_true(k - 1 >= 5);
	print_message("%-13s %3u crash points: %d completed by repair, %u rolled back\n",
	    op_names[op], k - 1, completed, k - 1 - (unsigned)completed);
}

static void test_crash_insert(void **s) { (void)s; crash_every_step(OP_INSERT); }
static void test_crash_insert_reuse(void **s) { (void)s; crash_every_step(OP_INSERT_REUSE); }
static void test_crash_replace(void **s) { (void)s; crash_every_step(OP_REPLACE); }
static void test_crash_delete(void **s) { (void)s; crash_every_step(OP_DELETE); }
static void test_crash_delete_slot(void **s) { (void)s; crash_every_step(OP_DELETE_SLOT); }
static void test_crash_set_copy(void **s) { (void)s; crash_every_step(OP_SET_COPY); }

/*
 * A second death during repair: the repairer itself is killed at each step
 * of its repair, and a third process must still end with a consistent
 * index.
 */
static void
test_crash_during_repair(void **state)
{
	unsigned points = 0;

	(void)state;
	for (unsigned k1 = 6; k1 <= 30; k1 += 4) {
		for (unsigned k2 = 1;; k2++) {
			world_t w;
			int fds[2];
			char c = 0;
			pid_t pid;
			char err[256];

			world_init(&w, OP_REPLACE);
			/* First victim: dies in the middle of the replace. */
			assert_int_equal(pipe(fds), 0);
			pid = fork();
			assert_true(pid >= 0);
			if (pid == 0) {
				om_test_pause_t pz = { fds[1], k1 };

				om_index_set_hook(w.ix, om_test_pause_hook, &pz);
				(void)run_op(&w, OP_REPLACE);
				c = 'D';
				if (write(fds[1], &c, 1) != 1)
					_exit(3);
				_exit(0);
			}
			assert_int_equal(read(fds[0], &c, 1), 1);
			if (c == 'x')
				kill(pid, SIGKILL);
			om_test_wait(pid);
			/* Second victim: repairs, and dies at step k2 of that. */
			pid = fork();
			assert_true(pid >= 0);
			if (pid == 0) {
				om_test_pause_t pz = { fds[1], k2 };
				char e[8];

				om_index_set_hook(w.ix, om_test_pause_hook, &pz);
				(void)om_index_check(w.ix, e, sizeof(e));
				c = 'D';
				if (write(fds[1], &c, 1) != 1)
					_exit(3);
				_exit(0);
			}
			assert_int_equal(read(fds[0], &c, 1), 1);
			if (c == 'x')
				kill(pid, SIGKILL);
			om_test_wait(pid);
			close(fds[0]);
			close(fds[1]);
			if (om_index_check(w.ix, err, sizeof(err)) != 0)
				fail_msg("k1=%u k2=%u: %s", k1, k2, err);
			(void)verify(&w, OP_REPLACE);
			om_index_close(w.ix);
			points++;
			if (c != 'x')
				break;
		}
	}
	print_message("double deaths: %u combinations\n", points);
	assert_true(points > 20);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crash_insert),
		cmocka_unit_test(test_crash_insert_reuse),
		cmocka_unit_test(test_crash_replace),
		cmocka_unit_test(test_crash_delete),
		cmocka_unit_test(test_crash_delete_slot),
		cmocka_unit_test(test_crash_set_copy),
		cmocka_unit_test(test_crash_during_repair),
	};

	rel = mmap(NULL, sizeof(*rel), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (rel == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
