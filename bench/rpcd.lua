-- bench/rpcd.lua [SIZE...] [--runs=R]: examples/rpcd-conntrack.lua's paged
-- list beside a plain parser of /proc/net/nf_conntrack doing the same job
-- (bench/procpage.lua; `conntrack -L` text where the kernel has no /proc
-- file), each called as rpcd calls a plugin (`call list`, the JSON
-- arguments on stdin), in a process of its own under bench/timeit: wall
-- time and peak RSS, medians of R runs (env BENCH_RUNS or --runs, default 5).
--
-- Run it inside tools/netns-run (it flushes the table), after building the
-- module and bench/:
--   make && make -C bench && tools/netns-run lua5.4 bench/rpcd.lua [100000]
-- or `make bench-rpcd`.  The table (default 100 000 flows) comes from
-- bench/ctfill: a quarter udp, the rest tcp ESTABLISHED.  Variants:
--   plugin (Lua 5.4), plugin (Lua 5.1: OpenWrt's)   the module's dump, only the page kept
--   /proc, streamed                                  each line parsed, only the page kept
--   /proc, all in memory                             every line parsed into one table first
-- Every variant's page is checked against the plugin's (the same flows).
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")

package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
local B = L.new("bench/rpcd")
local q, sh, capture, slurp, median = L.q, L.sh, L.capture, L.slurp, L.median
local function die(msg) B:die(msg) end
local json = require "dkjson"

local sizes, runs = B:options(arg, "100000", 1000)
B:need_netns("run me through tools/netns-run: I flush the conntrack table")
B:need_tools(here, { "ctfill", "timeit" })

local root = here .. "/.."
local tmpin, tmpout, tmperr = os.tmpname(), os.tmpname(), os.tmpname()

local function env(v)
	return ("env LUA_PATH=%s LUA_CPATH=%s "):format(q(root .. "/lua/?.lua;;"), q(root .. "/build/" .. v .. "/?.so;;"))
end

local plugin = q(root .. "/examples/rpcd-conntrack.lua") .. " call list"
local variants = {
	{ name = "plugin, Lua 5.4", cmd = env("5.4") .. "lua5.4 " .. plugin },
	{ name = "plugin, Lua 5.1", cmd = env("5.1") .. "lua5.1 " .. plugin, need = root .. "/build/5.1/conntrack/core.so" },
	{ name = "/proc parser, streamed", cmd = "lua5.4 " .. q(here .. "/procpage.lua") .. " call list" },
	{ name = "/proc parser, all in memory",
		cmd = "lua5.4 " .. q(here .. "/procpage.lua") .. " --all-in-memory call list" },
}

-- One call: wall ms, peak RSS KiB, the decoded answer.
local function call(v, args)
	local f = assert(io.open(tmpin, "w"))
	f:write(json.encode(args))
	f:close()
	local res = capture(("%s -o %s sh -c %s 2>%s"):format(q(here .. "/timeit"), q(tmpout),
		q(v.cmd .. " < " .. q(tmpin)), q(tmperr)))
	local wall, rss, code = res:match("^(%d+) (%d+) (%d+)")
	if not wall or code ~= "0" then
		die(v.name .. " failed: " .. slurp(tmperr))
	end
	local doc = json.decode(slurp(tmpout))
	if type(doc) ~= "table" or doc.error then
		die(v.name .. ": " .. tostring(doc and doc.error or slurp(tmpout)))
	end
	return tonumber(wall) / 1e6, tonumber(rss), doc
end

local function tuples(doc)
	local t = {}
	for i, e in ipairs(doc.entries) do
		local o = e.orig
		t[i] = table.concat({ e.proto, o.src, o.dst, o.sport or "", o.dport or "" }, " ")
	end
	return table.concat(t, "\n")
end

for _, N in ipairs(sizes) do
	sh("conntrack -F >/dev/null 2>&1")
	capture(q(here .. "/ctfill") .. " " .. N)
	if tonumber(capture("conntrack -C"):match("%d+")) ~= N then die("ctfill did not make " .. N) end
	local tasks = {
		{ "first page (offset 0, limit 100)", { offset = 0, limit = 100 } },
		{ ("middle page (offset %d)"):format(math.floor(N / 2)), { offset = math.floor(N / 2), limit = 100 } },
		{ ("last page (offset %d), with the total"):format(N - 100), { offset = N - 100, limit = 100, total = true } },
		{ "udp port 53, first page, with the total", { proto = "udp", dport = 53, limit = 100, total = true } },
	}
	local source = io.open("/proc/net/nf_conntrack") and "/proc/net/nf_conntrack"
		or "`conntrack -L` (this kernel has no /proc/net/nf_conntrack)"
	print(("\n### %d flows, median of %d runs; the parser reads %s\n"):format(N, runs, source))
	local head = { "| task |" }
	local rule = { "| --- |" }
	local live = {}
	for _, v in ipairs(variants) do
		if not v.need or io.open(v.need) then
			live[#live + 1] = v
			head[#head + 1] = " " .. v.name .. " |"
			rule[#rule + 1] = " ---: |"
		end
	end
	print(table.concat(head))
	print(table.concat(rule))
	for _, task in ipairs(tasks) do
		local cells = { "| " .. task[1] .. " |" }
		local ref
		for _, v in ipairs(live) do
			local ms, kib = {}, 0
			for r = 1, runs do
				local t, rss, doc = call(v, task[2])
				ms[r], kib = t, math.max(kib, rss)
				local tp = tuples(doc)
				ref = ref or tp
				if tp ~= ref then die(v.name .. ": another page than the plugin's for " .. task[1]) end
			end
			cells[#cells + 1] = (" %.0f ms, %.1f MiB |"):format(median(ms), kib / 1024)
		end
		print(table.concat(cells))
	end
	sh("conntrack -F >/dev/null 2>&1")
end
os.remove(tmpin)
os.remove(tmpout)
os.remove(tmperr)
