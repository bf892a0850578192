/*
 * The store's handle: opening both tiers over the index (and reconfiguring
 * them on a reload), and the reads and removals of objects: GET opens a
 * new read-only description of the current file, STAT and DELETE look the
 * object up. PUT is store_put.c. Every process opens its own handle.
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "store/store_int.h"

int
om_store_open(const om_store_params_t *p, om_index_t *ix, om_store_t **out,
    char *err, size_t errlen)
{
	om_store_t *st;
	int rc;

	if (errlen)
		err[0] = '\0';
	if (p->promote_hits > om_index_hits_max(ix)) {
		snprintf(err, errlen, "promotion after %u reads, but the index counts only %u",
		    p->promote_hits, om_index_hits_max(ix));
		return -EINVAL;
	}
	if (om_index_proc_bytes(ix) < sizeof(om_store_proc_sh_t)) {
		snprintf(err, errlen, "index process slots of %zu bytes, the store needs %zu",
		    om_index_proc_bytes(ix), sizeof(om_store_proc_sh_t));
		return -EINVAL;
	}
	if (p->max_meta > OM_STORE_META_MAX) {
		snprintf(err, errlen, "metadata limit %u is above the maximum %u", p->max_meta,
		    (unsigned)OM_STORE_META_MAX);
		return -EINVAL;
	}
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return -ENOMEM;
	st->tier[0].dirfd = st->tier[1].dirfd = -1;
	st->pw[0].fd = st->pw[1].fd = -1;
	for (unsigned i = 0; i < OM_ARRAY_LEN(st->pk); i++)
		st->pk[i].fd = -1;
	st->ix = ix;
	if (ix != NULL)
		st->pk_notes = om_index_notes_head(ix);
	st->durability = p->durability;
	st->promote_hits = p->promote_hits;
	st->promote_max_size = p->promote_max_size; /* 0: a quarter of the memory tier's limit */
	st->evict_samples = p->evict_samples ? p->evict_samples : 16;
	st->max_meta = p->max_meta ? p->max_meta : OM_STORE_META_MAX;
	st->no_evict = p->no_evict;
	om_store_set_slot(st, p->proc_slot);

	if ((rc = om_tier_open(&st->tier[OM_TIER_MEM], "memory", &p->mem, p->no_tmpfile, p->no_xattr,
	    p->adopt ? p->tier_fd[OM_TIER_MEM] : -1, err, errlen)) != 0)
		goto fail;
	if ((rc = om_tier_open(&st->tier[OM_TIER_DISK], "persistent", &p->disk, p->no_tmpfile, p->no_xattr,
	    p->adopt ? p->tier_fd[OM_TIER_DISK] : -1, err, errlen)) != 0)
		goto fail;
	if ((rc = om_store_stamp(st, OM_TIER_MEM, err, errlen)) != 0 ||
	    (rc = om_store_stamp(st, OM_TIER_DISK, err, errlen)) != 0)
		goto fail;
	st->set_owner = p->set_owner;
	st->owner_uid = p->owner_uid;
	st->owner_gid = p->owner_gid;
	om_store_writer_read(st, OM_TIER_MEM);
	om_store_writer_read(st, OM_TIER_DISK);
	if (p->set_owner && ((rc = om_tier_chown(&st->tier[OM_TIER_MEM], p, err, errlen)) != 0 ||
	    (rc = om_tier_chown(&st->tier[OM_TIER_DISK], p, err, errlen)) != 0))
		goto fail;
	om_index_set_release(ix, om_store_release, st);
	*out = st;
	return 0;
fail:
	om_store_close(st);
	return rc;
}

int
om_store_check(const om_store_params_t *p, char *err, size_t errlen)
{
	int rc;

	if (errlen)
		err[0] = '\0';
	if ((rc = om_tier_check("memory", &p->mem, err, errlen)) != 0)
		return rc;
	return om_tier_check("persistent", &p->disk, err, errlen);
}

void
om_store_close(om_store_t *st)
{
	if (st == NULL)
		return;
	om_pack_close_all(st);
	for (int t = 0; t < 2; t++)
		if (st->tier[t].dirfd >= 0)
			close(st->tier[t].dirfd);
	free(st->pack_kept);
	free(st);
}

