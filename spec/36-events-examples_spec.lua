-- The events examples run as child processes (bounded arguments, bounded
-- waits), in a private namespace, and print what they should: the logger
-- exactly what `conntrack -E` prints, and a resync after an overflow.
local hosts = require "hosts"
local H = require "helpers"

local q = hosts.quote

local function slurp(path)
	return H.read(path) or ""
end

-- Starts `lua examples/<name> args` in namespace ns, waits (bounded) for its
-- "# listening" line on stderr.  Returns p with p.wait() -> out, err.
local function start(ns, name, args)
	local base = ("/tmp/lct-%s-ex-%s"):format(hosts.pid, name:gsub("%W", "_"))
	local p = { out = base .. ".out", err = base .. ".err" }
	os.remove(p.out)
	os.remove(p.err)
	local ok, pid = hosts.run(("ip netns exec %s timeout 30 %s examples/%s %s > %s 2> %s & echo $!")
		:format(q(ns), H.lua, name, args, q(p.out), q(p.err)))
	assert(ok, pid)
	p.pid = pid:match("%d+")
	local ready = false
	for _ = 1, 200 do
		if slurp(p.err):find("# listening", 1, true) then
			ready = true
			break
		end
		hosts.sleep(0.02)
	end
	assert(ready, name .. " never said it was listening: " .. slurp(p.err))
	--- Waits (bounded) until stderr matches pattern.
	function p.stderr_matches(pattern)
		for _ = 1, 200 do
			if slurp(p.err):find(pattern) then return true end
			hosts.sleep(0.02)
		end
		error(name .. ": stderr never matched " .. pattern .. ": " .. slurp(p.err), 2)
	end
	function p.wait(secs)
		local gone = hosts.run(("i=0; while kill -0 %s 2>/dev/null && [ $i -lt %d ]; do sleep 0.05; i=$((i+1)); done; "
			.. "! kill -0 %s 2>/dev/null"):format(p.pid, math.floor((secs or 10) / 0.05), p.pid))
		if not gone then
			hosts.run("kill -KILL " .. p.pid .. " 2>/dev/null")
		end
		local out, err = slurp(p.out), slurp(p.err)
		os.remove(p.out)
		os.remove(p.err)
		assert(gone, name .. " did not end in time; stderr: " .. err)
		return out, err
	end
	return p
end

local function lines(s)
	local t = {}
	for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
	return t
end

