# Test binaries: one cmocka program per part, each run as its own process.
# Unit tests link the engine; integration tests start the real daemon
# (and the CLI) and talk to it through libobjmapper.
TEST_LIB_OBJS := $(O)/tests/lib/om_test.o
INTEG_LIB_OBJS := $(TEST_LIB_OBJS) $(O)/tests/lib/om_daemon.o $(O)/tests/lib/om_load.o $(O)/tests/lib/om_raw.o \
                  $(O)/tests/lib/om_packs.o

UNIT_NAMES  := test_core test_os test_proto test_index test_index_crash test_index_stress test_store \
               test_store_rebuild test_conf
INTEG_NAMES := test_daemon test_reload test_crash test_input test_cli test_ops test_stats test_net test_limits \
               test_hygiene test_client_stream test_space test_scrub test_restart test_upgrade
INTEG_NAMES += test_client_peer
INTEG_NAMES += test_isolation
INTEG_NAMES += test_list
INTEG_NAMES += test_small
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

# A load for scripts (tests/check-deb).
LOADRUN := $(O)/tests/om_loadrun
$(LOADRUN): $(O)/tests/tools/om_loadrun.o $(TEST_LIB_OBJS) $(O)/tests/lib/om_load.o $(CLIENT_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread -lcmocka
all: $(LOADRUN)

$(O)/tests/%.o: CPPFLAGS += -Itests/lib

# Fault injection (tests/lib/om_fault.h): the wrappers are linked into
# test_faults, and built as om_fault.so (without sanitizers, so that it can
# be preloaded into any build of objmapperd) for test_faults_daemon.
FAULT_CTL_OBJ := $(O)/tests/lib/om_fault_ctl.o
FAULT_SO      := $(O)/tests/om_fault.so
$(O)/tests/test_faults: $(O)/tests/unit/test_faults.o $(TEST_LIB_OBJS) $(O)/tests/lib/om_packs.o $(ENGINE_LIB) \
		$(O)/tests/lib/om_fault.o $(FAULT_CTL_OBJ)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
$(O)/tests/test_faults_daemon: $(O)/tests/integration/test_faults_daemon.o $(INTEG_LIB_OBJS) \
		$(FAULT_CTL_OBJ) $(CLIENT_A) $(ENGINE_LIB) | $(PROGRAMS) $(FAULT_SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS) -lcmocka
$(FAULT_SO): tests/lib/om_fault.c tests/lib/om_fault_ctl.c tests/lib/om_fault.h | $(DEPSTAMP)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(filter-out -fsanitize% -fno-sanitize%,$(CFLAGS)) -shared -o $@ \
		tests/lib/om_fault.c tests/lib/om_fault_ctl.c

# vmod_objmapper's metadata and keys: pure C, no Varnish needed.
$(O)/tests/test_vmod_meta: $(O)/tests/unit/test_vmod_meta.o $(TEST_LIB_OBJS) $(O)/src/vmod/vmod_meta.o
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
TEST_BINS += $(O)/tests/test_vmod_meta

# In make check (about a minute together; test_faults samples the
# directory walks of the rebuild and of the opening).
TEST_BINS += $(O)/tests/test_faults $(O)/tests/test_faults_daemon

# Every crash point of the directory walks too (a few minutes).
check-faults: $(O)/tests/test_faults | $(DEPSTAMP)
	@OM_FAULTS_FULL=1 scripts/run-tests --timeout 1800 --logs $(O)/test-logs-faults $^
.PHONY: check-faults

# libobjmapper's non-blocking core over a socketpair (no daemon).
$(O)/tests/test_client: $(O)/tests/unit/test_client.o $(TEST_LIB_OBJS) $(CLIENT_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
TEST_BINS += $(O)/tests/test_client

# Packs (store_pack.c): the store's API with pack_max = 16 KiB.
$(O)/tests/test_pack: $(O)/tests/unit/test_pack.o $(TEST_LIB_OBJS) $(ENGINE_LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka
TEST_BINS += $(O)/tests/test_pack

# Packs in the daemon (pack_max = 16K on both tiers).
$(O)/tests/test_packs: $(O)/tests/integration/test_packs.o $(INTEG_LIB_OBJS) $(CLIENT_A) $(ENGINE_LIB) \
		| $(PROGRAMS)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS) -lcmocka
TEST_BINS += $(O)/tests/test_packs

# Faults on a pack's append (pwritev) in the daemon: in make check and in
# make check-faults.
$(O)/tests/test_faults_packs: $(O)/tests/integration/test_faults_packs.o $(INTEG_LIB_OBJS) \
		$(FAULT_CTL_OBJ) $(CLIENT_A) $(ENGINE_LIB) | $(PROGRAMS) $(FAULT_SO)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS) -lcmocka
TEST_BINS += $(O)/tests/test_faults_packs
check-faults: $(O)/tests/test_faults_packs
