/*
 * conntrack.core: the C half of the module.  Each unit adds its part.
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
	{"ENOTSUP", ENOTSUP}, {"EMSGSIZE", EMSGSIZE},
};

int luaopen_conntrack_core(lua_State *L);

int luaopen_conntrack_core(lua_State *L)
{
	size_t i;

	lua_newtable(L);
	lct_handle_open(L);
	lct_entry_open(L);
	lct_dump_open(L);
	lct_batch_open(L);
	lct_events_open(L);

	lua_newtable(L);
	for (i = 0; i < sizeof(lct_errnos) / sizeof(lct_errnos[0]); i++) {
		lua_pushinteger(L, lct_errnos[i].value);
		lua_setfield(L, -2, lct_errnos[i].name);
	}
	lua_setfield(L, -2, "errno");

	lua_newtable(L);
	for (i = 0; lct_status_names[i] != NULL; i++) {
		lua_pushinteger(L, 1 << i);
		lua_setfield(L, -2, lct_status_names[i]);
	}
	lua_setfield(L, -2, "status_bits");

	lua_pushliteral(L, "0.1.0");
	lua_setfield(L, -2, "version");
	return 1;
}
