#!/usr/bin/env lua5.4
--[[ events-logger.lua: one line per conntrack event, as `conntrack -E` prints
it, with overflow handling: when the kernel drops events (the socket buffer
filled), say so and resynchronise the set of live flows from a dump.

  tools/netns-run lua5.4 examples/events-logger.lua --count 10
  lua5.4 examples/events-logger.lua --netns NAME --types new,destroy --proto tcp

Options:
  --count N        stop after N events (overflow notices not counted)
  --timeout S      stop when nothing arrives for S seconds
  --types LIST     new,update,destroy (default: all three)
  --proto LIST     kernel filter: only these protocols, e.g. tcp,udp
  --src CIDR       kernel filter: only flows from there (repeatable)
  --netns NAME     listen in that namespace (a name under /run/netns or a path)
  --rcvbuf BYTES   socket buffer (default: the module's 32 MiB)
  --id             add the flow id to each line (like -o id)

Event lines go to stdout.  Lines starting with "#" are the logger's own: the
"listening" line on stderr once subscribed, overflow and resync notices on
stdout (in order with the events), a summary on stderr at the end.

What an overflow looks like (a 4 KiB buffer and a burst of 20 000 creations):

      [NEW] tcp      6 3600 ESTABLISHED src=192.0.2.0 dst=203.0.113.0 sport=1024 dport=80 ...
      ... (the 5 more events the 8 KiB buffer held)
  # overflow 1: the kernel dropped events; resynchronising from a dump
  # resync: 3320 flows in the table (6 known from events, 3314 learnt from the dump, 0 gone)
      [NEW] tcp      6 3600 ESTABLISHED src=198.51.100.70 dst=203.0.113.3 sport=1024 ...
  # overflow 2: the kernel dropped events; resynchronising from a dump
  ...

The module delivers the events the kernel had queued before the loss first,
then the overflow event (it empties the socket as soon as the kernel reports
the overflow, so that changes made during the resync are kept): on the
overflow event the logger only has to dump.
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

local function usage(msg)
	local out = msg and io.stderr or io.stdout
	if msg then out:write("events-logger: ", msg, "\n") end
	out:write("usage: events-logger.lua [--count N] [--timeout S] [--types LIST] [--proto LIST]\n",
		"                         [--src CIDR]... [--netns NAME] [--rcvbuf BYTES] [--id]\n")
	os.exit(msg and 2 or 0)
end

local function list(s)
	local t = {}
	for w in s:gmatch("[^,%s]+") do t[#t + 1] = w end
	return t
end

-- Options -------------------------------------------------------------------

local o = { src = {} }
do
	local i = 1
	local function val(name)
		i = i + 1
		return arg[i] or usage(name .. " needs a value")
	end
	local function num(name)
		local v = tonumber(val(name))
		if not v or v < 0 then usage(name .. " needs a number >= 0") end
		return v
	end
	while arg[i] do
		local a = arg[i]
		if a == "--count" then o.count = num(a)
		elseif a == "--timeout" then o.timeout = num(a)
		elseif a == "--types" then o.types = list(val(a))
		elseif a == "--proto" then o.proto = list(val(a))
		elseif a == "--src" then o.src[#o.src + 1] = val(a)
		elseif a == "--netns" then o.netns = val(a)
		elseif a == "--rcvbuf" then o.rcvbuf = num(a)
		elseif a == "--id" then o.id = true
		elseif a == "-h" or a == "--help" then usage()
		else usage("unknown option " .. a)
		end
		i = i + 1
	end
end

-- One handle for the dumps, in the namespace the events come from.
local h, msg = ct.open{ netns = o.netns }
if not h then
	io.stderr:write("events-logger: ", msg, "\n")
	os.exit(1)
end

local kf
if o.proto or #o.src > 0 then
	kf = { proto = o.proto, src = #o.src > 0 and o.src or nil }
end

-- Flows known alive: id -> true.  Events keep it current; a dump rebuilds it
-- after an overflow, since what was dropped is gone from the stream for good.
local live, nlive = {}, 0

local function forget_all()
	live, nlive = {}, 0
end

local function note(ev)
	local id = ev.id
	if not id then return end
	if ev.type == "destroy" then
		if live[id] then
			live[id] = nil
			nlive = nlive - 1
		end
	elseif not live[id] then
		live[id] = true
		nlive = nlive + 1
	end
end

local function resync()
	local before = live
	local known, learnt = 0, 0
	forget_all()
	for e in h:dump() do
		local id = e.id
		live[id] = true
		nlive = nlive + 1
		if before[id] then
			known = known + 1
			before[id] = nil
		else
			learnt = learnt + 1
		end
	end
	local gone = 0
	for _ in pairs(before) do gone = gone + 1 end
	print(("# resync: %d flows in the table (%d known from events, %d learnt from the dump, %d gone)")
		:format(nlive, known, learnt, gone))
end

-- The loop ----------------------------------------------------------------

io.stdout:setvbuf("line")
local f, sub, ctl, closing = h:events{ types = o.types, timeout = o.timeout, rcvbuf = o.rcvbuf,
	kernel_filter = kf }
io.stderr:write(("# listening%s (socket buffer %d bytes%s)\n"):format(
	o.netns and (" in " .. o.netns) or "", sub.rcvbuf, sub.kernel_filtered and ", kernel filter" or ""))

local n = 0

-- Prints one event; false once --count is reached.
local function show(ev)
	note(ev)
	print(o.id and ev:format("id") or tostring(ev))
	n = n + 1
	return not (o.count and n >= o.count)
end

for ev in f, sub, ctl, closing do
	if ev.type == "overflow" then
		print(("# overflow %d: the kernel dropped events; resynchronising from a dump"):format(ev.overflows))
		resync()
	elseif not show(ev) then
		break
	end
end
io.stderr:write(("# %d events, %d overflows, %d flows alive\n"):format(n, sub.overflows, nlive))
h:close()
