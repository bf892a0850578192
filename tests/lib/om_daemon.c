/*
 * Integration-test harness (see om_daemon.h): the real objmapperd on
 * private directories, started and stopped by the tests themselves.
 */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "index/om_index.h"
#include "om_daemon.h"
#include "om_test.h"

const char *
om_test_program(const char *name)
{
	static char path[PATH_MAX + 64];
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char *slash;

	assert_true(n > 0);
	self[n] = '\0';
	/* build/tests/test_x -> build/NAME (build/asan/... alike). */
	slash = strrchr(self, '/');
	*slash = '\0';
	slash = strrchr(self, '/');
	*slash = '\0';
	snprintf(path, sizeof(path), "%s/%s", self, name);
	return path;
}

static pid_t started[16];
static unsigned nstarted;
static int atexit_set;

void
om_daemon_write_conf(om_daemon_t *d, unsigned workers, const char *extra)
{
	FILE *f = fopen(d->conf, "w");

	assert_non_null(f);
	/* The test may bring its own [log] or [daemon] lines. */
	int own_log = extra != NULL && strstr(extra, "[log]") != NULL;
	int own_daemon = extra != NULL && strstr(extra, "[daemon]") != NULL;

	if (!own_daemon)
		fprintf(f, "[daemon]\nworkers = %u\npid_file = objmapperd.pid\nshutdown_timeout = 10s\n",
		    workers);
	if (!own_log)
		fprintf(f, "[log]\ntarget = stderr\nlevel = info\n");
	fprintf(f,
	    "[index]\n"
	    "capacity = 100000\n"
	    "[memory]\n"
	    "path = %s\n"
	    "%s\n"
	    "[persistent]\n"
	    "path = objects\n"
	    "%s\n"
	    "[listen.local]\n"
	    "type = unix\n"
	    "path = objmapper.sock\n"
	    "%s\n",
	    d->mem, d->mem_conf[0] ? d->mem_conf : "size = 256M", d->disk_conf[0] ? d->disk_conf : "size = 2G",
	    extra ? extra : "");
	fclose(f);
}

void
om_daemon_init(om_daemon_t *d, unsigned workers, const char *extra)
{
	const char *m = getenv("OM_TEST_MEMDIR");

	memset(d, 0, sizeof(*d));
	om_test_mkdtemp(d->dir, sizeof(d->dir), NULL);
	om_test_mkdtemp(d->mem, sizeof(d->mem), m ? m : "/dev/shm");
	snprintf(d->conf, sizeof(d->conf), "%s/objmapper.conf", d->dir);
	snprintf(d->sock, sizeof(d->sock), "%s/objmapper.sock", d->dir);
	snprintf(d->pidfile, sizeof(d->pidfile), "%s/objmapperd.pid", d->dir);
	snprintf(d->log, sizeof(d->log), "%s/daemon.log", d->dir);
	om_daemon_write_conf(d, workers, extra);
}

void
om_daemon_init_files(om_daemon_t *d, unsigned workers, const char *extra)
{
	om_daemon_init(d, workers, extra);
	snprintf(d->mem_conf, sizeof(d->mem_conf), "size = 256M\npack_max = 0");
	snprintf(d->disk_conf, sizeof(d->disk_conf), "size = 2G\npack_max = 0");
	om_daemon_write_conf(d, workers, extra);
}

static int
answers(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), ok;

	if (strlen(path) >= sizeof(sa.sun_path))
		return 0;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}


/* At exit, daemons a failed test left running go too (with their children,
 * which die with their master). */
static void
kill_started(void)
{
	for (unsigned i = 0; i < 16 && i < nstarted; i++)
		if (started[i] > 0 && kill(started[i], 0) == 0)
			kill(started[i], SIGKILL);
}

