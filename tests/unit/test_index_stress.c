/*
 * Several processes hammer one index with mixed operations on overlapping
 * keys. Every read is checked for a torn record; at the end the index must
 * pass its consistency check and each key must hold what a model allows:
 * the effect of the last operation some process made on it. A second test
 * also kills workers with SIGKILL while they run, so that lock repair
 * happens under load; a killed worker's operation in flight counts as
 * either done or not done.
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

#define NKEYS    500
#define MAXPROCS 64
#define OPS      100000
#define V_NONE   0ull
#define V_DEL    UINT64_MAX

typedef struct {
	uint64_t last[MAXPROCS][NKEYS]; /* id of the last put, V_DEL, or V_NONE */
	int32_t inflight_key[MAXPROCS];
	uint64_t inflight_val[MAXPROCS];
	uint64_t ops[MAXPROCS];
	uint64_t torn[MAXPROCS];
	uint64_t enospc[MAXPROCS];
	uint32_t killed[MAXPROCS];
	uint32_t stop;
} model_t;

static model_t *m;

static void
key_uri(char *buf, size_t n, int k)
{
	snprintf(buf, n, "/stress/%d%.*s", k, k % 40, "----------------------------------------");
}

static om_ix_obj_t
val_obj(om_index_t *ix, int k)
{
	om_ix_obj_t o = { 0 };

	o.id = om_index_next_id(ix);
	o.size = (uint64_t)k << 32 | (o.id & 0xffffffffu);
	o.crc = (uint32_t)(o.id * 0x9e3779b1u);
	o.expires = (int64_t)o.id;
	o.flags = (o.id % 3 == 0) ? OM_IX_F_EPHEMERAL : 0;
	return o;
}

/* Every field of a record read back belongs to one write of this key. */
static int
intact(const om_ix_obj_t *o, int k)
{
	return o->size == ((uint64_t)k << 32 | (o->id & 0xffffffffu)) &&
	    o->crc == (uint32_t)(o->id * 0x9e3779b1u) &&
	    o->expires == (int64_t)o->id &&
	    (o->flags & OM_IX_F_EPHEMERAL) == ((o->id % 3 == 0) ? OM_IX_F_EPHEMERAL : 0u);
}

static void
begin(int p, int k, uint64_t v)
{
	__atomic_store_n(&m->inflight_val[p], v, __ATOMIC_SEQ_CST);
	__atomic_store_n(&m->inflight_key[p], k, __ATOMIC_SEQ_CST);
}

static void
end(int p, int k, uint64_t v, int took_effect)
{
	if (took_effect)
		__atomic_store_n(&m->last[p][k], v, __ATOMIC_SEQ_CST);
	__atomic_store_n(&m->inflight_key[p], -1, __ATOMIC_SEQ_CST);
}

static void
worker(om_index_t *ix, int p, uint64_t nops)
{
	uint64_t rnd = 0x1234567ull * (uint64_t)(p + 1) + (uint64_t)getpid();
	char uri[80];

	for (uint64_t i = 0; nops == 0 || i < nops; i++) {
		int k = (int)(om_test_rand(&rnd) % NKEYS);
		unsigned r = (unsigned)(om_test_rand(&rnd) % 100);
		size_t len;
		om_ix_obj_t o, got;
		int rc;

		if (nops == 0 && __atomic_load_n(&m->stop, __ATOMIC_RELAXED))
			break;
		key_uri(uri, sizeof(uri), k);
		len = strlen(uri);
		if (r < 40) {
			if (om_index_lookup(ix, uri, len, &got, OM_IX_TOUCH) == 0 && !intact(&got, k))
				m->torn[p]++;
		} else if (r < 75) {
			o = val_obj(ix, k);
			begin(p, k, o.id);
			rc = om_index_put(ix, uri, len, &o, OM_IX_UPSERT, NULL);
			if (rc == -ENOSPC)
				m->enospc[p]++;
			end(p, k, o.id, rc == 0 || rc == 1 || rc == -ESTALE);
		} else if (r < 88) {
			begin(p, k, V_DEL);
			(void)om_index_delete(ix, uri, len, 0, NULL);
			end(p, k, V_DEL, 1);
		} else if (r < 94) {
			if (om_index_lookup(ix, uri, len, &got, 0) == 0) {
				begin(p, k, V_DEL);
				rc = om_index_delete_slot(ix, got.slot, got.id, NULL);
				end(p, k, V_DEL, rc == 0);
			}
		} else {
			if (om_index_lookup(ix, uri, len, &got, 0) == 0) {
				if (got.flags & OM_IX_F_COPY)
					(void)om_index_update_flags(ix, got.slot, got.id, 0, OM_IX_F_COPY);
				else
					(void)om_index_update_flags(ix, got.slot, got.id, OM_IX_F_COPY, 0);
			}
		}
		m->ops[p]++;
	}
}