int
om_store_reconfigure(om_store_t *st, const om_store_params_t *p, char *err, size_t errlen)
{
	om_tier_t mem = st->tier[OM_TIER_MEM], disk = st->tier[OM_TIER_DISK];
	int rc;

	om_tier_set_space(&mem, &p->mem);
	om_tier_set_space(&disk, &p->disk);
	if ((rc = om_tier_check_space(&mem, err, errlen)) != 0 || (rc = om_tier_check_space(&disk, err, errlen)) != 0)
		return rc;
	st->tier[OM_TIER_MEM] = mem;
	st->tier[OM_TIER_DISK] = disk;
	st->no_evict = p->no_evict;
	st->durability = p->durability;
	st->promote_hits = p->promote_hits <= om_index_hits_max(st->ix) ? p->promote_hits :
	    om_index_hits_max(st->ix);
	st->promote_max_size = p->promote_max_size; /* 0: a quarter of the memory tier's limit */
	st->evict_samples = p->evict_samples ? p->evict_samples : 16;
	st->max_meta = p->max_meta ? p->max_meta : OM_STORE_META_MAX;
	return 0;
}

const om_store_stats_t *
om_store_stats(const om_store_t *st)
{
	return st->stats;
}

/* ---- GET, STAT, DELETE ------------------------------------------------- */

static bool
expired(const om_ix_obj_t *o, int64_t now)
{
	return o->expires != 0 && o->expires <= now;
}

int
om_store_get(om_store_t *st, const void *uri, size_t len, unsigned flags, om_get_t *out)
{
	int64_t now = om_time_s();
	unsigned lflags = (flags & OM_GET_NOTOUCH) ? 0 : OM_IX_TOUCH;
	bool count = !(flags & OM_GET_NOCOUNT);

	if (count)
		st->stats->gets++;
	for (int attempt = 0; attempt < 4; attempt++) {
		om_ix_obj_t o, again;
		int fd = -ENOENT, tier;

		if (om_index_lookup(st->ix, uri, len, &o, lflags) != 0 || expired(&o, now))
			break;
		if (o.flags & OM_IX_F_COPY) {
			fd = om_store_open_obj(st, OM_TIER_MEM, o.id);
			tier = OM_TIER_MEM;
			if (fd == -ENOENT) /* dropped under us, or lost: serve the primary */
				(void)om_index_update_flags(st->ix, o.slot, o.id, 0, OM_IX_F_COPY);
		}
		if (fd < 0) {
			tier = om_store_tier_of(o.flags);
			fd = (o.flags & OM_IX_F_PACKED) ? om_store_pack_memfd(st, tier, &o) :
			    om_store_open_entry(st, tier, &o);
		}
		if (fd >= 0) {
			out->fd = fd;
			out->tier = tier;
			out->obj = o;
			if (count)
				st->stats->hits[tier]++;
			return 0;
		}
		if (fd != -ENOENT)
			return fd;
		/* Replaced or deleted since the lookup: look again. If the entry
		 * is unchanged its file is gone (a process died between the two),
		 * and the entry goes too. */
		if (om_index_lookup(st->ix, uri, len, &again, 0) == 0 && again.id == o.id) {
			if (om_index_delete_slot(st->ix, o.slot, o.id, NULL) == 0) {
				st->stats->lost_files++;
				om_log_warn_limited(0, "store: object %016" PRIx64 " had no file; entry removed", o.id);
			}
		}
	}
	if (count)
		st->stats->misses++;
	return -ENOENT;
}

int
om_store_locate(om_store_t *st, const void *uri, size_t len, unsigned flags, om_get_t *out)
{
	om_ix_obj_t o;
	bool count = !(flags & OM_GET_NOCOUNT);

	if (count)
		st->stats->gets++;
	if (om_index_lookup(st->ix, uri, len, &o, (flags & OM_GET_NOTOUCH) ? 0 : OM_IX_TOUCH) != 0 ||
	    expired(&o, om_time_s())) {
		if (count)
			st->stats->misses++;
		return -ENOENT;
	}
	out->fd = -1;
	out->obj = o;
	out->tier = (o.flags & OM_IX_F_COPY) ? OM_TIER_MEM : om_store_tier_of(o.flags);
	if (count)
		st->stats->hits[out->tier]++;
	return 0;
}

int
om_store_stat(om_store_t *st, const void *uri, size_t len, om_ix_obj_t *out)
{
	om_ix_obj_t o;

	if (om_index_lookup(st->ix, uri, len, &o, 0) != 0 || expired(&o, om_time_s()))
		return -ENOENT;
	if (out != NULL)
		*out = o;
	return 0;
}

int
om_store_read_meta(om_store_t *st, const om_get_t *g, void *buf, size_t cap, uint32_t *len,
    int64_t *mtime)
{
	uint8_t rec[OM_META_REC_MAX];
	om_meta_rec_t r;
	ssize_t n;
	int rc;

	if (g->obj.flags & OM_IX_F_PACKED) {
		int fd = om_store_open_pack(st, g->tier, om_store_pack_no(&g->obj));

		if (fd < 0)
			return fd;
		n = om_pack_entry(fd, g->obj.loc, g->obj.id, rec, sizeof(rec));
		close(fd);
	} else {
		n = om_rec_read(st, g->tier, g->obj.id, g->fd, rec, sizeof(rec));
	}
	if (n < 0)
		return (int)n;
	if ((rc = om_meta_decode(rec, (size_t)n, &r)) != 0)
		return rc;
	if (r.meta_len > cap)
		return -ERANGE;
	if (r.meta_len)
		memcpy(buf, r.meta, r.meta_len);
	*len = r.meta_len;
	if (mtime != NULL)
		*mtime = r.mtime;
	return 0;
}

