# lua-conntrack build.  Honours CC, CPPFLAGS, CFLAGS, LDFLAGS, LIBFLAG,
# LUA_VERSION, LUA_INCDIR, PREFIX, DESTDIR and PKG_CONFIG; nothing below forces
# an optimisation level (CFLAGS is -O2 -g only when unset).

VERSION     := 0.2.0
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
LIBFLAG     ?= -shared
LUA_INCDIR  ?=

# pkg-config is asked when a recipe first needs its answer, not when make
# reads this file: `make check` and `make demo` install the packages first
# (tools/deps.sh), then build.  A package it cannot find stops the build with
# one line saying so.
pc = $(call pc_check,$(shell $(PKG_CONFIG) $(1) $(2) 2>/dev/null || echo '?pc-failed'),$(2))
pc_check = $(if $(filter ?pc-failed,$(1)),$(error pkg-config finds no $(2): install the -dev \
	packages (Debian: tools/deps.sh), or name the headers (LUA_INCDIR; NETFILTER_CONNTRACK_INCDIR, \
	MNL_INCDIR and their _LIBDIR)),$(1))
# VAR = $(call once,VAR,value): computed on first use, then kept.
once = $(eval $(1) := $(2))$($(1))

LUA_CFLAGS  = $(call once,LUA_CFLAGS,$(if $(LUA_INCDIR),-I$(LUA_INCDIR),$(call pc,--cflags-only-I,$(LUA_PC))))
# luarocks names the libraries' directories (external_dependencies); without
# them pkg-config does.
NF_DIRS     := $(NETFILTER_CONNTRACK_INCDIR)$(NETFILTER_CONNTRACK_LIBDIR)$(MNL_INCDIR)$(MNL_LIBDIR)
ifneq ($(strip $(NF_DIRS)),)
NF_CFLAGS   = $(addprefix -I,$(sort $(NETFILTER_CONNTRACK_INCDIR) $(MNL_INCDIR)))
NF_LIBS     = $(addprefix -L,$(sort $(NETFILTER_CONNTRACK_LIBDIR) $(MNL_LIBDIR))) -lnetfilter_conntrack -lmnl
else
NF_CFLAGS   = $(call once,NF_CFLAGS,$(call pc,--cflags,libnetfilter_conntrack libmnl))
NF_LIBS     = $(call once,NF_LIBS,$(call pc,--libs,libnetfilter_conntrack libmnl))
endif
WARN        := -std=c99 -Wall -Wextra -Wshadow -Wpointer-arith -Wcast-qual \
               -Wstrict-prototypes -Wmissing-prototypes -Wundef -Wformat=2 \
               -Werror=format -Werror=implicit-function-declaration
# Hidden visibility: core.so exports luaopen_conntrack_core alone.
ALL_CFLAGS  = $(WARN) -pthread -fPIC -fvisibility=hidden -D_GNU_SOURCE $(LUA_CFLAGS) $(NF_CFLAGS) $(CPPFLAGS) $(CFLAGS)

PREFIX      ?= /usr/local
BINDIR      ?= $(PREFIX)/bin
LUA_LIBDIR  ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)

