--- Test hosts for the lua-conntrack specs, examples and benchmarks: network
-- namespaces joined by veth pairs, NAT presets written with nft, and bounded
-- real traffic made with socat.  (tools/?.lua is on the LUA_PATH the Makefile
-- sets; the spec-only helpers built on it are in spec/helpers.lua.)
--
-- Plain Lua 5.1 - 5.4, no extra libraries (io.popen / os.execute only).  Needs
-- root, iproute2, nftables, socat, coreutils `timeout` and `ss`.  Meant to run
-- inside tools/netns-run, but every command names its namespace explicitly,
-- so nothing here touches the namespace the Lua process itself runs in.
--
--     local hosts = require "hosts"
--     local topo = hosts.new{ nat = true }          -- client - router - server
--     finally(topo.destroy)                          -- or topo:destroy(); idempotent
--     topo:serve("tcp")                              -- echo listeners on the port map
--     local c = topo:tcp_connect("client", topo.addr.public, hosts.port.dnat, { hold = 5 })
--     local ok, out = topo:exec("router", "conntrack -L -p tcp")
--     c:close()
--
-- ROUTED TOPOLOGY  hosts.new{...}   (namespaces lct-<pid>-<n>-client|router|server)
--
--   client eth0 ------------ c0  router  s0 ------------ eth0 server
--   192.0.2.2/24          192.0.2.1/24   198.51.100.1/24      198.51.100.2/24
--   2001:db8:1::2/64  2001:db8:1::1/64   2001:db8:2::1/64     2001:db8:2::2/64
--                                        198.51.100.100/24 (SNAT address)
--                                        2001:db8:2::100/64 (SNAT address)
--   client and server route by default via the router; the router forwards
--   IPv4 and IPv6 and has no default route.  203.0.113.10 / 2001:db8:3::10 is
--   the "public" DNAT address: it exists on no interface, the router's
--   prerouting DNAT rule is the only thing that answers for it.
--
-- PAIR TOPOLOGY  hosts.pair{...}   (namespaces lct-<pid>-<n>-client|server)
--
--   client eth0 ---------------------------------------- eth0 server
--   192.0.2.1/24, 192.0.2.11/24 (SNAT address)             192.0.2.2/24
--   2001:db8:1::1/64, 2001:db8:1::11/64 (SNAT address)     2001:db8:1::2/64
--   client routes by default via the server (so 203.0.113.10 has a route
--   before the output DNAT rule rewrites it).  NAT happens in the client's own
--   table, on locally generated traffic.
--
-- TWIN TOPOLOGY  hosts.twin{...}   (lct-<pid>-<n>-client|a|b|server)
--
--   Two routers a and b between one client LAN and one server LAN (a
--   bridge br0 in the client and in the server, each router's c0 / s0
--   plugged into it), and a link of their own between a and b (sync):
--
--                    192.0.2.1  c0 [a] s0  198.51.100.1
--   client br0 ----+         sync 203.0.113.249/30      +---- br0 server
--   192.0.2.2/24   |         sync 203.0.113.250/30      |  198.51.100.2/24
--   2001:db8:1::2  +----  192.0.2.3  c0 [b] s0  198.51.100.3  2001:db8:2::2
--   (routers' v6: 2001:db8:1::1/::3 on c0, 2001:db8:2::1/::3 on s0,
--    sync 2001:db8:ff::1/::2)
--   client and server route by default via a; topo:failover("b") takes a's
--   links down and moves both default routes to b (topo:failover("a") the
--   other way).  With nat, both routers translate alike: every flow from
--   the client LAN leaving s0 is SNATed to 203.0.113.100 (v6:
--   2001:db8:3::100, an address on no interface: the server reaches it
--   through its default route), optionally from a port range
--   (nat = { snat = { ports = "40000-59999", random = true } }), and
--   203.0.113.10:8003 / [2001:db8:3::10]:8003 is DNATed to the server's
--   port 9003 (a port forward).  Both routers forward; nothing syncs their
--   tables (that is the job of whatever runs on them).
--
-- SCRATCH NAMESPACE  hosts.scratch{...}   (lct-<pid>-<n>-host)
--
--   one namespace, role "host", nothing in it but lo: a private conntrack
--   table for entries made through netlink (no traffic, no NAT).  Not
--   tracked unless track = true.
--
-- PORT MAP  (hosts.port; every NAT rule matches tcp and udp on its own
-- destination port, so one flow of each kind can exist at once)
--
--   plain       8000  no NAT
--   snat        8001  routed: client -> server:8001 leaves the router from
--                     198.51.100.100 (v6: 2001:db8:2::100), optionally from
--                     a port range (nat = { snat = { ports = "40000-40009" } })
--                     pair: client -> server:8001 leaves from 192.0.2.11
--                     (v6: 2001:db8:1::11)
--   masquerade  8002  routed only: client -> server:8002 leaves from
--                     198.51.100.1 / 2001:db8:2::1 (router's s0 primary address)
--   dnat        8003  client -> 203.0.113.10:8003 (v6: [2001:db8:3::10]:8003)
--                     goes to the server's port 9003 (hosts.port.dnat_to);
--                     routed: in the router's prerouting, pair: in the
--                     client's output chain
--   redirect    8004  routed: client -> anything:8004 arriving on the router's
--                     c0 is redirected to the router's own port 9004
--                     (hosts.port.redirect_to; reply source 192.0.2.1 /
--                     2001:db8:1::1); pair: client -> anything:8004 goes to
--                     the client's own port 9004 (127.0.0.1 / ::1)
--
-- topo:serve([proto]) starts echo listeners on all of those (server: 8000 8001
-- 8002 9003, router or pair client: 9004; twin: server 8000 and 9003).
--
-- Every namespace gets net.netfilter.nf_conntrack_acct=1,
-- nf_conntrack_timestamp=1 and IPv6 DAD off, and (unless track = false) a tiny
-- nft table "lct_track" whose ct expression makes the kernel track
-- connections there: since Linux 4.15 conntrack only hooks into a namespace
-- once something there needs it.  NAT rules live in "table inet lct_nat".
--
-- API (roles are "client", "router", "server", "a", "b" (twin), or "host"
-- for a scratch namespace; addr may be IPv4 or IPv6)
--   hosts.new{ nat = true | { snat = true|{ports="A-B"}, masquerade = true,
--              dnat = true, redirect = true }, track = true, timeout = 60 } -> topo
--   hosts.pair{ nat = true | { snat, dnat, redirect }, ... }                -> topo
--   hosts.twin{ nat = true | { snat = true|{ports="A-B", random=true},
--              dnat = true }, ... }                                        -> topo
--   topo:failover(to)            twin: the other router's links down, the
--                                client's and server's routes via `to`
--   hosts.scratch{ track = false, timeout = 60 }                           -> topo
--   hosts.with(opts, fn)         run fn(topo), always destroy, re-raise errors
--   hosts.cleanup_all()          destroy every topology this process made
--   hosts.list()                 names of this process's namespaces that exist
--   hosts.run(cmd)               -> ok, output, code (sh in the caller's netns,
--                                   stderr merged); hosts.quote(s); hosts.sleep(s)
--   hosts.port, hosts.routed_addr, hosts.pair_addr, hosts.pid
--   topo.kind ("routed"|"pair"|"scratch"), topo.ns[role], topo.addr (nil for
--                                a scratch namespace), topo.nat_role
--   topo:exec(role, cmd)         -> ok, output, code  (sh -c in the namespace)
--   topo:nft(role, ruleset)      -> ok, output       (nft -f - in the namespace)
--   topo:conntrack(args [, role]) -> ok, output  (conntrack CLI, default role
--                                   topo.nat_role, "host" for a scratch
--                                   namespace; "-L" when args is nil)
--   topo:listen(role, proto, port [, addr [, opts]]) -> listener (:close());
--        opts.one_peer: the first peer only (no fork)
--   topo:serve([proto])          -> listeners started for the port map
--   topo:tcp_connect(from, addr, port [, opts]) -> conn
--        conn.sport, conn:close(), conn:alive(); opts.hold (s, default 10),
--        opts.sport, opts.send (default true: send "lct\n" and wait for the echo)
--   topo:tcp_request(from, addr, port, payload [, opts]) -> ok, reply, sport
--   topo:udp_send(from, addr, port, payload [, count [, opts]]) -> ok, replies, sport
--   topo:stream(from, proto, addr, port [, opts]) -> s: numbered lines every
--        0.1 s on one connection / socket; s:echoed(), s:last(), s:alive(),
--        s:close(); opts.sport, opts.hold, opts.interval
--   topo:destroy() / topo.destroy()   kill everything, delete namespaces;
--                                idempotent; true or nil, msg.  Also runs from
--                                __close (local t <close> = ...) and __gc.
--   topo:log()                   stderr of the background processes
--
-- If this Lua process dies without destroy() (SIGKILL, ^C, busted aborting),
-- a per-topology watchdog shell, polling every 0.5 s, kills what runs in the
-- namespaces and deletes them.  cleanup_all() acts on this process's
-- topologies only: call it from a spec file's teardown, not in the middle of
-- another describe block's life.
--
-- All traffic is bounded: every socat runs under `timeout`; listeners live at
-- most opts.timeout seconds (default 60) even if nobody destroys the topology.

local hosts = {}

local unpack = table.unpack or unpack

local TIMEOUT = 60        -- default lifetime of a listener, seconds
local READY_WAIT = 2      -- bounded readiness polling, seconds

hosts.port = {
	plain = 8000,
	snat = 8001,
	masquerade = 8002,
	dnat = 8003,
	dnat_to = 9003,
	redirect = 8004,
	redirect_to = 9004,
}

hosts.routed_addr = {
	client = "192.0.2.2", client6 = "2001:db8:1::2",
	router = "192.0.2.1", router6 = "2001:db8:1::1",           -- client side
	router_s = "198.51.100.1", router_s6 = "2001:db8:2::1",     -- server side
	server = "198.51.100.2", server6 = "2001:db8:2::2",
	snat = "198.51.100.100", snat6 = "2001:db8:2::100",
	masquerade = "198.51.100.1", masquerade6 = "2001:db8:2::1",
	public = "203.0.113.10", public6 = "2001:db8:3::10",
	redirect = "192.0.2.1", redirect6 = "2001:db8:1::1",
}

hosts.twin_addr = {
	client = "192.0.2.2", client6 = "2001:db8:1::2",
	a = "192.0.2.1", a6 = "2001:db8:1::1", b = "192.0.2.3", b6 = "2001:db8:1::3",         -- client side
	a_s = "198.51.100.1", a_s6 = "2001:db8:2::1", b_s = "198.51.100.3", b_s6 = "2001:db8:2::3", -- server side
	a_sync = "203.0.113.249", a_sync6 = "2001:db8:ff::1",
	b_sync = "203.0.113.250", b_sync6 = "2001:db8:ff::2",
	server = "198.51.100.2", server6 = "2001:db8:2::2",
	snat = "203.0.113.100", snat6 = "2001:db8:3::100",
	public = "203.0.113.10", public6 = "2001:db8:3::10",
}

hosts.pair_addr = {
	client = "192.0.2.1", client6 = "2001:db8:1::1",
	server = "192.0.2.2", server6 = "2001:db8:1::2",
	snat = "192.0.2.11", snat6 = "2001:db8:1::11",
	public = "203.0.113.10", public6 = "2001:db8:3::10",
	redirect = "127.0.0.1", redirect6 = "::1",
}

-- helpers ---------------------------------------------------------------

local function q(s)
	return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
hosts.quote = q

local function is6(addr)
	return tostring(addr):find(":", 1, true) ~= nil
end

--- Run a shell script; returns ok, output (stdout and stderr), exit code.
-- The exit code is read from the output so this works the same on 5.1.
-- What the harness itself runs (ip, nft, socat, the traffic) runs without
-- an LD_PRELOAD the suite may carry (make check-asan preloads the ASan
-- runtime for the module; socat and ip are not built for it, and a listener
-- ASan stopped would reset the connections it serves); hosts.run keeps it,
-- for specs that run the module in a child interpreter.
local function shell(cmd, keep)
	local f = assert(io.popen((keep and "" or "unset LD_PRELOAD\n") .. "exec 2>&1\n" .. cmd
		.. "\necho \"@@lct-rc=$?\""))
	local out = f:read("*a")
	f:close()
	local body, rc = out:match("^(.-)@@lct%-rc=(%d+)%s*$")
	if not body then
		return false, out, -1
	end
	rc = tonumber(rc)
	return rc == 0, body, rc
end
local function run(cmd) return shell(cmd, false) end
function hosts.run(cmd) return shell(cmd, true) end

local function exists(path)
	local f = io.open(path)
	if f then f:close() end
	return f ~= nil
end

local function sleep(s)
	os.execute("sleep " .. s)
end

local function getpid()
	local f = io.open("/proc/self/stat")
	if f then
		local pid = f:read("*a"):match("^(%d+)")
		f:close()
		if pid then return pid end
	end
	-- not Linux /proc: fall back to something unique enough
	return tostring(os.time() % 100000) .. tostring(math.random(1000, 9999))
end

local PID = getpid()
local seq = 0
local live = {}           -- topo -> true, every topology not yet destroyed
local made = {}           -- namespace name -> true, every namespace we made

-- Topology object ---------------------------------------------------------

local Topo = {}
Topo.__index = Topo

local function nsname(self, role)
	local ns = self.ns[role]
	if not ns then
		error(("hosts: no role %q in this %s topology"):format(tostring(role), self.kind), 3)
	end
	return ns
end

function Topo:exec(role, cmd)
	return run("ip netns exec " .. q(nsname(self, role)) .. " sh -c " .. q(cmd))
end

function Topo:nft(role, ruleset)
	local ns = nsname(self, role)
	return run("ip netns exec " .. q(ns) .. " nft -f - <<'LCT_NFT_EOF'\n"
		.. ruleset .. "\nLCT_NFT_EOF")
end

--- conntrack CLI (stderr merged) in role, by default the NAT host (router,
-- or the client of a pair).
function Topo:conntrack(args, role)
	return self:exec(role or self.nat_role, "conntrack " .. (args or "-L") .. " 2>&1")
end

function Topo:log()
	local f = io.open(self.logfile)
	if not f then return "" end
	local s = f:read("*a")
	f:close()
	return s
end

-- Is pid still a process inside namespace ns?
local function pid_in(ns, pid)
	return (run("ip netns pids " .. q(ns) .. " 2>/dev/null | grep -qx " .. pid))
end

-- Start cmd in the background inside role's namespace; returns its pid.
function Topo:spawn(role, cmd)
	local ns = nsname(self, role)
	if self.destroyed then error("hosts: topology already destroyed", 2) end
	-- cmd must be one simple command (timeout ...): $! is then its pid.
	local script = cmd .. " </dev/null >/dev/null 2>>" .. q(self.logfile) .. " & echo $!"
	local ok, out = run("ip netns exec " .. q(ns) .. " sh -c " .. q(script))
	local pid = ok and out:match("^%s*(%d+)%s*$")
	if not pid then
		error("hosts: cannot start in " .. role .. ": " .. cmd .. ": " .. out, 2)
	end
	self.pids[#self.pids + 1] = { ns = ns, pid = pid }
	return pid
end

-- Stop a background pid (TERM, then KILL) and wait, bounded, until it is gone.
local function stop_pid(ns, pid)
	if not pid_in(ns, pid) then return end
	run("kill -TERM " .. pid .. " 2>/dev/null")
	for _ = 1, 20 do
		if not pid_in(ns, pid) then return end
		sleep(0.05)
	end
	run("kill -KILL " .. pid .. " 2>/dev/null")
end

-- Poll (one shell, bounded) until check succeeds inside role's namespace.
function Topo:wait_for(role, check, seconds)
	local n = math.floor((seconds or READY_WAIT) / 0.02 + 0.5)
	local script = ("i=0; while [ $i -lt %d ]; do %s && exit 0; sleep 0.02; i=$((i+1)); done; exit 1")
		:format(n, check)
	return (self:exec(role, script))
end

function Topo:next_port()
	self.port_seq = self.port_seq + 1
	return self.port_seq
end

-- Listener ------------------------------------------------------------------

local Handle = {}
Handle.__index = Handle

function Handle:close()
	if self.closed then return end
	self.closed = true
	if self.topo.destroyed then return end
	stop_pid(self.ns, self.pid)
	if self.sport and self.kind == "tcp_connect" then
		-- wait (bounded) until our FIN is acknowledged, so every hop's
		-- conntrack entry has left ESTABLISHED when close() returns
		self.topo:wait_for(self.role, ("! ss -Htn state established state fin-wait-1 "
			.. "state close-wait state last-ack 'sport = :%d' | grep -q ."):format(self.sport), 1)
	end
end

function Handle:alive()
	return not self.closed and pid_in(self.ns, self.pid)
end

local function handle(topo, role, pid, fields)
	local h = setmetatable(fields or {}, Handle)
	h.topo, h.role, h.ns, h.pid = topo, role, topo.ns[role], pid
	return h
end

local function listen_cmd(proto, port, addr, life, one)
	local a
	if proto == "tcp" then
		if addr then
			a = is6(addr) and ("TCP6-LISTEN:%d,bind=[%s]"):format(port, addr)
				or ("TCP4-LISTEN:%d,bind=%s"):format(port, addr)
		else
			a = ("TCP6-LISTEN:%d,ipv6only=0"):format(port)
		end
		a = a .. ",reuseaddr" .. (one and "" or ",fork")
	elseif proto == "udp" then
		-- one peer: UDP-LISTEN answers the first sender only, from then on
		local kind = one and "LISTEN" or "RECVFROM"
		if addr then
			a = is6(addr) and ("UDP6-%s:%d,bind=[%s]"):format(kind, port, addr)
				or ("UDP4-%s:%d,bind=%s"):format(kind, port, addr)
		else
			a = ("UDP6-%s:%d,ipv6only=0"):format(kind, port)
		end
		a = a .. (one and "" or ",fork")
	else
		error("hosts: proto must be \"tcp\" or \"udp\", got " .. tostring(proto), 3)
	end
	-- timeout bounds the listener and (as a process group) its forked children.
	return ("timeout %s socat %s PIPE"):format(life, a)
end

local function listening_check(proto, port)
	return ("ss -H%sln 'sport = :%d' | grep -q ."):format(proto == "tcp" and "t" or "u", port)
end

--- Start an echo responder (tcp: echo the stream; udp: echo each datagram).
-- opts.timeout: lifetime in seconds; opts.wait = false: do not wait until
-- bound; opts.one_peer: serve the first peer only (tcp: one connection, no
-- other accepted; udp: datagrams from any other address ignored).
function Topo:listen(role, proto, port, addr, opts)
	opts = opts or {}
	local pid = self:spawn(role, listen_cmd(proto, port, addr, opts.timeout or self.timeout, opts.one_peer))
	local l = handle(self, role, pid, { proto = proto, port = port, addr = addr })
	if opts.wait ~= false and not self:wait_for(role, listening_check(proto, port)) then
		error(("hosts: %s listener on %s port %d not ready after %ss\n%s")
			:format(proto, role, port, READY_WAIT, self:log()), 2)
	end
	return l
end

--- Echo listeners for the whole port map; proto "tcp", "udp" or nil (both).
function Topo:serve(proto)
	local protos = proto and { proto } or { "tcp", "udp" }
	local P = hosts.port
	local plan = {}
	for _, pr in ipairs(protos) do
		for _, port in ipairs({ P.plain, P.snat, P.dnat_to }) do
			plan[#plan + 1] = { "server", pr, port }
		end
		if self.kind == "routed" then
			plan[#plan + 1] = { "server", pr, P.masquerade }
			plan[#plan + 1] = { "router", pr, P.redirect_to }
		elseif self.kind == "twin" then
			plan[#plan] = nil                     -- no SNAT port of its own: 8000 and 9003
			plan[#plan] = { "server", pr, P.dnat_to }
		else
			plan[#plan + 1] = { "client", pr, P.redirect_to }
		end
	end
	local ls = {}
	for i, p in ipairs(plan) do
		ls[i] = self:listen(p[1], p[2], p[3], nil, { wait = false })
	end
	for _, p in ipairs(plan) do
		if not self:wait_for(p[1], listening_check(p[2], p[3])) then
			error(("hosts: %s listener on %s port %d not ready\n%s"):format(p[2], p[1], p[3], self:log()), 2)
		end
	end
	return ls
end

-- Traffic -------------------------------------------------------------------

local function connect_addr(proto, addr, port, sport)
	local a = is6(addr) and ("%s6:[%s]:%d"):format(proto, addr, port)
		or ("%s4:%s:%d"):format(proto, addr, port)
	return a .. ",sourceport=" .. sport .. (proto == "TCP" and ",connect-timeout=2" or "")
end

--- A TCP connection that stays ESTABLISHED for opts.hold seconds (default 10).
-- Returns once the connection is established (and, unless opts.send == false,
-- once "lct\n" has been echoed back, so every hop has seen both directions).
function Topo:tcp_connect(from, addr, port, opts)
	opts = opts or {}
	local hold = opts.hold or 10
	local sport = opts.sport or self:next_port()
	local sys = opts.send == false and ("sleep " .. hold) or ("printf lct; sleep " .. hold)
	local cmd = ("timeout %s socat -T %s %s SYSTEM:%s"):format(hold, hold + 1,
		connect_addr("TCP", addr, port, sport), q(sys))
	local pid = self:spawn(from, cmd)
	local c = handle(self, from, pid, { kind = "tcp_connect", sport = sport, addr = addr, port = port, hold = hold })
	local est = ("ss -Htni state established 'sport = :%d'"):format(sport)
	local check = opts.send == false and (est .. " | grep -q .")
		or (est .. " | grep -q 'bytes_received:[1-9]'")
	if not self:wait_for(from, check) then
		c:close()
		error(("hosts: tcp_connect %s -> %s port %d (sport %d) not established\n%s")
			:format(from, addr, port, sport, self:log()), 2)
	end
	return c
end

--- A long conversation: one numbered line ("0\n", "1\n" ...) every
-- opts.interval seconds (default 0.1), over one TCP connection or one UDP
-- socket (proto "tcp" or "udp", from port opts.sport), what comes back
-- written to a file, for opts.hold seconds (default the topology's
-- timeout).  Against an echo listener, each number back went there and
-- back.  Returns once the first one is back (error after 2 s) a stream:
-- s.sport, s:echoed() (the numbers back, in order of arrival), s:last()
-- (the highest, -1 for none), s:alive(), s:close().
function Topo:stream(from, proto, addr, port, opts)
	opts = opts or {}
	local hold, interval = opts.hold or self.timeout, opts.interval or 0.1
	local sport = opts.sport or self:next_port()
	local out = ("%s.stream-%d"):format(self.logfile, sport)
	local gen = ("i=0; while [ $i -lt %d ]; do echo $i; i=$((i+1)); sleep %s; done")
		:format(math.floor(hold / interval), interval)
	local cmd = ("timeout %s sh -c %s"):format(hold, q(gen .. " | socat -T " .. hold + 1 .. " - "
		.. connect_addr(proto:upper(), addr, port, sport) .. " > " .. q(out)))
	local pid = self:spawn(from, cmd)
	local st = handle(self, from, pid, { kind = "stream", sport = sport, proto = proto, file = out })
	function st.echoed()
		local nums, f = {}, io.open(out)
		if f then
			for n in f:read("*a"):gmatch("(%d+)\n") do nums[#nums + 1] = tonumber(n) end
			f:close()
		end
		return nums
	end
	function st.last()
		local m = -1
		for _, n in ipairs(st.echoed()) do
			if n > m then m = n end
		end
		return m
	end
	local close = st.close
	function st.close()
		close(st)
		os.remove(out)
	end
	if not self:wait_for(from, "grep -q . " .. q(out)) then
		st.close()
		error(("hosts: stream %s -> %s port %d (sport %d) got nothing back\n%s")
			:format(proto, addr, port, sport, self:log()), 2)
	end
	return st
end

--- One-shot TCP request: send payload, half-close, read the reply until the
-- peer closes.  Returns ok, reply, sport.  opts.sport, opts.timeout (s, 5).
function Topo:tcp_request(from, addr, port, payload, opts)
	opts = opts or {}
	local sport = opts.sport or self:next_port()
	local cmd = ("printf '%%s' %s | timeout %d socat -t 1 -T 3 - %s 2>>%s")
		:format(q(payload or ""), opts.timeout or 5, connect_addr("TCP", addr, port, sport), q(self.logfile))
	local ok, out = self:exec(from, cmd)
	return ok, out, sport
end

--- Send count datagrams (default 1) from one source port, 50 ms apart, and
-- collect the replies for opts.wait seconds after the last one (default 0.3).
-- ok is true when the replies add up to count copies of payload (an echo).
function Topo:udp_send(from, addr, port, payload, count, opts)
	opts = opts or {}
	count = count or 1
	payload = payload or "lct"
	local sport = opts.sport or self:next_port()
	local cmd = ("i=0; while [ $i -lt %d ]; do printf '%%s' %s; sleep 0.05; i=$((i+1)); done"
		.. " | timeout %d socat -t %s -T 3 - %s 2>>%s")
		:format(count, q(payload), opts.timeout or 5, opts.wait or 0.3,
			connect_addr("UDP", addr, port, sport), q(self.logfile))
	local ok, out = self:exec(from, cmd)
	return ok and out == payload:rep(count), out, sport
end

-- Destroy ---------------------------------------------------------------------

-- Shell lines that kill everything inside the namespaces (ours are all
-- there), then delete them: a namespace with a process left in it would
-- outlive its name.  Removing the log file last also stops the watchdog.
local function teardown_script(names, logfile)
	local script = {}
	for _, ns in ipairs(names) do
		script[#script + 1] = ("[ -e /run/netns/%s ] && ip netns pids %s 2>/dev/null | xargs -r kill -KILL 2>/dev/null")
			:format(ns, q(ns))
	end
	for _, ns in ipairs(names) do
		script[#script + 1] = ("[ -e /run/netns/%s ] && ip netns del %s 2>/dev/null"):format(ns, q(ns))
	end
	script[#script + 1] = "rm -f " .. q(logfile)
	script[#script + 1] = "true"
	return table.concat(script, "\n")
end

-- A watchdog for the case destroy() never runs (the Lua process killed,
-- busted aborting): a shell in the Lua process's own namespace that polls
-- every 0.5 s and, once this process is gone, tears the topology down.  It
-- ignores INT/TERM/HUP so that a ^C or netns-run's cleanup, which signal the
-- whole group, do not take it down before it has done its job.  It exits by
-- itself when destroy() removes the log file.
local function start_watchdog(names, logfile)
	-- Tear down only if this process died: after a destroy() (log file gone)
	-- the names may already belong to a new topology (busted reloads this
	-- module for each spec file, so sequence numbers start again at 1).
	local script = ("trap '' INT TERM HUP\n"
		.. "while [ -e /proc/%s ] && [ -e %s ]; do sleep 0.5; done\n"
		.. "if [ -e %s ]; then\n%s\nfi")
		:format(PID, q(logfile), q(logfile), teardown_script(names, logfile))
	local ok, out = run("sh -c " .. q(script) .. " </dev/null >/dev/null 2>&1 & echo $!")
	return ok and out:match("(%d+)")
end

local function destroy(self)
	if self.destroyed then return true end
	self.destroyed = true
	local names = self.ns_list
	run(teardown_script(names, self.logfile))
	local left = {}
	for _, ns in ipairs(names) do
		if exists("/run/netns/" .. ns) then
			left[#left + 1] = ns
		else
			made[ns] = nil
		end
	end
	live[self] = nil
	if #left > 0 then
		return nil, "hosts: could not delete " .. table.concat(left, " ")
	end
	return true
end
Topo.destroy = destroy   -- replaced per object by a bound closure (finally(topo.destroy))
Topo.__close = function(self) destroy(self) end
Topo.__gc = function(self) destroy(self) end

-- Construction --------------------------------------------------------------

local NS_SETUP = "ip netns exec %s sysctl -qw net.ipv6.conf.all.accept_dad=0 "
	.. "net.ipv6.conf.default.accept_dad=0 net.netfilter.nf_conntrack_acct=1 "
	.. "net.netfilter.nf_conntrack_timestamp=1 && ip -n %s link set lo up"

local TRACK = [[
table inet lct_track {
	chain lct_pre {
		type filter hook prerouting priority -150; policy accept;
		ct state invalid counter
	}
}]]

local function nat_opts(nat)
	if nat == true then
		return { snat = true, masquerade = true, dnat = true, redirect = true }
	end
	return nat or {}
end

local function snat_ports(o)
	if type(o) ~= "table" or not o.ports then return "" end
	local p = o.ports
	if type(p) == "table" then p = p[1] .. "-" .. (p[2] or p[1]) end
	assert(tostring(p):match("^%d+%-?%d*$"), "hosts: snat.ports must look like \"40000-40009\"")
	return ":" .. p
end

-- The port forward of a topology's addresses A: public:8003 -> server:9003.
local function dnat_rules(A, rules)
	local P, L4 = hosts.port, "meta l4proto { tcp, udp } th dport "
	rules[#rules + 1] = ("ip daddr %s %s%d dnat ip to %s:%d"):format(A.public, L4, P.dnat, A.server, P.dnat_to)
	rules[#rules + 1] = ("ip6 daddr %s %s%d dnat ip6 to [%s]:%d"):format(A.public6, L4, P.dnat, A.server6, P.dnat_to)
end

local function routed_nat(nat)
	local P, A = hosts.port, hosts.routed_addr
	local L4 = "meta l4proto { tcp, udp } th dport "
	local pre, post = {}, {}
	if nat.dnat then
		dnat_rules(A, pre)
	end
	if nat.redirect then
		pre[#pre + 1] = ("iifname \"c0\" %s%d redirect to :%d"):format(L4, P.redirect, P.redirect_to)
	end
	if nat.snat then
		local ports = snat_ports(nat.snat)
		post[#post + 1] = ("oifname \"s0\" ip saddr 192.0.2.0/24 %s%d snat ip to %s%s")
			:format(L4, P.snat, A.snat, ports)
		post[#post + 1] = ("oifname \"s0\" ip6 saddr 2001:db8:1::/64 %s%d snat ip6 to %s%s")
			:format(L4, P.snat, ports == "" and A.snat6 or "[" .. A.snat6 .. "]", ports)
	end
	if nat.masquerade then
		post[#post + 1] = ("oifname \"s0\" %s%d masquerade"):format(L4, P.masquerade)
	end
	return pre, post, "prerouting"
end

local function pair_nat(nat)
	local P, A = hosts.port, hosts.pair_addr
	local L4 = "meta l4proto { tcp, udp } th dport "
	local out, post = {}, {}
	if nat.dnat then
		dnat_rules(A, out)
	end
	if nat.redirect then
		out[#out + 1] = ("%s%d redirect to :%d"):format(L4, P.redirect, P.redirect_to)
	end
	if nat.snat then
		local ports = snat_ports(nat.snat)
		post[#post + 1] = ("oifname \"eth0\" ip daddr %s %s%d snat ip to %s%s")
			:format(A.server, L4, P.snat, A.snat, ports)
		post[#post + 1] = ("oifname \"eth0\" ip6 daddr %s %s%d snat ip6 to %s%s")
			:format(A.server6, L4, P.snat, ports == "" and A.snat6 or "[" .. A.snat6 .. "]", ports)
	end
	return out, post, "output"
end

-- Both routers of a twin alike: everything from the client LAN leaving s0
-- SNATed to one address no interface holds, and the public port forward.
local function twin_nat(nat)
	local P = hosts.twin_addr
	local pre, post = {}, {}
	if nat.dnat then
		dnat_rules(P, pre)
	end
	if nat.snat then
		local ports = snat_ports(nat.snat)
		local random = type(nat.snat) == "table" and nat.snat.random and " random" or ""
		-- a port range for tcp and udp, the address alone for the rest (icmp)
		local l4 = ports ~= "" and "meta l4proto { tcp, udp } " or ""
		for _, v in ipairs(ports ~= "" and { ports, "" } or { "" }) do
			post[#post + 1] = ("oifname \"s0\" ip saddr 192.0.2.0/24 %ssnat ip to %s%s%s")
				:format(v ~= "" and l4 or "", P.snat, v, random)
			post[#post + 1] = ("oifname \"s0\" ip6 saddr 2001:db8:1::/64 %ssnat ip6 to %s%s%s")
				:format(v ~= "" and l4 or "", v == "" and P.snat6 or "[" .. P.snat6 .. "]", v, random)
		end
	end
	return pre, post, "prerouting"
end

local function nat_ruleset(first, post, hook)
	local t = { "table inet lct_nat {" }
	t[#t + 1] = ("\tchain lct_%s {\n\t\ttype nat hook %s priority -100; policy accept;"):format(hook, hook)
	for _, r in ipairs(first) do t[#t + 1] = "\t\t" .. r end
	t[#t + 1] = "\t}\n\tchain lct_postrouting {\n\t\ttype nat hook postrouting priority 100; policy accept;"
	for _, r in ipairs(post) do t[#t + 1] = "\t\t" .. r end
	t[#t + 1] = "\t}\n}"
	return table.concat(t, "\n")
end

local ROLES = {
	routed = { "client", "router", "server" },
	pair = { "client", "server" },
	scratch = { "host" },
	twin = { "client", "a", "b", "server" },
}

--- Twin: router `to` takes over.  The other router's links go down, to's
-- come up, and the client's and the server's default routes (v4 and v6)
-- move to `to`.  Returns ok, output.
function Topo:failover(to)
	if self.kind ~= "twin" then
		error("hosts: failover needs a twin topology (hosts.twin), not " .. self.kind, 2)
	end
	if to ~= "a" and to ~= "b" then
		error("hosts: failover to \"a\" or \"b\", got " .. tostring(to), 2)
	end
	local from, A = to == "a" and "b" or "a", self.addr
	local sh = {}
	for _, dev in ipairs({ "c0", "s0", "sync" }) do
		sh[#sh + 1] = ("ip -n %s link set %s down"):format(q(self.ns[from]), dev)
		sh[#sh + 1] = ("ip -n %s link set %s up"):format(q(self.ns[to]), dev)
	end
	sh[#sh + 1] = ("ip -n %s route replace default via %s"):format(q(self.ns.client), A[to])
	sh[#sh + 1] = ("ip -n %s -6 route replace default via %s"):format(q(self.ns.client), A[to .. "6"])
	sh[#sh + 1] = ("ip -n %s route replace default via %s"):format(q(self.ns.server), A[to .. "_s"])
	sh[#sh + 1] = ("ip -n %s -6 route replace default via %s"):format(q(self.ns.server), A[to .. "_s6"])
	return run("set -e\n" .. table.concat(sh, "\n"))
end

local function build(kind, opts)
	opts = opts or {}
	local nat = nat_opts(opts.nat)
	if kind == "pair" and nat.masquerade then
		error("hosts.pair: masquerade would be a no-op (the client has one primary address); use hosts.new", 3)
	end
	if kind == "scratch" and next(nat) then
		error("hosts.scratch: a lone namespace has no traffic to translate; use hosts.new or hosts.pair", 3)
	end
	seq = seq + 1
	local base = ("lct-%s-%d-"):format(PID, seq)
	local roles = ROLES[kind]
	local self = setmetatable({
		kind = kind,
		roles = roles,
		ns = {},
		pids = {},
		port_seq = 20000,
		timeout = opts.timeout or TIMEOUT,
		addr = kind == "routed" and hosts.routed_addr or kind == "pair" and hosts.pair_addr
			or kind == "twin" and hosts.twin_addr or nil,
		nat_role = kind == "routed" and "router" or kind == "pair" and "client" or kind == "twin" and "a"
			or "host",
		logfile = "/tmp/" .. base .. "log",
	}, Topo)
	self.destroy = function() return destroy(self) end
	self.ns_list = {}
	for _, r in ipairs(roles) do
		self.ns[r] = base .. r
		self.ns_list[#self.ns_list + 1] = self.ns[r]
	end
	live[self] = true

	local C, S, R = self.ns.client and q(self.ns.client), self.ns.server and q(self.ns.server),
		self.ns.router and q(self.ns.router)
	local RA, RB = self.ns.a and q(self.ns.a), self.ns.b and q(self.ns.b)
	local sh = { "set -e" }
	for _, r in ipairs(roles) do
		sh[#sh + 1] = "ip netns add " .. q(self.ns[r])
		made[self.ns[r]] = true
	end
	for _, r in ipairs(roles) do
		sh[#sh + 1] = NS_SETUP:format(q(self.ns[r]), q(self.ns[r]))
	end
	local function add(ns, dev, a4, a6, extra4, extra6)
		sh[#sh + 1] = ("ip -n %s addr add %s dev %s"):format(ns, a4, dev)
		if extra4 then sh[#sh + 1] = ("ip -n %s addr add %s dev %s"):format(ns, extra4, dev) end
		sh[#sh + 1] = ("ip -n %s addr add %s dev %s nodad"):format(ns, a6, dev)
		if extra6 then sh[#sh + 1] = ("ip -n %s addr add %s dev %s nodad"):format(ns, extra6, dev) end
		sh[#sh + 1] = ("ip -n %s link set %s up"):format(ns, dev)
	end
	if kind == "routed" then
		sh[#sh + 1] = ("ip -n %s link add c0 type veth peer name eth0 netns %s"):format(R, C)
		sh[#sh + 1] = ("ip -n %s link add s0 type veth peer name eth0 netns %s"):format(R, S)
		sh[#sh + 1] = ("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1"):format(R)
		add(C, "eth0", "192.0.2.2/24", "2001:db8:1::2/64")
		add(R, "c0", "192.0.2.1/24", "2001:db8:1::1/64")
		add(R, "s0", "198.51.100.1/24", "2001:db8:2::1/64", "198.51.100.100/24", "2001:db8:2::100/64")
		add(S, "eth0", "198.51.100.2/24", "2001:db8:2::2/64")
		sh[#sh + 1] = ("ip -n %s route add default via 192.0.2.1"):format(C)
		sh[#sh + 1] = ("ip -n %s -6 route add default via 2001:db8:1::1"):format(C)
		sh[#sh + 1] = ("ip -n %s route add default via 198.51.100.1"):format(S)
		sh[#sh + 1] = ("ip -n %s -6 route add default via 2001:db8:2::1"):format(S)
	elseif kind == "twin" then
		local T = hosts.twin_addr
		for _, ns in ipairs({ C, S }) do
			sh[#sh + 1] = ("ip -n %s link add br0 type bridge forward_delay 0"):format(ns)
		end
		for _, r in ipairs({ { RA, "pa" }, { RB, "pb" } }) do
			-- a failover takes links down: IPv6 addresses must outlive it
			sh[#sh + 1] = ("ip netns exec %s sysctl -qw net.ipv6.conf.all.keep_addr_on_down=1 "
				.. "net.ipv6.conf.default.keep_addr_on_down=1"):format(r[1])
			sh[#sh + 1] = ("ip -n %s link add c0 type veth peer name %s netns %s"):format(r[1], r[2], C)
			sh[#sh + 1] = ("ip -n %s link add s0 type veth peer name %s netns %s"):format(r[1], r[2], S)
			sh[#sh + 1] = ("ip netns exec %s sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1")
				:format(r[1])
			for _, ns in ipairs({ C, S }) do
				sh[#sh + 1] = ("ip -n %s link set %s master br0 up"):format(ns, r[2])
			end
		end
		sh[#sh + 1] = ("ip -n %s link add sync type veth peer name sync netns %s"):format(RA, RB)
		add(C, "br0", T.client .. "/24", T.client6 .. "/64")
		add(S, "br0", T.server .. "/24", T.server6 .. "/64")
		for _, r in ipairs({ { RA, "a" }, { RB, "b" } }) do
			local ns, n = r[1], r[2]
			add(ns, "c0", T[n] .. "/24", T[n .. "6"] .. "/64")
			add(ns, "s0", T[n .. "_s"] .. "/24", T[n .. "_s6"] .. "/64")
			add(ns, "sync", T[n .. "_sync"] .. "/30", T[n .. "_sync6"] .. "/64")
		end
		sh[#sh + 1] = ("ip -n %s route add default via %s"):format(C, T.a)
		sh[#sh + 1] = ("ip -n %s -6 route add default via %s"):format(C, T.a6)
		sh[#sh + 1] = ("ip -n %s route add default via %s"):format(S, T.a_s)
		sh[#sh + 1] = ("ip -n %s -6 route add default via %s"):format(S, T.a_s6)
	elseif kind == "pair" then
		sh[#sh + 1] = ("ip -n %s link add eth0 type veth peer name eth0 netns %s"):format(C, S)
		add(C, "eth0", "192.0.2.1/24", "2001:db8:1::1/64", "192.0.2.11/24", "2001:db8:1::11/64")
		add(S, "eth0", "192.0.2.2/24", "2001:db8:1::2/64")
		sh[#sh + 1] = ("ip -n %s route add default via 192.0.2.2"):format(C)
		sh[#sh + 1] = ("ip -n %s -6 route add default via 2001:db8:1::2"):format(C)
	end
	local f = assert(io.open(self.logfile, "w"))
	f:close()
	self.watchdog = start_watchdog(self.ns_list, self.logfile)
	local ok, out = run(table.concat(sh, "\n"))
	if not ok then
		destroy(self)
		error("hosts: cannot build " .. kind .. " topology:\n" .. out, 3)
	end

	local function nft(role, text)
		local ok2, out2 = self:nft(role, text)
		if not ok2 then
			destroy(self)
			error("hosts: nft in " .. role .. " failed:\n" .. out2 .. "\n--- ruleset:\n" .. text, 4)
		end
	end
	if opts.track ~= false then
		for _, r in ipairs(roles) do nft(r, TRACK) end
	end
	if next(nat) then
		local first, post, hook
		if kind == "routed" then
			first, post, hook = routed_nat(nat)
		elseif kind == "twin" then
			first, post, hook = twin_nat(nat)
		else
			first, post, hook = pair_nat(nat)
		end
		self.nat_rules = nat_ruleset(first, post, hook)
		nft(self.nat_role, self.nat_rules)
		if kind == "twin" then
			nft("b", self.nat_rules)
		end
	end
	return self
end

--- Routed topology client - router - server (see the header).
function hosts.new(opts)
	return build("routed", opts)
end

--- Two hosts on one veth, NAT in the client's own table (see the header).
function hosts.pair(opts)
	return build("pair", opts)
end

--- Two routers a and b between a client and a server (see the header).
function hosts.twin(opts)
	local o = {}
	for k, v in pairs(opts or {}) do o[k] = v end
	if o.nat == true then
		o.nat = { snat = true, dnat = true }
	end
	local nat = nat_opts(o.nat)
	if nat.masquerade or nat.redirect then
		error("hosts.twin: nat takes snat and dnat only", 2)
	end
	return build("twin", o)
end

--- One namespace of its own, role "host", with only lo, untracked unless
-- opts.track is true (see the header).
function hosts.scratch(opts)
	opts = opts or {}
	return build("scratch", { track = opts.track == true, timeout = opts.timeout })
end

--- Run fn(topo, ...) and destroy the topology however fn ends; errors re-raised.
function hosts.with(opts, fn, ...)
	local builder = (opts and opts.pair) and hosts.pair or hosts.new
	local topo = builder(opts)
	local res = { pcall(fn, topo, ...) }
	destroy(topo)
	if not res[1] then error(res[2], 0) end
	return unpack(res, 2)
end

--- Destroy every topology this process made, and remove any namespace of
-- ours that is somehow left.  Returns true, or nil and the names left over.
function hosts.cleanup_all()
	local list = {}
	for t in pairs(live) do list[#list + 1] = t end
	for _, t in ipairs(list) do destroy(t) end
	local script = {}
	for ns in pairs(made) do
		script[#script + 1] = ("if [ -e /run/netns/%s ]; then ip netns pids %s 2>/dev/null"
			.. " | xargs -r kill -KILL 2>/dev/null; ip netns del %s; fi"):format(ns, q(ns), q(ns))
	end
	if #script > 0 then
		script[#script + 1] = "true"
		run(table.concat(script, "\n"))
	end
	local left = {}
	for ns in pairs(made) do
		if exists("/run/netns/" .. ns) then left[#left + 1] = ns else made[ns] = nil end
	end
	if #left > 0 then return nil, table.concat(left, " ") end
	return true
end

--- Namespaces of this process (lct-<pid>-*) currently under /run/netns.
function hosts.list()
	local _, out = run("ls /run/netns 2>/dev/null | grep '^lct-" .. PID .. "-' || true")
	local t = {}
	for name in out:gmatch("[^\n]+") do t[#t + 1] = name end
	return t
end

--- For plain scripts that flush and fill the table of the namespace they
-- run in (tools/fuzz.lua, tools/exercise.lua): exits unless this process
-- is in the namespace tools/netns-run made for it ($LCT_NETNS names it
-- under /run/netns: the same inode as /proc/self/ns/net).  Comparing with
-- init's namespace is not enough: a container may hide init's.  stat runs
-- without an LD_PRELOAD the script may carry (the ASan runtime).
function hosts.refuse_host_namespace(script)
	local ns = os.getenv("LCT_NETNS")
	local same = false
	if ns and ns:match("^[%w_.-]+$") then
		local ok, out = run("env -u LD_PRELOAD stat -L -c %i /proc/self/ns/net /run/netns/" .. q(ns))
		local a, b = out:match("^(%d+)\n(%d+)")
		same = ok and a ~= nil and a == b
	end
	if not same then
		io.stderr:write(script, ": refusing to run outside the private namespace of tools/netns-run",
			" (LCT_NETNS)\n")
		os.exit(2)
	end
end

hosts.pid = PID
hosts.sleep = sleep

return hosts
