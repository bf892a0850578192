/*
 * Packs: objects of up to a tier's pack_max bytes are appended, many to a
 * file, to the pack this process writes (one per process and tier, so
 * appends take no lock), instead of a file each: on tmpfs a file costs a
 * whole page, an inode and a dentry, 4x the bytes of a 1 KiB object.
 *
 * An entry is written whole, by one pwritev at an offset known before it
 * is written (the process's intent names it), and never changed again but
 * for its state word: live, or dead once its object is replaced, deleted
 * or evicted. A pack is removed whole, when the cache manager has copied
 * its live entries to its own pack (compaction, store_maint.c) or none is
 * left; a reader that holds it open or mapped keeps reading the complete
 * old bytes, as with an object file. Layout and crash argument:
 * docs/ARCHITECTURE.md, "Packs".
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "core/om_core.h"
#include "core/om_log.h"
#include "os/om_os.h"
#include "store/store_int.h"

static const uint8_t zeros[16];

/* How often the pack a process appends to is checked to be still linked. */
#define PACK_LINKED_MS 10u

void
om_pack_name(uint32_t no, char *buf, size_t n)
{
	snprintf(buf, n, "packs/%06" PRIx32, no);
}

static uint32_t
pick_no(om_store_t *st)
{
	if (st->pack_seed == 0) {
		uint64_t s = 0;
		struct timespec ts;

		if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
			clock_gettime(CLOCK_MONOTONIC, &ts);
			s = (uint64_t)ts.tv_nsec ^ (uint64_t)getpid() << 32;
		}
		st->pack_seed = s | 1;
	}
	/* xorshift64 */
	st->pack_seed ^= st->pack_seed << 13;
	st->pack_seed ^= st->pack_seed >> 7;
	st->pack_seed ^= st->pack_seed << 17;
	return (uint32_t)(st->pack_seed >> 20) & OM_PACK_NO_MAX;
}

static void
writer_close(om_store_t *st, int tier)
{
	if (st->pw[tier].fd >= 0)
		close(st->pw[tier].fd); /* and with it the lock that says it is written */
	st->pw[tier].fd = -1;
	st->pw[tier].end = 0;
}

/* A new pack for this process: a free number (O_EXCL), locked shared for
 * as long as it is appended to (compaction takes only packs it can lock
 * exclusively), its header written. */
static int
writer_open(om_store_t *st, int tier)
{
	om_tier_t *t = &st->tier[tier];
	uint8_t h[OM_PACK_HDR];
	char name[32];
	int fd = -1, rc;
	uint32_t no = 0;

	for (int tries = 0; tries < 64; tries++) {
		no = pick_no(st);
		if (no == 0)
			continue;
		om_pack_name(no, name, sizeof(name));
		fd = openat(t->dirfd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0640);
		if (fd >= 0 || errno != EEXIST)
			break;
	}
	if (fd < 0)
		return errno == EEXIST ? -ENOSPC : -errno;
	if (flock(fd, LOCK_SH | LOCK_NB) != 0) {
		rc = -errno;
		goto fail;
	}
	om_pack_header_make(h, tier, no);
	if ((rc = om_os_pwrite_all(fd, h, sizeof(h), 0)) != 0)
		goto fail;
	if (st->durability == OM_DURABLE_FSYNC && (rc = om_os_fsync_dir(t->dirfd, "packs")) != 0)
		goto fail;
	st->pw[tier].fd = fd;
	st->pw[tier].no = no;
	st->pw[tier].end = OM_PACK_HDR;
	st->pw[tier].linked_ms = om_clock_ms();
	return 0;
fail:
	close(fd);
	(void)unlinkat(t->dirfd, name, 0);
	return rc;
}

