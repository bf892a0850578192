/*
 * Objects' files go: every object file the store removes (delete,
 * replace, eviction, expiry, a dropped memory copy) is removed here, after
 * a note in the index for the processes that keep descriptors open; and
 * the files a process that died was publishing are removed when the master
 * reclaims its slot. Every process that writes runs it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "store/store_int.h"

/*
 * Removes an object file: 0, -ENOENT if there was none, or -errno if it
 * could be neither unlinked nor moved to tmp/ (a read-only filesystem).
 * Every object file the store removes goes through here, so that every
 * descriptor cache hears of it.
 */
int
om_store_drop_file(om_store_t *st, int tier, uint64_t id, int *err)
{
	om_tier_t *t = &st->tier[tier];
	char name[OM_NAME_MAX], aside[48];
	int e = 0;

	om_store_object_name(id, name, sizeof(name));
	/* Whatever becomes of the file, descriptors of it are not wanted. */
	om_index_note_drop(st->ix, OM_STORE_DROP_KEY(tier, id));
	for (int tries = 0; tries < 8; tries++) {
		if (unlinkat(t->dirfd, name, 0) == 0) {
			om_rec_unlink(st, tier, id);
			return 0;
		}
		if ((e = errno) != EINTR)
			break;
	}
	if (e == ENOENT) {
		om_rec_unlink(st, tier, id);
		return -ENOENT;
	}
	/*
	 * The file must not outlive its entry where a rebuild would find it:
	 * a deleted object would come back at the next start (and a PUT
	 * refused after publishing would appear). tmp/ is emptied at every
	 * start, and nothing else reads it.
	 */
	snprintf(aside, sizeof(aside), "tmp/%016" PRIx64 ".dropped", id);
	if (renameat(t->dirfd, name, t->dirfd, aside) == 0) {
		om_log_warn(e, "store: unlinkat(\"%s/%s\") failed; moved to %s/%s, removed at the next start",
		    t->path, name, t->path, aside);
		om_rec_unlink(st, tier, id);
		return 0;
	}
	*err = errno;
	return -e;
}

int
om_store_unlink_obj(om_store_t *st, int tier, uint64_t id)
{
	char name[OM_NAME_MAX];
	int rc, e2 = 0;

	if ((rc = om_store_drop_file(st, tier, id, &e2)) == -ENOENT)
		return 0;
	om_store_object_name(id, name, sizeof(name));
	if (rc != 0)
		om_log_err(-rc, "store: unlinkat(\"%s/%s\") failed, and so did moving it to tmp/ (%s); "
		    "the object may come back at the next start", st->tier[tier].path, name, om_strerror(-e2));
	return rc;
}

/*
 * The index drops an object (replaced, deleted, evicted): its files go.
 * Runs with the object's stripe lock held, in whichever process dropped it
 * (or repaired a process that died while dropping it).
 */
void
om_store_release(void *arg, const om_ix_obj_t *o)
{
	om_store_t *st = arg;

	if (o->flags & OM_IX_F_PACKED) {
		(void)om_pack_drop(st, om_store_tier_of(o->flags), o->id, o->loc); /* it logs */
		return;
	}
	om_store_unlink_obj(st, om_store_tier_of(o->flags), o->id);
	if (o->flags & OM_IX_F_COPY)
		om_store_unlink_obj(st, OM_TIER_MEM, o->id);
}

void
om_store_drop_copy(om_store_t *st, const om_ix_obj_t *o)
{
	/* File first: a reader that finds the flag but not the file falls
	 * back to the primary; the reverse order could leak the file. */
	om_store_unlink_obj(st, OM_TIER_MEM, o->id);
	if (om_index_update_flags(st->ix, o->slot, o->id, 0, OM_IX_F_COPY) == 0)
		st->stats->copies_dropped++;
}

/* ---- tmp/ -------------------------------------------------------------- */

int
om_store_clean_tmp(om_store_t *st, int tier, uint64_t *removed)
{
	int fd = openat(st->tier[tier].dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	struct dirent *de;
	DIR *d;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -errno;
	}
	for (;;) {
		errno = 0;
		if ((de = readdir(d)) == NULL)
			break;
		if (de->d_name[0] == '.' || om_pack_is_tomb(de->d_name))
			continue; /* a note for the packs' rebuild (om_pack_drop) */
		if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			(*removed)++;
	}
	/* What could not be listed stays until the next start: nothing reads
	 * tmp/, so this is no reason to refuse this one. */
	if (de == NULL && errno != 0)
		om_log_warn(errno, "store: rebuild: reading %s/tmp failed; temporary files may be left",
		    st->tier[tier].path);
	closedir(d);
	return 0;
}

/* ---- recovery of a dead process's publish ------------------------------ */

/* Temporary files of a dead process (tmp/ID.PID.tmp, tmp/ID.PID.copy),
 * where the tiers use temporary names; with O_TMPFILE there are none. */
static void
reclaim_temp(om_store_t *st, pid_t pid)
{
	char mark[24];

	if (pid <= 0)
		return;
	snprintf(mark, sizeof(mark), ".%d.", (int)pid);
	for (int tier = 0; tier < 2; tier++) {
		struct dirent *de;
		DIR *d;
		int fd;

		if (st->tier[tier].tmpfile_ok)
			continue;
		fd = openat(st->tier[tier].dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (fd < 0)
			continue;
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			continue;
		}
		while ((de = readdir(d)) != NULL)
			if (strlen(de->d_name) > 16 && strncmp(de->d_name + 16, mark, strlen(mark)) == 0)
				unlinkat(dirfd(d), de->d_name, 0);
		closedir(d);
	}
}

int
om_store_reclaim_slot(om_store_t *st, unsigned slot)
{
	om_store_proc_sh_t *p = om_store_proc(st, slot);
	uint8_t rec[OM_META_REC_MAX];
	om_meta_rec_t r;
	om_ix_obj_t o;
	uint64_t id;
	int tier, kind, fd, keep = 0;
	ssize_t n;

	if (p == NULL)
		return 0;
	reclaim_temp(st, (pid_t)OM_LOAD(&p->pid));
	if ((id = OM_LOAD_ACQ(&p->intent_id)) == 0)
		return 0;
	tier = (int)OM_LOAD(&p->intent_tier) == OM_TIER_MEM ? OM_TIER_MEM : OM_TIER_DISK;
	kind = (int)OM_LOAD(&p->intent_kind);
	if (kind == OM_KIND_PACKED) {
		int r2 = om_pack_reclaim(st, tier, id, OM_LOAD(&p->intent_loc));

		OM_STORE(&p->intent_id, 0);
		return r2;
	}
	fd = om_store_open_obj(st, tier, id);
	if (fd == -ENOENT) {
		/* It died between publishing the record and the object. */
		om_rec_unlink(st, tier, id);
	} else if (fd >= 0) {
		n = om_rec_read(st, tier, id, fd, rec, sizeof(rec));
		if (n > 0 && om_meta_decode(rec, (size_t)n, &r) == 0 && r.id == id &&
		    om_index_lookup(st->ix, r.uri, r.uri_len, &o, 0) == 0 && o.id == id)
			keep = kind != OM_KIND_COPY || (o.flags & OM_IX_F_COPY);
		close(fd);
		if (!keep) {
			om_store_unlink_obj(st, tier, id);
			om_log_info(0, "store: removed object %016" PRIx64 " published by a process "
			    "that died before indexing it", id);
		}
	}
	OM_STORE(&p->intent_id, 0);
	return keep ? 0 : 1;
}
