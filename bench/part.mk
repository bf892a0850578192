# Benchmarks: programs that print tables (never timed assertions).
BENCH_BINS += $(O)/bench/bench_engine

$(O)/bench/bench_engine: $(O)/bench/bench_engine.o $(ENGINE_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

bench-engine: $(O)/bench/bench_engine
	$(O)/bench/bench_engine $(BENCH_ARGS)

.PHONY: bench-engine