int
om_pack_append(om_store_t *st, int tier, uint64_t id, const uint8_t *rec, size_t rlen,
    const void *data, size_t size, uint64_t *loc)
{
	uint64_t elen = om_pack_entry_len(rlen, size), at, d;
	uint8_t mark[8];
	struct iovec iov[5];
	size_t pad1, pad2, total = 0;
	ssize_t n = 0;
	int cnt = 0, rc;

	if (st->pw[tier].fd >= 0 && st->pw[tier].end + elen > OM_PACK_BYTES)
		writer_close(st, tier);
	/* A pack removed behind the store's back (its tier's directory
	 * deleted): what went into it would be lost. Nothing of the daemon
	 * removes a pack being appended to (compaction takes only packs it can
	 * lock exclusively), so it is looked at every PACK_LINKED_MS, not at
	 * every append (an fstat of a 4 KiB PUT's 5.6 system calls). */
	if (st->pw[tier].fd >= 0 && om_clock_ms() - st->pw[tier].linked_ms >= PACK_LINKED_MS) {
		struct stat sb;

		if (fstat(st->pw[tier].fd, &sb) != 0 || sb.st_nlink == 0)
			writer_close(st, tier);
		else
			st->pw[tier].linked_ms = om_clock_ms();
	}
	if (st->pw[tier].fd < 0 && (rc = writer_open(st, tier)) != 0)
		return rc;
	at = st->pw[tier].end;
	d = at + OM_PACK_ALIGN16(rlen + 8);
	*loc = OM_PACK_LOC(st->pw[tier].no, d);
	pad1 = (size_t)(d - 8 - at - rlen);
	pad2 = (size_t)(OM_PACK_ALIGN16(size) - size);
	om_le32(mark, OM_PACK_LIVE);
	om_le32(mark + 4, (uint32_t)rlen);
	/* pwritev only reads them: the casts drop const, nothing writes. */
	iov[cnt++] = (struct iovec){ (uint8_t *)rec, rlen };
	if (pad1)
		iov[cnt++] = (struct iovec){ (uint8_t *)zeros, pad1 };
	iov[cnt++] = (struct iovec){ mark, sizeof(mark) };
	if (size)
		iov[cnt++] = (struct iovec){ (void *)data, size };
	if (pad2)
		iov[cnt++] = (struct iovec){ (uint8_t *)zeros, pad2 };
	for (int i = 0; i < cnt; i++)
		total += iov[i].iov_len;
	OM_ASSERT(total == elen);

	om_store_intent_loc(st, id, tier, *loc);
	/* A short write (a filesystem may move fewer bytes than asked) goes
	 * on from where it stopped, as every data loop of the store does;
	 * only an error, or no progress, fails the append. */
	for (size_t done = 0, first = 0; done < total;) {
		n = pwritev(st->pw[tier].fd, iov + first, cnt - (int)first, (off_t)(at + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		done += (size_t)n;
		while (n > 0 && first < (size_t)cnt) {
			if ((size_t)n >= iov[first].iov_len) {
				n -= (ssize_t)iov[first].iov_len;
				first++;
			} else {
				iov[first].iov_base = (uint8_t *)iov[first].iov_base + n;
				iov[first].iov_len -= (size_t)n;
				n = 0;
			}
		}
		n = (ssize_t)done;
	}
	if (n != (ssize_t)total) {
		rc = n < 0 ? -errno : -ENOSPC;
		om_store_set_why(st, "cannot append to the pack %s/packs/%06" PRIx32 ": %s",
		    st->tier[tier].path, st->pw[tier].no, om_strerror(rc));
		/* Whatever of it landed is the pack's end for good: a rebuild
		 * stops at an entry that does not check. The next PUT opens
		 * another pack. */
		writer_close(st, tier);
		om_store_intent(st, 0, 0, 0);
		return rc;
	}
	if (st->durability == OM_DURABLE_FSYNC && fdatasync(st->pw[tier].fd) != 0) {
		rc = -errno;
		om_store_set_why(st, "cannot sync the pack %s/packs/%06" PRIx32 ": %s", st->tier[tier].path,
		    st->pw[tier].no, om_strerror(rc));
		/* The entry is whole: a rebuild would index it, and bring back
		 * a PUT that failed. */
		(void)om_pack_drop(st, tier, id, *loc);
		writer_close(st, tier);
		om_store_intent(st, 0, 0, 0);
		return rc;
	}
	st->pw[tier].end = at + elen;
	return 0;
}

/* pk[] is one thread's but while the rebuild's threads walk packs
 * (om_pack_rebuild): then a mutex is held from the lookup in pk[] to the
 * write through the descriptor, which another thread's lookup could
 * otherwise close under it. */
static void
pk_lock(om_store_t *st)
{
	if (st->pk_lock != NULL)
		pthread_mutex_lock(st->pk_lock);
}

static void
pk_unlock(om_store_t *st)
{
	if (st->pk_lock != NULL)
		pthread_mutex_unlock(st->pk_lock);
}

/* The first of the two slots of pk[] where pack no of the tier may be. */
static unsigned
pk_set(const om_store_t *st, int tier, uint32_t no)
{
	return (no * 2654435761u >> 8 ^ (unsigned)tier) % (OM_ARRAY_LEN(st->pk) / 2) * 2;
}

/* A descriptor of pack no of the tier, open for writing state words:
 * kept, in sets of two by number, the less recently used of a set
 * replaced (a replace marks its old entry dead, in any of the packs; a
 * table mapped directly by number, where two packs in use shared a slot
 * and took it from each other, opened and closed one at every sixth 4 KiB
 * PUT). A kept one must be still linked: a pack compacted
 * away by another process, whose number a new pack may have taken, is
 * opened again. A compaction notes a pack it removed after the unlink
 * (om_index_note_drop), so while no note was taken since the descriptor
 * was last found linked, it still is, and the fstat is saved (one system
 * call of a packed replace or DELETE). */
static int
pack_rw(om_store_t *st, int tier, uint32_t no)
{
	unsigned set = pk_set(st, tier, no), i;
	uint64_t head = om_index_notes_head(st->ix);
	struct stat sb;
	char name[32];
	int fd;

	if (st->pw[tier].fd >= 0 && st->pw[tier].no == no)
		return st->pw[tier].fd;
	for (i = set; i < set + 2; i++) {
		if (st->pk[i].fd < 0 || st->pk[i].tier != tier || st->pk[i].no != no)
			continue;
		if (st->pk[i].seen == head ||
		    (fstat(st->pk[i].fd, &sb) == 0 && sb.st_nlink > 0)) {
			st->pk[i].seen = head;
			st->pk[i].used = ++st->pk_clock;
			return st->pk[i].fd;
		}
		break; /* removed: opened again in its place */
	}
	if (i == set + 2)
		i = st->pk[set].fd < 0 ? set : st->pk[set + 1].fd < 0 ? set + 1 :
		    st->pk[set].used <= st->pk[set + 1].used ? set : set + 1;
	om_pack_name(no, name, sizeof(name));
	do
		fd = openat(st->tier[tier].dirfd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return -errno;
	if (st->pk[i].fd >= 0)
		close(st->pk[i].fd);
	st->pk[i].fd = fd;
	st->pk[i].tier = tier;
	st->pk[i].no = no;
	st->pk[i].seen = head; /* read before the open, which found it linked */
	st->pk[i].used = ++st->pk_clock;
	return fd;
}

int
om_pack_kill(om_store_t *st, int tier, uint64_t loc)
{
	uint8_t w[4];
	int fd, rc;

	om_le32(w, OM_PACK_DEAD);
	pk_lock(st);
	fd = pack_rw(st, tier, OM_PACK_NO(loc));
	/* -ENOENT: compacted away. */
	rc = fd < 0 ? fd : om_os_pwrite_all(fd, w, sizeof(w), OM_PACK_OFF(loc) - 8);
	pk_unlock(st);
	return rc;
}

int
om_pack_sync(om_store_t *st, int tier, uint64_t loc)
{
	int fd, rc;

	pk_lock(st);
	fd = pack_rw(st, tier, OM_PACK_NO(loc));
	if (fd == -ENOENT)
		rc = 0; /* compacted away: its entries are nowhere */
	else if (fd < 0)
		rc = fd;
	else
		rc = fdatasync(fd) == 0 ? 0 : -errno;
	pk_unlock(st);
	return rc;
}

/* The note of om_pack_drop for the entry at loc of object id, as its path
 * under the tier (the rebuild's tomb_parse reads the name back). */
static void
tomb_name(char *buf, size_t n, uint64_t id, uint64_t loc)
{
	snprintf(buf, n, "tmp/%016" PRIx64 ".%010" PRIx64 ".dead", id, loc);
}

/*
 * An entry that could not be marked dead (its pack could not be opened
 * or written) would be indexed again by the next rebuild: it is noted as
 * tmp/ID.LOC.dead instead, which the rebuild reads before the packs and
 * kills that entry by (as om_store_drop_file moves a file it cannot
 * unlink to tmp/). Until then it takes space in its pack, not in the
 * index: a compaction leaves it behind.
 */
int
om_pack_drop(om_store_t *st, int tier, uint64_t id, uint64_t loc)
{
	om_tier_t *t = &st->tier[tier];
	char name[48], pname[32];
	int rc, fd;

	if ((rc = om_pack_kill(st, tier, loc)) == 0 || rc == -ENOENT)
		return rc;
	om_pack_name(OM_PACK_NO(loc), pname, sizeof(pname));
	tomb_name(name, sizeof(name), id, loc);
	do
		fd = openat(t->dirfd, name, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		int e = errno;

		om_log_err_limited(-rc, "store: marking object %016" PRIx64 " dead in %s/%s failed, and so "
		    "did noting it in tmp/ (%s); it may come back at the next start", id, t->path, pname,
		    om_strerror(-e));
		return rc;
	}
	close(fd);
	om_log_warn_limited(-rc, "store: marking object %016" PRIx64 " dead in %s/%s failed; noted as "
	    "%s/%s, dropped at the next start", id, t->path, pname, t->path, name);
	return 0;
}

int
om_pack_open(om_store_t *st, int tier, uint32_t no)
{
	char name[32];
	int fd;

	om_pack_name(no, name, sizeof(name));
	fd = openat(st->tier[tier].dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	return fd < 0 ? -errno : fd;
}

/* Where an entry is read from: a pack's descriptor (pread), or a reader's
 * mapping of it (map, len bytes from its start), whose copy of bytes the
 * pack no longer holds (cut short behind the daemon's back) is -EFAULT,
 * the SIGBUS caught. */
typedef struct {
	int fd;
	const uint8_t *map;
	size_t len;
} pack_src_t;

static int
src_read(const pack_src_t *s, void *buf, size_t n, uint64_t off)
{
	if (s->map == NULL)
		return om_os_pread_all(s->fd, buf, n, off);
	if (off > s->len || n > s->len - off)
		return -EIO; /* past the end, as pread's */
	return om_os_copy_mapped(buf, s->map + off, n);
}

static ssize_t
entry_of(const pack_src_t *s, uint64_t loc, uint64_t id, uint8_t *rec, size_t cap)
{
	uint8_t mark[8], hdr[OM_META_HDR];
	uint64_t d = OM_PACK_OFF(loc), e;
	uint32_t rlen;
	int rc;

	if (d < OM_PACK_HDR + OM_META_HDR + 8)
		return -ENOENT;
	if ((rc = src_read(s, mark, sizeof(mark), d - 8)) != 0)
		return rc == -ENODATA ? -ENOENT : rc;
	rlen = om_get32(mark + 4);
	if (om_get32(mark) != OM_PACK_LIVE || rlen < OM_META_HDR || rlen > OM_META_REC_MAX ||
	    OM_PACK_ALIGN16((uint64_t)rlen + 8) > d - OM_PACK_HDR)
		return -ENOENT;
	e = d - OM_PACK_ALIGN16((uint64_t)rlen + 8);
	if (rec == NULL) {
		if ((rc = src_read(s, hdr, sizeof(hdr), e)) != 0)
			return rc == -ENODATA ? -ENOENT : rc;
		if (om_get32(hdr) != OM_META_MAGIC || om_get64(hdr + 16) != id)
			return -ENOENT;
		return (ssize_t)rlen;
	}
	if (rlen > cap)
		return -ERANGE;
	if ((rc = src_read(s, rec, rlen, e)) != 0)
		return rc == -ENODATA ? -ENOENT : rc;
	{
		om_meta_rec_t r;

		if (om_meta_decode(rec, rlen, &r) != 0 || r.id != id)
			return -ENOENT;
	}
	return (ssize_t)rlen;
}

ssize_t
om_pack_entry(int fd, uint64_t loc, uint64_t id, uint8_t *rec, size_t cap)
{
	pack_src_t s = { fd, NULL, 0 };

	return entry_of(&s, loc, id, rec, cap);
}

/* Closes the descriptors kept to mark entries dead: all of them, or
 * (gone_only) those of packs removed since they were opened. */
static void
pk_close(om_store_t *st, bool gone_only)
{
	for (unsigned i = 0; i < OM_ARRAY_LEN(st->pk); i++) {
		struct stat sb;

		if (st->pk[i].fd < 0)
			continue;
		if (gone_only && fstat(st->pk[i].fd, &sb) == 0 && sb.st_nlink > 0)
			continue;
		close(st->pk[i].fd);
		st->pk[i].fd = -1;
	}
}

void
om_store_pack_sweep(om_store_t *st)
{
	pk_close(st, true);
}

/* A note of om_index_note_drop: a pack's closes its kept descriptor. */
static void
pk_noted(void *arg, uint64_t key)
{
	om_store_t *st = arg;
	uint64_t id = OM_STORE_DROP_ID(key);
	int tier = OM_STORE_DROP_TIER(key);
	uint32_t no;
	unsigned set;

	if (!OM_STORE_IS_PACK_ID(id))
		return;
	no = (uint32_t)(id & UINT32_MAX);
	set = pk_set(st, tier, no);
	for (unsigned i = set; i < set + 2; i++) {
		if (st->pk[i].fd >= 0 && st->pk[i].tier == tier && st->pk[i].no == no) {
			close(st->pk[i].fd);
			st->pk[i].fd = -1;
		}
	}
}

void
om_store_pack_follow(om_store_t *st)
{
	if (st->ix == NULL || om_index_notes_head(st->ix) == st->pk_notes)
		return;
	pk_lock(st);
	/* Lapped: which packs went is not known; each kept one is looked at. */
	if (om_index_notes(st->ix, &st->pk_notes, pk_noted, st) == -ERANGE)
		pk_close(st, true);
	pk_unlock(st);
}

void
om_pack_close_all(om_store_t *st)
{
	for (int tier = 0; tier < 2; tier++)
		writer_close(st, tier);
	pk_close(st, false);
}

/* ---- damaged entries ----------------------------------------------------- */

/* An entry whose bytes do not match their checksum, found walking a pack:
 * its bytes as they are go to corrupt/ID for the operator, it is marked
 * dead, and said once in the log. */
static void
pack_damaged(om_store_t *st, int tier, const om_meta_rec_t *r, uint64_t loc, const uint8_t *data,
    const char *when)
{
	om_tier_t *t = &st->tier[tier];
	char dst[64], pname[32];
	int out;

	snprintf(dst, sizeof(dst), "corrupt/%016" PRIx64, r->id);
	/* Under the rebuild's mutex: two damaged copies of one id (a
	 * compaction's) walked at once would mix their bytes in one file. */
	pk_lock(st);
	out = openat(t->dirfd, dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0440);
	if (out >= 0) {
		(void)om_os_pwrite_all(out, data, (size_t)r->size, 0);
		close(out);
	}
	pk_unlock(st);
	(void)om_pack_kill(st, tier, loc);
	om_pack_name(OM_PACK_NO(loc), pname, sizeof(pname));
	om_log_warn(0, "store: %s/%s at %llu, object %016" PRIx64 ": its bytes do not match their checksum "
	    "(found %s); copied to %s/%s, never served again", t->path, pname,
	    (unsigned long long)OM_PACK_OFF(loc), r->id, when, t->path, dst);
}

/* ---- rebuild ------------------------------------------------------------ */

static int
parse_hex(const char *s, size_t n, uint64_t *v)
{
	*v = 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c >= '0' && c <= '9')
			*v = *v << 4 | (uint64_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v = *v << 4 | (uint64_t)(c - 'a' + 10);
		else
			return -1;
	}
	return 0;
}

static int
parse_no(const char *name, uint32_t *no)
{
	uint64_t v;

	if (strlen(name) != 6 || parse_hex(name, 6, &v) != 0 || v == 0 || v > OM_PACK_NO_MAX)
		return -1;
	*no = (uint32_t)v;
	return 0;
}

/* A note of om_pack_drop: the entry at loc, of object id, is dead. */
typedef struct {
	uint64_t id;
	uint64_t loc;
	int keep; /* found live, and marking it dead failed again */
} tomb_t;

#define TOMB_LEN 32 /* "0123456789abcdef.0123456789.dead" */

static int
tomb_parse(const char *name, tomb_t *t)
{
	if (strlen(name) != TOMB_LEN || name[16] != '.' || strcmp(name + 27, ".dead") != 0 ||
	    parse_hex(name, 16, &t->id) != 0 || parse_hex(name + 17, 10, &t->loc) != 0)
		return -1;
	t->keep = 0;
	return 0;
}

int
om_pack_is_tomb(const char *name)
{
	tomb_t t;

	return tomb_parse(name, &t) == 0;
}

static int
tomb_cmp(const void *a, const void *b)
{
	const tomb_t *x = a, *y = b;

	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	return x->loc < y->loc ? -1 : x->loc > y->loc;
}

/* The tier's notes, sorted: their number, or -errno. */
static ssize_t
tombs_load(om_store_t *st, int tier, tomb_t **out)
{
	int fd = openat(st->tier[tier].dirfd, "tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	tomb_t *v = NULL, t;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;

	*out = NULL;
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		return -errno;
	}
	for (;;) {
		/* A directory that cannot be read is not one without notes:
		 * the rebuild fails rather than index what they kill. */
		errno = 0;
		if ((de = readdir(d)) == NULL) {
			int e = errno;

			if (e != 0) {
				free(v);
				closedir(d);
				return -e;
			}
			break;
		}
		if (tomb_parse(de->d_name, &t) != 0)
			continue;
		if (n == cap) {
			tomb_t *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (nv == NULL) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[n++] = t;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), tomb_cmp);
	*out = v;
	return (ssize_t)n;
}

/* Removes the notes whose entries are dead now (or gone). */
static void
tombs_done(om_store_t *st, int tier, const tomb_t *v, size_t n)
{
	char name[48];

	for (size_t i = 0; i < n; i++) {
		if (v[i].keep)
			continue;
		tomb_name(name, sizeof(name), v[i].id, v[i].loc);
		(void)unlinkat(st->tier[tier].dirfd, name, 0);
	}
}

/* Shared by the threads that walk one tier's packs. */
typedef struct {
	om_store_t *st;
	int tier;
	int64_t now;
	int dfd;        /* packs/ */
	uint32_t *nos;  /* the packs, all listed before any is walked */
	size_t npacks;
	size_t next;    /* atomic: the next of nos to walk */
	int err;        /* atomic: the first error, which stops every thread */
	/* Read by every thread; a note's keep is written by the one thread
	 * that meets its entry (a note names one entry of one pack). */
	tomb_t *tombs;
	size_t ntombs;
} pack_job_t;

/* One thread's walk: its counts, summed once every thread is done (no
 * counter is shared while they run). */
typedef struct {
	pack_job_t *job;
	om_pack_rebuild_t pr;
	uint64_t live;  /* entries of the pack being walked that were indexed */
	int err;
	int stopped;    /* by another thread's error: its pack is left as it is */
} pack_rb_t;

static int
rebuild_entry(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	pack_rb_t *b = arg;
	pack_job_t *job = b->job;
	om_store_t *st = job->st;
	om_ix_obj_t o, old;
	int rc;

	if (__atomic_load_n(&job->err, __ATOMIC_RELAXED) != 0) {
		b->stopped = 1;
		return 1;
	}
	if (r->id > b->pr.max_id)
		b->pr.max_id = r->id;
	if (state == OM_PACK_BAD) {
		b->pr.corrupt++;
		pack_damaged(st, job->tier, r, loc, data, "by the rebuild");
		return 0;
	}
	if (state != OM_PACK_LIVE)
		return 0;
	if (job->ntombs != 0) {
		tomb_t key = { r->id, loc, 0 }, *hit = bsearch(&key, job->tombs, job->ntombs, sizeof(key), tomb_cmp);

		if (hit != NULL) {
			/* Dropped by a process that could not mark it dead. */
			b->pr.stale++;
			hit->keep = om_pack_kill(st, job->tier, loc) != 0;
			return 0;
		}
	}
	if ((job->tier == OM_TIER_DISK) != (r->kind == OM_KIND_PERSIST) || r->kind == OM_KIND_COPY ||
	    r->uri_len > om_index_max_uri(st->ix)) {
		b->pr.corrupt++;
		(void)om_pack_kill(st, job->tier, loc);
		return 0;
	}
	if (r->expires != 0 && r->expires <= job->now) {
		b->pr.expired++;
		(void)om_pack_kill(st, job->tier, loc);
		return 0;
	}
	memset(&o, 0, sizeof(o));
	o.id = r->id;
	o.size = r->size;
	o.expires = r->expires;
	o.crc = r->crc;
	o.flags = OM_IX_F_PACKED | (job->tier == OM_TIER_MEM ? OM_IX_F_EPHEMERAL : 0);
	o.loc = loc;
	/* The index takes concurrent writers (as the files' threads put);
	 * whichever thread comes second, the newer id wins. */
	for (;;) {
		rc = om_index_put(st->ix, r->uri, r->uri_len, &o, OM_IX_UPSERT, &old);
		if (rc != -ESTALE || old.id != r->id || !(old.flags & OM_IX_F_PACKED) ||
		    OM_PACK_NO(old.loc) <= OM_PACK_NO(loc))
			break;
		/* This very object in two packs (a compaction that did not
		 * finish): the pack of the lower number keeps it, not the one
		 * a thread happened to walk first, so that the same pack ends
		 * up holding all of them and the other empty (removed by the
		 * next rebuild). The index moves here, the other entry dies. */
		if (om_index_relocate(st->ix, old.slot, old.id, old.loc, loc) == 0) {
			b->pr.stale++;
			(void)om_pack_kill(st, job->tier, old.loc);
			b->live++;
			return 0;
		}
		/* Moved meanwhile by another thread's copy of it: again. */
	}
	if (rc == 1) {
		b->pr.stale++; /* the older version was released */
	} else if (rc == -ESTALE) {
		/* A newer version, or this very object copied by a compaction
		 * that did not finish: this entry is not needed. */
		b->pr.stale++;
		(void)om_pack_kill(st, job->tier, loc);
		return 0;
	} else if (rc == -ENOSPC || rc == -ENOMEM) {
		om_log_err(0, "store: rebuild: the index is full: its capacity is smaller than the "
		    "number of objects in the tiers, or its URI arena too small for their URIs");
		b->err = -ENOSPC;
		return 1;
	} else if (rc < 0) {
		b->err = rc;
		return 1;
	}
	b->pr.entries++;
	b->live++;
	return 0;
}

static int
rebuild_pack(pack_rb_t *b, const char *name, uint32_t no)
{
	pack_job_t *job = b->job;
	om_tier_t *t = &job->st->tier[job->tier];
	struct stat sb;
	uint64_t end;
	uint8_t *img;
	int fd, rc;

	fd = openat(job->dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &sb) != 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (!S_ISREG(sb.st_mode) || sb.st_size < OM_PACK_HDR || (uint64_t)sb.st_size > OM_PACK_BYTES) {
		close(fd);
		om_log_warn(0, "store: rebuild: %s/packs/%s is not a pack (%lld bytes); left alone",
		    t->path, name, (long long)sb.st_size);
		b->pr.corrupt++;
		return 0;
	}
	img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (img == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}
	b->live = 0;
	end = om_pack_walk(img, (size_t)sb.st_size, job->tier, no, rebuild_entry, b);
	munmap(img, (size_t)sb.st_size);
	close(fd);
	if (b->err != 0)
		return b->err;
	/* Stopped half-way by another thread's error (the rebuild fails):
	 * its end is not where it stopped, nor is it empty. */
	if (b->stopped)
		return 0;
	if (end == 0) {
		om_log_warn(0, "store: rebuild: %s/packs/%s has no pack header; left alone", t->path, name);
		b->pr.corrupt++;
	} else if (end < (uint64_t)sb.st_size) {
		om_log_warn(0, "store: rebuild: %s/packs/%s: %llu bytes from offset %llu do not check "
		    "(a write cut short, or damage); the entries before them are indexed",
		    t->path, name, (unsigned long long)((uint64_t)sb.st_size - end), (unsigned long long)end);
	}
	if (end != 0 && b->live == 0 && unlinkat(job->dfd, name, 0) != 0)
		om_log_warn(errno, "store: rebuild: cannot remove the empty pack %s/packs/%s", t->path, name);
	return 0;
}

/* One thread: the next pack not yet taken, until none is left or a
 * thread failed. */
static void *
pack_thread(void *arg)
{
	pack_rb_t *b = arg;
	pack_job_t *job = b->job;

	for (;;) {
		size_t i = __atomic_fetch_add(&job->next, 1, __ATOMIC_RELAXED);
		char name[16];
		int rc, zero = 0;

		if (i >= job->npacks || __atomic_load_n(&job->err, __ATOMIC_RELAXED) != 0)
			break;
		snprintf(name, sizeof(name), "%06" PRIx32, job->nos[i]);
		if ((rc = rebuild_pack(b, name, job->nos[i])) != 0) {
			__atomic_compare_exchange_n(&job->err, &zero, rc, false, __ATOMIC_RELAXED,
			    __ATOMIC_RELAXED);
			break;
		}
	}
	return NULL;
}

/* The numbers of the packs in packs/ (d), all of them before any is
 * walked: the threads share a list, not a directory stream. A readdir
 * that fails fails the rebuild: the packs not listed would be lost. */
static int
list_packs(const om_store_t *st, const om_tier_t *t, DIR *d, uint32_t **out, size_t *n)
{
	uint32_t *v = NULL;
	size_t cap = 0;
	struct dirent *de;

	*n = 0;
	for (;;) {
		uint32_t no;

		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0) {
				int rc = -errno;

				om_log_err(-rc, "store: rebuild: reading \"%s/packs\" failed", t->path);
				free(v);
				return rc;
			}
			break;
		}
		if (de->d_name[0] == '.' || parse_no(de->d_name, &no) != 0)
			continue;
		/* Packs become the current user's, as the objects' files do. */
		if (st->set_owner && !t->writer_same) {
			struct stat sb;

			if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
			    om_store_owner_differs(st, (int)(t - st->tier), &sb) &&
			    fchownat(dirfd(d), de->d_name, st->owner_uid, st->owner_gid, AT_SYMLINK_NOFOLLOW) != 0)
				om_log_warn(errno, "store: rebuild: chown of %s/packs/%s failed", t->path, de->d_name);
		}
		if (*n == cap && om_grow(&v, &cap, sizeof(*v)) != 0) {
			free(v);
			return -ENOMEM;
		}
		v[(*n)++] = no;
	}
	*out = v;
	return 0;
}

