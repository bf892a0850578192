/*
 * Rebuild: fills an empty index from the object files of both tiers, at
 * start-up in the master (before any worker exists). Each file carries its
 * record (URI, size, expiry, metadata, checksum) in an extended attribute;
 * where a crash left two versions of a URI the newer id wins, expired
 * objects and temporary files are removed, and a file whose record is bad
 * is moved to corrupt/ rather than deleted.
 *
 * The 512 fan-out directories are shared out among one thread per CPU
 * (the index is safe for concurrent writers, and the order of files does
 * not matter: ids decide between versions), and each file costs one
 * system call: getxattrat (lgetxattr where the kernel has none), without
 * opening it (where records are in files, "ID.r" beside "ID": open,
 * read, close). The directory says the file is a regular one (d_type);
 * its size is compared with the record's at its first open instead
 * (OM_IX_F_UNCHECKED, om_store_open_entry), or by the scrub, whichever
 * comes first, so that a start after a power loss does not stat a million
 * files before it serves. A file is stat'ed here only where that is not
 * enough: the filesystem gives no d_type, the record is a promoted copy's
 * (compared at once: it is not opened through its own entry), or files
 * may have to change owner (the tier's files were written as another
 * user than this run's, om_store_writer_read).
 */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "store/store_int.h"

typedef struct {
	uint64_t id;
	uint32_t uri_len;
	uint64_t size;
	char *uri;
} copy_ref_t;

#define RB_THREADS_MAX 8

/* Shared by the threads of one rebuild. */
typedef struct {
	int64_t now;
	unsigned next_dir; /* atomic: next of the 2 x 256 directories */
	int error;         /* atomic: first fatal error, stops everyone */
} rebuild_job_t;

/* One thread's share of the work and of the results. */
typedef struct {
	rebuild_job_t *job;
	om_store_t *st;
	om_rebuild_stats_t s;
	om_rebuild_stats_t *rs;
	uint64_t max_id;
	int64_t now;
	copy_ref_t *copies;
	size_t ncopies, capcopies;
	char dirpath[PATH_MAX + 8]; /* "tier/xx" being scanned */
} rebuild_t;

/* 0 for an object's name, 1 for its record file's ("ID.r"), -1 for
 * anything else. */
static int
parse_id(const char *name, unsigned fan, uint64_t *id)
{
	uint64_t v = 0;
	size_t len = strlen(name);
	int rec = len == 16 + sizeof(OM_REC_SUFFIX) - 1 && strcmp(name + 16, OM_REC_SUFFIX) == 0;

	if (len != 16 && !rec)
		return -1;
	for (int i = 0; i < 16; i++) {
		char c = name[i];

		if (c >= '0' && c <= '9')
			v = v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v = v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -1;
	}
	if (v == 0 || (v & 0xff) != fan)
		return -1;
	*id = v;
	return rec;
}

/* Removes an object file and its record file, if it has one. */
static void
remove_at(int dfd, const char *name)
{
	char rname[OM_NAME_MAX];

	unlinkat(dfd, name, 0);
	snprintf(rname, sizeof(rname), "%s" OM_REC_SUFFIX, name);
	if (unlinkat(dfd, rname, 0) != 0 && errno != ENOENT)
		om_log_warn(errno, "store: rebuild: unlinkat(\"%s\") failed", rname);
}

static void
quarantine(rebuild_t *rb, int tier, int dfd, const char *name, const char *why)
{
	om_tier_t *t = &rb->st->tier[tier];
	char dst[64];

	snprintf(dst, sizeof(dst), "corrupt/%s", name);
	if (renameat(dfd, name, t->dirfd, dst) != 0) {
		om_log_err(errno, "store: rebuild: renameat(\"%s\") to corrupt/ failed", name);
	} else {
		char rname[OM_NAME_MAX];

		om_log_warn(0, "store: rebuild: %s tier: %s: %s; moved to %s/%s", t->name, name, why,
		    t->path, dst);
		/* Its record file, if any, goes with it. */
		snprintf(rname, sizeof(rname), "%s" OM_REC_SUFFIX, name);
		snprintf(dst, sizeof(dst), "corrupt/%s" OM_REC_SUFFIX, name);
		(void)renameat(dfd, rname, t->dirfd, dst);
	}
	rb->rs->corrupt_moved++;
}

