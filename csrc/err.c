/*
 * Errors and the argument vocabulary: how every unit raises, reports kernel
 * refusals and reads the arguments and option tables it is given.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "lct.h"

/* Sources of the module's own Lua files, as debug.getinfo names them. */
static const char lct_own_key = 'o';

int lct_f_own(lua_State *L)
{
	luaL_checkstring(L, 1);
	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_own_key);
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		lua_newtable(L);
		lua_pushvalue(L, -1);
		lct_rawsetp(L, LUA_REGISTRYINDEX, &lct_own_key);
	}
	lua_pushvalue(L, 1);
	lua_pushboolean(L, 1);
	lua_rawset(L, -3);
	return 0;
}

/* Pushes "short_src:line: " of the script's frame, or "". */
static void lct_where(lua_State *L)
{
	lua_Debug ar;
	int level, own;

	lct_rawgetp(L, LUA_REGISTRYINDEX, &lct_own_key);
	own = lua_gettop(L);
	for (level = 1; lua_getstack(L, level, &ar); level++) {
		int mine = 0;

		if (!lua_getinfo(L, "Sl", &ar))
			break;
		if (ar.currentline <= 0)
			continue;	/* C, or no line information */
		if (lua_istable(L, own)) {
			lua_pushstring(L, ar.source);
			lua_rawget(L, own);
			mine = lua_toboolean(L, -1);
			lua_pop(L, 1);
		}
		if (mine)
			continue;
		lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
		lua_remove(L, own);
		return;
	}
	lua_pop(L, 1);
	lua_pushliteral(L, "");
}

/*
 * Raises where + head + the formatted text.  Messages are formatted by the
 * C library: lua_pushfstring lacks %lld and %x.
 */
static int lct_raise(lua_State *L, const char *head, const char *tail,
		     const char *fmt, va_list ap)
{
	char buf[1024];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	lct_where(L);
	lua_pushfstring(L, "%s%s%s", head, buf, tail);
	lua_concat(L, 2);
	return lua_error(L);
}

int lct_error(lua_State *L, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	return lct_raise(L, "", "", fmt, ap);
}

int lct_argerror(lua_State *L, const char *fname, const char *arg,
		 const char *fmt, ...)
{
	va_list ap;
	char name[64];
	size_t n = strlen(arg);

	/* a field name comes from the caller's table: a long one is cut */
	if (n < 48) {
		memcpy(name, arg, n + 1);
	} else {
		memcpy(name, arg, 40);
		memcpy(name + 40, "...", 4);
	}
	va_start(ap, fmt);
	lua_pushfstring(L, "%s: bad argument '%s' (", fname, name);
	return lct_raise(L, lua_tostring(L, -1), ")", fmt, ap);
}

int lct_f_error(lua_State *L)
{
	return lct_error(L, "%s", luaL_checkstring(L, 1));
}

const char *lct_pushmsg(lua_State *L, const char *op, int err)
{
	if (err == EPERM || err == EACCES)
		return lua_pushfstring(L, "%s: %s (CAP_NET_ADMIN is required)", op,
				       strerror(err));
	/* ctnetlink never says ECHILD: the read-ahead's word for a fork (nl.c) */
	if (err == ECHILD)
		return lua_pushfstring(L, "%s: the dump was begun in the parent process: a child "
				       "of fork() cannot read it", op);
	return lua_pushfstring(L, "%s: %s", op, strerror(err));
}

int lct_pusherr(lua_State *L, const char *op, int err)
{
	lua_pushnil(L);
	lct_pushmsg(L, op, err);
	lua_pushinteger(L, err);
	return 3;
}

/*
 * Values in messages: strings quoted and cut to 40 bytes, non-printable
 * bytes escaped; other values by type (numbers as they are).
 */
