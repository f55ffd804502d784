-- bench/loop.lua VARIANT: one timed pass over require("conntrack").dump().
--
-- VARIANT is one of
--   none      load the module only (start-up cost, no dump)
--   count     count the entries
--   src       read e.orig.src of each entry
--   totable   e:totable() of each entry
--   tostring  tostring(e) of each entry
--   cidr      count, with a filter of two prefixes the kernel cannot apply
-- and, with a second argument "one", the dump read by the loop's own thread
-- (how.readahead = false).
--
-- Prints "<entries> <elapsed_ns>", the time of the dump loop alone (from
-- the ct.dump() call to the end of the loop), taken with bench/benchclock.so
-- (CLOCK_MONOTONIC); elapsed_ns is -1 when that module is not built.
-- bench/bench.lua runs this under bench/timeit for wall time and peak RSS.

local here = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = here .. "/?.lua;" .. package.path
require("benchlib").use_tree(here)

local okclock, clock = pcall(require, "benchclock")
local now = okclock and clock.now or function() return 0 end

local ct = require("conntrack")
if arg[2] == "one" then
	local dump = ct.dump
	ct.dump = function(f) return dump(f, { readahead = false }) end
end

local loops = {}

function loops.none()
	return 0
end

function loops.count()
	local n = 0
	for _ in ct.dump() do
		n = n + 1
	end
	return n
end

function loops.src()
	local n = 0
	for e in ct.dump() do
		if e.orig.src then
			n = n + 1
		end
	end
	return n
end

function loops.totable()
	local n = 0
	for e in ct.dump() do
		if e:totable() then
			n = n + 1
		end
	end
	return n
end

function loops.cidr()
	local n = 0
	for _ in ct.dump(ct.filter.dst("203.0.113.0/26", "203.0.113.64/28")) do
		n = n + 1
	end
	return n
end

function loops.tostring()
	local n = 0
	for e in ct.dump() do
		if tostring(e) then
			n = n + 1
		end
	end
	return n
end

local variant = arg[1]
local loop = loops[variant or ""]
if not loop then
	io.stderr:write("usage: loop.lua none|count|src|totable|tostring|cidr\n")
	os.exit(2)
end

local t0 = now()
local n = loop()
local t1 = now()
io.write(string.format("%d %d\n", n, okclock and t1 - t0 or -1))
