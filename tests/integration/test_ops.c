/*
 * What operators rely on: the log file reopened on USR1 (rotation) by the
 * master and every child, and the daemon dropping root for the configured
 * user, with the tiers and socket owned accordingly.
 */
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <objmapper/objmapper.h>

#include "om_daemon.h"
#include "om_raw.h"
#include "om_test.h"

static om_daemon_t D;

static int
file_has(const char *path, const char *text)
{
	char buf[65536];
	FILE *f = fopen(path, "r");
	size_t n;

	if (f == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return strstr(buf, text) != NULL;
}

typedef struct {
	const char *path;
	const char *text;
} has_t;

static int
has_cb(void *arg)
{
	has_t *h = arg;

	return file_has(h->path, h->text);
}

static void
test_log_reopen_on_usr1(void **state)
{
	char extra[600], logf[400], rotated[420];
	om_client_t *c = NULL;
	has_t h;

	(void)state;
	om_daemon_init(&D, 1, NULL);
	D.detached = 1; /* -F would log to standard error */
	snprintf(logf, sizeof(logf), "%s/objmapperd.log", D.dir);
	snprintf(rotated, sizeof(rotated), "%s.1", logf);
	snprintf(extra, sizeof(extra), "[log]\ntarget = file\nfile = %s\nlevel = debug\n", logf);
	om_daemon_write_conf(&D, 1, extra);
	om_daemon_start(&D);
	h.path = logf;
	h.text = "started";
	assert_true(om_wait_until(has_cb, &h, 5000));
	/* Rotate: move the file away, USR1, and new lines go to a new file. */
	assert_int_equal(rename(logf, rotated), 0);
	om_daemon_kill(&D, SIGUSR1);
	usleep(200000);
	/* A worker writes there too: a connection that sends garbage is
	 * logged at debug level by the worker that closes it. */
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_ping(c), 0);
	om_client_close(c);
	om_daemon_kill(&D, SIGHUP);
	h.text = "reloading";
	assert_true(om_wait_until(has_cb, &h, 5000));
	h.text = "worker 0";
	assert_true(om_wait_until(has_cb, &h, 5000));
	assert_false(file_has(rotated, "reloading"));
	om_daemon_stop(&D);
	/* Removed at exit, as by a foreground daemon. */
	assert_true(access(D.pidfile, F_OK) != 0);
	assert_true(access(D.sock, F_OK) != 0);
	om_daemon_cleanup(&D);
}

static uid_t
proc_uid(pid_t pid)
{
	char path[64], line[256];
	unsigned uid = (unsigned)-1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return (uid_t)-1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Uid: %u", &uid) == 1)
			break;
	fclose(f);
	return (uid_t)uid;
}

