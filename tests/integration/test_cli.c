/*
 * The objmapper command-line client against the real daemon: put, get,
 * stat, delete, stats and ping in every mode, byte for byte at sizes 0,
 * 1, 4 KiB, 1 MiB and 64 MiB, from files and pipes to files and pipes,
 * the socket from -s or $OBJMAPPER_SOCKET, and the exit statuses.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/om_core.h"
#include "om_daemon.h"
#include "om_test.h"

static om_daemon_t D;

static int
setup(void **state)
{
	om_daemon_up(&D, 2, NULL);
	setenv("OBJMAPPER_SOCKET", D.sock, 1);
	*state = &D;
	return 0;
}

/*
 * Runs objmapper with argv; stdin from in_path (or /dev/null), stdout to
 * out_path (or captured into out), stderr captured into err. Returns the
 * exit status.
 */
static int
cli(const char *in_path, const char *out_path, char *out, size_t outcap, char *err, size_t errcap,
    const char *const *argv)
{
	int op[2], ep[2], status;
	const char *prog = om_test_program("objmapper");
	char *args[16];
	size_t no = 0, ne = 0;
	pid_t pid;
	int n = 0;

	args[n++] = (char *)"objmapper";
	for (; *argv != NULL && n < 15; argv++)
		args[n++] = (char *)*argv;
	args[n] = NULL;
	assert_int_equal(pipe(op), 0);
	assert_int_equal(pipe(ep), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int in = open(in_path ? in_path : "/dev/null", O_RDONLY);

		dup2(in, 0);
		if (out_path != NULL) {
			int o = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

			dup2(o, 1);
		} else {
			dup2(op[1], 1);
		}
		dup2(ep[1], 2);
		close(op[0]);
		close(ep[0]);
		execv(prog, args);
		_exit(127);
	}
	close(op[1]);
	close(ep[1]);
	/* Read both pipes to the end (stdout may be large: drain it first). */
	for (;;) {
		char tmp[65536];
		ssize_t r = read(op[0], tmp, sizeof(tmp));

		if (r <= 0)
			break;
		if (out != NULL && no + (size_t)r < outcap) {
			memcpy(out + no, tmp, (size_t)r);
			no += (size_t)r;
		}
	}
	for (;;) {
		ssize_t r = read(ep[0], err + ne, errcap - 1 - ne);

		if (r <= 0)
			break;
		ne += (size_t)r;
	}
	err[ne] = '\0';
	if (out != NULL && no < outcap)
		out[no] = '\0';
	close(op[0]);
	close(ep[0]);
	status = om_test_wait(pid);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

#define ARGV(...) ((const char *const[]){ __VA_ARGS__, NULL })

static void
write_file(const char *path, const void *buf, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	close(fd);
}

static void
assert_file(const char *path, const void *buf, size_t n)
{
	unsigned char *got = malloc(n + 1);
	struct stat sb;
	int fd = open(path, O_RDONLY);

	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, (uint64_t)n);
	assert_int_equal(read(fd, got, n + 1), (ssize_t)n);
	close(fd);
	assert_true(n == 0 || memcmp(got, buf, n) == 0);
	free(got);
}

static void
test_put_get_every_mode_and_size(void **state)
{
	static const size_t sizes[] = { 0, 1, 4096, 1 << 20, 64 << 20 };
	static const char *const modes[] = { "auto", "fdpass", "copy", "splice" };
	unsigned char *buf = malloc(64 << 20);
	char in[400], out[400], err[2048], uri[64];

	(void)state;
	snprintf(in, sizeof(in), "%s/in", D.dir);
	snprintf(out, sizeof(out), "%s/out", D.dir);
	for (size_t i = 0; i < OM_ARRAY_LEN(sizes); i++) {
		om_test_fill(buf, sizes[i], 300 + i);
		write_file(in, buf, sizes[i]);
		snprintf(uri, sizeof(uri), "/cli/%zu", sizes[i]);
		/* From a file (sent as a descriptor) ... */
		assert_int_equal(cli(NULL, NULL, NULL, 0, err, sizeof(err), ARGV("put", uri, in)), 0);
		for (size_t m = 0; m < OM_ARRAY_LEN(modes); m++) {
			/* ... to a file, and to a pipe (standard output). */
			assert_int_equal(cli(NULL, NULL, NULL, 0, err, sizeof(err),
			    ARGV("-m", modes[m], "get", uri, out)), 0);
			assert_file(out, buf, sizes[i]);
			if (sizes[i] <= (1 << 20)) {
				static char piped[(1 << 20) + 1];

				assert_int_equal(cli(NULL, NULL, piped, sizeof(piped), err, sizeof(err),
				    ARGV("-m", modes[m], "get", uri)), 0);
				assert_true(sizes[i] == 0 || memcmp(piped, buf, sizes[i]) == 0);
			}
		}
		/* From standard input (a file, then a pipe through cat). */
		snprintf(uri, sizeof(uri), "/cli/stdin/%zu", sizes[i]);
		assert_int_equal(cli(in, NULL, NULL, 0, err, sizeof(err), ARGV("put", uri)), 0);
		assert_int_equal(cli(NULL, out, NULL, 0, err, sizeof(err), ARGV("get", uri)), 0);
		assert_file(out, buf, sizes[i]);
	}
	free(buf);
}

