rockspec_format = "3.0"
package = "lua-conntrack"
version = "0.2.0-1"
source = {
	url = "https://github.com/lua-conntrack/lua-conntrack/releases/download/v0.2.0/lua-conntrack-0.2.0.tar.gz",
	dir = "lua-conntrack-0.2.0",
}
description = {
	summary = "Linux connection tracking (conntrack) from Lua",
	detailed = [[
List, get, create, update, delete, flush, count and per-CPU statistics of
netfilter's connection tracking table, and its event stream, as Lua values.
Built on libnetfilter_conntrack and libmnl.]],
	homepage = "https://github.com/lua-conntrack/lua-conntrack",
	license = "MIT", -- see LICENSE
	labels = { "linux", "netfilter", "conntrack" },
}
supported_platforms = { "linux" }
dependencies = {
	"lua >= 5.1, < 5.5",
	"dkjson >= 2.5", -- conntrack.format.json
}
external_dependencies = {
	NETFILTER_CONNTRACK = {
		header = "libnetfilter_conntrack/libnetfilter_conntrack.h",
		library = "netfilter_conntrack",
	},
	MNL = {
		header = "libmnl/libmnl.h",
		library = "mnl",
	},
}
-- The Makefile is the one description of the build.  luarocks hands it the
-- same variables for the build and the install pass (so the install finds
-- the module built, for this Lua), its own compiler flags, the interpreter's
-- headers, the libraries it found, and the rock's directories; the Makefile
-- installs the lua-conntrack command into BINDIR when the source has it.
build = {
	type = "make",
	variables = {
		CC = "$(CC)",
		CFLAGS = "$(CFLAGS)",
		LIBFLAG = "$(LIBFLAG)",
		LUA = "$(LUA)",
		LUA_INCDIR = "$(LUA_INCDIR)",
		NETFILTER_CONNTRACK_INCDIR = "$(NETFILTER_CONNTRACK_INCDIR)",
		NETFILTER_CONNTRACK_LIBDIR = "$(NETFILTER_CONNTRACK_LIBDIR)",
		MNL_INCDIR = "$(MNL_INCDIR)",
		MNL_LIBDIR = "$(MNL_LIBDIR)",
		LUA_LIBDIR = "$(LIBDIR)",
		LUA_SHAREDIR = "$(LUADIR)",
		BINDIR = "$(BINDIR)",
	},
}
