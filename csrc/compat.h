/*
 * Lua 5.1 / LuaJIT / 5.3 / 5.4 differences the module relies on, and the
 * compiler attributes it uses.
 */
#ifndef LCT_COMPAT_H
#define LCT_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdint.h>

#if defined(__GNUC__)
#define LCT_PRINTF(f, a)	__attribute__((format(printf, f, a)))
#define LCT_NORETURN		__attribute__((noreturn))
#define LCT_EXPORT		__attribute__((visibility("default")))
#else
#define LCT_PRINTF(f, a)
#define LCT_NORETURN
#define LCT_EXPORT
#endif

/*
 * luaL_setfuncs is 5.2's.  LuaJIT has it too, but the LuaJIT build must
 * call only Lua 5.1's C API: LuaJIT's modules live in the directories
 * lua5.1 reads (see README), so the module's own copy serves both.
 */
#if LUA_VERSION_NUM < 502
#define lua_rawlen(L, i)	lua_objlen(L, i)
static inline void lct_setfuncs(lua_State *L, const luaL_Reg *l, int nup)
{
	int i;

	for (; l->name != NULL; l++) {
		for (i = 0; i < nup; i++)
			lua_pushvalue(L, -nup);
		lua_pushcclosure(L, l->func, nup);
		lua_setfield(L, -(nup + 2), l->name);
	}
	lua_pop(L, nup);
}
#else
#define lct_setfuncs(L, l, n)	luaL_setfuncs(L, l, n)
#endif

#if LUA_VERSION_NUM < 502
static inline void lct_rawgetp(lua_State *L, int idx, const void *p)
{
	lua_pushlightuserdata(L, (void *)(uintptr_t)p);
	lua_rawget(L, idx < 0 && idx > LUA_REGISTRYINDEX ? idx - 1 : idx);
}
static inline void lct_rawsetp(lua_State *L, int idx, const void *p)
{
	lua_pushlightuserdata(L, (void *)(uintptr_t)p);
	lua_insert(L, -2);
	lua_rawset(L, idx < 0 && idx > LUA_REGISTRYINDEX ? idx - 1 : idx);
}
#else
#define lct_rawgetp(L, idx, p)	((void)lua_rawgetp(L, idx, p))
#define lct_rawsetp(L, idx, p)	lua_rawsetp(L, idx, p)
#endif

#if LUA_VERSION_NUM < 504
#define lct_newuserdata(L, sz)	lua_newuserdata(L, sz)
#else
#define lct_newuserdata(L, sz)	lua_newuserdatauv(L, sz, 0)
#endif

/*
 * Counters are 64-bit; lua_Integer is only guaranteed that wide from 5.3
 * on.  Older versions get a double (exact up to 2^53).
 */
#if LUA_VERSION_NUM >= 503
#define lct_pushu64(L, v)	lua_pushinteger(L, (lua_Integer)(v))
#else
#define lct_pushu64(L, v)	lua_pushnumber(L, (lua_Number)(v))
#endif

#endif
