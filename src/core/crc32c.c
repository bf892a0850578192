/*
 * CRC32C (Castagnoli polynomial, reflected 0x82F63B78), as used for object
 * checksums and on-disk metadata records. Uses the SSE4.2 crc32 instruction
 * when the CPU has it, else a table computed once, eight bytes at a time.
 */
#include <pthread.h>
#include <string.h>

#include "core/om_core.h"

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static int crc_hw = -1;

static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__)
#define CRC_LONG  8192u
#define CRC_SHORT 256u

static uint32_t crc_x8_long, crc_x8_short; /* x^(8 * CRC_LONG), x^(8 * CRC_SHORT) mod P */
static uint32_t crc_x8n(size_t n);
#endif

static void
crc_init_table(void)
{
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = n;

		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][n] = c;
	}
	for (uint32_t n = 0; n < 256; n++) {
		uint32_t c = crc_table[0][n];

		for (int t = 1; t < 8; t++) {
			c = crc_table[0][c & 0xff] ^ (c >> 8);
			crc_table[t][n] = c;
		}
	}
#if defined(__x86_64__)
	crc_x8_long = crc_x8n(CRC_LONG);
	crc_x8_short = crc_x8n(CRC_SHORT);
#endif
}

static uint32_t
crc_sw(uint32_t crc, const unsigned char *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= crc;
		crc = crc_table[7][w & 0xff] ^ crc_table[6][(w >> 8) & 0xff] ^
		    crc_table[5][(w >> 16) & 0xff] ^ crc_table[4][(w >> 24) & 0xff] ^
		    crc_table[3][(w >> 32) & 0xff] ^ crc_table[2][(w >> 40) & 0xff] ^
		    crc_table[1][(w >> 48) & 0xff] ^ crc_table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#if defined(__x86_64__)
/*
 * The crc32 instruction takes three cycles and can start one a cycle: one
 * chain of them runs at a third of its speed. So a long buffer is cut
 * into three streams of equal length run side by side (each from 0 but
 * the first), joined by shifting each stream's CRC over the bytes of the
 * next (a multiplication by x^(8n) modulo P): what Intel's crc_pcl and
 * Mark Adler's crc32c.c do. A PUT of 64 KiB spent 6% of the worker's CPU
 * in the single chain.
 */
/* a * b modulo P, both reflected (x^0 is the top bit). */
static uint32_t
crc_multmodp(uint32_t a, uint32_t b)
{
	uint32_t m = (uint32_t)1 << 31, p = 0;

	for (;;) {
		if (a & m) {
			p ^= b;
			if ((a & (m - 1)) == 0)
				break;
		}
		m >>= 1;
		b = (b & 1) ? (b >> 1) ^ CRC32C_POLY : b >> 1;
	}
	return p;
}

/* x^(8n) modulo P: x^0 shifted over n zero bytes. */
static uint32_t
crc_x8n(size_t n)
{
	uint32_t c = (uint32_t)1 << 31;

	while (n--)
		c = crc_table[0][c & 0xff] ^ (c >> 8);
	return c;
}

__attribute__((target("sse4.2"))) static uint64_t
crc_hw_3way(uint64_t c0, const unsigned char *p, size_t n, uint32_t x8n)
{
	uint64_t c1 = 0, c2 = 0;

	for (size_t i = 0; i < n; i += 8) {
		uint64_t w0, w1, w2;

		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + n + i, 8);
		memcpy(&w2, p + 2 * n + i, 8);
		c0 = __builtin_ia32_crc32di(c0, w0);
		c1 = __builtin_ia32_crc32di(c1, w1);
		c2 = __builtin_ia32_crc32di(c2, w2);
	}
	c0 = crc_multmodp(x8n, (uint32_t)c0) ^ c1;
	return crc_multmodp(x8n, (uint32_t)c0) ^ c2;
}

__attribute__((target("sse4.2"))) static uint32_t
crc_hw_x86(uint32_t crc, const unsigned char *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
		len--;
	}
	while (len >= 3 * CRC_LONG) {
		c = crc_hw_3way(c, p, CRC_LONG, crc_x8_long);
		p += 3 * CRC_LONG;
		len -= 3 * CRC_LONG;
	}
	while (len >= 3 * CRC_SHORT) {
		c = crc_hw_3way(c, p, CRC_SHORT, crc_x8_short);
		p += 3 * CRC_SHORT;
		len -= 3 * CRC_SHORT;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		c = __builtin_ia32_crc32di(c, w);
		p += 8;
		len -= 8;
	}
	while (len--)
		c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
	return (uint32_t)c;
}
#endif

uint32_t
om_crc32c(uint32_t crc, const void *buf, size_t len)
{
	int hw = __atomic_load_n(&crc_hw, __ATOMIC_RELAXED);

	if (OM_UNLIKELY(hw < 0)) {
		pthread_once(&crc_once, crc_init_table);
#if defined(__x86_64__)
		__builtin_cpu_init();
		hw = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
		hw = 0;
#endif
		__atomic_store_n(&crc_hw, hw, __ATOMIC_RELEASE);
	}
	crc = ~crc;
#if defined(__x86_64__)
	if (hw)
		return ~crc_hw_x86(crc, buf, len);
#endif
	return ~crc_sw(crc, buf, len);
}

uint32_t
om_crc32c_portable(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&crc_once, crc_init_table);
	return ~crc_sw(~crc, buf, len);
}
