/*
 * Helpers shared by the test binaries: temporary directories, forking
 * helpers and the cmocka includes in the order cmocka needs them.
 */
#ifndef OM_TEST_H
#define OM_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sys/types.h>

/* Creates a fresh directory under base (NULL = $TMPDIR or /tmp); asserts. */
void om_test_mkdtemp(char *out, size_t n, const char *base);
/* Removes a tree (like rm -rf); returns 0 or -errno. */
int om_test_rmtree(const char *path);
/* Counts regular files under a tree, and those whose name contains `part`;
 * objects' record files ("ID.r", beside their objects where the
 * filesystem has no user extended attributes) and a tier's stamp
 * and writer (.objmapper-stamp, .objmapper-writer) are not counted. */
long om_test_count_files(const char *path, const char *part, long *matching);
/* Calls fn with where each descriptor of pid points (its /proc/PID/fd
 * link; "" if it could not be read); returns how many it has, 0 if pid is
 * gone. */
unsigned om_test_fd_targets(pid_t pid, void (*fn)(void *arg, const char *target), void *arg);
/* waitpid until the child ends; returns its wait status. */
int om_test_wait(pid_t pid);
/* Fills buf with bytes derived from seed (reproducible object contents). */
void om_test_fill(void *buf, size_t len, uint64_t seed);
/* A small fast PRNG (xorshift64*), per caller state. */
uint64_t om_test_rand(uint64_t *state);
/*
 * An index test hook (om_index_set_hook(ix, om_test_pause_hook, &pause)):
 * at step `at` of a mutation it writes the byte 'x' to `fd` and waits
 * there for good, for the test to kill the process at that point.
 */
typedef struct {
	int fd;
	unsigned at;
} om_test_pause_t;
void om_test_pause_hook(void *arg, unsigned step);

/* The directory under which tests put memory tiers: $OM_TEST_MEMDIR (a
 * ramfs in tests/check-ramfs) or /dev/shm. */
const char *om_test_memdir(void);
/* A memory tier's limit for a test that wants `want` (0 = none): on a
 * filesystem that reports no size (ramfs), where a tier needs a limit in
 * bytes, 0 becomes 1 GiB. */
uint64_t om_test_mem_limit(uint64_t want);
/* CPU time (user + system) of a process in clock ticks, from
 * /proc/PID/stat; asserts. */
long om_test_cpu_ticks(pid_t pid);

/* Milliseconds of the monotonic clock. */
uint64_t om_test_now_ms(void);
/* Resident memory of a process in KiB (VmRSS), or -1 if it cannot be
 * read. */
long om_test_rss_kb(pid_t pid);
/* A "NAME: N kB" line of /proc/PID/status (VmRSS, RssAnon, RssFile,
 * RssShmem...), or -1 if it cannot be read. */
long om_test_status_kb(pid_t pid, const char *field);

/* True when running under valgrind (make check-valgrind). */
int om_test_under_valgrind(void);

#endif