void
om_daemon_start(om_daemon_t *d)
{
	const char *prog = om_test_program("objmapperd");
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/* Close-on-exec: dup2 gives 1 and 2 to the daemon, and the
		 * original must not pass into it as a stray descriptor. */
		int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

		/* A test that dies (or fails an assertion and exits) takes its
		 * daemon with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);

		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		if (d->before_exec != NULL)
			d->before_exec();
		if (d->detached)
			execl(prog, "objmapperd", "-f", d->conf, (char *)NULL);
		else
			execl(prog, "objmapperd", "-F", "-f", d->conf, (char *)NULL);
		_exit(127);
	}
	if (d->detached) {
		/* It forks and its first process exits; the master writes its pid. */
		int status = om_test_wait(pid);
		FILE *f;

		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			fail_msg("objmapperd failed to start (status %d):\n%s", status, om_daemon_log(d));
		for (int i = 0; i < 500 && (f = fopen(d->pidfile, "r")) == NULL; i++)
			usleep(10000);
		assert_non_null(f);
		for (int i = 0; i < 500; i++) {
			int p = 0;

			rewind(f);
			if (fscanf(f, "%d", &p) == 1 && p > 0) {
				pid = p;
				break;
			}
			usleep(10000);
		}
		fclose(f);
		started[nstarted++ % 16] = pid;
	}
	d->pid = pid;
	if (!atexit_set) {
		atexit(kill_started);
		atexit_set = 1;
	}
	started[nstarted++ % 16] = pid;
	for (int i = 0; i < 1000; i++) {
		int status;

		if (answers(d->sock))
			return;
		if (waitpid(pid, &status, WNOHANG) == pid)
			fail_msg("objmapperd exited at start (status %d):\n%s", status, om_daemon_log(d));
		usleep(10000);
	}
	fail_msg("objmapperd did not answer on %s within 10 s:\n%s", d->sock, om_daemon_log(d));
}

void
om_daemon_kill(om_daemon_t *d, int sig)
{
	assert_int_equal(kill(d->pid, sig), 0);
}

int
om_daemon_wait(om_daemon_t *d, int timeout_ms)
{
	for (int t = 0; t < timeout_ms; t += 10) {
		int status;

		if (d->detached) {
			/* Not our child: gone when kill(0) fails; its status is
			 * taken as a clean exit. */
			if (kill(d->pid, 0) != 0) {
				d->pid = 0;
				return 0;
			}
		} else if (waitpid(d->pid, &status, WNOHANG) == d->pid) {
			d->pid = 0;
			return status;
		}
		usleep(10000);
	}
	kill(d->pid, SIGKILL);
	waitpid(d->pid, NULL, 0);
	d->pid = 0;
	return -1;
}

/* A sanitizer report in any of the daemon's processes fails the test
 * (make check-asan builds the daemon with them too). */
static void
assert_no_sanitizer_report(const om_daemon_t *d)
{
	static const char *const marks[] = { "AddressSanitizer", "LeakSanitizer", "runtime error:",
		"assertion failed" };
	char *all = NULL;
	size_t len = 0;
	FILE *f = fopen(d->log, "r");

	if (f == NULL)
		return;
	for (;;) {
		char chunk[65536];
		size_t n = fread(chunk, 1, sizeof(chunk), f);
		char *p;

		if (n == 0)
			break;
		p = realloc(all, len + n + 1);
		assert_non_null(p);
		all = p;
		memcpy(all + len, chunk, n);
		len += n;
		all[len] = '\0';
	}
	fclose(f);
	for (size_t i = 0; all != NULL && i < sizeof(marks) / sizeof(marks[0]); i++) {
		if (strstr(all, marks[i]) != NULL) {
			free(all);
			fail_msg("objmapperd reported \"%s\":\n%s", marks[i], om_daemon_log(d));
		}
	}
	free(all);
}

void
om_daemon_stop(om_daemon_t *d)
{
	int status;

	if (d->pid <= 0)
		return;
	om_daemon_kill(d, SIGQUIT);
	status = om_daemon_wait(d, 20000);
	if (!(status >= 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0))
		fail_msg("objmapperd did not stop cleanly (status %d):\n%s", status, om_daemon_log(d));
	assert_no_sanitizer_report(d);
}

void
om_daemon_cleanup(om_daemon_t *d)
{
	if (d->pid > 0) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, NULL, 0);
		d->pid = 0;
	}
	assert_no_sanitizer_report(d);
	om_test_rmtree(d->dir);
	om_test_rmtree(d->mem);
}

int
om_proc_title(pid_t pid, char *buf, size_t n)
{
	char path[64];
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	r = read(fd, buf, n - 1);
	close(fd);
	if (r < 0)
		return -1;
	for (ssize_t i = 0; i < r; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[r] = '\0';
	return 0;
}

int
om_daemon_children(const om_daemon_t *d, pid_t *pids, int n, const char *title)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	int found = 0;

	assert_non_null(dir);
	while ((de = readdir(dir)) != NULL && found < n) {
		char path[300], buf[512];
		int ppid = -1, fd;
		ssize_t r;
		char *p;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		r = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (r <= 0)
			continue;
		buf[r] = '\0';
		/* pid (comm) state ppid: comm may hold spaces, so from the last ')'. */
		p = strrchr(buf, ')');
		if (p == NULL || sscanf(p + 1, " %*c %d", &ppid) != 1 || ppid != d->pid)
			continue;
		if (title != NULL) {
			if (om_proc_title((pid_t)atoi(de->d_name), buf, sizeof(buf)) != 0 || !strstr(buf, title))
				continue;
		}
		pids[found++] = (pid_t)atoi(de->d_name);
	}
	closedir(dir);
	return found;
}

