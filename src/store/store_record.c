/*
 * Where a tier keeps its objects' records (URI, metadata, checksum): in
 * the extended attribute user.objmapper of each object file, or, on a
 * filesystem that stores no user extended attributes (tmpfs before Linux
 * 6.6, ramfs), in a record file "ab/ID.r" beside it. Runs in every process
 * that reads or writes objects.
 *
 * A record file is published before its object and removed after it, so
 * that an object file never exists without its record; a record without
 * its object (a crash between the two) is removed by the next rebuild.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "store/store_int.h"

void
om_rec_name(uint64_t id, char *buf, size_t n)
{
	snprintf(buf, n, "%02x/%016" PRIx64 OM_REC_SUFFIX, (unsigned)(id & 0xff), id);
}

/* Reads a whole record file (at most cap bytes). */
static ssize_t
read_file_at(int dirfd, const char *name, uint8_t *buf, size_t cap)
{
	int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	size_t have = 0;
	ssize_t n;

	if (fd < 0)
		return errno == ENOENT ? -ENODATA : -errno;
	for (;;) {
		n = pread(fd, buf + have, cap - have, (off_t)have);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		have += (size_t)n;
		if (have == cap) {
			uint8_t extra;

			/* A record never fills the buffer: one that does is not ours. */
			n = pread(fd, &extra, 1, (off_t)have);
			if (n > 0)
				n = -1, errno = ERANGE;
			break;
		}
	}
	if (n < 0) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	return (ssize_t)have;
}

ssize_t
om_rec_read(om_store_t *st, int tier, uint64_t id, int fd, uint8_t *buf, size_t cap)
{
	om_tier_t *t = &st->tier[tier];
	char name[OM_NAME_MAX];
	ssize_t n;

	if (t->rec_files) {
		om_rec_name(id, name, sizeof(name));
		return read_file_at(t->dirfd, name, buf, cap);
	}
	if (fd >= 0) {
		n = fgetxattr(fd, OM_META_XATTR, buf, cap);
		return n >= 0 ? n : -errno;
	}
	om_store_object_name(id, name, sizeof(name));
	return om_os_getxattr_at(t->dirfd, t->path, name, OM_META_XATTR, buf, cap);
}

ssize_t
om_rec_read_at(om_store_t *st, int tier, int dirfd, const char *dirpath, const char *name,
    uint8_t *buf, size_t cap)
{
	char rname[OM_NAME_MAX];

	if (!st->tier[tier].rec_files)
		return om_os_getxattr_at(dirfd, dirpath, name, OM_META_XATTR, buf, cap);
	snprintf(rname, sizeof(rname), "%s" OM_REC_SUFFIX, name);
	return read_file_at(dirfd, rname, buf, cap);
}

int
om_rec_prepare(om_store_t *st, int tier, uint64_t id, int fd, const uint8_t *rec, size_t len,
    om_store_file_t *r)
{
	om_tier_t *t = &st->tier[tier];
	int rc;

	if (!t->rec_files) {
		if (fsetxattr(fd, OM_META_XATTR, rec, len, 0) == 0)
			return 0;
		rc = -errno;
		return rc == -E2BIG || rc == -ERANGE ? -EMSGSIZE : rc;
	}
	/* A new file like the object. Read-only from the start: it needs no
	 * attribute, so no write permission. */
	if ((rc = om_store_file_new(st, tier, id, "rtmp", O_EXCL, 0440, r)) != 0)
		return rc;
	if ((rc = om_os_write_all(r->fd, rec, len)) != 0 ||
	    (st->durability == OM_DURABLE_FSYNC && fsync(r->fd) != 0)) {
		if (rc == 0)
			rc = -errno;
		om_store_file_discard(st, tier, r);
		return rc;
	}
	return 0;
}

int
om_rec_publish(om_store_t *st, int tier, uint64_t id, om_store_file_t *r)
{
	char name[OM_NAME_MAX];
	int rc;

	if (!st->tier[tier].rec_files)
		return 0;
	om_rec_name(id, name, sizeof(name));
	rc = om_store_file_publish(st, tier, r, name);
	if (rc == 0) {
		close(r->fd);
		r->fd = -1;
	}
	return rc;
}

void
om_rec_unlink(om_store_t *st, int tier, uint64_t id)
{
	om_tier_t *t = &st->tier[tier];
	char name[OM_NAME_MAX], aside[48];
	int e = 0;

	if (!t->rec_files)
		return;
	om_rec_name(id, name, sizeof(name));
	for (int tries = 0; tries < 8; tries++) {
		if (unlinkat(t->dirfd, name, 0) == 0)
			return;
		if ((e = errno) != EINTR)
			break;
	}
	if (e == ENOENT)
		return;
	/* Left beside no object, the next rebuild would remove it; moved to
	 * tmp/ (emptied at every start) it is out of the way until then. */
	snprintf(aside, sizeof(aside), "tmp/%016" PRIx64 ".r.dropped", id);
	if (renameat(t->dirfd, name, t->dirfd, aside) != 0)
		om_log_warn(e, "store: unlinkat(\"%s/%s\") failed; the next start removes it", t->path, name);
}

int
om_store_read_record(om_store_t *st, int tier, uint64_t id, void *buf, size_t cap)
{
	return (int)om_rec_read(st, tier, id, -1, buf, cap);
}

int
om_store_records_in_files(const om_store_t *st, int tier)
{
	return st->tier[tier].rec_files;
}
