/* Packs read behind the daemon's back: om_packs.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_meta.h"
#include "om_packs.h"
#include "om_test.h"

typedef struct {
	unsigned live;
	uint64_t *ids;
	uint64_t *locs; /* and where each is (OM_PACK_LOC), if not NULL */
	unsigned cap;
	uint64_t want;  /* om_packs_find: this id */
	uint64_t off;   /* and where its bytes are */
	int found;
} walk_t;

static int
on_entry(void *arg, const om_meta_rec_t *r, uint64_t loc, uint32_t state, const uint8_t *data)
{
	walk_t *w = arg;

	(void)data;
	if (state != OM_PACK_LIVE)
		return 0;
	if (w->ids != NULL && w->live < w->cap)
		w->ids[w->live] = r->id;
	if (w->locs != NULL && w->live < w->cap)
		w->locs[w->live] = loc;
	w->live++;
	if (w->want != 0 && r->id == w->want) {
		w->off = OM_PACK_OFF(loc);
		w->found = 1;
		return 1;
	}
	return 0;
}

/* Walks every pack under tier_dir/packs; stops at the first that holds
 * w->want (its path in path). */
static void
walk_all(const char *tier_dir, int tier, walk_t *w, char *path, size_t n)
{
	char dir[1024], p[1300];
	struct dirent *de;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/packs", tier_dir);
	if ((d = opendir(dir)) == NULL)
		return;
	while (!w->found && (de = readdir(d)) != NULL) {
		char *end;
		unsigned long no = strtoul(de->d_name, &end, 16);
		struct stat sb;
		void *img;
		int fd;

		if (de->d_name[0] == '.' || *end != '\0' || no > OM_PACK_NO_MAX)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		if ((fd = open(p, O_RDONLY | O_CLOEXEC)) < 0)
			continue; /* removed meanwhile (compacted) */
		if (fstat(fd, &sb) != 0 || sb.st_size < (off_t)OM_PACK_HDR) {
			close(fd);
			continue;
		}
		img = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
		if (img == MAP_FAILED)
			continue;
		(void)om_pack_walk(img, (size_t)sb.st_size, tier, (uint32_t)no, on_entry, w);
		munmap(img, (size_t)sb.st_size);
		if (w->found && path != NULL)
			snprintf(path, n, "%s", p);
	}
	closedir(d);
}

unsigned
om_packs_live(const char *tier_dir, int tier, uint64_t *ids, unsigned cap)
{
	return om_packs_live_at(tier_dir, tier, ids, NULL, cap);
}

unsigned
om_packs_live_at(const char *tier_dir, int tier, uint64_t *ids, uint64_t *locs, unsigned cap)
{
	walk_t w = { 0, ids, locs, cap, 0, 0, 0 };

	walk_all(tier_dir, tier, &w, NULL, 0);
	return w.live;
}

int
om_packs_find(const char *tier_dir, int tier, uint64_t id, char *path, size_t n, uint64_t *off)
{
	walk_t w = { 0, NULL, NULL, 0, id, 0, 0 };

	walk_all(tier_dir, tier, &w, path, n);
	if (!w.found)
		return -ENOENT;
	*off = w.off;
	return 0;
}

static int
id_cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

long
om_packs_objects(const char *tier_dir, int tier)
{
	char packs[1100], obj[1300];
	unsigned live = om_packs_live(tier_dir, tier, NULL, 0), n;
	uint64_t *ids = calloc(live ? live : 1, sizeof(*ids));
	long files;
	struct stat sb;

	assert_non_null(ids);
	n = om_packs_live(tier_dir, tier, ids, live);
	if (n < live)
		live = n; /* a pack went meanwhile: the caller's daemon is running */
	qsort(ids, live, sizeof(*ids), id_cmp);
	for (unsigned i = 0; i < live; i++) {
		if (i > 0 && ids[i] == ids[i - 1])
			fail_msg("object %" PRIu64 " is live in two pack entries under %s", ids[i], tier_dir);
		snprintf(obj, sizeof(obj), "%s/%02x/%016" PRIx64, tier_dir, (unsigned)(ids[i] & 0xff), ids[i]);
		if (stat(obj, &sb) == 0)
			fail_msg("object %" PRIu64 " is live in a pack and has a file (%s)", ids[i], obj);
	}
	free(ids);
	snprintf(packs, sizeof(packs), "%s/packs", tier_dir);
	files = om_test_count_files(tier_dir, NULL, NULL) - om_test_count_files(packs, NULL, NULL);
	return files + (long)live;
}
