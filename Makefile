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

# Tests, demo and benchmarks run with the sources in place: lua/ first, the
# spec helpers and tools/ (hosts.lua), then the module built in $(1).
# LCT_LUA names the interpreter under test to the specs' child processes.
TREE_ENV    = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;$(CURDIR)/tools/?.lua;;" \
              LUA_CPATH="$(CURDIR)/$(1)/?.so;;" LCT_LUA="$(LUA)"
TEST_ENV    = $(call TREE_ENV,$(BUILD))

.PHONY: all install uninstall deps check check-unit check-asan check-compat check-all-lua lint demo bench bench-bulk bench-events test-tools clean

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
# and always removed afterwards (tools/netns-run).  busted reads .busted.
check: deps
	$(MAKE) all
	$(MAKE) -s test-tools
	$(TEST_ENV) tools/netns-run busted --lua=$(LUA) $(BUSTED_ARGS)

# The unit specs (spec/unit/: pure Lua on synthetic data, no kernel) need
# no privileges: a normal user runs them in a checkout of their own.
check-unit: all
	$(TEST_ENV) busted --lua=$(LUA) --run=unit $(BUSTED_ARGS)

# The whole suite on each Lua the module supports, each with its own build
# (build/5.1, build/5.3, build/5.4, build/jit): `make check-lua-5.1` for one.
LUA_VERSIONS ?= 5.1 5.3 5.4 jit
check-all-lua: $(addprefix check-lua-,$(LUA_VERSIONS))
check-lua-%: deps
	$(MAKE) LUA_VERSION=$* LUA=$(if $(filter jit,$*),luajit,lua$*) check

# The suite once more with the module built with AddressSanitizer, loaded
# into the stock interpreter with the ASan runtime preloaded (only inside
# the run's namespace, not into netns-run's own ip commands).  First a probe
# module proves that this setup reports an overflow and a leak in a
# dlopen()ed module; then the smoke test runs with leak detection (it starts
# no other programs), then the suite without it (the CLI tools it runs
# inherit the preload and are not ours to judge).
ASAN_BUILD  := build/asan
ASAN_CFLAGS := -O1 -g -fsanitize=address -fno-omit-frame-pointer
ASAN_RT      = $(shell $(CC) -print-file-name=libasan.so)
ASAN_PATHS   = $(call TREE_ENV,$(ASAN_BUILD))
ASAN_ENV     = env LD_PRELOAD="$(ASAN_RT)" ASAN_OPTIONS=abort_on_error=1:detect_leaks

check-asan: deps
	$(MAKE) BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" LDFLAGS="-fsanitize=address" all
	$(MAKE) -s test-tools
	$(CC) -shared -fPIC $(ASAN_CFLAGS) $(LUA_CFLAGS) -o $(ASAN_BUILD)/asan_probe.so spec/c/asan_probe.c
	@nm -D $(ASAN_BUILD)/conntrack/core.so | grep -q __asan_report || \
		{ echo "check-asan: $(ASAN_BUILD)/conntrack/core.so is not instrumented" >&2; exit 1; }
	@out=$$($(ASAN_PATHS) $(ASAN_ENV)=0 $(LUA) -e 'require("asan_probe").overflow()' 2>&1); \
	case "$$out" in *heap-buffer-overflow*) echo "check-asan: probe: heap overflow reported";; \
	*) echo "check-asan: ASan missed the probe's heap overflow:" >&2; echo "$$out" >&2; exit 1;; esac
	@out=$$($(ASAN_PATHS) $(ASAN_ENV)=1 $(LUA) -e 'require("asan_probe").leak()' 2>&1); \
	case "$$out" in *"detected memory leaks"*) echo "check-asan: probe: leak reported";; \
	*) echo "check-asan: ASan missed the probe's leak:" >&2; echo "$$out" >&2; exit 1;; esac
	$(ASAN_PATHS) tools/netns-run $(ASAN_ENV)=1 $(LUA) spec/smoke.lua
	$(ASAN_PATHS) LCT_ASAN=1 tools/netns-run $(ASAN_ENV)=0 busted --lua=$(LUA) $(BUSTED_ARGS)

# The module must keep building for the other Lua versions OpenWrt and others
# use; spec/smoke.lua (plain Lua, no busted) runs on each.
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

# C unit checks of the core's own helpers (no kernel needed).
# The bulk-operation and event-stream benchmarks (bench/bulk.lua, bench/events.lua).
bench-bulk: deps all
	$(MAKE) -s -C bench
	$(TEST_ENV) tools/netns-run $(LUA) bench/bulk.lua $(BENCH_ARGS)

bench-events: deps all
	$(MAKE) -s -C bench
	$(TEST_ENV) tools/netns-run $(LUA) bench/events.lua $(BENCH_ARGS)

test-tools: $(BUILD)/addr_test
	$(BUILD)/addr_test

$(BUILD)/addr_test: spec/c/addr_test.c csrc/addr.c csrc/lct.h
	@mkdir -p $(dir $@)
	$(CC) $(WARN) -D_GNU_SOURCE $(LUA_CFLAGS) $(NF_CFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ spec/c/addr_test.c csrc/addr.c

# luacheck (Debian's lua-check) with .luacheckrc: the module, specs,
# examples, benchmarks and tools.
lint:
	luacheck lua spec examples bench tools/*.lua

clean:
	rm -rf build
	$(MAKE) -s -C bench clean 2>/dev/null || true