static int
remember_copy(rebuild_t *rb, const om_meta_rec_t *r)
{
	copy_ref_t *c;

	if (rb->ncopies == rb->capcopies && om_grow(&rb->copies, &rb->capcopies, sizeof(*rb->copies)) != 0)
		return -ENOMEM;
	c = &rb->copies[rb->ncopies];
	c->uri = malloc(r->uri_len);
	if (c->uri == NULL)
		return -ENOMEM;
	memcpy(c->uri, r->uri, r->uri_len);
	c->uri_len = r->uri_len;
	c->id = r->id;
	c->size = r->size;
	rb->ncopies++;
	return 0;
}

/* The file's type, size and owner; its owner changed to this run's
 * where files may have been written as another user. */
static int
stat_file(rebuild_t *rb, int tier, int dfd, const char *name, struct stat *sb)
{
	om_store_t *st = rb->st;
	int rc;

	if (fstatat(dfd, name, sb, AT_SYMLINK_NOFOLLOW) != 0) {
		rc = -errno;
		om_log_err(-rc, "store: rebuild: fstatat(\"%s/%s\") failed", rb->dirpath, name);
		return rc;
	}
	if (om_store_owner_differs(st, tier, sb) &&
	    fchownat(dfd, name, st->owner_uid, st->owner_gid, AT_SYMLINK_NOFOLLOW) != 0)
		om_log_warn(errno, "store: rebuild: chown of %s/%s failed", rb->dirpath, name);
	return 0;
}

static int
rebuild_file(rebuild_t *rb, int tier, int dfd, const char *name, unsigned char dtype, uint64_t id)
{
	om_store_t *st = rb->st;
	uint8_t rec[OM_META_REC_MAX];
	om_meta_rec_t r;
	om_ix_obj_t o;
	struct stat sb;
	bool statted = false;
	ssize_t n;
	int rc;

	rb->rs->files_scanned++;
	if (dtype != DT_REG || (st->set_owner && !st->tier[tier].writer_same)) {
		if ((rc = stat_file(rb, tier, dfd, name, &sb)) != 0)
			return rc;
		if (!S_ISREG(sb.st_mode)) {
			quarantine(rb, tier, dfd, name, "not a regular file");
			return 0;
		}
		statted = true;
	}
	n = om_rec_read_at(st, tier, dfd, rb->dirpath, name, rec, sizeof(rec));
	if (n == -ENODATA || n == -ERANGE) {
		quarantine(rb, tier, dfd, name, n == -ENODATA ? "no objmapper record" : "record too large");
		return 0;
	}
	if (n < 0) {
		/* Not the file's fault (EIO, EMFILE, ENOMEM ...): moving a good
		 * object aside would lose it. The start fails and says why. */
		om_log_err((int)-n, "store: rebuild: reading the record of %s/%s failed", rb->dirpath, name);
		return (int)n;
	}
	if (om_meta_decode(rec, (size_t)n, &r) != 0) {
		quarantine(rb, tier, dfd, name, "damaged record");
		return 0;
	}
	if (r.id != id) {
		quarantine(rb, tier, dfd, name, "record of another id");
		return 0;
	}
	if (!statted && r.kind == OM_KIND_COPY) {
		if ((rc = stat_file(rb, tier, dfd, name, &sb)) != 0)
			return rc;
		statted = true;
	}
	if (statted && r.size != (uint64_t)sb.st_size) {
		quarantine(rb, tier, dfd, name, "size differs from record");
		return 0;
	}
	if ((tier == OM_TIER_DISK && r.kind != OM_KIND_PERSIST) ||
	    (tier == OM_TIER_MEM && r.kind == OM_KIND_PERSIST)) {
		quarantine(rb, tier, dfd, name, "record of the other tier");
		return 0;
	}
	if (id > rb->max_id)
		rb->max_id = id;
	if (r.expires != 0 && r.expires <= rb->now) {
		remove_at(dfd, name);
		rb->rs->expired_removed++;
		return 0;
	}
	if (r.kind == OM_KIND_COPY)
		return remember_copy(rb, &r);
	if (r.uri_len > om_index_max_uri(st->ix)) {
		om_log_err(0, "store: rebuild: %s/%s holds a URI of %u bytes, longer than the "
		    "configured maximum of %u", st->tier[tier].path, name, r.uri_len,
		    om_index_max_uri(st->ix));
		return -ENAMETOOLONG;
	}

	memset(&o, 0, sizeof(o));
	o.id = r.id;
	o.size = r.size;
	o.expires = r.expires;
	o.crc = r.crc;
	o.flags = (r.kind == OM_KIND_EPHEMERAL ? OM_IX_F_EPHEMERAL : 0) | (statted ? 0 : OM_IX_F_UNCHECKED);
	rc = om_index_put(st->ix, r.uri, r.uri_len, &o, OM_IX_UPSERT, NULL);
	if (rc == 1) {
		/* The older version was released (its file unlinked). */
		rb->rs->stale_removed++;
	} else if (rc == -ESTALE) {
		remove_at(dfd, name);
		rb->rs->stale_removed++;
	} else if (rc == -ENOSPC || rc == -ENOMEM) {
		om_log_err(0, "store: rebuild: the index is full: its capacity is smaller than the "
		    "number of objects in the tiers, or its URI arena too small for their URIs");
		return -ENOSPC;
	} else if (rc < 0) {
		return rc;
	}
	return 0;
}

