/*
 * A restart without a rebuild: the index segment, kept in a file, says
 * which tiers it belongs to and whether its processes left it cleanly;
 * the master checks that before it serves from it, and falls back to the
 * rebuild for anything doubtful. Runs in the master, at start (attach)
 * and at a stop (seal).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "store/store_int.h"

#define OWNER_MAGIC   0x41534d4fu /* "OMSA" */
#define OWNER_VERSION 1u
#define STAMP_FILE    ".objmapper-stamp"
#define WRITER_FILE   ".objmapper-writer"

/* What the store writes into the index's owner area. */
typedef struct {
	uint32_t magic;
	uint32_t version;
	uint8_t stamp[2][16];  /* each tier's stamp file */
	int64_t dirs_mtime[2]; /* the latest change of a tier's directories, ns, at a clean stop */
} store_owner_t;

/*
 * Each tier directory holds a stamp: 16 random bytes written when the
 * store first opens it. An index belongs to the tiers whose stamps it
 * holds; another directory, or one made anew (after a reboot emptied a
 * tmpfs), has another stamp.
 */
/* A small file of the tier, published whole: written under tmp/, then
 * renamed over the old one. */
static int
put_small_file(om_tier_t *t, const char *name, const void *buf, size_t len)
{
	char tmp[64];
	int fd, rc = 0;

	snprintf(tmp, sizeof(tmp), "tmp/%s.%d", name + 1, (int)getpid());
	fd = openat(t->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0440);
	if (fd < 0)
		return -errno;
	if (write(fd, buf, len) != (ssize_t)len)
		rc = -EIO;
	if (close(fd) != 0 && rc == 0)
		rc = -errno;
	if (rc == 0 && renameat(t->dirfd, tmp, t->dirfd, name) != 0)
		rc = -errno;
	if (rc != 0)
		unlinkat(t->dirfd, tmp, 0);
	return rc;
}

int
om_store_stamp(om_store_t *st, int tier, char *err, size_t errlen)
{
	om_tier_t *t = &st->tier[tier];
	ssize_t n;
	int fd, rc;

	fd = openat(t->dirfd, STAMP_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, t->stamp, sizeof(t->stamp));
		close(fd);
		if (n == (ssize_t)sizeof(t->stamp))
			return 0;
	} else if (errno != ENOENT) {
		rc = -errno;
		snprintf(err, errlen, "%s tier: reading %s/%s failed: %s", t->name, t->path, STAMP_FILE,
		    om_strerror(rc));
		return rc;
	}
	/* None, or a damaged one: a new stamp, published whole. */
	if (getrandom(t->stamp, sizeof(t->stamp), 0) != (ssize_t)sizeof(t->stamp)) {
		rc = -errno;
		snprintf(err, errlen, "%s tier: getrandom failed: %s", t->name, om_strerror(rc));
		return rc;
	}
	if ((rc = put_small_file(t, STAMP_FILE, t->stamp, sizeof(t->stamp))) != 0) {
		snprintf(err, errlen, "%s tier: writing %s/%s failed: %s", t->name, t->path, STAMP_FILE,
		    om_strerror(rc));
		return rc;
	}
	return 0;
}

/* Who this run's processes write files as: the user and group they run
 * as, "uid:gid\n". */
static int
writer_id(const om_store_t *st, char *buf, size_t cap)
{
	unsigned long uid = st->set_owner && st->owner_uid != (uid_t)-1 ? st->owner_uid : geteuid();
	unsigned long gid = st->set_owner && st->owner_gid != (gid_t)-1 ? st->owner_gid : getegid();

	return snprintf(buf, cap, "%lu:%lu\n", uid, gid);
}

void
om_store_writer_read(om_store_t *st, int tier)
{
	om_tier_t *t = &st->tier[tier];
	char want[48], have[48] = "";
	int fd, len = writer_id(st, want, sizeof(want));
	ssize_t n = -1;

	fd = openat(t->dirfd, WRITER_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd >= 0) {
		n = read(fd, have, sizeof(have));
		close(fd);
	}
	/* None (a tier of an older version, or new) counts as another. */
	t->writer_same = n == len && memcmp(have, want, (size_t)len) == 0;
}

void
om_store_writer_note(om_store_t *st)
{
	char want[48];
	int len = writer_id(st, want, sizeof(want));

	for (int tier = 0; tier < 2; tier++) {
		om_tier_t *t = &st->tier[tier];
		int rc;

		if (t->writer_same)
			continue;
		/* Not fatal: the next start then looks at every file's owner
		 * again, as this one did. */
		if ((rc = put_small_file(t, WRITER_FILE, want, (size_t)len)) != 0)
			om_log_warn(-rc, "store: %s tier: writing %s/%s failed", t->name, t->path, WRITER_FILE);
		else
			t->writer_same = 1;
	}
}

/* The latest change of the tier's fan-out directories: a file added,
 * removed or renamed in one of them moves its mtime. */
