/*
 * Injected faults in the real daemon: objmapperd runs with the fault
 * layer preloaded (build/tests/om_fault.so, LD_PRELOAD) and driven
 * through its control file; only the worker's calls are counted. A client
 * PUTs (from a buffer, small and large, and by descriptor) while the
 * worker's k-th call fails or kills it, for every k of the PUT:
 *
 *  - fail (ENOSPC, EIO, EMFILE, EINTR, short): the client gets OK or a
 *    clear status (NO_SPACE, BUSY, INTERNAL, with a message), the daemon
 *    goes on serving, the object is the new version if acknowledged and
 *    the previous one otherwise, byte for byte; the index is consistent
 *    and nothing but tmp/ID.dropped is left in tmp/;
 *  - kill: the worker dies at the call, the client library sends the PUT
 *    again to its replacement; then the whole daemon is killed and
 *    started again, and the object is what was acknowledged (or the
 *    version in flight), nothing in tmp/, every file an object.
 *
 * Then a full memory tier: a tmpfs mount of 2 MiB under a limit of 256 MiB
 * takes 3 times its space in ephemeral PUTs (evicting), and with the
 * space held by something else answers NO_SPACE, to libobjmapper and to
 * the objmapper command. A reload waits for its new workers; a child that
 * cannot run (its change of user fails) is not started again, nor counted
 * as a restart.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_fault.h"
#include "om_packs.h"
#include "om_test.h"

static om_daemon_t D;
static om_fault_ctl_t *ctl;
static unsigned char *data, *got;
#define MAXSZ (512 * 1024)

enum kind { K_KILL, K_ENOSPC, K_EIO, K_EMFILE, K_EINTR, K_SHORT, K_N };
static const char *const kind_names[K_N] = { "kill", "ENOSPC", "EIO", "EMFILE", "EINTR", "short" };
static const int kind_err[K_N] = { 0, ENOSPC, EIO, EMFILE, EINTR, 0 };
/* What the client must be told when the PUT fails. */
static const int kind_status[K_N] = { 0, OM_STATUS_NO_SPACE, OM_STATUS_INTERNAL, OM_STATUS_BUSY,
	OM_STATUS_INTERNAL, 0 };
static unsigned runs[K_N], absorbed[K_N], ks;

/* ---- the daemon with the layer ------------------------------------------- */

static void
start_faulty(void)
{
	const char *so = om_test_program("tests/om_fault.so");
	char path[400], asan[512];
	const char *a = getenv("ASAN_OPTIONS");
	char *saved = a != NULL ? strdup(a) : NULL;

	if (access(so, R_OK) != 0)
		fail_msg("%s is missing (the test makefile builds it)", so);
	snprintf(path, sizeof(path), "%s/fault.ctl", D.dir);
	if (ctl == NULL) {
		ctl = om_fault_create(path);
		assert_non_null(ctl);
	}
	setenv("LD_PRELOAD", so, 1);
	setenv("OM_FAULT_CTL", path, 1);
	/* An ASan build wants its runtime first; the layer comes before it. */
	snprintf(asan, sizeof(asan), "%s%sverify_asan_link_order=0", a ? a : "", a && *a ? ":" : "");
	setenv("ASAN_OPTIONS", asan, 1);
	om_daemon_start(&D);
	unsetenv("LD_PRELOAD");
	unsetenv("OM_FAULT_CTL");
	if (saved != NULL)
		setenv("ASAN_OPTIONS", saved, 1);
	else
		unsetenv("ASAN_OPTIONS");
	free(saved);
}

