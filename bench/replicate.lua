-- bench/replicate.lua [N...] [--runs=R]: how closely a standby's table
-- follows the active one's: examples/replicate.lua beside conntrackd (FTFW
-- mode, the Debian package), one after the other in the same topology.
--
-- Run it inside tools/netns-run after building the module:
--   make && tools/netns-run lua5.4 bench/replicate.lua [10000] [--runs=5]
-- or `make bench-replicate`.  replicate.lua runs under $LUA (default lua5.4).
--
-- The topology is hosts.twin: two routers a and b with a link of their own
-- (sync, 203.0.113.249/30 - .250), every namespace with
-- nf_conntrack_timestamp=1.  Each run starts a pair afresh on empty tables:
-- replicate.lua backup on b and primary on a, over TCP; or conntrackd on
-- both (FTFW over UDP on the sync link, DisableExternalCache On, so that
-- it writes the flows into b's kernel table as replicate.lua does: the
-- configuration is written into a temporary directory, its lock file and
-- socket there too, and each daemon runs inside its router's namespace).
-- Then a burst of N new flows is made in a's table through netlink (TCP
-- ESTABLISHED, SNATed: h:batch("create") in batches of 500, as fast as the
-- kernel takes them), and the bench waits (at most 120 s) until b holds
-- them.  The kernel stamps each flow when it is created (start, in ns, the
-- same clock in both namespaces): the time from a change on a to its
-- presence on b is b's stamp minus a's, per flow.  Reported, medians over
-- the runs: that latency's median and 99th percentile, the rate b's table
-- filled at (N over the time from a's first creation to b's last), and how
-- many of the N reached b; and the CPU time both sides of the tool used for
-- the burst, per flow (from /proc: the machine is shared, and this is what
-- its load does not change).
local here = (arg[0]:match("^(.*)/[^/]*$") or ".")
local luabin = os.getenv("LUA") or "lua5.4"

package.path = here .. "/?.lua;" .. package.path
local L = require "benchlib"
L.use_tree(here)
local B = L.new("bench/replicate")
local q, sh, capture, median = L.q, L.sh, L.capture, L.median
local function die(msg) B:die(msg) end
-- inside the runs: raised, so that the topology is removed first
local function fail(msg) error(msg, 0) end

local ct = require "conntrack"
local hosts = require "hosts"
local socket = require "socket"

local sizes, runs = B:options(arg, "10000", 100)
B:need_netns("run me through tools/netns-run: I make namespaces and flush their tables")
if not sh("command -v conntrackd >/dev/null") then
	die("conntrackd missing: apt-get install conntrackd")
end

local topo = hosts.twin{}
local T = topo.addr
local dir = capture("mktemp -d /tmp/lct-bench-replicate.XXXXXX"):gsub("%s+$", "")
local function cleanup()
	topo:destroy()
	sh("rm -rf " .. q(dir))
end

local ha = assert(ct.open{ netns = topo.ns.a })
local hb = assert(ct.open{ netns = topo.ns.b })

local function write(path, text)
	local f = assert(io.open(path, "w"))
	f:write(text)
	f:close()
end

-- conntrackd's configuration for router me (a or b), its peer the other.
local function ctd_conf(me, peer)
	return ([[
Sync {
	Mode FTFW {
		DisableExternalCache On
	}
	UDP {
		IPv4_address %s
		IPv4_Destination_Address %s
		Port 3780
		Interface sync
		SndSocketBuffer 24985600
		RcvSocketBuffer 24985600
		Checksum on
	}
}
General {
	Systemd off
	HashSize 65536
	HashLimit 524288
	LogFile %s/%s.log
	Syslog off
	LockFile %s/%s.lock
	UNIX {
		Path %s/%s.ctl
	}
	NetlinkBufferSize 2097152
	NetlinkBufferSizeMaxGrowth 134217728
	NetlinkOverrunResync On
}
]]):format(T[me .. "_sync"], T[peer .. "_sync"], dir, me, dir, me, dir, me)
end
write(dir .. "/a.conf", ctd_conf("a", "b"))
write(dir .. "/b.conf", ctd_conf("b", "a"))

-- Polls fn every 20 ms, at most secs: its first true value, or nil.
local function poll(secs, fn)
	local stop = socket.gettime() + secs
	repeat
		local v = fn()
		if v then return v end
		socket.sleep(0.02)
	until socket.gettime() > stop
	return nil
end

