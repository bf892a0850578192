/*
 * Replays the committed inputs of one fuzz target without libFuzzer, as a
 * test of `make check` (and check-asan, check-valgrind): every file of
 * tests/fuzz/regressions/TARGET/ (inputs that once crashed) and of
 * tests/fuzz/corpus/TARGET/ (the seeds) goes through the target's
 * LLVMFuzzerTestOneInput, whose checks abort on a failure. Built once per
 * target with -DFUZZ_TARGET=\"NAME\"; run from the top of the tree.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "FUZZ_TARGET names the target"
#endif

static int
by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

/* Feeds every file of tests/fuzz/KIND/TARGET; returns how many. */
static unsigned
replay_dir(const char *kind)
{
	char dir[256], path[512];
	struct dirent **names;
	unsigned done = 0;
	int n;

	snprintf(dir, sizeof(dir), "tests/fuzz/%s/%s", kind, FUZZ_TARGET);
	n = scandir(dir, &names, NULL, by_name);
	if (n < 0)
		return 0; /* none yet */
	for (int i = 0; i < n; i++) {
		FILE *fp;
		uint8_t *buf;
		long len;

		if (names[i]->d_name[0] == '.') {
			free(names[i]);
			continue;
		}
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
		free(names[i]);
		fp = fopen(path, "rb");
		assert_non_null(fp);
		assert_int_equal(fseek(fp, 0, SEEK_END), 0);
		len = ftell(fp);
		assert_true(len >= 0);
		rewind(fp);
		/* An exact-size copy, as libFuzzer gives it. */
		buf = malloc(len ? (size_t)len : 1);
		assert_non_null(buf);
		assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
		fclose(fp);
		LLVMFuzzerTestOneInput(buf, (size_t)len);
		free(buf);
		done++;
	}
	free(names);
	return done;
}

static void
test_regressions(void **state)
{
	(void)state;
	print_message("%u regression inputs of fuzz_%s\n", replay_dir("regressions"), FUZZ_TARGET);
}

static void
test_corpus(void **state)
{
	unsigned n = replay_dir("corpus");

	(void)state;
	assert_true(n > 0);
	print_message("%u seed inputs of fuzz_%s\n", n, FUZZ_TARGET);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_regressions),
		cmocka_unit_test(test_corpus),
	};

	return cmocka_run_group_tests_name("fuzz_" FUZZ_TARGET, tests, NULL, NULL);
}
