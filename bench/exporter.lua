-- bench/exporter.lua [SIZE...] [--runs=R]: scrape time and memory of
-- examples/exporter.lua on a big table, and whether a scrape stalls it.
--
-- Run it inside tools/netns-run (it flushes the table), after building the
-- module and bench/:
--   make && make -C bench && tools/netns-run lua5.4 bench/exporter.lua [250000] [--runs=5]
-- or `make bench-exporter`.  The exporter runs under $LUA (default lua5.4).
--
-- For each table size N (default 250000): bench/ctfill fills the table
-- (a quarter udp, the rest tcp ESTABLISHED, to 2 304 distinct destination
-- endpoints), then, medians of R runs:
--   conntrack -L > /dev/null            the CLI listing the table (wall time)
--   bench/loop.lua count                the module's bare dump, counting (the floor)
--   GET /metrics                        a whole scrape, as the client waits for it
--   conntrack_scrape_duration_seconds   the exporter's own time for the table
-- the exporter's resident memory before the first scrape, after the last one
-- and at its peak (VmHWM), and the latency of GET / requests sent every 10 ms
-- by another process while a scrape runs, beside the same with no scrape:
-- a scrape that stalled the exporter's loop would hold them for its whole
-- length.  Then the worst case for the top-N breakdown: N flows to N distinct
-- destinations, made with h:batch("create").
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or "lua5.4"

package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
L.use_tree(here)
local B = L.new("bench/exporter")
local q, sh, capture, slurp, median = L.q, L.sh, L.capture, L.slurp, L.median
local function die(msg) B:die(msg) end

local ct = require "conntrack"
local socket = require "socket"
local http = require "socket.http"

local sizes, runs = B:options(arg, "250000", 1000)
B:need_netns("run me through tools/netns-run: I flush the conntrack table")
B:need_tools(here, { "ctfill", "timeit" })

local tmpout, errfile = os.tmpname(), os.tmpname()

local function count()
	return tonumber(capture("conntrack -C 2>/dev/null"):match("%d+"))
end

local function fill(N)
	sh("conntrack -F >/dev/null 2>&1")
	local out = capture(q(here .. "/ctfill") .. " " .. N .. " 2>&1")
	if count() ~= N then
		die("ctfill did not make " .. N .. " entries: " .. out)
	end
end

-- N udp flows, each to a destination endpoint of its own.
local function fill_distinct(N)
	local h = assert(ct.open())
	assert(h:flush())
	for first = 0, N - 1, 10000 do
		local items = {}
		for i = first, math.min(N, first + 10000) - 1 do
			local a = i % 768
			local dst = (a < 256 and "192.0.2." or a < 512 and "198.51.100." or "203.0.113.") .. (a % 256)
			items[#items + 1] = { src = "198.51.100.1", dst = dst, proto = "udp", sport = 5000,
				dport = 1024 + math.floor(i / 768), timeout = 3600 }
		end
		local ok, _, fails = h:batch("create", items)
		if ok ~= #items then die("create: " .. tostring(fails[1] and fails[1].message)) end
	end
	h:close()
	if count() ~= N then die("the distinct table is not " .. N .. " entries") end
end