static int
orphan_record(rebuild_t *rb, int dfd, const char *rname)
{
	char name[20];
	struct stat sb;

	memcpy(name, rname, 16);
	name[16] = '\0';
	if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
		return 0;
	if (errno != ENOENT) {
		int rc = -errno;

		om_log_err(-rc, "store: rebuild: fstatat(\"%s/%s\") failed", rb->dirpath, name);
		return rc;
	}
	if (unlinkat(dfd, rname, 0) == 0)
		rb->rs->temp_removed++;
	return 0;
}

static int
scan_dir(rebuild_t *rb, int tier, unsigned fan)
{
	om_tier_t *t = &rb->st->tier[tier];
	char sub[4];
	struct dirent *de;
	DIR *d;
	int fd, kind, rc = 0;

	snprintf(sub, sizeof(sub), "%02x", fan);
	snprintf(rb->dirpath, sizeof(rb->dirpath), "%s/%s", t->path, sub);
	fd = openat(t->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		om_log_err(-rc, "store: rebuild: open(\"%s/%s\") failed", t->path, sub);
		return rc;
	}
	d = fdopendir(fd);
	if (d == NULL) {
		close(fd);
		return -ENOMEM;
	}
	for (;;) {
		uint64_t id;

		/* readdir says end and error alike with NULL: an error taken for
		 * the end would leave the rest of the directory unindexed. */
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0) {
				rc = -errno;
				om_log_err(errno, "store: rebuild: reading \"%s/%s\" failed", t->path, sub);
			}
			break;
		}
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		kind = parse_id(de->d_name, fan, &id);
		if (kind < 0) {
			om_log_warn(0, "store: rebuild: %s/%s/%s is not an object; left alone",
			    t->path, sub, de->d_name);
			rb->rs->unknown_skipped++;
			continue;
		}
		if (kind == 1) {
			/* A record file goes with its object; one whose object is
			 * gone was left by a crash between the two. */
			if ((rc = orphan_record(rb, dirfd(d), de->d_name)) != 0)
				break;
			continue;
		}
		if ((rc = rebuild_file(rb, tier, dirfd(d), de->d_name, de->d_type, id)) != 0)
			break;
		if (__atomic_load_n(&rb->job->error, __ATOMIC_RELAXED) != 0)
			break;
	}
	closedir(d);
	return rc;
}

static void *
rebuild_thread(void *arg)
{
	rebuild_t *rb = arg;
	rebuild_job_t *job = rb->job;

	for (;;) {
		unsigned n = __atomic_fetch_add(&job->next_dir, 1, __ATOMIC_RELAXED);
		int rc;

		if (n >= 2 * OM_FANOUT || __atomic_load_n(&job->error, __ATOMIC_RELAXED) != 0)
			break;
		rc = scan_dir(rb, n < OM_FANOUT ? OM_TIER_DISK : OM_TIER_MEM, n % OM_FANOUT);
		if (rc != 0) {
			int zero = 0;

			__atomic_compare_exchange_n(&job->error, &zero, rc, false, __ATOMIC_RELAXED,
			    __ATOMIC_RELAXED);
			break;
		}
	}
	return NULL;
}

