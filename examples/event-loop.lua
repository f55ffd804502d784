#!/usr/bin/env lua5.4
--[[ event-loop.lua: conntrack events inside a cqueues event loop, next to
other work (here a status line every second).  The controller waits on the
subscription object itself: it has :pollfd(), :events() and :timeout(), so
cqueues.poll(sub) just works, and sub:read() never blocks the loop.

  tools/netns-run lua5.4 examples/event-loop.lua --duration 10
  lua5.4 examples/event-loop.lua --netns NAME --count 5 --types new

Options:
  --duration S   stop after S seconds (default 10)
  --count N      stop after N events
  --types LIST   new,update,destroy (default: all three)
  --netns NAME   listen in that namespace
  --every S      seconds between status lines on stderr (default 1; 0: none)

Needs lua-cqueues (Debian: apt-get install lua-cqueues).  The same with luv:
examples/event-loop-luv.lua.
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
local cqueues = require "cqueues"

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
			io.stderr:write("usage: event-loop.lua [--duration S] [--count N] [--types LIST] [--netns NAME] [--every S]\n")
			os.exit(2)
		end
		i = i + 2
	end
end

local sub = assert(ct.subscribe{ netns = o.netns, types = o.types })
io.stdout:setvbuf("line")
io.stderr:write(("# listening%s, for %s s\n"):format(o.netns and (" in " .. o.netns) or "", o.duration))

local cq = cqueues.new()
local n, stop = 0, false
local t0 = cqueues.monotime()

-- The events.
cq:wrap(function()
	while not stop do
		-- wakes when the subscription is readable, or every 0.25 s to
		-- notice `stop`
		if cqueues.poll(sub, 0.25) == sub then
			for _, ev in ipairs(sub:read()) do
				if ev.type == "overflow" then
					print(("# overflow %d: events were lost (resynchronise with ct.list())"):format(ev.overflows))
				else
					n = n + 1
					print(ev)
					if o.count and n >= o.count then
						stop = true
						break
					end
				end
			end
		end
	end
end)

-- Other work in the same loop.
cq:wrap(function()
	while not stop do
		cqueues.sleep(o.every > 0 and o.every or 0.25)
		if o.every > 0 and not stop then
			io.stderr:write(("# %.1f s: %d events\n"):format(cqueues.monotime() - t0, n))
		end
	end
end)

-- The bound.
cq:wrap(function()
	while not stop do
		cqueues.sleep(0.1)
		if cqueues.monotime() - t0 >= o.duration then stop = true end
	end
end)

while not cq:empty() do
	local ok, err = cq:step()
	if not ok then
		sub:close()
		error(err, 0)
	end
end
io.stderr:write(("# %d events in %.1f s, %d overflows\n"):format(n, cqueues.monotime() - t0, sub.overflows))
sub:close()
