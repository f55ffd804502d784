-- Filter blocks of issue 10 on a real table, against the conntrack CLI's
-- own filters where it has them: zones per direction, ICMP and ICMPv6
-- type, code and id (also on real ping traffic), secmark (this kernel sets
-- none: ours matches nothing, the CLI's --secmark matches every flow) and
-- helper name (the CLI has no such filter: its lines are the oracle).  Each
-- runs in C, not in Lua (f:explain()).

local ct = require "conntrack"
local H = require "helpers"

local F = ct.filter

H.assert_private()

local C, S = "192.0.2.1", "198.51.100.2"

-- The module's list for f and the CLI's -L with args: the same flows, line
-- for line.
local function same_as_cli(h, ns, f, args, n)
	local mine = assert(h:list(f))
	local cli = H.cli_ok(ns, "-L " .. args)
	assert.equals(n, #mine, args)
	assert.equals(n, #cli, args)
	local a, b = {}, {}
	for i, e in ipairs(mine) do a[i] = H.comparable(tostring(e)) end
	for i, l in ipairs(cli) do b[i] = H.comparable(l) end
	table.sort(a)
	table.sort(b)
	assert.same(b, a, args)
	-- the block runs in C: nothing of it is left to Lua
	local _, parts = f:explain()
	assert.is_nil(parts.lua, args)
end

describe("filter blocks on a real table, as the CLI filters", function()
	local ns, h
	H.private(function(_, n, hh) ns, h = n, hh end)

	setup(function()
		-- ICMP and ICMPv6 flows of several types, codes and ids; zoned UDP
		-- flows; a flow with the FTP helper
		local specs = {
			{ src = C, dst = S, proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 100 },
			{ src = C, dst = S, proto = "icmp", icmp_type = 8, icmp_code = 0, icmp_id = 101 },
			{ src = C, dst = S, proto = "icmp", icmp_type = 13, icmp_code = 0, icmp_id = 102 },
			{ src = "2001:db8::1", dst = "2001:db8::2", proto = "icmpv6", icmp_type = 128, icmp_code = 0, icmp_id = 103 },
			{ src = C, dst = S, proto = "udp", sport = 1, dport = 2, orig_zone = 3 },
			{ src = C, dst = S, proto = "udp", sport = 1, dport = 3, reply_zone = 3 },
			{ src = C, dst = S, proto = "udp", sport = 1, dport = 4, zone = 3 },
			{ src = C, dst = S, proto = "udp", sport = 1, dport = 5, reply_zone = 4 },
			{ src = C, dst = S, proto = "tcp", sport = 1, dport = 21, state = "ESTABLISHED", helper = "ftp" },
		}
		for _, s in ipairs(specs) do
			s.timeout = 200
			assert(h:create(s))
		end
	end)

	it("ICMP and ICMPv6 type, code and id: the CLI's --icmp-type, --icmp-code, --icmp-id, --icmpv6-type", function()
		same_as_cli(h, ns, F.icmp_type(8), "-p icmp --icmp-type 8", 2)
		same_as_cli(h, ns, F.icmp_id(101), "-p icmp --icmp-id 101", 1)
		same_as_cli(h, ns, F.icmp_type(13) * F.icmp_code(0), "-p icmp --icmp-type 13 --icmp-code 0", 1)
		same_as_cli(h, ns, F.proto "icmpv6" * F.icmp_type(128), "-p icmpv6 --icmpv6-type 128", 1)
		same_as_cli(h, ns, F.proto "icmpv6" * F.icmp_id(103), "-p icmpv6 --icmpv6-id 103", 1)
		-- any of several, which the CLI cannot say in one call
		assert.equals(3, #h:list(F.icmp_id(100, 102, 103)))
		assert.equals(0, #h:list(F.icmp_type(0)))
	end)

	it("zones per direction: F.orig_zone, F.reply_zone and F.zone as --orig-zone, --reply-zone and --zone", function()
		same_as_cli(h, ns, F.reply_zone(4), "--reply-zone 4", 1)
		same_as_cli(h, ns, F.zone(3), "--zone 3", 1)
		-- a flow in zone 3 (both directions) has its original and its reply
		-- direction in zone 3: F.orig_zone(3) and F.reply_zone(3) take it
		-- too; the CLI's --orig-zone/--reply-zone compare the per-direction
		-- attribute alone, which such a flow does not carry
		local z = assert(h:list(F.zone(3)))[1]
		assert.is_nil(z.orig.zone)
		for _, c in ipairs{ { F.orig_zone(3), "--orig-zone 3", 2 }, { F.reply_zone(3), "--reply-zone 3", 3 } } do
			local mine = assert(h:list(c[1]))
			assert.equals(2, #mine, c[2])
			local cli = H.cli_ok(ns, "-L " .. c[2])
			assert.equals(1, #cli, c[2])
			assert.truthy(cli[1]:find("dport=" .. c[3] .. " ", 1, true), c[2])
			assert.truthy(H.select(mine, function(e) return e.orig.dport == 4 end)[1], c[2])
			assert.truthy(H.select(mine, function(e) return e.orig.dport == c[3] end)[1], c[2])
		end
		-- no zone is zone 0 in every direction
		assert.equals(5, #h:list(F.orig_zone(0) * F.reply_zone(0) * F.zone(0)))
	end)

	it("helper name: the flows whose CLI line says helper=NAME", function()
		local mine = assert(h:list(F.helper "ftp"))
		assert.equals(1, #mine)
		local cli = {}
		for _, l in ipairs(H.cli_ok(ns, "-L")) do
			if l:find(" helper=ftp ", 1, true) then cli[#cli + 1] = l end
		end
		assert.equals(1, #cli)
		assert.equals(H.comparable(cli[1]), H.comparable(tostring(mine[1])))
		assert.equals(0, #h:list(F.helper "sip"))
		assert.is_nil(select(2, F.helper("ftp"):explain()).lua)
	end)

	it("secmark: Linux 6.18 here sets none (no LSM marks packets; ctnetlink takes none on create): F.secmark"
		.. " matches nothing, while the CLI's --secmark N lists every flow (it skips what a flow lacks)", function()
		for e in h:dump() do assert.is_nil(e.secmark) end
		assert.equals(0, #h:list(F.secmark(7)))
		assert.equals(0, #h:list(F.secmark "1-10"))
		assert.equals(9, #h:list(-F.secmark(7)))
		assert.equals(9, #H.cli_ok(ns, "-L --secmark 7"))
		assert.is_nil(select(2, F.secmark(7):explain()).lua)
	end)
end)

describe("ICMP filters on real ping traffic", function()
	local topo, A, h
	H.routed({}, function(t, hh) topo, A, h = t, t and t.addr, hh end)

	it("the router's echo flows by type and id, as the CLI filters them", function()
		assert(topo:exec("client", "ping -c 1 -W 2 " .. A.server))
		assert(topo:exec("client", "ping -c 1 -W 2 " .. A.server6))
		local e = assert(h:list(F.proto "icmp"))[1]
		assert.equals(8, e.orig.icmp_type)
		same_as_cli(h, topo.ns.router, F.icmp_type(8), "-p icmp --icmp-type 8", 1)
		same_as_cli(h, topo.ns.router, F.icmp_id(e.orig.icmp_id), "-p icmp --icmp-id " .. e.orig.icmp_id, 1)
		same_as_cli(h, topo.ns.router, F.proto "icmpv6" * F.icmp_type(128), "-p icmpv6 --icmpv6-type 128", 1)
	end)
end)
