/*
 * Core helpers shared by every process: panic, error strings, growing an
 * array.
 */
#include <stdint.h>
#include <stdlib.h>
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

int
om_grow(void *arrayp, size_t *cap, size_t size)
{
	size_t n = *cap ? *cap * 2 : 64;
	void *old, *p;

	memcpy(&old, arrayp, sizeof(old));
	if (n < *cap || n > SIZE_MAX / size || (p = realloc(old, n * size)) == NULL)
		return -ENOMEM;
	memcpy(arrayp, &p, sizeof(p));
	*cap = n;
	return 0;
}
