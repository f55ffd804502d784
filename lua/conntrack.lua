--- lua-conntrack: Linux connection tracking from Lua.
-- The C core (conntrack.core) talks ctnetlink; this file is the front door.
local core = require "conntrack.core"

local M = {
	errno = core.errno,
	status_bits = core.status_bits,
	version = core.version,
}

local handle_methods = core.handle_methods
M.handle_methods = handle_methods
M.entry_methods = core.entry_methods

--- Opens a handle: ct.open{netns = "name" | "/proc/PID/ns/net", rcvbuf = bytes}.
function M.open(opts)
	return core.open(opts)
end

local default
--- The handle behind the module-level functions, opened on first use.
function M.default()
	if default == nil or tostring(default):find("closed", 1, true) then
		local h, msg, errno = core.open()
		if not h then
			return nil, msg, errno
		end
		default = h
	end
	return default
end

-- ct.dump(...) and friends run on the default handle.
local function on_default(name)
	return function(...)
		local h, msg, errno = M.default()
		if not h then
			return nil, msg, errno
		end
		return h[name](h, ...)
	end
end

-- The Lua layer: filters, NAT classification, output formats, and the
-- filtered dump/list/flush and bulk methods (lua/conntrack/bulk.lua).
M.filter = require "conntrack.filter"
M.nat = require "conntrack.nat"
M.format = require "conntrack.format"
require("conntrack.bulk").install(handle_methods)

for _, name in ipairs { "dump", "list", "get", "create", "add", "update", "delete",
	"flush", "count", "max", "stats", "batch", "update_where", "delete_where", "load" } do
	M[name] = on_default(name)
end

-- The event stream (ct.events, ct.subscribe): lua/conntrack/events.lua.
require("conntrack.events").install(M, core)

return M
