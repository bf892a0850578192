# libobjmapper: static and shared (soname libobjmapper.so.0), only the
# om_client_* / om_object_* API exported.
CLIENT_SRCS   := src/client/client.c src/client/nb.c src/proto/proto.c src/os/fdpass.c
CLIENT_OBJS   := $(CLIENT_SRCS:%.c=$(O)/%.o)
CLIENT_SOVER  := 0
CLIENT_VER    := 0.1.0
CLIENT_A      := $(O)/libobjmapper.a
CLIENT_SO     := $(O)/libobjmapper.so.$(CLIENT_VER)

$(CLIENT_A): $(CLIENT_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

$(CLIENT_SO): $(CLIENT_OBJS)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libobjmapper.so.$(CLIENT_SOVER) -Wl,--no-undefined \
		-o $@ $^
	ln -sf libobjmapper.so.$(CLIENT_VER) $(O)/libobjmapper.so.$(CLIENT_SOVER)
	ln -sf libobjmapper.so.$(CLIENT_SOVER) $(O)/libobjmapper.so

$(O)/objmapper.pc: src/client/objmapper.pc.in
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(CLIENT_VER)|g' \
		-e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' $< > $@

CLIENT_ALL := $(CLIENT_A) $(CLIENT_SO) $(O)/objmapper.pc
