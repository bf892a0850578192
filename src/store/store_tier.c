/*
 * A tier's directory and its files: opening and checking a tier (its
 * fan-out directories, whether O_TMPFILE and user extended attributes
 * work), object files' names, opening them, and making and publishing new
 * files; and this process's slot of the index segment (its counters and
 * the object it is publishing). The bottom of the store: every process
 * that opens one runs it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
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

/*
 * A tier's new file, unpublished: unlinked (O_TMPFILE) where the filesystem
 * has it, else tmp/ID.PID.SUFFIX, whose pid lets the master remove it if
 * this process dies. Objects, record files and promoted copies are all
 * made this way, and published by om_store_file_publish.
 */
void
om_store_file_init(om_store_file_t *f)
{
	f->fd = -1;
	f->tmpname[0] = '\0';
}

int
om_store_file_new(om_store_t *st, int tier, uint64_t id, const char *suffix, int oflags, mode_t mode,
    om_store_file_t *f)
{
	om_tier_t *t = &st->tier[tier];

	if (t->tmpfile_ok) {
		f->fd = openat(t->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
	} else {
		snprintf(f->tmpname, sizeof(f->tmpname), "tmp/%016" PRIx64 ".%d.%s", id, (int)getpid(),
		    suffix);
		f->fd = openat(t->dirfd, f->tmpname, O_CREAT | oflags | O_RDWR | O_CLOEXEC, mode);
	}
	if (f->fd >= 0)
		return 0;
	f->tmpname[0] = '\0';
	/* Never 0: callers take 0 as "the file is open". */
	return errno > 0 ? -errno : -EIO;
}

/* Gives the file its name: a link of the unlinked file, or a rename of
 * the temporary one. Where records are files, the record's goes first
 * (an object file is never without its record). */
int
om_store_file_publish(om_store_t *st, int tier, om_store_file_t *f, const char *name)
{
	om_tier_t *t = &st->tier[tier];

	if (f->tmpname[0] == '\0')
		return om_os_link_tmpfile(f->fd, t->dirfd, name);
	if (renameat(t->dirfd, f->tmpname, t->dirfd, name) != 0)
		return -errno;
	f->tmpname[0] = '\0';
	return 0;
}

/* Drops what is left of it: its temporary name if it was never
 * published, and its descriptor. */
void
om_store_file_discard(om_store_t *st, int tier, om_store_file_t *f)
{
	if (f->tmpname[0])
		unlinkat(st->tier[tier].dirfd, f->tmpname, 0);
	if (f->fd >= 0)
		close(f->fd);
	om_store_file_init(f);
}

/* ---- opening ----------------------------------------------------------- */

/* The tier's directories belong to the daemon's user, so that workers
 * that run as that user can publish into them. */
int
om_tier_chown(om_tier_t *t, const om_store_params_t *p, char *err, size_t errlen)
{
	static const char *const extra[] = { ".", "tmp", "corrupt", "packs" };
	char sub[8];

	for (unsigned i = 0; i < OM_FANOUT + 4; i++) {
		const char *name = i < 4 ? extra[i] : sub;

		if (i >= 4)
			snprintf(sub, sizeof(sub), "%02x", i - 4);
		if (fchownat(t->dirfd, name, p->owner_uid, p->owner_gid, AT_SYMLINK_NOFOLLOW) != 0) {
			int rc = -errno;

			snprintf(err, errlen, "%s tier: chown(\"%s/%s\") failed: %s", t->name, t->path, name,
			    om_strerror(rc));
			return rc;
		}
	}
	return 0;
}

void
om_tier_set_space(om_tier_t *t, const om_tier_params_t *tp)
{
	t->limit = tp->limit;
	t->limit_pct = tp->limit_pct;
	t->reserve = tp->reserve;
	t->reserve_pct = tp->reserve_pct;
	t->pack_max = tp->pack_max > OM_STORE_PACK_MAX ? OM_STORE_PACK_MAX : tp->pack_max;
}

/* A filesystem that reports no size (ramfs) has no share to take and
 * bounds nothing: such a tier needs its limit in bytes (a share kept free
 * of nothing is nothing). */
int
om_tier_check_space(const om_tier_t *t, char *err, size_t errlen)
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

int
om_tier_open(om_tier_t *t, const char *name, const om_tier_params_t *tp, int no_tmpfile, int no_xattr,
    int adopt_fd, char *err, size_t errlen)
{
	char sub[8];
	int fd, rc;

	t->dirfd = -1;
	t->name = name;
	om_tier_set_space(t, tp);
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
	if ((rc = om_tier_check_space(t, err, errlen)) != 0)
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
	    (rc = om_os_mkdir(t->dirfd, "corrupt", 0750)) != 0 ||
	    (rc = om_os_mkdir(t->dirfd, "packs", 0750)) != 0) {
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

/* One tier for om_store_check. */
int
om_tier_check(const char *name, const om_tier_params_t *tp, char *err, size_t errlen)
{
	om_tier_t t = { .dirfd = -1, .name = name };
	int fd, rc;

	om_tier_set_space(&t, tp);
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
	rc = om_tier_check_space(&t, err, errlen);
out:
	close(t.dirfd);
	return rc;
}

/* ---- the process's slot ------------------------------------------------ */

om_store_proc_sh_t *
om_store_proc(om_store_t *st, unsigned slot)
{
	return om_index_proc_area(st->ix, slot);
}

/* The server's counters follow at the next 64 bytes past 256: a field
 * added here beyond that would move them, and during a binary upgrade the
 * two masters would read each other's slots at other offsets. */
_Static_assert(sizeof(om_store_proc_sh_t) > 192 && sizeof(om_store_proc_sh_t) <= 256,
    "the store's part of a process slot keeps its 256 bytes");

size_t
om_store_proc_bytes(void)
{
	return sizeof(om_store_proc_sh_t);
}

const om_store_stats_t *
om_store_slot_stats(om_store_t *st, unsigned slot)
{
	om_store_proc_sh_t *p = om_store_proc(st, slot);

	return p != NULL ? &p->stats : NULL;
}

/* Counters live in the process's slot of the segment, where STATS can sum
 * them across processes; without a slot, in the handle. The slot also
 * says which process uses it (its temporary files carry the pid). */
static void
bind_stats(om_store_t *st)
{
	om_store_proc_sh_t *p = om_store_proc(st, st->slot);

	st->stats = p != NULL ? &p->stats : &st->local_stats;
	if (p != NULL)
		OM_STORE(&p->pid, (uint32_t)getpid());
}

void
om_store_set_slot(om_store_t *st, unsigned slot)
{
	/* A forked child appends to packs of its own, never to one its
	 * parent may still write (the parent's descriptor stays its own),
	 * and draws other pack numbers. */
	for (int tier = 0; tier < 2; tier++) {
		if (st->pw[tier].fd >= 0)
			close(st->pw[tier].fd);
		st->pw[tier].fd = -1;
		st->pw[tier].end = 0;
	}
	st->pack_seed = 0;
	st->slot = slot;
	bind_stats(st);
}

void
om_store_intent(om_store_t *st, uint64_t id, int tier, int kind)
{
	om_store_proc_sh_t *p = om_store_proc(st, st->slot);

	if (p == NULL)
		return;
	OM_STORE(&p->intent_tier, (uint32_t)tier);
	OM_STORE(&p->intent_kind, (uint32_t)kind);
	OM_STORE_REL(&p->intent_id, id);
}

void
om_store_intent_loc(om_store_t *st, uint64_t id, int tier, uint64_t loc)
{
	om_store_proc_sh_t *p = om_store_proc(st, st->slot);

	if (p == NULL)
		return;
	OM_STORE(&p->intent_loc, loc);
	om_store_intent(st, id, tier, OM_KIND_PACKED);
}
