/*
 * Core helpers shared by every process: panic, error strings.
 */
#include <string.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"

void
om_panic(const char *file, int line, const char *cond)
{
	om_log_err(0, "assertion failed: %s:%d: %s", file, line, cond);
	abort();
}

const char *
om_strerror(int err)
{
	if (err < 0)
		err = -err;
	return strerror(err);
}