# Objects depend on the Lua headers: a build for other headers (luarocks
# passes LUA_INCDIR) gets its own directory.  A change of compiler or flags
# rebuilds (build/.../flags).
BUILD       ?= build/$(if $(LUA_INCDIR),inc$(subst /,_,$(LUA_INCDIR)),$(LUA_VERSION))
SRCS        := $(wildcard csrc/*.c)
OBJS        := $(patsubst csrc/%.c,$(BUILD)/obj/%.o,$(SRCS))
MODULE      := $(BUILD)/conntrack/core.so
LUAFILES    := lua/conntrack.lua $(wildcard lua/conntrack/*.lua)

# The conntrack-compatible command, installed as lua-conntrack when present,
# its first line naming the interpreter it was installed for.
CLI         := $(wildcard examples/conntrack.lua)
CLI_OUT     := $(BUILD)/lua-conntrack
SHEBANG     ?= $(if $(filter /%,$(LUA)),$(LUA),/usr/bin/env $(LUA))

# Tests, demo and benchmarks run with the sources in place: lua/ first, the
# spec helpers and tools/ (hosts.lua), then the module built in $(1).
# LCT_LUA names the interpreter under test to the specs' child processes.
TREE_ENV    = LUA_PATH="$(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;$(CURDIR)/spec/?.lua;$(CURDIR)/tools/?.lua;;" \
              LUA_CPATH="$(CURDIR)/$(1)/?.so;;" LCT_LUA="$(LUA)"
TEST_ENV    = $(call TREE_ENV,$(BUILD))

.PHONY: all install uninstall dist deps check check-layers check-unit check-asan check-compat check-all-lua lint \
	fuzz fuzz-asan check-valgrind \
	demo bench bench-bulk bench-events bench-ops bench-stall bench-cli bench-exporter bench-rpcd bench-replicate test-tools clean \
	check-first-run check-install check-rocks check-openwrt FORCE

all: $(MODULE)

# The compiler and flags of the last build in $(BUILD), rewritten only when
# they change, so that a change (CPPFLAGS after a plain build) rebuilds.
FLAGS_NOW    = $(CC) $(ALL_CFLAGS) | $(LIBFLAG) $(CFLAGS) $(LDFLAGS) $(NF_LIBS)
$(BUILD)/flags: FORCE
	@mkdir -p $(dir $@)
	@[ "$$(cat $@ 2>/dev/null)" = '$(subst ','\'',$(FLAGS_NOW))' ] || \
		printf '%s\n' '$(subst ','\'',$(FLAGS_NOW))' > $@

$(BUILD)/obj/%.o: csrc/%.c csrc/*.h $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(MODULE): $(OBJS) $(BUILD)/flags
	@mkdir -p $(dir $@)
	$(CC) $(LIBFLAG) $(CFLAGS) $(LDFLAGS) -o $@ $(OBJS) $(NF_LIBS) -pthread

install: $(MODULE)
	install -d $(DESTDIR)$(LUA_LIBDIR)/conntrack $(DESTDIR)$(LUA_SHAREDIR)/conntrack
	install -m 0755 $(MODULE) $(DESTDIR)$(LUA_LIBDIR)/conntrack/core.so
	install -m 0644 lua/conntrack.lua $(DESTDIR)$(LUA_SHAREDIR)/conntrack.lua
	install -m 0644 $(wildcard lua/conntrack/*.lua) $(DESTDIR)$(LUA_SHAREDIR)/conntrack/
ifneq ($(CLI),)
	{ echo '#!$(SHEBANG)'; sed '1{/^#!/d;}' $(CLI); } > $(CLI_OUT)
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(CLI_OUT) $(DESTDIR)$(BINDIR)/lua-conntrack
endif

# Removes what install put there, then the directories it leaves empty: the
# module directories and, inside PREFIX, their parents up to lib/ and share/.
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/lua-conntrack $(DESTDIR)$(LUA_SHAREDIR)/conntrack.lua
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/conntrack $(DESTDIR)$(LUA_SHAREDIR)/conntrack
	@for d in $(DESTDIR)$(LUA_LIBDIR) $(DESTDIR)$(LUA_SHAREDIR); do \
		while rmdir "$$d" 2>/dev/null; do \
			d=$${d%/*}; \
			case "$$d" in $(DESTDIR)$(PREFIX)/*/*) ;; *) break ;; esac; \
		done; \
	done

# The source archive the versioned rockspec and the OpenWrt recipe name, of
# DIST_REF (HEAD; for a release, its tag: make dist DIST_REF=v$(VERSION)).
# Reproducible (times from the commit, gzip without a name or time), so the
# hash it prints can be published.
DIST        := lua-conntrack-$(VERSION)
DIST_REF    ?= HEAD
dist:
	@mkdir -p build/dist
	git archive --format=tar.gz --prefix=$(DIST)/ -o build/dist/$(DIST).tar.gz $(DIST_REF)
	@[ "$(DIST_REF)" != HEAD ] || git diff --quiet HEAD -- || \
		echo "dist: uncommitted changes are not in the archive (it is HEAD)" >&2
	@cd build/dist && sha256sum $(DIST).tar.gz

deps:
	tools/deps.sh

# Every spec runs as root inside a private network namespace made for the run
# and always removed afterwards (tools/netns-run).  busted reads .busted.
check: deps
	$(MAKE) all
	$(MAKE) -s check-layers
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

# The tools the specs run as programs (examples/) use the plain build: make it too.
check-asan: deps
	$(MAKE) all
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

# The API fuzzer (tools/fuzz.lua): N random calls of every public function
# and method, with callbacks, metatables and finalizers that close the
# objects in use, in chunks of FUZZ_CHUNK calls each run by a child process
# so that a crash or a hang is counted with its seed.  Fails on a crash, a
# hang or a rejection that is neither "fname: ..." raised nor nil, msg,
# errno returned.  FUZZ_ARGS: --seed S, -j JOBS, --skip PATTERN...
N           ?= 100000
FUZZ_CHUNK  ?= 2000
FUZZ_ARGS   ?=
fuzz: deps all
	$(TEST_ENV) tools/netns-run $(LUA) tools/fuzz.lua -n $(N) --chunk $(FUZZ_CHUNK) $(FUZZ_ARGS)

# The fuzzer with the module built with AddressSanitizer (as check-asan):
# the children run with the ASan runtime preloaded and leak detection on
# (each closes its Lua state before it exits), the parent without.
# FUZZ_ASAN_N calls: about a minute.
FUZZ_ASAN_N ?= 40000
fuzz-asan: deps
	$(MAKE) BUILD=$(ASAN_BUILD) CFLAGS="$(ASAN_CFLAGS)" LDFLAGS="-fsanitize=address" all
	$(ASAN_PATHS) tools/netns-run $(LUA) tools/fuzz.lua -n $(FUZZ_ASAN_N) --chunk 1000 \
		--child-env 'LD_PRELOAD=$(ASAN_RT) ASAN_OPTIONS=abort_on_error=1:detect_leaks=1' $(FUZZ_ARGS)

