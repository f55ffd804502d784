-- conntrack.nat on the router's table after real traffic through nft snat,
-- masquerade, dnat and redirect rules (and snat+dnat on one flow),
-- cross-checked with the status bits and the conntrack CLI.  On synthetic
-- tuples: spec/unit/41-nat_spec.lua.
local ct = require "conntrack"
local hosts = require "hosts"
local H = require "helpers"

local nat, F = ct.nat, ct.filter

describe("NAT of real traffic through a router", function()
	local topo, h, A, P
	local flows = {}

	-- The router's entry of the flow that left the client from sport.
	local function find(sport)
		local found
		for e in h:dump(F.sport(sport)) do
			assert.is_nil(found, "two entries for sport " .. sport)
			found = e
		end
		return assert(found, "no entry for sport " .. sport)
	end

	lazy_setup(function()
		topo = hosts.new { nat = { snat = { ports = "40000-40009" }, masquerade = true, dnat = true, redirect = true } }
		A, P = topo.addr, hosts.port
		topo:serve()
		h = assert(ct.open { netns = topo.ns.router })
		flows = H.nat_flows(topo)
	end)

	lazy_teardown(function()
		if h then h:close() end
		if topo then topo:destroy() end
		hosts.cleanup_all()
	end)

	it("classifies each flow and agrees with the SRC_NAT/DST_NAT bits", function()
		local want = { plain = "none", snat = "snat", masq = "snat", both = "both", redir = "dnat",
			snat6 = "snat", masq6 = "snat", dnat6 = "dnat" }
		for name, kind in pairs(want) do
			local e = find(flows[name])
			assert.equals(kind, nat.classify(e), name)
			assert.equals(nat.from_status(e), nat.classify(e), name .. ": status bits")
		end
		for e in h:dump() do
			assert.equals(nat.from_status(e), nat.classify(e), tostring(e))
		end
	end)

	it("describes what was translated", function()
		local d = nat.describe(find(flows.snat))
		assert.equals(A.snat, d.snat.addr)
		assert.is_true(d.snat.port >= 40000 and d.snat.port <= 40009, tostring(d.snat.port))
		assert.is_nil(d.dnat)
		d = nat.describe(find(flows.masq))
		assert.same({ addr = A.masquerade }, d.snat)          -- the port was free: kept
		d = nat.describe(find(flows.both))
		assert.same({ addr = A.snat }, d.snat)
		assert.same({ addr = A.server, port = P.dnat_to }, d.dnat)
		d = nat.describe(find(flows.redir))
		assert.same({ addr = A.redirect, port = P.redirect_to }, d.dnat)
		d = nat.describe(find(flows.snat6))
		assert.equals(A.snat6, d.snat.addr)                   -- same first 32 bits as the client
		d = nat.describe(find(flows.masq6))
		-- the kernel's IPv6 source selection may take either address of s0
		assert.is_nil(d.snat.port)
		assert.is_truthy(d.snat.addr == A.masquerade6 or d.snat.addr == A.snat6, d.snat.addr)
		d = nat.describe(find(flows.dnat6))
		assert.same({ addr = A.server6, port = P.dnat_to }, d.dnat)
		assert.equals(("dnat [%s]:%d -> [%s]:%d"):format(A.public6, P.dnat, A.server6, P.dnat_to),
			nat.tostring(find(flows.dnat6)))
	end)

	it("nat filters agree with the CLI's --src-nat / --dst-nat / --any-nat", function()
		local function cli(args)
			local lines = H.cli_ok(topo.ns.router, "-L " .. args)
			for i, l in ipairs(lines) do lines[i] = H.untimed(l) end
			table.sort(lines)
			return lines
		end
		local function ours(f)
			local lines = {}
			for e in h:dump(f) do lines[#lines + 1] = H.untimed(tostring(e)) end
			table.sort(lines)
			return lines
		end
		local snat = ours(F.nat "snat")
		assert.equals(5, #snat)       -- snat, masq, both, snat6, masq6
		assert.same(cli("--src-nat"), snat)
		assert.same(cli("--dst-nat"), ours(F.nat "dnat"))
		assert.same(cli("--any-nat"), ours(F.nat "any"))
		assert.same(cli("--src-nat " .. A.snat), ours(F.nat("snat", A.snat)))
		assert.same(cli("--dst-nat " .. A.server .. ":" .. P.dnat_to), ours(F.nat("dnat", A.server .. ":" .. P.dnat_to)))
		assert.equals(1, #ours(F.nat "both"))
		assert.equals(1, #ours(F.nat("dnat", ":" .. P.redirect_to)))
	end)

	it("entries created with explicit reply tuples: not translated (as the CLI says); "
		.. "their tables without status by tuples", function()
		-- busted keeps one finally() per test: both clean-ups go in it
		local scratch = hosts.scratch()
		local h2
		finally(function()
			if h2 then h2:close() end
			scratch:destroy()
		end)
		h2 = assert(ct.open { netns = scratch.ns.host })
		assert(h2:create { proto = "udp", src = "192.0.2.9", dst = "198.51.100.9", sport = 1, dport = 53, timeout = 60,
			reply_src = "198.51.100.9", reply_dst = "198.51.100.100", reply_sport = 53, reply_dport = 40001 })
		assert(h2:create { proto = "tcp", src = "2001:db8:1::9", dst = "2001:db8:3::10", sport = 2, dport = 8003,
			timeout = 60, reply_src = "2001:db8:2::2", reply_dst = "2001:db8:1::9", reply_sport = 9003, reply_dport = 2 })
		assert(h2:create { proto = "tcp", src = "192.0.2.9", dst = "203.0.113.10", sport = 3, dport = 8003, timeout = 60,
			reply_src = "198.51.100.2", reply_dst = "198.51.100.100", reply_sport = 9003, reply_dport = 3 })
		local kinds, by_tuples = {}, {}
		for e in h2:dump() do
			-- ctnetlink sets no NAT bits for a plain reply tuple: the kernel
			-- translates nothing, and the kind says so
			kinds[e.orig.sport] = nat.classify(e)
			assert.equals("none", nat.from_status(e))
			local t = e:totable()
			t.status = nil
			by_tuples[e.orig.sport] = nat.classify(t)
		end
		assert.same({ [1] = "none", [2] = "none", [3] = "none" }, kinds)
		assert.same({ [1] = "snat", [2] = "dnat", [3] = "both" }, by_tuples)
		assert.same({}, H.cli_ok(scratch.ns.host, "-L --any-nat"))
	end)
end)
