/*
 * `make check-asan` loads conntrack.core into a stock lua5.4 with the ASan
 * runtime preloaded.  This module, built the same way, proves that such a
 * setup really reports memory errors and leaks in a dlopen()ed module
 * before the suite's silence is taken as a clean bill:
 *   require("asan_probe").overflow()  -- must die with heap-buffer-overflow
 *   require("asan_probe").leak()      -- must be reported at exit (detect_leaks=1)
 */
#include <stdlib.h>
#include <string.h>
#include <lua.h>
#include <lauxlib.h>

int luaopen_asan_probe(lua_State *L);

static int probe_overflow(lua_State *L)
{
	/* volatile: at -O1 a store to memory freed unread is dropped */
	volatile char *p = malloc(8);
	volatile size_t i = 8;

	(void)L;
	p[i] = 1;
	free((void *)p);
	return 0;
}

static void *volatile probe_sink;

static int probe_leak(lua_State *L)
{
	(void)L;
	probe_sink = malloc(64);
	probe_sink = NULL;
	return 0;
}

int luaopen_asan_probe(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, probe_overflow);
	lua_setfield(L, -2, "overflow");
	lua_pushcfunction(L, probe_leak);
	lua_setfield(L, -2, "leak");
	return 1;
}
