/*
 * Logging for every process: stderr in the foreground, syslog or a file as
 * a daemon. Each line names the process (master, worker N, manager) and
 * its pid. Not async-signal-safe: never call from a signal handler.
 */
#ifndef OM_LOG_H
#define OM_LOG_H

#include "core/om_core.h"

enum om_log_level {
	OM_LOG_ERR = 0,
	OM_LOG_WARN,
	OM_LOG_INFO,
	OM_LOG_DEBUG,
};

enum om_log_target {
	OM_LOG_STDERR = 0,
	OM_LOG_SYSLOG,
	OM_LOG_FILE,
};

/* Returns 0 or -errno (the file could not be opened). */
int om_log_open(enum om_log_target target, const char *path, int level);
/* Reopens the log file after rotation (SIGUSR1); 0 or -errno. */
int om_log_reopen(void);
void om_log_close(void);
void om_log_set_level(int level);
int om_log_level(void);
/* "master", "worker 3", "cache manager": prefixed to every line. */
void om_log_set_process(const char *name);

/*
 * err is an errno value (positive or negative) appended as ": strerror",
 * or 0 for none. Shape for system calls:
 *   om_log_err(errno, "store: openat(\"%s\") failed", name);
 */
void om_log(int level, int err, const char *fmt, ...) OM_PRINTF(3, 4);

/*
 * Lines that a client or a shortage can repeat (a failed accept, a failed
 * send, an I/O error per request) go through a limiter kept at their call
 * site: at most OM_LOG_BURST lines per OM_LOG_WINDOW_MS are written; the
 * others are counted, and once the window is over one line repeats the
 * last of them with the count. A process with an event loop calls
 * om_log_limits_flush() about once a second, so that the count comes even
 * if the line does not recur.
 */
#define OM_LOG_BURST     5
#define OM_LOG_WINDOW_MS 5000u

typedef struct om_log_limit {
	struct om_log_limit *next; /* every limiter used, for the flush */
	int listed;
	uint64_t window_ms;        /* when the current window began */
	unsigned lines;            /* lines written in it */
	uint64_t suppressed;       /* lines counted, not written */
	int level;
	char last[400];            /* the last line not written */
} om_log_limit_t;

void om_log_limited(om_log_limit_t *l, int level, int err, const char *fmt, ...) OM_PRINTF(4, 5);
void om_log_limits_flush(void);

#define OM_LOG_LIMITED(level, err, ...) \
	do { \
		static om_log_limit_t om_log_lim_; \
		om_log_limited(&om_log_lim_, (level), (err), __VA_ARGS__); \
	} while (0)
#define om_log_err_limited(err, ...)  OM_LOG_LIMITED(OM_LOG_ERR, (err), __VA_ARGS__)
#define om_log_warn_limited(err, ...) OM_LOG_LIMITED(OM_LOG_WARN, (err), __VA_ARGS__)

#define om_log_err(err, ...)   om_log(OM_LOG_ERR, (err), __VA_ARGS__)
#define om_log_warn(err, ...)  om_log(OM_LOG_WARN, (err), __VA_ARGS__)
#define om_log_info(err, ...)  om_log(OM_LOG_INFO, (err), __VA_ARGS__)
#define om_log_debug(err, ...) \
	do { if (om_log_level() >= OM_LOG_DEBUG) om_log(OM_LOG_DEBUG, (err), __VA_ARGS__); } while (0)

#endif
