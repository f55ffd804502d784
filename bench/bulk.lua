-- bench/bulk.lua [SIZE...] [--runs=R]: bulk-operation benchmark of lua-conntrack.
--
-- Run it through `make bench-bulk` (inside tools/netns-run, a private network
-- namespace with its own conntrack table); it refuses to run elsewhere, as
-- it flushes the table.
--
-- For each table size N (default 100000; else the arguments or env
-- BENCH_SIZES), three tasks on the same table bench/ctfill makes (a quarter
-- udp, the rest tcp ESTABLISHED), each variant in a process of its own under
-- bench/timeit, interleaved over R rounds (env BENCH_RUNS or --runs, default 5)
-- after one warm-up round, medians printed as markdown:
--   delete all       cli: conntrack -D      floor: bench/ctdel      lua: delete_where(filter.all())
--   delete udp (1/4) cli: conntrack -D -p udp  floor: bench/ctdel 17  lua: delete_where(filter.proto "udp")
--   load N           cli: conntrack -R FILE floor: bench/ctfill N    lua: h:load(specs), h:load(text)
-- FILE is `conntrack -L -o save` of the filled table; h:load(specs) gets the
-- specs format.parse_save made of it (untimed: see the parse table), h:load(text)
-- its text.  "ms" is the operation alone: for lua and ctdel as timed inside
-- the process (CLOCK_MONOTONIC), for the CLI its process time less that of
-- `conntrack --version`, for ctfill its process time.  After every run the
-- table is checked with `conntrack -C`.  Targets (issues 5 and 13): delete
-- rates at least 2.5x the CLI's; h:load(specs) at least 0.8x the rate of the
-- C batched creator; h:load(text) at least 3x the CLI's (-R).
--
-- Then format.parse_save alone, of the whole file and of its first tenth:
-- its time per line at both sizes (linear: the larger costs at most 1.2x per
-- line what the smaller does).
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or arg[-1] or "lua5.4"
local unpack = table.unpack or unpack

package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench/bulk")
local q, sh, capture, slurp = L.q, L.sh, L.capture, L.slurp
local count = L.count
local function flush() B:flush() end
local function die(msg) B:die(msg) end

local sizes, runs = B:options(arg, "100000", 4)
B:need_netns("run me through tools/netns-run: I flush the conntrack table")
B:need_tools(here, { "ctdel", "ctfill", "timeit" })

local tmpout, tmperr, savefile, smallfile = os.tmpname(), os.tmpname(), os.tmpname(), os.tmpname()

local function fill(N)
	flush()
	local out = capture(q(here .. "/ctfill") .. " " .. N .. " 2>&1")
	if count() ~= N then
		die("ctfill did not make " .. N .. " entries: " .. out)
	end
end

-- Runs argv under timeit: { wall = ns, n = count, ns = self-timed ns } or nil, why.
local function runone(argv, self)
	local r, why = L.timeit(here, argv, self and tmpout or nil, tmperr)
	if not r then
		return nil, why
	end
	if self then
		local out = slurp(tmpout)
		local a, b, c = out:match("^(%d+) (%d+) ?(%d*)")
		if not a then
			return nil, "printed " .. q(out)
		end
		-- ctdel prints "<deleted> <missing> <ns>", bulkop "<count> <ns>"
		if c ~= "" then
			r.n, r.ns = tonumber(a), tonumber(c)
		else
			r.n, r.ns = tonumber(a), tonumber(b)
		end
	end
	return r
end

local median = L.median

local function lua_argv(...)
	return { luabin, here .. "/bulkop.lua", ... }
end

local function tasks(N)
	local quarter = math.floor(N / 4)   -- ctfill: entry i is udp when i % 4 == 3
	return {
		{ name = "delete all", setup = function() fill(N) end, left = 0, work = N,
		  variants = {
			{ key = "cli", label = "cli: conntrack -D", argv = { "conntrack", "-D" } },
			{ key = "floor", label = "floor: bench/ctdel", argv = { here .. "/ctdel" }, self = true },
			{ key = "lua", label = "lua: delete_where(filter.all())", argv = lua_argv("delete_all"), self = true,
			  vs = "cli", min = 2.5 },
		} },
		{ name = "delete udp (a quarter)", setup = function() fill(N) end, left = N - quarter, work = quarter,
		  variants = {
			{ key = "cli", label = "cli: conntrack -D -p udp", argv = { "conntrack", "-D", "-p", "udp" } },
			{ key = "floor", label = "floor: bench/ctdel 17", argv = { here .. "/ctdel", "17" }, self = true },
			{ key = "lua", label = "lua: delete_where(filter.proto \"udp\")", argv = lua_argv("delete_proto", "udp"),
				self = true, vs = "cli", min = 2.5 },
		} },
		{ name = "load " .. N, setup = flush, left = N, work = N,
		  variants = {
			{ key = "cli", label = "cli: conntrack -R save-file", argv = { "conntrack", "-R", savefile } },
			{ key = "floor", label = "floor: bench/ctfill (C batched creates)", argv = { here .. "/ctfill", tostring(N) } },
			{ key = "lua", label = "lua: h:load(specs)", argv = lua_argv("load", savefile), self = true,
			  vs = "floor", min = 0.8 },
			{ key = "text", label = "lua: h:load(save text)", argv = lua_argv("load_text", savefile), self = true,
			  vs = "cli", min = 3.0 },
		} },
	}
