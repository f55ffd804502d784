-- bench/cli.lua [SIZE...] [--runs=R]: examples/conntrack.lua against the
-- conntrack command, same table, same run.
--
--   make bench-cli            (or: tools/netns-run lua5.4 bench/cli.lua 100000)
--
-- For each table size N (default 100000), on the table bench/ctfill makes (a
-- quarter udp, the rest tcp), each variant a process of its own under
-- bench/timeit (wall time of the whole process, and its CPU time), the two
-- tools interleaved over R rounds after a warm-up, medians printed as
-- markdown:
--   -L > /dev/null                     target: ours <= 0.6x the CLI's time
--   -D -p udp > /dev/null (a quarter)  target: ours >= 3x the CLI's rate
--   -R FILE (the N lines of -o save)   target: ours >= 3x the CLI's rate
--   -E, each tool alone, with its defaults, during N creations and a flush
--   (2N events): the events each prints (target: all of them)
-- and the module alone doing the same work in the same rounds (a dump with
-- tostring, delete_where, ct.load of the text): the floor of the command.
-- --only=R (or L, D, E, comma-joined): those rows alone.
-- The interpreter is $LUA (make bench-cli sets it), else lua5.4.
-- It refuses to run outside tools/netns-run: it flushes the table.
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or "lua5.4"
package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench/cli")
local q, sh, capture, slurp, median = L.q, L.sh, L.capture, L.slurp, L.median

