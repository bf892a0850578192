/*
 * Objects as both protocols serve them (object.h). Every GET of either
 * protocol goes through om_obj_get: the worker's cache of open descriptors
 * (one open file description for all) serves the reads the worker does
 * itself (pread, sendfile: at explicit offsets) and the descriptors passed
 * to clients that read only at explicit offsets; a client that may read(2)
 * gets a new description at offset 0. A hit saves the open(2) and close(2)
 * of the object's file, and the read of its record. Worker processes.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "proto/om_proto.h"
#include "server/object.h"

/* Bytes of a pack at off: from its mapping (a SIGBUS caught), or pread. */
static int
pack_read(om_fdc_t *fdc, const om_fdref_t *ref, uint64_t off, void *buf, size_t len)
{
	const uint8_t *m = om_fdc_map_pack(fdc, ref);

	if (m != NULL && off + len <= OM_STORE_PACK_BYTES) {
		if (om_os_copy_mapped(buf, m + off, len) == 0)
			return 0;
		om_fdc_map_fails(fdc, ref);
	}
	return om_os_pread_all(ref->fd, buf, len, off);
}

/*
 * A packed object: the worker's descriptor (and mapping) of its pack,
 * shared by every object in it, and its record checked (it is this
 * object's: a pack number is used again once its pack is gone). 1 if the
 * entry is not the object's (a compaction moved it: look it up again).
 */
static int
get_packed(om_fdc_t *fdc, om_store_t *st, const om_get_t *g, const om_obj_want_t *want, om_obj_t *o,
    uint8_t *meta, size_t cap)
{
	uint32_t no = om_store_pack_no(&g->obj), rlen;
	uint64_t pid = OM_STORE_PACK_ID(no), at;
	uint8_t mark[8], rec[OM_PROTO_META_MAX + 1024 + 64];
	uint32_t mlen = 0;
	int64_t mtime = 0;
	int rc;

	o->ref = om_fdc_get(fdc, g->tier, pid);
	if (o->ref.fd < 0) {
		int fd = om_store_open_pack(st, g->tier, no);

		if (fd == -ENOENT)
			return 1;
		if (fd < 0)
			return fd;
		o->ref = om_fdc_add(fdc, g->tier, pid, fd);
	}
	o->base = om_store_pack_off(&g->obj);
	if ((rc = pack_read(fdc, &o->ref, o->base - 8, mark, sizeof(mark))) != 0 ||
	    (rc = om_store_pack_rec_at(&g->obj, mark, &at, &rlen)) != 0 || rlen > sizeof(rec) ||
	    (rc = pack_read(fdc, &o->ref, at, rec, rlen)) != 0 ||
	    (rc = om_store_pack_meta(&g->obj, rec, rlen, want->meta ? meta : NULL, cap, &mlen, &mtime)) != 0) {
		om_fdref_put(&o->ref);
		return rc == -ENOENT || rc == -EIO ? 1 : rc;
	}
	o->packed = true;
	o->tier = g->tier;
	o->obj = g->obj;
	o->meta_len = want->meta ? mlen : 0;
	o->mtime = want->meta ? mtime : 0;
	return 0;
}

int
om_obj_get(om_fdc_t *fdc, om_store_t *st, const void *uri, size_t len, const om_obj_want_t *want,
    om_obj_t *o, uint8_t *meta, size_t cap)
{
	om_get_t g;
	bool shared;
	int rc;

	memset(o, 0, sizeof(*o));
	o->ref = OM_FDREF_NONE;
	if ((rc = om_store_locate(st, uri, len, want->sflags, &g)) != 0)
		return rc;
	for (int tries = 0; g.obj.flags & OM_IX_F_PACKED; tries++) {
		if ((rc = get_packed(fdc, st, &g, want, o, meta, cap)) <= 0)
			return rc;
		/* Moved by a compaction (or gone): as it is now. */
		if (tries == 3 || om_store_locate(st, uri, len, want->sflags | OM_GET_NOTOUCH |
		    OM_GET_NOCOUNT, &g) != 0)
			return -ENOENT;
	}
	shared = !want->private_all && g.obj.size <= want->private_over;
	if (shared)
		o->ref = om_fdc_get(fdc, g.tier, g.obj.id);
	if (o->ref.fd < 0) {
		g.fd = om_store_open_entry(st, g.tier, &g.obj);
		if (g.fd == -ENOENT) {
			/* Raced with a replace, or a copy dropped: counted already. */
			if ((rc = om_store_get(st, uri, len, want->sflags | OM_GET_NOTOUCH | OM_GET_NOCOUNT,
			    &g)) != 0)
				return rc;
			o->ref = (om_fdref_t){ g.fd, NULL };
		} else if (g.fd < 0) {
			return g.fd;
		} else {
			o->ref = shared ? om_fdc_add(fdc, g.tier, g.obj.id, g.fd) : (om_fdref_t){ g.fd, NULL };
		}
	}
	o->tier = g.tier;
	o->obj = g.obj;
	if (!want->meta)
		return 0;
	if (o->ref.e != NULL && o->ref.e->has_meta) {
		o->meta_len = o->ref.e->meta_len;
		o->mtime = o->ref.e->mtime;
		if (o->meta_len)
			memcpy(meta, o->ref.e->meta, o->meta_len);
		return 0;
	}
	g.fd = o->ref.fd;
	if ((rc = om_store_read_meta(st, &g, meta, cap, &o->meta_len, &o->mtime)) != 0) {
		om_fdref_put(&o->ref);
		o->bad_record = true;
		return rc;
	}
	om_fdc_set_meta(&o->ref, meta, o->meta_len, o->mtime);
	return 0;
}

