-- probe.lua: one real call through an installed lua-conntrack, for the
-- packaging checks (tools/check-*), on any Lua from 5.1 on.  Run it inside
-- tools/netns-run with package paths that reach only the installation under
-- test (and the system's modules, for dkjson).  Prints where require found
-- the module, creates an entry, counts the table and reads the entry back as
-- text and as JSON, one "key value" line each; exits non-zero on a failure.

-- Never in the host's namespace: tools/netns-run names the one it made.
if not os.getenv("LCT_NETNS") then
	io.stderr:write("probe.lua: run it inside tools/netns-run, not in the host's namespace\n")
	os.exit(2)
end

-- The file require takes NAME from (package.searchpath is 5.2+).
local function where(name, path)
	local file = name:gsub("%.", "/")
	for template in path:gmatch("[^;]+") do
		local f = template:gsub("%?", file)
		local h = io.open(f)
		if h then
			h:close()
			return f
		end
	end
	return "(not found)"
end

local ct = require "conntrack"
print("lua " .. _VERSION .. (rawget(_G, "jit") and (" " .. jit.version) or ""))
print("conntrack " .. where("conntrack", package.path))
print("conntrack.core " .. where("conntrack.core", package.cpath))

local t = { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 40000, dport = 80 }
assert(ct.create{ src = t.src, dst = t.dst, proto = t.proto, sport = t.sport, dport = t.dport,
	timeout = 120, state = "ESTABLISHED" })
print("count " .. ct.count())
local e = assert(ct.get(t))
print("entry " .. tostring(e))
print("json " .. ct.format.json(e))
assert(ct.delete(t))
print("count " .. ct.count())
