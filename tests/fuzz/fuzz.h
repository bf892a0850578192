/*
 * Shared by the libFuzzer targets (tests/fuzz/README.md): the entry point's
 * prototype and an assertion that stays on whatever the build (a model
 * mismatch must abort, so that libFuzzer saves the input as a crash).
 */
#ifndef OM_FUZZ_H
#define OM_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_ASSERT(c, ...)                                                        \
	do {                                                                         \
		if (!(c)) {                                                              \
			fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__, __LINE__, \
			    #c);                                                             \
			fprintf(stderr, __VA_ARGS__);                                        \
			fputc('\n', stderr);                                                 \
			abort();                                                             \
		}                                                                        \
	} while (0)

/* Reads the input front to back; past its end every read gives zeros. */
typedef struct {
	const uint8_t *p;
	size_t n;
} fz_in_t;

static inline uint8_t
fz_u8(fz_in_t *in)
{
	uint8_t v = 0;

	if (in->n > 0) {
		v = *in->p++;
		in->n--;
	}
	return v;
}

static inline uint16_t
fz_u16(fz_in_t *in)
{
	uint16_t lo = fz_u8(in);

	return (uint16_t)(lo | fz_u8(in) << 8);
}

static inline uint32_t
fz_u32(fz_in_t *in)
{
	uint32_t lo = fz_u16(in);

	return lo | (uint32_t)fz_u16(in) << 16;
}

static inline uint64_t
fz_u64(fz_in_t *in)
{
	uint64_t lo = fz_u32(in);

	return lo | (uint64_t)fz_u32(in) << 32;
}

#endif