/* The packs of job, walked by nthreads threads (this one the first);
 * their counts added to pr. 0, or the first error. */
static int
walk_packs(pack_job_t *job, unsigned nthreads, om_pack_rebuild_t *pr)
{
	pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	pthread_t *tid = calloc(nthreads, sizeof(*tid));
	pack_rb_t *b = calloc(nthreads, sizeof(*b));
	unsigned started = 0;

	if (tid == NULL || b == NULL) {
		free(tid);
		free(b);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++)
		b[i].job = job;
	/*
	 * Entries are marked dead from every thread: their own (stale,
	 * expired, damaged, noted), and the older version of a URI that
	 * another pack's newer one releases (om_index_put calls
	 * om_store_release, which marks it dead in whichever pack holds it).
	 * So a descriptor of the pack being walked would not do: the store's
	 * cache of descriptors (pk[], pack_rw) is used as by one thread, each
	 * kill under a mutex. Kills are few beside the entries walked; the
	 * mutex is never held while the index's locks are taken.
	 */
	job->st->pk_lock = &lock;
	for (unsigned i = 1; i < nthreads; i++) {
		if (pthread_create(&tid[i], NULL, pack_thread, &b[i]) != 0)
			break; /* fewer threads: the ones started take every pack */
		started = i;
	}
	pack_thread(&b[0]);
	for (unsigned i = 1; i <= started; i++)
		pthread_join(tid[i], NULL);
	job->st->pk_lock = NULL;
	pthread_mutex_destroy(&lock);
	for (unsigned i = 0; i < nthreads; i++) {
		if (b[i].pr.max_id > pr->max_id)
			pr->max_id = b[i].pr.max_id;
		pr->entries += b[i].pr.entries;
		pr->stale += b[i].pr.stale;
		pr->expired += b[i].pr.expired;
		pr->corrupt += b[i].pr.corrupt;
	}
	free(tid);
	free(b);
	return job->err;
}

