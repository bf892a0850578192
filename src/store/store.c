/*
 * Object files and the publish protocol: PUT writes an unlinked file,
 * stores the record with it, links it under its id and only then swaps the
 * index entry; GET opens a new read-only description of the current file.
 * Runs in every process that serves requests (workers, and the master at
 * start-up).
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

struct om_put_txn {
	om_store_t *st;
	int fd;
	int tier;
	uint64_t id;
	uint64_t size;
	uint64_t written;
	uint64_t room_to;  /* room on the filesystem checked up to here */
	uint64_t crc_upto; /* bytes covered by crc */
	uint64_t evicted;  /* bytes evicted because the filesystem was full */
	unsigned evictions;
	uint32_t crc;
	int64_t expires;
	unsigned flags;
	uint32_t meta_len;
	size_t uri_len;
	char tmpname[48]; /* temporary name, or "" with O_TMPFILE */
	om_rec_t rec;     /* its record file, where the tier keeps them in files */
	uint8_t meta[OM_STORE_META_MAX];
	char uri[OM_IX_URI_MAX];
};

void
om_store_object_name(uint64_t id, char *buf, size_t n)
{
	snprintf(buf, n, "%02x/%016" PRIx64, (unsigned)(id & 0xff), id);
}

const char *
om_store_tier_path(const om_store_t *st, int tier)
{
	return st->tier[tier].path;
}

int
om_store_tier_fd(const om_store_t *st, int tier)
{
	return st->tier[tier].dirfd;
}

int
om_store_tier_gone(const om_store_t *st, int tier)
{
	struct stat sb;

	return fstat(st->tier[tier].dirfd, &sb) == 0 && sb.st_nlink == 0;
}