static void
test_put_from_a_pipe(void **state)
{
	char out[400], cmd[1200];
	const char *prog = om_test_program("objmapper");
	int st;

	(void)state;
	snprintf(out, sizeof(out), "%s/piped", D.dir);
	snprintf(cmd, sizeof(cmd), "printf 'from a pipe\\n' | %s put /cli/pipe && %s get /cli/pipe > %s",
	    prog, prog, out);
	st = system(cmd);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_file(out, "from a pipe\n", 12);
}

static void
test_stat_delete_exit_statuses(void **state)
{
	char out[4096], err[2048], meta[400];
	char body[400];

	(void)state;

	snprintf(meta, sizeof(meta), "%s/meta", D.dir);
	write_file(meta, "Content-Type: text/plain", 24);
	snprintf(body, sizeof(body), "%s/body", D.dir);
	write_file(body, "some bytes\n", 11);
	assert_int_equal(cli(body, NULL, out, sizeof(out), err, sizeof(err),
	    ARGV("put", "-x", "3600", "-M", "Content-Type: text/plain", "/cli/stat")), 0);
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("stat", "/cli/stat")), 0);
	assert_non_null(strstr(out, "uri:"));
	assert_non_null(strstr(out, "/cli/stat"));
	assert_non_null(strstr(out, "tier:     persistent"));
	assert_non_null(strstr(out, "Content-Type: text/plain"));
	assert_null(strstr(out, "expires:  never"));
	/* Ephemeral, metadata from a file. */
	{
		char at[420];

		snprintf(at, sizeof(at), "@%s", meta);
		assert_int_equal(cli(body, NULL, out, sizeof(out), err, sizeof(err),
		    ARGV("put", "-E", "-M", at, "/cli/eph")), 0);
		assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("stat", "/cli/eph")), 0);
		assert_non_null(strstr(out, "tier:     memory"));
		assert_non_null(strstr(out, "Content-Type: text/plain"));
	}
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("delete", "/cli/stat")), 0);
	/* 1: not found, with one line on stderr. */
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("get", "/cli/stat")), 1);
	assert_non_null(strstr(err, "NOT_FOUND"));
	assert_non_null(strchr(err, '\n'));
	assert_null(strchr(strchr(err, '\n') + 1, '\n'));
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("delete", "/cli/stat")), 1);
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("stat", "/cli/stat")), 1);
	/* 2: usage. */
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("frobnicate")), 2);
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("--frobnicate")), 2);
	assert_non_null(strstr(err, "unknown option --frobnicate"));
	/* -v and -h, and their long forms. */
	{
		char v[256];

		assert_int_equal(cli(NULL, NULL, v, sizeof(v), err, sizeof(err), ARGV("-v")), 0);
		assert_true(strncmp(v, "objmapper ", 10) == 0);
		assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("--version")), 0);
		assert_string_equal(out, v);
		assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("--help")), 0);
		assert_non_null(strstr(out, "usage: objmapper"));
		assert_non_null(strstr(out, "--help"));
	}
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("get")), 2);
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("-m", "teleport", "get", "/x")), 2);
	/* 3: anything else: a socket that does not exist, a bad URI. */
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err),
	    ARGV("-s", "/nonexistent/objmapper.sock", "ping")), 3);
	assert_non_null(strstr(err, "cannot connect"));
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("get", "no spaces allowed")), 3);
	/* -s overrides the environment. */
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("-s", D.sock, "ping")), 0);
	assert_true(strncmp(out, "ok", 2) == 0);
}

static void
test_stats_table(void **state)
{
	char out[16384], err[1024];

	(void)state;
	assert_int_equal(cli(NULL, NULL, out, sizeof(out), err, sizeof(err), ARGV("stats")), 0);
	assert_non_null(strstr(out, "requests_total{op=\"get\",status=\"ok\"}"));
	assert_non_null(strstr(out, "objects{tier=\"memory\"}"));
	assert_non_null(strstr(out, "descriptors_passed_total"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_every_mode_and_size),
		cmocka_unit_test(test_put_from_a_pipe),
		cmocka_unit_test(test_stat_delete_exit_statuses),
		cmocka_unit_test(test_stats_table),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, om_daemon_teardown);
}
