/*
 * vmod_objmapper's metadata format and keys (src/vmod/vmod_meta.c), which
 * need no varnishd: what the module writes it reads back, what anyone else
 * wrote is refused without harm, keys are what the manual says.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "om_test.h"
#include "vmod/vmod_meta.h"

static void
test_object_round_trip(void **state)
{
	char buf[512];
	omv_buf_t b = { .p = buf, .cap = sizeof(buf) };
	omv_meta_t m;
	const char *l;
	size_t off = 0, len;

	(void)state;
	omv_printf(&b, OMV_META_TAG "%c %u %.3f %.3f %.3f %.3f\n", OMV_KIND_OBJECT, 404u,
	    1796359000.25, 120.0, 10.0, 0.0);
	omv_put(&b, "Not Found\n", 10);
	omv_put(&b, "Content-Type: text/html\n", 24);
	omv_put(&b, "ETag: \"x\"\n", 10);
	assert_false(b.overflow);
	assert_int_equal(omv_meta_parse(buf, b.len, &m), 0);
	assert_int_equal(m.kind, OMV_KIND_OBJECT);
	assert_int_equal(m.status, 404);
	assert_true(m.t_origin > 1796359000.2 && m.t_origin < 1796359000.3);
	assert_true(m.ttl == 120.0 && m.grace == 10.0 && m.keep == 0.0);
	assert_int_equal(m.reason_len, 9);
	assert_memory_equal(m.reason, "Not Found", 9);
	l = omv_meta_line(&m, &off, &len);
	assert_non_null(l);
	assert_int_equal(len, 23);
	assert_memory_equal(l, "Content-Type: text/html", 23);
	l = omv_meta_line(&m, &off, &len);
	assert_non_null(l);
	assert_memory_equal(l, "ETag: \"x\"", len);
	assert_null(omv_meta_line(&m, &off, &len));

	/* An empty reason and no headers. */
	b.len = 0;
	omv_printf(&b, OMV_META_TAG "O 200 1.000 1.000 0.000 0.000\n\n");
	assert_int_equal(omv_meta_parse(buf, b.len, &m), 0);
	assert_int_equal(m.reason_len, 0);
	assert_int_equal(m.lines_len, 0);
}

static void
test_marker(void **state)
{
	static const char v[] = OMV_META_TAG "V\naccept-language\nx-device\n";
	omv_meta_t m;
	size_t off = 0, len;

	(void)state;
	assert_int_equal(omv_meta_parse(v, sizeof(v) - 1, &m), 0);
	assert_int_equal(m.kind, OMV_KIND_VARY);
	assert_non_null(omv_meta_line(&m, &off, &len));
	assert_int_equal(len, 15);
	assert_non_null(omv_meta_line(&m, &off, &len));
	assert_int_equal(len, 8);
	assert_null(omv_meta_line(&m, &off, &len));
}

static void
test_refused(void **state)
{
	static const char *const bad[] = {
		"",
		"om-vmod 1 ",
		"om-vmod 1 O",
		"om-vmod 2 O 200 1 1 0 0\nOK\n",
		"om-vmod 1 X\n",
		"om-vmod 1 O 200 1 1 0\nOK\n",          /* a time missing */
		"om-vmod 1 O 99 1 1 0 0\nOK\n",         /* status out of range */
		"om-vmod 1 O 2000 1 1 0 0\nOK\n",
		"om-vmod 1 O 200.5 1 1 0 0\nOK\n",
		"om-vmod 1 O 200 1..2 1 0 0\nOK\n",
		"om-vmod 1 O 200 1 1 0 0\nOK",           /* no end of line */
		"om-vmod 1 O 200 1 1 0 0\nOK\nA: b",     /* a header without its end */
		"om-vmod 1 O 200 1 1 0 0\nOK\nno colon\n",
		"om-vmod 1 O 200 1 1 0 0\nOK\n\n",       /* an empty line */
		"Content-Type: text/plain\r\n",          /* what the CLI or HTTP put */
		"om-vmod 1 O 200 1 1 0 0\nOK\nA: b\rSet-Cookie: x\n", /* a CR: response splitting */
		"om-vmod 1 O 200 1 1 0 0\nOK\nA: b\001\n",
		"om-vmod 1 O 200 1 1 0 0\nO\rK\nA: b\n",
		"om-vmod 1 V\nx-a\ry\n",
	};
	omv_meta_t m;

	(void)state;
	assert_int_equal(omv_meta_parse(NULL, 0, &m), -1);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (omv_meta_parse(bad[i], strlen(bad[i]), &m) != -1)
			fail_msg("accepted: \"%s\"", bad[i]);
	}
}

/* Random bytes and every prefix of a good record: refused or parsed, never
 * read past the end (run under ASan by make check-asan). */
