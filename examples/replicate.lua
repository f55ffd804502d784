#!/usr/bin/env lua
--[==[ replicate.lua: a standby firewall's conntrack table kept in step with
the active one's, so that the standby can take over established flows
(conntrackd's job, for two routers).

  replicate.lua primary --peer HOST:PORT [--netns NS] [--refresh S] [--ignore CIDR]...
  replicate.lua backup --listen HOST:PORT [--netns NS]

  ip netns exec fw-a lua5.4 examples/replicate.lua primary --peer 203.0.113.250:7070
  ip netns exec fw-b lua5.4 examples/replicate.lua backup --listen 203.0.113.250:7070

The primary runs on the active router: it subscribes to the table's events,
connects to the backup, sends a full copy of the table, then every change
as it happens.  The backup runs on the standby router and applies what it
receives to its own table, so that the flows are already there, with their
NAT, TCP state and window tracking, when the routes move to it: the same
connections go on through it.  Both run in their router's namespace (the
socket lives there); --netns NS reads or writes the table of another
namespace (a name under /run/netns or a path such as /proc/PID/ns/net).

What crosses the wire: one JSON object per line (kept libraries on every
Lua: lua-cjson, else lua-dkjson).  A flow is the module's own create spec,
as e:spec() reads it from an entry or event in one call (the keys of
ct.create: src, dst, sport, dport, snat, dnat, state, status, timeout,
mark, zone, labels, helper, tcp_flags_orig, tcp_wscale_orig ...), so the
backup hands it to h:batch("put") unchanged; a text anybody can read
(`nc`, `jq`) and a newer side can extend.  Not the entries' netlink
messages (e:raw()): the kernel's dump message has no NAT attributes to
create from (the translation has to be read back from the reply tuple
into snat/dnat anyway), and the module has no way to turn received bytes
into a request.  Not save lines (format.save / ct.load): they lack the TCP
window tracking fields (tcp_flags_*, tcp_wscale_*), and without the window
scale the standby misjudges every window after a takeover and drops the
flow's packets as invalid.

  {"t":"hello","v":1,"refresh":60,"beat":1}   first line of a connection
  {"t":"begin","n":3}                a full copy begins
  {"t":"put", ...spec...}            this flow, as it is now (create, or update)
  {"t":"set", ...tuple and changes}  an update event without the protocol
                                     state (the kernel sends it only when it
                                     changes): update only
  {"t":"del", ...tuple...}           this flow is gone
  {"t":"end","n":3,"count":1234}     the full copy is complete
  {"t":"ping"}, {"t":"alive"}        each side, every `beat` seconds it has nothing
                                     else to say (a quarter of the primary's
                                     --link-timeout, at most 1 s)

What is replicated: the original tuple (addresses, ports, ICMP type/code/id,
GRE keys) and zones; NAT, through snat/dnat on create (the kernel sets the
translation up and the SRC_NAT / DST_NAT bits, as a NAT rule would; the
translated address and port are the reply tuple's); a rewritten reply tuple
without NAT as reply_*; TCP, SCTP and DCCP state, TCP window tracking flags
and scales, SCTP verification tags, DCCP role; the status bits a program may
set (SEEN_REPLY, ASSURED, FIXED_TIMEOUT, HELPER); timeout; mark; labels
(as bits); helper; and deletions: what e:spec() reads.  Not replicated:
expectations and the master of a related flow, secmark (sent, but the
kernel ignores it on create), counters, timestamps, ICMP id translations (the module's snat/dnat
take a port for port protocols only: an ICMP flow is NATed by address).

Cost (bench/replicate.lua, README "Performance"): the primary reads each
flow with e:spec() (one C call: NAT as snat/dnat, the settable status
bits) and encodes it; the backup decodes it and hands runs of flows to
h:batch("put"), which creates them and updates, in a second batch, those
already there.  What is left is mostly JSON both ways.

Resynchronisation.  The primary sends a full copy when it connects, after
every reconnection, when the event stream overflows (the kernel dropped
events: ev.type == "overflow"), and every --refresh seconds (default 60; 0:
never).  The refresh keeps the backup's timeouts alive: the kernel reports
no event when a packet only extends a flow's timeout, so the backup sets
each flow's timeout to the primary's plus the refresh interval (and 10 s),
and the next copy renews it.  At the end of a copy the backup reconciles:
it deletes every flow of its table that the copy did not hold, except flows
to or from its own addresses (its own connections, this link among them).

The link: TCP, reconnecting (0.1 s, doubling up to 2 s) when it drops; a
side that hears nothing for --link-timeout seconds (default 5) drops the
connection.  The backup takes the newest connection.  The primary never
replicates its connections to the backup, nor flows from or to an
--ignore prefix.

Takeover: nothing to do on the backup; its table already holds the flows.
Stop it when its router becomes the active one, before a primary (the old
one, back) connects to it: a full copy from that side would reconcile its
table to the other's.

Uses luasocket (the link), lua-cjson or lua-dkjson (JSON), lua-argparse
(options) and iproute2 (`ip`, the backup's own addresses).  See bench/replicate.lua for its latency and rate, beside
conntrackd's.
]==]

local here = arg and arg[0] and arg[0]:match("^(.*)/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/?.lua"  -- last: examples/conntrack.lua is the command, not the module
local tb = require "toolbox"
tb.tree(here)

local argparse = require "argparse"
local socket = require "socket"
-- JSON: lua-cjson where it loads (C: about 7 us a flow each way, 5x faster
-- than the next), else lua-dkjson (pure Lua; with lpeg for decoding).
local json
do
	local ok, cjson = pcall(require, "cjson")
	if ok then
		json = { encode = cjson.encode, decode = function(text)
			local ok2, v = pcall(cjson.decode, text)
			return ok2 and v or nil
		end }
	else
		json = require "dkjson"
		if pcall(require, "lpeg") then
			json = json.use_lpeg()
		end
	end
end
local ct = require "conntrack"

local parser = argparse("replicate.lua", "Keep a standby firewall's conntrack table in step with the active one's.")
parser:command_target("command")
local pc = parser:command("primary", "Send this table (a full copy, then every change) to the backup.")
pc:option("--peer", "The backup's address and port (\"[2001:db8::2]:7070\" for IPv6)."):count(1)
	:argname("<host:port>")
pc:option("--netns", "The namespace whose table is sent: a name under /run/netns or a path."):argname("<ns>")
pc:option("--refresh", "Seconds between full copies (0: only on connection and overflow).", "60")
	:argname("<s>")
pc:option("--ignore", "Do not replicate flows from or to this address or prefix (repeatable).")
	:count("*"):argname("<cidr>")
pc:option("--rcvbuf", "The event socket's buffer in bytes (default: the module's, 32 MiB)."):argname("<bytes>")
pc:option("--link-timeout", "Seconds of silence from the backup before reconnecting.", "5"):argname("<s>")
local bc = parser:command("backup", "Apply what the primary sends to this table.")
bc:option("--listen", "Address and port to listen on (port 0: any)."):count(1):argname("<host:port>")
bc:option("--netns", "The namespace whose table is kept: a name under /run/netns or a path."):argname("<ns>")
bc:option("--link-timeout", "Seconds of silence from the primary before dropping its connection.", "5")
	:argname("<s>")
local o = tb.parse(parser)

local role = o.command
local function log(fmt, ...)
	io.stderr:write(role, ": ", fmt:format(...), "\n")
	io.stderr:flush()
end

local function die(msg)
	log("%s", msg)
	os.exit(1)
end

local function number_option(name, lo, hi)
	local v = o[name] and tonumber(o[name])
	if o[name] ~= nil and (not v or v < lo or v > hi) then
		tb.usage_error(parser, ("--%s needs a number from %s to %s"):format(name:gsub("_", "-"), lo, hi))
	end
	return v
end

local link_timeout = number_option("link_timeout", 1, 3600)
-- heartbeats: four in a link timeout, at most one a second
local beat = math.min(1, link_timeout / 4)
local addr_opt = o.peer or o.listen
local host, port = tb.split_hostport(addr_opt)
if not host then
	tb.usage_error(parser, "needs HOST:PORT or [IPv6]:PORT, got " .. addr_opt)
end

local h, msg = ct.open{ netns = o.netns }
if not h then
	die((o.netns and (o.netns .. ": ") or "") .. msg)
end

local now = socket.gettime
local EEXIST, ENOENT = ct.errno.EEXIST, ct.errno.ENOENT

-- Flows as specs ---------------------------------------------------------------

-- What a tuple is made of, and the changes an update can carry.
local TUPLE = { "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
	"srckey", "dstkey", "zone", "orig_zone", "reply_zone" }
local CHANGES = { "timeout", "mark", "state", "status", "labels", "tcp_flags_orig", "tcp_flags_reply",
	"tcp_wscale_orig", "tcp_wscale_reply" }
-- What a spec may hold (e:spec() gives these): anything else a newer
-- primary sends is left out.
local SPEC = {}
for _, k in ipairs({ "reply_src", "reply_dst", "reply_sport", "reply_dport", "reply_srckey",
	"reply_dstkey", "snat", "dnat", "helper", "secmark", "orig_vtag", "reply_vtag", "role" }) do
	SPEC[k] = true
end
for _, list in ipairs({ TUPLE, CHANGES }) do
	for _, k in ipairs(list) do SPEC[k] = true end
end

-- The keys of s named in keys; numbers that are whole made integers (a
-- JSON decoder may give 53.0 for 53: keys compare as text).
local tointeger = math.tointeger or function(x) return x end
local function pick(s, keys)
	local t = {}
	for i = 1, #keys do
		local k = keys[i]
		local v = s[k]
		if type(v) == "number" then
			v = tointeger(v) or v
		end
		t[k] = v
	end
	return t
end

-- A flow's identity: its original tuple and zones.
local function key(s)
	return ("%s %s %s %s %s %s %s %s %s %s %s %s %s"):format(s.proto, s.src, s.dst,
		tointeger(s.sport or -1), tointeger(s.dport or -1), tointeger(s.icmp_type or -1),
		tointeger(s.icmp_code or -1), tointeger(s.icmp_id or -1), tointeger(s.srckey or -1),
		tointeger(s.dstkey or -1), tointeger(s.zone or 0), tointeger(s.orig_zone or -1),
		tointeger(s.reply_zone or -1))
end

-- Protocols with a state: an event that lacks it carries no protocol info.
local STATEFUL = { tcp = true, sctp = true, dccp = true }

--- The line for a flow's spec s (from an event, or a dump entry: type nil):
-- put, set or del.
local function line_of(s, ty)
	if ty == "destroy" then
		s.t = "del"
	elseif ty == "update" and s.state == nil and STATEFUL[s.proto] then
		s.t = "set"
	else
		s.t = "put"
	end
	return json.encode(s)
end

-- The link ------------------------------------------------------------------

-- Sends all of data within the link timeout, or raises {link = message}.
local function send_all(conn, data)
	local from, stop = 1, now() + link_timeout
	while from <= #data do
		local last, err, partial = conn:send(data, from)
		last = last or partial
		if last and last >= from then
			from = last + 1
		elseif err ~= "timeout" then
			error({ link = "send: " .. tostring(err) }, 0)
		end
		if from <= #data and now() > stop then
			error({ link = "send: nothing taken for " .. link_timeout .. " s" }, 0)
		end
		if from <= #data then
			socket.select(nil, { conn }, 0.1)
		end
	end
end

-- A writer of lines: add(line), flush(); flushes by itself past 64 KiB.
local function writer(conn)
	local buf, n, size = {}, 0, 0
	local w = { last = now() }
	function w.flush()
		if n > 0 then
			send_all(conn, table.concat(buf, "\n", 1, n) .. "\n")
			buf, n, size = {}, 0, 0
			w.last = now()
		end
	end
	function w.add(line)
		n = n + 1
		buf[n] = line
		size = size + #line
		if size >= 65536 then
			w.flush()
		end
	end
	return w
end

-- Lines received: read(conn) -> array of complete lines now available, or
-- raises {link = message} at the end of the stream.
local function reader(conn)
	local partial
	return function(max)
		local lines = {}
		while #lines < max do
			local line, err, part = conn:receive("*l", partial)
			if line then
				partial = nil
				lines[#lines + 1] = line
			elseif err == "timeout" then
				partial = part ~= "" and part or nil
				break
			else
				error({ link = "receive: " .. tostring(err) }, 0)
			end
		end
		return lines
	end
end

-- Runs fn(); a {link = message} error becomes the return value, any other
-- error goes on.
local function link_errors(fn, ...)
	local ok, err = pcall(fn, ...)
	if ok then
		return nil
	end
	if type(err) == "table" and err.link then
		return err.link
	end
	error(err, 0)
end

-- Primary -------------------------------------------------------------------

local function primary()
	local refresh = number_option("refresh", 0, 86400)
	local rcvbuf = number_option("rcvbuf", 4096, 1073741824)
	local filter
	if #o.ignore > 0 then
		local F = ct.filter
		local ok, f = pcall(function()
			return -(F.src((table.unpack or unpack)(o.ignore)) + F.dst((table.unpack or unpack)(o.ignore)))
		end)
		if not ok then
			tb.usage_error(parser, tostring(f))
		end
		filter = f
	end
	if tb.sysctl(o.netns, "nf_conntrack_events") == 0 then
		log("warning: net.netfilter.nf_conntrack_events is 0 here: no events, only the full copies")
	end
	-- Subscribed before the first copy: what changes during it arrives after it.
	local sub, serr = h:subscribe{ filter = filter, rcvbuf = rcvbuf and math.floor(rcvbuf) }
	if not sub then
		die(serr)
	end
	local copies, backoff = 0, 0.1

	-- One connection, from its hello to its failure (the message returned).
	local function session(conn, own)
		local w, read = writer(conn), reader(conn)
		local heard, last_copy = now(), 0
		local function copy(why)
			copies = copies + 1
			local t0, n = now(), 0
			w.add(json.encode{ t = "begin", n = copies })
			for e in h:dump(filter, { unique = true }) do
				local s = e:spec()
				if not own(s) then
					w.add(line_of(s))
					n = n + 1
				end
			end
			w.add(json.encode{ t = "end", n = copies, count = n })
			w.flush()
			last_copy = now()
			log("copy %d sent (%s): %d flows in %.3f s", copies, why, n, last_copy - t0)
		end
		w.add(json.encode{ t = "hello", v = 1, refresh = refresh, beat = beat })
		copy("connected")
		backoff = 0.1
		while true do
			local evs = sub:read(1024)
			local overflow
			for i = 1, #evs do
				local ev = evs[i]
				if ev.type == "overflow" then
					overflow = ev.lost or 0
				elseif not overflow then
					local s = ev:spec()
					if not own(s) then
						w.add(line_of(s, ev.type))
					end
				end
			end
			if overflow then
				w.flush()
				log("event overflow (%d lost): a full copy", overflow)
				copy("overflow")
			end
			w.flush()
			if #evs == 0 then
				sub:wait(0.2)
			end
			-- the backup's side: heartbeats
			if #read(64) > 0 then
				heard = now()
			elseif now() - heard > link_timeout then
				error({ link = "nothing from the backup for " .. link_timeout .. " s" }, 0)
			end
			if now() - w.last >= beat then
				w.add('{"t":"ping"}')
				w.flush()
			end
			if refresh > 0 and now() - last_copy >= refresh then
				copy("refresh")
			end
		end
	end

	local function connect()
		local conn = socket.tcp()
		conn:settimeout(2)
		local ok, err = conn:connect(host, port)
		if not ok then
			conn:close()
			return nil, err
		end
		conn:settimeout(0)
		conn:setoption("tcp-nodelay", true)
		conn:setoption("keepalive", true)
		return conn
	end

	log("subscribed%s; sending to %s", o.netns and (" in " .. o.netns) or "", addr_opt)
	local last_err
	while true do
		local conn, err = connect()
		if conn then
			local lip, lport = conn:getsockname()
			local pip, pport = conn:getpeername()
			pport = tonumber(pport)
			log("connected to %s from %s", addr_opt, tb.hostport(lip, lport))
			-- the links to the backup (this one, and earlier ones still in
			-- the table) are its flows too: never sent
			local function own(s)
				return s.proto == "tcp" and ((s.dport == pport and s.dst == pip) or (s.sport == pport and s.src == pip))
			end
			err = link_errors(session, conn, own)
			conn:close()
			log("link lost: %s; reconnecting", err)
			last_err = nil
		elseif err ~= last_err then
			log("cannot connect to %s: %s; retrying", addr_opt, tostring(err))
			last_err = err
		end
		-- meanwhile the events go: the next connection starts with a full copy
		local stop = now() + backoff
		repeat
			sub:read(4096)
			sub:wait(math.max(0, math.min(0.1, stop - now())))
		until now() >= stop
		backoff = math.min(backoff * 2, 2)
	end
end

-- Backup ----------------------------------------------------------------------

local function backup()
	local server, lerr = socket.bind(host, port)
	if not server then
		die("cannot listen on " .. addr_opt .. ": " .. tostring(lerr))
	end
	server:settimeout(0)
	local lip, lport = server:getsockname()
	log("listening on %s", tb.hostport(lip, lport))

	local hold = 10      -- added to each timeout: the primary's refresh and 10 s
	local stats = { failed = 0, reported = {} }
	local function fail(what, message)
		stats.failed = stats.failed + 1
		if not stats.reported[message] then
			stats.reported[message] = true
			log("%s: %s (reported once)", what, message)
		end
	end

	-- The spec of a received flow, as the module takes it: the keys it
	-- knows (a newer primary may send more), the timeout held longer.
	local function spec_in(d)
		for k in pairs(d) do
			if not SPEC[k] then d[k] = nil end
		end
		if d.timeout then
			d.timeout = math.floor(d.timeout + hold)
		end
		return d
	end

	local function update(s)
		local ok, res, umsg, errno = pcall(h.update, h, pick(s, TUPLE), pick(s, CHANGES))
		if not ok then
			fail("update", tostring(res))
		elseif not res and errno ~= ENOENT then
			fail("update", umsg)
		end
		return ok and res, errno
	end

	-- A run of puts: created, or updated where already there, in one batch.
	local function puts(run)
		local ok, bmsg, fails = h:batch("put", run)
		if not ok then
			fail("put", bmsg)
			return
		end
		for _, f in ipairs(fails) do
			local s = run[f.index]
			if s.helper and f.errno ~= EEXIST then
				-- a helper this host lacks: the flow without it
				fail("put", f.message .. " (helper " .. tostring(s.helper) .. ": created without it)")
				s.helper = nil
				h:create(s)
			else
				fail("put", f.message)
			end
		end
	end

	-- Pending operations, applied in order as runs of one kind.
	local pending = {}
	local function apply()
		local i = 1
		while i <= #pending do
			local kind, run = pending[i].t, {}
			while i <= #pending and pending[i].t == kind do
				run[#run + 1] = pending[i].s
				i = i + 1
			end
			if kind == "put" then
				puts(run)
			elseif kind == "del" then
				local ok, bmsg, fails = h:batch("delete", run)
				if not ok then
					fail("delete", bmsg)
				elseif fails[1] then
					fail("delete", fails[1].message)
				end
			else
				for _, s in ipairs(run) do update(s) end
			end
		end
		pending = {}
	end

	-- The end of a full copy: every flow the copy did not hold goes, but
	-- those to or from this host's own addresses.
	local function reconcile(seen)
		local mine = tb.local_addresses(o.netns) or {}
		local gone = {}
		for e in h:dump() do
			local t = e.orig
			if not seen[key(e:spec())] and not mine[t.src] and not mine[t.dst] then
				gone[#gone + 1] = e
			end
		end
		if #gone > 0 then
			local ok, bmsg = h:batch("delete", gone)
			if not ok then
				fail("reconcile", bmsg)
			end
		end
		return #gone
	end

	local copy     -- the full copy being received: {n =, seen = {key = true}, count =}

	local function handle(line)
		local d = json.decode(line)
		if type(d) ~= "table" or type(d.t) ~= "string" then
			error({ link = "not a message: " .. line:sub(1, 80) }, 0)
		end
		local t = d.t
		if t == "put" or t == "del" or t == "set" then
			local s = t == "del" and pick(d, TUPLE) or spec_in(d)
			pending[#pending + 1] = { t = t, s = s }
			if copy then
				copy.seen[key(s)] = true
				copy.count = copy.count + 1
			end
		elseif t == "begin" then
			apply()
			copy = { n = d.n, seen = {}, count = 0, t0 = now() }
		elseif t == "end" then
			apply()
			if copy then
				local gone = reconcile(copy.seen)
				log("copy %d applied: %d flows, %d deleted, %d failures so far, in %.3f s", tonumber(copy.n) or 0,
					copy.count, gone, stats.failed, now() - copy.t0)
			end
			copy = nil
		elseif t == "hello" then
			if d.v ~= 1 then
				error({ link = "protocol version " .. tostring(d.v) .. " (this side speaks 1)" }, 0)
			end
			hold = (tonumber(d.refresh) or 0) + 10
			-- as often as the primary wants to hear from this side
			local b = tonumber(d.beat)
			beat = b and b >= 0.05 and math.min(b, beat) or beat
		end
		-- ping, and what a newer primary may add: nothing to do
	end

	local conn, read, heard, said
	local function drop(why)
		if conn then
			log("link closed: %s", why)
			conn:close()
		end
		conn, copy, pending = nil, nil, {}
	end

	while true do
		local ready = socket.select({ server, conn }, nil, 1)
		if ready[server] then
			local c = server:accept()
			if c then
				drop("a new connection replaces it")
				conn, read, heard, said = c, reader(c), now(), 0
				c:settimeout(0)
				c:setoption("tcp-nodelay", true)
				c:setoption("keepalive", true)
				log("primary connected from %s", tb.hostport(c:getpeername()))
			end
		end
		if conn then
			local err = link_errors(function()
				local function alive()
					if now() - said >= beat then
						send_all(conn, '{"t":"alive"}\n')
						said = now()
					end
				end
				local lines = read(2048)
				while #lines > 0 do
					heard = now()
					for i = 1, #lines do handle(lines[i]) end
					if #pending >= 2048 then apply() end
					alive()     -- also while a long copy streams in
					lines = read(2048)
				end
				apply()
				alive()
			end)
			if err then
				drop(err)
			elseif now() - heard > link_timeout then
				drop("nothing from the primary for " .. link_timeout .. " s")
			end
		end
	end
end

if role == "primary" then
	primary()
else
	backup()
end