int
om_pack_rebuild(om_store_t *st, int tier, int64_t now, unsigned nthreads, om_pack_rebuild_t *pr)
{
	pack_job_t job = { st, tier, now, -1, NULL, 0, 0, 0, NULL, 0 };
	DIR *d = NULL;
	ssize_t nt;
	int fd, rc = 0;

	/* The notes of entries to kill first; they go once the packs are
	 * read through (a rebuild that stops reads them again). */
	if ((nt = tombs_load(st, tier, &job.tombs)) < 0)
		return (int)nt;
	job.ntombs = (size_t)nt;
	fd = openat(st->tier[tier].dirfd, "packs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0) {
		rc = errno == ENOENT ? 0 : -errno;
		goto out;
	}
	if ((d = fdopendir(fd)) == NULL) {
		close(fd);
		rc = -errno;
		goto out;
	}
	if ((rc = list_packs(st, &st->tier[tier], d, &job.nos, &job.npacks)) != 0 || job.npacks == 0)
		goto out;
	job.dfd = dirfd(d);
	/* No more threads than packs. */
	rc = walk_packs(&job, nthreads < 1 ? 1 : nthreads > job.npacks ? (unsigned)job.npacks : nthreads, pr);
out:
	if (d != NULL)
		closedir(d);
	if (rc == 0 && job.tombs != NULL)
		tombs_done(st, tier, job.tombs, job.ntombs);
	free(job.tombs);
	free(job.nos);
	/* The master rebuilds, then forks every other process: none of them
	 * is to inherit (and keep) a descriptor of a pack that a compaction
	 * removes later. */
	pk_close(st, false);
	return rc;
}