static int
dead(pid_t pid)
{
	char path[64], buf[256], *p;
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return 1;
	r = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (r <= 0)
		return 1;
	buf[r] = '\0';
	p = strrchr(buf, ')');
	return p == NULL || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

/* Every process of the daemon at once, then a new daemon over the files. */
static void
crash_and_restart(void)
{
	pid_t kids[64];
	int n = om_daemon_children(&D, kids, 64, NULL);

	om_daemon_kill(&D, SIGKILL);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	assert_true(om_daemon_wait(&D, 5000) >= 0);
	/* Gone, or a zombie: its descriptors (and the tiers' locks) are closed. */
	for (int i = 0; i < n; i++)
		for (int t = 0; t < 500 && !dead(kids[i]); t++)
			usleep(2000);
	start_faulty();
}

/* ---- objects ------------------------------------------------------------- */

static int
put_version(om_client_t *c, const char *uri, uint32_t seed, size_t size, int by_fd)
{
	char meta[32];
	om_put_opts_t po = { .meta = meta };

	snprintf(meta, sizeof(meta), "seed=%u", seed);
	po.meta_len = (uint32_t)strlen(meta);
	om_test_fill(data, size, seed);
	if (by_fd) {
		char path[400];
		int fd, rc;

		snprintf(path, sizeof(path), "%s/source", D.dir);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, data, size), (ssize_t)size);
		rc = om_client_put_fd(c, uri, fd, size, &po, NULL);
		close(fd);
		return rc;
	}
	return om_client_put(c, uri, data, size, &po, NULL);
}

/* The seed of the object at uri (0 if absent), after checking its bytes
 * are that seed's. */
static uint32_t
seed_of(om_client_t *c, const char *uri)
{
	om_object_t o;
	char meta[64] = "";
	unsigned seed = 0;
	int rc = om_client_get(c, uri, OM_MODE_COPY, OM_GET_WANT_META | OM_GET_NO_TOUCH, &o);

	if (rc == -OM_STATUS_NOT_FOUND)
		return 0;
	if (rc != 0)
		fail_msg("GET %s: %s (%s)\n%s", uri, om_client_strerror(rc), om_client_message(c),
		    om_daemon_log(&D));
	memcpy(meta, o.meta, o.meta_len < 63 ? o.meta_len : 63);
	if (sscanf(meta, "seed=%u", &seed) != 1 || o.len > MAXSZ)
		fail_msg("GET %s: metadata \"%s\", %llu bytes", uri, meta, (unsigned long long)o.len);
	om_test_fill(got, o.len, seed);
	if (memcmp(got, o.data, o.len) != 0)
		fail_msg("GET %s: the bytes are not those of seed %u", uri, seed);
	om_object_free(&o);
	return seed;
}

/* Files under a directory: in tmp/ (those named ID.dropped apart), and
 * objects elsewhere: a file each, or a live entry in a pack (the packs
 * themselves are not counted; om_packs_objects). */
static void
tier_files(const char *tier, int t, long *objects, long *temp, long *dropped)
{
	char tmp[400];
	long all = om_packs_objects(tier, t);

	snprintf(tmp, sizeof(tmp), "%s/tmp", tier);
	*temp = om_test_count_files(tmp, ".dropped", dropped);
	*temp -= *dropped;
	*objects = all - *temp - *dropped;
}

/*
 * The daemon's state: the index consistent, the objects those expected
 * (seed 0: absent), byte for byte, one file or live pack entry each (the
 * 10000-byte /d/other is packed), and nothing in tmp/ but
 * (with dropped_ok) files of dropped objects.
 */
static void
check_state(om_client_t *c, const char *const *uris, const uint32_t *want, int n, int dropped_ok,
    const char *ctx)
{
	char err[256], objects[300];
	long files = 0, temp = 0, dropped = 0, present = 0;

	if (om_daemon_check_index(&D, err, sizeof(err)) != 0)
		fail_msg("%s: index: %s", ctx, err);
	for (int i = 0; i < n; i++) {
		uint32_t s = seed_of(c, uris[i]);

		if (s != want[i])
			fail_msg("%s: %s holds seed %u, expected %u", ctx, uris[i], s, want[i]);
		present += s != 0;
	}
	snprintf(objects, sizeof(objects), "%s/objects", D.dir);
	for (int t = 0; t < 2; t++) {
		long f, tm, dr;

		tier_files(t ? objects : D.mem, t ? OM_TIER_PERSISTENT : OM_TIER_MEMORY, &f, &tm, &dr);
		files += f;
		temp += tm;
		dropped += dr;
	}
	if (temp != 0 || (dropped != 0 && !dropped_ok))
		fail_msg("%s: %ld temporary and %ld dropped files left in tmp/", ctx, temp, dropped);
	if (files != present)
		fail_msg("%s: %ld object files and live pack entries for %ld objects", ctx, files, present);
}

