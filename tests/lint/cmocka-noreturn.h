/*
 * Included before every file under tests/ by make lint's clang-tidy run
 * only (tests/lint/part.mk). cmocka's fail(), fail_msg() and skip() end
 * the test (cmocka longjmps out of it), but cmocka.h does not say so, and
 * the analyzer then reports null dereferences on the paths that continue
 * after "if (p == NULL) fail_msg(...)". These are cmocka.h's declarations
 * with noreturn added.
 */
void _fail(const char *const file, const int line) __attribute__((noreturn)); /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): cmocka's name */
void _skip(const char *const file, const int line) __attribute__((noreturn)); /* NOLINT(bugprone-reserved-identifier,cert-dcl37-c,cert-dcl51-cpp): cmocka's name */