int
om_pack_reclaim(om_store_t *st, int tier, uint64_t id, uint64_t loc)
{
	uint8_t rec[OM_META_REC_MAX];
	om_meta_rec_t r;
	om_ix_obj_t o;
	ssize_t n;
	int fd = om_pack_open(st, tier, OM_PACK_NO(loc));

	if (fd < 0)
		return 0;
	n = om_pack_entry(fd, loc, id, rec, sizeof(rec));
	close(fd);
	/* Not written (or not whole): nothing to undo. */
	if (n < 0 || om_meta_decode(rec, (size_t)n, &r) != 0)
		return 0;
	if (om_index_lookup(st->ix, r.uri, r.uri_len, &o, 0) == 0 && o.id == id &&
	    (o.flags & OM_IX_F_PACKED) && o.loc == loc)
		return 0;
	(void)om_pack_drop(st, tier, id, loc);
	pk_close(st, false); /* the master's: not kept, not inherited by the next worker */
	om_log_info(0, "store: dropped packed object %016" PRIx64 " written by a process that died "
	    "before indexing it", id);
	return 1;
}

/* ---- readers ------------------------------------------------------------ */

uint32_t
om_store_pack_no(const om_ix_obj_t *o)
{
	return OM_PACK_NO(o->loc);
}

