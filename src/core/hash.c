/*
 * A keyed 64-bit string hash for the index buckets: eight bytes per
 * multiply, a final avalanche. The key is random per index so that a
 * client cannot aim many URIs at one bucket without knowing it.
 */
#include <string.h>

#include "core/om_core.h"

#define HASH_M1 0x9e3779b97f4a7c15ull
#define HASH_M2 0xc2b2ae3d27d4eb4full

static inline uint64_t
hash_mix(uint64_t h)
{
	h ^= h >> 31;
	h *= HASH_M2;
	h ^= h >> 29;
	h *= HASH_M1;
	h ^= h >> 32;
	return h;
}

uint64_t
om_hash64(const void *buf, size_t len, uint64_t seed)
{
	const unsigned char *p = buf;
	uint64_t h = seed ^ ((uint64_t)len * HASH_M1);

	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		h = (h ^ (w * HASH_M2)) * HASH_M1;
		h ^= h >> 29;
		p += 8;
		len -= 8;
	}
	if (len) {
		uint64_t w = 0;

		memcpy(&w, p, len);
		h = (h ^ (w * HASH_M2)) * HASH_M1;
		h ^= h >> 29;
	}
	return hash_mix(h);
}
