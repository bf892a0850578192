/*
 * Common definitions for every objmapper part: assertions for internal
 * invariants, alignment helpers, relaxed shared-memory accessors, clocks.
 * Used by all processes.
 */
#ifndef OM_CORE_H
#define OM_CORE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define OM_VERSION "0.1.0"

#define OM_LIKELY(x)   __builtin_expect(!!(x), 1)
#define OM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define OM_UNUSED      __attribute__((unused))
#define OM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define OM_NORETURN    __attribute__((noreturn))

#define OM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define OM_ALIGN_UP(x, a) (((x) + ((a) - 1)) & ~((__typeof__(x))(a) - 1))
#define OM_CACHELINE 64

/*
 * Internal invariants only (never client input): they stay on in release
 * builds, like Varnish's AN()/AZ(), because a broken invariant in a store
 * must stop the process before it writes more.
 */
OM_NORETURN void om_panic(const char *file, int line, const char *cond);
#define OM_ASSERT(c) \
	do { if (OM_UNLIKELY(!(c))) om_panic(__FILE__, __LINE__, #c); } while (0)
#define OM_AN(x) OM_ASSERT((x) != 0)
#define OM_AZ(x) OM_ASSERT((x) == 0)

/*
 * Fields of structures in shared memory are read and written with these:
 * other processes may change them at any time, and the optimistic readers
 * of the index read them without a lock.
 */
#define OM_LOAD(p)        __atomic_load_n((p), __ATOMIC_RELAXED)
#define OM_STORE(p, v)    __atomic_store_n((p), (v), __ATOMIC_RELAXED)
#define OM_LOAD_ACQ(p)    __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define OM_STORE_REL(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define OM_ADD(p, v)      __atomic_add_fetch((p), (v), __ATOMIC_RELAXED)
#define OM_FETCH_ADD(p, v) __atomic_fetch_add((p), (v), __ATOMIC_RELAXED)
/* A counter one process writes and others read (its slot of the index
 * segment): a relaxed store of its new value, no atomic add. */
#define OM_COUNT(c, n)    OM_STORE(&(c), (c) + (n))
#define OM_FENCE_ACQ()    __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define OM_FENCE_REL()    __atomic_thread_fence(__ATOMIC_RELEASE)

/* Milliseconds of CLOCK_MONOTONIC_COARSE, the same in every process. */
static inline uint64_t
om_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Wall-clock seconds (expiry and modification times are absolute). */
static inline int64_t
om_time_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	return (int64_t)ts.tv_sec;
}

/* CRC32C (Castagnoli), hardware-accelerated where the CPU has SSE4.2. */
uint32_t om_crc32c(uint32_t crc, const void *buf, size_t len);
/* The table-driven path alone (for machines without SSE4.2, and tests). */
uint32_t om_crc32c_portable(uint32_t crc, const void *buf, size_t len);

/* Keyed 64-bit hash for strings (hash table buckets). */
uint64_t om_hash64(const void *buf, size_t len, uint64_t seed);

/* Errors: 0 or -errno across module boundaries. */
const char *om_strerror(int err);
/* Doubles the capacity of a malloc'd array (64 elements at first):
 * arrayp is the address of its pointer, updated. 0, or -ENOMEM (the
 * array as it was). */
int om_grow(void *arrayp, size_t *cap, size_t size);

/* Little-endian field access: the protocol's frames, the objects' records. */
static inline void
om_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static inline void
om_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline void
om_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static inline uint16_t
om_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static inline uint32_t
om_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static inline uint64_t
om_get64(const uint8_t *p)
{
	return (uint64_t)om_get32(p) | (uint64_t)om_get32(p + 4) << 32;
}

#endif
