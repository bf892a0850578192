/*
 * Internals of the objmapper command (objmapper.c, cli_io.c, cli_stats.c):
 * descriptor I/O that survives EINTR, short writes and non-blocking
 * descriptors inherited from the shell, and the formats of stats. Runs in
 * the user's process.
 */
#ifndef OM_CLI_INT_H
#define OM_CLI_INT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Writes all n bytes at fd's offset. 0 or -errno. */
int om_cli_write_all(int fd, const void *buf, size_t n);

/*
 * Copies bytes [0, len) of in to out at out's offset, in the kernel when it
 * can: sendfile, else splice through a pipe, else pread and write. in is
 * only read at explicit offsets, so its file offset (possibly shared with
 * other clients) is left alone. 0, -ENODATA if in holds fewer than len
 * bytes, or -errno.
 */
int om_cli_copy_fd(int out, int in, uint64_t len);

/*
 * Reads fd to its end into a malloc'd buffer (*buf, never NULL on
 * success; the caller frees it). -EFBIG as soon as more than limit bytes
 * come, else 0 or -errno.
 */
int om_cli_read_all(int fd, uint64_t limit, void **buf, size_t *len);

/*
 * STATS text ("name value" and "name{k="v",...} value" lines) as two
 * aligned columns, or as one JSON object: a plain metric is "name": N, a
 * labeled family "name": [{"k": "v", ..., "value": N}, ...]. The JSON
 * form returns -1 if out of memory, else 0.
 */
void om_cli_stats_table(FILE *m, const char *text);
int om_cli_stats_json(FILE *m, const char *text);

#endif
