--- The specs' support layer: what a spec needs besides the module and busted,
-- one name per concept.  Plain Lua 5.1, 5.3, 5.4 and LuaJIT.  Built on
-- tools/hosts.lua (namespaces, veth pairs, nft NAT, socat traffic: also used
-- by the examples), which specs require as `hosts` themselves.
--
--   local H = require "helpers"
--
-- Lua versions
--   H.lua                 the interpreter under test, for child processes
--                         ($LCT_LUA, which the Makefile sets; else this one's name)
--   H.version             "5.1", "5.3", "5.4" or "jit"
--   H.CLOSE               true where <close> exists and a generic for closes
--                         its closing value on break and error (Lua 5.4)
--   H.it54(name, fn)      it() on 5.4; elsewhere a pending test saying why
--   H.load54(src)         compiles src (5.4-only syntax) on 5.4, else nil
--   H.band(a, b), H.bxor(a, b)  bitwise and, xor of two integers 0 .. 2^32-1
--   H.is_integer(x)       a number without fraction (math.type where it exists)
-- Files, time, this process
--   H.read(path)          contents or nil
--   H.lines(text)         non-empty lines
--   H.now()               monotonic seconds
--   H.fds()               descriptors open in this process now
--   H.fds_settled()       the same once collecting garbage closes nothing more
--   H.fd_target(fd)       what fd is ("socket:[...]"), nil when closed
--   H.rss_kib()           resident set size
-- The conntrack CLI (ns: a namespace name, nil for this process's)
--   H.cli(ns, args)       -> stdout lines, ok, stderr
--   H.cli_ok(ns, args)    -> stdout lines, raising when the CLI fails
--   H.find(lines, ...)    first line holding every plain fragment
--   H.parse(line)         the fields of a `conntrack -L` line
--   H.untimed(line)       a -L line with its ticking columns blanked
--   H.comparable(line)    H.untimed, and the reference count left out (-G and
--                         get() print use=2 where -L prints use=1)
--   H.same_line(mod, cli) both lines, read until a tick did not split them
--   H.cli_events(topo, role [, extra [, life]]) -> w: `conntrack -E` running;
--                         w.stop() once it printed all so far, then w.lines()
--   H.strip_userspace(line) the CLI's " [USERSPACE] ..." tail removed
-- Namespaces
--   H.assert_private()    refuses to run in the host's own namespace
--   H.private(set)        in a describe: a scratch namespace and a handle on
--                         it for the block, set(topo, ns, h), set() after
--   H.scratch()           -> topo, ns, h: the same, made now; the caller ends it
--                         (h:close(), topo:destroy())
--   H.routed(opts, set)   in a describe: hosts.new(opts) for the block, echo
--                         listeners for opts.serve ("tcp", "udp", true: both;
--                         taken out of opts) and a handle on the router;
--                         set(topo, h), set() after
--   H.sh(ns, cmd)         a shell command's output inside namespace ns, and ok
--   H.nat_flows(topo)     routed topology with every NAT preset, listeners
--                         serving: one flow of each kind through the router
--                         (and one both DNATed and SNATed); -> {name = sport}
--   H.finally(finally)    -> add: in a test, given busted's finally, add(fn)
--                         registers a cleanup; all run, last first, when the
--                         test ends (finally itself keeps only the last
--                         function given in a test)
-- Entries and specs
--   H.key(e), H.keyset(list or dump) -> set, n, H.sorted(set)
--   H.select(list, pred)  the entries for which pred holds
--   H.spec_match(opts, e) dump options (as the kernel applies them) in Lua
--   H.spec(i [, proto]), H.specs(n [, first [, proto]]), H.tuple(spec)
-- Events
--   H.collect(sub, want, secs), H.collect_n(sub, n [, pred [, secs]])

local hosts = require "hosts"

local H = {}
local q = hosts.quote

-- Lua versions -----------------------------------------------------------------

H.version = (type(jit) == "table" and "jit") or _VERSION:match("%d+%.%d+")
H.lua = os.getenv("LCT_LUA") or (H.version == "jit" and "luajit" or "lua" .. H.version)

local load54 = H.version == "5.4" and load or nil
H.CLOSE = load54 ~= nil and load54("local x <close> = nil") ~= nil

function H.load54(src)
	if not H.CLOSE then return nil end
	return assert(load54(src, "=(5.4 chunk)"))
end

--- it(name, fn) where the feature under test exists (Lua 5.4: <close>, the
-- closing value of a generic for); a pending test elsewhere.
function H.it54(name, fn)
	local busted = require "busted"
	if H.CLOSE then
		busted.it(name, fn)
	else
		busted.pending(name .. " [Lua 5.4 only: <close> and the closing value of a generic for; this is "
			.. H.version .. "]")
	end
end

-- Bit by bit, so that the same code runs where there are no bitwise
-- operators (5.1) and no bit library (5.3, 5.4).
local function bitwise(keep, a, b)
	local r, bit = 0, 1
	a, b = a % 4294967296, b % 4294967296
	while a > 0 or b > 0 do
		if keep(a % 2, b % 2) then r = r + bit end
		a, b, bit = math.floor(a / 2), math.floor(b / 2), bit * 2
	end
	return r
end

function H.band(a, b)
	return bitwise(function(x, y) return x == 1 and y == 1 end, a, b)
end

function H.bxor(a, b)
	return bitwise(function(x, y) return x ~= y end, a, b)
end

function H.is_integer(x)
	if math.type then return math.type(x) == "integer" end
	return type(x) == "number" and x == math.floor(x)
end

-- Files, time, this process ----------------------------------------------------

function H.read(path)
	local f = io.open(path)
	if not f then return nil end
	local s = f:read("*a")
	f:close()
	return s
end

function H.lines(text)
	local out = {}
	for l in text:gmatch("[^\n]+") do out[#out + 1] = l end
	return out
end

local okuv, uv = pcall(require, "luv")
local okcq, cqueues = pcall(require, "cqueues")

--- Monotonic seconds: luv or cqueues (both test dependencies), else
-- /proc/uptime (10 ms steps).
function H.now()
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

local lfs = require "lfs"

--- Descriptors open in this process, from /proc/self/fd (lfs, a busted
-- dependency: no program started, so no pipe of ours in the count; the
-- directory's own descriptor is in every count alike).
function H.fds()
	local n = 0
	for name in lfs.dir("/proc/self/fd") do
		if name ~= "." and name ~= ".." then n = n + 1 end
	end
	return n
end

--- The descriptor count once garbage holds none any more: full collections
-- until two in a row close nothing (a finalizer may free objects that need
-- another cycle, e.g. an event loop's controller).  Take both ends of a
-- count with this, so that garbage from earlier tests closing a descriptor
-- in between cannot change it.
function H.fds_settled()
	local n = H.fds()
	for _ = 1, 20 do
		collectgarbage("collect")
		collectgarbage("collect")
		local m = H.fds()
		if m == n then return n end
		n = m
	end
	error("helpers.fds_settled: the descriptor count keeps changing", 2)
end

function H.fd_target(fd)
	return lfs.symlinkattributes("/proc/self/fd/" .. fd, "target")
end

function H.rss_kib()
	return tonumber(H.read("/proc/self/status"):match("VmRSS:%s*(%d+)"))
end

-- The conntrack CLI ------------------------------------------------------------

function H.cli(ns, args)
	local errf = os.tmpname()
	local ok, out = hosts.run((ns and ("ip netns exec " .. q(ns) .. " ") or "") .. "conntrack " .. args
		.. " 2>" .. q(errf))
	local err = H.read(errf) or ""
	os.remove(errf)
	return H.lines(out), ok, err
end

function H.cli_ok(ns, args)
	local lines, ok, err = H.cli(ns, args)
	if not ok then error("conntrack " .. args .. ": " .. err, 2) end
	return lines
end

function H.find(lines, ...)
	local frags = { ... }
	for _, line in ipairs(lines) do
		local all = true
		for _, f in ipairs(frags) do
			if not line:find(f, 1, true) then all = false break end
		end
		if all then return line end
	end
	return nil
end

local TUPLE_KEYS = { src = true, dst = true, sport = true, dport = true, type = true,
	code = true, id = true, packets = true, bytes = true, srckey = true, dstkey = true }

--- One `conntrack -L` line (default or extended output) as
-- { family, l3num, proto, protonum, timeout, state, orig = {...},
--   reply = {...}, flags = {UNREPLIED = true, ...}, mark, zone, use, id, ... }.
-- Numbers become numbers; tuple keys keep the CLI's names (type/code/id
-- for ICMP).
function H.parse(line)
	local toks = {}
	for t in line:gmatch("%S+") do toks[#toks + 1] = t end
	local r = { flags = {}, orig = {}, reply = {} }
	local i = 1
	if toks[1] == "ipv4" or toks[1] == "ipv6" then
		r.family, r.l3num, i = toks[1], tonumber(toks[2]), 3
	end
	r.proto, r.protonum, r.timeout = toks[i], tonumber(toks[i + 1]), tonumber(toks[i + 2])
	i = i + 3
	if toks[i] and not toks[i]:find("=", 1, true) and not toks[i]:find("^%[") then
		r.state = toks[i]
		i = i + 1
	end
	local cur, top = r.orig, false
	while i <= #toks do
		local t = toks[i]
		local flag = t:match("^%[(%u[%u_]*)%]$")
		if flag then
			r.flags[flag] = true
		elseif t:match("^%[start=") or t:match("^%[stop=") then
			-- ktimestamp: "[start=Tue Nov 24 07:29:24 2026]", several tokens
			local k = t:match("^%[(%a+)=")
			local parts = { t:sub(#k + 3) }
			while not parts[#parts]:find("%]$") and i < #toks do
				i = i + 1
				parts[#parts + 1] = toks[i]
			end
			r[k] = table.concat(parts, " "):sub(1, -2)
		else
			local k, v = t:match("^([%w_-]+)=(.*)$")
			if k then
				v = tonumber(v) or v
				if not top and TUPLE_KEYS[k] then
					if k == "src" and cur.src ~= nil then cur = r.reply end
					cur[k] = v
				else
					top = true
					r[k] = v
				end
			end
		end
		i = i + 1
	end
	return r
end

--- A -L line (default or extended) with what moves with the clock blanked:
-- the timeout column as "T", delta-time=N as delta-time=D.
function H.untimed(line)
	line = line:gsub("^(%S+%s+%d+%s+)%d+", "%1T")
	line = line:gsub("^(ipv%d%s+%d+%s+%S+%s+%d+%s+)%d+", "%1T")
	return (line:gsub("delta%-time=%d+", "delta-time=D"))
end

function H.comparable(line)
	return (H.untimed(line):gsub(" use=%d+", ""))
end

--- Calls mod() and cli() (each returning a line) until the module's line,
-- read before or after the CLI's, equals it: lines carry ages and timeouts
-- in seconds, which may tick between two reads.  Returns both lines of the
-- last attempt.
function H.same_line(mod, cli, tries)
	local a, c, b
	for _ = 1, tries or 3 do
		a = mod()
		c = cli()
		b = mod()
		if a == c then return a, c end
		if b == c then return b, c end
	end
	return a, c
end

function H.strip_userspace(line)
	return (line:gsub(" %[USERSPACE%] portid=%d+.*$", ""))
end

local evseq = 0
local MARKER = "-p udp -s 203.0.113.254 -d 203.0.113.253 --sport 9 --dport 9"

--- `conntrack -E` (line-buffered, bounded by life seconds, default 30) in
-- role's namespace, writing to a file.  Returns once the CLI is subscribed.
-- extra: more CLI options, e.g. "-o id".  w.stop() ends it once it has
-- printed every event queued before the call; then w.lines() are its event
-- lines.  Both use a marker flow (created and deleted until the CLI prints
-- its end: events come in order, so all earlier ones are printed by then),
-- whose own lines are left out of w.lines().
function H.cli_events(topo, role, extra, life)
	evseq = evseq + 1
	local file = ("/tmp/lct-%s-ev%d.out"):format(hosts.pid, evseq)
	local w = { file = file, topo = topo, role = role }
	os.remove(file)
	local ok, out = topo:exec(role, ("timeout %d stdbuf -oL conntrack -E %s > %s 2>&1 & echo $!")
		:format(life or 30, extra or "", q(file)))
	w.pid = ok and out:match("(%d+)")
	assert(w.pid, "cannot start conntrack -E: " .. tostring(out))
	topo.pids[#topo.pids + 1] = { ns = topo.ns[role], pid = w.pid }
	local function marker_ends()
		local n = 0
		for _ in (H.read(file) or ""):gmatch("DESTROY%][^\n]*src=203%.0%.113%.254 ") do n = n + 1 end
		return n
	end
	-- waits (bounded) until the CLI printed the end of one more marker flow
	local function barrier(what)
		local before = marker_ends()
		for _ = 1, 100 do
			topo:conntrack("-I " .. MARKER .. " -t 10 >/dev/null 2>&1", role)
			topo:conntrack("-D " .. MARKER .. " >/dev/null 2>&1", role)
			for _ = 1, 5 do
				if marker_ends() > before then return end
				hosts.sleep(0.01)
			end
		end
		error("conntrack -E never printed the marker flow's end (" .. what .. ")", 3)
	end
	barrier("start")
	function w.stop()
		barrier("stop")
		-- SIGTERM makes the CLI print its summary and flush
		topo:exec(role, "kill -TERM " .. w.pid .. " 2>/dev/null; i=0; while kill -0 " .. w.pid
			.. " 2>/dev/null && [ $i -lt 50 ]; do sleep 0.02; i=$((i+1)); done")
	end
	function w.lines()
		local t = {}
		for _, line in ipairs(H.lines(H.read(file) or "")) do
			if line:match("^%s*%[%u+%]") and not line:find("203.0.113.254", 1, true) then
				t[#t + 1] = line
			end
		end
		os.remove(file)
		return t
	end
	return w
end

-- Namespaces -------------------------------------------------------------------

--- Refuses to go on in the host's own network namespace: the kernel specs
-- flush and fill the table of the namespace they run in (tools/netns-run
-- makes a private one).
function H.assert_private()
	-- the namespace tools/netns-run made ($LCT_NETNS), by inode: comparing
	-- with init's is not enough where a container hides init's namespace
	local ns = os.getenv("LCT_NETNS")
	local mine = lfs.attributes("/proc/self/ns/net", "ino")
	local run = ns and ns:match("^[%w_.-]+$") and lfs.attributes("/run/netns/" .. ns, "ino")
	if mine == nil or mine ~= run then
		error("refusing to run outside the private namespace of tools/netns-run (LCT_NETNS)", 2)
	end
end

--- For a describe block: a scratch namespace of its own (hosts.scratch:
-- nothing tracked there but what a test creates) and a handle bound to it,
-- made in setup and removed in teardown.  set(topo, ns, h) receives them
-- (the block's own locals), and set() again with nothing once they are gone.
function H.scratch()
	local topo = hosts.scratch()
	local h, msg = require("conntrack").open{ netns = topo.ns.host }
	if not h then
		topo:destroy()
		error(msg, 2)
	end
	return topo, topo.ns.host, h
end

function H.sh(ns, cmd)
	local ok, out = hosts.run(ns and ("ip netns exec " .. hosts.quote(ns) .. " sh -c " .. hosts.quote(cmd)) or cmd)
	return out, ok
end

function H.finally(finally)
	local fns = {}
	finally(function()
		for i = #fns, 1, -1 do pcall(fns[i]) end
	end)
	return function(fn) fns[#fns + 1] = fn end
end

-- setup: make() -> topo, h; teardown: both ended; set(topo, h), then set().
local function for_block(make, set)
	local busted = require "busted"
	local topo, h
	busted.setup(function()
		topo, h = make()
		set(topo, h)
	end)
	busted.teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
		h, topo = nil, nil
		set()
	end)
end

local function open_on(topo, role)
	local h, msg = require("conntrack").open{ netns = topo.ns[role] }
	if not h then
		topo:destroy()
		error(msg, 0)
	end
	return topo, h
end

function H.routed(opts, set)
	for_block(function()
		local o = {}
		for k, v in pairs(opts or {}) do o[k] = v end
		local serve = o.serve
		o.serve = nil
		local topo = hosts.new(o)
		if serve then topo:serve(serve ~= true and serve or nil) end
		return open_on(topo, "router")
	end, set)
end

function H.private(set)
	for_block(function()
		return open_on(hosts.scratch(), "host")
	end, function(topo, h)
		if topo then set(topo, topo.ns.host, h) else set() end
	end)
end

function H.nat_flows(topo)
	local A, P = hosts.routed_addr, hosts.port
	local flows = {}
	-- one flow with both translations: a DNATed flow to 9003 also SNATed
	assert(topo:nft("router", "table ip lct_both {\n\tchain post {\n"
		.. "\t\ttype nat hook postrouting priority 200; policy accept;\n"
		.. "\t\toifname \"s0\" ip daddr " .. A.server .. " tcp dport " .. P.dnat_to
		.. " snat ip to " .. A.snat .. "\n\t}\n}"))
	local function tcp(name, addr, port)
		local ok, reply, sport = topo:tcp_request("client", addr, port, name)
		assert(ok and reply == name, name .. ": " .. tostring(reply))
		flows[name] = sport
	end
	local function udp(name, addr, port)
		-- the first datagram may wait for neighbour discovery: allow a retry
		local ok, reply, sport
		for _ = 1, 3 do
			ok, reply, sport = topo:udp_send("client", addr, port, name, 1, { wait = 1 })
			if ok then break end
		end
		assert(ok and reply == name, name .. ": " .. tostring(reply))
		flows[name] = sport
	end
	tcp("plain", A.server, P.plain)
	udp("snat", A.server, P.snat)
	tcp("masq", A.server, P.masquerade)
	tcp("both", A.public, P.dnat)     -- DNAT in prerouting, then lct_both's SNAT
	tcp("redir", A.server, P.redirect)
	udp("snat6", A.server6, P.snat)
	tcp("masq6", A.server6, P.masquerade)
	tcp("dnat6", A.public6, P.dnat)
	return flows
end

-- Entries and specs ------------------------------------------------------------

--- A key naming a flow by its original tuple and zone (CTA_ID is a hash,
-- not unique), for sets of entries.
function H.key(e)
	local o = e.orig
	return table.concat({ e.proto or "?", o.src or "?", o.dst or "?",
		tostring(o.sport or o.icmp_id or ""), tostring(o.dport or o.icmp_type or ""),
		tostring(e.zone or 0) }, " ")
end

--- The set of keys of an array of entries or of a dump (and how many there were).
function H.keyset(iter_or_list, ...)
	local s, n = {}, 0
	if type(iter_or_list) == "table" then
		for _, e in ipairs(iter_or_list) do s[H.key(e)] = true n = n + 1 end
	else
		for e in iter_or_list, ... do s[H.key(e)] = true n = n + 1 end
	end
	return s, n
end

--- The keys of a set, sorted, for readable assertions.
function H.sorted(set)
	local t = {}
	for k in pairs(set) do t[#t + 1] = k end
	table.sort(t)
	return t
end

function H.select(list, pred)
	local out = {}
	for _, e in ipairs(list) do
		if pred(e) then out[#out + 1] = e end
	end
	return out
end

-- The kernel's status bit numbers (include/uapi/linux/netfilter/nf_conntrack_common.h)
-- and protocol numbers: the oracle below keeps its own, apart from the module's.
local STATUS_BIT = { EXPECTED = 0, SEEN_REPLY = 1, ASSURED = 2, CONFIRMED = 3, SRC_NAT = 4,
	DST_NAT = 5, SEQ_ADJUST = 6, SRC_NAT_DONE = 7, DST_NAT_DONE = 8, DYING = 9, FIXED_TIMEOUT = 10,
	TEMPLATE = 11, NAT_CLASH = 12, HELPER = 13, OFFLOAD = 14, HW_OFFLOAD = 15 }
local PROTO = { tcp = 6, udp = 17, udplite = 136, icmp = 1, icmpv6 = 58, sctp = 132, dccp = 33, gre = 47 }

--- Dump options (family, zone, mark/mark_mask, status/status_mask as
-- numbers, and the tuple filter's exact proto, addresses and ports)
-- evaluated in Lua on an entry, as the kernel applies them.
function H.spec_match(spec, e)
	if spec == nil then return true end
	if spec.family and e.family ~= spec.family then return false end
	if spec.zone and (e.zone or 0) ~= spec.zone then return false end
	if spec.mark and H.band(e.mark or 0, spec.mark_mask or 4294967295) ~= spec.mark then
		return false
	end
	if spec.status then
		local v = 0
		for name, on in pairs(e.status or {}) do
			local b = STATUS_BIT[name] or (type(name) == "number" and name)
			if on and b then v = v + 2 ^ b end
		end
		if H.band(v, spec.status_mask) ~= spec.status then return false end
	end
	if spec.proto and e.protonum ~= (PROTO[spec.proto] or spec.proto) then return false end
	for _, k in ipairs{ "src", "dst", "sport", "dport" } do
		if spec[k] ~= nil and e.orig[k] ~= spec[k] then return false end
		if spec["reply_" .. k] ~= nil and e.reply[k] ~= spec["reply_" .. k] then return false end
	end
	return true
end

--- A distinct IPv4 entry spec for index i (0 <= i < 62500 * 64511): addresses
-- from the documentation ranges, the source port keeps them apart.
function H.spec(i, proto)
	proto = proto or "udp"
	local s = {
		src = ("192.0.2.%d"):format(i % 250 + 1),
		dst = ("198.51.100.%d"):format(math.floor(i / 250) % 250 + 1),
		proto = proto,
		sport = 1024 + math.floor(i / 62500),
		dport = proto == "tcp" and 80 or 53,
		timeout = 600,
	}
	if proto == "tcp" then s.state = "ESTABLISHED" end
	return s
end

function H.specs(n, first, proto)
	local t = {}
	for i = 0, n - 1 do t[#t + 1] = H.spec((first or 0) + i, proto) end
	return t
end

--- The tuple part of a spec (what get/update/delete take).
local TUPLE_ORDER = { "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
	"icmp_id", "zone", "orig_zone", "reply_zone", "srckey", "dstkey" }

--- The tuple of a spec: the keys get and delete take (a spec's other keys raise there).
function H.tuple(s)
	local t = {}
	for _, k in ipairs(TUPLE_ORDER) do
		t[k] = s[k]
	end
	return t
end

-- Events -----------------------------------------------------------------------

--- Reads sub (non-blocking reads, waits of at most 0.1 s) until want(list)
-- says enough, or until secs (default 5) have passed.  Returns the list of
-- events, overflow events included.
function H.collect(sub, want, secs)
	local got = {}
	local deadline = H.now() + (secs or 5)
	while not want(got) do
		local left = deadline - H.now()
		if left <= 0 then break end
		local evs = sub:read()
		if #evs == 0 then sub:wait(math.min(left, 0.1)) end
		for _, e in ipairs(evs) do got[#got + 1] = e end
	end
	return got
end

--- Collects until n events for which pred(e) holds (default: any) arrived;
-- returns those.
function H.collect_n(sub, n, pred, secs)
	local got = H.collect(sub, function(list)
		local k = 0
		for _, e in ipairs(list) do
			if not pred or pred(e) then k = k + 1 end
		end
		return k >= n
	end, secs)
	return pred and H.select(got, pred) or got
end

return H
