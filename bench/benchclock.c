/*
 * benchclock: the monotonic clock Lua lacks, for bench/loop.lua only.
 *   require("benchclock").now() -> integer nanoseconds (CLOCK_MONOTONIC)
 *   require("benchclock").cpu() -> the process's CPU time, user and system,
 *                                  in nanoseconds (CLOCK_PROCESS_CPUTIME_ID)
 */
#include <time.h>

#include <lua.h>
#include <lauxlib.h>

int luaopen_benchclock(lua_State *L);

static int bc_push(lua_State *L, clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	/* lua_Integer is 64-bit on 5.3+; a double keeps 5.1 working. */
#if LUA_VERSION_NUM >= 503
	lua_pushinteger(L, (lua_Integer)ts.tv_sec * 1000000000 + ts.tv_nsec);
#else
	lua_pushnumber(L, (lua_Number)ts.tv_sec * 1e9 + (lua_Number)ts.tv_nsec);
#endif
	return 1;
}

static int bc_now(lua_State *L)
{
	return bc_push(L, CLOCK_MONOTONIC);
}

static int bc_cpu(lua_State *L)
{
	return bc_push(L, CLOCK_PROCESS_CPUTIME_ID);
}

int luaopen_benchclock(lua_State *L)
{
	lua_newtable(L);
	lua_pushcfunction(L, bc_now);
	lua_setfield(L, -2, "now");
	lua_pushcfunction(L, bc_cpu);
	lua_setfield(L, -2, "cpu");
	return 1;
}
