/*
 * Reloads under load: 20 SIGHUPs while client processes run GET/PUT loops
 * through libobjmapper: zero failed requests, zero wrong bytes, a new
 * generation of workers each time; a broken configuration changes nothing
 * and the daemon keeps answering. Then a storm of SIGHUPs on a loaded
 * machine while clients run pipelined batches of GETs: none fails either.
 * A daemon started with a relative -f reloads that file; a SIGHUP that
 * comes with a SIGQUIT is ignored.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_load.h"
#include "om_raw.h"
#include "om_test.h"

#define KEYS 200

static om_daemon_t D;

static int
count_workers_not_in(const pid_t *old, int nold)
{
	pid_t now[64];
	int n = om_daemon_children(&D, now, 64, "worker process"), fresh = 0;

	for (int i = 0; i < n; i++) {
		int seen = 0;

		for (int j = 0; j < nold; j++)
			seen |= now[i] == old[j];
		fresh += !seen;
	}
	return fresh;
}

typedef struct {
	pid_t old[64];
	int nold;
	int want;
} gen_t;

/* The new generation is up and the old one gone. */
static int
new_generation(void *arg)
{
	gen_t *g = arg;
	pid_t now[64];
	int n = om_daemon_children(&D, now, 64, "worker process");

	return n == g->want && count_workers_not_in(g->old, g->nold) == g->want;
}

static uint64_t
stat_value(const char *name)
{
	om_client_t *c = NULL;
	char *text = NULL, key[80];
	uint64_t v = UINT64_MAX;
	const char *p;

	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_stats(c, &text), 0);
	snprintf(key, sizeof(key), "\n%s ", name);
	if ((p = strstr(text, key)) != NULL)
		v = strtoull(p + strlen(key), NULL, 10);
	free(text);
	om_client_close(c);
	return v;
}

static void
test_reload_under_load(void **state)
{
	om_load_result_t res;
	om_load_t *load;
	pid_t first[64];
	int nfirst;
	uint64_t ops;

	(void)state;
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_load_preload(D.sock, KEYS), 0);
	nfirst = om_daemon_children(&D, first, 64, "worker process");
	assert_int_equal(nfirst, 2);
	load = om_load_start(D.sock, 6, KEYS, 20);
	for (int r = 0; r < 20; r++) {
		gen_t g = { .want = r % 2 ? 2 : 3 };

		/* Alternate the worker count: every reload really changes the
		 * generation. */
		g.nold = om_daemon_children(&D, g.old, 64, "worker process");
		om_daemon_write_conf(&D, (unsigned)g.want, NULL);
		ops = om_load_ops(load);
		om_daemon_kill(&D, SIGHUP);
		if (!om_wait_until(new_generation, &g, 20000))
			fail_msg("reload %d: no new generation of %d workers:\n%s", r, g.want, om_daemon_log(&D));
		/* Clients go on through the change. */
		while (om_load_ops(load) < ops + 200)
			usleep(5000);
	}
	assert_int_equal(count_workers_not_in(first, nfirst), 2);

	/* A broken configuration: logged, nothing changes, still serving. */
	{
		gen_t g = { .want = 2 };
		pid_t after[64];
		int n;
		FILE *f = fopen(D.conf, "a");

		g.nold = om_daemon_children(&D, g.old, 64, "worker process");
		fprintf(f, "[index]\ncapacity = lots\n");
		fclose(f);
		ops = om_load_ops(load);
		om_daemon_kill(&D, SIGHUP);
		usleep(500000);
		n = om_daemon_children(&D, after, 64, "worker process");
		assert_int_equal(n, g.nold);
		assert_int_equal(count_workers_not_in(g.old, g.nold), 0);
		assert_non_null(strstr(om_daemon_log(&D), "reload failed"));
		while (om_load_ops(load) < ops + 200)
			usleep(5000);
		assert_int_equal(stat_value("reload_failures_total"), 1);
		assert_int_equal(stat_value("reloads_total"), 20);
	}
	om_load_stop(load, &res);
	print_message("20 reloads under load: %llu requests (%llu GET, %llu PUT), %llu failed, %llu wrong, "
	    "%llu re-sent after GOAWAY\n", (unsigned long long)res.ops, (unsigned long long)res.gets,
	    (unsigned long long)res.puts, (unsigned long long)res.failures, (unsigned long long)res.wrong,
	    (unsigned long long)res.retries_total);
	if (res.failures || res.wrong)
		fail_msg("%s", res.why);
	assert_true(res.ops > 4000);
	{
		char err[256];

		if (om_daemon_check_index(&D, err, sizeof(err)) != 0)
			fail_msg("index: %s", err);
	}
	om_daemon_write_conf(&D, 2, NULL);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/*
 * Batches across a HUP storm on a loaded machine: 120 reloads, half with
 * the configuration unchanged, half changing the worker count, while four
 * clients run om_client_get_batch of 32 keys (and some PUTs) and two
 * processes spin on the CPU. A reload must be as invisible to a batch as
 * to a single call: no GET of any batch fails, every answer is whole.
 */
