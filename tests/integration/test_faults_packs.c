/*
 * Injected faults on a pack's append, in the real daemon ([memory] and
 * [persistent] pack_max = 16K, eviction none): objmapperd runs with the
 * fault layer preloaded (build/tests/om_fault.so) and the worker's
 * pwritev of a packed PUT's entry fails (ENOSPC, EIO), moves half its
 * bytes (short), is interrupted (EINTR), or kills the worker:
 *
 *  - ENOSPC: the PUT is answered NO_SPACE, EIO INTERNAL, each with a
 *    message; the next PUT succeeds, in a new pack (what landed of the
 *    failed entry is the old pack's end for good);
 *  - short, EINTR: the append goes on from where it stopped, the PUT
 *    succeeds (as every data loop of the store does);
 *  - kill: the library sends the PUT again to the worker's replacement;
 *
 * and after a restart, then after a crash of the whole daemon (a rebuild
 * that walks the packs), every acknowledged object is there, byte for
 * byte, and no failed one.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_fault.h"
#include "om_test.h"

static om_daemon_t D;
static om_fault_ctl_t *ctl;

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

static void
crash_and_restart(void)
{
	pid_t kids[64];
	int n = om_daemon_children(&D, kids, 64, NULL);

	om_daemon_kill(&D, SIGKILL);
	for (int i = 0; i < n; i++)
		kill(kids[i], SIGKILL);
	assert_true(om_daemon_wait(&D, 5000) >= 0);
	for (int i = 0; i < n; i++)
		for (int t = 0; t < 500 && !dead(kids[i]); t++)
			usleep(2000);
	start_faulty();
}

/* ---- objects ------------------------------------------------------------- */

#define MAXOBJ 64

typedef struct {
	char uri[64];
	uint32_t seed; /* 0: must be absent */
	size_t size;
} obj_t;

static obj_t objs[MAXOBJ];
static int nobjs;

static int
put_obj(om_client_t *c, const char *uri, uint32_t seed, size_t size, int eph)
{
	static unsigned char buf[16384];
	char meta[32];
	om_put_opts_t po = { .meta = meta, .flags = eph ? OM_PUT_EPHEMERAL : 0 };

	snprintf(meta, sizeof(meta), "seed=%u", seed);
	po.meta_len = (uint32_t)strlen(meta);
	om_test_fill(buf, size, seed);
	return om_client_put(c, uri, buf, size, &po, NULL);
}

static void
remember(const char *uri, uint32_t seed, size_t size)
{
	assert_true(nobjs < MAXOBJ);
	snprintf(objs[nobjs].uri, sizeof(objs[0].uri), "%s", uri);
	objs[nobjs].seed = seed;
	objs[nobjs].size = size;
	nobjs++;
}

static void
check_all(om_client_t *c, const char *ctx)
{
	static unsigned char want[16384];
	char err[256];

	if (om_daemon_check_index(&D, err, sizeof(err)) != 0)
		fail_msg("%s: index: %s", ctx, err);
	for (int i = 0; i < nobjs; i++) {
		om_object_t o;
		char meta[64] = "";
		unsigned seed = 0;
		int rc = om_client_get(c, objs[i].uri, OM_MODE_COPY, OM_GET_WANT_META | OM_GET_NO_TOUCH, &o);

		if (objs[i].seed == 0) {
			if (rc != -OM_STATUS_NOT_FOUND)
				fail_msg("%s: %s, never acknowledged, is there (%d)", ctx, objs[i].uri, rc);
			continue;
		}
		if (rc != 0)
			fail_msg("%s: GET %s: %s (%s)\n%s", ctx, objs[i].uri, om_client_strerror(rc),
			    om_client_message(c), om_daemon_log(&D));
		memcpy(meta, o.meta, o.meta_len < 63 ? o.meta_len : 63);
		if (sscanf(meta, "seed=%u", &seed) != 1 || seed != objs[i].seed || o.len != objs[i].size)
			fail_msg("%s: %s: \"%s\", %llu bytes; acknowledged seed %u, %zu bytes", ctx, objs[i].uri,
			    meta, (unsigned long long)o.len, objs[i].seed, objs[i].size);
		om_test_fill(want, o.len, seed);
		if (o.len && memcmp(want, o.data, o.len) != 0)
			fail_msg("%s: %s: the bytes are not those of seed %u", ctx, objs[i].uri, seed);
		om_object_free(&o);
	}
}