static int
dirs_mtime(om_store_t *st, int tier, int64_t *out)
{
	om_tier_t *t = &st->tier[tier];
	int64_t latest = 0;
	char sub[8];

	for (unsigned i = 0; i < OM_FANOUT; i++) {
		struct stat sb;
		int64_t m;

		snprintf(sub, sizeof(sub), "%02x", i);
		if (fstatat(t->dirfd, sub, &sb, AT_SYMLINK_NOFOLLOW) != 0)
			return errno ? -errno : -EIO;
		m = (int64_t)sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;
		if (m > latest)
			latest = m;
	}
	*out = latest;
	return 0;
}

int
om_store_seal(om_store_t *st)
{
	size_t len;
	store_owner_t *o = om_index_owner(st->ix, &len);
	store_owner_t w;

	OM_ASSERT(sizeof(w) <= len);
	memset(&w, 0, sizeof(w));
	w.magic = OWNER_MAGIC;
	w.version = OWNER_VERSION;
	for (int tier = 0; tier < 2; tier++) {
		int rc;

		memcpy(w.stamp[tier], st->tier[tier].stamp, sizeof(w.stamp[tier]));
		if ((rc = dirs_mtime(st, tier, &w.dirs_mtime[tier])) != 0)
			return rc;
	}
	memcpy(o, &w, sizeof(w));
	om_index_set_state(st->ix, OM_IX_STATE_CLEAN);
	return 0;
}

void
om_store_claim(om_store_t *st)
{
	size_t len;
	store_owner_t *o = om_index_owner(st->ix, &len);

	memset(o, 0, sizeof(*o));
	o->magic = OWNER_MAGIC;
	o->version = OWNER_VERSION;
	for (int tier = 0; tier < 2; tier++)
		memcpy(o->stamp[tier], st->tier[tier].stamp, sizeof(o->stamp[tier]));
	om_index_set_state(st->ix, OM_IX_STATE_RUNNING);
}

int
om_store_attach(om_store_t *st, om_attach_stats_t *as, char *why, size_t n)
{
	size_t len;
	const store_owner_t *o = om_index_owner(st->ix, &len);
	uint32_t state = om_index_state(st->ix);
	om_ix_usage_t u;
	char err[256];
	int rc;

	memset(as, 0, sizeof(*as));
	if (o->magic != OWNER_MAGIC || o->version != OWNER_VERSION) {
		snprintf(why, n, "it was not left by this version's store");
		return -ESTALE;
	}
	for (int tier = 0; tier < 2; tier++) {
		if (memcmp(o->stamp[tier], st->tier[tier].stamp, sizeof(o->stamp[tier])) != 0) {
			snprintf(why, n, "it belongs to another %s tier than %s (or one made anew)",
			    st->tier[tier].name, st->tier[tier].path);
			return -ESTALE;
		}
	}
	for (int tier = 0; tier < 2 && st->set_owner; tier++) {
		if (!st->tier[tier].writer_same) {
			/* Files another user wrote must be given to this one. */
			snprintf(why, n, "the %s tier's files were written as another user than this "
			    "configuration's", st->tier[tier].name);
			return -ESTALE;
		}
	}
	as->clean = state == OM_IX_STATE_CLEAN;
	if (as->clean) {
		/* Stopped cleanly: nobody may have changed the tiers since. */
		for (int tier = 0; tier < 2; tier++) {
			int64_t now = 0;

			if ((rc = dirs_mtime(st, tier, &now)) != 0) {
				snprintf(why, n, "reading the %s tier's directories failed: %s",
				    st->tier[tier].name, om_strerror(rc));
				return rc;
			}
			if (now != o->dirs_mtime[tier]) {
				snprintf(why, n, "files of the %s tier changed while the daemon was stopped",
				    st->tier[tier].name);
				return -ESTALE;
			}
		}
	}
	/* Every process that used it is gone: what any of them was
	 * publishing is settled as the master settles a dead child's, and
	 * their counters start over. */
	for (unsigned slot = 0; slot < om_index_procs(st->ix); slot++) {
		void *area = om_index_proc_area(st->ix, slot);

		if (om_store_reclaim_slot(st, slot) > 0)
			as->reclaimed++;
		memset(area, 0, om_index_proc_bytes(st->ix));
	}
	for (int tier = 0; tier < 2; tier++)
		if ((rc = om_store_clean_tmp(st, tier, &as->temp_removed)) != 0) {
			snprintf(why, n, "cleaning the %s tier's tmp/ failed: %s", st->tier[tier].name,
			    om_strerror(rc));
			return rc;
		}
	if ((rc = om_index_check(st->ix, err, sizeof(err))) != 0) {
		snprintf(why, n, "its consistency check failed: %s", err);
		return rc;
	}
	om_index_usage(st->ix, &u);
	as->objects = u.objects;
	om_store_writer_note(st);
	om_index_set_state(st->ix, OM_IX_STATE_RUNNING);
	/* Our own slot was cleared with the rest. */
	om_store_set_slot(st, st->slot);
	return 0;
}
