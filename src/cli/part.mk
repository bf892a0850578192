# The objmapper command-line client, linked with the static libobjmapper
# so that it runs without the shared library installed.
CLI_SRCS := src/cli/objmapper.c src/cli/cli_io.c src/cli/cli_stats.c
CLI_OBJS := $(CLI_SRCS:%.c=$(O)/%.o)
PROGRAMS += $(O)/objmapper

# CRC32C of the engine's core, for `objmapper verify`.
$(O)/objmapper: $(CLI_OBJS) $(CLIENT_A) $(O)/src/core/crc32c.o
	$(CC) $(LDFLAGS) -o $@ $^ -lpthread