static long
packs_of(int tier)
{
	char path[400];

	if (tier)
		snprintf(path, sizeof(path), "%s/objects/packs", D.dir);
	else
		snprintf(path, sizeof(path), "%s/packs", D.mem);
	return om_test_count_files(path, NULL, NULL);
}

enum kind { K_ENOSPC, K_EIO, K_SHORT, K_EINTR, K_KILL, K_N };
static const char *const kind_names[K_N] = { "ENOSPC", "EIO", "short", "EINTR", "kill" };

static void
test_pack_append_faults(void **state)
{
	om_client_t *c = NULL;
	uint32_t seed = 1;
	char ctx[256];

	(void)state;
	om_daemon_init(&D, 1, "[cache]\neviction = none\nscrub_rate = 0\n");
	snprintf(D.mem_conf, sizeof(D.mem_conf), "size = 256M\npack_max = 16K");
	snprintf(D.disk_conf, sizeof(D.disk_conf), "size = 2G\npack_max = 16K");
	om_daemon_write_conf(&D, 1, "[cache]\neviction = none\nscrub_rate = 0\n");
	ctl = NULL;
	nobjs = 0;
	start_faulty();
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);

	for (int tier = 0; tier < 2; tier++) {
		for (int kind = 0; kind < K_N; kind++) {
			char uri[64];
			long before;
			int rc;
			size_t size = 1000 + (size_t)kind * 3001;

			/* Objects before it, in the pack the fault hits. */
			for (int i = 0; i < 2; i++) {
				snprintf(uri, sizeof(uri), "/ok/%d/%d/%d", tier, kind, i);
				assert_int_equal(put_obj(c, uri, ++seed, 700 + (size_t)i, !tier), 0);
				remember(uri, seed, 700 + (size_t)i);
			}
			before = packs_of(tier);
			snprintf(uri, sizeof(uri), "/fault/%d/%s", tier, kind_names[kind]);
			om_fault_arm(ctl, om_daemon_only_worker(&D), OM_FC_BIT(OM_FC_PWRITEV), 1,
			    kind == K_KILL ? OM_FA_KILL : kind == K_SHORT ? OM_FA_SHORT : OM_FA_ERRNO,
			    kind == K_ENOSPC ? ENOSPC : kind == K_EIO ? EIO : EINTR);
			rc = put_obj(c, uri, ++seed, size, !tier);
			om_fault_disarm(ctl);
			snprintf(ctx, sizeof(ctx), "%s tier, pwritev %s", tier ? "persistent" : "memory",
			    kind_names[kind]);
			if (ctl->fired == 0 || ctl->fired_call != OM_FC_PWRITEV)
				fail_msg("%s: the fault was not reached (%" PRIu64 " calls)", ctx, ctl->count);
			switch (kind) {
			case K_ENOSPC:
			case K_EIO:
				if (rc != (kind == K_ENOSPC ? -OM_STATUS_NO_SPACE : -OM_STATUS_INTERNAL) ||
				    om_client_message(c)[0] == '\0')
					fail_msg("%s: the client got %s (\"%s\")", ctx, om_client_strerror(rc),
					    om_client_message(c));
				if (kind == K_EIO && strstr(om_client_message(c), "cannot append to the pack") == NULL)
					fail_msg("%s: the message does not say what failed: \"%s\"", ctx, om_client_message(c));
				print_message("%s: %s: \"%s\"\n", ctx, om_client_strerror(rc), om_client_message(c));
				remember(uri, 0, size);
				/* The next PUT: a new pack. */
				snprintf(uri, sizeof(uri), "/next/%d/%s", tier, kind_names[kind]);
				assert_int_equal(put_obj(c, uri, ++seed, 2000, !tier), 0);
				remember(uri, seed, 2000);
				assert_int_equal(packs_of(tier), before + 1);
				break;
			default:
				/* Retried where it stopped (short, EINTR), or by the
				 * library on the next worker (kill). */
				if (rc != 0)
					fail_msg("%s: %s (\"%s\")", ctx, om_client_strerror(rc), om_client_message(c));
				remember(uri, seed, size);
				break;
			}
			check_all(c, ctx);
		}
	}
	om_client_close(c);
	om_daemon_stop(&D);
	start_faulty();
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	check_all(c, "after a restart");
	om_client_close(c);
	crash_and_restart();
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	check_all(c, "after a crash of the whole daemon (a rebuild)");
	print_message("pwritev of a pack entry failed, cut short, interrupted or killed in both tiers: "
	    "%d objects checked after a restart and a rebuild\n", nobjs);
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
	om_fault_destroy(ctl);
	ctl = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_append_faults),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