end

local function bench(N)
	-- The save file: the table as the CLI writes it.
	fill(N)
	sh("conntrack -L -o save > " .. q(savefile) .. " 2>/dev/null")
	local lines = select(2, slurp(savefile):gsub("\n", "\n"))
	if lines ~= N then
		die("conntrack -L -o save wrote " .. lines .. " lines, wanted " .. N)
	end

	-- Start-up of the CLI, taken off its times.
	local base = {}
	for _ = 1, runs do
		local r = assert(runone({ "conntrack", "--version" }))
		base[#base + 1] = r.wall
	end
	local clibase = median(base)

	print(string.format("\n### %d entries, median of %d runs (conntrack --version: %.1f ms, taken off the CLI's times)\n",
		N, runs, clibase / 1e6))
	print("| task | variant | ms | (min-max) | entries/s | rate vs cli | target (rate) |")
	print("| --- | --- | ---: | ---: | ---: | ---: | --- |")
	for _, task in ipairs(tasks(N)) do
		local samples = {}
		for _, v in ipairs(task.variants) do
			samples[v.key] = {}
		end
		for round = 0, runs do
			for _, v in ipairs(task.variants) do
				task.setup()
				local r, why = runone(v.argv, v.self)
				if not r then
					die(task.name .. ", " .. v.label .. ": " .. why)
				end
				local left = count()
				if left ~= task.left then
					die(string.format("%s, %s: %d entries left, wanted %d", task.name, v.label, left, task.left))
				end
				if v.self and r.n ~= task.work then
					die(string.format("%s, %s: reported %d, wanted %d", task.name, v.label, r.n, task.work))
				end
				if round > 0 then
					local ns = r.ns or r.wall
					if v.key == "cli" then
						ns = r.wall - clibase
					end
					local s = samples[v.key]
					s[#s + 1] = ns
				end
			end
		end
		local cli = median(samples.cli)
		for _, v in ipairs(task.variants) do
			local s = samples[v.key]
			local m = median(s)
			local rate = task.work / (m / 1e9)
			local vs = tonumber(string.format("%.2f", cli / m))
			local target = ""
			if v.vs then
				local x = tonumber(string.format("%.2f", median(samples[v.vs]) / m))
				target = string.format("%.2fx %s, >= %.2fx: %s", x, v.vs, v.min, x >= v.min and "met" or "MISSED")
			end
			print(string.format("| %s | %s | %.1f | %.1f-%.1f | %.0f | %.2fx | %s |", task.name, v.label,
				m / 1e6, math.min(unpack(s)) / 1e6, math.max(unpack(s)) / 1e6, rate, vs, target))
		end
	end

	-- format.parse_save alone, of the file and of its first tenth.
	local tenth = math.max(1, N // 10)
	local f = assert(io.open(smallfile, "w"))
	local k = 0
	for line in io.lines(savefile) do
		k = k + 1
		if k > tenth then
			break
		end
		f:write(line, "\n")
	end
	f:close()
	local ps = { big = {}, small = {} }
	for round = 0, runs do
		for _, which in ipairs({ "big", "small" }) do
			local r = assert(runone(lua_argv("parse", which == "big" and savefile or smallfile), true))
			if round > 0 then
				local t = ps[which]
				t[#t + 1] = r.ns
			end
		end
	end
	local big, small = median(ps.big), median(ps.small)
	local growth = (big / N) / (small / tenth)
	print(string.format("\nformat.parse_save (untimed in the h:load(specs) row), median of %d runs:\n", runs))
	print("| lines | ms | µs per line |")
	print("| ---: | ---: | ---: |")
	print(string.format("| %d | %.1f | %.2f |", tenth, small / 1e6, small / tenth / 1e3))
	print(string.format("| %d | %.1f | %.2f |", N, big / 1e6, big / N / 1e3))
	print(string.format("\nper line, %d lines against %d: %.2fx (linear: <= 1.20x: %s)", N, tenth, growth,
		growth <= 1.2 and "met" or "MISSED"))
end

for _, N in ipairs(sizes) do
	bench(N)
end
flush()
os.remove(tmpout)
os.remove(tmperr)
os.remove(savefile)
os.remove(smallfile)