/* ---- PUTs under faults ---------------------------------------------------- */

typedef struct {
	const char *name;
	size_t size;
	int by_fd;
} put_kind_t;

static void
put_faults(const put_kind_t *pk)
{
	const char *uris[2] = { "/d/obj", "/d/other" };
	uint32_t want[2], seed = 100;
	om_client_t *c = NULL;
	uint64_t n;
	char ctx[256];

	om_daemon_init(&D, 1, NULL);
	ctl = NULL;
	start_faulty();
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(put_version(c, "/d/other", 7, 10000, 0), 0);
	assert_int_equal(put_version(c, "/d/obj", ++seed, pk->size, pk->by_fd), 0);
	want[0] = seed;
	want[1] = 7;

	/* How many calls the worker makes for this PUT, and which. */
	om_fault_arm(ctl, om_daemon_only_worker(&D), 0, 0, OM_FA_COUNT, 0);
	assert_int_equal(put_version(c, "/d/obj", ++seed, pk->size, pk->by_fd), 0);
	om_fault_disarm(ctl);
	want[0] = seed;
	n = ctl->count;
	{
		char list[512];
		size_t len = 0;

		for (uint64_t i = 0; i < n && len < 400; i++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, " %s", om_fault_call_name(ctl->seq[i]));
		print_message("%s: the worker makes %" PRIu64 " calls:%s\n", pk->name, n, list);
	}
	assert_true(n >= 4);
	check_state(c, uris, want, 2, 0, pk->name);

	for (int kind = K_ENOSPC; kind < K_N; kind++) {
		for (uint64_t k = 1; k <= n; k++) {
			int rc;

			seed++;
			om_fault_arm(ctl, om_daemon_only_worker(&D), 0, k, kind == K_SHORT ? OM_FA_SHORT : OM_FA_ERRNO,
			    kind_err[kind]);
			rc = put_version(c, "/d/obj", seed, pk->size, pk->by_fd);
			om_fault_disarm(ctl);
			snprintf(ctx, sizeof(ctx), "%s, %s at call %" PRIu64 " (%s)", pk->name, kind_names[kind], k,
			    ctl->fired ? om_fault_call_name(ctl->fired_call) : "not reached");
			runs[kind]++;
			if (rc == 0) {
				want[0] = seed;
				absorbed[kind] += ctl->fired != 0;
			} else if (!ctl->fired) {
				fail_msg("%s: %s without a fault", ctx, om_client_message(c));
			} else if (kind == K_SHORT || (kind == K_EINTR && (OM_FC_DATA & OM_FC_BIT(ctl->fired_call)))) {
				fail_msg("%s: %s (a data call must be retried)", ctx, om_client_message(c));
			} else if (rc != -kind_status[kind] || om_client_message(c)[0] == '\0') {
				fail_msg("%s: the client got %s (\"%s\"), not %s", ctx, om_client_strerror(rc),
				    om_client_message(c), om_client_strerror(-kind_status[kind]));
			}
			/* A PUT that found the filesystem full may have evicted. */
			if (kind == K_ENOSPC && seed_of(c, "/d/other") == 0) {
				assert_int_equal(put_version(c, "/d/other", 7, 10000, 0), 0);
			}
			if (kind == K_ENOSPC && rc != 0 && seed_of(c, "/d/obj") == 0)
				want[0] = 0;
			check_state(c, uris, want, 2, 1, ctx);
		}
		/* A restart agrees, and empties tmp/. */
		crash_and_restart();
		om_client_close(c);
		assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
		snprintf(ctx, sizeof(ctx), "%s, %s faults, after a restart", pk->name, kind_names[kind]);
		check_state(c, uris, want, 2, 0, ctx);
		if (want[0] == 0) {
			assert_int_equal(put_version(c, "/d/obj", ++seed, pk->size, pk->by_fd), 0);
			want[0] = seed;
		}
	}

	/* Killed at k: the library sends the PUT again to the new worker. */
	for (uint64_t k = 1; k <= n; k++) {
		uint32_t before = want[0];
		int rc;

		seed++;
		ks++;
		om_fault_arm(ctl, om_daemon_only_worker(&D), 0, k, OM_FA_KILL, 0);
		rc = put_version(c, "/d/obj", seed, pk->size, pk->by_fd);
		om_fault_disarm(ctl);
		snprintf(ctx, sizeof(ctx), "%s, killed at call %" PRIu64 " (%s)", pk->name, k,
		    ctl->fired ? om_fault_call_name(ctl->fired_call) : "not reached");
		runs[K_KILL]++;
		if (rc == 0) {
			want[0] = seed;
		} else {
			uint32_t s = seed_of(c, "/d/obj");

			if (s != before && s != seed)
				fail_msg("%s: %s, and the object holds seed %u", ctx, om_client_message(c), s);
			want[0] = s;
		}
		check_state(c, uris, want, 2, 1, ctx);
		crash_and_restart();
		om_client_close(c);
		assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
		strncat(ctx, ", after a restart", sizeof(ctx) - strlen(ctx) - 1);
		check_state(c, uris, want, 2, 0, ctx);
	}
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	om_fault_destroy(ctl);
	ctl = NULL;
}

