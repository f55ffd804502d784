-- bench/cli.lua [SIZE...] [--runs=R]: examples/conntrack.lua against the
-- conntrack command, same table, same run.
--
--   make bench-cli            (or: tools/netns-run lua5.4 bench/cli.lua 100000)
--
-- For each table size N (default 100000), on the table bench/ctfill makes (a
-- quarter udp, the rest tcp), each variant a process of its own under
-- bench/timeit (wall time of the whole process), interleaved over R rounds
-- after a warm-up, medians printed as markdown:
--   -L > /dev/null                     target: ours <= 0.6x the CLI's time
--   -D -p udp > /dev/null (a quarter)  target: ours >= 3x the CLI's rate
--   -R FILE (N lines of -o save)       target: ours >= 3x the CLI's rate
--   -E during 100000 creations + flush  (200 000 events): events received
-- It refuses to run outside tools/netns-run: it flushes the table.
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or "lua5.4"
package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench/cli")
local q, sh, capture, slurp = L.q, L.sh, L.capture, L.slurp

local sizes, runs = B:options(arg, "100000", 4)
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

-- Wall nanoseconds of argv (stdout to /dev/null).
local function timed(argv, stdin)
	local cmd = { q(here .. "/timeit"), "-o", "/dev/null" }
	for _, a in ipairs(argv) do cmd[#cmd + 1] = q(a) end
	local res = capture(table.concat(cmd, " ") .. (stdin and (" < " .. q(stdin)) or "") .. " 2>" .. q(tmperr))
	local wall, _, code = res:match("^(%d+) (%d+) (%d+)")
	if not wall then B:die("timeit failed: " .. slurp(tmperr)) end
	if tonumber(code) ~= 0 then B:die(table.concat(argv, " ") .. ": exit " .. code .. ": " .. slurp(tmperr)) end
	return tonumber(wall)
end

local function median(t)
	table.sort(t)
	local m = math.floor(#t / 2)
	return #t % 2 == 1 and t[m + 1] or (t[m] + t[m + 1]) / 2
end

local function cli(...) return { "conntrack", ... } end
local function lua(...) return { luabin, tool, ... } end

local function bench(N)
	fill(N)
	sh("conntrack -L -o save > " .. q(savefile) .. " 2>/dev/null")
	local quarter = math.floor(N / 4)
	local tasks = {
		{ name = "-L", setup = function() if count() ~= N then fill(N) end end, work = N, time = true,
		  cli = cli("-L"), lua = lua("-L"), target = 0.6 },
		{ name = "-D -p udp (a quarter)", setup = function() fill(N) end, work = quarter,
		  cli = cli("-D", "-p", "udp"), lua = lua("-D", "-p", "udp"), target = 3 },
		{ name = "-R FILE (" .. N .. " lines)", setup = flush, work = N,
		  cli = cli("-R", savefile), lua = lua("-R", savefile), target = 3 },
	}
	print(string.format("\n### %d entries, median of %d runs (wall time of each process)\n", N, runs))
	print("| command | conntrack | lua-conntrack | ratio | target |")
	print("| --- | ---: | ---: | ---: | --- |")
	for _, t in ipairs(tasks) do
		local s = { cli = {}, lua = {} }
		for round = 0, runs do
			for _, k in ipairs({ "cli", "lua" }) do
				t.setup()
				local ns = timed(t[k])
				if round > 0 then s[k][#s[k] + 1] = ns end
			end
		end
		local c, l = median(s.cli), median(s.lua)
		if t.time then
			local r = l / c
			print(string.format("| %s | %.0f ms | %.0f ms | %.2fx time | <= %.1fx: %s |", t.name, c / 1e6, l / 1e6,
				r, t.target, r <= t.target and "met" or "MISSED"))
		else
			local r = c / l
			print(string.format("| %s | %.0f /s | %.0f /s | %.2fx rate | >= %.0fx: %s |", t.name,
				t.work / (c / 1e9), t.work / (l / 1e9), r, t.target, r >= t.target and "met" or "MISSED"))
		end
	end
	-- -E: each listener alone during N creations and a flush (2N events).
	print("\n| -E during " .. N .. " creations + flush | events printed | of | lost |")
	print("| --- | ---: | ---: | ---: |")
	for _, k in ipairs({ "cli", "lua" }) do
		flush()
		local outf = os.tmpname()
		local prog = k == "cli" and "conntrack -E" or (q(luabin) .. " " .. q(tool) .. " -E")
		local pid = capture("sh -c " .. q("exec " .. prog .. " > " .. outf .. " 2>/dev/null") .. " & echo $!"):match("%d+")
		-- subscribed once a probe event shows
		for i = 1, 200 do
			sh("conntrack -I -s 192.0.2.250 -d 192.0.2.251 -p udp --sport " .. (40000 + i) .. " --dport 9 -t 5 >/dev/null 2>&1")
			if slurp(outf):find("192.0.2.250", 1, true) then break end
			sh("sleep 0.05")
		end
		flush()
		local before = select(2, slurp(outf):gsub("\n", "\n"))
		capture(q(here .. "/ctfill") .. " " .. N .. " 2>&1")
		flush()
		-- wait for the output to stop growing (bounded)
		local last, same = -1, 0
		for _ = 1, 600 do
			local n = select(2, slurp(outf):gsub("\n", "\n"))
			if n == last then same = same + 1 else same = 0 end
			last = n
			if same >= 10 then break end
			sh("sleep 0.1")
		end
		sh("kill -INT " .. pid .. " 2>/dev/null")
		local got = last - before
		print(string.format("| %s | %d | %d | %d |", k == "cli" and "conntrack -E" or "lua-conntrack -E",
			got, 2 * N, math.max(0, 2 * N - got)))
		os.remove(outf)
	end
end

for _, N in ipairs(sizes) do bench(N) end
flush()
os.remove(savefile)
os.remove(tmperr)
