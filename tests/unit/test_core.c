/*
 * Core helpers: CRC32C against published check values, hardware and
 * software paths agreeing, the keyed hash spreading keys over buckets.
 */
#include <string.h>

#include "core/om_core.h"
#include "om_test.h"

static void
test_crc32c_vectors(void **state)
{
	unsigned char buf[32];

	(void)state;
	assert_int_equal(om_crc32c(0, "123456789", 9), 0xe3069283u);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(om_crc32c(0, buf, 32), 0x8a9136aau);
	memset(buf, 0xff, sizeof(buf));
	assert_int_equal(om_crc32c(0, buf, 32), 0x62a8ab43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (unsigned char)i;
	assert_int_equal(om_crc32c(0, buf, 32), 0x46dd794eu);
	assert_int_equal(om_crc32c(0, buf, 0), 0);
}

static void
test_crc32c_incremental(void **state)
{
	unsigned char buf[4099];
	uint32_t whole, parts = 0;

	(void)state;
	om_test_fill(buf, sizeof(buf), 7);
	whole = om_crc32c(0, buf, sizeof(buf));
	/* Odd split points exercise the unaligned head and tail paths. */
	parts = om_crc32c(parts, buf, 3);
	parts = om_crc32c(parts, buf + 3, 1000);
	parts = om_crc32c(parts, buf + 1003, sizeof(buf) - 1003);
	assert_int_equal(whole, parts);
}

/* Reference: bitwise, one byte at a time. */
static uint32_t
crc_ref(const unsigned char *p, size_t len)
{
	uint32_t c = 0xffffffffu;

	for (size_t k = 0; k < len; k++) {
		c ^= p[k];
		for (int j = 0; j < 8; j++)
			c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
	}
	return ~c;
}

/* Lengths around the hardware path's three-stream blocks (3 x 256 and
 * 3 x 8192 bytes), from unaligned starts and with a CRC carried in: the
 * streams joined must give the bytes' CRC, as the table path does. */
static void
test_crc32c_streams(void **state)
{
	static unsigned char buf[3 * 8192 * 3 + 64];
	static const size_t lens[] = { 767, 768, 769, 775, 776, 1536, 2311, 24575, 24576, 24577,
		24583, 49152, 65536, 65600, 73727, 73728, sizeof(buf) - 16 };

	(void)state;
	om_test_fill(buf, sizeof(buf), 99);
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		for (size_t start = 0; start < 9; start += 3) {
			uint32_t seed = (uint32_t)(0x9e3779b9u * (i + 1));

			assert_int_equal(om_crc32c(seed, buf + start, lens[i]),
			    om_crc32c_portable(seed, buf + start, lens[i]));
			assert_int_equal(om_crc32c(0, buf + start, lens[i]), crc_ref(buf + start, lens[i]));
		}
	}
}

/* Both the default (hardware where present) and the table path agree
 * with the bitwise definition, on unaligned starts and odd lengths. */
static void
test_crc32c_paths_match(void **state)
{
	static unsigned char buf[10000];

	(void)state;
	for (int i = 0; i < 16; i++) {
		size_t len = sizeof(buf) - (size_t)i * 37 - (size_t)i;
		uint32_t ref;

		om_test_fill(buf, sizeof(buf), (uint64_t)i);
		ref = crc_ref(buf + i, len);
		assert_int_equal(om_crc32c(0, buf + i, len), ref);
		assert_int_equal(om_crc32c_portable(0, buf + i, len), ref);
	}
	assert_int_equal(om_crc32c_portable(0, "123456789", 9), 0xe3069283u);
}

static void
test_hash_spread(void **state)
{
	enum { N = 65536, B = 4096 };
	static unsigned counts[B];
	char key[64];
	unsigned max = 0;

	(void)state;
	for (int i = 0; i < N; i++) {
		int n = snprintf(key, sizeof(key), "/objects/%08d", i);

		counts[om_hash64(key, (size_t)n, 42) & (B - 1)]++;
	}
	for (int b = 0; b < B; b++)
		if (counts[b] > max)
			max = counts[b];
	/* 16 keys per bucket on average; a weak hash on sequential keys piles up. */
	assert_true(max < 40);
	/* The key changes the placement. */
	assert_true(om_hash64("/a", 2, 1) != om_hash64("/a", 2, 2));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c_vectors),
		cmocka_unit_test(test_crc32c_incremental),
		cmocka_unit_test(test_crc32c_paths_match),
		cmocka_unit_test(test_crc32c_streams),
		cmocka_unit_test(test_hash_spread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
