# Test binaries: one cmocka program per part, each run as its own process.
TEST_LIB_SRCS := tests/lib/om_test.c
TEST_LIB_OBJS := $(TEST_LIB_SRCS:%.c=$(O)/%.o)
TEST_NAMES    := test_core test_index test_index_crash test_index_stress test_store test_store_rebuild test_conf
TEST_BINS     += $(TEST_NAMES:%=$(O)/tests/%)

$(O)/tests/%: $(O)/tests/unit/%.o $(TEST_LIB_OBJS) $(ENGINE_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(O)/tests/%.o: CPPFLAGS += -Itests/lib
