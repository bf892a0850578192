/*
 * Crashes: a worker killed with SIGKILL under load is replaced, clients see
 * at most one retried request each and the index stays consistent; the
 * whole daemon killed with SIGKILL during PUTs comes back with every
 * acknowledged object byte for byte and no partial object.
 */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_packs.h"
#include "om_load.h"
#include "om_test.h"

#define KEYS 200

static om_daemon_t D;

typedef struct {
	pid_t gone;
	int want;
} replaced_t;

static int
worker_replaced(void *arg)
{
	replaced_t *r = arg;
	pid_t now[64];
	int n = om_daemon_children(&D, now, 64, "worker process");

	for (int i = 0; i < n; i++)
		if (now[i] == r->gone)
			return 0;
	return n == r->want;
}

static void
test_worker_killed_under_load(void **state)
{
	om_load_result_t res;
	om_load_t *load;
	pid_t workers[64];
	replaced_t r = { 0, 2 };
	char err[256];
	uint64_t ops;

	(void)state;
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_load_preload(D.sock, KEYS), 0);
	load = om_load_start(D.sock, 6, KEYS, 30);
	while (om_load_ops(load) < 2000)
		usleep(5000);
	assert_int_equal(om_daemon_children(&D, workers, 64, "worker process"), 2);
	r.gone = workers[0];
	assert_int_equal(kill(r.gone, SIGKILL), 0);
	if (!om_wait_until(worker_replaced, &r, 10000))
		fail_msg("the killed worker was not replaced:\n%s", om_daemon_log(&D));
	ops = om_load_ops(load);
	while (om_load_ops(load) < ops + 2000)
		usleep(5000);
	om_load_stop(load, &res);
	print_message("worker killed under load: %llu requests, %llu failed, %llu wrong, "
	    "at most %llu re-sent by one client (%llu in all)\n", (unsigned long long)res.ops,
	    (unsigned long long)res.failures, (unsigned long long)res.wrong,
	    (unsigned long long)res.retries_max, (unsigned long long)res.retries_total);
	if (res.failures || res.wrong)
		fail_msg("%s", res.why);
	assert_true(res.retries_max <= 1);
	if (om_daemon_check_index(&D, err, sizeof(err)) != 0)
		fail_msg("index after the worker's death: %s", err);
	assert_non_null(strstr(om_daemon_log(&D), "killed by signal 9; restarting it"));
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/* A worker that keeps dying is restarted with growing pauses, not in a
 * storm. */
