# Test binaries: one cmocka program per part, each run as its own process.
# Unit tests link the engine; integration tests start the real daemon
# (and the CLI) and talk to it through libobjmapper.
TEST_LIB_OBJS := $(O)/tests/lib/om_test.o
INTEG_LIB_OBJS := $(TEST_LIB_OBJS) $(O)/tests/lib/om_daemon.o $(O)/tests/lib/om_load.o $(O)/tests/lib/om_raw.o

UNIT_NAMES  := test_core test_index test_index_crash test_index_stress test_store \
               test_store_rebuild test_conf
INTEG_NAMES := test_daemon test_reload test_crash test_input test_cli test_ops test_stats test_net test_limits
UNIT_BINS   := $(UNIT_NAMES:%=$(O)/tests/%)
INTEG_BINS  := $(INTEG_NAMES:%=$(O)/tests/%)
TEST_BINS   += $(UNIT_BINS) $(INTEG_BINS)

$(UNIT_BINS): $(O)/tests/%: $(O)/tests/unit/%.o $(TEST_LIB_OBJS) $(ENGINE_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(INTEG_BINS): $(O)/tests/%: $(O)/tests/integration/%.o $(INTEG_LIB_OBJS) $(CLIENT_A) $(ENGINE_LIB) \
		| $(PROGRAMS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS) -lcmocka

$(O)/tests/%.o: CPPFLAGS += -Itests/lib
