-- bench/bench.lua [SIZE...] [--runs=R]: dump benchmark of lua-conntrack.
--
-- Run it through `make bench` (optionally BENCH_ARGS="10000 100000"), which
-- builds bench/ and runs this inside tools/netns-run, a private network
-- namespace with its own conntrack table.  It refuses to run elsewhere, as
-- it flushes the table.
--
-- For each table size N (default 10000 100000 250000; else the arguments or
-- env BENCH_SIZES, e.g. "10000,100000"): flush, fill with bench/ctfill,
-- check `conntrack -C`, then time, in interleaved rounds (R = env
-- BENCH_RUNS or --runs, default 5), each variant in a process of its own
-- under bench/timeit, and print the medians as a markdown table:
--   floor  bench/ctdump: libmnl dump that only counts messages
--   cli    conntrack -L > /dev/null
--   typ    bench/ctparse: the typical C user (nfct_nlmsg_parse, inet_ntop)
--   (a)-(e) bench/loop.lua count|src|totable|tostring|cidr
--   (a), (d) again with how.readahead = false (the dump read by the loop's
--            own thread), beside the others for what reading ahead buys
-- "dump ms" is the dump alone as timed inside the process (CLOCK_MONOTONIC);
-- for the cli it is the process time less that of `conntrack --version`.
-- "cpu ms" is the process's user and system time, less that of the start-up
-- (`conntrack --version` for the cli, loop.lua without a dump for the Lua
-- rows): other programs of a shared machine delay a process without
-- charging it, so it varies less than the wall time.  "process ms" is the
-- whole process, fork to exit; peak RSS is its ru_maxrss.  Targets (issue
-- 13) are ratios of median dump ms to a reference row, judged as printed
-- (two decimals); the ratio of cpu ms follows in parentheses.
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or arg[-1] or "lua5.4"

package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench")
local q, sh, capture = L.q, L.sh, L.capture
local function die(msg) B:die(msg) end

-- Options ---------------------------------------------------------------

local sizes, runs = B:options(arg, "10000 100000 250000", 0)
B:need_netns("run me through `make bench` (tools/netns-run): I flush the conntrack table")
B:need_tools(here, { "ctdump", "ctfill", "timeit" })
if not sh("command -v conntrack >/dev/null 2>&1") then
	die("conntrack (conntrack-tools) not found")
end

-- Is the module there yet?  Ask a child, exactly as the loops will run.
local modok, moderr
do
	local out = capture(q(luabin) .. " " .. q(here .. "/loop.lua") .. " none 2>&1")
	modok = out:match("^%d+ %-?%d+\n$") ~= nil
	moderr = not modok and (out:match("[^\n]*") or "?") or nil
end

-- Running one variant ---------------------------------------------------

local tmpout, tmperr = os.tmpname(), os.tmpname()

local variants = {
	{ key = "floor", label = "floor: bench/ctdump", argv = { here .. "/ctdump" }, self = true },
	{ key = "cli", label = "cli: conntrack -L > /dev/null", argv = { "conntrack", "-L" },
	  null = true, base = "clibase" },
	{ key = "typ", label = "typical C: bench/ctparse (nfct_nlmsg_parse, inet_ntop)", argv = { here .. "/ctparse" },
	  self = true },
	{ key = "a", label = "(a) count", lua = "count", vs = "floor", target = 1.05 },
	{ key = "b", label = "(b) e.orig.src", lua = "src", vs = "typ", target = 0.80 },
	{ key = "c", label = "(c) e:totable()", lua = "totable", vs = "cli", target = 0.70 },
	{ key = "d", label = "(d) tostring(e)", lua = "tostring", vs = "cli", target = 0.50 },
	{ key = "e", label = "(e) count, filter F.dst(\"203.0.113.0/26\", \"203.0.113.64/28\")",
	  lua = "cidr", vs = "a", target = 1.10, filtered = true },
	{ key = "a1", label = "(a) count, readahead = false", lua = "count", one = true, vs = "floor" },
	{ key = "d1", label = "(d) tostring(e), readahead = false", lua = "tostring", one = true, vs = "cli" },
	{ key = "luabase", label = "lua start-up (require, no dump)", lua = "none", aux = true },
	{ key = "clibase", label = "conntrack --version", argv = { "conntrack", "--version" },
	  null = true, aux = true },
}
for _, v in ipairs(variants) do
	if v.lua then
		v.argv = { luabin, here .. "/loop.lua", v.lua, v.one and "one" or nil }
		v.self = true
		v.base = v.base or (not v.aux and "luabase" or nil)
	end
end

local slurp = L.slurp

-- Returns { wall=ns, rss=KiB, cpu=ns, n=entries, ns=dump ns } or nil, why.
local function runone(v)
	local r, why = L.timeit(here, v.argv, v.null and "/dev/null" or tmpout, tmperr)
	if not r then
		return nil, why
	end
	if v.self then
		local out = slurp(tmpout)
		local n, ns = out:match("^(%d+) (%-?%d+)")
		if not n then
			return nil, "printed " .. q(out)
		end
		r.n, r.ns = tonumber(n), tonumber(ns)
		if r.ns < 0 then
			r.ns = nil
		end
	end
	return r
end

local median = L.median

local function ms(ns)
	return ns and string.format("%.1f", ns / 1e6) or "n/a"
end

-- One table size --------------------------------------------------------

local function count()
	local out = capture("conntrack -C 2>/dev/null")
	return tonumber(out:match("%d+"))
end

local all = {}

