# Static checks: `make lint` runs cppcheck and clang-tidy over every C file
# of src/, tests/ and bench/ and fails on any finding; .ci/run runs it.
#
# The profile (docs/ARCHITECTURE.md, "Static checks"):
#   cppcheck    --enable=warning,style,performance,portability --std=c11,
#               inline suppressions, tests/lint/cppcheck.supp (reasons there)
#   clang-tidy  .clang-tidy at the top (the checks and why some are off),
#               tests/.clang-tidy and bench/.clang-tidy (test code relaxed)
# Both see the sources as the build does (-std=c11 -D_GNU_SOURCE, the
# include directories). A false positive is silenced on its own line,
# with the reason: /* NOLINT(check): why */, /* cppcheck-suppress id ; why */.
#
#   make lint            all three (installed first by scripts/install-deps)
#   make lint-cppcheck   cppcheck only (about 10 s)
#   make lint-tidy       clang-tidy only: one run per file, in parallel with
#                        -j, and only for files changed since their last
#                        clean run ($(O)/lint/tidy/FILE.ok)
#   make lint-layers     the layers of src/ (tests/lint/layers) against the
#                        include graph and the calls between the built
#                        objects: nothing points up, no cycle

LINT_SRCS := $(sort $(wildcard src/*/*.c tests/lib/*.c tests/unit/*.c tests/integration/*.c \
               tests/soak/*.c tests/tools/*.c tests/fuzz/*.c tests/nginx/*.c bench/*.c))
LINT_HDRS := $(wildcard include/objmapper/*.h src/*/*.h tests/lib/*.h tests/fuzz/*.h)
# FUZZ_TARGET: tests/fuzz/replay.c is built once per target with its name.
# The VMOD (src/vmod) also needs its generated headers and Varnish's, which
# are system headers here: findings in them are Varnish's, not ours.
LINT_CPPFLAGS := -D_GNU_SOURCE '-DFUZZ_TARGET="lint"' -Iinclude -Isrc -Itests/lib -Itests/fuzz \
	-I$(VMOD_GEN)
LINT_STAMP := $(O)/.lint-deps-ok
TIDY_CONFS := .clang-tidy tests/.clang-tidy bench/.clang-tidy
TIDY_OKS   := $(LINT_SRCS:%=$(O)/lint/tidy/%.ok)

CPPCHECK_FLAGS := --enable=warning,style,performance,portability --std=c11 --inline-suppr \
	--error-exitcode=1 --quiet --suppressions-list=tests/lint/cppcheck.supp \
	--cppcheck-build-dir=$(O)/lint/cppcheck -I$(VARNISH_INC) --suppress='*:$(VARNISH_INC)/*' \
	--template='{file}:{line}: {severity} ({id}): {message}'

$(LINT_STAMP): scripts/install-deps
	@mkdir -p $(@D)
	@scripts/install-deps cppcheck clang-tidy libvarnishapi-dev python3
	@touch $@

lint: lint-cppcheck lint-tidy lint-layers
	@echo "lint: cppcheck, clang-tidy and check-layers found nothing in $(words $(LINT_SRCS)) files"

lint-cppcheck: | $(LINT_STAMP) $(VMOD_GEN_H)
	@mkdir -p $(O)/lint/cppcheck
	@echo "cppcheck: $(words $(LINT_SRCS)) files"
	@cppcheck $(CPPCHECK_FLAGS) $(LINT_CPPFLAGS) $(LINT_SRCS)

lint-tidy: $(TIDY_OKS)

# Test files see cmocka's fail() and skip() as noreturn (the header says why).
$(O)/lint/tidy/tests/%.ok: TIDY_FLAGS := -include tests/lint/cmocka-noreturn.h
$(O)/lint/tidy/src/vmod/%.ok: TIDY_FLAGS := -isystem $(VARNISH_INC)
# Explicit: a pattern rule's order-only prerequisites without a recipe are
# not merged into the rule that builds the target.
$(VMOD_SRCS:%=$(O)/lint/tidy/%.ok): | $(VMOD_GEN_H)

# clang-tidy prints "N warnings generated." for what its filters hid.
$(O)/lint/tidy/%.ok: % $(LINT_HDRS) $(TIDY_CONFS) tests/lint/cmocka-noreturn.h | $(LINT_STAMP)
	@mkdir -p $(@D)
	@echo "clang-tidy $<"
	@set -o pipefail; clang-tidy --quiet $< -- -std=c11 $(LINT_CPPFLAGS) $(TIDY_FLAGS) 2>&1 | \
		{ grep -v '^[0-9]* warnings\? generated\.$$' || true; }
	@touch $@

# The objects whose symbols say which file calls which (the VMOD's where
# it is built).
LAYER_OBJS := $(ENGINE_OBJS) $(SERVER_OBJS) $(CLIENT_OBJS) $(CLI_OBJS) \
	$(if $(VMOD_ALL),$(VMOD_SRCS:%.c=$(O)/%.o))
lint-layers: $(LAYER_OBJS) | $(LINT_STAMP)
	@tests/lint/check-layers --objects $(O)

.PHONY: lint lint-cppcheck lint-tidy lint-layers
