/*
 * conntrack.core: the C half of the module.  The units below offer their
 * functions and method arrays; this one assembles the classes (a class's
 * methods may come from several units) and the module table.
 */
#include <errno.h>

#include "lct.h"

static const struct {
	const char *name;
	int value;
} lct_errnos[] = {
	{"EPERM", EPERM}, {"ENOENT", ENOENT}, {"ESRCH", ESRCH},
	{"EINTR", EINTR}, {"EIO", EIO}, {"EBADF", EBADF},
	{"EAGAIN", EAGAIN}, {"EWOULDBLOCK", EWOULDBLOCK},
	{"ENOMEM", ENOMEM}, {"EACCES", EACCES}, {"EBUSY", EBUSY},
	{"EEXIST", EEXIST}, {"ENODEV", ENODEV}, {"EINVAL", EINVAL},
	{"EMFILE", EMFILE}, {"ENOSPC", ENOSPC}, {"ERANGE", ERANGE},
	{"ENOBUFS", ENOBUFS}, {"EOPNOTSUPP", EOPNOTSUPP},
	{"EAFNOSUPPORT", EAFNOSUPPORT}, {"EPROTONOSUPPORT", EPROTONOSUPPORT},
	{"ETIMEDOUT", ETIMEDOUT}, {"EBADMSG", EBADMSG},
	{"ENOTSUP", ENOTSUP}, {"EMSGSIZE", EMSGSIZE}, {"ETIME", ETIME},
};

/* Creates the class with its methods from several arrays; method table in module.methods[field]. */
static void lct_open_class(lua_State *L, const struct lct_class *base,
			   const luaL_Reg *const *methods, const char *field)
{
	struct lct_class c = *base;

	if (methods != NULL)
		c.methods = methods;
	lct_class_new(L, &c);
	luaL_getmetatable(L, c.name);
	lua_getfield(L, -1, "methods");
	lua_setfield(L, -3, field);
	lua_pop(L, 1);
}

static const luaL_Reg *const lct_handle_arrays[] = {
	lct_handle_methods, lct_dump_handle_methods, lct_batch_handle_methods,
	lct_expect_handle_methods, NULL
};

static const luaL_Reg *const lct_matcher_arrays[] = {
	lct_matcher_methods, lct_matcher_entry_methods, NULL
};

/* core.type(x): what x is, in the manner of io.type; nil for anything else. */
static int lct_f_type(lua_State *L)
{
	static const struct {
		const struct lct_class *c;
		const char *name;
	} classes[] = {
		{&lct_entry_class, "entry"}, {&lct_tuple_class, "tuple"},
		{&lct_handle_class, "handle"}, {&lct_sub_class, "subscription"},
		{&lct_dump_class, "dump"}, {&lct_matcher_class, "matcher"},
		{&lct_expect_class, "expectation"},
	};
	size_t i;

	luaL_checkany(L, 1);
	for (i = 0; i < sizeof(classes) / sizeof(classes[0]); i++) {
		if (lct_class_test(L, 1, classes[i].c->key) == NULL)
			continue;
		lua_pushstring(L, classes[i].name);
		lua_getfield(L, 1, "closed");
		if ((classes[i].c == &lct_handle_class || classes[i].c == &lct_sub_class ||
		     classes[i].c == &lct_dump_class) && lua_toboolean(L, -1)) {
			lua_pop(L, 1);
			lua_pushfstring(L, "closed %s", classes[i].name);
			lua_remove(L, -2);
			return 1;
		}
		lua_pop(L, 1);
		return 1;
	}
	lua_pushnil(L);
	return 1;
}

static const luaL_Reg lct_core_funcs[] = {
	{"open", lct_f_open},
	{"on_default", lct_f_on_default},
	{"subscribe", lct_f_subscribe},
	{"events_iter", lct_f_events_iter},
	{"purge", lct_f_purge},
	{"batch", lct_f_batch},
	{"load_text", lct_f_load_text},
	{"type", lct_f_type},
	{"own", lct_f_own},
	{"error", lct_f_error},
	{"threads", lct_f_threads},
	{NULL, NULL}
};

LCT_EXPORT int luaopen_conntrack_core(lua_State *L);

int luaopen_conntrack_core(lua_State *L)
{
	size_t i;

	lua_newtable(L);
	lct_setfuncs(L, lct_core_funcs, 0);
	lct_setfuncs(L, lct_dump_funcs, 0);
	lct_names_open(L);
	lct_match_open(L);
	lct_save_open(L);
	lct_events_open(L);

	lua_newtable(L);	/* module.methods: the method tables, by class */
	lct_open_class(L, &lct_handle_class, lct_handle_arrays, "handle");
	lct_open_class(L, &lct_dump_class, NULL, "dump");
	lct_open_class(L, &lct_sub_class, NULL, "subscription");
	lct_open_class(L, &lct_matcher_class, lct_matcher_arrays, "matcher");
	lct_open_class(L, &lct_expect_class, NULL, "expectation");
	lua_setfield(L, -2, "methods");
	lct_entry_open(L);
	lua_getfield(L, -1, "methods");
	luaL_getmetatable(L, lct_entry_class.name);
	lua_getfield(L, -1, "methods");
	lua_setfield(L, -3, "entry");
	lua_pop(L, 1);
	luaL_getmetatable(L, lct_tuple_class.name);
	lua_getfield(L, -1, "methods");
	lua_setfield(L, -3, "tuple");
	lua_pop(L, 2);

	lua_newtable(L);
	for (i = 0; i < sizeof(lct_errnos) / sizeof(lct_errnos[0]); i++) {
		lua_pushinteger(L, lct_errnos[i].value);
		lua_setfield(L, -2, lct_errnos[i].name);
	}
	lua_setfield(L, -2, "errno");

	lua_pushliteral(L, "0.2.0");
	lua_setfield(L, -2, "version");
	return 1;
}
