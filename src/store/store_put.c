/*
 * PUT: a new unpublished file of the tier takes the bytes as they arrive
 * (room on the filesystem checked a step ahead, evicting where the reserve
 * would be crossed), then the commit makes room under the tier's limit,
 * stores the record, publishes the file under its id and only then swaps
 * the index entry (docs/ARCHITECTURE.md, "PUT: the publish protocol").
 * Workers, and the master at start-up (tests, tools).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/om_core.h"
#include "os/om_os.h"
#include "store/store_int.h"

struct om_put_txn {
	om_store_t *st;
	om_store_file_t file; /* the object's file, unpublished */
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
	int cond;             /* OM_STORE_IF_*: what the index must hold to publish */
	uint64_t cond_id;     /* OM_STORE_IF_ID: the version */
	uint32_t meta_len;
	size_t uri_len;
	om_store_file_t rec;  /* its record file, where the tier keeps them in files */
	uint8_t *buf;         /* a packed object's bytes (it has no file), else NULL */
	uint8_t meta[OM_STORE_META_MAX];
	char uri[OM_IX_URI_MAX];
};

/* Room on the filesystem is checked this far ahead of the bytes written
 * (one statvfs per step): what an unfinished PUT can make the store evict
 * or hold is bounded by what it has sent. */
#define ROOM_STEP ((uint64_t)1 << 20)
/* Bytes of live entries a PUT short of room copies out of packs at most
 * to have the space of evicted packed objects back (om_pack_give_back). */
#define GIVE_BACK_STEP ((uint64_t)4 << 20)

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

/* ensure_room's decision from the figures of the tier's space (sp), for
 * the bytes up to `end`, checked up to `mark`. */
static int
room_with(om_put_txn_t *t, uint64_t end, uint64_t mark, const om_space_t *sp)
{
	om_store_t *st = t->st;
	uint64_t need, rest;

	if ((t->flags & OM_STORE_SIZE_OPEN) && end > sp->max) {
		om_store_set_why(st, "more than the %s tier can ever hold (%" PRIu64 " bytes)",
		    tier_word(t->tier), sp->max);
		return -EFBIG;
	}
	if (sp->fs_size == 0) {
		t->room_to = mark;
		return 0;
	}
	need = pages(mark - t->written);
	rest = (t->flags & OM_STORE_SIZE_OPEN) ? need : pages(t->size - t->written);
	if (sp->fs_free >= sp->reserve + need) {
		t->room_to = mark;
		return 0;
	}
	if (may_evict(t) && sp->used + sp->fs_free >= sp->reserve + rest) {
		om_space_t now;

		evicted_for(t, sp->reserve + need - sp->fs_free);
		/* An evicted packed object's bytes go back to the filesystem
		 * only with its pack: if they did not, compact now. */
		if (om_store_space(st, t->tier, &now) == 0 && now.fs_free < now.reserve + need)
			(void)om_pack_give_back(st, t->tier, GIVE_BACK_STEP);
		t->room_to = mark;
		return 0;
	}
	/* What was evicted for this PUT may not be free yet (a descriptor
	 * of it is still open somewhere): go on while there is room. */
	if (t->evicted > 0 && sp->fs_free >= need) {
		t->room_to = mark;
		return 0;
	}
	om_store_set_why(st, "no room in the %s tier: its filesystem has %" PRIu64 " bytes free, %" PRIu64
	    " of which are kept free (reserve), and its objects take %" PRIu64 " bytes",
	    tier_word(t->tier), sp->fs_free, sp->reserve, sp->used);
	return -ENOSPC;
}

/* Where the bytes up to end stop: a step further, or the whole object. */
static uint64_t
room_mark(const om_put_txn_t *t, uint64_t end)
{
	uint64_t mark = end + ROOM_STEP;

	if (!(t->flags & OM_STORE_SIZE_OPEN) && mark > t->size)
		mark = t->size;
	return mark;
}