-- --only=L,D,R,E: those rows alone (the letter of each command)
local only, rest = nil, {}
for _, a in ipairs(arg) do
	local o = a:match("^%-%-only=([LDRE,]+)$")
	if o then only = o else rest[#rest + 1] = a end
end
local function wanted(letter) return not only or only:find(letter, 1, true) ~= nil end
local sizes, runs = B:options(rest, "100000", 4)
B:need_netns("run me through tools/netns-run: I flush the conntrack table")
B:need_tools(here, { "ctfill", "timeit" })

local tool = here .. "/../examples/conntrack.lua"
local savefile, tmperr = os.tmpname(), os.tmpname()

local function count()
	return tonumber(capture("conntrack -C 2>/dev/null"):match("%d+"))
end
local function flush()
	sh("conntrack -F >/dev/null 2>&1")
end
local function fill(N)
	flush()
	capture(q(here .. "/ctfill") .. " " .. N .. " 2>&1")
	if count() ~= N then B:die("ctfill did not make " .. N .. " entries") end
end

-- Wall and CPU (user + system) nanoseconds of argv, stdout to /dev/null.
local function timed(argv)
	local cmd = { q(here .. "/timeit"), "-o", "/dev/null" }
	for _, a in ipairs(argv) do cmd[#cmd + 1] = q(a) end
	local res = capture(table.concat(cmd, " ") .. " 2>" .. q(tmperr))
	local wall, _, code, _, user, sys = res:match("^(%d+) (%d+) (%d+) (%d+) (%d+) (%d+)")
	if not wall then B:die("timeit failed: " .. slurp(tmperr)) end
	if tonumber(code) ~= 0 then B:die(table.concat(argv, " ") .. ": exit " .. code .. ": " .. slurp(tmperr)) end
	return tonumber(wall), tonumber(user) + tonumber(sys)
end

local function cli(...) return { "conntrack", ... } end
local function lua(...) return { luabin, tool, ... } end
-- The module alone doing the same work (no command line, no checks): what
-- the command cannot beat.
local function module(code) return { luabin, "-e", "local ct = require 'conntrack' " .. code } end

-- -E: prog listening alone while ctfill makes N flows and conntrack -F
-- removes them; returns the event lines it printed.
local function events(prog, N)
	flush()
	local outf = os.tmpname()
	local pid = capture("sh -c " .. q("exec " .. prog .. " > " .. outf .. " 2>/dev/null") .. " & echo $!"):match("%d+")
	-- subscribed once a probe event shows
	local up = false
	for i = 1, 200 do
		sh("conntrack -I -s 192.0.2.250 -d 192.0.2.251 -p udp --sport " .. (40000 + i) .. " --dport 9 -t 5 >/dev/null 2>&1")
		if slurp(outf):find("192.0.2.250", 1, true) then up = true break end
		sh("sleep 0.05")
	end
	if not up then B:die(prog .. ": no events") end
	flush()
	-- the events of bench/ctfill's flows (to 203.0.113.0/24), not the probes'
	local function lines()
		return select(2, slurp(outf):gsub("dst=203%.0%.113%.", ""))
	end
	local before = lines()
	capture(q(here .. "/ctfill") .. " " .. N .. " 2>&1")
	flush()
	-- the output stops growing (bounded: 60 s)
	local last, still = -1, 0
	for _ = 1, 600 do
		local n = lines()
		if n == last then still = still + 1 else still = 0 end
		last = n
		if still >= 10 then break end
		sh("sleep 0.1")
	end
	sh("kill -INT " .. pid .. " 2>/dev/null")
	os.remove(outf)
	return last - before
end

local function bench(N)
	fill(N)
	sh("conntrack -L -o save > " .. q(savefile) .. " 2>/dev/null")
	local quarter = math.floor(N / 4)
	local tasks = {
		{ name = "-L", setup = function() if count() ~= N then fill(N) end end, work = N, time = true,
		  cli = cli("-L"), lua = lua("-L"), target = 0.6,
		  floor = module("io.stdout:setvbuf('full') local w = io.write for e in ct.dump() do w(tostring(e), '\\n') end") },
		{ name = "-D -p udp (a quarter)", setup = function() fill(N) end, work = quarter,
		  cli = cli("-D", "-p", "udp"), lua = lua("-D", "-p", "udp"), target = 3,
		  floor = module("assert(ct.delete_where(ct.filter.proto 'udp'))") },
		{ name = "-R FILE (" .. N .. " lines)", setup = flush, work = N,
		  cli = cli("-R", savefile), lua = lua("-R", savefile), target = 3,
		  floor = module("assert(ct.load(io.open(" .. string.format("%q", savefile) .. "):read('*a')))") },
	}
	print(string.format("\n### %d entries, %s, median of %d runs (each process: wall time, CPU time)\n",
		N, luabin, runs))
	print("| command | conntrack | lua-conntrack | ratio (wall) | ratio (CPU) | target | the module alone: wall, ratio |")
	print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
	for _, t in ipairs(tasks) do
		if wanted(t.name:sub(2, 2)) then
			local s = { cli = { wall = {}, cpu = {} }, lua = { wall = {}, cpu = {} }, floor = { wall = {}, cpu = {} } }
			for round = 0, runs do
				for _, k in ipairs({ "cli", "lua", "floor" }) do
					t.setup()
					local w, c = timed(t[k])
					if round > 0 then
						s[k].wall[#s[k].wall + 1] = w
						s[k].cpu[#s[k].cpu + 1] = c
					end
				end
			end
			local cw, lw, fw = median(s.cli.wall), median(s.lua.wall), median(s.floor.wall)
			local cc, lc = median(s.cli.cpu), median(s.lua.cpu)
			if t.time then
				local r = lw / cw
				print(string.format("| %s | %.0f ms (CPU %.0f ms) | %.0f ms (CPU %.0f ms) | %.2fx time | %.2fx " ..
					"| <= %.1fx: %s | %.0f ms, %.2fx |",
					t.name, cw / 1e6, cc / 1e6, lw / 1e6, lc / 1e6, r, lc / cc, t.target,
					r <= t.target and "met" or "MISSED", fw / 1e6, fw / cw))
			else
				local r = cw / lw
				print(string.format("| %s | %.0f /s (%.0f ms, CPU %.0f ms) | %.0f /s (%.0f ms, CPU %.0f ms) " ..
					"| %.2fx rate | %.2fx | >= %.0fx: %s | %.0f ms, %.2fx |",
					t.name, t.work / (cw / 1e9), cw / 1e6, cc / 1e6, t.work / (lw / 1e9), lw / 1e6, lc / 1e6, r, cc / lc,
					t.target, r >= t.target and "met" or "MISSED", fw / 1e6, cw / fw))
			end
		end
	end
	-- -E: each listener alone, with its defaults.
	if not wanted("E") then return end
	print("\n| -E during " .. N .. " creations + a flush | events printed | of | lost |")
	print("| --- | ---: | ---: | ---: |")
	for _, k in ipairs({ "cli", "lua" }) do
		local got = events(k == "cli" and "conntrack -E" or (q(luabin) .. " " .. q(tool) .. " -E"), N)
		print(string.format("| %s | %d | %d | %d |", k == "cli" and "conntrack -E" or "lua-conntrack -E",
			got, 2 * N, math.max(0, 2 * N - got)))
	end
end

for _, N in ipairs(sizes) do bench(N) end
flush()
os.remove(savefile)
os.remove(tmperr)