# valgrind over tools/exercise.lua, which calls every function and method
# at least once on a real table in a private namespace (flows, dumps,
# batches, bulk operations, events of real changes, expectations on ftp
# masters): fails on any memory error and on any byte definitely or
# indirectly lost.  lua5.4 frees all it allocated before it exits (valgrind
# finds 0 bytes in use at exit), so no suppression file is needed.
check-valgrind: deps all
	$(TEST_ENV) tools/netns-run valgrind -q --error-exitcode=1 --leak-check=full \
		--show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
		$(LUA) tools/exercise.lua

# The module must keep building for the other Lua versions OpenWrt and others
# use; spec/smoke.lua (plain Lua, no busted) runs on each.
check-compat: deps
	for v in 5.1 5.3 jit; do $(MAKE) LUA_VERSION=$$v all || exit 1; done
	for v in 5.1 5.3 jit; do \
		lv=lua$$v; [ $$v = jit ] && lv=luajit; \
		LUA_PATH="$(CURDIR)/lua/?.lua;;" LUA_CPATH="$(CURDIR)/build/$$v/?.so;;" \
			tools/netns-run $$lv spec/smoke.lua || exit 1; \
	done

demo: deps
	$(MAKE) all
	$(TEST_ENV) tools/netns-run $(LUA) examples/demo.lua
	$(TEST_ENV) LUA=$(LUA) tools/netns-run $(LUA) examples/tour.lua

bench: deps
	$(MAKE) all
	$(MAKE) -s -C bench
	$(TEST_ENV) tools/netns-run $(LUA) bench/bench.lua $(BENCH_ARGS)

# bench-NAME runs bench/NAME.lua in a private namespace: bulk operations,
# the conntrack command, events, single requests against a C libmnl program
# (ops), what a stalled subscriber's buffer holds (stall).
bench-bulk bench-cli bench-events bench-ops bench-stall: bench-%: deps
	$(MAKE) all
	$(MAKE) -s -C bench
	$(TEST_ENV) LUA=$(LUA) tools/netns-run $(LUA) bench/$*.lua $(BENCH_ARGS)

bench-exporter: deps
	$(MAKE) all
	$(MAKE) -s -C bench
	$(TEST_ENV) LUA=$(LUA) tools/netns-run $(LUA) bench/exporter.lua $(BENCH_ARGS)

bench-rpcd: deps
	$(MAKE) all
	$(MAKE) -s -C bench
	$(MAKE) -s LUA_VERSION=5.1 all
	$(TEST_ENV) tools/netns-run $(LUA) bench/rpcd.lua $(BENCH_ARGS)

# examples/replicate.lua beside conntrackd: a burst of new flows on one
# router, the time until the other holds them (bench/replicate.lua).
bench-replicate: deps
	$(MAKE) all
	$(TEST_ENV) LUA=$(LUA) tools/netns-run $(LUA) bench/replicate.lua $(BENCH_ARGS)

# The C units stand in layers: no two call each other in a circle (from the
# objects' symbols), and core.so exports luaopen_conntrack_core alone.  The
# check is first shown to catch a circle made on purpose.
check-layers: all
	@tmp=$$(mktemp -d) && \
	printf 'void b(void); void a(void); void a(void) { b(); }\n' > $$tmp/a.c && \
	printf 'void a(void); void b(void); void b(void) { a(); }\n' > $$tmp/b.c && \
	$(CC) -c -o $$tmp/a.o $$tmp/a.c && $(CC) -c -o $$tmp/b.o $$tmp/b.c && \
	if $(LUA) tools/layers.lua $$tmp/a.o $$tmp/b.o >/dev/null 2>&1; then \
		rm -rf $$tmp; echo "check-layers: a circle went unseen" >&2; exit 1; fi; rm -rf $$tmp
	$(LUA) tools/layers.lua $(OBJS)
	@extra=$$(nm -D --defined-only $(MODULE) | awk '$$3 != "luaopen_conntrack_core" { print $$3 }'); \
	if [ -n "$$extra" ]; then echo "check-layers: core.so exports more than luaopen_conntrack_core: $$extra" >&2; exit 1; fi; \
	echo "check-layers: core.so exports luaopen_conntrack_core alone"

# Packaging checks (.ci/run), each closing with "homes: NAME: N checks, M
# failed": make demo and make check on their first run on a machine without
# the build packages; make install and uninstall; LuaRocks for 5.1, 5.3 and
# 5.4; the OpenWrt recipe.  tools/check-* say what each proves.
check-first-run:
	tools/check-first-run

check-install check-rocks check-openwrt: deps
	tools/$@

# C unit checks of the core's own helpers (no kernel needed).
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
