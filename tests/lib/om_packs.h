/*
 * The packs of a tier's directory, read behind the daemon's back
 * (src/store/store_meta.h, om_pack_walk): how many live objects they hold,
 * and where a packed object's bytes are.
 */
#ifndef OM_PACKS_H
#define OM_PACKS_H

#include <stddef.h>
#include <stdint.h>

/* Live entries (objects) in every pack of tier (OM_TIER_MEMORY or
 * OM_TIER_PERSISTENT) under tier_dir (TIER/packs/NNNNNN); 0 if there is
 * no packs directory. If ids is not NULL, the first cap ids go there. */
unsigned om_packs_live(const char *tier_dir, int tier, uint64_t *ids, unsigned cap);
/* The same, with where each entry is (its loc: OM_PACK_LOC) in locs. */
unsigned om_packs_live_at(const char *tier_dir, int tier, uint64_t *ids, uint64_t *locs, unsigned cap);
/* The pack holding object id's live entry: its path and the offset of the
 * object's first byte in it. 0, or -ENOENT. */
int om_packs_find(const char *tier_dir, int tier, uint64_t id, char *path, size_t n, uint64_t *off);
/* The objects a tier's directory holds: its files (as om_test_count_files
 * counts them: neither records nor stamps), its packs aside, plus the live
 * entries of its packs. Fails the test if an object is live in two
 * entries, or has a live entry and a file. */
long om_packs_objects(const char *tier_dir, int tier);

#endif