local function bench(N)
	sh("conntrack -F >/dev/null 2>&1")
	if count() ~= 0 then
		die("table not empty after conntrack -F")
	end
	local fill = capture(q(here .. "/ctfill") .. " " .. N .. " 2>&1")
	local have = count()
	if have ~= N then
		die(string.format("wanted %d entries, conntrack -C says %s; ctfill said: %s",
			N, tostring(have), fill))
	end

	local active = {}
	for _, v in ipairs(variants) do
		if not v.lua or modok then
			active[#active + 1] = v
		end
	end

	local samples = {}
	for _, v in ipairs(active) do
		samples[v.key] = { wall = {}, rss = {}, ns = {}, n = {}, cpu = {} }
	end
	-- Warm-up (caches, page tables, slab), then interleaved rounds so that
	-- drift spreads over all variants alike.
	for round = 0, runs do
		for _, v in ipairs(active) do
			local s = samples[v.key]
			if not s.err and (round > 0 or v.key == "floor") then
				local r, why = runone(v)
				if not r then
					s.err = why
					if not v.lua then
						die(v.label .. ": " .. why)
					end
				elseif round > 0 then
					s.wall[#s.wall + 1] = r.wall
					s.rss[#s.rss + 1] = r.rss
					s.ns[#s.ns + 1] = r.ns
					s.n[#s.n + 1] = r.n
					s.cpu[#s.cpu + 1] = r.cpu
				end
			end
		end
	end

	local res = {}
	for _, v in ipairs(active) do
		local s = samples[v.key]
		local bad
		if s.err then
			res[v.key] = { err = s.err }
			goto continue
		end
		for _, n in ipairs(s.n) do
			if v.lua ~= "none" and not v.filtered and n ~= N then
				bad = n
			end
		end
		res[v.key] = { wall = median(s.wall), rss = math.max(table.unpack(s.rss)),
			ns = not v.aux and median(s.ns) or nil, badcount = bad, cpu = median(s.cpu),
			lo = not v.aux and #s.ns > 0 and math.min(table.unpack(s.ns)) or nil,
			hi = not v.aux and #s.ns > 0 and math.max(table.unpack(s.ns)) or nil }
		::continue::
	end
	if res.cli and res.clibase then
		res.cli.ns = res.cli.wall - res.clibase.wall
		res.cli.approx = true
	end
	-- CPU time of the work: less the start-up's.
	for _, v in ipairs(active) do
		local r, b = res[v.key], v.base and res[v.base]
		if r.cpu and not v.aux then
			r.work_cpu = r.cpu - (b and b.cpu or 0)
		end
	end
	all[N] = res

	local floor = res.floor.ns
	print(string.format("\n### %d entries (conntrack -C: %d), median of %d runs\n", N, have, runs))
	print("| variant | dump ms | (min-max) | ratio to floor | cpu ms | process ms | peak RSS KiB | target |")
	print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
	for _, v in ipairs(active) do
		local r = res[v.key]
		if r.err then
			print(string.format("| %s | FAILED: %s | | | | | | |", v.label, (r.err:gsub("|", "/"))))
			goto next
		end
		-- Judged as printed, to two decimals.
		local ratio = (r.ns and floor and floor > 0) and
			tonumber(string.format("%.2f", r.ns / floor)) or nil
		local target = ""
		local ref = v.vs and res[v.vs]
		if ref and ref.ns and r.ns then
			local x = tonumber(string.format("%.2f", r.ns / ref.ns))
			local c = r.work_cpu and ref.work_cpu and ref.work_cpu > 0 and
				string.format(" (cpu %.2fx)", r.work_cpu / ref.work_cpu) or ""
			target = string.format("%.2fx of %s%s", x, v.vs, c)
			if v.target then
				target = target .. string.format(", <= %.2fx: %s", v.target,
					x <= v.target and "met" or "MISSED")
			end
		elseif v.target then
			target = "?"
		end
		if r.badcount then
			target = target .. string.format(" (COUNT %d, wanted %d)", r.badcount, N)
		end
		print(string.format("| %s | %s%s | %s | %s | %s | %s | %d | %s |", v.label,
			r.approx and "~" or "", v.aux and "" or ms(r.ns),
			r.lo and (ms(r.lo) .. "-" .. ms(r.hi)) or "",
			ratio and string.format("%.2f", ratio) or "", ms(v.aux and r.cpu or r.work_cpu), ms(r.wall), r.rss, target))
		::next::
	end
	if not modok then
		print("\nLua rows skipped: the module does not load yet (" .. tostring(moderr) .. ")")
	end
end

for _, N in ipairs(sizes) do
	bench(N)
end
sh("conntrack -F >/dev/null 2>&1")
os.remove(tmpout)
os.remove(tmperr)

-- Peak RSS must not grow with the table.
if #sizes > 1 then
	local lo, hi = sizes[1], sizes[1]
	for _, N in ipairs(sizes) do
		lo, hi = math.min(lo, N), math.max(hi, N)
	end
	if lo ~= hi then
		print(string.format("\n### Peak RSS, %d -> %d entries (flat: grows by at most 10%%)\n", lo, hi))
		print("| variant | KiB at " .. lo .. " | KiB at " .. hi .. " | growth | flat |")
		print("| --- | ---: | ---: | ---: | --- |")
		for _, v in ipairs(variants) do
			local a, b = all[lo][v.key], all[hi][v.key]
			if a and b and a.rss and b.rss and not v.aux then
				local g = b.rss / a.rss
				print(string.format("| %s | %d | %d | %.2fx | %s |", v.label, a.rss, b.rss, g,
					v.lua and (g <= 1.10 and "yes" or "NO") or ""))
			end
		end
	end
end