/* A deleted object's file, before its entry goes: 0, -ENOENT (already
 * gone), or the error (om_store_why says it). */
static int
delete_file(om_store_t *st, int tier, const om_ix_obj_t *o)
{
	uint64_t id = o->id;
	int rc, e2 = 0;

	if (o->flags & OM_IX_F_PACKED) {
		char name[32];

		if ((rc = om_pack_drop(st, tier, id, o->loc)) != 0 && rc != -ENOENT) {
			om_pack_name(om_store_pack_no(o), name, sizeof(name));
			om_store_set_why(st, "cannot mark the object dead in its pack %s/%s: %s",
			    st->tier[tier].path, name, om_strerror(rc));
		}
		return rc;
	}
	rc = om_store_drop_file(st, tier, id, &e2);
	if (rc != 0 && rc != -ENOENT) {
		char name[OM_NAME_MAX];

		om_store_object_name(id, name, sizeof(name));
		om_store_set_why(st, "cannot remove the object's file %s/%s: %s", st->tier[tier].path,
		    name, om_strerror(rc));
	}
	return rc;
}

/* With durability = fsync, a removal is acknowledged only once durable. */
static int
delete_sync(om_store_t *st, int tier, const om_ix_obj_t *o)
{
	char name[OM_NAME_MAX];
	uint64_t id = o->id;
	int rc;

	if (st->durability != OM_DURABLE_FSYNC)
		return 0;
	/* The entry's state word, after the entry went from the index (as a
	 * file's directory is synced after it): a crash before the sync
	 * leaves the object or not, never an index entry of a dead one. */
	if (o->flags & OM_IX_F_PACKED) {
		if ((rc = om_pack_sync(st, tier, o->loc)) != 0) {
			om_pack_name(om_store_pack_no(o), name, sizeof(name));
			om_store_set_why(st, "the object is marked dead in its pack, but syncing %s/%s failed: %s",
			    st->tier[tier].path, name, om_strerror(rc));
		}
		return rc;
	}
	om_store_object_name(id, name, sizeof(name));
	name[2] = '\0';
	if ((rc = om_os_fsync_dir(st->tier[tier].dirfd, name)) != 0)
		om_store_set_why(st, "the object's file is removed, but syncing %s/%s failed: %s",
		    st->tier[tier].path, name, om_strerror(rc));
	return rc;
}

/*
 * The file goes before the entry: if it cannot be removed, the object
 * stays and the caller is told, because a file left where the rebuild
 * finds it would bring the object back at the next start. A GET between
 * the two finds the entry without its file, a miss.
 */
int
om_store_delete(om_store_t *st, const void *uri, size_t len)
{
	st->why[0] = '\0';
	for (int tries = 0; tries < 8; tries++) {
		int tier, rc;
		om_ix_obj_t o;

		if (om_index_lookup(st->ix, uri, len, &o, 0) != 0)
			return -ENOENT;
		tier = om_store_tier_of(o.flags);
		rc = delete_file(st, tier, &o);
		if (rc != 0 && rc != -ENOENT)
			return rc;
		/* The release unlinks the copy, and finds the primary gone. Not
		 * the same version any more (replaced meanwhile): look again. */
		if (om_index_delete_slot(st->ix, o.slot, o.id, NULL) != 0) {
			if (rc == -ENOENT)
				continue;
		}
		st->stats->deletes++;
		if ((rc = delete_sync(st, tier, &o)) != 0)
			return rc;
		return expired(&o, om_time_s()) ? -ENOENT : 0;
	}
	return -ENOENT;
}

int
om_store_delete_obj(om_store_t *st, const om_ix_obj_t *o)
{
	int tier = om_store_tier_of(o->flags), rc;

	st->why[0] = '\0';
	/* The file first, as DELETE does: a removal answered stays done
	 * across a restart. A version replaced meanwhile loses its file a
	 * little early (its replacer's release finds it gone), never the new
	 * version's. */
	rc = delete_file(st, tier, o);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	if (om_index_delete_slot(st->ix, o->slot, o->id, NULL) != 0)
		return -ENOENT;
	return delete_sync(st, tier, o);
}

int
om_store_delete_version(om_store_t *st, const om_ix_obj_t *o)
{
	int rc = om_store_delete_obj(st, o);

	if (rc == 0)
		st->stats->deletes++;
	return rc;
}
