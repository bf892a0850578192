# Soak test (tests/soak/README.md): the real daemon with small tiers and
# every listener under a mixed, colliding load, SIGHUPs and SIGKILLs of
# workers, every answer checked against a model, memory and descriptors
# sampled over time.
#
#   make soak                     SOAK_SECONDS=600 (CI: 60)
#   make soak SOAK_SECONDS=60     other knobs from the environment:
#                                 SOAK_THREADS, SOAK_RATE, SOAK_KEYS, ...
#
# The report (the table over time and the summary) is also written to
# $(O)/soak/report.txt. The binary is built with `make` (so that it never
# rots) but not run by `make check`.
SOAK_SECONDS ?= 600
SOAK_BIN     := $(O)/tests/om_soak

$(SOAK_BIN): $(O)/tests/soak/soak.o $(INTEG_LIB_OBJS) $(CLIENT_A) $(ENGINE_LIB) | $(PROGRAMS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS) -lcmocka

all: $(SOAK_BIN)

soak: $(SOAK_BIN) $(PROGRAMS) | $(DEPSTAMP)
	@SOAK_SECONDS=$(SOAK_SECONDS) tests/soak/run $(SOAK_BIN) $(O)/soak

.PHONY: soak
