/*
 * Scrubbing: objects are read again and their bytes compared with the
 * CRC32C kept with them; a damaged object is quarantined (its file moved
 * to its tier's corrupt/, its entry dropped), logged once and never
 * served again. The cache manager runs it at a set rate over the whole
 * store; workers quarantine what they find damaged while reading bytes
 * for a client, and the first open of an object the rebuild indexed from
 * its record alone checks its size (om_store_open_entry).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "store/store_int.h"

/* An object not read for this long is not kept in the page cache by the
 * scrub that read it (16 ms ticks: a minute). */
#define SCRUB_COLD_TICKS (60000u / OM_IX_TICK_MS)

/* What a scrub step may still read, and what it did. */
typedef struct {
	om_store_t *st;
	uint64_t budget;
	uint64_t used;
	struct pack_hold *hold;
} scrub_step_t;

/*
 * The packs a scrub step read last, kept open for the next entries: the
 * entries a step reads one after another are in the same few packs (the
 * workers', interleaved, one each), and an openat and a close for each
 * cost more than reading it. Closed at the end of the step, so that a
 * pack a worker's compaction removes (to make room for a PUT, at once) is
 * not held longer than one step.
 */
#define PACK_HOLDS 4

typedef struct pack_hold {
	struct {
		int fd;
		int tier;
		uint32_t no;
	} p[PACK_HOLDS];
	unsigned next; /* the one replaced next */
} pack_hold_t;

static int
pack_held(om_store_t *st, pack_hold_t *h, int tier, uint32_t no)
{
	unsigned i;

	if (h == NULL)
		return om_store_open_pack(st, tier, no);
	for (i = 0; i < PACK_HOLDS; i++)
		if (h->p[i].fd >= 0 && h->p[i].tier == tier && h->p[i].no == no)
			return h->p[i].fd;
	i = h->next++ % PACK_HOLDS;
	if (h->p[i].fd >= 0)
		close(h->p[i].fd);
	h->p[i].fd = om_store_open_pack(st, tier, no);
	h->p[i].tier = tier;
	h->p[i].no = no;
	return h->p[i].fd;
}

static const char *
kind_of(int tier, const om_ix_obj_t *o)
{
	if (tier == OM_TIER_DISK)
		return "persistent";
	return (o->flags & OM_IX_F_EPHEMERAL) ? "ephemeral" : "memory copy of a persistent";
}

/* A damaged packed object: its bytes, as they are, go to corrupt/ID for
 * the operator; its entry is marked dead and leaves the index. */
static int
quarantine_packed(om_store_t *st, const om_ix_obj_t *o, int tier, const char *why)
{
	static _Thread_local uint8_t buf[OM_STORE_PACK_MAX];
	om_tier_t *t = &st->tier[tier];
	char pname[32], dst[64];
	int fd, out;

	om_pack_name(om_store_pack_no(o), pname, sizeof(pname));
	snprintf(dst, sizeof(dst), "corrupt/%016" PRIx64, o->id);
	fd = om_store_open_pack(st, tier, om_store_pack_no(o));
	if (fd >= 0 && o->size <= sizeof(buf) &&
	    om_os_pread_all(fd, buf, (size_t)o->size, om_store_pack_off(o)) == 0 &&
	    (out = openat(t->dirfd, dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0440)) >= 0) {
		(void)om_os_pwrite_all(out, buf, (size_t)o->size, 0);
		close(out);
	}
	if (fd >= 0)
		close(fd);
	om_log_warn(0, "store: %s/%s at %" PRIu64 ", %s object %016" PRIx64 ": %s; its bytes copied to %s/%s, "
	    "never served again", t->path, pname, om_store_pack_off(o),
	    tier == OM_TIER_DISK ? "persistent" : "ephemeral", o->id, why, t->path, dst);
	/* The release marks the entry dead. */
	(void)om_index_delete_slot(st->ix, o->slot, o->id, NULL);
	return 0;
}

