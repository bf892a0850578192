/*
 * Starts and stops the real objmapperd for integration tests: a private
 * directory with the configuration, the socket and the persistent tier
 * (under $TMPDIR or /tmp), the memory tier under /dev/shm.
 */
#ifndef OM_DAEMON_H
#define OM_DAEMON_H

#include <stddef.h>
#include <sys/types.h>

#include <objmapper/objmapper.h>

typedef struct {
	char dir[256];   /* configuration, socket, pid file, log, persistent tier */
	char mem[256];   /* memory tier */
	char conf[320];
	char sock[320];
	char pidfile[320];
	char log[320];
	char extra[4096]; /* configuration text appended by the test */
	char mem_conf[256];  /* lines of [memory] besides path; "" = "size = 256M" */
	char disk_conf[256]; /* lines of [persistent] besides path; "" = "size = 2G" */
	pid_t pid;       /* the master */
	int detached;    /* start it as a daemon (no -F): its pid from the pid file */
	void (*before_exec)(void); /* if set, run in the child just before the exec */
} om_daemon_t;

/* Path of a program built beside the tests (objmapperd, objmapper). */
const char *om_test_program(const char *name);

/* Prepares directories and writes the configuration (workers, extra
 * lines); does not start anything. */
void om_daemon_init(om_daemon_t *d, unsigned workers, const char *extra);
/* As om_daemon_init, with pack_max = 0 in both tiers: every object a
 * file of its own, for tests of what a file object does (its mapping,
 * its descriptor, its file changed behind the daemon's back). */
void om_daemon_init_files(om_daemon_t *d, unsigned workers, const char *extra);
/* (Re)writes the configuration file with the given extra text. */
void om_daemon_write_conf(om_daemon_t *d, unsigned workers, const char *extra);
/* Starts objmapperd -F and waits until its socket answers (asserts). */
void om_daemon_start(om_daemon_t *d);
/* Signals the master. */
void om_daemon_kill(om_daemon_t *d, int sig);
/* Waits for the master to exit; returns its wait status, or -1 after
 * timeout_ms (the daemon is then killed). */
int om_daemon_wait(om_daemon_t *d, int timeout_ms);
/* QUIT and wait; asserts a clean exit. */
void om_daemon_stop(om_daemon_t *d);
/* Removes every directory. */
void om_daemon_cleanup(om_daemon_t *d);
/*
 * cmocka group fixtures. A setup calls om_daemon_up (init, then start)
 * and sets *state to its daemon; om_daemon_teardown stops the daemon
 * *state points to (asserting a clean exit) and removes its directories.
 */
void om_daemon_up(om_daemon_t *d, unsigned workers, const char *extra);
int om_daemon_teardown(void **state);
/* Connects to addr (a socket path or tcp:// udp:// address) with flags,
 * or fails the test with the library's message. */
om_client_t *om_test_connect(const char *addr, unsigned flags);
/* PUTs len bytes made by om_test_fill(seed) at uri, or fails the test;
 * the stored object's fields. */
om_info_t om_test_put_filled(om_client_t *c, const char *uri, size_t len, uint64_t seed);
/* The path of object id's file in d's persistent tier. */
void om_daemon_obj_path(const om_daemon_t *d, char *buf, size_t n, uint64_t id);
/* A loopback port free for TCP, and for UDP on any address, for now. */
int om_test_free_port(void);
/* The daemon's only worker process (its title is set a moment after the
 * socket answers); fails the test if there is not exactly one within 5 s. */
pid_t om_daemon_only_worker(const om_daemon_t *d);
/* The master's children: fills pids, returns how many (at most n). With
 * title non-NULL, only those whose process title contains it. */
int om_daemon_children(const om_daemon_t *d, pid_t *pids, int n, const char *title);
/* Process title (cmdline) of a pid, spaces for NULs. */
int om_proc_title(pid_t pid, char *buf, size_t n);
/* Waits until fn(arg) returns true, polling every 20 ms; false on timeout. */
int om_wait_until(int (*fn)(void *), void *arg, int timeout_ms);
/* Maps the running daemon's index (the master's memfd, through /proc)
 * and runs the full consistency check on it: 0, or -EUCLEAN with err. */
int om_daemon_check_index(const om_daemon_t *d, char *err, size_t n);
/* The daemon's log so far (static buffer). */
const char *om_daemon_log(const om_daemon_t *d);

#endif
