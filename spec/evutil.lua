--- Helpers shared by the event specs (spec/3x-events*_spec.lua).
--
-- Every spec that counts events works in a namespace of its own (a hosts.pair
-- client with no tracking rule, or a routed topology), so that other specs'
-- entries, timing out in the run's namespace, never show up in a count.
--
--   local U = require "evutil"
--   U.now()                       monotonic seconds (float)
--   U.fresh()                     -> topo, ns: a private namespace (topo.ns.client)
--   U.private(set)                in a describe: setup/teardown of U.fresh() and a
--                                    handle on it, handed to set(topo, ns, h)
--   U.collect(sub, want, secs)    -> events: read sub until want(events) is true
--                                    or secs pass (never more); overflow events kept
--   U.spec(i [, proto])           distinct spec i for ct.create / ct.batch
--   U.cli_events(topo, role)      -> w: `conntrack -E` running in role's namespace;
--                                    w:lines() after w:stop(); ready when it returns
--   U.strip_userspace(line)       the CLI's " [USERSPACE] portid=... progname=..." tail removed
--   U.fdcount()                   descriptors open in this process
local hosts = require "hosts"
local H = require "cthelp"

local U = {}

local okuv, uv = pcall(require, "luv")
local okcq, cqueues = pcall(require, "cqueues")

--- Monotonic seconds.  luv or cqueues when installed (both are test deps),
-- else /proc/uptime (10 ms steps).
function U.now()
	if okuv then
		return uv.hrtime() / 1e9
	elseif okcq then
		return cqueues.monotime()
	end
	local f = assert(io.open("/proc/uptime"))
	local s = f:read("*n")
	f:close()
	return s
end

--- A private namespace with nothing tracked in it but what a test creates.
U.fresh = H.scratch

--- For a describe block: a private namespace and a handle on it, made in
-- setup and removed in teardown.  set(topo, ns, h) receives them (the
-- block's own locals), and set() again with nothing once they are gone.
function U.private(set)
	local busted = require "busted"
	local topo, h
	busted.setup(function()
		local ns
		topo, ns = U.fresh()
		h = assert(require("conntrack").open{ netns = ns })
		set(topo, ns, h)
	end)
	busted.teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
		set()
	end)
end

--- Reads sub (non-blocking reads, waits of at most 0.1 s) until want(list)
-- says enough, or until secs have passed.  Returns the list of events.
function U.collect(sub, want, secs)
	local got = {}
	local deadline = U.now() + (secs or 5)
	while not want(got) do
		local left = deadline - U.now()
		if left <= 0 then
			break
		end
		local evs = sub:read()
		if #evs == 0 then
			sub:wait(math.min(left, 0.1))
		end
		for _, e in ipairs(evs) do
			got[#got + 1] = e
		end
	end
	return got
end

--- Collects until n events for which pred(e) holds (default: all) arrived.
function U.collect_n(sub, n, pred, secs)
	local got = U.collect(sub, function(list)
		local k = 0
		for _, e in ipairs(list) do
			if not pred or pred(e) then
				k = k + 1
			end
		end
		return k >= n
	end, secs)
	local out = {}
	for _, e in ipairs(got) do
		if not pred or pred(e) then
			out[#out + 1] = e
		end
	end
	return out
end

--- A distinct IPv4 entry spec for index i (0 <= i < 62500 * 64511): addresses
-- from the documentation ranges, the source port keeps them apart.
function U.spec(i, proto)
	proto = proto or "udp"
	local s = {
		src = ("192.0.2.%d"):format(i % 250 + 1),
		dst = ("198.51.100.%d"):format((i // 250) % 250 + 1),
		proto = proto,
		sport = 1024 + i // 62500,
		dport = proto == "tcp" and 80 or 53,
		timeout = 600,
	}
	if proto == "tcp" then
		s.state = "ESTABLISHED"
	end
	return s
end

function U.specs(n, first, proto)
	local t = {}
	for i = 0, n - 1 do
		t[#t + 1] = U.spec((first or 0) + i, proto)
	end
	return t
end

--- The tuple part of a spec (what get/update/delete take).
function U.tuple(s)
	return { src = s.src, dst = s.dst, proto = s.proto, sport = s.sport, dport = s.dport,
		family = s.family }
end

function U.strip_userspace(line)
	return (line:gsub(" %[USERSPACE%] portid=%d+.*$", ""))
end

local seq = 0

--- `conntrack -E` (line-buffered, bounded by timeout) in role's namespace,
-- writing to a file.  Returns once the CLI is subscribed: a marker entry is
-- created until the CLI prints it (the marker's own lines are left out of
-- w:lines()).  extra: more CLI options, e.g. "-o id".
function U.cli_events(topo, role, extra, life)
	seq = seq + 1
	local file = ("/tmp/lct-%s-ev%d.out"):format(hosts.pid, seq)
	local w = { file = file, topo = topo, role = role }
	os.remove(file)
	local ok, out = topo:exec(role, ("timeout %d stdbuf -oL conntrack -E %s > %s 2>&1 & echo $!")
		:format(life or 30, extra or "", hosts.quote(file)))
	w.pid = ok and out:match("(%d+)")
	assert(w.pid, "cannot start conntrack -E: " .. tostring(out))
	topo.pids[#topo.pids + 1] = { ns = topo.ns[role], pid = w.pid }
	local marker = "-p udp -s 203.0.113.254 -d 203.0.113.253 --sport 9 --dport 9"
	local ready = false
	for _ = 1, 100 do
		topo:conntrack("-I " .. marker .. " -t 10 >/dev/null 2>&1", role)
		topo:conntrack("-D " .. marker .. " >/dev/null 2>&1", role)
		local f = io.open(file)
		local s = f and f:read("*a") or ""
		if f then f:close() end
		if s:find("203.0.113.254", 1, true) then
			ready = true
			break
		end
		hosts.sleep(0.05)
	end
	assert(ready, "conntrack -E never showed the marker entry")
	function w.stop()
		-- SIGTERM makes the CLI print its summary and flush
		topo:exec(role, "kill -TERM " .. w.pid .. " 2>/dev/null; i=0; while kill -0 " .. w.pid
			.. " 2>/dev/null && [ $i -lt 50 ]; do sleep 0.02; i=$((i+1)); done")
	end
	function w.lines()
		local t = {}
		local f = io.open(file)
		if not f then
			return t
		end
		for line in f:lines() do
			if line:match("^%s*%[%u+%]") and not line:find("203.0.113.254", 1, true) then
				t[#t + 1] = line
			end
		end
		f:close()
		os.remove(file)
		return t
	end
	return w
end

--- Number of open descriptors of this process.
U.fdcount = H.fds

--- Finds the first event in list for which pred holds; returns it and its index.
function U.find(list, pred, from)
	for i = from or 1, #list do
		if pred(list[i]) then
			return list[i], i
		end
	end
end

return U
