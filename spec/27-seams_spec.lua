-- The bugs issue 7 found on the seams of the old core, each a spec that
-- failed on it (branch main before the rewrite) and passes now: fields a
-- function does not take raise, naming them; subscribe{types = 5} raises a
-- clear message (it printed garbage, and crashed Lua 5.1); a batch with one
-- bad item returns its counts and the item as a failure (it raised with
-- part of the batch committed); a script under a folder named conntrack/
-- keeps its own file:line in error messages (errors were attributed by
-- path substrings).  What could crash the interpreter runs in a child one.

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local E = ct.errno
local q = hosts.quote

H.assert_private()

-- Runs Lua source in a child interpreter (the one under test, with this
-- process's module paths) from path; returns its output and exit code.
local function child(path, src)
	local f = assert(io.open(path, "w"))
	f:write(src)
	f:close()
	local _, out, code = hosts.run(H.lua .. " " .. q(path))
	return out, code
end

describe("issue 7's seam bugs", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)

	local T = { src = "192.0.2.1", dst = "198.51.100.2", proto = "tcp", sport = 1, dport = 2 }
	local function with(extra)
		local t = {}
		for k, v in pairs(T) do t[k] = v end
		for k, v in pairs(extra) do t[k] = v end
		return t
	end

	it("get{..., timeout = 5, state = \"BOGUS\"} raises naming a field get does not take (it answered ENOENT)",
		function()
			assert(h:create(with{ timeout = 100, state = "ESTABLISHED" }))
			local ok, msg = pcall(h.get, h, with{ timeout = 5, state = "BOGUS" })
			assert.is_false(ok)
			local field = msg:match("get: bad argument '(%a+)' %(not a field of a tuple%)")
			assert.truthy(field == "timeout" or field == "state", msg)
			ok, msg = pcall(h.get, h, with{ timeout = 5 })
			assert.is_false(ok)
			assert.matches("get: bad argument 'timeout'", msg, 1, true)
			-- the flow is there: the tuple alone finds it
			assert.truthy(h:get(T))
		end)

	it("delete{..., secmark = 7} raises naming secmark and deletes nothing (it answered ENOENT)", function()
		assert(h:flush())
		assert(h:create(with{ timeout = 100, state = "ESTABLISHED" }))
		local ok, msg = pcall(h.delete, h, with{ secmark = 7 })
		assert.is_false(ok)
		assert.matches("delete: bad argument 'secmark'", msg, 1, true)
		assert.equals(1, h:count())
		assert.is_true(h:delete(T))
		assert.equals(E.ENOENT, select(3, h:delete(T)))
	end)

	it("subscribe{types = 5}, events{types = 5}: a clear message naming the function and argument (it printed"
		.. " a garbled one, and crashed Lua 5.1)", function()
		local path = os.tmpname()
		finally(function() os.remove(path) end)
		local out, code = child(path, [[
local ct = require "conntrack"
for _, f in ipairs{ "subscribe", "events" } do
	local ok, msg = pcall(ct[f], { types = 5 })
	print(f, ok, msg)
end
local h = assert(ct.open())
print("h:subscribe", pcall(h.subscribe, h, { types = 5 }))
]])
		assert.equals(0, code, out)
		local lines = H.lines(out)
		assert.equals(3, #lines, out)
		for i, f in ipairs{ "subscribe", "events", "subscribe" } do
			assert.matches("false\t[^\t]*" .. f .. ": bad argument 'types' %(array of \"new\", \"update\","
				.. " \"destroy\" expected, got number%)$", lines[i])
		end
	end)

	it("batch(\"create\", 1500 specs) with item 1200 bad: 1499 created, the bad item a failure, counts returned"
		.. " (it raised after 931 were committed)", function()
		assert(h:flush())
		local items = H.specs(1500)
		items[1200] = { src = "192.0.2.1", dst = "198.51.100.2", proto = "udp", sport = 70000, dport = 53, timeout = 60 }
		local ok, done, missing, failures = pcall(h.batch, h, "create", items)
		assert.is_true(ok, tostring(done))
		assert.equals(1499, done)
		assert.equals(0, missing)
		assert.equals(1, #failures)
		assert.equals(1200, failures[1].index)
		assert.equals(E.EINVAL, failures[1].errno)
		assert.matches("sport", failures[1].message, 1, true)
		assert.equals(1499, h:count())
		assert.same({ "1499" }, H.cli_ok(ns, "-C"))
		-- the items around the bad one went in
		assert.truthy(h:get(H.tuple(items[1199])))
		assert.truthy(h:get(H.tuple(items[1201])))
	end)

	it("a script in a folder named conntrack/ gets its own file:line in error messages from C and from Lua", function()
		local dir = os.tmpname()
		os.remove(dir)
		local path = dir .. "/conntrack/user.lua"
		finally(function() hosts.run("rm -rf " .. q(dir)) end)
		assert(hosts.run("mkdir -p " .. q(dir .. "/conntrack")))
		local out, code = child(path, [[
local ct = require "conntrack"
local h = assert(ct.open())
local ok, msg = pcall(function()
	local e = h:get{ src = "1.2.3", dst = "198.51.100.2", proto = "udp", sport = 1, dport = 2 }
	return e
end)
print(msg)
ok, msg = pcall(function()
	local f = ct.filter.src "300.1.1.1"
	return f
end)
print(msg)
ok, msg = pcall(function()
	local l = h:list{ bogus = 1 }
	return l
end)
print(msg)
]])
		assert.equals(0, code, out)
		local lines = H.lines(out)
		assert.equals(3, #lines, out)
		assert.equals(path .. ":4: get: bad argument 'src' (malformed address '1.2.3')", lines[1])
		assert.matches("^" .. path:gsub("%p", "%%%0") .. ":9: filter%.src: ", lines[2])
		assert.matches("^" .. path:gsub("%p", "%%%0") .. ":14: list: ", lines[3])
	end)
end)