static void
test_runs_as_configured_user(void **state)
{
	struct passwd *pw = getpwnam("nobody");
	char extra[400], objects[400];
	pid_t kids[16];
	om_client_t *c = NULL;
	om_object_t o;
	struct stat sb;
	int n;

	(void)state;
	if (geteuid() != 0 || pw == NULL)
		skip();
	om_daemon_init(&D, 2, NULL);
	snprintf(extra, sizeof(extra), "[daemon]\nworkers = 2\npid_file = objmapperd.pid\nuser = nobody\n");
	om_daemon_write_conf(&D, 2, extra);
	/* The tier under the test's private directory must be reachable by
	 * nobody: the master chowns the tier, not its parents. */
	assert_int_equal(chmod(D.dir, 0755), 0);
	om_daemon_start(&D);
	assert_int_equal(proc_uid(D.pid), 0);
	for (int t = 0; t < 250 && (n = om_daemon_children(&D, kids, 16, NULL)) < 3; t++)
		usleep(20000);
	assert_int_equal(n, 3);
	/* Each child drops root as soon as it starts. */
	for (int i = 0; i < n; i++) {
		for (int t = 0; t < 250 && proc_uid(kids[i]) != pw->pw_uid; t++)
			usleep(20000);
		assert_int_equal(proc_uid(kids[i]), pw->pw_uid);
	}
	snprintf(objects, sizeof(objects), "%s/objects", D.dir);
	assert_int_equal(stat(objects, &sb), 0);
	assert_int_equal(sb.st_uid, pw->pw_uid);
	assert_int_equal(stat(D.sock, &sb), 0);
	assert_int_equal(sb.st_uid, pw->pw_uid);
	/* Workers running as nobody publish and serve. */
	assert_int_equal(om_client_connect(D.sock, 0, &c), 0);
	assert_int_equal(om_client_put(c, "/as-nobody", "x", 1, NULL, NULL), 0);
	assert_int_equal(om_client_get(c, "/as-nobody", OM_MODE_FDPASS, 0, &o), 0);
	assert_int_equal(fstat(o.fd, &sb), 0);
	assert_int_equal(sb.st_uid, pw->pw_uid);
	assert_int_equal(sb.st_mode & 07777, 0440);
	om_object_free(&o);
	/* And an object of a file of its own (larger than any pack takes),
	 * linked by a worker that is not root: AT_EMPTY_PATH where the kernel
	 * allows it to the file's opener, else through /proc/self/fd. */
	{
		static uint8_t big[100000];

		om_test_fill(big, sizeof(big), 5);
		for (int i = 0; i < 3; i++) {
			assert_int_equal(om_client_put(c, "/as-nobody/big", big, sizeof(big), NULL, NULL), 0);
			assert_int_equal(om_client_get(c, "/as-nobody/big", OM_MODE_FDPASS, 0, &o), 0);
			assert_int_equal(fstat(o.fd, &sb), 0);
			assert_int_equal(sb.st_uid, pw->pw_uid);
			assert_int_equal(sb.st_mode & 07777, 0440);
			assert_int_equal(sb.st_size, sizeof(big));
			om_object_free(&o);
			assert_int_equal(om_client_get(c, "/as-nobody/big", OM_MODE_COPY, 0, &o), 0);
			assert_int_equal(o.len, sizeof(big));
			assert_memory_equal(o.data, big, sizeof(big));
			om_object_free(&o);
		}
	}
	om_client_close(c);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

/* A raw request on fd: its status, the message in msg. */
static int
ask(int fd, uint8_t op, uint32_t flags, const char *uri, const void *body, size_t len, char *msg,
    size_t cap)
{
	uint8_t h[OM_REQ_HDR_LEN + 256];
	om_resp_t r;

	om_raw_send_all(fd, h, om_raw_req(h, op, 1, flags, uri, 0, len));
	if (len)
		om_raw_send_all(fd, body, len);
	return om_raw_read_resp(fd, &r, msg, cap);
}

/*
 * A tier's directory deleted under the running daemon: STAT no longer
 * answers for objects whose files are gone (a STAT without metadata said
 * OK), a PUT says that the directory was deleted (it said "Operation not
 * permitted" on the persistent tier, and NOT_FOUND on the memory tier),
 * and a restart makes the directories again.
 */
static void
test_tier_deleted(void **state)
{
	char path[320], msg[512];
	int fd;

	(void)state;
	om_daemon_init(&D, 1, NULL);
	om_daemon_start(&D);
	fd = om_raw_connect_unix(D.sock);
	assert_int_equal(ask(fd, OM_OP_PUT, 0, "/t/1", "one", 3, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(ask(fd, OM_OP_PUT, OM_PUT_EPHEMERAL, "/e/1", "two", 3, msg, sizeof(msg)),
	    OM_STATUS_OK);
	assert_int_equal(ask(fd, OM_OP_STAT, 0, "/t/1", NULL, 0, msg, sizeof(msg)), OM_STATUS_OK);

	snprintf(path, sizeof(path), "%s/objects", D.dir);
	assert_int_equal(om_test_rmtree(path), 0);
	assert_int_equal(ask(fd, OM_OP_STAT, 0, "/t/1", NULL, 0, msg, sizeof(msg)), OM_STATUS_NOT_FOUND);
	assert_int_equal(ask(fd, OM_OP_PUT, 0, "/t/2", "three", 5, msg, sizeof(msg)), OM_STATUS_INTERNAL);
	print_message("PUT, persistent tier deleted: %s\n", msg);
	if (strstr(msg, "persistent tier's directory") == NULL || strstr(msg, path) == NULL ||
	    strstr(msg, "was deleted") == NULL)
		fail_msg("PUT with the persistent tier deleted: %s", msg);
	/* The memory tier is there still. */
	assert_int_equal(ask(fd, OM_OP_STAT, 0, "/e/1", NULL, 0, msg, sizeof(msg)), OM_STATUS_OK);

	assert_int_equal(om_test_rmtree(D.mem), 0);
	assert_int_equal(ask(fd, OM_OP_STAT, 0, "/e/1", NULL, 0, msg, sizeof(msg)), OM_STATUS_NOT_FOUND);
	assert_int_equal(ask(fd, OM_OP_PUT, OM_PUT_EPHEMERAL, "/e/2", "four", 4, msg, sizeof(msg)),
	    OM_STATUS_INTERNAL);
	print_message("PUT, memory tier deleted: %s\n", msg);
	if (strstr(msg, "memory tier's directory") == NULL || strstr(msg, "was deleted") == NULL)
		fail_msg("PUT with the memory tier deleted: %s", msg);
	assert_non_null(strstr(om_daemon_log(&D), "was deleted; nothing can be stored there"));
	close(fd);

	/* As the message says: a restart. */
	om_daemon_stop(&D);
	om_daemon_start(&D);
	fd = om_raw_connect_unix(D.sock);
	assert_int_equal(ask(fd, OM_OP_PUT, 0, "/t/2", "three", 5, msg, sizeof(msg)), OM_STATUS_OK);
	assert_int_equal(ask(fd, OM_OP_PUT, OM_PUT_EPHEMERAL, "/e/2", "four", 4, msg, sizeof(msg)),
	    OM_STATUS_OK);
	assert_int_equal(ask(fd, OM_OP_STAT, 0, "/t/1", NULL, 0, msg, sizeof(msg)), OM_STATUS_NOT_FOUND);
	close(fd);
	om_daemon_stop(&D);
	om_daemon_cleanup(&D);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_log_reopen_on_usr1),
		cmocka_unit_test(test_runs_as_configured_user),
		cmocka_unit_test(test_tier_deleted),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
