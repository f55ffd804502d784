/*
 * Classes: one way to make a metatable, one way to check self, one way to
 * dispatch.  The metatable is kept in the registry under the class's key (a
 * pointer lookup, far cheaper than luaL_checkudata's by name) and under its
 * name.  __index is a closure over (methods, metatable, field names): a
 * key that names a field goes to the class's index function with the
 * field's number, any other key is looked up in the methods.  Methods and
 * metamethods carry the metatable as their first upvalue, so that a
 * method checks its self without the registry (lct_class_self).
 */
#include <string.h>

#include "lct.h"

/* __index of a class without fields. */
static int lct_class_methods(lua_State *L)
{
	lua_settop(L, 2);
	lua_rawget(L, lua_upvalueindex(1));
	return 1;
}

void lct_class_new(lua_State *L, const struct lct_class *c)
{
	const luaL_Reg *const *m;
	int i;

	luaL_newmetatable(L, c->name);
	lua_pushvalue(L, -1);
	lct_rawsetp(L, LUA_REGISTRYINDEX, c->key);
	if (c->meta != NULL) {
		lua_pushvalue(L, -1);
		lct_setfuncs(L, c->meta, 1);
	}
	lua_pushstring(L, c->name);
	lua_setfield(L, -2, "__name");
	lua_newtable(L);
	for (m = c->methods; m != NULL && *m != NULL; m++) {
		lua_pushvalue(L, -2);
		lct_setfuncs(L, *m, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "methods");		/* for the Lua layer to add to */
	lua_pushvalue(L, -2);			/* the metatable */
	lua_newtable(L);			/* field names -> numbers */
	for (i = 0; c->fields != NULL && c->fields[i] != NULL; i++) {
		lua_pushinteger(L, i);
		lua_setfield(L, -2, c->fields[i]);
	}
	lua_pushcclosure(L, c->index != NULL ? c->index : lct_class_methods, 3);
	lua_setfield(L, -2, "__index");
	lua_pop(L, 1);
}

int lct_class_field(lua_State *L, void **self)
{
	int id;

	lua_settop(L, 2);
	lua_pushvalue(L, 2);
	lua_rawget(L, lua_upvalueindex(3));
	if (lua_type(L, -1) != LUA_TNUMBER) {
		lua_pop(L, 1);
		lua_rawget(L, lua_upvalueindex(1));
		return -1;
	}
	id = (int)lua_tointeger(L, -1);
	lua_pop(L, 1);
	*self = lua_touserdata(L, 1);
	if (*self == NULL || !lua_getmetatable(L, 1) || !lua_rawequal(L, -1, lua_upvalueindex(2)))
		return luaL_argerror(L, 1, "conntrack object expected");
	lua_pop(L, 1);
	return id;
}

void lct_class_set(lua_State *L, const void *key)
{
	lct_rawgetp(L, LUA_REGISTRYINDEX, key);
	lua_setmetatable(L, -2);
}

void *lct_class_test(lua_State *L, int idx, const void *key)
{
	void *p = lua_touserdata(L, idx);
	int ok;

	if (p == NULL || !lua_getmetatable(L, idx))
		return NULL;
	lct_rawgetp(L, LUA_REGISTRYINDEX, key);
	ok = lua_rawequal(L, -1, -2);
	lua_pop(L, 2);
	return ok ? p : NULL;
}

void *lct_class_self(lua_State *L, const struct lct_class *c, const char *fname)
{
	void *p = lua_touserdata(L, 1);

	if (p != NULL && lua_getmetatable(L, 1)) {
		int ok = lua_rawequal(L, -1, lua_upvalueindex(1));

		lua_pop(L, 1);
		if (ok)
			return p;
	}
	return lct_class_check(L, 1, c, fname);
}

void *lct_class_check(lua_State *L, int idx, const struct lct_class *c,
		      const char *fname)
{
	void *p = lct_class_test(L, idx, c->key);

	if (p == NULL)
		lct_error(L, "%s: bad self (%s expected, got %s)", fname, c->what,
			  luaL_typename(L, idx));
	return p;
}
