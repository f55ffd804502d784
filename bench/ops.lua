-- bench/ops.lua [N] [--runs=R]: single operations of lua-conntrack, one at a
-- time, against a C libmnl program making the same requests (issue 13).
-- Run it through `make bench-ops` (inside tools/netns-run: it flushes the
-- conntrack table).
--
-- N flows (default 10000, or env BENCH_SIZES) are created, read, changed
-- (mark) and deleted, one request at a time, each acknowledged:
--   C       bench/ctops N: libmnl, mnl_cb_run to each ack
--   module  bench/opsloop.lua N: ct.create, ct.get, ct.update, ct.delete,
--           each with a table made in the loop
--   premade bench/opsloop.lua N premade: the same with every table made
--           before the timing: the module's own part (shown, not judged)
-- Each runs in a process of its own, in R interleaved rounds (env
-- BENCH_RUNS or --runs, default 5) after a warm-up round, on an empty table
-- (checked with `conntrack -C` before and after).  Printed: the median time
-- per operation of each phase, the module's ratio to C (target: at most
-- 1.2x), the ratio of CPU time per operation in parentheses, and the ratio
-- of the premade variant.
--
-- Every program runs pinned to one CPU (env BENCH_CPU, default 0; "none"
-- pins nothing): this machine's CPUs differ in speed by up to a third, and
-- a program that landed on the slower one swung a ratio by 0.5 between
-- runs.  The programs are single-threaded and the kernel does their
-- requests inside their system calls, so pinning takes nothing from either.
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or arg[-1] or "lua5.4"

package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench/ops")
local q, slurp = L.q, L.slurp
local count = L.count
local function flush() B:flush() end

local sizes, runs = B:options(arg, "10000", 1)
B:need_netns("run me through `make bench-ops` (tools/netns-run): I flush the conntrack table")
B:need_tools(here, { "ctops", "timeit", "benchclock.so" })

local TARGET = 1.2
local OPS = { "create", "get", "update", "delete" }
local tmpout, tmperr = os.tmpname(), os.tmpname()

-- { ns = {create, get, update, delete}, cpu = {...} } per operation, or dies.
local function run(label, argv, n)
	flush()
	local r, why = L.timeit(here, argv, tmpout, tmperr)
	if not r then
		B:die(label .. ": " .. why)
	end
	local nums = {}
	for x in slurp(tmpout):gmatch("%d+") do
		nums[#nums + 1] = tonumber(x)
	end
	if nums[1] ~= n or #nums ~= 9 then
		B:die(label .. " printed " .. q(slurp(tmpout)))
	end
	if count() ~= 0 then
		B:die(label .. " left flows in the table")
	end
	local res = { ns = {}, cpu = {} }
	for k = 1, 4 do
		res.ns[k] = nums[2 * k] / n
		res.cpu[k] = nums[2 * k + 1] / n
	end
	return res
end

local CPU = os.getenv("BENCH_CPU") or "0"
if CPU ~= "none" and not os.execute("taskset -c " .. q(CPU) .. " true") then
	B:die("cannot pin to CPU " .. CPU .. " with taskset (BENCH_CPU=none pins nothing)")
end
local function pinned(argv)
	if CPU == "none" then return argv end
	return { "taskset", "-c", CPU, table.unpack(argv) }
end

local function bench(n)
	local variants = {
		{ key = "c", label = "C: bench/ctops (libmnl)", argv = pinned{ here .. "/ctops", tostring(n) } },
		{ key = "lua", label = "module: ct.create/get/update/delete",
		  argv = pinned{ luabin, here .. "/opsloop.lua", tostring(n) } },
		{ key = "pre", label = "module, tables made before",
		  argv = pinned{ luabin, here .. "/opsloop.lua", tostring(n), "premade" } },
	}
	local samples = {}
	for _, v in ipairs(variants) do
		samples[v.key] = { ns = { {}, {}, {}, {} }, cpu = { {}, {}, {}, {} } }
	end
	for round = 0, runs do
		for _, v in ipairs(variants) do
			local r = run(v.label, v.argv, n)
			if round > 0 then
				for k = 1, 4 do
					local s = samples[v.key]
					s.ns[k][#s.ns[k] + 1] = r.ns[k]
					s.cpu[k][#s.cpu[k] + 1] = r.cpu[k]
				end
			end
		end
	end
	print(string.format("\n### %d flows, one request at a time, median of %d runs%s\n", n, runs,
		CPU == "none" and "" or ", every program on CPU " .. CPU))
	print("| operation | C µs/op | module µs/op | (min-max) | module / C | cpu µs/op C, module | " ..
		"tables made before / C | target |")
	print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	local median = L.median
	for k, op in ipairs(OPS) do
		local c, m, p = samples.c, samples.lua, samples.pre
		local cns, mns = median(c.ns[k]), median(m.ns[k])
		local ccpu, mcpu = median(c.cpu[k]), median(m.cpu[k])
		local ratio = tonumber(string.format("%.2f", mns / cns))
		print(string.format("| %s | %.2f | %.2f | %.2f-%.2f | %.2f (cpu %.2f) | %.2f, %.2f | " ..
			"%.2f (cpu %.2f) | <= %.2fx: %s |",
			op, cns / 1e3, mns / 1e3, math.min(table.unpack(m.ns[k])) / 1e3,
			math.max(table.unpack(m.ns[k])) / 1e3, ratio, mcpu / ccpu, ccpu / 1e3, mcpu / 1e3,
			median(p.ns[k]) / cns, median(p.cpu[k]) / ccpu,
			TARGET, ratio <= TARGET and "met" or "MISSED"))
	end
end

for _, n in ipairs(sizes) do
	bench(n)
end
flush()
os.remove(tmpout)
os.remove(tmperr)