int
om_store_quarantine(om_store_t *st, const om_ix_obj_t *o, int tier, const char *why)
{
	om_tier_t *t = &st->tier[tier];
	char name[OM_NAME_MAX], dst[64];

	st->stats->damaged++;
	if (o->flags & OM_IX_F_PACKED)
		return quarantine_packed(st, o, tier, why);
	om_store_object_name(o->id, name, sizeof(name));
	if (tier == OM_TIER_MEM && !(o->flags & OM_IX_F_EPHEMERAL)) {
		/* A copy: the primary on disk still holds the bytes. */
		om_log_warn(0, "store: %s/%s, the memory copy of object %016" PRIx64 ": %s; dropped",
		    t->path, name, o->id, why);
		om_store_drop_copy(st, o);
		return 0;
	}
	/* Moved aside before the entry goes, so that the release finds no
	 * file to unlink, and kept for the operator; a reader that opens it
	 * meanwhile finds nothing and takes it for a miss. */
	om_index_note_drop(st->ix, OM_STORE_DROP_KEY(tier, o->id));
	snprintf(dst, sizeof(dst), "corrupt/%016" PRIx64, o->id);
	if (renameat(t->dirfd, name, t->dirfd, dst) != 0) {
		om_log_err(errno, "store: %s/%s, %s object %016" PRIx64 ": %s, and moving it to corrupt/ failed; "
		    "removed", t->path, name, kind_of(tier, o), o->id, why);
	} else {
		char rname[OM_NAME_MAX];

		om_log_warn(0, "store: %s/%s, %s object %016" PRIx64 ": %s; moved to %s/%s, never served again",
		    t->path, name, kind_of(tier, o), o->id, why, t->path, dst);
		if (t->rec_files) {
			om_rec_name(o->id, rname, sizeof(rname));
			snprintf(dst, sizeof(dst), "corrupt/%016" PRIx64 OM_REC_SUFFIX, o->id);
			(void)renameat(t->dirfd, rname, t->dirfd, dst);
		}
	}
	(void)om_index_delete_slot(st->ix, o->slot, o->id, NULL);
	return 0;
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

/* The CRC32C of size bytes of fd from base on: the bytes read. */
static uint64_t
read_sum(int fd, uint64_t base, uint64_t size, uint32_t *crc, int *err)
{
	static _Thread_local uint8_t buf[262144];
	uint64_t off = 0;

	*crc = 0;
	*err = 0;
	while (off < size) {
		size_t want = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
		ssize_t n = pread(fd, buf, want, (off_t)(base + off));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			*err = -errno;
			break;
		}
		if (n == 0)
			break;
		*crc = om_crc32c(*crc, buf, (size_t)n);
		off += (uint64_t)n;
	}
	return off;
}


/*
 * Reads one file of an object and compares it with the index: 0 if
 * intact, -EBADMSG if damaged (and quarantined), -ENOENT if it is gone
 * (replaced or deleted meanwhile), or -errno. *read gets the bytes read.
 * A packed object is read through hold's descriptor of its pack (a scrub
 * step's), or one opened for it (hold NULL).
 */