uint64_t
om_store_pack_off(const om_ix_obj_t *o)
{
	return OM_PACK_OFF(o->loc);
}

int
om_store_open_pack(om_store_t *st, int tier, uint32_t no)
{
	return om_pack_open(st, tier, no);
}

int
om_store_pack_check(int fd, const om_ix_obj_t *o)
{
	ssize_t n = om_pack_entry(fd, o->loc, o->id, NULL, 0);

	return n < 0 ? (int)n : 0;
}

/* What a client is given of a packed object: a memfd holding exactly its
 * size bytes from buf, sealed (no write, no change of size), mode 0440,
 * close-on-exec, and read-only. A pack's descriptor would show it the
 * other objects in the pack. */
static int
sealed_memfd(const void *buf, size_t size)
{
	char path[40];
	int mfd, ro, rc;

	if ((mfd = memfd_create("objmapper-object", MFD_CLOEXEC | MFD_ALLOW_SEALING)) < 0)
		return -errno;
	if ((rc = om_os_pwrite_all(mfd, buf, size, 0)) != 0) {
		close(mfd);
		return rc;
	}
	/* Mode 0440, as a published object's file. */
	(void)fchmod(mfd, 0440);
	(void)fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	/* Read-only, as an object file's descriptor is: a new description
	 * of it opened O_RDONLY (the sealed one if /proc is not there). The
	 * seals alone refuse every write, but with EPERM on a description
	 * F_GETFL shows open for writing; no call changes the access mode. */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", mfd);
	ro = open(path, O_RDONLY | O_CLOEXEC);
	if (ro < 0)
		return mfd;
	close(mfd);
	return ro;
}

int
om_store_pack_memfd(om_store_t *st, int tier, const om_ix_obj_t *o)
{
	static _Thread_local uint8_t buf[OM_STORE_PACK_MAX];
	int pfd, rc;

	if (o->size > sizeof(buf))
		return -EFBIG;
	if ((pfd = om_pack_open(st, tier, OM_PACK_NO(o->loc))) < 0)
		return pfd;
	rc = om_store_pack_check(pfd, o);
	if (rc == 0)
		rc = om_os_pread_all(pfd, buf, (size_t)o->size, OM_PACK_OFF(o->loc));
	close(pfd);
	if (rc != 0)
		return rc == -EIO ? -ENOENT : rc;
	return sealed_memfd(buf, (size_t)o->size);
}

int
om_store_pack_memfd_from(const void *map, size_t maplen, const om_ix_obj_t *o)
{
	pack_src_t s = { -1, map, maplen };
	uint8_t rec[OM_META_REC_MAX];
	uint64_t off = OM_PACK_OFF(o->loc);
	ssize_t n;

	if (o->size > OM_STORE_PACK_MAX)
		return -EFBIG;
	if (off > maplen || o->size > maplen - off)
		return -ENOENT;
	if ((n = entry_of(&s, o->loc, o->id, rec, sizeof(rec))) < 0)
		return n == -EIO ? -ENOENT : (int)n;
	/* Written straight from the mapping: the kernel's copy of a page
	 * the pack no longer holds fails with EFAULT, no SIGBUS. */
	return sealed_memfd((const uint8_t *)map + off, (size_t)o->size);
}

/* ---- compaction --------------------------------------------------------- */

typedef struct {
	int tier;
	uint32_t no;
	uint64_t size;
	uint64_t live;
	int kept; /* found more than half live: not copied */
} pack_use_t;

/*
 * The index gives a pack's live bytes only as an estimate: it knows each
 * entry's size, not its record's (the URI's length, the metadata's). A
 * pack of small objects with large metadata (HTTP headers) looks mostly
 * dead to it, and would be copied every pass, whole, into a pack that
 * looks the same. So a pack is walked before it is copied, its live
 * entries counted exactly; one that is more than half live is kept, and
 * remembered with the estimate it had, until that estimate drops (an
 * object of it died).
 */
struct om_pack_kept {
	uint64_t key; /* tier << 62 | pack no */
	uint64_t size;
	uint64_t est;
};

static int
kept_cmp(const void *a, const void *b)
{
	const struct om_pack_kept *x = a, *y = b;

	return x->key < y->key ? -1 : x->key > y->key;
}

typedef struct {
	pack_use_t *p;
	size_t n;
} pack_uses_t;

