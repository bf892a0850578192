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

#define om_log_err(err, ...)   om_log(OM_LOG_ERR, (err), __VA_ARGS__)
#define om_log_warn(err, ...)  om_log(OM_LOG_WARN, (err), __VA_ARGS__)
#define om_log_info(err, ...)  om_log(OM_LOG_INFO, (err), __VA_ARGS__)
#define om_log_debug(err, ...) \
	do { if (om_log_level() >= OM_LOG_DEBUG) om_log(OM_LOG_DEBUG, (err), __VA_ARGS__); } while (0)

#endif