/* A copy is kept only if the index holds the same version of its URI. */
static void
attach_copies(rebuild_t *rb)
{
	om_store_t *st = rb->st;

	for (size_t i = 0; i < rb->ncopies; i++) {
		copy_ref_t *c = &rb->copies[i];
		om_ix_obj_t o;

		if (om_index_lookup(st->ix, c->uri, c->uri_len, &o, 0) == 0 && o.id == c->id &&
		    !(o.flags & OM_IX_F_EPHEMERAL) && o.size == c->size &&
		    om_index_update_flags(st->ix, o.slot, o.id, OM_IX_F_COPY, 0) == 0) {
			rb->rs->copies++;
		} else {
			om_store_unlink_obj(st, OM_TIER_MEM, c->id);
			rb->rs->orphan_copies_removed++;
		}
		free(c->uri);
	}
	free(rb->copies);
	rb->copies = NULL;
}

static void
stats_add(om_rebuild_stats_t *to, const om_rebuild_stats_t *from)
{
	to->files_scanned += from->files_scanned;
	to->stale_removed += from->stale_removed;
	to->expired_removed += from->expired_removed;
	to->temp_removed += from->temp_removed;
	to->orphan_copies_removed += from->orphan_copies_removed;
	to->corrupt_moved += from->corrupt_moved;
	to->unknown_skipped += from->unknown_skipped;
	to->copies += from->copies;
}

int
om_store_rebuild(om_store_t *st, om_rebuild_stats_t *rs)
{
	rebuild_job_t job = { om_time_s(), 0, 0 };
	rebuild_t *rb;
	pthread_t tid[RB_THREADS_MAX];
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned nthreads = cpus < 1 ? 1 : cpus > RB_THREADS_MAX ? RB_THREADS_MAX : (unsigned)cpus;
	uint64_t max_id = 0;
	struct timespec t0, t1;
	om_ix_usage_t u;
	int rc = 0;

	memset(rs, 0, sizeof(*rs));
	clock_gettime(CLOCK_MONOTONIC, &t0);
	rb = calloc(nthreads, sizeof(*rb));
	if (rb == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < nthreads; i++) {
		rb[i].job = &job;
		rb[i].st = st;
		rb[i].rs = &rb[i].s;
		rb[i].now = job.now;
	}
	for (int tier = 0; tier < 2 && rc == 0; tier++)
		rc = om_store_clean_tmp(st, tier, &rb[0].s.temp_removed);
	if (rc == 0) {
		unsigned started = 0;

		/* Thread 0 is this one. */
		for (unsigned i = 1; i < nthreads; i++) {
			if (pthread_create(&tid[i], NULL, rebuild_thread, &rb[i]) != 0)
				break;
			started = i;
		}
		rebuild_thread(&rb[0]);
		for (unsigned i = 1; i <= started; i++)
			pthread_join(tid[i], NULL);
		rc = job.error;
	}
	/* Packs (store_pack.c): entries that check are indexed, newer ids
	 * winning over files and entries alike; a tier's packs are walked by
	 * as many threads as its files (their bytes are read and checked:
	 * the CRC is most of the cost), the tiers one after the other. */
	for (int tier = 0; tier < 2 && rc == 0; tier++) {
		om_pack_rebuild_t pr = { 0, 0, 0, 0, 0 };

		rc = om_pack_rebuild(st, tier, job.now, nthreads, &pr);
		if (pr.max_id > max_id)
			max_id = pr.max_id;
		rb[0].s.files_scanned += pr.entries + pr.stale + pr.expired + pr.corrupt;
		rb[0].s.stale_removed += pr.stale;
		rb[0].s.expired_removed += pr.expired;
		rb[0].s.corrupt_moved += pr.corrupt;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		stats_add(rs, &rb[i].s);
		if (rb[i].max_id > max_id)
			max_id = rb[i].max_id;
		/* Copies wait until every primary is indexed. */
		rb[i].rs = rs;
		if (rc == 0) {
			attach_copies(&rb[i]);
		} else {
			for (size_t c = 0; c < rb[i].ncopies; c++)
				free(rb[i].copies[c].uri);
			free(rb[i].copies);
		}
	}
	free(rb);
	if (rc == 0)
		om_store_writer_note(st);
	om_index_reserve_ids(st->ix, max_id + 1);
	om_index_usage(st->ix, &u);
	rs->objects = u.objects;
	rs->bytes = u.bytes[OM_IX_CLASS_PERSIST] + u.bytes[OM_IX_CLASS_EPHEMERAL];
	rs->ephemeral = u.count[OM_IX_CLASS_EPHEMERAL];
	clock_gettime(CLOCK_MONOTONIC, &t1);
	rs->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	return rc;
}