static om_index_t *
mk(void)
{
	om_ix_params_t p = { .capacity = 1024, .max_uri = 128, .stripes = 8 };
	om_index_t *ix = NULL;

	assert_int_equal(om_index_create(&p, &ix), 0);
	memset(m, 0, sizeof(*m));
	for (int i = 0; i < MAXPROCS; i++)
		m->inflight_key[i] = -1;
	return ix;
}

static int
candidate(uint64_t v, int present, uint64_t id)
{
	if (v == V_NONE)
		return 0;
	if (v == V_DEL)
		return !present;
	return present && v == id;
}

/* The final state of each key must be the effect of some process's last
 * operation on it (or of a killed process's operation in flight). */
static void
check_model(om_index_t *ix, int nprocs)
{
	char uri[80], err[256];
	uint64_t present_count = 0;
	om_ix_usage_t u;
	int rc;

	rc = om_index_check(ix, err, sizeof(err));
	if (rc != 0)
		fail_msg("consistency check: %s", err);
	for (int k = 0; k < NKEYS; k++) {
		om_ix_obj_t got;
		int present, ok = 0, touched = 0;

		key_uri(uri, sizeof(uri), k);
		present = om_index_lookup(ix, uri, strlen(uri), &got, 0) == 0;
		if (present) {
			present_count++;
			assert_true(intact(&got, k));
		}
		for (int p = 0; p < nprocs; p++) {
			if (m->last[p][k] != V_NONE)
				touched = 1;
			ok |= candidate(m->last[p][k], present, present ? got.id : 0);
			if (m->killed[p] && m->inflight_key[p] == k) {
				touched = 1;
				ok |= candidate(m->inflight_val[p], present, present ? got.id : 0);
			}
		}
		if (!touched)
			ok = !present;
		if (!ok)
			fail_msg("key %d: final state (%s id %llu) is no process's last write", k,
			    present ? "present" : "absent", present ? (unsigned long long)got.id : 0ull);
	}
	om_index_usage(ix, &u);
	assert_int_equal(u.objects, present_count);
}

static void
test_stress_processes(void **state)
{
	enum { NPROC = 4 };
	om_index_t *ix = mk();
	pid_t pids[NPROC];
	uint64_t total = 0, torn = 0;

	(void)state;
	for (int p = 0; p < NPROC; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			worker(ix, p, OPS);
			_exit(0);
		}
	}
	for (int p = 0; p < NPROC; p++) {
		int st = om_test_wait(pids[p]);

		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
		total += m->ops[p];
		torn += m->torn[p];
	}
	assert_int_equal(total, (uint64_t)NPROC * OPS);
	assert_int_equal(torn, 0);
	check_model(ix, NPROC);
	print_message("%d processes x %d operations on %d keys: consistent\n", NPROC, OPS, NKEYS);
	om_index_close(ix);
}

static void
test_stress_with_kills(void **state)
{
	enum { LIVE = 3, KILLS = 40 };
	om_index_t *ix = mk();
	pid_t pids[MAXPROCS];
	int slot_of[LIVE], next = 0, kills = 0;
	uint64_t rnd = 99, total = 0, torn = 0;
	om_ix_usage_t u;

	(void)state;
	for (int i = 0; i < LIVE; i++) {
		slot_of[i] = next;
		pids[next] = fork();
		assert_true(pids[next] >= 0);
		if (pids[next] == 0) {
			worker(ix, slot_of[i], 0);
			_exit(0);
		}
		next++;
	}
	while (kills < KILLS) {
		int i = (int)(om_test_rand(&rnd) % LIVE), p = slot_of[i];

		usleep(2000 + (useconds_t)(om_test_rand(&rnd) % 8000));
		kill(pids[p], SIGKILL);
		om_test_wait(pids[p]);
		m->killed[p] = 1;
		kills++;
		slot_of[i] = next;
		pids[next] = fork();
		assert_true(pids[next] >= 0);
		if (pids[next] == 0) {
			worker(ix, slot_of[i], 0);
			_exit(0);
		}
		next++;
	}
	usleep(20000);
	__atomic_store_n(&m->stop, 1, __ATOMIC_SEQ_CST);
	for (int i = 0; i < LIVE; i++) {
		int st = om_test_wait(pids[slot_of[i]]);

		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	for (int p = 0; p < next; p++) {
		total += m->ops[p];
		torn += m->torn[p];
	}
	assert_int_equal(torn, 0);
	check_model(ix, next);
	om_index_usage(ix, &u);
	print_message("%d workers killed during %llu operations; %llu lock owner deaths repaired\n",
	    kills, (unsigned long long)total, (unsigned long long)u.owner_deaths);
	om_index_close(ix);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_stress_processes),
		cmocka_unit_test(test_stress_with_kills),
	};

	m = mmap(NULL, sizeof(*m), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