static int
use_cmp(const void *a, const void *b)
{
	const pack_use_t *x = a, *y = b;

	if (x->tier != y->tier)
		return x->tier < y->tier ? -1 : 1;
	return x->no < y->no ? -1 : x->no > y->no;
}

static int
live_add(void *arg, const om_ix_obj_t *o)
{
	pack_uses_t *u = arg;
	pack_use_t key = { 0, 0, 0, 0, 0 }, *hit;

	if (!(o->flags & OM_IX_F_PACKED))
		return 0;
	key.tier = om_store_tier_of(o->flags);
	key.no = OM_PACK_NO(o->loc);
	if ((hit = bsearch(&key, u->p, u->n, sizeof(*u->p), use_cmp)) != NULL)
		hit->live += om_pack_entry_len(OM_META_HDR + 16, o->size);
	return 0;
}

typedef struct {
	om_store_t *st;
	int tier;
	uint64_t copied;
	int failed; /* an append failed (the filesystem full): stopped */
} pack_cp_t;

static int
copy_entry(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	pack_cp_t *c = arg;
	om_store_t *st = c->st;
	uint8_t rec[OM_META_REC_MAX];
	om_ix_obj_t o;
	uint64_t nloc;
	size_t rlen;

	if (state != OM_PACK_LIVE && state != OM_PACK_BAD)
		return 0;
	if (om_index_lookup(st->ix, r->uri, r->uri_len, &o, 0) != 0 || o.id != r->id ||
	    !(o.flags & OM_IX_F_PACKED) || o.loc != loc)
		return 0; /* not what the index holds: nothing to keep */
	if (state == OM_PACK_BAD) {
		/* Damaged: not copied; out of service, as the scrub would. */
		st->stats->damaged++;
		pack_damaged(st, c->tier, r, loc, data, "by a compaction");
		(void)om_index_delete_slot(st->ix, o.slot, o.id, NULL);
		return 0;
	}
	rlen = om_meta_encode(r, rec, sizeof(rec));
	if (rlen == 0 || om_pack_append(st, c->tier, r->id, rec, rlen, data, (size_t)r->size, &nloc) != 0) {
		c->failed = 1;
		return 1;
	}
	if (om_index_relocate(st->ix, o.slot, o.id, loc, nloc) != 0) {
		(void)om_pack_drop(st, c->tier, r->id, nloc); /* replaced or dropped meanwhile */
	} else {
		/* The old entry dies at once: a compaction stopped short of
		 * removing its pack (the filesystem full, a crash) must not
		 * leave the object live twice. Between the two, the intent
		 * names the old entry, which a reclaim kills (the index no
		 * longer holds it). */
		om_store_intent_loc(st, r->id, c->tier, loc);
		(void)om_pack_drop(st, c->tier, r->id, loc);
	}
	om_store_intent(st, 0, 0, 0);
	c->copied += (uint64_t)r->size + rlen;
	return 0;
}

static int
holds_no(void *arg, const om_ix_obj_t *o)
{
	const uint64_t *want = arg; /* tier << 62 | pack no */

	return (o->flags & OM_IX_F_PACKED) && OM_PACK_NO(o->loc) == (uint32_t)(*want & OM_PACK_NO_MAX) &&
	    (uint64_t)om_store_tier_of(o->flags) == (*want >> 62);
}

/* Whether the index still holds an object in pack no of the tier. */
static int
still_holds(om_store_t *st, int tier, uint32_t no)
{
	uint64_t want = (uint64_t)tier << 62 | no;

	return om_index_scan(st->ix, holds_no, &want) != 0;
}

static int
skipped(const om_store_t *st, int tier, uint32_t no)
{
	uint64_t key = OM_PACK_LOC(no, 0) | (uint64_t)tier << 62;

	for (unsigned i = 0; i < OM_ARRAY_LEN(st->pack_skip); i++)
		if (st->pack_skip[i] == key)
			return 1;
	return 0;
}

typedef struct {
	om_store_t *st;
	uint64_t live;
} pack_live_t;

/* Adds an entry that the index holds at loc to the exact live bytes. */
static int
live_entry(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	pack_live_t *l = arg;
	om_ix_obj_t o;

	(void)data;
	if (state != OM_PACK_LIVE && state != OM_PACK_BAD)
		return 0;
	if (om_index_lookup(l->st->ix, r->uri, r->uri_len, &o, 0) != 0 || o.id != r->id ||
	    !(o.flags & OM_IX_F_PACKED) || o.loc != loc)
		return 0;
	l->live += om_pack_entry_len(OM_META_HDR + (size_t)r->uri_len + r->meta_len, r->size);
	return 0;
}

/* Copies pack no's live entries to this process's pack, then removes it.
 * A pack some process still appends to (its shared lock) is left alone,
 * and one more than half live is kept (*kept set). */