-- Wall ns of argv under bench/timeit, and what it printed.
local function timed(argv)
	local cmd = { q(here .. "/timeit"), "-o", q(tmpout) }
	for _, a in ipairs(argv) do cmd[#cmd + 1] = q(a) end
	local res = capture(table.concat(cmd, " ") .. " 2>" .. q(errfile))
	local wall, _, code = res:match("^(%d+) (%d+) (%d+)")
	if not wall or code ~= "0" then
		die(argv[1] .. " failed: " .. slurp(errfile))
	end
	return tonumber(wall), slurp(tmpout)
end

local function status_kib(pid, field)
	return tonumber(slurp("/proc/" .. pid .. "/status"):match(field .. ":%s*(%d+)"))
end

-- The exporter in the background: pid, base URL.
local function start_exporter()
	local pid = capture(("%s %s --listen 127.0.0.1:0 2>%s >/dev/null & echo $!")
		:format(luabin, q(here .. "/../examples/exporter.lua"), q(errfile))):match("%d+")
	for _ = 1, 500 do
		local port = slurp(errfile):match("listening on http://127%.0%.0%.1:(%d+)")
		if port then
			return pid, "http://127.0.0.1:" .. port
		end
		socket.sleep(0.02)
	end
	sh("kill " .. pid)
	die("the exporter did not start: " .. slurp(errfile))
end

-- One scrape: client seconds, the exporter's own seconds, entries reported.
local function scrape(url)
	local t0 = socket.gettime()
	local body, code = http.request(url .. "/metrics")
	local dt = socket.gettime() - t0
	if code ~= 200 or not body then
		die("scrape: " .. tostring(code))
	end
	local own = tonumber(body:match("\nconntrack_scrape_duration_seconds{netns=\"\"} (%S+)"))
	local n = tonumber(body:match("\nconntrack_entries{netns=\"\"} (%d+)"))
	return dt, own, n
end

-- GET / every 10 ms for secs seconds, in another process: "<count> <median ms> <max ms>".
local PROBE = [[
local socket, http = require "socket", require "socket.http"
local url, secs = arg[1], tonumber(arg[2])
local lat, stop = {}, socket.gettime() + secs
while socket.gettime() < stop do
	local t = socket.gettime()
	assert(http.request(url))
	lat[#lat + 1] = (socket.gettime() - t) * 1000
	socket.sleep(0.01)
end
table.sort(lat)
print(#lat, lat[math.floor(#lat / 2) + 1], lat[#lat])
]]

local function probe(url, secs, during)
	local pf, out = os.tmpname(), os.tmpname()
	local f = assert(io.open(pf, "w"))
	f:write(PROBE)
	f:close()
	local pid = capture(("%s %s %s %s >%s 2>&1 & echo $!")
		:format(luabin, q(pf), q(url .. "/"), secs, q(out))):match("%d+")
	socket.sleep(0.1)
	if during then during() end
	sh(("while kill -0 %s 2>/dev/null; do sleep 0.05; done"):format(pid))
	local n, med, max = slurp(out):match("^(%d+)%s+(%S+)%s+(%S+)")
	os.remove(pf)
	os.remove(out)
	if not n then die("probe failed") end
	return tonumber(n), tonumber(med), tonumber(max)
end

local function mib(kib)
	return ("%.1f MiB"):format(kib / 1024)
end

local function measure(N, title)
	local pid, url = start_exporter()
	local rss0 = status_kib(pid, "VmRSS")
	local client, own = {}, {}
	for i = 1, runs do
		local dt, o, n = scrape(url)
		if n ~= N then die(("scrape %d reported %s entries, not %d"):format(i, tostring(n), N)) end
		client[i], own[i] = dt * 1000, o * 1000
	end
	local rss1, hwm = status_kib(pid, "VmRSS"), status_kib(pid, "VmHWM")
	local secs = median(client) / 1000 + 0.3
	local n0, med0, max0 = probe(url, secs)
	local n1, med1, max1 = probe(url, secs, function() scrape(url) end)
	sh("kill " .. pid)
	print(("\n### %s: %d flows, median of %d scrapes\n"):format(title, N, runs))
	print("| what | ms |")
	print("| --- | ---: |")
	return {
		row = function(what, ms) print(("| %s | %.1f |"):format(what, ms)) end,
		finish = function()
			print(("\nExporter memory: %s before the first scrape, %s after %d scrapes, peak %s (VmHWM)."):format(
				mib(rss0), mib(rss1), runs, mib(hwm)))
			print(("GET / every 10 ms while a scrape runs: %d requests, median %.1f ms, max %.1f ms "
				.. "(no scrape: %d requests, median %.1f ms, max %.1f ms)."):format(n1, med1, max1, n0, med0, max0))
		end,
		client = median(client), own = median(own),
	}
end

for _, N in ipairs(sizes) do
	fill(N)
	local cli, floor = {}, {}
	for i = 1, runs do
		cli[i] = timed({ "conntrack", "-L" }) / 1e6
		local _, out = timed({ luabin, here .. "/loop.lua", "count" })
		local n, ns = out:match("^(%d+) (%-?%d+)")
		if tonumber(n) ~= N then die("loop.lua counted " .. tostring(n)) end
		floor[i] = tonumber(ns) / 1e6
	end
	local m = measure(N, "bench/ctfill table")
	local f = median(floor)
	m.row("`conntrack -L > /dev/null`", median(cli))
	m.row("module dump, counting only (`bench/loop.lua count`; the floor)", f)
	m.row(("GET /metrics, as the client waits (%.2fx the floor)"):format(m.client / f), m.client)
	m.row(("of which reading the table (`conntrack_scrape_duration_seconds`; %.2fx)"):format(m.own / f), m.own)
	m.finish()

	fill_distinct(N)
	m = measure(N, "every flow to a destination of its own (the top-N worst case)")
	m.row("GET /metrics, as the client waits", m.client)
	m.row("of which reading the table", m.own)
	m.finish()
	sh("conntrack -F >/dev/null 2>&1")
end
os.remove(tmpout)
os.remove(errfile)
