/*
 * Logging backend shared by all processes. A file target is opened in
 * append mode so that every process writes whole lines to the same file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"

static struct {
	enum om_log_target target;
	int level;
	int fd;
	char path[4096];
	char process[64];
} lg = { OM_LOG_STDERR, OM_LOG_INFO, -1, "", "" };

static const char *const level_names[] = { "error", "warn", "info", "debug" };
static const int level_syslog[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };

int
om_log_open(enum om_log_target target, const char *path, int level)
{
	int fd = -1;

	if (target == OM_LOG_FILE) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
		if (fd < 0)
			return -errno;
	}
	om_log_close();
	lg.target = target;
	lg.level = level;
	lg.fd = fd;
	if (target == OM_LOG_FILE)
		snprintf(lg.path, sizeof(lg.path), "%s", path);
	if (target == OM_LOG_SYSLOG)
		openlog("objmapperd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
	return 0;
}

int
om_log_reopen(void)
{
	int fd;

	if (lg.target != OM_LOG_FILE)
		return 0;
	fd = open(lg.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	if (lg.fd >= 0)
		close(lg.fd);
	lg.fd = fd;
	return 0;
}

void
om_log_close(void)
{
	if (lg.target == OM_LOG_FILE && lg.fd >= 0)
		close(lg.fd);
	if (lg.target == OM_LOG_SYSLOG)
		closelog();
	lg.fd = -1;
	lg.target = OM_LOG_STDERR;
}

void
om_log_set_level(int level)
{
	lg.level = level;
}

int
om_log_level(void)
{
	return lg.level;
}

void
om_log_set_process(const char *name)
{
	snprintf(lg.process, sizeof(lg.process), "%s", name);
}

void
om_log(int level, int err, const char *fmt, ...)
{
	char msg[2048], line[2400];
	va_list ap;
	int n, saved = errno;

	if (level > lg.level)
		return;
	if (level < 0)
		level = 0;
	if (level > OM_LOG_DEBUG)
		level = OM_LOG_DEBUG;

	va_start(ap, fmt);
	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		msg[0] = '\0';
	if (err != 0) {
		size_t l = strlen(msg);

		snprintf(msg + l, sizeof(msg) - l, ": %s", strerror(err < 0 ? -err : err));
	}

	if (lg.target == OM_LOG_SYSLOG) {
		if (lg.process[0])
			syslog(level_syslog[level], "%s: %s", lg.process, msg);
		else
			syslog(level_syslog[level], "%s", msg);
		errno = saved;
		return;
	}

	{
		struct timespec ts;
		struct tm tm;
		char when[40];

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
		n = snprintf(line, sizeof(line), "%s.%03ldZ [%s] %s%s(%ld): %s\n", when,
		    ts.tv_nsec / 1000000L, level_names[level], lg.process[0] ? lg.process : "",
		    lg.process[0] ? " " : "", (long)getpid(), msg);
	}
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) {
		n = sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	{
		int fd = (lg.target == OM_LOG_FILE && lg.fd >= 0) ? lg.fd : STDERR_FILENO;
		ssize_t w = write(fd, line, (size_t)n);

		(void)w;
	}
	errno = saved;
}

/* ---- rate-limited lines ------------------------------------------------ */

static om_log_limit_t *limits;
/* The limiters, their list and their counts: a store's reader threads
 * may share a call site. */
static pthread_mutex_t limits_lock = PTHREAD_MUTEX_INITIALIZER;

/* The count of a window that is over, if lines were left out. */
static void
limit_report(om_log_limit_t *l, uint64_t now)
{
	if (l->suppressed > 0)
		om_log(l->level, 0, "%s (the last of %llu such lines not logged in %llu s)", l->last,
		    (unsigned long long)l->suppressed, (unsigned long long)(now - l->window_ms + 999) / 1000);
	l->suppressed = 0;
	l->lines = 0;
	l->window_ms = now;
}

void
om_log_limited(om_log_limit_t *l, int level, int err, const char *fmt, ...)
{
	uint64_t now = om_clock_ms();
	va_list ap;
	int saved = errno;

	if (level > lg.level)
		return;
	pthread_mutex_lock(&limits_lock);
	if (!l->listed) {
		l->listed = 1;
		l->next = limits;
		limits = l;
		l->window_ms = now;
	}
	if (now - l->window_ms >= OM_LOG_WINDOW_MS)
		limit_report(l, now);
	if (l->lines < OM_LOG_BURST) {
		char msg[2048];

		l->lines++;
		pthread_mutex_unlock(&limits_lock);
		va_start(ap, fmt);
		if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
			msg[0] = '\0';
		va_end(ap);
		om_log(level, err, "%s", msg);
		errno = saved;
		return;
	}
	/* Kept to be shown with the count: the last one stands for all. */
	va_start(ap, fmt);
	if (vsnprintf(l->last, sizeof(l->last), fmt, ap) < 0)
		l->last[0] = '\0';
	va_end(ap);
	if (err != 0) {
		size_t n = strlen(l->last);

		snprintf(l->last + n, sizeof(l->last) - n, ": %s", strerror(err < 0 ? -err : err));
	}
	l->suppressed++;
	l->level = level;
	pthread_mutex_unlock(&limits_lock);
	errno = saved;
}

void
om_log_limits_flush(void)
{
	uint64_t now = om_clock_ms();

	pthread_mutex_lock(&limits_lock);
	for (om_log_limit_t *l = limits; l != NULL; l = l->next)
		if (l->suppressed > 0 && now - l->window_ms >= OM_LOG_WINDOW_MS)
			limit_report(l, now);
	pthread_mutex_unlock(&limits_lock);
}