int
om_store_open_obj(om_store_t *st, int tier, uint64_t id)
{
	char name[OM_NAME_MAX];
	int fd;

	om_store_object_name(id, name, sizeof(name));
	fd = openat(st->tier[tier].dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	return fd >= 0 ? fd : -errno;
}

int
om_store_open_entry(om_store_t *st, int tier, const om_ix_obj_t *o)
{
	struct stat sb;
	char why[96];
	int fd, rc;

	fd = om_store_open_obj(st, tier, o->id);
	if (fd < 0 || !(o->flags & OM_IX_F_UNCHECKED) || tier != om_store_tier_of(o->flags))
		return fd;
	if (fstat(fd, &sb) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if ((uint64_t)sb.st_size == o->size) {
		(void)om_index_update_flags(st->ix, o->slot, o->id, 0, OM_IX_F_UNCHECKED);
		return fd;
	}
	close(fd);
	snprintf(why, sizeof(why), "%" PRIu64 " bytes where its record says %" PRIu64,
	    (uint64_t)sb.st_size, o->size);
	om_store_quarantine(st, o, tier, why);
	return -ENOENT;
}

/*
 * Removes an object file: 0, -ENOENT if there was none, or -errno if it
 * could be neither unlinked nor moved to tmp/ (a read-only filesystem).
 * Every object file the store removes goes through here, so that every
 * descriptor cache hears of it.
 */
static int
drop_file(om_store_t *st, int tier, uint64_t id, int *err)
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

	if ((rc = drop_file(st, tier, id, &e2)) == -ENOENT)
		return 0;
	om_store_object_name(id, name, sizeof(name));
	if (rc != 0)
		om_log_err(-rc, "store: unlinkat(\"%s/%s\") failed, and so did moving it to tmp/ (%s); "
		    "the object may come back at the next start", st->tier[tier].path, name, om_strerror(-e2));
	return rc;
}

static om_store_proc_sh_t *
proc_sh(om_store_t *st, unsigned slot)
{
	return om_index_proc_area(st->ix, slot);
}

size_t
om_store_proc_bytes(void)
{
	return sizeof(om_store_proc_sh_t);
}

const om_store_stats_t *
om_store_slot_stats(om_store_t *st, unsigned slot)
{
	om_store_proc_sh_t *p = proc_sh(st, slot);

	return p != NULL ? &p->stats : NULL;
}

/* Counters live in the process's slot of the segment, where STATS can sum
 * them across processes; without a slot, in the handle. The slot also
 * says which process uses it (its temporary files carry the pid). */
static void
bind_stats(om_store_t *st)
{
	om_store_proc_sh_t *p = proc_sh(st, st->slot);

	st->stats = p != NULL ? &p->stats : &st->local_stats;
	if (p != NULL)
		OM_STORE(&p->pid, (uint32_t)getpid());
}

void
om_store_intent(om_store_t *st, uint64_t id, int tier, int kind)
{
	om_store_proc_sh_t *p = proc_sh(st, st->slot);

	if (p == NULL)
		return;
	OM_STORE(&p->intent_tier, (uint32_t)tier);
	OM_STORE(&p->intent_kind, (uint32_t)kind);
	OM_STORE_REL(&p->intent_id, id);
}

/*
 * The index drops an object (replaced, deleted, evicted): its files go.
 * Runs with the object's stripe lock held, in whichever process dropped it
 * (or repaired a process that died while dropping it).
 */
static void
store_release(void *arg, const om_ix_obj_t *o)
{
	om_store_t *st = arg;

	om_store_unlink_obj(st, om_store_tier_of(o->flags), o->id);
	if (o->flags & OM_IX_F_COPY)
		om_store_unlink_obj(st, OM_TIER_MEM, o->id);
}

/* ---- opening ----------------------------------------------------------- */

/* The tier's directories belong to the daemon's user, so that workers
 * that run as that user can publish into them. */
static int
tier_chown(om_tier_t *t, const om_store_params_t *p, char *err, size_t errlen)
{
	static const char *const extra[] = { ".", "tmp", "corrupt" };
	char sub[8];

	for (unsigned i = 0; i < OM_FANOUT + 3; i++) {
		const char *name = i < 3 ? extra[i] : sub;

		if (i >= 3)
			snprintf(sub, sizeof(sub), "%02x", i - 3);
		if (fchownat(t->dirfd, name, p->owner_uid, p->owner_gid, AT_SYMLINK_NOFOLLOW) != 0) {
			int rc = -errno;

			snprintf(err, errlen, "%s tier: chown(\"%s/%s\") failed: %s", t->name, t->path, name,
			    om_strerror(rc));
			return rc;
		}
	}
	return 0;
}

static void
tier_set_space(om_tier_t *t, const om_tier_params_t *tp)
{
	t->limit = tp->limit;
	t->limit_pct = tp->limit_pct;
	t->reserve = tp->reserve;
	t->reserve_pct = tp->reserve_pct;
}

/* A filesystem that reports no size (ramfs) has no share to take and
 * bounds nothing: such a tier needs its limit in bytes (a share kept free
 * of nothing is nothing). */
static int
tier_check_space(const om_tier_t *t, char *err, size_t errlen)
{
	struct statvfs v;

	if (fstatvfs(t->dirfd, &v) != 0) {
		int rc = -errno;

		snprintf(err, errlen, "%s tier: statvfs(\"%s\") failed: %s", t->name, t->path, om_strerror(rc));
		return rc;
	}
	if (v.f_blocks == 0 && (t->limit_pct || t->limit == 0)) {
		snprintf(err, errlen, "%s tier: the filesystem of \"%s\" reports no size (ramfs?): its size "
		    "must be given in bytes", t->name, t->path);
		return -EINVAL;
	}
	return 0;
}

static int
tier_open(om_tier_t *t, const char *name, const om_tier_params_t *tp, int no_tmpfile, int no_xattr,
    int adopt_fd, char *err, size_t errlen)
{
	char sub[8];
	int fd, rc;

	t->dirfd = -1;
	t->name = name;
	tier_set_space(t, tp);
	if (tp->limit_pct > 100 || tp->reserve_pct > 100) {
		snprintf(err, errlen, "%s tier: a share of the filesystem above 100%%", name);
		return -EINVAL;
	}
	if (tp->path == NULL || tp->path[0] == '\0') {
		snprintf(err, errlen, "%s tier: no path configured", name);
		return -EINVAL;
	}
	if (strlen(tp->path) >= sizeof(t->path)) {
		snprintf(err, errlen, "%s tier: path too long", name);
		return -ENAMETOOLONG;
	}
	strcpy(t->path, tp->path);
	if ((rc = om_os_mkdir(AT_FDCWD, t->path, 0750)) != 0) {
		snprintf(err, errlen, "%s tier: mkdir(\"%s\") failed: %s", name, t->path, om_strerror(rc));
		return rc;
	}
	/* A binary upgrade hands the directory over open and locked: the lock
	 * belongs to the open file description, which both daemons share. */
	t->dirfd = adopt_fd >= 0 ? adopt_fd : open(t->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t->dirfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s tier: open(\"%s\") failed: %s", name, t->path, om_strerror(rc));
		return rc;
	}
	if ((rc = tier_check_space(t, err, errlen)) != 0)
		return rc;
	/* One daemon per tier: a second one would corrupt the first's view. */
	if (adopt_fd < 0 && flock(t->dirfd, LOCK_EX | LOCK_NB) != 0) {
		rc = -errno;
		snprintf(err, errlen, "%s tier \"%s\" is in use by another process", name, t->path);
		return rc == -EWOULDBLOCK ? -EBUSY : rc;
	}
	for (unsigned i = 0; i < OM_FANOUT; i++) {
		snprintf(sub, sizeof(sub), "%02x", i);
		if ((rc = om_os_mkdir(t->dirfd, sub, 0750)) != 0) {
			snprintf(err, errlen, "%s tier: mkdir(\"%s/%s\") failed: %s", name, t->path, sub,
			    om_strerror(rc));
			return rc;
		}
	}
	if ((rc = om_os_mkdir(t->dirfd, "tmp", 0750)) != 0 ||
	    (rc = om_os_mkdir(t->dirfd, "corrupt", 0750)) != 0) {
		snprintf(err, errlen, "%s tier: mkdir in \"%s\" failed: %s", name, t->path, om_strerror(rc));
		return rc;
	}

	/* Probe: O_TMPFILE (else temporary names) and user xattrs (required).
	 * Only a filesystem or kernel without O_TMPFILE means temporary names
	 * (EOPNOTSUPP; EISDIR or EINVAL from kernels that do not know the
	 * flag): any other error fails here rather than change how every PUT
	 * publishes until the next start. */
	fd = openat(t->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) {
		rc = -errno;
		snprintf(err, errlen, "%s tier: cannot create files in \"%s\": %s", name, t->path,
		    om_strerror(rc));
		return rc;
	}
	t->tmpfile_ok = fd >= 0 && !no_tmpfile;
	if (fd < 0) {
		char probe[32];

		snprintf(probe, sizeof(probe), "tmp/probe.%d", (int)getpid());
		fd = openat(t->dirfd, probe, O_CREAT | O_RDWR | O_CLOEXEC | O_TRUNC, 0600);
		if (fd >= 0)
			unlinkat(t->dirfd, probe, 0);
	}
	if (fd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s tier: cannot create files in \"%s\": %s", name, t->path,
		    om_strerror(rc));
		return rc;
	}
	/* Records go into the files' attributes where the filesystem stores
	 * user attributes, else into record files beside them. */
	t->rec_files = no_xattr;
	if (!t->rec_files && fsetxattr(fd, OM_META_XATTR, "probe", 5, 0) != 0) {
		rc = -errno;
		if (rc != -EOPNOTSUPP) {
			close(fd);
			snprintf(err, errlen, "%s tier: setting an extended attribute in \"%s\" failed: %s",
			    name, t->path, om_strerror(rc));
			return rc;
		}
		t->rec_files = 1;
		om_log_info(0, "store: the filesystem of the %s tier (%s) stores no user extended "
		    "attributes: records are kept in files beside the objects", name, t->path);
	}
	close(fd);
	return 0;
}

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
	st->ix = ix;
	st->durability = p->durability;
	st->promote_hits = p->promote_hits;
	st->promote_max_size = p->promote_max_size; /* 0: a quarter of the memory tier's limit */
	st->evict_samples = p->evict_samples ? p->evict_samples : 16;
	st->max_meta = p->max_meta ? p->max_meta : OM_STORE_META_MAX;
	st->slot = p->proc_slot;
	st->no_evict = p->no_evict;
	bind_stats(st);

	if ((rc = tier_open(&st->tier[OM_TIER_MEM], "memory", &p->mem, p->no_tmpfile, p->no_xattr,
	    p->adopt ? p->tier_fd[OM_TIER_MEM] : -1, err, errlen)) != 0)
		goto fail;
	if ((rc = tier_open(&st->tier[OM_TIER_DISK], "persistent", &p->disk, p->no_tmpfile, p->no_xattr,
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
	if (p->set_owner && ((rc = tier_chown(&st->tier[OM_TIER_MEM], p, err, errlen)) != 0 ||
	    (rc = tier_chown(&st->tier[OM_TIER_DISK], p, err, errlen)) != 0))
		goto fail;
	om_index_set_release(ix, store_release, st);
	*out = st;
	return 0;
fail:
	om_store_close(st);
	return rc;
}

/* One tier for om_store_check. */
static int
tier_check(const char *name, const om_tier_params_t *tp, char *err, size_t errlen)
{
	om_tier_t t = { .dirfd = -1, .name = name };
	int fd, rc;

	tier_set_space(&t, tp);
	if (tp->limit_pct > 100 || tp->reserve_pct > 100) {
		snprintf(err, errlen, "%s tier: a share of the filesystem above 100%%", name);
		return -EINVAL;
	}
	if (tp->path == NULL || tp->path[0] == '\0' || strlen(tp->path) >= sizeof(t.path)) {
		snprintf(err, errlen, "%s tier: no path, or a path too long", name);
		return -EINVAL;
	}
	strcpy(t.path, tp->path);
	t.dirfd = open(t.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (t.dirfd < 0 && errno == ENOENT) {
		/* A start creates it (one level): its parent must take it. */
		char parent[PATH_MAX];
		char *slash;

		strcpy(parent, t.path);
		slash = strrchr(parent, '/');
		if (slash == parent)
			slash[1] = '\0';
		else if (slash != NULL)
			*slash = '\0';
		else
			strcpy(parent, ".");
		t.dirfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (t.dirfd < 0 || faccessat(t.dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
			rc = -errno;
			snprintf(err, errlen, "%s tier: cannot create \"%s\": %s", name, t.path, om_strerror(rc));
			goto out;
		}
	} else if (t.dirfd < 0) {
		rc = -errno;
		snprintf(err, errlen, "%s tier: open(\"%s\") failed: %s", name, t.path, om_strerror(rc));
		return rc;
	} else {
		/* Files can be created in it (an unlinked one leaves nothing). */
		fd = openat(t.dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		if (fd >= 0)
			close(fd);
		else if ((errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL) ||
		    faccessat(t.dirfd, ".", W_OK | X_OK, AT_EACCESS) != 0) {
			rc = -errno;
			snprintf(err, errlen, "%s tier: cannot create files in \"%s\": %s", name, t.path,
			    om_strerror(rc));
			goto out;
		}
	}
	rc = tier_check_space(&t, err, errlen);
out:
	close(t.dirfd);
	return rc;
}

int
om_store_check(const om_store_params_t *p, char *err, size_t errlen)
{
	int rc;

	if (errlen)
		err[0] = '\0';
	if ((rc = tier_check("memory", &p->mem, err, errlen)) != 0)
		return rc;
	return tier_check("persistent", &p->disk, err, errlen);
}

void
om_store_close(om_store_t *st)
{
	if (st == NULL)
		return;
	for (int t = 0; t < 2; t++)
		if (st->tier[t].dirfd >= 0)
			close(st->tier[t].dirfd);
	free(st);
}

void
om_store_set_slot(om_store_t *st, unsigned slot)
{
	st->slot = slot;
	bind_stats(st);
}

int
om_store_reconfigure(om_store_t *st, const om_store_params_t *p, char *err, size_t errlen)
{
	om_tier_t mem = st->tier[OM_TIER_MEM], disk = st->tier[OM_TIER_DISK];
	int rc;

	tier_set_space(&mem, &p->mem);
	tier_set_space(&disk, &p->disk);
	if ((rc = tier_check_space(&mem, err, errlen)) != 0 || (rc = tier_check_space(&disk, err, errlen)) != 0)
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

/* ---- PUT --------------------------------------------------------------- */

/* Room on the filesystem is checked this far ahead of the bytes written
 * (one statvfs per step): what an unfinished PUT can make the store evict
 * or hold is bounded by what it has sent. */
#define ROOM_STEP ((uint64_t)1 << 20)

static uint64_t
pages(uint64_t n)
{
	return n > UINT64_MAX - 4095 ? UINT64_MAX : (n + 4095) & ~(uint64_t)4095;
}

static const char *
tier_word(int tier)
{
	return tier == OM_TIER_MEM ? "memory" : "persistent";
}

/* What eviction may still take for this PUT: its own size (at least a
 * page, what any file takes) and 64 objects. */
static bool
may_evict(const om_put_txn_t *t)
{
	uint64_t size = (t->flags & OM_STORE_SIZE_OPEN) ? t->written : t->size;

	return !t->st->no_evict && t->evicted < pages(size) + 4096 && t->evictions < 64;
}

static void
evicted_for(om_put_txn_t *t, uint64_t bytes)
{
	om_store_t *st = t->st;
	uint64_t before = om_store_tier_used(st, t->tier), after;

	(void)om_store_evict_bytes(st, t->tier, bytes);
	after = om_store_tier_used(st, t->tier);
	t->evicted += before > after ? before - after : 0;
	t->evictions++;
}

/*
 * Before the bytes up to `end` are written: the filesystem must keep its
 * reserve free after them. If it would not, and the tier's own objects
 * can give back what the rest of the PUT needs, evict (least recently
 * used first); if they cannot (the space is held by something else), the
 * PUT fails with nothing evicted. Checked a step ahead, so that a PUT
 * costs one statvfs per MiB.
 */
static int
ensure_room(om_put_txn_t *t, uint64_t end)
{
	om_store_t *st = t->st;
	uint64_t mark, need, rest;
	om_space_t sp;

	if (end <= t->room_to)
		return 0;
	mark = end + ROOM_STEP;
	if (!(t->flags & OM_STORE_SIZE_OPEN) && mark > t->size)
		mark = t->size;
	if (om_store_space(st, t->tier, &sp) != 0) {
		/* No figures: the writes themselves will say ENOSPC. */
		t->room_to = mark;
		return 0;
	}
	if ((t->flags & OM_STORE_SIZE_OPEN) && end > sp.max) {
		om_store_set_why(st, "more than the %s tier can ever hold (%" PRIu64 " bytes)",
		    tier_word(t->tier), sp.max);
		return -EFBIG;
	}
	if (sp.fs_size == 0) {
		t->room_to = mark;
		return 0;
	}
	need = pages(mark - t->written);
	rest = (t->flags & OM_STORE_SIZE_OPEN) ? need : pages(t->size - t->written);
	if (sp.fs_free >= sp.reserve + need) {
		t->room_to = mark;
		return 0;
	}
	if (may_evict(t) && sp.used + sp.fs_free >= sp.reserve + rest) {
		evicted_for(t, sp.reserve + need - sp.fs_free);
		t->room_to = mark;
		return 0;
	}
	/* What was evicted for this PUT may not be free yet (a descriptor
	 * of it is still open somewhere): go on while there is room. */
	if (t->evicted > 0 && sp.fs_free >= need) {
		t->room_to = mark;
		return 0;
	}
	om_store_set_why(st, "no room in the %s tier: its filesystem has %" PRIu64 " bytes free, %" PRIu64
	    " of which are kept free (reserve), and its objects take %" PRIu64 " bytes",
	    tier_word(t->tier), sp.fs_free, sp.reserve, sp.used);
	return -ENOSPC;
}

/*
 * ENOSPC or EDQUOT from the filesystem despite the checks (another
 * writer took the space meanwhile), from the data, the metadata attribute
 * or the link: evict from the tier if its objects can give back what the
 * rest of the PUT needs, and the caller tries again. 0 if something went.
 */
static int
fs_full(om_put_txn_t *t)
{
	om_store_t *st = t->st;
	uint64_t rest = (t->flags & OM_STORE_SIZE_OPEN) ? 4096 : pages(t->size - t->written) + 4096;
	uint64_t used = om_store_tier_used(st, t->tier);

	if (!may_evict(t) || used < rest) {
		om_store_set_why(st, "no room in the %s tier: its filesystem is full, and its own objects "
		    "(%" PRIu64 " bytes) are not what holds the space", tier_word(t->tier), used);
		return -ENOSPC;
	}
	evicted_for(t, 4096);
	return used > om_store_tier_used(st, t->tier) ? 0 : -ENOSPC;
}

/* An object of `size` bytes must fit the tier: -EFBIG if it never can,
 * -ENOSPC if it cannot now even after evicting everything it may. */
static int
check_fits(om_store_t *st, int tier, uint64_t size)
{
	om_space_t sp;
	int rc;

	if ((rc = om_store_space(st, tier, &sp)) != 0)
		return rc;
	if (size > sp.max) {
		om_store_set_why(st, "%" PRIu64 " bytes is more than the %s tier can ever hold (%" PRIu64
		    " bytes: %s)", size, tier_word(tier), sp.max,
		    sp.max == sp.limit ? "its size" : "its filesystem less the reserve");
		return -EFBIG;
	}
	if (size > om_store_room(st, &sp)) {
		if (sp.limit != UINT64_MAX && st->no_evict && sp.used + size > sp.limit)
			om_store_set_why(st, "the %s tier is full: %" PRIu64 " of %" PRIu64 " bytes used, and "
			    "this store never evicts", tier_word(tier), sp.used, sp.limit);
		else
			om_store_set_why(st, "no room in the %s tier: its filesystem has %" PRIu64
			    " bytes free, %" PRIu64 " of which are kept free (reserve), and its objects "
			    "take %" PRIu64 " bytes", tier_word(tier), sp.fs_free, sp.reserve, sp.used);
		return -ENOSPC;
	}
	return 0;
}

int
om_store_put_begin(om_store_t *st, const void *uri, size_t len, const om_put_args_t *a,
    om_put_txn_t **out)
{
	om_put_txn_t *t;
	int tier, rc;

	st->why[0] = '\0';
	if (len == 0)
		return -EINVAL;
	if (len > om_index_max_uri(st->ix))
		return -ENAMETOOLONG;
	if (a->meta_len > st->max_meta)
		return -EMSGSIZE;
	if (a->meta_len && a->meta == NULL)
		return -EINVAL;
	tier = (a->flags & OM_STORE_EPHEMERAL) ? OM_TIER_MEM : OM_TIER_DISK;
	/* Nothing is evicted yet: the room under the limit is made at commit,
	 * on the filesystem as the bytes arrive. */
	if (!(a->flags & OM_STORE_SIZE_OPEN) && (rc = check_fits(st, tier, a->size)) != 0)
		return rc;

	t = malloc(sizeof(*t));
	if (t == NULL)
		return -ENOMEM;
	t->st = st;
	t->tier = tier;
	t->id = om_index_next_id(st->ix);
	t->size = a->size;
	t->written = 0;
	t->room_to = 0;
	t->crc_upto = 0;
	t->evicted = 0;
	t->evictions = 0;
	t->crc = 0;
	t->expires = a->expires;
	t->flags = a->flags;
	t->meta_len = a->meta_len;
	t->uri_len = len;
	t->tmpname[0] = '\0';
	om_rec_init(&t->rec);
	if (a->meta_len)
		memcpy(t->meta, a->meta, a->meta_len);
	memcpy(t->uri, uri, len);

	for (;;) {
		if (st->tier[tier].tmpfile_ok) {
			t->fd = openat(st->tier[tier].dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
		} else {
			/* The pid lets the master remove it if this process dies. */
			snprintf(t->tmpname, sizeof(t->tmpname), "tmp/%016" PRIx64 ".%d.tmp", t->id,
			    (int)getpid());
			t->fd = openat(st->tier[tier].dirfd, t->tmpname, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC,
			    0600);
		}
		/* Out of inodes or of space for one: as for its bytes. */
		if (t->fd >= 0 || (errno != ENOSPC && errno != EDQUOT) || fs_full(t) != 0)
			break;
	}
	if (t->fd < 0) {
		/* Never 0: callers take 0 as "*out is set". */
		rc = -errno;
		if (rc >= 0)
			rc = -EIO;
		t->tmpname[0] = '\0';
		free(t);
		return rc;
	}
	*out = t;
	return 0;
}

int
om_store_put_write(om_put_txn_t *t, const void *buf, size_t n)
{
	const char *p = buf;
	size_t left = n;

	int rc;

	if (n > t->size - t->written)
		return -EFBIG;
	if ((rc = ensure_room(t, t->written + n)) != 0)
		return rc;
	while (left > 0) {
		ssize_t w = write(t->fd, p, left);

		if (w < 0) {
			int e = errno;

			if (e == EINTR || ((e == ENOSPC || e == EDQUOT) && fs_full(t) == 0))
				continue;
			return -e;
		}
		if (w == 0)
			return -EIO;
		p += w;
		left -= (size_t)w;
	}
	if (t->crc_upto == t->written) {
		t->crc = om_crc32c(t->crc, buf, n);
		t->crc_upto += n;
	}
	t->written += n;
	return 0;
}

int
om_store_put_copy(om_put_txn_t *t, int fd, uint64_t off, uint64_t n)
{
	uint64_t done = 0;
	int rc;

	if (n > t->size - t->written)
		return -EFBIG;
	if ((rc = ensure_room(t, t->written + n)) != 0)
		return rc;
	while ((rc = om_os_copy_range(t->fd, fd, off + done, n - done)) == -ENOSPC || rc == -EDQUOT) {
		/* Go on where the copy stopped: the file is written in order
		 * from its start, so its offset says how far. */
		off_t pos = lseek(t->fd, 0, SEEK_CUR);

		if (pos < 0 || (uint64_t)pos < t->written || (uint64_t)pos - t->written > n ||
		    fs_full(t) != 0)
			return rc;
		done = (uint64_t)pos - t->written;
	}
	if (rc != 0)
		return rc;
	t->written += n;
	return 0;
}

int
om_store_put_fd(const om_put_txn_t *t)
{
	return t->fd;
}

int
om_store_put_wrote(om_put_txn_t *t, uint64_t n)
{
	if (n > t->size - t->written)
		return -EFBIG;
	t->written += n;
	return 0;
}

void
om_store_put_abort(om_put_txn_t *t)
{
	if (t == NULL)
		return;
	if (t->tmpname[0])
		unlinkat(t->st->tier[t->tier].dirfd, t->tmpname, 0);
	om_rec_discard(t->st, t->tier, &t->rec);
	close(t->fd);
	free(t);
}

/* Extends the checksum up to byte upto over bytes that arrived without
 * passing through us. */
static int
crc_extend(om_put_txn_t *t, uint64_t upto)
{
	static _Thread_local uint8_t buf[262144];

	while (t->crc_upto < upto) {
		uint64_t left = upto - t->crc_upto;
		size_t n = left < sizeof(buf) ? (size_t)left : sizeof(buf);
		int rc = om_os_pread_all(t->fd, buf, n, t->crc_upto);

		if (rc != 0)
			return rc;
		t->crc = om_crc32c(t->crc, buf, n);
		t->crc_upto += n;
	}
	return 0;
}

int
om_store_put_sum(om_put_txn_t *t, uint64_t max)
{
	return crc_extend(t, t->written - t->crc_upto > max ? t->crc_upto + max : t->written);
}

static int
put_link(om_put_txn_t *t, const char *name)
{
	om_tier_t *tier = &t->st->tier[t->tier];

	if (t->tmpname[0] == '\0')
		return om_os_link_tmpfile(t->fd, tier->dirfd, name);
	if (renameat(tier->dirfd, t->tmpname, tier->dirfd, name) != 0)
		return -errno;
	t->tmpname[0] = '\0';
	return 0;
}

int
om_store_put_commit(om_put_txn_t *t, om_ix_obj_t *out)
{
	om_store_t *st = t->st;
	uint8_t rec[OM_META_REC_MAX];
	char name[OM_NAME_MAX];
	om_meta_rec_t r;
	om_ix_obj_t o, old;
	size_t rlen;
	int rc, kind;

	if (t->flags & OM_STORE_SIZE_OPEN) {
		t->size = t->written;
		if ((rc = check_fits(st, t->tier, t->size)) != 0)
			goto fail;
	}
	if (t->written != t->size) {
		rc = -EINVAL;
		goto fail;
	}
	/* Room under the tier's limit is made now that the object is whole:
	 * a PUT that never completes evicts nothing. */
	if ((rc = om_store_make_room(st, t->tier, t->size)) != 0) {
		om_store_set_why(st, "the %s tier is full (%" PRIu64 " bytes used of %" PRIu64 ")%s",
		    tier_word(t->tier), om_store_tier_used(st, t->tier), om_store_limit(st, t->tier),
		    st->no_evict ? ", and this store never evicts" : "");
		goto fail;
	}
	if ((rc = crc_extend(t, t->size)) != 0)
		goto fail;

	memset(&o, 0, sizeof(o));
	o.id = t->id;
	o.size = t->size;
	o.expires = t->expires;
	o.crc = t->crc;
	o.flags = t->tier == OM_TIER_MEM ? OM_IX_F_EPHEMERAL : 0;

	kind = t->tier == OM_TIER_MEM ? OM_KIND_EPHEMERAL : OM_KIND_PERSIST;
	r = (om_meta_rec_t){ .kind = (uint8_t)kind, .id = o.id, .size = o.size,
		.expires = o.expires, .mtime = om_time_s(), .crc = o.crc, .uri = t->uri,
		.uri_len = (uint32_t)t->uri_len, .meta = t->meta, .meta_len = t->meta_len };
	rlen = om_meta_encode(&r, rec, sizeof(rec));
	OM_ASSERT(rlen != 0);
	while ((rc = om_rec_prepare(st, t->tier, t->id, t->fd, rec, rlen, &t->rec)) != 0) {
		if ((rc == -ENOSPC || rc == -EDQUOT) && fs_full(t) == 0)
			continue;
		goto fail;
	}
	/* Writable by its owner until now (setting a user attribute needs
	 * that); read-only from publication on. */
	if (fchmod(t->fd, 0440) != 0) {
		rc = -errno;
		goto fail;
	}
	if (st->durability == OM_DURABLE_FSYNC && fsync(t->fd) != 0) {
		rc = -errno;
		goto fail;
	}

	om_store_object_name(t->id, name, sizeof(name));
	om_store_intent(st, t->id, t->tier, kind);
	/* A record file is published before its object (an object file is
	 * never without its record), and a new directory entry may need a
	 * block too. */
	while ((rc = om_rec_publish(st, t->tier, t->id, &t->rec)) == -ENOSPC || rc == -EDQUOT) {
		if (fs_full(t) != 0)
			break;
	}
	if (rc == 0) {
		while ((rc = put_link(t, name)) == -ENOSPC || rc == -EDQUOT) {
			if (fs_full(t) != 0)
				break;
		}
	}
	if (rc != 0) {
		om_rec_unlink(st, t->tier, t->id);
		om_store_intent(st, 0, 0, 0);
		goto fail;
	}
	if (st->durability == OM_DURABLE_FSYNC) {
		char dir[4] = { name[0], name[1], '\0', '\0' };

		if ((rc = om_os_fsync_dir(st->tier[t->tier].dirfd, dir)) != 0)
			goto fail_published;
	}

	for (int tries = 0;; tries++) {
		rc = om_index_put(st->ix, t->uri, t->uri_len, &o, OM_IX_UPSERT, &old);
		if ((rc != -ENOSPC && rc != -ENOMEM) || st->no_evict || tries >= 64)
			break;
		/* Full by count: any object makes room. Full arena: only an
		 * object whose block has the size this URI needs. */
		if (om_store_evict_index(st, rc == -ENOMEM ? t->uri_len : 0) != 0)
			break;
	}
	if (rc == -ENOSPC) {
		om_store_set_why(st, "index full: capacity %u%s", om_index_capacity(st->ix),
		    st->no_evict ? ", and this store never evicts" : "");
	} else if (rc == -ENOMEM) {
		om_store_set_why(st, "index full: no room in its arena for a URI of %zu bytes%s", t->uri_len,
		    st->no_evict ? ", and this store never evicts" : "");
		rc = -ENOSPC;
	}
	if (rc == -ESTALE) {
		/* A concurrent PUT of this URI with a newer id landed first:
		 * ours is ordered before it and its file is not needed. */
		om_store_unlink_obj(st, t->tier, t->id);
		st->stats->superseded++;
	} else if (rc < 0) {
		goto fail_published;
	} else if (rc == 1 && st->durability == OM_DURABLE_FSYNC) {
		char oname[OM_NAME_MAX];

		om_store_object_name(old.id, oname, sizeof(oname));
		oname[2] = '\0';
		(void)om_os_fsync_dir(st->tier[om_store_tier_of(old.flags)].dirfd, oname);
	}
	om_store_intent(st, 0, 0, 0);
	st->stats->puts++;
	st->stats->put_bytes += t->size;
	if (out != NULL)
		*out = o;
	om_rec_discard(st, t->tier, &t->rec);
	close(t->fd);
	free(t);
	return 0;

fail_published:
	om_store_unlink_obj(st, t->tier, t->id);
	om_store_intent(st, 0, 0, 0);
fail:
	om_store_put_abort(t);
	return rc;
}

int
om_store_put(om_store_t *st, const void *uri, size_t len, const void *data,
    const om_put_args_t *a, om_ix_obj_t *out)
{
	om_put_txn_t *t;
	int rc;

	if ((rc = om_store_put_begin(st, uri, len, a, &t)) != 0)
		return rc;
	if (a->size && (rc = om_store_put_write(t, data, (size_t)a->size)) != 0) {
		om_store_put_abort(t);
		return rc;
	}
	return om_store_put_commit(t, out);
}

int
om_store_put_from_fd(om_store_t *st, const void *uri, size_t len, int fd,
    const om_put_args_t *a, om_ix_obj_t *out)
{
	om_put_txn_t *t;
	int rc;

	if ((rc = om_store_put_begin(st, uri, len, a, &t)) != 0)
		return rc;
	if (a->size && (rc = om_store_put_copy(t, fd, 0, a->size)) != 0) {
		om_store_put_abort(t);
		return rc == -ENODATA ? -EINVAL : rc;
	}
	return om_store_put_commit(t, out);
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
			fd = om_store_open_entry(st, tier, &o);
		}
		if (fd >= 0) {
			out->fd = fd;
			out->tier = tier;
			out->obj = o;
			if (count && tier == OM_TIER_MEM)
				st->stats->hits_mem++;
			else if (count)
				st->stats->hits_disk++;
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
	if (count && out->tier == OM_TIER_MEM)
		st->stats->hits_mem++;
	else if (count)
		st->stats->hits_disk++;
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

	n = om_rec_read(st, g->tier, g->obj.id, g->fd, rec, sizeof(rec));
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

/*
 * The file goes before the entry: if it cannot be removed, the object
 * stays and the caller is told, because a file left where the rebuild
 * finds it would bring the object back at the next start. A GET between
 * the two finds the entry without its file, a miss.
 */
/* A deleted object's file, before its entry goes: 0, -ENOENT (already
 * gone), or the error (om_store_why says it). */
static int
delete_file(om_store_t *st, int tier, uint64_t id)
{
	int rc, e2 = 0;

	rc = drop_file(st, tier, id, &e2);
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
delete_sync(om_store_t *st, int tier, uint64_t id)
{
	char name[OM_NAME_MAX];
	int rc;

	if (st->durability != OM_DURABLE_FSYNC)
		return 0;
	om_store_object_name(id, name, sizeof(name));
	name[2] = '\0';
	if ((rc = om_os_fsync_dir(st->tier[tier].dirfd, name)) != 0)
		om_store_set_why(st, "the object's file is removed, but syncing %s/%s failed: %s",
		    st->tier[tier].path, name, om_strerror(rc));
	return rc;
}

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
		rc = delete_file(st, tier, o.id);
		if (rc != 0 && rc != -ENOENT)
			return rc;
		/* The release unlinks the copy, and finds the primary gone. Not
		 * the same version any more (replaced meanwhile): look again. */
		if (om_index_delete_slot(st->ix, o.slot, o.id, NULL) != 0) {
			if (rc == -ENOENT)
				continue;
		}
		st->stats->deletes++;
		if ((rc = delete_sync(st, tier, o.id)) != 0)
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
	rc = delete_file(st, tier, o->id);
	if (rc != 0 && rc != -ENOENT)
		return rc;
	if (om_index_delete_slot(st->ix, o->slot, o->id, NULL) != 0)
		return -ENOENT;
	return delete_sync(st, tier, o->id);
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
	om_store_proc_sh_t *p = proc_sh(st, slot);
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