/*
 * Before the bytes up to `end` are written: the filesystem must keep its
 * reserve free after them. If it would not, and the tier's own objects
 * can give back what the rest of the PUT needs, evict (least recently
 * used first); if they cannot (the space is held by something else), the
 * PUT fails with nothing evicted. Checked a step ahead, so that a PUT
 * costs one statvfs per MiB (the first step's from the figures
 * om_store_put_begin took, where they showed room without evicting).
 */
static int
ensure_room(om_put_txn_t *t, uint64_t end)
{
	om_space_t sp;

	if (end <= t->room_to)
		return 0;
	if (om_store_space(t->st, t->tier, &sp) != 0) {
		/* No figures: the writes themselves will say ENOSPC. */
		t->room_to = room_mark(t, end);
		return 0;
	}
	return room_with(t, end, room_mark(t, end), &sp);
}

/*
 * ENOSPC or EDQUOT from the filesystem despite the checks (another
 * writer took the space meanwhile), from the data, the metadata attribute
 * or the link: evict from the tier if its objects can give back what the
 * rest of the PUT needs, and the caller tries again. 0 if something went.
 */
static int
evict_for_enospc(om_put_txn_t *t)
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
check_fits(om_store_t *st, int tier, uint64_t size, om_space_t *spp)
{
	om_space_t sp;
	int rc;

	if ((rc = om_store_space_small(st, tier, size, &sp)) != 0)
		return rc;
	if (spp != NULL)
		*spp = sp;
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
	om_space_t sp;
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
	if (!(a->flags & OM_STORE_SIZE_OPEN) && (rc = check_fits(st, tier, a->size, &sp)) != 0)
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
	t->cond = OM_STORE_IF_ANY;
	t->cond_id = 0;
	t->meta_len = a->meta_len;
	t->uri_len = len;
	om_store_file_init(&t->file);
	om_store_file_init(&t->rec);
	t->buf = NULL;
	if (a->meta_len)
		memcpy(t->meta, a->meta, a->meta_len);
	memcpy(t->uri, uri, len);

	/* A small object goes into this process's pack at commit: its bytes
	 * wait here meanwhile (at most pack_max). */
	if (!(a->flags & OM_STORE_SIZE_OPEN) && st->tier[tier].pack_max > 0 && a->size <= st->tier[tier].pack_max) {
		if ((t->buf = malloc(a->size ? (size_t)a->size : 1)) == NULL) {
			free(t);
			return -ENOMEM;
		}
		/* Its room is checked as a file's bytes' (below). */
		if (sp.fs_size == 0 || sp.fs_free >= sp.reserve + pages(room_mark(t, 0)))
			t->room_to = room_mark(t, 0);
		*out = t;
		return 0;
	}

	/* Out of inodes or of space for one: as for its bytes. */
	while ((rc = om_store_file_new(st, tier, t->id, "tmp", O_EXCL, 0600, &t->file)) != 0)
		if ((rc != -ENOSPC && rc != -EDQUOT) || evict_for_enospc(t) != 0)
			break;
	if (rc != 0) {
		free(t);
		return rc;
	}
	/* The figures check_fits just took serve the first step of the
	 * bytes, where they show room without evicting (a statvfs less). */
	if (!(a->flags & OM_STORE_SIZE_OPEN) && (sp.fs_size == 0 || sp.fs_free >= sp.reserve +
	    pages(room_mark(t, 0))))
		t->room_to = room_mark(t, 0);
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
	/* A packed object's bytes too: the room for them is checked before
	 * they are accepted, as a file's. */
	if ((rc = ensure_room(t, t->written + n)) != 0)
		return rc;
	if (t->buf != NULL) {
		memcpy(t->buf + t->written, buf, n);
		t->crc = om_crc32c(t->crc, buf, n);
		t->crc_upto += n;
		t->written += n;
		return 0;
	}
	while (left > 0) {
		ssize_t w = write(t->file.fd, p, left);

		if (w < 0) {
			int e = errno;

			if (e == EINTR || ((e == ENOSPC || e == EDQUOT) && evict_for_enospc(t) == 0))
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
	if (t->buf != NULL) {
		uint8_t *p = t->buf + t->written;

		while (done < n) {
			ssize_t r = pread(fd, p + done, (size_t)(n - done), (off_t)(off + done));

			if (r < 0 && errno == EINTR)
				continue;
			if (r < 0)
				return -errno;
			if (r == 0)
				return -ENODATA; /* the descriptor holds fewer bytes */
			done += (uint64_t)r;
		}
		t->crc = om_crc32c(t->crc, p, (size_t)n);
		t->crc_upto += n;
		t->written += n;
		return 0;
	}
	while ((rc = om_os_copy_range(t->file.fd, fd, off + done, n - done)) == -ENOSPC || rc == -EDQUOT) {
		/* Go on where the copy stopped: the file is written in order
		 * from its start, so its offset says how far. */
		off_t pos = lseek(t->file.fd, 0, SEEK_CUR);

		if (pos < 0 || (uint64_t)pos < t->written || (uint64_t)pos - t->written > n ||
		    evict_for_enospc(t) != 0)
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
	return t->file.fd;
}

int
om_store_put_wrote(om_put_txn_t *t, uint64_t n)
{
	if (t->buf != NULL)
		return -EINVAL; /* a packed object has no file to splice into */
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
	om_store_file_discard(t->st, t->tier, &t->file);
	om_store_file_discard(t->st, t->tier, &t->rec);
	free(t->buf);
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
		int rc = om_os_pread_all(t->file.fd, buf, n, t->crc_upto);

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

int
om_store_put_cond(om_put_txn_t *t, int cond, uint64_t id)
{
	if ((cond == OM_STORE_IF_ID) != (id != 0) || cond < OM_STORE_IF_ANY || cond > OM_STORE_IF_ID)
		return -EINVAL;
	t->cond = cond;
	t->cond_id = id;
	return 0;
}

/* The index entry put under the transaction's condition: an expired
 * object not yet reaped counts as none (as a GET or STAT sees it). */
static int
index_put_cond(om_put_txn_t *t, const om_ix_obj_t *o, om_ix_obj_t *old)
{
	om_index_t *ix = t->st->ix;
	om_ix_obj_t cur;
	int rc;

	if (t->cond == OM_STORE_IF_ID)
		return om_index_put_match(ix, t->uri, t->uri_len, o, t->cond_id, old);
	if (t->cond != OM_STORE_IF_NONE)
		return om_index_put(ix, t->uri, t->uri_len, o, OM_IX_UPSERT, old);
	for (int tries = 0; tries < 8; tries++) {
		rc = om_index_put(ix, t->uri, t->uri_len, o, OM_IX_INSERT, &cur);
		if (rc != -EEXIST)
			return rc;
		if (cur.expires == 0 || cur.expires > om_time_s())
			return -ECANCELED;
		/* Expired: replaced, if it is still that one. */
		rc = om_index_put_match(ix, t->uri, t->uri_len, o, cur.id, old);
		if (rc != -ECANCELED && rc != -ENOENT)
			return rc;
	}
	return -ECANCELED;
}

/* Swaps the index entry for the new object o (evicting where the index is
 * full and the store may): om_index_put's result, -ENOSPC with
 * om_store_why saying which limit, -ECANCELED if the transaction's
 * condition does not hold. */
static int
index_swap(om_put_txn_t *t, const om_ix_obj_t *o, om_ix_obj_t *old)
{
	om_store_t *st = t->st;
	int rc;

	for (int tries = 0;; tries++) {
		rc = index_put_cond(t, o, old);
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
	} else if (rc == -ECANCELED || (rc == -ENOENT && t->cond == OM_STORE_IF_ID)) {
		om_store_set_why(st, "the precondition does not hold: %s", t->cond == OM_STORE_IF_NONE ?
		    "the object exists" : "the object is not the version the condition was on");
		rc = -ECANCELED;
	}
	return rc;
}

/*
 * A small object: one entry appended to this process's pack (written
 * whole at an offset named by the intent first), then the index entry
 * swapped. The entry is dead (state word) if the PUT fails after it was
 * written, or was ordered before a newer one.
 */
static int
commit_packed(om_put_txn_t *t, om_ix_obj_t *out)
{
	om_store_t *st = t->st;
	uint8_t rec[OM_META_REC_MAX];
	om_meta_rec_t r;
	om_ix_obj_t o, old;
	size_t rlen;
	int rc, kind = t->tier == OM_TIER_MEM ? OM_KIND_EPHEMERAL : OM_KIND_PERSIST;

	memset(&o, 0, sizeof(o));
	o.id = t->id;
	o.size = t->size;
	o.expires = t->expires;
	o.crc = t->crc;
	o.flags = OM_IX_F_PACKED | (t->tier == OM_TIER_MEM ? OM_IX_F_EPHEMERAL : 0);
	r = (om_meta_rec_t){ .kind = (uint8_t)kind, .id = o.id, .size = o.size,
		.expires = o.expires, .mtime = om_time_s(), .crc = o.crc, .uri = t->uri,
		.uri_len = (uint32_t)t->uri_len, .meta = t->meta, .meta_len = t->meta_len };
	rlen = om_meta_encode(&r, rec, sizeof(rec));
	OM_ASSERT(rlen != 0);
	while ((rc = om_pack_append(st, t->tier, t->id, rec, rlen, t->buf, (size_t)t->size, &o.loc)) != 0) {
		if ((rc == -ENOSPC || rc == -EDQUOT) && evict_for_enospc(t) == 0)
			continue;
		goto fail;
	}
	rc = index_swap(t, &o, &old);
	if (rc == -ESTALE) {
		(void)om_pack_drop(st, t->tier, o.id, o.loc);
		st->stats->superseded++;
	} else if (rc < 0) {
		(void)om_pack_drop(st, t->tier, o.id, o.loc);
		om_store_intent(st, 0, 0, 0);
		goto fail;
	}
	om_store_intent(st, 0, 0, 0);
	st->stats->puts++;
	st->stats->put_bytes += t->size;
	if (out != NULL)
		*out = o;
	free(t->buf);
	free(t);
	return 0;
fail:
	om_store_put_abort(t);
	return rc;
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
		if ((rc = check_fits(st, t->tier, t->size, NULL)) != 0)
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
	if (t->buf != NULL)
		return commit_packed(t, out);
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
	while ((rc = om_rec_prepare(st, t->tier, t->id, t->file.fd, rec, rlen, &t->rec)) != 0) {
		if ((rc == -ENOSPC || rc == -EDQUOT) && evict_for_enospc(t) == 0)
			continue;
		goto fail;
	}
	/* Writable by its owner until now (setting a user attribute needs
	 * that); read-only from publication on. */
	if (fchmod(t->file.fd, 0440) != 0) {
		rc = -errno;
		goto fail;
	}
	if (st->durability == OM_DURABLE_FSYNC && fsync(t->file.fd) != 0) {
		rc = -errno;
		goto fail;
	}

	om_store_object_name(t->id, name, sizeof(name));
	om_store_intent(st, t->id, t->tier, kind);
	/* A record file is published before its object (an object file is
	 * never without its record), and a new directory entry may need a
	 * block too. */
	while ((rc = om_rec_publish(st, t->tier, t->id, &t->rec)) == -ENOSPC || rc == -EDQUOT) {
		if (evict_for_enospc(t) != 0)
			break;
	}
	if (rc == 0) {
		while ((rc = om_store_file_publish(st, t->tier, &t->file, name)) == -ENOSPC || rc == -EDQUOT) {
			if (evict_for_enospc(t) != 0)
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

	rc = index_swap(t, &o, &old);
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
	om_store_file_discard(st, t->tier, &t->rec);
	om_store_file_discard(st, t->tier, &t->file);
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