/*
 * A hot small object is copied from a mapping: no pread, a system call
 * less on each of its GETs. Only hot ones (OM_FDC_MAP_HITS): a mapping
 * costs an mmap, a page fault and, when the entry goes, a munmap.
 */
ssize_t
om_obj_read(om_fdc_t *fdc, const om_obj_t *o, uint64_t off, void *buf, size_t len)
{
	const uint8_t *m;
	ssize_t n;

	if (len == 0)
		return 0;
	if (o->packed) {
		int rc = pack_read(fdc, &o->ref, o->base + off, buf, len);

		return rc == 0 ? (ssize_t)len : rc == -EIO ? 0 : rc;
	}
	if ((m = om_fdc_map(fdc, &o->ref, o->obj.size)) != NULL) {
		if (om_os_copy_mapped(buf, m + off, len) == 0)
			return (ssize_t)len;
		om_fdc_map_fails(fdc, &o->ref);
		return 0;
	}
	n = pread(o->ref.fd, buf, len, (off_t)off);
	return n < 0 ? -errno : n;
}

int
om_obj_private(om_fdc_t *fdc, om_store_t *st, om_obj_t *o)
{
	const uint8_t *m;
	int fd;

	if (!o->packed)
		return 0;
	/* From the mapping get_packed read the record in: the pack is not
	 * opened and read again for each descriptor (5 system calls of 11).
	 * Without a mapping, or once it faults (the pack cut short), by name. */
	m = om_fdc_map_pack(fdc, &o->ref);
	fd = m != NULL ? om_store_pack_memfd_from(m, OM_STORE_PACK_BYTES, &o->obj) : -EFAULT;
	if (fd == -EFAULT) {
		if (m != NULL)
			om_fdc_map_fails(fdc, &o->ref);
		fd = om_store_pack_memfd(st, o->tier, &o->obj);
	}
	if (fd < 0)
		return fd;
	om_fdref_put(&o->ref);
	o->ref = (om_fdref_t){ fd, NULL };
	o->packed = false;
	o->base = 0;
	return 0;
}

void
om_obj_put(om_obj_t *o)
{
	om_fdref_put(&o->ref);
}

uint16_t
om_obj_put_error(om_store_t *st, int rc, int tier, char *why, size_t n)
{
	uint16_t status = rc == -ENOENT ? OM_STATUS_INTERNAL : om_proto_status_of(rc);

	if (status != OM_STATUS_INTERNAL) {
		snprintf(why, n, "PUT failed: %s", om_store_why(st)[0] ? om_store_why(st) : om_strerror(rc));
		return status;
	}
	if (om_store_tier_gone(st, tier))
		snprintf(why, n, "PUT failed: the %s tier's directory %s was deleted; nothing can be "
		    "stored there until objmapperd is restarted", tier == OM_TIER_MEM ? "memory" :
		    "persistent", om_store_tier_path(st, tier));
	else
		snprintf(why, n, "PUT failed: %s", om_store_why(st)[0] ? om_store_why(st) : om_strerror(rc));
	om_log_err_limited(0, "%s", why);
	return status;
}

const char *
om_obj_uri_shown(const void *uri, size_t len, char *buf, size_t n)
{
	const uint8_t *u = uri;
	size_t i, k = 0;

	for (i = 0; i < len && k + 5 < n; i++)
		buf[k++] = (u[i] >= 0x20 && u[i] < 0x7f) ? (char)u[i] : '?';
	if (i < len && k + 4 < n) {
		memcpy(buf + k, "...", 3);
		k += 3;
	}
	buf[k] = '\0';
	return buf;
}