-- CPU seconds (user + system) of pid's children so far (the tools run
-- under `timeout`).
local function cpu(pid)
	local total = 0
	for child in L.slurp("/proc/" .. pid .. "/task/" .. pid .. "/children"):gmatch("%d+") do
		local stat = L.slurp("/proc/" .. child .. "/stat"):gsub("^.*%) ", "")
		local f = {}
		for w in stat:gmatch("%S+") do f[#f + 1] = w end
		total = total + ((tonumber(f[12]) or 0) + (tonumber(f[13]) or 0)) / 100
	end
	return total
end

local function stop_pid(pid)
	sh(("kill %s 2>/dev/null; i=0; while kill -0 %s 2>/dev/null && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done;"
		.. " kill -KILL %s 2>/dev/null; true"):format(pid, pid, pid))
end

local tools = {
	{
		name = "replicate.lua",
		start = function()
			local script = here .. "/../examples/replicate.lua"
			-- the module built for that interpreter
			local v = luabin:match("luajit") and "jit" or luabin:match("(%d%.%d)$") or "5.4"
			local root = here .. "/.."
			local lua = ("env LUA_PATH=%s LUA_CPATH=%s %s"):format(q(root .. "/lua/?.lua;;"),
				q(root .. "/build/" .. v .. "/?.so;;"), luabin)
			local peer = T.b_sync .. ":7070"
			local mark = #topo:log()
			local pids = { topo:spawn("b", ("timeout 900 %s %s backup --listen %s"):format(lua, q(script), peer)) }
			if not poll(10, function() return topo:log():find("listening on", mark, true) end) then
				fail("replicate.lua backup did not start:\n" .. topo:log())
			end
			pids[2] = topo:spawn("a", ("timeout 900 %s %s primary --peer %s"):format(lua, q(script), peer))
			if not poll(10, function() return topo:log():find("applied:", mark, true) end) then
				fail("replicate.lua primary did not connect:\n" .. topo:log())
			end
			return pids
		end,
	},
	{
		name = "conntrackd",
		start = function()
			local pids = {}
			for _, r in ipairs({ "b", "a" }) do
				local conf = dir .. "/" .. r .. ".conf"
				sh("rm -f " .. q(dir .. "/" .. r .. ".lock"))
				pids[#pids + 1] = topo:spawn(r, "timeout 900 conntrackd -C " .. q(conf))
				local up = poll(10, function()
					return (topo:exec(r, "conntrackd -C " .. q(conf) .. " -s >/dev/null 2>&1"))
				end)
				if not up then
					fail("conntrackd did not start in " .. r .. ":\n" .. L.slurp(dir .. "/" .. r .. ".log"))
				end
			end
			return pids
		end,
	},
}

local function spec(i)
	local p = 1024 + i % 60000
	local dst = "198.51.100." .. (2 + math.floor(i / 60000))
	return { src = "192.0.2.2", dst = dst, proto = "tcp", sport = p, dport = 80, timeout = 600,
		state = "ESTABLISHED", status = { "SEEN_REPLY", "ASSURED" }, snat = { addr = T.snat, port = p },
		tcp_flags_orig = 0x23, tcp_flags_reply = 0x23, tcp_wscale_orig = 7, tcp_wscale_reply = 7 }
end

-- key -> start stamp of the burst's flows in h's table.
local function stamps(h)
	local t, n = {}, 0
	for e in h:dump{ proto = "tcp", dport = 80 } do
		t[e.orig.dst .. " " .. e.orig.sport] = e.start
		n = n + 1
	end
	return t, n
end

local function percentile(sorted, p)
	return sorted[math.max(1, math.ceil(#sorted * p))]
end

-- One run of tool with a burst of N: {median =, p99 =, rate =, got =, made =}.
local function run(tool, N)
	assert(ha:flush())
	assert(hb:flush())
	local pids = tool.start()
	-- what the tools used to start, subtracted from their CPU time below
	tool.idle = 0
	for _, pid in ipairs(pids) do tool.idle = tool.idle + cpu(pid) end
	local specs = {}
	for i = 1, N do specs[i] = spec(i) end
	local t0 = socket.gettime()
	for first = 1, N, 500 do
		local part = {}
		for i = first, math.min(N, first + 499) do part[#part + 1] = specs[i] end
		local ok, _, fails = ha:batch("create", part)
		if ok ~= #part then fail("create: " .. tostring(fails[1] and fails[1].message)) end
	end
	local made = N / (socket.gettime() - t0)
	poll(120, function()
		return hb:count() >= N
	end)
	-- the tools' own CPU time: until it stops growing (they have caught up)
	local used, last = 0, -1
	poll(10, function()
		used = 0
		for _, pid in ipairs(pids) do used = used + cpu(pid) end
		local settled = used == last
		last = used
		socket.sleep(0.1)
		return settled
	end)
	local sa = stamps(ha)
	local sb, got = stamps(hb)
	for _, pid in ipairs(pids) do stop_pid(pid) end
	local busy = used - (tool.idle or 0)
	local lat, first_a, last_b = {}, math.huge, 0
	for k, ta in pairs(sa) do
		if ta < first_a then first_a = ta end
		local tb_ = sb[k]
		if tb_ then
			lat[#lat + 1] = (tb_ - ta) / 1e6
			if tb_ > last_b then last_b = tb_ end
		end
	end
	table.sort(lat)
	return { median = median(lat), p99 = percentile(lat, 0.99), got = got, made = made,
		rate = got / ((last_b - first_a) / 1e9), cpu = busy / N * 1e6 }
end

local ok, err = pcall(function()
	io.write(("bench/replicate: %d run(s) per size; replicate.lua on %s; %s\n"):format(runs, luabin,
		capture("conntrackd -v 2>&1"):match("v[%d.]+") or "conntrackd"))
	io.write("| burst | tool | latency median | latency p99 | rate (flows/s) | reached b | a's creation rate"
		.. " | CPU per flow (both sides) |\n")
	io.write("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, N in ipairs(sizes) do
		local res = { {}, {} }
		for _ = 1, runs do
			for i, tool in ipairs(tools) do
				res[i][#res[i] + 1] = run(tool, N)
			end
		end
		for i, tool in ipairs(tools) do
			local function m(f)
				local v = {}
				for _, r in ipairs(res[i]) do v[#v + 1] = r[f] end
				return median(v)
			end
			io.write(("| %d | %s | %.0f ms | %.0f ms | %.0f | %d of %d | %.0f/s | %.1f µs |\n"):format(N, tool.name,
				m("median"), m("p99"), m("rate"), m("got"), N, m("made"), m("cpu")))
			io.flush()
		end
	end
end)
cleanup()
if not ok then
	die(tostring(err))
end
