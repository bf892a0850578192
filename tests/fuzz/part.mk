# libFuzzer targets (tests/fuzz/README.md), built with Debian's clang under
# AddressSanitizer and UBSan into $(O)/fuzz; not part of `make all`.
#
#   make fuzz          each target for FUZZ_TIME seconds (default 300)
#   make fuzz-smoke    each target for FUZZ_SMOKE_TIME seconds (default 15),
#                      after replaying tests/fuzz/regressions/; fails on a crash
#   make fuzz-build    the targets only
#
# Each target compiles the project sources it tests directly (instrumented
# for coverage); new inputs go to $(O)/fuzz/run/corpus/, never to the
# committed seeds in tests/fuzz/corpus/.
#
# `make check` (and check-asan, check-valgrind) also runs test_fuzz_NAME:
# the same targets built with $(CC) against the engine library, replaying
# every committed seed and regression input without libFuzzer.

FUZZ_CC         ?= clang
FUZZ_TIME       ?= 300
FUZZ_SMOKE_TIME ?= 15
FUZZ_TARGETS    := proto http conf meta pack index client
FUZZ_O          := $(O)/fuzz
FUZZ_SAN        := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
FUZZ_CFLAGS     := -std=c11 $(WARN) -g -O1 $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_BINS       := $(FUZZ_TARGETS:%=$(FUZZ_O)/fuzz_%)
FUZZ_STAMP      := $(FUZZ_O)/.deps-ok

# The sources each target is built from, besides tests/fuzz/fuzz_NAME.c.
FUZZ_SRCS_proto := src/proto/proto.c
FUZZ_SRCS_http  := src/proto/http.c
FUZZ_SRCS_conf  := src/conf/conf.c src/core/core.c src/core/log.c
FUZZ_SRCS_meta  := src/store/store_meta.c src/core/crc32c.c
FUZZ_SRCS_pack  := src/store/store_meta.c src/core/crc32c.c
FUZZ_SRCS_index := src/index/index.c src/core/hash.c src/core/core.c src/core/log.c
FUZZ_SRCS_client := src/client/client.c src/client/nb.c src/proto/proto.c src/os/fdpass.c
FUZZ_LIBS_conf  := -linih
# test_fuzz_NAME links the engine library, and the client's the client library.
FUZZ_REPLAY_LIBS_client := $(CLIENT_A)
# fuzz_client.c sets ASan's options in __asan_default_options; gcc's ASan
# runtime is a shared library, which sees the program's definition only if
# it is exported.
FUZZ_REPLAY_LDFLAGS_client := -Wl,--export-dynamic-symbol=__asan_default_options

# Debian packages: clang, its runtimes (libclang-rt-dev: libFuzzer and the
# sanitizers) and llvm (llvm-symbolizer, for the stack trace of a crash).
FUZZ_DEPS := clang libclang-rt-dev llvm
$(FUZZ_STAMP): scripts/install-deps
	@mkdir -p $(@D)
	@scripts/install-deps $(FUZZ_DEPS)
	@touch $@

$(FUZZ_O)/obj/%.o: %.c | $(FUZZ_STAMP)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(CPPFLAGS) $(FUZZ_CFLAGS) -MMD -MP -c -o $@ $<

define FUZZ_TARGET_RULES
$(FUZZ_O)/fuzz_$(1): $(FUZZ_O)/obj/tests/fuzz/fuzz_$(1).o \
		$(patsubst %.c,$(FUZZ_O)/obj/%.o,$(FUZZ_SRCS_$(1)))
	$$(FUZZ_CC) $$(FUZZ_SAN) -fsanitize=fuzzer -o $$@ $$^ $(FUZZ_LIBS_$(1)) -lpthread

$(O)/tests/fuzz/replay_$(1).o: tests/fuzz/replay.c | $$(DEPSTAMP)
	@mkdir -p $$(@D)
	$$(CC) $$(CPPFLAGS) $$(CFLAGS) -DFUZZ_TARGET='"$(1)"' -MMD -MP -c -o $$@ $$<

$(O)/tests/test_fuzz_$(1): $(O)/tests/fuzz/replay_$(1).o $(O)/tests/fuzz/fuzz_$(1).o \
		$(FUZZ_REPLAY_LIBS_$(1)) $$(ENGINE_LIB)
	@mkdir -p $$(@D)
	$$(CC) $$(LDFLAGS) $(FUZZ_REPLAY_LDFLAGS_$(1)) -o $$@ $$^ $$(LDLIBS) -lcmocka
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_TARGET_RULES,$(t))))

TEST_BINS += $(FUZZ_TARGETS:%=$(O)/tests/test_fuzz_%)

fuzz-build: $(FUZZ_BINS)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run --time $(FUZZ_TIME) --bin $(FUZZ_O) --out $(FUZZ_O)/run $(FUZZ_TARGETS)

fuzz-smoke: $(FUZZ_BINS)
	@tests/fuzz/run --time $(FUZZ_SMOKE_TIME) --bin $(FUZZ_O) --out $(FUZZ_O)/smoke \
		$(FUZZ_TARGETS)

.PHONY: fuzz fuzz-build fuzz-smoke