int
om_wait_until(int (*fn)(void *), void *arg, int timeout_ms)
{
	for (int t = 0; t <= timeout_ms; t += 20) {
		if (fn(arg))
			return 1;
		usleep(20000);
	}
	return 0;
}

int
om_daemon_check_index(const om_daemon_t *d, char *err, size_t n)
{
	char dir[64];
	struct dirent *de;
	DIR *fds;
	int rc = -ENOENT;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)d->pid);
	fds = opendir(dir);
	assert_non_null(fds);
	while ((de = readdir(fds)) != NULL) {
		char link[600], target[256];
		ssize_t r;

		snprintf(link, sizeof(link), "%s/%s", dir, de->d_name);
		r = readlink(link, target, sizeof(target) - 1);
		if (r <= 0)
			continue;
		target[r] = '\0';
		/* The segment: a memfd, or the file it is kept in across
		 * restarts ([index] file, by default beside the pid file). */
		if (strstr(target, "memfd:objmapper-index") != NULL ||
		    (strstr(target, "objmapperd.index") != NULL && strstr(target, "(deleted)") == NULL)) {
			om_index_t *ix;
			int fd = open(link, O_RDWR | O_CLOEXEC);

			assert_true(fd >= 0);
			assert_int_equal(om_index_attach(fd, &ix), 0);
			rc = om_index_check(ix, err, n);
			om_index_close(ix);
			break;
		}
	}
	closedir(fds);
	return rc;
}

const char *
om_daemon_log(const om_daemon_t *d)
{
	static char buf[16384];
	int fd = open(d->log, O_RDONLY | O_CLOEXEC);
	ssize_t n = 0;
	off_t size;

	buf[0] = '\0';
	if (fd < 0)
		return buf;
	/* The end of it, where the news is. */
	size = lseek(fd, 0, SEEK_END);
	if (size > (off_t)sizeof(buf) - 1)
		lseek(fd, size - (off_t)sizeof(buf) + 1, SEEK_SET);
	else
		lseek(fd, 0, SEEK_SET);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

void
om_daemon_up(om_daemon_t *d, unsigned workers, const char *extra)
{
	om_daemon_init(d, workers, extra);
	om_daemon_start(d);
}

int
om_daemon_teardown(void **state)
{
	om_daemon_t *d = *state;

	om_daemon_stop(d);
	om_daemon_cleanup(d);
	return 0;
}

om_client_t *
om_test_connect(const char *addr, unsigned flags)
{
	om_client_t *c = NULL;

	if (om_client_connect(addr, flags, &c) != 0)
		fail_msg("connect %s: %s", addr, c != NULL ? om_client_message(c) : "?");
	return c;
}

om_info_t
om_test_put_filled(om_client_t *c, const char *uri, size_t len, uint64_t seed)
{
	unsigned char *buf = malloc(len ? len : 1);
	om_info_t info;

	assert_non_null(buf);
	om_test_fill(buf, len, seed);
	if (om_client_put(c, uri, buf, len, NULL, &info) != 0)
		fail_msg("PUT %s (%zu bytes): %s", uri, len, om_client_message(c));
	free(buf);
	return info;
}

void
om_daemon_obj_path(const om_daemon_t *d, char *buf, size_t n, uint64_t id)
{
	snprintf(buf, n, "%s/objects/%02x/%016llx", d->dir, (unsigned)(id & 0xff), (unsigned long long)id);
}

int
om_test_free_port(void)
{
	for (int tries = 0; tries < 50; tries++) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t len = sizeof(sa);
		int t = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int u = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), port;

		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(bind(t, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(t, (struct sockaddr *)&sa, &len), 0);
		port = ntohs(sa.sin_port);
		/* Any address: free there, it is free on loopback too. */
		sa.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(u, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			close(t);
			close(u);
			return port;
		}
		close(t);
		close(u);
	}
	fail_msg("no free port");
	return 0;
}

static int
one_worker(void *arg)
{
	void **a = arg;

	return om_daemon_children(a[0], a[1], 8, "worker process") == 1;
}

pid_t
om_daemon_only_worker(const om_daemon_t *d)
{
	pid_t pids[8];
	void *arg[2] = { (void *)d, pids };

	if (!om_wait_until(one_worker, arg, 5000))
		fail_msg("not exactly one worker process:\n%s", om_daemon_log(d));
	return pids[0];
}
