# objmapperd: the daemon.
SERVER_SRCS := src/server/main.c src/server/master.c src/server/worker.c src/server/conn.c \
               src/server/fdcache.c src/server/object.c \
               src/server/proto_bin.c src/server/proto_http.c src/server/proto_udp.c \
               src/server/manager.c src/server/stats.c src/server/access.c
SERVER_OBJS := $(SERVER_SRCS:%.c=$(O)/%.o)
PROGRAMS    += $(O)/objmapperd

$(O)/objmapperd: $(SERVER_OBJS) $(ENGINE_LIB)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
