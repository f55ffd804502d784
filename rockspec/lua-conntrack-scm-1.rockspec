rockspec_format = "3.0"
package = "lua-conntrack"
version = "scm-1"
source = {
	url = "git+https://example.invalid/lua-conntrack.git",
}
description = {
	summary = "Linux connection tracking (conntrack) from Lua",
	detailed = [[
List, get, create, update, delete, flush, count and per-CPU statistics of
netfilter's connection tracking table, and its event stream, as Lua values.
Built on libnetfilter_conntrack and libmnl.]],
	license = "MIT",
}
dependencies = {
	"lua >= 5.1, < 5.5",
}
external_dependencies = {
	NETFILTER_CONNTRACK = { header = "libnetfilter_conntrack/libnetfilter_conntrack.h" },
	MNL = { header = "libmnl/libmnl.h" },
}
-- The Makefile is the one description of the build: luarocks hands it the
-- interpreter's headers and its install directories.
build = {
	type = "make",
	build_variables = {
		CFLAGS = "$(CFLAGS)",
		LIBFLAG = "$(LIBFLAG)",
		LUA_INCDIR = "$(LUA_INCDIR)",
	},
	install_variables = {
		LUA_LIBDIR = "$(LIBDIR)",
		LUA_SHAREDIR = "$(LUADIR)",
	},
}
