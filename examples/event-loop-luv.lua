#!/usr/bin/env lua5.4
--[[ event-loop-luv.lua: conntrack events in a libuv loop (luv): a poll handle
on sub:getfd() reads what is there with sub:read(), which never blocks; a timer
prints a status line; another timer ends the loop.

  tools/netns-run lua5.4 examples/event-loop-luv.lua --duration 10
  lua5.4 examples/event-loop-luv.lua --netns NAME --count 5 --types new

Options as examples/event-loop.lua: --duration S (default 10), --count N,
--types LIST, --netns NAME, --every S (default 1; 0: no status lines).
Needs lua-luv (Debian: apt-get install lua-luv).
]]

-- Run from a checkout (after `make`): this tree's module, unless LUA_PATH /
-- LUA_CPATH already say where to look (make check, check-asan).
local here = arg[0]:match("^(.*)/[^/]*$") or "."
local function tree(field, env, p)
	package[field] = os.getenv(env) and (package[field] .. ";" .. p) or (p .. ";" .. package[field])
end
tree("path", "LUA_PATH", here .. "/../lua/?.lua")
tree("cpath", "LUA_CPATH", here .. "/../build/" .. (jit and "jit" or _VERSION:match("%d+%.%d+")) .. "/?.so")

local ct = require "conntrack"
local uv = require "luv"

local o = { duration = 10, every = 1 }
do
	local i = 1
	while arg[i] do
		local a, v = arg[i], arg[i + 1]
		if a == "--duration" or a == "--count" or a == "--every" then
			o[a:sub(3)] = tonumber(v) or error(a .. " needs a number", 0)
		elseif a == "--types" then
			o.types = {}
			for w in (v or ""):gmatch("[^,]+") do o.types[#o.types + 1] = w end
		elseif a == "--netns" then
			o.netns = v
		else
			io.stderr:write("usage: event-loop-luv.lua [--duration S] [--count N] [--types LIST] [--netns NAME] [--every S]\n")
			os.exit(2)
		end
		i = i + 2
	end
end

local sub = assert(ct.subscribe{ netns = o.netns, types = o.types })
io.stdout:setvbuf("line")
io.stderr:write(("# listening%s, for %s s\n"):format(o.netns and (" in " .. o.netns) or "", o.duration))

local n = 0
local t0 = uv.hrtime()
local poll = uv.new_poll(sub:getfd())
local status = uv.new_timer()
local bound = uv.new_timer()

local function stop()
	poll:stop()
	status:stop()
	bound:stop()
end

poll:start("r", function(err)
	assert(not err, err)
	for _, ev in ipairs(sub:read()) do
		if ev.type == "overflow" then
			print(("# overflow %d: events were lost (resynchronise with ct.list())"):format(ev.overflows))
		else
			n = n + 1
			print(ev)
			if o.count and n >= o.count then
				stop()
				return
			end
		end
	end
end)
-- Timers count from the loop's cached time: make it now.
uv.update_time()
if o.every > 0 then
	local ms = math.floor(o.every * 1000)
	status:start(ms, ms, function()
		io.stderr:write(("# %.1f s: %d events\n"):format((uv.hrtime() - t0) / 1e9, n))
	end)
end
bound:start(math.floor(o.duration * 1000), 0, stop)

uv.run()
-- close the handles before the subscription: the poll handle watches its fd
poll:close()
status:close()
bound:close()
uv.run("nowait")
io.stderr:write(("# %d events in %.1f s, %d overflows\n"):format(n, (uv.hrtime() - t0) / 1e9, sub.overflows))
sub:close()