static void
test_garbage(void **state)
{
	static const char good[] = OMV_META_TAG "O 200 1796359000.250 120.000 10.000 0.000\n"
	    "OK\nA: b\nC: d\n";
	uint64_t rng = 42;
	omv_meta_t m;

	(void)state;
	for (size_t n = 0; n < sizeof(good) - 1; n++) {
		char *p = malloc(n ? n : 1);

		assert_non_null(p);
		memcpy(p, good, n);
		(void)omv_meta_parse(p, n, &m);
		free(p);
	}
	for (int i = 0; i < 20000; i++) {
		size_t n = (size_t)(om_test_rand(&rng) % 96);
		char *p = malloc(n + sizeof(OMV_META_TAG));
		size_t off = 0, len;

		assert_non_null(p);
		memcpy(p, OMV_META_TAG, sizeof(OMV_META_TAG) - 1);
		for (size_t k = 0; k < n; k++)
			p[sizeof(OMV_META_TAG) - 1 + k] = "O V0123456789.\n: ab"[om_test_rand(&rng) % 19];
		if (omv_meta_parse(p, sizeof(OMV_META_TAG) - 1 + n, &m) == 0)
			while (omv_meta_line(&m, &off, &len) != NULL)
				;
		free(p);
	}
}

static void
test_buffer_bounds(void **state)
{
	char buf[8];
	omv_buf_t b = { .p = buf, .cap = sizeof(buf) };

	(void)state;
	omv_put(&b, "12345678", 8);
	assert_false(b.overflow);
	assert_int_equal(b.len, 8);
	omv_put(&b, "9", 1);
	assert_true(b.overflow);
	b = (omv_buf_t){ .p = buf, .cap = sizeof(buf) };
	omv_printf(&b, "%s", "1234567");
	assert_false(b.overflow);
	omv_printf(&b, "%s", "8");
	/* vsnprintf needs room for its NUL: a print that would fill the last
	 * byte is an overflow. */
	assert_true(b.overflow);
}

static void
test_keys(void **state)
{
	uint8_t d[32], v[32];
	char key[OMV_KEY_MAX], var[OMV_KEY_MAX], b64[64];

	(void)state;
	for (int i = 0; i < 32; i++) {
		d[i] = (uint8_t)(i * 7 + 1);
		v[i] = (uint8_t)(255 - i);
	}
	omv_b64url(b64, (const uint8_t *)"\xfb\xff", 2);
	assert_string_equal(b64, "-_8");
	omv_b64url(b64, (const uint8_t *)"abc", 3);
	assert_string_equal(b64, "YWJj");
	omv_b64url(b64, (const uint8_t *)"a", 1);
	assert_string_equal(b64, "YQ");
	omv_key_base(key, sizeof(key), "/varnish/", d);
	assert_int_equal(strlen(key), 9 + 43);
	assert_int_equal(strncmp(key, "/varnish/", 9), 0);
	assert_int_equal(strspn(key + 9, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
	    43);
	omv_key_variant(var, sizeof(var), key, 0x1f, v);
	assert_int_equal(strncmp(var, key, strlen(key)), 0);
	assert_int_equal(strncmp(var + strlen(key), "~1f~", 4), 0);
	assert_int_equal(strlen(var), strlen(key) + 4 + 22);
	/* The default prefix and a hash fit what the index's arena holds per
	 * object at full capacity (URIs of up to 64 bytes). */
	assert_true(strlen(key) <= 64);
}

static void
test_vary_names(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(omv_vary_names("Accept-Language", out, sizeof(out)), 16);
	assert_memory_equal(out, "accept-language\n", 16);
	assert_int_equal(omv_vary_names(" Accept-Encoding ,X-Device,accept-encoding", out, sizeof(out)),
	    25);
	assert_memory_equal(out, "accept-encoding\nx-device\n", 25);
	assert_int_equal(omv_vary_names("", out, sizeof(out)), 0);
	assert_int_equal(omv_vary_names(" , ", out, sizeof(out)), 0);
	assert_int_equal(omv_vary_names("*", out, sizeof(out)), -1);
	assert_int_equal(omv_vary_names("A, *", out, sizeof(out)), -1);
	assert_int_equal(omv_vary_names("a b", out, sizeof(out)), -1);
	assert_int_equal(omv_vary_names("a;b", out, sizeof(out)), -1);
	assert_int_equal(omv_vary_names("Accept-Language, X-A-Very-Long-Header-Name-Indeed, X-B",
	    out, 32), -2);
}

static void
test_stored_and_dropped(void **state)
{
	(void)state;
	assert_true(omv_status_stored(200));
	assert_true(omv_status_stored(404));
	assert_true(omv_status_stored(301));
	assert_false(omv_status_stored(206));
	assert_false(omv_status_stored(304));
	assert_false(omv_status_stored(500));
	assert_false(omv_status_stored(503));
	assert_true(omv_header_dropped("Content-Length: 5", 17));
	assert_true(omv_header_dropped("transfer-encoding: chunked", 26));
	assert_true(omv_header_dropped("Age: 3", 6));
	assert_true(omv_header_dropped("Connection: close", 17));
	assert_true(omv_header_dropped("garbage", 7));
	assert_false(omv_header_dropped("Content-Type: a/b", 17));
	assert_false(omv_header_dropped("ETag: \"1\"", 9));
	assert_false(omv_header_dropped("Ages: 3", 7));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_object_round_trip),
		cmocka_unit_test(test_marker),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_garbage),
		cmocka_unit_test(test_buffer_bounds),
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_vary_names),
		cmocka_unit_test(test_stored_and_dropped),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