static int
verify_file(om_store_t *st, const om_ix_obj_t *o, int tier, uint64_t *read, pack_hold_t *hold)
{
	uint64_t size;
	uint32_t crc = 0;
	char why[128];
	int fd = -1, rc = 0;

	*read = 0;
	if (o->flags & OM_IX_F_PACKED) {
		int pfd = pack_held(st, hold, tier, om_store_pack_no(o));

		if (pfd < 0)
			return pfd;
		if ((rc = om_store_pack_check(pfd, o)) == 0)
			*read = read_sum(pfd, om_store_pack_off(o), o->size, &crc, &rc);
		if (hold == NULL)
			close(pfd);
		if (rc != 0)
			return rc;
		size = *read; /* the entry's size is its record's */
	} else {
		struct stat sb;

		fd = om_store_open_obj(st, tier, o->id);
		if (fd < 0)
			return fd;
		if (fstat(fd, &sb) != 0) {
			rc = -errno;
			goto out;
		}
		size = (uint64_t)sb.st_size;
		*read = read_sum(fd, 0, o->size, &crc, &rc);
		if (rc != 0)
			goto out;
	}
	if (*read != o->size || size != o->size) {
		snprintf(why, sizeof(why), "%" PRIu64 " bytes where its record says %" PRIu64, size, o->size);
		rc = -EBADMSG;
	} else if (crc != o->crc) {
		snprintf(why, sizeof(why), "its bytes do not match their checksum (CRC32C %08x, recorded %08x)",
		    crc, o->crc);
		rc = -EBADMSG;
	}
	if (rc == 0 && (o->flags & OM_IX_F_UNCHECKED) && tier == om_store_tier_of(o->flags))
		(void)om_index_update_flags(st->ix, o->slot, o->id, 0, OM_IX_F_UNCHECKED);
	/* What nobody reads stays out of the page cache, and is read from
	 * the disk by the next pass. */
	if (fd >= 0 && tier == OM_TIER_DISK && om_index_ticks() - o->atime > SCRUB_COLD_TICKS)
		(void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
out:
	if (fd >= 0)
		close(fd);
	if (rc == -EBADMSG)
		om_store_quarantine(st, o, tier, why);
	return rc;
}

static int
verify_obj(om_store_t *st, const om_ix_obj_t *o, uint64_t *read, pack_hold_t *hold)
{
	uint64_t n = 0;
	int rc;

	*read = 0;
	if (o->flags & OM_IX_F_COPY) {
		rc = verify_file(st, o, OM_TIER_MEM, &n, hold);
		*read += n;
		/* A damaged copy goes; the primary is checked all the same. */
		if (rc != 0 && rc != -EBADMSG && rc != -ENOENT)
			return rc;
	}
	rc = verify_file(st, o, om_store_tier_of(o->flags), &n, hold);
	*read += n;
	if (rc == 0) {
		st->stats->scrubbed++;
		st->stats->scrub_bytes += *read;
	}
	return rc;
}

int
om_store_verify_obj(om_store_t *st, const om_ix_obj_t *o, uint64_t *read)
{
	return verify_obj(st, o, read, NULL);
}

static int
scrub_one(void *arg, const om_ix_obj_t *o)
{
	scrub_step_t *s = arg;
	uint64_t n = 0;
	int rc = verify_obj(s->st, o, &n, s->hold);

	s->st->scrub_pass_objects++;
	/* Errors of one file (EIO, EMFILE) are logged and the pass goes on. */
	if (rc != 0 && rc != -EBADMSG && rc != -ENOENT)
		om_log_warn(-rc, "store: scrub: reading object %016" PRIx64 " failed", o->id);
	/* Every object costs at least a page, so that small ones pay for
	 * their system calls too. */
	s->used += n > 4096 ? n : 4096;
	return s->used >= s->budget;
}

int
om_store_scrub(om_store_t *st, uint32_t *cursor, uint64_t budget, uint64_t *used)
{
	pack_hold_t hold;
	scrub_step_t s = { st, budget, 0, &hold };
	int rc = 0;

	for (unsigned i = 0; i < PACK_HOLDS; i++)
		hold.p[i].fd = -1;
	hold.next = 0;
	*used = 0;
	while (s.used < s.budget) {
		uint64_t before = s.used;

		rc = om_index_walk(st->ix, cursor, 64, scrub_one, &s);
		if (rc < 0)
			break;
		if (rc == 1) {
			/* An empty store completes no pass. */
			if (st->scrub_pass_objects > 0)
				st->stats->scrub_passes++;
			st->scrub_pass_objects = 0;
			break;
		}
		if (s.used == before)
			break;
	}
	for (unsigned i = 0; i < PACK_HOLDS; i++)
		if (hold.p[i].fd >= 0)
			close(hold.p[i].fd);
	*used = s.used;
	return rc;
}