#define STORM_RELOADS 120
static void
test_batches_across_hup_storm(void **state)
{
	om_load_result_t res;
	om_load_t *load;
	pid_t burn[2];
	uint64_t ops;

	(void)state;
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	assert_int_equal(om_load_preload(D.sock, KEYS), 0);
	om_load_burn(burn, 2);
	load = om_load_start_batch(D.sock, 4, KEYS, 5, 32);
	for (int r = 0; r < STORM_RELOADS; r++) {
		if (r >= STORM_RELOADS / 2)
			om_daemon_write_conf(&D, r % 2 ? 2 : 3, NULL);
		ops = om_load_ops(load);
		om_daemon_kill(&D, SIGHUP);
		/* The next reload once the clients have gone on (or 1 s). */
		for (int t = 0; t < 100 && om_load_ops(load) < ops + 8; t++)
			usleep(10000);
	}
	ops = om_load_ops(load);
	while (om_load_ops(load) < ops + 50)
		usleep(5000);
	om_load_stop(load, &res);
	om_load_unburn(burn, 2);
	print_message("%d reloads: %llu batched GETs, %llu PUTs, %llu failed, %llu wrong, "
	    "%llu re-sent\n", STORM_RELOADS, (unsigned long long)res.gets, (unsigned long long)res.puts,
	    (unsigned long long)res.failures, (unsigned long long)res.wrong,
	    (unsigned long long)res.retries_total);
	if (res.failures || res.wrong)
		fail_msg("%llu of %llu batched GETs failed, %llu wrong: %s",
		    (unsigned long long)res.failures, (unsigned long long)res.gets,
		    (unsigned long long)res.wrong, res.why);
	assert_true(res.gets > 2000);
	om_daemon_write_conf(&D, 2, NULL);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/*
 * A Unix listener whose socket file was deleted: the next reload binds it
 * again (before, every reload failed on its chmod and only a restart
 * brought the socket back), and the socket answers.
 */
static int
sock_answers(void *arg)
{
	uint8_t buf[OM_REQ_HDR_LEN];
	char msg[128];
	om_resp_t r;
	int fd, ok;

	(void)arg;
	/* The file appears at bind, the socket listens a moment later. */
	{
		struct sockaddr_un sa = { .sun_family = AF_UNIX };

		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(fd >= 0);
		memcpy(sa.sun_path, D.sock, strlen(D.sock) + 1);
		if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
			close(fd);
			return 0;
		}
	}
	om_raw_send_all(fd, buf, om_raw_req(buf, OM_OP_PING, 1, 0, NULL, 0, 0));
	ok = om_raw_read_resp(fd, &r, msg, sizeof(msg)) == OM_STATUS_OK;
	close(fd);
	return ok;
}

static void
test_reload_recreates_socket(void **state)
{
	gen_t g = { .want = 2 };

	(void)state;
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	g.nold = om_daemon_children(&D, g.old, 64, "worker process");
	assert_int_equal(unlink(D.sock), 0);
	om_daemon_kill(&D, SIGHUP);
	if (!om_wait_until(sock_answers, NULL, 5000))
		fail_msg("no socket at %s after the reload:\n%s", D.sock, om_daemon_log(&D));
	assert_true(om_wait_until(new_generation, &g, 10000));
	assert_int_equal(stat_value("reloads_total"), 1);
	assert_int_equal(stat_value("reload_failures_total"), 0);
	assert_non_null(strstr(om_daemon_log(&D), "is gone; binding it again"));
	/* And the next reload keeps it as it is. */
	om_daemon_kill(&D, SIGHUP);
	for (int i = 0; i < 100 && stat_value("reloads_total") < 2; i++)
		usleep(20000);
	assert_int_equal(stat_value("reloads_total"), 2);
	assert_int_equal(stat_value("reload_failures_total"), 0);
	assert_true(sock_answers(NULL));
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/* A daemon started (detached) with a relative -f reloads that file: the
 * file is found again after the daemon has left its working directory. */
static void
to_daemon_dir(void)
{
	if (chdir(D.dir) != 0)
		_exit(126);
}

static void
test_reload_relative_conf(void **state)
{
	char conf[sizeof(D.conf)];
	gen_t g = { .want = 3 };

	(void)state;
	om_daemon_init(&D, 2, "[log]\ntarget = file\nfile = daemon.log\nlevel = info\n");
	memcpy(conf, D.conf, sizeof(conf));
	snprintf(D.conf, sizeof(D.conf), "objmapper.conf");
	D.detached = 1;
	D.before_exec = to_daemon_dir;
	om_daemon_start(&D);
	memcpy(D.conf, conf, sizeof(conf));
	g.nold = om_daemon_children(&D, g.old, 64, "worker process");
	om_daemon_write_conf(&D, 3, "[log]\ntarget = file\nfile = daemon.log\nlevel = info\n");
	om_daemon_kill(&D, SIGHUP);
	if (!om_wait_until(new_generation, &g, 10000))
		fail_msg("no new generation of 3 workers after the reload:\n%s", om_daemon_log(&D));
	assert_int_equal(stat_value("reloads_total"), 1);
	assert_int_equal(stat_value("reload_failures_total"), 0);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/* A SIGHUP that comes with a SIGQUIT (both pending when the master looks)
 * is ignored, as during any stop: no generation is started to be drained. */
static void
test_hup_with_quit(void **state)
{
	int status;

	(void)state;
	om_daemon_init(&D, 2, NULL);
	om_daemon_start(&D);
	om_daemon_kill(&D, SIGSTOP);
	om_daemon_kill(&D, SIGQUIT);
	om_daemon_kill(&D, SIGHUP);
	om_daemon_kill(&D, SIGCONT);
	status = om_daemon_wait(&D, 20000);
	if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail_msg("objmapperd did not stop cleanly (status %d):\n%s", status, om_daemon_log(&D));
	if (strstr(om_daemon_log(&D), "reloading") != NULL)
		fail_msg("a SIGHUP sent with a SIGQUIT reloaded:\n%s", om_daemon_log(&D));
	om_daemon_cleanup(&D);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reload_under_load),
		cmocka_unit_test(test_batches_across_hup_storm),
		cmocka_unit_test(test_reload_recreates_socket),
		cmocka_unit_test(test_reload_relative_conf),
		cmocka_unit_test(test_hup_with_quit),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