static void
test_put_small(void **state)
{
	static const put_kind_t pk = { "PUT of 20 KB", 20000, 0 };

	(void)state;
	put_faults(&pk);
}

static void
test_put_large(void **state)
{
	static const put_kind_t pk = { "PUT of 200 KB", 200000, 0 };

	(void)state;
	put_faults(&pk);
}

static void
test_put_fd(void **state)
{
	static const put_kind_t pk = { "PUT of 150 KB by descriptor", 150000, 1 };

	(void)state;
	put_faults(&pk);
}

/* ---- a full memory tier ------------------------------------------------- */

static int
cli_put(const char *uri, const char *file, char *err, size_t errcap)
{
	int ep[2], status;
	ssize_t n, total = 0;
	pid_t pid;

	assert_int_equal(pipe(ep), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(ep[1], 2);
		close(ep[0]);
		execl(om_test_program("objmapper"), "objmapper", "-s", D.sock, "put", "-E", uri, file,
		    (char *)NULL);
		_exit(127);
	}
	close(ep[1]);
	while ((n = read(ep[0], err + total, errcap - 1 - (size_t)total)) > 0)
		total += n;
	err[total] = '\0';
	close(ep[0]);
	status = om_test_wait(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_full_memory_tier(void **state)
{
	om_put_opts_t po = { .flags = OM_PUT_EPHEMERAL };
	om_client_t *c = NULL;
	char uri[64], path[400], err[1024];
	struct statvfs sv;
	int rc, fd, present = 0;

	(void)state;
	om_daemon_init(&D, 1, NULL);
	if (unshare(CLONE_NEWNS) != 0 || mount("none", "/", "none", MS_REC | MS_PRIVATE, NULL) != 0 ||
	    mount("tmpfs", D.mem, "tmpfs", 0, "size=2m,mode=0750") != 0) {
		print_message("full memory tier: skipped: cannot mount a tmpfs of our own (%s)\n",
		    strerror(errno));
		om_daemon_cleanup(&D);
		skip();
	}
	om_daemon_start(&D);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);

	/* Three times the filesystem, under a limit of 256 MiB. */
	for (int i = 0; i < 20; i++) {
		snprintf(uri, sizeof(uri), "/full/%d", i);
		om_test_fill(data, 300000, 500 + (uint64_t)i);
		{
			char meta[32];

			snprintf(meta, sizeof(meta), "seed=%d", 500 + i);
			po.meta = meta;
			po.meta_len = (uint32_t)strlen(meta);
			rc = om_client_put(c, uri, data, 300000, &po, NULL);
		}
		if (rc != 0)
			fail_msg("PUT %s into a full tmpfs: %s\n%s", uri, om_client_message(c), om_daemon_log(&D));
	}
	for (int i = 0; i < 20; i++) {
		uint32_t s;

		snprintf(uri, sizeof(uri), "/full/%d", i);
		s = seed_of(c, uri);
		if (s != 0 && s != 500u + (uint32_t)i)
			fail_msg("%s holds seed %u", uri, s);
		present += s != 0;
	}
	assert_true(present >= 3);
	assert_int_equal(seed_of(c, "/full/19"), 519);

	/* The space held by something else. */
	for (int i = 0; i < 20; i++) {
		snprintf(uri, sizeof(uri), "/full/%d", i);
		rc = om_client_delete(c, uri);
		assert_true(rc == 0 || rc == -OM_STATUS_NOT_FOUND);
	}
	/* The worker's descriptor cache gives deleted files back within a
	 * second (a request wakes it); only then is the space free. */
	for (int i = 0; i < 100; i++) {
		assert_int_equal(om_client_ping(c), 0);
		assert_int_equal(statvfs(D.mem, &sv), 0);
		if (sv.f_bavail * sv.f_frsize >= sv.f_blocks * sv.f_frsize - 65536)
			break;
		usleep(50000);
	}
	snprintf(path, sizeof(path), "%s/ballast", D.mem);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(statvfs(D.mem, &sv), 0);
	assert_int_equal(fallocate(fd, 0, 0, (off_t)(sv.f_bavail * sv.f_frsize) - 8192), 0);
	close(fd);
	po.meta = NULL;
	po.meta_len = 0;
	rc = om_client_put(c, "/full/none", data, 300000, &po, NULL);
	if (rc != -OM_STATUS_NO_SPACE)
		fail_msg("PUT into a full memory tier: %s (%s), not NO_SPACE", om_client_strerror(rc),
		    om_client_message(c));
	print_message("full memory tier: \"%s\"\n", om_client_message(c));
	rc = om_client_put(c, "/full/small", data, 20000, &po, NULL);
	assert_int_equal(rc, -OM_STATUS_NO_SPACE);
	snprintf(path, sizeof(path), "%s/source", D.dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_int_equal(write(fd, data, 100000), 100000);
	close(fd);
	rc = cli_put("/full/cli", path, err, sizeof(err));
	if (rc == 0 || strstr(err, "NO_SPACE") == NULL)
		fail_msg("objmapper put -E into a full memory tier: exit %d, \"%s\"", rc, err);
	print_message("objmapper put -E: exit %d: %s", rc, err);
	/* Still serving, and nothing of the refused PUTs left. */
	assert_int_equal(om_client_ping(c), 0);
	assert_int_equal(put_version(c, "/d/disk", 9, 5000, 0), 0);
	snprintf(path, sizeof(path), "%s/ballast", D.mem);
	assert_int_equal(unlink(path), 0);
	{
		const char *uris[2] = { "/full/none", "/d/disk" };
		uint32_t want[2] = { 0, 9 };

		check_state(c, uris, want, 2, 0, "full memory tier");
	}
	assert_int_equal(statvfs(D.mem, &sv), 0);
	rc = om_client_put(c, "/full/again", data, 300000, &po, NULL);
	if (rc != 0)
		fail_msg("PUT once the space is back (%llu bytes free): %s\n%s",
		    (unsigned long long)(sv.f_bavail * sv.f_frsize), om_client_message(c), om_daemon_log(&D));
	om_client_close(c);
	om_daemon_stop(&D);
	umount2(D.mem, MNT_DETACH);
	om_daemon_cleanup(&D);
}

static void
test_summary(void **state)
{
	unsigned total = 0;

	(void)state;
	for (int k = 0; k < K_N; k++)
		total += runs[k];
	print_message("daemon: %u crash points, %u PUTs under a fault (kill %u, ENOSPC %u, EIO %u, EMFILE %u, "
	    "EINTR %u, short %u); absorbed: ENOSPC %u, EIO %u, EMFILE %u, EINTR %u, short %u\n", ks, total,
	    runs[K_KILL], runs[K_ENOSPC], runs[K_EIO], runs[K_EMFILE], runs[K_EINTR], runs[K_SHORT],
	    absorbed[K_ENOSPC], absorbed[K_EIO], absorbed[K_EMFILE], absorbed[K_EINTR], absorbed[K_SHORT]);
}

/*
 * A reload drains the old workers only once the new ones accept: with the
 * new workers held before they reach their loop (OM_FAULT_STALL: they wait
 * in their first prctl while a file exists), a client that connects is
 * answered by the old ones. Before, the old ones were told to drain at
 * once and the client waited in the listen queue for as long as the new
 * ones took (on a loaded machine, seconds: test_reload's storm saw
 * HELLOs unanswered for 5 s under ASan).
 */
typedef struct {
	pid_t old[2];
	const char *stall;
} held_t;

static int
held_workers_up(void *arg)
{
	pid_t now[8];

	(void)arg;
	return om_daemon_children(&D, now, 8, "worker process") == 4;
}

/* Both workers of the first generation are up (named: a worker sets its
 * title as it starts, and on a loaded machine the second may not have yet
 * when the first has answered a PUT). */
static int
first_workers_up(void *arg)
{
	pid_t now[8];

	(void)arg;
	return om_daemon_children(&D, now, 8, "worker process") == 2;
}

/* Only the two new workers are left. */
static int
old_workers_gone(void *arg)
{
	held_t *h = arg;
	pid_t now[8];
	int n = om_daemon_children(&D, now, 8, "worker process");

	for (int i = 0; i < n; i++) {
		if (now[i] == h->old[0] || now[i] == h->old[1])
			return 0;
	}
	return n == 2;
}

static void
test_reload_waits_for_new_workers(void **state)
{
	char stall[400], one[8] = "";
	om_client_t *c = NULL;
	om_object_t obj;
	held_t h;
	int fd;

	(void)state;
	om_daemon_init(&D, 2, NULL);
	snprintf(stall, sizeof(stall), "%s/stall", D.dir);
	h.stall = stall;
	setenv("OM_FAULT_STALL", stall, 1);
	start_faulty();
	unsetenv("OM_FAULT_STALL");
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/held", "held", 4, NULL, NULL), 0);
	om_client_close(c);
	c = NULL;
	assert_true(om_wait_until(first_workers_up, NULL, 10000));
	assert_int_equal(om_daemon_children(&D, h.old, 2, "worker process"), 2);

	fd = open(stall, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	om_daemon_kill(&D, SIGHUP);
	assert_true(om_wait_until(held_workers_up, NULL, 10000));
	/* Time enough for the master to have told the old ones to go. */
	usleep(300 * 1000);
	assert_int_equal(kill(h.old[0], 0), 0);
	assert_int_equal(kill(h.old[1], 0), 0);
	/* A new client is answered while the new workers cannot be. */
	if (om_client_connect_timeout(D.sock, 0, 2000, &c) != 0)
		fail_msg("a client that connected while a reload's new workers were starting got no "
		    "answer in 2 s: %s", om_client_message(c));
	om_client_set_timeout(c, 2000);
	assert_int_equal(om_client_get(c, "/held", OM_MODE_COPY, 0, &obj), 0);
	assert_int_equal(obj.len, 4);
	memcpy(one, obj.data, 4);
	assert_string_equal(one, "held");
	om_object_free(&obj);
	om_client_close(c);
	c = NULL;

	/* Released, the new ones accept and the old ones go. */
	assert_int_equal(unlink(stall), 0);
	assert_true(om_wait_until(old_workers_gone, &h, 10000));
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_get(c, "/held", OM_MODE_COPY, 0, &obj), 0);
	assert_int_equal(obj.len, 4);
	om_object_free(&obj);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	om_fault_destroy(ctl);
	ctl = NULL;
}

static int
not_restarting_logged(void *arg)
{
	(void)arg;
	return strstr(om_daemon_log(&D), "not restarting it") != NULL;
}

static uint64_t
restarts_counted(om_client_t *c)
{
	char *text = NULL, *p;
	uint64_t v = UINT64_MAX;

	assert_int_equal(om_client_stats(c, &text), 0);
	p = strstr(text, "\nworker_restarts_total ");
	if (p != NULL)
		v = strtoull(p + strlen("\nworker_restarts_total "), NULL, 10);
	free(text);
	return v;
}

/*
 * A child that cannot run with this configuration (here: its change of
 * user fails, OM_FAULT_NODUMP) exits with status 3 and is not started
 * again; worker_restarts_total counts the children started again, so a
 * worker killed and replaced counts 1 and its replacement's fatal exit
 * none. The other worker goes on serving.
 */
static void
test_fatal_child_not_counted(void **state)
{
	char nodump[400];
	om_client_t *c = NULL;
	om_object_t obj;
	pid_t w[2];
	int fd;

	(void)state;
	if (geteuid() != 0) {
		print_message("not root: [daemon] user = root cannot be taken; skipped\n");
		skip();
	}
	om_daemon_init(&D, 2, "[daemon]\nworkers = 2\npid_file = objmapperd.pid\nshutdown_timeout = 10s\n"
	    "user = root\n");
	snprintf(nodump, sizeof(nodump), "%s/nodump", D.dir);
	setenv("OM_FAULT_NODUMP", nodump, 1);
	start_faulty();
	unsetenv("OM_FAULT_NODUMP");
	assert_true(om_wait_until(first_workers_up, NULL, 10000));
	assert_int_equal(om_daemon_children(&D, w, 2, "worker process"), 2);
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/fatal", "kept", 4, NULL, NULL), 0);
	assert_int_equal(restarts_counted(c), 0);
	om_client_close(c);
	c = NULL;

	fd = open(nodump, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(kill(w[0], SIGKILL), 0);
	if (!om_wait_until(not_restarting_logged, NULL, 10000))
		fail_msg("the replacement of a killed worker did not fail as set up:\n%s", om_daemon_log(&D));
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(restarts_counted(c), 1);
	assert_int_equal(om_client_get(c, "/fatal", OM_MODE_COPY, 0, &obj), 0);
	assert_int_equal(obj.len, 4);
	assert_memory_equal(obj.data, "kept", 4);
	om_object_free(&obj);
	om_client_close(c);
	assert_int_equal(unlink(nodump), 0);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	om_fault_destroy(ctl);
	ctl = NULL;
}

static int
setup(void **state)
{
	(void)state;
	data = malloc(MAXSZ);
	got = malloc(MAXSZ);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	free(data);
	free(got);
	return 0;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_small),
		cmocka_unit_test(test_put_large),
		cmocka_unit_test(test_put_fd),
		cmocka_unit_test(test_summary),
		cmocka_unit_test(test_full_memory_tier),
		cmocka_unit_test(test_reload_waits_for_new_workers),
		cmocka_unit_test(test_fatal_child_not_counted),
	};

	signal(SIGPIPE, SIG_IGN);
	if (getenv("OM_FAULTS_ONLY") != NULL)
		cmocka_set_test_filter(getenv("OM_FAULTS_ONLY"));
	return cmocka_run_group_tests(tests, setup, teardown);
}
