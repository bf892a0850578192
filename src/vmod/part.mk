# vmod_objmapper: objmapperd as Varnish's second-level cache. Built by
# `make` when libvarnishapi-dev is installed (pkg-config varnishapi);
# `make vmod` installs it first (scripts/install-deps varnish) and builds:
#   $(O)/vmod/libvmod_objmapper.so   the VMOD (libobjmapper linked in, hidden)
#   $(O)/vmod/vmod_objmapper.3       its manual, from vmod_objmapper.vcc
# varnishd loads it with `import objmapper from "$(O)/vmod/libvmod_objmapper.so";`
# (or from vmoddir once installed: make install-vmod, the Debian package).

VMOD_DIR   := $(O)/vmod
VMOD_GEN   := $(O)/src/vmod/gen
VMOD_SO    := $(VMOD_DIR)/libvmod_objmapper.so
VMOD_MAN   := $(VMOD_DIR)/vmod_objmapper.3
VMOD_SRCS  := src/vmod/vmod_objmapper.c src/vmod/vmod_vfp.c src/vmod/vmod_pool.c src/vmod/vmod_meta.c
VMOD_OBJS  := $(VMOD_SRCS:%.c=$(O)/%.o) $(VMOD_GEN)/vcc_objmapper_if.o $(VMOD_GEN)/VSC_objmapper.o
VMOD_GEN_H := $(VMOD_GEN)/vcc_objmapper_if.h $(VMOD_GEN)/VSC_objmapper.h $(VMOD_GEN)/config.h

# (Debian's paths when the package is not there yet: make lint installs it
# after this file is read.)
HAVE_VARNISHAPI := $(shell pkg-config --exists varnishapi 2>/dev/null && echo yes)
VARNISH_INC     := $(or $(patsubst -I%,%,$(shell pkg-config --cflags-only-I varnishapi 2>/dev/null)),/usr/include/varnish)
VARNISH_CFLAGS  := -I$(VARNISH_INC)
VMODTOOL        := $(or $(shell pkg-config --variable=vmodtool varnishapi 2>/dev/null),/usr/share/varnish/vmodtool.py)
VSCTOOL         := $(or $(shell pkg-config --variable=vsctool varnishapi 2>/dev/null),/usr/share/varnish/vsctool.py)
VMOD_INSTDIR    := $(shell pkg-config --variable=vmoddir varnishapi 2>/dev/null)

ifeq ($(HAVE_VARNISHAPI),yes)
VMOD_ALL := $(VMOD_SO) $(VMOD_MAN)
endif

# The C glue and the reference (vmodtool), the counters (vsctool); the
# generated sources include "config.h", which Varnish's own build makes.
$(VMOD_GEN)/vcc_objmapper_if.c $(VMOD_GEN)/vcc_objmapper_if.h $(VMOD_GEN)/vmod_objmapper.man.rst: \
		src/vmod/vmod_objmapper.vcc | $(DEPSTAMP)
	@scripts/install-deps libvarnishapi-dev python3
	@mkdir -p $(VMOD_GEN)
	cd $(VMOD_GEN) && python3 $(VMODTOOL) -o vcc_objmapper_if $(abspath $<) >/dev/null
$(VMOD_GEN)/VSC_objmapper.c $(VMOD_GEN)/VSC_objmapper.h: src/vmod/VSC_objmapper.vsc | $(DEPSTAMP)
	@scripts/install-deps libvarnishapi-dev python3
	@mkdir -p $(VMOD_GEN)
	cd $(VMOD_GEN) && python3 $(VSCTOOL) -ch $(abspath $<)
$(VMOD_GEN)/config.h:
	@mkdir -p $(VMOD_GEN)
	@echo '/* vmod_objmapper: nothing to configure */' >$@

$(O)/src/vmod/%.o: CPPFLAGS += -I$(VMOD_GEN) $(VARNISH_CFLAGS)
$(O)/src/vmod/vmod_objmapper.o $(O)/src/vmod/vmod_vfp.o $(O)/src/vmod/vmod_pool.o $(VMOD_GEN)/vcc_objmapper_if.o \
	$(VMOD_GEN)/VSC_objmapper.o: | $(VMOD_GEN_H)
# Varnish finds the module by its one exported symbol, Vmod_objmapper_Data.
$(VMOD_GEN)/vcc_objmapper_if.o: CFLAGS += -fvisibility=default
$(VMOD_GEN)/%.o: $(VMOD_GEN)/%.c | $(DEPSTAMP)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

# Varnish's symbols come from varnishd at run time; libobjmapper's stay
# inside (--exclude-libs), so that nothing clashes with another module.
$(VMOD_SO): $(VMOD_OBJS) $(CLIENT_A)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libvmod_objmapper.so -Wl,--exclude-libs,ALL \
		-o $@ $(VMOD_OBJS) $(CLIENT_A) -lm -lpthread

# rst2man's page, made clean for mandoc -Tlint (as man/*: tests/check-man):
# the header line, and no font C or paragraph break right after a heading.
VMOD_MAN_DATE := $(shell git log -1 --format=%cs -- src/vmod/vmod_objmapper.vcc 2>/dev/null)
$(VMOD_MAN): $(VMOD_GEN)/vmod_objmapper.man.rst src/vmod/part.mk
	@mkdir -p $(@D)
	rst2man $< | sed -e 's|^\.TH "VMOD_OBJMAPPER" 3 .*|.TH VMOD_OBJMAPPER 3 $(or $(VMOD_MAN_DATE),2026-12-04) "objmapper $(CLIENT_VER)" "Library Functions Manual"|' \
		-e '/^\.ft [CP]$$/d' -e '/^\.S[HS] /{n;/^\.sp$$/d}' >$@.tmp && mv $@.tmp $@

# make vmod: the packages first, then the module (a new make, which finds them).
vmod: | $(DEPSTAMP)
	@scripts/install-deps varnish
	@$(MAKE) --no-print-directory vmod-build
vmod-build: $(VMOD_SO) $(VMOD_MAN)

install-vmod: vmod-build
	$(INSTALL) -d $(DESTDIR)$(VMOD_INSTDIR) $(DESTDIR)$(MANDIR)/man3
	$(INSTALL) -m 0644 $(VMOD_SO) $(DESTDIR)$(VMOD_INSTDIR)/libvmod_objmapper.so
	$(INSTALL) -m 0644 $(VMOD_MAN) $(DESTDIR)$(MANDIR)/man3/vmod_objmapper.3

.PHONY: vmod vmod-build install-vmod
