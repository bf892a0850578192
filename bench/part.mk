# Benchmarks: programs that print tables (never timed assertions).
BENCH_BINS += $(O)/bench/bench_engine

$(O)/bench/bench_engine: $(O)/bench/bench_engine.o $(ENGINE_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-engine: $(O)/bench/bench_engine
	$(O)/bench/bench_engine $(BENCH_ARGS)

.PHONY: bench-engine

# Protocol-level benchmarks: loadgen drives a server through libobjmapper
# (linked statically); floor_server is the least any fd-passing server does.
BENCH_BINS += $(O)/bench/loadgen $(O)/bench/floor_server

$(O)/bench/loadgen: $(O)/bench/loadgen.o $(CLIENT_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread

$(O)/bench/floor_server: $(O)/bench/floor_server.o $(O)/src/proto/proto.o
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^

# objmapperd against the floor under the same load (a table; ~3 minutes).
bench-daemon: $(O)/bench/loadgen $(O)/bench/floor_server $(O)/objmapperd
	O=$(O) bench/daemon-vs-floor $(BENCH_ARGS)

.PHONY: bench-daemon

# GETs while the scrub runs against none (a table; ~1 minute).
bench-scrub: $(O)/bench/loadgen $(O)/objmapperd $(O)/objmapper
	O=$(O) bench/scrub-cost $(BENCH_ARGS)

.PHONY: bench-scrub

# GETs over Unix and TCP, every mode (a table; ~1 minute with --quick, ~3 without).
bench-transports: $(O)/bench/loadgen $(O)/objmapperd
	O=$(O) bench/transports $(BENCH_ARGS)

.PHONY: bench-transports

# One comparison, results in bench/results/YYYYmmdd-HHMMSS/ (runs.csv,
# summary.csv, table.md, plots): objmapperd (Unix auto/fdpass/copy, TCP
# copy/splice), memcached and the floor, the same loadgen for all; restart
# time and resident memory; objmapperd's HTTP listener against nginx (read-only,
# 16 connections, 4 KiB and 1 MiB); issue 20's targets (table.md, targets.csv).
# `make bench` is planned for under 10 minutes on 2 idle CPUs, `make
# bench-quick` for about a minute and a half. Installs memcached, nginx and
# gnuplot first.
bench bench-quick: $(O)/bench/loadgen $(O)/bench/floor_server $(O)/bench/bench_engine $(O)/objmapperd $(O)/objmapper \
    $(O)/tests/test_upgrade
	@scripts/install-deps bench gnuplot-nox
	O=$(O) bench/compare $(if $(filter bench-quick,$@),--quick) $(BENCH_ARGS)

.PHONY: bench bench-quick

# System calls per GET and per PUT of objmapperd (modes auto, copy, fdpass,
# HTTP; PUTs and 10% PUTs) and memcached under the same loadgen, from
# strace -c of the servers' workers (bench/syscalls: a table in
# bench/results/syscalls-*; about 4 minutes, BENCH_ARGS=--quick about 2).
bench-syscalls: $(O)/bench/loadgen $(O)/objmapperd $(O)/objmapper
	@scripts/install-deps bench
	O=$(O) bench/syscalls $(BENCH_ARGS)

.PHONY: bench-syscalls

# Varnish with objmapper as its second level (vmod_objmapper) against
# Varnish's misses going to the origin (nginx over TCP) or to objmapperd's
# HTTP listener: requests/s and p99 of the miss path, and the recovery after
# a restart of Varnish (bench/varnish-l2: a table and plots in
# bench/results/varnish-*; about 10 minutes, BENCH_ARGS=--quick about 2).
bench-varnish: $(O)/bench/loadgen $(O)/objmapperd
	@scripts/install-deps bench varnish gnuplot-nox
	@$(MAKE) --no-print-directory vmod-build
	O=$(O) bench/varnish-l2 $(BENCH_ARGS)

.PHONY: bench-varnish
