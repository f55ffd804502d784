--- lua-conntrack: Linux connection tracking from Lua.
-- The C core (conntrack.core) talks ctnetlink; this file is the front door:
-- the module table, the default handle behind the module-level functions,
-- and the Lua layer (conntrack/handle.lua installs the handle's Lua methods).
local core = require "conntrack.core"

if debug and debug.getinfo then
	core.own(debug.getinfo(1, "S").source)
end

local M = {
	errno = core.errno,
	status_bits = core.status_bits,
	names = core.names,
	version = core.version,
	methods = core.methods,
}

--- ct.type(x): "handle", "closed handle", "entry", "tuple", "subscription",
-- "closed subscription", "dump", "matcher", "filter", or nil (as io.type).
function M.type(x)
	local t = core.type(x)
	if t == nil and getmetatable(x) == require("conntrack.filter").Filter then
		return "filter"
	end
	return t
end

--- ct.open{netns = "name" | "/proc/PID/ns/net", rcvbuf = bytes} -> handle | nil, msg, errno
M.open = core.open

--- ct.entry(spec): a synthetic entry, as the kernel would send it (for tests,
-- formatting and filters on data that did not come from a table).
M.entry = core.entry

-- The default handle lives in box[1], shared with the C form of the
-- module-level functions (core.on_default).
local box = {}
--- The handle behind the module-level functions, opened on first use.
function M.default()
	local h = box[1]
	if h == nil or core.type(h) ~= "handle" then
		local msg, errno
		h, msg, errno = core.open()
		if not h then
			return nil, msg, errno
		end
		box[1] = h
	end
	return h
end

-- The Lua layer: filters, NAT classification, output formats, and the
-- handle's Lua methods (conntrack/handle.lua).
M.filter = require "conntrack.filter"
M.nat = require "conntrack.nat"
M.format = require "conntrack.format"
local handle = require "conntrack.handle"
handle.install(core.methods.handle)

-- ct.dump(...) and friends run on the default handle.  A method written in
-- C gets a C closure that puts the handle in front of the arguments and
-- runs the method in the same call (a single get or create is a few
-- microseconds in all); a method of the Lua layer gets a Lua wrapper.  The
-- methods are taken as they are now, after handle.install.
local hmethods = core.methods.handle
for name, method in pairs(hmethods) do
	if name ~= "close" and name ~= "getfd" then
		M[name] = core.on_default(box, method, M.default) or function(...)
			local h = box[1]
			if h == nil or h.closed then
				local msg, errno
				h, msg, errno = M.default()
				if not h then
					return nil, msg, errno
				end
			end
			return method(h, ...)
		end
	end
end

--- ct.subscribe([opts]) and ct.events([opts]) subscribe in this process's
-- namespace unless opts.netns says otherwise (they need no handle).
function M.subscribe(opts)
	return handle.subscribe(nil, opts, "subscribe")
end

function M.events(opts)
	return handle.events(nil, opts)
end

return M