static void
test_no_respawn_storm(void **state)
{
	pid_t w[64];
	int kills = 0;
	struct timespec t0, t;

	(void)state;
	om_daemon_init(&D, 1, NULL);
	om_daemon_start(&D);
	/* 3 s by the clock (not by iterations: on a loaded machine each one
	 * takes longer than its 20 ms sleep). */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (t = t0; (t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 3000 && kills < 12;
	    clock_gettime(CLOCK_MONOTONIC, &t)) {
		if (om_daemon_children(&D, w, 64, "worker process") == 1) {
			kill(w[0], SIGKILL);
			kills++;
		}
		usleep(20000);
	}
	/* Within 3 s the pauses (250 ms, 500 ms, 1 s, ...) allow only a few. */
	print_message("a worker killed as soon as it started: %d restarts in 3 s\n", kills);
	assert_true(kills >= 3 && kills < 12);
	assert_non_null(strstr(om_daemon_log(&D), "after a pause"));
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

typedef struct {
	uint32_t acked[KEYS];   /* last acknowledged version, 0 = the preload */
	int32_t inflight_key;
	uint32_t inflight_version;
	uint64_t puts;
} writes_t;

static void
writer(writes_t *w, const char *sock)
{
	om_client_t *c = NULL;
	unsigned char *buf = malloc(om_load_size(0));
	uint64_t rnd = (uint64_t)getpid();
	uint32_t version = 1;

	if (om_client_connect(sock, 0, &c) != 0)
		_exit(1);
	for (;;) {
		unsigned key = (unsigned)(om_test_rand(&rnd) % KEYS);
		char uri[64], meta[64];
		om_put_opts_t po = { .meta = meta };

		version++;
		snprintf(uri, sizeof(uri), "/load/%u", key);
		snprintf(meta, sizeof(meta), "key=%u version=%u", key, version);
		po.meta_len = (uint32_t)strlen(meta);
		om_load_fill(buf, key, version);
		w->inflight_version = version;
		__atomic_store_n(&w->inflight_key, (int32_t)key, __ATOMIC_SEQ_CST);
		if (om_client_put(c, uri, buf, om_load_size(key), &po, NULL) != 0)
			_exit(0); /* the daemon is gone */
		w->acked[key] = version;
		__atomic_store_n(&w->inflight_key, -1, __ATOMIC_SEQ_CST);
		__atomic_add_fetch(&w->puts, 1, __ATOMIC_SEQ_CST);
	}
}

static void
test_daemon_killed_during_puts(void **state)
{
	writes_t *w = mmap(NULL, sizeof(*w), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	unsigned char *want = malloc(om_load_size(0));
	pid_t kids[64], wpid;
	om_client_t *c = NULL;
	int n, present = 0;

	(void)state;
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_load_preload(D.sock, KEYS), 0);
	memset(w, 0, sizeof(*w));
	w->inflight_key = -1;
	wpid = fork();
	assert_true(wpid >= 0);
	if (wpid == 0)
		writer(w, D.sock);
	while (__atomic_load_n(&w->puts, __ATOMIC_SEQ_CST) < 1500)
		usleep(2000);
	/* Every process of the daemon at once. */
	n = om_daemon_children(&D, kids, 64, NULL);
	om_daemon_kill(&D, SIGKILL);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	assert_true(om_daemon_wait(&D, 5000) >= 0);
	om_test_wait(wpid);
	for (int i = 0; i < 100; i++) {
		if (om_daemon_children(&D, kids, 64, NULL) == 0)
			break;
		usleep(10000);
	}
	/* The socket and pid files are left behind by a SIGKILL: a new
	 * daemon takes them over. */
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	for (unsigned k = 0; k < KEYS; k++) {
		char uri[64], meta[64] = "";
		unsigned key = 0, v = 0;
		om_object_t o;

		snprintf(uri, sizeof(uri), "/load/%u", k);
		if (om_client_get(c, uri, OM_MODE_COPY, OM_GET_WANT_META, &o) != 0)
			fail_msg("%s lost after the crash: %s", uri, om_client_message(c));
		memcpy(meta, o.meta, o.meta_len < 63 ? o.meta_len : 63);
		assert_int_equal(sscanf(meta, "key=%u version=%u", &key, &v), 2);
		assert_int_equal(key, k);
		/* The acknowledged version, or the one in flight at the kill. */
		if (v != w->acked[k] && !((int32_t)k == w->inflight_key && v == w->inflight_version))
			fail_msg("%s: version %u after the crash, acknowledged %u", uri, v, w->acked[k]);
		om_load_fill(want, k, v);
		assert_int_equal(o.len, om_load_size(k));
		assert_memory_equal(o.data, want, o.len);
		present++;
		om_object_free(&o);
	}
	/* Nothing else: one file or one live pack entry per object in the
	 * tiers (the odd keys, 6000 bytes, are packed), no temporary file, no
	 * entry of a PUT the kill cut short left live. */
	{
		char objects[300];

		snprintf(objects, sizeof(objects), "%s/objects", D.dir);
		assert_int_equal(om_packs_objects(objects, OM_TIER_PERSISTENT) + om_packs_objects(D.mem, OM_TIER_MEMORY),
		    present);
	}
	print_message("daemon killed after %llu acknowledged PUTs: all %d objects back, byte for byte\n",
	    (unsigned long long)w->puts, present);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	munmap(w, sizeof(*w));
	free(want);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_worker_killed_under_load),
		cmocka_unit_test(test_no_respawn_storm),
		cmocka_unit_test(test_daemon_killed_during_puts),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