describe("events: examples", function()
	local topo, ns, h
	H.private(function(t, n, hh) topo, ns, h = t, n, hh end)
	before_each(function()
		assert(h:flush())
	end)

	local function cli(args)
		local ok, out = topo:conntrack(args)
		assert.is_true(ok, out)
	end

	it("events-logger.lua --count 10 prints what conntrack -E prints", function()
		local w = H.cli_events(topo, "host")
		local p = start(ns, "events-logger.lua", "--count 10 --timeout 5")
		for port = 1, 4 do
			cli(("-I -s 192.0.2.1 -d 198.51.100.1 -p tcp --sport %d --dport 80 -t 60 --state ESTABLISHED"):format(port))
		end
		cli("-U -s 192.0.2.1 -d 198.51.100.1 -p tcp --sport 1 --dport 80 -m 5")
		cli("-I -s 2001:db8:1::1 -d 2001:db8:2::1 -p udp --sport 9 --dport 53 -t 30")
		cli("-D -p tcp")
		cli("-D -p udp")
		local out, err = p.wait()
		w.stop()
		local cli_lines = w.lines()
		local got = lines(out)
		-- 11 changes: the logger stops after the 10th
		assert.equals(10, #got, out)
		assert.equals(11, #cli_lines)
		for i, l in ipairs(got) do
			assert.equals(H.strip_userspace(cli_lines[i]), l)
		end
		assert.matches("# 10 events, 0 overflows, 1 flows alive", err)
	end)

	it("events-logger.lua --types, --proto, --id select and format", function()
		local p = start(ns, "events-logger.lua", "--count 2 --timeout 5 --types new --proto udp --id")
		cli("-I -s 192.0.2.2 -d 198.51.100.2 -p tcp --sport 1 --dport 80 -t 60 --state ESTABLISHED")
		cli("-I -s 192.0.2.2 -d 198.51.100.2 -p udp --sport 2 --dport 53 -t 60")
		cli("-D -p udp")
		cli("-I -s 192.0.2.2 -d 198.51.100.2 -p udp --sport 3 --dport 53 -t 60")
		local out, err = p.wait()
		local got = lines(out)
		assert.equals(2, #got, out)
		assert.matches("^    %[NEW%] udp .* sport=2 .* id=%d+$", got[1])
		assert.matches("^    %[NEW%] udp .* sport=3 .* id=%d+$", got[2])
		assert.matches("kernel filter", err)
	end)

	it("events-logger.lua resynchronises after an overflow and ends knowing every flow", function()
		local p = start(ns, "events-logger.lua", "--timeout 1 --rcvbuf 4096 --types new")
		local ok = h:batch("create", H.specs(20000, 0))
		assert.equals(20000, ok)
		local out, err = p.wait(20)
		assert.matches("# overflow 1: the kernel dropped events; resynchronising from a dump", out)
		assert.matches("# resync: %d+ flows in the table %(%d+ known from events, %d+ learnt from the dump, 0 gone%)", out)
		local n, ov, alive = err:match("# (%d+) events, (%d+) overflows, (%d+) flows alive")
		assert.is_truthy(n, err)
		assert.is_true(tonumber(ov) >= 1)
		assert.is_true(tonumber(n) < 20000)
		-- events and dumps together account for the whole table
		assert.equals(20000, tonumber(alive))
		-- every overflow line is followed, after the queued events, by a resync
		local _, novf = out:gsub("# overflow %d+:", "")
		local _, nres = out:gsub("# resync:", "")
		assert.equals(tonumber(ov), novf)
		assert.equals(novf, nres)
	end)

	it("event-loop.lua (cqueues) prints live events and ends by --count or --duration", function()
		local p = start(ns, "event-loop.lua", "--count 3 --duration 10 --every 0.1 --types new")
		-- its status timer runs in the same loop while it waits
		p.stderr_matches("# [%d.]+ s: 0 events")
		for port = 1, 4 do
			cli(("-I -s 192.0.2.3 -d 198.51.100.3 -p udp --sport %d --dport 53 -t 60"):format(port))
		end
		local out, err = p.wait()
		local got = lines(out)
		assert.equals(3, #got, out)
		for i, l in ipairs(got) do
			assert.matches("^    %[NEW%] udp      17 60 src=192%.0%.2%.3 .*sport=" .. i .. " ", l)
		end
		assert.matches("# 3 events in [%d.]+ s, 0 overflows", err)
		assert.matches("# [%d.]+ s: 0 events", err)

		local t0 = H.now()
		p = start(ns, "event-loop.lua", "--duration 0.5 --every 0")
		out, err = p.wait()
		assert.equals("", out)
		assert.matches("# 0 events in 0%.[5-9] s", err)
		assert.is_true(H.now() - t0 < 5)
	end)

	it("event-loop-luv.lua prints live events and ends by --count or --duration", function()
		local p = start(ns, "event-loop-luv.lua", "--count 2 --duration 10 --every 0.1 --types destroy")
		p.stderr_matches("# [%d.]+ s: 0 events")
		cli("-I -s 192.0.2.4 -d 198.51.100.4 -p udp --sport 7 --dport 53 -t 60")
		cli("-D -s 192.0.2.4 -d 198.51.100.4 -p udp --sport 7 --dport 53")
		cli("-I -s 192.0.2.4 -d 198.51.100.4 -p udp --sport 8 --dport 53 -t 60")
		cli("-D -s 192.0.2.4 -d 198.51.100.4 -p udp --sport 8 --dport 53")
		local out, err = p.wait()
		local got = lines(out)
		assert.equals(2, #got, out)
		assert.matches("^%[DESTROY%] udp .*sport=7 ", got[1])
		assert.matches("^%[DESTROY%] udp .*sport=8 ", got[2])
		assert.matches("# 2 events in [%d.]+ s, 0 overflows", err)
		assert.matches("# [%d.]+ s: 0 events", err)

		p = start(ns, "event-loop-luv.lua", "--duration 0.5 --every 0")
		out, err = p.wait()
		assert.equals("", out)
		assert.matches("# 0 events in 0%.[5-9] s", err)
	end)

	it("bad options: usage and exit status 2", function()
		for _, ex in ipairs({ "events-logger.lua", "event-loop.lua", "event-loop-luv.lua" }) do
			local ok, out, code = hosts.run(("ip netns exec %s timeout 10 %s examples/%s --nosuch")
				:format(q(ns), H.lua, ex))
			assert.is_false(ok)
			assert.equals(2, code, ex .. ": " .. out)
			assert.matches("usage:", out)
		end
	end)
end)
