# lua-conntrack build.  Honours CC, CFLAGS, LDFLAGS, LUA_VERSION, LUA_INCDIR,
# PREFIX and DESTDIR; nothing below forces an optimisation level.

LUA_VERSION ?= 5.4
ifeq ($(LUA_VERSION),jit)
LUA_PC      ?= luajit
LUA         ?= luajit
LUA_ABI     ?= 5.1
else
LUA_PC      ?= lua$(LUA_VERSION)
LUA         ?= lua$(LUA_VERSION)
LUA_ABI     ?= $(LUA_VERSION)
endif

PKG_CONFIG  ?= pkg-config
CC          ?= cc
CFLAGS      ?= -O2 -g
LUA_INCDIR  ?=
LUA_CFLAGS  := $(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(shell $(PKG_CONFIG) --cflags-only-I $(LUA_PC)))
WARN        := -std=c99 -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual \
               -Wstrict-prototypes -Wmissing-prototypes -Wundef
NF_CFLAGS   := $(shell $(PKG_CONFIG) --cflags libnetfilter_conntrack libmnl)
NF_LIBS     := $(shell $(PKG_CONFIG) --libs libnetfilter_conntrack libmnl)
ALL_CFLAGS  := $(WARN) -fPIC -D_GNU_SOURCE $(LUA_CFLAGS) $(NF_CFLAGS) $(CFLAGS)

PREFIX      ?= /usr/local
LUA_LIBDIR  ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)

# Objects depend on the Lua headers: a build for other headers (luarocks
# passes LUA_INCDIR) gets its own directory.
BUILD       ?= build/$(LUA_VERSION)$(if $(LUA_INCDIR),-$(subst /,_,$(LUA_INCDIR)))
SRCS        := $(wildcard csrc/*.c)
OBJS        := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
MODULE      := $(BUILD)/conntrack/core.so
LUAFILES    := lua/conntrack.lua $(wildcard lua/conntrack/*.lua)

# Tests run with the sources in place: lua/ first, then the built module.
TEST_ENV    = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;;" \
              LUA_CPATH="$(CURDIR)/$(BUILD)/?.so;;"

.PHONY: all install uninstall deps check check-unit check-asan check-compat demo bench clean

all: $(MODULE)

$(BUILD)/obj/%.o: csrc/%.c csrc/*.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(NF_LIBS)

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/conntrack $(DESTDIR)$(LUA_SHAREDIR)/conntrack
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/conntrack/core.so
	install -m 0644 lua/conntrack.lua $(DESTDIR)$(LUA_SHAREDIR)/conntrack.lua
	install -m 0644 $(wildcard lua/conntrack/*.lua) $(DESTDIR)$(LUA_SHAREDIR)/conntrack/

uninstall:
	rm -f $(DESTDIR)$(LUA_LIBDIR)/conntrack/core.so $(DESTDIR)$(LUA_SHAREDIR)/conntrack.lua
	rm -rf $(DESTDIR)$(LUA_SHAREDIR)/conntrack

deps:
	tools/deps.sh

# Every spec runs as root inside a private network namespace made for the run
# and always removed afterwards (tools/netns-run).
check: deps
	$(MAKE) all
	$(MAKE) -s test-tools
	$(TEST_ENV) tools/netns-run busted --lua=$(LUA) $(BUSTED_ARGS)

check-unit: all
	$(TEST_ENV) busted --lua=$(LUA) --tags=unit $(BUSTED_ARGS)

check-asan: deps
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" \
		LDFLAGS="-fsanitize=address" all
	$(MAKE) -s test-tools
	LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/spec/?.lua;;" LUA_CPATH="$(CURDIR)/build/asan/?.so;;" \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so)" \
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 LCT_ASAN=1 \
		tools/netns-run busted --lua=$(LUA) $(BUSTED_ARGS)

# The module must keep building for the other Lua versions OpenWrt and others use.
check-compat: deps
	for v in 5.1 5.3 jit; do $(MAKE) LUA_VERSION=$$v all || exit 1; done
	for v in 5.1 5.3 jit; do \
		lv=lua$$v; [ $$v = jit ] && lv=luajit; \
		LUA_PATH="$(CURDIR)/lua/?.lua;;" LUA_CPATH="$(CURDIR)/build/$$v/?.so;;" \
			tools/netns-run $$lv spec/smoke.lua || exit 1; \
	done

demo: deps all
	$(TEST_ENV) tools/netns-run $(LUA) examples/demo.lua

bench: deps all
	$(MAKE) -s -C bench
	$(TEST_ENV) tools/netns-run $(LUA) bench/bench.lua $(BENCH_ARGS)

test-tools:
	@true

clean:
	rm -rf build
	$(MAKE) -s -C bench clean 2>/dev/null || true