static int
compact_one(om_store_t *st, int tier, uint32_t no, uint64_t *copied, int *kept)
{
	om_tier_t *t = &st->tier[tier];
	pack_cp_t c = { st, tier, 0, 0 };
	struct stat sb;
	char name[32];
	uint8_t *img;
	uint64_t end;
	int fd, rc = 0;

	om_pack_name(no, name, sizeof(name));
	if ((fd = openat(t->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &sb) != 0 || sb.st_size < OM_PACK_HDR ||
	    (uint64_t)sb.st_size > OM_PACK_BYTES) {
		close(fd);
		return 0;
	}
	img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
	if (img == MAP_FAILED) {
		rc = -errno;
		close(fd);
		return rc;
	}
	{
		pack_live_t l = { st, 0 };

		(void)om_pack_walk(img, (size_t)sb.st_size, tier, no, live_entry, &l);
		if (l.live * 2 > (uint64_t)sb.st_size) {
			munmap(img, (size_t)sb.st_size);
			close(fd);
			*kept = 1;
			return 0;
		}
	}
	end = om_pack_walk(img, (size_t)sb.st_size, tier, no, copy_entry, &c);
	munmap(img, (size_t)sb.st_size);
	*copied += c.copied;
	/* Stopped by a failed append (the filesystem full): the pack stays
	 * (what was copied is indexed where it went), and the next pass
	 * goes on. Stopped by an entry that does not check (damage in the
	 * middle): the objects after it are still indexed here (the scrub
	 * judges each), so the pack stays while any is, and this process
	 * does not try it again. */
	if (c.failed || (end < (uint64_t)sb.st_size && still_holds(st, tier, no))) {
		if (!c.failed) {
			st->pack_skip[st->pack_skip_next++ % OM_ARRAY_LEN(st->pack_skip)] = OM_PACK_LOC(no, 0) | (uint64_t)tier << 62;
			om_log_warn(0, "store: %s/%s: an entry at offset %llu does not check; the objects "
			    "after it stay in this pack, which is not compacted", t->path, name,
			    (unsigned long long)end);
		}
		close(fd);
		return 0;
	}
	for (unsigned i = 0; i < OM_ARRAY_LEN(st->pk); i++) {
		if (st->pk[i].fd >= 0 && st->pk[i].tier == tier && st->pk[i].no == no) {
			close(st->pk[i].fd);
			st->pk[i].fd = -1;
		}
	}
	if (unlinkat(t->dirfd, name, 0) != 0)
		rc = -errno;
	/* After the unlink: a process that found the pack linked before this
	 * note checks it again after (pack_rw); workers close and unmap it. */
	om_index_note_drop(st->ix, OM_STORE_DROP_KEY(tier, OM_STORE_PACK_ID(no)));
	close(fd);
	return rc == 0 ? 1 : rc;
}

static int
ratio_cmp(const void *a, const void *b)
{
	const pack_use_t *x = a, *y = b;
	/* Least live share first. */
	double rx = (double)x->live / (double)(x->size ? x->size : 1);
	double ry = (double)y->live / (double)(y->size ? y->size : 1);

	return rx < ry ? -1 : rx > ry;
}

/* The packs of u found kept, for the next pass (the others forgotten:
 * gone, or to be walked again). Without memory, none. */
static void
kept_remember(om_store_t *st, const pack_uses_t *u)
{
	struct om_pack_kept *k = NULL;
	size_t n = 0;

	for (size_t i = 0; i < u->n; i++)
		n += u->p[i].kept != 0;
	if (n > 0 && (k = malloc(n * sizeof(*k))) != NULL) {
		n = 0;
		for (size_t i = 0; i < u->n; i++)
			if (u->p[i].kept)
				k[n++] = (struct om_pack_kept){ (uint64_t)u->p[i].tier << 62 | u->p[i].no,
					u->p[i].size, u->p[i].live };
		qsort(k, n, sizeof(*k), kept_cmp);
	} else {
		n = 0;
	}
	free(st->pack_kept);
	st->pack_kept = k;
	st->npack_kept = n;
}

/* om_store_compact for the tiers from..to (inclusive). */
static int
compact_tiers(om_store_t *st, int from, int to, uint64_t budget)
{
	pack_uses_t u = { NULL, 0 };
	size_t cap = 0;
	uint64_t copied = 0, walked = 0;
	int removed = 0, rc = 0;

	for (int tier = from; tier <= to && rc == 0; tier++) {
		struct dirent *de;
		DIR *d;
		int fd = openat(st->tier[tier].dirfd, "packs", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

		if (fd < 0)
			continue;
		if ((d = fdopendir(fd)) == NULL) {
			close(fd);
			continue;
		}
		while ((de = readdir(d)) != NULL) {
			struct stat sb;
			uint32_t no;

			if (de->d_name[0] == '.' || parse_no(de->d_name, &no) != 0)
				continue;
			if ((st->pw[tier].fd >= 0 && st->pw[tier].no == no) || skipped(st, tier, no))
				continue;
			if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode))
				continue;
			if (u.n == cap) {
				size_t nc = cap ? cap * 2 : 64;
				pack_use_t *np = realloc(u.p, nc * sizeof(*np));

				if (np == NULL) {
					rc = -ENOMEM;
					break;
				}
				u.p = np;
				cap = nc;
			}
			u.p[u.n++] = (pack_use_t){ tier, no, (uint64_t)sb.st_size, 0, 0 };
		}
		closedir(d);
	}
	if (rc != 0 || u.n == 0) {
		free(u.p);
		return rc;
	}
	qsort(u.p, u.n, sizeof(*u.p), use_cmp);
	(void)om_index_scan(st->ix, live_add, &u);
	/* Kept by an earlier pass, and no object of it died since. */
	for (size_t i = 0; i < u.n; i++) {
		struct om_pack_kept key = { (uint64_t)u.p[i].tier << 62 | u.p[i].no, 0, 0 }, *k;

		k = st->npack_kept ? bsearch(&key, st->pack_kept, st->npack_kept, sizeof(key), kept_cmp) : NULL;
		u.p[i].kept = k != NULL && k->size == u.p[i].size && k->est == u.p[i].live;
	}
	qsort(u.p, u.n, sizeof(*u.p), ratio_cmp);
	for (size_t i = 0; i < u.n && copied + walked < budget; i++) {
		/* Half of it dead (or a pack whose writer is gone and left it
		 * mostly empty): worth the copy. */
		if (u.p[i].live * 2 > u.p[i].size)
			break;
		if (u.p[i].kept)
			continue;
		rc = compact_one(st, u.p[i].tier, u.p[i].no, &copied, &u.p[i].kept);
		if (rc < 0)
			break;
		if (u.p[i].kept)
			walked += u.p[i].size;
		removed += rc;
		rc = 0;
	}
	kept_remember(st, &u);
	free(u.p);
	/* The packs this pass copied into are let go: a process never
	 * compacts the pack it appends to, so the copies would hold their
	 * space until that pack filled, however many of them die. Closed,
	 * it is compacted at a later pass like any other; the next copy
	 * opens another. */
	if (copied > 0)
		for (int tier = 0; tier < 2; tier++)
			writer_close(st, tier);
	return rc < 0 ? rc : removed;
}

int
om_store_compact(om_store_t *st, uint64_t budget)
{
	return compact_tiers(st, 0, 1, budget);
}

int
om_pack_give_back(om_store_t *st, int tier, uint64_t budget)
{
	/* This process's own pack too: closed (its lock with it), so that a
	 * compaction may take it; the next PUT opens another. */
	writer_close(st, tier);
	return compact_tiers(st, tier, tier, budget);
}

int
om_store_pack_rec_at(const om_ix_obj_t *o, const uint8_t mark[8], uint64_t *at, uint32_t *rlen)
{
	uint64_t d = OM_PACK_OFF(o->loc);
	uint32_t n = om_get32(mark + 4);

	if (n < OM_META_HDR || n > OM_META_REC_MAX || OM_PACK_ALIGN16((uint64_t)n + 8) > d - OM_PACK_HDR)
		return -ENOENT;
	*at = d - OM_PACK_ALIGN16((uint64_t)n + 8);
	*rlen = n;
	return 0;
}

int
om_store_pack_meta(const om_ix_obj_t *o, const uint8_t *rec, uint32_t rlen, void *buf,
    size_t cap, uint32_t *len, int64_t *mtime)
{
	om_meta_rec_t r;

	if (om_meta_decode(rec, rlen, &r) != 0 || r.id != o->id)
		return -ENOENT;
	*len = r.meta_len;
	if (mtime != NULL)
		*mtime = r.mtime;
	if (buf == NULL)
		return 0;
	if (r.meta_len > cap)
		return -ERANGE;
	if (r.meta_len)
		memcpy(buf, r.meta, r.meta_len);
	return 0;
}