const char *lct_shortval(lua_State *L, int idx)
{
	/* quotes, 40 bytes of 4 characters at most ("\xff"), the length note */
	enum { SHOWN = 40, NOTE = 40 };
	char buf[2 + SHOWN * 4 + NOTE + 1], *p = buf;
	const char *s;
	size_t n, i;

	switch (lua_type(L, idx)) {
	case LUA_TNUMBER:
		lua_pushvalue(L, idx);
		return lua_tostring(L, -1);	/* the copy becomes its text */
	case LUA_TSTRING:
		break;
	default:
		lua_pushstring(L, luaL_typename(L, idx));
		return lua_tostring(L, -1);
	}
	s = lua_tolstring(L, idx, &n);
	*p++ = '\'';
	for (i = 0; i < n && i < SHOWN; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'') {
			*p++ = (char)c;
		} else {
			snprintf(p, 5, "\\x%02x", c);
			p += 4;
		}
	}
	*p++ = '\'';
	if (n > SHOWN) {
		int k = snprintf(p, NOTE, "... (%lu bytes)", (unsigned long)n);

		p += k > 0 && k < NOTE ? k : 0;
	}
	*p = '\0';
	lua_pushstring(L, buf);
	return lua_tostring(L, -1);
}

void lct_check_table(lua_State *L, int idx, const char *fname, const char *arg)
{
	if (!lua_istable(L, idx))
		lct_argerror(L, fname, arg, "table expected, got %s", luaL_typename(L, idx));
}

/* Unknown option names are mistakes: raise rather than ignore them. */
void lct_check_names(lua_State *L, int t, const char *fname,
		     const char *const *names)
{
	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		int i, ok = 0;

		for (i = 0; k != NULL && names[i] != NULL && !ok; i++)
			ok = strcmp(k, names[i]) == 0;
		if (!ok) {
			const char *what = k ? lct_shortval(L, -2) : luaL_typename(L, -2);

			lct_error(L, "%s: bad argument %s (unknown option)", fname, what);
		}
		lua_pop(L, 1);
	}
}

int64_t lct_int_arg(lua_State *L, int idx, const char *fname, const char *arg,
		    int64_t lo, int64_t hi)
{
	lua_Number v;

#if LUA_VERSION_NUM >= 503
	/* An integer first: no other check needed (a string is no integer here). */
	if (lua_isinteger(L, idx)) {
		lua_Integer i = lua_tointeger(L, idx);

		if (i < lo || i > hi)
			lct_argerror(L, fname, arg, "integer %lld..%lld expected, got %lld",
				     (long long)lo, (long long)hi, (long long)i);
		return i;
	}
#endif
	if (lua_type(L, idx) != LUA_TNUMBER)
		lct_argerror(L, fname, arg, "integer %lld..%lld expected, got %s",
			     (long long)lo, (long long)hi, luaL_typename(L, idx));
	v = lua_tonumber(L, idx);
	if (!(v >= (lua_Number)lo && v <= (lua_Number)hi) || v != floor(v))
		lct_argerror(L, fname, arg, "integer %lld..%lld expected, got %s",
			     (long long)lo, (long long)hi, lct_shortval(L, idx));
	return (int64_t)v;
}

int lct_rawfield(lua_State *L, int t, const char *key)
{
	lua_pushstring(L, key);
	lua_rawget(L, t < 0 && t > LUA_REGISTRYINDEX ? t - 1 : t);
	return lua_type(L, -1);
}

int lct_int_field(lua_State *L, int t, const char *key, const char *fname,
		  int64_t lo, int64_t hi, int64_t *out)
{
	if (lct_rawfield(L, t, key) == LUA_TNIL) {
		lua_pop(L, 1);
		return 0;
	}
	*out = lct_int_arg(L, -1, fname, key, lo, hi);
	lua_pop(L, 1);
	return 1;
}

int lct_bool_field(lua_State *L, int t, const char *key, const char *fname)
{
	int v, type = lct_rawfield(L, t, key);

	if (type != LUA_TNIL && type != LUA_TBOOLEAN)
		lct_argerror(L, fname, key, "boolean expected, got %s", luaL_typename(L, -1));
	v = lua_toboolean(L, -1);
	lua_pop(L, 1);
	return v;
}
