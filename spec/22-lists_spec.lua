-- The dying and unconfirmed lists ({table = "dying"}, {table = "unconfirmed"})
-- against `conntrack -L dying` / `-L unconfirmed`, and zeroing counters
-- while dumping ({zero = true}) against `conntrack -L -z`, on real traffic
-- with nf_conntrack_acct=1.
--
-- How a flow gets on the dying list on Linux 6.18: when its end cannot be
-- reported to a listener that asked for reliable delivery (the
-- NETLINK_BROADCAST_ERROR socket option, as conntrackd sets it) because that
-- listener's buffer is full, the kernel keeps the flow on the dying list and
-- retries until the report goes.  Such a listener is made here by a few
-- lines of Python (Debian's python3, which python3-pyftpdlib brings): a
-- netlink socket in the destroy group, the smallest buffer, never read.
-- The unconfirmed list has been gone since Linux 6.1 (flows are confirmed
-- as they leave the hooks); the kernel answers both dumps with nothing.

local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local F = ct.filter

H.assert_private()

local LISTENER = [[
import socket, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
s.setsockopt(270, 4, 1)
s.bind((0, 1 << 2))
time.sleep(30)
]]
-- 12 NETLINK_NETFILTER; 270 SOL_NETLINK, 4 NETLINK_BROADCAST_ERROR;
-- group 3 NFNLGRP_CONNTRACK_DESTROY

local function udp(i)
	return { src = "192.0.2.1", dst = "198.51.100.2", proto = "udp", sport = 1000 + i, dport = 53, timeout = 100 }
end

describe("the dying and unconfirmed lists", function()
	local topo, ns, h
	H.private(function(t, n, hh) topo, ns, h = t, n, hh end)

	it("flows whose end a reliable listener could not take stay on the dying list: the module lists what"
		.. " conntrack -L dying lists, line for line", function()
		local file = os.tmpname()
		local on_exit = H.finally(finally)
		on_exit(function() os.remove(file) end)
		local f = assert(io.open(file, "w"))
		f:write(LISTENER)
		f:close()
		local pid = topo:spawn("host", "env -u LD_PRELOAD timeout 40 /usr/bin/python3 " .. file)
		on_exit(function() topo:exec("host", "kill " .. pid .. " 2>/dev/null") end)
		-- bounded: until a flow deleted as a probe stays on the dying list
		local ready = false
		for i = 1, 100 do
			assert(h:create(udp(900 + i)))
			assert(h:delete(H.tuple(udp(900 + i))))
			if #assert(h:list(nil, { table = "dying" })) > 0 then ready = true break end
			hosts.sleep(0.05)
		end
		assert.is_true(ready, "no listener blocking destroy events:\n" .. topo:log())
		for i = 1, 10 do assert(h:create(udp(i))) end
		local deleted = h:delete_where(F.sport(1001, 1002, 1003, 1004, 1005))
		assert.equals(5, deleted)
		local dying = assert(h:list(F.dport(53) * F.sport(1001, 1002, 1003, 1004, 1005), { table = "dying" }))
		assert.equals(5, #dying)
		local lines = H.cli_ok(ns, "-L dying")
		for _, e in ipairs(dying) do
			local o = e.orig
			local want = assert(H.find(lines, ("src=%s dst=%s sport=%d dport=53 "):format(o.src, o.dst, o.sport)))
			assert.equals(H.untimed(want), H.untimed(tostring(e)))
		end
		-- every flow of the list, and no live one
		local all = assert(h:list(nil, { table = "dying" }))
		assert.equals(#lines, #all)
		for _, e in ipairs(all) do assert.is_true(e.orig.sport < 1006 or e.orig.sport > 1900) end
		-- a dump too, and the live table has the other five
		local n = 0
		for _ in h:dump(nil, { table = "dying" }) do n = n + 1 end
		assert.equals(#all, n)
		assert.equals(5, #h:list(F.sport(1006, 1007, 1008, 1009, 1010)))
		-- once the listener is gone, the kernel delivers and frees them
		topo:exec("host", "kill " .. pid)
		local gone = false
		for _ = 1, 100 do
			if #assert(h:list(nil, { table = "dying" })) == 0 then gone = true break end
			hosts.sleep(0.05)
		end
		assert.is_true(gone)
		assert.same({}, H.cli_ok(ns, "-L dying"))
	end)

	it("the unconfirmed list: empty in the module and in conntrack -L unconfirmed (no such list since Linux 6.1)",
		function()
			for i = 1, 3 do assert(h:create(udp(i))) end
			assert.same({}, assert(h:list(nil, { table = "unconfirmed" })))
			assert.same({}, H.cli_ok(ns, "-L unconfirmed"))
			local n = 0
			for _ in h:dump(nil, { table = "unconfirmed" }) do n = n + 1 end
			assert.equals(0, n)
		end)
end)

describe("zeroing counters while dumping", function()
	local topo, A, h
	local P = hosts.port
	H.routed({ serve = "udp" }, function(t, hh) topo, A, h = t, t and t.addr, hh end)

	local function counters(e)
		return { e.orig.packets, e.orig.bytes, e.reply.packets, e.reply.bytes }
	end

	-- The router's entry of a UDP flow from the client's source port sport,
	-- read as the CLI prints it: its counters.
	local function cli_counters(args, sport)
		local line = assert(H.find(H.cli_ok(topo.ns.router, args), "sport=" .. sport .. " dport=" .. P.plain .. " "))
		local r = H.parse(line)
		return { r.orig.packets, r.orig.bytes, r.reply.packets, r.reply.bytes }
	end

	it("{zero = true}: the entries carry the counters from before, the CLI then reads zeros; conntrack -L -z"
		.. " likewise, read by the module", function()
		local ok, _, s1 = topo:udp_send("client", A.server, P.plain, "hello", 3)
		assert.is_true(ok)
		local ok2, _, s2 = topo:udp_send("client", A.server, P.plain, "lct", 2)
		assert.is_true(ok2)
		local want1 = { 3, 3 * 33, 3, 3 * 33 }      -- 28 bytes of IPv4 and UDP headers + 5
		local want2 = { 2, 2 * 31, 2, 2 * 31 }
		local f1, f2 = F.proto "udp" * F.sport(s1), F.proto "udp" * F.sport(s2)
		assert.same(want1, counters(assert(h:list(f1))[1]))
		assert.same(want1, cli_counters("-L -p udp", s1))
		-- the module zeroes the first flow's counters
		local got = assert(h:list(f1, { zero = true }))
		assert.equals(1, #got)
		assert.same(want1, counters(got[1]))
		assert.same({ 0, 0, 0, 0 }, cli_counters("-L -p udp", s1))
		assert.same({ 0, 0, 0, 0 }, counters(assert(h:list(f1))[1]))
		assert.same(want2, cli_counters("-L -p udp", s2))
		-- a dump with zero = true zeroes what it reads (here every flow)
		local seen = {}
		for e in h:dump(F.proto "udp", { zero = true }) do seen[e.orig.sport] = counters(e) end
		assert.same(want2, seen[s2])
		assert.same({ 0, 0, 0, 0 }, counters(assert(h:list(f2))[1]))
		-- the CLI zeroes (the whole table: it takes no filter with -z):
		-- it prints the counters it read, then the module reads zeros
		assert(topo:udp_send("client", A.server, P.plain, "hello", 1, { sport = s1 }))
		assert.same({ 1, 33, 1, 33 }, counters(assert(h:list(f1))[1]))
		assert.same({ 1, 33, 1, 33 }, cli_counters("-L -z", s1))
		assert.same({ 0, 0, 0, 0 }, counters(assert(h:list(f1))[1]))
		-- with a filter the kernel applies whole, only what matches is zeroed
		assert(topo:udp_send("client", A.server, P.plain, "hello", 1, { sport = s1 }))
		assert(topo:udp_send("client", A.server, P.plain, "lct", 1, { sport = s2 }))
		assert.equals(1, #h:list(f2, { zero = true }))
		assert.same({ 1, 33, 1, 33 }, counters(assert(h:list(f1))[1]))
		-- zero is for the conntrack table only
		local okz, msg = pcall(h.list, h, nil, { table = "dying", zero = true })
		assert.is_false(okz)
		assert.matches("list: bad argument 'zero'", msg, 1, true)
	end)
end)

describe("zeroing with a filter the kernel cannot apply", function()
	-- The kernel zeroes every entry it sends; a filter that C or Lua
	-- finishes drops some of those after they were zeroed, and their
	-- counters are lost unseen.  The CLI refuses -z with any filter ("Can't
	-- use -z with filtering parameters").
	local h
	H.private(function(_, _, hh) h = hh end)

	it("h:list and h:dump refuse zero with a filter the kernel cannot apply whole, as the CLI refuses -z", function()
		for _, f in ipairs { F.src "192.0.2.128/25", F.proto "udp" * F.nat "snat", F.dport(53) } do
			for _, fname in ipairs { "list", "dump" } do
				local ok, msg = pcall(h[fname], h, f, { zero = true })
				assert.is_false(ok, fname .. " " .. tostring(f))
				assert.matches(fname .. ": bad argument 'zero' (the kernel zeroes every entry it sends", msg, 1, true)
			end
		end
		local ok = pcall(h.list, h, F.mark(7), { zero = true, pushdown = false })
		assert.is_false(ok)
		-- what the kernel selects by itself is zeroed and returned alike
		assert.is_table(assert(h:list(F.mark(7) * F.family "ipv4", { zero = true })))
	end)
end)
