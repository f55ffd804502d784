-- conntrack.nat: classification and description of translations, on
-- synthetic tuples (#unit) and on the router's table after real traffic
-- through nft snat, masquerade, dnat and redirect rules (and snat+dnat on
-- one flow), cross-checked with the status bits and the conntrack CLI.
local nat = require "conntrack.nat"

local function entry(o, r, status)
	return { orig = o, reply = r, status = status or { CONFIRMED = true } }
end

describe("conntrack.nat #unit", function()
	it("no translation: the reply is the inverted original", function()
		local e = entry({ src = "192.0.2.2", dst = "198.51.100.2", sport = 5000, dport = 80 },
			{ src = "198.51.100.2", dst = "192.0.2.2", sport = 80, dport = 5000 })
		assert.equals("none", nat.classify(e))
		assert.same({ kind = "none", orig_src = "192.0.2.2", orig_dst = "198.51.100.2", orig_sport = 5000,
			orig_dport = 80 }, nat.describe(e))
		assert.equals("none", nat.tostring(e))
	end)

	it("source translation: address, port, or both", function()
		local e = entry({ src = "192.0.2.2", dst = "198.51.100.2", sport = 5000, dport = 80 },
			{ src = "198.51.100.2", dst = "198.51.100.100", sport = 80, dport = 40003 })
		assert.equals("snat", nat.classify(e))
		local d = nat.describe(e)
		assert.same({ addr = "198.51.100.100", port = 40003 }, d.snat)
		assert.is_nil(d.dnat)
		assert.equals("snat 192.0.2.2:5000 -> 198.51.100.100:40003", nat.tostring(e))
		-- port only (masquerade that had to move the port)
		e.reply.dst = "192.0.2.2"
		assert.equals("snat", nat.classify(e))
		assert.same({ port = 40003 }, nat.describe(e).snat)
		-- address only
		e.reply.dst, e.reply.dport = "198.51.100.1", 5000
		assert.same({ addr = "198.51.100.1" }, nat.describe(e).snat)
	end)

	it("destination translation: dnat and redirect", function()
		local e = entry({ src = "192.0.2.2", dst = "203.0.113.10", sport = 5000, dport = 8003 },
			{ src = "198.51.100.2", dst = "192.0.2.2", sport = 9003, dport = 5000 })
		assert.equals("dnat", nat.classify(e))
		assert.same({ addr = "198.51.100.2", port = 9003 }, nat.describe(e).dnat)
		assert.equals("dnat 203.0.113.10:8003 -> 198.51.100.2:9003", nat.tostring(e))
		-- a redirect to the router's own port, same address
		e = entry({ src = "192.0.2.2", dst = "192.0.2.1", sport = 5000, dport = 8004 },
			{ src = "192.0.2.1", dst = "192.0.2.2", sport = 9004, dport = 5000 })
		assert.equals("dnat", nat.classify(e))
		assert.same({ port = 9004 }, nat.describe(e).dnat)
	end)

	it("both ways at once", function()
		local e = entry({ src = "192.0.2.2", dst = "203.0.113.10", sport = 5000, dport = 8003 },
			{ src = "198.51.100.2", dst = "198.51.100.100", sport = 9003, dport = 5000 })
		assert.equals("both", nat.classify(e))
		assert.equals("snat 192.0.2.2:5000 -> 198.51.100.100:5000; dnat 203.0.113.10:8003 -> 198.51.100.2:9003",
			nat.tostring(e))
	end)

	it("compares whole IPv6 addresses, not their first 32 bits", function()
		local e = entry({ src = "2001:db8:1::2", dst = "2001:db8:2::2", sport = 7, dport = 53 },
			{ src = "2001:db8:2::2", dst = "2001:db8:1::3", sport = 53, dport = 7 })
		assert.equals("snat", nat.classify(e))
		assert.same({ addr = "2001:db8:1::3" }, nat.describe(e).snat)
		assert.equals("snat [2001:db8:1::2]:7 -> [2001:db8:1::3]:7", nat.tostring(e))
		-- texts that are the same address are the same
		e.reply.dst = "2001:0db8:0001:0000:0000:0000:0000:0002"
		assert.equals("none", nat.classify(e))
	end)

	it("ICMP: the echo id plays the port", function()
		local e = entry({ src = "192.0.2.2", dst = "198.51.100.2", icmp_type = 8, icmp_id = 7 },
			{ src = "198.51.100.2", dst = "198.51.100.1", icmp_type = 0, icmp_id = 9 })
		assert.equals("snat", nat.classify(e))
		assert.same({ addr = "198.51.100.1", port = 9 }, nat.describe(e).snat)
		-- with only DST_NAT claimed, a changed id belongs to it
		e = entry({ src = "192.0.2.2", dst = "203.0.113.10", icmp_id = 7 },
			{ src = "198.51.100.2", dst = "192.0.2.2", icmp_id = 9 }, { DST_NAT = true })
		assert.equals("dnat", nat.classify(e))
		assert.same({ addr = "198.51.100.2", port = 9 }, nat.describe(e).dnat)
	end)

	it("without a reply tuple the status bits decide", function()
		assert.equals("both", nat.classify { status = { SRC_NAT = true, DST_NAT = true } })
		assert.equals("dnat", nat.classify { orig = { src = "192.0.2.1" }, status = { DST_NAT = true } })
		assert.equals("none", nat.classify { status = {} })
		assert.equals("snat", nat.from_status { status = { SRC_NAT = true } })
	end)
end)

describe("NAT of real traffic through a router", function()
	local hosts = require "hosts"
	local H = require "40-helpers"
	local ct, F, topo, h, A, P
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
		ct = require "conntrack"
		F = ct.filter
		topo = hosts.new { nat = { snat = { ports = "40000-40009" }, masquerade = true, dnat = true, redirect = true } }
		A, P = topo.addr, hosts.port
		-- one flow with both translations: a DNATed flow to 9003 also SNATed
		assert(topo:nft("router", "table ip lct_both {\n\tchain post {\n\t\ttype nat hook postrouting priority 200; policy accept;\n"
			.. "\t\toifname \"s0\" ip daddr " .. A.server .. " tcp dport " .. P.dnat_to
			.. " snat ip to " .. A.snat .. "\n\t}\n}"))
		topo:serve()
		h = assert(ct.open { netns = topo.ns.router })
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
			local _, out = topo:exec("router", "conntrack -L " .. args .. " 2>/dev/null")
			local lines = H.lines(out)
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

	it("classifies entries created with explicit reply tuples by their tuples", function()
		-- busted keeps one finally() per test: both clean-ups go in it
		local ns = H.netns("nat")
		local h2
		finally(function()
			if h2 then h2:close() end
			ns:destroy()
		end)
		h2 = assert(ct.open { netns = ns.name })
		assert(h2:create { proto = "udp", src = "192.0.2.9", dst = "198.51.100.9", sport = 1, dport = 53, timeout = 60,
			reply_src = "198.51.100.9", reply_dst = "198.51.100.100", reply_sport = 53, reply_dport = 40001 })
		assert(h2:create { proto = "tcp", src = "2001:db8:1::9", dst = "2001:db8:3::10", sport = 2, dport = 8003,
			timeout = 60, reply_src = "2001:db8:2::2", reply_dst = "2001:db8:1::9", reply_sport = 9003, reply_dport = 2 })
		assert(h2:create { proto = "tcp", src = "192.0.2.9", dst = "203.0.113.10", sport = 3, dport = 8003, timeout = 60,
			reply_src = "198.51.100.2", reply_dst = "198.51.100.100", reply_sport = 9003, reply_dport = 3 })
		local kinds = {}
		for e in h2:dump() do
			kinds[e.orig.sport] = nat.classify(e)
			-- ctnetlink does not set NAT bits for a plain reply tuple
			assert.equals("none", nat.from_status(e))
		end
		assert.same({ [1] = "snat", [2] = "dnat", [3] = "both" }, kinds)
	end)
end)
