# ngx_http_objmapper_module: nginx serves objmapperd's objects by
# descriptor. Built by `make` when nginx-dev is installed (its configured
# source tree, /usr/share/nginx/src), by scripts/build-nginx-module:
#   $(O)/nginx/ngx_http_objmapper_module.so   libobjmapper linked in
# nginx loads it with `load_module .../ngx_http_objmapper_module.so;`.
# `make check-nginx` (as root) runs tests/nginx/test_nginx.c with Debian's
# nginx and objmapperd. Not in sanitizer builds (nginx is not one).

NGX_SRC        ?= /usr/share/nginx/src
NGINX_DIR      := $(O)/nginx
NGINX_MODULE   := $(NGINX_DIR)/ngx_http_objmapper_module.so
NGINX_TEST     := $(O)/tests/test_nginx
HAVE_NGINX_DEV := $(if $(wildcard $(NGX_SRC)/configure),yes)

ifeq ($(HAVE_NGINX_DEV)$(SAN),yes)
NGINX_ALL := $(NGINX_MODULE) $(NGINX_TEST)
endif

$(NGINX_MODULE): src/nginx/ngx_http_objmapper_module.c src/nginx/config scripts/build-nginx-module \
		$(CLIENT_A) include/objmapper/objmapper.h | $(DEPSTAMP)
	@scripts/install-deps nginx-dev
	scripts/build-nginx-module $(NGINX_DIR) $(CLIENT_A)

$(NGINX_TEST): $(O)/tests/nginx/test_nginx.o $(O)/tests/lib/om_test.o $(O)/tests/lib/om_daemon.o \
		$(CLIENT_A) $(ENGINE_LIB) | $(O)/objmapperd
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) $(LDLIBS) -lcmocka

nginx-module: $(NGINX_MODULE)

check-nginx: $(O)/objmapperd $(O)/objmapper $(NGINX_TEST)
	@scripts/install-deps nginx nginx-dev
	@$(MAKE) --no-print-directory $(NGINX_MODULE)
	@NGINX_MODULE=$(abspath $(NGINX_MODULE)) scripts/run-tests --timeout 900 \
		--logs $(O)/test-logs-nginx $(NGINX_TEST)

.PHONY: nginx-module check-nginx

# make lint: clang-tidy sees the module with nginx's configured headers.
NGX_TREE := $(NGINX_DIR)/src
$(O)/lint/tidy/src/nginx/%.ok: TIDY_FLAGS := -D_FORTIFY_SOURCE=2 $(foreach d,src/core src/event \
	src/event/modules src/os/unix objs src/http src/http/modules src/http/v2,-isystem $(NGX_TREE)/$(d))
# (An explicit rule: order-only prerequisites of a pattern rule without a
# recipe are not merged into the rule that builds the target, and `make
# lint` alone, before anything had built the module, found no headers.)
$(O)/lint/tidy/src/nginx/ngx_http_objmapper_module.c.ok: | $(NGINX_MODULE)

# The module's files as Debian lays them out (scripts/build-deb: the
# package libnginx-mod-http-objmapper).
NGINX_MODDIR  ?= /usr/lib/nginx/modules
NGINX_AVAILDIR ?= /usr/share/nginx/modules-available
install-nginx-module: $(NGINX_MODULE)
	$(INSTALL) -d $(DESTDIR)$(NGINX_MODDIR) $(DESTDIR)$(NGINX_AVAILDIR) $(DESTDIR)$(MANDIR)/man8
	$(INSTALL) -m 0644 $(NGINX_MODULE) $(DESTDIR)$(NGINX_MODDIR)/ngx_http_objmapper_module.so
	echo 'load_module modules/ngx_http_objmapper_module.so;' \
		> $(DESTDIR)$(NGINX_AVAILDIR)/mod-http-objmapper.conf
	chmod 0644 $(DESTDIR)$(NGINX_AVAILDIR)/mod-http-objmapper.conf
	$(INSTALL) -m 0644 src/nginx/ngx_http_objmapper_module.8 $(DESTDIR)$(MANDIR)/man8/
.PHONY: install-nginx-module

# nginx serving objmapper's objects four ways (bench/nginx-module: a table,
# a plot and the system calls per request); `make bench` runs it too.
bench-nginx: $(NGINX_MODULE) $(O)/bench/loadgen $(O)/objmapperd
	@scripts/install-deps nginx strace gnuplot-nox
	O=$(O) bench/nginx-module $(BENCH_ARGS)
bench bench-quick: $(NGINX_ALL)
.PHONY: bench-nginx
